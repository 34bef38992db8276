"""Writes tiny.caffemodel and tiny_expected.txt for netc import --weights's test
(tests/suite/caffe_import.rs), with nothing but the standard library: the protobuf wire format
of Caffe's NetParameter (caffe.proto: NetParameter.layer = 100, LayerParameter.name = 1,
.type = 2, .blobs = 7; BlobProto.shape = 7 with BlobShape.dim = 1 packed, .data = 5 packed)
for the network of tiny.prototxt, and the logits Caffe computes for a fixed input, by a
plain-Python forward pass in Caffe's layouts (convolution weights out x in x kh x kw, an
InnerProduct's out x in over the C x H x W flattening).

conv1 is written with the new `shape` field; ip1 with the deprecated num/channels/height/width
(1 x 1 x out x in, as older Caffe files have it), so both blob forms are read.
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
