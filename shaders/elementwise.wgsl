// An elementwise kernel: each invocation takes four consecutive elements (one rgba texel or
// four storage loads per input), so the texture read path fetches once per four elements.
// 2-D dispatch so tensors over 65535 * 64 quads fit; ROW is invocations per dispatch row.
// Placeholders: LEN, ROW, DECLS (operands), PRELUDE (per-invocation loads), BODY (four
// unrolled blocks, one per element, each with its index `i` and its inputs as scalars).
const LEN: u32 = {{LEN}}u;
const ROW: u32 = {{ROW}}u;
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let q = gid.y * ROW + gid.x;
    if (4u * q >= LEN) { return; }
    {{PRELUDE}}
{{BODY}}
}
