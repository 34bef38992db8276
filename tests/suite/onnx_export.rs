//! ONNX export checked by an independent runtime: every shipped model's networks (random
//! weights, with batchnorm statistics and biases that are not their initial values), the
//! trained LeNet, and small networks for each mapping trap are exported by `netc export`,
//! checked by onnx's checker (with strict shape inference against the value_info netc wrote)
//! and run by onnxruntime (tests/onnx/run_onnx.py); the outputs must match netc's CPU
//! executor within 1e-5 of the output's scale (max |onnx - netc| <= 1e-5 * max(1, max |netc|)).
//!
//! onnxruntime and onnx come from PyPI into `.venv-onnx` at the checkout's root (.ci/run
//! makes it; `NETC_ONNX_PYTHON` names another interpreter). Without it these tests say so and
//! pass, unless `NETC_REQUIRE_ONNX=1` (set by .ci/run), where they fail.

use crate::run::netc;
use ndarray::Array2;
use netc_compiler::ir::{Model, Network};
use netc_runtime::cpu::{self, Params};
use netc_runtime::export::onnx::Batch;
use netc_runtime::io::{read_npy_f32, run_checkpoint::checkpoint_names, write_npy_f32, Checkpoint};
use netc_runtime::rng::Rng;
use std::path::{Path, PathBuf};

