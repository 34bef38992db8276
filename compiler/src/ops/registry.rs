//! The one list of ops. Each op's definition (name, aliases, arguments, the example its errors
//! show, how its checked arguments become an `Op`) sits in the op's own module; `OPS` lists them
//! in the order errors name them ("the ops are: ..." and did-you-mean ties). Name and alias
//! lookup, suggestions and signatures all derive from this list.

use super::args::{ArgDef, Parsed};
use super::{
    activation, add, batchnorm, concat, conv, conv_transpose, dense, dropout, lrn, pool, prim,
    reshape, softmax, Op,
};
use crate::diag::Diagnostic;

/// One op as model files write it.
pub struct OpDef {
    /// The canonical name (the IR printout's and every message's).
    pub name: &'static str,
    /// Other spellings accepted in model files.
    pub aliases: &'static [&'static str],
    /// The settings it takes, in positional order.
    pub(crate) args: &'static [ArgDef],
    /// A call that compiles, shown when a required argument is missing.
    pub example: &'static str,
    /// Whether its positional arguments name its input tensors (`add(a, b)`) rather than
    /// settings.
    pub named_inputs: bool,
    /// Whether, in a named chain, this call is the one that takes the statement's name
    /// (`c1 = conv(64, k=3) -> relu` names the conv `c1`, the relu `c1.relu`).
    pub main_call: bool,
    /// Builds the op from checked arguments, reporting settings out of range.
    pub(crate) parse: fn(&Parsed, &mut Vec<Diagnostic>) -> Op,
}

/// Every op, in the order errors list them.
pub const OPS: &[&OpDef] = &[
    &dense::DEF,
    &conv::DEF,
    &conv_transpose::DEF,
    &pool::MAXPOOL,
    &pool::AVGPOOL,
    &activation::RELU,
    &activation::SIGMOID,
    &activation::TANH,
    &activation::LEAKY_RELU,
    &softmax::DEF,
    &lrn::DEF,
    &dropout::DEF,
    &reshape::FLATTEN,
    &reshape::RESHAPE,
    &add::DEF,
    &concat::DEF,
    &batchnorm::DEF,
    // The tensor primitives (ops::prim): layers are written from them (the standard library).
    &prim::NEG,
    &prim::EXP,
    &prim::LOG,
    &prim::SQRT,
    &prim::RSQRT,
    &prim::ERF,
    &prim::SIN,
    &prim::ARANGE,
    &prim::COS,
    &prim::ABS,
    &prim::SQUARE,
    &prim::RECIPROCAL,
    &prim::POW,
    &prim::SCALE,
    &prim::SHIFT,
    &prim::CLAMP_MIN,
    &prim::CLAMP_MAX,
    &prim::SUB,
    &prim::MUL,
    &prim::DIV,
    &prim::MAXIMUM,
    &prim::MINIMUM,
    &prim::GT,
    &prim::GE,
    &prim::LT,
    &prim::LE,
    &prim::EQ,
    &prim::NE,
    &prim::WHERE,
    &prim::SUM,
    &prim::MEAN,
    &prim::MAX,
    &prim::MATMUL,
    &prim::PERMUTE,
    &prim::TRANSPOSE,
    &prim::SLICE_DEF,
    &prim::GATHER,
    &prim::ONE_HOT,
    &prim::PARAM_DEF,
    &prim::CAUSAL,
    &prim::UNFLATTEN_DEF,
    &prim::MERGE_DEF,
];

fn all() -> impl Iterator<Item = &'static OpDef> + Clone {
    OPS.iter().copied()
}

/// Ops that read no tensor (`param`): a chain's value does not flow into them.
pub fn takes_no_input(op: &str) -> bool {
    find(op).is_some_and(|d| matches!(d.name, "param" | "arange"))
}

/// The op a name or alias stands for.
pub fn find(name: &str) -> Option<&'static OpDef> {
    all().find(|d| d.name == name || d.aliases.contains(&name))
}

/// The canonical op names, in registry order (as any shorter-lived `&str`, to chain with
/// other names).
pub fn names<'a>() -> impl Iterator<Item = &'a str> + Clone {
    all().map(|d| d.name as &'a str)
}

pub fn is_op(name: &str) -> bool {
    find(name).is_some()
}

/// The canonical name of an op or alias; any other name is returned as it is.
pub fn canonical_op(name: &str) -> &str {
    find(name).map_or(name, |d| d.name)
}

/// Ops whose positional arguments are input tensor names rather than settings.
pub fn takes_named_inputs(op: &str) -> bool {
    find(op).is_some_and(|d| d.named_inputs)
}

/// Whether a chain's call is the one that takes the statement's name (see `OpDef::main_call`).
pub fn is_main_call(op: &str) -> bool {
    find(op).is_some_and(|d| d.main_call)
}
