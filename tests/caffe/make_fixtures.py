"""Writes the deploy prototxts netc import's tests read (bvlc_alexnet_deploy.prototxt,
lenet.prototxt), layer for layer as BVLC Caffe publishes them in models/bvlc_alexnet/deploy.prototxt
and examples/mnist/lenet.prototxt. Run from this folder: python3 make_fixtures.py"""


def conv(name, bottom, n, k, filler="", **kw):
    extra = "".join(f"    {a}: {b}\n" for a, b in kw.items())
    return f'''layer {{
  name: "{name}"
  type: "Convolution"
  bottom: "{bottom}"
  top: "{name}"
  param {{
    lr_mult: 1
    decay_mult: 1
  }}
  param {{
    lr_mult: 2
    decay_mult: 0
  }}
  convolution_param {{
    num_output: {n}
{extra}    kernel_size: {k}
{filler}  }}
}}
'''


def relu(name, blob):
    return f'layer {{\n  name: "{name}"\n  type: "ReLU"\n  bottom: "{blob}"\n  top: "{blob}"\n}}\n'


def lrn(name, bottom):
    return f'''layer {{
  name: "{name}"
  type: "LRN"
  bottom: "{bottom}"
  top: "{name}"
  lrn_param {{
    local_size: 5
    alpha: 0.0001
    beta: 0.75
  }}
}}
'''


def pool(name, bottom, k, s):
    return f'''layer {{
  name: "{name}"
  type: "Pooling"
  bottom: "{bottom}"
  top: "{name}"
  pooling_param {{
    pool: MAX
    kernel_size: {k}
    stride: {s}
  }}
}}
'''


def fc(name, bottom, n, filler=""):
    return f'''layer {{
  name: "{name}"
  type: "InnerProduct"
  bottom: "{bottom}"
  top: "{name}"
  param {{
    lr_mult: 1
    decay_mult: 1
  }}
  param {{
    lr_mult: 2
    decay_mult: 0
  }}
  inner_product_param {{
    num_output: {n}
{filler}  }}
}}
'''


def drop(name, blob):
    return f'''layer {{
  name: "{name}"
  type: "Dropout"
  bottom: "{blob}"
  top: "{blob}"
  dropout_param {{
    dropout_ratio: 0.5
  }}
}}
'''


def inp(dims):
    d = " ".join(f"dim: {x}" for x in dims)
    return f'layer {{\n  name: "data"\n  type: "Input"\n  top: "data"\n  input_param {{ shape: {{ {d} }} }}\n}}\n'


def softmax(bottom):
    return f'layer {{\n  name: "prob"\n  type: "Softmax"\n  bottom: "{bottom}"\n  top: "prob"\n}}\n'


a = 'name: "AlexNet"\n' + inp([10, 3, 227, 227])
a += conv("conv1", "data", 96, 11, stride=4) + relu("relu1", "conv1") + lrn("norm1", "conv1") + pool("pool1", "norm1", 3, 2)
a += conv("conv2", "pool1", 256, 5, pad=2, group=2) + relu("relu2", "conv2") + lrn("norm2", "conv2") + pool("pool2", "norm2", 3, 2)
a += conv("conv3", "pool2", 384, 3, pad=1) + relu("relu3", "conv3")
a += conv("conv4", "conv3", 384, 3, pad=1, group=2) + relu("relu4", "conv4")
a += conv("conv5", "conv4", 256, 3, pad=1, group=2) + relu("relu5", "conv5") + pool("pool5", "conv5", 3, 2)
a += fc("fc6", "pool5", 4096) + relu("relu6", "fc6") + drop("drop6", "fc6")
a += fc("fc7", "fc6", 4096) + relu("relu7", "fc7") + drop("drop7", "fc7")
a += fc("fc8", "fc7", 1000) + softmax("fc8")
open("bvlc_alexnet_deploy.prototxt", "w").write(a)

xavier = '''    weight_filler {
      type: "xavier"
    }
    bias_filler {
      type: "constant"
    }
'''
l = 'name: "LeNet"\n' + inp([64, 1, 28, 28])
l += conv("conv1", "data", 20, 5, xavier, stride=1) + pool("pool1", "conv1", 2, 2)
l += conv("conv2", "pool1", 50, 5, xavier, stride=1) + pool("pool2", "conv2", 2, 2)
l += fc("ip1", "pool2", 500, xavier) + relu("relu1", "ip1") + fc("ip2", "ip1", 10, xavier) + softmax("ip2")
open("lenet.prototxt", "w").write(l)
