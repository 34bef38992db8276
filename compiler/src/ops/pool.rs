//! maxpool and avgpool: a k x k window per channel. Max pooling takes the first maximum of
//! each window (ties go to the earliest tap, row-major, as Caffe and PyTorch do) and pads
//! with -inf; average pooling divides by k*k whatever the padding (PyTorch's default,
//! count_include_pad=True). `ceil=true` rounds the output size up as Caffe and PyTorch's
//! ceil_mode=True do; the last windows may then overhang the padding after the input: max
//! pooling takes the taps inside the input, average pooling divides by the taps inside the
//! input or its declared padding (PyTorch and Caffe leave the overhang out of the divisor).

use super::registry::OpDef;
use super::window::Window2d;
use super::{need_image, ArgDef, Op, Parsed, ShapeError, Ty};
use crate::diag::Diagnostic;
use crate::shape::Padding;

const ARGS: &[ArgDef] = &[
    ("k", &["kernel", "size"], Ty::Int, true, true),
    ("s", &["stride"], Ty::Int, false, false),
    ("pad", &["padding", "p"], Ty::Pad, false, false),
    ("ceil", &["ceil_mode"], Ty::Bool, false, false),
];
pub(super) const MAXPOOL: OpDef = OpDef {
    name: "maxpool",
    aliases: &["max_pool"],
    args: ARGS,
    example: "maxpool(k=2)",
    named_inputs: false,
    main_call: false,
    parse: |p, errors| from_args(p, errors, true),
};

pub(super) const AVGPOOL: OpDef = OpDef {
    name: "avgpool",
    aliases: &["avg_pool"],
    args: ARGS,
    example: "avgpool(k=2)",
    named_inputs: false,
    main_call: false,
    parse: |p, errors| from_args(p, errors, false),
};

fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>, max: bool) -> Op {
    let k = p.int("k", 0);
    let stride = p.int("s", k);
    p.positive("k", k, errors);
    p.positive("s", stride, errors);
    let (pad, ceil) = (p.pad(), p.boolean("ceil", false));
    if ceil && pad == Padding::Same {
        let sp = p.get("ceil").map_or(p.span, |v| v.span);
        errors.push(
            Diagnostic::error("`ceil=true` cannot go with `pad=same`".to_string())
                .at(sp, "ceil rounding here")
                .help("SAME padding already rounds the output size up; give an explicit `pad=` for Caffe's rounding"),
        );
    }
    if max {
        Op::MaxPool {
            k,
            stride,
            pad,
            ceil,
        }
    } else {
        Op::AvgPool {
            k,
            stride,
            pad,
            ceil,
        }
    }
}

pub(super) fn describe(name: &str, k: u64, stride: u64, pad: Padding, ceil: bool) -> String {
    let ceil = if ceil { ", ceil" } else { "" };
    format!("{name}[k={k}, s={stride}, pad={pad}{ceil}]")
}

/// Channels and window of a pooling node (`op` must be maxpool or avgpool) on a CxHxW input.
pub fn geometry(op: &Op, input: &[u64]) -> Result<(u64, Window2d), ShapeError> {
    let (Op::MaxPool {
        k,
        stride,
        pad,
        ceil,
    }
    | Op::AvgPool {
        k,
        stride,
        pad,
        ceil,
    }) = *op
    else {
        return Err(ShapeError {
            message: format!("`{}` is not a pooling op", op.name()),
            help: None,
        });
    };
    let (c, h, w) = need_image(op.name(), input)?;
    Ok((c, Window2d::pooling(h, w, k, stride, pad, ceil)?))
}

pub(super) fn infer(op: &Op, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let (c, win) = geometry(op, x)?;
    Ok(vec![c, win.oh, win.ow])
}

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering. Max pooling saves each window's winner (its index within the
// channel plane) in the forward pass; both backward kernels gather, one invocation per input
// element, so no two invocations write the same element.

use crate::kernels::{
    acc_tag, f32_lit, per_element, store_elem, KernelSource, ReadPath, Reads, Store,
};
use crate::program::{Builder, TensorId};

const FORWARD: &str = include_str!("../../../shaders/pool_forward.wgsl");
const BACKWARD: &str = include_str!("../../../shaders/pool_backward.wgsl");

fn sizes(win: &Window2d, batch: u64) -> Vec<(&'static str, u64)> {
    vec![
        ("H", win.h),
        ("W", win.w),
        ("OH", win.oh),
        ("OW", win.ow),
        ("K", win.k),
        ("S", win.stride),
        ("N", batch),
    ]
}

fn pads(win: &Window2d) -> Vec<(&'static str, i64)> {
    vec![
        ("PAD_T", win.pad_top as i64),
        ("PAD_L", win.pad_left as i64),
    ]
}

