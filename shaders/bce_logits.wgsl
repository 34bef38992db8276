// Binary cross-entropy from logits, numerically stable:
// loss = max(z, 0) - z * t + log(1 + exp(-|z|)), dz = SCALE * (sigmoid(z) - t),
// correct = (z > 0) == (t > 0.5) (also stored as top5). One thread per element.
const ROWS: u32 = {{ROWS}}u;
const SCALE: f32 = {{SCALE}};
// Bindings: z, t, dz, row_stats ([ROWS loss, ROWS correct, ROWS top5]).
{{READS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= ROWS) { return; }
    let x = rd_z(r);
    let y = rd_t(r);
    row_stats[r] = max(x, 0.0) - x * y + log(1.0 + exp(-abs(x)));
    let s = select(exp(x) / (1.0 + exp(x)), 1.0 / (1.0 + exp(-x)), x >= 0.0);
    dz[r] = SCALE * (s - y);
    let correct = select(0.0, 1.0, (x > 0.0) == (y > 0.5));
    row_stats[ROWS + r] = correct;
    row_stats[2u * ROWS + r] = correct;
}
