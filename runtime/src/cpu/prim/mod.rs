//! The CPU reference of the tensor primitives (`netc_compiler::prim`): a graph evaluated node
//! by node at a concrete batch size, generic over f32 and f64 like the rest of the reference.
//! It is the oracle for the generated kernels and, in f64, for the derived gradients.

mod fused;
mod layout;
mod ops;
pub mod profile;
pub mod region;
mod views;

use super::Real;
pub(crate) use netc_compiler::prim::fuse::groups;
use netc_compiler::prim::fuse::{is_elementwise, needed, Group};
use netc_compiler::prim::{Graph, NodeId, Prim};
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("`{name}` needs {want} values (shape {shape}), got {got}")]
    Feed {
        name: String,
        shape: String,
        want: usize,
        got: usize,
    },
    #[error("`{name}` is not fed")]
    Missing { name: String },
    #[error("id {id} is not a row of a table of {rows} rows")]
    Id { id: String, rows: usize },
    #[error("class {id} is not a whole number in 0..{classes} (one_hot of {classes} classes)")]
    Class { id: String, classes: usize },
}

/// For each node, the index of the last group reading it (`usize::MAX` for the wanted ones,
/// kept to the end); a product reading a view reads the buffer under it.
fn last_uses(g: &Graph, groups: &[Group], want: &[NodeId], base: &[NodeId]) -> Vec<usize> {
    let mut last = vec![0; g.nodes.len()];
    for (k, gr) in groups.iter().enumerate() {
        for &a in &gr.reads {
            last[a] = k;
            last[base[a]] = k;
        }
    }
    for &w in want {
        last[w] = usize::MAX;
    }
    last
}

/// Evaluates the nodes `want` at batch size `batch`, the leaves (inputs and params) taken
/// from `feeds`. Values are row-major at the nodes' concrete shapes.
pub fn eval<T: Real>(
    g: &Graph,
    batch: usize,
    feeds: &HashMap<NodeId, &[T]>,
    want: &[NodeId],
) -> Result<Vec<Vec<T>>, EvalError> {
    eval_groups(g, &groups(g, want), batch, feeds, want)
}

/// [`eval`] with the kernel groups of `want` given (a region builds them once): each group is
/// one fused loop ([`fused`]), or one reference op for a node that is not elementwise.
pub fn eval_groups<T: Real>(
    g: &Graph,
    groups: &[Group],
    batch: usize,
    feeds: &HashMap<NodeId, &[T]>,
    want: &[NodeId],
) -> Result<Vec<Vec<T>>, EvalError> {
    let mut none: Vec<Option<&mut [T]>> = want.iter().map(|_| None).collect();
    let outs = eval_into(g, groups, batch, feeds, want, &mut none)?;
    Ok(outs.into_iter().flatten().collect())
}

/// [`eval_groups`] writing each wanted value that has a destination in `dsts` (one per
/// `want`) there, and returning the others (None where written). A fused group's value
/// goes straight into its destination, with no buffer of its own and no copy; the groups
/// after it that read it read it there.
pub fn eval_into<'a, T: Real>(
    g: &Graph,
    groups: &[Group],
    batch: usize,
    feeds: &HashMap<NodeId, &'a [T]>,
    want: &[NodeId],
    dsts: &mut [Option<&'a mut [T]>],
) -> Result<Vec<Option<Vec<T>>>, EvalError> {
    let prep = prepare(g, groups, batch, want);
    eval_prepared(g, groups, &prep, feeds, want, dsts)
}

/// [`eval_into`] with the evaluation prepared ([`prepare`]) for these groups, this batch
/// size and these wanted nodes.
pub fn eval_prepared<'a, T: Real>(
    g: &Graph,
    groups: &[Group],
    prep: &Prepared<T>,
    feeds: &HashMap<NodeId, &'a [T]>,
    want: &[NodeId],
    dsts: &mut [Option<&'a mut [T]>],
) -> Result<Vec<Option<Vec<T>>>, EvalError> {
    eval_core(g, groups, prep, feeds, want, dsts, None)
}

