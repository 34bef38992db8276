//! A fused region (`netc_compiler::region`) on the CPU: its graph evaluated tile by tile, a
//! few examples at a time, so every intermediate of a layernorm or an attention core stays in
//! the cache and each tile is one pass over the region's memory, instead of one pass over the
//! whole batch per primitive. A primitive works on each example alone (its reductions never
//! cross the batch), so tiles are independent and run in parallel; a parameter's gradient is
//! the sum of the tiles' parts.

use super::{eval_prepared, groups, prepare, Prepared};
use crate::cpu::Real;
use ndarray::Array2;
use netc_compiler::prim::fuse::Group;
use netc_compiler::prim::{Graph, NodeId};
use netc_compiler::region::Region;
use petgraph::graph::NodeIndex;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// About this many values of the largest tensor of a region per tile: 64 KiB of f32, so the
/// few intermediates alive at once stay in a core's L2 cache (1 MiB here).
const TILE_VALUES: usize = 16 * 1024;

/// Examples per tile and the number of tiles for a batch.
fn tiling(g: &Graph, batch: usize, whole: bool) -> (usize, usize) {
    if whole || batch <= 1 {
        return (batch.max(1), 1);
    }
    let widest = g
        .nodes
        .iter()
        .filter(|n| n.shape.is_batched())
        .map(|n| n.shape.numel(1))
        .max()
        .unwrap_or(1)
        .max(1);
    let threads = rayon::current_num_threads().max(1);
    let k = (TILE_VALUES / widest)
        .max(1)
        .min(batch.div_ceil(threads))
        .max(1);
    (k, batch.div_ceil(k))
}

/// Which of a region's evaluations a prepared one is for (part of its key in the region's
/// memo: the wanted values differ).
#[derive(Clone, Copy)]
enum Pass {
    Forward,
    Keeping,
    Backward,
    BackwardKeeping,
}

/// A full tile's prepared evaluation and, when the batch does not divide, the last tile's.
type Preps<T> = (Arc<Prepared<T>>, Option<Arc<Prepared<T>>>);

/// The evaluation prepared for a full tile of `k` examples (tile 0's rows) and, when the
/// batch does not divide, for the last tile's fewer rows: made at a region's first call at
/// that tile size and kept in its memo, so later steps only run it.
fn prepared<T: Real>(
    region: &Region,
    (g, groups, pass): (&Graph, &[Group], Pass),
    batch: usize,
    (k, tiles): (usize, usize),
    want: &[NodeId],
) -> Preps<T> {
    let at = |rows: usize| {
        let key = (rows as u64) << 2 | pass as u64;
        region
            .memo
            .get_or_make(key, || prepare::<T>(g, groups, rows, want))
    };
    let rest = batch - (tiles - 1) * k;
    let full = at(k.min(batch));
    let last = (tiles > 1 && rest != k).then(|| at(rest));
    (full, last)
}

/// The groups of a pass that keeps nothing (an inference forward, a backward computing
/// everything again), worked out at the region's first such call.
fn plain_groups(region: &Region, pass: Pass, g: &Graph, want: &[NodeId]) -> Arc<Vec<Group>> {
    // Below every prepared evaluation's key (those have rows >= 1).
    region.memo.get_or_make(pass as u64, || groups(g, want))
}

/// Tile `t`'s prepared evaluation: the last tile's own when it is shorter.
fn prep_of<T>(p: &Preps<T>, t: usize, tiles: usize) -> &Prepared<T> {
    match (&p.1, t + 1 == tiles) {
        (Some(last), true) => last,
        _ => &p.0,
    }
}

/// Rows `t*k .. t*k + k` (clipped to the batch) of a value laid out [batch, rest], or all of it
/// without the batch.
fn rows_of<T>(v: &Array2<T>, batched: bool, t: usize, k: usize) -> &[T] {
    let s = v
        .as_slice()
        .expect("the executor's values are in standard layout");
    match batched {
        true => {
            let w = v.ncols();
            let r0 = (t * k).min(v.nrows());
            let r1 = (r0 + k).min(v.nrows());
            &s[r0 * w..r1 * w]
        }
        false => s,
    }
}

