//! IR nodes that run as tensor primitives: a primitive, an `add` that broadcasts, a `concat`
//! that repeats a tensor over the batch. As on the CPU executor, each node becomes a small prim
//! graph (a leaf per input, then the node; `ops::prim::lower`) and its backward the derived
//! gradient graph (`prim::grad::backward`); here every computed node of those graphs is one
//! generated kernel (`kernels::prim`) over tensors planned like any other. A reshape is the
//! same buffer; constants and the causal mask are inlined into the kernels that read them.

use super::{numel, LowerError, NodeCx};
use crate::ir::Network;
use crate::kernels::prim::{node_kernel, Fused, Operand, Src};
use crate::kernels::{copy, Store};
use crate::ops::prim::{lower, shape_of, PrimOp};
use crate::prim::{grad, Graph, NodeId, Prim};
use crate::program::{Builder, Kind, ParamSet, TensorId};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// The prim op an IR node runs as, when it runs as one (`region::runs_as`).
pub(super) fn prim_op(net: &Network, n: NodeIndex) -> Option<PrimOp> {
    crate::region::runs_as(net, n)
}

/// Elements of node `i`'s value at `batch` (a tensor without the batch axis is one copy).
pub(super) fn value_len(net: &Network, i: NodeIndex, batch: u64) -> u64 {
    let x = &net.graph[i];
    numel(&x.shape) * if x.batched { batch } else { 1 }
}

/// An IR node's prim graph: a leaf per input, then the node (`y`).
struct NodeGraph {
    g: Graph,
    leaves: Vec<NodeId>,
    y: NodeId,
}

fn node_graph(net: &Network, n: NodeIndex, op: &PrimOp) -> Result<NodeGraph, LowerError> {
    let name = &net.graph[n].name;
    let err = |e: crate::prim::PrimError| LowerError::Other(format!("layer `{name}`: {}", e.0));
    let mut g = Graph::default();
    let mut leaves = vec![];
    for (k, i) in net.inputs_of(n).into_iter().enumerate() {
        let x = &net.graph[i];
        let leaf = g.input_shaped(&format!("in{k}"), shape_of(&x.shape, x.batched));
        leaves.push(leaf.map_err(err)?);
    }
    let y = lower(&mut g, op, &leaves, name).map_err(err)?;
    Ok(NodeGraph { g, leaves, y })
}

/// What a prim node's value is on the device: a tensor, or an expression kernels inline.
#[derive(Debug, Clone)]
pub(super) enum Val {
    T(TensorId),
    Inline(Src),
}

/// One evaluation of prim graph nodes into the program: the values so far, and the names and
/// label the tensors and dispatches get.
pub(super) struct Eval<'a> {
    pub(super) g: &'a Graph,
    pub(super) batch: usize,
    pub(super) vals: Vec<Option<Val>>,
    /// The prefix of its tensors' names, and the nodes whose tensors take names of their own
    /// (an IR node's value: `net:node`).
    pub(super) scope: String,
    pub(super) names: Vec<(NodeId, String)>,
    pub(super) label: String,
    /// Elementwise nodes computed inside the kernels that read them, never stored.
    pub(super) fused: Vec<bool>,
}

/// The buffers a kernel may read through fused nodes: with the mirror of an accumulated
/// result, within WebGPU's guaranteed 4 storage textures per stage (the storage-texture read
/// path). A node that reads more by itself (`where` of three tensors) keeps them.
const MAX_READS: usize = 3;

/// Whether a node can be computed inside the kernel that reads it: elementwise, or an expand.
fn fusable(p: &Prim) -> bool {
    matches!(
        p,
        Prim::Unary(_) | Prim::Binary(_) | Prim::Compare(_) | Prim::Where | Prim::Expand
    )
}

/// Whether a node reads its inputs at indices a fused input can be computed at (elementwise
/// nodes and reductions; the others read their operands from memory).
fn reads_by_index(p: &Prim) -> bool {
    fusable(p) || matches!(p, Prim::Reduce { .. })
}

