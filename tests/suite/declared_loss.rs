//! A model may declare its loss (issue 25, items 4 and 5): `task = minimise` trains the batch
//! mean of a node of one value per example built in the graph, with the network's inputs
//! bound to the data set's fields. A classifier written with the library's `cross_entropy`
//! trains exactly as the built-in classifier task; a model fed noise trains; every mistake in
//! the binding is a located error at `netc check`; a tied embedding is one parameter.

use std::collections::BTreeMap;
use std::path::Path;

use crate::located::check_fails_at;
use crate::run::netc;

use crate::digit_folder;

fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("netc-declared-loss-{name}-"))
        .tempdir()
        .expect("a temporary folder")
}

fn sample() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/mnist-sample")
        .display()
        .to_string()
}

/// The MLP of models/mlp.net with its training recipe; `body` adds to the network, `task` is
/// the section's task lines.
fn mlp(body: &str, task: &str) -> String {
    format!(
        "net mlp {{\n  input image: 784\n{body}  hidden = image -> dense(128, init=he) -> relu\n  logits = dense(10, init=he)\n  output logits\n}}\ntrain {{\n{task}\n  optimizer = adam(lr=5e-4)\n  batch = 128\n  epochs = 2\n  log_every = 10\n  data = mnist\n  data_dir = {:?}\n  seed = 3\n}}\n",
        sample()
    )
}

/// The rows of a run's metrics.jsonl.
fn rows(dir: &Path) -> Vec<BTreeMap<String, serde_json::Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

fn num(row: &BTreeMap<String, serde_json::Value>, key: &str) -> f64 {
    row.get(key)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("no {key} in {row:?}"))
}

