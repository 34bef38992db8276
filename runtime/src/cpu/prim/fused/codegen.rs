//! Writes `generated.rs`: a compiled loop for each fused group the shipped models make (every
//! `models/*.net` and the per-call benchmark's layers, forward and backward, at a few batch
//! sizes), and tests those loops against the block interpreter.
//!
//! `generated.rs` is committed, so a build needs no generator step and a reader sees each
//! loop. `generated_loops_are_current` fails when a change to the compiler, the standard
//! library or a model makes other groups; `NETC_REGENERATE=1 cargo test --release -p
//! netc-runtime --lib generated_loops` rewrites the file.

use super::compiled::{key, spec, Spec};
use super::{plan, run_with, Sink, Src};
use crate::rng::Rng;
use netc_compiler::prim::fuse::{is_elementwise, Group};
use netc_compiler::prim::{Graph, Prim, Unary};
use std::collections::HashSet;
use std::fmt::Write;
use std::path::PathBuf;

/// The per-call benchmark's layers (`benches/prims.rs`), beside the models.
const LAYERS: [&str; 2] = [
    "net t { input x: 17x64\n y = layernorm(64) }",
    "net t { input x: 17x64\n y = gelu }",
];

const BATCHES: [usize; 3] = [1, 2, 3];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every model's fused groups (the graph each belongs to), in a fixed order.
fn probes() -> Vec<(Graph, Vec<Group>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("models"))
        .expect("models/ is read")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    files.sort();
    let mut sources: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("a model is read");
            (p.display().to_string(), text)
        })
        .collect();
    sources.extend(
        LAYERS
            .iter()
            .map(|s| ("layer.net".to_string(), s.to_string())),
    );
    let mut out = vec![];
    for (name, text) in sources {
        let m = netc_compiler::compile(&name, &text).expect("a shipped model compiles");
        for net in &m.networks {
            let regions = net.regions().expect("a shipped model's regions build");
            for r in &regions.list {
                let (fwd, bwd) = r.groups();
                out.push((r.graph.clone(), fwd));
                out.push((r.graph.clone(), r.keeping_forward.clone()));
                out.push((r.backward.clone(), bwd));
                out.push((r.backward.clone(), r.keeping_backward.clone()));
            }
        }
    }
    out
}

fn fused(g: &Graph, gr: &Group) -> bool {
    let p = &g.nodes[gr.root].prim;
    is_elementwise(p) || matches!(p, Prim::Reduce { .. })
}

/// The distinct specs of every probe group, in first-seen order.
fn specs() -> Vec<Spec> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for (g, groups) in probes() {
        for gr in groups.iter().filter(|gr| fused(&g, gr)) {
            for b in BATCHES {
                let p = plan::<f32>(&g, gr, b);
                if let Some(sp) = spec(&p.prog, &p.st, p.sink) {
                    if seen.insert(key(&sp)) {
                        out.push(sp);
                    }
                }
            }
        }
    }
    out
}

fn operand(a: Src, sp: &Spec) -> String {
    match a {
        Src::Load(k) if sp.inner[k] => format!("l{k}[j]"),
        Src::Load(k) => format!("l{k}"),
        Src::Step(j) => format!("s{j}"),
        Src::Const(c) if c.is_finite() => format!("{c:?}f64 as f32"),
        Src::Const(c) => format!("f64::from_bits({:#x}) as f32", c.to_bits()),
    }
}

fn expr(prim: &Prim, args: &[String]) -> String {
    match prim {
        Prim::Unary(Unary::Pow(c)) => format!("unary_value(Unary::Pow({c:?}), {})", args[0]),
        Prim::Unary(u) => format!("unary_value(Unary::{u:?}, {})", args[0]),
        Prim::Binary(b) => format!("binary(Binary::{b:?}, {}, {})", args[0], args[1]),
        Prim::Compare(c) => format!("compare(Compare::{c:?}, {}, {})", args[0], args[1]),
        Prim::Where => format!("where_value({}, {}, {})", args[0], args[1], args[2]),
        Prim::Input { .. }
        | Prim::Param { .. }
        | Prim::Const(_)
        | Prim::Reduce { .. }
        | Prim::Expand
        | Prim::Matmul
        | Prim::Reshape
        | Prim::Permute { .. }
        | Prim::Slice { .. }
        | Prim::Pad { .. }
        | Prim::Concat { .. }
        | Prim::Gather
        | Prim::ScatterAdd { .. }
        | Prim::OneHot { .. }
        | Prim::CausalMask { .. } => unreachable!("{prim:?} is not a step of a chain"),
    }
}

