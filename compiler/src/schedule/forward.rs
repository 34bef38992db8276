//! The forward walk: a network's nodes in topological order, each lowered by its op's module
//! through an exhaustive match over [`Op`]; a dense layer computes the activation that alone
//! reads it in the same kernel.

use super::{consumers, numel, LowerError, NodeCx};
use crate::ir::Network;
use crate::kernels::{Act, Store};
use crate::ops::conv::ConvGeometry;
use crate::ops::conv_transpose::TransposeGeometry;
use crate::ops::{self, Op, ShapeError};
use crate::program::{Builder, Kind, ParamSet, TensorId};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// The tensors of one forward pass of a network.
#[derive(Debug, Clone)]
pub struct Forward {
    pub net: String,
    pub batch: u64,
    pub values: HashMap<NodeIndex, TensorId>,
    /// Output node and its tensor.
    pub output_node: NodeIndex,
    pub output: TensorId,
    /// Where the final sigmoid/softmax reads from, for losses computed from logits.
    pub logit_node: NodeIndex,
    pub logit: TensorId,
    pub train: bool,
    /// What a node's forward pass keeps for its backward besides its output (max pooling's
    /// winners).
    pub saved: HashMap<NodeIndex, TensorId>,
    /// What each fused region's forward stored, by region (see [`crate::region`]).
    pub regions: HashMap<usize, super::region::Stored>,
}

/// The node the forward walk lowers, with its parameters and the values it reads.
struct Step<'a> {
    at: NodeCx<'a>,
    params: &'a ParamSet,
    /// The values of its inputs.
    x: Vec<TensorId>,
    train: bool,
}

impl Step<'_> {
    /// The tensor of the node's value.
    fn activation(&self, b: &mut Builder) -> TensorId {
        b.tensor(self.at.scope(), self.at.len, Kind::Activation)
    }

    fn shape_err(&self, e: ShapeError) -> LowerError {
        LowerError::Other(format!("layer `{}`: {}", self.at.node.name, e.message))
    }

    /// The layer's weight and, when it has one, its bias.
    fn weight_and_bias(&self, bias: bool) -> (TensorId, Option<TensorId>) {
        let name = &self.at.node.name;
        let w = self.params.get(&format!("{name}.weight")).tensor;
        let b = bias.then(|| self.params.get(&format!("{name}.bias")).tensor);
        (w, b)
    }
}

/// The activation a dense node `n` computes as well: its only consumer, when that is an
/// activation and neither is the output or the logit (`ends`).
fn fused_activation(
    net: &Network,
    consumers: &HashMap<NodeIndex, Vec<NodeIndex>>,
    n: NodeIndex,
    (output_node, logit_node): (NodeIndex, NodeIndex),
) -> Option<NodeIndex> {
    let only = consumers.get(&n).filter(|c| c.len() == 1).map(|c| c[0]);
    only.filter(|&c| {
        ops::activation::act(&net.graph[c].op).is_some()
            && c != output_node
            && n != logit_node
            && n != output_node
    })
}

impl Builder {
    /// Records the forward pass of `net` on `input` (batch x features) into the current pass.
    pub fn forward(
        &mut self,
        net: &Network,
        params: &ParamSet,
        input: TensorId,
        batch: u64,
        train: bool,
    ) -> Result<Forward, LowerError> {
        if net.inputs.len() != 1 {
            return Err(LowerError::Inputs {
                net: net.name.clone(),
                count: net.inputs.len(),
            });
        }
        let ends = net
            .output_and_logit()
            .ok_or_else(|| LowerError::Other(format!("network `{}` has no output", net.name)))?;
        self.forward_inputs(net, params, &[input], batch, train, ends)
    }

