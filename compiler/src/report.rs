//! What `netc check` and `netc graph` print: the per-layer table, its JSON form, and Graphviz DOT.

use crate::ast::shape_str;
use crate::ir::{Model, Network};
use serde_json::json;
use std::fmt::Write;

/// `1234567` -> `1,234,567`
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in decimal megabytes (MB = 10^6 bytes), or kilobytes (kB = 10^3 bytes) when small.
pub fn megabytes(bytes: u64) -> String {
    if bytes < 100_000 {
        return format!("{:.2} kB", bytes as f64 / 1e3);
    }
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn init_text(net: &Network, n: petgraph::graph::NodeIndex) -> String {
    let node = &net.graph[n];
    let prefix = format!("{}.", node.name);
    node.params
        .iter()
        .filter(|p| p.trainable)
        .map(|p| match p.name.strip_prefix(&prefix) {
            Some(suffix) => format!("{suffix}={}", p.init),
            // A `param` is its own tensor.
            None => p.init.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The parameters of each block call (`b1 33,472, b2 33,472`), layers named `call/...`, in the
/// order they come; None when the network calls no block with parameters.
fn block_params(net: &Network) -> Option<String> {
    // (call, first node written, parameters), in the order the calls are written.
    let mut sums: Vec<(&str, usize, u64)> = vec![];
    for n in net.graph.node_indices() {
        let node = &net.graph[n];
        let Some((call, _)) = node.name.split_once('/') else {
            continue;
        };
        match sums.iter_mut().find(|(c, _, _)| *c == call) {
            Some((_, _, p)) => *p = p.saturating_add(node.stats.params),
            None => sums.push((call, n.index(), node.stats.params)),
        }
    }
    sums.sort_by_key(|s| s.1);
    let parts: Vec<String> = sums
        .iter()
        .filter(|(_, _, p)| *p > 0)
        .map(|(c, _, p)| format!("{c} {}", thousands(*p)))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The fixed-width table of one network with its totals.
pub fn table(net: &Network) -> String {
    let header = [
        "layer",
        "op",
        "output shape",
        "params",
        "connections",
        "MACs",
        "init",
    ];
    let mut rows: Vec<[String; 7]> = vec![];
    for &n in &net.order {
        let node = &net.graph[n];
        let s = node.stats;
        let num = |v: u64| {
            if v == 0 {
                "-".to_string()
            } else {
                thousands(v)
            }
        };
        rows.push([
            node.name.clone(),
            node.op.name().to_string(),
            shape_str(&node.shape),
            num(s.params),
            num(s.connections),
            num(s.macs),
            init_text(net, n),
        ]);
    }
    let mut width = header.map(|h| h.len());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let right = [false, false, true, true, true, true, false];
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Padding by hand: `{:<w$}` panics for widths over 65,535 (a very long layer name).
            let fill = " ".repeat(width[i].saturating_sub(c.len()));
            if i == cells.len() - 1 {
                s.push_str(c);
            } else if right[i] {
                s.push_str(&fill);
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&fill);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = String::new();
    let ins: Vec<String> = net
        .inputs
        .iter()
        .map(|&i| format!("{}: {}", net.graph[i].name, shape_str(&net.graph[i].shape)))
        .collect();
    let _ = writeln!(out, "network {} (input {})", net.name, ins.join(", "));
    out.push_str(&line(&header.map(String::from)));
    let total_width: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
    out.push_str(&"-".repeat(total_width.min(120)));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
    }
    out.push_str(&"-".repeat(total_width.min(120)));
    out.push('\n');
    let t = net.totals();
    let param_bytes: u64 = net
        .param_specs()
        .iter()
        .map(|p| p.shape.iter().product::<u64>().saturating_mul(4))
        .fold(0u64, |a, b| a.saturating_add(b));
    let outs: Vec<String> = net
        .outputs
        .iter()
        .map(|(a, n)| format!("{a} ({})", shape_str(&net.graph[*n].shape)))
        .collect();
    let _ = writeln!(out, "outputs:           {}", outs.join(", "));
    let _ = writeln!(
        out,
        "parameters:        {} (trainable {})",
        thousands(t.params),
        thousands(t.trainable)
    );
    if let Some(blocks) = block_params(net) {
        let _ = writeln!(out, "by block:          {blocks}");
    }
    let _ = writeln!(out, "connections:       {}", thousands(t.connections));
    let _ = writeln!(out, "neurons:           {}", thousands(t.neurons));
    let _ = writeln!(out, "multiply-adds:     {} per example", thousands(t.macs));
    let _ = writeln!(
        out,
        "parameter memory:  {} (f32; kB = 10^3, MB = 10^6 bytes)",
        megabytes(param_bytes)
    );
    let _ = writeln!(
        out,
        "activation memory: {} per example (f32 output of every layer)",
        megabytes(t.activation_bytes)
    );
    out
}

/// The whole model as text: every network's table.
pub fn check_text(model: &Model) -> String {
    model
        .networks
        .iter()
        .map(table)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same figures as JSON.
pub fn check_json(model: &Model) -> serde_json::Value {
    let nets: Vec<_> = model
        .networks
        .iter()
        .map(|net| {
            let layers: Vec<_> = net
                .order
                .iter()
                .map(|&n| {
                    let node = &net.graph[n];
                    json!({
                        "name": node.name,
                        "op": node.op.name(),
                        "output_shape": node.shape,
                        "params": node.stats.params,
                        "trainable_params": node.stats.trainable,
                        "connections": node.stats.connections,
                        "neurons": node.stats.neurons,
                        "macs": node.stats.macs,
                        "activation_bytes": node.stats.activation_bytes,
                    })
                })
                .collect();
            let t = net.totals();
            json!({
                "name": net.name,
                "layers": layers,
                "totals": {
                    "params": t.params,
                    "trainable_params": t.trainable,
                    "connections": t.connections,
                    "neurons": t.neurons,
                    "macs": t.macs,
                    "activation_bytes": t.activation_bytes,
                }
            })
        })
        .collect();
    json!({ "file": model.file_name, "networks": nets })
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one cluster per network, shapes on the edges.
pub fn dot(model: &Model) -> String {
    let mut s = String::from(
        "digraph netc {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    for (ni, net) in model.networks.iter().enumerate() {
        let _ = writeln!(
            s,
            "  subgraph cluster_{ni} {{\n    label=\"{}\";",
            dot_escape(&net.name)
        );
        for &n in &net.order {
            let node = &net.graph[n];
            let mut label = format!(
                "{}\\n{}",
                dot_escape(&node.name),
                dot_escape(&node.op.describe())
            );
            if node.stats.params > 0 {
                let _ = write!(label, "\\n{} params", thousands(node.stats.params));
            }
            let _ = writeln!(s, "    n{ni}_{} [label=\"{label}\"];", n.index());
        }
        for &n in &net.order {
            for src in net.inputs_of(n) {
                let _ = writeln!(
                    s,
                    "    n{ni}_{} -> n{ni}_{} [label=\"{}\"];",
                    src.index(),
                    n.index(),
                    shape_str(&net.graph[src].shape)
                );
            }
        }
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// What one training step of a classifier allocates, as the runtime plans it (see
/// [`crate::schedule::ClassifierPlan`]): the figures `netc check` prints under the table.
#[derive(Debug, Clone)]
pub struct TrainingMemory {
    pub network: String,
    pub batch: u64,
    pub optimizer: String,
    pub memory: crate::schedule::Memory,
    /// Bytes the activation-kind tensors would take with a buffer each (no reuse).
    pub unplanned: u64,
}

/// The training memory of classifier `net` at `batch` under `opt`, planned for an adapter with
/// WebGPU's default limits (128 MiB storage bindings; larger dense weights are split).
pub fn training_memory(
    net: &crate::ir::Network,
    opt: crate::schedule::Optimizer,
    batch: u64,
) -> Result<TrainingMemory, crate::schedule::LowerError> {
    let plan = crate::schedule::Builder::new()
        .for_memory()
        .classifier(net, opt, batch)?;
    Ok(TrainingMemory {
        network: net.name.clone(),
        batch,
        optimizer: match opt {
            crate::schedule::Optimizer::Sgd { momentum, .. } if momentum > 0.0 => {
                "SGD with momentum".into()
            }
            crate::schedule::Optimizer::Sgd { .. } => "SGD".into(),
            crate::schedule::Optimizer::Adam { .. } => "Adam".into(),
            crate::schedule::Optimizer::AdamW { .. } => "AdamW".into(),
        },
        memory: plan.program.memory(),
        unplanned: plan
            .program
            .tensors
            .iter()
            .filter(|t| t.kind == crate::schedule::Kind::Activation)
            .map(|t| crate::schedule::padded_len(t.len) * 4)
            .sum::<u64>()
            .saturating_add(plan.program.repeated_bytes),
    })
}

impl TrainingMemory {
    pub fn text(&self) -> String {
        let m = &self.memory;
        format!(
            "training step of `{}` at batch {} ({}), storage buffers as the runtime allocates them:\n\
             \x20 parameters:        {}\n\
             \x20 gradients:         {}\n\
             \x20 optimizer state:   {}\n\
             \x20 activations:       {} (kept for the backward pass, gradients and temporaries; buffers reused, {} without reuse)\n\
             \x20 inputs and stats:  {}\n\
             \x20 total:             {} (CPU adapters add texture mirrors of what kernels read)\n",
            self.network,
            self.batch,
            self.optimizer,
            megabytes(m.params),
            megabytes(m.grads),
            megabytes(m.optimizer_state),
            megabytes(m.activations),
            megabytes(self.unplanned),
            megabytes(m.io),
            megabytes(m.total()),
        )
    }

    pub fn json(&self) -> serde_json::Value {
        let m = &self.memory;
        json!({
            "network": self.network,
            "batch": self.batch,
            "optimizer": self.optimizer,
            "params_bytes": m.params,
            "grads_bytes": m.grads,
            "optimizer_state_bytes": m.optimizer_state,
            "activation_bytes": m.activations,
            "io_bytes": m.io,
            "total_bytes": m.total(),
        })
    }
}
