// The optimizer update of one parameter tensor, or of several small ones in one dispatch (a
// dispatch costs more than a small tensor's update on software rasterisers; see
// Builder::update). The tensors' quads are laid end to end:
// invocation `qa` finds its tensor by the segment starts, then runs that tensor's elementwise
// update (see elementwise.wgsl) on its quad `q`. Placeholders: QUADS (all quads), ROW
// (invocations per dispatch row), DECLS (operands and per-tensor LENp), PRELUDE, BODY.
const QUADS: u32 = {{QUADS}}u;
const ROW: u32 = {{ROW}}u;
{{DECLS}}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let qa = gid.y * ROW + gid.x;
    if (qa >= QUADS) { return; }
    {{PRELUDE}}
{{BODY}}
}
