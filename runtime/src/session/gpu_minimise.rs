//! The declared-loss session on the GPU program ([`MinimisePlan`]): each step writes the
//! inputs, the hyper-parameters and the dropout seed, and submits the training pass once; the
//! loss's sums stay on the device until the host reads them at a log interval, and weights,
//! moments and the moving average only when a checkpoint or a check asks for them.

use super::gpu_params::{download, download_state, read_grads, upload, upload_state, write_grads};
use super::{Grads, RunError, Sums};
use crate::cpu::{OptState, Params};
use crate::dist::Shard;
use crate::gpu::{Gpu, GpuProgram};
use netc_compiler::ir::Network;
use netc_compiler::program::RankRows;
use netc_compiler::schedule::{MinimisePlan, ParamSet, TensorId, UpdateRule};
use petgraph::graph::NodeIndex;

pub(super) struct MinimiseGpu {
    prog: GpuProgram,
    plan: MinimisePlanTensors,
    /// The parameter set with the moving average's tensors in place of the weights.
    ema_set: Option<ParamSet>,
    /// The nodes the evaluation pass computes, in the order of `plan.values`.
    eval_nodes: Vec<NodeIndex>,
    /// The rows the program's passes take (a rank's part of the batch in a data-parallel
    /// run, else the batch): evaluation runs in pieces of this many.
    rows: usize,
    /// This process's rows and the ranks its gradients are summed over.
    shard: Shard,
    /// Values per example of each input.
    widths: Vec<usize>,
    /// The parameters' names and shapes, for reading them back.
    template: Params<f32>,
}

/// The plan without its program (which the GPU program owns).
struct MinimisePlanTensors {
    set: ParamSet,
    inputs: Vec<TensorId>,
    stats: TensorId,
    hyper: TensorId,
    health: TensorId,
    rng: TensorId,
    eval_rows: TensorId,
    eval_stats: TensorId,
    train: usize,
    /// A data-parallel rank's update pass, run after the gradients are summed over the ranks.
    update: Option<usize>,
    eval: usize,
}

/// What the session hands the device when it first needs it: the weights, the moments and
/// the moving average, as the host holds them then.
pub(super) struct Start<'a> {
    pub params: &'a Params<f32>,
    pub state: &'a OptState<f32>,
    pub ema: Option<(f64, &'a Params<f32>)>,
}

impl MinimiseGpu {
    /// Lowers and instantiates the program minimising `loss` of `net` (pipelines built once,
    /// here), evaluating `eval_nodes`, and uploads `start`; for `shard`'s rows of each batch
    /// (a data-parallel rank's: a gradient pass and an update pass, the host summing the
    /// gradients between them).
    pub fn new(
        gpu: Gpu,
        net: &Network,
        rule: &UpdateRule,
        (batch, loss, shard): (usize, NodeIndex, &Shard),
        eval_nodes: &[NodeIndex],
        start: Start,
    ) -> Result<MinimiseGpu, RunError> {
        let rows = shard.rows;
        let builder = match rows != batch {
            true => gpu.builder().rank_rows(RankRows {
                global_batch: batch as u64,
                row0: shard.row0 as u64,
            }),
            false => gpu.builder(),
        };
        let plan = builder.minimise(
            net,
            rule.clone(),
            (rows as u64, loss),
            eval_nodes,
            start.ema.map(|e| e.0),
        )?;
        let MinimisePlan {
            program,
            set,
            inputs,
            seed,
            stats,
            hyper,
            health,
            rng,
            update,
            ema,
            eval_rows,
            eval_stats,
            train,
            eval,
        } = plan;
        let prog = GpuProgram::new(gpu, program)?;
        upload(&prog, &set, start.params);
        upload_state(&prog, &set, start.params, start.state);
        // d(mean over the global batch)/d(each of the rows' losses).
        prog.write(seed, &vec![1.0 / batch as f32; rows]);
        prog.write(stats, &[0.0; 4]);
        prog.write(health, &[0.0; 4]);
        prog.write(eval_stats, &vec![0.0; 2 * eval_nodes.len()]);
        let ema_set = start.ema.map(|(_, p)| {
            let mut e = set.clone();
            for (b, &t) in e.bindings.iter_mut().zip(&ema) {
                b.tensor = t;
                b.grad = None;
                b.state = vec![];
            }
            upload(&prog, &e, p);
            e
        });
        Ok(MinimiseGpu {
            prog,
            plan: MinimisePlanTensors {
                set,
                inputs,
                stats,
                hyper,
                health,
                rng,
                eval_rows,
                eval_stats,
                train,
                update,
                eval,
            },
            ema_set,
            eval_nodes: eval_nodes.to_vec(),
            rows,
            shard: shard.clone(),
            widths: (net.inputs.iter())
                .map(|&i| net.graph[i].shape.iter().product::<u64>() as usize)
                .collect(),
            template: start.params.clone(),
        })
    }

