//! The training loop, written once for every task: a step; at the end of a log interval its
//! losses read and checked for NaN before anything is written from them; what the task does
//! between steps; the checkpoint interval; and the stop (a signal, a non-finite loss, the end
//! of the run), in that order. A [`Task`] (classifier.rs, gan.rs) supplies what its steps,
//! rows, lines and checkpoints are.

use super::run_folder::{plot, Metrics, PanelSpec};
use super::{interrupt_flag, Options, Summary, TrainError};
use crate::io::Checkpoint;
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The losses of a log interval, named as an error names them ("loss", "discriminator
/// loss", ...); the first that is not finite stops the run.
pub(super) type Losses = Vec<(&'static str, f64)>;

/// When a stop asked for by a signal takes effect.
pub(super) enum StopCheck {
    /// When the flag was set as the step ended: that step's losses were then read and checked,
    /// so its checkpoint is never written from weights whose losses were not looked at.
    AtStep,
    /// When the flag is set once the work after the step is done (an epoch's evaluation),
    /// so a signal during that work still stops the run there.
    AfterStep,
}

/// What a task is to the loop.
pub(super) trait Task {
    /// The figures a log interval reads besides its losses.
    type Reading;
    /// The panels of loss.png.
    const PLOT: &'static [PanelSpec];
    /// When a signal stops the run.
    const STOP: StopCheck;
    /// The steps trained so far (the generator's, for a GAN).
    fn step_count(&self) -> u64;
    /// Whether every step the run asks for is trained.
    fn done(&self) -> bool;
    /// Trains the next step; false when the data ran out first and no step was trained.
    fn step(&mut self, run: &mut Run) -> Result<bool, TrainError>;
    /// Whether the step just trained ends a log interval (`stop`: a stop was asked for).
    fn log_due(&self, stop: bool) -> bool;
    /// Reads the interval: the losses checked before anything else, and the other figures.
    fn read(&mut self) -> Result<(Losses, Self::Reading), TrainError>;
    /// The step at which the executor saw the first non-finite value, where it knows.
    fn nonfinite_at(&self) -> Option<u64>;
    /// The step whose update first left a NaN or infinite parameter, and that tensor: known
    /// at once on the CPU, on the GPU read from the device only with `read_device`.
    fn nonfinite_params(&mut self, read_device: bool) -> Result<Option<(u64, String)>, TrainError>;
    /// Writes the interval's row and tells the user (its losses are finite).
    fn report(&mut self, run: &mut Run, r: Self::Reading, stop: bool) -> Result<(), TrainError>;
    /// What comes after the step and its interval: sample grids, the end of an epoch.
    fn after_step(&mut self, run: &mut Run) -> Result<(), TrainError>;
    /// Whether the checkpoint interval ends here.
    fn checkpoint_due(&self) -> bool;
    /// Writes the checkpoint; its path.
    fn save(&self, run: &Run) -> Result<PathBuf, TrainError>;
    /// The line telling the user where the run stopped.
    fn stop_line(&self, run: &Run) -> String;
    /// The end of the run, in the task's order: the last checkpoint (unless `interrupted`,
    /// when it is written already), `--profile`'s lines, final samples.
    fn finish(&mut self, run: &mut Run, interrupted: bool) -> Result<(), TrainError>;
}

/// What the loop keeps for any task.
pub(super) struct Run<'a> {
    pub opts: &'a Options,
    pub log: &'a mut dyn FnMut(&str),
    pub metrics: Metrics,
    /// The bar on screen; a task replaces it (per epoch, per log interval).
    pub pb: ProgressBar,
    stop: Arc<AtomicBool>,
    pub t0: Instant,
    /// The step the run started at (the checkpoint's, resuming).
    pub start: u64,
    /// The last checkpoint written (the one resumed from at first), named by a NaN error.
    pub last_good: Option<PathBuf>,
    /// The last step whose losses were read and finite.
    pub last_read: u64,
    pub summary: Summary,
}

impl<'a> Run<'a> {
    /// Starts the clock of a run at step `start` (`resumed` from the checkpoint in the run
    /// folder), with its metrics log and first bar.
    pub fn start(
        opts: &'a Options,
        log: &'a mut dyn FnMut(&str),
        (metrics, pb): (Metrics, ProgressBar),
        start: u64,
        resumed: bool,
    ) -> Run<'a> {
        let stop = interrupt_flag();
        let t0 = Instant::now();
        let last_good = resumed.then(|| opts.out.join("checkpoint.safetensors"));
        Run {
            opts,
            log,
            metrics,
            pb,
            stop,
            t0,
            start,
            last_good,
            last_read: start,
            summary: Summary::default(),
        }
    }

    /// Whether a signal asked the run to stop, on any rank of a data-parallel run (a
    /// collective call there: every rank asks at the same points, so all stop together).
    pub fn stop_asked(&self) -> bool {
        self.opts.dist.any(self.stop.load(Ordering::SeqCst))
    }

    /// Redraws loss.png from the metrics so far (rank 0 owns the run folder).
    pub fn plot(&self, specs: &[PanelSpec]) -> Result<(), TrainError> {
        if !self.opts.dist.is_root() {
            return Ok(());
        }
        plot(&self.opts.out, specs)
    }

    /// Writes `ck` as the run's checkpoint (on rank 0; every rank holds the same weights),
    /// recording the processes and micro-batches it was trained on, which it does not depend
    /// on; its path.
    pub fn write_checkpoint(&self, ck: &mut Checkpoint) -> Result<PathBuf, TrainError> {
        let (n, k) = (self.opts.dist.size(), self.opts.micro_batches.max(1));
        ck.metadata.insert("ranks".into(), n.to_string());
        ck.metadata.insert("micro_batches".into(), k.to_string());
        let path = self.opts.out.join("checkpoint.safetensors");
        if self.opts.dist.is_root() {
            ck.save(&path)?;
        }
        Ok(path)
    }
}

