//! `netc bench`: throughput of the dense kernel and the time of one MLP training step, on the
//! GPU path and on the CPU reference. Timings are measured here, never asserted in tests.

use crate::cpu::Params;
use crate::gpu::{Gpu, GpuProgram};
use crate::rng::Rng;
use crate::session::{Classifier, Executor, Gan, GeneratorLoss, RunError};
use ndarray::Array2;
use netc_compiler::ir::Network;
use netc_compiler::kernels::Gemm;
use netc_compiler::schedule::{Kind, Optimizer};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct GemmResult {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub seconds: f64,
    pub gflops: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The dense forward layout: C = A * B^T.
pub fn dense_forward(m: u64, n: u64, k: u64) -> Gemm {
    Gemm {
        trans_b: true,
        ..Gemm::new(m, n, k)
    }
}

/// Median time of `reps` products `g` (without bias) on the device.
pub fn gemm_gpu(gpu: Gpu, g: Gemm, reps: usize) -> Result<(GemmResult, Gpu), RunError> {
    let Gemm { m, n, k, .. } = g;
    let mut b = gpu.builder();
    let a = b.tensor("a", m * k, Kind::HostInput);
    let w = b.tensor("w", n * k, Kind::HostInput);
    let c = b.tensor("c", m * n, Kind::Stats);
    b.begin_pass("gemm");
    let kernel = b.matmul(Gemm { bias: false, ..g });
    b.emit(kernel, vec![a, w, c], "bench".into());
    b.end_pass();
    let t0 = Instant::now();
    let mut prog = GpuProgram::new(gpu, b.finish())?;
    if std::env::var("NETC_BENCH_VERBOSE").is_ok() {
        eprintln!(
            "pipeline for {m}x{n}x{k} built in {:.2} s",
            t0.elapsed().as_secs_f64()
        );
    }
    let mut rng = Rng::new(1);
    prog.write(
        a,
        &(0..m * k)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect::<Vec<_>>(),
    );
    prog.write(
        w,
        &(0..n * k)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect::<Vec<_>>(),
    );
    let t0 = Instant::now();
    prog.run(0);
    prog.gpu.wait()?;
    if std::env::var("NETC_BENCH_VERBOSE").is_ok() {
        eprintln!(
            "first run (with the driver's shader compile) {:.2} s",
            t0.elapsed().as_secs_f64()
        );
    }
    let mut times = vec![];
    for _ in 0..reps {
        let t0 = Instant::now();
        prog.run(0);
        prog.gpu.wait()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let s = median(times);
    let r = GemmResult {
        m,
        n,
        k,
        seconds: s,
        gflops: 2.0 * (m * n * k) as f64 / s / 1e9,
    };
    Ok((r, prog.gpu))
}

/// The same product with the CPU executor's matrix product.
pub fn gemm_cpu(g: &Gemm, reps: usize) -> GemmResult {
    let (m, n, k) = (g.m, g.n, g.k);
    let (mu, nu, ku) = (m as usize, n as usize, k as usize);
    let mut rng = Rng::new(1);
    // Operands in their stored layout: a transposed operand is stored the other way round.
    let a_shape = if g.trans_a { (ku, mu) } else { (mu, ku) };
    let b_shape = if g.trans_b { (nu, ku) } else { (ku, nu) };
    let a = Array2::from_shape_fn(a_shape, |_| rng.uniform(-1.0, 1.0) as f32);
    let b = Array2::from_shape_fn(b_shape, |_| rng.uniform(-1.0, 1.0) as f32);
    let product = || {
        let a = if g.trans_a { a.t() } else { a.view() };
        let b = if g.trans_b { b.t() } else { b.view() };
        crate::cpu::matmul::matmul(a, b)
    };
    let _ = product();
    let mut times = vec![];
    for _ in 0..reps {
        let t0 = Instant::now();
        let c = product();
        std::hint::black_box(&c);
        times.push(t0.elapsed().as_secs_f64());
    }
    let s = median(times);
    GemmResult {
        m,
        n,
        k,
        seconds: s,
        gflops: 2.0 * (m * n * k) as f64 / s / 1e9,
    }
}

/// Times of one training step (forward, loss, backward, Adam), in seconds.
#[derive(Debug, Clone)]
pub struct StepTimes {
    /// Median of steps each followed by a wait for the device (the latency of one step).
    pub median: f64,
    /// The fastest of those steps: on a shared or throttled machine the median moves with the
    /// load, the fastest much less, so both are printed.
    pub fastest: f64,
    /// Mean of the same number of steps submitted back to back with one wait at the end, as a
    /// training loop runs them (the host prepares the next batch while the device works).
    pub back_to_back: f64,
    /// Steps run in all (warm-up, waited and back to back), for the replay counters.
    pub steps_run: usize,
    pub counters: Option<crate::gpu::Counters>,
    /// Kernel dispatches in one training step's pass, where it is a GPU program.
    pub dispatches: Option<usize>,
}

/// The kernel dispatches of pass `pass` of a GPU program.
pub fn dispatches(prog: &crate::gpu::GpuProgram, pass: usize) -> usize {
    let commands = &prog.program.passes[pass].commands;
    (commands.iter())
        .filter(|c| matches!(c, netc_compiler::schedule::Command::Dispatch { .. }))
        .count()
}

/// Times `steps` training steps at `batch` (after three warm-up steps), see [`StepTimes`].
pub fn train_step(
    net: &Network,
    batch: usize,
    exec: Executor,
    steps: usize,
) -> Result<StepTimes, RunError> {
    crate::memory::ensure_training(net, batch, 2, 4)?;
    let params: Params<f32> = Params::init(net, &mut Rng::new(1));
    let opt = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut s = Classifier::new(net, params, opt, batch, 1, exec)?;
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..batch * s.features)
        .map(|_| rng.next_f64() as f32)
        .collect();
    let mut y = vec![0f32; batch * s.classes];
    for r in 0..batch {
        y[r * s.classes + r % s.classes] = 1.0;
    }
    time_classifier(&mut s, (&x, &y), steps)
}

/// Times `steps` training steps of the classifier session `s` on one batch (`x`, one-hot `y`),
/// with the GPU's counters where it has them.
fn time_classifier(
    s: &mut Classifier,
    (x, y): (&[f32], &[f32]),
    steps: usize,
) -> Result<StepTimes, RunError> {
    let mut step = |s: &mut Classifier| s.train_step(x, y, 1e-3);
    let mut wait = |s: &mut Classifier| -> Result<(), RunError> {
        if let Some((p, _)) = s.gpu_program() {
            p.gpu.wait()?;
        }
        Ok(())
    };
    let mut t = time_steps(s, steps, &mut step, &mut wait)?;
    t.steps_run = s.step as usize;
    t.counters = s.gpu_program().map(|(p, _)| p.counters);
    Ok(t)
}

/// Times a language model's training step at `batch` (see [`StepTimes`]): random windows of
/// ids below `vocab`, each position's next id a random target, a softmax per position.
pub fn language_model_step(
    net: &Network,
    (batch, vocab): (usize, usize),
    exec: Executor,
    steps: usize,
) -> Result<StepTimes, RunError> {
    crate::memory::ensure_training(net, batch, 2, 4)?;
    let params: Params<f32> = Params::init(net, &mut Rng::new(1));
    let rule = netc_compiler::schedule::UpdateRule::from(Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    });
    let mut s = Classifier::per_position(net, params, rule, (batch, 1), exec)?;
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..batch * s.features)
        .map(|_| rng.below(vocab as u64) as f32)
        .collect();
    let classes = s.classes / s.positions.max(1);
    let mut y = vec![0f32; batch * s.classes];
    for (i, row) in y.chunks_mut(classes).enumerate() {
        row[(i * 7 + 3) % vocab.min(classes).max(1)] = 1.0;
    }
    time_classifier(&mut s, (&x, &y), steps)
}

