//! ONNX export: a network of the IR, with its trained weights, as an ONNX model (IR version 8,
//! opset 17) that another runtime runs to the same outputs.
//!
//! - `proto`: the protobuf messages, encoded by hand (it says why);
//! - `builder`: the graph being written, with every tensor's type for `value_info`;
//! - `layers`: the layer ops (conv, pooling, dense, LRN, batchnorm, ...) and their mapping traps;
//! - `prims`: the tensor primitives (matmul, reduce, gather, where, ...).
//!
//! Initializers are named as the checkpoint names the weights (`conv1.weight`), node names
//! and doc strings carry the layer names, and the batch axis is free (`batch`) or fixed.

mod builder;
mod layers;
mod prims;
pub mod proto;

use crate::cpu::Params;
use crate::io::run_checkpoint::checkpoint_names;
use builder::{Builder, Layer, TensorType};
use netc_compiler::ir::Network;
use netc_compiler::ops::Op;
use petgraph::graph::NodeIndex;
use proto::{DataType, Dim};
use std::collections::HashMap;

pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;

/// The batch axis of the exported graph's inputs and outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// Any batch: the symbolic dimension `batch`.
    Dynamic,
    Fixed(u64),
}

/// Why a network cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Every layer whose op the exporter cannot write, all at once: (layer, op, why).
    #[error("network `{net}` has {} layer(s) that ONNX opset {OPSET} cannot express as netc computes them: {}", .layers.len(), list(.layers))]
    Unsupported {
        net: String,
        layers: Vec<(String, String, String)>,
    },
    /// The weights given do not belong to the network.
    #[error("network `{net}` has no weight `{name}` among the weights given")]
    MissingWeight { net: String, name: String },
}

fn list(layers: &[(String, String, String)]) -> String {
    layers
        .iter()
        .map(|(l, op, why)| format!("`{l}` ({op}: {why})"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the lowering of one layer sees: the graph so far, the tensor each IR node's value is
/// in, the weights and their checkpoint names.
pub(crate) struct Cx<'a> {
    pub b: Builder,
    pub net: &'a Network,
    pub params: &'a Params<f32>,
    /// netc's name of a weight -> the checkpoint's (and the initializer's) name.
    pub saved: HashMap<String, String>,
    pub tensor: HashMap<NodeIndex, String>,
    pub batch: Dim,
}

impl Cx<'_> {
    /// The full type of IR node `n`'s value.
    pub fn node_type(&self, n: NodeIndex) -> TensorType {
        let node = self.net.node(n);
        let mut dims = vec![];
        if node.batched {
            dims.push(self.batch.clone());
        }
        dims.extend(node.shape.iter().map(|&d| Dim::Value(d)));
        TensorType::float(dims)
    }

    /// The tensors node `n` reads, in input order.
    pub fn inputs(&self, n: NodeIndex) -> Vec<String> {
        self.net
            .inputs_of(n)
            .iter()
            .map(|i| self.tensor[i].clone())
            .collect()
    }

    /// The initializer of weight `name` (netc's name: `conv1.weight`), written at first use.
    pub fn weight(&mut self, name: &str) -> Result<String, ExportError> {
        let saved = self
            .saved
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string());
        if self.b.types.contains_key(&saved) {
            return Ok(saved);
        }
        let i = self
            .params
            .index(name)
            .ok_or_else(|| ExportError::MissingWeight {
                net: self.net.name.clone(),
                name: saved.clone(),
            })?;
        let dims: Vec<u64> = self.params.shapes[i].iter().map(|&d| d as u64).collect();
        let values = &self.params.values[i];
        Ok(self.b.float_init(&saved, &dims, values))
    }

    pub fn layer(&self, n: NodeIndex) -> Layer {
        let node = self.net.node(n);
        Layer {
            name: node.name.clone(),
            doc: format!("netc layer `{}`: {}", node.name, node.op.describe()),
        }
    }
}

