//! f64 gradient checks of every primitive's derived gradient against central differences:
//! broadcasting in every direction, reductions over each axis (the batch's included), batched
//! matmul with broadcast, gather with repeated ids, masks, and layers composed of them.

use super::eval;
use crate::rng::Rng;
use netc_compiler::prim::grad::backward;
use netc_compiler::prim::{Binary, Compare, Graph, NodeId, Prim, PrimError, Reduce, Shape, Unary};
use std::collections::HashMap;

const BATCH: usize = 3;
const H: f64 = 1e-4;
const MARK: f64 = 1e-7;

/// A graph with an output, the leaves to differentiate, and the values of the leaves.
struct Case {
    g: Graph,
    y: NodeId,
    feeds: HashMap<NodeId, Vec<f64>>,
    wrt: Vec<NodeId>,
}

impl Case {
    /// Random values in +-[0.5, 1.5] for every leaf without a value (away from the kinks of
    /// relu, abs, max and away from zero for divisions); every float leaf is checked.
    fn new(g: Graph, y: NodeId, fixed: HashMap<NodeId, Vec<f64>>, seed: u64) -> Case {
        let mut rng = Rng::new(seed);
        let mut feeds = fixed.clone();
        let mut wrt = vec![];
        for (i, n) in g.nodes.iter().enumerate() {
            let leaf = matches!(n.prim, Prim::Input { .. } | Prim::Param { .. });
            if leaf && !fixed.contains_key(&i) {
                let v = (0..n.shape.numel(BATCH))
                    .map(|_| {
                        let m = rng.uniform(0.5, 1.5);
                        if rng.next_f64() < 0.5 {
                            -m
                        } else {
                            m
                        }
                    })
                    .collect();
                feeds.insert(i, v);
                wrt.push(i);
            }
        }
        Case { g, y, feeds, wrt }
    }

    /// Positive values for a leaf (the domain of log, sqrt, fractional powers).
    fn positive(mut self, leaf: NodeId) -> Case {
        for v in self.feeds.get_mut(&leaf).expect("a leaf") {
            *v = v.abs();
        }
        self
    }
}

/// The feeds borrowed, as `eval` reads them.
fn borrowed(f: &HashMap<NodeId, Vec<f64>>) -> HashMap<NodeId, &[f64]> {
    f.iter().map(|(&k, v)| (k, v.as_slice())).collect()
}

fn loss(g: &Graph, y: NodeId, r: &[f64], feeds: &HashMap<NodeId, Vec<f64>>) -> f64 {
    let v = eval(g, BATCH, &borrowed(feeds), &[y]).expect("evaluates");
    v[0].iter().zip(r).map(|(a, b)| a * b).sum()
}

/// The worst relative difference over the leaves between the derived gradient of
/// `sum(y * r)` (r random) and five-point central differences.
fn worst(case: Case) -> f64 {
    let Case {
        mut g,
        y,
        feeds,
        wrt,
    } = case;
    let ys = g.shape(y).clone();
    let mut rng = Rng::new(7);
    let r: Vec<f64> = (0..ys.numel(BATCH)).map(|_| rng.normal()).collect();
    let gy = g.input_shaped("gy", ys).expect("one batch axis");
    let grads = backward(&mut g, y, gy, &wrt).expect("gradient builds");
    let mut all = feeds.clone();
    all.insert(gy, r.clone());
    let mut worst: f64 = 0.0;
    for (&w, gnode) in wrt.iter().zip(grads) {
        let analytic = match gnode {
            Some(n) => eval(&g, BATCH, &borrowed(&all), &[n])
                .expect("evaluates")
                .remove(0),
            None => vec![0.0; feeds[&w].len()],
        };
        let numeric: Vec<f64> = (0..feeds[&w].len())
            .map(|e| {
                let at = |d: f64| {
                    let mut f = feeds.clone();
                    f.get_mut(&w).expect("leaf")[e] += d;
                    loss(&g, y, &r, &f)
                };
                (8.0 * (at(H) - at(-H)) - (at(2.0 * H) - at(-2.0 * H))) / (12.0 * H)
            })
            .collect();
        let diff: f64 = analytic
            .iter()
            .zip(&numeric)
            .map(|(a, n)| (a - n).powi(2))
            .sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = norm(&analytic) + norm(&numeric);
        assert!(
            scale > 0.0,
            "leaf {w} has a zero gradient; the check would be empty"
        );
        worst = worst.max(diff.sqrt() / scale);
    }
    worst
}

