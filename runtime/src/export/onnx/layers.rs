//! The layer ops as ONNX nodes. The traps, each checked against the operator's schema and by
//! the tests against onnxruntime:
//! - LRN: ONNX divides `alpha` by `size` (as Caffe and PyTorch do); netc's alpha is the
//!   AlexNet paper's, not divided, so ONNX's alpha is netc's times size. For an even size ONNX
//!   sums channels c - (size/2 - 1) ..= c + size/2, netc c - size/2 ..= c + size/2 - 1: an even
//!   LRN is written out (square, a window sum as a 3-D convolution over the channels, pow, div).
//! - SAME padding: explicit `pads` with the odd pixel after (bottom/right), as netc pads.
//! - average pooling divides by k*k, padding included: `count_include_pad = 1`.
//! - pooling's `ceil=true`: `ceil_mode = 1`; a window overhanging the padding after the input
//!   divides by its taps inside the input and its padding, as onnxruntime does (and PyTorch).
//!   A last window netc drops (it would start in the padding after) opset 17's size rule keeps:
//!   see `pool`.
//! - dense: `Gemm` with `transB = 1` (the weight is [units, inputs], PyTorch's layout); over the
//!   last axis of a sequence, `MatMul` by the transposed weight and `Add`.
//! - conv_transpose: the weight is [C, filters/groups, k, k] as ONNX's; `output_padding` is
//!   whatever makes ONNX's size rule give netc's output size (netc's own, or SAME's).
//! - batchnorm: `BatchNormalization` in inference form with the running statistics; ONNX's
//!   momentum is 1 - PyTorch's (it weighs the running value, not the batch's).
//! - dropout: removed (inference), its consumers read its input.

use super::builder::{Layer, TensorType};
use super::proto::{Attr, Dim};
use super::{Cx, ExportError};
use netc_compiler::ops::conv::ConvGeometry;
use netc_compiler::ops::conv_transpose::TransposeGeometry;
use netc_compiler::ops::window::Window2d;
use netc_compiler::ops::{pool, Op};
use netc_compiler::shape::{same_padding, Padding};
use petgraph::graph::NodeIndex;

type R = Result<String, ExportError>;

