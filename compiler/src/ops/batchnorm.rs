//! batchnorm: per-channel (CxHxW) or per-feature normalisation, as PyTorch's BatchNorm2d and
//! BatchNorm1d: in training, each channel is normalised with its batch mean and biased
//! variance and the running mean and (unbiased) variance move towards them by `momentum`; in
//! evaluation the running statistics are used. The trainable scale and shift (gamma and beta)
//! are named `weight` and `bias` as in PyTorch's state_dict; the running statistics are state,
//! not parameters: saved and restored, never trained.

use super::registry::OpDef;
use super::{mul, ArgDef, InferCx, Op, Parsed, ShapeError, Ty};
use crate::ops::Init;

pub(super) const DEF: OpDef = OpDef {
    name: "batchnorm",
    aliases: &["batch_norm", "bn"],
    args: ARGS,
    example: "batchnorm",
    named_inputs: false,
    main_call: true,
    parse: |p, _| from_args(p),
};

const ARGS: &[ArgDef] = &[
    ("eps", &["epsilon"], Ty::Float, false, false),
    ("momentum", &[], Ty::Float, false, false),
];

fn from_args(p: &Parsed) -> Op {
    Op::BatchNorm {
        eps: p.float("eps", 1e-5),
        momentum: p.float("momentum", 0.1),
    }
}

pub(super) fn describe(eps: f64, momentum: f64) -> String {
    format!("batchnorm[eps={eps}, momentum={momentum}]")
}

pub(super) fn infer(cx: &mut InferCx, x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    let c = *x.first().unwrap_or(&1);
    cx.stats.params = mul(4, c)?;
    cx.stats.trainable = mul(2, c)?;
    cx.weight("weight", vec![c], c, c);
    cx.bias("bias", vec![c], c, c);
    cx.state("running_mean", vec![c], Init::Constant(0.0), c);
    cx.state("running_var", vec![c], Init::Constant(1.0), c);
    Ok(x.to_vec())
}

/// Channels and pixels per channel of a batchnorm over one example of `shape`: CxHxW is
/// normalised per channel over H*W pixels (and the batch), a flat vector per feature.
pub fn channels(shape: &[u64]) -> (u64, u64) {
    let c = shape.first().copied().unwrap_or(1).max(1);
    (c, shape.iter().product::<u64>() / c)
}

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering. The per-channel kernels (statistics, backward sums) run one
// invocation per channel over the batch and the channel's pixels, as the conv bias gradient
// does: simple and exact, with as many invocations as channels (64-128 in a DCGAN); a
// workgroup reduction per channel is the known next step for GPUs with thousands of lanes.

use crate::kernels::{acc_tag, per_element, store_elem, KernelSource, ReadPath, Reads, Store};
use crate::program::{Builder, Kind, TensorId};

const STATS: &str = include_str!("../../../shaders/batchnorm_stats.wgsl");
const APPLY: &str = include_str!("../../../shaders/batchnorm_apply.wgsl");
const SUMS: &str = include_str!("../../../shaders/batchnorm_sums.wgsl");
const DX: &str = include_str!("../../../shaders/batchnorm_dx.wgsl");

/// Channels, pixels per channel and batch of one batchnorm dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub channels: u64,
    pub pixels: u64,
    pub batch: u64,
}

impl Sizes {
    pub fn of(shape: &[u64], batch: u64) -> Sizes {
        let (channels, pixels) = channels(shape);
        Sizes {
            channels,
            pixels,
            batch,
        }
    }
    fn tag(&self) -> String {
        format!("{}x{}x{}", self.batch, self.channels, self.pixels)
    }
    /// Values per channel.
    fn m(&self) -> u64 {
        self.batch * self.pixels
    }
}

