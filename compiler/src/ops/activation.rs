//! relu, leaky_relu, sigmoid, tanh: elementwise, shape-preserving, on any shape.

use super::{ArgDef, Op, Parsed, Ty};

pub(super) const LEAKY_ARGS: &[ArgDef] = &[(
    "alpha",
    &["slope", "negative_slope"],
    Ty::Float,
    false,
    true,
)];

pub(super) fn leaky_from_args(p: &Parsed) -> Op {
    Op::LeakyRelu {
        alpha: p.float("alpha", 0.01),
    }
}

pub(super) fn describe_leaky(alpha: f64) -> String {
    format!("leaky_relu[{alpha}]")
}
