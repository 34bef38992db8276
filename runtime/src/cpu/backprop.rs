//! The backward pass through a network: gradients flow from a node back in reverse
//! topological order, each op's reference backward dispatched exhaustively, parameter
//! gradients collected by name.

use super::activation::{self, Act};
use super::{
    batchnorm, batchnorm_node, concat, conv, conv_transpose, dense, dropout, lrn, pool, softmax,
    Activations, Params, Real,
};
use ndarray::Array2;
use netc_compiler::ir::Network;
use netc_compiler::ops::conv::ConvGeometry;
use netc_compiler::ops::conv_transpose::TransposeGeometry;
use netc_compiler::ops::prim::PrimOp;
use netc_compiler::ops::{pool as pool_ops, Op};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

/// Stores a weighted layer's parameter gradients by name: its weight's and, when it has one,
/// its bias's.
fn store_weighted<T: Real>(
    p: &Params<T>,
    pgrads: &mut [Option<Vec<T>>],
    (wname, bname): (&str, &str),
    (weight, bias): (Vec<T>, Option<Vec<T>>),
) {
    if let Some(i) = p.index(wname) {
        pgrads[i] = Some(weight);
    }
    if let (Some(i), Some(b)) = (p.index(bname), bias) {
        pgrads[i] = Some(b);
    }
}

/// Backward pass from the gradient `dy` at node `from` (the logit node when the loss is
/// computed from logits). Returns a gradient per parameter (None for frozen or unreached ones)
/// and the gradient at the network input.
pub fn backward<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    from: NodeIndex,
    dy: Array2<T>,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    backward_opt(net, p, acts, from, dy, true)
}

/// A parameter gradient from a fresh standard-layout array: its buffer, no copy.
fn into_vec<T: Real>(a: Array2<T>) -> Vec<T> {
    if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    }
}

/// [`backward`], skipping the gradient at the network input unless `input_grad` (it is the
/// largest product of a first dense layer, and a classifier does not need it); without it the
/// returned input gradient is empty (0x0), not a batch of zeros allocated every step.
///
pub fn backward_opt<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    from: NodeIndex,
    dy: Array2<T>,
    input_grad: bool,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    backward_observed(net, p, acts, (from, dy), input_grad, &mut |_| {})
}

/// What [`backward_observed`] calls after each layer: the parameter gradients so far. `Send`:
/// the pass runs on a worker of rayon's pool (see `on_pool`).
pub type Progress<'a, T> = dyn FnMut(&[Option<Vec<T>>]) + Send + 'a;

/// [`backward_opt`], calling `progress` with the parameter gradients so far after each node
/// or region: a gradient once there is final (each parameter belongs to one layer), so a
/// data-parallel step can start reducing it while earlier layers' are computed.
pub fn backward_observed<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    from: (NodeIndex, Array2<T>),
    input_grad: bool,
    progress: &mut Progress<'_, T>,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    super::on_pool(|| backward_on_pool(net, p, acts, from, input_grad, progress))
}

fn backward_on_pool<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    (from, dy): (NodeIndex, Array2<T>),
    input_grad: bool,
    progress: &mut Progress<'_, T>,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    let input = net.inputs[0];
    let mut bp = Backprop {
        net,
        p,
        acts,
        input,
        input_grad,
        grads: HashMap::new(),
        pgrads: vec![None; p.names.len()],
    };
    bp.grads.insert(from, dy);
    let start = net.order.iter().position(|&n| n == from).unwrap_or(0);
    let regions = net.regions().expect("the forward pass built the regions");
    let mut done = vec![false; regions.list.len()];
    for &n in net.order[..=start].iter().rev() {
        if n == input {
            // Its gradient is the result: leave it in the map.
            continue;
        }
        if let Some(&r) = regions.of.get(&n) {
            // Met first at its latest node: every gradient reaching its outputs has arrived.
            if !std::mem::replace(&mut done[r], true) {
                bp.region(&regions.list[r]);
                progress(&bp.pgrads);
            }
            continue;
        }
        let Some(dy) = bp.grads.remove(&n) else {
            continue;
        };
        bp.node(n, dy);
        progress(&bp.pgrads);
    }
    let Backprop {
        mut grads,
        mut pgrads,
        ..
    } = bp;
    for (i, t) in p.trainable.iter().enumerate() {
        if !t {
            pgrads[i] = None;
        }
    }
    let dinput = match grads.remove(&input) {
        Some(d) => d,
        None if input_grad => Array2::zeros(acts.get(input).raw_dim()),
        None => Array2::zeros((0, 0)),
    };
    (pgrads, dinput)
}

