// A tensor primitive's kernel: one invocation per element of the result, its index `i` over the
// result's row-major layout. 2-D dispatch so results over 65535 * 64 elements fit; ROW is
// invocations per dispatch row. Placeholders: CONSTS (LEN, ROW), DECLS (operands), FUNCS
// (helpers the body calls), BODY (statements ending in the store of element i).
{{CONSTS}}
{{DECLS}}
{{FUNCS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
{{BODY}}
}
