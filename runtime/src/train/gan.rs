//! Training a GAN: per generator step, `k` discriminator steps on shuffled real batches and
//! fresh noise; a row and a line per log interval, sample grids (scored by the built-in
//! LeNet where the images are its size) per sample interval, and checkpoints counted in
//! generator steps. The loop itself is [`super::skeleton`].

use super::generate::{draw_noise, generate, image_shape};
use super::progress::{bar, figure};
use super::run_folder::{Metrics, PanelSpec};
use super::skeleton::{drive, Losses, Run, StopCheck, Task};
use super::split;
use super::{nonfinite_tensor, nothing_left, start_weights, Options, Summary, TrainError};
use crate::cpu::Params;
use crate::data::{Dataset, Shuffler};
use crate::io::run_checkpoint::{
    check_optimizer, load_params, load_weights_for_transfer, meta_u64, model_sha256, save_params,
    slots,
};
use crate::io::{self, Checkpoint};
use crate::rng::Rng;
use crate::score::{Outputs, Scorer};
use crate::session::{Executor, Gan, GeneratorLoss};
use indicatif::ProgressBar;
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{GanConfig, Length, Task as TaskConfig, TrainConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const GAN_PLOT: &[PanelSpec] = &[
    (
        "losses",
        "binary cross-entropy",
        &[("D", "d_loss"), ("G", "g_loss")],
        1.0,
    ),
    (
        "discriminator",
        "mean probability of real",
        &[("D(x)", "d_x"), ("D(G(z))", "d_g_z")],
        1.0,
    ),
    (
        "sample quality (built-in LeNet)",
        "inception score",
        &[("IS", "inception_score")],
        1.0,
    ),
    (
        "distance to real digits",
        "Frechet distance",
        &[("FID", "frechet_distance")],
        1.0,
    ),
];

/// Samples a GAN run scores at each sample interval (and real images it compares them with).
const SCORE_SAMPLES: usize = 1000;

/// A GAN run: the session, where it is in the real data and the noise, and what it draws.
struct GanTask<'a> {
    model: &'a Model,
    gn: &'a Network,
    dn: &'a Network,
    cfg: &'a TrainConfig,
    g: &'a GanConfig,
    train: &'a Dataset,
    /// What the checkpoint records of the data.
    data_meta: &'a BTreeMap<String, String>,
    s: Gan,
    batch: usize,
    total: u64,
    /// Real-batch position: an index into the shuffled order of the current data epoch.
    shuffler: Shuffler,
    per_epoch: usize,
    d_batches: u64,
    noise_rng: Rng,
    samples: Samples,
    xb: Vec<f32>,
    lb: Vec<u32>,
    /// The log interval's clock and steps, for its time per 100 steps.
    window_t: Instant,
    window_steps: u64,
}

/// What a GAN run draws: grids of the same noise's samples, and their scores.
struct Samples {
    /// Where the grids go; None on the ranks of a data-parallel run but rank 0.
    dir: Option<PathBuf>,
    /// The noise of the sample grids, the same at every interval.
    fixed: Vec<f32>,
    grid: io::Grid,
    /// The scoring classifier and its outputs on real images, where it fits the samples.
    scoring: Option<(Scorer, Outputs)>,
}

