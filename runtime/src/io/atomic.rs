//! Atomic file replacement: readers (and a crash mid-write) see either the old file or the
//! complete new one, never a torn file. Checkpoints and plots are rewritten during training, so
//! this matters.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::IoError;

/// Writes `bytes` to `path` atomically: to `path.tmp-<pid>-<n>` in the same directory (a rename
/// is atomic only within one file system), fsync, rename over `path`, then fsync the directory
/// so the rename itself is durable (best effort: not every platform can open a directory).
/// On error the temporary file is removed and an existing `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = temp_path(path)?;
    let result = write_and_sync(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(IoError::Io {
            path: path.to_path_buf(),
            source,
        });
    }
    sync_dir(path);
    Ok(())
}

/// `path` with `.tmp-<pid>-<counter>` appended to the file name; the counter keeps two threads
/// of one process that write the same path from sharing a temporary file.
fn temp_path(path: &Path) -> Result<PathBuf, IoError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| IoError::Invalid {
        path: path.to_path_buf(),
        problem: "not a file path".into(),
    })?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(path.with_file_name(tmp_name))
}

fn write_and_sync(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn writes_and_replaces() {
        let dir = test_dir("atomic-ok");
        let p = dir.join("f.bin");
        write_atomic(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_atomic(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failure_creates_nothing_and_keeps_old_file() {
        let dir = test_dir("atomic-fail");
        // Into a directory that does not exist: an error naming the path, nothing created.
        let p = dir.join("missing").join("f.bin");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
        assert!(!dir.join("missing").exists());

        // Over a non-empty directory (rename fails): the old content stays, no temp file.
        let target = dir.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"old").unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(std::fs::read(target.join("keep")).unwrap(), b"old");
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
