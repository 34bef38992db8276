//! conv on the CPU: im2col and the executor's matrix product, group by group.
//!
//! Why im2col: it turns every convolution (any stride, dilation, padding) into matrix
//! products per group, which the tuned product runs near its peak, while a direct loop nest
//! would need its own blocking for every shape. The price is the column matrix (taps x
//! pixels). The backward pass uses the same columns: the weight gradient is dY cols^T and the
//! input gradient is col2im(W^T dY), the adjoint of im2col (a transposed convolution).
//!
//! Three lowerings (see [`Lowering`]): planar here (columns [taps, pixels] for a chunk of the
//! batch, chunks near 32 MB), per sample (`per_sample`, small weights) and channels-last
//! (`channels_last`, 16 or more input channels per group).

mod channels_last;
mod per_sample;

use super::matmul::matmul_into;
use super::sums::lane_sum;
use super::Real;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2};
use netc_compiler::ops::conv::ConvGeometry;
use rayon::prelude::*;

/// Elements of one chunk's column matrix to aim for in the planar lowering (32 MB of f32).
const COLS_TARGET: usize = 8 << 20;

/// A planar training pass keeps its column matrices for the weight gradient when they hold at
/// most this many elements in all (32 MB): im2col is then done once per step instead of
/// twice, while AlexNet's conv1 at batch 128 (140 M elements) recomputes them chunk by chunk
/// rather than holding 560 MB.
const KEEP_COLS_MAX: usize = 8 << 20;

/// What a training forward pass keeps for its backward pass: the planar lowering's column
/// matrices, per chunk of the batch and group in the order the backward pass walks them, or
/// the channels-last lowering's HWC input (one array).
pub(super) type Cols<T> = Vec<Array2<T>>;

/// How a layer's convolution becomes matrix products: planar columns ([taps, pixels], taps in
/// the weight's (channel, ki, kj) order, read from CHW images) for a chunk of the batch at a
/// time, the same per sample (`per_sample`), or channels-last columns ([pixels, taps], (ki, kj,
/// channel) order, from HWC copies of the images; `channels_last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lowering {
    Planar,
    PerSample,
    ChannelsLast,
}

/// Weights (cout/groups x taps) up to which a layer with fewer channels than
/// [`CHANNELS_LAST_MIN`] runs per sample: a DCGAN's first conv (64 x 16) and its generator's
/// last layer, LeNet's conv1 (20 x 25), VGG's conv1 (64 x 27); AlexNet's conv1 (96 x 363)
/// stays batched, its per-sample columns would be 4 MB.
const PER_SAMPLE_MAX_WEIGHT: usize = 4096;

/// Input channels per group from which the channels-last lowering is used: its runs are a
/// group's channels, so with few channels (a first layer's 1 or 3) the planar lowering's runs
/// of output columns are longer. Measured at 16 (whole `netc bench` processes on this 2-core
/// machine, planar against channels-last): a DCGAN step (64 and 128 channels) 0.92 of the wall
/// time, LeNet's step (conv2 reads 20) 13.0-13.3 ms against 16.8-19.4 ms, AlexNet's step at
/// batch 16 within its noise.
const CHANNELS_LAST_MIN: usize = 16;

impl Lowering {
    fn of(d: &Dims) -> Lowering {
        if d.cin_g >= CHANNELS_LAST_MIN {
            Lowering::ChannelsLast
        } else if d.cout_g * d.taps <= PER_SAMPLE_MAX_WEIGHT {
            Lowering::PerSample
        } else {
            Lowering::Planar
        }
    }
}

struct Dims {
    cin: usize,
    h: usize,
    w: usize,
    k: usize,
    pixels: usize,
    taps: usize,
    cin_g: usize,
    cout_g: usize,
    groups: usize,
}

