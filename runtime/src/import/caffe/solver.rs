//! A Caffe `solver.prototxt` as settings of netc's training section: the optimizer (SGD with
//! momentum, Nesterov aside; Adam), its weight decay, the learning-rate policy as a schedule
//! (fixed, step, exp, inv, multistep, poly), max_iter as steps, display as log_every,
//! random_seed, clip_gradients. What netc cannot express is a problem with its line; what it
//! approximates (test_interval, snapshot) a note.

use super::layers::num;
use super::text::{Field, Fields, Value};

/// One setting of the training section: key, value, and the comment naming Caffe's fields.
pub type Setting = (String, String, String);

/// The solver's settings, in the order the training section writes them.
#[derive(Debug, Default)]
pub struct Solver {
    pub settings: Vec<Setting>,
    pub problems: Vec<(usize, String)>,
    pub notes: Vec<(usize, String)>,
}

/// Solver fields that say where files are or how Caffe runs, not what training computes.
const IGNORED: &[&str] = &[
    "net",
    "train_net",
    "test_net",
    "snapshot_prefix",
    "solver_mode",
    "device_id",
    "test_iter",
    "test_initialization",
    "average_loss",
    "debug_info",
    "snapshot_after_train",
    "snapshot_format",
];

/// A number as the prototxt gives it, or Caffe's default.
fn get(top: &[Field], key: &str, default: f64) -> f64 {
    top.field(key).and_then(num).unwrap_or(default)
}

/// `x` as the section writes it: `0.01`, `5e-4`, `10000`.
pub fn lit(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// Reads the solver prototxt `top`.
pub fn read(top: &[Field]) -> Solver {
    let mut s = Solver::default();
    let line = |k: &str| top.field(k).map_or(1, |f| f.line);
    let ty = top
        .text("type")
        .or(top.text("solver_type"))
        .unwrap_or("SGD")
        .to_uppercase();
    let lr = get(top, "base_lr", 0.01);
    let wd = get(top, "weight_decay", 0.0);
    let mom = get(top, "momentum", 0.0);
    let opt = match ty.as_str() {
        "SGD" => format!(
            "sgd(lr={}, momentum={}, weight_decay={})",
            lit(lr),
            lit(mom),
            lit(wd)
        ),
        "ADAM" => format!(
            "adam(lr={}, beta1={}, beta2={}, eps={}, weight_decay={})",
            lit(lr),
            lit(get(top, "momentum", 0.9)),
            lit(get(top, "momentum2", 0.999)),
            lit(get(top, "delta", 1e-8)),
            lit(wd)
        ),
        other => {
            s.problems.push((
                line("type").max(line("solver_type")),
                format!(
                    "solver type {other}: netc's optimizers are SGD with momentum, Adam and AdamW"
                ),
            ));
            String::new()
        }
    };
    if !opt.is_empty() {
        s.settings.push((
            "optimizer".into(),
            opt,
            format!("{ty}: base_lr, momentum, weight_decay"),
        ));
    }
    if let Some(r) = top.text("regularization_type").filter(|r| *r != "L2") {
        s.problems.push((
            line("regularization_type"),
            format!("regularization_type {r}: netc's weight decay is L2"),
        ));
    }
    schedule(top, &mut s);
    if let Some(n) = top.field("max_iter").and_then(num) {
        s.settings.push(("steps".into(), lit(n), "max_iter".into()));
    }
    if let Some(n) = top.field("display").and_then(num).filter(|&n| n > 0.0) {
        s.settings
            .push(("log_every".into(), lit(n), "display".into()));
    }
    if let Some(n) = top.field("random_seed").and_then(num).filter(|&n| n >= 0.0) {
        s.settings
            .push(("seed".into(), lit(n), "random_seed".into()));
    }
    if let Some(n) = top
        .field("clip_gradients")
        .and_then(num)
        .filter(|&n| n > 0.0)
    {
        s.settings.push((
            "clip_grad_norm".into(),
            lit(n),
            "clip_gradients (the global L2 norm)".into(),
        ));
    }
    if get(top, "iter_size", 1.0) != 1.0 {
        s.problems.push((line("iter_size"), "iter_size (gradients accumulated over several batches) has no netc form: multiply the batch instead".into()));
    }
    if let Some(n) = top.field("test_interval").and_then(num) {
        s.notes.push((
            line("test_interval"),
            format!("test_interval {n}: netc tests every epoch (eval_every counts epochs)"),
        ));
    }
    if let Some(n) = top.field("snapshot").and_then(num).filter(|&n| n > 0.0) {
        s.notes.push((line("snapshot"), format!("snapshot {n}: netc checkpoints a classifier at the end of each epoch (checkpoint_every counts epochs), keeping the last")));
    }
    for f in top {
        let known = IGNORED.contains(&f.name.as_str()) || KNOWN.contains(&f.name.as_str());
        if !known {
            s.problems.push((
                f.line,
                format!("solver field `{}` has no netc form", f.name),
            ));
        }
    }
    s.problems.sort_by_key(|p| p.0);
    s
}

/// Fields [`read`] and [`schedule`] map (or note).
const KNOWN: &[&str] = &[
    "type",
    "solver_type",
    "base_lr",
    "weight_decay",
    "momentum",
    "momentum2",
    "delta",
    "regularization_type",
    "lr_policy",
    "gamma",
    "power",
    "stepsize",
    "stepvalue",
    "max_iter",
    "display",
    "random_seed",
    "clip_gradients",
    "iter_size",
    "test_interval",
    "snapshot",
];

/// `lr_policy` and its settings as a schedule.
fn schedule(top: &[Field], s: &mut Solver) {
    let policy = top.text("lr_policy").unwrap_or("fixed");
    let at = top.field("lr_policy").map_or(1, |f| f.line);
    let gamma = get(top, "gamma", 0.0);
    let power = get(top, "power", 0.0);
    let value = match policy {
        "fixed" => return,
        "step" => format!(
            "step_iter(every={}, factor={})",
            lit(get(top, "stepsize", 1.0)),
            lit(gamma)
        ),
        // gamma^t: a drop by gamma at every step.
        "exp" => format!("step_iter(every=1, factor={})", lit(gamma)),
        "inv" => format!("inv(gamma={}, power={})", lit(gamma), lit(power)),
        "multistep" => {
            let steps: Vec<String> = top
                .all("stepvalue")
                .filter_map(|f| match &f.value {
                    Value::Scalar(v) => Some(v.clone()),
                    Value::Msg(_) => None,
                })
                .collect();
            format!(
                "multistep(at=[{}], factor={})",
                steps.join(", "),
                lit(gamma)
            )
        }
        "poly" => format!("poly(power={})", lit(power)),
        other => {
            s.problems.push((at, format!("lr_policy \"{other}\" has no netc schedule (fixed, step, exp, inv, multistep and poly do)")));
            return;
        }
    };
    s.settings
        .push(("schedule".into(), value, format!("lr_policy \"{policy}\"")));
}
