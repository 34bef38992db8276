//! Diffusion models (issue 27, item 2): the noise schedules, the timestep embedding and one
//! DDPM and DDIM step against float64 values computed apart from netc
//! (fixtures/diffusion_fixture.json, made by fixtures/make_diffusion_fixture.py); the training
//! fields (x_t from the `noise` input's eps); the moving average of the weights; and the reverse
//! chain of a tiny network, deterministic for a seed.

use netc_compiler::compile;
use netc_compiler::train_config::{self, Betas, Field, MinimiseConfig, Task};
use netc_runtime::cpu::Params;
use netc_runtime::diffusion::{self, Chain, NoiseSchedule, Sampler};
use netc_runtime::rng::Rng;
use netc_runtime::session::ema_update;
use serde_json::Value;

use crate::golden::floats;

fn fixture() -> Value {
    let path = format!(
        "{}/tests/fixtures/diffusion_fixture.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
}

/// Relative difference, elementwise (the values span five decades).
fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs() / w.abs().max(1e-300);
        assert!(e < tol, "{what}[{i}]: {g} against {w} ({e:e})");
    }
}

#[test]
fn schedules_match_the_closed_form() {
    let f = fixture();
    let t = f["T"].as_u64().expect("T") as usize;
    let at: Vec<usize> = floats(&f["at"]).iter().map(|&x| x as usize).collect();
    let linear = NoiseSchedule::new(
        Betas::Linear {
            start: 1e-4,
            end: 0.02,
        },
        t,
    );
    let cosine = NoiseSchedule::new(Betas::Cosine { s: 0.008 }, t);
    for (s, name) in [(&linear, "linear"), (&cosine, "cosine")] {
        let beta: Vec<f64> = at.iter().map(|&i| s.betas[i]).collect();
        let abar: Vec<f64> = at.iter().map(|&i| s.abar[i]).collect();
        assert_close(&beta, &floats(&f[format!("{name}_beta")]), 1e-12, name);
        assert_close(&abar, &floats(&f[format!("{name}_abar")]), 1e-12, name);
    }
    // DDPM's figures: abar_T is about 4e-5, so x_T is noise.
    assert!(linear.abar[t - 1] < 5e-5 && linear.abar[t - 1] > 3e-5);
}

#[test]
fn the_timestep_embedding_matches_ddpms() {
    for case in fixture()["embedding"].as_array().expect("cases") {
        let t = case["t"].as_f64().expect("t");
        let w = case["width"].as_u64().expect("width") as usize;
        let got: Vec<f64> = diffusion::timestep_embedding(t, w)
            .iter()
            .map(|&v| v as f64)
            .collect();
        let want = floats(&case["values"]);
        for (g, w) in got.iter().zip(&want) {
            // f32 values of sines and cosines.
            assert!((g - w).abs() < 1e-6, "t {t}: {g} against {w}");
        }
    }
}

/// The library's `timestep_embedding(dim)` block, run on the CPU executor, against the trainer's
/// embedding (`diffusion::timestep_embedding`, f64 then rounded to f32): in f64 to the f32
/// rounding of the reference (2^-24, 6e-8); in f32 to 1e-6 beyond the rounding of its arguments
/// t f_i: the exponent ln f_i = i c is off by |ln f_i| 2^-23 (c's rounding and the product's),
/// the exp adds an ulp and t f_i half of one, so |t f_i| (|ln f_i| + 1.5) 2^-23 at worst
/// (2e-4 at t = 999); exact where the arguments are (t = 0, and every f_0 = 1).
#[test]
fn the_library_block_embeds_as_the_trainer_does() {
    use ndarray::Array2;
    let ts = [0.0, 1.0, 7.0, 99.0, 500.0, 999.0];
    for dim in [4usize, 8, 64, 128] {
        let src =
            format!("net te {{\n input t: 1\n e = t -> timestep_embedding({dim}) : {dim}\n}}");
        let m = compile("te.net", &src).unwrap_or_else(|d| panic!("{}", d.render()));
        let net = &m.networks[0];
        let out = net.outputs[0].1;
        let p64: Params<f64> = Params::init(net, &mut Rng::new(1));
        let x64 = Array2::from_shape_vec((ts.len(), 1), ts.to_vec()).expect("a column");
        let e64 = netc_runtime::cpu::forward(net, &p64, x64.view(), false, 1).expect("f64");
        let x32 = x64.mapv(|v| v as f32);
        let e32 = netc_runtime::cpu::forward(net, &p64.cast::<f32>(), x32.view(), false, 1);
        let e32 = e32.expect("f32");
        let (e64, e32) = (e64.get(out), e32.get(out));
        let half = dim / 2;
        let step = 10000f64.ln() / (half - 1) as f64;
        for (r, &t) in ts.iter().enumerate() {
            let want = diffusion::timestep_embedding(t, dim);
            assert_eq!(e64.ncols(), want.len(), "dim {dim}");
            for (i, &w) in want.iter().enumerate() {
                let ln_f = -((i % half) as f64) * step;
                let arg = t * ln_f.exp();
                let (g64, g32) = (e64[[r, i]], e32[[r, i]] as f64);
                assert!(
                    (g64 - w as f64).abs() < 6e-8,
                    "f64, dim {dim}, t {t}, [{i}]: {g64} against {w}"
                );
                let exact = t == 0.0 || i % half == 0;
                let tol = if exact {
                    1e-6
                } else {
                    1e-6 + arg * (1.5 - ln_f) * 2f64.powi(-23)
                };
                let e = (g32 - w as f64).abs();
                assert!(
                    e < tol,
                    "f32, dim {dim}, t {t}, [{i}]: {g32} against {w} ({e:e} over {tol:e})"
                );
            }
        }
    }
}

