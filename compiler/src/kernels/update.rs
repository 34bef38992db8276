//! Optimizer kernels: SGD with momentum and Adam, one or several parameter tensors per
//! dispatch.

use super::elementwise::quad_code;
use super::template::{f32_lit, fill, grid, Reads};
use super::{KernelSource, ReadPath, MIRROR_BINDING_BASE};

const SGD: &str = include_str!("../../../shaders/sgd.wgsl");
const ADAM: &str = include_str!("../../../shaders/adam.wgsl");
const UPDATE_GROUP: &str = include_str!("../../../shaders/update_group.wgsl");

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
