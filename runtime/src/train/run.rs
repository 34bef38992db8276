//! A training run: its options from the command line, its errors, the executor it runs on,
//! and [`run`], which prepares the data and the run folder and hands over to the task.

use super::classifier::classifier;
use super::gan::gan;
use super::language_model::language_model;
use super::minimise::minimise;
use super::{
    classifier_data, datasets, interrupt_flag, prepare_out, ClassifierData, Purpose, Recorded,
};
use crate::cpu::Params;
use crate::data::record::DataRecord;
use crate::data::{self, DataError, Dataset};
use crate::gpu::Gpu;
use crate::io::run_checkpoint::RunCheckpointError;
use crate::io::{Checkpoint, IoError};
use crate::session::{Executor, RunError};
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{Field, LanguageModelConfig, MinimiseConfig, Task, TrainConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
    #[error("{0}")]
    Setup(String),
    #[error("the {what} became {loss} {}; stopped. {}", nonfinite_where(*.first, *.since, *.step), last_checkpoint(.checkpoint))]
    NonFinite {
        /// What went non-finite: "loss", "test loss", "discriminator loss", ...
        what: &'static str,
        /// The step at which it was seen, the last step at which everything was still finite,
        /// and the first non-finite step where the executor knows it.
        step: u64,
        since: u64,
        first: Option<u64>,
        loss: f64,
        checkpoint: Option<PathBuf>,
    },
    #[error("parameter `{tensor}` became NaN or infinite in the update of step {step} (the update overflowed: lower the learning rate, or look for extreme inputs); stopped. {}", last_checkpoint(.checkpoint))]
    NonFiniteParams {
        tensor: String,
        step: u64,
        checkpoint: Option<PathBuf>,
    },
    #[error("tensor `{tensor}` holds NaN or infinite values at step {step}; stopped without writing a checkpoint from it (an earlier one in the run folder is kept)")]
    NonFiniteWeights { tensor: String, step: u64 },
}

fn nonfinite_where(first: Option<u64>, since: u64, step: u64) -> String {
    match first {
        Some(f) => format!("at step {f}"),
        None if since + 1 >= step => format!("at step {step}"),
        // The GPU adds its losses on the device and is read at intervals.
        None => format!(
            "at a step between {} and {step} (the device's loss sums are read every log interval)",
            since + 1
        ),
    }
}

fn last_checkpoint(c: &Option<PathBuf>) -> String {
    match c {
        Some(p) => format!("The last good checkpoint is {}", p.display()),
        None => "No checkpoint was written before it.".to_string(),
    }
}

/// The first tensor with a NaN or infinite value, if any.
pub fn nonfinite_tensor(p: &Params<f32>) -> Option<&str> {
    p.names
        .iter()
        .zip(&p.values)
        .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
        .map(|(n, _)| n.as_str())
}

/// Settings that come from the command line rather than the model file.
#[derive(Debug, Clone)]
pub struct Options {
    /// `auto` (a hardware GPU, else the CPU executor), `cpu`, `gpu`, a backend or an adapter name.
    pub device: String,
    /// The IDX folder; None for `data = synthetic` (see [`datasets`]).
    pub data_dir: Option<PathBuf>,
    pub out: PathBuf,
    pub resume: bool,
    /// Replace a run already in `out` (without it, and without `resume`, that is an error).
    pub overwrite: bool,
    /// Start from the weights of this checkpoint (fine-tuning) instead of the initialisers;
    /// the optimizer starts afresh.
    pub weights: Option<PathBuf>,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Resume on other data than the checkpoint recorded (else that is refused).
    pub allow_other_data: bool,
    /// After training, time every kernel of one step (GPU executor only).
    pub profile: bool,
    /// The processes the run is split over (`mpirun -n N`; one by default): rank 0 owns the
    /// run folder, every rank trains its rows of each batch (docs/distributed.md).
    pub dist: crate::dist::Dist,
    /// Micro-batches each process computes its rows in, their gradients summed before the
    /// update (1: the rows at once; CPU executor).
    pub micro_batches: usize,
}