/// The seconds each group took (in the order of `groups`; 0 for a view) in one evaluation
/// of `want`: what `netc bench --profile` reports per group.
pub fn eval_timed<T: Real>(
    g: &Graph,
    groups: &[Group],
    batch: usize,
    feeds: &HashMap<NodeId, &[T]>,
    want: &[NodeId],
) -> Result<Vec<f64>, EvalError> {
    let mut seconds = vec![0.0; groups.len()];
    let mut none: Vec<Option<&mut [T]>> = want.iter().map(|_| None).collect();
    let prep = prepare(g, groups, batch, want);
    eval_core(g, groups, &prep, feeds, want, &mut none, Some(&mut seconds))?;
    Ok(seconds)
}

/// What evaluating a graph's groups at one batch size needs beside the values, worked out
/// once: which views products read in place and their layouts, the group that reads each
/// value last, which nodes are needed, and each fused group's plan. A region's tiles of
/// the same size share one, and the region keeps it for its later calls (`region.rs`), so
/// neither a tile nor a training step builds a group's program or strides again.
pub struct Prepared<T> {
    batch: usize,
    virt: Vec<bool>,
    layouts: Vec<Option<views::Layout>>,
    base: Vec<NodeId>,
    last: Vec<usize>,
    need: Vec<bool>,
    /// Whether a group reads the node.
    read: Vec<bool>,
    /// Per group: its plan when it is a fused loop that runs (not a view).
    plans: Vec<Option<fused::Plan<T>>>,
    /// Per group: the wanted value (its index in `want`) its loop writes straight into.
    into: Vec<Option<usize>>,
    /// The needed inputs and params.
    leaves: Vec<NodeId>,
}

/// The [`Prepared`] evaluation of `want` by `groups` at batch size `batch`.
pub fn prepare<T: Real>(g: &Graph, groups: &[Group], batch: usize, want: &[NodeId]) -> Prepared<T> {
    let virt = views::virtual_nodes(g, groups, want, batch);
    let layouts: Vec<Option<views::Layout>> = (0..g.nodes.len())
        .map(|n| virt[n].then(|| views::layout(g, n, batch, &virt)).flatten())
        .collect();
    let base: Vec<NodeId> = (0..g.nodes.len())
        .map(|n| layouts[n].as_ref().map_or(n, |l| l.base))
        .collect();
    let last = last_uses(g, groups, want, &base);
    let mut read = vec![false; g.nodes.len()];
    groups
        .iter()
        .flat_map(|gr| &gr.reads)
        .for_each(|&r| read[r] = true);
    let plans = groups
        .iter()
        .map(|gr| {
            let p = &g.nodes[gr.root].prim;
            let fused = is_elementwise(p) || matches!(p, Prim::Reduce { .. });
            (fused && !virt[gr.root]).then(|| fused::plan(g, gr, batch))
        })
        .collect();
    let into = groups
        .iter()
        .map(|gr| destination(g, gr.root, want, &read))
        .collect();
    let need = needed(g, want);
    let leaves = (0..g.nodes.len())
        .filter(|&i| need[i] && matches!(g.nodes[i].prim, Prim::Input { .. } | Prim::Param { .. }))
        .collect();
    Prepared {
        batch,
        virt,
        layouts,
        base,
        last,
        need,
        read,
        plans,
        into,
        leaves,
    }
}

/// The wanted value a fused loop computing `root` writes straight into: `root` itself when it
/// is wanted once, or a reshape of it that is (a groupnorm's input gradient, computed per
/// group and wanted per channel: the same values in the same order), which then reads it
/// there. A reduction that groups after it read (a row's mean or variance, which a training
/// pass keeps) is computed aside and copied at the end instead: small, and measured faster
/// that way (a layernorm's call 0.252 ms against 0.261 ms read from its destination).
fn destination(g: &Graph, root: NodeId, want: &[NodeId], read: &[bool]) -> Option<usize> {
    if read[root] && matches!(g.nodes[root].prim, Prim::Reduce { .. }) {
        return None;
    }
    let once = |n: NodeId| {
        let j = want.iter().position(|&w| w == n)?;
        (!want[j + 1..].contains(&n)).then_some(j)
    };
    if want.contains(&root) {
        return once(root);
    }
    let reshape = (root + 1..g.nodes.len()).find(|&i| {
        matches!(g.nodes[i].prim, Prim::Reshape)
            && g.nodes[i].inputs[0] == root
            && want.contains(&i)
    })?;
    once(reshape)
}

