#!/usr/bin/env python3
"""The start-up warm-up (runtime/warmup.c): the first microbatch's forward time against the others',
with PIPPY_WARMUP=0 and with the warm-up, from the trace's per-microbatch F durations (compute only:
the trace's F excludes waiting), and the start-up time each rank reports.

    python3 bench/bench_warmup.py [--runs N] [--json FILE]

Cases: samples/models/mlp.onnx in 1 stage and gpt_op17.onnx in 1 and 3 stages, 12 microbatches
(inference). For each case and setting: N runs (default 20) of pippyrun --trace; per rank the
median over runs of the first F's duration, of the median of the other eleven, and of the start-up
time. Uses samples/models only (no make_models.py)."""

import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import PIPPYC, PIPPYRUN, ROOT, WORK, load_trace, machine_line, median, sh, table  # noqa: E402

MODELS = os.path.join(ROOT, "samples", "models")
STARTUP = re.compile(r"\[rank (\d+)\] stage \d+ \(rank \d+\): .* start-up ([0-9.]+) ms")


def inputs(d):
    x = np.random.RandomState(0).randn(96, 64).astype(np.float32)
    idx = np.random.RandomState(0).randint(0, 128, size=(24, 16)).astype(np.int64)
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "idx.npy"), idx)
    return {"mlp": "x=" + os.path.join(d, "x.npy"), "gpt_op17": "idx=" + os.path.join(d, "idx.npy")}


def measure(out, feed, warm, runs):
    first, rest, startup = {}, {}, {}
    trace = os.path.join(out, "trace.json")
    for _ in range(runs):
        p = sh([PIPPYRUN, out, "--input", feed, "--trace", trace], env={"PIPPY_WARMUP": warm})
        for m in STARTUP.finditer(p.stdout):
            startup.setdefault(int(m.group(1)), []).append(float(m.group(2)))
        evs = [e for e in load_trace(trace) if e.get("name") == "F"]
        for pid in sorted({e["pid"] for e in evs}):
            f = sorted((e for e in evs if e["pid"] == pid), key=lambda e: e["ts"])
            first.setdefault(pid, []).append(f[0]["dur"])
            rest.setdefault(pid, []).append(median([e["dur"] for e in f[1:]]))
    return {r: dict(first_us=median(first[r]), others_us=median(rest[r]), startup_ms=median(startup.get(r, [])))
            for r in sorted(first)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    d = os.path.join(WORK, "warmup")
    os.makedirs(d, exist_ok=True)
    feeds = inputs(d)
    print(machine_line())
    rows, res = [], []
    for model, stages in (("mlp", 1), ("gpt_op17", 1), ("gpt_op17", 3)):
        out = os.path.join(d, f"{model}_{stages}")
        sh([PIPPYC, os.path.join(MODELS, model + ".onnx"), "--stages", str(stages), "--batch", "96" if model == "mlp"
            else "24", "--microbatches", "12", "-o", out, "-q"])
        got = {w: measure(out, feeds[model], w, a.runs) for w in ("0", "1")}
        for r in got["0"]:
            off, on = got["0"][r], got["1"][r]
            rows.append([f"{model}, {stages} stage{'s' if stages > 1 else ''}", r, "%.0f" % off["first_us"],
                         "%.0f" % on["first_us"], "%.0f / %.0f" % (off["others_us"], on["others_us"]),
                         "%.1f / %.1f" % (off["startup_ms"], on["startup_ms"])])
            res.append(dict(model=model, stages=stages, rank=r, off=off, on=on))
    print(table(["case (12 microbatches)", "rank", "first F µs, off", "first F µs, warm-up",
                 "other F µs (median), off / on", "start-up ms, off / on"], rows))
    print(f"(median of {a.runs} runs each)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
