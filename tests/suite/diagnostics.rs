//! The rendered diagnostic of every file in tests/bad_models (one file per error class).

#[test]
fn every_bad_model_is_reported() {
    let dir = format!("{}/tests/bad_models", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/bad_models exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    for f in files {
        let path = format!("tests/bad_models/{f}");
        let src = std::fs::read_to_string(format!("{dir}/{f}")).expect("read");
        match netc_compiler::compile(&path, &src) {
            Ok(_) => panic!("{path} compiled but should not"),
            Err(d) => insta::assert_snapshot!(format!("diag_{f}"), d.render()),
        }
    }
}

#[test]
fn independent_errors_are_all_reported() {
    let src = std::fs::read_to_string(format!(
        "{}/tests/bad_models/independent_errors.net",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("read");
    let d = netc_compiler::compile("independent_errors.net", &src).expect_err("has errors");
    assert_eq!(d.items.len(), 3, "{}", d.render());
}
