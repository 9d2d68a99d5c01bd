#!/usr/bin/env python3
"""Stage-to-stage transfers: bandwidth of large messages vs single-thread memcpy, latency of small
ones, and whether a transfer overlaps the receiving stage's compute.

    python3 bench/bench_transfer.py [--reps 3] [--quick]

Part 1 — bench/bench_transport.c (the runtime engineer's; built here as BUILD/bench_transport with
the command in its header): two processes on this host over the runtime's UCX transport (default
UCX_TLS); 8 B ping-pong latency (half round trip) and one-way bandwidth of 1..256 MB messages, beside
single-thread memcpy of the same size. Run --reps times; medians per row. One more run with
UCX_TLS=tcp for context.

Part 2 — through a real 2-stage pipeline: bench/work/wide.onnx (x[16, 262144] f32; the PipeSplit
cut carries 1 MiB per sample; stage 1 does more work than stage 0), batch 16, M = 1, 4, 16
(16, 4, 1 MiB per message), run with pippyrun --trace and OMP_NUM_THREADS=1 (see below), and once
more at M = 16 with OpenMP's default. From the trace, per microbatch m:
  * transfer time when the receiver was idle: rank 1's "wait"(m) began before rank 0's "send"(m),
    so F1(m).start - send0(m).start is the message's flight (post to completion); bandwidth =
    bytes / that time;
  * non-overlap: the time rank 1 does not compute between the start of its first F and the end of its
    last (summed gaps between consecutive F: progress, receive completion, waiting), with the count
    of messages that rank 0 had posted while rank 1 was still computing the previous microbatch.
    If transfers overlapped the receiver's compute, the gaps would be about 0; if the receiver moves
    the data itself between computes, they are about (early messages x bytes / bandwidth).
OMP_NUM_THREADS=1: this model's stages have only element-wise kernels, and the backend applies its
1-thread setting to OpenMP only when a dense (MatMul/Gemm/Conv/...) kernel is created, so here oneDNN's
eltwise primitives run with OpenMP's default team (one thread per core) in each of the two processes;
their spinning workers then fight over the 2 cores (the last row shows the cost).
"""

import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ROW = re.compile(r"^\s*(\d+) MB\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s*$")
LAT = re.compile(r"latency 8 B \(half round trip\): ([0-9.]+) us")


def build_transport():
    src = os.path.join(C.HERE, "bench_transport.c")
    if not os.path.exists(src):
        return None
    exe = os.path.join(C.BUILD, "bench_transport")
    ucx = C.sh(["pkg-config", "--cflags", "--libs", "ucx"], check=False).stdout.split() or ["-lucp", "-luct", "-lucs"]
    C.sh(["cc", "-std=gnu11", "-O2", "-I" + os.path.join(C.ROOT, "common"), "-I" + os.path.join(C.ROOT, "runtime"),
          src, "-o", exe, "-L" + C.BUILD, "-lpippyrt", "-lpippy_common"] + ucx + ["-lnettle", "-lpthread", "-lm"])
    return exe


def run_transport(exe, quick, env=None):
    p = C.sh([exe] + (["--quick"] if quick else []), timeout=600, env=env)
    lat = float(LAT.search(p.stdout).group(1))
    rows = {}
    for line in p.stdout.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    return lat, rows


def part1(reps, quick, log):
    exe = build_transport()
    if not exe:
        log("bench/bench_transport.c not found; part 1 skipped")
        return None
    runs = []
    for r in range(reps):
        runs.append(run_transport(exe, quick))
        log("bench_transport run %d: latency %.2f us, %s" % (r, runs[-1][0], ", ".join(
            "%d MB %.2f GB/s (memcpy %.2f)" % (s, v[0], v[1]) for s, v in sorted(runs[-1][1].items()))))
    tcp = None
    try:
        tcp = run_transport(exe, True, {"UCX_TLS": "tcp"})
    except Exception as e:  # context only
        log("UCX_TLS=tcp run failed: %s" % str(e)[:300])
    sizes = sorted(runs[0][1])
    rows = []
    for s in sizes:
        t = C.median([r[1][s][0] for r in runs])
        m = C.median([r[1][s][1] for r in runs])
        rows.append(dict(mb=s, transport=t, memcpy=m, ratio=t / m, spread=C.spread([r[1][s][0] for r in runs]),
                         tcp=tcp[1].get(s, (None,))[0] if tcp else None))
    return dict(latency_us=C.median([r[0] for r in runs]), tcp_latency_us=tcp[0] if tcp else None, rows=rows)


