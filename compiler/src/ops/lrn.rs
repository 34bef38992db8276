//! lrn: local response normalisation across channels, the AlexNet paper's formula
//! b_c = a_c / (k + alpha * sum_{j in window(c)} a_j^2)^beta over `size` neighbouring
//! channels (window c - size/2 ..= c + (size-1)/2, clipped at the edges). Unlike Caffe and
//! PyTorch, alpha is not divided by size: their alpha is this alpha times size.

use super::registry::OpDef;
use super::{need_image, ArgDef, Op, Parsed, ShapeError, Ty};
use crate::diag::Diagnostic;

pub(super) const DEF: OpDef = OpDef {
    name: "lrn",
    aliases: &[],
    args: ARGS,
    example: "lrn(size=5)",
    named_inputs: false,
    main_call: false,
    parse: from_args,
};

const ARGS: &[ArgDef] = &[
    ("size", &["n", "local_size"], Ty::Int, false, false),
    ("alpha", &[], Ty::Float, false, false),
    ("beta", &[], Ty::Float, false, false),
    ("k", &["bias"], Ty::Float, false, false),
];

fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let size = p.int("size", 5);
    p.positive("size", size, errors);
    Op::Lrn {
        size,
        alpha: p.float("alpha", 1e-4),
        beta: p.float("beta", 0.75),
        k: p.float("k", 2.0),
    }
}

pub(super) fn describe(size: u64, alpha: f64, beta: f64, k: f64) -> String {
    format!("lrn[size={size}, alpha={alpha}, beta={beta}, k={k}]")
}

/// The channels `c` sums over: `lo..=hi` (clipped to 0..channels).
pub fn window(c: u64, size: u64, channels: u64) -> (u64, u64) {
    (
        c.saturating_sub(size / 2),
        (c + (size - 1) / 2).min(channels - 1),
    )
}

pub(super) fn infer(x: &[u64]) -> Result<Vec<u64>, ShapeError> {
    need_image("lrn", x)?;
    Ok(x.to_vec())
}

// ---------------------------------------------------------------------------------------------
// GPU: one invocation per element; the backward recomputes each neighbour's s from x.

use crate::kernels::{acc_tag, per_element, store_elem, KernelSource, ReadPath, Reads, Store};
use crate::program::{Builder, TensorId};

const TEMPLATE: &str = include_str!("../../../shaders/lrn.wgsl");

/// An lrn node's (size, alpha, beta, k); any other op gives the identity's settings.
fn settings(op: &Op) -> (u64, f64, f64, f64) {
    let Op::Lrn {
        size,
        alpha,
        beta,
        k,
    } = *op
    else {
        return (1, 0.0, 0.0, 1.0);
    };
    (size, alpha, beta, k)
}

fn kernel(
    op: &Op,
    shape: &[u64],
    batch: u64,
    backward: Option<Store>,
    path: ReadPath,
) -> KernelSource {
    let (size, alpha, beta, k) = settings(op);
    let (c, p) = (shape[0], shape[1] * shape[2]);
    let (reads, body, name) = match backward {
        None => (
            Reads::new(path).input(0, "x").output(1, "y", false),
            "y[i] = rd_x(i) * pow(scale(n, c, p), -BETA);".to_string(),
            "lrn_fwd".to_string(),
        ),
        Some(store) => (
            Reads::new(path)
                .input(0, "dy")
                .input(1, "x")
                .output(2, "dx", store == Store::Accumulate),
            format!(
                "let lo = c - min(c, (SIZE - 1u) / 2u);\n    \
                 let hi = min(C - 1u, c + SIZE / 2u);\n    \
                 var t = 0.0;\n    \
                 for (var j = lo; j <= hi; j++) {{\n        \
                 let e = (n * C + j) * P + p;\n        \
                 t += rd_dy(e) * rd_x(e) * pow(scale(n, j, p), -BETA - 1.0);\n    \
                 }}\n    \
                 let v = rd_dy(i) * pow(scale(n, c, p), -BETA) - 2.0 * ALPHA * BETA * rd_x(i) * t;\n    \
                 {}",
                store_elem(store, "dx", "i", "v")
            ),
            format!("lrn_bwd{}", acc_tag(store)),
        ),
    };
    per_element(
        format!("{name}[{batch}x{c}x{p} n{size}]"),
        TEMPLATE,
        batch * c * p,
        reads,
        (
            &[("C", c), ("P", p), ("SIZE", size)],
            &[],
            &[("ALPHA", alpha), ("BETA", beta), ("KK", k)],
        ),
        &[("BODY", body)],
    )
}

/// y = lrn(x); bindings [x, y].
pub fn forward_kernel(op: &Op, shape: &[u64], batch: u64, path: ReadPath) -> KernelSource {
    kernel(op, shape, batch, None, path)
}

/// dx (=|+=) the input gradient; bindings [dy, x, dx].
pub fn backward_kernel(
    op: &Op,
    shape: &[u64],
    batch: u64,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    kernel(op, shape, batch, Some(store), path)
}

pub(crate) fn lower_forward(
    b: &mut Builder,
    op: &Op,
    shape: &[u64],
    batch: u64,
    x: TensorId,
    y: TensorId,
    label: String,
) {
    b.emit(
        forward_kernel(op, shape, batch, b.reads()),
        vec![x, y],
        label,
    );
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_backward(
    b: &mut Builder,
    op: &Op,
    shape: &[u64],
    batch: u64,
    dy: TensorId,
    x: TensorId,
    dx: (TensorId, Store),
    label: String,
) {
    b.emit(
        backward_kernel(op, shape, batch, dx.1, b.reads()),
        vec![dy, x, dx.0],
        label,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::validate;

    #[test]
    fn every_kernel_validates_on_every_read_path() {
        let op = Op::Lrn {
            size: 5,
            alpha: 1e-4,
            beta: 0.75,
            k: 2.0,
        };
        for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            for k in [
                forward_kernel(&op, &[7, 3, 4], 2, path),
                backward_kernel(&op, &[7, 3, 4], 2, Store::Write, path),
                backward_kernel(&op, &[7, 3, 4], 2, Store::Accumulate, path),
            ] {
                validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
            }
        }
    }

    #[test]
    fn window_is_clipped_at_the_edges() {
        assert_eq!(window(0, 5, 7), (0, 2));
        assert_eq!(window(6, 5, 7), (4, 6));
        assert_eq!(window(3, 4, 7), (1, 4));
    }
}
