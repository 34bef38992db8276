//! `netc check` accepts a model around every registry op's example (exit 0).

use netc_compiler::ops::registry::OPS;

use crate::run;
use run::netc;

#[path = "../../compiler/tests/support/op_models.rs"]
mod op_models;
use op_models::compiling_model;

#[test]
fn every_op_example_passes_netc_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    for def in OPS {
        let src = compiling_model(def.example)
            .unwrap_or_else(|e| panic!("`{}`'s example does not compile:\n{e}", def.name));
        let path = dir.path().join(format!("{}.net", def.name));
        std::fs::write(&path, &src).expect("writes the model");
        let path = path.to_str().expect("utf-8 path");
        let (code, out, err) = netc(&["check", path]);
        assert_eq!(code, 0, "{}:\n{src}\n{out}\n{err}", def.name);
    }
}
