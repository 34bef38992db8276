//! The classic gradient check: analytic gradients of the CPU reference (f64) against central
//! differences, relative difference `||g_a - g_n|| / (||g_a|| + ||g_n||)` per tensor.

use crate::cpu::{self, Params};
use crate::rng::Rng;
use crate::session::RunError;
use ndarray::Array2;
use netc_compiler::ir::Network;

/// The pass mark of the classic recipe.
pub const THRESHOLD: f64 = 1e-7;
/// Step of the central differences. The five-point central stencil
/// `(8(f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h` has O(h^4) truncation error (about 1e-16
/// here), so h can be large enough that f64 round-off (about 1e-16 |f| / h = 1e-12) stays far
/// below the 1e-7 mark, and small enough that a perturbation rarely crosses a ReLU kink.
pub const EPS: f64 = 1e-4;

/// Relative disagreement of the h and 2h three-point estimates above which the perturbation
/// straddles a kink. For a smooth loss they differ by f3 h^2 / 2 (f3 the third derivative, so
/// about 1e-8 |f3| here); across a kink (a max pool's winner changing, a ReLU crossing zero) by
/// a fraction of the slope's jump, which is small when one of many elements crosses: a DCGAN
/// has about 18,000 ReLU inputs per example, and at 1e-5 crossings whose effect was 1e-7 to
/// 3e-5 went undetected and failed the 1e-7 mark (its tanh twin passed at 1e-11). So the mark
/// itself: a point that disagrees by more is retried at h/100, where a smooth loss agrees
/// 10^4 times better.
const KINK: f64 = 1e-7;

/// The five-point stencil at step h, or None when the loss is not smooth over [x-2h, x+2h].
fn stencil(
    f: &mut impl FnMut(f64) -> Result<f64, RunError>,
    h: f64,
) -> Result<Option<f64>, RunError> {
    let (p1, m1, p2, m2) = (f(h)?, f(-h)?, f(2.0 * h)?, f(-2.0 * h)?);
    let (c1, c2) = ((p1 - m1) / (2.0 * h), (p2 - m2) / (4.0 * h));
    if (c1 - c2).abs() > KINK * (c1.abs() + c2.abs()) + 1e-9 {
        return Ok(None);
    }
    Ok(Some((8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h)))
}

/// The five-point central difference of `f` at a perturbation `set(delta)`, or None when the
/// loss has a kink within 2h of the point even at h = EPS / 100. Max pooling makes kinks
/// common: a first-layer weight moves every value downstream, and with thousands of pooling
/// windows and ReLUs one of them nearly always switches within +-2e-4 (LeNet's conv1: 20 of 20
/// points). At EPS / 100 round-off is still ~1e-9 of a typical entry, well under the mark.
/// The kink test depends on the forward pass alone, so skipping a point cannot hide a wrong
/// backward rule; the report counts the skipped points.
fn central(mut f: impl FnMut(f64) -> Result<f64, RunError>) -> Result<Option<f64>, RunError> {
    match stencil(&mut f, EPS)? {
        Some(d) => Ok(Some(d)),
        None => stencil(&mut f, EPS / 100.0),
    }
}

#[derive(Debug, Clone)]
pub struct TensorCheck {
    pub name: String,
    pub entries: usize,
    pub checked: usize,
    /// Entries not compared because the loss has a kink within 2h of them (see `central`).
    pub kinks: usize,
    pub rel_diff: f64,
    pub analytic_norm: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub net: String,
    pub loss: &'static str,
    pub tensors: Vec<TensorCheck>,
    pub overall: f64,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.overall < THRESHOLD && self.tensors.iter().all(|t| t.rel_diff < THRESHOLD)
    }
}

fn rel(a: &[f64], n: &[f64]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(n)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let s =
        a.iter().map(|x| x * x).sum::<f64>().sqrt() + n.iter().map(|x| x * x).sum::<f64>().sqrt();
    if s == 0.0 {
        0.0
    } else {
        d / s
    }
}

/// Parameters of `net` for a check: initialised, then every entry nudged off its initial value
/// (zero biases included) so every path is exercised.
fn check_params(net: &Network, rng: &mut Rng) -> Params<f64> {
    let mut p: Params<f64> = Params::<f64>::init(net, rng);
    for v in p.values.iter_mut() {
        for x in v.iter_mut() {
            *x += 0.05 * rng.normal();
        }
    }
    p
}

