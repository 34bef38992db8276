// Adam (Kingma & Ba) with bias correction: the per-element body of an elementwise kernel
// (elementwise.wgsl) over w, g, m, v; h = hyper = [lr, 1 / (1 - beta1^t), 1 / (1 - beta2^t)]
// per step: the corrections are products, the expression the CPU reference computes.
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= lr * (m / c1) / (sqrt(v / c2) + eps).
let grad = g + WD * w;
let mi = BETA1 * m + (1.0 - BETA1) * grad;
let vi = BETA2 * v + (1.0 - BETA2) * grad * grad;
m_out[i] = mi;
v_out[i] = vi;
let mhat = mi * h.y;
let vhat = vi * h.z;
w_out[i] = w - h.x * mhat / (sqrt(vhat) + EPS);
