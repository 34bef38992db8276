//! NumPy `.npy` files of `f32`, so that activations and weights can be inspected with
//! `numpy.load`. Format v1.0: `\x93NUMPY`, version 1.0, a little-endian `u16` header length,
//! a Python dict literal padded with spaces and ending in `\n` so that the data starts at a
//! multiple of 64 bytes, then the data (`<f4`, C order).

use std::path::Path;

use super::{read_file, write_atomic, IoError};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Writes `data` with `shape` (C order; `shape` `[]` is a scalar) as a v1.0 `.npy` file.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), IoError> {
    let invalid = |problem: String| IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count != Some(data.len()) {
        return Err(invalid(format!(
            "shape {shape:?} does not hold {} values",
            data.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' must be a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| {
        invalid(format!(
            "shape {shape:?} is too long for a .npy v1.0 header"
        ))
    })?;

    let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Reads a `.npy` file of little-endian `f32` in C order (v1.0 or v2.0): `(shape, data)`.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>), IoError> {
    let bytes = read_file(path)?;
    let bad = |problem: &str| IoError::Format {
        path: path.to_path_buf(),
        problem: format!("not a float32 .npy file: {problem}"),
    };
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or non-text header"))?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("'descr':'<f4'") {
        return Err(bad(&format!(
            "dtype is not '<f4' in header {}",
            header.trim()
        )));
    }
    if !compact.contains("'fortran_order':False") {
        return Err(bad("Fortran order is not supported"));
    }
    let shape_text = compact
        .split_once("'shape':(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .ok_or_else(|| bad("no shape in header"))?;
    let shape = shape_text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(&format!("bad shape ({shape_text})")))?;
    let data = &bytes[start + header_len..];
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if count.and_then(|c| c.checked_mul(4)) != Some(data.len()) {
        return Err(bad(&format!(
            "shape {shape:?} needs {} data bytes but the file has {}",
            count.map_or("too many".to_string(), |c| (c * 4).to_string()),
            data.len()
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_dir;

    #[test]
    fn round_trip_and_header() {
        let dir = test_dir("npy");
        let p = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let data = [&data[..], &[f32::MIN_POSITIVE, -0.0, f32::INFINITY]].concat();
        write_npy_f32(&p, &[3, 9], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len(), 10 + header_len + 27 * 4);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 9), }"));
        assert!(header.ends_with(" \n"));
        let (shape, back) = read_npy_f32(&p).unwrap();
        assert_eq!(shape, vec![3, 9]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&data));

        write_npy_f32(&p, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        assert!(text.contains("'shape': (4,), }"));
        assert_eq!(
            read_npy_f32(&p).unwrap(),
            (vec![4], vec![1.0, 2.0, 3.0, 4.0])
        );
        write_npy_f32(&p, &[], &[7.5]).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap(), (vec![], vec![7.5]));
        write_npy_f32(&p, &[2, 0], &[]).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap(), (vec![2, 0], vec![]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors() {
        let dir = test_dir("npy-err");
        let p = dir.join("b.npy");
        let e = write_npy_f32(&p, &[2, 2], &[1.0]).unwrap_err().to_string();
        assert!(e.ends_with("shape [2, 2] does not hold 1 values"), "{e}");
        assert!(!p.exists());
        write_npy_f32(&p, &[2, 2], &[1.0; 4]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        let e = read_npy_f32(&p).unwrap_err().to_string();
        assert!(e.contains("needs 16 data bytes but the file has 15"), "{e}");
        std::fs::write(&p, b"hello").unwrap();
        assert!(read_npy_f32(&p).unwrap_err().to_string().contains("magic"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
