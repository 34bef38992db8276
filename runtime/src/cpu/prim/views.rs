//! Strided views for matmul operands: a permute, slice or reshape whose only readers are
//! products (or other such views) is never copied; the product reads its operand's memory at
//! the view's strides, as gemm takes any row and column strides. Attention's per-head queries,
//! keys and values (a slice of the fused projection, split into heads, permuted) and the
//! transposes its backward multiplies by are then read in place, not gathered into new buffers.

use super::layout::strides;
use crate::cpu::Real;
use netc_compiler::prim::fuse::Group;
use netc_compiler::prim::{Graph, NodeId, Prim};

/// A view of a materialised node's buffer: element `i` (a multi-index over `dims`) is at
/// `offset + sum(i_a * strides_a)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub base: NodeId,
    pub offset: usize,
    pub dims: Vec<usize>,
    pub strides: Vec<usize>,
}

fn is_view_op(p: &Prim) -> bool {
    matches!(p, Prim::Permute { .. } | Prim::Slice { .. } | Prim::Reshape)
}

/// The nodes computed as views (no group of their own): view ops that are not wanted, whose
/// every reader is a matmul or another such view, and whose layout is a strided view of a
/// materialised buffer. A view whose layout fails is materialised, and the choice is made
/// again, as its inputs now have a reader that is not a view.
pub fn virtual_nodes(g: &Graph, groups: &[Group], want: &[NodeId], batch: usize) -> Vec<bool> {
    let mut readers: Vec<Vec<NodeId>> = vec![vec![]; g.nodes.len()];
    for gr in groups {
        for &r in &gr.reads {
            readers[r].push(gr.root);
        }
    }
    let mut forced = vec![false; g.nodes.len()];
    loop {
        let mut virt = vec![false; g.nodes.len()];
        // Readers come after the nodes they read: decide from the last node back.
        for gr in groups.iter().rev() {
            let n = gr.root;
            virt[n] = !forced[n]
                && is_view_op(&g.nodes[n].prim)
                && !want.contains(&n)
                && !readers[n].is_empty()
                && readers[n]
                    .iter()
                    .all(|&r| virt[r] || matches!(g.nodes[r].prim, Prim::Matmul));
        }
        let bad = groups
            .iter()
            .map(|gr| gr.root)
            .find(|&n| virt[n] && layout(g, n, batch, &virt).is_none());
        match bad {
            Some(n) => forced[n] = true,
            None => return virt,
        }
    }
}

/// The layout of node `n` as read by a product: through the virtual views down to a
/// materialised buffer (None when a reshape cannot be a view of the strides it meets).
pub fn layout(g: &Graph, n: NodeId, batch: usize, virt: &[bool]) -> Option<Layout> {
    let node = &g.nodes[n];
    if !virt[n] {
        let dims = node.shape.at(batch);
        return Some(Layout {
            base: n,
            offset: 0,
            strides: strides(&dims),
            dims,
        });
    }
    let mut l = layout(g, node.inputs[0], batch, virt)?;
    match &node.prim {
        Prim::Permute { perm } => {
            l.dims = perm.iter().map(|&a| l.dims[a]).collect();
            l.strides = perm.iter().map(|&a| l.strides[a]).collect();
        }
        Prim::Slice { axis, start, end } => {
            l.offset += start * l.strides[*axis];
            l.dims[*axis] = end - start;
        }
        Prim::Reshape => {
            let to = node.shape.at(batch);
            l.strides = reshape_strides(&l.dims, &l.strides, &to)?;
            l.dims = to;
        }
        Prim::Input { .. }
        | Prim::Param { .. }
        | Prim::Const(_)
        | Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Compare(_)
        | Prim::Where
        | Prim::Reduce { .. }
        | Prim::Expand
        | Prim::Matmul
        | Prim::Pad { .. }
        | Prim::Concat { .. }
        | Prim::Gather
        | Prim::ScatterAdd { .. }
        | Prim::OneHot { .. }
        | Prim::CausalMask { .. } => return None,
    }
    Some(l)
}

