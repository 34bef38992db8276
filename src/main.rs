//! The `netc` command line: check, graph (and, as the runtime grows, gradcheck, train, ...).

use clap::{Parser, Subcommand, ValueEnum};
use netc_compiler::{compile, ir::Model, report};
use std::process::ExitCode;

mod score;

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "Declarative neural-network compiler and runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SampleFormat {
    Png,
    Npy,
}

/// Command-line overrides of the training section.
#[derive(clap::Args)]
struct Overrides {
    /// Train for this many epochs
    #[arg(long, conflicts_with = "steps", value_parser = at_least_one)]
    epochs: Option<u64>,
    /// Train for this many steps (generator steps for a GAN)
    #[arg(long, value_parser = at_least_one)]
    steps: Option<u64>,
    /// Examples per step
    #[arg(long, value_parser = at_least_one)]
    batch: Option<u64>,
    /// Learning rate (of both optimizers for a GAN)
    #[arg(long, allow_hyphen_values = true, value_parser = positive_real)]
    lr: Option<f64>,
    /// Seed of the initialisation, the shuffling, the noise and the dropout masks
    #[arg(long)]
    seed: Option<u64>,
    /// Executor: auto (a hardware GPU, else the CPU), cpu, gpu, vulkan, gl, or an adapter name
    #[arg(long, default_value = "auto")]
    device: String,
    /// Folder with the IDX files (train-images-idx3-ubyte[.gz], ...), or for a classifier an
    /// image folder (one folder per class, under train/ and val/ or directly)
    #[arg(long)]
    data_dir: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and shape-check a model; print the per-layer table with parameters, connections, MACs
    Check {
        /// Model file (.net DSL, or .yaml/.yml)
        file: String,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
        /// Batch for the training-memory figures (default: the training section's)
        #[arg(long, value_parser = at_least_one)]
        batch: Option<u64>,
    },
    /// Print the IR as Graphviz DOT (shapes on the edges): `netc graph m.net | dot -Tpng > m.png`
    Graph {
        /// Model file
        file: String,
    },
    /// Print the IR printout (the form the snapshot tests record)
    Ir {
        /// Model file
        file: String,
    },
    /// Gradient check: analytic gradients (CPU reference, f64) against central differences
    Gradcheck {
        /// Model file
        file: String,
        /// Examples in the random batch
        #[arg(long, default_value_t = 4, value_parser = at_least_one_usize)]
        batch: usize,
        /// Entries checked per parameter tensor (all when the tensor is smaller)
        #[arg(long, default_value_t = 20, value_parser = at_least_one_usize)]
        samples: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Train the model as its training section says (classifier or GAN)
    Train {
        /// Model file with a training section
        file: String,
        #[command(flatten)]
        over: Overrides,
        #[command(flatten)]
        run: RunFolder,
        /// No progress bar (also off when stderr is not a terminal)
        #[arg(long)]
        quiet: bool,
        /// After training, print per-kernel times of one step and the replay counters
        #[arg(long)]
        profile: bool,
    },
    /// Accuracy (top-1, top-5) and loss of a trained classifier on the test split
    Eval {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train` (safetensors)
        #[arg(long)]
        weights: String,
        /// Folder with the IDX files, or the image folder the classifier was trained on
        /// [default: the model's data_dir]
        #[arg(long)]
        data_dir: Option<String>,
        /// Executor: auto, cpu, gpu, a backend (vulkan, gl, ...) or an adapter name
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Top classes of a trained classifier for image files (JPEG, PNG) or IDX image files
    Predict {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train`
        #[arg(long)]
        weights: String,
        /// Images (.jpg, .jpeg, .png) or IDX image files (e.g. t10k-images-idx3-ubyte.gz)
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Classes shown per input
        #[arg(long, default_value_t = 5, value_parser = at_least_one_usize)]
        top: usize,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: score::ScoreFormat,
        /// Executor: auto, cpu, gpu, a backend (vulkan, gl, ...) or an adapter name
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Draw samples from a trained GAN generator: a PNG grid, or an (N, C, H, W) float32 .npy
    Sample {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train`
        #[arg(long)]
        weights: String,
        /// Number of samples
        #[arg(long, default_value_t = 64, value_parser = at_least_one_usize)]
        count: usize,
        /// Output format [default: from --out's extension, else png]
        #[arg(long, value_enum)]
        format: Option<SampleFormat>,
        /// Output file [default: samples-seed<SEED>.png (or .npy) beside the weights, in the
        /// run's folder]
        #[arg(long)]
        out: Option<String>,
        /// Seed of the noise
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Draw each pixel as an N x N block in the PNG grid [default: cells of at least 64
        /// pixels, 3 for 28x28 digits]
        #[arg(long, value_parser = at_least_one_usize)]
        scale: Option<usize>,
    },
    /// How good a GAN's samples are, by a digit classifier netc trained: Inception Score,
    /// confident share, class histogram and Frechet distance to real images
    Score(score::ScoreArgs),
    /// List the adapters wgpu can use (and the CPU executor)
    Devices,
    /// Benchmark the dense kernel and a model's training step (an MLP by default; a GAN's D and G
    /// steps), on the GPU path and the CPU executor
    Bench {
        /// Adapter for the GPU path: auto, gpu, or a name substring
        #[arg(long, default_value = "auto")]
        device: String,
        /// Timed repetitions per figure (the median is reported)
        #[arg(long, default_value_t = 20, value_parser = at_least_one_usize)]
        reps: usize,
        /// Model whose training step is timed [default: models/mlp.net, built into netc]
        #[arg(long)]
        model: Option<String>,
        /// Batch of the timed training step
        #[arg(long, default_value_t = 128, value_parser = at_least_one_usize)]
        batch: usize,
        /// Print per-kernel times of one step and the replay counters
        #[arg(long)]
        profile: bool,
        /// Also time the dense kernel at this shape: MxNxK (C[M,N] = A[M,K] B[K,N]), with
        /// `:ta` / `:tb` for a transposed operand, as `--profile` labels kernels (repeatable)
        #[arg(long, value_name = "MxNxK[:ta][:tb]")]
        gemm: Vec<String>,
        /// Instead of single steps, time one training epoch of the model's training section
        /// (its optimizer, learning rate and batch; no evaluation) on each executor
        #[arg(long)]
        epoch: bool,
        /// Folder with the IDX files for `--epoch` (else the training section's data_dir), or
        /// the image folder for `--loader`
        #[arg(long)]
        data_dir: Option<String>,
        /// Instead, time the image-folder loader alone (decode, resize, crop, flip, colour
        /// noise, normalise) with the model's pipeline on --data-dir: images per second on one
        /// thread and on all cores, --reps batches of --batch each
        #[arg(long, conflicts_with = "epoch")]
        loader: bool,
    },
}

/// Counts (epochs, steps, batch, samples): 0 would silently become 1 further down, so it is a
/// usage error naming the flag.
fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("`{s}` is not a whole number ({e})")),
    }
}

fn at_least_one_usize(s: &str) -> Result<usize, String> {
    at_least_one(s).and_then(|v| usize::try_from(v).map_err(|e| e.to_string()))
}

/// A learning rate: finite and above zero.
fn positive_real(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive number".into()),
        Err(e) => Err(format!("`{s}` is not a number ({e})")),
    }
}

/// Where a training run writes and what it starts from.
#[derive(clap::Args)]
struct RunFolder {
    /// Output folder for checkpoints, metrics, plots and samples [default: runs/<model name>]
    #[arg(long)]
    out: Option<String>,
    /// Continue from <out>/checkpoint.safetensors
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace the run already in <out> (its checkpoint, metrics and plots)
    #[arg(long)]
    overwrite: bool,
    /// Start from this checkpoint's weights (fine-tuning, transfer) instead of the
    /// initialisers; the optimizer and the schedule start afresh
    #[arg(long, conflicts_with = "resume")]
    weights: Option<String>,
}

/// A failure that has already been explained to the user; carries the exit code.
struct Failure(u8);

fn load(path: &str) -> Result<Model, Failure> {
    load_as(path, false)
}

/// Reads and compiles a model; errors go to stderr as text, or with `json` to stdout as the
/// JSON `netc check --format json` promises (tools read one format, success or not).
fn load_as(path: &str, json: bool) -> Result<Model, Failure> {
    let plain = |message: String| {
        if json {
            let v = serde_json::json!({
                "file": path,
                "ok": false,
                "errors": [{ "severity": "error", "message": message, "file": path,
                             "line": null, "column": null, "labels": [], "help": [] }],
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        eprintln!("error: {message}");
        Failure(1)
    };
    let source = read_model_file(path).map_err(plain)?;
    let source = String::from_utf8(source).map_err(|e| {
        plain(format!(
            "model file `{path}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    compile(path, &source).map_err(|d| {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&d.json()).unwrap_or_default()
            );
        }
        eprint!("{}", d.render());
        Failure(1)
    })
}

