//! The noise schedule: beta_t, alpha_t = 1 - beta_t and abar_t = prod_{s<=t} alpha_s, 0-based
//! (index 0 is DDPM's t = 1), and the update of one reverse step (ancestral DDPM, DDIM).

use netc_compiler::train_config::Betas;

#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    pub betas: Vec<f64>,
    pub abar: Vec<f64>,
}

impl NoiseSchedule {
    /// The schedule of `t` steps.
    pub fn new(betas: Betas, t: usize) -> NoiseSchedule {
        let b: Vec<f64> = match betas {
            // torch.linspace(start, end, T).
            Betas::Linear { start, end } => (0..t)
                .map(|i| start + (end - start) * i as f64 / (t - 1).max(1) as f64)
                .collect(),
            // Nichol & Dhariwal (improved DDPM), eq. 17, betas clipped at 0.999.
            Betas::Cosine { s } => {
                let f = |i: usize| {
                    let x = (i as f64 / t as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
                    x.cos().powi(2)
                };
                (0..t).map(|i| (1.0 - f(i + 1) / f(i)).min(0.999)).collect()
            }
        };
        let mut abar = Vec::with_capacity(t);
        let mut acc = 1.0;
        for &beta in &b {
            acc *= 1.0 - beta;
            abar.push(acc);
        }
        NoiseSchedule { betas: b, abar }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// abar before step `t` (1 before the first).
    fn abar_prev(&self, t: usize) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.abar[t - 1]
        }
    }

    /// The clean image the prediction `eps` implies at step `t`, clipped to [-1, 1] when `clip`
    /// (the pixels' range; DDPM's reference code and diffusers clip it).
    pub fn x0(&self, t: usize, x: f64, eps: f64, clip: bool) -> f64 {
        let a = self.abar[t];
        let x0 = (x - (1.0 - a).sqrt() * eps) / a.sqrt();
        if clip {
            x0.clamp(-1.0, 1.0)
        } else {
            x0
        }
    }

    /// One ancestral step from x_t to x_{t-1}: the mean of the posterior q(x_{t-1} | x_t, x0)
    /// at the predicted x0, plus sigma z with sigma^2 its variance beta~_t (no noise at t = 0).
    /// Unclipped, it is Algorithm 2 of Ho et al. with sigma^2 = beta~_t.
    pub fn ddpm_step(&self, t: usize, x: f64, eps: f64, z: f64, clip: bool) -> f64 {
        let (a, ap, beta) = (self.abar[t], self.abar_prev(t), self.betas[t]);
        let x0 = self.x0(t, x, eps, clip);
        let c0 = beta * ap.sqrt() / (1.0 - a);
        let ct = (1.0 - ap) * (1.0 - beta).sqrt() / (1.0 - a);
        let var = beta * (1.0 - ap) / (1.0 - a);
        c0 * x0 + ct * x + var.sqrt() * z
    }

    /// One DDIM step from x_t to x_prev (`prev` None: to the clean image): eq. 12 of Song et
    /// al. with sigma = eta sqrt((1 - abar_prev)/(1 - abar_t)) sqrt(1 - abar_t/abar_prev).
    #[allow(clippy::too_many_arguments)]
    pub fn ddim_step(
        &self,
        t: usize,
        prev: Option<usize>,
        x: f64,
        eps: f64,
        z: f64,
        eta: f64,
        clip: bool,
    ) -> f64 {
        let a = self.abar[t];
        let ap = prev.map_or(1.0, |p| self.abar[p]);
        let x0 = self.x0(t, x, eps, clip);
        let sigma = eta * ((1.0 - ap) / (1.0 - a)).sqrt() * (1.0 - a / ap).max(0.0).sqrt();
        let dir = (1.0 - ap - sigma * sigma).max(0.0).sqrt();
        ap.sqrt() * x0 + dir * eps + sigma * z
    }
}
