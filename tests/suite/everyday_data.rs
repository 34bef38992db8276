//! Everyday use, second round (issue 30, items 1, 5, 3 and 10): a run remembers its data, class
//! names reach `predict` and `eval`, `predict` gives a flat-input MLP a PNG, and the smaller
//! wording fixes. Small synthetic IDX sets written by each test; everything on the CPU.

use std::path::{Path, PathBuf};

use crate::run;
use run::netc;

/// A fresh folder for one test, removed when it goes out of scope.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-everyday-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn be(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Writes an IDX test split of `n` images of `side`x`side` into `dir` (created): each image a
/// bright bar whose row says its label (0..10), with noise from `seed`, so a small MLP learns
/// it in an epoch and two sets with other seeds hold other data.
fn idx_set(dir: &Path, n: usize, side: usize, seed: u64) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut images = vec![];
    images.extend(be(0x0803));
    images.extend(be(n as u32));
    images.extend(be(side as u32));
    images.extend(be(side as u32));
    let mut labels = vec![];
    labels.extend(be(0x0801));
    labels.extend(be(n as u32));
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        let bar = label as usize * side / 10;
        for r in 0..side {
            for _ in 0..side {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let noise = (state >> 59) as u8;
                images.push(if r == bar { 220 + noise } else { noise });
            }
        }
    }
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).expect("write images");
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), labels).expect("write labels");
    dir.to_path_buf()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Trains models/mlp.net one epoch on `data` into `out` on the CPU; panics with the output
/// unless it succeeds.
fn train_mlp(data: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "1",
        "--batch",
        "20",
        "--data-dir",
        s(data),
        "--out",
        s(out),
    ];
    args.extend(extra);
    let (code, out, err) = netc(&args);
    assert_eq!(code, 0, "{out}\n{err}");
    err
}

fn ck(out: &Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}

// ---- item 1: a run remembers its data ----

#[test]
fn eval_without_data_dir_takes_the_data_the_run_trained_on() {
    let t = tmp("eval-default");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let (code, stdout, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&ck(&out)),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    // The 30 held-out images of the 150, not the 2000 of the model's default MNIST sample.
    assert!(stdout.contains(": 30 test images"), "{stdout}");
    assert!(!stdout.contains("other data"), "{stdout}");
}

#[test]
fn eval_on_other_data_says_so() {
    let t = tmp("eval-other");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let b = idx_set(&t.path().join("b"), 100, 28, 2);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let w = ck(&out);
    let (code, stdout, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--data-dir",
        s(&b),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("other data"), "{stdout}");
    assert!(
        stdout.contains(s(&std::fs::canonicalize(&a).unwrap())),
        "{stdout}"
    );
    // The same files copied elsewhere are the same data.
    let a2 = t.path().join("a-copy");
    std::fs::create_dir_all(&a2).unwrap();
    for f in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::copy(a.join(f), a2.join(f)).unwrap();
    }
    let (code, stdout, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--data-dir",
        s(&a2),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!stdout.contains("other data"), "{stdout}");
}

