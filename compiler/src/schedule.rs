//! Autodiff and lowering: forward pass, loss, backward pass and optimizer update of IR networks
//! become a static [`Program`]: ordered kernel dispatches over a planned set of buffers.
//!
//! This module walks the graph and plans buffers; every op's forward and gradient dispatches
//! (and their WGSL) live in its module under `ops`, reached by exhaustive matches over `Op` in
//! [`Builder::forward`] and [`Builder::backward`]. Gradients flow in reverse topological order; a tensor fed to several consumers gets the first gradient written and the
//! rest accumulated. Frozen parameters get no gradient buffer and no update, but gradients still
//! flow through them to earlier layers (a GAN's generator step through the discriminator).
//! Transient buffers are reused once their last reader in a pass has run.

use crate::ir::Network;
use crate::kernels::{self, Act, Gemm, KernelSource, ReadPath, Store};
use crate::ops::conv::ConvGeometry;
use crate::ops::conv_transpose::TransposeGeometry;
use crate::ops::{self, Op, ShapeError};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;

pub type TensorId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Param,
    Grad,
    OptimizerState,
    /// Written by the host before a pass (inputs, targets, hyper-parameters, seeds).
    HostInput,
    /// Running sums read by the host.
    Stats,
    Activation,
}

#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    /// Elements (f32 or u32), not bytes.
    pub len: u64,
    pub kind: Kind,
    /// Kept across passes (parameters, host inputs, stats); transient ones are reused.
    pub persistent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch {
        kernel: usize,
        bindings: Vec<TensorId>,
        label: String,
    },
    Copy {
        src: TensorId,
        src_offset: u64,
        dst: TensorId,
        dst_offset: u64,
        len: u64,
    },
    Zero {
        dst: TensorId,
    },
}

#[derive(Debug, Clone)]
pub struct Pass {
    pub name: String,
    pub commands: Vec<Command>,
    /// Transient tensors the host may read after the pass (kept live to its end).
    pub keep: Vec<TensorId>,
}

/// A parameter tensor of some network, with its gradient and optimizer state buffers. A
/// tensor larger than the device's storage-binding limit (AlexNet's fc6 weight, 151 MB, against
/// lavapipe's 128 MiB) is held in parts: consecutive bindings of the same name, each a run of
/// whole rows (`offset`, `len` in elements of the logical tensor), with their own gradient and
/// optimizer state. The host sees one tensor of `shape` either way.
#[derive(Debug, Clone)]
pub struct ParamBinding {
    pub net: String,
    pub name: String,
    pub shape: Vec<u64>,
    pub offset: u64,
    pub len: u64,
    pub tensor: TensorId,
    pub grad: Option<TensorId>,
    pub state: Vec<TensorId>,
}

/// The parameters of one network in a program.
#[derive(Debug, Clone)]
pub struct ParamSet {
    pub net: String,
    pub by_name: HashMap<String, usize>,
    pub bindings: Vec<ParamBinding>,
    pub trainable: bool,
}

impl ParamSet {
    fn get(&self, name: &str) -> &ParamBinding {
        &self.bindings[self.by_name[name]]
    }

    /// Every part of a parameter (one unless it was split), in row order.
    pub fn parts(&self, name: &str) -> &[ParamBinding] {
        let first = self.by_name[name];
        let n = self.bindings[first..]
            .iter()
            .take_while(|b| b.name == name)
            .count();
        &self.bindings[first..first + n]
    }
}

/// An optimizer and its settings (defined with the kernels that apply it).
pub use crate::kernels::Optimizer;

/// The static schedule: tensors, deduplicated kernels, passes, and the physical buffer plan.
#[derive(Debug, Clone)]
pub struct Program {
    pub tensors: Vec<Tensor>,
    pub kernels: Vec<KernelSource>,
    pub passes: Vec<Pass>,
    pub params: Vec<ParamBinding>,
    /// Physical buffer sizes (elements) and the tensor -> buffer assignment.
    pub buffers: Vec<u64>,
    pub assignment: Vec<usize>,
}

impl Program {
    pub fn pass(&self, name: &str) -> Option<usize> {
        self.passes.iter().position(|p| p.name == name)
    }
    /// Bytes of all physical buffers.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers.iter().map(|b| b * 4).sum()
    }
    /// Bytes the transient tensors would take without reuse.
    pub fn unplanned_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.len * 4).sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LowerError {
    #[error("network `{net}` has {count} inputs; training needs exactly one")]
    Inputs { net: String, count: usize },
    #[error("{0}")]
    Other(String),
}

/// The tensors of one forward pass of a network.
#[derive(Debug, Clone)]
pub struct Forward {
    pub net: String,
    pub batch: u64,
    pub values: HashMap<NodeIndex, TensorId>,
    /// Output node and its tensor.
    pub output_node: NodeIndex,
    pub output: TensorId,
    /// Where the final sigmoid/softmax reads from, for losses computed from logits.
    pub logit_node: NodeIndex,
    pub logit: TensorId,
    pub train: bool,
    /// What a node's forward pass keeps for its backward besides its output (max pooling's
    /// winners).
    pub saved: HashMap<NodeIndex, TensorId>,
}

