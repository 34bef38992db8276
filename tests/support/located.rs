//! The check that a bad model is refused by `netc check` at the right line.

use crate::run::netc;

/// `netc check` of `src` fails with `message`, located at the first line holding `line`.
pub fn check_fails_at(src: &str, message: &str, line: &str) {
    let dir = tempfile::Builder::new()
        .prefix("netc-located-")
        .tempdir()
        .expect("a temporary folder");
    let path = dir.path().join("m.net");
    std::fs::write(&path, src).expect("write");
    let (code, _, err) = netc(&["check", path.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{src}\n{err}");
    assert!(err.contains(message), "wanted `{message}` in:\n{err}");
    let n = src
        .lines()
        .position(|l| l.contains(line))
        .expect("the located line is in the source")
        + 1;
    assert!(
        err.contains(&format!("m.net:{n}:")),
        "wanted m.net:{n} in:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
