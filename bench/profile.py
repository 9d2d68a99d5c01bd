#!/usr/bin/env python3
"""Where the time goes in one stage: per-kernel times of pippyc's generated code beside onnxruntime's
own per-node profile, both on one thread, one batch.

    python3 bench/profile.py MODEL [--batch B] [--reps 20] [--top 12]

pippyc side: `pippyc --emit-only --stages 1 --batch B`, then the stage's C file is linked with
bench/profile_stage.c instead of the runtime (no UCX, no schedule): weights mapped, kernels created,
forward run `reps` times plain (total) and `reps` times with a timer around every kernel's run function.
onnxruntime side: a session with enable_profiling (1 thread, ORT_ENABLE_ALL), `reps` runs after warm-up;
the "Node" events are summed per op type (ORT's fused op names, e.g. FusedMatMul, Gelu).
FLOPs of MatMul/Gemm/Conv are computed from the shapes in the generated comments.
"""

import argparse
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

COMMENT = re.compile(r'^\s*/\* (\S+) "([^"]*)": (.*) -> (.*) \*/\s*$')
TENSOR = re.compile(r"(\S+) (\w+)\[([0-9,]*)\]")


def shapes(s):
    return [(m.group(1), [int(x) for x in m.group(3).split(",") if x]) for m in TENSOR.finditer(s)]


def flops_of(op, ins, outs):
    if not outs:
        return 0
    out = outs[0][1]
    n = int(np.prod(out)) if out else 1
    if op in ("MatMul", "Gemm") and ins and ins[0][1]:
        return 2 * n * ins[0][1][-1]
    if op == "Conv" and len(ins) > 1 and len(ins[1][1]) >= 3:
        return 2 * n * int(np.prod(ins[1][1][1:]))
    return 0


KRUN = re.compile(r"pippy_kernel_run\(K\[(\d+)\]")


def parse_forward(c_path):
    """[(op, name, flops, kernel index or None)] in node order, from stage_forward: each node's comment
    and the K[i] its pippy_kernel_run line uses (None: no kernel, e.g. a Reshape that is a view)."""
    nodes, in_fwd = [], False
    with open(c_path) as f:
        for line in f:
            if "stage_forward(" in line:
                in_fwd = True
                continue
            if in_fwd and line.startswith("}"):
                break
            if not in_fwd:
                continue
            m = COMMENT.match(line)
            if m:
                nodes.append([m.group(1), m.group(2), flops_of(m.group(1), shapes(m.group(3)), shapes(m.group(4))),
                              None])
                continue
            k = KRUN.search(line)
            if k and nodes and nodes[-1][3] is None:
                nodes[-1][3] = int(k.group(1))
    return [tuple(n) for n in nodes]


def build_profiler(out_dir):
    exe = os.path.join(out_dir, "profile_stage0")
    C.sh(["cc", "-std=gnu11", "-O2", "-I" + os.path.join(C.ROOT, "common"), "-I" + os.path.join(C.ROOT, "backend"),
          "-I" + os.path.join(C.ROOT, "runtime"), os.path.join(out_dir, "stage0.c"),
          os.path.join(C.HERE, "profile_stage.c"), "-o", exe, "-L" + C.BUILD, "-lpippy_backend",
          "-lpippy_common", "-ldnnl", "-lm", "-lpthread"])
    return exe


