//! The op set. Each op (or small family) has one module here holding its arguments, its
//! output-shape rule and its figures (parameters, connections, neurons, MACs), and, for the
//! GPU path, its WGSL kernels (templates in shaders/) and its forward and gradient lowering;
//! the CPU reference of an op sits in the runtime's `cpu` module under the same name. This
//! module holds what is shared: the `Op` enum and exhaustive dispatch to the ops (as `schedule`
//! and the reference dispatch to them, with no wildcard arm). Each op's definition as model
//! files write it (name, aliases, arguments, example, parsing) sits in its module too, and
//! `registry` lists them all; `args` checks a call's arguments against a definition.

pub mod activation;
pub mod add;
mod args;
pub mod batchnorm;
pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod dense;
pub mod dropout;
pub mod init;
pub mod lrn;
pub mod pool;
pub mod prim;
pub mod registry;
pub mod reshape;
pub mod softmax;
pub mod window;

pub use args::{parse_op, OpSpec};
pub(crate) use args::{ArgDef, Parsed, Ty, B, HB, W};
pub use init::Init;
pub use registry::{canonical_op, is_op, takes_named_inputs};

use crate::ast::shape_str;
use crate::ir::{ParamSpec, Stats};
use crate::shape::Padding;

/// Every op the IR knows. Kernels are square; images are CxHxW (batch excluded).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Input {
        shape: Vec<u64>,
    },
    Dense {
        units: u64,
        bias: bool,
    },
    Conv {
        filters: u64,
        k: u64,
        stride: u64,
        pad: Padding,
        groups: u64,
        dilation: u64,
        bias: bool,
    },
    ConvTranspose {
        filters: u64,
        k: u64,
        stride: u64,
        pad: Padding,
        output_padding: u64,
        groups: u64,
        dilation: u64,
        bias: bool,
    },
    MaxPool {
        k: u64,
        stride: u64,
        pad: Padding,
        /// Round the output size up (Caffe, PyTorch's ceil_mode=True).
        ceil: bool,
    },
    AvgPool {
        k: u64,
        stride: u64,
        pad: Padding,
        /// Round the output size up (Caffe, PyTorch's ceil_mode=True).
        ceil: bool,
    },
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu {
        alpha: f64,
    },
    Softmax,
    Lrn {
        size: u64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    Dropout {
        p: f64,
    },
    Flatten,
    Reshape {
        shape: Vec<u64>,
    },
    Add,
    Concat {
        axis: u64,
    },
    BatchNorm {
        eps: f64,
        momentum: f64,
    },
    /// A tensor primitive (`ops::prim`); its gradient is derived.
    Prim(prim::PrimOp),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Dense { .. } => "dense",
            Op::Conv { .. } => "conv",
            Op::ConvTranspose { .. } => "conv_transpose",
            Op::MaxPool { .. } => "maxpool",
            Op::AvgPool { .. } => "avgpool",
            Op::Relu => "relu",
            Op::Sigmoid => "sigmoid",
            Op::Tanh => "tanh",
            Op::LeakyRelu { .. } => "leaky_relu",
            Op::Softmax => "softmax",
            Op::Lrn { .. } => "lrn",
            Op::Dropout { .. } => "dropout",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Add => "add",
            Op::Concat { .. } => "concat",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Prim(p) => p.name(),
        }
    }

    /// The op with its settings, as the IR printout shows it.
    pub fn describe(&self) -> String {
        match self {
            Op::Input { shape } => format!("input[{}]", shape_str(shape)),
            Op::Dense { units, bias } => dense::describe(*units, *bias),
            Op::Conv {
                filters,
                k,
                stride,
                pad,
                groups,
                dilation,
                bias,
            } => conv::describe(*filters, *k, *stride, *pad, *groups, *dilation, *bias),
            Op::ConvTranspose { .. } => conv_transpose::describe(self),
            Op::MaxPool {
                k,
                stride,
                pad,
                ceil,
            }
            | Op::AvgPool {
                k,
                stride,
                pad,
                ceil,
            } => pool::describe(self.name(), *k, *stride, *pad, *ceil),
            Op::LeakyRelu { alpha } => activation::describe_leaky(*alpha),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => lrn::describe(*size, *alpha, *beta, *k),
            Op::Dropout { p } => dropout::describe(*p),
            Op::Reshape { shape } => reshape::describe(shape),
            Op::Concat { axis } => concat::describe(*axis),
            Op::BatchNorm { eps, momentum } => batchnorm::describe(*eps, *momentum),
            Op::Prim(p) => p.describe(),
            Op::Relu | Op::Sigmoid | Op::Tanh | Op::Softmax | Op::Flatten | Op::Add => {
                self.name().to_string()
            }
        }
    }

    /// Whether the op has a weight tensor (dense, conv, conv_transpose).
    pub fn is_weighted(&self) -> bool {
        match self {
            Op::Dense { .. } | Op::Conv { .. } | Op::ConvTranspose { .. } => true,
            Op::Input { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
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
            | Op::Prim(_) => false,
        }
    }

    /// Whether the op owns parameter tensors (weights or batch statistics).
    pub fn has_params(&self) -> bool {
        match self {
            Op::Dense { .. }
            | Op::Conv { .. }
            | Op::ConvTranspose { .. }
            | Op::BatchNorm { .. }
            | Op::Prim(prim::PrimOp::Param { .. }) => true,
            Op::Input { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
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
            | Op::Prim(_) => false,
        }
    }

    /// Whether the op reads one input and owns no parameters, so that its backward pass computes
    /// only that input's gradient (and is skipped when the input needs none).
    pub fn single_input(&self) -> bool {
        match self {
            Op::Relu
            | Op::Sigmoid
            | Op::Tanh
            | Op::LeakyRelu { .. }
            | Op::Softmax
            | Op::Flatten
            | Op::Reshape { .. }
            | Op::Dropout { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
            | Op::Lrn { .. } => true,
            // BatchNorm reads one input too, but its backward pass also computes its own
            // parameters' gradients.
            Op::Input { .. }
            | Op::Dense { .. }
            | Op::Conv { .. }
            | Op::ConvTranspose { .. }
            | Op::Add
            | Op::Concat { .. }
            | Op::BatchNorm { .. }
            | Op::Prim(_) => false,
        }
    }

    /// Default initialisers: Glorot-uniform weights and zero biases (Keras's defaults); a
    /// batchnorm's scale starts at one. Ops without parameters never draw from theirs.
    pub fn default_inits(&self) -> (Init, Init) {
        match self {
            Op::BatchNorm { .. } => (Init::Constant(1.0), Init::Constant(0.0)),
            Op::Dense { .. } | Op::Conv { .. } | Op::ConvTranspose { .. } => {
                (Init::XavierUniform, Init::Constant(0.0))
            }
            Op::Input { .. }
            | Op::MaxPool { .. }
            | Op::AvgPool { .. }
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
            | Op::Concat { .. } => (Init::XavierUniform, Init::Constant(0.0)),
            // A learned tensor starts as ViT's and GPT-2's do: normal(0, 0.02).
            Op::Prim(_) => (
                Init::Gaussian {
                    mean: 0.0,
                    std: 0.02,
                },
                Init::Constant(0.0),
            ),
        }
    }
}

/// What went wrong inferring a node's shape; the caller attaches spans and names.
pub struct ShapeError {
    pub message: String,
    pub help: Option<String>,
}

fn overflow() -> ShapeError {
    ShapeError {
        message: "count overflows 64 bits".into(),
        help: None,
    }
}

pub(crate) fn mul(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_mul(b).ok_or_else(overflow)
}

pub(crate) fn add(a: u64, b: u64) -> Result<u64, ShapeError> {
    a.checked_add(b).ok_or_else(overflow)
}

pub(crate) fn prod(d: &[u64]) -> Result<u64, ShapeError> {
    d.iter().try_fold(1u64, |a, &b| mul(a, b))
}

pub(crate) fn need_image(what: &str, input: &[u64]) -> Result<(u64, u64, u64), ShapeError> {
    match input {
        [c, h, w] => Ok((*c, *h, *w)),
        _ => Err(ShapeError {
            message: format!(
                "`{what}` needs a CxHxW image, but its input is {}",
                shape_str(input)
            ),
            help: Some(if input.len() == 1 {
                "a flat vector has no spatial layout; reshape it first, e.g. `reshape(1x28x28)`"
                    .into()
            } else {
                "images are written channels first, e.g. 3x227x227".into()
            }),
        }),
    }
}

/// What an op's shape rule fills in besides the shape: its figures and parameter tensors,
/// named `{layer}.{suffix}`.
pub(crate) struct InferCx<'a> {
    name: &'a str,
    w_init: Init,
    b_init: Init,
    stats: Stats,
    params: Vec<ParamSpec>,
}

impl InferCx<'_> {
    fn push(
        &mut self,
        suffix: &str,
        shape: Vec<u64>,
        init: Init,
        trainable: bool,
        fan: (u64, u64),
    ) {
        self.params.push(ParamSpec {
            name: format!("{}.{suffix}", self.name),
            shape,
            init,
            trainable,
            fan_in: fan.0,
            fan_out: fan.1,
        });
    }
    /// A trainable tensor drawn from the layer's weight initialiser.
    fn weight(&mut self, suffix: &str, shape: Vec<u64>, fan_in: u64, fan_out: u64) {
        let init = self.w_init.clone();
        self.push(suffix, shape, init, true, (fan_in, fan_out));
    }
    /// A trainable tensor drawn from the layer's bias initialiser.
    fn bias(&mut self, suffix: &str, shape: Vec<u64>, fan_in: u64, fan_out: u64) {
        let init = self.b_init.clone();
        self.push(suffix, shape, init, true, (fan_in, fan_out));
    }
    /// A non-trainable state tensor (running statistics).
    fn state(&mut self, suffix: &str, shape: Vec<u64>, init: Init, fan: u64) {
        self.push(suffix, shape, init, false, (fan, fan));
    }
}

