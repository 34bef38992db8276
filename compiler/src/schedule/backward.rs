//! The backward walk: gradients flow in reverse topological order from the node a gradient
//! arrives at, each node's backward lowered by its op's module through an exhaustive match
//! over [`Op`]. A tensor fed to several consumers gets the first gradient written and the rest
//! accumulated; a dense layer fuses the backward of the activation that alone feeds it.

use super::{consumers, numel, Forward, NodeCx};
use crate::ir::Network;
use crate::kernels::{Act, Store};
use crate::ops::conv::ConvGeometry;
use crate::ops::conv_transpose::TransposeGeometry;
use crate::ops::prim::PrimOp;
use crate::ops::{self, Op};
use crate::program::{Builder, Kind, ParamSet, TensorId};
use petgraph::graph::NodeIndex;
use std::collections::{HashMap, HashSet};

/// A weighted layer's weight tensor, the weight's gradient and the bias's (None when frozen,
/// or without a bias).
fn weighted(
    params: &ParamSet,
    layer: &str,
    bias: bool,
) -> (TensorId, Option<TensorId>, Option<TensorId>) {
    let w = params.get(&format!("{layer}.weight"));
    let gb = bias
        .then(|| params.get(&format!("{layer}.bias")).grad)
        .flatten();
    (w.tensor, w.grad, gb)
}

/// Which nodes need a gradient: those with trainable parameters upstream, or the input when
/// its gradient is wanted.
fn needs_grad(net: &Network, params: &ParamSet, want_input_grad: bool) -> HashMap<NodeIndex, bool> {
    let input_node = net.inputs[0];
    let mut needs: HashMap<NodeIndex, bool> = HashMap::new();
    for &n in &net.order {
        let node = &net.graph[n];
        let own = node
            .params
            .iter()
            .any(|p| params.bindings[params.by_name[&p.name]].grad.is_some());
        let via = net.inputs_of(n).iter().any(|i| needs[i]);
        needs.insert(n, own || via || (n == input_node && want_input_grad));
    }
    needs
}

/// What the backward walk reads, and the gradient of every node it has reached.
struct Walk<'a> {
    net: &'a Network,
    params: &'a ParamSet,
    fwd: &'a Forward,
    needs: HashMap<NodeIndex, bool>,
    consumers: HashMap<NodeIndex, Vec<NodeIndex>>,
    grads: HashMap<NodeIndex, TensorId>,
    /// The fused regions whose backward has been lowered.
    done: HashSet<usize>,
}

impl Builder {
    /// Backpropagates `dy`, the gradient at node `from` (`fwd.logit_node` for a loss computed
    /// from logits, `fwd.output_node` for a gradient arriving from a downstream network),
    /// writing gradients of trainable parameters. Returns the gradient at the input if asked for.
    pub fn backward(
        &mut self,
        net: &Network,
        params: &ParamSet,
        fwd: &Forward,
        from: NodeIndex,
        dy: TensorId,
        want_input_grad: bool,
    ) -> Option<TensorId> {
        let input_node = net.inputs[0];
        let mut w = Walk {
            net,
            params,
            fwd,
            needs: needs_grad(net, params, want_input_grad),
            consumers: consumers(net),
            grads: HashMap::new(),
            done: HashSet::new(),
        };
        let regions = net.regions().ok();
        w.grads.insert(from, dy);
        // Nodes after `from` in topological order (a final sigmoid when `from` is the logit) are skipped.
        let start = net.order.iter().position(|&n| n == from).unwrap_or(0);
        for &n in net.order[..=start].iter().rev() {
            // A region's backward runs whole where the walk first meets it: the gradients at
            // its outputs have all arrived (their readers come after it).
            if let Some(&k) = regions.and_then(|rs| rs.of.get(&n)) {
                if w.done.insert(k) {
                    self.backward_of_region(&mut w, k);
                }
                continue;
            }
            let Some(&dy) = w.grads.get(&n) else { continue };
            let at = NodeCx::new(net, n, fwd.batch);
            // A single-input op whose input needs no gradient has nothing to pass back.
            if at.node.op.single_input() && !w.needs[&at.ins[0]] {
                continue;
            }
            self.backward_node(&mut w, &at, dy);
        }
        if want_input_grad {
            w.grads.get(&input_node).copied()
        } else {
            None
        }
    }

