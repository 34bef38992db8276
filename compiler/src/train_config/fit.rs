//! The training settings checked against the network they feed, at `check`: a per-channel
//! `mean`/`std` must have one value or one per input channel, and `resize` must leave the
//! input whole (both used to pass `check` and fail only at `train`, with no location).

use super::reader::Reader;
use super::{ChannelStat, Task, TrainConfig};
use crate::ir::Model;

/// Checks `cfg`'s image settings against the input of the network the images feed (the
/// classifier, or a GAN's discriminator).
pub(super) fn fit(r: &mut Reader, model: &Model, cfg: &TrainConfig) {
    let name = match &cfg.task {
        Task::Classifier { network } => network,
        Task::Gan(g) => &g.discriminator,
    };
    let Some(net) = model.network(name) else {
        return;
    };
    let Some(&input) = net.inputs.first() else {
        return;
    };
    // C x H x W, or H x W for one channel; a flat input has no channels or sides to check.
    let (channels, h, w) = match *net.graph[input].shape.as_slice() {
        [c, h, w] => (c, h, w),
        [h, w] => (1, h, w),
        _ => return,
    };
    for (key, stat) in [("mean", &cfg.images.mean), ("std", &cfg.images.std)] {
        if let ChannelStat::Values(v) = stat {
            let n = v.len() as u64;
            if n != 1 && n != channels {
                if let Some(val) = r.get(key) {
                    let s = if channels == 1 { "" } else { "s" };
                    r.bad(
                        val,
                        key,
                        &format!("1 value, or {channels} (network `{name}` takes {channels} channel{s}), not {n}"),
                    );
                }
            }
        }
    }
    if let (Some(side), Some(val)) = (cfg.images.resize, r.get("resize")) {
        let least = h.max(w);
        if side < least {
            r.bad(
                val,
                "resize",
                &format!("a shorter side of at least {least}: network `{name}` takes {h}x{w} crops of the resized images"),
            );
        }
    }
}
