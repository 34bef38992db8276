//! conv_transpose on the CPU: the adjoint conv's code run backwards (see
//! `netc_compiler::ops::conv_transpose`). Forward: the adjoint conv's input gradient of x, plus
//! the bias. Input gradient: the adjoint conv's forward pass of dy. Weight gradient: the
//! adjoint conv's weight gradient with x as its output gradient and dy as its input.

use super::conv;
use super::Real;
use ndarray::Array2;
use netc_compiler::ops::conv_transpose::TransposeGeometry;

pub(super) fn forward<T: Real>(
    g: &TransposeGeometry,
    x: &Array2<T>,
    w: &[T],
    b: Option<&[T]>,
) -> Array2<T> {
    let (_, y) = conv::adjoint(&g.conv, None, Some(w), x);
    let mut y = y.expect("the input gradient was asked for");
    if let Some(b) = b {
        let pixels = (g.conv.win.h * g.conv.win.w) as usize;
        for mut row in y.rows_mut() {
            for (c, plane) in row
                .as_slice_mut()
                .expect("fresh rows are contiguous")
                .chunks_mut(pixels)
                .enumerate()
            {
                plane.iter_mut().for_each(|v| *v = *v + b[c]);
            }
        }
    }
    y
}

pub(super) fn backward<T: Real>(
    g: &TransposeGeometry,
    x: &Array2<T>,
    w: &[T],
    dy: &Array2<T>,
    want: conv::Wanted,
) -> conv::Grads<T> {
    let (weight, _) = if want.weight {
        conv::adjoint(&g.conv, Some(dy), None, x)
    } else {
        (None, None)
    };
    let pixels = g.conv.win.h * g.conv.win.w;
    conv::Grads {
        weight: weight.unwrap_or_default(),
        bias: conv::bias_gradient(dy, g.bias && want.bias, g.conv.cin, pixels),
        input: want.input.then(|| conv::forward(&g.conv, dy, w, None)),
    }
}
