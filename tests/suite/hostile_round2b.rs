//! Issue 31, second round (items 3, 4, 13): `netc check` bounded on wide layers, huge batches
//! and micro-batch splits; non-finite parameters caught at the step they appear on both
//! executors; every training setting checked against the network at `check`, located.

use std::path::Path;
use std::time::Duration;

use crate::within;
use within::netc_within;

/// A small MLP on the shipped MNIST sample; `WIDTH` is its hidden layer's width.
const MLP: &str = "
net mlp {
  input image: 784
  hidden = dense(WIDTH, init=he) -> relu
  logits = dense(10, init=he)
  output logits
}
train {
  task = classifier
  network = mlp
  optimizer = adam(lr=1e-3)
  batch = 100
  steps = 20
  data = mnist
  data_dir = \"data/mnist-sample\"
  seed = 1
}
";

/// The hang guard of a `check`: generous for a debug build on a loaded 2-core machine, far
/// below what the quadratic planner took (dense(10^8) at batch 100: over a minute).
const CHECK_LIMIT: Duration = Duration::from_secs(25);

/// `netc check` on `text` (written to `dir/model.net`) with `extra` flags, under the hang guard.
fn check(dir: &Path, text: &str, extra: &[&str]) -> (i32, String, String) {
    let f = dir.join("model.net");
    std::fs::write(&f, text).expect("model");
    let mut args = vec!["check", f.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    netc_within(&args, CHECK_LIMIT)
}

#[test]
fn check_of_a_wide_layer_is_not_quadratic_in_its_width() {
    // dense(10^8) at the section's batch 100: one sample per micro-batch, and the weight in
    // 2,300 row blocks; the planner lowered every micro-batch (100 x 2,300 dispatches, over a
    // minute). The memory plan now lowers the micro-batches that differ, not all of them.
    let tmp = tempfile::tempdir().expect("tmp");
    let wide = MLP.replace("WIDTH", "100000000");
    let (code, out, err) = check(tmp.path(), &wide, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("training step of `mlp` at batch 100"), "{out}");
}

#[test]
fn check_of_a_huge_layer_is_bounded() {
    // dense(99999999999): its weight would be 2.3 million row blocks of a 128 MiB binding
    // (3.2 GB of planner state, then an abort). It is refused before any is made.
    let tmp = tempfile::tempdir().expect("tmp");
    let huge = MLP.replace("WIDTH", "99999999999");
    let (code, out, err) = check(tmp.path(), &huge, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("99999999999"), "the table stands: {out}");
    assert!(err.contains("layer `hidden`"), "{err}");
    assert!(err.contains("row blocks"), "{err}");
}

#[test]
fn check_of_the_largest_batch_is_answered_fast() {
    // Batch 2^31 on the MLP: 50,000 micro-batches under the default binding, each lowered
    // (30 s in a debug build). The split is now counted, not listed.
    let tmp = tempfile::tempdir().expect("tmp");
    let mlp = MLP.replace("WIDTH", "16");
    let (code, out, err) = check(tmp.path(), &mlp, &["--batch", "2147483648"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("at batch 2147483648"), "{out}");
}

/// A small ReLU MLP that trains four steps and writes a checkpoint at the end, logging every
/// 100 steps (so no log interval falls on the step that goes bad).
const SMALL: &str = "
net mlp {
  input image: 784
  hidden = dense(16, init=he) -> relu
  logits = dense(10, init=he)
  output logits
}
train {
  task = classifier
  network = mlp
  optimizer = sgd(lr=0.01, momentum=0.9)
  batch = 10
  steps = 4
  log_every = 100
  data = mnist
  data_dir = \"data/mnist-sample\"
  seed = 1
}
";

/// Trains SMALL on `device` for 4 steps, then resumes it for 8 more at `--lr 1e300`: the
/// first resumed step's loss is finite (taken before its update), and that update (an
/// infinite f32 rate) leaves every weight NaN or infinite. The run must stop naming step 5
/// and a parameter, exit 1, and keep the step-4 checkpoint as it was.
fn overflow_stops_at_its_step(device: &str) {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model.net");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    std::fs::write(&model, SMALL.replace("data/mnist-sample", data)).expect("model");
    let out = tmp.path().join("run");
    let (m, o) = (model.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let base = ["train", m, "--device", device, "--quiet", "--out", o];
    let limit = Duration::from_secs(120);
    let (code, _, err) = netc_within(&base, limit);
    assert_eq!(code, 0, "{err}");
    let ck = out.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).expect("checkpoint");
    let more = ["--resume", "--steps", "12", "--lr", "1e300"];
    let (code, _, err) = netc_within(&[&base[..], &more[..]].concat(), limit);
    assert_eq!(code, 1, "{device}: {err}");
    assert!(
        err.contains("became NaN or infinite in the update of step 5"),
        "{device}: {err}"
    );
    assert!(err.contains("parameter `hidden."), "{device}: {err}");
    assert!(err.contains("checkpoint.safetensors"), "{device}: {err}");
    let after = std::fs::read(&ck).expect("checkpoint");
    assert!(
        after == before,
        "{device}: the last good checkpoint changed"
    );
}

#[test]
fn an_update_that_overflows_stops_the_run_at_its_step_on_the_cpu() {
    overflow_stops_at_its_step("cpu");
}

#[test]
fn an_update_that_overflows_stops_the_run_at_its_step_on_the_gpu() {
    // lavapipe counts: a CPU adapter runs the same program. NETC_REQUIRE_GPU=1 makes a
    // missing adapter a failure.
    if netc_runtime::gpu::test_gpu().is_none() {
        return;
    }
    overflow_stops_at_its_step("vulkan");
}

/// A classifier taking `input` with `outputs` classes, trained on `data`: the `data` line is
/// line 11 of the file.
fn classifier_on(input: &str, outputs: u32, data: &str) -> String {
    format!(
        "net m {{\n  input image: {input}\n  f = flatten\n  hidden = dense(8) -> relu\n  logits = dense({outputs})\n  output logits\n}}\ntrain {{\n  task = classifier\n  network = m\n  data = {data}\n  steps = 2\n}}\n"
    )
}

#[test]
fn check_refuses_data_the_network_cannot_take_at_the_data_line() {
    // Each passed `check` and failed only at `train`, with no location.
    let tmp = tempfile::tempdir().expect("tmp");
    for (text, says) in [
        (
            classifier_on("3x32x32", 10, "mnist"),
            "it takes 3x32x32 (3072 values)",
        ),
        (classifier_on("784", 5, "fashion_mnist"), "it has 5 outputs"),
        (classifier_on("784", 10, "images"), "and it takes 784"),
        (
            classifier_on("2x8x8", 10, "images"),
            "1 (grey) or 3 (RGB) channels",
        ),
    ] {
        let (code, _, err) = check(tmp.path(), &text, &[]);
        assert_eq!(code, 1, "{text}: {err}");
        assert!(err.contains("training setting `data`"), "{err}");
        assert!(
            err.contains("model.net:11:"),
            "located at the data line: {err}"
        );
        assert!(err.contains(says), "{err}");
    }
    // What fits still passes: MNIST into 1x28x28 and more classes than ten, RGB images.
    for text in [
        classifier_on("1x28x28", 12, "mnist"),
        classifier_on("3x16x16", 4, "images"),
        classifier_on("7", 3, "synthetic"),
    ] {
        let (code, _, err) = check(tmp.path(), &text, &[]);
        assert_eq!(code, 0, "{text}: {err}");
    }
}

#[test]
fn check_refuses_synthetic_data_for_a_gan_at_the_data_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let gan = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/dcgan.net"))
        .expect("dcgan");
    assert!(gan.contains("data = mnist"));
    let (code, _, err) = check(
        tmp.path(),
        &gan.replace("data = mnist", "data = synthetic"),
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("synthetic data is for classifiers"), "{err}");
    assert!(err.contains("training setting `data`"), "{err}");
}
