//! AdamW with a decay rule, the warm-up cosine schedule and clipping by the global norm on the
//! GPU program against the CPU reference: a few training steps from the same weights give the
//! same parameters on every read path. With NETC_REQUIRE_GPU=1 a missing adapter fails these
//! tests instead of skipping them.

use netc_compiler::compile;
use netc_compiler::schedule::{DecayRule, Optimizer, UpdateRule};
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
