#!/usr/bin/env python3
"""Make reference inputs and outputs for the sample models (needs only numpy, onnx and onnxruntime).

    python3 samples/make_refdata.py            # every samples/models/*.onnx but the training samples
    python3 samples/make_refdata.py mlp skip

For each model: batch 8, deterministic random inputs, seeded from the model family so that mlp,
mlp_annotated and mlp_meta share inputs, as do gpt_op14 and gpt_op17 (float inputs standard normal, integer
inputs uniform in [0, vocabulary) where the vocabulary is the row count of the embedding table the input
indexes), run through ONNX Runtime (CPUExecutionProvider, one thread, graph optimizations off), written to
samples/models/<name>.data/:

    input_0.pb ...   output_0.pb ...      ONNX TensorProto files named after the graph's inputs/outputs
                                          (the layout of the ONNX backend test data sets)
    input_<name>.npy  output_<name>.npy   the same tensors as .npy, for the README demo

pippy::PipeSplit nodes (which ONNX Runtime does not know) are run as Identity.
"""

import os
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")
BATCH = 8


def runnable(model):
    """Copy of the model with pippy::PipeSplit replaced by Identity."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if n.domain == "pippy" and n.op_type == "PipeSplit":
            n.op_type, n.domain = "Identity", ""
    return m


def index_range(model, input_name):
    """Rows of the initializer that a Gather indexes with `input_name` (the vocabulary size)."""
    inits = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == input_name and n.input[0] in inits:
            return int(inits[n.input[0]].dims[0])
    raise SystemExit("%s: cannot tell the range of integer input %r" % (model.graph.name, input_name))


def make_inputs(name, model):
    # seeded from the model family (mlp, gpt, resnet18, skip), so that variants of one model
    # (mlp / mlp_annotated / mlp_meta, gpt_op14 / gpt_op17) get the same inputs
    rng = np.random.default_rng(zlib.crc32(family(name).encode()))
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = []
        for k, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            elif k == 0:
                shape.append(BATCH)
            else:
                raise SystemExit("%s: input %s has symbolic dimension %d" % (name, vi.name, k))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, index_range(model, vi.name), size=shape).astype(dtype)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def run(name):
    path = os.path.join(MODELS, name + ".onnx")
    model = onnx.load(path)
    feeds = make_inputs(name, model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(runnable(model).SerializeToString(), so, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    outs = sess.run(out_names, feeds)

    d = os.path.join(MODELS, name + ".data")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith((".pb", ".npy")):
            os.remove(os.path.join(d, f))
    for kind, names, arrays in (("input", list(feeds), list(feeds.values())), ("output", out_names, outs)):
        for i, (n, a) in enumerate(zip(names, arrays)):
            with open(os.path.join(d, "%s_%d.pb" % (kind, i)), "wb") as f:
                f.write(numpy_helper.from_array(a, n).SerializeToString())
            np.save(os.path.join(d, "%s_%s.npy" % (kind, safe(n))), a)
    print("%-14s %s -> %s" % (name, ", ".join("%s%s %s" % (k, list(v.shape), v.dtype) for k, v in feeds.items()),
                                ", ".join("%s%s max|y|=%.3g" % (n, list(a.shape), float(np.abs(a).max()))
                                          for n, a in zip(out_names, outs))))


def family(name):
    return name.split("_")[0]


def safe(n):
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in n)


def main(argv):
    # the training samples (those with a <name>.train/ folder) have their own references, from
    # make_train_refs.py
    names = argv or sorted(f[:-5] for f in os.listdir(MODELS)
                           if f.endswith(".onnx") and not os.path.isdir(os.path.join(MODELS, f[:-5] + ".train")))
    for name in names:
        run(name)


if __name__ == "__main__":
    main(sys.argv[1:])
