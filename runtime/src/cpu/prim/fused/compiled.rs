//! Fused groups compiled ahead of time: for the groups the shipped models and the standard
//! library make, `generated.rs` holds one Rust loop per group, the whole chain computed in
//! registers, value by value, with what is the same along a row (a token's `rsqrt(var + eps)`)
//! computed once per row. The block interpreter (`walk`) runs every other group, and every
//! group in f64: it is the reference these loops are tested against (`codegen`'s tests).
//!
//! A group is found by its key: its steps and operands, which operands vary along the
//! innermost merged axis, and what the root does with the value. The key says nothing of
//! sizes, so one loop serves every batch and sequence length.

use super::generated;
use super::walk::{simd, Simd};
#[cfg(test)]
use super::Step;
use super::{Program, Sink, Src};
use crate::cpu::Real;
use netc_compiler::prim::{Binary, Compare, Prim, Unary};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// What a compiled loop needs to know of a group: enough to write it and to find it again.
#[cfg(test)]
#[derive(Clone)]
pub(super) struct Spec {
    pub(super) steps: Vec<(Prim, Vec<Src>)>,
    pub(super) result: Src,
    /// For each load: whether it varies along the innermost axis (else one value a row).
    pub(super) inner: Vec<bool>,
    pub(super) sink: Sink,
    /// Whether the output varies along the innermost axis (false: a row reduces to a value).
    pub(super) out_inner: bool,
}

/// The group `prog` over the merged strides `s` (the output's last) as a [`Spec`]; None
/// when an innermost stride is neither 0 nor 1.
#[cfg(test)]
pub(super) fn spec<T>(prog: &Program<T>, s: &[Vec<usize>], sink: Sink) -> Option<Spec> {
    let (inner, out_inner) = innermost(s)?;
    Some(Spec {
        steps: prog
            .steps
            .iter()
            .map(|Step { prim, args }| (prim.clone(), args.clone()))
            .collect(),
        result: prog.result,
        inner,
        sink,
        out_inner,
    })
}

/// Whether each load, and the output (last), varies along the innermost axis.
fn innermost(s: &[Vec<usize>]) -> Option<(Vec<bool>, bool)> {
    let mut inner = s
        .iter()
        .map(|sk| match sk.last() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        })
        .collect::<Option<Vec<bool>>>()?;
    let out = inner.pop()?;
    Some((inner, out))
}

/// The key of a spec: numbers, so finding a group costs no formatting per call.
#[cfg(test)]
pub(super) fn key(s: &Spec) -> Vec<u64> {
    let steps = s.steps.iter().map(|(p, a)| (p, a.as_slice()));
    key_of(steps, s.result, &s.inner, s.sink, s.out_inner)
}

fn key_of<'a>(
    steps: impl ExactSizeIterator<Item = (&'a Prim, &'a [Src])>,
    result: Src,
    inner: &[bool],
    sink: Sink,
    out_inner: bool,
) -> Vec<u64> {
    let mut k = vec![steps.len() as u64, inner.len() as u64];
    for (prim, args) in steps {
        prim_code(prim, &mut k);
        k.push(args.len() as u64);
        args.iter().for_each(|&a| src_code(a, &mut k));
    }
    src_code(result, &mut k);
    k.extend(inner.iter().map(|&i| i as u64));
    k.push(match sink {
        Sink::Write => 0,
        Sink::Sum => 1,
        Sink::Max => 2,
    });
    k.push(out_inner as u64);
    k
}

fn src_code(s: Src, k: &mut Vec<u64>) {
    match s {
        Src::Load(i) => k.extend([1, i as u64]),
        Src::Step(j) => k.extend([2, j as u64]),
        Src::Const(c) => k.extend([3, c.to_bits()]),
    }
}

fn prim_code(p: &Prim, k: &mut Vec<u64>) {
    let (code, extra) = match p {
        Prim::Unary(u) => match u {
            Unary::Neg => (100, None),
            Unary::Exp => (101, None),
            Unary::Log => (102, None),
            Unary::Sqrt => (103, None),
            Unary::Rsqrt => (104, None),
            Unary::Tanh => (105, None),
            Unary::Erf => (106, None),
            Unary::Sin => (107, None),
            Unary::Cos => (108, None),
            Unary::Sigmoid => (109, None),
            Unary::Relu => (110, None),
            Unary::Abs => (111, None),
            Unary::Square => (112, None),
            Unary::Reciprocal => (113, None),
            Unary::Pow(c) => (114, Some(c.to_bits())),
        },
        Prim::Binary(b) => (
            match b {
                Binary::Add => 200,
                Binary::Sub => 201,
                Binary::Mul => 202,
                Binary::Div => 203,
                Binary::Max => 204,
                Binary::Min => 205,
            },
            None,
        ),
        Prim::Compare(c) => (
            match c {
                Compare::Gt => 300,
                Compare::Ge => 301,
                Compare::Lt => 302,
                Compare::Le => 303,
                Compare::Eq => 304,
                Compare::Ne => 305,
            },
            None,
        ),
        Prim::Where => (400, None),
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
    };
    k.push(code);
    k.extend(extra);
}

