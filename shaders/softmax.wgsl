// Row-wise softmax over C columns (one thread per row; C is small for classifier heads).
// Forward: y = softmax(x). Backward: dx (= or +=) y * (dy - sum(dy * y)).
const ROWS: u32 = {{ROWS}}u;
const C: u32 = {{C}}u;
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= ROWS) { return; }
    let o = r * C;
    {{BODY}}
}
