// Adam (Kingma & Ba) with bias correction; hyper = [lr, 1 - beta1^t, 1 - beta2^t] per step.
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr * (m / c1) / (sqrt(v / c2) + eps).
const LEN: u32 = {{LEN}}u;
const ROW: u32 = {{ROW}}u;
const BETA1: f32 = {{BETA1}};
const BETA2: f32 = {{BETA2}};
const EPS: f32 = {{EPS}};
const WD: f32 = {{WD}};
@group(0) @binding(0) var<storage, read_write> w: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> hyper: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * ROW + gid.x;
    if (i >= LEN) { return; }
    let grad = g[i] + WD * w[i];
    let mi = BETA1 * m[i] + (1.0 - BETA1) * grad;
    let vi = BETA2 * v[i] + (1.0 - BETA2) * grad * grad;
    m[i] = mi;
    v[i] = vi;
    let mhat = mi / hyper[1];
    let vhat = vi / hyper[2];
    w[i] = w[i] - hyper[0] * mhat / (sqrt(vhat) + EPS);
}
