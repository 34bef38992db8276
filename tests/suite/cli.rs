//! The `netc` binary end to end: exit codes, text and JSON output.

use std::process::Command;

use crate::run;
use run::netc;

#[test]
fn check_prints_the_alexnet_table() {
    let (code, out, _) = netc(&["check", "models/alexnet.net"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("conv1        conv         96x55x55      34,944  105,705,600"),
        "{out}"
    );
    assert!(
        out.contains("parameters:        60,965,224 (trainable 60,965,224)"),
        "{out}"
    );
    assert!(out.contains("neurons:           659,272"), "{out}");
}

#[test]
fn check_json_has_the_documented_fields() {
    let (code, out, _) = netc(&["check", "models/gan.yaml", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let nets = v["networks"].as_array().expect("networks");
    assert_eq!(nets.len(), 2);
    assert_eq!(nets[0]["name"], "generator");
    assert_eq!(nets[0]["totals"]["params"], 227_344);
    assert_eq!(nets[1]["totals"]["params"], 201_217);
    let l = &nets[0]["layers"][1];
    for key in [
        "name",
        "op",
        "output_shape",
        "params",
        "connections",
        "macs",
    ] {
        assert!(!l[key].is_null(), "missing {key}");
    }
    assert_eq!(l["output_shape"], serde_json::json!([256]));
}

#[test]
fn model_errors_exit_1_with_location() {
    let (code, out, err) = netc(&["check", "tests/bad_models/shape_mismatch.net"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("tests/bad_models/shape_mismatch.net:6:8"),
        "{err}"
    );
    assert!(err.contains("insert `flatten ->`"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(netc(&["check"]).0, 2);
    assert_eq!(netc(&["frobnicate"]).0, 2);
    assert_eq!(netc(&["check", "models/mlp.net", "--format", "xml"]).0, 2);
}

#[test]
fn missing_file_is_a_one_line_error() {
    let (code, _, err) = netc(&["check", "no/such/model.net"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot read model file"));
}

#[test]
fn graph_prints_dot_with_shapes_on_edges() {
    let (code, out, _) = netc(&["graph", "models/mlp.net"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("digraph netc {"));
    assert!(out.contains("[label=\"128\"]"), "{out}");
}

#[test]
fn bench_rejects_a_bad_gemm_shape_before_any_work() {
    for spec in ["12x3", "0x4x4", "4x4x4:tc", "axbxc"] {
        let (code, out, err) = netc(&["bench", "--gemm", spec]);
        assert_eq!(code, 1, "{spec}: {out}{err}");
        assert!(out.is_empty(), "{spec}: nothing measured: {out}");
        assert!(
            err.contains("expected MxNxK with optional :ta and :tb"),
            "{spec}: {err}"
        );
    }
}

#[test]
fn check_shows_the_training_memory_of_a_step() {
    // LeNet at its section's batch 64 under SGD with momentum: parameters, gradients and
    // velocity are 431,080 floats each, padded to whole quads per tensor.
    let (code, out, err) = netc(&["check", "models/lenet.net"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("training step of `lenet` at batch 64 (SGD with momentum)"),
        "{out}"
    );
    assert!(out.contains("parameters:        1.72 MB"), "{out}");
    assert!(out.contains("optimizer state:   1.72 MB"), "{out}");
    // --batch scales the activations; JSON carries the same figures.
    let (code, out, _) = netc(&[
        "check",
        "models/lenet.net",
        "--batch",
        "8",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let m = &v["training_memory"];
    assert_eq!(m["batch"], 8);
    assert_eq!(m["params_bytes"], m["grads_bytes"]);
    let parts: u64 = [
        "params_bytes",
        "grads_bytes",
        "optimizer_state_bytes",
        "activation_bytes",
        "io_bytes",
    ]
    .iter()
    .map(|k| m[*k].as_u64().expect("bytes"))
    .sum();
    assert_eq!(m["total_bytes"].as_u64(), Some(parts));
    // AlexNet has no training section: with --batch it is planned under SGD with momentum,
    // fc6 split into blocks that fit 128 MiB bindings.
    let (code, out, _) = netc(&["check", "models/alexnet.net", "--batch", "8"]);
    assert_eq!(code, 0);
    assert!(out.contains("parameters:        243.86 MB"), "{out}");
}

#[test]
fn counts_and_rates_must_be_positive() {
    // Zero used to become one further down (one epoch, batch 1, one sample) and `--lr -1` was
    // taken for a flag; now each is a usage error naming the flag.
    for (args, flag) in [
        (
            &["train", "models/mlp.net", "--epochs", "0"][..],
            "--epochs",
        ),
        (&["train", "models/mlp.net", "--steps", "0"][..], "--steps"),
        (&["train", "models/mlp.net", "--batch", "0"][..], "--batch"),
        (&["train", "models/mlp.net", "--lr", "-1"][..], "--lr"),
        (&["train", "models/mlp.net", "--lr", "0"][..], "--lr"),
        (&["train", "models/mlp.net", "--lr", "nan"][..], "--lr"),
        (
            &[
                "sample",
                "models/gan.yaml",
                "--weights",
                "w",
                "--count",
                "0",
            ][..],
            "--count",
        ),
        (&["bench", "--reps", "0"][..], "--reps"),
        (&["check", "models/mlp.net", "--batch", "0"][..], "--batch"),
    ] {
        let (code, _, err) = netc(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn devices_prints_no_error_line_without_a_display() {
    // Without XDG_RUNTIME_DIR, Mesa's device-select Vulkan layer printed
    // "error: XDG_RUNTIME_DIR is invalid or not set" twice on every adapter probe.
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("runs netc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("cpu"));
}

#[test]
fn bench_runs_outside_the_checkout() {
    // Its default model is built in, not read from ./models.
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["bench", "--device", "cpu", "--reps", "1"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("runs netc");
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(stdout.contains("mlp training step"), "{stdout}");
}

#[test]
fn check_json_reports_model_errors_as_json() {
    // Tools reading --format json used to get nothing on stdout for a model with errors.
    let (code, out, err) = netc(&[
        "check",
        "tests/bad_models/shape_mismatch.net",
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(v["ok"], false);
    let e = &v["errors"][0];
    assert_eq!(e["file"], "tests/bad_models/shape_mismatch.net");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(6), Some(8))
    );
    assert!(e["message"]
        .as_str()
        .expect("message")
        .contains("flat vector"));
    assert_eq!(e["labels"].as_array().expect("labels").len(), 2);
    assert!(e["help"][0].as_str().expect("help").contains("flatten"));
    // The text rendering still goes to stderr for a person.
    assert!(err.contains("shape_mismatch.net:6:8"), "{err}");
    // A file that cannot be read is an error in the same shape, without a location.
    let (code, out, _) = netc(&["check", "no/such.net", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert!(v["errors"][0]["line"].is_null());
}

#[test]
fn check_rejects_what_train_would_reject() {
    // `check` used to pass a training section `train` rejects (batch = 0, an unknown task).
    let dir = std::env::temp_dir().join(format!("netc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let lenet = std::fs::read_to_string("models/lenet.net").expect("model");
    for (from, to, says) in [
        (
            "batch = 64",
            "batch = 0",
            "expected an integer of at least 1",
        ),
        (
            "task = classifier",
            "task = regression",
            "unknown task `regression`",
        ),
    ] {
        let f = dir.join("bad.net");
        std::fs::write(&f, lenet.replace(from, to)).expect("write");
        let (code, _, err) = netc(&["check", f.to_str().expect("utf-8")]);
        assert_eq!(code, 1, "{to}: {err}");
        assert!(err.contains(says), "{to}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_takes_a_very_long_layer_name() {
    // A name over 65,535 characters made the table's padding panic (exit 101).
    let name = "a".repeat(70_000);
    let dir = std::env::temp_dir().join(format!("netc-cli-long-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("long.net");
    std::fs::write(
        &f,
        format!("net a {{\n input x: 4\n {name} = dense(3)\n output {name}\n}}\n"),
    )
    .expect("write");
    let (code, out, err) = netc(&["check", f.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&name));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_points_yaml_training_errors_at_their_key_and_checks_a_gans_shapes() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = std::fs::read_to_string(format!("{}/models/gan.yaml", env!("CARGO_MANIFEST_DIR")))
        .expect("model");
    let bad = src
        .replace("  k: 1", "  k: 0")
        .replace("  batch: 128", "  batch: -128");
    let f = dir.path().join("bad.yaml");
    std::fs::write(&f, &bad).expect("write");
    let (code, _, err) = netc(&["check", f.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    let line = |key: &str| bad.lines().position(|l| l.starts_with(key)).expect(key) + 1;
    for (key, msg) in [("  k:", "`k`"), ("  batch:", "`batch`")] {
        assert!(
            err.contains(&format!("bad.yaml:{}:3", line(key))),
            "{key}: {err}"
        );
        assert!(err.contains(msg), "{err}");
    }
    let mismatch = src.replace("inputs: {x: 784}", "inputs: {x: 100}");
    let f = dir.path().join("shapes.yaml");
    std::fs::write(&f, &mismatch).expect("write");
    let (code, _, err) = netc(&["check", f.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("generator `generator` makes 784 values per example but discriminator `discriminator` takes 100"),
        "{err}"
    );
}
