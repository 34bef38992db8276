//! A GPT's training step on the GPU program against the CPU reference (issue 26): the same
//! windows and weights give the same loss and parameters after a step, on every read path,
//! and a small GPT learns a repeating text to near-zero loss on the GPU path as on the CPU.
//! With NETC_REQUIRE_GPU=1 a missing adapter fails these tests instead of skipping them.

use netc_compiler::compile;
use netc_compiler::schedule::{DecayRule, Optimizer, UpdateRule};
use netc_runtime::cpu::Params;
use netc_runtime::data::text::{Corpus, Windows};
use netc_runtime::rng::Rng;
use netc_runtime::session::{Classifier, Executor};

use crate::gpus::{gpus, rel_err};

/// Two pre-LN blocks with causal attention over odd sizes (windows of 12, width 20, 2 heads
/// of 10, 13 characters), the head tied to the embedding.
const GPT: &str = "net gpt {
  input tokens: 12
  wte = param([13, 20], init=gaussian(0.02))
  tok = gather(wte, tokens)
  x = tok -> positions(12, 20)
  b1 = transformer(20, 2, 36, causal=true)
  b2 = transformer(20, 2, 36, causal=true)
  ln_f = layernorm(20)
  head = wte -> transpose
  logits = matmul(ln_f, head)
  output logits
}
";

/// The step's comparison uses SGD: the keys' bias has an exact gradient of 0 (a softmax does
/// not change when every score of a query moves by the same q.b), so its computed gradient
/// is rounding noise, which Adam divides by its own size into steps of the full rate,
/// different on each executor. SGD keeps the noise at its size; AdamW's kernels are checked
/// against the reference in gpu_train_pieces.rs.
fn sgd() -> UpdateRule {
    UpdateRule {
        opt: Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 1e-3,
        },
        decay: DecayRule {
            min_rank: 2,
            no_decay: vec![],
            mults: vec![],
        },
        clip: Some(1.0),
    }
}

fn rule() -> UpdateRule {
    UpdateRule {
        opt: Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        decay: DecayRule {
            min_rank: 2,
            no_decay: vec![],
            mults: vec![],
        },
        clip: Some(1.0),
    }
}

fn require(gpus: &[netc_runtime::gpu::Gpu]) {
    if std::env::var("NETC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(!gpus.is_empty(), "NETC_REQUIRE_GPU=1 but no adapter");
    }
}

/// A text of 13 characters in a fixed cycle, as a corpus for windows of 12.
fn corpus() -> Corpus {
    let dir = std::env::temp_dir().join(format!("netc-gpu-lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let path = dir.join("cycle.txt");
    std::fs::write(&path, "abcdefghijkl\n".repeat(60)).expect("text");
    let c = Corpus::load(&path, 0.1, 12, 13, None).expect("corpus");
    std::fs::remove_dir_all(&dir).ok();
    c
}

fn step(s: &mut Classifier, w: &Windows, lr: f64) {
    s.train_step(&w.ids, &w.onehot(13), lr).expect("step");
}

#[test]
fn a_gpt_step_agrees_on_both_executors() {
    let gpus = gpus();
    require(&gpus);
    let m = compile("gpt.net", GPT).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let c = corpus();
    let batch = 5;
    for gpu in gpus {
        let reads = gpu.reads;
        let params: Params<f32> = Params::init(net, &mut Rng::new(4));
        let gpu = Executor::Gpu(Box::new(gpu));
        let mut g = Classifier::per_position(net, params.clone(), sgd(), (batch, 3), gpu)
            .expect("gpu session");
        let mut cpu = Classifier::per_position(net, params, sgd(), (batch, 3), Executor::Cpu)
            .expect("cpu session");
        assert_eq!((g.positions, g.classes), (12, 12 * 13));
        for t in 0..3 {
            let w = c.train_batch(batch, 12, 9, t);
            step(&mut g, &w, 0.5);
            step(&mut cpu, &w, 0.5);
        }
        let (sg, sc) = (g.take_stats().expect("gpu"), cpu.take_stats().expect("cpu"));
        assert_eq!(sc.rows, (3 * batch * 12) as f64, "a row per position");
        assert!(
            (sg.loss - sc.loss).abs() < 1e-4 * sc.loss,
            "{reads:?}: {sg:?} {sc:?}"
        );
        let (pg, pc) = (g.params().expect("gpu"), cpu.params().expect("cpu"));
        for (i, name) in pc.names.iter().enumerate() {
            let e = rel_err(&pg.values[i], &pc.values[i]);
            assert!(e < 1e-4, "{reads:?} {name}: relative error {e}");
        }
    }
}

#[test]
fn a_small_gpt_learns_a_repeating_text_on_the_gpu() {
    let gpus = gpus();
    require(&gpus);
    let m = compile("gpt.net", GPT).unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let c = corpus();
    // One read path is enough to show learning; the step itself is checked on each above.
    let Some(gpu) = gpus.into_iter().next() else {
        return;
    };
    let params: Params<f32> = Params::init(net, &mut Rng::new(4));
    let mut s = Classifier::per_position(net, params, rule(), (8, 1), Executor::Gpu(Box::new(gpu)))
        .expect("gpu session");
    for t in 0..150 {
        let w = c.train_batch(8, 12, 1, t);
        step(&mut s, &w, 3e-3);
    }
    s.take_stats().expect("stats");
    for w in c.held_batches(8, 12, None) {
        s.eval_batch(&w.ids, &w.onehot(13)).expect("eval");
    }
    let st = s.take_eval_stats().expect("eval stats");
    let loss = st.loss / st.rows;
    // ln 13 = 2.56 at the start; every next character is certain.
    assert_eq!(
        st.rows,
        (c.held.len() - 1) as f64,
        "every held-out character once"
    );
    assert!(loss < 0.05, "validation loss {loss} after 150 steps");
}