/// The loss at given parameters and input.
type LossOf<'a> = dyn Fn(&Params<f64>, &Array2<f64>) -> Result<f64, RunError> + 'a;

/// Compares the analytic gradients `grads` (of every parameter of `p`) and `dinput` (of the
/// input `x`) with central differences of `loss_of`, `samples` entries per tensor.
#[allow(clippy::too_many_arguments)]
fn compare(
    net: &Network,
    p: &Params<f64>,
    x: &Array2<f64>,
    grads: &[Option<Vec<f64>>],
    dinput: &Array2<f64>,
    samples: usize,
    rng: &mut Rng,
    loss_of: &LossOf,
) -> Result<(Vec<TensorCheck>, f64), RunError> {
    let feats = x.ncols();
    let mut tensors = vec![];
    let (mut all_a, mut all_n) = (vec![], vec![]);
    let pick = |n: usize, rng: &mut Rng| -> Vec<usize> {
        if n <= samples {
            (0..n).collect()
        } else {
            (0..samples).map(|_| rng.below(n as u64) as usize).collect()
        }
    };
    for (i, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        let idx = pick(g.len(), rng);
        let (mut ga, mut gn, mut kinks) = (vec![], vec![], 0);
        for &j in &idx {
            let mut q = p.clone();
            let w = q.values[i][j];
            let d = central(|delta| {
                q.values[i][j] = w + delta;
                loss_of(&q, x)
            })?;
            match d {
                Some(d) => {
                    ga.push(g[j]);
                    gn.push(d);
                }
                None => kinks += 1,
            }
        }
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        tensors.push(TensorCheck {
            name: p.names[i].clone(),
            entries: g.len(),
            checked: idx.len() - kinks,
            kinks,
            rel_diff: rel(&ga, &gn),
            analytic_norm: norm,
        });
        all_a.extend(ga);
        all_n.extend(gn);
    }
    // The gradient at the input: what a generator upstream would receive.
    let idx = pick(dinput.len(), rng);
    let (mut ga, mut gn, mut kinks) = (vec![], vec![], 0);
    let flat: Vec<f64> = dinput.iter().copied().collect();
    for &j in &idx {
        let mut xp = x.clone();
        let (r, c) = (j / feats, j % feats);
        let v = xp[[r, c]];
        let d = central(|delta| {
            xp[[r, c]] = v + delta;
            loss_of(p, &xp)
        })?;
        match d {
            Some(d) => {
                ga.push(flat[j]);
                gn.push(d);
            }
            None => kinks += 1,
        }
    }
    tensors.push(TensorCheck {
        name: format!("(input {})", net.graph[net.inputs[0]].name),
        entries: flat.len(),
        checked: idx.len() - kinks,
        kinks,
        rel_diff: rel(&ga, &gn),
        analytic_norm: flat.iter().map(|v| v * v).sum::<f64>().sqrt(),
    });
    all_a.extend(ga);
    all_n.extend(gn);
    Ok((tensors, rel(&all_a, &all_n)))
}

/// Checks every parameter tensor (and the input) of `net` on a random batch. `samples` entries
/// per tensor are checked (all when the tensor is smaller). The loss is softmax cross-entropy
/// on the logits, or binary cross-entropy when there is one logit per example.
pub fn check(net: &Network, batch: usize, samples: usize, seed: u64) -> Result<Report, RunError> {
    // f64 values; the parameters are copied once more per perturbed tensor.
    crate::memory::ensure_training(net, batch, 1, 8)?;
    let mut rng = Rng::new(seed);
    let p = check_params(net, &mut rng);
    let (_, logit) = net
        .output_and_logit()
        .ok_or_else(|| RunError::Config("network has no output".into()))?;
    let feats: usize = net.graph[net.inputs[0]].shape.iter().product::<u64>() as usize;
    let classes: usize = net.graph[logit].shape.iter().product::<u64>() as usize;
    let x = Array2::from_shape_fn((batch, feats), |_| rng.uniform(-1.0, 1.0));
    let mut t = Array2::<f64>::zeros((batch, classes));
    for r in 0..batch {
        if classes == 1 {
            t[[r, 0]] = (rng.next_f64() < 0.5) as u8 as f64;
        } else {
            t[[r, rng.below(classes as u64) as usize]] = 1.0;
        }
    }
    let seed32 = rng.next_u32();
    let scale = 1.0 / batch as f64;
    let loss_of = |p: &Params<f64>,
                   x: &Array2<f64>|
     -> Result<(f64, Array2<f64>, cpu::Activations<f64>), RunError> {
        let acts = cpu::forward(net, p, x.view(), true, seed32)?;
        let (st, dz) = if classes == 1 {
            cpu::bce_logits(acts.get(logit), &t, scale)
        } else {
            cpu::softmax_xent(acts.get(logit), &t, scale)
        };
        Ok((st.loss * scale, dz, acts))
    };
    let (_, dz, acts) = loss_of(&p, &x)?;
    let (grads, dinput) = cpu::backward(net, &p, &acts, logit, dz);
    let value = |p: &Params<f64>, x: &Array2<f64>| Ok(loss_of(p, x)?.0);
    let (tensors, overall) = compare(net, &p, &x, &grads, &dinput, samples, &mut rng, &value)?;
    Ok(Report {
        net: net.name.clone(),
        loss: if classes == 1 {
            "binary cross-entropy (from logits)"
        } else {
            "softmax cross-entropy (from logits)"
        },
        tensors,
        overall,
    })
}

