//! The call-valued settings of the training section: `optimizer = adam(...)`,
//! `noise = uniform(...)` and `schedule = step(...)`.

use super::reader::call_args;
use super::{Noise, OptimizerConfig, Schedule};
use crate::ast::Value;
use crate::diag::{did_you_mean, Diagnostic};
use crate::schedule::Optimizer;

/// `adam(lr=5e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0)` or
/// `sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)`.
pub(super) fn optimizer(v: &Value, errors: &mut Vec<Diagnostic>) -> Option<OptimizerConfig> {
    let Some((name, nums, bad)) = call_args(v) else {
        errors.push(
            Diagnostic::error(format!("expected an optimizer like adam(lr=5e-4) or sgd(lr=0.01, momentum=0.9), found `{v}`"))
                .at(v.span, "here"),
        );
        return None;
    };
    for s in bad {
        errors.push(Diagnostic::error("optimizer settings must be numbers").at(s, "not a number"));
    }
    let allowed: &[&str] = match name {
        "adam" => &["lr", "beta1", "beta2", "eps", "weight_decay"],
        "sgd" => &["lr", "momentum", "weight_decay"],
        other => {
            let mut d =
                Diagnostic::error(format!("unknown optimizer `{other}`")).at(v.span, "unknown");
            if let Some(s) = did_you_mean(other, ["adam", "sgd"]) {
                d = d.help(format!("did you mean `{s}`?"));
            } else {
                d = d.help("the optimizers are adam and sgd");
            }
            errors.push(d);
            return None;
        }
    };
    let mut positional = 0;
    let mut vals: Vec<(&str, f64)> = vec![];
    for (k, x, sp) in nums {
        let key = match k {
            Some(k) => k,
            None => {
                positional += 1;
                if positional > 1 {
                    errors.push(
                        Diagnostic::error("only the learning rate may be given without a name")
                            .at(sp, "name it"),
                    );
                    continue;
                }
                "lr"
            }
        };
        if !allowed.contains(&key) {
            let mut d = Diagnostic::error(format!("`{name}` has no setting `{key}`"))
                .at(sp, "unknown setting");
            if let Some(s) = did_you_mean(key, allowed.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            } else {
                d = d.help(format!("`{name}` takes {}", allowed.join(", ")));
            }
            errors.push(d);
            continue;
        }
        vals.push((key, x));
    }
    let get = |k: &str, d: f64| vals.iter().find(|(n, _)| *n == k).map_or(d, |(_, x)| *x);
    let (kind, default_lr) = match name {
        "adam" => (
            Optimizer::Adam {
                beta1: get("beta1", 0.9),
                beta2: get("beta2", 0.999),
                eps: get("eps", 1e-8),
                weight_decay: get("weight_decay", 0.0),
            },
            1e-3,
        ),
        _ => (
            Optimizer::Sgd {
                momentum: get("momentum", 0.0),
                weight_decay: get("weight_decay", 0.0),
            },
            0.01,
        ),
    };
    let lr = get("lr", default_lr);
    if !(lr > 0.0 && lr.is_finite()) {
        errors.push(
            Diagnostic::error(format!(
                "learning rate must be a positive number, found {lr}"
            ))
            .at(v.span, "here"),
        );
    }
    Some(OptimizerConfig { kind, lr })
}

pub(super) fn noise(v: &Value, errors: &mut Vec<Diagnostic>) -> Noise {
    let default = Noise::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let Some((name, nums, _)) = call_args(v) else {
        errors.push(
            Diagnostic::error(format!(
                "expected uniform(a, b) or normal(mean, std), found `{v}`"
            ))
            .at(v.span, "here"),
        );
        return default;
    };
    let n = |i: usize, d: f64| nums.get(i).map_or(d, |x| x.1);
    match name {
        "uniform" => Noise::Uniform {
            low: n(0, -1.0),
            high: n(1, 1.0),
        },
        "normal" | "gaussian" => Noise::Normal {
            mean: n(0, 0.0),
            std: n(1, 1.0),
        },
        other => {
            errors.push(
                Diagnostic::error(format!("unknown noise distribution `{other}`"))
                    .at(v.span, "here")
                    .help("use uniform(-1, 1) or normal(0, 1)"),
            );
            default
        }
    }
}

pub(super) fn schedule(v: &Value, errors: &mut Vec<Diagnostic>) -> Schedule {
    if v.as_ident() == Some("constant") || v.as_ident() == Some("none") {
        return Schedule::Constant;
    }
    let Some((name, nums, _)) = call_args(v) else {
        errors.push(Diagnostic::error(format!("expected step(every=30, factor=0.1) or plateau(factor=0.1, patience=1), found `{v}`")).at(v.span, "here"));
        return Schedule::Constant;
    };
    let get = |k: &str, i: usize, d: f64| {
        nums.iter()
            .find(|x| x.0 == Some(k))
            .or_else(|| nums.iter().filter(|x| x.0.is_none()).nth(i))
            .map_or(d, |x| x.1)
    };
    match name {
        "step" => Schedule::Step {
            every: get("every", 0, 30.0).max(1.0) as u64,
            factor: get("factor", 1, 0.1),
        },
        "plateau" => Schedule::Plateau {
            factor: get("factor", 0, 0.1),
            patience: get("patience", 1, 1.0).max(0.0) as u64,
        },
        "inv" => {
            let (gamma, power) = (get("gamma", 0, 1e-4), get("power", 1, 0.75));
            if !(gamma >= 0.0 && power >= 0.0 && gamma.is_finite() && power.is_finite()) {
                errors.push(
                    Diagnostic::error(format!(
                        "inv schedule needs gamma >= 0 and power >= 0, found gamma={gamma}, power={power}"
                    ))
                    .at(v.span, "here"),
                );
            }
            Schedule::Inv { gamma, power }
        }
        other => {
            errors.push(
                Diagnostic::error(format!("unknown schedule `{other}`"))
                    .at(v.span, "here")
                    .help("use constant, step(every, factor), plateau(factor, patience) or inv(gamma, power)"),
            );
            Schedule::Constant
        }
    }
}
