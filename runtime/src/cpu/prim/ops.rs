//! Each primitive's reference computation, dispatched exhaustively.

use super::layout::{broadcast_strides, expand, offsets, permuted_strides, reduce_strides, strides};
use super::EvalError;
use crate::cpu::Real;
use netc_compiler::prim::{Binary, Compare, Prim, Reduce, Unary};

type Arg<'a, T> = (&'a [T], Vec<usize>);

pub fn unary<T: Real>(u: Unary, x: T) -> T {
    let (zero, one) = (T::zero(), T::one());
    match u {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Rsqrt => one / x.sqrt(),
        Unary::Tanh => x.tanh(),
        Unary::Erf => T::of(libm::erf(x.f64())),
        Unary::Sigmoid => super::super::activation::sigmoid(x),
        Unary::Relu => x.max(zero),
        Unary::Abs => x.abs(),
        Unary::Square => x * x,
        Unary::Reciprocal => one / x,
        Unary::Pow(c) => x.powf(T::of(c)),
    }
}

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

/// `f` over `a` and `b` broadcast to `out`.
fn zip<T: Real>(a: &Arg<T>, b: &Arg<T>, out: &[usize], f: impl Fn(T, T) -> T) -> Vec<T> {
    let oa = offsets(out, &broadcast_strides(&a.1, out));
    let ob = offsets(out, &broadcast_strides(&b.1, out));
    oa.iter().zip(&ob).map(|(&i, &j)| f(a.0[i], b.0[j])).collect()
}

fn reduce<T: Real>(op: Reduce, x: &Arg<T>, axes: &[usize], out_len: usize) -> Vec<T> {
    let init = match op {
        Reduce::Sum | Reduce::Mean => T::zero(),
        Reduce::Max => T::neg_infinity(),
    };
    let mut out = vec![init; out_len];
    let slots = offsets(&x.1, &reduce_strides(&x.1, axes));
    for (&v, &o) in x.0.iter().zip(&slots) {
        out[o] = match op {
            Reduce::Sum | Reduce::Mean => out[o] + v,
            Reduce::Max => out[o].max(v),
        };
    }
    if op == Reduce::Mean {
        let n: usize = axes.iter().map(|&a| x.1[a]).product();
        let k = T::of(1.0 / n as f64);
        out.iter_mut().for_each(|v| *v = *v * k);
    }
    out
}

/// Batched matrix product over the last two axes, the leading ones broadcast to `out`'s.
fn matmul<T: Real>(a: &Arg<T>, b: &Arg<T>, out: &[usize]) -> Vec<T> {
    let (ra, rb, r) = (a.1.len(), b.1.len(), out.len());
    let (m, k, n) = (a.1[ra - 2], a.1[ra - 1], b.1[rb - 1]);
    let lead = &out[..r - 2];
    let la = broadcast_strides(&a.1[..ra - 2], lead);
    let lb = broadcast_strides(&b.1[..rb - 2], lead);
    let (oa, ob) = (offsets(lead, &la), offsets(lead, &lb));
    let mut y = vec![T::zero(); out.iter().product()];
    for (l, (&pa, &pb)) in oa.iter().zip(&ob).enumerate() {
        let (xa, xb) = (&a.0[pa * m * k..], &b.0[pb * k * n..]);
        let dst = &mut y[l * m * n..(l + 1) * m * n];
        for i in 0..m {
            for p in 0..k {
                let s = xa[i * k + p];
                for j in 0..n {
                    dst[i * n + j] = dst[i * n + j] + s * xb[p * n + j];
                }
            }
        }
    }
    y
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

/// Copies `part` into `out` (of shape `dims`) at `at` along `axis`.
fn place<T: Real>(out: &mut [T], dims: &[usize], part: &Arg<T>, axis: usize, at: usize) {
    let s = strides(dims);
    for (&v, o) in part.0.iter().zip(offsets(&part.1, &s)) {
        out[o + at * s[axis]] = v;
    }
}

fn slice<T: Real>(x: &Arg<T>, axis: usize, start: usize, out: &[usize]) -> Vec<T> {
    let s = strides(&x.1);
    offsets(out, &s)
        .into_iter()
        .map(|o| x.0[o + start * s[axis]])
        .collect()
}

pub fn run<T: Real>(prim: &Prim, args: &[Arg<T>], out: &[usize]) -> Result<Vec<T>, EvalError> {
    let len: usize = out.iter().product();
    Ok(match prim {
        Prim::Input { .. } | Prim::Param { .. } => unreachable!("leaves are fed"),
        Prim::Const(c) => vec![T::of(*c)],
        Prim::CausalMask { t } => (0..t * t)
            .map(|i| if i % t <= i / t { T::one() } else { T::zero() })
            .collect(),
        Prim::Unary(u) => args[0].0.iter().map(|&x| unary(*u, x)).collect(),
        Prim::Binary(b) => zip(&args[0], &args[1], out, |x, y| binary(*b, x, y)),
        Prim::Compare(c) => zip(&args[0], &args[1], out, |x, y| compare(*c, x, y)),
        Prim::Where => {
            let c = expand(args[0].0, &args[0].1, out);
            let a = expand(args[1].0, &args[1].1, out);
            let b = expand(args[2].0, &args[2].1, out);
            (0..len)
                .map(|i| if c[i] != T::zero() { a[i] } else { b[i] })
                .collect()
        }
        Prim::Reduce { op, axes, .. } => reduce(*op, &args[0], axes, len),
        Prim::Expand => expand(args[0].0, &args[0].1, out),
        Prim::Matmul => matmul(&args[0], &args[1], out),
        Prim::Reshape => args[0].0.to_vec(),
        Prim::Permute { perm } => offsets(out, &permuted_strides(&args[0].1, perm))
            .into_iter()
            .map(|o| args[0].0[o])
            .collect(),
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
    })
}
