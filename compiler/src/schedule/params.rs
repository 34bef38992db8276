//! A network's parameter buffers: a tensor per parameter (and a gradient when trainable), a
//! dense weight over the device's binding limit split in row blocks.

use super::numel;
use crate::ir::Network;
use crate::ops::Op;
use crate::program::{Builder, Kind, ParamBinding, ParamSet};
use std::collections::HashMap;

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
                let fan_in = numel(&net.graph[net.inputs_of(n)[0]].shape);
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
