//! `netc import` of Caffe's deploy prototxts (tests/caffe/): the published parameter counts
//! (AlexNet 60,965,224; LeNet 431,080), Caffe's LRN and xavier conventions converted, Caffe's
//! pooling rounding as `ceil=true` (a ResNet-50 stem against Caffe's logits), and every problem
//! of a prototxt netc cannot express reported at once with its line.

use crate::run::netc;
use std::path::Path;

/// Imports `fixture` into a temporary folder: (the .net text, its parameter count).
fn import(fixture: &str) -> (String, u64) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("m.net");
    let (code, _, err) = netc(&["import", fixture, "-o", out.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).expect("written");
    let model = netc_compiler::compile("m.net", &text).expect("the imported file compiles");
    (text, model.networks[0].totals().params)
}

#[test]
fn alexnet_imports_with_its_published_parameter_count() {
    let (text, params) = import("tests/caffe/bvlc_alexnet_deploy.prototxt");
    assert_eq!(params, 60_965_224, "{text}");
    // Caffe's alpha 1e-4 is over local_size 5; its k defaults to 1.
    assert!(
        text.contains("lrn(size=5, alpha=2e-5, beta=0.75, k=1)"),
        "{text}"
    );
    assert!(
        text.contains("conv2 = conv(256, k=5, pad=2, groups=2,"),
        "{text}"
    );
    // In-place ReLU and Dropout chain onto their layer, with Caffe's names in the comment.
    assert!(
        text.contains("-> relu -> dropout(0.5)    # fc6, relu6, drop6"),
        "{text}"
    );
    assert!(text.contains("output prob"), "{text}");
}

#[test]
fn lenet_imports_with_caffes_xavier() {
    let (text, params) = import("tests/caffe/lenet.prototxt");
    assert_eq!(params, 431_080, "{text}");
    // Caffe's xavier: uniform(+-sqrt(3 / fan_in)); conv2's fan_in is 20 * 5 * 5.
    let a = (3.0f64 / 500.0).sqrt();
    assert!(
        text.contains(&format!("init=uniform({}, {a})", -a)),
        "{text}"
    );
    assert!(text.contains("ip1 = flatten -> dense(500,"), "{text}");
}

#[test]
fn what_netc_cannot_express_is_reported_at_once_with_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/caffe/lenet.prototxt");
    let text = std::fs::read_to_string(src).expect("fixture");
    // Pooling 24 -> 1x1 stride 3 without padding: Caffe keeps a 9th window starting at 24,
    // past the input, which neither of netc's roundings gives (8); a layer type without an op;
    // a blob nobody wrote.
    let bad = text
        .replacen("kernel_size: 2\n    stride: 2", "kernel_size: 1\n    stride: 3", 1)
        .replacen("type: \"Softmax\"", "type: \"Power\"", 1)
        + "layer {\n  name: \"lost\"\n  type: \"ReLU\"\n  bottom: \"nowhere\"\n  top: \"lost\"\n}\n";
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
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).map(|i| i + 1);
    let pool = line_of("name: \"pool1\"").expect("pool1") - 1;
    assert!(
        err.contains(&format!(
            "bad.prototxt:{pool}: layer `pool1`: Caffe sizes this pooling's output 9x9, which neither of netc's roundings gives"
        )),
        "{err}"
    );
    assert!(err.contains("layer `prob` (Power): no netc op"), "{err}");
    assert!(
        err.contains("layer `lost` reads a blob no layer before it writes (nowhere)"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_resnet50_stem_imports_with_caffes_ceil_rounding() {
    // conv1 7x7/2 pad 3: 224 -> 112; pool1 MAX 3/2: Caffe 56 (netc's floor 55); pool2 AVE 3/2:
    // Caffe 28 (floor 27), its last windows dividing by the 6 taps inside the input.
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("stem.net");
    let out_s = out.to_str().expect("utf-8");
    let (code, _, err) = netc(&[
        "import",
        "tests/caffe/stem.prototxt",
        "--weights",
        "tests/caffe/stem.caffemodel",
        "-o",
        out_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("maxpool(k=3, s=2, ceil=true)"), "{text}");
    assert!(text.contains("avgpool(k=3, s=2, ceil=true)"), "{text}");
    let (code, said, err) = netc(&["check", out_s]);
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| {
        said.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {said}"))
            .to_string()
    };
    assert!(row("conv1").contains("2x112x112"), "{said}");
    assert!(row("pool1").contains("2x56x56"), "{said}");
    assert!(row("pool2").contains("2x28x28"), "{said}");
    let model = netc_compiler::compile("stem.net", &text).expect("compiles");
    let ck = netc_runtime::io::Checkpoint::load(&out.with_extension("safetensors")).expect("ck");
    // The input make_caffemodel.py fed Caffe's forward pass.
    let x: Vec<f32> = (0..3 * 224 * 224u64)
        .map(|i| ((i * i * 7 + i * 3 + 88) % 61) as f32 / 64.0 - 0.5)
        .collect();
    let want = &super::caffe_train::fixture_rows("tests/caffe/stem_expected.txt")[0];
    super::caffe_train::logits_match(&model.networks[0], &ck, &x, want);
}
