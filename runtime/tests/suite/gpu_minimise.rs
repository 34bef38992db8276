//! A declared loss (`task = minimise`) trained on the GPU program against the CPU executor:
//! a small VAE (two inputs bound to images and noise, the loss a sum of a binary
//! cross-entropy and a KL term) and a small diffusion-like network (three inputs, a
//! convolution, a group norm and a timestep MLP added per channel, an MSE loss, the moving
//! average of the weights) take three steps on each executor from the same weights and
//! batches, and give the same loss, weights, moments, average and held-out sums; a GPU
//! run's state restored into the CPU executor continues as the CPU run does (checkpoints
//! cross executors). With NETC_REQUIRE_GPU=1 a missing adapter fails these tests.

use netc_compiler::compile;
use netc_compiler::ir::Network;
use netc_compiler::schedule::{Optimizer, UpdateRule};
use netc_runtime::cpu::{OptState, Params};
use netc_runtime::rng::Rng;
use netc_runtime::session::{Executor, Minimiser, Sums};

use crate::gpus::{gpus, rel_err};

const VAE: &str = "net vae {
  input image: 20
  input eps: 3
  hidden = image -> dense(12) -> relu
  mu = hidden -> dense(3)
  logvar = hidden -> dense(3)
  z = reparameterise(mu, logvar, eps)
  recon = z -> dense(12) -> relu -> dense(20) -> sigmoid
  rec = bce_sum(recon, image)
  kl = gaussian_kl(mu, logvar)
  loss = add(rec, kl)
  output loss
}
";

const DIFFUSION: &str = "net unet {
  input x: 1x6x6
  input temb: 8
  input eps: 1x6x6
  tm = temb -> dense(8) -> silu -> dense(4)
  stem = x -> conv(4, k=3, pad=same)
  tp = tm -> unflatten(0, [4, 1, 1])
  h = add(stem, tp) -> groupnorm(2, 4) -> silu -> conv(4, k=3, pad=same)
  skip = x -> conv(4, k=1)
  pred = add(h, skip) -> silu -> conv(1, k=3, pad=same)
  loss = mse(pred, eps)
  output pred
  output loss
}
";

/// The VAE steps with SGD (momentum, weight decay), the diffusion model with Adam: both
/// update kernels. Tensors are compared by the norm of their difference (relative to the
/// CPU's), not element by element: Adam divides each gradient by its own running size, so an
/// element whose gradient is near rounding noise takes a step whose size the rounding
/// decides (`models/ddpm.net` after 3 steps on lavapipe: every tensor within 2.1e-5 by
/// norm, but single elements of `mid.h1.weight` differ by 2.4e-4 of its largest value).
fn sgd() -> UpdateRule {
    Optimizer::Sgd {
        momentum: 0.9,
        weight_decay: 1e-3,
    }
    .into()
}

fn adam() -> UpdateRule {
    Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    }
    .into()
}

/// A model, its optimizer and its moving average's decay.
struct Case {
    src: &'static str,
    rule: fn() -> UpdateRule,
    ema: Option<f64>,
    /// Whether the first input takes images in [0, 1] (else Gaussian values).
    images: bool,
    metric: &'static str,
}

const BATCH: usize = 6;
const STEPS: usize = 3;

