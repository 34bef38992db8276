//! The tensor primitives as ONNX nodes. Axes are the user's (per example, negative from the
//! end) and become full axes here; comparisons give floats 0/1 as netc's (a Cast after the
//! bool ONNX gives), `where` takes any nonzero as true (a Cast to bool), ids are cast to int64.
//! `rsqrt` is Sqrt then Reciprocal and `square` is Mul(x, x): opset 17 has neither.

use super::builder::{Layer, TensorType};
use super::layers::batched_shape;
use super::proto::{Attr, DataType, Dim};
use super::{bool_like, Cx, ExportError};
use netc_compiler::ops::prim::{PrimOp, MASKED};
use netc_compiler::prim::{Binary, Compare, Reduce, Unary};
use petgraph::graph::NodeIndex;

/// Writes primitive node `n`; returns the tensor holding its value.
pub(super) fn lower(cx: &mut Cx, n: NodeIndex, op: &PrimOp) -> Result<String, ExportError> {
    let layer = cx.layer(n);
    let ins = cx.inputs(n);
    let ty = cx.node_type(n);
    let srcs = cx.net.inputs_of(n);
    // The first input's rank per example and whether it has the batch axis.
    let first = srcs.first().map(|&s| {
        let node = cx.net.node(s);
        (node.shape.len(), node.batched)
    });
    let out = layer.name.clone();
    Ok(match op {
        PrimOp::Param { .. } => {
            let name = cx.net.node(n).params[0].name.clone();
            cx.weight(&name)?
        }
        PrimOp::Unary(u) => unary(cx, &layer, *u, &ins[0], ty),
        PrimOp::Scalar { op, c } => {
            let k = cx.b.scalar(&layer, "c", *c as f32);
            cx.b.node(
                &layer,
                binary_op(*op),
                &[ins[0].clone(), k],
                (&out, ty),
                &[],
            )
        }
        PrimOp::Binary(op) => cx.b.node(&layer, binary_op(*op), &ins, (&out, ty), &[]),
        PrimOp::Compare(c) => compare(cx, &layer, *c, &ins, ty),
        PrimOp::Where => {
            let cty = cx.b.ty(&ins[0]).clone();
            let c = cast(cx, &layer, &ins[0], &format!("{out}/cond"), bool_like(&cty));
            let args = [c, ins[1].clone(), ins[2].clone()];
            cx.b.node(&layer, "Where", &args, (&out, ty), &[])
        }
        PrimOp::Reduce { op, axes, keep } => {
            let (rank, batched) = first.unwrap_or((0, false));
            let full: Vec<i64> = axes.iter().map(|&a| full_axis(a, rank, batched)).collect();
            reduce(cx, &layer, (*op, full, *keep), &ins[0], ty)
        }
        PrimOp::Matmul => cx.b.node(&layer, "MatMul", &ins, (&out, ty), &[]),
        PrimOp::Permute { perm } => {
            let (rank, batched) = first.unwrap_or((0, false));
            let mut full: Vec<i64> = if batched { vec![0] } else { vec![] };
            full.extend(perm.iter().map(|&p| full_axis(p, rank, batched)));
            cx.b.node(
                &layer,
                "Transpose",
                &ins,
                (&out, ty),
                &[("perm", Attr::Ints(full))],
            )
        }
        PrimOp::Transpose => {
            let r = ty.rank() as i64;
            let mut perm: Vec<i64> = (0..r).collect();
            perm.swap((r - 1) as usize, (r - 2) as usize);
            cx.b.node(
                &layer,
                "Transpose",
                &ins,
                (&out, ty),
                &[("perm", Attr::Ints(perm))],
            )
        }
        PrimOp::Slice { axis, start, end } => {
            let (rank, batched) = first.unwrap_or((0, false));
            let a = full_axis(*axis, rank, batched);
            let args = [
                ins[0].clone(),
                cx.b.int_init(&layer, "starts", &[*start as i64]),
                cx.b.int_init(&layer, "ends", &[*end as i64]),
                cx.b.int_init(&layer, "axes", &[a]),
            ];
            cx.b.node(&layer, "Slice", &args, (&out, ty), &[])
        }
        PrimOp::Gather => {
            let ids = ids(cx, &layer, &ins[1]);
            cx.b.node(
                &layer,
                "Gather",
                &[ins[0].clone(), ids],
                (&out, ty),
                &[("axis", Attr::Int(0))],
            )
        }
        PrimOp::OneHot => one_hot(cx, &layer, &ins[0], ty),
        PrimOp::Arange { n } => {
            let values: Vec<f32> = (0..*n).map(|i| i as f32).collect();
            let name = cx.b.fresh(&out);
            cx.b.float_init(&name, &[*n], &values)
        }
        PrimOp::Causal { on: false } => ins[0].clone(),
        PrimOp::Causal { on: true } => causal(cx, &layer, &ins[0], ty),
        PrimOp::Unflatten { .. } | PrimOp::Merge { .. } => {
            let node = cx.net.node(n);
            let to = match node.batched {
                true => batched_shape(&node.shape),
                false => node.shape.iter().map(|&d| d as i64).collect(),
            };
            let s = cx.b.int_init(&layer, "shape", &to);
            cx.b.node(&layer, "Reshape", &[ins[0].clone(), s], (&out, ty), &[])
        }
        PrimOp::Concat { axis } => concat(cx, n, &layer, *axis, ty),
    })
}

