//! The compiler's program core: the static [`Program`] (tensors, deduplicated kernels, passes,
//! parameter bindings and the physical buffer plan) and the [`Builder`] that records it. Ops
//! emit their dispatches through the builder; the graph walks in `schedule` drive it. This
//! module sits below both and knows neither the ops nor the IR.

mod builder;
mod memory;
mod plan;
mod printout;

pub use builder::{Builder, RankRows};
pub use memory::{padded_len, Memory};

use crate::kernels::KernelSource;
use std::collections::HashMap;

pub type TensorId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Param,
    Grad,
    OptimizerState,
    /// Written by the host before a pass (inputs, targets, hyper-parameters, seeds).
    HostInput,
    /// Running sums read by the host.
    Stats,
    Activation,
}

#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    /// Elements (f32 or u32), not bytes.
    pub len: u64,
    pub kind: Kind,
    /// Kept across passes (parameters, host inputs, stats); transient ones are reused.
    pub persistent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch {
        kernel: usize,
        bindings: Vec<TensorId>,
        label: String,
    },
    Copy {
        src: TensorId,
        src_offset: u64,
        dst: TensorId,
        dst_offset: u64,
        len: u64,
    },
    Zero {
        dst: TensorId,
    },
}

#[derive(Debug, Clone)]
pub struct Pass {
    pub name: String,
    pub commands: Vec<Command>,
    /// Transient tensors the host may read after the pass (kept live to its end).
    pub keep: Vec<TensorId>,
}

/// A parameter tensor of some network, with its gradient and optimizer state buffers. A
/// tensor larger than the device's storage-binding limit (AlexNet's fc6 weight, 151 MB, against
/// lavapipe's 128 MiB) is held in parts: consecutive bindings of the same name, each a run of
/// whole rows (`offset`, `len` in elements of the logical tensor), with their own gradient and
/// optimizer state. The host sees one tensor of `shape` either way.
#[derive(Debug, Clone)]
pub struct ParamBinding {
    pub net: String,
    pub name: String,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub len: u64,
    pub tensor: TensorId,
    pub grad: Option<TensorId>,
    pub state: Vec<TensorId>,
}

/// The parameters of one network in a program.
#[derive(Debug, Clone)]
pub struct ParamSet {
    pub net: String,
    pub by_name: HashMap<String, usize>,
    pub bindings: Vec<ParamBinding>,
    pub trainable: bool,
}

impl ParamSet {
    /// The binding of a parameter (its first part when it was split).
    pub(crate) fn get(&self, name: &str) -> &ParamBinding {
        &self.bindings[self.by_name[name]]
    }

    /// Every part of a parameter (one unless it was split), in row order.
    pub fn parts(&self, name: &str) -> &[ParamBinding] {
        let first = self.by_name[name];
        let n = self.bindings[first..]
            .iter()
            .take_while(|b| b.name == name)
            .count();
        &self.bindings[first..first + n]
    }
}

/// The static schedule: tensors, deduplicated kernels, passes, and the physical buffer plan.
#[derive(Debug, Clone)]
pub struct Program {
    pub tensors: Vec<Tensor>,
    pub kernels: Vec<KernelSource>,
    pub passes: Vec<Pass>,
    pub params: Vec<ParamBinding>,
    /// Physical buffer sizes (elements) and the tensor -> buffer assignment.
    pub buffers: Vec<u64>,
    pub assignment: Vec<usize>,
    /// Activation bytes of micro-batches a memory plan counted but did not lower
    /// ([`Builder::for_memory`]); 0 in a program that runs.
    pub repeated_bytes: u64,
}

impl Program {
    pub fn pass(&self, name: &str) -> Option<usize> {
        self.passes.iter().position(|p| p.name == name)
    }
    /// Bytes of all physical buffers.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers.iter().map(|b| b * 4).sum()
    }
    /// Bytes the transient tensors would take without reuse.
    pub fn unplanned_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len * 4).sum()
    }
}
