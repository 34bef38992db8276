//! The optimizer step: every trainable parameter updated, small tensors grouped into shared
//! dispatches as far as the device's per-stage limits allow.

use super::numel;
use crate::kernels::{self, Optimizer};
use crate::program::{Builder, Kind, ParamSet, TensorId};

/// Tensors up to this many elements share optimizer dispatches (see `Builder::update`).
const GROUPED_UPDATE_MAX_LEN: u64 = 16_384;

impl Builder {
    /// Updates every trainable parameter of `set` with `opt`; `hyper` names the host buffer.
    /// Tensors are updated in groups, as many per dispatch as the device's limits allow.
    pub fn update(&mut self, set: &mut ParamSet, opt: Optimizer, hyper_name: &str) {
        let hyper = self.hyper(hyper_name);
        let health = self.health();
        let states: &[&str] = match opt {
            Optimizer::Sgd { .. } => &["velocity"],
            Optimizer::Adam { .. } => &["adam_m", "adam_v"],
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
        chunks.extend(
            small
                .chunks(self.group_size(opt.operands()))
                .map(<[_]>::to_vec),
        );
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
            let net = &set.bindings[chunk[0].0].net;
            let label = format!("{net}.{} update", names.join(", "));
            let kernel = kernels::update_group(&lens, opt, self.reads());
            self.emit(kernel, bindings, label);
        }
    }
}
