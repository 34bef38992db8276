// Softmax cross-entropy from logits, numerically stable (log-sum-exp, no log(0)), with the
// batch statistics in the same dispatch (a dispatch costs more than the reduction on software
// rasterisers). Per row: loss = logsumexp(z) - sum(t * z) (t sums to 1), dz = SCALE *
// (softmax(z) - t), correct = argmax(z) == argmax(t), top5 = fewer than 5 logits above the
// target's. A row whose target is all zero is batch padding: dz = 0 and it adds nothing.
// One workgroup: invocation i takes rows i, i + 64, ...; add_stats (loss_stats.wgsl) adds the
// batch's sums to acc = [loss, correct, top5, rows].
const ROWS: u32 = {{ROWS}}u;
const C: u32 = {{C}}u;
const SCALE: f32 = {{SCALE}};
// Bindings: z, t, dz, acc.
{{READS}}

{{STATS}}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    var sums = vec4<f32>(0.0);
    for (var r = lid; r < ROWS; r += 64u) {
        let o = r * C;
        var zmax = rd_z(o);
        var arg_z = 0u;
        var tmax = rd_t(o);
        var arg_t = 0u;
        for (var j = 1u; j < C; j++) {
            if (rd_z(o + j) > zmax) { zmax = rd_z(o + j); arg_z = j; }
            if (rd_t(o + j) > tmax) { tmax = rd_t(o + j); arg_t = j; }
        }
        let valid = tmax > 0.0;
        var sum = 0.0;
        for (var j = 0u; j < C; j++) { sum += exp(rd_z(o + j) - zmax); }
        let lse = zmax + log(sum);
        var loss = 0.0;
        for (var j = 0u; j < C; j++) {
            loss += rd_t(o + j) * (lse - rd_z(o + j));
            dz[o + j] = select(0.0, SCALE * (exp(rd_z(o + j) - lse) - rd_t(o + j)), valid);
        }
        var above = 0u;
        for (var j = 0u; j < C; j++) {
            if (rd_z(o + j) > rd_z(o + arg_t)) { above++; }
        }
        let row = vec4<f32>(loss, select(0.0, 1.0, arg_z == arg_t), select(0.0, 1.0, above < 5u), 1.0);
        sums += select(vec4<f32>(0.0), row, valid);
    }
    add_stats(lid, sums);
}
