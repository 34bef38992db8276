#!/usr/bin/env python3
"""The PyTorch twin of models/vit.net: the same network (139,018 parameters), initialisation
family, data, batch and optimizer, timed per epoch on the CPU, to set beside
`netc train models/vit.net --device cpu` (README, "Vision Transformer").

    python3 benches/vit_twin.py --data-dir /usr/share/datasets/fashion-mnist --epochs 5 \
        --weight-decay 0.05 --warmup 0.05

The network: 7x7 patches embedded by Conv2d(1, 64, 7, stride 7), a learned class token and 17
learned positions (normal(0, 0.02)), four pre-LN blocks (LayerNorm, nn.MultiheadAttention with
4 heads, LayerNorm, Linear 64->128, exact GELU, Linear 128->64), a final LayerNorm and a Linear
64->10 on the class token. Linear and conv weights are Glorot-uniform with zero biases, as
netc's defaults (nn.MultiheadAttention's in_proj is Glorot-uniform already). Pixels are scaled
to [0, 1] as netc's IDX reader does. The optimizer is the training section's (Adam 1e-3 by default;
here `--weight-decay 0.05 --warmup 0.05` for models/vit.net's AdamW and warm-up cosine).
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


def load(d, split):
    name = lambda s: next(os.path.join(d, f) for f in os.listdir(d) if f.startswith(s))
    x = idx(name(f"{split}-images")).astype(np.float32) / 255.0
    y = idx(name(f"{split}-labels")).astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, dim=64, patch=7, heads=4, hidden=128, depth=4, classes=10):
        super().__init__()
        self.patches = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (28 // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        t = self.patches(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], 1) + self.pos
        for b in self.blocks:
            t = b(t)
        return self.head(self.norm(t)[:, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--weight-decay", type=float, default=0.0,
                    help="AdamW's decoupled decay on weights of rank >= 2 except cls and pos "
                         "(0: Adam, as the training section without it)")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="fraction of all steps of linear warm-up, then cosine to 0 (0: constant)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    xtr, ytr = load(a.data_dir, "train")
    xte, yte = load(a.data_dir, "t10k")
    model = ViT()
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("cls", "pos")]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in ("cls", "pos"))]
    if a.weight_decay > 0:
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=a.lr)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    total = a.epochs * (len(xtr) // a.batch)
    warm = math.ceil(a.warmup * total - 1e-9)

    def factor(t):
        # netc's warmup_cosine (nanoGPT's get_lr over lr): step t < W (0-based) trains at
        # (t + 1) / (W + 1), step W at 1, then cosine to 0 at the last step.
        if a.warmup <= 0:
            return 1.0
        if t < warm:
            return (t + 1) / (warm + 1)
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / max(1, total - 1 - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        t0 = time.perf_counter()
        seen = 0.0
        for i in range(0, len(xtr) - a.batch + 1, a.batch):
            idx_ = perm[i:i + a.batch]
            loss = F.cross_entropy(model(xtr[idx_]), ytr[idx_])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += loss.item()
        dt = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xte[i:i + 1000]).argmax(1) for i in range(0, len(xte), 1000)])
        acc = (pred == yte).float().mean().item() * 100
        steps = len(xtr) // a.batch
        print(f"epoch {epoch + 1}: train loss {seen / steps:.4f}, test acc {acc:.2f}%, "
              f"{dt:.1f} s ({dt / steps * 1e3:.1f} ms/step)", flush=True)


if __name__ == "__main__":
    main()
