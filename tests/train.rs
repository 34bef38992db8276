//! `netc train`, `eval` and `sample` end to end on the shipped MNIST sample (short runs).

use std::path::Path;
use std::process::Command;

#[path = "support/netc.rs"]
mod run;
use run::netc;

/// A fresh folder for one test, removed when it goes out of scope (tempfile: unique names, so
/// tests running at once never share one, and no leftovers in the temp dir).
struct Tmp(tempfile::TempDir);

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Tmp {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

fn tmp(name: &str) -> Tmp {
    Tmp(tempfile::Builder::new()
        .prefix(&format!("netc-test-{name}-"))
        .tempdir()
        .expect("a temporary folder"))
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The tensors of two checkpoints are bit-identical (metadata such as timing may differ).
fn same_weights(a: &Path, b: &Path) {
    let ca = netc_runtime::io::Checkpoint::load(&a.join("checkpoint.safetensors")).expect("a");
    let cb = netc_runtime::io::Checkpoint::load(&b.join("checkpoint.safetensors")).expect("b");
    assert_eq!(ca.tensors.len(), cb.tensors.len());
    for ((na, sa, da), (nb, sb, db)) in ca.tensors.iter().zip(&cb.tensors) {
        assert_eq!((na, sa), (nb, sb));
        assert!(
            da.iter().zip(db).all(|(x, y)| x.to_bits() == y.to_bits()),
            "tensor {na} differs"
        );
    }
}

fn epoch_line(m: &[serde_json::Value], epoch: f64) -> serde_json::Value {
    m.iter()
        .find(|v| v["epoch"] == epoch && !v["test_acc"].is_null())
        .cloned()
        .unwrap_or_else(|| panic!("no evaluation for epoch {epoch}: {m:?}"))
}

#[test]
fn mlp_learns_on_the_shipped_sample() {
    let out = tmp("mlp");
    let o = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--out",
        o,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("training on the first 8000 test images"),
        "{err}"
    );
    let m = metrics(&out);
    let e2 = epoch_line(&m, 2.0);
    assert!(e2["test_acc"].as_f64().expect("acc") > 0.85, "{e2}");
    assert!(e2["test_top5"].as_f64().expect("top5") > e2["test_acc"].as_f64().expect("acc"));
    // Train top-5 is logged and printed beside train top-1 (ten classes).
    let (tr1, tr5) = (
        e2["epoch_train_acc"].as_f64().expect("train acc"),
        e2["epoch_train_top5"].as_f64().expect("train top5"),
    );
    assert!(tr5 > tr1 && tr5 <= 1.0, "{e2}");
    assert!(
        err.contains(&format!(
            "train acc {:.2}%, top-5 {:.2}%",
            100.0 * tr1,
            100.0 * tr5
        )),
        "{err}"
    );
    for f in ["checkpoint.safetensors", "loss.png", "metrics.jsonl"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    // metrics.jsonl: each row says its kind, counters are integers, and no step is logged
    // twice (the last interval of an epoch is part of the epoch's row).
    let mut last = 0;
    for v in &m {
        assert!(v["kind"] == "train" || v["kind"] == "epoch", "{v}");
        assert!(v["epoch"].is_u64(), "{v}");
        let step = v["step"].as_u64().expect("integer step");
        assert!(step > last, "step {step} after {last}: {v}");
        last = step;
    }
    assert_eq!(e2["kind"], "epoch");
    assert!(e2["train_loss"].is_f64() && e2["lr"].is_f64(), "{e2}");
    // The epoch line's time is that epoch's own; the run's total follows it.
    let (own, all) = (
        e2["epoch_seconds"].as_f64().expect("epoch time"),
        e2["seconds"].as_f64().expect("total"),
    );
    assert!(own > 0.0 && own < all, "{e2}");
    assert!(
        err.contains(&format!("| {own:.1} s ({all:.1} s in all)")),
        "{err}"
    );
    // Resuming a finished run asks for nothing more: an error that says why, not exit 0.
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--out",
        o,
        "--resume",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("nothing to train: the checkpoint is at step"),
        "{err}"
    );
    let w = out.join("checkpoint.safetensors");
    let (code, stdout, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    // eval reproduces the accuracy the training run logged for its last epoch.
    let acc = format!("{:.2}%", 100.0 * e2["test_acc"].as_f64().expect("acc"));
    assert!(stdout.contains(&acc), "{stdout} vs {acc}");
    // The checkpoint is a PyTorch state_dict of the same module (hidden.weight, ...), the
    // optimizer state apart under `optimizer.` with torch.optim's names, and says which model
    // text it came from (tests/torch/load_checkpoint.py loads it into torch).
    let ck = netc_runtime::io::Checkpoint::load(&w).expect("checkpoint");
    let mut names: Vec<&str> = ck.tensors.iter().map(|t| t.0.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names[..4],
        [
            "hidden.bias",
            "hidden.weight",
            "logits.bias",
            "logits.weight"
        ]
    );
    assert!(
        names.contains(&"optimizer.hidden.weight.exp_avg_sq"),
        "{names:?}"
    );
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(ck.get("hidden.weight").expect("w").0, [128, 784]);
    assert_eq!(ck.metadata["model_sha256"].len(), 64);
    // A checkpoint of earlier versions (`mlp/hidden.weight`, `...opt0`) still loads.
    let mut old = ck.clone();
    for t in old.tensors.iter_mut() {
        if !t.0.starts_with("optimizer.") {
            t.0 = format!("mlp/{}", t.0);
        }
    }
    old.tensors.retain(|t| !t.0.starts_with("optimizer."));
    let old_path = out.join("old.safetensors");
    old.save(&old_path).expect("save");
    let (code, stdout_old, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        old_path.to_str().expect("utf-8"),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout_old, stdout);
    // Training again into the same folder neither truncates its metrics nor replaces its
    // checkpoint unless asked to.
    let log = std::fs::read(out.join("metrics.jsonl")).expect("metrics");
    let (code, _, err) = netc(&["train", "models/mlp.net", "--device", "cpu", "--out", o]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already holds a run"), "{err}");
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(
        std::fs::read(out.join("metrics.jsonl")).expect("metrics"),
        log
    );
    // Leftovers of a run killed mid-write are cleared by the next run in the folder.
    let stale = [".tmp-netc-AbC123", "checkpoint.safetensors.tmp-4242-0"];
    for f in stale {
        std::fs::write(out.join(f), b"partial").expect("write");
    }
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--steps",
        "3",
        "--out",
        o,
        "--overwrite",
    ]);
    assert_eq!(code, 0, "{err}");
    for f in stale {
        assert!(!out.join(f).exists(), "{f} left behind");
    }
    let m = metrics(&out);
    assert_eq!(m.last().expect("rows")["step"], 3, "{m:?}");
    assert!(m.iter().all(|v| v["step"].as_u64() <= Some(3)), "{m:?}");
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let (a, b) = (tmp("full"), tmp("resumed"));
    let (ao, bo) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let common = [
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--quiet",
    ];
    let (c1, _, e1) = netc(&[&common[..], &["--epochs", "2", "--out", ao]].concat());
    assert_eq!(c1, 0, "{e1}");
    let (c2, _, e2) = netc(&[&common[..], &["--epochs", "1", "--out", bo]].concat());
    assert_eq!(c2, 0, "{e2}");
    let (c3, _, e3) = netc(&[&common[..], &["--epochs", "2", "--out", bo, "--resume"]].concat());
    assert_eq!(c3, 0, "{e3}");
    assert!(e3.contains("resumed from"), "{e3}");
    let (ma, mb) = (metrics(&a), metrics(&b));
    for key in [
        "epoch_train_loss",
        "epoch_train_acc",
        "test_loss",
        "test_acc",
    ] {
        assert_eq!(
            epoch_line(&ma, 2.0)[key],
            epoch_line(&mb, 2.0)[key],
            "{key}"
        );
    }
    same_weights(&a, &b);
}

#[test]
fn nan_stops_the_run_and_keeps_the_last_checkpoint() {
    let out = tmp("nan");
    let o = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--out",
        o,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    let ck = out.join("checkpoint.safetensors");
    let before = std::fs::read(&ck).expect("checkpoint");
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--epochs",
        "3",
        "--lr",
        "1e30",
        "--resume",
        "--out",
        o,
        "--quiet",
    ]);
    assert_eq!(code, 1, "{err}");
    // The CPU executor names the first step whose loss was NaN (step 63 trained from the
    // checkpoint's weights; its update of 1e30 made step 64's loss NaN), not the step of the
    // next read, which was the log interval's.
    assert!(err.contains("the loss became NaN at step 64;"), "{err}");
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    assert_eq!(
        std::fs::read(&ck).expect("checkpoint"),
        before,
        "the last good checkpoint was overwritten"
    );
}