/// Checks a GAN's generator with the loss it trains with: through the frozen discriminator
/// `d`, `-log D(G(z))` (non-saturating) or `log(1 - D(G(z)))` (minimax), averaged over a batch
/// of noise `z` drawn uniformly from [-1, 1]. Every generator tensor and the noise are checked.
pub fn check_generator(
    g: &Network,
    d: &Network,
    non_saturating: bool,
    batch: usize,
    samples: usize,
    seed: u64,
) -> Result<Report, RunError> {
    crate::memory::ensure(
        crate::memory::training_bytes(g, batch, 1, 8)
            + crate::memory::training_bytes(d, batch, 1, 8),
        || format!("checking generator `{}` through `{}`", g.name, d.name),
    )?;
    let mut rng = Rng::new(seed);
    let p = check_params(g, &mut rng);
    let mut dp = check_params(d, &mut rng);
    dp.trainable.iter_mut().for_each(|t| *t = false);
    let (g_out, _) = g
        .output_and_logit()
        .ok_or_else(|| RunError::Config("the generator has no output".into()))?;
    let (_, d_logit) = d
        .output_and_logit()
        .ok_or_else(|| RunError::Config("the discriminator has no output".into()))?;
    let nz: usize = g.graph[g.inputs[0]].shape.iter().product::<u64>() as usize;
    let z = Array2::from_shape_fn((batch, nz), |_| rng.uniform(-1.0, 1.0));
    let seed32 = rng.next_u32();
    // The same targets and signs as the training step (session/gpu_gan.rs and cpu_backend.rs, g_step).
    let (target, scale) = if non_saturating {
        (1.0, 1.0 / batch as f64)
    } else {
        (0.0, -1.0 / batch as f64)
    };
    let t = Array2::<f64>::from_elem((batch, 1), target);
    type Pass = (
        f64,
        Array2<f64>,
        cpu::Activations<f64>,
        cpu::Activations<f64>,
    );
    let loss_of = |p: &Params<f64>, z: &Array2<f64>| -> Result<Pass, RunError> {
        let ga = cpu::forward(g, p, z.view(), true, seed32)?;
        let da = cpu::forward(d, &dp, ga.get(g_out).view(), true, seed32)?;
        let (st, dz) = cpu::bce_logits(da.get(d_logit), &t, scale);
        Ok((st.loss * scale, dz, ga, da))
    };
    let (_, dz, ga, da) = loss_of(&p, &z)?;
    let (_, dx) = cpu::backward(d, &dp, &da, d_logit, dz);
    let (grads, dz_in) = cpu::backward_opt(g, &p, &ga, g_out, dx, true);
    let value = |p: &Params<f64>, z: &Array2<f64>| Ok(loss_of(p, z)?.0);
    let (tensors, overall) = compare(g, &p, &z, &grads, &dz_in, samples, &mut rng, &value)?;
    Ok(Report {
        net: g.name.clone(),
        loss: if non_saturating {
            "-log D(G(z)) through the frozen discriminator (non-saturating)"
        } else {
            "log(1 - D(G(z))) through the frozen discriminator (minimax)"
        },
        tensors,
        overall,
    })
}