impl Eval<'_> {
    fn dims(&self, i: NodeId) -> Vec<usize> {
        self.g.shape(i).at(self.batch)
    }

    /// The nodes `want` depends on (themselves included) that are not valued yet.
    fn needed(&self, want: &[NodeId]) -> Vec<bool> {
        let mut need = vec![false; self.g.nodes.len()];
        for &w in want {
            need[w] = true;
        }
        for i in (0..self.g.nodes.len()).rev() {
            if need[i] && self.vals[i].is_none() {
                for &a in &self.g.nodes[i].inputs {
                    need[a] = true;
                }
            }
        }
        (0..need.len())
            .map(|i| need[i] && self.vals[i].is_none())
            .collect()
    }
}

impl Eval<'_> {
    /// How a kernel reads node `a`: a tensor (bound, in the order `kernels::prim::buffers`
    /// lists them), an inlined constant or mask, or a fused node computed in place.
    fn operand(&self, a: NodeId, bindings: &mut Vec<TensorId>) -> Operand {
        let src = match &self.vals[a] {
            // A tensor already bound (read along another path of a fused expression) is
            // read through its binding: WebGPU limits a stage's storage buffers (lavapipe:
            // 32), and a fused backward reads the same stored node many times.
            Some(Val::T(t)) => match bindings.iter().position(|b| b == t) {
                Some(k) => Src::Again(k),
                None => {
                    bindings.push(*t);
                    Src::Buffer
                }
            },
            Some(Val::Inline(s)) => s.clone(),
            None => Src::Fused(Box::new(Fused {
                prim: self.g.nodes[a].prim.clone(),
                ins: (self.g.nodes[a].inputs.iter())
                    .map(|&x| self.operand(x, bindings))
                    .collect(),
            })),
        };
        Operand {
            src,
            dims: self.dims(a),
        }
    }

    /// Which needed nodes are fused into their readers: elementwise, not wanted, read only
    /// by nodes that read by index, and no kernel left reading more than [`MAX_READS`]
    /// buffers (a root over the bound un-fuses its fused inputs, until none is).
    fn plan_fusion(&mut self, need: &[bool], want: &[NodeId]) {
        let nodes = &self.g.nodes;
        let n = nodes.len();
        let mut readers: Vec<Vec<NodeId>> = vec![vec![]; n];
        for i in (0..n).filter(|&i| need[i]) {
            nodes[i].inputs.iter().for_each(|&a| readers[a].push(i));
        }
        let mut fused: Vec<bool> = (0..n)
            .map(|i| {
                need[i]
                    && fusable(&nodes[i].prim)
                    && !want.contains(&i)
                    && readers[i].iter().all(|&r| reads_by_index(&nodes[r].prim))
            })
            .collect();
        loop {
            let mut changed = false;
            for i in 0..n {
                if need[i] && !fused[i] && self.reads_of(i, &fused).len() > MAX_READS {
                    for &a in &nodes[i].inputs {
                        changed |= std::mem::replace(&mut fused[a], false);
                    }
                }
            }
            if !changed {
                break;
            }
        }
        self.fused = fused;
    }

    /// The stored nodes the kernel of node `i` reads, through its fused inputs.
    fn reads_of(&self, i: NodeId, fused: &[bool]) -> Vec<NodeId> {
        let mut out = vec![];
        let mut stack: Vec<NodeId> = self.g.nodes[i].inputs.clone();
        while let Some(a) = stack.pop() {
            match (&self.g.nodes[a].prim, fused[a]) {
                (_, true) => stack.extend(&self.g.nodes[a].inputs),
                (Prim::Const(_) | Prim::CausalMask { .. }, false) => {}
                (_, false) if !out.contains(&a) => out.push(a),
                (_, false) => {}
            }
        }
        out
    }
}

