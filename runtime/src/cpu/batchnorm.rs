//! batchnorm on the CPU, as PyTorch's BatchNorm1d/2d. Training: per channel, the batch mean
//! and biased variance over the batch and the channel's pixels normalise x, and the running
//! statistics move towards the mean and the unbiased variance by `momentum`. Evaluation: the
//! running statistics normalise. The backward pass recomputes the statistics from x (cheap
//! next to a convolution, and nothing to keep between the passes).

use super::sums::lane_sum;
use super::Real;
use ndarray::Array2;
use rayon::prelude::*;

/// One batchnorm node's settings and sizes: `channels` channels of `pixels` values per example.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub channels: usize,
    pub pixels: usize,
    pub eps: f64,
    pub momentum: f64,
}

/// Parameters and running statistics of one node.
pub(super) struct Tensors<'a, T> {
    pub weight: &'a [T],
    pub bias: &'a [T],
    pub running_mean: &'a [T],
    pub running_var: &'a [T],
}

/// Per channel: the mean and 1/sqrt(var + eps) the pass normalises with, and (training) the
/// biased variance.
struct Stats<T> {
    mean: Vec<T>,
    inv_std: Vec<T>,
    var: Vec<T>,
}

/// Channel `c`'s plane (its `pixels` values) of every example, in batch order.
fn planes<'a, T: Real>(
    x: &'a [T],
    s: &'a Settings,
    c: usize,
) -> impl Iterator<Item = &'a [T]> + 'a {
    let row = s.channels * s.pixels;
    x.chunks(row)
        .map(move |r| &r[c * s.pixels..(c + 1) * s.pixels])
}

fn stats<T: Real>(x: &[T], s: &Settings, t: &Tensors<T>, train: bool) -> Stats<T> {
    let per: Vec<(T, T)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            if !train {
                return (t.running_mean[c], t.running_var[c]);
            }
            // Two passes (mean, then squared deviations): exact enough for f64 gradient checks
            // and free of the cancellation of E[x^2] - E[x]^2.
            let m = T::of((x.len() / (s.channels * s.pixels) * s.pixels) as f64);
            let both = || planes(x, s, c).zip(planes(x, s, c));
            let mean = lane_sum(both(), |v, _| v) / m;
            let dev = lane_sum(both(), |v, _| (v - mean) * (v - mean));
            (mean, dev / m)
        })
        .collect();
    let eps = T::of(s.eps);
    Stats {
        mean: per.iter().map(|p| p.0).collect(),
        inv_std: per.iter().map(|p| T::one() / (p.1 + eps).sqrt()).collect(),
        var: per.iter().map(|p| p.1).collect(),
    }
}

/// Fills every channel plane of `out` (laid out as `x`) with `f(channel, x plane, out plane)`,
/// examples in parallel.
fn per_plane<T: Real>(
    out: &mut Array2<T>,
    x: &[T],
    s: &Settings,
    f: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) {
    let row_len = s.channels * s.pixels;
    out.as_slice_mut()
        .expect("fresh arrays are contiguous")
        .par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(n, r)| {
            for (c, plane) in r.chunks_mut(s.pixels).enumerate() {
                f(c, n * row_len + c * s.pixels, plane);
            }
        });
    debug_assert_eq!(x.len(), out.len());
}

/// New values of the running statistics: (mean, variance) per channel.
pub(super) type Running<T> = (Vec<T>, Vec<T>);

/// The output, and in training the running statistics' new values.
pub(super) fn forward<T: Real>(
    s: &Settings,
    t: &Tensors<T>,
    x: &Array2<T>,
    train: bool,
) -> (Array2<T>, Option<Running<T>>) {
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("contiguous");
    let st = stats(xs, s, t, train);
    let mut y = Array2::<T>::zeros(x.raw_dim());
    per_plane(&mut y, xs, s, |c, at, out| {
        let (scale, mean, shift) = (t.weight[c] * st.inv_std[c], st.mean[c], t.bias[c]);
        let len = out.len();
        for (o, &v) in out.iter_mut().zip(&xs[at..at + len]) {
            *o = scale * (v - mean) + shift;
        }
    });
    let running = train.then(|| {
        let m = x.nrows() * s.pixels;
        // PyTorch's unbiased running variance; a single value per channel has none.
        let unbias = if m > 1 {
            T::of(m as f64 / (m - 1) as f64)
        } else {
            T::one()
        };
        let (mo, keep) = (T::of(s.momentum), T::of(1.0 - s.momentum));
        let mean = (0..s.channels)
            .map(|c| keep * t.running_mean[c] + mo * st.mean[c])
            .collect();
        let var = (0..s.channels)
            .map(|c| keep * t.running_var[c] + mo * st.var[c] * unbias)
            .collect();
        (mean, var)
    });
    (y, running)
}

/// Gradients of weight, bias and input.
pub(super) struct Grads<T> {
    pub weight: Vec<T>,
    pub bias: Vec<T>,
    pub input: Array2<T>,
}

/// The backward pass; `train` says which statistics the forward pass normalised with (in
/// training the batch's, through which the gradient flows too).
pub(super) fn backward<T: Real>(
    s: &Settings,
    t: &Tensors<T>,
    x: &Array2<T>,
    dy: &Array2<T>,
    train: bool,
) -> Grads<T> {
    let x = x.as_standard_layout();
    let dy = dy.as_standard_layout();
    let (xs, dys) = (
        x.as_slice().expect("contiguous"),
        dy.as_slice().expect("contiguous"),
    );
    let st = stats(xs, s, t, train);
    // Per channel: sum(dy) (the bias gradient) and sum(dy * xhat) (the weight gradient).
    let sums: Vec<(T, T)> = (0..s.channels)
        .into_par_iter()
        .map(|c| {
            let (mean, inv_std) = (st.mean[c], st.inv_std[c]);
            let both = || planes(dys, s, c).zip(planes(xs, s, c));
            (
                lane_sum(both(), |d, _| d),
                lane_sum(both(), |d, v| d * (v - mean) * inv_std),
            )
        })
        .collect();
    let m = T::of((x.nrows() * s.pixels) as f64);
    let mut dx = Array2::<T>::zeros(x.raw_dim());
    per_plane(&mut dx, xs, s, |c, at, out| {
        let (mean, inv_std) = (st.mean[c], st.inv_std[c]);
        let scale = t.weight[c] * inv_std;
        let len = out.len();
        let (dyp, xp) = (&dys[at..at + len], &xs[at..at + len]);
        if train {
            // d/dx of gamma * xhat through the batch mean and variance.
            let (a, b) = (sums[c].0 / m, sums[c].1 / m);
            for ((o, &d), &v) in out.iter_mut().zip(dyp).zip(xp) {
                *o = scale * (d - (a + (v - mean) * inv_std * b));
            }
        } else {
            for (o, &d) in out.iter_mut().zip(dyp) {
                *o = scale * d;
            }
        }
    });
    Grads {
        weight: sums.iter().map(|p| p.1).collect(),
        bias: sums.iter().map(|p| p.0).collect(),
        input: dx,
    }
}
