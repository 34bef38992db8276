#!/usr/bin/env python3
"""PyTorch's native layernorm and GELU per call on the CPU, on the shapes of
`cargo bench -p netc-runtime --bench prims` (batch 128 x 17 x 64, float32): forward, and
forward plus backward, the median of 50 calls."""
import argparse
import time

import torch
import torch.nn.functional as F

x0 = torch.randn(128, 17, 64)
w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)


def median(v):
    return sorted(v)[len(v) // 2]


def bench(label, f):
    fwd, both, cfwd, cboth = [], [], [], []
    for _ in range(50):
        x = x0.clone().requires_grad_(True)
        t, c = time.perf_counter(), time.process_time()
        y = f(x)
        fwd.append(time.perf_counter() - t)
        cfwd.append(time.process_time() - c)
        dy = torch.ones_like(y)
        t2, c2 = time.perf_counter(), time.process_time()
        y.backward(dy)
        both.append(fwd[-1] + time.perf_counter() - t2)
        cboth.append(cfwd[-1] + time.process_time() - c2)
    print(f"{label}: forward {median(fwd) * 1e3:.3f} ms, forward + backward "
          f"{median(both) * 1e3:.3f} ms (median of 50, batch 128 x 17 x 64, f32, "
          f"{torch.get_num_threads()} threads); CPU time {median(cfwd) * 1e3:.3f} ms, "
          f"{median(cboth) * 1e3:.3f} ms")


ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
if ap.parse_args().threads:
    torch.set_num_threads(ap.parse_args().threads)


bench("F.layer_norm", lambda x: F.layer_norm(x, (64,), w, b))
bench("F.gelu", lambda x: F.gelu(x))
