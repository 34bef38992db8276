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
    passes(
        "net t { input x: 4x8\n b = transformer(8, 2, 12, causal=true)\n o = flatten -> dense(3) }",
    );
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
fn sin_cos_and_the_timestep_embedding() {
    passes("net t { input x: 4x6\n a = dense(6) -> sin\n b = scale(3) -> cos\n o = flatten -> dense(3) }");
    // The timestep through the embedding's sines and cosines (of arguments up to about 30).
    passes(
        "net t { input x: 3\n t = dense(1) -> scale(10) -> timestep_embedding(8)\n o = dense(3) }",
    );
}

#[test]
fn primitives_named_in_a_model_file() {
    passes(
        "net t { input x: 3x4\n w = param(4x5)\n y = matmul(x, w)\n z = y -> exp -> sum(axis=-1, keep=true)\n d = div(y, z)\n m = maximum(d, y) -> merge(0, 1)\n o = dense(2) }",
    );
}

mod random_chains {
    //! Random chains of primitives and library blocks over random shapes: each compiles or
    //! gives located errors, and what compiles runs forward and backward on the CPU without a
    //! panic (a bad id is an error).
    use ndarray::Array2;
    use netc_compiler::compile;
    use netc_runtime::cpu::{self, Params};
    use netc_runtime::rng::Rng;

    const CALLS: &[&str] = &[
        "exp",
        "neg",
        "square",
        "abs",
        "erf",
        "sin",
        "cos",
        "scale(0.5)",
        "shift(-1)",
        "pow(2)",
        "mean(axis=AX, keep=true)",
        "sum(axis=AX)",
        "max(axis=-1, keep=true)",
        "permute([1, 0])",
        "transpose",
        "slice(AX, 0, 1)",
        "unflatten(AX, [N, -1])",
        "merge(0, 1)",
        "causal_mask",
        "softmax_over(AX)",
        "layernorm(N)",
        "gelu",
        "silu",
        "attention(N, 1)",
        "dense(N)",
        "mul(in0, w)",
        "sub(w)",
        "maximum(w)",
        "matmul(in0, w)",
        "gather(w, in0)",
        "add(in0, w)",
        "concat(w, in0, axis=0)",
        "flatten",
        "relu",
    ];

    fn source(dims: &[u64], picks: &[(usize, i64, u64)]) -> String {
        let shape: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
        let mut s = format!(
            "net t {{\n input in0: {}\n w = param({}x{})\n",
            shape.join("x"),
            dims[0],
            dims[dims.len() - 1]
        );
        s.push_str(" y = in0");
        for &(c, ax, n) in picks {
            let call = CALLS[c % CALLS.len()]
                .replace("AX", &ax.to_string())
                .replace('N', &n.to_string());
            s.push_str(&format!(" -> {call}"));
        }
        s.push_str("\n}\n");
        s
    }

    #[test]
    fn never_panic() {
        let mut rng = Rng::new(11);
        let (mut compiled, mut ran) = (0, 0);
        for _ in 0..400 {
            let dims: Vec<u64> = (0..1 + rng.below(3)).map(|_| 1 + rng.below(4)).collect();
            let picks: Vec<(usize, i64, u64)> = (0..1 + rng.below(3))
                .map(|_| {
                    (
                        rng.below(64) as usize,
                        rng.below(5) as i64 - 2,
                        1 + rng.below(4),
                    )
                })
                .collect();
            let src = source(&dims, &picks);
            let Ok(m) = compile("r.net", &src) else {
                continue;
            };
            compiled += 1;
            let net = &m.networks[0];
            let p: Params<f64> = Params::init(net, &mut rng);
            let feats: usize = dims.iter().product::<u64>() as usize;
            let x = Array2::from_shape_fn((2, feats), |_| rng.uniform(-1.0, 1.0));
            if let Ok(acts) = cpu::forward(net, &p, x.view(), true, 1) {
                ran += 1;
                let out = net.outputs[0].1;
                let dy = acts.get(out).mapv(|_| 1.0);
                let _ = cpu::backward(net, &p, &acts, out, dy);
            }
        }
        // Not vacuous: a good share of the chains compile and run.
        assert!(
            compiled >= 80 && ran >= 60,
            "compiled {compiled}, ran {ran} of 400"
        );
    }
}
