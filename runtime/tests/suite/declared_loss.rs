//! The standard library's losses (blocks of primitives, gradients derived) and declared losses
//! with several inputs: against PyTorch's float64 values and gradients (fixtures/
//! loss_golden.json, made by fixtures/make_prim_golden.py), and against central differences
//! in f64 inside small networks, a tied embedding head included.

use ndarray::{Array2, ArrayView2};
use netc_compiler::compile;
use netc_compiler::ir::Network;
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use serde_json::Value;

use crate::golden;
use golden::{floats, rel};

fn net_of(src: &str) -> Network {
    let m = compile("t.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    m.networks.into_iter().next().expect("a network")
}

fn check_golden(case: &Value) {
    let name = case["name"].as_str().expect("name");
    let net = net_of(case["src"].as_str().expect("src"));
    let batch = case["batch"].as_u64().expect("batch") as usize;
    let p: Params<f64> = Params::init(&net, &mut Rng::new(1));
    let inputs: Vec<Vec<f64>> = case["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|pair| floats(&pair[1]))
        .collect();
    assert_eq!(inputs.len(), net.inputs.len(), "{name}: inputs");
    let views: Vec<ArrayView2<f64>> = inputs
        .iter()
        .map(|v| ArrayView2::from_shape((batch, v.len() / batch), v).expect("rows"))
        .collect();
    let acts = cpu::forward_inputs(&net, &p, &views, true, 0, 0).expect("forward");
    let out = net.outputs[0].1;
    let y: Vec<f64> = acts.get(out).iter().copied().collect();
    let e = rel(&y, &floats(&case["y"]));
    assert!(e < 1e-12, "{name}: loss differs by {e:e}: {y:?}");
    if case["dx"].is_null() {
        return;
    }
    let r = floats(&case["r"]);
    let dy = Array2::from_shape_vec((batch, 1), r).expect("r");
    let (_, dx) = cpu::backward(&net, &p, &acts, out, dy);
    let got: Vec<f64> = dx.iter().copied().collect();
    let e = rel(&got, &floats(&case["dx"]));
    assert!(e < 1e-12, "{name}: gradient differs by {e:e}");
}

#[test]
fn library_losses_match_pytorch() {
    let path = format!(
        "{}/tests/fixtures/loss_golden.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture"))
        .expect("fixture is JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 12);
    for case in cases {
        check_golden(case);
    }
}

/// The mean over the batch of the loss node `loss` at parameters `p`.
fn mean_loss(net: &Network, p: &Params<f64>, xs: &[Array2<f64>], loss: &str) -> f64 {
    let views: Vec<ArrayView2<f64>> = xs.iter().map(|x| x.view()).collect();
    let acts = cpu::forward_inputs(net, p, &views, true, 7, 0).expect("forward");
    let n = net.resolve(loss).expect("loss node");
    acts.get(n).mean().expect("a batch")
}

/// Every parameter's derived gradient of the batch-mean loss against five-point central
/// differences (h = 1e-4) in f64: relative difference under 1e-7, each tensor's gradient
/// nonzero.
fn gradcheck(src: &str, loss: &str, xs: &[Array2<f64>]) {
    let net = net_of(src);
    let mut rng = Rng::new(5);
    let mut p: Params<f64> = Params::init(&net, &mut rng);
    for v in p.values.iter_mut().flatten() {
        *v += 0.05 * rng.normal();
    }
    let views: Vec<ArrayView2<f64>> = xs.iter().map(|x| x.view()).collect();
    let acts = cpu::forward_inputs(&net, &p, &views, true, 7, 0).expect("forward");
    let n = net.resolve(loss).expect("loss node");
    let batch = xs[0].nrows();
    let dy = Array2::from_elem((batch, 1), 1.0 / batch as f64);
    let (grads, _) = cpu::backward_opt(&net, &p, &acts, n, dy, false);
    assert!(!p.names.is_empty(), "{src}: no parameters to check");
    for (i, g) in grads.iter().enumerate() {
        let g = g
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no gradient", p.names[i]));
        let (mut ga, mut gn) = (vec![], vec![]);
        for j in (0..g.len()).step_by((g.len() / 25).max(1)) {
            let mut q = p.clone();
            let w = q.values[i][j];
            let mut f = |d: f64| {
                q.values[i][j] = w + d;
                mean_loss(&net, &q, xs, loss)
            };
            let h = 1e-4;
            let d = (8.0 * (f(h) - f(-h)) - (f(2.0 * h) - f(-2.0 * h))) / (12.0 * h);
            ga.push(g[j]);
            gn.push(d);
        }
        let e = rel(&ga, &gn);
        let norm: f64 = ga.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            e < 1e-7 && norm > 0.0,
            "{src}: {} differs by {e:e} (norm {norm:e})",
            p.names[i]
        );
    }
}

fn uniform(rows: usize, cols: usize, lo: f64, hi: f64, seed: u64) -> Array2<f64> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(lo, hi))
}

fn ids(rows: usize, cols: usize, n: u64, seed: u64) -> Array2<f64> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.below(n) as f64)
}

#[test]
fn mse_and_bce_gradients_through_a_layer() {
    let (x, t) = (uniform(3, 5, -1.0, 1.0, 1), uniform(3, 6, 0.0, 1.0, 2));
    for block in [
        "mse",
        "mse_sum",
        "bce",
        "bce_sum",
        "bce_logits",
        "bce_logits_sum",
    ] {
        let head = if block.starts_with("bce") && !block.contains("logits") {
            "dense(6) -> sigmoid"
        } else {
            "dense(6)"
        };
        let src =
            format!("net t {{ input x: 5\n input t: 6\n h = x -> {head}\n loss = {block}(h, t) }}");
        gradcheck(&src, "loss", &[x.clone(), t.clone()]);
    }
}

