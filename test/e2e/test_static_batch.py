#!/usr/bin/env python3
"""Static-batch exports cut into microbatches (compiler/batch.c).

Small models written here with onnx.helper, each with its batch size baked into a shape constant of
Reshape, Expand, Tile, ConstantOfShape, Range or Slice, the way torch.onnx.export without dynamic_axes
writes them, or into the values of GatherND indices that count the samples or of a constant broadcast
over the batch, the way its dynamo exporter writes them. Each is compiled at several microbatch counts, run with pippyrun (real stage processes)
and compared element-wise with onnxruntime running the unchanged model at its own batch. The cases
pippyc must refuse (a batch size that is also another dim, a Slice of part of the batch, a Reshape that
splits the batch) must fail with a message naming the node, the value and what to do.
(The sample models gpt_op14_static, gpt_op17_static, resnet18_static and mlp_static run in
test_pipeline.py.)

usage: test_static_batch.py BUILD_DIR"""

import os
import re
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common import ROOT, Results, build_dir, ort_run, run, tail, tmpdir

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def ints(name, vals):
    return numpy_helper.from_array(np.array(vals, dtype=np.int64), name)


def model(nodes, x_shape, y_shape, inits=(), name="m"):
    x = helper.make_tensor_value_info("x", F, x_shape)
    y = helper.make_tensor_value_info("y", F, y_shape)
    g = helper.make_graph(nodes, name, [x], [y], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def row(n=16, seed=7):
    return numpy_helper.from_array(np.random.RandomState(seed).randn(1, n).astype(np.float32), "r")


# Each builder takes the batch B and returns the model at that static batch.
def expand_row(B):  # x * Expand(r[1,16], [B,16]): a constant broadcast over the batch
    return model([helper.make_node("Expand", ["r", "s"], ["e"], name="/expand"),
                  helper.make_node("Mul", ["x", "e"], ["y"], name="/mul")],
                 [B, 16], [B, 16], [row(), ints("s", [B, 16])])


def tile_row(B):  # x + Tile(r[1,16], [B,1])
    return model([helper.make_node("Tile", ["r", "rep"], ["t"], name="/tile"),
                  helper.make_node("Add", ["x", "t"], ["y"], name="/add")],
                 [B, 16], [B, 16], [row(), ints("rep", [B, 1])])


def const_of_shape(B):  # x + ConstantOfShape([B,16], 1.5)
    v = helper.make_tensor("v", F, [1], [1.5])
    return model([helper.make_node("ConstantOfShape", ["s"], ["c"], name="/cos", value=v),
                  helper.make_node("Add", ["x", "c"], ["y"], name="/add")],
                 [B, 16], [B, 16], [ints("s", [B, 16])])


def range_model(B, data):
    """Range(0, B, 1), the sample numbers. data=False: x[arange(B) * 16 + 3] of x flattened to [B*16] (indices:
    per microbatch the same rows); data=True: x + float(arange(B))[:, None] (values that depend on a sample's
    place in the whole batch)."""
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(B, np.int64),
              "lim"), numpy_helper.from_array(np.array(1, np.int64), "one"), ints("ax1", [1])]
    if data:
        return model([helper.make_node("Range", ["zero", "lim", "one"], ["r"], name="/range"),
                      helper.make_node("Cast", ["r"], ["rf"], name="/cast", to=F),
                      helper.make_node("Unsqueeze", ["rf", "ax1"], ["ru"], name="/unsq"),
                      helper.make_node("Add", ["x", "ru"], ["y"], name="/add")], [B, 16], [B, 16], consts)
    return model([helper.make_node("Range", ["zero", "lim", "one"], ["r"], name="/range"),
                  helper.make_node("Mul", ["r", "sixteen"], ["r16"], name="/mul"),
                  helper.make_node("Add", ["r16", "three"], ["idx"], name="/add"),
                  helper.make_node("Flatten", ["x"], ["xf"], name="/flat", axis=0),
                  helper.make_node("Squeeze", ["xf", "ax0"], ["xs"], name="/sq"),
                  helper.make_node("Gather", ["xs", "idx"], ["g"], name="/gather", axis=0),
                  helper.make_node("Unsqueeze", ["g", "ax1"], ["y"], name="/unsq")], [B, 16], [B, 1],
                 consts + [ints("sixteen", 16), ints("three", 3), ints("ax0", [0])])


