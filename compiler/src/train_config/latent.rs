//! `sample = {latent: z, samples: recon}` of a declared-loss model: the part of the network
//! `netc sample` runs to draw new examples (a VAE's decoder), fed draws from the prior
//! N(0, I) at the latent. The part is cut out here, so `check` finds what `sample` would
//! refuse, at its line.

use super::reader::Reader;
use crate::ast::{Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Network;

/// Where a generative model's samples come from: the `latent` node fed N(0, I) draws, the
/// `output` node (the setting's `samples`) read as the samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatentSample {
    pub latent: String,
    pub output: String,
}

/// The `sample` setting, checked against `net`; None when absent or after reporting it.
pub(super) fn sample(r: &mut Reader, net: &Network) -> Option<LatentSample> {
    let v = r.get("sample")?;
    let ValueKind::Map(entries) = &v.kind else {
        r.bad(
            v,
            "sample",
            "a map naming the latent node and the output, e.g. {latent: z, samples: recon}",
        );
        return None;
    };
    let mut latent = None;
    let mut output = None;
    for (k, val) in entries {
        let slot = match k.name.as_str() {
            "latent" => &mut latent,
            "samples" => &mut output,
            other => {
                let mut d = Diagnostic::error(format!(
                    "training setting `sample` has no key `{other}`"
                ))
                .at(k.span, "unknown key")
                .help("the keys are latent (the node fed N(0, I) draws) and samples (the node read as the samples)");
                if let Some(s) = did_you_mean(other, ["latent", "samples"]) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                r.errors.push(d);
                continue;
            }
        };
        *slot = node_name(r, net, &k.name, val);
    }
    for (key, got) in [("latent", &latent), ("samples", &output)] {
        if got.is_none() && !entries.iter().any(|(k, _)| k.name == key) {
            r.errors.push(
                Diagnostic::error(format!("training setting `sample` needs `{key}`"))
                    .at(v.span, format!("no `{key}` here"))
                    .help("e.g. sample = {latent: z, samples: recon}"),
            );
        }
    }
    let (latent, output) = (latent?, output?);
    if let Err(e) = crate::subnet::cut(net, &latent.0, &output.0) {
        r.errors.push(
            Diagnostic::error(format!("training setting `sample`: {e}"))
                .at(v.span, "this part of the network cannot run alone")
                .also(latent.1, "the latent")
                .help("the output must be computed from the latent and from parameters only (a VAE's decoder)"),
        );
        return None;
    }
    Some(LatentSample {
        latent: latent.0,
        output: output.0,
    })
}

/// A node name of `net` given as `sample`'s `key`, with where it was written.
fn node_name(
    r: &mut Reader,
    net: &Network,
    key: &str,
    v: &Value,
) -> Option<(String, crate::ast::Span)> {
    let Some(name) = v.as_ident() else {
        r.bad(v, "sample", &format!("a node name for `{key}`"));
        return None;
    };
    if net.resolve(name).is_none() {
        let mut names: Vec<&str> = net.statements.iter().map(|s| s.0.as_str()).collect();
        names.extend(net.graph.node_weights().map(|n| n.name.as_str()));
        let mut d = Diagnostic::error(format!(
            "training setting `sample`: network `{}` has no layer or output `{name}`",
            net.name
        ))
        .at(v.span, "here");
        if let Some(s) = did_you_mean(name, names) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        r.errors.push(d);
        return None;
    }
    Some((name.to_string(), v.span))
}