/// Each generated loop's index by its key, built once.
fn index() -> &'static HashMap<&'static [u64], usize, BuildHasherDefault<KeyHasher>> {
    static INDEX: OnceLock<HashMap<&'static [u64], usize, BuildHasherDefault<KeyHasher>>> =
        OnceLock::new();
    INDEX.get_or_init(|| {
        generated::KEYS
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i))
            .collect()
    })
}

/// A multiply-and-rotate hash of the keys' words: the keys are fixed, so SipHash's defence
/// against chosen keys buys nothing, and it was a tenth of a small group's call.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // A key's words arrive as their bytes: taken eight at a time.
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Where a slab of rows starts and how far apart its rows are, per operand.
pub(super) type Rows = [(usize, usize)];

/// The index of the compiled loop of the group `prog` over the merged strides `s` (the
/// output's last), when there is one: f32 only, and only a group `generated.rs` holds.
pub(super) fn find<T: Real>(prog: &Program<T>, s: &[Vec<usize>], sink: Sink) -> Option<usize> {
    // f64 (the reference) never has a compiled loop: no key is built for it.
    T::as_f32(&[])?;
    let (inner, out_inner) = innermost(s)?;
    let steps = prog.steps.iter().map(|s| (&s.prim, s.args.as_slice()));
    let key = key_of(steps, prog.result, &inner, sink, out_inner);
    index().get(key.as_slice()).copied()
}

/// Runs compiled loop `idx` (found by [`find`] for this group) over the merged space `d`
/// with the merged strides `s`.
pub(super) fn run<T: Real>(
    idx: usize,
    d: &[usize],
    s: &[Vec<usize>],
    data: &[&[T]],
    out: &mut [T],
) {
    let out = T::as_f32_mut(out).expect("a compiled loop is found for f32 only");
    // A region's tile runs a few groups of a few operands each: their slices and offsets
    // live on the stack, not in vectors allocated per call (a tenth of a small group's time).
    const ON_STACK: usize = 16;
    if s.len() > ON_STACK {
        let data: Vec<&[f32]> = data.iter().filter_map(|x| T::as_f32(x)).collect();
        let (mut base, mut at) = (vec![0; s.len()], vec![(0, 0); s.len()]);
        return rows(idx, d, s, &data, out, (&mut base, &mut at));
    }
    let mut slices: [&[f32]; ON_STACK] = [&[]; ON_STACK];
    for (a, x) in slices.iter_mut().zip(data) {
        *a = T::as_f32(x).expect("f32 like the output");
    }
    let (mut base, mut at) = ([0; ON_STACK], [(0, 0); ON_STACK]);
    let n = s.len();
    let pos = (&mut base[..n], &mut at[..n]);
    rows(idx, d, s, &slices[..data.len()], out, pos);
}

/// The loop over the outer axes: each step runs the compiled loop over one slab of rows.
/// `base` holds each operand's offset (the output's last), `at` the slab's offsets and row
/// strides handed to the loop.
fn rows(
    idx: usize,
    d: &[usize],
    s: &[Vec<usize>],
    data: &[&[f32]],
    out: &mut [f32],
    (base, at): (&mut [usize], &mut [(usize, usize)]),
) {
    let out_inner = s.last().and_then(|o| o.last()) == Some(&1);
    let m = d.len();
    let (h, w) = (d[m - 2], d[m - 1]);
    let outer = &d[..m - 2];
    // A row reduced to one value is computed into `tmp`, then summed in lanes.
    let mut tmp = vec![0.0f32; if out_inner { 0 } else { w }];
    let mut idx_outer = vec![0usize; outer.len()];
    for _ in 0..outer.iter().product::<usize>() {
        for (k, a) in at.iter_mut().enumerate() {
            *a = (base[k], s[k][m - 2]);
        }
        let (o, ins) = at.split_last().expect("the output's strides come last");
        dispatch(idx, (h, w), data, ins, out, *o, &mut tmp);
        super::walk::odometer(&mut idx_outer, base, outer, s);
    }
}

fn dispatch(
    idx: usize,
    hw: (usize, usize),
    data: &[&[f32]],
    at: &Rows,
    out: &mut [f32],
    o: (usize, usize),
    tmp: &mut [f32],
) {
    match simd() {
        // SAFETY: the CPU has the features the function is compiled for (`simd`).
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512(idx, hw, data, at, out, o, tmp) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2(idx, hw, data, at, out, o, tmp) },
        Simd::Plain => generated::run(idx, hw, data, at, out, o, tmp),
    }
}

/// The generated loops compiled with a set of target features: the same bodies, wider
/// registers.
macro_rules! run_with {
    ($name:ident, $features:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        unsafe fn $name(
            idx: usize,
            hw: (usize, usize),
            data: &[&[f32]],
            at: &Rows,
            out: &mut [f32],
            o: (usize, usize),
            tmp: &mut [f32],
        ) {
            generated::run(idx, hw, data, at, out, o, tmp)
        }
    };
}

run_with!(avx512, "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma");
run_with!(avx2, "avx2,fma");
