//! One IR node that is a primitive (or an `add` that broadcasts) on the CPU: its forward value
//! and its derived backward, each through a small prim graph of the node over leaves that
//! stand for its inputs.

use super::eval;
use crate::cpu::Real;
use ndarray::{Array2, ArrayView2};
use netc_compiler::ops::prim::{lower, shape_of, PrimOp};
use netc_compiler::prim::grad::backward as derive;
use netc_compiler::prim::{Graph, NodeId};
use rayon::prelude::*;
use std::collections::HashMap;

/// An input of the node: its value ([batch, per-example] or [1, n] without the batch axis),
/// its IR shape and whether it has the batch axis.
pub struct In<'a, T> {
    pub value: &'a Array2<T>,
    pub shape: &'a [u64],
    pub batched: bool,
}

/// The node's graph: a leaf per input, then the node; `(graph, leaves, output)`.
fn graph<T>(
    op: &PrimOp,
    name: &str,
    ins: &[In<T>],
) -> Result<(Graph, Vec<NodeId>, NodeId), String> {
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

/// Row ranges splitting a batch over the pool's threads: a primitive works on each example
/// alone (its reductions never cross the batch), so parts of the batch run in parallel. One
/// range when no input has the batch.
fn parts(batch: usize, batched: bool) -> Vec<(usize, usize)> {
    let k = match batched {
        true => rayon::current_num_threads().min(batch).max(1),
        false => 1,
    };
    (0..k)
        .map(|i| (i * batch / k, (i + 1) * batch / k))
        .collect()
}

/// Rows `r0..r1` of a value laid out [batch, rest], or all of it without the batch.
fn rows_of<T>(v: ArrayView2<'_, T>, batched: bool, (r0, r1): (usize, usize)) -> &[T] {
    let w = v.ncols();
    let s = v.to_slice().expect("standard layout");
    match batched {
        true => &s[r0 * w..r1 * w],
        false => s,
    }
}

/// The inputs' values for rows `r` by leaf, borrowed (the executor's arrays are in standard
/// layout).
fn feeds<'a, T: Real>(
    leaves: &[NodeId],
    ins: &[In<'a, T>],
    r: (usize, usize),
) -> HashMap<NodeId, &'a [T]> {
    leaves
        .iter()
        .zip(ins)
        .map(|(&l, x)| (l, rows_of(x.value.view(), x.batched, r)))
        .collect()
}

/// Per-part results joined: batched values one after another, others summed (a parameter's
/// gradient over the whole batch).
fn join<T: Real>(parts: Vec<Vec<T>>, batched: bool) -> Vec<T> {
    let mut it = parts.into_iter();
    let mut acc = it.next().unwrap_or_default();
    for p in it {
        match batched {
            true => acc.extend(p),
            false => acc.iter_mut().zip(p).for_each(|(a, b)| *a = *a + b),
        }
    }
    acc
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
    let batched = g.shape(y).is_batched();
    let done: Result<Vec<Vec<T>>, String> = parts(batch, batched)
        .into_par_iter()
        .map(|r| {
            let mut f = feeds(&leaves, ins, r);
            if let Some(p) = param {
                f.insert(y, p);
            }
            let v = eval(&g, r.1 - r.0, &f, &[y]).map_err(|e| e.to_string())?;
            Ok(v.into_iter().next().unwrap_or_default())
        })
        .collect();
    Ok(rows(join(done?, batched), batch, batched))
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
    let gy = g.input_shaped("dy", g.shape(y).clone()).map_err(|e| e.0)?;
    let grads = derive(&mut g, y, gy, &leaves).map_err(|e| e.0)?;
    // A view when `dy` is in standard layout (as the executor makes it), else one copy.
    let dy = dy.as_standard_layout();
    let batched = g.shape(y).is_batched();
    let want: Vec<NodeId> = grads.iter().flatten().copied().collect();
    let done: Result<Vec<Vec<Vec<T>>>, String> = parts(batch, batched)
        .into_par_iter()
        .map(|r| {
            let mut f = feeds(&leaves, ins, r);
            f.insert(gy, rows_of(dy.view(), batched, r));
            eval(&g, r.1 - r.0, &f, &want).map_err(|e| e.to_string())
        })
        .collect();
    let mut per_part: Vec<std::vec::IntoIter<Vec<T>>> =
        done?.into_iter().map(|v| v.into_iter()).collect();
    Ok(grads
        .iter()
        .zip(ins)
        .map(|(gnode, x)| {
            gnode.map(|_| {
                let pieces = per_part.iter_mut().map(|p| p.next().unwrap_or_default());
                rows(join(pieces.collect(), x.batched), batch, x.batched)
            })
        })
        .collect())
}