/// Times `steps` steps of a model that declares its loss (`task = minimise`) at `batch` on
/// the CPU executor or the GPU, see [`StepTimes`]: inputs bound to images get random values in [0, 1],
/// labels class 0 and timesteps 0, noise (and a diffusion model's noisy images and timestep
/// embeddings) standard Gaussian values, the same every step.
pub fn minimise_step(
    net: &Network,
    m: &netc_compiler::train_config::MinimiseConfig,
    rule: netc_compiler::schedule::UpdateRule,
    (batch, exec): (usize, Executor),
    steps: usize,
) -> Result<StepTimes, RunError> {
    use netc_compiler::train_config::Field;
    crate::memory::ensure_training(net, batch, 2, 4)?;
    let params: Params<f32> = Params::init(net, &mut Rng::new(1));
    let mut s = crate::session::Minimiser::new(net, params, rule, (batch, 1), &m.loss, exec)?;
    let mut rng = Rng::new(2);
    let inputs: Vec<Vec<f32>> = net
        .inputs
        .iter()
        .zip(&m.inputs)
        .map(|(&i, (_, f))| {
            let n = batch * net.graph[i].shape.iter().product::<u64>() as usize;
            (0..n)
                .map(|_| match f {
                    Field::Images => rng.next_f64() as f32,
                    Field::Labels => 0.0,
                    Field::Noise | Field::Noisy | Field::TimestepEmbedding => rng.normal() as f32,
                    Field::Timestep => 0.0,
                })
                .collect()
        })
        .collect();
    let mut step = |s: &mut crate::session::Minimiser| s.train_step(&inputs, 1e-3);
    let mut wait = |s: &mut crate::session::Minimiser| -> Result<(), RunError> {
        if let Some((p, _)) = s.gpu_program() {
            p.gpu.wait()?;
        }
        Ok(())
    };
    let mut t = time_steps(&mut s, steps, &mut step, &mut wait)?;
    t.steps_run = s.step as usize;
    t.counters = s.gpu_program().map(|(p, _)| p.counters);
    t.dispatches = s.gpu_program().map(|(p, pass)| dispatches(p, pass));
    Ok(t)
}