/// A model file's bytes, refusing one over the size limit before reading it whole (a 50 MB
/// file took 108 s and 6 GB; `/dev/zero` read until memory ran out).
fn read_model_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = netc_compiler::limits::MAX_SOURCE_BYTES;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read model file `{path}`: {e}"))?;
    let mut bytes = vec![];
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read model file `{path}`: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "model file `{path}` is larger than {} MB; a model is a few kB of text",
            limit >> 20
        ));
    }
    Ok(bytes)
}

/// `netc bench`'s default model, as shipped in models/mlp.net.
const BUILTIN_MLP_PATH: &str = "models/mlp.net";
const BUILTIN_MLP: &str = include_str!("../models/mlp.net");

fn builtin_mlp() -> Result<Model, Failure> {
    compile(BUILTIN_MLP_PATH, BUILTIN_MLP).map_err(|d| {
        eprint!("{}", d.render());
        Failure(1)
    })
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check {
            file,
            format,
            batch,
        } => {
            let json = matches!(format, CheckFormat::Json);
            let model = load_as(&file, json)?;
            // The training section is checked too: a file `check` passes must not be rejected
            // by `train` for its recipe.
            if let Err(items) = netc_compiler::train_config::read(&model) {
                let d = netc_compiler::diag::Diagnostics {
                    file_name: model.file_name.clone(),
                    source: model.source.clone(),
                    items,
                };
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&d.json()).unwrap_or_default()
                    );
                }
                eprint!("{}", d.render());
                return Err(Failure(1));
            }
            let memory = training_memory(&model, batch)?;
            match format {
                CheckFormat::Text => {
                    print!("{}", report::check_text(&model));
                    if let Some(m) = &memory {
                        print!("\n{}", m.text());
                    }
                }
                CheckFormat::Json => {
                    let mut v = report::check_json(&model);
                    if let (Some(m), Some(o)) = (&memory, v.as_object_mut()) {
                        o.insert("training_memory".into(), m.json());
                    }
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
            }
        }
        Command::Graph { file } => print!("{}", report::dot(&load(&file)?)),
        Command::Ir { file } => print!("{}", load(&file)?.printout()),
        Command::Gradcheck {
            file,
            batch,
            samples,
            seed,
        } => gradcheck(&load(&file)?, batch, samples, seed)?,
        Command::Train {
            file,
            over,
            run,
            quiet,
            profile,
        } => train(&file, over, run, quiet, profile)?,
        Command::Eval {
            file,
            weights,
            data_dir,
            device,
        } => eval(&file, &weights, data_dir, &device)?,
        Command::Sample {
            file,
            weights,
            count,
            format,
            out,
            seed,
            scale,
        } => sample(&file, &weights, count, format, out, (seed, scale))?,
        Command::Score(args) => score::run(args)?,
        Command::Predict {
            file,
            weights,
            inputs,
            top,
            format,
            device,
        } => predict(&file, &weights, &inputs, (top, format), &device)?,
        Command::Devices => devices(),
        Command::Bench {
            device,
            reps,
            model,
            batch,
            profile,
            gemm,
            epoch,
            data_dir,
            loader,
        } => {
            let extra = gemm
                .iter()
                .map(|s| parse_gemm(s))
                .collect::<Result<Vec<_>, _>>()?;
            // The default model is compiled into the binary, so `netc bench` works from any
            // folder, not only inside the checkout.
            let (path, m) = match model {
                Some(p) => {
                    let m = load(&p)?;
                    (p, m)
                }
                None => (BUILTIN_MLP_PATH.to_string(), builtin_mlp()?),
            };
            if loader {
                bench_loader(&path, &m, data_dir, batch, reps)?
            } else if epoch {
                bench_epoch(&device, &path, &m, data_dir)?
            } else {
                bench(&device, reps, batch, &m, profile, &extra)?
            }
        }
    }
    Ok(())
}

