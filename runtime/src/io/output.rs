//! Where an output goes when its path is already there. The one rule every writer follows
//! (checkpoints, PNGs, .npy, the run folder's files): a regular file (or nothing) is created or
//! replaced; a character device or a FIFO is written through (`--out /dev/null`, a pipe to
//! another program), not atomically; anything else (a folder, a block device, a socket, a
//! link to one) is refused. Nothing that is not a regular file is ever replaced: renaming over
//! `/dev/null` as root used to turn the device into a PNG file.

use std::fs::{File, FileType, Permissions};
use std::path::Path;

use super::IoError;

/// What to do with an output path.
pub enum Output {
    /// Nothing is there, or a regular file (with its permissions, which a replacement keeps,
    /// as rewriting a file in place would): create or replace it.
    Replace(Option<Permissions>),
    /// A character device or a FIFO, opened for writing: write through it.
    Through(File),
}

/// Decides where an output to `path` goes (see the module's rule); links are followed, so a
/// link to a device writes through it and a link to a folder is refused.
pub fn output_target(path: &Path) -> Result<Output, IoError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // Nothing there (or a link to nothing, which the new file replaces).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Output::Replace(None)),
        Err(source) => {
            return Err(IoError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(Output::Replace(Some(meta.permissions())));
    }
    if write_through(ft) {
        return open_through(path, ft).map(Output::Through);
    }
    let problem = if ft.is_dir() {
        "is a folder; give a file name".to_string()
    } else {
        format!(
            "is {}, which netc neither replaces nor writes through",
            kind(ft)
        )
    };
    Err(IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    })
}

/// What a file type is, for messages ("a FIFO", "a character device", ...).
pub fn kind(ft: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "neither a file nor a folder"
    }
}

#[cfg(unix)]
fn write_through(ft: FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_char_device() || ft.is_fifo()
}

#[cfg(not(unix))]
fn write_through(_: FileType) -> bool {
    false
}

/// Opens a device or FIFO for writing, never creating or truncating. The open does not block:
/// a FIFO that no process reads is an error (ENXIO) instead of a hang; the writes then block as
/// usual, so a slow reader gets everything.
#[cfg(unix)]
fn open_through(path: &Path, ft: FileType) -> Result<File, IoError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENXIO) if ft.is_fifo() => IoError::Invalid {
                path: path.to_path_buf(),
                problem: "is a FIFO and no process reads it; nothing was written".into(),
            },
            _ => IoError::Io {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns, with integer arguments only.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(IoError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_through(path: &Path, ft: FileType) -> Result<File, IoError> {
    Err(IoError::Invalid {
        path: path.to_path_buf(),
        problem: format!("is {}, which netc does not write through", kind(ft)),
    })
}
