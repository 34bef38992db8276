// Softmax cross-entropy from logits, numerically stable (log-sum-exp, no log(0)).
// Per row: loss = logsumexp(z) - sum(t * z) (t sums to 1), dz = SCALE * (softmax(z) - t),
// correct = argmax(z) == argmax(t), top5 = fewer than 5 logits above the target's. One thread per row.
const ROWS: u32 = {{ROWS}}u;
const C: u32 = {{C}}u;
const SCALE: f32 = {{SCALE}};
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> dz: array<f32>;
@group(0) @binding(3) var<storage, read_write> row_stats: array<f32>; // [ROWS loss, ROWS correct, ROWS top5]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= ROWS) { return; }
    let o = r * C;
    var zmax = z[o];
    var arg_z = 0u;
    var tmax = t[o];
    var arg_t = 0u;
    for (var j = 1u; j < C; j++) {
        if (z[o + j] > zmax) { zmax = z[o + j]; arg_z = j; }
        if (t[o + j] > tmax) { tmax = t[o + j]; arg_t = j; }
    }
    var sum = 0.0;
    for (var j = 0u; j < C; j++) { sum += exp(z[o + j] - zmax); }
    let lse = zmax + log(sum);
    var loss = 0.0;
    for (var j = 0u; j < C; j++) {
        loss += t[o + j] * (lse - z[o + j]);
        dz[o + j] = SCALE * (exp(z[o + j] - lse) - t[o + j]);
    }
    row_stats[r] = loss;
    row_stats[ROWS + r] = select(0.0, 1.0, arg_z == arg_t);
    var above = 0u;
    for (var j = 0u; j < C; j++) {
        if (z[o + j] > z[o + arg_t]) { above++; }
    }
    row_stats[2u * ROWS + r] = select(0.0, 1.0, above < 5u);
}
