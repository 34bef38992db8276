//! The training section (`train { ... }` in the DSL, `train:` in YAML), checked like the rest of
//! the model: unknown keys get a "did you mean", wrong types name the key, and every error
//! points at the line. The runtime's training loops read the resulting [`TrainConfig`].

use crate::ast::{Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Model;
use crate::schedule::Optimizer;

#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Classifier { network: String },
    Gan(GanConfig),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    Uniform { low: f64, high: f64 },
    Normal { mean: f64, std: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct GanConfig {
    pub generator: String,
    pub discriminator: String,
    pub noise: Noise,
    /// Discriminator steps per generator step.
    pub k: u64,
    /// true: -log D(G(z)) (default); false: the minimax log(1 - D(G(z))).
    pub non_saturating: bool,
    pub g_optimizer: OptimizerConfig,
    pub d_optimizer: OptimizerConfig,
    /// Write a sample grid every this many generator steps.
    pub sample_every: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerConfig {
    pub kind: Optimizer,
    pub lr: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    Constant,
    /// lr *= factor every `every` epochs.
    Step {
        every: u64,
        factor: f64,
    },
    /// lr *= factor when the test loss has not improved for `patience` epochs (AlexNet's /10).
    Plateau {
        factor: f64,
        patience: u64,
    },
    /// Caffe's "inv" policy: lr * (1 + gamma * t)^-power at step t (Caffe's LeNet solver).
    Inv {
        gamma: f64,
        power: f64,
    },
}

impl Schedule {
    /// The factor a per-step schedule applies at optimizer step `t` (0-based); 1 for the
    /// epoch-wise ones, which change the learning rate itself.
    pub fn step_factor(&self, t: u64) -> f64 {
        match *self {
            Schedule::Inv { gamma, power } => (1.0 + gamma * t as f64).powf(-power),
            Schedule::Constant | Schedule::Step { .. } | Schedule::Plateau { .. } => 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Epochs(u64),
    Steps(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub task: Task,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    pub batch: u64,
    pub length: Length,
    /// Evaluate every this many epochs (classifiers).
    pub eval_every: u64,
    /// Log every this many steps.
    pub log_every: u64,
    /// Checkpoint every this many epochs (classifiers) or steps (GANs); 0 = only at the end.
    pub checkpoint_every: u64,
    pub data: String,
    pub data_dir: Option<String>,
    /// The interval image pixels are scaled to: [0, 1] by default, [-1, 1] for a generator
    /// with a tanh output (DCGAN).
    pub range: (f64, f64),
    pub seed: u64,
    /// How images read from an image folder are prepared (ignored for IDX data).
    pub images: ImageConfig,
}

/// A per-channel statistic of the training images: none, given, or measured on a sample of
/// the training set before training (`auto`).
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelStat {
    None,
    Auto,
    Values(Vec<f64>),
}

/// What to do with an image that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadImages {
    /// Stop (before training when the header is already bad), naming the file.
    Stop,
    /// Leave it out and say how many were left out.
    Skip,
}

/// The image-folder pipeline of the training section: AlexNet's resize, random crop, flip,
/// mean subtraction and PCA colour noise, and the evaluation crops.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Resize the shorter side to this many pixels first (aspect kept).
    pub resize: Option<u64>,
    /// Training crops are random (else the centre).
    pub random_crop: bool,
    /// Random horizontal flips in training.
    pub flip: bool,
    /// Subtracted per channel, in the units of `range` (pixels in [0, 1] by default).
    pub mean: ChannelStat,
    /// Divided per channel after the mean.
    pub std: ChannelStat,
    /// Standard deviation of AlexNet's PCA colour noise; 0 = off.
    pub color_jitter: f64,
    /// Crops averaged per evaluation image: 1 (centre) or 10 (corners, centre and flips).
    pub eval_crops: u64,
    pub bad_images: BadImages,
    /// Share of each class held out for evaluation when the folder has no val/ split.
    pub val_fraction: f64,
    /// Convert images whose channel count is not the network's (grey to RGB, RGB to grey)
    /// instead of refusing them.
    pub convert_channels: bool,
    /// Decode every image when indexing (not only its header), so a cut file stops the run
    /// (or is left out) before training.
    pub verify_images: bool,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            resize: None,
            random_crop: true,
            flip: false,
            mean: ChannelStat::None,
            std: ChannelStat::None,
            color_jitter: 0.0,
            eval_crops: 1,
            bad_images: BadImages::Stop,
            val_fraction: 0.1,
            convert_channels: false,
            verify_images: false,
        }
    }
}

const KEYS: &[&str] = &[
    "task",
    "network",
    "loss",
    "optimizer",
    "schedule",
    "batch",
    "epochs",
    "steps",
    "eval_every",
    "log_every",
    "checkpoint_every",
    "data",
    "data_dir",
    "range",
    "seed",
    "generator",
    "discriminator",
    "noise",
    "k",
    "generator_loss",
    "sample_every",
    "resize",
    "crop",
    "flip",
    "mean",
    "std",
    "color_jitter",
    "eval_crops",
    "bad_images",
    "val_fraction",
    "convert_channels",
    "verify_images",
];

struct Reader<'a> {
    entries: &'a [(crate::ast::Ident, Value)],
    errors: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
    fn bad(&mut self, v: &Value, key: &str, what: &str) {
        self.errors.push(
            Diagnostic::error(format!(
                "training setting `{key}`: expected {what}, found `{v}`"
            ))
            .at(v.span, "here"),
        );
    }
    fn uint(&mut self, key: &str, default: u64) -> u64 {
        match self.get(key) {
            None => default,
            Some(v) => match v.kind {
                ValueKind::Int(i) if i >= 0 => i as u64,
                _ => {
                    self.bad(v, key, "a non-negative integer");
                    default
                }
            },
        }
    }
    fn positive(&mut self, key: &str, default: u64) -> u64 {
        let n = self.uint(key, default);
        if n == 0 {
            if let Some(v) = self.get(key) {
                self.bad(v, key, "an integer of at least 1");
            }
            return default.max(1);
        }
        n
    }
    /// A `[low, high]` interval of finite numbers with low < high.
    fn interval(&mut self, key: &str, default: (f64, f64)) -> (f64, f64) {
        let Some(v) = self.get(key) else {
            return default;
        };
        if let ValueKind::List(items) = &v.kind {
            if let [a, b] = items.as_slice() {
                if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
                    if a.is_finite() && b.is_finite() && a < b {
                        return (a, b);
                    }
                }
            }
        }
        self.bad(
            v,
            key,
            "an interval [low, high] with low < high, e.g. [-1, 1]",
        );
        default
    }
    fn flag(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(v) => match v.kind {
                ValueKind::Bool(b) => b,
                _ => {
                    self.bad(v, key, "true or false");
                    default
                }
            },
        }
    }
    /// A number in `[low, high)` (or `[low, high]` when `closed`).
    fn number(&mut self, key: &str, default: f64, (low, high): (f64, f64), what: &str) -> f64 {
        let Some(v) = self.get(key) else {
            return default;
        };
        match v.as_f64() {
            Some(x) if x >= low && x <= high => x,
            _ => {
                self.bad(v, key, what);
                default
            }
        }
    }
    /// `auto`, or a list of numbers (one per channel, or one for all); `positive` for a divisor.
    fn channel_stat(&mut self, key: &str, positive: bool) -> ChannelStat {
        let Some(v) = self.get(key) else {
            return ChannelStat::None;
        };
        if v.as_ident() == Some("auto") {
            return ChannelStat::Auto;
        }
        let items: Vec<&Value> = match &v.kind {
            ValueKind::List(items) => items.iter().collect(),
            _ => vec![v],
        };
        let xs: Option<Vec<f64>> = items.iter().map(|x| x.as_f64()).collect();
        match xs {
            Some(xs)
                if !xs.is_empty()
                    && xs.iter().all(|x| x.is_finite() && (!positive || *x > 0.0)) =>
            {
                ChannelStat::Values(xs)
            }
            _ => {
                let what = if positive {
                    "auto, or positive numbers per channel, e.g. [0.229, 0.224, 0.225]"
                } else {
                    "auto, or numbers per channel, e.g. [0.485, 0.456, 0.406]"
                };
                self.bad(v, key, what);
                ChannelStat::None
            }
        }
    }
    fn name(&mut self, key: &str, default: &str) -> String {
        match self.get(key) {
            None => default.to_string(),
            Some(v) => match v.as_ident() {
                Some(s) => s.to_string(),
                None => {
                    self.bad(v, key, "a name");
                    default.to_string()
                }
            },
        }
    }
}

