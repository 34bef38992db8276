//! What a checkpoint records of the data a run trained on: the folder, its files with their
//! sizes, and a fingerprint of them. `eval`, `train --resume` and `score` take the recorded
//! folder by default, and a run resumed on other data is refused: a model trained on
//! Fashion-MNIST used to be evaluated, and continued, on the shipped MNIST digits without a
//! word, because those commands fell back to the model file's `data_dir`.

use super::{find_file, DataError, Split};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The metadata key of the data folder (an absolute path).
pub const DIR_KEY: &str = "data_dir";
/// The metadata key of the files: a JSON object of file name to size in bytes (for an image
/// folder, of each top-level entry to the bytes under it).
pub const FILES_KEY: &str = "data_files";
/// The metadata key of the fingerprint: a SHA-256, hex.
pub const FINGERPRINT_KEY: &str = "data_fingerprint";
/// The metadata key of the images' shape as the IDX header gives it: a JSON list `[c, h, w]`.
pub const SHAPE_KEY: &str = "data_shape";

/// How deep an image folder's listing goes (DIR/train/<class>/<image> is three levels): a
/// bound, so a symbolic link cycle cannot make it endless.
const MAX_DEPTH: usize = 4;

/// The data a run trained on, as a checkpoint records it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRecord {
    pub dir: PathBuf,
    pub files: BTreeMap<String, u64>,
    pub fingerprint: String,
}

impl DataRecord {
    /// The record of the data folder `dir`. An IDX folder's fingerprint covers its files'
    /// contents (a few tens of MB, read anyway to train); an image folder's covers its
    /// listing (every file's path and size), as reading every image twice would double a
    /// large folder's start-up.
    pub fn of(dir: &Path) -> Result<DataRecord, DataError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataError::Io { path, source }
        };
        let abs = std::fs::canonicalize(dir).map_err(io(dir))?;
        let mut hash = sha2::Sha256::new();
        let mut files = BTreeMap::new();
        let idx: Vec<PathBuf> = [Split::Train, Split::Test]
            .iter()
            .flat_map(|s| {
                let (a, b) = s.file_names();
                [find_file(&abs, a), find_file(&abs, b)]
            })
            .flatten()
            .collect();
        if idx.is_empty() {
            let mut list = vec![];
            listing(&abs, &abs, 0, &mut list)?;
            list.sort();
            for (rel, len) in &list {
                hash.update(rel.as_bytes());
                hash.update([0]);
                hash.update(len.to_le_bytes());
                let top = rel.split('/').next().unwrap_or(rel).to_string();
                *files.entry(top).or_insert(0) += len;
            }
        } else {
            for path in idx {
                let name = path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let mut f = std::fs::File::open(&path).map_err(io(&path))?;
                let len = std::io::copy(&mut f, &mut hash).map_err(io(&path))?;
                hash.update(name.as_bytes());
                files.insert(name, len);
            }
        }
        let fingerprint = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(DataRecord {
            dir: abs,
            files,
            fingerprint,
        })
    }

    /// Puts the record into checkpoint metadata.
    pub fn insert(&self, meta: &mut BTreeMap<String, String>) {
        meta.insert(DIR_KEY.into(), self.dir.to_string_lossy().into_owned());
        meta.insert(
            FILES_KEY.into(),
            serde_json::to_string(&self.files).unwrap_or_default(),
        );
        meta.insert(FINGERPRINT_KEY.into(), self.fingerprint.clone());
    }

    /// The record in checkpoint metadata; None for a checkpoint of an earlier netc (or of a
    /// run on synthetic data), which records none.
    pub fn recorded(meta: &BTreeMap<String, String>) -> Option<DataRecord> {
        Some(DataRecord {
            dir: PathBuf::from(meta.get(DIR_KEY)?),
            files: serde_json::from_str(meta.get(FILES_KEY)?).ok()?,
            fingerprint: meta.get(FINGERPRINT_KEY)?.clone(),
        })
    }

    /// Whether `other` holds the same data (wherever it is now).
    pub fn same_data(&self, other: &DataRecord) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// The folder with its files, sizes and fingerprint, for a message.
    pub fn describe(&self) -> String {
        let bytes: u64 = self.files.values().sum();
        let names: Vec<&str> = self.files.keys().map(String::as_str).take(4).collect();
        let more = self.files.len().saturating_sub(4);
        format!(
            "{} ({}{}; {:.1} MB; fingerprint {})",
            self.dir.display(),
            names.join(", "),
            if more > 0 {
                format!(", ... {more} more")
            } else {
                String::new()
            },
            bytes as f64 / 1e6,
            &self.fingerprint[..self.fingerprint.len().min(12)]
        )
    }
}

/// Every regular file under `dir` (down to [`MAX_DEPTH`]) with its size, by path relative to
/// `root` with `/` between the parts.
fn listing(
    root: &Path,
    dir: &Path,
    depth: usize,
    out: &mut Vec<(String, u64)>,
) -> Result<(), DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() && depth + 1 < MAX_DEPTH {
            listing(root, &path, depth + 1, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((parts.join("/"), meta.len()));
        }
    }
    Ok(())
}

/// The image shape an IDX training set recorded, `[c, h, w]`.
pub fn recorded_shape(meta: &BTreeMap<String, String>) -> Option<(usize, usize, usize)> {
    let v: Vec<usize> = serde_json::from_str(meta.get(SHAPE_KEY)?).ok()?;
    match v[..] {
        [c, h, w] => Some((c, h, w)),
        _ => None,
    }
}

/// The class names of an IDX data set, one per line in `classes.txt` beside its files (blank
/// lines and surrounding spaces ignored); None where there is no such file.
pub fn classes_file(dir: &Path) -> Result<Option<Vec<String>>, DataError> {
    let path = dir.join("classes.txt");
    if !path.is_file() {
        return Ok(None);
    }
    // A class list is a few hundred bytes: reading stops at 1 MB.
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| {
            std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 20), &mut text)
        })
        .map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
    Ok(Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    ))
}
