//! How a training run names what it keeps in a checkpoint and reads it back: weights named as
//! a PyTorch state_dict names them, optimizer state as torch.optim names it, and the
//! metadata counters a resumed run needs. Below both the training loops and the scorer, which
//! loads its built-in weights through [`load_params`].

use crate::cpu::{OptState, Params};
use crate::io::Checkpoint;
use netc_compiler::ir::{Model, Network};

/// A checkpoint that does not fit the network or the run that reads it. The message is the
/// whole explanation; a training run reports it as its setup error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunCheckpointError(pub String);

/// The SHA-256 of the model file's text, so a checkpoint says which version of a model it was
/// trained from.
pub fn model_sha256(model: &Model) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(model.source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// torch.optim's names for an optimizer's per-weight state, by the number of slots netc keeps
/// (SGD: the velocity; Adam: the two moments).
fn slot_names(slots: usize) -> &'static [&'static str] {
    match slots {
        1 => &["momentum_buffer"],
        2 => &["exp_avg", "exp_avg_sq"],
        _ => &[],
    }
}

/// Where a weight goes in a checkpoint: named as a PyTorch module's state_dict of the same
/// network would name it (`hidden.weight`), with the network's name as a prefix only where
/// the file holds several networks (a GAN's `generator.hidden.weight`).
fn weight_key(prefix: Option<&str>, name: &str) -> String {
    match prefix {
        Some(net) => format!("{net}.{name}"),
        None => name.to_string(),
    }
}

/// A parameter's name as PyTorch's module path writes it: a library block's scope `b1/attn/`
/// becomes `b1.attn.` (`b1.attn.qkv.weight`, as `model.b1.attn.qkv.weight`).
fn module_path(name: &str) -> String {
    name.replace('/', ".")
}

/// The names a network's weights take in a checkpoint: their module paths, unless two of them
/// would then be one (kept as netc names them).
fn saved_names(p: &Params<f32>) -> Vec<String> {
    let paths: Vec<String> = p.names.iter().map(|n| module_path(n)).collect();
    let mut seen = std::collections::HashSet::new();
    match paths.iter().all(|k| seen.insert(k.as_str())) {
        true => paths,
        false => p.names.clone(),
    }
}

/// The names a network's weights take in a checkpoint, in `p`'s order (what ONNX export names
/// its initializers, so they match the checkpoint's tensors).
pub fn checkpoint_names(p: &Params<f32>) -> Vec<String> {
    saved_names(p)
}

/// Optimizer state sits apart from the weights, under `optimizer.`, named as torch.optim
/// names it (`optimizer.hidden.weight.exp_avg`), so the weights alone are a state_dict.
fn state_key(weight: &str, slot: &str) -> String {
    format!("{OPTIMIZER_GROUP}{weight}.{slot}")
}

/// The prefix of the optimizer-state tensors in a checkpoint.
pub const OPTIMIZER_GROUP: &str = "optimizer.";

/// The number of per-weight state slots an optimizer keeps.
pub fn slots(opt: &netc_compiler::schedule::Optimizer) -> usize {
    match opt {
        netc_compiler::schedule::Optimizer::Sgd { .. } => 1,
        netc_compiler::schedule::Optimizer::Adam { .. }
        | netc_compiler::schedule::Optimizer::AdamW { .. } => 2,
    }
}

/// Puts a network's weights, state and (for trained tensors) optimizer state into `ck`.
/// `passes` is how many training passes the network ran: a batchnorm layer's
/// `num_batches_tracked`, which a PyTorch BatchNorm has among its buffers (so a strict
/// `load_state_dict` needs it; netc's running averages use the momentum, not the count).
pub fn save_params(
    ck: &mut Checkpoint,
    prefix: Option<&str>,
    (p, st): (&Params<f32>, &OptState<f32>),
    passes: u64,
) {
    let names = slot_names(st.slots.len());
    for (i, name) in saved_names(p).iter().enumerate() {
        let key = weight_key(prefix, name);
        if p.trainable[i] {
            for (slot, label) in st.slots.iter().zip(names) {
                ck.tensors
                    .push((state_key(&key, label), p.shapes[i].clone(), slot[i].clone()));
            }
        }
        if let Some(layer) = name.strip_suffix(".running_var") {
            ck.tensors.push((
                weight_key(prefix, &format!("{layer}.num_batches_tracked")),
                vec![],
                vec![passes as f32],
            ));
        }
        ck.tensors
            .push((key, p.shapes[i].clone(), p.values[i].clone()));
    }
}

