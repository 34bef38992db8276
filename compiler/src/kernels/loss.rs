//! Loss kernels: softmax cross-entropy and binary cross-entropy from logits, each writing the
//! gradient at the logits and adding the batch's statistics.

use super::template::{f32_lit, fill, Reads};
use super::{KernelSource, ReadPath};

const SOFTMAX_XENT: &str = include_str!("../../../shaders/softmax_xent.wgsl");
const BCE_LOGITS: &str = include_str!("../../../shaders/bce_logits.wgsl");
const LOSS_STATS: &str = include_str!("../../../shaders/loss_stats.wgsl");

/// A loss kernel: one workgroup computes dz and adds the batch's statistics to acc.
fn loss_kernel(
    name: String,
    template: &str,
    path: ReadPath,
    subs: &[(&str, String)],
) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "z")
        .input(1, "t")
        .output(2, "dz", false)
        .output(3, "acc", true)
        .finish();
    let mut all = subs.to_vec();
    all.push(("READS", decls));
    all.push(("STATS", LOSS_STATS.trim_end().to_string()));
    KernelSource {
        name,
        source: fill(template, &all),
        groups: [1, 1, 1],
        mirrors,
    }
}

/// Softmax cross-entropy from logits over `rows` x `c`: writes dz (scaled) and adds the
/// batch's [loss, correct, top5, rows] to acc.
pub fn softmax_xent(rows: u64, c: u64, scale: f64, path: ReadPath) -> KernelSource {
    loss_kernel(
        format!("softmax_xent[{rows}x{c}]"),
        SOFTMAX_XENT,
        path,
        &[
            ("ROWS", rows.to_string()),
            ("C", c.to_string()),
            ("SCALE", f32_lit(scale)),
        ],
    )
}

/// Binary cross-entropy from logits (one logit per row), with the batch's statistics.
pub fn bce_logits(rows: u64, scale: f64, path: ReadPath) -> KernelSource {
    loss_kernel(
        format!("bce_logits[{rows}]"),
        BCE_LOGITS,
        path,
        &[("ROWS", rows.to_string()), ("SCALE", f32_lit(scale))],
    )
}

/// The tail of a 64-thread workgroup sum: each thread's partial `s` into `part`, halved in
/// place until `part[0]` holds the total (shared by the loss kernels that sum into `acc`).
const TREE_SUM: &str = "    part[li] = s;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w = w >> 1u) {
        if (li < w) {
            part[li] = part[li] + part[li + w];
        }
        workgroupBarrier();
    }";

/// A declared loss's running sum (one workgroup of 64): adds the sum of x's `len` values to
/// acc[0] and `rows` to acc[1], the partial sums meeting in a fixed tree so the result does
/// not depend on scheduling. The host reads acc only at log intervals.
pub fn sum_into(len: u64, rows: u64, path: ReadPath) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "x")
        .output(1, "acc", true)
        .finish();
    let source = format!(
        "{decls}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {{
    var s = 0.0;
    for (var i = li; i < {len}u; i += 64u) {{
        s += rd_x(i);
    }}
{TREE_SUM}
    if (li == 0u) {{
        let s0 = rd_acc(0u);
        let r0 = rd_acc(1u);
        acc[0] = s0 + part[0];
        acc[1] = r0 + {};
    }}
}}
",
        f32_lit(rows as f64)
    );
    KernelSource {
        name: format!("sum_into[{len}]"),
        source,
        groups: [1, 1, 1],
        mirrors,
    }
}

/// Evaluation sums of a node of `per` values per example (one workgroup of 64): adds the sum
/// of the first n examples' values to acc[slot] and n to acc[slot + 1], n the host-written
/// count of real examples in the batch (a short last batch's padding is not counted).
pub fn sum_rows(per: u64, batch: u64, slot: u64, path: ReadPath) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "x")
        .input(1, "n")
        .output(2, "acc", true)
        .finish();
    let source = format!(
        "{decls}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {{
    let rows = min(u32(rd_n(0u)), {batch}u);
    var s = 0.0;
    for (var i = li; i < rows * {per}u; i += 64u) {{
        s += rd_x(i);
    }}
{TREE_SUM}
    if (li == 0u) {{
        let s0 = rd_acc({slot}u);
        let r0 = rd_acc({slot}u + 1u);
        acc[{slot}] = s0 + part[0];
        acc[{slot} + 1] = r0 + f32(rows);
    }}
}}
"
    );
    KernelSource {
        name: format!("sum_rows[{batch}x{per}@{slot}]"),
        source,
        groups: [1, 1, 1],
        mirrors,
    }
}
