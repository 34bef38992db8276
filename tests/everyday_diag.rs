//! Everyday use, second round (issue 30, items 6, 7 and 8): a model without a training section
//! trains with a stated default recipe; diagnostics that used to disagree with the rest; a GPU
//! command without XDG_RUNTIME_DIR prints no error line.

use std::path::Path;

#[path = "support/netc.rs"]
mod run;
use run::netc;

#[path = "support/digit_folder.rs"]
#[allow(dead_code)]
mod digit_folder;

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
