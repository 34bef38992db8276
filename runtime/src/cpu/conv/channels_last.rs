//! conv's channels-last lowering, for layers with many input channels per group.
//!
//! Why: the planar column matrix ([taps, pixels]) is filled by a gather per element when the
//! stride is above 1 (a DCGAN discriminator's 4x4 stride-2 conv2: 6.4 M single-float copies
//! per batch of 128, a quarter of the layer's time), and col2im scatters the same way. With
//! the images stored pixel by pixel (HWC) and the columns as [pixels, taps] with the taps in
//! (ki, kj, channel) order, every tap of a pixel is one contiguous run of the group's
//! channels, and a kernel row of an ungrouped conv is one run of k x C. The price is
//! transposing the input and the output between CHW and HWC once per pass (for a DCGAN's
//! conv2 the input is a quarter of the columns' size, the output an eighth) and the weight
//! into (ki, kj, channel) order.

use super::{Cols, Dims};
use crate::cpu::matmul::{matmul, matmul_into, matmul_serial, matmul_serial_into};
use crate::cpu::Real;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};
use netc_compiler::ops::conv::ConvGeometry;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// An array every element of which `fill` writes, allocated without zeroing it first (zeroing
/// a 25 MB column matrix that is then overwritten took 1.5 ms, a tenth of the product).
fn written<T: Real>(
    rows: usize,
    cols: usize,
    fill: impl FnOnce(&mut [MaybeUninit<T>]),
) -> Array2<T> {
    let mut a = Array2::<T>::uninit((rows, cols));
    fill(a.as_slice_mut().expect("fresh arrays are contiguous"));
    // SAFETY: every caller's `fill` writes every element (a transposition, a column matrix
    // whose every run is copied or cleared, or a product that does not read its output).
    unsafe { a.assume_init() }
}

/// One sample's pixels in HWC order: [batch, channels * pixels] (CHW rows) to
/// [batch * pixels, channels].
fn to_hwc<T: Real>(x: ArrayView2<T>, channels: usize, pixels: usize) -> Array2<T> {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    // Every output row is paired with an input row of this length (and so written).
    assert_eq!(x.ncols(), channels * pixels, "CHW rows of the layer's size");
    written(x.nrows() * pixels, channels, |os| {
        os.par_chunks_mut(channels * pixels)
            .zip(xs.par_chunks(channels * pixels))
            .for_each(|(dst, src)| transpose(src, dst, channels, pixels));
    })
}

/// [batch * pixels, channels] (HWC) back to [batch, channels * pixels] (CHW), adding `bias`
/// per channel when given.
fn to_chw<T: Real>(x: &Array2<T>, pixels: usize, bias: Option<&[T]>) -> Array2<T> {
    let channels = x.ncols();
    let batch = x.nrows() / pixels.max(1);
    assert_eq!(x.nrows(), batch * pixels, "whole samples of HWC pixels");
    let xs = x.as_slice().expect("fresh arrays are contiguous");
    let mut out = written(batch, channels * pixels, |os| {
        os.par_chunks_mut(channels * pixels)
            .zip(xs.par_chunks(channels * pixels))
            .for_each(|(dst, src)| transpose(src, dst, pixels, channels));
    });
    if let Some(b) = bias {
        let os = out.as_slice_mut().expect("fresh arrays are contiguous");
        os.par_chunks_mut(channels * pixels).for_each(|dst| {
            for (plane, &bc) in dst.chunks_mut(pixels).zip(b) {
                plane.iter_mut().for_each(|v| *v = *v + bc);
            }
        });
    }
    out
}

