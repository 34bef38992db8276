//! The optimizer step: every trainable parameter updated, small tensors grouped into shared
//! dispatches as far as the device's per-stage limits allow.

use super::numel;
use super::update_rule::UpdateRule;
use crate::kernels::{self, Clip, Optimizer};
use crate::program::{Builder, Kind, ParamSet, TensorId};

/// Tensors up to this many elements share optimizer dispatches (see `Builder::update`).
const GROUPED_UPDATE_MAX_LEN: u64 = 16_384;

impl Builder {
    /// Updates every trainable parameter of `set` under `rule` (each tensor with the weight
    /// decay its rule gives it; with clipping, the gradients' squared norms are summed first,
    /// in the same pass); `hyper` names the host buffer. Tensors are updated in groups, as
    /// many per dispatch as the device's limits allow.
    pub fn update(&mut self, set: &mut ParamSet, rule: impl Into<UpdateRule>, hyper_name: &str) {
        let rule: UpdateRule = rule.into();
        let opt = rule.opt;
        let hyper = self.hyper(hyper_name);
        let health = self.health();
        let states: &[&str] = match opt {
            Optimizer::Sgd { .. } => &["velocity"],
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => &["adam_m", "adam_v"],
        };
        let mut trainable = vec![];
        for (i, b) in set.bindings.iter_mut().enumerate() {
            let Some(g) = b.grad else { continue };
            if b.state.is_empty() {
                let part = if b.len == numel(&b.shape) {
                    String::new()
                } else {
                    format!("@{}", b.offset)
                };
                for st in states {
                    b.state.push(self.tensor(
                        format!("{}:{}{part}.{st}", b.net, b.name),
                        b.len,
                        Kind::OptimizerState,
                    ));
                }
            }
            trainable.push((i, g));
        }
        // Large tensors get a dispatch each: a grouped kernel branches per tensor, and a
        // software rasteriser runs every branch masked, so grouping pays for small tensors
        // (where a dispatch costs more than the update) and nothing is gained for large ones.
        let (large, small): (Vec<_>, Vec<_>) = trainable
            .into_iter()
            .partition(|&(i, _)| set.bindings[i].len > GROUPED_UPDATE_MAX_LEN);
        let mut chunks: Vec<Vec<(usize, TensorId)>> = large.into_iter().map(|t| vec![t]).collect();
        // Clipping binds one more operand (the squared sums) to every update.
        let per = opt.operands() + u32::from(rule.clip.is_some());
        chunks.extend(small.chunks(self.group_size(per)).map(<[_]>::to_vec));
        let clip = rule.clip.map(|max_norm| Clip {
            max_norm,
            slots: chunks.iter().map(|c| c.len() as u64).sum(),
        });
        let sumsq = clip.map(|c| self.grad_sumsq(set, &chunks, c.slots));
        for chunk in &chunks {
            let mut bindings = vec![];
            let mut lens = vec![];
            let mut names = vec![];
            for &(i, g) in chunk {
                let b = &set.bindings[i];
                bindings.push(b.tensor);
                bindings.push(g);
                bindings.extend(b.state.iter().copied());
                lens.push(b.len);
                names.push(b.name.clone());
            }
            bindings.push(hyper);
            bindings.push(health);
            bindings.extend(sumsq);
            let rules: Vec<Optimizer> = chunk
                .iter()
                .map(|&(i, _)| {
                    let b = &set.bindings[i];
                    rule.for_tensor(&b.name, b.shape.len())
                })
                .collect();
            let lr_mults: Vec<f64> = names.iter().map(|n| rule.decay.lr_mult(n)).collect();
            let net = &set.bindings[chunk[0].0].net;
            let label = format!("{net}.{} update", names.join(", "));
            let kernel = kernels::update_group_with(&lens, (&rules, &lr_mults), clip, self.reads());
            self.emit(kernel, bindings, label);
        }
    }

    /// The squared norm of every gradient updated by `chunks`, one slot each in a new tensor,
    /// by one dispatch per chunk (the update groups' limits hold for it too).
    fn grad_sumsq(
        &mut self,
        set: &ParamSet,
        chunks: &[Vec<(usize, TensorId)>],
        slots: u64,
    ) -> TensorId {
        let net = chunks
            .first()
            .and_then(|c| c.first())
            .map_or(String::new(), |&(i, _)| set.bindings[i].net.clone());
        let sumsq = self.tensor(format!("{net}.grad_sumsq"), slots, Kind::Activation);
        let mut base = 0;
        for chunk in chunks {
            let lens: Vec<u64> = chunk.iter().map(|&(i, _)| set.bindings[i].len).collect();
            let mut bindings: Vec<TensorId> = chunk.iter().map(|&(_, g)| g).collect();
            bindings.push(sumsq);
            let kernel = kernels::grad_sumsq(&lens, base, self.reads());
            self.emit(kernel, bindings, format!("{net} gradient norms"));
            base += chunk.len() as u64;
        }
        sumsq
    }
}
