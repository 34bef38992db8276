//! softmax over the last axis (rows of the [batch, features] activation).

use super::Real;
use ndarray::Array2;

pub(super) fn forward<T: Real>(x: &Array2<T>) -> Array2<T> {
    let mut y = x.clone();
    for mut row in y.rows_mut() {
        let mx = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - mx).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    y
}

/// dx = y * (dy - sum(dy * y)) per row.
pub(super) fn backward<T: Real>(y: &Array2<T>, mut dx: Array2<T>) -> Array2<T> {
    for (mut drow, yrow) in dx.rows_mut().into_iter().zip(y.rows()) {
        let dot = drow
            .iter()
            .zip(yrow.iter())
            .fold(T::zero(), |a, (&d, &v)| a + d * v);
        for (d, &v) in drow.iter_mut().zip(yrow.iter()) {
            *d = v * (*d - dot);
        }
    }
    dx
}
