//! `netc train`: the training loops for classifiers and GANs, with data, progress, metrics,
//! pictures, atomic checkpoints, resume and failure handling. The same loop drives the GPU
//! program and the CPU reference (a [`crate::session`]).

use crate::cpu::{self, LossStats, OptState, Params};
use crate::data::{self, DataError, Dataset, Shuffler, Source, Split};
use crate::gpu::Gpu;
use crate::io::{self, Checkpoint, IoError};
use crate::rng::Rng;
use crate::session::{Classifier, Executor, Gan, GeneratorLoss, RunError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{Length, Noise, Schedule, Task, TrainConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
    /// After training, time every kernel of one step (GPU executor only).
    pub profile: bool,
}

/// Per-kernel times of one pass, and the replay counters, as lines for the user.
pub fn profile_lines(
    prog: &mut crate::gpu::GpuProgram,
    pass: usize,
    what: &str,
) -> Result<Vec<String>, TrainError> {
    let before = prog.counters;
    let (times, stamps) = prog.profile(pass).map_err(RunError::from)?;
    let mut out = vec![format!(
        "profile of one {what} ({}):",
        if stamps {
            "timestamp queries"
        } else {
            "wall-clock, one submission per kernel"
        }
    )];
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    for t in &times {
        out.push(format!(
            "  {:>9.3} ms  {:<44} {}",
            t.seconds * 1e3,
            t.label,
            t.kernel
        ));
    }
    out.push(format!("  {:>9.3} ms  total", total * 1e3));
    let c = prog.counters;
    out.push(format!(
        "replay: {} pipelines, {} bind groups, {} buffers and {} textures were created once, before the first step ({} since); {} submissions in all, one per pass",
        c.pipelines_created,
        c.bind_groups_created,
        c.buffers_created,
        c.textures_created,
        c.pipelines_created - before.pipelines_created + c.bind_groups_created - before.bind_groups_created
            + c.buffers_created - before.buffers_created + c.textures_created - before.textures_created,
        c.submissions
    ));
    if c.textures_created > 0 {
        out.push(format!(
            "reads through texture mirrors: {} buffer-to-texture copies per {what}",
            prog.mirror_refreshes(pass)
        ));
    }
    Ok(out)
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
            let g = Gpu::open(other).map_err(|e| TrainError::Setup(e.to_string()))?;
            let name = format!("{} ({})", g.info.name, g.info.backend);
            Ok((Executor::Gpu(Box::new(g)), name))
        }
    }
}

/// The training and evaluation images. A directory holding only the test split (the shipped
/// sample) is split 80/20 into training and evaluation images, and the caller is told so.
pub fn load_data(dir: &Path) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
    if !dir.is_dir() {
        return Err(DataError::DirNotFound(dir.to_path_buf()).into());
    }
    if data::folder::looks_like_image_folder(dir) {
        return Err(DataError::Folder(format!(
            "{} is an image folder; image folders train classifiers (a GAN reads IDX files)",
            dir.display()
        ))
        .into());
    }
    if data::has_split(dir, Split::Train) {
        let train = data::load_split(dir, Split::Train)?;
        let test = data::load_split(dir, Split::Test)?;
        return Ok((train, test, None));
    }
    let all = data::load_split(dir, Split::Test)?;
    let cut = all.n * 4 / 5;
    let part = |a: usize, b: usize| all.slice(a, b);
    let note = format!(
        "{} has no training split: training on the first {cut} test images and evaluating on the other {}",
        dir.display(),
        all.n - cut
    );
    Ok((part(0, cut), part(cut, all.n), Some(note)))
}

/// The training and test sets a run uses: the IDX folder `dir` when there is one, else (for
/// `data = synthetic`) a synthetic set shaped to the classifier's input and outputs.
pub fn datasets(
    model: &Model,
    cfg: &TrainConfig,
    dir: Option<&Path>,
) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
    let (mut train, mut test, note) = unscaled_datasets(model, cfg, dir)?;
    for d in [&mut train, &mut test] {
        d.rescale(cfg.range);
    }
    Ok((train, test, note))
}

/// A classifier's training and evaluation examples, what to tell the user about them, and what
/// the checkpoint must record to prepare images the same way later (class names, the
/// normalisation).
pub struct ClassifierData {
    pub train: Source,
    pub test: Source,
    pub notes: Vec<String>,
    pub meta: BTreeMap<String, String>,
}

/// The examples of a classifier: an image folder when `dir` is one (or `data = images`), else
/// as [`datasets`]. An image folder takes what `recorded` (the checkpoint resumed or evaluated)
/// recorded of its pipeline.
pub fn classifier_data(
    model: &Model,
    cfg: &TrainConfig,
    net: &Network,
    dir: Option<&Path>,
    progress: bool,
    recorded: Recorded,
) -> Result<ClassifierData, TrainError> {
    // `data = images` reads the folder as an image folder whatever else it holds.
    let images = |d: &&Path| cfg.data == "images" || data::folder::looks_like_image_folder(d);
    if let Some(d) = dir.filter(images) {
        return image_folder(cfg, net, d, progress, recorded);
    }
    let (train, test, note) = datasets(model, cfg, dir)?;
    Ok(ClassifierData {
        train: Source::Memory(train),
        test: Source::Memory(test),
        notes: note.into_iter().collect(),
        meta: BTreeMap::new(),
    })
}

/// The checkpoint a run continues (`--resume`) or a command evaluates: an image folder takes
/// its recorded pipeline from it (the held-out split's seed and share, the class names, the
/// normalisation and colour components) instead of measuring or choosing them again.
#[derive(Clone, Copy)]
pub enum Recorded<'a> {
    Nothing,
    Resume(&'a Checkpoint),
    /// Evaluation only: the training images' headers are not read.
    Evaluate(&'a Checkpoint),
}

impl<'a> Recorded<'a> {
    fn checkpoint(self) -> Option<&'a Checkpoint> {
        match self {
            Recorded::Nothing => None,
            Recorded::Resume(c) | Recorded::Evaluate(c) => Some(c),
        }
    }
}

/// Parses a JSON list of numbers recorded in checkpoint metadata.
fn meta_list(ck: &Checkpoint, key: &str) -> Option<Vec<f64>> {
    serde_json::from_str(ck.metadata.get(key)?).ok()
}

/// The channels, height and width of a network that takes images from files: CxHxW with 1
/// (grey) or 3 (RGB) channels.
pub fn image_input(net: &Network) -> Result<(usize, usize, usize), TrainError> {
    let dims: Vec<usize> = net.graph[net.inputs[0]]
        .shape
        .iter()
        .map(|&d| d as usize)
        .collect();
    let [c, h, w] = dims[..] else {
        return Err(TrainError::Setup(format!(
            "network `{}` takes {} but images need a CxHxW input",
            net.name,
            netc_compiler::ast::shape_str(&net.graph[net.inputs[0]].shape)
        )));
    };
    if c != 1 && c != 3 {
        return Err(TrainError::Setup(format!(
            "network `{}` takes {c} channels; image files give 1 (grey) or 3 (RGB)",
            net.name
        )));
    }
    Ok((c, h, w))
}

