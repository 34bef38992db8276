// db[j] (= or +=) sum over rows of dy[r, j]. One invocation per column, or per four columns
// (one texel or four loads per row) when N is a multiple of 4.
// Bindings: dy, db. Placeholders: ROWS, N, READS, BODY (generated).
const ROWS: u32 = {{ROWS}}u;
const N: u32 = {{N}}u;
{{READS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
{{BODY}}
}
