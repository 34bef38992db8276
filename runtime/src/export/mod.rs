//! Writing trained networks in other frameworks' formats (ONNX).

pub mod onnx;
