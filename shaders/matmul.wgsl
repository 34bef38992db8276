// C[M,N] (= or +=) op(A)[M,K] * op(B)[K,N] (+ bias[N]) then an optional activation.
//
// Each invocation computes an R x C block of C. The 64 invocations of a workgroup run along the
// columns (rows r0..r0+R shared, columns c0, c0+64, ...) or, for outputs narrower than 64
// columns, along the rows (rows r0, r0+64, ..., columns c0..c0+C shared); BODY sets r0 and c0. No workgroup memory and no barriers: software
// rasterisers such as lavapipe run barriers as coroutine switches, while caches serve the
// reuse; GPUs coalesce B's loads and broadcast A's. Indices are clamped instead of branched
// on in the inner loop; only in-range elements are stored.
// Placeholders: M N K, READS (operand declarations), A_INDEX(m,k) and B_INDEX(k,n) pick the
// transposes, BODY (generated).
const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;

{{READS}}

fn load_a(m: u32, k: u32) -> f32 {
    return rd_a({{A_INDEX}});
}

fn load_b(k: u32, n: u32) -> f32 {
    return rd_b({{B_INDEX}});
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
{{BODY}}
}
