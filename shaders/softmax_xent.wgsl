// Softmax cross-entropy from logits, numerically stable (log-sum-exp, no log(0)).
// Per row: loss = logsumexp(z) - sum(t * z) (t sums to 1), dz = SCALE * (softmax(z) - t),
// correct = argmax(z) == argmax(t), top5 = fewer than 5 logits above the target's. One thread per row.
const ROWS: u32 = {{ROWS}}u;
const C: u32 = {{C}}u;
const SCALE: f32 = {{SCALE}};
// Bindings: z, t, dz, row_stats ([ROWS loss, ROWS correct, ROWS top5]).
{{READS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= ROWS) { return; }
    let o = r * C;
    var zmax = rd_z(o);
    var arg_z = 0u;
    var tmax = rd_t(o);
    var arg_t = 0u;
    for (var j = 1u; j < C; j++) {
        if (rd_z(o + j) > zmax) { zmax = rd_z(o + j); arg_z = j; }
        if (rd_t(o + j) > tmax) { tmax = rd_t(o + j); arg_t = j; }
    }
    var sum = 0.0;
    for (var j = 0u; j < C; j++) { sum += exp(rd_z(o + j) - zmax); }
    let lse = zmax + log(sum);
    var loss = 0.0;
    for (var j = 0u; j < C; j++) {
        loss += rd_t(o + j) * (lse - rd_z(o + j));
        dz[o + j] = SCALE * (exp(rd_z(o + j) - lse) - rd_t(o + j));
    }
    row_stats[r] = loss;
    row_stats[ROWS + r] = select(0.0, 1.0, arg_z == arg_t);
    var above = 0u;
    for (var j = 0u; j < C; j++) {
        if (rd_z(o + j) > rd_z(o + arg_t)) { above++; }
    }
    row_stats[2u * ROWS + r] = select(0.0, 1.0, above < 5u);
}
