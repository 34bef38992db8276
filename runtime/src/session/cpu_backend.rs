//! The sessions on the CPU reference: forward, loss, backward and update on the host, with
//! the parameters, optimizer state and statistics kept here.

use super::backend::{ClassifierBackend, ClassifierSpec, GanBackend, GanSpec, Step};
use super::{GanStats, GeneratorLoss, Grads, RunError};
use crate::cpu::{self, Activations, LossStats, OptState, Params};
use crate::gpu::GpuProgram;
use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
use netc_compiler::schedule::Optimizer;

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

/// Softmax cross-entropy over the last axis of each of `positions` rows per example: the
/// logits `z` (examples x classes) and targets `y` read as (examples * positions) rows, the
/// gradient given back as `z` is shaped.
fn xent_rows(
    z: &Array2<f32>,
    y: Array2<f32>,
    positions: usize,
    scale: f64,
) -> Result<(LossStats, Array2<f32>), RunError> {
    if positions == 1 {
        return Ok(cpu::softmax_xent(z, &y, scale));
    }
    let (rows, classes) = z.dim();
    let shape = (rows * positions, classes / positions);
    let bad = |e: ndarray::ShapeError| RunError::Config(e.to_string());
    let zr = z.to_shape(shape).map_err(bad)?.into_owned();
    let yr = y.into_shape_with_order(shape).map_err(bad)?;
    let (st, dz) = cpu::softmax_xent(&zr, &yr, scale);
    Ok((st, dz.into_shape_with_order((rows, classes)).map_err(bad)?))
}

/// Records `mark` as the step whose update first left a NaN or infinite parameter in `p`:
/// a scan after every update (the update itself reads every value), so a run stops at that
/// step, not at its next checkpoint.
fn watch_params(p: &Params<f32>, bad_at: &mut Option<u64>, mark: u64) {
    if bad_at.is_none() && p.values.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
        *bad_at = Some(mark);
    }
}

/// `v` as rows of `cols` values.
fn view(v: &[f32], cols: usize) -> Result<ArrayView2<'_, f32>, RunError> {
    ArrayView2::from_shape((v.len() / cols, cols), v).map_err(|e| RunError::Config(e.to_string()))
}

pub(super) struct ClassifierCpu {
    params: Params<f32>,
    state: OptState<f32>,
    stats: LossStats,
    eval_stats: LossStats,
    last_grads: Vec<Option<Vec<f32>>>,
    /// The step whose update first left a non-finite parameter.
    bad_at: Option<u64>,
}

impl ClassifierCpu {
    pub fn new(
        net: &Network,
        params: Params<f32>,
        opt: &Optimizer,
        features: usize,
    ) -> Result<ClassifierCpu, RunError> {
        // Check once that the reference supports every op.
        cpu::forward(
            net,
            &params,
            Array2::<f32>::zeros((1, features)).view(),
            false,
            0,
        )?;
        let state = OptState::new(&params, opt);
        Ok(ClassifierCpu {
            params,
            state,
            stats: LossStats::default(),
            eval_stats: LossStats::default(),
            last_grads: vec![],
            bad_at: None,
        })
    }
}

