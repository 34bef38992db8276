"""Writes lenet_train_log.txt and bvlc_alexnet_train_log.txt: the layer-by-layer "Setting up" /
"Top shape" lines Caffe's net.cpp logs when it builds the TRAIN nets of lenet_train_test.prototxt
(batch 64) and bvlc_alexnet_train_val.prototxt (batch 256), in Caffe's glog format. Caffe is not
installable here (Debian bookworm has no caffe-cpu), so the shapes are transcribed from Caffe's
published logs and the papers (LeNet: examples/mnist's tutorial log; AlexNet: 55, 27, 13, 6),
not computed from the prototxt. Run from this folder: python3 make_logs.py"""


def log(fname, net, layers):
    out = [f"I1207 08:00:00.000000  4242 net.cpp:51] Initializing net from parameters: (the TRAIN net of {net})"]
    for t, (name, shapes) in enumerate(layers):
        out.append(f"I1207 08:00:00.{t:06d}  4242 net.cpp:122] Setting up {name}")
        for s in shapes:
            n = 1
            for d in s:
                n *= d
            dims = "".join(f"{d} " for d in s)
            out.append(f"I1207 08:00:00.{t:06d}  4242 net.cpp:129] Top shape: {dims}({n})")
    with open(fname, "w") as f:
        f.write("\n".join(out) + "\n")


B = 64
log("lenet_train_log.txt", "lenet_train_test.prototxt", [
    ("mnist", [(B, 1, 28, 28), (B,)]),
    ("conv1", [(B, 20, 24, 24)]),
    ("pool1", [(B, 20, 12, 12)]),
    ("conv2", [(B, 50, 8, 8)]),
    ("pool2", [(B, 50, 4, 4)]),
    ("ip1", [(B, 500)]),
    ("relu1", [(B, 500)]),
    ("ip2", [(B, 10)]),
    ("loss", [()]),
])
B = 256
a = [("data", [(B, 3, 227, 227), (B,)])]
for name, shape in [
    ("conv1", (96, 55, 55)), ("relu1", (96, 55, 55)), ("norm1", (96, 55, 55)), ("pool1", (96, 27, 27)),
    ("conv2", (256, 27, 27)), ("relu2", (256, 27, 27)), ("norm2", (256, 27, 27)), ("pool2", (256, 13, 13)),
    ("conv3", (384, 13, 13)), ("relu3", (384, 13, 13)), ("conv4", (384, 13, 13)), ("relu4", (384, 13, 13)),
    ("conv5", (256, 13, 13)), ("relu5", (256, 13, 13)), ("pool5", (256, 6, 6)),
    ("fc6", (4096,)), ("relu6", (4096,)), ("drop6", (4096,)),
    ("fc7", (4096,)), ("relu7", (4096,)), ("drop7", (4096,)), ("fc8", (1000,)),
]:
    a.append((name, [(B,) + shape]))
a.append(("loss", [()]))
log("bvlc_alexnet_train_log.txt", "bvlc_alexnet_train_val.prototxt", a)
