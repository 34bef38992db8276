//! Elementwise primitives as expressions of their inputs' values (NumPy broadcasting by
//! strides that are 0 on stretched axes), and the layout primitives as strided reads: expand,
//! reshape, permute and slice read one input through a view; pad and concat pick the input
//! whose range along the axis holds the element.

use super::index::{broadcast_strides, coord, offset, permuted_strides, strides};
use super::Gen;
use crate::kernels::f32_lit;
use crate::prim::{Binary, Compare, Prim, Unary};

/// erf in f32: its Maclaurin series below 1 (relative error under 1e-7), Abramowitz and
/// Stegun's 7.1.26 above (absolute error under 1.5e-7, against values of at least 0.84).
pub(super) const ERF: &str = "fn erf_(x: f32) -> f32 {
    let a = abs(x);
    if (a < 1.0) {
        let z = x * x;
        var term = x;
        var sum = x;
        for (var n = 1u; n < 13u; n = n + 1u) {
            term = -term * z / f32(n);
            sum = sum + term / f32(2u * n + 1u);
        }
        return 1.1283791670955126 * sum;
    }
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - p * exp(-a * a));
}";

/// sin and cos in f32 of the argument first reduced to [-pi, pi] in two steps (Cody and
/// Waite: k 2pi is k 6.28125, exact for |k| < 2^16, plus k times the rest): WGSL bounds their
/// error only there (2^-11), and a timestep embedding's arguments reach the hundreds.
pub(super) const SIN_COS: &str = "fn reduce_2pi_(x: f32) -> f32 {
    let k = round(x * 0.15915494309189535);
    return (x - k * 6.28125) - k * 0.0019353071795864769;
}
fn sin_2pi_(x: f32) -> f32 {
    return sin(reduce_2pi_(x));
}
fn cos_2pi_(x: f32) -> f32 {
    return cos(reduce_2pi_(x));
}";

/// x^c: the common exponents exactly, an integer exponent of a negative base by its sign
/// (WGSL's `pow` is undefined below 0), others through `pow`.
fn pow_expr(x: &str, c: f64) -> String {
    match c {
        0.0 => "1.0".into(),
        1.0 => x.to_string(),
        2.0 => format!("({x} * {x})"),
        0.5 => format!("sqrt({x})"),
        -0.5 => format!("inverseSqrt({x})"),
        -1.0 => format!("(1.0 / {x})"),
        _ if c.fract() == 0.0 => {
            let odd = (c as i64).rem_euclid(2) == 1;
            let sign = if odd {
                format!("select(1.0, -1.0, {x} < 0.0)")
            } else {
                "1.0".into()
            };
            format!("({sign} * pow(abs({x}), {}))", f32_lit(c))
        }
        _ => format!("pow({x}, {})", f32_lit(c)),
    }
}

fn unary_expr(u: Unary, x: &str) -> String {
    match u {
        Unary::Neg => format!("(-{x})"),
        Unary::Exp => format!("exp({x})"),
        Unary::Log => format!("log({x})"),
        Unary::Sqrt => format!("sqrt({x})"),
        Unary::Rsqrt => format!("inverseSqrt({x})"),
        // WGSL's tanh is NaN for large |x| on some drivers; tanh(15) is 1 in f32.
        Unary::Tanh => format!("tanh(clamp({x}, -15.0, 15.0))"),
        Unary::Erf => format!("erf_({x})"),
        Unary::Sin => format!("sin_2pi_({x})"),
        Unary::Cos => format!("cos_2pi_({x})"),
        // exp of a non-positive number only, for both signs.
        Unary::Sigmoid => {
            format!("select(exp({x}) / (1.0 + exp({x})), 1.0 / (1.0 + exp(-{x})), {x} >= 0.0)")
        }
        Unary::Relu => format!("max({x}, 0.0)"),
        Unary::Abs => format!("abs({x})"),
        Unary::Square => format!("({x} * {x})"),
        Unary::Reciprocal => format!("(1.0 / {x})"),
        Unary::Pow(c) => pow_expr(x, c),
    }
}

fn binary_expr(b: Binary, x: &str, y: &str) -> String {
    match b {
        Binary::Add => format!("({x} + {y})"),
        Binary::Sub => format!("({x} - {y})"),
        Binary::Mul => format!("({x} * {y})"),
        Binary::Div => format!("({x} / {y})"),
        Binary::Max => format!("max({x}, {y})"),
        Binary::Min => format!("min({x}, {y})"),
    }
}