def analyse_wide(trace, mb_bytes):
    evs = C.load_trace(trace)

    def lane(pid, name):
        return {e["args"]["microbatch"]: e for e in evs if e["pid"] == pid and e["name"] == name
                and isinstance(e.get("args"), dict) and "microbatch" in e["args"]}

    f0, f1, s0 = lane(0, "F"), lane(1, "F"), {}
    w1 = {e["args"]["microbatch"]: e for e in evs if e["pid"] == 1 and C.is_wait(e)
          and isinstance(e.get("args"), dict) and "microbatch" in e["args"]}
    for e in evs:  # first send event of each microbatch on rank 0
        if e["pid"] == 0 and C.is_send(e) and isinstance(e.get("args"), dict) and "microbatch" in e["args"]:
            m = e["args"]["microbatch"]
            if m not in s0 or e["ts"] < s0[m]["ts"]:
                s0[m] = e
    idle_bw, residual = [], []
    for m in sorted(f1):
        if m not in s0:
            continue
        send_t = s0[m]["ts"]
        prev_end = f1[m - 1]["ts"] + f1[m - 1]["dur"] if (m - 1) in f1 else None
        if prev_end is None or prev_end <= send_t:
            # rank 1 was idle when the send was posted: the whole flight is exposed
            dt = f1[m]["ts"] - send_t
            if dt > 0:
                idle_bw.append(mb_bytes / (dt * 1e-6) / 1e9)
    # after rank 1's first compute began, every moment it is not computing until its last compute is
    # receive work or waiting: if the transfers overlapped its compute this would be about 0
    ms = sorted(f1)
    if len(ms) > 1:
        gaps = sum(f1[m]["ts"] - (f1[m - 1]["ts"] + f1[m - 1]["dur"]) for m in ms[1:] if (m - 1) in f1)
        # messages that rank 0 posted before rank 1's previous compute ended (could have overlapped)
        early = sum(1 for m in ms[1:] if m in s0 and (m - 1) in f1
                    and s0[m]["ts"] < f1[m - 1]["ts"] + f1[m - 1]["dur"])
        residual.append((gaps / 1e3, early))
    f1_ms = [e["dur"] / 1e3 for e in f1.values()]
    f0_ms = [e["dur"] / 1e3 for e in f0.values()]
    return idle_bw, residual, f0_ms, f1_ms


_memcpy = []


def dram_memcpy():
    """Single-thread memcpy GB/s of 64 MiB (numpy copyto; larger than the caches), measured once."""
    if not _memcpy:
        src = np.ones(16 << 20, np.float32)
        dst = np.empty_like(src)
        _memcpy.append((64 << 20) / C.median(C.time_calls(lambda: np.copyto(dst, src), 10)) / 1e9)
    return _memcpy[0]


