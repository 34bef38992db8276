//! The graph IR: a petgraph DAG of op nodes; an edge carries a tensor from producer to consumer
//! (its weight is the consumer's input slot). Shapes exclude the batch dimension and are CxHxW
//! for images, as written in the model file.

use crate::ast::{shape_str, ShapeLit, Span, Value};
use crate::ops::{Init, Op};
use crate::prim::PrimError;
use crate::region::Regions;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use std::fmt::Write;
use std::sync::OnceLock;

/// Per-node figures. Counts are u64; overflow is a compile error, never a wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub params: u64,
    pub trainable: u64,
    /// Weighted connections including the bias, as the AlexNet paper counts them (= MACs + biases).
    pub connections: u64,
    /// Outputs of weighted layers (conv, dense, conv_transpose).
    pub neurons: u64,
    /// Multiply-adds of one forward pass for one example.
    pub macs: u64,
    /// Bytes of this node's f32 output for one example.
    pub activation_bytes: u64,
}

/// A learnable (or running-statistics) tensor owned by a node.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// `layer.weight`, `layer.bias`, ...
    pub name: String,
    pub shape: Vec<u64>,
    pub init: Init,
    pub trainable: bool,
    /// fan-in and fan-out for the scaled initialisers.
    pub fan_in: u64,
    pub fan_out: u64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op: Op,
    /// Where the op was written (the call in the chain).
    pub span: Span,
    pub weight_init: Option<Init>,
    pub bias_init: Option<Init>,
    /// Optional `: CxHxW` annotation the compiler verifies.
    pub expect: Option<ShapeLit>,
    /// Filled by shape inference: per example when `batched`, else the whole tensor.
    pub shape: Vec<u64>,
    /// Whether the tensor has the batch axis (all but primitives' parameters and what is
    /// computed from them alone).
    pub batched: bool,
    pub stats: Stats,
    pub params: Vec<ParamSpec>,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub span: Span,
    pub graph: DiGraph<Node, usize>,
    pub inputs: Vec<NodeIndex>,
    /// (alias, producing node)
    pub outputs: Vec<(String, NodeIndex)>,
    /// Topological order, filled by shape inference.
    pub order: Vec<NodeIndex>,
    /// The fused regions of its primitives, built at first use (a network is not changed
    /// after shape inference).
    pub fused: OnceLock<Result<Regions, PrimError>>,
    /// Statement names of the network's top level and the node each stands for, where that
    /// node is named otherwise (`loss = cross_entropy(...)` is the block's last node).
    pub statements: Vec<(String, NodeIndex)>,
}

impl Network {
    /// The producers feeding `n`, ordered by input slot.
    pub fn inputs_of(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<(usize, NodeIndex)> = self
            .graph
            .edges_directed(n, Direction::Incoming)
            .map(|e| {
                use petgraph::visit::EdgeRef;
                (*e.weight(), e.source())
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// The first output and the node a loss on logits reads: the output's input when the
    /// output is a sigmoid or softmax (the loss applies it, stably), else the output itself.
    pub fn output_and_logit(&self) -> Option<(NodeIndex, NodeIndex)> {
        let out = self.outputs.first()?.1;
        let logit = if matches!(self.graph[out].op, Op::Sigmoid | Op::Softmax) {
            *self.inputs_of(out).first()?
        } else {
            out
        };
        Some((out, logit))
    }

    /// The fused regions of the network's primitives (an error only for a network whose
    /// primitives do not lower, which shape inference rules out).
    pub fn regions(&self) -> Result<&Regions, &PrimError> {
        self.fused
            .get_or_init(|| crate::region::regions(self))
            .as_ref()
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.graph[n]
    }

    /// The node an output alias, a top-level statement name (the value of its chain, as a
    /// reference to it reads: `correct = mul(hit, hot) -> sum_all` is the sum) or a layer
    /// name stands for.
    pub fn resolve(&self, name: &str) -> Option<NodeIndex> {
        self.outputs
            .iter()
            .find(|(alias, _)| alias == name)
            .map(|o| o.1)
            .or_else(|| self.statements.iter().find(|(s, _)| s == name).map(|s| s.1))
            .or_else(|| self.find(name))
    }

    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|&i| self.graph[i].name == name)
    }

    pub fn totals(&self) -> Stats {
        let mut t = Stats::default();
        for n in self.graph.node_weights() {
            // Totals are sums of values that each fit; saturate rather than wrap in the
            // pathological case, which inference already reported.
            t.params = t.params.saturating_add(n.stats.params);
            t.trainable = t.trainable.saturating_add(n.stats.trainable);
            t.connections = t.connections.saturating_add(n.stats.connections);
            t.neurons = t.neurons.saturating_add(n.stats.neurons);
            t.macs = t.macs.saturating_add(n.stats.macs);
            t.activation_bytes = t.activation_bytes.saturating_add(n.stats.activation_bytes);
        }
        t
    }

    /// All parameter tensors in topological order.
    pub fn param_specs(&self) -> Vec<&ParamSpec> {
        self.order
            .iter()
            .flat_map(|&n| self.graph[n].params.iter())
            .collect()
    }

    /// The IR printout that is snapshot-tested: one line per node in topological order.
    pub fn printout(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "net {} {{", self.name);
        for &n in &self.order {
            let node = &self.graph[n];
            let ins: Vec<String> = self
                .inputs_of(n)
                .iter()
                .map(|&i| format!("%{}", self.graph[i].name))
                .collect();
            let _ = write!(
                s,
                "  %{} : {} = {}({})",
                node.name,
                shape_str(&node.shape),
                node.op.describe(),
                ins.join(", ")
            );
            for p in &node.params {
                let _ = write!(
                    s,
                    " [{} {} {}{}]",
                    p.name.rsplit('.').next().unwrap_or(&p.name),
                    shape_str(&p.shape),
                    p.init,
                    if p.trainable { "" } else { " frozen" }
                );
            }
            s.push('\n');
        }
        for (alias, n) in &self.outputs {
            let _ = writeln!(s, "  output {alias} = %{}", self.graph[*n].name);
        }
        let t = self.totals();
        let _ = writeln!(
            s,
            "}} // params {} (trainable {}), connections {}, neurons {}, MACs {}",
            t.params, t.trainable, t.connections, t.neurons, t.macs
        );
        s
    }
}

/// A compiled model file: its networks in file order and its raw training section.
#[derive(Debug, Clone)]
pub struct Model {
    pub file_name: String,
    pub source: String,
    pub networks: Vec<Network>,
    pub train: Option<Value>,
}

impl Model {
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
    pub fn printout(&self) -> String {
        self.networks
            .iter()
            .map(|n| n.printout())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
