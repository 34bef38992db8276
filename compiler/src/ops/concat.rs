//! concat: joins tensors along one axis of the per-example shape (axis 0, channels, by
//! default); the other axes must agree.

use super::{ArgDef, Op, Parsed, ShapeError, Ty};
use crate::ast::shape_str;

pub(super) const ARGS: &[ArgDef] = &[("axis", &["dim"], Ty::Int, false, false)];

pub(super) fn from_args(p: &Parsed) -> Op {
    Op::Concat {
        axis: p.int("axis", 0),
    }
}

pub(super) fn describe(axis: u64) -> String {
    format!("concat[axis={axis}]")
}

/// How one example's values split around the axis: `outer` blocks, each holding `inner`
/// values per index along the axis (so input i contributes blocks of `sizes[i] * inner`).
pub fn layout(shape: &[u64], axis: u64) -> (u64, u64) {
    let ax = axis as usize;
    (
        shape[..ax].iter().product(),
        shape[ax + 1..].iter().product(),
    )
}

pub(super) fn infer(inputs: &[Vec<u64>], axis: u64) -> Result<Vec<u64>, ShapeError> {
    let first = inputs.first().cloned().unwrap_or_default();
    let ax = axis as usize;
    if ax >= first.len() {
        return Err(ShapeError {
            message: format!(
                "concat axis {axis} is out of range for {}",
                shape_str(&first)
            ),
            help: None,
        });
    }
    let mut out = first.clone();
    for s in &inputs[1..] {
        let same_rest = s.len() == first.len()
            && s.iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (a, b))| i == ax || a == b);
        if !same_rest {
            return Err(ShapeError {
                message: format!(
                    "`concat` on axis {axis} needs shapes that agree elsewhere, but got {} and {}",
                    shape_str(&first),
                    shape_str(s)
                ),
                help: None,
            });
        }
        out[ax] = super::add(out[ax], s[ax])?;
    }
    Ok(out)
}
