//! `netc score`: how good a generative model's samples are (a GAN's, a VAE's), by a digit
//! classifier netc trained (see netc_runtime::score for the figures); `--compare` scores
//! several sample files into one table (`compare`). The default classifier is the built-in LeNet
//! (models/lenet.net with the weights in models/lenet.safetensors).

use crate::cli::{ScoreArgs, ScoreFormat};
use crate::common::{data_dir, ensure_params, fail, load, train_config, Failure};
use netc_compiler::ir::Model;
use netc_compiler::train_config::Task;
use netc_runtime::cpu::Params;
use netc_runtime::data::{self, Split};
use netc_runtime::io::Checkpoint;
use netc_runtime::score::{Score, Scorer, LENET_PATH, LENET_WEIGHTS_PATH};
use std::path::{Path, PathBuf};

mod compare;

/// The classifier a score is measured with: the built-in LeNet unless another is named.
fn scorer(args: &ScoreArgs) -> Result<(Scorer, String), Failure> {
    let (Some(m), Some(w)) = (&args.classifier, &args.classifier_weights) else {
        return Ok((
            Scorer::builtin().map_err(fail)?,
            format!("the built-in LeNet ({LENET_PATH}, {LENET_WEIGHTS_PATH})"),
        ));
    };
    let model = load(m)?;
    let ck = Checkpoint::load(Path::new(w)).map_err(fail)?;
    let net = classifier_net(&model)?;
    ensure_params(net)?;
    let like: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (p, _) = netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0).map_err(fail)?;
    Ok((Scorer::new(net, p).map_err(fail)?, format!("{m} with {w}")))
}

/// The network a classifier model trains (its training section's, else its first).
fn classifier_net(model: &Model) -> Result<&netc_compiler::ir::Network, Failure> {
    let name = match netc_compiler::train_config::read(model).ok().flatten() {
        Some(cfg) => match cfg.task {
            Task::Classifier { network } => Some(network),
            Task::Gan(_) => return Err(fail("the scoring classifier's model trains a GAN")),
            Task::Minimise(_) => {
                return Err(fail(
                    "the scoring classifier's model minimises a declared loss",
                ))
            }
            Task::LanguageModel(_) => {
                return Err(fail("the scoring classifier's model is a language model"))
            }
        },
        None => None,
    };
    match name {
        Some(n) => model.network(&n),
        None => model.networks.first(),
    }
    .ok_or_else(|| fail("the scoring classifier's model has no network"))
}

/// The samples to score (in [0, 1]) and what they are, and the model's data folder if known.
fn samples(
    args: &ScoreArgs,
    scorer: &Scorer,
) -> Result<(Vec<f32>, String, Option<PathBuf>), Failure> {
    if let Some(path) = &args.samples {
        let (shape, values) = netc_runtime::io::read_npy_f32(Path::new(path)).map_err(fail)?;
        scorer
            .check_samples(&shape, &values)
            .map_err(|e| fail(format!("{path}: {e}")))?;
        let dir = args.data_dir.as_ref().map(PathBuf::from);
        return Ok((values, format!("{path} ({shape:?})"), dir));
    }
    let (file, weights) = match (&args.file, &args.weights) {
        (Some(f), Some(w)) => (f, w),
        _ => {
            return Err(fail(
                "give the model file and --weights, or --samples, or --compare",
            ))
        }
    };
    let model = load(file)?;
    let cfg = train_config(&model)?;
    if let Task::Classifier { .. } = cfg.task {
        return Err(fail(
            "`score` measures a generative model's samples; this model trains a classifier (use `netc eval`)",
        ));
    }
    // A diffusion model's chain is slow and has its own settings (`--steps`, `--sampler`):
    // drawn by `netc sample`, whose array `--samples` scores.
    if matches!(&cfg.task, Task::Minimise(m) if m.diffusion.is_some()) {
        return Err(fail(format!(
            "{file} is a diffusion model: draw its samples with `netc sample {file} --weights {weights} --steps 50 --count 2000 --out samples.npy`, then score them with `netc score --samples samples.npy`"
        )));
    }
    let drawn = super::sample::draw(&model, &cfg, weights, args.count, args.seed)?;
    let images = drawn.images;
    let ck = Checkpoint::load(Path::new(weights)).map_err(fail)?;
    // The real images the GAN was trained on, as its checkpoint recorded them.
    // (A recorded folder since removed falls back to the model's, as the real images only
    // add a reference figure.)
    let recorded = netc_runtime::data::record::DataRecord::recorded(&ck.metadata)
        .map(|r| r.dir)
        .filter(|d| d.is_dir());
    let dir = match (args.data_dir.clone(), recorded) {
        (None, Some(d)) => Some(d),
        (cli, _) => data_dir(file, cli, &cfg).ok().flatten(),
    };
    let what = format!(
        "{} samples of {} ({file}, {weights}, seed {})",
        args.count, drawn.source, args.seed
    );
    Ok((images, what, dir))
}

