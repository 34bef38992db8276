//! `read`: the training section walked key by key into a [`TrainConfig`], every error
//! collected in the order the keys are read.

use super::calls::{noise, optimizer, schedule};
use super::classes::{classes, classes_fit};
use super::fit::fit;
use super::images::images;
use super::ranges;
use super::reader::{Reader, KEYS};
use super::{GanConfig, Length, Noise, OptimizerConfig, Schedule, Task, TrainConfig};
use crate::ast::{Ident, Span, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Model;
use crate::schedule::DecayRule;
use crate::schedule::Optimizer;

/// Reads and checks the model's training section. `Ok(None)` when the model has none.
pub fn read(model: &Model) -> Result<Option<TrainConfig>, Vec<Diagnostic>> {
    let Some(train) = &model.train else {
        return Ok(None);
    };
    let ValueKind::Map(entries) = &train.kind else {
        return Err(vec![Diagnostic::error(
            "the training section must be a map of settings",
        )
        .at(train.span, "here")]);
    };
    section(model, entries, train.span).map(Some)
}

/// The recipe a model without a training section trains with: what an empty `train { }` reads
/// into (a classifier of the first network, softmax cross-entropy on its logits, Adam at 1e-3,
/// batch 128, 5 epochs), so a model needs no section to train, as a Keras model needs only
/// `fit`. Errors only where the model has no network to train.
pub fn default_recipe(model: &Model) -> Result<TrainConfig, Vec<Diagnostic>> {
    section(model, &[], Span::new(0, 0))
}

/// The section's settings `entries` (`span` is where an error about a key left out points).
fn section(
    model: &Model,
    entries: &[(Ident, crate::ast::Value)],
    span: Span,
) -> Result<TrainConfig, Vec<Diagnostic>> {
    let mut r = Reader {
        entries,
        errors: vec![],
    };
    unknown_keys(&mut r);
    let task_name = r.name("task", "classifier");
    let nets = Nets {
        model,
        names: model.networks.iter().map(|n| n.name.as_str()).collect(),
        span,
    };
    let (opt, per_net) = optimizers(&mut r);
    let task = match task_name.as_str() {
        "classifier" => classifier(&mut r, &nets, &per_net),
        "gan" => gan(&mut r, &nets, opt, &per_net),
        "minimise" | "minimize" => {
            let m = super::minimise::minimise(&mut r, &nets);
            per_network(&mut r, &per_net, &[("network", &m.network)]);
            Task::Minimise(m)
        }
        "language_model" => {
            let m = super::language_model::language_model(&mut r, &nets);
            per_network(&mut r, &per_net, &[("network", &m.network)]);
            Task::LanguageModel(m)
        }
        other => {
            let sp = r.get("task").map_or(span, |v| v.span);
            let mut d = Diagnostic::error(format!("unknown task `{other}`")).at(sp, "here");
            d = d.help(
                match did_you_mean(other, ["classifier", "gan", "minimise", "language_model"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => {
                        "the tasks are classifier, gan, minimise (a loss the model declares) and language_model (next-character prediction on a text file)"
                            .into()
                    }
                },
            );
            r.errors.push(d);
            Task::Classifier {
                network: String::new(),
            }
        }
    };
    keys_of_other_tasks(&mut r, &task);
    let schedule = schedule_setting(&mut r, &opt);
    let decay = decay_rule(&mut r);
    let clip_grad_norm = clip_grad_norm(&mut r);
    let batch = r.positive("batch", 128);
    let length = length(&mut r, &task);
    not_for_language_models(&mut r, &task);
    let lm = matches!(task, Task::LanguageModel(_));
    // A language model counts in steps (it samples windows; there are no epochs).
    let default_checkpoint = match task {
        Task::Gan(_) => 1000,
        Task::LanguageModel(_) => 500,
        Task::Classifier { .. } | Task::Minimise(_) => 1,
    };
    let cfg = TrainConfig {
        task,
        optimizer: opt,
        decay,
        clip_grad_norm,
        schedule,
        batch,
        length,
        eval_every: r.positive("eval_every", if lm { 250 } else { 1 }),
        log_every: r.positive("log_every", 100),
        checkpoint_every: r.uint("checkpoint_every", default_checkpoint),
        data: r.name("data", if lm { "text" } else { "mnist" }),
        data_dir: r.get("data_dir").map(|v| match &v.kind {
            ValueKind::Str(s) => s.clone(),
            _ => v.to_string(),
        }),
        range: r.interval("range", (0.0, 1.0)),
        seed: r.uint("seed", 1),
        images: images(&mut r),
        classes: classes(&mut r),
    };
    fit(&mut r, model, &cfg);
    classes_fit(&mut r, model, &cfg);
    data_fits_task(&mut r, &cfg, span);
    if r.errors.is_empty() {
        Ok(cfg)
    } else {
        Err(r.errors)
    }
}

/// An error for each key given that another task reads.
fn keys_of_other_tasks(r: &mut Reader, task: &Task) {
    if !matches!(task, Task::LanguageModel(_)) {
        for key in ["text", "holdout", "eval_windows"] {
            if let Some(v) = r.get(key) {
                r.errors.push(
                    Diagnostic::error(format!(
                        "training setting `{key}` is for task = language_model"
                    ))
                    .at(v.span, "not read by this task"),
                );
            }
        }
    }
    if !matches!(task, Task::Minimise(_)) {
        for key in ["inputs", "metrics", "sample"] {
            if let Some(v) = r.get(key) {
                r.errors.push(
                    Diagnostic::error(format!(
                        "training setting `{key}` is for task = minimise (a declared loss)"
                    ))
                    .at(v.span, "not read by this task"),
                );
            }
        }
    }
}

/// `data` must name a reader the task can take.
fn data_fits_task(r: &mut Reader, cfg: &TrainConfig, span: Span) {
    let lm = matches!(cfg.task, Task::LanguageModel(_));
    if matches!(cfg.task, Task::Minimise(_)) && cfg.data == "synthetic" {
        let sp = r.get("data").map_or(span, |v| v.span);
        r.errors.push(
            Diagnostic::error(
                "data = synthetic is for classifiers; task = minimise reads a data set's fields",
            )
            .at(sp, "here")
            .help("use mnist, fashion_mnist, idx or images"),
        );
    }
    if lm != (cfg.data == "text") {
        let sp = r.get("data").map_or(span, |v| v.span);
        r.errors.push(
            Diagnostic::error(if lm {
                "task = language_model reads a text file: leave out `data` (or write data = text)"
            } else {
                "data = text is for task = language_model"
            })
            .at(sp, "here"),
        );
    } else if ![
        "mnist",
        "fashion_mnist",
        "idx",
        "images",
        "synthetic",
        "text",
    ]
    .contains(&cfg.data.as_str())
    {
        let sp = r.get("data").map_or(span, |v| v.span);
        r.errors.push(
            Diagnostic::error(format!("unknown data set `{}`", cfg.data))
                .at(sp, "here")
                .help("the readers are mnist, fashion_mnist and idx (any IDX image/label files), images (a folder of class folders of JPEG/PNG files), and synthetic (generated, shaped to the network)"),
        );
    }
}

/// The model's networks, which the task's `network`, `generator` and `discriminator` name,
/// and the training section's span (where an error about a key left out points).
pub(super) struct Nets<'m> {
    pub(super) model: &'m Model,
    pub(super) names: Vec<&'m str>,
    pub(super) span: Span,
}

impl Nets<'_> {
    /// An error at `key` when the model has no network `name`.
    pub(super) fn check(&self, r: &mut Reader, key: &str, name: &str) {
        if !self.names.contains(&name) {
            let sp = r.get(key).map_or(self.span, |v| v.span);
            let mut d = Diagnostic::error(format!(
                "training setting `{key}`: no network `{name}` in this file"
            ))
            .at(sp, "here");
            if let Some(s) = did_you_mean(name, self.names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            r.errors.push(d);
        }
    }
}

/// An error for every key the training section does not know, and for every key given twice
/// (the first used to win silently).
fn unknown_keys(r: &mut Reader) {
    for (i, (k, _)) in r.entries.iter().enumerate() {
        if let Some((first, _)) = r.entries[..i].iter().find(|(f, _)| f.name == k.name) {
            r.errors.push(
                Diagnostic::error(format!("training setting `{}` is given twice", k.name))
                    .at(k.span, "again here")
                    .also(first.span, "first here"),
            );
        }
        if !KEYS.contains(&k.name.as_str()) {
            let mut d = Diagnostic::error(format!("unknown training setting `{}`", k.name))
                .at(k.span, "unknown key");
            d = match did_you_mean(&k.name, KEYS.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!("the settings are: {}", KEYS.join(", "))),
            };
            r.errors.push(d);
        }
    }
}