/// Refuses a network whose parameters do not fit the machine's memory, before allocating them.
fn ensure_params(net: &netc_compiler::ir::Network) -> Result<(), Failure> {
    netc_runtime::memory::ensure(4 * netc_runtime::memory::parameters(net), || {
        format!("the parameters of network `{}`", net.name)
    })
    .map_err(fail)
}

fn fail(e: impl std::fmt::Display) -> Failure {
    eprintln!("error: {e}");
    Failure(1)
}

fn gradcheck(model: &Model, batch: usize, samples: usize, seed: u64) -> Result<(), Failure> {
    use netc_compiler::train_config::Task;
    use netc_runtime::gradcheck::{check, check_generator, THRESHOLD};
    // A GAN's generator has no loss of its own: it is checked with the one it trains with,
    // through the frozen discriminator (not cross-entropy over its image outputs).
    let gan = match netc_compiler::train_config::read(model).ok().flatten() {
        Some(cfg) => match cfg.task {
            Task::Gan(g) => Some(g),
            Task::Classifier { .. } => None,
        },
        None => None,
    };
    let mut ok = true;
    for net in &model.networks {
        let r = match &gan {
            Some(g) if g.generator == net.name => {
                let d = model
                    .network(&g.discriminator)
                    .ok_or_else(|| fail(format!("no network `{}`", g.discriminator)))?;
                check_generator(net, d, g.non_saturating, batch, samples, seed)
            }
            _ => check(net, batch, samples, seed),
        }
        .map_err(fail)?;
        println!(
            "network {} (batch {batch}, loss: {}, five-point central differences, h {:e}, h/100 near a kink)",
            r.net,
            r.loss,
            netc_runtime::gradcheck::EPS
        );
        println!(
            "  {:<28} {:>10} {:>8} {:>6}  {:>12}  result",
            "tensor", "entries", "checked", "kinks", "rel. diff"
        );
        for t in &r.tensors {
            let pass = t.rel_diff < THRESHOLD;
            println!(
                "  {:<28} {:>10} {:>8} {:>6}  {:>12.3e}  {}",
                t.name,
                t.entries,
                t.checked,
                t.kinks,
                t.rel_diff,
                if pass { "ok" } else { "FAIL" }
            );
        }
        println!(
            "  overall relative difference {:.3e} (threshold {THRESHOLD:e}): {}",
            r.overall,
            if r.passed() { "passed" } else { "FAILED" }
        );
        ok &= r.passed();
    }
    if ok {
        Ok(())
    } else {
        Err(Failure(1))
    }
}

