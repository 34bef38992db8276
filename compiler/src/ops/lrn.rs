//! lrn: local response normalisation across channels, the AlexNet paper's formula
//! b_c = a_c / (k + alpha * sum_{j in window(c)} a_j^2)^beta over `size` neighbouring
//! channels (window c - size/2 ..= c + (size-1)/2, clipped at the edges). Unlike Caffe and
//! PyTorch, alpha is not divided by size: their alpha is this alpha times size.

use super::{need_image, ArgDef, Op, Parsed, ShapeError, Ty};
use crate::diag::Diagnostic;

pub(super) const ARGS: &[ArgDef] = &[
    ("size", &["n", "local_size"], Ty::Int, false, false),
    ("alpha", &[], Ty::Float, false, false),
    ("beta", &[], Ty::Float, false, false),
    ("k", &["bias"], Ty::Float, false, false),
];

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let size = p.int("size", 5);
    p.positive("size", size, errors);
    Op::Lrn {
        size,
        alpha: p.float("alpha", 1e-4),
        beta: p.float("beta", 0.75),
        k: p.float("k", 2.0),
    }
}

pub(super) fn describe(size: u64, alpha: f64, beta: f64, k: f64) -> String {
    format!("lrn[size={size}, alpha={alpha}, beta={beta}, k={k}]")
}

/// The channels `c` sums over: `lo..=hi` (clipped to 0..channels).
pub fn window(c: u64, size: u64, channels: u64) -> (u64, u64) {
    (
        c.saturating_sub(size / 2),
        (c + (size - 1) / 2).min(channels - 1),
    )
}

pub(super) fn infer(x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    need_image("lrn", x)?;
    Ok(x.to_vec())
}
