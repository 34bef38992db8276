// Adds the per-row loss, correct and top-5 flags of one batch into running sums
// acc = [loss_sum, correct_sum, top5_sum, rows], so a whole epoch is read back once.
// One workgroup; tree reduction in workgroup memory (no float atomics).
const ROWS: u32 = {{ROWS}}u;
@group(0) @binding(0) var<storage, read> row_stats: array<f32>;
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;
var<workgroup> part_loss: array<f32, 256>;
var<workgroup> part_correct: array<f32, 256>;
var<workgroup> part_top5: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var l = 0.0;
    var c = 0.0;
    var t = 0.0;
    for (var r = lid.x; r < ROWS; r += 256u) {
        l += row_stats[r];
        c += row_stats[ROWS + r];
        t += row_stats[2u * ROWS + r];
    }
    part_loss[lid.x] = l;
    part_correct[lid.x] = c;
    part_top5[lid.x] = t;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            part_loss[lid.x] += part_loss[lid.x + s];
            part_correct[lid.x] += part_correct[lid.x + s];
            part_top5[lid.x] += part_top5[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        acc[0] += part_loss[0];
        acc[1] += part_correct[0];
        acc[2] += part_top5[0];
        acc[3] += f32(ROWS);
    }
}
