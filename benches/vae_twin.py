#!/usr/bin/env python3
"""The PyTorch twin of models/vae.net: pytorch/examples' VAE (vae/main.py) for MNIST with the
same network, loss, data, batch and optimizer, timed per epoch on the CPU, to set beside
`netc train models/vae.net --device cpu --data-dir DIR` (docs/generative.md).

    python3 benches/vae_twin.py --data-dir /work/shared/data/mnist --epochs 10

The network: Linear 784->400, ReLU, two Linear 400->20 heads (mean, log-variance),
z = mu + exp(logvar / 2) * eps with eps ~ N(0, I), Linear 20->400, ReLU, Linear 400->784,
sigmoid. The loss per batch is F.binary_cross_entropy(recon, x, reduction='sum') plus
-0.5 * sum(1 + logvar - mu^2 - exp(logvar)), as the example writes it; the step minimises it
divided by the batch (netc minimises the batch mean of the per-image loss: the same gradient
direction, and Adam is invariant to the scale). The test loss is the example's "Test set
loss": the summed loss over the test set divided by its size, the per-image loss netc's epoch
line prints. Pixels are in [0, 1] as netc's IDX reader gives them (the example's ToTensor).

`--init netc` (default) draws the weights as netc's dense layer does (Glorot-uniform, zero
biases); `--init torch` keeps nn.Linear's own (the example's). The layer names are
models/vae.net's, so a netc checkpoint loads into this module (`--weights`) and the other way.
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


def idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    _, _, _, dims = struct.unpack(">BBBB", data[:4])
    shape = struct.unpack(">" + "I" * dims, data[4:4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(d, split):
    name = next(os.path.join(d, f) for f in sorted(os.listdir(d)) if f.startswith(f"{split}-images"))
    x = idx(name).astype(np.float32) / 255.0
    return torch.from_numpy(x.reshape(len(x), 784))


class VAE(nn.Module):
    def __init__(self, init="netc"):
        super().__init__()
        self.hidden = nn.Linear(784, 400)
        self.mu = nn.Linear(400, 20)
        self.logvar = nn.Linear(400, 20)
        self.decoded = nn.Linear(20, 400)
        self.recon = nn.Linear(400, 784)
        if init == "netc":
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)

    def forward(self, x, eps):
        h = F.relu(self.hidden(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * eps
        return torch.sigmoid(self.recon(F.relu(self.decoded(z)))), mu, logvar


def loss_sum(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="/work/shared/data/mnist")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", choices=["netc", "torch"], default="netc")
    ap.add_argument("--samples", help="write 10,000 decoded prior draws here as an (N, 1, 28, 28) .npy")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, test = load(args.data_dir, "train"), load(args.data_dir, "t10k")
    model = VAE(args.init)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        order = torch.randperm(len(train))
        total, steps = 0.0, len(train) // args.batch  # netc drops the last partial batch too
        for b in range(steps):
            x = train[order[b * args.batch:(b + 1) * args.batch]]
            recon, mu, logvar = model(x, torch.randn(len(x), 20))
            loss = loss_sum(recon, x, mu, logvar) / len(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        train_time = time.time() - t0
        model.eval()
        with torch.no_grad():
            test_loss = 0.0
            for i in range(0, len(test), 1000):
                x = test[i:i + 1000]
                recon, mu, logvar = model(x, torch.randn(len(x), 20))
                test_loss += loss_sum(recon, x, mu, logvar).item()
            test_loss /= len(test)
        print(f"epoch {epoch}/{args.epochs}: train loss {total / steps:.4f} | test loss {test_loss:.4f}"
              f" | {train_time:.1f} s training, {time.time() - t0:.1f} s with the test pass", flush=True)
    if args.samples:
        with torch.no_grad():
            z = torch.randn(10000, 20)
            x = torch.sigmoid(model.recon(F.relu(model.decoded(z))))
        np.save(args.samples, x.reshape(-1, 1, 28, 28).numpy().astype(np.float32))
        print(f"wrote 10000 samples to {args.samples}")


if __name__ == "__main__":
    main()
