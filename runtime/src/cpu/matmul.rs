//! The CPU executor's matrix product, through the `gemm` crate.
//!
//! Why gemm: on the product shapes netc's layers make (conv im2col products, dense layers at
//! small batch) it ran 1.3-2.4x faster than ndarray's matrixmultiply and on par with
//! OpenBLAS on the 2-core machine this was measured on (README, "CPU matrix product";
//! `cargo bench -p netc-runtime --bench matmul` repeats the first two), it is pure Rust (no
//! system BLAS to install on a fresh machine), and it takes f64 as well as f32, which the
//! gradient check's reference needs. It also takes any row and column strides, so transposed
//! operands are read in place instead of being copied.

use super::Real;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use std::mem::MaybeUninit;

/// `c = a b`, or `c += a b` when `accumulate`.
pub(crate) fn matmul_into<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    accumulate: bool,
    c: ArrayViewMut2<T>,
) {
    into_view(a, b, accumulate, c, true)
}

/// [`matmul_into`] on the calling thread only, for products inside a parallel loop.
pub(crate) fn matmul_serial_into<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    accumulate: bool,
    c: ArrayViewMut2<T>,
) {
    into_view(a, b, accumulate, c, false)
}

fn into_view<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    accumulate: bool,
    mut c: ArrayViewMut2<T>,
    parallel: bool,
) {
    assert_eq!(
        c.dim(),
        (a.nrows(), b.ncols()),
        "the output has the product's shape"
    );
    let (crs, ccs) = (c.strides()[0], c.strides()[1]);
    // SAFETY: `c` is a live view of the product's shape with these strides, borrowed mutably
    // (so it aliases neither operand), and initialised, so reading it to accumulate is fine.
    unsafe { gemm_raw(a, b, accumulate, c.as_mut_ptr(), (crs, ccs), parallel) }
}

/// `c = a b` on the calling thread only, into `c` taken as a row-major [a.nrows(), b.ncols()]
/// matrix that need not be initialised: the product writes every element and reads none.
pub(crate) fn matmul_serial_to<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    c: &mut [MaybeUninit<T>],
) {
    let n = b.ncols();
    assert_eq!(c.len(), a.nrows() * n, "the output has the product's size");
    // SAFETY: `c` is a live, exclusively borrowed region of exactly the product's size, laid
    // out row-major; without `accumulate` gemm_raw writes it all and reads nothing of it.
    unsafe {
        gemm_raw(
            a,
            b,
            false,
            c.as_mut_ptr().cast::<T>(),
            (n as isize, 1),
            false,
        )
    }
}

/// `a b` as a new array, not zeroed first: the product writes every element without reading
/// it (zeroing a DCGAN conv's 25 MB column gradient first cost 1.5 ms of its 14).
pub(crate) fn matmul<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    fresh(a, b, true)
}

/// [`matmul`] on the calling thread only, for products inside a parallel loop.
pub(crate) fn matmul_serial<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    fresh(a, b, false)
}

fn fresh<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>, parallel: bool) -> Array2<T> {
    let (m, n) = (a.nrows(), b.ncols());
    let mut c = Array2::<T>::uninit((m, n));
    // SAFETY: `c` is a fresh standard-layout [m, n] array; without `accumulate` gemm_raw
    // writes every element of it (zeros when the inner dimension is empty) and reads none, so
    // it is initialised afterwards.
    unsafe {
        gemm_raw(
            a,
            b,
            false,
            c.as_mut_ptr().cast::<T>(),
            (n as isize, 1),
            parallel,
        );
        c.assume_init()
    }
}

/// `c = a b` or `c += a b` through gemm, for an [a.nrows(), b.ncols()] output at `c` with
/// strides `(row, column)`, on rayon's pool when `parallel`.
///
/// # Safety
/// `c` with those strides must address a live, writable region of the product's shape that
/// overlaps neither operand; with `accumulate` it must be initialised.
unsafe fn gemm_raw<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    accumulate: bool,
    c: *mut T,
    (crs, ccs): (isize, isize),
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "inner dimensions agree");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m as isize {
                for j in 0..n as isize {
                    // SAFETY: (i, j) lies inside the caller's region.
                    unsafe { c.offset(i * crs + j * ccs).write(T::zero()) };
                }
            }
        }
        return;
    }
    let (ars, acs) = (a.strides()[0], a.strides()[1]);
    let (brs, bcs) = (b.strides()[0], b.strides()[1]);
    // SAFETY: the operands are live views whose shapes and strides are passed with them, so
    // every element gemm touches lies inside its view; the caller vouches for `c`. gemm does
    // not read `c` unless `accumulate` (its `read_dst`). T is f32 or f64 (the only `Real`s),
    // both of which gemm implements.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            ccs,
            crs,
            accumulate,
            a.as_ptr(),
            acs,
            ars,
            b.as_ptr(),
            bcs,
            brs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            if parallel {
                gemm::Parallelism::Rayon(0)
            } else {
                gemm::Parallelism::None
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn arr(m: usize, n: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 3 + seed) % 11) as f64 - 5.0)
    }

    fn naive(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Array2<f64> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|p| a[[i, p]] * b[[p, j]]).sum()
        })
    }

    #[test]
    fn matches_the_definition_on_transposed_and_sliced_operands() {
        let a = arr(37, 19, 1);
        let b = arr(23, 37, 2);
        // a^T b^T, both read through swapped strides
        let got = matmul(a.t(), b.t());
        assert_eq!(got, naive(a.t(), b.t()));
        // a column slice with a row stride larger than its width
        let wide = arr(19, 40, 3);
        let part = wide.slice(s![.., 3..30]);
        assert_eq!(matmul(a.view(), part), naive(a.view(), part));
    }

    #[test]
    fn accumulates_into_a_strided_output() {
        let a = arr(5, 4, 1);
        let b = arr(4, 6, 2);
        let mut big = arr(5, 9, 3);
        let before = big.clone();
        matmul_into(a.view(), b.view(), true, big.slice_mut(s![.., 1..7]));
        let want = &before.slice(s![.., 1..7]) + &naive(a.view(), b.view());
        assert_eq!(big.slice(s![.., 1..7]), want);
        assert_eq!(big.column(0), before.column(0));
        assert_eq!(big.column(8), before.column(8));
        // an empty inner dimension gives zeros, or leaves the output as it was
        let mut c = arr(2, 3, 4);
        matmul_into(arr(2, 0, 0).view(), arr(0, 3, 0).view(), true, c.view_mut());
        assert_eq!(c, arr(2, 3, 4));
        matmul_into(
            arr(2, 0, 0).view(),
            arr(0, 3, 0).view(),
            false,
            c.view_mut(),
        );
        assert_eq!(c, Array2::<f64>::zeros((2, 3)));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let a = arr(64, 130, 1);
        let b = arr(130, 70, 2);
        let want = naive(a.view(), b.view());
        let got = matmul(a.mapv(|v| v as f32).view(), b.mapv(|v| v as f32).view());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(*g as f64, *w, "small integers are exact in f32");
        }
    }
}
