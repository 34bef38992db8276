//! `netc bench --profile` on the CPU executor: each fused region's forward and backward timed
//! alone on the values of a real forward pass, so the regions worth a hand-written kernel (or
//! a better fusion) show first.

use super::region;
use crate::cpu::{self, Params, Real};
use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
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
