//! The loop over a group's space in blocks: the axes merged where every operand reads them
//! regularly, the last two axes cut into blocks of about `CHUNK` values (whole rows when rows
//! are short, so a layernorm's 64-wide rows go eight at a time), the other axes counted like
//! an odometer. The loop is compiled once per instruction set, the chain's loops inlined into
//! it, so with AVX-512 or AVX2 they use the wide registers.

use super::block::{apply, kind_of, max, sum, Kind, V, V1};
use super::{Program, Sink, Src, CHUNK};
use crate::cpu::prim::layout::collapse_dyn;
use crate::cpu::Real;

/// The widest instruction set the fused loops are compiled for that this CPU has.
#[derive(Clone, Copy)]
pub(super) enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Plain,
}

pub(super) fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("fma") {
            return Simd::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Simd::Avx2;
        }
    }
    Simd::Plain
}

/// Runs the group over the merged space `space` with the merged strides `st` ([`merged`];
/// the plan merged them), with the widest instruction set this CPU has.
pub(super) fn dispatch<T: Real>(
    prog: &Program<T>,
    data: &[&[T]],
    space: &[usize],
    st: &[Vec<usize>],
    sink: Sink,
    out: &mut [T],
) {
    match simd() {
        // SAFETY: the CPU has the features the function is compiled for (`simd`).
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512(prog, data, space, st, sink, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2(prog, data, space, st, sink, out) },
        Simd::Plain => walk(prog, data, space, st, sink, out),
    }
}

/// `walk` compiled with a set of target features: the same body, wider registers.
macro_rules! walk_with {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name<T: Real>(
            prog: &Program<T>,
            data: &[&[T]],
            space: &[usize],
            st: &[Vec<usize>],
            sink: Sink,
            out: &mut [T],
        ) {
            walk(prog, data, space, st, sink, out)
        }
    };
}

walk_with!(avx512, "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma");
walk_with!(avx2, "avx2,fma");

/// The merged space with at least two axes (leading ones of size 1 added).
pub(super) fn merged(space: &[usize], st: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let refs: Vec<&[usize]> = st.iter().map(|s| s.as_slice()).collect();
    let (mut d, mut s) = collapse_dyn(space, &refs);
    while d.len() < 2 {
        d.insert(0, 1);
        s.iter_mut().for_each(|v| v.insert(0, 0));
    }
    (d, s)
}

/// One block's position: its first row and column, and its size.
#[derive(Clone, Copy)]
struct Block {
    r0: usize,
    c0: usize,
    rows: usize,
    cols: usize,
}

#[inline(always)]
fn walk<T: Real>(
    prog: &Program<T>,
    data: &[&[T]],
    space: &[usize],
    st: &[Vec<usize>],
    sink: Sink,
    out: &mut [T],
) {
    // The plan merged the space already (`merged`).
    let (d, s) = (space, st);
    let m = d.len();
    let (h, w) = (d[m - 2], d[m - 1]);
    let (bh, bw) = match w >= CHUNK {
        true => (1, CHUNK),
        false => ((CHUNK / w).clamp(1, h.max(1)), w),
    };
    let outer = &d[..m - 2];
    let mut regs: Vec<Vec<T>> = vec![vec![T::zero(); bh * bw]; prog.steps.len()];
    let mut kinds: Vec<Kind> = vec![Kind::S; prog.steps.len()];
    let mut scratch: Vec<Vec<T>> = vec![vec![]; data.len()];
    let mut idx = vec![0usize; outer.len()];
    let mut base = vec![0usize; s.len()];
    // Each operand's offset and strides in the current block: plain numbers, so the views
    // below are made on demand without a vector of them per block.
    let mut at = vec![0usize; s.len()];
    let inner: Vec<(usize, usize)> = s.iter().map(|sk| (sk[m - 2], sk[m - 1])).collect();
    for _ in 0..outer.iter().product::<usize>() {
        for r0 in (0..h).step_by(bh) {
            for c0 in (0..w).step_by(bw) {
                let b = Block {
                    r0,
                    c0,
                    rows: bh.min(h - r0),
                    cols: bw.min(w - c0),
                };
                for (k, a) in at.iter_mut().enumerate() {
                    *a = base[k] + b.r0 * inner[k].0 + b.c0 * inner[k].1;
                }
                for (k, x) in data.iter().enumerate() {
                    load(&mut scratch, x, k, inner[k], at[k], b);
                }
                let ops = Operands {
                    data,
                    scratch: &scratch,
                    inner: &inner,
                    at: &at,
                };
                let o = data.len();
                let direct = direct_run(sink, prog, inner[o], at[o], b);
                for (j, step) in prog.steps.iter().enumerate() {
                    // A step never reads its own register: it is taken out while the step
                    // writes it.
                    let mut r = std::mem::take(&mut regs[j]);
                    let mut args = [V::S(T::zero()); 3];
                    for (k, &a) in step.args.iter().enumerate() {
                        args[k] = value(a, &ops, &regs, &kinds, b);
                    }
                    let args = &args[..step.args.len()];
                    let full = kind_of(args) == Kind::F;
                    // The root's full block goes straight to the output, not through a
                    // register and a copy.
                    let last = j + 1 == prog.steps.len();
                    if let (Some(run), true, true) = (direct.clone(), last, full) {
                        apply(&step.prim, args, &mut out[run], (b.rows, b.cols));
                        kinds[j] = Kind::F;
                        regs[j] = r;
                        continue;
                    }
                    kinds[j] = apply(&step.prim, args, &mut r, (b.rows, b.cols));
                    regs[j] = r;
                }
                if direct.is_some() && kinds[prog.steps.len() - 1] == Kind::F {
                    continue;
                }
                let v = value(prog.result, &ops, &regs, &kinds, b);
                store(sink, v, inner[o], out, at[o], b);
            }
        }
        odometer(&mut idx, &mut base, outer, s);
    }
}