/// Indexes an image folder and builds its two pipelines (training views and evaluation views).
fn image_folder(
    cfg: &TrainConfig,
    net: &Network,
    dir: &Path,
    progress: bool,
    recorded: Recorded,
) -> Result<ClassifierData, TrainError> {
    use data::folder::{self, FolderSet, Needs};
    let stored = recorded.checkpoint();
    // The held-out split of the run that wrote the checkpoint, not this command's seed: an
    // evaluation must not score images that run trained on.
    let recorded_meta = |k: &str| stored.and_then(|ck| ck.metadata.get(k));
    let split_seed = recorded_meta("split_seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(cfg.seed);
    let mut ic = cfg.images.clone();
    if let Some(f) = recorded_meta("val_fraction").and_then(|v| v.parse().ok()) {
        ic.val_fraction = f;
    }
    let ic = &ic;
    let (c, h, w) = image_input(net)?;
    if let Some(r) = ic.resize {
        if (r as usize) < h.max(w) {
            return Err(TrainError::Setup(format!(
                "resize = {r} makes the shorter side smaller than network `{}`'s {h}x{w} input; use at least {}",
                net.name,
                h.max(w)
            )));
        }
    }
    let needs = Needs {
        channels: c,
        size: (h, w),
    };
    let eval_only = matches!(recorded, Recorded::Evaluate(_));
    let ix = folder::index(dir, ic, needs, split_seed, (progress, eval_only))?;
    if let Some(then) = recorded_meta("classes") {
        let then: Vec<String> = serde_json::from_str(then).unwrap_or_default();
        if then != ix.classes {
            return Err(TrainError::Setup(format!(
                "the classes of {} ({}) are not the ones the checkpoint was trained on ({})",
                dir.display(),
                short_list(&ix.classes),
                short_list(&then)
            )));
        }
    }
    let outputs: u64 = net
        .outputs
        .first()
        .map_or(0, |o| net.graph[o.1].shape.iter().product());
    if ix.classes.len() as u64 != outputs {
        return Err(TrainError::Setup(format!(
            "the image folder {} has {} classes ({}) but network `{}` has {outputs} outputs (one per class): give its last layer {} units",
            dir.display(),
            ix.classes.len(),
            short_list(&ix.classes),
            net.name,
            ix.classes.len()
        )));
    }
    let mut notes: Vec<String> = ix.note.iter().cloned().collect();
    notes.push(format!(
        "image folder {}: {} classes, {} training and {} evaluation images",
        dir.display(),
        ix.classes.len(),
        ix.train.len(),
        ix.val.len()
    ));
    if let Some((p, why)) = ix.skipped.first() {
        notes.push(format!(
            "left out {} unreadable image file(s) (bad_images = skip), e.g. {}: {why}",
            ix.skipped.len(),
            p.display()
        ));
    }
    if ix.ignored > 0 {
        notes.push(format!(
            "ignored {} files that are not .jpg, .jpeg or .png",
            ix.ignored
        ));
    }
    let set = |items, train: bool| FolderSet {
        items,
        classes: ix.classes.clone(),
        needs,
        train,
        resize: ic.resize.map(|r| r as u32),
        random_crop: ic.random_crop,
        flip: ic.flip,
        norm: data::augment::Normalise {
            range: (0.0, 1.0),
            mean: vec![0.0; c],
            std: vec![1.0; c],
        },
        jitter: None,
        eval_crops: ic.eval_crops as usize,
        bad_images: ic.bad_images,
        seed: cfg.seed,
        failed: Default::default(),
    };
    let mut train = set(ix.train.clone(), true);
    let mut test = set(ix.val.clone(), false);
    use netc_compiler::train_config::ChannelStat;
    let recorded =
        stored.and_then(|ck| Some((meta_list(ck, "image_mean")?, meta_list(ck, "image_std")?)));
    // The colour components a resumed run recorded (9 eigenvector entries, then 3 values).
    let recorded_pca = stored
        .and_then(|ck| meta_list(ck, "image_pca"))
        .and_then(|v| {
            (v.len() == 12).then(|| data::augment::Pca {
                eigenvectors: std::array::from_fn(|i| std::array::from_fn(|k| v[i * 3 + k] as f32)),
                eigenvalues: std::array::from_fn(|k| v[9 + k] as f32),
            })
        });
    let wants_stats = if recorded.is_some() {
        ic.color_jitter > 0.0 && recorded_pca.is_none()
    } else {
        matches!(ic.mean, ChannelStat::Auto)
            || matches!(ic.std, ChannelStat::Auto)
            || ic.color_jitter > 0.0
    };
    let stats = if wants_stats {
        let st = folder::measure(&train, cfg.seed)?;
        notes.push(format!(
            "measured on {} training images: mean {}, std {}",
            train.items.len().min(folder::STATS_SAMPLE),
            list3(&st.mean),
            list3(&st.std)
        ));
        Some(st)
    } else {
        None
    };
    let norm = match recorded {
        // Evaluation and resume prepare images exactly as the run that wrote the checkpoint.
        Some((mean, std)) if mean.len() == c && std.len() == c => data::augment::Normalise {
            range: (cfg.range.0 as f32, cfg.range.1 as f32),
            mean: mean.iter().map(|&x| x as f32).collect(),
            std: std.iter().map(|&x| x as f32).collect(),
        },
        _ => folder::normalise(ic, c, cfg.range, stats.as_ref())?,
    };
    let pca = recorded_pca.or_else(|| stats.as_ref().and_then(|s| s.pca.clone()));
    if ic.color_jitter > 0.0 {
        train.jitter = pca.clone().map(|p| (ic.color_jitter as f32, p));
    }
    let mut meta = BTreeMap::new();
    meta.insert(
        "classes".to_string(),
        serde_json::to_string(&ix.classes).unwrap_or_default(),
    );
    meta.insert("split_seed".to_string(), split_seed.to_string());
    meta.insert("val_fraction".to_string(), ic.val_fraction.to_string());
    let json = |v: &[f32]| {
        serde_json::to_string(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap_or_default()
    };
    meta.insert("image_mean".to_string(), json(&norm.mean));
    meta.insert("image_std".to_string(), json(&norm.std));
    if let Some(p) = &pca {
        let flat: Vec<f32> = p
            .eigenvectors
            .iter()
            .flatten()
            .chain(&p.eigenvalues)
            .copied()
            .collect();
        meta.insert("image_pca".to_string(), json(&flat));
    }
    train.norm = norm.clone();
    test.norm = norm;
    Ok(ClassifierData {
        train: Source::Folder(std::sync::Arc::new(train)),
        test: Source::Folder(std::sync::Arc::new(test)),
        notes,
        meta,
    })
}

/// Up to three figures, short.
fn list3(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", parts.join(", "))
}

/// The data sets with pixels in [0, 1].
fn unscaled_datasets(
    model: &Model,
    cfg: &TrainConfig,
    dir: Option<&Path>,
) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
    if let Some(dir) = dir {
        return load_data(dir);
    }
    if cfg.data != "synthetic" {
        return Err(TrainError::Setup(format!(
            "data set `{}` needs a data folder: pass --data-dir or set data_dir",
            cfg.data
        )));
    }
    let Task::Classifier { network } = &cfg.task else {
        return Err(TrainError::Setup(
            "synthetic data is for classifiers; a GAN needs real images (--data-dir)".into(),
        ));
    };
    let net = model
        .network(network)
        .ok_or_else(|| TrainError::Setup(format!("no network `{network}`")))?;
    let dims: Vec<usize> = net.graph[net.inputs[0]]
        .shape
        .iter()
        .map(|&d| d as usize)
        .collect();
    let shape = match dims.as_slice() {
        [c, h, w] => (*c, *h, *w),
        other => (1, 1, other.iter().product()),
    };
    let classes: u64 = net
        .outputs
        .first()
        .map_or(1, |o| net.graph[o.1].shape.iter().product());
    let (train, test) = data::synthetic(shape, classes as usize, cfg.batch as usize, cfg.seed);
    let note = format!(
        "synthetic data (data = synthetic): {} training and {} test images of {}x{}x{}, labelled with the first {} of {classes} classes, one noisy prototype per class",
        train.n, test.n, shape.0, shape.1, shape.2, (classes as usize).clamp(1, data::SYNTHETIC_CLASSES)
    );
    Ok((train, test, Some(note)))
}

/// The checkpoint `--weights` names, if any (its weights only: the optimizer starts afresh).
fn start_weights(opts: &Options) -> Result<Option<Checkpoint>, TrainError> {
    opts.weights
        .as_deref()
        .map(|w| {
            Checkpoint::load(w)
                .map_err(|e| TrainError::Setup(format!("cannot start from --weights: {e}")))
        })
        .transpose()
}

/// A resumed run whose checkpoint already holds every step the run asks for would train
/// nothing; say so instead of exiting as if it had trained.
fn nothing_left(done: u64, total: u64, what: &str) -> Result<(), TrainError> {
    if done < total {
        return Ok(());
    }
    Err(TrainError::Setup(format!(
        "nothing to train: the checkpoint is at {what}step {done} and this run asks for {total} {what}steps; pass a larger --epochs or --steps to continue"
    )))
}

/// What a finished or interrupted run leaves in its folder.
const RUN_FILES: [&str; 2] = ["checkpoint.safetensors", "metrics.jsonl"];

/// Checks before any work: the output folder can be written, and a run already in it is
/// neither truncated nor replaced unless the user said so.
/// Makes the run folder ready: locks it for this run (the returned file holds the lock until it
/// is dropped; the system releases it when the process ends however it ends), refuses a
/// folder that holds another run unless resuming or overwriting, and removes what a killed run
/// left half-written.
fn prepare_out(out: &Path, resume: bool, overwrite: bool) -> Result<std::fs::File, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| {
        TrainError::Setup(format!(
            "cannot create output folder {}: {e}",
            out.display()
        ))
    })?;
    let lock = lock_out(out)?;
    let existing: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|f| out.join(f).exists())
        .collect();
    if !existing.is_empty() && !resume && !overwrite {
        return Err(TrainError::Setup(format!(
            "{} already holds a run ({}); pass --resume to continue it, --overwrite to replace it, or --out for another folder",
            out.display(),
            existing.join(", ")
        )));
    }
    // Temporary files of a run killed mid-write (kill -9, power loss): never complete, never
    // read; this netc's (`.tmp-netc-*`) and earlier versions' (`<file>.tmp-<pid>-<n>`).
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-netc-")
                || name.contains(".safetensors.tmp-")
                || name.contains(".png.tmp-")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if overwrite && !resume {
        // The old run goes first, so an early stop cannot leave its checkpoint beside the new
        // run's metrics.
        for f in RUN_FILES.into_iter().chain(["loss.png"]) {
            let _ = std::fs::remove_file(out.join(f));
        }
    }
    let probe = out.join(".netc-write-test");
    std::fs::write(&probe, b"ok").map_err(|e| {
        TrainError::Setup(format!(
            "output folder {} is not writable: {e}",
            out.display()
        ))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(lock)
}

/// An exclusive advisory lock on `<out>/.netc-lock`: a second run into the same folder is
/// refused (two runs used to interleave their metrics lines and replace each other's
/// checkpoints). The file keeps the holder's process id for the message.
fn lock_out(out: &Path) -> Result<std::fs::File, TrainError> {
    use std::io::{Seek, Write as _};
    let path = out.join(".netc-lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| TrainError::Setup(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(TrainError::Setup(format!(
                "another netc run{} is writing to {}; wait for it, or use --out for another folder",
                match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                },
                out.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(TrainError::Setup(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// The signal that stopped the run (SIGINT 2, SIGHUP 1, SIGTERM 15), 0 while none has.
static STOP_SIGNAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The flag the training loops poll: set by Ctrl-C (SIGINT) and, on Unix, by SIGTERM (kill,
/// a scheduler's timeout) and SIGHUP (the terminal went away), all of which checkpoint and
/// stop the run instead of losing what it did since the last checkpoint.
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let f = Arc::new(AtomicBool::new(false));
        let g = f.clone();
        let _ = ctrlc::set_handler(move || {
            let _ = STOP_SIGNAL.compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst);
            if g.swap(true, Ordering::SeqCst) {
                // A second interrupt: stop now. Checkpoints are written atomically, so this
                // loses at most the steps since the last one.
                eprintln!("\ninterrupted again: stopping without a checkpoint");
                std::process::exit(130);
            }
        });
        #[cfg(unix)]
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
            // A second TERM or HUP, with the flag already set, takes the default action: the
            // process ends at once (a checkpoint write is atomic, so nothing is corrupted).
            let _ = signal_hook::flag::register_conditional_default(sig, f.clone());
            let _ = signal_hook::flag::register(sig, f.clone());
            let _ = register_signal_number(sig);
        }
        f
    })
    .clone()
}

