// Adds the per-row loss, correct and top-5 flags of one batch into running sums
// acc = [loss_sum, correct_sum, top5_sum, rows], so a whole epoch is read back once.
// One invocation adds the rows in order: batches are small, a tree reduction's barriers cost
// more than the additions on software rasterisers, and a fixed order keeps sums reproducible.
// Bindings: row_stats ([ROWS loss, ROWS correct, ROWS top5]), acc.
const ROWS: u32 = {{ROWS}}u;
{{READS}}

@compute @workgroup_size(1)
fn main() {
    var l = 0.0;
    var c = 0.0;
    var t = 0.0;
    for (var r = 0u; r < ROWS; r++) {
        l += rd_row_stats(r);
        c += rd_row_stats(ROWS + r);
        t += rd_row_stats(2u * ROWS + r);
    }
    let old = rd4_acc(0u);
    acc[0] = old.x + l;
    acc[1] = old.y + c;
    acc[2] = old.z + t;
    acc[3] = old.w + f32(ROWS);
}
