//! WGSL kernel generation: the templates in shaders/ specialised with static sizes and flags.
//! Shapes are known when a schedule is built, so every size is a constant in the shader text.
//! This module does not depend on wgpu; [`validate`] checks generated WGSL with naga.

/// A specialised kernel and its dispatch size. `source` is complete WGSL with entry `main`.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSource {
    /// Template and specialisation, e.g. `matmul[128x784x128 tb bias relu]`.
    pub name: String,
    pub source: String,
    pub groups: [u32; 3],
}

const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const UNARY: &str = include_str!("../../shaders/unary.wgsl");
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const SOFTMAX_XENT: &str = include_str!("../../shaders/softmax_xent.wgsl");
const BCE_LOGITS: &str = include_str!("../../shaders/bce_logits.wgsl");
const REDUCE_STATS: &str = include_str!("../../shaders/reduce_stats.wgsl");
const BIAS_GRAD: &str = include_str!("../../shaders/bias_grad.wgsl");
const SGD: &str = include_str!("../../shaders/sgd.wgsl");
const ADAM: &str = include_str!("../../shaders/adam.wgsl");

/// wgpu's guaranteed maximum workgroups per dispatch dimension.
const MAX_GROUPS: u64 = 65_535;

fn fill(template: &str, subs: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in subs {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    debug_assert!(!s.contains("{{"), "unfilled placeholder in kernel template");
    s
}

/// WGSL float literal that round-trips an f32 exactly.
pub fn f32_lit(x: f64) -> String {
    let v = x as f32;
    if v.is_finite() {
        let s = format!("{v:?}");
        if s.contains(['.', 'e']) {
            s
        } else {
            format!("{s}.0")
        }
    } else if v.is_nan() {
        "0.0".into()
    } else if v > 0.0 {
        "3.4028235e38".into()
    } else {
        "-3.4028235e38".into()
    }
}

/// 1-D work of `len` threads of a 256-wide workgroup, folded into 2-D under the dispatch limit.
/// Returns (groups, threads per dispatch row).
fn grid_1d(len: u64) -> ([u32; 3], u64) {
    let groups = len.div_ceil(256).max(1);
    if groups <= MAX_GROUPS {
        return ([groups as u32, 1, 1], groups * 256);
    }
    let rows = groups.div_ceil(MAX_GROUPS);
    ([MAX_GROUPS as u32, rows as u32, 1], MAX_GROUPS * 256)
}

/// How a kernel writes its result: overwrite, or add to what an earlier gradient put there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Write,
    Accumulate,
}

/// Activations, as fused into matmul or run on their own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Tanh,
}

impl Act {
    fn forward_expr(self, x: &str) -> String {
        match self {
            Act::Identity => x.to_string(),
            Act::Relu => format!("max({x}, 0.0)"),
            Act::LeakyRelu(a) => format!("select({x} * {}, {x}, {x} > 0.0)", f32_lit(a)),
            // Stable for both signs: exp of a non-positive number only.
            Act::Sigmoid => {
                format!("select(exp({x}) / (1.0 + exp({x})), 1.0 / (1.0 + exp(-{x})), {x} >= 0.0)")
            }
            // WGSL's tanh overflows to NaN for large |x| on some drivers; clamp (tanh(15) == 1 in f32).
            Act::Tanh => format!("tanh(clamp({x}, -15.0, 15.0))"),
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Act::Identity => "",
            Act::Relu => " relu",
            Act::LeakyRelu(_) => " leaky_relu",
            Act::Sigmoid => " sigmoid",
            Act::Tanh => " tanh",
        }
    }
}

/// A matrix product C[M,N] = op(A) * op(B) (+ bias) (activation). `trans_a`: A is stored
/// [K,M]; `trans_b`: B is stored [N,K]. Bias is binding 3 when present.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    pub bias: bool,
    pub act: Act,
    pub store: Store,
}