fn check(name: &str, case: Case) {
    let w = worst(case);
    assert!(w < MARK, "{name}: relative difference {w:e} over {MARK:e}");
}

/// A case over one batched input of `dims` per example.
fn on_input(dims: &[usize], f: impl Fn(&mut Graph, NodeId) -> Result<NodeId, PrimError>) -> Case {
    let mut g = Graph::default();
    let x = g.input("x", dims);
    let y = f(&mut g, x).expect("shapes agree");
    Case::new(g, y, HashMap::new(), 11)
}

#[test]
fn every_unary_primitive() {
    use Unary::*;
    let all = [
        Neg,
        Exp,
        Log,
        Sqrt,
        Rsqrt,
        Tanh,
        Erf,
        Sin,
        Cos,
        Sigmoid,
        Relu,
        Abs,
        Square,
        Reciprocal,
        Pow(3.0),
        Pow(-1.5),
        Pow(0.5),
    ];
    for u in all {
        let case = on_input(&[2, 5], |g, x| Ok(g.unary(u, x)));
        let needs_positive = matches!(u, Log | Sqrt | Rsqrt | Pow(-1.5) | Pow(0.5));
        let case = if needs_positive {
            case.positive(0)
        } else {
            case
        };
        check(&format!("{u:?}"), case);
    }
}

/// Two operands of the given shapes (a batched one when a shape starts with the batch).
fn pair(
    a: Shape,
    b: Shape,
    f: impl Fn(&mut Graph, NodeId, NodeId) -> Result<NodeId, PrimError>,
) -> Case {
    let mut g = Graph::default();
    let leaf = |g: &mut Graph, name: &str, s: Shape| match s.is_batched() {
        true => g.input_shaped(name, s).expect("one batch axis"),
        false => g.param(name, &s.at(1)),
    };
    let x = leaf(&mut g, "a", a);
    let z = leaf(&mut g, "b", b);
    let y = f(&mut g, x, z).expect("shapes agree");
    Case::new(g, y, HashMap::new(), 5)
}

fn broadcast_pairs() -> Vec<(Shape, Shape)> {
    let (b, f) = (Shape::batched, Shape::fixed);
    vec![
        (b(&[3, 4]), b(&[3, 4])),
        (b(&[3, 4]), f(&[4])),
        (f(&[4]), b(&[3, 4])),
        (b(&[3, 4]), f(&[3, 1])),
        (b(&[3, 1]), f(&[1, 4])),
        (b(&[1, 4]), b(&[3, 1])),
        (b(&[3, 4]), f(&[1, 3, 4])),
        (b(&[3, 4]), f(&[])),
        (f(&[2, 3]), f(&[3])),
    ]
}

#[test]
fn every_binary_primitive_in_every_broadcast_direction() {
    use Binary::*;
    for op in [Add, Sub, Mul, Div, Max, Min] {
        for (a, b) in broadcast_pairs() {
            let name = format!("{op:?} {a} {b}");
            check(&name, pair(a, b, |g, x, z| g.binary(op, x, z)));
        }
    }
}

#[test]
fn where_and_comparisons_route_the_gradient() {
    for c in [
        Compare::Gt,
        Compare::Ge,
        Compare::Lt,
        Compare::Le,
        Compare::Eq,
        Compare::Ne,
    ] {
        let case = pair(Shape::batched(&[3, 4]), Shape::fixed(&[4]), |g, x, z| {
            let m = g.compare(c, x, z)?;
            let s = g.binary(Binary::Mul, x, z)?;
            let w = g.where_(m, s, x)?;
            // Times z, so z has a gradient where the mask never picks s (Eq on random values).
            g.binary(Binary::Mul, w, z)
        });
        check(&format!("where({c:?})"), case);
    }
}

