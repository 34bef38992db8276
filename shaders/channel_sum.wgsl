// A conv bias's gradient: per channel, the sum of dy over the batch and the channel's pixels
// (STORE writes it, or adds it to what an earlier micro-batch left).
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    var acc = 0.0;
    for (var n = 0u; n < N; n++) {
        let b = (n * LEN + i) * P;
        for (var p = 0u; p < P; p++) {
            acc += rd_dy(b + p);
        }
    }
    {{STORE}}
}
