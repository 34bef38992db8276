//! The training pieces of issue 25 item 6 through the real binary: AdamW with a decay rule,
//! the warm-up cosine schedule and clipping by the global norm, as `netc check` shows and
//! checks them and as `netc train` runs them (its per-step learning rates in metrics.jsonl).

use std::time::Duration;

use crate::within;
use within::netc_within;

const NET: &str =
    "net m {\n input x: 1x28x28\n h = flatten -> dense(16) -> relu\n pos = dense(10)\n}\n";

fn write(dir: &std::path::Path, train: &str) -> String {
    let f = dir.join("m.net");
    std::fs::write(&f, format!("{NET}train {{\n{train}\n}}\n")).expect("write model");
    f.to_str().expect("utf-8").to_string()
}

const RECIPE: &str = " optimizer = adamw(lr=0.01, weight_decay=0.1)\n decay_min_rank = 2\n no_decay = [\"pos.*\"]\n schedule = warmup_cosine(warmup=2, min_lr=0.001)\n clip_grad_norm = 1.0\n data = synthetic\n batch = 8\n steps = 6\n log_every = 1";

#[test]
fn check_lists_the_tensors_that_get_weight_decay() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), RECIPE);
    let (code, out, err) = netc_within(&["check", &f], Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("weight decay in `m`:"), "{out}");
    assert!(out.contains("  decayed:     h.weight\n"), "{out}");
    assert!(
        out.contains(
            "not decayed: h.bias (rank 1 < decay_min_rank 2), pos.weight (matches \"pos.*\"), pos.bias (rank 1 < decay_min_rank 2)"
        ),
        "{out}"
    );
    assert!(out.contains("(AdamW)"), "{out}");
    let (code, out, err) = netc_within(&["check", &f, "--format", "json"], Duration::from_secs(60));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = v["weight_decay"].as_array().expect("weight_decay rows");
    let decayed: Vec<&str> = rows
        .iter()
        .filter(|r| r["decayed"] == true)
        .map(|r| r["tensor"].as_str().expect("name"))
        .collect();
    assert_eq!(decayed, ["h.weight"]);
    // No weight decay: nothing to list.
    let f = write(dir.path(), " optimizer = adamw(weight_decay=0)");
    let (code, out, _) = netc_within(&["check", &f], Duration::from_secs(60));
    assert_eq!(code, 0);
    assert!(!out.contains("weight decay in"), "{out}");
}

#[test]
fn every_bad_setting_is_a_located_error() {
    let dir = tempfile::tempdir().expect("tmp");
    for (bad, want) in [
        (
            "optimizer = adamw(lr=0.01, weight_decay=-0.1)",
            "weight_decay must be a finite number in [0, 1]",
        ),
        (
            "optimizer = adamw(betas=0.9)",
            "`adamw` has no setting `betas`",
        ),
        (
            "schedule = warmup_cosine(warmup=2.5)",
            "as a fraction of all steps must be",
        ),
        (
            "schedule = warmup_cosine(warmup=0.1, min_lr=5)",
            "above the optimizer's lr",
        ),
        (
            "schedule = cosine_warmup",
            "unknown schedule `cosine_warmup`",
        ),
        ("clip_grad_norm = -1", "`clip_grad_norm` must be"),
        (
            "clip_grad_norm = [1]",
            "training setting `clip_grad_norm`: expected a positive number",
        ),
        ("decay_min_rank = -1", "`decay_min_rank` must be"),
        (
            "no_decay = bias",
            "training setting `no_decay`: expected a list of quoted name patterns",
        ),
        ("no_decay = [\"*.bias\", 1]", "training setting `no_decay`"),
        (
            "no_decay_rank = 2",
            "unknown training setting `no_decay_rank`",
        ),
    ] {
        let f = write(dir.path(), &format!(" {bad}"));
        let (code, _, err) = netc_within(&["check", &f], Duration::from_secs(60));
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains(want), "{bad}: {err}");
        // Located: the setting on line 7 of the file.
        assert!(err.contains("m.net:7:"), "{bad}: {err}");
    }
}

#[test]
fn train_runs_the_recipe_with_each_steps_learning_rate() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), RECIPE);
    let out = dir.path().join("run");
    let (code, _, err) = netc_within(
        &[
            "train",
            &f,
            "--device",
            "cpu",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        Duration::from_secs(300),
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let lrs: Vec<f64> = lines
        .iter()
        .filter(|l| l.get("lr").is_some() && l.get("train_loss").is_some())
        .map(|l| l["lr"].as_f64().expect("lr"))
        .collect();
    // 6 steps, 2 of warm-up: 0.01 * 1/3, 0.01 * 2/3, then the peak, cosine over the last
    // 3 steps to min_lr at the last.
    let cos = |r: f64| 0.001 + 0.009 * 0.5 * (1.0 + (std::f64::consts::PI * r).cos());
    let want = [
        0.01 / 3.0,
        0.02 / 3.0,
        0.01,
        cos(1.0 / 3.0),
        cos(2.0 / 3.0),
        0.001,
    ];
    assert_eq!(lrs.len(), want.len(), "{lines:?}");
    for (t, (a, b)) in lrs.iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-12 * b, "step {t}: lr {a}, want {b}");
    }
    let losses: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.get("train_loss").and_then(|v| v.as_f64()))
        .collect();
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
}