/// saved = [mean, 1/std] per channel: training, from the batch (bindings [x, saved,
/// running_mean, running_var], the running statistics updated); evaluation, from the running
/// statistics (bindings [running_mean, running_var, saved]).
pub fn stats_kernel(
    s: Sizes,
    eps: f64,
    momentum: f64,
    train: bool,
    path: ReadPath,
) -> KernelSource {
    let m = s.m();
    let (reads, body) = if train {
        let reads = Reads::new(path)
            .input(0, "x")
            .output(1, "saved", false)
            .output(2, "rm", true)
            .output(3, "rv", true);
        let body = "var sum = 0.0;\n    \
             for (var n = 0u; n < N; n++) { for (var p = 0u; p < P; p++) { sum += rd_x((n * LEN + c) * P + p); } }\n    \
             let mean = sum / MF;\n    \
             var dev = 0.0;\n    \
             for (var n = 0u; n < N; n++) { for (var p = 0u; p < P; p++) { let d = rd_x((n * LEN + c) * P + p) - mean; dev += d * d; } }\n    \
             let v = dev / MF;\n    \
             saved[c] = mean;\n    \
             saved[LEN + c] = 1.0 / sqrt(v + EPS);\n    \
             rm[c] = KEEP * rd_rm(c) + MOMENTUM * mean;\n    \
             rv[c] = KEEP * rd_rv(c) + MOMENTUM * v * UNBIAS;";
        (reads, body)
    } else {
        let reads = Reads::new(path)
            .input(0, "rm")
            .input(1, "rv")
            .output(2, "saved", false);
        (
            reads,
            "saved[c] = rd_rm(c);\n    saved[LEN + c] = 1.0 / sqrt(rd_rv(c) + EPS);",
        )
    };
    // PyTorch's unbiased running variance; a single value per channel has none.
    let unbias = if m > 1 {
        m as f64 / (m - 1) as f64
    } else {
        1.0
    };
    per_element(
        format!(
            "batchnorm_stats[{}{}]",
            s.tag(),
            if train { " train" } else { "" }
        ),
        STATS,
        s.channels,
        reads,
        (
            &[("N", s.batch), ("P", s.pixels)],
            &[],
            &[
                ("MF", m as f64),
                ("EPS", eps),
                ("MOMENTUM", momentum),
                ("KEEP", 1.0 - momentum),
                ("UNBIAS", unbias),
            ],
        ),
        &[("BODY", body.to_string())],
    )
}

/// y = weight * (x - mean) / std + bias; bindings [x, saved, weight, bias, y].
pub fn apply_kernel(s: Sizes, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "x")
        .input(1, "saved")
        .input(2, "w")
        .input(3, "b")
        .output(4, "y", false);
    per_element(
        format!("batchnorm[{}]", s.tag()),
        APPLY,
        s.batch * s.channels * s.pixels,
        reads,
        (&[("C", s.channels), ("P", s.pixels)], &[], &[]),
        &[],
    )
}

/// Per channel sum(dy) and sum(dy * xhat) into `sums`, and (=|+=) into the weight and bias
/// gradients with `store`; bindings [dy, x, saved, sums, (gw, gb)].
pub fn sums_kernel(s: Sizes, store: Option<Store>, path: ReadPath) -> KernelSource {
    let mut reads = Reads::new(path)
        .input(0, "dy")
        .input(1, "x")
        .input(2, "saved")
        .output(3, "sums", false);
    let mut stores = String::new();
    if let Some(st) = store {
        let acc = st == Store::Accumulate;
        reads = reads.output(4, "gw", acc).output(5, "gb", acc);
        stores = format!(
            "{}\n    {}",
            store_elem(st, "gw", "c", "sx"),
            store_elem(st, "gb", "c", "s")
        );
    }
    per_element(
        format!(
            "batchnorm_sums[{}{}]",
            s.tag(),
            store.map_or(" frozen", acc_tag)
        ),
        SUMS,
        s.channels,
        reads,
        (&[("N", s.batch), ("P", s.pixels)], &[], &[]),
        &[("STORE", stores)],
    )
}

