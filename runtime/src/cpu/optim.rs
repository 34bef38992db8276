//! The optimizers (SGD with momentum, Adam) on the CPU: the formulas of shaders/sgd.wgsl and
//! adam.wgsl.

use super::{Params, Real};

/// Optimizer state of one network on the CPU (velocity, or Adam's two moments).
#[derive(Debug, Clone, PartialEq)]
pub struct OptState<T> {
    pub slots: Vec<Vec<Vec<T>>>,
    pub step: u64,
}

impl<T: Real> OptState<T> {
    pub fn new(p: &Params<T>, opt: &netc_compiler::schedule::Optimizer) -> Self {
        let n = match opt {
            netc_compiler::schedule::Optimizer::Sgd { .. } => 1,
            netc_compiler::schedule::Optimizer::Adam { .. } => 2,
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
    opt: &netc_compiler::schedule::Optimizer,
    lr: f64,
) {
    use netc_compiler::schedule::Optimizer;
    st.step += 1;
    for (i, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        match *opt {
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
            } => {
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
                    let grad = g + wd * *w;
                    *m = b1 * *m + nb1 * grad;
                    *v = b2 * *v + nb2 * grad * grad;
                    *w = *w - lr * (*m * ic1) / ((*v * ic2).sqrt() + e);
                }
            }
        }
    }
}
