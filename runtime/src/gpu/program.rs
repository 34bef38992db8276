//! A [`Program`] instantiated on a device: its buffers, texture mirrors, pipelines and the
//! prepared commands of each pass (bind groups made once), built in that order.

use super::limits::check_limits;
use super::{Gpu, GpuError};
use netc_compiler::kernels::MIRROR_WIDTH;
use netc_compiler::schedule::{Command, Program};

pub(super) enum Prepared {
    Dispatch {
        pipeline: usize,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    Copy {
        src: usize,
        src_offset: u64,
        dst: usize,
        dst_offset: u64,
        bytes: u64,
    },
    Zero {
        buf: usize,
    },
    /// Refreshes a buffer's texture mirror (before a kernel that reads it through textures).
    Mirror {
        buf: usize,
    },
}

/// Floats per planned buffer, padded to whole texels (and `rd4` quads).
pub(super) fn padded(len: u64) -> u64 {
    netc_compiler::schedule::padded_len(len)
}

/// Width and height in texels of the mirror of a buffer of `len` floats.
fn mirror_extent(len: u64) -> (u64, u64) {
    let texels = padded(len) / 4;
    (texels.min(MIRROR_WIDTH), texels.div_ceil(MIRROR_WIDTH))
}

/// Counters that prove the replay: objects are created once, each pass is one submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub pipelines_created: u64,
    pub bind_groups_created: u64,
    pub buffers_created: u64,
    /// Bytes of the storage buffers created for the program (what `netc check` reports).
    pub buffer_bytes: u64,
    pub textures_created: u64,
    pub submissions: u64,
}

/// A [`Program`] instantiated on a device.
pub struct GpuProgram {
    pub gpu: Gpu,
    pub program: Program,
    pub(super) buffers: Vec<wgpu::Buffer>,
    /// The texture mirror of each buffer some kernel reads through textures.
    pub(super) mirrors: Vec<Option<wgpu::Texture>>,
    pub(super) pipelines: Vec<wgpu::ComputePipeline>,
    pub(super) passes: Vec<Vec<Prepared>>,
    pub(super) staging: wgpu::Buffer,
    pub counters: Counters,
}

impl GpuProgram {
    /// Instantiates `program` on `gpu`, in stages: sizes checked, buffers, texture mirrors, the
    /// read-back buffer, kernel limits and pipelines, then each pass's prepared commands.
    pub fn new(gpu: Gpu, program: Program) -> Result<GpuProgram, GpuError> {
        check_sizes(&gpu, &program)?;
        let mut counters = Counters::default();
        let buffers = create_buffers(&gpu, &program, &mut counters);
        let mirrored = mirrored_buffers(&gpu, &program)?;
        let mirrors = create_mirrors(&gpu, &program, &mirrored, &mut counters);
        let views: Vec<Option<wgpu::TextureView>> = mirrors
            .iter()
            .map(|m| m.as_ref().map(|t| t.create_view(&Default::default())))
            .collect();
        let staging = create_staging(&gpu, &program);
        let users = kernel_users(&program);
        for (k, ks) in program.kernels.iter().enumerate() {
            check_limits(ks, &gpu, &users[k].join(", "))?;
        }
        let pipelines = create_pipelines(&gpu, &program, &users, &mut counters)?;
        let resources = Resources {
            gpu: &gpu,
            program: &program,
            buffers: &buffers,
            views: &views,
            pipelines: &pipelines,
        };
        let mut passes = vec![];
        for p in &program.passes {
            passes.push(resources.prepare_pass(p, &mut counters)?);
        }
        let prog = GpuProgram {
            gpu,
            program,
            buffers,
            mirrors,
            pipelines,
            passes,
            staging,
            counters,
        };
        prog.warm_up()?;
        Ok(prog)
    }
}

/// Every tensor's buffer within the adapter's largest storage binding.
fn check_sizes(gpu: &Gpu, program: &Program) -> Result<(), GpuError> {
    let max_binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size);
    for (t, tensor) in program.tensors.iter().enumerate() {
        let bytes = program.buffers[program.assignment[t]] * 4;
        if bytes > max_binding {
            return Err(GpuError::TooLarge {
                tensor: tensor.name.clone(),
                bytes,
                adapter: gpu.info.name.clone(),
                limit: max_binding,
            });
        }
    }
    Ok(())
}

