// maxpool / avgpool forward: one invocation per output element. Max keeps the first maximum
// among the window's taps inside the input (row-major, strict >) and saves its index within
// the channel plane as a float (exact below 2^24) for the backward pass; avg divides the sum
// of the taps inside by K*K. BODY is one of the two.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let plane = i / (OW * OH);
    let xb = plane * H * W;
    var best = 0.0;
    var arg = -1;
    var sum = 0.0;
    for (var ki = 0u; ki < K; ki++) {
        let r = i32(oy * S + ki) - PAD_T;
        if (r < 0 || r >= i32(H)) { continue; }
        for (var kj = 0u; kj < K; kj++) {
            let c = i32(ox * S + kj) - PAD_L;
            if (c < 0 || c >= i32(W)) { continue; }
            let at = r * i32(W) + c;
            let v = rd_x(xb + u32(at));
            sum += v;
            if (arg < 0 || v > best) {
                best = v;
                arg = at;
            }
        }
    }
    {{BODY}}
}
