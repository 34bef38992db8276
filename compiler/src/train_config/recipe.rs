//! A training recipe written out as the settings of a section, so `train` and `check` can state
//! the default recipe a model without a training section trains with (one text for both).

use super::{Length, Task, TrainConfig};
use crate::schedule::Optimizer;

/// The recipe `cfg` as `key = value` lines, in the order a section would give them.
pub fn recipe_lines(cfg: &TrainConfig) -> Vec<String> {
    let mut lines = vec![];
    match &cfg.task {
        Task::Classifier { network } => {
            lines.push("task = classifier".to_string());
            lines.push(format!("network = {network}"));
            lines.push("loss = softmax_cross_entropy (on the logits)".to_string());
        }
        Task::Minimise(m) => {
            lines.push("task = minimise".to_string());
            lines.push(format!("network = {}", m.network));
            lines.push(format!("loss = {} (its batch mean)", m.loss));
        }
        Task::LanguageModel(m) => {
            lines.push("task = language_model".to_string());
            lines.push(format!("network = {}", m.network));
            lines.push(format!(
                "loss = per-token cross-entropy over {} characters, windows of {}",
                m.vocab, m.block
            ));
        }
        Task::Gan(g) => {
            lines.push("task = gan".to_string());
            lines.push(format!("generator = {}", g.generator));
            lines.push(format!("discriminator = {}", g.discriminator));
        }
    }
    lines.push(format!(
        "optimizer = {}",
        optimizer(cfg.optimizer.kind, cfg.optimizer.lr)
    ));
    lines.push(format!("batch = {}", cfg.batch));
    lines.push(match cfg.length {
        Length::Epochs(n) => format!("epochs = {n}"),
        Length::Steps(n) => format!("steps = {n}"),
    });
    // `mnist` (the default) reads any IDX folder, and a folder of class folders as images.
    lines.push(match (&cfg.data_dir, cfg.data.as_str()) {
        (Some(d), "mnist") => format!("data_dir = {d:?} (IDX files, or class folders of images)"),
        (Some(d), data) => format!("data = {data}, data_dir = {d:?}"),
        (None, "synthetic") => "data = synthetic".to_string(),
        (None, data) => format!(
            "data = {data} (give --data-dir: a folder of IDX files, or of class folders of images)"
        ),
    });
    lines.push(format!("seed = {}", cfg.seed));
    lines
}

/// An optimizer as the section writes it: `adam(lr=1e-3, beta1=0.9, ...)`.
fn optimizer(kind: Optimizer, lr: f64) -> String {
    match kind {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        } => format!(
            "sgd(lr={}, momentum={}, weight_decay={})",
            num(lr),
            num(momentum),
            num(weight_decay)
        ),
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let wd = if weight_decay == 0.0 {
                String::new()
            } else {
                format!(", weight_decay={}", num(weight_decay))
            };
            format!(
                "adam(lr={}, beta1={}, beta2={}, eps={}{wd})",
                num(lr),
                num(beta1),
                num(beta2),
                num(eps)
            )
        }
        Optimizer::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => format!(
            "adamw(lr={}, beta1={}, beta2={}, eps={}, weight_decay={})",
            num(lr),
            num(beta1),
            num(beta2),
            num(eps),
            num(weight_decay)
        ),
    }
}

/// A number as a person writes it: 0.9, 1e-3, 1e-8 (not 0.001 or 0.00000001).
fn num(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_recipe_reads_as_a_section() {
        let m = crate::compile("m.net", "net m { input x: 4\n o = dense(2) }\n").unwrap();
        let cfg = super::super::default_recipe(&m).unwrap();
        let lines = super::recipe_lines(&cfg);
        assert_eq!(lines[0], "task = classifier");
        assert_eq!(lines[1], "network = m");
        assert!(
            lines.contains(&"optimizer = adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)".into()),
            "{lines:?}"
        );
        assert!(lines.contains(&"batch = 128".into()), "{lines:?}");
        assert!(lines.contains(&"epochs = 5".into()), "{lines:?}");
    }
}
