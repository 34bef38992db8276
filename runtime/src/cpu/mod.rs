//! The CPU reference executor: every op's forward and backward the straightforward way, on
//! ndarray (its matrix product for dense layers and convolutions), generic over f32 (training
//! on `--device cpu`) and f64 (gradient checking). It is the oracle the WGSL kernels are tested
//! against, so it follows the same conventions: activations are [batch, features] row-major
//! (CHW features), dense weights are [out, in], conv weights [out, in/groups, k, k], losses
//! are computed from logits.
//!
//! Each op's reference lives in the module named as the op's module in
//! `netc_compiler::ops`; this module runs a network through them, dispatching exhaustively.

mod activation;
mod add;
mod backprop;
mod batchnorm;
mod concat;
mod conv;
mod conv_transpose;
mod dense;
mod dropout;
pub mod fast_math;
mod loss;
mod lrn;
pub(crate) mod matmul;
mod optim;
mod pool;
pub mod prim;
mod softmax;
mod sums;

pub use backprop::{backward, backward_observed, backward_opt, Progress};
pub use loss::{bce_logits, softmax_xent, LossStats};
pub use optim::{apply_rule, apply_update, clip_scale, OptState};

use ndarray::{Array2, ArrayView2};
use netc_compiler::ir::Network;
use netc_compiler::ops::conv::ConvGeometry;
use netc_compiler::ops::conv_transpose::TransposeGeometry;
use netc_compiler::ops::prim::PrimOp;
use netc_compiler::ops::{batchnorm as bn_ops, pool as pool_ops, Init, Op, ShapeError};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;
use std::fmt::Debug;

use crate::rng::Rng;
use activation::Act;

