//! The training section (`train { ... }` in the DSL, `train:` in YAML), checked like the rest of
//! the model: unknown keys get a "did you mean", wrong types name the key, and every error
//! points at the line. The runtime's training loops read the resulting [`TrainConfig`].
//!
//! This file holds the types the section reads into; `read` walks the section, `reader` holds
//! the typed key look-ups, `calls` the call-valued settings (optimizer, noise, schedule) and
//! `images` the image-folder pipeline, `recipe` a recipe written out as settings.

mod args;
mod calls;
mod classes;
mod decay;
mod diffusion;
mod fit;
mod images;
mod language_model;
mod latent;
mod minimise;
mod mults;
mod ranges;
mod read;
mod reader;
mod recipe;

pub use decay::{decay_text, DecayLine};
pub use images::{BadImages, ChannelStat, ImageConfig};
pub use language_model::LanguageModelConfig;
pub use latent::LatentSample;
pub use minimise::{Betas, DiffusionConfig, Field, MinimiseConfig};
pub use read::{default_recipe, read};
pub use recipe::recipe_lines;

use crate::schedule::{DecayRule, Optimizer, UpdateRule};

#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Classifier {
        network: String,
    },
    Gan(GanConfig),
    /// A loss the model declares, minimised over a data set's fields.
    Minimise(MinimiseConfig),
    /// Next-character prediction on a text file (per-token cross-entropy).
    LanguageModel(LanguageModelConfig),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, std: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GanConfig {
    pub generator: String,
    pub discriminator: String,
    pub noise: Noise,
    /// Discriminator steps per generator step.
    pub k: u64,
    /// true: -log D(G(z)) (default); false: the minimax log(1 - D(G(z))).
    pub non_saturating: bool,
    pub g_optimizer: OptimizerConfig,
    pub d_optimizer: OptimizerConfig,
    /// Write a sample grid every this many generator steps.
    pub sample_every: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: Optimizer,
    pub lr: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Constant,
    /// lr *= factor every `every` epochs.
    Step {
        every: u64,
        factor: f64,
    },
    /// lr *= factor when the test loss has not improved for `patience` epochs (AlexNet's /10).
    Plateau {
        factor: f64,
        patience: u64,
    },
    /// Caffe's "inv" policy: lr * (1 + gamma * t)^-power at step t (Caffe's LeNet solver).
    Inv {
        gamma: f64,
        power: f64,
    },
    /// Caffe's "step" policy: lr * factor^floor(t / every), counted in optimizer steps.
    StepIter {
        every: u64,
        factor: f64,
    },
    /// Caffe's "multistep" policy: lr * factor^(how many of `at` are <= t).
    MultiStep {
        at: Vec<u64>,
        factor: f64,
    },
    /// Caffe's "poly" policy: lr * (1 - t / total)^power, zero at the end of training.
    Poly {
        power: f64,
    },
    /// Linear warm-up, then cosine decay to `min_lr` at the last step (nanoGPT's get_lr,
    /// as a LambdaLR); see [`Schedule::step_lr`].
    WarmupCosine {
        warmup: Warmup,
        min_lr: f64,
    },
}

/// The warm-up of `warmup_cosine`: a share of all steps, or a count of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warmup {
    Fraction(f64),
    Steps(u64),
}

impl Warmup {
    /// Warm-up steps out of `total`: a fraction rounds up (as Hugging Face's
    /// `warmup_ratio`), so any warm-up asked for is at least one step; a product within 1e-9
    /// of a whole number is that number (0.07 * 100 is 7.000000000000001 in binary).
    pub fn steps(self, total: u64) -> u64 {
        match self {
            Warmup::Fraction(f) => {
                let x = f * total as f64;
                if (x - x.round()).abs() < 1e-9 {
                    x.round() as u64
                } else {
                    x.ceil() as u64
                }
            }
            Warmup::Steps(n) => n,
        }
    }
}

impl Schedule {
    /// The factor a per-step schedule applies at optimizer step `t` (0-based); 1 for the
    /// epoch-wise ones, which change the learning rate itself.
    pub fn step_factor(&self, t: u64) -> f64 {
        match self {
            Schedule::Inv { gamma, power } => (1.0 + gamma * t as f64).powf(-power),
            Schedule::StepIter { every, factor } => factor.powi((t / every.max(&1)) as i32),
            Schedule::MultiStep { at, factor } => {
                factor.powi(at.iter().filter(|&&s| s <= t).count() as i32)
            }
            Schedule::Poly { .. }
            | Schedule::Constant
            | Schedule::Step { .. }
            | Schedule::Plateau { .. }
            | Schedule::WarmupCosine { .. } => 1.0,
        }
    }