/// The first `n` real images of a data folder: its test split, else its training split.
pub(super) fn real_images(dir: &Path, n: usize) -> Result<Vec<f32>, Failure> {
    let set = if data::has_split(dir, Split::Test) {
        data::load_split(dir, Split::Test)
    } else {
        data::load_split(dir, Split::Train)
    }
    .map_err(fail)?;
    let keep = n.min(set.n) * set.image_len();
    Ok(set.images[..keep].to_vec())
}

pub(crate) fn run(args: ScoreArgs) -> Result<(), Failure> {
    let (scorer, classifier) = scorer(&args)?;
    if !args.compare.is_empty() {
        return compare::run(&args, &scorer, &classifier);
    }
    let (images, what, dir) = samples(&args, &scorer)?;
    // The real images, scored too: the ceiling the samples are measured against.
    let real = match &dir {
        Some(d) => {
            let imgs = real_images(d, args.real)?;
            let out = scorer.outputs(&imgs).map_err(fail)?;
            let own = scorer.score(&imgs, None).map_err(fail)?;
            Some((out, own, d.display().to_string()))
        }
        None => None,
    };
    let score = scorer
        .score(&images, real.as_ref().map(|r| &r.0))
        .map_err(fail)?;
    match args.format {
        ScoreFormat::Text => print_text(
            &score,
            &what,
            &classifier,
            real.as_ref().map(|r| (&r.1, r.2.as_str())),
        ),
        ScoreFormat::Json => {
            let v = serde_json::json!({
                "samples": what,
                "classifier": classifier,
                "count": score.count,
                "inception_score": score.inception_score,
                "confident": score.confident,
                "histogram": score.histogram,
                "frechet_distance": score.fid,
                "real": real.as_ref().map(|(_, own, d)| serde_json::json!({
                    "data_dir": d,
                    "count": own.count,
                    "inception_score": own.inception_score,
                    "confident": own.confident,
                })),
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    Ok(())
}

fn print_text(s: &Score, what: &str, classifier: &str, real: Option<(&Score, &str)>) {
    println!("{what}, scored with {classifier}");
    let classes = s.histogram.len();
    println!(
        "  inception score       {:.3} (of at most {classes}{})",
        s.inception_score,
        real.map_or(String::new(), |(r, _)| format!(
            "; real images: {:.3}",
            r.inception_score
        ))
    );
    println!(
        "  confident (p > 0.9)   {:.1}%{}",
        100.0 * s.confident,
        real.map_or(String::new(), |(r, _)| format!(
            " (real images: {:.1}%)",
            100.0 * r.confident
        ))
    );
    let hist: Vec<String> = s
        .histogram
        .iter()
        .enumerate()
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    println!("  classes               {}", hist.join("  "));
    match (s.fid, real) {
        (Some(f), Some((r, d))) => println!(
            "  Frechet distance      {f:.3} to {} real images of {d} (the classifier's penultimate features: an MNIST FID, not comparable to Inception-v3 FIDs)",
            r.count
        ),
        _ => println!("  Frechet distance      - (no real images: pass --data-dir)"),
    }
}
