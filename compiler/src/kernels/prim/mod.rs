//! Generated WGSL for the tensor primitives (`crate::prim`): one kernel per node of a prim
//! graph at a concrete batch, one invocation per element of its result, every size and stride
//! a constant in the text. Elementwise nodes are an expression of their inputs' values at the
//! element's offsets (`elementwise::value_expr`), so a chain of them can later be inlined into
//! one kernel; layout nodes are strided reads; reductions, products and the row ops loop.
//!
//! A kernel's bindings are its buffer inputs in order, then its result. Inputs that are
//! constants or the causal mask are not buffers: their value at an offset is an expression.

mod elementwise;
mod gather;
pub mod index;
mod reduce;

pub use elementwise::value_expr;

use super::template::{per_element, store_elem, Reads};
use super::{KernelSource, ReadPath, Store};
use crate::prim::Prim;

const TEMPLATE: &str = include_str!("../../../../shaders/prim.wgsl");

/// How a kernel reads one input of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Src {
    /// A tensor bound to the kernel.
    Buffer,
    /// The tensor of buffer operand `k` (in [`buffers`] order) read again, not bound twice: a
    /// fused expression that reads one tensor along several paths binds it once.
    Again(usize),
    /// A scalar constant, inlined.
    Const(f64),
    /// The `[t, t]` causal mask, computed from the offset.
    Causal(usize),
    /// An elementwise node computed inside the kernel at the offset it is read at (fusion):
    /// its inputs are read at their broadcast offsets in its shape, recursively.
    Fused(Box<Fused>),
}

/// An elementwise node (or an expand) inlined into the kernel that reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub prim: Prim,
    pub ins: Vec<Operand>,
}

/// One input of a node's kernel: how it is read and its concrete dims.
#[derive(Debug, Clone, PartialEq)]
pub struct Operand {
    pub src: Src,
    pub dims: Vec<usize>,
}

/// The buffer operands of `ins` in binding order: depth first through fused nodes. The
/// lowering binds its tensors in the same order.
pub fn buffers(ins: &[Operand]) -> Vec<&Operand> {
    let mut out = vec![];
    for x in ins {
        match &x.src {
            Src::Buffer => out.push(x),
            Src::Fused(f) => out.extend(buffers(&f.ins)),
            Src::Const(_) | Src::Causal(_) | Src::Again(_) => {}
        }
    }
    out
}

/// A kernel being generated: its operands' declarations and how each input is loaded.
pub(super) struct Gen<'a> {
    reads: Reads,
    ins: &'a [Operand],
    /// The name of each buffer operand, by its address in `ins` (fused ones included).
    names: Vec<(*const Operand, String)>,
    next: u32,
}

impl<'a> Gen<'a> {
    fn new(ins: &'a [Operand], path: ReadPath) -> Self {
        let mut reads = Reads::new(path);
        let mut names = vec![];
        for (k, x) in buffers(ins).into_iter().enumerate() {
            let n = format!("x{k}");
            reads = reads.input(k as u32, &n);
            names.push((x as *const Operand, n));
        }
        let next = names.len() as u32;
        Gen {
            reads,
            ins,
            names,
            next,
        }
    }

    /// The value of input `k` at offset `off` (a u32 expression).
    pub(super) fn load(&self, k: usize, off: &str) -> String {
        self.load_op(&self.ins[k], off)
    }

    fn load_op(&self, x: &Operand, off: &str) -> String {
        match &x.src {
            Src::Buffer => {
                let n = self.names.iter().find(|(p, _)| std::ptr::eq(*p, x));
                format!("rd_{}({off})", n.expect("every buffer is declared").1)
            }
            Src::Again(k) => format!("rd_x{k}({off})"),
            Src::Const(c) => format!("f32({})", super::f32_lit(*c)),
            Src::Causal(t) => format!("select(0.0, 1.0, (({off}) % {t}u) <= (({off}) / {t}u))"),
            Src::Fused(f) => {
                let args: Vec<String> = f
                    .ins
                    .iter()
                    .map(|a| {
                        let st = index::broadcast_strides(&a.dims, &x.dims);
                        self.load_op(a, &index::offset(off, &x.dims, &st))
                    })
                    .collect();
                match f.prim {
                    Prim::Expand => args[0].clone(),
                    _ => value_expr(&f.prim, &args).expect("only elementwise nodes are fused"),
                }
            }
        }
    }

