//! The front ends must turn any input into a model or diagnostics, never a panic.

use proptest::prelude::*;

const PIECES: &[&str] = &[
    "net",
    "block",
    "repeat",
    "input",
    "output",
    "train",
    "{",
    "}",
    "(",
    ")",
    "=",
    "->",
    ":",
    ",",
    "x",
    "3x32x32",
    "784",
    "0",
    "-1",
    "1e-4",
    "conv",
    "dense",
    "relu",
    "k=3",
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
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn dsl_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = netc_compiler::compile("fuzz.net", &text);
    }

    #[test]
    fn dsl_token_soup(idx in proptest::collection::vec(0..PIECES.len(), 0..60)) {
        let text: String = idx.iter().map(|&i| PIECES[i]).collect::<Vec<_>>().join(" ");
        let _ = netc_compiler::compile("fuzz.net", &text);
        if let Err(d) = netc_compiler::compile("fuzz.net", &text) {
            let _ = d.render();
        }
    }

    #[test]
    fn yaml_arbitrary_text(text in "[a-z:{}\\[\\], \\n0-9x-]{0,200}") {
        if let Err(d) = netc_compiler::compile("fuzz.yaml", &text) {
            let _ = d.render();
        }
    }

    #[test]
    fn dsl_valid_prefix_mutations(cut in 0usize..400, insert in any::<u8>()) {
        let base = include_str!("../../../models/alexnet.net");
        let mut bytes = base.as_bytes().to_vec();
        let at = cut.min(bytes.len());
        bytes.insert(at, insert);
        let text = String::from_utf8_lossy(&bytes);
        if let Err(d) = netc_compiler::compile("fuzz.net", &text) {
            let _ = d.render();
        }
    }
}