/// The loaded operands over the current block, viewed on demand.
struct Operands<'a, T> {
    data: &'a [&'a [T]],
    scratch: &'a [Vec<T>],
    inner: &'a [(usize, usize)],
    at: &'a [usize],
}

impl<'a, T: Real> Operands<'a, T> {
    #[inline(always)]
    fn view(&self, k: usize, b: Block) -> V<'a, T> {
        view(self.data[k], &self.scratch[k], self.inner[k], self.at[k], b)
    }
}

/// The output run a written root's last step can fill in place: the block's values adjacent
/// in the output (one row, or rows one after another).
#[inline(always)]
fn direct_run<T>(
    sink: Sink,
    prog: &Program<T>,
    (so, si): (usize, usize),
    o: usize,
    b: Block,
) -> Option<std::ops::Range<usize>> {
    let last = matches!(prog.result, Src::Step(j) if j + 1 == prog.steps.len());
    let adjacent = si == 1 && (b.rows == 1 || so == b.cols);
    (sink == Sink::Write && last && adjacent).then(|| o..o + b.rows * b.cols)
}

/// Advances the outer index by one, keeping each operand's base offset.
pub(super) fn odometer(idx: &mut [usize], base: &mut [usize], outer: &[usize], s: &[Vec<usize>]) {
    for a in (0..outer.len()).rev() {
        idx[a] += 1;
        for (b, sk) in base.iter_mut().zip(s) {
            *b += sk[a];
        }
        if idx[a] < outer[a] {
            return;
        }
        for (b, sk) in base.iter_mut().zip(s) {
            *b -= sk[a] * outer[a];
        }
        idx[a] = 0;
    }
}

/// How an operand with strides `(so, si)` over the block's rows and columns is read.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    Scalar,
    /// One value per row, adjacent.
    Rows,
    /// One row shared by every row.
    SharedRow,
    /// The full block, adjacent.
    Block,
    /// One value per row, copied.
    CopyRows,
    /// The full block, copied.
    CopyBlock,
}

#[inline(always)]
fn read_of((so, si): (usize, usize), b: Block) -> Read {
    let so = if b.rows == 1 { 0 } else { so };
    match (si, so) {
        (0, 0) => Read::Scalar,
        (0, 1) => Read::Rows,
        (0, _) => Read::CopyRows,
        (1, 0) if b.rows == 1 => Read::Block,
        (1, 0) => Read::SharedRow,
        (1, _) if so == b.cols => Read::Block,
        (_, _) => Read::CopyBlock,
    }
}

/// Copies the operands a block cannot read in place (rows that are not adjacent) into
/// `scratch`.
#[inline(always)]
fn load<T: Real>(
    scratch: &mut [Vec<T>],
    x: &[T],
    k: usize,
    (so, si): (usize, usize),
    o: usize,
    b: Block,
) {
    let buf = &mut scratch[k];
    buf.clear();
    match read_of((so, si), b) {
        Read::Scalar | Read::Rows | Read::SharedRow | Read::Block => {}
        Read::CopyRows => buf.extend((0..b.rows).map(|i| x[o + i * so])),
        Read::CopyBlock => {
            for i in 0..b.rows {
                buf.extend((0..b.cols).map(|j| x[o + i * so + j * si]));
            }
        }
    }
}