    /// The kernel: `body` computes `v`, the value of element `i`, which is then stored.
    fn finish(self, name: String, len: usize, body: &str, store: Store) -> KernelSource {
        let acc = store == Store::Accumulate;
        let reads = self.reads.output(self.next, "y", acc);
        let store_line = store_elem(store, "y", "i", "v");
        let funcs: Vec<&str> = [
            ("erf_(", elementwise::ERF),
            ("_2pi_(", elementwise::SIN_COS),
        ]
        .into_iter()
        .filter(|(call, _)| body.contains(call))
        .map(|(_, f)| f)
        .collect();
        let mut b = String::new();
        for l in body.lines().chain([store_line.as_str()]) {
            b.push_str("    ");
            b.push_str(l);
            b.push('\n');
        }
        per_element(
            format!("prim.{name}{}", super::acc_tag(store)),
            TEMPLATE,
            len as u64,
            reads,
            (&[], &[], &[]),
            &[("FUNCS", funcs.join("\n")), ("BODY", b.trim_end().into())],
        )
    }
}

/// The kernel of a node computing `prim` of `ins` into a result of dims `out`, stored (or
/// added, `Store::Accumulate`) into its output binding. Leaves (inputs, params) have none.
pub fn node_kernel(
    prim: &Prim,
    ins: &[Operand],
    out: &[usize],
    store: Store,
    path: ReadPath,
) -> Result<KernelSource, String> {
    let g = Gen::new(ins, path);
    let len: usize = out.iter().product();
    let dims = |d: &[usize]| {
        d.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("x")
    };
    let name = format!("{}[{}]", prim.name().replace(' ', ""), dims(out));
    let body = match prim {
        Prim::Input { .. } | Prim::Param { .. } => {
            return Err(format!("{} is fed, not computed", prim.name()))
        }
        Prim::Const(_)
        | Prim::CausalMask { .. }
        | Prim::Unary(_)
        | Prim::Binary(_)
        | Prim::Compare(_)
        | Prim::Where => elementwise::map(&g, prim, out),
        Prim::Expand | Prim::Reshape | Prim::Permute { .. } | Prim::Slice { .. } => {
            elementwise::strided(&g, prim, out)
        }
        Prim::Pad { .. } | Prim::Concat { .. } => elementwise::pieces(&g, prim, out),
        Prim::Reduce { op, axes, .. } => reduce::reduce(&g, *op, axes),
        Prim::Matmul => reduce::matmul(&g, out),
        Prim::Gather => gather::gather(&g, out),
        Prim::ScatterAdd { rows } => gather::scatter_add(&g, *rows, out),
        Prim::OneHot { n } => gather::one_hot(&g, *n),
    };
    Ok(g.finish(name, len, &body, store))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prim::{Binary, Compare, Reduce, Unary};

    fn buf(dims: &[usize]) -> Operand {
        Operand {
            src: Src::Buffer,
            dims: dims.to_vec(),
        }
    }

    /// Every primitive's kernel, with each kind of operand and both stores, is WGSL that naga
    /// accepts on every read path (the adapter tests run them; this needs none).
    #[test]
    fn every_prim_kernel_validates() {
        let x = buf(&[3, 5, 7]);
        let c = Operand {
            src: Src::Const(0.5),
            dims: vec![],
        };
        let m = Operand {
            src: Src::Causal(7),
            dims: vec![7, 7],
        };
        let ids = buf(&[3, 4]);
        // (x * expand(b)) - 0.5, computed inside the kernels that read it.
        let expand = Operand {
            src: Src::Fused(Box::new(Fused {
                prim: Prim::Expand,
                ins: vec![buf(&[5, 1])],
            })),
            dims: vec![3, 5, 7],
        };
        let mul = Operand {
            src: Src::Fused(Box::new(Fused {
                prim: Prim::Binary(Binary::Mul),
                ins: vec![x.clone(), expand],
            })),
            dims: vec![3, 5, 7],
        };
        let fused = Operand {
            src: Src::Fused(Box::new(Fused {
                prim: Prim::Binary(Binary::Sub),
                ins: vec![mul, c.clone()],
            })),
            dims: vec![3, 5, 7],
        };
        let cases: Vec<(Prim, Vec<Operand>, Vec<usize>)> = vec![
            (Prim::Const(2.0), vec![], vec![]),
            (Prim::CausalMask { t: 7 }, vec![], vec![7, 7]),
            (Prim::Unary(Unary::Erf), vec![x.clone()], vec![3, 5, 7]),
            (Prim::Unary(Unary::Sin), vec![x.clone()], vec![3, 5, 7]),
            (Prim::Unary(Unary::Cos), vec![x.clone()], vec![3, 5, 7]),
            (Prim::Unary(Unary::Pow(3.0)), vec![x.clone()], vec![3, 5, 7]),
            (Prim::Unary(Unary::Pow(1.5)), vec![x.clone()], vec![3, 5, 7]),
            (Prim::Unary(Unary::Sigmoid), vec![x.clone()], vec![3, 5, 7]),
            (
                Prim::Binary(Binary::Div),
                vec![x.clone(), buf(&[5, 1])],
                vec![3, 5, 7],
            ),
            (
                Prim::Binary(Binary::Max),
                vec![c.clone(), x.clone()],
                vec![3, 5, 7],
            ),
            (
                Prim::Compare(Compare::Ge),
                vec![x.clone(), buf(&[7])],
                vec![3, 5, 7],
            ),
            (
                Prim::Where,
                vec![m.clone(), buf(&[2, 7, 7]), c.clone()],
                vec![2, 7, 7],
            ),
            (
                Prim::Reduce {
                    op: Reduce::Max,
                    axes: vec![0, 2],
                    keep: false,
                },
                vec![x.clone()],
                vec![5],
            ),
            (Prim::Expand, vec![buf(&[5, 1])], vec![3, 5, 7]),
            (Prim::Unary(Unary::Exp), vec![fused.clone()], vec![3, 5, 7]),
            (
                Prim::Reduce {
                    op: Reduce::Sum,
                    axes: vec![1],
                    keep: true,
                },
                vec![fused.clone()],
                vec![3, 1, 7],
            ),
            (
                Prim::Matmul,
                vec![buf(&[2, 1, 4, 3]), buf(&[5, 3, 6])],
                vec![2, 5, 4, 6],
            ),
            (Prim::Reshape, vec![x.clone()], vec![15, 7]),
            (
                Prim::Permute {
                    perm: vec![2, 0, 1],
                },
                vec![x.clone()],
                vec![7, 3, 5],
            ),
            (
                Prim::Slice {
                    axis: 1,
                    start: 1,
                    end: 4,
                },
                vec![x.clone()],
                vec![3, 3, 7],
            ),
            (
                Prim::Pad {
                    axis: 2,
                    before: 1,
                    after: 2,
                },
                vec![x.clone()],
                vec![3, 5, 10],
            ),
            (
                Prim::Concat { axis: 1 },
                vec![buf(&[3, 2, 7]), x.clone()],
                vec![3, 7, 7],
            ),
            (
                Prim::Gather,
                vec![buf(&[11, 5]), ids.clone()],
                vec![3, 4, 5],
            ),
            (
                Prim::ScatterAdd { rows: 11 },
                vec![buf(&[3, 4, 5]), ids],
                vec![11, 5],
            ),
        ];
        for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            for (prim, ins, out) in &cases {
                for store in [Store::Write, Store::Accumulate] {
                    let k = node_kernel(prim, ins, out, store, path).expect("a kernel");
                    if let Err(e) = crate::kernels::validate(&k.source) {
                        panic!("{} {path:?}: {e}\n{}", k.name, k.source);
                    }
                }
            }
        }
        let input = Prim::Input { name: "x".into() };
        assert!(node_kernel(&input, &[], &[3], Store::Write, ReadPath::Storage).is_err());
    }
}
