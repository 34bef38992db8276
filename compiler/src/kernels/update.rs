//! Optimizer kernels: SGD with momentum, Adam and AdamW, one or several parameter tensors
//! per dispatch, and the squared gradient norms that clipping by the global norm reads.

use super::elementwise::quad_code;
use super::template::{f32_lit, fill, grid, Reads};
use super::{KernelSource, ReadPath, MIRROR_BINDING_BASE};

const SGD: &str = include_str!("../../../shaders/sgd.wgsl");
const ADAM: &str = include_str!("../../../shaders/adam.wgsl");
const ADAMW: &str = include_str!("../../../shaders/adamw.wgsl");
const UPDATE_GROUP: &str = include_str!("../../../shaders/update_group.wgsl");
const GRAD_SUMSQ: &str = include_str!("../../../shaders/grad_sumsq.wgsl");

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
    /// Adam with decoupled weight decay, as torch.optim.AdamW: w *= 1 - lr * weight_decay,
    /// then the Adam step on the gradient alone.
    AdamW {
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
            Optimizer::Adam { .. } | Optimizer::AdamW { .. } => 4,
        }
    }

    /// The weight decay it applies (coupled for SGD and Adam, decoupled for AdamW).
    pub fn weight_decay(self) -> f64 {
        match self {
            Optimizer::Sgd { weight_decay, .. }
            | Optimizer::Adam { weight_decay, .. }
            | Optimizer::AdamW { weight_decay, .. } => weight_decay,
        }
    }

    /// The same optimizer with weight decay `wd` (0 for a tensor the decay rule leaves out).
    pub fn with_weight_decay(self, wd: f64) -> Optimizer {
        let mut o = self;
        match &mut o {
            Optimizer::Sgd { weight_decay, .. }
            | Optimizer::Adam { weight_decay, .. }
            | Optimizer::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
        o
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
    update_group_with(lens, (&vec![rule; lens.len()], &[]), None, path)
}

/// Gradient clipping inside an update kernel: the squared norms of the trainable gradients
/// sit in `slots` values of a buffer (see [`grad_sumsq`]); every invocation adds them in the
/// same order, so all scale by the same factor min(1, max_norm / (norm + 1e-6)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub max_norm: f64,
    pub slots: u64,
}

/// The settings of `rule` as WGSL constants (weight decay apart), its operand names, and
/// its per-element body.
fn rule_code(rule: Optimizer) -> (String, &'static [&'static str], &'static str) {
    match rule {
        Optimizer::Sgd { momentum, .. } => (
            format!("const MOMENTUM: f32 = {};", f32_lit(momentum)),
            &["w", "g", "v"],
            SGD,
        ),
        Optimizer::Adam {
            beta1, beta2, eps, ..
        }
        | Optimizer::AdamW {
            beta1, beta2, eps, ..
        } => (
            format!(
                "const BETA1: f32 = {};\nconst BETA2: f32 = {};\nconst EPS: f32 = {};",
                f32_lit(beta1),
                f32_lit(beta2),
                f32_lit(eps),
            ),
            &["w", "g", "m", "v"],
            if matches!(rule, Optimizer::AdamW { .. }) {
                ADAMW
            } else {
                ADAM
            },
        ),
    }
}

/// The weight-decay constants: one `WD` when every tensor decays alike (then true), else one
/// `WD{t}` per tensor.
fn wd_consts(rules: &[Optimizer], consts: &mut String) -> bool {
    let rule = rules[0];
    let shared = rules
        .iter()
        .all(|r| r.weight_decay() == rule.weight_decay());
    if shared {
        consts.push_str(&format!(
            "\nconst WD: f32 = {};",
            f32_lit(rule.weight_decay())
        ));
    } else {
        for (t, r) in rules.iter().enumerate() {
            consts.push_str(&format!(
                "\nconst WD{t}: f32 = {};",
                f32_lit(r.weight_decay())
            ));
        }
    }
    shared
}

