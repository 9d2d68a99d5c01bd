#!/usr/bin/env python3
"""Whole-model latency: pippyc's one-stage program vs onnxruntime, one thread each.

    python3 bench/bench_single.py [--reps 3] [--per-proc 12] [model ...]

For each model at its bench batch B (bench/make_models.py, BENCH_BATCH):

* pippyc: compiled once with `--stages 1 --batch B*R --microbatches R`, so one process runs the whole
  model R times back to back on microbatches of exactly B samples (the same shapes as one batch-B run).
  The program is run P times (--reps). What is timed:
    - "per-mb": the duration of each microbatch's compute event in the program's own trace
      (--trace; an "F" event covers the forward pass of one microbatch: the straight-line kernel calls),
      the first microbatch of each process dropped as warm-up (page faults on the weights, first
      touches of the arena, oneDNN's first calls). Median over the P*(R-1) microbatches.
    - "printed": the program's own line "R microbatches in X ms", divided by R (includes the warm-up
      microbatch, splitting the input and merging the output; no process start, weight mapping or
      kernel creation). Median over the P processes.
  If a trace is not available, only "printed" is used. --layouts runs the program once per
  PIPPY_MATMUL_LAYOUT value in each rep (A/B of the constant weights' layout, backend/cpu/layout.h).
* onnxruntime: InferenceSession with intra_op_num_threads=1, inter_op_num_threads=1, sequential
  execution, CPUExecutionProvider, on the batch-B input; each sess.run timed with perf_counter
  (includes the Python binding's overhead, a few µs), 2 warm-up calls, R timed calls per rep.
  Two sessions: graph optimizations ORT_ENABLE_ALL (the default, the anchor) and ORT_DISABLE_ALL
  (for diagnosis: same graph as pippyc sees). Median over the P*R calls.

The reps interleave the three ways (ORT, ORT no-opt, pippyc) so that noise on this shared machine
falls on all of them alike. The outputs of pippyc and ORT are compared (max |diff|) as a sanity check.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

MODELS = ["mlp", "gpt_op17", "resnet18", "mlp_big", "gpt_big", "mlp_train", "gpt_train", "gpt_op17_static"]
TARGET = {m: 1.0 for m in MODELS}  # issue 10: every model at most onnxruntime's 1-thread time


def stage_trace_times(trace_path):
    """Durations (ms) of the compute events of rank 0, in time order."""
    evs = [e for e in C.load_trace(trace_path) if C.is_compute(e)]
    evs.sort(key=lambda e: e["ts"])
    return [e["dur"] / 1000.0 for e in evs]


def bench_model(name, reps, per_proc, log, layouts=("measure",)):
    info = C.model_info(name)
    B, R = info["batch"], per_proc
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))
    xr = np.concatenate([x] * R, axis=0)
    d = os.path.join(C.WORK, "single", name)
    os.makedirs(d, exist_ok=True)
    in_file = os.path.join(d, "in.npy")
    np.save(in_file, xr)
    out_dir = os.path.join(d, "out")
    ctime = C.compile_model(name, out_dir, 1, B * R, R)

    onnx_path = os.path.join(C.WORK, name + ".onnx")
    s_opt = C.ort_session(onnx_path, 1, True)
    s_raw = C.ort_session(onnx_path, 1, False)
    feed = {info["input"]: x}
    ref = s_opt.run(None, feed)[0]

    ort_opt, ort_raw = [], []
    runs = {lay: dict(per_mb=[], printed=[], walls=[]) for lay in layouts}
    use_trace = [True]
    for rep in range(reps):
        ort_opt += C.time_calls(lambda: s_opt.run(None, feed), R)
        ort_raw += C.time_calls(lambda: s_raw.run(None, feed), R)
        for lay in layouts:
            run_pippy(d, out_dir, info, in_file, rep, lay, use_trace, runs[lay])

    o, r = C.median(ort_opt) * 1e3, C.median(ort_raw) * 1e3
    rows = []
    for lay in layouts:
        per_mb, printed = runs[lay]["per_mb"], runs[lay]["printed"]
        p_pr = C.median(printed)
        p_mb = C.median(per_mb) if per_mb else None
        p = p_mb if p_mb is not None else p_pr
        y = np.load(os.path.join(d, "y_%s.npy" % lay))
        diff = float(np.max(np.abs(y - np.concatenate([ref] * R, axis=0)))) if y.shape[0] == B * R else float("nan")
        row = dict(model=name, layout=lay, batch=B, ort=o, ort_raw=r, pippy=p, pippy_printed=p_pr, pippy_mb=p_mb,
                   n_ort=len(ort_opt), n_pippy=len(per_mb) or len(printed), ratio=p / o, ratio_raw=p / r,
                   target=TARGET.get(name), diff=diff, compile_s=ctime, wall=C.median(runs[lay]["walls"]),
                   flops=info.get("flops"))
        log("%-9s %-9s B=%-4d ORT %.3f ms  ORT-noopt %.3f ms  pippyc %.3f ms (printed/R %.3f)  ratio %.2f  "
            "(n=%d/%d, max|diff| %.1e, stage process wall %.2f s)" %
            (name, lay, B, o, r, p, p_pr, p / o, row["n_ort"], row["n_pippy"], diff, row["wall"]))
        rows.append(row)
    return rows


def run_pippy(d, out_dir, info, in_file, rep, layout, use_trace, acc):
    """One run of the one-stage program with PIPPY_MATMUL_LAYOUT=layout; appends to acc."""
    out_file = os.path.join(d, "y_%s.npy" % layout)
    trace = os.path.join(d, "trace%d_%s.json" % (rep, layout))
    env = {"PIPPY_MATMUL_LAYOUT": layout}
    extra = ["--trace", trace] if use_trace[0] else []
    try:
        line, wall, _ = C.run_stage0(out_dir, info["input"], in_file, info["output"], out_file, extra, env=env)
    except RuntimeError as e:
        if use_trace[0] and "trace" in str(e):
            use_trace[0] = False
            line, wall, _ = C.run_stage0(out_dir, info["input"], in_file, info["output"], out_file, env=env)
        else:
            raise
    acc["printed"].append(line["ms"] / line["microbatches"])
    acc["walls"].append(wall)
    if use_trace[0] and os.path.exists(trace):
        ts = stage_trace_times(trace)
        if len(ts) >= 2:
            acc["per_mb"] += ts[1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--reps", type=int, default=3, help="processes / ORT blocks per model")
    ap.add_argument("--per-proc", type=int, default=12, help="microbatches (runs) per process")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--layouts", default="measure",
                    help="PIPPY_MATMUL_LAYOUT values to run side by side (comma-separated: measure, plain, "
                         "reordered), interleaved within each rep")
    a = ap.parse_args()
    layouts = a.layouts.split(",")
    names = a.models or MODELS
    C.need_models(names)
    print("bench_single: " + C.machine_line(), flush=True)
    rows = []
    for n in names:
        try:
            rows += bench_model(n, a.reps, a.per_proc, lambda s: print(s, flush=True), layouts)
        except Exception as e:  # report and go on with the other models
            print("%-9s FAILED: %s" % (n, str(e).strip()[:1500]), flush=True)
            rows.append(dict(model=n, failed=str(e).strip()[:300]))

    print()
    print("Whole-model latency, 1 thread, median ms per batch (pippyc: per-microbatch compute from its "
          "trace, warm-up dropped)")
    trs = []
    for r in rows:
        if "failed" in r:
            trs.append([r["model"], "-", "-", "-", "-", "-", "-", "FAILED", "-", "-"])
            continue
        gf = "%.0f" % (r["flops"] / (r["pippy"] * 1e-3) / 1e9) if r.get("flops") else "-"
        ok = "yes" if r["ratio"] <= r["target"] else "NO"
        trs.append([r["model"], r["layout"], r["batch"], "%.3f" % r["ort"], "%.3f" % r["ort_raw"], "%.3f" % r["pippy"],
                    "%.3f" % r["pippy_printed"], "%.2f" % r["ratio"], "%.2f" % r["ratio_raw"],
                    "<= %.1f %s" % (r["target"], ok), gf])
    print(C.table(["model", "layout", "B", "ORT ms", "ORT no-opt ms", "pippyc ms", "pippyc printed/R ms",
                   "pippyc/ORT", "pippyc/ORT no-opt", "target", "pippyc GFLOP/s"], trs))
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