/// Remembers which signal arrived first, for the exit status.
#[cfg(unix)]
fn register_signal_number(sig: i32) -> std::io::Result<()> {
    // SAFETY: the handler does one atomic compare-exchange, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(sig, move || {
            let _ =
                STOP_SIGNAL.compare_exchange(0, sig as usize, Ordering::SeqCst, Ordering::SeqCst);
        })
    }
    .map(|_| ())
}

/// The signal that stopped the run, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}

struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    /// Opens the run's metrics; resuming from step `resumed`, the rows logged after that step
    /// (the part of the run the checkpoint does not hold, which is trained again) are dropped
    /// first, so no step appears twice.
    fn open(out: &Path, resumed: Option<u64>) -> Result<Metrics, TrainError> {
        let path = out.join("metrics.jsonl");
        let append = resumed.is_some();
        if let (Some(step), Ok(text)) = (resumed, std::fs::read_to_string(&path)) {
            let keep: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            if keep.len() != text.len() {
                io::write_atomic(&path, keep.as_bytes())?;
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&path)
            .map_err(|e| TrainError::Setup(format!("cannot write {}: {e}", path.display())))?;
        Ok(Metrics { file })
    }
    /// One row: `kind` says which (`train` for a log interval, `epoch` for an evaluated
    /// epoch); counters are written as integers.
    fn log(&mut self, kind: &str, m: &BTreeMap<String, f64>) -> Result<(), TrainError> {
        let mut row = serde_json::Map::new();
        row.insert("kind".into(), kind.into());
        for (k, &v) in m {
            let counter = matches!(k.as_str(), "step" | "epoch") && v >= 0.0 && v.fract() == 0.0;
            let value = if counter {
                serde_json::Value::from(v as u64)
            } else {
                serde_json::Value::from(v)
            };
            row.insert(k.clone(), value);
        }
        let line = serde_json::Value::Object(row).to_string();
        writeln!(self.file, "{line}")
            .map_err(|e| TrainError::Setup(format!("cannot write metrics: {e}")))?;
        Ok(())
    }
}

/// Reads metrics.jsonl back (for plots and tests): the numeric fields of each row.
pub fn read_metrics(out: &Path) -> Vec<BTreeMap<String, f64>> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).ok())
        .map(|row| {
            row.into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                .collect()
        })
        .collect()
}

/// "12.3 ms/step, 81.3 steps/s" for a rate in steps per second (empty before the first step).
fn step_rate(per_sec: f64) -> String {
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return String::new();
    }
    let ms = 1e3 / per_sec;
    if ms >= 1e3 {
        format!("{:.2} s/step", ms / 1e3)
    } else {
        format!("{ms:.1} ms/step, {per_sec:.1} steps/s")
    }
}

/// A loss or other figure for a log line: four decimals in the usual range, and scientific
/// notation where fixed point would print twenty digits or only zeros.
pub fn figure(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-3..1e5).contains(&a) {
        format!("{x:.4}")
    } else {
        format!("{x:.4e}")
    }
}

/// A progress bar over `total` steps headed `prefix` (hidden when not on a terminal).
/// A learning rate for the epoch line: five significant digits at most, `1e-2` rather than
/// `9.910934720625748e-3`'s sixteen.
fn rate(lr: f64) -> String {
    let t = format!("{lr:.4e}");
    match t.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => t,
    }
}

