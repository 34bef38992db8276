//! The CPU reference executor: every op's forward and backward the straightforward way, on
//! ndarray (its matrix product for dense layers), generic over f32 (training on `--device cpu`)
//! and f64 (gradient checking). It is the oracle the WGSL kernels are tested against, so it
//! follows the same conventions: activations are [batch, features] row-major (CHW features),
//! dense weights are [out, in], losses are computed from logits.

use ndarray::{Array2, ArrayView2, Axis};
use netc_compiler::ir::Network;
use netc_compiler::kernels::dropout_keep;
use netc_compiler::ops::{Init, Op};
use petgraph::graph::NodeIndex;
use std::collections::HashMap;
use std::fmt::Debug;

use crate::rng::Rng;

/// The float types the reference runs in.
pub trait Real: ndarray::LinalgScalar + num_traits::Float + Debug + Send + Sync + 'static {
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CpuError {
    #[error("layer `{layer}`: op `{op}` is not supported by the CPU executor yet")]
    Unsupported { layer: String, op: String },
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

/// Values of every node for one batch.
pub struct Activations<T> {
    pub values: HashMap<NodeIndex, Array2<T>>,
    pub train: bool,
    pub seed: u32,
}

impl<T: Real> Activations<T> {
    pub fn get(&self, n: NodeIndex) -> &Array2<T> {
        &self.values[&n]
    }
}

fn numel(s: &[u64]) -> usize {
    s.iter().product::<u64>() as usize
}

fn act_forward<T: Real>(op: &Op, x: T) -> T {
    match op {
        Op::Relu => x.max(T::zero()),
        Op::LeakyRelu { alpha } => {
            if x > T::zero() {
                x
            } else {
                x * T::of(*alpha)
            }
        }
        Op::Sigmoid => {
            if x >= T::zero() {
                T::one() / (T::one() + (-x).exp())
            } else {
                x.exp() / (T::one() + x.exp())
            }
        }
        Op::Tanh => x.tanh(),
        _ => x,
    }
}

/// f'(x) written in terms of the output y (as the kernels do).
fn act_derivative<T: Real>(op: &Op, y: T) -> T {
    match op {
        Op::Relu => {
            if y > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Op::LeakyRelu { alpha } => {
            if y > T::zero() {
                T::one()
            } else {
                T::of(*alpha)
            }
        }
        Op::Sigmoid => y * (T::one() - y),
        Op::Tanh => T::one() - y * y,
        _ => T::one(),
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
    let mut values: HashMap<NodeIndex, Array2<T>> = HashMap::new();
    for &n in &net.order {
        let node = &net.graph[n];
        let ins = net.inputs_of(n);
        let y = match &node.op {
            Op::Input { shape } => {
                if x.ncols() != numel(shape) {
                    return Err(CpuError::InputSize {
                        net: net.name.clone(),
                        got: x.ncols(),
                        want: numel(shape),
                    });
                }
                x.to_owned()
            }
            Op::Dense { bias, .. } => {
                let xin = &values[&ins[0]];
                let w = p.matrix(&format!("{}.weight", node.name));
                let mut y = xin.dot(&w.t());
                if *bias {
                    let b = p.vector(&format!("{}.bias", node.name));
                    for mut row in y.rows_mut() {
                        for (v, &bj) in row.iter_mut().zip(b) {
                            *v = *v + bj;
                        }
                    }
                }
                y
            }
            op @ (Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh) => {
                values[&ins[0]].mapv(|v| act_forward(op, v))
            }
            Op::Softmax => {
                let mut y = values[&ins[0]].clone();
                for mut row in y.rows_mut() {
                    let mx = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                    row.mapv_inplace(|v| (v - mx).exp());
                    let s = row.sum();
                    row.mapv_inplace(|v| v / s);
                }
                y
            }
            Op::Add => {
                let mut y = values[&ins[0]].clone();
                for i in &ins[1..] {
                    y = y + &values[i];
                }
                y
            }
            Op::Flatten | Op::Reshape { .. } => values[&ins[0]].clone(),
            Op::Dropout { p: prob } => {
                let xin = &values[&ins[0]];
                if train && *prob > 0.0 {
                    let scale = T::of(1.0 / (1.0 - prob));
                    let mut y = xin.clone();
                    for (i, v) in y.iter_mut().enumerate() {
                        *v = if dropout_keep(seed, i as u32, *prob) {
                            *v * scale
                        } else {
                            T::zero()
                        };
                    }
                    y
                } else {
                    xin.clone()
                }
            }
            other => {
                return Err(CpuError::Unsupported {
                    layer: node.name.clone(),
                    op: other.name().into(),
                })
            }
        };
        values.insert(n, y);
    }
    Ok(Activations {
        values,
        train,
        seed,
    })
}

/// Backward pass from the gradient `dy` at node `from` (the logit node when the loss is
/// computed from logits). Returns a gradient per parameter (None for frozen or unreached ones)
/// and the gradient at the network input.
pub fn backward<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    from: NodeIndex,
    dy: Array2<T>,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    backward_opt(net, p, acts, from, dy, true)
}

/// [`backward`], skipping the gradient at the network input unless `input_grad` (it is the
/// largest product of a first dense layer, and a classifier does not need it); without it the
/// returned input gradient is empty (0x0), not a batch of zeros allocated every step.
pub fn backward_opt<T: Real>(
    net: &Network,
    p: &Params<T>,
    acts: &Activations<T>,
    from: NodeIndex,
    dy: Array2<T>,
    input_grad: bool,
) -> (Vec<Option<Vec<T>>>, Array2<T>) {
    let input = net.inputs[0];
    let mut grads: HashMap<NodeIndex, Array2<T>> = HashMap::new();
    grads.insert(from, dy);
    let mut pgrads: Vec<Option<Vec<T>>> = vec![None; p.names.len()];
    let start = net.order.iter().position(|&n| n == from).unwrap_or(0);
    let add_grad =
        |grads: &mut HashMap<NodeIndex, Array2<T>>, n: NodeIndex, g: Array2<T>| match grads
            .get_mut(&n)
        {
            Some(acc) => *acc = &*acc + &g,
            None => {
                grads.insert(n, g);
            }
        };
    for &n in net.order[..=start].iter().rev() {
        if n == input {
            // Its gradient is the result: leave it in the map.
            continue;
        }
        let Some(dy) = grads.remove(&n) else {
            continue;
        };
        // The input's gradient is only computed when asked for.
        let wanted = |i: NodeIndex| i != input || input_grad;
        let node = &net.graph[n];
        let ins = net.inputs_of(n);
        match &node.op {
            Op::Input { .. } => {}
            Op::Dense { bias, .. } => {
                let x = acts.get(ins[0]);
                let wname = format!("{}.weight", node.name);
                let w = p.matrix(&wname);
                if let Some(i) = p.index(&wname) {
                    // The product is a fresh standard-layout array: take its buffer, no copy.
                    let gw = dy.t().dot(x);
                    pgrads[i] = Some(if gw.is_standard_layout() {
                        gw.into_raw_vec_and_offset().0
                    } else {
                        gw.iter().copied().collect()
                    });
                }
                if *bias {
                    if let Some(i) = p.index(&format!("{}.bias", node.name)) {
                        pgrads[i] = Some(dy.sum_axis(Axis(0)).to_vec());
                    }
                }
                if wanted(ins[0]) {
                    add_grad(&mut grads, ins[0], dy.dot(&w));
                }
            }
            op @ (Op::Relu | Op::LeakyRelu { .. } | Op::Sigmoid | Op::Tanh) => {
                let y = acts.get(n);
                let mut dx = dy.clone();
                dx.zip_mut_with(y, |d, &yv| *d = *d * act_derivative(op, yv));
                add_grad(&mut grads, ins[0], dx);
            }
            Op::Softmax => {
                let y = acts.get(n);
                let mut dx = dy.clone();
                for (mut drow, yrow) in dx.rows_mut().into_iter().zip(y.rows()) {
                    let dot = drow
                        .iter()
                        .zip(yrow.iter())
                        .fold(T::zero(), |a, (&d, &v)| a + d * v);
                    for (d, &v) in drow.iter_mut().zip(yrow.iter()) {
                        *d = v * (*d - dot);
                    }
                }
                add_grad(&mut grads, ins[0], dx);
            }
            Op::Add => {
                for &i in &ins {
                    add_grad(&mut grads, i, dy.clone());
                }
            }
            Op::Flatten | Op::Reshape { .. } => add_grad(&mut grads, ins[0], dy),
            Op::Dropout { p: prob } => {
                let dx = if acts.train && *prob > 0.0 {
                    let scale = T::of(1.0 / (1.0 - prob));
                    let mut dx = dy.clone();
                    for (i, v) in dx.iter_mut().enumerate() {
                        *v = if dropout_keep(acts.seed, i as u32, *prob) {
                            *v * scale
                        } else {
                            T::zero()
                        };
                    }
                    dx
                } else {
                    dy
                };
                add_grad(&mut grads, ins[0], dx);
            }
            _ => {}
        }
    }
    for (i, t) in p.trainable.iter().enumerate() {
        if !t {
            pgrads[i] = None;
        }
    }
    let dinput = match grads.remove(&input) {
        Some(d) => d,
        None if input_grad => Array2::zeros(acts.get(input).raw_dim()),
        None => Array2::zeros((0, 0)),
    };
    (pgrads, dinput)
}

/// Sums over a batch: loss, top-1 correct, top-5 correct, rows (as the GPU stats buffer holds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    pub loss: f64,
    pub correct: f64,
    pub top5: f64,
    pub rows: f64,
}

impl LossStats {
    pub fn add(&mut self, o: LossStats) {
        self.loss += o.loss;
        self.correct += o.correct;
        self.top5 += o.top5;
        self.rows += o.rows;
    }
    pub fn from_slice(v: &[f32]) -> LossStats {
        let g = |i: usize| v.get(i).copied().unwrap_or(0.0) as f64;
        LossStats {
            loss: g(0),
            correct: g(1),
            top5: g(2),
            rows: g(3),
        }
    }
}

/// Softmax cross-entropy from logits: (batch sums, scale * dlogits). A row whose target is all
/// zero is batch padding: its gradient is zero and it adds nothing to the sums (as on the GPU).
pub fn softmax_xent<T: Real>(z: &Array2<T>, t: &Array2<T>, scale: f64) -> (LossStats, Array2<T>) {
    let mut dz = z.clone();
    let mut loss = 0.0;
    let mut correct = 0;
    let mut top5 = 0;
    let mut rows = 0;
    for ((zr, tr), mut dr) in z.rows().into_iter().zip(t.rows()).zip(dz.rows_mut()) {
        if !tr.iter().any(|&v| v > T::zero()) {
            dr.fill(T::zero());
            continue;
        }
        rows += 1;
        let mx = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = mx + zr.iter().fold(T::zero(), |a, &v| a + (v - mx).exp()).ln();
        for ((d, &zv), &tv) in dr.iter_mut().zip(zr.iter()).zip(tr.iter()) {
            loss += (tv * (lse - zv)).f64();
            *d = T::of(scale) * ((zv - lse).exp() - tv);
        }
        let target = argmax(tr.iter().copied());
        if argmax(zr.iter().copied()) == target {
            correct += 1;
        }
        if zr.iter().filter(|&&v| v > zr[target]).count() < 5 {
            top5 += 1;
        }
    }
    let stats = LossStats {
        loss,
        correct: correct as f64,
        top5: top5 as f64,
        rows: rows as f64,
    };
    (stats, dz)
}

fn argmax<T: Real>(it: impl Iterator<Item = T>) -> usize {
    let mut best = (0, T::neg_infinity());
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Binary cross-entropy from logits (one per row): (batch sums, scale * dz).
pub fn bce_logits<T: Real>(z: &Array2<T>, t: &Array2<T>, scale: f64) -> (LossStats, Array2<T>) {
    let mut dz = z.clone();
    let mut loss = 0.0;
    let mut correct = 0;
    for ((d, &x), &y) in dz.iter_mut().zip(z.iter()).zip(t.iter()) {
        loss += (x.max(T::zero()) - x * y + (T::one() + (-x.abs()).exp()).ln()).f64();
        *d = T::of(scale) * (act_forward(&Op::Sigmoid, x) - y);
        if (x > T::zero()) == (y > T::of(0.5)) {
            correct += 1;
        }
    }
    let c = correct as f64;
    (
        LossStats {
            loss,
            correct: c,
            top5: c,
            rows: z.len() as f64,
        },
        dz,
    )
}

/// Optimizer state of one network on the CPU (velocity, or Adam's two moments).
#[derive(Debug, Clone, PartialEq)]
pub struct OptState<T> {
    pub slots: Vec<Vec<Vec<T>>>,
    pub step: u64,
}

impl<T: Real> OptState<T> {
    pub fn new(p: &Params<T>, opt: &netc_compiler::schedule::Optimizer) -> Self {
        let n = match opt {
            netc_compiler::schedule::Optimizer::Sgd { .. } => 1,
            netc_compiler::schedule::Optimizer::Adam { .. } => 2,
        };
        OptState {
            slots: (0..n)
                .map(|_| p.values.iter().map(|v| vec![T::zero(); v.len()]).collect())
                .collect(),
            step: 0,
        }
    }
}

/// One optimizer step with learning rate `lr`; the same formulas as shaders/sgd.wgsl and adam.wgsl.
pub fn apply_update<T: Real>(
    p: &mut Params<T>,
    grads: &[Option<Vec<T>>],
    st: &mut OptState<T>,
    opt: &netc_compiler::schedule::Optimizer,
    lr: f64,
) {
    use netc_compiler::schedule::Optimizer;
    st.step += 1;
    for (i, g) in grads.iter().enumerate() {
        let Some(g) = g else { continue };
        match *opt {
            Optimizer::Sgd {
                momentum,
                weight_decay,
            } => {
                let (wd, mu, lr) = (T::of(weight_decay), T::of(momentum), T::of(lr));
                // Zipped iterators: no bounds checks, so the loop vectorises.
                for ((w, v), &g) in p.values[i].iter_mut().zip(st.slots[0][i].iter_mut()).zip(g) {
                    *v = mu * *v + (g + wd * *w);
                    *w = *w - lr * *v;
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let c1 = 1.0 - beta1.powi(st.step as i32);
                let c2 = 1.0 - beta2.powi(st.step as i32);
                let (m, v) = st.slots.split_at_mut(1);
                let (b1, b2, wd, e) = (T::of(beta1), T::of(beta2), T::of(weight_decay), T::of(eps));
                let (nb1, nb2, ic1, ic2, lr) = (
                    T::of(1.0 - beta1),
                    T::of(1.0 - beta2),
                    T::of(1.0 / c1),
                    T::of(1.0 / c2),
                    T::of(lr),
                );
                let rows = p.values[i]
                    .iter_mut()
                    .zip(m[0][i].iter_mut())
                    .zip(v[0][i].iter_mut())
                    .zip(g);
                for (((w, m), v), &g) in rows {
                    let grad = g + wd * *w;
                    *m = b1 * *m + nb1 * grad;
                    *v = b2 * *v + nb2 * grad * grad;
                    *w = *w - lr * (*m * ic1) / ((*v * ic2).sqrt() + e);
                }
            }
        }
    }
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
