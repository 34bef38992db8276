//! Shape inference over the lowered graph: a topological order (cycles reported), then each
//! node's shape, figures and parameters, checked against its annotation.

use crate::ast::shape_str;
use crate::diag::Diagnostic;
use crate::ir::Network;
use crate::ops;
use petgraph::graph::NodeIndex;
use std::collections::HashSet;

/// Topological sort (reporting cycles), then per-node shape inference and figures.
pub fn infer_shapes(net: &mut Network, errors: &mut Vec<Diagnostic>, broken: HashSet<NodeIndex>) {
    let order = match petgraph::algo::toposort(&net.graph, None) {
        Ok(o) => o,
        Err(_) => {
            report_cycles(net, errors);
            return;
        }
    };
    let mut failed: HashSet<NodeIndex> = broken;
    let mut total = [0u64; 5];
    for &n in &order {
        let ins = net.inputs_of(n);
        if failed.contains(&n) || ins.iter().any(|i| failed.contains(i)) {
            failed.insert(n);
            continue;
        }
        let in_shapes: Vec<(Vec<u64>, bool)> = ins
            .iter()
            .map(|&i| (net.graph[i].shape.clone(), net.graph[i].batched))
            .collect();
        let node = &net.graph[n];
        match ops::infer(
            &node.name,
            &node.op,
            &in_shapes,
            &node.weight_init,
            &node.bias_init,
        ) {
            Ok(ops::Inferred {
                shape,
                batched,
                stats,
                params,
            }) => {
                if let Some(exp) = &node.expect {
                    if exp.dims != shape {
                        errors.push(
                            Diagnostic::error(format!(
                                "`{}` is {}, but its annotation says {}",
                                node.name,
                                shape_str(&shape),
                                shape_str(&exp.dims)
                            ))
                            .at(exp.span, format!("expected {}", shape_str(&exp.dims)))
                            .also(node.span, format!("computes {}", shape_str(&shape))),
                        );
                    }
                }
                let sums = [
                    total[0].checked_add(stats.params),
                    total[1].checked_add(stats.connections),
                    total[2].checked_add(stats.neurons),
                    total[3].checked_add(stats.macs),
                    total[4].checked_add(stats.activation_bytes),
                ];
                match sums {
                    [Some(a), Some(b), Some(c), Some(d), Some(e)] => total = [a, b, c, d, e],
                    _ => errors.push(
                        Diagnostic::error("the network's totals (parameters, connections, neurons, MACs or activation bytes) overflow 64 bits")
                            .at(node.span, "here"),
                    ),
                }
                let node = &mut net.graph[n];
                node.shape = shape;
                node.batched = batched;
                node.stats = stats;
                node.params = params;
            }
            Err(e) => {
                failed.insert(n);
                let mut d = Diagnostic::error(format!(
                    "shape error in `{}` ({}): {}",
                    node.name,
                    node.op.name(),
                    e.message
                ))
                .at(node.span, "this layer");
                for &i in &ins {
                    let src = &net.graph[i];
                    d = d.also(
                        src.span,
                        format!("`{}` gives {}", src.name, shape_str(&src.shape)),
                    );
                }
                if let Some(h) = e.help {
                    d = d.help(h);
                }
                errors.push(d);
            }
        }
    }
    net.order = order;
}

/// Reports each cycle of the graph once, naming its layers.
fn report_cycles(net: &Network, errors: &mut Vec<Diagnostic>) {
    for scc in petgraph::algo::tarjan_scc(&net.graph) {
        let cyclic = scc.len() > 1 || net.graph.contains_edge(scc[0], scc[0]);
        if !cyclic {
            continue;
        }
        let mut members: Vec<NodeIndex> = scc.clone();
        members.sort();
        let names: Vec<String> = members
            .iter()
            .map(|&n| format!("`{}`", net.graph[n].name))
            .collect();
        let first = members[0];
        let mut d = Diagnostic::error(format!(
            "the network has a cycle: {} -> {}",
            names.join(" -> "),
            names[0]
        ))
        .at(net.graph[first].span, "this layer depends on itself");
        for &m in &members[1..] {
            d = d.also(
                net.graph[m].span,
                format!("`{}` is part of the cycle", net.graph[m].name),
            );
        }
        errors.push(d.help("a network must be acyclic; check which names the statements refer to"));
    }
}
