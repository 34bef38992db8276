//! Fusion groups of a primitive graph: which nodes one generated kernel (or one CPU loop)
//! computes together.
//!
//! A node is *materialised* (written to memory) when it is a leaf, a wanted output, a
//! reduction, or anything that is not elementwise, or when a node that is neither elementwise
//! nor a reduction reads it (a matmul reads its operands from memory). Every other node is an
//! elementwise value that is *inlined*: recomputed, at the index it is read at, inside each
//! materialised node that reads it. A group is a materialised node with the elementwise nodes
//! inlined into it, so a chain of elementwise primitives and the reduction that ends it is one
//! kernel, and a layernorm (nine primitives) is three: the mean, the variance, the output.
//! Inlining may recompute a cheap elementwise value in two groups (`x - mean` in the variance
//! and in the output) rather than write and read it back, as tinygrad does.

use super::{Graph, NodeId, Prim};

/// One kernel's worth of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The node the group writes.
    pub root: NodeId,
    /// The elementwise nodes computed inside it, in graph order (the root last when it is
    /// elementwise itself).
    pub inlined: Vec<NodeId>,
    /// The materialised nodes it reads.
    pub reads: Vec<NodeId>,
}

/// Whether a node is a function of its inputs at the same (broadcast) index.
pub fn is_elementwise(p: &Prim) -> bool {
    match p {
        Prim::Const(_)
        | Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Compare(_)
        | Prim::Where
        | Prim::Expand
        | Prim::CausalMask { .. } => true,
        Prim::Input { .. }
        | Prim::Param { .. }
        | Prim::Reduce { .. }
        | Prim::Matmul
        | Prim::Reshape
        | Prim::Permute { .. }
        | Prim::Slice { .. }
        | Prim::Pad { .. }
        | Prim::Concat { .. }
        | Prim::Gather
        | Prim::ScatterAdd { .. }
        | Prim::OneHot { .. } => false,
    }
}

fn is_leaf(p: &Prim) -> bool {
    matches!(p, Prim::Input { .. } | Prim::Param { .. })
}

/// Which nodes are written to memory when `outputs` are wanted (see the module's rule).
pub fn materialised(g: &Graph, outputs: &[NodeId]) -> Vec<bool> {
    let mut m: Vec<bool> = g.nodes.iter().map(|n| !is_elementwise(&n.prim)).collect();
    for &o in outputs {
        m[o] = true;
    }
    for n in &g.nodes {
        if !is_elementwise(&n.prim) && !matches!(n.prim, Prim::Reduce { .. }) {
            for &a in &n.inputs {
                m[a] = true;
            }
        }
    }
    m
}

/// The groups computing `outputs`, in graph order: one per materialised node that is not a
/// leaf and that the outputs depend on.
pub fn groups(g: &Graph, outputs: &[NodeId]) -> Vec<Group> {
    groups_given(g, outputs, &vec![false; g.nodes.len()])
}

/// [`groups`] when the values of the `given` nodes are at hand (kept from a forward pass): they
/// are read like leaves, and nothing only they depend on is computed.
pub fn groups_given(g: &Graph, outputs: &[NodeId], given: &[bool]) -> Vec<Group> {
    let mut m = materialised(g, outputs);
    for (i, &k) in given.iter().enumerate() {
        m[i] |= k;
    }
    let need = needed_given(g, outputs, given);
    (0..g.nodes.len())
        .filter(|&i| need[i] && m[i] && !is_leaf(&g.nodes[i].prim) && !given[i])
        .map(|root| group_of(g, &m, root))
        .collect()
}

/// The group rooted at `root`: the elementwise nodes reached from it through inlined nodes.
fn group_of(g: &Graph, m: &[bool], root: NodeId) -> Group {
    let mut inside = vec![false; root + 1];
    let mut reads = vec![];
    inside[root] = true;
    for i in (0..=root).rev() {
        if !inside[i] {
            continue;
        }
        for &a in &g.nodes[i].inputs {
            if m[a] {
                if !reads.contains(&a) {
                    reads.push(a);
                }
            } else {
                inside[a] = true;
            }
        }
    }
    reads.sort_unstable();
    let mut inlined: Vec<NodeId> = (0..root).filter(|&i| inside[i]).collect();
    if is_elementwise(&g.nodes[root].prim) {
        inlined.push(root);
    }
    Group {
        root,
        inlined,
        reads,
    }
}

