#!/usr/bin/env python3
"""Pipelining against intra-op threading: pippyc's 2 stages on 2 cores vs onnxruntime with 2 intra-op
threads, on the same model and the same batch (issue 10's target: throughput >= 1.1x ORT's).

    python3 bench/bench_pipeline_ort.py [--reps 3] [--m 8] [--mb N] [--layouts measure] [model ...]
    python3 bench/bench_pipeline_ort.py --quick     # CI: samples' mlp and gpt_op17, no torch, no bench/work

For each model at its bench batch B (bench/make_models.py) the total batch is T = B * M (M microbatches
of exactly the bench batch, --m, default 8):
* pippyc: compiled once with `--stages 2 --batch T --microbatches M`, run through pippyrun with --trace
  (1 compute thread per stage); step time = from the start of rank 0's first compute event to the end of
  the last rank's last one (bench_pipeline.py's measure: process start, connection set-up and file I/O
  left out). With --layouts a,b the program runs once per PIPPY_MATMUL_LAYOUT value in each rep.
* onnxruntime: InferenceSession, intra_op_num_threads=2, inter_op_num_threads=1, sequential, all graph
  optimizations; one sess.run on the whole batch T (a model with a static batch: M calls of B), timed with
  perf_counter, 1 warm-up, 3 timed per rep, median. The session is made afresh in each rep and deleted
  before pippyc runs (a live 2-thread session keeps a worker thread spinning on a core).
Throughput = T / step time; "pippyc/ORT2" = pippyc's throughput / ORT's (>= 1.1 is the target), from the
medians; "best/best" the same from each side's fastest rep. The reps interleave ORT and pippyc so that
load from others on this shared machine falls on both; before each rep the bench waits (up to --quiet
seconds) for the machine to be idle, and prints how busy it was and the load average. The outputs are compared with ORT's (max |diff|, relative to max |ORT|).

--quick (make test): the committed samples mlp and gpt_op17 at a small batch, 1 rep; checks that the
pipeline runs, that its output matches ORT's within 1e-4 relative, and that the timing parsed. It does
not judge the speed (CI machines vary); it ends with "N passed, N failed".
"""

import argparse
import gc
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

MODELS = ["mlp", "gpt_op17", "resnet18", "mlp_big", "gpt_big", "mlp_train", "gpt_train", "gpt_op17_static"]
STATIC = {"gpt_op17_static"}  # batch fixed in the file: ORT gets M calls of B
TARGET = 1.1


def spec_of(name):
    """(onnx path, input name, output name, bench batch, batch-B input) of a bench/work model."""
    info = C.model_info(name)
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))
    return dict(name=name, path=os.path.join(C.WORK, name + ".onnx"), input=info["input"],
                output=info["output"], batch=info["batch"], x=x, static=name in STATIC)


def quick_specs():
    rng = np.random.default_rng(5)
    mm = os.path.join(C.ROOT, "samples", "models")
    return [dict(name="mlp", path=os.path.join(mm, "mlp.onnx"), input="x", output="y", batch=16,
                 x=rng.standard_normal((16, 64)).astype(np.float32), static=False),
            dict(name="gpt_op17", path=os.path.join(mm, "gpt_op17.onnx"), input="idx", output="logits", batch=4,
                 x=rng.integers(0, 128, (4, 16)).astype(np.int64), static=False)]


def step_ms(trace):
    analyse = C.bench_module("bench_pipeline").analyse
    return analyse(trace, 2)["span_ms"]


def ort_time(sess, s, xt, M):
    """Median ms of one pass over the whole batch, and the output."""
    if s["static"]:
        parts = np.split(xt, M)
        fn = lambda: [sess.run(None, {s["input"]: p})[0] for p in parts]  # noqa: E731
        y = np.concatenate(fn(), axis=0)
    else:
        fn = lambda: sess.run(None, {s["input"]: xt})[0]  # noqa: E731
        y = fn()
    return C.median(C.time_calls(fn, 3, warmup=1)) * 1e3, y


