//! The wgpu runtime: adapter selection, device limits, and replay of a compiled
//! [`Program`](netc_compiler::schedule::Program): buffers, pipelines and bind groups are created
//! once; each pass is one command buffer and one submission; the host reads back only the
//! tensors it asks for. Waits are bounded.

mod device;
mod limits;
mod profile;
mod program;
mod replay;

pub use device::{adapters, quiet_headless_vulkan_layer, test_gpu, Gpu};
pub use profile::KernelTime;
pub use program::{Counters, GpuProgram};

use std::time::Duration;

/// How long any wait on the device may take before it is reported as hung.
pub const WAIT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (looked at Vulkan, Metal, DX12 and GL); install a driver (on Linux without a GPU, Mesa's lavapipe: apt-get install mesa-vulkan-drivers) or use --device cpu")]
    NoAdapter,
    #[error("no adapter matches `{0}`; `netc devices` lists them")]
    NoMatch(String),
    #[error("could not open adapter `{adapter}`: {message}")]
    Open { adapter: String, message: String },
    #[error("tensor `{tensor}` needs {bytes} bytes but adapter `{adapter}` allows at most {limit} bytes per storage binding")]
    TooLarge {
        tensor: String,
        bytes: u64,
        adapter: String,
        limit: u64,
    },
    #[error("tensor `{tensor}` needs a {height}-row texture mirror but adapter `{adapter}` allows {limit} rows; use NETC_READS=storage or --device cpu")]
    MirrorTooLarge {
        tensor: String,
        height: u64,
        adapter: String,
        limit: u64,
    },
    #[error("NETC_READS must be `storage`, `texture` or `image`, not `{0}`")]
    BadReads(String),
    #[error("kernel {kernel} (for {layers}) failed to compile on this adapter: {message}")]
    Shader {
        kernel: String,
        layers: String,
        message: String,
    },
    #[error(
        "kernel {kernel} (for {layers}) needs {need} {what} but adapter `{adapter}` allows {limit}"
    )]
    KernelLimits {
        kernel: String,
        layers: String,
        what: &'static str,
        need: u64,
        limit: u64,
        adapter: String,
    },
    #[error("the device did not finish within {0:?}: it hung or was lost")]
    Timeout(Duration),
    #[error("the device was lost: {0}")]
    Lost(String),
    #[error("reading a buffer back failed: {0}")]
    Map(String),
    #[error("the device rejected a command: {0}")]
    Validation(String),
}

/// An adapter as `netc devices` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}
