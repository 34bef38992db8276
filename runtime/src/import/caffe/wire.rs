//! The protobuf binary wire format, as far as reading a `.caffemodel` needs: a message's
//! fields (number and value), varints, length-delimited bytes and packed repeated floats and
//! integers. Malformed input is an error, never a panic.

/// One field's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// A decoding error: what was malformed, at which byte of its message.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError(pub String);

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&x) = b.get(*pos) else {
            return Err(WireError(format!("a varint is cut off at byte {}", *pos)));
        };
        *pos += 1;
        v |= u64::from(x & 0x7f) << shift;
        if x & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError(format!(
        "a varint is longer than 10 bytes at byte {}",
        *pos
    )))
}

fn take<'a>(b: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], WireError> {
    let end = pos
        .checked_add(n)
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            WireError(format!(
                "a field of {n} bytes runs past the end at byte {}",
                *pos
            ))
        })?;
    let s = &b[*pos..end];
    *pos = end;
    Ok(s)
}

/// The fields of message `b`, in order: (field number, value).
pub fn fields(b: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, WireError> {
    let mut out = vec![];
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (num, ty) = (key >> 3, key & 7);
        let v = match ty {
            0 => Wire::Varint(varint(b, &mut pos)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                take(b, &mut pos, 8)?
                    .try_into()
                    .map_err(|_| WireError("fixed64".into()))?,
            )),
            2 => {
                let n = varint(b, &mut pos)?;
                let n =
                    usize::try_from(n).map_err(|_| WireError(format!("a length of {n} bytes")))?;
                Wire::Bytes(take(b, &mut pos, n)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                take(b, &mut pos, 4)?
                    .try_into()
                    .map_err(|_| WireError("fixed32".into()))?,
            )),
            other => {
                return Err(WireError(format!(
                    "wire type {other} (field {num}) at byte {pos}"
                )))
            }
        };
        out.push((num, v));
    }
    Ok(out)
}

/// A repeated float field's values, packed (bytes) or one at a time (fixed32).
pub fn floats(v: Wire<'_>, out: &mut Vec<f32>) -> Result<(), WireError> {
    match v {
        Wire::Fixed32(x) => out.push(f32::from_bits(x)),
        Wire::Bytes(b) if b.len() % 4 == 0 => out.extend(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => {
            return Err(WireError(
                "a float field is neither packed nor fixed32".into(),
            ))
        }
    }
    Ok(())
}

/// A repeated double field's values as f32 (Caffe's `double_data`).
pub fn doubles(v: Wire<'_>, out: &mut Vec<f32>) -> Result<(), WireError> {
    match v {
        Wire::Fixed64(x) => out.push(f64::from_bits(x) as f32),
        Wire::Bytes(b) if b.len() % 8 == 0 => out.extend(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32),
        ),
        _ => {
            return Err(WireError(
                "a double field is neither packed nor fixed64".into(),
            ))
        }
    }
    Ok(())
}

/// A repeated integer field's values, packed (bytes) or one at a time (varint).
pub fn ints(v: Wire<'_>, out: &mut Vec<u64>) -> Result<(), WireError> {
    match v {
        Wire::Varint(x) => out.push(x),
        Wire::Bytes(b) => {
            let mut pos = 0;
            while pos < b.len() {
                out.push(varint(b, &mut pos)?);
            }
        }
        _ => {
            return Err(WireError(
                "an integer field is neither packed nor a varint".into(),
            ))
        }
    }
    Ok(())
}

/// A string field's text.
pub fn string(v: Wire<'_>) -> Result<String, WireError> {
    match v {
        Wire::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(WireError("a string field is not length-delimited".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_packed_values_and_cut_input() {
        // field 1 varint 300; field 2 bytes "ab"; field 5 packed floats [1.0, -2.0].
        let mut b = vec![0x08, 0xac, 0x02, 0x12, 2, b'a', b'b', 0x2a, 8];
        b.extend(1.0f32.to_le_bytes());
        b.extend((-2.0f32).to_le_bytes());
        let f = fields(&b).expect("decodes");
        assert_eq!(f[0], (1, Wire::Varint(300)));
        assert_eq!(string(f[1].1), Ok("ab".to_string()));
        let mut xs = vec![];
        floats(f[2].1, &mut xs).expect("floats");
        assert_eq!(xs, [1.0, -2.0]);
        assert!(fields(&b[..b.len() - 1]).is_err(), "cut off");
        assert!(fields(&[0x08, 0xff]).is_err(), "varint cut off");
        assert!(fields(&[0x0b]).is_err(), "wire type 3");
    }
}