/// A call's numeric arguments: (key, value, span).
type NumArgs<'a> = Vec<(Option<&'a str>, f64, Span)>;

/// The name, numeric arguments and spans of non-numeric arguments of a call value.
fn call_args(v: &Value) -> Option<(&str, NumArgs<'_>, Vec<Span>)> {
    let ValueKind::Call(c) = &v.kind else {
        return None;
    };
    let mut nums = vec![];
    let mut bad = vec![];
    for a in &c.args {
        match a.value.as_f64() {
            Some(x) => nums.push((a.key.as_ref().map(|k| k.name.as_str()), x, a.value.span)),
            None => bad.push(a.value.span),
        }
    }
    Some((c.name.name.as_str(), nums, bad))
}

/// `adam(lr=5e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0)` or
/// `sgd(lr=0.01, momentum=0.9, weight_decay=5e-4)`.
fn optimizer(v: &Value, errors: &mut Vec<Diagnostic>) -> Option<OptimizerConfig> {
    let Some((name, nums, bad)) = call_args(v) else {
        errors.push(
            Diagnostic::error(format!("expected an optimizer like adam(lr=5e-4) or sgd(lr=0.01, momentum=0.9), found `{v}`"))
                .at(v.span, "here"),
        );
        return None;
    };
    for s in bad {
        errors.push(Diagnostic::error("optimizer settings must be numbers").at(s, "not a number"));
    }
    let allowed: &[&str] = match name {
        "adam" => &["lr", "beta1", "beta2", "eps", "weight_decay"],
        "sgd" => &["lr", "momentum", "weight_decay"],
        other => {
            let mut d =
                Diagnostic::error(format!("unknown optimizer `{other}`")).at(v.span, "unknown");
            if let Some(s) = did_you_mean(other, ["adam", "sgd"]) {
                d = d.help(format!("did you mean `{s}`?"));
            } else {
                d = d.help("the optimizers are adam and sgd");
            }
            errors.push(d);
            return None;
        }
    };
    let mut positional = 0;
    let mut vals: Vec<(&str, f64)> = vec![];
    for (k, x, sp) in nums {
        let key = match k {
            Some(k) => k,
            None => {
                positional += 1;
                if positional > 1 {
                    errors.push(
                        Diagnostic::error("only the learning rate may be given without a name")
                            .at(sp, "name it"),
                    );
                    continue;
                }
                "lr"
            }
        };
        if !allowed.contains(&key) {
            let mut d = Diagnostic::error(format!("`{name}` has no setting `{key}`"))
                .at(sp, "unknown setting");
            if let Some(s) = did_you_mean(key, allowed.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            } else {
                d = d.help(format!("`{name}` takes {}", allowed.join(", ")));
            }
            errors.push(d);
            continue;
        }
        vals.push((key, x));
    }
    let get = |k: &str, d: f64| vals.iter().find(|(n, _)| *n == k).map_or(d, |(_, x)| *x);
    let (kind, default_lr) = match name {
        "adam" => (
            Optimizer::Adam {
                beta1: get("beta1", 0.9),
                beta2: get("beta2", 0.999),
                eps: get("eps", 1e-8),
                weight_decay: get("weight_decay", 0.0),
            },
            1e-3,
        ),
        _ => (
            Optimizer::Sgd {
                momentum: get("momentum", 0.0),
                weight_decay: get("weight_decay", 0.0),
            },
            0.01,
        ),
    };
    let lr = get("lr", default_lr);
    if !(lr > 0.0 && lr.is_finite()) {
        errors.push(
            Diagnostic::error(format!(
                "learning rate must be a positive number, found {lr}"
            ))
            .at(v.span, "here"),
        );
    }
    Some(OptimizerConfig { kind, lr })
}