/// The training memory `netc check` reports: for the classifier of the model's training
/// section (its optimizer; its batch unless `--batch`), or, with `--batch` and no such section,
/// for the first network under SGD with momentum. None when neither applies (a GAN, or no
/// section and no `--batch`).
fn training_memory(
    model: &Model,
    batch: Option<u64>,
) -> Result<Option<netc_compiler::report::TrainingMemory>, Failure> {
    use netc_compiler::train_config::Task;
    let cfg = netc_compiler::train_config::read(model).ok().flatten();
    let (net, opt, b) = match &cfg {
        Some(c) => match &c.task {
            Task::Classifier { network } => match model.network(network) {
                Some(n) => (n, c.optimizer.kind, batch.unwrap_or(c.batch)),
                None => return Ok(None),
            },
            Task::Gan(_) => return Ok(None),
        },
        None => match (batch, model.networks.first()) {
            (Some(b), Some(n)) => (
                n,
                netc_compiler::schedule::Optimizer::Sgd {
                    momentum: 0.9,
                    weight_decay: 0.0,
                },
                b,
            ),
            _ => return Ok(None),
        },
    };
    match netc_compiler::report::training_memory(net, opt, b.max(1)) {
        Ok(m) => Ok(Some(m)),
        // A network the training lowering cannot take (two inputs, an op without kernels):
        // the table stands, and the reason is said.
        Err(e) => {
            eprintln!("note: no training-memory figures: {e}");
            Ok(None)
        }
    }
}

fn train_config(model: &Model) -> Result<netc_compiler::train_config::TrainConfig, Failure> {
    match netc_compiler::train_config::read(model) {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(fail(format!(
            "{} has no training section: add `train {{ ... }}` (or `train:` in YAML); see README.md",
            model.file_name
        ))),
        Err(items) => {
            let d = netc_compiler::diag::Diagnostics {
                file_name: model.file_name.clone(),
                source: model.source.clone(),
                items,
            };
            eprint!("{}", d.render());
            Err(Failure(1))
        }
    }
}

/// The data folder: the command line's (relative to the current directory), else the model's
/// `data_dir` (relative to the model file); none for `data = synthetic` without either.
fn data_dir(
    model_file: &str,
    cli: Option<String>,
    cfg: &netc_compiler::train_config::TrainConfig,
) -> Result<Option<std::path::PathBuf>, Failure> {
    if let Some(d) = cli {
        return Ok(Some(d.into()));
    }
    match &cfg.data_dir {
        Some(d) => {
            let base = std::path::Path::new(model_file)
                .parent()
                .unwrap_or(std::path::Path::new("."));
            Ok(Some(base.join(d)))
        }
        None if cfg.data == "synthetic" => Ok(None),
        None => Err(fail(
            "no data folder: pass --data-dir or set data_dir in the training section",
        )),
    }
}

fn train(
    file: &str,
    over: Overrides,
    run: RunFolder,
    quiet: bool,
    profile: bool,
) -> Result<(), Failure> {
    use netc_compiler::train_config::{Length, Task};
    let RunFolder {
        out,
        resume,
        overwrite,
        weights,
    } = run;
    let model = load(file)?;
    let mut cfg = train_config(&model)?;
    if let Some(e) = over.epochs {
        cfg.length = Length::Epochs(e.max(1));
    }
    if let Some(s) = over.steps {
        cfg.length = Length::Steps(s.max(1));
    }
    if let Some(b) = over.batch {
        cfg.batch = b.max(1);
    }
    if let Some(seed) = over.seed {
        cfg.seed = seed;
    }
    if let Some(lr) = over.lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
        eprintln!("error: --lr must be a positive number, not {lr}");
        return Err(Failure(2));
    }
    if let Some(lr) = over.lr {
        cfg.optimizer.lr = lr;
        if let Task::Gan(g) = &mut cfg.task {
            g.g_optimizer.lr = lr;
            g.d_optimizer.lr = lr;
        }
    }
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .to_string();
    let opts = netc_runtime::train::Options {
        device: over.device,
        data_dir: data_dir(file, over.data_dir, &cfg)?,
        out: out
            .map(Into::into)
            .unwrap_or_else(|| std::path::Path::new("runs").join(stem)),
        resume,
        overwrite,
        weights: weights.map(Into::into),
        progress: !quiet,
        profile,
    };
    let mut say = |l: &str| eprintln!("{l}");
    let summary = netc_runtime::train::run(&model, &cfg, &opts, &mut say).map_err(fail)?;
    eprintln!(
        "{} {} steps in {:.1} s on {}; outputs in {}",
        if summary.interrupted {
            "stopped after"
        } else {
            "trained"
        },
        summary.steps,
        summary.seconds,
        summary.device,
        opts.out.display()
    );
    // 128 + the signal (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a
    // command a signal ended, so a script can tell an interrupted run (checkpoint written)
    // from a finished one.
    if summary.interrupted {
        let sig = netc_runtime::train::stop_signal().unwrap_or(2);
        return Err(Failure(128 + sig.clamp(1, 127) as u8));
    }
    Ok(())
}

/// A classifier model, its training section and the weights of a checkpoint (eval, predict).
struct Trained {
    model: Model,
    cfg: netc_compiler::train_config::TrainConfig,
    network: String,
    ck: netc_runtime::io::Checkpoint,
    params: netc_runtime::cpu::Params<f32>,
}

impl Trained {
    /// The trained network (`trained_classifier` checked that it exists).
    fn net(&self) -> Result<&netc_compiler::ir::Network, Failure> {
        self.model
            .network(&self.network)
            .ok_or_else(|| fail(format!("no network `{}`", self.network)))
    }
}

