//! A character-level text corpus for `task = language_model`: a UTF-8 file, its vocabulary
//! (the distinct characters, sorted by code point, as nanoGPT's shakespeare_char builds it),
//! the last share held out, random training windows and the held-out text read in
//! non-overlapping windows. A window of `block` ids predicts the `block` characters that
//! follow each of its positions.

use crate::rng::{mix64, Rng};
use std::path::{Path, PathBuf};

/// Why a text cannot be trained on; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not UTF-8 text (the first bad byte is at offset {offset}); a language model reads UTF-8 text files", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{}: {bytes} bytes is over the {} MiB a text may have", path.display(), MAX_TEXT_BYTES >> 20)]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{}: the text is empty", .0.display())]
    Empty(PathBuf),
    #[error("{}: {problem}", path.display())]
    TooShort { path: PathBuf, problem: String },
    #[error("`{}` holds {count} text files; name one (--data-dir FILE, or `text = \"...\"`): {list}", dir.display())]
    NotOneFile {
        dir: PathBuf,
        count: usize,
        list: String,
    },
    #[error("{}: the text has {have} distinct characters but the network's logits cover {vocab}; make the logits (and the embedding) {have} wide", path.display())]
    VocabTooLarge {
        path: PathBuf,
        have: usize,
        vocab: usize,
    },
}

/// The characters of a vocabulary, in id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub chars: Vec<char>,
}

impl Vocab {
    /// The distinct characters of `text`, sorted.
    pub fn of(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab { chars }
    }

