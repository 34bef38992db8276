//! Text from a trained character-level language model (`netc generate`): the last `block`
//! characters as the window (shorter contexts padded after their end, which a causal model's
//! earlier positions never see), the logits at the context's last position scaled by the
//! temperature, cut to the top k, and a character drawn from their softmax, as nanoGPT's
//! `generate` does. The window is recomputed for each character: at the block sizes of the
//! shipped models (64, 256) that costs one forward pass per character; see docs/language.md
//! for the figures.

use crate::cpu::{self, CpuError, Params};
use crate::data::text::Vocab;
use crate::rng::{mix64, Rng};
use ndarray::ArrayView2;
use netc_compiler::ir::Network;
use petgraph::graph::NodeIndex;

/// How characters are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Divides the logits; 0 takes the most likely character every time.
    pub temperature: f64,
    /// Only the k most likely characters are drawn from (None: all).
    pub top_k: Option<usize>,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt's character {0:?} (U+{1:04X}) is not in the model's vocabulary of {2} characters")]
    UnknownChar(char, u32, usize),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error("{0}")]
    Setup(String),
}

/// A trained network drawing one character after another.
pub struct Generator<'a> {
    net: &'a Network,
    params: &'a Params<f32>,
    logit: NodeIndex,
    pub vocab: Vocab,
    block: usize,
    classes: usize,
    rng: Rng,
    sampling: Sampling,
    /// One thread: a window of one example is too little work to split, and handing its
    /// products to a second thread cost more than it saved (500 characters of gpt_char: 1.04 s
    /// on one thread, 1.25-1.33 s on two, and a third more CPU time).
    pool: rayon::ThreadPool,
}

impl<'a> Generator<'a> {
    pub fn new(
        net: &'a Network,
        params: &'a Params<f32>,
        vocab: Vocab,
        sampling: Sampling,
    ) -> Result<Generator<'a>, GenerateError> {
        let bad = |m: &str| GenerateError::Setup(format!("network `{}` {m}", net.name));
        let &[input] = net.inputs.as_slice() else {
            return Err(bad("must have one input, the window of ids"));
        };
        let (_, logit) = net.output_and_logit().ok_or_else(|| bad("has no output"))?;
        let block = net.graph[input].shape.iter().product::<u64>() as usize;
        let shape = &net.graph[logit].shape;
        let classes = shape.last().copied().unwrap_or(0) as usize;
        if shape.len() != 2 || shape[0] as usize != block || vocab.len() > classes {
            return Err(bad(&format!(
                "gives logits {shape:?}, not {block} positions of the vocabulary's {} characters",
                vocab.len()
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .map_err(|e| GenerateError::Setup(format!("cannot start a thread: {e}")))?;
        Ok(Generator {
            net,
            params,
            logit,
            vocab,
            block,
            classes,
            rng: Rng::new(mix64(sampling.seed ^ 0x6E4E_7E47)),
            sampling,
            pool,
        })
    }

    /// The ids of `prompt`, or the character the vocabulary lacks.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>, GenerateError> {
        self.vocab
            .encode(prompt)
            .map_err(|c| GenerateError::UnknownChar(c, c as u32, self.vocab.len()))
    }

    /// The id of the character after `context` (at least one id).
    pub fn next(&mut self, context: &[u32]) -> Result<u32, GenerateError> {
        let ctx = &context[context.len().saturating_sub(self.block)..];
        let mut x = vec![0.0f32; self.block];
        for (v, &id) in x.iter_mut().zip(ctx) {
            *v = id as f32;
        }
        let view = ArrayView2::from_shape((1, self.block), &x)
            .map_err(|e| GenerateError::Setup(e.to_string()))?;
        let (net, params) = (self.net, self.params);
        let acts = self
            .pool
            .install(|| cpu::forward(net, params, view, false, 0))?;
        let at = ctx.len().max(1) - 1;
        let row = &acts.get(self.logit).as_slice().unwrap_or(&[])
            [at * self.classes..(at + 1) * self.classes];
        // Logits beyond the vocabulary (a network wider than the text's characters) are
        // never drawn.
        Ok(self.draw(&row[..self.vocab.len()]))
    }

    /// An index drawn from softmax(logits / T) over the top k.
    fn draw(&mut self, logits: &[f32]) -> u32 {
        let s = self.sampling;
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if s.temperature == 0.0 {
            return order[0] as u32;
        }
        order.truncate(s.top_k.unwrap_or(order.len()).max(1));
        let top = logits[order[0]] as f64;
        let w: Vec<f64> = order
            .iter()
            .map(|&i| ((logits[i] as f64 - top) / s.temperature).exp())
            .collect();
        let mut u = self.rng.next_f64() * w.iter().sum::<f64>();
        for (&i, &wi) in order.iter().zip(&w) {
            if u < wi {
                return i as u32;
            }
            u -= wi;
        }
        order[order.len() - 1] as u32
    }
}
