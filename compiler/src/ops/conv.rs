//! conv: 2-D convolution over CxHxW images, weight [filters, C/groups, k, k], optional bias.
//! [`ConvGeometry`] is the one statement of its indexing, shared by the shape rule, the CPU
//! reference and the kernels.

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
    ("groups", &["group", "g"], Ty::Int, false, false),
    ("dilation", &["d"], Ty::Int, false, false),
    HB,
    W,
    B,
];
pub(super) const DEF: OpDef = OpDef {
    name: "conv",
    aliases: &["conv2d"],
    args: ARGS,
    example: "conv(64, k=3)",
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

use crate::kernels::{
    acc_tag, per_element, store_elem, Gemm, KernelSource, ReadPath, Reads, Store,
};
use crate::program::{Builder, Kind, TensorId};

// Why im2col plus the tiled matrix product on the GPU: the direct kernels (one invocation per
// output summing its taps, one per weight summing over the batch and every pixel) ran at about
// 2 GFLOP/s on lavapipe (AlexNet's step: 15 s, 97% of it in conv), while the dense product
// reaches 30-50 there; the columns cost one memory-bound copy per group and chunk. The same
// structure as the CPU reference (runtime/src/cpu/conv.rs), so both executors share a plan.
const IM2COL: &str = include_str!("../../../shaders/conv_im2col.wgsl");
const COL2IM: &str = include_str!("../../../shaders/conv_col2im.wgsl");
const LAYOUT: &str = include_str!("../../../shaders/conv_layout.wgsl");
const CHANNEL_SUM: &str = include_str!("../../../shaders/channel_sum.wgsl");

/// Column buffers stay under this size (and the device's binding limit): the batch is cut
/// into chunks of whole samples, so memory does not grow with it.
const MAX_COLUMN_BYTES: u64 = 64 << 20;

/// Samples `n0..n0 + count` of the batch, and group `group`: one matrix product's share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub n0: u64,
    pub count: u64,
    pub group: u64,
}

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

    /// Sizes of one part: its first sample, columns and channel offsets.
    fn part_sizes(&self, batch: u64, part: Part) -> Vec<(&'static str, u64)> {
        let mut s = self.sizes(batch);
        s.extend([
            ("N0", part.n0),
            ("PC", part.count * self.win.pixels()),
            ("C0", part.group * self.cin_per_group()),
            ("CO0", part.group * self.cout_per_group()),
        ]);
        s
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

    fn part_tag(&self, batch: u64, part: Part) -> String {
        format!(
            "{} n{}+{} g#{}",
            self.tag(batch),
            part.n0,
            part.count,
            part.group
        )
    }

    /// The batch cut into chunks whose column matrix (taps x pixels) and product result
    /// (filters x pixels) fit `max_bytes`: one sample per chunk at least.
    pub fn chunks(&self, batch: u64, max_bytes: u64) -> Vec<(u64, u64)> {
        let per_sample = self.taps().max(self.cout_per_group()) * self.win.pixels() * 4;
        let per = (max_bytes.min(MAX_COLUMN_BYTES) / per_sample.max(1)).clamp(1, batch.max(1));
        (0..batch.div_ceil(per))
            .map(|i| (i * per, per.min(batch - i * per)))
            .collect()
    }

    /// Every part of a batch: the chunks of each group.
    pub fn parts(&self, batch: u64, max_bytes: u64) -> Vec<Part> {
        let chunks = self.chunks(batch, max_bytes);
        (0..self.groups)
            .flat_map(|group| {
                chunks
                    .iter()
                    .map(move |&(n0, count)| Part { n0, count, group })
            })
            .collect()
    }
}

/// col = the columns of one part (taps x pixels); bindings [x, col].
pub fn im2col_kernel(g: &ConvGeometry, batch: u64, part: Part, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "x").output(1, "col", false);
    per_element(
        format!("conv_im2col[{}]", g.part_tag(batch, part)),
        IM2COL,
        g.taps() * part.count * g.win.pixels(),
        reads,
        (&g.part_sizes(batch, part), &g.pads(), &[]),
        &[],
    )
}

/// dx (=|+=) the part's share of the input gradient from the columns' gradient, plus a bias
/// per input channel with `bias` (a transposed convolution's forward pass); bindings [dcol,
/// dx, (b)].
pub fn col2im_kernel(
    g: &ConvGeometry,
    batch: u64,
    part: Part,
    store: Store,
    bias: bool,
    path: ReadPath,
) -> KernelSource {
    let mut reads = Reads::new(path).input(0, "dcol");
    if bias {
        reads = reads.input(2, "b");
    }
    let reads = reads.output(1, "dx", store == Store::Accumulate);
    let v = if bias { "acc + rd_b(C0 + ci)" } else { "acc" };
    per_element(
        format!(
            "conv_col2im[{}{}{}]",
            g.part_tag(batch, part),
            if bias { " bias" } else { "" },
            acc_tag(store)
        ),
        COL2IM,
        part.count * g.cin_per_group() * g.win.h * g.win.w,
        reads,
        (&g.part_sizes(batch, part), &g.pads(), &[]),
        &[("STORE", store_elem(store, "dx", "o", v))],
    )
}

