//! The classifier session: softmax cross-entropy on a network's logits, on either executor.

use super::backend::{ClassifierBackend, ClassifierSpec, Step};
use super::cpu_backend::ClassifierCpu;
use super::gpu_backend::ClassifierGpu;
use super::{features, logit_node, split_allowed, step_seed, Executor, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::dist::Shard;
use crate::gpu::GpuProgram;
use netc_compiler::ir::Network;
use netc_compiler::schedule::{Optimizer, UpdateRule};
use petgraph::graph::NodeIndex;

/// A classifier trained with softmax cross-entropy on its logits.
pub struct Classifier {
    pub net: Network,
    pub batch: usize,
    pub classes: usize,
    pub features: usize,
    /// Positions per example with a softmax each (a language model's tokens); 1 otherwise.
    pub positions: usize,
    pub opt: Optimizer,
    /// `opt` with its decay rule and gradient clipping.
    pub rule: UpdateRule,
    pub seed: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// The first step whose loss was not finite, where the executor can tell (the CPU checks
    /// every step; the GPU sums its losses on the device between reads).
    pub nonfinite_at: Option<u64>,
    logit: NodeIndex,
    exec: Box<dyn ClassifierBackend>,
    shard: Shard,
}

impl Classifier {
    pub fn new(
        net: &Network,
        params: Params<f32>,
        opt: impl Into<UpdateRule>,
        batch: usize,
        seed: u64,
        exec: Executor,
    ) -> Result<Classifier, RunError> {
        Classifier::build(net, params, opt.into(), (batch, seed), exec, 1)
    }

    /// A language model: logits `positions x vocab` per example, a softmax cross-entropy at
    /// every position, the loss the mean over all positions of the batch.
    pub fn per_position(
        net: &Network,
        params: Params<f32>,
        rule: UpdateRule,
        (batch, seed): (usize, u64),
        exec: Executor,
    ) -> Result<Classifier, RunError> {
        let logit = logit_node(net)?;
        let shape = &net.graph[logit].shape;
        let positions = shape[..shape.len().saturating_sub(1)]
            .iter()
            .product::<u64>();
        Classifier::build(net, params, rule, (batch, seed), exec, positions as usize)
    }

    fn build(
        net: &Network,
        params: Params<f32>,
        rule: UpdateRule,
        (batch, seed): (usize, u64),
        exec: Executor,
        positions: usize,
    ) -> Result<Classifier, RunError> {
        let logit = logit_node(net)?;
        let classes = features(net, logit);
        let input = *net
            .inputs
            .first()
            .ok_or_else(|| RunError::Config("network has no input".into()))?;
        let feats = features(net, input);
        let exec: Box<dyn ClassifierBackend> = match exec {
            Executor::Cpu => Box::new(ClassifierCpu::new(net, params, &rule.opt, feats)?),
            Executor::Gpu(gpu) => Box::new(ClassifierGpu::new(
                *gpu,
                net,
                params,
                &rule,
                (batch, positions),
                None,
            )?),
        };
        Ok(Classifier {
            net: net.clone(),
            batch,
            classes,
            features: feats,
            positions,
            opt: rule.opt,
            rule,
            seed,
            step: 0,
            nonfinite_at: None,
            logit,
            exec,
            shard: Shard::whole(batch),
        })
    }

    /// Computes only `shard`'s rows of each batch (a data-parallel run, micro-batches):
    /// `train_step` then takes those rows. Batchnorm (whose statistics are the whole
    /// batch's), and micro-batches on the GPU, are refused.
    pub fn set_shard(&mut self, shard: Shard) -> Result<(), RunError> {
        if !shard.is_whole() {
            // The GPU program takes a rank's rows, not micro-batches of them.
            split_allowed(&self.net, self.is_gpu() && shard.parts > 1)?;
        }
        self.shard = shard;
        if self.is_gpu() && self.shard.dist.is_split() {
            let (spec, exec) = self.split();
            exec.reshard(&spec)?;
        }
        Ok(())
    }

    /// The backend with what it reads of the session.
    fn split(&mut self) -> (ClassifierSpec<'_>, &mut dyn ClassifierBackend) {
        let spec = ClassifierSpec {
            net: &self.net,
            logit: self.logit,
            batch: self.batch,
            features: self.features,
            classes: self.classes,
            positions: self.positions,
            rule: &self.rule,
            shard: &self.shard,
        };
        (spec, self.exec.as_mut())
    }

    pub fn is_gpu(&self) -> bool {
        self.exec.is_gpu()
    }

    /// The processes the session's batches are split over (one but in a data-parallel run).
    pub fn dist(&self) -> &crate::dist::Dist {
        &self.shard.dist
    }

    /// One optimizer step on a full batch (`x`: batch x features, `onehot`: batch x classes;
    /// with a shard, its rows only).
    pub fn train_step(&mut self, x: &[f32], onehot: &[f32], lr: f64) -> Result<(), RunError> {
        self.step += 1;
        let seed = step_seed(self.seed, self.step);
        let t = self.step;
        let mut nonfinite_at = self.nonfinite_at;
        let (spec, exec) = self.split();
        let step = Step {
            lr,
            t,
            seed,
            nonfinite_at: &mut nonfinite_at,
            mark: t,
        };
        let r = exec.train_step(&spec, x, onehot, step);
        self.nonfinite_at = nonfinite_at;
        r
    }

    /// Loss and accuracy sums since the last call (one read-back on the GPU), then resets them.
    pub fn take_stats(&mut self) -> Result<LossStats, RunError> {
        let mut st = self.exec.take_stats()?;
        if self.is_gpu() {
            // The GPU sums its rows' losses on the device; the ranks' sums are the batch's
            // (the CPU executor sums them every step).
            self.shard.dist.sum_stats(&mut st);
        }
        Ok(st)
    }

    /// Evaluates a batch in inference mode (dropout off) and adds its loss and accuracy to the
    /// evaluation sums, without a read-back on the GPU. `x` and `onehot` may hold fewer rows
    /// than the batch (any number on the CPU, whose products are not planned for a batch).
    pub fn eval_batch(&mut self, x: &[f32], onehot: &[f32]) -> Result<(), RunError> {
        let rows = x.len() / self.features;
        let too_many = rows > self.batch && self.is_gpu();
        if onehot.len() != rows * self.classes || too_many {
            return Err(RunError::Config(format!(
                "evaluation batch of {rows} rows with {} target values (batch {}, {} classes)",
                onehot.len(),
                self.batch,
                self.classes
            )));
        }
        let (spec, exec) = self.split();
        exec.eval_batch(&spec, x, onehot, rows)
    }

    /// Evaluation sums since the last call (one read-back on the GPU), then resets them.
    pub fn take_eval_stats(&mut self) -> Result<LossStats, RunError> {
        self.exec.take_eval_stats()
    }

    /// Logits of a batch in inference mode (dropout off). `x` may hold fewer rows than the batch.
    pub fn logits(&mut self, x: &[f32]) -> Result<Vec<f32>, RunError> {
        let rows = x.len() / self.features;
        let (spec, exec) = self.split();
        exec.logits(&spec, x, rows)
    }

    pub fn params(&self) -> Result<Params<f32>, RunError> {
        self.exec.params()
    }

    /// The step whose update first left a NaN or infinite parameter, and the first such
    /// tensor, if one did (see `ClassifierBackend::nonfinite_params_at`; the GPU's mark is
    /// read back only with `read_device`).
    pub fn nonfinite_params(
        &mut self,
        read_device: bool,
    ) -> Result<Option<(u64, String)>, RunError> {
        let Some(step) = self.exec.nonfinite_params_at(read_device)? else {
            return Ok(None);
        };
        let p = self.exec.params()?;
        Ok(Some((step, super::first_nonfinite(&[&p]))))
    }

    /// Gradients of the last step (the GPU keeps them in their buffers).
    pub fn grads(&self) -> Result<Vec<Option<Vec<f32>>>, RunError> {
        self.exec.grads()
    }

    pub fn opt_state(&self) -> Result<OptState<f32>, RunError> {
        self.exec.opt_state(self.step)
    }

    /// Restores weights, optimizer state and step (for --resume).
    pub fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        self.step = state.step;
        self.exec.restore(params, state);
    }

    /// The GPU program, for profiling and replay counters.
    pub fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)> {
        self.exec.gpu_program()
    }
}