/// What shape inference finds for a node: its shape (per example when batched), whether it
/// has the batch axis, its figures and its parameter tensors.
pub struct Inferred {
    pub shape: Vec<u64>,
    pub batched: bool,
    pub stats: Stats,
    pub params: Vec<ParamSpec>,
}

/// Output shape, figures and parameter tensors of a node with the given input shapes (and
/// whether each has the batch axis: only primitives take tensors without one).
pub fn infer(
    name: &str,
    op: &Op,
    inputs: &[(Vec<u64>, bool)],
    weight_init: &Option<Init>,
    bias_init: &Option<Init>,
) -> Result<Inferred, ShapeError> {
    let (dw, db) = op.default_inits();
    let mut cx = InferCx {
        name,
        w_init: weight_init.clone().unwrap_or(dw),
        b_init: bias_init.clone().unwrap_or(db),
        stats: Stats::default(),
        params: vec![],
    };
    let (shape, batched) = match as_primitive(op, inputs) {
        Some(p) => prim::infer(&mut cx, &p, inputs)?,
        None => (layer_shape(&mut cx, op, inputs)?, true),
    };
    if !matches!(op, Op::BatchNorm { .. }) {
        cx.stats.trainable = cx.stats.params;
    }
    if shape.contains(&0) {
        return Err(ShapeError {
            message: format!("output shape {} has a zero dimension", shape_str(&shape)),
            help: None,
        });
    }
    cx.stats.activation_bytes = mul(prod(&shape)?, 4)?;
    Ok(Inferred {
        shape,
        batched,
        stats: cx.stats,
        params: cx.params,
    })
}

