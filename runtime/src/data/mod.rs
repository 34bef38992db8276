//! Training data: IDX data sets (MNIST, Fashion-MNIST) and reproducible shuffling.
//!
//! A data directory holds the four files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each gzip-compressed (`.gz`, looked
//! for first) or not. The repository ships only the test split in `data/mnist-sample`, so
//! `load_split(dir, Split::Train)` on such a directory returns a [`DataError`] naming the
//! missing file; callers that can make do with less data may check [`has_split`] and fall back
//! to `Split::Test`.

pub mod augment;
pub mod folder;
pub mod idx;
pub mod idx_augment;
pub mod loader;
pub mod record;
mod synthetic;
pub mod text;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use idx::{read_idx_images, read_idx_labels, IMAGES_MAGIC, LABELS_MAGIC};
pub use synthetic::{
    synthetic, SYNTHETIC_CLASSES, SYNTHETIC_TEST_BATCHES, SYNTHETIC_TRAIN_BATCHES,
};

use crate::rng::{mix64, Rng};

/// Everything that can go wrong loading a data set; each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data directory `{}` not found", .0.display())]
    DirNotFound(PathBuf),
    #[error("no `{name}[.gz]` in `{}`", dir.display())]
    FileNotFound { dir: PathBuf, name: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: corrupt or truncated gzip data: {source}", path.display())]
    Gzip {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: wrong magic number {found} (expected {expected} for IDX {kind})", path.display())]
    Magic {
        path: PathBuf,
        found: u32,
        expected: u32,
        kind: &'static str,
    },
    /// Truncated file, trailing bytes, impossible header.
    #[error("{}: {problem}", path.display())]
    Malformed { path: PathBuf, problem: String },
    #[error(
        "{}: {n_images} images but {} has {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        images: PathBuf,
        labels: PathBuf,
        n_images: usize,
        n_labels: usize,
    },
    #[error("class folder `{}` has no JPEG or PNG images (remove it, or add images)", .0.display())]
    EmptyClass(PathBuf),
    #[error(
        "`{}` has no images: expected class folders of JPEG or PNG files (DIR/<class>/<image>, or DIR/train/<class>/ and DIR/val/<class>/), or IDX files",
        .0.display()
    )]
    NoImages(PathBuf),
    #[error("class `{class}` in `{}` is not a class of `{}`", split.display(), train.display())]
    UnknownClass {
        class: String,
        split: PathBuf,
        train: PathBuf,
    },
    #[error(
        "{count} image(s) have {found} colour channel(s) but the network takes {want}, e.g. {} (set `convert_channels = true` to convert them)",
        first.display()
    )]
    Channels {
        count: usize,
        first: PathBuf,
        found: usize,
        want: usize,
    },
    #[error(
        "{count} image(s) are smaller than the network's {}x{} input, e.g. {} ({}x{}); set `resize` in the training section to scale them first",
        crop.1, crop.0, first.display(), size.0, size.1
    )]
    TooSmall {
        count: usize,
        first: PathBuf,
        size: (u32, u32),
        crop: (usize, usize),
    },
    /// Files that are not readable images, listed by path.
    #[error("{0}")]
    Unreadable(String),
    /// An image folder that cannot be used as it is.
    #[error("{0}")]
    Folder(String),
}

/// Which half of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// Base names (without `.gz`) of the images and labels files.
    pub fn file_names(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// An image classification data set in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `n*channels*rows*cols` values, image-major then channel, row, column (the network's
    /// CxHxW), in [0, 1].
    pub images: Vec<f32>,
    /// Class indices (u32: ImageNet-sized label sets do not fit a byte).
    pub labels: Vec<u32>,
    pub n: usize,
    pub channels: usize,
    pub rows: usize,
    pub cols: usize,
    /// Random crops and flips of the training images (`crop_padding`, `flip`), if any.
    pub augment: Option<idx_augment::IdxAugment>,
}

impl Dataset {
    /// Builds a data set from IDX bytes (pixels divided by 255).
    pub fn from_bytes(pixels: &[u8], labels: Vec<u8>, rows: usize, cols: usize) -> Self {
        Dataset {
            images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            n: labels.len(),
            labels: labels.into_iter().map(u32::from).collect(),
            channels: 1,
            rows,
            cols,
            augment: None,
        }
    }