/// A per-network optimizer of a map: the key as written, and the optimizer.
type PerNet = Vec<(Ident, OptimizerConfig)>;

/// The optimizer (the last one read), and the per-network ones of a map.
fn optimizers(r: &mut Reader) -> (OptimizerConfig, PerNet) {
    let default_opt = OptimizerConfig {
        kind: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        lr: 1e-3,
    };
    // `optimizer` is one optimizer, or a map {generator: ..., discriminator: ...} for a GAN.
    let (mut opt, mut per_net): (OptimizerConfig, PerNet) = (default_opt, vec![]);
    if let Some(v) = r.get("optimizer") {
        match &v.kind {
            ValueKind::Map(m) => {
                for (k, ov) in m {
                    if let Some(o) = optimizer(ov, &mut r.errors) {
                        per_net.push((k.clone(), o));
                        opt = o;
                    }
                }
            }
            _ => {
                if let Some(o) = optimizer(v, &mut r.errors) {
                    opt = o;
                }
            }
        }
    }
    (opt, per_net)
}

/// The optimizer of each of the task's networks, `(role, network name)`, in a map
/// `optimizer = {generator: ..., discriminator: ...}`: a key names a role or a network, every
/// network once. An unknown key or a network left out is an error (each network used to
/// train with the map's last entry).
fn per_network(
    r: &mut Reader,
    per_net: &PerNet,
    roles: &[(&str, &str)],
) -> Vec<Option<OptimizerConfig>> {
    let mut chosen: Vec<Option<OptimizerConfig>> = vec![None; roles.len()];
    let Some(v) = r.get("optimizer") else {
        return chosen;
    };
    let ValueKind::Map(entries) = &v.kind else {
        return chosen;
    };
    let mut given: Vec<Option<Span>> = vec![None; roles.len()];
    for (k, _) in entries {
        let Some(i) = roles
            .iter()
            .position(|(role, net)| k.name == *role || k.name == *net)
        else {
            let names: Vec<&str> = roles.iter().flat_map(|(role, net)| [*role, *net]).collect();
            let d = Diagnostic::error(format!("the optimizer map has no network `{}`", k.name))
                .at(k.span, "unknown network");
            let mut valid = names.clone();
            valid.dedup();
            // `gen` for generator: a short form is no typo but still a clear suggestion.
            let prefix = || {
                names
                    .iter()
                    .find(|n| n.starts_with(k.name.as_str()))
                    .map(|n| n.to_string())
            };
            r.errors.push(
                match did_you_mean(&k.name, names.iter().copied()).or_else(prefix) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("the keys are {}", valid.join(", "))),
                },
            );
            continue;
        };
        if let Some(first) = given[i] {
            r.errors.push(
                Diagnostic::error(format!(
                    "the optimizer map gives the {} `{}` twice",
                    roles[i].0, roles[i].1
                ))
                .at(k.span, "again here")
                .also(first, "first here"),
            );
            continue;
        }
        given[i] = Some(k.span);
        chosen[i] = per_net
            .iter()
            .find(|(pk, _)| pk.span == k.span)
            .map(|(_, o)| *o);
    }
    for (i, (role, net)) in roles.iter().enumerate() {
        if given[i].is_none() {
            r.errors.push(
                Diagnostic::error(format!(
                    "the optimizer map has no entry for the {role} `{net}`"
                ))
                .at(v.span, "here")
                .help("give every network an optimizer, or one optimizer for all"),
            );
        }
    }
    chosen
}

