//! The tensor primitives as model files call them (`exp`, `mul(a, b)`, `mean(axis=-1)`,
//! `matmul(q, k)`, `param(1x64)`, ...): their definitions, their shape rule and their lowering
//! onto a `prim::Graph`, which is also how shapes are inferred, so the rule has one home.
//! Gradients are derived (`prim::grad`); no primitive has a hand-written backward.

use super::{InferCx, ShapeError};
use crate::ast::shape_str;
use crate::ir::Stats;
use crate::prim::{Binary, Compare, Dim, Graph, NodeId, PrimError, Reduce, Shape, Unary};

/// A primitive call in the IR. Axes are the user's: per example (the batch excluded),
/// negative from the end.
#[derive(Debug, Clone, PartialEq)]
pub enum PrimOp {
    Unary(Unary),
    /// `x op c` for a constant c (`scale(c)`, `shift(c)`).
    Scalar {
        op: Binary,
        c: f64,
    },
    Binary(Binary),
    Compare(Compare),
    Where,
    Reduce {
        op: Reduce,
        axes: Vec<i64>,
        keep: bool,
    },
    Matmul,
    Permute {
        perm: Vec<i64>,
    },
    /// Swaps the last two axes.
    Transpose,
    Slice {
        axis: i64,
        start: u64,
        end: u64,
    },
    /// Rows of a table picked by integer ids: `gather(table, ids)`.
    Gather,
    /// `one_hot(ids, like)`: integer ids as one-hot rows as long as the last axis of `like`
    /// (the logits a cross-entropy compares them with); neither input takes a gradient.
    OneHot,
    /// A learned tensor without a batch axis.
    Param {
        shape: Vec<u64>,
    },
    /// Scores `[.., T, T]` with the future (above the diagonal) masked out (`on`; off, the
    /// scores pass unchanged, so a block can take `causal` as a setting).
    Causal {
        on: bool,
    },
    /// One axis split into several (`unflatten(-1, [heads, -1])`; one size may be -1).
    Unflatten {
        axis: i64,
        sizes: Vec<i64>,
    },
    /// Axes `start..=end` merged into one (`merge(-2, -1)`).
    Merge {
        start: i64,
        end: i64,
    },
    /// Tensors joined along an axis, those without the batch axis repeated over it (a class
    /// token before a sequence).
    Concat {
        axis: i64,
    },
    /// The constant vector 0, 1, ..., n-1 (no batch axis, no gradient): the positions a
    /// sinusoidal embedding's frequencies are computed from.
    Arange {
        n: u64,
    },
}

/// The value masked scores take: exp of it minus any real score is 0 in f32.
pub const MASKED: f64 = -1e30;

