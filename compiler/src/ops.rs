//! The op set: each op's arguments (parsed from a call, with typed errors), its output-shape rule
//! and its figures (parameters, connections, neurons, MACs).

use crate::ast::{shape_str, Arg, Call, Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{ParamSpec, Stats};
use crate::shape::{out_size, Padding};
use std::fmt;

/// Weight and bias initialisers, in the usual vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    Gaussian {
        mean: f64,
        std: f64,
    },
    Uniform {
        low: f64,
        high: f64,
    },
    Constant(f64),
    /// Glorot & Bengio: uniform(+-sqrt(6/(fan_in+fan_out))).
    XavierUniform,
    /// Glorot normal: std sqrt(2/(fan_in+fan_out)).
    XavierNormal,
    /// He et al. (MSRA): normal with std sqrt(2/fan_in).
    HeNormal,
    /// He uniform: uniform(+-sqrt(6/fan_in)).
    HeUniform,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Gaussian { mean, std } if *mean == 0.0 => write!(f, "gaussian({std})"),
            Init::Gaussian { mean, std } => write!(f, "gaussian({std}, mean={mean})"),
            Init::Uniform { low, high } => write!(f, "uniform({low}, {high})"),
            Init::Constant(v) => write!(f, "constant({v})"),
            Init::XavierUniform => write!(f, "xavier"),
            Init::XavierNormal => write!(f, "xavier_normal"),
            Init::HeNormal => write!(f, "he"),
            Init::HeUniform => write!(f, "he_uniform"),
        }
    }
}

impl Init {
    /// Parses `gaussian(0.01)`, `uniform(-1, 1)`, `constant(1)`, `xavier`, `he`, ...
    pub fn from_value(v: &Value) -> Result<Init, Diagnostic> {
        let ValueKind::Call(c) = &v.kind else {
            if let Some(x) = v.as_f64() {
                return Ok(Init::Constant(x));
            }
            return Err(Diagnostic::error(format!("expected an initialiser, found {}", v.type_name()))
                .at(v.span, "not an initialiser")
                .help("use gaussian(std), uniform(a, b), constant(v), xavier, xavier_normal, he or he_uniform"));
        };
        let nums: Vec<(Option<&str>, Option<f64>, Span)> = c
            .args
            .iter()
            .map(|a| {
                (
                    a.key.as_ref().map(|k| k.name.as_str()),
                    a.value.as_f64(),
                    a.value.span,
                )
            })
            .collect();
        let bad = |msg: &str| {
            Diagnostic::error(format!("bad initialiser `{c}`: {msg}")).at(c.span, "here")
        };
        for (_, n, sp) in &nums {
            if n.is_none() {
                return Err(Diagnostic::error("initialiser arguments must be numbers")
                    .at(*sp, "not a number"));
            }
        }
        let get = |key: &str, pos: usize| -> Option<f64> {
            nums.iter()
                .find(|(k, _, _)| *k == Some(key))
                .or_else(|| nums.iter().filter(|(k, _, _)| k.is_none()).nth(pos))
                .and_then(|(_, n, _)| *n)
        };
        let name = c.name.name.as_str();
        let init = match name {
            "gaussian" | "normal" => Init::Gaussian {
                std: get("std", 0)
                    .ok_or_else(|| bad("needs a standard deviation, e.g. gaussian(0.01)"))?,
                mean: get("mean", 1).unwrap_or(0.0),
            },
            "uniform" => {
                let low =
                    get("low", 0).ok_or_else(|| bad("needs bounds, e.g. uniform(-0.1, 0.1)"))?;
                match get("high", 1) {
                    Some(high) => Init::Uniform { low, high },
                    None => Init::Uniform {
                        low: -low.abs(),
                        high: low.abs(),
                    },
                }
            }
            "constant" => Init::Constant(
                get("value", 0).ok_or_else(|| bad("needs a value, e.g. constant(0)"))?,
            ),
            "zeros" | "zero" => Init::Constant(0.0),
            "ones" | "one" => Init::Constant(1.0),
            "xavier" | "glorot" | "xavier_uniform" | "glorot_uniform" => Init::XavierUniform,
            "xavier_normal" | "glorot_normal" => Init::XavierNormal,
            "he" | "msra" | "kaiming" | "he_normal" | "kaiming_normal" => Init::HeNormal,
            "he_uniform" | "kaiming_uniform" => Init::HeUniform,
            other => {
                let mut d = Diagnostic::error(format!("unknown initialiser `{other}`"))
                    .at(c.name.span, "unknown");
                if let Some(s) = did_you_mean(other, INIT_NAMES.iter().copied()) {
                    d = d.help(format!("did you mean `{s}`?"));
                } else {
                    d = d.help(format!("known initialisers: {}", INIT_NAMES.join(", ")));
                }
                return Err(d);
            }
        };
        if let Init::Gaussian { std, .. } = init {
            if std < 0.0 || !std.is_finite() {
                return Err(bad("the standard deviation must be a finite number >= 0"));
            }
        }
        Ok(init)
    }
}

