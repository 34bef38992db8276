// batchnorm's output, one invocation per element: y = weight * (x - mean) / std + bias with the
// channel's saved [mean, 1/std] (see batchnorm_stats.wgsl).
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let c = (i / P) % C;
    y[i] = rd_w(c) * (rd_x(i) - rd_saved(c)) * rd_saved(C + c) + rd_b(c);
}
