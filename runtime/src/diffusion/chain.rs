//! The reverse chain: from Gaussian noise, the network's noise prediction at each step takes
//! x_t to x_{t-1} (ancestral DDPM, all T steps) or along a subsequence of the steps (DDIM).
//! Deterministic for a seed: the start noise and each step's noise are drawn from (seed, step).

use super::{timestep_field, NoiseSchedule};
use crate::cpu::{self, Params};
use crate::rng::{mix64, Rng};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::ArrayView2;
use netc_compiler::ir::Network;
use netc_compiler::train_config::{DiffusionConfig, Field, MinimiseConfig};

/// Which reverse process runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    /// Ho et al.'s ancestral chain over all T steps.
    Ddpm,
    /// Song et al.'s DDIM over `steps` evenly spaced timesteps; `eta` 0 is deterministic.
    Ddim { steps: usize, eta: f64 },
}

/// What to draw and how.
#[derive(Debug, Clone)]
pub struct Chain {
    pub sampler: Sampler,
    pub count: usize,
    pub seed: u64,
    /// Clip the predicted clean image to [-1, 1] at each step.
    pub clip: bool,
    /// Keep the start noise and this many snapshots of x_t along the chain (0: none).
    pub snapshots: usize,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
}

/// Samples in the pixels' [-1, 1] range, `count` x the image, and the snapshots (each
/// `count` images, the last the samples).
pub type Drawn = (Vec<f32>, Vec<Vec<f32>>);

/// The timesteps a sampler visits, from the noisiest down.
pub fn visits(sampler: Sampler, t: usize) -> Result<Vec<usize>, ChainError> {
    match sampler {
        Sampler::Ddpm => Ok((0..t).rev().collect()),
        Sampler::Ddim { steps, .. } if steps == 0 || steps > t => Err(ChainError::Setup(format!(
            "--steps must be between 1 and the model's {t} noising steps, found {steps}"
        ))),
        // diffusers' "leading" spacing: 0, T/N, 2T/N, ...
        Sampler::Ddim { steps, .. } => Ok((0..steps).rev().map(|i| i * (t / steps)).collect()),
    }
}

/// Runs the reverse chain of `net` (with weights `p`) trained by `m`.
pub fn sample(
    net: &Network,
    p: &Params<f32>,
    m: &MinimiseConfig,
    d: &DiffusionConfig,
    c: &Chain,
) -> Result<Drawn, ChainError> {
    let s = NoiseSchedule::new(d.betas, d.timesteps as usize);
    let pred = net.resolve(&d.prediction).ok_or_else(|| {
        ChainError::Setup(format!(
            "network `{}` has no node `{}`",
            net.name, d.prediction
        ))
    })?;
    let widths: Vec<usize> = net
        .inputs
        .iter()
        .map(|&i| net.graph[i].shape.iter().product::<u64>() as usize)
        .collect();
    let fields: Vec<Field> = m.inputs.iter().map(|(_, f)| *f).collect();
    let k = fields
        .iter()
        .position(|f| *f == Field::Noisy)
        .ok_or_else(|| ChainError::Setup("no input reads `noisy`".into()))?;
    let w = widths[k];
    let ts = visits(c.sampler, s.len())?;
    let pb = progress_bar(ts.len() as u64, c.progress);
    let mut rng = Rng::new(mix64(c.seed ^ 0x5A3B_1E00));
    let mut x: Vec<f32> = (0..c.count * w).map(|_| rng.normal() as f32).collect();
    // Evenly spaced: after step i when (i + 1) n / len passes a whole number, so n snapshots
    // (fewer when the chain is shorter), the last the samples.
    let (n, len) = (c.snapshots, ts.len());
    let due = |i: usize| n > 0 && (i + 1) * n / len > i * n / len;
    let mut snaps = vec![];
    if c.snapshots > 0 {
        snaps.push(x.clone());
    }
    for (i, &t) in ts.iter().enumerate() {
        let eps = predict(net, p, pred, (&fields, &widths), &x, t)?;
        let mut z_rng = Rng::new(mix64(c.seed) ^ mix64(i as u64 + 1));
        let prev = ts.get(i + 1).copied();
        for (xv, &e) in x.iter_mut().zip(&eps) {
            let z = if prev.is_some() { z_rng.normal() } else { 0.0 };
            let (xf, ef) = (*xv as f64, e as f64);
            *xv = match c.sampler {
                Sampler::Ddpm => s.ddpm_step(t, xf, ef, z, c.clip),
                Sampler::Ddim { eta, .. } => s.ddim_step(t, prev, xf, ef, z, eta, c.clip),
            } as f32;
        }
        if due(i) {
            snaps.push(x.clone());
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok((x, snaps))
}

/// The network's noise prediction for `x` (all examples) at timestep `t`, a batch of at most
/// 256 examples at a time.
fn predict(
    net: &Network,
    p: &Params<f32>,
    pred: petgraph::graph::NodeIndex,
    (fields, widths): (&[Field], &[usize]),
    x: &[f32],
    t: usize,
) -> Result<Vec<f32>, ChainError> {
    let k = fields.iter().position(|f| *f == Field::Noisy).unwrap_or(0);
    let count = x.len() / widths[k];
    let mut out = Vec::with_capacity(x.len());
    let mut row = 0;
    while row < count {
        let rows = (count - row).min(256);
        let ts = vec![t; rows];
        let ins: Vec<Vec<f32>> = fields
            .iter()
            .zip(widths)
            .map(|(f, &w)| match f {
                Field::Noisy => x[row * w..(row + rows) * w].to_vec(),
                Field::Timestep => timestep_field(&ts, w, false),
                Field::TimestepEmbedding => timestep_field(&ts, w, true),
                // The loss's target and other fields are not read by the prediction.
                Field::Noise | Field::Images | Field::Labels => vec![0.0; rows * w],
            })
            .collect();
        let views = ins
            .iter()
            .zip(widths)
            .map(|(v, &w)| {
                ArrayView2::from_shape((rows, w), v).map_err(|e| ChainError::Setup(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let acts = cpu::forward_inputs(net, p, &views, false, 0, 0)?;
        out.extend(acts.get(pred).iter().copied());
        row += rows;
    }
    Ok(out)
}

fn progress_bar(total: u64, progress: bool) -> ProgressBar {
    let pb = ProgressBar::new(total).with_prefix("sampling");
    if !progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(st) = ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} steps  ETA {eta}") {
        pb.set_style(st);
    }
    pb
}
