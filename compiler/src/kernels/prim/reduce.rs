//! Reductions and the batched matrix product: each invocation loops over the elements that
//! make its result (the reduced axes, or the inner dimension).

use super::index::{broadcast_strides, offset, strides};
use super::Gen;
use crate::prim::Reduce;

/// Sum, mean or max over `axes` of input 0: the result's element (the same flat order with
/// the axes kept or dropped) starts at its kept coordinates and walks the reduced ones.
pub(super) fn reduce(g: &Gen, op: Reduce, axes: &[usize]) -> String {
    let x = &g.ins[0].dims;
    let st = strides(x);
    let kept: Vec<usize> = (0..x.len())
        .map(|a| if axes.contains(&a) { 1 } else { x[a] })
        .collect();
    let base = offset("i", &kept, &st);
    let red_dims: Vec<usize> = axes.iter().map(|&a| x[a]).collect();
    let red_st: Vec<usize> = axes.iter().map(|&a| st[a]).collect();
    let n: usize = red_dims.iter().product();
    let walk = offset("r", &red_dims, &red_st);
    let (init, step) = match op {
        Reduce::Sum | Reduce::Mean => ("0.0", "acc + x"),
        Reduce::Max => ("-3.4028235e38", "max(acc, x)"),
    };
    let fin = match op {
        Reduce::Mean => format!("acc * {}", crate::kernels::f32_lit(1.0 / n.max(1) as f64)),
        Reduce::Sum | Reduce::Max => "acc".into(),
    };
    format!(
        "let base = {base};\nvar acc = {init};\nfor (var r = 0u; r < {n}u; r = r + 1u) {{\n    let x = {};\n    acc = {step};\n}}\nlet v = {fin};",
        g.load(0, &format!("base + {walk}"))
    )
}

/// `[.., m, k] x [.., k, n]` over the last two axes, the leading axes broadcast to the
/// result's: each element is one dot product of a row of a and a column of b.
pub(super) fn matmul(g: &Gen, out: &[usize]) -> String {
    let (a, b) = (&g.ins[0].dims, &g.ins[1].dims);
    let (ra, rb, r) = (a.len(), b.len(), out.len());
    let (m, k, n) = (a[ra - 2], a[ra - 1], b[rb - 1]);
    let lead = &out[..r - 2];
    let oa = offset("l", lead, &broadcast_strides(&a[..ra - 2], lead));
    let ob = offset("l", lead, &broadcast_strides(&b[..rb - 2], lead));
    format!(
        "let l = i / {mn}u;\nlet row = (i / {n}u) % {m}u;\nlet col = i % {n}u;\n\
         let ab = {oa} * {mk}u + row * {k}u;\nlet bb = {ob} * {kn}u + col;\n\
         var acc = 0.0;\nfor (var j = 0u; j < {k}u; j = j + 1u) {{\n    acc = acc + {} * {};\n}}\nlet v = acc;",
        g.load(0, "ab + j"),
        g.load(1, &format!("bb + j * {n}u")),
        mn = m * n,
        mk = m * k,
        kn = k * n,
    )
}
