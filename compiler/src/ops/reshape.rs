//! flatten and reshape: views of the same values (no data moves on any executor).

use super::registry::OpDef;
use super::{prod, ArgDef, Op, Parsed, ShapeError, Ty};
use crate::ast::{shape_str, ValueKind};

pub(super) const FLATTEN: OpDef = OpDef {
    name: "flatten",
    aliases: &[],
    args: &[],
    example: "flatten",
    named_inputs: false,
    main_call: false,
    parse: |_, _| Op::Flatten,
};

pub(super) const RESHAPE: OpDef = OpDef {
    name: "reshape",
    aliases: &[],
    args: ARGS,
    example: "reshape(16x7x7)",
    named_inputs: false,
    main_call: false,
    parse: |p, _| from_args(p),
};

const ARGS: &[ArgDef] = &[("shape", &[], Ty::Shape, true, true)];

fn from_args(p: &Parsed) -> Op {
    let shape = match p.get("shape").map(|v| &v.kind) {
        Some(ValueKind::Shape(d)) => d.clone(),
        Some(ValueKind::Int(i)) => vec![*i as u64],
        Some(ValueKind::List(l)) => l
            .iter()
            .filter_map(|x| x.as_f64().map(|f| f as u64))
            .collect(),
        _ => vec![],
    };
    Op::Reshape { shape }
}

pub(super) fn describe(shape: &[u64]) -> String {
    format!("reshape[{}]", shape_str(shape))
}

pub(super) fn infer_flatten(x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    Ok(vec![prod(x)?])
}

pub(super) fn infer(x: &[u64], shape: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let (a, b) = (prod(x)?, prod(shape)?);
    if a != b {
        return Err(ShapeError {
            message: format!(
                "cannot reshape {} ({a} values) to {} ({b} values)",
                shape_str(x),
                shape_str(shape)
            ),
            help: Some("the element counts of the two shapes must match".into()),
        });
    }
    Ok(shape.to_vec())
}

// ---------------------------------------------------------------------------------------------
// GPU lowering: the forward pass aliases the input's tensor, and so does the gradient unless
// the input already has one to add to.

use crate::kernels::{copy, Store};
use crate::program::{Builder, TensorId};

/// Passes the gradient `dy` of a flatten or reshape node to its input: `Some(dy)` when the
/// input has no gradient yet (it shares the buffer, as the value does), else one dispatch
/// adding it to the input's gradient `existing` and None.
pub(crate) fn lower_backward(
    b: &mut Builder,
    len: u64,
    dy: TensorId,
    existing: Option<TensorId>,
    label: String,
) -> Option<TensorId> {
    match existing {
        None => Some(dy),
        Some(dx) => {
            b.emit(copy(len, Store::Accumulate, b.reads()), vec![dy, dx], label);
            None
        }
    }
}
