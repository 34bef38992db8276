//! The texture-path matmul: each invocation holds a register tile of C and fetches whole
//! texels of A and B where their layout allows (CPU adapters, where a texel fetch is far
//! cheaper than a storage load).

use super::matmul::{gemm_name, gemm_reads, gemm_store, gemm_value, Gemm};
use super::template::{fill, grid};
use super::{Act, KernelSource, ReadPath, Store};

const MATMUL_TEXTURE: &str = include_str!("../../../shaders/matmul_texture.wgsl");

/// Invocations per workgroup of the texture-path matmul: small, so even a 128x128 output
/// spreads over enough workgroups to keep every core of a software rasteriser busy.
pub(super) const TEX_GEMM_WORKGROUP: u64 = 16;

/// CPU threads the texture-path matmul plans for when the device does not say (a workgroup of
/// 16 invocations for each of four).
pub const TEX_GEMM_THREADS: u64 = 4;

/// Rows and column quads per invocation of the texture-path matmul. A k-step of four fetches
/// R texels of A and 4C of B for 16RC multiply-adds, so big tiles fetch less per FLOP; the
/// tile shrinks until there are at least `invocations` (one workgroup per CPU thread; more
/// only buys smaller tiles, which cost more fetches). The largest is 16x16: with storage-
/// texture loads a 32x16 tile was no faster (interleaved in one process, 1.75 against 1.51 ms
/// for the 128x128x784 product, 1.78 against 1.62 for 128x784x128) and llvmpipe, which
/// compiles a kernel at its first dispatch, took 4.4 s for it against 0.8 s.
pub(super) fn texture_tile(m: u64, n: u64, invocations: u64) -> (u64, u64) {
    const TILES: [(u64, u64); 5] = [(16, 4), (16, 2), (8, 2), (8, 1), (4, 1)];
    TILES
        .into_iter()
        .find(|&(r, c)| m.div_ceil(r) * n.div_ceil(4 * c) >= invocations)
        .unwrap_or((4, 1))
}

/// WGSL statements of a kernel body, one a line, indented one level.
struct Lines(String);

impl Lines {
    fn line(&mut self, s: String) {
        self.0.push_str("    ");
        self.0.push_str(&s);
        self.0.push('\n');
    }
}

/// The texture-path matmul's layout: its tile, how far each loop iteration walks K, and which
/// operands it fetches a whole texel (four stored elements) at a time.
struct TexturePlan {
    g: Gemm,
    /// Rows and column quads per invocation (see [`texture_tile`]).
    r: u64,
    c: u64,
    /// Column-quad blocks across N, and invocations in all.
    quad_blocks: u64,
    invocations: u64,
    /// Values of k per loop iteration: four where K allows, else one.
    kstep: u64,
    a_rowq: bool,
    a_colq: bool,
    b_rowq: bool,
    b_colq: bool,
}

impl TexturePlan {
    fn new(g: Gemm, min_invocations: u64) -> TexturePlan {
        let Gemm {
            m,
            n,
            k,
            trans_a,
            trans_b,
            ..
        } = g;
        let (r, c) = texture_tile(m, n, min_invocations);
        let quad_blocks = n.div_ceil(4 * c);
        TexturePlan {
            g,
            r,
            c,
            quad_blocks,
            invocations: m.div_ceil(r) * quad_blocks,
            kstep: if k.is_multiple_of(4) { 4 } else { 1 },
            a_rowq: !trans_a && k.is_multiple_of(4),
            a_colq: trans_a && m.is_multiple_of(4),
            b_rowq: !trans_b && n.is_multiple_of(4),
            b_colq: trans_b && k.is_multiple_of(4),
        }
    }

    /// Rows of whole quads are stored a vec4 at a time: llvmpipe runs a per-lane loop for every
    /// storage store, so four elements per store cost about a quarter as much.
    fn quad_stores(&self) -> bool {
        self.g.n.is_multiple_of(4)
    }

    fn a_index(&self, row: &str, kk: &str) -> String {
        if self.g.trans_a {
            format!("({kk}) * M + {row}")
        } else {
            format!("{row} * K + {kk}")
        }
    }

    fn b_index(&self, kk: &str, col: &str) -> String {
        if self.g.trans_b {
            format!("{col} * K + {kk}")
        } else {
            format!("({kk}) * N + {col}")
        }
    }