def bench_model(s, M, reps, layouts, work, log, mb=None, quiet_s=0.0):
    B = mb or s["batch"]
    T = B * M
    x = np.concatenate([s["x"]] * (B // s["x"].shape[0] + 1), axis=0)[:B]
    xt = np.concatenate([x] * M, axis=0)
    d = os.path.join(work, s["name"])
    os.makedirs(d, exist_ok=True)
    in_file = os.path.join(d, "in.npy")
    np.save(in_file, xt)
    out = os.path.join(d, "s2")
    C.sh([C.PIPPYC, s["path"], "--stages", "2", "--batch", str(T), "--microbatches", str(M), "-o", out, "-q"])
    ort, pip, diffs = [], {lay: [] for lay in layouts}, {}
    busy = []
    for rep in range(reps):
        if quiet_s > 0:
            busy.append(C.wait_quiet(quiet_s))
        # A fresh session per rep, gone before pippyc runs: ORT's intra-op worker thread spins for a
        # while after a run by default, and must not take a core from the stages (a direct test
        # could not separate that effect from other people's load on the machine).
        sess = C.ort_session(s["path"], 2, True)
        t, y_ort = ort_time(sess, s, xt, M)
        del sess
        gc.collect()
        ort.append(t)
        for lay in layouts:
            y_file, trace = os.path.join(d, "y_%s.npy" % lay), os.path.join(d, "trace%d_%s.json" % (rep, lay))
            C.run_pipeline(out, s["input"], in_file, s["output"], y_file, trace, env={"PIPPY_MATMUL_LAYOUT": lay})
            pip[lay].append(step_ms(trace))
            y = np.load(y_file)
            scale = max(1e-30, float(np.max(np.abs(y_ort))))
            diffs[lay] = float(np.max(np.abs(y - y_ort))) / scale if y.shape == y_ort.shape else float("inf")
    rows = []
    o, ob = C.median(ort), min(ort)
    for lay in layouts:
        p, pb = C.median(pip[lay]), min(pip[lay])
        rows.append(dict(model=s["name"], layout=lay, B=B, M=M, T=T, ort_ms=o, pippy_ms=p, ort_per_s=T / o * 1e3,
                         pippy_per_s=T / p * 1e3, ratio=o / p, ort_best_ms=ob, pippy_best_ms=pb, ratio_best=ob / pb,
                         rel_diff=diffs[lay], n=len(pip[lay]), ort_all=ort, pippy_all=pip[lay], busy_before=busy))
        log("%-15s %-9s T=%-4d M=%d  ORT 2 threads %.2f ms  pippyc 2 stages %.2f ms  pippyc/ORT2 throughput %.2f "
            "(best of each: %.2f / %.2f ms, %.2f)  (max|diff|/max|y| %.1e; machine busy before the reps %s)" %
            (s["name"], lay, T, M, o, p, o / p, ob, pb, ob / pb, diffs[lay], " ".join("%.2f" % b for b in busy)))
    return rows


def print_table(rows):
    trs = []
    for r in rows:
        if "failed" in r:
            trs.append([r["model"], "-", "-", "-", "-", "-", "-", "-", "FAILED", "-"])
            continue
        trs.append([r["model"], r["layout"], r["T"], r["M"], "%.2f" % r["ort_ms"], "%.2f" % r["pippy_ms"],
                    "%.1f" % r["ort_per_s"], "%.1f" % r["pippy_per_s"],
                    "%.2f %s" % (r["ratio"], "yes" if r["ratio"] >= TARGET else "NO"), "%.2f" % r["ratio_best"]])
    print(C.table(["model", "layout", "batch T", "M", "ORT 2 threads ms", "pippyc 2 stages ms", "ORT /s",
                   "pippyc /s", "pippyc/ORT2 (>= %.1f)" % TARGET, "best/best"], trs))


def quick():
    ck = C.Checks()
    with tempfile.TemporaryDirectory(prefix="pippy_bpo_") as work:
        for s in quick_specs():
            try:
                rows = bench_model(s, 4, 1, ["measure"], work, print)
            except Exception as e:  # a failed run is a failed check, with its output
                ck.check(False, "%s: 2-stage pipeline and ORT with 2 threads ran (%s)" % (s["name"], str(e)[:800]))
                continue
            r = rows[0]
            ck.check(True, "%s: 2-stage pipeline and ORT with 2 threads ran" % s["name"])
            ck.check(r["rel_diff"] <= 1e-4, "%s: output matches ORT's (max|diff|/max|y| %.1e <= 1e-4)" %
                     (s["name"], r["rel_diff"]))
            ck.check(r["pippy_ms"] > 0 and r["ort_ms"] > 0 and np.isfinite(r["ratio"]),
                     "%s: step times parsed (pippyc %.3f ms, ORT %.3f ms)" % (s["name"], r["pippy_ms"], r["ort_ms"]))
    return ck.summary()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--m", type=int, default=8, help="microbatches (each of the model's bench batch)")
    ap.add_argument("--mb", type=int, help="microbatch size (default: each model's bench batch); T = mb * M")
    ap.add_argument("--layouts", default="measure", help="PIPPY_MATMUL_LAYOUT values, comma-separated")
    ap.add_argument("--quiet", type=float, default=30.0,
                    help="before each rep, wait up to this many seconds for the machine to be < 15%% busy")
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        sys.exit(quick())
    names = a.models or MODELS
    C.need_models(names)
    print("bench_pipeline_ort: " + C.machine_line(), flush=True)
    rows = []
    work = os.path.join(C.WORK, "pipeline_ort")
    for n in names:
        try:
            rows += bench_model(spec_of(n), a.m, a.reps, a.layouts.split(","), work, lambda t: print(t, flush=True),
                                a.mb, a.quiet)
        except Exception as e:
            print("%s FAILED: %s" % (n, str(e).strip()[:1500]), flush=True)
            rows.append(dict(model=n, failed=str(e).strip()[:300]))
    print("\n2 stages on 2 cores vs onnxruntime with 2 intra-op threads (median step ms; load average now %s)" %
          " ".join("%.2f" % v for v in (C.loadavg() or [])))
    print_table(rows)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
