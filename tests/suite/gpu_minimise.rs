//! A declared loss trained on the GPU path from the command line: the shipped VAE
//! (`models/vae.net`) takes 3 steps with `--device vulkan` and logs the CPU executor's
//! losses, and a tiny diffusion model's GPU run resumed on the CPU executor ends with the
//! checkpoint (weights, momenta, moving average) of a run that took every step on the CPU:
//! the checkpoints are one format. Skipped without an adapter; with NETC_REQUIRE_GPU=1 a
//! missing adapter fails them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::run::netc;

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-gpu-minimise-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `netc train MODEL --device DEVICE --out OUT` and `extra`; its standard output.
fn train(model: &Path, device: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        model.to_str().expect("utf-8"),
        "--device",
        device,
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    let (code, so, se) = netc(&args);
    assert_eq!(code, 0, "{so}\n{se}");
    so
}

/// The train loss of each `"kind": "train"` row of a run's metrics.jsonl, by step.
fn train_losses(run: &Path) -> BTreeMap<u64, f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON row"))
        .filter(|r| r["kind"] == "train" || r["kind"] == "epoch")
        .map(|r| {
            let step = r["step"].as_u64().expect("step");
            (step, r["train_loss"].as_f64().expect("train_loss"))
        })
        .collect()
}

fn gpu() -> bool {
    netc_runtime::gpu::test_gpu().is_some()
}

#[test]
fn the_shipped_vae_trains_on_the_gpu_path_as_on_the_cpu() {
    if !gpu() {
        return;
    }
    let dir = tmp("vae");
    let model = root().join("models/vae.net");
    let (g, c) = (dir.path().join("gpu"), dir.path().join("cpu"));
    let so = train(&model, "vulkan", &g, &["--steps", "3"]);
    assert!(!so.contains("device: cpu"), "{so}");
    train(&model, "cpu", &c, &["--steps", "3"]);
    let (lg, lc) = (train_losses(&g), train_losses(&c));
    assert_eq!(lg.keys().collect::<Vec<_>>(), lc.keys().collect::<Vec<_>>());
    for (step, l) in &lc {
        let rel = (lg[step] - l).abs() / l.abs();
        assert!(rel < 1e-4, "step {step}: GPU {} vs CPU {l}", lg[step]);
    }
}

/// A tiny diffusion model for 28x28 digits trained with SGD for `steps` steps.
fn tiny(steps: u64) -> String {
    format!(
        "net tiny {{
  input x: 1x28x28
  input temb: 8
  input eps: 1x28x28
  tp = temb -> dense(2) -> silu -> unflatten(0, [2, 1, 1])
  h = x -> conv(2, k=3, pad=same)
  both = add(h, tp) -> groupnorm(1, 2) -> silu -> conv(1, k=3, pad=same)
  loss = mse(both, eps)
  output both
  output loss
}}
train {{
  task = minimise
  loss = loss
  inputs = {{x: noisy, temb: timestep_embedding, eps: noise}}
  diffusion = linear(start=1e-4, end=0.02, steps=40)
  prediction = both
  ema = 0.9
  optimizer = sgd(lr=0.05, momentum=0.9)
  batch = 16
  steps = {steps}
  log_every = 1
  data = mnist
  data_dir = {:?}
  range = [-1, 1]
}}
",
        root().join("data/mnist-sample").display()
    )
}

fn tensors(run: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    netc_runtime::io::Checkpoint::load(&run.join("checkpoint.safetensors"))
        .expect("a checkpoint")
        .tensors
}

fn write(dir: &Path, name: &str, src: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, src).expect("write");
    p
}

#[test]
fn a_gpu_run_resumes_on_the_cpu_executor() {
    if !gpu() {
        return;
    }
    let dir = tmp("resume");
    let whole = dir.path().join("whole");
    train(
        &write(dir.path(), "whole.net", &tiny(4)),
        "cpu",
        &whole,
        &[],
    );
    // Two steps on the GPU path, then resumed on the CPU executor to four.
    let half = dir.path().join("half");
    train(
        &write(dir.path(), "half.net", &tiny(2)),
        "vulkan",
        &half,
        &[],
    );
    let model = write(dir.path(), "half.net", &tiny(4));
    train(&model, "cpu", &half, &["--resume"]);
    let (a, b) = (tensors(&half), tensors(&whole));
    let names = |t: &[(String, Vec<usize>, Vec<f32>)]| -> Vec<String> {
        t.iter().map(|x| x.0.clone()).collect()
    };
    assert_eq!(names(&a), names(&b));
    assert!(names(&a).iter().any(|n| n.starts_with("ema.")));
    assert!(names(&a).iter().any(|n| n.starts_with("optimizer.")));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, y.1, "{}", x.0);
        let norm = |v: &[f32]| v.iter().map(|&e| (e as f64).powi(2)).sum::<f64>().sqrt();
        let diff: Vec<f32> = x.2.iter().zip(&y.2).map(|(p, q)| p - q).collect();
        let rel = norm(&diff) / norm(&y.2).max(1e-30);
        assert!(rel < 1e-4, "`{}`: relative difference {rel:.2e}", x.0);
    }
    let (lh, lw) = (train_losses(&half), train_losses(&whole));
    for (step, l) in &lw {
        let rel = (lh[step] - l).abs() / l.abs();
        assert!(rel < 1e-4, "step {step}: resumed {} vs CPU {l}", lh[step]);
    }
}
