//! `--weights x.caffemodel`: Caffe's trained weights (a binary `NetParameter`: each layer's
//! name and blobs, a blob's shape and float data) converted into a safetensors checkpoint
//! named as the imported `.net` names its parameters (`conv1.weight`, `conv1.bias`). Caffe's
//! layouts are PyTorch's (out x in x kh x kw; an InnerProduct's out x in over the C x H x W
//! flattening), so the data is copied as it is; shapes are checked against the network's.

use super::layers::{Convert, LayerParams};
use super::wire::{self, Wire, WireError};

/// A checkpoint tensor: name, shape, data (as `Checkpoint::tensors` holds them).
pub type Tensor = (String, Vec<usize>, Vec<f32>);

/// One layer of a .caffemodel with blobs: its name and (shape, data) per blob.
#[derive(Debug, Clone, PartialEq)]
pub struct CaffeLayer {
    pub name: String,
    pub blobs: Vec<(Vec<u64>, Vec<f32>)>,
}

/// The layers with blobs of a binary NetParameter (new `layer` = 100 and legacy V1 `layers` = 2).
pub fn decode(bytes: &[u8]) -> Result<Vec<CaffeLayer>, WireError> {
    let mut out = vec![];
    for (num, v) in wire::fields(bytes)? {
        // LayerParameter: name 1, blobs 7; V1LayerParameter: name 4, blobs 6.
        let (name_f, blobs_f) = match num {
            100 => (1, 7),
            2 => (4, 6),
            _ => continue,
        };
        let Wire::Bytes(b) = v else {
            return Err(WireError(format!("layer field {num} is not a message")));
        };
        let mut layer = CaffeLayer {
            name: String::new(),
            blobs: vec![],
        };
        for (n, v) in wire::fields(b)? {
            if n == name_f {
                layer.name = wire::string(v)?;
            } else if n == blobs_f {
                let Wire::Bytes(b) = v else {
                    return Err(WireError("a blob is not a message".into()));
                };
                layer.blobs.push(blob(b)?);
            }
        }
        if !layer.blobs.is_empty() {
            out.push(layer);
        }
    }
    Ok(out)
}

/// A BlobProto: shape (7, dims packed in 1) or the legacy num/channels/height/width (1-4),
/// data (5) or double_data (8).
fn blob(b: &[u8]) -> Result<(Vec<u64>, Vec<f32>), WireError> {
    let mut shape = vec![];
    let mut legacy = [0u64; 4];
    let mut data = vec![];
    for (n, v) in wire::fields(b)? {
        match (n, v) {
            (7, Wire::Bytes(s)) => {
                for (k, d) in wire::fields(s)? {
                    if k == 1 {
                        wire::ints(d, &mut shape)?;
                    }
                }
            }
            (1..=4, Wire::Varint(x)) => legacy[n as usize - 1] = x,
            (5, v) => wire::floats(v, &mut data)?,
            (8, v) => wire::doubles(v, &mut data)?,
            _ => {}
        }
    }
    if shape.is_empty() && legacy.iter().any(|&d| d > 0) {
        shape = legacy.to_vec();
    }
    let count: u64 = shape.iter().product();
    if count != data.len() as u64 {
        return Err(WireError(format!(
            "a blob of shape {shape:?} holds {} values",
            data.len()
        )));
    }
    Ok((shape, data))
}

/// The checkpoint's tensors `(name, shape, data)` for the network's layers `params` from the
/// .caffemodel's `layers`; every mismatch (a layer missing, a shape differing, blobs netc has
/// no tensor for) is reported at once.
pub fn tensors(layers: &[CaffeLayer], params: &[LayerParams]) -> Result<Vec<Tensor>, Vec<String>> {
    let mut out = vec![];
    let mut problems = vec![];
    for p in params {
        let Some(l) = layers.iter().find(|l| l.name == p.caffe) else {
            problems.push(format!("layer `{}`: not in the .caffemodel", p.caffe));
            continue;
        };
        if l.blobs.len() != p.tensors.len() {
            problems.push(format!(
                "layer `{}`: the .caffemodel has {} blobs, the network {} tensors",
                p.caffe,
                l.blobs.len(),
                p.tensors.len()
            ));
            continue;
        }
        let mut blobs = vec![];
        for ((suffix, shape), (cshape, data)) in p.tensors.iter().zip(&l.blobs) {
            // Older files write an InnerProduct's weight as 1 x 1 x out x in (and a
            // BatchNorm's statistics as 1 x C x 1 x 1): ones aside, the shapes must agree.
            let strip = |s: &[u64]| -> Vec<u64> { s.iter().copied().filter(|&d| d != 1).collect() };
            if strip(shape) != strip(cshape) {
                problems.push(format!("layer `{}` {suffix}: the .caffemodel's shape {cshape:?}, the network's {shape:?}", p.caffe));
                continue;
            }
            blobs.push((*suffix, shape, data.clone()));
        }
        if blobs.len() != p.tensors.len() {
            continue;
        }
        if p.convert == Convert::Statistics {
            statistics(&mut blobs);
        }
        for (suffix, shape, data) in blobs {
            out.push((format!("{}.{suffix}", p.stmt), dims(shape), data));
        }
    }
    // Tensors no blob gives (a lone BatchNorm's gamma and beta), once every layer is read.
    for p in params {
        for (suffix, shape, v) in &p.fixed {
            let n: u64 = shape.iter().product();
            out.push((
                format!("{}.{suffix}", p.stmt),
                dims(shape),
                vec![*v; n as usize],
            ));
        }
    }
    let known: Vec<&str> = params.iter().map(|p| p.caffe.as_str()).collect();
    for l in layers.iter().filter(|l| !known.contains(&l.name.as_str())) {
        problems.push(format!(
            "layer `{}`: the .caffemodel has {} blobs for it, the imported network no parameters",
            l.name,
            l.blobs.len()
        ));
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems),
    }
}