/// One backward pass in progress: the gradient reaching each node so far, and the parameter
/// gradients.
struct Backprop<'a, T: Real> {
    net: &'a Network,
    p: &'a Params<T>,
    acts: &'a Activations<T>,
    input: NodeIndex,
    input_grad: bool,
    grads: HashMap<NodeIndex, Array2<T>>,
    pgrads: Vec<Option<Vec<T>>>,
}

impl<'a, T: Real> Backprop<'a, T> {
    /// Adds `g` to the gradient reaching node `n`.
    fn add(&mut self, n: NodeIndex, g: Array2<T>) {
        match self.grads.get_mut(&n) {
            Some(acc) => acc.zip_mut_with(&g, |a, &b| *a = *a + b),
            None => {
                self.grads.insert(n, g);
            }
        }
    }

    /// An input's gradient is only computed when asked for (and only the first input's is
    /// returned).
    fn wanted(&self, i: NodeIndex) -> bool {
        (i != self.input && !self.net.inputs.contains(&i)) || self.input_grad
    }

    /// A weight's gradient is only computed when it trains.
    fn trains(&self, name: &str) -> bool {
        self.p.index(name).is_some_and(|i| self.p.trainable[i])
    }

    /// Propagates `dy`, the gradient at node `n`, to its inputs and its parameters.
    fn node(&mut self, n: NodeIndex, dy: Array2<T>) {
        let (net, acts) = (self.net, self.acts);
        let node = &net.graph[n];
        let ins = net.inputs_of(n);
        let in_shape = |i: usize| &net.graph[ins[i]].shape;
        match &node.op {
            Op::Input { .. } => {}
            Op::Dense { bias, .. } => self.dense(n, ins[0], &dy, *bias),
            Op::Conv { .. } => self.conv(n, ins[0], &dy),
            Op::MaxPool { .. } | Op::AvgPool { .. } => {
                let Ok((c, win)) = pool_ops::geometry(&node.op, in_shape(0)) else {
                    return;
                };
                let max = matches!(node.op, Op::MaxPool { .. });
                let dx = pool::backward(max, c, &win, acts.get(ins[0]), &dy);
                self.add(ins[0], dx);
            }
            Op::Relu => self.add(ins[0], activation::backward(Act::Relu, acts.get(n), dy)),
            Op::LeakyRelu { alpha } => {
                let dx = activation::backward(Act::LeakyRelu(*alpha), acts.get(n), dy);
                self.add(ins[0], dx)
            }
            Op::Sigmoid => self.add(ins[0], activation::backward(Act::Sigmoid, acts.get(n), dy)),
            Op::Tanh => self.add(ins[0], activation::backward(Act::Tanh, acts.get(n), dy)),
            Op::Softmax => self.add(ins[0], softmax::backward(acts.get(n), dy)),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => {
                let s = lrn::Settings {
                    size: *size,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                };
                let dx = lrn::backward(in_shape(0), s, acts.get(ins[0]), &dy);
                self.add(ins[0], dx);
            }
            Op::Add if !super::broadcasts(net, n) => {
                // Each input gets `dy`: copies for all but the last, which takes it.
                if let Some((&last, rest)) = ins.split_last() {
                    for &i in rest {
                        self.add(i, dy.clone());
                    }
                    self.add(last, dy);
                }
            }
            Op::Prim(PrimOp::Param { .. }) => {
                if let Some(i) = self.p.index(&node.name) {
                    self.pgrads[i] = Some(dy.iter().copied().collect());
                }
            }
            // Regions take every other primitive (and a broadcasting `add` or `concat`)
            // before the walk reaches its nodes one by one.
            Op::Add | Op::Prim(_) => {}
            Op::Concat { .. } if super::broadcasts(net, n) => {}
            Op::Concat { axis } => {
                let shapes: Vec<_> = ins.iter().map(|i| net.graph[*i].shape.clone()).collect();
                for (i, dx) in ins.iter().zip(concat::backward(&dy, &shapes, *axis)) {
                    self.add(*i, dx);
                }
            }
            Op::Flatten | Op::Reshape { .. } => self.add(ins[0], dy),
            Op::Dropout { p: prob } => {
                let dx = dropout::apply(&dy, acts.train, *prob, acts.seed, acts.row0);
                self.add(ins[0], dx);
            }
            Op::ConvTranspose { .. } => self.conv_transpose(n, ins[0], &dy),
            Op::BatchNorm { eps, momentum } => {
                let (s, t) = batchnorm_node(self.p, &node.name, in_shape(0), *eps, *momentum);
                let g = batchnorm::backward(&s, &t, acts.get(ins[0]), &dy, acts.train);
                for (suffix, v) in [("weight", g.weight), ("bias", g.bias)] {
                    if let Some(i) = self.p.index(&format!("{}.{suffix}", node.name)) {
                        self.pgrads[i] = Some(v);
                    }
                }
                self.add(ins[0], g.input);
            }
        }
    }