pub struct Builder {
    tensors: Vec<Tensor>,
    kernels: Vec<KernelSource>,
    kernel_ids: HashMap<String, usize>,
    passes: Vec<Pass>,
    cur: Option<Pass>,
    params: Vec<ParamBinding>,
    hyper: HashMap<String, TensorId>,
    rng: Option<TensorId>,
    /// How the generated kernels read their inputs (storage loads, or texture mirrors).
    reads: ReadPath,
    /// The device's storage buffers and textures of the read path's kind (sampled, or
    /// storage textures for [`ReadPath::Image`]) per shader stage: how many tensors one
    /// optimizer dispatch may update.
    max_storage: u32,
    max_textures: u32,
    /// CPU threads that run a CPU adapter's invocations (the texture-path matmul's tiles).
    threads: u64,
    /// The device's largest storage binding, in bytes: larger dense layers are split.
    max_binding: u64,
    /// The first sample of the micro-batch being lowered (dropout masks index the whole batch).
    sample0: u64,
    /// How parameter gradients are stored: written by the first micro-batch, added by the rest.
    param_store: Store,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

/// A weighted layer's weight tensor, the weight's gradient and the bias's (None when frozen,
/// or without a bias).
fn weighted(
    params: &ParamSet,
    layer: &str,
    bias: bool,
) -> (TensorId, Option<TensorId>, Option<TensorId>) {
    let w = params.get(&format!("{layer}.weight"));
    let gb = bias
        .then(|| params.get(&format!("{layer}.bias")).grad)
        .flatten();
    (w.tensor, w.grad, gb)
}

/// Tensors up to this many elements share optimizer dispatches (see `Builder::update`).
const GROUPED_UPDATE_MAX_LEN: u64 = 16_384;

fn numel(shape: &[u64]) -> u64 {
    shape.iter().product()
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            tensors: vec![],
            kernels: vec![],
            kernel_ids: HashMap::new(),
            passes: vec![],
            cur: None,
            params: vec![],
            hyper: HashMap::new(),
            rng: None,
            reads: ReadPath::Storage,
            // WebGPU's guaranteed minimums, until `with_limits` says more.
            max_storage: 8,
            max_textures: 16,
            threads: kernels::TEX_GEMM_THREADS,
            // WebGPU's guaranteed minimum, until `with_binding_limit` says more.
            max_binding: 128 << 20,
            sample0: 0,
            param_store: Store::Write,
        }
    }

    /// The device's largest storage-buffer binding in bytes (dense layers whose weight exceeds
    /// it are split into row blocks).
    pub fn with_binding_limit(mut self, bytes: u64) -> Self {
        self.max_binding = bytes.max(4);
        self
    }

    /// The device's largest storage-buffer binding in bytes.
    pub fn max_binding(&self) -> u64 {
        self.max_binding
    }

    /// How the current backward pass stores parameter gradients (see [`Builder::micro_batches`]).
    pub fn param_store(&self) -> Store {
        self.param_store
    }

    /// Lowers what follows as one part of a batch run in parts: dropout masks index from
    /// sample `first_sample`, and parameter gradients are written (the first part) or added
    /// to the earlier parts' (`Store::Accumulate`) before one update.
    pub fn set_part(&mut self, first_sample: u64, param_store: Store) {
        self.sample0 = first_sample;
        self.param_store = param_store;
    }

    /// Row blocks of a dense weight [units, fan_in] that each fit one binding (one block when
    /// the whole weight fits).
    fn dense_blocks(&self, units: u64, fan_in: u64) -> Vec<(u64, u64)> {
        let rows = (self.max_binding / 4 / fan_in.max(1)).max(1);
        if rows >= units {
            return vec![(0, units)];
        }
        (0..units.div_ceil(rows))
            .map(|i| (i * rows, ((i + 1) * rows).min(units)))
            .collect()
    }

    /// The CPU threads a CPU adapter runs invocations on (lavapipe: one per core).
    pub fn with_threads(mut self, threads: u64) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The dense kernel for this builder's device.
    pub fn matmul(&self, g: Gemm) -> KernelSource {
        kernels::matmul_for(g, self.reads, self.threads)
    }

    /// The device's storage buffers and textures (of the read path's kind) per shader stage.
    pub fn with_limits(mut self, storage_buffers: u32, textures: u32) -> Self {
        self.max_storage = storage_buffers;
        self.max_textures = textures;
        self
    }

    /// How many tensors one update dispatch may take under the limits (at least one).
    fn group_size(&self, per: u32) -> usize {
        let g = match self.reads {
            // Every operand a storage buffer: per tensor `per`, plus hyper.
            ReadPath::Storage => self.max_storage.saturating_sub(1) / per,
            // w and state written (storage); g, the mirrors of w and state, and hyper read
            // as textures.
            ReadPath::Texture | ReadPath::Image => {
                (self.max_storage / (per - 1)).min(self.max_textures.saturating_sub(1) / per)
            }
        };
        (g as usize).clamp(1, kernels::MAX_GROUP)
    }

    /// A builder whose kernels read their inputs the given way.
    pub fn with_reads(reads: ReadPath) -> Self {
        Builder {
            reads,
            // WebGPU guarantees 16 sampled but only 4 storage textures per stage.
            max_textures: if reads == ReadPath::Image { 4 } else { 16 },
            ..Builder::new()
        }
    }

    pub fn reads(&self) -> ReadPath {
        self.reads
    }

    pub fn tensor(&mut self, name: impl Into<String>, len: u64, kind: Kind) -> TensorId {
        let persistent = kind != Kind::Activation;
        self.tensors.push(Tensor {
            name: name.into(),
            len,
            kind,
            persistent,
        });
        self.tensors.len() - 1
    }

    /// Appends a dispatch of a kernel to the current pass (also for hand-built test programs).
    pub fn emit(&mut self, k: KernelSource, bindings: Vec<TensorId>, label: String) {
        let id = match self.kernel_ids.get(&k.source) {
            Some(&id) => id,
            None => {
                self.kernels.push(k.clone());
                self.kernel_ids
                    .insert(k.source.clone(), self.kernels.len() - 1);
                self.kernels.len() - 1
            }
        };
        self.cur
            .as_mut()
            .expect("emit inside a pass")
            .commands
            .push(Command::Dispatch {
                kernel: id,
                bindings,
                label,
            });
    }

    pub fn copy(
        &mut self,
        src: TensorId,
        src_offset: u64,
        dst: TensorId,
        dst_offset: u64,
        len: u64,
    ) {
        self.cur
            .as_mut()
            .expect("copy inside a pass")
            .commands
            .push(Command::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                len,
            });
    }

    pub fn zero(&mut self, dst: TensorId) {
        self.cur
            .as_mut()
            .expect("zero inside a pass")
            .commands
            .push(Command::Zero { dst });
    }

    pub fn begin_pass(&mut self, name: &str) {
        assert!(self.cur.is_none(), "passes do not nest");
        self.cur = Some(Pass {
            name: name.into(),
            commands: vec![],
            keep: vec![],
        });
    }

    /// Marks a tensor the host reads after a pass; it gets its own buffer so later passes
    /// cannot overwrite it.
    pub fn keep(&mut self, t: TensorId) {
        self.tensors[t].persistent = true;
        self.cur.as_mut().expect("keep inside a pass").keep.push(t);
    }

    pub fn end_pass(&mut self) -> usize {
        let p = self.cur.take().expect("end_pass after begin_pass");
        self.passes.push(p);
        self.passes.len() - 1
    }

    /// Parameter (and, when trainable, gradient) buffers for a network.
    pub fn params(&mut self, net: &Network, trainable: bool) -> ParamSet {
        let mut set = ParamSet {
            net: net.name.clone(),
            by_name: HashMap::new(),
            bindings: vec![],
            trainable,
        };
        for &n in &net.order {
            let node = &net.graph[n];
            // A dense layer's weight and bias split by the same row blocks.
            let blocks = match node.op {
                Op::Dense { units, .. } => {
                    let fan_in = numel(&net.graph[net.inputs_of(n)[0]].shape);
                    self.dense_blocks(units, fan_in)
                }
                _ => vec![],
            };
            for spec in &node.params {
                let total = numel(&spec.shape);
                let row = total / spec.shape.first().copied().unwrap_or(1).max(1);
                let parts: Vec<(u64, u64)> = if blocks.len() > 1 {
                    blocks
                        .iter()
                        .map(|&(r0, r1)| (r0 * row, (r1 - r0) * row))
                        .collect()
                } else {
                    vec![(0, total)]
                };
                set.by_name.insert(spec.name.clone(), set.bindings.len());
                for (i, &(offset, len)) in parts.iter().enumerate() {
                    let suffix = if parts.len() > 1 {
                        format!("#{i}")
                    } else {
                        String::new()
                    };
                    let base = format!("{}:{}{suffix}", net.name, spec.name);
                    let tensor = self.tensor(base.clone(), len, Kind::Param);
                    let grad = (trainable && spec.trainable)
                        .then(|| self.tensor(format!("{base}.grad"), len, Kind::Grad));
                    set.bindings.push(ParamBinding {
                        net: net.name.clone(),
                        name: spec.name.clone(),
                        shape: spec.shape.clone(),
                        offset,
                        len,
                        tensor,
                        grad,
                        state: vec![],
                    });
                }
            }
        }
        set
    }

    /// The shared dropout seed (a u32 the host writes before each pass).
    pub fn rng(&mut self) -> TensorId {
        match self.rng {
            Some(t) => t,
            None => {
                let t = self.tensor("rng_seed", 1, Kind::HostInput);
                self.rng = Some(t);
                t
            }
        }
    }

    /// Records the forward pass of `net` on `input` (batch x features) into the current pass.
    pub fn forward(
        &mut self,
        net: &Network,
        params: &ParamSet,
        input: TensorId,
        batch: u64,
        train: bool,
    ) -> Result<Forward, LowerError> {
        if net.inputs.len() != 1 {
            return Err(LowerError::Inputs {
                net: net.name.clone(),
                count: net.inputs.len(),
            });
        }
        let (output_node, logit_node) = net
            .output_and_logit()
            .ok_or_else(|| LowerError::Other(format!("network `{}` has no output", net.name)))?;
        // Consumers per node, to decide activation fusion.
        let mut consumers: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
        for &n in &net.order {
            for i in net.inputs_of(n) {
                consumers.entry(i).or_default().push(n);
            }
        }
        let mut values: HashMap<NodeIndex, TensorId> = HashMap::new();
        let mut saved: HashMap<NodeIndex, TensorId> = HashMap::new();
        // dense node -> the activation its kernel computes as well (its only consumer).
        let mut fused: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        for &n in &net.order {
            let node = &net.graph[n];
            let ins: Vec<TensorId> = net.inputs_of(n).iter().map(|i| values[i]).collect();
            let len = numel(&node.shape) * batch;
            let label = |phase: &str| format!("{}.{} {}", net.name, node.name, phase);
            let in_nodes = net.inputs_of(n);
            let in_shape = |i: usize| net.graph[in_nodes[i]].shape.clone();
            let activation = |b: &mut Builder| {
                b.tensor(format!("{}:{}", net.name, node.name), len, Kind::Activation)
            };
            let shape_err =
                |e: ShapeError| LowerError::Other(format!("layer `{}`: {}", node.name, e.message));
            if let Some(&dense) = fused.iter().find(|(_, a)| **a == n).map(|(d, _)| d) {
                // The dense kernel already wrote this activation.
                values.insert(n, values[&dense]);
                continue;
            }
            let t = match &node.op {
                Op::Input { .. } => input,
                Op::Dense { units, bias } => {
                    let fan_in = numel(&net.graph[net.inputs_of(n)[0]].shape);
                    let only = consumers.get(&n).filter(|c| c.len() == 1).map(|c| c[0]);
                    let fuse = only.filter(|&c| {
                        ops::activation::act(&net.graph[c].op).is_some()
                            && c != output_node
                            && n != logit_node
                            && n != output_node
                    });
                    let act = fuse
                        .and_then(|c| ops::activation::act(&net.graph[c].op))
                        .unwrap_or(Act::Identity);
                    let out = activation(self);
                    let blocks = ops::dense::blocks(params, &node.name, *bias, fan_in);
                    ops::dense::lower_forward(
                        self,
                        &blocks,
                        batch,
                        (*units, fan_in),
                        act,
                        ins[0],
                        out,
                        &format!("{}:{}", net.name, node.name),
                        label("forward"),
                    );
                    if let Some(c) = fuse {
                        fused.insert(n, c);
                    }
                    out
                }
                op @ (Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. }) => {
                    let act = ops::activation::act(op).ok_or_else(|| {
                        LowerError::Other(format!(
                            "layer `{}`: leaky_relu needs alpha > 0",
                            node.name
                        ))
                    })?;
                    let out = activation(self);
                    ops::activation::lower_forward(self, act, len, ins[0], out, label("forward"));
                    out
                }
                Op::Softmax => {
                    let out = activation(self);
                    ops::softmax::lower_forward(
                        self,
                        &node.shape,
                        batch,
                        ins[0],
                        out,
                        label("forward"),
                    );
                    out
                }
                Op::Add => {
                    let out = activation(self);
                    ops::add::lower_forward(self, len, &ins, out, label("forward"));
                    out
                }
                Op::Flatten | Op::Reshape { .. } => ins[0],
                Op::Dropout { p } if train && *p > 0.0 => {
                    let out = activation(self);
                    let offset = self.sample0 * numel(&node.shape);
                    ops::dropout::lower(
                        self,
                        *p,
                        offset,
                        len,
                        false,
                        ins[0],
                        (out, Store::Write),
                        label("forward"),
                    );
                    out
                }
                Op::Dropout { .. } => ins[0],
                Op::Conv { .. } => {
                    let g = ConvGeometry::of(&node.op, &in_shape(0)).map_err(shape_err)?;
                    let out = activation(self);
                    let w = params.get(&format!("{}.weight", node.name)).tensor;
                    let b = g
                        .bias
                        .then(|| params.get(&format!("{}.bias", node.name)).tensor);
                    ops::conv::lower_forward(
                        self,
                        &g,
                        batch,
                        ins[0],
                        w,
                        b,
                        (out, Store::Write),
                        &format!("{}:{}", net.name, node.name),
                        label("forward"),
                    );
                    out
                }
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let (c, win) =
                        ops::pool::geometry(&node.op, &in_shape(0)).map_err(shape_err)?;
                    let max = matches!(node.op, Op::MaxPool { .. });
                    let out = activation(self);
                    let winners = max.then(|| {
                        self.tensor(
                            format!("{}:{}.winners", net.name, node.name),
                            len,
                            Kind::Activation,
                        )
                    });
                    if let Some(t) = winners {
                        saved.insert(n, t);
                    }
                    ops::pool::lower_forward(
                        self,
                        max,
                        c,
                        &win,
                        batch,
                        ins[0],
                        out,
                        winners,
                        label("forward"),
                    );
                    out
                }
                Op::Lrn { .. } => {
                    let out = activation(self);
                    ops::lrn::lower_forward(
                        self,
                        &node.op,
                        &in_shape(0),
                        batch,
                        ins[0],
                        out,
                        label("forward"),
                    );
                    out
                }
                Op::Concat { axis } => {
                    let out = activation(self);
                    let shapes: Vec<Vec<u64>> = (0..ins.len()).map(in_shape).collect();
                    ops::concat::lower_forward(
                        self,
                        &shapes,
                        *axis,
                        batch,
                        &ins,
                        out,
                        &label("forward"),
                    );
                    out
                }
                Op::ConvTranspose { .. } => {
                    let g = TransposeGeometry::of(&node.op, &in_shape(0)).map_err(shape_err)?;
                    let out = activation(self);
                    let w = params.get(&format!("{}.weight", node.name)).tensor;
                    let b = g
                        .bias
                        .then(|| params.get(&format!("{}.bias", node.name)).tensor);
                    ops::conv_transpose::lower_forward(
                        self,
                        &g,
                        batch,
                        ins[0],
                        w,
                        b,
                        out,
                        &format!("{}:{}", net.name, node.name),
                        label("forward"),
                    );
                    out
                }
                Op::BatchNorm { eps, momentum } => {
                    let out = activation(self);
                    let t = |s: &str| params.get(&format!("{}.{s}", node.name)).tensor;
                    let tensors = ops::batchnorm::NodeTensors {
                        weight: t("weight"),
                        bias: t("bias"),
                        running_mean: t("running_mean"),
                        running_var: t("running_var"),
                    };
                    let stats = ops::batchnorm::lower_forward(
                        self,
                        (*eps, *momentum),
                        &in_shape(0),
                        batch,
                        train,
                        ins[0],
                        out,
                        &tensors,
                        &format!("{}:{}", net.name, node.name),
                        label("forward"),
                    );
                    saved.insert(n, stats);
                    out
                }
            };
            values.insert(n, t);
        }
        Ok(Forward {
            net: net.name.clone(),
            batch,
            output: values[&output_node],
            logit: values[&logit_node],
            output_node,
            logit_node,
            values,
            train,
            saved,
        })
    }

    /// Softmax cross-entropy on `logits` (rows x classes) against one-hot `targets`; the gradient
    /// is scaled by `scale` (1/rows for a mean). Adds [loss, correct, top5, rows] into `stats`
    /// (a 4-element tensor).
    pub fn softmax_xent(
        &mut self,
        logits: TensorId,
        targets: TensorId,
        rows: u64,
        classes: u64,
        scale: f64,
        stats: TensorId,
    ) -> TensorId {
        let dz = self.tensor("dlogits", rows * classes, Kind::Activation);
        self.emit(
            kernels::softmax_xent(rows, classes, scale, self.reads),
            vec![logits, targets, dz, stats],
            "loss softmax_xent".into(),
        );
        dz
    }

    /// Binary cross-entropy on one logit per row.
    pub fn bce_logits(
        &mut self,
        logits: TensorId,
        targets: TensorId,
        rows: u64,
        scale: f64,
        stats: TensorId,
    ) -> TensorId {
        let dz = self.tensor("dlogits", rows, Kind::Activation);
        self.emit(
            kernels::bce_logits(rows, scale, self.reads),
            vec![logits, targets, dz, stats],
            "loss bce_logits".into(),
        );
        dz
    }

    /// Backpropagates `dy`, the gradient at node `from` (`fwd.logit_node` for a loss computed
    /// from logits, `fwd.output_node` for a gradient arriving from a downstream network),
    /// writing gradients of trainable parameters. Returns the gradient at the input if asked for.
    pub fn backward(
        &mut self,
        net: &Network,
        params: &ParamSet,
        fwd: &Forward,
        from: NodeIndex,
        dy: TensorId,
        want_input_grad: bool,
    ) -> Option<TensorId> {
        let batch = fwd.batch;
        let input_node = net.inputs[0];
        // Which nodes need a gradient: those with trainable parameters upstream, or the input.
        let mut needs: HashMap<NodeIndex, bool> = HashMap::new();
        for &n in &net.order {
            let node = &net.graph[n];
            let own = node
                .params
                .iter()
                .any(|p| params.bindings[params.by_name[&p.name]].grad.is_some());
            let via = net.inputs_of(n).iter().any(|i| needs[i]);
            needs.insert(n, own || via || (n == input_node && want_input_grad));
        }
        let mut consumers: HashMap<NodeIndex, Vec<NodeIndex>> = HashMap::new();
        for &n in &net.order {
            for i in net.inputs_of(n) {
                consumers.entry(i).or_default().push(n);
            }
        }
        let mut grads: HashMap<NodeIndex, TensorId> = HashMap::new();
        grads.insert(from, dy);
        // Nodes after `from` in topological order (a final sigmoid when `from` is the logit) are skipped.
        let start = net.order.iter().position(|&n| n == from).unwrap_or(0);
        for &n in net.order[..=start].iter().rev() {
            let Some(&dy) = grads.get(&n) else { continue };
            let node = &net.graph[n];
            let ins = net.inputs_of(n);
            let y = fwd.values[&n];
            let len = numel(&node.shape) * batch;
            let label = |phase: &str| format!("{}.{} {}", net.name, node.name, phase);
            let single_input = matches!(
                node.op,
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
                    | Op::Lrn { .. }
            );
            if single_input && !needs[&ins[0]] {
                continue;
            }
            match &node.op {
                Op::Input { .. } => {}
                Op::Dense { units, bias } => {
                    let x_node = ins[0];
                    let x = fwd.values[&x_node];
                    let fan_in = numel(&net.graph[x_node].shape);
                    let blocks = ops::dense::blocks(params, &node.name, *bias, fan_in);
                    // When the input is an activation whose only consumer is this layer, its
                    // backward is fused into this product: one dispatch instead of two.
                    let act_in = net.inputs_of(x_node);
                    let fused_act = ops::activation::act(&net.graph[x_node].op).filter(|_| {
                        !grads.contains_key(&x_node)
                            && consumers.get(&x_node).map(Vec::as_slice) == Some(&[n][..])
                            && act_in.len() == 1
                    });
                    let dx = match (needs[&x_node], fused_act) {
                        (true, Some(act)) => {
                            let act_len = numel(&net.graph[act_in[0]].shape) * batch;
                            let (dx, store) = self.grad_slot(&mut grads, act_in[0], act_len, net);
                            Some(ops::dense::InputGrad {
                                dx,
                                store,
                                act,
                                saved: Some(fwd.values[&x_node]),
                                label: format!(
                                    "{}.{} backward input + {} backward",
                                    net.name, node.name, net.graph[x_node].name
                                ),
                            })
                        }
                        (true, None) => {
                            let (dx, store) =
                                self.grad_slot(&mut grads, x_node, fan_in * batch, net);
                            Some(ops::dense::InputGrad {
                                dx,
                                store,
                                act: Act::Identity,
                                saved: None,
                                label: label("backward input"),
                            })
                        }
                        (false, _) => None,
                    };
                    ops::dense::lower_backward(
                        self,
                        &blocks,
                        batch,
                        (*units, fan_in),
                        dy,
                        x,
                        dx,
                        &format!("{}:{}", net.name, node.name),
                        &label,
                    );
                }
                op @ (Op::Relu | Op::Sigmoid | Op::Tanh | Op::LeakyRelu { .. }) => {
                    // A fused activation's input is the dense node; its gradient goes there.
                    let act = ops::activation::act(op).unwrap_or(Act::Identity);
                    let dx = self.grad_slot(&mut grads, ins[0], len, net);
                    ops::activation::lower_backward(self, act, len, dy, y, dx, label("backward"));
                }
                Op::Softmax => {
                    let dx = self.grad_slot(&mut grads, ins[0], len, net);
                    ops::softmax::lower_backward(
                        self,
                        &node.shape,
                        batch,
                        dy,
                        y,
                        dx,
                        label("backward"),
                    );
                }
                Op::Add => {
                    let dxs: Vec<(TensorId, Store)> = ins
                        .iter()
                        .filter(|i| needs[i])
                        .map(|&i| self.grad_slot(&mut grads, i, len, net))
                        .collect();
                    ops::add::lower_backward(self, len, dy, &dxs, label("backward"));
                }
                Op::Dropout { p } if fwd.train && *p > 0.0 => {
                    let dx = self.grad_slot(&mut grads, ins[0], len, net);
                    let offset = self.sample0 * numel(&node.shape);
                    ops::dropout::lower(self, *p, offset, len, true, dy, dx, label("backward"));
                }
                Op::Flatten | Op::Reshape { .. } | Op::Dropout { .. } => {
                    let existing = grads.get(&ins[0]).copied();
                    if let Some(g) =
                        ops::reshape::lower_backward(self, len, dy, existing, label("backward"))
                    {
                        // No copy: the gradient buffer is shared like the value buffer.
                        grads.insert(ins[0], g);
                    }
                }
                Op::Conv { .. } => {
                    let x_node = ins[0];
                    let Ok(g) = ConvGeometry::of(&node.op, &net.graph[x_node].shape) else {
                        continue; // `forward` reported it
                    };
                    let (w, gw, gb) = weighted(params, &node.name, g.bias);
                    let dx = needs[&x_node].then(|| {
                        let l = numel(&net.graph[x_node].shape) * batch;
                        self.grad_slot(&mut grads, x_node, l, net)
                    });
                    ops::conv::lower_backward(
                        self,
                        &g,
                        batch,
                        dy,
                        fwd.values[&x_node],
                        w,
                        (gw, gb),
                        dx,
                        None,
                        &format!("{}:{}", net.name, node.name),
                        &label,
                    );
                }
                Op::MaxPool { .. } | Op::AvgPool { .. } => {
                    let x_node = ins[0];
                    let Ok((c, win)) = ops::pool::geometry(&node.op, &net.graph[x_node].shape)
                    else {
                        continue;
                    };
                    let max = matches!(node.op, Op::MaxPool { .. });
                    let l = numel(&net.graph[x_node].shape) * batch;
                    let dx = self.grad_slot(&mut grads, x_node, l, net);
                    ops::pool::lower_backward(
                        self,
                        max,
                        c,
                        &win,
                        batch,
                        dy,
                        fwd.saved.get(&n).copied(),
                        dx,
                        label("backward"),
                    );
                }
                Op::Lrn { .. } => {
                    let x_node = ins[0];
                    let dx = self.grad_slot(&mut grads, x_node, len, net);
                    ops::lrn::lower_backward(
                        self,
                        &node.op,
                        &net.graph[x_node].shape,
                        batch,
                        dy,
                        fwd.values[&x_node],
                        dx,
                        label("backward"),
                    );
                }
                Op::Concat { axis } => {
                    let shapes: Vec<Vec<u64>> =
                        ins.iter().map(|&i| net.graph[i].shape.clone()).collect();
                    let dxs: Vec<Option<(TensorId, Store)>> = ins
                        .iter()
                        .map(|&i| {
                            needs[&i].then(|| {
                                let l = numel(&net.graph[i].shape) * batch;
                                self.grad_slot(&mut grads, i, l, net)
                            })
                        })
                        .collect();
                    ops::concat::lower_backward(
                        self,
                        &shapes,
                        *axis,
                        batch,
                        dy,
                        &dxs,
                        &label("backward"),
                    );
                }
                Op::ConvTranspose { .. } => {
                    let x_node = ins[0];
                    let Ok(g) = TransposeGeometry::of(&node.op, &net.graph[x_node].shape) else {
                        continue; // `forward` reported it
                    };
                    let (w, gw, gb) = weighted(params, &node.name, g.bias);
                    let dx = needs[&x_node].then(|| {
                        let l = numel(&net.graph[x_node].shape) * batch;
                        self.grad_slot(&mut grads, x_node, l, net)
                    });
                    ops::conv_transpose::lower_backward(
                        self,
                        &g,
                        batch,
                        dy,
                        fwd.values[&x_node],
                        w,
                        (gw, gb),
                        dx,
                        &format!("{}:{}", net.name, node.name),
                        &label,
                    );
                }
                Op::BatchNorm { .. } => {
                    let x_node = ins[0];
                    let w = params.get(&format!("{}.weight", node.name));
                    let b = params.get(&format!("{}.bias", node.name));
                    let grads_wb = w.grad.zip(b.grad);
                    let dx = needs[&x_node].then(|| self.grad_slot(&mut grads, x_node, len, net));
                    ops::batchnorm::lower_backward(
                        self,
                        &net.graph[x_node].shape,
                        batch,
                        fwd.train,
                        (dy, fwd.values[&x_node], fwd.saved[&n], w.tensor),
                        grads_wb,
                        dx,
                        &format!("{}:{}", net.name, node.name),
                        &label,
                    );
                }
            }
        }
        if want_input_grad {
            grads.get(&input_node).copied()
        } else {
            None
        }
    }

    /// The gradient buffer of node `n`: a fresh one (Write) or the existing one (Accumulate).
    pub(crate) fn grad_slot(
        &mut self,
        grads: &mut HashMap<NodeIndex, TensorId>,
        n: NodeIndex,
        len: u64,
        net: &Network,
    ) -> (TensorId, Store) {
        match grads.get(&n) {
            Some(&t) => (t, Store::Accumulate),
            None => {
                let t = self.tensor(
                    format!("{}:d{}", net.name, net.graph[n].name),
                    len,
                    Kind::Activation,
                );
                grads.insert(n, t);
                (t, Store::Write)
            }
        }
    }

    /// Host-written hyper-parameters of an optimizer: [lr, 1 - beta1^t, 1 - beta2^t, 0].
    pub fn hyper(&mut self, name: &str) -> TensorId {
        if let Some(&t) = self.hyper.get(name) {
            return t;
        }
        let t = self.tensor(format!("hyper:{name}"), 4, Kind::HostInput);
        self.hyper.insert(name.into(), t);
        t
    }

    /// Updates every trainable parameter of `set` with `opt`; `hyper` names the host buffer.
    /// Tensors are updated in groups, as many per dispatch as the device's limits allow.
    pub fn update(&mut self, set: &mut ParamSet, opt: Optimizer, hyper_name: &str) {
        let hyper = self.hyper(hyper_name);
        let states: &[&str] = match opt {
            Optimizer::Sgd { .. } => &["velocity"],
            Optimizer::Adam { .. } => &["adam_m", "adam_v"],
        };
        let mut trainable = vec![];
        for (i, b) in set.bindings.iter_mut().enumerate() {
            let Some(g) = b.grad else { continue };
            if b.state.is_empty() {
                let part = if b.len == numel(&b.shape) {
                    String::new()
                } else {
                    format!("@{}", b.offset)
                };
                for st in states {
                    b.state.push(self.tensor(
                        format!("{}:{}{part}.{st}", b.net, b.name),
                        b.len,
                        Kind::OptimizerState,
                    ));
                }
            }
            trainable.push((i, g));
        }
        // Large tensors get a dispatch each: a grouped kernel branches per tensor, and a
        // software rasteriser runs every branch masked, so grouping pays for small tensors
        // (where a dispatch costs more than the update) and nothing is gained for large ones.
        let (large, small): (Vec<_>, Vec<_>) = trainable
            .into_iter()
            .partition(|&(i, _)| set.bindings[i].len > GROUPED_UPDATE_MAX_LEN);
        let mut chunks: Vec<Vec<(usize, TensorId)>> = large.into_iter().map(|t| vec![t]).collect();
        chunks.extend(
            small
                .chunks(self.group_size(opt.operands()))
                .map(<[_]>::to_vec),
        );
        for chunk in &chunks {
            let mut bindings = vec![];
            let mut lens = vec![];
            let mut names = vec![];
            for &(i, g) in chunk {
                let b = &set.bindings[i];
                bindings.push(b.tensor);
                bindings.push(g);
                bindings.extend(b.state.iter().copied());
                lens.push(b.len);
                names.push(b.name.clone());
            }
            bindings.push(hyper);
            let net = &set.bindings[chunk[0].0].net;
            let label = format!("{net}.{} update", names.join(", "));
            let kernel = kernels::update_group(&lens, opt, self.reads);
            self.emit(kernel, bindings, label);
        }
    }

    /// Registers a parameter set's bindings in the program (call once per set, after updates).
    pub fn register(&mut self, set: &ParamSet) {
        self.params.extend(set.bindings.iter().cloned());
    }

    /// Plans physical buffers: persistent tensors get their own; transient tensors share buffers
    /// once their last reader in the pass has run (first fit among free buffers of enough size).
    pub fn finish(self) -> Program {
        let mut assignment = vec![usize::MAX; self.tensors.len()];
        let mut buffers: Vec<u64> = vec![];
        for (i, t) in self.tensors.iter().enumerate() {
            if t.persistent {
                assignment[i] = buffers.len();
                buffers.push(t.len.max(1));
            }
        }
        // A tensor used by several passes must survive between them: make it persistent.
        let mut tensors = self.tensors;
        let mut first_pass: HashMap<TensorId, usize> = HashMap::new();
        for (pi, pass) in self.passes.iter().enumerate() {
            for c in &pass.commands {
                for t in command_tensors(c) {
                    if *first_pass.entry(t).or_insert(pi) != pi && !tensors[t].persistent {
                        tensors[t].persistent = true;
                        assignment[t] = buffers.len();
                        buffers.push(tensors[t].len.max(1));
                    }
                }
            }
        }
        let transient_start = buffers.len();
        for pass in &self.passes {
            // First and last command using each transient tensor.
            let mut span: HashMap<TensorId, (usize, usize)> = HashMap::new();
            for (ci, c) in pass.commands.iter().enumerate() {
                for t in command_tensors(c) {
                    if !tensors[t].persistent {
                        let e = span.entry(t).or_insert((ci, ci));
                        e.1 = ci;
                    }
                }
            }
            let end = pass.commands.len();
            for &k in &pass.keep {
                if let Some(e) = span.get_mut(&k) {
                    e.1 = end;
                }
            }
            let mut order: Vec<(TensorId, (usize, usize))> = span.into_iter().collect();
            order.sort_by_key(|(t, (a, _))| (*a, *t));
            // busy_until[buffer] = last command index of its current tensor in this pass
            let mut busy_until: HashMap<usize, usize> = HashMap::new();
            for (t, (first, last)) in order {
                let need = tensors[t].len.max(1);
                let free = (transient_start..buffers.len())
                    .filter(|b| busy_until.get(b).is_none_or(|&u| u < first) && buffers[*b] >= need)
                    .min_by_key(|b| buffers[*b]);
                let b = match free {
                    Some(b) => b,
                    None => {
                        buffers.push(need);
                        buffers.len() - 1
                    }
                };
                assignment[t] = b;
                busy_until.insert(b, last);
            }
        }
        for a in assignment.iter_mut() {
            if *a == usize::MAX {
                // Never used by any command: give it a small buffer of its own.
                *a = buffers.len();
                buffers.push(1);
            }
        }
        Program {
            tensors,
            kernels: self.kernels,
            passes: self.passes,
            params: self.params,
            buffers,
            assignment,
        }
    }
}

