//! add: the elementwise sum of two or more tensors of one shape (residual connections).

use super::registry::OpDef;
use super::{Op, ShapeError};
use crate::ast::shape_str;

pub(super) const DEF: OpDef = OpDef {
    name: "add",
    aliases: &[],
    args: &[],
    example: "add(a, b)",
    named_inputs: true,
    main_call: false,
    parse: |_, _| Op::Add,
};

/// Two tensors that differ in shape, or one without the batch axis, add by broadcasting (a
/// primitive); equal batched shapes keep the layer's fast kernel.
pub const BROADCAST: super::prim::PrimOp =
    super::prim::PrimOp::Binary(crate::prim::Binary::Add);

/// Whether an `add` is the layer (equal batched shapes) rather than a broadcast; two shapes
/// that do not broadcast stay with the layer, whose error suggests a projection.
pub(super) fn is_layer(inputs: &[(Vec<u64>, bool)]) -> bool {
    let same = inputs.iter().all(|i| i.1 && i.0 == inputs[0].0);
    if same || inputs.len() != 2 {
        return true;
    }
    let s = |i: &(Vec<u64>, bool)| super::prim::shape_of(&i.0, i.1);
    crate::prim::broadcast(&s(&inputs[0]), &s(&inputs[1])).is_err()
}

pub(super) fn infer(inputs: &[Vec<u64>]) -> Result<Vec<u64>, ShapeError> {
    let first = inputs.first().cloned().unwrap_or_default();
    for s in &inputs[1.min(inputs.len())..] {
        if *s != first {
            return Err(ShapeError {
                message: format!(
                    "`add` needs equal shapes, but got {} and {}",
                    shape_str(&first),
                    shape_str(s)
                ),
                help: Some(
                    "project the shortcut with a 1x1 conv (or a dense layer) to match".into(),
                ),
            });
        }
    }
    Ok(first)
}

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering.

use crate::kernels::{copy, elementwise, KernelSource, ReadPath, Reads, Store};
use crate::program::{Builder, TensorId};

/// y = a + b.
pub fn forward_kernel(len: u64, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "a")
        .input(1, "b")
        .output(2, "y", false);
    elementwise(
        format!("add[{len}]"),
        len,
        reads,
        &[("a", "a"), ("b", "b")],
        "",
        "y[i] = a + b;",
    )
}

/// The forward dispatches of an add node: the first two inputs summed, the rest added on.
pub(crate) fn lower_forward(
    b: &mut Builder,
    len: u64,
    ins: &[TensorId],
    y: TensorId,
    label: String,
) {
    b.emit(
        forward_kernel(len, b.reads()),
        vec![ins[0], ins[1], y],
        label.clone(),
    );
    for &extra in &ins[2..] {
        b.emit(
            copy(len, Store::Accumulate, b.reads()),
            vec![extra, y],
            label.clone(),
        );
    }
}

/// The gradient of an add node reaches each input that needs one unchanged: `dxs` holds the
/// gradient slot of each such input.
pub(crate) fn lower_backward(
    b: &mut Builder,
    len: u64,
    dy: TensorId,
    dxs: &[(TensorId, Store)],
    label: String,
) {
    for &(dx, store) in dxs {
        b.emit(copy(len, store, b.reads()), vec![dy, dx], label.clone());
    }
}
