#!/usr/bin/env python3
"""Per-microbatch time of pippyc's cuda stage programs against onnxruntime's CUDA execution provider,
on the same GPU (tools/gpu_check.sh runs it; it needs a GPU and `make CUDA=1`).

    python3 bench/bench_cuda.py [--build build] [--reps 3] [--json FILE] [--md FILE] [model ...]

Models: the committed samples (default gpt_op17, resnet18, mlp) at their batch of 8, inputs from
samples/models/<model>.data; also bench/work/<model>.onnx when given by name (bench/make_models.py).

* pippyc: `--backend cuda --stages 1 --batch 8*M --microbatches M` for M = 4 and M = 36, each run as
  its own process; the program prints "M microbatches in X ms" (no start-up, weight upload or kernel
  creation: those come before). Per microbatch = (X36 - X4) / 32, the steady-state cost of one more
  microbatch of 8 (its upload, kernels and download, the executor's bookkeeping), free of the first
  microbatch's one-time costs (lazy module loading). Also X36 / 36. Medians over --reps processes.
  "2 stages": the same compiled into 2 stages (2 ranks on the one GPU, activations through pinned host
  memory shared between the ranks), X36 / 36 of the slowest rank.
* onnxruntime: InferenceSession(providers=[CUDAExecutionProvider]) on the batch-8 input, default graph
  optimizations; 20 warm-up runs, then 200 timed sess.run calls (each includes copying the input to the
  GPU and the output back, as pippyc's microbatches do); median. Twice: with the provider option
  use_tf32=0 (the anchor of pippyc's default, no TF32) and use_tf32=1 (ORT's default; the anchor of
  pippyc --tf32). Skipped, saying so, when onnxruntime has no CUDA EP (the onnxruntime-gpu wheel is not
  installed). The CPU EP (all cores) is timed too, for scale.
* Outputs are compared with onnxruntime's reference outputs (max |diff|) as a sanity check.
Target: pippyc per microbatch <= 1.2 x onnxruntime CUDA EP."""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SAMPLES = os.path.join(ROOT, "samples", "models")
LINE = re.compile(r"stage\s+(\d+)\s+\(rank\s+(\d+)\):\s+(\d+)\s+microbatch(?:es)?\s+in\s+([0-9.eE+-]+)\s*ms")
M_LO, M_HI, TARGET = 4, 36, 1.2


def sh(cmd, timeout=600):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("failed (rc %d): %s\n%s" % (p.returncode, " ".join(cmd), p.stdout[-3000:]))
    return p.stdout


def model_files(name):
    """(onnx path, [(input name, batch-8 array)], reference output arrays or None)."""
    onnx_path = os.path.join(SAMPLES, name + ".onnx")
    if os.path.exists(onnx_path):
        meta = json.load(open(os.path.join(SAMPLES, name + ".json")))
        data = os.path.join(SAMPLES, name + ".data")
        ins = [(n, np.load(os.path.join(data, "input_%s.npy" % n))) for n in meta["inputs"]]
        refs = [np.load(os.path.join(data, "output_%s.npy" % n)) for n in meta["outputs"]]
        return onnx_path, ins, refs, list(meta["outputs"])
    onnx_path = os.path.join(HERE, "work", name + ".onnx")
    info = json.load(open(os.path.join(HERE, "work", name + ".json")))
    x = np.load(os.path.join(HERE, "work", name + ".in.npy"))[:8]
    return onnx_path, [(info.get("input", "x"), x)], None, [info.get("output", "y")]


def pippy_time(build, onnx_path, ins, outs, stages, M, reps, work, tf32=False):
    """Median over reps of (ms of the slowest rank for M microbatches of 8), and the outputs of one run."""
    out = os.path.join(work, "s%d_m%d%s" % (stages, M, "_tf32" if tf32 else ""))
    shutil.rmtree(out, ignore_errors=True)
    sh([os.path.join(build, "pippyc"), onnx_path, "--backend", "cuda", "--stages", str(stages),
        "--batch", str(8 * M), "--microbatches", str(M), "-o", out, "-q"] + (["--tf32"] if tf32 else []))
    args = []
    for n, x in ins:
        f = os.path.join(out, "in_%s.npy" % n)
        np.save(f, np.concatenate([x] * M, axis=0))
        args += ["--input", "%s=%s" % (n, f)]
    for n in outs:
        args += ["--output", "%s=%s" % (n, os.path.join(out, "out_%s.npy" % n))]
    times = []
    for _ in range(reps):
        text = sh([os.path.join(build, "pippyrun"), out, "--timeout", "120"] + args)
        lines = {int(m.group(2)): float(m.group(4)) for m in LINE.finditer(text)}
        if not lines:
            raise RuntimeError("no timing line in:\n" + text[-2000:])
        times.append(max(lines.values()))
    got = [np.load(os.path.join(out, "out_%s.npy" % n))[:8] for n in outs]
    return statistics.median(times), got