#[test]
fn reductions_over_each_axis() {
    for op in [Reduce::Sum, Reduce::Mean, Reduce::Max] {
        for axes in [vec![0], vec![1], vec![2], vec![3], vec![1, 3], vec![0, 2]] {
            for keep in [true, false] {
                if op == Reduce::Mean && axes.contains(&0) {
                    continue; // refused: the batch mean is the trainer's
                }
                let case = on_input(&[2, 3, 4], |g, x| g.reduce(op, x, &axes, keep));
                check(&format!("{op:?} {axes:?} keep {keep}"), case);
            }
        }
    }
}

#[test]
fn matmul_with_broadcast_batch_axes() {
    let (b, f) = (Shape::batched, Shape::fixed);
    let cases = [
        (b(&[3, 4]), f(&[4, 5])),
        (b(&[4]), f(&[4, 3])),
        (b(&[2, 3, 4]), f(&[2, 4, 5])),
        (b(&[1, 3, 4]), f(&[2, 4, 5])),
        (b(&[3, 4]), b(&[4, 2])),
        (f(&[5, 3]), b(&[3, 2])),
    ];
    for (x, z) in cases {
        let name = format!("matmul {x} {z}");
        check(&name, pair(x, z, |g, a, c| g.matmul(a, c)));
    }
}

/// A graph built on one input.
type Build = fn(&mut Graph, NodeId) -> Result<NodeId, PrimError>;

#[test]
fn layout_primitives() {
    let shapes: [(&str, Build); 8] = [
        ("reshape", |g, x| g.reshape(x, Shape::batched(&[6, 4]))),
        ("permute", |g, x| g.permute(x, &[0, 3, 1, 2])),
        ("transpose", |g, x| g.transpose(x)),
        ("slice", |g, x| g.slice(x, 2, 1, 3)),
        ("pad", |g, x| g.pad(x, 3, 2, 1)),
        ("concat", |g, x| {
            let a = g.slice(x, 3, 0, 1)?;
            let b = g.unary(Unary::Square, x);
            g.concat(&[b, a, x], 3)
        }),
        ("split", |g, x| {
            let a = g.slice(x, 1, 0, 1)?;
            let b = g.slice(x, 1, 1, 2)?;
            g.binary(Binary::Mul, a, b)
        }),
        ("expand", |g, x| {
            let s = g.reduce(Reduce::Sum, x, &[2], true)?;
            g.expand(s, Shape::batched(&[2, 5, 4]))
        }),
    ];
    for (name, f) in shapes {
        check(name, on_input(&[2, 3, 4], f));
    }
}

#[test]
fn gather_with_repeated_ids() {
    let mut g = Graph::default();
    let table = g.param("table", &[7, 3]);
    let ids = g.input("ids", &[5]);
    let e = g.gather(table, ids).expect("shapes agree");
    let y = g.unary(Unary::Tanh, e);
    let fixed = HashMap::from([(
        ids,
        vec![0., 3., 3., 6., 0., 1., 1., 1., 2., 6., 5., 4., 3., 3., 3.],
    )]);
    check("gather", Case::new(g, y, fixed, 3));
}

#[test]
fn causal_mask_keeps_the_past() {
    let case = on_input(&[4, 4], |g, x| {
        let m = g.causal_mask(4);
        let low = g.constant(-1e9);
        let s = g.where_(m, x, low)?;
        let e = g.reduce(Reduce::Max, s, &[2], true)?;
        let z = g.binary(Binary::Sub, s, e)?;
        Ok(g.unary(Unary::Exp, z))
    });
    check("causal mask", case);
}

#[test]
fn one_hot_picks_a_class_and_takes_no_gradient() {
    // A cross-entropy's pick: the log-softmax's entry at each id, the ids fixed.
    let mut g = Graph::default();
    let x = g.input("x", &[5, 4]);
    let ids = g.input("ids", &[5]);
    let hot = g.one_hot(ids, 4).expect("one class axis");
    let picked = g.binary(Binary::Mul, x, hot).expect("same shape");
    let y = g.reduce(Reduce::Sum, picked, &[2], false).expect("an axis");
    let y = g.unary(Unary::Tanh, y);
    let fixed = HashMap::from([(
        ids,
        vec![0., 3., 3., 1., 2., 1., 1., 0., 2., 3., 3., 0., 0., 2., 1.],
    )]);
    check("one_hot", Case::new(g, y, fixed, 4));
}
