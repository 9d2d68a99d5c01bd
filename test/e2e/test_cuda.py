#!/usr/bin/env python3
"""The cuda backend end to end: `pippyc --backend cuda` on the sample models, the stage programs it
links, and their outputs against onnxruntime's (samples/models/<model>.data).

usage: test_cuda.py BUILD_DIR [--quick]

- A build without CUDA (make): --backend cuda is refused, naming `make CUDA=1`; --tf32 without
  --backend cuda is a usage error.
- A CUDA build (make CUDA=1): every sample compiles for cuda in 1 and 2 stages, the programs link
  cuBLASLt and cuDNN (ldd, nm) and say `.backend = "cuda"`; training for cuda is refused. Then:
    with a GPU: every case runs on it (2 ranks on one GPU for 2 stages; one case with every byte
    over UCX through pinned host buffers) and matches onnxruntime within --pippy-tol;
    without one: the programs exit non-zero naming cudaGetDeviceCount's error and the fallback
    option, and with --backend cuda,cpu they fall back and match onnxruntime; the GPU runs are
    counted as skipped, with the reason.
Ends with "cuda: N passed, N failed, N skipped"."""

import json
import os
import re
import shutil
import sys

from common import MODELS, ROOT, Results, build_dir, run, tail, tmpdir

QUICK = "--quick" in sys.argv
MODELS_RUN = [("mlp", [1, 2], 2), ("skip", [1, 2], 2), ("gpt_op14", [1, 2], 2), ("gpt_op17", [1, 2], 4),
              ("resnet18", [1, 2], 2)]
if QUICK:
    MODELS_RUN = [("gpt_op17", [2], 2), ("resnet18", [1], 1)]


def stage_env(b):
    env = {}
    for line in open(os.path.join(b, "stage.env")):
        k, _, v = line.rstrip("\n").partition("=")
        env[k] = v
    return env


def io_args(model, out):
    meta = json.load(open(os.path.join(MODELS, model + ".json")))
    data = os.path.join(MODELS, model + ".data")
    args = []
    for k, name in enumerate(meta["inputs"]):
        args += ["--input", f"{name}={data}/input_{k}.pb"]
    for k, name in enumerate(meta["outputs"]):
        args += ["--output", f"{name}={out}/output_{k}.pb"]
    return data, len(meta["outputs"]), args


def refcheck(data, out, n):
    code, text = 0, ""
    for k in range(n):
        c, t = run([sys.executable, os.path.join(ROOT, "test/e2e/refcheck.py"), f"{data}/output_{k}.pb",
                    f"{out}/output_{k}.pb", "--pippy-tol"])
        code, text = code or c, text + t
    return code, text


def no_cuda_build(res, pippyc):
    out = tmpdir("pippy-cuda-")
    code, text = run([pippyc, os.path.join(MODELS, "mlp.onnx"), "--backend", "cuda", "-o", out, "-q"])
    res.check("without CUDA: --backend cuda is refused, naming make CUDA=1",
              code != 0 and "not in this build" in text and "CUDA=1" in text, tail(text))
    code, text = run([pippyc, os.path.join(MODELS, "mlp.onnx"), "--tf32", "-o", out, "-q"])
    res.check("--tf32 without --backend cuda is a usage error", code == 2 and "--tf32" in text, tail(text))
    shutil.rmtree(out, ignore_errors=True)


def links_cuda(prog):
    code, ldd = run(["ldd", prog])
    code2, nm = run(["nm", "-D", "--undefined-only", prog])
    libs = all(l in ldd for l in ("libcublasLt.so", "libcudnn.so", "libcudart.so"))
    syms = all(s in nm for s in ("cublasLtMatmul", "cudnnConvolutionForward", "cudaLaunchKernel"))
    return code == 0 and code2 == 0 and libs and syms, ldd + nm[:2000]


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("cuda")
    skipped = 0
    if stage_env(b).get("CUDA") != "1":
        no_cuda_build(res, pippyc)
        res.finish()
    code, text = run([pippyc, os.path.join(MODELS, "mlp_train_loss.onnx"), "--train", "--backend", "cuda", "--batch", "8",
                      "-o", tmpdir("pippy-cuda-"), "-q"])
    res.check("training for cuda is refused, saying why", code != 0 and "training" in text, tail(text))
    gpu, why = None, ""
    port = 36000
    for model, stages, M in MODELS_RUN:
        for S in stages:
            name = f"{model} stages={S} microbatches={M}"
            out = tmpdir("pippy-cuda-")
            port += 8
            code, text = run([pippyc, os.path.join(MODELS, model + ".onnx"), "--backend", "cuda", "--stages", str(S),
                              "--batch", "8", "--microbatches", str(M), "--port", str(port), "-o", out, "-q"],
                             timeout=600)
            if code != 0:
                res.check(name + ": compiles for cuda", False, tail(text))
                continue
            ok, detail = links_cuda(os.path.join(out, "stage0"))
            src = open(os.path.join(out, "stage0.c")).read()
            res.check(name + ": compiles for cuda, links cuBLASLt and cuDNN",
                      ok and '.backend = "cuda"' in src and "pippy_backend_kernel_create(B," in src, tail(detail))
            data, n_out, io = io_args(model, out)
            code, text = run([pippyrun, out, "--timeout", "120"] + io, timeout=600)
            if gpu is None:
                gpu = "cudaGetDeviceCount" not in text
                why = "" if gpu else re.sub(r"^.*?(the cuda backend needs)", r"\1",
                                            next(l for l in text.splitlines() if "cudaGetDeviceCount" in l))
            if gpu:
                c, t = refcheck(data, out, n_out) if code == 0 else (code, text)
                res.check(name + ": on the GPU, matches onnxruntime", c == 0, tail(t))
            else:
                res.check(name + ": without a GPU it exits non-zero, naming the error and --backend cuda,cpu",
                          code != 0 and "cudaGetDeviceCount" in text and "--backend cuda,cpu" in text, tail(text))
                skipped += 1
                code, text = run([pippyrun, out, "--timeout", "120"] + io + ["--", "--backend", "cuda,cpu"],
                                 timeout=600)
                c, t = refcheck(data, out, n_out) if code == 0 else (code, text)
                res.check(name + ": --backend cuda,cpu falls back to the CPU and matches onnxruntime",
                          c == 0 and "trying the cpu backend instead" in text, tail(t + text))
            shutil.rmtree(out, ignore_errors=True)
    if gpu:  # every byte over UCX: pinned host buffers, no shared memory
        out = tmpdir("pippy-cuda-")
        code, text = run([pippyc, os.path.join(MODELS, "gpt_op14.onnx"), "--backend", "cuda", "--stages", "3",
                          "--batch", "8", "--microbatches", "4", "-o", out, "-q"], timeout=600)
        data, n_out, io = io_args("gpt_op14", out)
        if code == 0:
            code, text = run([pippyrun, out, "--timeout", "120"] + io, timeout=600, env={"PIPPY_SHM": "0"})
        c, t = refcheck(data, out, n_out) if code == 0 else (code, text)
        res.check("gpt_op14 stages=3 microbatches=4 on the GPU, every byte over UCX", c == 0, tail(t))
    else:
        skipped += 1
        print(f"skipped: the GPU runs of {skipped} cases: no GPU available: {why}")
    print(f"cuda: {res.passed} passed, {res.failed} failed, {skipped} skipped")
    if res.failures:
        print("cuda: failed: " + ", ".join(res.failures))
    sys.exit(1 if res.failed else 0)


if __name__ == "__main__":
    main()
