#!/usr/bin/env python3
"""PyTorch's native layernorm and GELU per call on the CPU, on the shapes of
`cargo bench -p netc-runtime --bench prims` (batch 128 x 17 x 64, float32): forward, and
forward plus backward, the median of 50 calls."""
import time

import torch
import torch.nn.functional as F

x0 = torch.randn(128, 17, 64)
w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)


def median(v):
    return sorted(v)[len(v) // 2]


def bench(label, f):
    fwd, both = [], []
    for _ in range(50):
        x = x0.clone().requires_grad_(True)
        t = time.perf_counter()
        y = f(x)
        fwd.append(time.perf_counter() - t)
        t2 = time.perf_counter()
        y.backward(torch.ones_like(y))
        both.append(fwd[-1] + time.perf_counter() - t2)
    print(f"{label}: forward {median(fwd) * 1e3:.3f} ms, forward + backward "
          f"{median(both) * 1e3:.3f} ms (median of 50, batch 128 x 17 x 64, f32, "
          f"{torch.get_num_threads()} threads)")


bench("F.layer_norm", lambda x: F.layer_norm(x, (64,), w, b))
bench("F.gelu", lambda x: F.gelu(x))
