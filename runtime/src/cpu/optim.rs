//! The optimizers (SGD with momentum, Adam, AdamW) on the CPU, with the decay rule and the
//! clipping by global norm of an [`UpdateRule`]: the formulas of shaders/sgd.wgsl, adam.wgsl
//! and adamw.wgsl, and of the update kernels' clipping prelude.

use super::{Params, Real};
use netc_compiler::schedule::{clip_factor, Optimizer, UpdateRule};

/// Optimizer state of one network on the CPU (velocity, or Adam's two moments).
#[derive(Debug, Clone, PartialEq)]
pub struct OptState<T> {
    pub slots: Vec<Vec<Vec<T>>>,
    pub step: u64,
}

impl<T: Real> OptState<T> {
    pub fn new(p: &Params<T>, opt: &Optimizer) -> Self {
        let n = match opt {
            Optimizer::Sgd { .. } => 1,
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => 2,
        };
        OptState {
            slots: (0..n)
                .map(|_| p.values.iter().map(|v| vec![T::zero(); v.len()]).collect())
                .collect(),
            step: 0,
        }
    }
}

/// One optimizer step with learning rate `lr`; the same formulas as shaders/sgd.wgsl and adam.wgsl.
pub fn apply_update<T: Real>(
    p: &mut Params<T>,
    grads: &[Option<Vec<T>>],
    st: &mut OptState<T>,
    opt: &Optimizer,
    lr: f64,
) {
    apply_rule(p, grads, st, &UpdateRule::from(*opt), lr);
}

/// The factor clipping by the global norm scales every gradient by (1 without clipping):
/// torch.nn.utils.clip_grad_norm_ over all the trainable gradients, their squares summed in
/// f64.
pub fn clip_scale<T: Real>(grads: &[Option<Vec<T>>], clip: Option<f64>) -> f64 {
    let Some(max_norm) = clip else {
        return 1.0;
    };
    let sumsq: f64 = grads
        .iter()
        .flatten()
        .flat_map(|g| g.iter())
        .map(|&x| x.f64() * x.f64())
        .sum();
    clip_factor(max_norm, sumsq.sqrt())
}

/// One optimizer step under `rule` with learning rate `lr`: the gradients clipped to the
/// global norm, then each tensor updated with the weight decay its decay rule gives it, at
/// the rate its `param_mult` multiplier gives it.
pub fn apply_rule<T: Real>(
    p: &mut Params<T>,
    grads: &[Option<Vec<T>>],
    st: &mut OptState<T>,
    rule: &UpdateRule,
    lr: f64,
) {
    st.step += 1;
    let scale = clip_scale(grads, rule.clip);
    for (i, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        let clipped: Vec<T>;
        let g: &[T] = if rule.clip.is_some() {
            let s = T::of(scale);
            clipped = g.iter().map(|&x| x * s).collect();
            &clipped
        } else {
            g
        };
        let opt = rule.for_tensor(&p.names[i], p.shapes[i].len());
        let lr = lr * rule.decay.lr_mult(&p.names[i]);
        update_tensor(p, st, i, g, opt, lr);
    }
}

