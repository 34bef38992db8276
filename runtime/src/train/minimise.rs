//! Training a model that declares its loss (`task = minimise`): epochs of shuffled batches
//! whose fields (images, labels, noise) feed the network's inputs, the batch mean of the loss
//! node minimised, a row per log interval, the held-out loss (and the declared metrics) per
//! epoch, checkpoints counted in epochs, resume. The loop itself is [`super::skeleton`].

use super::evaluate::gather;
use super::progress::{bar, figure, rate};
use super::run_folder::{Metrics, PanelSpec};
use super::skeleton::{drive, Losses, Run, StopCheck, Task};
use super::split;
use super::{in_order, nonfinite_tensor, nothing_left, start_weights};
use super::{ClassifierData, Options, Summary, TrainError};
use crate::cpu::Params;
use crate::data::{loader::Batch, Batches, Shuffler, Source};
use crate::diffusion::NoiseSchedule;
use crate::io::ema::{load_ema, save_ema};
use crate::io::run_checkpoint::{
    check_optimizer, load_params, load_weights_for_transfer, meta_f64, meta_u64, model_sha256,
    save_params, slots,
};
use crate::io::Checkpoint;
use crate::rng::{mix64, Rng};
use crate::session::{node_named, Executor, Minimiser, Sums};
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{Field, Length, MinimiseConfig, Schedule, TrainConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const MINIMISE_PLOT: &[PanelSpec] = &[(
    "loss",
    "declared loss (batch mean)",
    &[("train", "train_loss"), ("test", "test_loss")],
    1.0,
)];

/// A declared-loss run: the session, its schedule and where it is in its epochs.
struct MinimiseTask<'a> {
    model: &'a Model,
    m: &'a MinimiseConfig,
    cfg: &'a TrainConfig,
    data: &'a ClassifierData,
    s: Minimiser,
    /// The field each network input reads, in `net.inputs` order.
    fields: Vec<Field>,
    batch: usize,
    steps_per_epoch: u64,
    epochs: u64,
    total_steps: u64,
    lr: f64,
    best: f64,
    bad_epochs: u64,
    shuffler: Shuffler,
    epoch: u64,
    current: Option<Epoch<'a>>,
    end_of_epoch: bool,
    step_lr: f64,
    /// A diffusion model's noise schedule.
    schedule: Option<NoiseSchedule>,
}

struct Epoch<'a> {
    t0: Instant,
    batches: Batches<'a>,
    b: u64,
    stats: Sums,
    eval_due: bool,
    last_interval: BTreeMap<String, f64>,
}

/// Standard Gaussian noise for input `k` of a batch of `rows`: drawn from the run's seed,
/// the step (or, for evaluation, the batch's index with the top bit set) and the input, so a
/// run (and a resumed one) draws the same noise and every step fresh noise.
fn noise(seed: u64, at: u64, k: usize, len: usize) -> Vec<f32> {
    let mut rng = Rng::new(mix64(seed ^ 0x4E01_5E00) ^ mix64(at) ^ mix64(k as u64 + 1));
    (0..len).map(|_| rng.normal() as f32).collect()
}

/// The inputs of the network for a batch, one flat buffer per input; `part`: the rows the
/// batch holds of a batch of how many (a data-parallel rank's: its noise is the rows' part of
/// the whole batch's, so it does not depend on the number of ranks). A diffusion model's
/// fields (noisy images, timesteps) are drawn with the `noise` input's eps, its timesteps the
/// rows' part of the whole batch's too.
fn feed(
    fields: &[Field],
    widths: &[usize],
    b: &Batch,
    (seed, at): (u64, u64),
    (part, schedule): ((std::ops::Range<usize>, usize), Option<&NoiseSchedule>),
) -> Vec<Vec<f32>> {
    let (rows, whole) = part;
    let mut ins: Vec<Vec<f32>> = fields
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(k, (f, &w))| match f {
            Field::Images => b.images.clone(),
            Field::Labels => b.labels.iter().map(|&l| l as f32).collect(),
            Field::Noise => noise(seed, at, k, whole * w)[rows.start * w..rows.end * w].to_vec(),
            Field::Noisy | Field::Timestep | Field::TimestepEmbedding => vec![],
        })
        .collect();
    if let Some(s) = schedule {
        crate::diffusion::fill(
            &mut ins,
            fields,
            widths,
            &b.images,
            s,
            (seed, at),
            (rows, whole),
        );
    }
    ins
}

