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
mod gpu_params;

pub use classifier::Classifier;
pub use gan::{Gan, GanStats, GeneratorLoss};

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
        Optimizer::Adam { beta1, beta2, .. } | Optimizer::AdamW { beta1, beta2, .. } => [
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
