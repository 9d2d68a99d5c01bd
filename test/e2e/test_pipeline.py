#!/usr/bin/env python3
"""Pipelined inference end to end: compile the sample models into 1-4 stages with several
microbatch counts, run every rank with pippyrun (real processes, real UCX), and compare the
outputs with onnxruntime's (samples/models/<model>.data, made by samples/make_refdata.py) element by
element with refcheck.py's tolerances (a few times what correct code achieves).

usage: test_pipeline.py BUILD_DIR [--quick]"""

import json
import os
import shutil
import sys

import refcheck
from common import MODELS, Results, build_dir, run, tail, tmpdir

QUICK = "--quick" in sys.argv

# model, stage counts, microbatch counts (batch 8 everywhere)
CASES = [
    ("mlp", [1, 2, 3, 4], [1, 2, 8]),
    ("skip", [1, 2, 3, 4], [1, 4]),
    ("gpt_op14", [1, 2, 3, 4], [1, 2, 4]),
    ("gpt_op17", [1, 2, 4], [1, 8]),
    ("resnet18", [1, 2, 3, 4], [1, 2]),
    ("gpt_head_t", [1, 3], [1, 4]),
    # static-batch exports (the batch of 8 baked into the shapes): rewritten for the microbatch size
    ("gpt_op14_static", [1, 2, 3], [2, 4]),
    ("gpt_op17_static", [1, 3], [2, 4]),
    ("resnet18_static", [2], [2, 4]),
    ("mlp_static", [3], [2, 4]),
]
if QUICK:
    CASES = [("mlp", [1, 3], [1, 4]), ("gpt_op17", [2], [2]), ("skip", [4], [2]), ("gpt_op17_static", [2], [4])]
# Ranks on one machine share stage-to-stage buffers (only a note travels); these cases turn that
# off so every byte goes through UCX (the network-namespace test covers UCX over TCP).
UCX_CASES = [("gpt_op14", 3, 4), ("skip", 4, 2), ("resnet18", 2, 2)]
# interleaved-1f1b: R ranks, rank r running stages r, r+R, ... (model, stages, ranks, microbatches);
# transfers between two stages of one rank are pointer hand-offs, the others shared memory or UCX
INTERLEAVED_CASES = [("gpt_op17", 4, 2, 4), ("skip", 4, 2, 2), ("resnet18", 4, 1, 2), ("mlp", 4, 2, 8)]
if QUICK:
    INTERLEAVED_CASES = [("gpt_op17", 4, 2, 4)]


def io_args(model):
    meta = json.load(open(os.path.join(MODELS, model + ".json")))
    data = os.path.join(MODELS, model + ".data")
    args = []
    for k, name in enumerate(meta["inputs"]):
        args += ["--input", f"{name}={data}/input_{k}.pb"]
    return meta, data, args


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("pipeline")
    port = 31000
    cases = [(m, S, M, None, []) for m, ss, ms in CASES for S in ss for M in ms]
    cases += [(m, S, M, {"PIPPY_SHM": "0"}, []) for m, S, M in UCX_CASES]
    cases += [(m, S, M, None, ["--schedule", "interleaved-1f1b", "--ranks", str(R)]) for m, S, R, M in INTERLEAVED_CASES]
    cases += [(m, S, M, {"PIPPY_SHM": "0"}, ["--schedule", "interleaved-1f1b", "--ranks", str(R)])
              for m, S, R, M in INTERLEAVED_CASES[:1]]
    for model, S, M, env, extra in cases:
        meta, data, inputs = io_args(model)
        name = f"{model} stages={S} microbatches={M}" + (" " + " ".join(extra) if extra else "") + \
            (" (every byte over UCX)" if env else "")
        out = tmpdir("pippy-e2e-")
        port += 8
        code, text = run([pippyc, os.path.join(MODELS, model + ".onnx"), "--stages", str(S), "--batch", "8",
                          "--microbatches", str(M), "--port", str(port), "-o", out, "-q"] + extra, timeout=600)
        if code != 0:
            res.check(name, False, "pippyc failed:\n        " + tail(text))
            continue
        sched = json.load(open(os.path.join(out, "schedule.json")))
        if sched["config"]["stages"] != S or len(sched["stages"]) != S:
            res.check(name, False, f"schedule.json has {len(sched['stages'])} stages")
            continue
        outputs = []
        for k, oname in enumerate(meta["outputs"]):
            outputs += ["--output", f"{oname}={out}/output_{k}.pb"]
        code, text = run([pippyrun, out, "--timeout", "60"] + inputs + outputs, timeout=300, env=env)
        if code != 0:
            res.check(name, False, f"pippyrun exited {code}:\n        " + tail(text))
            continue
        ok, text = refcheck.check_outputs(data, out, len(meta["outputs"]))  # element-wise, default rtol/atol
        res.check(name, ok, tail(text))
        if ok:
            shutil.rmtree(out, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
