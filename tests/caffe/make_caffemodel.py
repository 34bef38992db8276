"""Writes tiny.caffemodel and tiny_expected.txt for netc import --weights's test
(tests/suite/caffe_import.rs), with nothing but the standard library: the protobuf wire format
of Caffe's NetParameter (caffe.proto: NetParameter.layer = 100, LayerParameter.name = 1,
.type = 2, .blobs = 7; BlobProto.shape = 7 with BlobShape.dim = 1 packed, .data = 5 packed)
for the network of tiny.prototxt, and the logits Caffe computes for a fixed input, by a
plain-Python forward pass in Caffe's layouts (convolution weights out x in x kh x kw, an
InnerProduct's out x in over the C x H x W flattening).

conv1 is written with the new `shape` field; ip1 with the deprecated num/channels/height/width
(1 x 1 x out x in, as older Caffe files have it), so both blob forms are read.

It writes tiny_bn.caffemodel and tiny_bn_expected.txt too, for tiny_bn.prototxt: BatchNorm
blobs as Caffe keeps them (mean and variance sums weighted by moving_average_fraction, and
their total weight, the scale factor, which Caffe divides them by at use), the Scale's gamma
and beta, a BatchNorm without a Scale (gamma 1, beta 0), and the logits of Caffe's TEST-phase
forward pass (use_global_stats): y = gamma (x - mean / f) / sqrt(var / f + eps) + beta.
Run from this folder: python3 make_caffemodel.py"""
import math
import struct


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def ld(num, payload):
    return field(num, 2, varint(len(payload)) + payload)


def blob(shape, data, legacy=False):
    floats = ld(5, b"".join(struct.pack("<f", x) for x in data))
    if legacy:
        dims = [1] * (4 - len(shape)) + list(shape)
        head = b"".join(field(i + 1, 0, varint(d)) for i, d in enumerate(dims))
        return head + floats
    return ld(7, ld(1, b"".join(varint(d) for d in shape))) + floats


def layer(name, ty, blobs):
    return ld(100, ld(1, name.encode()) + ld(2, ty.encode()) + b"".join(ld(7, b) for b in blobs))


def values(n, seed):
    # Exactly representable in f32 steps: k/64 - 0.5 patterns, varied by seed.
    return [((i * 37 + seed * 11) % 64) / 64.0 - 0.5 for i in range(n)]


C, H, W = 1, 6, 6
conv_w = values(2 * 1 * 3 * 3, 1)
conv_b = [0.25, -0.125]
ip_w = values(3 * 2 * 2 * 2, 2)
ip_b = [0.5, -0.5, 0.0]
x = values(C * H * W, 3)

# conv1: 2 x 3x3 -> 2x4x4, relu, 2x2 max pooling stride 2 -> 2x2x2, ip1: 3.
conv = []
for o in range(2):
    for i in range(4):
        for j in range(4):
            s = conv_b[o]
            for di in range(3):
                for dj in range(3):
                    s += conv_w[o * 9 + di * 3 + dj] * x[(i + di) * W + (j + dj)]
            conv.append(max(s, 0.0))
pool = []
for o in range(2):
    for i in range(2):
        for j in range(2):
            pool.append(max(conv[o * 16 + (2 * i + a) * 4 + (2 * j + b)] for a in range(2) for b in range(2)))
logits = [ip_b[k] + sum(ip_w[k * 8 + n] * pool[n] for n in range(8)) for k in range(3)]

net = ld(1, b"tiny")
net += layer("data", "Input", [])
net += layer("conv1", "Convolution", [blob([2, 1, 3, 3], conv_w), blob([2], conv_b)])
net += layer("relu1", "ReLU", [])
net += layer("pool1", "Pooling", [])
net += layer("ip1", "InnerProduct", [blob([3, 8], ip_w, legacy=True), blob([3], ip_b, legacy=True)])
with open("tiny.caffemodel", "wb") as f:
    f.write(net)