/// `dst` ([cols, rows]) = `src` ([rows, cols])^T, in 8 x 8 blocks (with AVX shuffles for
/// f32 where the CPU has them: 2.5-3.5x faster than the portable blocks on a DCGAN's
/// activations, which are 8% of its step), the ragged edges element by element.
fn transpose<T: Real>(src: &[T], dst: &mut [MaybeUninit<T>], rows: usize, cols: usize) {
    const B: usize = 8;
    assert!(
        src.len() == rows * cols && dst.len() == rows * cols,
        "transpose sizes"
    );
    let (rb, cb) = (rows - rows % B, cols - cols % B);
    #[cfg(target_arch = "x86_64")]
    let avx = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && std::is_x86_feature_detected!("avx");
    #[cfg(not(target_arch = "x86_64"))]
    let avx = false;
    for r0 in (0..rb).step_by(B) {
        for c0 in (0..cb).step_by(B) {
            if avx {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: T is f32 (checked above), so both slices hold f32s; the block's rows
                // r0..r0+8 and columns c0..c0+8 lie inside [rows, cols] (rb <= rows, cb <= cols)
                // and both slices hold at least rows x cols elements (asserted); the CPU has
                // AVX (detected above).
                unsafe {
                    avx_block(
                        src.as_ptr().cast::<f32>().add(r0 * cols + c0),
                        cols,
                        dst.as_mut_ptr().cast::<f32>().add(c0 * rows + r0),
                        rows,
                    )
                }
                continue;
            }
            let mut t = [[T::zero(); B]; B];
            for (i, row) in src[r0 * cols + c0..].chunks(cols).take(B).enumerate() {
                for (j, &v) in row[..B].iter().enumerate() {
                    t[j][i] = v;
                }
            }
            for (j, tj) in t.iter().enumerate() {
                dst[(c0 + j) * rows + r0..(c0 + j) * rows + r0 + B].write_copy_of_slice(tj);
            }
        }
        for c in cb..cols {
            for r in r0..r0 + B {
                dst[c * rows + r].write(src[r * cols + c]);
            }
        }
    }
    for r in rb..rows {
        for c in 0..cols {
            dst[c * rows + r].write(src[r * cols + c]);
        }
    }
}

/// The 8 x 8 f32 block at `src` (rows `ss` apart) written transposed at `dst` (rows `ds`
/// apart): unpack pairs, shuffle quads, swap 128-bit halves.
///
/// # Safety
/// The CPU must have AVX; the 8 rows of 8 values at `src` must be readable and the 8 rows of 8
/// at `dst` writable.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn avx_block(src: *const f32, ss: usize, dst: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees AVX and the 8 x 8 regions at `src` and `dst`.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * ss)));
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[(i / 2) * 2], r[(i / 2) * 2 + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        // u[0..4] from rows 0-3, u[4..8] from rows 4-7: columns (0,4), (1,5), (2,6), (3,7).
        let quad = |lo: __m256, hi: __m256, first: bool| {
            if first {
                _mm256_shuffle_ps::<0x44>(lo, hi)
            } else {
                _mm256_shuffle_ps::<0xEE>(lo, hi)
            }
        };
        let u = [
            quad(t[0], t[2], true),
            quad(t[0], t[2], false),
            quad(t[1], t[3], true),
            quad(t[1], t[3], false),
            quad(t[4], t[6], true),
            quad(t[4], t[6], false),
            quad(t[5], t[7], true),
            quad(t[5], t[7], false),
        ];
        for j in 0..4 {
            _mm256_storeu_ps(
                dst.add(j * ds),
                _mm256_permute2f128_ps::<0x20>(u[j], u[j + 4]),
            );
            _mm256_storeu_ps(
                dst.add((j + 4) * ds),
                _mm256_permute2f128_ps::<0x31>(u[j], u[j + 4]),
            );
        }
    }
}

/// The weight of group `grp` as [cout_g, taps] with its taps in (ki, kj, channel) order (the
/// weight itself is [cout, channel, ki, kj]).
fn hwc_weight<T: Real>(d: &Dims, w: &[T], grp: usize) -> Array2<T> {
    let len = d.cout_g * d.taps;
    let wg = &w[grp * len..(grp + 1) * len];
    let mut out = Array2::<T>::zeros((d.cout_g, d.taps));
    let os = out.as_slice_mut().expect("fresh arrays are contiguous");
    // Per filter a [channel, k*k] to [k*k, channel] transposition.
    for (dst, src) in os.chunks_mut(d.taps).zip(wg.chunks(d.taps)) {
        for (ci, taps) in src.chunks(d.k * d.k).enumerate() {
            for (kk, &v) in taps.iter().enumerate() {
                dst[kk * d.cin_g + ci] = v;
            }
        }
    }
    out
}

