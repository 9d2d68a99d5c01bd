#!/usr/bin/env python3
"""Where the time goes in one stage: per-kernel times of pippyc's generated code, 1 thread, one
microbatch; beside onnxruntime's per-node profile (inference) or PyTorch's per-phase and per-op times
(training).

    python3 bench/profile.py MODEL [--batch B] [--reps 20] [--top 12]      # inference (bench/work/MODEL.onnx)
    python3 bench/profile.py --train mlp|gpt [--microbatches M] [--reps 20] [--top 12] [--no-torch]
    python3 bench/profile.py --quick      # tiny sizes, no ORT/torch: checks the tool (make test), < 30 s

pippyc side: `pippyc --emit-only --stages 1`, then the stage's C file is linked with bench/profile_stage.c
instead of the runtime (no UCX, no schedule; built with the CC, CFLAGS and LDLIBS of the folder's
Makefile): weights mapped, kernels created, then each phase run `reps` times plain and `reps` times with
a timer around every kernel's run function. Training (the configurations of bench/bench_train.py, one
microbatch of batch/M samples): F, B, W, then the runtime's optimizer step over the trained parameters
and the clearing of the gradients. A step is M x (F + B + W) + optimizer + clearing. Times are wall
clock and the thread's CPU time; the tables use CPU time (steadier on a shared machine).
onnxruntime side (inference): a session with enable_profiling (1 thread, ORT_ENABLE_ALL), `reps` runs
after warm-up; the "Node" events are summed per op type (ORT's fused op names, e.g. FusedMatMul, Gelu).
torch side (training): the same microbatch, torch.set_num_threads(1): forward + loss, backward and the
optimizer step timed apart (process_time, medians), and torch.profiler's self CPU time per aten op.
FLOPs of MatMul/Gemm/Conv are computed from the shapes in the generated comments.
"""

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common as C  # noqa: E402

HEAD = re.compile(r'^\s*/\* \[(\d+)\] (\S+) "([^"]*)"(.*)$')
INS = re.compile(r"^\s*\*\s+in:\s+(.*?)\s*$")
OUTS = re.compile(r"^\s*\*\s+out:\s+(.*?)\s*(\*/)?\s*$")
TENSOR = re.compile(r"(\S+) (\w+)\[([0-9,]*)\]")
KRUN = re.compile(r"pippy_kernel_run\(K\[(\d+)\]")
FUNCS = {"stage_forward(": "F", "stage_backward(": "B", "stage_weight(": "W"}
PHASES = ("F", "B", "W", "opt", "zero")


def shapes(s):
    return [(m.group(1), [int(x) for x in m.group(3).split(",") if x]) for m in TENSOR.finditer(s)]


def flops_of(op, ins, outs, notes):
    if not outs or not ins:
        return 0
    out = outs[0][1]
    n = int(np.prod(out)) if out else 1
    a = ins[0][1]
    if op in ("MatMul", "Gemm") and a:
        k = a[-2] if ("A transposed" in notes and len(a) >= 2) else a[-1]
        return 2 * n * k
    if op == "Conv" and len(ins) > 1 and len(ins[1][1]) >= 3:
        return 2 * n * int(np.prod(ins[1][1][1:]))
    return 0


def parse_stage(c_path):
    """[(phase, op, name, flops, kernel index or None)] in node order, from the stage's forward,
    backward and weight functions: each node's comment and the K[i] its pippy_kernel_run line uses
    (None: no kernel, e.g. a Reshape that is a view)."""
    nodes, phase, cur = [], None, None
    with open(c_path) as f:
        for line in f:
            if phase is None:
                for k, v in FUNCS.items():
                    if k in line and line.startswith("static void"):
                        phase = v
                continue
            if line.startswith("}"):
                phase = None
                continue
            m = HEAD.match(line)
            if m:
                cur = {"phase": phase, "op": m.group(2), "name": m.group(3), "notes": m.group(4), "ins": [],
                       "outs": [], "k": None}
                nodes.append(cur)
                continue
            if cur is None:
                continue
            m = INS.match(line)
            if m:
                cur["ins"] = shapes(m.group(1))
                continue
            m = OUTS.match(line)
            if m:
                cur["outs"] = shapes(m.group(1))
                continue
            k = KRUN.search(line)
            if k and cur["k"] is None:
                cur["k"] = int(k.group(1))
    return [(n["phase"], n["op"], n["name"], flops_of(n["op"], n["ins"], n["outs"], n["notes"]), n["k"])
            for n in nodes]