    /// Maps the pixels from [0, 1] onto `[low, high]` (the training section's `range`).
    pub fn rescale(&mut self, (low, high): (f64, f64)) {
        if (low, high) == (0.0, 1.0) {
            return;
        }
        let (low, span) = (low as f32, (high - low) as f32);
        self.images.iter_mut().for_each(|v| *v = low + span * *v);
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.rows * self.cols
    }

    /// Examples `a..b` as a data set of their own.
    pub fn slice(&self, a: usize, b: usize) -> Dataset {
        let len = self.image_len();
        Dataset {
            images: self.images[a * len..b * len].to_vec(),
            labels: self.labels[a..b].to_vec(),
            n: b - a,
            ..*self
        }
    }

    /// The pixels of image `i`. Panics if `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.images[i * len..(i + 1) * len]
    }

    /// Copies the images and labels at `indices` into the buffers (cleared first), e.g. to
    /// build a mini-batch from a [`Shuffler`] order.
    pub fn gather(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) {
        images.clear();
        labels.clear();
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
    }

    /// [`gather`](Self::gather) with each image augmented as `augment` says for `epoch` (the
    /// images as they are without it).
    pub fn gather_views(
        &self,
        epoch: u64,
        indices: &[usize],
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) {
        let Some(a) = self.augment else {
            return self.gather(indices, images, labels);
        };
        images.clear();
        labels.clear();
        let shape = (self.channels, self.rows, self.cols);
        for &i in indices {
            a.write(self.image(i), shape, a.view(epoch, i), images);
            labels.push(self.labels[i]);
        }
    }
}

/// `dir/name.gz` if it exists, else `dir/name` if it exists.
pub(crate) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Whether `dir` has both files of `split` (compressed or not). Does not validate them.
pub fn has_split(dir: &Path, split: Split) -> bool {
    let (images, labels) = split.file_names();
    find_file(dir, images).is_some() && find_file(dir, labels).is_some()
}

/// Loads and validates one split of an IDX data set from `dir`.
pub fn load_split(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        return Err(DataError::DirNotFound(dir.to_path_buf()));
    }
    // A folder that cannot be listed (permission denied) says so, rather than looking empty.
    std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let find = |name: &str| {
        find_file(dir, name).ok_or_else(|| DataError::FileNotFound {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        })
    };
    let (images_name, labels_name) = split.file_names();
    let images_path = find(images_name)?;
    let labels_path = find(labels_name)?;
    let (pixels, n, rows, cols) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images: images_path,
            labels: labels_path,
            n_images: n,
            n_labels: labels.len(),
        });
    }
    Ok(Dataset::from_bytes(&pixels, labels, rows, cols))
}

/// Where a classifier's examples come from: a data set in memory (IDX, synthetic), or an image
/// folder decoded a batch at a time on background threads.
#[derive(Debug)]
pub enum Source {
    Memory(Dataset),
    Folder(Arc<folder::FolderSet>),
}

/// The batches of one pass over a [`Source`], in order.
pub enum Batches<'a> {
    Memory {
        set: &'a Dataset,
        epoch: u64,
        order: std::vec::IntoIter<Vec<usize>>,
    },
    Folder(loader::Loader),
}

impl Iterator for Batches<'_> {
    type Item = Result<loader::Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Batches::Memory { set, epoch, order } => order.next().map(|idx| {
                let mut b = loader::Batch {
                    images: vec![],
                    labels: vec![],
                };
                set.gather_views(*epoch, &idx, &mut b.images, &mut b.labels);
                Ok(b)
            }),
            Batches::Folder(l) => l.next(),
        }
    }
}

impl Source {
    /// Examples.
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(d) => d.n,
            Source::Folder(f) => f.items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels, rows and columns of one view.
    pub fn shape(&self) -> (usize, usize, usize) {
        match self {
            Source::Memory(d) => (d.channels, d.rows, d.cols),
            Source::Folder(f) => (f.needs.channels, f.needs.size.0, f.needs.size.1),
        }
    }

    /// Values per view.
    pub fn image_len(&self) -> usize {
        let (c, h, w) = self.shape();
        c * h * w
    }

    /// Views per example (10 for ten-crop evaluation, else 1).
    pub fn views(&self) -> usize {
        match self {
            Source::Memory(_) => 1,
            Source::Folder(f) => f.views(),
        }
    }

    /// The largest label.
    pub fn max_label(&self) -> Option<u32> {
        match self {
            Source::Memory(d) => d.labels.iter().copied().max(),
            Source::Folder(f) => f.items.iter().map(|i| i.label).max(),
        }
    }