/// [`update_group`] with a rule per tensor (the same optimizer, each with the weight decay
/// the decay rule gives that tensor) and a learning-rate multiplier per tensor (Caffe's
/// `lr_mult`; none given means 1 for all), and, with `clip`, the gradients scaled to the
/// global norm; the squared sums are bound after hyper and health.
pub fn update_group_with(
    lens: &[u64],
    (rules, lr_mults): (&[Optimizer], &[f64]),
    clip: Option<Clip>,
    path: ReadPath,
) -> KernelSource {
    assert!(!lens.is_empty() && lens.len() <= MAX_GROUP && rules.len() == lens.len());
    let rule = rules[0];
    let per = rule.operands();
    let (mut consts, names, template) = rule_code(rule);
    let shared = wd_consts(rules, &mut consts);
    let mut prelude = "let h = rd4_hyper(0u);".to_string();
    if let Some(c) = clip {
        consts.push_str(&format!(
            "\nconst MAX_NORM: f32 = {};\nconst NSQ: u32 = {}u;",
            f32_lit(c.max_norm),
            c.slots
        ));
        prelude.push_str(
            "\n    var ss = 0.0;\n    for (var k = 0u; k < NSQ; k = k + 1u) { ss = ss + rd_sumsq(k); }\n    let GS = min(1.0, MAX_NORM / (sqrt(ss) + 1e-6));",
        );
    }
    let mut reads = Reads::new(path).extra(&consts);
    let mut body = String::new();
    let mut start = 0u64;
    for (t, &len) in lens.iter().enumerate() {
        let mut code = template.to_string();
        if !shared {
            code = code.replace("WD", &format!("WD{t}"));
        }
        if clip.is_some() {
            code = code.replacen("let grad = g", "let grad = g * GS", 1);
        }
        // The host's rate (hyper's first value) times the tensor's multiplier.
        if let Some(&m) = lr_mults.get(t).filter(|&&m| m != 1.0) {
            reads = reads.extra(&format!("const LRM{t}: f32 = {};", f32_lit(m)));
            code = code.replace("h.x", &format!("(h.x * LRM{t})"));
        }
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
        let (pre, b) = quad_code(&format!("LEN{t}"), len, &inputs, &outputs, &code);
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
    if clip.is_some() {
        reads = reads.input(lens.len() as u32 * per + 2, "sumsq");
    }
    let (decls, mirrors) = reads.finish();
    let (groups, row) = grid(start, 64);
    let list: Vec<String> = lens.iter().map(u64::to_string).collect();
    let kind = match rule {
        Optimizer::Sgd { .. } => "sgd",
        Optimizer::Adam { .. } => "adam",
        Optimizer::AdamW { .. } => "adamw",
    };
    KernelSource {
        name: format!(
            "{kind}[{}]{}",
            list.join("+"),
            if clip.is_some() { " clip" } else { "" }
        ),
        source: fill(
            UPDATE_GROUP,
            &[
                ("QUADS", start.to_string()),
                ("ROW", row.to_string()),
                ("DECLS", decls),
                ("PRELUDE", prelude),
                ("BODY", body),
            ],
        ),
        groups,
        mirrors,
    }
}

/// The squared L2 norm of each of the gradients of lengths `lens` (one workgroup each),
/// written to `sumsq[base + t]`: the first half of clipping by the global norm, which the
/// update kernels finish. Bindings: the gradients, then sumsq.
pub fn grad_sumsq(lens: &[u64], base: u64, path: ReadPath) -> KernelSource {
    assert!(!lens.is_empty() && lens.len() <= MAX_GROUP);
    let mut reads = Reads::new(path);
    let mut body = String::new();
    for (t, &len) in lens.iter().enumerate() {
        reads = reads.input(t as u32, &format!("g{t}"));
        // Elements past the length in the last quad are padding: masked out.
        body.push_str(&format!(
            "    {}if (wid.x == {t}u) {{\n        for (var q = li; q < {q}u; q = q + 64u) {{\n            let x = select(vec4<f32>(0.0), rd4_g{t}(q), vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>({len}u));\n            s = s + dot(x, x);\n        }}\n    }}\n",
            if t == 0 { "" } else { "else " },
            q = len.div_ceil(4),
        ));
    }
    reads = reads.output(lens.len() as u32, "sumsq", false);
    let (decls, mirrors) = reads.finish();
    let list: Vec<String> = lens.iter().map(u64::to_string).collect();
    KernelSource {
        name: format!("grad_sumsq[{}]", list.join("+")),
        source: fill(
            GRAD_SUMSQ,
            &[("DECLS", decls), ("BASE", base.to_string()), ("BODY", body)],
        ),
        groups: [lens.len() as u32, 1, 1],
        mirrors,
    }
}

/// The exponential moving average of a weight tensor after its update (`ema = 0.999`):
/// e = decay * e + (1 - decay) * w, as torch's `ema.mul_(d).add_(w, alpha=1 - d)` (bindings
/// w, e).
pub fn ema(len: u64, decay: f64, path: ReadPath) -> KernelSource {
    let reads = Reads::new(path).input(0, "w").output(1, "e", true);
    super::elementwise(
        format!("ema[{len}]"),
        len,
        reads,
        &[("w", "w"), ("e", "e_old")],
        "",
        &format!(
            "e[i] = {} * e_old + {} * w;",
            f32_lit(decay),
            f32_lit(1.0 - decay)
        ),
    )
}
