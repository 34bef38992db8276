//! `netc generate`: text from a trained character-level language model, streamed to stdout
//! a character at a time, the same text for the same seed.

use crate::common::{ensure_params, fail, load, train_config, Failure};
use netc_runtime::data::text::Vocab;
use netc_runtime::text_gen::{Generator, Sampling};
use std::io::Write;

/// What `generate` draws: the prompt, how many characters, and how.
pub(crate) struct Request {
    pub(crate) prompt: Option<String>,
    pub(crate) tokens: usize,
    pub(crate) sampling: Sampling,
}

pub(crate) fn generate(file: &str, weights: &str, req: Request) -> Result<(), Failure> {
    use netc_compiler::train_config::Task;
    use netc_runtime::cpu::Params;
    let model = load(file)?;
    let cfg = train_config(&model)?;
    let Task::LanguageModel(lm) = &cfg.task else {
        return Err(fail(
            "`generate` draws text from a language model (task = language_model); this model trains something else",
        ));
    };
    let net = model
        .network(&lm.network)
        .ok_or_else(|| fail(format!("no network `{}`", lm.network)))?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    let vocab = ck
        .metadata
        .get(netc_runtime::train::VOCAB_KEY)
        .map(|v| Vocab::from_record(v))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            fail(format!(
                "{weights} records no vocabulary: it was not written by a language model's `netc train`"
            ))
        })?;
    ensure_params(net)?;
    let like: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (p, _) = netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0).map_err(fail)?;
    let mut g = Generator::new(net, &p, vocab, req.sampling).map_err(fail)?;
    // nanoGPT starts from a newline; a vocabulary without one starts from its first character.
    let prompt = req.prompt.unwrap_or_else(|| {
        let nl = g.vocab.id('\n').is_some();
        if nl {
            "\n".into()
        } else {
            g.vocab.char_of(0).to_string()
        }
    });
    if prompt.is_empty() {
        return Err(fail("--prompt must hold at least one character"));
    }
    let mut context = g.encode(&prompt).map_err(fail)?;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{prompt}");
    for _ in 0..req.tokens {
        let id = g.next(&context).map_err(fail)?;
        context.push(id);
        // A closed pipe (`| head`) ends the text, not with an error.
        if write!(out, "{}", g.vocab.char_of(id))
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(());
        }
    }
    let _ = writeln!(out);
    Ok(())
}