#[test]
fn resume_continues_on_the_recorded_data_and_refuses_other_data() {
    let t = tmp("resume");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let b = idx_set(&t.path().join("b"), 150, 28, 2);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let resume = |epochs: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "models/mlp.net",
            "--device",
            "cpu",
            "--quiet",
            "--epochs",
            epochs,
            "--batch",
            "20",
            "--out",
            s(&out),
            "--resume",
        ];
        args.extend(extra);
        netc(&args)
    };
    let (code, _, err) = resume("2", &["--data-dir", s(&b)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot resume on other data"), "{err}");
    assert!(err.contains("--allow-other-data"), "{err}");
    // Without --data-dir: the recorded folder, not the model's MNIST sample.
    let (code, _, err) = resume("2", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(s(&std::fs::canonicalize(&a).unwrap())),
        "{err}"
    );
    assert!(!err.contains("mnist-sample"), "{err}");
    let (code, _, err) = resume("3", &["--data-dir", s(&b), "--allow-other-data"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--allow-other-data"), "{err}");
}

#[test]
fn the_checkpoint_records_the_data_and_checks_the_record() {
    use netc_runtime::io::Checkpoint;
    let t = tmp("record");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let c = Checkpoint::load(&ck(&out)).expect("loads");
    let m = &c.metadata;
    assert_eq!(m["data_dir"], s(&std::fs::canonicalize(&a).unwrap()));
    assert_eq!(m["data_shape"], "[1, 28, 28]");
    let files: serde_json::Value = serde_json::from_str(&m["data_files"]).unwrap();
    assert_eq!(files["t10k-images-idx3-ubyte"], 16 + 150 * 784);
    assert_eq!(m["data_fingerprint"].len(), 64);
    // A garbled record is refused on load, naming the field (the metadata CRC is recomputed
    // on save, so this is the range check, not the checksum).
    for (key, value, says) in [
        ("data_fingerprint", "xyz", "SHA-256"),
        ("data_files", "[1]", "file names and sizes"),
        ("data_shape", "[1, 0, 28]", "[channels, height, width]"),
    ] {
        let mut bad = c.clone();
        bad.metadata.insert(key.into(), value.into());
        let p = t.path().join(format!("bad-{key}.safetensors"));
        bad.save(&p).expect("save");
        let e = Checkpoint::load(&p).expect_err(key).to_string();
        assert!(e.contains(key) && e.contains(says), "{key}: {e}");
    }
    let mut part = c.clone();
    part.metadata.remove("data_files");
    let p = t.path().join("part.safetensors");
    part.save(&p).expect("save");
    let e = Checkpoint::load(&p).expect_err("part").to_string();
    assert!(e.contains("no `data_files`"), "{e}");
}

#[test]
fn a_checkpoint_without_the_record_keeps_the_old_default() {
    use netc_runtime::io::Checkpoint;
    let t = tmp("old");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let mut c = Checkpoint::load(&ck(&out)).expect("loads");
    for k in ["data_dir", "data_files", "data_fingerprint", "data_shape"] {
        c.metadata.remove(k);
    }
    let old = t.path().join("old.safetensors");
    c.save(&old).expect("save");
    let (code, stdout, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&old),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    // The model's data_dir: the shipped sample's 2000 held-out images.
    assert!(stdout.contains(": 2000 test images"), "{stdout}");
    assert!(!stdout.contains("other data"), "{stdout}");
}

#[test]
fn eval_of_a_run_whose_data_is_gone_says_what_to_pass() {
    let t = tmp("gone");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    std::fs::remove_dir_all(&a).unwrap();
    let (code, _, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&ck(&out)),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not there any more") && err.contains("--data-dir"),
        "{err}"
    );
}

#[test]
fn score_compares_with_the_data_the_gan_trained_on() {
    let t = tmp("score");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let gan = t.path().join("gan");
    let (code, _, err) = netc(&[
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--quiet",
        "--steps",
        "1",
        "--batch",
        "8",
        "--data-dir",
        s(&a),
        "--out",
        s(&gan),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, o, err) = netc(&[
        "score",
        "models/gan.yaml",
        "--weights",
        s(&ck(&gan)),
        "--count",
        "20",
        "--real",
        "20",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&o).expect("json");
    // The folder the GAN trained on, not the model's data_dir (the MNIST sample).
    assert_eq!(
        v["real"]["data_dir"],
        s(&std::fs::canonicalize(&a).unwrap()),
        "{o}"
    );
}

// ---- item 5: class names ----

const FASHION: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// models/mlp.net with `setting` added to its training section, written into `dir`.
fn mlp_with(dir: &Path, setting: &str) -> PathBuf {
    let text = std::fs::read_to_string("models/mlp.net").expect("models/mlp.net");
    let text = text.replace("  seed = 1\n", &format!("  seed = 1\n  {setting}\n"));
    let p = dir.join("mlp.net");
    std::fs::write(&p, text).expect("write model");
    p
}

fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", q.join(", "))
}

#[test]
fn the_classes_setting_names_predict_and_eval_classes() {
    let t = tmp("classes");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let model = mlp_with(t.path(), &format!("classes = {}", quoted(&FASHION)));
    let out = t.path().join("run");
    let (code, o, err) = netc(&[
        "train",
        s(&model),
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "1",
        "--batch",
        "20",
        "--data-dir",
        s(&a),
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{o}{err}");
    let w = ck(&out);
    let images = a.join("t10k-images-idx3-ubyte");
    let (code, o, err) = netc(&[
        "predict",
        s(&model),
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--top",
        "10",
        s(&images),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        o.contains("Ankle boot ") && o.contains("T-shirt/top "),
        "{o}"
    );
    let (code, o, err) = netc(&["eval", s(&model), "--weights", s(&w), "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");
    assert!(o.contains("per class:"), "{o}");
    assert!(o.contains(" 9 Ankle boot"), "{o}");
    assert!(o.contains("confusion matrix (rows: true class"), "{o}");
    assert!(out.join("confusion.png").is_file(), "{o}");
    let (code, o, err) = netc(&[
        "eval",
        s(&model),
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&o).expect("eval --format json is JSON");
    assert_eq!(v["images"], 30);
    assert_eq!(v["classes"][9], "Ankle boot");
    let m: Vec<Vec<u64>> = serde_json::from_value(v["confusion"].clone()).unwrap();
    assert_eq!(m.iter().flatten().sum::<u64>(), 30);
    let diag: u64 = (0..10).map(|k| m[k][k]).sum();
    let top1 = v["top1"].as_f64().unwrap();
    assert!((diag as f64 / 30.0 - top1).abs() < 1e-9, "{diag} vs {top1}");
    assert_eq!(v["per_class"][9]["class"], "Ankle boot");
    assert_eq!(v["per_class"][9]["images"], 3);
}

#[test]
fn classes_txt_beside_the_data_names_the_classes() {
    let t = tmp("classes-txt");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    std::fs::write(a.join("classes.txt"), FASHION.join("\n") + "\n").unwrap();
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let c = netc_runtime::io::Checkpoint::load(&ck(&out)).expect("loads");
    let names: Vec<String> = serde_json::from_str(&c.metadata["classes"]).unwrap();
    assert_eq!(names, FASHION);
    let (code, o, err) = netc(&[
        "predict",
        "models/mlp.net",
        "--weights",
        s(&ck(&out)),
        "--device",
        "cpu",
        "--format",
        "json",
        s(&a.join("t10k-images-idx3-ubyte")),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&o).unwrap();
    let class = v[0]["top"][0]["class"].as_str().unwrap().to_string();
    assert!(FASHION.contains(&class.as_str()), "{o}");
}

#[test]
fn class_names_must_be_one_per_output() {
    let t = tmp("classes-count");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    std::fs::write(a.join("classes.txt"), FASHION[..9].join("\n")).unwrap();
    let (code, _, err) = netc(&[
        "train",
        "models/mlp.net",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        "1",
        "--batch",
        "20",
        "--data-dir",
        s(&a),
        "--out",
        s(&t.path().join("run")),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("classes.txt names 9 classes") && err.contains("10 outputs"),
        "{err}"
    );
    // The setting is checked at `check`, located.
    let model = mlp_with(t.path(), &format!("classes = {}", quoted(&FASHION[..9])));
    let (code, _, err) = netc(&["check", s(&model)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("training setting `classes`") && err.contains("10 outputs"),
        "{err}"
    );
    assert!(err.contains("mlp.net:"), "{err}");
    let model = mlp_with(t.path(), "classes = [\"a\", \"b\", \"a\"]");
    let (code, _, err) = netc(&["check", s(&model)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`a` appears twice"), "{err}");
}

// ---- item 3: predict gives a flat-input MLP an image ----

/// A 28x28 grey PNG: the bar of label `label` of [`idx_set`], without noise.
fn bar_png(path: &Path, label: usize) {
    let img = image::GrayImage::from_fn(28, 28, |_, r| {
        image::Luma([if r as usize == label * 28 / 10 {
            235
        } else {
            0
        }])
    });
    img.save(path).expect("write png");
}

#[test]
fn predict_classifies_a_png_with_a_flat_input_mlp() {
    let t = tmp("flat-png");
    let a = idx_set(&t.path().join("a"), 300, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let png = t.path().join("three.png");
    bar_png(&png, 3);
    let w = ck(&out);
    let (code, o, err) = netc(&[
        "predict",
        "models/mlp.net",
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--format",
        "json",
        s(&png),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&o).expect("json");
    assert_eq!(v[0]["input"], s(&png));
    assert_eq!(v[0]["top"].as_array().map(Vec::len), Some(5), "{o}");
    // The same image as an IDX file gives the same probabilities: the PNG is the flat vector
    // the network trained on.
    let mut idx = vec![];
    for x in [0x0803u32, 1, 28, 28] {
        idx.extend(x.to_be_bytes());
    }
    idx.extend(image::open(&png).unwrap().to_luma8().into_raw());
    let idx_path = t.path().join("three-images-idx3-ubyte");
    std::fs::write(&idx_path, idx).unwrap();
    let (code, o2, err) = netc(&[
        "predict",
        "models/mlp.net",
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--format",
        "json",
        s(&idx_path),
    ]);
    assert_eq!(code, 0, "{err}");
    let v2: serde_json::Value = serde_json::from_str(&o2).expect("json");
    assert_eq!(v[0]["top"], v2[0]["top"], "{o}\n{o2}");
}

#[test]
fn predict_says_what_to_declare_when_the_image_shape_is_unknown() {
    use netc_runtime::io::Checkpoint;
    let t = tmp("flat-unknown");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    train_mlp(&a, &out, &[]);
    let mut c = Checkpoint::load(&ck(&out)).expect("loads");
    c.metadata.remove("data_shape");
    let old = t.path().join("old.safetensors");
    c.save(&old).expect("save");
    let png = t.path().join("x.png");
    bar_png(&png, 3);
    let (code, _, err) = netc(&[
        "predict",
        "models/mlp.net",
        "--weights",
        s(&old),
        "--device",
        "cpu",
        s(&png),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("takes 784 values"), "{err}");
    assert!(
        err.contains("`input image: 1x28x28`") && err.contains("`flatten ->`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

// ---- item 10: smaller things ----

/// The help paragraph of `flag` in `netc <command> --help`, whitespace joined.
fn flag_help(command: &str, flag: &str) -> String {
    let (code, out, err) = netc(&[command, "--help"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(flag));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{command}: no {flag} in\n{out}"));
    let mut text = vec![first.trim_start()[flag.len()..].trim().to_string()];
    text.extend(
        lines
            .take_while(|l| !l.trim_start().starts_with('-') && !l.trim().is_empty())
            .map(|l| l.trim().to_string()),
    );
    text.join(" ")
}

#[test]
fn every_flag_has_help_and_device_reads_the_same_everywhere() {
    let seed = flag_help("gradcheck", "--seed <SEED>");
    assert!(seed.contains("Seed of"), "gradcheck --seed: {seed:?}");
    let device: Vec<String> = ["train", "eval", "predict", "bench"]
        .iter()
        .map(|c| flag_help(c, "--device <DEVICE>"))
        .collect();
    assert!(device[0].starts_with("Where to run: auto"), "{device:?}");
    assert!(device.iter().all(|d| *d == device[0]), "{device:#?}");
}

#[test]
fn bench_on_the_cpu_does_not_talk_about_the_gpu_path() {
    let (code, out, err) = netc(&["bench", "--device", "cpu", "--reps", "1", "--batch", "8"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CPU executor"), "{out}");
    assert!(!out.contains("GPU"), "{out}");
}

#[test]
fn the_no_training_split_note_says_only_what_applies() {
    let t = tmp("notes");
    let a = idx_set(&t.path().join("a"), 150, 28, 1);
    let out = t.path().join("run");
    let err = train_mlp(&a, &out, &[]);
    assert!(
        err.contains("no training split: training on the first 120 test images and evaluating on the other 30"),
        "{err}"
    );
    let (code, _, err) = netc(&[
        "eval",
        "models/mlp.net",
        "--weights",
        s(&ck(&out)),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("evaluating on the last 30 of its 150 test images"),
        "{err}"
    );
    assert!(!err.contains("training on"), "{err}");
    // A GAN evaluates nothing.
    let (code, _, err) = netc(&[
        "train",
        "models/gan.yaml",
        "--device",
        "cpu",
        "--quiet",
        "--steps",
        "1",
        "--batch",
        "8",
        "--data-dir",
        s(&a),
        "--out",
        s(&t.path().join("gan")),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the GAN trains on the first 120 of its 150 test images"),
        "{err}"
    );
    assert!(!err.contains("evaluating"), "{err}");
}

#[test]
fn yaml_models_name_their_classes_too_and_a_gan_has_none() {
    let t = tmp("classes-yaml");
    let yaml = "networks:\n  - name: m\n    inputs: {x: 784}\n    layers: [{op: dense, units: 3}]\ntrain:\n  classes: [cat, \"dog\", Ankle boot]\n";
    let p = t.path().join("m.yaml");
    std::fs::write(&p, yaml).unwrap();
    let (code, o, err) = netc(&["check", s(&p)]);
    assert_eq!(code, 0, "{o}{err}");
    let gan = std::fs::read_to_string("models/gan.yaml").unwrap();
    let p = t.path().join("gan.yaml");
    std::fs::write(&p, gan.replace("train:\n", "train:\n  classes: [a, b]\n")).unwrap();
    let (code, _, err) = netc(&["check", s(&p)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("training setting `classes`") && err.contains("GAN"),
        "{err}"
    );
}
