// concat's block copy between one input (OUTER blocks of WD values per example) and its slice
// of the joined tensor (OUTER blocks of TOTAL values, this input's at offset OFF). BODY is the
// forward (scatter into y) or the backward (gather the input's gradient from dy).
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let j = i % WD;
    let blk = i / WD;
    let joined = blk * TOTAL + OFF + j;
    {{BODY}}
}
