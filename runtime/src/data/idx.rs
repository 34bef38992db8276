//! IDX file reader (the format of MNIST and Fashion-MNIST), gzip-compressed or not.
//!
//! Format: a big-endian `u32` magic number (`0x0000_08DD`: unsigned bytes, `DD` dimensions),
//! one big-endian `u32` per dimension, then the data, one byte per value, row-major. The
//! header is read first and the data only up to the size it declares; files are checked
//! strictly: a wrong magic number, a short file or trailing bytes are all errors, because a
//! silently half-read data set trains badly instead of failing.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads an IDX images file: `(pixels, n, rows, cols)`, with `n*rows*cols` bytes.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize), DataError> {
    let (dims, data) = read_idx(path, IMAGES_MAGIC, "images", |d| {
        format!("{} images of {}x{}", d[0], d[1], d[2])
    })?;
    Ok((data, dims[0] as usize, dims[1] as usize, dims[2] as usize))
}

/// Reads an IDX labels file: one byte per label. Values are not range-checked (other data
/// sets have other class counts).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    Ok(read_idx(path, LABELS_MAGIC, "labels", |d| format!("{} labels", d[0]))?.1)
}

/// Trailing bytes counted past the data before giving up counting (a gzip bomb behind a
/// valid header is not decompressed to the end).
const MAX_TRAILING_COUNTED: u64 = 1 << 20;

/// The header's dimensions and exactly the payload they describe. The header is read first,
/// and the payload only up to its declared size (a 5.9 MB gzip bomb behind a valid
/// 10000x28x28 header used to be decompressed whole, 6.2 GB, before "trailing bytes").
fn read_idx(
    path: &Path,
    magic: u32,
    kind: &'static str,
    describe: impl Fn(&[u64]) -> String,
) -> Result<(Vec<u64>, Vec<u8>), DataError> {
    let (mut reader, gz) = open(path)?;
    let header_len = 4 + 4 * (magic & 0xff) as usize;
    let mut header = vec![0u8; header_len];
    let got = read_up_to(&mut reader, &mut header, path, gz)?;
    let dims = parse_header(path, &header[..got], gz, magic, kind)?;
    let what = describe(&dims);
    let malformed = |problem: String| DataError::Malformed {
        path: PathBuf::from(path),
        problem,
    };
    // Three u32 factors can exceed u64; such a header cannot describe a real file.
    let payload = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|p| p.checked_add(header_len as u64).is_some())
        .ok_or_else(|| malformed(format!("header says {what}, which overflows")))?;
    let expected = payload + header_len as u64;
    crate::memory::ensure(payload as u128, || format!("{} ({what})", path.display()))
        .map_err(|e| malformed(e.to_string()))?;
    let mut data = Vec::with_capacity(payload as usize);
    let stream_err = |source: std::io::Error| stream_error(path, gz, source);
    (&mut reader)
        .take(payload)
        .read_to_end(&mut data)
        .map_err(stream_err)?;
    let dec = decompressed(gz);
    if (data.len() as u64) < payload {
        return Err(malformed(format!(
            "truncated: header says {what} ({expected} bytes) but the file has {} bytes{dec}",
            header_len + data.len()
        )));
    }
    let extra = std::io::copy(
        &mut (&mut reader).take(MAX_TRAILING_COUNTED),
        &mut std::io::sink(),
    )
    .map_err(stream_err)?;
    if extra > 0 {
        let (count, total) = if extra == MAX_TRAILING_COUNTED {
            (
                format!("more than {extra}"),
                format!("more than {}", expected + extra),
            )
        } else {
            (extra.to_string(), (expected + extra).to_string())
        };
        return Err(malformed(format!(
            "{count} trailing bytes: header says {what} ({expected} bytes) but the file has {total} bytes{dec}"
        )));
    }
    Ok((dims, data))
}

/// The file as a byte stream, decompressed when it starts with the gzip magic bytes (so a
/// `.gz` name on an already decompressed file, as some browsers leave them, still works). The
/// flag says whether it was compressed, so that messages about lengths can say
/// "decompressed".
fn open(path: &Path) -> Result<(Box<dyn Read>, bool), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (file, _) = crate::io::open_regular(path).map_err(|e| DataError::Malformed {
        path: path.to_path_buf(),
        problem: e.problem(),
    })?;
    let mut file = std::io::BufReader::new(file);
    let gz = std::io::BufRead::fill_buf(&mut file)
        .map_err(io)?
        .starts_with(&[0x1f, 0x8b]);
    if gz {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(file)), true))
    } else {
        Ok((Box::new(file), false))
    }
}

fn stream_error(path: &Path, gz: bool, source: std::io::Error) -> DataError {
    if gz {
        DataError::Gzip {
            path: path.to_path_buf(),
            source,
        }
    } else {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Fills `buf` as far as the stream goes; the count read.
fn read_up_to(r: &mut dyn Read, buf: &mut [u8], path: &Path, gz: bool) -> Result<usize, DataError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(stream_error(path, gz, e)),
        }
    }
    Ok(n)
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

fn decompressed(gz: bool) -> &'static str {
    if gz {
        " (decompressed)"
    } else {
        ""
    }
}
