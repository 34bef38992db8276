//! Data-parallel training (issue 28, docs/distributed.md) through the real binary under
//! `mpirun -n 2` on this 2-core machine: the weights two ranks train, resuming on another
//! number of ranks, a batch that does not split, a rank that fails, a signal to mpirun.
//! Without the `mpi` feature: a netc started among several processes refuses to train alone.

use crate::within;
#[cfg(feature = "mpi")]
use netc_runtime::io::Checkpoint;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use within::within;

/// A small classifier with dropout (its masks are drawn per row of the global batch, so a
/// rank must know where its rows start) and SGD, on the MNIST sample.
const NET: &str = "net m {\n input x: 1x28x28\n h = flatten -> dense(24) -> relu -> dropout(0.3)\n out = dense(10)\n}\ntrain {\n optimizer = sgd(lr=0.1, momentum=0.9)\n batch = 16\n log_every = 2\n data = mnist\n data_dir = \"DATA\"\n seed = 3\n}\n";

fn model(dir: &Path) -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let f = dir.join("m.net");
    let text = NET.replace("DATA", data.to_str().expect("utf-8"));
    std::fs::write(&f, text).expect("write model");
    f.to_str().expect("utf-8").to_string()
}

/// `mpirun -n 2` of netc: root allowed through the environment, two ranks on two cores,
/// one rayon thread each.
#[cfg(feature = "mpi")]
fn mpirun(args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", "2", "--oversubscribe", "--bind-to", "none"])
        .args(["--mca", "mpi_yield_when_idle", "1"])
        .arg(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1");
    cmd
}

/// Trains on 2 ranks; (exit code, stderr).
#[cfg(feature = "mpi")]
fn train2(args: &[&str]) -> (i32, String) {
    let (st, _, err) = within(
        mpirun(&[&["train"], args].concat()),
        Duration::from_secs(120),
    );
    (st.code().unwrap_or(-1), err)
}

/// Trains as one process (one rayon thread, as the ranks); (exit code, stderr).
fn train1(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netc"));
    cmd.arg("train").args(args).env("RAYON_NUM_THREADS", "1");
    let (st, _, err) = within(cmd, Duration::from_secs(120));
    (st.code().unwrap_or(-1), err)
}

#[cfg(feature = "mpi")]
fn load(dir: &Path) -> Checkpoint {
    Checkpoint::load(&dir.join("checkpoint.safetensors")).expect("checkpoint")
}

/// Every tensor (weights and optimizer state) of `a` and `b` equal bit for bit.
#[cfg(feature = "mpi")]
fn same_bits(a: &Checkpoint, b: &Checkpoint) -> Result<(), String> {
    if a.tensors.len() != b.tensors.len() {
        return Err("different tensors".into());
    }
    for ((n, _, x), (_, _, y)) in a.tensors.iter().zip(&b.tensors) {
        if x.iter().zip(y).any(|(p, q)| p.to_bits() != q.to_bits()) {
            return Err(format!("tensor {n} differs"));
        }
    }
    Ok(())
}

/// Every tensor of `a` within 1e-5 of `b`'s (the L2 norm of the difference over that of `b`).
#[cfg(feature = "mpi")]
fn within_rounding(a: &Checkpoint, b: &Checkpoint) {
    for ((n, _, x), (_, _, y)) in a.tensors.iter().zip(&b.tensors) {
        let (num, den) = x.iter().zip(y).fold((0.0f64, 0.0f64), |(n2, d2), (p, q)| {
            (n2 + f64::from(p - q).powi(2), d2 + f64::from(*q).powi(2))
        });
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(rel < 1e-5, "{n}: relative difference {rel:e}");
    }
}

#[cfg(feature = "mpi")]
#[test]
fn two_ranks_train_the_weights_of_one_process() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let steps = ["--steps", "6", "--quiet"];
    let (code, err) = train2(&[&[f.as_str(), "--out", &out("two")], &steps[..]].concat());
    assert_eq!(code, 0, "{err}");
    // Rank 0 alone speaks: one line per event.
    assert_eq!(err.matches("trained 6 steps").count(), 1, "{err}");
    // Reduced in buckets of 2 kB as the backward pass finishes each layer (the model's
    // 0.08 MB in 4 buckets, on the communication thread): the same sums, the same bits.
    let mut buckets =
        mpirun(&[&["train", f.as_str(), "--out", &out("buckets")], &steps[..]].concat());
    buckets.env("NETC_BUCKET_MB", "0.002");
    let (st, _, err) = within(buckets, Duration::from_secs(120));
    assert_eq!(st.code(), Some(0), "{err}");
    let micro = [f.as_str(), "--out", &out("micro"), "--micro-batches", "2"];
    let (code, err) = train1(&[&micro[..], &steps[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, err) = train1(&[&[f.as_str(), "--out", &out("one")], &steps[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (two, micro, one) = (
        load(&dir.path().join("two")),
        load(&dir.path().join("micro")),
        load(&dir.path().join("one")),
    );
    assert_eq!(two.metadata["ranks"], "2");
    assert_eq!(micro.metadata["ranks"], "1");
    assert_eq!(micro.metadata["micro_batches"], "2");
    // The same rows, dropout masks and gradient sums (a + b is b + a): the same bits.
    same_bits(&two, &micro).unwrap();
    same_bits(&load(&dir.path().join("buckets")), &micro).unwrap();
    // The evaluation is split too (each rank every other test batch, the sums gathered): the
    // same weights give the same figures, up to the order of the f64 sums.
    let test_figures = |run: &str| -> Vec<f64> {
        let text = std::fs::read_to_string(dir.path().join(run).join("metrics.jsonl"));
        let text = text.expect("metrics");
        let last = text
            .lines()
            .rfind(|l| l.contains("test_loss"))
            .expect("a test row");
        let row: serde_json::Value = serde_json::from_str(last).expect("json");
        ["test_loss", "test_acc", "test_top5"]
            .iter()
            .map(|k| row[k].as_f64().expect("a number"))
            .collect()
    };
    for (a, b) in test_figures("two").iter().zip(test_figures("micro")) {
        assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} against {b}");
    }
    // One batch at once sums each gradient in another order: a few f32 roundings per step,
    // which SGD carries linearly over 6 steps; a row assigned to the wrong rank or a wrong
    // scale would move the weights by the learning rate times the gradient, far more.
    assert!(
        same_bits(&two, &one).is_err(),
        "expected rounding differences"
    );
    within_rounding(&two, &one);
}

/// The GPU path (lavapipe in CI): each rank runs its rows' gradient pass on its adapter (by
/// its local rank; two ranks share lavapipe), the gradients are summed on the host, then the
/// update pass. Against one process on the same adapter: the same model within rounding (the
/// batch's gradient summed in another order), with dropout, so a rank's rows must take their
/// own masks and the loss the global batch's scale. No adapter fails under NETC_REQUIRE_GPU=1.
#[cfg(feature = "mpi")]
#[test]
fn two_ranks_on_the_gpu_train_the_weights_of_one_gpu_process() {
    let Some(device) = gpu_device() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let args = ["--device", device.as_str(), "--steps", "6"];
    let (code, err) = train2(&[&[f.as_str(), "--out", &out("two")], &args[..]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("data-parallel on 2 ranks"), "{err}");
    assert!(!err.contains("device: cpu"), "{err}");
    let (code, err) = train1(&[&[f.as_str(), "--out", &out("one")], &args[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (two, one) = (load(&dir.path().join("two")), load(&dir.path().join("one")));
    assert_eq!(two.metadata["ranks"], "2");
    within_rounding(&two, &one);
}

#[cfg(feature = "mpi")]
#[test]
fn a_run_resumes_on_another_number_of_ranks() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let micro = ["--micro-batches", "2", "--quiet"];
    let (code, err) = train1(
        &[
            &[f.as_str(), "--out", &out("whole"), "--steps", "8"],
            &micro[..],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    // Two ranks, then one process (as two micro-batches, so the bits can be compared).
    let (code, err) = train2(&[f.as_str(), "--out", &out("a"), "--steps", "4", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let a = [f.as_str(), "--out", &out("a"), "--steps", "8", "--resume"];
    let (code, err) = train1(&[&a[..], &micro[..]].concat());
    assert_eq!(code, 0, "{err}");
    // And the reverse.
    let b = [f.as_str(), "--out", &out("b"), "--steps", "4"];
    let (code, err) = train1(&[&b[..], &micro[..]].concat());
    assert_eq!(code, 0, "{err}");
    let b = [
        f.as_str(),
        "--out",
        &out("b"),
        "--steps",
        "8",
        "--resume",
        "--quiet",
    ];
    let (code, err) = train2(&b);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("resumed from") && err.contains("at step 4"),
        "{err}"
    );
    let whole = load(&dir.path().join("whole"));
    let (a, b) = (load(&dir.path().join("a")), load(&dir.path().join("b")));
    assert_eq!(
        (a.metadata["ranks"].as_str(), b.metadata["ranks"].as_str()),
        ("1", "2")
    );
    same_bits(&whole, &a).unwrap();
    same_bits(&whole, &b).unwrap();
}

#[test]
fn a_batch_that_does_not_split_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = dir.path().join("r");
    let out = out.to_str().expect("utf-8");
    let (code, err) = train1(&[&f, "--out", out, "--batch", "10", "--micro-batches", "4"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the batch (10) does not split evenly over 4 micro-batches"),
        "{err}"
    );
    // Batchnorm normalises with the batch's statistics: a split batch is refused.
    let bn = dir.path().join("bn.net");
    let text = std::fs::read_to_string(&f)
        .expect("model")
        .replace("relu ->", "batchnorm -> relu ->");
    std::fs::write(&bn, text).expect("write");
    let (code, err) = train1(&[
        bn.to_str().expect("utf-8"),
        "--out",
        out,
        "--micro-batches",
        "2",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has a batchnorm (`h.batchnorm`)"), "{err}");
    #[cfg(feature = "mpi")]
    {
        let (code, err) = train2(&[&f, "--out", out, "--batch", "15"]);
        assert_ne!(code, 0, "{err}");
        let says = "error: the batch (15) does not split evenly over 2 processes";
        assert_eq!(err.matches(says).count(), 1, "{err}");
        assert!(!out_exists(out), "nothing written");
    }
}

#[cfg(feature = "mpi")]
fn out_exists(out: &str) -> bool {
    Path::new(out).join("checkpoint.safetensors").exists()
}

#[cfg(feature = "mpi")]
#[test]
fn a_rank_that_panics_or_is_killed_ends_the_job() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = dir.path().join("r");
    let long = [
        f.as_str(),
        "--out",
        out.to_str().expect("utf-8"),
        "--epochs",
        "100",
        "--quiet",
    ];
    let t0 = std::time::Instant::now();
    let mut cmd = mpirun(&[&["train"], &long[..]].concat());
    cmd.env("NETC_TEST_PANIC", "1:3");
    let (st, _, err) = within(cmd, Duration::from_secs(10));
    assert_ne!(st.code(), Some(0), "{err}");
    assert!(err.contains("rank 1 of 2 panicked"), "{err}");
    // Killed: a shell that kills its own process (exec'd into netc) after a second.
    let mut cmd = Command::new("mpirun");
    let script = format!(
        "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 1; kill -9 $$) & fi; exec {} train \"$@\" --overwrite",
        env!("CARGO_BIN_EXE_netc")
    );
    cmd.args(["-n", "2", "--oversubscribe", "--bind-to", "none"])
        .args([
            "--mca",
            "mpi_yield_when_idle",
            "1",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(long)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1");
    let (st, _, err) = within(cmd, Duration::from_secs(10));
    assert_ne!(st.code(), Some(0), "{err}");
    assert!(err.contains("rank 1") && err.contains("signal 9"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[cfg(feature = "mpi")]
#[test]
fn sigusr1_to_mpirun_stops_every_rank_at_one_step_with_one_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let out = dir.path().join("r");
    let mut cmd = mpirun(&[
        "train",
        &f,
        "--out",
        out.to_str().expect("utf-8"),
        "--epochs",
        "100",
        "--quiet",
    ]);
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun");
    // Once training runs (a metrics row is written), signal mpirun, which passes SIGUSR1 on.
    let metrics = out.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&metrics).map_or(true, |m| m.len() == 0) {
        assert!(t0.elapsed() < Duration::from_secs(60), "no metrics row");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) };
    let done = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&done.stderr);
    assert_ne!(done.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("checkpoint written to").count(), 1, "{err}");
    let ck = load(&out);
    let step: u64 = ck.metadata["step"].parse().expect("step");
    assert!(step > 0 && step < 100 * 500, "{step}");
    let rows = std::fs::read_to_string(&metrics).expect("metrics");
    let last: serde_json::Value =
        serde_json::from_str(rows.lines().last().expect("a row")).expect("json");
    assert_eq!(last["step"], step, "the last row is the checkpoint's step");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn started_among_several_processes_without_mpi_it_refuses_to_train_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = model(dir.path());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netc"));
    cmd.args(["train", &f, "--steps", "1"])
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0");
    let (st, _, err) = within(cmd, Duration::from_secs(60));
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("built without MPI support"), "{err}");
}

/// A small MLP GAN with dropout in D and SGD, on the MNIST sample.
#[cfg(feature = "mpi")]
const GAN: &str = "networks:
  - name: g
    inputs: {z: 16}
    layers:
      - {name: hidden, op: dense, units: 32}
      - relu
      - {name: image, op: dense, units: 784}
      - sigmoid
    outputs: {image: sigmoid_1}
  - name: d
    inputs: {x: 784}
    layers:
      - {name: hidden, op: dense, units: 32}
      - relu
      - {op: dropout, rate: 0.3}
      - {name: logit, op: dense, units: 1}
train:
  task: gan
  generator: g
  discriminator: d
  noise: uniform(-1, 1)
  k: 2
  optimizer:
    generator: sgd(lr=0.05, momentum=0.5)
    discriminator: sgd(lr=0.05, momentum=0.5)
  batch: 16
  steps: 5
  log_every: 1
  sample_every: 2
  data: mnist
  data_dir: DATA
  seed: 5
";

/// `model` (its `DATA` the shipped MNIST sample) written as `file` and trained on 2 ranks and
/// as one process: the folder and the two checkpoints.
#[cfg(feature = "mpi")]
fn two_ranks_and_one(file: &str, model: &str) -> (tempfile::TempDir, Checkpoint, Checkpoint) {
    let dir = tempfile::tempdir().expect("tmp");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let f = dir.path().join(file);
    std::fs::write(&f, model.replace("DATA", data.to_str().expect("utf-8"))).expect("write");
    let f = f.to_str().expect("utf-8");
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let (code, err) = train2(&[f, "--out", &out("two"), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = train1(&[f, "--out", &out("one"), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (two, one) = (load(&dir.path().join("two")), load(&dir.path().join("one")));
    (dir, two, one)
}

/// The last `test_loss` the run in `dir` wrote.
#[cfg(feature = "mpi")]
fn last_test_loss(dir: &Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    let last = (text.lines().rfind(|l| l.contains("test_loss"))).expect("a test row");
    let row: serde_json::Value = serde_json::from_str(last).expect("json");
    row["test_loss"].as_f64().expect("a number")
}

/// `file` in `dir` trained as one process in two micro-batches: its checkpoint.
#[cfg(feature = "mpi")]
fn in_two_micro_batches(dir: &Path, file: &str) -> Checkpoint {
    let (f, micro) = (dir.join(file), dir.join("micro"));
    let (f, m) = (f.to_str().expect("utf-8"), micro.to_str().expect("utf-8"));
    let (code, err) = train1(&[f, "--out", m, "--quiet", "--micro-batches", "2"]);
    assert_eq!(code, 0, "{err}");
    let micro = load(&micro);
    assert_eq!(micro.metadata["micro_batches"], "2");
    micro
}

#[cfg(feature = "mpi")]
#[test]
fn a_gan_trains_on_two_ranks_as_on_one() {
    let (dir, two, one) = two_ranks_and_one("gan.yaml", GAN);
    assert_eq!(two.metadata["ranks"], "2");
    // The same rows, noise and dropout masks; the gradient sums in another order (see
    // two_ranks_train_the_weights_of_one_process).
    assert!(
        same_bits(&two, &one).is_err(),
        "expected rounding differences"
    );
    within_rounding(&two, &one);
    // One process in two micro-batches: the same rows, noise, masks and sums, the same bits.
    let f = dir.path().join("gan.yaml");
    let micro = dir.path().join("micro");
    let (f, m) = (f.to_str().expect("utf-8"), micro.to_str().expect("utf-8"));
    let (code, err) = train1(&[f, "--out", m, "--quiet", "--micro-batches", "2"]);
    assert_eq!(code, 0, "{err}");
    let micro = load(&micro);
    assert_eq!(micro.metadata["micro_batches"], "2");
    same_bits(&two, &micro).unwrap();
    // Rank 0 alone wrote the samples.
    let grids = std::fs::read_dir(dir.path().join("two/samples"))
        .expect("samples")
        .count();
    assert_eq!(grids, 3, "steps 2, 4 and the last");
}

/// The GAN on the GPU path (lavapipe in CI): each rank's D and G gradient passes, the host's
/// all-reduce, then the update passes; against one process on the same adapter, within
/// rounding (dropout in D, so the rows' masks must be the global batch's). No adapter fails
/// under NETC_REQUIRE_GPU=1.
#[cfg(feature = "mpi")]
#[test]
fn a_gan_on_the_gpu_trains_on_two_ranks_as_on_one() {
    let Some(device) = gpu_device() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let f = dir.path().join("gan.yaml");
    std::fs::write(&f, GAN.replace("DATA", data.to_str().expect("utf-8"))).expect("write");
    let f = f.to_str().expect("utf-8");
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let args = ["--device", device.as_str(), "--quiet"];
    let (code, err) = train2(&[&[f, "--out", &out("two")], &args[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (code, err) = train1(&[&[f, "--out", &out("one")], &args[..]].concat());
    assert_eq!(code, 0, "{err}");
    let (two, one) = (load(&dir.path().join("two")), load(&dir.path().join("one")));
    assert_eq!(two.metadata["ranks"], "2");
    within_rounding(&two, &one);
}

/// A small model fed noise declaring its loss (tests/suite/declared_loss.rs's), with SGD.
#[cfg(feature = "mpi")]
const NOISY: &str = "net ae {\n  input image: 784\n  input eps: 16\n  h = image -> dense(64) -> tanh\n  mu = h -> dense(16)\n  logvar = h -> dense(16)\n  std = logvar -> scale(0.5) -> exp\n  jitter = mul(eps, std)\n  z = add(mu, jitter)\n  recon = z -> dense(784) -> sigmoid\n  rec = bce_sum(recon, image)\n  kl = gaussian_kl(mu, logvar)\n  loss = add(rec, kl)\n  output loss\n}\ntrain {\n  task = minimise\n  loss = loss\n  inputs = {image: images, eps: noise}\n  optimizer = sgd(lr=1e-4, momentum=0.9)\n  batch = 16\n  steps = 5\n  log_every = 1\n  data = mnist\n  data_dir = \"DATA\"\n}\n";

#[cfg(feature = "mpi")]
#[test]
fn a_declared_loss_fed_noise_trains_on_two_ranks_as_on_one() {
    let (dir, two, one) = two_ranks_and_one("ae.net", NOISY);
    // Each rank's noise is its rows of the whole batch's: the same noise as one process.
    assert!(
        same_bits(&two, &one).is_err(),
        "expected rounding differences"
    );
    within_rounding(&two, &one);
    // One process in two micro-batches: each part its rows of the noise, the same sums.
    same_bits(&two, &in_two_micro_batches(dir.path(), "ae.net")).unwrap();
    // The evaluation is split (each rank every other test batch, its noise drawn from the
    // batch's index, the sums gathered): the same weights, the same figure up to the order
    // of the f64 sums.
    let (a, b) = (
        last_test_loss(&dir.path().join("two")),
        last_test_loss(&dir.path().join("micro")),
    );
    assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} against {b}");
}

/// An image-folder classifier with AlexNet's kind of pipeline: random crops and mirrors, PCA
/// colour noise, a measured mean (all drawn from the seed, the epoch and the image).
#[cfg(feature = "mpi")]
const FOLDER_NET: &str = "net m {\n input x: 3x28x28\n h = flatten -> dense(16) -> relu -> dropout(0.2)\n out = dense(4)\n}\ntrain {\n optimizer = sgd(lr=0.05, momentum=0.9)\n batch = 8\n steps = 4\n data = images\n resize = 32\n crop = random\n flip = true\n mean = auto\n color_jitter = 0.1\n seed = 2\n}\n";

#[cfg(feature = "mpi")]
#[test]
fn an_image_folder_trains_on_two_ranks_as_in_two_micro_batches() {
    use crate::digit_folder;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("digits");
    let spec = digit_folder::Spec {
        classes: 4,
        per_class: 12,
        split: false,
        rgb: true,
        size: 32,
    };
    digit_folder::write(&data, &spec);
    let f = dir.path().join("m.net");
    std::fs::write(&f, FOLDER_NET).expect("write");
    let (f, data) = (f.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let (code, err) = train2(&[f, "--data-dir", data, "--out", &out("two"), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let micro = [
        f,
        "--data-dir",
        data,
        "--out",
        &out("micro"),
        "--micro-batches",
        "2",
    ];
    let (code, err) = train1(&micro);
    assert_eq!(code, 0, "{err}");
    same_bits(
        &load(&dir.path().join("two")),
        &load(&dir.path().join("micro")),
    )
    .unwrap();
}

/// A language model (issue 26) on 2 ranks: each its windows of the batch, the same weights
/// as one process computing the batch in 2 micro-batches, bit for bit.
#[cfg(feature = "mpi")]
#[test]
fn a_language_model_trains_on_two_ranks_as_in_two_micro_batches() {
    let dir = std::env::temp_dir().join(format!("netc-dist-lm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::write(dir.join("text.txt"), "0123456789abcdef\n".repeat(100)).expect("text");
    let net = "net gpt {\n input tokens: 16\n wte = param([17, 24], init=gaussian(0.02))\n tok = gather(wte, tokens)\n x = tok -> positions(16, 24)\n b1 = transformer(24, 2, 48, causal=true, dropout=0.1)\n ln_f = layernorm(24)\n head = wte -> transpose\n logits = matmul(ln_f, head)\n output logits\n}\ntrain {\n task = language_model\n text = \"text.txt\"\n optimizer = adamw(lr=3e-3, weight_decay=0.1)\n batch = 8\n steps = 6\n log_every = 2\n eval_every = 3\n}\n";
    let model = dir.join("gpt.net");
    std::fs::write(&model, net).expect("model");
    let m = model.to_str().expect("utf-8");
    let (one, two) = (dir.join("one"), dir.join("two"));
    let (o1, o2) = (one.to_str().expect("utf-8"), two.to_str().expect("utf-8"));
    let (c, err) = train1(&[
        m,
        "--device",
        "cpu",
        "--quiet",
        "--out",
        o1,
        "--micro-batches",
        "2",
    ]);
    assert_eq!(c, 0, "{err}");
    let (c, err) = train2(&[m, "--quiet", "--out", o2]);
    assert_eq!(c, 0, "{err}");
    same_bits(&load(&one), &load(&two)).expect("2 ranks == 2 micro-batches");
    assert_eq!(
        load(&two).metadata.get("ranks").map(String::as_str),
        Some("2")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A tiny diffusion model (tests/suite/diffusion.rs's shape) on the MNIST sample, DATA to fill.
#[cfg(feature = "mpi")]
const DIFFUSION: &str = "net d {\n  input x: 1x28x28\n  input temb: 8\n  input eps: 1x28x28\n  tp = temb -> dense(2) -> silu -> unflatten(0, [2, 1, 1])\n  h = x -> conv(2, k=3, pad=same)\n  both = add(h, tp) -> silu -> conv(1, k=3, pad=same)\n  loss = mse(both, eps)\n  output both\n  output loss\n}\ntrain {\n  task = minimise\n  loss = loss\n  inputs = {x: noisy, temb: timestep_embedding, eps: noise}\n  diffusion = linear(start=1e-4, end=0.02, steps=40)\n  prediction = both\n  ema = 0.9\n  optimizer = adam(lr=1e-3)\n  batch = 16\n  steps = 4\n  log_every = 1\n  data = mnist\n  data_dir = \"DATA\"\n  range = [-1, 1]\n}\n";

/// Each rank draws its rows' part of the whole batch's timesteps and noise: 2 ranks train
/// (EMA included) as one process does, within rounding. (Drawn per rank, the timesteps would
/// differ from one process's, and the weights by far more.)
#[cfg(feature = "mpi")]
#[test]
fn a_diffusion_model_trains_on_two_ranks_as_on_one() {
    let (dir, two, one) = two_ranks_and_one("d.net", DIFFUSION);
    assert_eq!(two.metadata["ranks"], "2");
    assert!(
        two.tensors.iter().any(|t| t.0.starts_with("ema.")),
        "the EMA is kept"
    );
    within_rounding(&two, &one);
    // One process in two micro-batches: each part its rows of the timesteps and noise, the
    // EMA updated once a step (once a part would give other bits), the bits of 2 ranks.
    same_bits(&two, &in_two_micro_batches(dir.path(), "d.net")).unwrap();
}

/// Declared losses on the GPU path (lavapipe in CI): each rank's gradient pass, the host's
/// all-reduce, then the update pass with the moving average; against one process on the same
/// adapter, within rounding. The noisy model has SGD and noise; the diffusion model Adam,
/// timesteps, noise and the EMA. No adapter fails under NETC_REQUIRE_GPU=1.
#[cfg(feature = "mpi")]
#[test]
fn declared_losses_on_the_gpu_train_on_two_ranks_as_on_one() {
    let Some(device) = gpu_device() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    for (file, model) in [("ae.net", NOISY), ("d.net", DIFFUSION)] {
        let f = dir.path().join(file);
        std::fs::write(&f, model.replace("DATA", data.to_str().expect("utf-8"))).expect("write");
        let f = f.to_str().expect("utf-8");
        let out = |n: &str| {
            let o = dir.path().join(format!("{file}-{n}"));
            o.to_str().expect("utf-8").to_string()
        };
        let args = ["--device", device.as_str(), "--quiet"];
        let (code, err) = train2(&[&[f, "--out", &out("two")], &args[..]].concat());
        assert_eq!(code, 0, "{file}: {err}");
        let (code, err) = train1(&[&[f, "--out", &out("one")], &args[..]].concat());
        assert_eq!(code, 0, "{file}: {err}");
        let (two, one) = (load(Path::new(&out("two"))), load(Path::new(&out("one"))));
        assert_eq!(two.metadata["ranks"], "2");
        assert_eq!(two.tensors.len(), one.tensors.len(), "{file}");
        within_rounding(&two, &one);
    }
}

/// The `--device` naming the test adapter's backend (a name may match it on another backend
/// too), the adapter itself dropped before the ranks open theirs; None without one (which
/// `test_gpu` turns into a failure under NETC_REQUIRE_GPU=1).
#[cfg(feature = "mpi")]
fn gpu_device() -> Option<String> {
    let gpu = netc_runtime::gpu::test_gpu()?;
    Some(gpu.info.backend.to_lowercase())
}
