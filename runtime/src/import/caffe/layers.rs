//! Each Caffe layer type as a netc op, with the output shape Caffe computes (to check pooling's
//! rounding and to find the fan-in Caffe's `xavier` filler scales by).

use super::text::{Field, Fields, Value};
use netc_compiler::shape::{out_size, out_size_ceil, Padding};
use std::collections::HashMap;

/// A blob: the statement holding it and its shape (CxHxW or a vector).
#[derive(Debug, Clone)]
pub struct Blob {
    pub stmt: String,
    pub shape: Vec<u64>,
    /// Written by a layer that could not be imported: its readers report nothing more.
    pub poisoned: bool,
}

/// What a layer becomes.
pub enum Emit {
    /// An input of the network, of this shape (batch dropped).
    Input(Vec<u64>),
    Op {
        op: String,
        shape: Vec<u64>,
        params: Option<LayerParams>,
    },
    /// Nothing in the network (a loss or accuracy layer, which the training section holds).
    Skip,
}

type Problems = Vec<(usize, String)>;

/// The parameter tensors of a Caffe layer with weights, in Caffe's blob order (weight, then
/// bias): their netc names and shapes (Caffe's and netc's agree: PyTorch's layouts), and the
/// `lr_mult` / `decay_mult` of each (Caffe's `param { }`, 1 where not given).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerParams {
    /// The Caffe layer's name (a .caffemodel names its blobs by it).
    pub caffe: String,
    /// The statement holding the op (set where the op is placed).
    pub stmt: String,
    /// (suffix, shape): `weight`, `bias`.
    pub tensors: Vec<(&'static str, Vec<u64>)>,
    pub mults: Vec<(f64, f64)>,
    /// Each multiplier's line (the layer's where a `param` is not given).
    pub lines: Vec<usize>,
    /// How the layer's blobs become the tensors.
    pub convert: Convert,
    /// (suffix, shape, value): tensors no blob gives, written with a constant and kept there
    /// in training (lr and decay 0): a BatchNorm's gamma 1 and beta 0 where no Scale gives them.
    pub fixed: Vec<(&'static str, Vec<u64>, f32)>,
}

/// How a layer's .caffemodel blobs become checkpoint tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// One blob per tensor, copied (weight, bias).
    Copy,
    /// A BatchNorm's mean, variance and scale factor: the statistics divided by the factor.
    Statistics,
}