/// Strides that read `old` (at `old_strides`) reshaped to `new` without a copy, when there
/// are (NumPy's rule: each group of old axes that makes a group of new axes must be
/// contiguous among itself).
pub fn reshape_strides(old: &[usize], old_strides: &[usize], new: &[usize]) -> Option<Vec<usize>> {
    // Size-1 axes take no part; they get any stride.
    let (od, os): (Vec<usize>, Vec<usize>) = old
        .iter()
        .zip(old_strides)
        .filter(|(&d, _)| d != 1)
        .map(|(&d, &s)| (d, s))
        .unzip();
    let big: Vec<usize> = (0..new.len()).filter(|&i| new[i] != 1).collect();
    let nd: Vec<usize> = big.iter().map(|&i| new[i]).collect();
    let mut ns = vec![0usize; nd.len()];
    let (mut oi, mut ni) = (0, 0);
    while oi < od.len() && ni < nd.len() {
        let (mut oj, mut nj) = (oi + 1, ni + 1);
        let (mut op, mut np) = (od[oi], nd[ni]);
        while op != np {
            if np < op {
                np *= *nd.get(nj)?;
                nj += 1;
            } else {
                op *= *od.get(oj)?;
                oj += 1;
            }
        }
        if (oi..oj - 1).any(|k| os[k] != od[k + 1] * os[k + 1]) {
            return None;
        }
        ns[nj - 1] = os[oj - 1];
        for k in (ni + 1..nj).rev() {
            ns[k - 1] = ns[k] * nd[k];
        }
        (oi, ni) = (oj, nj);
    }
    if oi != od.len() || ni != nd.len() {
        return None;
    }
    let mut out = vec![1usize; new.len()];
    for (k, &i) in big.iter().enumerate() {
        out[i] = ns[k];
    }
    Some(out)
}

/// The product of two strided operands over their last two axes, the leading axes broadcast
/// to `out`'s: one gemm per matrix, reading each operand at its strides.
pub fn matmul<T: Real>(a: (&[T], &Layout), b: (&[T], &Layout), out: &[usize]) -> Vec<T> {
    use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
    use rayon::prelude::*;
    let r = out.len();
    let (m, n) = (out[r - 2], out[r - 1]);
    let k = a.1.dims[a.1.dims.len() - 1];
    let lead = &out[..r - 2];
    let offsets = |l: &Layout| super::layout::offsets(lead, &lead_strides(l, lead));
    let (oa, ob) = (offsets(a.1), offsets(b.1));
    let last2 = |l: &Layout| {
        let s = &l.strides[l.strides.len() - 2..];
        (s[0], s[1])
    };
    let ((ar, ac), (br, bc)) = (last2(a.1), last2(b.1));
    let mut y = vec![T::zero(); out.iter().product()];
    let one = |(l, dst): (usize, &mut [T])| {
        let va = ArrayView2::from_shape((m, k).strides((ar, ac)), &a.0[a.1.offset + oa[l]..])
            .expect("the view lies in its buffer");
        let vb = ArrayView2::from_shape((k, n).strides((br, bc)), &b.0[b.1.offset + ob[l]..])
            .expect("the view lies in its buffer");
        let vy = ArrayViewMut2::from_shape((m, n), dst).expect("m x n");
        crate::cpu::matmul::matmul_serial_into(va, vb, false, vy);
    };
    match y.len() * k >= 1 << 20 {
        true => y.par_chunks_mut((m * n).max(1)).enumerate().for_each(one),
        false => y.chunks_mut((m * n).max(1)).enumerate().for_each(one),
    }
    y
}

/// An operand's strides over the product's leading axes (aligned right; 0 where it
/// broadcasts).
fn lead_strides(l: &Layout, lead: &[usize]) -> Vec<usize> {
    let own = l.dims.len() - 2;
    (0..lead.len())
        .map(|i| {
            let from_end = lead.len() - i;
            match from_end <= own {
                true => {
                    let a = own - from_end;
                    if l.dims[a] == 1 {
                        0
                    } else {
                        l.strides[a]
                    }
                }
                false => 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshapes_that_split_or_merge_regular_axes_are_views() {
        // A [2, 6] slice of rows 8 apart, its last axis split into [2, 3].
        assert_eq!(
            reshape_strides(&[2, 6], &[8, 1], &[2, 2, 3]),
            Some(vec![8, 3, 1])
        );
        // A contiguous [2, 3, 4] merged to [6, 4] and to [24].
        assert_eq!(
            reshape_strides(&[2, 3, 4], &[12, 4, 1], &[6, 4]),
            Some(vec![4, 1])
        );
        assert_eq!(
            reshape_strides(&[2, 3, 4], &[12, 4, 1], &[24]),
            Some(vec![1])
        );
        // A transposed [3, 2] cannot merge.
        assert_eq!(reshape_strides(&[3, 2], &[1, 3], &[6]), None);
        // Size-1 axes come and go.
        assert_eq!(reshape_strides(&[1, 4], &[4, 1], &[4, 1]), Some(vec![1, 1]));
    }
}
