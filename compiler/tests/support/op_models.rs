//! A tiny model around one op call, shared by the test that every registry op compiles from
//! its own example (compiler/tests/suite/registry.rs) and the one that `netc check` accepts each
//! (tests/suite/registry_cli.rs).

use netc_compiler::compile;

/// Input shapes tried in turn: a flat vector, and an image of as many values (what `reshape`'s
/// example takes).
const INPUTS: &[&str] = &["784", "16x7x7"];

/// A model whose layer `y` is `call` on the input `x`; `a` and `b` are there for the ops that
/// name their inputs (`add(a, b)`), `w` for the primitives that take a parameter
/// (`matmul(x, w)`, `gather(w, x)`).
pub fn model(input: &str, call: &str) -> String {
    format!(
        "net t {{\n  input x: {input}\n  a = x -> relu\n  b = x -> relu\n  w = param(7x4)\n  y = x -> {call}\n  output y\n}}\n"
    )
}

/// The model around `call` with the first input shape that compiles, or every attempt's
/// diagnostics.
pub fn compiling_model(call: &str) -> Result<String, String> {
    let mut failures = vec![];
    for input in INPUTS {
        let src = model(input, call);
        match compile("op.net", &src) {
            Ok(_) => return Ok(src),
            Err(d) => failures.push(d.render()),
        }
    }
    Err(failures.join("\n"))
}
