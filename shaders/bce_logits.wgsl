// Binary cross-entropy from logits, numerically stable, with the batch statistics in the same
// dispatch (see softmax_xent.wgsl): loss = max(z, 0) - z * t + log(1 + exp(-|z|)),
// dz = SCALE * (sigmoid(z) - t), correct = (z > 0) == (t > 0.5) (also counted as top5).
// One workgroup; add_stats (loss_stats.wgsl) adds the batch's sums to acc.
const ROWS: u32 = {{ROWS}}u;
const SCALE: f32 = {{SCALE}};
// Bindings: z, t, dz, acc.
{{READS}}

{{STATS}}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    var sums = vec4<f32>(0.0);
    for (var r = lid; r < ROWS; r += 64u) {
        let x = rd_z(r);
        let y = rd_t(r);
        let s = select(exp(x) / (1.0 + exp(x)), 1.0 / (1.0 + exp(-x)), x >= 0.0);
        dz[r] = SCALE * (s - y);
        let correct = select(0.0, 1.0, (x > 0.0) == (y > 0.5));
        sums += vec4<f32>(max(x, 0.0) - x * y + log(1.0 + exp(-abs(x))), correct, correct, 1.0);
    }
    add_stats(lid, sums);
}