/// A flat value as the executor holds it: [batch, rest] when batched, else [1, n].
fn rows<T: Real>(v: Vec<T>, batch: usize, batched: bool) -> Array2<T> {
    let b = if batched { batch.max(1) } else { 1 };
    let cols = v.len() / b;
    Array2::from_shape_vec((b, cols), v).expect("length is batch x per-example")
}

/// Destinations of each tile: for each wanted value, the tile's rows of its buffer (batched)
/// or, for tile 0 only, the whole buffer (a value without the batch is the same in every tile).
fn split_dsts<'a, T>(
    bufs: &'a mut [Vec<T>],
    batched: &[bool],
    batch: usize,
    (k, tiles): (usize, usize),
) -> Vec<Vec<Option<&'a mut [T]>>> {
    let mut per_tile: Vec<Vec<Option<&mut [T]>>> = (0..tiles).map(|_| vec![]).collect();
    for (buf, &b) in bufs.iter_mut().zip(batched) {
        let len = buf.len();
        let chunk = match b {
            true => (len / batch.max(1) * k).max(1),
            false => len.max(1),
        };
        let mut chunks = buf.chunks_mut(chunk);
        for dsts in per_tile.iter_mut() {
            dsts.push(chunks.next());
        }
    }
    per_tile
}

/// The region's outputs for a batch whose earlier values are in `values`; in the order of
/// `region.outputs`.
pub fn forward<T: Real>(
    region: &Region,
    values: &HashMap<NodeIndex, Array2<T>>,
    batch: usize,
) -> Result<Vec<Array2<T>>, String> {
    let want: Vec<NodeId> = region.outputs.iter().map(|o| o.1).collect();
    let groups = plain_groups(region, Pass::Forward, &region.graph, &want);
    run_forward(region, values, batch, &want, (&groups, Pass::Forward))
}

/// A training pass's region outputs, and the values it kept for the backward.
pub type Kept<T> = (Vec<Array2<T>>, Vec<Array2<T>>);

/// [`forward`] for a training pass: the outputs, then the values kept for the backward
/// (`region.kept`, in order), which [`backward`] then reads instead of computing again.
pub fn forward_keeping<T: Real>(
    region: &Region,
    values: &HashMap<NodeIndex, Array2<T>>,
    batch: usize,
) -> Result<Kept<T>, String> {
    let want: Vec<NodeId> = region
        .outputs
        .iter()
        .map(|o| o.1)
        .chain(region.kept.iter().copied())
        .collect();
    let groups = (&region.keeping_forward[..], Pass::Keeping);
    let mut all = run_forward(region, values, batch, &want, groups)?;
    let kept = all.split_off(region.outputs.len());
    Ok((all, kept))
}

fn run_forward<T: Real>(
    region: &Region,
    values: &HashMap<NodeIndex, Array2<T>>,
    batch: usize,
    want: &[NodeId],
    (groups, pass): (&[Group], Pass),
) -> Result<Vec<Array2<T>>, String> {
    let g = &region.graph;
    let (k, tiles) = tiling(g, batch, region.whole_batch());
    let batched: Vec<bool> = want.iter().map(|&w| g.shape(w).is_batched()).collect();
    let mut bufs: Vec<Vec<T>> = want
        .iter()
        .map(|&w| vec![T::zero(); g.shape(w).numel(batch)])
        .collect();
    let per_tile = split_dsts(&mut bufs, &batched, batch, (k, tiles));
    let preps = prepared(region, (g, groups, pass), batch, (k, tiles), want);
    per_tile
        .into_par_iter()
        .enumerate()
        .try_for_each(|(t, dsts)| {
            let feeds = region
                .inputs
                .iter()
                .map(|&(n, leaf)| {
                    let batched = g.shape(leaf).is_batched();
                    (leaf, rows_of(&values[&n], batched, t, k))
                })
                .collect();
            // Each wanted value goes straight to its rows of the output (a value without the
            // batch from tile 0 only: the others' are the same and dropped).
            let mut dsts = dsts;
            let prep = prep_of(&preps, t, tiles);
            eval_prepared(g, groups, prep, &feeds, want, &mut dsts).map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        })?;
    Ok(bufs
        .into_iter()
        .zip(batched)
        .map(|(v, b)| rows(v, batch, b))
        .collect())
}

