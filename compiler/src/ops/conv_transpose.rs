//! conv_transpose: the transposed convolution (a conv's input gradient as a layer), weight
//! [C, filters/groups, k, k]. Checked and counted; no executor runs it yet.

use super::{add, mul, need_image, ArgDef, InferCx, Op, Parsed, ShapeError, Ty, B, HB, W};
use crate::diag::Diagnostic;
use crate::shape::Padding;

pub(super) const ARGS: &[ArgDef] = &[
    ("filters", &["out", "channels"], Ty::Int, true, true),
    ("k", &["kernel", "kernel_size"], Ty::Int, true, false),
    ("s", &["stride"], Ty::Int, false, false),
    ("pad", &["padding", "p"], Ty::Pad, false, false),
    ("output_padding", &["out_pad"], Ty::Int, false, false),
    ("groups", &["group", "g"], Ty::Int, false, false),
    HB,
    W,
    B,
];
pub(super) const EXAMPLE: &str = "conv(64, k=3)";

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let (filters, k, stride, groups) = (
        p.int("filters", 0),
        p.int("k", 0),
        p.int("s", 1),
        p.int("groups", 1),
    );
    p.positive("filters", filters, errors);
    p.positive("k", k, errors);
    p.positive("s", stride, errors);
    p.positive("groups", groups, errors);
    Op::ConvTranspose {
        filters,
        k,
        stride,
        pad: p.pad(),
        output_padding: p.int("output_padding", 0),
        groups,
        bias: p.boolean("bias", true),
    }
}

pub(super) fn describe(
    filters: u64,
    k: u64,
    stride: u64,
    pad: Padding,
    output_padding: u64,
    groups: u64,
    bias: bool,
) -> String {
    format!(
        "conv_transpose[{filters}, k={k}, s={stride}, pad={pad}{}{}{}]",
        if output_padding > 0 {
            format!(", output_padding={output_padding}")
        } else {
            String::new()
        },
        if groups > 1 {
            format!(", groups={groups}")
        } else {
            String::new()
        },
        if bias { "" } else { ", no bias" }
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn infer(
    cx: &mut InferCx,
    x: &[u64],
    filters: u64,
    k: u64,
    stride: u64,
    pad: Padding,
    output_padding: u64,
    groups: u64,
    bias: bool,
) -> Result<Vec<u64>, ShapeError> {
    let err = |message: String| ShapeError {
        message,
        help: None,
    };
    let (c, h, w) = need_image("conv_transpose", x)?;
    if !c.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
        return Err(err(format!(
            "groups={groups} must divide both the input channels ({c}) and the filters ({filters})"
        )));
    }
    if output_padding >= stride {
        return Err(err(format!(
            "output_padding ({output_padding}) must be smaller than the stride ({stride})"
        )));
    }
    let size = |f: u64| -> Result<u64, ShapeError> {
        let full = add(add(mul(f - 1, stride)?, k)?, output_padding)?;
        match pad {
            Padding::Valid => Ok(full),
            Padding::Same => mul(f, stride),
            Padding::Explicit(p) => {
                let cut = mul(2, p)?;
                if cut >= full {
                    return Err(err(format!(
                        "padding {p} removes the whole {full}-pixel output"
                    )));
                }
                Ok(full - cut)
            }
        }
    };
    let (oh, ow) = (size(h)?, size(w)?);
    let cout_g = filters / groups;
    let weights = mul(mul(mul(c, cout_g)?, k)?, k)?;
    let b = if bias { filters } else { 0 };
    cx.stats.params = add(weights, b)?;
    cx.stats.macs = mul(mul(h, w)?, weights)?;
    cx.stats.neurons = mul(mul(oh, ow)?, filters)?;
    cx.stats.connections = add(cx.stats.macs, if bias { cx.stats.neurons } else { 0 })?;
    let fan_in = mul(mul(c / groups, k)?, k)?;
    cx.weight(
        "weight",
        vec![c, cout_g, k, k],
        fan_in,
        mul(mul(cout_g, k)?, k)?,
    );
    if bias {
        cx.bias("bias", vec![filters], fan_in, filters);
    }
    Ok(vec![filters, oh, ow])
}
