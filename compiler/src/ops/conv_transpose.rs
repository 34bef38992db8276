//! conv_transpose: the transposed convolution, weight [C, filters/groups, k, k] (PyTorch's
//! layout). It is the adjoint of a convolution: the conv from this op's output (filters
//! channels) to its input (C channels) with the same kernel, stride, dilation, padding and
//! groups, whose weight [C, filters/groups, k, k] is this op's weight. So its forward pass is
//! that conv's input gradient, its input gradient that conv's forward pass, and its weight
//! gradient that conv's weight gradient with the roles of input and output gradient swapped
//! ([`TransposeGeometry`]); every executor runs it through the conv's code.

use super::conv::ConvGeometry;
use super::registry::OpDef;
use super::window::Window2d;
use super::{add, mul, need_image, ArgDef, InferCx, Op, Parsed, ShapeError, Ty, B, HB, W};
use crate::diag::Diagnostic;
use crate::shape::Padding;

const ARGS: &[ArgDef] = &[
    ("filters", &["out", "channels"], Ty::Int, true, true),
    ("k", &["kernel", "kernel_size"], Ty::Int, true, false),
    ("s", &["stride"], Ty::Int, false, false),
    ("pad", &["padding", "p"], Ty::Pad, false, false),
    ("output_padding", &["out_pad"], Ty::Int, false, false),
    ("groups", &["group", "g"], Ty::Int, false, false),
    ("dilation", &["d"], Ty::Int, false, false),
    HB,
    W,
    B,
];
pub(super) const DEF: OpDef = OpDef {
    name: "conv_transpose",
    aliases: &["deconv"],
    args: ARGS,
    example: "conv_transpose(64, k=4, s=2, pad=1)",
    named_inputs: false,
    main_call: true,
    parse: from_args,
};

fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
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
    Op::ConvTranspose {
        filters,
        k,
        stride,
        pad: p.pad(),
        output_padding: p.int("output_padding", 0),
        groups,
        dilation,
        bias: p.boolean("bias", true),
    }
}

pub(super) fn describe(op: &Op) -> String {
    let Op::ConvTranspose {
        filters,
        k,
        stride,
        pad,
        output_padding,
        groups,
        dilation,
        bias,
    } = *op
    else {
        return op.name().to_string();
    };
    format!(
        "conv_transpose[{filters}, k={k}, s={stride}, pad={pad}{}{}{}{}]",
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
        if dilation > 1 {
            format!(", dilation={dilation}")
        } else {
            String::new()
        },
        if bias { "" } else { ", no bias" }
    )
}

/// A conv_transpose node resolved against its input: the adjoint conv (from this op's output
/// to its input; no bias of its own) and whether this op adds a bias per output channel (the
/// adjoint's input channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransposeGeometry {
    pub conv: ConvGeometry,
    pub bias: bool,
}

impl TransposeGeometry {
    /// The geometry of a conv_transpose node (`op` must be `Op::ConvTranspose`) on a CxHxW input.
    pub fn of(op: &Op, input: &[u64]) -> Result<TransposeGeometry, ShapeError> {
        let Op::ConvTranspose {
            filters,
            k,
            stride,
            pad,
            output_padding,
            groups,
            dilation,
            bias,
        } = *op
        else {
            return Err(err(format!(
                "`{}` is not a transposed convolution",
                op.name()
            )));
        };
        let (c, h, w) = need_image("conv_transpose", input)?;
        if !c.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
            return Err(err(format!(
                "groups={groups} must divide both the input channels ({c}) and the filters ({filters})"
            )));
        }
        if output_padding >= stride.max(dilation) {
            return Err(err(format!(
                "output_padding ({output_padding}) must be smaller than the stride ({stride}) or the dilation ({dilation})"
            )));
        }
        if output_padding > 0 && pad == Padding::Same {
            return Err(err(
                "output_padding needs explicit or valid padding (SAME makes the output input x stride)".into(),
            ));
        }
        let k_eff = add(mul(dilation, k - 1)?, 1)?;
        let size = |f: u64| -> Result<u64, ShapeError> {
            let full = add(add(mul(f - 1, stride)?, k_eff)?, output_padding)?;
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
        let mut win = Window2d::new(oh, ow, k, stride, dilation, pad)?;
        // The adjoint conv's output is this op's input. Its size rule gives exactly h x w,
        // or more when output_padding reaches the stride (allowed below the dilation, as in
        // PyTorch): the rows past h are outputs no input pixel feeds, so they are cut.
        (win.oh, win.ow) = (h, w);
        Ok(TransposeGeometry {
            conv: ConvGeometry {
                cin: filters,
                cout: c,
                groups,
                bias: false,
                win,
            },
            bias,
        })
    }

