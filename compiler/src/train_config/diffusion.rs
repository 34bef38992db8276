//! A denoising diffusion model (Ho et al. 2020) trained as a declared loss: the section's
//! `diffusion = linear(...)` noise schedule makes the data set give three more fields, drawn
//! together per example each step: `timestep` (t, uniform in 0..T-1), `noisy` (x_t =
//! sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, x0 the images) and, as before, `noise` (that eps).
//! The model predicts eps and declares its loss (`loss = mse(pred, eps)`); `prediction` names
//! the node `netc sample` runs the reverse chain with.

use super::args::resolve;
use super::ranges::Range;
use super::reader::Reader;
use super::Field;
use crate::ast::{Span, Value, ValueKind};
use crate::diag::Diagnostic;
use crate::ir::Network;

/// How the noise variances beta_1..beta_T grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Betas {
    /// beta_t from `start` to `end` in equal steps (DDPM's 1e-4 to 0.02).
    Linear { start: f64, end: f64 },
    /// Nichol & Dhariwal's cosine schedule: abar(t) = f(t) / f(0), f(t) = cos((t/T + s) /
    /// (1 + s) * pi/2)^2, each beta clipped at 0.999.
    Cosine { s: f64 },
}

/// The noise schedule and what sampling needs to know about the network.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionConfig {
    pub betas: Betas,
    /// T, the number of noising steps.
    pub timesteps: u64,
    /// The node predicting the noise (an output, statement or layer).
    pub prediction: String,
}

const BETA: Range = Range {
    name: "a noise variance beta",
    low: 0.0,
    low_open: true,
    high: 1.0,
    high_open: true,
    why: "beta_t is the variance of the noise added at step t: above 0, below 1",
};
const STEPS: Range = Range {
    name: "steps",
    low: 2.0,
    low_open: false,
    high: 100_000.0,
    high_open: false,
    why: "the number of noising steps T (DDPM uses 1000)",
};
const COSINE_S: Range = Range {
    name: "s",
    low: 0.0,
    low_open: false,
    high: 1.0,
    high_open: false,
    why: "the cosine schedule's offset (0.008 in Nichol & Dhariwal)",
};

/// `linear(start=1e-4, end=0.02, steps=1000)` or `cosine(s=0.008, steps=1000)`.
fn schedule(v: &Value, errors: &mut Vec<Diagnostic>) -> Option<(Betas, u64)> {
    let help = "use linear(start=1e-4, end=0.02, steps=1000) or cosine(s=0.008, steps=1000)";
    let (name, c) = match &v.kind {
        ValueKind::Call(c) => (c.name.name.as_str(), c),
        _ => {
            errors.push(
                Diagnostic::error(format!(
                    "training setting `diffusion`: expected a noise schedule, found `{v}`"
                ))
                .at(v.span, "here")
                .help(help),
            );
            return None;
        }
    };
    let whole = |x: f64, errors: &mut Vec<Diagnostic>, sp: Span| {
        if x.fract() != 0.0 {
            errors.push(
                Diagnostic::error(format!("`steps` must be a whole number, found {x}"))
                    .at(sp, "not whole"),
            );
        }
        x as u64
    };
    match name {
        "linear" => {
            let a = resolve(c, &["start", "end", "steps"], 3, errors);
            let start = a.get("start", 1e-4, &BETA, errors);
            let end = a.get("end", 0.02, &BETA, errors);
            let steps = a.get("steps", 1000.0, &STEPS, errors);
            if start > end {
                errors.push(
                    Diagnostic::error(format!(
                        "the linear schedule's `start` ({start}) is above its `end` ({end})"
                    ))
                    .at(c.span, "here")
                    .help("the noise grows: DDPM's betas go from 1e-4 to 0.02"),
                );
            }
            let steps = whole(steps, errors, a.span("steps", c.span));
            Some((Betas::Linear { start, end }, steps))
        }
        "cosine" => {
            let a = resolve(c, &["s", "steps"], 2, errors);
            let s = a.get("s", 0.008, &COSINE_S, errors);
            let steps = a.get("steps", 1000.0, &STEPS, errors);
            let steps = whole(steps, errors, a.span("steps", c.span));
            Some((Betas::Cosine { s }, steps))
        }
        other => {
            errors.push(
                Diagnostic::error(format!("unknown noise schedule `{other}`"))
                    .at(c.name.span, "here")
                    .help(help),
            );
            None
        }
    }
}

