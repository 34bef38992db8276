//! The standard library's blocks (built from primitives, gradients derived) against PyTorch's
//! float64 outputs and gradients: layernorm, GELU, attention with and without the causal mask,
//! embedding with repeated ids, groupnorm and a pre-LN transformer block, made by
//! fixtures/make_prim_golden.py (which maps netc's parameter names onto PyTorch's). The test
//! reads the committed JSON, not torch.

use ndarray::Array2;
use netc_compiler::compile;
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use serde_json::Value;

use crate::golden;
use golden::{floats, rel};

fn check_case(case: &Value) {
    let name = case["name"].as_str().expect("name");
    let m = compile("t.net", case["src"].as_str().expect("src"))
        .unwrap_or_else(|d| panic!("{name}: {}", d.render()));
    let net = &m.networks[0];
    let batch = case["batch"].as_u64().expect("batch") as usize;
    let mut p: Params<f64> = Params::init(net, &mut Rng::new(1));
    let given = case["params"].as_object().expect("params");
    assert_eq!(
        given.len(),
        p.names.len(),
        "{name}: parameters {:?}",
        p.names
    );
    for (k, v) in given {
        let i = p
            .index(k)
            .unwrap_or_else(|| panic!("{name}: no parameter {k} in {:?}", p.names));
        let v = floats(v);
        assert_eq!(v.len(), p.values[i].len(), "{name}: {k} size");
        p.values[i] = v;
    }
    let xs = floats(&case["x"]);
    let x = Array2::from_shape_vec((batch, xs.len() / batch), xs).expect("x");
    let acts = cpu::forward(net, &p, x.view(), true, 0).expect("forward");
    let out = net.outputs[0].1;
    let y: Vec<f64> = acts.get(out).iter().copied().collect();
    let e = rel(&y, &floats(&case["y"]));
    assert!(e < 1e-12, "{name}: output differs by {e:e}");
    let r = floats(&case["r"]);
    let dy = Array2::from_shape_vec((batch, r.len() / batch), r).expect("r");
    let (grads, dx) = cpu::backward(net, &p, &acts, out, dy);
    for (k, want) in given.keys().map(|k| (k, floats(&case["grads"][k]))) {
        let got = grads[p.index(k).expect("param")]
            .clone()
            .expect("a gradient");
        let e = rel(&got, &want);
        assert!(e < 1e-12, "{name}: gradient of {k} differs by {e:e}");
    }
    if let Some(want) = case["dx"].as_array().map(|_| floats(&case["dx"])) {
        let got: Vec<f64> = dx.iter().copied().collect();
        let e = rel(&got, &want);
        assert!(e < 1e-12, "{name}: input gradient differs by {e:e}");
    }
}

#[test]
fn library_blocks_match_pytorch() {
    let path = format!(
        "{}/tests/fixtures/prim_golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture"))
        .expect("fixture is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 7);
    for case in cases {
        check_case(case);
    }
}