fn dims(g: &ConvGeometry) -> Dims {
    Dims {
        cin: g.cin as usize,
        h: g.win.h as usize,
        w: g.win.w as usize,
        k: g.win.k as usize,
        pixels: g.win.pixels() as usize,
        taps: g.taps() as usize,
        cin_g: g.cin_per_group() as usize,
        cout_g: g.cout_per_group() as usize,
        groups: g.groups as usize,
    }
}

/// Samples per chunk so the column matrix stays near `COLS_TARGET` elements.
fn chunk(d: &Dims, batch: usize) -> usize {
    (COLS_TARGET / (d.taps * d.pixels).max(1)).clamp(1, batch.max(1))
}

/// For tap `t` of one axis, the output positions o whose input index lies inside, and the
/// input index of the first one: (first o, end o, input index of first o). Inputs advance by
/// the stride per output.
fn valid_range(len: usize, out: usize, stride: usize, offset: isize) -> (usize, usize, isize) {
    // Input index of output o: o * stride + offset; need 0 <= . < len.
    let first = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let last_ok = (len as isize - 1 - offset).div_euclid(stride as isize);
    let end = if last_ok < 0 {
        0
    } else {
        (last_ok as usize + 1).min(out)
    };
    (
        first.min(end),
        end,
        first as isize * stride as isize + offset,
    )
}

/// One tap of the kernel for group `grp` (the n-th tap is the column matrix's n-th row): the
/// input channel it reads, and (from `valid_range`) the output rows and columns whose input
/// lies inside.
struct Tap {
    channel: usize,
    rows: (usize, usize, isize),
    cols: (usize, usize, isize),
}

/// The taps of group `grp`, in the weight's (ci, ki, kj) order; im2col and col2im walk the same.
fn taps<'a>(g: &'a ConvGeometry, d: &'a Dims, grp: usize) -> impl Iterator<Item = Tap> + 'a {
    let win = &g.win;
    let (s, dil) = (win.stride as usize, win.dilation as usize);
    let (oh, ow) = (win.oh as usize, win.ow as usize);
    (0..d.cin_g).flat_map(move |ci| {
        (0..d.k).flat_map(move |ki| {
            let rows = valid_range(d.h, oh, s, (ki * dil) as isize - win.pad_top as isize);
            (0..d.k).map(move |kj| Tap {
                channel: grp * d.cin_g + ci,
                rows,
                cols: valid_range(d.w, ow, s, (kj * dil) as isize - win.pad_left as isize),
            })
        })
    })
}

/// Group `grp`'s taps and, for a strided conv, each tap's (output pixel, input pixel) index
/// pairs: a plain gather per sample (rows of 7 or 14 outputs made a per-row loop all
/// overhead).
struct TapPlan {
    taps: Vec<Tap>,
    pairs: Vec<Vec<(u32, u32)>>,
    oh: usize,
    ow: usize,
    stride: usize,
}

fn plan(g: &ConvGeometry, d: &Dims, grp: usize) -> TapPlan {
    let (oh, ow, stride) = (g.win.oh as usize, g.win.ow as usize, g.win.stride as usize);
    let taps: Vec<Tap> = taps(g, d, grp).collect();
    let pairs = if stride > 1 {
        taps.iter().map(|t| tap_pairs(d, ow, stride, t)).collect()
    } else {
        vec![]
    };
    TapPlan {
        taps,
        pairs,
        oh,
        ow,
        stride,
    }
}