/// Whether each step is the same along a row (its operands all are).
fn invariant(sp: &Spec) -> Vec<bool> {
    let mut inv: Vec<bool> = vec![];
    for (_, args) in &sp.steps {
        let v = args.iter().all(|&a| match a {
            Src::Load(k) => !sp.inner[k],
            Src::Step(j) => inv[j],
            Src::Const(_) => true,
        });
        inv.push(v);
    }
    inv
}

/// A readable line of the group: `s2 = mul(l0, s1)`, one per step.
fn describe(sp: &Spec) -> String {
    let src = |a: Src| match a {
        Src::Load(k) => format!("l{k}"),
        Src::Step(j) => format!("s{j}"),
        Src::Const(c) => format!("{c}"),
    };
    let mut d: Vec<String> = sp
        .steps
        .iter()
        .enumerate()
        .map(|(j, (p, args))| {
            let a: Vec<String> = args.iter().map(|&a| src(a)).collect();
            format!("s{j} = {}({})", p.name(), a.join(", "))
        })
        .collect();
    let sink = match (sp.sink, sp.out_inner) {
        (Sink::Write, _) => "written",
        (Sink::Sum, true) => "summed over rows",
        (Sink::Sum, false) => "summed along each row",
        (Sink::Max, true) => "maximum over rows",
        (Sink::Max, false) => "maximum along each row",
    };
    d.push(format!("{} {sink}", src(sp.result)));
    d.join("; ")
}

fn kernel(i: usize, sp: &Spec) -> String {
    let inv = invariant(sp);
    let mut s = String::new();
    let _ = writeln!(s, "/// {}", describe(sp));
    s.push_str("#[inline(always)]\n#[allow(unused_variables)]\n");
    let _ = write!(
        s,
        "fn k{i}((rows, w): (usize, usize), d: &[&[f32]], at: &Rows, out: &mut [f32], \
         (oo, os): (usize, usize), tmp: &mut [f32])"
    );
    s.push_str(" {\n");
    s.push_str("    for r in 0..rows {\n");
    for (k, &inner) in sp.inner.iter().enumerate() {
        let _ = match inner {
            true => writeln!(
                s,
                "        let l{k} = &d[{k}][at[{k}].0 + r * at[{k}].1..][..w];"
            ),
            false => writeln!(s, "        let l{k} = d[{k}][at[{k}].0 + r * at[{k}].1];"),
        };
    }
    let step = |s: &mut String, j: usize, indent: &str| {
        let (p, args) = &sp.steps[j];
        let a: Vec<String> = args.iter().map(|&a| operand(a, sp)).collect();
        let _ = writeln!(s, "{indent}let s{j} = {};", expr(p, &a));
    };
    (0..sp.steps.len())
        .filter(|&j| inv[j])
        .for_each(|j| step(&mut s, j, "        "));
    let v = operand(sp.result, sp);
    let (open, store, close) = match (sp.sink, sp.out_inner) {
        (Sink::Write, _) => ("let o = &mut out[oo + r * os..][..w];", "o[j] = v;", ""),
        (Sink::Sum, true) => ("let o = &mut out[oo + r * os..][..w];", "o[j] += v;", ""),
        (Sink::Max, true) => (
            "let o = &mut out[oo + r * os..][..w];",
            "o[j] = o[j].max(v);",
            "",
        ),
        (Sink::Sum, false) => (
            "let t = &mut tmp[..w];",
            "t[j] = v;",
            "out[oo + r * os] += sum(t);",
        ),
        (Sink::Max, false) => (
            "let t = &mut tmp[..w];",
            "t[j] = v;",
            "out[oo + r * os] = out[oo + r * os].max(max(t));",
        ),
    };
    let _ = writeln!(s, "        {open}");
    s.push_str("        for j in 0..w {\n");
    (0..sp.steps.len())
        .filter(|&j| !inv[j])
        .for_each(|j| step(&mut s, j, "            "));
    let _ = writeln!(s, "            let v = {v};");
    let _ = writeln!(s, "            {store}");
    s.push_str("        }\n");
    if !close.is_empty() {
        let _ = writeln!(s, "        {close}");
    }
    s.push_str("    }\n}\n");
    s
}

