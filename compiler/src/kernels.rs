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
    /// Bindings that are texture mirrors of an operand rather than the operand's buffer.
    pub mirrors: Vec<Mirror>,
}

/// How kernels read the tensors they take in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadPath {
    /// Storage-buffer loads: what GPUs do best.
    #[default]
    Storage,
    /// Texel fetches from an rgba32float mirror of the operand's buffer, which the runtime
    /// refreshes with a copy before the dispatch. On software rasterisers (lavapipe) every
    /// storage load runs a per-lane loop (about 60 ns per 8 lanes) while a texel fetch is one
    /// gather of four floats: 5-10x cheaper. The mirror is a sampled texture here: the
    /// fallback for CPU adapters that cannot bind it as a read-only storage texture.
    Texture,
    /// The same mirrors bound as read-only storage textures (`texture_storage_2d<rgba32float,
    /// read>`), the path for CPU adapters. An image has one mip level, so llvmpipe's load is
    /// the gather alone; its sampled fetch is an out-of-line call that first works out every
    /// lane's mip level, size and row stride (about 110 instructions per fetch, two thirds of
    /// the dense kernel's time). Same kernels otherwise; the step is about 20% faster.
    Image,
}

impl ReadPath {
    /// Reads go through texture mirrors (sampled or storage textures).
    pub fn mirrored(self) -> bool {
        self != ReadPath::Storage
    }

    /// The WGSL type of a mirror and the load of texel `c` (a vec2<u32>) from mirror `t`.
    fn mirror_decl(self, t: &str, c: &str) -> (&'static str, String) {
        match self {
            ReadPath::Image => (
                "texture_storage_2d<rgba32float, read>",
                format!("textureLoad({t}, {c})"),
            ),
            _ => ("texture_2d<f32>", format!("textureLoad({t}, {c}, 0)")),
        }
    }
}

/// Texels per mirror row: 64 KiB rows meet wgpu's 256-byte copy alignment, and 4096 is
/// within every adapter's texture width limit (WebGPU guarantees 8192).
pub const MIRROR_WIDTH: u64 = 4096;

/// Binding `binding` of a kernel is the texture mirror of the dispatch's operand `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirror {
    pub binding: u32,
    pub of: u32,
}

/// Mirrors of operands a kernel also writes sit at this binding plus the operand's index (so
/// a kernel has at most this many operands: a grouped optimizer update takes 4 per tensor).
const MIRROR_BINDING_BASE: u32 = 32;

/// Declarations of a kernel's operands and their read accessors: `rd_NAME(i)` reads element
/// i, `rd4_NAME(q)` elements 4q..4q+3 (buffers are padded to whole quads).
pub(crate) struct Reads {
    path: ReadPath,
    decls: String,
    mirrors: Vec<Mirror>,
    /// Written operands: (binding, name, also read, stored as vec4 whatever `finish_with`
    /// says); declared by `finish_with`.
    outputs: Vec<(u32, String, bool, bool)>,
}

impl Reads {
    pub(crate) fn new(path: ReadPath) -> Reads {
        Reads {
            path,
            decls: String::new(),
            mirrors: vec![],
            outputs: vec![],
        }
    }

    fn storage_accessors(&mut self, name: &str) {
        self.decls.push_str(&format!(
            "fn rd_{name}(i: u32) -> f32 {{ return {name}[i]; }}\n\
             fn rd4_{name}(q: u32) -> vec4<f32> {{ return vec4<f32>({name}[4u * q], {name}[4u * q + 1u], {name}[4u * q + 2u], {name}[4u * q + 3u]); }}\n"
        ));
    }

    fn texture(&mut self, binding: u32, of: u32, tex: &str, name: &str) {
        let (ty, load) = self.path.mirror_decl(
            tex,
            &format!("vec2<u32>(q % {MIRROR_WIDTH}u, q / {MIRROR_WIDTH}u)"),
        );
        self.decls.push_str(&format!(
            "@group(0) @binding({binding}) var {tex}: {ty};\n\
             fn rd4_{name}(q: u32) -> vec4<f32> {{ return {load}; }}\n\
             fn rd_{name}(i: u32) -> f32 {{ return rd4_{name}(i / 4u)[i % 4u]; }}\n"
        ));
        self.mirrors.push(Mirror { binding, of });
    }

    /// A read-only operand at binding `op`.
    pub(crate) fn input(mut self, op: u32, name: &str) -> Self {
        match self.path {
            ReadPath::Storage => {
                self.decls.push_str(&format!(
                    "@group(0) @binding({op}) var<storage, read> {name}: array<f32>;\n"
                ));
                self.storage_accessors(name);
            }
            ReadPath::Texture | ReadPath::Image => self.texture(op, op, name, name),
        }
        self
    }

    /// An operand the kernel writes at binding `op`; with `read`, it also reads it (under the
    /// texture path from a mirror taken before the dispatch, at its own binding).
    pub(crate) fn output(mut self, op: u32, name: &str, read: bool) -> Self {
        if read && self.path.mirrored() {
            self.texture(
                MIRROR_BINDING_BASE + op,
                op,
                &format!("{name}_mirror"),
                name,
            );
        }
        self.outputs.push((op, name.to_string(), read, false));
        self
    }

