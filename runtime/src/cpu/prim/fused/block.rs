//! Values over one block of a group's space (`rows` x `cols`, row-major) and the steps of a
//! chain applied to them. A value keeps the least it varies over: one scalar for the block, a
//! value per row (a token's mean), a row shared by every row (a layernorm's gain), or the full
//! block. A step's result varies over what its operands vary over, so `rsqrt(var + eps)` runs
//! once per row and `x * gain` once per element, each as a plain loop the compiler vectorises.

use super::super::ops::{binary, compare, pow_const, unary};
use crate::cpu::Real;
use netc_compiler::prim::{Binary, Prim, Unary};

/// A value over a `rows` x `cols` block.
#[derive(Clone, Copy)]
pub enum V<'a, T> {
    /// One value for the whole block.
    S(T),
    /// One value per row (`rows` values).
    R(&'a [T]),
    /// The same row in every row (`cols` values).
    C(&'a [T]),
    /// Every element (`rows * cols` values).
    F(&'a [T]),
}

/// What a value varies over (a [`V`] without its data).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    S,
    R,
    C,
    F,
}

impl<'a, T: Copy> V<'a, T> {
    pub fn kind(&self) -> Kind {
        match self {
            V::S(_) => Kind::S,
            V::R(_) => Kind::R,
            V::C(_) => Kind::C,
            V::F(_) => Kind::F,
        }
    }

    /// Row `i` of the value as a scalar or a slice of `cols`.
    #[inline(always)]
    pub fn row(self, i: usize, cols: usize) -> V1<'a, T> {
        match self {
            V::S(x) => V1::S(x),
            V::R(v) => V1::S(v[i]),
            V::C(v) => V1::A(v),
            V::F(v) => V1::A(&v[i * cols..(i + 1) * cols]),
        }
    }
}

/// What a result of operands of kinds `a` and `b` varies over.
pub fn join(a: Kind, b: Kind) -> Kind {
    match (a, b) {
        (Kind::S, k) | (k, Kind::S) => k,
        (Kind::R, Kind::R) => Kind::R,
        (Kind::C, Kind::C) => Kind::C,
        (Kind::F, _) | (_, Kind::F) | (Kind::R, Kind::C) | (Kind::C, Kind::R) => Kind::F,
    }
}

/// A value along one run: a scalar or a slice.
#[derive(Clone, Copy)]
pub enum V1<'a, T> {
    S(T),
    A(&'a [T]),
}

/// The operands of a step as runs of one shape (every operand of kind S, R or C against a
/// result of the same kind, or F against F): the flat slice each one is.
#[inline(always)]
fn flat<T: Copy>(v: V<T>) -> V1<T> {
    match v {
        V::S(x) => V1::S(x),
        V::R(a) | V::C(a) | V::F(a) => V1::A(a),
    }
}

/// What a step over `args` varies over: the join of its operands' kinds.
#[inline(always)]
pub fn kind_of<T: Copy>(args: &[V<T>]) -> Kind {
    args.iter().fold(Kind::S, |k, a| join(k, a.kind()))
}

/// The number of values a value of `kind` has in a `rows` x `cols` block.
pub fn len_of(kind: Kind, rows: usize, cols: usize) -> usize {
    match kind {
        Kind::S => 1,
        Kind::R => rows,
        Kind::C => cols,
        Kind::F => rows * cols,
    }
}

/// One step over a block: the result's kind, its values in `out` (a scalar in `out[0]`).
#[inline(always)]
pub fn apply<T: Real>(
    prim: &Prim,
    args: &[V<T>],
    out: &mut [T],
    (rows, cols): (usize, usize),
) -> Kind {
    let kind = kind_of(args);
    let n = len_of(kind, rows, cols);
    let out = &mut out[..n];
    // Operands of the result's own kind (or scalars) are flat runs; an R or C operand of a
    // full result is taken row by row.
    let by_rows = kind == Kind::F && args.iter().any(|a| matches!(a.kind(), Kind::R | Kind::C));
    match (by_rows, prim, args) {
        (false, ..) => step(prim, args.iter().map(|&a| flat(a)), out),
        // The op chosen once for the block, then a loop per row: choosing it per row (a
        // layernorm's rows are 64 values) cost more than the row's arithmetic.
        (true, Prim::Binary(b), &[x, y]) => binary_rows(*b, x, y, out, cols),
        (true, ..) => {
            for (i, o) in out.chunks_mut(cols).enumerate() {
                step(prim, args.iter().map(|&a| a.row(i, cols)), o);
            }
        }
    }
    kind
}