    /// Lowers the backward of one node, `dy` the gradient at its output.
    fn backward_node(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId) {
        let y = w.fwd.values[&at.n];
        let label = |phase: &str| at.label(phase);
        let len = at.len;
        match &at.node.op {
            Op::Prim(op) => self.backward_as_prim(w, at, op, dy),
            Op::Input { .. } => {}
            Op::Dense { units, bias } => self.backward_dense(w, at, dy, *units, *bias),
            op @ (Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. }) => {
                // A fused activation's input is the dense node; its gradient goes there.
                let act = ops::activation::act(op).unwrap_or(Act::Identity);
                let dx = self.grad_slot(&mut w.grads, at.ins[0], len, w.net);
                ops::activation::lower_backward(self, act, len, dy, y, dx, label("backward"));
            }
            Op::Softmax => {
                let dx = self.grad_slot(&mut w.grads, at.ins[0], len, w.net);
                let shape = &at.node.shape;
                let label = label("backward");
                ops::softmax::lower_backward(self, shape, at.batch, dy, y, dx, label);
            }
            Op::Add if super::prim::prim_op(w.net, at.n).is_some() => {
                self.backward_as_prim(w, at, &ops::add::BROADCAST, dy)
            }
            Op::Add => {
                let dxs: Vec<(TensorId, Store)> = at
                    .ins
                    .iter()
                    .filter(|i| w.needs[i])
                    .map(|&i| self.grad_slot(&mut w.grads, i, len, w.net))
                    .collect();
                ops::add::lower_backward(self, len, dy, &dxs, label("backward"));
            }
            Op::Dropout { p } if w.fwd.train && *p > 0.0 => {
                let dx = self.grad_slot(&mut w.grads, at.ins[0], len, w.net);
                let offset = self.sample0() * numel(&at.node.shape);
                ops::dropout::lower(self, *p, offset, len, true, dy, dx, label("backward"));
            }
            Op::Flatten | Op::Reshape { .. } | Op::Dropout { .. } => {
                let existing = w.grads.get(&at.ins[0]).copied();
                if let Some(g) =
                    ops::reshape::lower_backward(self, len, dy, existing, label("backward"))
                {
                    // No copy: the gradient buffer is shared like the value buffer.
                    w.grads.insert(at.ins[0], g);
                }
            }
            Op::Conv { .. } => self.backward_conv(w, at, dy),
            Op::MaxPool { .. } | Op::AvgPool { .. } => self.backward_pool(w, at, dy),
            Op::Lrn { .. } => {
                let x_node = at.ins[0];
                let dx = self.grad_slot(&mut w.grads, x_node, len, w.net);
                ops::lrn::lower_backward(
                    self,
                    &at.node.op,
                    &w.net.graph[x_node].shape,
                    at.batch,
                    dy,
                    w.fwd.values[&x_node],
                    dx,
                    label("backward"),
                );
            }
            Op::Concat { axis } => match super::prim::prim_op(w.net, at.n) {
                Some(op) => self.backward_as_prim(w, at, &op, dy),
                None => self.backward_concat(w, at, dy, *axis),
            },
            Op::ConvTranspose { .. } => self.backward_conv_transpose(w, at, dy),
            Op::BatchNorm { .. } => self.backward_batchnorm(w, at, dy),
        }
    }

    /// The backward of a node that runs as a primitive: gradient slots for the inputs that
    /// need one and the derived graph gives one.
    fn backward_as_prim(&mut self, w: &mut Walk, at: &NodeCx, op: &PrimOp, dy: TensorId) {
        let Walk {
            net,
            params,
            fwd,
            needs,
            grads,
            ..
        } = w;
        let (net, batch) = (*net, at.batch);
        let mut slot = |b: &mut Builder, k: usize| {
            let i = at.ins[k];
            needs[&i].then(|| b.grad_slot(grads, i, super::prim::value_len(net, i, batch), net))
        };
        self.backward_prim(at, op, (params, &fwd.values), dy, &mut slot);
    }

    /// The backward of region `k`, from the gradients its outputs have (none: nothing to do),
    /// into gradient slots of the inputs that need one.
    fn backward_of_region(&mut self, w: &mut Walk, k: usize) {
        let (Ok(rs), Some(stored)) = (w.net.regions(), w.fwd.regions.get(&k)) else {
            return;
        };
        let r = &rs.list[k];
        let dys: Vec<Option<TensorId>> = (r.outputs.iter())
            .map(|o| w.grads.get(&o.0).copied())
            .collect();
        if dys.iter().all(Option::is_none) {
            return;
        }
        let (net, batch) = (w.net, w.fwd.batch);
        let Walk {
            needs, grads, fwd, ..
        } = w;
        let mut slot = |b: &mut Builder, j: usize| {
            let i = r.inputs[j].0;
            needs[&i].then(|| b.grad_slot(grads, i, super::prim::value_len(net, i, batch), net))
        };
        self.backward_region(net, r, (&fwd.values, stored), &dys, batch, &mut slot);
    }

    /// The gradient slot of input node `i` when it needs a gradient (see [`Builder::grad_slot`]).
    fn input_grad(&mut self, w: &mut Walk, i: NodeIndex, batch: u64) -> Option<(TensorId, Store)> {
        w.needs[&i].then(|| {
            let l = super::prim::value_len(w.net, i, batch);
            self.grad_slot(&mut w.grads, i, l, w.net)
        })
    }

    /// A dense layer's backward. When its input is an activation whose only consumer is this
    /// layer, that activation's backward is fused into the product: one dispatch, not two.
    fn backward_dense(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId, units: u64, bias: bool) {
        let (net, batch) = (w.net, at.batch);
        let x_node = at.ins[0];
        let x = w.fwd.values[&x_node];
        let (rows, fan_in) = super::dense_dims(net, at.n);
        let blocks = ops::dense::blocks(w.params, &at.node.name, bias, fan_in);
        let act_in = net.inputs_of(x_node);
        let fused_act = ops::activation::act(&net.graph[x_node].op).filter(|_| {
            !w.grads.contains_key(&x_node)
                && w.consumers.get(&x_node).map(Vec::as_slice) == Some(&[at.n][..])
                && act_in.len() == 1
        });
        let dx = match (w.needs[&x_node], fused_act) {
            (true, Some(act)) => {
                let act_len = numel(&net.graph[act_in[0]].shape) * batch;
                let (dx, store) = self.grad_slot(&mut w.grads, act_in[0], act_len, net);
                Some(ops::dense::InputGrad {
                    dx,
                    store,
                    act,
                    saved: Some(w.fwd.values[&x_node]),
                    label: format!(
                        "{}.{} backward input + {} backward",
                        net.name, at.node.name, net.graph[x_node].name
                    ),
                })
            }
            (true, None) => {
                let len = fan_in * rows * batch;
                let (dx, store) = self.grad_slot(&mut w.grads, x_node, len, net);
                Some(ops::dense::InputGrad {
                    dx,
                    store,
                    act: Act::Identity,
                    saved: None,
                    label: at.label("backward input"),
                })
            }
            (false, _) => None,
        };
        ops::dense::lower_backward(
            self,
            &blocks,
            batch * rows,
            (units, fan_in),
            dy,
            x,
            dx,
            &at.scope(),
            &|phase: &str| at.label(phase),
        );
    }

    fn backward_conv(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId) {
        let x_node = at.ins[0];
        let Ok(g) = ConvGeometry::of(&at.node.op, &w.net.graph[x_node].shape) else {
            return; // `forward` reported it
        };
        let (wt, gw, gb) = weighted(w.params, &at.node.name, g.bias);
        let dx = self.input_grad(w, x_node, at.batch);
        ops::conv::lower_backward(
            self,
            &g,
            at.batch,
            dy,
            w.fwd.values[&x_node],
            wt,
            (gw, gb),
            dx,
            None,
            &at.scope(),
            &|phase: &str| at.label(phase),
        );
    }

    fn backward_pool(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId) {
        let x_node = at.ins[0];
        let Ok((c, win)) = ops::pool::geometry(&at.node.op, &w.net.graph[x_node].shape) else {
            return;
        };
        let max = matches!(at.node.op, Op::MaxPool { .. });
        let l = numel(&w.net.graph[x_node].shape) * at.batch;
        let dx = self.grad_slot(&mut w.grads, x_node, l, w.net);
        ops::pool::lower_backward(
            self,
            max,
            c,
            &win,
            at.batch,
            dy,
            w.fwd.saved.get(&at.n).copied(),
            dx,
            at.label("backward"),
        );
    }

    fn backward_concat(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId, axis: u64) {
        let shapes: Vec<Vec<u64>> = (0..at.ins.len()).map(|i| at.in_shape(i)).collect();
        let dxs: Vec<Option<(TensorId, Store)>> = at
            .ins
            .iter()
            .map(|&i| self.input_grad(w, i, at.batch))
            .collect();
        let label = at.label("backward");
        ops::concat::lower_backward(self, &shapes, axis, at.batch, dy, &dxs, &label);
    }

    fn backward_conv_transpose(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId) {
        let x_node = at.ins[0];
        let Ok(g) = TransposeGeometry::of(&at.node.op, &w.net.graph[x_node].shape) else {
            return; // `forward` reported it
        };
        let (wt, gw, gb) = weighted(w.params, &at.node.name, g.bias);
        let dx = self.input_grad(w, x_node, at.batch);
        ops::conv_transpose::lower_backward(
            self,
            &g,
            at.batch,
            dy,
            w.fwd.values[&x_node],
            wt,
            (gw, gb),
            dx,
            &at.scope(),
            &|phase: &str| at.label(phase),
        );
    }

    fn backward_batchnorm(&mut self, w: &mut Walk, at: &NodeCx, dy: TensorId) {
        let x_node = at.ins[0];
        let wt = w.params.get(&format!("{}.weight", at.node.name));
        let b = w.params.get(&format!("{}.bias", at.node.name));
        let grads_wb = wt.grad.zip(b.grad);
        let dx = w.needs[&x_node].then(|| self.grad_slot(&mut w.grads, x_node, at.len, w.net));
        ops::batchnorm::lower_backward(
            self,
            &w.net.graph[x_node].shape,
            at.batch,
            w.fwd.train,
            (dy, w.fwd.values[&x_node], w.fwd.saved[&at.n], wt.tensor),
            grads_wb,
            dx,
            &at.scope(),
            &|phase: &str| at.label(phase),
        );
    }

    /// The gradient buffer of node `n`: a fresh one (Write) or the existing one (Accumulate).
    pub(crate) fn grad_slot(
        &mut self,
        grads: &mut HashMap<NodeIndex, TensorId>,
        n: NodeIndex,
        len: u64,
        net: &Network,
    ) -> (TensorId, Store) {
        match grads.get(&n) {
            Some(&t) => (t, Store::Accumulate),
            None => {
                let t = self.tensor(
                    format!("{}:d{}", net.name, net.graph[n].name),
                    len,
                    Kind::Activation,
                );
                grads.insert(n, t);
                (t, Store::Write)
            }
        }
    }
}
