//! Caffe's BatchNorm and the Scale that follows it, as one netc `batchnorm`.
//!
//! Caffe splits PyTorch's BatchNorm2d in two layers: `BatchNorm` only normalises (its blobs:
//! the running mean and variance, each a sum weighted by `moving_average_fraction`, and the
//! sum of the weights, a scale factor they are divided by), and a `Scale` with `bias_term:
//! true` right after it, on the same blob, holds gamma and beta. netc's `batchnorm` holds all
//! four, so the pair becomes one op: eps from `batch_norm_param`, momentum = 1 -
//! moving_average_fraction (Caffe's running averages are PyTorch's, as each update weighs the
//! new batch by 1 - fraction once the scale factor has converged), gamma and beta from the
//! Scale's blobs, the statistics divided by the factor (Caffe multiplies by 0 where it is 0).
//!
//! A BatchNorm without a Scale normalises only: gamma 1 and beta 0, written into the
//! checkpoint and kept there in training (`param_mult` lr 0, decay 0); a Scale without
//! `bias_term` likewise fixes beta at 0. A Scale anywhere else has no netc op.

use super::layers::{setting, Convert, Emit, LayerParams};
use super::text::{Field, Fields};

type Problems = Vec<(usize, String)>;

/// The Caffe name of the settings message of a BatchNorm and of a Scale.
const BN_PARAM: &str = "batch_norm_param";
const SCALE_PARAM: &str = "scale_param";

/// A BatchNorm layer `l` (named `name`, at `line`) reading a blob of shape `x`: the op, and
/// the checkpoint's running statistics from its blobs (with gamma 1 and beta 0 until a Scale
/// gives them).
pub(super) fn emit(l: &[Field], name: &str, x: &[u64], line: usize) -> Result<Emit, Problems> {
    let p = l.msg(BN_PARAM);
    let c = x.first().copied().unwrap_or(0);
    if x.is_empty() {
        return Err(vec![(
            line,
            format!("layer `{name}` (BatchNorm) reads a blob without channels"),
        )]);
    }
    let eps = setting(p, "eps", 1e-5);
    let fraction = setting(p, "moving_average_fraction", 0.999);
    if !(0.0..1.0).contains(&fraction) || eps <= 0.0 {
        return Err(vec![(line, format!("layer `{name}` (BatchNorm): moving_average_fraction {fraction} (netc's momentum is 1 - it, in (0, 1]) and eps {eps} (> 0) are out of range"))]);
    }
    // 1 - 0.999 printed as 0.001, not 0.0010000000000000009.
    let momentum = format!("{:.12}", 1.0 - fraction)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string();
    let tensors = vec![
        ("running_mean", vec![c]),
        ("running_var", vec![c]),
        ("scale_factor", vec![1]),
    ];
    let params = LayerParams {
        caffe: name.to_string(),
        stmt: String::new(),
        mults: vec![(0.0, 0.0); tensors.len()],
        lines: vec![line; tensors.len()],
        tensors,
        convert: Convert::Statistics,
        fixed: vec![("weight", vec![c], 1.0), ("bias", vec![c], 0.0)],
    };
    Ok(Emit::Op {
        op: format!("batchnorm(eps={eps:e}, momentum={momentum})"),
        shape: x.to_vec(),
        params: Some(params),
    })
}

/// Whether `use_global_stats` is given, and its value (Caffe's default: false in TRAIN, true
/// in TEST, which is what netc's batchnorm does).
pub(super) fn global_stats(l: &[Field]) -> Option<bool> {
    l.msg(BN_PARAM)
        .and_then(|p| p.text("use_global_stats"))
        .map(|v| v == "true")
}

/// The Scale layer `l` (named `name`, at `line`) that follows a BatchNorm of `c` channels on
/// its top: its gamma (and beta, with `bias_term: true`) as the batchnorm's weight and bias,
/// and the fixed tensors the BatchNorm's `bn` keeps (beta without `bias_term`).
pub(super) fn scale(
    l: &[Field],
    name: &str,
    c: u64,
    line: usize,
    bn: &mut LayerParams,
) -> Result<LayerParams, Problems> {
    let p = l.msg(SCALE_PARAM);
    let bad = |m: &str| Err(vec![(line, format!("layer `{name}` (Scale): {m}"))]);
    if setting(p, "axis", 1.0) != 1.0 || setting(p, "num_axes", 1.0) != 1.0 {
        return bad("only a per-channel scale (axis 1, num_axes 1) after a BatchNorm is its gamma");
    }
    for (filler, value) in [("filler", 1.0), ("bias_filler", 0.0)] {
        let f = p.and_then(|p| p.msg(filler));
        let constant = f
            .and_then(|f| f.text("type"))
            .is_none_or(|t| t == "constant")
            && setting(f, "value", if f.is_some() { 0.0 } else { value }) == value;
        if !constant {
            return bad(&format!("a {filler} other than constant({value}): netc's batchnorm starts gamma at 1 and beta at 0"));
        }
    }
    let bias = p.and_then(|p| p.text("bias_term")) == Some("true");
    let mut tensors = vec![("weight", vec![c])];
    if bias {
        tensors.push(("bias", vec![c]));
    }
    // The Scale gives what it holds; beta without bias_term stays 0.
    bn.fixed
        .retain(|(t, _, _)| !tensors.iter().any(|(s, _)| s == t));
    let mut params = super::layers::layer_params(l, name, line, tensors);
    params.stmt = bn.stmt.clone();
    Ok(params)
}
