#!/usr/bin/env python3
"""PyTorch's parameter counts of models/resnet18_cifar.net and models/resnet20_fashion.net, to
set beside `netc check` (tests/suite/generative.rs asserts netc's counts; this script is how
they were obtained).

    python3 benches/resnet_count.py

ResNet-18 is kuangliu/pytorch-cifar's (models/resnet.py): a 3x3 stem of 64, BasicBlocks
[2, 2, 2, 2], 1x1 stride-2 projection shortcuts with BatchNorm2d where the shape changes,
avg_pool2d(4), Linear(512, 10). ResNet-20 is the same block for 1x28x28 inputs: a 3x3 stem of
16, [3, 3, 3] blocks of 16, 32, 64, avg_pool2d(7), Linear(64, 10). Trainable parameters as
`sum(p.numel() for p in model.parameters())`; the BatchNorm running statistics are buffers,
counted apart (netc's `check` counts them in `parameters` and leaves them out of `trainable`).
"""
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != c:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, cin, width, blocks, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width[0])
        layers, c = [], width[0]
        for i, (w, n) in enumerate(zip(width, blocks)):
            for j in range(n):
                layers.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(c, classes)


def counts(m):
    trainable = sum(p.numel() for p in m.parameters())
    running = sum(b.numel() for n, b in m.named_buffers() if not n.endswith("num_batches_tracked"))
    return trainable, running


if __name__ == "__main__":
    for name, m in [
        ("models/resnet18_cifar.net", ResNet(3, [64, 128, 256, 512], [2, 2, 2, 2])),
        ("models/resnet20_fashion.net", ResNet(1, [16, 32, 64], [3, 3, 3])),
    ]:
        t, r = counts(m)
        print(f"{name}: {t:,} trainable parameters, {r:,} running statistics, {t + r:,} in all")
