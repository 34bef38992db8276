//! Fused regions on the GPU path ([`crate::region`]): the nodes of a maximal run of
//! primitives lower as one prim graph, like the CPU executor runs them, so the kernels of a
//! layernorm, an attention core or a residual chain fuse across IR nodes (elementwise nodes
//! computed inside the kernels that read them; `prim::Eval`). The forward runs when the
//! region's last node's turn comes and gives tensors to its outputs only (what later nodes
//! read); its backward runs when the reverse walk first meets one of its nodes, every
//! output's gradient gathered by then (their readers all come later in topological order).

use super::prim::{value_len, Eval, Slot, Val};
use crate::ir::Network;
use crate::kernels::prim::Src;
use crate::kernels::Store;
use crate::program::{Builder, Kind, TensorId};
use crate::region::Region;
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// What a region's forward leaves for its backward: the tensor of every graph node it
/// stored (outputs and the nodes not computed inside their readers), by graph node.
pub type Stored = Vec<Option<TensorId>>;

/// `net:node` of a region's last node: the prefix of its internal tensors' names.
fn scope(net: &Network, r: &Region) -> String {
    let last = r.nodes.last().expect("a region holds nodes");
    format!("{}:{}", net.name, net.graph[*last].name)
}

/// `net.node phase` of a region's last node: its dispatches' label.
fn label(net: &Network, r: &Region, phase: &str) -> String {
    let last = r.nodes.last().expect("a region holds nodes");
    format!("{}.{} {phase}", net.name, net.graph[*last].name)
}

impl Builder {
    /// The forward of region `r` reading `values` (its inputs are among them): the tensor
    /// of each of its outputs, and what it stored.
    pub(super) fn forward_region(
        &mut self,
        net: &Network,
        r: &Region,
        values: &HashMap<NodeIndex, TensorId>,
        batch: u64,
    ) -> (Vec<(NodeIndex, TensorId)>, Stored) {
        let names = (r.outputs.iter())
            .map(|&(n, y)| (y, format!("{}:{}", net.name, net.graph[n].name)))
            .collect();
        let mut e = Eval {
            g: &r.graph,
            batch: batch as usize,
            vals: vec![None; r.graph.nodes.len()],
            scope: scope(net, r),
            names,
            label: label(net, r, "forward"),
            fused: vec![],
        };
        for &(i, leaf) in &r.inputs {
            e.vals[leaf] = Some(Val::T(values[&i]));
        }
        let want: Vec<_> = r.outputs.iter().map(|o| (o.1, None)).collect();
        self.eval_prim(&mut e, &want);
        let mut outs = vec![];
        for &(n, y) in &r.outputs {
            let t = match e.vals[y].clone().expect("evaluated") {
                Val::T(t) => t,
                Val::Inline(_) => {
                    let name = format!("{}:{}", net.name, net.graph[n].name);
                    let t = self.tensor(name, value_len(net, n, batch), Kind::Activation);
                    self.store_val(&e, y, (t, Store::Write));
                    t
                }
            };
            outs.push((n, t));
        }
        let stored = (e.vals.iter())
            .map(|v| match v {
                Some(Val::T(t)) => Some(*t),
                Some(Val::Inline(_)) | None => None,
            })
            .collect();
        (outs, stored)
    }

    /// The backward of region `r`: the gradients at its outputs (`dys`; an output without
    /// one reads zeros inlined into the kernels, never a buffer) give the gradients of its
    /// inputs, each into the slot `slot` returns for input `k` (None: not wanted). Reads
    /// the forward's stored tensors rather than computing them again.
    pub(super) fn backward_region(
        &mut self,
        net: &Network,
        r: &Region,
        (values, stored): (&HashMap<NodeIndex, TensorId>, &Stored),
        dys: &[Option<TensorId>],
        batch: u64,
        slot: &mut Slot,
    ) {
        let mut want = vec![];
        for (k, g) in r.grads.iter().enumerate() {
            if let Some((g, s)) = g.and_then(|g| Some((g, slot(self, k)?))) {
                want.push((g, Some(s)));
            }
        }
        if want.is_empty() {
            return;
        }
        let mut e = Eval {
            g: &r.backward,
            batch: batch as usize,
            vals: vec![None; r.backward.nodes.len()],
            scope: format!("{}.grad", scope(net, r)),
            names: vec![],
            label: label(net, r, "backward"),
            fused: vec![],
        };
        for (i, t) in stored.iter().enumerate() {
            e.vals[i] = t.map(Val::T);
        }
        for &(i, leaf) in &r.inputs {
            e.vals[leaf] = Some(Val::T(values[&i]));
        }
        for (&seed, dy) in r.seeds.iter().zip(dys) {
            e.vals[seed] = Some(match dy {
                Some(t) => Val::T(*t),
                None => Val::Inline(Src::Const(0.0)),
            });
        }
        self.eval_prim(&mut e, &want);
    }
}
