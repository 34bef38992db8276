//! Everyday use, second round (issue 30, items 6, 7 and 8): a model without a training section
//! trains with a stated default recipe; diagnostics that used to disagree with the rest; a GPU
//! command without XDG_RUNTIME_DIR prints no error line.

use std::path::Path;

use crate::run;
use run::netc;

use crate::digit_folder;

/// Writes `src` to `name` under `dir`; the path as a string.
fn model(dir: &Path, name: &str, src: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, src).expect("write model");
    p.to_str().expect("utf-8").to_string()
}

// ---- item 6: no training section -------------------------------------------------------

#[test]
fn check_states_the_default_recipe_of_a_model_without_a_section() {
    for (file, net) in [
        ("models/vgg11.net", "vgg11"),
        ("models/resnet_block.net", "resnet_small"),
    ] {
        let (code, out, err) = netc(&["check", file]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains("no training section"), "{file}: {out}");
        assert!(out.contains(&format!("network = {net}")), "{file}: {out}");
        assert!(
            out.contains("optimizer = adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)"),
            "{out}"
        );
        assert!(
            out.contains("batch = 128") && out.contains("epochs = 5"),
            "{out}"
        );
    }
    // A model with a section states no default.
    let (code, out, _) = netc(&["check", "models/mlp.net"]);
    assert_eq!(code, 0);
    assert!(!out.contains("default recipe"), "{out}");
}