/// One storage buffer per planned buffer, padded to whole texels.
fn create_buffers(gpu: &Gpu, program: &Program, counters: &mut Counters) -> Vec<wgpu::Buffer> {
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    program
        .buffers
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            counters.buffers_created += 1;
            counters.buffer_bytes += padded(len) * 4;
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(&format!("netc buffer {i}")),
                size: padded(len) * 4,
                usage,
                mapped_at_creation: false,
            })
        })
        .collect()
}

/// Which buffers some kernel reads through textures (each mirror within the adapter's
/// texture height).
fn mirrored_buffers(gpu: &Gpu, program: &Program) -> Result<Vec<bool>, GpuError> {
    let mut mirrored = vec![false; program.buffers.len()];
    for p in &program.passes {
        for c in &p.commands {
            if let Command::Dispatch {
                kernel, bindings, ..
            } = c
            {
                for m in &program.kernels[*kernel].mirrors {
                    let t = bindings[m.of as usize];
                    let b = program.assignment[t];
                    if !mirrored[b] {
                        let (_, height) = mirror_extent(program.buffers[b]);
                        let limit = gpu.limits.max_texture_dimension_2d as u64;
                        if height > limit {
                            return Err(GpuError::MirrorTooLarge {
                                tensor: program.tensors[t].name.clone(),
                                height,
                                adapter: gpu.info.name.clone(),
                                limit,
                            });
                        }
                    }
                    mirrored[b] = true;
                }
            }
        }
    }
    Ok(mirrored)
}

/// Texture mirrors, for the buffers read through textures.
fn create_mirrors(
    gpu: &Gpu,
    program: &Program,
    mirrored: &[bool],
    counters: &mut Counters,
) -> Vec<Option<wgpu::Texture>> {
    mirrored
        .iter()
        .enumerate()
        .map(|(b, &m)| {
            m.then(|| {
                counters.textures_created += 1;
                let (width, height) = mirror_extent(program.buffers[b]);
                gpu.device.create_texture(&wgpu::TextureDescriptor {
                    label: Some(&format!("netc mirror {b}")),
                    size: wgpu::Extent3d {
                        width: width as u32,
                        height: height as u32,
                        depth_or_array_layers: 1,
                    },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: wgpu::TextureFormat::Rgba32Float,
                    // Bindable both ways where the adapter allows: the program's
                    // kernels, not the device, say which read path they take.
                    usage: wgpu::TextureUsages::TEXTURE_BINDING
                        | wgpu::TextureUsages::COPY_DST
                        | if gpu.image_reads {
                            wgpu::TextureUsages::STORAGE_BINDING
                        } else {
                            wgpu::TextureUsages::empty()
                        },
                    view_formats: &[],
                })
            })
        })
        .collect()
}

/// The read-back buffer, as large as the largest buffer.
fn create_staging(gpu: &Gpu, program: &Program) -> wgpu::Buffer {
    let largest = program
        .buffers
        .iter()
        .copied()
        .map(padded)
        .max()
        .unwrap_or(4)
        * 4;
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("netc readback"),
        size: largest.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Which layers each kernel serves (at most four), so a compile error names them.
fn kernel_users(program: &Program) -> Vec<Vec<String>> {
    let mut users: Vec<Vec<String>> = vec![vec![]; program.kernels.len()];
    for p in &program.passes {
        for c in &p.commands {
            if let Command::Dispatch { kernel, label, .. } = c {
                if users[*kernel].len() < 4 && !users[*kernel].contains(label) {
                    users[*kernel].push(label.clone());
                }
            }
        }
    }
    users
}

/// One compute pipeline per kernel, a validation error reported as the kernel's.
fn create_pipelines(
    gpu: &Gpu,
    program: &Program,
    users: &[Vec<String>],
    counters: &mut Counters,
) -> Result<Vec<wgpu::ComputePipeline>, GpuError> {
    let mut pipelines = vec![];
    for (k, ks) in program.kernels.iter().enumerate() {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = gpu
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&ks.name),
                source: wgpu::ShaderSource::Wgsl(ks.source.as_str().into()),
            });
        let pipeline = gpu
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&ks.name),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                kernel: ks.name.clone(),
                layers: users[k].join(", "),
                message: e.to_string(),
            });
        }
        counters.pipelines_created += 1;
        pipelines.push(pipeline);
    }
    Ok(pipelines)
}

