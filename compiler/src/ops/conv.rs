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

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering.
//
// Direct kernels, one invocation per element of the result (output, input gradient, weight
// gradient): every read goes through the read path's accessors, so the same kernels run on
// storage buffers and on the texture mirrors of CPU adapters, and the input gradient keeps
// the real input size whatever the stride skips. Chosen as the first GPU strategy because it
// is exact for every stride, dilation, padding and grouping with one indexing rule shared with
// the reference (ConvGeometry); an implicit-GEMM tiling is the known next step for speed.

use crate::kernels::{acc_tag, per_element, store_elem, KernelSource, ReadPath, Reads, Store};
use crate::schedule::{Builder, TensorId};

const FORWARD: &str = include_str!("../../../shaders/conv_forward.wgsl");
const BACKWARD_DATA: &str = include_str!("../../../shaders/conv_backward_data.wgsl");
const BACKWARD_WEIGHT: &str = include_str!("../../../shaders/conv_backward_weight.wgsl");
const CHANNEL_SUM: &str = include_str!("../../../shaders/channel_sum.wgsl");

impl ConvGeometry {
    fn sizes(&self, batch: u64) -> Vec<(&'static str, u64)> {
        vec![
            ("N", batch),
            ("CIN", self.cin),
            ("H", self.win.h),
            ("W", self.win.w),
            ("COUT", self.cout),
            ("OH", self.win.oh),
            ("OW", self.win.ow),
            ("K", self.win.k),
            ("S", self.win.stride),
            ("DIL", self.win.dilation),
            ("CIN_G", self.cin_per_group()),
            ("COUT_G", self.cout_per_group()),
        ]
    }

    fn pads(&self) -> Vec<(&'static str, i64)> {
        vec![
            ("PAD_T", self.win.pad_top as i64),
            ("PAD_L", self.win.pad_left as i64),
        ]
    }

    fn tag(&self, batch: u64) -> String {
        format!(
            "{batch}x{}x{}x{} to {}x{}x{} k{} s{} d{} p{},{} g{}",
            self.cin,
            self.win.h,
            self.win.w,
            self.cout,
            self.win.oh,
            self.win.ow,
            self.win.k,
            self.win.stride,
            self.win.dilation,
            self.win.pad_top,
            self.win.pad_left,
            self.groups
        )
    }
}

/// y = conv(x, w) (+ b); bindings [x, w, y, (b)].
pub fn forward_kernel(g: &ConvGeometry, batch: u64, path: ReadPath) -> KernelSource {
    let mut reads = Reads::new(path).input(0, "x").input(1, "w");
    if g.bias {
        reads = reads.input(3, "b");
    }
    let reads = reads.output(2, "y", false);
    let epilogue = if g.bias {
        "y[i] = acc + rd_b(co);"
    } else {
        "y[i] = acc;"
    };
    per_element(
        format!(
            "conv_fwd[{}{}]",
            g.tag(batch),
            if g.bias { " bias" } else { "" }
        ),
        FORWARD,
        batch * g.cout * g.win.pixels(),
        reads,
        (&g.sizes(batch), &g.pads(), &[]),
        &[("EPILOGUE", epilogue.to_string())],
    )
}

/// dx (=|+=) the input gradient; bindings [dy, w, dx].
pub fn backward_data_kernel(
    g: &ConvGeometry,
    batch: u64,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    let reads =
        Reads::new(path)
            .input(0, "dy")
            .input(1, "w")
            .output(2, "dx", store == Store::Accumulate);
    per_element(
        format!("conv_bwd_data[{}{}]", g.tag(batch), acc_tag(store)),
        BACKWARD_DATA,
        batch * g.cin * g.win.h * g.win.w,
        reads,
        (&g.sizes(batch), &g.pads(), &[]),
        &[("STORE", store_elem(store, "dx", "i", "acc"))],
    )
}