    /// The vocabulary as a checkpoint records it: its characters in order, as one string.
    pub fn to_record(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn from_record(s: &str) -> Vocab {
        Vocab {
            chars: s.chars().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The id of `c`, if the vocabulary has it.
    pub fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The ids of `text`, or the first character the vocabulary lacks.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, char> {
        text.chars().map(|c| self.id(c).ok_or(c)).collect()
    }

    pub fn char_of(&self, id: u32) -> char {
        self.chars.get(id as usize).copied().unwrap_or('\u{FFFD}')
    }
}

/// A text split for training: the ids of its first part and of the held-out rest.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub path: PathBuf,
    pub vocab: Vocab,
    pub train: Vec<u32>,
    pub held: Vec<u32>,
    /// SHA-256 of the file, hex (a resumed run checks it is the same text).
    pub sha256: String,
}

/// The text file `path` names: the file itself, or the one text file in a folder.
pub fn text_file(path: &Path) -> Result<PathBuf, TextError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let io = |source| TextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files = vec![];
    for e in std::fs::read_dir(path).map_err(io)? {
        let p = e.map_err(io)?.path();
        let text = p.extension().is_some_and(|x| x.eq_ignore_ascii_case("txt"));
        if p.is_file() && text {
            files.push(p);
        }
    }
    files.sort();
    match files.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(TextError::NotOneFile {
            dir: path.to_path_buf(),
            count: files.len(),
            list: files
                .iter()
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The largest text read: its ids take four times its bytes in memory.
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// The bytes of the text file `path` names (see [`text_file`]), refused over the cap before
/// anything is read.
fn read_text(path: &Path) -> Result<(PathBuf, Vec<u8>), TextError> {
    let path = text_file(path)?;
    let io = |source| TextError::Io {
        path: path.clone(),
        source,
    };
    let len = std::fs::metadata(&path).map_err(io)?.len();
    if len > MAX_TEXT_BYTES {
        return Err(TextError::TooLarge { path, bytes: len });
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    Ok((path, bytes))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 of the text file `path` names, hex.
pub fn text_sha256(path: &Path) -> Result<String, TextError> {
    read_text(path).map(|(_, b)| sha256_hex(&b))
}

impl Corpus {
    /// Reads `path` (a file, or a folder with one `.txt` file), holding out the last `holdout`
    /// share, for windows of `block`. `vocab`: the vocabulary to encode with (a resumed run's);
    /// else the text's own, which must fit in `classes`.
    pub fn load(
        path: &Path,
        holdout: f64,
        block: usize,
        classes: usize,
        vocab: Option<Vocab>,
    ) -> Result<Corpus, TextError> {
        let (path, bytes) = read_text(path)?;
        let sha256 = sha256_hex(&bytes);
        let text = String::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
            path: path.clone(),
            offset: e.utf8_error().valid_up_to(),
        })?;
        Corpus::of_text(&text, path, sha256, (holdout, block, classes), vocab)
    }

    fn of_text(
        text: &str,
        path: PathBuf,
        sha256: String,
        (holdout, block, classes): (f64, usize, usize),
        vocab: Option<Vocab>,
    ) -> Result<Corpus, TextError> {
        if text.is_empty() {
            return Err(TextError::Empty(path));
        }
        let vocab = vocab.unwrap_or_else(|| Vocab::of(text));
        if vocab.len() > classes {
            return Err(TextError::VocabTooLarge {
                path,
                have: vocab.len(),
                vocab: classes,
            });
        }
        let ids = vocab.encode(text).map_err(|c| TextError::TooShort {
            path: path.clone(),
            problem: format!(
                "character {c:?} is not in the checkpoint's vocabulary (this is other text than the run was trained on)"
            ),
        })?;
        let n = ids.len();
        let cut = n - ((n as f64 * holdout).round() as usize).min(n);
        // A training window needs block + 1 characters (its targets run one further), and
        // the held-out part at least two (one character predicted from another).
        if cut < block + 1 || n - cut < 2 {
            return Err(TextError::TooShort {
                path,
                problem: format!(
                    "{n} characters: too short for windows of {block} (the training part needs at least {} characters after holding out {:.0}%, and the held-out part 2)",
                    block + 1,
                    holdout * 100.0
                ),
            });
        }
        Ok(Corpus {
            path,
            vocab,
            train: ids[..cut].to_vec(),
            held: ids[cut..].to_vec(),
            sha256,
        })
    }

    /// The training windows of a step: `rows` windows of `block` ids at random starts drawn
    /// from the seed and the step (so a resumed run draws the same ones), and their targets
    /// (each window's ids shifted by one), as f32 ids.
    pub fn train_batch(&self, rows: usize, block: usize, seed: u64, step: u64) -> Windows {
        let mut rng = Rng::new(mix64(seed ^ 0x7E47_0000) ^ mix64(step));
        let starts = self.train.len() - block;
        let mut w = Windows::new(rows, block);
        for r in 0..rows {
            let s = rng.below(starts as u64) as usize;
            w.fill(r, &self.train[s..s + block + 1]);
        }
        w
    }

    /// The held-out text in non-overlapping windows, `rows` at a time: every held-out
    /// character after the first is a target once; the last window is padded (its padding
    /// has no target).
    pub fn held_batches(&self, rows: usize, block: usize, most: Option<usize>) -> Vec<Windows> {
        let targets = self.held.len() - 1;
        let windows = targets.div_ceil(block).min(most.unwrap_or(usize::MAX));
        let mut out = vec![];
        for first in (0..windows).step_by(rows) {
            let n = rows.min(windows - first);
            let mut w = Windows::new(n, block);
            for r in 0..n {
                let s = (first + r) * block;
                let e = (s + block + 1).min(self.held.len());
                w.fill(r, &self.held[s..e]);
            }
            out.push(w);
        }
        out
    }
}

/// A batch of windows: ids (rows x block) and the id each position predicts; a position
/// with no target (padding) has `u32::MAX`.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub rows: usize,
    pub block: usize,
    pub ids: Vec<f32>,
    pub targets: Vec<u32>,
}

impl Windows {
    fn new(rows: usize, block: usize) -> Windows {
        Windows {
            rows,
            block,
            ids: vec![0.0; rows * block],
            targets: vec![u32::MAX; rows * block],
        }
    }

    /// Row `r` from `span`: its ids are all but the last, its targets all but the first.
    fn fill(&mut self, r: usize, span: &[u32]) {
        let o = r * self.block;
        let n = (span.len() - 1).min(self.block);
        for i in 0..n {
            self.ids[o + i] = span[i] as f32;
            self.targets[o + i] = span[i + 1];
        }
    }

    /// The targets as one-hot rows over `classes` (padding rows all zero), the form the
    /// softmax cross-entropy of both executors reads.
    pub fn onehot(&self, classes: usize) -> Vec<f32> {
        let mut y = vec![0.0; self.targets.len() * classes];
        for (i, &t) in self.targets.iter().enumerate() {
            if (t as usize) < classes {
                y[i * classes + t as usize] = 1.0;
            }
        }
        y
    }

    /// Positions with a target.
    pub fn count(&self) -> usize {
        self.targets.iter().filter(|&&t| t != u32::MAX).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(text: &str, holdout: f64, block: usize) -> Result<Corpus, TextError> {
        Corpus::of_text(
            text,
            "t.txt".into(),
            String::new(),
            (holdout, block, 64),
            None,
        )
    }

    #[test]
    fn the_vocabulary_is_the_sorted_distinct_characters() {
        let v = Vocab::of("hello, world");
        assert_eq!(v.to_record(), " ,dehlorw");
        assert_eq!(v.encode("low"), Ok(vec![5, 6, 8]));
        assert_eq!(v.encode("lo!"), Err('!'));
        assert_eq!(Vocab::from_record(&v.to_record()), v);
        assert_eq!(v.char_of(3), 'e');
    }

    #[test]
    fn the_last_share_is_held_out() {
        let c = corpus("abcdefghij", 0.2, 3).unwrap();
        assert_eq!(c.train, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(c.held, vec![8, 9]);
    }

    #[test]
    fn training_windows_predict_the_next_character_and_repeat_for_a_step() {
        let c = corpus("abcdefghijklmnopqrst", 0.1, 4).unwrap();
        let a = c.train_batch(5, 4, 7, 3);
        assert_eq!(a, c.train_batch(5, 4, 7, 3));
        assert_ne!(a, c.train_batch(5, 4, 7, 4));
        for r in 0..5 {
            let ids = &a.ids[r * 4..r * 4 + 4];
            let t = &a.targets[r * 4..r * 4 + 4];
            for i in 0..4 {
                assert_eq!(t[i] as f32, ids[i] + 1.0, "consecutive letters");
            }
            // Every window lies in the training part (ids 0..18, targets up to 17).
            assert!(t[3] <= 17);
        }
    }

    #[test]
    fn held_out_windows_cover_every_character_once() {
        // 30 characters, 10 held out: 9 targets in windows of 4 (4, 4, 1 + padding).
        let text: String = (0..30).map(|i| char::from(b'A' + i as u8)).collect();
        let c = corpus(&text, 1.0 / 3.0, 4).unwrap();
        assert_eq!(c.held.len(), 10);
        assert_eq!(c.held_batches(2, 4, Some(2)).len(), 1);
        let bs = c.held_batches(2, 4, None);
        assert_eq!(bs.iter().map(|b| b.rows).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(bs.iter().map(Windows::count).sum::<usize>(), 9);
        let targets: Vec<u32> = bs
            .iter()
            .flat_map(|b| b.targets.iter().copied().filter(|&t| t != u32::MAX))
            .collect();
        assert_eq!(targets, (21..30).collect::<Vec<u32>>());
        let hot = bs[1].onehot(30);
        assert_eq!(hot.iter().sum::<f32>(), 1.0);
        assert_eq!(hot[29], 1.0);
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        let e = corpus("", 0.1, 4).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = corpus("abcdef", 0.1, 8).unwrap_err().to_string();
        assert!(e.contains("too short for windows of 8"), "{e}");
        let wide: String = (0..70u32)
            .filter_map(|i| char::from_u32(0x100 + i))
            .collect();
        let e = corpus(&wide.repeat(3), 0.1, 4).unwrap_err().to_string();
        assert!(
            e.contains("70 distinct characters") && e.contains("cover 64"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("netc-text-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.txt");
        std::fs::write(&f, b"ok\xff\xfe").unwrap();
        let e = Corpus::load(&f, 0.1, 1, 64, None).unwrap_err().to_string();
        assert!(e.contains("not UTF-8") && e.contains("offset 2"), "{e}");
        std::fs::write(dir.join("other.txt"), "x").unwrap();
        let e = Corpus::load(&dir, 0.1, 1, 64, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 text files") && e.contains("bad.txt, other.txt"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