/// The full (non-negative) axis of user axis `a` of a tensor with `rank` axes per example.
fn full_axis(a: i64, rank: usize, batched: bool) -> i64 {
    let per = if a < 0 { a + rank as i64 } else { a };
    per + i64::from(batched)
}

fn binary_op(b: Binary) -> &'static str {
    match b {
        Binary::Add => "Add",
        Binary::Sub => "Sub",
        Binary::Mul => "Mul",
        Binary::Div => "Div",
        Binary::Max => "Max",
        Binary::Min => "Min",
    }
}

/// The ONNX comparison (`ne` is Not of Equal).
fn compare_op(c: Compare) -> &'static str {
    match c {
        Compare::Gt => "Greater",
        Compare::Ge => "GreaterOrEqual",
        Compare::Lt => "Less",
        Compare::Le => "LessOrEqual",
        Compare::Eq | Compare::Ne => "Equal",
    }
}

fn unary(cx: &mut Cx, layer: &Layer, u: Unary, x: &str, ty: TensorType) -> String {
    let b = &mut cx.b;
    let x = x.to_string();
    let out = layer.name.clone();
    let one = |b: &mut super::Builder, op: &str| {
        b.node(layer, op, std::slice::from_ref(&x), (&out, ty.clone()), &[])
    };
    match u {
        Unary::Neg => one(b, "Neg"),
        Unary::Exp => one(b, "Exp"),
        Unary::Log => one(b, "Log"),
        Unary::Sqrt => one(b, "Sqrt"),
        Unary::Tanh => one(b, "Tanh"),
        Unary::Erf => one(b, "Erf"),
        Unary::Sin => one(b, "Sin"),
        Unary::Cos => one(b, "Cos"),
        Unary::Sigmoid => one(b, "Sigmoid"),
        Unary::Relu => one(b, "Relu"),
        Unary::Abs => one(b, "Abs"),
        Unary::Reciprocal => one(b, "Reciprocal"),
        Unary::Rsqrt => {
            let s = b.node(
                layer,
                "Sqrt",
                &[x],
                (&format!("{out}/sqrt"), ty.clone()),
                &[],
            );
            b.node(layer, "Reciprocal", &[s], (&out, ty), &[])
        }
        Unary::Square => b.node(layer, "Mul", &[x.clone(), x], (&out, ty), &[]),
        Unary::Pow(c) => {
            let e = b.scalar(layer, "exponent", c as f32);
            b.node(layer, "Pow", &[x, e], (&out, ty), &[])
        }
    }
}

/// `x` cast to `ty`'s element type.
fn cast(cx: &mut Cx, layer: &Layer, x: &str, out: &str, ty: TensorType) -> String {
    let to = ty.dtype as i64;
    cx.b.node(
        layer,
        "Cast",
        &[x.to_string()],
        (out, ty),
        &[("to", Attr::Int(to))],
    )
}

/// Float ids as int64 indices.
fn ids(cx: &mut Cx, layer: &Layer, x: &str) -> String {
    let ty = TensorType {
        dtype: DataType::Int64,
        dims: cx.b.ty(x).dims.clone(),
    };
    cast(cx, layer, x, &format!("{}/ids", layer.name), ty)
}

/// `one_hot(ids, like)`: the ids laid out as the output's leading axes, then ONNX's OneHot
/// with off/on values 0 and 1 over the last axis.
fn one_hot(cx: &mut Cx, layer: &Layer, x: &str, ty: TensorType) -> String {
    let i = ids(cx, layer, x);
    let lead = ty.dims[..ty.rank() - 1].to_vec();
    let to: Vec<i64> = lead
        .iter()
        .map(|d| match d {
            Dim::Value(v) => *v as i64,
            Dim::Param(_) => 0,
        })
        .collect();
    let s = cx.b.int_init(layer, "shape", &to);
    let lty = TensorType {
        dtype: DataType::Int64,
        dims: lead,
    };
    let laid = cx.b.node(
        layer,
        "Reshape",
        &[i, s],
        (&format!("{}/laid", layer.name), lty),
        &[],
    );
    let depth = match ty.dims.last() {
        Some(Dim::Value(n)) => *n as i64,
        _ => 1,
    };
    let d = cx.b.int_init(layer, "depth", &[depth]);
    let v = cx.b.fresh(&format!("{}/values", layer.name));
    let v = cx.b.float_init(&v, &[2], &[0.0, 1.0]);
    cx.b.node(
        layer,
        "OneHot",
        &[laid, d, v],
        (&layer.name, ty),
        &[("axis", Attr::Int(-1))],
    )
}