/// A classifier's static program: one training step (forward, softmax cross-entropy on the
/// logits, backward, optimizer update) and an evaluation pass, with the tensors the host uses.
/// The session runs it and `netc check` reports its memory, so the two cannot disagree.
#[derive(Debug, Clone)]
pub struct ClassifierPlan {
    pub program: Program,
    pub set: ParamSet,
    pub x: TensorId,
    pub y: TensorId,
    pub stats: TensorId,
    pub eval_stats: TensorId,
    pub hyper: TensorId,
    pub rng: Option<TensorId>,
    pub logits_eval: TensorId,
    pub train: usize,
    pub eval: usize,
}

impl Builder {
    /// The classifier program of `net` at `batch` under `opt` (see [`ClassifierPlan`]).
    pub fn classifier(
        mut self,
        net: &Network,
        opt: Optimizer,
        batch: u64,
    ) -> Result<ClassifierPlan, LowerError> {
        let (_, logit) = net
            .output_and_logit()
            .ok_or_else(|| LowerError::Other(format!("network `{}` has no output", net.name)))?;
        let input = *net.inputs.first().ok_or(LowerError::Inputs {
            net: net.name.clone(),
            count: 0,
        })?;
        let feats = numel(&net.graph[input].shape);
        let classes = numel(&net.graph[logit].shape);
        let b = batch;
        let mut set = self.params(net, true);
        let x = self.tensor("x", b * feats, Kind::HostInput);
        let y = self.tensor("y", b * classes, Kind::HostInput);
        let stats = self.tensor("train_stats", 4, Kind::Stats);
        let micro = self.micro_batches(net, b);
        if micro.len() > 1 {
            if let Some(&bn) = net
                .order
                .iter()
                .find(|&&n| matches!(net.graph[n].op, Op::BatchNorm { .. }))
            {
                return Err(LowerError::Other(format!(
                    "batch {b} does not fit the device's {} storage binding in one piece, and layer `{}` (batchnorm) needs the whole batch for its statistics; lower the batch (at most {} fits) or use --device cpu",
                    if self.max_binding >= 1 << 20 {
                        format!("{} MiB", self.max_binding >> 20)
                    } else {
                        format!("{} KiB", self.max_binding >> 10)
                    },
                    net.graph[bn].name,
                    micro[0].1
                )));
            }
        }
        self.begin_pass("train_step");
        for (k, &(n0, rows)) in micro.iter().enumerate() {
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let store = if k == 0 {
                Store::Write
            } else {
                Store::Accumulate
            };
            self.set_part(n0, store);
            let fwd = self.forward(net, &set, xs, rows, true)?;
            // Scaled by the whole batch: the micro-batches' gradients add up to its mean.
            let dz = self.softmax_xent(fwd.logit, ys, rows, classes, 1.0 / b as f64, stats);
            self.backward(net, &set, &fwd, fwd.logit_node, dz, false);
        }
        self.set_part(0, Store::Write);
        self.update(&mut set, opt, "opt");
        let train = self.end_pass();
        // Evaluation adds its statistics on the device too: one read-back per test set, not
        // one per batch. Padding rows (all-zero targets) add nothing.
        let eval_stats = self.tensor("eval_stats", 4, Kind::Stats);
        self.begin_pass("eval");
        let whole = (micro.len() > 1).then(|| self.tensor("logits", b * classes, Kind::Activation));
        let mut logits_eval = 0;
        for &(n0, rows) in &micro {
            let (xs, ys) = self.micro_inputs((x, feats), (y, classes), n0, rows, b);
            let fe = self.forward(net, &set, xs, rows, false)?;
            self.softmax_xent(fe.logit, ys, rows, classes, 1.0, eval_stats);
            logits_eval = match whole {
                Some(t) => {
                    self.copy(fe.logit, 0, t, n0 * classes, rows * classes);
                    t
                }
                None => fe.logit,
            };
        }
        self.keep(logits_eval);
        let eval = self.end_pass();
        let hyper = self.hyper("opt");
        let rng = Some(self.rng());
        self.register(&set);
        Ok(ClassifierPlan {
            program: self.finish(),
            set,
            x,
            y,
            stats,
            eval_stats,
            hyper,
            rng,
            logits_eval,
            train,
            eval,
        })
    }
}

