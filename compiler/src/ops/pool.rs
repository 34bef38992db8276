//! maxpool and avgpool: a k x k window per channel. Max pooling takes the first maximum of
//! each window (ties go to the earliest tap, row-major, as Caffe and PyTorch do) and pads
//! with -inf; average pooling divides by k*k whatever the padding (PyTorch's default,
//! count_include_pad=True).

use super::window::Window2d;
use super::{need_image, ArgDef, Op, Parsed, ShapeError, Ty};
use crate::diag::Diagnostic;
use crate::shape::Padding;

pub(super) const ARGS: &[ArgDef] = &[
    ("k", &["kernel", "size"], Ty::Int, true, true),
    ("s", &["stride"], Ty::Int, false, false),
    ("pad", &["padding", "p"], Ty::Pad, false, false),
];
pub(super) const EXAMPLE: &str = "maxpool(k=2)";

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>, max: bool) -> Op {
    let k = p.int("k", 0);
    let stride = p.int("s", k);
    p.positive("k", k, errors);
    p.positive("s", stride, errors);
    if max {
        Op::MaxPool {
            k,
            stride,
            pad: p.pad(),
        }
    } else {
        Op::AvgPool {
            k,
            stride,
            pad: p.pad(),
        }
    }
}

pub(super) fn describe(name: &str, k: u64, stride: u64, pad: Padding) -> String {
    format!("{name}[k={k}, s={stride}, pad={pad}]")
}

/// Channels and window of a pooling node (`op` must be maxpool or avgpool) on a CxHxW input.
pub fn geometry(op: &Op, input: &[u64]) -> Result<(u64, Window2d), ShapeError> {
    let (Op::MaxPool { k, stride, pad } | Op::AvgPool { k, stride, pad }) = *op else {
        return Err(ShapeError {
            message: format!("`{}` is not a pooling op", op.name()),
            help: None,
        });
    };
    let (c, h, w) = need_image(op.name(), input)?;
    Ok((c, Window2d::new(h, w, k, stride, 1, pad)?))
}

pub(super) fn infer(op: &Op, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let (c, win) = geometry(op, x)?;
    Ok(vec![c, win.oh, win.ow])
}