impl PrimOp {
    pub fn name(&self) -> &'static str {
        match self {
            PrimOp::Unary(u) => unary_name(*u),
            PrimOp::Scalar { op, .. } => match op {
                Binary::Mul => "scale",
                Binary::Add => "shift",
                Binary::Max => "clamp_min",
                Binary::Min => "clamp_max",
                Binary::Sub | Binary::Div => "scalar",
            },
            PrimOp::Binary(b) => binary_name(*b),
            PrimOp::Compare(c) => compare_name(*c),
            PrimOp::Where => "where",
            PrimOp::Reduce { op, .. } => match op {
                Reduce::Sum => "sum",
                Reduce::Mean => "mean",
                Reduce::Max => "max",
            },
            PrimOp::Matmul => "matmul",
            PrimOp::Permute { .. } => "permute",
            PrimOp::Transpose => "transpose",
            PrimOp::Slice { .. } => "slice",
            PrimOp::Gather => "gather",
            PrimOp::OneHot => "one_hot",
            PrimOp::Param { .. } => "param",
            PrimOp::Causal { .. } => "causal_mask",
            PrimOp::Unflatten { .. } => "unflatten",
            PrimOp::Merge { .. } => "merge",
            PrimOp::Concat { .. } => "concat",
            PrimOp::Arange { .. } => "arange",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PrimOp::Scalar { c, .. } => format!("{}[{c}]", self.name()),
            PrimOp::Unary(Unary::Pow(c)) => format!("pow[{c}]"),
            PrimOp::Reduce { axes, keep, .. } => {
                format!(
                    "{}[axis {axes:?}{}]",
                    self.name(),
                    if *keep { ", keep" } else { "" }
                )
            }
            PrimOp::Permute { perm } => format!("permute{perm:?}"),
            PrimOp::Slice { axis, start, end } => format!("slice[axis {axis}, {start}..{end}]"),
            PrimOp::Param { shape } => format!("param[{}]", shape_str(shape)),
            PrimOp::Causal { on } => format!("causal_mask[{}]", if *on { "on" } else { "off" }),
            PrimOp::Unflatten { axis, sizes } => format!("unflatten[axis {axis}, {sizes:?}]"),
            PrimOp::Merge { start, end } => format!("merge[axes {start}..={end}]"),
            PrimOp::Concat { axis } => format!("concat[axis {axis}]"),
            PrimOp::Arange { n } => format!("arange[{n}]"),
            PrimOp::Unary(_)
            | PrimOp::Binary(_)
            | PrimOp::Compare(_)
            | PrimOp::Where
            | PrimOp::Matmul
            | PrimOp::Transpose
            | PrimOp::Gather
            | PrimOp::OneHot => self.name().to_string(),
        }
    }

    /// How many tensors it reads (None: two or more).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            PrimOp::Concat { .. } => return None,
            PrimOp::Param { .. } | PrimOp::Arange { .. } => 0,
            PrimOp::Unary(_)
            | PrimOp::Scalar { .. }
            | PrimOp::Reduce { .. }
            | PrimOp::Permute { .. }
            | PrimOp::Transpose
            | PrimOp::Slice { .. }
            | PrimOp::Causal { .. }
            | PrimOp::Unflatten { .. }
            | PrimOp::Merge { .. } => 1,
            PrimOp::Binary(_)
            | PrimOp::Compare(_)
            | PrimOp::Matmul
            | PrimOp::Gather
            | PrimOp::OneHot => 2,
            PrimOp::Where => 3,
        })
    }
}

fn unary_name(u: Unary) -> &'static str {
    match u {
        Unary::Neg => "neg",
        Unary::Exp => "exp",
        Unary::Log => "log",
        Unary::Sqrt => "sqrt",
        Unary::Rsqrt => "rsqrt",
        Unary::Tanh => "tanh",
        Unary::Erf => "erf",
        Unary::Sin => "sin",
        Unary::Cos => "cos",
        Unary::Sigmoid => "sigmoid",
        Unary::Relu => "relu",
        Unary::Abs => "abs",
        Unary::Square => "square",
        Unary::Reciprocal => "reciprocal",
        Unary::Pow(_) => "pow",
    }
}

fn binary_name(b: Binary) -> &'static str {
    match b {
        Binary::Add => "add",
        Binary::Sub => "sub",
        Binary::Mul => "mul",
        Binary::Div => "div",
        Binary::Max => "maximum",
        Binary::Min => "minimum",
    }
}

fn compare_name(c: Compare) -> &'static str {
    match c {
        Compare::Gt => "gt",
        Compare::Ge => "ge",
        Compare::Lt => "lt",
        Compare::Le => "le",
        Compare::Eq => "eq",
        Compare::Ne => "ne",
    }
}

/// The prim-graph shape of an IR tensor.
pub fn shape_of(dims: &[u64], batched: bool) -> Shape {
    let d: Vec<usize> = dims.iter().map(|&x| x as usize).collect();
    if batched {
        Shape::batched(&d)
    } else {
        Shape::fixed(&d)
    }
}

