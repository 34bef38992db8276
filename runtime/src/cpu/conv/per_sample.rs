//! conv's per-sample lowering, for layers with a small weight (a first layer reading one or
//! three channels, a transposed conv's last layer to an image).
//!
//! Why: such a layer's products are tiny next to its data (a DCGAN discriminator's first conv,
//! 64 x 16 weights, writes 1.6 M outputs per batch of 128), so the batched lowering's cost is
//! moving memory: a column matrix for the whole chunk, a product output laid out by channel,
//! then a copy into the activation rows. Here each sample's columns stay in a buffer of
//! taps x pixels per thread (12 KB for that conv, in the L1/L2 cache) and its product is
//! written straight into the sample's output row. The weight gradient adds up per fixed block
//! of samples, the blocks' sums then in order, so the result does not depend on the threads.

use super::{add_tap, fill_tap, group_weight, plan, Dims, TapPlan};
use crate::cpu::matmul::{matmul_serial_into, matmul_serial_to};
use crate::cpu::Real;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use netc_compiler::ops::conv::ConvGeometry;
use rayon::prelude::*;

/// Samples whose weight gradients one task adds up; fixed, so the order of the sums is too.
const BLOCK: usize = 8;

/// Fills `cols` ([taps, pixels]) with one sample's patches for the group planned in `p`.
fn sample_cols<T: Real>(d: &Dims, p: &TapPlan, x: &[T], cols: &mut [T]) {
    let hw = d.h * d.w;
    for (i, (t, row)) in p.taps.iter().zip(cols.chunks_mut(d.pixels)).enumerate() {
        fill_tap(p, i, &x[t.channel * hw..(t.channel + 1) * hw], d.w, row);
    }
}

/// Group `grp`'s output channels of one sample's output (gradient) row, as [cout_g, pixels].
fn group_rows<'a, T: Real>(d: &Dims, row: &'a [T], grp: usize) -> ArrayView2<'a, T> {
    let plane = d.cout_g * d.pixels;
    ArrayView2::from_shape((d.cout_g, d.pixels), &row[grp * plane..(grp + 1) * plane])
        .expect("a group's output channels")
}

fn plans(g: &ConvGeometry, d: &Dims) -> Vec<TapPlan> {
    (0..d.groups).map(|grp| plan(g, d, grp)).collect()
}

/// The forward pass (no columns kept: recomputing a sample's is cheaper than keeping them).
pub(super) fn forward<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    x: ArrayView2<T>,
    w: &[T],
    b: Option<&[T]>,
) -> Array2<T> {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let batch = x.nrows();
    let (image, plane) = (d.cin * d.h * d.w, d.cout_g * d.pixels);
    let row_len = g.cout as usize * d.pixels;
    let plans = plans(g, d);
    // Every output row is paired with an input row of this length (and so written).
    assert_eq!(x.ncols(), image, "input rows of the layer's size");
    let mut y = Array2::<T>::uninit((batch, row_len));
    let ys = y.as_slice_mut().expect("fresh arrays are contiguous");
    ys.par_chunks_mut(row_len)
        .zip(xs.par_chunks(image))
        .for_each_init(
            || vec![T::zero(); d.taps * d.pixels],
            |cols, (yr, xr)| {
                for (grp, p) in plans.iter().enumerate() {
                    sample_cols(d, p, xr, cols);
                    let cv = ArrayView2::from_shape((d.taps, d.pixels), &cols[..])
                        .expect("sized to the taps and pixels");
                    let out = &mut yr[grp * plane..(grp + 1) * plane];
                    matmul_serial_to(group_weight(d, w, grp), cv, out);
                }
            },
        );
    // SAFETY: every row was written whole: each group's product fills its cout_g x pixels
    // block of the row, and the groups' blocks tile it.
    let mut y = unsafe { y.assume_init() };
    if let Some(b) = b {
        let ys = y.as_slice_mut().expect("fresh arrays are contiguous");
        ys.par_chunks_mut(row_len).for_each(|yr| {
            for (channel, &bc) in yr.chunks_mut(d.pixels).zip(b) {
                channel.iter_mut().for_each(|v| *v = *v + bc);
            }
        });
    }
    y
}

/// The weight gradient dY cols(x)^T, summed over the batch.
pub(super) fn weight_gradient<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    x: ArrayView2<T>,
    dy: ArrayView2<T>,
) -> Vec<T> {
    let (x, dy) = (x.as_standard_layout(), dy.as_standard_layout());
    let (xs, dys) = (
        x.as_slice().expect("standard layout"),
        dy.as_slice().expect("standard layout"),
    );
    let batch = x.nrows();
    let (image, row_len) = (d.cin * d.h * d.w, g.cout as usize * d.pixels);
    let len = d.cout_g * d.taps;
    let plans = plans(g, d);
    let starts: Vec<usize> = (0..batch).step_by(BLOCK).collect();
    let partial: Vec<Vec<T>> = starts
        .par_iter()
        .map(|&b0| {
            let mut gw = vec![T::zero(); d.groups * len];
            let mut cols = vec![T::zero(); d.taps * d.pixels];
            for b in b0..(b0 + BLOCK).min(batch) {
                let (xr, dyr) = (
                    &xs[b * image..(b + 1) * image],
                    &dys[b * row_len..(b + 1) * row_len],
                );
                for (grp, p) in plans.iter().enumerate() {
                    sample_cols(d, p, xr, &mut cols);
                    let cv = ArrayView2::from_shape((d.taps, d.pixels), &cols[..])
                        .expect("sized to the taps and pixels");
                    let dyg = group_rows(d, dyr, grp);
                    let gwg = ArrayViewMut2::from_shape(
                        (d.cout_g, d.taps),
                        &mut gw[grp * len..(grp + 1) * len],
                    )
                    .expect("weight length matches the geometry");
                    matmul_serial_into(dyg, cv.t(), true, gwg);
                }
            }
            gw
        })
        .collect();
    let mut gw = vec![T::zero(); d.groups * len];
    for part in &partial {
        for (a, &v) in gw.iter_mut().zip(part) {
            *a = *a + v;
        }
    }
    gw
}

/// The input gradient col2im(W^T dY) ([batch, cin * h * w]), sample by sample.
pub(super) fn input_gradient<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    w: &[T],
    dy: ArrayView2<T>,
) -> Array2<T> {
    let dy = dy.as_standard_layout();
    let dys = dy.as_slice().expect("standard layout");
    let (image, row_len) = (d.cin * d.h * d.w, g.cout as usize * d.pixels);
    let plans = plans(g, d);
    let mut dx = Array2::<T>::zeros((dy.nrows(), image));
    let dxs = dx.as_slice_mut().expect("fresh arrays are contiguous");
    let hw = d.h * d.w;
    dxs.par_chunks_mut(image)
        .zip(dys.par_chunks(row_len))
        .for_each_init(
            || vec![T::zero(); d.taps * d.pixels],
            |dcols, (dxr, dyr)| {
                for (grp, p) in plans.iter().enumerate() {
                    let dyg = group_rows(d, dyr, grp);
                    let dv = ArrayViewMut2::from_shape((d.taps, d.pixels), &mut dcols[..])
                        .expect("sized to the taps and pixels");
                    matmul_serial_into(group_weight(d, w, grp).t(), dyg, false, dv);
                    for (i, (t, src)) in p.taps.iter().zip(dcols.chunks(d.pixels)).enumerate() {
                        add_tap(
                            p,
                            i,
                            src,
                            d.w,
                            &mut dxr[t.channel * hw..(t.channel + 1) * hw],
                        );
                    }
                }
            },
        );
    dx
}
