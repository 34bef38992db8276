//! Elementwise kernels (four elements per invocation, stored as vec4 where the length allows),
//! the copy that passes or accumulates a gradient, and the per-row kernel shape.

use super::template::{acc_tag, fill, grid, store_scalar, with_old, Reads};
use super::{KernelSource, Mirror, ReadPath, Store};

const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");

/// The per-quad code of an elementwise kernel over `len` elements (`len_const` names the
/// length in WGSL): loads of `inputs` (accessor, scalar name) for quad `q` and four unrolled
/// element blocks of `body`, whose stores `NAME[i] = ` go to the outputs (name in `body`,
/// declared name), as one vec4 store per output when `len` is a whole number of quads.
pub(super) fn quad_code(
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