fn eval_core<'a, T: Real>(
    g: &Graph,
    groups: &[Group],
    prep: &Prepared<T>,
    feeds: &HashMap<NodeId, &'a [T]>,
    want: &[NodeId],
    dsts: &mut [Option<&'a mut [T]>],
    mut seconds: Option<&mut [f64]>,
) -> Result<Vec<Option<Vec<T>>>, EvalError> {
    let Prepared {
        batch,
        ref virt,
        ref layouts,
        ref base,
        ref last,
        ref need,
        ref read,
        ref plans,
        ref into,
        ref leaves,
    } = *prep;
    // Leaves are borrowed from the feeds; only computed values are allocated, and each is
    // dropped after its last reader, so the allocator hands the same (cache-warm) memory to
    // the next group.
    let mut vals: Vec<Option<Cow<'a, [T]>>> = vec![None; g.nodes.len()];
    // The needed leaves (inputs and params), which must be fed, then the values a training
    // pass kept (fed, so no group computes them); found without hashing every node's id.
    for &i in leaves {
        vals[i] = Some(leaf(g, feeds.get(&i).copied(), i, batch)?);
    }
    for (&i, &v) in feeds {
        if need[i] && vals[i].is_none() {
            vals[i] = Some(leaf(g, Some(v), i, batch)?);
        }
    }
    let mut written = vec![false; want.len()];
    for (k, gr) in groups.iter().enumerate() {
        if virt[gr.root] {
            continue;
        }
        let t0 = seconds.is_some().then(std::time::Instant::now);
        if let (Some(plan), Some(j)) = (&plans[k], into[k]) {
            if let Some(dst) = dsts[j].take() {
                let reads: Vec<&[T]> = gr.reads.iter().map(|&n| value(&vals, n)).collect();
                fused::run_planned(plan, &reads, dst);
                written[j] = true;
                // A value read on (a normalised value a training pass keeps and the output
                // is computed from; the value under a wanted reshape) is read where it was
                // written.
                if read[gr.root] {
                    let done: &'a [T] = dst;
                    vals[gr.root] = Some(Cow::Borrowed(done));
                }
                release(gr, k, last, base, &mut vals);
                continue;
            }
        }
        let v = match gr.reads.iter().any(|&r| virt[r]) {
            true => product_of_views(g, gr, batch, &vals, layouts),
            false => group_value(g, gr, batch, plans[k].as_ref(), &mut vals, last, k)?,
        };
        vals[gr.root] = Some(v);
        release(gr, k, last, base, &mut vals);
        if let (Some(s), Some(t0)) = (seconds.as_deref_mut(), t0) {
            s[k] = t0.elapsed().as_secs_f64();
        }
    }
    Ok(deliver(want, dsts, &written, &mut vals))
}

fn value<'v, T: Clone>(vals: &'v [Option<Cow<[T]>>], n: NodeId) -> &'v [T] {
    vals[n].as_deref().expect("reads come first")
}

/// Drops the values group `k` read last (the buffers under views included).
fn release<T: Clone>(
    gr: &Group,
    k: usize,
    last: &[usize],
    base: &[NodeId],
    vals: &mut [Option<Cow<[T]>>],
) {
    for &a in &gr.reads {
        if last[base[a]] == k {
            vals[base[a]] = None;
        }
    }
}

/// The wanted values not written yet: copied into their destinations, or moved out (a leaf,
/// or a node wanted twice, as one gradient for two inputs of an `add`, copied).
fn deliver<T: Real>(
    want: &[NodeId],
    dsts: &mut [Option<&mut [T]>],
    written: &[bool],
    vals: &mut [Option<Cow<[T]>>],
) -> Vec<Option<Vec<T>>> {
    let mut out = Vec::with_capacity(want.len());
    for (k, &w) in want.iter().enumerate() {
        if written[k] {
            out.push(None);
            continue;
        }
        if let Some(dst) = dsts[k].as_deref_mut() {
            dst.copy_from_slice(value(vals, w));
            out.push(None);
            continue;
        }
        let v = match (want[k + 1..].contains(&w), vals[w].take()) {
            (false, Some(Cow::Owned(v))) => v,
            (true, Some(c)) => {
                let v = c.to_vec();
                vals[w] = Some(c);
                v
            }
            (false, Some(Cow::Borrowed(b))) => b.to_vec(),
            (_, None) => unreachable!("every wanted node is evaluated and kept until its last use"),
        };
        out.push(Some(v));
    }
    out
}

