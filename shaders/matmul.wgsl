// C[M,N] (= or +=) op(A)[M,K] * op(B)[K,N] (+ bias[N]) then an optional activation.
// 64x64 output tile per workgroup, 16x16 threads, each thread a 4x4 block (rows lid.y+16i,
// cols lid.x+16j), K in steps of 16 through workgroup memory (8 KiB).
// Placeholders: M N K, A_INDEX (m,k) and B_INDEX (k,n) pick the transposes, BIAS, ACT, STORE.
const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
{{BIAS_DECL}}

var<workgroup> a_tile: array<f32, 1024>; // [16 k][64 m]
var<workgroup> b_tile: array<f32, 1024>; // [16 k][64 n]

fn load_a(m: u32, k: u32) -> f32 {
    if (m >= M || k >= K) { return 0.0; }
    return a[{{A_INDEX}}];
}

fn load_b(k: u32, n: u32) -> f32 {
    if (k >= K || n >= N) { return 0.0; }
    return b[{{B_INDEX}}];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.y * 64u;
    let col0 = wg.x * 64u;
    let tid = lid.y * 16u + lid.x;
    var acc: array<f32, 16>;
    for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
    for (var k0 = 0u; k0 < K; k0 += 16u) {
        for (var r = 0u; r < 4u; r++) {
            let idx = tid + r * 256u;
            {{A_TILE_LOAD}}
            {{B_TILE_LOAD}}
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) { av[i] = a_tile[kk * 64u + lid.y + 16u * i]; }
            for (var j = 0u; j < 4u; j++) { bv[j] = b_tile[kk * 64u + lid.x + 16u * j]; }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y + 16u * i;
        if (row >= M) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x + 16u * j;
            if (col >= N) { continue; }
            var v = acc[i * 4u + j]{{BIAS}};
            v = {{ACT}};
            {{STORE}}
        }
    }
}
