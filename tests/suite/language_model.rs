//! `task = language_model` and `netc generate` from the command line (issue 26): a small GPT
//! that learns a repeating text, bit-exact resume, generation that repeats for a seed, and
//! clear errors for bad text, bad prompts and networks of the wrong shape.

use crate::run::netc;
use std::path::{Path, PathBuf};

/// A GPT of one block over windows of 16 characters, its head tied to the embedding.
const TINY: &str = "net gpt {
  input tokens: 16
  wte = param([17, 32], init=gaussian(0.02))
  tok = gather(wte, tokens)
  x = tok -> positions(16, 32)
  b1 = transformer(32, 2, 64, causal=true)
  ln_f = layernorm(32)
  head = wte -> transpose
  logits = matmul(ln_f, head)
  output logits
}
train {
  task = language_model
  text = \"text.txt\"
  optimizer = adamw(lr=3e-3, beta2=0.99, weight_decay=0.1)
  batch = 8
  steps = STEPS
  log_every = 50
  eval_every = 100
  checkpoint_every = 0
}
";

/// A scratch folder with the tiny model (trained for `steps`) and `text` beside it.
fn setup(name: &str, steps: u64, text: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netc-lm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    std::fs::write(
        dir.join("tiny.net"),
        TINY.replace("STEPS", &steps.to_string()),
    )
    .expect("model");
    std::fs::write(dir.join("text.txt"), text).expect("text");
    dir
}

/// 17 distinct characters, each always followed by the same one.
fn repeating() -> Vec<u8> {
    "0123456789abcdef\n".repeat(200).into_bytes()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn train(dir: &Path, out: &str, extra: &[&str]) -> (i32, String, String) {
    let model = s(&dir.join("tiny.net"));
    let out = s(&dir.join(out));
    let mut args = vec!["train", &model, "--device", "cpu", "--quiet", "--out", &out];
    args.extend_from_slice(extra);
    netc(&args)
}

/// The rows of a run's metrics.jsonl of one kind.
fn rows(out: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|v| v["kind"] == kind)
        .collect()
}

