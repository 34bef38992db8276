// maxpool / avgpool backward, gathered: one invocation per input element dx[n, c, r, col]
// visits the windows that cover it. Max adds dy where the saved winner is this element; avg
// adds dy / (K*K) from every covering window. BODY is the per-window contribution.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let col = i % W;
    let r = (i / W) % H;
    let plane = i / (W * H);
    let here = f32(r * W + col);
    let yb = plane * OH * OW;
    // Windows oy with oy*S - PAD_T <= r <= oy*S - PAD_T + K - 1.
    let ty = i32(r) + PAD_T;
    let tx = i32(col) + PAD_L;
    let oy0 = u32(max(0, (ty - i32(K) + i32(S)) / i32(S)));
    let oy1 = min(OH, u32(ty) / S + 1u);
    let ox0 = u32(max(0, (tx - i32(K) + i32(S)) / i32(S)));
    let ox1 = min(OW, u32(tx) / S + 1u);
    var acc = 0.0;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            let o = yb + oy * OW + ox;
            {{BODY}}
        }
    }
    {{STORE}}
}