impl Gemm {
    /// A plain product without transposes, bias or activation.
    pub fn new(m: u64, n: u64, k: u64) -> Gemm {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            bias: false,
            act: Act::Identity,
            store: Store::Write,
        }
    }
}

/// How invocations tile the output. Each loaded operand feeds `cols` (A) or `rows` (B)
/// multiply-adds held in registers, so bigger tiles do fewer loads per FLOP: on lavapipe
/// (Mesa 22) a storage-buffer load costs about 60 ns per 8 lanes, so loads bound throughput.
/// The 64 invocations of a workgroup run along the columns (neighbours read neighbouring
/// columns of B), or along the rows when the output has fewer than 64 columns, so skinny
/// products (a 1-unit logit layer) do not leave most invocations idle. The tile shrinks for
/// small outputs so at least 4 workgroups keep the cores (or SMs) busy.
struct Tile {
    rows: u64,
    cols: u64,
    lanes_on_rows: bool,
}

fn matmul_tile(m: u64, n: u64) -> Tile {
    if n < 64 && m >= 64 {
        let cols = n.clamp(1, 16);
        let groups_y = n.div_ceil(cols);
        let mut rows = (m / 64).clamp(1, 16);
        while rows > 1 && m.div_ceil(64 * rows) * groups_y < 4 {
            rows /= 2;
        }
        return Tile {
            rows,
            cols,
            lanes_on_rows: true,
        };
    }
    let cols = (n / 64).clamp(1, 16);
    let groups_x = n.div_ceil(64 * cols);
    let mut rows = 32;
    while rows > 4 && m.div_ceil(rows) * groups_x < 4 {
        rows /= 2;
    }
    Tile {
        rows,
        cols,
        lanes_on_rows: false,
    }
}

/// Row `i` and column `j` of an invocation's tile (unclamped WGSL expressions).
fn tile_index(lanes_on_rows: bool, i_or_j: u64, is_row: bool) -> String {
    match (lanes_on_rows, is_row) {
        (true, true) => format!("r0 + {}u", 64 * i_or_j),
        (true, false) => format!("c0 + {i_or_j}u"),
        (false, true) => format!("r0 + {i_or_j}u"),
        (false, false) => format!("c0 + {}u", 64 * i_or_j),
    }
}