impl ClassifierBackend for ClassifierCpu {
    fn train_step(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        mut step: Step,
    ) -> Result<(), RunError> {
        // This process's rows, in micro-batches (one part of the whole batch but in a
        // data-parallel run or with --micro-batches): each part's loss scaled by 1/batch, so
        // the gradients summed over the parts, then over the processes, are the batch's.
        let sh = s.shard;
        let per = sh.part_rows();
        let (mut grads, mut st) = (vec![], LossStats::default());
        let mut state = None;
        if x.len() != sh.rows * s.features || onehot.len() != sh.rows * s.classes {
            return Err(RunError::Config(format!(
                "a training batch of {} inputs and {} targets for {} rows of {} features and {} classes",
                x.len(),
                onehot.len(),
                sh.rows,
                s.features,
                s.classes
            )));
        }
        for k in 0..sh.parts {
            let xs = &x[k * per * s.features..(k + 1) * per * s.features];
            let ys = &onehot[k * per * s.classes..(k + 1) * per * s.classes];
            let (xv, yv) = batch_views(xs, ys, per, s.features, s.classes)?;
            let row0 = sh.row0 + k * per;
            let acts = cpu::forward_rows(s.net, &self.params, xv, true, step.seed, row0)?;
            let scale = 1.0 / (s.batch * s.positions) as f64;
            let (part, dz) = xent_rows(acts.get(s.logit), yv, s.positions, scale)?;
            st.add(part);
            if sh.parts == 1 {
                // One part: its gradients are reduced over the ranks as the backward pass
                // finishes them (see `Dist::backward_summed`).
                let p = &self.params;
                grads = sh.dist.backward_summed(&p.trainable, |progress| {
                    let from = (s.logit, dz);
                    cpu::backward_observed(s.net, p, &acts, from, false, progress).0
                });
            } else {
                let (g, _) = cpu::backward_opt(s.net, &self.params, &acts, s.logit, dz, false);
                add_grads(&mut grads, g);
            }
            state = Some(acts);
        }
        if sh.parts > 1 {
            sh.dist.sum_grads(&mut grads);
        }
        sh.dist.sum_stats(&mut st);
        step.watch(st.loss);
        self.stats.add(st);
        cpu::apply_rule(&mut self.params, &grads, &mut self.state, s.rule, step.lr);
        if let Some(acts) = &state {
            // Batchnorm's running statistics (a split batch has none: see `split_allowed`).
            self.params.apply_state(acts);
        }
        watch_params(&self.params, &mut self.bad_at, step.mark);
        self.last_grads = grads;
        Ok(())
    }

    fn take_stats(&mut self) -> Result<LossStats, RunError> {
        Ok(std::mem::take(&mut self.stats))
    }

    fn nonfinite_params_at(&mut self, _read_device: bool) -> Result<Option<u64>, RunError> {
        Ok(self.bad_at)
    }

    fn eval_batch(
        &mut self,
        s: &ClassifierSpec,
        x: &[f32],
        onehot: &[f32],
        rows: usize,
    ) -> Result<(), RunError> {
        let (xv, yv) = batch_views(x, onehot, rows, s.features, s.classes)?;
        let acts: Activations<f32> = cpu::forward(s.net, &self.params, xv, false, 0)?;
        let (st, _) = xent_rows(acts.get(s.logit), yv, s.positions, 1.0)?;
        self.eval_stats.add(st);
        Ok(())
    }

    fn take_eval_stats(&mut self) -> Result<LossStats, RunError> {
        Ok(std::mem::take(&mut self.eval_stats))
    }

    fn logits(&mut self, s: &ClassifierSpec, x: &[f32], rows: usize) -> Result<Vec<f32>, RunError> {
        let xv = ArrayView2::from_shape((rows, s.features), x)
            .map_err(|e| RunError::Config(e.to_string()))?;
        let acts = cpu::forward(s.net, &self.params, xv, false, 0)?;
        Ok(acts.get(s.logit).iter().copied().collect())
    }

    fn params(&self) -> Result<Params<f32>, RunError> {
        Ok(self.params.clone())
    }

    fn grads(&self) -> Result<Grads, RunError> {
        Ok(self.last_grads.clone())
    }

    fn opt_state(&self, _step: u64) -> Result<OptState<f32>, RunError> {
        Ok(self.state.clone())
    }

    fn restore(&mut self, params: &Params<f32>, state: &OptState<f32>) {
        self.params = params.clone();
        self.state = state.clone();
    }

    fn is_gpu(&self) -> bool {
        false
    }

    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize)> {
        None
    }
}

pub(super) struct GanCpu {
    g: Params<f32>,
    d: Params<f32>,
    g_state: OptState<f32>,
    d_state: OptState<f32>,
    d_stats: LossStats,
    g_stats: LossStats,
    d_logits: Vec<f32>,
    last_g_grads: Vec<Option<Vec<f32>>>,
    last_d_grads: Vec<Option<Vec<f32>>>,
    /// The step whose update first left a non-finite parameter in either network.
    bad_at: Option<u64>,
}