#[test]
fn setup_errors_are_one_line_and_exit_1() {
    let out = tmp("errs");
    let o = out.to_str().expect("utf-8");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "train",
            "models/mlp.net",
            "--data-dir",
            "/no/such/dir",
            "--out",
            o,
        ],
        vec![
            "train",
            "models/mlp.net",
            "--out",
            "/proc/netc-cannot-write-here",
        ],
        vec!["train", "models/vgg11.net", "--out", o],
        vec![
            "train",
            "models/mlp.net",
            "--resume",
            "--out",
            "/tmp/netc-no-such-run-dir",
        ],
    ];
    for args in cases {
        let (code, _, err) = netc(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {err}");
    }
    assert!(
        !out.join("metrics.jsonl").exists(),
        "work started before the error"
    );
}

#[test]
fn bad_training_section_is_a_located_diagnostic() {
    let dir = tmp("badcfg");
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("m.net");
    std::fs::write(&f, "net m { input x: 4\n o = dense(2) }\ntrain {\n  optimiser = adam(lr=1e-3)\n  batch = -3\n}\n").expect("write");
    let (code, _, err) = netc(&["train", f.to_str().expect("utf-8")]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown training setting `optimiser`"),
        "{err}"
    );
    assert!(err.contains("did you mean `optimizer`?"), "{err}");
    assert!(err.contains("m.net:4:3"), "{err}");
    assert!(err.contains("training setting `batch`"), "{err}");
}