    /// The invocation's tile origin, its clamped rows and columns, and its accumulators.
    fn prologue(&self, out: &mut Lines, per_row: u64) {
        let (r, c, quad_blocks) = (self.r, self.c, self.quad_blocks);
        out.line(format!("let raw = gid.y * {per_row}u + gid.x;"));
        out.line(format!("let inv = min(raw, {}u);", self.invocations - 1));
        out.line(format!("let r0 = (inv / {quad_blocks}u) * {r}u;"));
        out.line(format!("let n0 = (inv % {quad_blocks}u) * {}u;", 4 * c));
        for i in 0..r {
            out.line(format!("let row{i} = min(r0 + {i}u, M - 1u);"));
        }
        if self.a_colq {
            for q in 0..r / 4 {
                out.line(format!("let rowq{q} = min(r0 + {}u, M - 4u);", 4 * q));
            }
        }
        for j in 0..c {
            if self.b_rowq {
                out.line(format!("let nq{j} = min(n0 + {}u, N - 4u);", 4 * j));
            }
            for cc in 0..4 {
                out.line(format!(
                    "let col{j}_{cc} = min(n0 + {}u, N - 1u);",
                    4 * j + cc
                ));
            }
            for i in 0..r {
                out.line(format!("var acc{i}_{j} = vec4<f32>(0.0);"));
            }
        }
    }

    /// The fetches of A in one k-step; returns a_val[i][p], the A value of tile row i at k + p.
    fn a_values(&self, out: &mut Lines) -> Vec<Vec<String>> {
        let step = self.kstep as usize;
        let q = self.kstep as usize;
        let mut a_val = vec![vec![String::new(); step]; self.r as usize];
        for (i, vals) in a_val.iter_mut().enumerate() {
            for (p, v) in vals.iter_mut().enumerate() {
                if self.a_rowq {
                    if p % q == 0 {
                        out.line(format!(
                            "    let ta{i}_{p} = rd4_a((row{i} * K + k + {p}u) / 4u);"
                        ));
                    }
                    *v = format!("ta{i}_{}[{}]", p - p % q, p % q);
                } else if !self.a_colq {
                    out.line(format!(
                        "    let ta{i}_{p} = rd_a({});",
                        self.a_index(&format!("row{i}"), &format!("k + {p}u"))
                    ));
                    *v = format!("ta{i}_{p}");
                }
            }
        }
        if self.a_colq {
            for (g4, rows) in a_val.chunks_mut(4).enumerate() {
                for p in 0..step {
                    out.line(format!(
                        "    let ta{g4}_{p} = rd4_a(((k + {p}u) * M + rowq{g4}) / 4u);"
                    ));
                    for (ii, row) in rows.iter_mut().enumerate() {
                        row[p] = format!("ta{g4}_{p}[{ii}]");
                    }
                }
            }
        }
        a_val
    }

    /// The fetches of B in one k-step; returns b_val[p][j], the vec4 of B at k + p over the
    /// four columns of quad j.
    fn b_values(&self, out: &mut Lines) -> Vec<Vec<String>> {
        let step = self.kstep as usize;
        let q = self.kstep as usize;
        let c = self.c;
        let mut b_val = vec![vec![String::new(); c as usize]; step];
        for j in 0..c as usize {
            for (p, vals) in b_val.iter_mut().enumerate() {
                if self.b_rowq {
                    out.line(format!(
                        "    let tb{p}_{j} = rd4_b(((k + {p}u) * N + nq{j}) / 4u);"
                    ));
                    vals[j] = format!("tb{p}_{j}");
                } else if self.b_colq {
                    let base = p - p % q;
                    if p % q == 0 {
                        for cc in 0..4 {
                            out.line(format!(
                                "    let tb{j}_{cc}_{base} = rd4_b((col{j}_{cc} * K + k + {base}u) / 4u);"
                            ));
                        }
                    }
                    let kk = p % q;
                    vals[j] = format!(
                        "vec4<f32>(tb{j}_0_{base}[{kk}], tb{j}_1_{base}[{kk}], tb{j}_2_{base}[{kk}], tb{j}_3_{base}[{kk}])"
                    );
                } else {
                    let e: Vec<String> = (0..4)
                        .map(|cc| {
                            format!(
                                "rd_b({})",
                                self.b_index(&format!("k + {p}u"), &format!("col{j}_{cc}"))
                            )
                        })
                        .collect();
                    out.line(format!("    let tb{p}_{j} = vec4<f32>({});", e.join(", ")));
                    vals[j] = format!("tb{p}_{j}");
                }
            }
        }
        b_val
    }

