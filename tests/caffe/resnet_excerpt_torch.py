"""The parameter counts of resnet_excerpt.prototxt as PyTorch (and Caffe) count them, for
tests/suite/caffe_batchnorm.rs: the same network in torch.nn (bias-free convolutions, each
followed by a BatchNorm2d, whose weight and bias Caffe keeps in a Scale layer), counted.
Run with /work/torchenv/bin/python resnet_excerpt_torch.py; prints the figures the test checks."""
import torch.nn as nn


def cbn(i, o, k, s=1, p=0):
    return [nn.Conv2d(i, o, k, s, p, bias=False), nn.BatchNorm2d(o)]


stem = nn.Sequential(*cbn(3, 16, 3, p=1), nn.ReLU())
res2a = nn.Sequential(*cbn(16, 16, 3, p=1), nn.ReLU(), *cbn(16, 16, 3, p=1))
res3a_branch1 = nn.Sequential(*cbn(16, 32, 1, s=2))
res3a = nn.Sequential(*cbn(16, 32, 3, s=2, p=1), nn.ReLU(), *cbn(32, 32, 3, p=1))
fc = nn.Linear(32, 10)
net = nn.ModuleList([stem, res2a, res3a_branch1, res3a, fc])
params = sum(p.numel() for p in net.parameters())
buffers = sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked"))
bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
# Caffe: a BatchNorm holds mean, variance and a 1-value scale factor; its Scale gamma and beta.
caffe = params + buffers + len(bns)
print(f"pytorch parameters {params}, running statistics {buffers}, caffe blobs {caffe}")
