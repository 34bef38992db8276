//! The GAN session: D trained on real and fake batches, G through a frozen D, on either
//! executor.

use super::backend::{GanBackend, GanSpec, Step};
use super::cpu_backend::GanCpu;
use super::gpu_gan::GanGpu;
use super::{features, logit_node, split_allowed, step_seed, Executor, Grads, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::dist::Shard;
use crate::gpu::GpuProgram;
use netc_compiler::ir::Network;
use netc_compiler::schedule::{Optimizer, UpdateRule};
use petgraph::graph::NodeIndex;

/// The generator's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorLoss {
    /// -log D(G(z)) (Goodfellow et al.'s practical choice).
    NonSaturating,
    /// log(1 - D(G(z))), the original minimax objective.
    Minimax,
}

/// A GAN: D is trained on a real batch and a fake batch (labels 1 and 0, mean BCE of each,
/// summed); G through a frozen D with the chosen generator loss.
pub struct Gan {
    pub g_net: Network,
    pub d_net: Network,
    pub batch: usize,
    pub noise: usize,
    pub data: usize,
    pub opt_g: Optimizer,
    pub opt_d: Optimizer,
    /// The optimizers with their decay rule and gradient clipping.
    pub rule_g: UpdateRule,
    pub rule_d: UpdateRule,
    pub loss: GeneratorLoss,
    pub seed: u64,
    pub step_g: u64,
    pub step_d: u64,
    /// The first generator step (counting a D step as part of the G step it precedes) whose
    /// D or G loss was not finite, where the executor can tell (the CPU; see `Classifier`).
    pub nonfinite_at: Option<u64>,
    d_logit: NodeIndex,
    g_out: NodeIndex,
    exec: Box<dyn GanBackend>,
    shard: Shard,
}

/// Per-phase sums: D's loss (real + fake means) and G's loss, plus mean D(x) and D(G(z)).
#[derive(Debug, Clone, Copy, Default)]
pub struct GanStats {
    pub d: LossStats,
    pub g: LossStats,
}

#[allow(clippy::too_many_arguments)]
impl Gan {
    pub fn new(
        g_net: &Network,
        d_net: &Network,
        g: Params<f32>,
        d: Params<f32>,
        opt_g: impl Into<UpdateRule>,
        opt_d: impl Into<UpdateRule>,
        loss: GeneratorLoss,
        batch: usize,
        seed: u64,
        exec: Executor,
    ) -> Result<Gan, RunError> {
        let g_out = g_net
            .outputs
            .first()
            .map(|o| o.1)
            .ok_or_else(|| RunError::Config("generator has no output".into()))?;
        let d_logit = logit_node(d_net)?;
        let (rule_g, rule_d): (UpdateRule, UpdateRule) = (opt_g.into(), opt_d.into());
        let noise = features(g_net, g_net.inputs[0]);
        let data = features(g_net, g_out);
        if features(d_net, d_net.inputs[0]) != data {
            return Err(RunError::Config(format!(
                "the generator makes {data} values per sample but the discriminator takes {}",
                features(d_net, d_net.inputs[0])
            )));
        }
        if features(d_net, d_logit) != 1 {
            return Err(RunError::Config(
                "the discriminator must output one logit (or one sigmoid) per sample".into(),
            ));
        }
        let spec = GanSpec {
            g_net,
            d_net,
            batch,
            noise,
            data,
            rule_g: &rule_g,
            rule_d: &rule_d,
            loss,
            d_logit,
            g_out,
            shard: &Shard::whole(batch),
        };
        let exec: Box<dyn GanBackend> = match exec {
            Executor::Cpu => Box::new(GanCpu::new(g, d, &rule_g.opt, &rule_d.opt)),
            Executor::Gpu(gpu) => Box::new(GanGpu::new(*gpu, &spec, g, d)?),
        };
        Ok(Gan {
            g_net: g_net.clone(),
            d_net: d_net.clone(),
            batch,
            noise,
            data,
            opt_g: rule_g.opt,
            opt_d: rule_d.opt,
            rule_g,
            rule_d,
            loss,
            seed,
            step_g: 0,
            step_d: 0,
            nonfinite_at: None,
            d_logit,
            g_out,
            exec,
            shard: Shard::whole(batch),
        })
    }

    /// Computes only `shard`'s rows of each batch (a data-parallel run, micro-batches):
    /// `d_step` and `g_step` then take those rows. Batchnorm, and micro-batches on the GPU,
    /// are refused.
    pub fn set_shard(&mut self, shard: Shard) -> Result<(), RunError> {
        if !shard.is_whole() {
            let gpu_parts = self.is_gpu() && shard.parts > 1;
            split_allowed(&self.g_net, gpu_parts)?;
            split_allowed(&self.d_net, gpu_parts)?;
        }
        self.shard = shard;
        if self.is_gpu() && self.shard.dist.is_split() {
            let (spec, exec) = self.split();
            exec.reshard(&spec)?;
        }
        Ok(())
    }

