//! The GAN session on the GPU: its program (a D step, a G step through a frozen D, and a
//! sampling pass, lowered in that order) and the backend that replays it.

use super::backend::{GanBackend, GanSpec, Step};
use super::gpu_params::{
    download, download_state, frozen, read_grads, upload, upload_state, write_grads, zero_state,
};
use super::{hyper, GanStats, GeneratorLoss, Grads, RunError};
use crate::cpu::{LossStats, OptState, Params};
use crate::gpu::{Gpu, GpuProgram};
use netc_compiler::kernels::Store;
use netc_compiler::schedule::{Builder, Kind, ParamSet, TensorId};

pub(super) struct GanGpu {
    prog: GpuProgram,
    g_set: ParamSet,
    d_set: ParamSet,
    z_d: TensorId,
    z_g: TensorId,
    x: TensorId,
    d_stats: TensorId,
    g_stats: TensorId,
    d_logits: TensorId,
    hyper_d: TensorId,
    hyper_g: TensorId,
    /// The step an update of either network first wrote a non-finite weight at (0: none).
    health: TensorId,
    rng: TensorId,
    sample_out: TensorId,
    d_pass: usize,
    g_pass: usize,
    /// A data-parallel rank's update passes, run after the gradients are summed over the
    /// ranks (the D and G passes then compute gradients only).
    d_update: Option<usize>,
    g_update: Option<usize>,
    sample_pass: usize,
    /// The rows the program's passes take: the rank's part of the batch, or the batch.
    rows: usize,
    /// G's and D's parameter names and shapes, for reading them back.
    g_template: Params<f32>,
    d_template: Params<f32>,
}

/// The program's host-written tensors, created in this order after the parameters.
struct Inputs {
    z_d: TensorId,
    z_g: TensorId,
    x: TensorId,
    t_real: TensorId,
    t_fake: TensorId,
    t_g: TensorId,
    d_stats: TensorId,
    g_stats: TensorId,
    rng: TensorId,
}

fn inputs(pb: &mut Builder, s: &GanSpec) -> Inputs {
    let b = s.shard.rows as u64;
    Inputs {
        z_d: pb.tensor("z_d", b * s.noise as u64, Kind::HostInput),
        z_g: pb.tensor("z_g", b * s.noise as u64, Kind::HostInput),
        x: pb.tensor("x_real", b * s.data as u64, Kind::HostInput),
        t_real: pb.tensor("t_real", b, Kind::HostInput),
        t_fake: pb.tensor("t_fake", b, Kind::HostInput),
        t_g: pb.tensor("t_g", b, Kind::HostInput),
        d_stats: pb.tensor("d_stats", 4, Kind::Stats),
        g_stats: pb.tensor("g_stats", 4, Kind::Stats),
        rng: pb.rng(),
    }
}

/// Ends a step's pass with the update of `set`: in the same pass, or in a data-parallel run
/// in a pass of its own, the host summing the ranks' gradients between the two.
fn end_with_update(
    pb: &mut Builder,
    s: &GanSpec,
    set: &mut ParamSet,
    (rule, name): (&netc_compiler::schedule::UpdateRule, &str),
) -> (usize, Option<usize>) {
    pb.set_part(0, Store::Write);
    if !s.shard.dist.is_split() {
        pb.update(set, rule, name);
        return (pb.end_pass(), None);
    }
    let grads = pb.end_pass();
    pb.begin_pass(&format!("{name}_update"));
    pb.update(set, rule, name);
    (grads, Some(pb.end_pass()))
}

/// The D step: the reals, then fakes from G (no gradient into G), as two batches (each with
/// its own batchnorm statistics, as PyTorch's DCGAN runs D twice) that are rows 0..B and
/// B..2B of one for dropout; their gradients add up before one update. A data-parallel rank
/// runs its rows (from row r0: rows r0.. and B + r0.. for dropout), the loss scaled by the
/// global batch B. Returns the pass, the update pass if apart, D's logits and the frozen G
/// it ran (the sampling pass runs the same).
type DPass = (usize, Option<usize>, TensorId, ParamSet);
fn d_pass(
    pb: &mut Builder,
    s: &GanSpec,
    g_set: &ParamSet,
    d_set: &mut ParamSet,
    io: &Inputs,
) -> Result<DPass, RunError> {
    let (big_b, b, r0) = (s.batch as u64, s.shard.rows as u64, s.shard.row0 as u64);
    pb.begin_pass("d_step");
    pb.set_part(r0, Store::Write);
    let g_frozen = frozen(g_set);
    let gf = pb.forward(s.g_net, &g_frozen, io.z_d, b, true)?;
    let d_logits = pb.tensor("d_logits", 2 * b, Kind::Activation);
    for (k, (input, target)) in [(io.x, io.t_real), (gf.output, io.t_fake)]
        .into_iter()
        .enumerate()
    {
        let k = k as u64;
        let store = if k == 0 {
            Store::Write
        } else {
            Store::Accumulate
        };
        pb.set_part(k * big_b + r0, store);
        let df = pb.forward(s.d_net, d_set, input, b, true)?;
        pb.copy(df.logit, 0, d_logits, k * b, b);
        let dz = pb.bce_logits(df.logit, target, b, 1.0 / big_b as f64, io.d_stats);
        pb.backward(s.d_net, d_set, &df, df.logit_node, dz, false);
    }
    pb.keep(d_logits);
    let (pass, update) = end_with_update(pb, s, d_set, (s.rule_d, "d"));
    Ok((pass, update, d_logits, g_frozen))
}

