// C[M,N] (= or +=) op(A)[M,K] * op(B)[K,N] (+ bias[N]) then an optional activation: the
// storage path, for GPUs. Classic shared-memory tiling: a 16x16 workgroup computes a 64x64
// block of C, each invocation 4x4 elements strided by 16 (rows ty + 16i, columns tx + 16j, so
// neighbouring invocations store neighbouring columns and read distinct shared-memory words).
// K is walked 16 at a time: the workgroup stages a 64x16 tile of A and a 16x64 tile of B in
// workgroup memory (8 KiB, half the portable minimum), each invocation loading 4 elements of
// each along the operand's contiguous dimension (coalesced), zero outside the matrix.
// Placeholders: M N K, READS (operand declarations), LOAD_A / LOAD_B (the staging loads for
// the transposes), BODY (unrolled multiply-adds and the stores).
const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;

{{READS}}

var<workgroup> tile_a: array<f32, 1024>; // [k][m]: 16 x 64
var<workgroup> tile_b: array<f32, 1024>; // [k][n]: 16 x 64

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    let tx = lid.x;
    let ty = lid.y;
{{DECLS}}
    for (var k0 = 0u; k0 < K; k0 += 16u) {
        for (var q = 0u; q < 4u; q++) {
            let e = li + 256u * q;
{{LOAD_A}}
{{LOAD_B}}
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
{{INNER}}
        }
        workgroupBarrier();
    }
{{BODY}}
}