    /// Class names, where the data has them (image folders).
    pub fn classes(&self) -> Option<&[String]> {
        match self {
            Source::Memory(_) => None,
            Source::Folder(f) => Some(&f.classes),
        }
    }

    /// The batches `order` lists for `epoch` (the epoch seeds an image folder's random views).
    pub fn batches(&self, epoch: u64, order: Vec<Vec<usize>>) -> Batches<'_> {
        match self {
            Source::Memory(set) => Batches::Memory {
                set,
                epoch,
                order: order.into_iter(),
            },
            Source::Folder(f) => Batches::Folder(loader::Loader::start(
                f.clone(),
                epoch,
                order,
                loader::default_threads(),
                2,
            )),
        }
    }

    /// Files that failed to decode while loading and were left out (`bad_images = skip`).
    pub fn failed(&self) -> Vec<(PathBuf, String)> {
        match self {
            Source::Memory(_) => vec![],
            Source::Folder(f) => f.failed.lock().map(|v| v.clone()).unwrap_or_default(),
        }
    }
}

/// Reproducible per-epoch example order.
///
/// The order of epoch `e` depends only on `(seed, e)`, not on earlier epochs, so resuming from
/// a checkpoint needs only the seed and the epoch number to replay the same batches.
#[derive(Clone, Debug)]
pub struct Shuffler {
    n: usize,
    seed: u64,
}

