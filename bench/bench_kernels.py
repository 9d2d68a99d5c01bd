#!/usr/bin/env python3
"""Kernel GFLOP/s through pippy's kernels vs oneDNN called directly: builds and runs
bench/bench_kernels.c (the backend engineer's; build command from its header) --reps times with
1 thread (and once with 2 threads for context), medians per row.

    python3 bench/bench_kernels.py [--reps 3]

bench_kernels times the fastest call in about a second per way, by thread CPU time on 1 thread (so
preemption by other processes on this shared machine does not count). Columns (GFLOP/s):
  pippy        pippy_kernel_run with the weights given at run time (plain layout)
  pippy const  weights given as in_const at create (reordered once) — what stage programs do
  direct       the oneDNN primitive with its preferred layouts, nothing reordered per call
  direct plain the oneDNN primitive on plain layouts
Target: single-core matmul, pippy (as stage programs use it: const weights) >= 80% of direct.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

ROW = re.compile(r"^(matmul .*?|conv.*?)\s{2,}([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+(\S+)\s+(-?[0-9.]+)%\s*$")


def build():
    src = os.path.join(C.HERE, "bench_kernels.c")
    if not os.path.exists(src):
        return None
    exe = os.path.join(C.BUILD, "bench_kernels")
    C.sh(["cc", "-std=gnu11", "-O2", "-I" + os.path.join(C.ROOT, "common"), "-I" + os.path.join(C.ROOT, "backend"),
          src, "-o", exe, "-L" + C.BUILD, "-lpippy_backend", "-lpippy_common", "-ldnnl", "-lgomp", "-lm"])
    return exe


def run(exe, threads):
    p = C.sh([exe, str(threads)], timeout=900)
    rows = {}
    for line in p.stdout.splitlines():
        m = ROW.match(line.rstrip())
        if m:
            rows[m.group(1).strip()] = [float(m.group(i)) for i in (2, 3, 4, 5)] + [m.group(6)]
    return rows, p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    print("bench_kernels: " + C.machine_line(), flush=True)
    exe = build()
    if not exe:
        print("bench/bench_kernels.c not found; skipped")
        return
    runs = []
    for r in range(a.reps):
        rows, text = run(exe, 1)
        if not rows:
            print(text)
            sys.exit("bench_kernels: could not parse its output")
        runs.append(rows)
        print("run %d: %s" % (r, "; ".join("%s %.0f/%.0f" % (k, v[1], v[2]) for k, v in rows.items())), flush=True)
    two, _ = run(exe, 2)
    out = []
    for case in runs[0]:
        med = [C.median([r[case][i] for r in runs]) for i in range(4)]
        ref = runs[0][case][4]
        out.append(dict(case=case, pippy=med[0], pippy_const=med[1], direct=med[2], direct_plain=med[3], ref=ref,
                        two=two.get(case)))
    print("\nKernels, 1 thread, GFLOP/s (median of %d runs; each the fastest call by thread CPU time)" % a.reps)
    print(C.table(["case", "pippy", "pippy const", "direct", "direct plain", "reference C",
                   "pippy const / direct (>= 0.8)", "pippy / direct plain", "2 threads: pippy const / direct"],
                  [[r["case"], "%.1f" % r["pippy"], "%.1f" % r["pippy_const"], "%.1f" % r["direct"],
                    "%.1f" % r["direct_plain"], r["ref"],
                    "%.2f %s" % (r["pippy_const"] / r["direct"], "yes" if r["pippy_const"] / r["direct"] >= 0.8 else "NO"),
                    "%.2f" % (r["pippy"] / r["direct_plain"]),
                    "%.1f / %.1f" % (r["two"][1], r["two"][2]) if r["two"] else "-"] for r in out]))
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