/// The full axis of a user's axis of `x`.
fn axis(g: &Graph, x: NodeId, user: i64) -> Result<usize, PrimError> {
    g.shape(x).axis(user)
}

/// Appends the primitive's nodes reading `ins` to `g`; `name` names a param's leaf.
pub fn lower(g: &mut Graph, op: &PrimOp, ins: &[NodeId], name: &str) -> Result<NodeId, PrimError> {
    let x = ins.first().copied().unwrap_or(0);
    match op {
        PrimOp::Unary(u) => Ok(g.unary(*u, x)),
        PrimOp::Scalar { op, c } => {
            let k = g.constant(*c);
            g.binary(*op, x, k)
        }
        PrimOp::Binary(b) => g.binary(*b, ins[0], ins[1]),
        PrimOp::Compare(c) => g.compare(*c, ins[0], ins[1]),
        PrimOp::Where => g.where_(ins[0], ins[1], ins[2]),
        PrimOp::Reduce { op, axes, keep } => {
            let full = axes
                .iter()
                .map(|&a| axis(g, x, a))
                .collect::<Result<Vec<_>, _>>()?;
            g.reduce(*op, x, &full, *keep)
        }
        PrimOp::Matmul => g.matmul(ins[0], ins[1]),
        PrimOp::Permute { perm } => {
            let s = g.shape(x).clone();
            let skip = usize::from(s.is_batched());
            let mut full: Vec<usize> = (0..skip).collect();
            for &p in perm {
                full.push(axis(g, x, p)?);
            }
            if full.len() != s.rank() {
                return Err(PrimError(format!(
                    "permute{perm:?} names {} axes, but {s} has {} per example",
                    perm.len(),
                    s.rank() - skip
                )));
            }
            g.permute(x, &full)
        }
        PrimOp::Transpose => {
            let (a, b) = (axis(g, x, -2)?, axis(g, x, -1)?);
            let mut perm: Vec<usize> = (0..g.shape(x).rank()).collect();
            perm.swap(a, b);
            g.permute(x, &perm)
        }
        PrimOp::Slice {
            axis: a,
            start,
            end,
        } => {
            let full = axis(g, x, *a)?;
            g.slice(x, full, *start as usize, *end as usize)
        }
        PrimOp::Gather => g.gather(ins[0], ins[1]),
        PrimOp::OneHot => one_hot_like(g, ins[0], ins[1]),
        PrimOp::Unflatten { axis: a, sizes } => unflatten(g, x, *a, sizes),
        PrimOp::Merge { start, end } => merge(g, x, *start, *end),
        PrimOp::Concat { axis: a } => concat(g, ins, *a),
        PrimOp::Param { shape } => {
            let d: Vec<usize> = shape.iter().map(|&x| x as usize).collect();
            Ok(g.param(name, &d))
        }
        PrimOp::Arange { n } => arange(g, *n as usize),
        PrimOp::Causal { on: false } => Ok(x),
        PrimOp::Causal { on: true } => {
            let (r, c) = (axis(g, x, -2)?, axis(g, x, -1)?);
            let s = g.shape(x).clone();
            let t = s.0[c].at(0);
            if s.0[r] != s.0[c] {
                return Err(PrimError(format!(
                    "causal_mask needs square scores [.., T, T], not {s}"
                )));
            }
            let (m, low) = (g.causal_mask(t), g.constant(MASKED));
            g.where_(m, x, low)
        }
    }
}

/// 0..n as the row sums of the lower-triangular ones, less one: the causal mask is a constant
/// every executor already inlines, so the vector needs no primitive (nor kernel) of its own.
/// It costs n^2 additions per evaluation, nothing beside a network's work for the widths an
/// embedding has (hundreds).
fn arange(g: &mut Graph, n: usize) -> Result<NodeId, PrimError> {
    if n == 0 {
        return Err(PrimError("arange needs at least one value, not 0".into()));
    }
    let m = g.causal_mask(n);
    let counts = g.reduce(Reduce::Sum, m, &[1], false)?;
    let one = g.constant(1.0);
    g.binary(Binary::Sub, counts, one)
}