impl Builder {
    /// The batch cut into micro-batches whose every activation fits one storage binding (one
    /// micro-batch when the whole batch fits). A training step runs them one after another,
    /// the parameter gradients adding up, then one update: the same step, with activation
    /// memory bounded by the micro-batch (AlexNet's conv1 output at batch 128 is 148 MB,
    /// over lavapipe's 128 MiB binding).
    pub fn micro_batches(&self, net: &Network, batch: u64) -> Vec<(u64, u64)> {
        let per_sample = net
            .order
            .iter()
            .map(|&n| numel(&net.graph[n].shape) * 4)
            .max()
            .unwrap_or(4)
            .max(4);
        let per = (self.max_binding / per_sample).clamp(1, batch.max(1));
        (0..batch.div_ceil(per))
            .map(|i| (i * per, per.min(batch - i * per)))
            .collect()
    }

    /// Rows `n0..n0 + rows` of the host inputs x and y (features and classes per row): the
    /// tensors themselves when that is the whole batch, else copies.
    fn micro_inputs(
        &mut self,
        (x, feats): (TensorId, u64),
        (y, classes): (TensorId, u64),
        n0: u64,
        rows: u64,
        batch: u64,
    ) -> (TensorId, TensorId) {
        if rows == batch {
            return (x, y);
        }
        let xs = self.tensor("x.micro", rows * feats, Kind::Activation);
        self.copy(x, n0 * feats, xs, 0, rows * feats);
        let ys = self.tensor("y.micro", rows * classes, Kind::Activation);
        self.copy(y, n0 * classes, ys, 0, rows * classes);
        (xs, ys)
    }
}

