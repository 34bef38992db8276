//! Fused regions: the nodes of a network that run as tensor primitives, joined into one
//! primitive graph per region so an executor runs a layernorm or an attention core as one
//! unit (the CPU executor over small tiles of the batch, the code generator as
//! [`crate::prim::fuse`]'s groups), not one pass over memory per primitive.
//!
//! A region is a maximal run of consecutive nodes of the topological order that run as
//! primitives (a primitive, an `add` that broadcasts, a `concat` that repeats a parameter, a
//! relu, sigmoid or tanh of a primitive's value).
//! A run of the topological order is convex (no path leaves it and comes back), so a region
//! runs whole once its last node's turn comes, and its backward runs whole when the reverse
//! walk first meets it. Parameters (`param` nodes) stay outside: a region reads them as
//! leaves without the batch axis, as it reads any tensor computed before it. The graphs are
//! built once per network ([`Network::regions`]).

use crate::ir::Network;
use crate::kernels::Act;
use crate::ops::prim::{lower, shape_of, PrimOp};
use crate::ops::Op;
use crate::prim::grad::backward_seeds;
use crate::prim::{fuse, Graph, NodeId, Prim, PrimError, Unary};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

mod memo;
pub use memo::Memo;

/// One region of a network.
#[derive(Debug, Clone)]
pub struct Region {
    /// The IR nodes it computes, in topological order.
    pub nodes: Vec<NodeIndex>,
    /// The tensors computed before it that it reads, each with the leaf standing for it.
    pub inputs: Vec<(NodeIndex, NodeId)>,
    /// The nodes read after it (or outputs of the network), each with its graph node.
    pub outputs: Vec<(NodeIndex, NodeId)>,
    /// The forward graph (its leaves are `inputs`).
    pub graph: Graph,
    /// `graph` extended with a leaf per output for the gradient arriving there (`seeds`, in
    /// the order of `outputs`) and the nodes of the gradient at each input (`grads`; None
    /// where an input takes none: ids, masks).
    pub backward: Graph,
    pub seeds: Vec<NodeId>,
    pub grads: Vec<Option<NodeId>>,
    /// What a CPU training pass keeps for the backward: the forward's computed values that the
    /// backward graph reads (attention's scores and softmax statistics), so it reads them
    /// instead of computing them again; with the groups of both graphs under that plan.
    pub kept: Vec<NodeId>,
    pub keeping_forward: Vec<fuse::Group>,
    pub keeping_backward: Vec<fuse::Group>,
    /// What an executor works out once for the region and reuses every step.
    pub memo: Memo,
}

/// A network's regions and which region each node belongs to.
#[derive(Debug, Clone, Default)]
pub struct Regions {
    pub list: Vec<Region>,
    pub of: HashMap<NodeIndex, usize>,
}

impl Region {
    /// Whether the region runs a whole batch at once: when an output has no batch axis, the
    /// gradient arriving there is already summed over the batch and must be propagated once.
    pub fn whole_batch(&self) -> bool {
        self.outputs
            .iter()
            .any(|&(_, y)| !self.graph.shape(y).is_batched())
    }

    /// The kernel groups of the forward and of the backward graph.
    pub fn groups(&self) -> (Vec<fuse::Group>, Vec<fuse::Group>) {
        let outs: Vec<NodeId> = self.outputs.iter().map(|o| o.1).collect();
        let grads: Vec<NodeId> = self.grads.iter().flatten().copied().collect();
        (
            fuse::groups(&self.graph, &outs),
            fuse::groups(&self.backward, &grads),
        )
    }
}

/// The primitive node `n` runs as: a primitive's own (a `param` included), a broadcasting
/// `add`, a `concat` repeating a parameter, a relu, sigmoid or tanh of such a node's value;
/// None for a layer.
pub fn runs_as(net: &Network, n: NodeIndex) -> Option<PrimOp> {
    own_primitive(net, n).or_else(|| absorbed_activation(net, n))
}

/// A primitive's own op, a broadcasting `add`, a `concat` repeating a parameter.
fn own_primitive(net: &Network, n: NodeIndex) -> Option<PrimOp> {
    let ins: Vec<(Vec<u64>, bool)> = net
        .inputs_of(n)
        .into_iter()
        .map(|i| (net.graph[i].shape.clone(), net.graph[i].batched))
        .collect();
    crate::ops::as_primitive(&net.graph[n].op, &ins)
}