fn source(specs: &[Spec]) -> String {
    let mut s = String::new();
    s.push_str(
        "//! Generated by `codegen.rs` from the fused groups of `models/*.net` and the per-call\n\
         //! benchmark's layers: do not edit. Regenerate with `NETC_REGENERATE=1 cargo test\n\
         //! --release -p netc-runtime --lib generated_loops`.\n\n\
         // The loops index their rows side by side (a zip of up to seven slices reads worse), and\n\
         // their constants are the models' own digits, not approximations of named ones.\n\
         #![allow(clippy::needless_range_loop, clippy::approx_constant)]\n\n\
         use super::block::{max, sum, unary_value, where_value};\n\
         use super::compiled::Rows;\n\
         use crate::cpu::prim::ops::{binary, compare};\n\
         #[allow(unused_imports)]\n\
         use netc_compiler::prim::{Binary, Compare, Unary};\n\n",
    );
    let _ = writeln!(s, "pub(super) static KEYS: [&[u64]; {}] = [", specs.len());
    for sp in specs {
        let k: Vec<String> = key(sp).iter().map(|v| v.to_string()).collect();
        let _ = writeln!(s, "    &[{}],", k.join(", "));
    }
    s.push_str("];\n\n");
    s.push_str(
        "/// Runs loop `idx` over `rows` rows of `w` values: operand `k`'s row `r` starts at\n\
         /// `at[k].0 + r * at[k].1`, the output's at `oo + r * os`.\n\
         #[inline(always)]\n\
         pub(super) fn run(\n    idx: usize,\n    hw: (usize, usize),\n    d: &[&[f32]],\n    \
         at: &Rows,\n    out: &mut [f32],\n    o: (usize, usize),\n    tmp: &mut [f32],\n) {\n    \
         match idx {\n",
    );
    for i in 0..specs.len() {
        let _ = writeln!(s, "        {i} => k{i}(hw, d, at, out, o, tmp),");
    }
    s.push_str("        _ => unreachable!(\"an index of KEYS\"),\n    }\n}\n");
    for (i, sp) in specs.iter().enumerate() {
        s.push('\n');
        s.push_str(&kernel(i, sp));
    }
    s
}

#[test]
fn generated_loops_are_current() {
    let path = root().join("runtime/src/cpu/prim/fused/generated.rs");
    let want = source(&specs());
    if std::env::var_os("NETC_REGENERATE").is_some() {
        std::fs::write(&path, &want).expect("generated.rs is written");
        return;
    }
    let have = std::fs::read_to_string(&path).expect("generated.rs is read");
    assert!(
        have == want,
        "generated.rs is out of date: regenerate it with `NETC_REGENERATE=1 cargo test \
         --release -p netc-runtime --lib generated_loops`"
    );
}

/// Every probe group at several batch sizes, run by its compiled loop and by the block
/// interpreter on the same random values: a written value bit for bit, a reduction within
/// rounding (the two sum in different orders).
#[test]
fn generated_loops_match_the_interpreter() {
    let mut rng = Rng::new(7);
    let (mut groups_run, mut values) = (0, 0usize);
    for (g, groups) in probes() {
        for gr in groups.iter().filter(|gr| fused(&g, gr)) {
            for b in [1, 3, 5] {
                let reads: Vec<Vec<f32>> = gr
                    .reads
                    .iter()
                    .map(|&r| {
                        (0..g.nodes[r].shape.numel(b))
                            .map(|_| rng.uniform(0.1, 1.1) as f32)
                            .collect()
                    })
                    .collect();
                let reads: Vec<&[f32]> = reads.iter().map(|v| v.as_slice()).collect();
                let n = g.nodes[gr.root].shape.numel(b);
                let (mut fast, mut slow) = (vec![0.0f32; n], vec![0.0f32; n]);
                if !run_with(&g, gr, b, &reads, &mut fast, true) {
                    continue;
                }
                run_with(&g, gr, b, &reads, &mut slow, false);
                let exact = !matches!(g.nodes[gr.root].prim, Prim::Reduce { .. });
                for (i, (&x, &y)) in fast.iter().zip(&slow).enumerate() {
                    let ok = match exact {
                        true => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
                        false => {
                            (x - y).abs() <= 1e-5 * (1.0 + y.abs()) || x.is_nan() && y.is_nan()
                        }
                    };
                    assert!(
                        ok,
                        "group of {:?} at batch {b}, value {i}: compiled {x}, interpreted {y}",
                        g.nodes[gr.root].prim
                    );
                }
                groups_run += 1;
                values += n;
            }
        }
    }
    // The models' groups do run compiled (a key mismatch would send them all to the
    // interpreter and this test would compare nothing).
    assert!(groups_run > 100, "only {groups_run} groups ran compiled");
    assert!(values > 100_000);
}
