//! A network's parameter buffers: a tensor per parameter (and a gradient when trainable), a
//! dense weight over the device's binding limit split in row blocks.

use super::{numel, LowerError};
use crate::ir::Network;
use crate::ops::Op;
use crate::program::{Builder, Kind, ParamBinding, ParamSet};
use std::collections::HashMap;

/// Row blocks a network's dense weights may be held in, in all: 65,536 blocks of WebGPU's
/// least binding (128 MiB) are 8 TiB of weights, beyond any device, while the planner's work
/// and memory stay bounded.
pub const MAX_ROW_BLOCKS: u64 = 1 << 16;

impl Builder {
    /// Parameter (and, when trainable, gradient) buffers for a network.
    pub fn params(&mut self, net: &Network, trainable: bool) -> ParamSet {
        let mut set = ParamSet {
            net: net.name.clone(),
            by_name: HashMap::new(),
            bindings: vec![],
            trainable,
        };
        for &n in &net.order {
            let node = &net.graph[n];
            // A dense layer's weight and bias split by the same row blocks.
            let blocks = if let Op::Dense { units, .. } = node.op {
                let fan_in = super::dense_dims(net, n).1;
                self.dense_blocks(units, fan_in)
            } else {
                vec![]
            };
            for spec in &node.params {
                let total = numel(&spec.shape);
                let row = total / spec.shape.first().copied().unwrap_or(1).max(1);
                let parts: Vec<(u64, u64)> = if blocks.len() > 1 {
                    blocks
                        .iter()
                        .map(|&(r0, r1)| (r0 * row, (r1 - r0) * row))
                        .collect()
                } else {
                    vec![(0, total)]
                };
                set.by_name.insert(spec.name.clone(), set.bindings.len());
                for (i, &(offset, len)) in parts.iter().enumerate() {
                    let suffix = if parts.len() > 1 {
                        format!("#{i}")
                    } else {
                        String::new()
                    };
                    let base = format!("{}:{}{suffix}", net.name, spec.name);
                    let tensor = self.tensor(base.clone(), len, Kind::Param);
                    let grad = (trainable && spec.trainable)
                        .then(|| self.tensor(format!("{base}.grad"), len, Kind::Grad));
                    set.bindings.push(ParamBinding {
                        net: net.name.clone(),
                        name: spec.name.clone(),
                        shape: spec.shape.clone(),
                        offset,
                        len,
                        tensor,
                        grad,
                        state: vec![],
                    });
                }
            }
        }
        set
    }

    /// Refuses a network whose dense weights would be held in more than [`MAX_ROW_BLOCKS`]
    /// row blocks in all, naming the layer that passes it, before any is made: the blocks
    /// are counted, never listed (dense(99999999999) was 2.3 million blocks, 3 GB of planner
    /// state and an abort).
    pub fn check_blocks(&self, net: &Network) -> Result<(), LowerError> {
        let mut total = 0u64;
        for &n in &net.order {
            let Op::Dense { units, .. } = net.graph[n].op else {
                continue;
            };
            let fan_in = super::dense_dims(net, n).1;
            let rows = (self.max_binding() / 4 / fan_in.max(1)).max(1);
            total = total.saturating_add(units.div_ceil(rows));
            if total > MAX_ROW_BLOCKS {
                let bytes = units.saturating_mul(fan_in).saturating_mul(4);
                return Err(LowerError::Other(format!(
                    "layer `{}`'s weight ({units} x {fan_in}, {:.3e} bytes) would be held in {} row blocks of the device's {} MiB storage binding, more than the {MAX_ROW_BLOCKS} netc plans for a network; no device holds a layer this large",
                    net.graph[n].name,
                    bytes as f64,
                    units.div_ceil(rows),
                    self.max_binding() >> 20
                )));
            }
        }
        Ok(())
    }

    /// Row blocks of a dense weight [units, fan_in] that each fit one binding (one block when
    /// the whole weight fits).
    fn dense_blocks(&self, units: u64, fan_in: u64) -> Vec<(u64, u64)> {
        let rows = (self.max_binding() / 4 / fan_in.max(1)).max(1);
        if rows >= units {
            return vec![(0, units)];
        }
        (0..units.div_ceil(rows))
            .map(|i| (i * rows, ((i + 1) * rows).min(units)))
            .collect()
    }
}
