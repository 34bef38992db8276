// Binary cross-entropy from logits, numerically stable, with the batch statistics in the same
// dispatch (see softmax_xent.wgsl): loss = max(z, 0) - z * t + log(1 + exp(-|z|)),
// dz = SCALE * (sigmoid(z) - t), correct = (z > 0) == (t > 0.5) (also counted as top5).
// One workgroup; invocation 0 adds the partial sums, in a fixed order, to
// acc = [loss, correct, top5, rows].
const ROWS: u32 = {{ROWS}}u;
const SCALE: f32 = {{SCALE}};
// Bindings: z, t, dz, acc.
{{READS}}

var<workgroup> partial: array<vec4<f32>, 64>;

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
    partial[lid] = sums;
    workgroupBarrier();
    if (lid == 0u) {
        var total = vec4<f32>(0.0);
        for (var i = 0u; i < 64u; i++) { total += partial[i]; }
        let old = rd4_acc(0u);
        acc[0] = old.x + total.x;
        acc[1] = old.y + total.y;
        acc[2] = old.z + total.z;
        acc[3] = old.w + total.w;
    }
}
