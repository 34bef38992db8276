//! `netc import` of Caffe's training files (tests/caffe/): lenet_train_test.prototxt with
//! lenet_solver.prototxt and bvlc_alexnet's train_val.prototxt with its solver.prototxt, as
//! Caffe publishes them, give the published parameter counts, the solver's settings and the
//! per-layer shapes Caffe logs; a .caffemodel becomes a checkpoint whose logits are Caffe's.

use crate::run::netc;
use netc_compiler::schedule::{Optimizer, ParamMult};
use netc_compiler::train_config::{self, ChannelStat, Length, Schedule, TrainConfig};
use std::path::Path;

/// Imports `net` (with `args`) into a temporary folder: the .net text, the compiled model
/// and the command's stderr (its notes).
fn import(net: &str, args: &[&str]) -> (String, netc_compiler::ir::Model, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("m.net");
    let mut all = vec!["import", net, "-o", out.to_str().expect("utf-8")];
    all.extend(args);
    let (code, _, err) = netc(&all);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).expect("written");
    let model = netc_compiler::compile("m.net", &text).expect("the imported file compiles");
    (text, model, err)
}

fn config(model: &netc_compiler::ir::Model) -> TrainConfig {
    train_config::read(model)
        .map_err(|d| format!("{d:?}"))
        .expect("the training section reads")
        .expect("a training section")
}

#[test]
fn lenet_train_test_and_solver_give_caffes_recipe() {
    let (text, model, notes) = import(
        "tests/caffe/lenet_train_test.prototxt",
        &[
            "--solver",
            "tests/caffe/lenet_solver.prototxt",
            "--input-shape",
            "1x28x28",
        ],
    );
    assert_eq!(model.networks[0].totals().params, 431_080, "{text}");
    let cfg = config(&model);
    assert_eq!(
        cfg.optimizer.kind,
        Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 5e-4
        }
    );
    assert_eq!(cfg.optimizer.lr, 0.01);
    assert_eq!(
        cfg.schedule,
        Schedule::Inv {
            gamma: 1e-4,
            power: 0.75
        }
    );
    assert_eq!(
        (cfg.batch, cfg.length, cfg.log_every),
        (64, Length::Steps(10_000), 100)
    );
    // Biases at twice the rate (lr_mult 2), decayed as the weights (no decay_mult).
    let bias = ParamMult {
        pattern: "*.bias".into(),
        lr: 2.0,
        decay: 1.0,
    };
    assert_eq!(cfg.decay.mults, vec![bias], "{text}");
    // scale 0.00390625 on 0..255 pixels: [0, 255/256].
    assert_eq!(cfg.range, (0.0, 255.0 / 256.0));
    assert_eq!(cfg.data, "mnist");
    // The loss and accuracy layers are the training section's; ip2's logits the output.
    assert!(
        text.contains("output ip2") && !text.contains("accuracy ="),
        "{text}"
    );
    for note in [
        "lenet_solver.prototxt:22: snapshot 5000",
        "lenet_solver.prototxt:8: test_interval 500",
        "lenet_train_test.prototxt:14: source examples/mnist/mnist_train_lmdb",
    ] {
        assert!(notes.contains(note), "{notes}");
    }
}

#[test]
fn alexnet_train_val_and_solver_give_caffes_recipe() {
    let (text, model, notes) = import(
        "tests/caffe/bvlc_alexnet_train_val.prototxt",
        &[
            "--solver",
            "tests/caffe/bvlc_alexnet_solver.prototxt",
            "--input-shape",
            "3x227x227",
        ],
    );
    assert_eq!(model.networks[0].totals().params, 60_965_224, "{text}");
    let cfg = config(&model);
    assert_eq!(cfg.optimizer.lr, 0.01);
    assert_eq!(
        cfg.schedule,
        Schedule::StepIter {
            every: 100_000,
            factor: 0.1
        }
    );
    assert_eq!((cfg.batch, cfg.length), (256, Length::Steps(450_000)));
    // bvlc_alexnet: biases at 2x the rate and without decay.
    let bias = ParamMult {
        pattern: "*.bias".into(),
        lr: 2.0,
        decay: 0.0,
    };
    assert_eq!(cfg.decay.mults, vec![bias], "{text}");
    assert!(cfg.images.flip && cfg.images.random_crop, "{text}");
    assert_eq!(cfg.images.mean, ChannelStat::Auto, "mean_file: measured");
    // No scale: Caffe feeds 0..255 pixels, so netc's 0..1 pixels are divided by 1/255.
    assert_eq!(cfg.images.std, ChannelStat::Values(vec![1.0 / 255.0; 3]));
    assert!(
        notes.contains("mean_file data/ilsvrc12/imagenet_mean.binaryproto"),
        "{notes}"
    );
}

