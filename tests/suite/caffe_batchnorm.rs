//! `netc import` of Caffe's BatchNorm + Scale pairs (tests/caffe/): one netc batchnorm per
//! pair, the .caffemodel's statistics divided by its scale factor, a BatchNorm without a Scale
//! at gamma 1 and beta 0, the counts PyTorch and Caffe give for a residual excerpt, and what
//! cannot be imported reported with its prototxt line.

use crate::run::netc;
use std::path::Path;

/// Imports `net` (with `args`) into `dir` as `m.net`: (the text, the command's stderr).
fn import(dir: &Path, net: &str, args: &[&str]) -> (String, String) {
    let out = dir.join("m.net");
    let mut all = vec!["import", net, "-o", out.to_str().expect("utf-8")];
    all.extend(args);
    let (code, _, err) = netc(&all);
    assert_eq!(code, 0, "{err}");
    (std::fs::read_to_string(&out).expect("written"), err)
}

/// `netc check`'s row of layer `name`: (op, output shape, params).
fn row(table: &str, name: &str) -> (String, String, String) {
    let cells: Vec<&str> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name}:\n{table}"));
    let at = |i: usize| cells.get(i).map_or(String::new(), |s| s.to_string());
    (at(1), at(2), at(3))
}

#[test]
fn batchnorm_and_scale_become_one_batchnorm() {
    let dir = tempfile::tempdir().expect("tmp");
    let (text, _) = import(dir.path(), "tests/caffe/tiny_bn.prototxt", &[]);
    // The pair chains onto its convolution (in place), eps as given, momentum 1 - 0.9; the
    // BatchNorm without a Scale gets Caffe's defaults (eps 1e-5, fraction 0.999).
    assert!(
        text.contains(
            "-> batchnorm(eps=1e-4, momentum=0.1) -> relu    # conv1, bn1, scale1, relu1"
        ),
        "{text}"
    );
    assert!(
        text.contains("-> batchnorm(eps=1e-5, momentum=0.001)    # ip1, bn2"),
        "{text}"
    );
    let model = netc_compiler::compile("m.net", &text).expect("compiles");
    let t = model.networks[0].totals();
    // conv 3x2x3x3, two batchnorms of 3 and 4 features (gamma, beta, mean, variance each),
    // ip1 27 -> 4, ip2 4 -> 3; the running statistics are not trained.
    assert_eq!(t.params, 54 + 4 * 3 + (27 * 4 + 4) + 4 * 4 + (4 * 3 + 3));
    assert_eq!(t.trainable, t.params - 2 * 3 - 2 * 4);
    let (code, table, err) = netc(&["check", dir.path().join("m.net").to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let want = [
        ("conv1", "conv", "3x3x3", "54"),
        ("conv1.batchnorm", "batchnorm", "3x3x3", "12"),
        ("conv1.relu", "relu", "3x3x3", "-"),
        ("ip1", "dense", "4", "112"),
        ("ip1.batchnorm", "batchnorm", "4", "16"),
        ("ip2", "dense", "3", "15"),
    ];
    for (name, op, shape, params) in want {
        assert_eq!(row(&table, name), (op.into(), shape.into(), params.into()));
    }
}

#[test]
fn caffemodel_batchnorm_statistics_give_caffes_logits() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("tiny_bn.net");
    let (code, said, err) = netc(&[
        "import",
        "tests/caffe/tiny_bn.prototxt",
        "--weights",
        "tests/caffe/tiny_bn.caffemodel",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    // conv1.weight, 4 + 4 of the batchnorms, ip1's and ip2's 2 each.
    assert!(said.contains("wrote 13 tensors"), "{said}");
    let text = std::fs::read_to_string(&out).expect("net");
    let model = netc_compiler::compile("tiny_bn.net", &text).expect("compiles");
    let net = &model.networks[0];
    let ck = netc_runtime::io::Checkpoint::load(&out.with_extension("safetensors")).expect("ck");
    // Caffe's stored sums over the factor (0.5 and 4); bn2's gamma 1 and beta 0.
    let get = |n: &str| ck.get(n).map(|t| t.1.to_vec()).expect(n);
    assert_eq!(get("conv1.batchnorm.running_mean"), [0.5, -1.0, 0.25]);
    assert_eq!(get("ip1.batchnorm.running_var"), [0.5, 0.75, 0.25, 1.0]);
    assert_eq!(get("ip1.batchnorm.weight"), [1.0; 4]);
    assert_eq!(get("ip1.batchnorm.bias"), [0.0; 4]);
    super::caffe_train::logits_match_fixture(net, &ck, "tests/caffe/tiny_bn_expected.txt");
}

#[test]
fn a_lone_batchnorm_keeps_gamma_and_beta_fixed_in_training() {
    let dir = tempfile::tempdir().expect("tmp");
    let proto = std::fs::read_to_string("tests/caffe/tiny_bn.prototxt").expect("fixture");
    // A train_val form: a Data layer, bn2 with use_global_stats (netc trains with batch
    // statistics), scale1 without bias_term (beta fixed at 0), a loss; MNIST-sized input, 10 classes.
    let train = proto
        .replace(
            "type: \"Input\"\n  top: \"data\"\n  input_param { shape: { dim: 1 dim: 2 dim: 5 dim: 5 } }",
            "type: \"Data\"\n  top: \"data\"\n  top: \"label\"\n  data_param { source: \"x_lmdb\" batch_size: 8 }",
        )
        .replace("scale_param { bias_term: true }", "param { lr_mult: 2 }")
        .replace(
            "top: \"ip1\"\n}",
            "top: \"ip1\"\n  batch_norm_param { use_global_stats: true }\n}",
        )
        .replace("num_output: 3 }", "num_output: 10 }")
        + "layer {\n  name: \"loss\"\n  type: \"SoftmaxWithLoss\"\n  bottom: \"ip2\"\n  bottom: \"label\"\n  top: \"loss\"\n}\n";
    let file = dir.path().join("bn_train.prototxt");
    std::fs::write(&file, &train).expect("writes");
    let (text, notes) = import(
        dir.path(),
        file.to_str().expect("utf-8"),
        &["--input-shape", "1x28x28"],
    );
    assert!(
        text.contains("param_mult = [mult(\"conv1.batchnorm.weight\", lr=2), mult(\"ip1.batchnorm.weight\", lr=0, decay=0), mult(\"conv1.batchnorm.bias\", lr=0, decay=0), mult(\"ip1.batchnorm.bias\", lr=0, decay=0)]"),
        "{text}"
    );
    let line = train
        .lines()
        .position(|l| l.contains("name: \"bn2\""))
        .expect("bn2");
    assert!(
        notes.contains(&format!("bn_train.prototxt:{line}: layer `bn2` (BatchNorm) use_global_stats: true: netc's batchnorm trains with each batch's statistics")),
        "{notes}"
    );
    let model = netc_compiler::compile("m.net", &text).expect("compiles");
    let cfg = netc_compiler::train_config::read(&model)
        .map_err(|d| format!("{d:?}"))
        .expect("reads")
        .expect("a section");
    let frozen = cfg
        .decay
        .mults
        .iter()
        .filter(|m| m.lr == 0.0 && m.decay == 0.0);
    assert_eq!(frozen.count(), 3);
    // Without its bias blob the .caffemodel no longer fits scale1: said, nothing written.
    let out = dir.path().join("w.net");
    let (code, _, err) = netc(&[
        "import",
        file.to_str().expect("utf-8"),
        "--input-shape",
        "1x28x28",
        "--weights",
        "tests/caffe/tiny_bn.caffemodel",
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("layer `scale1`: the .caffemodel has 2 blobs, the network 1 tensors"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_residual_excerpt_has_pytorchs_parameter_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let (text, _) = import(dir.path(), "tests/caffe/resnet_excerpt.prototxt", &[]);
    let model = netc_compiler::compile("m.net", &text).expect("compiles");
    let t = model.networks[0].totals();
    // resnet_excerpt_torch.py: PyTorch's parameters() 19,994 (netc's trainable tensors) and
    // 288 running statistics; Caffe's blobs add a scale factor per BatchNorm (20,288).
    assert_eq!(t.trainable, 19_994, "{text}");
    assert_eq!(t.params, 19_994 + 288, "{text}");
    assert_eq!(
        text.matches("batchnorm(eps=1e-5, momentum=0.001)").count(),
        6
    );
    assert!(
        text.contains("res2a = add(conv1, res2a_branch2b) -> relu"),
        "{text}"
    );
}

#[test]
fn scales_netc_cannot_hold_are_reported_with_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let proto = std::fs::read_to_string("tests/caffe/tiny_bn.prototxt").expect("fixture");
    // A Scale on the input (not after a BatchNorm), a Scale over two axes, a fraction of 1.
    let bad = proto
        .replace(
            "scale_param { bias_term: true }",
            "scale_param { bias_term: true num_axes: 2 }",
        )
        .replace("moving_average_fraction: 0.9", "moving_average_fraction: 1")
        + "layer {\n  name: \"scale3\"\n  type: \"Scale\"\n  bottom: \"data\"\n  top: \"scaled\"\n}\n";
    let file = dir.path().join("bad.prototxt");
    std::fs::write(&file, &bad).expect("writes");
    let out = dir.path().join("bad.net");
    let (code, _, err) = netc(&[
        "import",
        file.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).expect(needle);
    // Each layer's `layer {` line.
    assert!(
        err.contains(&format!(
            "bad.prototxt:{}: layer `bn1` (BatchNorm): moving_average_fraction 1",
            line_of("name: \"bn1\"")
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "bad.prototxt:{}: layer `scale3` (Scale): netc has no op for a Scale alone",
            line_of("name: \"scale3\"")
        )),
        "{err}"
    );
    assert!(!out.exists());
    // With bn1 fixed, scale1's two axes are its own error.
    let bad2 = bad.replace("moving_average_fraction: 1", "moving_average_fraction: 0.9");
    std::fs::write(&file, &bad2).expect("writes");
    let (code, _, err) = netc(&[
        "import",
        file.to_str().expect("utf-8"),
        "-o",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "bad.prototxt:{}: layer `scale1` (Scale): only a per-channel scale",
            line_of("name: \"scale1\"")
        )),
        "{err}"
    );
}
