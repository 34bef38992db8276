//! Each primitive's reference computation, dispatched exhaustively.

use super::layout::{
    broadcast_strides, expand, gather_strided, offsets, permuted_strides, reduce_strides, strides,
    walk,
};
use super::EvalError;
use crate::cpu::Real;
use netc_compiler::prim::{Binary, Compare, Prim, Reduce, Unary};

type Arg<'a, T> = (&'a [T], Vec<usize>);

pub fn unary<T: Real>(u: Unary, x: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match u {
        Unary::Neg => -x,
        Unary::Exp => x.exp_fast(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => one / x.sqrt(),
        Unary::Tanh => x.tanh(),
        Unary::Erf => x.erf(),
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Sigmoid => super::super::activation::sigmoid(x),
        Unary::Relu => x.max(zero),
        Unary::Abs => x.abs(),
        Unary::Square => x * x,
        Unary::Reciprocal => one / x,
        Unary::Pow(c) => pow_const(x, c),
    }
}

/// x^c, with the powers gradients are made of (an rsqrt's derivative is its value cubed) as
/// products and roots the compiler vectorises: `powf` is a libm call per value, and a
/// layernorm's backward spent a tenth of its time in it. Other powers stay `powf`.
#[inline(always)]
pub fn pow_const<T: Real>(x: T, c: f64) -> T {
    match c {
        1.0 => x,
        2.0 => x * x,
        3.0 => x * x * x,
        -1.0 => T::one() / x,
        0.5 => x.sqrt(),
        -0.5 => T::one() / x.sqrt(),
        _ => x.powf(T::of(c)),
    }
}

#[inline(always)]
pub fn binary<T: Real>(b: Binary, x: T, y: T) -> T {
    match b {
        Binary::Add => x + y,
        Binary::Sub => x - y,
        Binary::Mul => x * y,
        Binary::Div => x / y,
        Binary::Max => x.max(y),
        Binary::Min => x.min(y),
    }
}

#[inline(always)]
pub fn compare<T: Real>(c: Compare, x: T, y: T) -> T {
    let t = match c {
        Compare::Gt => x > y,
        Compare::Ge => x >= y,
        Compare::Lt => x < y,
        Compare::Le => x <= y,
        Compare::Eq => x == y,
        Compare::Ne => x != y,
    };
    if t {
        T::one()
    } else {
        T::zero()
    }
}

/// `f` over `a` and `b` broadcast to `out`. The common layouts are slice loops the compiler
/// vectorises: equal shapes, a scalar, an operand repeated over leading axes (a bias over
/// tokens), an operand with trailing size-1 axes (a per-token mean); others walk the strides.
fn zip<T: Real>(a: &Arg<T>, b: &Arg<T>, out: &[usize], f: impl Fn(T, T) -> T + Copy) -> Vec<T> {
    let n: usize = out.iter().product();
    let full = |x: &Arg<T>| x.0.len() == n;
    if full(a) && full(b) {
        return a.0.iter().zip(b.0).map(|(&x, &y)| f(x, y)).collect();
    }
    if full(a) && b.0.len() == 1 {
        return a.0.iter().map(|&x| f(x, b.0[0])).collect();
    }
    if full(b) && a.0.len() == 1 {
        return b.0.iter().map(|&y| f(a.0[0], y)).collect();
    }
    if full(a) && suffix(&b.1, out) {
        return a
            .0
            .chunks(b.0.len())
            .flat_map(|c| c.iter().zip(b.0).map(move |(&x, &y)| f(x, y)))
            .collect();
    }
    if full(a) && trailing_ones(&b.1, out) {
        let w = n / b.0.len();
        return a
            .0
            .chunks(w)
            .zip(b.0)
            .flat_map(|(c, &y)| c.iter().map(move |&x| f(x, y)))
            .collect();
    }
    if full(b) && trailing_ones(&a.1, out) {
        let w = n / a.0.len();
        return b
            .0
            .chunks(w)
            .zip(a.0)
            .flat_map(|(c, &x)| c.iter().map(move |&y| f(x, y)))
            .collect();
    }
    let (sa, sb) = (broadcast_strides(&a.1, out), broadcast_strides(&b.1, out));
    let mut y = Vec::with_capacity(n);
    walk(out, [&sa, &sb], |[i, j]| y.push(f(a.0[i], b.0[j])));
    y
}

/// Whether `s` (aligned right) equals the trailing axes of `out`: it repeats over the rest.
fn suffix(s: &[usize], out: &[usize]) -> bool {
    let s = &s[s.iter().take_while(|&&d| d == 1).count()..];
    !s.is_empty() && s.len() <= out.len() && out[out.len() - s.len()..] == *s
}

/// Whether `s` is `out` with some trailing axes of size 1 (and at least one kept).
fn trailing_ones(s: &[usize], out: &[usize]) -> bool {
    let k = s.iter().rev().take_while(|&&d| d == 1).count();
    s.len() == out.len() && k > 0 && k < s.len() && s[..s.len() - k] == out[..out.len() - k]
}

/// An elementwise map with the op chosen once, outside the loop.
fn map_unary<T: Real>(u: Unary, x: &[T]) -> Vec<T> {
    macro_rules! m {
        ($f:expr) => {
            x.iter().map(|&v| $f(v)).collect()
        };
    }
    match u {
        Unary::Neg => m!(|v: T| -v),
        Unary::Exp => m!(|v: T| v.exp_fast()),
        Unary::Square => m!(|v: T| v * v),
        Unary::Rsqrt => m!(|v: T| T::one() / v.sqrt()),
        Unary::Erf => m!(|v: T| v.erf()),
        Unary::Log
        | Unary::Sqrt
        | Unary::Tanh
        | Unary::Sin
        | Unary::Cos
        | Unary::Sigmoid
        | Unary::Relu
        | Unary::Abs
        | Unary::Reciprocal
        | Unary::Pow(_) => m!(|v| unary(u, v)),
    }
}

/// A binary op with the op chosen once, outside the loop.
fn map_binary<T: Real>(b: Binary, x: &Arg<T>, y: &Arg<T>, out: &[usize]) -> Vec<T> {
    match b {
        Binary::Add => zip(x, y, out, |p, q| p + q),
        Binary::Sub => zip(x, y, out, |p, q| p - q),
        Binary::Mul => zip(x, y, out, |p, q| p * q),
        Binary::Div => zip(x, y, out, |p, q| p / q),
        Binary::Max | Binary::Min => zip(x, y, out, move |p, q| binary(b, p, q)),
    }
}

/// A reduction over the last axis alone: one contiguous run per output element.
fn reduce_last<T: Real>(op: Reduce, x: &Arg<T>) -> Vec<T> {
    let w = x.1[x.1.len() - 1];
    let k = T::of(1.0 / w as f64);
    x.0.chunks(w)
        .map(|c| match op {
            Reduce::Sum => c.iter().fold(T::zero(), |a, &v| a + v),
            Reduce::Mean => c.iter().fold(T::zero(), |a, &v| a + v) * k,
            Reduce::Max => c.iter().fold(T::neg_infinity(), |a, &v| a.max(v)),
        })
        .collect()
}

fn reduce<T: Real>(op: Reduce, x: &Arg<T>, axes: &[usize], out_len: usize) -> Vec<T> {
    let init = match op {
        Reduce::Sum | Reduce::Mean => T::zero(),
        Reduce::Max => T::neg_infinity(),
    };
    let mut out = vec![init; out_len];
    let mut at = 0;
    walk(&x.1, [&reduce_strides(&x.1, axes)], |[o]| {
        let v = x.0[at];
        at += 1;
        out[o] = match op {
            Reduce::Sum | Reduce::Mean => out[o] + v,
            Reduce::Max => out[o].max(v),
        };
    });
    if op == Reduce::Mean {
        let n: usize = axes.iter().map(|&a| x.1[a]).product();
        let k = T::of(1.0 / n as f64);
        out.iter_mut().for_each(|v| *v = *v * k);
    }
    out
}

/// Batched matrix product over the last two axes, the leading ones broadcast to `out`'s:
/// one gemm per matrix, the matrices in parallel.
fn matmul<T: Real>(a: &Arg<T>, b: &Arg<T>, out: &[usize]) -> Vec<T> {
    use ndarray::{ArrayView2, ArrayViewMut2};
    use rayon::prelude::*;
    let (ra, rb, r) = (a.1.len(), b.1.len(), out.len());
    let (m, k, n) = (a.1[ra - 2], a.1[ra - 1], b.1[rb - 1]);
    let lead = &out[..r - 2];
    let oa = offsets(lead, &broadcast_strides(&a.1[..ra - 2], lead));
    let ob = offsets(lead, &broadcast_strides(&b.1[..rb - 2], lead));
    let mut y = vec![T::zero(); out.iter().product()];
    let one = |(l, dst): (usize, &mut [T])| {
        let xa = &a.0[oa[l] * m * k..(oa[l] + 1) * m * k];
        let xb = &b.0[ob[l] * k * n..(ob[l] + 1) * k * n];
        let va = ArrayView2::from_shape((m, k), xa).expect("m x k");
        let vb = ArrayView2::from_shape((k, n), xb).expect("k x n");
        let vy = ArrayViewMut2::from_shape((m, n), dst).expect("m x n");
        crate::cpu::matmul::matmul_serial_into(va, vb, false, vy);
    };
    // Small products (attention's per-head scores inside a tile, already one of several
    // tiles in parallel) are not worth splitting across threads.
    match y.len() * k >= 1 << 20 {
        true => y.par_chunks_mut(m * n).enumerate().for_each(one),
        false => y.chunks_mut(m * n).enumerate().for_each(one),
    }
    y
}

/// The `[t, t]` causal mask: 1 on and below the diagonal. Row by row, with no division per
/// element: a fused group makes it per tile.
pub fn causal_mask<T: Real>(t: usize) -> Vec<T> {
    let mut mask = vec![T::zero(); t * t];
    for (i, row) in mask.chunks_mut(t.max(1)).enumerate() {
        row[..=i].fill(T::one());
    }
    mask
}

/// The row an id names, or an error when it is not an integer row of the table.
fn row<T: Real>(id: T, rows: usize) -> Result<usize, EvalError> {
    let f = id.f64();
    if f.fract() != 0.0 || f < 0.0 || f >= rows as f64 {
        return Err(EvalError::Id {
            id: format!("{f}"),
            rows,
        });
    }
    Ok(f as usize)
}

fn gather<T: Real>(table: &Arg<T>, ids: &Arg<T>) -> Result<Vec<T>, EvalError> {
    let w: usize = table.1[1..].iter().product();
    let mut out = Vec::with_capacity(ids.0.len() * w);
    for &id in ids.0 {
        let r = row(id, table.1[0])?;
        out.extend_from_slice(&table.0[r * w..(r + 1) * w]);
    }
    Ok(out)
}

/// Each id as a one-hot row of `n` (an id that is not a whole number in `0..n` is an error).
fn one_hot<T: Real>(ids: &Arg<T>, n: usize) -> Result<Vec<T>, EvalError> {
    let mut out = vec![T::zero(); ids.0.len() * n];
    for (i, &id) in ids.0.iter().enumerate() {
        let c = row(id, n).map_err(|_| EvalError::Class {
            id: format!("{}", id.f64()),
            classes: n,
        })?;
        out[i * n + c] = T::one();
    }
    Ok(out)
}

fn scatter_add<T: Real>(g: &Arg<T>, ids: &Arg<T>, rows: usize) -> Result<Vec<T>, EvalError> {
    let w = g.0.len() / ids.0.len().max(1);
    let mut out = vec![T::zero(); rows * w];
    for (i, &id) in ids.0.iter().enumerate() {
        let r = row(id, rows)?;
        for c in 0..w {
            out[r * w + c] = out[r * w + c] + g.0[i * w + c];
        }
    }
    Ok(out)
}

/// Copies `part` into `out` (of shape `dims`) at `at` along `axis`, a contiguous row (the
/// part's last axis) at a time.
fn place<T: Real>(out: &mut [T], dims: &[usize], part: &Arg<T>, axis: usize, at: usize) {
    let s = strides(dims);
    let base = at * s[axis];
    let last = part.1.len() - 1;
    let w = part.1[last];
    if w == 0 {
        return;
    }
    let rows = offsets(&part.1[..last], &s[..last]);
    for (src, o) in part.0.chunks_exact(w).zip(rows) {
        out[base + o..base + o + w].copy_from_slice(src);
    }
}

fn slice<T: Real>(x: &Arg<T>, axis: usize, start: usize, out: &[usize]) -> Vec<T> {
    let s = strides(&x.1);
    gather_strided(&x.0[start * s[axis]..], out, &s)
}

pub fn run<T: Real>(prim: &Prim, args: &[Arg<T>], out: &[usize]) -> Result<Vec<T>, EvalError> {
    let len: usize = out.iter().product();
    Ok(match prim {
        Prim::Input { .. } | Prim::Param { .. } => unreachable!("leaves are fed"),
        Prim::Const(c) => vec![T::of(*c)],
        Prim::CausalMask { t } => causal_mask(*t),
        Prim::Unary(u) => map_unary(*u, args[0].0),
        Prim::Binary(b) => map_binary(*b, &args[0], &args[1], out),
        Prim::Compare(c) => zip(&args[0], &args[1], out, move |x, y| compare(*c, x, y)),
        Prim::Where => {
            let st: Vec<Vec<usize>> = args.iter().map(|a| broadcast_strides(&a.1, out)).collect();
            let (c, a, b) = (args[0].0, args[1].0, args[2].0);
            let mut y = Vec::with_capacity(len);
            walk(out, [&st[0], &st[1], &st[2]], |[i, j, k]| {
                y.push(if c[i] != T::zero() { a[j] } else { b[k] })
            });
            y
        }
        Prim::Reduce { op, axes, .. } if *axes == [args[0].1.len() - 1] => {
            reduce_last(*op, &args[0])
        }
        Prim::Reduce { op, axes, .. } => reduce(*op, &args[0], axes, len),
        Prim::Expand => expand(args[0].0, &args[0].1, out),
        Prim::Matmul => matmul(&args[0], &args[1], out),
        Prim::Reshape => args[0].0.to_vec(),
        Prim::Permute { perm } => {
            gather_strided(args[0].0, out, &permuted_strides(&args[0].1, perm))
        }
        Prim::Slice { axis, start, .. } => slice(&args[0], *axis, *start, out),
        Prim::Pad { axis, before, .. } => {
            let mut y = vec![T::zero(); len];
            place(&mut y, out, &args[0], *axis, *before);
            y
        }
        Prim::Concat { axis } => {
            let mut y = vec![T::zero(); len];
            let mut at = 0;
            for a in args {
                place(&mut y, out, a, *axis, at);
                at += a.1[*axis];
            }
            y
        }
        Prim::Gather => gather(&args[0], &args[1])?,
        Prim::ScatterAdd { rows } => scatter_add(&args[0], &args[1], *rows)?,
        Prim::OneHot { n } => one_hot(&args[0], *n)?,
    })
}
