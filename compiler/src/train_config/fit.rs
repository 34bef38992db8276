//! The training settings checked against the network they feed, at `check`: a per-channel
//! `mean`/`std` must have one value or one per input channel, `resize` must leave the input
//! whole, and `data` must be something the network can take (MNIST's 784 grey values and 10
//! classes, image files' 1 or 3 channels, synthetic data for a classifier). Each used to pass
//! `check` and fail only at `train`, with no location.

use super::reader::Reader;
use super::{ChannelStat, Task, TrainConfig};
use crate::ir::Model;

/// Checks `cfg`'s image settings against the input of the network the images feed (the
/// classifier, or a GAN's discriminator).
pub(super) fn fit(r: &mut Reader, model: &Model, cfg: &TrainConfig) {
    let name = match &cfg.task {
        Task::Classifier { network } => network,
        Task::Gan(g) => &g.discriminator,
        // Its inputs and their fields are checked where the binding is read (minimise.rs).
        Task::Minimise(_) => return,
        // Its window and logits are checked where the task is read (language_model.rs).
        Task::LanguageModel(_) => return,
    };
    let Some(net) = model.network(name) else {
        return;
    };
    let Some(&input) = net.inputs.first() else {
        return;
    };
    data_fits(r, cfg, net, name);
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

/// The values per example and classes of the fixed data sets.
const MNIST_VALUES: u64 = 28 * 28;
const MNIST_CLASSES: u64 = 10;

/// `data` (when the section names it) against the network `name` it feeds.
fn data_fits(r: &mut Reader, cfg: &TrainConfig, net: &crate::ir::Network, name: &str) {
    let Some(val) = r.get("data") else {
        return;
    };
    let shape = &net.graph[net.inputs[0]].shape;
    let values: u64 = shape.iter().product();
    let classifier = matches!(cfg.task, Task::Classifier { .. });
    let outputs: Option<u64> = net
        .outputs
        .first()
        .map(|o| net.graph[o.1].shape.iter().product());
    let shape = crate::ast::shape_str(shape);
    let problem = match cfg.data.as_str() {
        "mnist" | "fashion_mnist" if values != MNIST_VALUES => Some(format!(
            "a data set network `{name}` can take: {} gives 28x28 grey images (784 values) and it takes {shape} ({values} values); use data = idx, images or synthetic for other images",
            cfg.data
        )),
        "mnist" | "fashion_mnist" if classifier && outputs.is_some_and(|n| n < MNIST_CLASSES) => {
            Some(format!(
                "a data set network `{name}` can label: {} has 10 classes and it has {} outputs (one per class)",
                cfg.data,
                outputs.unwrap_or(0)
            ))
        }
        "images" if !matches!(net.graph[net.inputs[0]].shape.as_slice(), [1 | 3, _, _]) => {
            Some(format!(
                "a data set network `{name}` can take: image files give 1 (grey) or 3 (RGB) channels as CxHxW, and it takes {shape}"
            ))
        }
        "synthetic" if !classifier => Some(
            "real images for a GAN (data = mnist, fashion_mnist, idx or images): synthetic data is for classifiers".to_string(),
        ),
        _ => None,
    };
    if let Some(what) = problem {
        r.bad(val, "data", &what);
    }
}
