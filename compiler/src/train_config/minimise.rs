//! `task = minimise`: a model that declares its own loss, a node of one value per example
//! built in the graph (`loss = cross_entropy(logits, label)`), which training minimises the
//! batch mean of, with each input of the network bound to a field of the data set
//! (`inputs = {image: images, label: labels, eps: noise}`). Every name is checked against the
//! network here, so `check` finds what `train` would refuse, at its line.

use super::read::Nets;
use super::reader::Reader;
use crate::ast::{Span, Value, ValueKind};
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::Network;

pub use super::diffusion::{Betas, DiffusionConfig};

/// What a data set gives an input of the network, per example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The image's pixels (in `range`), as many values as the input takes.
    Images,
    /// The class id as a number (one value: `input label: 1`).
    Labels,
    /// Fresh standard Gaussian noise of the input's shape every step, from the run's seed.
    Noise,
    /// A diffusion model's noised image x_t, made from the images and the `noise` input's eps.
    Noisy,
    /// A diffusion model's timestep t, one number in 0..T-1 per example.
    Timestep,
    /// t's sinusoidal embedding (Vaswani et al.'s, as DDPM's) of the input's (even) width.
    TimestepEmbedding,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Images => "images",
            Field::Labels => "labels",
            Field::Noise => "noise",
            Field::Noisy => "noisy",
            Field::Timestep => "timestep",
            Field::TimestepEmbedding => "timestep_embedding",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MinimiseConfig {
    pub network: String,
    /// The loss node as the section names it (an output, statement or layer:
    /// `Network::resolve`).
    pub loss: String,
    /// Each input of the network (by name) and the field it reads, in the network's order.
    pub inputs: Vec<(String, Field)>,
    /// Other nodes of one value per example, averaged over the held-out split and logged
    /// beside its loss (`metrics = [correct]`).
    pub metrics: Vec<String>,
    /// What `netc sample` runs to draw new examples (`sample = {latent: z, samples: recon}`).
    pub sample: Option<super::latent::LatentSample>,
    /// A diffusion model's noise schedule (`diffusion = linear(...)`).
    pub diffusion: Option<DiffusionConfig>,
    /// The decay of an exponential moving average of the weights (`ema = 0.999`).
    pub ema: Option<f64>,
}

/// The values an IDX data set of 28x28 images gives per example.
const MNIST_VALUES: u64 = 28 * 28;

/// `task = minimise`: the network, its loss node, the binding of its inputs and its metrics.
pub(super) fn minimise(r: &mut Reader, nets: &Nets) -> MinimiseConfig {
    let network = r.name("network", nets.names.first().copied().unwrap_or(""));
    nets.check(r, "network", &network);
    let mut cfg = MinimiseConfig {
        network: network.clone(),
        loss: String::new(),
        inputs: vec![],
        metrics: vec![],
        sample: None,
        diffusion: None,
        ema: super::diffusion::ema(r),
    };
    let Some(net) = nets.model.network(&network) else {
        return cfg;
    };
    cfg.loss = match r.get("loss") {
        Some(v) => per_example_node(r, net, v, "loss").unwrap_or_default(),
        None => {
            r.errors.push(
                Diagnostic::error(format!(
                    "task = minimise needs `loss`: the node of network `{network}` to minimise"
                ))
                .at(nets.span, "no `loss` here")
                .help("build it in the network (`loss = cross_entropy(logits, label)`) and name it: `loss = loss`"),
            );
            String::new()
        }
    };
    if let Some(v) = r.get("metrics") {
        let items: Vec<&Value> = match &v.kind {
            ValueKind::List(l) => l.iter().collect(),
            _ => vec![v],
        };
        for item in items {
            if let Some(n) = per_example_node(r, net, item, "metrics") {
                cfg.metrics.push(n);
            }
        }
    }
    cfg.inputs = bind_inputs(r, net, nets.span);
    cfg.sample = super::latent::sample(r, net);
    cfg.diffusion = super::diffusion::diffusion(r, net, &cfg.inputs, nets.span);
    cfg
}

/// The layer `v` names (a layer or an output of `net`), which must give one value per
/// example; None after reporting it.
fn per_example_node(r: &mut Reader, net: &Network, v: &Value, key: &str) -> Option<String> {
    let Some(name) = v.as_ident() else {
        r.bad(v, key, "the name of a layer or output of the network");
        return None;
    };
    let Some(node) = net.resolve(name) else {
        let mut names: Vec<&str> = net.outputs.iter().map(|o| o.0.as_str()).collect();
        names.extend(net.statements.iter().map(|s| s.0.as_str()));
        names.extend(net.graph.node_weights().map(|n| n.name.as_str()));
        let mut d = Diagnostic::error(format!(
            "training setting `{key}`: network `{}` has no layer or output `{name}`",
            net.name
        ))
        .at(v.span, "here");
        if let Some(s) = did_you_mean(name, names) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        r.errors.push(d);
        return None;
    };
    let n = &net.graph[node];
    let values: u64 = n.shape.iter().product();
    if !n.batched || values != 1 {
        let what = if n.batched {
            format!("{values} values per example")
        } else {
            "no batch axis (a parameter, or computed from parameters alone)".to_string()
        };
        r.errors.push(
            Diagnostic::error(format!(
                "training setting `{key}`: `{name}` gives {what}; it must give one value per example"
            ))
            .at(v.span, "not one value per example")
            .also(n.span, format!("`{}` is {} here", n.name, crate::ast::shape_str(&n.shape)))
            .help("reduce it per example: `-> mean_all` or `-> sum_all` (the trainer averages over the batch)"),
        );
        return None;
    }
    Some(name.to_string())
}