/// Tap `i`'s patch values of one sample into `dst` (the sample's `pixels` entries of the
/// tap's column row), read from `plane` (the tap's input channel of that sample). Only a tap
/// that reaches into padding clears its entries first (a VALID conv writes every one).
fn fill_tap<T: Real>(p: &TapPlan, i: usize, plane: &[T], w: usize, dst: &mut [T]) {
    let t = &p.taps[i];
    let ((r0, r1, rin0), (c0, c1, cin0)) = (t.rows, t.cols);
    if (r0, r1, c0, c1) != (0, p.oh, 0, p.ow) {
        dst.fill(T::zero());
    }
    if c0 >= c1 {
        return;
    }
    if p.stride > 1 {
        for &(di, si) in &p.pairs[i] {
            dst[di as usize] = plane[si as usize];
        }
        return;
    }
    let first = cin0 as usize;
    for (k, o) in (r0..r1).enumerate() {
        let rin = (rin0 + k as isize) as usize;
        let src = &plane[rin * w + first..rin * w + first + (c1 - c0)];
        // Unit stride: the valid taps of a row are one contiguous run.
        dst[o * p.ow + c0..o * p.ow + c1].copy_from_slice(src);
    }
}

/// The adjoint of [`fill_tap`]: adds tap `i`'s column entries of one sample (`src`) onto its
/// input channel's gradient `plane`.
fn add_tap<T: Real>(p: &TapPlan, i: usize, src: &[T], w: usize, plane: &mut [T]) {
    let t = &p.taps[i];
    let ((r0, r1, rin0), (c0, c1, cin0)) = (t.rows, t.cols);
    if c0 >= c1 {
        return;
    }
    if p.stride > 1 {
        for &(di, si) in &p.pairs[i] {
            plane[si as usize] = plane[si as usize] + src[di as usize];
        }
        return;
    }
    let first = cin0 as usize;
    for (k, o) in (r0..r1).enumerate() {
        let rin = (rin0 + k as isize) as usize;
        let dst = &mut plane[rin * w + first..rin * w + first + (c1 - c0)];
        // Unit stride: one contiguous run, which the compiler vectorises.
        for (dv, &sv) in dst.iter_mut().zip(&src[o * p.ow + c0..o * p.ow + c1]) {
            *dv = *dv + sv;
        }
    }
}

/// Fills `cols` ([taps, n * pixels]) with group `grp`'s input patches of samples `x` rows.
/// Rows of `cols` are independent, so they are filled in parallel.
fn im2col<T: Real>(g: &ConvGeometry, d: &Dims, x: ArrayView2<T>, grp: usize, cols: &mut Array2<T>) {
    let p = plan(g, d, grp);
    let row_len = x.ncols();
    let x = x.as_slice().expect("activation chunks are contiguous");
    let width = cols.ncols();
    let cols = cols
        .as_slice_mut()
        .expect("the column matrix is contiguous");
    let hw = d.h * d.w;
    cols.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
        let c = p.taps[i].channel;
        for (xs, dst) in x.chunks(row_len).zip(row.chunks_mut(d.pixels)) {
            fill_tap(&p, i, &xs[c * hw..(c + 1) * hw], d.w, dst);
        }
    });
}

/// For one tap of a strided conv: (output pixel, input pixel) index pairs within one sample's
/// channel plane, for every output whose input lies inside.
fn tap_pairs(d: &Dims, ow: usize, s: usize, t: &Tap) -> Vec<(u32, u32)> {
    let ((r0, r1, rin0), (c0, c1, cin0)) = (t.rows, t.cols);
    let mut pairs = Vec::with_capacity((r1 - r0) * (c1.saturating_sub(c0)));
    for (i, o) in (r0..r1).enumerate() {
        let rin = (rin0 + (i * s) as isize) as usize;
        for (j, oc) in (c0..c1).enumerate() {
            let cin = cin0 as usize + j * s;
            pairs.push(((o * ow + oc) as u32, (rin * d.w + cin) as u32));
        }
    }
    pairs
}

