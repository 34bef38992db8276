//! The primitives as model files write them: each op's name, arguments and example, parsed
//! into a [`PrimOp`].

use super::super::registry::OpDef;
use super::super::{ArgDef, Op, Parsed, Ty};
use super::PrimOp;
use crate::prim::{Binary, Compare, Reduce, Unary};

macro_rules! def {
    ($c:ident, $name:literal, $named:expr, $args:expr, $ex:literal, $parse:expr) => {
        pub(in crate::ops) const $c: OpDef = OpDef {
            name: $name,
            aliases: &[],
            args: $args,
            example: $ex,
            named_inputs: $named,
            main_call: false,
            parse: $parse,
        };
    };
}

fn prim(p: PrimOp) -> Op {
    Op::Prim(p)
}

def!(NEG, "neg", false, &[], "neg", |_, _| prim(PrimOp::Unary(
    Unary::Neg
)));
def!(EXP, "exp", false, &[], "exp", |_, _| prim(PrimOp::Unary(
    Unary::Exp
)));
def!(LOG, "log", false, &[], "log", |_, _| prim(PrimOp::Unary(
    Unary::Log
)));
def!(SQRT, "sqrt", false, &[], "sqrt", |_, _| prim(
    PrimOp::Unary(Unary::Sqrt)
));
def!(RSQRT, "rsqrt", false, &[], "rsqrt", |_, _| prim(
    PrimOp::Unary(Unary::Rsqrt)
));
def!(ERF, "erf", false, &[], "erf", |_, _| prim(PrimOp::Unary(
    Unary::Erf
)));
def!(SIN, "sin", false, &[], "sin", |_, _| prim(PrimOp::Unary(
    Unary::Sin
)));
def!(COS, "cos", false, &[], "cos", |_, _| prim(PrimOp::Unary(
    Unary::Cos
)));
def!(ABS, "abs", false, &[], "abs", |_, _| prim(PrimOp::Unary(
    Unary::Abs
)));
def!(SQUARE, "square", false, &[], "square", |_, _| prim(
    PrimOp::Unary(Unary::Square)
));
def!(
    RECIPROCAL,
    "reciprocal",
    false,
    &[],
    "reciprocal",
    |_, _| { prim(PrimOp::Unary(Unary::Reciprocal)) }
);

const C: &[ArgDef] = &[("c", &["value"], Ty::Float, true, true)];
def!(POW, "pow", false, C, "pow(2)", |p, _| prim(PrimOp::Unary(
    Unary::Pow(p.float("c", 1.0))
)));
def!(SCALE, "scale", false, C, "scale(0.5)", |p, _| {
    prim(PrimOp::Scalar {
        op: Binary::Mul,
        c: p.float("c", 1.0),
    })
});
def!(SHIFT, "shift", false, C, "shift(1)", |p, _| {
    prim(PrimOp::Scalar {
        op: Binary::Add,
        c: p.float("c", 0.0),
    })
});
// max(x, c) and min(x, c): a clamped log (BCE's at -100, as PyTorch's BCELoss).
def!(
    CLAMP_MIN,
    "clamp_min",
    false,
    C,
    "clamp_min(-100)",
    |p, _| {
        prim(PrimOp::Scalar {
            op: Binary::Max,
            c: p.float("c", 0.0),
        })
    }
);
def!(CLAMP_MAX, "clamp_max", false, C, "clamp_max(1)", |p, _| {
    prim(PrimOp::Scalar {
        op: Binary::Min,
        c: p.float("c", 0.0),
    })
});

def!(SUB, "sub", true, &[], "sub(a, b)", |_, _| prim(
    PrimOp::Binary(Binary::Sub)
));
def!(MUL, "mul", true, &[], "mul(a, b)", |_, _| prim(
    PrimOp::Binary(Binary::Mul)
));
def!(DIV, "div", true, &[], "div(a, b)", |_, _| prim(
    PrimOp::Binary(Binary::Div)
));
def!(MAXIMUM, "maximum", true, &[], "maximum(a, b)", |_, _| {
    prim(PrimOp::Binary(Binary::Max))
});
def!(MINIMUM, "minimum", true, &[], "minimum(a, b)", |_, _| {
    prim(PrimOp::Binary(Binary::Min))
});
def!(GT, "gt", true, &[], "gt(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Gt)
));
def!(GE, "ge", true, &[], "ge(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Ge)
));
def!(LT, "lt", true, &[], "lt(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Lt)
));
def!(LE, "le", true, &[], "le(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Le)
));
def!(EQ, "eq", true, &[], "eq(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Eq)
));
def!(NE, "ne", true, &[], "ne(a, b)", |_, _| prim(
    PrimOp::Compare(Compare::Ne)
));
def!(WHERE, "where", true, &[], "where(a, a, b)", |_, _| prim(
    PrimOp::Where
));
def!(MATMUL, "matmul", true, &[], "matmul(x, w)", |_, _| prim(
    PrimOp::Matmul
));
def!(GATHER, "gather", true, &[], "gather(w, x)", |_, _| prim(
    PrimOp::Gather
));
def!(ONE_HOT, "one_hot", true, &[], "one_hot(x, w)", |_, _| prim(
    PrimOp::OneHot
));