/// Elements a buffer of `len` floats is allocated with: whole quads (vec4 loads and stores,
/// rgba texels), at least one.
pub fn padded_len(len: u64) -> u64 {
    len.max(1).div_ceil(4) * 4
}

/// What a program's storage buffers hold, in bytes as allocated (padded to whole quads). A
/// buffer of its own counts for its tensor's kind; the shared transient buffers hold the
/// activations kept for the backward pass, the gradients flowing through it and other
/// temporaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub params: u64,
    pub grads: u64,
    pub optimizer_state: u64,
    pub activations: u64,
    /// Host-written inputs, targets, hyper-parameters and statistics.
    pub io: u64,
}

impl Memory {
    pub fn total(&self) -> u64 {
        self.params + self.grads + self.optimizer_state + self.activations + self.io
    }
}

impl Program {
    /// Bytes the runtime allocates for this program's buffers (texture mirrors, which CPU
    /// adapters add, excluded), by what they hold.
    pub fn memory(&self) -> Memory {
        let mut owner: Vec<Option<Kind>> = vec![None; self.buffers.len()];
        let mut shared = vec![0usize; self.buffers.len()];
        for (t, &b) in self.assignment.iter().enumerate() {
            shared[b] += 1;
            owner[b] = Some(self.tensors[t].kind);
        }
        let mut m = Memory::default();
        for (b, &len) in self.buffers.iter().enumerate() {
            let bytes = padded_len(len) * 4;
            let kind = if shared[b] == 1 {
                owner[b].unwrap_or(Kind::Activation)
            } else {
                Kind::Activation
            };
            match kind {
                Kind::Param => m.params += bytes,
                Kind::Grad => m.grads += bytes,
                Kind::OptimizerState => m.optimizer_state += bytes,
                Kind::Activation => m.activations += bytes,
                Kind::HostInput | Kind::Stats => m.io += bytes,
            }
        }
        m
    }
}

