// conv's input gradient (a transposed convolution), gathered: one invocation per input
// element dx[n, c, r, col] sums dy over the outputs whose taps read it, times that tap's
// weight. An input row the stride skips (when (F + pads - k) is not a multiple of it) gets 0.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let col = i % W;
    let r = (i / W) % H;
    let ch = (i / (W * H)) % CIN;
    let n = i / (W * H * CIN);
    let grp = ch / CIN_G;
    let ci = ch % CIN_G;
    var acc = 0.0;
    for (var f = 0u; f < COUT_G; f++) {
        let co = grp * COUT_G + f;
        let yb = (n * COUT + co) * OH * OW;
        let wb = (co * CIN_G + ci) * K * K;
        for (var ki = 0u; ki < K; ki++) {
            let ty = i32(r) + PAD_T - i32(ki * DIL);
            if (ty < 0 || ty % i32(S) != 0) { continue; }
            let oy = u32(ty) / S;
            if (oy >= OH) { continue; }
            for (var kj = 0u; kj < K; kj++) {
                let tx = i32(col) + PAD_L - i32(kj * DIL);
                if (tx < 0 || tx % i32(S) != 0) { continue; }
                let ox = u32(tx) / S;
                if (ox >= OW) { continue; }
                acc += rd_dy(yb + oy * OW + ox) * rd_w(wb + ki * K + kj);
            }
        }
    }
    {{STORE}}
}
