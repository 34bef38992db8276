//! Process-wide settings made first thing in `main`, before any other thread exists: the
//! allocator's thresholds, SIGPIPE's default action and the switch that quiets Mesa's
//! device-select layer.

/// Switches Mesa's device-select Vulkan layer off where it can only print errors (no
/// XDG_RUNTIME_DIR): first thing in main, before any other thread exists, so nothing reads the
/// environment concurrently (the runtime does it too before its first wgpu instance, for
/// library users and tests; see [`netc_runtime::gpu::quiet_headless_vulkan_layer`]).
pub(crate) fn quiet_headless_vulkan_layer() {
    netc_runtime::gpu::quiet_headless_vulkan_layer();
}

/// Keeps glibc's allocator from handing the CPU executor's large per-step buffers (im2col
/// columns, activations: megabytes each) back to the system and faulting them in again on the
/// next step. By default a freed block over the mmap threshold is unmapped and heap tops over
/// 128 kB are trimmed; a LeNet epoch then spent 22 to 35 s of its 22 to 40 s in the kernel
/// (`time`'s sys). With blocks up to 32 MB kept on the heap and trimming only past 1 GB free,
/// the same epoch took 22.8 s, 2.1 s of it sys (GLIBC_TUNABLES measured the same settings).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets two of glibc's allocator parameters (documented in mallopt(3));
    // it is called first thing in main, before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn tune_allocator() {}

/// A closed stdout (`netc check model.net | head -1`) ends netc as it ends `cat`: killed by
/// SIGPIPE, quietly, status 141 in a shell. Rust ignores SIGPIPE before `main`, so each
/// `println!` into the closed pipe panicked ("failed printing to stdout: Broken pipe", exit 101
/// and a backtrace); the default action is restored instead. Training is unaffected: its
/// stopping signals (SIGINT, SIGTERM, SIGHUP) keep their own handlers; a run whose stdout pipe
/// closes ends at the next line it prints (it used to panic there), and the checkpoints already
/// written (atomically) stay.
#[cfg(unix)]
pub(crate) fn default_sigpipe() {
    // SAFETY: sets one signal's disposition to the default, first thing in main, before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
pub(crate) fn default_sigpipe() {}
