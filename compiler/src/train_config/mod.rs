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
mod fit;
mod images;
mod ranges;
mod read;
mod reader;
mod recipe;

pub use images::{BadImages, ChannelStat, ImageConfig};
pub use read::{default_recipe, read};
pub use recipe::recipe_lines;

use crate::schedule::Optimizer;

#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Classifier { network: String },
    Gan(GanConfig),
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

#[derive(Debug, Clone, Copy, PartialEq)]
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
}

impl Schedule {
    /// The factor a per-step schedule applies at optimizer step `t` (0-based); 1 for the
    /// epoch-wise ones, which change the learning rate itself.
    pub fn step_factor(&self, t: u64) -> f64 {
        match *self {
            Schedule::Inv { gamma, power } => (1.0 + gamma * t as f64).powf(-power),
            Schedule::Constant | Schedule::Step { .. } | Schedule::Plateau { .. } => 1.0,
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