/// A relu, sigmoid or tanh layer whose input is computed by primitives runs as the primitive
/// of the same name, so it joins their region and fused loop (a groupnorm's normalisation and
/// the SiLU after it become one pass, not three); after a layer it keeps its layer kernel (and
/// a dense kernel's fused activation). A network's output stays a layer too: a final sigmoid
/// or softmax is where the trainers take the logits (`Network::output_and_logit`).
fn absorbed_activation(net: &Network, n: NodeIndex) -> Option<PrimOp> {
    let unary = |m: NodeIndex| -> Option<Unary> {
        if net.outputs.iter().any(|o| o.1 == m) {
            return None;
        }
        match crate::ops::activation::act(&net.graph[m].op)? {
            Act::Relu => Some(Unary::Relu),
            Act::Sigmoid => Some(Unary::Sigmoid),
            Act::Tanh => Some(Unary::Tanh),
            Act::Identity | Act::LeakyRelu(_) => None,
        }
    };
    let own = unary(n)?;
    // Up a chain of such activations to what computes their input; at most a few steps, so
    // that a chain of thousands of activations after a layer costs a few steps per node, not
    // the whole chain (a longer chain after primitives keeps its later ones as layers).
    let mut at = n;
    for _ in 0..8 {
        let [x] = net.inputs_of(at)[..] else {
            return None;
        };
        if is_param(net, x) {
            return None;
        }
        if own_primitive(net, x).is_some() {
            return Some(PrimOp::Unary(own));
        }
        unary(x)?;
        at = x;
    }
    None
}

/// [`runs_as`], but None for a `param`, which a region reads as a leaf.
pub fn primitive_of(net: &Network, n: NodeIndex) -> Option<PrimOp> {
    match is_param(net, n) {
        true => None,
        false => runs_as(net, n),
    }
}

fn is_param(net: &Network, n: NodeIndex) -> bool {
    matches!(net.graph[n].op, Op::Prim(PrimOp::Param { .. }))
}

