// SGD with momentum and weight decay, PyTorch's form: the per-element body of an elementwise
// kernel (elementwise.wgsl) over w, g, v; h = hyper = [lr, ...] written by the host.
// g' = g + WD * w; v = MOMENTUM * v + g'; w -= lr * v.
let grad = g + WD * w;
let vel = MOMENTUM * v + grad;
v_out[i] = vel;
w_out[i] = w - h.x * vel;