/// The ONNX model (serialized `ModelProto`) of network `net` with weights `params`.
pub fn export(net: &Network, params: &Params<f32>, batch: Batch) -> Result<Vec<u8>, ExportError> {
    let unsupported: Vec<(String, String, String)> = net
        .order
        .iter()
        .filter_map(|&n| {
            let node = net.node(n);
            why_not(net, n).map(|why| (node.name.clone(), node.op.name().to_string(), why))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(ExportError::Unsupported {
            net: net.name.clone(),
            layers: unsupported,
        });
    }
    let names = checkpoint_names(params);
    let mut cx = Cx {
        b: Builder::default(),
        net,
        params,
        saved: params.names.iter().cloned().zip(names).collect(),
        tensor: HashMap::new(),
        batch: match batch {
            Batch::Dynamic => Dim::Param("batch".into()),
            Batch::Fixed(b) => Dim::Value(b),
        },
    };
    for (alias, n) in &net.outputs {
        if net.node(*n).name != *alias {
            cx.b.reserved.insert(alias.clone());
        }
    }
    let mut inputs = vec![];
    for &n in &net.order {
        let out = match &net.node(n).op {
            Op::Input { .. } => {
                let name = net.node(n).name.clone();
                cx.b.types.insert(name.clone(), cx.node_type(n));
                inputs.push(name.clone());
                name
            }
            Op::Prim(p) => prims::lower(&mut cx, n, p)?,
            op => layers::lower(&mut cx, n, op)?,
        };
        cx.tensor.insert(n, out);
    }
    Ok(finish(cx, &inputs))
}

/// Why the exporter cannot write node `n` (None: it can). Every op of the IR has an ONNX form
/// in opset 17 today, all but one average pooling case (`layers::pool_why_not`); the list is
/// where one without goes, reported with all the others.
fn why_not(net: &Network, n: NodeIndex) -> Option<String> {
    let op = &net.node(n).op;
    match op {
        Op::MaxPool { .. } => None,
        Op::AvgPool { .. } => {
            let x = net
                .inputs_of(n)
                .first()
                .map(|&i| net.node(i).shape.clone())?;
            layers::pool_why_not(op, &x)
        }
        Op::Input { .. }
        | Op::Dense { .. }
        | Op::Conv { .. }
        | Op::ConvTranspose { .. }
        | Op::Relu
        | Op::Sigmoid
        | Op::Tanh
        | Op::LeakyRelu { .. }
        | Op::Softmax
        | Op::Lrn { .. }
        | Op::Dropout { .. }
        | Op::Flatten
        | Op::Reshape { .. }
        | Op::Add
        | Op::Concat { .. }
        | Op::BatchNorm { .. }
        | Op::Prim(_) => None,
    }
}

/// The graph's outputs (an Identity where an output's alias is not its tensor's name), the
/// value_info of every other tensor, and the model around the graph.
fn finish(mut cx: Cx, inputs: &[String]) -> Vec<u8> {
    let net = cx.net;
    let mut outputs = vec![];
    for (alias, n) in &net.outputs {
        let t = cx.tensor[n].clone();
        let out = if t == *alias {
            t
        } else {
            cx.b.reserved.remove(alias);
            let layer = Layer {
                name: alias.clone(),
                doc: format!("netc output `{alias}` (layer `{}`)", net.node(*n).name),
            };
            let ty = cx.b.ty(&t).clone();
            cx.b.node(&layer, "Identity", &[t], (alias, ty), &[])
        };
        outputs.push(out);
    }
    let mut g = proto::Writer::default();
    for node in &cx.b.nodes {
        g.message(proto::graph::NODE, node);
    }
    g.string(proto::graph::NAME, &net.name);
    // Each initializer is dropped once copied: the weights are in memory twice at most.
    for i in std::mem::take(&mut cx.b.initializers) {
        g.message(proto::graph::INITIALIZER, &i);
    }
    let b = &cx.b;
    g.string(proto::graph::DOC, &format!("netc network `{}`", net.name));
    let info = |name: &str| {
        let t = b.ty(name);
        proto::value_info(name, t.dtype, &t.dims)
    };
    for i in inputs {
        g.message(proto::graph::INPUT, &info(i));
    }
    for o in &outputs {
        g.message(proto::graph::OUTPUT, &info(o));
    }
    for t in b.produced.iter().filter(|t| !outputs.contains(t)) {
        g.message(proto::graph::VALUE_INFO, &info(t));
    }
    let doc = format!(
        "network `{}` exported by netc {}",
        net.name,
        env!("CARGO_PKG_VERSION")
    );
    proto::model(&g, IR_VERSION, OPSET, &doc)
}

/// The bool type of a tensor shaped as `t`.
pub(crate) fn bool_like(t: &TensorType) -> TensorType {
    TensorType {
        dtype: DataType::Bool,
        dims: t.dims.clone(),
    }
}