    /// Records the forward pass of `net` with `inputs[k]` (batch x features) the value of
    /// its k-th input, into the current pass; `(output_node, logit_node)` are the nodes the
    /// pass ends at (a declared loss: the loss node), which no activation is fused into.
    pub fn forward_inputs(
        &mut self,
        net: &Network,
        params: &ParamSet,
        inputs: &[TensorId],
        batch: u64,
        train: bool,
        (output_node, logit_node): (NodeIndex, NodeIndex),
    ) -> Result<Forward, LowerError> {
        if inputs.len() != net.inputs.len() {
            return Err(LowerError::Other(format!(
                "network `{}` has {} inputs, given {}",
                net.name,
                net.inputs.len(),
                inputs.len()
            )));
        }
        if let Some(e) = super::cpu_only(net) {
            return Err(e);
        }
        let input_of: HashMap<NodeIndex, TensorId> = net
            .inputs
            .iter()
            .copied()
            .zip(inputs.iter().copied())
            .collect();
        // Consumers per node, to decide activation fusion.
        let consumers = consumers(net);
        let mut values: HashMap<NodeIndex, TensorId> = HashMap::new();
        let mut saved: HashMap<NodeIndex, TensorId> = HashMap::new();
        let mut stored: HashMap<usize, super::region::Stored> = HashMap::new();
        // Nodes of a region run with it, at its last node; without regions (a network whose
        // primitives do not lower), one at a time, and the error is reported there.
        let regions = net.regions().ok();
        // dense node -> the activation its kernel computes as well (its only consumer).
        let mut fused: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for &n in &net.order {
            if let Some((k, r)) = regions.and_then(|rs| rs.of.get(&n).map(|&k| (k, &rs.list[k]))) {
                if r.nodes.last() == Some(&n) {
                    let (outs, st) = self.forward_region(net, r, &values, batch);
                    values.extend(outs);
                    stored.insert(k, st);
                }
                continue;
            }
            let at = NodeCx::new(net, n, batch);
            let x: Vec<TensorId> = at.ins.iter().map(|i| values[i]).collect();
            if let Some(&dense) = fused.iter().find(|(_, a)| **a == n).map(|(d, _)| d) {
                // The dense kernel already wrote this activation.
                values.insert(n, values[&dense]);
                continue;
            }
            let s = Step {
                at,
                params,
                x,
                train,
            };
            let t = match &s.at.node.op {
                Op::Input { .. } => input_of[&n],
                Op::Dense { units, bias } => {
                    let fuse = fused_activation(net, &consumers, n, (output_node, logit_node));
                    let out = self.forward_dense(&s, *units, *bias, fuse);
                    if let Some(c) = fuse {
                        fused.insert(n, c);
                    }
                    out
                }
                op @ (Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. }) => {
                    self.forward_activation(&s, op)?
                }
                Op::Softmax => self.forward_softmax(&s),
                Op::Add => match super::prim::prim_op(net, n) {
                    Some(op) => self.forward_prim(&s.at, &op, &s.x, params)?,
                    None => self.forward_add(&s),
                },
                Op::Flatten | Op::Reshape { .. } => s.x[0],
                Op::Dropout { p } if train && *p > 0.0 => self.forward_dropout(&s, *p),
                Op::Dropout { .. } => s.x[0],
                Op::Conv { .. } => self.forward_conv(&s)?,
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let (out, winners) = self.forward_pool(&s)?;
                    if let Some(t) = winners {
                        saved.insert(n, t);
                    }
                    out
                }
                Op::Lrn { .. } => self.forward_lrn(&s),
                Op::Concat { axis } => match super::prim::prim_op(net, n) {
                    Some(op) => self.forward_prim(&s.at, &op, &s.x, params)?,
                    None => self.forward_concat(&s, *axis),
                },
                Op::ConvTranspose { .. } => self.forward_conv_transpose(&s)?,
                Op::BatchNorm { eps, momentum } => {
                    let (out, stats) = self.forward_batchnorm(&s, (*eps, *momentum));
                    saved.insert(n, stats);
                    out
                }
                Op::Prim(op) => self.forward_prim(&s.at, op, &s.x, params)?,
            };
            values.insert(n, t);
        }
        Ok(Forward {
            net: net.name.clone(),
            batch,
            output: values[&output_node],
            logit: values[&logit_node],
            output_node,
            logit_node,
            values,
            train,
            saved,
            regions: stored,
        })
    }

    /// A dense layer, computing the activation `fuse` as well when there is one.
    fn forward_dense(
        &mut self,
        s: &Step,
        units: u64,
        bias: bool,
        fuse: Option<NodeIndex>,
    ) -> TensorId {
        let graph = &s.at.net.graph;
        let (rows, fan_in) = super::dense_dims(s.at.net, s.at.n);
        let act = fuse
            .and_then(|c| ops::activation::act(&graph[c].op))
            .unwrap_or(Act::Identity);
        let out = s.activation(self);
        let blocks = ops::dense::blocks(s.params, &s.at.node.name, bias, fan_in);
        ops::dense::lower_forward(
            self,
            &blocks,
            s.at.batch * rows,
            (units, fan_in),
            act,
            s.x[0],
            out,
            &s.at.scope(),
            s.at.label("forward"),
        );
        out
    }

    fn forward_activation(&mut self, s: &Step, op: &Op) -> Result<TensorId, LowerError> {
        let act = ops::activation::act(op).ok_or_else(|| {
            LowerError::Other(format!(
                "layer `{}`: leaky_relu needs alpha > 0",
                s.at.node.name
            ))
        })?;
        let out = s.activation(self);
        let label = s.at.label("forward");
        ops::activation::lower_forward(self, act, s.at.len, s.x[0], out, label);
        Ok(out)
    }

    fn forward_softmax(&mut self, s: &Step) -> TensorId {
        let out = s.activation(self);
        let label = s.at.label("forward");
        ops::softmax::lower_forward(self, &s.at.node.shape, s.at.batch, s.x[0], out, label);
        out
    }

    fn forward_add(&mut self, s: &Step) -> TensorId {
        let out = s.activation(self);
        ops::add::lower_forward(self, s.at.len, &s.x, out, s.at.label("forward"));
        out
    }

    fn forward_dropout(&mut self, s: &Step, p: f64) -> TensorId {
        let out = s.activation(self);
        let offset = self.sample0() * numel(&s.at.node.shape);
        ops::dropout::lower(
            self,
            p,
            offset,
            s.at.len,
            false,
            s.x[0],
            (out, Store::Write),
            s.at.label("forward"),
        );
        out
    }

    fn forward_conv(&mut self, s: &Step) -> Result<TensorId, LowerError> {
        let g = ConvGeometry::of(&s.at.node.op, &s.at.in_shape(0)).map_err(|e| s.shape_err(e))?;
        let out = s.activation(self);
        let (w, b) = s.weight_and_bias(g.bias);
        ops::conv::lower_forward(
            self,
            &g,
            s.at.batch,
            s.x[0],
            w,
            b,
            (out, Store::Write),
            &s.at.scope(),
            s.at.label("forward"),
        );
        Ok(out)
    }

    /// Max or average pooling: its output, and max pooling's winners (kept for the backward).
    fn forward_pool(&mut self, s: &Step) -> Result<(TensorId, Option<TensorId>), LowerError> {
        let (c, win) =
            ops::pool::geometry(&s.at.node.op, &s.at.in_shape(0)).map_err(|e| s.shape_err(e))?;
        let max = matches!(s.at.node.op, Op::MaxPool { .. });
        let out = s.activation(self);
        let winners = max.then(|| {
            let name = format!("{}.winners", s.at.scope());
            self.tensor(name, s.at.len, Kind::Activation)
        });
        ops::pool::lower_forward(
            self,
            max,
            c,
            &win,
            s.at.batch,
            s.x[0],
            out,
            winners,
            s.at.label("forward"),
        );
        Ok((out, winners))
    }

    fn forward_lrn(&mut self, s: &Step) -> TensorId {
        let out = s.activation(self);
        ops::lrn::lower_forward(
            self,
            &s.at.node.op,
            &s.at.in_shape(0),
            s.at.batch,
            s.x[0],
            out,
            s.at.label("forward"),
        );
        out
    }

    fn forward_concat(&mut self, s: &Step, axis: u64) -> TensorId {
        let out = s.activation(self);
        let shapes: Vec<Vec<u64>> = (0..s.x.len()).map(|i| s.at.in_shape(i)).collect();
        let label = s.at.label("forward");
        ops::concat::lower_forward(self, &shapes, axis, s.at.batch, &s.x, out, &label);
        out
    }

    fn forward_conv_transpose(&mut self, s: &Step) -> Result<TensorId, LowerError> {
        let g =
            TransposeGeometry::of(&s.at.node.op, &s.at.in_shape(0)).map_err(|e| s.shape_err(e))?;
        let out = s.activation(self);
        let (w, b) = s.weight_and_bias(g.bias);
        ops::conv_transpose::lower_forward(
            self,
            &g,
            s.at.batch,
            s.x[0],
            w,
            b,
            out,
            &s.at.scope(),
            s.at.label("forward"),
        );
        Ok(out)
    }

    /// Batch normalisation: its output, and the batch statistics its backward reads.
    fn forward_batchnorm(&mut self, s: &Step, settings: (f64, f64)) -> (TensorId, TensorId) {
        let out = s.activation(self);
        let t = |name: &str| s.params.get(&format!("{}.{name}", s.at.node.name)).tensor;
        let tensors = ops::batchnorm::NodeTensors {
            weight: t("weight"),
            bias: t("bias"),
            running_mean: t("running_mean"),
            running_var: t("running_var"),
        };
        let stats = ops::batchnorm::lower_forward(
            self,
            settings,
            &s.at.in_shape(0),
            s.at.batch,
            s.train,
            s.x[0],
            out,
            &tensors,
            &s.at.scope(),
            s.at.label("forward"),
        );
        (out, stats)
    }
}
