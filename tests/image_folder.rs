//! `netc train`, `eval` and `predict` on image folders the tests write (MNIST digits as PNG
//! and tinted JPEG files in class folders), on the CPU executor and the GPU path.

#[path = "support/digit_folder.rs"]
mod digit_folder;

use std::path::Path;

use digit_folder::{break_files, write, Spec};

#[path = "support/netc.rs"]
mod run;
use run::netc;

/// A small convolutional net for grey 24x24 crops of 28x28 digits.
const SMALL: &str = "
net digits {
  input image: 1x24x24
  c1 = conv(16, k=5, init=xavier) -> relu      : 16x20x20
  p1 = maxpool(k=2, s=2)                       : 16x10x10
  c2 = conv(32, k=3, init=xavier) -> relu      : 32x8x8
  p2 = maxpool(k=2, s=2)                       : 32x4x4
  f = flatten -> dense(10, init=xavier)
  output f
}
train {
  task = classifier
  network = digits
  optimizer = adam(lr=2e-3)
  batch = 32
  epochs = 3
  data = images
  resize = 28
  crop = random
  mean = auto
  std = auto
  seed = 1
EXTRA
}
";

/// AlexNet's layout (11x11 stride-4 conv, LRN, overlapping pooling, groups=2, dropout) and
/// its pipeline (resize, random crop, flip, mean subtraction, PCA colour noise, ten-crop
/// evaluation) at a size that trains in seconds.
const ALEXNET_SMALL: &str = "
net alexnet {
  input image: 3x63x63
  conv1 = conv(16, k=11, s=4, pad=valid, init=gaussian(0.01), bias_init=constant(0)) -> relu
          -> lrn(size=5, alpha=1e-4, beta=0.75, k=2)                                 : 16x14x14
  pool1 = maxpool(k=3, s=2)                                                          : 16x6x6
  conv2 = conv(32, k=5, pad=same, groups=2, init=gaussian(0.01), bias_init=constant(1)) -> relu
          -> lrn(size=5, alpha=1e-4, beta=0.75, k=2)
  pool2 = maxpool(k=3, s=2)                                                          : 32x2x2
  conv3 = conv(48, k=3, pad=1, init=gaussian(0.01), bias_init=constant(0)) -> relu
  conv4 = conv(48, k=3, pad=1, groups=2, init=gaussian(0.01), bias_init=constant(1)) -> relu
  conv5 = conv(32, k=3, pad=1, groups=2, init=gaussian(0.01), bias_init=constant(1)) -> relu
  fc6 = flatten -> dense(64, init=gaussian(0.01), bias_init=constant(1)) -> relu -> dropout(0.5)
  fc7 = dense(64, init=gaussian(0.01), bias_init=constant(1)) -> relu -> dropout(0.5)
  fc8 = dense(10, init=gaussian(0.01), bias_init=constant(0))                         : 10
  output logits = fc8
}
train {
  task = classifier
  network = alexnet
  optimizer = sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)
  batch = 16
  epochs = 1
  resize = 72
  crop = random
  flip = true
  mean = auto
  color_jitter = 0.1
  eval_crops = 10
  seed = 1
}
";