fn trained_classifier(file: &str, weights: &str, verb: &str) -> Result<Trained, Failure> {
    use netc_compiler::train_config::Task;
    use netc_runtime::cpu::Params;
    let model = load(file)?;
    let cfg = train_config(&model)?;
    let Task::Classifier { network } = &cfg.task else {
        return Err(fail(format!(
            "`{verb}` runs classifiers; for a GAN use `netc sample`"
        )));
    };
    let net = model
        .network(network)
        .ok_or_else(|| fail(format!("no network `{network}`")))?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(net)?;
    let like: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (params, _) = netc_runtime::train::load_params(&ck, net, &like, 0).map_err(fail)?;
    let network = network.clone();
    Ok(Trained {
        model,
        cfg,
        network,
        ck,
        params,
    })
}

fn eval(file: &str, weights: &str, data: Option<String>, device: &str) -> Result<(), Failure> {
    let t = trained_classifier(file, weights, "eval")?;
    let (cfg, ck, p) = (&t.cfg, &t.ck, t.params.clone());
    let net = t.net()?;
    let dir = data_dir(file, data, cfg)?;
    // An image folder's evaluation images are prepared with the normalisation the checkpoint
    // recorded, and its classes must be the ones the network was trained on.
    let d = netc_runtime::train::classifier_data(
        &t.model,
        cfg,
        net,
        dir.as_deref(),
        true,
        netc_runtime::train::Recorded::Evaluate(ck),
    )
    .map_err(fail)?;
    for n in &d.notes {
        eprintln!("note: {n}");
    }
    let test = d.test;
    let (exec, name) = netc_runtime::train::executor(device).map_err(fail)?;
    let mut s = netc_runtime::session::Classifier::new(
        net,
        p,
        cfg.optimizer.kind,
        (500 / test.views()).max(1).min(test.len().max(1)) * test.views(),
        0,
        exec,
    )
    .map_err(fail)?;
    let (loss, top1, top5) = netc_runtime::train::evaluate(&mut s, &test).map_err(fail)?;
    println!("{}: {} test images on {name}", net.name, test.len());
    println!("  loss   {loss:.4}");
    println!("  top-1  {:.2}%", 100.0 * top1);
    if s.classes > 5 {
        println!("  top-5  {:.2}%", 100.0 * top5);
    }
    Ok(())
}

fn predict(
    file: &str,
    weights: &str,
    inputs: &[String],
    (top, format): (usize, score::ScoreFormat),
    device: &str,
) -> Result<(), Failure> {
    let t = trained_classifier(file, weights, "predict")?;
    let (cfg, ck, p) = (&t.cfg, &t.ck, t.params.clone());
    let net = t.net()?;
    let paths: Vec<std::path::PathBuf> = inputs.iter().map(Into::into).collect();
    let sources = netc_runtime::predict::sources(cfg, net, ck, &paths).map_err(fail)?;
    let names = netc_runtime::predict::class_names(ck);
    let (exec, _) = netc_runtime::train::executor(device).map_err(fail)?;
    let views = cfg.images.eval_crops as usize;
    let mut s = netc_runtime::session::Classifier::new(
        net,
        p,
        cfg.optimizer.kind,
        (64 / views).max(1) * views,
        0,
        exec,
    )
    .map_err(fail)?;
    let class = |k: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(k).cloned())
            .unwrap_or_else(|| k.to_string())
    };
    let mut rows = vec![];
    for (src, labels) in &sources {
        let preds = netc_runtime::predict::predict(&mut s, src, top).map_err(fail)?;
        for (name, ranked) in labels.iter().zip(preds) {
            match format {
                score::ScoreFormat::Text => {
                    let parts: Vec<String> = ranked
                        .iter()
                        .map(|&(k, p)| format!("{} {:.2}%", class(k), 100.0 * p))
                        .collect();
                    println!("{name}: {}", parts.join(", "));
                }
                score::ScoreFormat::Json => rows.push(serde_json::json!({
                    "input": name,
                    "top": ranked.iter().map(|&(k, p)| serde_json::json!({
                        "class": class(k), "index": k, "probability": p
                    })).collect::<Vec<_>>(),
                })),
            }
        }
    }
    if matches!(format, score::ScoreFormat::Json) {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(())
}

