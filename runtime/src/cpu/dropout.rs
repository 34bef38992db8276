//! dropout: the mask of `ops::dropout::keep` (the WGSL kernel's hash), scaled by 1/(1-p).
//! The backward applies the same mask to dy, so one function serves both.

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::dropout::keep as dropout_keep;

/// `x` holds rows `row0..` of the batch; element i of the batch is kept by its index there.
pub(super) fn apply<T: Real>(
    x: &Array2<T>,
    train: bool,
    p: f64,
    seed: u32,
    row0: usize,
) -> Array2<T> {
    if !(train && p > 0.0) {
        return x.clone();
    }
    let scale = T::of(1.0 / (1.0 - p));
    let offset = row0 * x.ncols();
    let mut y = x.clone();
    for (i, v) in y.iter_mut().enumerate() {
        *v = if dropout_keep(seed, (offset + i) as u32, p) {
            *v * scale
        } else {
            T::zero()
        };
    }
    y
}
