//! Hostile training sections (issue 31's second round): every bad setting is a located error
//! at `netc check` naming its valid range, never a value accepted, clamped or ignored, and
//! training refuses what it cannot hold before it allocates it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::within;
use within::netc_within;

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-hostile-config-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

/// DCGAN's model with its training section's `key = ...` line replaced by (or, for a new
/// key, extended with) `line`.
fn dcgan_with(key: &str, line: &str) -> String {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/dcgan.net"))
            .expect("dcgan.net");
    let mut out = String::new();
    let mut replaced = false;
    for l in src.lines() {
        if l.trim_start().starts_with(&format!("{key} =")) && !replaced {
            out.push_str(&format!("  {line}\n"));
            replaced = true;
        } else if l.trim() == "}" && l.starts_with('}') && !replaced && out.contains("train {") {
            out.push_str(&format!("  {line}\n}}\n"));
            replaced = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// A 1-channel 28x28 classifier with `line` in its training section.
fn lenet_with(line: &str) -> String {
    format!(
        "net m {{\n  input x: 1x28x28\n  c = conv(4, k=5) -> relu\n  logits = flatten -> dense(10)\n  output logits\n}}\ntrain {{\n  data = images\n  {line}\n}}\n"
    )
}

/// `netc check` of `src` fails with `message`, pointing at `at` in the first line holding
/// `line` (1-based line and column, as codespan writes them).
fn check_fails_at(src: &str, message: &str, (line, at): (&str, &str)) {
    let dir = tmp("check");
    let path = dir.path().join("m.net");
    std::fs::write(&path, src).expect("write");
    let p = path.to_str().expect("utf-8");
    let (code, _, err) = netc_within(&["check", p], Duration::from_secs(30));
    assert_eq!(code, 1, "{src}\n{err}");
    assert!(err.contains(message), "wanted `{message}` in:\n{err}");
    let (line, col) = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(line))
        .find_map(|(i, l)| l.find(at).map(|c| (i + 1, c + 1)))
        .expect("the located text is in the source");
    assert!(
        err.contains(&format!("m.net:{line}:{col}")),
        "wanted m.net:{line}:{col} ({at}) in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_gan_optimizer_map_with_unknown_keys_is_an_error_with_did_you_mean() {
    // Both networks used to train with the map's last entry.
    let src = dcgan_with(
        "optimizer",
        "optimizer = { gen: adam(lr=1e-1), disc: adam(beta1=0.1) }",
    );
    check_fails_at(
        &src,
        "the optimizer map has no network `gen`",
        ("optimizer", "gen:"),
    );
    check_fails_at(&src, "did you mean `generator`?", ("optimizer", "gen:"));
    check_fails_at(
        &src,
        "the optimizer map has no network `disc`",
        ("optimizer", "disc:"),
    );
    // A network left out, or given twice (by role and by name), is an error too.
    let src = dcgan_with("optimizer", "optimizer = { generator: adam(lr=1e-1) }");
    check_fails_at(
        &src,
        "no entry for the discriminator",
        ("optimizer", "{ generator"),
    );
    // The valid keys still check.
    let (code, _, err) = netc_within(&["check", "models/dcgan.net"], Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn out_of_range_optimizer_settings_are_located_errors_naming_the_range() {
    for (setting, message, at) in [
        (
            "adam(beta1=1.5)",
            "beta1 must be a finite number in [0, 1), found 1.5",
            "1.5",
        ),
        (
            "adam(beta2=1)",
            "beta2 must be a finite number in [0, 1), found 1",
            "1)",
        ),
        (
            "adam(eps=0)",
            "eps must be a finite number in (0, 1], found 0",
            "0)",
        ),
        (
            "adam(eps=-1e-8)",
            "eps must be a finite number in (0, 1]",
            "-1e-8",
        ),
        (
            "adam(weight_decay=-1)",
            "weight_decay must be a finite number in [0, 1], found -1",
            "-1",
        ),
        (
            "adam(weight_decay=1e30)",
            "weight_decay must be a finite number in [0, 1]",
            "1e30",
        ),
        (
            "sgd(momentum=-5)",
            "momentum must be a finite number in [0, 1), found -5",
            "-5",
        ),
        (
            "sgd(momentum=2)",
            "momentum must be a finite number in [0, 1), found 2",
            "2)",
        ),
        (
            "adam(lr=1e999)",
            "learning rate `lr` must be a finite number in (0, inf), found inf",
            "1e999",
        ),
        (
            "adam(lr=1e-3, lr=1)",
            "`adam`'s setting `lr` is given twice",
            "lr=1)",
        ),
        (
            "adam(1e-3, lr=1)",
            "`adam`'s setting `lr` is given twice",
            "lr=1)",
        ),
        (
            "adam(1e-3, 0.5)",
            "`adam` takes at most 1 argument without a name (lr)",
            "0.5",
        ),
    ] {
        let src = lenet_with(&format!("optimizer = {setting}"));
        check_fails_at(&src, message, ("optimizer", at));
    }
}

#[test]
fn bad_noise_schedules_and_repeated_keys_are_located_errors() {
    for (key, line, message, at) in [
        (
            "noise",
            "noise = normal(0, -1)",
            "standard deviation must be a finite number in [1e-6, 1e6], found -1",
            "-1",
        ),
        ("noise", "noise = normal(0, 1e999)", "found inf", "1e999"),
        (
            "noise",
            "noise = uniform(0, 0)",
            "uniform noise needs low < high",
            "0)",
        ),
        (
            "noise",
            "noise = uniform(1, -1)",
            "uniform noise needs low < high",
            "-1)",
        ),
        (
            "noise",
            "noise = uniform(-1, 1, 7, 9)",
            "`uniform` takes at most 2 arguments without a name (low, high)",
            "7",
        ),
        (
            "noise",
            "noise = uniform(-1e300, 1)",
            "noise parameter must be a finite number in [-1e6, 1e6]",
            "-1e300",
        ),
        (
            "k",
            "k = 1001",
            "`k` must be a finite number in [1, 1000], found 1001",
            "1001",
        ),
        (
            "k",
            "k = 1000000000000",
            "`k` must be a finite number in [1, 1000]",
            "1000000000000",
        ),
        (
            "range",
            "range = [-1e308, 1e308]",
            "each end of training setting `range` must be a finite number in [-1e6, 1e6]",
            "-1e308",
        ),
    ] {
        check_fails_at(&dcgan_with(key, line), message, (line, at));
    }
    for (line, message, at) in [
        (
            "schedule = step(every=0)",
            "step's `every` must be a finite number in [1, 1e9], found 0",
            "0)",
        ),
        (
            "schedule = step(every=2.5)",
            "must be a whole number of epochs",
            "2.5",
        ),
        (
            "schedule = plateau(patience=-1)",
            "plateau's `patience` must be a finite number in [0, 1e9], found -1",
            "-1",
        ),
        (
            "schedule = inv(power=1e308)",
            "inv's `power` must be a finite number in [0, 10], found 1e308",
            "1e308",
        ),
        ("schedule = step(evry=3)", "did you mean `every`?", "evry"),
        (
            "schedule = step(factor=2)",
            "schedule's `factor` must be a finite number in (0, 1], found 2",
            "2)",
        ),
        (
            "batch = 4\n  batch = 8",
            "training setting `batch` is given twice",
            "batch = 8",
        ),
        (
            "mean = [1e300]",
            "each value of training setting `mean` must be a finite number in [-1e6, 1e6]",
            "1e300",
        ),
        (
            "std = [1e-45]",
            "each value of training setting `std` must be a finite number in [1e-6, 1e6]",
            "1e-45",
        ),
    ] {
        let first = line.lines().last().unwrap_or(line).trim();
        check_fails_at(&lenet_with(line), message, (first, at));
    }
}

#[test]
fn a_leaky_relu_slope_out_of_range_is_a_located_error() {
    let src = "net m {\n  input x: 4\n  h = dense(4) -> leaky_relu(1e999)\n  output h\n}\n";
    check_fails_at(
        src,
        "leaky_relu's slope must be a finite number in [0, 1], found inf",
        ("leaky", "1e999"),
    );
    let src = "net m {\n  input x: 4\n  h = dense(4) -> leaky_relu(-3)\n  output h\n}\n";
    check_fails_at(
        src,
        "leaky_relu's slope must be a finite number in [0, 1], found -3",
        ("leaky", "-3"),
    );
}

#[test]
fn image_settings_that_do_not_fit_the_network_fail_check_located() {
    // Both used to pass `check` and fail at `train` with no location.
    check_fails_at(
        &lenet_with("mean = [0.1, 0.2]"),
        "training setting `mean`: expected 1 value, or 1 (network `m` takes 1 channel), not 2",
        ("mean", "["),
    );
    check_fails_at(&lenet_with("std = [0.1, 0.2, 0.3]"), "not 3", ("std", "["));
    check_fails_at(
        &lenet_with("resize = 1"),
        "training setting `resize`: expected a shorter side of at least 28",
        ("resize", "1"),
    );
    // What fits still checks.
    let dir = tmp("fits");
    let path = dir.path().join("m.net");
    std::fs::write(&path, lenet_with("mean = [0.1]\n  resize = 28")).expect("write");
    let (code, _, err) = netc_within(
        &["check", path.to_str().expect("utf-8")],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
}

#[cfg(unix)]
#[test]
fn a_gan_with_k_at_its_bound_stops_on_sigterm_between_d_steps() {
    // The stop flag was polled between generator steps only: with k = 10^12 a SIGTERM was
    // still ignored 30 s later. Now k is at most 1000 and every D step polls it.
    let dir = tmp("gan-k");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let src = dcgan_with("k", "k = 1000").replace(
        "data_dir = \"../data/mnist-sample\"",
        &format!("data_dir = {:?}", data.to_str().expect("utf-8")),
    );
    let model = dir.path().join("gan.net");
    std::fs::write(&model, src).expect("write");
    let out = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "train",
            model.to_str().expect("utf-8"),
            "--device",
            "cpu",
            "--batch",
            "64",
            "--quiet",
        ])
        .args(["--out", out.to_str().expect("utf-8")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    // Let it load and start its D steps (a G step is 1000 D steps away: tens of seconds).
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended early"
    );
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            child.kill().ok();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(status.code(), Some(143), "{err}");
    netc_runtime::io::Checkpoint::load(&out.join("checkpoint.safetensors"))
        .expect("one intact checkpoint written on SIGTERM");
}
