//! Diffusion models through the command line (issue 27, items 2 and 3): a noise schedule's
//! settings checked at their lines, a tiny model trained on the shipped sample, its moving
//! average kept in the checkpoint and resumed bit-exactly, and `netc sample`'s DDPM and DDIM
//! chains: deterministic for a seed, the chain picture, and clear refusals.

use std::path::{Path, PathBuf};

use crate::located::check_fails_at;
use crate::run::netc;

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-diffusion-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn sample_data() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/mnist-sample")
        .display()
        .to_string()
}

/// A tiny diffusion model for 28x28 digits; `section` replaces the default schedule lines.
fn model(section: &str, steps: u64) -> String {
    format!(
        "net tiny {{
  input x: 1x28x28
  input temb: 8
  input eps: 1x28x28
  tp = temb -> dense(2) -> silu -> unflatten(0, [2, 1, 1])
  h = x -> conv(2, k=3, pad=same)
  both = add(h, tp) -> silu -> conv(1, k=3, pad=same)
  loss = mse(both, eps)
  output both
  output loss
}}
train {{
  task = minimise
  loss = loss
{section}
  optimizer = adam(lr=1e-3)
  batch = 16
  steps = {steps}
  log_every = 1
  data = mnist
  data_dir = {:?}
  range = [-1, 1]
}}
",
        sample_data()
    )
}

const SCHEDULE: &str = "  inputs = {x: noisy, temb: timestep_embedding, eps: noise}
  diffusion = linear(start=1e-4, end=0.02, steps=40)
  prediction = both
  ema = 0.9";

#[test]
fn bad_schedule_settings_are_located() {
    let with = |from: &str, to: &str| model(&SCHEDULE.replace(from, to), 2);
    check_fails_at(
        &with(
            "linear(start=1e-4, end=0.02, steps=40)",
            "quadratic(steps=40)",
        ),
        "unknown noise schedule `quadratic`",
        "diffusion =",
    );
    check_fails_at(
        &with("start=1e-4, end=0.02", "start=0.02, end=1e-4"),
        "the linear schedule's `start` (0.02) is above its `end` (0.0001)",
        "diffusion =",
    );
    check_fails_at(
        &with("end=0.02", "end=1.5"),
        "must be a finite number in (0, 1), found 1.5",
        "diffusion =",
    );
    check_fails_at(
        &with("steps=40", "steps=40.5"),
        "`steps` must be a whole number",
        "diffusion =",
    );
    check_fails_at(
        &with("  prediction = both\n", ""),
        "a diffusion model needs `prediction`",
        "diffusion =",
    );
    check_fails_at(
        &with("prediction = both", "prediction = loss"),
        "`prediction = loss` is scalar but the noise is 1x28x28",
        "prediction =",
    );
    check_fails_at(
        &with("eps: noise", "eps: images"),
        "needs exactly one input bound to `noise`",
        "inputs =",
    );
    check_fails_at(
        &with("x: noisy", "x: images"),
        "needs exactly one input bound to `noisy`",
        "inputs =",
    );
    check_fails_at(
        &with("  diffusion = linear(start=1e-4, end=0.02, steps=40)\n", ""),
        "input `x` reads `noisy`, which a noise schedule makes",
        "inputs =",
    );
    check_fails_at(
        &with("ema = 0.9", "ema = 1.5"),
        "training setting `ema`: expected a decay in [0, 1)",
        "ema =",
    );
    check_fails_at(
        &model(&SCHEDULE.replace("temb: 8", "temb: 7"), 2).replace("temb: 8", "temb: 7"),
        "an even width for `timestep_embedding`",
        "inputs =",
    );
    check_fails_at(
        &model(&SCHEDULE.replace("timestep_embedding", "timestep"), 2),
        "input `temb` reads `timestep`, one number per example",
        "inputs =",
    );
}