fn bar(total: u64, progress: bool, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(total).with_prefix(prefix);
    if !progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    // indicatif's own {per_sec} reads "236.7729/s"; a step rate and its inverse say more.
    let style = ProgressStyle::with_template(
        "{prefix} {bar:30} {pos}/{len} steps  {msg}  {rate}  ETA {eta}",
    )
    .map(|st| {
        st.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", step_rate(state.per_sec()));
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

/// The SHA-256 of the model file's text, so a checkpoint says which version of a model it was
/// trained from.
fn model_sha256(model: &Model) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(model.source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// torch.optim's names for an optimizer's per-weight state, by the number of slots netc keeps
/// (SGD: the velocity; Adam: the two moments).
fn slot_names(slots: usize) -> &'static [&'static str] {
    match slots {
        1 => &["momentum_buffer"],
        2 => &["exp_avg", "exp_avg_sq"],
        _ => &[],
    }
}

/// Where a weight goes in a checkpoint: named as a PyTorch module's state_dict of the same
/// network would name it (`hidden.weight`), with the network's name as a prefix only where
/// the file holds several networks (a GAN's `generator.hidden.weight`).
fn weight_key(prefix: Option<&str>, name: &str) -> String {
    match prefix {
        Some(net) => format!("{net}.{name}"),
        None => name.to_string(),
    }
}

/// Optimizer state sits apart from the weights, under `optimizer.`, named as torch.optim
/// names it (`optimizer.hidden.weight.exp_avg`), so the weights alone are a state_dict.
fn state_key(weight: &str, slot: &str) -> String {
    format!("{OPTIMIZER_GROUP}{weight}.{slot}")
}

/// The prefix of the optimizer-state tensors in a checkpoint.
pub const OPTIMIZER_GROUP: &str = "optimizer.";

/// Puts a network's weights, state and (for trained tensors) optimizer state into `ck`.
/// `passes` is how many training passes the network ran: a batchnorm layer's
/// `num_batches_tracked`, which a PyTorch BatchNorm has among its buffers (so a strict
/// `load_state_dict` needs it; netc's running averages use the momentum, not the count).
fn save_params(
    ck: &mut Checkpoint,
    prefix: Option<&str>,
    (p, st): (&Params<f32>, &OptState<f32>),
    passes: u64,
) {
    let names = slot_names(st.slots.len());
    for (i, name) in p.names.iter().enumerate() {
        let key = weight_key(prefix, name);
        if p.trainable[i] {
            for (slot, label) in st.slots.iter().zip(names) {
                ck.tensors
                    .push((state_key(&key, label), p.shapes[i].clone(), slot[i].clone()));
            }
        }
        if let Some(layer) = name.strip_suffix(".running_var") {
            ck.tensors.push((
                weight_key(prefix, &format!("{layer}.num_batches_tracked")),
                vec![],
                vec![passes as f32],
            ));
        }
        ck.tensors
            .push((key, p.shapes[i].clone(), p.values[i].clone()));
    }
}

/// Loads a network's weights from a checkpoint (and its optimizer state when present). The
/// weight is looked up as `name` (a one-network checkpoint), `net.name` (one of several) and,
/// for checkpoints of earlier netc versions, `net/name` with state `net/name.optN`. A tensor
/// of the network's in the checkpoint that the network does not have (a layer removed, a
/// bias turned off) is an error too: the checkpoint was written from another model, and
/// dropping the tensor silently would run a different network than the one trained.
pub fn load_params(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
    slots: usize,
) -> Result<(Params<f32>, OptState<f32>), TrainError> {
    load_params_with(ck, net, like, slots, true)
}

/// [`load_params`] for `train --weights` (fine-tuning, transfer): the checkpoint may hold
/// tensors the network does not use.
pub fn load_weights_for_transfer(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
) -> Result<Params<f32>, TrainError> {
    Ok(load_params_with(ck, net, like, 0, false)?.0)
}

fn load_params_with(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
    slots: usize,
    strict: bool,
) -> Result<(Params<f32>, OptState<f32>), TrainError> {
    let mut p = like.clone();
    let mut st = OptState {
        slots: vec![like.values.iter().map(|v| vec![0.0; v.len()]).collect(); slots],
        step: 0,
    };
    // Every missing or mis-shaped tensor is named, not only the first.
    let mut problems = vec![];
    let mut used: Vec<String> = vec![];
    for (i, name) in like.names.iter().enumerate() {
        let candidates = [
            weight_key(None, name),
            weight_key(Some(&net.name), name),
            format!("{}/{name}", net.name),
        ];
        let Some((key, (shape, data))) = candidates
            .iter()
            .find_map(|k| ck.get(k).map(|t| (k.clone(), t)))
        else {
            problems.push(format!("no tensor `{}`", candidates[0]));
            continue;
        };
        if shape != like.shapes[i].as_slice() {
            problems.push(format!(
                "`{key}` is {shape:?} in the checkpoint but {:?} in network `{}`",
                like.shapes[i], net.name
            ));
            continue;
        }
        if data.iter().any(|v| !v.is_finite()) {
            problems.push(format!("`{key}` holds NaN or infinite values"));
            continue;
        }
        p.values[i] = data.to_vec();
        used.push(key.clone());
        let legacy = key.contains('/');
        for (s, slot) in st.slots.iter_mut().enumerate() {
            let skey = if legacy {
                format!("{key}.opt{s}")
            } else {
                state_key(&key, slot_names(slots)[s])
            };
            if let Some((shape, d)) = ck.get(&skey) {
                if shape != like.shapes[i].as_slice() {
                    return Err(TrainError::Setup(format!(
                        "optimizer state `{skey}` does not match the weight's shape"
                    )));
                }
                slot[i] = d.to_vec();
            }
        }
    }
    if strict {
        // The network's namespace in the file: `net.` when its tensors are prefixed, else
        // every weight (a one-network checkpoint).
        let prefix = format!("{}.", net.name);
        let prefixed = used.iter().any(|k| k.starts_with(&prefix));
        for (name, _, _) in &ck.tensors {
            let ours = if prefixed {
                name.starts_with(&prefix)
            } else {
                !name.contains('/')
            };
            if ours
                && !name.starts_with(OPTIMIZER_GROUP)
                && !name.ends_with(".num_batches_tracked")
                && !used.contains(name)
            {
                problems.push(format!(
                    "the checkpoint has `{name}`, which the network does not"
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(TrainError::Setup(format!(
            "the checkpoint does not fit network `{}` ({} of {} tensors): {}",
            net.name,
            problems.len(),
            like.names.len(),
            problems.join("; ")
        )));
    }
    Ok((p, st))
}

/// A checkpoint's optimizer state only carries over to the same optimizer.
fn check_optimizer(ck: &Checkpoint, now: String) -> Result<(), TrainError> {
    match ck.metadata.get("optimizer") {
        Some(was) if *was != now => Err(TrainError::Setup(format!(
            "the checkpoint was trained with {was} but the model now says {now}; its optimizer state cannot carry over (start a new run with another --out)"
        ))),
        _ => Ok(()),
    }
}

/// A counter the checkpoint must carry to be resumed (a missing or garbled step used to
/// restart silently at step 0 with the trained weights).
fn meta_u64(ck: &Checkpoint, key: &str) -> Result<u64, TrainError> {
    let v = ck.metadata.get(key).ok_or_else(|| {
        TrainError::Setup(format!(
            "cannot resume: the checkpoint has no `{key}` in its metadata"
        ))
    })?;
    v.parse().map_err(|_| {
        TrainError::Setup(format!(
            "cannot resume: the checkpoint's `{key}` is `{v}`, not a count"
        ))
    })
}

fn meta_f64(ck: &Checkpoint, key: &str, default: f64) -> f64 {
    ck.metadata
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn slots(opt: &netc_compiler::schedule::Optimizer) -> usize {
    match opt {
        netc_compiler::schedule::Optimizer::Sgd { .. } => 1,
        netc_compiler::schedule::Optimizer::Adam { .. } => 2,
    }
}

/// What a run trains on.
enum RunData<'m> {
    Classifier(&'m Network, ClassifierData),
    Gan(
        &'m netc_compiler::train_config::GanConfig,
        (Dataset, Dataset, Option<String>),
    ),
}

/// Runs the training the model's section describes. `log` receives one line per event worth
/// telling the user (epoch results, notes).
pub fn run(
    model: &Model,
    cfg: &TrainConfig,
    opts: &Options,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    // Signal handlers first: from here on a signal checkpoints and stops instead of killing.
    interrupt_flag();
    let ck_path = opts.out.join("checkpoint.safetensors");
    // A resumed image-folder run prepares images with the normalisation it recorded; the
    // checkpoint is read for that before the folder is locked, and again (with its errors)
    // after, so a run already in the folder is reported as such first.
    let dir = opts.data_dir.as_deref();
    let peek = if opts.resume
        && (cfg.data == "images" || dir.is_some_and(data::folder::looks_like_image_folder))
    {
        Checkpoint::load(&ck_path).ok()
    } else {
        None
    };
    let data = match &cfg.task {
        Task::Classifier { network } => {
            let net = model
                .network(network)
                .ok_or_else(|| TrainError::Setup(format!("no network `{network}`")))?;
            let recorded = peek.as_ref().map_or(Recorded::Nothing, Recorded::Resume);
            let d = classifier_data(model, cfg, net, dir, opts.progress, recorded)?;
            // The peeked checkpoint is read again below; do not hold two copies.
            drop(peek);
            RunData::Classifier(net, d)
        }
        Task::Gan(g) => RunData::Gan(g, datasets(model, cfg, dir)?),
    };
    let _lock = prepare_out(&opts.out, opts.resume, opts.overwrite)?;
    let resume = if opts.resume {
        Some(
            Checkpoint::load(&ck_path)
                .map_err(|e| TrainError::Setup(format!("cannot resume: {e}")))?,
        )
    } else {
        None
    };
    let notes = match &data {
        RunData::Classifier(_, d) => d.notes.clone(),
        RunData::Gan(_, (_, _, note)) => note.iter().cloned().collect(),
    };
    for n in notes {
        log(&format!("note: {n}"));
    }
    let (exec, device) = executor(&opts.device)?;
    log(&format!("device: {device}"));
    let mut summary = match data {
        RunData::Classifier(net, d) => classifier(model, net, cfg, opts, exec, &d, resume, log)?,
        RunData::Gan(g, (train, _, _)) => {
            let gn = model
                .network(&g.generator)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", g.generator)))?;
            let dn = model
                .network(&g.discriminator)
                .ok_or_else(|| TrainError::Setup(format!("no network `{}`", g.discriminator)))?;
            gan(model, gn, dn, cfg, opts, exec, &train, resume, log)?
        }
    };
    summary.device = device;
    Ok(summary)
}

pub(crate) fn onehot(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut y = vec![0f32; labels.len() * classes];
    for (r, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            y[r * classes + l as usize] = 1.0;
        }
    }
    y
}

/// A split's images must be what the network takes, and there must be some: checked for
/// every split before training starts (a 32x32 test split used to fail only at the first
/// evaluation, losing the epoch, and an empty one to evaluate to "loss 0, top-1 0%").
pub fn check_images(net: &Network, set: &Dataset, split: &str) -> Result<(), TrainError> {
    let want: u64 = net.graph[net.inputs[0]].shape.iter().product();
    if set.n == 0 {
        return Err(TrainError::Setup(format!(
            "the {split} split has no images"
        )));
    }
    if set.image_len() as u64 != want {
        return Err(TrainError::Setup(format!(
            "the {split} images are {}x{}x{} ({} values) but network `{}` takes {} ({want} values)",
            set.channels,
            set.rows,
            set.cols,
            set.image_len(),
            net.name,
            netc_compiler::ast::shape_str(&net.graph[net.inputs[0]].shape)
        )));
    }
    Ok(())
}

/// [`check_images`] for any [`Source`], and its labels against the network's outputs.
pub fn check_source(net: &Network, set: &Source, split: &str) -> Result<(), TrainError> {
    let want: u64 = net.graph[net.inputs[0]].shape.iter().product();
    if set.is_empty() {
        return Err(TrainError::Setup(format!(
            "the {split} split has no images"
        )));
    }
    let (c, h, w) = set.shape();
    if set.image_len() as u64 != want {
        return Err(TrainError::Setup(format!(
            "the {split} images are {c}x{h}x{w} ({} values) but network `{}` takes {} ({want} values)",
            set.image_len(),
            net.name,
            netc_compiler::ast::shape_str(&net.graph[net.inputs[0]].shape)
        )));
    }
    let outputs: u64 = net
        .outputs
        .first()
        .map(|o| net.graph[o.1].shape.iter().product())
        .ok_or_else(|| TrainError::Setup("the network has no output".into()))?;
    if let Some(classes) = set.classes() {
        if classes.len() as u64 != outputs {
            return Err(TrainError::Setup(format!(
                "the image folder has {} classes ({}) but network `{}` has {outputs} outputs (one per class)",
                classes.len(),
                short_list(classes),
                net.name
            )));
        }
    } else if let Some(top) = set.max_label() {
        if top as u64 >= outputs {
            return Err(TrainError::Setup(format!(
                "the {split} data has label {top} but network `{}` has {outputs} outputs (one per class)",
                net.name
            )));
        }
    }
    Ok(())
}

/// The first few names of a list, and how many more.
fn short_list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(", ... {} more", names.len() - 5));
    }
    s
}

/// Test-set loss, top-1 and top-5 accuracy, summed on the executor a batch at a time and read
/// once at the end.
pub fn evaluate(s: &mut Classifier, test: &Source) -> Result<(f64, f64, f64), TrainError> {
    check_source(&s.net, test, "test")?;
    let views = test.views();
    let order = in_order(test.len(), s.batch, views);
    if views == 1 {
        s.take_eval_stats()?;
        for b in test.batches(0, order) {
            let b = b?;
            s.eval_batch(&b.images, &onehot(&b.labels, s.classes))?;
        }
        let st = s.take_eval_stats()?;
        let n = st.rows.max(1.0);
        return Ok((st.loss / n, st.correct / n, st.top5 / n));
    }
    // Several views per image (ten-crop): their softmax outputs are averaged, as the paper
    // averages the ten patches' predictions, so the sums are made here.
    let (mut loss, mut top1, mut top5, mut n) = (0f64, 0f64, 0f64, 0f64);
    let len = test.image_len();
    for b in test.batches(0, order) {
        let b = b?;
        let mut logits = Vec::with_capacity(b.labels.len() * views * s.classes);
        for rows in b.images.chunks(s.batch * len) {
            logits.extend(s.logits(rows)?);
        }
        for (k, &label) in b.labels.iter().enumerate() {
            let p = mean_softmax(
                &logits[k * views * s.classes..(k + 1) * views * s.classes],
                s.classes,
            );
            let pl = p[label as usize];
            loss -= pl.max(1e-30).ln();
            let above = p.iter().filter(|&&q| q > pl).count();
            top1 += (above == 0) as u8 as f64;
            top5 += (above < 5) as u8 as f64;
            n += 1.0;
        }
    }
    let n = n.max(1.0);
    Ok((loss / n, top1 / n, top5 / n))
}

/// `0..n` in batches of whole examples whose `views` rows each fit a batch of `batch` rows.
pub fn in_order(n: usize, batch: usize, views: usize) -> Vec<Vec<usize>> {
    let idx: Vec<usize> = (0..n).collect();
    idx.chunks((batch / views).max(1))
        .map(|c| c.to_vec())
        .collect()
}

/// The mean over rows of the softmax of each row of `logits` (`classes` per row), in f64.
pub fn mean_softmax(logits: &[f32], classes: usize) -> Vec<f64> {
    let mut p = vec![0f64; classes];
    let rows = logits.len() / classes;
    for row in logits.chunks(classes) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (q, &v) in p.iter_mut().zip(row) {
            *q += (v as f64 - m).exp() / z / rows as f64;
        }
    }
    p
}

#[allow(clippy::too_many_arguments)]
fn classifier(
    model: &Model,
    net: &Network,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    data: &ClassifierData,
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let (train, test) = (&data.train, &data.test);
    let batch = cfg.batch as usize;
    check_source(net, train, "training")?;
    check_source(net, test, "test")?;
    if train.len() < batch {
        return Err(TrainError::Setup(format!(
            "the batch ({batch}) is larger than the training set ({} images)",
            train.len()
        )));
    }
    let steps_per_epoch = (train.len() / batch) as u64;
    let epochs = match cfg.length {
        Length::Epochs(e) => e,
        Length::Steps(s) => s.div_ceil(steps_per_epoch),
    };
    let total_steps = match cfg.length {
        Length::Epochs(e) => e
            .checked_mul(steps_per_epoch)
            .ok_or_else(|| TrainError::Setup(format!("{e} epochs is too many steps to count")))?,
        Length::Steps(s) => s,
    };
    crate::memory::ensure_training(net, cfg.batch as usize, slots(&cfg.optimizer.kind), 4)?;
    let mut init: Params<f32> = Params::init(net, &mut Rng::new(cfg.seed));
    if let Some(w) = &start_weights(opts)? {
        init = load_weights_for_transfer(w, net, &init)?;
    }
    let mut s = Classifier::new(net, init.clone(), cfg.optimizer.kind, batch, cfg.seed, exec)?;
    let mut lr = cfg.optimizer.lr;
    let (mut best, mut bad_epochs) = (f64::INFINITY, 0u64);
    if let Some(ck) = &resume {
        check_optimizer(ck, format!("{:?}", cfg.optimizer.kind))?;
        let (p, mut st) = load_params(ck, net, &init, slots(&cfg.optimizer.kind))?;
        st.step = meta_u64(ck, "step")?;
        s.restore(&p, &st);
        // The schedule's factor is restored, so a --lr given on resume still applies.
        lr *= meta_f64(ck, "lr_scale", 1.0);
        best = meta_f64(ck, "best_test_loss", best);
        bad_epochs = meta_u64(ck, "bad_epochs").unwrap_or(0);
        log(&format!(
            "resumed from {} at step {}",
            opts.out.join("checkpoint.safetensors").display(),
            s.step
        ));
        nothing_left(s.step, total_steps, "")?;
    }
    let mut metrics = Metrics::open(&opts.out, resume.as_ref().map(|_| s.step))?;
    let stop = interrupt_flag();
    // One bar per epoch, as Keras shows it, cleared for the epoch's summary line.
    let mut pb = bar(0, false, String::new());
    let t0 = Instant::now();
    let start_step = s.step;
    let shuffler = Shuffler::new(train.len(), cfg.seed);
    let mut last_good: Option<PathBuf> = if resume.is_some() {
        Some(opts.out.join("checkpoint.safetensors"))
    } else {
        None
    };
    let mut summary = Summary::default();
    let mut reported_failures = 0;
    let save =
        |s: &Classifier, epoch: u64, lr: f64, best: f64, bad: u64| -> Result<PathBuf, TrainError> {
            let mut ck = Checkpoint {
                tensors: vec![],
                metadata: BTreeMap::new(),
            };
            let params = s.params()?;
            if let Some(t) = nonfinite_tensor(&params) {
                return Err(TrainError::NonFiniteWeights {
                    tensor: t.to_string(),
                    step: s.step,
                });
            }
            save_params(&mut ck, None, (&params, &s.opt_state()?), s.step);
            for (k, v) in [
                ("step", s.step.to_string()),
                ("epoch", epoch.to_string()),
                ("lr", format!("{lr:e}")),
                ("lr_scale", format!("{:e}", lr / cfg.optimizer.lr)),
                ("best_test_loss", format!("{best:e}")),
                ("bad_epochs", bad.to_string()),
                ("seed", cfg.seed.to_string()),
                ("model", model.file_name.clone()),
                ("model_sha256", model_sha256(model)),
                ("network", net.name.clone()),
                ("task", "classifier".into()),
                ("optimizer", format!("{:?}", cfg.optimizer.kind)),
            ] {
                ck.metadata.insert(k.to_string(), v);
            }
            // An image folder's class names and normalisation, for eval, predict and resume.
            ck.metadata
                .extend(data.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
            let path = opts.out.join("checkpoint.safetensors");
            ck.save(&path)?;
            Ok(path)
        };
    let mut last_read = s.step;
    'outer: for epoch in (s.step / steps_per_epoch)..epochs {
        let epoch_t0 = Instant::now();
        let order = shuffler.order(epoch);
        let mut epoch_stats = LossStats::default();
        // Time the step spent waiting for its batch: about 0 when the loader keeps up.
        let mut data_wait = 0f64;
        let eval_due = (epoch + 1) % cfg.eval_every == 0 || epoch + 1 == epochs;
        // The last interval's row of an evaluated epoch goes into the epoch's row, so no step
        // is logged twice.
        let mut last_interval = BTreeMap::new();
        let first = s.step - epoch * steps_per_epoch;
        pb = bar(
            steps_per_epoch.min(total_steps - epoch * steps_per_epoch),
            opts.progress,
            format!("epoch {}/{epochs}", epoch + 1),
        );
        pb.set_position(first);
        let last = steps_per_epoch.min(first + total_steps.saturating_sub(s.step));
        let planned: Vec<Vec<usize>> = (first as usize..last as usize)
            .map(|b| order[b * batch..(b + 1) * batch].to_vec())
            .collect();
        // An image folder's batches are decoded ahead on background threads.
        let mut batches = train.batches(epoch, planned);
        for b in first..steps_per_epoch {
            if s.step >= total_steps {
                break;
            }
            let waited = Instant::now();
            let next = batches.next();
            data_wait += waited.elapsed().as_secs_f64();
            let got = match next {
                Some(Ok(got)) => got,
                Some(Err(e)) => {
                    // Keep what was trained: checkpoint at this step, then stop on the file.
                    pb.abandon();
                    if s.step > start_step {
                        let path = save(&s, epoch, lr, best, bad_epochs)?;
                        log(&format!(
                            "stopped at step {} on a file that cannot be read: checkpoint written to {}; fix or remove the file (or set bad_images = skip) and continue with --resume",
                            s.step,
                            path.display()
                        ));
                    }
                    return Err(e.into());
                }
                None => break,
            };
            // A per-step schedule (Caffe's inv) scales the learning rate at every step.
            let step_lr = lr * cfg.schedule.step_factor(s.step);
            s.train_step(&got.images, &onehot(&got.labels, s.classes), step_lr)?;
            pb.inc(1);
            let end_of_epoch = b + 1 == steps_per_epoch || s.step >= total_steps;
            if s.step % cfg.log_every == 0 || end_of_epoch || stop.load(Ordering::SeqCst) {
                let st = s.take_stats()?;
                epoch_stats.add(st);
                let mean = st.loss / st.rows.max(1.0);
                if !mean.is_finite() {
                    pb.abandon();
                    return Err(TrainError::NonFinite {
                        what: "loss",
                        step: s.step,
                        since: last_read,
                        first: s.nonfinite_at,
                        loss: mean,
                        checkpoint: last_good,
                    });
                }
                last_read = s.step;
                pb.set_message(format!(
                    "loss {} acc {:.2}% (at step {})",
                    figure(mean),
                    100.0 * st.correct / st.rows.max(1.0),
                    s.step
                ));
                let mut m = BTreeMap::new();
                m.insert("step".to_string(), s.step as f64);
                m.insert("epoch".to_string(), (epoch + 1) as f64);
                m.insert("train_loss".to_string(), mean);
                m.insert("train_acc".to_string(), st.correct / st.rows.max(1.0));
                m.insert("lr".to_string(), step_lr);
                if end_of_epoch && eval_due {
                    last_interval = m;
                } else {
                    metrics.log("train", &m)?;
                    plot(&opts.out, CLASSIFIER_PLOT)?;
                }
            }
            // Interrupted inside an epoch: checkpoint and stop now. On its last batch, finish
            // the epoch (evaluation, schedule) first, so a resume starts cleanly at the next.
            if stop.load(Ordering::SeqCst) && !end_of_epoch {
                save(&s, epoch, lr, best, bad_epochs)?;
                pb.abandon_with_message("interrupted");
                log(&format!(
                    "interrupted at step {}: checkpoint written to {}; continue with --resume",
                    s.step,
                    opts.out.join("checkpoint.safetensors").display()
                ));
                summary.interrupted = true;
                break 'outer;
            }
        }
        pb.finish_and_clear();
        drop(batches);
        if eval_due {
            let (tl, t1, t5) = match evaluate(&mut s, test) {
                Ok(r) => r,
                Err(e) => {
                    // A file that cannot be read among the evaluation images: keep the epoch.
                    if matches!(e, TrainError::Data(_)) {
                        let path = save(&s, epoch, lr, best, bad_epochs)?;
                        log(&format!(
                            "stopped evaluating after epoch {}: checkpoint written to {}",
                            epoch + 1,
                            path.display()
                        ));
                    }
                    return Err(e);
                }
            };
            if !tl.is_finite() {
                return Err(TrainError::NonFinite {
                    what: "test loss",
                    step: s.step,
                    since: s.step,
                    first: None,
                    loss: tl,
                    checkpoint: last_good,
                });
            }
            let tr_loss = epoch_stats.loss / epoch_stats.rows.max(1.0);
            let tr_acc = epoch_stats.correct / epoch_stats.rows.max(1.0);
            let tr_top5 = epoch_stats.top5 / epoch_stats.rows.max(1.0);
            let mut m = std::mem::take(&mut last_interval);
            m.insert("step".to_string(), s.step as f64);
            m.insert("epoch".to_string(), (epoch + 1) as f64);
            m.insert("epoch_train_loss".to_string(), tr_loss);
            m.insert("epoch_train_acc".to_string(), tr_acc);
            m.insert("test_loss".to_string(), tl);
            m.insert("test_acc".to_string(), t1);
            // One reading of each clock for the log and the line, so the two agree.
            let (own, all) = (epoch_t0.elapsed().as_secs_f64(), t0.elapsed().as_secs_f64());
            m.insert("seconds".to_string(), all);
            m.insert("epoch_seconds".to_string(), own);
            m.insert("data_wait_seconds".to_string(), data_wait);
            // Top-5 only says something when there are more than five classes.
            let (train_top5, test_top5) = if s.classes > 5 {
                m.insert("epoch_train_top5".to_string(), tr_top5);
                m.insert("test_top5".to_string(), t5);
                (
                    format!(", top-5 {:.2}%", 100.0 * tr_top5),
                    format!(", top-5 {:.2}%", 100.0 * t5),
                )
            } else {
                (String::new(), String::new())
            };
            metrics.log("epoch", &m)?;
            plot(&opts.out, CLASSIFIER_PLOT)?;
            pb.suspend(|| {
                log(&format!(
                    "epoch {}/{epochs}: train loss {}, train acc {:.2}%{train_top5} | test loss {}, test acc {:.2}%{test_top5} | lr {} | {:.1} s ({:.1} s in all)",
                    epoch + 1,
                    figure(tr_loss),
                    100.0 * tr_acc,
                    figure(tl),
                    100.0 * t1,
                    rate(lr * cfg.schedule.step_factor(s.step)),
                    own,
                    all
                ))
            });
            summary.final_metrics = m;
            // The plateau schedule watches the test loss, so it counts evaluations.
            match cfg.schedule {
                Schedule::Constant | Schedule::Step { .. } | Schedule::Inv { .. } => {}
                Schedule::Plateau { factor, patience } => {
                    if tl < best {
                        best = tl;
                        bad_epochs = 0;
                    } else {
                        bad_epochs += 1;
                        if bad_epochs > patience {
                            lr *= factor;
                            bad_epochs = 0;
                        }
                    }
                }
            }
        }
        if let Schedule::Step { every, factor } = cfg.schedule {
            if (epoch + 1) % every == 0 {
                lr *= factor;
            }
        }
        let failed: Vec<_> = train.failed().into_iter().chain(test.failed()).collect();
        if failed.len() > reported_failures {
            let (p, why) = &failed[reported_failures];
            log(&format!(
                "left out {} image(s) that failed to decode (bad_images = skip), e.g. {}: {why}",
                failed.len() - reported_failures,
                p.display()
            ));
            reported_failures = failed.len();
        }
        let interrupted = stop.load(Ordering::SeqCst);
        if interrupted || (cfg.checkpoint_every > 0 && (epoch + 1) % cfg.checkpoint_every == 0) {
            last_good = Some(save(&s, epoch + 1, lr, best, bad_epochs)?);
        }
        if interrupted {
            pb.abandon_with_message("interrupted");
            log(&format!(
                "interrupted after epoch {}: checkpoint written to {}; continue with --resume",
                epoch + 1,
                opts.out.join("checkpoint.safetensors").display()
            ));
            summary.interrupted = true;
            break;
        }
        if s.step >= total_steps {
            break;
        }
    }
    pb.finish_and_clear();
    if !summary.interrupted {
        save(&s, s.step / steps_per_epoch, lr, best, bad_epochs)?;
    }
    if opts.profile {
        match s.gpu_program() {
            Some((prog, pass)) => profile_lines(prog, pass, "training step")?
                .iter()
                .for_each(|l| log(l)),
            None => {
                log("--profile: the CPU executor runs no kernels; use netc bench for its step time")
            }
        }
    }
    plot(&opts.out, CLASSIFIER_PLOT)?;
    summary.steps = s.step - start_step;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// The (step, `key`) points of metrics.jsonl.
fn curve(all: &[BTreeMap<String, f64>], key: &str) -> Vec<(f64, f64)> {
    all.iter()
        .filter_map(|m| Some((*m.get("step")?, *m.get(key)?)))
        .collect()
}

/// One panel of loss.png: its title, the y axis's title and its curves (label, metrics key).
type PanelSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// A panel's curves read from the metrics: (label, points).
type Curves = Vec<(&'static str, Vec<(f64, f64)>)>;

/// loss.png from the run's metrics so far: a panel per spec, side by side, against the step
/// (a panel whose curves have no points yet is left out). Redrawn (atomically) after every
/// classifier evaluation and GAN log interval, so it can be watched during training.
fn plot(out: &Path, specs: &[PanelSpec]) -> Result<(), TrainError> {
    let all = read_metrics(out);
    let curves: Vec<Curves> = specs
        .iter()
        .map(|(_, _, series)| series.iter().map(|&(l, k)| (l, curve(&all, k))).collect())
        .collect();
    let panels: Vec<io::Panel> = specs
        .iter()
        .zip(&curves)
        .filter(|(_, c)| c.iter().any(|(_, pts)| !pts.is_empty()))
        .map(|(&(title, y_label, _), c)| io::Panel {
            title,
            y_label,
            series: c.iter().map(|(l, pts)| (*l, pts.as_slice())).collect(),
        })
        .collect();
    if panels.is_empty() {
        return Ok(());
    }
    let width = 460 * panels.len() as u32;
    io::write_chart(&out.join("loss.png"), "step", &panels, width, 400)?;
    Ok(())
}

const CLASSIFIER_PLOT: &[PanelSpec] = &[
    (
        "loss",
        "softmax cross-entropy",
        &[("train", "train_loss"), ("test", "test_loss")],
    ),
    (
        "accuracy",
        "top-1",
        &[("train", "train_acc"), ("test", "test_acc")],
    ),
];
const GAN_PLOT: &[PanelSpec] = &[
    (
        "losses",
        "binary cross-entropy",
        &[("D", "d_loss"), ("G", "g_loss")],
    ),
    (
        "discriminator",
        "mean probability of real",
        &[("D(x)", "d_x"), ("D(G(z))", "d_g_z")],
    ),
    (
        "sample quality (built-in LeNet)",
        "inception score",
        &[("IS", "inception_score")],
    ),
    (
        "distance to real digits",
        "Frechet distance",
        &[("FID", "frechet_distance")],
    ),
];

fn draw_noise(rng: &mut Rng, noise: Noise, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match noise {
            Noise::Uniform { low, high } => rng.uniform(low, high) as f32,
            Noise::Normal { mean, std } => (mean + std * rng.normal()) as f32,
        })
        .collect()
}

/// Samples a GAN run scores at each sample interval (and real images it compares them with).
const SCORE_SAMPLES: usize = 1000;

/// `count` samples of a trained generator on the CPU reference (evaluation mode: batchnorm
/// with its running statistics), noise drawn as the training section says from `seed`, mapped
/// from the training `range` to [0, 1] as a data set's pixels; 500 at a time, so memory does
/// not grow with the count.
pub fn generate(
    gn: &Network,
    p: &Params<f32>,
    (noise, range): (Noise, (f64, f64)),
    count: usize,
    seed: u64,
) -> Result<Vec<f32>, TrainError> {
    let out = gn
        .outputs
        .first()
        .map(|o| o.1)
        .ok_or_else(|| TrainError::Setup(format!("generator `{}` has no output", gn.name)))?;
    let nz: usize = gn.graph[gn.inputs[0]].shape.iter().product::<u64>() as usize;
    let per: u128 = gn.graph[out].shape.iter().map(|&d| d as u128).product();
    crate::memory::ensure(
        4 * (count as u128 * per + crate::memory::training_bytes(gn, 500, 0, 1)),
        || format!("{count} samples of generator `{}`", gn.name),
    )?;
    let mut rng = Rng::new(seed);
    let mut images = Vec::new();
    let (lo, span) = (range.0, range.1 - range.0);
    let mut left = count;
    while left > 0 {
        let rows = left.min(500);
        let z = draw_noise(&mut rng, noise, rows * nz);
        let zv = ndarray::ArrayView2::from_shape((rows, nz), &z)
            .map_err(|e| TrainError::Setup(e.to_string()))?;
        let acts = cpu::forward(gn, p, zv, false, 0).map_err(RunError::from)?;
        images.extend(
            acts.get(out)
                .iter()
                .map(|&v| ((v as f64 - lo) / span) as f32),
        );
        left -= rows;
    }
    Ok(images)
}

/// The image shape of a generator's output: CxHxW, or a square of a flat vector.
pub fn image_shape(net: &Network) -> (usize, usize, usize) {
    let out = net
        .outputs
        .first()
        .map(|o| o.1)
        .unwrap_or(net.order[net.order.len() - 1]);
    let s: Vec<usize> = net.graph[out].shape.iter().map(|&d| d as usize).collect();
    match s.as_slice() {
        [c, h, w] => (*c, *h, *w),
        [n] => {
            let side = (*n as f64).sqrt() as usize;
            if side * side == *n {
                (1, side, side)
            } else {
                (1, 1, *n)
            }
        }
        _ => (1, 1, s.iter().product()),
    }
}

#[allow(clippy::too_many_arguments)]
fn gan(
    model: &Model,
    gn: &Network,
    dn: &Network,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    train: &Dataset,
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let Task::Gan(g) = &cfg.task else {
        return Err(TrainError::Setup("not a GAN".into()));
    };
    let batch = cfg.batch as usize;
    if train.n < batch {
        return Err(TrainError::Setup(format!(
            "the batch ({batch}) is larger than the training set ({} images)",
            train.n
        )));
    }
    let total = match cfg.length {
        Length::Steps(s) => s,
        Length::Epochs(e) => {
            e.checked_mul((train.n / batch) as u64).ok_or_else(|| {
                TrainError::Setup(format!("{e} epochs is too many steps to count"))
            })? / g.k
        }
    };
    let (need_g, need_d) = (
        crate::memory::training_bytes(gn, batch, slots(&g.g_optimizer.kind), 4),
        crate::memory::training_bytes(dn, 2 * batch, slots(&g.d_optimizer.kind), 4),
    );
    crate::memory::ensure(need_g + need_d, || {
        format!(
            "training GAN `{}` / `{}` at batch {batch}",
            gn.name, dn.name
        )
    })?;
    let mut rng = Rng::new(cfg.seed);
    let mut gp: Params<f32> = Params::init(gn, &mut rng);
    let mut dp: Params<f32> = Params::init(dn, &mut rng);
    if let Some(w) = &start_weights(opts)? {
        gp = load_weights_for_transfer(w, gn, &gp)?;
        dp = load_weights_for_transfer(w, dn, &dp)?;
    }
    let loss = if g.non_saturating {
        GeneratorLoss::NonSaturating
    } else {
        GeneratorLoss::Minimax
    };
    let mut s = Gan::new(
        gn,
        dn,
        gp.clone(),
        dp.clone(),
        g.g_optimizer.kind,
        g.d_optimizer.kind,
        loss,
        batch,
        cfg.seed,
        exec,
    )?;
    if s.data != train.image_len() {
        return Err(TrainError::Setup(format!(
            "the generator makes {} values per sample but the images have {}",
            s.data,
            train.image_len()
        )));
    }
    // Real-batch position: an index into the shuffled order of the current data epoch.
    let shuffler = Shuffler::new(train.n, cfg.seed);
    let per_epoch = train.n / batch;
    let mut d_batches: u64 = 0;
    let mut noise_rng = Rng::new(cfg.seed ^ 0x5EED);
    if let Some(ck) = &resume {
        check_optimizer(
            ck,
            format!("{:?} / {:?}", g.g_optimizer.kind, g.d_optimizer.kind),
        )?;
        let (g1, mut gs) = load_params(ck, gn, &gp, slots(&g.g_optimizer.kind))?;
        let (d1, mut ds) = load_params(ck, dn, &dp, slots(&g.d_optimizer.kind))?;
        gs.step = meta_u64(ck, "g_step")?;
        ds.step = meta_u64(ck, "d_step")?;
        s.restore(&g1, &d1, &gs, &ds);
        d_batches = meta_u64(ck, "d_batches")?;
        noise_rng = ck
            .metadata
            .get("noise_rng")
            .and_then(|v| Rng::from_state_string(v))
            .ok_or_else(|| {
                TrainError::Setup("checkpoint lacks the noise generator state".into())
            })?;
        log(&format!("resumed at generator step {}", s.step_g));
        nothing_left(s.step_g, total, "generator ")?;
    }
    let mut metrics = Metrics::open(&opts.out, resume.as_ref().map(|_| s.step_g))?;
    let samples_dir = opts.out.join("samples");
    std::fs::create_dir_all(&samples_dir)
        .map_err(|e| TrainError::Setup(format!("cannot create {}: {e}", samples_dir.display())))?;
    let fixed = draw_noise(&mut Rng::new(cfg.seed ^ 0xF1_4ED), g.noise, 64 * s.noise);
    // Grids show what the data set holds (its images are channels x rows x cols).
    let (c, h, w) = if s.data == train.image_len() {
        (train.channels, train.rows, train.cols)
    } else {
        image_shape(gn)
    };
    // Sample quality at each sample interval, by the built-in digit classifier, when the
    // generator makes images of its input's size (28x28): against the features of the first
    // training images, mapped back to [0, 1] as the classifier was trained.
    let scoring = match crate::score::Scorer::builtin() {
        Ok(sc) if sc.image_len == s.data => {
            let n = SCORE_SAMPLES.min(train.n);
            let (lo, span) = (cfg.range.0 as f32, (cfg.range.1 - cfg.range.0) as f32);
            let real: Vec<f32> = train.images[..n * s.data]
                .iter()
                .map(|&v| (v - lo) / span)
                .collect();
            let out = sc
                .outputs(&real)
                .map_err(|e| TrainError::Setup(format!("scoring the real images: {e}")))?;
            Some((sc, out))
        }
        _ => None,
    };
    // Samples drawn in the data's range: a tanh generator's [-1, 1] as black to white.
    let grid = io::Grid {
        range: (cfg.range.0 as f32, cfg.range.1 as f32),
        ..io::Grid::of(batch.min(64), (c, h, w))
    };
    let stop = interrupt_flag();
    // A bar per log interval (Keras's per-epoch bar for a run counted in steps), its summary
    // line printed when it ends.
    let interval_bar = |from: u64| {
        let to = ((from / cfg.log_every + 1) * cfg.log_every).min(total);
        let pb = bar(
            to - from,
            opts.progress,
            format!("steps {}-{to}/{total}", from + 1),
        );
        pb
    };
    let mut pb = interval_bar(s.step_g);
    let t0 = Instant::now();
    let start = s.step_g;
    let mut last_good: Option<PathBuf> = resume
        .as_ref()
        .map(|_| opts.out.join("checkpoint.safetensors"));
    let (mut xb, mut lb) = (vec![], vec![]);
    let mut summary = Summary::default();
    let mut window_t = Instant::now();
    let mut window_steps = 0u64;
    let save = |s: &Gan, d_batches: u64, noise_rng: &Rng| -> Result<PathBuf, TrainError> {
        let mut ck = Checkpoint {
            tensors: vec![],
            metadata: BTreeMap::new(),
        };
        let (gp, dp) = s.params()?;
        if let Some(t) = nonfinite_tensor(&gp).or(nonfinite_tensor(&dp)) {
            return Err(TrainError::NonFiniteWeights {
                tensor: t.to_string(),
                step: s.step_g,
            });
        }
        let (gs, ds) = s.opt_states()?;
        // G runs in training mode in each D step and each G step; D twice in a D step (the
        // reals and the fakes) and once in a G step.
        let (g_passes, d_passes) = (s.step_d + s.step_g, 2 * s.step_d + s.step_g);
        save_params(&mut ck, Some(&gn.name), (&gp, &gs), g_passes);
        save_params(&mut ck, Some(&dn.name), (&dp, &ds), d_passes);
        for (k, v) in [
            ("g_step", s.step_g.to_string()),
            ("d_step", s.step_d.to_string()),
            ("d_batches", d_batches.to_string()),
            ("noise_rng", noise_rng.state_string()),
            ("seed", cfg.seed.to_string()),
            ("model", model.file_name.clone()),
            ("model_sha256", model_sha256(model)),
            ("task", "gan".into()),
            (
                "optimizer",
                format!("{:?} / {:?}", g.g_optimizer.kind, g.d_optimizer.kind),
            ),
        ] {
            ck.metadata.insert(k.to_string(), v);
        }
        let path = opts.out.join("checkpoint.safetensors");
        ck.save(&path)?;
        Ok(path)
    };
    let write_samples = |s: &mut Gan| -> Result<(), TrainError> {
        let step = s.step_g;
        let imgs = s.sample(&fixed[..batch.min(64) * s.noise])?;
        io::write_image_grid(
            &samples_dir.join(format!("step_{step:06}.png")),
            &imgs,
            &grid,
        )?;
        Ok(())
    };
    let mut last_read = s.step_g;
    while s.step_g < total {
        for _ in 0..g.k {
            let epoch = d_batches / per_epoch as u64;
            let b = (d_batches % per_epoch as u64) as usize;
            let order = shuffler.order(epoch);
            train.gather(&order[b * batch..(b + 1) * batch], &mut xb, &mut lb);
            let z = draw_noise(&mut noise_rng, g.noise, batch * s.noise);
            s.d_step(&xb, &z, g.d_optimizer.lr)?;
            d_batches += 1;
        }
        let z = draw_noise(&mut noise_rng, g.noise, batch * s.noise);
        s.g_step(&z, g.g_optimizer.lr)?;
        pb.inc(1);
        window_steps += 1;
        let interrupted = stop.load(Ordering::SeqCst);
        let checkpoint_due = cfg.checkpoint_every > 0 && s.step_g % cfg.checkpoint_every == 0;
        // Losses are read (and checked for NaN) before any checkpoint, so one is never written
        // from diverged weights.
        if s.step_g % cfg.log_every == 0 || s.step_g == total || interrupted || checkpoint_due {
            let st = s.take_stats()?;
            let d_loss = st.d.loss / (st.d.rows / 2.0).max(1.0);
            let g_bce = st.g.loss / st.g.rows.max(1.0);
            let g_loss = if g.non_saturating { g_bce } else { -g_bce };
            let (dx, dgz) = s.d_means()?;
            if !d_loss.is_finite() || !g_loss.is_finite() {
                pb.abandon();
                let (what, bad) = if d_loss.is_finite() {
                    ("generator loss", g_loss)
                } else {
                    ("discriminator loss", d_loss)
                };
                return Err(TrainError::NonFinite {
                    what,
                    step: s.step_g,
                    since: last_read,
                    first: s.nonfinite_at,
                    loss: bad,
                    checkpoint: last_good,
                });
            }
            last_read = s.step_g;
            let dt = window_t.elapsed().as_secs_f64();
            let per100 = if window_steps > 0 {
                dt / window_steps as f64 * 100.0
            } else {
                0.0
            };
            window_t = Instant::now();
            window_steps = 0;
            let mut m = BTreeMap::new();
            m.insert("step".to_string(), s.step_g as f64);
            m.insert("d_loss".to_string(), d_loss);
            m.insert("g_loss".to_string(), g_loss);
            m.insert("d_x".to_string(), dx);
            m.insert("d_g_z".to_string(), dgz);
            m.insert("seconds_per_100_steps".to_string(), per100);
            m.insert("seconds".to_string(), t0.elapsed().as_secs_f64());
            metrics.log("train", &m)?;
            plot(&opts.out, GAN_PLOT)?;
            pb.finish_and_clear();
            log(&format!("step {}/{total}: D loss {}, G loss {}, D(x) {dx:.3}, D(G(z)) {dgz:.3}, {per100:.2} s/100 steps", s.step_g, figure(d_loss), figure(g_loss)));
            if s.step_g < total && !interrupted {
                pb = interval_bar(s.step_g);
                pb.set_message(format!(
                    "last: D {} G {} D(x) {dx:.2} D(G(z)) {dgz:.2}",
                    figure(d_loss),
                    figure(g_loss)
                ));
            }
            summary.final_metrics = m;
        }
        if g.sample_every > 0 && s.step_g % g.sample_every == 0 {
            write_samples(&mut s)?;
            if let Some((scorer, real)) = &scoring {
                let (gp, _) = s.params()?;
                let imgs = generate(gn, &gp, (g.noise, cfg.range), SCORE_SAMPLES, cfg.seed)?;
                let sc = scorer
                    .score(&imgs, Some(real))
                    .map_err(|e| TrainError::Setup(format!("scoring the samples: {e}")))?;
                let mut m = BTreeMap::new();
                m.insert("step".to_string(), s.step_g as f64);
                m.insert("inception_score".to_string(), sc.inception_score);
                m.insert("confident".to_string(), sc.confident);
                if let Some(f) = sc.fid {
                    m.insert("frechet_distance".to_string(), f);
                }
                metrics.log("score", &m)?;
                log(&format!(
                    "step {}: inception score {:.3}, confident {:.1}%, Frechet distance {:.3} ({SCORE_SAMPLES} samples, the built-in LeNet)",
                    s.step_g,
                    sc.inception_score,
                    100.0 * sc.confident,
                    sc.fid.unwrap_or(f64::NAN)
                ));
            }
        }
        if checkpoint_due {
            last_good = Some(save(&s, d_batches, &noise_rng)?);
        }
        if interrupted {
            save(&s, d_batches, &noise_rng)?;
            pb.abandon_with_message("interrupted");
            log(&format!(
                "interrupted at step {}: checkpoint written; continue with --resume",
                s.step_g
            ));
            summary.interrupted = true;
            break;
        }
    }
    pb.finish_and_clear();
    if opts.profile {
        match s.gpu_program() {
            Some((prog, d_pass, g_pass)) => {
                profile_lines(prog, d_pass, "discriminator step")?
                    .iter()
                    .for_each(|l| log(l));
                profile_lines(prog, g_pass, "generator step")?
                    .iter()
                    .for_each(|l| log(l));
            }
            None => log("--profile: the CPU executor runs no kernels"),
        }
    }
    if !summary.interrupted {
        save(&s, d_batches, &noise_rng)?;
        write_samples(&mut s)?;
        io::write_image_grid(
            &opts.out.join("samples.png"),
            &s.sample(&fixed[..batch.min(64) * s.noise])?,
            &grid,
        )?;
    }
    plot(&opts.out, GAN_PLOT)?;
    summary.steps = s.step_g - start;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::{figure, rate, step_rate};

    #[test]
    fn figures_stay_readable_at_any_scale() {
        assert_eq!(figure(0.2345678), "0.2346");
        assert_eq!(figure(0.0), "0.0000");
        // was printed as 117019788811415109632.0000
        assert_eq!(figure(117019788811415109632.0), "1.1702e20");
        assert_eq!(figure(2.5e-6), "2.5000e-6");
        assert_eq!(figure(f64::NAN), "NaN");
        assert_eq!(step_rate(236.7729), "4.2 ms/step, 236.8 steps/s");
        assert_eq!(step_rate(0.5), "2.00 s/step");
        assert_eq!(step_rate(0.0), "");
        assert_eq!(rate(9.910934720625748e-3), "9.9109e-3");
        assert_eq!(rate(0.01), "1e-2");
        assert_eq!(rate(5e-4), "5e-4");
    }
}