with open("tiny_expected.txt", "w") as f:
    f.write("# input (1x6x6), then the logits Caffe computes, by make_caffemodel.py\n")
    f.write(" ".join(repr(v) for v in x) + "\n")
    f.write(" ".join(repr(v) for v in logits) + "\n")
assert all(math.isfinite(v) for v in logits)


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def batchnorm(x, c, mean, var, factor, eps, gamma, beta):
    """Caffe's BatchNorm (global statistics) then Scale, on x of c channels (C x P)."""
    s = 0.0 if factor == 0 else f32(1.0 / factor)
    p = len(x) // c
    out = []
    for ch in range(c):
        m, v = mean[ch] * s, var[ch] * s
        for i in range(p):
            out.append(gamma[ch] * (x[ch * p + i] - m) / math.sqrt(v + eps) + beta[ch])
    return out


# tiny_bn: 2x5x5 -> conv1 (3, 3x3, no bias) 3x3x3 -> bn1 + scale1 -> relu -> ip1 (4) -> bn2 -> ip2 (3)
C, H, W = 2, 5, 5
x = values(C * H * W, 4)
conv_w = values(3 * 2 * 3 * 3, 5)
bn1 = dict(mean=[0.25, -0.5, 0.125], var=[0.75, 1.5, 0.5], factor=0.5, eps=1e-4)
gamma, beta = [1.5, 0.75, -0.5], [0.125, -0.25, 0.5]
ip1_w, ip1_b = values(4 * 27, 6), [0.0625, -0.125, 0.25, 0.0]
bn2 = dict(mean=[0.5, -1.0, 2.0, 0.25], var=[2.0, 3.0, 1.0, 4.0], factor=4.0, eps=1e-5)
ip2_w, ip2_b = values(3 * 4, 7), [0.5, 0.0, -0.5]

conv = []
for o in range(3):
    for i in range(3):
        for j in range(3):
            conv.append(sum(conv_w[((o * C + c) * 3 + di) * 3 + dj] * x[(c * H + i + di) * W + j + dj]
                            for c in range(C) for di in range(3) for dj in range(3)))
h = [max(v, 0.0) for v in batchnorm(conv, 3, bn1["mean"], bn1["var"], bn1["factor"], bn1["eps"], gamma, beta)]
h = [ip1_b[k] + sum(ip1_w[k * 27 + n] * h[n] for n in range(27)) for k in range(4)]
h = batchnorm(h, 4, bn2["mean"], bn2["var"], bn2["factor"], bn2["eps"], [1.0] * 4, [0.0] * 4)
logits = [ip2_b[k] + sum(ip2_w[k * 4 + n] * h[n] for n in range(4)) for k in range(3)]


def stats(bn, legacy=False):
    # What Caffe stores: the statistics times the scale factor, and the factor.
    return [blob([len(bn["mean"])], bn["mean"], legacy), blob([len(bn["var"])], bn["var"], legacy),
            blob([1], [bn["factor"]], legacy)]


net = ld(1, b"tiny_bn")
net += layer("data", "Input", [])
net += layer("conv1", "Convolution", [blob([3, 2, 3, 3], conv_w)])
net += layer("bn1", "BatchNorm", stats(bn1))
net += layer("scale1", "Scale", [blob([3], gamma), blob([3], beta)])
net += layer("relu1", "ReLU", [])
net += layer("ip1", "InnerProduct", [blob([4, 27], ip1_w), blob([4], ip1_b)])
net += layer("bn2", "BatchNorm", stats(bn2, legacy=True))
net += layer("ip2", "InnerProduct", [blob([3, 4], ip2_w), blob([3], ip2_b)])
with open("tiny_bn.caffemodel", "wb") as f:
    f.write(net)
with open("tiny_bn_expected.txt", "w") as f:
    f.write("# input (2x5x5), then the logits Caffe computes, by make_caffemodel.py\n")
    f.write(" ".join(repr(v) for v in x) + "\n")
    f.write(" ".join(repr(v) for v in logits) + "\n")
