//! relu, leaky_relu, sigmoid, tanh: elementwise; the backward is written in terms of the
//! output y, as the kernels compute it.

use super::Real;
use ndarray::Array2;
use netc_compiler::ops::Op;

/// The logistic function, without overflow for large |x|.
pub(super) fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        x.exp() / (T::one() + x.exp())
    }
}

fn apply<T: Real>(op: &Op, x: T) -> T {
    match op {
        Op::Relu => x.max(T::zero()),
        Op::LeakyRelu { alpha } => {
            if x > T::zero() {
                x
            } else {
                x * T::of(*alpha)
            }
        }
        Op::Sigmoid => sigmoid(x),
        Op::Tanh => x.tanh(),
        _ => x,
    }
}

/// f'(x) written in terms of the output y (as the kernels do).
fn derivative<T: Real>(op: &Op, y: T) -> T {
    match op {
        Op::Relu => {
            if y > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Op::LeakyRelu { alpha } => {
            if y > T::zero() {
                T::one()
            } else {
                T::of(*alpha)
            }
        }
        Op::Sigmoid => y * (T::one() - y),
        Op::Tanh => T::one() - y * y,
        _ => T::one(),
    }
}

pub(super) fn forward<T: Real>(op: &Op, x: &Array2<T>) -> Array2<T> {
    x.mapv(|v| apply(op, v))
}

pub(super) fn backward<T: Real>(op: &Op, y: &Array2<T>, mut dy: Array2<T>) -> Array2<T> {
    dy.zip_mut_with(y, |d, &yv| *d = *d * derivative(op, yv));
    dy
}