/// A weight gradient in (ki, kj, channel) tap order ([cout_g, taps]) written into group
/// `grp`'s part of `gw` (planar order).
fn put_planar_weight<T: Real>(d: &Dims, gh: &Array2<T>, gw: &mut [T], grp: usize) {
    let len = d.cout_g * d.taps;
    let gs = gh.as_slice().expect("fresh arrays are contiguous");
    for (dst, src) in gw[grp * len..(grp + 1) * len]
        .chunks_mut(d.taps)
        .zip(gs.chunks(d.taps))
    {
        for (ci, taps) in dst.chunks_mut(d.k * d.k).enumerate() {
            for (kk, v) in taps.iter_mut().enumerate() {
                *v = src[kk * d.cin_g + ci];
            }
        }
    }
}

/// The input position of tap `kk` of an axis for output `o`, if it lies inside `len`.
fn input_at(
    o: usize,
    kk: usize,
    stride: usize,
    dil: usize,
    pad: usize,
    len: usize,
) -> Option<usize> {
    (o * stride + kk * dil)
        .checked_sub(pad)
        .filter(|&i| i < len)
}

/// Walks one sample's output pixels and taps: `f(column row, tap offset, run length, input
/// offset)` for every run of taps whose input lies inside (an input offset into the sample's
/// HWC pixels), and `f(.., None)` for a run that falls into the padding. Runs are a whole
/// kernel row when the conv is ungrouped, undilated and the row lies inside, otherwise one
/// tap's channels of the group.
fn walk(
    g: &ConvGeometry,
    d: &Dims,
    grp: usize,
    mut f: impl FnMut(usize, usize, usize, Option<usize>),
) {
    let win = &g.win;
    let (s, dil) = (win.stride as usize, win.dilation as usize);
    let (oh, ow) = (win.oh as usize, win.ow as usize);
    let (pt, pl) = (win.pad_top as usize, win.pad_left as usize);
    let whole_rows = d.groups == 1 && dil == 1;
    for oy in 0..oh {
        for ox in 0..ow {
            let row = oy * ow + ox;
            for ki in 0..d.k {
                let tap0 = ki * d.k * d.cin_g;
                let Some(iy) = input_at(oy, ki, s, dil, pt, d.h) else {
                    f(row, tap0, d.k * d.cin_g, None);
                    continue;
                };
                let first = input_at(ox, 0, s, dil, pl, d.w);
                let last = input_at(ox, d.k - 1, s, dil, pl, d.w);
                if whole_rows && first.is_some() && last.is_some() {
                    let at = (iy * d.w + first.unwrap_or(0)) * d.cin;
                    f(row, tap0, d.k * d.cin_g, Some(at));
                    continue;
                }
                for kj in 0..d.k {
                    let tap = tap0 + kj * d.cin_g;
                    let at = input_at(ox, kj, s, dil, pl, d.w)
                        .map(|ix| (iy * d.w + ix) * d.cin + grp * d.cin_g);
                    f(row, tap, d.cin_g, at);
                }
            }
        }
    }
}

/// Group `grp`'s patches of `xh` (n samples' HWC pixels, [n * h * w, cin]) as a column matrix
/// [n * pixels, taps] (on the calling thread: chunks run in parallel). Every run of taps is copied or cleared,
/// so the matrix is not zeroed first.
fn im2col<T: Real>(g: &ConvGeometry, d: &Dims, xh: &[T], grp: usize) -> Array2<T> {
    let image = d.h * d.w * d.cin;
    let n = xh.len() / image.max(1);
    written(n * d.pixels, d.taps, |cs| {
        cs.chunks_mut(d.pixels * d.taps)
            .zip(xh.chunks(image))
            .for_each(|(c, x)| {
                walk(g, d, grp, |row, tap, len, at| {
                    let dst = &mut c[row * d.taps + tap..row * d.taps + tap + len];
                    match at {
                        Some(i) => {
                            dst.write_copy_of_slice(&x[i..i + len]);
                        }
                        None => dst.iter_mut().for_each(|v| {
                            v.write(T::zero());
                        }),
                    }
                })
            });
    })
}

