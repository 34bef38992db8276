//! Warnings about a model that compiles: what is legal but most likely a slip. A layer whose
//! output reaches no output of its network is computed for nothing, and its parameters still
//! count in the totals `check` prints (and are trained and saved).

use crate::diag::Diagnostic;
use crate::ir::{Model, Network};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use std::collections::HashSet;

/// The model's warnings, network by network in graph order.
pub fn warnings(model: &Model) -> Vec<Diagnostic> {
    model.networks.iter().flat_map(unused_layers).collect()
}

/// One warning per layer that nothing reads and that is no output, with the parameters of the
/// layers that feed only it.
fn unused_layers(net: &Network) -> Vec<Diagnostic> {
    let live = reaching_outputs(net);
    let mut out = vec![];
    for n in net.graph.node_indices() {
        let read = net
            .graph
            .neighbors_directed(n, Direction::Outgoing)
            .next()
            .is_some();
        if live.contains(&n) || read || net.inputs.contains(&n) {
            continue;
        }
        let params = dead_params(net, n, &live);
        let node = &net.graph[n];
        let mut d = Diagnostic::error(format!("the output of `{}` is never used", node.name))
            .at(node.span, "read by nothing");
        d = d.help(match params {
            0 => format!(
                "it reaches no output of network `{}`: feed it on, make it an output, or remove it",
                net.name
            ),
            p => format!(
                "it reaches no output of network `{}`, yet its {p} parameters still count in the totals and the checkpoint: feed it on, make it an output, or remove it",
                net.name
            ),
        });
        out.push(d);
    }
    out
}

/// The nodes some output reads, directly or through others.
fn reaching_outputs(net: &Network) -> HashSet<NodeIndex> {
    let mut live = HashSet::new();
    let mut stack: Vec<NodeIndex> = net.outputs.iter().map(|o| o.1).collect();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(net.graph.neighbors_directed(n, Direction::Incoming));
        }
    }
    live
}

/// The parameters of `sink` and of the unused layers feeding it.
fn dead_params(net: &Network, sink: NodeIndex, live: &HashSet<NodeIndex>) -> u64 {
    let mut seen = HashSet::new();
    let mut stack = vec![sink];
    let mut total = 0u64;
    while let Some(n) = stack.pop() {
        if live.contains(&n) || net.inputs.contains(&n) || !seen.insert(n) {
            continue;
        }
        total = total.saturating_add(net.graph[n].stats.params);
        stack.extend(net.graph.neighbors_directed(n, Direction::Incoming));
    }
    total
}
