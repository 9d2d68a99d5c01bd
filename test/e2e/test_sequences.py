#!/usr/bin/env python3
"""ONNX sequences as exporters write them (compiler/sequence.c): torch.split through the dynamo exporter
without its optimizer is SplitToSequence(x, split, axis, keepdims) read by SequenceAt at constant
positions. Small models written here with onnx.helper, each compiled (1 and 2 stages, 2 microbatches),
run with pippyrun and compared element-wise with onnxruntime: a chunk size that leaves a shorter last
part, a list of sizes, no split (one element per part) with and without keepdims, and negative
positions. A sequence used otherwise (a graph output, another reader) is refused by name.

usage: test_sequences.py BUILD_DIR"""

import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import Results, build_dir, ort_run, run, tail, tmpdir

F = TensorProto.FLOAT
SEQ = onnx.helper.make_tensor_sequence_value_info


def const(name, value):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.int64)))


def model(split, positions, keepdims=1, axis=2, parts_out=None):
    """x [B,3,10] -> SplitToSequence along `axis` -> SequenceAt at each position -> each part * (k + 1), then
    Concat of the parts along the axis (or, when keepdims=0 drops it, along a new one via Unsqueeze)."""
    nodes, inits = [], []
    ins = ["x"]
    if split is not None:
        nodes.append(const("split", split))
        ins.append("split")
    nodes.append(helper.make_node("SplitToSequence", ins, ["seq"], axis=axis, keepdims=keepdims, name="/split"))
    outs = []
    for k, p in enumerate(positions):
        nodes += [const(f"p{k}", p), helper.make_node("SequenceAt", ["seq", f"p{k}"], [f"part{k}"], name=f"/at{k}"),
                  helper.make_node("Mul", [f"part{k}", f"s{k}"], [f"m{k}"], name=f"/mul{k}")]
        inits.append(numpy_helper.from_array(np.array(k + 1.0, np.float32), f"s{k}"))
        if not keepdims:
            nodes.append(helper.make_node("Unsqueeze", [f"m{k}", "ax"], [f"u{k}"], name=f"/unsq{k}"))
        outs.append(f"u{k}" if not keepdims else f"m{k}")
    if not keepdims:
        inits.append(numpy_helper.from_array(np.array([axis], np.int64), "ax"))
    nodes.append(helper.make_node("Concat", outs, ["y"], axis=axis, name="/cat"))
    g = helper.make_graph(nodes, "seq", [helper.make_tensor_value_info("x", F, ["batch", 3, 10])],
                          [helper.make_tensor_value_info("y", F, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("sequences")
    work = tmpdir("pippy-seq-")
    x = np.random.RandomState(3).randn(4, 3, 10).astype(np.float32)
    np.save(os.path.join(work, "x.npy"), x)
    cases = [
        ("chunks of 4 along axis 2 (parts 4, 4, 2)", model(4, [0, 1, 2])),
        ("chunks of 4, negative positions (-1, -3)", model(4, [-1, -3])),
        ("sizes [3, 5, 2], parts taken out of order", model([3, 5, 2], [2, 0, 1])),
        ("no split, keepdims=1: one element per part", model(None, [0, 9, -2])),
        ("no split, keepdims=0: the axis dropped (a Gather)", model(None, [1, -1, 4], keepdims=0)),
        ("chunks of 2 along axis 1 (parts 2, 1)", model(2, [1, 0], axis=1)),
    ]
    for label, m in cases:
        path = os.path.join(work, "m.onnx")
        onnx.save(m, path)
        want = ort_run(m, {"x": x})
        for stages in (1, 2):
            out = os.path.join(work, "out")
            shutil.rmtree(out, ignore_errors=True)
            name = f"{label}, {stages} stage(s)"
            code, text = run([pippyc, path, "--batch", "4", "--microbatches", "2", "--stages", str(stages), "-o", out,
                              "-q"], timeout=300)
            if code == 0:
                code, text = run([pippyrun, out, "--timeout", "60", "--input", f"x={work}/x.npy", "--output",
                                  f"y={work}/y.npy"], timeout=300)
            if code != 0:
                res.check(name, False, tail(text))
                continue
            got = np.load(os.path.join(work, "y.npy"))
            ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-6, atol=1e-6)
            res.check(name, ok, f"got {got.shape}, expected {want.shape}; max |diff| "
                      f"{float(np.max(np.abs(got - want))) if got.shape == want.shape else 'n/a'}")
    # refused: a sequence that leaves the graph, and one read by something other than SequenceAt
    bad = model(4, [0])
    bad.graph.output.append(SEQ("seq", F, None))
    onnx.save(bad, os.path.join(work, "bad.onnx"))
    code, text = run([pippyc, os.path.join(work, "bad.onnx"), "--batch", "4", "-o", os.path.join(work, "o2"), "-q"])
    res.check("a sequence that is a graph output: refused by name", code == 1 and "'/split'" in text and
              "graph output" in text, tail(text))
    bad = model(4, [0])
    bad.graph.node.append(helper.make_node("SequenceLength", ["seq"], ["n"], name="/len"))
    bad.graph.output.append(helper.make_tensor_value_info("n", TensorProto.INT64, []))
    onnx.save(bad, os.path.join(work, "bad.onnx"))
    code, text = run([pippyc, os.path.join(work, "bad.onnx"), "--batch", "4", "-o", os.path.join(work, "o3"), "-q"])
    res.check("a sequence read by SequenceLength: refused by name", code == 1 and "'/len'" in text and
              "SequenceAt" in text, tail(text))
    shutil.rmtree(work, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
