//! One IR node that is a primitive (or an `add` that broadcasts) on the CPU: its forward value
//! and its derived backward, each through a small prim graph of the node over leaves that
//! stand for its inputs.

use super::eval;
use crate::cpu::Real;
use ndarray::Array2;
use netc_compiler::ops::prim::{lower, shape_of, PrimOp};
use netc_compiler::prim::grad::backward as derive;
use netc_compiler::prim::{Graph, NodeId};
use std::collections::HashMap;

/// An input of the node: its value ([batch, per-example] or [1, n] without the batch axis),
/// its IR shape and whether it has the batch axis.
pub struct In<'a, T> {
    pub value: &'a Array2<T>,
    pub shape: &'a [u64],
    pub batched: bool,
}

/// The node's graph: a leaf per input, then the node; `(graph, leaves, output)`.
fn graph<T>(op: &PrimOp, name: &str, ins: &[In<T>]) -> Result<(Graph, Vec<NodeId>, NodeId), String> {
    let mut g = Graph::default();
    let mut leaves = vec![];
    for (i, x) in ins.iter().enumerate() {
        let leaf = g.input_shaped(&format!("in{i}"), shape_of(x.shape, x.batched));
        leaves.push(leaf.map_err(|e| e.0)?);
    }
    let y = lower(&mut g, op, &leaves, name).map_err(|e| e.0)?;
    Ok((g, leaves, y))
}

/// The batch size of a step: the rows of any batched input (1 when none has the batch).
fn batch_of<T>(ins: &[In<T>]) -> usize {
    ins.iter()
        .find(|x| x.batched)
        .map_or(1, |x| x.value.nrows())
}

fn feeds<T: Real>(leaves: &[NodeId], ins: &[In<T>]) -> HashMap<NodeId, Vec<T>> {
    leaves
        .iter()
        .zip(ins)
        .map(|(&l, x)| (l, x.value.iter().copied().collect()))
        .collect()
}

/// A flat value as the executor holds it: [batch, rest] when batched, else [1, n].
fn rows<T: Real>(v: Vec<T>, batch: usize, batched: bool) -> Array2<T> {
    let b = if batched { batch } else { 1 };
    let cols = v.len() / b.max(1);
    Array2::from_shape_vec((b, cols), v).expect("length is batch x per-example")
}

/// The node's value; `param` is the tensor of a `param` node.
pub fn forward<T: Real>(
    op: &PrimOp,
    name: &str,
    ins: &[In<T>],
    param: Option<&[T]>,
) -> Result<Array2<T>, String> {
    let (g, leaves, y) = graph(op, name, ins)?;
    let batch = batch_of(ins);
    let mut f = feeds(&leaves, ins);
    if let Some(p) = param {
        f.insert(y, p.to_vec());
    }
    let v = eval(&g, batch, &f, &[y]).map_err(|e| e.to_string())?;
    let batched = g.shape(y).is_batched();
    Ok(rows(v.into_iter().next().unwrap_or_default(), batch, batched))
}

/// Gradients at the node's inputs (None where an input takes none: ids, masks) for the
/// gradient `dy` at its output. A `param` node's gradient is `dy` itself.
pub fn backward<T: Real>(
    op: &PrimOp,
    name: &str,
    ins: &[In<T>],
    dy: &Array2<T>,
) -> Result<Vec<Option<Array2<T>>>, String> {
    let (mut g, leaves, y) = graph(op, name, ins)?;
    let batch = batch_of(ins);
    let gy = g
        .input_shaped("dy", g.shape(y).clone())
        .map_err(|e| e.0)?;
    let grads = derive(&mut g, y, gy, &leaves).map_err(|e| e.0)?;
    let mut f = feeds(&leaves, ins);
    f.insert(gy, dy.iter().copied().collect());
    let want: Vec<NodeId> = grads.iter().flatten().copied().collect();
    let mut vals = eval(&g, batch, &f, &want)
        .map_err(|e| e.to_string())?
        .into_iter();
    Ok(grads
        .iter()
        .zip(ins)
        .map(|(gnode, x)| {
            gnode.map(|_| rows(vals.next().unwrap_or_default(), batch, x.batched))
        })
        .collect())
}
