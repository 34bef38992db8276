//! Training sessions: a classifier or a GAN bound to an executor (the wgpu program or the CPU
//! reference), with the same semantics on both so their steps can be compared number for number.

use crate::cpu::{self, Activations, LossStats, OptState, Params};
use crate::gpu::{Gpu, GpuError, GpuProgram};
use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
use netc_compiler::kernels::Store;
use netc_compiler::schedule::{
    ClassifierPlan, Kind, LowerError, Optimizer, ParamBinding, ParamSet, TensorId,
};
use petgraph::graph::NodeIndex;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Memory(#[from] crate::memory::MemoryError),
}

/// Which executor runs a session.
pub enum Executor {
    Cpu,
    Gpu(Box<Gpu>),
}

/// Gradients per parameter tensor (None for frozen ones), in `Params` order.
pub type Grads = Vec<Option<Vec<f32>>>;

/// The dropout seed of a step: a hash of the run seed and the step, identical on both executors.
pub fn step_seed(seed: u64, step: u64) -> u32 {
    (crate::rng::mix64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 32) as u32
}

/// Adam's bias corrections for step t (1-based) as the kernels take them: [lr, 1/c1, 1/c2, 0]
/// with c = 1 - beta^t (shaders/adam.wgsl), reciprocals taken in f64 as the CPU reference does.
fn hyper(opt: &Optimizer, lr: f64, t: u64) -> [f32; 4] {
    match opt {
        Optimizer::Adam { beta1, beta2, .. } => [
            lr as f32,
            (1.0 / (1.0 - beta1.powi(t as i32))) as f32,
            (1.0 / (1.0 - beta2.powi(t as i32))) as f32,
            0.0,
        ],
        Optimizer::Sgd { .. } => [lr as f32, 1.0, 1.0, 0.0],
    }
}

fn logit_node(net: &Network) -> Result<NodeIndex, RunError> {
    net.output_and_logit()
        .map(|(_, logit)| logit)
        .ok_or_else(|| RunError::Config(format!("network `{}` has no output", net.name)))
}

fn features(net: &Network, n: NodeIndex) -> usize {
    net.graph[n].shape.iter().product::<u64>() as usize
}

/// The elements of host tensor `v` a (possibly partial) binding holds.
fn part<'a>(b: &ParamBinding, v: &'a [f32]) -> &'a [f32] {
    &v[b.offset as usize..(b.offset + b.len) as usize]
}

fn upload(prog: &GpuProgram, set: &ParamSet, p: &Params<f32>) {
    for b in &set.bindings {
        if let Some(i) = p.index(&b.name) {
            prog.write(b.tensor, part(b, &p.values[i]));
        }
    }
}

/// Reads a binding's part of a device tensor into its place in `into`.
fn read_part(
    prog: &GpuProgram,
    b: &ParamBinding,
    t: TensorId,
    into: &mut [f32],
) -> Result<(), RunError> {
    let v = prog.read(t)?;
    into[b.offset as usize..(b.offset + b.len) as usize].copy_from_slice(&v[..b.len as usize]);
    Ok(())
}

/// The gradients of a parameter set's tensors in `like`'s order (None for frozen ones),
/// assembled from their parts.
fn read_grads(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
) -> Result<Vec<Option<Vec<f32>>>, RunError> {
    like.names
        .iter()
        .zip(&like.values)
        .map(|(n, v)| {
            let parts = set.bindings.iter().filter(|b| &b.name == n);
            let mut out: Option<Vec<f32>> = None;
            for b in parts {
                if let Some(t) = b.grad {
                    let g = out.get_or_insert_with(|| vec![0.0; v.len()]);
                    read_part(prog, b, t, g)?;
                }
            }
            Ok(out)
        })
        .collect()
}

fn download(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
) -> Result<Params<f32>, RunError> {
    let mut p = like.clone();
    for b in &set.bindings {
        if let Some(i) = p.index(&b.name) {
            read_part(prog, b, b.tensor, &mut p.values[i])?;
        }
    }
    Ok(p)
}

