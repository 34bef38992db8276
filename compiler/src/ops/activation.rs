//! relu, leaky_relu, sigmoid, tanh: elementwise, shape-preserving, on any shape. The dense
//! kernel fuses one into its product when it is the layer's only consumer (see `act`).

use super::registry::OpDef;
use super::{ArgDef, Op, Parsed, Ty};
use crate::diag::Diagnostic;

pub(super) const RELU: OpDef = OpDef {
    name: "relu",
    aliases: &[],
    args: &[],
    example: "relu",
    named_inputs: false,
    main_call: false,
    parse: |_, _| Op::Relu,
};

pub(super) const SIGMOID: OpDef = OpDef {
    name: "sigmoid",
    aliases: &[],
    args: &[],
    example: "sigmoid",
    named_inputs: false,
    main_call: false,
    parse: |_, _| Op::Sigmoid,
};

pub(super) const TANH: OpDef = OpDef {
    name: "tanh",
    aliases: &[],
    args: &[],
    example: "tanh",
    named_inputs: false,
    main_call: false,
    parse: |_, _| Op::Tanh,
};

pub(super) const LEAKY_RELU: OpDef = OpDef {
    name: "leaky_relu",
    aliases: &["leakyrelu"],
    args: LEAKY_ARGS,
    example: "leaky_relu(0.2)",
    named_inputs: false,
    main_call: false,
    parse: leaky_from_args,
};

const LEAKY_ARGS: &[ArgDef] = &[(
    "alpha",
    &["slope", "negative_slope"],
    Ty::Float,
    false,
    true,
)];

/// The negative slope must be finite and in [0, 1]: 0 is a ReLU, 1 the identity; beyond,
/// the "leak" outgrows the positive side (and `1e999` reads as infinity).
fn leaky_from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let alpha = p.float("alpha", 0.01);
    if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) {
        let sp = p.get("alpha").map_or(p.span, |v| v.span);
        errors.push(
            Diagnostic::error(format!(
                "leaky_relu's slope must be a finite number in [0, 1], found {alpha}"
            ))
            .at(sp, "out of range")
            .help("0 is a ReLU, 1 the identity; DCGAN uses 0.2"),
        );
    }
    Op::LeakyRelu { alpha }
}

pub(super) fn describe_leaky(alpha: f64) -> String {
    format!("leaky_relu[{alpha}]")
}

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering.

use crate::kernels::{
    acc_tag, elementwise, store_scalar, with_old, Act, KernelSource, ReadPath, Reads, Store,
};
use crate::program::{Builder, TensorId};

/// The activation an op computes, or None for every other op. leaky_relu needs alpha > 0: its
/// backward reads the sign of the saved output.
pub fn act(op: &Op) -> Option<Act> {
    match op {
        Op::Relu => Some(Act::Relu),
        Op::Sigmoid => Some(Act::Sigmoid),
        Op::Tanh => Some(Act::Tanh),
        Op::LeakyRelu { alpha } if *alpha > 0.0 => Some(Act::LeakyRelu(*alpha)),
        Op::LeakyRelu { .. }
        | Op::Input { .. }
        | Op::Dense { .. }
        | Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::MaxPool { .. }
        | Op::AvgPool { .. }
        | Op::Softmax
        | Op::Lrn { .. }
        | Op::Dropout { .. }
        | Op::Flatten
        | Op::Reshape { .. }
        | Op::Add
        | Op::Concat { .. }
        | Op::BatchNorm { .. }
        | Op::Prim(_) => None,
    }
}

/// y = act(x) over `len` elements.
pub fn forward_kernel(act: Act, len: u64, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "x").output(1, "y", false);
    elementwise(
        format!("act_fwd[{}{len}]", act.tag().trim_start().to_string() + " "),
        len,
        reads,
        &[("x", "x")],
        "",
        &format!("y[i] = {};", act.forward_expr("x")),
    )
}

/// dx (=|+=) dy * act'(.): relu, sigmoid and tanh use the forward output y; leaky_relu uses x
/// (binding 1 holds whichever the rule needs).
pub fn backward_kernel(act: Act, len: u64, store: Store, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "dy").input(1, "saved").output(
        2,
        "dx",
        store == Store::Accumulate,
    );
    let d = act.backward_expr("dy", "s");
    elementwise(
        format!(
            "act_bwd[{}{len}{}]",
            act.tag().trim_start().to_string() + " ",
            acc_tag(store)
        ),
        len,
        reads,
        &with_old(store, "dx", "dx_old", vec![("dy", "dy"), ("saved", "s")]),
        "",
        &store_scalar(store, "dx", &d),
    )
}

/// The forward dispatch of an activation node over `len` elements.
pub(crate) fn lower_forward(
    b: &mut Builder,
    act: Act,
    len: u64,
    x: TensorId,
    y: TensorId,
    label: String,
) {
    b.emit(forward_kernel(act, len, b.reads()), vec![x, y], label);
}

/// The input-gradient dispatch of an activation node, from its saved output `y`.
pub(crate) fn lower_backward(
    b: &mut Builder,
    act: Act,
    len: u64,
    dy: TensorId,
    y: TensorId,
    (dx, store): (TensorId, Store),
    label: String,
) {
    b.emit(
        backward_kernel(act, len, store, b.reads()),
        vec![dy, y, dx],
        label,
    );
}
