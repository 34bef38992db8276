//! `task = language_model`: a network reading a window of `block` character ids (`input
//! tokens: 64`) and giving logits for the next character at every position (`64x84`), trained
//! with per-token cross-entropy on a UTF-8 text file. The shapes are checked here, so `check`
//! finds what `train` would refuse, at its line.

use super::read::Nets;
use super::reader::Reader;
use crate::ast::{shape_str, ValueKind};
use crate::diag::Diagnostic;

#[derive(Debug, Clone, PartialEq)]
pub struct LanguageModelConfig {
    pub network: String,
    /// The text file the section names (`text = "shakespeare.txt"`); `--data-dir` (a file, or
    /// a folder holding one text file) takes precedence.
    pub text: Option<String>,
    /// Positions per window: the length of the network's input.
    pub block: u64,
    /// Classes per position: the logits' last axis, which must cover the text's characters.
    pub vocab: u64,
    /// The share of the text, from its end, held out for validation.
    pub holdout: f64,
    /// Validation reads the first this many held-out windows (None: all of them, the
    /// default; a large model on a slow device may ask for fewer).
    pub eval_windows: Option<u64>,
}

/// `task = language_model`: the network, its text and the window it reads.
pub(super) fn language_model(r: &mut Reader, nets: &Nets) -> LanguageModelConfig {
    let network = r.name("network", nets.names.first().copied().unwrap_or(""));
    nets.check(r, "network", &network);
    let text = r.get("text").map(|v| match &v.kind {
        ValueKind::Str(s) => s.clone(),
        _ => v.to_string(),
    });
    let holdout = r.number(
        "holdout",
        0.1,
        (1e-6, 0.5),
        "a share of the text to hold out for validation, in (0, 0.5], e.g. 0.1",
    );
    let eval_windows = r.get("eval_windows").map(|_| r.positive("eval_windows", 1));
    let mut cfg = LanguageModelConfig {
        network: network.clone(),
        text,
        block: 0,
        vocab: 0,
        holdout,
        eval_windows,
    };
    if let Some(net) = nets.model.network(&network) {
        if let Some((block, vocab)) = window_of(r, net, nets) {
            (cfg.block, cfg.vocab) = (block, vocab);
        }
    }
    cfg
}

/// The block and the vocabulary of `net`: one input of `block` ids, logits `block x vocab`.
fn window_of(r: &mut Reader, net: &crate::ir::Network, nets: &Nets) -> Option<(u64, u64)> {
    let at = r.get("network").map_or(nets.span, |v| v.span);
    let [input] = net.inputs.as_slice() else {
        r.errors.push(
            Diagnostic::error(format!(
                "task = language_model: network `{}` has {} inputs; it must have one, the window of token ids",
                net.name,
                net.inputs.len()
            ))
            .at(at, "this network")
            .help("declare one input of ids: `input tokens: 64`"),
        );
        return None;
    };
    let node = &net.graph[*input];
    let &[block] = node.shape.as_slice() else {
        r.errors.push(
            Diagnostic::error(format!(
                "task = language_model: input `{}` is {}; it must be a window of token ids, one axis long",
                node.name,
                shape_str(&node.shape)
            ))
            .at(node.span, "the input")
            .help("declare it as a sequence of ids: `input tokens: 64`"),
        );
        return None;
    };
    let Some((_, logit)) = net.output_and_logit() else {
        r.errors.push(
            Diagnostic::error(format!(
                "task = language_model: network `{}` has no output",
                net.name
            ))
            .at(at, "this network")
            .help("output the logits for the next token at each position: `output logits`"),
        );
        return None;
    };
    let out = &net.graph[logit];
    match *out.shape.as_slice() {
        [t, v] if t == block && v >= 2 => Some((block, v)),
        _ => {
            r.errors.push(
                Diagnostic::error(format!(
                    "task = language_model: the logits `{}` are {}; they must be {block}xV, a score for each of V characters at each of the input's {block} positions",
                    out.name,
                    shape_str(&out.shape)
                ))
                .at(out.span, "the logits")
                .also(node.span, format!("the input is {block} ids")),
            );
            None
        }
    }
}