/// Writes node `n` (op `op`, not an input or a primitive); returns the tensor holding its value.
pub(super) fn lower(cx: &mut Cx, n: NodeIndex, op: &Op) -> R {
    let layer = cx.layer(n);
    let ins = cx.inputs(n);
    let ty = cx.node_type(n);
    let in_shape = cx.net.node(cx.net.inputs_of(n)[0]).shape.clone();
    let out = layer.name.clone();
    let b = &mut cx.b;
    let simple = |b: &mut super::Builder, op_type: &str, attrs: &[(&'static str, Attr)]| {
        b.node(&layer, op_type, &ins, (&out, ty.clone()), attrs)
    };
    Ok(match op {
        Op::Relu => simple(b, "Relu", &[]),
        Op::Sigmoid => simple(b, "Sigmoid", &[]),
        Op::Tanh => simple(b, "Tanh", &[]),
        Op::LeakyRelu { alpha } => simple(b, "LeakyRelu", &[("alpha", Attr::Float(*alpha as f32))]),
        Op::Flatten => simple(b, "Flatten", &[("axis", Attr::Int(1))]),
        Op::Dropout { .. } => ins[0].clone(),
        Op::Add if ins.len() == 2 => simple(b, "Add", &[]),
        Op::Add => simple(b, "Sum", &[]),
        // Inputs without the batch axis (a class token) are repeated over it, as primitives'.
        Op::Concat { axis } => super::prims::concat(cx, n, &layer, *axis as i64, ty),
        Op::Reshape { shape } => {
            let to = batched_shape(shape);
            let s = b.int_init(&layer, "shape", &to);
            b.node(&layer, "Reshape", &[ins[0].clone(), s], (&out, ty), &[])
        }
        Op::Softmax => softmax(cx, &layer, &ins[0], ty),
        Op::Lrn { .. } => lrn(cx, &layer, op, &ins[0], ty),
        Op::BatchNorm { eps, momentum } => {
            let mut args = vec![ins[0].clone()];
            for part in ["weight", "bias", "running_mean", "running_var"] {
                args.push(cx.weight(&format!("{}.{part}", layer.name))?);
            }
            let attrs = [
                ("epsilon", Attr::Float(*eps as f32)),
                ("momentum", Attr::Float(1.0 - *momentum as f32)),
            ];
            cx.b.node(&layer, "BatchNormalization", &args, (&out, ty), &attrs)
        }
        Op::Dense { bias, .. } => dense(cx, &layer, &ins[0], *bias, ty)?,
        Op::Conv { .. } => conv(cx, &layer, op, (&ins[0], &in_shape), ty)?,
        Op::ConvTranspose { .. } => conv_transpose(cx, &layer, op, (&ins[0], &in_shape), ty)?,
        Op::MaxPool { .. } | Op::AvgPool { .. } => pool(cx, &layer, op, (&ins, &in_shape), ty)?,
        Op::Input { .. } | Op::Prim(_) => unreachable!("inputs and primitives are lowered apart"),
    })
}

/// A per-example shape as a Reshape target: 0 keeps the batch axis (`allowzero` is 0).
pub(super) fn batched_shape(shape: &[u64]) -> Vec<i64> {
    std::iter::once(0)
        .chain(shape.iter().map(|&d| d as i64))
        .collect()
}

/// A shape error of a node that shape inference accepted: the network was changed by hand.
fn shape(cx: &Cx, layer: &Layer, e: netc_compiler::ops::ShapeError) -> ExportError {
    ExportError::Unsupported {
        net: cx.net.name.clone(),
        layers: vec![(layer.name.clone(), "shape".into(), e.message)],
    }
}

/// MaxPool or AveragePool. Pooling's `ceil=true` is `ceil_mode = 1`, except where netc (as
/// PyTorch and onnxruntime) drops a last window that would start in the padding after the input:
/// opset 17's shape rule keeps it, so there the pooling rounds down over `pads` extended after
/// the input to reach netc's size (max pooling ignores pads; average pooling without padding
/// then divides by the taps inside, `count_include_pad = 0`; with padding it is refused, see
/// `pool_why_not`).
fn pool(
    cx: &mut Cx,
    layer: &Layer,
    op: &Op,
    (ins, in_shape): (&[String], &[u64]),
    ty: TensorType,
) -> R {
    let (_, win) = pool::geometry(op, in_shape).map_err(|e| shape(cx, layer, e))?;
    let (Op::MaxPool { pad, ceil, .. } | Op::AvgPool { pad, ceil, .. }) = *op else {
        unreachable!("called on pooling only")
    };
    let max = matches!(op, Op::MaxPool { .. });
    let mut pads = pads(pad, (win.h, win.w), win.k, win.stride);
    let drops = ceil && onnx_drops(&win);
    if drops {
        // [top, left, bottom, right]: the bottom and right reach the last window's end.
        let reach = |o: u64, f: u64, before: u64| {
            ((o - 1) * win.stride + win.k).saturating_sub(f + before) as i64
        };
        pads[2] = pads[2].max(reach(win.oh, win.h, win.pad_top));
        pads[3] = pads[3].max(reach(win.ow, win.w, win.pad_left));
    }
    let mut attrs = vec![
        ("kernel_shape", Attr::Ints(vec![win.k as i64; 2])),
        ("strides", Attr::Ints(vec![win.stride as i64; 2])),
        ("pads", Attr::Ints(pads)),
    ];
    if !max {
        attrs.push(("count_include_pad", Attr::Int(i64::from(!drops))));
    }
    if ceil && !drops {
        attrs.push(("ceil_mode", Attr::Int(1)));
    }
    let op_type = if max { "MaxPool" } else { "AveragePool" };
    Ok(cx.b.node(layer, op_type, ins, (&layer.name, ty), &attrs))
}

/// Whether opset 17's ceil_mode size rule, `ceil((F + pads - k) / s) + 1`, gives more windows
/// than netc's (which drops a last window starting in the padding after the input).
fn onnx_drops(win: &Window2d) -> bool {
    let onnx =
        |f: u64, before: u64, after: u64| (f + before + after - win.k).div_ceil(win.stride) + 1;
    win.oh < onnx(win.h, win.pad_top, win.pad_bottom)
        || win.ow < onnx(win.w, win.pad_left, win.pad_right)
}

/// Why a pooling cannot be written (None: it can): average pooling with padding and ceil
/// rounding where netc drops a window opset 17's rule keeps (its divisor counts the padding,
/// which extended pads would count too).
pub(super) fn pool_why_not(op: &Op, in_shape: &[u64]) -> Option<String> {
    let Op::AvgPool {
        pad, ceil: true, ..
    } = *op
    else {
        return None;
    };
    let (_, win) = pool::geometry(op, in_shape).ok()?;
    (pad != Padding::Valid && onnx_drops(&win)).then(|| {
        "ceil rounding drops a last window that would start in the padding after the input, which ONNX's ceil_mode keeps (opset 17) and extended pads would count in the divisor".to_string()
    })
}

/// ONNX `pads` [top, left, bottom, right] of netc's padding for a window of `k_eff` pixels.
fn pads(pad: Padding, (h, w): (u64, u64), k_eff: u64, s: u64) -> Vec<i64> {
    let (t, bo, l, r) = match pad {
        Padding::Valid => (0, 0, 0, 0),
        Padding::Explicit(p) => (p, p, p, p),
        Padding::Same => {
            let (t, bo) = same_padding(h, k_eff, s);
            let (l, r) = same_padding(w, k_eff, s);
            (t, bo, l, r)
        }
    };
    vec![t as i64, l as i64, bo as i64, r as i64]
}

/// Softmax over every value of an example, as netc's: over the last axis of a vector, and of
/// the flattened example otherwise (Flatten, Softmax, Reshape back).
fn softmax(cx: &mut Cx, layer: &Layer, x: &str, ty: TensorType) -> String {
    let b = &mut cx.b;
    if ty.rank() == 2 {
        return b.node(
            layer,
            "Softmax",
            &[x.to_string()],
            (&layer.name, ty),
            &[("axis", Attr::Int(-1))],
        );
    }
    let numel: u64 = ty.dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Value(v) => *v,
            Dim::Param(_) => 1,
        })
        .product();
    let flat_ty = TensorType::float(vec![ty.dims[0].clone(), Dim::Value(numel)]);
    let flat = b.node(
        layer,
        "Flatten",
        &[x.to_string()],
        (&format!("{}/flat", layer.name), flat_ty.clone()),
        &[("axis", Attr::Int(1))],
    );
    let sm = b.node(
        layer,
        "Softmax",
        &[flat],
        (&format!("{}/softmax", layer.name), flat_ty),
        &[("axis", Attr::Int(-1))],
    );
    let dims: Vec<u64> = ty.dims[1..]
        .iter()
        .map(|d| match d {
            Dim::Value(v) => *v,
            Dim::Param(_) => 1,
        })
        .collect();
    let s = b.int_init(layer, "shape", &batched_shape(&dims));
    b.node(layer, "Reshape", &[sm, s], (&layer.name, ty), &[])
}