    /// The learning rate of optimizer step `t` (0-based) of `total`, from the rate `lr` the
    /// epoch-wise schedules leave. For `warmup_cosine` with W warm-up steps (T = total):
    /// steps t < W take lr * (t + 1) / (W + 1) (nanoGPT's warm-up, which never takes a step
    /// at 0); from step W, min_lr + (lr - min_lr) * (1 + cos(pi * r)) / 2 with
    /// r = (t - W) / (T - 1 - W), so step W takes lr and the last step T - 1 takes min_lr
    /// (r = 1 when no step is left after the warm-up, and beyond the last step).
    pub fn step_lr(&self, lr: f64, t: u64, total: u64) -> f64 {
        match *self {
            Schedule::Poly { power } => {
                lr * (1.0 - (t as f64 / total.max(1) as f64).min(1.0)).powf(power)
            }
            Schedule::WarmupCosine { warmup, min_lr } => {
                let w = warmup.steps(total);
                if t < w {
                    return lr * (t + 1) as f64 / (w + 1) as f64;
                }
                let span = total.saturating_sub(1).saturating_sub(w);
                let r = if span == 0 {
                    1.0
                } else {
                    ((t - w) as f64 / span as f64).min(1.0)
                };
                min_lr + (lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * r).cos())
            }
            Schedule::Constant
            | Schedule::Step { .. }
            | Schedule::Plateau { .. }
            | Schedule::Inv { .. }
            | Schedule::StepIter { .. }
            | Schedule::MultiStep { .. } => lr * self.step_factor(t),
        }
    }
}

