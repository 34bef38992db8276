//! Appending primitives to a graph: each method checks its shape rule and records the
//! inferred shape, or says which shapes disagree.

use super::shape::{broadcast, Dim, Shape};
use super::{Binary, Compare, Graph, Node, NodeId, Prim, PrimError, Reduce, Unary};

fn err<T>(msg: String) -> Result<T, PrimError> {
    Err(PrimError(msg))
}

/// The fixed size of an axis that must not be the batch (sliced, padded, joined).
fn fixed_at(s: &Shape, axis: usize, what: &str) -> Result<usize, PrimError> {
    match s.0.get(axis) {
        Some(Dim::Fixed(n)) => Ok(*n),
        Some(Dim::Batch) => err(format!("cannot {what} along the batch axis of {s}")),
        None => err(format!("axis {axis} is out of range for shape {s}")),
    }
}

/// Fixed-size products before and after the batch axis (the whole product when unbatched).
fn around_batch(s: &Shape) -> (Option<usize>, usize, usize) {
    let pos = s.0.iter().position(|d| *d == Dim::Batch);
    let prod = |d: &[Dim]| d.iter().map(|x| x.at(1)).product::<usize>();
    match pos {
        Some(p) => (Some(p), prod(&s.0[..p]), prod(&s.0[p + 1..])),
        None => (None, prod(&s.0), 1),
    }
}

