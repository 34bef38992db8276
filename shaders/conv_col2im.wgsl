// conv's input gradient from the columns' gradient dcol (col2im), gathered: one invocation
// per input element of the group's channels in the chunk sums the dcol entries of the taps
// that read it. An input row the stride skips (when (F + pads - k) is not a multiple of it)
// gets 0.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let col = i % W;
    let r = (i / W) % H;
    let ci = (i / (W * H)) % CIN_G;
    let nl = i / (W * H * CIN_G);
    var acc = 0.0;
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
            acc += rd_dcol(((ci * K + ki) * K + kj) * PC + (nl * OH + oy) * OW + ox);
        }
    }
    let o = ((N0 + nl) * CIN + C0 + ci) * H * W + r * W + col;
    {{STORE}}
}
