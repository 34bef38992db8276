//! A run's data: the IDX folder or synthetic set (and a classifier's image folder, in
//! [`super::image_folder`]), checked against the network before any training.

use super::image_folder::image_folder;
use super::TrainError;
use crate::data::record::{self, DataRecord};
use crate::data::{self, DataError, Dataset, Source, Split};
use crate::io::Checkpoint;
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{Task, TrainConfig};
use std::collections::BTreeMap;
use std::path::Path;

/// What data is loaded for, so its note says only what applies: training a classifier (which
/// evaluates on held-out images), evaluating one, or training a GAN (which evaluates nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Train,
    Evaluate,
    Gan,
}

/// The training and evaluation images. A directory holding only the test split (the shipped
/// sample) is split 80/20 into training and evaluation images, and the caller is told what of
/// that concerns `purpose`.
pub fn load_data(
    dir: &Path,
    purpose: Purpose,
) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
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
    let (d, n, rest) = (dir.display(), all.n, all.n - cut);
    let note = match purpose {
        Purpose::Train => format!(
            "{d} has no training split: training on the first {cut} test images and evaluating on the other {rest}"
        ),
        Purpose::Evaluate => format!(
            "{d} has no training split: evaluating on the last {rest} of its {n} test images, which training held out"
        ),
        Purpose::Gan => format!(
            "{d} has no training split: the GAN trains on the first {cut} of its {n} test images"
        ),
    };
    Ok((part(0, cut), part(cut, all.n), Some(note)))
}

/// The training and test sets a run uses: the IDX folder `dir` when there is one, else (for
/// `data = synthetic`) a synthetic set shaped to the classifier's input and outputs.
pub fn datasets(
    model: &Model,
    cfg: &TrainConfig,
    dir: Option<&Path>,
    purpose: Purpose,
) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
    let (mut train, mut test, note) = unscaled_datasets(model, cfg, dir, purpose)?;
    for d in [&mut train, &mut test] {
        d.rescale(cfg.range);
    }
    Ok((train, test, note))
}

/// The training images' random crops and flips (`crop_padding`, `flip`), if asked for; the
/// padding is black, the low end of `range`.
fn idx_augment(cfg: &TrainConfig) -> Option<data::idx_augment::IdxAugment> {
    let ic = &cfg.images;
    (ic.crop_padding > 0 || ic.flip).then_some(data::idx_augment::IdxAugment {
        pad: ic.crop_padding as usize,
        flip: ic.flip,
        fill: cfg.range.0 as f32,
        seed: cfg.seed,
    })
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
    let mut d = if let Some(d) = dir.filter(images) {
        image_folder(cfg, net, d, progress, recorded)?
    } else {
        let purpose = match recorded {
            Recorded::Evaluate(_) => Purpose::Evaluate,
            Recorded::Nothing | Recorded::Resume(_) => Purpose::Train,
        };
        let (mut train, test, note) = datasets(model, cfg, dir, purpose)?;
        // IDX files only: synthetic data (AlexNet's stand-in) is not augmented.
        train.augment = dir.and_then(|_| idx_augment(cfg));
        let mut meta = BTreeMap::new();
        if dir.is_some() {
            // The IDX header's image shape, so `predict` can give a flat input an image.
            let shape = [train.channels, train.rows, train.cols];
            meta.insert(record::SHAPE_KEY.into(), format!("{shape:?}"));
        }
        ClassifierData {
            train: Source::Memory(train),
            test: Source::Memory(test),
            notes: note.into_iter().collect(),
            meta,
        }
    };
    if let Some(dir) = dir {
        DataRecord::of(dir)?.insert(&mut d.meta);
    }
    class_names(cfg, net, dir, &mut d)?;
    Ok(d)
}