/// The interpreter with onnx and onnxruntime, if there is one.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = std::env::var_os("NETC_ONNX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-onnx/bin/python"));
    let ok = std::process::Command::new(&py)
        .args(["-c", "import onnx, onnxruntime"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let msg = format!(
        "no Python with onnx and onnxruntime at {} (bash .ci/run makes it; or python3 -m venv .venv-onnx && .venv-onnx/bin/pip install -r tests/onnx/requirements.txt)",
        py.display()
    );
    if std::env::var("NETC_REQUIRE_ONNX").is_ok_and(|v| v == "1") {
        panic!("{msg}");
    }
    eprintln!("skipped: {msg}");
    None
}

/// One network to export and compare.
struct Case {
    file: PathBuf,
    network: String,
    batch: usize,
    /// `--batch` given to export (None: dynamic).
    fixed: bool,
    /// Inputs drawn as integer ids below this bound (a `gather`'s ids, a `one_hot`'s targets).
    ids_below: Vec<(&'static str, u64)>,
    /// The checkpoint names the weights `network.name` (a GAN's, holding both networks).
    prefixed: bool,
}

fn compile(path: &Path) -> Model {
    let src = std::fs::read_to_string(path).expect("reads the model");
    netc_compiler::compile(&path.to_string_lossy(), &src)
        .unwrap_or_else(|e| panic!("{} does not compile: {:?}", path.display(), e.items.len()))
}

/// Weights drawn from the network's initialisers, then biases, batchnorm scales and running
/// statistics moved off their initial values (zeros and ones would hide a swapped tensor).
fn random_params(net: &Network, seed: u64) -> Params<f32> {
    let mut rng = Rng::new(seed);
    let mut p: Params<f32> = Params::init(net, &mut rng);
    for (name, v) in p.names.iter().zip(p.values.iter_mut()) {
        let (lo, hi) = match () {
            _ if name.ends_with(".running_var") => (0.5, 2.0),
            _ if name.ends_with(".bias") || name.ends_with(".running_mean") => (-0.5, 0.5),
            _ if name.ends_with(".weight") && v.len() < 4096 && is_norm(net, name) => (0.5, 1.5),
            _ => continue,
        };
        for x in v.iter_mut() {
            *x = rng.uniform(lo, hi) as f32;
        }
    }
    p
}

/// Whether weight `name` is a batchnorm's scale.
fn is_norm(net: &Network, name: &str) -> bool {
    let layer = name.trim_end_matches(".weight");
    net.find(layer)
        .is_some_and(|n| matches!(net.node(n).op, netc_compiler::ops::Op::BatchNorm { .. }))
}

fn save(p: &Params<f32>, path: &Path, prefix: Option<&str>) {
    let ck = Checkpoint {
        tensors: checkpoint_names(p)
            .into_iter()
            .map(|n| prefix.map_or(n.clone(), |net| format!("{net}.{n}")))
            .zip(&p.shapes)
            .zip(&p.values)
            .map(|((n, s), v)| (n, s.clone(), v.clone()))
            .collect(),
        metadata: Default::default(),
    };
    ck.save(path).expect("writes the checkpoint");
}

/// Exports each case (with `weights`, or random weights saved beside it), runs them all in
/// onnxruntime at once and compares with the CPU executor; every mismatch is reported.
fn check(cases: &[Case], weights: Option<&Path>) {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut manifest = vec![];
    let mut expected = vec![];
    for (i, c) in cases.iter().enumerate() {
        let model = compile(&c.file);
        let net = model.network(&c.network).expect("network exists");
        let p = match weights {
            Some(w) => {
                let ck = Checkpoint::load(w).expect("loads the weights");
                let like = Params::init(net, &mut Rng::new(0));
                netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0)
                    .expect("weights fit")
                    .0
            }
            None => random_params(net, 7 + i as u64),
        };
        let ck = dir.path().join(format!("{i}.safetensors"));
        save(&p, &ck, c.prefixed.then_some(c.network.as_str()));
        let onnx = dir.path().join(format!("{i}.onnx"));
        let batch = c.batch.to_string();
        let mut args = vec![
            "export",
            c.file.to_str().expect("utf-8"),
            "--weights",
            ck.to_str().expect("utf-8"),
            "-o",
            onnx.to_str().expect("utf-8"),
            "--network",
            &c.network,
        ];
        if c.fixed {
            args.extend(["--batch", &batch]);
        }
        let (code, _, err) = netc(&args);
        assert_eq!(
            code,
            0,
            "export of {} `{}`: {err}",
            c.file.display(),
            c.network
        );
        let mut rng = Rng::new(100 + i as u64);
        let mut inputs = serde_json::Map::new();
        let mut xs = vec![];
        for &n in &net.inputs {
            let node = net.node(n);
            let numel: u64 = node.shape.iter().product();
            let vals: Vec<f32> = (0..c.batch as u64 * numel)
                .map(
                    |_| match c.ids_below.iter().find(|(name, _)| *name == node.name) {
                        Some((_, k)) => rng.uniform(0.0, *k as f64).floor() as f32,
                        None => rng.uniform(-1.0, 1.0) as f32,
                    },
                )
                .collect();
            let mut shape = vec![c.batch];
            shape.extend(node.shape.iter().map(|&d| d as usize));
            let path = dir.path().join(format!("{i}-in-{}.npy", node.name));
            write_npy_f32(&path, &shape, &vals).expect("writes the input");
            inputs.insert(node.name.clone(), path.to_string_lossy().into());
            xs.push(Array2::from_shape_vec((c.batch, numel as usize), vals).expect("shape"));
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        let acts = cpu::forward_inputs(net, &p, &views, false, 0, 0).expect("CPU forward");
        let mut outputs = serde_json::Map::new();
        for (alias, n) in &net.outputs {
            let path = dir.path().join(format!("{i}-out-{alias}.npy"));
            outputs.insert(alias.clone(), path.to_string_lossy().into());
            let want: Vec<f32> = acts.get(*n).iter().copied().collect();
            expected.push((
                format!("{} `{}` output `{alias}`", c.file.display(), c.network),
                path,
                want,
            ));
        }
        // The initializers must carry the names a one-network checkpoint gives the weights.
        let weights: serde_json::Map<String, serde_json::Value> = checkpoint_names(&p)
            .into_iter()
            .zip(&p.shapes)
            .map(|(n, s)| (n, serde_json::json!(s)))
            .collect();
        manifest.push(serde_json::json!({
            "model": onnx.to_string_lossy(), "inputs": inputs, "outputs": outputs,
            "weights": weights,
        }));
    }
    let list = dir.path().join("manifest.json");
    std::fs::write(&list, serde_json::to_string(&manifest).expect("json")).expect("writes");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/run_onnx.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(&list)
        .output()
        .expect("runs python");
    assert!(
        out.status.success(),
        "onnx checker / onnxruntime failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut bad = vec![];
    for (what, path, want) in expected {
        let (_, got) = read_npy_f32(&path).expect("reads onnxruntime's output");
        assert_eq!(got.len(), want.len(), "{what}: sizes differ");
        let scale = want.iter().fold(1.0f64, |m, &v| m.max((v as f64).abs()));
        let diff = got
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
        if diff.is_nan() || diff > 1e-5 * scale {
            bad.push(format!(
                "{what}: max |onnx - netc| = {diff:e} (scale {scale:e})"
            ));
        }
    }
    assert!(bad.is_empty(), "outputs differ:\n{}", bad.join("\n"));
}

fn case(file: &str, network: &str, batch: usize) -> Case {
    Case {
        file: Path::new(env!("CARGO_MANIFEST_DIR")).join(file),
        network: network.into(),
        batch,
        fixed: false,
        ids_below: vec![],
        prefixed: false,
    }
}

#[test]
fn every_other_shipped_network_matches_onnxruntime() {
    let mut cases = vec![
        case("models/mlp.net", "mlp", 3),
        case("models/lenet.net", "lenet", 2),
        case("models/resnet_block.net", "resnet_small", 2),
        case("models/vit.net", "vit", 2),
        case("models/dcgan.net", "generator", 2),
        case("models/dcgan.net", "discriminator", 2),
        case("models/gan.yaml", "generator", 2),
        case("models/gan.yaml", "discriminator", 2),
        case("models/vae.net", "vae", 2),
        case("models/resnet20_fashion.net", "resnet20", 2),
        case("models/ddpm.net", "unet", 2),
        Case {
            ids_below: vec![("tokens", 84)],
            ..case("models/gpt_char.net", "gpt", 2)
        },
    ];
    // A fixed batch too, and a GAN's checkpoint (`generator.up1.weight`).
    cases[1].fixed = true;
    cases[4].prefixed = true;
    cases[5].prefixed = true;
    check(&cases, None);
}

/// AlexNet and VGG11 (61 M and 133 M parameters: most of these tests' time, in a test of its
/// own so that it runs beside the others), at batch 1.
#[test]
fn the_largest_shipped_networks_match_onnxruntime() {
    check(
        &[
            case("models/alexnet.net", "alexnet", 1),
            case("models/vgg11.net", "vgg11", 1),
        ],
        None,
    );
}

/// The CIFAR ResNet-18 and the GPU recipe's GPT (11 M parameters each), at batch 1.
#[test]
fn the_resnet18_and_the_small_gpt_match_onnxruntime() {
    check(
        &[
            case("models/resnet18_cifar.net", "resnet18", 1),
            Case {
                ids_below: vec![("tokens", 84)],
                ..case("models/gpt_small.net", "gpt", 1)
            },
        ],
        None,
    );
}

#[test]
fn unsupported_layers_are_listed_at_once() {
    use netc_runtime::export::onnx::ExportError;
    let e = ExportError::Unsupported {
        net: "n".into(),
        layers: vec![
            ("a".into(), "fft".into(), "no such op".into()),
            ("b".into(), "sort".into(), "not in opset 17".into()),
        ],
    };
    let m = e.to_string();
    assert!(m.contains("network `n` has 2 layer(s)"), "{m}");
    assert!(
        m.contains("`a` (fft: no such op); `b` (sort: not in opset 17)"),
        "{m}"
    );
}

#[test]
fn an_average_pooling_ceil_would_write_wrong_is_refused() {
    // 3x3 with k=2, s=2, pad=1: ceil's third window starts at 4 = F + p and is dropped;
    // opset 17 keeps it, and extended pads would count in the divisor.
    let src = "net t { input x: 2x3x3\n a = avgpool(k=2, s=2, pad=1, ceil=true)\n b = x -> avgpool(k=3, s=2, pad=1, ceil=true)\n c = concat(a, b) }";
    let m = netc_compiler::compile("t.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let e = netc_runtime::export::onnx::export(net, &random_params(net, 1), Batch::Dynamic)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("has 1 layer(s)"), "{e}");
    assert!(
        e.contains("`a` (avgpool: ceil rounding drops a last window"),
        "{e}"
    );
}

#[test]
fn the_trained_lenet_matches_onnxruntime() {
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lenet.safetensors");
    check(&[case("models/lenet.net", "lenet", 4)], Some(&w));
}

/// Small networks for each mapping trap, written into a temporary folder.
fn trap(dir: &Path, name: &str, text: &str) -> Case {
    let file = dir.join(format!("{name}.net"));
    std::fs::write(&file, text).expect("writes the model");
    Case {
        file,
        network: name.into(),
        batch: 2,
        fixed: false,
        ids_below: vec![],
        prefixed: false,
    }
}

#[test]
fn mapping_traps_match_onnxruntime() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let mut prims = trap(d, "prims", PRIMS);
    prims.ids_below = vec![("ids", 12), ("y", 6)];
    let cases = vec![
        trap(d, "lrn", LRN),
        trap(d, "padding", PADDING),
        trap(d, "ceil", CEIL),
        trap(d, "transposed", TRANSPOSED),
        trap(d, "layers", LAYERS),
        trap(d, "sincos", SINCOS),
        prims,
    ];
    check(&cases, None);
}

/// Even and odd LRN sizes, with an alpha large enough that the window matters.
const LRN: &str = "net lrn {
  input x: 7x3x3
  a = lrn(size=4, alpha=0.5, beta=0.75, k=2)
  b = lrn(size=3, alpha=0.3, beta=0.6, k=1)
  c = lrn(size=2, alpha=1.0, beta=0.75, k=1)
  output c
}
";

/// SAME padding with an odd total (the odd pixel after), average pooling over padding, softmax
/// over an image.
const PADDING: &str = "net padding {
  input x: 3x7x7
  a = conv(4, k=4, pad=same)                 : 4x7x7
  b = conv(4, k=3, s=2, pad=same, dilation=2) : 4x4x4
  c = avgpool(k=3, s=2, pad=same)             : 4x2x2
  d = b -> maxpool(k=2, s=2, pad=same)        : 4x2x2
  e = b -> avgpool(k=3, s=1, pad=1)           : 4x4x4
  f = e -> avgpool(k=2, s=1, pad=same)        : 4x4x4
  g = d -> softmax                            : 4x2x2
  output c
  output g
  output f
}
";

/// Pooling with Caffe's rounding (`ceil_mode = 1`): windows overhanging the padding after the
/// input (average pooling divides by the taps inside the input or its padding), without
/// padding; and windows ceil rounding would start past the input (c, columns) or in the padding
/// after it (e), which netc drops and opset 17's ceil_mode keeps, written as extended pads.
const CEIL: &str = "net ceil {
  input x: 3x10x12
  a = maxpool(k=3, s=2, ceil=true)                  : 3x5x6
  b = avgpool(k=3, s=2, pad=1, ceil=true)           : 3x3x4
  c = x -> avgpool(k=2, s=3, ceil=true)             : 3x4x4
  d = maxpool(k=3, s=2, pad=1, ceil=true)           : 3x3x3
  e = maxpool(k=2, s=2, pad=1, ceil=true)           : 3x2x2
  output b
  output c
  output e
}
";

