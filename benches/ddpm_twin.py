#!/usr/bin/env python3
"""The PyTorch twin of models/ddpm.net: the same U-Net (434,401 parameters), initialisation
family, noise schedule, data, batch, optimizer and moving average, trained on the CPU and
sampled with the same DDPM and DDIM steps, to set beside `netc train models/ddpm.net` and
`netc sample` (docs/diffusion.md).

    python3 benches/ddpm_twin.py --data-dir /work/shared/data/mnist --steps 500 \
        --samples 64 --ddim-steps 50 --out ddpm_twin.npy

With `--checkpoint run.pt` a long run saves itself every 500 steps and a second invocation
with the same flags goes on from there, as if never stopped (the random state is saved too).

The network: a 3x3 conv stem to 32 channels; residual blocks (GroupNorm(8) -> SiLU -> 3x3
conv, plus Linear(SiLU(temb_mlp)) per channel, GroupNorm -> SiLU -> 3x3 conv, and a 1x1 conv
shortcut) at 28x28 (32), 14x14 (64) and 7x7 (64), downsampling by 3x3 stride-2 convs,
upsampling by ConvTranspose2d(k=2, s=2) and concatenation with the way down, a GroupNorm ->
SiLU -> 3x3 conv head to one channel. The timestep: DDPM's sinusoidal embedding of width 64,
then Linear 64->128, SiLU, Linear 128->128. Linear and conv weights are Glorot-uniform with
zero biases, as netc's defaults. Pixels in [-1, 1]. Linear betas 1e-4..0.02 over T = 1000,
t uniform, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, MSE on eps; Adam 2e-4, batch 64, EMA 0.999.
Samples are written as an (N, 1, 28, 28) float32 array in [0, 1] that `netc score --samples`
reads.
"""
import argparse
import gzip
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    _, _, _, dims = struct.unpack(">BBBB", data[:4])
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(d):
    names = sorted(os.listdir(d))
    name = next((f for f in names if f.startswith("train-images")), None)
    name = name or next(f for f in names if f.startswith("t10k-images"))
    x = idx(os.path.join(d, name)).astype(np.float32) / 255.0
    return torch.from_numpy(x).unsqueeze(1) * 2 - 1


def embedding(t, width):
    half = width // 2
    f = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - 1))
    a = t.double()[:, None] * f[None]
    return torch.cat([a.sin(), a.cos()], 1).float()


class Res(nn.Module):
    def __init__(self, cin, c):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, c, 3, padding=1)
        self.t = nn.Linear(128, c)
        self.n2, self.c2 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, padding=1)
        self.skip = nn.Conv2d(cin, c, 1)

    def forward(self, x, tm):
        h = self.c1(F.silu(self.n1(x))) + self.t(F.silu(tm))[:, :, None, None]
        return self.c2(F.silu(self.n2(h))) + self.skip(x)


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.tm = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 128))
        self.stem = nn.Conv2d(1, 32, 3, padding=1)
        self.d1, self.down1 = Res(32, 32), nn.Conv2d(32, 32, 3, 2, 1)
        self.d2, self.down2 = Res(32, 64), nn.Conv2d(64, 64, 3, 2, 1)
        self.mid = Res(64, 64)
        self.up2, self.u2 = nn.ConvTranspose2d(64, 64, 2, 2), Res(128, 64)
        self.up1, self.u1 = nn.ConvTranspose2d(64, 32, 2, 2), Res(64, 32)
        self.norm, self.out = nn.GroupNorm(8, 32), nn.Conv2d(32, 1, 3, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x, temb):
        tm = self.tm(temb)
        d1 = self.d1(self.stem(x), tm)
        d2 = self.d2(self.down1(d1), tm)
        mid = self.mid(self.down2(d2), tm)
        u2 = self.u2(torch.cat([self.up2(mid), d2], 1), tm)
        u1 = self.u1(torch.cat([self.up1(u2), d1], 1), tm)
        return self.out(F.silu(self.norm(u1)))


def schedule(T):
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return betas, torch.cumprod(1 - betas, 0)