/// Trains `src` in `dir` on the CPU (more flags in `extra`); the run folder.
fn train(dir: &Path, name: &str, src: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.net"));
    std::fs::write(&path, src).expect("write");
    let out = dir.join(format!("run-{name}"));
    let mut args = vec![
        "train",
        path.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    let (code, so, se) = netc(&args);
    assert_eq!(code, 0, "{so}\n{se}");
    out
}

fn tensors(run: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    netc_runtime::io::Checkpoint::load(&run.join("checkpoint.safetensors"))
        .expect("a checkpoint")
        .tensors
}

#[test]
fn a_tiny_model_trains_keeps_its_average_and_resumes_bit_exactly() {
    let dir = tmp("train");
    let whole = train(dir.path(), "whole", &model(SCHEDULE, 6), &[]);
    let t = tensors(&whole);
    let ema: Vec<_> = t.iter().filter(|x| x.0.starts_with("ema.")).collect();
    let weights = t
        .iter()
        .filter(|x| !x.0.starts_with("ema.") && !x.0.starts_with("optimizer."))
        .count();
    assert_eq!(ema.len(), weights, "an average of every weight");
    // After 6 steps at decay 0.9 the average is neither the weights nor where they began.
    let w = t.iter().find(|x| x.0 == "h.weight").expect("h.weight");
    let e = t
        .iter()
        .find(|x| x.0 == "ema.h.weight")
        .expect("ema.h.weight");
    assert_ne!(w.2, e.2);
    // Half the steps, then resumed to all: the same weights, optimizer state and average.
    let half = train(dir.path(), "half", &model(SCHEDULE, 3), &[]);
    std::fs::write(dir.path().join("half.net"), model(SCHEDULE, 6)).expect("write");
    let path = dir.path().join("half.net");
    let (code, so, se) = netc(&[
        "train",
        path.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--out",
        half.to_str().expect("utf-8"),
        "--resume",
    ]);
    assert_eq!(code, 0, "{so}\n{se}");
    assert_eq!(tensors(&half), t, "the resumed run's checkpoint differs");
}

fn sample(weights: &Path, model: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "sample",
        model.to_str().expect("utf-8"),
        "--weights",
        weights.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    netc(&args)
}

#[test]
fn sampling_is_deterministic_for_a_seed_and_refuses_bad_flags() {
    let dir = tmp("sample");
    let run = train(dir.path(), "m", &model(SCHEDULE, 2), &[]);
    let (m, w) = (dir.path().join("m.net"), run.join("checkpoint.safetensors"));
    let out = |n: &str| dir.path().join(n).to_str().expect("utf-8").to_string();
    let npy = |n: &str| std::fs::read(dir.path().join(n)).expect("written");
    for flags in [
        vec![],
        vec!["--steps", "8"],
        vec!["--steps", "5", "--eta", "1"],
    ] {
        let draw = |seed: &str, file: &str| {
            let path = out(file);
            let mut a = vec!["--count", "3", "--seed", seed, "--out", &path];
            a.extend(&flags);
            let (code, so, se) = sample(&w, &m, &a);
            assert_eq!(code, 0, "{a:?}\n{so}\n{se}");
            assert!(so.contains("wrote a (3, 1, 28, 28) float32 array"), "{so}");
        };
        draw("4", "a.npy");
        draw("4", "b.npy");
        draw("5", "c.npy");
        assert_eq!(
            npy("a.npy"),
            npy("b.npy"),
            "{flags:?}: same seed, same samples"
        );
        assert_ne!(npy("a.npy"), npy("c.npy"), "{flags:?}: another seed");
    }
    // `score` on the model itself says how a diffusion model's samples are scored.
    let (code, _, se) = netc(&[
        "score",
        m.to_str().expect("utf-8"),
        "--weights",
        w.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{se}");
    assert!(
        se.contains("is a diffusion model: draw its samples with `netc sample"),
        "{se}"
    );
    let chain = out("chain.png");
    let (code, so, se) = sample(
        &w,
        &m,
        &["--count", "2", "--chain", &chain, "--out", &out("s.png")],
    );
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(
        so.contains("wrote the chain (2 samples x 11 snapshots)"),
        "{so}"
    );
    let img = image::open(&chain).expect("a PNG");
    assert!(
        img.width() > img.height(),
        "a row per sample, a column per snapshot"
    );
    for (flags, message) in [
        (
            vec!["--steps", "41"],
            "--steps 41 is more than the model's 40 noising steps",
        ),
        (
            vec!["--sampler", "ddpm", "--steps", "10"],
            "the ancestral DDPM chain runs all 40 steps",
        ),
        (vec!["--eta", "0.5"], "--eta is DDIM's"),
        (
            vec!["--steps", "4", "--eta", "2"],
            "--eta must be in [0, 1]",
        ),
    ] {
        let (code, _, se) = sample(&w, &m, &flags);
        assert_eq!(code, 1, "{flags:?}: {se}");
        assert!(
            se.contains(message),
            "{flags:?}: wanted `{message}` in {se}"
        );
    }
}

#[test]
fn the_diffusion_flags_are_refused_for_a_gan() {
    let gan = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/gan.yaml");
    let (code, _, se) = netc(&[
        "sample",
        gan.to_str().expect("utf-8"),
        "--weights",
        "nowhere.safetensors",
        "--steps",
        "10",
    ]);
    assert_eq!(code, 1, "{se}");
    assert!(se.contains("--steps is for diffusion models"), "{se}");
}

/// models/ddpm.net computes its embedding in the model (`input t: 1` bound to `timestep`,
/// `t -> timestep_embedding(64)`, the standard library's block); written instead with the
/// trainer's `timestep_embedding` field it has the same parameter count, and 3 steps on the
/// CPU give the same train and test losses to 1e-5 (the block computes the embedding in f32,
/// the trainer in f64; they differ by the rounding of arguments up to 999, 2e-4 at worst).
#[test]
fn the_ddpm_with_its_embedding_in_the_model_trains_as_with_the_field() {
    let dir = tmp("embedded");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let embedded = std::fs::read_to_string(root.join("models/ddpm.net")).expect("models/ddpm.net");
    let swap = |s: &str, from: &str, to: &str| {
        assert!(s.contains(from), "models/ddpm.net no longer has `{from}`");
        s.replace(from, to)
    };
    let field = swap(&embedded, "  input t: 1 ", "  input temb: 64");
    let field = swap(
        &field,
        "  tm = t -> timestep_embedding(64) -> dense(128)",
        "  tm = temb -> dense(128)",
    );
    let field = swap(&field, "t: timestep,", "temb: timestep_embedding,");
    let count = |name: &str, src: &str| {
        let path = dir.path().join(format!("{name}.net"));
        std::fs::write(&path, src).expect("write");
        let (code, so, se) = netc(&["check", path.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "{so}\n{se}");
        so.lines()
            .find(|l| l.starts_with("parameters:"))
            .map(str::to_string)
            .expect("a parameter count")
    };
    assert_eq!(count("field", &field), count("embedded", &embedded));
    let data = sample_data();
    let flags = ["--steps", "3", "--batch", "8", "--data-dir", data.as_str()];
    let losses = |name: &str, src: &str| -> (f64, f64) {
        let run = train(dir.path(), name, src, &flags);
        let log = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
        let last: serde_json::Value =
            serde_json::from_str(log.lines().last().expect("a line")).expect("JSON");
        let get = |k: &str| last[k].as_f64().unwrap_or_else(|| panic!("{k} in {last}"));
        (get("train_loss"), get("test_loss"))
    };
    let (a, b) = (losses("field", &field), losses("embedded", &embedded));
    for (what, x, y) in [("train", a.0, b.0), ("test", a.1, b.1)] {
        assert!(
            x.is_finite() && (x - y).abs() < 1e-5 * x.abs(),
            "{what} loss {x} with the field, {y} with the block"
        );
    }
}
