// conv forward, direct: one invocation per output element y[n, co, oy, ox] sums its
// CIN_G x K x K taps; taps that fall in the padding add nothing. Sizes are constants of the
// schedule (CONSTS); DECLS declares x, w, (b,) y and their rd_ accessors; EPILOGUE stores.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let co = (i / (OW * OH)) % COUT;
    let n = i / (OW * OH * COUT);
    let grp = co / COUT_G;
    var acc = 0.0;
    for (var ci = 0u; ci < CIN_G; ci++) {
        let xb = (n * CIN + grp * CIN_G + ci) * H * W;
        let wb = (co * CIN_G + ci) * K * K;
        for (var ki = 0u; ki < K; ki++) {
            let r = i32(oy * S + ki * DIL) - PAD_T;
            if (r < 0 || r >= i32(H)) { continue; }
            for (var kj = 0u; kj < K; kj++) {
                let c = i32(ox * S + kj * DIL) - PAD_L;
                if (c < 0 || c >= i32(W)) { continue; }
                acc += rd_x(xb + u32(r) * W + u32(c)) * rd_w(wb + ki * K + kj);
            }
        }
    }
    {{EPILOGUE}}
}