/// What a pass's commands are prepared against.
struct Resources<'a> {
    gpu: &'a Gpu,
    program: &'a Program,
    buffers: &'a [wgpu::Buffer],
    views: &'a [Option<wgpu::TextureView>],
    pipelines: &'a [wgpu::ComputePipeline],
}

impl Resources<'_> {
    /// A pass's commands with their bind groups, mirror refreshes inserted where a kernel
    /// reads a mirror that is not fresh.
    fn prepare_pass(
        &self,
        p: &netc_compiler::schedule::Pass,
        counters: &mut Counters,
    ) -> Result<Vec<Prepared>, GpuError> {
        let program = self.program;
        let mut prepared = vec![];
        // Which mirrors hold their buffer's current contents. The host may write any
        // buffer between passes, so each pass starts with none.
        let mut fresh = vec![false; self.buffers.len()];
        for c in &p.commands {
            let item = match c {
                Command::Dispatch {
                    kernel,
                    bindings,
                    label,
                } => {
                    let ks = &program.kernels[*kernel];
                    for m in &ks.mirrors {
                        let b = program.assignment[bindings[m.of as usize]];
                        if !fresh[b] {
                            prepared.push(Prepared::Mirror { buf: b });
                            fresh[b] = true;
                        }
                    }
                    let bind_group = self.bind_group(*kernel, bindings, label, &mut fresh)?;
                    counters.bind_groups_created += 1;
                    Prepared::Dispatch {
                        pipeline: *kernel,
                        bind_group,
                        groups: program.kernels[*kernel].groups,
                    }
                }
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    len,
                } => {
                    fresh[program.assignment[*dst]] = false;
                    Prepared::Copy {
                        src: program.assignment[*src],
                        src_offset: src_offset * 4,
                        dst: program.assignment[*dst],
                        dst_offset: dst_offset * 4,
                        bytes: len * 4,
                    }
                }
                Command::Zero { dst } => {
                    fresh[program.assignment[*dst]] = false;
                    Prepared::Zero {
                        buf: program.assignment[*dst],
                    }
                }
            };
            prepared.push(item);
        }
        Ok(prepared)
    }

    /// A dispatch's bind group: buffers, or texture views where the kernel reads a mirror
    /// (extra mirror bindings after the buffers); whatever is bound as a buffer goes stale in
    /// `fresh`.
    fn bind_group(
        &self,
        kernel: usize,
        bindings: &[netc_compiler::schedule::TensorId],
        label: &str,
        fresh: &mut [bool],
    ) -> Result<wgpu::BindGroup, GpuError> {
        let (gpu, program, views) = (self.gpu, self.program, self.views);
        let ks = &program.kernels[kernel];
        let layout = self.pipelines[kernel].get_bind_group_layout(0);
        let mirror_at = |binding: u32| ks.mirrors.iter().find(|m| m.binding == binding);
        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let b = program.assignment[t];
                wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: match (mirror_at(i as u32), &views[b]) {
                        (Some(_), Some(v)) => wgpu::BindingResource::TextureView(v),
                        _ => self.buffers[b].as_entire_binding(),
                    },
                }
            })
            .collect();
        for m in ks
            .mirrors
            .iter()
            .filter(|m| m.binding as usize >= bindings.len())
        {
            let b = program.assignment[bindings[m.of as usize]];
            if let Some(v) = &views[b] {
                entries.push(wgpu::BindGroupEntry {
                    binding: m.binding,
                    resource: wgpu::BindingResource::TextureView(v),
                });
            }
        }
        // Whatever is bound as a buffer may be written: its mirror goes stale.
        for (i, &t) in bindings.iter().enumerate() {
            if mirror_at(i as u32).is_none() {
                fresh[program.assignment[t]] = false;
            }
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &layout,
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                kernel: program.kernels[kernel].name.clone(),
                layers: label.to_string(),
                message: e.to_string(),
            });
        }
        Ok(bind_group)
    }
}
