//! Hostile paths around netc's files (issues 31 and 30): outputs that are devices, FIFOs,
//! folders or links; the permissions of what netc writes; a lock file that is a link; inputs
//! that are devices, FIFOs or huge; a closed stdout; a full disk. Unix only (device nodes,
//! FIFOs, umask, signals); the device nodes need root, as the test machine runs.
#![cfg(unix)]

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const NETC: &str = env!("CARGO_BIN_EXE_netc");

use crate::within;
use within::{netc_within, within};
const GUARD: Duration = Duration::from_secs(60);

/// netc with `args` under umask `mask` (set by a shell that then becomes netc).
fn netc_umask(mask: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("umask {mask}; exec \"$0\" \"$@\""), NETC])
        .args(args);
    let (st, out, err) = within(cmd, GUARD * 5);
    (st.code().unwrap_or(-1), out, err)
}

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-hostile-io-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn mknod(path: &Path, minor: u32) {
    // /dev/null is c 1 3 and /dev/full c 1 7 on Linux.
    let st = Command::new("mknod")
        .args([s(path), "c", "1", &minor.to_string()])
        .status()
        .expect("mknod");
    assert!(st.success(), "mknod needs root");
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success());
}

fn is_char_device(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

/// A GAN run (models/gan.yaml, a few steps) made once under umask 002: its folder.
fn gan_run() -> &'static Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tmp("gan");
        let (code, _, err) = netc_umask(
            "002",
            &[
                "train",
                "models/gan.yaml",
                "--device",
                "cpu",
                "--steps",
                "4",
                "--quiet",
                "--out",
                s(dir.path()),
            ],
        );
        assert_eq!(code, 0, "{err}");
        dir
    })
    .path()
}

fn gan_weights() -> String {
    s(&gan_run().join("checkpoint.safetensors")).to_string()
}

fn sample_to(out: &Path, extra: &[&str]) -> (i32, String, String) {
    let w = gan_weights();
    let mut args = vec!["sample", "models/gan.yaml", "--weights", &w, "--count", "4"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", s(out)]);
    netc_within(&args, GUARD)
}

// 31.1: an output path that is there and is not a regular file is written through (a character
// device, a FIFO) or refused (a folder, a link to one), never replaced.
#[test]
fn outputs_never_replace_devices_fifos_or_folders() {
    let dir = tmp("outputs");
    // A copy of /dev/null: written through, still the device afterwards.
    let null = dir.path().join("null");
    mknod(&null, 3);
    let (code, _, err) = sample_to(&null, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(is_char_device(&null), "the device node was replaced");
    let (code, _, err) = sample_to(&null, &["--format", "npy"]);
    assert_eq!(code, 0, "{err}");
    assert!(is_char_device(&null), "the device node was replaced");

    // A copy of /dev/full (the same device; a copy, so that a regression cannot destroy the
    // machine's own): the write fails with a clear error, and the node stays.
    let full = dir.path().join("full");
    mknod(&full, 7);
    let (code, _, err) = sample_to(&full, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(s(&full)), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(is_char_device(&full), "the device node was replaced");

    // A folder, and a link to one: refused, left as they were.
    let sub = dir.path().join("sub.png");
    std::fs::create_dir(&sub).expect("mkdir");
    let (code, _, err) = sample_to(&sub, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a folder"), "{err}");
    assert!(sub.is_dir());
    let link = dir.path().join("link.png");
    std::os::unix::fs::symlink(&sub, &link).expect("symlink");
    let (code, _, err) = sample_to(&link, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a folder"), "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());

    // A FIFO with a reader gets the file through it; without one, a clear error, no hang.
    let fifo = dir.path().join("fifo.npy");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the FIFO"))
    };
    let (code, _, err) = sample_to(&fifo, &[]);
    assert_eq!(code, 0, "{err}");
    let got = reader.join().expect("reader");
    assert!(
        got.starts_with(b"\x93NUMPY"),
        "{:?}",
        &got[..got.len().min(16)]
    );
    assert!(std::fs::symlink_metadata(&fifo)
        .expect("fifo")
        .file_type()
        .is_fifo());
    let (code, _, err) = sample_to(&fifo, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no process reads it"), "{err}");
}

/// Every regular file in `dir` (hidden ones too) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let m = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
            (p, m)
        })
        .collect()
}

// 30.4: what netc writes has the usual permissions, 0666 masked by the umask.
#[test]
fn outputs_have_the_usual_permissions() {
    let run = modes(gan_run());
    for f in ["checkpoint.safetensors", "metrics.jsonl", "samples.png"] {
        assert!(run.iter().any(|(p, _)| p.ends_with(f)), "no {f}: {run:?}");
    }
    for (p, m) in &run {
        assert_eq!(*m, 0o664, "{} (umask 002)", p.display());
    }
    let dir = tmp("modes");
    let w = gan_weights();
    for f in ["s.png", "s.npy"] {
        let out = dir.path().join(f);
        let (code, _, err) = netc_umask(
            "022",
            &[
                "sample",
                "models/gan.yaml",
                "--weights",
                &w,
                "--count",
                "4",
                "--out",
                s(&out),
            ],
        );
        assert_eq!(code, 0, "{err}");
    }
    let written = modes(dir.path());
    assert_eq!(written.len(), 2, "{written:?}");
    for (p, m) in written {
        assert_eq!(m, 0o644, "{} (umask 022)", p.display());
    }
}

// 31.11: the run folder's lock is never followed through a link.
#[test]
fn a_lock_file_that_is_a_link_is_refused() {
    let dir = tmp("lock");
    let out = dir.path().join("run");
    std::fs::create_dir(&out).expect("mkdir");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").expect("write");
    std::os::unix::fs::symlink(&victim, out.join(".netc-lock")).expect("symlink");
    let (code, _, err) = netc_within(
        &[
            "train",
            "models/mlp.net",
            "--device",
            "cpu",
            "--steps",
            "1",
            "--out",
            s(&out),
        ],
        GUARD,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(".netc-lock") && err.contains("link"), "{err}");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
}

// 31.6: where a file is expected, a device or a FIFO is refused at once, naming the path.
#[test]
fn devices_and_fifos_are_refused_as_inputs() {
    let dir = tmp("inputs");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let f = s(&fifo);
    let quick = Duration::from_secs(30);
    let w = gan_weights();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "sample",
                "models/gan.yaml",
                "--weights",
                "/dev/zero",
                "--count",
                "1",
            ],
            "/dev/zero",
        ),
        (vec!["score", "--samples", "/dev/zero"], "/dev/zero"),
        (
            vec!["sample", "models/gan.yaml", "--weights", f, "--count", "1"],
            f,
        ),
        (vec!["score", "--samples", f], f),
        (vec!["check", f], f),
        (vec!["bench", "--device", "cpu", "--model", f], f),
        (
            vec![
                "predict",
                "models/lenet.net",
                "--weights",
                "models/lenet.safetensors",
                f,
            ],
            f,
        ),
        (vec!["sample", f, "--weights", &w, "--count", "1"], f),
    ];
    for (args, path) in cases {
        let (code, _, err) = netc_within(&args, quick);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(path) && err.contains("not a regular file"),
            "{args:?}: {err}"
        );
    }
}