/// Adds `cols` ([n * pixels, taps]) back onto `dxh` (n samples' HWC pixels): the adjoint of
/// [`im2col`].
fn col2im<T: Real>(g: &ConvGeometry, d: &Dims, cols: &Array2<T>, grp: usize, dxh: &mut [T]) {
    let image = d.h * d.w * d.cin;
    let cs = cols.as_slice().expect("the column matrix is contiguous");
    dxh.chunks_mut(image)
        .zip(cs.chunks(d.pixels * d.taps))
        .for_each(|(dx, c)| {
            walk(g, d, grp, |row, tap, len, at| {
                if let Some(i) = at {
                    let src = &c[row * d.taps + tap..row * d.taps + tap + len];
                    for (dv, &sv) in dx[i..i + len].iter_mut().zip(src) {
                        *dv = *dv + sv;
                    }
                }
            })
        });
}

/// Elements of a chunk's column matrix to aim for (4 MB of f32). Chunks run in parallel, each
/// on one thread from im2col through its products to col2im: a DCGAN's conv2 runs as 8 chunks
/// of 16 samples, whose columns stay in that core's cache between the steps, and whose
/// single-threaded products ran at 150-170 GFLOP/s where one two-thread product over the
/// batch ran at 130-135. Chunks of 5 samples were slower (the products too small).
const COLS_TARGET: usize = 1 << 20;

/// Whether each chunk's products should use every thread themselves: when there are fewer
/// chunks than threads (a batch of one at evaluation), the chunks alone would leave cores
/// idle. gemm splits the output between threads, not the sums, so either way each value is
/// summed in the same order.
fn products_parallel(chunks: usize) -> bool {
    chunks < rayon::current_num_threads()
}

/// `c = a b`, on every thread when `parallel`.
fn product_into<T: Real>(parallel: bool, a: ArrayView2<T>, b: ArrayView2<T>, c: ArrayViewMut2<T>) {
    if parallel {
        matmul_into(a, b, false, c)
    } else {
        matmul_serial_into(a, b, false, c)
    }
}

/// `a b` as a new array, on every thread when `parallel`.
fn product<T: Real>(parallel: bool, a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    if parallel {
        matmul(a, b)
    } else {
        matmul_serial(a, b)
    }
}

/// Samples per chunk: as many chunks as the target asks for, of equal size.
fn cl_chunk(d: &Dims, batch: usize) -> usize {
    let chunks = (d.taps * d.pixels * batch).div_ceil(COLS_TARGET).max(1);
    batch.div_ceil(chunks).max(1)
}

/// The forward pass (see `super::forward_keeping`). What it keeps for the backward pass is the
/// HWC copy of the input, from which the backward pass rebuilds each chunk's columns (a
/// quarter of the columns' size for DCGAN's 4x4 stride-2 taps).
pub(super) fn forward_keeping<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    x: ArrayView2<T>,
    w: &[T],
    b: Option<&[T]>,
    keep: bool,
) -> (Array2<T>, Option<Cols<T>>) {
    let batch = x.nrows();
    let xh = to_hwc(x, d.cin, d.h * d.w);
    let xs = xh.as_slice().expect("fresh arrays are contiguous");
    let image = d.h * d.w * d.cin;
    let cout = d.cout_g * d.groups;
    let weights: Vec<Array2<T>> = (0..d.groups).map(|grp| hwc_weight(d, w, grp)).collect();
    let mut yh = Array2::<T>::zeros((batch * d.pixels, cout));
    let step = cl_chunk(d, batch);
    let par = products_parallel(batch.div_ceil(step));
    let ys = yh.as_slice_mut().expect("fresh arrays are contiguous");
    ys.par_chunks_mut(step * d.pixels * cout)
        .zip(xs.par_chunks(step * image))
        .for_each(|(yc, xc)| {
            let n = xc.len() / image;
            let mut yv = ArrayViewMut2::from_shape((n * d.pixels, cout), yc)
                .expect("a chunk of output rows");
            for (grp, wg) in weights.iter().enumerate() {
                let cols = im2col(g, d, xc, grp);
                let out = yv.slice_mut(s![.., grp * d.cout_g..(grp + 1) * d.cout_g]);
                product_into(par, cols.view(), wg.t(), out);
            }
        });
    (to_chw(&yh, d.pixels, b), keep.then(|| vec![xh]))
}