fn download_state(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
    step: u64,
) -> Result<OptState<f32>, RunError> {
    let slots = set
        .bindings
        .iter()
        .map(|b| b.state.len())
        .max()
        .unwrap_or(0);
    let mut st = OptState {
        slots: (0..slots)
            .map(|_| like.values.iter().map(|v| vec![0.0; v.len()]).collect())
            .collect(),
        step,
    };
    for b in &set.bindings {
        if let Some(i) = like.index(&b.name) {
            for (s, &t) in b.state.iter().enumerate() {
                read_part(prog, b, t, &mut st.slots[s][i])?;
            }
        }
    }
    Ok(st)
}

fn upload_state(prog: &GpuProgram, set: &ParamSet, like: &Params<f32>, st: &OptState<f32>) {
    for b in &set.bindings {
        if let Some(i) = like.index(&b.name) {
            for (s, &t) in b.state.iter().enumerate() {
                if let Some(v) = st.slots.get(s) {
                    prog.write(t, part(b, &v[i]));
                }
            }
        }
    }
}

fn frozen(set: &ParamSet) -> ParamSet {
    let mut f = set.clone();
    for b in f.bindings.iter_mut() {
        b.grad = None;
    }
    f.trainable = false;
    f
}

// ----------------------------------------------------------------------------------------------
// Classifier

struct ClassifierGpu {
    prog: GpuProgram,
    set: ParamSet,
    x: TensorId,
    y: TensorId,
    stats: TensorId,
    eval_stats: TensorId,
    hyper: TensorId,
    rng: Option<TensorId>,
    logits_eval: TensorId,
    train: usize,
    eval: usize,
}

struct ClassifierCpu {
    params: Params<f32>,
    state: OptState<f32>,
    stats: LossStats,
    eval_stats: LossStats,
    last_grads: Vec<Option<Vec<f32>>>,
}

enum ClassifierExec {
    Cpu(Box<ClassifierCpu>),
    Gpu(Box<ClassifierGpu>),
}

/// A batch of `rows` inputs as a view and its targets as an array (the CPU loss takes one).
fn batch_views<'a>(
    x: &'a [f32],
    onehot: &[f32],
    rows: usize,
    features: usize,
    classes: usize,
) -> Result<(ArrayView2<'a, f32>, Array2<f32>), RunError> {
    let xv =
        ArrayView2::from_shape((rows, features), x).map_err(|e| RunError::Config(e.to_string()))?;
    let yv = ArrayView2::from_shape((rows, classes), onehot)
        .map_err(|e| RunError::Config(e.to_string()))?
        .to_owned();
    Ok((xv, yv))
}

/// A classifier trained with softmax cross-entropy on its logits.
pub struct Classifier {
    pub net: Network,
    pub batch: usize,
    pub classes: usize,
    pub features: usize,
    pub opt: Optimizer,
    pub seed: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// The first step whose loss was not finite, where the executor can tell (the CPU checks
    /// every step; the GPU sums its losses on the device between reads).
    pub nonfinite_at: Option<u64>,
    logit: NodeIndex,
    template: Params<f32>,
    exec: ClassifierExec,
}

