//! The declared-loss session: a network whose loss is a node of its own graph (one value per
//! example), fed by several inputs; a step minimises the batch mean of that node. It runs on
//! the CPU executor (the GPU path has no kernels for the primitives a loss is built from yet).

use super::{step_seed, Executor, RunError};
use crate::cpu::{self, OptState, Params};
use crate::dist::Shard;
use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
use netc_compiler::schedule::UpdateRule;
use petgraph::graph::NodeIndex;

/// Sums of a node over examples: its values and how many examples gave them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub sum: f64,
    pub rows: f64,
}

impl Sums {
    pub fn mean(&self) -> f64 {
        self.sum / self.rows.max(1.0)
    }
    fn add(&mut self, values: &Array2<f32>) {
        self.sum += values.iter().map(|&v| v as f64).sum::<f64>();
        self.rows += values.nrows() as f64;
    }
}

/// A network minimising its declared loss node.
pub struct Minimiser {
    pub net: Network,
    pub batch: usize,
    pub rule: UpdateRule,
    pub seed: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// The first step whose loss was not finite.
    pub nonfinite_at: Option<u64>,
    loss: NodeIndex,
    /// Values per example of each input, in `net.inputs` order.
    widths: Vec<usize>,
    params: Params<f32>,
    state: OptState<f32>,
    stats: Sums,
    /// The step whose update first left a non-finite parameter.
    bad_at: Option<u64>,
    last_grads: Vec<Option<Vec<f32>>>,
    shard: Shard,
    /// The decay and the exponential moving average of the weights (`ema = 0.999`).
    ema: Option<(f64, Params<f32>)>,
}

/// The node named `name` (a layer of `net`).
pub fn node_named(net: &Network, name: &str) -> Result<NodeIndex, RunError> {
    net.resolve(name)
        .ok_or_else(|| RunError::Config(format!("network `{}` has no layer `{name}`", net.name)))
}

impl Minimiser {
    /// A session minimising node `loss` of `net`; only the CPU executor runs it.
    pub fn new(
        net: &Network,
        params: Params<f32>,
        rule: UpdateRule,
        (batch, seed): (usize, u64),
        loss: &str,
        exec: Executor,
    ) -> Result<Minimiser, RunError> {
        if let Executor::Gpu(_) = exec {
            return Err(RunError::CpuOnly(format!(
                "network `{}` declares its loss (task = minimise)",
                net.name
            )));
        }
        let loss = node_named(net, loss)?;
        let widths = net
            .inputs
            .iter()
            .map(|&i| net.graph[i].shape.iter().product::<u64>() as usize)
            .collect();
        let state = OptState::new(&params, &rule.opt);
        Ok(Minimiser {
            net: net.clone(),
            batch,
            rule,
            seed,
            step: 0,
            nonfinite_at: None,
            loss,
            widths,
            params,
            state,
            stats: Sums::default(),
            bad_at: None,
            last_grads: vec![],
            shard: Shard::whole(batch),
            ema: None,
        })
    }

    /// Computes only `shard`'s rows of each batch (a data-parallel run): `train_step` then
    /// takes those rows. Batchnorm and micro-batches are refused.
    pub fn set_shard(&mut self, shard: Shard) -> Result<(), RunError> {
        if shard.parts > 1 {
            return Err(RunError::Config(
                "--micro-batches takes classifiers only for now".into(),
            ));
        }
        if !shard.is_whole() {
            super::split_allowed(&self.net, false)?;
        }
        self.shard = shard;
        Ok(())
    }

