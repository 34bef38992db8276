//! One chain statement (`name = x -> op(...) -> block(...)`): each call becomes a node, a block
//! expansion or (first) a reference. The statement's name goes to its main call's node, the
//! others are named `name.op` (`name.op2`, ...), or Keras-style (`relu_1`) when it has none.

use super::{Builder, Scope, Src};
use crate::ast::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{Node, Stats};
use crate::ops;
use crate::ops::registry::{self, canonical_op, is_op, takes_named_inputs};
use std::collections::HashMap;

/// A chain's progress through its calls.
struct ChainState<'c> {
    /// The statement's full name, if it has one.
    full: Option<String>,
    /// The call whose node takes the statement's name.
    main: Option<usize>,
    /// What the next call reads.
    cur: Option<Src>,
    /// Whether a call failed or reads from a failed statement: later calls are still checked
    /// but add no nodes.
    poisoned: bool,
    /// Calls of each op (and block) so far, numbering `name.op2`.
    seen_ops: HashMap<&'c str, u32>,
    /// Block calls so far.
    blocks: u32,
}

impl Builder<'_> {
    pub(super) fn chain(
        &mut self,
        name: Option<&Ident>,
        calls: &[Call],
        annot: Option<&ShapeLit>,
        scope: &Scope,
        prev: Option<Src>,
    ) -> Option<Src> {
        let main = calls
            .iter()
            .position(|c| registry::is_main_call(&c.name.name))
            .or_else(|| calls.iter().position(|c| is_op(&c.name.name)));
        let mut st = ChainState {
            full: name.map(|n| scope.full(&n.name)),
            main,
            cur: prev,
            poisoned: false,
            seen_ops: HashMap::new(),
            blocks: 0,
        };
        for (i, call) in calls.iter().enumerate() {
            let cname = call.name.name.as_str();
            if i == 0 && self.is_ref(call) {
                let src = Src::Ref {
                    cands: scope.cands(cname),
                    ident: call.name.clone(),
                };
                if calls.len() == 1 {
                    self.alone.insert(call.name.span);
                }
                self.refs.push(src.clone());
                st.cur = Some(src);
                continue;
            }
            if let Some(block) = self.blocks.get(cname).copied() {
                // A block alone in a named chain (with no layer taking the name) takes the
                // statement's name as its scope; otherwise `name.block/`, as a layer's
                // parameters are `name.weight` (`h = dense(64) -> layernorm(64) -> gelu`).
                st.blocks += 1;
                let k = st.seen_ops.entry(cname).or_insert(0);
                *k += 1;
                let inner = match (&st.full, st.blocks, *k) {
                    (Some(f), 1, _) if st.main.is_none() => Some(f.clone()),
                    (Some(f), _, 1) => Some(format!("{f}.{cname}")),
                    (Some(f), _, k) => Some(format!("{f}.{cname}{k}")),
                    (None, _, _) => None,
                };
                st.cur = self.block_call(block, call, inner.as_deref(), scope, st.cur.take());
                if st.cur.is_none() {
                    st.poisoned = true;
                }
                continue;
            }
            if !is_op(cname) {
                self.unknown_op(&call.name, "not an op or block");
                st.poisoned = true;
                continue;
            }
            self.op_call(i, call, scope, &mut st)?;
        }
        self.finish_chain(st, name, annot)
    }

    /// A bare name that is neither an op nor a block: a reference to a layer.
    fn is_ref(&self, c: &Call) -> bool {
        !c.parens
            && c.args.is_empty()
            && !is_op(&c.name.name)
            && !self.blocks.contains_key(&c.name.name)
    }

    /// An unknown op `name`, with the registry's (and the blocks') "did you mean".
    pub(super) fn unknown_op(&mut self, name: &Ident, label: &str) {
        let cname = name.name.as_str();
        let mut d = Diagnostic::error(format!("unknown op `{cname}`")).at(name.span, label);
        let known: Vec<&str> = registry::names()
            .chain(self.blocks.keys().map(|s| s.as_str()))
            .collect();
        d = match did_you_mean(cname, known) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!(
                "the ops are: {}",
                registry::names().collect::<Vec<_>>().join(", ")
            )),
        };
        self.errors.push(d);
    }

    /// Adds the node of the chain's `i`th call, an op; `None` when the network outgrows its
    /// node budget (which ends the chain).
    fn op_call<'c>(
        &mut self,
        i: usize,
        call: &'c Call,
        scope: &Scope,
        st: &mut ChainState<'c>,
    ) -> Option<()> {
        let op_name = canonical_op(&call.name.name);
        let (refs, settings) = self.split_args(call, op_name, scope);
        let Some(spec) = ops::parse_op(call, &settings, self.errors) else {
            st.poisoned = true;
            return Some(());
        };
        if matches!(st.cur, Some(Src::Poisoned)) || refs.iter().any(|r| matches!(r, Src::Poisoned))
        {
            // Fed by a statement that already failed: nothing new to report.
            st.poisoned = true;
        }
        let Some(inputs) = self.op_inputs(op_name, call, refs, st) else {
            return Some(());
        };
        if st.poisoned {
            return Some(());
        }
        let node_name = self.node_name(i, op_name, scope, st);
        let auto = st.full.is_none().then(|| node_name.clone());
        let idx = self.add_node(Node {
            name: node_name,
            op: spec.op,
            span: call.span,
            weight_init: spec.weight_init,
            bias_init: spec.bias_init,
            expect: None,
            shape: vec![],
            batched: true,
            stats: Stats::default(),
            params: vec![],
        })?;
        for (slot, src) in inputs.into_iter().enumerate() {
            match src {
                Src::Node(n) => {
                    self.graph.add_edge(n, idx, slot);
                }
                r => self.pending.push((idx, slot, r)),
            }
        }
        if let Some(a) = auto {
            // Auto-named layers can be referred to by the name `check` shows.
            self.names.insert(a, (Src::Node(idx), call.span));
        }
        st.cur = Some(Src::Node(idx));
        Some(())
    }

    /// A call's arguments, block parameters substituted, split into the input names an op with
    /// named inputs takes and its settings.
    fn split_args(&self, call: &Call, op_name: &str, scope: &Scope) -> (Vec<Src>, Vec<Arg>) {
        let mut refs = vec![];
        let mut settings = vec![];
        for a in &call.args {
            let v = self.subst(&a.value, scope);
            match (&a.key, &v.kind) {
                (None, ValueKind::Call(c))
                    if takes_named_inputs(op_name) && !c.parens && c.args.is_empty() =>
                {
                    // A block parameter naming a tensor is looked up as written: inside the
                    // block it is a name resolving to the caller's layer (`bind_tensors`).
                    let written = match &a.value.kind {
                        ValueKind::Call(w) if !w.parens && w.args.is_empty() => w,
                        _ => c,
                    };
                    refs.push(Src::Ref {
                        cands: scope.cands(&written.name.name),
                        ident: written.name.clone(),
                    })
                }
                _ => settings.push(Arg {
                    key: a.key.clone(),
                    value: v,
                }),
            }
        }
        (refs, settings)
    }

    /// What an op call reads: its named inputs (after the chain's value when fewer than two are
    /// named), or the chain's value. `None`, reported unless the chain already failed, when
    /// there are too few.
    fn op_inputs(
        &mut self,
        op_name: &str,
        call: &Call,
        refs: Vec<Src>,
        st: &mut ChainState,
    ) -> Option<Vec<Src>> {
        if registry::takes_no_input(op_name) {
            return Some(vec![]);
        }
        if takes_named_inputs(op_name) {
            let mut v = refs;
            if v.len() < 2 {
                if let Some(c) = st.cur.clone() {
                    v.insert(0, c);
                }
            }
            if v.len() < 2 && !st.poisoned {
                self.errors.push(
                    Diagnostic::error(format!("`{op_name}` needs at least two inputs"))
                        .at(call.span, "one input or none")
                        .help(format!("name them: `{op_name}(a, b)`")),
                );
                st.poisoned = true;
                return None;
            }
            return Some(v);
        }
        match st.cur.clone() {
            Some(c) => Some(vec![c]),
            None => {
                if !st.poisoned {
                    self.errors.push(
                        Diagnostic::error(format!("`{op_name}` has no input"))
                            .at(call.span, "nothing comes before this")
                            .help("declare an `input` first, or name the input: `x -> op(...)`"),
                    );
                }
                st.poisoned = true;
                None
            }
        }
    }

    /// The name of the node of the chain's `i`th call.
    fn node_name<'c>(
        &mut self,
        i: usize,
        op_name: &'c str,
        scope: &Scope,
        st: &mut ChainState<'c>,
    ) -> String {
        let k = st.seen_ops.entry(op_name).or_insert(0);
        *k += 1;
        match &st.full {
            Some(f) if Some(i) == st.main => f.clone(),
            Some(f) if *k == 1 => format!("{f}.{op_name}"),
            Some(f) => format!("{f}.{op_name}{k}"),
            // Auto names (Keras style, `relu_1`) are unique without the repeat suffix.
            None => self.fresh_name(&format!("{}{}", scope.prefix, op_name)),
        }
    }

    /// Ends a chain: checks its annotation and defines the statement's name.
    fn finish_chain(
        &mut self,
        st: ChainState,
        name: Option<&Ident>,
        annot: Option<&ShapeLit>,
    ) -> Option<Src> {
        let ChainState {
            full,
            cur,
            poisoned,
            ..
        } = st;
        if poisoned {
            // Still define the name so later statements do not report it as undefined.
            if let (Some(f), Some(n)) = (full, name) {
                self.names.entry(f).or_insert((Src::Poisoned, n.span));
            }
            return Some(Src::Poisoned);
        }
        if let Some(a) = annot {
            match &cur {
                Some(Src::Node(n)) => self.graph[*n].expect = Some(a.clone()),
                _ => self.errors.push(
                    Diagnostic::error("a shape annotation needs a layer to check")
                        .at(a.span, "nothing computed here"),
                ),
            }
        }
        if let (Some(f), Some(n), Some(c)) = (full, name, cur.clone()) {
            self.define(f, c, n.span);
        }
        cur
    }
}
