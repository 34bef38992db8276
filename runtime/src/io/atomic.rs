//! Atomic file replacement: readers (and a crash mid-write) see either the old file or the
//! complete new one, never a torn file. Checkpoints and plots are rewritten during training, so
//! this matters.

use std::fs::{File, Permissions};
use std::io::Write;
use std::path::Path;

use super::output::{output_target, Output};
use super::IoError;

/// Writes `bytes` to `path`: a regular file (or a new one) is replaced atomically, through a
/// temporary file in the same directory (a rename is atomic only within one file system;
/// tempfile picks a fresh name, so two writers never share one), fsync, rename over `path`
/// (tempfile's persist), then fsync the directory so the rename itself is durable (best effort:
/// not every platform can open a directory). On error the temporary file is removed and an
/// existing `path` is left untouched. What is not a regular file is never replaced:
/// [`output_target`] says whether it is written through (a device, a FIFO) or refused.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let err = |source: std::io::Error| IoError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.file_name().is_none() {
        return Err(IoError::Invalid {
            path: path.to_path_buf(),
            problem: "not a file path".into(),
        });
    }
    let keep = match output_target(path)? {
        Output::Through(mut f) => return f.write_all(bytes).and_then(|()| f.flush()).map_err(err),
        Output::Replace(keep) => keep,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = temp_builder(keep).tempfile_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    // On failure persist hands the temporary file back, and dropping it deletes it.
    tmp.persist(path).map_err(|e| err(e.error))?;
    sync_dir(path);
    Ok(())
}

/// The temporary file's builder: created with the usual permissions, as `File::create` gives
/// (0666 less the umask; tempfile's own default is 0600, which made every checkpoint and PNG
/// owner-only), or with those of the file it replaces.
fn temp_builder(keep: Option<Permissions>) -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(".tmp-netc-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(keep.unwrap_or_else(|| Permissions::from_mode(0o666)));
    }
    #[cfg(not(unix))]
    drop(keep);
    b
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
            .filter(|n| n.starts_with(".tmp"))
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