/// The primitive a node runs as: a primitive's own, an `add` that broadcasts, a `concat` that
/// repeats a parameter over the batch; None for a layer.
pub fn as_primitive(op: &Op, inputs: &[(Vec<u64>, bool)]) -> Option<prim::PrimOp> {
    if let Op::Prim(p) = op {
        Some(p.clone())
    } else if matches!(op, Op::Add) && !add::is_layer(inputs) {
        Some(add::BROADCAST)
    } else if let (Op::Concat { axis }, true) = (op, inputs.iter().any(|i| !i.1)) {
        Some(concat::repeated(*axis))
    } else {
        None
    }
}

/// The shape rule of a layer (every input batched).
fn layer_shape(
    cx: &mut InferCx,
    op: &Op,
    inputs: &[(Vec<u64>, bool)],
) -> Result<Vec<u64>, ShapeError> {
    if inputs.iter().any(|(_, b)| !b) {
        return Err(ShapeError {
            message: format!("`{}` needs a batched tensor, not a parameter", op.name()),
            help: Some("combine the parameter with a batched tensor first (e.g. `add`)".into()),
        });
    }
    let one = inputs.first().map(|i| i.0.clone()).unwrap_or_default();
    let shapes: Vec<Vec<u64>> = inputs.iter().map(|i| i.0.clone()).collect();
    let inputs = &shapes[..];
    Ok(match op {
        Op::Input { shape } => shape.clone(),
        Op::Dense { units, bias } => dense::infer(cx, &one, *units, *bias)?,
        Op::Conv { .. } => conv::infer(cx, op, &one)?,
        Op::ConvTranspose { .. } => conv_transpose::infer(cx, op, &one)?,
        Op::MaxPool { .. } | Op::AvgPool { .. } => pool::infer(op, &one)?,
        Op::Relu
        | Op::Sigmoid
        | Op::Tanh
        | Op::LeakyRelu { .. }
        | Op::Dropout { .. }
        | Op::Softmax => one,
        Op::Lrn { .. } => lrn::infer(&one)?,
        Op::Flatten => reshape::infer_flatten(&one)?,
        Op::Reshape { shape } => reshape::infer(&one, shape)?,
        Op::Add => add::infer(inputs)?,
        Op::Concat { axis } => concat::infer(inputs, *axis)?,
        Op::BatchNorm { .. } => batchnorm::infer(cx, &one)?,
        Op::Prim(_) => unreachable!("primitives infer through ops::prim"),
    })
}
