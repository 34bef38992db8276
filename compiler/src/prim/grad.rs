//! Derived gradients: each primitive's vector-Jacobian product written as other primitives
//! (one table, `vjp`, exhaustive over the primitives), and reverse-mode accumulation over a
//! graph. The gradient nodes are appended to the same graph, so the CPU reference and the
//! kernel generator run them as they run any primitive.

use super::shape::{Dim, Shape};
use super::{Binary, Compare, Graph, NodeId, Prim, PrimError, Reduce, Unary};

type R = Result<NodeId, PrimError>;

/// Appends the nodes computing the gradient of `sum(y * gy)` with respect to each of `wrt`
/// (None where `y` does not depend on it). `gy` has `y`'s shape.
pub fn backward(
    g: &mut Graph,
    y: NodeId,
    gy: NodeId,
    wrt: &[NodeId],
) -> Result<Vec<Option<NodeId>>, PrimError> {
    backward_seeds(g, &[(y, gy)], wrt)
}

/// [`backward`] of several outputs at once: the gradient of `sum_k sum(y_k * gy_k)` (a fused
/// region's outputs, each with the gradient its readers sent back).
pub fn backward_seeds(
    g: &mut Graph,
    seeds: &[(NodeId, NodeId)],
    wrt: &[NodeId],
) -> Result<Vec<Option<NodeId>>, PrimError> {
    let last = seeds.iter().map(|s| s.0).max().unwrap_or(0);
    let mut depends = vec![false; last + 1];
    for i in 0..=last {
        depends[i] = wrt.contains(&i) || g.nodes[i].inputs.iter().any(|&a| depends[a]);
    }
    let mut grads: Vec<Option<NodeId>> = vec![None; last + 1];
    for &(y, gy) in seeds {
        grads[y] = Some(match grads[y] {
            None => gy,
            Some(acc) => g.binary(Binary::Add, acc, gy)?,
        });
    }
    for i in (0..=last).rev() {
        let Some(gi) = grads[i] else { continue };
        if !depends[i] || g.nodes[i].inputs.is_empty() {
            continue;
        }
        let inputs = g.nodes[i].inputs.clone();
        let parts = vjp(g, i, gi)?;
        for (&x, part) in inputs.iter().zip(parts) {
            let Some(p) = part.filter(|_| depends[x]) else {
                continue;
            };
            grads[x] = Some(match grads[x] {
                None => p,
                Some(acc) => g.binary(Binary::Add, acc, p)?,
            });
        }
    }
    Ok(wrt
        .iter()
        .map(|&w| grads.get(w).copied().flatten())
        .collect())
}

/// Sums a broadcast gradient back to the shape of the operand it came from.
pub fn unbroadcast(g: &mut Graph, grad: NodeId, to: &Shape) -> R {
    let gs = g.shape(grad).clone();
    if gs == *to {
        return Ok(grad);
    }
    let extra = gs.rank() - to.rank();
    let mut cur = grad;
    if extra > 0 {
        let lead: Vec<usize> = (0..extra).collect();
        cur = g.reduce(Reduce::Sum, cur, &lead, false)?;
    }
    let cs = g.shape(cur).clone();
    let stretched: Vec<usize> = (0..to.rank())
        .filter(|&i| to.0[i] == Dim::Fixed(1) && cs.0[i] != Dim::Fixed(1))
        .collect();
    if !stretched.is_empty() {
        cur = g.reduce(Reduce::Sum, cur, &stretched, true)?;
    }
    if g.shape(cur) != to {
        return Err(PrimError(format!(
            "internal: gradient of shape {gs} does not sum to {to}"
        )));
    }
    Ok(cur)
}

fn scaled(g: &mut Graph, x: NodeId, c: f64) -> R {
    let k = g.constant(c);
    g.binary(Binary::Mul, x, k)
}

fn mul(g: &mut Graph, a: NodeId, b: NodeId) -> R {
    g.binary(Binary::Mul, a, b)
}

/// The product of the incoming gradient by an elementwise derivative.
fn chain(g: &mut Graph, gy: NodeId, d: NodeId) -> Result<Vec<Option<NodeId>>, PrimError> {
    Ok(vec![Some(mul(g, gy, d)?)])
}