pub fn matmul(g: Gemm) -> KernelSource {
    let Gemm {
        m,
        n,
        k,
        trans_a,
        trans_b,
        bias,
        act,
        store,
    } = g;
    let name = format!(
        "matmul[{m}x{n}x{k}{}{}{}{}{}]",
        if trans_a { " ta" } else { "" },
        if trans_b { " tb" } else { "" },
        if bias { " bias" } else { "" },
        act.tag(),
        if store == Store::Accumulate {
            " acc"
        } else {
            ""
        }
    );
    let Tile {
        rows: r,
        cols,
        lanes_on_rows,
    } = matmul_tile(m, n);
    let a_index = if trans_a { "k * M + m" } else { "m * K + k" };
    let b_index = if trans_b { "n * K + k" } else { "k * N + n" };
    let row = |i: u64| tile_index(lanes_on_rows, i, true);
    let col = |j: u64| tile_index(lanes_on_rows, j, false);
    let (mut body, groups) = if lanes_on_rows {
        (
            format!(
                "    let r0 = wg.x * {}u + lid.x;\n    let c0 = wg.y * {cols}u;\n",
                64 * r
            ),
            [
                m.div_ceil(64 * r).max(1) as u32,
                n.div_ceil(cols).max(1) as u32,
                1,
            ],
        )
    } else {
        (
            format!(
                "    let r0 = wg.y * {r}u;\n    let c0 = wg.x * {}u + lid.x;\n",
                64 * cols
            ),
            [
                n.div_ceil(64 * cols).max(1) as u32,
                m.div_ceil(r).max(1) as u32,
                1,
            ],
        )
    };
    // The body is unrolled here so no local array is indexed dynamically; indices are clamped
    // instead of branched on in the inner loop, and only in-range elements are stored.
    for j in 0..cols {
        body.push_str(&format!("    let col{j} = min({}, N - 1u);\n", col(j)));
    }
    for i in 0..r {
        body.push_str(&format!("    let row{i} = min({}, M - 1u);\n", row(i)));
        for j in 0..cols {
            body.push_str(&format!("    var acc{i}_{j} = 0.0;\n"));
        }
    }
    body.push_str("    for (var k = 0u; k < K; k++) {\n");
    for j in 0..cols {
        body.push_str(&format!("        let b{j} = load_b(k, col{j});\n"));
    }
    for i in 0..r {
        body.push_str(&format!("        let a{i} = load_a(row{i}, k);\n"));
        for j in 0..cols {
            body.push_str(&format!(
                "        acc{i}_{j} = fma(a{i}, b{j}, acc{i}_{j});\n"
            ));
        }
    }
    body.push_str("    }\n");
    let store_expr = |idx: &str, v: &str| match store {
        Store::Write => format!("c[{idx}] = {v};"),
        Store::Accumulate => format!("c[{idx}] = c[{idx}] + {v};"),
    };
    for i in 0..r {
        body.push_str(&format!("    if ({} < M) {{\n", row(i)));
        for j in 0..cols {
            let mut v = format!("acc{i}_{j}");
            if bias {
                v = format!("({v} + bias[col{j}])");
            }
            let v = act.forward_expr(&v);
            body.push_str(&format!(
                "        if ({} < N) {{ let v = {v}; {} }}\n",
                col(j),
                store_expr(&format!("({}) * N + {}", row(i), col(j)), "v")
            ));
        }
        body.push_str("    }\n");
    }
    let source = fill(
        MATMUL,
        &[
            ("M", m.to_string()),
            ("N", n.to_string()),
            ("K", k.to_string()),
            ("A_INDEX", a_index.into()),
            ("B_INDEX", b_index.into()),
            (
                "BIAS_DECL",
                if bias {
                    "@group(0) @binding(3) var<storage, read> bias: array<f32>;".into()
                } else {
                    String::new()
                },
            ),
            ("BODY", body),
        ],
    );
    KernelSource {
        name,
        source,
        groups,
    }
}

fn unary_kernel(name: String, len: u64, decls: &str, body: String) -> KernelSource {
    let (groups, row) = grid_1d(len);
    let source = fill(
        UNARY,
        &[
            ("LEN", len.to_string()),
            ("ROW", row.to_string()),
            ("DECLS", decls.into()),
            ("BODY", body),
        ],
    );
    KernelSource {
        name,
        source,
        groups,
    }
}

/// y = act(x) over `len` elements.
pub fn activation_forward(act: Act, len: u64) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read_write> y: array<f32>;";
    unary_kernel(
        format!("act_fwd[{}{len}]", act.tag().trim_start().to_string() + " "),
        len,
        decls,
        format!("y[i] = {};", act.forward_expr("x[i]")),
    )
}

/// dx (=|+=) dy * act'(.): relu, sigmoid and tanh use the forward output y; leaky_relu uses x
/// (binding 1 holds whichever the rule needs).
pub fn activation_backward(act: Act, len: u64, store: Store) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> dy: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read> saved: array<f32>;\n\
                 @group(0) @binding(2) var<storage, read_write> dx: array<f32>;";
    let d = match act {
        Act::Identity => "dy[i]".to_string(),
        Act::Relu => "select(0.0, dy[i], saved[i] > 0.0)".into(),
        Act::LeakyRelu(a) => format!("select(dy[i] * {}, dy[i], saved[i] > 0.0)", f32_lit(a)),
        Act::Sigmoid => "dy[i] * saved[i] * (1.0 - saved[i])".into(),
        Act::Tanh => "dy[i] * (1.0 - saved[i] * saved[i])".into(),
    };
    let body = match store {
        Store::Write => format!("dx[i] = {d};"),
        Store::Accumulate => format!("dx[i] = dx[i] + {d};"),
    };
    unary_kernel(
        format!(
            "act_bwd[{}{len}{}]",
            act.tag().trim_start().to_string() + " ",
            acc_tag(store)
        ),
        len,
        decls,
        body,
    )
}

