//! The GPU tests' common ground: the test adapter once per read path it can take, and the
//! relative error they compare the GPU with the CPU reference by.

use netc_compiler::kernels::ReadPath;
use netc_runtime::gpu::{test_gpu, Gpu};
use netc_runtime::rng::Rng;

/// The read paths the test adapter runs: storage loads, sampled-texture mirrors and, where
/// the adapter can bind them, storage-texture mirrors. A CPU adapter (lavapipe in CI) must
/// take the storage-texture path, its default: it is not skipped quietly.
pub fn read_paths() -> Vec<ReadPath> {
    let Some(g) = test_gpu() else { return vec![] };
    assert!(
        g.image_reads || !g.cpu_adapter,
        "CPU adapter {} cannot bind read-only storage textures",
        g.info.name
    );
    let mut paths = vec![ReadPath::Storage, ReadPath::Texture];
    if g.image_reads {
        paths.push(ReadPath::Image);
    }
    paths
}

/// The adapter once per read path, so every kind of kernel is checked; none when there is no
/// adapter (a failure under NETC_REQUIRE_GPU=1, through `test_gpu`).
pub fn gpus() -> Vec<Gpu> {
    read_paths()
        .into_iter()
        .filter_map(|reads| {
            let mut g = test_gpu()?;
            g.reads = reads;
            Some(g)
        })
        .collect()
}

/// ||gpu - reference|| / ||reference||, against an f32 or an f64 reference (infinite when
/// the GPU's values are not finite).
pub fn rel_err<R: Copy + Into<f64>>(gpu: &[f32], reference: &[R]) -> f64 {
    assert_eq!(gpu.len(), reference.len());
    let mut num = 0.0;
    let mut den = 0.0;
    for (&g, &r) in gpu.iter().zip(reference) {
        let g = g as f64;
        let r: f64 = r.into();
        num += (g - r) * (g - r);
        den += r * r;
    }
    if !num.is_finite() {
        return f64::INFINITY;
    }
    num.sqrt() / den.sqrt().max(1e-30)
}

/// `n` values uniform in [-1, 1).
pub fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect()
}