/// Adds `cols` ([taps, n * pixels]) back onto the input gradient rows `dx` (adjoint of im2col).
/// Samples are independent (each owns its row of `dx`), so they run in parallel.
fn col2im<T: Real>(
    g: &ConvGeometry,
    d: &Dims,
    cols: &Array2<T>,
    grp: usize,
    mut dx: ArrayViewMut2<T>,
) {
    let p = plan(g, d, grp);
    let width = cols.ncols();
    let cols = cols.as_slice().expect("the column matrix is contiguous");
    let row_len = dx.ncols();
    let dx = dx.as_slice_mut().expect("gradient chunks are contiguous");
    let hw = d.h * d.w;
    dx.par_chunks_mut(row_len).enumerate().for_each(|(b, xs)| {
        for (i, t) in p.taps.iter().enumerate() {
            let src = &cols[i * width + b * d.pixels..i * width + (b + 1) * d.pixels];
            add_tap(
                &p,
                i,
                src,
                d.w,
                &mut xs[t.channel * hw..(t.channel + 1) * hw],
            );
        }
    });
}

/// The [cout/groups, taps] weight matrix of group `grp`.
fn group_weight<'a, T: Real>(d: &Dims, w: &'a [T], grp: usize) -> ArrayView2<'a, T> {
    let len = d.cout_g * d.taps;
    ArrayView2::from_shape((d.cout_g, d.taps), &w[grp * len..(grp + 1) * len])
        .expect("weight length matches the geometry")
}

pub(super) fn forward<T: Real>(
    g: &ConvGeometry,
    x: &Array2<T>,
    w: &[T],
    b: Option<&[T]>,
) -> Array2<T> {
    forward_keeping(g, x, w, b, false).0
}

/// [`forward`], also returning what [`backward`] can reuse (see [`Cols`]) when `keep` (and,
/// for planar columns, when they are small enough: [`KEEP_COLS_MAX`]).
pub(super) fn forward_keeping<T: Real>(
    g: &ConvGeometry,
    x: &Array2<T>,
    w: &[T],
    b: Option<&[T]>,
    keep: bool,
) -> (Array2<T>, Option<Cols<T>>) {
    let d = dims(g);
    forward_lowered(Lowering::of(&d), g, x, w, b, keep)
}

fn forward_lowered<T: Real>(
    lowering: Lowering,
    g: &ConvGeometry,
    x: &Array2<T>,
    w: &[T],
    b: Option<&[T]>,
    keep: bool,
) -> (Array2<T>, Option<Cols<T>>) {
    let d = dims(g);
    match lowering {
        Lowering::ChannelsLast => {
            return channels_last::forward_keeping(g, &d, x.view(), w, b, keep)
        }
        Lowering::PerSample => return (per_sample::forward(g, &d, x.view(), w, b), None),
        Lowering::Planar => {}
    }
    let x = x.as_standard_layout();
    let batch = x.nrows();
    debug_assert_eq!(x.ncols(), d.cin * d.h * d.w);
    let keep = keep && d.taps * d.pixels * batch * d.groups <= KEEP_COLS_MAX;
    let mut kept = vec![];
    let mut y = Array2::<T>::zeros((batch, g.cout as usize * d.pixels));
    let step = chunk(&d, batch);
    let mut cols = Array2::<T>::zeros((d.taps, step * d.pixels));
    let mut out = Array2::<T>::zeros((d.cout_g, step * d.pixels));
    for n0 in (0..batch).step_by(step) {
        let n = step.min(batch - n0);
        if n < step {
            cols = Array2::zeros((d.taps, n * d.pixels));
            out = Array2::zeros((d.cout_g, n * d.pixels));
        }
        for grp in 0..d.groups {
            if cols.is_empty() {
                // The previous buffer went into `kept`.
                cols = Array2::zeros((d.taps, n * d.pixels));
            }
            im2col(g, &d, x.slice(s![n0..n0 + n, ..]), grp, &mut cols);
            matmul_into(group_weight(&d, w, grp), cols.view(), false, out.view_mut());
            // out [cout_g, n * pixels] -> y[b, (grp * cout_g + f) * pixels + p], per sample
            let out = out.as_slice().expect("contiguous");
            let ys = y.as_slice_mut().expect("contiguous");
            let row_len = g.cout as usize * d.pixels;
            let rows = ys[n0 * row_len..(n0 + n) * row_len].par_chunks_mut(row_len);
            rows.enumerate().for_each(|(bi, yr)| {
                for f in 0..d.cout_g {
                    let co = grp * d.cout_g + f;
                    let bias = b.map_or(T::zero(), |b| b[co]);
                    let src = &out[(f * n + bi) * d.pixels..(f * n + bi + 1) * d.pixels];
                    for (dst, &v) in yr[co * d.pixels..(co + 1) * d.pixels].iter_mut().zip(src) {
                        *dst = v + bias;
                    }
                }
            });
            if keep {
                kept.push(std::mem::replace(&mut cols, Array2::zeros((0, 0))));
            }
        }
    }
    (y, keep.then_some(kept))
}