#[test]
fn one_reverse_step_matches_ddpm_and_ddim() {
    let f = fixture();
    let s = NoiseSchedule::new(
        Betas::Linear {
            start: 1e-4,
            end: 0.02,
        },
        1000,
    );
    let num = |c: &Value, k: &str| c[k].as_f64().expect(k);
    for c in f["ddpm"].as_array().expect("ddpm") {
        let t = num(c, "t") as usize;
        let z = if t == 0 { 0.0 } else { num(c, "z") };
        let clip = c["clip"].as_bool().expect("clip");
        let got = s.ddpm_step(t, num(c, "x"), num(c, "eps"), z, clip);
        assert_close(&[got], &[num(c, "out")], 1e-12, &format!("ddpm {c}"));
    }
    for c in f["ddim"].as_array().expect("ddim") {
        let t = num(c, "t") as usize;
        let prev = c["prev"].as_u64().map(|p| p as usize);
        let clip = c["clip"].as_bool().expect("clip");
        let (x, e, z, eta) = (num(c, "x"), num(c, "eps"), num(c, "z"), num(c, "eta"));
        let got = s.ddim_step(t, prev, x, e, z, eta, clip);
        assert_close(&[got], &[num(c, "out")], 1e-12, &format!("ddim {c}"));
    }
}

#[test]
fn the_training_fields_noise_the_images_with_the_noise_inputs_eps() {
    let s = NoiseSchedule::new(
        Betas::Linear {
            start: 1e-4,
            end: 0.02,
        },
        1000,
    );
    let fields = [
        Field::Noisy,
        Field::Timestep,
        Field::Noise,
        Field::TimestepEmbedding,
    ];
    let widths = [6, 1, 6, 4];
    let rows = 5;
    let x0: Vec<f32> = (0..rows * 6).map(|i| (i as f32 / 15.0) - 1.0).collect();
    let eps: Vec<f32> = (0..rows * 6)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let mut ins = vec![vec![], vec![], eps.clone(), vec![]];
    diffusion::fill(
        &mut ins,
        &fields,
        &widths,
        &x0,
        &s,
        (3, 17),
        (0..rows, rows),
    );
    assert_eq!(ins[2], eps, "the noise input keeps its eps");
    let ts = diffusion::timesteps(3, 17, rows, 1000);
    assert_eq!(ins[1], ts.iter().map(|&t| t as f32).collect::<Vec<_>>());
    assert!(ts.iter().all(|&t| t < 1000));
    assert!(
        ts.windows(2).any(|w| w[0] != w[1]),
        "one t per example: {ts:?}"
    );
    for (j, &t) in ts.iter().enumerate() {
        let (a, b) = (s.abar[t].sqrt(), (1.0 - s.abar[t]).sqrt());
        for i in j * 6..(j + 1) * 6 {
            let want = a * x0[i] as f64 + b * eps[i] as f64;
            assert!((ins[0][i] as f64 - want).abs() < 1e-6, "x_t[{i}] at t {t}");
        }
        let emb = diffusion::timestep_embedding(t as f64, 4);
        assert_eq!(ins[3][j * 4..(j + 1) * 4], emb[..]);
    }
    // Another step draws other timesteps; the same step the same ones (a resumed run).
    assert_ne!(diffusion::timesteps(3, 18, rows, 1000), ts);
    assert_eq!(diffusion::timesteps(3, 17, rows, 1000), ts);
}