fn command_tensors(c: &Command) -> Vec<TensorId> {
    match c {
        Command::Dispatch { bindings, .. } => bindings.clone(),
        Command::Copy { src, dst, .. } => vec![*src, *dst],
        Command::Zero { dst } => vec![*dst],
    }
}

impl Program {
    /// A readable listing of the schedule: buffers, then each pass's commands in order.
    pub fn printout(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} tensors in {} buffers ({} bytes; {} without reuse), {} kernels",
            self.tensors.len(),
            self.buffers.len(),
            self.buffer_bytes(),
            self.unplanned_bytes(),
            self.kernels.len()
        );
        for (i, t) in self.tensors.iter().enumerate() {
            let _ = writeln!(
                s,
                "  t{i} {} [{}] {:?} -> b{}",
                t.name, t.len, t.kind, self.assignment[i]
            );
        }
        for p in &self.passes {
            let _ = writeln!(s, "pass {}:", p.name);
            for c in &p.commands {
                let _ = match c {
                    Command::Dispatch {
                        kernel,
                        bindings,
                        label,
                    } => {
                        let k = &self.kernels[*kernel];
                        writeln!(
                            s,
                            "  {label}: {} {:?} groups {:?}",
                            k.name, bindings, k.groups
                        )
                    }
                    Command::Copy {
                        src,
                        src_offset,
                        dst,
                        dst_offset,
                        len,
                    } => {
                        writeln!(
                            s,
                            "  copy t{src}[{src_offset}..] -> t{dst}[{dst_offset}..] x{len}"
                        )
                    }
                    Command::Zero { dst } => writeln!(s, "  zero t{dst}"),
                };
            }
        }
        s
    }
}