    /// One training pass on the program's rows: one submission, nothing read back; on a
    /// data-parallel rank the gradients are read back, summed over the ranks on the host
    /// (wgpu buffers are not MPI's) and written back before the update pass.
    pub fn train_step(
        &mut self,
        inputs: &[Vec<f32>],
        hyper: [f32; 4],
        seed: u32,
    ) -> Result<(), RunError> {
        for (&t, x) in self.plan.inputs.iter().zip(inputs) {
            self.prog.write(t, x);
        }
        self.prog.write(self.plan.hyper, &hyper);
        self.prog.write_u32(self.plan.rng, &[seed]);
        self.prog.run(self.plan.train);
        if let Some(update) = self.plan.update {
            let mut g = read_grads(&self.prog, &self.plan.set, &self.template)?;
            self.shard.dist.sum_grads(&mut g);
            write_grads(&self.prog, &self.plan.set, &self.template, &g);
            self.prog.run(update);
        }
        Ok(())
    }

    /// The loss's sums since the last call, then zeroes them (the one read per interval).
    pub fn take_stats(&mut self) -> Result<Sums, RunError> {
        let v = self.prog.read(self.plan.stats)?;
        self.prog.write(self.plan.stats, &[0.0; 4]);
        Ok(Sums {
            sum: v[0] as f64,
            rows: v[1] as f64,
        })
    }

    /// Adds the first `rows` examples of a batch to the evaluated nodes' sums on the device
    /// (inference mode), in pieces of the program's rows (a rank's program takes fewer than
    /// the batch); a short piece is padded with zeros, its padding not counted.
    pub fn eval_batch(&mut self, inputs: &[Vec<f32>], rows: usize) {
        let per = self.rows.max(1);
        for k in (0..rows).step_by(per) {
            let n = per.min(rows - k);
            for ((&t, x), &w) in self.plan.inputs.iter().zip(inputs).zip(&self.widths) {
                let mut piece = x[k * w..(k + n) * w].to_vec();
                piece.resize(per * w, 0.0);
                self.prog.write(t, &piece);
            }
            self.prog.write(self.plan.eval_rows, &[n as f32]);
            self.prog.run(self.plan.eval);
        }
    }

    /// The evaluated nodes' sums since the last call (one read), then zeroes them.
    pub fn take_eval(&mut self) -> Result<Vec<Sums>, RunError> {
        let v = self.prog.read(self.plan.eval_stats)?;
        self.prog
            .write(self.plan.eval_stats, &vec![0.0; 2 * self.eval_nodes.len()]);
        Ok((0..self.eval_nodes.len())
            .map(|k| Sums {
                sum: v[2 * k] as f64,
                rows: v[2 * k + 1] as f64,
            })
            .collect())
    }

    /// The nodes the evaluation pass sums, in the order of `take_eval`.
    pub fn eval_nodes(&self) -> &[NodeIndex] {
        &self.eval_nodes
    }

    /// The step an update first left a non-finite weight at, read with `read_device` only.
    pub fn nonfinite_params_at(&self, read_device: bool) -> Result<Option<u64>, RunError> {
        super::read_health(&self.prog, self.plan.health, read_device)
    }

    pub fn params(&self) -> Result<Params<f32>, RunError> {
        download(&self.prog, &self.plan.set, &self.template)
    }

    pub fn opt_state(&self, step: u64) -> Result<OptState<f32>, RunError> {
        download_state(&self.prog, &self.plan.set, &self.template, step)
    }

    pub fn ema(&self) -> Result<Option<Params<f32>>, RunError> {
        (self.ema_set.as_ref())
            .map(|e| download(&self.prog, e, &self.template))
            .transpose()
    }

    pub fn grads(&self) -> Result<Grads, RunError> {
        read_grads(&self.prog, &self.plan.set, &self.template)
    }

    pub fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        upload(&self.prog, &self.plan.set, params);
        upload_state(&self.prog, &self.plan.set, params, state);
    }

    pub fn restore_ema(&mut self, ema: &Params<f32>) {
        if let Some(e) = &self.ema_set {
            upload(&self.prog, e, ema);
        }
    }

    /// The program and its training pass (for `bench --profile` and dispatch counts).
    pub fn gpu_program(&mut self) -> (&mut GpuProgram, usize) {
        (&mut self.prog, self.plan.train)
    }
}
