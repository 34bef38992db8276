//! Argument checking: the types an op's arguments take, the check of a call's arguments against
//! its op's definition (every bad argument is reported), and the typed values an op's parse
//! function reads to build the `Op`.

use super::registry::{self, OpDef};
use super::{Init, Op};
use crate::ast::{Arg, Call, Ident, Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::shape::Padding;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Ty {
    Int,
    Float,
    Bool,
    Pad,
    Shape,
    Init,
    /// An axis of the tensor: an integer, negative counting from the end.
    Axis,
    /// One axis or a list of them.
    Axes,
}

/// One argument of an op: (name, aliases, type, required, positional).
pub(crate) type ArgDef = (&'static str, &'static [&'static str], Ty, bool, bool);

pub(crate) const W: ArgDef = ("init", &["weight_init", "w_init"], Ty::Init, false, false);
pub(crate) const B: ArgDef = ("bias_init", &["b_init"], Ty::Init, false, false);
pub(crate) const HB: ArgDef = ("bias", &["use_bias"], Ty::Bool, false, false);

/// Typed argument values after checking a call against its op's signature.
pub(crate) struct Parsed {
    vals: Vec<(&'static str, Value)>,
    op: &'static str,
    /// The call, for errors about an argument left at its default.
    pub(crate) span: Span,
}

impl Parsed {
    pub(crate) fn get(&self, k: &str) -> Option<&Value> {
        self.vals.iter().find(|(n, _)| *n == k).map(|(_, v)| v)
    }
    pub(crate) fn int(&self, k: &str, default: u64) -> u64 {
        match self.get(k).map(|v| &v.kind) {
            Some(ValueKind::Int(i)) => *i as u64,
            _ => default,
        }
    }
    pub(crate) fn float(&self, k: &str, default: f64) -> f64 {
        self.get(k).and_then(|v| v.as_f64()).unwrap_or(default)
    }
    pub(crate) fn boolean(&self, k: &str, default: bool) -> bool {
        match self.get(k).map(|v| &v.kind) {
            Some(ValueKind::Bool(b)) => *b,
            _ => default,
        }
    }
    /// An axis or list of axes (negative ones count from the end).
    pub(crate) fn axes(&self, k: &str) -> Vec<i64> {
        match self.get(k).map(|v| &v.kind) {
            Some(ValueKind::Int(i)) => vec![*i],
            Some(ValueKind::List(l)) => l
                .iter()
                .filter_map(|x| match x.kind {
                    ValueKind::Int(i) => Some(i),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        }
    }
    pub(crate) fn pad(&self) -> Padding {
        match self.get("pad").map(|v| &v.kind) {
            Some(ValueKind::Int(i)) => Padding::Explicit(*i as u64),
            Some(ValueKind::Call(c)) if c.name.name == "same" => Padding::Same,
            _ => Padding::Valid,
        }
    }
    /// Reports a size setting of zero.
    pub(crate) fn positive(&self, k: &str, v: u64, errors: &mut Vec<Diagnostic>) {
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
        (Ty::Axis | Ty::Axes, ValueKind::Int(_)) => true,
        (Ty::Axes, ValueKind::List(l)) => l.iter().all(|x| matches!(x.kind, ValueKind::Int(_))),
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
        Ty::Axis => format!("expected an axis (an integer, -1 the last), found {}", v.type_name()),
        Ty::Axes => format!("expected an axis or a list of axes, found {}", v.type_name()),
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
    let def = registry::find(&call.name.name)?;
    let op = def.name;
    let before = errors.len();
    let vals = check_args(def, args, errors);
    // A misspelt key usually is the missing argument: report only the misspelling then.
    let unknown_key = errors.len() > before;
    for s in def.args.iter().filter(|s| s.3) {
        if !vals.iter().any(|(n, _)| *n == s.0) && !unknown_key {
            errors.push(
                Diagnostic::error(format!("`{op}` is missing its argument `{}`", s.0))
                    .at(call.span, "missing argument")
                    .help(format!("for example `{}`", def.example)),
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    let p = Parsed {
        vals,
        op,
        span: call.span,
    };
    let op_v = (def.parse)(&p, errors);
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

/// The call's arguments that match the op's signature and type-check, by canonical argument
/// name; each one that does not is reported.
fn check_args(
    def: &OpDef,
    args: &[Arg],
    errors: &mut Vec<Diagnostic>,
) -> Vec<(&'static str, Value)> {
    let (op, sig) = (def.name, def.args);
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
                    errors.push(unknown_argument(op, sig, k));
                    continue;
                }
            },
            None => match positional.get(pos) {
                Some(e) => {
                    pos += 1;
                    *e
                }
                None => {
                    errors.push(too_many_positional(op, sig, a));
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
    vals
}

/// A keyword argument the op does not take, with the nearest spelling it does.
fn unknown_argument(op: &str, sig: &[ArgDef], k: &Ident) -> Diagnostic {
    let names = sig.iter().map(|s| s.0);
    let d = Diagnostic::error(format!("`{op}` has no argument `{}`", k.name))
        .at(k.span, "unknown argument");
    let spellings = sig
        .iter()
        .flat_map(|s| std::iter::once(s.0).chain(s.1.iter().copied()));
    match did_you_mean(&k.name, spellings) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None if sig.is_empty() => d.help(format!("`{op}` takes no arguments")),
        None => d.help(format!(
            "`{op}` takes: {}",
            names.collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A positional argument past the op's positional settings.
fn too_many_positional(op: &str, sig: &[ArgDef], a: &Arg) -> Diagnostic {
    let d = Diagnostic::error(format!("too many positional arguments for `{op}`"))
        .at(a.value.span, "unexpected argument");
    match sig.iter().find(|s| !s.4) {
        Some(s) => d.help(format!("name the setting, e.g. `{}=...`", s.0)),
        None if sig.is_empty() => d.help(format!("`{op}` takes no arguments")),
        None => d,
    }
}
