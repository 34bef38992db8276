//! Training a classifier: epochs of shuffled batches (an image folder's decoded ahead), a row
//! per log interval, an evaluation and a learning-rate schedule per epoch, and checkpoints
//! counted in epochs. The loop itself is [`super::skeleton`].

use super::progress::{bar, figure, rate};
use super::run_folder::{Metrics, PanelSpec};
use super::skeleton::{drive, Losses, Run, StopCheck, Task};
use super::split;
use super::{check_source, evaluate, nonfinite_tensor, nothing_left, onehot, start_weights};
use super::{ClassifierData, Options, Summary, TrainError};
use crate::cpu::{LossStats, Params};
use crate::data::{Batches, Shuffler};
use crate::io::run_checkpoint::{
    check_optimizer, load_params, load_weights_for_transfer, meta_f64, meta_u64, model_sha256,
    save_params, slots,
};
use crate::io::Checkpoint;
use crate::rng::Rng;
use crate::session::{Classifier, Executor};
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{Length, Schedule, TrainConfig};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

const CLASSIFIER_PLOT: &[PanelSpec] = &[
    (
        "loss",
        "softmax cross-entropy",
        &[("train", "train_loss"), ("test", "test_loss")],
        1.0,
    ),
    (
        "accuracy",
        "top-1 (%)",
        &[("train", "train_acc"), ("test", "test_acc")],
        100.0,
    ),
];

/// A classifier run: the session, its schedule and where it is in its epochs.
struct ClassifierTask<'a> {
    model: &'a Model,
    net: &'a Network,
    cfg: &'a TrainConfig,
    data: &'a ClassifierData,
    s: Classifier,
    batch: usize,
    steps_per_epoch: u64,
    epochs: u64,
    total_steps: u64,
    /// The learning rate before a per-step schedule, and the plateau schedule's state.
    lr: f64,
    best: f64,
    bad_epochs: u64,
    shuffler: Shuffler,
    reported_failures: usize,
    /// The epoch in progress; once it ended, the next (which its checkpoint records).
    epoch: u64,
    /// The epoch's batches and figures; None between epochs.
    current: Option<Epoch<'a>>,
    /// Whether the last step (or the data running out) ended the epoch.
    end_of_epoch: bool,
    /// The last step's learning rate.
    step_lr: f64,
}

/// An epoch in progress.
struct Epoch<'a> {
    t0: Instant,
    /// An image folder's batches are decoded ahead on background threads.
    batches: Batches<'a>,
    /// The next batch of the epoch.
    b: u64,
    stats: LossStats,
    /// Time the steps spent waiting for their batch: about 0 when the loader keeps up.
    data_wait: f64,
    eval_due: bool,
    /// The last interval's row of an evaluated epoch goes into the epoch's row, so no step
    /// is logged twice.
    last_interval: BTreeMap<String, f64>,
}

/// Trains the classifier `net` on `data`, from the checkpoint `resume` if given.
#[allow(clippy::too_many_arguments)]
pub(super) fn classifier(
    model: &Model,
    net: &Network,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    data: &ClassifierData,
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let (train, test) = (&data.train, &data.test);
    let batch = cfg.batch as usize;
    check_source(net, train, "training")?;
    check_source(net, test, "test")?;
    if train.len() < batch {
        return Err(TrainError::Setup(format!(
            "the batch ({batch}) is larger than the training set ({} images)",
            train.len()
        )));
    }
    let steps_per_epoch = (train.len() / batch) as u64;
    let epochs = match cfg.length {
        Length::Epochs(e) => e,
        Length::Steps(s) => s.div_ceil(steps_per_epoch),
    };
    let total_steps = match cfg.length {
        Length::Epochs(e) => e
            .checked_mul(steps_per_epoch)
            .ok_or_else(|| TrainError::Setup(format!("{e} epochs is too many steps to count")))?,
        Length::Steps(s) => s,
    };
    crate::memory::ensure_training(net, cfg.batch as usize, slots(&cfg.optimizer.kind), 4)?;
    let mut init: Params<f32> = Params::init(net, &mut Rng::new(cfg.seed));
    if let Some(w) = &start_weights(opts)? {
        init = load_weights_for_transfer(w, net, &init)?;
    }
    let s = Classifier::new(
        net,
        init.clone(),
        cfg.update_rule(&cfg.optimizer),
        batch,
        cfg.seed,
        exec,
    )?;
    let mut task = ClassifierTask {
        model,
        net,
        cfg,
        data,
        s,
        batch,
        steps_per_epoch,
        epochs,
        total_steps,
        lr: cfg.optimizer.lr,
        best: f64::INFINITY,
        bad_epochs: 0,
        shuffler: Shuffler::new(train.len(), cfg.seed),
        reported_failures: 0,
        epoch: 0,
        current: None,
        end_of_epoch: false,
        step_lr: 0.0,
    };
    task.s.set_shard(split::shard(opts, batch)?)?;
    if let Some(ck) = &resume {
        task.resume(ck, &init, opts, log)?;
    }
    if opts.dist.is_split() {
        let (mut p, mut st) = (task.s.params()?, task.s.opt_state()?);
        split::share_start(opts, &mut p, &mut st)?;
        task.s.restore(&p, &st);
    }
    task.epoch = task.s.step / steps_per_epoch;
    let metrics = Metrics::open_run(opts, resume.as_ref().map(|_| task.s.step))?;
    // One bar per epoch, as Keras shows it, cleared for the epoch's summary line.
    let pb = bar(0, false, String::new());
    let run = Run::start(opts, log, (metrics, pb), task.s.step, resume.is_some());
    drive(&mut task, run)
}