/// `task = classifier`: the network it trains and its loss.
fn classifier(r: &mut Reader, nets: &Nets, per_net: &PerNet) -> Task {
    let network = r.name("network", nets.names.first().copied().unwrap_or(""));
    nets.check(r, "network", &network);
    per_network(r, per_net, &[("network", &network)]);
    let loss = r.name("loss", "softmax_cross_entropy");
    if loss != "softmax_cross_entropy" && loss != "cross_entropy" {
        let v = r.get("loss").cloned();
        if let Some(v) = v {
            r.errors.push(
                Diagnostic::error(format!("unknown classifier loss `{loss}`"))
                    .at(v.span, "here")
                    .help("classifiers train with softmax_cross_entropy (on logits)"),
            );
        }
    }
    Task::Classifier { network }
}

/// `task = gan`: the two networks, the noise, the generator's loss and the two optimizers.
fn gan(r: &mut Reader, nets: &Nets, opt: OptimizerConfig, per_net: &PerNet) -> Task {
    let generator = r.name("generator", "generator");
    let discriminator = r.name("discriminator", "discriminator");
    nets.check(r, "generator", &generator);
    nets.check(r, "discriminator", &discriminator);
    let nz = match r.get("noise") {
        Some(v) => noise(v, &mut r.errors),
        None => Noise::Uniform {
            low: -1.0,
            high: 1.0,
        },
    };
    let gl = r.name("generator_loss", "non_saturating");
    let non_saturating = match gl.as_str() {
        "non_saturating" => true,
        "minimax" => false,
        other => {
            let sp = r.get("generator_loss").map_or(nets.span, |v| v.span);
            r.errors.push(
                Diagnostic::error(format!("unknown generator loss `{other}`"))
                    .at(sp, "here")
                    .help("use non_saturating (-log D(G(z))) or minimax (log(1 - D(G(z))))"),
            );
            true
        }
    };
    let chosen = per_network(
        r,
        per_net,
        &[("generator", &generator), ("discriminator", &discriminator)],
    );
    let (g_optimizer, d_optimizer) = (chosen[0].unwrap_or(opt), chosen[1].unwrap_or(opt));
    gan_shapes(r, nets, &generator, &discriminator);
    let k = gan_k(r);
    let sample_every = r.uint("sample_every", 1000);
    Task::Gan(GanConfig {
        generator,
        discriminator,
        noise: nz,
        k,
        non_saturating,
        g_optimizer,
        d_optimizer,
        sample_every,
    })
}

