//! Which trainable tensors the optimizer's weight decay applies to, as `netc check` shows
//! them: the section's decay rule (`decay_min_rank`, `no_decay`) resolved against the
//! networks' parameters, each tensor left out with its reason.

use super::{Task, TrainConfig};
use crate::ir::Model;
use crate::schedule::glob;

/// One trainable tensor: whether it gets weight decay, and why not where it does not.
#[derive(Debug, Clone, PartialEq)]
pub struct DecayLine {
    pub network: String,
    pub tensor: String,
    pub rank: usize,
    pub decayed: bool,
    pub why: Option<String>,
    /// The learning-rate and decay multipliers `param_mult` gives it (1, 1 without one).
    pub mult: (f64, f64),
}

impl TrainConfig {
    /// The trainable tensors of the task's networks and whether weight decay applies to each;
    /// empty when no optimizer decays (weight_decay 0).
    pub fn decay_table(&self, model: &Model) -> Vec<DecayLine> {
        let nets: Vec<(&str, f64)> = match &self.task {
            Task::Classifier { network } => {
                vec![(network.as_str(), self.optimizer.kind.weight_decay())]
            }
            Task::LanguageModel(m) => {
                vec![(m.network.as_str(), self.optimizer.kind.weight_decay())]
            }
            Task::Minimise(m) => vec![(m.network.as_str(), self.optimizer.kind.weight_decay())],
            Task::Gan(g) => vec![
                (g.generator.as_str(), g.g_optimizer.kind.weight_decay()),
                (g.discriminator.as_str(), g.d_optimizer.kind.weight_decay()),
            ],
        };
        let mut lines = vec![];
        for (name, wd) in nets {
            let Some(net) = model.network(name).filter(|_| wd > 0.0) else {
                continue;
            };
            for p in net.param_specs().into_iter().filter(|p| p.trainable) {
                let rank = p.shape.len();
                let pattern = self.decay.no_decay.iter().find(|g| glob(g, &p.name));
                let why = if rank < self.decay.min_rank {
                    Some(format!(
                        "rank {rank} < decay_min_rank {}",
                        self.decay.min_rank
                    ))
                } else if let Some(g) = pattern {
                    Some(format!("matches \"{g}\""))
                } else {
                    // Caffe's decay_mult 0 (`param_mult`'s decay=0).
                    self.decay
                        .mult(&p.name)
                        .filter(|m| m.decay == 0.0)
                        .map(|m| format!("param_mult \"{}\" decay=0", m.pattern))
                };
                lines.push(DecayLine {
                    network: name.to_string(),
                    tensor: p.name.clone(),
                    rank,
                    decayed: why.is_none(),
                    why,
                    mult: self
                        .decay
                        .mult(&p.name)
                        .map_or((1.0, 1.0), |m| (m.lr, m.decay)),
                });
            }
        }
        lines
    }
}

/// The table as `netc check` prints it: per network, the tensors decayed and those left out.
pub fn decay_text(lines: &[DecayLine]) -> String {
    let mut out = String::new();
    let mut nets: Vec<&str> = lines.iter().map(|l| l.network.as_str()).collect();
    nets.dedup();
    for net in nets {
        let of = |decayed: bool| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.network == net && l.decayed == decayed)
                .map(|l| match &l.why {
                    Some(w) => format!("{} ({w})", l.tensor),
                    None => l.tensor.clone(),
                })
                .collect()
        };
        let (yes, no) = (of(true), of(false));
        out.push_str(&format!("weight decay in `{net}`:\n"));
        out.push_str(&format!("  decayed:     {}\n", list(&yes)));
        out.push_str(&format!("  not decayed: {}\n", list(&no)));
        // Tensors whose rate or decay a param_mult scales (decay 0 is listed above).
        let scaled: Vec<String> = lines
            .iter()
            .filter(|l| l.network == net && l.mult != (1.0, 1.0))
            .map(|l| format!("{} (lr x{}, decay x{})", l.tensor, l.mult.0, l.mult.1))
            .collect();
        if !scaled.is_empty() {
            out.push_str(&format!("  multipliers: {}\n", list(&scaled)));
        }
    }
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}
