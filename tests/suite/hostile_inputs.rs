//! The hardening probe's reproducers (generated here, being large): each must end with a clear
//! error, exit 1, no panic or abort, bounded output, and well within a hang guard.

use std::path::Path;
use std::time::Duration;

use crate::within;
use within::netc_within;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf-8").to_string()
}

fn check_fails_with(path: &str, message: &str) -> String {
    let (code, _, err) = netc_within(&["check", path], Duration::from_secs(30));
    assert_eq!(code, 1, "{path}: {err}");
    assert!(
        err.contains(message),
        "{path}: {}",
        &err[..err.len().min(2000)]
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.len() < 64 << 10,
        "{path}: {} bytes of errors",
        err.len()
    );
    err
}

#[test]
fn deep_nesting_is_a_located_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().expect("tmp");
    // Defect 1: repeat 4,000 deep (it drove `check` to 19 GB); defect 2: 10,000 deep (a
    // stack overflow), and initialisers nested 5,000 deep in the DSL and in a YAML string.
    for n in [4000, 10_000] {
        let src = format!(
            "net a {{\n input x: 784\n {}relu{}\n output y = relu_1\n}}\n",
            "repeat 1 { ".repeat(n),
            " }".repeat(n)
        );
        let f = write(dir.path(), &format!("repeat{n}.net"), &src);
        check_fails_with(&f, "brackets nested more than 128 deep");
    }
    let init = format!("{}0.1{}", "gaussian(".repeat(5000), ")".repeat(5000));
    let f = write(
        dir.path(),
        "init.net",
        &format!("net a {{\n input x: 784\n h = dense(10, init={init})\n}}\n"),
    );
    check_fails_with(&f, "brackets nested more than 128 deep");
    let f = write(
        dir.path(),
        "init.yaml",
        &format!("networks:\n  - name: a\n    inputs: {{x: 784}}\n    layers:\n      - {{op: dense, units: 10, init: \"{init}\"}}\n    outputs: {{y: dense}}\n"),
    );
    check_fails_with(&f, "expected an initialiser");
    // Nesting within the limit still compiles.
    let ok = format!(
        "net a {{\n input x: 4\n {}relu{}\n}}\n",
        "repeat 1 { ".repeat(40),
        " }".repeat(40)
    );
    let f = write(dir.path(), "ok.net", &ok);
    let (code, _, err) = netc_within(&["check", &f], Duration::from_secs(30));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn errors_are_capped_and_long_lines_not_echoed() {
    // Defect 9: a block with 10,000 parameters called without them printed 10,000 errors,
    // each echoing the 59 KB line.
    let dir = tempfile::tempdir().expect("tmp");
    let params: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
    let src = format!(
        "block b({}) {{ relu }}\nnet a {{\n input x: 4\n y = b\n output y\n}}\n",
        params.join(", ")
    );
    let f = write(dir.path(), "many.net", &src);
    let err = check_fails_with(&f, "aborting after 50 errors (9950 more not shown)");
    assert!(err.contains("characters long; not shown"), "{err}");
}

#[test]
fn oversized_model_files_are_refused_before_reading() {
    // Defect 7: a 50 MB model took 108 s and 6 GB; /dev/zero read until memory ran out.
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "big.net", &"# padding\n".repeat(500_000));
    check_fails_with(&f, "is larger than 4 MB");
    // Refused before a byte is read since issue 31.6: not a regular file.
    if Path::new("/dev/zero").exists() {
        check_fails_with("/dev/zero", "not a regular file (a character device)");
    }
}

#[test]
fn oversized_requests_are_refused_before_allocating() {
    // Defect 5: `dense(200000)` after a 200000 input aborted with "memory allocation of
    // 160000000000 bytes failed" on the CPU and the GPU path alike, and in gradcheck.
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(
        dir.path(),
        "huge.net",
        "net huge {\n input x: 200000\n h = dense(200000)\n o = dense(10)\n}\ntrain {\n batch = 8\n steps = 1\n data = synthetic\n}\n",
    );
    let out = dir.path().join("run");
    let mut devices = vec!["cpu"];
    if netc_runtime::gpu::test_gpu().is_some() {
        devices.push("vulkan");
    }
    for device in devices {
        let (code, _, err) = netc_within(
            &[
                "train",
                &f,
                "--device",
                device,
                "--out",
                out.to_str().expect("utf-8"),
                "--overwrite",
            ],
            Duration::from_secs(60),
        );
        assert_eq!(code, 1, "{device}: {err}");
        assert!(err.contains("needs 640.1 GB of memory"), "{device}: {err}");
    }
    let (code, _, err) = netc_within(&["gradcheck", &f], Duration::from_secs(60));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("GB of memory but this machine has"), "{err}");
}
