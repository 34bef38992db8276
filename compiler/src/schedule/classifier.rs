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
    /// The step an update first wrote a non-finite weight at (see [`Builder::health`]).
    pub health: TensorId,
    pub rng: Option<TensorId>,
    pub logits_eval: TensorId,
    /// The training step, or with [`Builder::rank_rows`] its gradients only.
    pub train: usize,
    /// With [`Builder::rank_rows`], the update pass the host runs after summing the
    /// gradients of every rank.
    pub update: Option<usize>,
    pub eval: usize,
}

impl Builder {
    /// The classifier program of `net` at `batch` under `rule` (an optimizer, or one with
    /// its decay rule and clipping; see [`ClassifierPlan`]).
    pub fn classifier(
        self,
        net: &Network,
        rule: impl Into<UpdateRule>,
        batch: u64,
    ) -> Result<ClassifierPlan, LowerError> {
        self.classifier_per_position(net, rule, batch, 1)
    }

    /// The classifier program with a softmax cross-entropy at each of `positions` rows of
    /// the logits per example (a language model: logits `positions x vocab`, the loss the
    /// mean over every position of the batch).
    pub fn classifier_per_position(
        mut self,
        net: &Network,
        rule: impl Into<UpdateRule>,
        batch: u64,
        positions: u64,
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
        self.check_blocks(net)?;
        let feats = numel(&net.graph[input].shape);
        let classes = numel(&net.graph[logit].shape);
        let p = positions.max(1);
        if !classes.is_multiple_of(p) {
            return Err(LowerError::Other(format!(
                "the logits' {classes} values per example are not {p} positions of equal size"
            )));
        }
        let b = batch;
        let mut set = self.params(net, true);
        let x = self.tensor("x", b * feats, Kind::HostInput);
        let y = self.tensor("y", b * classes, Kind::HostInput);
        let stats = self.tensor("train_stats", 4, Kind::Stats);
        let micro = self.micro_split(net, b);
        let parts = self.parts_to_lower(&micro);
        self.whole_batch_layers(net, &micro)?;
        // A rank's rows: scaled by the global batch, masks from its first row.
        let (global, row0) = self
            .rank_rows_of()
            .map_or((b, 0), |r| (r.global_batch, r.row0));
        self.begin_pass("train_step");
        for &k in &parts {
            let (n0, rows) = micro.part(k);
            let t0 = self.tensor_count();
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let store = if k == 0 {
                Store::Write
            } else {
                Store::Accumulate
            };
            self.set_part(row0 + n0, store);
            let fwd = self.forward(net, &set, xs, rows, true)?;
            // Scaled by the whole batch: the micro-batches' gradients add up to its mean.
            let (r, c, scale) = (rows * p, classes / p, 1.0 / (global * p) as f64);
            let dz = self.softmax_xent(fwd.logit, ys, r, c, scale, stats);
            self.backward(net, &set, &fwd, fwd.logit_node, dz, false);
            self.count_repeats(&micro, &parts, k, t0);
        }
        let (train, update) = self.update_pass(&mut set, &rule);
        // Evaluation adds its statistics on the device too: one read-back per test set, not
        // one per batch. Padding rows (all-zero targets) add nothing.
        let eval_stats = self.tensor("eval_stats", 4, Kind::Stats);
        self.begin_pass("eval");
        let whole = (micro.count > 1).then(|| self.tensor("logits", b * classes, Kind::Activation));
        let mut logits_eval = 0;
        for &k in &parts {
            let (n0, rows) = micro.part(k);
            let t0 = self.tensor_count();
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let fe = self.forward(net, &set, xs, rows, false)?;
            self.softmax_xent(fe.logit, ys, rows * p, classes / p, 1.0, eval_stats);
            logits_eval = match whole {
                Some(t) => {
                    self.copy(fe.logit, 0, t, n0 * classes, rows * classes);
                    t
                }
                None => fe.logit,
            };
            self.count_repeats(&micro, &parts, k, t0);
        }
        self.keep(logits_eval);
        let eval = self.end_pass();
        let hyper = self.hyper("opt");
        let health = self.health();
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
            health,
            rng,
            logits_eval,
            train,
            update,
            eval,
        })
    }
}

impl Builder {
    /// Ends the training step after its backward pass with the update: in the same pass, or
    /// with [`Builder::rank_rows`] in a pass of its own, the host summing the ranks'
    /// gradients between the two. Returns the training pass and the update pass, if apart.
    fn update_pass(&mut self, set: &mut ParamSet, rule: &UpdateRule) -> (usize, Option<usize>) {
        self.set_part(0, Store::Write);
        if self.rank_rows_of().is_none() {
            self.update(set, rule, "opt");
            return (self.end_pass(), None);
        }
        let grads = self.end_pass();
        self.begin_pass("update");
        self.update(set, rule, "opt");
        (grads, Some(self.end_pass()))
    }

