//! Runs a command under a hang guard: a run past its limit is killed and fails the test (a
//! hang, not a timing figure). Shared by the hostile-input test files.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` (stdout and stderr piped); a run past `limit` is killed and fails the test (a
/// hang, not a timing figure). (exit status, stdout, stderr).
pub fn within(mut cmd: Command, limit: Duration) -> (std::process::ExitStatus, String, String) {
    let mut child = cmd
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs netc");
    // Read both pipes as the child writes, so a full pipe cannot stall it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = pipe {
                p.read_to_string(&mut s).ok();
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > limit {
            child.kill().ok();
            panic!("{cmd:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    (status, out, err)
}

/// netc with `args`, from the checkout's root: (exit code, stdout, stderr); no panic allowed.
pub fn netc_within(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netc"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    let (st, out, err) = within(cmd, limit);
    assert!(!err.contains("panicked"), "netc {args:?} panicked: {err}");
    (st.code().unwrap_or(-1), out, err)
}
