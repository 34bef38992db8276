//! Output-size rules for windowed ops (conv, pooling).
//!
//! - VALID (no padding): `ceil((F - k + 1) / s)` (TensorFlow's rule)
//! - SAME: `ceil(F / s)`, padding split with the extra row/column at the bottom/right
//! - explicit padding p: `floor((F + 2p - k) / s) + 1`
//! - pooling's `ceil=true` (Caffe, PyTorch's ceil_mode): `ceil((F + 2p - k) / s) + 1`, less one
//!   when the last window would start past the input and its leading padding

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
    Explicit(u64),
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Padding::Valid => write!(f, "valid"),
            Padding::Same => write!(f, "same"),
            Padding::Explicit(p) => write!(f, "{p}"),
        }
    }
}

/// Output size along one axis of length `f` for a window `k` (already dilated) and stride `s`.
pub fn out_size(f: u64, k: u64, s: u64, pad: Padding) -> Result<u64, String> {
    if s == 0 || k == 0 {
        return Err("kernel size and stride must be at least 1".into());
    }
    match pad {
        Padding::Valid => {
            if k > f {
                return Err(format!(
                    "kernel {k} is larger than its input {f} (padding valid)"
                ));
            }
            Ok((f - k + 1).div_ceil(s))
        }
        Padding::Same => Ok(f.div_ceil(s)),
        Padding::Explicit(p) => {
            let padded = p
                .checked_mul(2)
                .and_then(|x| x.checked_add(f))
                .ok_or_else(|| "padding overflows 64 bits".to_string())?;
            if k > padded {
                return Err(format!(
                    "kernel {k} is larger than its padded input {padded} ({f} + 2x{p})"
                ));
            }
            Ok((padded - k) / s + 1)
        }
    }
}

/// Output size along one axis with pooling's ceil rounding (PyTorch's ceil_mode=True; Caffe's
/// rule when p > 0): `ceil((F + 2p - k) / s) + 1`, less one when the last window would start at
/// or past `F + p` (it must start inside the input or its leading padding). SAME already rounds
/// up, so it takes no ceil rounding.
pub fn out_size_ceil(f: u64, k: u64, s: u64, pad: Padding) -> Result<u64, String> {
    let p = match pad {
        Padding::Valid => 0,
        Padding::Explicit(p) => p,
        Padding::Same => {
            return Err(
                "ceil rounding needs an explicit or valid padding (SAME already rounds up)".into(),
            )
        }
    };
    let floor = out_size(f, k, s, pad)?;
    // out_size checked k <= f + 2p and s >= 1, and f + 2p fits.
    let span = f + 2 * p - k;
    let mut o = span.div_ceil(s) + 1;
    if o > floor && (o - 1) * s >= f + p {
        o -= 1;
    }
    Ok(o)
}

/// The (before, after) padding SAME implies: total `max((out-1)*s + k - F, 0)`, the odd pixel
/// going after (bottom/right), as TensorFlow does.
pub fn same_padding(f: u64, k: u64, s: u64) -> (u64, u64) {
    let out = f.div_ceil(s);
    let total = ((out.saturating_sub(1)) * s + k).saturating_sub(f);
    (total / 2, total - total / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alexnet_sizes() {
        assert_eq!(out_size(227, 11, 4, Padding::Valid), Ok(55));
        assert_eq!(out_size(55, 3, 2, Padding::Valid), Ok(27));
        assert_eq!(out_size(27, 5, 1, Padding::Same), Ok(27));
        assert_eq!(out_size(13, 3, 1, Padding::Explicit(1)), Ok(13));
        assert_eq!(out_size(13, 3, 2, Padding::Valid), Ok(6));
    }

    #[test]
    fn ceil_rounding() {
        // ResNet-50's pool1 (Caffe 56, floor 55) and PyTorch's own examples.
        assert_eq!(out_size_ceil(112, 3, 2, Padding::Valid), Ok(56));
        assert_eq!(out_size(112, 3, 2, Padding::Valid), Ok(55));
        assert_eq!(out_size_ceil(112, 3, 2, Padding::Explicit(1)), Ok(57));
        assert_eq!(out_size(112, 3, 2, Padding::Explicit(1)), Ok(56));
        // 5 + 2 - 2 = 5 over stride 2: ceil gives 4, but the 4th window would start at 6 =
        // F + p, all padding, so it is dropped.
        assert_eq!(out_size_ceil(5, 2, 2, Padding::Explicit(1)), Ok(3));
        assert_eq!(out_size_ceil(7, 3, 2, Padding::Valid), Ok(3));
        assert_eq!(out_size_ceil(8, 3, 2, Padding::Valid), Ok(4));
        // Stride past the kernel: the window at 6 would start outside a 5-pixel input.
        assert_eq!(out_size_ceil(5, 1, 3, Padding::Valid), Ok(2));
        assert!(out_size_ceil(5, 3, 2, Padding::Same).is_err());
        assert!(out_size_ceil(2, 3, 2, Padding::Valid).is_err());
    }

    #[test]
    fn same_rule_and_split() {
        assert_eq!(out_size(28, 3, 2, Padding::Same), Ok(14));
        assert_eq!(out_size(7, 2, 2, Padding::Same), Ok(4));
        // 28 with k=3 s=2: out 14, total padding 13*2+3-28 = 1, all of it after.
        assert_eq!(same_padding(28, 3, 2), (0, 1));
        assert_eq!(same_padding(27, 5, 1), (2, 2));
        assert_eq!(same_padding(6, 4, 1), (1, 2));
    }

    #[test]
    fn explicit_rule() {
        assert_eq!(out_size(32, 5, 1, Padding::Explicit(2)), Ok(32));
        assert_eq!(out_size(10, 3, 3, Padding::Explicit(1)), Ok(4));
        assert!(out_size(2, 5, 1, Padding::Explicit(1)).is_err());
        assert!(out_size(2, 3, 1, Padding::Valid).is_err());
        assert!(out_size(4, 3, 0, Padding::Valid).is_err());
    }

    proptest! {
        #[test]
        fn valid_equals_explicit_zero(f in 1u64..64, k in 1u64..16, s in 1u64..8) {
            let v = out_size(f, k, s, Padding::Valid);
            let e = out_size(f, k, s, Padding::Explicit(0));
            prop_assert_eq!(v.is_ok(), e.is_ok());
            if let (Ok(a), Ok(b)) = (v, e) {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn same_padding_reproduces_same_size(f in 1u64..64, k in 1u64..16, s in 1u64..8) {
            let (a, b) = same_padding(f, k, s);
            prop_assert!(b == a || b == a + 1);
            // Explicit asymmetric padding a/b gives the SAME size.
            let padded = f + a + b;
            prop_assume!(padded >= k);
            prop_assert_eq!((padded - k) / s + 1, f.div_ceil(s));
        }
    }
}