// 31.6: a huge image is refused by its size before it is read (3 GB of a sparse file behind a
// valid PNG header used to be read whole).
#[test]
fn a_huge_image_is_refused_before_it_is_read() {
    let dir = tmp("huge");
    let png = dir.path().join("huge.png");
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    let ihdr = [0, 0, 0, 28, 0, 0, 0, 28, 8, 0, 0, 0, 0];
    bytes.extend_from_slice(&ihdr);
    let crc = crc(&bytes[12..]);
    bytes.extend_from_slice(&crc.to_be_bytes());
    std::fs::write(&png, &bytes).expect("write");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&png)
        .and_then(|f| f.set_len(3 << 30))
        .expect("set_len");
    let t0 = Instant::now();
    let (code, _, err) = netc_within(
        &[
            "predict",
            "models/lenet.net",
            "--weights",
            "models/lenet.safetensors",
            s(&png),
        ],
        GUARD,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(s(&png)) && err.contains("larger than"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
}

/// CRC-32 (IEEE) of a PNG chunk's type and data.
fn crc(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

// 30.2: a closed stdout ends the command as it ends `cat`: by SIGPIPE, without a panic.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(NETC)
        .args(["check", "models/alexnet.net"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs netc");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let st = child.wait().expect("wait");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        st.signal() == Some(13) || st.code() == Some(141),
        "{st:?}: {err}"
    );
}

// 31.14: the writability probe leaves nothing behind when the write fails (a full disk; here
// a file size limit of 0, with SIGXFSZ ignored, so writes fail with EFBIG instead).
#[test]
fn the_write_probe_is_removed_when_the_write_fails() {
    let dir = tmp("probe");
    let out = dir.path().join("run");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "trap '' XFSZ; ulimit -f 0; exec \"$0\" \"$@\"", NETC])
        .args(["train", "models/mlp.net", "--device", "cpu", "--steps", "1"])
        .args(["--out", s(&out)]);
    let (st, _, err) = within(cmd, GUARD);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("not writable"), "{err}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".netc-lock")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
