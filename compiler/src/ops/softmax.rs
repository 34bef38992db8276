//! softmax over the last axis (a classifier's probabilities): shape-preserving. Losses take
//! logits, so a final softmax is skipped in training (see `Network::output_and_logit`).

use super::registry::OpDef;
use super::Op;

pub(super) const DEF: OpDef = OpDef {
    name: "softmax",
    aliases: &[],
    args: &[],
    example: "softmax",
    named_inputs: false,
    main_call: false,
    parse: |_, _| Op::Softmax,
};

use crate::kernels::{acc_tag, row_kernel, store_elem, KernelSource, ReadPath, Reads, Store};
use crate::program::{Builder, TensorId};

const SOFTMAX: &str = include_str!("../../../shaders/softmax.wgsl");

/// Row-wise softmax forward (`rows` x `c`).
pub fn forward_kernel(rows: u64, c: u64, path: ReadPath) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "x")
        .output(1, "y", false)
        .finish();
    let body = "var mx = rd_x(o);\n    for (var j = 1u; j < C; j++) { mx = max(mx, rd_x(o + j)); }\n    \
                var s = 0.0;\n    for (var j = 0u; j < C; j++) { s += exp(rd_x(o + j) - mx); }\n    \
                for (var j = 0u; j < C; j++) { y[o + j] = exp(rd_x(o + j) - mx) / s; }";
    row_kernel(
        format!("softmax[{rows}x{c}]"),
        SOFTMAX,
        rows,
        &[
            ("C", c.to_string()),
            ("DECLS", decls),
            ("BODY", body.into()),
        ],
        mirrors,
    )
}

/// Softmax backward: dx (=|+=) y * (dy - sum(dy * y)).
pub fn backward_kernel(rows: u64, c: u64, store: Store, path: ReadPath) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "dy")
        .input(1, "y")
        .output(2, "dx", store == Store::Accumulate)
        .finish();
    let body = format!(
        "var dot = 0.0;\n    for (var j = 0u; j < C; j++) {{ dot += rd_dy(o + j) * rd_y(o + j); }}\n    \
         for (var j = 0u; j < C; j++) {{ let g = rd_y(o + j) * (rd_dy(o + j) - dot); {} }}",
        store_elem(store, "dx", "o + j", "g")
    );
    row_kernel(
        format!("softmax_bwd[{rows}x{c}{}]", acc_tag(store)),
        SOFTMAX,
        rows,
        &[("C", c.to_string()), ("DECLS", decls), ("BODY", body)],
        mirrors,
    )
}

/// Rows and row length of a softmax over the last axis of `shape` for a batch.
fn rows(shape: &[u64], batch: u64) -> (u64, u64) {
    let c = *shape.last().unwrap_or(&1);
    (shape.iter().product::<u64>() * batch / c, c)
}

/// The forward dispatch of a softmax node whose output has `shape` (per example).
pub(crate) fn lower_forward(
    b: &mut Builder,
    shape: &[u64],
    batch: u64,
    x: TensorId,
    y: TensorId,
    label: String,
) {
    let (r, c) = rows(shape, batch);
    b.emit(forward_kernel(r, c, b.reads()), vec![x, y], label);
}

/// The input-gradient dispatch of a softmax node, from its saved output `y`.
pub(crate) fn lower_backward(
    b: &mut Builder,
    shape: &[u64],
    batch: u64,
    dy: TensorId,
    y: TensorId,
    (dx, store): (TensorId, Store),
    label: String,
) {
    let (r, c) = rows(shape, batch);
    b.emit(
        backward_kernel(r, c, store, b.reads()),
        vec![dy, y, dx],
        label,
    );
}
