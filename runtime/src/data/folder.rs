//! Image-folder data sets, in the layout torchvision's ImageFolder and ImageNet use: one
//! folder per class, under `train/` and `val/` (or `validation/`, `test/`), or directly under
//! the data folder, when a share of each class is held out for evaluation.
//!
//! Indexing lists the files and reads every header (size and colour channels, not the pixels),
//! so a file that is not an image, an image smaller than the crop or one with other channels
//! than the network's is reported by path before training starts. The pixels are decoded a
//! batch at a time by the loader ([`super::loader`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use netc_compiler::train_config::{BadImages, ChannelStat, ImageConfig};
use rayon::prelude::*;

use super::augment::{self, Normalise, Pca, Pixels};
use super::DataError;
use crate::rng::{mix64, Rng};

/// The file extensions read as images (any case).
pub const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The names a held-out split's folder may have, looked for in this order.
const VAL_NAMES: [&str; 3] = ["val", "validation", "test"];

/// At most this many training images are decoded to measure `mean = auto`, `std = auto` and
/// the colour components.
pub const STATS_SAMPLE: usize = 1000;

/// One image file and its class.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub path: PathBuf,
    pub label: u32,
}

/// The files of an image folder, split into training and evaluation images.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Sorted class folder names; a label is a position in this list.
    pub classes: Vec<String>,
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    /// Files that could not be read and were left out (`bad_images = skip`), with why.
    pub skipped: Vec<(PathBuf, String)>,
    /// Files without an image extension, ignored.
    pub ignored: usize,
    /// How the evaluation images were chosen, for the user.
    pub note: Option<String>,
}

/// Whether `dir` looks like an image folder: it has a subfolder and no IDX files.
pub fn looks_like_image_folder(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut any_dir = false;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains("-ubyte") {
            return false;
        }
        any_dir |= e.path().is_dir();
    }
    any_dir
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Entries left out of a folder: hidden ones (`.DS_Store`, `._x.jpg`, `.ipynb_checkpoints`)
/// and the resource folder macOS archives carry.
fn hidden(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX"
}

/// Sorted subfolders of `dir` (by name, as torchvision sorts classes).
fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut v = vec![];
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        if p.is_dir() && !hidden(&e.file_name().to_string_lossy()) {
            v.push((e.file_name().to_string_lossy().to_string(), p));
        }
    }
    v.sort();
    Ok(v)
}

/// Sorted image files directly in `dir`, and how many other files there were.
fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, usize), DataError> {
    let (mut v, mut other) = (vec![], 0);
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let p = e.path();
        if !p.is_file() || hidden(&e.file_name().to_string_lossy()) {
            continue;
        }
        let ext = p
            .extension()
            .map(|x| x.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if EXTENSIONS.contains(&ext.as_str()) {
            v.push(p);
        } else {
            other += 1;
        }
    }
    v.sort();
    Ok((v, other))
}

/// A class folder's name and image files.
type ClassFiles = (String, Vec<PathBuf>);

