//! Issue 31, second round (items 3, 4, 13): `netc check` bounded on wide layers, huge batches
//! and micro-batch splits; non-finite parameters caught at the step they appear on both
//! executors; every training setting checked against the network at `check`, located.

use std::path::Path;
use std::time::Duration;

#[path = "support/within.rs"]
mod within;
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