fn compare_op(c: Compare) -> &'static str {
    match c {
        Compare::Gt => ">",
        Compare::Ge => ">=",
        Compare::Lt => "<",
        Compare::Le => "<=",
        Compare::Eq => "==",
        Compare::Ne => "!=",
    }
}

/// The value of an elementwise node given its inputs' values (WGSL expressions, already
/// broadcast to the element); None for a node that is not elementwise. A fused kernel
/// inlines a chain of nodes by nesting these.
pub fn value_expr(prim: &Prim, args: &[String]) -> Option<String> {
    Some(match prim {
        Prim::Const(c) => format!("f32({})", f32_lit(*c)),
        Prim::Unary(u) => unary_expr(*u, &args[0]),
        Prim::Binary(b) => binary_expr(*b, &args[0], &args[1]),
        Prim::Compare(c) => format!(
            "select(0.0, 1.0, {} {} {})",
            args[0],
            compare_op(*c),
            args[1]
        ),
        Prim::Where => format!("select({}, {}, {} != 0.0)", args[2], args[1], args[0]),
        Prim::Input { .. }
        | Prim::Param { .. }
        | Prim::CausalMask { .. }
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
        | Prim::OneHot { .. } => return None,
    })
}

/// An elementwise node (or a constant or the causal mask made a tensor): each input read at
/// its broadcast offset into a `let`, then the node's expression.
pub(super) fn map(g: &Gen, prim: &Prim, out: &[usize]) -> String {
    if let Prim::CausalMask { t } = prim {
        return format!("let v = select(0.0, 1.0, (i % {t}u) <= (i / {t}u));");
    }
    let mut body = String::new();
    let mut args = vec![];
    for (k, x) in g.ins.iter().enumerate() {
        let off = offset("i", out, &broadcast_strides(&x.dims, out));
        body.push_str(&format!("let a{k} = {};\n", g.load(k, &off)));
        args.push(format!("a{k}"));
    }
    let v = value_expr(prim, &args).unwrap_or_else(|| "0.0".into());
    body.push_str(&format!("let v = {v};"));
    body
}

/// Expand, reshape, permute and slice: input 0 read through a view of the result's shape.
pub(super) fn strided(g: &Gen, prim: &Prim, out: &[usize]) -> String {
    let x = &g.ins[0].dims;
    let (st, base) = match prim {
        Prim::Expand => (broadcast_strides(x, out), 0),
        Prim::Permute { perm } => (permuted_strides(x, perm), 0),
        Prim::Slice { axis, start, .. } => {
            let s = strides(x);
            (s.clone(), start * s[*axis])
        }
        // Reshape (a copy, when its value must land in a given buffer): the same order.
        _ => (strides(out), 0),
    };
    let off = offset("i", out, &st);
    let off = if base > 0 {
        format!("{off} + {base}u")
    } else {
        off
    };
    format!("let v = {};", g.load(0, &off))
}

/// Pad and concat: the element's position along the axis picks the input that holds it (or,
/// padding, none: 0).
pub(super) fn pieces(g: &Gen, prim: &Prim, out: &[usize]) -> String {
    let (axis, starts): (usize, Vec<usize>) = match prim {
        Prim::Pad { axis, before, .. } => (*axis, vec![*before]),
        Prim::Concat { axis } => {
            let mut at = 0;
            let starts = g
                .ins
                .iter()
                .map(|x| {
                    let s = at;
                    at += x.dims[*axis];
                    s
                })
                .collect();
            (*axis, starts)
        }
        _ => (0, vec![]),
    };
    let mut body = format!("let p = {};\nvar v = 0.0;\n", coord("i", out, axis));
    for (k, x) in g.ins.iter().enumerate() {
        // The input's own strides over the result's coordinates, moved back by its start.
        let st = strides(&x.dims);
        let off = offset("i", out, &st);
        let (lo, hi) = (starts[k], starts[k] + x.dims[axis]);
        let shifted = match lo * st[axis] {
            0 => off,
            d => format!("{off} - {d}u"),
        };
        body.push_str(&format!(
            "if (p >= {lo}u && p < {hi}u) {{ v = {}; }}\n",
            g.load(k, &shifted)
        ));
    }
    body.trim_end().to_string()
}