#[test]
fn a_model_without_a_section_trains_with_the_flags_over_the_default_recipe() {
    // The residual network of models/ on ten classes of 32x32 RGB digits.
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("digits");
    digit_folder::write(
        &data,
        &digit_folder::Spec {
            classes: 10,
            per_class: 3,
            split: false,
            rgb: true,
            size: 32,
        },
    );
    let out = tmp.path().join("run");
    let (code, _, err) = netc(&[
        "train",
        "models/resnet_block.net",
        "--epochs",
        "1",
        "--lr",
        "0.01",
        "--batch",
        "8",
        "--device",
        "cpu",
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no training section"), "{err}");
    assert!(err.contains("default recipe"), "{err}");
    // The recipe printed is the one run: the flags over the defaults.
    assert!(err.contains("optimizer = adam(lr=0.01,"), "{err}");
    assert!(err.contains("epochs = 1"), "{err}");
    assert!(err.contains("batch = 8"), "{err}");
    assert!(out.join("checkpoint.safetensors").is_file(), "{err}");
}

#[test]
fn a_model_without_a_section_and_no_data_says_what_to_pass() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = model(
        tmp.path(),
        "m.net",
        "net m { input x: 784\n h = dense(16) -> relu\n o = dense(10)\n output o }\n",
    );
    let (code, _, err) = netc(&["train", &f, "--epochs", "1", "--device", "cpu"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    assert!(!err.contains("has no training section: add"), "{err}");
    // With the shipped sample it trains.
    let out = tmp.path().join("run");
    let (code, _, err) = netc(&[
        "train",
        &f,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--data-dir",
        "data/mnist-sample",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("default recipe"), "{err}");
}

// ---- item 8: diagnostics that disagreed with the rest ---------------------------------

/// `netc check` of `src` written to `name`: (exit code, stderr).
fn check(name: &str, src: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = model(tmp.path(), name, src);
    let (code, _, err) = netc(&["check", &f]);
    (code, err)
}

#[test]
fn an_unknown_op_standing_alone_is_one_located_unknown_op() {
    // Read by the output: was "undefined name" twice. (`layernorm`, the name first used here,
    // is a standard-library block now.)
    let (code, err) = check(
        "u.net",
        "net m {\n  input x: 4\n  b = instancenorm\n  output b\n}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("unknown op `instancenorm`").count(), 1, "{err}");
    assert!(!err.contains("undefined name"), "{err}");
    assert!(err.contains("u.net:3:7"), "{err}");
    assert!(err.contains("the ops are: dense"), "{err}");
    // Read by nothing: was no error at all.
    let (code, err) = check(
        "u.net",
        "net m {\n  input x: 4\n  a = dense(3)\n  b = instancenorm\n  o = a -> dense(2)\n  output o\n}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("unknown op `instancenorm`").count(), 1, "{err}");
    // The registry's "did you mean" for a near miss.
    let (_, err) = check(
        "u.net",
        "net m {\n  input x: 4\n  a = dense(3)\n  b = rleu\n}\n",
    );
    assert!(err.contains("unknown op `rleu`"), "{err}");
    assert!(err.contains("did you mean `relu`?"), "{err}");
    // A misspelt layer name standing alone is still an undefined name, with the layer offered.
    let (_, err) = check(
        "u.net",
        "net m {\n  input x: 4\n  hidden = dense(3)\n  b = hiden\n  output b\n}\n",
    );
    assert!(err.contains("undefined name `hiden`"), "{err}");
    assert!(err.contains("did you mean `hidden`?"), "{err}");
}

#[test]
fn a_yaml_chain_says_what_the_same_chain_says_in_a_net_file() {
    let (code, err) = check(
        "m.yaml",
        "networks:\n  - name: m\n    inputs: {x: 784}\n    layers:\n      - dense(10\" -> relu\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("expected `)`"), "{err}");
    assert!(!err.contains("a shape like 784"), "{err}");
    assert!(err.contains("m.yaml:5:17"), "{err}");
    // Quoted with an escape: located at its own line, not at the inputs above.
    let (_, err) = check(
        "m.yaml",
        "networks:\n  - name: m\n    inputs: {x: 784}\n    layers:\n      - \"dense(10\\\"\"\n",
    );
    assert!(err.contains("expected `)`"), "{err}");
    assert!(err.contains("m.yaml:5:"), "{err}");
}

#[test]
fn an_unknown_yaml_key_hides_no_other_error() {
    let (code, err) = check(
        "m.yaml",
        "networks:\n  - name: m\n    inputs: {x: 784}\n    colour: red\n    layers:\n      - {op: dense, units: -3}\n      - {op: dense, unitz: 3}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(err.contains("m.yaml:4:5"), "{err}");
    assert!(err.contains("found -3"), "{err}");
    assert!(err.contains("no argument `unitz`"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn a_negative_count_is_named_by_its_value() {
    let (code, err) = check(
        "c.net",
        "net m {\n  input x: 1x8x8\n  c = conv(-4, k=3)\n}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("expected a non-negative integer, found -4"),
        "{err}"
    );
    assert!(!err.contains("found an integer"), "{err}");
}

#[test]
fn a_yaml_indentation_slip_is_said_to_be_one_at_its_line() {
    let (code, err) = check(
        "m.yaml",
        "networks:\n  - name: m\n   inputs: {x: 784}\n    layers:\n      - {op: dense, units: 10}\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("`inputs` on line 3 is indented 3 spaces, the keys above it 4"),
        "{err}"
    );
    assert!(err.contains("m.yaml:3:4"), "{err}");
}

#[test]
fn a_layer_nothing_reads_is_a_warning_and_its_parameters_still_count() {
    let (code, err) = check(
        "w.net",
        "net m {\n  input x: 4\n  a = dense(3)\n  side = dense(5) -> relu\n  o = a -> dense(2)\n  output o\n}\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: the output of `side.relu` is never used"),
        "{err}"
    );
    assert!(err.contains("w.net:4:22"), "{err}");
    assert!(err.contains("its 20 parameters still count"), "{err}");
    assert!(!err.contains("error"), "{err}");
    // The shipped models have none.
    for m in [
        "models/alexnet.net",
        "models/resnet_block.net",
        "models/gan.yaml",
    ] {
        let (_, _, err) = netc(&["check", m]);
        assert!(!err.contains("warning"), "{m}: {err}");
    }
}
