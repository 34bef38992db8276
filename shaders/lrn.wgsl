// lrn across channels, the paper's formula: b_c = a_c * s_c^-BETA with
// s_c = KK + ALPHA * sum of a_j^2 over channels lo(c)..=hi(c) (alpha not divided by SIZE).
// One invocation per element. BODY is the forward or the backward:
// da_c = dy_c s_c^-BETA - 2 ALPHA BETA a_c sum over c' whose window holds c of dy_c' a_c' s_c'^(-BETA-1).
{{CONSTS}}
{{DECLS}}

fn scale(n: u32, c: u32, p: u32) -> f32 {
    let lo = c - min(c, SIZE / 2u);
    let hi = min(C - 1u, c + (SIZE - 1u) / 2u);
    var s = 0.0;
    for (var j = lo; j <= hi; j++) {
        let v = rd_x((n * C + j) * P + p);
        s += v * v;
    }
    return KK + ALPHA * s;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let p = i % P;
    let c = (i / P) % C;
    let n = i / (P * C);
    {{BODY}}
}