/// The float types the reference runs in.
pub trait Real: ndarray::LinalgScalar + num_traits::Float + Debug + Send + Sync + 'static {
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
    /// The error function and e^x in the type's own precision: vectorisable approximations
    /// for f32 ([`fast_math`]), libm's for the f64 reference.
    fn erf(self) -> Self;
    fn exp_fast(self) -> Self;
    /// The values as f32, when they are: the fused groups' compiled loops are f32 loops
    /// (`prim::fused::compiled`), and f64 runs the reference interpreter.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn erf(self) -> Self {
        fast_math::erf_f32(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        fast_math::exp_f32(self)
    }
    fn as_f32(s: &[Self]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
        Some(s)
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn exp_fast(self) -> Self {
        self.exp()
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn as_f32_mut(_: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CpuError {
    #[error("layer `{layer}`: {message}")]
    Shape { layer: String, message: String },
    #[error("input has {got} features per example but network `{net}` expects {want}")]
    InputSize {
        net: String,
        got: usize,
        want: usize,
    },
}

/// A network's parameter tensors (flat, row-major) in `Network::param_specs` order.
#[derive(Debug, Clone, PartialEq)]
pub struct Params<T> {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
    pub values: Vec<Vec<T>>,
    pub trainable: Vec<bool>,
}

impl<T: Real> Params<T> {
    /// Draws every tensor from its initialiser.
    pub fn init(net: &Network, rng: &mut Rng) -> Self {
        let mut p = Params {
            names: vec![],
            shapes: vec![],
            values: vec![],
            trainable: vec![],
        };
        for spec in net.param_specs() {
            let n: usize = spec.shape.iter().product::<u64>() as usize;
            let (fi, fo) = (spec.fan_in as f64, spec.fan_out as f64);
            let v: Vec<T> = (0..n)
                .map(|_| {
                    T::of(match spec.init {
                        Init::Gaussian { mean, std } => mean + std * rng.normal(),
                        Init::Uniform { low, high } => rng.uniform(low, high),
                        Init::Constant(c) => c,
                        Init::XavierUniform => {
                            let a = (6.0 / (fi + fo)).sqrt();
                            rng.uniform(-a, a)
                        }
                        Init::XavierNormal => (2.0 / (fi + fo)).sqrt() * rng.normal(),
                        Init::HeNormal => (2.0 / fi).sqrt() * rng.normal(),
                        Init::HeUniform => {
                            let a = (6.0 / fi).sqrt();
                            rng.uniform(-a, a)
                        }
                    })
                })
                .collect();
            p.names.push(spec.name.clone());
            p.shapes
                .push(spec.shape.iter().map(|&d| d as usize).collect());
            p.values.push(v);
            p.trainable.push(spec.trainable);
        }
        p
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn cast<U: Real>(&self) -> Params<U> {
        Params {
            names: self.names.clone(),
            shapes: self.shapes.clone(),
            values: self
                .values
                .iter()
                .map(|v| v.iter().map(|x| U::of(x.f64())).collect())
                .collect(),
            trainable: self.trainable.clone(),
        }
    }

    fn matrix(&self, name: &str) -> ArrayView2<'_, T> {
        let i = self
            .index(name)
            .expect("parameter exists: IR and Params come from the same network");
        let s = &self.shapes[i];
        ArrayView2::from_shape((s[0], s[1..].iter().product()), &self.values[i])
            .expect("shape matches length")
    }

    fn vector(&self, name: &str) -> &[T] {
        &self.values[self.index(name).expect("parameter exists")]
    }

    /// Stores the state a training forward pass computed (batchnorm's running statistics).
    pub fn apply_state(&mut self, acts: &Activations<T>) {
        for (name, v) in &acts.state {
            if let Some(i) = self.index(name) {
                self.values[i].clone_from(v);
            }
        }
    }
}

/// Flushes subnormal floats to zero on the calling thread (x86-64: the FTZ and DAZ bits of
/// MXCSR), as GPUs commonly do (Vulkan leaves f32 subnormals to the implementation). Adam's
/// moments of weights whose gradient is only rarely nonzero (pixels near MNIST's blank border)
/// decay into the subnormal range between those steps, and every operation on a subnormal
/// takes a microcode assist of about a hundred cycles (so can a softmax of confident logits): a
/// fixed-batch training loop ran at 1.9 ms per step without this and 0.83 ms with it, and
/// five MNIST epochs of models/mlp.net took 2.7-3.1 s with it against 3.0-3.5 s without
/// (three interleaved pairs). Values this small (below 1.2e-38 in f32) change no weight.
/// No-op elsewhere.
pub fn flush_subnormals() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    // SAFETY: setting MXCSR's FTZ (bit 15) and DAZ (bit 6) changes only how this thread's
    // SSE/AVX arithmetic treats subnormals; every x86-64 CPU has both bits.
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// Starts rayon's global pool with [`flush_subnormals`] on each of its threads, which do the
/// CPU executor's products and per-sample loops: with the bits on the calling thread only,
/// a value could round differently depending on which thread computed it. Does nothing when
/// the pool is already running (call it before any parallel work), and then says false.
/// Keeps glibc's allocator from handing the CPU executor's large per-step buffers (im2col
/// columns, activations: megabytes each) back to the system and faulting them in again on the
/// next step. By default a freed block over the mmap threshold is unmapped and heap tops over
/// 128 kB are trimmed; a LeNet epoch then spent 22 to 35 s of its 22 to 40 s in the kernel
/// (`time`'s sys). With blocks up to 32 MB kept on the heap and trimming only past 1 GB free,
/// the same epoch took 22.8 s, 2.1 s of it sys (GLIBC_TUNABLES measured the same settings).
/// Call it first thing in `main`, before any other thread exists (mallopt is not thread-safe).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only sets two of glibc's allocator parameters (documented in mallopt(3));
    // callers call it first thing in main, before any other thread exists.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Runs `f` on a worker thread of rayon's global pool (at once when already on one). A step
/// of the executor is many parallel loops; started from a worker, each one only pushes work
/// that the other workers steal, instead of waking the pool from outside and sleeping until it
/// is done (a futex round trip per loop, measured at a sixth of a GELU's forward and backward).
/// MPI calls stay outside: they belong to the thread that initialised MPI.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::current_thread_index() {
        Some(_) => f(),
        None => {
            let mut out = None;
            rayon::scope(|_| out = Some(f()));
            out.expect("the scope ran its body")
        }
    }
}

pub fn flush_subnormals_in_pool() -> bool {
    // An error only says the global pool exists already; it keeps its threads' settings.
    rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush_subnormals())
        .build_global()
        .is_ok()
}

