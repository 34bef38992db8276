//! Weight and bias initialisers, parsed from `gaussian(0.01)`, `xavier`, `he`, ...

use crate::ast::{Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
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
