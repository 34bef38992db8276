//! The declared-loss session: a network whose loss is a node of its own graph (one value per
//! example), fed by several inputs; a step minimises the batch mean of that node. On the CPU
//! executor, or on the GPU program ([`super::gpu_minimise`]), built when the session first
//! steps or evaluates, so the moving average, the nodes evaluated and a resumed run's state
//! set before then are in it; the host's copies of the weights are the device's until then.

use super::gpu_minimise::{MinimiseGpu, Start};
use super::{hyper, step_seed, Executor, Grads, RunError};
use crate::cpu::{self, OptState, Params};
use crate::dist::Shard;
use crate::gpu::{Gpu, GpuProgram};
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
    device: Device,
    /// The nodes `eval_batch` sums (the GPU program's evaluation pass computes them).
    eval_nodes: Vec<NodeIndex>,
    /// Their sums on the CPU executor since `take_eval`.
    eval_sums: Vec<Sums>,
}

/// Where the session's steps run.
enum Device {
    Cpu,
    /// The GPU, its program not built yet.
    Pending(Box<Gpu>),
    Gpu(Box<MinimiseGpu>),
}

/// The node named `name` (a layer of `net`).
pub fn node_named(net: &Network, name: &str) -> Result<NodeIndex, RunError> {
    net.resolve(name)
        .ok_or_else(|| RunError::Config(format!("network `{}` has no layer `{name}`", net.name)))
}