impl Classifier {
    pub fn new(
        net: &Network,
        params: Params<f32>,
        opt: Optimizer,
        batch: usize,
        seed: u64,
        exec: Executor,
    ) -> Result<Classifier, RunError> {
        let logit = logit_node(net)?;
        let classes = features(net, logit);
        let input = *net
            .inputs
            .first()
            .ok_or_else(|| RunError::Config("network has no input".into()))?;
        let feats = features(net, input);
        let exec = match exec {
            Executor::Cpu => {
                // Check once that the reference supports every op.
                cpu::forward(
                    net,
                    &params,
                    Array2::<f32>::zeros((1, feats)).view(),
                    false,
                    0,
                )?;
                let state = OptState::new(&params, &opt);
                ClassifierExec::Cpu(Box::new(ClassifierCpu {
                    params: params.clone(),
                    state,
                    stats: LossStats::default(),
                    eval_stats: LossStats::default(),
                    last_grads: vec![],
                }))
            }
            Executor::Gpu(gpu) => {
                let plan = gpu.builder().classifier(net, opt, batch as u64)?;
                let ClassifierPlan {
                    program,
                    set,
                    x,
                    y,
                    stats,
                    eval_stats,
                    hyper: hyper_t,
                    rng,
                    logits_eval,
                    train,
                    eval,
                } = plan;
                let prog = GpuProgram::new(*gpu, program)?;
                upload(&prog, &set, &params);
                for b in &set.bindings {
                    for &s in &b.state {
                        prog.write(s, &vec![0.0; prog.program.tensors[s].len as usize]);
                    }
                }
                prog.write(stats, &[0.0; 4]);
                prog.write(eval_stats, &[0.0; 4]);
                ClassifierExec::Gpu(Box::new(ClassifierGpu {
                    prog,
                    set,
                    x,
                    y,
                    stats,
                    eval_stats,
                    hyper: hyper_t,
                    rng,
                    logits_eval,
                    train,
                    eval,
                }))
            }
        };
        Ok(Classifier {
            net: net.clone(),
            batch,
            classes,
            features: feats,
            opt,
            seed,
            step: 0,
            nonfinite_at: None,
            logit,
            template: params,
            exec,
        })
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.exec, ClassifierExec::Gpu(_))
    }

    /// One optimizer step on a full batch (`x`: batch x features, `onehot`: batch x classes).
    pub fn train_step(&mut self, x: &[f32], onehot: &[f32], lr: f64) -> Result<(), RunError> {
        self.step += 1;
        let seed = step_seed(self.seed, self.step);
        match &mut self.exec {
            ClassifierExec::Gpu(g) => {
                g.prog.write(g.x, x);
                g.prog.write(g.y, onehot);
                g.prog.write(g.hyper, &hyper(&self.opt, lr, self.step));
                if let Some(r) = g.rng {
                    g.prog.write_u32(r, &[seed]);
                }
                g.prog.run(g.train);
            }
            ClassifierExec::Cpu(c) => {
                let (xv, yv) = batch_views(x, onehot, self.batch, self.features, self.classes)?;
                let acts: Activations<f32> = cpu::forward(&self.net, &c.params, xv, true, seed)?;
                let (st, dz) =
                    cpu::softmax_xent(acts.get(self.logit), &yv, 1.0 / self.batch as f64);
                if !st.loss.is_finite() && self.nonfinite_at.is_none() {
                    self.nonfinite_at = Some(self.step);
                }
                c.stats.add(st);
                let (grads, _) =
                    cpu::backward_opt(&self.net, &c.params, &acts, self.logit, dz, false);
                cpu::apply_update(&mut c.params, &grads, &mut c.state, &self.opt, lr);
                c.params.apply_state(&acts);
                c.last_grads = grads;
            }
        }
        Ok(())
    }

    /// Loss and accuracy sums since the last call (one read-back on the GPU), then resets them.
    pub fn take_stats(&mut self) -> Result<LossStats, RunError> {
        match &mut self.exec {
            ClassifierExec::Gpu(g) => {
                let v = g.prog.read(g.stats)?;
                g.prog.write(g.stats, &[0.0; 4]);
                Ok(LossStats::from_slice(&v))
            }
            ClassifierExec::Cpu(c) => Ok(std::mem::take(&mut c.stats)),
        }
    }

    /// Evaluates a batch in inference mode (dropout off) and adds its loss and accuracy to the
    /// evaluation sums, without a read-back on the GPU. `x` and `onehot` may hold fewer rows
    /// than the batch.
    pub fn eval_batch(&mut self, x: &[f32], onehot: &[f32]) -> Result<(), RunError> {
        let rows = x.len() / self.features;
        if onehot.len() != rows * self.classes || rows > self.batch {
            return Err(RunError::Config(format!(
                "evaluation batch of {rows} rows with {} target values (batch {}, {} classes)",
                onehot.len(),
                self.batch,
                self.classes
            )));
        }
        match &mut self.exec {
            ClassifierExec::Gpu(g) if rows == self.batch => {
                g.prog.write(g.x, x);
                g.prog.write(g.y, onehot);
                g.prog.run(g.eval);
            }
            ClassifierExec::Gpu(g) => {
                // A short batch: zero rows after it (all-zero targets add nothing).
                let mut xp = x.to_vec();
                xp.resize(self.batch * self.features, 0.0);
                let mut yp = onehot.to_vec();
                yp.resize(self.batch * self.classes, 0.0);
                g.prog.write(g.x, &xp);
                g.prog.write(g.y, &yp);
                g.prog.run(g.eval);
            }
            ClassifierExec::Cpu(c) => {
                let (xv, yv) = batch_views(x, onehot, rows, self.features, self.classes)?;
                let acts: Activations<f32> = cpu::forward(&self.net, &c.params, xv, false, 0)?;
                let (st, _) = cpu::softmax_xent(acts.get(self.logit), &yv, 1.0);
                c.eval_stats.add(st);
            }
        }
        Ok(())
    }

    /// Evaluation sums since the last call (one read-back on the GPU), then resets them.
    pub fn take_eval_stats(&mut self) -> Result<LossStats, RunError> {
        match &mut self.exec {
            ClassifierExec::Gpu(g) => {
                let v = g.prog.read(g.eval_stats)?;
                g.prog.write(g.eval_stats, &[0.0; 4]);
                Ok(LossStats::from_slice(&v))
            }
            ClassifierExec::Cpu(c) => Ok(std::mem::take(&mut c.eval_stats)),
        }
    }

    /// Logits of a batch in inference mode (dropout off). `x` may hold fewer rows than the batch.
    pub fn logits(&mut self, x: &[f32]) -> Result<Vec<f32>, RunError> {
        let rows = x.len() / self.features;
        match &mut self.exec {
            ClassifierExec::Gpu(g) => {
                let mut padded = x.to_vec();
                padded.resize(self.batch * self.features, 0.0);
                g.prog.write(g.x, &padded);
                // All-zero targets: the pass's loss adds nothing to the evaluation sums.
                g.prog.write(g.y, &vec![0.0; self.batch * self.classes]);
                g.prog.run(g.eval);
                let mut v = g.prog.read(g.logits_eval)?;
                v.truncate(rows * self.classes);
                Ok(v)
            }
            ClassifierExec::Cpu(c) => {
                let xv = ArrayView2::from_shape((rows, self.features), x)
                    .map_err(|e| RunError::Config(e.to_string()))?;
                let acts = cpu::forward(&self.net, &c.params, xv, false, 0)?;
                Ok(acts.get(self.logit).iter().copied().collect())
            }
        }
    }

    pub fn params(&self) -> Result<Params<f32>, RunError> {
        match &self.exec {
            ClassifierExec::Gpu(g) => download(&g.prog, &g.set, &self.template),
            ClassifierExec::Cpu(c) => Ok(c.params.clone()),
        }
    }

    /// Gradients of the last step (the GPU keeps them in their buffers).
    pub fn grads(&self) -> Result<Vec<Option<Vec<f32>>>, RunError> {
        match &self.exec {
            ClassifierExec::Gpu(g) => read_grads(&g.prog, &g.set, &self.template),
            ClassifierExec::Cpu(c) => Ok(c.last_grads.clone()),
        }
    }

    pub fn opt_state(&self) -> Result<OptState<f32>, RunError> {
        match &self.exec {
            ClassifierExec::Gpu(g) => download_state(&g.prog, &g.set, &self.template, self.step),
            ClassifierExec::Cpu(c) => Ok(c.state.clone()),
        }
    }

    /// Restores weights, optimizer state and step (for --resume).
    pub fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        self.step = state.step;
        match &mut self.exec {
            ClassifierExec::Gpu(g) => {
                upload(&g.prog, &g.set, params);
                upload_state(&g.prog, &g.set, params, state);
            }
            ClassifierExec::Cpu(c) => {
                c.params = params.clone();
                c.state = state.clone();
            }
        }
    }

    /// The GPU program, for profiling and replay counters.
    pub fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)> {
        match &mut self.exec {
            ClassifierExec::Gpu(g) => Some((&mut g.prog, g.train)),
            ClassifierExec::Cpu(_) => None,
        }
    }
}