/// The nodes `outputs` depend on (themselves included).
pub fn needed(g: &Graph, outputs: &[NodeId]) -> Vec<bool> {
    needed_given(g, outputs, &vec![false; g.nodes.len()])
}

/// [`needed`], not looking past the `given` nodes (needed themselves, their inputs not).
pub fn needed_given(g: &Graph, outputs: &[NodeId], given: &[bool]) -> Vec<bool> {
    let mut need = vec![false; g.nodes.len()];
    for &w in outputs {
        need[w] = true;
    }
    for i in (0..g.nodes.len()).rev() {
        if need[i] && !given[i] {
            for &a in &g.nodes[i].inputs {
                need[a] = true;
            }
        }
    }
    need
}

/// One line per group: `%root = reduce(...) <- %a, %b  [inlines %3 %4]`.
pub fn describe(g: &Graph, groups: &[Group]) -> Vec<String> {
    groups
        .iter()
        .map(|gr| {
            let reads: Vec<String> = gr.reads.iter().map(|r| format!("%{r}")).collect();
            let ops: Vec<String> = gr
                .inlined
                .iter()
                .filter(|&&i| !matches!(g.nodes[i].prim, Prim::Const(_)))
                .map(|&i| g.nodes[i].prim.name())
                .collect();
            let what = match ops.is_empty() {
                true => g.nodes[gr.root].prim.name(),
                false if is_elementwise(&g.nodes[gr.root].prim) => ops.join(" "),
                false => format!("{} {}", ops.join(" "), g.nodes[gr.root].prim.name()),
            };
            format!(
                "%{} : {} = {what} ({})",
                gr.root,
                g.nodes[gr.root].shape,
                reads.join(", ")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prim::{Binary, Reduce, Unary};

    /// layernorm over the last axis without scale and shift: nine primitives.
    fn layernorm() -> (Graph, NodeId) {
        let mut g = Graph::default();
        let x = g.input("x", &[5, 8]);
        let mean = g.reduce(Reduce::Mean, x, &[2], true).unwrap();
        let d = g.binary(Binary::Sub, x, mean).unwrap();
        let sq = g.unary(Unary::Square, d);
        let var = g.reduce(Reduce::Mean, sq, &[2], true).unwrap();
        let eps = g.constant(1e-5);
        let ve = g.binary(Binary::Add, var, eps).unwrap();
        let r = g.unary(Unary::Rsqrt, ve);
        let y = g.binary(Binary::Mul, d, r).unwrap();
        (g, y)
    }

    #[test]
    fn a_layernorm_is_three_groups_the_mean_the_variance_the_output() {
        let (g, y) = layernorm();
        let gs = groups(&g, &[y]);
        let roots: Vec<NodeId> = gs.iter().map(|gr| gr.root).collect();
        assert_eq!(roots, vec![1, 4, 8], "{:?}", describe(&g, &gs));
        // The variance recomputes x - mean rather than reading it back.
        assert_eq!(gs[1].inlined, vec![2, 3]);
        assert_eq!(gs[1].reads, vec![0, 1]);
        assert_eq!(gs[2].inlined, vec![2, 5, 6, 7, 8]);
        assert_eq!(gs[2].reads, vec![0, 1, 4]);
    }

    #[test]
    fn a_matmul_reads_its_operands_from_memory() {
        let mut g = Graph::default();
        let a = g.input("a", &[3, 4]);
        let e = g.unary(Unary::Exp, a);
        let b = g.param("b", &[4, 2]);
        let y = g.matmul(e, b).unwrap();
        let t = g.unary(Unary::Tanh, y);
        let gs = groups(&g, &[t]);
        let roots: Vec<NodeId> = gs.iter().map(|gr| gr.root).collect();
        assert_eq!(roots, vec![e, y, t]);
        assert!(gs[1].inlined.is_empty());
    }

    #[test]
    fn a_wanted_intermediate_is_written() {
        let (g, y) = layernorm();
        let gs = groups(&g, &[3, y]);
        let roots: Vec<NodeId> = gs.iter().map(|gr| gr.root).collect();
        assert_eq!(roots, vec![1, 3, 4, 8]);
        assert_eq!(
            gs[2].reads,
            vec![3],
            "the variance reads the written square"
        );
    }
}