impl<'a> ClassifierTask<'a> {
    /// Continues from the checkpoint: weights, optimizer state, step and schedule.
    fn resume(
        &mut self,
        ck: &Checkpoint,
        init: &Params<f32>,
        opts: &Options,
        log: &mut dyn FnMut(&str),
    ) -> Result<(), TrainError> {
        let cfg = self.cfg;
        check_optimizer(ck, format!("{:?}", cfg.optimizer.kind))?;
        let (p, mut st) = load_params(ck, self.net, init, slots(&cfg.optimizer.kind))?;
        st.step = meta_u64(ck, "step")?;
        self.s.restore(&p, &st);
        // The schedule's factor is restored, so a --lr given on resume still applies.
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

    /// Writes the checkpoint, recording `epoch` as the epoch reached.
    fn save_at(&self, run: &Run, epoch: u64) -> Result<PathBuf, TrainError> {
        let (s, cfg, model) = (&self.s, self.cfg, self.model);
        let lr = self.lr;
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
        for (k, v) in [
            ("step", s.step.to_string()),
            ("epoch", epoch.to_string()),
            ("lr", format!("{lr:e}")),
            ("lr_scale", format!("{:e}", lr / cfg.optimizer.lr)),
            ("best_test_loss", format!("{:e}", self.best)),
            ("bad_epochs", self.bad_epochs.to_string()),
            ("seed", cfg.seed.to_string()),
            ("model", model.file_name.clone()),
            ("model_sha256", model_sha256(model)),
            ("network", self.net.name.clone()),
            ("task", "classifier".into()),
            ("optimizer", format!("{:?}", cfg.optimizer.kind)),
        ] {
            ck.metadata.insert(k.to_string(), v);
        }
        // An image folder's class names and normalisation, for eval, predict and resume.
        ck.metadata
            .extend(self.data.meta.iter().map(|(k, v)| (k.clone(), v.clone())));
        run.write_checkpoint(&mut ck)
    }

    /// Starts epoch `self.epoch`: its bar, its shuffled order and its batches.
    fn begin_epoch(&self, run: &mut Run) -> Epoch<'a> {
        let (epoch, spe, total) = (self.epoch, self.steps_per_epoch, self.total_steps);
        let epoch_t0 = Instant::now();
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
            t0: epoch_t0,
            batches: self.data.train.batches(epoch, planned),
            b: first,
            stats: LossStats::default(),
            data_wait: 0.0,
            eval_due,
            last_interval: BTreeMap::new(),
        }
    }

    /// The end of an epoch: its evaluation when due, the schedule, and the images that
    /// failed to decode.
    fn end_epoch(&mut self, run: &mut Run) -> Result<(), TrainError> {
        run.pb.finish_and_clear();
        let Some(ep) = self.current.take() else {
            return Ok(());
        };
        let Epoch {
            t0,
            batches,
            stats,
            data_wait,
            eval_due,
            last_interval,
            ..
        } = ep;
        drop(batches);
        if eval_due {
            self.evaluate_epoch(run, (t0, stats, data_wait), last_interval)?;
        }
        if let Schedule::Step { every, factor } = self.cfg.schedule {
            if (self.epoch + 1).is_multiple_of(every) {
                self.lr *= factor;
            }
        }
        let (train, test) = (&self.data.train, &self.data.test);
        let failed: Vec<_> = train.failed().into_iter().chain(test.failed()).collect();
        if failed.len() > self.reported_failures {
            let (p, why) = &failed[self.reported_failures];
            (run.log)(&format!(
                "left out {} image(s) that failed to decode (bad_images = skip), e.g. {}: {why}",
                failed.len() - self.reported_failures,
                p.display()
            ));
            self.reported_failures = failed.len();
        }
        self.epoch += 1;
        Ok(())
    }

    /// Evaluates the epoch's network on the test set, writes the epoch's row and line, and
    /// steps the plateau schedule.
    fn evaluate_epoch(
        &mut self,
        run: &mut Run,
        (epoch_t0, epoch_stats, data_wait): (Instant, LossStats, f64),
        mut m: BTreeMap<String, f64>,
    ) -> Result<(), TrainError> {
        let (tl, t1, t5) = match evaluate(&mut self.s, &self.data.test) {
            Ok(r) => r,
            Err(e) => {
                // A file that cannot be read among the evaluation images: keep the epoch.
                if matches!(e, TrainError::Data(_)) {
                    let path = self.save_at(run, self.epoch)?;
                    (run.log)(&format!(
                        "stopped evaluating after epoch {}: checkpoint written to {}",
                        self.epoch + 1,
                        path.display()
                    ));
                }
                return Err(e);
            }
        };
        let s = &self.s;
        if !tl.is_finite() {
            return Err(TrainError::NonFinite {
                what: "test loss",
                step: s.step,
                since: s.step,
                first: None,
                loss: tl,
                checkpoint: run.last_good.take(),
            });
        }
        let tr_loss = epoch_stats.loss / epoch_stats.rows.max(1.0);
        let tr_acc = epoch_stats.correct / epoch_stats.rows.max(1.0);
        let tr_top5 = epoch_stats.top5 / epoch_stats.rows.max(1.0);
        m.insert("step".to_string(), s.step as f64);
        m.insert("epoch".to_string(), (self.epoch + 1) as f64);
        m.insert("epoch_train_loss".to_string(), tr_loss);
        m.insert("epoch_train_acc".to_string(), tr_acc);
        m.insert("test_loss".to_string(), tl);
        m.insert("test_acc".to_string(), t1);
        // One reading of each clock for the log and the line, so the two agree.
        let (own, all) = (
            epoch_t0.elapsed().as_secs_f64(),
            run.t0.elapsed().as_secs_f64(),
        );
        m.insert("seconds".to_string(), all);
        m.insert("epoch_seconds".to_string(), own);
        m.insert("data_wait_seconds".to_string(), data_wait);
        // Top-5 only says something when there are more than five classes.
        let (train_top5, test_top5) = if s.classes > 5 {
            m.insert("epoch_train_top5".to_string(), tr_top5);
            m.insert("test_top5".to_string(), t5);
            (
                format!(", top-5 {:.2}%", 100.0 * tr_top5),
                format!(", top-5 {:.2}%", 100.0 * t5),
            )
        } else {
            (String::new(), String::new())
        };
        run.metrics.log("epoch", &m)?;
        run.plot(CLASSIFIER_PLOT)?;
        let log = &mut run.log;
        run.pb.suspend(|| {
            log(&format!(
                "epoch {}/{}: train loss {}, train acc {:.2}%{train_top5} | test loss {}, test acc {:.2}%{test_top5} | lr {} | {:.1} s ({:.1} s in all)",
                self.epoch + 1,
                self.epochs,
                figure(tr_loss),
                100.0 * tr_acc,
                figure(tl),
                100.0 * t1,
                rate(self.cfg.schedule.step_lr(self.lr, s.step, self.total_steps)),
                own,
                all
            ))
        });
        run.summary.final_metrics = m;
        self.plateau(tl);
        Ok(())
    }

    /// The plateau schedule watches the test loss, so it counts evaluations.
    fn plateau(&mut self, tl: f64) {
        match self.cfg.schedule {
            Schedule::Constant
            | Schedule::Step { .. }
            | Schedule::Inv { .. }
            | Schedule::StepIter { .. }
            | Schedule::MultiStep { .. }
            | Schedule::Poly { .. }
            | Schedule::WarmupCosine { .. } => {}
            Schedule::Plateau { factor, patience } => {
                if tl < self.best {
                    self.best = tl;
                    self.bad_epochs = 0;
                } else {
                    self.bad_epochs += 1;
                    if self.bad_epochs > patience {
                        self.lr *= factor;
                        self.bad_epochs = 0;
                    }
                }
            }
        }
    }
}

