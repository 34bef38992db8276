//! Issue 27's VAE and residual networks: models/vae.net trains and its loss falls, `netc
//! sample` decodes prior draws (as many as asked, the same for a seed), `netc score` scores
//! them as a GAN's and `--compare` tabulates sample files; the `sample` setting's mistakes are
//! located; the ResNets count PyTorch's parameters; IDX augmentation (crop_padding, flip) is
//! reproducible and changes training.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::located::check_fails_at;
use crate::run::netc;

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-generative-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sample_dir() -> String {
    root().join("data/mnist-sample").display().to_string()
}

/// models/vae.net as shipped, with a log row every 5 steps and the data folder absolute.
fn vae_source() -> String {
    let src = std::fs::read_to_string(root().join("models/vae.net")).expect("models/vae.net");
    assert!(src.contains("log_every = 100") && src.contains("data_dir = \"../data/mnist-sample\""));
    src.replace("log_every = 100", "log_every = 5").replace(
        "data_dir = \"../data/mnist-sample\"",
        &format!("data_dir = {:?}", sample_dir()),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

fn ok(args: &[&str]) -> String {
    let (code, so, se) = netc(args);
    assert_eq!(code, 0, "netc {args:?}\n{so}\n{se}");
    assert!(!se.contains("panicked"), "{se}");
    so
}

fn rows(dir: &Path) -> Vec<BTreeMap<String, serde_json::Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

fn losses(dir: &Path) -> Vec<f64> {
    rows(dir)
        .iter()
        .map(|r| r["train_loss"].as_f64().expect("train_loss"))
        .collect()
}

/// The shipped VAE trained for `steps` steps in `dir`; (model file, run folder).
fn trained_vae(dir: &Path, steps: &str) -> (PathBuf, PathBuf) {
    let model = dir.join("vae.net");
    std::fs::write(&model, vae_source()).expect("write");
    let out = dir.join("run");
    ok(&[
        "train",
        s(&model),
        "--device",
        "cpu",
        "--steps",
        steps,
        "--out",
        s(&out),
    ]);
    (model, out)
}

/// An .npy file's shape (from its header) and f32 values.
fn npy(path: &Path) -> (String, Vec<f32>) {
    let b = std::fs::read(path).expect("npy");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + hlen]).into_owned();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .expect("a shape")
        .to_string();
    let values = b[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (shape, values)
}

#[test]
fn the_vae_trains_samples_from_the_prior_and_is_scored() {
    let dir = tmp("vae");
    let (model, run) = trained_vae(dir.path(), "40");
    let l = losses(&run);
    assert!(l.len() >= 8, "{l:?}");
    // Summed BCE + KL per image starts near 784 ln 2 = 543 and falls fast.
    assert!(
        l[0] > 400.0 && *l.last().expect("rows") < 0.6 * l[0],
        "{l:?}"
    );
    let test: Vec<f64> = rows(&run)
        .iter()
        .filter_map(|r| r.get("test_loss").and_then(|v| v.as_f64()))
        .collect();
    assert_eq!(test.len(), 1, "one evaluated epoch");
    assert!(
        test[0] < 0.7 * l[0],
        "test loss per image {test:?} vs {l:?}"
    );

    let weights = run.join("checkpoint.safetensors");
    let draw = |seed: &str, count: &str, name: &str| {
        let out = dir.path().join(name);
        let so = ok(&[
            "sample",
            s(&model),
            "--weights",
            s(&weights),
            "--count",
            count,
            "--seed",
            seed,
            "--out",
            s(&out),
        ]);
        (out, so)
    };
    let (a, so) = draw("5", "37", "a.npy");
    assert!(so.contains("(37, 1, 28, 28)"), "{so}");
    let (shape, va) = npy(&a);
    assert_eq!(shape, "37, 1, 28, 28");
    assert_eq!(va.len(), 37 * 784);
    assert!(
        va.iter().all(|v| (0.0..=1.0).contains(v)),
        "sigmoid outputs"
    );
    let (b, _) = draw("5", "37", "b.npy");
    assert_eq!(npy(&b).1, va, "the same seed draws the same samples");
    let (c, _) = draw("6", "37", "c.npy");
    let vc = npy(&c).1;
    assert_ne!(vc, va, "another seed draws others");
    // Draws are independent of the batch they come in: the first 37 of 600 are the 37.
    let (d, _) = draw("5", "600", "d.npy");
    assert_eq!(&npy(&d).1[..37 * 784], &va[..]);
    let (png, so) = draw("5", "9", "grid.png");
    assert!(so.contains("wrote 9 samples"), "{so}");
    let img = image::open(&png).expect("a PNG");
    assert_eq!(
        (img.width(), img.height()),
        (3 * 28 * 3 + 4, 3 * 28 * 3 + 4)
    );

    // `score` draws from the VAE as from a GAN: the figures of the same samples.
    let so = ok(&[
        "score",
        s(&model),
        "--weights",
        s(&weights),
        "--count",
        "600",
        "--seed",
        "5",
        "--real",
        "300",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&so).expect("JSON");
    let so2 = ok(&[
        "score",
        "--samples",
        s(&d),
        "--data-dir",
        &sample_dir(),
        "--real",
        "300",
        "--format",
        "json",
    ]);
    let w: serde_json::Value = serde_json::from_str(&so2).expect("JSON");
    for key in [
        "inception_score",
        "confident",
        "frechet_distance",
        "histogram",
    ] {
        assert_eq!(v[key], w[key], "{key}: {v} vs {w}");
    }
    assert!(v["inception_score"].as_f64().expect("IS") > 1.0, "{v}");

    // --compare: one row per file and the real images, each scored as alone.
    let so = ok(&[
        "score",
        "--compare",
        s(&d),
        s(&a),
        "--data-dir",
        &sample_dir(),
        "--real",
        "300",
    ]);
    let lines: Vec<&str> = so.lines().collect();
    assert!(
        lines[1].starts_with("samples") && lines[1].contains("Frechet"),
        "{so}"
    );
    assert!(
        lines[3].starts_with(s(&d)) && lines[4].starts_with(s(&a)),
        "{so}"
    );
    assert!(lines[5].starts_with("real images"), "{so}");
    let fid = format!("{:.3}", w["frechet_distance"].as_f64().expect("FID"));
    let is = format!("{:.3}", w["inception_score"].as_f64().expect("IS"));
    assert!(
        lines[3].contains(&fid) && lines[3].contains(&is),
        "{fid} {is}\n{so}"
    );
    assert!(
        lines[3].contains(" 600 ") && lines[4].contains(" 37 "),
        "{so}"
    );
    let js = ok(&["score", "--compare", s(&a), s(&c), "--format", "json"]);
    let j: serde_json::Value = serde_json::from_str(&js).expect("JSON");
    assert_eq!(j["rows"].as_array().map(Vec::len), Some(2), "{j}");
    assert!(
        j["rows"][0]["frechet_distance"].is_null(),
        "no real images given"
    );
    // A file that is not samples is named.
    let bad = dir.path().join("bad.npy");
    std::fs::write(&bad, b"not an array").expect("write");
    let (code, _, err) = netc(&["score", "--compare", s(&a), s(&bad)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.npy") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bench_times_a_declared_loss_with_several_inputs() {
    // The VAE's image and noise inputs are each fed their field (it used to feed the image to
    // every input and fail on the 20-value noise input), with the regions' profile.
    let so = ok(&[
        "bench",
        "--model",
        "models/vae.net",
        "--device",
        "cpu",
        "--reps",
        "2",
        "--batch",
        "16",
        "--profile",
    ]);
    assert!(so.contains("vae training step, batch 16"), "{so}");
    assert!(so.contains("fused regions of primitives"), "{so}");
    // Each kernel group timed, named as `netc ir --fused` names it (the BCE's log region).
    assert!(so.contains("kernel groups (--profile"), "{so}");
    assert!(
        so.lines()
            .any(|l| l.contains(" ms  region ") && l.contains(" = ")),
        "{so}"
    );
}

#[test]
fn sample_settings_that_cannot_be_run_are_located() {
    let src = vae_source();
    let with = |s: &str| src.replace("sample = {latent: z, samples: recon}", s);
    check_fails_at(
        &with("sample = {latent: zz, samples: recon}"),
        "network `vae` has no layer or output `zz`",
        "latent: zz",
    );
    check_fails_at(
        &with("sample = {latent: z, samples: loss}"),
        "`loss` reads input `image` other than through `z`",
        "samples: loss",
    );
    check_fails_at(
        &with("sample = {latent: recon, samples: mu}"),
        "`mu` is not computed from `recon`",
        "latent: recon",
    );
    check_fails_at(
        &with("sample = {latent: z, sample: recon}"),
        "training setting `sample` has no key `sample`",
        "sample: recon",
    );
    check_fails_at(
        &with("sample = {latent: z}"),
        "training setting `sample` needs `samples`",
        "sample = {latent: z}",
    );
    check_fails_at(
        &with("sample = z"),
        "training setting `sample`: expected",
        "sample = z",
    );
    // A declared loss without the setting is refused by `sample`, saying what to add.
    let dir = tmp("nosample");
    let model = dir.path().join("m.net");
    std::fs::write(&model, with("")).expect("write");
    let (code, _, err) = netc(&[
        "sample",
        s(&model),
        "--weights",
        s(&dir.path().join("none")),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("sample = {latent: z, samples: recon}"),
        "{err}"
    );
}

#[test]
fn the_resnets_count_pytorchs_parameters() {
    // benches/resnet_count.py prints PyTorch's counts of the same modules.
    for (file, trainable, all) in [
        ("models/resnet18_cifar.net", "11,173,962", "11,183,562"),
        ("models/resnet20_fashion.net", "272,186", "273,754"),
    ] {
        let so = ok(&["check", file]);
        let want = format!("parameters:        {all} (trainable {trainable})");
        assert!(so.contains(&want), "{file}: wanted `{want}` in\n{so}");
    }
}

/// An MLP classifier on the MNIST sample for 12 steps with the given augmentation lines.
fn augmented_run(dir: &Path, name: &str, lines: &str) -> Vec<f64> {
    let model = dir.join(format!("{name}.net"));
    std::fs::write(
        &model,
        format!(
            "net m {{\n  input image: 1x28x28\n  h = flatten -> dense(32) -> relu\n  logits = dense(10)\n  output logits\n}}\ntrain {{\n  optimizer = sgd(lr=0.05, momentum=0.9)\n  batch = 32\n  steps = 12\n  log_every = 3\n  data_dir = {:?}\n{lines}}}\n",
            sample_dir()
        ),
    )
    .expect("write");
    let out = dir.join(format!("run-{name}"));
    ok(&["train", s(&model), "--device", "cpu", "--out", s(&out)]);
    losses(&out)
}

#[test]
fn idx_crops_and_flips_are_reproducible_and_change_training() {
    let dir = tmp("augment");
    let plain = augmented_run(dir.path(), "plain", "");
    let aug = "  crop_padding = 4\n  flip = true\n";
    let a = augmented_run(dir.path(), "a", aug);
    let b = augmented_run(dir.path(), "b", aug);
    assert_eq!(a, b, "the same seed crops and flips the same way");
    assert_ne!(a, plain, "the augmentation changes the batches");
    let flips = augmented_run(dir.path(), "flips", "  flip = true\n");
    assert_ne!(flips, plain);
    assert_ne!(flips, a);
    // Synthetic data (AlexNet's stand-in) is not augmented: `flip` changes nothing there.
    let synthetic = |name: &str, lines: &str| {
        let src = format!("net m {{\n  input image: 1x28x28\n  logits = flatten -> dense(10)\n}}\ntrain {{\n  data = synthetic\n  batch = 8\n  epochs = 2\n  log_every = 1\n{lines}}}\n");
        let model = dir.path().join(format!("{name}.net"));
        std::fs::write(&model, src).expect("write");
        let out = dir.path().join(format!("run-{name}"));
        ok(&["train", s(&model), "--device", "cpu", "--out", s(&out)]);
        losses(&out)
    };
    assert_eq!(
        synthetic("syn", ""),
        synthetic("synflip", "  flip = true\n")
    );
    // Bad settings are located; crop_padding on an image folder is refused naming it.
    let src = |v: &str| {
        format!("net m {{\n  input image: 1x28x28\n  logits = flatten -> dense(10)\n}}\ntrain {{\n  crop_padding = {v}\n}}\n")
    };
    check_fails_at(&src("65"), "a padding of at most 64 pixels", "crop_padding");
    check_fails_at(
        &src("-1"),
        "training setting `crop_padding`",
        "crop_padding",
    );
    let folder = dir.path().join("digits");
    crate::digit_folder::write(&folder, &crate::digit_folder::Spec::grey(2, 6));
    let model = dir.path().join("folder.net");
    std::fs::write(&model, src("4")).expect("write");
    let (code, _, err) = netc(&[
        "train",
        s(&model),
        "--device",
        "cpu",
        "--data-dir",
        s(&folder),
        "--out",
        s(&dir.path().join("run-folder")),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("crop_padding is for IDX data") && err.contains("digits"),
        "{err}"
    );
}
