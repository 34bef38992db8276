//! dense: y = x W^T + b through the executor's matrix product.

use super::matmul::matmul;
use super::Real;
use ndarray::{Array2, ArrayView2, Axis};

pub(super) fn forward<T: Real>(x: ArrayView2<T>, w: ArrayView2<T>, b: Option<&[T]>) -> Array2<T> {
    let mut y = matmul(x, w.t());
    if let Some(b) = b {
        for mut row in y.rows_mut() {
            for (v, &bj) in row.iter_mut().zip(b) {
                *v = *v + bj;
            }
        }
    }
    y
}

pub(super) struct Grads<T> {
    pub weight: Array2<T>,
    pub bias: Vec<T>,
    pub input: Option<Array2<T>>,
}

pub(super) fn backward<T: Real>(
    x: ArrayView2<T>,
    w: ArrayView2<T>,
    dy: ArrayView2<T>,
    want_input: bool,
) -> Grads<T> {
    Grads {
        weight: matmul(dy.t(), x),
        bias: dy.sum_axis(Axis(0)).to_vec(),
        input: want_input.then(|| matmul(dy, w)),
    }
}