fn unary_vjp(
    g: &mut Graph,
    u: Unary,
    x: NodeId,
    y: NodeId,
    gy: NodeId,
) -> Result<Vec<Option<NodeId>>, PrimError> {
    match u {
        Unary::Neg => Ok(vec![Some(g.unary(Unary::Neg, gy))]),
        Unary::Exp => chain(g, gy, y),
        Unary::Log => Ok(vec![Some(g.binary(Binary::Div, gy, x)?)]),
        Unary::Sqrt => {
            let q = g.binary(Binary::Div, gy, y)?;
            Ok(vec![Some(scaled(g, q, 0.5)?)])
        }
        Unary::Rsqrt => {
            let cube = g.unary(Unary::Pow(3.0), y);
            let d = scaled(g, cube, -0.5)?;
            chain(g, gy, d)
        }
        Unary::Tanh => {
            let (one, sq) = (g.constant(1.0), g.unary(Unary::Square, y));
            let d = g.binary(Binary::Sub, one, sq)?;
            chain(g, gy, d)
        }
        Unary::Erf => {
            let sq = g.unary(Unary::Square, x);
            let e = g.unary(Unary::Neg, sq);
            let e = g.unary(Unary::Exp, e);
            let d = scaled(g, e, std::f64::consts::FRAC_2_SQRT_PI)?;
            chain(g, gy, d)
        }
        Unary::Sin => {
            let d = g.unary(Unary::Cos, x);
            chain(g, gy, d)
        }
        Unary::Cos => {
            let s = g.unary(Unary::Sin, x);
            let d = g.unary(Unary::Neg, s);
            chain(g, gy, d)
        }
        Unary::Sigmoid => {
            let one = g.constant(1.0);
            let rest = g.binary(Binary::Sub, one, y)?;
            let d = mul(g, y, rest)?;
            chain(g, gy, d)
        }
        Unary::Relu => {
            let zero = g.constant(0.0);
            let d = g.compare(Compare::Gt, x, zero)?;
            chain(g, gy, d)
        }
        Unary::Abs => {
            let zero = g.constant(0.0);
            let pos = g.compare(Compare::Gt, x, zero)?;
            let neg = g.compare(Compare::Lt, x, zero)?;
            let d = g.binary(Binary::Sub, pos, neg)?;
            chain(g, gy, d)
        }
        Unary::Square => {
            let d = scaled(g, x, 2.0)?;
            chain(g, gy, d)
        }
        Unary::Reciprocal => {
            let sq = g.unary(Unary::Square, y);
            let d = g.unary(Unary::Neg, sq);
            chain(g, gy, d)
        }
        Unary::Pow(c) => {
            let p = g.unary(Unary::Pow(c - 1.0), x);
            let d = scaled(g, p, c)?;
            chain(g, gy, d)
        }
    }
}

/// Gradients of a binary op before they are summed back to each operand's shape.
fn binary_parts(
    g: &mut Graph,
    b: Binary,
    (x, z, y): (NodeId, NodeId, NodeId),
    gy: NodeId,
) -> Result<(NodeId, NodeId), PrimError> {
    Ok(match b {
        Binary::Add => (gy, gy),
        Binary::Sub => (gy, g.unary(Unary::Neg, gy)),
        Binary::Mul => (mul(g, gy, z)?, mul(g, gy, x)?),
        Binary::Div => {
            let gx = g.binary(Binary::Div, gy, z)?;
            let q = mul(g, gx, y)?;
            (gx, g.unary(Unary::Neg, q))
        }
        Binary::Max | Binary::Min => {
            // Ties send the gradient to the first operand.
            let (first, second) = if b == Binary::Max {
                (Compare::Ge, Compare::Lt)
            } else {
                (Compare::Le, Compare::Gt)
            };
            let mx = g.compare(first, x, z)?;
            let mz = g.compare(second, x, z)?;
            (mul(g, gy, mx)?, mul(g, gy, mz)?)
        }
    })
}

fn reduce_vjp(
    g: &mut Graph,
    (op, axes, keep): (Reduce, &[usize], bool),
    (x, y): (NodeId, NodeId),
    gy: NodeId,
) -> R {
    let xs = g.shape(x).clone();
    let kept = Shape(
        (0..xs.rank())
            .map(|i| match axes.contains(&i) {
                true => Dim::Fixed(1),
                false => xs.0[i],
            })
            .collect(),
    );
    let back = |g: &mut Graph, t: NodeId| match keep {
        true => Ok(t),
        false => g.reshape(t, kept.clone()),
    };
    let gk = back(g, gy)?;
    match op {
        Reduce::Sum => g.expand(gk, xs),
        Reduce::Mean => {
            let n: usize = axes.iter().map(|&a| xs.0[a].at(1)).product();
            let s = scaled(g, gk, 1.0 / n as f64)?;
            g.expand(s, xs)
        }
        Reduce::Max => {
            let yk = back(g, y)?;
            let hit = g.compare(Compare::Eq, x, yk)?;
            mul(g, gk, hit)
        }
    }
}

