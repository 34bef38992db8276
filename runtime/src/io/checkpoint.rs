//! Training checkpoints as safetensors files: named `f32` tensors plus string metadata
//! (step, epoch, RNG state, model file, ...). Safetensors is a plain, memory-safe format that
//! Python tools (`safetensors.numpy.load_file`) read directly.
//!
//! Every tensor's CRC-32 is stored in the metadata (`netc_crc32`, a JSON object) and checked
//! on load, so a flipped bit in the data is an error naming the tensor, not a loss of 1e32
//! found later. Files without it (written by other tools) load unchecked. The other metadata
//! entries carry a CRC-32 too (`netc_meta_crc32`), and every field netc reads back is checked
//! for range on load (see [`super::checkpoint_meta`]); checkpoints of earlier versions, written
//! without the metadata CRC, load as before.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::checkpoint_meta::{meta_crc, validate, META_CRC_KEY};
use super::{input::read_safetensors, write_atomic, IoError};

/// The metadata key holding each tensor's CRC-32.
const CRC_KEY: &str = "netc_crc32";

fn crc(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// A set of named tensors with metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// `(name, shape, data)`, data in C order. [`Checkpoint::load`] returns them sorted by name.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The shape and data of tensor `name`.
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, shape, data)| (&shape[..], &data[..]))
    }

    /// Serializes to safetensors and writes `path` atomically. Names must be unique and every
    /// tensor's data must match its shape.
    pub fn save(&self, path: &Path) -> Result<(), IoError> {
        let invalid = |problem: String| IoError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let mut seen = std::collections::HashSet::new();
        let mut raw = Vec::with_capacity(self.tensors.len());
        for (name, shape, data) in &self.tensors {
            if !seen.insert(name.as_str()) {
                return Err(invalid(format!("tensor `{name}` appears twice")));
            }
            let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if count != Some(data.len()) {
                return Err(invalid(format!(
                    "tensor `{name}` has shape {shape:?} but {} values",
                    data.len()
                )));
            }
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            raw.push((name.as_str(), shape.clone(), bytes));
        }
        let st_err = |source| IoError::Safetensors {
            path: path.to_path_buf(),
            source,
        };
        let views = raw
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (*name, v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(st_err)?;
        // `None` when empty: safetensors 0.8 writes a broken header (`{}"__metadata__":{}`)
        // for an empty metadata map with no tensors.
        let sums: serde_json::Map<String, serde_json::Value> = raw
            .iter()
            .map(|(name, _, bytes)| (name.to_string(), crc(bytes).into()))
            .collect();
        let mut metadata: HashMap<String, String> = self
            .metadata
            .iter()
            .filter(|(k, _)| *k != CRC_KEY && *k != META_CRC_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !metadata.is_empty() {
            let sum = meta_crc(metadata.iter(), &[]);
            metadata.insert(META_CRC_KEY.into(), sum);
        }
        if !raw.is_empty() {
            metadata.insert(CRC_KEY.into(), serde_json::Value::Object(sums).to_string());
        }
        let metadata = (!metadata.is_empty()).then_some(metadata);
        let bytes = safetensors::serialize(views, metadata).map_err(st_err)?;
        write_atomic(path, &bytes)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`] (or any safetensors file of `F32`
    /// tensors). Tensors come back sorted by name.
    pub fn load(path: &Path) -> Result<Checkpoint, IoError> {
        Checkpoint::from_bytes(&read_safetensors(path)?, path)
    }

    /// [`Checkpoint::load`] of a file's bytes already in memory (`path` names it in errors).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint, IoError> {
        let st_err = |source| IoError::Safetensors {
            path: path.to_path_buf(),
            source,
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(st_err)?;
        let file = SafeTensors::deserialize(bytes).map_err(st_err)?;
        let format = |problem: String| IoError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let sums: Option<serde_json::Map<String, serde_json::Value>> =
            match header.metadata().as_ref().and_then(|m| m.get(CRC_KEY)) {
                Some(v) => match serde_json::from_str(v) {
                    Ok(serde_json::Value::Object(m)) => Some(m),
                    _ => {
                        return Err(format(format!(
                            "its `{CRC_KEY}` metadata is not a JSON object"
                        )))
                    }
                },
                None => None,
            };
        let mut tensors = Vec::new();
        for (name, view) in file.tensors() {
            if let Some(sums) = &sums {
                match sums.get(&name).and_then(|v| v.as_str()) {
                    Some(want) if want == crc(view.data()) => {}
                    Some(_) => {
                        return Err(format(format!(
                            "tensor `{name}` does not match its checksum: the file is corrupted"
                        )))
                    }
                    None => {
                        return Err(format(format!(
                        "tensor `{name}` has no checksum: the file was altered after netc wrote it"
                    )))
                    }
                }
            }
            if view.dtype() != Dtype::F32 {
                return Err(IoError::Format {
                    path: path.to_path_buf(),
                    problem: format!(
                        "tensor `{name}` has dtype {}; checkpoints hold F32 only",
                        view.dtype()
                    ),
                });
            }
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.push((name, view.shape().to_vec(), data));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(sums) = &sums {
            if let Some(missing) = sums.keys().find(|k| !tensors.iter().any(|t| &t.0 == *k)) {
                return Err(format(format!(
                    "tensor `{missing}` is missing: the file was altered after netc wrote it"
                )));
            }
        }
        let raw_meta = header.metadata().clone().unwrap_or_default();
        if let Some(want) = raw_meta.get(META_CRC_KEY) {
            if *want != meta_crc(raw_meta.iter(), &[CRC_KEY, META_CRC_KEY]) {
                return Err(format(
                    "its metadata does not match its checksum: the file was altered after netc wrote it"
                        .into(),
                ));
            }
        }
        let metadata: BTreeMap<String, String> = raw_meta
            .into_iter()
            .filter(|(k, _)| k != CRC_KEY && k != META_CRC_KEY)
            .collect();
        validate(&metadata, &tensors).map_err(format)?;
        Ok(Checkpoint { tensors, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir;

    fn sample() -> Checkpoint {
        let w: Vec<f32> = (0..12).map(|i| (i as f32).sin() / 3.0).collect();
        let odd = vec![f32::MIN_POSITIVE, -0.0, f32::MAX, 1e-45, f32::NEG_INFINITY];
        Checkpoint {
            tensors: vec![
                ("fc1.weight".into(), vec![3, 4], w),
                ("fc1.bias".into(), vec![5], odd),
                ("scalar".into(), vec![], vec![2.5]),
                ("empty".into(), vec![0, 3], vec![]),
            ],
            metadata: [
                ("step", "1200"),
                ("epoch", "3"),
                ("rng", "0123:abcd"),
                ("model", "mlp.net"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    fn bits(c: &Checkpoint) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        let mut v: Vec<_> = c
            .tensors
            .iter()
            .map(|(n, s, d)| {
                (
                    n.clone(),
                    s.clone(),
                    d.iter().map(|x| x.to_bits()).collect(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = test_dir("ckpt");
        let p = dir.join("model.safetensors");
        let c = sample();
        c.save(&p).unwrap();
        let back = Checkpoint::load(&p).unwrap();
        assert_eq!(bits(&back), bits(&c));
        assert_eq!(back.metadata, c.metadata);
        let names: Vec<&str> = back.tensors.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["empty", "fc1.bias", "fc1.weight", "scalar"]);
        assert_eq!(back.get("scalar"), Some((&[][..], &[2.5f32][..])));
        assert!(back.get("nope").is_none());

        let empty = Checkpoint::default();
        empty.save(&p).unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap(), empty);
        let only_meta = Checkpoint {
            tensors: vec![],
            metadata: c.metadata.clone(),
        };
        only_meta.save(&p).unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap(), only_meta);
        let no_meta = Checkpoint {
            tensors: vec![("w".into(), vec![1], vec![1.0])],
            metadata: BTreeMap::new(),
        };
        no_meta.save(&p).unwrap();
        assert_eq!(Checkpoint::load(&p).unwrap(), no_meta);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_and_truncated_files() {
        let dir = test_dir("ckpt-bad");
        let p = dir.join("c.safetensors");
        sample().save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let prefix = format!("{}: not a valid safetensors checkpoint: ", p.display());

        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&prefix), "{e}");
        std::fs::write(&p, &bytes[..20]).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&prefix), "{e}");
        std::fs::write(&p, b"abc").unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&prefix), "{e}");
        let mut garbled = bytes.clone();
        garbled[10] = b'#';
        std::fs::write(&p, &garbled).unwrap();
        let e = Checkpoint::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&prefix), "{e}");

        let missing = dir.join("missing.safetensors");
        let e = Checkpoint::load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_single_bit_flip_in_the_data_is_caught() {
        // The hardening probe flipped single bits in tensor data: 60 of 60 loaded, one giving a
        // loss of 4.1e32. Every bit of the data region is flipped here in turn.
        let dir = test_dir("ckpt-flip");
        let p = dir.join("c.safetensors");
        let c = sample();
        c.save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let data = 8 + header..bytes.len();
        let mut caught = 0;
        for i in data.clone() {
            for bit in 0..8 {
                let mut f = bytes.clone();
                f[i] ^= 1 << bit;
                std::fs::write(&p, &f).unwrap();
                let e = Checkpoint::load(&p).expect_err("a flipped bit");
                assert!(e.to_string().contains("does not match its checksum"), "{e}");
                caught += 1;
            }
        }
        assert_eq!(caught, 8 * data.len());
        // Intact, it loads, and the checksums stay out of the metadata it returns.
        std::fs::write(&p, &bytes).unwrap();
        let back = Checkpoint::load(&p).unwrap();
        assert_eq!(back.metadata, c.metadata);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn save_rejects_bad_tensors() {
        let dir = test_dir("ckpt-inv");
        let p = dir.join("x.safetensors");
        let mut c = sample();
        c.tensors.push(("fc1.bias".into(), vec![1], vec![0.0]));
        let e = c.save(&p).unwrap_err().to_string();
        assert!(e.ends_with("tensor `fc1.bias` appears twice"), "{e}");
        let c = Checkpoint {
            tensors: vec![("w".into(), vec![2, 2], vec![1.0; 3])],
            metadata: BTreeMap::new(),
        };
        let e = c.save(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("tensor `w` has shape [2, 2] but 3 values"),
            "{e}"
        );
        assert!(!p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