/// Which gradients a conv's backward pass computes: a frozen network's weight and bias get
/// none (a GAN's discriminator in the generator's step), a bias only when the layer has one,
/// the network input's gradient only when asked for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    pub weight: bool,
    pub bias: bool,
    pub input: bool,
}

pub(super) struct Grads<T> {
    pub weight: Vec<T>,
    pub bias: Vec<T>,
    pub input: Option<Array2<T>>,
}

/// The gradients of a conv node; `kept` are its forward pass's column matrices, if it kept them.
/// A gradient that is not wanted is left empty.
pub(super) fn backward<T: Real>(
    g: &ConvGeometry,
    x: &Array2<T>,
    w: &[T],
    dy: &Array2<T>,
    want: Wanted,
    kept: Option<&Cols<T>>,
) -> Grads<T> {
    let x = want.weight.then_some(x);
    let (weight, input) = adjoint_with(g, x, want.input.then_some(w), dy, kept);
    Grads {
        weight: weight.unwrap_or_default(),
        bias: bias_gradient(dy, g.bias && want.bias, g.cout, g.win.pixels()),
        input,
    }
}

/// A bias's gradient (the output gradient summed per channel) when `wanted`, else empty.
pub(super) fn bias_gradient<T: Real>(
    dy: &Array2<T>,
    wanted: bool,
    channels: u64,
    pixels: u64,
) -> Vec<T> {
    if wanted {
        channel_sums(dy, channels as usize, pixels as usize)
    } else {
        vec![]
    }
}

/// Per channel, the sum of `dy` ([batch, channels * pixels]) over the batch and the pixels: a
/// bias's gradient.
fn channel_sums<T: Real>(dy: &Array2<T>, channels: usize, pixels: usize) -> Vec<T> {
    let dy = dy.as_standard_layout();
    let dys = dy.as_slice().expect("contiguous");
    let row_len = channels * pixels;
    let mut sums = vec![T::zero(); channels];
    sums.par_iter_mut().enumerate().for_each(|(c, s)| {
        let planes = || {
            dys.chunks(row_len)
                .map(move |r| &r[c * pixels..(c + 1) * pixels])
        };
        *s = lane_sum(planes().zip(planes()), |v, _| v);
    });
    sums
}

/// The two products of the conv `g`'s backward pass over a batch of output gradients `dy`
/// (no bias): the weight gradient dY cols(x)^T when `x` is given, and the input gradient
/// col2im(W^T dY) ([batch, cin * h * w]) when `w` is given. A transposed convolution runs
/// through here too (its forward pass is the input gradient of its adjoint conv).
pub(super) fn adjoint<T: Real>(
    g: &ConvGeometry,
    x: Option<&Array2<T>>,
    w: Option<&[T]>,
    dy: &Array2<T>,
) -> (Option<Vec<T>>, Option<Array2<T>>) {
    adjoint_with(g, x, w, dy, None)
}

