//! Tensor primitives and the standard library through the real binary: `netc stdlib`, `check`
//! of the ViT (its count and its blocks' parameters), a model written from library blocks
//! training on the CPU executor and on the GPU path.

use crate::run;
use run::netc;

#[test]
fn stdlib_prints_the_library_and_one_block_and_suggests_a_name() {
    let (code, all, _) = netc(&["stdlib"]);
    assert_eq!(code, 0);
    assert!(
        all.contains("block transformer(") && all.contains("block layernorm("),
        "{all}"
    );
    let (code, one, _) = netc(&["stdlib", "gelu"]);
    assert_eq!(code, 0);
    assert!(
        one.starts_with("# GELU") && one.contains("block gelu {"),
        "{one}"
    );
    assert!(!one.contains("block silu"), "{one}");
    let (code, _, err) = netc(&["stdlib", "layernrom"]);
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `layernorm`?"), "{err}");
}

#[test]
fn check_of_the_vit_counts_pytorchs_parameters_and_shows_each_block() {
    let (code, out, err) = netc(&["check", "models/vit.net"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("parameters:        139,018"), "{out}");
    assert!(
        out.contains("b1 33,472, b2 33,472, b3 33,472, b4 33,472"),
        "{out}"
    );
    assert!(
        out.contains("b1/attn/qkv") && out.contains("17x192"),
        "{out}"
    );
}

fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = "net tiny {\n  input x: 784\n  h = dense(32) -> layernorm(32) -> gelu\n  t = reshape(4x8) -> attention(8, 2)\n  logits = flatten -> dense(10)\n}\n\
               train {\n  task = classifier\n  network = tiny\n  loss = softmax_cross_entropy\n  optimizer = adam(lr=1e-3)\n  batch = 50\n  steps = 40\n  log_every = 10\n  data = mnist\n  seed = 3\n}\n";
    std::fs::write(dir.path().join("tiny.net"), src).expect("model written");
    dir
}

#[test]
fn a_model_from_library_blocks_trains_on_the_cpu() {
    trains_on("cpu");
}

/// The same model on the GPU path (its primitives as generated kernels), where there is an
/// adapter (NETC_REQUIRE_GPU=1 makes its absence a failure).
#[test]
fn a_model_from_library_blocks_trains_on_the_gpu() {
    if netc_runtime::gpu::test_gpu().is_some() {
        trains_on("vulkan");
    }
}

/// `netc train` of the tiny model on `device`: it writes a checkpoint and its loss falls.
fn trains_on(device: &str) {
    let dir = model_dir();
    let model = dir.path().join("tiny.net");
    let out = dir.path().join("run");
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-sample");
    let args = [
        "train",
        model.to_str().expect("utf-8"),
        "--device",
        device,
        "--data-dir",
        data,
        "--out",
        out.to_str().expect("utf-8"),
        "--quiet",
    ];
    let (code, stdout, err) = netc(&args);
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(out.join("checkpoint.safetensors").is_file());
    // The first and last logged losses: it learns.
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let losses: Vec<f64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["train_loss"].as_f64().or(v["loss"].as_f64()))
        .collect();
    assert!(losses.len() >= 2, "{metrics}");
    assert!(losses[losses.len() - 1] < 0.8 * losses[0], "{losses:?}");
}

#[test]
fn ir_fused_prints_a_layernorm_as_three_kernels() {
    let dir = std::env::temp_dir().join(format!("netc-fused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("ln.net");
    std::fs::write(
        &file,
        "net t { input x: 5x8\n h = layernorm(8)\n o = flatten -> dense(3) }",
    )
    .expect("write");
    let (code, out, err) = netc(&["ir", "--fused", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    // Nine primitives: the mean, the variance (x - mean recomputed) and the output.
    assert!(
        out.contains("network t: 1 regions; forward 3 kernels fused (9 unfused)"),
        "{out}"
    );
    assert!(out.contains("= sub square mean[2] keep ("), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