def ort_time(onnx_path, ins, provider, n=200, options=None):
    import onnxruntime as ort
    so = ort.SessionOptions()
    sess = ort.InferenceSession(onnx_path, so, providers=[(provider, options or {})])
    feed = {n_: x for n_, x in ins}
    for _ in range(20):
        sess.run(None, feed)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=["gpt_op17", "resnet18", "mlp"])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--md")
    a = ap.parse_args()
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
        ort_note = "onnxruntime %s, providers %s" % (ort.__version__, ", ".join(providers))
    except ImportError as e:
        providers, ort_note = [], "onnxruntime not importable (%s)" % e
    has_cuda_ep = "CUDAExecutionProvider" in providers
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         stdout=subprocess.PIPE, text=True).stdout.strip() if shutil.which("nvidia-smi") else "?"
    print("GPU: %s\n%s%s" % (gpu, ort_note, "" if has_cuda_ep else
                             "\nonnxruntime has no CUDAExecutionProvider: the onnxruntime-gpu wheel is not installed; "
                             "the CUDA EP column is left empty"))
    work = tempfile.mkdtemp(prefix="pippy-bench-cuda-")
    rows = []
    for name in a.models:
        onnx_path, ins, refs, outs = model_files(name)
        lo, _ = pippy_time(a.build, onnx_path, ins, outs, 1, M_LO, a.reps, work)
        hi, got = pippy_time(a.build, onnx_path, ins, outs, 1, M_HI, a.reps, work)
        two, got2 = pippy_time(a.build, onnx_path, ins, outs, 2, M_HI, a.reps, work)
        lo32, _ = pippy_time(a.build, onnx_path, ins, outs, 1, M_LO, a.reps, work, tf32=True)
        hi32, got32 = pippy_time(a.build, onnx_path, ins, outs, 1, M_HI, a.reps, work, tf32=True)
        diff = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got + got2, refs + refs)) \
            if refs else float("nan")
        diff32 = max(float(np.max(np.abs(g.astype(np.float64) - r))) for g, r in zip(got32, refs)) \
            if refs else float("nan")
        cuda = lambda tf: ort_time(onnx_path, ins, "CUDAExecutionProvider",  # noqa: E731
                                   options={"use_tf32": str(tf)}) if has_cuda_ep else None
        row = dict(model=name, pippy_mb_ms=(hi - lo) / (M_HI - M_LO), pippy_avg_ms=hi / M_HI,
                   pippy_2stage_ms=two / M_HI, max_abs_diff=diff,
                   pippy_tf32_mb_ms=(hi32 - lo32) / (M_HI - M_LO), max_abs_diff_tf32=diff32,
                   ort_cuda_ms=cuda(0), ort_cuda_tf32_ms=cuda(1),
                   ort_cpu_ms=ort_time(onnx_path, ins, "CPUExecutionProvider", 50))
        row["ratio"] = row["pippy_mb_ms"] / row["ort_cuda_ms"] if row["ort_cuda_ms"] else None
        row["ratio_tf32"] = row["pippy_tf32_mb_ms"] / row["ort_cuda_tf32_ms"] if row["ort_cuda_tf32_ms"] else None
        rows.append(row)
        print(json.dumps(row))
    shutil.rmtree(work, ignore_errors=True)
    head = ("ms per microbatch of 8 samples. fp32: pippyc's default against ORT's CUDA EP with use_tf32=0; "
            "tf32: pippyc --tf32 against ORT's default (use_tf32=1).\n\n"
            "| model | pippyc fp32 | (X36/36) | 2 stages, 2 ranks on 1 GPU | ORT CUDA fp32 | ratio fp32 "
            "(target <= %.1f) | pippyc tf32 | ORT CUDA tf32 | ratio tf32 | ORT CPU EP | max abs diff fp32 / tf32 |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n" % TARGET)
    fmt = lambda v, f="%.3f": "—" if v is None else f % v  # noqa: E731
    md = head + "".join("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n" % (
        r["model"], fmt(r["pippy_mb_ms"]), fmt(r["pippy_avg_ms"]), fmt(r["pippy_2stage_ms"]), fmt(r["ort_cuda_ms"]),
        fmt(r["ratio"], "%.2f×"), fmt(r["pippy_tf32_mb_ms"]), fmt(r["ort_cuda_tf32_ms"]), fmt(r["ratio_tf32"], "%.2f×"),
        fmt(r["ort_cpu_ms"]), fmt(r["max_abs_diff"], "%.2e"), fmt(r["max_abs_diff_tf32"], "%.2e")) for r in rows)
    md = "GPU: %s; %s; %s UTC.\n\n%s" % (gpu, ort_note, time.strftime("%Y-%m-%d %H:%M", time.gmtime()), md)
    print(md)
    if a.json:
        json.dump(dict(gpu=gpu, ort=ort_note, rows=rows), open(a.json, "w"), indent=1)
    if a.md:
        open(a.md, "w").write(md)


if __name__ == "__main__":
    main()