/// The tensors `tensors` of layer `l` (named `name`, at `line`), with their multipliers.
pub(super) fn layer_params(
    l: &[Field],
    name: &str,
    line: usize,
    tensors: Vec<(&'static str, Vec<u64>)>,
) -> LayerParams {
    let given: Vec<&Field> = l.all("param").collect();
    let mut mults = vec![];
    let mut lines = vec![];
    for i in 0..tensors.len() {
        let p = given.get(i).and_then(|f| match &f.value {
            Value::Msg(m) => Some(m.as_slice()),
            Value::Scalar(_) => None,
        });
        mults.push((setting(p, "lr_mult", 1.0), setting(p, "decay_mult", 1.0)));
        lines.push(given.get(i).map_or(line, |f| f.line));
    }
    LayerParams {
        caffe: name.to_string(),
        stmt: String::new(),
        tensors,
        mults,
        lines,
        convert: Convert::Copy,
        fixed: vec![],
    }
}

/// The layer types [`emit`] knows (data layers among them, to say they are not imported yet).
pub const KNOWN: &[&str] = &[
    "Input",
    "Data",
    "ImageData",
    "HDF5Data",
    "MemoryData",
    "SoftmaxWithLoss",
    "Accuracy",
    "EuclideanLoss",
    "SigmoidCrossEntropyLoss",
    "ReLU",
    "Sigmoid",
    "TanH",
    "Softmax",
    "Flatten",
    "Dropout",
    "LRN",
    "Concat",
    "Eltwise",
    "InnerProduct",
    "Convolution",
    "Deconvolution",
    "Pooling",
    "BatchNorm",
    "Scale",
];

/// `input: "data"` with `input_shape { dim: .. }` or four `input_dim:` (older deploy files).
pub fn legacy_inputs(
    top: &[Field],
    inputs: &mut Vec<(String, Vec<u64>)>,
    blobs: &mut HashMap<String, Blob>,
) {
    let names: Vec<&Field> = top.all("input").collect();
    let mut dims: Vec<u64> = top
        .all("input_dim")
        .filter_map(num)
        .map(|v| v as u64)
        .collect();
    for (i, f) in names.iter().enumerate() {
        let Value::Scalar(name) = &f.value else {
            continue;
        };
        let shape: Vec<u64> = match top.all("input_shape").nth(i) {
            Some(Field {
                value: Value::Msg(m),
                ..
            }) => m.all("dim").filter_map(num).map(|v| v as u64).collect(),
            _ => dims.drain(..4.min(dims.len())).collect(),
        };
        let shape = shape.get(1..).unwrap_or_default().to_vec();
        let n = super::ident(name);
        blobs.insert(
            name.clone(),
            Blob {
                stmt: n.clone(),
                shape: shape.clone(),
                poisoned: false,
            },
        );
        inputs.push((n, shape));
    }
}

pub(super) fn num(f: &Field) -> Option<f64> {
    match &f.value {
        Value::Scalar(s) => s.parse().ok(),
        Value::Msg(_) => None,
    }
}

/// A numeric setting of a `*_param` message, or its Caffe default.
pub(super) fn setting(p: Option<&[Field]>, name: &str, default: f64) -> f64 {
    p.and_then(|p| p.field(name))
        .and_then(num)
        .unwrap_or(default)
}

/// The netc op of layer `l` (named `name`, at `line`) reading blobs `ins`.
pub(super) fn emit(l: &[Field], name: &str, ins: &[Blob], line: usize) -> Result<Emit, Problems> {
    let ty = l.text("type").unwrap_or("");
    let bad = |m: String| Err(vec![(line, format!("layer `{name}` ({ty}): {m}"))]);
    let x = ins.first().map(|b| b.shape.clone()).unwrap_or_default();
    let op = |op: String, shape: Vec<u64>| {
        Ok(Emit::Op {
            op,
            shape,
            params: None,
        })
    };
    match ty {
        "Input" => {
            let dims: Vec<u64> = l
                .msg("input_param")
                .and_then(|p| p.msg("shape"))
                .map(|s| s.all("dim").filter_map(num).map(|v| v as u64).collect())
                .unwrap_or_default();
            match dims.get(1..) {
                Some(d) if !d.is_empty() => Ok(Emit::Input(d.to_vec())),
                _ => bad("input_param gives no shape { dim: N dim: C ... }".into()),
            }
        }
        "Data" | "ImageData" | "HDF5Data" | "MemoryData" => Ok(Emit::Skip),
        "SoftmaxWithLoss" | "Accuracy" | "EuclideanLoss" | "SigmoidCrossEntropyLoss" => {
            Ok(Emit::Skip)
        }
        "ReLU" => {
            let slope = setting(l.msg("relu_param"), "negative_slope", 0.0);
            match slope == 0.0 {
                true => op("relu".into(), x),
                false => op(format!("leaky_relu({slope})"), x),
            }
        }
        "Sigmoid" => op("sigmoid".into(), x),
        "TanH" => op("tanh".into(), x),
        "Softmax" => op("softmax".into(), x),
        "Flatten" => op("flatten".into(), vec![x.iter().product()]),
        "Dropout" => op(
            format!(
                "dropout({})",
                setting(l.msg("dropout_param"), "dropout_ratio", 0.5)
            ),
            x,
        ),
        "LRN" => {
            let p = l.msg("lrn_param");
            if p.and_then(|p| p.text("norm_region"))
                .is_some_and(|r| r != "ACROSS_CHANNELS")
            {
                return bad("WITHIN_CHANNEL normalisation has no netc op".into());
            }
            let size = setting(p, "local_size", 5.0);
            // Caffe divides alpha by local_size; netc's lrn takes the paper's alpha.
            let alpha = setting(p, "alpha", 1.0) / size;
            let (beta, k) = (setting(p, "beta", 0.75), setting(p, "k", 1.0));
            op(
                format!("lrn(size={size}, alpha={alpha:e}, beta={beta}, k={k})"),
                x,
            )
        }
        "Concat" => {
            let axis = l.msg("concat_param").map_or(1.0, |p| {
                setting(Some(p), "axis", setting(Some(p), "concat_dim", 1.0))
            });
            if axis != 1.0
                || ins
                    .iter()
                    .any(|b| b.shape.len() != x.len() || b.shape[1..] != x[1..])
            {
                return bad(
                    "only channel concatenation (axis 1) of equal-sized blobs is imported".into(),
                );
            }
            let mut shape = x.clone();
            shape[0] = ins.iter().map(|b| b.shape[0]).sum();
            let names: Vec<&str> = ins.iter().map(|b| b.stmt.as_str()).collect();
            op(format!("concat({}, axis=0)", names.join(", ")), shape)
        }
        "Eltwise" => {
            let p = l.msg("eltwise_param");
            if p.and_then(|p| p.text("operation"))
                .is_some_and(|o| o != "SUM")
                || p.is_some_and(|p| p.field("coeff").is_some())
            {
                return bad("only an unweighted SUM is imported (netc's add)".into());
            }
            let names: Vec<&str> = ins.iter().map(|b| b.stmt.as_str()).collect();
            op(format!("add({})", names.join(", ")), x)
        }
        "InnerProduct" => inner_product(l, name, &x, line),
        "Convolution" | "Deconvolution" => conv(l, (name, ty), &x, line),
        "Pooling" => pooling(l, name, &x, line).map(|(op, shape)| Emit::Op {
            op,
            shape,
            params: None,
        }),
        "BatchNorm" => super::batchnorm::emit(l, name, &x, line),
        // A Scale right after a BatchNorm is taken before `emit` (State::scale).
        "Scale" => bad("netc has no op for a Scale alone: one is imported only right after a BatchNorm, on its top, as the batchnorm's gamma (and beta with bias_term: true)".into()),
        _ => bad("no netc op for this layer type".into()),
    }
}

/// An InnerProduct: `dense`, after a `flatten` when it reads an image.
fn inner_product(l: &[Field], name: &str, x: &[u64], line: usize) -> Result<Emit, Problems> {
    let image = x.len() == 3;
    let p = l.msg("inner_product_param");
    let n = setting(p, "num_output", 0.0) as u64;
    let fan_in: u64 = x.iter().product();
    let init = fillers(p, fan_in, line, name)?;
    let bias = if setting(p, "bias_term", 1.0) == 0.0
        || p.and_then(|p| p.text("bias_term")) == Some("false")
    {
        ", bias=false"
    } else {
        ""
    };
    let flat = if image { "flatten -> " } else { "" };
    let mut tensors = vec![("weight", vec![n, fan_in])];
    if bias.is_empty() {
        tensors.push(("bias", vec![n]));
    }
    Ok(Emit::Op {
        op: format!("{flat}dense({n}{bias}{init})"),
        shape: vec![n],
        params: Some(layer_params(l, name, line, tensors)),
    })
}

/// A square kernel's size, stride and padding.
struct Window {
    k: u64,
    s: u64,
    pad: u64,
}

fn window(p: Option<&[Field]>, line: usize, name: &str) -> Result<Window, Problems> {
    let one = |n: &str, d: f64| -> f64 { setting(p, n, d) };
    let k = p
        .and_then(|p| p.field("kernel_size"))
        .and_then(num)
        .unwrap_or(0.0);
    let (kh, kw) = (one("kernel_h", k), one("kernel_w", k));
    let (sh, sw) = (
        one("stride_h", one("stride", 1.0)),
        one("stride_w", one("stride", 1.0)),
    );
    let (ph, pw) = (one("pad_h", one("pad", 0.0)), one("pad_w", one("pad", 0.0)));
    if kh != kw || sh != sw || ph != pw || kh < 1.0 {
        return Err(vec![(line, format!("layer `{name}`: netc's windows are square, with one stride and one padding (kernel {kh}x{kw}, stride {sh}x{sw}, pad {ph}x{pw})"))]);
    }
    Ok(Window {
        k: kh as u64,
        s: sh as u64,
        pad: ph as u64,
    })
}

/// Caffe's output size of a pooling (rounded up; with padding, the last window must start
/// inside the image or its left padding): whether netc needs `ceil=true` to give it, and the
/// size. netc's ceil rounding drops a last window that starts past the input without padding
/// too (as PyTorch); Caffe keeps it, and that size is refused.
fn rounding(
    g: &Window,
    (h, w): (u64, u64),
    name: &str,
    line: usize,
) -> Result<(bool, u64, u64), Problems> {
    let caffe = |f: u64| {
        let mut o = (f + 2 * g.pad).saturating_sub(g.k).div_ceil(g.s) + 1;
        if g.pad > 0 && (o - 1) * g.s >= f + g.pad {
            o -= 1;
        }
        o
    };
    let pad = match g.pad {
        0 => Padding::Valid,
        p => Padding::Explicit(p),
    };
    let floor = |f: u64| out_size(f, g.k, g.s, pad).ok();
    let ceil = |f: u64| out_size_ceil(f, g.k, g.s, pad).ok();
    let (ch, cw) = (caffe(h), caffe(w));
    if floor(h) == Some(ch) && floor(w) == Some(cw) {
        Ok((false, ch, cw))
    } else if ceil(h) == Some(ch) && ceil(w) == Some(cw) {
        Ok((true, ch, cw))
    } else {
        Err(vec![(line, format!("layer `{name}`: Caffe sizes this pooling's output {ch}x{cw}, which neither of netc's roundings gives (its last window starts past the input; pad the input or change the stride)"))])
    }
}

/// A Pooling layer as maxpool or avgpool, with `ceil=true` where Caffe's rounding needs it.
fn pooling(
    l: &[Field],
    name: &str,
    x: &[u64],
    line: usize,
) -> Result<(String, Vec<u64>), Problems> {
    let p = l.msg("pooling_param");
    let [c, h, w] = x[..] else {
        return Err(vec![(
            line,
            format!("layer `{name}` (Pooling) needs an image input"),
        )]);
    };
    let global = p.and_then(|p| p.text("global_pooling")) == Some("true");
    if global && h != w {
        return Err(vec![(line, format!("layer `{name}`: global pooling over a {h}x{w} input is not square; netc's pooling windows are"))]);
    }
    let g = match global {
        true => Window { k: h, s: 1, pad: 0 },
        false => window(p, line, name)?,
    };
    let (ceil, ch, cw) = rounding(&g, (h, w), name, line)?;
    let kind = match p.and_then(|p| p.text("pool")).unwrap_or("MAX") {
        "MAX" => "maxpool",
        "AVE" => "avgpool",
        other => {
            return Err(vec![(
                line,
                format!("layer `{name}`: {other} pooling has no netc op"),
            )])
        }
    };
    let pad = if g.pad > 0 {
        format!(", pad={}", g.pad)
    } else {
        String::new()
    };
    let ceil = if ceil { ", ceil=true" } else { "" };
    Ok((
        format!("{kind}(k={}, s={}{pad}{ceil})", g.k, g.s),
        vec![c, ch, cw],
    ))
}

/// `, init=..., bias_init=...` of a layer's `weight_filler` and `bias_filler` (Caffe's default
/// filler is constant 0).
fn fillers(p: Option<&[Field]>, fan_in: u64, line: usize, name: &str) -> Result<String, Problems> {
    let one = |key: &str| -> Result<String, Problems> {
        let f = p.and_then(|p| p.msg(key));
        let v = |n: &str, d: f64| setting(f, n, d);
        Ok(match f.and_then(|f| f.text("type")).unwrap_or("constant") {
            "constant" => format!("constant({})", v("value", 0.0)),
            "gaussian" => match v("mean", 0.0) {
                m if m != 0.0 => format!("gaussian({}, {m})", v("std", 1.0)),
                _ => format!("gaussian({})", v("std", 1.0)),
            },
            "uniform" => format!("uniform({}, {})", v("min", 0.0), v("max", 1.0)),
            "xavier" if f.and_then(|f| f.text("variance_norm")).is_none_or(|n| n == "FAN_IN") => {
                // Caffe's xavier: uniform(+-sqrt(3 / fan_in)), not Glorot's.
                let a = (3.0 / fan_in.max(1) as f64).sqrt();
                format!("uniform({}, {a})", -a)
            }
            "msra" if f.and_then(|f| f.text("variance_norm")).is_none_or(|n| n == "FAN_IN") => "he".into(),
            other => return Err(vec![(line, format!("layer `{name}`: the {other} filler (with its variance_norm) has no netc initialiser"))]),
        })
    };
    Ok(format!(
        ", init={}, bias_init={}",
        one("weight_filler")?,
        one("bias_filler")?
    ))
}

/// A convolution or a deconvolution (conv_transpose), square, with Caffe's output size.
fn conv(l: &[Field], (name, ty): (&str, &str), x: &[u64], line: usize) -> Result<Emit, Problems> {
    let [c, h, w] = x[..] else {
        return Err(vec![(
            line,
            format!("layer `{name}` ({ty}) needs an image (CxHxW) input, not {x:?}"),
        )]);
    };
    let p = l.msg("convolution_param");
    let g = window(p, line, name)?;
    let groups = setting(p, "group", 1.0) as u64;
    let n = setting(p, "num_output", 0.0) as u64;
    let dil = setting(p, "dilation", 1.0) as u64;
    let ke = dil * (g.k - 1) + 1;
    let deconv = ty == "Deconvolution";
    let fan_in = if deconv {
        n / groups.max(1)
    } else {
        c / groups.max(1)
    } * g.k
        * g.k;
    let init = fillers(p, fan_in, line, name)?;
    let bias = if p.and_then(|p| p.text("bias_term")) == Some("false") {
        ", bias=false"
    } else {
        ""
    };
    let name_op = if deconv { "conv_transpose" } else { "conv" };
    let size = |f: u64| match deconv {
        true => ((f.max(1) - 1) * g.s + ke).saturating_sub(2 * g.pad),
        false => (f + 2 * g.pad).saturating_sub(ke) / g.s + 1,
    };
    let (oh, ow) = (size(h), size(w));
    let extra = [
        (groups > 1).then(|| format!(", groups={groups}")),
        (dil > 1).then(|| format!(", dilation={dil}")),
    ]
    .into_iter()
    .flatten()
    .collect::<String>();
    let s = if g.s > 1 {
        format!(", s={}", g.s)
    } else {
        String::new()
    };
    let pad = if g.pad > 0 {
        format!(", pad={}", g.pad)
    } else {
        String::new()
    };
    // Caffe's (and PyTorch's) layouts: out x in/groups x k x k; a deconvolution's in x out/groups.
    let per = groups.max(1);
    let w = match deconv {
        true => vec![c, n / per, g.k, g.k],
        false => vec![n, c / per, g.k, g.k],
    };
    let mut tensors = vec![("weight", w)];
    if bias.is_empty() {
        tensors.push(("bias", vec![n]));
    }
    Ok(Emit::Op {
        op: format!("{name_op}({n}, k={}{s}{pad}{extra}{bias}{init})", g.k),
        shape: vec![n, oh, ow],
        params: Some(layer_params(l, name, line, tensors)),
    })
}
