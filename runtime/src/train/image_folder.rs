//! A classifier's examples from an image folder: the folder indexed and checked against the
//! network, its two pipelines (training views and evaluation views), and the metadata a
//! checkpoint records to prepare images the same way later (the held-out split, the class
//! names, the normalisation and colour components).

use super::{image_input, short_list, ClassifierData, Recorded, TrainError};
use crate::data::augment::{Normalise, Pca};
use crate::data::folder::{self, FolderSet, Index, Needs, Stats};
use crate::data::Source;
use crate::io::run_checkpoint::meta_list;
use crate::io::Checkpoint;
use netc_compiler::ir::Network;
use netc_compiler::train_config::{ChannelStat, ImageConfig, TrainConfig};
use std::collections::BTreeMap;
use std::path::Path;

/// Indexes an image folder and builds its two pipelines (training views and evaluation views).
pub(super) fn image_folder(
    cfg: &TrainConfig,
    net: &Network,
    dir: &Path,
    progress: bool,
    recorded: Recorded,
) -> Result<ClassifierData, TrainError> {
    if cfg.images.crop_padding > 0 {
        return Err(TrainError::Setup(format!(
            "{}: crop_padding is for IDX data; an image folder's crops come from `resize` and `crop = random`",
            dir.display()
        )));
    }
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
    let needs = Needs {
        channels: c,
        size: (h, w),
    };
    let eval_only = matches!(recorded, Recorded::Evaluate(_));
    let ix = index_folder(
        net,
        dir,
        ic,
        needs,
        (split_seed, progress, eval_only),
        stored,
    )?;
    let mut notes = folder_notes(dir, &ix);
    let set = |items, train: bool| FolderSet {
        items,
        classes: ix.classes.clone(),
        needs,
        train,
        resize: ic.resize.map(|r| r as u32),
        random_crop: ic.random_crop,
        flip: ic.flip,
        norm: Normalise {
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
    let (norm, pca) = normalisation(cfg, ic, (&train, c), stored, &mut notes)?;
    if ic.color_jitter > 0.0 {
        train.jitter = pca.clone().map(|p| (ic.color_jitter as f32, p));
    }
    let meta = pipeline_meta(&ix.classes, split_seed, ic, &norm, pca.as_ref());
    train.norm = norm.clone();
    test.norm = norm;
    Ok(ClassifierData {
        train: Source::Folder(std::sync::Arc::new(train)),
        test: Source::Folder(std::sync::Arc::new(test)),
        notes,
        meta,
    })
}

/// Indexes the folder (the split from `split_seed`) after checking that a resize leaves the
/// network's input whole, and checks its classes against the checkpoint's and the network's
/// outputs.
fn index_folder(
    net: &Network,
    dir: &Path,
    ic: &ImageConfig,
    needs: Needs,
    (split_seed, progress, eval_only): (u64, bool, bool),
    stored: Option<&Checkpoint>,
) -> Result<Index, TrainError> {
    let (h, w) = needs.size;
    if let Some(r) = ic.resize {
        if (r as usize) < h.max(w) {
            return Err(TrainError::Setup(format!(
                "resize = {r} makes the shorter side smaller than network `{}`'s {h}x{w} input; use at least {}",
                net.name,
                h.max(w)
            )));
        }
    }
    let ix = folder::index(dir, ic, needs, split_seed, (progress, eval_only))?;
    if let Some(then) = stored.and_then(|ck| ck.metadata.get("classes")) {
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
    // A network with no outputs here is a declared loss's (train/run.rs `images_first`):
    // its labels are ids, checked by the loss that reads them.
    if !net.outputs.is_empty() && ix.classes.len() as u64 != outputs {
        return Err(TrainError::Setup(format!(
            "the image folder {} has {} classes ({}) but network `{}` has {outputs} outputs (one per class): give its last layer {} units",
            dir.display(),
            ix.classes.len(),
            short_list(&ix.classes),
            net.name,
            ix.classes.len()
        )));
    }
    Ok(ix)
}

/// What to tell the user about the indexed folder.
fn folder_notes(dir: &Path, ix: &Index) -> Vec<String> {
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
    notes
}

/// The normalisation and colour components of the pipelines: those the checkpoint recorded,
/// else measured on the training images (with a note) where the configuration asks for it.
fn normalisation(
    cfg: &TrainConfig,
    ic: &ImageConfig,
    (train, c): (&FolderSet, usize),
    stored: Option<&Checkpoint>,
    notes: &mut Vec<String>,
) -> Result<(Normalise, Option<Pca>), TrainError> {
    let recorded =
        stored.and_then(|ck| Some((meta_list(ck, "image_mean")?, meta_list(ck, "image_std")?)));
    // The colour components a resumed run recorded (9 eigenvector entries, then 3 values).
    let recorded_pca = stored
        .and_then(|ck| meta_list(ck, "image_pca"))
        .and_then(|v| {
            (v.len() == 12).then(|| Pca {
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
        let st = folder::measure(train, cfg.seed)?;
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
        Some((mean, std)) if mean.len() == c && std.len() == c => Normalise {
            range: (cfg.range.0 as f32, cfg.range.1 as f32),
            mean: mean.iter().map(|&x| x as f32).collect(),
            std: std.iter().map(|&x| x as f32).collect(),
        },
        _ => folder::normalise(ic, c, cfg.range, stats.as_ref())?,
    };
    let pca = recorded_pca.or_else(|| stats.as_ref().and_then(|s: &Stats| s.pca.clone()));
    Ok((norm, pca))
}

/// What the checkpoint records of the pipeline, for eval, predict and resume.
fn pipeline_meta(
    classes: &[String],
    split_seed: u64,
    ic: &ImageConfig,
    norm: &Normalise,
    pca: Option<&Pca>,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert(
        "classes".to_string(),
        serde_json::to_string(classes).unwrap_or_default(),
    );
    meta.insert("split_seed".to_string(), split_seed.to_string());
    meta.insert("val_fraction".to_string(), ic.val_fraction.to_string());
    let json = |v: &[f32]| {
        serde_json::to_string(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap_or_default()
    };
    meta.insert("image_mean".to_string(), json(&norm.mean));
    meta.insert("image_std".to_string(), json(&norm.std));
    if let Some(p) = pca {
        let flat: Vec<f32> = p
            .eigenvectors
            .iter()
            .flatten()
            .chain(&p.eigenvalues)
            .copied()
            .collect();
        meta.insert("image_pca".to_string(), json(&flat));
    }
    meta
}

/// Up to three figures, short.
fn list3(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    format!("[{}]", parts.join(", "))
}
