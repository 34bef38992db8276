//! Block calls: binding a call's arguments to the block's parameters, then expanding its body
//! in a scope of its own (`stmt/layer` names), within the nesting limit.

use super::{Builder, Scope, Src, MAX_BLOCK_DEPTH};
use crate::ast::*;
use crate::diag::{did_you_mean, Diagnostic};
use std::collections::HashMap;

impl Builder<'_> {
    pub(super) fn block_call(
        &mut self,
        block: &BlockDef,
        call: &Call,
        stmt: Option<&str>,
        scope: &Scope,
        cur: Option<Src>,
    ) -> Option<Src> {
        if scope.depth >= MAX_BLOCK_DEPTH {
            self.errors.push(
                Diagnostic::error(format!(
                    "block `{}` expands too deeply (recursive?)",
                    block.name.name
                ))
                .at(call.span, "expanded here")
                .help(format!(
                    "blocks may nest at most {MAX_BLOCK_DEPTH} deep and must not call themselves"
                )),
            );
            return None;
        }
        let bound = self.bind_params(block, call, scope)?;
        let prefix = match stmt {
            Some(s) => format!("{s}/"),
            None => format!(
                "{}/",
                self.fresh_name(&format!("{}{}", scope.prefix, block.name.name)) + &scope.suffix
            ),
        };
        let inner = Scope {
            prefix: prefix.clone(),
            suffix: String::new(),
            lookup: vec![(prefix, String::new())],
            params: bound,
            top: false,
            depth: scope.depth + 1,
        };
        if cur.is_none() {
            self.errors.push(
                Diagnostic::error(format!("block `{}` has no input", block.name.name))
                    .at(call.span, "nothing comes before this")
                    .help("declare an `input` first"),
            );
            return None;
        }
        if let Some(c) = &cur {
            // The block's input is `in` inside it (a residual's shortcut, layernorm's x).
            let full = inner.full("in");
            self.names.insert(full, (c.clone(), call.span));
        }
        self.bind_tensors(block, call, scope, &inner);
        if !crate::stdlib::contains(block) {
            return self.expand(&block.body, &inner, cur);
        }
        let mark = (
            self.graph.node_count(),
            self.errors.len(),
            self.pending.len(),
        );
        let out = self.expand(&block.body, &inner, cur);
        self.locate_at(call, block, mark);
        out
    }

    /// What a library block added (nodes, pending references, errors) is located at its call
    /// in the model file: the library's own spans index another text.
    fn locate_at(
        &mut self,
        call: &Call,
        block: &BlockDef,
        (nodes, errors, pending): (usize, usize, usize),
    ) {
        for i in nodes..self.graph.node_count() {
            self.graph[petgraph::graph::NodeIndex::new(i)].span = call.span;
        }
        for (_, _, src) in &mut self.pending[pending..] {
            if let Src::Ref { ident, .. } = src {
                ident.span = call.span;
            }
        }
        for d in &mut self.errors[errors..] {
            for l in d.primary.iter_mut().chain(d.secondary.iter_mut()) {
                l.span = call.span;
            }
            d.notes.push(format!(
                "in the standard library's `{}` (`netc stdlib` prints it)",
                block.name.name
            ));
        }
    }

    /// Parameters given a layer's name (`mse(recon, image)`) stand for that tensor inside the
    /// block: each becomes a name there resolving to the caller's layer, as `in` does, so a
    /// block can read several tensors (a loss reads its prediction and its target). A
    /// parameter the block's own statements define is left alone.
    fn bind_tensors(&mut self, block: &BlockDef, call: &Call, scope: &Scope, inner: &Scope) {
        let defined: Vec<&str> = block
            .body
            .iter()
            .filter_map(|s| match s {
                Stmt::Chain { name: Some(n), .. } => Some(n.name.as_str()),
                _ => None,
            })
            .collect();
        let mut pos = 0;
        for a in &call.args {
            let pname = match &a.key {
                Some(k) => k.name.clone(),
                None => {
                    pos += 1;
                    match block.params.get(pos - 1) {
                        Some(p) => p.name.name.clone(),
                        None => continue,
                    }
                }
            };
            let ValueKind::Call(c) = &a.value.kind else {
                continue;
            };
            let bare = |c: &Call| !c.parens && c.args.is_empty();
            let named_tensor =
                matches!(&self.subst(&a.value, scope).kind, ValueKind::Call(s) if bare(s));
            if !bare(c) || !named_tensor || defined.contains(&pname.as_str()) {
                continue;
            }
            let src = Src::Ref {
                cands: scope.cands(&c.name.name),
                ident: c.name.clone(),
            };
            self.names
                .entry(inner.full(&pname))
                .or_insert((src, c.name.span));
        }
    }

    /// A block call's parameter values: its arguments (block parameters of the caller
    /// substituted), then the defaults; `None` after reporting any that do not fit.
    fn bind_params(
        &mut self,
        block: &BlockDef,
        call: &Call,
        scope: &Scope,
    ) -> Option<HashMap<String, Value>> {
        let mut bound: HashMap<String, Value> = HashMap::new();
        let mut pos = 0;
        let mut ok = true;
        for a in &call.args {
            let v = self.subst(&a.value, scope);
            let pname = match &a.key {
                Some(k) => {
                    if !block.params.iter().any(|p| p.name.name == k.name) {
                        let mut d = Diagnostic::error(format!(
                            "block `{}` has no parameter `{}`",
                            block.name.name, k.name
                        ))
                        .at(k.span, "unknown parameter");
                        if let Some(s) =
                            did_you_mean(&k.name, block.params.iter().map(|p| p.name.name.as_str()))
                        {
                            d = d.help(format!("did you mean `{s}`?"));
                        }
                        self.errors.push(d);
                        ok = false;
                        continue;
                    }
                    k.name.clone()
                }
                None => match block.params.get(pos) {
                    Some(p) => {
                        pos += 1;
                        p.name.name.clone()
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "block `{}` takes {} parameter(s)",
                                block.name.name,
                                block.params.len()
                            ))
                            .at(a.value.span, "extra argument")
                            .also(block.name.span, "block defined here"),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            bound.insert(pname, v);
        }
        for p in &block.params {
            if !bound.contains_key(&p.name.name) {
                match &p.default {
                    Some(d) => {
                        bound.insert(p.name.name.clone(), d.clone());
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "block `{}` is missing parameter `{}`",
                                block.name.name, p.name.name
                            ))
                            .at(call.span, "missing argument")
                            .also(p.name.span, "parameter declared here"),
                        );
                        ok = false;
                    }
                }
            }
        }
        ok.then_some(bound)
    }
}