fn net(src: &str) -> Network {
    let m = compile("t.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    m.networks[0].clone()
}

/// A batch of `rows` per input: images uniform in [0, 1] for the first input of a VAE,
/// standard Gaussian values otherwise (noise, a noisy image, an embedding).
fn batch(net: &Network, rows: usize, images: bool, rng: &mut Rng) -> Vec<Vec<f32>> {
    (net.inputs.iter().enumerate())
        .map(|(k, &i)| {
            let n = rows * net.graph[i].shape.iter().product::<u64>() as usize;
            (0..n)
                .map(|_| match images && k == 0 {
                    true => rng.next_f64() as f32,
                    false => rng.normal() as f32,
                })
                .collect()
        })
        .collect()
}

fn session(net: &Network, p: &Params<f32>, c: &Case, exec: Executor) -> Minimiser {
    let rule = (c.rule)();
    let mut s = Minimiser::new(net, p.clone(), rule, (BATCH, 5), "loss", exec).expect("session");
    if let Some(d) = c.ema {
        s.keep_ema(d);
    }
    s
}

/// Every tensor of `a` within `tol` of `b`'s (relative to its norm), named when not.
fn same_params(a: &Params<f32>, b: &Params<f32>, tol: f64, what: &str) {
    assert_eq!(a.names, b.names);
    for ((n, x), y) in a.names.iter().zip(&a.values).zip(&b.values) {
        let e = rel_err(x, y);
        assert!(e < tol, "{what} `{n}`: GPU vs CPU relative error {e:.2e}");
    }
}

fn same_state(a: &OptState<f32>, b: &OptState<f32>, names: &[String], tol: f64) {
    assert_eq!(a.step, b.step);
    for (sa, sb) in a.slots.iter().zip(&b.slots) {
        for ((n, x), y) in names.iter().zip(sa).zip(sb) {
            let e = rel_err(x, y);
            assert!(e < tol, "momentum of `{n}`: relative error {e:.2e}");
        }
    }
}

fn close(a: Sums, b: Sums, what: &str) {
    let rel = (a.mean() - b.mean()).abs() / b.mean().abs().max(1e-30);
    assert!(rel < 1e-4, "{what}: GPU {} vs CPU {}", a.mean(), b.mean());
    assert_eq!(a.rows, b.rows, "{what}: rows");
}

/// Three steps on each executor from the same weights and batches; then the loss, the
/// weights, the moments, the average, the held-out values of a short batch, and one more
/// step of a CPU session restored from the GPU's state.
fn matches_the_cpu(c: Case) {
    let (images, ema, metric) = (c.images, c.ema, c.metric);
    let gpus = gpus();
    if std::env::var("NETC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(!gpus.is_empty(), "NETC_REQUIRE_GPU=1 but no adapter");
    }
    let net = net(c.src);
    let p0: Params<f32> = Params::init(&net, &mut Rng::new(7));
    let nodes = [
        net.resolve("loss").expect("loss"),
        net.resolve(metric).expect("metric"),
    ];
    for g in gpus {
        let reads = g.reads;
        let mut cpu = session(&net, &p0, &c, Executor::Cpu);
        let mut gpu = session(&net, &p0, &c, Executor::Gpu(Box::new(g)));
        gpu.evaluates(&nodes);
        let mut rng = Rng::new(11);
        for step in 1..=STEPS {
            let b = batch(&net, BATCH, images, &mut rng);
            let lr = 0.05 / step as f64;
            cpu.train_step(&b, lr).expect("CPU step");
            gpu.train_step(&b, lr).expect("GPU step");
        }
        let what = format!("{} on {reads:?}", net.name);
        let (lg, lc) = (
            gpu.take_stats().expect("stats"),
            cpu.take_stats().expect("stats"),
        );
        close(lg, lc, &format!("{what}: train loss over {STEPS} steps"));
        let (pg, pc) = (
            gpu.params().expect("weights"),
            cpu.params().expect("weights"),
        );
        same_params(&pg, &pc, 1e-4, &what);
        let (sg, sc) = (
            gpu.opt_state().expect("state"),
            cpu.opt_state().expect("state"),
        );
        same_state(&sg, &sc, &pc.names, 1e-4);
        let eg = gpu.ema().expect("average");
        assert_eq!(eg.is_some(), ema.is_some());
        if let (Some(eg), Some(ec)) = (eg, cpu.ema().expect("average")) {
            same_params(&eg, &ec, 1e-4, &format!("{what}, average"));
            // The average moved off both the start and the weights.
            assert!(rel_err(&ec.values[0], &p0.values[0]) > 1e-4);
            assert!(rel_err(&ec.values[0], &pc.values[0]) > 1e-4);
        }
        // Held-out values of a short batch (padded on the GPU; its rows not counted).
        let b = batch(&net, BATCH - 2, images, &mut rng);
        let vg = gpu.values(&b, BATCH - 2, &nodes).expect("GPU values");
        let vc = cpu.values(&b, BATCH - 2, &nodes).expect("CPU values");
        for ((g, c), n) in vg.iter().zip(&vc).zip(["loss", metric]) {
            close(*g, *c, &format!("{what}: held-out {n}"));
        }
        // A held-out set of a full and a short batch, summed on the device, read once.
        cpu.evaluates(&nodes);
        for rows in [BATCH, 1] {
            let b = batch(&net, rows, images, &mut rng);
            gpu.eval_batch(&b, rows).expect("GPU evaluation");
            cpu.eval_batch(&b, rows).expect("CPU evaluation");
        }
        let (eg, ec) = (
            gpu.take_eval().expect("sums"),
            cpu.take_eval().expect("sums"),
        );
        assert_eq!(eg.len(), 2);
        for ((g, c), n) in eg.iter().zip(&ec).zip(["loss", metric]) {
            assert_eq!(c.rows, (BATCH + 1) as f64);
            close(*g, *c, &format!("{what}: held-out set, {n}"));
        }
        // The GPU's state continues on the CPU as the CPU's own.
        let mut resumed = session(&net, &p0, &c, Executor::Cpu);
        resumed.restore(&pg, &sg);
        if let Some(e) = gpu.ema().expect("average") {
            resumed.restore_ema(e);
        }
        let b = batch(&net, BATCH, images, &mut rng);
        resumed.train_step(&b, 0.01).expect("resumed step");
        cpu.train_step(&b, 0.01).expect("CPU step");
        assert_eq!(resumed.step, STEPS as u64 + 1);
        same_params(
            &resumed.params().expect("w"),
            &cpu.params().expect("w"),
            1e-4,
            &what,
        );
    }
}

#[test]
fn a_declared_vae_loss_trains_on_the_gpu_as_on_the_cpu() {
    matches_the_cpu(Case {
        src: VAE,
        rule: sgd,
        ema: None,
        images: true,
        metric: "kl",
    });
}

#[test]
fn a_diffusion_like_model_and_its_average_train_on_the_gpu_as_on_the_cpu() {
    matches_the_cpu(Case {
        src: DIFFUSION,
        rule: adam,
        ema: Some(0.9),
        images: false,
        metric: "pred",
    });
}