/// Gradients at the region's inputs (in the order of `region.inputs`; None where an input
/// takes none) for the gradients `dys` arriving at its outputs (zeros where none arrived).
/// `kept` are the values [`forward_keeping`] kept (then the forward's outputs are read from
/// `values` too, not computed again), or None to compute everything from the inputs.
pub fn backward<T: Real>(
    region: &Region,
    values: &HashMap<NodeIndex, Array2<T>>,
    kept: Option<&[Array2<T>]>,
    dys: &[Option<Array2<T>>],
    batch: usize,
) -> Result<Vec<Option<Array2<T>>>, String> {
    let g = &region.backward;
    let (k, tiles) = tiling(g, batch, region.whole_batch());
    let zeros: Vec<Array2<T>> = region
        .seeds
        .iter()
        .zip(dys)
        .filter(|(_, d)| d.is_none())
        .map(|(&s, _)| {
            let shape = g.shape(s);
            rows(
                vec![T::zero(); shape.numel(batch)],
                batch,
                shape.is_batched(),
            )
        })
        .collect();
    let mut zero = zeros.iter();
    let dys: Vec<&Array2<T>> = dys
        .iter()
        .map(|d| {
            d.as_ref()
                .unwrap_or_else(|| zero.next().expect("one per missing"))
        })
        .collect();
    let want: Vec<NodeId> = region.grads.iter().flatten().copied().collect();
    let mut leaves: Vec<(NodeId, &Array2<T>)> = region
        .inputs
        .iter()
        .map(|&(n, leaf)| (leaf, &values[&n]))
        .chain(region.seeds.iter().copied().zip(dys))
        .collect();
    let plain;
    let (groups, pass) = match kept {
        Some(kept) => {
            let outs = region.outputs.iter().map(|&(n, y)| (y, &values[&n]));
            leaves.extend(outs.chain(region.kept.iter().copied().zip(kept)));
            (&region.keeping_backward[..], Pass::BackwardKeeping)
        }
        None => {
            plain = plain_groups(region, Pass::Backward, g, &want);
            (&plain[..], Pass::Backward)
        }
    };
    // Batched gradients go straight to their tile's rows of the result, as the forward's
    // outputs do; a parameter's gradient is one part per tile, summed after.
    let batched: Vec<bool> = want.iter().map(|&w| g.shape(w).is_batched()).collect();
    let mut bufs: Vec<Vec<T>> = (want.iter().zip(&batched))
        .map(|(&w, &b)| match b {
            true => vec![T::zero(); g.shape(w).numel(batch)],
            false => vec![],
        })
        .collect();
    let per_tile = split_dsts(&mut bufs, &batched, batch, (k, tiles));
    let preps = prepared(region, (g, groups, pass), batch, (k, tiles), &want);
    let parts: Vec<Vec<Option<Vec<T>>>> = per_tile
        .into_par_iter()
        .enumerate()
        .map(|(t, mut dsts)| {
            let feeds = leaves
                .iter()
                .map(|&(leaf, v)| (leaf, rows_of(v, g.shape(leaf).is_batched(), t, k)))
                .collect();
            let prep = prep_of(&preps, t, tiles);
            eval_prepared(g, groups, prep, &feeds, &want, &mut dsts).map_err(|e| e.to_string())
        })
        .collect::<Result<_, String>>()?;
    Ok(join(region, bufs, parts, batch))
}

/// The gradients per input: batched ones already in place in `bufs`, the others (parameters,
/// read whole by every tile) the sum of the tiles' parts.
fn join<T: Real>(
    region: &Region,
    bufs: Vec<Vec<T>>,
    parts: Vec<Vec<Option<Vec<T>>>>,
    batch: usize,
) -> Vec<Option<Array2<T>>> {
    let mut per_tile: Vec<_> = parts.into_iter().map(|p| p.into_iter()).collect();
    let mut bufs = bufs.into_iter();
    region
        .grads
        .iter()
        .map(|gnode| {
            let &gid = gnode.as_ref()?;
            let batched = region.backward.shape(gid).is_batched();
            let mut acc = bufs.next().expect("one buffer per wanted gradient");
            for (t, p) in per_tile.iter_mut().enumerate() {
                let part = p.next().flatten();
                match (t, part) {
                    (_, None) => {}
                    (0, Some(v)) => acc = v,
                    (_, Some(v)) => acc.iter_mut().zip(v).for_each(|(a, b)| *a = *a + b),
                }
            }
            Some(rows(acc, batch, batched))
        })
        .collect()
}