def pippy_profile(name, batch, reps, info):
    d = os.path.join(C.WORK, "profile", name)
    os.makedirs(d, exist_ok=True)
    out_dir = os.path.join(d, "out")
    C.compile_model(name, out_dir, 1, batch, 1, ["--emit-only"])
    exe = build_profiler(out_dir)
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))[:batch]
    xin = os.path.join(d, "in.npy")
    np.save(xin, np.ascontiguousarray(x))
    p = C.sh([exe, os.path.join(out_dir, "stage0.weights"), str(reps), xin], timeout=1800)
    total = instr = None
    per = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if f[0] == "total_us":
            total = float(f[1])
        elif f[0] == "total_instr_us":
            instr = float(f[1])
        elif f[0] == "k":
            per[int(f[1])] = float(f[2])
    nodes = parse_forward(os.path.join(out_dir, "stage0.c"))
    with_k = [n for n in nodes if n[3] is not None]
    if len(with_k) != len(per):
        print("warning: %d kernels timed, %d kernel calls parsed" % (len(per), len(with_k)))
    return total, instr, [(op, nm, fl, per.get(k, 0.0)) for op, nm, fl, k in with_k]


def ort_profile(name, batch, reps, info):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    os.makedirs(os.path.join(C.WORK, "profile", name), exist_ok=True)
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(C.WORK, "profile", name, "ort")
    s = ort.InferenceSession(os.path.join(C.WORK, name + ".onnx"), so, providers=["CPUExecutionProvider"])
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))[:batch]
    feed = {info["input"]: x}
    for _ in range(3):
        s.run(None, feed)
    ts = C.time_calls(lambda: s.run(None, feed), reps, warmup=0)
    path = s.end_profiling()
    with open(path) as f:
        evs = json.load(f)
    runs = [e for e in evs if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = [e for e in evs if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    # keep the last `reps` runs' nodes: those that start after the (reps)-th last model_run began
    runs.sort(key=lambda e: e["ts"])
    t_first = runs[-reps]["ts"] if len(runs) >= reps else 0
    by_op = defaultdict(float)
    for e in nodes:
        if e["ts"] >= t_first:
            by_op[e.get("args", {}).get("op_name", "?")] += e["dur"] / reps
    os.remove(path)
    return C.median(ts) * 1e6, dict(by_op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    C.need_models([a.model])
    info = C.model_info(a.model)
    B = a.batch or info["batch"]
    print("profile %s, batch %d, 1 thread; %s" % (a.model, B, C.machine_line()))
    ort_total, ort_ops = ort_profile(a.model, B, a.reps, info)
    total, instr, ks = pippy_profile(a.model, B, a.reps, info)
    by_op = defaultdict(lambda: [0.0, 0, 0])
    for op, nm, fl, us in ks:
        by_op[op][0] += us
        by_op[op][1] += 1
        by_op[op][2] += fl
    ksum = sum(k[3] for k in ks)
    print("\npippyc forward %.0f µs (instrumented %.0f, sum of kernels %.0f); onnxruntime run %.0f µs "
          "(sum of its node events %.0f) -> ratio %.2f" %
          (total, instr, ksum, ort_total, sum(ort_ops.values()), total / ort_total))
    rows = []
    for op, (us, n, fl) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        rows.append([op, n, "%.0f" % us, "%.1f%%" % (100 * us / ksum), "%.0f" % (fl / us / 1e3) if fl else "-",
                     "%.0f" % ort_ops[op] if op in ort_ops else "-"])
    print("\npippyc kernels by op type (µs per forward); ORT column: ORT's node time for the same op type")
    print(C.table(["op", "kernels", "µs", "share", "GFLOP/s", "ORT µs"], rows))
    print("\nonnxruntime nodes by op type (µs per run, after its graph optimizations)")
    orow = [[op, "%.0f" % us, "%.1f%%" % (100 * us / max(1e-9, sum(ort_ops.values())))]
            for op, us in sorted(ort_ops.items(), key=lambda kv: -kv[1])]
    print(C.table(["op", "µs", "share"], orow))
    print("\npippyc top %d kernels" % a.top)
    top = sorted(ks, key=lambda k: -k[3])[:a.top]
    print(C.table(["op", "node", "µs", "GFLOP/s"],
                  [[op, nm, "%.0f" % us, "%.0f" % (fl / us / 1e3) if fl and us else "-"] for op, nm, fl, us in top]))


if __name__ == "__main__":
    main()
