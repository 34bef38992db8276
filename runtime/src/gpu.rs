//! The wgpu runtime: adapter selection, device limits, and replay of a compiled [`Program`]:
//! buffers, pipelines and bind groups are created once; each pass is one command buffer and
//! one submission; the host reads back only the tensors it asks for. Waits are bounded.

use netc_compiler::kernels::{KernelSource, ReadPath, MIRROR_WIDTH};
use netc_compiler::schedule::{Command, Program, TensorId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn summary(info: &wgpu::AdapterInfo) -> AdapterSummary {
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
    }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// Every adapter wgpu can see, best first.
pub fn adapters() -> Vec<AdapterSummary> {
    sorted_adapters()
        .iter()
        .map(|a| summary(&a.get_info()))
        .collect()
}

fn sorted_adapters() -> Vec<wgpu::Adapter> {
    let mut v = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    v.sort_by_key(|a| {
        let i = a.get_info();
        (rank(i.device_type), backend_rank(i.backend))
    });
    v
}

/// An open device with the limits it was granted.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: AdapterSummary,
    pub limits: wgpu::Limits,
    pub timestamps: bool,
    /// How kernels built for this device read their inputs: texture mirrors on CPU adapters
    /// (software rasterisers, where storage loads are slow), bound as read-only storage
    /// textures where the adapter allows it; storage loads elsewhere.
    /// `NETC_READS=storage|texture|image` overrides.
    pub reads: ReadPath,
    /// rgba32float textures can be bound as read-only storage textures ([`ReadPath::Image`]).
    pub image_reads: bool,
    /// A software adapter (lavapipe, llvmpipe, WARP): its invocations run on this machine's
    /// CPU threads.
    pub cpu_adapter: bool,
    lost: Arc<AtomicBool>,
    errors: Arc<std::sync::Mutex<Option<String>>>,
}

impl Gpu {
    /// Opens an adapter: `auto` (the best one), `gpu` (a hardware one), a backend (`vulkan`,
    /// `gl`, `metal`, `dx12`), or a name substring.
    pub fn open(choice: &str) -> Result<Gpu, GpuError> {
        let all = sorted_adapters();
        let adapter = match choice {
            "auto" => all.into_iter().next().ok_or(GpuError::NoAdapter)?,
            "gpu" => all
                .into_iter()
                .find(|a| rank(a.get_info().device_type) <= 2)
                .ok_or_else(|| GpuError::NoMatch("a hardware GPU".into()))?,
            backend @ ("vulkan" | "gl" | "metal" | "dx12") => all
                .into_iter()
                .find(|a| format!("{:?}", a.get_info().backend).to_lowercase() == backend)
                .ok_or_else(|| GpuError::NoMatch(format!("a {backend} adapter")))?,
            name => {
                let lower = name.to_lowercase();
                all.into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&lower))
                    .ok_or_else(|| GpuError::NoMatch(name.into()))?
            }
        };
        let info = summary(&adapter.get_info());
        let cpu_adapter = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        // Read-only storage textures of rgba32float are core WebGPU, but say so before relying
        // on them; an adapter without them, or with fewer per stage than one Adam update
        // reads (w, g, m, v and hyper: WebGPU guarantees only 4), takes sampled mirrors.
        let images = {
            let f = adapter.get_texture_format_features(wgpu::TextureFormat::Rgba32Float);
            f.allowed_usages
                .contains(wgpu::TextureUsages::STORAGE_BINDING)
                && f.flags
                    .contains(wgpu::TextureFormatFeatureFlags::STORAGE_READ_ONLY)
                && adapter.limits().max_storage_textures_per_shader_stage >= 5
        };
        let reads = match std::env::var("NETC_READS").ok().as_deref() {
            None | Some("") => match (cpu_adapter, images) {
                (false, _) => ReadPath::Storage,
                (true, true) => ReadPath::Image,
                (true, false) => ReadPath::Texture,
            },
            Some("storage") => ReadPath::Storage,
            Some("texture") => ReadPath::Texture,
            Some("image") => ReadPath::Image,
            Some(other) => return Err(GpuError::BadReads(other.into())),
        };
        // Ask for everything the adapter allows: AlexNet's fc6 weight alone is 151 MB.
        let limits = adapter.limits();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("netc"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Open {
            adapter: info.name.clone(),
            message: e.to_string(),
        })?;
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |_, _| flag.store(true, Ordering::SeqCst));
        // An error outside an error scope is reported by the next wait instead of panicking.
        let errors = Arc::new(std::sync::Mutex::new(None::<String>));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            timestamps,
            reads,
            image_reads: images,
            cpu_adapter,
            lost,
            errors,
        })
    }

    /// Waits for all submitted work, at most [`WAIT_LIMIT`].
    pub fn wait(&self) -> Result<(), GpuError> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(GpuError::Lost("device lost".into()));
        }
        if let Some(e) = self.errors.lock().ok().and_then(|mut s| s.take()) {
            return Err(GpuError::Validation(e));
        }
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(WAIT_LIMIT),
            })
            .map(|_| ())
            .map_err(|e| match e {
                wgpu::PollError::Timeout => GpuError::Timeout(WAIT_LIMIT),
                other => GpuError::Lost(other.to_string()),
            })
    }
}