/// `inputs = {image: images, label: labels, eps: noise}`: every input of `net` bound to a
/// field once, and nothing else.
fn bind_inputs(r: &mut Reader, net: &Network, section: Span) -> Vec<(String, Field)> {
    // The data set's image size is known only where the section names the data set (as
    // `fit` checks a classifier's); a folder given on the command line is checked at `train`.
    let data = r.get("data").map(|_| r.name("data", "mnist"));
    let entries: Vec<(crate::ast::Ident, Value)> = match r.get("inputs") {
        Some(Value {
            kind: ValueKind::Map(m),
            ..
        }) => m.clone(),
        Some(v) => {
            r.bad(
                v,
                "inputs",
                "a map of the network's inputs to data fields, e.g. {image: images, label: labels}",
            );
            return vec![];
        }
        None => vec![],
    };
    let at = r.get("inputs").map_or(section, |v| v.span);
    let names: Vec<&str> = net
        .inputs
        .iter()
        .map(|&i| net.graph[i].name.as_str())
        .collect();
    let mut bound = vec![];
    let mut named: Vec<&str> = vec![];
    for (k, v) in &entries {
        if !names.contains(&k.name.as_str()) {
            let mut d = Diagnostic::error(format!(
                "training setting `inputs`: network `{}` has no input `{}`",
                net.name, k.name
            ))
            .at(k.span, "not an input");
            if let Some(s) = did_you_mean(&k.name, names.iter().copied()) {
                d = d.help(format!("did you mean `{s}`?"));
            }
            r.errors.push(d);
            continue;
        }
        if named.contains(&k.name.as_str()) {
            r.errors.push(
                Diagnostic::error(format!(
                    "training setting `inputs` binds `{}` twice",
                    k.name
                ))
                .at(k.span, "again here"),
            );
            continue;
        }
        named.push(&k.name);
        let node = net.inputs[names.iter().position(|n| *n == k.name).unwrap_or(0)];
        if let Some(f) = field(r, data.as_deref(), v, &net.graph[node].shape) {
            bound.push((k.name.clone(), f));
        }
    }
    let mut ordered = vec![];
    for (&i, name) in net.inputs.iter().zip(&names) {
        match bound.iter().find(|(n, _)| n == name) {
            Some(b) => ordered.push(b.clone()),
            // Named with a field that is wrong: that error says it.
            None if named.contains(name) => {}
            None => r.errors.push(
                Diagnostic::error(format!(
                    "input `{name}` of network `{}` is not bound to a data field",
                    net.name
                ))
                .at(at, "not bound here")
                .also(net.graph[i].span, "the input")
                .help(format!(
                    "bind every input in the training section: inputs = {{{name}: images}} (the fields: images, labels, noise; with a noise schedule noisy, timestep, timestep_embedding)"
                )),
            ),
        }
    }
    ordered
}

/// The field `v` names, checked against the data set and the input's shape.
fn field(r: &mut Reader, data: Option<&str>, v: &Value, shape: &[u64]) -> Option<Field> {
    let given = data.is_some();
    let data = data.unwrap_or("mnist");
    let fields = [
        Field::Images,
        Field::Labels,
        Field::Noise,
        Field::Noisy,
        Field::Timestep,
        Field::TimestepEmbedding,
    ];
    let name = v.as_ident().unwrap_or("");
    let Some(f) = fields.iter().copied().find(|f| f.name() == name) else {
        let mut d = Diagnostic::error(format!(
            "training setting `inputs`: data set `{data}` has no field `{v}`"
        ))
        .at(v.span, "unknown field");
        d = match did_you_mean(name, fields.iter().map(|f| f.name())) {
            Some(s) => d.help(format!("did you mean `{s}`?")),
            None => d.help(format!(
                "`{data}` gives images and labels; noise is generated (standard Gaussian, fresh each step)"
            )),
        };
        r.errors.push(d);
        return None;
    };
    let values: u64 = shape.iter().product();
    let shape = crate::ast::shape_str(shape);
    let problem = match f {
        Field::Labels if values != 1 => Some(format!(
            "one value per example for `labels` (a class id), but the input takes {shape}; declare it `input label: 1`"
        )),
        Field::Images
            if given && ["mnist", "fashion_mnist"].contains(&data) && values != MNIST_VALUES =>
        {
            Some(format!(
                "784 values per example for `images` ({data} gives 28x28 grey images), but the input takes {shape}"
            ))
        }
        Field::TimestepEmbedding if !values.is_multiple_of(2) => Some(format!(
            "an even width for `timestep_embedding` (sines and cosines), but the input takes {shape}"
        )),
        Field::Noisy
            if given && ["mnist", "fashion_mnist"].contains(&data) && values != MNIST_VALUES =>
        {
            Some(format!(
                "784 values per example for `noisy` ({data} gives 28x28 grey images), but the input takes {shape}"
            ))
        }
        Field::Images
        | Field::Labels
        | Field::Noise
        | Field::Noisy
        | Field::Timestep
        | Field::TimestepEmbedding => None,
    };
    if let Some(p) = problem {
        r.bad(v, "inputs", &p);
        return None;
    }
    Some(f)
}