/// The update of tensor `i` with gradient `g`.
fn update_tensor<T: Real>(
    p: &mut Params<T>,
    st: &mut OptState<T>,
    i: usize,
    g: &[T],
    opt: Optimizer,
    lr: f64,
) {
    match opt {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        } => {
            let (wd, mu, lr) = (T::of(weight_decay), T::of(momentum), T::of(lr));
            // Zipped iterators: no bounds checks, so the loop vectorises.
            for ((w, v), &g) in p.values[i].iter_mut().zip(st.slots[0][i].iter_mut()).zip(g) {
                *v = mu * *v + (g + wd * *w);
                *w = *w - lr * *v;
            }
        }
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        }
        | Optimizer::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            // Adam adds the decay to the gradient (L2); AdamW shrinks the weight first.
            let decoupled = matches!(opt, Optimizer::AdamW { .. });
            let c1 = 1.0 - beta1.powi(st.step as i32);
            let c2 = 1.0 - beta2.powi(st.step as i32);
            let (m, v) = st.slots.split_at_mut(1);
            let (b1, b2, wd, e) = (T::of(beta1), T::of(beta2), T::of(weight_decay), T::of(eps));
            let (nb1, nb2, ic1, ic2, lr) = (
                T::of(1.0 - beta1),
                T::of(1.0 - beta2),
                T::of(1.0 / c1),
                T::of(1.0 / c2),
                T::of(lr),
            );
            let rows = p.values[i]
                .iter_mut()
                .zip(m[0][i].iter_mut())
                .zip(v[0][i].iter_mut())
                .zip(g);
            for (((w, m), v), &g) in rows {
                let (grad, w0) = if decoupled {
                    (g, *w * (T::one() - lr * wd))
                } else {
                    (g + wd * *w, *w)
                };
                *m = b1 * *m + nb1 * grad;
                *v = b2 * *v + nb2 * grad * grad;
                *w = w0 - lr * (*m * ic1) / ((*v * ic2).sqrt() + e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netc_compiler::schedule::DecayRule;

    fn params(values: Vec<Vec<f64>>, shapes: Vec<Vec<usize>>, names: &[&str]) -> Params<f64> {
        Params {
            names: names.iter().map(|s| s.to_string()).collect(),
            trainable: vec![true; values.len()],
            shapes,
            values,
        }
    }

    const ADAMW: Optimizer = Optimizer::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.1,
    };

    #[test]
    fn adamw_decays_the_weight_before_the_adam_step() {
        let mut p = params(vec![vec![1.0, -2.0]], vec![vec![2]], &["l.w"]);
        let mut st = OptState::new(&p, &ADAMW);
        let g = vec![Some(vec![0.5, 0.1])];
        apply_update(&mut p, &g, &mut st, &ADAMW, 0.1);
        // Step 1: w * (1 - 0.1 * 0.1), then m/c1 = g and v/c2 = g^2, so the step is
        // lr * g / (|g| + eps).
        let want = [
            0.99 - 0.1 * 0.5 / (0.5 + 1e-8),
            -1.98 - 0.1 * 0.1 / (0.1 + 1e-8),
        ];
        for (a, b) in p.values[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
        // Step 2 with g = [0.5, 0.1] again: m = (0.9 * 0.05 + 0.1 * g), v likewise, so
        // m/c1 = g and v/c2 = g^2 again.
        let w1 = p.values[0].clone();
        apply_update(&mut p, &g, &mut st, &ADAMW, 0.1);
        let want2 = [
            w1[0] * 0.99 - 0.1 * 0.5 / (0.5 + 1e-8),
            w1[1] * 0.99 - 0.1 * 0.1 / (0.1 + 1e-8),
        ];
        for (a, b) in p.values[0].iter().zip(want2) {
            assert!((a - b).abs() < 1e-13, "{a} vs {b}");
        }
    }

    #[test]
    fn the_decay_rule_leaves_tensors_out() {
        let mut p = params(
            vec![vec![2.0; 4], vec![3.0; 2], vec![4.0; 2]],
            vec![vec![2, 2], vec![2], vec![1, 2]],
            &["fc.w", "fc.b", "pos.p"],
        );
        let rule = UpdateRule {
            opt: ADAMW,
            decay: DecayRule {
                min_rank: 2,
                no_decay: vec!["pos*".into()],
                mults: vec![],
            },
            clip: None,
        };
        let mut st = OptState::new(&p, &rule.opt);
        // Zero gradients: Adam's step is 0, so only the decay moves a weight.
        let g = vec![Some(vec![0.0; 4]), Some(vec![0.0; 2]), Some(vec![0.0; 2])];
        apply_rule(&mut p, &g, &mut st, &rule, 0.5);
        assert_eq!(p.values[0], vec![2.0 * (1.0 - 0.5 * 0.1); 4]);
        assert_eq!(p.values[1], vec![3.0; 2], "rank 1 < 2");
        assert_eq!(p.values[2], vec![4.0; 2], "matches pos*");
    }

    #[test]
    fn clipping_scales_by_the_global_norm() {
        let sgd = Optimizer::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let mut p = params(
            vec![vec![0.0; 2], vec![0.0; 2]],
            vec![vec![2]; 2],
            &["a", "b"],
        );
        let rule = UpdateRule {
            opt: sgd,
            decay: DecayRule::default(),
            clip: Some(1.0),
        };
        let mut st = OptState::new(&p, &sgd);
        // Norm sqrt(3^2 + 4^2) = 5 over both tensors: scaled by 1 / (5 + 1e-6).
        let g = vec![Some(vec![3.0, 0.0]), Some(vec![0.0, 4.0])];
        assert_eq!(clip_scale(&g, Some(1.0)), 1.0 / (5.0 + 1e-6));
        apply_rule(&mut p, &g, &mut st, &rule, 1.0);
        let s = 1.0 / (5.0 + 1e-6);
        assert_eq!(p.values, vec![vec![-3.0 * s, 0.0], vec![0.0, -4.0 * s]]);
        // Within the norm: untouched (factor 1).
        let small = vec![Some(vec![0.3, 0.0]), Some(vec![0.0, 0.4])];
        assert_eq!(clip_scale(&small, Some(1.0)), 1.0);
        assert_eq!(clip_scale(&g, None), 1.0);
    }
}
