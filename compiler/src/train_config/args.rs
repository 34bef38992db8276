//! The arguments of a call-valued setting (`adam(lr=1e-3)`, `uniform(-1, 1)`,
//! `step(every=30)`): each named or given by position, and every one known, a number, given
//! once and in its range. An argument that breaks a rule is an error at it, never dropped.

use super::ranges::Range;
use crate::ast::{Call, Span};
use crate::diag::{did_you_mean, Diagnostic};

/// A call's arguments resolved to its parameter names: (name, value, span).
pub(super) struct Args {
    vals: Vec<(&'static str, f64, Span)>,
}

impl Args {
    /// The argument `key`, checked against its range; `default` when it was not given.
    pub(super) fn get(
        &self,
        key: &str,
        default: f64,
        range: &Range,
        e: &mut Vec<Diagnostic>,
    ) -> f64 {
        match self.vals.iter().find(|(k, _, _)| *k == key) {
            Some(&(_, x, sp)) => range.check(x, sp, e),
            None => default,
        }
    }
    /// The span of argument `key`, or `call` when it was not given.
    pub(super) fn span(&self, key: &str, call: Span) -> Span {
        self.vals
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(call, |a| a.2)
    }
}

/// Resolves `c`'s arguments to `params`: the first `positional` of them may be given without a
/// name, in order. Unknown, repeated, surplus and non-numeric arguments are errors.
pub(super) fn resolve(
    c: &Call,
    params: &[&'static str],
    positional: usize,
    errors: &mut Vec<Diagnostic>,
) -> Args {
    let name = c.name.name.as_str();
    let mut vals: Vec<(&'static str, f64, Span)> = vec![];
    let mut unnamed = 0;
    for a in &c.args {
        let sp = a.value.span;
        // A repeated setting is pointed at by its name where it has one.
        let at = a.key.as_ref().map_or(sp, |k| k.span);
        let key = match &a.key {
            Some(k) => match params.iter().find(|p| **p == k.name) {
                Some(p) => *p,
                None => {
                    let d = Diagnostic::error(format!("`{name}` has no setting `{}`", k.name))
                        .at(k.span, "unknown setting");
                    errors.push(match did_you_mean(&k.name, params.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help(format!("`{name}` takes {}", params.join(", "))),
                    });
                    continue;
                }
            },
            None => {
                unnamed += 1;
                if unnamed > positional {
                    errors.push(
                        Diagnostic::error(format!(
                            "`{name}` takes at most {positional} argument{} without a name ({})",
                            if positional == 1 { "" } else { "s" },
                            params[..positional].join(", ")
                        ))
                        .at(sp, "extra argument")
                        .help(format!("name it: `{name}` takes {}", params.join(", "))),
                    );
                    continue;
                }
                params[unnamed - 1]
            }
        };
        let Some(x) = a.value.as_f64() else {
            errors.push(
                Diagnostic::error(format!("`{name}`'s setting `{key}` must be a number"))
                    .at(sp, "not a number"),
            );
            continue;
        };
        if let Some(first) = vals.iter().find(|(k, _, _)| *k == key) {
            errors.push(
                Diagnostic::error(format!("`{name}`'s setting `{key}` is given twice"))
                    .at(at, "again here")
                    .also(first.2, "first here"),
            );
            continue;
        }
        vals.push((key, x, sp));
    }
    Args { vals }
}