def part2(reps, log):
    info = C.model_info("wide")
    B = 16
    x = np.load(os.path.join(C.WORK, "wide.in.npy"))[:B]
    d = os.path.join(C.WORK, "transfer")
    os.makedirs(d, exist_ok=True)
    in_file = os.path.join(d, "in.npy")
    np.save(in_file, x)
    per_sample = info["cut_bytes_per_sample"]
    rows = []
    omp1 = {"OMP_NUM_THREADS": "1"}
    for M, env in ((1, omp1), (4, omp1), (16, omp1), (16, None)):
        out = os.path.join(d, "wide_m%d" % M)
        if env is not None:
            C.compile_model("wide", out, 2, B, M)
        bw, resid, f0, f1 = [], [], [], []
        for r in range(reps):
            tr = os.path.join(out, "trace%s%d.json" % ("" if env else "_ompdefault", r))
            C.run_pipeline(out, info["input"], in_file, info["output"], os.path.join(out, "y.npy"), tr, env=env)
            a, b, c, e = analyse_wide(tr, per_sample * B // M)
            bw += a
            resid += b
            f0 += c
            f1 += e
        mbytes = per_sample * B // M
        memcpy = dram_memcpy()
        row = dict(M=M, omp="1" if env else "default", mib=mbytes / 2**20, idle_bw=C.median(bw) if bw else None, n_bw=len(bw), memcpy=memcpy,
                   resid_ms=C.median([x[0] for x in resid]) if resid else None,
                   early=C.median([x[1] for x in resid]) if resid else None, n_resid=len(resid),
                   f0=C.median(f0), f1=C.median(f1))
        rows.append(row)
        log("wide M=%d OMP_NUM_THREADS=%s (%.0f MiB/message): transfer to an idle receiver %s GB/s (n=%d), memcpy %.1f GB/s; "
            "receiver's gaps between computes %s ms in all, %s messages posted during its compute "
            "(n=%d runs); F0 %.2f ms, F1 %.2f ms" % (
                M, row["omp"], row["mib"], "%.2f" % row["idle_bw"] if row["idle_bw"] else "-", len(bw), memcpy,
                "%.2f" % row["resid_ms"] if row["resid_ms"] is not None else "-",
                "%.0f" % row["early"] if row["early"] is not None else "-", len(resid), row["f0"], row["f1"]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="bench_transport --quick")
    ap.add_argument("--json")
    a = ap.parse_args()
    C.need_models(["wide"])
    print("bench_transfer: " + C.machine_line(), flush=True)
    log = lambda s: print(s, flush=True)  # noqa: E731
    p1 = part1(a.reps, a.quick, log)
    try:
        p2 = part2(a.reps, log)
    except Exception as e:
        print("part 2 FAILED: %s" % str(e)[:2000])
        p2 = None
    if p1:
        print("\nbench_transport (2 processes, runtime transport, default UCX_TLS): 8 B latency %.2f µs "
              "(UCX_TLS=tcp: %s µs); bandwidth, median of %d runs" % (
                  p1["latency_us"], "%.2f" % p1["tcp_latency_us"] if p1["tcp_latency_us"] else "-", a.reps))
        print(C.table(["size", "transport GB/s", "runs (min-max)", "memcpy GB/s", "transport/memcpy (>= 0.5)",
                       "UCX_TLS=tcp GB/s"],
                      [["%d MB" % r["mb"], "%.2f" % r["transport"], r["spread"], "%.2f" % r["memcpy"],
                        "%.2f %s" % (r["ratio"], "yes" if r["ratio"] >= 0.5 else "NO"),
                        "%.2f" % r["tcp"] if r["tcp"] else "-"] for r in p1["rows"]]))
    if p2:
        print("\nThrough a 2-stage pipeline (wide, batch 16, %d runs)" % a.reps)
        print(C.table(["M", "OMP_NUM_THREADS", "message", "to idle receiver GB/s", "memcpy 64 MiB GB/s", "ratio",
                       "receiver gaps between its F ms (sum)", "messages posted during its compute", "implied GB/s",
                       "F0 ms", "F1 ms"],
                      [[r["M"], r["omp"], "%.0f MiB" % r["mib"], "%.2f" % r["idle_bw"] if r["idle_bw"] else "-",
                        "%.1f" % r["memcpy"], "%.2f" % (r["idle_bw"] / r["memcpy"]) if r["idle_bw"] else "-",
                        "%.2f" % r["resid_ms"] if r["resid_ms"] is not None else "-",
                        "%.0f" % r["early"] if r["early"] is not None else "-",
                        "%.2f" % (r["early"] * r["mib"] * 2**20 / (r["resid_ms"] * 1e-3) / 1e9)
                        if r["early"] and r["resid_ms"] and r["resid_ms"] > 0.05 else "-",
                        "%.2f" % r["f0"], "%.2f" % r["f1"]] for r in p2]))
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(dict(transport=p1, pipeline=p2), f, indent=1)


if __name__ == "__main__":
    main()