/// The class folders of `dir`: (name, files), every class with at least one image. Two
/// classes never share a name: a folder name that is not UTF-8 is refused (read lossily,
/// `cls\xff` and `cls\xfe` both became `cls\u{fffd}`, one class under two labels), and so is
/// any other repeat.
fn classes_in(dir: &Path, ignored: &mut usize) -> Result<Vec<ClassFiles>, DataError> {
    let mut out = vec![];
    let mut seen = BTreeSet::new();
    for (name, p) in subfolders(dir)? {
        if p.file_name().and_then(|n| n.to_str()).is_none() {
            return Err(DataError::Folder(format!(
                "class folder `{}` has a name that is not UTF-8 text: rename it (class names are recorded as text, and two such names could not be told apart)",
                p.display()
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(DataError::Folder(format!(
                "{} has two class folders named `{name}`",
                dir.display()
            )));
        }
        let (files, other) = image_files(&p)?;
        *ignored += other;
        if files.is_empty() {
            return Err(DataError::EmptyClass(p));
        }
        out.push((name, files));
    }
    if out.is_empty() {
        return Err(DataError::NoImages(dir.to_path_buf()));
    }
    Ok(out)
}

/// What the network needs of every image.
#[derive(Clone, Copy, Debug)]
pub struct Needs {
    pub channels: usize,
    /// The crop (the network's input height and width).
    pub size: (usize, usize),
}

/// Lists the folder, reads every header, and checks the images against `needs` and the
/// pipeline. `progress` shows a bar while it reads headers.
/// `eval_only` reads only the evaluation images' headers (an evaluation of a trained network
/// need not read a million training headers, nor fail on one of them).
pub fn index(
    dir: &Path,
    cfg: &ImageConfig,
    needs: Needs,
    seed: u64,
    (progress, eval_only): (bool, bool),
) -> Result<Index, DataError> {
    if !dir.is_dir() {
        return Err(DataError::DirNotFound(dir.to_path_buf()));
    }
    let mut ix = Index::default();
    let top = subfolders(dir)?;
    // The folder the evaluation images were held out of (no val/ folder), for the note.
    let mut held_from: Option<PathBuf> = None;
    let val_dir = VAL_NAMES.iter().find_map(|n| {
        top.iter()
            .find(|(name, _)| name == n)
            .map(|(_, p)| p.clone())
    });
    let train_dir = top
        .iter()
        .find(|(name, _)| name == "train")
        .map(|(_, p)| p.clone());
    let (train, val) = match (train_dir, val_dir) {
        (Some(t), Some(v)) => {
            let train = classes_in(&t, &mut ix.ignored)?;
            let val = classes_in(&v, &mut ix.ignored)?;
            let names: BTreeSet<&String> = train.iter().map(|c| &c.0).collect();
            if let Some((extra, _)) = val.iter().find(|c| !names.contains(&c.0)) {
                return Err(DataError::UnknownClass {
                    class: extra.clone(),
                    split: v.clone(),
                    train: t.clone(),
                });
            }
            (train, val)
        }
        (Some(t), None) => {
            held_from = Some(t.clone());
            held_out(classes_in(&t, &mut ix.ignored)?, cfg, seed)
        }
        (None, Some(v)) => {
            return Err(DataError::Folder(format!(
                "{} has a {} folder but no train/ folder beside it",
                dir.display(),
                v.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().to_string())
            )))
        }
        (None, None) => {
            held_from = Some(dir.to_path_buf());
            held_out(classes_in(dir, &mut ix.ignored)?, cfg, seed)
        }
    };
    ix.classes = train.iter().map(|c| c.0.clone()).collect();
    let label = |name: &str| ix.classes.iter().position(|c| c == name).unwrap_or(0) as u32;
    let items = |set: &[ClassFiles]| -> Vec<Item> {
        set.iter()
            .flat_map(|(name, files)| {
                let l = label(name);
                files.iter().map(move |p| Item {
                    path: p.clone(),
                    label: l,
                })
            })
            .collect()
    };
    let (train, val) = (items(&train), items(&val));
    let (train, val) = if eval_only {
        let (_, val) = check_headers(vec![], val, cfg, needs, progress, &mut ix.skipped)?;
        (train, val)
    } else {
        check_headers(train, val, cfg, needs, progress, &mut ix.skipped)?
    };
    if train.is_empty() {
        return Err(DataError::NoImages(dir.to_path_buf()));
    }
    if val.is_empty() {
        return Err(DataError::Folder(format!(
            "{}: no evaluation images (a class needs two images for one to be held out; add more, or a val/ folder)",
            dir.display()
        )));
    }
    // Counted after unreadable files were left out, as the summary line counts them.
    if let Some(d) = held_from {
        ix.note = Some(format!(
            "{} has no val/ folder: evaluating on {} images held out by the seed ({}% of each class, val_fraction)",
            d.display(),
            val.len(),
            (cfg.val_fraction * 100.0).round()
        ));
    }
    ix.train = train;
    ix.val = val;
    Ok(ix)
}

/// Holds out `val_fraction` of each class (at least one image of a class with two or more),
/// chosen by the seed, so every class is evaluated.
fn held_out(
    classes: Vec<ClassFiles>,
    cfg: &ImageConfig,
    seed: u64,
) -> (Vec<ClassFiles>, Vec<ClassFiles>) {
    let (mut train, mut val) = (vec![], vec![]);
    for (k, (name, mut files)) in classes.into_iter().enumerate() {
        Rng::new(mix64(seed ^ 0x00F0_1DE5) ^ mix64(k as u64)).shuffle(&mut files);
        let n = files.len();
        let cut = if n < 2 {
            0
        } else {
            ((n as f64 * cfg.val_fraction).round() as usize).clamp(1, n - 1)
        };
        let (v, t) = files.split_at(cut);
        let (mut v, mut t) = (v.to_vec(), t.to_vec());
        v.sort();
        t.sort();
        train.push((name.clone(), t));
        val.push((name, v));
    }
    (train, val)
}

type Checked = (Vec<Item>, Vec<Item>);

/// Reads every header in parallel; sorts out unreadable files, images with other channels than
/// the network's and images smaller than the crop.
fn check_headers(
    train: Vec<Item>,
    val: Vec<Item>,
    cfg: &ImageConfig,
    needs: Needs,
    progress: bool,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Checked, DataError> {
    let all: Vec<(bool, Item)> = train
        .into_iter()
        .map(|i| (true, i))
        .chain(val.into_iter().map(|i| (false, i)))
        .collect();
    let pb = ProgressBar::new(all.len() as u64);
    if !progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(st) = ProgressStyle::with_template("indexing {bar:30} {pos}/{len} images  ETA {eta}")
    {
        pb.set_style(st);
    }
    // `verify_images` decodes every file, so a cut one is found before training too.
    let headers: Vec<Result<(u32, u32, usize), String>> = all
        .par_iter()
        .map(|(_, it)| {
            let r = augment::probe(&it.path).and_then(|h| {
                if cfg.verify_images {
                    augment::decode(&it.path, h.2).map(|_| h)
                } else {
                    Ok(h)
                }
            });
            pb.inc(1);
            r
        })
        .collect();
    pb.finish_and_clear();
    let (mut bad, mut mixed, mut small) = (vec![], vec![], vec![]);
    let (mut train, mut val) = (vec![], vec![]);
    let min_side = cfg.resize;
    for ((is_train, it), h) in all.into_iter().zip(headers) {
        match h {
            Err(why) => bad.push((it.path, why)),
            Ok((w, h, c)) => {
                if c != needs.channels && !cfg.convert_channels {
                    mixed.push((it.path, c));
                    continue;
                }
                // With a resize the shorter side becomes `resize` (checked against the crop
                // with the model); without one the image itself must hold the crop.
                if min_side.is_none()
                    && ((h as usize) < needs.size.0 || (w as usize) < needs.size.1)
                {
                    small.push((it.path, w, h));
                    continue;
                }
                if is_train {
                    train.push(it)
                } else {
                    val.push(it)
                }
            }
        }
    }
    if !mixed.is_empty() {
        let (p, c) = &mixed[0];
        return Err(DataError::Channels {
            count: mixed.len(),
            first: p.clone(),
            found: *c,
            want: needs.channels,
        });
    }
    if !small.is_empty() {
        let (p, w, h) = &small[0];
        return Err(DataError::TooSmall {
            count: small.len(),
            first: p.clone(),
            size: (*w, *h),
            crop: needs.size,
        });
    }
    if !bad.is_empty() {
        match cfg.bad_images {
            BadImages::Stop => return Err(DataError::Unreadable(list_bad(&bad))),
            BadImages::Skip => skipped.extend(bad),
        }
    }
    Ok((train, val))
}

/// The first few unreadable files, one per line, and how many there are.
pub fn list_bad(bad: &[(PathBuf, String)]) -> String {
    let mut s = format!(
        "{} image file{} cannot be read (set `bad_images = skip` in the training section to leave them out):",
        bad.len(),
        if bad.len() == 1 { "" } else { "s" }
    );
    for (p, why) in bad.iter().take(10) {
        s.push_str(&format!("\n  {}: {why}", p.display()));
    }
    if bad.len() > 10 {
        s.push_str(&format!("\n  ... and {} more", bad.len() - 10));
    }
    s
}

/// The measured figures of the training images: per-channel mean and standard deviation of
/// pixels in [0, 1], and the principal components of their colours (for grey images, the
/// variance).
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub pca: Option<Pca>,
}

/// Measures [`Stats`] on up to [`STATS_SAMPLE`] training images chosen by the seed, each
/// resized and centre-cropped as evaluation sees it.
pub fn measure(set: &FolderSet, seed: u64) -> Result<Stats, DataError> {
    let mut order: Vec<usize> = (0..set.items.len()).collect();
    Rng::new(mix64(seed ^ 0x57A7)).shuffle(&mut order);
    order.truncate(STATS_SAMPLE);
    let c = set.needs.channels;
    // Per image: pixels, channel sums and the sums of products of channel pairs.
    type Sums = (f64, Vec<f64>, Vec<f64>);
    let parts: Vec<Option<Sums>> = order
        .par_iter()
        .map(|&i| {
            let p = set.pixels(i).ok()?;
            let crop = augment::centre_crop(&p, set.needs.size);
            let (h, w) = set.needs.size;
            let (mut sum, mut prod) = (vec![0f64; c], vec![0f64; c * c]);
            for y in 0..h {
                let row = &p.data[((crop.y + y) * p.width + crop.x) * c..];
                for x in 0..w {
                    let px = &row[x * c..x * c + c];
                    for a in 0..c {
                        let va = px[a] as f64 / 255.0;
                        sum[a] += va;
                        for b in 0..c {
                            prod[a * c + b] += va * px[b] as f64 / 255.0;
                        }
                    }
                }
            }
            Some(((h * w) as f64, sum, prod))
        })
        .collect();
    let (mut n, mut sum, mut prod) = (0f64, vec![0f64; c], vec![0f64; c * c]);
    for (k, s, p) in parts.into_iter().flatten() {
        n += k;
        sum.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
        prod.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    if n == 0.0 {
        return Err(DataError::Folder(
            "no training image could be decoded to measure the mean".into(),
        ));
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let cov = |a: usize, b: usize| prod[a * c + b] / n - mean[a] * mean[b];
    let std: Vec<f64> = (0..c).map(|a| cov(a, a).max(1e-12).sqrt()).collect();
    // Grey images have one component: the variance, along the one channel.
    let pca = if c == 3 {
        let m = nalgebra::Matrix3::from_fn(cov);
        let eig = nalgebra::SymmetricEigen::new(m);
        let mut order = [0usize, 1, 2];
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        Some(Pca {
            eigenvalues: order.map(|k| eig.eigenvalues[k].max(0.0) as f32),
            eigenvectors: std::array::from_fn(|i| order.map(|k| eig.eigenvectors[(i, k)] as f32)),
        })
    } else {
        Some(Pca {
            eigenvalues: [cov(0, 0).max(0.0) as f32, 0.0, 0.0],
            eigenvectors: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        })
    };
    Ok(Stats { mean, std, pca })
}

/// One split of an image folder with the pipeline that prepares its images.
#[derive(Debug)]
pub struct FolderSet {
    pub items: Vec<Item>,
    pub classes: Vec<String>,
    pub needs: Needs,
    /// Training views (random crop, flip, colour noise) or evaluation views (centre or ten).
    pub train: bool,
    pub resize: Option<u32>,
    pub random_crop: bool,
    pub flip: bool,
    pub norm: Normalise,
    /// Colour noise: its std and the components.
    pub jitter: Option<(f32, Pca)>,
    /// Views per evaluation image (1 or 10).
    pub eval_crops: usize,
    pub bad_images: BadImages,
    pub seed: u64,
    /// Files that failed to decode while loading, with why (each once).
    pub failed: Mutex<Vec<(PathBuf, String)>>,
}

impl FolderSet {
    /// Values per view.
    pub fn view_len(&self) -> usize {
        self.needs.channels * self.needs.size.0 * self.needs.size.1
    }

    /// Views per example: 1 in training, `eval_crops` in evaluation.
    pub fn views(&self) -> usize {
        if self.train {
            1
        } else {
            self.eval_crops
        }
    }

    /// The same pipeline over no images (for images that come from elsewhere).
    pub fn clone_settings(&self) -> FolderSet {
        FolderSet {
            items: vec![],
            classes: self.classes.clone(),
            norm: self.norm.clone(),
            jitter: self.jitter.clone(),
            failed: Default::default(),
            ..*self
        }
    }

    /// The image's pixels, converted and resized.
    pub fn pixels(&self, i: usize) -> Result<Pixels, String> {
        self.fit(augment::decode(&self.items[i].path, self.needs.channels)?)
    }

    /// A decoded image converted to the network's channels and resized as the pipeline says.
    pub fn fit(&self, img: image::DynamicImage) -> Result<Pixels, String> {
        let img = match (self.needs.channels, &img) {
            (1, image::DynamicImage::ImageLuma8(_)) | (3, image::DynamicImage::ImageRgb8(_)) => img,
            (1, _) => image::DynamicImage::ImageLuma8(img.to_luma8()),
            _ => image::DynamicImage::ImageRgb8(img.to_rgb8()),
        };
        let img = match self.resize {
            Some(s) => augment::resize_shorter(&img, s),
            None => img,
        };
        let p = augment::pixels(img);
        if p.height < self.needs.size.0 || p.width < self.needs.size.1 {
            return Err(format!(
                "{}x{} is smaller than the {}x{} crop",
                p.width, p.height, self.needs.size.1, self.needs.size.0
            ));
        }
        Ok(p)
    }

    /// Writes the views of image `i` for `epoch` into `out` (`views() * view_len()` values).
    pub fn load(&self, epoch: u64, i: usize, out: &mut [f32]) -> Result<(), String> {
        let p = self.pixels(i)?;
        self.prepare(epoch, i, &p, out);
        Ok(())
    }

    /// Writes the views of `p`, image `i` of the set, for `epoch`.
    pub fn prepare(&self, epoch: u64, i: usize, p: &Pixels, out: &mut [f32]) {
        let size = self.needs.size;
        let len = self.view_len();
        if self.train {
            let mut rng =
                Rng::new(mix64(self.seed ^ 0xA06_3E47) ^ mix64(epoch) ^ mix64(!(i as u64)));
            let crop = if self.random_crop {
                augment::random_crop(p, size, self.flip, &mut rng)
            } else {
                let c = augment::centre_crop(p, size);
                augment::Crop {
                    flip: self.flip && rng.below(2) == 1,
                    ..c
                }
            };
            let shift = match &self.jitter {
                Some((std, pca)) => augment::pca_shift(pca, *std, &mut rng).to_vec(),
                None => vec![],
            };
            augment::write_crop(p, crop, size, &shift, &self.norm, &mut out[..len]);
        } else if self.eval_crops == 10 {
            for (k, crop) in augment::ten_crops(p, size).into_iter().enumerate() {
                augment::write_crop(p, crop, size, &[], &self.norm, &mut out[k * len..][..len]);
            }
        } else {
            let crop = augment::centre_crop(p, size);
            augment::write_crop(p, crop, size, &[], &self.norm, &mut out[..len]);
        }
    }

    /// Records a file that failed to decode; returns the error to stop with when the policy
    /// is to stop.
    pub fn failed(&self, i: usize, why: String) -> Option<DataError> {
        let path = self.items[i].path.clone();
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if !f.iter().any(|(p, _)| *p == path) {
            f.push((path.clone(), why.clone()));
        }
        match self.bad_images {
            BadImages::Stop => Some(DataError::Malformed { path, problem: why }),
            BadImages::Skip => None,
        }
    }
}

/// The normalisation of the pipeline: given values, or the measured ones for `auto`.
pub fn normalise(
    cfg: &ImageConfig,
    channels: usize,
    range: (f64, f64),
    stats: Option<&Stats>,
) -> Result<Normalise, DataError> {
    let pick = |s: &ChannelStat,
                what: &str,
                neutral: f64,
                measured: Option<&Vec<f64>>|
     -> Result<Vec<f32>, DataError> {
        let v: Vec<f64> = match s {
            ChannelStat::None => vec![neutral; channels],
            ChannelStat::Auto => measured.cloned().ok_or_else(|| {
                DataError::Folder(format!(
                    "`{what} = auto` needs the training images measured"
                ))
            })?,
            ChannelStat::Values(v) if v.len() == 1 => vec![v[0]; channels],
            ChannelStat::Values(v) if v.len() == channels => v.clone(),
            ChannelStat::Values(v) => {
                return Err(DataError::Folder(format!(
                    "`{what}` has {} values but the network takes {channels} channels",
                    v.len()
                )))
            }
        };
        Ok(v.into_iter().map(|x| x as f32).collect())
    };
    // Measured figures are of pixels in [0, 1]; map them onto the range as the pixels are.
    let (low, span) = (range.0, range.1 - range.0);
    let m_mean = stats.map(|s| s.mean.iter().map(|m| low + span * m).collect::<Vec<_>>());
    let m_std = stats.map(|s| s.std.iter().map(|d| span * d).collect::<Vec<_>>());
    Ok(Normalise {
        range: (range.0 as f32, range.1 as f32),
        mean: pick(&cfg.mean, "mean", 0.0, m_mean.as_ref())?,
        std: pick(&cfg.std, "std", 1.0, m_std.as_ref())?,
    })
}

/// The header of one image file is readable, or an error naming the file.
pub fn check_file(path: &Path) -> Result<(), DataError> {
    augment::probe(path)
        .map(|_| ())
        .map_err(|problem| DataError::Malformed {
            path: path.to_path_buf(),
            problem,
        })
}