/// y's channels of the part (=|+=) the product's result t (filters x pixels), plus the bias;
/// bindings [t, y, (b)].
pub fn output_kernel(
    g: &ConvGeometry,
    batch: u64,
    part: Part,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    let mut reads = Reads::new(path).input(0, "t");
    if g.bias {
        reads = reads.input(2, "b");
    }
    let reads = reads.output(1, "y", store == Store::Accumulate);
    let v = if g.bias {
        "rd_t(i) + rd_b(CO0 + co)"
    } else {
        "rd_t(i)"
    };
    per_element(
        format!(
            "conv_output[{}{}{}]",
            g.part_tag(batch, part),
            if g.bias { " bias" } else { "" },
            acc_tag(store)
        ),
        LAYOUT,
        g.cout_per_group() * part.count * g.win.pixels(),
        reads,
        (&g.part_sizes(batch, part), &[], &[]),
        &[("BODY", store_elem(store, "y", "o", v))],
    )
}

/// The part's output gradient as a matrix (filters x pixels) for the gradient products;
/// bindings [dy, dyt].
pub fn gather_dy_kernel(g: &ConvGeometry, batch: u64, part: Part, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "dy").output(1, "dyt", false);
    per_element(
        format!("conv_gather_dy[{}]", g.part_tag(batch, part)),
        LAYOUT,
        g.cout_per_group() * part.count * g.win.pixels(),
        reads,
        (&g.part_sizes(batch, part), &[], &[]),
        &[("BODY", "dyt[i] = rd_dy(o);".to_string())],
    )
}

/// gb[c] (=|+=) the sum of dy over the batch and channel c's pixels; bindings [dy, gb].
pub fn channel_sum_kernel(
    batch: u64,
    channels: u64,
    pixels: u64,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "dy")
        .output(1, "gb", store == Store::Accumulate);
    per_element(
        format!("channel_sum[{batch}x{channels}x{pixels}{}]", acc_tag(store)),
        CHANNEL_SUM,
        channels,
        reads,
        (&[("N", batch), ("P", pixels)], &[], &[]),
        &[("STORE", store_elem(store, "gb", "i", "acc"))],
    )
}

/// The weights of group `group` (filters x taps) as a tensor of their own: `w` itself with
/// one group, else a copy (the product reads whole bindings).
fn group_weight(
    b: &mut Builder,
    g: &ConvGeometry,
    w: TensorId,
    group: u64,
    name: &str,
) -> TensorId {
    if g.groups == 1 {
        return w;
    }
    let len = g.cout_per_group() * g.taps();
    let t = b.tensor(format!("{name}.weight#g{group}"), len, Kind::Activation);
    b.copy(w, group * len, t, 0, len);
    t
}

/// The forward dispatches of a conv node: per group and chunk of the batch, im2col, one
/// matrix product with the group's filters, and the result moved into y (=|+= as `store`
/// says) with the bias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    g: &ConvGeometry,
    batch: u64,
    x: TensorId,
    w: TensorId,
    bias: Option<TensorId>,
    (y, store): (TensorId, Store),
    name: &str,
    label: String,
) {
    let reads = b.reads();
    let (pix, taps, cout_g) = (g.win.pixels(), g.taps(), g.cout_per_group());
    let mut wg = None;
    for part in g.parts(batch, b.max_binding()) {
        let pc = part.count * pix;
        if part.n0 == 0 {
            wg = Some(group_weight(b, g, w, part.group, name));
        }
        let col = b.tensor(format!("{name}.col"), taps * pc, Kind::Activation);
        b.emit(
            im2col_kernel(g, batch, part, reads),
            vec![x, col],
            label.clone(),
        );
        let t = b.tensor(format!("{name}.t"), cout_g * pc, Kind::Activation);
        let wg = wg.expect("chunk 0 comes first");
        b.emit(
            b.matmul(Gemm::new(cout_g, pc, taps)),
            vec![wg, col, t],
            label.clone(),
        );
        let mut bindings = vec![t, y];
        bindings.extend(bias);
        b.emit(
            output_kernel(g, batch, part, store, reads),
            bindings,
            label.clone(),
        );
    }
}