/// Transposed convolutions: output_padding, SAME, groups and dilation.
const TRANSPOSED: &str = "net transposed {
  input x: 4x5x5
  a = conv_transpose(6, k=3, s=2, pad=1, output_padding=1)   : 6x10x10
  b = conv_transpose(4, k=4, s=2, pad=same, groups=2)        : 4x20x20
  c = conv_transpose(2, k=3, s=1, pad=0, dilation=2, bias=false)
  output c
}
";

/// Batchnorm on images and vectors, dropout, leaky_relu, softmax, concat, a three-way add,
/// reshape and sigmoid.
const LAYERS: &str = "net layers {
  input x: 3x6x6
  a = conv(4, k=3, pad=1) -> batchnorm -> leaky_relu(0.1)
  b = conv(4, k=1) -> batchnorm(eps=1e-3) -> tanh
  s = add(a, b, a)
  j = concat(s, b, axis=0) -> flatten -> dropout(0.5) -> dense(12) -> batchnorm -> sigmoid
  r = j -> reshape(3x4) -> flatten -> dense(5, bias=false) -> softmax
  output r
}
";

/// The primitives the shipped models do not use: gather (an embedding), a causal
/// transformer, comparisons and where (clamped_log), one_hot (cross_entropy), softplus, a dense
/// layer without bias over a sequence.
const PRIMS: &str = "net prims {
  input ids: 6
  input x: 6x8
  input y: 1
  e = ids -> embedding(12, 8)
  h = add(e, x) -> transformer(8, 2, 16, causal=true)
  p = h -> sigmoid -> clamped_log -> softplus
  logits = p -> mean(axis=-1) -> dense(6)
  loss = cross_entropy(logits, y)
  q = h -> dense(3, bias=false) -> max(axis=0)
  output logits
  output loss
  output q
}
";