/// `ids` one-hot with the classes of `like`'s last axis: shaped as `like` when the ids are one
/// per position of it (a label `1` per example for logits `10`, an id per token), else the ids'
/// shape with the classes after it.
fn one_hot_like(g: &mut Graph, ids: NodeId, like: NodeId) -> Result<NodeId, PrimError> {
    let (is, ls) = (g.shape(ids).clone(), g.shape(like).clone());
    let Some((&Dim::Fixed(n), lead)) = ls.0.split_last() else {
        return Err(PrimError(format!(
            "one_hot takes its classes from the last axis of {ls}, which has none"
        )));
    };
    let lead = Shape(lead.to_vec());
    let laid = match is != lead && is.is_batched() == lead.is_batched() {
        true => g.reshape(ids, lead).unwrap_or(ids),
        false => ids,
    };
    g.one_hot(laid, n)
}

/// `x` with axis `a` split into `sizes` (one of them -1: the rest).
fn unflatten(g: &mut Graph, x: NodeId, a: i64, sizes: &[i64]) -> Result<NodeId, PrimError> {
    let full = axis(g, x, a)?;
    let s = g.shape(x).clone();
    let n = match s.0[full] {
        Dim::Fixed(n) => n,
        Dim::Batch => return Err(PrimError(format!("cannot unflatten the batch axis of {s}"))),
    };
    let known = sizes
        .iter()
        .filter(|&&d| d != -1)
        .try_fold(1i64, |a, &d| a.checked_mul(d))
        .unwrap_or(-1);
    let free = sizes.iter().filter(|&&d| d == -1).count();
    let bad = sizes.iter().any(|&d| d == 0 || d < -1) || free > 1 || known <= 0;
    let fill = if free == 1 {
        n as i64 / known.max(1)
    } else {
        1
    };
    let dims: Vec<usize> = sizes
        .iter()
        .map(|&d| if d == -1 { fill } else { d } as usize)
        .collect();
    let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if bad || total != Some(n) {
        return Err(PrimError(format!(
            "cannot split axis {a} of {s} (size {n}) into {sizes:?}"
        )));
    }
    let mut out = s.0[..full].to_vec();
    out.extend(dims.into_iter().map(Dim::Fixed));
    out.extend(&s.0[full + 1..]);
    g.reshape(x, Shape(out))
}

/// `x` with axes `start..=end` merged.
fn merge(g: &mut Graph, x: NodeId, start: i64, end: i64) -> Result<NodeId, PrimError> {
    let (a, b) = (axis(g, x, start)?, axis(g, x, end)?);
    let s = g.shape(x).clone();
    if a > b || s.0[a..=b].contains(&Dim::Batch) {
        return Err(PrimError(format!(
            "cannot merge axes {start}..={end} of {s}"
        )));
    }
    let n: usize = s.0[a..=b].iter().map(|d| d.at(1)).product();
    let mut out = s.0[..a].to_vec();
    out.push(Dim::Fixed(n));
    out.extend(&s.0[b + 1..]);
    g.reshape(x, Shape(out))
}

/// Joins `ins` along a user axis; inputs without the batch axis are repeated over it.
fn concat(g: &mut Graph, ins: &[NodeId], a: i64) -> Result<NodeId, PrimError> {
    let batched = ins.iter().find(|&&i| g.shape(i).is_batched()).copied();
    let mut parts = vec![];
    for &i in ins {
        let s = g.shape(i).clone();
        match batched {
            Some(b) if !s.is_batched() => {
                let mut to = vec![Dim::Batch];
                to.extend(&s.0);
                let lifted = g.reshape(i, Shape([vec![Dim::Fixed(1)], s.0.clone()].concat()));
                let target = Shape(to);
                let e = g.expand(lifted?, target.clone());
                parts.push(e.map_err(|_| {
                    PrimError(format!(
                        "cannot repeat {s} over the batch of {}",
                        g.shape(b)
                    ))
                })?);
            }
            _ => parts.push(i),
        }
    }
    let first = parts[0];
    let full = axis(g, first, a)?;
    g.concat(&parts, full)
}