def makefile_vars(out_dir):
    """CC, CFLAGS and LDLIBS of the folder's Makefile, with its PIPPY_ROOT / PIPPY_BUILD filled in."""
    v = {}
    with open(os.path.join(out_dir, "Makefile")) as f:
        for line in f:
            m = re.match(r"^(\w+)\s*\??=\s*(.*)$", line.rstrip("\n"))
            if m:
                v[m.group(1)] = m.group(2)
    for key in ("CC", "CFLAGS", "LDLIBS"):
        for name in ("PIPPY_ROOT", "PIPPY_BUILD"):
            v[key] = v.get(key, "").replace("$(%s)" % name, v.get(name, ""))
    return v


def build_profiler(out_dir, stage=0):
    v = makefile_vars(out_dir)
    exe = os.path.join(out_dir, "profile_stage%d" % stage)
    C.sh(v["CC"].split() + v["CFLAGS"].split() + [os.path.join(out_dir, "stage%d.c" % stage),
                                                  os.path.join(C.HERE, "profile_stage.c"), "-o", exe]
         + v["LDLIBS"].split())
    return exe


def run_profiler(exe, weights, reps, inputs, optim=None):
    """{"init_us", "phases": {name: (wall, cpu)}, "total_instr_us", "k": {index: (wall, cpu)}} (µs)."""
    cmd = [exe, weights, "-r", str(reps)] + (["-o", optim] if optim else []) + list(inputs)
    p = C.sh(cmd, timeout=1800)
    res = {"phases": {}, "k": {}}
    for line in p.stdout.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "phase":
            res["phases"][f[1]] = (float(f[3]), float(f[5]))
        elif f[0] in ("init_us", "total_instr_us", "total_us"):
            res[f[0]] = float(f[1])
        elif f[0] == "k":
            res["k"][int(f[1])] = (float(f[2]), float(f[3]))
    return res


def by_op_table(kernels, total, top_title=None):
    """kernels: [(phase, op, name, flops, cpu_us)] -> rows by op type."""
    agg = defaultdict(lambda: [0.0, 0, 0])
    for _, op, _, fl, us in kernels:
        agg[op][0] += us
        agg[op][1] += 1
        agg[op][2] += fl
    rows = []
    for op, (us, n, fl) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
        rows.append([op, n, "%.0f" % us, "%.1f%%" % (100 * us / total if total else 0),
                     "%.0f" % (fl / us / 1e3) if fl and us else "-"])
    return rows


# ---------------------------------------------------------------- inference (beside onnxruntime)

def pippy_profile(name, batch, reps):
    d = os.path.join(C.WORK, "profile", name)
    os.makedirs(d, exist_ok=True)
    out_dir = os.path.join(d, "out")
    C.compile_model(name, out_dir, 1, batch, 1, ["--emit-only"])
    exe = build_profiler(out_dir)
    x = np.load(os.path.join(C.WORK, name + ".in.npy"))[:batch]
    xin = os.path.join(d, "in.npy")
    np.save(xin, np.ascontiguousarray(x))
    res = run_profiler(exe, os.path.join(out_dir, "stage0.weights"), reps, [xin])
    nodes = [n for n in parse_stage(os.path.join(out_dir, "stage0.c")) if n[4] is not None]
    if len(nodes) != len(res["k"]):
        print("warning: %d kernels timed, %d kernel calls parsed" % (len(res["k"]), len(nodes)))
    ks = [(ph, op, nm, fl, res["k"].get(k, (0.0, 0.0))[0]) for ph, op, nm, fl, k in nodes]
    return res.get("total_us"), res.get("total_instr_us"), ks


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
    runs.sort(key=lambda e: e["ts"])
    t_first = runs[-reps]["ts"] if len(runs) >= reps else 0
    by_op = defaultdict(float)
    for e in nodes:
        if e["ts"] >= t_first:
            by_op[e.get("args", {}).get("op_name", "?")] += e["dur"] / reps
    os.remove(path)
    return C.median(ts) * 1e6, dict(by_op)


