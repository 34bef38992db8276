//! concat along one axis of the per-example shape: blocks copied in, and split back out for
//! the backward pass.

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::concat::layout;

pub(super) fn forward<T: Real>(xs: &[&Array2<T>], shapes: &[Vec<u64>], axis: u64) -> Array2<T> {
    let rows = xs.first().map_or(0, |x| x.nrows());
    let (outer, inner) = layout(&shapes[0], axis);
    let widths: Vec<usize> = shapes
        .iter()
        .map(|s| (s[axis as usize] * inner) as usize)
        .collect();
    let total: usize = widths.iter().sum();
    let mut y = Array2::<T>::zeros((rows, outer as usize * total));
    let mut offset = 0;
    for (x, &wd) in xs.iter().zip(&widths) {
        for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
            for o in 0..outer as usize {
                for j in 0..wd {
                    yr[o * total + offset + j] = xr[o * wd + j];
                }
            }
        }
        offset += wd;
    }
    y
}

pub(super) fn backward<T: Real>(dy: &Array2<T>, shapes: &[Vec<u64>], axis: u64) -> Vec<Array2<T>> {
    let (outer, inner) = layout(&shapes[0], axis);
    let widths: Vec<usize> = shapes
        .iter()
        .map(|s| (s[axis as usize] * inner) as usize)
        .collect();
    let total: usize = widths.iter().sum();
    let mut offset = 0;
    let mut out = vec![];
    for &wd in &widths {
        let mut dx = Array2::<T>::zeros((dy.nrows(), outer as usize * wd));
        for (dr, mut xr) in dy.rows().into_iter().zip(dx.rows_mut()) {
            for o in 0..outer as usize {
                for j in 0..wd {
                    xr[o * wd + j] = dr[o * total + offset + j];
                }
            }
        }
        offset += wd;
        out.push(dx);
    }
    out
}