#[test]
fn cross_entropy_gradients_per_example_and_over_tokens() {
    let x = uniform(4, 5, -1.0, 1.0, 3);
    for s in ["0", "0.1"] {
        let src = format!("net t {{ input x: 5\n input label: 1\n logits = x -> dense(7)\n loss = cross_entropy(logits, label, smoothing={s}) }}");
        gradcheck(&src, "loss", &[x.clone(), ids(4, 1, 7, 4)]);
    }
    // A sequence of 3 tokens of 4 features, one target id per token.
    let tokens = uniform(2, 12, -1.0, 1.0, 5);
    let src = "net t { input x: 3x4\n input next: 3\n logits = x -> dense(6)\n loss = cross_entropy(logits, next, smoothing=0.2) }";
    gradcheck(src, "loss", &[tokens, ids(2, 3, 6, 6)]);
}

#[test]
fn gaussian_kl_and_a_vae_like_objective() {
    // An encoder's mean and log-variance, a reparameterised sample with noise, a decoder, and
    // the summed BCE plus the KL: the objective of models/vae.net to come, in miniature.
    let src = "net t {
      input image: 6
      input eps: 2
      h = image -> dense(4) -> tanh
      mu = h -> dense(2)
      logvar = h -> dense(2)
      std = logvar -> scale(0.5) -> exp
      noise = mul(eps, std)
      z = add(mu, noise)
      recon = z -> dense(6) -> sigmoid
      rec = bce_sum(recon, image)
      kl = gaussian_kl(mu, logvar)
      loss = add(rec, kl)
    }";
    let image = uniform(3, 6, 0.0, 1.0, 7);
    let eps = uniform(3, 2, -1.5, 1.5, 8);
    gradcheck(src, "loss", &[image, eps]);
}

#[test]
fn the_library_reparameterisation_with_its_noise_fixed() {
    // models/vae.net's objective written with the library's `reparameterise`: the gradient
    // reaches mu and logvar through the draw, the noise an input held fixed.
    let src = "net t {
      input image: 6
      input eps: 2
      h = image -> dense(4) -> tanh
      mu = h -> dense(2)
      logvar = h -> dense(2)
      z = reparameterise(mu, logvar, eps)
      recon = z -> dense(6) -> sigmoid
      rec = bce_sum(recon, image)
      kl = gaussian_kl(mu, logvar)
      loss = add(rec, kl)
    }";
    let image = uniform(3, 6, 0.0, 1.0, 11);
    let eps = uniform(3, 2, -1.5, 1.5, 12);
    gradcheck(src, "loss", &[image, eps]);
}

#[test]
fn a_tied_embedding_head_sums_both_gradients() {
    // The table is one parameter, used by the embedding and, transposed, by the output head:
    // its gradient is the sum of both uses.
    let src = "net t {
      input tokens: 4
      input next: 4
      table = param([9, 5], init=gaussian(0.5))
      x = gather(table, tokens)
      h = x -> dense(5) -> tanh
      wt = table -> transpose
      logits = matmul(h, wt)
      loss = cross_entropy(logits, next)
    }";
    let net = net_of(src);
    let tables: Vec<_> = net
        .param_specs()
        .into_iter()
        .filter(|s| s.name == "table")
        .collect();
    assert_eq!(tables.len(), 1, "the table is one parameter");
    gradcheck(src, "loss", &[ids(3, 4, 9, 9), ids(3, 4, 9, 10)]);
}

#[test]
fn checkpoints_name_library_parameters_as_pytorch_and_keep_their_optimizer_state() {
    use netc_compiler::schedule::Optimizer;
    use netc_runtime::cpu::OptState;
    use netc_runtime::io::run_checkpoint::{load_params, save_params};
    use netc_runtime::io::Checkpoint;
    let net = net_of("net t { input x: 3x4\n b1 = layernorm(4)\n y = dense(2) }");
    let p: Params<f32> = Params::init(&net, &mut Rng::new(1));
    let opt = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut st = OptState::new(&p, &opt);
    for (k, slot) in st.slots.iter_mut().enumerate() {
        for v in slot.iter_mut() {
            v.iter_mut().for_each(|x| *x = 1.0 + k as f32);
        }
    }
    let mut ck = Checkpoint {
        tensors: vec![],
        metadata: Default::default(),
    };
    save_params(&mut ck, None, (&p, &st), 3);
    let keys: Vec<&str> = ck.tensors.iter().map(|t| t.0.as_str()).collect();
    // PyTorch's module path: `b1.weight`, its state `optimizer.b1.weight.exp_avg`.
    assert!(
        keys.contains(&"b1.weight") && keys.contains(&"y.bias"),
        "{keys:?}"
    );
    assert!(keys.contains(&"optimizer.b1.weight.exp_avg_sq"), "{keys:?}");
    let (back, bst) = load_params(&ck, &net, &p, 2).expect("loads");
    assert_eq!(back.values, p.values);
    // The moments of every tensor come back (a library block's used to be read as an old
    // checkpoint's `.opt0` and reset to zero on --resume).
    assert_eq!(bst.slots, st.slots);
    // A checkpoint of the earlier names (`b1/weight`, `optimizer.b1/weight.exp_avg`) loads.
    let old = Checkpoint {
        tensors: ck
            .tensors
            .iter()
            .map(|(k, s, v)| (k.replace("b1.", "b1/"), s.clone(), v.clone()))
            .collect(),
        metadata: Default::default(),
    };
    let (back, bst) = load_params(&old, &net, &p, 2).expect("old names load");
    assert_eq!(
        (back.values, bst.slots),
        (p.values.clone(), st.slots.clone())
    );
}