fn dims(shape: &[u64]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

/// A BatchNorm's blobs (mean, variance, scale factor) as its running statistics: Caffe keeps
/// sums weighted by moving_average_fraction and their total weight (the factor), and divides
/// by it (multiplies by 0 where it is 0: a layer that never trained); the factor itself is
/// no tensor of netc's.
fn statistics(blobs: &mut Vec<(&'static str, &Vec<u64>, Vec<f32>)>) {
    let factor = blobs
        .pop()
        .and_then(|b| b.2.first().copied())
        .unwrap_or(1.0);
    let by = if factor == 0.0 { 0.0 } else { 1.0 / factor };
    for b in blobs.iter_mut() {
        b.2.iter_mut().for_each(|v| *v *= by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 128 && num < 16);
        let mut v = vec![num << 3 | 2, payload.len() as u8];
        v.extend(payload);
        v
    }

    #[test]
    fn legacy_v1_layers_and_double_data_decode() {
        // V1LayerParameter (NetParameter field 2): name 4, blobs 6; a BlobProto with the
        // legacy num/channels/height/width (1 x 1 x 1 x 2) and double_data (8), one at a time.
        let mut blob = vec![0x08, 1, 0x10, 1, 0x18, 1, 0x20, 2];
        for x in [0.5f64, -1.25] {
            blob.push(8 << 3 | 1);
            blob.extend(x.to_le_bytes());
        }
        let mut layer = ld(4, b"fc");
        layer.extend(ld(6, &blob));
        let net = ld(2, &layer);
        let layers = decode(&net).expect("decodes");
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].name, "fc");
        assert_eq!(layers[0].blobs, vec![(vec![1, 1, 1, 2], vec![0.5, -1.25])]);
        // A blob whose data does not fill its shape is an error, not a short tensor.
        let mut short = ld(4, b"fc");
        short.extend(ld(6, &blob[..blob.len() - 9]));
        assert!(decode(&ld(2, &short)).is_err());
    }

    #[test]
    fn batchnorm_statistics_are_divided_by_the_scale_factor() {
        use crate::import::caffe::layers::{Convert, LayerParams};
        let bn = |factor: f32| CaffeLayer {
            name: "bn".into(),
            blobs: vec![
                (vec![2], vec![1.0, -2.0]),
                (vec![1, 2, 1, 1], vec![4.0, 8.0]),
                (vec![1], vec![factor]),
            ],
        };
        let params = [LayerParams {
            caffe: "bn".into(),
            stmt: "c.batchnorm".into(),
            tensors: vec![
                ("running_mean", vec![2]),
                ("running_var", vec![2]),
                ("scale_factor", vec![1]),
            ],
            mults: vec![(0.0, 0.0); 3],
            lines: vec![1; 3],
            convert: Convert::Statistics,
            fixed: vec![("weight", vec![2], 1.0)],
        }];
        let t = tensors(&[bn(4.0)], &params).expect("converts");
        assert_eq!(
            t,
            vec![
                ("c.batchnorm.running_mean".into(), vec![2], vec![0.25, -0.5]),
                ("c.batchnorm.running_var".into(), vec![2], vec![1.0, 2.0]),
                ("c.batchnorm.weight".into(), vec![2], vec![1.0, 1.0]),
            ]
        );
        // A factor of 0 (a layer that never ran a batch): Caffe multiplies by 0.
        let t = tensors(&[bn(0.0)], &params).expect("converts");
        assert_eq!(t[1].2, vec![0.0, 0.0]);
    }
}