/// The class names the checkpoint records: an image folder's folder names (which a `classes`
/// setting must repeat, if given), else the training section's `classes`, else the lines of
/// `classes.txt` beside the IDX files; one per output of the network.
fn class_names(
    cfg: &TrainConfig,
    net: &Network,
    dir: Option<&Path>,
    d: &mut ClassifierData,
) -> Result<(), TrainError> {
    if let Some(folders) = d.train.classes() {
        return match &cfg.classes {
            Some(named) if named.as_slice() != folders => Err(TrainError::Setup(format!(
                "training setting `classes` ({}) is not the image folder's classes ({}); an image folder's classes are its folder names, so leave `classes` out or list them in order",
                short_list(named),
                short_list(folders)
            ))),
            _ => Ok(()),
        };
    }
    let (names, from) = match (&cfg.classes, dir) {
        (Some(n), _) => (n.clone(), "training setting `classes`".to_string()),
        (None, Some(dir)) => match record::classes_file(dir)? {
            Some(n) => (n, dir.join("classes.txt").display().to_string()),
            None => return Ok(()),
        },
        (None, None) => return Ok(()),
    };
    let outputs: u64 = net
        .outputs
        .first()
        .map_or(0, |o| net.graph[o.1].shape.iter().product());
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = names.iter().find(|n| !seen.insert(*n)) {
        return Err(TrainError::Setup(format!(
            "{from} names class `{twice}` twice"
        )));
    }
    if names.len() as u64 != outputs {
        return Err(TrainError::Setup(format!(
            "{from} names {} classes ({}) but network `{}` has {outputs} outputs (one per class)",
            names.len(),
            short_list(&names),
            net.name
        )));
    }
    d.meta.insert(
        "classes".into(),
        serde_json::to_string(&names).unwrap_or_default(),
    );
    Ok(())
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
    pub(super) fn checkpoint(self) -> Option<&'a Checkpoint> {
        match self {
            Recorded::Nothing => None,
            Recorded::Resume(c) | Recorded::Evaluate(c) => Some(c),
        }
    }
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

/// The data sets with pixels in [0, 1].
fn unscaled_datasets(
    model: &Model,
    cfg: &TrainConfig,
    dir: Option<&Path>,
    purpose: Purpose,
) -> Result<(Dataset, Dataset, Option<String>), TrainError> {
    if let Some(dir) = dir {
        return load_data(dir, purpose);
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
    ensure_synthetic_fits(net, cfg, shape, classes)?;
    let (train, test) = data::synthetic(shape, classes as usize, cfg.batch as usize, cfg.seed);
    let note = format!(
        "synthetic data (data = synthetic): {} training and {} test images of {}x{}x{}, labelled with the first {} of {classes} classes, one noisy prototype per class",
        train.n, test.n, shape.0, shape.1, shape.2, (classes as usize).clamp(1, data::SYNTHETIC_CLASSES)
    );
    Ok((train, test, Some(note)))
}

/// The one memory check of a run on synthetic data, made before any of it is built: the data
/// set (both splits' images and labels, and the class prototypes) together with a training
/// step at the batch, in checked arithmetic. Building first used to abort ("memory allocation
/// of 247339200000 bytes failed") or spend a minute filling 6 GB before refusing.
fn ensure_synthetic_fits(
    net: &Network,
    cfg: &TrainConfig,
    (c, h, w): (usize, usize, usize),
    classes: u64,
) -> Result<(), TrainError> {
    let batch = cfg.batch.max(1) as u128;
    let images = batch * (data::SYNTHETIC_TRAIN_BATCHES + data::SYNTHETIC_TEST_BATCHES) as u128;
    let protos = classes.clamp(1, data::SYNTHETIC_CLASSES as u64) as u128;
    let len = (c as u128)
        .checked_mul(h as u128)
        .and_then(|v| v.checked_mul(w as u128));
    let step = crate::memory::training_bytes(
        net,
        cfg.batch as usize,
        crate::io::run_checkpoint::slots(&cfg.optimizer.kind),
        4,
    );
    // f32 pixels and u32 labels: 4 bytes each.
    let need = len
        .and_then(|len| (images + protos).checked_mul(len))
        .and_then(|px| px.checked_add(images))
        .and_then(|v| v.checked_mul(4))
        .and_then(|v| v.checked_add(step));
    let what = || {
        format!(
            "training network `{}` at batch {} on its synthetic data ({images} images of {c}x{h}x{w})",
            net.name, cfg.batch
        )
    };
    match need {
        // Past what can be addressed at all: refused even where free memory cannot be read.
        Some(n) if n <= isize::MAX as u128 => Ok(crate::memory::ensure(n, what)?),
        _ => Err(TrainError::Setup(format!(
            "{} needs more memory than can be addressed",
            what()
        ))),
    }
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
pub(super) fn short_list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(", ... {} more", names.len() - 5));
    }
    s
}