impl Task for ClassifierTask<'_> {
    type Reading = LossStats;
    const PLOT: &'static [PanelSpec] = CLASSIFIER_PLOT;
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
        let waited = Instant::now();
        let next = ep.batches.next();
        ep.data_wait += waited.elapsed().as_secs_f64();
        let b = ep.b;
        let got = match next {
            Some(Ok(got)) => got,
            Some(Err(e)) => {
                // Keep what was trained: checkpoint at this step, then stop on the file.
                run.pb.abandon();
                if self.s.step > run.start {
                    let path = self.save_at(run, self.epoch)?;
                    (run.log)(&format!(
                        "stopped at step {} on a file that cannot be read: checkpoint written to {}; fix or remove the file (or set bad_images = skip) and continue with --resume",
                        self.s.step,
                        path.display()
                    ));
                }
                return Err(e.into());
            }
            None => {
                self.end_of_epoch = true;
                return Ok(false);
            }
        };
        // A per-step schedule (Caffe's inv, warmup_cosine) sets the learning rate of every step.
        self.step_lr = self
            .cfg
            .schedule
            .step_lr(self.lr, self.s.step, self.total_steps);
        let classes = self.s.classes;
        self.s
            .train_step(&got.images, &onehot(&got.labels, classes), self.step_lr)?;
        self.end_of_epoch = b + 1 == self.steps_per_epoch || self.s.step >= self.total_steps;
        if let Some(ep) = self.current.as_mut() {
            ep.b += 1;
        }
        Ok(true)
    }

    fn log_due(&self, stop: bool) -> bool {
        self.s.step.is_multiple_of(self.cfg.log_every) || self.end_of_epoch || stop
    }

    fn read(&mut self) -> Result<(Losses, LossStats), TrainError> {
        let st = self.s.take_stats()?;
        if let Some(ep) = self.current.as_mut() {
            ep.stats.add(st);
        }
        let mean = st.loss / st.rows.max(1.0);
        Ok((vec![("loss", mean)], st))
    }

    fn nonfinite_at(&self) -> Option<u64> {
        self.s.nonfinite_at
    }

    fn nonfinite_params(&mut self, read_device: bool) -> Result<Option<(u64, String)>, TrainError> {
        Ok(self.s.nonfinite_params(read_device)?)
    }

    fn report(&mut self, run: &mut Run, st: LossStats, _stop: bool) -> Result<(), TrainError> {
        let mean = st.loss / st.rows.max(1.0);
        run.pb.set_message(format!(
            "loss {} acc {:.2}% (at step {})",
            figure(mean),
            100.0 * st.correct / st.rows.max(1.0),
            self.s.step
        ));
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), self.s.step as f64);
        m.insert("epoch".to_string(), (self.epoch + 1) as f64);
        m.insert("train_loss".to_string(), mean);
        m.insert("train_acc".to_string(), st.correct / st.rows.max(1.0));
        m.insert("lr".to_string(), self.step_lr);
        match self.current.as_mut() {
            Some(ep) if self.end_of_epoch && ep.eval_due => ep.last_interval = m,
            _ => {
                run.metrics.log("train", &m)?;
                run.plot(CLASSIFIER_PLOT)?;
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
        if self.end_of_epoch {
            format!(
                "interrupted after epoch {}: checkpoint written to {}; continue with --resume",
                self.epoch,
                path.display()
            )
        } else {
            format!(
                "interrupted at step {}: checkpoint written to {}; continue with --resume",
                self.s.step,
                path.display()
            )
        }
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