@torch.no_grad()
def sample(net, n, betas, abar, ddim_steps, seed):
    g = torch.Generator().manual_seed(seed)
    T = len(betas)
    x = torch.randn(n, 1, 28, 28, generator=g).double()
    ts = list(range(T))[::-1] if not ddim_steps else [i * (T // ddim_steps) for i in range(ddim_steps)][::-1]
    for i, t in enumerate(ts):
        eps = net(x.float(), embedding(torch.full((n,), t), 64)).double()
        a = abar[t]
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        last = i + 1 == len(ts)
        if ddim_steps:
            ap = abar[ts[i + 1]] if not last else torch.tensor(1.0, dtype=torch.float64)
            x = ap.sqrt() * x0 + (1 - ap).sqrt() * eps
        else:
            ap = abar[t - 1] if t > 0 else torch.tensor(1.0, dtype=torch.float64)
            mean = betas[t] * ap.sqrt() / (1 - a) * x0 + (1 - ap) * (1 - betas[t]).sqrt() / (1 - a) * x
            var = betas[t] * (1 - ap) / (1 - a)
            x = mean + (0 if last else var.sqrt() * torch.randn(x.shape, generator=g).double())
    return ((x.float() + 1) / 2).clamp(0, 1)


def resume(path, net, ema, opt):
    """The step a saved run reached (0 when there is none), with its weights, average,
    Adam state and random state restored, so the run goes on as if never stopped."""
    if not path or not os.path.exists(path):
        return 0
    st = torch.load(path, weights_only=False)
    net.load_state_dict(st["net"])
    ema.load_state_dict(st["ema"])
    opt.load_state_dict(st["opt"])
    torch.set_rng_state(st["rng"])
    print(f"resumed from {path} at step {st['step']}", flush=True)
    return st["step"]


def save(path, step, net, ema, opt):
    """Written beside the target, then renamed over it: a run killed mid-write keeps the last."""
    st = {"step": step, "net": net.state_dict(), "ema": ema.state_dict(),
          "opt": opt.state_dict(), "rng": torch.get_rng_state()}
    torch.save(st, path + ".tmp")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--samples", type=int, default=0)
    ap.add_argument("--ddim-steps", type=int, default=0, help="0: ancestral DDPM over all T")
    ap.add_argument("--no-ema", action="store_true")
    ap.add_argument("--out", default="ddpm_twin.npy")
    ap.add_argument("--checkpoint", help="resume from this file when it exists, and save to it "
                    "every --save-every steps (the run can then be spread over several sittings)")
    ap.add_argument("--save-every", type=int, default=500)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = load(a.data_dir)
    net = UNet()
    print("parameters:", sum(p.numel() for p in net.parameters()))
    ema = UNet()
    ema.load_state_dict(net.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    betas, abar = schedule(1000)
    start = resume(a.checkpoint, net, ema, opt)
    t0, seen = time.time(), 0.0
    for step in range(start + 1, a.steps + 1):
        idx_ = torch.randint(0, len(x), (a.batch,))
        x0 = x[idx_]
        t = torch.randint(0, 1000, (a.batch,))
        eps = torch.randn_like(x0)
        ab = abar[t].float()[:, None, None, None]
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        loss = F.mse_loss(net(xt, embedding(t, 64)), eps)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.mul_(a.ema).add_(p, alpha=1 - a.ema)
        seen += loss.item()
        if step % a.log_every == 0:
            el = time.time() - t0
            print(f"step {step}: train loss {seen / a.log_every:.4f} | {el / (step - start):.3f} s/step",
                  flush=True)
            seen = 0.0
        if a.checkpoint and (step % a.save_every == 0 or step == a.steps):
            save(a.checkpoint, step, net, ema, opt)
    if a.samples:
        t1 = time.time()
        s = sample(net if a.no_ema else ema, a.samples, betas, abar, a.ddim_steps, a.seed)
        el = time.time() - t1
        print(f"sampled {a.samples} in {el:.1f} s ({el / a.samples:.3f} s per image)")
        np.save(a.out, s.numpy().astype(np.float32))
        print("wrote", a.out)


if __name__ == "__main__":
    main()