impl GanCpu {
    pub fn new(g: Params<f32>, d: Params<f32>, opt_g: &Optimizer, opt_d: &Optimizer) -> GanCpu {
        GanCpu {
            g_state: OptState::new(&g, opt_g),
            d_state: OptState::new(&d, opt_d),
            g,
            d,
            d_stats: LossStats::default(),
            g_stats: LossStats::default(),
            d_logits: vec![],
            last_g_grads: vec![],
            last_d_grads: vec![],
            bad_at: None,
        }
    }
}

/// Adds `g` into the running sum `grads` (the first one becomes the sum).
pub(super) fn add_grads(grads: &mut Grads, g: Grads) {
    if grads.is_empty() {
        *grads = g;
    } else {
        for (sum, part) in grads.iter_mut().zip(g) {
            if let (Some(sum), Some(part)) = (sum.as_mut(), part) {
                sum.iter_mut().zip(part).for_each(|(a, v)| *a += v);
            }
        }
    }
}

impl GanBackend for GanCpu {
    fn d_step(
        &mut self,
        s: &GanSpec,
        real: &[f32],
        z: &[f32],
        mut step: Step,
    ) -> Result<(), RunError> {
        // This process's rows of the batch (all of them but in a data-parallel run), in its
        // micro-batches, their losses scaled by 1/batch so the gradients summed over the
        // parts and the processes are the batch's.
        let (b, r0, per) = (s.batch, s.shard.row0, s.shard.part_rows());
        let seed = step.seed;
        let (mut reals, mut fakes) = (vec![], vec![]);
        let mut grads: Vec<Option<Vec<f32>>> = vec![];
        let mut st = LossStats::default();
        for k in 0..s.shard.parts {
            let p0 = r0 + k * per;
            let zv = view(&z[k * per * s.noise..(k + 1) * per * s.noise], s.noise)?;
            let rv = view(&real[k * per * s.data..(k + 1) * per * s.data], s.data)?;
            let ga = cpu::forward_rows(s.g_net, &self.g, zv, true, seed, p0)?;
            self.g.apply_state(&ga);
            let fake = ga.get(s.g_out);
            // D sees the reals and the fakes as two batches (each with its own batchnorm
            // statistics, as PyTorch's DCGAN runs D twice), rows 0..b and b..2b of one
            // batch for dropout; their gradients add up, a part's before it joins the sum
            // (so K parts sum as K processes do).
            let mut part_grads = vec![];
            for (row0, x, is_real) in [(p0, rv, true), (b + p0, fake.view(), false)] {
                let da = cpu::forward_rows(s.d_net, &self.d, x, true, seed, row0)?;
                self.d.apply_state(&da);
                let t = Array2::<f32>::from_elem((per, 1), if is_real { 1.0 } else { 0.0 });
                let logits = da.get(s.d_logit);
                let (part, dz) = cpu::bce_logits(logits, &t, 1.0 / b as f64);
                st.add(part);
                let out = if is_real { &mut reals } else { &mut fakes };
                out.extend(logits.iter().copied());
                let (g, _) = cpu::backward_opt(s.d_net, &self.d, &da, s.d_logit, dz, false);
                add_grads(&mut part_grads, g);
            }
            add_grads(&mut grads, part_grads);
        }
        self.d_logits = reals;
        self.d_logits.extend(fakes);
        s.shard.dist.sum_grads(&mut grads);
        s.shard.dist.sum_stats(&mut st);
        step.watch(st.loss);
        self.d_stats.add(st);
        cpu::apply_rule(&mut self.d, &grads, &mut self.d_state, s.rule_d, step.lr);
        watch_params(&self.d, &mut self.bad_at, step.mark);
        self.last_d_grads = grads;
        Ok(())
    }

