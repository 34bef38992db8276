// conv's im2col: the columns of one group of one chunk of samples, col[r, p] with r a tap
// (ci, ki, kj) of the group's filters and p an output pixel (n, oy, ox) of the chunk; taps
// in the padding are 0. The convolution is then one matrix product per group.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let p = i % PC;
    let r = i / PC;
    let kj = r % K;
    let ki = (r / K) % K;
    let ci = r / (K * K);
    let ox = p % OW;
    let oy = (p / OW) % OH;
    let n = N0 + p / (OW * OH);
    let row = i32(oy * S + ki * DIL) - PAD_T;
    let c = i32(ox * S + kj * DIL) - PAD_L;
    var v = 0.0;
    if (row >= 0 && row < i32(H) && c >= 0 && c < i32(W)) {
        v = rd_x(((n * CIN + C0 + ci) * H + u32(row)) * W + u32(c));
    }
    col[i] = v;
}