fn noise(v: &Value, errors: &mut Vec<Diagnostic>) -> Noise {
    let default = Noise::Uniform {
        low: -1.0,
        high: 1.0,
    };
    let Some((name, nums, _)) = call_args(v) else {
        errors.push(
            Diagnostic::error(format!(
                "expected uniform(a, b) or normal(mean, std), found `{v}`"
            ))
            .at(v.span, "here"),
        );
        return default;
    };
    let n = |i: usize, d: f64| nums.get(i).map_or(d, |x| x.1);
    match name {
        "uniform" => Noise::Uniform {
            low: n(0, -1.0),
            high: n(1, 1.0),
        },
        "normal" | "gaussian" => Noise::Normal {
            mean: n(0, 0.0),
            std: n(1, 1.0),
        },
        other => {
            errors.push(
                Diagnostic::error(format!("unknown noise distribution `{other}`"))
                    .at(v.span, "here")
                    .help("use uniform(-1, 1) or normal(0, 1)"),
            );
            default
        }
    }
}

fn schedule(v: &Value, errors: &mut Vec<Diagnostic>) -> Schedule {
    if v.as_ident() == Some("constant") || v.as_ident() == Some("none") {
        return Schedule::Constant;
    }
    let Some((name, nums, _)) = call_args(v) else {
        errors.push(Diagnostic::error(format!("expected step(every=30, factor=0.1) or plateau(factor=0.1, patience=1), found `{v}`")).at(v.span, "here"));
        return Schedule::Constant;
    };
    let get = |k: &str, i: usize, d: f64| {
        nums.iter()
            .find(|x| x.0 == Some(k))
            .or_else(|| nums.iter().filter(|x| x.0.is_none()).nth(i))
            .map_or(d, |x| x.1)
    };
    match name {
        "step" => Schedule::Step {
            every: get("every", 0, 30.0).max(1.0) as u64,
            factor: get("factor", 1, 0.1),
        },
        "plateau" => Schedule::Plateau {
            factor: get("factor", 0, 0.1),
            patience: get("patience", 1, 1.0).max(0.0) as u64,
        },
        "inv" => {
            let (gamma, power) = (get("gamma", 0, 1e-4), get("power", 1, 0.75));
            if !(gamma >= 0.0 && power >= 0.0 && gamma.is_finite() && power.is_finite()) {
                errors.push(
                    Diagnostic::error(format!(
                        "inv schedule needs gamma >= 0 and power >= 0, found gamma={gamma}, power={power}"
                    ))
                    .at(v.span, "here"),
                );
            }
            Schedule::Inv { gamma, power }
        }
        other => {
            errors.push(
                Diagnostic::error(format!("unknown schedule `{other}`"))
                    .at(v.span, "here")
                    .help("use constant, step(every, factor), plateau(factor, patience) or inv(gamma, power)"),
            );
            Schedule::Constant
        }
    }
}

