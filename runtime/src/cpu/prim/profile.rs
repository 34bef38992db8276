//! `netc bench --profile` on the CPU executor: each fused region's forward and backward timed
//! alone on the values of a real forward pass, so the regions worth a hand-written kernel (or
//! a better fusion) show first; and each kernel group alone ([`groups`]), as `netc ir --fused`
//! names them.

use super::{eval_timed, region};
use crate::cpu::{self, Params, Real};
use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
use netc_compiler::prim::{fuse, NodeId};
use std::collections::HashMap;
use std::time::Instant;

/// One region's times.
#[derive(Debug, Clone)]
pub struct RegionTime {
    pub index: usize,
    /// Its first and last node.
    pub span: (String, String),
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// Kernel groups of its forward and backward graphs.
    pub groups: (usize, usize),
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0) * 1e3
}

/// Times every region of `net` on the batch `x` (median of `reps` runs each).
pub fn regions<T: Real>(
    net: &Network,
    p: &Params<T>,
    xs: &[ArrayView2<T>],
    reps: usize,
) -> Result<Vec<RegionTime>, String> {
    let acts = cpu::forward_inputs(net, p, xs, true, 1, 0).map_err(|e| e.to_string())?;
    let regions = net.regions().map_err(|e| e.to_string())?;
    let batch = xs.first().map_or(0, |x| x.nrows());
    let mut out = vec![];
    for (index, r) in regions.list.iter().enumerate() {
        let dys: Vec<Option<Array2<T>>> = r
            .outputs
            .iter()
            .map(|&(o, _)| Some(acts.get(o).mapv(|_| T::of(1e-3))))
            .collect();
        let (mut f, mut b) = (vec![], vec![]);
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let (_, kept) = region::forward_keeping(r, &acts.values, batch)?;
            f.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            region::backward(r, &acts.values, Some(&kept), &dys, batch)?;
            b.push(t.elapsed().as_secs_f64());
        }
        let name = |i: usize| net.graph[r.nodes[i]].name.clone();
        let (fg, bg) = r.groups();
        out.push(RegionTime {
            index,
            span: (name(0), name(r.nodes.len() - 1)),
            forward_ms: median_ms(f),
            backward_ms: median_ms(b),
            groups: (fg.len(), bg.len()),
        });
    }
    Ok(out)
}

/// One kernel group's time.
#[derive(Debug, Clone)]
pub struct GroupTime {
    pub region: usize,
    pub backward: bool,
    /// What `netc ir --fused` prints for it.
    pub line: String,
    pub ms: f64,
}

/// Times every kernel group of every region, forward and backward, as a training pass runs
/// them (the backward reading the kept values), the whole batch in one piece on one thread
/// (median of `reps`).
pub fn groups<T: Real>(
    net: &Network,
    p: &Params<T>,
    xs: &[ArrayView2<T>],
    reps: usize,
) -> Result<Vec<GroupTime>, String> {
    let acts = cpu::forward_inputs(net, p, xs, true, 1, 0).map_err(|e| e.to_string())?;
    let regions = net.regions().map_err(|e| e.to_string())?;
    let batch = xs.first().map_or(0, |x| x.nrows());
    let mut out = vec![];
    for (index, r) in regions.list.iter().enumerate() {
        let (_, kept) = region::forward_keeping(r, &acts.values, batch)?;
        let mut feeds: HashMap<NodeId, &[T]> = r
            .inputs
            .iter()
            .map(|&(n, leaf)| (leaf, acts.get(n).as_slice().expect("standard layout")))
            .collect();
        let outs: Vec<NodeId> = r.outputs.iter().map(|o| o.1).collect();
        let want: Vec<NodeId> = outs.iter().chain(&r.kept).copied().collect();
        let fwd = median_each(reps, || {
            eval_timed(&r.graph, &r.keeping_forward, batch, &feeds, &want)
        })?;
        let dys: Vec<Array2<T>> = r
            .outputs
            .iter()
            .map(|&(o, _)| acts.get(o).mapv(|_| T::of(1e-3)))
            .collect();
        // The forward's outputs, the gradients arriving there (a seed per output) and the
        // kept values are the backward's given values.
        for ((&(o, y), d), &seed) in r.outputs.iter().zip(&dys).zip(&r.seeds) {
            feeds.insert(y, acts.get(o).as_slice().expect("standard layout"));
            feeds.insert(seed, d.as_slice().expect("standard layout"));
        }
        for (&n, v) in r.kept.iter().zip(&kept) {
            feeds.insert(n, v.as_slice().expect("standard layout"));
        }
        let grads: Vec<NodeId> = r.grads.iter().flatten().copied().collect();
        let bwd = median_each(reps, || {
            eval_timed(&r.backward, &r.keeping_backward, batch, &feeds, &grads)
        })?;
        for (backward, (g, gs, times)) in [
            (false, (&r.graph, &r.keeping_forward, fwd)),
            (true, (&r.backward, &r.keeping_backward, bwd)),
        ] {
            for (line, ms) in fuse::describe(g, gs).into_iter().zip(times) {
                out.push(GroupTime {
                    region: index,
                    backward,
                    line,
                    ms,
                });
            }
        }
    }
    Ok(out)
}

/// Each group's median over `reps` timed evaluations, in ms.
fn median_each(
    reps: usize,
    mut run: impl FnMut() -> Result<Vec<f64>, super::EvalError>,
) -> Result<Vec<f64>, String> {
    let runs: Vec<Vec<f64>> = (0..reps.max(1))
        .map(|_| run().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok((0..runs[0].len())
        .map(|k| median_ms(runs.iter().map(|r| r[k]).collect()))
        .collect())
}
