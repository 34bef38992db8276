//! The registry is the only list of ops: every op in it compiles from its own example, every
//! alias resolves to its op, and no name or alias is listed twice.

use netc_compiler::compile;
use netc_compiler::ops::registry::{self, canonical_op, is_op, OPS};
use std::collections::HashSet;

#[path = "../support/op_models.rs"]
mod op_models;
use op_models::compiling_model;

/// The op name the layer `y` of a compiled model has.
fn op_of_y(src: &str) -> String {
    let m = compile("op.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = m.network("t").expect("network t");
    let y = net.find("y").expect("layer y");
    net.node(y).op.name().to_string()
}

/// `example` with its op name replaced by `name`.
fn renamed(example: &str, name: &str) -> String {
    let args = example.find('(').map_or("", |i| &example[i..]);
    format!("{name}{args}")
}

#[test]
fn every_op_compiles_from_its_own_example() {
    for def in OPS {
        let src = compiling_model(def.example)
            .unwrap_or_else(|e| panic!("`{}`'s example does not compile:\n{e}", def.name));
        assert_eq!(op_of_y(&src), def.name, "{src}");
    }
}

#[test]
fn every_alias_resolves_to_its_op() {
    for def in OPS {
        assert!(is_op(def.name));
        assert_eq!(canonical_op(def.name), def.name);
        for alias in def.aliases {
            assert!(is_op(alias), "{alias}");
            assert_eq!(canonical_op(alias), def.name, "{alias}");
            assert_eq!(registry::find(alias).map(|d| d.name), Some(def.name));
            let call = renamed(def.example, alias);
            let src = compiling_model(&call).unwrap_or_else(|e| panic!("`{call}`:\n{e}"));
            assert_eq!(op_of_y(&src), def.name, "{src}");
        }
    }
    assert!(!is_op("conv3d"));
    assert_eq!(canonical_op("conv3d"), "conv3d");
}

#[test]
fn no_name_or_alias_is_listed_twice() {
    let mut seen = HashSet::new();
    for def in OPS {
        for name in std::iter::once(&def.name).chain(def.aliases) {
            assert!(seen.insert(*name), "`{name}` is listed twice");
        }
    }
    assert_eq!(registry::names().count(), OPS.len());
}