/// The gradient dispatches of a conv node: its weight and bias gradients (when trained) and
/// its input gradient `dx` (when something upstream needs it), plus `dx_bias` per input
/// channel (a transposed convolution's forward pass is this input gradient). Per group and
/// chunk: dy as a matrix, the weight gradient dy x col^T (col recomputed, not kept from the
/// forward pass), and the columns' gradient w^T x dy scattered back by col2im.
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
    dx_bias: Option<TensorId>,
    name: &str,
    label: &dyn Fn(&str) -> String,
) {
    use Kind::Activation;
    let reads = b.reads();
    let (pix, taps, cout_g) = (g.win.pixels(), g.taps(), g.cout_per_group());
    let wlen = cout_g * taps;
    if let Some(gb) = grads.1 {
        b.emit(
            channel_sum_kernel(batch, g.cout, pix, b.param_store(), reads),
            vec![dy, gb],
            label("backward bias"),
        );
    }
    if grads.0.is_none() && dx.is_none() {
        return;
    }
    let (mut wg, mut gwg) = (None, None);
    for part in g.parts(batch, b.max_binding()) {
        let pc = part.count * pix;
        let first = part.n0 == 0;
        if first {
            wg = dx.map(|_| group_weight(b, g, w, part.group, name));
            gwg = grads.0.map(|gw| {
                if g.groups == 1 {
                    return gw;
                }
                let t = b.tensor(
                    format!("{name}.weight.grad#g{}", part.group),
                    wlen,
                    Activation,
                );
                if b.param_store() == Store::Accumulate {
                    // An earlier micro-batch's gradient, to add this one's to.
                    b.copy(gw, part.group * wlen, t, 0, wlen);
                }
                t
            });
        }
        let dyt = b.tensor(format!("{name}.dyt"), cout_g * pc, Activation);
        b.emit(
            gather_dy_kernel(g, batch, part, reads),
            vec![dy, dyt],
            label("backward"),
        );
        if let Some(gwg) = gwg {
            let col = b.tensor(format!("{name}.col"), taps * pc, Activation);
            b.emit(
                im2col_kernel(g, batch, part, reads),
                vec![x, col],
                label("backward weight"),
            );
            let prod = Gemm {
                trans_b: true,
                // The first chunk writes (or adds to an earlier micro-batch's), the rest add.
                store: if first && b.param_store() == Store::Write {
                    Store::Write
                } else {
                    Store::Accumulate
                },
                ..Gemm::new(cout_g, taps, pc)
            };
            b.emit(
                b.matmul(prod),
                vec![dyt, col, gwg],
                label("backward weight"),
            );
            let last = part.n0 + part.count == batch;
            if last && g.groups > 1 {
                let gw = grads.0.expect("gwg comes from gw");
                b.copy(gwg, 0, gw, part.group * wlen, wlen);
            }
        }
        if let (Some((dx, store)), Some(wg)) = (dx, wg) {
            let dcol = b.tensor(format!("{name}.dcol"), taps * pc, Activation);
            let prod = Gemm {
                trans_a: true,
                ..Gemm::new(taps, pc, cout_g)
            };
            b.emit(b.matmul(prod), vec![wg, dyt, dcol], label("backward input"));
            let mut bindings = vec![dcol, dx];
            bindings.extend(dx_bias);
            b.emit(
                col2im_kernel(g, batch, part, store, dx_bias.is_some(), reads),
                bindings,
                label("backward input"),
            );
        }
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
                let part = Part {
                    n0: 1,
                    count: 2,
                    group: 1,
                };
                for k in [
                    im2col_kernel(&g, 3, part, path),
                    col2im_kernel(&g, 3, part, Store::Write, false, path),
                    col2im_kernel(&g, 3, part, Store::Write, true, path),
                    col2im_kernel(&g, 3, part, Store::Accumulate, false, path),
                    output_kernel(&g, 3, part, Store::Write, path),
                    output_kernel(&g, 3, part, Store::Accumulate, path),
                    gather_dy_kernel(&g, 3, part, path),
                    channel_sum_kernel(3, g.cout, g.win.pixels(), Store::Write, path),
                    channel_sum_kernel(3, g.cout, g.win.pixels(), Store::Accumulate, path),
                ] {
                    validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
                }
            }
        }
    }

    #[test]
    fn batch_chunks_fit_the_binding() {
        // 18 taps x 72 pixels x 4 bytes = 5184 bytes a sample: three under 16 KiB.
        let g = geometry((6, 3, 1, Padding::Same, 2, 1, true), &[4, 9, 8]);
        assert_eq!(g.chunks(7, 16 << 10), vec![(0, 3), (3, 3), (6, 1)]);
        assert_eq!(g.parts(7, 16 << 10).len(), 6);
        // Whole batch under a large limit; one sample when even that does not fit.
        assert_eq!(g.chunks(7, 1 << 30), vec![(0, 7)]);
        assert_eq!(g.chunks(2, 100), vec![(0, 1), (1, 1)]);
        // AlexNet conv1 at batch 128: 363 x 3025 floats a sample, 15 under 64 MiB.
        let c1 = geometry((96, 11, 4, Padding::Valid, 1, 1, true), &[3, 227, 227]);
        let chunks = c1.chunks(128, 128 << 20);
        assert_eq!((chunks.len(), chunks[0]), (9, (0, 15)));
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