fn model(dir: &Path, text: &str, extra: &str) -> String {
    let p = dir.join("model.net");
    std::fs::write(&p, text.replace("EXTRA", extra)).unwrap();
    p.to_str().unwrap().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `netc train MODEL --data-dir DATA --device DEV --quiet --out OUT EXTRA...`.
fn train(model: &str, data: &Path, dev: &str, out: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "train",
        model,
        "--data-dir",
        s(data),
        "--device",
        dev,
        "--quiet",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    netc(&args)
}

#[test]
fn a_small_conv_net_learns_on_an_image_folder_and_eval_and_predict_name_its_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    write(
        &data,
        &Spec {
            split: true,
            ..Spec::grey(10, 80)
        },
    );
    let m = model(tmp.path(), SMALL, "");
    let out = tmp.path().join("run");
    let (code, _, err) = train(&m, &data, "cpu", &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("10 classes, 600 training and 200 evaluation images"),
        "{err}"
    );
    let last = err
        .lines()
        .find(|l| l.starts_with("epoch 3/3"))
        .expect(&err)
        .to_string();
    let acc: f64 = last
        .split("test acc ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .expect(&last);
    // Ten classes: chance is 10%.
    assert!(acc > 75.0, "{last}");

    // eval reads the classes and normalisation from the checkpoint: the run's last figure,
    // the same every time.
    let w = out.join("checkpoint.safetensors");
    let ev = |dev: &str| {
        netc(&[
            "eval",
            &m,
            "--weights",
            s(&w),
            "--data-dir",
            s(&data),
            "--device",
            dev,
        ])
    };
    let (code, first, err) = ev("cpu");
    assert_eq!(code, 0, "{err}");
    assert!(
        first.contains(&format!("top-1  {acc:.2}%")),
        "{first} vs {last}"
    );
    assert_eq!(ev("cpu").1, first);
    // Resuming prepares images with the recorded normalisation instead of measuring again.
    let (code, _, err) = train(&m, &data, "cpu", &out, &["--resume", "--epochs", "4"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("resumed from") && err.contains("epoch 4/4"),
        "{err}"
    );
    assert!(!err.contains("measured on"), "{err}");

    // predict names the classes; most validation images come out as their folder.
    let imgs: Vec<String> = (0..10)
        .map(|c| {
            let d = data.join(format!("val/digit{c}"));
            let f = std::fs::read_dir(&d)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            f.to_str().unwrap().to_string()
        })
        .collect();
    let mut args = vec![
        "predict",
        &m,
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "--top",
        "3",
    ];
    args.extend(imgs.iter().map(|s| s.as_str()));
    let (code, text, err) = netc(&args);
    assert_eq!(code, 0, "{err}");
    let right = text
        .lines()
        .filter(|l| {
            let (path, rest) = l.split_once(": ").unwrap();
            let folder = Path::new(path)
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            rest.starts_with(&format!("{folder} "))
        })
        .count();
    assert_eq!(text.lines().count(), 10, "{text}");
    assert!(right >= 7, "{text}");
    assert!(text.lines().all(|l| l.matches('%').count() == 3), "{text}");
    // IDX images go through the same pipeline.
    let (code, text, err) = netc(&[
        "predict",
        &m,
        "--weights",
        s(&w),
        "--device",
        "cpu",
        "data/mnist-sample/t10k-images-idx3-ubyte.gz",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 10_000);
    assert_eq!(rows[0]["top"][0]["class"], "digit7");
}

#[test]
fn an_alexnet_shaped_net_trains_on_a_folder_of_rgb_jpegs_on_the_cpu_and_the_gpu_path() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rgb");
    write(
        &data,
        &Spec {
            rgb: true,
            size: 64,
            ..Spec::grey(10, 12)
        },
    );
    let m = model(tmp.path(), ALEXNET_SMALL, "");
    let mut devices = vec!["cpu"];
    if netc_runtime::gpu::test_gpu().is_some() {
        devices.push("vulkan");
    }
    for dev in devices {
        let out = tmp.path().join(format!("run-{dev}"));
        let (code, _, err) = train(&m, &data, dev, &out, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("held out by the seed"), "{err}");
        assert!(err.contains("measured on"), "{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("epoch 1/1"))
            .expect(&err);
        assert!(!line.contains("NaN"), "{line}");
        let (code, text, err) = netc(&[
            "eval",
            &m,
            "--weights",
            s(&out.join("checkpoint.safetensors")),
            "--data-dir",
            s(&data),
            "--device",
            dev,
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(text.contains("10 test images"), "{text}");
    }
}

#[test]
fn broken_images_stop_the_run_before_training_or_are_left_out_as_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    let files = write(&data, &Spec::grey(3, 40));
    // The second and third lose their headers; the first is cut but keeps its header.
    break_files(&[
        files[0][5].as_path(),
        files[1][6].as_path(),
        files[2][7].as_path(),
    ]);
    let m = model(tmp.path(), &SMALL.replace("dense(10", "dense(3"), "");
    let out = tmp.path().join("run");
    let (code, _, err) = train(&m, &data, "cpu", &out, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("2 image files cannot be read"), "{err}");
    assert!(
        err.contains(s(&files[1][6])) && err.contains(s(&files[2][7])),
        "{err}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());

    let m = model(
        tmp.path(),
        &SMALL.replace("dense(10", "dense(3"),
        "bad_images = skip",
    );
    let (code, _, err) = train(&m, &data, "cpu", &out, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("left out 2 unreadable image file(s)"), "{err}");
    // The cut file is found when decoded (in training or evaluation), named, and left out.
    let line = err
        .lines()
        .find(|l| l.starts_with("left out 1 image(s) that failed to decode"))
        .expect(&err);
    assert!(line.contains(s(&files[0][5])), "{err}");

    // Under `stop`, a file whose header is fine but whose data is cut stops the run when it is
    // decoded, naming it (after a checkpoint, when a step was trained).
    for f in [&files[1][6], &files[2][7]] {
        std::fs::remove_file(f).unwrap();
    }
    let m = model(tmp.path(), &SMALL.replace("dense(10", "dense(3"), "");
    let (code, _, err) = train(&m, &data, "cpu", &out, &["--overwrite"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{}: unexpected end of file", s(&files[0][5]))),
        "{err}"
    );
}

#[test]
fn a_resize_below_the_input_and_a_folder_for_a_gan_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    write(&data, &Spec::grey(2, 10));
    let m = model(tmp.path(), &SMALL.replace("resize = 28", "resize = 20"), "");
    let (code, _, err) = train(&m, &data, "cpu", &tmp.path().join("r"), &[]);
    // Found at check, located at the setting (issue 31.13), before any data is read.
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("training setting `resize`")
            && err.contains("at least 24")
            && err.contains("model.net:18:12"),
        "{err}"
    );
    let (code, _, err) = train("models/gan.yaml", &data, "cpu", &tmp.path().join("g"), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("image folders train classifiers"), "{err}");
}

#[test]
fn eval_uses_the_runs_held_out_split_and_resume_refuses_other_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("digits");
    write(&data, &Spec::grey(3, 40));
    let m = model(tmp.path(), &SMALL.replace("dense(10", "dense(3"), "");
    let out = tmp.path().join("run");
    // Another seed than the section's: eval must hold out what this run held out.
    let (code, _, err) = train(&m, &data, "cpu", &out, &["--seed", "5", "--epochs", "1"]);
    assert_eq!(code, 0, "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("epoch 1/1"))
        .expect(&err);
    let acc = line
        .split("test acc ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap();
    let w = out.join("checkpoint.safetensors");
    let (code, text, err) = netc(&[
        "eval",
        &m,
        "--weights",
        s(&w),
        "--data-dir",
        s(&data),
        "--device",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(&format!("top-1  {acc}%")), "{text} vs {line}");
    // The loss too: with other held-out images it would differ in its fourth decimal.
    let loss = line
        .split("test loss ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        text.contains(&format!("loss   {loss}\n")),
        "{text} vs {line}"
    );

    // The same number of classes under other names is not the run's data.
    std::fs::rename(data.join("digit2"), data.join("zebra")).unwrap();
    let (code, _, err) = train(&m, &data, "cpu", &out, &["--resume", "--epochs", "2"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not the ones the checkpoint was trained on"),
        "{err}"
    );
}
