//! Bringing other frameworks' models in (Caffe's prototxt).

pub mod caffe;