/// The backward products (see `super::adjoint_with`) in this lowering, chunk by chunk in
/// parallel; `kept` is the forward pass's HWC input. The weight gradient is summed per chunk,
/// then over the chunks in order, so it does not depend on the threads.
pub(super) fn adjoint_with<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    x: Option<ArrayView2<T>>,
    w: Option<&[T]>,
    dy: ArrayView2<T>,
    kept: Option<&Cols<T>>,
) -> (Option<Vec<T>>, Option<Array2<T>>) {
    let batch = dy.nrows();
    let dyh = to_hwc(dy, d.cout_g * d.groups, d.pixels);
    let fresh;
    let xh = match (x, kept.and_then(|k| k.first())) {
        (None, _) => None,
        (Some(_), Some(k)) => Some(k),
        (Some(x), None) => {
            fresh = to_hwc(x, d.cin, d.h * d.w);
            Some(&fresh)
        }
    };
    let image = d.h * d.w * d.cin;
    let weights: Option<Vec<Array2<T>>> =
        w.map(|w| (0..d.groups).map(|grp| hwc_weight(d, w, grp)).collect());
    let mut dxh = weights
        .as_ref()
        .map(|_| Array2::<T>::zeros((batch * d.h * d.w, d.cin)));
    let step = cl_chunk(d, batch);
    let chunks = batch.div_ceil(step);
    let par = products_parallel(chunks);
    let dx_parts: Vec<Option<&mut [T]>> = match dxh.as_mut() {
        Some(a) => a
            .as_slice_mut()
            .expect("fresh arrays are contiguous")
            .chunks_mut(step * image)
            .map(Some)
            .collect(),
        None => (0..chunks).map(|_| None).collect(),
    };
    let partial: Vec<Option<Vec<Array2<T>>>> = dx_parts
        .into_par_iter()
        .enumerate()
        .map(|(c, mut dxc)| {
            let n0 = c * step;
            let n = step.min(batch - n0);
            let mut gh = xh.map(|_| Vec::with_capacity(d.groups));
            for grp in 0..d.groups {
                let dyg = dyh.slice(s![
                    n0 * d.pixels..(n0 + n) * d.pixels,
                    grp * d.cout_g..(grp + 1) * d.cout_g
                ]);
                if let (Some(xh), Some(gh)) = (xh, gh.as_mut()) {
                    let xs = xh.as_slice().expect("fresh arrays are contiguous");
                    let cols = im2col(g, d, &xs[n0 * image..(n0 + n) * image], grp);
                    gh.push(product(par, dyg.t(), cols.view()));
                }
                if let (Some(ws), Some(dxc)) = (weights.as_ref(), dxc.as_deref_mut()) {
                    let dcols = product(par, dyg, ws[grp].view());
                    col2im(g, d, &dcols, grp, dxc);
                }
            }
            gh
        })
        .collect();
    // The chunks' sums added in chunk order, then reordered once.
    let gw = xh.map(|_| {
        let mut sums = partial.into_iter().flatten();
        let mut gw = vec![T::zero(); d.groups * d.cout_g * d.taps];
        if let Some(mut total) = sums.next() {
            for gh in sums {
                for (t, g) in total.iter_mut().zip(&gh) {
                    t.zip_mut_with(g, |a, &b| *a = *a + b);
                }
            }
            for (grp, g) in total.iter().enumerate() {
                put_planar_weight(d, g, &mut gw, grp);
            }
        }
        gw
    });
    (gw, dxh.map(|dxh| to_chw(&dxh, d.h * d.w, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposition (its AVX blocks for f32, the portable ones for f64, the ragged
    /// edges) against the definition, on sizes with and without whole blocks.
    #[test]
    fn transposes_any_shape() {
        for (rows, cols) in [
            (8, 8),
            (64, 196),
            (128, 49),
            (13, 21),
            (7, 9),
            (16, 3),
            (1, 17),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![MaybeUninit::uninit(); rows * cols];
            transpose(&src, &mut dst, rows, cols);
            let src64: Vec<f64> = src.iter().map(|&v| v as f64).collect();
            let mut dst64 = vec![MaybeUninit::uninit(); rows * cols];
            transpose(&src64, &mut dst64, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    // SAFETY: `transpose` writes every element of its destination.
                    let (got, got64) = unsafe {
                        (
                            dst[c * rows + r].assume_init(),
                            dst64[c * rows + r].assume_init(),
                        )
                    };
                    assert_eq!(got, src[r * cols + c], "f32 {rows}x{cols} at ({r}, {c})");
                    assert_eq!(
                        got64,
                        src64[r * cols + c],
                        "f64 {rows}x{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
