//! `param_mult = [mult("*.bias", lr=2, decay=0)]`: per-tensor multipliers of the learning rate
//! and the weight decay (Caffe's `lr_mult` and `decay_mult`, which `netc import` writes). The
//! first pattern matching a tensor's `layer.param` name applies; a tensor no pattern matches
//! learns and decays as the optimizer says.

use super::args::resolve;
use super::reader::Reader;
use crate::ast::ValueKind;
use crate::diag::Diagnostic;
use crate::schedule::ParamMult;

const WHAT: &str =
    "a list of mult(\"pattern\", lr=x, decay=y), e.g. [mult(\"*.bias\", lr=2, decay=0)]";

/// The section's `param_mult` list (empty without one).
pub(super) fn param_mult(r: &mut Reader) -> Vec<ParamMult> {
    let Some(v) = r.get("param_mult") else {
        return vec![];
    };
    let items: Vec<_> = match &v.kind {
        ValueKind::List(items) => items.iter().collect(),
        _ => vec![v],
    };
    let mut out = vec![];
    for item in items {
        let ValueKind::Call(c) = &item.kind else {
            r.bad(item, "param_mult", WHAT);
            continue;
        };
        // The pattern is the one quoted argument without a name; lr and decay are numbers.
        let (pattern, rest): (Vec<_>, Vec<_>) = c
            .args
            .iter()
            .partition(|a| a.key.is_none() && matches!(a.value.kind, ValueKind::Str(_)));
        let pattern = match pattern.first().map(|a| &a.value.kind) {
            Some(ValueKind::Str(s))
                if c.name.name == "mult" && !s.is_empty() && pattern.len() == 1 =>
            {
                s.clone()
            }
            _ => {
                r.bad(item, "param_mult", WHAT);
                continue;
            }
        };
        let mut call = c.clone();
        call.args = rest.into_iter().cloned().collect();
        let a = resolve(&call, &["lr", "decay"], 0, &mut r.errors);
        let lr = a.get("lr", 1.0, &super::ranges::LR_MULT, &mut r.errors);
        let decay = a.get("decay", 1.0, &super::ranges::DECAY_MULT, &mut r.errors);
        if out.iter().any(|m: &ParamMult| m.pattern == pattern) {
            r.errors.push(
                Diagnostic::error(format!("param_mult gives \"{pattern}\" twice"))
                    .at(item.span, "again here"),
            );
        }
        out.push(ParamMult { pattern, lr, decay });
    }
    out
}
