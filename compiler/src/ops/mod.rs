//! The op set. Each op (or small family) has one module here holding its arguments, its
//! output-shape rule and its figures (parameters, connections, neurons, MACs), and, for the
//! GPU path, its WGSL kernels (templates in shaders/) and its forward and gradient lowering;
//! the CPU reference of an op sits in the runtime's `cpu` module under the same name. This
//! module holds what is shared: the `Op` enum, argument checking, and exhaustive dispatch to
//! the ops (as `schedule` and the reference dispatch to them, with no wildcard arm).

pub mod activation;
pub mod add;
pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod dense;
pub mod dropout;
pub mod init;
pub mod lrn;
pub mod pool;
pub mod reshape;
pub mod softmax;
pub mod window;

pub use init::Init;

use crate::ast::{shape_str, Arg, Call, Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{ParamSpec, Stats};
use crate::shape::Padding;

/// Every op the IR knows. Kernels are square; images are CxHxW (batch excluded).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Input {
        shape: Vec<u64>,
    },
    Dense {
        units: u64,
        bias: bool,
    },
    Conv {
        filters: u64,
        k: u64,
        stride: u64,
        pad: Padding,
        groups: u64,
        dilation: u64,
        bias: bool,
    },
    ConvTranspose {
        filters: u64,
        k: u64,
        stride: u64,
        pad: Padding,
        output_padding: u64,
        groups: u64,
        dilation: u64,
        bias: bool,
    },
    MaxPool {
        k: u64,
        stride: u64,
        pad: Padding,
    },
    AvgPool {
        k: u64,
        stride: u64,
        pad: Padding,
    },
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu {
        alpha: f64,
    },
    Softmax,
    Lrn {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    Dropout {
        p: f64,
    },
    Flatten,
    Reshape {
        shape: Vec<u64>,
    },
    Add,
    Concat {
        axis: u64,
    },
    BatchNorm {
        eps: f64,
        momentum: f64,
    },
}

/// Op names accepted in model files.
pub const OP_NAMES: &[&str] = &[
    "dense",
    "conv",
    "conv_transpose",
    "maxpool",
    "avgpool",
    "relu",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "softmax",
    "lrn",
    "dropout",
    "flatten",
    "reshape",
    "add",
    "concat",
    "batchnorm",
];

pub fn is_op(name: &str) -> bool {
    OP_NAMES.contains(&name) || ALIASES.iter().any(|(a, _)| *a == name)
}

const ALIASES: &[(&str, &str)] = &[
    ("fc", "dense"),
    ("linear", "dense"),
    ("conv2d", "conv"),
    ("deconv", "conv_transpose"),
    ("max_pool", "maxpool"),
    ("avg_pool", "avgpool"),
    ("leakyrelu", "leaky_relu"),
    ("batch_norm", "batchnorm"),
    ("bn", "batchnorm"),
];

pub fn canonical_op(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(a, _)| *a == name)
        .map_or(name, |(_, c)| c)
}