/// A checkpoint that does not fit is a setup error, its message unchanged.
impl From<RunCheckpointError> for TrainError {
    fn from(e: RunCheckpointError) -> Self {
        TrainError::Setup(e.0)
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub steps: u64,
    pub seconds: f64,
    pub device: String,
    pub final_metrics: BTreeMap<String, f64>,
    pub interrupted: bool,
}

/// Picks the executor: `auto` takes a hardware GPU when there is one and otherwise the CPU
/// reference (a software rasteriser such as lavapipe is slower than native code).
pub fn executor(choice: &str) -> Result<(Executor, String), TrainError> {
    executor_for_rank(choice, 0)
}

/// [`executor`] for the process of a data-parallel job with `local_rank` on its machine: a
/// GPU named outright is picked by the local rank among the adapters that match it.
pub fn executor_for_rank(
    choice: &str,
    local_rank: usize,
) -> Result<(Executor, String), TrainError> {
    match choice {
        "cpu" => Ok((Executor::Cpu, "cpu (reference executor)".into())),
        "auto" => match Gpu::open("gpu") {
            Ok(g) => {
                let name = format!("{} ({})", g.info.name, g.info.backend);
                Ok((Executor::Gpu(Box::new(g)), name))
            }
            Err(_) => Ok((
                Executor::Cpu,
                "cpu (reference executor; no hardware GPU found)".into(),
            )),
        },
        other => {
            let g = Gpu::open_for_rank(other, local_rank)
                .map_err(|e| TrainError::Setup(e.to_string()))?;
            let name = format!("{} ({})", g.info.name, g.info.backend);
            Ok((Executor::Gpu(Box::new(g)), name))
        }
    }
}

/// The checkpoint `--weights` names, if any (its weights only: the optimizer starts afresh).
/// Rank 0's alone in a data-parallel run: the others receive its weights (see `sync_start`).
pub(super) fn start_weights(opts: &Options) -> Result<Option<Checkpoint>, TrainError> {
    if !opts.dist.is_root() {
        return Ok(None);
    }
    opts.weights
        .as_deref()
        .map(|w| {
            Checkpoint::load(w)
                .map_err(|e| TrainError::Setup(format!("cannot start from --weights: {e}")))
        })
        .transpose()
}

/// The checkpoint to resume from as rank 0 reads it, on every rank (a collective call).
fn root_checkpoint(opts: &Options, path: &std::path::Path) -> Result<Checkpoint, String> {
    let bytes = opts
        .dist
        .from_root(|| crate::io::input::read_safetensors(path).map_err(|e| e.to_string()))
        .map_err(|e| format!("cannot resume: {e}"))?;
    Checkpoint::from_bytes(&bytes, path).map_err(|e| format!("cannot resume: {e}"))
}

/// A resumed run whose checkpoint already holds every step the run asks for would train
/// nothing; say so instead of exiting as if it had trained.
pub(super) fn nothing_left(done: u64, total: u64, what: &str) -> Result<(), TrainError> {
    if done < total {
        return Ok(());
    }
    Err(TrainError::Setup(format!(
        "nothing to train: the checkpoint is at {what}step {done} and this run asks for {total} {what}steps; pass a larger --epochs or --steps to continue"
    )))
}

/// What a run trains on.
enum RunData<'m> {
    Classifier(&'m Network, ClassifierData),
    Gan(
        &'m netc_compiler::train_config::GanConfig,
        (Dataset, Dataset, Option<String>),
        BTreeMap<String, String>,
    ),
    Minimise(&'m Network, &'m MinimiseConfig, ClassifierData),
    /// The network, its task and the text file (or a folder of one), read once the
    /// checkpoint to resume from (whose vocabulary it keeps) is loaded.
    LanguageModel(
        &'m Network,
        &'m LanguageModelConfig,
        PathBuf,
        BTreeMap<String, String>,
    ),
}

impl RunData<'_> {
    /// What the checkpoint records of the data (the folder, its files, the class names).
    fn meta(&self) -> &BTreeMap<String, String> {
        match self {
            RunData::Classifier(_, d) => &d.meta,
            RunData::Gan(_, _, meta) => meta,
            RunData::Minimise(_, _, d) => &d.meta,
            RunData::LanguageModel(_, _, _, none) => none,
        }
    }
}

/// A run resumed on other data than the checkpoint recorded is refused, unless the user asks
/// for it: `--resume` without `--data-dir` takes the recorded folder, so this is a
/// `--data-dir` naming another data set (or the recorded files changed since).
fn check_same_data(
    ck: &Checkpoint,
    now: &BTreeMap<String, String>,
    allow: bool,
    log: &mut dyn FnMut(&str),
) -> Result<(), TrainError> {
    let Some(then) = DataRecord::recorded(&ck.metadata) else {
        return Ok(());
    };
    let now = DataRecord::recorded(now);
    if now.as_ref().is_some_and(|n| then.same_data(n)) {
        return Ok(());
    }
    let now = now.map_or("synthetic data".to_string(), |n| n.describe());
    if allow {
        log(&format!(
            "note: continuing on other data than the checkpoint was trained on (--allow-other-data): trained on {}, now on {now}",
            then.describe()
        ));
        return Ok(());
    }
    Err(TrainError::Setup(format!(
        "cannot resume on other data: the checkpoint was trained on {}, but this run's data is {now}; leave out --data-dir to continue on the data it was trained on, or pass --allow-other-data to continue on this data",
        then.describe()
    )))
}

/// The network as the data readers see it: the input bound to `images` first (an image
/// folder's crop is that input's shape), no outputs (a declared loss has no classes).
fn images_first(net: &Network, m: &MinimiseConfig) -> Network {
    let mut view = net.clone();
    let at = m.inputs.iter().position(|(_, f)| *f == Field::Images);
    if let Some(k) = at.filter(|&k| k < view.inputs.len()) {
        let i = view.inputs.remove(k);
        view.inputs.insert(0, i);
    }
    view.outputs.clear();
    view
}

