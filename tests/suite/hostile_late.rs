//! Late hardening reproducers (issue 31, items 9 and 2): `netc score --samples` checks the
//! array it is given, and training sizes its synthetic data before building it. Each must end
//! with a clear error, exit 1, no panic or abort, well within a hang guard.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::within;
use within::netc_within;

/// `netc score --samples` on an array written to `dir`: exits 1 with `message`, no panic.
fn score_fails_with(dir: &Path, shape: &[usize], data: &[f32], message: &str) {
    let p = dir.join("s.npy");
    netc_runtime::io::write_npy_f32(&p, shape, data).expect("write npy");
    let path = p.to_str().expect("utf-8");
    let (code, _, err) = netc_within(&["score", "--samples", path], Duration::from_secs(60));
    assert_eq!(code, 1, "{shape:?}: {err}");
    assert!(err.contains(message), "{shape:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn score_refuses_samples_that_are_not_numbers() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut v = vec![0.5f32; 4 * 784];
    v[785] = f32::NAN;
    score_fails_with(dir.path(), &[4, 1, 28, 28], &v, "[1, 0, 0, 1]");
    score_fails_with(dir.path(), &[4, 1, 28, 28], &v, "NaN");
    let all = vec![f32::NAN; 4 * 784];
    score_fails_with(dir.path(), &[4, 1, 28, 28], &all, "not all finite numbers");
}

#[test]
fn score_refuses_samples_of_the_wrong_shape() {
    let dir = tempfile::tempdir().expect("tmp");
    let v = vec![0.5f32; 16 * 3 * 28 * 28];
    score_fails_with(dir.path(), &[16, 3, 28, 28], &v, "1x28x28");
    score_fails_with(dir.path(), &[16, 3, 28, 28], &v, "3x28x28");
    let flat = vec![0.5f32; 16 * 784];
    score_fails_with(dir.path(), &[16 * 784], &flat, "1x28x28");
}

#[test]
fn score_refuses_samples_outside_zero_to_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let v = vec![1e30f32; 4 * 784];
    score_fails_with(dir.path(), &[4, 1, 28, 28], &v, "[0, 1]");
    let mut w = vec![0.5f32; 4 * 784];
    w[784 * 3 + 5] = -0.5;
    score_fails_with(dir.path(), &[4, 1, 28, 28], &w, "[3, 0, 0, 5]");
}

#[test]
fn score_still_takes_samples_in_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("ok.npy");
    let v: Vec<f32> = (0..4 * 784).map(|i| (i % 7) as f32 / 6.0).collect();
    netc_runtime::io::write_npy_f32(&p, &[4, 1, 28, 28], &v).expect("write npy");
    let path = p.to_str().expect("utf-8");
    let (code, out, err) = netc_within(&["score", "--samples", path], Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inception score"), "{out}");
}

/// Training refuses before building its data: exit 1 with the memory message, no abort.
fn train_refuses(args: &[&str]) {
    let t0 = Instant::now();
    let (code, _, err) = netc_within(args, Duration::from_secs(10));
    assert_ne!(code, 134, "{args:?} aborted: {err}");
    assert_eq!(code, 1, "{args:?}: {err}");
    assert!(err.contains("synthetic data"), "{args:?}: {err}");
    assert!(err.contains("GB of memory but this machine has"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn alexnet_synthetic_data_is_sized_before_it_is_built() {
    for batch in ["100000", "2000"] {
        train_refuses(&[
            "train",
            "models/alexnet.net",
            "--batch",
            batch,
            "--device",
            "cpu",
        ]);
    }
}

#[test]
fn a_huge_synthetic_batch_is_refused_not_aborted() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mlp.net"))
        .expect("mlp.net");
    let text = src
        .replace("batch = 128", "batch = 10000000")
        .replace("data = mnist", "data = synthetic")
        .replace("  data_dir = \"../data/mnist-sample\"\n", "");
    assert!(text.contains("data = synthetic") && !text.contains("data_dir ="));
    let p = dir.path().join("mlp.net");
    std::fs::write(&p, text).expect("write");
    let path = p.to_str().expect("utf-8");
    train_refuses(&["train", path, "--device", "cpu"]);
}
