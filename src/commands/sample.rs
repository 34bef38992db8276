//! `netc sample`: samples drawn from a trained generative model (a GAN's generator, a VAE's
//! decoder, a diffusion model's reverse chain), as a PNG grid or a .npy array. `draw`
//! dispatches over the task; each family's sampler is its own function or module (the
//! diffusion chain in `diffusion.rs`).

mod diffusion;

use crate::cli::{DiffusionArgs, SampleFormat};
use crate::common::{ensure_params, fail, load, train_config, Failure};

mod vae;

use netc_compiler::ir::Model;
use netc_compiler::train_config::{Task, TrainConfig};

/// Samples of a trained generative model, in [0, 1], with their image shape and what drew them.
pub(crate) struct Drawn {
    pub(crate) images: Vec<f32>,
    pub(crate) shape: (usize, usize, usize),
    /// The network (or part of it) that drew them.
    pub(crate) source: String,
}

/// `count` samples of the model `cfg` trains, drawn from `seed` with the weights in `weights`:
/// a GAN's generator fed its noise, a declared-loss model's `sample` part (a VAE's decoder)
/// fed draws from N(0, I). `sample` and `score` both draw through here.
pub(crate) fn draw(
    model: &Model,
    cfg: &TrainConfig,
    weights: &str,
    count: usize,
    seed: u64,
) -> Result<Drawn, Failure> {
    match &cfg.task {
        Task::Gan(g) => gan(model, g, cfg.range, weights, (count, seed)),
        Task::Minimise(m) => vae::draw(model, m, cfg.range, weights, (count, seed)),
        Task::Classifier { .. } => Err(fail(
            "`sample` draws from a generative model (a GAN, or a declared loss with `sample = {latent: z, samples: recon}`); this model trains a classifier",
        )),
        Task::LanguageModel(_) => Err(fail(
            "`sample` draws images from a generative model; a language model's text comes from `netc generate`",
        )),
    }
}

/// A GAN's generator fed the noise its training section names.
fn gan(
    model: &Model,
    g: &netc_compiler::train_config::GanConfig,
    range: (f64, f64),
    weights: &str,
    (count, seed): (usize, u64),
) -> Result<Drawn, Failure> {
    use netc_runtime::cpu::Params;
    let gn = model
        .network(&g.generator)
        .ok_or_else(|| fail(format!("no network `{}`", g.generator)))?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(gn)?;
    let like: Params<f32> = Params::init(gn, &mut netc_runtime::rng::Rng::new(0));
    let (p, _) = netc_runtime::io::run_checkpoint::load_params(&ck, gn, &like, 0).map_err(fail)?;
    // In [0, 1], as the data set's pixels, whatever range the generator was trained in.
    let images =
        netc_runtime::train::generate(gn, &p, (g.noise, range), count, seed).map_err(fail)?;
    Ok(Drawn {
        images,
        shape: netc_runtime::train::image_shape(gn),
        source: format!("generator `{}`", gn.name),
    })
}

pub(crate) fn sample(
    file: &str,
    weights: &str,
    count: usize,
    format: Option<SampleFormat>,
    out: Option<String>,
    (seed, scale): (u64, Option<usize>),
    dargs: &DiffusionArgs,
) -> Result<(), Failure> {
    let (format, out) = sample_target(weights, format, out, seed)?;
    let model = load(file)?;
    let cfg = train_config(&model)?;
    if let Task::Minimise(m) = &cfg.task {
        if m.diffusion.is_some() {
            let to = diffusion::Target {
                format,
                out,
                count,
                seed,
                scale,
            };
            return diffusion::sample(&model, &cfg, m, weights, to, dargs);
        }
    }
    diffusion::refuse_flags(dargs)?;
    let Drawn {
        images: imgs,
        shape: (c, h, w),
        ..
    } = draw(&model, &cfg, weights, count, seed)?;
    write_samples(&imgs, (c, h, w), count, (format, &out), scale)
}

/// Writes `count` images in [0, 1] as a PNG grid or a .npy array, and says so.
fn write_samples(
    imgs: &[f32],
    (c, h, w): (usize, usize, usize),
    count: usize,
    (format, out): (SampleFormat, &str),
    scale: Option<usize>,
) -> Result<(), Failure> {
    match format {
        SampleFormat::Png => {
            let path = out;
            let mut grid = netc_runtime::io::Grid::of(count, (c, h, w));
            grid.cols = (count as f64).sqrt().ceil() as usize;
            grid.scale = scale.unwrap_or(grid.scale);
            netc_runtime::io::write_image_grid(std::path::Path::new(path), imgs, &grid)
                .map_err(fail)?;
            println!("wrote {count} samples to {path}");
        }
        SampleFormat::Npy => {
            let path = out;
            netc_runtime::io::write_npy_f32(std::path::Path::new(path), &[count, c, h, w], imgs)
                .map_err(fail)?;
            println!("wrote a ({count}, {c}, {h}, {w}) float32 array to {path}");
        }
    }
    Ok(())
}

/// Where `sample` writes and in which format: the format follows `--out`'s extension (a PNG
/// named x.npy helps nobody), and without `--out` the file goes beside the weights, into the
/// run's folder, under a name that does not replace the grid training wrote.
fn sample_target(
    weights: &str,
    format: Option<SampleFormat>,
    out: Option<String>,
    seed: u64,
) -> Result<(SampleFormat, String), Failure> {
    let from_ext = |p: &str| match std::path::Path::new(p)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("npy") => Some(SampleFormat::Npy),
        Some("png") => Some(SampleFormat::Png),
        _ => None,
    };
    let ext = |f: SampleFormat| match f {
        SampleFormat::Png => "png",
        SampleFormat::Npy => "npy",
    };
    match (format, out) {
        (f, Some(out)) => match (f, from_ext(&out)) {
            (Some(f), Some(e)) if ext(f) != ext(e) => {
                eprintln!(
                    "error: --format {} but --out `{out}` names a .{} file",
                    ext(f),
                    ext(e)
                );
                Err(Failure(2))
            }
            (f, e) => Ok((f.or(e).unwrap_or(SampleFormat::Png), out)),
        },
        (f, None) => {
            let f = f.unwrap_or(SampleFormat::Png);
            let dir = std::path::Path::new(weights)
                .parent()
                .unwrap_or(std::path::Path::new(""));
            let path = dir.join(format!("samples-seed{seed}.{}", ext(f)));
            Ok((f, path.to_string_lossy().into_owned()))
        }
    }
}