fn acc_tag(store: Store) -> &'static str {
    if store == Store::Accumulate {
        " acc"
    } else {
        ""
    }
}

/// y = a + b.
pub fn add_forward(len: u64) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> a: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read> b: array<f32>;\n\
                 @group(0) @binding(2) var<storage, read_write> y: array<f32>;";
    unary_kernel(
        format!("add[{len}]"),
        len,
        decls,
        "y[i] = a[i] + b[i];".into(),
    )
}

/// y (=|+=) x: passes a gradient through (add's backward) or accumulates it.
pub fn copy(len: u64, store: Store) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read_write> y: array<f32>;";
    let body = match store {
        Store::Write => "y[i] = x[i];",
        Store::Accumulate => "y[i] = y[i] + x[i];",
    };
    unary_kernel(
        format!("copy[{len}{}]", acc_tag(store)),
        len,
        decls,
        body.into(),
    )
}

const PCG_HASH: &str = "fn pcg(v: u32) -> u32 {\n    let state = v * 747796405u + 2891336453u;\n    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;\n    return (word >> 22u) ^ word;\n}\n";

/// The dropout keep decision for element `i` under `seed`, shared with the CPU reference so
/// both drop exactly the same units: keep when pcg(i ^ pcg(seed)) >= p * 2^32.
pub fn dropout_keep(seed: u32, i: u32, p: f64) -> bool {
    fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
        (word >> 22) ^ word
    }
    (pcg(i ^ pcg(seed)) as f64) >= p * 4294967296.0
}

fn dropout_threshold(p: f64) -> String {
    // Compare in u32: threshold = ceil(p * 2^32) clamped.
    let t = (p * 4294967296.0).ceil().min(4294967295.0) as u64;
    format!("{t}u")
}

/// y = x * keep / (1 - p) (or, backward, dx = dy * keep / (1 - p)); the seed is a u32 stored
/// in `rng[0]`, written by the host each step.
pub fn dropout(len: u64, p: f64, backward: bool, store: Store) -> KernelSource {
    let decls = format!(
        "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
         @group(0) @binding(1) var<storage, read_write> y: array<f32>;\n\
         @group(0) @binding(2) var<storage, read> rng: array<u32>;\n{PCG_HASH}"
    );
    let scale = f32_lit(1.0 / (1.0 - p));
    let keep = format!("pcg(i ^ pcg(rng[0])) >= {}", dropout_threshold(p));
    let v = format!("select(0.0, x[i] * {scale}, {keep})");
    let body = match store {
        Store::Write => format!("y[i] = {v};"),
        Store::Accumulate => format!("y[i] = y[i] + {v};"),
    };
    unary_kernel(
        format!(
            "dropout[{len} p={p}{}{}]",
            if backward { " bwd" } else { "" },
            acc_tag(store)
        ),
        len,
        &decls,
        body,
    )
}

/// Row-wise softmax forward (`rows` x `c`).
pub fn softmax_forward(rows: u64, c: u64) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read_write> y: array<f32>;";
    let body = "var mx = x[o];\n    for (var j = 1u; j < C; j++) { mx = max(mx, x[o + j]); }\n    \
                var s = 0.0;\n    for (var j = 0u; j < C; j++) { s += exp(x[o + j] - mx); }\n    \
                for (var j = 0u; j < C; j++) { y[o + j] = exp(x[o + j] - mx) / s; }";
    KernelSource {
        name: format!("softmax[{rows}x{c}]"),
        source: fill(
            SOFTMAX,
            &[
                ("ROWS", rows.to_string()),
                ("C", c.to_string()),
                ("DECLS", decls.into()),
                ("BODY", body.into()),
            ],
        ),
        groups: [rows.div_ceil(64).max(1) as u32, 1, 1],
    }
}

