//! The CPU reference of the tensor primitives (`netc_compiler::prim`): a graph evaluated node
//! by node at a concrete batch size, generic over f32 and f64 like the rest of the reference.
//! It is the oracle for the generated kernels and, in f64, for the derived gradients.

mod layout;
mod ops;
pub mod profile;
pub mod region;

use super::Real;
use netc_compiler::prim::fuse::needed;
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

/// For each node, the last needed node reading it (`usize::MAX` for the wanted ones, kept to
/// the end; the node itself when nothing reads it).
fn last_uses(g: &Graph, need: &[bool], want: &[NodeId]) -> Vec<NodeId> {
    let mut last: Vec<NodeId> = (0..g.nodes.len()).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        if need[i] {
            for &a in &n.inputs {
                last[a] = i;
            }
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
    let need = needed(g, want);
    let last = last_uses(g, &need, want);
    // Leaves are borrowed from the feeds; only computed values are allocated, and each is
    // dropped after its last reader, so the allocator hands the same (cache-warm) memory to
    // the next node.
    let mut vals: Vec<Option<Cow<[T]>>> = vec![None; g.nodes.len()];
    for i in 0..g.nodes.len() {
        if !need[i] {
            continue;
        }
        let node = &g.nodes[i];
        let v = match &node.prim {
            Prim::Input { name } | Prim::Param { name } => {
                leaf(feeds, i, name, node.shape.numel(batch), &node.shape)?
            }
            // A reshape is its input's values: borrowed, or moved at the input's last use.
            Prim::Reshape => {
                let a = node.inputs[0];
                match vals[a].take() {
                    Some(Cow::Borrowed(b)) => {
                        vals[a] = Some(Cow::Borrowed(b));
                        Cow::Borrowed(b)
                    }
                    Some(Cow::Owned(v)) if last[a] == i => Cow::Owned(v),
                    Some(c) => {
                        let copy = c.to_vec();
                        vals[a] = Some(c);
                        Cow::Owned(copy)
                    }
                    None => unreachable!("inputs come first"),
                }
            }
            _ => {
                let args: Vec<(&[T], Vec<usize>)> = node
                    .inputs
                    .iter()
                    .map(|&a| {
                        let v = vals[a].as_deref().expect("inputs come first");
                        (v, g.nodes[a].shape.at(batch))
                    })
                    .collect();
                Cow::Owned(ops::run(&node.prim, &args, &node.shape.at(batch))?)
            }
        };
        vals[i] = Some(v);
        for &a in &node.inputs {
            if last[a] == i {
                vals[a] = None;
            }
        }
    }
    // Computed values move out; a leaf, or a node wanted twice (one gradient for two inputs
    // of an `add`), is copied.
    let mut out: Vec<Vec<T>> = Vec::with_capacity(want.len());
    for (k, &w) in want.iter().enumerate() {
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
        out.push(v);
    }
    Ok(out)
}

fn leaf<'a, T: Real>(
    feeds: &HashMap<NodeId, &'a [T]>,
    i: NodeId,
    name: &str,
    want: usize,
    shape: &netc_compiler::prim::Shape,
) -> Result<Cow<'a, [T]>, EvalError> {
    let v = *feeds.get(&i).ok_or_else(|| EvalError::Missing {
        name: name.to_string(),
    })?;
    if v.len() != want {
        return Err(EvalError::Feed {
            name: name.to_string(),
            shape: shape.to_string(),
            want,
            got: v.len(),
        });
    }
    Ok(Cow::Borrowed(v))
}

#[cfg(test)]
mod gradcheck;
