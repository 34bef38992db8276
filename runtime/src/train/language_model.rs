//! Training a character-level language model (`task = language_model`): each step a batch of
//! random windows of the training text, per-token cross-entropy on the next character at every
//! position; a row per log interval with the loss, bits per character and tokens per second;
//! the validation loss over every held-out character every `eval_every` steps and at the end;
//! checkpoints counted in steps that carry the vocabulary, so `netc generate` and `--resume`
//! need no data. The loop itself is [`super::skeleton`].

use super::progress::{bar, figure, rate};
use super::run_folder::{Metrics, PanelSpec};
use super::skeleton::{drive, Losses, Run, StopCheck, Task};
use super::{nonfinite_tensor, nothing_left, split, start_weights, Options, Summary, TrainError};
use crate::cpu::{LossStats, Params};
use crate::data::text::{text_sha256, Corpus, Vocab};
use crate::io::run_checkpoint::{
    check_optimizer, load_params, load_weights_for_transfer, meta_u64, model_sha256, save_params,
    slots,
};
use crate::io::Checkpoint;
use crate::rng::Rng;
use crate::session::{Classifier, Executor};
use netc_compiler::ir::{Model, Network};
use netc_compiler::train_config::{LanguageModelConfig, Length, TrainConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const LM_PLOT: &[PanelSpec] = &[
    (
        "loss",
        "cross-entropy per character (nats)",
        &[("train", "train_loss"), ("validation", "val_loss")],
        1.0,
    ),
    (
        "bits per character",
        "bits per character",
        &[("train", "train_bpc"), ("validation", "val_bpc")],
        1.0,
    ),
];

/// Windows evaluated at once on the CPU (the GPU program's batch is fixed): larger products
/// than a small training batch, the same mean.
const CPU_EVAL_ROWS: usize = 64;

/// Checkpoint keys of what the run trained on.
pub const VOCAB_KEY: &str = "vocab";
const TEXT_KEY: &str = "text_file";
const TEXT_SHA_KEY: &str = "text_sha256";

struct LmTask<'a> {
    model: &'a Model,
    net: &'a Network,
    lm: &'a LanguageModelConfig,
    cfg: &'a TrainConfig,
    corpus: Corpus,
    s: Classifier,
    batch: usize,
    block: usize,
    classes: usize,
    total_steps: u64,
    step_lr: f64,
    /// When the log interval began and its first step.
    interval: (Instant, u64),
    best_val: f64,
}

/// The vocabulary a resumed run keeps, and the refusal to resume on other text.
fn recorded_vocab(
    ck: Option<&Checkpoint>,
    text: &Path,
    allow_other: bool,
) -> Result<Option<Vocab>, TrainError> {
    let Some(ck) = ck else {
        return Ok(None);
    };
    let vocab = ck.metadata.get(VOCAB_KEY).map(|v| Vocab::from_record(v));
    if vocab.is_none() {
        return Err(TrainError::Setup(
            "cannot resume: the checkpoint records no vocabulary (it is not a language model's)"
                .into(),
        ));
    }
    let now = text_sha256(text).map_err(|e| TrainError::Setup(e.to_string()))?;
    let same = ck.metadata.get(TEXT_SHA_KEY) == Some(&now);
    if !same && !allow_other {
        let then = ck.metadata.get(TEXT_KEY).map_or("?", String::as_str);
        return Err(TrainError::Setup(format!(
            "cannot resume on other text: the checkpoint was trained on {then}, but this run reads {}; pass the same file, or --allow-other-data to continue on this one",
            text.display()
        )));
    }
    Ok(vocab)
}

