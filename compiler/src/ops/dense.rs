//! dense: a fully connected layer, y = x W^T + b, weight [units, fan_in].

use super::{mul, prod, ArgDef, InferCx, Op, Parsed, ShapeError, Ty, B, HB, W};
use crate::ast::shape_str;
use crate::diag::Diagnostic;

pub(super) const ARGS: &[ArgDef] = &[
    ("units", &["out", "outputs"], Ty::Int, true, true),
    HB,
    W,
    B,
];
pub(super) const EXAMPLE: &str = "dense(128)";

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let units = p.int("units", 0);
    p.positive("units", units, errors);
    Op::Dense {
        units,
        bias: p.boolean("bias", true),
    }
}

pub(super) fn describe(units: u64, bias: bool) -> String {
    format!("dense[{units}{}]", if bias { "" } else { ", no bias" })
}

pub(super) fn infer(
    cx: &mut InferCx,
    x: &[u64],
    units: u64,
    bias: bool,
) -> Result<Vec<u64>, ShapeError> {
    if x.len() != 1 {
        return Err(ShapeError {
            message: format!(
                "`dense` needs a flat vector, but its input is {}",
                shape_str(x)
            ),
            help: Some(format!(
                "insert `flatten ->` before `dense` to turn {} into {}",
                shape_str(x),
                prod(x).map(|n| n.to_string()).unwrap_or_default()
            )),
        });
    }
    let fan_in = x[0];
    let macs = mul(fan_in, units)?;
    let b = if bias { units } else { 0 };
    cx.stats.params = super::add(macs, b)?;
    cx.stats.connections = cx.stats.params;
    cx.stats.neurons = units;
    cx.stats.macs = macs;
    cx.weight("weight", vec![units, fan_in], fan_in, units);
    if bias {
        cx.bias("bias", vec![units], fan_in, units);
    }
    Ok(vec![units])
}