/// For tests: the device, or None when there is none; with `NETC_REQUIRE_GPU=1` a missing
/// adapter is a failure, never a skip.
pub fn test_gpu() -> Option<Gpu> {
    match Gpu::open("auto") {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("NETC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("NETC_REQUIRE_GPU=1 but no adapter could be opened: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

enum Prepared {
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
fn padded(len: u64) -> u64 {
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

/// Time of one dispatch in a profiled pass.
#[derive(Debug, Clone)]
pub struct KernelTime {
    pub label: String,
    pub kernel: String,
    pub seconds: f64,
}

/// A [`Program`] instantiated on a device.
pub struct GpuProgram {
    pub gpu: Gpu,
    pub program: Program,
    buffers: Vec<wgpu::Buffer>,
    /// The texture mirror of each buffer some kernel reads through textures.
    mirrors: Vec<Option<wgpu::Texture>>,
    pipelines: Vec<wgpu::ComputePipeline>,
    passes: Vec<Vec<Prepared>>,
    staging: wgpu::Buffer,
    pub counters: Counters,
}

/// A kernel's workgroup size, workgroup memory, bindings and grid against the adapter's
/// limits, before any pipeline is built: a clear error instead of a driver failure.
fn check_limits(ks: &KernelSource, gpu: &Gpu, layers: &str) -> Result<(), GpuError> {
    let r = ks.resources().map_err(|message| GpuError::Shader {
        kernel: ks.name.clone(),
        layers: layers.to_string(),
        message,
    })?;
    let l = &gpu.limits;
    let [x, y, z] = r.workgroup_size;
    let checks: [(&'static str, u64, u64); 11] = [
        (
            "invocations in x",
            x as u64,
            l.max_compute_workgroup_size_x as u64,
        ),
        (
            "invocations in y",
            y as u64,
            l.max_compute_workgroup_size_y as u64,
        ),
        (
            "invocations in z",
            z as u64,
            l.max_compute_workgroup_size_z as u64,
        ),
        (
            "invocations per workgroup",
            x as u64 * y as u64 * z as u64,
            l.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "bytes of workgroup memory",
            r.workgroup_bytes,
            l.max_compute_workgroup_storage_size as u64,
        ),
        (
            "storage buffers",
            r.storage_buffers as u64,
            l.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "sampled textures",
            r.textures as u64,
            l.max_sampled_textures_per_shader_stage as u64,
        ),
        (
            "storage textures",
            r.storage_textures as u64,
            l.max_storage_textures_per_shader_stage as u64,
        ),
        (
            "workgroups in x",
            ks.groups[0] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "workgroups in y",
            ks.groups[1] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "workgroups in z",
            ks.groups[2] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
    ];
    for (what, need, limit) in checks {
        if need > limit {
            return Err(GpuError::KernelLimits {
                kernel: ks.name.clone(),
                layers: layers.to_string(),
                what,
                need,
                limit,
                adapter: gpu.info.name.clone(),
            });
        }
    }
    Ok(())
}

impl Gpu {
    /// A schedule builder for this device: its read path, its per-stage binding limits and,
    /// for a CPU adapter, the threads it runs invocations on (lavapipe: one per core, or
    /// `LP_NUM_THREADS`).
    pub fn builder(&self) -> netc_compiler::schedule::Builder {
        let textures = match self.reads {
            ReadPath::Image => self.limits.max_storage_textures_per_shader_stage,
            _ => self.limits.max_sampled_textures_per_shader_stage,
        };
        let b = netc_compiler::schedule::Builder::with_reads(self.reads)
            .with_limits(self.limits.max_storage_buffers_per_shader_stage, textures)
            .with_binding_limit(self.limits.max_storage_buffer_binding_size);
        if !self.cpu_adapter {
            return b;
        }
        let threads = std::env::var("LP_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u64)
            });
        match threads {
            Some(t) => b.with_threads(t),
            None => b,
        }
    }
}

impl GpuProgram {
    pub fn new(gpu: Gpu, program: Program) -> Result<GpuProgram, GpuError> {
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
        let mut counters = Counters::default();
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffers: Vec<wgpu::Buffer> = program
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
            .collect();
        // Texture mirrors, for the buffers read through textures.
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
        let mirrors: Vec<Option<wgpu::Texture>> = mirrored
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
            .collect();
        let views: Vec<Option<wgpu::TextureView>> = mirrors
            .iter()
            .map(|m| m.as_ref().map(|t| t.create_view(&Default::default())))
            .collect();
        let largest = program
            .buffers
            .iter()
            .copied()
            .map(padded)
            .max()
            .unwrap_or(4)
            * 4;
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("netc readback"),
            size: largest.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Which layers each kernel serves, so a compile error names them.
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
        for (k, ks) in program.kernels.iter().enumerate() {
            check_limits(ks, &gpu, &users[k].join(", "))?;
        }
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
        let mut passes = vec![];
        for p in &program.passes {
            let mut prepared = vec![];
            // Which mirrors hold their buffer's current contents. The host may write any
            // buffer between passes, so each pass starts with none.
            let mut fresh = vec![false; buffers.len()];
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
                        let layout = pipelines[*kernel].get_bind_group_layout(0);
                        let mirror_at =
                            |binding: u32| ks.mirrors.iter().find(|m| m.binding == binding);
                        let mut entries: Vec<wgpu::BindGroupEntry> = bindings
                            .iter()
                            .enumerate()
                            .map(|(i, &t)| {
                                let b = program.assignment[t];
                                wgpu::BindGroupEntry {
                                    binding: i as u32,
                                    resource: match (mirror_at(i as u32), &views[b]) {
                                        (Some(_), Some(v)) => wgpu::BindingResource::TextureView(v),
                                        _ => buffers[b].as_entire_binding(),
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
                                kernel: program.kernels[*kernel].name.clone(),
                                layers: label.clone(),
                                message: e.to_string(),
                            });
                        }
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
            passes.push(prepared);
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

    /// Records one prepared kernel's dispatch into a compute pass.
    fn dispatch(
        &self,
        cp: &mut wgpu::ComputePass,
        pipeline: usize,
        bind_group: &wgpu::BindGroup,
        groups: [u32; 3],
    ) {
        cp.set_pipeline(&self.pipelines[pipeline]);
        cp.set_bind_group(0, bind_group, &[]);
        cp.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }

    /// Dispatches every prepared kernel over zero workgroups, which touches no memory. llvmpipe
    /// compiles a kernel's machine code at its first dispatch, not when the pipeline is made
    /// (seconds for the large matmuls on a cold shader cache); this moves that work here,
    /// before the first step is timed.
    fn warm_up(&self) -> Result<(), GpuError> {
        if !self.gpu.cpu_adapter {
            return Ok(());
        }
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("netc warm-up"),
            });
        {
            let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            for p in self.passes.iter().flatten() {
                if let Prepared::Dispatch {
                    pipeline,
                    bind_group,
                    ..
                } = p
                {
                    self.dispatch(&mut cp, *pipeline, bind_group, [0, 0, 0]);
                }
            }
        }
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait()
    }

    /// Texture-mirror refreshes (buffer-to-texture copies) in each run of a pass.
    pub fn mirror_refreshes(&self, pass: usize) -> usize {
        self.passes[pass]
            .iter()
            .filter(|p| matches!(p, Prepared::Mirror { .. }))
            .count()
    }

    fn buffer(&self, t: TensorId) -> &wgpu::Buffer {
        &self.buffers[self.program.assignment[t]]
    }

    /// Fills every activation and gradient buffer with NaN, so a kernel that leaves an element
    /// unwritten is caught by the comparison tests.
    pub fn poison(&self) {
        use netc_compiler::schedule::Kind;
        let mut done = vec![false; self.buffers.len()];
        for (t, tensor) in self.program.tensors.iter().enumerate() {
            let b = self.program.assignment[t];
            if matches!(tensor.kind, Kind::Activation | Kind::Grad) && !done[b] {
                done[b] = true;
                let nan = vec![f32::NAN; self.program.buffers[b] as usize];
                self.gpu
                    .queue
                    .write_buffer(&self.buffers[b], 0, bytemuck::cast_slice(&nan));
            }
        }
    }

    /// Queues host data into a tensor (applied before the next submission).
    pub fn write(&self, t: TensorId, data: &[f32]) {
        debug_assert!(data.len() as u64 <= self.program.tensors[t].len);
        self.gpu
            .queue
            .write_buffer(self.buffer(t), 0, bytemuck::cast_slice(data));
    }

    pub fn write_u32(&self, t: TensorId, data: &[u32]) {
        self.gpu
            .queue
            .write_buffer(self.buffer(t), 0, bytemuck::cast_slice(data));
    }

    fn encode(&self, encoder: &mut wgpu::CommandEncoder, prepared: &[Prepared]) {
        let mut i = 0;
        while i < prepared.len() {
            match &prepared[i] {
                Prepared::Dispatch { .. } => {
                    // Consecutive dispatches share one compute pass.
                    let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    });
                    while let Some(Prepared::Dispatch {
                        pipeline,
                        bind_group,
                        groups,
                    }) = prepared.get(i)
                    {
                        self.dispatch(&mut cp, *pipeline, bind_group, *groups);
                        i += 1;
                    }
                }
                Prepared::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    encoder.copy_buffer_to_buffer(
                        &self.buffers[*src],
                        *src_offset,
                        &self.buffers[*dst],
                        *dst_offset,
                        *bytes,
                    );
                    i += 1;
                }
                Prepared::Zero { buf } => {
                    encoder.clear_buffer(&self.buffers[*buf], 0, None);
                    i += 1;
                }
                Prepared::Mirror { buf } => {
                    self.encode_mirror(encoder, *buf);
                    i += 1;
                }
            }
        }
    }

    /// Copies a buffer into its texture mirror: the full 4096-texel rows, then the rest.
    fn encode_mirror(&self, encoder: &mut wgpu::CommandEncoder, buf: usize) {
        let Some(texture) = &self.mirrors[buf] else {
            return;
        };
        let texels = padded(self.program.buffers[buf]) / 4;
        let full_rows = texels / MIRROR_WIDTH;
        let rest = texels % MIRROR_WIDTH;
        let row_bytes = (MIRROR_WIDTH * 16) as u32;
        let mut copy = |row: u64, width: u64, height: u64| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &self.buffers[buf],
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: row * row_bytes as u64,
                        bytes_per_row: Some(row_bytes),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: row as u32,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: width as u32,
                    height: height as u32,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full_rows > 0 {
            copy(0, MIRROR_WIDTH, full_rows);
        }
        if rest > 0 {
            copy(full_rows, rest, 1);
        }
    }

    /// Runs one pass: one command buffer, one submission, no wait.
    pub fn run(&mut self, pass: usize) {
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(&self.program.passes[pass].name),
            });
        self.encode(&mut encoder, &self.passes[pass]);
        self.gpu.queue.submit([encoder.finish()]);
        self.counters.submissions += 1;
    }

    /// Waits for the device, then copies a tensor back to the host.
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>, GpuError> {
        let len = self.program.tensors[t].len;
        let bytes = len * 4;
        let mut encoder = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(self.buffer(t), 0, &self.staging, 0, bytes);
        self.gpu.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging
            .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
                let _ = tx.send(r);
            });
        self.gpu.wait()?;
        match rx.recv_timeout(WAIT_LIMIT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Map(e.to_string())),
            Err(_) => return Err(GpuError::Timeout(WAIT_LIMIT)),
        }
        let out = {
            let view = self
                .staging
                .get_mapped_range(0..bytes)
                .map_err(|e| GpuError::Map(format!("{e:?}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        self.staging.unmap();
        Ok(out)
    }

    /// Runs a pass with every dispatch timed: by timestamp queries when the adapter has them
    /// (`timestamps` = true), else by wall clock around each dispatch submitted on its own.
    pub fn profile(&mut self, pass: usize) -> Result<(Vec<KernelTime>, bool), GpuError> {
        let cmds: Vec<(String, String)> = self.program.passes[pass]
            .commands
            .iter()
            .map(|c| match c {
                Command::Dispatch { kernel, label, .. } => {
                    (label.clone(), self.program.kernels[*kernel].name.clone())
                }
                Command::Copy { .. } => ("copy".into(), "copy_buffer_to_buffer".into()),
                Command::Zero { .. } => ("zero".into(), "clear_buffer".into()),
            })
            .collect();
        // Prepared commands include mirror refreshes the program does not list.
        let cmds: Vec<(String, String)> = {
            let mut it = cmds.into_iter();
            self.passes[pass]
                .iter()
                .map(|p| match p {
                    Prepared::Mirror { .. } => ("mirror".into(), "copy_buffer_to_texture".into()),
                    _ => it.next().unwrap_or_default(),
                })
                .collect()
        };
        let mut times = vec![];
        if self.gpu.timestamps {
            let n = self.passes[pass].len() as u32;
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * n.max(1),
            });
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: 16 * n.max(1) as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile read"),
                size: 16 * n.max(1) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder =
                self.gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("profile"),
                    });
            let mut timed = vec![];
            for (i, p) in self.passes[pass].iter().enumerate() {
                match p {
                    Prepared::Dispatch {
                        pipeline,
                        bind_group,
                        groups,
                    } => {
                        let mut cp = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: &qs,
                                beginning_of_pass_write_index: Some(2 * i as u32),
                                end_of_pass_write_index: Some(2 * i as u32 + 1),
                            }),
                        });
                        self.dispatch(&mut cp, *pipeline, bind_group, *groups);
                        timed.push(i);
                    }
                    other => self.encode(&mut encoder, std::slice::from_ref(other)),
                }
            }
            // One resolve of the whole set: resolve offsets must be 256-byte aligned.
            encoder.resolve_query_set(&qs, 0..2 * n.max(1), &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16 * n.max(1) as u64);
            self.gpu.queue.submit([encoder.finish()]);
            let (tx, rx) = std::sync::mpsc::channel();
            read.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            self.gpu.wait()?;
            rx.recv_timeout(WAIT_LIMIT)
                .map_err(|_| GpuError::Timeout(WAIT_LIMIT))?
                .map_err(|e| GpuError::Map(e.to_string()))?;
            let period = self.gpu.queue.get_timestamp_period() as f64;
            {
                let view = read
                    .get_mapped_range(..)
                    .map_err(|e| GpuError::Map(format!("{e:?}")))?;
                let ticks: &[u64] = bytemuck::cast_slice(&view);
                for &i in &timed {
                    let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period * 1e-9;
                    times.push(KernelTime {
                        label: cmds[i].0.clone(),
                        kernel: cmds[i].1.clone(),
                        seconds: dt,
                    });
                }
            }
            read.unmap();
            Ok((times, true))
        } else {
            for (i, (label, kernel)) in cmds.iter().enumerate() {
                let mut encoder =
                    self.gpu
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("profile"),
                        });
                self.encode(&mut encoder, &self.passes[pass][i..i + 1]);
                let t0 = Instant::now();
                self.gpu.queue.submit([encoder.finish()]);
                self.gpu.wait()?;
                times.push(KernelTime {
                    label: label.clone(),
                    kernel: kernel.clone(),
                    seconds: t0.elapsed().as_secs_f64(),
                });
            }
            Ok((times, false))
        }
    }
}
