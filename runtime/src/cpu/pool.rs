//! maxpool and avgpool per channel. Max pooling skips padding (PyTorch's -inf padding) and
//! keeps the first maximum of a window (row-major taps, strict comparison), as Caffe and
//! PyTorch do; its backward finds that winner again from the saved input. Average pooling
//! divides by k*k, padding included (PyTorch's count_include_pad=True).

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::window::Window2d;

/// The input index (within one channel plane) of each valid tap of window (oy, ox).
fn taps(win: &Window2d, oy: u64, ox: u64) -> impl Iterator<Item = usize> + '_ {
    (0..win.k).flat_map(move |ki| {
        (0..win.k).filter_map(move |kj| {
            let r = win.row(oy, ki)?;
            let c = win.col(ox, kj)?;
            Some((r * win.w + c) as usize)
        })
    })
}

/// Index of the first maximum among the window's taps (None when every tap is padding).
fn winner<T: Real>(plane: &[T], win: &Window2d, oy: u64, ox: u64) -> Option<usize> {
    let mut best: Option<(usize, T)> = None;
    for i in taps(win, oy, ox) {
        if best.is_none_or(|(_, v)| plane[i] > v) {
            best = Some((i, plane[i]));
        }
    }
    best.map(|(i, _)| i)
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
                        taps(win, oy, ox).fold(T::zero(), |a, i| a + p[i]) * inv
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
                        for i in taps(win, oy, ox) {
                            g[i] = g[i] + d * inv;
                        }
                    }
                }
            }
        }
    }
    dx
}
