//! Caffe's data layers and phases (a train_val prototxt): which data layer feeds training and
//! which testing (`include { phase: TRAIN }`), their batch sizes and sources, and the
//! `transform_param` (scale, mirror, crop_size, mean_value, mean_file) that the training
//! section's image settings take over. Layers of the TEST phase only (Accuracy) are left out:
//! netc evaluates the test split every epoch.

use super::layers::{num, setting};
use super::text::{Field, Fields, Value};

/// The data layer types: none becomes an op; the TRAIN one is the network's input.
pub const DATA: &[&str] = &["Data", "ImageData", "HDF5Data", "MemoryData", "WindowData"];

/// A layer's `include { phase: .. }` (TRAIN or TEST), None when it runs in both.
pub fn phase(l: &[Field]) -> Option<String> {
    l.msg("include")
        .and_then(|i| i.text("phase"))
        .map(str::to_string)
}

/// `transform_param`: how Caffe prepares an image (0..255 pixels): crop, mirror, then
/// (x - mean) * scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transform {
    pub scale: Option<f64>,
    pub mirror: bool,
    pub crop: Option<u64>,
    pub mean_values: Vec<f64>,
    pub mean_file: Option<String>,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct DataLayer {
    pub name: String,
    pub ty: String,
    pub line: usize,
    pub phase: Option<String>,
    pub batch: Option<u64>,
    pub batch_line: usize,
    pub source: Option<String>,
    pub source_line: usize,
    pub transform: Transform,
}

/// The data layer `l` (named `name`, at `line`).
pub fn data_layer(l: &[Field], name: &str, line: usize) -> DataLayer {
    let ty = l.text("type").unwrap_or("Data").to_string();
    // Each data layer type has its own `*_param` with batch_size and source.
    let param = [
        "data_param",
        "image_data_param",
        "hdf5_data_param",
        "memory_data_param",
        "window_data_param",
    ]
    .iter()
    .find_map(|k| l.field(k));
    let p = param.and_then(|f| match &f.value {
        Value::Msg(m) => Some(m.as_slice()),
        Value::Scalar(_) => None,
    });
    let batch = p
        .and_then(|p| p.field("batch_size"))
        .and_then(num)
        .map(|b| b as u64);
    let batch_line = p
        .and_then(|p| p.field("batch_size"))
        .map_or(line, |f| f.line);
    let source = p.and_then(|p| p.text("source")).map(str::to_string);
    let source_line = p.and_then(|p| p.field("source")).map_or(line, |f| f.line);
    let t = l.msg("transform_param");
    let transform = Transform {
        scale: t.and_then(|t| t.field("scale")).and_then(num),
        mirror: t.and_then(|t| t.text("mirror")) == Some("true"),
        crop: t
            .and_then(|t| t.field("crop_size"))
            .and_then(num)
            .map(|c| c as u64),
        mean_values: t.map_or(vec![], |t| t.all("mean_value").filter_map(num).collect()),
        mean_file: t.and_then(|t| t.text("mean_file")).map(str::to_string),
        line: l.field("transform_param").map_or(line, |f| f.line),
    };
    DataLayer {
        name: name.to_string(),
        ty,
        line,
        phase: phase(l),
        batch,
        batch_line,
        source,
        source_line,
        transform,
    }
}

/// What of a SoftmaxWithLoss netc's classifier does not do (its loss is the batch mean of
/// softmax cross-entropy, Caffe's default VALID normalisation without an ignored label).
pub fn loss_settings(l: &[Field], name: &str, line: usize) -> Vec<(usize, String)> {
    let mut out = vec![];
    let lp = l.msg("loss_param");
    if let Some(f) = lp.and_then(|p| p.field("ignore_label")) {
        out.push((
            f.line,
            format!("layer `{name}`: ignore_label has no netc form (every label counts)"),
        ));
    }
    if let Some(f) = lp.and_then(|p| p.field("normalization")) {
        if !matches!(&f.value, Value::Scalar(n) if n == "VALID" || n == "BATCH_SIZE") {
            out.push((f.line, format!("layer `{name}`: netc's loss is the batch mean (VALID/BATCH_SIZE normalisation)")));
        }
    }
    if setting(Some(l), "loss_weight", 1.0) != 1.0 {
        out.push((
            line,
            format!("layer `{name}`: a loss_weight other than 1 has no netc form"),
        ));
    }
    out
}
