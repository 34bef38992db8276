//! Optimizer kernels: SGD with momentum and Adam, one or several parameter tensors per
//! dispatch.

use super::elementwise::quad_code;
use super::template::{f32_lit, fill, grid, Reads};
use super::{KernelSource, ReadPath, MIRROR_BINDING_BASE};

const SGD: &str = include_str!("../../../shaders/sgd.wgsl");
const ADAM: &str = include_str!("../../../shaders/adam.wgsl");
const UPDATE_GROUP: &str = include_str!("../../../shaders/update_group.wgsl");

/// The finiteness test of an updated quad and the mark it leaves in `health`. An exponent of
/// all ones is an infinity or a NaN (compared as bits: a compiler may assume floats finite).
const HEALTH: &str = "fn finite4(v: vec4<f32>) -> bool {
    let e = bitcast<vec4<u32>>(v) & vec4<u32>(0x7f800000u);
    return all(e != vec4<u32>(0x7f800000u));
}
fn mark_nonfinite(step: f32) {
    if (health[0] == 0.0) { health[0] = max(step, 1.0); }
}";

/// After tensor `t`'s quad `q` is written: its new weights checked (stored as quads when
/// `len` is a whole number of them, else element by element up to the length).
fn finite_check(t: usize, len: u64) -> String {
    if len.is_multiple_of(4) {
        return format!("    if (!finite4(w_out{t}[q])) {{ mark_nonfinite(h.w); }}\n");
    }
    format!(
        "    var wn = vec4<f32>(0.0);\n    for (var k = 0u; k < 4u; k++) {{ if (4u * q + k < LEN{t}) {{ wn[k] = w_out{t}[4u * q + k]; }} }}\n    if (!finite4(wn)) {{ mark_nonfinite(h.w); }}\n"
    )
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
/// tensor w, g, then the state (v for SGD; m, v for Adam), then hyper, then health: the
/// step (hyper's fourth value) at which an updated weight was first NaN or infinite, 0 while
/// none was. The check is four compares per quad the kernel has just written, so a run learns
/// the step a parameter went bad at its next read-back of the device, with no read per step.
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
        let b = format!("{b}{}", finite_check(t, len));
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
    reads = reads
        .input(lens.len() as u32 * per, "hyper")
        .extra(&format!(
            "@group(0) @binding({}) var<storage, read_write> health: array<f32>;\n{HEALTH}",
            lens.len() as u32 * per + 1
        ));
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