fn sample(
    file: &str,
    weights: &str,
    count: usize,
    format: Option<SampleFormat>,
    out: Option<String>,
    (seed, scale): (u64, Option<usize>),
) -> Result<(), Failure> {
    let (format, out) = sample_target(weights, format, out, seed)?;
    use netc_compiler::train_config::Task;
    use netc_runtime::cpu::Params;
    let model = load(file)?;
    let cfg = train_config(&model)?;
    let Task::Gan(g) = &cfg.task else {
        return Err(fail(
            "`sample` draws from a GAN's generator; this model trains a classifier",
        ));
    };
    let gn = model
        .network(&g.generator)
        .ok_or_else(|| fail(format!("no network `{}`", g.generator)))?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(gn)?;
    let like: Params<f32> = Params::init(gn, &mut netc_runtime::rng::Rng::new(0));
    let (p, _) = netc_runtime::train::load_params(&ck, gn, &like, 0).map_err(fail)?;
    // In [0, 1], as the data set's pixels, whatever range the generator was trained in.
    let imgs =
        netc_runtime::train::generate(gn, &p, (g.noise, cfg.range), count, seed).map_err(fail)?;
    let (c, h, w) = netc_runtime::train::image_shape(gn);
    match format {
        SampleFormat::Png => {
            let path = out;
            let mut grid = netc_runtime::io::Grid::of(count, (c, h, w));
            grid.cols = (count as f64).sqrt().ceil() as usize;
            grid.scale = scale.unwrap_or(grid.scale);
            netc_runtime::io::write_image_grid(std::path::Path::new(&path), &imgs, &grid)
                .map_err(fail)?;
            println!("wrote {count} samples to {path}");
        }
        SampleFormat::Npy => {
            let path = out;
            netc_runtime::io::write_npy_f32(std::path::Path::new(&path), &[count, c, h, w], &imgs)
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

fn devices() {
    let list = netc_runtime::gpu::adapters();
    if list.is_empty() {
        println!("no GPU adapter found");
    }
    // `--device auto` takes the first hardware GPU, else the CPU executor.
    let hw = list
        .iter()
        .position(|a| !matches!(a.device_type.as_str(), "Cpu" | "Other"));
    for (i, a) in list.iter().enumerate() {
        let mark = if Some(i) == hw { "* " } else { "  " };
        println!(
            "{mark}{}  [{} {}]  {}",
            a.name, a.backend, a.device_type, a.driver
        );
    }
    println!(
        "{}cpu  [reference executor, gemm crate]",
        if hw.is_none() { "* " } else { "  " }
    );
    println!("(* = what --device auto uses; choose with --device gpu, vulkan, gl, cpu or an adapter-name substring)");
}

/// `MxNxK[:ta][:tb]` of `netc bench --gemm`.
fn parse_gemm(spec: &str) -> Result<netc_compiler::kernels::Gemm, Failure> {
    let bad = || {
        fail(format!(
            "--gemm {spec:?}: expected MxNxK with optional :ta and :tb, e.g. 128x784x128:ta"
        ))
    };
    let mut parts = spec.split(':');
    let dims: Vec<u64> = parts
        .next()
        .unwrap_or("")
        .split('x')
        .map(|d| d.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [m, n, k] = dims[..] else {
        return Err(bad());
    };
    if m == 0 || n == 0 || k == 0 {
        return Err(bad());
    }
    let mut g = netc_compiler::kernels::Gemm::new(m, n, k);
    for flag in parts {
        match flag {
            "ta" => g.trans_a = true,
            "tb" => g.trans_b = true,
            _ => return Err(bad()),
        }
    }
    Ok(g)
}

fn bench(
    device: &str,
    reps: usize,
    batch: usize,
    model: &Model,
    profile: bool,
    extra: &[netc_compiler::kernels::Gemm],
) -> Result<(), Failure> {
    use netc_runtime::bench;
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::Executor;
    let net = model
        .networks
        .first()
        .ok_or_else(|| fail("the model has no network"))?;
    let reps = reps.max(1);
    let shapes: Vec<_> = [(1024u64, 1024u64, 1024u64), (128, 128, 784)]
        .into_iter()
        .map(|(m, n, k)| bench::dense_forward(m, n, k))
        .chain(extra.iter().copied())
        .collect();
    match Gpu::open(device) {
        Ok(gpu) => {
            println!(
                "GPU adapter: {} ({}, {}); kernels read {}",
                gpu.info.name,
                gpu.info.backend,
                gpu.info.device_type,
                match gpu.reads {
                    netc_compiler::kernels::ReadPath::Storage => "storage buffers",
                    netc_compiler::kernels::ReadPath::Texture => "sampled texture mirrors",
                    netc_compiler::kernels::ReadPath::Image => "storage-texture mirrors",
                }
            );
            let mut gpu = gpu;
            for &g in &shapes {
                let (r, back) = bench::gemm_gpu(gpu, g, reps).map_err(fail)?;
                gpu = back;
                println!(
                    "  dense kernel {}: {:>8.3} ms  {:>7.2} GFLOP/s",
                    gemm_label(&g),
                    r.seconds * 1e3,
                    r.gflops
                );
            }
            let t = step_times(model, net, batch, Executor::Gpu(Box::new(gpu)), reps)?;
            print_step(model, net, batch, reps, &t);
            if let Some(c) = t.counters {
                println!(
                    "  replay: {} pipelines, {} bind groups, {} buffers, {} textures created once; {} submissions for {} steps",
                    c.pipelines_created,
                    c.bind_groups_created,
                    c.buffers_created,
                    c.textures_created,
                    c.submissions,
                    t.steps_run
                );
            }
            if profile && gan_of(model).is_some() {
                println!("  --profile: for a GAN's per-kernel times run `netc train FILE --profile --steps 20`");
            } else if profile {
                profile_step(net, batch, device)?;
            }
        }
        Err(e) => println!("GPU path: not available ({e})"),
    }
    println!("CPU executor (gemm crate):");
    for g in &shapes {
        let r = bench::gemm_cpu(g, reps);
        println!(
            "  dense {}: {:>8.3} ms  {:>7.2} GFLOP/s",
            gemm_label(g),
            r.seconds * 1e3,
            r.gflops
        );
    }
    let t = step_times(model, net, batch, Executor::Cpu, reps)?;
    print_step(model, net, batch, reps, &t);
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (resident, whole process): {:.1} MB",
            kb as f64 / 1e3
        );
    }
    Ok(())
}

/// `netc bench --loader`: the image-folder loader's images per second, to set beside the
/// images per second a training step consumes (`batch / step time`).
fn bench_loader(
    file: &str,
    model: &Model,
    data: Option<String>,
    batch: usize,
    reps: usize,
) -> Result<(), Failure> {
    let cfg = train_config(model)?;
    let netc_compiler::train_config::Task::Classifier { network } = &cfg.task else {
        return Err(fail("`bench --loader` times a classifier's image folder"));
    };
    let net = model
        .network(network)
        .ok_or_else(|| fail(format!("no network `{network}` in the model")))?;
    let dir = data_dir(file, data, &cfg)?
        .ok_or_else(|| fail("`bench --loader` needs an image folder: pass --data-dir"))?;
    let d = netc_runtime::train::classifier_data(
        model,
        &cfg,
        net,
        Some(&dir),
        true,
        netc_runtime::train::Recorded::Nothing,
    )
    .map_err(fail)?;
    let netc_runtime::data::Source::Folder(set) = d.train else {
        return Err(fail(format!("{} is not an image folder", dir.display())));
    };
    let (c, h, w) = (set.needs.channels, set.needs.size.0, set.needs.size.1);
    println!(
        "loader: {} training images of {}, views {c}x{h}x{w} (resize {}, {} crop{}{}), batch {batch}",
        set.items.len(),
        dir.display(),
        set.resize.map_or("none".to_string(), |r| r.to_string()),
        if set.random_crop { "random" } else { "centre" },
        if set.flip { ", flips" } else { "" },
        if set.jitter.is_some() { ", colour noise" } else { "" },
    );
    let all = netc_runtime::data::loader::default_threads();
    for threads in [1, all] {
        let (n, secs) =
            netc_runtime::bench::loader(set.clone(), batch, reps, threads).map_err(fail)?;
        println!(
            "  {threads} thread{}: {n} images in {secs:.2} s = {:.0} images/s",
            if threads == 1 { "" } else { "s" },
            n as f64 / secs
        );
        if all == 1 {
            break;
        }
    }
    Ok(())
}

/// `netc bench --epoch`: one epoch of the training section on the GPU path (where there is an
/// adapter) and on the CPU executor.
fn bench_epoch(
    device: &str,
    file: &str,
    model: &Model,
    data: Option<String>,
) -> Result<(), Failure> {
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::Executor;
    let cfg = train_config(model)?;
    let netc_compiler::train_config::Task::Classifier { network } = &cfg.task else {
        return Err(fail(
            "`bench --epoch` times classifiers; this model trains a GAN",
        ));
    };
    let net = model
        .networks
        .iter()
        .find(|n| &n.name == network)
        .ok_or_else(|| fail(format!("no network `{network}` in the model")))?;
    let dir = data_dir(file, data, &cfg)?;
    let (train, _, _) = netc_runtime::train::datasets(model, &cfg, dir.as_deref()).map_err(fail)?;
    let batch = cfg.batch as usize;
    let run = |exec: Executor, label: &str| -> Result<(), Failure> {
        let t = netc_runtime::bench::epoch(
            net,
            cfg.optimizer.kind,
            cfg.optimizer.lr,
            batch,
            &train,
            exec,
            cfg.seed,
        )
        .map_err(fail)?;
        println!(
            "{label}: one epoch of {} ({} steps of {}, no evaluation): {:.2} s, {:.0} images/s, {:.2} ms/step, mean train loss {:.4}",
            net.name,
            t.steps,
            t.batch,
            t.seconds,
            (t.steps * t.batch) as f64 / t.seconds,
            t.seconds * 1e3 / t.steps.max(1) as f64,
            t.loss
        );
        Ok(())
    };
    match Gpu::open(device) {
        Ok(gpu) => {
            let name = format!("GPU path ({})", gpu.info.name);
            run(Executor::Gpu(Box::new(gpu)), &name)?
        }
        Err(e) => println!("GPU path: not available ({e})"),
    }
    run(Executor::Cpu, "CPU executor")?;
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (resident, whole process): {:.1} MB",
            kb as f64 / 1e3
        );
    }
    Ok(())
}