/// Softmax backward: dx (=|+=) y * (dy - sum(dy * y)).
pub fn softmax_backward(rows: u64, c: u64, store: Store) -> KernelSource {
    let decls = "@group(0) @binding(0) var<storage, read> dy: array<f32>;\n\
                 @group(0) @binding(1) var<storage, read> y: array<f32>;\n\
                 @group(0) @binding(2) var<storage, read_write> dx: array<f32>;";
    let store_s = match store {
        Store::Write => "dx[o + j] = g;",
        Store::Accumulate => "dx[o + j] = dx[o + j] + g;",
    };
    let body = format!(
        "var dot = 0.0;\n    for (var j = 0u; j < C; j++) {{ dot += dy[o + j] * y[o + j]; }}\n    \
         for (var j = 0u; j < C; j++) {{ let g = y[o + j] * (dy[o + j] - dot); {store_s} }}"
    );
    KernelSource {
        name: format!("softmax_bwd[{rows}x{c}{}]", acc_tag(store)),
        source: fill(
            SOFTMAX,
            &[
                ("ROWS", rows.to_string()),
                ("C", c.to_string()),
                ("DECLS", decls.into()),
                ("BODY", body),
            ],
        ),
        groups: [rows.div_ceil(64).max(1) as u32, 1, 1],
    }
}

/// Softmax cross-entropy from logits: writes dz (scaled) and per-row [loss, correct].
pub fn softmax_xent(rows: u64, c: u64, scale: f64) -> KernelSource {
    KernelSource {
        name: format!("softmax_xent[{rows}x{c}]"),
        source: fill(
            SOFTMAX_XENT,
            &[
                ("ROWS", rows.to_string()),
                ("C", c.to_string()),
                ("SCALE", f32_lit(scale)),
            ],
        ),
        groups: [rows.div_ceil(64).max(1) as u32, 1, 1],
    }
}

/// Binary cross-entropy from logits (one logit per row).
pub fn bce_logits(rows: u64, scale: f64) -> KernelSource {
    KernelSource {
        name: format!("bce_logits[{rows}]"),
        source: fill(
            BCE_LOGITS,
            &[("ROWS", rows.to_string()), ("SCALE", f32_lit(scale))],
        ),
        groups: [rows.div_ceil(64).max(1) as u32, 1, 1],
    }
}

/// acc += [sum loss, sum correct, rows].
pub fn reduce_stats(rows: u64) -> KernelSource {
    KernelSource {
        name: format!("reduce_stats[{rows}]"),
        source: fill(REDUCE_STATS, &[("ROWS", rows.to_string())]),
        groups: [1, 1, 1],
    }
}

/// db (=|+=) column sums of dy (`rows` x `n`).
pub fn bias_grad(rows: u64, n: u64, store: Store) -> KernelSource {
    let store_s = match store {
        Store::Write => "db[j] = s;",
        Store::Accumulate => "db[j] = db[j] + s;",
    };
    KernelSource {
        name: format!("bias_grad[{rows}x{n}{}]", acc_tag(store)),
        source: fill(
            BIAS_GRAD,
            &[
                ("ROWS", rows.to_string()),
                ("N", n.to_string()),
                ("STORE", store_s.into()),
            ],
        ),
        groups: [n.div_ceil(64).max(1) as u32, 1, 1],
    }
}

/// SGD update of one parameter tensor (bindings w, g, velocity, hyper).
pub fn sgd(len: u64, momentum: f64, weight_decay: f64) -> KernelSource {
    let (groups, row) = grid_1d(len);
    KernelSource {
        name: format!("sgd[{len}]"),
        source: fill(
            SGD,
            &[
                ("LEN", len.to_string()),
                ("ROW", row.to_string()),
                ("MOMENTUM", f32_lit(momentum)),
                ("WD", f32_lit(weight_decay)),
            ],
        ),
        groups,
    }
}

