// Between a group's matrix layout [COUT_G, chunk pixels] and the activation layout
// [N, COUT, OH, OW]: element i = (co, p) of the matrix is element o of the activation.
// BODY moves it one way (the product's result, plus bias, into y) or the other (dy into the
// matrix the gradient products take).
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let co = i / PC;
    let p = i % PC;
    let pix = p % (OH * OW);
    let n = N0 + p / (OH * OW);
    let o = (n * COUT + CO0 + co) * OH * OW + pix;
    {{BODY}}
}
