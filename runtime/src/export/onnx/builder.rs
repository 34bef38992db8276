//! The graph being written: nodes, initializers and the type and shape of every tensor, so
//! that every intermediate tensor gets its `value_info` (Netron shows shapes on every edge)
//! and every name is given once (ONNX graphs are in SSA form).

use super::proto::{self, Attr, DataType, Dim, NodeMsg, Writer};
use std::collections::{HashMap, HashSet};

/// A tensor's element type and full shape (batch axis included where it has one).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    pub dtype: DataType,
    pub dims: Vec<Dim>,
}

impl TensorType {
    pub fn float(dims: Vec<Dim>) -> TensorType {
        TensorType {
            dtype: DataType::Float,
            dims,
        }
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }
}

/// The layer a node comes from: its name (node names and doc strings carry it) and what it
/// does, as the IR printout says.
#[derive(Clone)]
pub struct Layer {
    pub name: String,
    pub doc: String,
}

#[derive(Default)]
pub struct Builder {
    pub nodes: Vec<Writer>,
    pub initializers: Vec<Writer>,
    /// Every tensor's type, by name (inputs, initializers, node outputs).
    pub types: HashMap<String, TensorType>,
    /// Node outputs in the order written: the intermediate tensors' value_info.
    pub produced: Vec<String>,
    node_names: HashMap<String, usize>,
    /// Names kept for the graph's outputs (an alias naming another layer's tensor too: the
    /// output `r` of `r = j -> dense(5) -> softmax`, whose dense layer is named `r`).
    pub reserved: HashSet<String>,
}

impl Builder {
    /// A name not given yet, `base` itself when free, else `base_2`, `base_3`, ...
    pub fn fresh(&self, base: &str) -> String {
        let taken = |n: &str| self.types.contains_key(n) || self.reserved.contains(n);
        if !taken(base) {
            return base.to_string();
        }
        (2..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !taken(n))
            .unwrap_or_default()
    }

    pub fn ty(&self, name: &str) -> &TensorType {
        &self.types[name]
    }

    /// An initializer of f32 values.
    pub fn float_init(&mut self, name: &str, dims: &[u64], values: &[f32]) -> String {
        self.initializers
            .push(proto::float_tensor(name, dims, values));
        let dims = dims.iter().map(|&d| Dim::Value(d)).collect();
        self.types.insert(name.to_string(), TensorType::float(dims));
        name.to_string()
    }

    /// An initializer of int64 values (shapes, axes, slice bounds).
    pub fn int_init(&mut self, layer: &Layer, what: &str, values: &[i64]) -> String {
        let name = self.fresh(&format!("{}/{what}", layer.name));
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.init(&name, DataType::Int64, &[values.len() as u64], &raw)
    }

    /// A scalar f32 constant (shape [], broadcast against anything).
    pub fn scalar(&mut self, layer: &Layer, what: &str, v: f32) -> String {
        let name = self.fresh(&format!("{}/{what}", layer.name));
        self.init(&name, DataType::Float, &[], &v.to_le_bytes())
    }

    pub fn init(&mut self, name: &str, dtype: DataType, dims: &[u64], raw: &[u8]) -> String {
        self.initializers
            .push(proto::tensor(name, dtype, dims, raw));
        let dims = dims.iter().map(|&d| Dim::Value(d)).collect();
        self.types
            .insert(name.to_string(), TensorType { dtype, dims });
        name.to_string()
    }

    /// Appends a node of `layer` with one output, named `out` (made unique), of type `ty`.
    pub fn node(
        &mut self,
        layer: &Layer,
        op_type: &str,
        inputs: &[String],
        (out, ty): (&str, TensorType),
        attrs: &[(&'static str, Attr)],
    ) -> String {
        let out = self.fresh(out);
        let count = self.node_names.entry(layer.name.clone()).or_insert(0);
        *count += 1;
        let name = match *count {
            1 => layer.name.clone(),
            n => format!("{}/{}_{n}", layer.name, op_type),
        };
        self.nodes.push(proto::node(&NodeMsg {
            op_type,
            name: &name,
            inputs,
            outputs: std::slice::from_ref(&out),
            attrs,
            doc: &layer.doc,
        }));
        self.types.insert(out.clone(), ty);
        self.produced.push(out.clone());
        out
    }
}