/// Trains generator `gn` against discriminator `dn` on `train`, from the checkpoint `resume`
/// if given.
#[allow(clippy::too_many_arguments)]
pub(super) fn gan(
    model: &Model,
    gn: &Network,
    dn: &Network,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    (train, data_meta): (&Dataset, &BTreeMap<String, String>),
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let TaskConfig::Gan(g) = &cfg.task else {
        return Err(TrainError::Setup("not a GAN".into()));
    };
    let batch = cfg.batch as usize;
    if train.n < batch {
        return Err(TrainError::Setup(format!(
            "the batch ({batch}) is larger than the training set ({} images)",
            train.n
        )));
    }
    let total = match cfg.length {
        Length::Steps(s) => s,
        Length::Epochs(e) => {
            e.checked_mul((train.n / batch) as u64).ok_or_else(|| {
                TrainError::Setup(format!("{e} epochs is too many steps to count"))
            })? / g.k
        }
    };
    let (need_g, need_d) = (
        crate::memory::training_bytes(gn, batch, slots(&g.g_optimizer.kind), 4),
        crate::memory::training_bytes(dn, 2 * batch, slots(&g.d_optimizer.kind), 4),
    );
    crate::memory::ensure(need_g + need_d, || {
        format!(
            "training GAN `{}` / `{}` at batch {batch}",
            gn.name, dn.name
        )
    })?;
    let (mut s, init) = session((gn, dn), cfg, g, opts, exec, train)?;
    let mut d_batches: u64 = 0;
    let mut noise_rng = Rng::new(cfg.seed ^ 0x5EED);
    if let Some(ck) = &resume {
        (d_batches, noise_rng) = resume_gan(&mut s, ck, (gn, dn), &init, g, total, log)?;
    }
    let metrics = Metrics::open_run(opts, resume.as_ref().map(|_| s.step_g))?;
    s.set_shard(split::shard(opts, batch)?)?;
    if opts.dist.is_split() {
        let ((mut gp, mut dp), (mut gs, mut ds)) = (s.params()?, s.opt_states()?);
        split::share_start(opts, &mut gp, &mut gs)?;
        split::share_start(opts, &mut dp, &mut ds)?;
        s.restore(&gp, &dp, &gs, &ds);
    }
    let dir = opts.dist.is_root().then(|| opts.out.join("samples"));
    let samples = prepare_samples(dir, cfg, g, (&s, gn), train)?;
    let mut task = GanTask {
        model,
        gn,
        dn,
        cfg,
        g,
        train,
        data_meta,
        s,
        batch,
        total,
        shuffler: Shuffler::new(train.n, cfg.seed),
        per_epoch: train.n / batch,
        d_batches,
        noise_rng,
        samples,
        xb: vec![],
        lb: vec![],
        window_t: Instant::now(),
        window_steps: 0,
    };
    let pb = task.interval_bar(task.s.step_g, opts.progress);
    let run = Run::start(opts, log, (metrics, pb), task.s.step_g, resume.is_some());
    task.window_t = Instant::now();
    drive(&mut task, run)
}

/// The generator's and the discriminator's weights.
type Weights = (Params<f32>, Params<f32>);

/// The session, from the initialisers (or `--weights`), and the initial weights of each
/// network (the shapes a resumed checkpoint must fit).
fn session(
    (gn, dn): (&Network, &Network),
    cfg: &TrainConfig,
    g: &GanConfig,
    opts: &Options,
    exec: Executor,
    train: &Dataset,
) -> Result<(Gan, Weights), TrainError> {
    let mut rng = Rng::new(cfg.seed);
    let mut gp: Params<f32> = Params::init(gn, &mut rng);
    let mut dp: Params<f32> = Params::init(dn, &mut rng);
    if let Some(w) = &start_weights(opts)? {
        gp = load_weights_for_transfer(w, gn, &gp)?;
        dp = load_weights_for_transfer(w, dn, &dp)?;
    }
    let loss = if g.non_saturating {
        GeneratorLoss::NonSaturating
    } else {
        GeneratorLoss::Minimax
    };
    let s = Gan::new(
        gn,
        dn,
        gp.clone(),
        dp.clone(),
        cfg.update_rule(&g.g_optimizer),
        cfg.update_rule(&g.d_optimizer),
        loss,
        cfg.batch as usize,
        cfg.seed,
        exec,
    )?;
    if s.data != train.image_len() {
        return Err(TrainError::Setup(format!(
            "the generator makes {} values per sample but the images have {}",
            s.data,
            train.image_len()
        )));
    }
    Ok((s, (gp, dp)))
}

/// Continues from the checkpoint: weights, optimizer states, and the real-batch position and
/// noise generator it returns.
fn resume_gan(
    s: &mut Gan,
    ck: &Checkpoint,
    (gn, dn): (&Network, &Network),
    (gp, dp): &Weights,
    g: &GanConfig,
    total: u64,
    log: &mut dyn FnMut(&str),
) -> Result<(u64, Rng), TrainError> {
    check_optimizer(
        ck,
        format!("{:?} / {:?}", g.g_optimizer.kind, g.d_optimizer.kind),
    )?;
    let (g1, mut gs) = load_params(ck, gn, gp, slots(&g.g_optimizer.kind))?;
    let (d1, mut ds) = load_params(ck, dn, dp, slots(&g.d_optimizer.kind))?;
    gs.step = meta_u64(ck, "g_step")?;
    ds.step = meta_u64(ck, "d_step")?;
    s.restore(&g1, &d1, &gs, &ds);
    let d_batches = meta_u64(ck, "d_batches")?;
    let noise_rng = ck
        .metadata
        .get("noise_rng")
        .and_then(|v| Rng::from_state_string(v))
        .ok_or_else(|| TrainError::Setup("checkpoint lacks the noise generator state".into()))?;
    log(&format!("resumed at generator step {}", s.step_g));
    nothing_left(s.step_g, total, "generator ")?;
    Ok((d_batches, noise_rng))
}