/// Loads a network's weights from a checkpoint (and its optimizer state when present). The
/// weight is looked up as `name` (a one-network checkpoint), `net.name` (one of several) and,
/// for checkpoints of earlier netc versions, `net/name` with state `net/name.optN`. A tensor
/// of the network's in the checkpoint that the network does not have (a layer removed, a
/// bias turned off) is an error too: the checkpoint was written from another model, and
/// dropping the tensor silently would run a different network than the one trained.
pub fn load_params(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
    slots: usize,
) -> Result<(Params<f32>, OptState<f32>), RunCheckpointError> {
    load_params_with(ck, net, like, slots, true)
}

/// [`load_params`] for `train --weights` (fine-tuning, transfer): the checkpoint may hold
/// tensors the network does not use.
pub fn load_weights_for_transfer(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
) -> Result<Params<f32>, RunCheckpointError> {
    Ok(load_params_with(ck, net, like, 0, false)?.0)
}

fn load_params_with(
    ck: &Checkpoint,
    net: &Network,
    like: &Params<f32>,
    slots: usize,
    strict: bool,
) -> Result<(Params<f32>, OptState<f32>), RunCheckpointError> {
    let mut p = like.clone();
    let mut st = OptState {
        slots: vec![like.values.iter().map(|v| vec![0.0; v.len()]).collect(); slots],
        step: 0,
    };
    // Every missing or mis-shaped tensor is named, not only the first.
    let mut problems = vec![];
    let mut used: Vec<String> = vec![];
    for (i, name) in like.names.iter().enumerate() {
        // The module path (this version's), netc's own name (checkpoints before it, and
        // networks whose paths collide), then the earliest `net/name` form.
        let path = module_path(name);
        let candidates = [
            weight_key(None, &path),
            weight_key(Some(&net.name), &path),
            weight_key(None, name),
            weight_key(Some(&net.name), name),
            format!("{}/{name}", net.name),
        ];
        let Some((key, (shape, data))) = candidates
            .iter()
            .find_map(|k| ck.get(k).map(|t| (k.clone(), t)))
        else {
            problems.push(format!("no tensor `{}`", candidates[0]));
            continue;
        };
        // Found, so not also "a tensor the network does not have" when it does not fit.
        used.push(key.clone());
        if shape != like.shapes[i].as_slice() {
            problems.push(format!(
                "`{key}` is {shape:?} in the checkpoint but {:?} in network `{}`",
                like.shapes[i], net.name
            ));
            continue;
        }
        if data.iter().any(|v| !v.is_finite()) {
            problems.push(format!("`{key}` holds NaN or infinite values"));
            continue;
        }
        p.values[i] = data.to_vec();
        // Only the earliest form keeps its state as `.optN`; a library block's `b1/weight`
        // (which contains a slash too) has torch.optim's names.
        let legacy = key == candidates[4];
        for (s, slot) in st.slots.iter_mut().enumerate() {
            let skey = if legacy {
                format!("{key}.opt{s}")
            } else {
                state_key(&key, slot_names(slots)[s])
            };
            if let Some((shape, d)) = ck.get(&skey) {
                if shape != like.shapes[i].as_slice() {
                    return Err(RunCheckpointError(format!(
                        "optimizer state `{skey}` does not match the weight's shape"
                    )));
                }
                slot[i] = d.to_vec();
            }
        }
    }
    // The network's tensors that do not fit, counted apart from the checkpoint's extra ones:
    // one count of both over the network's total read "(12 of 4 tensors)".
    let misfits = problems.len();
    if strict {
        unused_tensors(ck, net, &used, &mut problems);
    }
    if !problems.is_empty() {
        let extra = problems.len() - misfits;
        let counts = match (misfits, extra) {
            (m, 0) => format!("{m} of its {} tensors do not fit", like.names.len()),
            (0, e) => format!("the checkpoint has {e} tensor(s) it does not"),
            (m, e) => format!(
                "{m} of its {} tensors do not fit, and the checkpoint has {e} it does not",
                like.names.len()
            ),
        };
        return Err(RunCheckpointError(format!(
            "the checkpoint does not fit network `{}` ({counts}): {}",
            net.name,
            problems.join("; ")
        )));
    }
    Ok((p, st))
}

