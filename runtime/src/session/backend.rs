//! The executor interface the sessions are written against: the operations a classifier or a
//! GAN session needs (a training step, evaluation, statistics, logits or samples, and reading
//! and restoring parameters, gradients and optimizer state), implemented once by the CPU
//! reference and once by the GPU program.

use super::{GanStats, Grads, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::gpu::GpuProgram;
use netc_compiler::ir::Network;
use netc_compiler::schedule::UpdateRule;
use petgraph::graph::NodeIndex;

/// What a classifier backend reads of its session on each call.
pub(super) struct ClassifierSpec<'a> {
    pub net: &'a Network,
    pub logit: NodeIndex,
    pub batch: usize,
    pub features: usize,
    /// Logit values per example: `positions` rows of `classes / positions` classes.
    pub classes: usize,
    /// Positions per example, each with its own softmax over the last axis of the logits (a
    /// language model's tokens); 1 for a classifier.
    pub positions: usize,
    /// The optimizer with its decay rule and clipping.
    pub rule: &'a UpdateRule,
    /// The rows of the batch this process computes (all of them, but in a data-parallel run
    /// or with micro-batches; the CPU executor only).
    pub shard: &'a crate::dist::Shard,
}

/// What a GAN backend reads of its session on each call.
pub(super) struct GanSpec<'a> {
    pub g_net: &'a Network,
    pub d_net: &'a Network,
    pub batch: usize,
    pub noise: usize,
    pub data: usize,
    pub rule_g: &'a UpdateRule,
    pub rule_d: &'a UpdateRule,
    pub loss: super::GeneratorLoss,
    pub d_logit: NodeIndex,
    pub g_out: NodeIndex,
    /// The rows of the batch this process computes (all of them but in a data-parallel run;
    /// the CPU executor only).
    pub shard: &'a crate::dist::Shard,
}

/// One optimizer step as a backend takes it.
pub(super) struct Step<'a> {
    pub lr: f64,
    /// The optimizer's step count after this step (Adam's bias corrections).
    pub t: u64,
    /// The dropout seed.
    pub seed: u32,
    /// The session's first non-finite step, set to `mark` by the first non-finite loss seen.
    pub nonfinite_at: &'a mut Option<u64>,
    pub mark: u64,
}

impl Step<'_> {
    /// Records `loss` as the first non-finite one, unless one was already seen.
    pub fn watch(&mut self, loss: f64) {
        if !loss.is_finite() && self.nonfinite_at.is_none() {
            *self.nonfinite_at = Some(self.mark);
        }
    }
}

/// A classifier's executor.
pub(super) trait ClassifierBackend {
    /// One optimizer step on a full batch.
    fn train_step(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        step: Step,
    ) -> Result<(), RunError>;
    /// Training sums since the last call, then resets them.
    fn take_stats(&mut self) -> Result<LossStats, RunError>;
    /// The step whose update first left a NaN or infinite parameter, if one did: known at
    /// once on the CPU; on the GPU the update kernels mark it on the device, read back only
    /// with `read_device` (at a log interval or a checkpoint, no read per step).
    fn nonfinite_params_at(&mut self, read_device: bool) -> Result<Option<u64>, RunError>;

    /// Adds a batch of `rows` (at most the batch) to the evaluation sums.
    fn eval_batch(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        rows: usize,
    ) -> Result<(), RunError>;
    /// Evaluation sums since the last call, then resets them.
    fn take_eval_stats(&mut self) -> Result<LossStats, RunError>;
    /// Logits of `rows` inputs in inference mode.
    fn logits(&mut self, s: &ClassifierSpec, x: &[f32], rows: usize) -> Result<Vec<f32>, RunError>;
    fn params(&self) -> Result<Params<f32>, RunError>;
    fn grads(&self) -> Result<Grads, RunError>;
    /// The optimizer state, taken at optimizer step `step`.
    fn opt_state(&self, step: u64) -> Result<OptState<f32>, RunError>;
    fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>);
    fn is_gpu(&self) -> bool;
    /// The GPU program and its training pass, where there is one.
    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)>;
    /// Takes `s.shard` from now on: the CPU reads it each step; the GPU program is rebuilt
    /// for this rank's rows (a gradient pass, the host's all-reduce, an update pass).
    fn reshard(&mut self, _s: &ClassifierSpec) -> Result<(), RunError> {
        Ok(())
    }
}

/// A GAN's executor.
pub(super) trait GanBackend {
    /// One discriminator step on `real` and fakes G(`z`).
    fn d_step(&mut self, s: &GanSpec, real: &[f32], z: &[f32], step: Step) -> Result<(), RunError>;
    /// One generator step on noise `z` through the frozen discriminator.
    fn g_step(&mut self, s: &GanSpec, z: &[f32], step: Step) -> Result<(), RunError>;
    /// Sums since the last call, then resets them.
    fn take_stats(&mut self) -> Result<GanStats, RunError>;
    /// The step whose update first left a NaN or infinite parameter, if one did: known at
    /// once on the CPU; on the GPU the update kernels mark it on the device, read back only
    /// with `read_device` (at a log interval or a checkpoint, no read per step).
    fn nonfinite_params_at(&mut self, read_device: bool) -> Result<Option<u64>, RunError>;

    /// D's logits of the last D step: the reals' rows, then the fakes'.
    fn d_logits(&self) -> Result<Vec<f32>, RunError>;
    /// G(z) in inference mode for `rows` noise rows.
    fn sample(&mut self, s: &GanSpec, z: &[f32], rows: usize) -> Result<Vec<f32>, RunError>;
    fn params(&self) -> Result<(Params<f32>, Params<f32>), RunError>;
    /// G's and D's optimizer states, taken at their step counts.
    fn opt_states(
        &self,
        step_g: u64,
        step_d: u64,
    ) -> Result<(OptState<f32>, OptState<f32>), RunError>;
    fn restore(&mut self, g: &Params<f32>, d: &Params<f32>, gs: &OptState<f32>, ds: &OptState<f32>);
    fn grads(&self) -> Result<(Grads, Grads), RunError>;
    fn is_gpu(&self) -> bool;
    /// The GPU program with its D and G passes, where there is one.
    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize, usize)>;
    /// Takes `s.shard` from now on (see `ClassifierBackend::reshard`).
    fn reshard(&mut self, _s: &GanSpec) -> Result<(), RunError> {
        Ok(())
    }
}