    /// An output stored in quads (`array<vec4<f32>>`) in any case.
    fn output_quads(mut self, op: u32, name: &str, read: bool) -> Self {
        self = self.output(op, name, read);
        if let Some(o) = self.outputs.last_mut() {
            o.3 = true;
        }
        self
    }

    /// Further declarations, verbatim.
    pub(crate) fn extra(mut self, decls: &str) -> Self {
        self.decls.push_str(decls);
        self.decls.push('\n');
        self
    }

    /// Declarations and accessors, outputs as arrays of f32.
    pub(crate) fn finish(self) -> (String, Vec<Mirror>) {
        self.finish_with(false)
    }

    /// Declarations and accessors; with `vec4`, outputs are arrays of vec4<f32> so a kernel
    /// stores four elements at once (llvmpipe runs one per-lane loop per store instruction).
    fn finish_with(mut self, vec4: bool) -> (String, Vec<Mirror>) {
        for (op, name, read, quads) in std::mem::take(&mut self.outputs) {
            let vec4 = vec4 || quads;
            let elem = if vec4 { "vec4<f32>" } else { "f32" };
            self.decls.push_str(&format!(
                "@group(0) @binding({op}) var<storage, read_write> {name}: array<{elem}>;\n"
            ));
            if read && self.path == ReadPath::Storage {
                if vec4 {
                    self.decls.push_str(&format!(
                        "fn rd_{name}(i: u32) -> f32 {{ return {name}[i / 4u][i % 4u]; }}\n\
                         fn rd4_{name}(q: u32) -> vec4<f32> {{ return {name}[q]; }}\n"
                    ));
                } else {
                    self.storage_accessors(&name);
                }
            }
        }
        (self.decls.trim_end().to_string(), self.mirrors)
    }

    fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|(_, n, _, _)| n.clone()).collect()
    }
}

const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const MATMUL_TEXTURE: &str = include_str!("../../shaders/matmul_texture.wgsl");
const ELEMENTWISE: &str = include_str!("../../shaders/elementwise.wgsl");
const SOFTMAX_XENT: &str = include_str!("../../shaders/softmax_xent.wgsl");
const BCE_LOGITS: &str = include_str!("../../shaders/bce_logits.wgsl");
const LOSS_STATS: &str = include_str!("../../shaders/loss_stats.wgsl");
const BIAS_GRAD: &str = include_str!("../../shaders/bias_grad.wgsl");
const SGD: &str = include_str!("../../shaders/sgd.wgsl");
const ADAM: &str = include_str!("../../shaders/adam.wgsl");
const UPDATE_GROUP: &str = include_str!("../../shaders/update_group.wgsl");

/// wgpu's guaranteed maximum workgroups per dispatch dimension.
const MAX_GROUPS: u64 = 65_535;

pub(crate) fn fill(template: &str, subs: &[(&str, String)]) -> String {
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

/// `len` threads in workgroups of `size`, folded into 2-D under the dispatch limit.
/// Returns (groups, threads per dispatch row).
pub(crate) fn grid(len: u64, size: u64) -> ([u32; 3], u64) {
    let groups = len.div_ceil(size).max(1);
    if groups <= MAX_GROUPS {
        return ([groups as u32, 1, 1], groups * size);
    }
    let rows = groups.div_ceil(MAX_GROUPS);
    ([MAX_GROUPS as u32, rows as u32, 1], MAX_GROUPS * size)
}

/// WGSL constants: `const NAME: u32 = Vu;` for sizes, i32 for paddings, f32 for settings.
pub(crate) fn wgsl_consts(u: &[(&str, u64)], i: &[(&str, i64)], f: &[(&str, f64)]) -> String {
    let mut s = String::new();
    for (k, v) in u {
        s.push_str(&format!("const {k}: u32 = {v}u;\n"));
    }
    for (k, v) in i {
        s.push_str(&format!("const {k}: i32 = {v};\n"));
    }
    for (k, v) in f {
        s.push_str(&format!("const {k}: f32 = {};\n", f32_lit(*v)));
    }
    s.trim_end().to_string()
}

/// A kernel's WGSL constants: sizes (u32), offsets (i32) and settings (f32).
pub(crate) type Consts<'a> = (
    &'a [(&'a str, u64)],
    &'a [(&'a str, i64)],
    &'a [(&'a str, f64)],
);

