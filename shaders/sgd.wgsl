// SGD with momentum and weight decay, PyTorch's form:
// g' = g + WD * w; v = MOMENTUM * v + g'; w -= lr * v.   hyper = [lr, ...] written by the host.
const LEN: u32 = {{LEN}}u;
const ROW: u32 = {{ROW}}u;
const MOMENTUM: f32 = {{MOMENTUM}};
const WD: f32 = {{WD}};
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read> hyper: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let grad = g[i] + WD * w[i];
    let vel = MOMENTUM * v[i] + grad;
    v[i] = vel;
    w[i] = w[i] - hyper[0] * vel;
}
