//! The CPU executor's fused loops (`cpu::prim::fused`) against plain index loops written here:
//! an elementwise chain whose operands vary over every combination the blocks distinguish (one
//! value, a value per row, a shared row, every element), with `where`, over shapes whose rows
//! are short (many rows per block), long (a row cut into several blocks) and single; and the
//! same chain ended by each reduction over each set of axes (a sum over the batch axis too). In f64 to
//! 1e-12 and in f32 (the vectorised path) to 1e-5.

use netc_compiler::prim::{Binary, Compare, Graph, NodeId, Reduce, Unary};
use netc_runtime::cpu::prim::eval;
use netc_runtime::cpu::Real;
use netc_runtime::rng::Rng;
use std::collections::HashMap;

const BATCH: usize = 3;

/// What the reduction reads: the chain (every element varies), or a value varying per row
/// (`exp(a)`) or along a row (`c * 0.5`) expanded to the chain's shape.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Body {
    Chain,
    PerRow,
    AlongRow,
}

fn body(g: &mut Graph, h: usize, w: usize, which: Body) -> (NodeId, [NodeId; 3]) {
    let (y, leaves) = chain(g, h, w);
    let [_, a, c] = leaves;
    let v = match which {
        Body::Chain => return (y, leaves),
        Body::PerRow => g.unary(Unary::Exp, a),
        Body::AlongRow => {
            let half = g.constant(0.5);
            g.binary(Binary::Mul, c, half).unwrap()
        }
    };
    let to = g.shape(y).clone();
    (g.expand(v, to).unwrap(), leaves)
}

fn body_at(k: &Case, which: Body, (b, i, j): (usize, usize, usize)) -> f64 {
    match which {
        Body::Chain => chain_at(&k.x, &k.a, &k.c, (b, i, j), (k.h, k.w)),
        Body::PerRow => k.a[i].exp(),
        Body::AlongRow => k.c[j] * 0.5,
    }
}

/// `where(x > a, (x - a) * c, exp(a) * 0.5)` with x: [B, h, w], a: [h, 1], c: [w].
fn chain(g: &mut Graph, h: usize, w: usize) -> (NodeId, [NodeId; 3]) {
    let x = g.input("x", &[h, w]);
    let a = g.param("a", &[h, 1]);
    let c = g.param("c", &[w]);
    let d = g.binary(Binary::Sub, x, a).unwrap();
    let p = g.binary(Binary::Mul, d, c).unwrap();
    let e = g.unary(Unary::Exp, a);
    let half = g.constant(0.5);
    let q = g.binary(Binary::Mul, e, half).unwrap();
    let m = g.compare(Compare::Gt, x, a).unwrap();
    let y = g.where_(m, p, q).unwrap();
    (y, [x, a, c])
}

/// The chain at one element, from the values in row-major order.
fn chain_at(
    x: &[f64],
    a: &[f64],
    c: &[f64],
    (b, i, j): (usize, usize, usize),
    (h, w): (usize, usize),
) -> f64 {
    let xv = x[(b * h + i) * w + j];
    match xv > a[i] {
        true => (xv - a[i]) * c[j],
        false => a[i].exp() * 0.5,
    }
}

struct Case {
    h: usize,
    w: usize,
    x: Vec<f64>,
    a: Vec<f64>,
    c: Vec<f64>,
}

fn case(h: usize, w: usize, rng: &mut Rng) -> Case {
    let mut draw = |n: usize| (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<f64>>();
    Case {
        h,
        w,
        x: draw(BATCH * h * w),
        a: draw(h),
        c: draw(w),
    }
}

/// Evaluates `y` in type T from the case's values.
fn run<T: Real>(g: &Graph, y: NodeId, leaves: [NodeId; 3], k: &Case) -> Vec<f64> {
    let cast = |v: &[f64]| v.iter().map(|&z| T::of(z)).collect::<Vec<T>>();
    let vals = [cast(&k.x), cast(&k.a), cast(&k.c)];
    let feeds: HashMap<NodeId, &[T]> = leaves
        .iter()
        .copied()
        .zip(vals.iter().map(|v| v.as_slice()))
        .collect();
    let out = eval(g, BATCH, &feeds, &[y]).expect("evaluates");
    out[0].iter().map(|v| v.f64()).collect()
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: {g} against {w}"
        );
    }
}

const SHAPES: [(usize, usize); 5] = [(5, 7), (70, 9), (3, 1100), (1, 4), (6, 1)];

#[test]
fn an_elementwise_chain_matches_index_loops() {
    let mut rng = Rng::new(5);
    for (h, w) in SHAPES {
        let mut g = Graph::default();
        let (y, leaves) = chain(&mut g, h, w);
        let k = case(h, w, &mut rng);
        let mut want = vec![];
        for b in 0..BATCH {
            for i in 0..h {
                for j in 0..w {
                    want.push(chain_at(&k.x, &k.a, &k.c, (b, i, j), (h, w)));
                }
            }
        }
        close(
            &run::<f64>(&g, y, leaves, &k),
            &want,
            1e-12,
            &format!("f64 {h}x{w}"),
        );
        close(
            &run::<f32>(&g, y, leaves, &k),
            &want,
            1e-5,
            &format!("f32 {h}x{w}"),
        );
    }
}

/// The chain reduced by `op` over `axes` (full axes: 0 is the batch) with plain loops.
fn reduced(k: &Case, which: Body, op: Reduce, axes: &[usize]) -> Vec<f64> {
    let dims = [BATCH, k.h, k.w];
    let kept: Vec<usize> = (0..3)
        .map(|a| if axes.contains(&a) { 1 } else { dims[a] })
        .collect();
    let n: usize = kept.iter().product();
    let init = if op == Reduce::Max {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    let mut out = vec![init; n];
    for b in 0..BATCH {
        for i in 0..k.h {
            for j in 0..k.w {
                let v = body_at(k, which, (b, i, j));
                let idx = [b, i, j];
                let o = (0..3).fold(0, |acc, a| {
                    acc * kept[a] + if axes.contains(&a) { 0 } else { idx[a] }
                });
                out[o] = if op == Reduce::Max {
                    out[o].max(v)
                } else {
                    out[o] + v
                };
            }
        }
    }
    if op == Reduce::Mean {
        let count: usize = axes.iter().map(|&a| dims[a]).product();
        out.iter_mut().for_each(|v| *v /= count as f64);
    }
    out
}

#[test]
fn each_reduction_over_each_set_of_axes_matches_index_loops() {
    let mut rng = Rng::new(6);
    let sets: [&[usize]; 7] = [&[0], &[1], &[2], &[1, 2], &[0, 1], &[0, 2], &[0, 1, 2]];
    for (h, w) in SHAPES {
        let k = case(h, w, &mut rng);
        let ops = [Reduce::Sum, Reduce::Mean, Reduce::Max];
        for (which, op) in ops
            .iter()
            .flat_map(|&op| [Body::Chain, Body::PerRow, Body::AlongRow].map(|b| (b, op)))
        {
            // Only a sum may run over the batch (a mean or a maximum there is refused).
            for axes in sets.iter().filter(|s| op == Reduce::Sum || !s.contains(&0)) {
                let mut g = Graph::default();
                let (y, leaves) = body(&mut g, h, w, which);
                let r = g.reduce(op, y, axes, true).unwrap();
                let want = reduced(&k, which, op, axes);
                let what = format!("{op:?} over {axes:?} of {which:?} {h}x{w}");
                close(&run::<f64>(&g, r, leaves, &k), &want, 1e-12, &what);
                close(&run::<f32>(&g, r, leaves, &k), &want, 1e-5, &what);
            }
        }
    }
}
