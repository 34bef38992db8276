//! Tensor primitives: a small op set of any rank from which layers (layernorm, attention, GELU)
//! are written, with NumPy broadcasting in the shape rules and gradients derived as other
//! primitives (`grad`). A [`Graph`] is a list of nodes in topological order, each with its
//! inferred [`Shape`]; the batch is a symbolic dimension ([`Dim::Batch`]) so one graph serves
//! every batch size, and the CPU reference (`netc_runtime::cpu::prim`) evaluates it at a
//! concrete one.
//!
//! Axes in nodes are full axes (the batch axis counts where it appears); front ends translate
//! a user's per-example axis (batch excluded, negative from the end) with [`Shape::axis`].

mod build;
pub mod fuse;
pub mod grad;
mod shape;

pub use shape::{broadcast, Dim, Shape};

use std::fmt;

pub type NodeId = usize;

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Erf,
    Sin,
    Cos,
    Sigmoid,
    Relu,
    Abs,
    Square,
    Reciprocal,
    /// x^c for a constant c.
    Pow(f64),
}

/// Elementwise functions of two broadcast tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// Comparisons give 1 where true and 0 where false; they pass no gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Prim {
    /// A batched activation fed by the host or the surrounding network.
    Input {
        name: String,
    },
    /// A learned tensor (no batch axis).
    Param {
        name: String,
    },
    /// A scalar constant; broadcasting gives it any shape.
    Const(f64),
    Unary(Unary),
    Binary(Binary),
    Compare(Compare),
    /// `where(cond, a, b)`: a where cond is non-zero, else b.
    Where,
    /// Reduction over full axes (sorted, distinct); `keep` leaves them as size 1.
    Reduce {
        op: Reduce,
        axes: Vec<usize>,
        keep: bool,
    },
    /// Broadcast to a shape (NumPy's rule); the gradient of broadcasting.
    Expand,
    /// Product over the last two axes, the leading ones broadcast.
    Matmul,
    Reshape,
    /// Axis `i` of the output is axis `perm[i]` of the input.
    Permute {
        perm: Vec<usize>,
    },
    /// Elements `start..end` along an axis.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Zeros added before and after along an axis (the gradient of a slice).
    Pad {
        axis: usize,
        before: usize,
        after: usize,
    },
    Concat {
        axis: usize,
    },
    /// `gather(table, ids)`: rows of `table` (axis 0) picked by integer ids.
    Gather,
    /// `scatter_add(g, ids)` into `rows` rows: the gradient of a gather.
    ScatterAdd {
        rows: usize,
    },
    /// `one_hot(ids)`: each integer id in `0..n` as a row of `n` values, 1 at the id; a new
    /// last axis. Ids take no gradient.
    OneHot {
        n: usize,
    },
    /// A `[t, t]` constant: 1 on and below the diagonal, 0 above.
    CausalMask {
        t: usize,
    },
}

impl Prim {
    pub fn name(&self) -> String {
        match self {
            Prim::Input { name } => format!("input {name}"),
            Prim::Param { name } => format!("param {name}"),
            Prim::Const(c) => format!("const {c}"),
            Prim::Unary(u) => format!("{u:?}").to_lowercase(),
            Prim::Binary(b) => format!("{b:?}").to_lowercase(),
            Prim::Compare(c) => format!("{c:?}").to_lowercase(),
            Prim::Where => "where".into(),
            Prim::Reduce { op, axes, keep } => {
                format!("{op:?}{axes:?}{}", if *keep { " keep" } else { "" }).to_lowercase()
            }
            Prim::Expand => "expand".into(),
            Prim::Matmul => "matmul".into(),
            Prim::Reshape => "reshape".into(),
            Prim::Permute { perm } => format!("permute{perm:?}"),
            Prim::Slice { axis, start, end } => format!("slice(axis {axis}, {start}..{end})"),
            Prim::Pad {
                axis,
                before,
                after,
            } => format!("pad(axis {axis}, {before}, {after})"),
            Prim::Concat { axis } => format!("concat(axis {axis})"),
            Prim::Gather => "gather".into(),
            Prim::ScatterAdd { rows } => format!("scatter_add({rows})"),
            Prim::OneHot { n } => format!("one_hot({n})"),
            Prim::CausalMask { t } => format!("causal_mask({t})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub prim: Prim,
    pub inputs: Vec<NodeId>,
    pub shape: Shape,
}

/// Nodes in topological order: a node's inputs come before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
}

/// A shape rule that does not hold, in words naming the shapes involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrimError(pub String);

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            let args: Vec<String> = n.inputs.iter().map(|a| format!("%{a}")).collect();
            writeln!(
                f,
                "%{i} = {}({}) : {}",
                n.prim.name(),
                args.join(", "),
                n.shape
            )?;
        }
        Ok(())
    }
}