/// Times `steps` steps of a session (after three warm-up steps): each followed by `wait`,
/// and the same number back to back with one wait at the end.
fn time_steps<S>(
    s: &mut S,
    steps: usize,
    step: &mut dyn FnMut(&mut S) -> Result<(), RunError>,
    wait: &mut dyn FnMut(&mut S) -> Result<(), RunError>,
) -> Result<StepTimes, RunError> {
    let mut times = vec![];
    for i in 0..steps + 3 {
        let t0 = Instant::now();
        step(s)?;
        wait(s)?;
        if i >= 3 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
    let t0 = Instant::now();
    for _ in 0..steps {
        step(s)?;
    }
    wait(s)?;
    let back_to_back = t0.elapsed().as_secs_f64() / steps as f64;
    Ok(StepTimes {
        median: median(times),
        fastest,
        back_to_back,
        steps_run: 0,
        counters: None,
        dispatches: None,
    })
}

/// Times a GAN's training step (one D step on a real and a fake batch, then one G step) at
/// `batch`, see [`StepTimes`]; the real images are random values in [0, 1].
pub fn gan_step(
    (g_net, d_net): (&Network, &Network),
    (opt_g, opt_d): (Optimizer, Optimizer),
    batch: usize,
    exec: Executor,
    steps: usize,
) -> Result<StepTimes, RunError> {
    crate::memory::ensure(
        crate::memory::training_bytes(g_net, batch, 2, 4)
            + crate::memory::training_bytes(d_net, 2 * batch, 2, 4),
        || format!("a GAN step at batch {batch}"),
    )?;
    let mut rng = Rng::new(1);
    let gp: Params<f32> = Params::init(g_net, &mut rng);
    let dp: Params<f32> = Params::init(d_net, &mut rng);
    let mut s = Gan::new(
        g_net,
        d_net,
        gp,
        dp,
        opt_g,
        opt_d,
        GeneratorLoss::NonSaturating,
        batch,
        1,
        exec,
    )?;
    let real: Vec<f32> = (0..batch * s.data).map(|_| rng.next_f64() as f32).collect();
    let z: Vec<f32> = (0..batch * s.noise)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let mut step = |s: &mut Gan| {
        s.d_step(&real, &z, 2e-4)?;
        s.g_step(&z, 2e-4)
    };
    let mut wait = |s: &mut Gan| -> Result<(), RunError> {
        if let Some((p, _, _)) = s.gpu_program() {
            p.gpu.wait()?;
        }
        Ok(())
    };
    let mut t = time_steps(&mut s, steps, &mut step, &mut wait)?;
    t.steps_run = s.step_g as usize;
    t.counters = s.gpu_program().map(|(p, _, _)| p.counters);
    Ok(t)
}

/// One training epoch as `netc train` runs it, without the evaluation.
#[derive(Debug, Clone)]
pub struct EpochTimes {
    pub seconds: f64,
    pub steps: usize,
    pub batch: usize,
    /// Mean training loss over the epoch, so a figure from a run that did not learn shows.
    pub loss: f64,
}

/// Times one epoch over `train` with the given optimizer (with its decay rule and clipping,
/// as the training section gives them) and batch: shuffled batches gathered
/// on the host, one step each, the loss read back once at the end (as `netc train` does
/// between log intervals).
pub fn epoch(
    net: &Network,
    opt: impl Into<netc_compiler::schedule::UpdateRule>,
    lr: f64,
    batch: usize,
    train: &crate::data::Dataset,
    exec: Executor,
    seed: u64,
) -> Result<EpochTimes, RunError> {
    crate::memory::ensure_training(net, batch, 2, 4)?;
    let params: Params<f32> = Params::init(net, &mut Rng::new(seed));
    let mut s = Classifier::new(net, params, opt, batch, seed, exec)?;
    let steps = train.n / batch.max(1);
    let order = crate::data::Shuffler::new(train.n, seed).order(0);
    let (mut xb, mut lb) = (vec![], vec![]);
    let t0 = Instant::now();
    for b in 0..steps {
        train.gather(&order[b * batch..(b + 1) * batch], &mut xb, &mut lb);
        s.train_step(&xb, &crate::train::onehot(&lb, s.classes), lr)?;
    }
    let st = s.take_stats()?;
    Ok(EpochTimes {
        seconds: t0.elapsed().as_secs_f64(),
        steps,
        batch,
        loss: st.loss / st.rows.max(1.0),
    })
}

/// Images per second of an image folder's loader alone (decode, resize, crop, flip, colour
/// noise, normalise, on `threads` background threads): `batches` batches of `batch`, in the
/// order of epoch 0, none consumed by a training step.
pub fn loader(
    set: std::sync::Arc<crate::data::folder::FolderSet>,
    batch: usize,
    batches: usize,
    threads: usize,
) -> Result<(usize, f64), crate::data::DataError> {
    let n = set.items.len();
    let order = crate::data::Shuffler::new(n, set.seed).order(0);
    let plan: Vec<Vec<usize>> = (0..batches)
        .map(|b| (0..batch).map(|k| order[(b * batch + k) % n]).collect())
        .collect();
    let t = Instant::now();
    let mut images = 0;
    for b in crate::data::loader::Loader::start(set, 0, plan, threads, 2) {
        images += b?.labels.len();
    }
    Ok((images, t.elapsed().as_secs_f64()))
}

/// A data-parallel training step's time on this rank, split into its parts (see
/// [`data_parallel_step`]).
#[derive(Debug, Clone, Copy)]
pub struct SplitStepTimes {
    /// Mean seconds per step, the reduction included.
    pub step: f64,
    /// Mean seconds per step the step waited for the gradient all-reduce: the transfer and
    /// the wait for the slowest rank (0 on one process; with the overlap, what was left of it
    /// after the backward pass).
    pub communication: f64,
    /// With the overlap, mean seconds per step the communication thread spent in all-reduces
    /// (most of them hidden behind the backward pass).
    pub overlapped: f64,
    /// Gradient bytes each rank sent into the all-reduce per step (what one process would
    /// reduce on N; counted from the trainable parameters when there is no reduction).
    pub bytes: u64,
    pub steps: usize,
}

impl SplitStepTimes {
    /// The forward, loss, backward and update: the step less the wait for its reduction.
    pub fn compute(&self) -> f64 {
        self.step - self.communication
    }
}

/// Times `steps` steps (after one warm-up step) of a classifier's data-parallel training step
/// at global batch `batch` on the processes of `dist`, as `mpirun -n N netc train` runs it:
/// this rank's rows, the gradients summed over the ranks, the update. Every rank must call it
/// with the same arguments (the reductions are collective). One process (`Dist::solo`) gives
/// the single-process step, its communication 0.
pub fn data_parallel_step(
    net: &Network,
    batch: usize,
    (exec, dist): (Executor, &crate::dist::Dist),
    steps: usize,
) -> Result<SplitStepTimes, RunError> {
    let shard =
        crate::dist::Shard::new(batch, 1, dist).map_err(|e| RunError::Config(e.to_string()))?;
    crate::memory::ensure_training(net, shard.rows, 2, 4)?;
    let params: Params<f32> = Params::init(net, &mut Rng::new(1));
    let bytes = 4 * params
        .values
        .iter()
        .zip(&params.trainable)
        .filter(|(_, &t)| t)
        .map(|(v, _)| v.len() as u64)
        .sum::<u64>();
    let opt = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let rows = shard.rows;
    let mut s = Classifier::new(net, params, opt, batch, 1, exec)?;
    s.set_shard(shard)?;
    // The global batch's rows drawn as one process draws them; this rank keeps its own.
    let mut rng = Rng::new(2);
    let all: Vec<f32> = (0..batch * s.features)
        .map(|_| rng.next_f64() as f32)
        .collect();
    let r0 = dist.rows(batch).start;
    let x = &all[r0 * s.features..(r0 + rows) * s.features];
    let mut y = vec![0f32; rows * s.classes];
    for r in 0..rows {
        y[r * s.classes + (r0 + r) % s.classes] = 1.0;
    }
    let run = |s: &mut Classifier| -> Result<(), RunError> {
        s.train_step(x, &y, 1e-3)?;
        if let Some((p, _)) = s.gpu_program() {
            p.gpu.wait()?;
        }
        Ok(())
    };
    run(&mut s)?;
    let steps = steps.max(1);
    let before = dist.traffic();
    let t0 = Instant::now();
    for _ in 0..steps {
        run(&mut s)?;
    }
    let step = t0.elapsed().as_secs_f64() / steps as f64;
    let after = dist.traffic();
    let reductions = after.reductions - before.reductions;
    Ok(SplitStepTimes {
        step,
        communication: (after.seconds - before.seconds) / steps as f64,
        overlapped: (after.overlapped - before.overlapped) / steps as f64,
        bytes: (after.bytes - before.bytes)
            .checked_div(reductions)
            .unwrap_or(bytes),
        steps,
    })
}
