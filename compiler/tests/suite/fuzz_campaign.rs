//! Fuzz campaigns of the compiler's front doors (issue 31): the DSL, the YAML form and the
//! training section, each as `netc check` takes it (parse, build, the training section read
//! and, where it reads, the training-memory plan). No case may panic or take over 5 s; each
//! campaign prints how many cases ran and its slowest. A short run here; a campaign:
//! `NETC_FUZZ_CASES=5000 cargo test -p netc-compiler --test suite fuzz_campaign:: -- --nocapture`.

use netc_compiler::ir::Model;
use netc_compiler::schedule::MAX_BATCH;
use netc_compiler::train_config::{read, Task};
use proptest::prelude::*;

#[path = "../support/campaign.rs"]
mod campaign;
use campaign::campaign;

/// What `netc check` does with a file's text: build it (or render its errors), read its
/// training section, and plan a classifier's training memory at its batch.
fn check_text(file: &str, text: &str) {
    let model = match netc_compiler::compile(file, text) {
        Ok(m) => m,
        Err(d) => {
            let _ = d.render();
            return;
        }
    };
    let _ = netc_compiler::report::check_text(&model);
    plan(&model);
}

fn plan(model: &Model) {
    let Ok(Some(cfg)) = read(model) else { return };
    if let Task::Classifier { network } = &cfg.task {
        if let Some(net) = model.network(network) {
            if cfg.batch <= MAX_BATCH {
                let _ = netc_compiler::report::training_memory(net, cfg.optimizer.kind, cfg.batch);
            }
        }
    }
}

/// `base` with one byte set, a span cut out and a piece inserted, as the case says.
fn mutate(base: &str, at: usize, value: u8, cut: usize, piece: &str) -> String {
    let mut b = base.as_bytes().to_vec();
    let i = at % b.len().max(1);
    if i < b.len() {
        b[i] = value;
    }
    let j = (i + cut % 12).min(b.len());
    b.splice(i..j, piece.bytes());
    String::from_utf8_lossy(&b).into_owned()
}

const DSL_PIECES: &[&str] = &[
    "net",
    "block",
    "repeat 3",
    "input x: ",
    "output",
    "{",
    "}",
    "(",
    ")",
    "=",
    "->",
    ":",
    ",",
    "3x32x32",
    "784",
    "0",
    "-1",
    "1e-4",
    "99999999999",
    "conv(8, k=3)",
    "dense(16)",
    "relu",
    "s=0",
    "pad=same",
    "add(a, b)",
    "a",
    "b",
    "\n",
    " ",
    "#c\n",
    "\"s\"",
    "[1,2]",
    "groups=2",
    "flatten",
    "maxpool(k=99)",
    "dropout(0.5)",
    "batchnorm",
    "concat(a, b)",
];

const SETTINGS: &[&str] = &[
    "task = classifier",
    "task = gan",
    "network = mlp",
    "network = nope",
    "optimizer = adam(lr=1e-3)",
    "optimizer = sgd(lr=0.1, momentum=0.9)",
    "optimizer = adam(beta1=1.5)",
    "optimizer = {mlp: sgd(lr=1)}",
    "schedule = step(every=2)",
    "schedule = plateau(patience=0)",
    "schedule = inv(gamma=1e-4, power=0.75)",
    "batch = 1",
    "batch = 100",
    "batch = 2147483648",
    "batch = 0",
    "batch = -3",
    "epochs = 2",
    "steps = 7",
    "eval_every = 1",
    "log_every = 1e999",
    "checkpoint_every = 0",
    "data = mnist",
    "data = images",
    "data = synthetic",
    "data = nope",
    "data_dir = \"x\"",
    "range = [0, 1]",
    "range = [-1e308, 1e308]",
    "range = [1, 0]",
    "seed = 18446744073709551615",
    "resize = 1",
    "resize = 256",
    "crop = 28",
    "crop = 0",
    "flip = true",
    "mean = [0.5]",
    "mean = [0.1, 0.2]",
    "std = [1e-45]",
    "std = [0]",
    "color_jitter = 0.1",
    "eval_crops = 10",
    "bad_images = skip",
    "val_fraction = 2",
    "val_fraction = 0.1",
    "convert_channels = true",
    "verify_images = true",
    "noise = normal(0, 1e999)",
    "k = 1",
    "generator_loss = minimax",
    "sample_every = 5",
    "loss = mse",
    "batch = 2",
    "x",
    "= =",
];

const MLP_NET: &str = "net mlp {\n  input image: 784\n  hidden = dense(16) -> relu\n  logits = dense(10)\n  output logits\n}\n";

#[test]
fn dsl_campaign() {
    let models = [
        include_str!("../../../models/alexnet.net"),
        include_str!("../../../models/lenet.net"),
        include_str!("../../../models/dcgan.net"),
        include_str!("../../../models/resnet_block.net"),
        include_str!("../../../models/mlp.net"),
    ];
    let soup = proptest::collection::vec(0..DSL_PIECES.len(), 0..60);
    let strategy = (
        0..3u8,
        proptest::collection::vec(any::<u8>(), 0..200),
        soup,
        0..models.len(),
        any::<usize>(),
        any::<u8>(),
        any::<usize>(),
        0..DSL_PIECES.len(),
    );
    campaign(
        "dsl",
        strategy,
        |(kind, bytes, soup, m, at, value, cut, piece)| {
            let text = match kind {
                0 => String::from_utf8_lossy(&bytes).into_owned(),
                1 => soup
                    .iter()
                    .map(|&i| DSL_PIECES[i])
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => mutate(models[m], at, value, cut, DSL_PIECES[piece]),
            };
            check_text("fuzz.net", &text);
        },
    );
}

#[test]
fn yaml_campaign() {
    let base = include_str!("../../../models/gan.yaml");
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        ": ",
        "- ",
        "\n",
        "  ",
        "units: 99999999999",
        "op: conv",
        "k: 0",
        "name: a",
        "inputs: {x: 3x8x8}",
        "'",
        "\"",
        "&a",
        "*a",
        "!!str",
        "train:",
        "layers:",
    ];
    let strategy = (
        any::<bool>(),
        "[a-z:{}\\[\\], \\n0-9x-]{0,200}",
        any::<usize>(),
        any::<u8>(),
        any::<usize>(),
        0..pieces.len(),
    );
    campaign(
        "yaml",
        strategy,
        |(arbitrary, text, at, value, cut, piece)| {
            let text = if arbitrary {
                text
            } else {
                mutate(base, at, value, cut, pieces[piece])
            };
            check_text("fuzz.yaml", &text);
        },
    );
}

#[test]
fn training_section_campaign() {
    let strategy = proptest::collection::vec(0..SETTINGS.len(), 0..14);
    campaign("training section", strategy, |picks| {
        let body: Vec<&str> = picks.iter().map(|&i| SETTINGS[i]).collect();
        let text = format!("{MLP_NET}train {{\n  {}\n}}\n", body.join("\n  "));
        check_text("fuzz.net", &text);
    });
}
