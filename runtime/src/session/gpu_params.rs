//! Moving a parameter set between host tensors and the GPU program's buffers: weights,
//! gradients and optimizer state, each binding possibly a part of its host tensor.

use super::{Grads, RunError};
use crate::cpu::{OptState, Params};
use crate::gpu::GpuProgram;
use netc_compiler::schedule::{ParamBinding, ParamSet, TensorId};

/// The elements of host tensor `v` a (possibly partial) binding holds.
fn part<'a>(b: &ParamBinding, v: &'a [f32]) -> &'a [f32] {
    &v[b.offset as usize..(b.offset + b.len) as usize]
}

pub(super) fn upload(prog: &GpuProgram, set: &ParamSet, p: &Params<f32>) {
    for b in &set.bindings {
        if let Some(i) = p.index(&b.name) {
            prog.write(b.tensor, part(b, &p.values[i]));
        }
    }
}

/// Reads a binding's part of a device tensor into its place in `into`.
fn read_part(
    prog: &GpuProgram,
    b: &ParamBinding,
    t: TensorId,
    into: &mut [f32],
) -> Result<(), RunError> {
    let v = prog.read(t)?;
    into[b.offset as usize..(b.offset + b.len) as usize].copy_from_slice(&v[..b.len as usize]);
    Ok(())
}

/// The gradients of a parameter set's tensors in `like`'s order (None for frozen ones),
/// assembled from their parts.
pub(super) fn read_grads(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
) -> Result<Vec<Option<Vec<f32>>>, RunError> {
    like.names
        .iter()
        .zip(&like.values)
        .map(|(n, v)| {
            let parts = set.bindings.iter().filter(|b| &b.name == n);
            let mut out: Option<Vec<f32>> = None;
            for b in parts {
                if let Some(t) = b.grad {
                    let g = out.get_or_insert_with(|| vec![0.0; v.len()]);
                    read_part(prog, b, t, g)?;
                }
            }
            Ok(out)
        })
        .collect()
}

/// Writes gradients in `like`'s order (as [`read_grads`] gives them) into the program's
/// gradient tensors: the sum over the ranks of a data-parallel step, before its update pass.
pub(super) fn write_grads(prog: &GpuProgram, set: &ParamSet, like: &Params<f32>, g: &Grads) {
    for b in &set.bindings {
        let (Some(t), Some(i)) = (b.grad, like.index(&b.name)) else {
            continue;
        };
        if let Some(Some(v)) = g.get(i) {
            prog.write(t, part(b, v));
        }
    }
}

pub(super) fn download(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
) -> Result<Params<f32>, RunError> {
    let mut p = like.clone();
    for b in &set.bindings {
        if let Some(i) = p.index(&b.name) {
            read_part(prog, b, b.tensor, &mut p.values[i])?;
        }
    }
    Ok(p)
}

pub(super) fn download_state(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
    step: u64,
) -> Result<OptState<f32>, RunError> {
    let slots = set
        .bindings
        .iter()
        .map(|b| b.state.len())
        .max()
        .unwrap_or(0);
    let mut st = OptState {
        slots: (0..slots)
            .map(|_| like.values.iter().map(|v| vec![0.0; v.len()]).collect())
            .collect(),
        step,
    };
    for b in &set.bindings {
        if let Some(i) = like.index(&b.name) {
            for (s, &t) in b.state.iter().enumerate() {
                read_part(prog, b, t, &mut st.slots[s][i])?;
            }
        }
    }
    Ok(st)
}

pub(super) fn upload_state(
    prog: &GpuProgram,
    set: &ParamSet,
    like: &Params<f32>,
    st: &OptState<f32>,
) {
    for b in &set.bindings {
        if let Some(i) = like.index(&b.name) {
            for (s, &t) in b.state.iter().enumerate() {
                if let Some(v) = st.slots.get(s) {
                    prog.write(t, part(b, &v[i]));
                }
            }
        }
    }
}

pub(super) fn frozen(set: &ParamSet) -> ParamSet {
    let mut f = set.clone();
    for b in f.bindings.iter_mut() {
        b.grad = None;
    }
    f.trainable = false;
    f
}

/// Zeroes every optimizer-state tensor of a set (a fresh run's moments).
pub(super) fn zero_state(prog: &GpuProgram, set: &ParamSet) {
    for b in &set.bindings {
        for &s in &b.state {
            prog.write(s, &vec![0.0; prog.program.tensors[s].len as usize]);
        }
    }
}
