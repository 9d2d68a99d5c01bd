#!/usr/bin/env python3
"""Pipeline throughput: a compute-bound model as 2 stages on 2 cores vs the same model as 1 stage on
1 core, for M = 1, 2, 4, 8, 16 microbatches of the same total batch, plus each rank's idle fraction
from the trace against GPipe's ideal bubble (p-1)/(M+p-1).

    python3 bench/bench_pipeline.py [--reps 3] [--models gpt_big,mlp_big] [--ms 1,2,4,8,16]

Both ways run through pippyrun with --trace (1 compute thread per stage, the default). What is timed:
  step time = from the start of the first "F" event of rank 0 to the end of the last "F" event of
  the last rank (the trace's clock is CLOCK_MONOTONIC, shared by the processes of one host), so
  process start, connection set-up, reading the input and writing the output are left out alike on
  both sides. Throughput = total batch / step time. Median over --reps runs; the runs of the
  1-stage and 2-stage programs alternate so that noise on this shared machine falls on both.
  speedup(same M) = 1-stage step time at that M / 2-stage step time at that M;
  speedup(vs best 1-stage) = the fastest 1-stage median over all M / 2-stage step time.
Idle fraction of a rank = 1 - (sum of its F durations) / step time. The ideal GPipe bubble assumes
equal stages and free transfers; "imbalance" = slower stage's compute / faster stage's compute;
"r1 waits after its F0" = the time rank 1 spends waiting for data once it has started (transfers that
did not overlap, or rank 0 falling behind).
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

# Total batch per run. mlp_big's microbatches need >= 32 rows to stay compute-bound (each microbatch
# streams the stage's 150 MB of weights from memory: rows*2 flop per 4 bytes).
TOTAL_BATCH = {"gpt_big": 16, "mlp_big": 512}


def analyse(trace_path, nranks):
    evs = C.load_trace(trace_path)
    F = [e for e in evs if C.is_compute(e)]
    by_rank = {r: sorted([e for e in F if e["pid"] == r], key=lambda e: e["ts"]) for r in range(nranks)}
    t0 = by_rank[0][0]["ts"]
    t1 = max(e["ts"] + e["dur"] for e in by_rank[nranks - 1])
    span = float(t1 - t0)
    busy = {r: float(sum(e["dur"] for e in by_rank[r])) for r in range(nranks)}
    waits = {r: float(sum(e["dur"] for e in evs if e["pid"] == r and C.is_wait(e)
                          and e["ts"] >= by_rank[r][0]["ts"])) for r in range(nranks)}
    drains = {r: float(sum(e["dur"] for e in evs if e["pid"] == r and e.get("name") == "drain sends"))
              for r in range(nranks)}
    return dict(span_ms=span / 1e3, busy_ms={r: b / 1e3 for r, b in busy.items()},
                idle={r: 1 - busy[r] / span for r in range(nranks)},
                wait_after_first_ms={r: w / 1e3 for r, w in waits.items()},
                drain_ms={r: d / 1e3 for r, d in drains.items()},
                per_mb_ms={r: [e["dur"] / 1e3 for e in by_rank[r]] for r in range(nranks)})


def run_one(name, stages, M, total, in_file, info, rep, log):
    d = os.path.join(C.WORK, "pipeline", "%s_s%d_m%d" % (name, stages, M))
    trace = os.path.join(d, "trace%d.json" % rep)
    out_file = os.path.join(d, "y.npy")
    lines, wall, _ = C.run_pipeline(d, info["input"], in_file, info["output"], out_file, trace)
    a = analyse(trace, stages)
    a["wall_s"] = wall
    a["printed"] = lines
    return a


def run_dual(name, M, in_file, info, rep):
    """Two copies of the 1-stage program at once (one per core): the most this machine gives two
    processes of this workload right now (shared caches, memory bandwidth, other users' load).
    Returns the two step times (ms)."""
    import subprocess

    d = os.path.join(C.WORK, "pipeline", "%s_s1_m%d" % (name, M))
    procs, traces = [], []
    for k in range(2):
        tr = os.path.join(d, "dual%d_%d.json" % (rep, k))
        traces.append(tr)
        procs.append(subprocess.Popen([os.path.join(d, "stage0"), "--input", "%s=%s" % (info["input"], in_file),
                                       "--output", "%s=%s" % (info["output"], os.path.join(d, "ydual%d.npy" % k)),
                                       "--trace", tr], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for pr in procs:
        out, _ = pr.communicate(timeout=900)
        if pr.returncode != 0:
            raise RuntimeError("dual run failed:\n" + out[-2000:])
    return [analyse(tr, 1)["span_ms"] for tr in traces]


def bench_model(name, ms, reps, log):
    info = C.model_info(name)
    total = TOTAL_BATCH.get(name, info["batch"])
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))
    xr = np.concatenate([x] * (total // x.shape[0] + 1), axis=0)[:total]
    os.makedirs(os.path.join(C.WORK, "pipeline"), exist_ok=True)
    in_file = os.path.join(C.WORK, "pipeline", name + "_in%d.npy" % total)
    np.save(in_file, xr)
    for M in ms:
        for S in (1, 2):
            C.compile_model(name, os.path.join(C.WORK, "pipeline", "%s_s%d_m%d" % (name, S, M)), S, total, M)
    res = {(S, M): [] for M in ms for S in (1, 2)}
    m_cal = max(m for m in ms if m <= 8)
    dual = []
    for rep in range(reps):
        alone = run_one(name, 1, m_cal, total, in_file, info, rep, log)["span_ms"]
        pair = run_dual(name, m_cal, in_file, info, rep)
        dual.append(dict(alone=alone, pair=pair, ceiling=2 * alone / max(pair)))
        log("%s rep %d calibration (M=%d): 1-stage alone %.1f ms, two at once %.1f / %.1f ms -> 2-process "
            "ceiling %.2fx" % (name, rep, m_cal, alone, pair[0], pair[1], dual[-1]["ceiling"]))
        for M in ms:
            for S in (1, 2):
                a = run_one(name, S, M, total, in_file, info, rep, log)
                res[(S, M)].append(a)
                log("%s rep %d M=%-2d stages=%d: step %.1f ms, idle %s" % (
                    name, rep, M, S, a["span_ms"],
                    " ".join("r%d %.1f%%" % (r, 100 * v) for r, v in a["idle"].items())))
    # the outputs of the 1- and 2-stage programs must agree
    y1 = np.load(os.path.join(C.WORK, "pipeline", "%s_s1_m%d" % (name, ms[-1]), "y.npy"))
    y2 = np.load(os.path.join(C.WORK, "pipeline", "%s_s2_m%d" % (name, ms[-1]), "y.npy"))
    diff = float(np.max(np.abs(y1 - y2)))

    best1 = min(C.median([a["span_ms"] for a in res[(1, M)]]) for M in ms)
    rows = []
    for M in ms:
        s1 = C.median([a["span_ms"] for a in res[(1, M)]])
        s2 = C.median([a["span_ms"] for a in res[(2, M)]])
        idle = {r: C.median([a["idle"][r] for a in res[(2, M)]]) for r in (0, 1)}
        busy = {r: C.median([a["busy_ms"][r] for a in res[(2, M)]]) for r in (0, 1)}
        wait1 = C.median([a["wait_after_first_ms"][1] for a in res[(2, M)]])
        drain0 = C.median([a["drain_ms"][0] for a in res[(2, M)]])
        ideal = 1.0 / (M + 1)
        rows.append(dict(M=M, mb=total // M, s1=s1, s2=s2, thr1=total / s1 * 1e3, thr2=total / s2 * 1e3,
                         speed_same=s1 / s2, speed_best=best1 / s2, idle0=idle[0], idle1=idle[1], ideal=ideal,
                         imbalance=max(busy.values()) / max(1e-9, min(busy.values())), wait1=wait1,
                         drain0=drain0, spans1=[a["span_ms"] for a in res[(1, M)]],
                         spans2=[a["span_ms"] for a in res[(2, M)]]))
    ceiling = C.median([x["ceiling"] for x in dual])
    return dict(model=name, total=total, rows=rows, diff=diff, best1=best1, ceiling=ceiling, dual=dual,
                m_cal=m_cal)


def print_model(r):
    print("\n%s, total batch %d, 2 stages on 2 cores vs 1 stage on 1 core (median step ms; samples/s; "
          "max|y1-y2| %.1e)" % (r["model"], r["total"], r["diff"]))
    trs = []
    for x in r["rows"]:
        ok = ("yes" if x["speed_same"] >= 1.7 else "NO") if x["M"] >= 8 else ""
        trs.append([x["M"], x["mb"], "%.1f" % x["s1"], "%.1f" % x["s2"], "%.1f" % x["thr1"], "%.1f" % x["thr2"],
                    "%.2f %s" % (x["speed_same"], ok), "%.2f" % x["speed_best"], "%.0f%%" % (100 * x["speed_same"] / r["ceiling"]),
                    "%.1f%% / %.1f%%" % (100 * x["idle0"], 100 * x["idle1"]), "%.1f%%" % (100 * x["ideal"]),
                    "%.2f" % x["imbalance"], "%.1f" % x["wait1"]])
    print("2-process ceiling on this machine during the run (two 1-stage programs at once, M=%d): "
          "%.2fx (median of %s)" % (r["m_cal"], r["ceiling"], ", ".join("%.2f" % x["ceiling"] for x in r["dual"])))
    print(C.table(["M", "mb size", "1-stage ms", "2-stage ms", "1-stage /s", "2-stage /s",
                   "speedup same M (>=1.7 at M>=8)", "speedup vs best 1-stage", "of ceiling", "idle r0 / r1", "ideal bubble",
                   "imbalance", "r1 waits after its F0 ms"], trs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--models", default="gpt_big,mlp_big")
    ap.add_argument("--ms", default="1,2,4,8,16")
    ap.add_argument("--json")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n]
    ms = [int(m) for m in a.ms.split(",")]
    C.need_models(names)
    print("bench_pipeline: " + C.machine_line(), flush=True)
    out = []
    for n in names:
        try:
            out.append(bench_model(n, ms, a.reps, lambda s: print(s, flush=True)))
        except Exception as e:
            print("%s FAILED: %s" % (n, str(e).strip()[:2000]), flush=True)
    for r in out:
        print_model(r)
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