#[test]
fn the_moving_average_follows_torchs_update() {
    let p = |v: Vec<f32>, trained: bool| Params {
        names: vec!["w".into()],
        shapes: vec![vec![v.len()]],
        values: vec![v],
        trainable: vec![trained],
    };
    let mut ema = p(vec![1.0, -2.0, 0.5], true);
    let w = p(vec![3.0, 0.0, 0.5], true);
    ema_update(&mut ema, &w, 0.9);
    // 0.9 * ema + 0.1 * w.
    let want = [0.9 * 1.0 + 0.1 * 3.0, 0.9 * -2.0, 0.5f64];
    for (g, w) in ema.values[0].iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-7, "{g} against {w}");
    }
    // Running statistics are copied, not averaged.
    let mut stats = p(vec![1.0], false);
    ema_update(&mut stats, &p(vec![5.0], false), 0.9);
    assert_eq!(stats.values[0], vec![5.0]);
}

/// A tiny diffusion model: a conv of x_t and a projection of t's embedding.
const TINY: &str = "net tiny {
  input x: 1x4x4
  input temb: 8
  input eps: 1x4x4
  tp = temb -> dense(16) -> tanh
  h = x -> conv(1, k=3, pad=same) -> tanh -> flatten
  both = add(h, tp) -> dense(16) -> reshape(1x4x4)
  loss = mse(both, eps)
  output both
  output loss
}
train {
  task = minimise
  loss = loss
  inputs = {x: noisy, temb: timestep_embedding, eps: noise}
  diffusion = linear(start=1e-4, end=0.02, steps=50)
  prediction = both
  range = [-1, 1]
}
";

fn tiny() -> (netc_compiler::ir::Network, MinimiseConfig) {
    let m = compile("t.net", TINY).unwrap_or_else(|d| panic!("{}", d.render()));
    let cfg = train_config::read(&m)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .expect("a section");
    let Task::Minimise(mc) = cfg.task else {
        panic!("not minimise")
    };
    (m.networks[0].clone(), mc)
}

#[test]
fn the_reverse_chain_is_deterministic_for_a_seed() {
    let (net, m) = tiny();
    let d = m.diffusion.clone().expect("a schedule");
    let p: Params<f32> = Params::init(&net, &mut Rng::new(4));
    let chain = |sampler, seed| Chain {
        sampler,
        count: 3,
        seed,
        clip: true,
        snapshots: 4,
        progress: false,
    };
    for sampler in [
        Sampler::Ddpm,
        Sampler::Ddim { steps: 7, eta: 0.0 },
        Sampler::Ddim { steps: 5, eta: 1.0 },
    ] {
        let (a, snaps) = diffusion::sample(&net, &p, &m, &d, &chain(sampler, 9)).expect("runs");
        let (b, _) = diffusion::sample(&net, &p, &m, &d, &chain(sampler, 9)).expect("runs");
        let (c, _) = diffusion::sample(&net, &p, &m, &d, &chain(sampler, 10)).expect("runs");
        assert_eq!(a.len(), 3 * 16);
        assert_eq!(a, b, "{sampler:?}: same seed, same samples");
        assert_ne!(a, c, "{sampler:?}: another seed, other samples");
        // The start noise, then 4 snapshots, the last the samples.
        assert_eq!(snaps.len(), 5, "{sampler:?}");
        assert_eq!(snaps[snaps.len() - 1], a);
        // Clipping x0 keeps the last step in [-1, 1].
        assert!(a.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-6));
    }
}

#[test]
fn ddim_over_every_step_with_eta_one_is_the_ancestral_chain() {
    // DDIM over all T steps with eta = 1 is DDPM's posterior (Song et al., section 4.1): the
    // same variance beta~_t and, unclipped, the same mean; the noise is drawn alike, so the
    // samples agree to rounding.
    let (net, m) = tiny();
    let d = m.diffusion.clone().expect("a schedule");
    let p: Params<f32> = Params::init(&net, &mut Rng::new(4));
    let run = |sampler| {
        let c = Chain {
            sampler,
            count: 2,
            seed: 1,
            clip: false,
            snapshots: 0,
            progress: false,
        };
        diffusion::sample(&net, &p, &m, &d, &c).expect("runs").0
    };
    let ddpm = run(Sampler::Ddpm);
    let ddim = run(Sampler::Ddim {
        steps: 50,
        eta: 1.0,
    });
    for (a, b) in ddpm.iter().zip(&ddim) {
        assert!((a - b).abs() < 1e-3, "{a} against {b}");
    }
}

#[test]
fn bad_step_counts_are_refused() {
    let (net, m) = tiny();
    let d = m.diffusion.clone().expect("a schedule");
    let p: Params<f32> = Params::init(&net, &mut Rng::new(4));
    for steps in [0, 51] {
        let c = Chain {
            sampler: Sampler::Ddim { steps, eta: 0.0 },
            count: 1,
            seed: 1,
            clip: true,
            snapshots: 0,
            progress: false,
        };
        let e = diffusion::sample(&net, &p, &m, &d, &c).expect_err("refused");
        assert!(
            e.to_string().contains("between 1 and the model's 50"),
            "{e}"
        );
    }
}
