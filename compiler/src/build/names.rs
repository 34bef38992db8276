//! Names in a network: fresh auto names, definitions (each once), adding nodes within the size
//! budget, and resolving references (through aliases, reporting cycles and undefined names).

use super::{Builder, Src, MAX_NODES};
use crate::ast::Span;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Node;
use crate::ops::registry::{self, is_op};
use petgraph::graph::NodeIndex;
use std::collections::HashSet;

impl Builder<'_> {
    pub(super) fn fresh_name(&mut self, base: &str) -> String {
        let c = self.counters.entry(base.to_string()).or_insert(0);
        loop {
            *c += 1;
            let name = format!("{base}_{c}");
            if !self.used.contains(&name) && !self.names.contains_key(&name) {
                return name;
            }
        }
    }

    pub(super) fn define(&mut self, name: String, src: Src, span: Span) {
        if let Some((_, prev)) = self.names.get(&name) {
            self.errors.push(
                Diagnostic::error(format!("`{name}` is defined twice"))
                    .at(span, "second definition")
                    .also(*prev, "first defined here")
                    .help("give each statement its own name"),
            );
            return;
        }
        self.names.insert(name, (src, span));
    }

    pub(super) fn add_node(&mut self, node: Node) -> Option<NodeIndex> {
        if self.graph.node_count() >= MAX_NODES {
            if !self.too_big {
                self.too_big = true;
                self.errors.push(
                    Diagnostic::error(format!(
                        "the network expands to more than {MAX_NODES} layers"
                    ))
                    .at(node.span, "while expanding this")
                    .help("check `repeat` counts"),
                );
            }
            return None;
        }
        self.used.insert(node.name.clone());
        Some(self.graph.add_node(node))
    }

    /// The top-level statement names that stand for a node named otherwise, resolved without
    /// reporting (every reference was resolved, and reported, before).
    pub(super) fn statement_nodes(&self) -> Vec<(String, NodeIndex)> {
        let mut out = vec![];
        for (name, (src, _)) in &self.names {
            if name.contains('/') {
                continue;
            }
            let mut cur = src.clone();
            for _ in 0..64 {
                match cur {
                    Src::Node(n) => {
                        if self.graph[n].name != *name {
                            out.push((name.clone(), n));
                        }
                        break;
                    }
                    Src::Poisoned => break,
                    Src::Ref { ref cands, .. } => {
                        match cands.iter().find_map(|c| self.names.get(c)) {
                            Some((next, _)) => cur = next.clone(),
                            None => break,
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    pub(super) fn resolve(&mut self, src: &Src) -> Option<NodeIndex> {
        let mut cur = src.clone();
        let mut seen = HashSet::new();
        loop {
            match cur {
                Src::Node(n) => return Some(n),
                Src::Poisoned => return None,
                Src::Ref {
                    ref cands,
                    ref ident,
                } => {
                    let found = cands
                        .iter()
                        .find_map(|c| self.names.get(c).map(|(s, _)| (c.clone(), s.clone())));
                    match found {
                        Some((name, next)) => {
                            if !seen.insert(name.clone()) {
                                if !self.reported.insert(ident.span) {
                                    return None;
                                }
                                self.errors.push(
                                    Diagnostic::error(format!(
                                        "`{}` is defined as itself",
                                        ident.name
                                    ))
                                    .at(ident.span, "alias cycle"),
                                );
                                return None;
                            }
                            cur = next;
                        }
                        None => {
                            if !self.reported.insert(ident.span) {
                                return None;
                            }
                            let ident = ident.clone();
                            self.undefined(&ident);
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// The error for a reference to `ident`, which nothing defines: an unknown op for a bare
    /// name standing alone that no layer's name is close to, else an undefined name.
    fn undefined(&mut self, ident: &crate::ast::Ident) {
        let mut layers: Vec<&str> = self.names.keys().map(|s| s.as_str()).collect();
        layers.sort_unstable();
        if self.alone.contains(&ident.span)
            && !is_op(&ident.name)
            && did_you_mean(&ident.name, layers.iter().copied()).is_none()
        {
            self.unknown_op(ident, "not an op, block or layer");
            return;
        }
        let mut d = Diagnostic::error(format!("undefined name `{}`", ident.name))
            .at(ident.span, "not defined in this network");
        if is_op(&ident.name) {
            // An op's name where a layer's is wanted: suggesting the op
            // itself ("did you mean `relu`?") would say nothing.
            d = d.help(format!(
                "`{}` is an op, not a layer; name a layer here ({})",
                ident.name,
                match layers.len() {
                    0 => "none is defined yet".to_string(),
                    n if n <= 8 => layers.join(", "),
                    _ => format!("{}, ...", layers[..8].join(", ")),
                }
            ));
        } else {
            let known = layers.iter().copied().chain(registry::names());
            if let Some(s) = did_you_mean(&ident.name, known) {
                d = d.help(format!("did you mean `{s}`?"));
            }
        }
        self.errors.push(d);
    }
}