/// Ops whose positional arguments are input tensor names rather than settings.
pub fn takes_named_inputs(op: &str) -> bool {
    matches!(canonical_op(op), "add" | "concat")
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Ty {
    Int,
    Float,
    Bool,
    Pad,
    Shape,
    Init,
}

/// One argument of an op: (name, aliases, type, required, positional).
pub(crate) type ArgDef = (&'static str, &'static [&'static str], Ty, bool, bool);

pub(crate) const W: ArgDef = ("init", &["weight_init", "w_init"], Ty::Init, false, false);
pub(crate) const B: ArgDef = ("bias_init", &["b_init"], Ty::Init, false, false);
pub(crate) const HB: ArgDef = ("bias", &["use_bias"], Ty::Bool, false, false);

/// The arguments an op (by canonical name) takes; ops without settings take none.
fn signature(op: &str) -> &'static [ArgDef] {
    match op {
        "dense" => dense::ARGS,
        "conv" => conv::ARGS,
        "conv_transpose" => conv_transpose::ARGS,
        "maxpool" | "avgpool" => pool::ARGS,
        "leaky_relu" => activation::LEAKY_ARGS,
        "lrn" => lrn::ARGS,
        "dropout" => dropout::ARGS,
        "reshape" => reshape::ARGS,
        "concat" => concat::ARGS,
        "batchnorm" => batchnorm::ARGS,
        _ => &[],
    }
}

/// How a missing required argument is shown being given.
fn example(op: &str) -> &'static str {
    match op {
        "dense" => dense::EXAMPLE,
        "conv" => conv::EXAMPLE,
        "conv_transpose" => conv_transpose::EXAMPLE,
        "maxpool" | "avgpool" => pool::EXAMPLE,
        "reshape" => reshape::EXAMPLE,
        _ => "",
    }
}

/// Typed argument values after checking a call against its op's signature.
pub(crate) struct Parsed {
    vals: Vec<(&'static str, Value)>,
    op: String,
    /// The call, for errors about an argument left at its default.
    span: Span,
}

impl Parsed {
    fn get(&self, k: &str) -> Option<&Value> {
        self.vals.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }
    fn int(&self, k: &str, default: u64) -> u64 {
        match self.get(k).map(|v| &v.kind) {
            Some(ValueKind::Int(i)) => *i as u64,
            _ => default,
        }
    }
    fn float(&self, k: &str, default: f64) -> f64 {
        self.get(k).and_then(|v| v.as_f64()).unwrap_or(default)
    }
    fn boolean(&self, k: &str, default: bool) -> bool {
        match self.get(k).map(|v| &v.kind) {
            Some(ValueKind::Bool(b)) => *b,
            _ => default,
        }
    }
    fn pad(&self) -> Padding {
        match self.get("pad").map(|v| &v.kind) {
            Some(ValueKind::Int(i)) => Padding::Explicit(*i as u64),
            Some(ValueKind::Call(c)) if c.name.name == "same" => Padding::Same,
            _ => Padding::Valid,
        }
    }
    /// Reports a size setting of zero.
    fn positive(&self, k: &str, v: u64, errors: &mut Vec<Diagnostic>) {
        if v == 0 {
            let sp = self.get(k).map_or(self.span, |v| v.span);
            errors.push(
                Diagnostic::error(format!("`{k}` of `{}` must be at least 1", self.op))
                    .at(sp, "zero here"),
            );
        }
    }
}

fn check_type(v: &Value, ty: Ty) -> Result<(), String> {
    let ok = match (ty, &v.kind) {
        (Ty::Int, ValueKind::Int(i)) => *i >= 0,
        (Ty::Float, ValueKind::Int(_) | ValueKind::Float(_)) => true,
        (Ty::Bool, ValueKind::Bool(_)) => true,
        (Ty::Pad, ValueKind::Int(i)) => *i >= 0,
        (Ty::Pad, ValueKind::Call(c)) => {
            !c.parens && matches!(c.name.name.as_str(), "same" | "valid")
        }
        (Ty::Shape, ValueKind::Shape(_) | ValueKind::Int(_)) => true,
        (Ty::Shape, ValueKind::List(l)) => l
            .iter()
            .all(|x| matches!(x.kind, ValueKind::Int(i) if i > 0)),
        (Ty::Init, _) => true,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    Err(match ty {
        Ty::Int => format!("expected a non-negative integer, found {}", v.type_name()),
        Ty::Float => format!("expected a number, found {}", v.type_name()),
        Ty::Bool => format!("expected true or false, found {}", v.type_name()),
        Ty::Pad => format!("expected `valid`, `same` or a number of pixels, found `{v}`"),
        Ty::Shape => format!("expected a shape like 256x6x6, found {}", v.type_name()),
        Ty::Init => "expected an initialiser".to_string(),
    })
}

/// A node's op and initialisers, parsed from one call.
pub struct OpSpec {
    pub op: Op,
    pub weight_init: Option<Init>,
    pub bias_init: Option<Init>,
}

/// Checks a call's arguments against the op's signature and builds the op. `args` excludes the
/// positional tensor names of add/concat. Every bad argument is reported, not just the first.
pub fn parse_op(call: &Call, args: &[Arg], errors: &mut Vec<Diagnostic>) -> Option<OpSpec> {
    let op = canonical_op(&call.name.name);
    let sig = signature(op);
    let before = errors.len();
    let mut vals: Vec<(&'static str, Value)> = vec![];
    let positional: Vec<_> = sig.iter().filter(|a| a.4).collect();
    let mut pos = 0;
    for a in args {
        let entry = match &a.key {
            Some(k) => match sig
                .iter()
                .find(|s| s.0 == k.name || s.1.contains(&k.name.as_str()))
            {
                Some(e) => e,
                None => {
                    let names = sig.iter().map(|s| s.0);
                    let mut d = Diagnostic::error(format!("`{op}` has no argument `{}`", k.name))
                        .at(k.span, "unknown argument");
                    let spellings = sig
                        .iter()
                        .flat_map(|s| std::iter::once(s.0).chain(s.1.iter().copied()));
                    d = match did_you_mean(&k.name, spellings) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if sig.is_empty() => d.help(format!("`{op}` takes no arguments")),
                        None => d.help(format!(
                            "`{op}` takes: {}",
                            names.collect::<Vec<_>>().join(", ")
                        )),
                    };
                    errors.push(d);
                    continue;
                }
            },
            None => match positional.get(pos) {
                Some(e) => {
                    pos += 1;
                    *e
                }
                None => {
                    let d = Diagnostic::error(format!("too many positional arguments for `{op}`"))
                        .at(a.value.span, "unexpected argument");
                    errors.push(match sig.iter().find(|s| !s.4) {
                        Some(s) => d.help(format!("name the setting, e.g. `{}=...`", s.0)),
                        None if sig.is_empty() => d.help(format!("`{op}` takes no arguments")),
                        None => d,
                    });
                    continue;
                }
            },
        };
        if vals.iter().any(|(n, _)| *n == entry.0) {
            errors.push(
                Diagnostic::error(format!("argument `{}` given twice", entry.0))
                    .at(a.value.span, "second value"),
            );
            continue;
        }
        if entry.2 == Ty::Init {
            if let Err(d) = Init::from_value(&a.value) {
                errors.push(d);
                continue;
            }
        } else if let Err(msg) = check_type(&a.value, entry.2) {
            errors.push(
                Diagnostic::error(format!("argument `{}` of `{op}`: {msg}", entry.0))
                    .at(a.value.span, "wrong type"),
            );
            continue;
        }
        vals.push((entry.0, a.value.clone()));
    }
    // A misspelt key usually is the missing argument: report only the misspelling then.
    let unknown_key = errors.len() > before;
    for s in sig.iter().filter(|s| s.3) {
        if !vals.iter().any(|(n, _)| *n == s.0) && !unknown_key {
            errors.push(
                Diagnostic::error(format!("`{op}` is missing its argument `{}`", s.0))
                    .at(call.span, "missing argument")
                    .help(format!("for example `{}`", example(op))),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    let p = Parsed {
        vals,
        op: op.to_string(),
        span: call.span,
    };
    let op_v = match op {
        "dense" => dense::from_args(&p, errors),
        "conv" => conv::from_args(&p, errors),
        "conv_transpose" => conv_transpose::from_args(&p, errors),
        "maxpool" => pool::from_args(&p, errors, true),
        "avgpool" => pool::from_args(&p, errors, false),
        "relu" => Op::Relu,
        "sigmoid" => Op::Sigmoid,
        "tanh" => Op::Tanh,
        "softmax" => Op::Softmax,
        "flatten" => Op::Flatten,
        "add" => Op::Add,
        "leaky_relu" => activation::leaky_from_args(&p),
        "lrn" => lrn::from_args(&p, errors),
        "dropout" => dropout::from_args(&p, errors),
        "reshape" => reshape::from_args(&p),
        "concat" => concat::from_args(&p),
        "batchnorm" => batchnorm::from_args(&p),
        _ => return None,
    };
    if errors.len() > before {
        return None;
    }
    let init = |k: &str| p.get(k).and_then(|v| Init::from_value(v).ok());
    Some(OpSpec {
        op: op_v,
        weight_init: init("init"),
        bias_init: init("bias_init"),
    })
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Dense { .. } => "dense",
            Op::Conv { .. } => "conv",
            Op::ConvTranspose { .. } => "conv_transpose",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::Relu => "relu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Softmax => "softmax",
            Op::Lrn { .. } => "lrn",
            Op::Dropout { .. } => "dropout",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Add => "add",
            Op::Concat { .. } => "concat",
            Op::BatchNorm { .. } => "batchnorm",
        }
    }

    /// The op with its settings, as the IR printout shows it.
    pub fn describe(&self) -> String {
        match self {
            Op::Input { shape } => format!("input[{}]", shape_str(shape)),
            Op::Dense { units, bias } => dense::describe(*units, *bias),
            Op::Conv {
                filters,
                k,
                stride,
                pad,
                groups,
                dilation,
                bias,
            } => conv::describe(*filters, *k, *stride, *pad, *groups, *dilation, *bias),
            Op::ConvTranspose { .. } => conv_transpose::describe(self),
            Op::MaxPool { k, stride, pad } | Op::AvgPool { k, stride, pad } => {
                pool::describe(self.name(), *k, *stride, *pad)
            }
            Op::LeakyRelu { alpha } => activation::describe_leaky(*alpha),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => lrn::describe(*size, *alpha, *beta, *k),
            Op::Dropout { p } => dropout::describe(*p),
            Op::Reshape { shape } => reshape::describe(shape),
            Op::Concat { axis } => concat::describe(*axis),
            Op::BatchNorm { eps, momentum } => batchnorm::describe(*eps, *momentum),
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::Softmax | Op::Flatten | Op::Add => {
                self.name().to_string()
            }
        }
    }

    pub fn is_weighted(&self) -> bool {
        matches!(
            self,
            Op::Dense { .. } | Op::Conv { .. } | Op::ConvTranspose { .. }
        )
    }

    pub fn has_params(&self) -> bool {
        self.is_weighted() || matches!(self, Op::BatchNorm { .. })
    }

    /// Default initialisers: Glorot-uniform weights and zero biases (Keras's defaults).
    pub fn default_inits(&self) -> (Init, Init) {
        match self {
            Op::BatchNorm { .. } => (Init::Constant(1.0), Init::Constant(0.0)),
            _ => (Init::XavierUniform, Init::Constant(0.0)),
        }
    }
}

/// What went wrong inferring a node's shape; the caller attaches spans and names.
pub struct ShapeError {
    pub message: String,
    pub help: Option<String>,
}

fn overflow() -> ShapeError {
    ShapeError {
        message: "count overflows 64 bits".into(),
        help: None,
    }
}

pub(crate) fn mul(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_mul(b).ok_or_else(overflow)
}

pub(crate) fn add(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_add(b).ok_or_else(overflow)
}

pub(crate) fn prod(d: &[u64]) -> Result<u64, ShapeError> {
    d.iter().try_fold(1u64, |a, &b| mul(a, b))
}

pub(crate) fn need_image(what: &str, input: &[u64]) -> Result<(u64, u64, u64), ShapeError> {
    match input {
        [c, h, w] => Ok((*c, *h, *w)),
        _ => Err(ShapeError {
            message: format!(
                "`{what}` needs a CxHxW image, but its input is {}",
                shape_str(input)
            ),
            help: Some(if input.len() == 1 {
                "a flat vector has no spatial layout; reshape it first, e.g. `reshape(1x28x28)`"
                    .into()
            } else {
                "images are written channels first, e.g. 3x227x227".into()
            }),
        }),
    }
}

/// What an op's shape rule fills in besides the shape: its figures and parameter tensors,
/// named `{layer}.{suffix}`.
pub(crate) struct InferCx<'a> {
    name: &'a str,
    w_init: Init,
    b_init: Init,
    stats: Stats,
    params: Vec<ParamSpec>,
}

impl InferCx<'_> {
    fn push(
        &mut self,
        suffix: &str,
        shape: Vec<u64>,
        init: Init,
        trainable: bool,
        fan: (u64, u64),
    ) {
        self.params.push(ParamSpec {
            name: format!("{}.{suffix}", self.name),
            shape,
            init,
            trainable,
            fan_in: fan.0,
            fan_out: fan.1,
        });
    }
    /// A trainable tensor drawn from the layer's weight initialiser.
    fn weight(&mut self, suffix: &str, shape: Vec<u64>, fan_in: u64, fan_out: u64) {
        let init = self.w_init.clone();
        self.push(suffix, shape, init, true, (fan_in, fan_out));
    }
    /// A trainable tensor drawn from the layer's bias initialiser.
    fn bias(&mut self, suffix: &str, shape: Vec<u64>, fan_in: u64, fan_out: u64) {
        let init = self.b_init.clone();
        self.push(suffix, shape, init, true, (fan_in, fan_out));
    }
    /// A non-trainable state tensor (running statistics).
    fn state(&mut self, suffix: &str, shape: Vec<u64>, init: Init, fan: u64) {
        self.push(suffix, shape, init, false, (fan, fan));
    }
}

/// Output shape, figures and parameter tensors of a node with the given input shapes.
pub fn infer(
    name: &str,
    op: &Op,
    inputs: &[Vec<u64>],
    weight_init: &Option<Init>,
    bias_init: &Option<Init>,
) -> Result<(Vec<u64>, Stats, Vec<ParamSpec>), ShapeError> {
    let one = inputs.first().cloned().unwrap_or_default();
    let (dw, db) = op.default_inits();
    let mut cx = InferCx {
        name,
        w_init: weight_init.clone().unwrap_or(dw),
        b_init: bias_init.clone().unwrap_or(db),
        stats: Stats::default(),
        params: vec![],
    };
    let shape: Vec<u64> = match op {
        Op::Input { shape } => shape.clone(),
        Op::Dense { units, bias } => dense::infer(&mut cx, &one, *units, *bias)?,
        Op::Conv { .. } => conv::infer(&mut cx, op, &one)?,
        Op::ConvTranspose { .. } => conv_transpose::infer(&mut cx, op, &one)?,
        Op::MaxPool { .. } | Op::AvgPool { .. } => pool::infer(op, &one)?,
        Op::Relu
        | Op::Sigmoid
        | Op::Tanh
        | Op::LeakyRelu { .. }
        | Op::Dropout { .. }
        | Op::Softmax => one,
        Op::Lrn { .. } => lrn::infer(&one)?,
        Op::Flatten => reshape::infer_flatten(&one)?,
        Op::Reshape { shape } => reshape::infer(&one, shape)?,
        Op::Add => add::infer(inputs)?,
        Op::Concat { axis } => concat::infer(inputs, *axis)?,
        Op::BatchNorm { .. } => batchnorm::infer(&mut cx, &one)?,
    };
    if !matches!(op, Op::BatchNorm { .. }) {
        cx.stats.trainable = cx.stats.params;
    }
    if shape.contains(&0) {
        return Err(ShapeError {
            message: format!("output shape {} has a zero dimension", shape_str(&shape)),
            help: None,
        });
    }
    cx.stats.activation_bytes = mul(prod(&shape)?, 4)?;
    Ok((shape, cx.stats, cx.params))
}
