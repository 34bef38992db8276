//! The call-valued settings of the training section: `optimizer = adam(...)`,
//! `noise = uniform(...)` and `schedule = step(...)`. Their arguments are resolved by
//! [`super::args`] and each is checked against its range in [`super::ranges`].

use super::args::resolve;
use super::ranges::{self as rg};
use super::{Noise, OptimizerConfig, Schedule, Warmup};
use crate::ast::{Call, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::schedule::Optimizer;

fn call(v: &Value) -> Option<&Call> {
    match &v.kind {
        ValueKind::Call(c) => Some(c),
        _ => None,
    }
}

/// `adam(lr=5e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0)`,
/// `adamw(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)` (torch.optim.AdamW's
/// defaults) or `sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)`.
pub(super) fn optimizer(v: &Value, errors: &mut Vec<Diagnostic>) -> Option<OptimizerConfig> {
    let Some(c) = call(v) else {
        errors.push(
            Diagnostic::error(format!("expected an optimizer like adam(lr=5e-4) or sgd(lr=0.01, momentum=0.9), found `{v}`"))
                .at(v.span, "here"),
        );
        return None;
    };
    let (kind, lr) = match c.name.name.as_str() {
        name @ ("adam" | "adamw") => {
            let a = resolve(
                c,
                &["lr", "beta1", "beta2", "eps", "weight_decay"],
                1,
                errors,
            );
            let (beta1, beta2, eps) = (
                a.get("beta1", 0.9, &rg::BETA1, errors),
                a.get("beta2", 0.999, &rg::BETA2, errors),
                a.get("eps", 1e-8, &rg::EPS, errors),
            );
            // torch.optim's defaults: Adam without decay, AdamW with 0.01 (decoupled).
            let kind = if name == "adam" {
                let weight_decay = a.get("weight_decay", 0.0, &rg::WEIGHT_DECAY, errors);
                Optimizer::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            } else {
                let weight_decay = a.get("weight_decay", 0.01, &rg::WEIGHT_DECAY, errors);
                Optimizer::AdamW {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                }
            };
            (kind, a.get("lr", 1e-3, &rg::LR, errors))
        }
        "sgd" => {
            let a = resolve(c, &["lr", "momentum", "weight_decay"], 1, errors);
            let kind = Optimizer::Sgd {
                momentum: a.get("momentum", 0.0, &rg::MOMENTUM, errors),
                weight_decay: a.get("weight_decay", 0.0, &rg::WEIGHT_DECAY, errors),
            };
            (kind, a.get("lr", 0.01, &rg::LR, errors))
        }
        other => {
            let mut d =
                Diagnostic::error(format!("unknown optimizer `{other}`")).at(v.span, "unknown");
            if let Some(s) = did_you_mean(other, ["adam", "adamw", "sgd"]) {
                d = d.help(format!("did you mean `{s}`?"));
            } else {
                d = d.help("the optimizers are adam, adamw and sgd");
            }
            errors.push(d);
            return None;
        }
    };
    Some(OptimizerConfig { kind, lr })
}

/// `uniform(low, high)` or `normal(mean, std)`.
pub(super) fn noise(v: &Value, errors: &mut Vec<Diagnostic>) -> Noise {
    let default = Noise::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let Some(c) = call(v) else {
        errors.push(
            Diagnostic::error(format!(
                "expected uniform(a, b) or normal(mean, std), found `{v}`"
            ))
            .at(v.span, "here"),
        );
        return default;
    };
    match c.name.name.as_str() {
        "uniform" => {
            let a = resolve(c, &["low", "high"], 2, errors);
            let low = a.get("low", -1.0, &rg::NOISE_VALUE, errors);
            let high = a.get("high", 1.0, &rg::NOISE_VALUE, errors);
            if low >= high {
                errors.push(
                    Diagnostic::error(format!(
                        "uniform noise needs low < high, found uniform({low}, {high})"
                    ))
                    .at(a.span("high", v.span), "not above low")
                    .help("e.g. uniform(-1, 1)"),
                );
            }
            Noise::Uniform { low, high }
        }
        "normal" | "gaussian" => {
            let a = resolve(c, &["mean", "std"], 2, errors);
            Noise::Normal {
                mean: a.get("mean", 0.0, &rg::NOISE_VALUE, errors),
                std: a.get("std", 1.0, &rg::NOISE_STD, errors),
            }
        }
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

/// `constant`, `step(every, factor)`, `plateau(factor, patience)`, `inv(gamma, power)`,
/// Caffe's per-step `step_iter(every, factor)`, `multistep(at=[..], factor)` and
/// `poly(power)`, or `warmup_cosine(warmup, min_lr)`.
pub(super) fn schedule(v: &Value, errors: &mut Vec<Diagnostic>) -> Schedule {
    if v.as_ident() == Some("constant") || v.as_ident() == Some("none") {
        return Schedule::Constant;
    }
    let Some(c) = call(v) else {
        errors.push(Diagnostic::error(format!("expected step(every=30, factor=0.1) or plateau(factor=0.1, patience=1), found `{v}`")).at(v.span, "here"));
        return Schedule::Constant;
    };
    match c.name.name.as_str() {
        "step" => {
            let a = resolve(c, &["every", "factor"], 2, errors);
            Schedule::Step {
                every: whole(
                    a.get("every", 30.0, &rg::STEP_EVERY, errors),
                    &a,
                    "every",
                    c,
                    errors,
                ),
                factor: a.get("factor", 0.1, &rg::SCHEDULE_FACTOR, errors),
            }
        }
        "plateau" => {
            let a = resolve(c, &["factor", "patience"], 2, errors);
            Schedule::Plateau {
                factor: a.get("factor", 0.1, &rg::SCHEDULE_FACTOR, errors),
                patience: whole(
                    a.get("patience", 1.0, &rg::PATIENCE, errors),
                    &a,
                    "patience",
                    c,
                    errors,
                ),
            }
        }
        "inv" => {
            let a = resolve(c, &["gamma", "power"], 2, errors);
            Schedule::Inv {
                gamma: a.get("gamma", 1e-4, &rg::INV_GAMMA, errors),
                power: a.get("power", 0.75, &rg::INV_POWER, errors),
            }
        }
        "step_iter" => {
            let a = resolve(c, &["every", "factor"], 2, errors);
            Schedule::StepIter {
                every: a.get("every", 1.0, &rg::STEP_ITER_EVERY, errors) as u64,
                factor: a.get("factor", 0.1, &rg::SCHEDULE_FACTOR, errors),
            }
        }
        "multistep" => multistep(c, errors),
        "poly" => {
            let a = resolve(c, &["power"], 1, errors);
            Schedule::Poly {
                power: a.get("power", 1.0, &rg::POLY_POWER, errors),
            }
        }
        "warmup_cosine" => warmup_cosine(c, errors),
        other => {
            errors.push(
                Diagnostic::error(format!("unknown schedule `{other}`"))
                    .at(v.span, "here")
                    .help("use constant, step(every, factor), plateau(factor, patience), inv(gamma, power), step_iter(every, factor), multistep(at=[..], factor), poly(power) or warmup_cosine(warmup, min_lr)"),
            );
            Schedule::Constant
        }
    }
}

/// `multistep(at=[5000, 7000], factor=0.1)`: the rate times `factor` at each listed step
/// (Caffe's `stepvalue`s, ascending whole numbers).
fn multistep(c: &Call, errors: &mut Vec<Diagnostic>) -> Schedule {
    let mut at = vec![];
    let mut factor = 0.1;
    for a in &c.args {
        match (a.key.as_ref().map(|k| k.name.as_str()), &a.value.kind) {
            (Some("at"), ValueKind::List(items)) => {
                for v in items {
                    match v.kind {
                        ValueKind::Int(i) if i >= 0 && at.last().is_none_or(|&l| l < i as u64) => {
                            at.push(i as u64)
                        }
                        _ => errors.push(
                            Diagnostic::error(
                                "multistep's `at` lists steps: ascending whole numbers",
                            )
                            .at(v.span, "here"),
                        ),
                    }
                }
            }
            (Some("factor"), _) => match a.value.as_f64() {
                Some(x) => factor = rg::SCHEDULE_FACTOR.check(x, a.value.span, errors),
                None => errors.push(
                    Diagnostic::error("multistep's `factor` must be a number")
                        .at(a.value.span, "here"),
                ),
            },
            _ => errors.push(
                Diagnostic::error("multistep takes at=[step, ...] and factor=x")
                    .at(a.value.span, "here"),
            ),
        }
    }
    if at.is_empty() {
        errors.push(
            Diagnostic::error("multistep needs the steps the rate drops at: at=[5000, 7000]")
                .at(c.span, "here"),
        );
    }
    Schedule::MultiStep { at, factor }
}

/// `warmup_cosine(warmup=0.05, min_lr=0)`: `warmup` written as a fraction (`0.05`, with a
/// point) is that share of all steps; written as an integer (`100`) it is a count of steps.
fn warmup_cosine(c: &Call, errors: &mut Vec<Diagnostic>) -> Schedule {
    let a = resolve(c, &["warmup", "min_lr"], 2, errors);
    let min_lr = a.get("min_lr", 0.0, &rg::MIN_LR, errors);
    // The argument as written: an integer literal counts steps.
    let given = c
        .args
        .iter()
        .find(|arg| arg.key.as_ref().is_none_or(|k| k.name == "warmup"))
        .map(|arg| &arg.value);
    let warmup = match given.map(|v| &v.kind) {
        Some(ValueKind::Int(_)) => {
            Warmup::Steps(a.get("warmup", 0.0, &rg::WARMUP_STEPS, errors) as u64)
        }
        _ => Warmup::Fraction(a.get("warmup", 0.05, &rg::WARMUP_FRACTION, errors)),
    };
    Schedule::WarmupCosine { warmup, min_lr }
}

/// A count of epochs read as a number: an error when it has a fraction (it used to be cut).
fn whole(x: f64, a: &super::args::Args, key: &str, c: &Call, e: &mut Vec<Diagnostic>) -> u64 {
    if x.fract() != 0.0 {
        e.push(
            Diagnostic::error(format!(
                "`{}`'s `{key}` must be a whole number of epochs, found {x}",
                c.name.name
            ))
            .at(a.span(key, c.span), "not whole"),
        );
    }
    if x.is_finite() && x >= 0.0 {
        x as u64
    } else {
        0
    }
}