    /// A batch cut into micro-batches is refused when a layer needs the whole batch at once
    /// (batchnorm's statistics), naming the layer and the batch that fits.
    fn whole_batch_layers(&self, net: &Network, micro: &MicroBatches) -> Result<(), LowerError> {
        let b = micro.batch;
        if micro.count > 1 {
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
                    micro.per
                )));
            }
        }
        Ok(())
    }

    /// The batch cut into micro-batches whose every activation fits one storage binding (one
    /// micro-batch when the whole batch fits). A training step runs them one after another,
    /// the parameter gradients adding up, then one update: the same step, with activation
    /// memory bounded by the micro-batch (AlexNet's conv1 output at batch 128 is 148 MB,
    /// over lavapipe's 128 MiB binding). Counted, not listed: O(1) in the batch.
    pub fn micro_split(&self, net: &Network, batch: u64) -> MicroBatches {
        let per_sample = net
            .order
            .iter()
            .map(|&n| numel(&net.graph[n].shape).saturating_mul(4))
            .max()
            .unwrap_or(4)
            .max(4);
        let batch = batch.max(1);
        let per = (self.max_binding() / per_sample).clamp(1, batch);
        MicroBatches {
            batch,
            per,
            count: batch.div_ceil(per),
        }
    }

    /// Every micro-batch of [`Builder::micro_split`] as (first sample, rows).
    pub fn micro_batches(&self, net: &Network, batch: u64) -> Vec<(u64, u64)> {
        let m = self.micro_split(net, batch);
        (0..m.count).map(|k| m.part(k)).collect()
    }

    /// The micro-batches a program lowers: all of them, or for a memory plan only those that
    /// differ (see [`Builder::for_memory`]).
    fn parts_to_lower(&self, m: &MicroBatches) -> Vec<u64> {
        if !self.memory_only() || m.count <= 3 {
            return (0..m.count).collect();
        }
        vec![0, 1, m.count - 1]
    }
    /// After lowering micro-batch `k` from tensor `t0` on: when `k` stands for the ones a
    /// memory plan leaves out (the second, repeated by all up to the last), count them.
    fn count_repeats(&mut self, m: &MicroBatches, parts: &[u64], k: u64, t0: TensorId) {
        let left_out = m.count - parts.len() as u64;
        if k == 1 && left_out > 0 {
            self.count_repeated(t0, left_out);
        }
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

/// How a batch is cut into micro-batches: `count` parts of `per` rows, the last one holding
/// what remains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroBatches {
    pub batch: u64,
    pub per: u64,
    pub count: u64,
}

impl MicroBatches {
    /// Micro-batch `k` as (first sample, rows).
    pub fn part(&self, k: u64) -> (u64, u64) {
        let n0 = k * self.per;
        (n0, self.per.min(self.batch - n0))
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::Optimizer;
    use crate::program::Builder;

    /// A memory plan that lowers only the micro-batches that differ has the same buffers,
    /// and the same bytes without reuse, as the program that runs every one.
    #[test]
    fn a_memory_plan_of_some_micro_batches_equals_the_whole() {
        let src = "net t { input x: 2x12x12\n a = conv(24, k=2, pad=same) -> relu -> dropout(0.3)\n p = maxpool(k=2, s=2)\n b = conv(6, k=3, pad=1, groups=2) -> tanh\n fc = flatten -> dense(40) -> relu -> dropout(0.5)\n o = dense(3) }";
        let m = crate::compile("t.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
        let net = &m.networks[0];
        let adam = Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        for batch in [1, 3, 7, 8, 9, 13, 40] {
            let b = || Builder::new().with_binding_limit(32 << 10);
            assert!(b().micro_split(net, batch).count >= batch.div_ceil(2));
            let all = b().classifier(net, adam, batch).expect("lowers").program;
            let some = b()
                .for_memory()
                .classifier(net, adam, batch)
                .expect("lowers");
            let some = some.program;
            assert_eq!(some.memory(), all.memory(), "batch {batch}");
            assert_eq!(some.buffers, all.buffers, "batch {batch}");
            let unplanned = |p: &crate::program::Program| {
                p.tensors
                    .iter()
                    .filter(|t| t.kind == crate::program::Kind::Activation)
                    .map(|t| crate::program::padded_len(t.len) * 4)
                    .sum::<u64>()
                    + p.repeated_bytes
            };
            assert_eq!(unplanned(&some), unplanned(&all), "batch {batch}");
            if batch >= 9 {
                assert!(some.passes[0].commands.len() < all.passes[0].commands.len());
            }
        }
    }
}