/// A binary op over a full block, one operand (or both) a value per row or a shared row.
#[inline(always)]
fn binary_rows<T: Real>(b: Binary, x: V<T>, y: V<T>, out: &mut [T], cols: usize) {
    match b {
        Binary::Add => zip_rows(x, y, out, cols, |p, q| p + q),
        Binary::Sub => zip_rows(x, y, out, cols, |p, q| p - q),
        Binary::Mul => zip_rows(x, y, out, cols, |p, q| p * q),
        Binary::Div => zip_rows(x, y, out, cols, |p, q| p / q),
        Binary::Max | Binary::Min => zip_rows(x, y, out, cols, |p, q| binary(b, p, q)),
    }
}

#[inline(always)]
fn zip_rows<T: Real>(x: V<T>, y: V<T>, out: &mut [T], cols: usize, f: impl Fn(T, T) -> T) {
    for (i, o) in out.chunks_mut(cols).enumerate() {
        zip(x.row(i, cols), y.row(i, cols), o, &f);
    }
}

/// One step over one run (at most three operands).
#[inline(always)]
fn step<'a, T: Real + 'a>(prim: &Prim, args: impl Iterator<Item = V1<'a, T>>, out: &mut [T]) {
    let mut a = [V1::S(T::zero()); 3];
    for (k, v) in args.enumerate() {
        a[k] = v;
    }
    match prim {
        Prim::Unary(u) => unary_run(*u, a[0], out),
        Prim::Binary(b) => binary_run(*b, a[0], a[1], out),
        Prim::Compare(c) => zip(a[0], a[1], out, |x, y| compare(*c, x, y)),
        Prim::Where => where_run(a, out),
        Prim::Input { .. }
        | Prim::Param { .. }
        | Prim::Const(_)
        | Prim::Reduce { .. }
        | Prim::Expand
        | Prim::Matmul
        | Prim::Reshape
        | Prim::Permute { .. }
        | Prim::Slice { .. }
        | Prim::Pad { .. }
        | Prim::Concat { .. }
        | Prim::Gather
        | Prim::ScatterAdd { .. }
        | Prim::OneHot { .. }
        | Prim::CausalMask { .. } => unreachable!("not a step of a chain"),
    }
}

/// `where` over one run, one loop per combination of scalar and slice operands (a loop that
/// asked each operand which it is, per element, did not vectorise: it was a third of the
/// fused time of a causal attention).
#[inline(always)]
fn where_run<T: Real>(a: [V1<T>; 3], out: &mut [T]) {
    #[inline(always)]
    fn run<T: Real>(
        out: &mut [T],
        c: impl Fn(usize) -> T,
        x: impl Fn(usize) -> T,
        y: impl Fn(usize) -> T,
    ) {
        for (i, o) in out.iter_mut().enumerate() {
            // Both sides read before the choice, so it is a select, not a branch.
            *o = where_value(c(i), x(i), y(i));
        }
    }
    let n = out.len();
    fn sl<T>(v: &[T], n: usize) -> &[T] {
        &v[..n]
    }
    let [c, x, y] = a.map(|v| match v {
        V1::S(s) => V1::S(s),
        V1::A(v) => V1::A(sl(v, n)),
    });
    match (c, x, y) {
        (V1::S(c), V1::S(x), V1::S(y)) => run(out, |_| c, |_| x, |_| y),
        (V1::S(c), V1::S(x), V1::A(y)) => run(out, |_| c, |_| x, |i| y[i]),
        (V1::S(c), V1::A(x), V1::S(y)) => run(out, |_| c, |i| x[i], |_| y),
        (V1::S(c), V1::A(x), V1::A(y)) => run(out, |_| c, |i| x[i], |i| y[i]),
        (V1::A(c), V1::S(x), V1::S(y)) => run(out, |i| c[i], |_| x, |_| y),
        (V1::A(c), V1::S(x), V1::A(y)) => run(out, |i| c[i], |_| x, |i| y[i]),
        (V1::A(c), V1::A(x), V1::S(y)) => run(out, |i| c[i], |i| x[i], |_| y),
        (V1::A(c), V1::A(x), V1::A(y)) => run(out, |i| c[i], |i| x[i], |i| y[i]),
    }
}

#[inline(always)]
fn map<T: Real>(a: V1<T>, out: &mut [T], f: impl Fn(T) -> T) {
    match a {
        V1::S(x) => out.fill(f(x)),
        V1::A(a) => out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x)),
    }
}

#[inline(always)]
fn zip<T: Real>(a: V1<T>, b: V1<T>, out: &mut [T], f: impl Fn(T, T) -> T) {
    match (a, b) {
        (V1::S(x), V1::S(y)) => out.fill(f(x, y)),
        (V1::A(a), V1::A(b)) => out
            .iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&x, &y))| *o = f(x, y)),
        (V1::A(a), V1::S(y)) => out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, y)),
        (V1::S(x), V1::A(b)) => out.iter_mut().zip(b).for_each(|(o, &y)| *o = f(x, y)),
    }
}

