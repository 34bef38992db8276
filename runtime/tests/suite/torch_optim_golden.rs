//! netc's optimizer step against PyTorch's: torch.optim.AdamW with two parameter groups (the
//! decay rule), clip_grad_norm_ before every step and a LambdaLR of nanoGPT's warm-up cosine,
//! a few steps on fixed tensors with fixed gradients, made by fixtures/make_torch_golden.py
//! (`--optim-only`). netc reads each case's training section with its own reader and runs
//! the CPU reference's update in f64.

use netc_compiler::compile;
use netc_compiler::train_config::read;
use netc_runtime::cpu::{self, OptState, Params};
use serde_json::Value;

use crate::golden;
use golden::{floats, rel};

#[test]
fn adamw_warmup_cosine_and_clipping_match_pytorch() {
    let path = format!(
        "{}/tests/fixtures/torch_optim_golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture exists"))
        .expect("fixture is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 2, "{} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let src = format!(
            "net m {{ input x: 2\n o = dense(1) }}\ntrain {{ {} }}\n",
            case["train"].as_str().expect("train")
        );
        let m = compile("golden.net", &src).unwrap_or_else(|d| panic!("{name}: {}", d.render()));
        let cfg = read(&m)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .expect("a training section");
        let rule = cfg.update_rule(&cfg.optimizer);
        let steps = case["steps"].as_u64().expect("steps");
        let tensors = case["tensors"].as_object().expect("tensors");
        let mut p = Params::<f64> {
            names: vec![],
            shapes: vec![],
            values: vec![],
            trainable: vec![],
        };
        for (t, shape) in tensors {
            p.names.push(t.clone());
            p.shapes.push(
                shape
                    .as_array()
                    .expect("shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect(),
            );
            p.values.push(floats(&case["start"][t]));
            p.trainable.push(true);
        }
        // The decay rule keeps exactly the tensors PyTorch's decayed group holds.
        let decayed: Vec<String> = p
            .names
            .iter()
            .zip(&p.shapes)
            .filter(|(n, s)| rule.decay.applies(n, s.len()))
            .map(|(n, _)| n.clone())
            .collect();
        let mut want: Vec<String> = case["decayed"]
            .as_array()
            .expect("decayed")
            .iter()
            .map(|v| v.as_str().expect("name").to_string())
            .collect();
        want.sort();
        let mut got = decayed.clone();
        got.sort();
        assert_eq!(got, want, "{name}: decayed tensors");
        let mut st = OptState::new(&p, &rule.opt);
        for t in 0..steps as usize {
            let lr = cfg.schedule.step_lr(cfg.optimizer.lr, t as u64, steps);
            let torch_lr = case["lrs"][t].as_f64().expect("lr");
            assert!(
                (lr - torch_lr).abs() <= 1e-14 * torch_lr.abs().max(1e-3),
                "{name} step {t}: lr {lr} vs PyTorch's {torch_lr}"
            );
            let grads: Vec<Option<Vec<f64>>> = p
                .names
                .iter()
                .map(|n| Some(floats(&case["grads"][t][n])))
                .collect();
            // clip_grad_norm_ returns the norm before clipping.
            let norm = case["norms"][t].as_f64().expect("norm");
            let clip = rule.clip.expect("the cases clip");
            let scale = cpu::clip_scale(&grads, rule.clip);
            let torch_scale = (clip / (norm + 1e-6)).min(1.0);
            assert!(
                (scale - torch_scale).abs() < 1e-14,
                "{name} step {t}: clip factor {scale} vs {torch_scale}"
            );
            cpu::apply_rule(&mut p, &grads, &mut st, &rule, lr);
            for (i, n) in p.names.iter().enumerate() {
                let r = rel(&p.values[i], &floats(&case["after"][t][n]));
                assert!(
                    r < 1e-12,
                    "{name} step {t}: {n} differs from PyTorch by {r:e}"
                );
            }
        }
    }
}
