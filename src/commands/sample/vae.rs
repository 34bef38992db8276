//! Samples of a model that declares its loss and names where its samples come from
//! (`sample = {latent: z, samples: recon}`, a VAE): the part of the network from the latent to
//! the output (the decoder), fed draws from the prior N(0, I).

use super::Drawn;
use crate::common::{ensure_params, fail, Failure};
use netc_compiler::ir::Model;
use netc_compiler::train_config::{MinimiseConfig, Noise};
use netc_runtime::cpu::Params;
use netc_runtime::io::run_checkpoint::load_params;
use netc_runtime::io::Checkpoint;
use netc_runtime::rng::Rng;

/// `count` decoded prior draws from `seed` (N(0, I) at the latent, one batch of 500 at a time,
/// on the CPU executor), mapped from the training `range` to [0, 1].
pub(super) fn draw(
    model: &Model,
    m: &MinimiseConfig,
    range: (f64, f64),
    weights: &str,
    (count, seed): (usize, u64),
) -> Result<Drawn, Failure> {
    let Some(s) = &m.sample else {
        return Err(fail(format!(
            "`sample` needs to know where network `{}` draws from: name its latent and output in the training section, e.g. sample = {{latent: z, samples: recon}}",
            m.network
        )));
    };
    let net = model
        .network(&m.network)
        .ok_or_else(|| fail(format!("no network `{}`", m.network)))?;
    // `check` cut this part already; a failure here would be the same message.
    let part = netc_compiler::subnet::cut(net, &s.latent, &s.output).map_err(fail)?;
    let ck = Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(net)?;
    // The whole network's tensors, strictly: a checkpoint of another model is refused even
    // where the decoder's tensors alone would fit.
    let like: Params<f32> = Params::init(net, &mut Rng::new(0));
    let (all, _) = load_params(&ck, net, &like, 0).map_err(fail)?;
    let mut p: Params<f32> = Params::init(&part, &mut Rng::new(0));
    for (i, name) in p.names.iter().enumerate() {
        let k = all
            .index(name)
            .ok_or_else(|| fail(format!("no tensor `{name}` in network `{}`", net.name)))?;
        p.values[i].clone_from(&all.values[k]);
    }
    let prior = Noise::Normal {
        mean: 0.0,
        std: 1.0,
    };
    let images =
        netc_runtime::train::generate(&part, &p, (prior, range), count, seed).map_err(fail)?;
    Ok(Drawn {
        images,
        shape: netc_runtime::train::image_shape(&part),
        source: format!(
            "`{}` of network `{}` from N(0, I) at `{}`",
            s.output, net.name, s.latent
        ),
    })
}