/// The generator's images must be what the discriminator takes, and D must end in one logit
/// (or one sigmoid) per example; `train` would refuse it only later.
fn gan_shapes(r: &mut Reader, nets: &Nets, generator: &str, discriminator: &str) {
    let (gn, dn) = (
        nets.model.network(generator),
        nets.model.network(discriminator),
    );
    if let (Some(gn), Some(dn)) = (gn, dn) {
        let numel = |n: &crate::ir::Network, i: petgraph::graph::NodeIndex| -> u64 {
            n.graph[i].shape.iter().product()
        };
        let g_out = gn.outputs.first().map(|o| numel(gn, o.1));
        let d_in = dn.inputs.first().map(|&i| numel(dn, i));
        let sp = r.get("discriminator").map_or(nets.span, |v| v.span);
        if let (Some(a), Some(b)) = (g_out, d_in) {
            if a != b {
                r.errors.push(
                    Diagnostic::error(format!(
                        "generator `{generator}` makes {a} values per example but discriminator `{discriminator}` takes {b}"
                    ))
                    .at(sp, "here"),
                );
            }
        }
        let d_out = dn.output_and_logit().map(|(_, l)| numel(dn, l));
        if d_out.is_some_and(|n| n != 1) {
            r.errors.push(
                Diagnostic::error(format!(
                    "discriminator `{discriminator}` must end in one logit (or one sigmoid) per example, not {}",
                    d_out.unwrap_or(0)
                ))
                .at(sp, "here"),
            );
        }
    }
}

/// `k`, discriminator steps per generator step, within [`ranges::GAN_K`].
fn gan_k(r: &mut Reader) -> u64 {
    let k = r.positive("k", 1);
    if let Some(v) = r.get("k") {
        if !ranges::GAN_K.contains(k as f64) {
            ranges::GAN_K.check(k as f64, v.span, &mut r.errors);
        }
    }
    k
}

