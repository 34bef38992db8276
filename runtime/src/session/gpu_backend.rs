//! The classifier session on the GPU program: host data written into its input tensors, its
//! train and eval passes run, and only the tensors asked for read back.

use super::backend::{ClassifierBackend, ClassifierSpec, Step};
use super::gpu_params::{download, download_state, read_grads, upload, upload_state, zero_state};
use super::{hyper, Grads, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::gpu::{Gpu, GpuProgram};
use netc_compiler::ir::Network;
use netc_compiler::schedule::{ClassifierPlan, ParamSet, TensorId, UpdateRule};

pub(super) struct ClassifierGpu {
    prog: GpuProgram,
    set: ParamSet,
    x: TensorId,
    y: TensorId,
    stats: TensorId,
    eval_stats: TensorId,
    hyper: TensorId,
    /// The step an update first wrote a non-finite weight at (0: none).
    health: TensorId,
    rng: Option<TensorId>,
    logits_eval: TensorId,
    train: usize,
    eval: usize,
    /// The parameters' names and shapes, for reading them back.
    template: Params<f32>,
}

impl ClassifierGpu {
    pub fn new(
        gpu: Gpu,
        net: &Network,
        params: Params<f32>,
        rule: &UpdateRule,
        (batch, positions): (usize, usize),
    ) -> Result<ClassifierGpu, RunError> {
        let plan = gpu.builder().classifier_per_position(
            net,
            rule.clone(),
            batch as u64,
            positions as u64,
        )?;
        let ClassifierPlan {
            program,
            set,
            x,
            y,
            stats,
            eval_stats,
            hyper: hyper_t,
            health,
            rng,
            logits_eval,
            train,
            eval,
        } = plan;
        let prog = GpuProgram::new(gpu, program)?;
        upload(&prog, &set, &params);
        zero_state(&prog, &set);
        prog.write(stats, &[0.0; 4]);
        prog.write(eval_stats, &[0.0; 4]);
        prog.write(health, &[0.0; 4]);
        Ok(ClassifierGpu {
            prog,
            set,
            x,
            y,
            stats,
            eval_stats,
            hyper: hyper_t,
            health,
            rng,
            logits_eval,
            train,
            eval,
            template: params,
        })
    }

    /// Reads a stats tensor, then zeroes it.
    fn take(&mut self, t: TensorId) -> Result<LossStats, RunError> {
        let v = self.prog.read(t)?;
        self.prog.write(t, &[0.0; 4]);
        Ok(LossStats::from_slice(&v))
    }
}

impl ClassifierBackend for ClassifierGpu {
    fn train_step(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        step: Step,
    ) -> Result<(), RunError> {
        self.prog.write(self.x, x);
        self.prog.write(self.y, onehot);
        self.prog
            .write(self.hyper, &hyper(&s.rule.opt, step.lr, step.t, step.mark));
        if let Some(r) = self.rng {
            self.prog.write_u32(r, &[step.seed]);
        }
        self.prog.run(self.train);
        Ok(())
    }

    fn take_stats(&mut self) -> Result<LossStats, RunError> {
        self.take(self.stats)
    }

    fn nonfinite_params_at(&mut self, read_device: bool) -> Result<Option<u64>, RunError> {
        super::read_health(&self.prog, self.health, read_device)
    }

    fn eval_batch(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        rows: usize,
    ) -> Result<(), RunError> {
        if rows == s.batch {
            self.prog.write(self.x, x);
            self.prog.write(self.y, onehot);
        } else {
            // A short batch: zero rows after it (all-zero targets add nothing).
            let mut xp = x.to_vec();
            xp.resize(s.batch * s.features, 0.0);
            let mut yp = onehot.to_vec();
            yp.resize(s.batch * s.classes, 0.0);
            self.prog.write(self.x, &xp);
            self.prog.write(self.y, &yp);
        }
        self.prog.run(self.eval);
        Ok(())
    }

    fn take_eval_stats(&mut self) -> Result<LossStats, RunError> {
        self.take(self.eval_stats)
    }

    fn logits(&mut self, s: &ClassifierSpec, x: &[f32], rows: usize) -> Result<Vec<f32>, RunError> {
        let mut padded = x.to_vec();
        padded.resize(s.batch * s.features, 0.0);
        self.prog.write(self.x, &padded);
        // All-zero targets: the pass's loss adds nothing to the evaluation sums.
        self.prog.write(self.y, &vec![0.0; s.batch * s.classes]);
        self.prog.run(self.eval);
        let mut v = self.prog.read(self.logits_eval)?;
        v.truncate(rows * s.classes);
        Ok(v)
    }

    fn params(&self) -> Result<Params<f32>, RunError> {
        download(&self.prog, &self.set, &self.template)
    }

    fn grads(&self) -> Result<Grads, RunError> {
        read_grads(&self.prog, &self.set, &self.template)
    }

    fn opt_state(&self, step: u64) -> Result<OptState<f32>, RunError> {
        download_state(&self.prog, &self.set, &self.template, step)
    }

    fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        upload(&self.prog, &self.set, params);
        upload_state(&self.prog, &self.set, params, state);
    }

    fn is_gpu(&self) -> bool {
        true
    }

    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)> {
        Some((&mut self.prog, self.train))
    }
}