/// LRN: ONNX's own for an odd size, written out for an even one (the module's doc says why).
fn lrn(cx: &mut Cx, layer: &Layer, op: &Op, x: &str, ty: TensorType) -> String {
    let Op::Lrn {
        size,
        alpha,
        beta,
        k,
    } = *op
    else {
        unreachable!("called for lrn nodes")
    };
    let b = &mut cx.b;
    if size % 2 == 1 {
        let attrs = [
            ("size", Attr::Int(size as i64)),
            ("alpha", Attr::Float((alpha * size as f64) as f32)),
            ("beta", Attr::Float(beta as f32)),
            ("bias", Attr::Float(k as f32)),
        ];
        return b.node(layer, "LRN", &[x.to_string()], (&layer.name, ty), &attrs);
    }
    // [N, C, H, W] -> squares [N, 1, C, H, W] -> window sums over C (a ones kernel [1, 1, size,
    // 1, 1] with size/2 channels of zeros before and size/2 - 1 after) -> [N, C, H, W].
    let name = |s: &str| format!("{}/{s}", layer.name);
    let mut five = ty.dims.clone();
    five.insert(1, Dim::Value(1));
    let five = TensorType::float(five);
    let sq = b.node(
        layer,
        "Mul",
        &[x.to_string(), x.to_string()],
        (&name("square"), ty.clone()),
        &[],
    );
    let axis = b.int_init(layer, "axis", &[1]);
    let sq5 = b.node(
        layer,
        "Unsqueeze",
        &[sq, axis.clone()],
        (&name("square5d"), five.clone()),
        &[],
    );
    let ones = b.float_init(
        &name("window"),
        &[1, 1, size, 1, 1],
        &vec![1.0; size as usize],
    );
    let half = (size / 2) as i64;
    let attrs = [
        ("kernel_shape", Attr::Ints(vec![size as i64, 1, 1])),
        ("pads", Attr::Ints(vec![half, 0, 0, half - 1, 0, 0])),
    ];
    let sums5 = b.node(
        layer,
        "Conv",
        &[sq5, ones],
        (&name("window_sum5d"), five),
        &attrs,
    );
    let sums = b.node(
        layer,
        "Squeeze",
        &[sums5, axis],
        (&name("window_sum"), ty.clone()),
        &[],
    );
    let a = b.scalar(layer, "alpha", alpha as f32);
    let scaled = b.node(layer, "Mul", &[sums, a], (&name("scaled"), ty.clone()), &[]);
    let kk = b.scalar(layer, "k", k as f32);
    let base = b.node(
        layer,
        "Add",
        &[scaled, kk],
        (&name("base"), ty.clone()),
        &[],
    );
    let be = b.scalar(layer, "beta", beta as f32);
    let den = b.node(
        layer,
        "Pow",
        &[base, be],
        (&name("denominator"), ty.clone()),
        &[],
    );
    b.node(layer, "Div", &[x.to_string(), den], (&layer.name, ty), &[])
}