/// (layer, shape without the batch) of each "Setting up" with its first "Top shape".
fn caffe_log(file: &str) -> Vec<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(file).expect("log fixture");
    let mut out = vec![];
    let mut layer: Option<String> = None;
    for line in text.lines() {
        if let Some((_, name)) = line.split_once("Setting up ") {
            layer = Some(name.trim().to_string());
        } else if let Some((_, shape)) = line.split_once("Top shape: ") {
            if let Some(name) = layer.take() {
                let dims: Vec<u64> = shape
                    .split_whitespace()
                    .filter(|d| !d.starts_with('('))
                    .map(|d| d.parse().expect("a dimension"))
                    .collect();
                out.push((name, dims.get(1..).unwrap_or_default().to_vec()));
            }
        }
    }
    out
}

/// Each Caffe layer of `log` has, in `netc check`'s table, the shape Caffe logs: the row of
/// the statement whose comment names it (in-place layers share their statement's shape), the
/// data layer the input's row.
fn shapes_match(prototxt: &str, shape: &str, log: &str) {
    let (text, _, _) = import(prototxt, &["--input-shape", shape]);
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("m.net");
    std::fs::write(&file, &text).expect("writes");
    let (code, table, err) = netc(&["check", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let row = |stmt: &str| -> Option<String> {
        table.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&stmt)).then(|| cols.get(2).map(|s| s.to_string()))?
        })
    };
    let entries = caffe_log(log);
    assert!(entries.len() > 5, "{log}");
    for (layer, dims) in entries.iter().filter(|(_, d)| !d.is_empty()) {
        let stmt = text
            .lines()
            .find_map(|l| {
                let (code, names) = l.split_once("    # ")?;
                names
                    .split(", ")
                    .any(|n| n == layer)
                    .then(|| code.trim().split(' ').next().unwrap_or("").to_string())
            })
            .unwrap_or_else(|| "data".to_string());
        let want: Vec<String> = dims.iter().map(u64::to_string).collect();
        assert_eq!(
            row(&stmt),
            Some(want.join("x")),
            "Caffe's {layer} (netc's {stmt}):\n{table}"
        );
    }
}

#[test]
fn netc_check_shapes_are_the_ones_caffe_logs() {
    shapes_match(
        "tests/caffe/lenet_train_test.prototxt",
        "1x28x28",
        "tests/caffe/lenet_train_log.txt",
    );
    shapes_match(
        "tests/caffe/bvlc_alexnet_train_val.prototxt",
        "3x227x227",
        "tests/caffe/bvlc_alexnet_train_log.txt",
    );
}

#[test]
fn every_solver_policy_and_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let solve = |body: &str| {
        let s = dir.path().join("solver.prototxt");
        std::fs::write(&s, body).expect("writes");
        let out = dir.path().join("m.net");
        let _ = std::fs::remove_file(&out);
        let r = netc(&[
            "import",
            "tests/caffe/lenet.prototxt",
            "--solver",
            s.to_str().expect("utf-8"),
            "-o",
            out.to_str().expect("utf-8"),
        ]);
        let cfg = (r.0 == 0).then(|| {
            let text = std::fs::read_to_string(&out).expect("written");
            config(&netc_compiler::compile("m.net", &text).expect("compiles"))
        });
        (cfg, r.2, out.exists())
    };
    let base = "base_lr: 0.1\nmax_iter: 1000\n";
    let (cfg, _, _) = solve(&format!(
        "{base}lr_policy: \"multistep\"\ngamma: 0.5\nstepvalue: 300\nstepvalue: 700\n"
    ));
    let at = vec![300, 700];
    assert_eq!(
        cfg.expect("multistep").schedule,
        Schedule::MultiStep { at, factor: 0.5 }
    );
    let (cfg, _, _) = solve(&format!("{base}lr_policy: \"poly\"\npower: 0.5\n"));
    assert_eq!(cfg.expect("poly").schedule, Schedule::Poly { power: 0.5 });
    let (cfg, _, _) = solve(&format!("{base}lr_policy: \"exp\"\ngamma: 0.999\n"));
    let exp = Schedule::StepIter {
        every: 1,
        factor: 0.999,
    };
    assert_eq!(cfg.expect("exp").schedule, exp);
    let (cfg, _, _) = solve(&format!(
        "{base}lr_policy: \"fixed\"\ntype: \"Adam\"\nmomentum: 0.9\nmomentum2: 0.99\n"
    ));
    let cfg = cfg.expect("adam");
    assert!(matches!(cfg.optimizer.kind, Optimizer::Adam { beta2, .. } if beta2 == 0.99));
    assert_eq!(cfg.schedule, Schedule::Constant);
    // Every problem, each with its line, and nothing written.
    let (cfg, err, written) = solve(&format!(
        "{base}lr_policy: \"sigmoid\"\ntype: \"RMSProp\"\niter_size: 2\nregularization_type: \"L1\"\nwarp_speed: 9\n"
    ));
    assert!(cfg.is_none() && !written, "{err}");
    for (line, what) in [
        (3, "lr_policy \"sigmoid\" has no netc schedule"),
        (4, "solver type RMSPROP"),
        (5, "iter_size"),
        (6, "regularization_type L1"),
        (7, "solver field `warp_speed` has no netc form"),
    ] {
        assert!(
            err.contains(&format!("solver.prototxt:{line}: {what}")),
            "{err}"
        );
    }
}

