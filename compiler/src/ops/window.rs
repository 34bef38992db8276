//! The geometry of a 2-D sliding window (conv, maxpool, avgpool): output size and the padding
//! before the first row and column, resolved once from the op's settings and the input size.
//! Shape inference, the CPU reference and the WGSL kernels all index through this one struct,
//! so they cannot disagree about where a window starts.

use super::ShapeError;
use crate::shape::{out_size, out_size_ceil, same_padding, Padding};

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
    /// The declared padding after the last row / column. Windows end inside it, except the
    /// last ones of a pooling with ceil rounding, which may overhang it.
    pub pad_bottom: u64,
    pub pad_right: u64,
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
        let ((pad_top, pad_bottom), (pad_left, pad_right)) = match pad {
            Padding::Valid => ((0, 0), (0, 0)),
            Padding::Explicit(p) => ((p, p), (p, p)),
            Padding::Same => (
                same_padding(h, k_eff, stride),
                same_padding(w, k_eff, stride),
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
            pad_bottom,
            pad_right,
            oh,
            ow,
        })
    }

    /// A pooling window (no dilation); `ceil` rounds the output size up (see
    /// `shape::out_size_ceil`), so the last windows may overhang the padding after.
    pub fn pooling(
        h: u64,
        w: u64,
        k: u64,
        stride: u64,
        pad: Padding,
        ceil: bool,
    ) -> Result<Window2d, ShapeError> {
        let mut win = Window2d::new(h, w, k, stride, 1, pad)?;
        if ceil {
            let size = |f: u64| {
                out_size_ceil(f, k, stride, pad).map_err(|m| ShapeError {
                    message: m,
                    help: Some("drop `ceil=true`, or give an explicit `pad=`".into()),
                })
            };
            (win.oh, win.ow) = (size(h)?, size(w)?);
        }
        Ok(win)
    }

    /// Whether some window reaches past the padding after the input (only with ceil rounding).
    pub fn overhangs(&self) -> bool {
        let last = |o: u64| o.saturating_sub(1) * self.stride + self.k;
        last(self.oh) > self.pad_top + self.h + self.pad_bottom
            || last(self.ow) > self.pad_left + self.w + self.pad_right
    }

    /// The taps of window `o` along the rows / columns that lie inside the input or its
    /// declared padding: the divisor of average pooling (PyTorch's count_include_pad=True and
    /// Caffe count the padding but not the overhang of ceil rounding). `k` when nothing overhangs.
    pub fn rows_counted(&self, o: u64) -> u64 {
        let start = o * self.stride;
        (start + self.k).min(self.pad_top + self.h + self.pad_bottom) - start
    }

    pub fn cols_counted(&self, o: u64) -> u64 {
        let start = o * self.stride;
        (start + self.k).min(self.pad_left + self.w + self.pad_right) - start
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
    fn ceil_windows_overhang_and_count_only_the_padded_input() {
        // k=3, s=2, pad=1. 7 rows: (7+2-3)/2 = 3 exactly, so both roundings give 4 and no
        // row window overhangs; 8 columns: ceil(7/2)+1 = 5 against 4.
        let even = Window2d::pooling(7, 8, 3, 2, Padding::Explicit(1), true)
            .ok()
            .expect("fits");
        assert_eq!((even.oh, even.ow), (4, 5));
        assert!(even.overhangs());
        assert_eq!(even.rows_counted(3), 3);
        // The last column window starts at 8 in padded coordinates: 8 + 1 + 1 = 10 ends the
        // padded input, so it counts 2 of its 3 taps.
        assert_eq!(even.cols_counted(4), 2);
        assert_eq!(even.col(4, 0), Some(7));
        assert_eq!(even.col(4, 1), None);
        let floor = Window2d::pooling(7, 8, 3, 2, Padding::Explicit(1), false)
            .ok()
            .expect("fits");
        assert_eq!((floor.oh, floor.ow), (4, 4));
        assert!(!floor.overhangs());
        assert!(Window2d::pooling(7, 8, 3, 2, Padding::Same, true).is_err());
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
