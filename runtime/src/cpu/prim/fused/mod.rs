//! A kernel group (`netc_compiler::prim::fuse`) run as one loop: the group's elementwise
//! chain is evaluated chunk by chunk over its iteration space, each inlined node's values
//! living in a small register of at most `CHUNK` values (so the chain stays in L1), and the
//! group's root written (or reduced) straight from the last register. A layernorm's output is
//! then one pass over memory instead of five, and a GELU one instead of six.
//!
//! The iteration space is the root's shape, or its input's when the root is a reduction.
//! Every materialised value a group reads broadcasts to that space, so after merging the axes
//! every operand reads regularly (`layout::collapse`) its innermost stride is 0 or 1: a chunk
//! of an operand is one value or a contiguous slice, never a gather. A value that is the same
//! over a whole chunk (a row's mean) stays a scalar through the chain, so `rsqrt(var + eps)`
//! is computed once per row, not once per element.
//!
//! That block interpreter (`walk`, `block`) runs any group in f32 or f64. In f32 the groups
//! the shipped models make run instead as loops compiled ahead of time (`compiled`,
//! `generated.rs`, written by `codegen`), which compute the same values without interpreting.

mod block;
#[cfg(test)]
mod codegen;
mod compiled;
#[rustfmt::skip]
mod generated;
mod walk;

use super::layout::{broadcast_strides, reduce_strides, strides};
use super::ops::causal_mask;
use crate::cpu::Real;
use netc_compiler::prim::fuse::Group;
use netc_compiler::prim::{Graph, NodeId, Prim, Reduce};

/// Values per register: 2 KiB of f32, so a chain of a dozen nodes stays in L1.
pub(super) const CHUNK: usize = 512;

/// Where an inlined node's operand comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Src {
    /// The k-th loaded tensor (a materialised node the group reads, or a causal mask).
    Load(usize),
    /// The register of the k-th step.
    Step(usize),
    Const(f64),
}

/// One inlined node: what it computes from which operands.
pub(super) struct Step {
    pub(super) prim: Prim,
    pub(super) args: Vec<Src>,
}

/// The group as steps over its loads, built from the graph (once per region call: [`Plan`]).
pub(super) struct Program<T> {
    pub(super) steps: Vec<Step>,
    /// Each load's values and its shape at the batch.
    loads: Vec<(Vec<T>, Vec<usize>)>,
    /// Which load reads which materialised node (`None` for a mask made here).
    load_of: Vec<Option<NodeId>>,
    pub(super) result: Src,
}

fn program<T: Real>(g: &Graph, gr: &Group) -> Program<T> {
    let mut src: Vec<Option<Src>> = vec![None; gr.root + 1];
    let mut load_of: Vec<Option<NodeId>> = gr.reads.iter().map(|&r| Some(r)).collect();
    let mut loads: Vec<(Vec<T>, Vec<usize>)> = vec![];
    for (k, &r) in gr.reads.iter().enumerate() {
        src[r] = Some(Src::Load(k));
    }
    let mut steps: Vec<Step> = vec![];
    for &i in &gr.inlined {
        let node = &g.nodes[i];
        let arg = |a: NodeId| src[a].expect("a group's operands come first");
        src[i] = Some(match &node.prim {
            Prim::Const(c) => Src::Const(*c),
            // Broadcasting composes: reading the expanded value at an index of the group's
            // space is reading its input there.
            Prim::Expand => arg(node.inputs[0]),
            Prim::CausalMask { t } => {
                let t = *t;
                loads.push((causal_mask(t), vec![t, t]));
                load_of.push(None);
                Src::Load(gr.reads.len() + loads.len() - 1)
            }
            Prim::Unary(_) | Prim::Binary(_) | Prim::Compare(_) | Prim::Where => {
                let args = node.inputs.iter().map(|&a| arg(a)).collect();
                steps.push(Step {
                    prim: node.prim.clone(),
                    args,
                });
                Src::Step(steps.len() - 1)
            }
            Prim::Input { .. }
            | Prim::Param { .. }
            | Prim::Reduce { .. }
            | Prim::Matmul
            | Prim::Reshape
            | Prim::Permute { .. }
            | Prim::Slice { .. }
            | Prim::Pad { .. }
            | Prim::Concat { .. }
            | Prim::Gather
            | Prim::ScatterAdd { .. }
            | Prim::OneHot { .. } => unreachable!("only elementwise nodes are inlined"),
        });
    }
    let root = &g.nodes[gr.root];
    // A reduction sinks its input's value; any other root is its own value.
    let reduces = matches!(root.prim, Prim::Reduce { .. });
    let result =
        src[if reduces { root.inputs[0] } else { gr.root }].expect("the root's value is computed");
    Program {
        steps,
        loads,
        load_of,
        result,
    }
}