#[test]
fn a_data_layer_needs_its_shape_given() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("m.net");
    let (code, _, err) = netc(&[
        "import",
        "tests/caffe/lenet_train_test.prototxt",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("lenet_train_test.prototxt:2: layer `mnist` (Data): Caffe reads the input's shape from the data"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn caffemodel_weights_give_caffes_logits() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("tiny.net");
    let (code, said, err) = netc(&[
        "import",
        "tests/caffe/tiny.prototxt",
        "--weights",
        "tests/caffe/tiny.caffemodel",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(said.contains("wrote 4 tensors"), "{said}");
    let text = std::fs::read_to_string(&out).expect("net");
    let model = netc_compiler::compile("tiny.net", &text).expect("compiles");
    let net = &model.networks[0];
    let ck = netc_runtime::io::Checkpoint::load(&dir.path().join("tiny.safetensors")).expect("ck");
    logits_match_fixture(net, &ck, "tests/caffe/tiny_expected.txt");
    // Blobs whose shapes are not the network's: errors naming the layers, nothing written.
    let proto = std::fs::read_to_string("tests/caffe/tiny.prototxt").expect("fixture");
    let bad = proto.replace("num_output: 3", "num_output: 4").replace(
        "num_output: 2 kernel_size: 3",
        "num_output: 2 kernel_size: 3 bias_term: false",
    );
    let file = dir.path().join("bad.prototxt");
    std::fs::write(&file, bad).expect("writes");
    let out = dir.path().join("bad.net");
    let (code, _, err) = netc(&[
        "import",
        file.to_str().expect("utf-8"),
        "--weights",
        "tests/caffe/tiny.caffemodel",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("layer `conv1`: the .caffemodel has 2 blobs, the network 1 tensors"),
        "{err}"
    );
    assert!(
        err.contains(
            "layer `ip1` weight: the .caffemodel's shape [1, 1, 3, 8], the network's [4, 8]"
        ),
        "{err}"
    );
    assert!(!out.exists() && !Path::new(&out.with_extension("safetensors")).exists());
}

#[test]
fn the_imported_lenet_trains_with_its_recipe() {
    let dir = tempfile::tempdir().expect("tmp");
    let net = dir.path().join("lenet.net");
    let (code, _, err) = netc(&[
        "import",
        "tests/caffe/lenet_train_test.prototxt",
        "--solver",
        "tests/caffe/lenet_solver.prototxt",
        "--input-shape",
        "1x28x28",
        "-o",
        net.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    // A few steps of Caffe's recipe (inv schedule, biases at 2x) on the shipped sample.
    let run = dir.path().join("run");
    let (code, out, err) = netc(&[
        "train",
        net.to_str().expect("utf-8"),
        "--steps",
        "30",
        "--data-dir",
        "data/mnist-sample",
        "--device",
        "cpu",
        "--out",
        run.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    let last = metrics.lines().last().expect("a row");
    let row: serde_json::Value = serde_json::from_str(last).expect("json");
    // Step 29's rate under inv(1e-4, 0.75): 0.01 * (1 + 29e-4)^-0.75.
    let lr = row["lr"].as_f64().expect("lr");
    let want = 0.01 * (1.0f64 + 29e-4).powf(-0.75);
    assert!((lr - want).abs() < 1e-12, "{lr} vs {want}: {last}");
    assert!(row["test_acc"].as_f64().is_some_and(|a| a > 0.5), "{last}");
}

/// The checkpoint's logits on the fixture's input (its first line) within 1e-6 of the plain
/// Python forward pass's (its second), on the CPU executor in inference mode (running
/// statistics normalise).
pub(crate) fn logits_match_fixture(
    net: &netc_compiler::ir::Network,
    ck: &netc_runtime::io::Checkpoint,
    expected: &str,
) {
    let rows = fixture_rows(expected);
    logits_match(net, ck, &rows[0], &rows[1]);
}

/// The lines of a fixture that are not comments, as numbers.
pub(crate) fn fixture_rows(path: &str) -> Vec<Vec<f32>> {
    let expected = std::fs::read_to_string(path).expect("fixture");
    expected
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            l.split_whitespace()
                .map(|v| v.parse().expect("a number"))
                .collect()
        })
        .collect()
}

/// The checkpoint's three logits on `x` within 1e-6 (relative to 1 + |want|) of `want`.
pub(crate) fn logits_match(
    net: &netc_compiler::ir::Network,
    ck: &netc_runtime::io::Checkpoint,
    x: &[f32],
    want: &[f32],
) {
    use netc_runtime::session::{Classifier, Executor};
    let like = netc_runtime::cpu::Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (params, _) =
        netc_runtime::io::run_checkpoint::load_params(ck, net, &like, 0).expect("loads");
    let sgd = Optimizer::Sgd {
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let mut c = Classifier::new(net, params, sgd, 1, 1, Executor::Cpu).expect("session");
    let logits = c.logits(x).expect("logits");
    assert_eq!(logits.len(), 3);
    assert_eq!(want.len(), 3);
    for (got, want) in logits.iter().zip(want) {
        assert!(
            (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{logits:?} vs {want:?}"
        );
    }
}