/// The samples folder, the grids' noise and shape, and the scorer with its outputs on real
/// images.
fn prepare_samples(
    dir: Option<PathBuf>,
    cfg: &TrainConfig,
    g: &GanConfig,
    (s, gn): (&Gan, &Network),
    train: &Dataset,
) -> Result<Samples, TrainError> {
    if let Some(dir) = &dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    }
    let fixed = draw_noise(&mut Rng::new(cfg.seed ^ 0xF1_4ED), g.noise, 64 * s.noise);
    // Grids show what the data set holds (its images are channels x rows x cols).
    let (c, h, w) = if s.data == train.image_len() {
        (train.channels, train.rows, train.cols)
    } else {
        image_shape(gn)
    };
    // Sample quality at each sample interval, by the built-in digit classifier, when the
    // generator makes images of its input's size (28x28): against the features of the first
    // training images, mapped back to [0, 1] as the classifier was trained.
    let scoring = match Scorer::builtin() {
        Ok(sc) if sc.image_len == s.data => {
            let n = SCORE_SAMPLES.min(train.n);
            let (lo, span) = (cfg.range.0 as f32, (cfg.range.1 - cfg.range.0) as f32);
            let real: Vec<f32> = train.images[..n * s.data]
                .iter()
                .map(|&v| (v - lo) / span)
                .collect();
            let out = sc
                .outputs(&real)
                .map_err(|e| TrainError::Setup(format!("scoring the real images: {e}")))?;
            Some((sc, out))
        }
        _ => None,
    };
    // Samples drawn in the data's range: a tanh generator's [-1, 1] as black to white.
    let grid = io::Grid {
        range: (cfg.range.0 as f32, cfg.range.1 as f32),
        ..io::Grid::of((cfg.batch as usize).min(64), (c, h, w))
    };
    Ok(Samples {
        dir,
        fixed,
        grid,
        scoring,
    })
}

impl GanTask<'_> {
    /// A bar per log interval (Keras's per-epoch bar for a run counted in steps), its summary
    /// line printed when it ends.
    fn interval_bar(&self, from: u64, progress: bool) -> ProgressBar {
        let (every, total) = (self.cfg.log_every, self.total);
        let to = ((from / every + 1) * every).min(total);
        bar(
            to - from,
            progress,
            format!("steps {}-{to}/{total}", from + 1),
        )
    }

    /// The grid of the fixed noise's samples at this step, in samples/.
    fn write_samples(&mut self) -> Result<(), TrainError> {
        let Some(dir) = self.samples.dir.clone() else {
            return Ok(());
        };
        let step = self.s.step_g;
        let imgs = self
            .s
            .sample(&self.samples.fixed[..self.batch.min(64) * self.s.noise])?;
        io::write_image_grid(
            &dir.join(format!("step_{step:06}.png")),
            &imgs,
            &self.samples.grid,
        )?;
        Ok(())
    }

    /// Scores samples of the generator by the built-in LeNet: a `score` row and a line.
    fn score(&self, run: &mut Run) -> Result<(), TrainError> {
        // Rank 0 alone logs the scores.
        let (Some((scorer, real)), true) = (&self.samples.scoring, run.opts.dist.is_root()) else {
            return Ok(());
        };
        let (cfg, g) = (self.cfg, self.g);
        let (gp, _) = self.s.params()?;
        let imgs = generate(self.gn, &gp, (g.noise, cfg.range), SCORE_SAMPLES, cfg.seed)?;
        let sc = scorer
            .score(&imgs, Some(real))
            .map_err(|e| TrainError::Setup(format!("scoring the samples: {e}")))?;
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), self.s.step_g as f64);
        m.insert("inception_score".to_string(), sc.inception_score);
        m.insert("confident".to_string(), sc.confident);
        if let Some(f) = sc.fid {
            m.insert("frechet_distance".to_string(), f);
        }
        run.metrics.log("score", &m)?;
        (run.log)(&format!(
            "step {}: inception score {:.3}, confident {:.1}%, Frechet distance {:.3} ({SCORE_SAMPLES} samples, the built-in LeNet)",
            self.s.step_g,
            sc.inception_score,
            100.0 * sc.confident,
            sc.fid.unwrap_or(f64::NAN)
        ));
        Ok(())
    }
}