#[test]
fn a_small_gpt_learns_a_repeating_text_on_the_cpu() {
    let dir = setup("learns", 200, &repeating());
    let (code, _, err) = train(&dir, "run", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("17 distinct; 3060 for training, 340 held out"),
        "{err}"
    );
    let val = rows(&dir.join("run"), "val");
    assert_eq!(
        val.iter().map(|v| v["step"].as_u64()).collect::<Vec<_>>(),
        vec![Some(100), Some(200)]
    );
    let first = rows(&dir.join("run"), "train")[0]["train_loss"]
        .as_f64()
        .unwrap();
    let last = val[1]["val_loss"].as_f64().unwrap();
    // ln 17 = 2.83 at the start; the next character is certain, so the loss goes to ~0.
    assert!(first > 1.0 && last < 0.05, "first {first}, last {last}");
    let bpc = val[1]["val_bpc"].as_f64().unwrap();
    assert!((bpc - last / std::f64::consts::LN_2).abs() < 1e-12);
    let train_rows = rows(&dir.join("run"), "train");
    assert!(train_rows
        .iter()
        .all(|r| r["tokens_per_second"].as_f64() > Some(0.0)));
    assert!(dir.join("run/loss.png").is_file());
    // Greedy generation continues the pattern.
    let (code, out, err) = netc(&[
        "generate",
        &s(&dir.join("tiny.net")),
        "--weights",
        &s(&dir.join("run/checkpoint.safetensors")),
        "--prompt",
        "3456",
        "--tokens",
        "20",
        "--temperature",
        "0",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "3456789abcdef\n0123456789\n");
    std::fs::remove_dir_all(&dir).ok();
}

/// The tensors of a checkpoint (parameters and optimizer state), bit for bit.
fn tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let ck = netc_runtime::io::Checkpoint::load(path).expect("checkpoint");
    ck.tensors
        .iter()
        .map(|(n, _, d)| (n.clone(), d.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn resume_is_bit_exact_on_the_cpu() {
    let dir = setup("resume", 40, &repeating());
    let (code, _, err) = train(&dir, "straight", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = train(&dir, "halves", &["--steps", "20"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = train(&dir, "halves", &["--steps", "40", "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("resumed from") && err.contains("at step 20"),
        "{err}"
    );
    let a = tensors(&dir.join("straight/checkpoint.safetensors"));
    let b = tensors(&dir.join("halves/checkpoint.safetensors"));
    assert!(a.len() > 10);
    assert_eq!(
        a, b,
        "weights and optimizer state after 20 + 20 steps differ from 40"
    );
    // Resuming on other text is refused.
    std::fs::write(dir.join("text.txt"), "fedcba9876543210\n".repeat(200)).unwrap();
    let (code, _, err) = train(&dir, "halves", &["--steps", "60", "--resume"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot resume on other text"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn generate_repeats_for_a_seed_and_names_a_missing_character() {
    let dir = setup("generate", 30, &repeating());
    let (code, _, err) = train(&dir, "run", &[]);
    assert_eq!(code, 0, "{err}");
    let model = s(&dir.join("tiny.net"));
    let weights = s(&dir.join("run/checkpoint.safetensors"));
    let gen = |seed: &str, prompt: &str| {
        netc(&[
            "generate",
            &model,
            "--weights",
            &weights,
            "--prompt",
            prompt,
            "--tokens",
            "60",
            "--temperature",
            "1.5",
            "--top-k",
            "8",
            "--seed",
            seed,
        ])
    };
    let (c1, a, e1) = gen("7", "012");
    let (c2, b, _) = gen("7", "012");
    let (_, c, _) = gen("8", "012");
    assert_eq!((c1, c2), (0, 0), "{e1}");
    assert_eq!(a, b, "the same seed draws the same text");
    assert_ne!(a, c, "another seed draws other text");
    assert!(
        a.starts_with("012") && a.chars().count() == 3 + 60 + 1,
        "{a:?}"
    );
    let (code, out, err) = gen("7", "01Z");
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("'Z' (U+005A) is not in the model's vocabulary of 17 characters"),
        "{err}"
    );
    // A checkpoint that is not a language model's has no vocabulary.
    let lenet = format!("{}/models/lenet.safetensors", env!("CARGO_MANIFEST_DIR"));
    let (code, _, err) = netc(&["generate", &model, "--weights", &lenet]);
    assert_eq!(code, 1);
    assert!(err.contains("records no vocabulary"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_text_is_a_clear_error() {
    for (name, text, want) in [
        (
            "utf8",
            b"abc\xff\xfedef".to_vec(),
            "not UTF-8 text (the first bad byte is at offset 3)",
        ),
        ("empty", vec![], "the text is empty"),
        (
            "short",
            b"0123456789".to_vec(),
            "too short for windows of 16",
        ),
    ] {
        let dir = setup(name, 5, &text);
        let (code, _, err) = train(&dir, "run", &[]);
        assert_eq!(code, 1, "{name}: {err}");
        assert!(
            err.contains(want) && err.contains("text.txt"),
            "{name}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
    // More characters than the logits cover.
    let wide: String = (0..40u8).map(|i| char::from(b'0' + i)).collect();
    let dir = setup("wide", 5, wide.repeat(20).as_bytes());
    let (code, _, err) = train(&dir, "run", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("40 distinct characters but the network's logits cover 17"),
        "{err}"
    );
    // A folder with two text files does not say which.
    std::fs::write(dir.join("other.txt"), "x").unwrap();
    let (code, _, err) = train(&dir, "run", &["--data-dir", &s(&dir)]);
    assert_eq!(code, 1);
    assert!(err.contains("holds 2 text files"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_locates_a_network_that_is_not_a_language_model() {
    let dir = setup("shape", 5, &repeating());
    let bad = TINY
        .replace("STEPS", "5")
        .replace(
            "logits = matmul(ln_f, head)",
            "logits = ln_f -> flatten -> dense(17)",
        )
        .replace("  steps = 5\n", "  epochs = 2\n");
    std::fs::write(dir.join("bad.net"), bad).unwrap();
    let (code, _, err) = netc(&["check", &s(&dir.join("bad.net"))]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the logits `logits` are 17; they must be 16xV"),
        "{err}"
    );
    assert!(err.contains("bad.net:9:"), "located at the logits: {err}");
    assert!(
        err.contains("training setting `epochs` is not for task = language_model"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_counts_both_gpts_as_pytorch_does() {
    // benches/gpt_twin.py --count-only (and --small): the twins' sum of parameter sizes, the
    // tied head counted once.
    for (file, params) in [
        ("models/gpt_char.net", "812,288"),
        ("models/gpt_small.net", "10,778,112"),
    ] {
        let (code, out, err) = netc(&["check", file]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(&format!("parameters:        {params} (trainable {params})")),
            "{file}: {out}"
        );
    }
}
