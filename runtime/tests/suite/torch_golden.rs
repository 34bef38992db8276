//! The CPU reference against an independent oracle: PyTorch's float64 outputs and gradients for
//! conv (groups, SAME, dilation, stride > kernel), maxpool (padding, SAME, ties), avgpool, both with ceil rounding, lrn,
//! conv_transpose (stride 2 and 3, output_padding, groups, dilation, SAME) and batchnorm (the
//! running statistics after three training passes, and evaluation with them) on small fixed
//! inputs, made by fixtures/make_torch_golden.py (which documents how netc's conventions map
//! onto PyTorch's). The test reads the committed JSON, not torch.

use ndarray::Array2;
use netc_compiler::compile;
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use serde_json::Value;

use crate::golden;
use golden::{floats, rel};

#[test]
fn cpu_reference_matches_pytorch() {
    let path = format!(
        "{}/tests/fixtures/torch_golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 19, "{} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let src = case["net"].as_str().expect("net");
        let m = compile("golden.net", src).unwrap_or_else(|d| panic!("{name}: {}", d.render()));
        let net = &m.networks[0];
        let (out, _) = net.output_and_logit().expect("output");
        let shape: Vec<u64> = case["y_shape"]
            .as_array()
            .expect("shape")
            .iter()
            .map(|v| v.as_u64().expect("dim"))
            .collect();
        assert_eq!(net.graph[out].shape, shape, "{name}: output shape");
        let mut p = Params::<f64>::init(net, &mut Rng::new(1));
        for (pname, values) in case["params"].as_object().expect("params") {
            let i = p
                .index(&format!("y.{pname}"))
                .unwrap_or_else(|| panic!("{name}: no parameter {pname}"));
            p.values[i] = floats(values);
        }
        let batch = case["batch"].as_u64().expect("batch") as usize;
        let rows = |v: &Value| {
            let v = floats(v);
            Array2::from_shape_vec((batch, v.len() / batch), v).expect("batch shape")
        };
        // Training passes before the compared one (batchnorm's running statistics).
        for earlier in case["train_batches"].as_array().into_iter().flatten() {
            let acts = cpu::forward(net, &p, rows(earlier).view(), true, 0).expect("forward");
            p.apply_state(&acts);
        }
        let x = rows(&case["x"]);
        let acts = cpu::forward(net, &p, x.view(), true, 0).expect("forward");
        let y: Vec<f64> = acts.get(out).iter().copied().collect();
        let ry = rel(&y, &floats(&case["y"]));
        assert!(ry < 1e-12, "{name}: output differs from PyTorch by {ry:e}");
        let dy = floats(&case["dy"]);
        let dy = Array2::from_shape_vec((batch, dy.len() / batch), dy).expect("dy shape");
        let (grads, dx) = cpu::backward(net, &p, &acts, out, dy);
        let dx: Vec<f64> = dx.iter().copied().collect();
        let rdx = rel(&dx, &floats(&case["dx"]));
        assert!(rdx < 1e-12, "{name}: input gradient differs by {rdx:e}");
        for (pname, want) in case["grads"].as_object().expect("grads") {
            let i = p.index(&format!("y.{pname}")).expect("parameter");
            let got = grads[i].as_ref().expect("gradient");
            let r = rel(got, &floats(want));
            assert!(r < 1e-12, "{name}: {pname} gradient differs by {r:e}");
        }
        if let Some(running) = case["running"].as_object() {
            p.apply_state(&acts);
            for (sname, want) in running {
                let i = p.index(&format!("y.{sname}")).expect("state tensor");
                let r = rel(&p.values[i], &floats(want));
                assert!(r < 1e-12, "{name}: {sname} differs by {r:e}");
            }
            let eval = cpu::forward(net, &p, x.view(), false, 0).expect("forward");
            let y: Vec<f64> = eval.get(out).iter().copied().collect();
            let r = rel(&y, &floats(&case["y_eval"]));
            assert!(r < 1e-12, "{name}: evaluation output differs by {r:e}");
        }
    }
}
