//! dropout: in training, each element is kept with probability 1 - p and scaled by 1/(1 - p)
//! (inverted dropout); the identity in evaluation. The mask is a hash of the step's seed and
//! the element index (`kernels::dropout_keep`), identical on every executor.

use super::{ArgDef, Op, Parsed, Ty};
use crate::diag::Diagnostic;

pub(super) const ARGS: &[ArgDef] = &[("p", &["rate"], Ty::Float, false, true)];

pub(super) fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let prob = p.float("p", 0.5);
    if !(0.0..1.0).contains(&prob) {
        let sp = p.get("p").map_or(p.span, |v| v.span);
        errors.push(
            Diagnostic::error(format!("dropout probability {prob} is outside [0, 1)"))
                .at(sp, "out of range"),
        );
    }
    Op::Dropout { p: prob }
}

pub(super) fn describe(p: f64) -> String {
    format!("dropout[{p}]")
}