impl Builder {
    /// Emits the kernel of prim node `i` of `e` into `(dst, store)`.
    fn emit_prim(&mut self, e: &Eval, i: NodeId, prim: &Prim, dst: (TensorId, Store)) {
        let node = &e.g.nodes[i];
        let mut bindings = vec![];
        let ops: Vec<Operand> = (node.inputs.iter())
            .map(|&a| e.operand(a, &mut bindings))
            .collect();
        bindings.push(dst.0);
        let k = node_kernel(prim, &ops, &e.dims(i), dst.1, self.reads())
            .expect("computed nodes have kernels");
        self.emit(k, bindings, format!("{} {}", e.label, prim.name()));
    }

    /// Evaluates nodes `want` of `e`'s graph, each into its destination when it has one
    /// (written there directly when nothing else reads it, else copied).
    pub(super) fn eval_prim(&mut self, e: &mut Eval, want: &[(NodeId, Option<(TensorId, Store)>)]) {
        let ids: Vec<NodeId> = want.iter().map(|w| w.0).collect();
        let need = e.needed(&ids);
        let mut readers = vec![0usize; e.g.nodes.len()];
        for (i, n) in e.g.nodes.iter().enumerate() {
            if need[i] {
                n.inputs.iter().for_each(|&a| readers[a] += 1);
            }
        }
        e.plan_fusion(&need, &ids);
        let mut direct = vec![false; want.len()];
        for i in 0..e.g.nodes.len() {
            if !need[i] || e.fused[i] {
                continue;
            }
            let node = &e.g.nodes[i];
            let inline = match &node.prim {
                Prim::Const(c) => Some(Val::Inline(Src::Const(*c))),
                Prim::CausalMask { t } => Some(Val::Inline(Src::Causal(*t))),
                Prim::Reshape => match &e.vals[node.inputs[0]] {
                    Some(v @ (Val::T(_) | Val::Inline(Src::Const(_)))) => Some(v.clone()),
                    _ => None,
                },
                _ => None,
            };
            if let Some(v) = inline {
                e.vals[i] = Some(v);
                continue;
            }
            // A destination of its own, used once and read by nothing else: written in place.
            let mine = want.iter().position(|w| w.0 == i).filter(|&k| {
                let dst = want[k].1.map(|d| d.0);
                dst.is_some()
                    && readers[i] == 0
                    && want.iter().filter(|w| w.1.map(|d| d.0) == dst).count() == 1
            });
            let dst = match mine.and_then(|k| want[k].1) {
                Some(d) => d,
                None => {
                    let name = match e.names.iter().find(|n| n.0 == i) {
                        Some(n) => n.1.clone(),
                        None => format!("{}%{i}", e.scope),
                    };
                    let len = e.g.shape(i).numel(e.batch) as u64;
                    (self.tensor(name, len, Kind::Activation), Store::Write)
                }
            };
            if let Some(k) = mine {
                direct[k] = true;
            }
            self.emit_prim(e, i, &node.prim, dst);
            e.vals[i] = Some(Val::T(dst.0));
        }
        for (k, &(i, dst)) in want.iter().enumerate() {
            if let (false, Some(d)) = (direct[k], dst) {
                self.store_val(e, i, d);
            }
        }
    }

    /// Puts the value of node `i` into `dst` (copied, or a constant made a tensor).
    pub(super) fn store_val(&mut self, e: &Eval, i: NodeId, (dst, store): (TensorId, Store)) {
        let len = e.g.shape(i).numel(e.batch) as u64;
        match e.vals[i].clone().expect("evaluated") {
            Val::T(t) => self.emit(
                copy(len, store, self.reads()),
                vec![t, dst],
                format!("{} copy", e.label),
            ),
            Val::Inline(src) => {
                let dims = e.dims(i);
                let op = Operand {
                    src,
                    dims: dims.clone(),
                };
                let k = node_kernel(&Prim::Expand, &[op], &dims, store, self.reads())
                    .expect("expand has a kernel");
                self.emit(k, vec![dst], format!("{} fill", e.label));
            }
        }
    }