/// Values per example of each input of `net`.
fn widths(net: &Network) -> Vec<usize> {
    net.inputs
        .iter()
        .map(|&i| net.graph[i].shape.iter().product::<u64>() as usize)
        .collect()
}

/// The images of `set` must be what the input bound to `images` takes.
fn check_images(
    net: &Network,
    m: &MinimiseConfig,
    set: &Source,
    split: &str,
) -> Result<(), TrainError> {
    if set.is_empty() {
        return Err(TrainError::Setup(format!(
            "the {split} split has no images"
        )));
    }
    if set.views() != 1 {
        return Err(TrainError::Setup(
            "eval_crops is for classifiers; a declared loss is evaluated on one view per image"
                .into(),
        ));
    }
    for ((name, f), &w) in m.inputs.iter().zip(&widths(net)) {
        if matches!(f, Field::Images | Field::Noisy) && set.image_len() != w {
            let (c, h, wd) = set.shape();
            return Err(TrainError::Setup(format!(
                "the {split} images are {c}x{h}x{wd} ({} values) but input `{name}` of network `{}` takes {w} values",
                set.image_len(),
                net.name
            )));
        }
    }
    Ok(())
}

/// Trains `net` to minimise its declared loss on `data`, from the checkpoint `resume` if given.
#[allow(clippy::too_many_arguments)]
pub(super) fn minimise(
    model: &Model,
    net: &Network,
    m: &MinimiseConfig,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    data: &ClassifierData,
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let batch = cfg.batch as usize;
    check_images(net, m, &data.train, "training")?;
    check_images(net, m, &data.test, "test")?;
    if data.train.len() < batch {
        return Err(TrainError::Setup(format!(
            "the batch ({batch}) is larger than the training set ({} images)",
            data.train.len()
        )));
    }
    let steps_per_epoch = (data.train.len() / batch) as u64;
    let (epochs, total_steps) = match cfg.length {
        Length::Epochs(e) => (
            e,
            e.checked_mul(steps_per_epoch).ok_or_else(|| {
                TrainError::Setup(format!("{e} epochs is too many steps to count"))
            })?,
        ),
        Length::Steps(s) => (s.div_ceil(steps_per_epoch), s),
    };
    crate::memory::ensure_training(net, batch, slots(&cfg.optimizer.kind), 4)?;
    let mut init: Params<f32> = Params::init(net, &mut Rng::new(cfg.seed));
    if let Some(w) = &start_weights(opts)? {
        init = load_weights_for_transfer(w, net, &init)?;
    }
    let rule = cfg.update_rule(&cfg.optimizer);
    let mut s = Minimiser::new(net, init.clone(), rule, (batch, cfg.seed), &m.loss, exec)?;
    let mut nodes = vec![s.loss_node()];
    for name in &m.metrics {
        nodes.push(node_named(net, name)?);
    }
    s.evaluates(&nodes);
    let mut task = MinimiseTask {
        model,
        m,
        cfg,
        data,
        s,
        fields: m.inputs.iter().map(|(_, f)| *f).collect(),
        batch,
        steps_per_epoch,
        epochs,
        total_steps,
        lr: cfg.optimizer.lr,
        best: f64::INFINITY,
        bad_epochs: 0,
        shuffler: Shuffler::new(data.train.len(), cfg.seed),
        epoch: 0,
        current: None,
        end_of_epoch: false,
        step_lr: 0.0,
        schedule: m
            .diffusion
            .as_ref()
            .map(|d| NoiseSchedule::new(d.betas, d.timesteps as usize)),
    };
    task.s.set_shard(split::shard(opts, batch)?)?;
    if let Some(decay) = m.ema {
        task.s.keep_ema(decay);
    }
    if let Some(ck) = &resume {
        task.resume(ck, &init, opts, log)?;
    }
    if opts.dist.is_split() {
        let (mut p, mut st) = (task.s.params()?, task.s.opt_state()?);
        split::share_start(opts, &mut p, &mut st)?;
        task.s.restore(&p, &st);
    }
    task.epoch = task.s.step / steps_per_epoch;
    // The GPU program (its pipelines) is built once, here, with the state set above.
    task.s.prepare()?;
    let metrics = Metrics::open_run(opts, resume.as_ref().map(|_| task.s.step))?;
    let pb = bar(0, false, String::new());
    let run = Run::start(opts, log, (metrics, pb), task.s.step, resume.is_some());
    drive(&mut task, run)
}