/// A kernel of one invocation per element of a `len`-element result, from a template with
/// CONSTS (given sizes plus LEN and ROW), DECLS and further placeholders `subs`.
pub(crate) fn per_element(
    name: String,
    template: &str,
    len: u64,
    reads: Reads,
    consts: Consts,
    subs: &[(&str, String)],
) -> KernelSource {
    let (groups, row) = grid(len, 64);
    let mut u: Vec<(&str, u64)> = vec![("LEN", len), ("ROW", row)];
    u.extend_from_slice(consts.0);
    let (decls, mirrors) = reads.finish();
    let mut all = vec![
        ("CONSTS", wgsl_consts(&u, consts.1, consts.2)),
        ("DECLS", decls),
    ];
    all.extend(subs.iter().cloned());
    KernelSource {
        name,
        source: fill(template, &all),
        groups,
        mirrors,
    }
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
    pub(crate) fn forward_expr(self, x: &str) -> String {
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
    /// The gradient at the activation's input from `dy`, the gradient at its output, and `s`,
    /// the saved output (every derivative here is a function of the output).
    pub(crate) fn backward_expr(self, dy: &str, s: &str) -> String {
        match self {
            Act::Identity => dy.to_string(),
            Act::Relu => format!("select(0.0, {dy}, {s} > 0.0)"),
            Act::LeakyRelu(a) => format!("select({dy} * {}, {dy}, {s} > 0.0)", f32_lit(a)),
            Act::Sigmoid => format!("{dy} * {s} * (1.0 - {s})"),
            Act::Tanh => format!("{dy} * (1.0 - {s} * {s})"),
        }
    }
    pub(crate) fn tag(self) -> &'static str {
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

fn gemm_name(g: &Gemm, path: ReadPath) -> String {
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
fn gemm_reads(g: &Gemm, path: ReadPath, quads: bool) -> (String, Vec<Mirror>) {
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
fn gemm_value(g: &Gemm, acc: &str, bias: &str, saved: &str) -> String {
    let mut v = acc.to_string();
    if g.bias {
        v = format!("({v} + {bias})");
    }
    g.act_grad.backward_expr(&g.act.forward_expr(&v), saved)
}

/// The store of value `v` (see [`gemm_value`]) to output element (row, col) of a matmul.
fn gemm_store(g: &Gemm, row: &str, col: &str, v: &str) -> String {
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
/// (see [`texture_tile`]); the storage path ignores it.
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

/// Invocations per workgroup of the texture-path matmul: small, so even a 128x128 output
/// spreads over enough workgroups to keep every core of a software rasteriser busy.
const TEX_GEMM_WORKGROUP: u64 = 16;

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
fn texture_tile(m: u64, n: u64, invocations: u64) -> (u64, u64) {
    const TILES: [(u64, u64); 5] = [(16, 4), (16, 2), (8, 2), (8, 1), (4, 1)];
    TILES
        .into_iter()
        .find(|&(r, c)| m.div_ceil(r) * n.div_ceil(4 * c) >= invocations)
        .unwrap_or((4, 1))
}

/// The texture-path matmul: each invocation holds an R x 4C block of C in vec4 accumulators
/// and walks K four at a time, fetching whole texels (4 consecutive stored elements) where the
/// layout allows: A along k (row-major, K % 4 == 0) or along m (transposed, M % 4 == 0), B
/// along n (row-major, N % 4 == 0) or along k (transposed, K % 4 == 0); other operands fall
/// back to one fetch per element. Indices are clamped, only in-range elements are stored.
fn matmul_texture(g: Gemm, path: ReadPath, min_invocations: u64) -> KernelSource {
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
    let invocations = m.div_ceil(r) * quad_blocks;
    let (groups, per_row) = grid(invocations, TEX_GEMM_WORKGROUP);
    let kstep = if k.is_multiple_of(4) { 4 } else { 1 };
    let a_rowq = !trans_a && k.is_multiple_of(4);
    let a_colq = trans_a && m.is_multiple_of(4);
    let b_rowq = !trans_b && n.is_multiple_of(4);
    let b_colq = trans_b && k.is_multiple_of(4);
    let a_index = |row: &str, kk: &str| {
        if trans_a {
            format!("({kk}) * M + {row}")
        } else {
            format!("{row} * K + {kk}")
        }
    };
    let b_index = |kk: &str, col: &str| {
        if trans_b {
            format!("{col} * K + {kk}")
        } else {
            format!("({kk}) * N + {col}")
        }
    };
    let mut b = String::new();
    let mut line = |s: String| {
        b.push_str("    ");
        b.push_str(&s);
        b.push('\n');
    };
    line(format!("let raw = gid.y * {per_row}u + gid.x;"));
    line(format!("let inv = min(raw, {}u);", invocations - 1));
    line(format!("let r0 = (inv / {quad_blocks}u) * {r}u;"));
    line(format!("let n0 = (inv % {quad_blocks}u) * {}u;", 4 * c));
    for i in 0..r {
        line(format!("let row{i} = min(r0 + {i}u, M - 1u);"));
    }
    if a_colq {
        for q in 0..r / 4 {
            line(format!("let rowq{q} = min(r0 + {}u, M - 4u);", 4 * q));
        }
    }
    for j in 0..c {
        if b_rowq {
            line(format!("let nq{j} = min(n0 + {}u, N - 4u);", 4 * j));
        }
        for cc in 0..4 {
            line(format!(
                "let col{j}_{cc} = min(n0 + {}u, N - 1u);",
                4 * j + cc
            ));
        }
        for i in 0..r {
            line(format!("var acc{i}_{j} = vec4<f32>(0.0);"));
        }
    }
    // Each iteration covers one k-step (four values of k where the layout allows). Two steps
    // per iteration gave the loop twice the code for no speed on llvmpipe (interleaved in one
    // process: 1.71 against 1.51 ms for the 128x128x784 product) and twice the JIT time.
    let step = kstep as usize;
    let q = kstep as usize;
    line(format!("for (var k = 0u; k < K; k += {step}u) {{"));
    // a_val[i][p]: the A value of tile row i at k + p.
    let mut a_val = vec![vec![String::new(); step]; r as usize];
    for (i, vals) in a_val.iter_mut().enumerate() {
        for (p, v) in vals.iter_mut().enumerate() {
            if a_rowq {
                if p % q == 0 {
                    line(format!(
                        "    let ta{i}_{p} = rd4_a((row{i} * K + k + {p}u) / 4u);"
                    ));
                }
                *v = format!("ta{i}_{}[{}]", p - p % q, p % q);
            } else if !a_colq {
                line(format!(
                    "    let ta{i}_{p} = rd_a({});",
                    a_index(&format!("row{i}"), &format!("k + {p}u"))
                ));
                *v = format!("ta{i}_{p}");
            }
        }
    }
    if a_colq {
        for (g4, rows) in a_val.chunks_mut(4).enumerate() {
            for p in 0..step {
                line(format!(
                    "    let ta{g4}_{p} = rd4_a(((k + {p}u) * M + rowq{g4}) / 4u);"
                ));
                for (ii, row) in rows.iter_mut().enumerate() {
                    row[p] = format!("ta{g4}_{p}[{ii}]");
                }
            }
        }
    }
    // b_val[p][j]: the vec4 of B at k + p over the four columns of quad j.
    let mut b_val = vec![vec![String::new(); c as usize]; step];
    for j in 0..c as usize {
        for (p, vals) in b_val.iter_mut().enumerate() {
            if b_rowq {
                line(format!(
                    "    let tb{p}_{j} = rd4_b(((k + {p}u) * N + nq{j}) / 4u);"
                ));
                vals[j] = format!("tb{p}_{j}");
            } else if b_colq {
                let base = p - p % q;
                if p % q == 0 {
                    for cc in 0..4 {
                        line(format!(
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
                            b_index(&format!("k + {p}u"), &format!("col{j}_{cc}"))
                        )
                    })
                    .collect();
                line(format!("    let tb{p}_{j} = vec4<f32>({});", e.join(", ")));
                vals[j] = format!("tb{p}_{j}");
            }
        }
    }
    // One assignment per accumulator and iteration: llvmpipe stores every loop variable under
    // the execution mask (a blend), while the nested products stay in registers.
    for (i, a_row) in a_val.iter().enumerate() {
        for j in 0..c as usize {
            let mut e = format!("acc{i}_{j}");
            for (p, bv) in b_val.iter().enumerate() {
                e = format!("fma(vec4<f32>({}), {}, {e})", a_row[p], bv[j]);
            }
            line(format!("    acc{i}_{j} = {e};"));
        }
    }
    line("}".into());
    line(format!("if (raw < {invocations}u) {{"));
    if g.bias {
        for j in 0..c {
            for cc in 0..4 {
                line(format!("    let bias{j}_{cc} = rd_bias(col{j}_{cc});"));
            }
        }
    }
    // The saved activation output is fetched a texel (four columns) at a time when rows
    // are whole texels.
    let saved_quads = g.act_grad != Act::Identity && n.is_multiple_of(4);
    // Rows of whole quads are stored a vec4 at a time: llvmpipe runs a per-lane loop for every
    // storage store, so four elements per store cost about a quarter as much.
    let quad_stores = n.is_multiple_of(4);
    for i in 0..r {
        line(format!("    if (r0 + {i}u < M) {{"));
        if saved_quads {
            for j in 0..c {
                line(format!(
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
                &g,
                &format!("acc{i}_{j}[{cc}]"),
                &format!("bias{j}_{cc}"),
                &saved,
            )
        };
        for j in 0..c {
            if quad_stores {
                // n0 + 4j is a multiple of 4 below N: the whole quad is in range.
                let v: Vec<String> = (0..4).map(|cc| value(j, cc)).collect();
                let q = format!("((r0 + {i}u) * N + n0 + {}u) / 4u", 4 * j);
                let v = format!("vec4<f32>({})", v.join(", "));
                line(format!(
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
                    &g,
                    &format!("r0 + {i}u"),
                    &format!("col{j}_{cc}"),
                    &value(j, cc),
                );
                line(format!(
                    "        if (n0 + {}u < N) {{ {store} }}",
                    4 * j + cc
                ));
            }
        }
        line("    }".into());
    }
    line("}".into());
    let (reads, mirrors) = gemm_reads(&g, path, quad_stores);
    let source = fill(
        MATMUL_TEXTURE,
        &[
            ("M", m.to_string()),
            ("N", n.to_string()),
            ("K", k.to_string()),
            ("READS", reads),
            ("WORKGROUP", TEX_GEMM_WORKGROUP.to_string()),
            ("BODY", b.trim_end().to_string()),
        ],
    );
    KernelSource {
        name: gemm_name(&g, path),
        source,
        groups,
        mirrors,
    }
}

/// The per-quad code of an elementwise kernel over `len` elements (`len_const` names the
/// length in WGSL): loads of `inputs` (accessor, scalar name) for quad `q` and four unrolled
/// element blocks of `body`, whose stores `NAME[i] = ` go to the outputs (name in `body`,
/// declared name), as one vec4 store per output when `len` is a whole number of quads.
fn quad_code(
    len_const: &str,
    len: u64,
    inputs: &[(String, String)],
    outputs: &[(String, String)],
    body: &str,
) -> (String, String) {
    let vec4 = len.is_multiple_of(4);
    let mut pre = String::new();
    for (acc, var) in inputs {
        pre.push_str(&format!("let {var}_4 = rd4_{acc}(q);\n    "));
    }
    if vec4 {
        for (_, o) in outputs {
            pre.push_str(&format!("var {o}_v = vec4<f32>(0.0);\n    "));
        }
    }
    let mut b = String::new();
    for c in 0..4 {
        // Element 0 of a live quad always exists; the others only if the length reaches them.
        let guard = c > 0 && !vec4;
        b.push_str(&format!("    {{\n        let i = 4u * q + {c}u;\n"));
        let ind = if guard {
            b.push_str(&format!("        if (i < {len_const}) {{\n"));
            "            "
        } else {
            "        "
        };
        for (_, var) in inputs {
            b.push_str(&format!("{ind}let {var} = {var}_4[{c}];\n"));
        }
        for l in body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
        {
            let mut l = l.to_string();
            for (from, to) in outputs {
                let to = if vec4 {
                    format!("{to}_v[{c}] = ")
                } else {
                    format!("{to}[i] = ")
                };
                l = l.replace(&format!("{from}[i] = "), &to);
            }
            b.push_str(&format!("{ind}{l}\n"));
        }
        if guard {
            b.push_str("        }\n");
        }
        b.push_str("    }\n");
    }
    if vec4 {
        for (_, o) in outputs {
            b.push_str(&format!("    {o}[q] = {o}_v;\n"));
        }
    }
    (pre, b)
}

/// An elementwise kernel over `len` elements, four per invocation. `inputs` pairs an operand's
/// accessor with the scalar name the body reads element `i` by; `prelude` runs once per
/// invocation; `body` is the per-element code (statements using `i` and the scalars).
pub(crate) fn elementwise(
    name: String,
    len: u64,
    reads: Reads,
    inputs: &[(&str, &str)],
    prelude: &str,
    body: &str,
) -> KernelSource {
    let quads = len.div_ceil(4);
    let (groups, row) = grid(quads, 64);
    // Whole quads: each output is stored once per invocation, as a vec4.
    let vec4 = len.is_multiple_of(4);
    let outputs: Vec<(String, String)> = reads
        .output_names()
        .into_iter()
        .map(|o| (o.clone(), o))
        .collect();
    let (decls, mirrors) = reads.finish_with(vec4);
    let inputs: Vec<(String, String)> = inputs
        .iter()
        .map(|(a, v)| (a.to_string(), v.to_string()))
        .collect();
    let (mut pre, b) = quad_code("LEN", len, &inputs, &outputs, body);
    pre.push_str(prelude);
    let source = fill(
        ELEMENTWISE,
        &[
            ("LEN", len.to_string()),
            ("ROW", row.to_string()),
            ("DECLS", decls),
            ("PRELUDE", pre.trim_end().to_string()),
            ("BODY", b.trim_end().to_string()),
        ],
    );
    KernelSource {
        name,
        source,
        groups,
        mirrors,
    }
}

/// `dst[i] = v`, or accumulating `dst[i] = old + v` (with `old` the element read before).
pub(crate) fn store_scalar(store: Store, dst: &str, v: &str) -> String {
    match store {
        Store::Write => format!("{dst}[i] = {v};"),
        Store::Accumulate => format!("{dst}[i] = {dst}_old + {v};"),
    }
}

/// The inputs of an elementwise kernel, plus the destination's old value when accumulating.
pub(crate) fn with_old<'a>(
    store: Store,
    dst: &'a str,
    old: &'a str,
    mut inputs: Vec<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    if store == Store::Accumulate {
        inputs.push((dst, old));
    }
    inputs
}

/// `dst[i] = v` or, accumulating, `dst[i] = rd_dst(i) + v` (row kernels).
pub(crate) fn store_elem(store: Store, dst: &str, idx: &str, v: &str) -> String {
    match store {
        Store::Write => format!("{dst}[{idx}] = {v};"),
        Store::Accumulate => format!("{dst}[{idx}] = rd_{dst}({idx}) + {v};"),
    }
}

pub(crate) fn acc_tag(store: Store) -> &'static str {
    if store == Store::Accumulate {
        " acc"
    } else {
        ""
    }
}

/// y (=|+=) x: passes a gradient through (add's backward) or accumulates it.
pub fn copy(len: u64, store: Store, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "x")
        .output(1, "y", store == Store::Accumulate);
    elementwise(
        format!("copy[{len}{}]", acc_tag(store)),
        len,
        reads,
        &with_old(store, "y", "y_old", vec![("x", "x")]),
        "",
        &store_scalar(store, "y", "x"),
    )
}

pub(crate) fn row_kernel(
    name: String,
    template: &str,
    rows: u64,
    subs: &[(&str, String)],
    mirrors: Vec<Mirror>,
) -> KernelSource {
    let mut all = vec![("ROWS", rows.to_string())];
    all.extend(subs.iter().cloned());
    KernelSource {
        name,
        source: fill(template, &all),
        groups: [rows.div_ceil(64).max(1) as u32, 1, 1],
        mirrors,
    }
}

/// A loss kernel: one workgroup computes dz and adds the batch's statistics to acc.
fn loss_kernel(
    name: String,
    template: &str,
    path: ReadPath,
    subs: &[(&str, String)],
) -> KernelSource {
    let (decls, mirrors) = Reads::new(path)
        .input(0, "z")
        .input(1, "t")
        .output(2, "dz", false)
        .output(3, "acc", true)
        .finish();
    let mut all = subs.to_vec();
    all.push(("READS", decls));
    all.push(("STATS", LOSS_STATS.trim_end().to_string()));
    KernelSource {
        name,
        source: fill(template, &all),
        groups: [1, 1, 1],
        mirrors,
    }
}

/// Softmax cross-entropy from logits over `rows` x `c`: writes dz (scaled) and adds the
/// batch's [loss, correct, top5, rows] to acc.
pub fn softmax_xent(rows: u64, c: u64, scale: f64, path: ReadPath) -> KernelSource {
    loss_kernel(
        format!("softmax_xent[{rows}x{c}]"),
        SOFTMAX_XENT,
        path,
        &[
            ("ROWS", rows.to_string()),
            ("C", c.to_string()),
            ("SCALE", f32_lit(scale)),
        ],
    )
}

/// Binary cross-entropy from logits (one logit per row), with the batch's statistics.
pub fn bce_logits(rows: u64, scale: f64, path: ReadPath) -> KernelSource {
    loss_kernel(
        format!("bce_logits[{rows}]"),
        BCE_LOGITS,
        path,
        &[("ROWS", rows.to_string()), ("SCALE", f32_lit(scale))],
    )
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

/// SGD update of one parameter tensor (bindings w, g, velocity, hyper).
pub fn sgd(len: u64, momentum: f64, weight_decay: f64, path: ReadPath) -> KernelSource {
    update_group(
        &[len],
        Optimizer::Sgd {
            momentum,
            weight_decay,
        },
        path,
    )
}

/// Adam update of one parameter tensor (bindings w, g, m, v, hyper).
pub fn adam(
    len: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    path: ReadPath,
) -> KernelSource {
    update_group(
        &[len],
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        },
        path,
    )
}

/// An optimizer and its settings, as [`update_group`] applies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd {
        momentum: f64,
        weight_decay: f64,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl Optimizer {
    /// Operands per tensor: w, g and the state tensors (SGD: velocity; Adam: m, v).
    pub fn operands(self) -> u32 {
        match self {
            Optimizer::Sgd { .. } => 3,
            Optimizer::Adam { .. } => 4,
        }
    }
}

/// Most tensors one grouped update can take (its operands sit below the mirror bindings).
pub const MAX_GROUP: usize = ((MIRROR_BINDING_BASE - 1) / 4) as usize;

/// The update of one or several tensors of lengths `lens` in one dispatch. Bindings: per
/// tensor w, g, then the state (v for SGD; m, v for Adam), then hyper last.
pub fn update_group(lens: &[u64], rule: Optimizer, path: ReadPath) -> KernelSource {
    assert!(!lens.is_empty() && lens.len() <= MAX_GROUP);
    let per = rule.operands();
    let (consts, names, template): (String, &[&str], &str) = match rule {
        Optimizer::Sgd {
            momentum,
            weight_decay,
        } => (
            format!(
                "const MOMENTUM: f32 = {};\nconst WD: f32 = {};",
                f32_lit(momentum),
                f32_lit(weight_decay)
            ),
            &["w", "g", "v"],
            SGD,
        ),
        Optimizer::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => (
            format!(
                "const BETA1: f32 = {};\nconst BETA2: f32 = {};\nconst EPS: f32 = {};\nconst WD: f32 = {};",
                f32_lit(beta1),
                f32_lit(beta2),
                f32_lit(eps),
                f32_lit(weight_decay)
            ),
            &["w", "g", "m", "v"],
            ADAM,
        ),
    };
    let mut reads = Reads::new(path).extra(&consts);
    let mut body = String::new();
    let mut start = 0u64;
    for (t, &len) in lens.iter().enumerate() {
        reads = reads.extra(&format!("const LEN{t}: u32 = {len}u;"));
        let mut inputs = vec![];
        let mut outputs = vec![];
        for (o, name) in names.iter().enumerate() {
            let op = t as u32 * per + o as u32;
            if *name == "g" {
                reads = reads.input(op, &format!("g{t}"));
                inputs.push((format!("g{t}"), "g".to_string()));
            } else {
                let acc = format!("{name}_out{t}");
                reads = if len.is_multiple_of(4) {
                    reads.output_quads(op, &acc, true)
                } else {
                    reads.output(op, &acc, true)
                };
                inputs.push((acc.clone(), name.to_string()));
                outputs.push((format!("{name}_out"), acc));
            }
        }
        let quads = len.div_ceil(4);
        let (pre, b) = quad_code(&format!("LEN{t}"), len, &inputs, &outputs, template);
        let cond = if t + 1 == lens.len() {
            String::new()
        } else {
            format!("if (qa < {}u) ", start + quads)
        };
        body.push_str(&format!(
            "    {}{cond}{{\n    let q = qa - {start}u;\n    {}\n{}    }}",
            if t == 0 { "" } else { " else " },
            pre.trim_end(),
            b
        ));
        start += quads;
    }
    reads = reads.input(lens.len() as u32 * per, "hyper");
    let (decls, mirrors) = reads.finish();
    let (groups, row) = grid(start, 64);
    let list: Vec<String> = lens.iter().map(u64::to_string).collect();
    let kind = match rule {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Adam { .. } => "adam",
    };
    KernelSource {
        name: format!("{kind}[{}]", list.join("+")),
        source: fill(
            UPDATE_GROUP,
            &[
                ("QUADS", start.to_string()),
                ("ROW", row.to_string()),
                ("DECLS", decls),
                ("PRELUDE", "let h = rd4_hyper(0u);".to_string()),
                ("BODY", body),
            ],
        ),
        groups,
        mirrors,
    }
}

/// What a kernel asks of a device beyond its bindings' sizes, read from its WGSL: checked
/// against the adapter's limits before any pipeline is built (wgpu does not check all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub workgroup_size: [u32; 3],
    /// Bytes of workgroup memory.
    pub workgroup_bytes: u64,
    pub storage_buffers: u32,
    /// Sampled textures.
    pub textures: u32,
    pub storage_textures: u32,
}

impl KernelSource {
    pub fn resources(&self) -> Result<Resources, String> {
        let module = naga::front::wgsl::parse_str(&self.source)
            .map_err(|e| e.emit_to_string(&self.source))?;
        let ep = module
            .entry_points
            .first()
            .ok_or_else(|| format!("{} has no entry point", self.name))?;
        let mut r = Resources {
            workgroup_size: ep.workgroup_size,
            workgroup_bytes: 0,
            storage_buffers: 0,
            textures: 0,
            storage_textures: 0,
        };
        for (_, var) in module.global_variables.iter() {
            let inner = &module.types[var.ty].inner;
            match var.space {
                naga::AddressSpace::WorkGroup => {
                    r.workgroup_bytes += inner.size(module.to_ctx()) as u64
                }
                naga::AddressSpace::Storage { .. } => r.storage_buffers += 1,
                naga::AddressSpace::Handle => match inner {
                    naga::TypeInner::Image {
                        class: naga::ImageClass::Storage { .. },
                        ..
                    } => r.storage_textures += 1,
                    naga::TypeInner::Image { .. } => r.textures += 1,
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(r)
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
    const ADAM_RULE: Optimizer = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
    };
    const SGD_RULE: Optimizer = Optimizer::Sgd {
        momentum: 0.9,
        weight_decay: 5e-4,
    };

    #[test]
    fn resources_read_from_the_source() {
        let g = Gemm {
            trans_b: true,
            bias: true,
            ..Gemm::new(128, 10, 784)
        };
        let r = matmul(g, ReadPath::Storage).resources().expect("parses");
        // Two 16x64 f32 tiles; a, b, bias read-only storage and c.
        assert_eq!(r.workgroup_size, [16, 16, 1]);
        assert_eq!(r.workgroup_bytes, 2 * 16 * 64 * 4);
        assert_eq!((r.storage_buffers, r.textures), (4, 0));
        let r = matmul(g, ReadPath::Texture).resources().expect("parses");
        assert_eq!(r.workgroup_bytes, 0);
        assert_eq!(
            (r.storage_buffers, r.textures, r.storage_textures),
            (1, 3, 0)
        );
        let r = matmul(g, ReadPath::Image).resources().expect("parses");
        assert_eq!(
            (r.storage_buffers, r.textures, r.storage_textures),
            (1, 0, 3)
        );
        let r = softmax_xent(128, 10, 1.0, ReadPath::Storage)
            .resources()
            .expect("parses");
        assert_eq!((r.workgroup_size, r.workgroup_bytes), ([64, 1, 1], 64 * 16));
    }

    use super::*;
    use crate::ops::{activation, add, dropout, softmax};

    #[test]
    fn every_kernel_variant_is_valid_wgsl() {
        let mut all = vec![];
        for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            // Shapes that take each fetch mode of the texture path: 4-aligned and not.
            for (m, n, k) in [(37, 53, 71), (36, 52, 72), (128, 10, 128), (12, 8, 10)] {
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
                                all.push(matmul(
                                    Gemm {
                                        trans_a: ta,
                                        trans_b: tb,
                                        bias,
                                        act,
                                        store,
                                        ..Gemm::new(m, n, k)
                                    },
                                    path,
                                ));
                            }
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
                all.push(activation::forward_kernel(act, 1000, path));
                all.push(activation::backward_kernel(act, 1000, Store::Write, path));
                all.push(activation::backward_kernel(
                    act,
                    1000,
                    Store::Accumulate,
                    path,
                ));
            }
            all.push(add::forward_kernel(77, path));
            all.push(copy(77, Store::Write, path));
            all.push(copy(77, Store::Accumulate, path));
            all.push(dropout::kernel(77, 0.5, 0, false, Store::Write, path));
            all.push(dropout::kernel(77, 0.5, 231, true, Store::Accumulate, path));
            all.push(softmax::forward_kernel(7, 10, path));
            all.push(softmax::backward_kernel(7, 10, Store::Accumulate, path));
            all.push(softmax_xent(7, 10, 1.0 / 7.0, path));
            all.push(bce_logits(7, 1.0 / 7.0, path));
            all.push(softmax_xent(300, 7, 1.0 / 300.0, path));
            all.push(bias_grad(7, 10, Store::Write, path));
            all.push(bias_grad(7, 10, Store::Accumulate, path));
            all.push(bias_grad(7, 12, Store::Accumulate, path));
            all.push(adam(1002, 0.9, 0.999, 1e-8, 0.0, path));
            all.push(activation::backward_kernel(
                Act::Relu,
                1003,
                Store::Accumulate,
                path,
            ));
            all.push(sgd(1000, 0.9, 5e-4, path));
            all.push(adam(1000, 0.9, 0.999, 1e-8, 0.0, path));
            for lens in [&[10][..], &[1280, 10, 100352, 7], &[5, 6, 7, 8, 9, 10, 11]] {
                all.push(update_group(lens, ADAM_RULE, path));
                all.push(update_group(lens, SGD_RULE, path));
            }
        }
        for k in &all {
            if let Err(e) = validate(&k.source) {
                panic!("{} is invalid:\n{e}\n{}", k.name, k.source);
            }
            let textures = k.source.matches("texture_2d<").count()
                + k.source.matches("texture_storage_2d<").count();
            assert_eq!(textures, k.mirrors.len(), "{}: mirrors listed", k.name);
        }
    }

    #[test]
    fn texture_path_reads_no_storage_buffer_but_the_dropout_seed() {
        for path in [ReadPath::Texture, ReadPath::Image] {
            let k = adam(1000, 0.9, 0.999, 1e-8, 0.0, path);
            assert!(!k.source.contains("var<storage, read>"), "{}", k.source);
            assert_eq!(k.mirrors.len(), 5);
            let g = Gemm {
                store: Store::Accumulate,
                bias: true,
                ..Gemm::new(128, 784, 128)
            };
            let k = matmul(g, path);
            assert!(!k.source.contains("var<storage, read>"));
            // a, b, bias at their own bindings, and c's mirror for the accumulation.
            let mut m: Vec<(u32, u32)> = k.mirrors.iter().map(|m| (m.binding, m.of)).collect();
            m.sort();
            assert_eq!(m, vec![(0, 0), (1, 1), (3, 3), (34, 2)]);
        }
    }

    #[test]
    fn image_path_differs_from_the_sampled_one_only_in_how_a_mirror_is_bound_and_loaded() {
        let g = Gemm {
            trans_b: true,
            bias: true,
            act: Act::Relu,
            ..Gemm::new(128, 128, 784)
        };
        let sampled = matmul(g, ReadPath::Texture);
        let image = matmul(g, ReadPath::Image);
        assert_eq!(
            image
                .source
                .replace("texture_storage_2d<rgba32float, read>", "texture_2d<f32>")
                .replace("u)); }", "u), 0); }"),
            sampled.source
        );
        assert_eq!(
            (image.groups, &image.mirrors),
            (sampled.groups, &sampled.mirrors)
        );
        assert!(image.name.ends_with(" img]") && sampled.name.ends_with(" tex]"));
    }

    #[test]
    fn texture_tiles_shrink_when_more_threads_share_the_work() {
        // One 16-invocation workgroup per thread, the largest tile (at most 16x16) that leaves
        // that many.
        assert_eq!(texture_tile(128, 128, 2 * TEX_GEMM_WORKGROUP), (16, 4));
        assert_eq!(texture_tile(128, 128, 4 * TEX_GEMM_WORKGROUP), (16, 4));
        assert_eq!(texture_tile(128, 128, 8 * TEX_GEMM_WORKGROUP), (16, 2));
        assert_eq!(texture_tile(1024, 1024, 64 * TEX_GEMM_WORKGROUP), (16, 4));
        assert_eq!(texture_tile(128, 10, 4 * TEX_GEMM_WORKGROUP), (4, 1));
        let eight = matmul_for(Gemm::new(128, 128, 784), ReadPath::Texture, 8);
        let four = matmul(Gemm::new(128, 128, 784), ReadPath::Texture);
        assert_eq!((eight.groups[0], four.groups[0]), (8, 4));
        // The storage path does not depend on it.
        let s2 = matmul_for(Gemm::new(128, 128, 784), ReadPath::Storage, 2);
        assert_eq!(
            s2.source,
            matmul(Gemm::new(128, 128, 784), ReadPath::Storage).source
        );
    }

    #[test]
    fn grid_folds_large_work() {
        assert_eq!(grid(1000, 256).0, [4, 1, 1]);
        let (g, row) = grid(128 * 290_400, 256);
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
}