/// dx (=|+=) the input gradient; bindings [dy, x, saved, weight, sums, dx].
pub fn dx_kernel(s: Sizes, train: bool, store: Store, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "dy")
        .input(1, "x")
        .input(2, "saved")
        .input(3, "w")
        .input(4, "sums")
        .output(5, "dx", store == Store::Accumulate);
    let grad = if train {
        "rd_w(c) * inv_std * (rd_dy(i) - (rd_sums(c) + xhat * rd_sums(C + c)) / MF)"
    } else {
        "rd_w(c) * inv_std * rd_dy(i)"
    };
    per_element(
        format!(
            "batchnorm_dx[{}{}{}]",
            s.tag(),
            if train { " train" } else { "" },
            acc_tag(store)
        ),
        DX,
        s.batch * s.channels * s.pixels,
        reads,
        (
            &[("C", s.channels), ("P", s.pixels)],
            &[],
            &[("MF", s.m() as f64)],
        ),
        &[
            ("GRAD", grad.to_string()),
            ("STORE", store_elem(store, "dx", "i", "g")),
        ],
    )
}

/// A batchnorm node's tensors on the device: weight, bias, running mean, running variance.
pub struct NodeTensors {
    pub weight: TensorId,
    pub bias: TensorId,
    pub running_mean: TensorId,
    pub running_var: TensorId,
}

/// The forward dispatches of a batchnorm node; returns the per-channel [mean, 1/std] its
/// backward reads (a tensor of 2 x channels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_forward(
    b: &mut Builder,
    (eps, momentum): (f64, f64),
    shape: &[u64],
    batch: u64,
    train: bool,
    x: TensorId,
    y: TensorId,
    t: &NodeTensors,
    name: &str,
    label: String,
) -> TensorId {
    let s = Sizes::of(shape, batch);
    let saved = b.tensor(format!("{name}.saved"), 2 * s.channels, Kind::Activation);
    let stats = stats_kernel(s, eps, momentum, train, b.reads());
    let bindings = if train {
        vec![x, saved, t.running_mean, t.running_var]
    } else {
        vec![t.running_mean, t.running_var, saved]
    };
    b.emit(stats, bindings, label.clone());
    b.emit(
        apply_kernel(s, b.reads()),
        vec![x, saved, t.weight, t.bias, y],
        label,
    );
    saved
}

/// The gradient dispatches of a batchnorm node: the weight and bias gradients when they are
/// trained (`grads`), and the input gradient when something upstream needs it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    shape: &[u64],
    batch: u64,
    train: bool,
    (dy, x, saved, w): (TensorId, TensorId, TensorId, TensorId),
    grads: Option<(TensorId, TensorId)>,
    dx: Option<(TensorId, Store)>,
    name: &str,
    label: &dyn Fn(&str) -> String,
) {
    let s = Sizes::of(shape, batch);
    let sums = b.tensor(format!("{name}.sums"), 2 * s.channels, Kind::Activation);
    let mut bindings = vec![dy, x, saved, sums];
    if let Some((gw, gb)) = grads {
        bindings.extend([gw, gb]);
    }
    let store = grads.map(|_| b.param_store());
    b.emit(
        sums_kernel(s, store, b.reads()),
        bindings,
        label("backward weight"),
    );
    if let Some((dx, st)) = dx {
        b.emit(
            dx_kernel(s, train, st, b.reads()),
            vec![dy, x, saved, w, sums, dx],
            label("backward input"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::validate;

    #[test]
    fn every_kernel_validates_on_every_read_path() {
        let s = Sizes::of(&[5, 3, 7], 3);
        for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            let mut all = vec![apply_kernel(s, path)];
            for train in [true, false] {
                all.push(stats_kernel(s, 1e-5, 0.1, train, path));
                for st in [Store::Write, Store::Accumulate] {
                    all.push(dx_kernel(s, train, st, path));
                    all.push(sums_kernel(s, Some(st), path));
                }
            }
            all.push(sums_kernel(s, None, path));
            for k in all {
                validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
            }
        }
    }
}
