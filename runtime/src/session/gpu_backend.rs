//! The classifier session on the GPU program: host data written into its input tensors, its
//! train and eval passes run, and only the tensors asked for read back.

use super::backend::{ClassifierBackend, ClassifierSpec, Step};
use super::gpu_params::{
    download, download_state, read_grads, upload, upload_state, write_grads, zero_state,
};
use super::{hyper, Grads, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::gpu::{Gpu, GpuProgram};
use netc_compiler::ir::Network;
use netc_compiler::program::RankRows;
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
    /// A data-parallel rank's update pass, run after the gradients are summed over the ranks.
    update: Option<usize>,
    eval: usize,
    /// The rows the program's passes take (a rank's part of the batch in a data-parallel
    /// run, else the batch): evaluation runs in pieces of this many.
    rows: usize,
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
        rank: Option<RankRows>,
    ) -> Result<ClassifierGpu, RunError> {
        let builder = match rank {
            Some(r) => gpu.builder().rank_rows(r),
            None => gpu.builder(),
        };
        let plan =
            builder.classifier_per_position(net, rule.clone(), batch as u64, positions as u64)?;
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
            update,
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
            update,
            eval,
            rows: batch,
            template: params,
        })
    }

    /// Writes `rows` inputs and targets padded to the program's rows with zeros (all-zero
    /// targets add nothing to the sums), then runs the evaluation pass.
    fn eval_piece(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
    ) -> Result<(), RunError> {
        if x.len() == self.rows * s.features {
            self.prog.write(self.x, x);
            self.prog.write(self.y, onehot);
        } else {
            let mut xp = x.to_vec();
            xp.resize(self.rows * s.features, 0.0);
            let mut yp = onehot.to_vec();
            yp.resize(self.rows * s.classes, 0.0);
            self.prog.write(self.x, &xp);
            self.prog.write(self.y, &yp);
        }
        self.prog.run(self.eval);
        Ok(())
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
        if let Some(update) = self.update {
            // The gradients of this rank's rows, summed over the ranks on the host (wgpu
            // buffers are not MPI's), then the update every rank applies alike.
            let mut g = read_grads(&self.prog, &self.set, &self.template)?;
            s.shard.dist.sum_grads(&mut g);
            write_grads(&self.prog, &self.set, &self.template, &g);
            self.prog.run(update);
        }
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
        // In pieces of the program's rows (a rank's program takes fewer than the batch).
        let (f, c) = (s.features, s.classes);
        for k in (0..rows).step_by(self.rows.max(1)) {
            let n = self.rows.min(rows - k);
            self.eval_piece(s, &x[k * f..(k + n) * f], &onehot[k * c..(k + n) * c])?;
        }
        Ok(())
    }

    fn take_eval_stats(&mut self) -> Result<LossStats, RunError> {
        self.take(self.eval_stats)
    }

    fn logits(&mut self, s: &ClassifierSpec, x: &[f32], rows: usize) -> Result<Vec<f32>, RunError> {
        let f = s.features;
        let mut out = Vec::with_capacity(rows * s.classes);
        for k in (0..rows).step_by(self.rows.max(1)) {
            let n = self.rows.min(rows - k);
            // All-zero targets: the pass's loss adds nothing to the evaluation sums.
            self.eval_piece(s, &x[k * f..(k + n) * f], &vec![0.0; n * s.classes])?;
            let v = self.prog.read(self.logits_eval)?;
            out.extend_from_slice(&v[..n * s.classes]);
        }
        Ok(out)
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

    /// A data-parallel rank's program: rebuilt for its rows, with the weights and optimizer
    /// state the session holds now.
    fn reshard(&mut self, s: &ClassifierSpec) -> Result<(), RunError> {
        let sh = s.shard;
        if sh.parts > 1 {
            return Err(RunError::CpuOnly("--micro-batches".into()));
        }
        let rank = (sh.rows != s.batch).then_some(RankRows {
            global_batch: s.batch as u64,
            row0: sh.row0 as u64,
        });
        let (params, state) = (self.params()?, self.opt_state(0)?);
        let gpu = self.prog.gpu.clone();
        *self = ClassifierGpu::new(gpu, s.net, params, s.rule, (sh.rows, s.positions), rank)?;
        upload_state(&self.prog, &self.set, &self.template, &state);
        Ok(())
    }
}
