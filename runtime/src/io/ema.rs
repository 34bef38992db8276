//! An exponential moving average of a network's weights, kept in the checkpoint beside them
//! under `ema.` (`ema.b1.conv.weight`), as a second state_dict of the same module names; a
//! diffusion model samples with it.

use crate::cpu::Params;
use crate::io::run_checkpoint::{load_weights_for_transfer, RunCheckpointError};
use crate::io::Checkpoint;
use netc_compiler::ir::Network;

/// Where the averaged weights go in a checkpoint.
pub const EMA_GROUP: &str = "ema.";

/// Puts the averaged weights `ema` into `ck` under [`EMA_GROUP`].
pub fn save_ema(ck: &mut Checkpoint, ema: &Params<f32>) {
    let mut one = Checkpoint {
        tensors: vec![],
        metadata: Default::default(),
    };
    let none = crate::cpu::OptState {
        slots: vec![],
        step: 0,
    };
    super::run_checkpoint::save_params(&mut one, None, (ema, &none), 0);
    for (name, shape, data) in one.tensors {
        if !name.ends_with(".num_batches_tracked") {
            ck.tensors.push((format!("{EMA_GROUP}{name}"), shape, data));
        }
    }
}

/// The averaged weights of `net` in `ck`, or None when it keeps none.
pub fn load_ema(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
) -> Result<Option<Params<f32>>, RunCheckpointError> {
    let tensors: Vec<_> = ck
        .tensors
        .iter()
        .filter_map(|(n, s, d)| {
            n.strip_prefix(EMA_GROUP)
                .map(|k| (k.to_string(), s.clone(), d.clone()))
        })
        .collect();
    if tensors.is_empty() {
        return Ok(None);
    }
    let only = Checkpoint {
        tensors,
        metadata: ck.metadata.clone(),
    };
    load_weights_for_transfer(&only, net, like)
        .map(Some)
        .map_err(|e| RunCheckpointError(format!("the averaged weights (ema.*): {e}")))
}
