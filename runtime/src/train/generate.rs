//! A trained generator's samples on the CPU reference, the noise it is fed, and the image
//! shape of its output.

use super::TrainError;
use crate::cpu::{self, Params};
use crate::rng::Rng;
use crate::session::RunError;
use netc_compiler::ir::Network;
use netc_compiler::train_config::Noise;

/// `n` noise values drawn from `rng` as the training section says.
pub(super) fn draw_noise(rng: &mut Rng, noise: Noise, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match noise {
            Noise::Uniform { low, high } => rng.uniform(low, high) as f32,
            Noise::Normal { mean, std } => (mean + std * rng.normal()) as f32,
        })
        .collect()
}

/// `count` samples of a trained generator on the CPU reference (evaluation mode: batchnorm
/// with its running statistics), noise drawn as the training section says from `seed`, mapped
/// from the training `range` to [0, 1] as a data set's pixels; 500 at a time, so memory does
/// not grow with the count.
pub fn generate(
    gn: &Network,
    p: &Params<f32>,
    (noise, range): (Noise, (f64, f64)),
    count: usize,
    seed: u64,
) -> Result<Vec<f32>, TrainError> {
    let out = gn
        .outputs
        .first()
        .map(|o| o.1)
        .ok_or_else(|| TrainError::Setup(format!("generator `{}` has no output", gn.name)))?;
    let nz: usize = gn.graph[gn.inputs[0]].shape.iter().product::<u64>() as usize;
    let per: u128 = gn.graph[out].shape.iter().map(|&d| d as u128).product();
    crate::memory::ensure(
        4 * (count as u128 * per + crate::memory::training_bytes(gn, 500, 0, 1)),
        || format!("{count} samples of generator `{}`", gn.name),
    )?;
    let mut rng = Rng::new(seed);
    let mut images = Vec::new();
    let (lo, span) = (range.0, range.1 - range.0);
    let mut left = count;
    while left > 0 {
        let rows = left.min(500);
        let z = draw_noise(&mut rng, noise, rows * nz);
        let zv = ndarray::ArrayView2::from_shape((rows, nz), &z)
            .map_err(|e| TrainError::Setup(e.to_string()))?;
        let acts = cpu::forward(gn, p, zv, false, 0).map_err(RunError::from)?;
        images.extend(
            acts.get(out)
                .iter()
                .map(|&v| ((v as f64 - lo) / span) as f32),
        );
        left -= rows;
    }
    Ok(images)
}

/// The image shape of a generator's output: CxHxW, or a square of a flat vector.
pub fn image_shape(net: &Network) -> (usize, usize, usize) {
    let out = net
        .outputs
        .first()
        .map(|o| o.1)
        .unwrap_or(net.order[net.order.len() - 1]);
    let s: Vec<usize> = net.graph[out].shape.iter().map(|&d| d as usize).collect();
    match s.as_slice() {
        [c, h, w] => (*c, *h, *w),
        [n] => {
            let side = (*n as f64).sqrt() as usize;
            if side * side == *n {
                (1, side, side)
            } else {
                (1, 1, *n)
            }
        }
        _ => (1, 1, s.iter().product()),
    }
}
