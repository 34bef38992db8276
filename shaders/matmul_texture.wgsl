// C[M,N] (= or +=) op(A)[M,K] * op(B)[K,N] (+ bias[N]) then an optional activation, reading A,
// B and bias as texels of rgba32float mirrors (the texture read path, for CPU adapters).
//
// Each invocation holds an R x 4C block of C in vec4 accumulators and walks K four at a time,
// fetching whole texels where the layout allows (see kernels::matmul_texture); a fetch costs
// about as much as a scalar storage load does on a GPU, so the tile is up to 16x16 (see
// kernels::texture_tile for why not larger). No workgroup memory or barriers: lavapipe's
// shared-memory loads are as slow as its storage loads. Placeholders: M N K, READS (operand declarations), WORKGROUP, BODY (generated).
const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;

{{READS}}

@compute @workgroup_size({{WORKGROUP}})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
{{BODY}}
}
