#!/usr/bin/env python3
"""The PyTorch twin of models/dcgan.net: the same generator and discriminator, initialisation,
noise, data, batch, optimizers and step as netc's GAN trainer (runtime/src/train/gan.rs and
the CPU executor's d_step/g_step in runtime/src/session/cpu_backend.rs), trained on the CPU
and sampled as `netc sample` draws, to set beside `netc train models/dcgan.net` and score with
`netc score --samples` (docs/generative.md).

    python3 benches/dcgan_twin.py --data-dir /work/shared/data/mnist --steps 2000 --seed 1 \
        --samples 10000 --out dcgan_twin.npy
    netc score --samples dcgan_twin.npy --data-dir /work/shared/data/mnist

The networks, layer by layer (names as in the .net file):
  generator: z (100) -> project Linear(100, 6272, bias=False) -> view 128x7x7 ->
    BatchNorm2d(128) -> ReLU -> up1 ConvTranspose2d(128, 64, 4, 2, 1, bias=False) ->
    BatchNorm2d(64) -> ReLU -> up2 ConvTranspose2d(64, 1, 4, 2, 1) -> tanh (1x28x28).
  discriminator: c1 Conv2d(1, 64, 4, 2, 1) -> LeakyReLU(0.2) -> c2 Conv2d(64, 128, 4, 2, 1,
    bias=False) -> BatchNorm2d(128) -> LeakyReLU(0.2) -> flatten -> logit Linear(6272, 1) ->
    sigmoid (the loss takes the logit, as netc's bce_logits does).
Initialisation as netc's: every dense/conv/conv-transpose weight N(0, 0.02) (`init=`), biases 0
(netc's default bias init), batchnorm gamma 1 and beta 0 (netc's batchnorm defaults; not
PyTorch DCGAN's N(1, 0.02) gamma), running mean 0 and variance 1. Batchnorm eps 1e-5 and
momentum 0.1 (netc's defaults = PyTorch's); training normalises by the batch's biased variance,
the running variance moves towards the unbiased one.

The step (k = 1, D before G): D on a shuffled real batch of 128 and, separately, on 128 fakes
G(z) (two forward passes, each with its own batchnorm statistics, as PyTorch's DCGAN example),
z ~ uniform(-1, 1)^100; loss BCE(D(x), 1) mean + BCE(D(G(z)), 0) mean; G runs in training mode
there (its running statistics move) but gets no gradient. Then G on a fresh noise draw (netc
draws new noise for the G step; the PyTorch example reuses the D step's fakes) through D in
training mode (batch statistics; D's running statistics move, D's weights do not), the
non-saturating loss BCE(D(G(z)), 1) = mean -log D(G(z)). Adam(lr 2e-4, betas (0.5, 0.999),
eps 1e-8, no weight decay) for each network, no schedule, no clipping. Data: the IDX training
images (60,000) scaled to [-1, 1] (netc's `range = [-1, 1]`: -1 + 2 * v / 255), reshuffled each
epoch, the last partial batch dropped (netc's per_epoch = n / batch).

Logs, as netc's train lines: the D and G loss averaged over the log interval, D(x) and D(G(z))
(mean probabilities) of the interval's last D step, and the time per step. Samples: `--samples`
noise draws through G in evaluation mode (batchnorm's running statistics, as netc's `generate`
runs the generator), 500 at a time, mapped from [-1, 1] to [0, 1], written as an
(N, 1, 28, 28) float32 .npy. The random streams (shuffles, noise, initial weights) are
PyTorch's, not netc's, so runs agree in distribution, not value by value.
"""
import argparse
import gzip
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NOISE = 100


def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    _, _, _, dims = struct.unpack(">BBBB", data[:4])
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(d):
    """The training images in [-1, 1]; a folder with only the test split (the shipped sample)
    gives its first 80%, as netc's load_data does for a GAN."""
    names = sorted(os.listdir(d))
    name = next((f for f in names if f.startswith("train-images")), None)
    if name is not None:
        x = idx(os.path.join(d, name))
    else:
        x = idx(os.path.join(d, next(f for f in names if f.startswith("t10k-images"))))
        x = x[:len(x) * 4 // 5]
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return -1.0 + 2.0 * x


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.project = nn.Linear(NOISE, 128 * 7 * 7, bias=False)
        self.project_bn = nn.BatchNorm2d(128, eps=1e-5, momentum=0.1)
        self.up1 = nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False)
        self.up1_bn = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1)
        self.up2 = nn.ConvTranspose2d(64, 1, 4, 2, 1)

    def forward(self, z):
        h = F.relu(self.project_bn(self.project(z).view(-1, 128, 7, 7)))
        h = F.relu(self.up1_bn(self.up1(h)))
        return torch.tanh(self.up2(h))


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 64, 4, 2, 1)
        self.c2 = nn.Conv2d(64, 128, 4, 2, 1, bias=False)
        self.c2_bn = nn.BatchNorm2d(128, eps=1e-5, momentum=0.1)
        self.logit = nn.Linear(128 * 7 * 7, 1)

    def forward(self, x):
        """The logit; D(x) is its sigmoid."""
        h = F.leaky_relu(self.c1(x), 0.2)
        h = F.leaky_relu(self.c2_bn(self.c2(h)), 0.2)
        return self.logit(h.flatten(1))


