//! `netc predict`: a trained classifier's top classes for image files and IDX image sets.
//!
//! Images are prepared as evaluation prepared them in training: resized as the training
//! section says (for a network trained on IDX images, the shorter side to its input),
//! centre-cropped (or the ten
//! crops, averaged, with `eval_crops = 10`), converted to the network's channels, and
//! normalised with the figures the checkpoint recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netc_compiler::ir::Network;
use netc_compiler::train_config::{BadImages, TrainConfig};

use crate::data::folder::{self, FolderSet, Item, Needs};
use crate::data::{self, Source};
use crate::io::Checkpoint;
use crate::session::Classifier;
use crate::train::{mean_softmax, TrainError};

/// One input's name and its top classes (index, probability), best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub name: String,
    pub top: Vec<(usize, f64)>,
}

/// Whether `path` names an IDX images file (MNIST's `t10k-images-idx3-ubyte[.gz]`).
fn is_idx(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains("-ubyte"))
}

/// The class names a checkpoint recorded (an image folder's), if any.
pub fn class_names(ck: &Checkpoint) -> Option<Vec<String>> {
    serde_json::from_str(ck.metadata.get("classes")?).ok()
}

/// The inputs as sources, each with the names of its examples: runs of image files become one
/// image set, each IDX file its own.
pub fn sources(
    cfg: &TrainConfig,
    net: &Network,
    ck: &Checkpoint,
    paths: &[PathBuf],
) -> Result<Vec<(Source, Vec<String>)>, TrainError> {
    let mut out = vec![];
    let mut images: Vec<PathBuf> = vec![];
    // A network trained on an image folder sees IDX images through the same pipeline.
    let folder_trained = ck.metadata.contains_key("image_mean");
    for p in paths {
        if is_idx(p) {
            if !images.is_empty() {
                out.push(image_set(cfg, net, ck, std::mem::take(&mut images))?);
            }
            let (px, n, rows, cols) = data::read_idx_images(p)?;
            let names = (0..n).map(|i| format!("{}[{i}]", p.display())).collect();
            let d = if folder_trained {
                let (src, _) = image_set(cfg, net, ck, vec![])?;
                let Source::Folder(set) = src else {
                    unreachable!("image_set makes a folder set")
                };
                idx_through_pipeline(&set, &px, n, (rows, cols))?
            } else {
                let mut d = data::Dataset::from_bytes(&px, vec![0; n], rows, cols);
                d.rescale(cfg.range);
                d
            };
            let src = Source::Memory(d);
            crate::train::check_source(net, &src, "IDX")?;
            out.push((src, names));
        } else {
            images.push(p.clone());
        }
    }
    if !images.is_empty() {
        out.push(image_set(cfg, net, ck, images)?);
    }
    Ok(out)
}

/// IDX images prepared as the folder pipeline's evaluation prepares images (one view each;
/// the centre crop).
fn idx_through_pipeline(
    set: &FolderSet,
    px: &[u8],
    n: usize,
    (rows, cols): (usize, usize),
) -> Result<data::Dataset, TrainError> {
    let (c, h, w) = (set.needs.channels, set.needs.size.0, set.needs.size.1);
    let len = set.view_len();
    let mut images = vec![0f32; n * len];
    let centre = FolderSet {
        eval_crops: 1,
        ..set.clone_settings()
    };
    for i in 0..n {
        let img = image::GrayImage::from_raw(
            cols as u32,
            rows as u32,
            px[i * rows * cols..(i + 1) * rows * cols].to_vec(),
        )
        .ok_or_else(|| TrainError::Setup("IDX image of the wrong size".into()))?;
        let p = centre
            .fit(image::DynamicImage::ImageLuma8(img))
            .map_err(|e| TrainError::Setup(format!("IDX image {i}: {e}")))?;
        centre.prepare(0, i, &p, &mut images[i * len..(i + 1) * len]);
    }
    Ok(data::Dataset {
        images,
        labels: vec![0; n],
        n,
        channels: c,
        rows: h,
        cols: w,
        augment: None,
    })
}

