// batchnorm's input gradient, one invocation per element. Training (through the batch
// statistics): weight / std * (dy - (sum(dy) + xhat * sum(dy * xhat)) / M), M = N * P values
// per channel; evaluation: weight / std * dy.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let c = (i / P) % C;
    let inv_std = rd_saved(C + c);
    let xhat = (rd_x(i) - rd_saved(c)) * inv_std;
    let g = {{GRAD}};
    {{STORE}}
}