/// The unary ops with the op chosen outside the loop, so each loop is one vectorised body
/// (`unary_value` of a constant op folds to that op's expression).
#[inline(always)]
fn unary_run<T: Real>(u: Unary, a: V1<T>, out: &mut [T]) {
    match u {
        Unary::Neg => map(a, out, |x| unary_value(Unary::Neg, x)),
        Unary::Exp => map(a, out, |x| unary_value(Unary::Exp, x)),
        Unary::Square => map(a, out, |x| unary_value(Unary::Square, x)),
        Unary::Rsqrt => map(a, out, |x| unary_value(Unary::Rsqrt, x)),
        Unary::Sqrt => map(a, out, |x| unary_value(Unary::Sqrt, x)),
        Unary::Erf => map(a, out, |x| unary_value(Unary::Erf, x)),
        Unary::Relu => map(a, out, |x| unary_value(Unary::Relu, x)),
        Unary::Abs => map(a, out, |x| unary_value(Unary::Abs, x)),
        Unary::Reciprocal => map(a, out, |x| unary_value(Unary::Reciprocal, x)),
        Unary::Sin => map(a, out, |x| unary_value(Unary::Sin, x)),
        Unary::Cos => map(a, out, |x| unary_value(Unary::Cos, x)),
        Unary::Sigmoid => map(a, out, |x| unary_value(Unary::Sigmoid, x)),
        // One loop per power `pow_const` computes without `powf`, so each vectorises.
        Unary::Pow(c @ (1.0 | 2.0 | 3.0 | -1.0 | 0.5 | -0.5)) => match c {
            1.0 => map(a, out, |x| pow_const(x, 1.0)),
            2.0 => map(a, out, |x| pow_const(x, 2.0)),
            3.0 => map(a, out, |x| pow_const(x, 3.0)),
            -1.0 => map(a, out, |x| pow_const(x, -1.0)),
            0.5 => map(a, out, |x| pow_const(x, 0.5)),
            _ => map(a, out, |x| pow_const(x, -0.5)),
        },
        Unary::Log | Unary::Tanh | Unary::Pow(_) => map(a, out, |x| unary_value(u, x)),
    }
}

/// One value of a unary op as the fused loops compute it: the interpreter's loops and the
/// compiled kernels (`compiled`) both call this, so the two agree bit for bit.
#[inline(always)]
pub fn unary_value<T: Real>(u: Unary, x: T) -> T {
    match u {
        Unary::Neg => -x,
        Unary::Exp => x.exp_fast(),
        Unary::Square => x * x,
        Unary::Rsqrt => T::one() / x.sqrt(),
        Unary::Sqrt => x.sqrt(),
        Unary::Erf => x.erf(),
        Unary::Relu => x.max(T::zero()),
        Unary::Abs => x.abs(),
        Unary::Reciprocal => T::one() / x,
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Sigmoid => sigmoid(x),
        Unary::Pow(c) => pow_const(x, c),
        Unary::Log | Unary::Tanh => unary(u, x),
    }
}

/// `where(c, p, q)` of one value: both sides read before the choice, a select.
#[inline(always)]
pub fn where_value<T: Real>(c: T, p: T, q: T) -> T {
    if c != T::zero() {
        p
    } else {
        q
    }
}

/// The logistic function as the reference computes it (e^-|x| so it never overflows), with
/// both sides computed and one chosen, and the vectorisable `exp_fast`: libm's `expf`, one
/// value at a time, was a sixth of a DDPM step through its SiLUs.
#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    let e = (-x.abs()).exp_fast();
    let s = T::one() / (T::one() + e);
    let neg = e * s;
    if x >= T::zero() {
        s
    } else {
        neg
    }
}

#[inline(always)]
fn binary_run<T: Real>(b: Binary, x: V1<T>, y: V1<T>, out: &mut [T]) {
    match b {
        Binary::Add => zip(x, y, out, |p, q| p + q),
        Binary::Sub => zip(x, y, out, |p, q| p - q),
        Binary::Mul => zip(x, y, out, |p, q| p * q),
        Binary::Div => zip(x, y, out, |p, q| p / q),
        Binary::Max | Binary::Min => zip(x, y, out, |p, q| binary(b, p, q)),
    }
}

/// A sum in eight lanes, so the compiler keeps eight (or sixteen) partial sums in one register
/// instead of one serial chain.
#[inline(always)]
pub fn sum<T: Real>(a: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = a.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] = acc[l] + c[l];
        }
    }
    let tail = chunks.remainder().iter().fold(T::zero(), |s, &x| s + x);
    acc.iter().fold(T::zero(), |s, &x| s + x) + tail
}

#[inline(always)]
pub fn max<T: Real>(a: &[T]) -> T {
    a.iter().fold(T::neg_infinity(), |m, &x| m.max(x))
}
