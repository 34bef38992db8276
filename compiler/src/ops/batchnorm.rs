//! batchnorm: per-channel (CxHxW) or per-feature normalisation with trainable gamma and beta
//! and running statistics (state, not trained). Checked and counted; no executor runs it yet.

use super::{mul, ArgDef, InferCx, Op, Parsed, ShapeError, Ty};
use crate::ops::Init;

pub(super) const ARGS: &[ArgDef] = &[
    ("eps", &["epsilon"], Ty::Float, false, false),
    ("momentum", &[], Ty::Float, false, false),
];

pub(super) fn from_args(p: &Parsed) -> Op {
    Op::BatchNorm {
        eps: p.float("eps", 1e-5),
        momentum: p.float("momentum", 0.1),
    }
}

pub(super) fn describe(eps: f64, momentum: f64) -> String {
    format!("batchnorm[eps={eps}, momentum={momentum}]")
}

pub(super) fn infer(cx: &mut InferCx, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let c = *x.first().unwrap_or(&1);
    cx.stats.params = mul(4, c)?;
    cx.stats.trainable = mul(2, c)?;
    cx.weight("gamma", vec![c], c, c);
    cx.bias("beta", vec![c], c, c);
    cx.state("running_mean", vec![c], Init::Constant(0.0), c);
    cx.state("running_var", vec![c], Init::Constant(1.0), c);
    Ok(x.to_vec())
}
