// batchnorm's backward sums, one invocation per channel: sum(dy) (the bias gradient) and
// sum(dy * xhat) (the weight gradient), kept in `sums` for the input gradient and, when the
// layer is trained, stored into its gradients (STORE).
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.y * ROW + gid.x;
    if (c >= LEN) { return; }
    let mean = rd_saved(c);
    let inv_std = rd_saved(LEN + c);
    var s = 0.0;
    var sx = 0.0;
    for (var n = 0u; n < N; n++) {
        let base = (n * LEN + c) * P;
        for (var p = 0u; p < P; p++) {
            let d = rd_dy(base + p);
            s += d;
            sx += d * (rd_x(base + p) - mean) * inv_std;
        }
    }
    sums[c] = s;
    sums[LEN + c] = sx;
    {{STORE}}
}