impl TrainConfig {
    /// The update rule of `opt` (the section's optimizer, or a GAN network's) under the
    /// section's decay rule and clipping.
    pub fn update_rule(&self, opt: &OptimizerConfig) -> UpdateRule {
        UpdateRule {
            opt: opt.kind,
            decay: self.decay.clone(),
            clip: self.clip_grad_norm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Steps(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub task: Task,
    pub optimizer: OptimizerConfig,
    /// Which tensors get the optimizer's weight decay (`decay_min_rank`, `no_decay`).
    pub decay: DecayRule,
    /// `clip_grad_norm`: the gradients' largest global L2 norm.
    pub clip_grad_norm: Option<f64>,
    pub schedule: Schedule,
    pub batch: u64,
    pub length: Length,
    /// Evaluate every this many epochs (classifiers).
    pub eval_every: u64,
    /// Log every this many steps.
    pub log_every: u64,
    /// Checkpoint every this many epochs (classifiers) or steps (GANs); 0 = only at the end.
    pub checkpoint_every: u64,
    pub data: String,
    pub data_dir: Option<String>,
    /// The interval image pixels are scaled to: [0, 1] by default, [-1, 1] for a generator
    /// with a tanh output (DCGAN).
    pub range: (f64, f64),
    pub seed: u64,
    /// How images read from an image folder are prepared (ignored for IDX data).
    pub images: ImageConfig,
    /// The names of an IDX data set's classes, one per output (an image folder's are its
    /// folder names).
    pub classes: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use crate::compile;

    /// The training section of a model, or its errors' messages.
    fn config_of(file: &str, src: &str) -> Result<super::TrainConfig, String> {
        let m = compile(file, src).map_err(|d| d.render())?;
        match super::read(&m) {
            Ok(Some(cfg)) => Ok(cfg),
            Ok(None) => Err("no training section".into()),
            Err(e) => Err(e
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    fn range_of(file: &str, src: &str) -> Result<(f64, f64), String> {
        config_of(file, src).map(|c| c.range)
    }

    #[test]
    fn warmup_cosine_gives_each_step_its_rate() {
        use super::{Schedule, Warmup};
        let s = Schedule::WarmupCosine {
            warmup: Warmup::Steps(3),
            min_lr: 0.1,
        };
        // 10 steps, 3 of warm-up: (t + 1) / 4, then the peak at step 3, cosine over the 6
        // steps to the last (step 9) at min_lr.
        let lrs: Vec<f64> = (0..10).map(|t| s.step_lr(1.0, t, 10)).collect();
        let want = [0.25, 0.5, 0.75, 1.0];
        for (t, w) in want.iter().enumerate() {
            assert!((lrs[t] - w).abs() < 1e-15, "step {t}: {}", lrs[t]);
        }
        // r = 3/6 at step 6: 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55.
        assert!((lrs[6] - 0.55).abs() < 1e-15, "{}", lrs[6]);
        // r = 1/6 at step 4: 0.1 + 0.9 * (1 + cos(pi/6)) / 2.
        let r4 = 0.1 + 0.9 * (1.0 + (std::f64::consts::PI / 6.0).cos()) / 2.0;
        assert!((lrs[4] - r4).abs() < 1e-15);
        assert!((lrs[9] - 0.1).abs() < 1e-15 && (s.step_lr(1.0, 50, 10) - 0.1).abs() < 1e-15);
        assert!(lrs.windows(2).skip(3).all(|w| w[1] < w[0]), "{lrs:?}");
        // A fraction rounds up, exact products stay: 5% of 100 is 5, 7% is 7, of 30 is 3.
        assert_eq!(Warmup::Fraction(0.05).steps(100), 5);
        assert_eq!(Warmup::Fraction(0.07).steps(100), 7);
        assert_eq!(Warmup::Fraction(0.05).steps(30), 2);
        assert_eq!(Warmup::Fraction(0.0).steps(30), 0);
        // No warm-up: the first step takes the peak rate.
        let c = Schedule::WarmupCosine {
            warmup: Warmup::Steps(0),
            min_lr: 0.0,
        };
        assert_eq!(c.step_lr(2.0, 0, 5), 2.0);
        assert!(c.step_lr(2.0, 4, 5).abs() < 1e-15);
        // Caffe's step, multistep and poly policies, at Caffe's iteration counts.
        let st = Schedule::StepIter {
            every: 3,
            factor: 0.5,
        };
        let rates: Vec<f64> = (0..7).map(|t| st.step_lr(1.0, t, 100)).collect();
        assert_eq!(rates, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
        let ms = Schedule::MultiStep {
            at: vec![2, 5],
            factor: 0.1,
        };
        let rates: Vec<f64> = (0..6).map(|t| ms.step_lr(1.0, t, 100)).collect();
        assert_eq!(rates, [1.0, 1.0, 0.1, 0.1, 0.1, 0.1f64.powi(2)]);
        let p = Schedule::Poly { power: 0.5 };
        assert_eq!(p.step_lr(2.0, 0, 100), 2.0);
        assert_eq!(p.step_lr(2.0, 75, 100), 2.0 * 0.25f64.sqrt());
        assert_eq!(p.step_lr(2.0, 100, 100), 0.0);
        // The other schedules keep their rates.
        assert_eq!(Schedule::Constant.step_lr(0.3, 7, 10), 0.3);
    }

    #[test]
    fn adamw_warmup_cosine_clipping_and_decay_settings() {
        use super::{Schedule, Warmup};
        use crate::schedule::Optimizer;
        let net = "net m { input x: 4\n o = dense(2) }\n";
        let cfg = config_of(
            "m.net",
            &format!("{net}train {{ optimizer = adamw(lr=1e-3, weight_decay=0.05)\n schedule = warmup_cosine(warmup=0.05, min_lr=1e-5)\n clip_grad_norm = 1.0\n decay_min_rank = 2\n no_decay = [\"*cls*\", \"*pos*\"] }}"),
        )
        .unwrap();
        assert_eq!(
            cfg.optimizer.kind,
            Optimizer::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05
            }
        );
        assert_eq!(
            cfg.schedule,
            Schedule::WarmupCosine {
                warmup: Warmup::Fraction(0.05),
                min_lr: 1e-5
            }
        );
        assert_eq!(cfg.clip_grad_norm, Some(1.0));
        assert_eq!(cfg.decay.min_rank, 2);
        assert_eq!(cfg.decay.no_decay, vec!["*cls*", "*pos*"]);
        // torch.optim.AdamW's default weight decay; an integer warm-up counts steps.
        let cfg = config_of(
            "m.net",
            &format!("{net}train {{ optimizer = adamw\n schedule = warmup_cosine(100) }}"),
        )
        .unwrap();
        assert_eq!(cfg.optimizer.kind.weight_decay(), 0.01);
        assert_eq!(
            cfg.schedule,
            Schedule::WarmupCosine {
                warmup: Warmup::Steps(100),
                min_lr: 0.0
            }
        );
        assert_eq!((cfg.clip_grad_norm, cfg.decay.min_rank), (None, 0));
        for (bad, want) in [
            ("optimizer = adamw(weight_decay=2)", "weight_decay must be"),
            ("optimizer = adamw(beta1=1)", "beta1 must be"),
            ("optimizer = adamW", "unknown optimizer"),
            (
                "schedule = warmup_cosine(warmup=1.5)",
                "as a fraction of all steps",
            ),
            ("schedule = warmup_cosine(warmup=-3)", "as a count of steps"),
            ("schedule = warmup_cosine(min_lr=-1)", "`min_lr` must be"),
            (
                "schedule = warmup_cosine(min_lr=1)",
                "above the optimizer's lr",
            ),
            ("schedule = warmup_cosine(tail=1)", "has no setting `tail`"),
            ("clip_grad_norm = 0", "`clip_grad_norm` must be"),
            ("clip_grad_norm = 1e999", "`clip_grad_norm` must be"),
            ("clip_grad_norm = max", "training setting `clip_grad_norm`"),
            ("decay_min_rank = 1.5", "training setting `decay_min_rank`"),
            ("decay_min_rank = 9", "`decay_min_rank` must be"),
            ("no_decay = [bias]", "training setting `no_decay`"),
            ("no_decay = [\"\"]", "training setting `no_decay`"),
            ("param_mult = [\"*.bias\"]", "training setting `param_mult`"),
            ("param_mult = [mult(lr=2)]", "training setting `param_mult`"),
            (
                "param_mult = [mult(\"*.bias\", lr=-1)]",
                "mult's `lr` must be",
            ),
            (
                "param_mult = [mult(\"*.bias\", speed=2)]",
                "has no setting `speed`",
            ),
            (
                "param_mult = [mult(\"*\"), mult(\"*\", lr=2)]",
                "gives \"*\" twice",
            ),
            ("schedule = multistep(at=[5, 3])", "ascending whole numbers"),
            ("schedule = multistep(factor=0.1)", "needs the steps"),
            ("schedule = multistep(at=[5], factor=2)", "`factor` must be"),
            ("schedule = poly(power=0)", "poly's `power` must be"),
            (
                "schedule = step_iter(every=0)",
                "step_iter's `every` must be",
            ),
        ] {
            let e = config_of("m.net", &format!("{net}train {{ {bad} }}")).expect_err(bad);
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn pixel_range_in_the_dsl_and_yaml() {
        let net = "net m { input x: 4\n o = dense(2) }\n";
        assert_eq!(
            range_of("m.net", &format!("{net}train {{ data = synthetic }}")),
            Ok((0.0, 1.0))
        );
        assert_eq!(
            range_of("m.net", &format!("{net}train {{ range = [-1, 1] }}")),
            Ok((-1.0, 1.0))
        );
        let yaml = "networks:\n  - name: m\n    inputs: {x: 4}\n    layers: [{op: dense, units: 2}]\ntrain:\n  range: [-0.5, 0.5]\n";
        assert_eq!(range_of("m.yaml", yaml), Ok((-0.5, 0.5)));
        for bad in ["[1, -1]", "[0, 0]", "[0]", "2", "[0, 1, 2]"] {
            let e = range_of("m.net", &format!("{net}train {{ range = {bad} }}")).expect_err(bad);
            assert!(e.contains("training setting `range`"), "{bad}: {e}");
        }
    }

    fn images_of(src: &str) -> Result<super::ImageConfig, String> {
        config_of("m.net", src).map(|c| c.images)
    }

    #[test]
    fn the_image_pipeline_keys() {
        use super::{BadImages, ChannelStat};
        let net = "net m { input x: 3x8x8\n o = flatten -> dense(2) }\n";
        let cfg = images_of(&format!(
            "{net}train {{ data = images\n resize = 10\n crop = center\n flip = true\n mean = auto\n std = [0.2, 0.3, 0.4]\n color_jitter = 0.1\n eval_crops = 10\n bad_images = skip\n val_fraction = 0.2\n convert_channels = true }}"
        ))
        .unwrap();
        assert_eq!(cfg.resize, Some(10));
        assert!(!cfg.random_crop && cfg.flip && cfg.convert_channels);
        assert_eq!(cfg.mean, ChannelStat::Auto);
        assert_eq!(cfg.std, ChannelStat::Values(vec![0.2, 0.3, 0.4]));
        assert_eq!((cfg.color_jitter, cfg.eval_crops), (0.1, 10));
        assert_eq!(cfg.bad_images, BadImages::Skip);
        assert_eq!(cfg.val_fraction, 0.2);
        assert_eq!(
            images_of(&format!("{net}train {{ data = synthetic }}")),
            Ok(super::ImageConfig::default())
        );
        for (bad, key) in [
            ("resize = 0", "resize"),
            ("crop = middle", "crop"),
            ("flip = 1", "flip"),
            ("mean = fancy", "mean"),
            ("std = [0.2, 0]", "std"),
            ("color_jitter = -1", "color_jitter"),
            ("eval_crops = 5", "eval_crops"),
            ("bad_images = ignore", "bad_images"),
            ("val_fraction = 1", "val_fraction"),
            ("convert_channels = yes", "convert_channels"),
            ("resize = 100000", "resize"),
            ("verify_images = 2", "verify_images"),
        ] {
            let e = images_of(&format!("{net}train {{ {bad} }}")).expect_err(bad);
            assert!(
                e.contains(&format!("training setting `{key}`")),
                "{bad}: {e}"
            );
        }
    }
}
