// The batch statistics of a loss kernel (one workgroup of 64 invocations): each invocation's
// partial sums [loss, correct, top5, rows] meet in workgroup memory and invocation 0 adds them,
// in a fixed order so sums are reproducible, to the running sums in `acc`. Called by every
// invocation (it holds a barrier).
var<workgroup> partial: array<vec4<f32>, 64>;

fn add_stats(lid: u32, sums: vec4<f32>) {
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
