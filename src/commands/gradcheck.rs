//! `netc gradcheck`: analytic gradients against central differences, per parameter tensor.

use crate::common::{fail, Failure};
use netc_compiler::ir::Model;

pub(crate) fn gradcheck(
    model: &Model,
    batch: usize,
    samples: usize,
    seed: u64,
) -> Result<(), Failure> {
    use netc_compiler::train_config::Task;
    use netc_runtime::gradcheck::{check, check_generator, THRESHOLD};
    // A GAN's generator has no loss of its own: it is checked with the one it trains with,
    // through the frozen discriminator (not cross-entropy over its image outputs).
    let gan = match netc_compiler::train_config::read(model).ok().flatten() {
        Some(cfg) => match cfg.task {
            Task::Gan(g) => Some(g),
            Task::Classifier { .. } | Task::Minimise(_) | Task::LanguageModel(_) => None,
        },
        None => None,
    };
    let mut ok = true;
    for net in &model.networks {
        let r = match &gan {
            Some(g) if g.generator == net.name => {
                let d = model
                    .network(&g.discriminator)
                    .ok_or_else(|| fail(format!("no network `{}`", g.discriminator)))?;
                check_generator(net, d, g.non_saturating, batch, samples, seed)
            }
            _ => check(net, batch, samples, seed),
        }
        .map_err(fail)?;
        println!(
            "network {} (batch {batch}, loss: {}, five-point central differences, h {:e}, h/100 near a kink)",
            r.net,
            r.loss,
            netc_runtime::gradcheck::EPS
        );
        println!(
            "  {:<28} {:>10} {:>8} {:>6}  {:>12}  result",
            "tensor", "entries", "checked", "kinks", "rel. diff"
        );
        for t in &r.tensors {
            let pass = t.rel_diff < THRESHOLD;
            println!(
                "  {:<28} {:>10} {:>8} {:>6}  {:>12.3e}  {}",
                t.name,
                t.entries,
                t.checked,
                t.kinks,
                t.rel_diff,
                if pass { "ok" } else { "FAIL" }
            );
        }
        println!(
            "  overall relative difference {:.3e} (threshold {THRESHOLD:e}): {}",
            r.overall,
            if r.passed() { "passed" } else { "FAILED" }
        );
        ok &= r.passed();
    }
    if ok {
        Ok(())
    } else {
        Err(Failure(1))
    }
}