/// The G step: through D with D frozen (a rank's rows as in [`d_pass`]).
fn g_pass(
    pb: &mut Builder,
    s: &GanSpec,
    g_set: &mut ParamSet,
    d_set: &ParamSet,
    io: &Inputs,
) -> Result<(usize, Option<usize>), RunError> {
    let (big_b, b) = (s.batch as u64, s.shard.rows as u64);
    pb.begin_pass("g_step");
    pb.set_part(s.shard.row0 as u64, Store::Write);
    let gf = pb.forward(s.g_net, g_set, io.z_g, b, true)?;
    let d_frozen = frozen(d_set);
    let df = pb.forward(s.d_net, &d_frozen, gf.output, b, true)?;
    let scale = match s.loss {
        GeneratorLoss::NonSaturating => 1.0 / big_b as f64,
        GeneratorLoss::Minimax => -1.0 / big_b as f64,
    };
    let dz = pb.bce_logits(df.logit, io.t_g, b, scale, io.g_stats);
    let dg = pb
        .backward(s.d_net, &d_frozen, &df, df.logit_node, dz, true)
        .ok_or_else(|| RunError::Config("no gradient reaches the generator".into()))?;
    pb.backward(s.g_net, g_set, &gf, gf.output_node, dg, false);
    Ok(end_with_update(pb, s, g_set, (s.rule_g, "g")))
}

/// The initial writes: weights, zero optimizer state, the constant targets, zero sums.
fn initialize(
    prog: &GpuProgram,
    s: &GanSpec,
    sets: [&ParamSet; 2],
    g: &Params<f32>,
    d: &Params<f32>,
    io: &Inputs,
) {
    let batch = s.shard.rows;
    upload(prog, sets[0], g);
    upload(prog, sets[1], d);
    for set in sets {
        zero_state(prog, set);
    }
    prog.write(io.t_real, &vec![1.0f32; batch]);
    prog.write(io.t_fake, &vec![0.0f32; batch]);
    let tg = match s.loss {
        GeneratorLoss::NonSaturating => vec![1.0f32; batch],
        GeneratorLoss::Minimax => vec![0.0f32; batch],
    };
    prog.write(io.t_g, &tg);
    prog.write(io.d_stats, &[0.0; 4]);
    prog.write(io.g_stats, &[0.0; 4]);
}

impl GanGpu {
    pub fn new(gpu: Gpu, s: &GanSpec, g: Params<f32>, d: Params<f32>) -> Result<GanGpu, RunError> {
        let b = s.shard.rows as u64;
        let mut pb = gpu.builder();
        pb.check_blocks(s.g_net)?;
        pb.check_blocks(s.d_net)?;
        let mut g_set = pb.params(s.g_net, true);
        let mut d_set = pb.params(s.d_net, true);
        let io = inputs(&mut pb, s);
        let (d_pass, d_update, d_logits, g_frozen) = d_pass(&mut pb, s, &g_set, &mut d_set, &io)?;
        let (g_pass, g_update) = g_pass(&mut pb, s, &mut g_set, &d_set, &io)?;
        pb.begin_pass("sample");
        let gs = pb.forward(s.g_net, &g_frozen, io.z_g, b, false)?;
        pb.keep(gs.output);
        let sample_out = gs.output;
        let sample_pass = pb.end_pass();
        let hyper_d = pb.hyper("d");
        let hyper_g = pb.hyper("g");
        let health = pb.health();
        pb.register(&g_set);
        pb.register(&d_set);
        let prog = GpuProgram::new(gpu, pb.finish())?;
        initialize(&prog, s, [&g_set, &d_set], &g, &d, &io);
        prog.write(health, &[0.0; 4]);
        Ok(GanGpu {
            prog,
            g_set,
            d_set,
            z_d: io.z_d,
            z_g: io.z_g,
            x: io.x,
            d_stats: io.d_stats,
            g_stats: io.g_stats,
            d_logits,
            hyper_d,
            hyper_g,
            health,
            rng: io.rng,
            sample_out,
            d_pass,
            g_pass,
            d_update,
            g_update,
            sample_pass,
            rows: s.shard.rows,
            g_template: g,
            d_template: d,
        })
    }
}