/// Trains the language model `net` on the text at `text`, from `resume` if given.
#[allow(clippy::too_many_arguments)]
pub(super) fn language_model(
    model: &Model,
    net: &Network,
    lm: &LanguageModelConfig,
    cfg: &TrainConfig,
    opts: &Options,
    exec: Executor,
    text: &Path,
    resume: Option<Checkpoint>,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, TrainError> {
    let (batch, block, classes) = (cfg.batch as usize, lm.block as usize, lm.vocab as usize);
    let vocab = recorded_vocab(resume.as_ref(), text, opts.allow_other_data)?;
    let corpus = Corpus::load(text, lm.holdout, block, classes, vocab)
        .map_err(|e| TrainError::Setup(e.to_string()))?;
    log(&format!(
        "text: {} ({} characters, {} distinct; {} for training, {} held out)",
        corpus.path.display(),
        corpus.train.len() + corpus.held.len(),
        corpus.vocab.len(),
        corpus.train.len(),
        corpus.held.len()
    ));
    let total_steps = match cfg.length {
        Length::Steps(s) => s,
        Length::Epochs(_) => {
            return Err(TrainError::Setup(
                "a language model trains for `steps`, not epochs".into(),
            ))
        }
    };
    crate::memory::ensure_training(net, batch, slots(&cfg.optimizer.kind), 4)?;
    let mut init: Params<f32> = Params::init(net, &mut Rng::new(cfg.seed));
    if let Some(w) = &start_weights(opts)? {
        init = load_weights_for_transfer(w, net, &init)?;
    }
    let rule = cfg.update_rule(&cfg.optimizer);
    let s = Classifier::per_position(net, init.clone(), rule, (batch, cfg.seed), exec)?;
    let mut task = LmTask {
        model,
        net,
        lm,
        cfg,
        corpus,
        s,
        batch,
        block,
        classes,
        total_steps,
        step_lr: 0.0,
        interval: (Instant::now(), 0),
        best_val: f64::INFINITY,
    };
    task.s.set_shard(split::shard(opts, batch)?)?;
    if let Some(ck) = &resume {
        check_optimizer(ck, format!("{:?}", cfg.optimizer.kind))?;
        let (p, mut st) = load_params(ck, net, &init, slots(&cfg.optimizer.kind))?;
        st.step = meta_u64(ck, "step")?;
        task.s.restore(&p, &st);
        log(&format!(
            "resumed from {} at step {}",
            opts.out.join("checkpoint.safetensors").display(),
            task.s.step
        ));
        nothing_left(task.s.step, total_steps, "")?;
    }
    if opts.dist.is_split() {
        let (mut p, mut st) = (task.s.params()?, task.s.opt_state()?);
        split::share_start(opts, &mut p, &mut st)?;
        task.s.restore(&p, &st);
    }
    task.interval = (Instant::now(), task.s.step);
    let metrics = Metrics::open_run(opts, resume.as_ref().map(|_| task.s.step))?;
    let pb = bar(total_steps, opts.progress, "steps".to_string());
    pb.set_position(task.s.step);
    let run = Run::start(opts, log, (metrics, pb), task.s.step, resume.is_some());
    drive(&mut task, run)
}

impl LmTask<'_> {
    /// The mean cross-entropy per held-out character (every one after the first, read in
    /// non-overlapping windows).
    fn validation_loss(&mut self) -> Result<f64, TrainError> {
        let rows = if self.s.is_gpu() {
            self.batch
        } else {
            self.batch.max(CPU_EVAL_ROWS)
        };
        let most = self.lm.eval_windows.map(|n| n as usize);
        for w in self.corpus.held_batches(rows, self.block, most) {
            self.s.eval_batch(&w.ids, &w.onehot(self.classes))?;
        }
        let st = self.s.take_eval_stats()?;
        Ok(st.loss / st.rows.max(1.0))
    }

    fn eval_due(&self) -> bool {
        let step = self.s.step;
        step.is_multiple_of(self.cfg.eval_every) || step >= self.total_steps
    }

    fn evaluate(&mut self, run: &mut Run) -> Result<(), TrainError> {
        let t0 = Instant::now();
        let vl = self.validation_loss()?;
        if !vl.is_finite() {
            return Err(TrainError::NonFinite {
                what: "validation loss",
                step: self.s.step,
                since: self.s.step,
                first: None,
                loss: vl,
                checkpoint: run.last_good.take(),
            });
        }
        self.best_val = self.best_val.min(vl);
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), self.s.step as f64);
        m.insert("val_loss".to_string(), vl);
        m.insert("val_bpc".to_string(), vl / std::f64::consts::LN_2);
        m.insert("seconds".to_string(), run.t0.elapsed().as_secs_f64());
        m.insert("eval_seconds".to_string(), t0.elapsed().as_secs_f64());
        run.metrics.log("val", &m)?;
        run.plot(LM_PLOT)?;
        let line = format!(
            "step {}/{}: validation loss {} ({} bits/char) | {:.1} s ({:.1} s to evaluate)",
            self.s.step,
            self.total_steps,
            figure(vl),
            figure(vl / std::f64::consts::LN_2),
            run.t0.elapsed().as_secs_f64(),
            t0.elapsed().as_secs_f64()
        );
        let log = &mut run.log;
        run.pb.suspend(|| log(&line));
        run.summary.final_metrics.extend(m);
        // The next interval's tokens per second leave the evaluation out.
        self.interval = (Instant::now(), self.s.step);
        Ok(())
    }

    fn save_at(&self, run: &Run) -> Result<PathBuf, TrainError> {
        let (s, cfg, model) = (&self.s, self.cfg, self.model);
        let params = s.params()?;
        if let Some(t) = nonfinite_tensor(&params) {
            return Err(TrainError::NonFiniteWeights {
                tensor: t.to_string(),
                step: s.step,
            });
        }
        let mut ck = Checkpoint {
            tensors: vec![],
            metadata: BTreeMap::new(),
        };
        save_params(&mut ck, None, (&params, &s.opt_state()?), s.step);
        let text = std::fs::canonicalize(&self.corpus.path).unwrap_or(self.corpus.path.clone());
        for (k, v) in [
            ("step", s.step.to_string()),
            ("lr", format!("{:e}", self.step_lr)),
            ("best_val_loss", format!("{:e}", self.best_val)),
            ("seed", cfg.seed.to_string()),
            ("model", model.file_name.clone()),
            ("model_sha256", model_sha256(model)),
            ("network", self.net.name.clone()),
            ("task", "language_model".into()),
            ("optimizer", format!("{:?}", cfg.optimizer.kind)),
            (VOCAB_KEY, self.corpus.vocab.to_record()),
            (TEXT_KEY, text.display().to_string()),
            (TEXT_SHA_KEY, self.corpus.sha256.clone()),
            ("holdout", self.lm.holdout.to_string()),
        ] {
            ck.metadata.insert(k.to_string(), v);
        }
        run.write_checkpoint(&mut ck)
    }
}

