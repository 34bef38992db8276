//! IDX file reader (the format of MNIST and Fashion-MNIST), gzip-compressed or not.
//!
//! Format: a big-endian `u32` magic number (`0x0000_08DD`: unsigned bytes, `DD` dimensions),
//! one big-endian `u32` per dimension, then the data, one byte per value, row-major. Files are
//! read whole (the largest MNIST file is 47 MB decompressed) and checked strictly: a wrong
//! magic number, a short file or trailing bytes are all errors, because a silently
//! half-read data set trains badly instead of failing.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an IDX images file: `(pixels, n, rows, cols)`, with `n*rows*cols` bytes.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let (mut data, gz) = read_maybe_gz(path)?;
    let dims = parse_header(path, &data, gz, IMAGES_MAGIC, "images")?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let describe = format!("{n} images of {rows}x{cols}");
    check_length(path, &data, gz, 16, &[n, rows, cols], describe)?;
    data.drain(..16);
    Ok((data, n as usize, rows as usize, cols as usize))
}

/// Reads an IDX labels file: one byte per label. Values are not range-checked (other data
/// sets have other class counts).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let (mut data, gz) = read_maybe_gz(path)?;
    let dims = parse_header(path, &data, gz, LABELS_MAGIC, "labels")?;
    let n = dims[0];
    check_length(path, &data, gz, 8, &[n], format!("{n} labels"))?;
    data.drain(..8);
    Ok(data)
}

/// The file's bytes, decompressed when they start with the gzip magic bytes (so a `.gz` name
/// on an already decompressed file, as some browsers leave them, still works). The flag says
/// whether it was compressed, so that messages about lengths can say "decompressed".
fn read_maybe_gz(path: &Path) -> Result<(Vec<u8>, bool), DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| DataError::Gzip {
                path: path.to_path_buf(),
                source,
            })?;
        Ok((out, true))
    } else {
        Ok((raw, false))
    }
}

/// Checks the magic number and returns the dimensions that follow it.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    gz: bool,
    magic: u32,
    kind: &'static str,
) -> Result<Vec<u64>, DataError> {
    let ndims = (magic & 0xff) as usize;
    let header_len = 4 + 4 * ndims;
    let be_u32 =
        |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() >= 4 && be_u32(0) != magic {
        return Err(DataError::Magic {
            path: path.to_path_buf(),
            found: be_u32(0),
            expected: magic,
            kind,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            problem: format!(
                "truncated: the file has {} bytes{}, less than the {header_len}-byte IDX {kind} header",
                bytes.len(),
                decompressed(gz)
            ),
        });
    }
    Ok((0..ndims).map(|d| be_u32(4 + 4 * d) as u64).collect())
}

/// Requires the file to be exactly header + product(dims) bytes long.
fn check_length(
    path: &Path,
    bytes: &[u8],
    gz: bool,
    header_len: u64,
    dims: &[u64],
    describe: String,
) -> Result<(), DataError> {
    let malformed = |problem: String| DataError::Malformed {
        path: PathBuf::from(path),
        problem,
    };
    // Three u32 factors can exceed u64; such a header cannot describe a real file.
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|payload| payload.checked_add(header_len))
        .ok_or_else(|| malformed(format!("header says {describe}, which overflows")))?;
    let actual = bytes.len() as u64;
    let dec = decompressed(gz);
    if actual < expected {
        return Err(malformed(format!(
            "truncated: header says {describe} ({expected} bytes) but the file has {actual} bytes{dec}"
        )));
    }
    if actual > expected {
        return Err(malformed(format!(
            "{} trailing bytes: header says {describe} ({expected} bytes) but the file has {actual} bytes{dec}",
            actual - expected
        )));
    }
    Ok(())
}

fn decompressed(gz: bool) -> &'static str {
    if gz {
        " (decompressed)"
    } else {
        ""
    }
}