/// The vector-Jacobian product of node `i` for its incoming gradient `gy`: one entry per
/// input (None for inputs that take no gradient: comparisons, masks, ids).
fn vjp(g: &mut Graph, i: NodeId, gy: NodeId) -> Result<Vec<Option<NodeId>>, PrimError> {
    let node = g.nodes[i].clone();
    let ins = &node.inputs;
    let shape_of = |g: &Graph, k: usize| g.shape(ins[k]).clone();
    match &node.prim {
        Prim::Input { .. } | Prim::Param { .. } | Prim::Const(_) | Prim::CausalMask { .. } => {
            Ok(vec![])
        }
        Prim::Unary(u) => unary_vjp(g, *u, ins[0], i, gy),
        Prim::Binary(b) => {
            let (ga, gb) = binary_parts(g, *b, (ins[0], ins[1], i), gy)?;
            let (sa, sb) = (shape_of(g, 0), shape_of(g, 1));
            Ok(vec![
                Some(unbroadcast(g, ga, &sa)?),
                Some(unbroadcast(g, gb, &sb)?),
            ])
        }
        Prim::Compare(_) => Ok(vec![None, None]),
        // Ids are integers: no gradient flows into them.
        Prim::OneHot { .. } => Ok(vec![None]),
        Prim::Where => {
            let zero = g.constant(0.0);
            let ga = g.where_(ins[0], gy, zero)?;
            let gb = g.where_(ins[0], zero, gy)?;
            let (sa, sb) = (shape_of(g, 1), shape_of(g, 2));
            Ok(vec![
                None,
                Some(unbroadcast(g, ga, &sa)?),
                Some(unbroadcast(g, gb, &sb)?),
            ])
        }
        Prim::Reduce { op, axes, keep } => Ok(vec![Some(reduce_vjp(
            g,
            (*op, axes, *keep),
            (ins[0], i),
            gy,
        )?)]),
        Prim::Expand => {
            let s = shape_of(g, 0);
            Ok(vec![Some(unbroadcast(g, gy, &s)?)])
        }
        Prim::Matmul => matmul_vjp(g, (ins[0], ins[1]), gy),
        Prim::Reshape => {
            let s = shape_of(g, 0);
            Ok(vec![Some(g.reshape(gy, s)?)])
        }
        Prim::Permute { perm } => {
            let mut inv = vec![0; perm.len()];
            for (k, &p) in perm.iter().enumerate() {
                inv[p] = k;
            }
            Ok(vec![Some(g.permute(gy, &inv)?)])
        }
        Prim::Slice { axis, start, end } => {
            let n = shape_of(g, 0).0[*axis].at(1);
            Ok(vec![Some(g.pad(gy, *axis, *start, n - end)?)])
        }
        Prim::Pad { axis, before, .. } => {
            let n = shape_of(g, 0).0[*axis].at(1);
            Ok(vec![Some(g.slice(gy, *axis, *before, before + n)?)])
        }
        Prim::Concat { axis } => {
            let mut at = 0;
            let mut out = vec![];
            for k in 0..ins.len() {
                let n = shape_of(g, k).0[*axis].at(1);
                out.push(Some(g.slice(gy, *axis, at, at + n)?));
                at += n;
            }
            Ok(out)
        }
        Prim::Gather => {
            let rows = shape_of(g, 0).0[0].at(1);
            Ok(vec![Some(g.scatter_add(gy, ins[1], rows)?), None])
        }
        Prim::ScatterAdd { .. } => Ok(vec![Some(g.gather(gy, ins[1])?), None]),
    }
}

fn matmul_vjp(
    g: &mut Graph,
    (a, b): (NodeId, NodeId),
    gy: NodeId,
) -> Result<Vec<Option<NodeId>>, PrimError> {
    let (sa, sb) = (g.shape(a).clone(), g.shape(b).clone());
    let bt = g.transpose(b)?;
    let ga = g.matmul(gy, bt)?;
    let at = g.transpose(a)?;
    let gb = g.matmul(at, gy)?;
    Ok(vec![
        Some(unbroadcast(g, ga, &sa)?),
        Some(unbroadcast(g, gb, &sb)?),
    ])
}
