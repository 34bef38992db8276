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

/// The allocator's thresholds (see [`netc_runtime::cpu::tune_allocator`]): first thing in
/// main, before any other thread exists.
pub(crate) fn tune_allocator() {
    netc_runtime::cpu::tune_allocator();
}

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