/// The process's peak resident set (VmHWM) in kB, where /proc says it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The step figures of `netc bench`: the median (the figure to quote), the fastest step and
/// the mean of steps run back to back as training runs them.
/// The GFLOP/s figure counts a step as three forward passes' worth of multiply-adds (forward,
/// input gradient, weight gradient), two flops each.
/// The generator and discriminator of a model whose training section trains a GAN, with
/// their optimizers.
fn gan_of(
    model: &Model,
) -> Option<(
    &netc_compiler::ir::Network,
    &netc_compiler::ir::Network,
    netc_compiler::schedule::Optimizer,
    netc_compiler::schedule::Optimizer,
)> {
    let cfg = netc_compiler::train_config::read(model).ok().flatten()?;
    match cfg.task {
        netc_compiler::train_config::Task::Gan(g) => Some((
            model.network(&g.generator)?,
            model.network(&g.discriminator)?,
            g.g_optimizer.kind,
            g.d_optimizer.kind,
        )),
        netc_compiler::train_config::Task::Classifier { .. } => None,
    }
}

/// Times the model's training step: a GAN's D and G steps, else a classifier step of `net`.
fn step_times(
    model: &Model,
    net: &netc_compiler::ir::Network,
    batch: usize,
    exec: netc_runtime::session::Executor,
    reps: usize,
) -> Result<netc_runtime::bench::StepTimes, Failure> {
    match gan_of(model) {
        Some((g, d, og, od)) => {
            netc_runtime::bench::gan_step((g, d), (og, od), batch, exec, reps).map_err(fail)
        }
        None => netc_runtime::bench::train_step(net, batch, exec, reps).map_err(fail),
    }
}