impl GanBackend for GanGpu {
    fn d_step(&mut self, s: &GanSpec, real: &[f32], z: &[f32], step: Step) -> Result<(), RunError> {
        self.prog.write(self.x, real);
        self.prog.write(self.z_d, z);
        self.prog.write(
            self.hyper_d,
            &hyper(&s.rule_d.opt, step.lr, step.t, step.mark),
        );
        self.prog.write_u32(self.rng, &[step.seed]);
        self.prog.run(self.d_pass);
        if let Some(update) = self.d_update {
            // The ranks' gradients summed on the host, then the update every rank applies.
            let mut g = read_grads(&self.prog, &self.d_set, &self.d_template)?;
            s.shard.dist.sum_grads(&mut g);
            write_grads(&self.prog, &self.d_set, &self.d_template, &g);
            self.prog.run(update);
        }
        Ok(())
    }

    fn g_step(&mut self, s: &GanSpec, z: &[f32], step: Step) -> Result<(), RunError> {
        self.prog.write(self.z_g, z);
        self.prog.write(
            self.hyper_g,
            &hyper(&s.rule_g.opt, step.lr, step.t, step.mark),
        );
        self.prog.write_u32(self.rng, &[step.seed]);
        self.prog.run(self.g_pass);
        if let Some(update) = self.g_update {
            let mut g = read_grads(&self.prog, &self.g_set, &self.g_template)?;
            s.shard.dist.sum_grads(&mut g);
            write_grads(&self.prog, &self.g_set, &self.g_template, &g);
            self.prog.run(update);
        }
        Ok(())
    }

    fn nonfinite_params_at(&mut self, read_device: bool) -> Result<Option<u64>, RunError> {
        super::read_health(&self.prog, self.health, read_device)
    }

    fn take_stats(&mut self) -> Result<GanStats, RunError> {
        let d = LossStats::from_slice(&self.prog.read(self.d_stats)?);
        let gs = LossStats::from_slice(&self.prog.read(self.g_stats)?);
        self.prog.write(self.d_stats, &[0.0; 4]);
        self.prog.write(self.g_stats, &[0.0; 4]);
        Ok(GanStats { d, g: gs })
    }

    fn d_logits(&self) -> Result<Vec<f32>, RunError> {
        Ok(self.prog.read(self.d_logits)?)
    }

    fn sample(&mut self, s: &GanSpec, z: &[f32], rows: usize) -> Result<Vec<f32>, RunError> {
        // In pieces of the program's rows (a rank's program takes fewer than the batch).
        let mut out = Vec::with_capacity(rows * s.data);
        for k in (0..rows).step_by(self.rows.max(1)) {
            let n = self.rows.min(rows - k);
            let mut padded = z[k * s.noise..(k + n) * s.noise].to_vec();
            padded.resize(self.rows * s.noise, 0.0);
            self.prog.write(self.z_g, &padded);
            self.prog.run(self.sample_pass);
            let v = self.prog.read(self.sample_out)?;
            out.extend_from_slice(&v[..n * s.data]);
        }
        Ok(out)
    }

    fn params(&self) -> Result<(Params<f32>, Params<f32>), RunError> {
        Ok((
            download(&self.prog, &self.g_set, &self.g_template)?,
            download(&self.prog, &self.d_set, &self.d_template)?,
        ))
    }

    fn opt_states(
        &self,
        step_g: u64,
        step_d: u64,
    ) -> Result<(OptState<f32>, OptState<f32>), RunError> {
        Ok((
            download_state(&self.prog, &self.g_set, &self.g_template, step_g)?,
            download_state(&self.prog, &self.d_set, &self.d_template, step_d)?,
        ))
    }

    fn restore(
        &mut self,
        g: &Params<f32>,
        d: &Params<f32>,
        gs: &OptState<f32>,
        ds: &OptState<f32>,
    ) {
        upload(&self.prog, &self.g_set, g);
        upload(&self.prog, &self.d_set, d);
        upload_state(&self.prog, &self.g_set, g, gs);
        upload_state(&self.prog, &self.d_set, d, ds);
    }

    fn grads(&self) -> Result<(Grads, Grads), RunError> {
        Ok((
            read_grads(&self.prog, &self.g_set, &self.g_template)?,
            read_grads(&self.prog, &self.d_set, &self.d_template)?,
        ))
    }

    fn is_gpu(&self) -> bool {
        true
    }

    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize, usize)> {
        Some((&mut self.prog, self.d_pass, self.g_pass))
    }

    /// A data-parallel rank's program: rebuilt for its rows, with the weights and optimizer
    /// states the session holds now.
    fn reshard(&mut self, s: &GanSpec) -> Result<(), RunError> {
        if s.shard.parts > 1 {
            return Err(RunError::CpuOnly("--micro-batches".into()));
        }
        let (g, d) = self.params()?;
        let (gs, ds) = self.opt_states(0, 0)?;
        let gpu = self.prog.gpu.clone();
        *self = GanGpu::new(gpu, s, g, d)?;
        upload_state(&self.prog, &self.g_set, &self.g_template, &gs);
        upload_state(&self.prog, &self.d_set, &self.d_template, &ds);
        Ok(())
    }
}