def main_inference(a):
    C.need_models([a.model])
    info = C.model_info(a.model)
    B = a.batch or info["batch"]
    print("profile %s, batch %d, 1 thread; %s" % (a.model, B, C.machine_line()))
    ort_total, ort_ops = ort_profile(a.model, B, a.reps, info)
    total, instr, ks = pippy_profile(a.model, B, a.reps)
    ksum = sum(k[4] for k in ks)
    print("\npippyc forward %.0f µs (instrumented %.0f, sum of kernels %.0f); onnxruntime run %.0f µs "
          "(sum of its node events %.0f) -> ratio %.2f" %
          (total, instr, ksum, ort_total, sum(ort_ops.values()), total / ort_total))
    rows = [r + ["%.0f" % ort_ops[r[0]] if r[0] in ort_ops else "-"] for r in by_op_table(ks, ksum)]
    print("\npippyc kernels by op type (µs per forward, wall); ORT column: ORT's node time for the same op type")
    print(C.table(["op", "kernels", "µs", "share", "GFLOP/s", "ORT µs"], rows))
    print("\nonnxruntime nodes by op type (µs per run, after its graph optimizations)")
    orow = [[op, "%.0f" % us, "%.1f%%" % (100 * us / max(1e-9, sum(ort_ops.values())))]
            for op, us in sorted(ort_ops.items(), key=lambda kv: -kv[1])]
    print(C.table(["op", "µs", "share"], orow))
    print("\npippyc top %d kernels" % a.top)
    top = sorted(ks, key=lambda k: -k[4])[:a.top]
    print(C.table(["op", "node", "µs", "GFLOP/s"],
                  [[op, nm, "%.0f" % us, "%.0f" % (fl / us / 1e3) if fl and us else "-"]
                   for _, op, nm, fl, us in top]))


# ---------------------------------------------------------------- training (beside PyTorch)

def train_config(kind, quick):
    BT = C.bench_module("bench_train")
    sizes = BT.QUICK if quick else BT.FULL
    return BT, dict(sizes[kind])


