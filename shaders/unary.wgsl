// Elementwise forward y = f(x), or backward dx (= or +=) dy * f'(x or y).
// 2-D dispatch so tensors over 65535 * 256 elements fit; ROW is threads per dispatch row.
const LEN: u32 = {{LEN}}u;
const ROW: u32 = {{ROW}}u;
{{DECLS}}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    {{BODY}}
}