const INIT_NAMES: &[&str] = &[
    "gaussian",
    "normal",
    "uniform",
    "constant",
    "zeros",
    "ones",
    "xavier",
    "glorot",
    "xavier_normal",
    "glorot_normal",
    "he",
    "msra",
    "kaiming",
    "he_uniform",
];

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
enum Ty {
    Int,
    Float,
    Bool,
    Pad,
    Shape,
    Init,
}

struct Sig {
    /// (name, aliases, type, required, positional)
    args: &'static [(&'static str, &'static [&'static str], Ty, bool, bool)],
}

fn signature(op: &str) -> Sig {
    use Ty::*;
    const W: (&str, &[&str], Ty, bool, bool) =
        ("init", &["weight_init", "w_init"], Init, false, false);
    const B: (&str, &[&str], Ty, bool, bool) = ("bias_init", &["b_init"], Init, false, false);
    const HB: (&str, &[&str], Ty, bool, bool) = ("bias", &["use_bias"], Bool, false, false);
    let args: &'static [(&str, &[&str], Ty, bool, bool)] = match op {
        "dense" => &[("units", &["out", "outputs"], Int, true, true), HB, W, B],
        "conv" => &[
            ("filters", &["out", "channels"], Int, true, true),
            ("k", &["kernel", "kernel_size"], Int, true, false),
            ("s", &["stride"], Int, false, false),
            ("pad", &["padding", "p"], Pad, false, false),
            ("groups", &["group", "g"], Int, false, false),
            ("dilation", &["d"], Int, false, false),
            HB,
            W,
            B,
        ],
        "conv_transpose" => &[
            ("filters", &["out", "channels"], Int, true, true),
            ("k", &["kernel", "kernel_size"], Int, true, false),
            ("s", &["stride"], Int, false, false),
            ("pad", &["padding", "p"], Pad, false, false),
            ("output_padding", &["out_pad"], Int, false, false),
            ("groups", &["group", "g"], Int, false, false),
            HB,
            W,
            B,
        ],
        "maxpool" | "avgpool" => &[
            ("k", &["kernel", "size"], Int, true, true),
            ("s", &["stride"], Int, false, false),
            ("pad", &["padding", "p"], Pad, false, false),
        ],
        "leaky_relu" => &[("alpha", &["slope", "negative_slope"], Float, false, true)],
        "lrn" => &[
            ("size", &["n", "local_size"], Int, false, false),
            ("alpha", &[], Float, false, false),
            ("beta", &[], Float, false, false),
            ("k", &["bias"], Float, false, false),
        ],
        "dropout" => &[("p", &["rate"], Float, false, true)],
        "reshape" => &[("shape", &[], Shape, true, true)],
        "concat" => &[("axis", &["dim"], Int, false, false)],
        "batchnorm" => &[
            ("eps", &["epsilon"], Float, false, false),
            ("momentum", &[], Float, false, false),
        ],
        _ => &[],
    };
    Sig { args }
}