/// The learning-rate schedule (its arguments checked against their ranges by `schedule`);
/// warmup_cosine's `min_lr` may not exceed the optimizer's `lr`, which it decays to.
fn schedule_setting(r: &mut Reader, opt: &OptimizerConfig) -> Schedule {
    let Some(v) = r.get("schedule") else {
        return Schedule::Constant;
    };
    let s = schedule(v, &mut r.errors);
    if let Schedule::WarmupCosine { min_lr, .. } = s {
        if min_lr > opt.lr {
            r.errors.push(
                Diagnostic::error(format!(
                    "warmup_cosine's `min_lr` ({min_lr}) is above the optimizer's lr ({})",
                    opt.lr
                ))
                .at(v.span, "here")
                .help("the cosine decays from lr down to min_lr"),
            );
        }
    }
    s
}

/// `decay_min_rank = 2` and `no_decay = ["*pos*", ...]`: which tensors weight decay leaves
/// out, by rank and by name (glob patterns on `layer.param` names).
fn decay_rule(r: &mut Reader) -> DecayRule {
    let mut rule = DecayRule::default();
    if let Some(v) = r.get("decay_min_rank") {
        match v.kind {
            ValueKind::Int(i) => {
                ranges::DECAY_MIN_RANK.check(i as f64, v.span, &mut r.errors);
                rule.min_rank = i.clamp(0, 5) as usize;
            }
            _ => r.bad(
                v,
                "decay_min_rank",
                "a whole number, e.g. 2 (biases and norms left out)",
            ),
        }
    }
    rule.mults = super::mults::param_mult(r);
    if let Some(v) = r.get("no_decay") {
        let items: Vec<_> = match &v.kind {
            ValueKind::List(items) => items.iter().collect(),
            _ => vec![v],
        };
        for item in items {
            match &item.kind {
                ValueKind::Str(s) if !s.is_empty() => rule.no_decay.push(s.clone()),
                _ => r.bad(
                    item,
                    "no_decay",
                    "a list of quoted name patterns, e.g. [\"*.cls*\", \"*pos*\"]",
                ),
            }
        }
    }
    rule
}

/// `clip_grad_norm = 1.0`: the gradients' largest global norm.
fn clip_grad_norm(r: &mut Reader) -> Option<f64> {
    let v = r.get("clip_grad_norm")?;
    match v.as_f64() {
        Some(x) => Some(ranges::CLIP_GRAD_NORM.check(x, v.span, &mut r.errors)),
        None => {
            r.bad(v, "clip_grad_norm", "a positive number, e.g. 1.0");
            None
        }
    }
}

/// The image settings and epochs mean nothing to a language model: each is an error where given.
fn not_for_language_models(r: &mut Reader, task: &Task) {
    if !matches!(task, Task::LanguageModel(_)) {
        return;
    }
    for key in ["epochs", "range", "classes"] {
        if let Some(v) = r.get(key) {
            let help = match key {
                "epochs" => "a language model samples windows at random: give `steps`",
                _ => "a language model reads characters, not images or classes",
            };
            r.errors.push(
                Diagnostic::error(format!(
                    "training setting `{key}` is not for task = language_model"
                ))
                .at(v.span, "not read by this task")
                .help(help),
            );
        }
    }
}

/// `epochs` or `steps` (not both); by default 5 epochs, or 10,000 steps for a GAN (5,000 for
/// a language model).
fn length(r: &mut Reader, task: &Task) -> Length {
    match (r.get("epochs"), r.get("steps")) {
        (Some(_), Some(v)) => {
            r.errors.push(
                Diagnostic::error("give `epochs` or `steps`, not both").at(v.span, "second length"),
            );
            Length::Epochs(1)
        }
        (_, Some(_)) => Length::Steps(r.positive("steps", 1000)),
        (Some(_), None) => Length::Epochs(r.positive("epochs", 1)),
        (None, None) => match task {
            Task::Gan(_) => Length::Steps(10_000),
            Task::LanguageModel(_) => Length::Steps(5_000),
            Task::Classifier { .. } | Task::Minimise(_) => Length::Epochs(5),
        },
    }
}