#[test]
fn gan_trains_and_samples() {
    let out = tmp("gan");
    let o = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--steps",
        "40",
        "--out",
        o,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    for f in [
        "checkpoint.safetensors",
        "loss.png",
        "samples.png",
        "metrics.jsonl",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let m = metrics(&out);
    let last = m.last().expect("a metrics line");
    for k in ["d_loss", "g_loss", "d_x", "d_g_z"] {
        assert!(last[k].as_f64().expect(k).is_finite(), "{k}: {last}");
    }
    let w = out.join("checkpoint.safetensors");
    let npy = out.join("s.npy");
    let (code, stdout, err) = netc(&[
        "sample",
        "models/gan.yaml",
        "--weights",
        w.to_str().expect("utf-8"),
        "--count",
        "10",
        "--format",
        "npy",
        "--out",
        npy.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("(10, 1, 28, 28)"), "{stdout}");
    let (shape, data) = netc_runtime::io::read_npy_f32(&npy).expect("npy");
    assert_eq!(shape, vec![10, 1, 28, 28]);
    assert!(
        data.iter().all(|v| (0.0..=1.0).contains(v)),
        "a sigmoid generator makes values in [0, 1]"
    );
    let png = out.join("grid.png");
    let (code, _, err) = netc(&[
        "sample",
        "models/gan.yaml",
        "--weights",
        w.to_str().expect("utf-8"),
        "--count",
        "16",
        "--out",
        png.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(png.is_file());
    // The format follows --out's extension (it used to write a PNG named .npy) ...
    let npy2 = out.join("by-extension.npy");
    let sample = |extra: &[&str]| {
        let mut args = vec![
            "sample",
            "models/gan.yaml",
            "--weights",
            w.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        netc(&args)
    };
    let (code, _, err) = sample(&["--count", "3", "--out", npy2.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        netc_runtime::io::read_npy_f32(&npy2).expect("npy").0,
        vec![3, 1, 28, 28]
    );
    // ... a contradiction is a usage error ...
    let (code, _, err) = sample(&["--format", "png", "--out", npy2.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    // ... and without --out the grid goes into the run's folder, beside the weights, without
    // replacing the grid training wrote.
    let before = std::fs::read(out.join("samples.png")).expect("training's grid");
    let (code, stdout, err) = sample(&["--count", "4", "--seed", "7"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.join("samples-seed7.png").is_file(), "{stdout}");
    assert_eq!(
        std::fs::read(out.join("samples.png")).expect("grid"),
        before
    );
}

#[test]
fn dcgan_trains_resumes_bit_exact_samples_and_scores() {
    // The DCGAN's batchnorm running statistics are state: saved (with PyTorch's
    // num_batches_tracked beside them), restored on resume, not given optimizer state.
    let (a, b) = (tmp("dcgan-full"), tmp("dcgan-resumed"));
    let (ao, bo) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let common = [
        "train",
        "models/dcgan.net",
        "--device",
        "cpu",
        "--quiet",
        "--batch",
        "16",
    ];
    let (code, _, err) = netc(&[&common[..], &["--steps", "4", "--out", ao]].concat());
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        netc(&[&common[..], &["--steps", "2", "--out", bo]].concat()).0,
        0
    );
    let (c, _, e) = netc(&[&common[..], &["--steps", "4", "--out", bo, "--resume"]].concat());
    assert_eq!(c, 0, "{e}");
    same_weights(&a, &b);
    let w = a.join("checkpoint.safetensors");
    let ck = netc_runtime::io::Checkpoint::load(&w).expect("checkpoint");
    let (shape, mean) = ck
        .get("generator.up1.batchnorm.running_mean")
        .expect("running mean saved");
    assert_eq!(shape, &[64]);
    assert!(mean.iter().any(|&v| v != 0.0), "the running mean moved");
    // G ran in training mode in 4 D steps and 4 G steps; D twice per D step and once per G step.
    for (key, passes) in [
        ("generator.up1.batchnorm.num_batches_tracked", 8.0),
        ("discriminator.c2.batchnorm.num_batches_tracked", 12.0),
    ] {
        let (shape, v) = ck.get(key).unwrap_or_else(|| panic!("{key}"));
        assert_eq!((shape, v), (&[][..], &[passes][..]), "{key}");
    }
    assert!(ck
        .get("optimizer.generator.up1.batchnorm.weight.exp_avg")
        .is_some());
    assert!(ck
        .get("optimizer.generator.up1.batchnorm.running_mean.exp_avg")
        .is_none());
    // Samples come out in [0, 1] (the tanh's [-1, 1] mapped back), the grid at 3x.
    let npy = a.join("s.npy");
    let (code, _, err) = netc(&[
        "sample",
        "models/dcgan.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--count",
        "6",
        "--out",
        npy.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let (shape, data) = netc_runtime::io::read_npy_f32(&npy).expect("npy");
    assert_eq!(shape, vec![6, 1, 28, 28]);
    assert!(data.iter().all(|v| (0.0..=1.0).contains(v)));
    // A count no machine holds is refused before allocating (it used to abort).
    let (code, _, err) = netc(&[
        "sample",
        "models/dcgan.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--count",
        "100000000",
        "--out",
        npy.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("needs 313.9 GB of memory"), "{err}");
    // 16 samples (the batch) in rows of 8, 28x28 cells drawn at 3x: 8 x 85 + 1 wide.
    let png = std::fs::read(a.join("samples.png")).expect("grid");
    let size = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((size(16), size(20)), (681, 171));
    // `netc score` of the generator, and of the .npy.
    let (code, stdout, err) = netc(&[
        "score",
        "models/dcgan.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--count",
        "100",
        "--real",
        "300",
    ]);
    assert_eq!(code, 0, "{err}");
    for k in [
        "inception score",
        "confident (p > 0.9)",
        "classes",
        "Frechet distance",
    ] {
        assert!(stdout.contains(k), "{k}: {stdout}");
    }
    let (code, stdout, err) = netc(&[
        "score",
        "--samples",
        npy.to_str().expect("utf-8"),
        "--data-dir",
        "data/mnist-sample",
        "--real",
        "300",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["count"], 6);
    assert!(v["frechet_distance"].as_f64().expect("fid") > 0.0);
    assert!(v["real"]["inception_score"].as_f64().expect("real IS") > 8.0);
}

#[test]
fn dcgan_trains_on_the_gpu_path() {
    if netc_runtime::gpu::test_gpu().is_none() {
        return;
    }
    let out = tmp("dcgan-gpu");
    let (code, _, err) = netc(&[
        "train",
        "models/dcgan.net",
        "--device",
        "vulkan",
        "--steps",
        "3",
        "--batch",
        "8",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let last = metrics(&out).last().cloned().expect("a metrics line");
    for k in ["d_loss", "g_loss", "d_x", "d_g_z"] {
        assert!(last[k].as_f64().expect(k).is_finite(), "{k}: {last}");
    }
    assert!(out.join("samples.png").is_file());
}

#[test]
fn a_second_run_into_the_same_folder_is_refused() {
    // Two runs into one folder used to both exit 0 with their metrics interleaved.
    let out = tmp("locked");
    let o = out.to_str().expect("utf-8");
    let mut first = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "train",
            "models/gan.yaml",
            "--device",
            "cpu",
            "--steps",
            "100000",
            "--quiet",
            "--out",
            o,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("first run");
    let lock = out.join(".netc-lock");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .trim()
        .is_empty()
    {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for extra in [&["--overwrite"][..], &["--resume"]] {
        let (code, _, err) = netc(
            &[
                &[
                    "train",
                    "models/gan.yaml",
                    "--device",
                    "cpu",
                    "--steps",
                    "5",
                    "--out",
                    o,
                ][..],
                extra,
            ]
            .concat(),
        );
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("another netc run (process "), "{err}");
    }
    first.kill().expect("kill");
    first.wait().expect("reaped");
    // The lock goes with its process, even one killed with SIGKILL.
    let (code, _, err) = netc(&[
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--out",
        o,
        "--overwrite",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn resume_refuses_a_checkpoint_that_does_not_fit_and_logs_no_step_twice() {
    let out = tmp("resume-strict");
    let o = out.to_str().expect("utf-8");
    let base = [
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        o,
    ];
    let (code, _, err) = netc(&[&base[..], &["--epochs", "1"]].concat());
    assert_eq!(code, 0, "{err}");
    // Rows a killed run logged after its last checkpoint are trained again on resume: they
    // go, rather than appearing twice.
    let metrics_path = out.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics_path).expect("metrics");
    text.push_str("{\"kind\":\"train\",\"step\":99999,\"train_loss\":1.0}\n");
    std::fs::write(&metrics_path, text).expect("write");
    let (code, _, err) = netc(&[&base[..], &["--epochs", "2", "--resume"]].concat());
    assert_eq!(code, 0, "{err}");
    let steps: Vec<u64> = metrics(&out)
        .iter()
        .map(|r| r["step"].as_u64().expect("step"))
        .collect();
    assert!(!steps.contains(&99999), "{steps:?}");
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    // The model changed since (a bias turned off): resuming would silently drop the trained
    // bias, so it is refused naming it.
    let changed = out.join("changed.net");
    let src = std::fs::read_to_string("models/mlp.net").expect("model");
    let src = src.replace("dense(128", "dense(128, bias=false");
    assert!(src.contains("bias=false"), "the edit applies");
    std::fs::write(&changed, src).expect("write");
    let (code, _, err) = netc(&[
        "train",
        changed.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--epochs",
        "3",
        "--out",
        o,
        "--resume",
        "--data-dir",
        "data/mnist-sample",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("which the network does not"), "{err}");
    // A checkpoint without its step cannot be resumed (it used to restart at step 0).
    let ck_path = out.join("checkpoint.safetensors");
    let mut ck = netc_runtime::io::Checkpoint::load(&ck_path).expect("checkpoint");
    ck.metadata.remove("step");
    ck.save(&ck_path).expect("save");
    let (code, _, err) = netc(&[&base[..], &["--epochs", "3", "--resume"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("has no `step`"), "{err}");
    // Non-finite weights are refused by every reader of checkpoints.
    let mut ck = netc_runtime::io::Checkpoint::load(&ck_path).expect("checkpoint");
    ck.metadata.insert("step".into(), "62".into());
    let t = ck
        .tensors
        .iter_mut()
        .find(|t| t.0 == "hidden.weight")
        .expect("weight");
    t.2[5] = f32::NAN;
    ck.save(&ck_path).expect("save");
    let (code, _, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        ck_path.to_str().expect("utf-8"),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`hidden.weight` holds NaN or infinite values"),
        "{err}"
    );
}

/// Writes an IDX split (raw, not gzipped) of `n` blank `side`x`side` images labelled 0..9.
fn write_idx(dir: &Path, split: &str, n: u32, side: u32) {
    let mut images = vec![];
    for v in [2051u32, n, side, side] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    images.extend(std::iter::repeat_n(0u8, (n * side * side) as usize));
    let mut labels = vec![];
    for v in [2049u32, n] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).expect("images");
    std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels).expect("labels");
}

#[test]
fn every_split_is_checked_against_the_network_before_training() {
    // A 32x32 test split beside a 28x28 training split used to train first and fail at the
    // first evaluation; `eval` blamed "rows with target values"; an empty split evaluated to
    // "loss 0, top-1 0%".
    let data = tmp("splits");
    write_idx(&data, "train", 256, 28);
    write_idx(&data, "t10k", 16, 28);
    let d = data.to_str().expect("utf-8");
    let out = tmp("splits-run");
    let o = out.to_str().expect("utf-8");
    let run = [
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--data-dir",
        d,
        "--out",
        o,
    ];
    let (code, _, err) = netc(&[&run[..], &["--epochs", "1", "--quiet"]].concat());
    assert_eq!(code, 0, "{err}");
    let w = out.join("checkpoint.safetensors");
    write_idx(&data, "t10k", 16, 32);
    let (code, _, err) = netc(&[&run[..], &["--overwrite", "--quiet"]].concat());
    assert_eq!(code, 1, "{err}");
    let expected =
        "the test images are 1x32x32 (1024 values) but network `mlp` takes 784 (784 values)";
    assert!(err.contains(expected), "{err}");
    assert!(!w.exists(), "nothing was trained");
    let (code, _, err) = netc(&[&run[..], &["--epochs", "1", "--quiet", "--overwrite"]].concat());
    assert_eq!(code, 1, "{err}");
    write_idx(&data, "t10k", 16, 28);
    let (code, _, err) = netc(&[&run[..], &["--epochs", "1", "--quiet", "--overwrite"]].concat());
    assert_eq!(code, 0, "{err}");
    write_idx(&data, "t10k", 16, 32);
    let (code, _, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--data-dir",
        d,
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(expected), "{err}");
    write_idx(&data, "t10k", 0, 28);
    let (code, _, err) = netc(&[&run[..], &["--quiet", "--overwrite"]].concat());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the test split has no images"), "{err}");
}

#[test]
#[cfg(unix)]
fn kill_9_while_checkpointing_leaves_a_loadable_checkpoint_every_time() {
    // A GAN that writes its checkpoint after every step, killed with SIGKILL at 20 moments
    // spread over its first seconds: each time the checkpoint on disk loads (checksums
    // verified) and resumes, and the next run removes the killed runs' temporary files.
    let dir = tmp("kill9");
    let model = dir.join("gan.yaml");
    let src = std::fs::read_to_string("models/gan.yaml").expect("model");
    let src = src
        .replace("checkpoint_every: 1000", "checkpoint_every: 1")
        .replace(
            "data_dir: ../data/mnist-sample",
            "data_dir: data/mnist-sample",
        );
    std::fs::write(&model, src).expect("write");
    let out = dir.join("run");
    let (m, o) = (model.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let mut seen = 0;
    for i in 0..20u64 {
        let mut args = vec![
            "train", m, "--device", "cpu", "--steps", "100000", "--batch", "32",
        ];
        args.extend(["--quiet", "--out", o, "--data-dir", "data/mnist-sample"]);
        args.push(if out.join("checkpoint.safetensors").exists() {
            "--resume"
        } else {
            "--overwrite"
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run");
        // 0.3 to 1.2 s: setup, and then steps each ending in a checkpoint write.
        std::thread::sleep(std::time::Duration::from_millis(300 + (i * 389) % 900));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let ck = out.join("checkpoint.safetensors");
        if ck.exists() {
            let c = netc_runtime::io::Checkpoint::load(&ck)
                .unwrap_or_else(|e| panic!("kill {i}: the checkpoint does not load: {e}"));
            assert!(c.metadata.contains_key("g_step"), "kill {i}");
            seen += 1;
        }
    }
    assert!(seen >= 10, "only {seen} kills came after a checkpoint");
    // The last checkpoint resumes for one more step.
    let c = netc_runtime::io::Checkpoint::load(&out.join("checkpoint.safetensors")).expect("ck");
    let step: u64 = c.metadata["g_step"].parse().expect("step");
    let more = (step + 1).to_string();
    let (code, _, err) = netc(&[
        "train",
        m,
        "--device",
        "cpu",
        "--steps",
        &more,
        "--batch",
        "32",
        "--quiet",
        "--out",
        o,
        "--data-dir",
        "data/mnist-sample",
        "--resume",
    ]);
    assert_eq!(code, 0, "{err}");
    let stray: Vec<String> = std::fs::read_dir(&out)
        .expect("run folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn gan_resume_equals_an_uninterrupted_run() {
    let (a, b) = (tmp("gan-full"), tmp("gan-resumed"));
    let (ao, bo) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let common = [
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--quiet",
        "--batch",
        "32",
    ];
    assert_eq!(
        netc(&[&common[..], &["--steps", "20", "--out", ao]].concat()).0,
        0
    );
    assert_eq!(
        netc(&[&common[..], &["--steps", "10", "--out", bo]].concat()).0,
        0
    );
    let (c, _, e) = netc(&[&common[..], &["--steps", "20", "--out", bo, "--resume"]].concat());
    assert_eq!(c, 0, "{e}");
    // Weights and both optimizers' state after 20 steps, interrupted at 10 or not.
    same_weights(&a, &b);
    assert_eq!(
        metrics(&a).last().expect("a")["step"],
        metrics(&b).last().expect("b")["step"]
    );
}

#[test]
fn mlp_trains_on_the_gpu_like_on_the_cpu() {
    if netc_runtime::gpu::test_gpu().is_none() {
        return;
    }
    let (g, c) = (tmp("gpu"), tmp("cpu"));
    let base = [
        "train",
        "models/mlp.net",
        "--epochs",
        "1",
        "--quiet",
        "--seed",
        "3",
    ];
    let (code, _, err) = netc(
        &[
            &base[..],
            &["--device", "vulkan", "--out", g.to_str().expect("utf-8")],
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        netc(
            &[
                &base[..],
                &["--device", "cpu", "--out", c.to_str().expect("utf-8")]
            ]
            .concat()
        )
        .0,
        0
    );
    let (eg, ec) = (epoch_line(&metrics(&g), 1.0), epoch_line(&metrics(&c), 1.0));
    let (lg, lc) = (
        eg["test_loss"].as_f64().expect("loss"),
        ec["test_loss"].as_f64().expect("loss"),
    );
    assert!(
        (lg - lc).abs() / lc < 1e-3,
        "GPU test loss {lg} vs CPU {lc}"
    );
    let (ag, ac) = (
        eg["test_acc"].as_f64().expect("acc"),
        ec["test_acc"].as_f64().expect("acc"),
    );
    assert!((ag - ac).abs() <= 0.002, "GPU accuracy {ag} vs CPU {ac}");
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_resume_continues() {
    let out = tmp("sigint");
    let o = out.to_str().expect("utf-8");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "train",
            "models/gan.yaml",
            "--device",
            "cpu",
            "--steps",
            "1000000",
            "--batch",
            "16",
            "--quiet",
            "--out",
            o,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    // Wait until training has really started (the first metrics line), then interrupt.
    let start = std::time::Instant::now();
    while !out.join("metrics.jsonl").is_file() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not stop after Ctrl-C"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted at step"), "{err}");
    let ck = netc_runtime::io::Checkpoint::load(&out.join("checkpoint.safetensors"))
        .expect("checkpoint written on Ctrl-C");
    let step: u64 = ck.metadata["g_step"].parse().expect("step");
    assert!(step > 0);
    let target = (step + 3).to_string();
    let (code, _, err) = netc(&[
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--steps",
        &target,
        "--batch",
        "16",
        "--quiet",
        "--out",
        o,
        "--resume",
    ]);
    assert_eq!(code, 0, "{err}");
    let ck = netc_runtime::io::Checkpoint::load(&out.join("checkpoint.safetensors"))
        .expect("checkpoint");
    assert_eq!(ck.metadata["g_step"], target);
}

#[test]
fn lenet_learns_on_the_shipped_sample_and_evaluates() {
    // Caffe's LeNet with its solver (SGD, momentum, weight decay, the inv schedule) for 120
    // steps of 64 on the CPU executor; then `eval` of the checkpoint reproduces the accuracy.
    let out = tmp("lenet");
    let o = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "train",
        "models/lenet.net",
        "--device",
        "cpu",
        "--steps",
        "120",
        "--out",
        o,
    ]);
    assert_eq!(code, 0, "{err}");
    let m = metrics(&out);
    let e1 = epoch_line(&m, 1.0);
    let acc = e1["test_acc"].as_f64().expect("acc");
    assert!(acc > 0.85, "{e1}");
    // The inv schedule's rate at the last step, as the log shows it.
    let last = m
        .iter()
        .rev()
        .find(|v| !v["lr"].is_null())
        .expect("lr logged");
    let want = 0.01 * (1.0 + 1e-4 * 119.0f64).powf(-0.75);
    assert!(
        (last["lr"].as_f64().expect("lr") - want).abs() < 1e-9,
        "{last}"
    );
    let w = out.join("checkpoint.safetensors");
    let (code, stdout, err) = netc(&[
        "eval",
        "models/lenet.net",
        "--weights",
        w.to_str().expect("utf-8"),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(&format!("{:.2}%", 100.0 * acc)), "{stdout}");
}

#[test]
fn alexnet_trains_from_its_training_section_on_synthetic_data() {
    // models/alexnet.net as shipped (`data = synthetic`, no data folder): one SGD step of 2 on
    // the CPU executor runs the whole network, logs a finite loss and leaves a checkpoint.
    let out = tmp("alexnet");
    let o = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "train",
        "models/alexnet.net",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--batch",
        "2",
        "--out",
        o,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("synthetic data"), "{err}");
    let m = metrics(&out);
    let loss = m
        .iter()
        .find_map(|v| v["train_loss"].as_f64())
        .expect("a logged loss");
    assert!(loss.is_finite() && loss > 0.0, "{m:?}");
    assert!(out.join("checkpoint.safetensors").exists());
}

#[test]
fn synthetic_data_is_learnable() {
    // LeNet's training section with `data = synthetic`: 10 epochs of 4 steps separate the 10
    // noisy class prototypes on held-out examples (86% here; chance is 10%).
    let src = std::fs::read_to_string("models/lenet.net").expect("model");
    let src = src
        .replace("data = mnist", "data = synthetic")
        .replace("data_dir = \"../data/mnist-sample\"", "")
        .replace("steps = 10000", "epochs = 10");
    let dir = tmp("synthetic");
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("lenet.net");
    std::fs::write(&f, src).expect("write");
    let out = dir.join("run");
    let (code, _, err) = netc(&[
        "train",
        f.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    let last = epoch_line(&metrics(&out), 10.0);
    assert!(last["test_acc"].as_f64().expect("acc") > 0.5, "{last}");
}

#[test]
fn train_starts_from_another_runs_weights() {
    let (a, b) = (tmp("weights-a"), tmp("weights-b"));
    let (ao, bo) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let run = |extra: &[&str], out: &str| {
        let mut args = vec!["train", "models/mlp.net", "--device", "cpu", "--out", out];
        args.extend_from_slice(extra);
        netc(&args)
    };
    let (code, _, err) = run(&["--epochs", "2"], ao);
    assert_eq!(code, 0, "{err}");
    let w = a.join("checkpoint.safetensors");
    let w = w.to_str().expect("utf-8");
    // Fine-tuning from the trained weights: the loss of the first step is already the trained
    // network's (here 0.38; a fresh start's first step: 2.42).
    let (code, _, err) = run(&["--weights", w, "--steps", "1", "--overwrite"], bo);
    assert_eq!(code, 0, "{err}");
    let first = metrics(&b)[0]["train_loss"].as_f64().expect("loss");
    assert!(first < 0.8, "{first}");
    // Weights that do not fit the network: every missing tensor is named.
    let (code, _, err) = netc(&[
        "train",
        "models/lenet.net",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--weights",
        w,
        "--out",
        bo,
        "--overwrite",
    ]);
    assert_eq!(code, 1, "{err}");
    for t in ["conv1.weight", "conv2.bias", "ip2.weight"] {
        assert!(err.contains(&format!("no tensor `{t}`")), "{err}");
    }
    // --weights and --resume contradict each other.
    assert_eq!(run(&["--weights", w, "--resume"], bo).0, 2);
}

/// Starts `netc train` with `args` into `out`, sends `signal` once training has logged, and
/// returns the exit status and stderr.
#[cfg(unix)]
#[test]
#[cfg(unix)]
fn a_second_ctrl_c_stops_at_once() {
    // The first SIGINT asks for a checkpoint at the end of the step; a second one, while a
    // long step still runs, ends the process at once with 130 (it used to be ignored).
    let out = tmp("ctrl-c-twice");
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args([
            "train",
            "models/dcgan.net",
            "--device",
            "cpu",
            "--steps",
            "100000",
            "--quiet",
        ])
        .args(["--out", out.to_str().expect("utf-8")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let start = std::time::Instant::now();
    while !out.join("metrics.jsonl").is_file() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for _ in 0..2 {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted again"), "{err}");
}

fn signal_run(args: &[&str], out: &Path, signal: &str) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .args(["--quiet", "--out", out.to_str().expect("utf-8")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let start = std::time::Instant::now();
    while !out.join("metrics.jsonl").is_file() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    (status, err)
}

#[cfg(unix)]
#[test]
fn sigterm_and_sighup_checkpoint_and_exit_128_plus_the_signal() {
    // They used to end the run with no checkpoint, losing everything since the last one.
    let gan = tmp("sigterm");
    let (status, err) = signal_run(
        &[
            "train",
            "models/gan.yaml",
            "--device",
            "cpu",
            "--steps",
            "1000000",
            "--batch",
            "16",
        ],
        &gan,
        "-TERM",
    );
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(err.contains("interrupted at step"), "{err}");
    let ck = netc_runtime::io::Checkpoint::load(&gan.join("checkpoint.safetensors"))
        .expect("checkpoint written on SIGTERM");
    assert!(ck.metadata["g_step"].parse::<u64>().expect("step") > 0);
    let mlp = tmp("sighup");
    let (status, err) = signal_run(
        &[
            "train",
            "models/mlp.net",
            "--device",
            "cpu",
            "--epochs",
            "100000",
        ],
        &mlp,
        "-HUP",
    );
    assert_eq!(status.code(), Some(129), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    netc_runtime::io::Checkpoint::load(&mlp.join("checkpoint.safetensors"))
        .expect("checkpoint written on SIGHUP");
}