    fn g_step(&mut self, s: &GanSpec, z: &[f32], mut step: Step) -> Result<(), RunError> {
        let (b, r0, per) = (s.batch, s.shard.row0, s.shard.part_rows());
        let seed = step.seed;
        let (target, scale) = match s.loss {
            GeneratorLoss::NonSaturating => (1.0, 1.0 / b as f64),
            GeneratorLoss::Minimax => (0.0, -1.0 / b as f64),
        };
        let (mut grads, mut st) = (vec![], LossStats::default());
        for k in 0..s.shard.parts {
            let p0 = r0 + k * per;
            let zv = view(&z[k * per * s.noise..(k + 1) * per * s.noise], s.noise)?;
            let ga = cpu::forward_rows(s.g_net, &self.g, zv, true, seed, p0)?;
            let da = cpu::forward_rows(s.d_net, &self.d, ga.get(s.g_out).view(), true, seed, p0)?;
            // Both ran in training mode: their batchnorm running statistics move (D's too,
            // though D is not trained in this step, as in PyTorch's DCGAN).
            self.g.apply_state(&ga);
            self.d.apply_state(&da);
            let t = Array2::<f32>::from_elem((per, 1), target);
            let (part, dz) = cpu::bce_logits(da.get(s.d_logit), &t, scale);
            st.add(part);
            let mut d_frozen = self.d.clone();
            d_frozen.trainable.iter_mut().for_each(|t| *t = false);
            let (_, dx) = cpu::backward(s.d_net, &d_frozen, &da, s.d_logit, dz);
            let (g, _) = cpu::backward_opt(s.g_net, &self.g, &ga, s.g_out, dx, false);
            add_grads(&mut grads, g);
        }
        s.shard.dist.sum_stats(&mut st);
        step.watch(st.loss);
        self.g_stats.add(st);
        s.shard.dist.sum_grads(&mut grads);
        cpu::apply_rule(&mut self.g, &grads, &mut self.g_state, s.rule_g, step.lr);
        watch_params(&self.g, &mut self.bad_at, step.mark);
        self.last_g_grads = grads;
        Ok(())
    }

    fn nonfinite_params_at(&mut self, _read_device: bool) -> Result<Option<u64>, RunError> {
        Ok(self.bad_at)
    }

    fn take_stats(&mut self) -> Result<GanStats, RunError> {
        Ok(GanStats {
            d: std::mem::take(&mut self.d_stats),
            g: std::mem::take(&mut self.g_stats),
        })
    }

    fn d_logits(&self) -> Result<Vec<f32>, RunError> {
        Ok(self.d_logits.clone())
    }

    fn sample(&mut self, s: &GanSpec, z: &[f32], rows: usize) -> Result<Vec<f32>, RunError> {
        let zv = ArrayView2::from_shape((rows, s.noise), z)
            .map_err(|e| RunError::Config(e.to_string()))?;
        let a = cpu::forward(s.g_net, &self.g, zv, false, 0)?;
        Ok(a.get(s.g_out).iter().copied().collect())
    }

    fn params(&self) -> Result<(Params<f32>, Params<f32>), RunError> {
        Ok((self.g.clone(), self.d.clone()))
    }

    fn opt_states(&self, _: u64, _: u64) -> Result<(OptState<f32>, OptState<f32>), RunError> {
        Ok((self.g_state.clone(), self.d_state.clone()))
    }

    fn restore(
        &mut self,
        g: &Params<f32>,
        d: &Params<f32>,
        gs: &OptState<f32>,
        ds: &OptState<f32>,
    ) {
        self.g = g.clone();
        self.d = d.clone();
        self.g_state = gs.clone();
        self.d_state = ds.clone();
    }

    fn grads(&self) -> Result<(Grads, Grads), RunError> {
        Ok((self.last_g_grads.clone(), self.last_d_grads.clone()))
    }

    fn is_gpu(&self) -> bool {
        false
    }

    fn gpu_program(&mut self) -> Option<(&mut GpuProgram, usize, usize)> {
        None
    }
}