/// Values of every node for one batch.
pub struct Activations<T> {
    pub values: HashMap<NodeIndex, Array2<T>>,
    pub train: bool,
    pub seed: u32,
    /// Column matrices conv nodes kept from a training pass for their weight gradient.
    pub(crate) kept_cols: HashMap<NodeIndex, conv::Cols<T>>,
    /// The batch row the first row of this pass stands for (dropout masks index the whole
    /// batch, so a batch run in parts draws the masks it would draw at once).
    pub row0: usize,
    /// New values of state tensors (batchnorm's running statistics, by parameter name) that a
    /// training pass computed; [`Params::apply_state`] stores them, so the pass itself stays a
    /// function of the parameters (a gradient check runs it many times).
    pub state: Vec<(String, Vec<T>)>,
    /// The values each fused region of a training pass kept for its backward
    /// (`Region::kept`), by the region's last node.
    pub(crate) region_kept: HashMap<NodeIndex, Vec<Array2<T>>>,
}

impl<T: Real> Activations<T> {
    pub fn get(&self, n: NodeIndex) -> &Array2<T> {
        &self.values[&n]
    }
}

fn numel(s: &[u64]) -> usize {
    s.iter().product::<u64>() as usize
}

/// The node's op settings resolved against its input shape (checked at compile time, so an
/// error here means the network was built by hand inconsistently).
fn shape_err(layer: &str) -> impl Fn(ShapeError) -> CpuError + '_ {
    move |e| CpuError::Shape {
        layer: layer.to_string(),
        message: e.message,
    }
}

/// Forward pass of a batch `x` ([batch, features]). Dropout draws its mask from `seed` exactly
/// as the WGSL kernel does.
pub fn forward<T: Real>(
    net: &Network,
    p: &Params<T>,
    x: ArrayView2<T>,
    train: bool,
    seed: u32,
) -> Result<Activations<T>, CpuError> {
    forward_rows(net, p, x, train, seed, 0)
}

/// [`forward`] of rows `row0..` of a batch run in parts (the GPU program's `first_sample`).
pub fn forward_rows<T: Real>(
    net: &Network,
    p: &Params<T>,
    x: ArrayView2<T>,
    train: bool,
    seed: u32,
    row0: usize,
) -> Result<Activations<T>, CpuError> {
    forward_inputs(net, p, &[x], train, seed, row0)
}

/// [`forward_rows`] of a network with several inputs: `xs[i]` feeds `net.inputs[i]` (a
/// single `x` feeds every input, as before networks could take several).
pub fn forward_inputs<T: Real>(
    net: &Network,
    p: &Params<T>,
    xs: &[ArrayView2<T>],
    train: bool,
    seed: u32,
    row0: usize,
) -> Result<Activations<T>, CpuError> {
    on_pool(|| forward_on_pool(net, p, xs, train, seed, row0))
}

