//! The geometry of a 2-D sliding window (conv, maxpool, avgpool): output size and the padding
//! before the first row and column, resolved once from the op's settings and the input size.
//! Shape inference, the CPU reference and the WGSL kernels all index through this one struct,
//! so they cannot disagree about where a window starts.

use super::ShapeError;
use crate::shape::{out_size, same_padding, Padding};

/// One spatial window over an HxW input (batch and channels excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window2d {
    pub h: u64,
    pub w: u64,
    /// Kernel size (square) and the step between its taps.
    pub k: u64,
    pub dilation: u64,
    pub stride: u64,
    /// Padding before the first row / column. The padding after follows from the output
    /// size (SAME puts the odd pixel there, as TensorFlow does).
    pub pad_top: u64,
    pub pad_left: u64,
    pub oh: u64,
    pub ow: u64,
}

impl Window2d {
    pub fn new(
        h: u64,
        w: u64,
        k: u64,
        stride: u64,
        dilation: u64,
        pad: Padding,
    ) -> Result<Window2d, ShapeError> {
        let k_eff = dilation
            .checked_mul(k.saturating_sub(1))
            .and_then(|x| x.checked_add(1))
            .ok_or_else(|| ShapeError {
                message: "count overflows 64 bits".into(),
                help: None,
            })?;
        let size = |f: u64| {
            out_size(f, k_eff, stride, pad).map_err(|m| ShapeError {
                message: m,
                help: None,
            })
        };
        let (oh, ow) = (size(h)?, size(w)?);
        let (pad_top, pad_left) = match pad {
            Padding::Valid => (0, 0),
            Padding::Explicit(p) => (p, p),
            Padding::Same => (
                same_padding(h, k_eff, stride).0,
                same_padding(w, k_eff, stride).0,
            ),
        };
        Ok(Window2d {
            h,
            w,
            k,
            dilation,
            stride,
            pad_top,
            pad_left,
            oh,
            ow,
        })
    }

    /// Input row (or column) of output position `o` and tap `t`, if inside the input.
    #[inline]
    pub fn row(&self, o: u64, t: u64) -> Option<u64> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.pad_top)
            .filter(|&r| r < self.h)
    }

    #[inline]
    pub fn col(&self, o: u64, t: u64) -> Option<u64> {
        (o * self.stride + t * self.dilation)
            .checked_sub(self.pad_left)
            .filter(|&c| c < self.w)
    }

    /// Output pixels per channel.
    pub fn pixels(&self) -> u64 {
        self.oh * self.ow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_puts_the_odd_pixel_after() {
        // 6 wide, k=4, s=1: total padding 3, one before and two after.
        let w = Window2d::new(6, 6, 4, 1, 1, Padding::Same)
            .ok()
            .expect("fits");
        assert_eq!((w.oh, w.pad_top), (6, 1));
        assert_eq!(w.row(0, 0), None);
        assert_eq!(w.row(0, 1), Some(0));
        assert_eq!(w.row(5, 3), None); // the second padding row after the input
        assert_eq!(w.row(5, 1), Some(5));
    }

    #[test]
    fn dilation_spreads_the_taps() {
        let w = Window2d::new(9, 9, 3, 2, 2, Padding::Valid)
            .ok()
            .expect("fits");
        assert_eq!(w.oh, 3); // ceil((9 - 5 + 1) / 2)
        assert_eq!(w.row(2, 2), Some(8));
    }
}
