//! The standard library's blocks (layers written from primitives, gradients derived) against
//! central differences in f64 on the CPU reference (< 1e-7), each inside a small network.

use netc_compiler::compile;
use netc_runtime::gradcheck::{check, THRESHOLD};

fn passes(src: &str) {
    let m = compile("g.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    for net in &m.networks {
        let r = check(net, 3, 30, 5).expect("gradcheck runs");
        for t in &r.tensors {
            assert!(
                t.rel_diff < THRESHOLD && t.analytic_norm > 0.0 && t.checked > 3 * t.kinks,
                "{}: {} relative difference {:e}, norm {:e}, {} checked, {} kinks",
                r.net,
                t.name,
                t.rel_diff,
                t.analytic_norm,
                t.checked,
                t.kinks
            );
        }
        assert!(r.passed(), "{r:?}");
    }
}

#[test]
fn layernorm_over_tokens() {
    passes("net t { input x: 5x8\n h = dense(8) -> layernorm(8)\n o = flatten -> dense(3) }");
}

#[test]
fn gelu_silu_and_softmax_over_an_axis() {
    passes("net t { input x: 4x6\n a = dense(6) -> gelu\n b = silu\n c = softmax_over(0)\n o = flatten -> dense(3) }");
}

#[test]
fn attention_with_and_without_the_causal_mask() {
    passes("net t { input x: 5x8\n a = attention(8, 2)\n o = flatten -> dense(3) }");
    passes("net t { input x: 5x8\n a = attention(8, 2, causal=true)\n o = flatten -> dense(3) }");
}

#[test]
fn a_pre_ln_transformer_block() {
    passes("net t { input x: 4x8\n b = transformer(8, 2, 12, causal=true)\n o = flatten -> dense(3) }");
}

#[test]
fn groupnorm_of_an_image() {
    passes("net t { input x: 2x3x3\n c = conv(4, k=1)\n g = groupnorm(2, 4)\n o = flatten -> dense(3) }");
}

#[test]
fn patches_class_token_and_positions() {
    passes("net t { input x: 1x6x6\n p = patches(4, 3)\n s = p -> class_token(4) -> positions(5, 4)\n o = flatten -> dense(3) }");
    // The class token alone after attention mixes the patches into it.
    passes("net t { input x: 1x6x6\n p = patches(4, 3) -> class_token(4)\n a = attention(4, 2)\n o = slice(0, 0, 1) -> flatten -> dense(3) }");
}

#[test]
fn primitives_named_in_a_model_file() {
    passes(
        "net t { input x: 3x4\n w = param(4x5)\n y = matmul(x, w)\n z = y -> exp -> sum(axis=-1, keep=true)\n d = div(y, z)\n m = maximum(d, y) -> merge(0, 1)\n o = dense(2) }",
    );
}
