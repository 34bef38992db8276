//! WGSL kernel generation: the templates in shaders/ specialised with static sizes and flags.
//! Shapes are known when a schedule is built, so every size is a constant in the shader text.
//! This module does not depend on wgpu; [`validate`] checks generated WGSL with naga.
//!
//! Here: what a kernel is and how it reads and writes ([`KernelSource`], [`ReadPath`],
//! [`Store`], [`Act`]) and what it asks of a device; the template plumbing is in `template`,
//! the kernel families in `matmul` (and `matmul_texture`), `elementwise`, `loss` and `update`.

mod elementwise;
mod loss;
mod matmul;
mod matmul_texture;
pub mod prim;
mod template;
#[cfg(test)]
mod tests;
mod update;

pub use elementwise::copy;
pub(crate) use elementwise::{elementwise, row_kernel};
pub use loss::{bce_logits, softmax_xent, sum_into, sum_rows};
pub use matmul::{bias_grad, matmul, matmul_for, Gemm};
pub use matmul_texture::TEX_GEMM_THREADS;
pub use template::f32_lit;
pub(crate) use template::{acc_tag, per_element, store_elem, store_scalar, with_old, Reads};
pub use update::{
    adam, ema, grad_sumsq, sgd, update_group, update_group_with, Clip, Optimizer, MAX_GROUP,
};

/// A specialised kernel and its dispatch size. `source` is complete WGSL with entry `main`.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSource {
    /// Template and specialisation, e.g. `matmul[128x784x128 tb bias relu]`.
    pub name: String,
    pub source: String,
    pub groups: [u32; 3],
    /// Bindings that are texture mirrors of an operand rather than the operand's buffer.
    pub mirrors: Vec<Mirror>,
}

/// How kernels read the tensors they take in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPath {
    /// Storage-buffer loads: what GPUs do best.
    #[default]
    Storage,
    /// Texel fetches from an rgba32float mirror of the operand's buffer, which the runtime
    /// refreshes with a copy before the dispatch. On software rasterisers (lavapipe) every
    /// storage load runs a per-lane loop (about 60 ns per 8 lanes) while a texel fetch is one
    /// gather of four floats: 5-10x cheaper. The mirror is a sampled texture here: the
    /// fallback for CPU adapters that cannot bind it as a read-only storage texture.
    Texture,
    /// The same mirrors bound as read-only storage textures (`texture_storage_2d<rgba32float,
    /// read>`), the path for CPU adapters. An image has one mip level, so llvmpipe's load is
    /// the gather alone; its sampled fetch is an out-of-line call that first works out every
    /// lane's mip level, size and row stride (about 110 instructions per fetch, two thirds of
    /// the dense kernel's time). Same kernels otherwise; the step is about 20% faster.
    Image,
}

impl ReadPath {
    /// Reads go through texture mirrors (sampled or storage textures).
    pub fn mirrored(self) -> bool {
        self != ReadPath::Storage
    }

    /// The WGSL type of a mirror and the load of texel `c` (a vec2<u32>) from mirror `t`.
    fn mirror_decl(self, t: &str, c: &str) -> (&'static str, String) {
        match self {
            ReadPath::Image => (
                "texture_storage_2d<rgba32float, read>",
                format!("textureLoad({t}, {c})"),
            ),
            _ => ("texture_2d<f32>", format!("textureLoad({t}, {c}, 0)")),
        }
    }
}

/// Texels per mirror row: 64 KiB rows meet wgpu's 256-byte copy alignment, and 4096 is
/// within every adapter's texture width limit (WebGPU guarantees 8192).
pub const MIRROR_WIDTH: u64 = 4096;

/// Binding `binding` of a kernel is the texture mirror of the dispatch's operand `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirror {
    pub binding: u32,
    pub of: u32,
}

/// Mirrors of operands a kernel also writes sit at this binding plus the operand's index (so
/// a kernel has at most this many operands: a grouped optimizer update takes 4 per tensor).
const MIRROR_BINDING_BASE: u32 = 32;

/// wgpu's guaranteed maximum workgroups per dispatch dimension.
const MAX_GROUPS: u64 = 65_535;

/// How a kernel writes its result: overwrite, or add to what an earlier gradient put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Write,
    Accumulate,
}

/// Activations, as fused into matmul or run on their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
}

impl Act {
    pub(crate) fn forward_expr(self, x: &str) -> String {
        match self {
            Act::Identity => x.to_string(),
            Act::Relu => format!("max({x}, 0.0)"),
            Act::LeakyRelu(a) => format!("select({x} * {}, {x}, {x} > 0.0)", f32_lit(a)),
            // Stable for both signs: exp of a non-positive number only.
            Act::Sigmoid => {
                format!("select(exp({x}) / (1.0 + exp({x})), 1.0 / (1.0 + exp(-{x})), {x} >= 0.0)")
            }
            // WGSL's tanh overflows to NaN for large |x| on some drivers; clamp (tanh(15) == 1 in f32).
            Act::Tanh => format!("tanh(clamp({x}, -15.0, 15.0))"),
        }
    }
    /// The gradient at the activation's input from `dy`, the gradient at its output, and `s`,
    /// the saved output (every derivative here is a function of the output).
    pub(crate) fn backward_expr(self, dy: &str, s: &str) -> String {
        match self {
            Act::Identity => dy.to_string(),
            Act::Relu => format!("select(0.0, {dy}, {s} > 0.0)"),
            Act::LeakyRelu(a) => format!("select({dy} * {}, {dy}, {s} > 0.0)", f32_lit(a)),
            Act::Sigmoid => format!("{dy} * {s} * (1.0 - {s})"),
            Act::Tanh => format!("{dy} * (1.0 - {s} * {s})"),
        }
    }
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Act::Identity => "",
            Act::Relu => " relu",
            Act::LeakyRelu(_) => " leaky_relu",
            Act::Sigmoid => " sigmoid",
            Act::Tanh => " tanh",
        }
    }
}

/// What a kernel asks of a device beyond its bindings' sizes, read from its WGSL: checked
/// against the adapter's limits before any pipeline is built (wgpu does not check all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub workgroup_size: [u32; 3],
    /// Bytes of workgroup memory.
    pub workgroup_bytes: u64,
    pub storage_buffers: u32,
    /// Sampled textures.
    pub textures: u32,
    pub storage_textures: u32,
}

impl KernelSource {
    pub fn resources(&self) -> Result<Resources, String> {
        let module = naga::front::wgsl::parse_str(&self.source)
            .map_err(|e| e.emit_to_string(&self.source))?;
        let ep = module
            .entry_points
            .first()
            .ok_or_else(|| format!("{} has no entry point", self.name))?;
        let mut r = Resources {
            workgroup_size: ep.workgroup_size,
            workgroup_bytes: 0,
            storage_buffers: 0,
            textures: 0,
            storage_textures: 0,
        };
        for (_, var) in module.global_variables.iter() {
            let inner = &module.types[var.ty].inner;
            match var.space {
                naga::AddressSpace::WorkGroup => {
                    r.workgroup_bytes += inner.size(module.to_ctx()) as u64
                }
                naga::AddressSpace::Storage { .. } => r.storage_buffers += 1,
                naga::AddressSpace::Handle => match inner {
                    naga::TypeInner::Image {
                        class: naga::ImageClass::Storage { .. },
                        ..
                    } => r.storage_textures += 1,
                    naga::TypeInner::Image { .. } => r.textures += 1,
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(r)
    }
}

/// Parses and validates WGSL with naga, as wgpu would, without an adapter.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}