/// gw = the weight gradient; bindings [dy, x, gw].
pub fn backward_weight_kernel(g: &ConvGeometry, batch: u64, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "dy")
        .input(1, "x")
        .output(2, "gw", false);
    per_element(
        format!("conv_bwd_weight[{}]", g.tag(batch)),
        BACKWARD_WEIGHT,
        g.cout * g.taps(),
        reads,
        (&g.sizes(batch), &g.pads(), &[]),
        &[],
    )
}

/// gb[c] = the sum of dy over the batch and channel c's pixels; bindings [dy, gb].
pub fn channel_sum_kernel(batch: u64, channels: u64, pixels: u64, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "dy").output(1, "gb", false);
    per_element(
        format!("channel_sum[{batch}x{channels}x{pixels}]"),
        CHANNEL_SUM,
        channels,
        reads,
        (&[("N", batch), ("P", pixels)], &[], &[]),
        &[],
    )
}

/// The forward dispatch of a conv node.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    g: &ConvGeometry,
    batch: u64,
    x: TensorId,
    w: TensorId,
    bias: Option<TensorId>,
    y: TensorId,
    label: String,
) {
    let mut bindings = vec![x, w, y];
    bindings.extend(bias);
    b.emit(forward_kernel(g, batch, b.reads()), bindings, label);
}

/// The gradient dispatches of a conv node: its weight and bias gradients (when trained) and
/// its input gradient `dx` (when something upstream needs it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    g: &ConvGeometry,
    batch: u64,
    dy: TensorId,
    x: TensorId,
    w: TensorId,
    grads: (Option<TensorId>, Option<TensorId>),
    dx: Option<(TensorId, Store)>,
    label: &dyn Fn(&str) -> String,
) {
    let reads = b.reads();
    if let Some(gw) = grads.0 {
        b.emit(
            backward_weight_kernel(g, batch, reads),
            vec![dy, x, gw],
            label("backward weight"),
        );
    }
    if let Some(gb) = grads.1 {
        b.emit(
            channel_sum_kernel(batch, g.cout, g.win.pixels(), reads),
            vec![dy, gb],
            label("backward bias"),
        );
    }
    if let Some((dx, store)) = dx {
        b.emit(
            backward_data_kernel(g, batch, store, reads),
            vec![dy, w, dx],
            label("backward input"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::validate;

    const PATHS: [ReadPath; 3] = [ReadPath::Storage, ReadPath::Texture, ReadPath::Image];

    fn geometry(spec: (u64, u64, u64, Padding, u64, u64, bool), input: &[u64]) -> ConvGeometry {
        let (filters, k, stride, pad, groups, dilation, bias) = spec;
        let op = Op::Conv {
            filters,
            k,
            stride,
            pad,
            groups,
            dilation,
            bias,
        };
        ConvGeometry::of(&op, input).ok().expect("valid geometry")
    }

    #[test]
    fn every_kernel_validates_on_every_read_path() {
        let g = geometry((6, 4, 1, Padding::Same, 2, 1, true), &[4, 7, 6]);
        let h = geometry((8, 2, 3, Padding::Valid, 4, 1, false), &[4, 11, 10]);
        for path in PATHS {
            for g in [g, h] {
                for k in [
                    forward_kernel(&g, 3, path),
                    backward_data_kernel(&g, 3, Store::Write, path),
                    backward_data_kernel(&g, 3, Store::Accumulate, path),
                    backward_weight_kernel(&g, 3, path),
                    channel_sum_kernel(3, g.cout, g.win.pixels(), path),
                ] {
                    validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
                }
            }
        }
    }

    #[test]
    fn geometry_of_alexnet_conv2() {
        // 27x27, k=5, SAME, two groups: padding 2 each side, 128 input channels per group.
        let g = geometry((256, 5, 1, Padding::Same, 2, 1, true), &[96, 27, 27]);
        assert_eq!(
            (g.win.oh, g.win.pad_top, g.cin_per_group(), g.taps()),
            (27, 2, 48, 1200)
        );
    }
}
