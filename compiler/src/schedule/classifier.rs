//! The classifier plan: a training step (run in micro-batches when the batch's activations
//! exceed a storage binding) and an evaluation pass, with the tensors the host uses.

use super::{numel, LowerError, UpdateRule};
use crate::ir::Network;
use crate::kernels::Store;
use crate::ops::Op;
use crate::program::{Builder, Kind, ParamSet, Program, TensorId};

/// A classifier's static program: one training step (forward, softmax cross-entropy on the
/// logits, backward, optimizer update) and an evaluation pass, with the tensors the host uses.
/// The session runs it and `netc check` reports its memory, so the two cannot disagree.
#[derive(Debug, Clone)]
pub struct ClassifierPlan {
    pub program: Program,
    pub set: ParamSet,
    pub x: TensorId,
    pub y: TensorId,
    pub stats: TensorId,
    pub eval_stats: TensorId,
    pub hyper: TensorId,
    pub rng: Option<TensorId>,
    pub logits_eval: TensorId,
    pub train: usize,
    pub eval: usize,
}

impl Builder {
    /// The classifier program of `net` at `batch` under `rule` (an optimizer, or one with
    /// its decay rule and clipping; see [`ClassifierPlan`]).
    pub fn classifier(
        mut self,
        net: &Network,
        rule: impl Into<UpdateRule>,
        batch: u64,
    ) -> Result<ClassifierPlan, LowerError> {
        let rule: UpdateRule = rule.into();
        let (_, logit) = net
            .output_and_logit()
            .ok_or_else(|| LowerError::Other(format!("network `{}` has no output", net.name)))?;
        let input = *net.inputs.first().ok_or(LowerError::Inputs {
            net: net.name.clone(),
            count: 0,
        })?;
        if batch > super::MAX_BATCH {
            return Err(LowerError::Other(format!(
                "batch {batch} is over the largest batch netc plans a training step for ({})",
                super::MAX_BATCH
            )));
        }
        // Every value's bytes over the batch must be a count, not a wrapped product.
        if let Some(&n) = net.order.iter().find(|&&n| {
            numel(&net.graph[n].shape)
                .checked_mul(batch)
                .and_then(|v| v.checked_mul(4))
                .is_none()
        }) {
            return Err(LowerError::Other(format!(
                "layer `{}` at batch {batch} is too large to plan ({:?} values per sample)",
                net.graph[n].name, net.graph[n].shape
            )));
        }
        let feats = numel(&net.graph[input].shape);
        let classes = numel(&net.graph[logit].shape);
        let b = batch;
        let mut set = self.params(net, true);
        let x = self.tensor("x", b * feats, Kind::HostInput);
        let y = self.tensor("y", b * classes, Kind::HostInput);
        let stats = self.tensor("train_stats", 4, Kind::Stats);
        let micro = self.micro_batches(net, b);
        if micro.len() > 1 {
            if let Some(&bn) = net
                .order
                .iter()
                .find(|&&n| matches!(net.graph[n].op, Op::BatchNorm { .. }))
            {
                return Err(LowerError::Other(format!(
                    "batch {b} does not fit the device's {} storage binding in one piece, and layer `{}` (batchnorm) needs the whole batch for its statistics; lower the batch (at most {} fits) or use --device cpu",
                    if self.max_binding() >= 1 << 20 {
                        format!("{} MiB", self.max_binding() >> 20)
                    } else {
                        format!("{} KiB", self.max_binding() >> 10)
                    },
                    net.graph[bn].name,
                    micro[0].1
                )));
            }
        }
        self.begin_pass("train_step");
        for (k, &(n0, rows)) in micro.iter().enumerate() {
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let store = if k == 0 {
                Store::Write
            } else {
                Store::Accumulate
            };
            self.set_part(n0, store);
            let fwd = self.forward(net, &set, xs, rows, true)?;
            // Scaled by the whole batch: the micro-batches' gradients add up to its mean.
            let dz = self.softmax_xent(fwd.logit, ys, rows, classes, 1.0 / b as f64, stats);
            self.backward(net, &set, &fwd, fwd.logit_node, dz, false);
        }
        self.set_part(0, Store::Write);
        self.update(&mut set, &rule, "opt");
        let train = self.end_pass();
        // Evaluation adds its statistics on the device too: one read-back per test set, not
        // one per batch. Padding rows (all-zero targets) add nothing.
        let eval_stats = self.tensor("eval_stats", 4, Kind::Stats);
        self.begin_pass("eval");
        let whole = (micro.len() > 1).then(|| self.tensor("logits", b * classes, Kind::Activation));
        let mut logits_eval = 0;
        for &(n0, rows) in &micro {
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let fe = self.forward(net, &set, xs, rows, false)?;
            self.softmax_xent(fe.logit, ys, rows, classes, 1.0, eval_stats);
            logits_eval = match whole {
                Some(t) => {
                    self.copy(fe.logit, 0, t, n0 * classes, rows * classes);
                    t
                }
                None => fe.logit,
            };
        }
        self.keep(logits_eval);
        let eval = self.end_pass();
        let hyper = self.hyper("opt");
        let rng = Some(self.rng());
        self.register(&set);
        Ok(ClassifierPlan {
            program: self.finish(),
            set,
            x,
            y,
            stats,
            eval_stats,
            hyper,
            rng,
            logits_eval,
            train,
            eval,
        })
    }
}

impl Builder {
    /// The batch cut into micro-batches whose every activation fits one storage binding (one
    /// micro-batch when the whole batch fits). A training step runs them one after another,
    /// the parameter gradients adding up, then one update: the same step, with activation
    /// memory bounded by the micro-batch (AlexNet's conv1 output at batch 128 is 148 MB,
    /// over lavapipe's 128 MiB binding).
    pub fn micro_batches(&self, net: &Network, batch: u64) -> Vec<(u64, u64)> {
        let per_sample = net
            .order
            .iter()
            .map(|&n| numel(&net.graph[n].shape) * 4)
            .max()
            .unwrap_or(4)
            .max(4);
        let per = (self.max_binding() / per_sample).clamp(1, batch.max(1));
        (0..batch.div_ceil(per))
            .map(|i| (i * per, per.min(batch - i * per)))
            .collect()
    }

    /// Rows `n0..n0 + rows` of the host inputs x and y (features and classes per row): the
    /// tensors themselves when that is the whole batch, else copies.
    fn micro_inputs(
        &mut self,
        (x, feats): (TensorId, u64),
        (y, classes): (TensorId, u64),
        n0: u64,
        rows: u64,
        batch: u64,
    ) -> (TensorId, TensorId) {
        if rows == batch {
            return (x, y);
        }
        let xs = self.tensor("x.micro", rows * feats, Kind::Activation);
        self.copy(x, n0 * feats, xs, 0, rows * feats);
        let ys = self.tensor("y.micro", rows * classes, Kind::Activation);
        self.copy(y, n0 * classes, ys, 0, rows * classes);
        (xs, ys)
    }
}