/// Trains `src` (written into `dir`) on the CPU; the run folder.
fn train(dir: &Path, name: &str, src: &str, extra: &[&str]) -> std::path::PathBuf {
    let model = dir.join(format!("{name}.net"));
    std::fs::write(&model, src).expect("write");
    let out = dir.join(format!("run-{name}"));
    let mut args = vec![
        "train",
        model.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(extra);
    let (code, so, se) = netc(&args);
    assert_eq!(code, 0, "{so}\n{se}");
    out
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * a.abs().max(b.abs())
}

#[test]
fn a_declared_cross_entropy_trains_as_the_builtin_classifier() {
    let dir = tmp("same");
    let builtin = train(dir.path(), "builtin", &mlp("", "  task = classifier"), &[]);
    // The same network with a label input, the library's cross-entropy as its loss, and its
    // top-1 hits as a metric (1 where the label's logit is the largest).
    let declared = mlp(
        "  input label: 1\n",
        "  task = minimise\n  loss = loss\n  inputs = {image: images, label: labels}\n  metrics = [correct]",
    )
    .replace(
        "  output logits\n",
        "  loss = cross_entropy(logits, label)\n  top = logits -> max(axis=-1, keep=true)\n  hit = eq(logits, top)\n  hot = one_hot(label, logits)\n  correct = mul(hit, hot) -> sum_all\n  output loss\n  output correct\n",
    );
    let declared = train(dir.path(), "declared", &declared, &[]);
    let (a, b) = (rows(&builtin), rows(&declared));
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    assert!(a.len() >= 12, "{a:?}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(num(x, "step"), num(y, "step"));
        let (lx, ly) = (num(x, "train_loss"), num(y, "train_loss"));
        assert!(close(lx, ly, 1e-5), "step {}: {lx} vs {ly}", num(x, "step"));
        if x.contains_key("test_loss") {
            let (tx, ty) = (num(x, "test_loss"), num(y, "test_loss"));
            assert!(close(tx, ty, 1e-5), "test loss {tx} vs {ty}");
            assert_eq!(num(x, "test_acc"), num(y, "test_correct"));
        }
    }
    // The loss fell: the same training, not the same lack of it.
    assert!(num(&a[0], "train_loss") > 1.5 * num(a.last().expect("rows"), "train_loss"));
}

/// A small denoising-style model fed noise: the image plus scaled Gaussian noise through a
/// bottleneck, reconstructed, its squared error and a KL term minimised.
fn noisy_model(steps: u64) -> String {
    format!(
        "net ae {{\n  input image: 784\n  input eps: 16\n  h = image -> dense(64) -> tanh\n  mu = h -> dense(16)\n  logvar = h -> dense(16)\n  std = logvar -> scale(0.5) -> exp\n  jitter = mul(eps, std)\n  z = add(mu, jitter)\n  recon = z -> dense(784) -> sigmoid\n  rec = bce_sum(recon, image)\n  kl = gaussian_kl(mu, logvar)\n  loss = add(rec, kl)\n  output loss\n}}\ntrain {{\n  task = minimise\n  loss = loss\n  inputs = {{image: images, eps: noise}}\n  optimizer = adam(lr=1e-3)\n  batch = 64\n  steps = {steps}\n  log_every = 5\n  data = mnist\n  data_dir = {:?}\n}}\n",
        sample()
    )
}

#[test]
fn a_model_fed_noise_trains_reproducibly_and_resumes() {
    let dir = tmp("noise");
    let run = train(dir.path(), "ae", &noisy_model(40), &[]);
    let r = rows(&run);
    let losses: Vec<f64> = r.iter().map(|row| num(row, "train_loss")).collect();
    assert!(losses.len() >= 8, "{r:?}");
    assert!(
        losses[losses.len() - 1] < 0.8 * losses[0],
        "the loss did not fall: {losses:?}"
    );
    assert!(r.iter().any(|row| row.contains_key("test_loss")), "{r:?}");
    // The noise is drawn from the seed and the step: the same run twice is the same run.
    let again = train(dir.path(), "ae2", &noisy_model(40), &[]);
    let twice: Vec<f64> = rows(&again)
        .iter()
        .map(|row| num(row, "train_loss"))
        .collect();
    assert_eq!(losses, twice);
    // Resuming a run of 20 steps to 40 gives the uninterrupted run's losses.
    let half = train(dir.path(), "half", &noisy_model(20), &[]);
    let model = dir.path().join("half.net");
    std::fs::write(&model, noisy_model(40)).expect("write");
    let args = [
        "train",
        model.to_str().expect("utf-8"),
        "--device",
        "cpu",
        "--out",
        half.to_str().expect("utf-8"),
        "--resume",
    ];
    let (code, so, se) = netc(&args);
    assert_eq!(code, 0, "{so}\n{se}");
    let resumed: Vec<f64> = rows(&half)
        .iter()
        .map(|row| num(row, "train_loss"))
        .collect();
    assert_eq!(resumed, losses);
}

fn declared(inputs: &str, loss: &str) -> String {
    mlp(
        "  input label: 1\n",
        &format!("  task = minimise\n  loss = {loss}\n  inputs = {inputs}"),
    )
    .replace(
        "  output logits\n",
        "  ce = cross_entropy(logits, label)\n  output logits\n",
    )
}

#[test]
fn a_loss_of_more_than_one_value_per_example_is_located() {
    check_fails_at(
        &declared("{image: images, label: labels}", "logits"),
        "`logits` gives 10 values per example; it must give one value per example",
        "loss = logits",
    );
    check_fails_at(
        &declared("{image: images, label: labels}", "los"),
        "network `mlp` has no layer or output `los`",
        "loss = los",
    );
}

#[test]
fn an_unbound_input_is_located() {
    check_fails_at(
        &declared("{image: images}", "ce"),
        "input `label` of network `mlp` is not bound to a data field",
        "inputs = {image: images}",
    );
    check_fails_at(
        &declared("{image: images, label: labels, extra: noise}", "ce"),
        "network `mlp` has no input `extra`",
        "inputs =",
    );
}

#[test]
fn a_field_the_data_set_does_not_have_is_located() {
    check_fails_at(
        &declared("{image: images, label: tokens}", "ce"),
        "data set `mnist` has no field `tokens`",
        "inputs =",
    );
    // Labels are one class id per example.
    check_fails_at(
        &declared("{image: labels, label: images}", "ce"),
        "one value per example for `labels`",
        "inputs =",
    );
}

#[test]
fn a_tied_head_counts_its_table_once() {
    let dir = tmp("tied");
    let path = dir.path().join("tied.net");
    // A 50-token vocabulary of 16 features: the table (800) is used by the embedding and,
    // transposed, by the head; with the dense (16x16 + 16 = 272) that is 1,072 parameters.
    let src = "net gpt {\n  input tokens: 8\n  input next: 8\n  table = param([50, 16], init=gaussian(0.02))\n  x = gather(table, tokens)\n  h = x -> dense(16) -> gelu\n  wt = table -> transpose\n  logits = matmul(h, wt)\n  loss = cross_entropy(logits, next)\n  output loss\n}\n";
    std::fs::write(&path, src).expect("write");
    let (code, so, se) = netc(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(so.contains("parameters:        1,072"), "{so}");
}

#[test]
fn the_binding_keys_belong_to_task_minimise() {
    // A classifier used to ignore them without a word.
    check_fails_at(
        &mlp("", "  task = classifier\n  inputs = {image: images}"),
        "training setting `inputs` is for task = minimise",
        "inputs =",
    );
}

#[test]
fn an_image_folder_feeds_images_labels_and_noise_in_any_input_order() {
    // The label input comes first and the images second: the folder's crop is the images'
    // input, and a declared loss has no outputs to count classes against.
    let dir = tmp("folder");
    let data = dir.path().join("digits");
    digit_folder::write(&data, &digit_folder::Spec::grey(3, 12));
    let src = "net ae {\n  input label: 1\n  input image: 1x28x28\n  input eps: 4\n  h = image -> flatten -> dense(16) -> tanh\n  z = dense(4)\n  zn = add(z, eps)\n  r = zn -> dense(784) -> sigmoid\n  flat = image -> flatten\n  rec = mse(r, flat)\n  logits = z -> dense(3)\n  ce = cross_entropy(logits, label)\n  loss = add(rec, ce)\n  output loss\n}\ntrain {\n  task = minimise\n  loss = loss\n  inputs = {label: labels, image: images, eps: noise}\n  batch = 8\n  epochs = 3\n  log_every = 2\n}\n";
    let run = train(
        dir.path(),
        "ae",
        src,
        &["--data-dir", data.to_str().expect("utf-8")],
    );
    let r = rows(&run);
    let tests: Vec<f64> = r
        .iter()
        .filter(|row| row.contains_key("test_loss"))
        .map(|row| num(row, "test_loss"))
        .collect();
    assert_eq!(tests.len(), 3, "{r:?}");
    assert!(tests.iter().all(|t| t.is_finite() && *t > 0.0), "{tests:?}");
}
