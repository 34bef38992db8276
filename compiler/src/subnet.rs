//! A part of a network run on its own: every node between one of its tensors and another,
//! with the first tensor turned into the part's input. A VAE's decoder is the part from the
//! latent `z` to the reconstruction; `netc sample` feeds it draws from the prior. The part's
//! nodes keep their names, so its parameters are the trained network's tensors of those names.

use crate::ir::{Network, Node, Stats};
use crate::ops::Op;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Why a part cannot be cut out: a message naming the nodes (the caller adds where).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutError(pub String);

impl std::fmt::Display for CutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The part of `net` that computes `to` from `from` (both as [`Network::resolve`] reads a
/// name): `from` becomes the input, `to` the one output. `to` must be computed from `from`
/// and from nothing else the batch brings: an input reached other than through `from` is an
/// error naming it (parameters, and what is computed from them alone, come along).
pub fn cut(net: &Network, from: &str, to: &str) -> Result<Network, CutError> {
    let missing = |n: &str| CutError(format!("network `{}` has no layer `{n}`", net.name));
    let f = net.resolve(from).ok_or_else(|| missing(from))?;
    let t = net.resolve(to).ok_or_else(|| missing(to))?;
    if !net.graph[f].batched {
        return Err(CutError(format!(
            "`{from}` has no batch axis (it is computed from parameters alone); it cannot be fed values"
        )));
    }
    // Walk back from `to`, stopping at `from`.
    let mut seen: std::collections::HashSet<NodeIndex> = [t].into_iter().collect();
    let mut stack = vec![t];
    let mut reaches_from = t == f;
    let mut other_input = None;
    while let Some(n) = stack.pop() {
        if n == f {
            reaches_from = true;
            continue;
        }
        if let Op::Input { .. } = net.graph[n].op {
            other_input.get_or_insert(n);
        }
        for i in net.inputs_of(n) {
            if seen.insert(i) {
                stack.push(i);
            }
        }
    }
    if !reaches_from {
        return Err(CutError(format!("`{to}` is not computed from `{from}`")));
    }
    if let Some(i) = other_input {
        return Err(CutError(format!(
            "`{to}` reads input `{}` other than through `{from}`, so it cannot be computed from `{from}` alone",
            net.graph[i].name
        )));
    }
    let mut graph: DiGraph<Node, usize> = DiGraph::new();
    let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let order: Vec<NodeIndex> = net
        .order
        .iter()
        .copied()
        .filter(|n| seen.contains(n))
        .collect();
    for &n in &order {
        let mut node = net.graph[n].clone();
        if n == f {
            // The latent becomes an input of its own shape: no op, no parameters.
            node.op = Op::Input {
                shape: node.shape.clone(),
            };
            node.params.clear();
            node.weight_init = None;
            node.bias_init = None;
            node.stats = Stats {
                activation_bytes: node.stats.activation_bytes,
                ..Stats::default()
            };
        }
        map.insert(n, graph.add_node(node));
    }
    for &n in &order {
        if n == f {
            continue;
        }
        use petgraph::visit::EdgeRef;
        for e in net.graph.edges_directed(n, petgraph::Direction::Incoming) {
            graph.add_edge(map[&e.source()], map[&n], *e.weight());
        }
    }
    Ok(Network {
        name: format!("{}[{from}..{to}]", net.name),
        span: net.span,
        graph,
        inputs: vec![map[&f]],
        outputs: vec![(to.to_string(), map[&t])],
        order: order.iter().map(|n| map[n]).collect(),
        fused: OnceLock::new(),
        statements: net
            .statements
            .iter()
            .filter_map(|(s, n)| map.get(n).map(|&m| (s.clone(), m)))
            .collect(),
    })
}