    /// The forward value of a node that runs as a primitive (a `param` node's is its tensor).
    pub(super) fn forward_prim(
        &mut self,
        at: &NodeCx,
        op: &PrimOp,
        x: &[TensorId],
        params: &ParamSet,
    ) -> Result<TensorId, LowerError> {
        if let PrimOp::Param { .. } = op {
            return Ok(params.get(&at.node.name).tensor);
        }
        let ng = node_graph(at.net, at.n, op)?;
        let mut e = Eval {
            g: &ng.g,
            batch: at.batch as usize,
            vals: vec![None; ng.g.nodes.len()],
            scope: at.scope(),
            names: vec![(ng.y, at.scope())],
            label: at.label("forward"),
            fused: vec![],
        };
        for (&l, &t) in ng.leaves.iter().zip(x) {
            e.vals[l] = Some(Val::T(t));
        }
        self.eval_prim(&mut e, &[(ng.y, None)]);
        Ok(match e.vals[ng.y].clone().expect("evaluated") {
            Val::T(t) => t,
            Val::Inline(_) => {
                let len = value_len(at.net, at.n, at.batch);
                let t = self.tensor(at.scope(), len, Kind::Activation);
                self.store_val(&e, ng.y, (t, Store::Write));
                t
            }
        })
    }
}

/// The gradient slot of input `k` of the node being differentiated, when it wants one; asked
/// only for inputs the derived graph gives a gradient (ids, masks and comparisons take none).
pub(super) type Slot<'a> = dyn FnMut(&mut Builder, usize) -> Option<(TensorId, Store)> + 'a;

impl Builder {
    /// The gradients at a primitive node's inputs (into their slots) from `dy` at its output,
    /// reading its inputs' and its own forward `values`; a `param` node's gradient is `dy`,
    /// written (or, after a first micro-batch, added) to the parameter's gradient.
    pub(super) fn backward_prim(
        &mut self,
        at: &NodeCx,
        op: &PrimOp,
        (params, values): (&ParamSet, &HashMap<NodeIndex, TensorId>),
        dy: TensorId,
        slot: &mut Slot,
    ) {
        if let PrimOp::Param { .. } = op {
            if let Some(g) = params.get(&at.node.name).grad {
                let len = value_len(at.net, at.n, at.batch);
                let k = copy(len, self.param_store(), self.reads());
                self.emit(k, vec![dy, g], at.label("backward param"));
            }
            return;
        }
        let Ok(mut ng) = node_graph(at.net, at.n, op) else {
            return; // `forward` reported it
        };
        let y_shape = ng.g.shape(ng.y).clone();
        let Ok(gy) = ng.g.input_shaped("dy", y_shape) else {
            return;
        };
        let Ok(grads) = grad::backward(&mut ng.g, ng.y, gy, &ng.leaves) else {
            return;
        };
        let mut want: Vec<(NodeId, Option<(TensorId, Store)>)> = vec![];
        for (k, g) in grads.iter().enumerate() {
            if let Some((g, s)) = g.and_then(|g| Some((g, slot(self, k)?))) {
                want.push((g, Some(s)));
            }
        }
        let mut e = Eval {
            g: &ng.g,
            batch: at.batch as usize,
            vals: vec![None; ng.g.nodes.len()],
            scope: format!("{}.grad", at.scope()),
            names: vec![],
            label: at.label("backward"),
            fused: vec![],
        };
        for (&l, i) in ng.leaves.iter().zip(&at.ins) {
            e.vals[l] = Some(Val::T(values[i]));
        }
        e.vals[ng.y] = Some(Val::T(values[&at.n]));
        e.vals[gy] = Some(Val::T(dy));
        self.eval_prim(&mut e, &want);
    }
}