fn forward_on_pool<T: Real>(
    net: &Network,
    p: &Params<T>,
    xs: &[ArrayView2<T>],
    train: bool,
    seed: u32,
    row0: usize,
) -> Result<Activations<T>, CpuError> {
    let mut values: HashMap<NodeIndex, Array2<T>> = HashMap::new();
    let mut kept_cols = HashMap::new();
    let mut state = vec![];
    let mut region_kept = HashMap::new();
    let regions = net.regions().map_err(|e| CpuError::Shape {
        layer: net.name.clone(),
        message: e.to_string(),
    })?;
    let batch = xs.first().map_or(0, |x| x.nrows());
    for &n in &net.order {
        if let Some(&r) = regions.of.get(&n) {
            let keep = train.then_some(&mut region_kept);
            run_region(net, &regions.list[r], n, &mut values, keep, batch)?;
            continue;
        }
        let node = &net.graph[n];
        let ins = net.inputs_of(n);
        let in_shape = |i: usize| &net.graph[ins[i]].shape;
        let weight = || p.vector(&format!("{}.weight", node.name));
        let bias = || p.vector(&format!("{}.bias", node.name));
        let y = match &node.op {
            Op::Input { shape } => input_value(net, n, xs, shape)?,
            Op::Dense { bias: has_bias, .. } => {
                let w = p.matrix(&format!("{}.weight", node.name));
                let x = by_rows(&values[&ins[0]], w.ncols());
                let y = dense::forward(x.view(), w, has_bias.then(bias));
                into_rows(y, numel(&node.shape))
            }
            Op::Conv { .. } => {
                let g = ConvGeometry::of(&node.op, in_shape(0)).map_err(shape_err(&node.name))?;
                let (y, kept) =
                    conv::forward_keeping(&g, &values[&ins[0]], weight(), g.bias.then(bias), train);
                if let Some(k) = kept {
                    kept_cols.insert(n, k);
                }
                y
            }
            Op::MaxPool { .. } | Op::AvgPool { .. } => {
                let (c, win) =
                    pool_ops::geometry(&node.op, in_shape(0)).map_err(shape_err(&node.name))?;
                let max = matches!(node.op, Op::MaxPool { .. });
                pool::forward(max, c, &win, &values[&ins[0]])
            }
            Op::Relu => activation::forward(Act::Relu, &values[&ins[0]]),
            Op::LeakyRelu { alpha } => {
                activation::forward(Act::LeakyRelu(*alpha), &values[&ins[0]])
            }
            Op::Sigmoid => activation::forward(Act::Sigmoid, &values[&ins[0]]),
            Op::Tanh => activation::forward(Act::Tanh, &values[&ins[0]]),
            Op::Softmax => softmax::forward(&values[&ins[0]]),
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => lrn::forward(
                in_shape(0),
                lrn::Settings {
                    size: *size,
                    alpha: *alpha,
                    beta: *beta,
                    k: *k,
                },
                &values[&ins[0]],
            ),
            Op::Add if !broadcasts(net, n) => add::forward(ins.iter().map(|i| &values[i])),
            Op::Prim(PrimOp::Param { .. }) => {
                let v = p.vector(&node.name);
                Array2::from_shape_vec((1, v.len()), v.to_vec()).expect("a row")
            }
            Op::Add | Op::Prim(_) => return Err(outside_region(net, n)),
            Op::Concat { .. } if broadcasts(net, n) => return Err(outside_region(net, n)),
            Op::Concat { axis } => {
                let parts: Vec<_> = ins.iter().map(|i| &values[i]).collect();
                let shapes: Vec<_> = ins.iter().map(|i| net.graph[*i].shape.clone()).collect();
                concat::forward(&parts, &shapes, *axis)
            }
            Op::Flatten | Op::Reshape { .. } => values[&ins[0]].clone(),
            Op::Dropout { p: prob } => dropout::apply(&values[&ins[0]], train, *prob, seed, row0),
            Op::ConvTranspose { .. } => {
                let g =
                    TransposeGeometry::of(&node.op, in_shape(0)).map_err(shape_err(&node.name))?;
                conv_transpose::forward(&g, &values[&ins[0]], weight(), g.bias.then(bias))
            }
            Op::BatchNorm { eps, momentum } => {
                let (s, t) = batchnorm_node(p, &node.name, in_shape(0), *eps, *momentum);
                let (y, running) = batchnorm::forward(&s, &t, &values[&ins[0]], train);
                if let Some((mean, var)) = running {
                    state.push((format!("{}.running_mean", node.name), mean));
                    state.push((format!("{}.running_var", node.name), var));
                }
                y
            }
        };
        values.insert(n, y);
    }
    Ok(Activations {
        values,
        train,
        seed,
        kept_cols,
        row0,
        state,
        region_kept,
    })
}

/// The batch feeding input node `n` (`xs[i]` for `net.inputs[i]`; one `x` feeds them all).
fn input_value<T: Real>(
    net: &Network,
    n: NodeIndex,
    xs: &[ArrayView2<T>],
    shape: &[u64],
) -> Result<Array2<T>, CpuError> {
    let k = net.inputs.iter().position(|&i| i == n).unwrap_or(0);
    let x = xs.get(k).or(xs.first());
    match x {
        Some(x) if x.ncols() == numel(shape) => Ok(x.to_owned()),
        _ => Err(CpuError::InputSize {
            net: net.name.clone(),
            got: x.map_or(0, |x| x.ncols()),
            want: numel(shape),
        }),
    }
}

