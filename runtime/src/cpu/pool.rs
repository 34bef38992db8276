//! maxpool and avgpool per channel. Max pooling skips padding (PyTorch's -inf padding) and
//! keeps the first maximum of a window (row-major taps, strict comparison), as Caffe and
//! PyTorch do; its backward finds that winner again from the saved input. Average pooling
//! divides by k*k, padding included (PyTorch's count_include_pad=True).

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::window::Window2d;

/// The taps of window (oy, ox) that lie inside the input: rows r0..r1 and columns c0..c1.
/// Plain ranges, so the loops over them compile without per-tap branches.
#[inline]
fn span(win: &Window2d, oy: u64, ox: u64) -> (usize, usize, usize, usize) {
    let clip = |o: u64, pad: u64, len: u64| {
        let start = (o * win.stride) as i64 - pad as i64;
        let lo = start.max(0) as usize;
        let hi = ((start + win.k as i64).min(len as i64)).max(0) as usize;
        (lo, hi.max(lo))
    };
    let (r0, r1) = clip(oy, win.pad_top, win.h);
    let (c0, c1) = clip(ox, win.pad_left, win.w);
    (r0, r1, c0, c1)
}

/// Index of the first maximum among the window's taps (None when every tap is padding).
#[inline]
fn winner<T: Real>(plane: &[T], win: &Window2d, oy: u64, ox: u64) -> Option<usize> {
    let (r0, r1, c0, c1) = span(win, oy, ox);
    let w = win.w as usize;
    let mut best: Option<(usize, T)> = None;
    for r in r0..r1 {
        for (c, &v) in plane[r * w + c0..r * w + c1].iter().enumerate() {
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((r * w + c0 + c, v));
            }
        }
    }
    best.map(|(i, _)| i)
}

/// The sum of the window's taps inside the input.
#[inline]
fn window_sum<T: Real>(plane: &[T], win: &Window2d, oy: u64, ox: u64) -> T {
    let (r0, r1, c0, c1) = span(win, oy, ox);
    let w = win.w as usize;
    (r0..r1).fold(T::zero(), |a, r| {
        plane[r * w + c0..r * w + c1].iter().fold(a, |a, &v| a + v)
    })
}

pub(super) fn forward<T: Real>(max: bool, c: u64, win: &Window2d, x: &Array2<T>) -> Array2<T> {
    let x = x.as_standard_layout();
    let (plane, out) = ((win.h * win.w) as usize, win.pixels() as usize);
    let inv = T::of(1.0 / (win.k * win.k) as f64);
    let mut y = Array2::<T>::zeros((x.nrows(), c as usize * out));
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        let xs = xr.as_slice().expect("contiguous");
        let ys = yr.as_slice_mut().expect("contiguous");
        for ch in 0..c as usize {
            let p = &xs[ch * plane..(ch + 1) * plane];
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    let o = ch * out + (oy * win.ow + ox) as usize;
                    ys[o] = if max {
                        winner(p, win, oy, ox).map_or(T::zero(), |i| p[i])
                    } else {
                        window_sum(p, win, oy, ox) * inv
                    };
                }
            }
        }
    }
    y
}

pub(super) fn backward<T: Real>(
    max: bool,
    c: u64,
    win: &Window2d,
    x: &Array2<T>,
    dy: &Array2<T>,
) -> Array2<T> {
    let x = x.as_standard_layout();
    let dy = dy.as_standard_layout();
    let (plane, out) = ((win.h * win.w) as usize, win.pixels() as usize);
    let inv = T::of(1.0 / (win.k * win.k) as f64);
    let mut dx = Array2::<T>::zeros(x.raw_dim());
    for ((xr, dyr), mut dxr) in x.rows().into_iter().zip(dy.rows()).zip(dx.rows_mut()) {
        let xs = xr.as_slice().expect("contiguous");
        let ds = dyr.as_slice().expect("contiguous");
        let gs = dxr.as_slice_mut().expect("contiguous");
        for ch in 0..c as usize {
            let p = &xs[ch * plane..(ch + 1) * plane];
            let g = &mut gs[ch * plane..(ch + 1) * plane];
            for oy in 0..win.oh {
                for ox in 0..win.ow {
                    let d = ds[ch * out + (oy * win.ow + ox) as usize];
                    if max {
                        if let Some(i) = winner(p, win, oy, ox) {
                            g[i] = g[i] + d;
                        }
                    } else {
                        let (r0, r1, c0, c1) = span(win, oy, ox);
                        let w = win.w as usize;
                        for r in r0..r1 {
                            for v in &mut g[r * w + c0..r * w + c1] {
                                *v = *v + d * inv;
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}
