//! AdamW with a decay rule, the warm-up cosine schedule and clipping by the global norm on the
//! GPU program against the CPU reference: a few training steps from the same weights give the
//! same parameters on every read path; so do the per-tensor multipliers of `param_mult`
//! (Caffe's lr_mult / decay_mult). With NETC_REQUIRE_GPU=1 a missing adapter fails these
//! tests instead of skipping them.

use netc_compiler::compile;
use netc_compiler::schedule::{DecayRule, Optimizer, ParamMult, UpdateRule};
use netc_compiler::train_config::{Schedule, Warmup};
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use netc_runtime::session::{Classifier, Executor};

use crate::gpus::{gpus, rel_err};

/// Lengths that are not whole quads (5x7 weights, 7 and 3 biases), so the norm's masking of
/// the last quad counts; weights of rank 2 decay, biases and the `o` layer do not.
const MODEL: &str =
    "net m { input x: 5\n h = dense(7) -> relu -> dense(6) -> tanh\n o = dense(3) }\n";

fn rule() -> UpdateRule {
    UpdateRule {
        opt: Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        decay: DecayRule {
            min_rank: 2,
            no_decay: vec!["o.*".into()],
            mults: vec![],
        },
        clip: Some(0.05),
    }
}

#[test]
fn adamw_warmup_cosine_and_clipping_agree_on_both_executors() {
    let gpus = gpus();
    if std::env::var("NETC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(!gpus.is_empty(), "NETC_REQUIRE_GPU=1 but no adapter");
    }
    let m = compile("m.net", MODEL).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let schedule = Schedule::WarmupCosine {
        warmup: Warmup::Steps(2),
        min_lr: 1e-4,
    };
    let (batch, steps, lr) = (8, 5, 3e-2);
    for gpu in gpus {
        let reads = gpu.reads;
        let mut rng = Rng::new(3);
        let params: Params<f32> = Params::init(net, &mut rng);
        let mut g = Classifier::new(
            net,
            params.clone(),
            rule(),
            batch,
            5,
            Executor::Gpu(Box::new(gpu)),
        )
        .expect("gpu session");
        let mut c =
            Classifier::new(net, params.clone(), rule(), batch, 5, Executor::Cpu).expect("cpu");
        let x: Vec<f32> = (0..batch * 5)
            .map(|_| rng.uniform(-1.0, 1.0) as f32)
            .collect();
        let mut y = vec![0f32; batch * 3];
        for r in 0..batch {
            y[r * 3 + rng.below(3) as usize] = 1.0;
        }
        for t in 0..steps {
            let step_lr = schedule.step_lr(lr, t, steps);
            g.train_step(&x, &y, step_lr).expect("gpu step");
            c.train_step(&x, &y, step_lr).expect("cpu step");
            // Clipping must act, or the test would not check it.
            let grads = c.grads().expect("grads");
            assert!(
                cpu::clip_scale(&grads, Some(0.05)) < 0.9,
                "step {t}: the norm is within 0.05"
            );
            let (pg, pc) = (g.params().expect("params"), c.params().expect("params"));
            for (i, name) in pc.names.iter().enumerate() {
                let e = rel_err(&pg.values[i], &pc.values[i]);
                assert!(e < 1e-5, "{reads:?} step {t} {name}: relative error {e}");
            }
        }
        // The rule acted: one step from the same weights without decay (same gradients, same
        // clipping) moves the decayed weights differently and the others identically.
        let plain = UpdateRule {
            decay: DecayRule {
                min_rank: 9,
                no_decay: vec![],
                mults: vec![],
            },
            ..rule()
        };
        let mut n =
            Classifier::new(net, params.clone(), plain, batch, 5, Executor::Cpu).expect("cpu");
        let mut c =
            Classifier::new(net, params.clone(), rule(), batch, 5, Executor::Cpu).expect("cpu");
        n.train_step(&x, &y, lr).expect("step");
        c.train_step(&x, &y, lr).expect("step");
        let (pn, pc) = (n.params().expect("params"), c.params().expect("params"));
        for (i, name) in pc.names.iter().enumerate() {
            if pc.shapes[i].len() >= 2 && !name.starts_with("o.") {
                let e = rel_err(&pn.values[i], &pc.values[i]);
                assert!(e > 1e-4, "decay left {name} alone ({e})");
            } else {
                assert_eq!(pn.values[i], pc.values[i], "{name} must not decay");
            }
        }
    }
}