/// Names, in `problems`, the tensors of the network's namespace in the checkpoint that the
/// network did not load (`used`).
fn unused_tensors(ck: &Checkpoint, net: &Network, used: &[String], problems: &mut Vec<String>) {
    // The network's namespace in the file: `net.` when its tensors are prefixed, else
    // every weight (a one-network checkpoint).
    let prefix = format!("{}.", net.name);
    let prefixed = used.iter().any(|k| k.starts_with(&prefix));
    for (name, _, _) in &ck.tensors {
        let ours = if prefixed {
            name.starts_with(&prefix)
        } else {
            !name.contains('/')
        };
        if ours
            && !name.starts_with(OPTIMIZER_GROUP)
            && !name.starts_with(super::ema::EMA_GROUP)
            && !name.ends_with(".num_batches_tracked")
            && !used.contains(name)
        {
            problems.push(format!(
                "the checkpoint has `{name}`, which the network does not"
            ));
        }
    }
}

/// A checkpoint's optimizer state only carries over to the same optimizer.
pub fn check_optimizer(ck: &Checkpoint, now: String) -> Result<(), RunCheckpointError> {
    match ck.metadata.get("optimizer") {
        Some(was) if *was != now => Err(RunCheckpointError(format!(
            "the checkpoint was trained with {was} but the model now says {now}{}; its optimizer state cannot carry over (start a new run with another --out)",
            difference(was, &now)
        ))),
        _ => Ok(()),
    }
}

/// What differs between two optimizer descriptions (`Adam { beta1: 0.9, eps: 1e-8 }`), part
/// by part, so two long, nearly identical strings in a message show where they differ.
fn difference(was: &str, now: &str) -> String {
    let parts = |s: &str| -> Vec<String> {
        s.split(['{', '}', ',', '/'])
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let (a, b) = (parts(was), parts(now));
    if a.len() != b.len() {
        return String::new();
    }
    let diffs: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| format!("`{x}` then, `{y}` now"))
        .collect();
    if diffs.is_empty() {
        // Same parts, other spacing or order: show the texts exactly.
        format!(" (as text: {was:?} vs {now:?})")
    } else {
        format!(" (differing: {})", diffs.join("; "))
    }
}

/// A counter the checkpoint must carry to be resumed (a missing or garbled step used to
/// restart silently at step 0 with the trained weights).
pub fn meta_u64(ck: &Checkpoint, key: &str) -> Result<u64, RunCheckpointError> {
    let v = ck.metadata.get(key).ok_or_else(|| {
        RunCheckpointError(format!(
            "cannot resume: the checkpoint has no `{key}` in its metadata"
        ))
    })?;
    v.parse().map_err(|_| {
        RunCheckpointError(format!(
            "cannot resume: the checkpoint's `{key}` is `{v}`, not a count"
        ))
    })
}

/// A number recorded in the checkpoint's metadata, or `default`.
pub fn meta_f64(ck: &Checkpoint, key: &str, default: f64) -> f64 {
    ck.metadata
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Parses a JSON list of numbers recorded in checkpoint metadata.
pub fn meta_list(ck: &Checkpoint, key: &str) -> Option<Vec<f64>> {
    serde_json::from_str(ck.metadata.get(key)?).ok()
}
