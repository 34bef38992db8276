//! What a program's buffers hold, in bytes as the runtime allocates them.

use super::{Kind, Program};

/// Elements a buffer of `len` floats is allocated with: whole quads (vec4 loads and stores,
/// rgba texels), at least one.
pub fn padded_len(len: u64) -> u64 {
    len.max(1).div_ceil(4) * 4
}

/// What a program's storage buffers hold, in bytes as allocated (padded to whole quads). A
/// buffer of its own counts for its tensor's kind; the shared transient buffers hold the
/// activations kept for the backward pass, the gradients flowing through it and other
/// temporaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub params: u64,
    pub grads: u64,
    pub optimizer_state: u64,
    pub activations: u64,
    /// Host-written inputs, targets, hyper-parameters and statistics.
    pub io: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.params + self.grads + self.optimizer_state + self.activations + self.io
    }
}

impl Program {
    /// Bytes the runtime allocates for this program's buffers (texture mirrors, which CPU
    /// adapters add, excluded), by what they hold.
    pub fn memory(&self) -> Memory {
        let mut owner: Vec<Option<Kind>> = vec![None; self.buffers.len()];
        let mut shared = vec![0usize; self.buffers.len()];
        for (t, &b) in self.assignment.iter().enumerate() {
            shared[b] += 1;
            owner[b] = Some(self.tensors[t].kind);
        }
        let mut m = Memory::default();
        for (b, &len) in self.buffers.iter().enumerate() {
            let bytes = padded_len(len) * 4;
            let kind = if shared[b] == 1 {
                owner[b].unwrap_or(Kind::Activation)
            } else {
                Kind::Activation
            };
            match kind {
                Kind::Param => m.params += bytes,
                Kind::Grad => m.grads += bytes,
                Kind::OptimizerState => m.optimizer_state += bytes,
                Kind::Activation => m.activations += bytes,
                Kind::HostInput | Kind::Stats => m.io += bytes,
            }
        }
        m
    }
}