    /// Channels, height and width of the output.
    pub fn output(&self) -> [u64; 3] {
        [self.conv.cin, self.conv.win.h, self.conv.win.w]
    }
}

fn err(message: String) -> ShapeError {
    ShapeError {
        message,
        help: None,
    }
}

pub(super) fn infer(cx: &mut InferCx, op: &Op, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let g = TransposeGeometry::of(op, x)?;
    let (c, h, w) = need_image("conv_transpose", x)?;
    let [filters, oh, ow] = g.output();
    let k = g.conv.win.k;
    let cout_g = g.conv.cin_per_group();
    let weights = mul(mul(mul(c, cout_g)?, k)?, k)?;
    let b = if g.bias { filters } else { 0 };
    cx.stats.params = add(weights, b)?;
    cx.stats.macs = mul(mul(h, w)?, weights)?;
    cx.stats.neurons = mul(mul(oh, ow)?, filters)?;
    cx.stats.connections = add(cx.stats.macs, if g.bias { cx.stats.neurons } else { 0 })?;
    let fan_in = mul(mul(c / g.conv.groups, k)?, k)?;
    cx.weight(
        "weight",
        vec![c, cout_g, k, k],
        fan_in,
        mul(mul(cout_g, k)?, k)?,
    );
    if g.bias {
        cx.bias("bias", vec![filters], fan_in, filters);
    }
    Ok(vec![filters, oh, ow])
}

// ---------------------------------------------------------------------------------------------
// GPU lowering: the adjoint conv's dispatches (ops::conv), with the roles swapped as the
// module comment says; no kernels of its own.

use super::conv::{self as conv_op, channel_sum_kernel};
use crate::kernels::Store;
use crate::program::{Builder, TensorId};

/// The forward dispatches of a conv_transpose node: y = the adjoint conv's input gradient of
/// x, plus the bias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    g: &TransposeGeometry,
    batch: u64,
    x: TensorId,
    w: TensorId,
    bias: Option<TensorId>,
    y: TensorId,
    name: &str,
    label: String,
) {
    conv_op::lower_backward(
        b,
        &g.conv,
        batch,
        x,
        x,
        w,
        (None, None),
        Some((y, Store::Write)),
        bias,
        name,
        &|_| label.clone(),
    );
}

/// The gradient dispatches of a conv_transpose node: the bias gradient (the sums of dy per
/// output channel), the input gradient (the adjoint conv's forward pass of dy) and the weight
/// gradient (the adjoint conv's, with x as its output gradient and dy as its input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    g: &TransposeGeometry,
    batch: u64,
    dy: TensorId,
    x: TensorId,
    w: TensorId,
    (gw, gb): (Option<TensorId>, Option<TensorId>),
    dx: Option<(TensorId, Store)>,
    name: &str,
    label: &dyn Fn(&str) -> String,
) {
    let c = &g.conv;
    if let Some(gb) = gb {
        let k = channel_sum_kernel(batch, c.cin, c.win.h * c.win.w, b.param_store(), b.reads());
        b.emit(k, vec![dy, gb], label("backward bias"));
    }
    if let Some(dx) = dx {
        conv_op::lower_forward(b, c, batch, dy, w, None, dx, name, label("backward input"));
    }
    if gw.is_some() {
        conv_op::lower_backward(b, c, batch, x, dy, w, (gw, None), None, None, name, label);
    }
}