/// Typed argument values after checking a call against its op's signature.
struct Parsed {
    vals: Vec<(&'static str, Value)>,
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
    let positional: Vec<_> = sig.args.iter().filter(|a| a.4).collect();
    let mut pos = 0;
    for a in args {
        let entry = match &a.key {
            Some(k) => match sig
                .args
                .iter()
                .find(|s| s.0 == k.name || s.1.contains(&k.name.as_str()))
            {
                Some(e) => e,
                None => {
                    let names = sig.args.iter().map(|s| s.0);
                    let mut d = Diagnostic::error(format!("`{op}` has no argument `{}`", k.name))
                        .at(k.span, "unknown argument");
                    let spellings = sig
                        .args
                        .iter()
                        .flat_map(|s| std::iter::once(s.0).chain(s.1.iter().copied()));
                    d = match did_you_mean(&k.name, spellings) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None if sig.args.is_empty() => d.help(format!("`{op}` takes no arguments")),
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
                    errors.push(match sig.args.iter().find(|s| !s.4) {
                        Some(s) => d.help(format!("name the setting, e.g. `{}=...`", s.0)),
                        None if sig.args.is_empty() => d.help(format!("`{op}` takes no arguments")),
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
    for s in sig.args.iter().filter(|s| s.3) {
        if !vals.iter().any(|(n, _)| *n == s.0) && !unknown_key {
            let example = match op {
                "dense" => "dense(128)",
                "conv" | "conv_transpose" => "conv(64, k=3)",
                "maxpool" | "avgpool" => "maxpool(k=2)",
                "reshape" => "reshape(16x7x7)",
                _ => "",
            };
            errors.push(
                Diagnostic::error(format!("`{op}` is missing its argument `{}`", s.0))
                    .at(call.span, "missing argument")
                    .help(format!("for example `{example}`")),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    let p = Parsed { vals };
    let positive = |k: &str, v: u64, errors: &mut Vec<Diagnostic>| {
        if v == 0 {
            let sp = p.get(k).map_or(call.span, |v| v.span);
            errors.push(
                Diagnostic::error(format!("`{k}` of `{op}` must be at least 1"))
                    .at(sp, "zero here"),
            );
        }
    };
    let op_v = match op {
        "dense" => {
            let units = p.int("units", 0);
            positive("units", units, errors);
            Op::Dense {
                units,
                bias: p.boolean("bias", true),
            }
        }
        "conv" | "conv_transpose" => {
            let (filters, k, stride, groups) = (
                p.int("filters", 0),
                p.int("k", 0),
                p.int("s", 1),
                p.int("groups", 1),
            );
            positive("filters", filters, errors);
            positive("k", k, errors);
            positive("s", stride, errors);
            positive("groups", groups, errors);
            if op == "conv" {
                let dilation = p.int("dilation", 1);
                positive("dilation", dilation, errors);
                Op::Conv {
                    filters,
                    k,
                    stride,
                    pad: p.pad(),
                    groups,
                    dilation,
                    bias: p.boolean("bias", true),
                }
            } else {
                Op::ConvTranspose {
                    filters,
                    k,
                    stride,
                    pad: p.pad(),
                    output_padding: p.int("output_padding", 0),
                    groups,
                    bias: p.boolean("bias", true),
                }
            }
        }
        "maxpool" | "avgpool" => {
            let k = p.int("k", 0);
            let stride = p.int("s", k);
            positive("k", k, errors);
            positive("s", stride, errors);
            if op == "maxpool" {
                Op::MaxPool {
                    k,
                    stride,
                    pad: p.pad(),
                }
            } else {
                Op::AvgPool {
                    k,
                    stride,
                    pad: p.pad(),
                }
            }
        }
        "relu" => Op::Relu,
        "sigmoid" => Op::Sigmoid,
        "tanh" => Op::Tanh,
        "softmax" => Op::Softmax,
        "flatten" => Op::Flatten,
        "add" => Op::Add,
        "leaky_relu" => Op::LeakyRelu {
            alpha: p.float("alpha", 0.01),
        },
        "lrn" => {
            let size = p.int("size", 5);
            positive("size", size, errors);
            Op::Lrn {
                size,
                alpha: p.float("alpha", 1e-4),
                beta: p.float("beta", 0.75),
                k: p.float("k", 2.0),
            }
        }
        "dropout" => {
            let prob = p.float("p", 0.5);
            if !(0.0..1.0).contains(&prob) {
                let sp = p.get("p").map_or(call.span, |v| v.span);
                errors.push(
                    Diagnostic::error(format!("dropout probability {prob} is outside [0, 1)"))
                        .at(sp, "out of range"),
                );
            }
            Op::Dropout { p: prob }
        }
        "reshape" => {
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
        "concat" => Op::Concat {
            axis: p.int("axis", 0),
        },
        "batchnorm" => Op::BatchNorm {
            eps: p.float("eps", 1e-5),
            momentum: p.float("momentum", 0.1),
        },
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
            Op::Dense { units, bias } => {
                format!("dense[{units}{}]", if *bias { "" } else { ", no bias" })
            }
            Op::Conv {
                filters,
                k,
                stride,
                pad,
                groups,
                dilation,
                bias,
            } => format!(
                "conv[{filters}, k={k}, s={stride}, pad={pad}{}{}{}]",
                if *groups > 1 {
                    format!(", groups={groups}")
                } else {
                    String::new()
                },
                if *dilation > 1 {
                    format!(", dilation={dilation}")
                } else {
                    String::new()
                },
                if *bias { "" } else { ", no bias" }
            ),
            Op::ConvTranspose {
                filters,
                k,
                stride,
                pad,
                output_padding,
                groups,
                bias,
            } => format!(
                "conv_transpose[{filters}, k={k}, s={stride}, pad={pad}{}{}{}]",
                if *output_padding > 0 {
                    format!(", output_padding={output_padding}")
                } else {
                    String::new()
                },
                if *groups > 1 {
                    format!(", groups={groups}")
                } else {
                    String::new()
                },
                if *bias { "" } else { ", no bias" }
            ),
            Op::MaxPool { k, stride, pad } => format!("maxpool[k={k}, s={stride}, pad={pad}]"),
            Op::AvgPool { k, stride, pad } => format!("avgpool[k={k}, s={stride}, pad={pad}]"),
            Op::LeakyRelu { alpha } => format!("leaky_relu[{alpha}]"),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => format!("lrn[size={size}, alpha={alpha}, beta={beta}, k={k}]"),
            Op::Dropout { p } => format!("dropout[{p}]"),
            Op::Reshape { shape } => format!("reshape[{}]", shape_str(shape)),
            Op::Concat { axis } => format!("concat[axis={axis}]"),
            Op::BatchNorm { eps, momentum } => format!("batchnorm[eps={eps}, momentum={momentum}]"),
            other => other.name().to_string(),
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

fn err<T>(message: impl Into<String>, help: Option<String>) -> Result<T, ShapeError> {
    Err(ShapeError {
        message: message.into(),
        help,
    })
}

fn mul(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_mul(b)
        .map_or_else(|| err("count overflows 64 bits", None), Ok)
}

fn add(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_add(b)
        .map_or_else(|| err("count overflows 64 bits", None), Ok)
}

fn prod(d: &[u64]) -> Result<u64, ShapeError> {
    d.iter().try_fold(1u64, |a, &b| mul(a, b))
}

fn need_image(what: &str, input: &[u64]) -> Result<(u64, u64, u64), ShapeError> {
    match input {
        [c, h, w] => Ok((*c, *h, *w)),
        _ => err(
            format!(
                "`{what}` needs a CxHxW image, but its input is {}",
                shape_str(input)
            ),
            Some(if input.len() == 1 {
                "a flat vector has no spatial layout; reshape it first, e.g. `reshape(1x28x28)`"
                    .into()
            } else {
                "images are written channels first, e.g. 3x227x227".into()
            }),
        ),
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
    let one = || inputs.first().cloned().unwrap_or_default();
    let (dw, db) = op.default_inits();
    let w_init = weight_init.clone().unwrap_or(dw);
    let b_init = bias_init.clone().unwrap_or(db);
    let mut stats = Stats::default();
    let mut params = vec![];
    let mut param =
        |suffix: &str, shape: Vec<u64>, init: Init, trainable: bool, fan_in: u64, fan_out: u64| {
            params.push(ParamSpec {
                name: format!("{name}.{suffix}"),
                shape,
                init,
                trainable,
                fan_in,
                fan_out,
            });
        };
    let shape: Vec<u64> = match op {
        Op::Input { shape } => shape.clone(),
        Op::Dense { units, bias } => {
            let x = one();
            if x.len() != 1 {
                return err(
                    format!(
                        "`dense` needs a flat vector, but its input is {}",
                        shape_str(&x)
                    ),
                    Some(format!(
                        "insert `flatten ->` before `dense` to turn {} into {}",
                        shape_str(&x),
                        prod(&x).map(|n| n.to_string()).unwrap_or_default()
                    )),
                );
            }
            let fan_in = x[0];
            let macs = mul(fan_in, *units)?;
            let b = if *bias { *units } else { 0 };
            stats.params = add(macs, b)?;
            stats.connections = stats.params;
            stats.neurons = *units;
            stats.macs = macs;
            param("weight", vec![*units, fan_in], w_init, true, fan_in, *units);
            if *bias {
                param("bias", vec![*units], b_init, true, fan_in, *units);
            }
            vec![*units]
        }
        Op::Conv {
            filters,
            k,
            stride,
            pad,
            groups,
            dilation,
            bias,
        } => {
            let (c, h, w) = need_image("conv", &one())?;
            if c % groups != 0 || filters % groups != 0 {
                return err(
                    format!("groups={groups} must divide both the input channels ({c}) and the filters ({filters})"),
                    None,
                );
            }
            let k_eff = add(mul(*dilation, k - 1)?, 1)?;
            let oh = out_size(h, k_eff, *stride, *pad).map_err(|m| ShapeError {
                message: m,
                help: None,
            })?;
            let ow = out_size(w, k_eff, *stride, *pad).map_err(|m| ShapeError {
                message: m,
                help: None,
            })?;
            let cin_g = c / groups;
            let per_filter = mul(mul(*k, *k)?, cin_g)?;
            let weights = mul(per_filter, *filters)?;
            let b = if *bias { *filters } else { 0 };
            let pixels = mul(oh, ow)?;
            stats.params = add(weights, b)?;
            stats.macs = mul(pixels, weights)?;
            stats.neurons = mul(pixels, *filters)?;
            stats.connections = add(stats.macs, if *bias { stats.neurons } else { 0 })?;
            param(
                "weight",
                vec![*filters, cin_g, *k, *k],
                w_init,
                true,
                per_filter,
                mul(mul(*k, *k)?, filters / groups)?,
            );
            if *bias {
                param("bias", vec![*filters], b_init, true, per_filter, *filters);
            }
            vec![*filters, oh, ow]
        }
        Op::ConvTranspose {
            filters,
            k,
            stride,
            pad,
            output_padding,
            groups,
            bias,
        } => {
            let (c, h, w) = need_image("conv_transpose", &one())?;
            if c % groups != 0 || filters % groups != 0 {
                return err(
                    format!("groups={groups} must divide both the input channels ({c}) and the filters ({filters})"),
                    None,
                );
            }
            if output_padding >= stride {
                return err(format!("output_padding ({output_padding}) must be smaller than the stride ({stride})"), None);
            }
            let size = |f: u64| -> Result<u64, ShapeError> {
                let full = add(add(mul(f - 1, *stride)?, *k)?, *output_padding)?;
                match pad {
                    Padding::Valid => Ok(full),
                    Padding::Same => mul(f, *stride),
                    Padding::Explicit(p) => {
                        let cut = mul(2, *p)?;
                        if cut >= full {
                            return err(
                                format!("padding {p} removes the whole {full}-pixel output"),
                                None,
                            );
                        }
                        Ok(full - cut)
                    }
                }
            };
            let (oh, ow) = (size(h)?, size(w)?);
            let cout_g = filters / groups;
            let weights = mul(mul(mul(c, cout_g)?, *k)?, *k)?;
            let b = if *bias { *filters } else { 0 };
            stats.params = add(weights, b)?;
            stats.macs = mul(mul(h, w)?, weights)?;
            stats.neurons = mul(mul(oh, ow)?, *filters)?;
            stats.connections = add(stats.macs, if *bias { stats.neurons } else { 0 })?;
            let fan_in = mul(mul(c / groups, *k)?, *k)?;
            param(
                "weight",
                vec![c, cout_g, *k, *k],
                w_init,
                true,
                fan_in,
                mul(mul(cout_g, *k)?, *k)?,
            );
            if *bias {
                param("bias", vec![*filters], b_init, true, fan_in, *filters);
            }
            vec![*filters, oh, ow]
        }
        Op::MaxPool { k, stride, pad } | Op::AvgPool { k, stride, pad } => {
            let (c, h, w) = need_image(op.name(), &one())?;
            let oh = out_size(h, *k, *stride, *pad).map_err(|m| ShapeError {
                message: m,
                help: None,
            })?;
            let ow = out_size(w, *k, *stride, *pad).map_err(|m| ShapeError {
                message: m,
                help: None,
            })?;
            vec![c, oh, ow]
        }
        Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. } | Op::Dropout { .. } => one(),
        Op::Softmax => one(),
        Op::Lrn { .. } => {
            need_image("lrn", &one())?;
            one()
        }
        Op::Flatten => vec![prod(&one())?],
        Op::Reshape { shape } => {
            let (a, b) = (prod(&one())?, prod(shape)?);
            if a != b {
                return err(
                    format!(
                        "cannot reshape {} ({a} values) to {} ({b} values)",
                        shape_str(&one()),
                        shape_str(shape)
                    ),
                    Some("the element counts of the two shapes must match".into()),
                );
            }
            shape.clone()
        }
        Op::Add => {
            let first = one();
            for s in &inputs[1..] {
                if *s != first {
                    return err(
                        format!(
                            "`add` needs equal shapes, but got {} and {}",
                            shape_str(&first),
                            shape_str(s)
                        ),
                        Some(
                            "project the shortcut with a 1x1 conv (or a dense layer) to match"
                                .into(),
                        ),
                    );
                }
            }
            first
        }
        Op::Concat { axis } => {
            let first = one();
            let ax = *axis as usize;
            if ax >= first.len() {
                return err(
                    format!(
                        "concat axis {axis} is out of range for {}",
                        shape_str(&first)
                    ),
                    None,
                );
            }
            let mut out = first.clone();
            for s in &inputs[1..] {
                let same_rest = s.len() == first.len()
                    && s.iter()
                        .zip(&first)
                        .enumerate()
                        .all(|(i, (a, b))| i == ax || a == b);
                if !same_rest {
                    return err(
                        format!(
                            "`concat` on axis {axis} needs shapes that agree elsewhere, but got {} and {}",
                            shape_str(&first),
                            shape_str(s)
                        ),
                        None,
                    );
                }
                out[ax] = add(out[ax], s[ax])?;
            }
            out
        }
        Op::BatchNorm { .. } => {
            let x = one();
            let c = *x.first().unwrap_or(&1);
            stats.params = mul(4, c)?;
            stats.trainable = mul(2, c)?;
            param("gamma", vec![c], w_init, true, c, c);
            param("beta", vec![c], b_init, true, c, c);
            param("running_mean", vec![c], Init::Constant(0.0), false, c, c);
            param("running_var", vec![c], Init::Constant(1.0), false, c, c);
            x
        }
    };
    if !matches!(op, Op::BatchNorm { .. }) {
        stats.trainable = stats.params;
    }
    if shape.contains(&0) {
        return err(
            format!("output shape {} has a zero dimension", shape_str(&shape)),
            None,
        );
    }
    stats.activation_bytes = mul(prod(&shape)?, 4)?;
    Ok((shape, stats, params))
}