/// A product whose operands are (some of them) views, read in place.
fn product_of_views<'a, T: Real>(
    g: &Graph,
    gr: &Group,
    batch: usize,
    vals: &[Option<Cow<'a, [T]>>],
    layouts: &[Option<views::Layout>],
) -> Cow<'a, [T]> {
    let node = &g.nodes[gr.root];
    let operand = |a: NodeId| {
        let l = layouts[a].clone().unwrap_or_else(|| {
            let dims = g.nodes[a].shape.at(batch);
            views::Layout {
                base: a,
                offset: 0,
                strides: layout::strides(&dims),
                dims,
            }
        });
        let data = vals[l.base].as_deref().expect("a view's buffer is kept");
        (data, l)
    };
    let (a, b) = (operand(node.inputs[0]), operand(node.inputs[1]));
    Cow::Owned(views::matmul(
        (a.0, &a.1),
        (b.0, &b.1),
        &node.shape.at(batch),
    ))
}

/// The value of group `k`'s root: a fused loop (planned) for an elementwise chain or a
/// reduction, a reshape borrowed or moved, any other node by its reference op.
fn group_value<'a, T: Real>(
    g: &Graph,
    gr: &Group,
    batch: usize,
    plan: Option<&fused::Plan<T>>,
    vals: &mut [Option<Cow<'a, [T]>>],
    last: &[usize],
    k: usize,
) -> Result<Cow<'a, [T]>, EvalError> {
    let node = &g.nodes[gr.root];
    if let Some(plan) = plan {
        let reads: Vec<&[T]> = gr
            .reads
            .iter()
            .map(|&n| vals[n].as_deref().expect("reads come first"))
            .collect();
        let mut out = vec![T::zero(); node.shape.numel(batch)];
        fused::run_planned(plan, &reads, &mut out);
        return Ok(Cow::Owned(out));
    }
    if let Prim::Reshape = node.prim {
        // A reshape is its input's values: borrowed, or moved at the input's last use.
        let a = node.inputs[0];
        return Ok(match vals[a].take() {
            Some(Cow::Borrowed(b)) => {
                vals[a] = Some(Cow::Borrowed(b));
                Cow::Borrowed(b)
            }
            Some(Cow::Owned(v)) if last[a] == k => Cow::Owned(v),
            Some(c) => {
                let copy = c.to_vec();
                vals[a] = Some(c);
                Cow::Owned(copy)
            }
            None => unreachable!("inputs come first"),
        });
    }
    let args: Vec<(&[T], Vec<usize>)> = node
        .inputs
        .iter()
        .map(|&a| {
            let v = vals[a].as_deref().expect("inputs come first");
            (v, g.nodes[a].shape.at(batch))
        })
        .collect();
    Ok(Cow::Owned(ops::run(
        &node.prim,
        &args,
        &node.shape.at(batch),
    )?))
}

/// Node `i`'s fed value `v`, checked for its size at the batch.
fn leaf<'a, T: Real>(
    g: &Graph,
    v: Option<&'a [T]>,
    i: NodeId,
    batch: usize,
) -> Result<Cow<'a, [T]>, EvalError> {
    let node = &g.nodes[i];
    // Named only for an error: a kept value by its primitive.
    let name = || match &node.prim {
        Prim::Input { name } | Prim::Param { name } => name.clone(),
        p => p.name(),
    };
    let v = v.ok_or_else(|| EvalError::Missing { name: name() })?;
    let want = node.shape.numel(batch);
    if v.len() != want {
        return Err(EvalError::Feed {
            name: name(),
            shape: node.shape.to_string(),
            want,
            got: v.len(),
        });
    }
    Ok(Cow::Borrowed(v))
}

#[cfg(test)]
mod gradcheck;
