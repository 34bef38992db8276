// conv's weight gradient: one invocation per weight w[co, ci, ki, kj] sums dy times the input
// its tap read, over the batch and every output pixel.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let kj = i % K;
    let ki = (i / K) % K;
    let ci = (i / (K * K)) % CIN_G;
    let co = i / (K * K * CIN_G);
    let ch = (co / COUT_G) * CIN_G + ci;
    var acc = 0.0;
    for (var n = 0u; n < N; n++) {
        let xb = (n * CIN + ch) * H * W;
        let yb = (n * COUT + co) * OH * OW;
        for (var oy = 0u; oy < OH; oy++) {
            let r = i32(oy * S + ki * DIL) - PAD_T;
            if (r < 0 || r >= i32(H)) { continue; }
            for (var ox = 0u; ox < OW; ox++) {
                let c = i32(ox * S + kj * DIL) - PAD_L;
                if (c < 0 || c >= i32(W)) { continue; }
                acc += rd_dy(yb + oy * OW + ox) * rd_x(xb + u32(r) * W + u32(c));
            }
        }
    }
    gw[i] = acc;
}
