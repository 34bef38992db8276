//! concat: joins tensors along one axis of the per-example shape (axis 0, channels, by
//! default); the other axes must agree.

use super::registry::OpDef;
use super::{ArgDef, Op, Parsed, ShapeError, Ty};
use crate::ast::shape_str;

pub(super) const DEF: OpDef = OpDef {
    name: "concat",
    aliases: &[],
    args: ARGS,
    example: "concat(a, b, axis=0)",
    named_inputs: true,
    main_call: false,
    parse: |p, _| from_args(p),
};

const ARGS: &[ArgDef] = &[("axis", &["dim"], Ty::Int, false, false)];

fn from_args(p: &Parsed) -> Op {
    Op::Concat {
        axis: p.int("axis", 0),
    }
}

pub(super) fn describe(axis: u64) -> String {
    format!("concat[axis={axis}]")
}

/// How one example's values split around the axis: `outer` blocks, each holding `inner`
/// values per index along the axis (so input i contributes blocks of `sizes[i] * inner`).
pub fn layout(shape: &[u64], axis: u64) -> (u64, u64) {
    let ax = axis as usize;
    (
        shape[..ax].iter().product(),
        shape[ax + 1..].iter().product(),
    )
}

/// A concat with a tensor that has no batch axis (a class token) runs as a primitive that
/// repeats it over the batch.
pub fn repeated(axis: u64) -> super::prim::PrimOp {
    super::prim::PrimOp::Concat { axis: axis as i64 }
}

pub(super) fn infer(inputs: &[Vec<u64>], axis: u64) -> Result<Vec<u64>, ShapeError> {
    let first = inputs.first().cloned().unwrap_or_default();
    let ax = axis as usize;
    if ax >= first.len() {
        return Err(ShapeError {
            message: format!(
                "concat axis {axis} is out of range for {}",
                shape_str(&first)
            ),
            help: None,
        });
    }
    let mut out = first.clone();
    for s in &inputs[1..] {
        let same_rest = s.len() == first.len()
            && s.iter()
                .zip(&first)
                .enumerate()
                .all(|(i, (a, b))| i == ax || a == b);
        if !same_rest {
            return Err(ShapeError {
                message: format!(
                    "`concat` on axis {axis} needs shapes that agree elsewhere, but got {} and {}",
                    shape_str(&first),
                    shape_str(s)
                ),
                help: None,
            });
        }
        out[ax] = super::add(out[ax], s[ax])?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// GPU: one block copy per input, scattering into its slice of the joined tensor (forward) or
// gathering its gradient back out (backward).

use crate::kernels::{acc_tag, per_element, store_elem, KernelSource, ReadPath, Reads, Store};
use crate::program::{Builder, TensorId};

const TEMPLATE: &str = include_str!("../../../shaders/concat.wgsl");

/// Copy between an input of `width` values per block and its slice at `offset` of blocks of
/// `total` values; `blocks` = batch x outer. Forward: [x, y]; backward: [dy, dx].
pub fn copy_kernel(
    blocks: u64,
    width: u64,
    total: u64,
    offset: u64,
    backward: Option<Store>,
    path: ReadPath,
) -> KernelSource {
    let (reads, body, name) = match backward {
        None => (
            Reads::new(path).input(0, "x").output(1, "y", false),
            "y[joined] = rd_x(i);".to_string(),
            "concat_fwd".to_string(),
        ),
        Some(store) => (
            Reads::new(path)
                .input(0, "dy")
                .output(1, "dx", store == Store::Accumulate),
            store_elem(store, "dx", "i", "rd_dy(joined)"),
            format!("concat_bwd{}", acc_tag(store)),
        ),
    };
    per_element(
        format!("{name}[{blocks}x{width} of {total} at {offset}]"),
        TEMPLATE,
        blocks * width,
        reads,
        (
            &[("WD", width), ("TOTAL", total), ("OFF", offset)],
            &[],
            &[],
        ),
        &[("BODY", body)],
    )
}

/// (blocks, width, total, offset) of each input.
fn slices(shapes: &[Vec<u64>], axis: u64, batch: u64) -> Vec<(u64, u64, u64, u64)> {
    let (outer, inner) = layout(&shapes[0], axis);
    let widths: Vec<u64> = shapes.iter().map(|s| s[axis as usize] * inner).collect();
    let total: u64 = widths.iter().sum();
    let mut off = 0;
    widths
        .iter()
        .map(|&wd| {
            let s = (batch * outer, wd, total, off);
            off += wd;
            s
        })
        .collect()
}

pub(crate) fn lower_forward(
    b: &mut Builder,
    shapes: &[Vec<u64>],
    axis: u64,
    batch: u64,
    xs: &[TensorId],
    y: TensorId,
    label: &str,
) {
    for (&x, (blocks, wd, total, off)) in xs.iter().zip(slices(shapes, axis, batch)) {
        let k = copy_kernel(blocks, wd, total, off, None, b.reads());
        b.emit(k, vec![x, y], label.to_string());
    }
}

/// `dxs[i]`: the gradient slot of input i, when it needs one.
pub(crate) fn lower_backward(
    b: &mut Builder,
    shapes: &[Vec<u64>],
    axis: u64,
    batch: u64,
    dy: TensorId,
    dxs: &[Option<(TensorId, Store)>],
    label: &str,
) {
    for (dx, (blocks, wd, total, off)) in dxs.iter().zip(slices(shapes, axis, batch)) {
        if let Some((dx, store)) = *dx {
            let k = copy_kernel(blocks, wd, total, off, Some(store), b.reads());
            b.emit(k, vec![dy, dx], label.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::validate;

    #[test]
    fn every_kernel_validates_on_every_read_path() {
        for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
            for store in [None, Some(Store::Write), Some(Store::Accumulate)] {
                let k = copy_kernel(6, 25, 40, 15, store, path);
                validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}\n{}", k.name, k.source));
            }
        }
    }

    #[test]
    fn slices_of_a_channel_concat() {
        let s = slices(&[vec![3, 2, 2], vec![5, 2, 2]], 0, 2);
        assert_eq!(s, vec![(2, 12, 32, 0), (2, 20, 32, 12)]);
    }
}