def pippy_train_profile(kind, cfg, M, reps, BT, stages=1):
    """Compile (--emit-only), build each stage's profiler, run it on the first microbatch of the bench's
    data (zeros for inputs that come from another stage). Returns ([(result of run_profiler, parsed
    nodes)] per stage, optimizer kind, schedule.json)."""
    d = os.path.join(C.WORK, "profile", "train_%s_s%d_M%d_b%d" % (kind, stages, M, cfg["batch"]))
    os.makedirs(d, exist_ok=True)
    out_dir = os.path.join(d, "out")
    if os.path.isdir(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    C.sh([C.PIPPYC, cfg["onnx"], "--train"] + cfg["flags"] + ["--batch", str(cfg["batch"]), "--microbatches",
                                                               str(M), "--stages", str(stages), "--emit-only",
                                                               "-o", out_dir, "-q"])
    with open(os.path.join(out_dir, "schedule.json")) as f:
        sched = json.load(f)
    data = BT.datasets(kind, cfg)
    optim = sched["training"]["optimizer"]["kind"]
    per_stage = []
    for s in range(stages):
        names = [x["name"] for x in sched["stages"][s]["inputs"]]
        exe = build_profiler(out_dir, s)
        res = run_profiler(exe, os.path.join(out_dir, "stage%d.weights" % s), reps,
                           [data.get(n, "-") if x["from"] == "input" else "-"
                            for n, x in zip(names, sched["stages"][s]["inputs"])], optim)
        per_stage.append((res, parse_stage(os.path.join(out_dir, "stage%d.c" % s))))
    return per_stage, optim, sched


def torch_train_profile(kind, cfg, M, reps):
    """PyTorch on one microbatch (1 thread): forward + loss, backward, optimizer step (CPU ms, medians),
    and the self CPU time per aten op over `reps` whole steps (µs per step)."""
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != C.HERE]  # profile.py shadows `profile`
    import time

    import torch
    tt = C.bench_module("torch_train")
    torch.set_num_threads(1)
    size = dict(tt.FULL[kind])
    model = tt.build(kind, size)
    opt = tt.optimizer(kind, list(model.parameters()))
    x, t = tt.make_batch(kind, size, cfg["batch"] // M)
    lf = tt.loss_of(kind)
    ph = defaultdict(list)

    def step(record):
        c0 = time.process_time()
        loss = lf(model(x), t) / M
        c1 = time.process_time()
        loss.backward()
        c2 = time.process_time()
        opt.step()
        c3 = time.process_time()
        opt.zero_grad(set_to_none=True)
        c4 = time.process_time()
        if record:
            for k, v in (("F", c1 - c0), ("B+W", c2 - c1), ("opt", c3 - c2), ("zero", c4 - c3)):
                ph[k].append(1e3 * v)

    for _ in range(3):
        step(False)
    for _ in range(reps):
        step(True)
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            step(False)
    ops = [(e.key, e.self_cpu_time_total / reps, e.count // reps) for e in prof.key_averages()]
    ops.sort(key=lambda r: -r[1])
    return {k: statistics.median(v) for k, v in ph.items()}, ops


def phase_table(ph, M, th=None):
    """Rows of one stage's step: M x (F + B + W) + optimizer + zero, CPU ms (torch beside when given)."""
    mb_cpu = sum(ph[p][1] for p in ("F", "B", "W"))
    step_cpu = M * mb_cpu + ph["opt"][1] + ph["zero"][1]
    step_wall = M * sum(ph[p][0] for p in ("F", "B", "W")) + ph["opt"][0] + ph["zero"][0]
    rows = []
    for p in PHASES:
        n = M if p in ("F", "B", "W") else 1
        tv = None
        if th:
            tv = {"F": th["F"], "W": th["B+W"], "opt": th["opt"], "zero": th["zero"]}.get(p)
        rows.append([p, n, "%.3f" % (ph[p][1] / 1e3), "%.3f" % (ph[p][0] / 1e3),
                     "%.1f%%" % (100 * n * ph[p][1] / step_cpu),
                     ("%.3f" % tv if tv is not None else ("(in W)" if th and p == "B" else "-"))])
    t_step = M * (th["F"] + th["B+W"]) + th["opt"] + th["zero"] if th else None
    rows.append(["step", "", "%.2f" % (step_cpu / 1e3), "%.2f" % (step_wall / 1e3), "100%",
                 "%.2f" % t_step if th else "-"])
    return rows, step_cpu / 1e3, t_step


def kernel_tables(res, nodes, top):
    ph = res["phases"]
    ks = [(p, op, nm, fl, res["k"].get(k, (0.0, 0.0))[1]) for p, op, nm, fl, k in nodes if k is not None]
    if len([n for n in nodes if n[4] is not None]) != len(res["k"]):
        print("warning: %d kernels timed, %d kernel calls parsed" % (len(res["k"]), len(ks)))
    for p in ("F", "B", "W"):
        mine = [k for k in ks if k[0] == p]
        if not mine:
            continue
        tot = sum(k[4] for k in mine)
        print("\n%s: kernels by op type (µs of CPU per microbatch; %d kernels, %.0f µs; phase %.0f µs)" % (
            p, len(mine), tot, ph[p][1]))
        print(C.table(["op", "kernels", "µs", "share", "GFLOP/s"], by_op_table(mine, tot)))
    print("\npippyc top %d kernels (µs of CPU per microbatch)" % top)
    best = sorted(ks, key=lambda k: -k[4])[:top]
    print(C.table(["phase", "op", "node", "µs", "GFLOP/s"],
                  [[p, op, nm, "%.0f" % us, "%.0f" % (fl / us / 1e3) if fl and us else "-"]
                   for p, op, nm, fl, us in best]))
    return ks


def main_train(a):
    BT, cfg = train_config(a.train, a.quick)
    BT.ensure_models({a.train: cfg})
    M = a.microbatches or cfg["M"]
    mb = cfg["batch"] // M
    print("profile --train %s: batch %d, M %d (microbatch %d), %d stage(s), 1 thread; %s" % (
        a.train, cfg["batch"], M, mb, a.stages, C.machine_line()))
    per_stage, optim, sched = pippy_train_profile(a.train, cfg, M, a.reps, BT, a.stages)
    th, tops = (None, None)
    if a.stages == 1 and not a.no_torch and not a.quick and importlib.util.find_spec("torch"):
        th, tops = torch_train_profile(a.train, cfg, M, a.reps)
    elif not a.quick and a.stages == 1:
        print("torch: skipped (%s)" % ("--no-torch" if a.no_torch else "not installed"))
    if a.stages > 1:
        rows = []
        for s, (res, _) in enumerate(per_stage):
            ph, st = res["phases"], sched["stages"][s]
            pred = [st["predicted_forward_ms"], st["predicted_backward_ms"], st["predicted_weight_ms"]]
            meas = [ph[p][1] / 1e3 for p in ("F", "B", "W")]
            rows.append([s, st["nodes"] if isinstance(st["nodes"], int) else len(st["nodes"])] +
                        ["%.3f / %.3f" % (m, q) for m, q in zip(meas, pred)] +
                        ["%.2f / %.2f" % (sum(meas), sum(pred)), "%.2f" % (sum(meas) / sum(pred)),
                         "%.3f" % (ph["opt"][1] / 1e3)])
        tot = [sum(r[0]["phases"][p][1] for p in ("F", "B", "W")) for r in per_stage]
        print("\nPer stage, one microbatch: measured CPU ms / schedule.json's prediction")
        print(C.table(["stage", "nodes", "F", "B", "W", "F+B+W", "measured/predicted", "optimizer"], rows))
        print("stage balance (slowest / mean of F+B+W): %.2f" % (max(tot) / (sum(tot) / len(tot))))
    res = None
    for s, (res, nodes) in enumerate(per_stage):
        rows, step_cpu, t_step = phase_table(res["phases"], M, th)
        print("\nStage %d: one step = M x (F + B + W) + optimizer + clearing the gradients; ms (pippyc %s, M = %d)"
              % (s, optim, M))
        print(C.table(["phase", "per step", "pippyc cpu ms", "pippyc wall ms", "share", "torch cpu ms"], rows))
        if th:
            print("pippyc/torch (CPU, from the phases): %.2f" % (step_cpu / t_step))
        ks = kernel_tables(res, nodes, a.top)
    if tops:
        print("\ntorch: top %d aten ops by self CPU time (µs per microbatch step incl. the optimizer)" % a.top)
        print(C.table(["op", "calls", "self µs"], [[k, n, "%.0f" % us] for k, us, n in tops[:a.top]]))
    return res, nodes, ks


# ---------------------------------------------------------------- --quick: the checks `make test` runs

def main_quick(a):
    checks = C.Checks()
    check = checks.check

    # inference: the committed mlp sample, no ORT
    d = os.path.join(C.WORK, "profile", "quick_mlp")
    os.makedirs(d, exist_ok=True)
    out_dir = os.path.join(d, "out")
    src = os.path.join(C.ROOT, "samples", "models", "mlp.onnx")
    if os.path.isdir(out_dir):
        import shutil
        shutil.rmtree(out_dir)
    C.sh([C.PIPPYC, src, "--stages", "1", "--batch", "8", "--emit-only", "-o", out_dir, "-q"])
    exe = build_profiler(out_dir)
    res = run_profiler(exe, os.path.join(out_dir, "stage0.weights"), 5,
                       [os.path.join(C.ROOT, "samples", "models", "mlp.data", "input_x.npy")])
    nodes = [n for n in parse_stage(os.path.join(out_dir, "stage0.c")) if n[4] is not None]
    check(res.get("total_us", 0) > 0 and set(res["phases"]) == {"F"}, "inference: the forward is timed (%.0f µs)"
          % res.get("total_us", 0))
    check(len(nodes) == len(res["k"]) > 0 and sorted(n[4] for n in nodes) == sorted(res["k"]),
          "inference: every kernel call parsed from stage0.c is timed (%d)" % len(nodes))
    check(any(n[1] == "Gemm" and n[3] > 0 for n in nodes), "inference: Gemm FLOPs computed from the comments")
    # training: the committed training samples at the quick sizes, no torch
    for kind in ("mlp", "gpt"):
        a.train, a.microbatches = kind, None
        res, nodes, ks = main_train(a)
        with_k = [n for n in nodes if n[4] is not None]
        check(set(res["phases"]) == set(PHASES) and all(res["phases"][p][0] >= 0 for p in PHASES),
              "%s: the phases F, B, W, opt, zero are timed" % kind)
        check(res["phases"]["F"][1] > 0 and res["phases"]["W"][1] > 0 and res["phases"]["opt"][1] > 0,
              "%s: F, W and the optimizer step take CPU time" % kind)
        check(len(with_k) == len(res["k"]) and {n[0] for n in with_k} >= {"F", "W"},
              "%s: every kernel of F and W is parsed and timed (%d)" % (kind, len(with_k)))
        mm = [k for k in ks if k[1] in ("MatMul", "Gemm") and k[0] == "W"]
        check(mm and all(k[3] > 0 for k in mm), "%s: the backward MatMuls have FLOPs (%d)" % (kind, len(mm)))
    return checks.summary()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--train", choices=("mlp", "gpt"), help="a training step of bench_train's configuration")
    ap.add_argument("--microbatches", type=int, help="--train: M (default: the configuration's)")
    ap.add_argument("--stages", type=int, default=1, help="--train: profile each stage of this many (default 1)")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, no ORT/torch: checks the tool")
    a = ap.parse_args()
    if a.quick:
        a.reps = 5
        return main_quick(a)
    if a.train:
        main_train(a)
        return 0
    if not a.model:
        ap.error("give MODEL, --train mlp|gpt or --quick")
    main_inference(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
