//! lrn across channels, the paper's formula: b_c = a_c / s_c^beta with
//! s_c = k + alpha * sum_{j in window(c)} a_j^2 (alpha not divided by size).
//! Backward: da_i = dy_i s_i^-beta - 2 alpha beta a_i sum_{c: i in window(c)} dy_c a_c s_c^(-beta-1).

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::lrn::window;

#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub size: u64,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

/// s_c for every channel and pixel of one example ([channels * pixels]).
fn scale<T: Real>(a: &[T], ch: usize, px: usize, st: Settings) -> Vec<T> {
    let (k, alpha) = (T::of(st.k), T::of(st.alpha));
    let mut s = vec![T::zero(); ch * px];
    for c in 0..ch {
        let (lo, hi) = window(c as u64, st.size, ch as u64);
        for j in lo as usize..=hi as usize {
            for p in 0..px {
                let v = a[j * px + p];
                s[c * px + p] = s[c * px + p] + v * v;
            }
        }
        for p in 0..px {
            s[c * px + p] = k + alpha * s[c * px + p];
        }
    }
    s
}

fn planes(shape: &[u64]) -> (usize, usize) {
    (shape[0] as usize, (shape[1] * shape[2]) as usize)
}

pub(super) fn forward<T: Real>(shape: &[u64], st: Settings, x: &Array2<T>) -> Array2<T> {
    let x = x.as_standard_layout();
    let (ch, px) = planes(shape);
    let mut y = Array2::<T>::zeros(x.raw_dim());
    let nb = T::of(-st.beta);
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        let a = xr.as_slice().expect("contiguous");
        let s = scale(a, ch, px, st);
        for ((yv, &av), &sv) in yr.iter_mut().zip(a).zip(&s) {
            *yv = av * sv.powf(nb);
        }
    }
    y
}

pub(super) fn backward<T: Real>(
    shape: &[u64],
    st: Settings,
    x: &Array2<T>,
    dy: &Array2<T>,
) -> Array2<T> {
    let x = x.as_standard_layout();
    let dy = dy.as_standard_layout();
    let (ch, px) = planes(shape);
    let mut dx = Array2::<T>::zeros(x.raw_dim());
    let (nb, nb1) = (T::of(-st.beta), T::of(-st.beta - 1.0));
    let two_ab = T::of(2.0 * st.alpha * st.beta);
    for ((xr, dr), mut gr) in x.rows().into_iter().zip(dy.rows()).zip(dx.rows_mut()) {
        let a = xr.as_slice().expect("contiguous");
        let d = dr.as_slice().expect("contiguous");
        let g = gr.as_slice_mut().expect("contiguous");
        let s = scale(a, ch, px, st);
        // t_c = dy_c a_c s_c^(-beta-1)
        let t: Vec<T> = (0..ch * px).map(|i| d[i] * a[i] * s[i].powf(nb1)).collect();
        for c in 0..ch {
            // Channel i is in window(c) exactly when c is in the mirrored window of i.
            let lo = c.saturating_sub(((st.size - 1) / 2) as usize);
            let hi = (c + (st.size / 2) as usize).min(ch - 1);
            for p in 0..px {
                let i = c * px + p;
                let mut acc = T::zero();
                for cc in lo..=hi {
                    acc = acc + t[cc * px + p];
                }
                g[i] = d[i] * s[i].powf(nb) - two_ab * a[i] * acc;
            }
        }
    }
    dx
}