/// What the task trains on, read before the run folder is locked (`peek`: the checkpoint a
/// resumed image-folder run takes its normalisation from).
fn run_data<'m>(
    model: &'m Model,
    cfg: &'m TrainConfig,
    opts: &Options,
    peek: Option<&Checkpoint>,
) -> Result<RunData<'m>, TrainError> {
    let dir = opts.data_dir.as_deref();
    Ok(match &cfg.task {
        Task::Classifier { network } => {
            let net = model
                .network(network)
                .ok_or_else(|| TrainError::Setup(format!("no network `{network}`")))?;
            let recorded = peek.map_or(Recorded::Nothing, Recorded::Resume);
            let d = classifier_data(model, cfg, net, dir, opts.progress, recorded)?;
            RunData::Classifier(net, d)
        }
        Task::Minimise(m) => {
            let net = model
                .network(&m.network)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", m.network)))?;
            let recorded = peek.map_or(Recorded::Nothing, Recorded::Resume);
            let view = images_first(net, m);
            let d = classifier_data(model, cfg, &view, dir, opts.progress, recorded)?;
            RunData::Minimise(net, m, d)
        }
        Task::LanguageModel(lm) => {
            let net = model
                .network(&lm.network)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", lm.network)))?;
            let text = dir.map(Path::to_path_buf).ok_or_else(|| {
                TrainError::Setup(
                    "no text: pass --data-dir (a text file, or a folder with one) or set `text` in the training section".into(),
                )
            })?;
            RunData::LanguageModel(net, lm, text, BTreeMap::new())
        }
        Task::Gan(g) => {
            let mut meta = BTreeMap::new();
            if let Some(d) = dir {
                DataRecord::of(d)?.insert(&mut meta);
            }
            RunData::Gan(g, datasets(model, cfg, dir, Purpose::Gan)?, meta)
        }
    })
}

/// Runs the training the model's section describes. `log` receives one line per event worth
/// telling the user (epoch results, notes).
pub fn run(
    model: &Model,
    cfg: &TrainConfig,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    super::split::check_task(opts, &cfg.task)?;
    // Signal handlers first: from here on a signal checkpoints and stops instead of killing.
    interrupt_flag();
    let ck_path = opts.out.join("checkpoint.safetensors");
    // A resumed image-folder run prepares images with the normalisation it recorded; the
    // checkpoint is read for that before the folder is locked, and again (with its errors)
    // after, so a run already in the folder is reported as such first.
    let dir = opts.data_dir.as_deref();
    // Split over processes, rank 0 reads the checkpoint and sends it to the others, which
    // need not see the run folder.
    let shared = (opts.resume && opts.dist.is_split()).then(|| root_checkpoint(opts, &ck_path));
    let peeked = if shared.is_none()
        && opts.resume
        && (cfg.data == "images" || dir.is_some_and(data::folder::looks_like_image_folder))
    {
        Checkpoint::load(&ck_path).ok()
    } else {
        None
    };
    let peek = match &shared {
        Some(r) => r.as_ref().ok(),
        None => peeked.as_ref(),
    };
    let data = run_data(model, cfg, opts, peek)?;
    // The peeked checkpoint is read again below; do not hold two copies.
    drop(peeked);
    // Rank 0 alone owns the run folder.
    let _lock = match opts.dist.is_root() {
        true => Some(prepare_out(&opts.out, opts.resume, opts.overwrite)?),
        false => None,
    };
    let resume = match shared {
        Some(r) => Some(r.map_err(TrainError::Setup)?),
        None if opts.resume => Some(
            Checkpoint::load(&ck_path)
                .map_err(|e| TrainError::Setup(format!("cannot resume: {e}")))?,
        ),
        None => None,
    };
    if let Some(ck) = &resume {
        check_same_data(ck, data.meta(), opts.allow_other_data, log)?;
    }
    let notes = match &data {
        RunData::Classifier(_, d) => d.notes.clone(),
        RunData::Gan(_, (_, _, note), _) => note.iter().cloned().collect(),
        RunData::Minimise(_, _, d) => d.notes.clone(),
        RunData::LanguageModel(..) => vec![],
    };
    for n in notes {
        log(&format!("note: {n}"));
    }
    let (exec, device) = match (&data, opts.device.as_str()) {
        (_, "auto") if super::split::is_split(opts) => (
            Executor::Cpu,
            "cpu (reference executor; a split batch runs on the CPU for now)".to_string(),
        ),
        _ => executor_for_rank(&opts.device, opts.dist.local_rank())?,
    };
    log(&format!("device: {device}"));
    let mut summary = match data {
        RunData::Classifier(net, d) => classifier(model, net, cfg, opts, exec, &d, resume, log)?,
        RunData::Gan(g, (train, _, _), meta) => {
            let gn = model
                .network(&g.generator)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", g.generator)))?;
            let dn = model
                .network(&g.discriminator)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", g.discriminator)))?;
            gan(model, gn, dn, cfg, opts, exec, (&train, &meta), resume, log)?
        }
        RunData::Minimise(net, m, d) => minimise(model, net, m, cfg, opts, exec, &d, resume, log)?,
        RunData::LanguageModel(net, lm, text, _) => {
            language_model(model, net, lm, cfg, opts, exec, &text, resume, log)?
        }
    };
    summary.device = device;
    Ok(summary)
}
