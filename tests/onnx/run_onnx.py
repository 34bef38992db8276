"""Runs ONNX files netc exported in onnxruntime, after onnx's checker: the independent runtime
the export tests compare netc's CPU executor with (tests/suite/onnx_export.rs).

    python run_onnx.py MANIFEST.json

The manifest lists cases: {"model": path, "inputs": {name: npy}, "outputs": {name: npy},
"weights": {checkpoint name: shape}}.
For each, the model is checked (onnx.checker with full_check: types, and shape inference in
strict mode, which fails where an inferred shape disagrees with the model's value_info), every
node output must have a value_info or be a graph output, the IR version and opset must be 8
and 17, every weight must be an initializer of its checkpoint name and shape, and onnxruntime's outputs are written to the output paths. Any failure exits 1 with
every problem on stderr.
"""

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def check(path, weights=None):
    problems = []
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    if model.ir_version != 8:
        problems.append(f"IR version {model.ir_version}, not 8")
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != 17:
        problems.append(f"opset {opsets}, not 17")
    g = model.graph
    described = {v.name for v in g.value_info} | {o.name for o in g.output}
    for node in g.node:
        for out in node.output:
            if out not in described:
                problems.append(f"tensor `{out}` of node `{node.name}` has no value_info")
        if not node.doc_string:
            problems.append(f"node `{node.name}` has no doc string")
    # Every weight an initializer named as the checkpoint names it, with its shape.
    inits = {t.name: list(t.dims) for t in g.initializer}
    for name, dims in (weights or {}).items():
        if inits.get(name) != dims:
            problems.append(f"weight `{name}` {dims}: initializer {inits.get(name)}")
    # The shapes netc wrote against those onnx infers from the graph alone (the weights as
    # typed inputs: the same shapes, without copying half a gigabyte of VGG weights).
    weights = [
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in g.initializer
    ]
    light = onnx.helper.make_model(
        onnx.helper.make_graph(
            g.node, g.name, list(g.input) + weights, g.output, value_info=g.value_info
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=True)
    ours = {v.name: v for v in list(g.value_info) + list(g.output)}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        mine = ours.get(v.name)
        if mine is None:
            continue
        a = [d.dim_value or d.dim_param for d in mine.type.tensor_type.shape.dim]
        b = [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
        if a != b:
            problems.append(f"`{v.name}`: value_info says {a}, onnx infers {b}")
    return problems


def main():
    cases = json.load(open(sys.argv[1]))
    failed = False
    for case in cases:
        problems = check(case["model"], case.get("weights"))
        if problems:
            failed = True
            print(f"{case['model']}:\n  " + "\n  ".join(problems), file=sys.stderr)
            continue
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(case["model"], opts, providers=["CPUExecutionProvider"])
        feeds = {k: np.load(v) for k, v in case["inputs"].items()}
        names = list(case["outputs"])
        for name, value in zip(names, sess.run(names, feeds)):
            np.save(case["outputs"][name], np.ascontiguousarray(value, dtype=np.float32))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
