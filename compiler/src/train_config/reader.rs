//! Typed look-ups of the training section's keys (each wrong value becomes a diagnostic naming
//! the key), the list of known keys, and the arguments of a call-valued setting.

use super::{ranges, ChannelStat};
use crate::ast::{Value, ValueKind};
use crate::diag::Diagnostic;

pub(super) const KEYS: &[&str] = &[
    "task",
    "network",
    "loss",
    "optimizer",
    "decay_min_rank",
    "no_decay",
    "param_mult",
    "clip_grad_norm",
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
    "crop_padding",
    "mean",
    "std",
    "color_jitter",
    "eval_crops",
    "bad_images",
    "val_fraction",
    "convert_channels",
    "verify_images",
    "classes",
    "inputs",
    "metrics",
    "text",
    "holdout",
    "eval_windows",
    "sample",
    "diffusion",
    "prediction",
    "ema",
];

pub(super) struct Reader<'a> {
    pub(super) entries: &'a [(crate::ast::Ident, Value)],
    pub(super) errors: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
    pub(super) fn bad(&mut self, v: &Value, key: &str, what: &str) {
        self.errors.push(
            Diagnostic::error(format!(
                "training setting `{key}`: expected {what}, found `{v}`"
            ))
            .at(v.span, "here"),
        );
    }
    pub(super) fn uint(&mut self, key: &str, default: u64) -> u64 {
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
    pub(super) fn positive(&mut self, key: &str, default: u64) -> u64 {
        let n = self.uint(key, default);
        if n == 0 {
            if let Some(v) = self.get(key) {
                self.bad(v, key, "an integer of at least 1");
            }
            return default.max(1);
        }
        n
    }
    /// A `[low, high]` interval of numbers in [`ranges::PIXEL_RANGE`] with low < high.
    pub(super) fn interval(&mut self, key: &str, default: (f64, f64)) -> (f64, f64) {
        let Some(v) = self.get(key) else {
            return default;
        };
        if let ValueKind::List(items) = &v.kind {
            if let [a, b] = items.as_slice() {
                if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
                    let r = &ranges::PIXEL_RANGE;
                    if !r.contains(x) || !r.contains(y) {
                        r.check(x, a.span, &mut self.errors);
                        r.check(y, b.span, &mut self.errors);
                        return default;
                    }
                    if x < y {
                        return (x, y);
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
    pub(super) fn flag(&mut self, key: &str, default: bool) -> bool {
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
    pub(super) fn number(
        &mut self,
        key: &str,
        default: f64,
        (low, high): (f64, f64),
        what: &str,
    ) -> f64 {
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
    pub(super) fn channel_stat(&mut self, key: &str, positive: bool) -> ChannelStat {
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
            Some(xs) if !xs.is_empty() => {
                let range = if positive {
                    &ranges::CHANNEL_STD
                } else {
                    &ranges::CHANNEL_MEAN
                };
                let before = self.errors.len();
                for (x, item) in xs.iter().zip(&items) {
                    range.check(*x, item.span, &mut self.errors);
                }
                if self.errors.len() > before {
                    return ChannelStat::None;
                }
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
    pub(super) fn name(&mut self, key: &str, default: &str) -> String {
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