def netc_init(net):
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def noise(n, g):
    return torch.rand(n, NOISE, generator=g) * 2.0 - 1.0


@torch.no_grad()
def sample(gen, n, seed):
    """n samples in [0, 1], the generator in evaluation mode (running statistics)."""
    gen.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, n, 500):
        out.append(gen(noise(min(500, n - i), g)))
    x = (torch.cat(out) + 1.0) / 2.0
    return x.clamp(0, 1).numpy().astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--steps", type=int, default=2000, help="generator steps (netc's --steps)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--samples", type=int, default=10000, help="samples to write (0: none)")
    ap.add_argument("--out", default="dcgan_twin.npy")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = load(a.data_dir)
    per_epoch = len(x) // a.batch  # the last partial batch is dropped, as netc does
    gen, disc = Generator(), Discriminator()
    netc_init(gen)
    netc_init(disc)
    print("parameters: generator", sum(p.numel() for p in gen.parameters()),
          "discriminator", sum(p.numel() for p in disc.parameters()), "| training images", len(x))
    adam = dict(lr=a.lr, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.0)
    opt_g = torch.optim.Adam(gen.parameters(), **adam)
    opt_d = torch.optim.Adam(disc.parameters(), **adam)
    shuffle = torch.Generator().manual_seed(a.seed)
    zgen = torch.Generator().manual_seed(a.seed ^ 0x5EED)
    ones = torch.ones(a.batch, 1)
    zeros = torch.zeros(a.batch, 1)
    gen.train()
    disc.train()
    order, d_batches = None, 0
    sums = [0.0, 0.0]
    t0 = tw = time.time()
    for step in range(1, a.steps + 1):
        # D step: a real batch and a batch of fakes, one D pass each.
        b = d_batches % per_epoch
        if b == 0:
            order = torch.randperm(len(x), generator=shuffle)
        real = x[order[b * a.batch:(b + 1) * a.batch]]
        d_batches += 1
        with torch.no_grad():
            fake = gen(noise(a.batch, zgen))  # training mode: G's running statistics move
        opt_d.zero_grad()
        lr_, lf = disc(real), disc(fake)
        d_loss = (F.binary_cross_entropy_with_logits(lr_, ones)
                  + F.binary_cross_entropy_with_logits(lf, zeros))
        d_loss.backward()
        opt_d.step()
        # G step: fresh noise, through D in training mode, D's weights left alone.
        opt_g.zero_grad()
        g_loss = F.binary_cross_entropy_with_logits(disc(gen(noise(a.batch, zgen))), ones)
        g_loss.backward()
        opt_g.step()
        sums[0] += d_loss.item()
        sums[1] += g_loss.item()
        if step % a.log_every == 0 or step == a.steps:
            n = (step - 1) % a.log_every + 1
            dx, dgz = torch.sigmoid(lr_).mean().item(), torch.sigmoid(lf).mean().item()
            now = time.time()
            print(f"step {step}/{a.steps}: D loss {sums[0] / n:.4f}, G loss {sums[1] / n:.4f},"
                  f" D(x) {dx:.3f}, D(G(z)) {dgz:.3f}, {(now - tw) / n:.3f} s/step", flush=True)
            sums, tw = [0.0, 0.0], now
    train_s = time.time() - t0
    print(f"trained {a.steps} steps in {train_s:.1f} s: {train_s / a.steps:.3f} s/step mean"
          f" ({a.threads} threads)")
    if a.samples:
        t1 = time.time()
        s = sample(gen, a.samples, a.seed)
        np.save(a.out, s)
        print(f"wrote {a.samples} samples {s.shape} to {a.out} in {time.time() - t1:.1f} s")


if __name__ == "__main__":
    main()
