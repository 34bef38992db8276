//! A run split over processes (`mpirun -n N netc train`) or micro-batches: which tasks take
//! it, this process's rows of a batch, and the start every rank shares (docs/distributed.md).

use super::{Options, TrainError};
use crate::cpu::{OptState, Params};
use crate::dist::Shard;
use netc_compiler::train_config::Task;

/// Whether the run is split at all.
pub(super) fn is_split(opts: &Options) -> bool {
    opts.dist.is_split() || opts.micro_batches > 1
}

/// Refuses a split run of a task that does not take one yet (before anything is read): a new
/// task is listed here once its session takes a `Shard` (docs/distributed.md).
pub(super) fn check_task(opts: &Options, task: &Task) -> Result<(), TrainError> {
    let takes = matches!(
        task,
        Task::Classifier { .. } | Task::Gan(_) | Task::Minimise(_) | Task::LanguageModel(_)
    );
    if takes || !is_split(opts) {
        return Ok(());
    }
    Err(TrainError::Setup(
        "data-parallel training (mpirun) and --micro-batches do not take this task yet; run it as one process".into(),
    ))
}

/// This process's rows of a batch of `batch`.
pub(super) fn shard(opts: &Options, batch: usize) -> Result<Shard, TrainError> {
    Shard::new(batch, opts.micro_batches, &opts.dist).map_err(|e| TrainError::Setup(e.0))
}

/// Rank 0's starting weights and optimizer state (fresh, `--weights` or `--resume`) on every
/// rank, then checked equal there: the ranks train one model only if they start from one.
pub(super) fn share_start(
    opts: &Options,
    params: &mut Params<f32>,
    state: &mut OptState<f32>,
) -> Result<(), TrainError> {
    let dist = &opts.dist;
    if !dist.is_split() {
        return Ok(());
    }
    let step = dist
        .from_root(|| Ok(state.step.to_le_bytes().to_vec()))
        .map_err(TrainError::Setup)?;
    state.step = u64::from_le_bytes(step.try_into().unwrap_or_default());
    for v in params
        .values
        .iter_mut()
        .chain(state.slots.iter_mut().flatten())
    {
        dist.broadcast_f32(v);
    }
    // The step's bits go into the digest with the values'.
    let step = [
        f32::from_bits(state.step as u32),
        f32::from_bits((state.step >> 32) as u32),
    ];
    let all: Vec<&[f32]> = std::iter::once(&step[..])
        .chain(params.values.iter().map(|v| &v[..]))
        .chain(state.slots.iter().flatten().map(|v| &v[..]))
        .collect();
    dist.verify_same("starting weights and optimizer state", &all)
        .map_err(|e| TrainError::Setup(e.0))
}
