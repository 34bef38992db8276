//! dense: a fully connected layer, y = x W^T + b, weight [units, fan_in].

use super::registry::OpDef;
use super::{mul, prod, ArgDef, InferCx, Op, Parsed, ShapeError, Ty, B, HB, W};
use crate::ast::shape_str;
use crate::diag::Diagnostic;

const ARGS: &[ArgDef] = &[
    ("units", &["out", "outputs"], Ty::Int, true, true),
    HB,
    W,
    B,
];
pub(super) const DEF: OpDef = OpDef {
    name: "dense",
    aliases: &["fc", "linear"],
    args: ARGS,
    example: "dense(128)",
    named_inputs: false,
    main_call: true,
    parse: from_args,
};

fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let units = p.int("units", 0);
    p.positive("units", units, errors);
    Op::Dense {
        units,
        bias: p.boolean("bias", true),
    }
}

pub(super) fn describe(units: u64, bias: bool) -> String {
    format!("dense[{units}{}]", if bias { "" } else { ", no bias" })
}

pub(super) fn infer(
    cx: &mut InferCx,
    x: &[u64],
    units: u64,
    bias: bool,
) -> Result<Vec<u64>, ShapeError> {
    // Over the last axis, as PyTorch's Linear: a 64x128 token sequence gives 64xunits. An
    // image (three axes) still needs an explicit flatten, with the message it always had.
    let Some((&fan_in, lead)) = x.split_last().filter(|_| x.len() != 3) else {
        return Err(ShapeError {
            message: format!(
                "`dense` needs a flat vector, but its input is {}",
                shape_str(x)
            ),
            help: Some(format!(
                "insert `flatten ->` before `dense` to turn {} into {}",
                shape_str(x),
                prod(x).map(|n| n.to_string()).unwrap_or_default()
            )),
        });
    };
    let rows = prod(lead)?;
    let weights = mul(fan_in, units)?;
    let b = if bias { units } else { 0 };
    cx.stats.params = super::add(weights, b)?;
    cx.stats.macs = mul(rows, weights)?;
    cx.stats.connections = super::add(cx.stats.macs, mul(rows, b)?)?;
    cx.stats.neurons = mul(rows, units)?;
    cx.weight("weight", vec![units, fan_in], fan_in, units);
    if bias {
        cx.bias("bias", vec![units], fan_in, units);
    }
    let mut out = lead.to_vec();
    out.push(units);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// GPU lowering. A weight larger than one storage binding is held in row blocks (see
// `schedule::ParamBinding`); each block is a dense layer of its own rows: its product writes
// a block of columns (copied into the output by concat's block copy), its weight and bias
// gradients come from that column block of dy, and the input gradient adds up over blocks.

use crate::kernels::{self, Act, Gemm, Store};
use crate::ops::concat::copy_kernel;
use crate::program::{Builder, Kind, ParamSet, TensorId};

/// One row block of a dense layer: rows r0..r0+rows of the weight and bias.
pub(crate) struct Block {
    r0: u64,
    rows: u64,
    w: TensorId,
    b: Option<TensorId>,
    gw: Option<TensorId>,
    gb: Option<TensorId>,
}

/// The blocks of layer `layer` as the parameter set holds them (one when it was not split).
pub(crate) fn blocks(params: &ParamSet, layer: &str, bias: bool, fan_in: u64) -> Vec<Block> {
    let ws = params.parts(&format!("{layer}.weight"));
    let bs = if bias {
        params.parts(&format!("{layer}.bias"))
    } else {
        &[]
    };
    ws.iter()
        .enumerate()
        .map(|(i, w)| Block {
            r0: w.offset / fan_in.max(1),
            rows: w.len / fan_in.max(1),
            w: w.tensor,
            b: bs.get(i).map(|b| b.tensor),
            gw: w.grad,
            gb: bs.get(i).and_then(|b| b.grad),
        })
        .collect()
}

/// y = act(x W^T + b); `name` names the per-block temporaries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    blocks: &[Block],
    batch: u64,
    (units, fan_in): (u64, u64),
    act: Act,
    x: TensorId,
    y: TensorId,
    name: &str,
    label: String,
) {
    let split = blocks.len() > 1;
    for (i, blk) in blocks.iter().enumerate() {
        let out = if split {
            b.tensor(format!("{name}#{i}"), batch * blk.rows, Kind::Activation)
        } else {
            y
        };
        let mut bindings = vec![x, blk.w, out];
        bindings.extend(blk.b);
        let k = b.matmul(Gemm {
            trans_b: true,
            bias: blk.b.is_some(),
            act,
            ..Gemm::new(batch, blk.rows, fan_in)
        });
        b.emit(k, bindings, label.clone());
        if split {
            let copy = copy_kernel(batch, blk.rows, units, blk.r0, None, b.reads());
            b.emit(copy, vec![out, y], label.clone());
        }
    }
}

/// What the input gradient of a dense layer is written to: the slot, how, an activation's
/// backward folded in (with the tensor it reads), and the dispatch's label.
pub(crate) struct InputGrad {
    pub dx: TensorId,
    pub store: Store,
    pub act: Act,
    pub saved: Option<TensorId>,
    pub label: String,
}

/// Weight and bias gradients of every block, and the input gradient (when asked for).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    blocks: &[Block],
    batch: u64,
    (units, fan_in): (u64, u64),
    dy: TensorId,
    x: TensorId,
    dx: Option<InputGrad>,
    name: &str,
    label: &dyn Fn(&str) -> String,
) {
    let split = blocks.len() > 1;
    for (i, blk) in blocks.iter().enumerate() {
        let dyk = if split {
            let t = b.tensor(format!("{name}#{i}.dy"), batch * blk.rows, Kind::Activation);
            let copy = copy_kernel(
                batch,
                blk.rows,
                units,
                blk.r0,
                Some(Store::Write),
                b.reads(),
            );
            b.emit(copy, vec![dy, t], label("backward dy block"));
            t
        } else {
            dy
        };
        if let Some(gw) = blk.gw {
            let k = b.matmul(Gemm {
                trans_a: true,
                store: b.param_store(),
                ..Gemm::new(blk.rows, fan_in, batch)
            });
            b.emit(k, vec![dyk, x, gw], label("backward weight"));
        }
        if let Some(gb) = blk.gb {
            let k = kernels::bias_grad(batch, blk.rows, b.param_store(), b.reads());
            b.emit(k, vec![dyk, gb], label("backward bias"));
        }
        if let Some(g) = &dx {
            // The first block writes (or adds to an earlier gradient, as `store` says); the
            // others add theirs.
            let store = if i == 0 { g.store } else { Store::Accumulate };
            let k = b.matmul(Gemm {
                store,
                act_grad: g.act,
                ..Gemm::new(batch, fan_in, blk.rows)
            });
            let mut bindings = vec![dyk, blk.w, g.dx];
            bindings.extend(g.saved);
            b.emit(k, bindings, g.label.clone());
        }
    }
}
