#!/usr/bin/env python3
"""PyTorch twin of models/gpt_char.net (and models/gpt_small.net with --small): a
character-level GPT with nanoGPT's structure and recipe, trained on the same split of the
same text, evaluated the same way, so its validation loss and step time can be set beside
`netc train`'s.

- data: the text's distinct characters sorted (the vocabulary), the last 10% held out
  (n - round(0.1 n) characters for training), random windows of `block` each step;
- model: token embedding tied to the output head, learned positions, pre-LN blocks (causal
  self-attention, GELU MLP 4x wide), biases everywhere, a final LayerNorm; weights N(0, 0.02),
  biases 0, the residual projections N(0, 0.02 / sqrt(2 x layers));
- recipe: AdamW (betas 0.9, 0.99; weight decay 0.1 on tensors of rank >= 2), netc's
  warmup_cosine (lr (t+1)/(w+1) for t < w, then cosine to min_lr at the last step), gradient
  norm clipped to 1;
- validation loss: the mean cross-entropy over every held-out character after the first,
  read in non-overlapping windows of `block` (the last one padded), as netc computes it.

Prints one JSON line: parameters, the mean training step time (evaluations excluded), the
validation losses, and the sampling speed of nanoGPT's generate loop (the window recomputed
for each character).
    /work/torchenv/bin/python benches/gpt_twin.py --steps 2000
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, dropout):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.fc_proj = nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def attention(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        shape = (b, t, self.heads, c // self.heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        p = self.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))

    def forward(self, x):
        x = x + self.attention(self.ln1(x))
        return x + self.drop(self.fc_proj(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    def __init__(self, vocab, block, dim, heads, layers, dropout):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(t, device=idx.device)))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()


def lr_at(t, total, lr, warmup, min_lr):
    """netc's warmup_cosine (compiler/src/train_config/mod.rs, Schedule::step_lr)."""
    if t < warmup:
        return lr * (t + 1) / (warmup + 1)
    span = total - 1 - warmup
    r = 1.0 if span <= 0 else min((t - warmup) / span, 1.0)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * r))


def validation_loss(model, held, block, rows=64):
    model.eval()
    total, count = 0.0, 0
    targets = len(held) - 1
    starts = list(range(0, targets, block))
    with torch.no_grad():
        for i in range(0, len(starts), rows):
            xs, ys = [], []
            for s in starts[i : i + rows]:
                span = held[s : s + block + 1]
                x = torch.zeros(block, dtype=torch.long)
                y = torch.full((block,), -100, dtype=torch.long)
                x[: len(span) - 1] = span[:-1]
                y[: len(span) - 1] = span[1:]
                xs.append(x)
                ys.append(y)
            logits = model(torch.stack(xs))
            y = torch.stack(ys)
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            count += int((y != -100).sum())
    model.train()
    return total / count


def sample_speed(model, block, tokens, seed):
    """nanoGPT's generate: the last `block` characters forwarded for each new one."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    idx = torch.zeros((1, 1), dtype=torch.long)
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(tokens):
            logits = model(idx[:, -block:])[:, -1, :] / 0.8
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=g)
            idx = torch.cat((idx, nxt), dim=1)
    return tokens / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", default="../shared/data/shakespeare/shakespeare.txt")
    ap.add_argument("--small", action="store_true", help="gpt_small's recipe")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--sample", type=int, default=200, help="characters to time sampling on")
    ap.add_argument("--count-only", action="store_true", help="print the parameter count")
    ap.add_argument("--sample-only", action="store_true", help="time sampling alone")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--time-only",
        action="store_true",
        help="time the steps alone (no evaluation, no sampling), the first 5 left out",
    )
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.small:
        block, dim, heads, layers, dropout, batch, steps, vocab = 256, 384, 6, 6, 0.2, 64, 5000, 84
    else:
        block, dim, heads, layers, dropout, batch, steps, vocab = 64, 128, 4, 4, 0.0, 12, 2000, 84
    steps = a.steps or steps
    if a.count_only:
        model = GPT(vocab, block, dim, heads, layers, dropout)
        print(sum(p.numel() for p in model.parameters()))
        return
    if a.sample_only:
        # The sampling loop's speed does not depend on the weights.
        model = GPT(vocab, block, dim, heads, layers, dropout)
        tps = sample_speed(model, block, a.sample, a.seed)
        print(json.dumps({"sample_tokens_per_second": tps, "tokens": a.sample}))
        return
    text = open(a.text, encoding="utf-8").read()
    chars = sorted(set(text))
    vocab = len(chars)
    lut = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([lut[c] for c in text], dtype=torch.long)
    n = len(ids)
    cut = n - round(n * 0.1)
    train, held = ids[:cut], ids[cut:]
    model = GPT(vocab, block, dim, heads, layers, dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
    )
    step_time, vals = 0.0, []
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(t, steps, 1e-3, 100, 1e-4)
        t0 = time.perf_counter()
        ix = torch.randint(len(train) - block, (batch,))
        x = torch.stack([train[i : i + block] for i in ix])
        y = torch.stack([train[i + 1 : i + 1 + block] for i in ix])
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not a.time_only or t >= 5:
            step_time += time.perf_counter() - t0
        if a.time_only:
            continue
        if (t + 1) % a.eval_every == 0 or t + 1 == steps:
            vals.append((t + 1, validation_loss(model, held, block)))
            print(f"step {t + 1}: train loss {loss.item():.4f} val loss {vals[-1][1]:.4f}", flush=True)
    if a.time_only:
        timed = steps - 5
        print(json.dumps({"steps_timed": timed, "step_ms": 1000 * step_time / timed}))
        return
    print(
        json.dumps(
            {
                "parameters": sum(p.numel() for p in model.parameters()),
                "steps": steps,
                "step_ms": 1000 * step_time / steps,
                "tokens_per_second": steps * batch * block / step_time,
                "val_loss": vals,
                "sample_tokens_per_second": sample_speed(model, block, a.sample, a.seed),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
