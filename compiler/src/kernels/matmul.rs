//! Matrix products (the dense layers' and the convolutions' lowered GEMMs): the [`Gemm`] they
//! compute, its name, operands and per-element value and store, the storage path's
//! workgroup-tiled kernel (the texture path's is in `matmul_texture`), and the bias gradient.

use super::matmul_texture::{matmul_texture, TEX_GEMM_THREADS, TEX_GEMM_WORKGROUP};
use super::template::{acc_tag, fill, store_elem, Reads};
use super::{Act, KernelSource, Mirror, ReadPath, Store};

const MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");
const BIAS_GRAD: &str = include_str!("../../../shaders/bias_grad.wgsl");

/// A matrix product C[M,N] = op(A) * op(B) (+ bias) (activation). `trans_a`: A is stored
/// [K,M]; `trans_b`: B is stored [N,K]. Bias is binding 3 when present. With `act_grad` the
/// product is the gradient at an activation's output and C gets the gradient at its input:
/// the product times the derivative, computed from the activation's saved output (binding 3;
/// no bias then). This fuses an activation's backward into the product that feeds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub trans_a: bool,
    pub trans_b: bool,
    pub bias: bool,
    pub act: Act,
    pub act_grad: Act,
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
            act_grad: Act::Identity,
            store: Store::Write,
        }
    }
}

pub(super) fn gemm_name(g: &Gemm, path: ReadPath) -> String {
    format!(
        "matmul[{}x{}x{}{}{}{}{}{}{}{}]",
        g.m,
        g.n,
        g.k,
        if g.trans_a { " ta" } else { "" },
        if g.trans_b { " tb" } else { "" },
        if g.bias { " bias" } else { "" },
        g.act.tag(),
        if g.act_grad == Act::Identity {
            String::new()
        } else {
            format!(" d{}", g.act_grad.tag().trim_start())
        },
        acc_tag(g.store),
        match path {
            ReadPath::Storage => "",
            ReadPath::Texture => " tex",
            ReadPath::Image => " img",
        }
    )
}

/// Operand declarations of a matmul: a, b, c (read too when accumulating; an array of vec4
/// with `quads`), bias.
pub(super) fn gemm_reads(g: &Gemm, path: ReadPath, quads: bool) -> (String, Vec<Mirror>) {
    let mut r =
        Reads::new(path)
            .input(0, "a")
            .input(1, "b")
            .output(2, "c", g.store == Store::Accumulate);
    assert!(
        !(g.bias && g.act_grad != Act::Identity),
        "a matmul takes a bias or an activation's saved output, not both"
    );
    if g.bias {
        r = r.input(3, "bias");
    }
    if g.act_grad != Act::Identity {
        r = r.input(3, "saved");
    }
    r.finish_with(quads)
}

/// The value of one output element of a matmul from its accumulator `acc`: bias, activation,
/// and the derivative of `act_grad` at the saved output `saved`.
pub(super) fn gemm_value(g: &Gemm, acc: &str, bias: &str, saved: &str) -> String {
    let mut v = acc.to_string();
    if g.bias {
        v = format!("({v} + {bias})");
    }
    g.act_grad.backward_expr(&g.act.forward_expr(&v), saved)
}

/// The store of value `v` (see [`gemm_value`]) to output element (row, col) of a matmul.
pub(super) fn gemm_store(g: &Gemm, row: &str, col: &str, v: &str) -> String {
    let idx = format!("({row}) * N + {col}");
    match g.store {
        Store::Write => format!("c[{idx}] = {v};"),
        Store::Accumulate => format!("c[{idx}] = rd_c({idx}) + {v};"),
    }
}

pub fn matmul(g: Gemm, path: ReadPath) -> KernelSource {
    matmul_for(g, path, TEX_GEMM_THREADS)
}

/// [`matmul`] for a device that runs the texture path's invocations on `threads` CPU threads
/// (see `matmul_texture::texture_tile`); the storage path ignores it.
pub fn matmul_for(g: Gemm, path: ReadPath, threads: u64) -> KernelSource {
    match path {
        ReadPath::Storage => matmul_storage(g),
        ReadPath::Texture | ReadPath::Image => {
            matmul_texture(g, path, threads.max(1) * TEX_GEMM_WORKGROUP)
        }
    }
}

