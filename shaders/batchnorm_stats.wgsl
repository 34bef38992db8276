// batchnorm's statistics, one invocation per channel c of N examples x C channels x P pixels.
// Training: the batch mean and biased variance (two passes, as the CPU reference), saved as
// [mean, 1/sqrt(var + EPS)] per channel, and the running statistics moved by MOMENTUM (the
// variance unbiased). Evaluation: the running statistics, saved the same way. BODY is one or
// the other.
{{CONSTS}}
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.y * ROW + gid.x;
    if (c >= LEN) { return; }
    {{BODY}}
}
