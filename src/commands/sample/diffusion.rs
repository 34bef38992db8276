//! `netc sample` for a diffusion model: the reverse chain (ancestral DDPM over all T steps, or
//! DDIM with `--steps N`) from the averaged weights when the checkpoint keeps them, written as
//! GAN samples are (a PNG grid or a .npy array in [0, 1], which `netc score` reads), and
//! optionally the chain's snapshots as one picture.

use super::write_samples;
use crate::cli::{DiffusionArgs, DiffusionSampler, SampleFormat};
use crate::common::{ensure_params, fail, Failure};
use netc_compiler::ir::Model;
use netc_compiler::train_config::{MinimiseConfig, TrainConfig};
use netc_runtime::cpu::Params;
use netc_runtime::diffusion::{Chain, Sampler};

/// Where the samples go.
pub(super) struct Target {
    pub(super) format: SampleFormat,
    pub(super) out: String,
    pub(super) count: usize,
    pub(super) seed: u64,
    pub(super) scale: Option<usize>,
}

/// The snapshots `--chain` keeps (columns of its picture) and the samples it shows (rows).
const CHAIN_COLUMNS: usize = 10;
const CHAIN_ROWS: usize = 8;

/// The diffusion flags mean nothing to another model: an error rather than ignored.
pub(super) fn refuse_flags(a: &DiffusionArgs) -> Result<(), Failure> {
    let given = [
        (a.sampler.is_some(), "--sampler"),
        (a.steps.is_some(), "--steps"),
        (a.eta != 0.0, "--eta"),
        (a.chain.is_some(), "--chain"),
        (a.no_ema, "--no-ema"),
    ];
    match given.iter().find(|g| g.0) {
        Some((_, flag)) => Err(fail(format!(
            "{flag} is for diffusion models (a training section with `diffusion = ...`)"
        ))),
        None => Ok(()),
    }
}

/// The reverse process the flags ask for.
fn sampler(a: &DiffusionArgs, t: u64) -> Result<Sampler, Failure> {
    if !(0.0..=1.0).contains(&a.eta) {
        return Err(fail(format!("--eta must be in [0, 1], found {}", a.eta)));
    }
    match (a.sampler, a.steps) {
        (Some(DiffusionSampler::Ddpm), Some(n)) if n as u64 != t => Err(fail(format!(
            "the ancestral DDPM chain runs all {t} steps of the model; --steps {n} needs --sampler ddim"
        ))),
        (Some(DiffusionSampler::Ddpm), _) | (None, None) if a.eta != 0.0 => {
            Err(fail("--eta is DDIM's; add --sampler ddim (or --steps N)"))
        }
        (Some(DiffusionSampler::Ddpm), _) | (None, None) => Ok(Sampler::Ddpm),
        (Some(DiffusionSampler::Ddim), None) => Ok(Sampler::Ddim {
            steps: 50.min(t as usize),
            eta: a.eta,
        }),
        (_, Some(steps)) if steps as u64 > t => Err(fail(format!(
            "--steps {steps} is more than the model's {t} noising steps"
        ))),
        (_, Some(steps)) => Ok(Sampler::Ddim { steps, eta: a.eta }),
    }
}

pub(super) fn sample(
    model: &Model,
    cfg: &TrainConfig,
    m: &MinimiseConfig,
    weights: &str,
    to: Target,
    a: &DiffusionArgs,
) -> Result<(), Failure> {
    let Some(d) = &m.diffusion else {
        return Err(fail("not a diffusion model"));
    };
    let net = model
        .network(&m.network)
        .ok_or_else(|| fail(format!("no network `{}`", m.network)))?;
    let sampler = sampler(a, d.timesteps)?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(net)?;
    let like: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (trained, _) =
        netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0).map_err(fail)?;
    let ema = netc_runtime::io::ema::load_ema(&ck, net, &like).map_err(fail)?;
    let p = match (ema, a.no_ema) {
        (Some(e), false) => e,
        (None, false) if m.ema.is_some() => {
            eprintln!(
                "note: {weights} keeps no averaged weights (ema.*); sampling with the trained ones"
            );
            trained
        }
        _ => trained,
    };
    let what = match sampler {
        Sampler::Ddpm => format!("ancestral DDPM, {} steps", d.timesteps),
        Sampler::Ddim { steps, eta } => format!("DDIM, {steps} steps, eta {eta}"),
    };
    eprintln!("sampling {} images: {what}", to.count);
    let chain = Chain {
        sampler,
        count: to.count,
        seed: to.seed,
        clip: true,
        snapshots: if a.chain.is_some() { CHAIN_COLUMNS } else { 0 },
        progress: true,
    };
    let t0 = std::time::Instant::now();
    let (x, snaps) = netc_runtime::diffusion::sample(net, &p, m, d, &chain).map_err(fail)?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!("{:.1} s ({:.3} s per image)", secs, secs / to.count as f64);
    let shape = image(net, m);
    let unit = |v: &[f32]| to_unit(v, cfg.range);
    if let Some(path) = &a.chain {
        write_chain(path, &snaps, shape, to.count, cfg.range)?;
    }
    write_samples(&unit(&x), shape, to.count, (to.format, &to.out), to.scale)
}

/// The pixels in [0, 1], from the training range (clamped: a chain may overshoot).
fn to_unit(v: &[f32], (lo, hi): (f64, f64)) -> Vec<f32> {
    let span = (hi - lo) as f32;
    v.iter()
        .map(|&x| ((x - lo as f32) / span).clamp(0.0, 1.0))
        .collect()
}

/// The image shape of the input that reads `noisy`.
fn image(net: &netc_compiler::ir::Network, m: &MinimiseConfig) -> (usize, usize, usize) {
    let k = m
        .inputs
        .iter()
        .position(|(_, f)| *f == netc_compiler::train_config::Field::Noisy)
        .unwrap_or(0);
    let s: Vec<usize> = net.graph[net.inputs[k]]
        .shape
        .iter()
        .map(|&d| d as usize)
        .collect();
    match s.as_slice() {
        [c, h, w] => (*c, *h, *w),
        _ => (1, 1, s.iter().product()),
    }
}

/// The chain as one picture: a row per sample (the first few), a column per snapshot, from
/// the noisiest to the samples.
fn write_chain(
    path: &str,
    snaps: &[Vec<f32>],
    (c, h, w): (usize, usize, usize),
    count: usize,
    range: (f64, f64),
) -> Result<(), Failure> {
    let rows = count.min(CHAIN_ROWS);
    let per = c * h * w;
    let mut cells = Vec::with_capacity(rows * snaps.len() * per);
    for r in 0..rows {
        for s in snaps {
            cells.extend(to_unit(&s[r * per..(r + 1) * per], range));
        }
    }
    let mut grid = netc_runtime::io::Grid::of(rows * snaps.len(), (c, h, w));
    grid.cols = snaps.len();
    netc_runtime::io::write_image_grid(std::path::Path::new(path), &cells, &grid).map_err(fail)?;
    println!(
        "wrote the chain ({rows} samples x {} snapshots) to {path}",
        snaps.len()
    );
    Ok(())
}