    /// The backend with what it reads of the session.
    fn split(&mut self) -> (GanSpec<'_>, &mut dyn GanBackend) {
        let spec = GanSpec {
            g_net: &self.g_net,
            d_net: &self.d_net,
            batch: self.batch,
            noise: self.noise,
            data: self.data,
            rule_g: &self.rule_g,
            rule_d: &self.rule_d,
            loss: self.loss,
            d_logit: self.d_logit,
            g_out: self.g_out,
            shard: &self.shard,
        };
        (spec, self.exec.as_mut())
    }

    pub fn is_gpu(&self) -> bool {
        self.exec.is_gpu()
    }

    /// One discriminator step on `real` (batch x data) and fakes G(`z`).
    pub fn d_step(&mut self, real: &[f32], z: &[f32], lr: f64) -> Result<(), RunError> {
        self.step_d += 1;
        let seed = step_seed(self.seed, 2 * self.step_d);
        let (t, mark) = (self.step_d, self.step_g + 1);
        let mut nonfinite_at = self.nonfinite_at;
        let (spec, exec) = self.split();
        let step = Step {
            lr,
            t,
            seed,
            nonfinite_at: &mut nonfinite_at,
            mark,
        };
        let r = exec.d_step(&spec, real, z, step);
        self.nonfinite_at = nonfinite_at;
        r
    }

    /// One generator step on noise `z` through the frozen discriminator.
    pub fn g_step(&mut self, z: &[f32], lr: f64) -> Result<(), RunError> {
        self.step_g += 1;
        let seed = step_seed(self.seed, 2 * self.step_g + 1);
        let t = self.step_g;
        let mut nonfinite_at = self.nonfinite_at;
        let (spec, exec) = self.split();
        let step = Step {
            lr,
            t,
            seed,
            nonfinite_at: &mut nonfinite_at,
            mark: t,
        };
        let r = exec.g_step(&spec, z, step);
        self.nonfinite_at = nonfinite_at;
        r
    }

    /// Sums since the last call, then resets them.
    pub fn take_stats(&mut self) -> Result<GanStats, RunError> {
        let mut st = self.exec.take_stats()?;
        if self.is_gpu() {
            // The GPU sums its rows' losses on the device; the ranks' sums are the batch's.
            self.shard.dist.sum_stats(&mut st.d);
            self.shard.dist.sum_stats(&mut st.g);
        }
        Ok(st)
    }

    /// Mean D(x) on the reals and D(G(z)) on the fakes of the last D step (this process's
    /// rows of it in a data-parallel run).
    pub fn d_means(&self) -> Result<(f64, f64), RunError> {
        let logits = self.exec.d_logits()?;
        let b = self.shard.rows.min(logits.len() / 2);
        if b == 0 {
            return Ok((f64::NAN, f64::NAN));
        }
        let sig = |z: f32| 1.0 / (1.0 + (-(z as f64)).exp());
        let real = logits[..b].iter().map(|&z| sig(z)).sum::<f64>() / b as f64;
        let fake = logits[b..2 * b].iter().map(|&z| sig(z)).sum::<f64>() / b as f64;
        Ok((real, fake))
    }

    /// G(z) in inference mode for up to a batch of noise rows.
    pub fn sample(&mut self, z: &[f32]) -> Result<Vec<f32>, RunError> {
        let rows = z.len() / self.noise;
        let (spec, exec) = self.split();
        exec.sample(&spec, z, rows)
    }

    pub fn params(&self) -> Result<(Params<f32>, Params<f32>), RunError> {
        self.exec.params()
    }

    /// The step whose update first left a NaN or infinite parameter in either network, and
    /// the first such tensor, if one did (the GPU's mark read back only with `read_device`).
    pub fn nonfinite_params(
        &mut self,
        read_device: bool,
    ) -> Result<Option<(u64, String)>, RunError> {
        let Some(step) = self.exec.nonfinite_params_at(read_device)? else {
            return Ok(None);
        };
        let (g, d) = self.exec.params()?;
        Ok(Some((step, super::first_nonfinite(&[&g, &d]))))
    }

    pub fn opt_states(&self) -> Result<(OptState<f32>, OptState<f32>), RunError> {
        self.exec.opt_states(self.step_g, self.step_d)
    }

    pub fn restore(
        &mut self,
        g: &Params<f32>,
        d: &Params<f32>,
        gs: &OptState<f32>,
        ds: &OptState<f32>,
    ) {
        self.step_g = gs.step;
        self.step_d = ds.step;
        self.exec.restore(g, d, gs, ds);
    }

    /// Gradients of the last G and D steps (G's and D's parameters).
    pub fn grads(&self) -> Result<(Grads, Grads), RunError> {
        self.exec.grads()
    }

    pub fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize, usize)> {
        self.exec.gpu_program()
    }
}
