//! Opening the files netc reads (model files, checkpoints, .npy samples, images, IDX files):
//! one rule for all of them. The path must be a regular file (a device or a FIFO is refused,
//! naming the path and what it is: `--weights /dev/zero` read until memory ran out, a FIFO
//! blocked forever), and what is read is bounded by the file's size, a cap the caller states
//! and the machine's memory, each checked before reading (a 3 GB file behind a PNG header was
//! read whole).

use std::fs::File;
use std::io::{Read, Seek};
use std::path::Path;

use super::IoError;

/// The largest image file read (a photo is a few MB; larger is a mistake or an attack).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Opens `path` for reading if it is a regular file (links followed): the file and its size.
/// The open itself never blocks (a FIFO is refused after it, not waited on).
pub fn open_regular(path: &Path) -> Result<(File, u64), IoError> {
    let io = |source| IoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Reads of a regular file ignore O_NONBLOCK, so it is left set.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(IoError::Invalid {
            path: path.to_path_buf(),
            problem: format!(
                "not a regular file ({}); give a file",
                super::output::kind(meta.file_type())
            ),
        });
    }
    Ok((file, meta.len()))
}

/// [`open_regular`], refusing a file over `cap` bytes (`what` names the kind of file in the
/// message) or over the memory the machine has.
pub fn open_capped(path: &Path, cap: u64, what: &str) -> Result<(File, u64), IoError> {
    let (file, size) = open_regular(path)?;
    if size > cap {
        return Err(IoError::Invalid {
            path: path.to_path_buf(),
            problem: format!(
                "{} is larger than {}, the most netc reads as {what}",
                megabytes(size),
                megabytes(cap)
            ),
        });
    }
    crate::memory::ensure(size as u128, || path.display().to_string()).map_err(|e| {
        IoError::Invalid {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    })?;
    Ok((file, size))
}

/// The whole of a regular file of at most `cap` bytes (see [`open_capped`]).
pub fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>, IoError> {
    let (file, size) = open_capped(path, cap, what)?;
    read_exactly(file, size, path)
}

/// `size` bytes from `file`: no more if it grew since it was measured, and an error if it
/// shrank.
pub fn read_exactly(file: File, size: u64, path: &Path) -> Result<Vec<u8>, IoError> {
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|source| IoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if (bytes.len() as u64) < size {
        return Err(IoError::Format {
            path: path.to_path_buf(),
            problem: format!("the file shrank while it was read ({size} bytes expected)"),
        });
    }
    Ok(bytes)
}

/// A safetensors file's bytes, read by the sizes its header declares: the header first (its
/// length, at most safetensors' own limit, then the JSON), and the data only when the file is
/// exactly as long as the header's tensors say. A header that safetensors refuses, or a size
/// that disagrees with it, is the error reading the whole file would have given, found without
/// reading the data.
pub fn read_safetensors(path: &Path) -> Result<Vec<u8>, IoError> {
    let (mut file, size) = open_regular(path)?;
    let invalid = |source| IoError::Safetensors {
        path: path.to_path_buf(),
        source,
    };
    let io = |source| IoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut prefix = vec![0u8; size.min(8) as usize];
    file.read_exact(&mut prefix).map_err(io)?;
    if let Ok(len) = <[u8; 8]>::try_from(&prefix[..]) {
        // Clipped to the file and a little past safetensors' limit, so that its own check
        // still speaks; no more is read.
        let n = u64::from_le_bytes(len).min(size - 8).min(101 << 20);
        (&mut file).take(n).read_to_end(&mut prefix).map_err(io)?;
    }
    match safetensors::SafeTensors::read_metadata(&prefix) {
        Ok(_) if prefix.len() as u64 == size => return Ok(prefix),
        Ok(_) => {
            return Err(invalid(
                safetensors::SafeTensorError::MetadataIncompleteBuffer,
            ))
        }
        Err(safetensors::SafeTensorError::MetadataIncompleteBuffer) => {}
        Err(e) => return Err(invalid(e)),
    }
    let declared = declared_data_len(&prefix[8..]).and_then(|d| d.checked_add(prefix.len() as u64));
    if declared.is_some_and(|d| d != size) {
        return Err(invalid(
            safetensors::SafeTensorError::MetadataIncompleteBuffer,
        ));
    }
    crate::memory::ensure(size as u128, || path.display().to_string()).map_err(|e| {
        IoError::Invalid {
            path: path.to_path_buf(),
            problem: e.to_string(),
        }
    })?;
    file.rewind().map_err(io)?;
    read_exactly(file, size, path)
}

/// The data length a safetensors header declares: where its last tensor ends (safetensors
/// checks that the tensors tile the data from 0 without gaps).
fn declared_data_len(header: &[u8]) -> Option<u64> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).ok()?;
    v.iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(_, t)| t["data_offsets"][1].as_u64())
        .try_fold(0u64, |m, end| Some(m.max(end?)))
}

fn megabytes(bytes: u64) -> String {
    match bytes >> 20 {
        0 => format!("{bytes} bytes"),
        mb => format!("{mb} MB"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir;

    #[test]
    fn refuses_what_is_not_a_regular_file_and_what_is_too_large() {
        let dir = test_dir("input");
        let e = open_regular(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file (a folder)"), "{e}");
        #[cfg(unix)]
        {
            let e = open_regular(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("/dev/zero: not a regular file (a character device)"),
                "{e}"
            );
        }
        let p = dir.join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_capped(&p, 5, "a test").unwrap(), b"hello");
        let e = read_capped(&p, 4, "a test").unwrap_err().to_string();
        assert!(e.contains("5 bytes is larger than 4 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_checkpoint_longer_than_its_header_declares_is_refused_unread() {
        let dir = test_dir("input-ckpt");
        let p = dir.join("c.safetensors");
        let c = crate::io::Checkpoint {
            tensors: vec![("w".into(), vec![2], vec![1.0, 2.0])],
            metadata: Default::default(),
        };
        c.save(&p).unwrap();
        assert_eq!(crate::io::Checkpoint::load(&p).unwrap(), c);
        // 8 GB of (sparse) zeros after it: refused from the header, not read (nor allocated).
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(8 << 30).unwrap();
        let e = read_safetensors(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("incomplete metadata, file not fully covered"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