impl<'a> MinimiseTask<'a> {
    fn resume(
        &mut self,
        ck: &Checkpoint,
        init: &Params<f32>,
        opts: &Options,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), TrainError> {
        let cfg = self.cfg;
        check_optimizer(ck, format!("{:?}", cfg.optimizer.kind))?;
        let (p, mut st) = load_params(ck, &self.s.net, init, slots(&cfg.optimizer.kind))?;
        st.step = meta_u64(ck, "step")?;
        self.s.restore(&p, &st);
        if let Some(decay) = self.m.ema {
            // From the weights resumed when the checkpoint kept no average.
            self.s.keep_ema(decay);
            if let Some(e) = load_ema(ck, &self.s.net, init)? {
                self.s.restore_ema(e);
            }
        }
        self.lr *= meta_f64(ck, "lr_scale", 1.0);
        self.best = meta_f64(ck, "best_test_loss", self.best);
        self.bad_epochs = meta_u64(ck, "bad_epochs").unwrap_or(0);
        log(&format!(
            "resumed from {} at step {}",
            opts.out.join("checkpoint.safetensors").display(),
            self.s.step
        ));
        nothing_left(self.s.step, self.total_steps, "")
    }

    fn save_at(&self, run: &Run, epoch: u64) -> Result<PathBuf, TrainError> {
        let (s, cfg, model) = (&self.s, self.cfg, self.model);
        let mut ck = Checkpoint {
            tensors: vec![],
            metadata: BTreeMap::new(),
        };
        let params = s.params()?;
        if let Some(t) = nonfinite_tensor(&params) {
            return Err(TrainError::NonFiniteWeights {
                tensor: t.to_string(),
                step: s.step,
            });
        }
        save_params(&mut ck, None, (&params, &s.opt_state()?), s.step);
        if let Some(ema) = &s.ema()? {
            if let Some(t) = nonfinite_tensor(ema) {
                return Err(TrainError::NonFiniteWeights {
                    tensor: format!("ema.{t}"),
                    step: s.step,
                });
            }
            save_ema(&mut ck, ema);
        }
        for (k, v) in [
            ("step", s.step.to_string()),
            ("epoch", epoch.to_string()),
            ("lr", format!("{:e}", self.lr)),
            ("lr_scale", format!("{:e}", self.lr / cfg.optimizer.lr)),
            ("best_test_loss", format!("{:e}", self.best)),
            ("bad_epochs", self.bad_epochs.to_string()),
            ("seed", cfg.seed.to_string()),
            ("model", model.file_name.clone()),
            ("model_sha256", model_sha256(model)),
            ("network", s.net.name.clone()),
            ("task", "minimise".into()),
            ("loss", self.m.loss.clone()),
            ("optimizer", format!("{:?}", cfg.optimizer.kind)),
        ] {
            ck.metadata.insert(k.to_string(), v);
        }
        ck.metadata
            .extend(self.data.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
        run.write_checkpoint(&mut ck)
    }

    fn begin_epoch(&self, run: &mut Run) -> Epoch<'a> {
        let (epoch, spe, total) = (self.epoch, self.steps_per_epoch, self.total_steps);
        let order = self.shuffler.order(epoch);
        let eval_due = (epoch + 1) % self.cfg.eval_every == 0 || epoch + 1 == self.epochs;
        let first = self.s.step - epoch * spe;
        run.pb = bar(
            spe.min(total - epoch * spe),
            run.opts.progress,
            format!("epoch {}/{}", epoch + 1, self.epochs),
        );
        run.pb.set_position(first);
        let last = spe.min(first + total.saturating_sub(self.s.step));
        let batch = self.batch;
        // This process's rows of each batch (all of them but in a data-parallel run).
        let rows = run.opts.dist.rows(batch);
        let planned: Vec<Vec<usize>> = (first as usize..last as usize)
            .map(|b| order[b * batch + rows.start..b * batch + rows.end].to_vec())
            .collect();
        Epoch {
            t0: Instant::now(),
            batches: self.data.train.batches(epoch, planned),
            b: first,
            stats: Sums::default(),
            eval_due,
            last_interval: BTreeMap::new(),
        }
    }