/// The image-folder keys (`resize`, `crop`, `flip`, `mean`, `std`, `color_jitter`,
/// `eval_crops`, `bad_images`, `val_fraction`, `convert_channels`).
fn images(r: &mut Reader) -> ImageConfig {
    let d = ImageConfig::default();
    let resize = r.get("resize").map(|_| r.positive("resize", 256));
    if let (Some(n), Some(v)) = (resize, r.get("resize")) {
        if n > 16384 {
            r.bad(v, "resize", "a side of at most 16384 pixels");
        }
    }
    let random_crop = match r.name("crop", "random").as_str() {
        "random" => true,
        "center" | "centre" => false,
        _ => {
            if let Some(v) = r.get("crop") {
                r.bad(v, "crop", "random or center");
            }
            true
        }
    };
    let bad_images = match r.name("bad_images", "stop").as_str() {
        "stop" => BadImages::Stop,
        "skip" => BadImages::Skip,
        _ => {
            if let Some(v) = r.get("bad_images") {
                r.bad(v, "bad_images", "stop or skip");
            }
            BadImages::Stop
        }
    };
    let eval_crops = r.uint("eval_crops", 1);
    if eval_crops != 1 && eval_crops != 10 {
        if let Some(v) = r.get("eval_crops") {
            r.bad(
                v,
                "eval_crops",
                "1 (the centre) or 10 (corners, centre and their flips)",
            );
        }
    }
    ImageConfig {
        resize,
        random_crop,
        flip: r.flag("flip", d.flip),
        mean: r.channel_stat("mean", false),
        std: r.channel_stat("std", true),
        color_jitter: r.number(
            "color_jitter",
            0.0,
            (0.0, 10.0),
            "a standard deviation between 0 and 10 (AlexNet's is 0.1)",
        ),
        eval_crops: if eval_crops == 10 { 10 } else { 1 },
        bad_images,
        val_fraction: {
            let f = r.number(
                "val_fraction",
                d.val_fraction,
                (0.0, 1.0),
                "a share between 0 and 1, e.g. 0.1",
            );
            if f <= 0.0 || f >= 1.0 {
                if let Some(v) = r.get("val_fraction") {
                    r.bad(v, "val_fraction", "a share between 0 and 1, e.g. 0.1");
                }
                d.val_fraction
            } else {
                f
            }
        },
        convert_channels: r.flag("convert_channels", d.convert_channels),
        verify_images: r.flag("verify_images", d.verify_images),
    }
}

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
    let mut r = Reader {
        entries,
        errors: vec![],
    };
    for (k, _) in entries {
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
    let task_name = r.name("task", "classifier");
    let net_names: Vec<&str> = model.networks.iter().map(|n| n.name.as_str()).collect();
    let check_net = |r: &mut Reader, key: &str, name: &str| {
        if !net_names.contains(&name) {
            let sp = r.get(key).map_or(train.span, |v| v.span);
            let mut d = Diagnostic::error(format!(
                "training setting `{key}`: no network `{name}` in this file"
            ))
            .at(sp, "here");
            if let Some(s) = did_you_mean(name, net_names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            r.errors.push(d);
        }
    };
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
    let (mut opt, mut per_net): (OptimizerConfig, Vec<(String, OptimizerConfig)>) =
        (default_opt, vec![]);
    if let Some(v) = r.get("optimizer") {
        match &v.kind {
            ValueKind::Map(m) => {
                for (k, ov) in m {
                    if let Some(o) = optimizer(ov, &mut r.errors) {
                        per_net.push((k.name.clone(), o));
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
    let task = match task_name.as_str() {
        "classifier" => {
            let network = r.name("network", net_names.first().copied().unwrap_or(""));
            check_net(&mut r, "network", &network);
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
        "gan" => {
            let generator = r.name("generator", "generator");
            let discriminator = r.name("discriminator", "discriminator");
            check_net(&mut r, "generator", &generator);
            check_net(&mut r, "discriminator", &discriminator);
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
                    let sp = r.get("generator_loss").map_or(train.span, |v| v.span);
                    r.errors.push(
                        Diagnostic::error(format!("unknown generator loss `{other}`"))
                            .at(sp, "here")
                            .help(
                                "use non_saturating (-log D(G(z))) or minimax (log(1 - D(G(z))))",
                            ),
                    );
                    true
                }
            };
            let find = |n: &str| per_net.iter().find(|(k, _)| k == n).map(|(_, o)| *o);
            let g_optimizer = find("generator")
                .or_else(|| find(&generator))
                .unwrap_or(opt);
            let d_optimizer = find("discriminator")
                .or_else(|| find(&discriminator))
                .unwrap_or(opt);
            // The generator's images must be what the discriminator takes, and D must end in
            // one logit (or one sigmoid) per example; `train` would refuse it only later.
            let (gn, dn) = (model.network(&generator), model.network(&discriminator));
            if let (Some(gn), Some(dn)) = (gn, dn) {
                let numel = |n: &crate::ir::Network, i: petgraph::graph::NodeIndex| -> u64 {
                    n.graph[i].shape.iter().product()
                };
                let g_out = gn.outputs.first().map(|o| numel(gn, o.1));
                let d_in = dn.inputs.first().map(|&i| numel(dn, i));
                let sp = r.get("discriminator").map_or(train.span, |v| v.span);
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
            let k = r.positive("k", 1);
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
        other => {
            let sp = r.get("task").map_or(train.span, |v| v.span);
            let mut d = Diagnostic::error(format!("unknown task `{other}`")).at(sp, "here");
            d = d.help(match did_you_mean(other, ["classifier", "gan"]) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "the tasks are classifier and gan".into(),
            });
            r.errors.push(d);
            Task::Classifier {
                network: String::new(),
            }
        }
    };
    let schedule = match r.get("schedule") {
        Some(v) => {
            let sc = schedule(v, &mut r.errors);
            if let Schedule::Step { factor, .. } | Schedule::Plateau { factor, .. } = sc {
                if !(factor > 0.0 && factor <= 1.0) {
                    r.errors.push(
                        Diagnostic::error(format!(
                            "schedule factor must be in (0, 1], found {factor}"
                        ))
                        .at(v.span, "here"),
                    );
                }
            }
            sc
        }
        None => Schedule::Constant,
    };
    let batch = r.positive("batch", 128);
    let length = match (r.get("epochs"), r.get("steps")) {
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
            _ => Length::Epochs(5),
        },
    };
    let default_checkpoint = if matches!(task, Task::Gan(_)) {
        1000
    } else {
        1
    };
    let cfg = TrainConfig {
        task,
        optimizer: opt,
        schedule,
        batch,
        length,
        eval_every: r.positive("eval_every", 1),
        log_every: r.positive("log_every", 100),
        checkpoint_every: r.uint("checkpoint_every", default_checkpoint),
        data: r.name("data", "mnist"),
        data_dir: r.get("data_dir").map(|v| match &v.kind {
            ValueKind::Str(s) => s.clone(),
            _ => v.to_string(),
        }),
        range: r.interval("range", (0.0, 1.0)),
        seed: r.uint("seed", 1),
        images: images(&mut r),
    };
    if !["mnist", "fashion_mnist", "idx", "images", "synthetic"].contains(&cfg.data.as_str()) {
        let sp = r.get("data").map_or(train.span, |v| v.span);
        r.errors.push(
            Diagnostic::error(format!("unknown data set `{}`", cfg.data))
                .at(sp, "here")
                .help("the readers are mnist, fashion_mnist and idx (any IDX image/label files), images (a folder of class folders of JPEG/PNG files), and synthetic (generated, shaped to the network)"),
        );
    }
    if r.errors.is_empty() {
        Ok(Some(cfg))
    } else {
        Err(r.errors)
    }
}

#[cfg(test)]
mod tests {
    use crate::compile;

    /// The training section of a model, or its errors' messages.
    fn config_of(file: &str, src: &str) -> Result<super::TrainConfig, String> {
        let m = compile(file, src).map_err(|d| d.render())?;
        match super::read(&m) {
            Ok(Some(cfg)) => Ok(cfg),
            Ok(None) => Err("no training section".into()),
            Err(e) => Err(e
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    fn range_of(file: &str, src: &str) -> Result<(f64, f64), String> {
        config_of(file, src).map(|c| c.range)
    }

    #[test]
    fn pixel_range_in_the_dsl_and_yaml() {
        let net = "net m { input x: 4\n o = dense(2) }\n";
        assert_eq!(
            range_of("m.net", &format!("{net}train {{ data = mnist }}")),
            Ok((0.0, 1.0))
        );
        assert_eq!(
            range_of("m.net", &format!("{net}train {{ range = [-1, 1] }}")),
            Ok((-1.0, 1.0))
        );
        let yaml = "networks:\n  - name: m\n    inputs: {x: 4}\n    layers: [{op: dense, units: 2}]\ntrain:\n  range: [-0.5, 0.5]\n";
        assert_eq!(range_of("m.yaml", yaml), Ok((-0.5, 0.5)));
        for bad in ["[1, -1]", "[0, 0]", "[0]", "2", "[0, 1, 2]"] {
            let e = range_of("m.net", &format!("{net}train {{ range = {bad} }}")).expect_err(bad);
            assert!(e.contains("training setting `range`"), "{bad}: {e}");
        }
    }

    fn images_of(src: &str) -> Result<super::ImageConfig, String> {
        config_of("m.net", src).map(|c| c.images)
    }

    #[test]
    fn the_image_pipeline_keys() {
        use super::{BadImages, ChannelStat};
        let net = "net m { input x: 3x8x8\n o = flatten -> dense(2) }\n";
        let cfg = images_of(&format!(
            "{net}train {{ data = images\n resize = 10\n crop = center\n flip = true\n mean = auto\n std = [0.2, 0.3, 0.4]\n color_jitter = 0.1\n eval_crops = 10\n bad_images = skip\n val_fraction = 0.2\n convert_channels = true }}"
        ))
        .unwrap();
        assert_eq!(cfg.resize, Some(10));
        assert!(!cfg.random_crop && cfg.flip && cfg.convert_channels);
        assert_eq!(cfg.mean, ChannelStat::Auto);
        assert_eq!(cfg.std, ChannelStat::Values(vec![0.2, 0.3, 0.4]));
        assert_eq!((cfg.color_jitter, cfg.eval_crops), (0.1, 10));
        assert_eq!(cfg.bad_images, BadImages::Skip);
        assert_eq!(cfg.val_fraction, 0.2);
        assert_eq!(
            images_of(&format!("{net}train {{ data = mnist }}")),
            Ok(super::ImageConfig::default())
        );
        for (bad, key) in [
            ("resize = 0", "resize"),
            ("crop = middle", "crop"),
            ("flip = 1", "flip"),
            ("mean = fancy", "mean"),
            ("std = [0.2, 0]", "std"),
            ("color_jitter = -1", "color_jitter"),
            ("eval_crops = 5", "eval_crops"),
            ("bad_images = ignore", "bad_images"),
            ("val_fraction = 1", "val_fraction"),
            ("convert_channels = yes", "convert_channels"),
            ("resize = 100000", "resize"),
            ("verify_images = 2", "verify_images"),
        ] {
            let e = images_of(&format!("{net}train {{ {bad} }}")).expect_err(bad);
            assert!(
                e.contains(&format!("training setting `{key}`")),
                "{bad}: {e}"
            );
        }
    }
}