def slice_rows(B, end):  # Slice(x, [0], [end], axes=[0]) * 2
    return model([helper.make_node("Slice", ["x", "st", "en", "ax"], ["s"], name="/slice"),
                  helper.make_node("Mul", ["s", "two"], ["y"], name="/mul")],
                 [B, 16], [end, 16], [ints("st", [0]), ints("en", [end]), ints("ax", [0]),
                                      numpy_helper.from_array(np.array(2.0, np.float32), "two")])


def reshape_chain(B):
    """x[B,4,6] -> Transpose -> [4,B,6] -> Reshape [4B,6] -> Relu -> Reshape [4,B,6] -> Transpose -> [B,4,6]
    -> Reshape [B*24] -> Reshape [B,4,6]: the batch inside merged dims, behind another axis, and (with B=4) the
    same size as another dim."""
    return model([helper.make_node("Transpose", ["x"], ["t"], name="/t1", perm=[1, 0, 2]),
                  helper.make_node("Reshape", ["t", "s1"], ["a"], name="/merge"),
                  helper.make_node("Relu", ["a"], ["b"], name="/relu"),
                  helper.make_node("Reshape", ["b", "s2"], ["c"], name="/unmerge"),
                  helper.make_node("Transpose", ["c"], ["d"], name="/t2", perm=[1, 0, 2]),
                  helper.make_node("Reshape", ["d", "s3"], ["e"], name="/flat"),
                  helper.make_node("Reshape", ["e", "s4"], ["y"], name="/unflat")],
                 [B, 4, 6], [B, 4, 6], [ints("s1", [4 * B, 6]), ints("s2", [4, B, 6]), ints("s3", [B * 24]),
                                        ints("s4", [B, 4, 6])])


def batch1_model(B=1):
    """Exported with batch 1: x[1,1,16] + Expand(r, [1,1,16]) -> Reshape [1,4,4] -> Relu -> Reshape [1,16]."""
    r = numpy_helper.from_array(np.random.RandomState(1).randn(1, 1, 16).astype(np.float32), "r")
    return model([helper.make_node("Expand", ["r", "s"], ["e"], name="/expand"),
                  helper.make_node("Add", ["x", "e"], ["a"], name="/add"),
                  helper.make_node("Reshape", ["a", "s2"], ["b"], name="/square"),
                  helper.make_node("Relu", ["b"], ["c"], name="/relu"),
                  helper.make_node("Reshape", ["c", "s3"], ["y"], name="/flat")],
                 [B, 1, 16], [B, 16], [r, ints("s", [B, 1, 16]), ints("s2", [B, 4, 4]), ints("s3", [B, 16])])