fn tag(c: u64, win: &Window2d, batch: u64) -> String {
    let ceil = if win.overhangs() { " ceil" } else { "" };
    format!(
        "{batch}x{c}x{}x{} k{} s{} p{},{}{ceil}",
        win.h, win.w, win.k, win.stride, win.pad_top, win.pad_left
    )
}

/// Average pooling's 1 / divisor for the window at (oy, ox), as WGSL: the constant 1/(K*K)
/// unless ceil rounding lets windows overhang the padding after the input, whose taps the
/// divisor leaves out (see `Window2d::rows_counted`).
fn avg_scale(win: &Window2d) -> String {
    if !win.overhangs() {
        return f32_lit(1.0 / (win.k * win.k) as f64);
    }
    let (eh, ew) = (
        win.pad_top + win.h + win.pad_bottom,
        win.pad_left + win.w + win.pad_right,
    );
    format!("(1.0 / f32((min(oy * S + K, {eh}u) - oy * S) * (min(ox * S + K, {ew}u) - ox * S)))")
}

/// Max: bindings [x, y, winners]; avg: [x, y].
pub fn forward_kernel(
    max: bool,
    c: u64,
    win: &Window2d,
    batch: u64,
    path: ReadPath,
) -> KernelSource {
    let mut reads = Reads::new(path).input(0, "x").output(1, "y", false);
    let body = if max {
        reads = reads.output(2, "winner", false);
        "y[i] = select(0.0, best, arg >= 0);\n    winner[i] = f32(arg);".to_string()
    } else {
        format!("y[i] = sum * {};", avg_scale(win))
    };
    per_element(
        format!(
            "{}_fwd[{}]",
            if max { "maxpool" } else { "avgpool" },
            tag(c, win, batch)
        ),
        FORWARD,
        batch * c * win.pixels(),
        reads,
        (&sizes(win, batch), &pads(win), &[]),
        &[("BODY", body)],
    )
}

/// dx (=|+=) the input gradient. Max: bindings [dy, winners, dx]; avg: [dy, dx].
pub fn backward_kernel(
    max: bool,
    c: u64,
    win: &Window2d,
    batch: u64,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    let acc = store == Store::Accumulate;
    let (reads, body) = if max {
        (
            Reads::new(path)
                .input(0, "dy")
                .input(1, "winner")
                .output(2, "dx", acc),
            "if (rd_winner(o) == here) { acc += rd_dy(o); }".to_string(),
        )
    } else {
        (
            Reads::new(path).input(0, "dy").output(1, "dx", acc),
            format!("acc += rd_dy(o) * {};", avg_scale(win)),
        )
    };
    per_element(
        format!(
            "{}_bwd[{}{}]",
            if max { "maxpool" } else { "avgpool" },
            tag(c, win, batch),
            acc_tag(store)
        ),
        BACKWARD,
        batch * c * win.h * win.w,
        reads,
        (&sizes(win, batch), &pads(win), &[]),
        &[
            ("BODY", body),
            ("STORE", store_elem(store, "dx", "i", "acc")),
        ],
    )
}

/// The forward dispatch of a pooling node; max pooling's winners go to `winners`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    max: bool,
    c: u64,
    win: &Window2d,
    batch: u64,
    x: TensorId,
    y: TensorId,
    winners: Option<TensorId>,
    label: String,
) {
    let mut bindings = vec![x, y];
    bindings.extend(winners.filter(|_| max));
    b.emit(
        forward_kernel(max, c, win, batch, b.reads()),
        bindings,
        label,
    );
}

/// The input-gradient dispatch of a pooling node.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    max: bool,
    c: u64,
    win: &Window2d,
    batch: u64,
    dy: TensorId,
    winners: Option<TensorId>,
    dx: (TensorId, Store),
    label: String,
) {
    let mut bindings = vec![dy];
    bindings.extend(winners.filter(|_| max));
    bindings.push(dx.0);
    b.emit(
        backward_kernel(max, c, win, batch, dx.1, b.reads()),
        bindings,
        label,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::validate;

    #[test]
    fn every_kernel_validates_on_every_read_path() {
        let floor = Window2d::new(7, 8, 3, 2, 1, Padding::Explicit(1))
            .ok()
            .expect("fits");
        let ceil = Window2d::pooling(7, 8, 3, 2, Padding::Explicit(1), true)
            .ok()
            .expect("fits");
        let cases = [ReadPath::Storage, ReadPath::Texture, ReadPath::Image]
            .into_iter()
            .flat_map(|p| [(p, floor), (p, ceil)]);
        for (path, win) in cases {
            for max in [true, false] {
                for k in [
                    forward_kernel(max, 3, &win, 2, path),
                    backward_kernel(max, 3, &win, 2, Store::Write, path),
                    backward_kernel(max, 3, &win, 2, Store::Accumulate, path),
                ] {
                    validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
                }
            }
        }
    }
}
