//! Autodiff and lowering: forward pass, loss, backward pass and optimizer update of IR networks
//! become a static [`Program`]: ordered kernel dispatches over a planned set of buffers.
//!
//! This module walks the graph; every op's forward and gradient dispatches (and their WGSL)
//! live in its module under `ops`, reached by exhaustive matches over `Op` in
//! [`Builder::forward`] and [`Builder::backward`], and the program they record into (and its
//! buffer plan) is in [`crate::program`], below the ops. Gradients flow in reverse topological
//! order; a tensor fed to several consumers gets the first gradient written and the rest
//! accumulated. Frozen parameters get no gradient buffer and no update, but gradients still
//! flow through them to earlier layers (a GAN's generator step through the discriminator).
//! Transient buffers are reused once their last reader in a pass has run.

mod backward;
mod classifier;
mod forward;
mod loss;
mod minimise;
mod params;
mod prim;
mod region;
mod update;
mod update_rule;

/// An optimizer and its settings (defined with the kernels that apply it).
pub use crate::kernels::Optimizer;
pub use crate::program::{
    padded_len, Builder, Command, Kind, Memory, ParamBinding, ParamSet, Pass, Program, Tensor,
    TensorId,
};
pub use classifier::{ClassifierPlan, MicroBatches};
pub use forward::Forward;
pub use update_rule::{clip_factor, glob, DecayRule, ParamMult, UpdateRule};

use crate::ir::{Network, Node};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// The declared-loss program (`task = minimise`).
pub use minimise::MinimisePlan;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LowerError {
    #[error("network `{net}` has {count} inputs; training needs exactly one")]
    Inputs { net: String, count: usize },
    #[error("{0}")]
    Other(String),
}

/// The largest batch netc lowers a training step for: 2^31 rows. Far above any batch a device
/// holds, and low enough that the planner's counts (a batch of 2^63 - 1 aborted it, 10^12 took
/// hours) stay small and a tensor's size over the batch is checked, not wrapped.
pub const MAX_BATCH: u64 = 1 << 31;

fn numel(shape: &[u64]) -> u64 {
    shape.iter().product()
}

/// The first node the GPU lowering has no kernels for yet: a layer (not run as a primitive)
/// that reads a tensor without the batch axis, or a network whose output has none. The CPU
/// executor runs them.
pub fn cpu_only(net: &Network) -> Option<LowerError> {
    let out = net.output_and_logit().map(|(o, _)| o);
    net.order.iter().find_map(|&n| {
        let node = &net.graph[n];
        let unbatched = net.inputs_of(n).iter().any(|&i| !net.graph[i].batched);
        let why = if prim::prim_op(net, n).is_none() && unbatched {
            "a layer that reads a tensor without the batch axis"
        } else if Some(n) == out && !node.batched {
            "an output without the batch axis"
        } else {
            return None;
        };
        Some(LowerError::Other(format!(
            "layer `{}` ({}): {why}; such layers run on the CPU executor only for now; use `--device cpu`",
            node.name,
            node.op.name()
        )))
    })
}

/// A dense layer's rows per example and fan-in: over the last axis of a token sequence (the
/// rows are its tokens, one GEMM over batch x tokens), else the whole vector.
fn dense_dims(net: &Network, n: NodeIndex) -> (u64, u64) {
    let x = &net.graph[net.inputs_of(n)[0]].shape;
    let fan_in = x.last().copied().unwrap_or(1).max(1);
    match x.len() > 1 {
        true => (numel(x) / fan_in, fan_in),
        false => (1, numel(x)),
    }
}

/// The nodes that read each node (both walks decide fusions by them).
fn consumers(net: &Network) -> HashMap<NodeIndex, Vec<NodeIndex>> {
    let mut consumers: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
    for &n in &net.order {
        for i in net.inputs_of(n) {
            consumers.entry(i).or_default().push(n);
        }
    }
    consumers
}

/// A node being lowered: where it sits, and the names its tensors and dispatches get.
struct NodeCx<'a> {
    net: &'a Network,
    n: NodeIndex,
    node: &'a Node,
    /// The nodes it reads.
    ins: Vec<NodeIndex>,
    batch: u64,
    /// Elements of its value over the batch.
    len: u64,
}

impl<'a> NodeCx<'a> {
    fn new(net: &'a Network, n: NodeIndex, batch: u64) -> Self {
        let node = &net.graph[n];
        NodeCx {
            net,
            n,
            node,
            ins: net.inputs_of(n),
            batch,
            len: numel(&node.shape) * batch,
        }
    }

    /// A dispatch's label: `net.node phase`.
    fn label(&self, phase: &str) -> String {
        format!("{}.{} {}", self.net.name, self.node.name, phase)
    }

    /// `net:node`: the name of the node's value and the prefix of its other tensors' names.
    fn scope(&self) -> String {
        format!("{}:{}", self.net.name, self.node.name)
    }

    /// The (per-sample) shape of input `i`.
    fn in_shape(&self, i: usize) -> Vec<u64> {
        self.net.graph[self.ins[i]].shape.clone()
    }
}