/// Trains `task` to its end or a stop, and reports the run.
pub(super) fn drive<T: Task>(task: &mut T, mut run: Run) -> Result<Summary, TrainError> {
    while !task.done() {
        let mut stop = false;
        if task.step(&mut run)? {
            run.opts.dist.test_fault(task.step_count());
            run.pb.inc(1);
            stop = run.stop_asked();
            let due = task.log_due(stop);
            // Parameters are checked at every step where that costs no read of the device
            // (the CPU), else with the interval's losses. A loss known to be non-finite at
            // that step or before is the first symptom, and is named instead.
            if let Some((step, tensor)) = task.nonfinite_params(due)? {
                if task.nonfinite_at().is_some_and(|first| first <= step) {
                    let (losses, _) = task.read()?;
                    check_losses(task, &mut run, &losses)?;
                }
                return Err(bad_params(&mut run, step, tensor));
            }
            if due {
                log_interval(task, &mut run, stop)?;
            }
        } else if matches!(T::STOP, StopCheck::AtStep) {
            // A task that stopped part-way through a step (a GAN between its D steps) for a
            // signal checkpoints and stops as at the end of one.
            stop = run.stop_asked();
        }
        task.after_step(&mut run)?;
        let stopping = match T::STOP {
            StopCheck::AtStep => stop,
            StopCheck::AfterStep => run.stop_asked(),
        };
        if task.checkpoint_due() || stopping {
            // Read from the device before a checkpoint: never one from bad weights.
            if let Some((step, tensor)) = task.nonfinite_params(true)? {
                return Err(bad_params(&mut run, step, tensor));
            }
            run.last_good = Some(task.save(&run)?);
        }
        if stopping {
            run.pb.abandon_with_message("interrupted");
            let line = task.stop_line(&run);
            (run.log)(&line);
            run.summary.interrupted = true;
            break;
        }
    }
    run.pb.finish_and_clear();
    let interrupted = run.summary.interrupted;
    task.finish(&mut run, interrupted)?;
    run.plot(T::PLOT)?;
    run.summary.steps = task.step_count() - run.start;
    run.summary.seconds = run.t0.elapsed().as_secs_f64();
    Ok(run.summary)
}

/// The end of a log interval: its losses read and checked (a non-finite one stops the run,
/// naming the last checkpoint), then the task's row and line.
fn log_interval<T: Task>(task: &mut T, run: &mut Run, stop: bool) -> Result<(), TrainError> {
    let (losses, reading) = task.read()?;
    check_losses(task, run, &losses)?;
    run.last_read = task.step_count();
    task.report(run, reading, stop)
}

/// A non-finite loss of the interval stops the run, naming the last checkpoint.
fn check_losses<T: Task>(task: &T, run: &mut Run, losses: &Losses) -> Result<(), TrainError> {
    if let Some(&(what, loss)) = losses.iter().find(|(_, l)| !l.is_finite()) {
        run.pb.abandon();
        return Err(TrainError::NonFinite {
            what,
            step: task.step_count(),
            since: run.last_read,
            first: task.nonfinite_at(),
            loss,
            checkpoint: run.last_good.take(),
        });
    }
    Ok(())
}

/// The run stops at the step whose update left `tensor` non-finite; the last checkpoint
/// written stays as it was, and is named.
fn bad_params(run: &mut Run, step: u64, tensor: String) -> TrainError {
    run.pb.abandon();
    TrainError::NonFiniteParams {
        tensor,
        step,
        checkpoint: run.last_good.take(),
    }
}