    /// The held-out mean of the loss and of each metric, a batch at a time, its noise drawn
    /// from the batch's index (the same every evaluation). In a data-parallel run each rank
    /// evaluates every N-th batch (rank r the batches r, r + N, ...), and the ranks' sums are
    /// gathered and added in rank order, so every rank gets the same bits (as a classifier's).
    fn evaluate(&mut self) -> Result<Vec<f64>, TrainError> {
        let test = &self.data.test;
        let w = widths(&self.s.net);
        let dist = self.s.dist().clone();
        let (index, order): (Vec<usize>, Vec<Vec<usize>>) =
            (in_order(test.len(), self.batch, 1).into_iter().enumerate())
                .skip(dist.rank())
                .step_by(dist.size())
                .unzip();
        for (i, b) in index.into_iter().zip(test.batches(0, order)) {
            let b = b?;
            let at = (1u64 << 63) | i as u64;
            let n = b.labels.len();
            let part = ((0..n, n), self.schedule.as_ref());
            let ins = feed(&self.fields, &w, &b, (self.cfg.seed, at), part);
            self.s.eval_batch(&ins, b.labels.len())?;
        }
        // The sums of every batch in one read (on the GPU, added on the device).
        let sums = self.s.take_eval()?;
        Ok((sums.iter())
            .map(|s| {
                let [sum, rows] = gather(&dist, [s.sum, s.rows]);
                Sums { sum, rows }.mean()
            })
            .collect())
    }

    fn end_epoch(&mut self, run: &mut Run) -> Result<(), TrainError> {
        run.pb.finish_and_clear();
        let Some(ep) = self.current.take() else {
            return Ok(());
        };
        let Epoch {
            t0,
            batches,
            stats,
            eval_due,
            last_interval,
            ..
        } = ep;
        drop(batches);
        if eval_due {
            self.evaluate_epoch(run, (t0, stats), last_interval)?;
        }
        if let Schedule::Step { every, factor } = self.cfg.schedule {
            if (self.epoch + 1).is_multiple_of(every) {
                self.lr *= factor;
            }
        }
        self.epoch += 1;
        Ok(())
    }

    fn evaluate_epoch(
        &mut self,
        run: &mut Run,
        (t0, stats): (Instant, Sums),
        mut m: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let got = self.evaluate()?;
        let tl = got[0];
        if !tl.is_finite() {
            return Err(TrainError::NonFinite {
                what: "test loss",
                step: self.s.step,
                since: self.s.step,
                first: None,
                loss: tl,
                checkpoint: run.last_good.take(),
            });
        }
        m.insert("step".into(), self.s.step as f64);
        m.insert("epoch".into(), (self.epoch + 1) as f64);
        m.insert("epoch_train_loss".into(), stats.mean());
        m.insert("test_loss".into(), tl);
        let mut extra = String::new();
        for (name, v) in self.m.metrics.iter().zip(&got[1..]) {
            m.insert(format!("test_{name}"), *v);
            extra.push_str(&format!(", {name} {}", figure(*v)));
        }
        let (own, all) = (t0.elapsed().as_secs_f64(), run.t0.elapsed().as_secs_f64());
        m.insert("seconds".into(), all);
        m.insert("epoch_seconds".into(), own);
        run.metrics.log("epoch", &m)?;
        run.plot(MINIMISE_PLOT)?;
        let line =
            format!(
            "epoch {}/{}: train loss {} | test loss {}{extra} | lr {} | {:.1} s ({:.1} s in all)",
            self.epoch + 1,
            self.epochs,
            figure(stats.mean()),
            figure(tl),
            rate(self.cfg.schedule.step_lr(self.lr, self.s.step, self.total_steps)),
            own,
            all
        );
        let log = &mut run.log;
        run.pb.suspend(|| log(&line));
        run.summary.final_metrics = m;
        if let Schedule::Plateau { factor, patience } = self.cfg.schedule {
            if tl < self.best {
                (self.best, self.bad_epochs) = (tl, 0);
            } else {
                self.bad_epochs += 1;
                if self.bad_epochs > patience {
                    (self.lr, self.bad_epochs) = (self.lr * factor, 0);
                }
            }
        }
        Ok(())
    }
}