/// [`adjoint`], taking the columns of `x` from `kept` (a forward pass's) instead of im2col.
fn adjoint_with<T: Real>(
    g: &ConvGeometry,
    x: Option<&Array2<T>>,
    w: Option<&[T]>,
    dy: &Array2<T>,
    kept: Option<&Cols<T>>,
) -> (Option<Vec<T>>, Option<Array2<T>>) {
    let d = dims(g);
    adjoint_lowered(Lowering::of(&d), g, x, w, dy, kept)
}

fn adjoint_lowered<T: Real>(
    lowering: Lowering,
    g: &ConvGeometry,
    x: Option<&Array2<T>>,
    w: Option<&[T]>,
    dy: &Array2<T>,
    kept: Option<&Cols<T>>,
) -> (Option<Vec<T>>, Option<Array2<T>>) {
    let d = dims(g);
    if x.is_none() && w.is_none() {
        return (None, None);
    }
    match lowering {
        Lowering::ChannelsLast => {
            return channels_last::adjoint_with(g, &d, x.map(|x| x.view()), w, dy.view(), kept)
        }
        Lowering::PerSample => {
            return (
                x.map(|x| per_sample::weight_gradient(g, &d, x.view(), dy.view())),
                w.map(|w| per_sample::input_gradient(g, &d, w, dy.view())),
            )
        }
        Lowering::Planar => {}
    }
    let mut kept = kept.map(|k| k.iter());
    let x = x.map(|x| x.as_standard_layout());
    let dy = dy.as_standard_layout();
    let batch = dy.nrows();
    let mut gw = x
        .as_ref()
        .map(|_| vec![T::zero(); d.groups * d.cout_g * d.taps]);
    let mut dx = w.map(|_| Array2::<T>::zeros((batch, d.cin * d.h * d.w)));
    let dys = dy.as_slice().expect("contiguous");
    let row_len = g.cout as usize * d.pixels;
    let step = chunk(&d, batch);
    // Only what this call uses: the columns when the forward pass did not keep them, the
    // column gradient when the input gradient is wanted (zeroing 16 MB nobody reads was 2-3 ms
    // of a DCGAN conv's backward).
    let need_cols = x.is_some() && kept.is_none();
    let empty = || Array2::<T>::zeros((0, 0));
    let sized = |rows: usize, n: usize, used: bool| {
        if used {
            Array2::<T>::zeros((rows, n * d.pixels))
        } else {
            empty()
        }
    };
    let mut cols = sized(d.taps, step, need_cols);
    let mut dyg = Array2::<T>::zeros((d.cout_g, step * d.pixels));
    let mut dcols = sized(d.taps, step, dx.is_some());
    for n0 in (0..batch).step_by(step) {
        let n = step.min(batch - n0);
        if n < step {
            cols = sized(d.taps, n, need_cols);
            dyg = Array2::zeros((d.cout_g, n * d.pixels));
            dcols = sized(d.taps, n, dx.is_some());
        }
        for grp in 0..d.groups {
            // dy rows -> dyg [cout_g, n * pixels], per output channel
            let width = dyg.ncols();
            let dygs = dyg.as_slice_mut().expect("contiguous");
            dygs.par_chunks_mut(width).enumerate().for_each(|(f, dst)| {
                let co = grp * d.cout_g + f;
                for bi in 0..n {
                    let src = &dys[(n0 + bi) * row_len..(n0 + bi + 1) * row_len];
                    dst[bi * d.pixels..(bi + 1) * d.pixels]
                        .copy_from_slice(&src[co * d.pixels..(co + 1) * d.pixels]);
                }
            });
            if let (Some(x), Some(gw)) = (x.as_ref(), gw.as_mut()) {
                let cols = match kept.as_mut().and_then(|k| k.next()) {
                    Some(c) => c,
                    None => {
                        im2col(g, &d, x.slice(s![n0..n0 + n, ..]), grp, &mut cols);
                        &cols
                    }
                };
                let len = d.cout_g * d.taps;
                let mut gwg = ArrayViewMut2::from_shape(
                    (d.cout_g, d.taps),
                    &mut gw[grp * len..(grp + 1) * len],
                )
                .expect("weight length matches the geometry");
                matmul_into(dyg.view(), cols.t(), true, gwg.view_mut());
            }
            if let (Some(w), Some(dx)) = (w, dx.as_mut()) {
                matmul_into(
                    group_weight(&d, w, grp).t(),
                    dyg.view(),
                    false,
                    dcols.view_mut(),
                );
                col2im(g, &d, &dcols, grp, dx.slice_mut(s![n0..n0 + n, ..]));
            }
        }
    }
    (gw, dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netc_compiler::ops::Op;
    use netc_compiler::shape::Padding;

    fn conv(cin: u64, hw: (u64, u64), filters: u64, k: u64, s: u64, pad: Padding) -> ConvGeometry {
        let op = Op::Conv {
            filters,
            k,
            stride: s,
            pad,
            groups: 1,
            dilation: 1,
            bias: true,
        };
        geometry(&op, &[cin, hw.0, hw.1])
    }

    fn geometry(op: &Op, input: &[u64]) -> ConvGeometry {
        match ConvGeometry::of(op, input) {
            Ok(g) => g,
            Err(e) => panic!("{}", e.message),
        }
    }

    /// Values with no pattern a transposed index could match by accident.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        (0..n as u64)
            .map(|i| ((i * 7919 + seed * 104729) % 2003) as f64 / 1001.0 - 1.0)
            .collect()
    }

    fn close(a: &[f64], b: &[f64], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + x.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    /// The three lowerings are orders of the same sums: on odd geometries (strides 2 and 3,
    /// dilation, SAME's extra bottom/right pixel, groups, taps falling wholly into padding)
    /// their outputs and both gradients agree to rounding, with and without kept columns.
    #[test]
    fn planar_per_sample_and_channels_last_lowerings_agree() {
        let mut cases = vec![
            conv(16, (7, 9), 6, 3, 2, Padding::Explicit(1)),
            conv(18, (8, 5), 4, 4, 3, Padding::Same),
            conv(16, (6, 6), 5, 2, 1, Padding::Valid),
            conv(20, (3, 4), 3, 5, 2, Padding::Explicit(3)),
        ];
        let grouped = Op::Conv {
            filters: 6,
            k: 3,
            stride: 2,
            pad: Padding::Same,
            groups: 2,
            dilation: 2,
            bias: true,
        };
        cases.push(geometry(&grouped, &[32, 9, 8]));
        let dilated = Op::Conv {
            filters: 5,
            k: 3,
            stride: 1,
            pad: Padding::Explicit(1),
            groups: 1,
            dilation: 2,
            bias: true,
        };
        cases.push(geometry(&dilated, &[16, 8, 9]));
        cases.push(conv(16, (40, 40), 6, 3, 1, Padding::Explicit(1)));
        let grouped_wide = Op::Conv {
            filters: 6,
            k: 3,
            stride: 1,
            pad: Padding::Explicit(1),
            groups: 2,
            dilation: 1,
            bias: true,
        };
        cases.push(geometry(&grouped_wide, &[32, 30, 30]));
        // Few channels: a first layer (per sample by default) and one with a large weight.
        cases.push(conv(3, (9, 8), 4, 3, 2, Padding::Same));
        cases.push(conv(2, (11, 10), 70, 8, 3, Padding::Explicit(2)));
        for (i, g) in cases.iter().enumerate() {
            let d = dims(g);
            // 17 samples: the two largest cases' channels-last columns exceed their chunk
            // target, so they run as several chunks whose weight gradients are summed (one
            // with two groups), and the per-sample lowering sums three blocks of samples.
            let batch = 17;
            let x = Array2::from_shape_vec(
                (batch, d.cin * d.h * d.w),
                values(batch * d.cin * d.h * d.w, 1),
            )
            .expect("shape");
            let w = values(g.cout as usize * d.taps, 2);
            let b = values(g.cout as usize, 3);
            let dy = Array2::from_shape_vec(
                (batch, g.cout as usize * d.pixels),
                values(batch * g.cout as usize * d.pixels, 4),
            )
            .expect("shape");
            let run = |l: Lowering, keep: bool| {
                let (y, kept) = forward_lowered(l, g, &x, &w, Some(&b), keep);
                let keeps = keep && l != Lowering::PerSample;
                assert_eq!(kept.is_some(), keeps, "case {i}: columns kept when asked");
                let (gw, dx) = adjoint_lowered(l, g, Some(&x), Some(&w), &dy, kept.as_ref());
                (y, gw.expect("weight gradient"), dx.expect("input gradient"))
            };
            let planar = run(Lowering::Planar, false);
            let others = [
                (Lowering::ChannelsLast, false),
                (Lowering::ChannelsLast, true),
                (Lowering::PerSample, false),
                (Lowering::Planar, true),
            ];
            for (l, keep) in others {
                let cl = run(l, keep);
                let what = format!("case {i}, {l:?}, kept {keep}");
                close(
                    planar.0.as_slice().expect("c"),
                    cl.0.as_slice().expect("c"),
                    &format!("{what}: output"),
                );
                close(&planar.1, &cl.1, &format!("{what}: weight gradient"));
                close(
                    planar.2.as_slice().expect("c"),
                    cl.2.as_slice().expect("c"),
                    &format!("{what}: input gradient"),
                );
            }
            // Which one a layer takes by default: channels-last from 16 input channels per
            // group, per sample for a small weight with fewer, planar otherwise.
            let thin = d.cin_g < CHANNELS_LAST_MIN;
            let want = match (thin, d.cout_g * d.taps <= PER_SAMPLE_MAX_WEIGHT) {
                (false, _) => Lowering::ChannelsLast,
                (true, true) => Lowering::PerSample,
                (true, false) => Lowering::Planar,
            };
            assert_eq!(Lowering::of(&d), want, "case {i}");
        }
    }

    /// A resumed run must repeat a run exactly, so no sum may depend on the thread count:
    /// each lowering's output and gradients in f32 under pools of one and of three threads
    /// (channels-last in two chunks: one thread runs them in turn with single-threaded
    /// products, three run them side by side with products on every thread).
    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let cases = [
            conv(64, (14, 14), 32, 4, 2, Padding::Explicit(1)),
            conv(1, (28, 28), 16, 4, 2, Padding::Explicit(1)),
            conv(2, (11, 10), 70, 8, 3, Padding::Explicit(2)),
        ];
        let lowerings = [
            Lowering::ChannelsLast,
            Lowering::PerSample,
            Lowering::Planar,
        ];
        for (g, want) in cases.iter().zip(lowerings) {
            let d = dims(g);
            assert_eq!(Lowering::of(&d), want);
            let batch = 24;
            let f32s = |n: usize, seed: u64| -> Vec<f32> {
                values(n, seed).into_iter().map(|v| v as f32).collect()
            };
            let x = Array2::from_shape_vec(
                (batch, d.cin * d.h * d.w),
                f32s(batch * d.cin * d.h * d.w, 1),
            )
            .expect("shape");
            let w = f32s(g.cout as usize * d.taps, 2);
            let b = f32s(g.cout as usize, 3);
            let outs = g.cout as usize * d.pixels;
            let dy = Array2::from_shape_vec((batch, outs), f32s(batch * outs, 4)).expect("shape");
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                pool.install(|| {
                    let (y, kept) = forward_keeping(g, &x, &w, Some(&b), true);
                    let (gw, dx) = adjoint_with(g, Some(&x), Some(&w), &dy, kept.as_ref());
                    (y, gw, dx)
                })
            };
            assert!(run(1) == run(3), "{want:?}: one thread and three differ");
        }
    }
}
