//! Denoising diffusion (Ho et al. 2020; DDIM, Song et al. 2021): the noise schedule, the
//! fields a training batch gets from it (`noisy`, `timestep`, `timestep_embedding`, drawn with
//! the `noise` input's eps), and the reverse chain `netc sample` runs. The arithmetic is in
//! f64 and written once here, so the trainer, the sampler and the tests use the same numbers.

mod chain;
mod schedule;

pub use chain::{sample, Chain, ChainError, Sampler};
pub use schedule::NoiseSchedule;

use crate::rng::{mix64, Rng};
use netc_compiler::train_config::Field;

/// The timestep of each of `rows` examples, uniform in 0..T-1, drawn from the run's seed and
/// the step (or the held-out batch), so a resumed run draws the same ones.
pub fn timesteps(seed: u64, at: u64, rows: usize, t: usize) -> Vec<usize> {
    let mut rng = Rng::new(mix64(seed ^ 0xD1FF_0510) ^ mix64(at));
    (0..rows).map(|_| rng.below(t as u64) as usize).collect()
}

/// DDPM's sinusoidal timestep embedding (Vaswani et al.'s positions; Ho et al.'s
/// `get_timestep_embedding`): `width / 2` sines of t f_i, then as many cosines, with
/// f_i = 10000^(-i / (width/2 - 1)).
pub fn timestep_embedding(t: f64, width: usize) -> Vec<f32> {
    let half = width / 2;
    let step = 10000f64.ln() / (half.max(2) - 1) as f64;
    let args: Vec<f64> = (0..half).map(|i| t * (-(i as f64) * step).exp()).collect();
    let mut e: Vec<f32> = args.iter().map(|a| a.sin() as f32).collect();
    e.extend(args.iter().map(|a| a.cos() as f32));
    e
}

/// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for each example (rows of `x0` and `eps`).
pub fn noised(s: &NoiseSchedule, x0: &[f32], eps: &[f32], ts: &[usize]) -> Vec<f32> {
    let w = x0.len() / ts.len().max(1);
    let mut out = Vec::with_capacity(x0.len());
    for (j, &t) in ts.iter().enumerate() {
        let (a, b) = (s.abar[t].sqrt(), (1.0 - s.abar[t]).sqrt());
        for i in j * w..(j + 1) * w {
            out.push((a * x0[i] as f64 + b * eps[i] as f64) as f32);
        }
    }
    out
}

/// The per-example value a diffusion input field takes for timesteps `ts`: the timestep as a
/// number, or its embedding of `width`.
pub fn timestep_field(ts: &[usize], width: usize, embedded: bool) -> Vec<f32> {
    if !embedded {
        return ts.iter().map(|&t| t as f32).collect();
    }
    ts.iter()
        .flat_map(|&t| timestep_embedding(t as f64, width))
        .collect()
}

/// Fills a batch's diffusion fields (`ins[k]` for the inputs reading `noisy`, `timestep`,
/// `timestep_embedding`) from the images `x0` and the `noise` input's eps: one timestep per
/// example, drawn from (seed, at) for the whole batch of `whole` rows, of which `ins` hold
/// `rows` (a data-parallel rank's part: it draws the timesteps one process draws for them).
pub fn fill(
    ins: &mut [Vec<f32>],
    fields: &[Field],
    widths: &[usize],
    x0: &[f32],
    s: &NoiseSchedule,
    (seed, at): (u64, u64),
    (rows, whole): (std::ops::Range<usize>, usize),
) {
    let Some(e) = fields.iter().position(|f| *f == Field::Noise) else {
        return;
    };
    let ts = timesteps(seed, at, whole, s.len())[rows].to_vec();
    for (k, f) in fields.iter().enumerate() {
        ins[k] = match f {
            Field::Noisy => noised(s, x0, &ins[e], &ts),
            Field::Timestep => timestep_field(&ts, widths[k], false),
            Field::TimestepEmbedding => timestep_field(&ts, widths[k], true),
            Field::Images | Field::Labels | Field::Noise => continue,
        };
    }
}
