//! Template plumbing shared by every kernel: operand declarations and read accessors for each
//! read path ([`Reads`]), placeholder filling, WGSL literals and constants, the dispatch grid,
//! the per-element kernel shape, and the stores of a result (written or accumulated).

use super::{KernelSource, Mirror, ReadPath, Store, MAX_GROUPS, MIRROR_BINDING_BASE, MIRROR_WIDTH};

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
    pub(super) fn output_quads(mut self, op: u32, name: &str, read: bool) -> Self {
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
    pub(super) fn finish_with(mut self, vec4: bool) -> (String, Vec<Mirror>) {
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

    pub(super) fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|(_, n, _, _)| n.clone()).collect()
    }
}

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