/// Shape, batchedness and figures of a primitive node whose inputs have `ins` shapes.
pub(super) fn infer(
    cx: &mut InferCx,
    op: &PrimOp,
    ins: &[(Vec<u64>, bool)],
) -> Result<(Vec<u64>, bool), ShapeError> {
    let fits = op.arity().map_or(ins.len() >= 2, |n| ins.len() == n);
    if !fits {
        let want = op
            .arity()
            .map_or("two or more".to_string(), |n| n.to_string());
        return Err(err(format!(
            "`{}` takes {want} input(s), got {}",
            op.name(),
            ins.len()
        )));
    }
    let mut g = Graph::default();
    let leaves: Vec<NodeId> = ins
        .iter()
        .enumerate()
        .map(|(i, (d, b))| g.input_shaped(&format!("in{i}"), shape_of(d, *b)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.0))?;
    let y = lower(&mut g, op, &leaves, cx.name).map_err(|e| err(e.0))?;
    let s = g.shape(y).clone();
    cx.stats = figures(op, &g, &leaves, y)?;
    if let PrimOp::Param { shape } = op {
        let fan_in = super::prod(&shape[1.min(shape.len())..])?.max(1);
        let init = cx.w_init.clone();
        cx.params.push(crate::ir::ParamSpec {
            name: cx.name.to_string(),
            shape: shape.clone(),
            init,
            trainable: true,
            fan_in,
            fan_out: shape.first().copied().unwrap_or(1),
        });
    }
    match s.0.first() {
        Some(Dim::Batch) => Ok((s.at(1)[1..].iter().map(|&d| d as u64).collect(), true)),
        _ if s.is_batched() => Err(err(format!(
            "`{}` gives {s}, with the batch axis not first",
            op.name()
        ))),
        _ => Ok((s.at(1).iter().map(|&d| d as u64).collect(), false)),
    }
}

fn err(message: String) -> ShapeError {
    ShapeError {
        message,
        help: None,
    }
}

/// Parameters of a `param`, multiply-adds of a `matmul` (per example).
fn figures(op: &PrimOp, g: &Graph, ins: &[NodeId], y: NodeId) -> Result<Stats, ShapeError> {
    let mut st = Stats::default();
    let per_example = |s: &Shape| -> Result<u64, ShapeError> {
        let dims: Vec<u64> = s.0.iter().map(|d| d.at(1) as u64).collect();
        super::prod(&dims)
    };
    match op {
        PrimOp::Param { shape } => {
            st.params = super::prod(shape)?;
        }
        PrimOp::Matmul => {
            let a = g.shape(ins[0]);
            let k = a.0[a.rank() - 1].at(1) as u64;
            st.macs = super::mul(per_example(g.shape(y))?, k)?;
        }
        PrimOp::Unary(_)
        | PrimOp::Scalar { .. }
        | PrimOp::Binary(_)
        | PrimOp::Compare(_)
        | PrimOp::Where
        | PrimOp::Reduce { .. }
        | PrimOp::Permute { .. }
        | PrimOp::Transpose
        | PrimOp::Slice { .. }
        | PrimOp::Gather
        | PrimOp::OneHot
        | PrimOp::Causal { .. }
        | PrimOp::Unflatten { .. }
        | PrimOp::Merge { .. }
        | PrimOp::Concat { .. }
        | PrimOp::Arange { .. } => {}
    }
    Ok(st)
}

mod defs;
pub(in crate::ops) use defs::*;