fn image_set(
    cfg: &TrainConfig,
    net: &Network,
    ck: &Checkpoint,
    paths: Vec<PathBuf>,
) -> Result<(Source, Vec<String>), TrainError> {
    let (c, h, w) = input_image(net, ck)?;
    for p in &paths {
        folder::check_file(p)?;
    }
    let list = |k: &str| -> Option<Vec<f32>> {
        let v: Vec<f64> = serde_json::from_str(ck.metadata.get(k)?).ok()?;
        Some(v.into_iter().map(|x| x as f32).collect())
    };
    let norm = match (list("image_mean"), list("image_std")) {
        (Some(mean), Some(std)) if mean.len() == c && std.len() == c => {
            crate::data::augment::Normalise {
                range: (cfg.range.0 as f32, cfg.range.1 as f32),
                mean,
                std,
            }
        }
        // Trained on IDX data or with given figures: the training section's.
        _ => folder::normalise(&cfg.images, c, cfg.range, None)?,
    };
    let names = paths.iter().map(|p| p.display().to_string()).collect();
    let set = FolderSet {
        items: paths
            .into_iter()
            .map(|path| Item { path, label: 0 })
            .collect(),
        classes: vec![],
        needs: Needs {
            channels: c,
            size: (h, w),
        },
        train: false,
        // As evaluation in training resized: the section's `resize`; a network trained on an
        // image folder without one crops images as they are; one trained on IDX images (all
        // of its input's size) sees a photo scaled to that size first.
        resize: match (cfg.images.resize, ck.metadata.contains_key("image_mean")) {
            (Some(r), _) => Some(r as u32),
            (None, true) => None,
            (None, false) => Some(h.max(w) as u32),
        },
        random_crop: false,
        flip: false,
        norm,
        jitter: None,
        eval_crops: cfg.images.eval_crops as usize,
        bad_images: BadImages::Stop,
        seed: 0,
        failed: Default::default(),
    };
    Ok((Source::Folder(Arc::new(set)), names))
}

/// The image a network takes: its CxHxW input, or for a flat input (the MLP's 784) the shape
/// of the IDX images it was trained on, which the checkpoint records, when the sizes agree:
/// the pixels in CHW order are exactly the flat vector it trained on. Otherwise the error
/// says what to declare.
fn input_image(net: &Network, ck: &Checkpoint) -> Result<(usize, usize, usize), TrainError> {
    let shape = &net.graph[net.inputs[0]].shape;
    if shape.len() == 3 {
        return crate::train::image_input(net);
    }
    let n: u64 = shape.iter().product();
    let declared = netc_compiler::ast::shape_str(shape);
    let recorded = crate::data::record::recorded_shape(&ck.metadata);
    if let Some((c, h, w)) = recorded {
        if (c * h * w) as u64 == n && (c == 1 || c == 3) {
            return Ok((c, h, w));
        }
    }
    let why = match recorded {
        Some((c, h, w)) => format!(
            "the checkpoint records training images of {c}x{h}x{w} ({} values)",
            c * h * w
        ),
        None => "the checkpoint does not record the shape of the images it was trained on (an earlier netc's, or trained on synthetic data)".into(),
    };
    Err(TrainError::Setup(format!(
        "network `{}` takes {declared} values, not an image, and {why}; to classify image files, declare its input as an image, `input {}: {}`, with `flatten ->` before its first dense layer, and train again",
        net.name,
        net.graph[net.inputs[0]].name,
        image_suggestion(n)
    )))
}

/// An image shape with `n` values: 1xSxS or 3xSxS where one fits, else the general form.
fn image_suggestion(n: u64) -> String {
    for c in [1u64, 3] {
        let side = ((n / c) as f64).sqrt().round() as u64;
        if n.is_multiple_of(c) && side * side == n / c && side > 0 {
            return format!("{c}x{side}x{side}");
        }
    }
    format!("CxHxW with C*H*W = {n}")
}

/// The `k` most probable classes of every example of `src`.
pub fn predict(
    s: &mut Classifier,
    src: &Source,
    k: usize,
) -> Result<Vec<Vec<(usize, f64)>>, TrainError> {
    let views = src.views();
    let order = crate::train::in_order(src.len(), s.batch, views);
    let len = src.image_len();
    let mut out = vec![];
    for b in src.batches(0, order) {
        let b = b?;
        let mut logits = vec![];
        for rows in b.images.chunks(s.batch * len) {
            logits.extend(s.logits(rows)?);
        }
        for row in logits.chunks(views * s.classes) {
            let p = mean_softmax(row, s.classes);
            let mut ranked: Vec<(usize, f64)> = p.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(k);
            out.push(ranked);
        }
    }
    Ok(out)
}