/// sin and cos (ONNX's Sin and Cos), and the library's timestep embedding: `arange` (an
/// initializer), its frequencies, and the concat of sines and cosines.
const SINCOS: &str = "net sincos {
  input t: 1
  input x: 5
  e = t -> scale(40) -> timestep_embedding(8)   : 8
  s = x -> scale(3) -> sin
  c = x -> cos
  o = concat(e, s, c, axis=0) -> dense(4)
  output o
}
";

#[test]
fn export_names_the_networks_to_choose_from_and_refuses_a_bad_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let ck = dir.path().join("w.safetensors");
    let ck = ck.to_str().expect("utf-8");
    let model = compile(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/dcgan.net")
            .as_path(),
    );
    let g = model.network("generator").expect("generator");
    save(&random_params(g, 1), Path::new(ck), None);
    let (code, _, err) = netc(&["export", "models/dcgan.net", "--weights", ck]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("generator, discriminator") && err.contains("--network"),
        "{err}"
    );
    let (code, _, err) = netc(&[
        "export",
        "models/dcgan.net",
        "--weights",
        ck,
        "--network",
        "critic",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no network `critic`"), "{err}");
    // The generator's weights do not fit the discriminator: every misfit is named.
    let (code, _, err) = netc(&[
        "export",
        "models/dcgan.net",
        "--weights",
        ck,
        "--network",
        "discriminator",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("c1.weight"), "{err}");
    for bad in ["0", "static", "-3"] {
        let (code, _, err) = netc(&[
            "export",
            "models/dcgan.net",
            "--weights",
            ck,
            "--batch",
            bad,
        ]);
        assert_eq!(code, 2, "--batch {bad}: {err}");
    }
    // Without -o the file goes beside the weights, named after the network.
    let (code, out, err) = netc(&[
        "export",
        "models/dcgan.net",
        "--weights",
        ck,
        "--network",
        "generator",
        "--batch",
        "4",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("generator.onnx").is_file(), "{out}");
}
