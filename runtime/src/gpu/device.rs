//! Opening a device: the adapters wgpu sees, best first, the one chosen, its limits and read
//! path, bounded waits, and the schedule builder that fits it.

use super::{AdapterSummary, GpuError, WAIT_LIMIT};
use netc_compiler::kernels::ReadPath;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn instance() -> wgpu::Instance {
    quiet_headless_vulkan_layer();
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Mesa's implicit Vulkan layer VK_LAYER_MESA_device_select asks the Wayland compositor which
/// GPU drives the display; without XDG_RUNTIME_DIR (a server, a container, CI) it cannot ask,
/// changes nothing and prints `error: XDG_RUNTIME_DIR is invalid or not set` twice per
/// instance, which users read as a failure (and a passing test run printed 298 times). netc
/// ranks adapters itself, so the layer is switched off (its own NODEVICE_SELECT switch) in
/// exactly that case, unless the user set the switch. Done once, before the first instance:
/// `netc`'s `main` calls it first thing, before any thread exists; a library user (the tests)
/// gets it from the first [`instance`], before any Vulkan or Mesa code runs to read the
/// environment.
pub fn quiet_headless_vulkan_layer() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none()
            && std::env::var_os("NODEVICE_SELECT").is_none()
        {
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
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

/// An open device with the limits it was granted. A clone is the same device (wgpu's
/// handles are shared), for a program rebuilt on it.
#[derive(Clone)]
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
        Gpu::open_for_rank(choice, 0)
    }

    /// Opens the adapter of the process with `local_rank` among those of a data-parallel job
    /// on this machine: of the adapters `choice` matches, those of the best one's kind and
    /// backend, the one at `local_rank` modulo their count, so two GPUs in one machine are
    /// told apart and ranks share them round-robin when there are fewer.
    pub fn open_for_rank(choice: &str, local_rank: usize) -> Result<Gpu, GpuError> {
        let all = sorted_adapters();
        let key = |a: &wgpu::Adapter| {
            let i = a.get_info();
            (rank(i.device_type), backend_rank(i.backend))
        };
        let matching: Vec<wgpu::Adapter> = match choice {
            "auto" => all,
            "gpu" => all
                .into_iter()
                .filter(|a| rank(a.get_info().device_type) <= 2)
                .collect(),
            backend @ ("vulkan" | "gl" | "metal" | "dx12") => all
                .into_iter()
                .filter(|a| format!("{:?}", a.get_info().backend).to_lowercase() == backend)
                .collect(),
            name => {
                let lower = name.to_lowercase();
                all.into_iter()
                    .filter(|a| a.get_info().name.to_lowercase().contains(&lower))
                    .collect()
            }
        };
        if matching.is_empty() {
            return Err(match choice {
                "auto" => GpuError::NoAdapter,
                "gpu" => GpuError::NoMatch("a hardware GPU".into()),
                b @ ("vulkan" | "gl" | "metal" | "dx12") => {
                    GpuError::NoMatch(format!("a {b} adapter"))
                }
                name => GpuError::NoMatch(name.into()),
            });
        }
        // The adapters of the first one's kind and backend: one device is listed once per
        // backend (lavapipe on Vulkan, llvmpipe on GL), and ranks must not mix them.
        let first = key(&matching[0]);
        let matching: Vec<_> = matching.into_iter().filter(|a| key(a) == first).collect();
        let n = matching.len();
        let adapter = matching
            .into_iter()
            .nth(local_rank % n)
            .ok_or(GpuError::NoAdapter)?;
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