/// A region runs whole at its last node `n`, when everything it reads is computed; its
/// outputs' values join `values` (its other nodes get none).
/// Runs a region at its last node; a training pass keeps what its backward reads.
fn run_region<T: Real>(
    net: &Network,
    region: &netc_compiler::region::Region,
    n: NodeIndex,
    values: &mut HashMap<NodeIndex, Array2<T>>,
    kept: Option<&mut HashMap<NodeIndex, Vec<Array2<T>>>>,
    batch: usize,
) -> Result<(), CpuError> {
    if region.nodes.last() != Some(&n) {
        return Ok(());
    }
    let err = |message| CpuError::Shape {
        layer: net.graph[n].name.clone(),
        message,
    };
    let outs = match kept {
        Some(kept) => {
            let (outs, k) = prim::region::forward_keeping(region, values, batch).map_err(err)?;
            kept.insert(n, k);
            outs
        }
        None => prim::region::forward(region, values, batch).map_err(err)?,
    };
    for (&(o, _), v) in region.outputs.iter().zip(outs) {
        values.insert(o, v);
    }
    Ok(())
}

/// A value re-cut into rows of `cols` (a token sequence's [batch, T*C] read as [batch*T, C]
/// by a dense layer over its last axis): a view, copied only when not in standard layout.
fn by_rows<T: Real>(a: &Array2<T>, cols: usize) -> ndarray::CowArray<'_, T, ndarray::Ix2> {
    let rows = a.len() / cols.max(1);
    match a.as_slice() {
        Some(s) => ArrayView2::from_shape((rows, cols), s)
            .expect("whole rows")
            .into(),
        None => Array2::from_shape_vec((rows, cols), a.iter().copied().collect())
            .expect("whole rows")
            .into(),
    }
}

/// A fresh value re-cut into rows of `cols` (back to [batch, T*C]), moved when it can be.
fn into_rows<T: Real>(a: Array2<T>, cols: usize) -> Array2<T> {
    let rows = a.len() / cols.max(1);
    match a.is_standard_layout() {
        true => a.into_shape_with_order((rows, cols)).expect("whole rows"),
        false => {
            Array2::from_shape_vec((rows, cols), a.iter().copied().collect()).expect("whole rows")
        }
    }
}

/// Whether an `add` node broadcasts, or a `concat` repeats a tensor over the batch: then it
/// runs as a primitive.
fn broadcasts(net: &Network, n: NodeIndex) -> bool {
    let concat = matches!(net.graph[n].op, Op::Concat { .. });
    net.inputs_of(n).iter().any(|&i| {
        let x = &net.graph[i];
        !x.batched || (!concat && x.shape != net.graph[n].shape)
    })
}

/// A node that runs as a primitive but is in no region: the regions cover every such node
/// (`netc_compiler::region`), so this is a bug, reported rather than run wrong.
fn outside_region(net: &Network, n: NodeIndex) -> CpuError {
    CpuError::Shape {
        layer: net.graph[n].name.clone(),
        message: "internal: a primitive outside every fused region".into(),
    }
}

/// A batchnorm node's sizes and tensors.
fn batchnorm_node<'a, T: Real>(
    p: &'a Params<T>,
    name: &str,
    shape: &[u64],
    eps: f64,
    momentum: f64,
) -> (batchnorm::Settings, batchnorm::Tensors<'a, T>) {
    let (c, pixels) = bn_ops::channels(shape);
    let t = |suffix: &str| p.vector(&format!("{name}.{suffix}"));
    (
        batchnorm::Settings {
            channels: c as usize,
            pixels: pixels as usize,
            eps,
            momentum,
        },
        batchnorm::Tensors {
            weight: t("weight"),
            bias: t("bias"),
            running_mean: t("running_mean"),
            running_var: t("running_var"),
        },
    )
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn subnormals_flush_to_zero_on_the_calling_thread_only() {
        let half_min = || std::hint::black_box(f32::MIN_POSITIVE) / std::hint::black_box(2.0f32);
        let flushed = std::thread::spawn(move || {
            let before = half_min();
            super::flush_subnormals();
            (before, half_min())
        })
        .join()
        .expect("thread");
        assert!(flushed.0 > 0.0 && flushed.0.is_subnormal(), "{flushed:?}");
        assert_eq!(flushed.1, 0.0);
        // This thread keeps IEEE subnormals.
        assert!(half_min().is_subnormal());
    }
}