/// Tensors joined along a user axis; those without the batch axis repeated over it first
/// (Unsqueeze, then Expand to the batch of a batched input).
pub(super) fn concat(
    cx: &mut Cx,
    n: NodeIndex,
    layer: &Layer,
    axis: i64,
    ty: TensorType,
) -> String {
    let srcs = cx.net.inputs_of(n);
    let batched = cx.net.node(n).batched;
    let rank = cx.net.node(n).shape.len();
    let ins = cx.inputs(n);
    let anchor = srcs
        .iter()
        .position(|&s| cx.net.node(s).batched)
        .map(|i| ins[i].clone());
    let mut parts = vec![];
    for (i, &s) in srcs.iter().enumerate() {
        let node = cx.net.node(s);
        let (Some(anchor), true, false) = (&anchor, batched, node.batched) else {
            parts.push(ins[i].clone());
            continue;
        };
        let r = node.shape.len();
        let mut dims = vec![Dim::Value(1)];
        dims.extend(node.shape.iter().map(|&d| Dim::Value(d)));
        let zero = cx.b.int_init(layer, "axis0", &[0]);
        let lifted = cx.b.node(
            layer,
            "Unsqueeze",
            &[ins[i].clone(), zero],
            (&format!("{}/lifted", layer.name), TensorType::float(dims)),
            &[],
        );
        let bty = TensorType {
            dtype: DataType::Int64,
            dims: vec![Dim::Value(1)],
        };
        let bsize = cx.b.node(
            layer,
            "Shape",
            std::slice::from_ref(anchor),
            (&format!("{}/batch", layer.name), bty),
            &[("start", Attr::Int(0)), ("end", Attr::Int(1))],
        );
        let ones = cx.b.int_init(layer, "ones", &vec![1; r]);
        let sty = TensorType {
            dtype: DataType::Int64,
            dims: vec![Dim::Value(r as u64 + 1)],
        };
        let shape = cx.b.node(
            layer,
            "Concat",
            &[bsize, ones],
            (&format!("{}/repeat", layer.name), sty),
            &[("axis", Attr::Int(0))],
        );
        let mut edims = vec![cx.batch.clone()];
        edims.extend(node.shape.iter().map(|&d| Dim::Value(d)));
        let e = cx.b.node(
            layer,
            "Expand",
            &[lifted, shape],
            (
                &format!("{}/repeated", layer.name),
                TensorType::float(edims),
            ),
            &[],
        );
        parts.push(e);
    }
    let a = full_axis(axis, rank, batched);
    cx.b.node(
        layer,
        "Concat",
        &parts,
        (&layer.name, ty),
        &[("axis", Attr::Int(a))],
    )
}

/// A comparison as floats 0/1 (ONNX's is bool; `ne` is Not of Equal).
fn compare(cx: &mut Cx, layer: &Layer, c: Compare, ins: &[String], ty: TensorType) -> String {
    let out = layer.name.clone();
    let t = cx.b.node(
        layer,
        compare_op(c),
        ins,
        (&format!("{out}/bool"), bool_like(&ty)),
        &[],
    );
    let t = match c {
        Compare::Ne => cx.b.node(
            layer,
            "Not",
            &[t],
            (&format!("{out}/not"), bool_like(&ty)),
            &[],
        ),
        Compare::Gt | Compare::Ge | Compare::Lt | Compare::Le | Compare::Eq => t,
    };
    cast(cx, layer, &t, &out, ty)
}

/// A reduction over full axes `axes`: ReduceSum takes them as an input in opset 13 and later,
/// ReduceMean and ReduceMax as an attribute until opset 18.
fn reduce(
    cx: &mut Cx,
    layer: &Layer,
    (op, axes, keep): (Reduce, Vec<i64>, bool),
    x: &str,
    ty: TensorType,
) -> String {
    let out = layer.name.clone();
    let keep = ("keepdims", Attr::Int(i64::from(keep)));
    let x = x.to_string();
    match op {
        Reduce::Sum => {
            let a = cx.b.int_init(layer, "axes", &axes);
            cx.b.node(layer, "ReduceSum", &[x, a], (&out, ty), &[keep])
        }
        Reduce::Mean => cx.b.node(
            layer,
            "ReduceMean",
            &[x],
            (&out, ty),
            &[("axes", Attr::Ints(axes)), keep],
        ),
        Reduce::Max => cx.b.node(
            layer,
            "ReduceMax",
            &[x],
            (&out, ty),
            &[("axes", Attr::Ints(axes)), keep],
        ),
    }
}

/// Scores [.., T, T] with the future masked: Where(lower triangle, x, -1e30), as netc masks.
fn causal(cx: &mut Cx, layer: &Layer, x: &str, ty: TensorType) -> String {
    let out = layer.name.clone();
    let t = match ty.dims.last() {
        Some(Dim::Value(t)) => *t as usize,
        _ => 0,
    };
    let mask: Vec<u8> = (0..t * t).map(|i| u8::from(i % t <= i / t)).collect();
    let m = cx.b.fresh(&format!("{out}/mask"));
    let m = cx.b.init(&m, DataType::Bool, &[t as u64, t as u64], &mask);
    let low = cx.b.scalar(layer, "masked", MASKED as f32);
    cx.b.node(layer, "Where", &[m, x.to_string(), low], (&out, ty), &[])
}