fn dense(cx: &mut Cx, layer: &Layer, x: &str, bias: bool, ty: TensorType) -> R {
    let w = cx.weight(&format!("{}.weight", layer.name))?;
    let bias = match bias {
        true => Some(cx.weight(&format!("{}.bias", layer.name))?),
        false => None,
    };
    let b = &mut cx.b;
    if ty.rank() == 2 {
        let mut args = vec![x.to_string(), w];
        args.extend(bias);
        return Ok(b.node(
            layer,
            "Gemm",
            &args,
            (&layer.name, ty),
            &[("transB", Attr::Int(1))],
        ));
    }
    let wd = b.ty(&w).dims.clone();
    let wt_ty = TensorType::float(vec![wd[1].clone(), wd[0].clone()]);
    let wt = b.node(
        layer,
        "Transpose",
        &[w],
        (&format!("{}/weight_t", layer.name), wt_ty),
        &[("perm", Attr::Ints(vec![1, 0]))],
    );
    let Some(bias) = bias else {
        return Ok(b.node(
            layer,
            "MatMul",
            &[x.to_string(), wt],
            (&layer.name, ty),
            &[],
        ));
    };
    let mm = b.node(
        layer,
        "MatMul",
        &[x.to_string(), wt],
        (&format!("{}/matmul", layer.name), ty.clone()),
        &[],
    );
    Ok(b.node(layer, "Add", &[mm, bias], (&layer.name, ty), &[]))
}

fn conv(cx: &mut Cx, layer: &Layer, op: &Op, (x, in_shape): (&str, &[u64]), ty: TensorType) -> R {
    let g = ConvGeometry::of(op, in_shape).map_err(|e| shape(cx, layer, e))?;
    let Op::Conv { pad, .. } = *op else {
        unreachable!("called for conv nodes")
    };
    let win = g.win;
    let k_eff = win.dilation * (win.k - 1) + 1;
    let mut args = vec![x.to_string(), cx.weight(&format!("{}.weight", layer.name))?];
    if g.bias {
        args.push(cx.weight(&format!("{}.bias", layer.name))?);
    }
    let attrs = [
        ("kernel_shape", Attr::Ints(vec![win.k as i64; 2])),
        ("strides", Attr::Ints(vec![win.stride as i64; 2])),
        ("dilations", Attr::Ints(vec![win.dilation as i64; 2])),
        (
            "pads",
            Attr::Ints(pads(pad, (win.h, win.w), k_eff, win.stride)),
        ),
        ("group", Attr::Int(g.groups as i64)),
    ];
    Ok(cx.b.node(layer, "Conv", &args, (&layer.name, ty), &attrs))
}

fn conv_transpose(
    cx: &mut Cx,
    layer: &Layer,
    op: &Op,
    (x, in_shape): (&str, &[u64]),
    ty: TensorType,
) -> R {
    let g = TransposeGeometry::of(op, in_shape).map_err(|e| shape(cx, layer, e))?;
    let Op::ConvTranspose { pad, .. } = *op else {
        unreachable!("called for conv_transpose nodes")
    };
    // The adjoint conv's window runs over this op's output (oh x ow).
    let win = g.conv.win;
    let (s, k_eff) = (win.stride, win.dilation * (win.k - 1) + 1);
    let p = pads(pad, (win.h, win.w), k_eff, s);
    // ONNX: out = s (in - 1) + output_padding + k_eff - pad_begin - pad_end.
    let extra = |out: u64, inp: u64, begin: i64, end: i64| {
        out as i64 - ((s * (inp - 1) + k_eff) as i64 - begin - end)
    };
    let out_pad = vec![
        extra(win.h, in_shape[1], p[0], p[2]),
        extra(win.w, in_shape[2], p[1], p[3]),
    ];
    let mut args = vec![x.to_string(), cx.weight(&format!("{}.weight", layer.name))?];
    if g.bias {
        args.push(cx.weight(&format!("{}.bias", layer.name))?);
    }
    let attrs = [
        ("kernel_shape", Attr::Ints(vec![win.k as i64; 2])),
        ("strides", Attr::Ints(vec![s as i64; 2])),
        ("dilations", Attr::Ints(vec![win.dilation as i64; 2])),
        ("pads", Attr::Ints(p)),
        ("output_padding", Attr::Ints(out_pad)),
        ("group", Attr::Int(g.conv.groups as i64)),
    ];
    Ok(cx
        .b
        .node(layer, "ConvTranspose", &args, (&layer.name, ty), &attrs))
}