/// Caffe's `lr_mult` / `decay_mult` (`param_mult`): biases at twice the rate without decay,
/// `o.weight` at half the rate with three times the decay.
fn mults() -> Vec<ParamMult> {
    let m = |pattern: &str, lr, decay| ParamMult {
        pattern: pattern.into(),
        lr,
        decay,
    };
    vec![m("*.bias", 2.0, 0.0), m("o.weight", 0.5, 3.0)]
}

fn with_mults(opt: Optimizer, mults: Vec<ParamMult>) -> UpdateRule {
    UpdateRule {
        opt,
        decay: DecayRule {
            min_rank: 0,
            no_decay: vec![],
            mults,
        },
        clip: None,
    }
}

#[test]
fn param_mults_act_and_agree_on_both_executors() {
    if std::env::var("NETC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(!gpus().is_empty(), "NETC_REQUIRE_GPU=1 but no adapter");
    }
    let m = compile("m.net", MODEL).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let (batch, lr) = (8, 3e-2);
    let mut rng = Rng::new(5);
    let params: Params<f32> = Params::init(net, &mut rng);
    let x: Vec<f32> = (0..batch * 5)
        .map(|_| rng.uniform(-1.0, 1.0) as f32)
        .collect();
    let mut y = vec![0f32; batch * 3];
    for r in 0..batch {
        y[r * 3 + rng.below(3) as usize] = 1.0;
    }
    // On the CPU, plain SGD's first step from the same weights: a bias moves twice as far,
    // o.weight half as far, the other weights as far.
    let plain = Optimizer::Sgd {
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let step = |rule: UpdateRule| {
        let mut c =
            Classifier::new(net, params.clone(), rule, batch, 5, Executor::Cpu).expect("cpu");
        c.train_step(&x, &y, lr).expect("step");
        c.params().expect("params")
    };
    let (a, b) = (
        step(with_mults(plain, vec![])),
        step(with_mults(plain, mults())),
    );
    for (i, name) in a.names.iter().enumerate() {
        let k = match name.as_str() {
            n if n.ends_with(".bias") => 2.0,
            "o.weight" => 0.5,
            _ => 1.0,
        };
        for ((&w0, &wa), &wb) in params.values[i].iter().zip(&a.values[i]).zip(&b.values[i]) {
            let (da, db) = ((wa - w0) as f64, (wb - w0) as f64);
            // Both are differences of f32 weights: a few roundings of |w| apart.
            let ulp = 4.0 * f64::from(f32::EPSILON) * (1.0 + f64::from(w0.abs()));
            assert!((db - k * da).abs() <= ulp, "{name}: {db} vs {k} x {da}");
        }
    }
    // SGD with momentum and AdamW, with decay, a few steps on the GPU against the CPU.
    let opts = [
        Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 0.05,
        },
        Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        },
    ];
    for opt in opts {
        for gpu in gpus() {
            let reads = gpu.reads;
            let rule = with_mults(opt, mults());
            let mut g = Classifier::new(
                net,
                params.clone(),
                rule.clone(),
                batch,
                5,
                Executor::Gpu(Box::new(gpu)),
            )
            .expect("gpu session");
            let mut c =
                Classifier::new(net, params.clone(), rule, batch, 5, Executor::Cpu).expect("cpu");
            for t in 0..4 {
                g.train_step(&x, &y, lr).expect("gpu step");
                c.train_step(&x, &y, lr).expect("cpu step");
                let (pg, pc) = (g.params().expect("params"), c.params().expect("params"));
                for (i, name) in pc.names.iter().enumerate() {
                    let e = rel_err(&pg.values[i], &pc.values[i]);
                    assert!(
                        e < 1e-5,
                        "{opt:?} {reads:?} step {t} {name}: relative error {e}"
                    );
                }
            }
        }
    }
}