assert all(math.isfinite(v) for v in logits)


def caffe_pool(x, c, h, w, k, s, pad, kind):
    """Caffe's PoolingLayer::Forward_cpu: the output size rounded up (less one when the last
    window would start past the input and its padding), each window clipped to the input; AVE
    divides by the window's taps inside the input and its padding (hend = min(hstart + k,
    h + pad) before clipping)."""
    def size(f):
        o = -(-(f + 2 * pad - k) // s) + 1
        if pad and (o - 1) * s >= f + pad:
            o -= 1
        return o
    oh, ow = size(h), size(w)
    out = []
    for ch in range(c):
        for ph in range(oh):
            for pw in range(ow):
                hs, ws = ph * s - pad, pw * s - pad
                he, we = min(hs + k, h + pad), min(ws + k, w + pad)
                n = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                taps = [x[(ch * h + i) * w + j] for i in range(hs, he) for j in range(ws, we)]
                out.append(max(taps) if kind == "MAX" else sum(taps) / n)
    return out, oh, ow


def stem_values(n, seed):
    # k/64 - 0.5 without the period of `values` along a 224-wide row (the Rust test computes
    # the same input: ((i * i * 7 + i * 3 + seed * 11) % 61) / 64 - 0.5).
    return [((i * i * 7 + i * 3 + seed * 11) % 61) / 64.0 - 0.5 for i in range(n)]


# stem: 3x224x224 -> conv1 (2, 7x7 s2 pad 3) 2x112x112 -> relu -> pool1 MAX 3/2 2x56x56 ->
# pool2 AVE 3/2 2x28x28 -> ip1 (3). Products of k/64 values summed in float64: exact, as f32.
C, H, W = 3, 224, 224
x = stem_values(C * H * W, 8)
conv_w = values(2 * C * 7 * 7, 9)
conv_b = [0.125, -0.0625]
conv = []
for o in range(2):
    wo = conv_w[o * C * 49:(o + 1) * C * 49]
    for i in range(112):
        for j in range(112):
            acc = conv_b[o]
            for c in range(C):
                for di in range(7):
                    r = 2 * i + di - 3
                    if r < 0 or r >= H:
                        continue
                    row = (c * H + r) * W
                    base = (c * 7 + di) * 7
                    for dj in range(7):
                        q = 2 * j + dj - 3
                        if 0 <= q < W:
                            acc += wo[base + dj] * x[row + q]
            conv.append(max(acc, 0.0))
p1, h1, w1 = caffe_pool(conv, 2, 112, 112, 3, 2, 0, "MAX")
p2, h2, w2 = caffe_pool(p1, 2, h1, w1, 3, 2, 0, "AVE")
assert (h1, w1, h2, w2) == (56, 56, 28, 28)
ip_w = values(3 * len(p2), 10)
ip_b = [0.25, 0.0, -0.25]
logits = [ip_b[k] + sum(ip_w[k * len(p2) + n] * p2[n] for n in range(len(p2))) for k in range(3)]
net = ld(1, b"stem")
net += layer("data", "Input", [])
net += layer("conv1", "Convolution", [blob([2, C, 7, 7], conv_w), blob([2], conv_b)])
net += layer("conv1_relu", "ReLU", [])
net += layer("pool1", "Pooling", [])
net += layer("pool2", "Pooling", [])
net += layer("ip1", "InnerProduct", [blob([3, len(p2)], ip_w), blob([3], ip_b)])
with open("stem.caffemodel", "wb") as f:
    f.write(net)
with open("stem_expected.txt", "w") as f:
    f.write("# the logits Caffe computes for the input ((i * i * 7 + i * 3 + 88) % 61) / 64 - 0.5,\n")
    f.write("# i = 0 .. 3x224x224 in C x H x W order, by make_caffemodel.py\n")
    f.write(" ".join(repr(v) for v in logits) + "\n")
assert all(math.isfinite(v) for v in logits)