/// An operand over a block: a scalar, a value per row, a shared row or the full block.
#[inline(always)]
fn view<'a, T: Real>(
    x: &'a [T],
    scratch: &'a [T],
    so_si: (usize, usize),
    o: usize,
    b: Block,
) -> V<'a, T> {
    match read_of(so_si, b) {
        Read::Scalar => V::S(x[o]),
        Read::Rows => V::R(&x[o..o + b.rows]),
        Read::SharedRow => V::C(&x[o..o + b.cols]),
        Read::Block => V::F(&x[o..o + b.rows * b.cols]),
        Read::CopyRows => V::R(scratch),
        Read::CopyBlock => V::F(scratch),
    }
}

#[inline(always)]
fn value<'a, T: Real>(
    src: Src,
    ops: &Operands<'a, T>,
    regs: &'a [Vec<T>],
    kinds: &[Kind],
    b: Block,
) -> V<'a, T> {
    match src {
        Src::Load(k) => ops.view(k, b),
        Src::Const(c) => V::S(T::of(c)),
        Src::Step(j) => {
            let r = &regs[j];
            match kinds[j] {
                Kind::S => V::S(r[0]),
                Kind::R => V::R(&r[..b.rows]),
                Kind::C => V::C(&r[..b.cols]),
                Kind::F => V::F(&r[..b.rows * b.cols]),
            }
        }
    }
}

/// The root's sink for one block of the chain's value: written, or folded into the output at
/// strides `(so, si)` from `o` (a stride of 0 is a reduced axis).
#[inline(always)]
fn store<T: Real>(
    sink: Sink,
    v: V<T>,
    (so, si): (usize, usize),
    out: &mut [T],
    o: usize,
    b: Block,
) {
    let so = if b.rows == 1 { 0 } else { so };
    if sink != Sink::Write && so == 0 && si == 0 {
        let t = total(sink, v, b);
        out[o] = combine(sink, out[o], t);
        return;
    }
    for i in 0..b.rows {
        let row = v.row(i, b.cols);
        let at = o + i * so;
        match (sink, si, row) {
            (Sink::Write, _, V1::S(x)) => out[at..at + b.cols].fill(x),
            (Sink::Write, _, V1::A(a)) => out[at..at + b.cols].copy_from_slice(a),
            (Sink::Sum | Sink::Max, 0, r) => {
                let t = match r {
                    V1::S(x) if sink == Sink::Sum => x * T::of(b.cols as f64),
                    V1::S(x) => x,
                    V1::A(a) if sink == Sink::Sum => sum(a),
                    V1::A(a) => max(a),
                };
                out[at] = combine(sink, out[at], t);
            }
            (Sink::Sum | Sink::Max, _, V1::S(x)) => out[at..at + b.cols]
                .iter_mut()
                .for_each(|y| *y = combine(sink, *y, x)),
            (Sink::Sum | Sink::Max, _, V1::A(a)) => out[at..at + b.cols]
                .iter_mut()
                .zip(a)
                .for_each(|(y, &x)| *y = combine(sink, *y, x)),
        }
    }
}

#[inline(always)]
fn combine<T: Real>(sink: Sink, acc: T, x: T) -> T {
    match sink {
        Sink::Max => acc.max(x),
        Sink::Sum | Sink::Write => acc + x,
    }
}

/// The sum (or maximum) of a value over the whole block.
#[inline(always)]
fn total<T: Real>(sink: Sink, v: V<T>, b: Block) -> T {
    let count = |n: usize| T::of(n as f64);
    match (sink, v) {
        (Sink::Max, V::S(x)) => x,
        (Sink::Max, V::R(a) | V::C(a) | V::F(a)) => max(a),
        (Sink::Sum | Sink::Write, V::S(x)) => x * count(b.rows * b.cols),
        (Sink::Sum | Sink::Write, V::R(a)) => sum(a) * count(b.cols),
        (Sink::Sum | Sink::Write, V::C(a)) => sum(a) * count(b.rows),
        (Sink::Sum | Sink::Write, V::F(a)) => sum(a),
    }
}
