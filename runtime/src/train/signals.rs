//! The signals that stop a run: Ctrl-C (SIGINT) and, on Unix, SIGTERM, SIGHUP and SIGUSR1 (what
//! mpirun passes on to every rank without killing them after it) set the flag
//! the training loop polls, so the run checkpoints and stops; which one came first gives the
//! exit status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The signal that stopped the run (SIGINT 2, SIGHUP 1, SIGUSR1 10, SIGTERM 15), 0 while none has.
static STOP_SIGNAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The flag the training loops poll: set by Ctrl-C (SIGINT) and, on Unix, by SIGTERM (kill,
/// a scheduler's timeout) and SIGHUP (the terminal went away), all of which checkpoint and
/// stop the run instead of losing what it did since the last checkpoint.
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let f = Arc::new(AtomicBool::new(false));
        let g = f.clone();
        let _ = ctrlc::set_handler(move || {
            let _ = STOP_SIGNAL.compare_exchange(0, 2, Ordering::SeqCst, Ordering::SeqCst);
            if g.swap(true, Ordering::SeqCst) {
                // A second interrupt: stop now. Checkpoints are written atomically, so this
                // loses at most the steps since the last one.
                eprintln!("\ninterrupted again: stopping without a checkpoint");
                std::process::exit(130);
            }
        });
        #[cfg(unix)]
        for sig in [
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGUSR1,
        ] {
            // A second TERM or HUP, with the flag already set, takes the default action: the
            // process ends at once (a checkpoint write is atomic, so nothing is corrupted).
            let _ = signal_hook::flag::register_conditional_default(sig, f.clone());
            let _ = signal_hook::flag::register(sig, f.clone());
            let _ = register_signal_number(sig);
        }
        f
    })
    .clone()
}

/// Remembers which signal arrived first, for the exit status.
#[cfg(unix)]
fn register_signal_number(sig: i32) -> std::io::Result<()> {
    // SAFETY: the handler does one atomic compare-exchange, which is async-signal-safe.
    unsafe {
        signal_hook::low_level::register(sig, move || {
            let _ =
                STOP_SIGNAL.compare_exchange(0, sig as usize, Ordering::SeqCst, Ordering::SeqCst);
        })
    }
    .map(|_| ())
}

/// The signal that stopped the run, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s as i32),
    }
}