/// What the root does with the chain's value.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Sink {
    Write,
    Sum,
    Max,
}

/// The group's root computed into `out` (the root's size), with its compiled loop when
/// `compiled` and there is one, else (and always in f64) the block interpreter. True when
/// the compiled loop ran.
#[cfg(test)]
fn run_with<T: Real>(
    g: &Graph,
    gr: &Group,
    batch: usize,
    reads: &[&[T]],
    out: &mut [T],
    compiled: bool,
) -> bool {
    let mut p = plan(g, gr, batch);
    if !compiled {
        p.compiled = None;
    }
    run_planned(&p, reads, out);
    p.compiled.is_some()
}

/// The group run as `p` plans it: its compiled loop when it has one, else the interpreter.
pub fn run_planned<T: Real>(p: &Plan<T>, reads: &[&[T]], out: &mut [T]) {
    match p.sink {
        Sink::Max => out.fill(T::neg_infinity()),
        Sink::Sum => out.fill(T::zero()),
        Sink::Write => {}
    }
    // The loads are the reads, then any mask the program made (then a new list).
    let with_masks: Vec<&[T]>;
    let data = match p.prog.loads.is_empty() {
        true => reads,
        false => {
            let masks = p.prog.loads.iter().map(|(v, _)| v.as_slice());
            with_masks = reads.iter().copied().chain(masks).collect();
            &with_masks
        }
    };
    match p.compiled {
        Some(idx) => compiled::run(idx, &p.dims, &p.st, data, out),
        None => walk::dispatch(&p.prog, data, &p.dims, &p.st, p.sink, out),
    }
    if let Some(n) = p.mean_of {
        let k = T::of(1.0 / n.max(1) as f64);
        out.iter_mut().for_each(|v| *v = *v * k);
    }
}

/// A group at a batch size, worked out once and run as often as wanted (a region's tiles
/// share one): its program, the merged space it runs over, each load's strides there and the
/// output's (last), what the root does with the chain's value, and its compiled loop.
pub struct Plan<T> {
    prog: Program<T>,
    dims: Vec<usize>,
    st: Vec<Vec<usize>>,
    sink: Sink,
    /// For a mean: how many values each output value averages.
    mean_of: Option<usize>,
    /// The index of the group's compiled loop (f32 only), when there is one.
    compiled: Option<usize>,
}

pub fn plan<T: Real>(g: &Graph, gr: &Group, batch: usize) -> Plan<T> {
    let prog: Program<T> = program(g, gr);
    let root = &g.nodes[gr.root];
    let (space, sink, axes) = if let Prim::Reduce { op, axes, .. } = &root.prim {
        let sink = match op {
            Reduce::Sum | Reduce::Mean => Sink::Sum,
            Reduce::Max => Sink::Max,
        };
        (g.nodes[root.inputs[0]].shape.at(batch), sink, axes.clone())
    } else {
        (root.shape.at(batch), Sink::Write, vec![])
    };
    let mut st: Vec<Vec<usize>> = prog
        .load_of
        .iter()
        .enumerate()
        .map(|(k, n)| match n {
            Some(n) => g.nodes[*n].shape.at(batch),
            None => prog.loads[k - gr.reads.len()].1.clone(),
        })
        .map(|s| broadcast_strides(&s, &space))
        .collect();
    st.push(match sink {
        Sink::Write => strides(&space),
        Sink::Sum | Sink::Max => reduce_strides(&space, &axes),
    });
    let mean_of = matches!(
        root.prim,
        Prim::Reduce {
            op: Reduce::Mean,
            ..
        }
    )
    .then(|| axes.iter().map(|&a| space[a]).product());
    let (dims, st) = walk::merged(&space, &st);
    let compiled = compiled::find(&prog, &st, sink);
    Plan {
        prog,
        dims,
        st,
        sink,
        mean_of,
        compiled,
    }
}