/// A log interval's figures: D loss, G loss, D(x), D(G(z)).
type GanReading = (f64, f64, f64, f64);

impl Task for GanTask<'_> {
    type Reading = GanReading;
    const PLOT: &'static [PanelSpec] = GAN_PLOT;
    const STOP: StopCheck = StopCheck::AtStep;

    fn step_count(&self) -> u64 {
        self.s.step_g
    }

    fn done(&self) -> bool {
        self.s.step_g >= self.total
    }

    /// k discriminator steps, then one generator step. A stop asked for during the D steps
    /// takes effect after the current one (false: no G step), so a large `k` cannot hold a
    /// signal off for k steps.
    fn step(&mut self, run: &mut Run) -> Result<bool, TrainError> {
        let (g, batch) = (self.g, self.batch);
        for i in 0..g.k {
            // Polled after each D step but the last (the G step follows it, then `drive`
            // polls): with k = 1 a stop lands where it always did.
            if i > 0 && run.stop_asked() {
                return Ok(false);
            }
            let epoch = self.d_batches / self.per_epoch as u64;
            let b = (self.d_batches % self.per_epoch as u64) as usize;
            let order = self.shuffler.order(epoch);
            // This process's rows of the batch and of its noise (all of them but in a
            // data-parallel run): the noise is drawn whole, so its order is one process's.
            let rows = run.opts.dist.rows(batch);
            self.train.gather(
                &order[b * batch + rows.start..b * batch + rows.end],
                &mut self.xb,
                &mut self.lb,
            );
            let z = draw_noise(&mut self.noise_rng, g.noise, batch * self.s.noise);
            let z = &z[rows.start * self.s.noise..rows.end * self.s.noise];
            self.s.d_step(&self.xb, z, g.d_optimizer.lr)?;
            self.d_batches += 1;
        }
        let z = draw_noise(&mut self.noise_rng, g.noise, batch * self.s.noise);
        let rows = run.opts.dist.rows(batch);
        self.s.g_step(
            &z[rows.start * self.s.noise..rows.end * self.s.noise],
            g.g_optimizer.lr,
        )?;
        self.window_steps += 1;
        Ok(true)
    }

    /// Losses are read (and checked for NaN) before any checkpoint, so one is never written
    /// from diverged weights.
    fn log_due(&self, stop: bool) -> bool {
        let step = self.s.step_g;
        step.is_multiple_of(self.cfg.log_every)
            || step == self.total
            || stop
            || self.checkpoint_due()
    }

    fn read(&mut self) -> Result<(Losses, GanReading), TrainError> {
        let st = self.s.take_stats()?;
        let d_loss = st.d.loss / (st.d.rows / 2.0).max(1.0);
        let g_bce = st.g.loss / st.g.rows.max(1.0);
        let g_loss = if self.g.non_saturating { g_bce } else { -g_bce };
        let (dx, dgz) = self.s.d_means()?;
        let losses = vec![("discriminator loss", d_loss), ("generator loss", g_loss)];
        Ok((losses, (d_loss, g_loss, dx, dgz)))
    }

    fn nonfinite_at(&self) -> Option<u64> {
        self.s.nonfinite_at
    }

    fn nonfinite_params(&mut self, read_device: bool) -> Result<Option<(u64, String)>, TrainError> {
        Ok(self.s.nonfinite_params(read_device)?)
    }

    fn report(&mut self, run: &mut Run, r: GanReading, stop: bool) -> Result<(), TrainError> {
        let (d_loss, g_loss, dx, dgz) = r;
        let (step, total) = (self.s.step_g, self.total);
        let dt = self.window_t.elapsed().as_secs_f64();
        let per100 = if self.window_steps > 0 {
            dt / self.window_steps as f64 * 100.0
        } else {
            0.0
        };
        self.window_t = Instant::now();
        self.window_steps = 0;
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), step as f64);
        m.insert("d_loss".to_string(), d_loss);
        m.insert("g_loss".to_string(), g_loss);
        m.insert("d_x".to_string(), dx);
        m.insert("d_g_z".to_string(), dgz);
        m.insert("seconds_per_100_steps".to_string(), per100);
        m.insert("seconds".to_string(), run.t0.elapsed().as_secs_f64());
        run.metrics.log("train", &m)?;
        run.plot(GAN_PLOT)?;
        run.pb.finish_and_clear();
        (run.log)(&format!("step {step}/{total}: D loss {}, G loss {}, D(x) {dx:.3}, D(G(z)) {dgz:.3}, {per100:.2} s/100 steps", figure(d_loss), figure(g_loss)));
        if step < total && !stop {
            run.pb = self.interval_bar(step, run.opts.progress);
            run.pb.set_message(format!(
                "last: D {} G {} D(x) {dx:.2} D(G(z)) {dgz:.2}",
                figure(d_loss),
                figure(g_loss)
            ));
        }
        run.summary.final_metrics = m;
        Ok(())
    }

    fn after_step(&mut self, run: &mut Run) -> Result<(), TrainError> {
        let every = self.g.sample_every;
        if every > 0 && self.s.step_g.is_multiple_of(every) {
            self.write_samples()?;
            self.score(run)?;
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let every = self.cfg.checkpoint_every;
        every > 0 && self.s.step_g.is_multiple_of(every)
    }

    fn save(&self, run: &Run) -> Result<PathBuf, TrainError> {
        let (s, cfg, g, model) = (&self.s, self.cfg, self.g, self.model);
        let mut ck = Checkpoint {
            tensors: vec![],
            metadata: BTreeMap::new(),
        };
        let (gp, dp) = s.params()?;
        if let Some(t) = nonfinite_tensor(&gp).or(nonfinite_tensor(&dp)) {
            return Err(TrainError::NonFiniteWeights {
                tensor: t.to_string(),
                step: s.step_g,
            });
        }
        let (gs, ds) = s.opt_states()?;
        // G runs in training mode in each D step and each G step; D twice in a D step (the
        // reals and the fakes) and once in a G step.
        let (g_passes, d_passes) = (s.step_d + s.step_g, 2 * s.step_d + s.step_g);
        save_params(&mut ck, Some(&self.gn.name), (&gp, &gs), g_passes);
        save_params(&mut ck, Some(&self.dn.name), (&dp, &ds), d_passes);
        for (k, v) in [
            ("g_step", s.step_g.to_string()),
            ("d_step", s.step_d.to_string()),
            ("d_batches", self.d_batches.to_string()),
            ("noise_rng", self.noise_rng.state_string()),
            ("seed", cfg.seed.to_string()),
            ("model", model.file_name.clone()),
            ("model_sha256", model_sha256(model)),
            ("task", "gan".into()),
            (
                "optimizer",
                format!("{:?} / {:?}", g.g_optimizer.kind, g.d_optimizer.kind),
            ),
        ] {
            ck.metadata.insert(k.to_string(), v);
        }
        ck.metadata.extend(self.data_meta.clone());
        run.write_checkpoint(&mut ck)
    }

    fn stop_line(&self, _run: &Run) -> String {
        format!(
            "interrupted at step {}: checkpoint written; continue with --resume",
            self.s.step_g
        )
    }

    fn finish(&mut self, run: &mut Run, interrupted: bool) -> Result<(), TrainError> {
        if run.opts.profile {
            super::profile::log_profile(
                self.s.gpu_program().map(|(prog, d_pass, g_pass)| {
                    (
                        prog,
                        vec![(d_pass, "discriminator step"), (g_pass, "generator step")],
                    )
                }),
                "--profile: the CPU executor runs no kernels",
                run.log,
            )?;
        }
        if !interrupted {
            self.save(run)?;
            self.write_samples()?;
        }
        if !interrupted && run.opts.dist.is_root() {
            io::write_image_grid(
                &run.opts.out.join("samples.png"),
                &self
                    .s
                    .sample(&self.samples.fixed[..self.batch.min(64) * self.s.noise])?,
                &self.samples.grid,
            )?;
        }
        Ok(())
    }
}
