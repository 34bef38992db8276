//! The valid range of every numeric training setting, defined once here (as PyTorch's
//! optimizers validate theirs) and checked where the setting is read, so each out-of-range or
//! non-finite value (`1e999` reads as infinity) is a located error naming its range.

use crate::ast::Span;
use crate::diag::Diagnostic;

/// An interval a setting must lie in; every value must also be finite.
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub(super) name: &'static str,
    pub(super) low: f64,
    pub(super) low_open: bool,
    /// `f64::INFINITY` for "no upper bound" (the value must still be finite).
    pub(super) high: f64,
    pub(super) high_open: bool,
    /// Why the bounds are what they are, given as the error's help.
    pub(super) why: &'static str,
}

impl Range {
    pub(super) fn contains(&self, x: f64) -> bool {
        x.is_finite()
            && (if self.low_open {
                x > self.low
            } else {
                x >= self.low
            })
            && (if self.high_open {
                x < self.high
            } else {
                x <= self.high
            })
    }
    /// `[0, 1)`, `(0, inf)`, `[1e-6, 1e6]`.
    pub(super) fn describe(&self) -> String {
        format!(
            "{}{}, {}{}",
            if self.low_open { "(" } else { "[" },
            num(self.low),
            num(self.high),
            if self.high_open || self.high.is_infinite() {
                ")"
            } else {
                "]"
            },
        )
    }
    /// `x` when it is in range; otherwise an error at `span` ("beta1 must be in [0, 1), found
    /// 1.5") and `fallback`, so reading goes on and every error is reported.
    pub(super) fn check(&self, x: f64, span: Span, errors: &mut Vec<Diagnostic>) -> f64 {
        if self.contains(x) {
            return x;
        }
        errors.push(
            Diagnostic::error(format!(
                "{} must be a finite number in {}, found {}",
                self.name,
                self.describe(),
                num(x)
            ))
            .at(span, "out of range")
            .help(self.why),
        );
        x
    }
}