/// The `diffusion` and `prediction` settings, checked against the inputs' fields: the
/// diffusion fields need the schedule, the schedule needs a `noisy` input and one `noise`
/// input of its shape (the eps that made it), and `timestep` is one value.
pub(super) fn diffusion(
    r: &mut Reader,
    net: &Network,
    inputs: &[(String, Field)],
    section: Span,
) -> Option<DiffusionConfig> {
    let shape_of = |name: &str| {
        net.inputs
            .iter()
            .map(|&i| &net.graph[i])
            .find(|n| n.name == name)
            .map(|n| n.shape.clone())
            .unwrap_or_default()
    };
    let uses = |f: Field| inputs.iter().filter(move |(_, g)| *g == f);
    let at = r.get("inputs").map_or(section, |v| v.span);
    let Some(v) = r.get("diffusion") else {
        for f in [Field::Noisy, Field::Timestep, Field::TimestepEmbedding] {
            if let Some((name, _)) = uses(f).next() {
                r.errors.push(
                    Diagnostic::error(format!(
                        "input `{name}` reads `{}`, which a noise schedule makes",
                        f.name()
                    ))
                    .at(at, "here")
                    .help("add `diffusion = linear(start=1e-4, end=0.02, steps=1000)` to the training section"),
                );
            }
        }
        if let Some(p) = r.get("prediction") {
            r.errors.push(
                Diagnostic::error("training setting `prediction` is for a diffusion model")
                    .at(p.span, "not read without `diffusion = ...`"),
            );
        }
        return None;
    };
    let (betas, timesteps) = schedule(v, &mut r.errors)?;
    let noisy: Vec<_> = uses(Field::Noisy).collect();
    let noise: Vec<_> = uses(Field::Noise).collect();
    let mut fail = |msg: String, help: &str| {
        r.errors
            .push(Diagnostic::error(msg).at(at, "here").help(help.to_string()));
    };
    match (noisy.as_slice(), noise.as_slice()) {
        ([(x, _)], [(e, _)]) if shape_of(x) == shape_of(e) => {}
        ([(x, _)], [(e, _)]) => fail(
            format!("input `{x}` (noisy) and input `{e}` (noise) must have one shape: the noise is what made the noisy image"),
            "declare both as the image's shape, e.g. 1x28x28",
        ),
        ([_], _) => fail(
            "a diffusion model needs exactly one input bound to `noise`: the eps that made `noisy`, its loss's target".into(),
            "inputs = {x: noisy, t: timestep, eps: noise}, and `loss = mse(pred, eps)` in the network",
        ),
        _ => fail(
            "a diffusion model needs exactly one input bound to `noisy` (the noised image x_t)".into(),
            "inputs = {x: noisy, t: timestep, eps: noise}",
        ),
    }
    for (name, _) in uses(Field::Timestep) {
        if shape_of(name).iter().product::<u64>() != 1 {
            r.errors.push(
                Diagnostic::error(format!(
                    "input `{name}` reads `timestep`, one number per example; declare it `input {name}: 1`"
                ))
                .at(at, "here"),
            );
        }
    }
    let prediction = match r.get("prediction") {
        Some(p) => match p.as_ident() {
            Some(n) if net.resolve(n).is_some() => n.to_string(),
            _ => {
                r.bad(
                    p,
                    "prediction",
                    "the name of the node that predicts the noise",
                );
                return None;
            }
        },
        None => {
            r.errors.push(
                Diagnostic::error("a diffusion model needs `prediction`: the node that predicts the noise, which `netc sample` runs")
                    .at(v.span, "the schedule is here")
                    .help("prediction = pred (with `loss = mse(pred, eps)` in the network)"),
            );
            return None;
        }
    };
    if let Some(n) = net.resolve(&prediction) {
        let want = noise.first().map(|(e, _)| shape_of(e));
        if let Some(want) = want.filter(|w| *w != net.graph[n].shape) {
            r.errors.push(
                Diagnostic::error(format!(
                    "`prediction = {prediction}` is {} but the noise is {}",
                    crate::ast::shape_str(&net.graph[n].shape),
                    crate::ast::shape_str(&want)
                ))
                .at(r.get("prediction").map_or(v.span, |p| p.span), "here"),
            );
        }
    }
    Some(DiffusionConfig {
        betas,
        timesteps,
        prediction,
    })
}

/// `ema = 0.999`: the decay of an exponential moving average of the weights, kept beside them.
pub(super) fn ema(r: &mut Reader) -> Option<f64> {
    r.get("ema")?;
    Some(r.number(
        "ema",
        0.999,
        (0.0, 1.0 - 1e-12),
        "a decay in [0, 1), e.g. 0.999",
    ))
}