/// The storage-path matmul (shaders/matmul.wgsl): 64x64 output blocks staged through
/// workgroup memory, 4x4 elements per invocation.
fn matmul_storage(g: Gemm) -> KernelSource {
    let Gemm {
        m,
        n,
        trans_a,
        trans_b,
        ..
    } = g;
    let name = gemm_name(&g, ReadPath::Storage);
    // Staging loads: element e of a tile, read along the operand's contiguous dimension.
    let load_a = if trans_a {
        // A stored [K,M]: consecutive e walk m.
        "            let am = e % 64u;\n            let ak = e / 64u;\n            \
         tile_a[ak * 64u + am] = select(0.0, rd_a(min(k0 + ak, K - 1u) * M + min(m0 + am, M - 1u)), \
         k0 + ak < K && m0 + am < M);"
    } else {
        // A stored [M,K]: consecutive e walk k.
        "            let am = e / 16u;\n            let ak = e % 16u;\n            \
         tile_a[ak * 64u + am] = select(0.0, rd_a(min(m0 + am, M - 1u) * K + min(k0 + ak, K - 1u)), \
         k0 + ak < K && m0 + am < M);"
    };
    let load_b = if trans_b {
        // B stored [N,K]: consecutive e walk k.
        "            let bn = e / 16u;\n            let bk = e % 16u;\n            \
         tile_b[bk * 64u + bn] = select(0.0, rd_b(min(n0 + bn, N - 1u) * K + min(k0 + bk, K - 1u)), \
         k0 + bk < K && n0 + bn < N);"
    } else {
        // B stored [K,N]: consecutive e walk n.
        "            let bn = e % 64u;\n            let bk = e / 64u;\n            \
         tile_b[bk * 64u + bn] = select(0.0, rd_b(min(k0 + bk, K - 1u) * N + min(n0 + bn, N - 1u)), \
         k0 + bk < K && n0 + bn < N);"
    };
    let mut decls = String::new();
    let mut inner = String::new();
    for i in 0..4 {
        for j in 0..4 {
            decls.push_str(&format!("    var acc{i}_{j} = 0.0;\n"));
        }
    }
    for i in 0..4 {
        inner.push_str(&format!(
            "            let a{i} = tile_a[kk * 64u + ty + {}u];\n",
            16 * i
        ));
    }
    for j in 0..4 {
        inner.push_str(&format!(
            "            let b{j} = tile_b[kk * 64u + tx + {}u];\n",
            16 * j
        ));
    }
    for i in 0..4 {
        for j in 0..4 {
            inner.push_str(&format!(
                "            acc{i}_{j} = fma(a{i}, b{j}, acc{i}_{j});\n"
            ));
        }
    }
    let mut body = String::new();
    for j in 0..4 {
        body.push_str(&format!("    let col{j} = n0 + tx + {}u;\n", 16 * j));
    }
    for i in 0..4 {
        let row = format!("m0 + ty + {}u", 16 * i);
        body.push_str(&format!("    if ({row} < M) {{\n"));
        for j in 0..4 {
            body.push_str(&format!(
                "        if (col{j} < N) {{ {} }}\n",
                gemm_store(
                    &g,
                    &row,
                    &format!("col{j}"),
                    &gemm_value(
                        &g,
                        &format!("acc{i}_{j}"),
                        &format!("rd_bias(col{j})"),
                        &format!("rd_saved(({row}) * N + col{j})")
                    )
                )
            ));
        }
        body.push_str("    }\n");
    }
    let (reads, mirrors) = gemm_reads(&g, ReadPath::Storage, false);
    let source = fill(
        MATMUL,
        &[
            ("M", g.m.to_string()),
            ("N", g.n.to_string()),
            ("K", g.k.to_string()),
            ("READS", reads),
            ("DECLS", decls.trim_end().to_string()),
            ("LOAD_A", load_a.to_string()),
            ("LOAD_B", load_b.to_string()),
            ("INNER", inner.trim_end().to_string()),
            ("BODY", body.trim_end().to_string()),
        ],
    );
    KernelSource {
        name,
        source,
        groups: [
            n.div_ceil(64).max(1) as u32,
            m.div_ceil(64).max(1) as u32,
            1,
        ],
        mirrors,
    }
}

/// db (=|+=) column sums of dy (`rows` x `n`).
pub fn bias_grad(rows: u64, n: u64, store: Store, path: ReadPath) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "dy")
        .output(1, "db", store == Store::Accumulate)
        .finish();
    let (body, threads) = if n.is_multiple_of(4) {
        let mut b = format!(
            "    if (j >= {}u) {{ return; }}\n    var s = vec4<f32>(0.0);\n    \
             for (var r = 0u; r < ROWS; r++) {{ s += rd4_dy(r * {}u + j); }}\n",
            n / 4,
            n / 4
        );
        for c in 0..4 {
            b.push_str(&format!(
                "    {}\n",
                store_elem(store, "db", &format!("4u * j + {c}u"), &format!("s[{c}]"))
            ));
        }
        (b, n / 4)
    } else {
        (
            format!(
                "    if (j >= N) {{ return; }}\n    var s = 0.0;\n    \
                 for (var r = 0u; r < ROWS; r++) {{ s += rd_dy(r * N + j); }}\n    {}\n",
                store_elem(store, "db", "j", "s")
            ),
            n,
        )
    };
    KernelSource {
        name: format!("bias_grad[{rows}x{n}{}]", acc_tag(store)),
        source: fill(
            BIAS_GRAD,
            &[
                ("ROWS", rows.to_string()),
                ("N", n.to_string()),
                ("READS", decls),
                ("BODY", body.trim_end().to_string()),
            ],
        ),
        groups: [threads.div_ceil(64).max(1) as u32, 1, 1],
        mirrors,
    }
}
