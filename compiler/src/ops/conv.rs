//! conv: 2-D convolution over CxHxW images, weight [filters, C/groups, k, k], optional bias.
//! [`ConvGeometry`] is the one statement of its indexing, shared by the shape rule, the CPU
//! reference and the kernels.

use super::window::Window2d;
use super::{add, mul, need_image, ArgDef, InferCx, Op, Parsed, ShapeError, Ty, B, HB, W};
use crate::diag::Diagnostic;
use crate::shape::Padding;

pub(super) const ARGS: &[ArgDef] = &[
    ("filters", &["out", "channels"], Ty::Int, true, true),
    ("k", &["kernel", "kernel_size"], Ty::Int, true, false),
    ("s", &["stride"], Ty::Int, false, false),
    ("pad", &["padding", "p"], Ty::Pad, false, false),
    ("groups", &["group", "g"], Ty::Int, false, false),
    ("dilation", &["d"], Ty::Int, false, false),
    HB,
    W,
    B,
];
pub(super) const EXAMPLE: &str = "conv(64, k=3)";

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let (filters, k, stride, groups, dilation) = (
        p.int("filters", 0),
        p.int("k", 0),
        p.int("s", 1),
        p.int("groups", 1),
        p.int("dilation", 1),
    );
    p.positive("filters", filters, errors);
    p.positive("k", k, errors);
    p.positive("s", stride, errors);
    p.positive("groups", groups, errors);
    p.positive("dilation", dilation, errors);
    Op::Conv {
        filters,
        k,
        stride,
        pad: p.pad(),
        groups,
        dilation,
        bias: p.boolean("bias", true),
    }
}

pub(super) fn describe(
    filters: u64,
    k: u64,
    stride: u64,
    pad: Padding,
    groups: u64,
    dilation: u64,
    bias: bool,
) -> String {
    format!(
        "conv[{filters}, k={k}, s={stride}, pad={pad}{}{}{}]",
        if groups > 1 {
            format!(", groups={groups}")
        } else {
            String::new()
        },
        if dilation > 1 {
            format!(", dilation={dilation}")
        } else {
            String::new()
        },
        if bias { "" } else { ", no bias" }
    )
}

/// Everything needed to index one convolution: channels, groups and the spatial window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub cin: u64,
    pub cout: u64,
    pub groups: u64,
    pub bias: bool,
    pub win: Window2d,
}

impl ConvGeometry {
    /// The geometry of a conv node (`op` must be `Op::Conv`) on a CxHxW input.
    pub fn of(op: &Op, input: &[u64]) -> Result<ConvGeometry, ShapeError> {
        let Op::Conv {
            filters,
            k,
            stride,
            pad,
            groups,
            dilation,
            bias,
        } = *op
        else {
            return Err(ShapeError {
                message: format!("`{}` is not a convolution", op.name()),
                help: None,
            });
        };
        let (c, h, w) = need_image("conv", input)?;
        if !c.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
            return Err(ShapeError {
                message: format!("groups={groups} must divide both the input channels ({c}) and the filters ({filters})"),
                help: None,
            });
        }
        Ok(ConvGeometry {
            cin: c,
            cout: filters,
            groups,
            bias,
            win: Window2d::new(h, w, k, stride, dilation, pad)?,
        })
    }

    pub fn cin_per_group(&self) -> u64 {
        self.cin / self.groups
    }
    pub fn cout_per_group(&self) -> u64 {
        self.cout / self.groups
    }
    /// Taps of one filter: C/groups x k x k (a row of the weight matrix).
    pub fn taps(&self) -> u64 {
        self.cin_per_group() * self.win.k * self.win.k
    }
}

pub(super) fn infer(cx: &mut InferCx, op: &Op, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let g = ConvGeometry::of(op, x)?;
    let k = g.win.k;
    let per_filter = mul(mul(k, k)?, g.cin_per_group())?;
    let weights = mul(per_filter, g.cout)?;
    let b = if g.bias { g.cout } else { 0 };
    let pixels = mul(g.win.oh, g.win.ow)?;
    cx.stats.params = add(weights, b)?;
    cx.stats.macs = mul(pixels, weights)?;
    cx.stats.neurons = mul(pixels, g.cout)?;
    cx.stats.connections = add(cx.stats.macs, if g.bias { cx.stats.neurons } else { 0 })?;
    cx.weight(
        "weight",
        vec![g.cout, g.cin_per_group(), k, k],
        per_filter,
        mul(mul(k, k)?, g.cout_per_group())?,
    );
    if g.bias {
        cx.bias("bias", vec![g.cout], per_filter, g.cout);
    }
    Ok(vec![g.cout, g.win.oh, g.win.ow])
}