impl Task for LmTask<'_> {
    type Reading = LossStats;
    const PLOT: &'static [PanelSpec] = LM_PLOT;
    const STOP: StopCheck = StopCheck::AfterStep;

    fn step_count(&self) -> u64 {
        self.s.step
    }

    fn done(&self) -> bool {
        self.s.step >= self.total_steps
    }

    fn step(&mut self, run: &mut Run) -> Result<bool, TrainError> {
        let (batch, block) = (self.batch, self.block);
        let w = self
            .corpus
            .train_batch(batch, block, self.cfg.seed, self.s.step);
        self.step_lr =
            self.cfg
                .schedule
                .step_lr(self.cfg.optimizer.lr, self.s.step, self.total_steps);
        // This process's windows of the batch (all of them but in a data-parallel run).
        let rows = run.opts.dist.rows(batch);
        let ids = &w.ids[rows.start * block..rows.end * block];
        let hot = w.onehot(self.classes);
        let per = block * self.classes;
        self.s
            .train_step(ids, &hot[rows.start * per..rows.end * per], self.step_lr)?;
        Ok(true)
    }

    fn log_due(&self, stop: bool) -> bool {
        self.s.step.is_multiple_of(self.cfg.log_every) || self.eval_due() || stop
    }

    fn read(&mut self) -> Result<(Losses, LossStats), TrainError> {
        let st = self.s.take_stats()?;
        Ok((vec![("loss", st.loss / st.rows.max(1.0))], st))
    }

    fn nonfinite_at(&self) -> Option<u64> {
        self.s.nonfinite_at
    }

    fn nonfinite_params(&mut self, read_device: bool) -> Result<Option<(u64, String)>, TrainError> {
        Ok(self.s.nonfinite_params(read_device)?)
    }

    fn report(&mut self, run: &mut Run, st: LossStats, _stop: bool) -> Result<(), TrainError> {
        let loss = st.loss / st.rows.max(1.0);
        let (t0, first) = self.interval;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let tokens = (self.s.step - first) as f64 * (self.batch * self.block) as f64;
        let mut m = BTreeMap::new();
        m.insert("step".to_string(), self.s.step as f64);
        m.insert("train_loss".to_string(), loss);
        m.insert("train_bpc".to_string(), loss / std::f64::consts::LN_2);
        m.insert("lr".to_string(), self.step_lr);
        m.insert("tokens_per_second".to_string(), tokens / secs);
        m.insert("seconds".to_string(), run.t0.elapsed().as_secs_f64());
        run.metrics.log("train", &m)?;
        run.plot(LM_PLOT)?;
        run.pb.set_message(format!(
            "loss {} | {:.0} tok/s | lr {}",
            figure(loss),
            tokens / secs,
            rate(self.step_lr)
        ));
        if !run.opts.progress {
            let line = format!(
                "step {}/{}: train loss {} ({} bits/char) | lr {} | {:.0} tokens/s",
                self.s.step,
                self.total_steps,
                figure(loss),
                figure(loss / std::f64::consts::LN_2),
                rate(self.step_lr),
                tokens / secs
            );
            (run.log)(&line);
        }
        run.summary.final_metrics.extend(m);
        self.interval = (Instant::now(), self.s.step);
        Ok(())
    }

    fn after_step(&mut self, run: &mut Run) -> Result<(), TrainError> {
        if self.eval_due() {
            self.evaluate(run)?;
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        let every = self.cfg.checkpoint_every;
        every > 0 && self.s.step.is_multiple_of(every)
    }

    fn save(&self, run: &Run) -> Result<PathBuf, TrainError> {
        self.save_at(run)
    }

    fn stop_line(&self, run: &Run) -> String {
        format!(
            "interrupted at step {}: checkpoint written to {}; continue with --resume",
            self.s.step,
            run.opts.out.join("checkpoint.safetensors").display()
        )
    }

    fn finish(&mut self, run: &mut Run, interrupted: bool) -> Result<(), TrainError> {
        run.pb.finish_and_clear();
        if !interrupted {
            self.save_at(run)?;
        }
        Ok(())
    }
}