impl Minimiser {
    /// A session minimising node `loss` of `net` on `exec`.
    pub fn new(
        net: &Network,
        params: Params<f32>,
        rule: UpdateRule,
        (batch, seed): (usize, u64),
        loss: &str,
        exec: Executor,
    ) -> Result<Minimiser, RunError> {
        let loss = node_named(net, loss)?;
        let device = match exec {
            Executor::Cpu => Device::Cpu,
            Executor::Gpu(g) => Device::Pending(g),
        };
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
            device,
            eval_nodes: vec![loss],
            eval_sums: vec![],
        })
    }

    /// The nodes `values` will be asked for (the GPU program's evaluation pass computes
    /// them); call before the first step.
    pub fn evaluates(&mut self, nodes: &[NodeIndex]) {
        self.eval_nodes = nodes.to_vec();
    }

    /// Builds the GPU program when it is not built yet, from the host's weights, moments
    /// and average (pipelines are built once, here).
    pub fn prepare(&mut self) -> Result<(), RunError> {
        if !matches!(self.device, Device::Pending(_)) {
            return Ok(());
        }
        let Device::Pending(gpu) = std::mem::replace(&mut self.device, Device::Cpu) else {
            return Ok(());
        };
        let start = Start {
            params: &self.params,
            state: &self.state,
            ema: self.ema.as_ref().map(|(d, e)| (*d, e)),
        };
        let g = MinimiseGpu::new(
            *gpu,
            &self.net,
            &self.rule,
            (self.batch, self.loss, &self.shard),
            &self.eval_nodes,
            start,
        )?;
        self.device = Device::Gpu(Box::new(g));
        Ok(())
    }

    pub fn is_gpu(&self) -> bool {
        !matches!(self.device, Device::Cpu)
    }

    /// The GPU program and its training pass, once built.
    pub fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)> {
        match &mut self.device {
            Device::Gpu(g) => Some(g.gpu_program()),
            Device::Cpu | Device::Pending(_) => None,
        }
    }

    /// Computes only `shard`'s rows of each batch (a data-parallel run): `train_step` then
    /// takes those rows, in `shard.parts` micro-batches (on the CPU executor). Batchnorm is
    /// refused. Call before the first step: the GPU program is built for the shard's rows.
    pub fn set_shard(&mut self, shard: Shard) -> Result<(), RunError> {
        if !shard.is_whole() {
            super::split_allowed(&self.net, self.is_gpu() && shard.parts > 1)?;
            if let Device::Gpu(_) = self.device {
                return Err(RunError::Config(
                    "the GPU program is built already: split the batch before the first step"
                        .into(),
                ));
            }
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
        self.prepare()?;
        if let Device::Gpu(_) = self.device {
            self.views(inputs, self.shard.rows)?;
            self.step += 1;
            let h = hyper(&self.rule.opt, lr, self.step, self.step);
            let seed = step_seed(self.seed, self.step);
            if let Device::Gpu(g) = &mut self.device {
                g.train_step(inputs, h, seed)?;
            }
            return Ok(());
        }
        self.step += 1;
        let seed = step_seed(self.seed, self.step);
        // This process's rows (all of them but in a data-parallel run), in micro-batches:
        // each part's loss scaled by 1/batch, so the gradients summed over the parts, then
        // over the processes, are the batch's (K parts sum as K processes do).
        let sh = &self.shard;
        let per = sh.part_rows();
        self.views(inputs, sh.rows)?;
        let (mut mine, mut grads, mut state) = (Sums::default(), vec![], None);
        for k in 0..sh.parts {
            let part: Vec<Vec<f32>> = (inputs.iter().zip(&self.widths))
                .map(|(x, &w)| x[k * per * w..(k + 1) * per * w].to_vec())
                .collect();
            let xs = self.views(&part, per)?;
            let row0 = sh.row0 + k * per;
            let acts = cpu::forward_inputs(&self.net, &self.params, &xs, true, seed, row0)?;
            let mut got = Sums::default();
            got.add(acts.get(self.loss));
            // Part by part, as the ranks' sums are added.
            mine.sum += got.sum;
            mine.rows += got.rows;
            // d(mean over the batch)/d(each example's loss).
            let dy = Array2::from_elem((per, 1), 1.0 / self.batch as f32);
            let (g, _) = cpu::backward_opt(&self.net, &self.params, &acts, self.loss, dy, false);
            super::cpu_backend::add_grads(&mut grads, g);
            state = Some(acts);
        }
        let mut both = [mine.sum, mine.rows];
        self.shard.dist.sum_f64(&mut both);
        [mine.sum, mine.rows] = both;
        self.stats.sum += mine.sum;
        self.stats.rows += mine.rows;
        if !mine.sum.is_finite() && self.nonfinite_at.is_none() {
            self.nonfinite_at = Some(self.step);
        }
        self.shard.dist.sum_grads(&mut grads);
        cpu::apply_rule(&mut self.params, &grads, &mut self.state, &self.rule, lr);
        if let Some(acts) = &state {
            // Batchnorm's running statistics (a split batch has none: see `split_allowed`).
            self.params.apply_state(acts);
        }
        // Once a step, after the update (not once a micro-batch).
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
        &mut self,
        inputs: &[Vec<f32>],
        rows: usize,
        nodes: &[NodeIndex],
    ) -> Result<Vec<Sums>, RunError> {
        let xs = self.views(inputs, rows)?;
        if rows > self.batch {
            return Err(RunError::Config(format!(
                "{rows} examples at once is more than the batch ({})",
                self.batch
            )));
        }
        self.prepare()?;
        if let Device::Gpu(g) = &mut self.device {
            // One evaluation of its own: the device's sums, taken, then picked by node.
            g.take_eval()?;
            g.eval_batch(inputs, rows);
            let all = g.take_eval()?;
            return (nodes.iter())
                .map(|n| {
                    let k = g.eval_nodes().iter().position(|e| e == n);
                    k.map(|k| all[k]).ok_or_else(|| {
                        RunError::Config(format!(
                            "node `{}` is not among those the GPU program evaluates",
                            self.net.graph[*n].name
                        ))
                    })
                })
                .collect();
        }
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

    /// Adds the first `rows` examples of a batch to the sums of the nodes given to
    /// `evaluates` (inference mode): on the device, read once by `take_eval`.
    pub fn eval_batch(&mut self, inputs: &[Vec<f32>], rows: usize) -> Result<(), RunError> {
        self.prepare()?;
        self.views(inputs, rows)?;
        if let Device::Gpu(g) = &mut self.device {
            g.eval_batch(inputs, rows);
            return Ok(());
        }
        let nodes = self.eval_nodes.clone();
        let got = self.values(inputs, rows, &nodes)?;
        self.eval_sums.resize(nodes.len(), Sums::default());
        for (acc, g) in self.eval_sums.iter_mut().zip(got) {
            acc.sum += g.sum;
            acc.rows += g.rows;
        }
        Ok(())
    }

    /// The evaluated nodes' sums since the last call, in `evaluates` order, then resets them.
    pub fn take_eval(&mut self) -> Result<Vec<Sums>, RunError> {
        if let Device::Gpu(g) = &mut self.device {
            return g.take_eval();
        }
        let mut sums = std::mem::take(&mut self.eval_sums);
        sums.resize(self.eval_nodes.len(), Sums::default());
        Ok(sums)
    }

    /// The processes a data-parallel run spans (one process alone otherwise).
    pub fn dist(&self) -> &crate::dist::Dist {
        &self.shard.dist
    }

    pub fn loss_node(&self) -> NodeIndex {
        self.loss
    }

    /// Loss sums since the last call, then resets them. On the GPU this is the one read
    /// of an interval, and a non-finite sum names the interval's last step.
    pub fn take_stats(&mut self) -> Result<Sums, RunError> {
        let Device::Gpu(g) = &mut self.device else {
            return Ok(std::mem::take(&mut self.stats));
        };
        let mut st = g.take_stats()?;
        // The device sums its rows' losses; the ranks' sums are the batch's (the CPU
        // executor sums them every step).
        let mut both = [st.sum, st.rows];
        self.shard.dist.sum_f64(&mut both);
        [st.sum, st.rows] = both;
        if !st.sum.is_finite() && self.nonfinite_at.is_none() {
            self.nonfinite_at = Some(self.step);
        }
        Ok(st)
    }

    /// The step whose update first left a NaN or infinite parameter, and the tensor; on the
    /// GPU read from the device only with `read_device` (at a log interval or a checkpoint).
    pub fn nonfinite_params(&self, read_device: bool) -> Result<Option<(u64, String)>, RunError> {
        let bad_at = match &self.device {
            Device::Gpu(g) => g.nonfinite_params_at(read_device)?,
            Device::Cpu | Device::Pending(_) => self.bad_at,
        };
        let Some(s) = bad_at else { return Ok(None) };
        Ok(Some((s, super::first_nonfinite(&[&self.params()?]))))
    }

    /// The weights (read from the device on the GPU).
    pub fn params(&self) -> Result<Params<f32>, RunError> {
        match &self.device {
            Device::Gpu(g) => g.params(),
            Device::Cpu | Device::Pending(_) => Ok(self.params.clone()),
        }
    }

    /// Gradients of the last step.
    pub fn grads(&self) -> Result<Grads, RunError> {
        match &self.device {
            Device::Gpu(g) => g.grads(),
            Device::Cpu | Device::Pending(_) => Ok(self.last_grads.clone()),
        }
    }

    pub fn opt_state(&self) -> Result<OptState<f32>, RunError> {
        match &self.device {
            Device::Gpu(g) => g.opt_state(self.step),
            Device::Cpu | Device::Pending(_) => Ok(self.state.clone()),
        }
    }

    /// Keeps an exponential moving average of the weights with `decay`, from the weights
    /// now; call before the first step (the GPU program holds the average from its start).
    pub fn keep_ema(&mut self, decay: f64) {
        self.ema = Some((decay, self.params.clone()));
    }

    /// The averaged weights, when they are kept (read from the device on the GPU).
    pub fn ema(&self) -> Result<Option<Params<f32>>, RunError> {
        match &self.device {
            Device::Gpu(g) => g.ema(),
            Device::Cpu | Device::Pending(_) => Ok(self.ema.as_ref().map(|e| e.1.clone())),
        }
    }

    /// Restores the averaged weights (for --resume).
    pub fn restore_ema(&mut self, ema: Params<f32>) {
        if let Device::Gpu(g) = &mut self.device {
            g.restore_ema(&ema);
        }
        if let Some(e) = &mut self.ema {
            e.1 = ema;
        }
    }

    /// Restores weights, optimizer state and step (for --resume).
    pub fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        self.step = state.step;
        if let Device::Gpu(g) = &mut self.device {
            g.restore(params, state);
        }
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