impl Graph {
    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.nodes[id].shape
    }

    fn push(&mut self, prim: Prim, inputs: Vec<NodeId>, shape: Shape) -> Result<NodeId, PrimError> {
        if shape.0.iter().filter(|d| **d == Dim::Batch).count() > 1 {
            return err(format!(
                "{} would give shape {shape}, with the batch twice",
                prim.name()
            ));
        }
        self.nodes.push(Node {
            prim,
            inputs,
            shape,
        });
        Ok(self.nodes.len() - 1)
    }

    /// A batched input with `dims` per example.
    pub fn input(&mut self, name: &str, dims: &[usize]) -> NodeId {
        let prim = Prim::Input { name: name.into() };
        self.push(prim, vec![], Shape::batched(dims))
            .expect("one batch axis")
    }

    /// An input of any shape (an incoming gradient, a mask, ids laid out otherwise).
    pub fn input_shaped(&mut self, name: &str, shape: Shape) -> Result<NodeId, PrimError> {
        self.push(Prim::Input { name: name.into() }, vec![], shape)
    }

    pub fn param(&mut self, name: &str, dims: &[usize]) -> NodeId {
        let prim = Prim::Param { name: name.into() };
        self.push(prim, vec![], Shape::fixed(dims))
            .expect("no batch axis")
    }

    pub fn constant(&mut self, c: f64) -> NodeId {
        self.push(Prim::Const(c), vec![], Shape::default())
            .expect("scalar")
    }

    pub fn unary(&mut self, u: Unary, x: NodeId) -> NodeId {
        let s = self.shape(x).clone();
        self.push(Prim::Unary(u), vec![x], s).expect("same shape")
    }

    pub fn binary(&mut self, b: Binary, x: NodeId, y: NodeId) -> Result<NodeId, PrimError> {
        let s = broadcast(self.shape(x), self.shape(y))?;
        self.push(Prim::Binary(b), vec![x, y], s)
    }

    pub fn compare(&mut self, c: Compare, x: NodeId, y: NodeId) -> Result<NodeId, PrimError> {
        let s = broadcast(self.shape(x), self.shape(y))?;
        self.push(Prim::Compare(c), vec![x, y], s)
    }

    pub fn where_(&mut self, c: NodeId, a: NodeId, b: NodeId) -> Result<NodeId, PrimError> {
        let s = broadcast(self.shape(c), &broadcast(self.shape(a), self.shape(b))?)?;
        self.push(Prim::Where, vec![c, a, b], s)
    }

    /// Reduces over full `axes` (any order; repeated axes are an error).
    pub fn reduce(
        &mut self,
        op: Reduce,
        x: NodeId,
        axes: &[usize],
        keep: bool,
    ) -> Result<NodeId, PrimError> {
        let s = self.shape(x).clone();
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        if axes.windows(2).any(|w| w[0] == w[1]) || axes.iter().any(|&a| a >= s.rank()) {
            return err(format!("reduction axes {axes:?} do not fit shape {s}"));
        }
        // The batch mean is the trainer's; a mean over it would need the batch size here.
        if op == Reduce::Mean && axes.iter().any(|&a| s.0[a] == Dim::Batch) {
            return err(format!(
                "mean over the batch axis of {s}: sum, or let the loss average"
            ));
        }
        let mut out = vec![];
        for (i, &d) in s.0.iter().enumerate() {
            match (axes.contains(&i), keep) {
                (false, _) => out.push(d),
                (true, true) => out.push(Dim::Fixed(1)),
                (true, false) => {}
            }
        }
        self.push(Prim::Reduce { op, axes, keep }, vec![x], Shape(out))
    }

    /// Broadcasts `x` to `to`.
    pub fn expand(&mut self, x: NodeId, to: Shape) -> Result<NodeId, PrimError> {
        let s = self.shape(x);
        if broadcast(s, &to)? != to {
            return err(format!("shape {s} does not broadcast to {to}"));
        }
        self.push(Prim::Expand, vec![x], to)
    }

    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId, PrimError> {
        let (sa, sb) = (self.shape(a).clone(), self.shape(b).clone());
        if sa.rank() < 2 || sb.rank() < 2 {
            return err(format!(
                "matmul needs two axes on each side, not {sa} and {sb}"
            ));
        }
        let (ra, rb) = (sa.rank(), sb.rank());
        let (m, k) = (sa.0[ra - 2], sa.0[ra - 1]);
        let (k2, n) = (sb.0[rb - 2], sb.0[rb - 1]);
        if k != k2 {
            return err(format!(
                "matmul of {sa} by {sb}: inner sizes {k} and {k2} differ"
            ));
        }
        let lead = broadcast(
            &Shape(sa.0[..ra - 2].to_vec()),
            &Shape(sb.0[..rb - 2].to_vec()),
        )
        .map_err(|e| PrimError(format!("matmul of {sa} by {sb}: {e}")))?;
        let mut out = lead.0;
        out.extend([m, n]);
        self.push(Prim::Matmul, vec![a, b], Shape(out))
    }

    /// Reshapes to `to`; the batch axis must keep the same elements before and after it.
    pub fn reshape(&mut self, x: NodeId, to: Shape) -> Result<NodeId, PrimError> {
        let s = self.shape(x).clone();
        let (pa, ba, aa) = around_batch(&s);
        let (pb, bb, ab) = around_batch(&to);
        if pa.is_some() != pb.is_some() || ba != bb || aa != ab {
            return err(format!("cannot reshape {s} to {to}"));
        }
        self.push(Prim::Reshape, vec![x], to)
    }

    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId, PrimError> {
        let s = self.shape(x).clone();
        let mut seen = vec![false; s.rank()];
        for &p in perm {
            if p >= s.rank() || std::mem::replace(&mut seen[p], true) {
                return err(format!("{perm:?} is not a permutation of the axes of {s}"));
            }
        }
        if perm.len() != s.rank() {
            return err(format!("{perm:?} is not a permutation of the axes of {s}"));
        }
        let out = perm.iter().map(|&p| s.0[p]).collect();
        let perm = perm.to_vec();
        self.push(Prim::Permute { perm }, vec![x], Shape(out))
    }

    /// Swaps the last two axes.
    pub fn transpose(&mut self, x: NodeId) -> Result<NodeId, PrimError> {
        let r = self.shape(x).rank();
        if r < 2 {
            return err(format!("cannot transpose {}", self.shape(x)));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(x, &perm)
    }

    pub fn slice(
        &mut self,
        x: NodeId,
        axis: usize,
        start: usize,
        end: usize,
    ) -> Result<NodeId, PrimError> {
        let s = self.shape(x).clone();
        let n = fixed_at(&s, axis, "slice")?;
        if start >= end || end > n {
            return err(format!(
                "slice {start}..{end} is empty or outside axis {axis} of {s} (size {n})"
            ));
        }
        let mut out = s.0.clone();
        out[axis] = Dim::Fixed(end - start);
        self.push(Prim::Slice { axis, start, end }, vec![x], Shape(out))
    }

    pub fn pad(
        &mut self,
        x: NodeId,
        axis: usize,
        before: usize,
        after: usize,
    ) -> Result<NodeId, PrimError> {
        let s = self.shape(x).clone();
        let n = fixed_at(&s, axis, "pad")?;
        let mut out = s.0.clone();
        out[axis] = Dim::Fixed(n + before + after);
        let prim = Prim::Pad {
            axis,
            before,
            after,
        };
        self.push(prim, vec![x], Shape(out))
    }

    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId, PrimError> {
        let first = self.shape(xs[0]).clone();
        let mut total = 0;
        for &x in xs {
            let s = self.shape(x);
            let same_rest = s.rank() == first.rank()
                && (0..s.rank()).all(|i| i == axis || s.0[i] == first.0[i]);
            if !same_rest {
                return err(format!(
                    "cannot join {first} and {s} along axis {axis}: the other axes differ"
                ));
            }
            total += fixed_at(s, axis, "join")?;
        }
        let mut out = first.0.clone();
        out[axis] = Dim::Fixed(total);
        self.push(Prim::Concat { axis }, xs.to_vec(), Shape(out))
    }

    /// Rows of `table` (its axis 0) picked by `ids`: `ids.shape ++ table.shape[1..]`.
    pub fn gather(&mut self, table: NodeId, ids: NodeId) -> Result<NodeId, PrimError> {
        let (t, i) = (self.shape(table).clone(), self.shape(ids).clone());
        if t.rank() < 1 || t.is_batched() {
            return err(format!(
                "gather needs a table without a batch axis, not {t}"
            ));
        }
        let mut out = i.0.clone();
        out.extend(&t.0[1..]);
        self.push(Prim::Gather, vec![table, ids], Shape(out))
    }

    pub fn scatter_add(
        &mut self,
        g: NodeId,
        ids: NodeId,
        rows: usize,
    ) -> Result<NodeId, PrimError> {
        let (gs, is) = (self.shape(g).clone(), self.shape(ids).clone());
        if gs.rank() < is.rank() || gs.0[..is.rank()] != is.0[..] {
            return err(format!(
                "scatter_add of {gs} by ids {is}: leading axes differ"
            ));
        }
        let mut out = vec![Dim::Fixed(rows)];
        out.extend(&gs.0[is.rank()..]);
        self.push(Prim::ScatterAdd { rows }, vec![g, ids], Shape(out))
    }

    /// `ids` as one-hot rows of `n`: `ids.shape ++ [n]`.
    pub fn one_hot(&mut self, ids: NodeId, n: usize) -> Result<NodeId, PrimError> {
        if n == 0 {
            return err("one_hot needs at least one class".into());
        }
        let mut out = self.shape(ids).0.clone();
        out.push(Dim::Fixed(n));
        self.push(Prim::OneHot { n }, vec![ids], Shape(out))
    }

    pub fn causal_mask(&mut self, t: usize) -> NodeId {
        self.push(Prim::CausalMask { t }, vec![], Shape::fixed(&[t, t]))
            .expect("no batch axis")
    }
}
