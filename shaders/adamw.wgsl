// AdamW (Loshchilov & Hutter) in torch.optim.AdamW's order: the decoupled decay
// w *= 1 - lr * WD first, then the Adam step of shaders/adam.wgsl on the gradient alone.
// h = hyper = [lr, 1 / (1 - beta1^t), 1 / (1 - beta2^t)].
let grad = g;
let mi = BETA1 * m + (1.0 - BETA1) * grad;
let vi = BETA2 * v + (1.0 - BETA2) * grad * grad;
m_out[i] = mi;
v_out[i] = vi;
let mhat = mi * h.y;
let vhat = vi * h.z;
w_out[i] = w * (1.0 - h.x * WD) - h.x * mhat / (sqrt(vhat) + EPS);