fn print_step(
    model: &Model,
    net: &netc_compiler::ir::Network,
    batch: usize,
    reps: usize,
    t: &netc_runtime::bench::StepTimes,
) {
    let macs_of = |n: &netc_compiler::ir::Network| -> u64 {
        n.order.iter().map(|&i| n.graph[i].stats.macs).sum()
    };
    if let Some((g, d, _, _)) = gan_of(model) {
        // Per example: the D step runs G forward and D forward and backward on a real and a
        // fake batch; the G step runs both forward and backward (a backward about twice a
        // forward): 4 G + 9 D multiply-adds.
        let (mg, md) = (macs_of(g), macs_of(d));
        let flops = 2.0 * (4 * mg + 9 * md) as f64 * batch as f64;
        println!(
            "  GAN training step (D step + G step), batch {batch} (median of {reps}): {:.3} ms (fastest {:.3} ms; {:.3} ms per step back to back); {:.1} GFLOP/s at 2 x (4 x {mg} + 9 x {md}) MACs per example",
            t.median * 1e3,
            t.fastest * 1e3,
            t.back_to_back * 1e3,
            flops / t.median / 1e9,
        );
        return;
    }
    let macs: u64 = macs_of(net);
    let flops = 6.0 * macs as f64 * batch as f64;
    println!(
        "  {} training step, batch {batch} (median of {reps}): {:.3} ms (fastest {:.3} ms; {:.3} ms per step back to back); {:.1} GFLOP/s at 6 x {} MACs per example",
        net.name,
        t.median * 1e3,
        t.fastest * 1e3,
        t.back_to_back * 1e3,
        flops / t.median / 1e9,
        macs
    );
}

/// "128x784 by 784x128", with the stored layout of a transposed operand named.
fn gemm_label(g: &netc_compiler::kernels::Gemm) -> String {
    let a = if g.trans_a {
        format!("({}x{})^T", g.k, g.m)
    } else {
        format!("{}x{}", g.m, g.k)
    };
    let b = if g.trans_b {
        format!("({}x{})^T", g.n, g.k)
    } else {
        format!("{}x{}", g.k, g.n)
    };
    format!("{a} by {b}")
}

fn profile_step(
    net: &netc_compiler::ir::Network,
    batch: usize,
    device: &str,
) -> Result<(), Failure> {
    use netc_runtime::cpu::Params;
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::{Classifier, Executor};
    let gpu = Gpu::open(device).map_err(fail)?;
    let params: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(1));
    let opt = netc_compiler::schedule::Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut s =
        Classifier::new(net, params, opt, batch, 1, Executor::Gpu(Box::new(gpu))).map_err(fail)?;
    let x = vec![0.5f32; batch * s.features];
    let mut y = vec![0f32; batch * s.classes];
    for r in 0..batch {
        y[r * s.classes + r % s.classes] = 1.0;
    }
    s.train_step(&x, &y, 1e-3).map_err(fail)?;
    if let Some((prog, pass)) = s.gpu_program() {
        for line in netc_runtime::train::profile_lines(prog, pass, "training step").map_err(fail)? {
            println!("  {line}");
        }
    }
    Ok(())
}

/// Mesa's implicit Vulkan layer VK_LAYER_MESA_device_select asks the Wayland compositor which
/// GPU drives the display; without XDG_RUNTIME_DIR (a server, a container, CI) it cannot ask,
/// changes nothing and prints `error: XDG_RUNTIME_DIR is invalid or not set` twice, which users
/// read as netc failing. netc ranks adapters itself, so the layer is switched off (the layer's
/// own NODEVICE_SELECT switch) in exactly that case, unless the user set the switch.
fn quiet_headless_vulkan_layer() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none()
        && std::env::var_os("NODEVICE_SELECT").is_none()
    {
        // Before any thread exists (first thing in main), so nothing reads the environment
        // concurrently.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Keeps glibc's allocator from handing the CPU executor's large per-step buffers (im2col
/// columns, activations: megabytes each) back to the system and faulting them in again on the
/// next step. By default a freed block over the mmap threshold is unmapped and heap tops over
/// 128 kB are trimmed; a LeNet epoch then spent 22 to 35 s of its 22 to 40 s in the kernel
/// (`time`'s sys). With blocks up to 32 MB kept on the heap and trimming only past 1 GB free,
/// the same epoch took 22.8 s, 2.1 s of it sys (GLIBC_TUNABLES measured the same settings).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets two of glibc's allocator parameters (documented in mallopt(3));
    // it is called first thing in main, before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    // The CPU executor's products and per-sample loops run on rayon's pool (one thread per
    // core; RAYON_NUM_THREADS overrides), flushing subnormals as this thread does.
    netc_runtime::cpu::flush_subnormals();
    let pool_flushes = netc_runtime::cpu::flush_subnormals_in_pool();
    debug_assert!(pool_flushes, "nothing starts rayon's pool before main");
    quiet_headless_vulkan_layer();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code)) => ExitCode::from(code),
    }
}
