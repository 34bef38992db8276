//! The ONNX protobuf messages netc writes, encoded by hand: an exporter only writes, and only
//! the fields below (a subset of 9 of onnx.proto's messages), so a minimal encoder of the wire
//! format (varints and length-delimited fields) is ~150 lines, against a protobuf crate, its
//! derive macros and a generated file of every onnx.proto message compiled on every build of
//! a 2-core CI. Field numbers are those of onnx.proto (onnx/onnx, Apache-2.0; the numbers are
//! the interchange format, copied as facts). The tests check every file netc writes with
//! onnx's own parser and checker and run it in onnxruntime, so a wrong number cannot pass.

/// Element types (`TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float = 1,
    Int64 = 7,
    Bool = 9,
}

/// A protobuf message being written: fields in order, as bytes.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }

    /// An int64/int32/enum field (negative values as 10-byte two's complement, as protobuf does).
    pub fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }

    pub fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub fn string(&mut self, field: u32, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    /// An embedded message.
    pub fn message(&mut self, field: u32, m: &Writer) {
        self.bytes(field, &m.0);
    }

    /// A packed repeated int64 field.
    pub fn packed_ints(&mut self, field: u32, vs: &[i64]) {
        let mut inner = Writer::default();
        for &v in vs {
            inner.varint(v as u64);
        }
        self.bytes(field, &inner.0);
    }
}

/// One dimension: a size, or a symbol (the batch, when it is left free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Value(u64),
    Param(String),
}

/// `ValueInfoProto` of a tensor: name, element type and shape.
pub fn value_info(name: &str, dtype: DataType, dims: &[Dim]) -> Writer {
    let mut shape = Writer::default();
    for d in dims {
        let mut dim = Writer::default();
        match d {
            Dim::Value(v) => dim.int(1, *v as i64), // dim_value
            Dim::Param(p) => dim.string(2, p),      // dim_param
        }
        shape.message(1, &dim); // TensorShapeProto.dim
    }
    let mut tensor = Writer::default();
    tensor.int(1, dtype as i64); // TypeProto.Tensor.elem_type
    tensor.message(2, &shape); // TypeProto.Tensor.shape
    let mut ty = Writer::default();
    ty.message(1, &tensor); // TypeProto.tensor_type
    let mut v = Writer::default();
    v.string(1, name); // ValueInfoProto.name
    v.message(2, &ty); // ValueInfoProto.type
    v
}

/// `TensorProto` with its values as little-endian `raw_data`.
pub fn tensor(name: &str, dtype: DataType, dims: &[u64], raw: &[u8]) -> Writer {
    let mut t = Writer::default();
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    t.packed_ints(1, &dims); // dims
    t.int(2, dtype as i64); // data_type
    t.string(8, name); // name
    t.bytes(9, raw); // raw_data
    t
}

/// `TensorProto` of f32 values, written straight into the message (a VGG's weights are half a
/// gigabyte: no intermediate byte vector).
pub fn float_tensor(name: &str, dims: &[u64], values: &[f32]) -> Writer {
    let mut t = Writer::default();
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    t.packed_ints(1, &dims); // dims
    t.int(2, DataType::Float as i64); // data_type
    t.string(8, name); // name
    t.key(9, 2); // raw_data
    t.varint(4 * values.len() as u64);
    t.0.reserve(4 * values.len());
    for v in values {
        t.0.extend_from_slice(&v.to_le_bytes());
    }
    t
}

/// An attribute's value (`AttributeProto` with its `type`).
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
}

pub fn attribute(name: &str, value: &Attr) -> Writer {
    let mut a = Writer::default();
    a.string(1, name);
    match value {
        Attr::Float(f) => {
            a.float(2, *f);
            a.int(20, 1); // AttributeType FLOAT
        }
        Attr::Int(i) => {
            a.int(3, *i);
            a.int(20, 2); // INT
        }
        Attr::Ints(v) => {
            a.packed_ints(8, v);
            a.int(20, 7); // INTS
        }
    }
    a
}

/// A `NodeProto`.
pub struct NodeMsg<'a> {
    pub op_type: &'a str,
    pub name: &'a str,
    pub inputs: &'a [String],
    pub outputs: &'a [String],
    pub attrs: &'a [(&'static str, Attr)],
    pub doc: &'a str,
}

pub fn node(n: &NodeMsg) -> Writer {
    let mut w = Writer::default();
    for i in n.inputs {
        w.string(1, i);
    }
    for o in n.outputs {
        w.string(2, o);
    }
    w.string(3, n.name);
    w.string(4, n.op_type);
    for (k, v) in n.attrs {
        w.message(5, &attribute(k, v));
    }
    w.string(6, n.doc);
    w
}

/// `GraphProto` field numbers.
pub mod graph {
    pub const NODE: u32 = 1;
    pub const NAME: u32 = 2;
    pub const INITIALIZER: u32 = 5;
    pub const DOC: u32 = 10;
    pub const INPUT: u32 = 11;
    pub const OUTPUT: u32 = 12;
    pub const VALUE_INFO: u32 = 13;
}

/// `ModelProto` around an encoded graph: IR version, producer, the default domain's opset.
pub fn model(graph: &Writer, ir_version: i64, opset: i64, doc: &str) -> Vec<u8> {
    let mut m = Writer::default();
    m.int(1, ir_version); // ir_version
    m.string(2, "netc"); // producer_name
    m.string(3, env!("CARGO_PKG_VERSION")); // producer_version
    m.string(6, doc); // doc_string
    let mut op = Writer::default();
    op.string(1, ""); // OperatorSetIdProto.domain: the default (ai.onnx)
    op.int(2, opset); // version
    m.message(8, &op); // opset_import
    m.0.reserve(graph.0.len() + 16);
    m.message(7, graph); // graph
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_follow_the_wire_format() {
        let mut w = Writer::default();
        w.int(1, 300); // key 0x08, 300 = 0xAC 0x02
        assert_eq!(w.0, [0x08, 0xAC, 0x02]);
        let mut w = Writer::default();
        w.int(2, -1); // ten bytes of two's complement
        assert_eq!(w.0.len(), 11);
        let mut w = Writer::default();
        w.string(4, "Relu");
        assert_eq!(w.0, [0x22, 4, b'R', b'e', b'l', b'u']);
    }
}
