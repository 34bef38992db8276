//! Every op's backward against central differences in f64 on the CPU reference (< 1e-7).

use netc_compiler::compile;
use netc_runtime::gradcheck::{check, THRESHOLD};

fn passes(src: &str) {
    let m = compile("g.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    for net in &m.networks {
        let r = check(net, 5, 40, 9).expect("gradcheck runs");
        for t in &r.tensors {
            assert!(
                t.rel_diff < THRESHOLD,
                "{}: {} relative difference {:e}",
                r.net,
                t.name,
                t.rel_diff
            );
            assert!(
                t.analytic_norm > 0.0,
                "{}: {} has a zero gradient, nothing was checked",
                r.net,
                t.name
            );
        }
        assert!(r.passed(), "{r:?}");
    }
}

#[test]
fn dense_and_relu() {
    passes("net t { input x: 13\n h = dense(17) -> relu\n o = dense(6) }");
}

#[test]
fn leaky_relu_sigmoid_tanh() {
    passes("net t { input x: 9\n a = dense(11) -> leaky_relu(0.1)\n b = dense(7) -> sigmoid\n c = dense(8) -> tanh\n o = dense(4) }");
}

#[test]
fn softmax_in_the_middle_and_add() {
    passes("net t { input x: 10\n h = dense(12)\n a = h -> relu\n b = h -> tanh\n s = add(a, b) -> dense(5) -> softmax\n o = dense(3) }");
}

#[test]
fn flatten_reshape_and_shared_input() {
    passes("net t { input x: 12\n r = reshape(3x2x2) -> flatten\n a = r -> dense(12) -> sigmoid\n s = add(a, r, x)\n o = dense(4) }");
}

#[test]
fn dropout_with_a_fixed_mask() {
    passes("net t { input x: 10\n h = dense(20) -> relu -> dropout(0.4)\n o = dense(3) }");
}

#[test]
fn binary_cross_entropy_head() {
    passes("net t { input x: 8\n h = dense(6) -> relu\n o = dense(1) -> sigmoid }");
}

#[test]
fn shipped_models() {
    for f in ["mlp.net", "gan.yaml"] {
        let path = format!("{}/../models/{f}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).expect("model file");
        let m = compile(f, &src).unwrap_or_else(|d| panic!("{}", d.render()));
        for net in &m.networks {
            let r = check(net, 4, 15, 1).expect("gradcheck runs");
            assert!(r.passed(), "{f} {}: {:?}", r.net, r.tensors);
        }
    }
}

#[test]
fn a_wrong_gradient_is_caught() {
    // Sanity of the checker itself: perturbing the analytic result must fail the 1e-7 mark.
    let m = compile("g.net", "net t { input x: 5\n o = dense(3) }").expect("compiles");
    let r = check(&m.networks[0], 3, 10, 2).expect("runs");
    assert!(r.passed());
    let worse = netc_runtime::gradcheck::TensorCheck {
        rel_diff: 1e-3,
        ..r.tensors[0].clone()
    };
    let bad = netc_runtime::gradcheck::Report {
        tensors: vec![worse],
        ..r
    };
    assert!(!bad.passed());
}
