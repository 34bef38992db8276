//! Every model in models/: IR printout snapshots and the figures the literature gives.

use netc_compiler::{compile, ir::Model};

fn load(path: &str) -> Model {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&full).expect("model file exists");
    match compile(path, &src) {
        Ok(m) => m,
        Err(d) => panic!("{path} failed to compile:\n{}", d.render()),
    }
}

fn layer<'a>(m: &'a Model, net: &str, name: &str) -> &'a netc_compiler::ir::Node {
    let n = m.network(net).expect("network exists");
    n.node(n.find(name).unwrap_or_else(|| panic!("no layer {name}")))
}

#[test]
fn ir_printouts_of_every_model() {
    let dir = format!("{}/models", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("models/ exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|f| [".net", ".yaml", ".yml"].iter().any(|e| f.ends_with(e)))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for f in files {
        let m = load(&format!("models/{f}"));
        insta::assert_snapshot!(format!("ir_{f}"), m.printout());
    }
}

#[test]
fn alexnet_matches_the_paper() {
    let m = load("models/alexnet.net");
    let expect: &[(&str, &[u64], u64)] = &[
        ("conv1", &[96, 55, 55], 34_944),
        ("pool1", &[96, 27, 27], 0),
        ("conv2", &[256, 27, 27], 307_456),
        ("pool2", &[256, 13, 13], 0),
        ("conv3", &[384, 13, 13], 885_120),
        ("conv4", &[384, 13, 13], 663_936),
        ("conv5", &[256, 13, 13], 442_624),
        ("pool5", &[256, 6, 6], 0),
        ("fc6", &[4096], 37_752_832),
        ("fc7", &[4096], 16_781_312),
        ("fc8", &[1000], 4_097_000),
    ];
    for (name, shape, params) in expect {
        let n = layer(&m, "alexnet", name);
        assert_eq!(n.shape, *shape, "{name}");
        assert_eq!(n.stats.params, *params, "{name}");
    }
    assert_eq!(layer(&m, "alexnet", "conv1").stats.connections, 105_705_600);
    let t = m.networks[0].totals();
    assert_eq!(t.params, 60_965_224);
    assert_eq!(t.trainable, 60_965_224);
    assert_eq!(t.neurons, 659_272);
}

#[test]
fn alexnet_without_groups() {
    let src = std::fs::read_to_string(format!("{}/models/alexnet.net", env!("CARGO_MANIFEST_DIR")))
        .expect("read");
    let one_gpu = src.replace(", groups=2", "");
    assert_ne!(one_gpu, src);
    let m = compile("alexnet1.net", &one_gpu).expect("compiles");
    assert_eq!(m.networks[0].totals().params, 62_378_344);
}

#[test]
fn mlp_and_gan_parameter_counts() {
    assert_eq!(load("models/mlp.net").networks[0].totals().params, 101_770);
    let gan = load("models/gan.yaml");
    assert_eq!(
        gan.network("generator").expect("G").totals().params,
        227_344
    );
    assert_eq!(
        gan.network("discriminator").expect("D").totals().params,
        201_217
    );
}

#[test]
fn vgg11_has_its_published_size() {
    // Simonyan & Zisserman, configuration A: 133 million parameters (132,863,336 exactly).
    assert_eq!(
        load("models/vgg11.net").networks[0].totals().params,
        132_863_336
    );
}

#[test]
fn dsl_and_yaml_lower_to_the_same_ir() {
    let yaml = r#"
networks:
  - name: mlp
    inputs: {image: 784}
    layers:
      - {name: hidden, chain: "dense(128, init=he) -> relu"}
      - {name: logits, op: dense, units: 10, init: he}
    outputs: {logits: logits}
"#;
    let from_yaml = compile("mlp.yaml", yaml).unwrap_or_else(|d| panic!("{}", d.render()));
    assert_eq!(from_yaml.printout(), load("models/mlp.net").printout());
}

#[test]
fn runaway_repeat_is_an_error_not_a_hang() {
    let t0 = std::time::Instant::now();
    for src in [
        "net a { input x: 4\n repeat 999999999999 { } }",
        "block b() { }\nnet a { input x: 4\n repeat 999999999 { b } }",
    ] {
        let d = compile("r.net", src).expect_err("too big");
        assert!(
            d.render().contains("expands to more than"),
            "{}",
            d.render()
        );
    }
    assert!(t0.elapsed().as_secs() < 60, "took {:?}", t0.elapsed());
}
