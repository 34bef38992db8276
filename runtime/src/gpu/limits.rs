//! A kernel's resources against the adapter's limits, checked before its pipeline is built.

use super::{Gpu, GpuError};
use netc_compiler::kernels::KernelSource;

/// A kernel's workgroup size, workgroup memory, bindings and grid against the adapter's
/// limits, before any pipeline is built: a clear error instead of a driver failure.
pub(super) fn check_limits(ks: &KernelSource, gpu: &Gpu, layers: &str) -> Result<(), GpuError> {
    let r = ks.resources().map_err(|message| GpuError::Shader {
        kernel: ks.name.clone(),
        layers: layers.to_string(),
        message,
    })?;
    let l = &gpu.limits;
    let [x, y, z] = r.workgroup_size;
    let checks: [(&'static str, u64, u64); 11] = [
        (
            "invocations in x",
            x as u64,
            l.max_compute_workgroup_size_x as u64,
        ),
        (
            "invocations in y",
            y as u64,
            l.max_compute_workgroup_size_y as u64,
        ),
        (
            "invocations in z",
            z as u64,
            l.max_compute_workgroup_size_z as u64,
        ),
        (
            "invocations per workgroup",
            x as u64 * y as u64 * z as u64,
            l.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "bytes of workgroup memory",
            r.workgroup_bytes,
            l.max_compute_workgroup_storage_size as u64,
        ),
        (
            "storage buffers",
            r.storage_buffers as u64,
            l.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "sampled textures",
            r.textures as u64,
            l.max_sampled_textures_per_shader_stage as u64,
        ),
        (
            "storage textures",
            r.storage_textures as u64,
            l.max_storage_textures_per_shader_stage as u64,
        ),
        (
            "workgroups in x",
            ks.groups[0] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "workgroups in y",
            ks.groups[1] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "workgroups in z",
            ks.groups[2] as u64,
            l.max_compute_workgroups_per_dimension as u64,
        ),
    ];
    for (what, need, limit) in checks {
        if need > limit {
            return Err(GpuError::KernelLimits {
                kernel: ks.name.clone(),
                layers: layers.to_string(),
                what,
                need,
                limit,
                adapter: gpu.info.name.clone(),
            });
        }
    }
    Ok(())
}