// ----------------------------------------------------------------------------------------------
// GAN

/// The generator's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorLoss {
    /// -log D(G(z)) (Goodfellow et al.'s practical choice).
    NonSaturating,
    /// log(1 - D(G(z))), the original minimax objective.
    Minimax,
}

struct GanGpu {
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
    rng: TensorId,
    sample_out: TensorId,
    d_pass: usize,
    g_pass: usize,
    sample_pass: usize,
}

struct GanCpu {
    g: Params<f32>,
    d: Params<f32>,
    g_state: OptState<f32>,
    d_state: OptState<f32>,
    d_stats: LossStats,
    g_stats: LossStats,
    d_logits: Vec<f32>,
    last_g_grads: Vec<Option<Vec<f32>>>,
    last_d_grads: Vec<Option<Vec<f32>>>,
}

enum GanExec {
    Cpu(Box<GanCpu>),
    Gpu(Box<GanGpu>),
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
    pub loss: GeneratorLoss,
    pub seed: u64,
    pub step_g: u64,
    pub step_d: u64,
    /// The first generator step (counting a D step as part of the G step it precedes) whose
    /// D or G loss was not finite, where the executor can tell (the CPU; see `Classifier`).
    pub nonfinite_at: Option<u64>,
    g_template: Params<f32>,
    d_template: Params<f32>,
    d_logit: NodeIndex,
    g_out: NodeIndex,
    exec: GanExec,
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
        opt_g: Optimizer,
        opt_d: Optimizer,
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
        let b = batch as u64;
        let exec = match exec {
            Executor::Cpu => GanExec::Cpu(Box::new(GanCpu {
                g_state: OptState::new(&g, &opt_g),
                d_state: OptState::new(&d, &opt_d),
                g: g.clone(),
                d: d.clone(),
                d_stats: LossStats::default(),
                g_stats: LossStats::default(),
                d_logits: vec![],
                last_g_grads: vec![],
                last_d_grads: vec![],
            })),
            Executor::Gpu(gpu) => {
                let mut pb = gpu.builder();
                let mut g_set = pb.params(g_net, true);
                let mut d_set = pb.params(d_net, true);
                let z_d = pb.tensor("z_d", b * noise as u64, Kind::HostInput);
                let z_g = pb.tensor("z_g", b * noise as u64, Kind::HostInput);
                let x = pb.tensor("x_real", b * data as u64, Kind::HostInput);
                let t_real = pb.tensor("t_real", b, Kind::HostInput);
                let t_fake = pb.tensor("t_fake", b, Kind::HostInput);
                let t_g = pb.tensor("t_g", b, Kind::HostInput);
                let d_stats = pb.tensor("d_stats", 4, Kind::Stats);
                let g_stats = pb.tensor("g_stats", 4, Kind::Stats);
                let rng = pb.rng();
                // D step: the reals, then fakes from G (no gradient into G), as two batches
                // (each with its own batchnorm statistics, as PyTorch's DCGAN runs D twice)
                // that are rows 0..B and B..2B of one for dropout; their gradients add up
                // before one update.
                pb.begin_pass("d_step");
                let g_frozen = frozen(&g_set);
                let gf = pb.forward(g_net, &g_frozen, z_d, b, true)?;
                let d_logits = pb.tensor("d_logits", 2 * b, Kind::Activation);
                for (k, (input, target)) in
                    [(x, t_real), (gf.output, t_fake)].into_iter().enumerate()
                {
                    let k = k as u64;
                    let store = if k == 0 {
                        Store::Write
                    } else {
                        Store::Accumulate
                    };
                    pb.set_part(k * b, store);
                    let df = pb.forward(d_net, &d_set, input, b, true)?;
                    pb.copy(df.logit, 0, d_logits, k * b, b);
                    let dz = pb.bce_logits(df.logit, target, b, 1.0 / b as f64, d_stats);
                    pb.backward(d_net, &d_set, &df, df.logit_node, dz, false);
                }
                pb.set_part(0, Store::Write);
                pb.keep(d_logits);
                pb.update(&mut d_set, opt_d, "d");
                let d_pass = pb.end_pass();
                // G step: through D with D frozen.
                pb.begin_pass("g_step");
                let gf = pb.forward(g_net, &g_set, z_g, b, true)?;
                let d_frozen = frozen(&d_set);
                let df = pb.forward(d_net, &d_frozen, gf.output, b, true)?;
                let scale = match loss {
                    GeneratorLoss::NonSaturating => 1.0 / b as f64,
                    GeneratorLoss::Minimax => -1.0 / b as f64,
                };
                let dz = pb.bce_logits(df.logit, t_g, b, scale, g_stats);
                let dg = pb
                    .backward(d_net, &d_frozen, &df, df.logit_node, dz, true)
                    .ok_or_else(|| RunError::Config("no gradient reaches the generator".into()))?;
                pb.backward(g_net, &g_set, &gf, gf.output_node, dg, false);
                pb.update(&mut g_set, opt_g, "g");
                let g_pass = pb.end_pass();
                pb.begin_pass("sample");
                let gs = pb.forward(g_net, &g_frozen, z_g, b, false)?;
                pb.keep(gs.output);
                let sample_out = gs.output;
                let sample_pass = pb.end_pass();
                let hyper_d = pb.hyper("d");
                let hyper_g = pb.hyper("g");
                pb.register(&g_set);
                pb.register(&d_set);
                let prog = GpuProgram::new(*gpu, pb.finish())?;
                upload(&prog, &g_set, &g);
                upload(&prog, &d_set, &d);
                for set in [&g_set, &d_set] {
                    for bnd in &set.bindings {
                        for &s in &bnd.state {
                            prog.write(s, &vec![0.0; prog.program.tensors[s].len as usize]);
                        }
                    }
                }
                prog.write(t_real, &vec![1.0f32; batch]);
                prog.write(t_fake, &vec![0.0f32; batch]);
                let tg = match loss {
                    GeneratorLoss::NonSaturating => vec![1.0f32; batch],
                    GeneratorLoss::Minimax => vec![0.0f32; batch],
                };
                prog.write(t_g, &tg);
                prog.write(d_stats, &[0.0; 4]);
                prog.write(g_stats, &[0.0; 4]);
                GanExec::Gpu(Box::new(GanGpu {
                    prog,
                    g_set,
                    d_set,
                    z_d,
                    z_g,
                    x,
                    d_stats,
                    g_stats,
                    d_logits,
                    hyper_d,
                    hyper_g,
                    rng,
                    sample_out,
                    d_pass,
                    g_pass,
                    sample_pass,
                }))
            }
        };
        Ok(Gan {
            g_net: g_net.clone(),
            d_net: d_net.clone(),
            batch,
            noise,
            data,
            opt_g,
            opt_d,
            loss,
            seed,
            step_g: 0,
            step_d: 0,
            nonfinite_at: None,
            g_template: g,
            d_template: d,
            d_logit,
            g_out,
            exec,
        })
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.exec, GanExec::Gpu(_))
    }

    fn view<'a>(&self, v: &'a [f32], cols: usize) -> Result<ArrayView2<'a, f32>, RunError> {
        ArrayView2::from_shape((v.len() / cols, cols), v)
            .map_err(|e| RunError::Config(e.to_string()))
    }

    /// One discriminator step on `real` (batch x data) and fakes G(`z`).
    pub fn d_step(&mut self, real: &[f32], z: &[f32], lr: f64) -> Result<(), RunError> {
        self.step_d += 1;
        let seed = step_seed(self.seed, 2 * self.step_d);
        let b = self.batch;
        match &mut self.exec {
            GanExec::Gpu(g) => {
                g.prog.write(g.x, real);
                g.prog.write(g.z_d, z);
                g.prog
                    .write(g.hyper_d, &hyper(&self.opt_d, lr, self.step_d));
                g.prog.write_u32(g.rng, &[seed]);
                g.prog.run(g.d_pass);
            }
            GanExec::Cpu(_) => {
                let zv = self.view(z, self.noise)?.to_owned();
                let rv = self.view(real, self.data)?.to_owned();
                let GanExec::Cpu(c) = &mut self.exec else {
                    unreachable!()
                };
                let ga = cpu::forward(&self.g_net, &c.g, zv.view(), true, seed)?;
                c.g.apply_state(&ga);
                let fake = ga.get(self.g_out);
                // D sees the reals and the fakes as two batches (each with its own batchnorm
                // statistics, as PyTorch's DCGAN runs D twice), rows 0..b and b..2b of one
                // batch for dropout; their gradients add up before one update.
                c.d_logits.clear();
                let mut grads: Vec<Option<Vec<f32>>> = vec![];
                for (row0, x, target) in [(0, rv.view(), 1.0), (b, fake.view(), 0.0)] {
                    let da = cpu::forward_rows(&self.d_net, &c.d, x, true, seed, row0)?;
                    c.d.apply_state(&da);
                    let t = Array2::<f32>::from_elem((b, 1), target);
                    let logits = da.get(self.d_logit);
                    let (st, dz) = cpu::bce_logits(logits, &t, 1.0 / b as f64);
                    if !st.loss.is_finite() && self.nonfinite_at.is_none() {
                        self.nonfinite_at = Some(self.step_g + 1);
                    }
                    c.d_stats.add(st);
                    c.d_logits.extend(logits.iter().copied());
                    let (g, _) = cpu::backward_opt(&self.d_net, &c.d, &da, self.d_logit, dz, false);
                    if grads.is_empty() {
                        grads = g;
                    } else {
                        for (sum, part) in grads.iter_mut().zip(g) {
                            if let (Some(sum), Some(part)) = (sum.as_mut(), part) {
                                sum.iter_mut().zip(part).for_each(|(a, v)| *a += v);
                            }
                        }
                    }
                }
                cpu::apply_update(&mut c.d, &grads, &mut c.d_state, &self.opt_d, lr);
                c.last_d_grads = grads;
            }
        }
        Ok(())
    }

    /// One generator step on noise `z` through the frozen discriminator.
    pub fn g_step(&mut self, z: &[f32], lr: f64) -> Result<(), RunError> {
        self.step_g += 1;
        let seed = step_seed(self.seed, 2 * self.step_g + 1);
        let b = self.batch;
        match &mut self.exec {
            GanExec::Gpu(g) => {
                g.prog.write(g.z_g, z);
                g.prog
                    .write(g.hyper_g, &hyper(&self.opt_g, lr, self.step_g));
                g.prog.write_u32(g.rng, &[seed]);
                g.prog.run(g.g_pass);
            }
            GanExec::Cpu(_) => {
                let zv = self.view(z, self.noise)?.to_owned();
                let GanExec::Cpu(c) = &mut self.exec else {
                    unreachable!()
                };
                let ga = cpu::forward(&self.g_net, &c.g, zv.view(), true, seed)?;
                let da = cpu::forward(&self.d_net, &c.d, ga.get(self.g_out).view(), true, seed)?;
                // Both ran in training mode: their batchnorm running statistics move (D's too,
                // though D is not trained in this step, as in PyTorch's DCGAN).
                c.g.apply_state(&ga);
                c.d.apply_state(&da);
                let (target, scale) = match self.loss {
                    GeneratorLoss::NonSaturating => (1.0, 1.0 / b as f64),
                    GeneratorLoss::Minimax => (0.0, -1.0 / b as f64),
                };
                let t = Array2::<f32>::from_elem((b, 1), target);
                let (st, dz) = cpu::bce_logits(da.get(self.d_logit), &t, scale);
                if !st.loss.is_finite() && self.nonfinite_at.is_none() {
                    self.nonfinite_at = Some(self.step_g);
                }
                c.g_stats.add(st);
                let mut d_frozen = c.d.clone();
                d_frozen.trainable.iter_mut().for_each(|t| *t = false);
                let (_, dx) = cpu::backward(&self.d_net, &d_frozen, &da, self.d_logit, dz);
                let (grads, _) = cpu::backward_opt(&self.g_net, &c.g, &ga, self.g_out, dx, false);
                cpu::apply_update(&mut c.g, &grads, &mut c.g_state, &self.opt_g, lr);
                c.last_g_grads = grads;
            }
        }
        Ok(())
    }

    /// Sums since the last call, then resets them.
    pub fn take_stats(&mut self) -> Result<GanStats, RunError> {
        match &mut self.exec {
            GanExec::Gpu(g) => {
                let d = LossStats::from_slice(&g.prog.read(g.d_stats)?);
                let gs = LossStats::from_slice(&g.prog.read(g.g_stats)?);
                g.prog.write(g.d_stats, &[0.0; 4]);
                g.prog.write(g.g_stats, &[0.0; 4]);
                Ok(GanStats { d, g: gs })
            }
            GanExec::Cpu(c) => Ok(GanStats {
                d: std::mem::take(&mut c.d_stats),
                g: std::mem::take(&mut c.g_stats),
            }),
        }
    }

    /// Mean D(x) on the reals and D(G(z)) on the fakes of the last D step.
    pub fn d_means(&self) -> Result<(f64, f64), RunError> {
        let logits = match &self.exec {
            GanExec::Gpu(g) => g.prog.read(g.d_logits)?,
            GanExec::Cpu(c) => c.d_logits.clone(),
        };
        let b = self.batch.min(logits.len() / 2);
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
        match &mut self.exec {
            GanExec::Gpu(g) => {
                let mut padded = z.to_vec();
                padded.resize(self.batch * self.noise, 0.0);
                g.prog.write(g.z_g, &padded);
                g.prog.run(g.sample_pass);
                let mut v = g.prog.read(g.sample_out)?;
                v.truncate(rows * self.data);
                Ok(v)
            }
            GanExec::Cpu(c) => {
                let zv = ArrayView2::from_shape((rows, self.noise), z)
                    .map_err(|e| RunError::Config(e.to_string()))?;
                let a = cpu::forward(&self.g_net, &c.g, zv, false, 0)?;
                Ok(a.get(self.g_out).iter().copied().collect())
            }
        }
    }

    pub fn params(&self) -> Result<(Params<f32>, Params<f32>), RunError> {
        match &self.exec {
            GanExec::Gpu(g) => Ok((
                download(&g.prog, &g.g_set, &self.g_template)?,
                download(&g.prog, &g.d_set, &self.d_template)?,
            )),
            GanExec::Cpu(c) => Ok((c.g.clone(), c.d.clone())),
        }
    }

    pub fn opt_states(&self) -> Result<(OptState<f32>, OptState<f32>), RunError> {
        match &self.exec {
            GanExec::Gpu(g) => Ok((
                download_state(&g.prog, &g.g_set, &self.g_template, self.step_g)?,
                download_state(&g.prog, &g.d_set, &self.d_template, self.step_d)?,
            )),
            GanExec::Cpu(c) => Ok((c.g_state.clone(), c.d_state.clone())),
        }
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
        match &mut self.exec {
            GanExec::Gpu(x) => {
                upload(&x.prog, &x.g_set, g);
                upload(&x.prog, &x.d_set, d);
                upload_state(&x.prog, &x.g_set, g, gs);
                upload_state(&x.prog, &x.d_set, d, ds);
            }
            GanExec::Cpu(c) => {
                c.g = g.clone();
                c.d = d.clone();
                c.g_state = gs.clone();
                c.d_state = ds.clone();
            }
        }
    }

    /// Gradients of the last G and D steps (G's and D's parameters).
    pub fn grads(&self) -> Result<(Grads, Grads), RunError> {
        match &self.exec {
            GanExec::Gpu(g) => Ok((
                read_grads(&g.prog, &g.g_set, &self.g_template)?,
                read_grads(&g.prog, &g.d_set, &self.d_template)?,
            )),
            GanExec::Cpu(c) => Ok((c.last_g_grads.clone(), c.last_d_grads.clone())),
        }
    }

    pub fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize, usize)> {
        match &mut self.exec {
            GanExec::Gpu(g) => Some((&mut g.prog, g.d_pass, g.g_pass)),
            GanExec::Cpu(_) => None,
        }
    }
}