impl Task for MinimiseTask<'_> {
    type Reading = Sums;
    const PLOT: &'static [PanelSpec] = MINIMISE_PLOT;
    const STOP: StopCheck = StopCheck::AfterStep;

    fn step_count(&self) -> u64 {
        self.s.step
    }

    fn done(&self) -> bool {
        self.s.step >= self.total_steps
    }

    fn step(&mut self, run: &mut Run) -> Result<bool, TrainError> {
        if self.current.is_none() {
            self.current = Some(self.begin_epoch(run));
        }
        let Some(ep) = self.current.as_mut() else {
            return Ok(false);
        };
        let b = ep.b;
        let got = match ep.batches.next() {
            Some(Ok(got)) => got,
            Some(Err(e)) => {
                run.pb.abandon();
                return Err(e.into());
            }
            None => {
                self.end_of_epoch = true;
                return Ok(false);
            }
        };
        self.step_lr = self
            .cfg
            .schedule
            .step_lr(self.lr, self.s.step, self.total_steps);
        let ins = feed(
            &self.fields,
            &widths(&self.s.net),
            &got,
            (self.cfg.seed, self.s.step),
            (
                (run.opts.dist.rows(self.batch), self.batch),
                self.schedule.as_ref(),
            ),
        );
        self.s.train_step(&ins, self.step_lr)?;
        self.end_of_epoch = b + 1 == self.steps_per_epoch || self.s.step >= self.total_steps;
        if let Some(ep) = self.current.as_mut() {
            ep.b += 1;
        }
        Ok(true)
    }

    fn log_due(&self, stop: bool) -> bool {
        self.s.step.is_multiple_of(self.cfg.log_every) || self.end_of_epoch || stop
    }

    fn read(&mut self) -> Result<(Losses, Sums), TrainError> {
        let st = self.s.take_stats()?;
        if let Some(ep) = self.current.as_mut() {
            ep.stats.sum += st.sum;
            ep.stats.rows += st.rows;
        }
        Ok((vec![("loss", st.mean())], st))
    }

    fn nonfinite_at(&self) -> Option<u64> {
        self.s.nonfinite_at
    }

    fn nonfinite_params(&mut self, read_device: bool) -> Result<Option<(u64, String)>, TrainError> {
        Ok(self.s.nonfinite_params(read_device)?)
    }

    fn report(&mut self, run: &mut Run, st: Sums, _stop: bool) -> Result<(), TrainError> {
        run.pb.set_message(format!(
            "loss {} (at step {})",
            figure(st.mean()),
            self.s.step
        ));
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), self.s.step as f64);
        m.insert("epoch".to_string(), (self.epoch + 1) as f64);
        m.insert("train_loss".to_string(), st.mean());
        m.insert("lr".to_string(), self.step_lr);
        match self.current.as_mut() {
            Some(ep) if self.end_of_epoch && ep.eval_due => ep.last_interval = m,
            _ => {
                run.metrics.log("train", &m)?;
                run.plot(MINIMISE_PLOT)?;
            }
        }
        Ok(())
    }

    fn after_step(&mut self, run: &mut Run) -> Result<(), TrainError> {
        if self.end_of_epoch {
            self.end_epoch(run)?;
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let every = self.cfg.checkpoint_every;
        self.end_of_epoch && every > 0 && self.epoch.is_multiple_of(every)
    }

    fn save(&self, run: &Run) -> Result<PathBuf, TrainError> {
        self.save_at(run, self.epoch)
    }

    fn stop_line(&self, run: &Run) -> String {
        let path = run.opts.out.join("checkpoint.safetensors");
        format!(
            "interrupted at step {}: checkpoint written to {}; continue with --resume",
            self.s.step,
            path.display()
        )
    }

    fn finish(&mut self, run: &mut Run, interrupted: bool) -> Result<(), TrainError> {
        if !interrupted {
            self.save_at(run, self.s.step / self.steps_per_epoch)?;
        }
        if run.opts.profile {
            super::profile::log_profile(
                self.s
                    .gpu_program()
                    .map(|(prog, pass)| (prog, vec![(pass, "training step")])),
                "--profile: the CPU executor runs no kernels; use netc bench for its step time",
                run.log,
            )?;
        }
        Ok(())
    }
}