/// Adam update of one parameter tensor (bindings w, g, m, v, hyper).
pub fn adam(len: u64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> KernelSource {
    let (groups, row) = grid_1d(len);
    KernelSource {
        name: format!("adam[{len}]"),
        source: fill(
            ADAM,
            &[
                ("LEN", len.to_string()),
                ("ROW", row.to_string()),
                ("BETA1", f32_lit(beta1)),
                ("BETA2", f32_lit(beta2)),
                ("EPS", f32_lit(eps)),
                ("WD", f32_lit(weight_decay)),
            ],
        ),
        groups,
    }
}

/// Parses and validates WGSL with naga, as wgpu would, without an adapter.
pub fn validate(source: &str) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| e.emit_to_string(source))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_variant_is_valid_wgsl() {
        let mut all = vec![];
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for act in [
                Act::Identity,
                Act::Relu,
                Act::LeakyRelu(0.2),
                Act::Sigmoid,
                Act::Tanh,
            ] {
                for store in [Store::Write, Store::Accumulate] {
                    for bias in [true, false] {
                        all.push(matmul(Gemm {
                            trans_a: ta,
                            trans_b: tb,
                            bias,
                            act,
                            store,
                            ..Gemm::new(37, 53, 71)
                        }));
                    }
                }
            }
        }
        for act in [
            Act::Identity,
            Act::Relu,
            Act::LeakyRelu(0.01),
            Act::Sigmoid,
            Act::Tanh,
        ] {
            all.push(activation_forward(act, 1000));
            all.push(activation_backward(act, 1000, Store::Write));
            all.push(activation_backward(act, 1000, Store::Accumulate));
        }
        all.push(add_forward(77));
        all.push(copy(77, Store::Write));
        all.push(copy(77, Store::Accumulate));
        all.push(dropout(77, 0.5, false, Store::Write));
        all.push(dropout(77, 0.5, true, Store::Accumulate));
        all.push(softmax_forward(7, 10));
        all.push(softmax_backward(7, 10, Store::Accumulate));
        all.push(softmax_xent(7, 10, 1.0 / 7.0));
        all.push(bce_logits(7, 1.0 / 7.0));
        all.push(reduce_stats(300));
        all.push(bias_grad(7, 10, Store::Write));
        all.push(sgd(1000, 0.9, 5e-4));
        all.push(adam(1000, 0.9, 0.999, 1e-8, 0.0));
        for k in &all {
            if let Err(e) = validate(&k.source) {
                panic!("{} is invalid:\n{e}\n{}", k.name, k.source);
            }
        }
    }

    #[test]
    fn grid_folds_large_work() {
        assert_eq!(grid_1d(1000).0, [4, 1, 1]);
        let (g, row) = grid_1d(128 * 290_400);
        assert!(g[0] as u64 <= MAX_GROUPS && g[1] > 1);
        assert!(g[0] as u64 * g[1] as u64 * 256 >= 128 * 290_400);
        assert_eq!(row, MAX_GROUPS * 256);
    }

    #[test]
    fn float_literals_round_trip() {
        assert_eq!(f32_lit(1.0), "1.0");
        assert_eq!(f32_lit(1e-8), "1e-8");
        assert_eq!(f32_lit(0.999), "0.999");
        assert_eq!(f32_lit(1.0 / 128.0), "0.0078125");
    }

    #[test]
    fn dropout_keeps_about_one_minus_p() {
        let kept = (0..100_000u32)
            .filter(|&i| dropout_keep(42, i, 0.5))
            .count();
        assert!((49_000..51_000).contains(&kept), "{kept}");
        assert_eq!(
            (0..1000u32).filter(|&i| dropout_keep(7, i, 0.0)).count(),
            1000
        );
    }
}