/// A number as a person writes it: `1e308`, not 309 digits; `0.5` stays `0.5`.
pub(super) fn num(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-4..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

const fn range(
    name: &'static str,
    low: (f64, bool),
    high: (f64, bool),
    why: &'static str,
) -> Range {
    Range {
        name,
        low: low.0,
        low_open: low.1,
        high: high.0,
        high_open: high.1,
        why,
    }
}

const OPEN: bool = true;
const CLOSED: bool = false;

pub(super) const LR: Range = range(
    "the learning rate `lr`",
    (0.0, OPEN),
    (f64::INFINITY, OPEN),
    "a step size must be positive (PyTorch: lr >= 0; 0 would not train)",
);
pub(super) const BETA1: Range = range(
    "beta1",
    (0.0, CLOSED),
    (1.0, OPEN),
    "Adam's moment decay (PyTorch: 0 <= beta < 1; at 1 the bias correction divides by zero)",
);
pub(super) const BETA2: Range = range("beta2", BETA1.low_pair(), BETA1.high_pair(), BETA1.why);
pub(super) const EPS: Range = range(
    "eps",
    (0.0, OPEN),
    (1.0, CLOSED),
    "Adam divides by sqrt(v) + eps: 0 can divide by zero (PyTorch allows 0), above 1 it swamps the step",
);
pub(super) const WEIGHT_DECAY: Range = range(
    "weight_decay",
    (0.0, CLOSED),
    (1.0, CLOSED),
    "an L2 factor (PyTorch: >= 0); AlexNet uses 5e-4, AdamW 1e-2; above 1 it outweighs the loss",
);
pub(super) const MOMENTUM: Range = range(
    "momentum",
    (0.0, CLOSED),
    (1.0, OPEN),
    "the share of the last velocity kept (PyTorch: >= 0); at 1 or above the velocity never decays and grows without bound",
);
/// Noise parameters, pixel ranges and channel means: beyond this f32 arithmetic overflows.
const MAGNITUDE_WHY: &str =
    "values reach the network as 32-bit floats: larger ones overflow its arithmetic";
pub(super) const NOISE_VALUE: Range = range(
    "a noise parameter",
    (-1e6, CLOSED),
    (1e6, CLOSED),
    MAGNITUDE_WHY,
);
pub(super) const NOISE_STD: Range = range(
    "the noise's standard deviation",
    (1e-6, CLOSED),
    (1e6, CLOSED),
    "below 1e-6 the noise is constant; above 1e6 it overflows 32-bit arithmetic",
);
pub(super) const PIXEL_RANGE: Range = range(
    "each end of training setting `range`",
    (-1e6, CLOSED),
    (1e6, CLOSED),
    MAGNITUDE_WHY,
);
pub(super) const CHANNEL_MEAN: Range = range(
    "each value of training setting `mean`",
    (-1e6, CLOSED),
    (1e6, CLOSED),
    MAGNITUDE_WHY,
);
pub(super) const CHANNEL_STD: Range = range(
    "each value of training setting `std`",
    (1e-6, CLOSED),
    (1e6, CLOSED),
    "pixels are divided by it: below 1e-6 they overflow 32-bit arithmetic",
);
pub(super) const SCHEDULE_FACTOR: Range = range(
    "the schedule's `factor`",
    (0.0, OPEN),
    (1.0, CLOSED),
    "the learning rate is multiplied by it: it must shrink (or keep) the rate",
);
pub(super) const STEP_EVERY: Range = range(
    "step's `every`",
    (1.0, CLOSED),
    (1e9, CLOSED),
    "a whole number of epochs",
);
pub(super) const STEP_ITER_EVERY: Range = range(
    "step_iter's `every`",
    (1.0, CLOSED),
    (1e12, CLOSED),
    "the rate drops every this many optimizer steps (Caffe's stepsize)",
);
pub(super) const POLY_POWER: Range = range(
    "poly's `power`",
    (0.0, OPEN),
    (10.0, CLOSED),
    "lr * (1 - t / steps)^power",
);
pub(super) const LR_MULT: Range = range(
    "mult's `lr`",
    (0.0, CLOSED),
    (1e6, CLOSED),
    "the tensor's learning rate is the schedule's times this (Caffe's lr_mult; 0 freezes it)",
);
pub(super) const DECAY_MULT: Range = range(
    "mult's `decay`",
    (0.0, CLOSED),
    (1e6, CLOSED),
    "the tensor's weight decay is the optimizer's times this (Caffe's decay_mult)",
);
pub(super) const PATIENCE: Range = range(
    "plateau's `patience`",
    (0.0, CLOSED),
    (1e9, CLOSED),
    "a whole number of epochs",
);
pub(super) const INV_GAMMA: Range = range(
    "inv's `gamma`",
    (0.0, CLOSED),
    (1.0, CLOSED),
    "lr * (1 + gamma * t)^-power; Caffe's LeNet uses gamma 1e-4",
);
pub(super) const INV_POWER: Range = range(
    "inv's `power`",
    (0.0, CLOSED),
    (10.0, CLOSED),
    "lr * (1 + gamma * t)^-power; Caffe's LeNet uses power 0.75, and beyond 10 the rate is 0 at once",
);
pub(super) const MIN_LR: Range = range(
    "warmup_cosine's `min_lr`",
    (0.0, CLOSED),
    (f64::INFINITY, OPEN),
    "the learning rate the cosine ends at (nanoGPT: lr / 10; 0 to end at zero)",
);
pub(super) const WARMUP_FRACTION: Range = range(
    "warmup_cosine's `warmup` as a fraction of all steps",
    (0.0, CLOSED),
    (1.0, CLOSED),
    "a share of the training's steps (0.05: the first 5%); write an integer for a count of steps",
);
pub(super) const WARMUP_STEPS: Range = range(
    "warmup_cosine's `warmup` as a count of steps",
    (0.0, CLOSED),
    (1e12, CLOSED),
    "a whole number of optimizer steps; write a fraction with a point (0.05) for a share of all steps",
);
pub(super) const CLIP_GRAD_NORM: Range = range(
    "training setting `clip_grad_norm`",
    (0.0, OPEN),
    (1e6, CLOSED),
    "the largest global L2 norm of the gradients (nanoGPT: 1.0); 0 would zero every step",
);
pub(super) const DECAY_MIN_RANK: Range = range(
    "training setting `decay_min_rank`",
    (0.0, CLOSED),
    (5.0, CLOSED),
    "tensors of lower rank get no weight decay (nanoGPT: 2, leaving biases and norms out); tensors have rank 5 at most",
);
/// GAN discriminator steps per generator step.
pub(super) const GAN_K: Range = range(
    "`k`",
    (1.0, CLOSED),
    (1000.0, CLOSED),
    "discriminator steps per generator step (Goodfellow et al. use 1); more than 1000 leaves the generator untrained",
);

impl Range {
    const fn low_pair(&self) -> (f64, bool) {
        (self.low, self.low_open)
    }
    const fn high_pair(&self) -> (f64, bool) {
        (self.high, self.high_open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_hold_their_ends_and_refuse_non_finite_values() {
        assert!(BETA1.contains(0.0) && BETA1.contains(0.999) && !BETA1.contains(1.0));
        assert!(!EPS.contains(0.0) && EPS.contains(1e-8));
        assert!(LR.contains(1e300) && !LR.contains(f64::INFINITY) && !LR.contains(f64::NAN));
        assert_eq!(BETA1.describe(), "[0, 1)");
        assert_eq!(LR.describe(), "(0, inf)");
        let mut e = vec![];
        BETA1.check(1.5, Span::default(), &mut e);
        assert_eq!(
            e[0].message,
            "beta1 must be a finite number in [0, 1), found 1.5"
        );
    }
}
