//! Hand-edited and corrupted checkpoints, non-UTF-8 class folders, and the training-memory
//! planner on huge or long models (issue 31): each is a clear error, never a run that goes on
//! with nonsense (gradient ascent, NaN weights, scoring the training images) or a hang.

use crate::digit_folder;
use crate::run;

use std::path::{Path, PathBuf};

use digit_folder::{write, Spec};
use netc_runtime::io::Checkpoint;
use run::netc;

/// A small MLP on the shipped MNIST sample, trained with Adam (so the checkpoint holds second
/// moments).
const MLP: &str = "
net mlp {
  input image: 784
  hidden = dense(16, init=he) -> relu
  logits = dense(10, init=he)
  output logits
}
train {
  task = classifier
  network = mlp
  optimizer = adam(lr=1e-3)
  batch = 100
  steps = 20
  data = mnist
  data_dir = \"DATA\"
  seed = 1
}
";

/// A small convolutional net for an image folder of three classes.
const DIGITS: &str = "
net digits {
  input image: 1x24x24
  c1 = conv(4, k=5, init=xavier) -> relu
  p1 = maxpool(k=2, s=2)
  f = flatten -> dense(3, init=xavier)
  output f
}
train {
  task = classifier
  network = digits
  optimizer = sgd(lr=0.01, momentum=0.9)
  batch = 16
  epochs = 1
  data = images
  resize = 28
  mean = auto
  std = auto
  seed = 1
}
";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// Trains the MLP into `dir/run`; returns (model file, checkpoint).
fn mlp_run(dir: &Path) -> (PathBuf, PathBuf) {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let m = dir.join("mlp.net");
    std::fs::write(&m, MLP.replace("DATA", s(&data))).expect("model");
    let out = dir.join("run");
    let (code, _, err) = netc(&[
        "train",
        s(&m),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    (m, out.join("checkpoint.safetensors"))
}

/// The safetensors header of `path`: (its JSON, the data after it).
fn header(path: &Path) -> (serde_json::Map<String, serde_json::Value>, Vec<u8>) {
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let json = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
    (json, bytes[8 + n..].to_vec())
}

/// Writes `path` as the safetensors file of `json` and `data`: 8-byte little-endian length,
/// then the JSON, as a hand edit with a script would.
fn write_header(path: &Path, json: &serde_json::Map<String, serde_json::Value>, data: &[u8]) {
    let text = serde_json::to_string(json).expect("JSON");
    let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(text.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).expect("write");
}

/// Copies checkpoint `from` to `to` with metadata `key` set to `value`. `keep_crc` keeps the
/// metadata checksum netc wrote (so the edit shows as a mismatch); without it the file is as
/// an earlier netc (no metadata checksum) would have written it, so the field's own check is
/// what must catch the edit.
fn edited(from: &Path, to: &Path, key: &str, value: &str, keep_crc: bool) {
    let (mut json, data) = header(from);
    let meta = json
        .get_mut("__metadata__")
        .and_then(|m| m.as_object_mut())
        .expect("metadata");
    assert!(meta.contains_key("netc_meta_crc32"), "netc writes the CRC");
    if !keep_crc {
        meta.remove("netc_meta_crc32");
    }
    meta.insert(key.into(), value.into());
    write_header(to, &json, &data);
}

#[test]
fn hand_edited_metadata_and_optimizer_state_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, ck) = mlp_run(tmp.path());
    let run = ck.parent().expect("run folder");
    let pristine = tmp.path().join("pristine.safetensors");
    std::fs::copy(&ck, &pristine).expect("copy");
    let resume = |extra: &[&str]| {
        let mut args = vec![
            "train",
            s(&m),
            "--device",
            "cpu",
            "--quiet",
            "--out",
            s(run),
            "--resume",
            "--steps",
            "40",
        ];
        args.extend_from_slice(extra);
        netc(&args)
    };
    let cases = [
        (
            "lr_scale",
            "-1",
            "`lr_scale` is `-1`, but it must be a finite number above 0",
        ),
        ("lr_scale", "NaN", "`lr_scale`"),
        ("lr", "inf", "`lr` is `inf`"),
        (
            "step",
            "-3",
            "`step` is `-3`, but it must be a whole number",
        ),
        ("bad_epochs", "x", "`bad_epochs`"),
        ("best_test_loss", "NaN", "`best_test_loss`"),
    ];
    for (key, value, want) in cases {
        edited(&pristine, &ck, key, value, false);
        let (code, _, err) = resume(&[]);
        assert_eq!(code, 1, "{key} = {value}: {err}");
        assert!(err.contains(want), "{key} = {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Any edit that keeps the checksum netc wrote is caught by it, even a valid-looking one.
    std::fs::copy(&pristine, &ck).expect("restore");
    let copy = tmp.path().join("edited.safetensors");
    edited(&ck, &copy, "lr_scale", "2e0", true);
    let (code, _, err) = netc(&["eval", s(&m), "--weights", s(&copy), "--device", "cpu"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("its metadata does not match its checksum"),
        "{err}"
    );
    // A checkpoint without the metadata checksum (an earlier netc's) still loads.
    let (mut json, data) = header(&ck);
    json["__metadata__"]
        .as_object_mut()
        .expect("metadata")
        .remove("netc_meta_crc32");
    write_header(&copy, &json, &data);
    let (code, _, err) = netc(&["eval", s(&m), "--weights", s(&copy), "--device", "cpu"]);
    assert_eq!(code, 0, "{err}");

    // Optimizer state: negative second moments gave NaN weights on resume; NaN state too.
    let good = Checkpoint::load(&ck).expect("intact checkpoint");
    for (slot, value, want) in [
        (
            "exp_avg_sq",
            -1.0,
            "(Adam's second moments) holds negative values",
        ),
        ("exp_avg", f32::NAN, "holds NaN or infinite values"),
        ("exp_avg_sq", f32::INFINITY, "holds NaN or infinite values"),
    ] {
        let mut bad = good.clone();
        let name = format!("optimizer.hidden.weight.{slot}");
        let t = bad.tensors.iter_mut().find(|t| t.0 == name).expect(&name);
        t.2[3] = value;
        bad.save(&ck).expect("save");
        let (code, _, err) = resume(&[]);
        assert_eq!(code, 1, "{slot} = {value}: {err}");
        assert!(err.contains(&format!("`{name}` ")), "{err}");
        assert!(err.contains(want), "{err}");
    }
    good.save(&ck).expect("save");
    let (code, _, err) = resume(&[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_flipped_metadata_byte_is_caught() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, ck) = mlp_run(tmp.path());
    let bytes = std::fs::read(&ck).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let text = std::str::from_utf8(&bytes[8..8 + n]).expect("utf-8 header");
    // Each digit of the metadata's values in turn (the JSON stays valid, so only the checksum
    // can tell).
    let values = ["\"step\":\"", "\"seed\":\"", "\"lr\":\"", "\"epoch\":\""];
    let mut tried = 0;
    for v in values {
        let at = 8 + text.find(v).expect(v) + v.len();
        let mut f = bytes.clone();
        f[at] = if f[at] == b'1' { b'2' } else { b'1' };
        std::fs::write(&ck, &f).expect("write");
        let (code, _, err) = netc(&["eval", s(&m), "--weights", s(&ck), "--device", "cpu"]);
        assert_eq!(code, 1, "{v}: {err}");
        assert!(err.contains("metadata"), "{v}: {err}");
        tried += 1;
    }
    assert_eq!(tried, values.len());
}

#[test]
fn hand_edited_image_folder_metadata_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("digits");
    write(&data, &Spec::grey(3, 24));
    let m = tmp.path().join("digits.net");
    std::fs::write(&m, DIGITS).expect("model");
    let out = tmp.path().join("run");
    let (code, _, err) = netc(&[
        "train",
        s(&m),
        "--data-dir",
        s(&data),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{err}");
    let ck = out.join("checkpoint.safetensors");
    let cases = [
        // eval would have scored the training images.
        (
            "val_fraction",
            "2",
            "`val_fraction` is `2`, but it must be a number in [0, 1)",
        ),
        ("val_fraction", "-0.5", "`val_fraction`"),
        (
            "image_std",
            "[0]",
            "`image_std` is `[0]`, but it must be a JSON list of finite numbers above 0",
        ),
        ("image_std", "[0.3, 0.3]", "as long as `image_mean`"),
        ("image_mean", "[NaN]", "`image_mean`"),
        ("image_mean", "\"x\"", "`image_mean`"),
        ("image_pca", "[1, 2]", "`image_pca`"),
        (
            "classes",
            "digit0, digit1",
            "`classes` is `digit0, digit1`, but it must be a JSON list of class names",
        ),
        ("classes", "[\"a\", \"a\", \"b\"]", "(`a` appears twice)"),
        ("classes", "[\"a\", \"\", \"b\"]", "non-empty class names"),
        ("split_seed", "1.5", "`split_seed`"),
    ];
    let copy = tmp.path().join("edited.safetensors");
    for (key, value, want) in cases {
        edited(&ck, &copy, key, value, false);
        let (code, _, err) = netc(&[
            "eval",
            s(&m),
            "--weights",
            s(&copy),
            "--data-dir",
            s(&data),
            "--device",
            "cpu",
        ]);
        assert_eq!(code, 1, "{key} = {value}: {err}");
        assert!(err.contains(want), "{key} = {value}: {err}");
    }
}

#[test]
fn class_folders_whose_names_are_not_utf8_are_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("digits");
    write(&data, &Spec::grey(3, 24));
    // Read lossily, both names were `cls\u{fffd}`: one class under two labels.
    for (digit, byte) in [(0, 0xff), (1, 0xfe)] {
        let bytes = [b'c', b'l', b's', byte];
        let name = OsStr::from_bytes(&bytes);
        std::fs::rename(data.join(format!("digit{digit}")), data.join(name)).expect("rename");
    }
    let m = tmp.path().join("digits.net");
    std::fs::write(&m, DIGITS).expect("model");
    let out = tmp.path().join("run");
    let (code, _, err) = netc(&[
        "train",
        s(&m),
        "--data-dir",
        s(&data),
        "--device",
        "cpu",
        "--quiet",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cls\u{fffd}` has a name that is not UTF-8 text"),
        "{err}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}

/// The number before `word` in the line of `text` that contains `marker`.
fn count_before(text: &str, marker: &str, word: &str) -> usize {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` in {text}"));
    let before = line.split(word).next().expect("split");
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before `{word}` in {line}"))
}

#[test]
fn the_held_out_count_is_after_skipped_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("digits");
    let files = write(&data, &Spec::grey(3, 24));
    // Every other file of each class is empty: left out with bad_images = skip.
    for f in files.iter().flatten().step_by(2) {
        std::fs::write(f, b"").expect("empty");
    }
    let m = tmp.path().join("digits.net");
    std::fs::write(
        &m,
        DIGITS.replace(
            "seed = 1",
            "seed = 1\n  bad_images = skip\n  val_fraction = 0.5",
        ),
    )
    .expect("model");
    let (code, _, err) = netc(&[
        "train",
        s(&m),
        "--data-dir",
        s(&data),
        "--device",
        "cpu",
        "--out",
        s(&tmp.path().join("run")),
    ]);
    assert_eq!(code, 0, "{err}");
    let held = count_before(&err, "held out by the seed", " images held out");
    let summary = count_before(&err, "evaluation images", " evaluation images");
    assert_eq!(held, summary, "{err}");
    assert!(
        err.contains("left out 36 unreadable image file(s)"),
        "{err}"
    );
}

#[test]
fn a_checkpoint_of_another_model_names_what_differs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, ck) = mlp_run(tmp.path());
    let run = ck.parent().expect("run folder");
    let text = std::fs::read_to_string(&m).expect("model");
    let resume = |text: String| {
        let other = tmp.path().join("other.net");
        std::fs::write(&other, text).expect("model");
        netc(&[
            "train",
            s(&other),
            "--device",
            "cpu",
            "--quiet",
            "--out",
            s(run),
            "--resume",
            "--steps",
            "40",
        ])
    };
    // Another eps: the two optimizer descriptions differ in one figure of many.
    let (code, _, err) = resume(text.replace("adam(lr=1e-3)", "adam(lr=1e-3, eps=1e-7)"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("(differing: `eps: 1e-8` then, `eps: 1e-7` now)"),
        "{err}"
    );
    // The count of tensors that do not fit is of the network's tensors; the checkpoint's
    // extra ones are counted apart (it said "(3 of 3 tensors)").
    let (code, _, err) =
        resume(text.replace("dense(16, init=he)", "dense(32, bias=false, init=he)"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("(2 of its 3 tensors do not fit, and the checkpoint has 1 it does not)"),
        "{err}"
    );
}

/// Runs `netc check FILE EXTRA...` on `text`; a run past 30 s is killed and fails the test (a
/// hang guard, not a timing figure).
fn check_within(dir: &Path, text: &str, extra: &[&str]) -> (i32, String) {
    use std::time::{Duration, Instant};
    let f = dir.join("model.net");
    std::fs::write(&f, text).expect("model");
    let err = dir.join("stderr.txt");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("check")
        .arg(&f)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("runs netc");
    let t0 = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            child.wait().ok();
            panic!("netc check ran over 30 s on {extra:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&err).expect("stderr"))
}

#[test]
fn check_refuses_a_batch_over_the_planner_limit_at_its_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let big = MLP.replace("batch = 100", "batch = 9223372036854775807");
    let (code, err) = check_within(tmp.path(), &big, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("batch 9223372036854775807 is too large"),
        "{err}"
    );
    assert!(
        err.contains("model.net:12:"),
        "located at the batch line: {err}"
    );
    assert!(err.contains("up to 2147483648"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let (code, err) = check_within(tmp.path(), MLP, &["--batch", "9223372036854775807"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("batch 9223372036854775807 is too large"),
        "{err}"
    );
    // The largest batch itself is accepted and answered fast: tests/suite/hostile_round2b.rs.
}

#[test]
fn check_stays_fast_on_a_long_chain_of_relus() {
    // The buffer plan scanned every buffer for every tensor: 20,000 relus took 29 s in a debug
    // build, 1 s with the heap-based plan.
    let tmp = tempfile::tempdir().expect("tmp");
    let relus = " -> relu".repeat(20_000);
    let chain = MLP.replace(
        "dense(16, init=he) -> relu",
        &format!("dense(16, init=he){relus}"),
    );
    let (code, err) = check_within(tmp.path(), &chain, &[]);
    assert_eq!(code, 0, "{err}");
}

// dense(N) was quadratic at the section's batch: every micro-batch (one sample each) lowered
// all of the weight's row blocks; the memory plan now lowers only the micro-batches that differ.
#[test]
fn check_stays_fast_on_a_wide_layer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let wide = MLP.replace("dense(16, init=he)", "dense(100000000, init=he)");
    let (code, err) = check_within(tmp.path(), &wide, &["--batch", "1"]);
    assert_eq!(code, 0, "{err}");
}