    /// The names of node `n`'s weight and bias.
    fn param_names(&self, n: NodeIndex) -> (String, String) {
        let name = &self.net.graph[n].name;
        (format!("{name}.weight"), format!("{name}.bias"))
    }

    /// A fused region's derived backward: gradients at the inputs that take one, from the
    /// gradients that reached its outputs.
    fn region(&mut self, region: &netc_compiler::region::Region) {
        let dys: Vec<Option<Array2<T>>> = region
            .outputs
            .iter()
            .map(|&(o, _)| self.grads.remove(&o))
            .collect();
        if dys.iter().all(Option::is_none) {
            return;
        }
        let batch = self.acts.get(self.input).nrows();
        // The forward pass ran this region's graph on the same values (ids checked there).
        let kept = region
            .nodes
            .last()
            .and_then(|l| self.acts.region_kept.get(l))
            .map(|k| k.as_slice());
        let grads = super::prim::region::backward(region, &self.acts.values, kept, &dys, batch)
            .expect("the forward pass ran this region");
        for (&(i, _), g) in region.inputs.iter().zip(grads) {
            if let Some(g) = g.filter(|_| self.wanted(i)) {
                self.add(i, g);
            }
        }
    }

    fn dense(&mut self, n: NodeIndex, x: NodeIndex, dy: &Array2<T>, bias: bool) {
        let (p, acts) = (self.p, self.acts);
        let (wname, bname) = self.param_names(n);
        let w = p.matrix(&wname);
        let (xr, dyr) = (
            super::by_rows(acts.get(x), w.ncols()),
            super::by_rows(dy, w.nrows()),
        );
        let g = dense::backward(xr.view(), w, dyr.view(), self.wanted(x));
        let per_example = acts.get(x).ncols();
        let g = dense::Grads {
            input: g.input.map(|d| super::into_rows(d, per_example)),
            ..g
        };
        if let Some(i) = p.index(&wname) {
            self.pgrads[i] = Some(into_vec(g.weight));
        }
        if bias {
            if let Some(i) = p.index(&bname) {
                self.pgrads[i] = Some(g.bias);
            }
        }
        if let Some(dx) = g.input {
            self.add(x, dx);
        }
    }

    fn conv(&mut self, n: NodeIndex, x: NodeIndex, dy: &Array2<T>) {
        let (p, acts) = (self.p, self.acts);
        let Ok(geom) = ConvGeometry::of(&self.net.graph[n].op, &self.net.graph[x].shape) else {
            return; // the forward pass reported it
        };
        let (wname, bname) = self.param_names(n);
        let g = conv::backward(
            &geom,
            acts.get(x),
            p.vector(&wname),
            dy,
            conv::Wanted {
                weight: self.trains(&wname),
                bias: self.trains(&bname),
                input: self.wanted(x),
            },
            acts.kept_cols.get(&n),
        );
        let bias = geom.bias.then_some(g.bias);
        store_weighted(p, &mut self.pgrads, (&wname, &bname), (g.weight, bias));
        if let Some(dx) = g.input {
            self.add(x, dx);
        }
    }

    fn conv_transpose(&mut self, n: NodeIndex, x: NodeIndex, dy: &Array2<T>) {
        let (p, acts) = (self.p, self.acts);
        let Ok(geom) = TransposeGeometry::of(&self.net.graph[n].op, &self.net.graph[x].shape)
        else {
            return; // the forward pass reported it
        };
        let (wname, bname) = self.param_names(n);
        let g = conv_transpose::backward(
            &geom,
            acts.get(x),
            p.vector(&wname),
            dy,
            conv::Wanted {
                weight: self.trains(&wname),
                bias: self.trains(&bname),
                input: self.wanted(x),
            },
        );
        let bias = geom.bias.then_some(g.bias);
        store_weighted(p, &mut self.pgrads, (&wname, &bname), (g.weight, bias));
        if let Some(dx) = g.input {
            self.add(x, dx);
        }
    }
}