def reshape_split(B):  # [B,16] -> [B/2, 32]: two samples per row
    return model([helper.make_node("Reshape", ["x", "s"], ["y"], name="/pairs")],
                 [B, 16], [B // 2, 32], [ints("s", [B // 2, 32])])


def gather_nd_rows(B, order):  # x + GatherND(x, idx[B,1,2]): sample b's element (order[b], 3) added to its row
    idx = np.array([[[order[b], 3]] for b in range(B)], np.int64)
    return model([helper.make_node("GatherND", ["x", "idx"], ["g"], name="/gathernd"),
                  helper.make_node("Add", ["x", "g"], ["y"], name="/add")],
                 [B, 16], [B, 16], [numpy_helper.from_array(idx, "idx")])


def concat_token(B):  # Concat(t[B,1,16] with equal rows, x[B,3,16]) on axis 1: a class token folded by the exporter
    t = np.repeat(np.random.RandomState(5).randn(1, 1, 16).astype(np.float32), B, axis=0)
    return model([helper.make_node("Concat", ["tok", "x"], ["y"], name="/cat", axis=1)],
                 [B, 3, 16], [B, 4, 16], [numpy_helper.from_array(t, "tok")])


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("static-batch")
    work = tmpdir("pippy-batch-")
    port = 33000
    refcheck = os.path.join(ROOT, "test/e2e/refcheck.py")

    def compile_run(label, m, B, M, stages=1, extra=(), expect_rewrites=None):
        nonlocal port
        port += 8
        path = os.path.join(work, label.replace(" ", "_").replace("/", "_") + ".onnx")
        onnx.save(m, path)
        out = os.path.join(work, "out")
        shutil.rmtree(out, ignore_errors=True)
        code, text = run([pippyc, path, "--batch", str(B), "--microbatches", str(M), "--stages", str(stages),
                          "--port", str(port), "-o", out] + list(extra), timeout=300)
        if code != 0:
            res.check(label, False, "pippyc failed:\n        " + tail(text))
            return
        if expect_rewrites is not None:
            got = re.search(r"static batch \d+: %d shape constants? rewritten" % expect_rewrites, text) \
                if expect_rewrites else "static batch" not in text
            if not got:
                res.check(label, False, f"expected {expect_rewrites} rewrites:\n        " + tail(text))
                return
        shape = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
        exported = shape[0]
        x = np.random.RandomState(B + M).randn(B, *shape[1:]).astype(np.float32)
        np.save(os.path.join(work, "x.npy"), x)
        # the reference: onnxruntime on the unchanged model at the batch it was exported with
        ref = np.concatenate([ort_run(m, {"x": x[i:i + exported]}) for i in range(0, B, exported)])
        np.save(os.path.join(work, "ref.npy"), ref)
        code, text = run([pippyrun, out, "--timeout", "60", "--input", f"x={work}/x.npy",
                          "--output", f"y={work}/y.npy"], timeout=300)
        if code != 0:
            res.check(label, False, f"pippyrun exited {code}:\n        " + tail(text))
            return
        code, text = run([sys.executable, refcheck, f"{work}/ref.npy", f"{work}/y.npy", "--rtol", "1e-6",
                          "--atol", "1e-6"])
        res.check(label, code == 0, tail(text))

    def refused(label, m, B, M, needles, extra=()):
        path = os.path.join(work, "refused.onnx")
        onnx.save(m, path)
        code, text = run([pippyc, path, "--batch", str(B), "--microbatches", str(M), "-o",
                          os.path.join(work, "out_bad"), "--emit-only"] + list(extra))
        missing = [n for n in needles if n not in text]
        res.check(f"{label}: exit {code}, names {needles}", code in (1, 2) and not missing and "error" in text,
                  tail(text))

    for M in (2, 4):
        compile_run(f"Expand of a constant to [8,16], microbatches {M}", expand_row(8), 8, M, expect_rewrites=1)
        compile_run(f"Tile of a constant by [8,1], microbatches {M}", tile_row(8), 8, M, expect_rewrites=1)
        compile_run(f"ConstantOfShape [8,16], microbatches {M}", const_of_shape(8), 8, M, expect_rewrites=1)
        compile_run(f"Range(0, 8, 1) as Gather indices, microbatches {M}", range_model(8, False), 8, M,
                    expect_rewrites=1)
        compile_run(f"Slice of all of the batch, microbatches {M}", slice_rows(8, 8), 8, M, expect_rewrites=0)
    compile_run("Reshapes with the batch merged into other dims and behind another axis, batch 8, 4 microbatches",
                reshape_chain(8), 8, 4, expect_rewrites=4)
    compile_run("the same with batch 4 (as large as another dim), 2 microbatches, 2 stages", reshape_chain(4), 4, 2,
                stages=2, expect_rewrites=4)
    compile_run("exported with batch 1, compiled for batch 8 in 4 microbatches", batch1_model(), 8, 4,
                expect_rewrites=2)
    compile_run("Reshape [8,16] -> [4,32]: 1 microbatch compiles unchanged", reshape_split(8), 8, 1,
                expect_rewrites=0)
    # the exporter's static (dynamo) forms: GatherND indices that count the samples (each picks from its own
    # row: the first mb slices are the microbatch's), and a constant broadcast over the batch (a folded class token)
    compile_run("GatherND indices [8,1,2] counting the samples, 4 microbatches", gather_nd_rows(8, list(range(8))), 8, 4,
                expect_rewrites=1)
    compile_run("a constant [8,1,16] of 8 equal slices concatenated to x, 2 microbatches", concat_token(8), 8, 2,
                expect_rewrites=1)
    refused("GatherND indices where each sample picks another's row", gather_nd_rows(8, [7 - b for b in range(8)]),
            8, 2, ["'idx'", "int64[8,1,2]", "'/gathernd'", "dynamic_shapes", "--microbatches 1"])
    # the batch size is also another dim: pippyc must ask, and --batch-dims answers
    refused("Expand to [16,16] with batch 16: ambiguous", expand_row(16), 16, 4,
            ["'/expand'", "[16,16]", "16", "--batch-dims '/expand=K'", "dynamic_axes"])
    compile_run("the same with --batch-dims /expand=0", expand_row(16), 16, 4, extra=["--batch-dims", "/expand=0"],
                expect_rewrites=1)
    refused("ConstantOfShape [16,16] with batch 16: ambiguous", const_of_shape(16), 16, 2,
            ["'/cos'", "16", "--batch-dims"])
    compile_run("the same with --batch-dims /cos=0", const_of_shape(16), 16, 2, extra=["--batch-dims", "/cos=0"],
                expect_rewrites=1)
    refused("Range(0, 8, 1) added to the data (its values depend on the whole batch)", range_model(8, True), 8, 2,
            ["'/range'", "'/add'", "--batch-dims '/range=K'", "--microbatches 1"])
    refused("an output that is not batch-major (a mean over the batch)",
            model([helper.make_node("ReduceMean", ["x"], ["y"], name="/mean", axes=[0], keepdims=1)], [8, 16], [1, 16]),
            8, 2, ["graph output 'y'", "float[1,16]", "--microbatches 1"])
    refused("Slice of half the batch", slice_rows(8, 4), 8, 2, ["'/slice'", "0..4", "batch"])
    refused("Reshape that splits the batch ([8,16] -> [4,32])", reshape_split(8), 8, 2, ["'/pairs'", "splits the batch"])
    refused("--batch-dims naming no node", expand_row(8), 8, 2, ["'/nope'"], extra=["--batch-dims", "/nope=0"])
    refused("--batch-dims with a bad element", expand_row(8), 8, 2, ["--batch-dims"], extra=["--batch-dims", "/expand=x"])
    refused("--batch-dims at an element that is not the batch", expand_row(8), 8, 2, ["/expand=1", "not the export"],
            extra=["--batch-dims", "/expand=1"])
    # a dynamic export's shapes follow the batch by themselves: nothing is rewritten
    code, text = run([pippyc, os.path.join(ROOT, "samples/models/gpt_op17.onnx"), "--batch", "8", "--microbatches", "4",
                      "-o", os.path.join(work, "dyn"), "--emit-only"])
    res.check("a dynamic-batch export (gpt_op17) needs no rewrite", code == 0 and "static batch" not in text, tail(text))
    code, text = run([pippyc, os.path.join(ROOT, "samples/models/gpt_op17_static.onnx"), "--batch", "8",
                      "--microbatches", "4", "-o", os.path.join(work, "st"), "--emit-only"])
    res.check("gpt_op17_static: its 10 Reshape shapes (Unsqueeze -> Concat chains) rewritten",
              code == 0 and "static batch 8: 10 shape constants" in text, tail(text))
    shutil.rmtree(work, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
