//! maxpool and avgpool per channel. Max pooling skips padding (PyTorch's -inf padding) and
//! keeps the first maximum of a window (row-major taps, strict comparison), as Caffe and
//! PyTorch do; its backward finds that winner again from the saved input. Average pooling
//! divides by k*k, padding included (PyTorch's count_include_pad=True); with ceil rounding,
//! a window that overhangs the padding after the input divides by its taps inside the input
//! and its padding only (PyTorch's ceil_mode=True, Caffe).

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::window::Window2d;
use rayon::prelude::*;

/// The input indices o*stride-pad .. +k along one axis that lie inside 0..len.
/// Plain ranges, so the loops over them compile without per-tap branches.
#[inline]
fn clip(win: &Window2d, o: u64, pad: u64, len: u64) -> (usize, usize) {
    let start = (o * win.stride) as i64 - pad as i64;
    let lo = start.max(0) as usize;
    let hi = ((start + win.k as i64).min(len as i64)).max(0) as usize;
    (lo, hi.max(lo))
}

/// Every window's rows and columns inside the input, and the taps average pooling counts
/// along each axis, computed once per call rather than per output (they repeat across
/// channels and samples).
struct Spans {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    /// 1 / divisor of each window, row-major (oh x ow): one division per window per call, not
    /// per output of every channel and sample.
    inv: Vec<f64>,
    ow: usize,
}

impl Spans {
    fn of(win: &Window2d) -> Spans {
        Spans {
            rows: (0..win.oh)
                .map(|o| clip(win, o, win.pad_top, win.h))
                .collect(),
            cols: (0..win.ow)
                .map(|o| clip(win, o, win.pad_left, win.w))
                .collect(),
            inv: (0..win.oh)
                .flat_map(|oy| {
                    (0..win.ow)
                        .map(move |ox| 1.0 / (win.rows_counted(oy) * win.cols_counted(ox)) as f64)
                })
                .collect(),
            ow: win.ow as usize,
        }
    }

    /// Average pooling's 1 / divisor of window (oy, ox): 1/(k*k) unless it overhangs.
    #[inline]
    fn scale<T: Real>(&self, oy: usize, ox: usize) -> T {
        T::of(self.inv[oy * self.ow + ox])
    }
}

/// Index of the first maximum among a window's taps (None when every tap is padding).
#[inline]
fn winner<T: Real>(
    plane: &[T],
    w: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) -> Option<usize> {
    if r0 >= r1 || c0 >= c1 {
        return None;
    }
    let (mut best, mut bv) = (r0 * w + c0, plane[r0 * w + c0]);
    for r in r0..r1 {
        for (i, &v) in plane[r * w + c0..r * w + c1].iter().enumerate() {
            if v > bv {
                (best, bv) = (r * w + c0 + i, v);
            }
        }
    }
    Some(best)
}

/// The sum of a window's taps inside the input.
#[inline]
fn window_sum<T: Real>(
    plane: &[T],
    w: usize,
    (r0, r1): (usize, usize),
    (c0, c1): (usize, usize),
) -> T {
    (r0..r1).fold(T::zero(), |a, r| {
        plane[r * w + c0..r * w + c1].iter().fold(a, |a, &v| a + v)
    })
}

/// Samples run in parallel (each writes only its own output row).
pub(super) fn forward<T: Real>(max: bool, c: u64, win: &Window2d, x: &Array2<T>) -> Array2<T> {
    let x = x.as_standard_layout();
    let (plane, out) = ((win.h * win.w) as usize, win.pixels() as usize);
    let (w, ow) = (win.w as usize, win.ow as usize);
    let sp = Spans::of(win);
    let mut y = Array2::<T>::zeros((x.nrows(), c as usize * out));
    let (xs, ys) = (
        x.as_slice().expect("contiguous"),
        y.as_slice_mut().expect("contiguous"),
    );
    let rows = xs
        .par_chunks(c as usize * plane)
        .zip(ys.par_chunks_mut(c as usize * out));
    rows.for_each(|(xs, ys)| {
        for (p, yp) in xs.chunks(plane).zip(ys.chunks_mut(out)) {
            for (oy, &rs) in sp.rows.iter().enumerate() {
                for (ox, &cs) in sp.cols.iter().enumerate() {
                    yp[oy * ow + ox] = if max {
                        winner(p, w, rs, cs).map_or(T::zero(), |i| p[i])
                    } else {
                        window_sum(p, w, rs, cs) * sp.scale::<T>(oy, ox)
                    };
                }
            }
        }
    });
    y
}

/// Max pooling finds each window's winner again from the input (the same first maximum the
/// forward pass took); samples run in parallel.
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
    let (w, ow) = (win.w as usize, win.ow as usize);
    let sp = Spans::of(win);
    let mut dx = Array2::<T>::zeros(x.raw_dim());
    let xs = x.as_slice().expect("contiguous");
    let ds = dy.as_slice().expect("contiguous");
    let gs = dx.as_slice_mut().expect("contiguous");
    let (row_in, row_out) = (c as usize * plane, c as usize * out);
    let rows = xs
        .par_chunks(row_in)
        .zip(ds.par_chunks(row_out))
        .zip(gs.par_chunks_mut(row_in));
    rows.for_each(|((xs, ds), gs)| {
        let planes = xs
            .chunks(plane)
            .zip(ds.chunks(out))
            .zip(gs.chunks_mut(plane));
        for ((p, dp), g) in planes {
            for (oy, &rs) in sp.rows.iter().enumerate() {
                for (ox, &cs) in sp.cols.iter().enumerate() {
                    let d = dp[oy * ow + ox];
                    if max {
                        if let Some(i) = winner(p, w, rs, cs) {
                            g[i] = g[i] + d;
                        }
                    } else {
                        let inv = sp.scale::<T>(oy, ox);
                        for r in rs.0..rs.1 {
                            for v in &mut g[r * w + cs.0..r * w + cs.1] {
                                *v = *v + d * inv;
                            }
                        }
                    }
                }
            }
        }
    });
    dx
}