/// The runs of primitive nodes of `net` (parameters do not break a run).
fn runs(net: &Network) -> Vec<Vec<NodeIndex>> {
    let mut runs = vec![];
    let mut cur: Vec<NodeIndex> = vec![];
    for &n in &net.order {
        if is_param(net, n) {
            continue;
        }
        if primitive_of(net, n).is_some() {
            cur.push(n);
        } else if !cur.is_empty() {
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

/// Builds every region of `net`.
pub fn regions(net: &Network) -> Result<Regions, PrimError> {
    let mut out = Regions::default();
    for nodes in runs(net) {
        for &n in &nodes {
            out.of.insert(n, out.list.len());
        }
        out.list.push(region(net, nodes)?);
    }
    Ok(out)
}

/// The graph of one run of nodes, its outputs and its backward.
fn region(net: &Network, nodes: Vec<NodeIndex>) -> Result<Region, PrimError> {
    let mut g = Graph::default();
    let mut ids: HashMap<NodeIndex, NodeId> = HashMap::new();
    let mut inputs: Vec<(NodeIndex, NodeId)> = vec![];
    for &n in &nodes {
        let mut args = vec![];
        for i in net.inputs_of(n) {
            let id = match ids.get(&i) {
                Some(&id) => id,
                None => {
                    let x = &net.graph[i];
                    let leaf = g.input_shaped(&x.name, shape_of(&x.shape, x.batched))?;
                    ids.insert(i, leaf);
                    inputs.push((i, leaf));
                    leaf
                }
            };
            args.push(id);
        }
        let op = primitive_of(net, n).expect("a run holds primitive nodes only");
        let name = &net.graph[n].name;
        let y = lower(&mut g, &op, &args, name).map_err(|e| PrimError(format!("{name}: {e}")))?;
        ids.insert(n, y);
    }
    let outputs: Vec<(NodeIndex, NodeId)> = nodes
        .iter()
        .filter(|&&n| read_after(net, &nodes, n))
        .map(|&n| (n, ids[&n]))
        .collect();
    let mut backward = g.clone();
    let mut seeds = vec![];
    for &(n, y) in &outputs {
        let shape = backward.shape(y).clone();
        seeds.push(backward.input_shaped(&format!("d {}", net.graph[n].name), shape)?);
    }
    let pairs: Vec<(NodeId, NodeId)> = outputs.iter().map(|o| o.1).zip(seeds.clone()).collect();
    let leaves: Vec<NodeId> = inputs.iter().map(|i| i.1).collect();
    let grads = backward_seeds(&mut backward, &pairs, &leaves)?;
    let outs: Vec<NodeId> = outputs.iter().map(|o| o.1).collect();
    let (kept, keeping_forward, keeping_backward) = keeping(&g, &backward, &outs, &grads);
    Ok(Region {
        nodes,
        inputs,
        outputs,
        graph: g,
        backward,
        seeds,
        grads,
        kept,
        keeping_forward,
        keeping_backward,
        memo: Memo::default(),
    })
}

/// The forward values worth keeping for the backward: those the forward computes anyway as a
/// group (not a view op, which costs nothing to redo, nor a leaf) and the backward reads.
/// The backward graph starts with a copy of the forward's nodes, so ids agree.
fn keeping(
    g: &Graph,
    backward: &Graph,
    outs: &[NodeId],
    grads: &[Option<NodeId>],
) -> (Vec<NodeId>, Vec<fuse::Group>, Vec<fuse::Group>) {
    let want: Vec<NodeId> = grads.iter().flatten().copied().collect();
    let plain = fuse::groups(backward, &want);
    let forward = fuse::groups(g, outs);
    let read: Vec<NodeId> = plain.iter().flat_map(|gr| gr.reads.clone()).collect();
    let kept: Vec<NodeId> = forward
        .iter()
        .map(|gr| gr.root)
        .filter(|&n| read.contains(&n) && !outs.contains(&n))
        .filter(|&n| {
            !matches!(
                g.nodes[n].prim,
                Prim::Reshape | Prim::Permute { .. } | Prim::Slice { .. }
            )
        })
        .collect();
    let mut given = vec![false; backward.nodes.len()];
    for &n in kept.iter().chain(outs) {
        given[n] = true;
    }
    let all: Vec<NodeId> = outs.iter().chain(&kept).copied().collect();
    (
        kept,
        fuse::groups(g, &all),
        fuse::groups_given(backward, &want, &given),
    )
}

/// Whether node `n` of a region is read after it: by a node outside it, as an output of the
/// network, or by nothing at all (a dangling value is still a value).
fn read_after(net: &Network, region: &[NodeIndex], n: NodeIndex) -> bool {
    let readers: Vec<NodeIndex> = net
        .graph
        .neighbors_directed(n, petgraph::Direction::Outgoing)
        .collect();
    readers.is_empty()
        || readers.iter().any(|r| !region.contains(r))
        || net.outputs.iter().any(|o| o.1 == n)
}

/// What `netc ir --fused` prints: each region's nodes, what it reads and writes, and the
/// kernel groups of its forward and backward graphs, with the totals against one kernel
/// per primitive.
pub fn printout(net: &Network) -> String {
    let regions = match net.regions() {
        Ok(r) => r,
        Err(e) => return format!("network {}: regions not built: {e}\n", net.name),
    };
    let mut body = String::new();
    let (mut fused, mut unfused) = ([0usize; 2], [0usize; 2]);
    for (i, r) in regions.list.iter().enumerate() {
        let name = |n: &NodeIndex| net.graph[*n].name.clone();
        let (fwd, bwd) = r.groups();
        let outs: Vec<NodeId> = r.outputs.iter().map(|o| o.1).collect();
        let grads: Vec<NodeId> = r.grads.iter().flatten().copied().collect();
        for (k, (g, groups, want)) in [(&r.graph, &fwd, &outs), (&r.backward, &bwd, &grads)]
            .into_iter()
            .enumerate()
        {
            fused[k] += groups.len();
            unfused[k] += computed(g, want);
        }
        body += &format!(
            "region {i}: {} ({} nodes) reads {}; writes {}\n  forward ({} kernels):\n",
            r.nodes.iter().map(name).collect::<Vec<_>>().join(" "),
            r.nodes.len(),
            r.inputs
                .iter()
                .map(|x| name(&x.0))
                .collect::<Vec<_>>()
                .join(", "),
            r.outputs
                .iter()
                .map(|x| name(&x.0))
                .collect::<Vec<_>>()
                .join(", "),
            fwd.len()
        );
        for line in fuse::describe(&r.graph, &fwd) {
            body += &format!("    {line}\n");
        }
        body += &format!("  backward ({} kernels):\n", bwd.len());
        for line in fuse::describe(&r.backward, &bwd) {
            body += &format!("    {line}\n");
        }
    }
    format!(
        "network {}: {} regions; forward {} kernels fused ({} unfused), backward {} ({})\n{body}",
        net.name,
        regions.list.len(),
        fused[0],
        unfused[0],
        fused[1],
        unfused[1]
    )
}

/// Kernels without fusion: one per computed node the wanted ones depend on (constants
/// folded into their readers).
fn computed(g: &Graph, want: &[NodeId]) -> usize {
    let need = fuse::needed(g, want);
    g.nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            need[*i] && !n.inputs.is_empty() && !matches!(n.prim, crate::prim::Prim::Const(_))
        })
        .count()
}