    /// The loop over K: each iteration covers one k-step (four values of k where the layout
    /// allows). Two steps per iteration gave the loop twice the code for no speed on llvmpipe
    /// (interleaved in one process: 1.71 against 1.51 ms for the 128x128x784 product) and
    /// twice the JIT time.
    fn k_loop(&self, out: &mut Lines) {
        let step = self.kstep as usize;
        out.line(format!("for (var k = 0u; k < K; k += {step}u) {{"));
        let a_val = self.a_values(out);
        let b_val = self.b_values(out);
        // One assignment per accumulator and iteration: llvmpipe stores every loop variable under
        // the execution mask (a blend), while the nested products stay in registers.
        for (i, a_row) in a_val.iter().enumerate() {
            for j in 0..self.c as usize {
                let mut e = format!("acc{i}_{j}");
                for (p, bv) in b_val.iter().enumerate() {
                    e = format!("fma(vec4<f32>({}), {}, {e})", a_row[p], bv[j]);
                }
                out.line(format!("    acc{i}_{j} = {e};"));
            }
        }
        out.line("}".into());
    }

    /// The stores of the live invocations' tiles: bias, activation and its derivative applied.
    fn epilogue(&self, out: &mut Lines) {
        let g = &self.g;
        out.line(format!("if (raw < {}u) {{", self.invocations));
        if g.bias {
            for j in 0..self.c {
                for cc in 0..4 {
                    out.line(format!("    let bias{j}_{cc} = rd_bias(col{j}_{cc});"));
                }
            }
        }
        for i in 0..self.r {
            self.store_row(out, i);
        }
        out.line("}".into());
    }

    /// The stores of tile row `i`, when it is a row of C.
    fn store_row(&self, out: &mut Lines, i: u64) {
        let g = &self.g;
        let c = self.c;
        // The saved activation output is fetched a texel (four columns) at a time when rows
        // are whole texels.
        let saved_quads = g.act_grad != Act::Identity && g.n.is_multiple_of(4);
        out.line(format!("    if (r0 + {i}u < M) {{"));
        if saved_quads {
            for j in 0..c {
                out.line(format!(
                    "        let s{j} = rd4_saved(((r0 + {i}u) * N + min(n0 + {}u, N - 4u)) / 4u);",
                    4 * j
                ));
            }
        }
        // Output element (i, 4j + cc): its saved activation and its value.
        let value = |j: u64, cc: u64| {
            let saved = if saved_quads {
                format!("s{j}[{cc}]")
            } else {
                format!("rd_saved((r0 + {i}u) * N + col{j}_{cc})")
            };
            gemm_value(
                g,
                &format!("acc{i}_{j}[{cc}]"),
                &format!("bias{j}_{cc}"),
                &saved,
            )
        };
        for j in 0..c {
            if self.quad_stores() {
                // n0 + 4j is a multiple of 4 below N: the whole quad is in range.
                let v: Vec<String> = (0..4).map(|cc| value(j, cc)).collect();
                let q = format!("((r0 + {i}u) * N + n0 + {}u) / 4u", 4 * j);
                let v = format!("vec4<f32>({})", v.join(", "));
                out.line(format!(
                    "        if (n0 + {}u < N) {{ c[{q}] = {}; }}",
                    4 * j,
                    match g.store {
                        Store::Write => v,
                        Store::Accumulate => format!("rd4_c({q}) + {v}"),
                    }
                ));
                continue;
            }
            for cc in 0..4 {
                let store = gemm_store(
                    g,
                    &format!("r0 + {i}u"),
                    &format!("col{j}_{cc}"),
                    &value(j, cc),
                );
                out.line(format!(
                    "        if (n0 + {}u < N) {{ {store} }}",
                    4 * j + cc
                ));
            }
        }
        out.line("    }".into());
    }
}

/// The texture-path matmul: each invocation holds an R x 4C block of C in vec4 accumulators
/// and walks K four at a time, fetching whole texels (4 consecutive stored elements) where the
/// layout allows: A along k (row-major, K % 4 == 0) or along m (transposed, M % 4 == 0), B
/// along n (row-major, N % 4 == 0) or along k (transposed, K % 4 == 0); other operands fall
/// back to one fetch per element. Indices are clamped, only in-range elements are stored.
pub(super) fn matmul_texture(g: Gemm, path: ReadPath, min_invocations: u64) -> KernelSource {
    let plan = TexturePlan::new(g, min_invocations);
    let (groups, per_row) = grid(plan.invocations, TEX_GEMM_WORKGROUP);
    let mut body = Lines(String::new());
    plan.prologue(&mut body, per_row);
    plan.k_loop(&mut body);
    plan.epilogue(&mut body);
    let (reads, mirrors) = gemm_reads(&g, path, plan.quad_stores());
    let source = fill(
        MATMUL_TEXTURE,
        &[
            ("M", g.m.to_string()),
            ("N", g.n.to_string()),
            ("K", g.k.to_string()),
            ("READS", reads),
            ("WORKGROUP", TEX_GEMM_WORKGROUP.to_string()),
            ("BODY", body.0.trim_end().to_string()),
        ],
    );
    KernelSource {
        name: gemm_name(&g, path),
        source,
        groups,
        mirrors,
    }
}