    /// Views of `inputs` (one flat buffer per network input) as `rows` rows each.
    fn views<'a>(
        &self,
        inputs: &'a [Vec<f32>],
        rows: usize,
    ) -> Result<Vec<ArrayView2<'a, f32>>, RunError> {
        if inputs.len() != self.widths.len() {
            return Err(RunError::Config(format!(
                "network `{}` takes {} inputs, given {}",
                self.net.name,
                self.widths.len(),
                inputs.len()
            )));
        }
        inputs
            .iter()
            .zip(&self.widths)
            .map(|(x, &w)| {
                ArrayView2::from_shape((rows, w), x).map_err(|e| RunError::Config(e.to_string()))
            })
            .collect()
    }

    /// One optimizer step on a full batch: `inputs[i]` holds the batch of `net.inputs[i]`
    /// (with a shard, its rows only).
    pub fn train_step(&mut self, inputs: &[Vec<f32>], lr: f64) -> Result<(), RunError> {
        self.step += 1;
        let seed = step_seed(self.seed, self.step);
        // This process's rows (all of them but in a data-parallel run).
        let (row0, rows) = (self.shard.row0, self.shard.rows);
        let xs = self.views(inputs, rows)?;
        let acts = cpu::forward_inputs(&self.net, &self.params, &xs, true, seed, row0)?;
        let mut mine = Sums::default();
        mine.add(acts.get(self.loss));
        let mut both = [mine.sum, mine.rows];
        self.shard.dist.sum_f64(&mut both);
        [mine.sum, mine.rows] = both;
        self.stats.sum += mine.sum;
        self.stats.rows += mine.rows;
        if !mine.sum.is_finite() && self.nonfinite_at.is_none() {
            self.nonfinite_at = Some(self.step);
        }
        // d(mean over the batch)/d(each example's loss).
        let dy = Array2::from_elem((rows, 1), 1.0 / self.batch as f32);
        let (mut grads, _) =
            cpu::backward_opt(&self.net, &self.params, &acts, self.loss, dy, false);
        self.shard.dist.sum_grads(&mut grads);
        cpu::apply_rule(&mut self.params, &grads, &mut self.state, &self.rule, lr);
        self.params.apply_state(&acts);
        if let Some((decay, ema)) = &mut self.ema {
            ema_update(ema, &self.params, *decay);
        }
        if self.bad_at.is_none()
            && self
                .params
                .values
                .iter()
                .any(|v| v.iter().any(|x| !x.is_finite()))
        {
            self.bad_at = Some(self.step);
        }
        self.last_grads = grads;
        Ok(())
    }

    /// The values per example of `nodes` for `rows` examples in inference mode (dropout off).
    pub fn values(
        &self,
        inputs: &[Vec<f32>],
        rows: usize,
        nodes: &[NodeIndex],
    ) -> Result<Vec<Sums>, RunError> {
        let xs = self.views(inputs, rows)?;
        let acts = cpu::forward_inputs(&self.net, &self.params, &xs, false, 0, 0)?;
        Ok(nodes
            .iter()
            .map(|&n| {
                let mut s = Sums::default();
                s.add(acts.get(n));
                s
            })
            .collect())
    }

    pub fn loss_node(&self) -> NodeIndex {
        self.loss
    }

    /// Loss sums since the last call, then resets them.
    pub fn take_stats(&mut self) -> Sums {
        std::mem::take(&mut self.stats)
    }

    /// The step whose update first left a NaN or infinite parameter, and the tensor.
    pub fn nonfinite_params(&self) -> Option<(u64, String)> {
        self.bad_at
            .map(|s| (s, super::first_nonfinite(&[&self.params])))
    }

    pub fn params(&self) -> &Params<f32> {
        &self.params
    }

    /// Gradients of the last step.
    pub fn grads(&self) -> &[Option<Vec<f32>>] {
        &self.last_grads
    }

    pub fn opt_state(&self) -> OptState<f32> {
        self.state.clone()
    }

    /// Keeps an exponential moving average of the weights with `decay`, from the weights now.
    pub fn keep_ema(&mut self, decay: f64) {
        self.ema = Some((decay, self.params.clone()));
    }

    /// The averaged weights, when they are kept.
    pub fn ema(&self) -> Option<&Params<f32>> {
        self.ema.as_ref().map(|e| &e.1)
    }

    /// Restores the averaged weights (for --resume).
    pub fn restore_ema(&mut self, ema: Params<f32>) {
        if let Some(e) = &mut self.ema {
            e.1 = ema;
        }
    }

    /// Restores weights, optimizer state and step (for --resume).
    pub fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        self.step = state.step;
        self.params = params.clone();
        self.state = state.clone();
    }
}

/// One EMA update, as torch's `ema = decay * ema + (1 - decay) * w` (in f64, rounded once):
/// trained tensors are averaged, state (running statistics) is copied.
pub fn ema_update(ema: &mut Params<f32>, p: &Params<f32>, decay: f64) {
    for ((e, w), &trained) in ema.values.iter_mut().zip(&p.values).zip(&p.trainable) {
        if !trained {
            e.copy_from_slice(w);
            continue;
        }
        for (a, &b) in e.iter_mut().zip(w) {
            *a = (decay * *a as f64 + (1.0 - decay) * b as f64) as f32;
        }
    }
}
