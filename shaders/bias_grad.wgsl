// db[j] (= or +=) sum over rows of dy[r, j]. One thread per column.
const ROWS: u32 = {{ROWS}}u;
const N: u32 = {{N}}u;
@group(0) @binding(0) var<storage, read> dy: array<f32>;
@group(0) @binding(1) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= N) { return; }
    var s = 0.0;
    for (var r = 0u; r < ROWS; r++) { s += dy[r * N + j]; }
    {{STORE}}
}
