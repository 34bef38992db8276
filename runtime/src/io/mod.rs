//! Files a training run writes and reads: checkpoints (safetensors), image grids and loss
//! plots (PNG), arrays for NumPy (.npy). Every writer goes through [`write_atomic`], so an
//! interrupted run never leaves a torn file behind, and every output path through
//! [`output_target`], so a device, a FIFO or a folder at that path is never replaced.

pub mod atomic;
pub mod checkpoint;
mod checkpoint_meta;
pub mod confusion_png;
pub mod ema;
pub mod input;
pub mod npy;
pub mod output;
pub mod plot;
pub mod png_grid;
pub mod run_checkpoint;

use std::path::PathBuf;

pub use atomic::write_atomic;
pub use checkpoint::Checkpoint;
pub use confusion_png::write_confusion;
pub use input::{open_capped, open_regular, read_capped, MAX_IMAGE_FILE_BYTES};
pub use npy::{read_npy_f32, write_npy_f32};
pub use output::{output_target, Output};
pub use plot::{write_chart, Panel};
pub use png_grid::{write_image_grid, Grid};

/// An I/O failure; each message is one line that starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The caller's arguments do not describe a valid file (shape/data mismatch, ...).
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    /// The file's contents are not what the reader expects.
    #[error("{}: {problem}", path.display())]
    Format { path: PathBuf, problem: String },
    #[error("{}: PNG encoding failed: {source}", path.display())]
    Png {
        path: PathBuf,
        source: png::EncodingError,
    },
    #[error("{}: not a valid safetensors checkpoint: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        source: safetensors::SafeTensorError,
    },
}

impl IoError {
    /// The message without the path it starts with, for a caller that names the file itself.
    pub fn problem(&self) -> String {
        let path = match self {
            IoError::Io { path, .. }
            | IoError::Invalid { path, .. }
            | IoError::Format { path, .. }
            | IoError::Png { path, .. }
            | IoError::Safetensors { path, .. } => path,
        };
        let full = self.to_string();
        match full.strip_prefix(&format!("{}: ", path.display())) {
            Some(rest) => rest.to_string(),
            None => full,
        }
    }
}

/// Reads a whole regular file (see [`input`]: a device or FIFO is refused, the size is checked
/// against the machine's memory first).
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, IoError> {
    read_capped(path, u64::MAX, "a file")
}

/// Encodes an 8-bit grayscale (`channels` 1) or RGB (`channels` 3) image as PNG.
pub(crate) fn encode_png(
    path: &std::path::Path,
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
) -> Result<Vec<u8>, IoError> {
    let png_err = |source| IoError::Png {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(if channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// A fresh, empty directory under the system temp dir, for tests.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "netc-io-test-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    dir
}

/// Decodes a PNG for tests: (width, height, color type, pixels).
#[cfg(test)]
pub(crate) fn decode_png(path: &std::path::Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open png"));
    let mut reader = png::Decoder::new(file).read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("png size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}