const RED: &[ArgDef] = &[
    ("axis", &["axes", "dim"], Ty::Axes, false, true),
    ("keep", &["keepdim", "keepdims"], Ty::Bool, false, false),
];
fn reduce(op: Reduce, p: &Parsed) -> Op {
    let axes = match p.get("axis") {
        Some(_) => p.axes("axis"),
        None => vec![-1],
    };
    prim(PrimOp::Reduce {
        op,
        axes,
        keep: p.boolean("keep", false),
    })
}
def!(SUM, "sum", false, RED, "sum(axis=-1)", |p, _| reduce(
    Reduce::Sum,
    p
));
def!(
    MEAN,
    "mean",
    false,
    RED,
    "mean(axis=-1, keep=true)",
    |p, _| reduce(Reduce::Mean, p)
);
def!(MAX, "max", false, RED, "max(axis=-1, keep=true)", |p, _| {
    reduce(Reduce::Max, p)
});

const PERM: &[ArgDef] = &[("perm", &["axes", "dims"], Ty::Axes, true, true)];
def!(
    PERMUTE,
    "permute",
    false,
    PERM,
    "permute([1, 0, 2])",
    |p, _| {
        prim(PrimOp::Permute {
            perm: p.axes("perm"),
        })
    }
);
def!(
    TRANSPOSE,
    "transpose",
    false,
    &[],
    "transpose",
    |_, _| prim(PrimOp::Transpose)
);

const SLICE: &[ArgDef] = &[
    ("axis", &["dim"], Ty::Axis, true, true),
    ("start", &[], Ty::Int, true, true),
    ("end", &["stop"], Ty::Int, true, true),
];
def!(
    SLICE_DEF,
    "slice",
    false,
    SLICE,
    "slice(0, 0, 1)",
    |p, _| {
        prim(PrimOp::Slice {
            axis: p.axes("axis").first().copied().unwrap_or(0),
            start: p.int("start", 0),
            end: p.int("end", 0),
        })
    }
);

const PARAM: &[ArgDef] = &[("shape", &[], Ty::Shape, true, true), super::super::W];
def!(
    PARAM_DEF,
    "param",
    false,
    PARAM,
    "param(1x64, init=gaussian(0.02))",
    |p, _| {
        let shape = match p.get("shape").map(|v| &v.kind) {
            Some(crate::ast::ValueKind::Shape(d)) => d.clone(),
            Some(crate::ast::ValueKind::Int(i)) => vec![*i as u64],
            Some(crate::ast::ValueKind::List(l)) => l
                .iter()
                .filter_map(|x| x.as_f64().map(|f| f as u64))
                .collect(),
            _ => vec![],
        };
        prim(PrimOp::Param { shape })
    }
);
const ON: &[ArgDef] = &[("enabled", &["on", "causal"], Ty::Bool, false, true)];
def!(CAUSAL, "causal_mask", false, ON, "causal_mask", |p, _| {
    prim(PrimOp::Causal {
        on: p.boolean("enabled", true),
    })
});

const UNFLATTEN: &[ArgDef] = &[
    ("axis", &["dim"], Ty::Axis, true, true),
    ("sizes", &["shape"], Ty::Axes, true, true),
];
def!(
    UNFLATTEN_DEF,
    "unflatten",
    false,
    UNFLATTEN,
    "unflatten(-1, [4, -1])",
    |p, _| {
        prim(PrimOp::Unflatten {
            axis: p.axes("axis").first().copied().unwrap_or(0),
            sizes: p.axes("sizes"),
        })
    }
);

const MERGE: &[ArgDef] = &[
    ("start", &["start_dim"], Ty::Axis, true, true),
    ("end", &["end_dim"], Ty::Axis, true, true),
];
def!(MERGE_DEF, "merge", false, MERGE, "merge(-2, -1)", |p, _| {
    prim(PrimOp::Merge {
        start: p.axes("start").first().copied().unwrap_or(0),
        end: p.axes("end").first().copied().unwrap_or(0),
    })
});

const N: &[ArgDef] = &[("n", &["count"], Ty::Int, true, true)];
def!(ARANGE, "arange", false, N, "arange(32)", |p, _| {
    prim(PrimOp::Arange { n: p.int("n", 0) })
});
