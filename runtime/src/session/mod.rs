//! Training sessions: a classifier or a GAN bound to an executor (the wgpu program or the CPU
//! reference), with the same semantics on both so their steps can be compared number for number.
//!
//! Each session is written once, against a backend trait ([`backend`]) that the CPU reference
//! ([`cpu_backend`]) and the GPU program ([`gpu_backend`]) implement.

mod backend;
mod classifier;
mod cpu_backend;
mod gan;
mod gpu_backend;
mod gpu_gan;
mod gpu_minimise;
mod gpu_params;
mod minimise;

pub use classifier::Classifier;
pub use gan::{Gan, GanStats, GeneratorLoss};
pub use minimise::{ema_update, node_named, Minimiser, Sums};

use crate::cpu;
use crate::gpu::{Gpu, GpuError};
use netc_compiler::ir::Network;
use netc_compiler::schedule::{LowerError, Optimizer};
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
    /// What the GPU path cannot run yet (data-parallel training, micro-batches).
    #[error("{0}: runs on the CPU executor only for now; use --device cpu")]
    CpuOnly(String),
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

/// Adam's bias corrections for step t (1-based) as the kernels take them: [lr, 1/c1, 1/c2,
/// mark] with c = 1 - beta^t (shaders/adam.wgsl), reciprocals taken in f64 as the CPU
/// reference does; `mark` is the step a non-finite update is recorded at (exact as an f32 up
/// to 2^24 steps).
fn hyper(opt: &Optimizer, lr: f64, t: u64, mark: u64) -> [f32; 4] {
    match opt {
        Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => [
            lr as f32,
            (1.0 / (1.0 - beta1.powi(t as i32))) as f32,
            (1.0 / (1.0 - beta2.powi(t as i32))) as f32,
            mark as f32,
        ],
        Optimizer::Sgd { .. } => [lr as f32, 1.0, 1.0, mark as f32],
    }
}

/// The step the update kernels marked in `health` (see `Builder::health`), read back only
/// with `read_device`.
fn read_health(
    prog: &crate::gpu::GpuProgram,
    health: netc_compiler::schedule::TensorId,
    read_device: bool,
) -> Result<Option<u64>, RunError> {
    if !read_device {
        return Ok(None);
    }
    let v = prog.read(health)?;
    Ok(v.first().filter(|&&s| s != 0.0).map(|&s| s as u64))
}

/// The name of the first tensor of `sets` holding a NaN or an infinity.
fn first_nonfinite(sets: &[&crate::cpu::Params<f32>]) -> String {
    sets.iter()
        .flat_map(|p| p.names.iter().zip(&p.values))
        .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
        .map_or_else(|| "(one of the parameters)".to_string(), |(n, _)| n.clone())
}

/// Whether a batch may be split into parts (processes, micro-batches): on the CPU executor,
/// for a network without batchnorm (each part would normalise with its own statistics).
fn split_allowed(net: &Network, gpu: bool) -> Result<(), RunError> {
    if gpu {
        return Err(RunError::CpuOnly(
            "data-parallel training (mpirun) and --micro-batches".into(),
        ));
    }
    let bn = net
        .graph
        .node_indices()
        .find(|&n| matches!(net.graph[n].op, netc_compiler::ops::Op::BatchNorm { .. }));
    match bn {
        Some(n) => Err(RunError::Config(format!(
            "network `{}` has a batchnorm (`{}`), whose batch statistics would be each process's or micro-batch's own: data-parallel training and --micro-batches refuse it (no synchronised batchnorm yet)",
            net.name, net.graph[n].name
        ))),
        None => Ok(()),
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