impl Shuffler {
    /// Orders for `n` examples from `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        Shuffler { n, seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// A permutation of `0..n` for `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n).collect();
        // Mixing the seed and the epoch separately keeps (seed, epoch) streams apart.
        Rng::new(mix64(self.seed) ^ mix64(epoch ^ 0x5EED_0FE9_0C0C)).shuffle(&mut order);
        order
    }

    /// The order of `epoch` cut into batches of `batch_size` (the last one may be short).
    /// A `batch_size` of 0 is treated as 1.
    pub fn batches(&self, epoch: u64, batch_size: usize) -> Vec<Vec<usize>> {
        self.order(epoch)
            .chunks(batch_size.max(1))
            .map(|c| c.to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, empty directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "netc-data-test-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, n, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend((0..n * rows * cols).map(|i| (i * 37 % 256) as u8));
        v
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = LABELS_MAGIC.to_be_bytes().to_vec();
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn loads_gz_and_raw() {
        let dir = temp_dir("good");
        let images = idx_images(3, 2, 4);
        write(&dir, "train-images-idx3-ubyte.gz", &gz(&images));
        write(
            &dir,
            "train-labels-idx1-ubyte.gz",
            &gz(&idx_labels(&[1, 2, 200])),
        );
        write(&dir, "t10k-images-idx3-ubyte", &images);
        write(&dir, "t10k-labels-idx1-ubyte", &idx_labels(&[0, 9, 5]));
        assert!(has_split(&dir, Split::Train) && has_split(&dir, Split::Test));

        let train = load_split(&dir, Split::Train).unwrap();
        assert_eq!((train.n, train.rows, train.cols), (3, 2, 4));
        assert_eq!(train.labels, vec![1, 2, 200]);
        assert_eq!(train.images.len(), 24);
        assert_eq!(train.images[1], 37.0 / 255.0);
        let test = load_split(&dir, Split::Test).unwrap();
        assert_eq!(test.images, train.images);
        assert_eq!(test.labels, vec![0, 9, 5]);
        assert_eq!(test.image(2), &train.images[16..24]);

        let (mut imgs, mut labels) = (Vec::new(), Vec::new());
        test.gather(&[2, 0], &mut imgs, &mut labels);
        assert_eq!(labels, vec![5, 0]);
        assert_eq!(&imgs[..8], test.image(2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gz_preferred_and_gz_magic_detected() {
        let dir = temp_dir("prefer");
        // `.gz` name but plain content: still read.
        write(&dir, "t10k-images-idx3-ubyte.gz", &idx_images(1, 1, 1));
        write(&dir, "t10k-images-idx3-ubyte", b"garbage");
        write(&dir, "t10k-labels-idx1-ubyte", &idx_labels(&[4]));
        let ds = load_split(&dir, Split::Test).unwrap();
        assert_eq!(ds.labels, vec![4]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_gzip_bomb_behind_a_valid_header_is_not_decompressed_whole() {
        // 10,000 28x28 images and then 200 MB of zeros, 0.2 MB compressed: the reader stops
        // counting a megabyte past the declared data.
        use std::io::Write;
        let dir = temp_dir("bomb");
        let p = dir.join("t10k-images-idx3-ubyte.gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&p).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&idx_images(10_000, 28, 28)).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap();
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(
            e.contains("more than 1048576 trailing bytes: header says 10000 images of 28x28"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_and_trailing() {
        let dir = temp_dir("trunc");
        let mut images = idx_images(10, 28, 28);
        images.truncate(1000);
        let p = write(&dir, "t10k-images-idx3-ubyte.gz", &gz(&images));
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: truncated: header says 10 images of 28x28 (7856 bytes) but the file has 1000 bytes (decompressed)",
                p.display()
            )
        );

        let mut labels = idx_labels(&[1, 2]);
        labels.push(3);
        let p = write(&dir, "l", &labels);
        let e = read_idx_labels(&p).unwrap_err().to_string();
        assert!(
            e.contains(
                "1 trailing bytes: header says 2 labels (10 bytes) but the file has 11 bytes"
            ),
            "{e}"
        );

        let p = write(&dir, "short", &[0, 0, 8, 3, 0, 0]);
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(
            e.contains("truncated: the file has 6 bytes, less than the 16-byte IDX images header"),
            "{e}"
        );

        // A gzip stream cut in the middle.
        let full = gz(&idx_images(10, 28, 28));
        let p = write(&dir, "cut.gz", &full[..full.len() / 2]);
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("corrupt or truncated gzip data"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_magic() {
        let dir = temp_dir("magic");
        let mut images = idx_images(1, 2, 2);
        images[..4].copy_from_slice(&1234u32.to_be_bytes());
        let p = write(&dir, "x", &images);
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: wrong magic number 1234 (expected 2051 for IDX images)",
                p.display()
            )
        );
        // A labels file where images are expected.
        let p = write(&dir, "y", &idx_labels(&[1]));
        let e = read_idx_images(&p).unwrap_err().to_string();
        assert!(e.contains("wrong magic number 2049 (expected 2051"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn count_mismatch() {
        let dir = temp_dir("count");
        write(&dir, "t10k-images-idx3-ubyte", &idx_images(3, 2, 2));
        write(&dir, "t10k-labels-idx1-ubyte.gz", &gz(&idx_labels(&[1, 2])));
        let e = load_split(&dir, Split::Test).unwrap_err().to_string();
        assert!(e.contains("t10k-images-idx3-ubyte: 3 images but "), "{e}");
        assert!(e.ends_with("t10k-labels-idx1-ubyte.gz has 2 labels"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_dir_and_files() {
        let dir = temp_dir("missing");
        let gone = dir.join("nope");
        let e = load_split(&gone, Split::Test).unwrap_err().to_string();
        assert_eq!(e, format!("data directory `{}` not found", gone.display()));
        assert!(!has_split(&gone, Split::Test));

        write(&dir, "t10k-images-idx3-ubyte.gz", &gz(&idx_images(1, 1, 1)));
        write(&dir, "t10k-labels-idx1-ubyte.gz", &gz(&idx_labels(&[1])));
        assert!(has_split(&dir, Split::Test) && !has_split(&dir, Split::Train));
        let e = load_split(&dir, Split::Train).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("no `train-images-idx3-ubyte[.gz]` in `{}`", dir.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shuffler_reproducible_per_epoch() {
        let s = Shuffler::new(100, 7);
        let e0 = s.order(0);
        assert_eq!(e0, Shuffler::new(100, 7).order(0));
        assert_ne!(e0, s.order(1));
        assert_ne!(e0, Shuffler::new(100, 8).order(0));
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let b = s.batches(3, 32);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![32, 32, 32, 4]
        );
        assert_eq!(b.concat(), s.order(3));
        assert!(Shuffler::new(0, 1).order(0).is_empty());
    }

    /// The real MNIST test split, when the shared data directory is present.
    #[test]
    fn real_mnist_test_split() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/data/mnist"
        ));
        if !dir.is_dir() {
            return;
        }
        let ds = load_split(dir, Split::Test).unwrap();
        assert_eq!((ds.n, ds.rows, ds.cols), (10_000, 28, 28));
        assert_eq!(ds.images.len(), 10_000 * 784);
        assert_eq!(ds.labels[0], 7);
        assert!(ds.labels.iter().all(|&l| l < 10));
        assert!(ds.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert!(ds.images.contains(&1.0) && ds.images.contains(&0.0));
    }
}
