"""Loads a netc checkpoint of models/mlp.net into the equivalent PyTorch module with
load_state_dict(strict=True) and prints its test loss and accuracy on the shipped sample's
held-out split, to set beside `netc eval` of the same checkpoint.

    pip install torch safetensors numpy
    netc train models/mlp.net --device cpu --epochs 1 --out /tmp/run --overwrite
    python3 tests/torch/load_checkpoint.py /tmp/run/checkpoint.safetensors data/mnist-sample
    netc eval models/mlp.net --weights /tmp/run/checkpoint.safetensors --device cpu
"""
import gzip
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class Mlp(nn.Module):
    # models/mlp.net: hidden = dense(128) -> relu; logits = dense(10)
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(784, 128)
        self.logits = nn.Linear(128, 10)

    def forward(self, x):
        return self.logits(F.relu(self.hidden(x)))


ckpt, data = sys.argv[1], sys.argv[2]
tensors = load_file(ckpt)
weights = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
state = {k[len("optimizer."):]: v for k, v in tensors.items() if k.startswith("optimizer.")}
m = Mlp()
m.load_state_dict(weights, strict=True)  # raises on any missing or unexpected name
print(f"load_state_dict(strict=True): {len(weights)} tensors; {len(state)} optimizer tensors "
      f"({sorted({k.rsplit('.', 1)[1] for k in state})})")
with gzip.open(f"{data}/t10k-images-idx3-ubyte.gz") as f:
    X = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 784)
with gzip.open(f"{data}/t10k-labels-idx1-ubyte.gz") as f:
    Y = np.frombuffer(f.read()[8:], np.uint8)
# netc holds out the last 2,000 of a lone test split (pixels / 255).
X = torch.from_numpy(X[8000:].astype(np.float32) / 255.0)
Y = torch.from_numpy(Y[8000:].astype(np.int64))
with torch.no_grad():
    z = m(X)
    loss = F.cross_entropy(z, Y).item()
    top1 = (z.argmax(1) == Y).float().mean().item()
    top5 = (z.topk(5, 1).indices == Y[:, None]).any(1).float().mean().item()
print(f"  loss   {loss:.4f}\n  top-1  {100 * top1:.2f}%\n  top-5  {100 * top5:.2f}%")
