// The squared L2 norm of each of a group of gradients, one workgroup per gradient: its 64
// invocations stride over the quads, then add their sums in a fixed tree, so the result does
// not depend on scheduling. Writes sumsq[BASE + tensor]; the update kernels add the slots and
// scale the gradients (clip_grad_norm_). Placeholders: DECLS, BASE, BODY.
{{DECLS}}
var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    var s = 0.0;
{{BODY}}
    part[li] = s;
    workgroupBarrier();
    for (var w = 32u; w > 0u; w = w >> 1u) {
        if (li < w) {
            part[li] = part[li] + part[li + w];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        sumsq[{{BASE}}u + wid.x] = part[0];
    }
}
