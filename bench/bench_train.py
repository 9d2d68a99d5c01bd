#!/usr/bin/env python3
"""pippyc's training steps beside PyTorch's, measured side by side in one run.

    python3 bench/bench_train.py                 # everything: single core, 2 ranks, schedules (~15 min on 2 cores)
    python3 bench/bench_train.py --only single   # or --only pipeline, --only schedules
    python3 bench/bench_train.py --reps 5 --json bench/work/results/train.json
    python3 bench/bench_train.py --quick         # tiny sizes, pippyc only (torch skipped), < 30 s: `make test`

Configurations (the issues' 7, 8 and 9; models and data as bench/torch_train.py's):
  mlp  PiPPy's seed MyNetwork (samples/models/mlp_train.onnx, 1.05 M params), MSE, SGD lr 0.05, batch 512
  gpt  the bench GPT (bench/work/gpt_train_bench.onnx: d 96, 4 blocks, T 64, vocab 512, tied head; exported
       by samples/make_train_refs.py --bench-models when missing), cross-entropy, AdamW lr 1e-3, batch 32
  single    one core: pippyc 1 stage, 1 thread, against torch in this process with torch.set_num_threads(1);
            M = 1 (the whole batch at once) and M = 8 (gradient accumulation over 8 microbatches)
  pipeline  2 ranks on 2 cores, M = 8 (mlp microbatch 64, gpt microbatch 4): pippyc --stages 2 with
            --schedule gpipe and 1f1b against torch.distributed.pipelining's ScheduleGPipe / Schedule1F1B
            (gloo, 2 processes, 1 thread each) and torch in one process with 2 threads; pippyc 1 stage with
            2 threads too. Scaling: pippyc's 1-stage step (1 core, same M) over its 2-stage step, against
            the ideal 2M/(M+1). Idle per rank from the --trace against schedule.json's prediction.
  schedules 2 ranks on 2 cores, M = 8 (SCHEDULE_CONFIGS): interleaved-1f1b (4 stages, --ranks 2), zb-h1
            (2 stages, and 4 stages with --ranks 2), dynamic --window 2 and 4, --dp 2 of one stage (M/2 and 1 microbatch per replica), each against
            pippyc 1f1b and torch.distributed.pipelining's counterparts (Interleaved1F1B;
            InterleavedZeroBubble and ZBVZeroBubble for zb-h1, 4 stages on 2 ranks); DP vs PP per rank with
            the bytes each moves per step. Every pippyc configuration's measured step against
            schedule.json's prediction.step_ms.

How it is timed: every configuration runs `--reps` times, the repetitions of all configurations
interleaved (pippyc, torch, pippyc, ...), so that the machine's load falls on both sides alike; each
repetition starts one configuration further on. Each configuration's repetition is also paired with the
1f1b repetition of the same round: the "paired" column gives the median of those ratios, how many were
below 1 and the one-sided sign test's p (the host's speed drifts by more than the margins between
schedules, and a ratio of two medians taken minutes apart can show a win that the pairs do not).
--models and --configs run a part of it (e.g. --configs interleaved-1f1b/R2,zb-h1 for a long A/B). A pippyc
run is `pippyrun OUT --steps N --loss-log LOG --trace T`: each step's wall time ("ms": from one step's end
to the next, so it includes feeding the batch) and the process's CPU time ("cpu_ms", rank 0) come from
the loss log; the first --warmup steps are dropped. torch: the same step (zero_grad, M x forward +
backward of loss/M, optimizer step), wall (perf_counter) and CPU (process_time) per step. Each
repetition gives a median over its steps; the tables give the median of the repetitions and their
range. On a shared machine the CPU-time ratio is the steadier one (the load average is printed).

Every compile of a run uses one cost-model file (bench/work/train/costmodel.json), measured by its first
compile, so that cuts and predictions do not depend on a per-machine cache measured at another time.

Per phase (from pippyc's trace, steps after the warm-up): F, B, W and optimizer time per step and rank,
the idle rest, and what the rank waited for its inputs ("idle" events).

Needs numpy; torch (CPU) for the torch side and the GPT export. Results: bench/work/results/train.json.
--quick uses the committed samples (mlp_train at batch 32, gpt_train at batch 8), 3 steps, and checks that
every number the full bench reports can be produced; its last line is "N passed, N failed".
"""

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402

# bench/profile.py would shadow the standard library's profile module, which torch imports lazily
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

TRAIN_WORK = os.path.join(C.WORK, "train")
# the cost model's rates for every compile of a run, measured by this run's first compile (so that
# the cuts and predictions do not depend on a per-machine cache measured at another time, and both
# builds of --compare-build cut alike)
COST_MODEL = os.path.join(TRAIN_WORK, "costmodel.json")

MLP_FLAGS = ["--loss", "mse", "--labels", "target", "--optimizer", "sgd", "--lr", "0.05"]
GPT_FLAGS = ["--loss", "cross_entropy", "--labels", "labels", "--optimizer", "adamw", "--lr", "0.001",
             "--betas", "0.9,0.999", "--eps", "1e-08", "--weight-decay", "0.01"]

# model: onnx file, pippyc flags, batch, pipeline microbatch, M, the data's shapes
FULL = {
    "mlp": {"onnx": os.path.join(C.ROOT, "samples", "models", "mlp_train.onnx"), "flags": MLP_FLAGS,
            "batch": 512, "M": 8, "in": 512, "out": 10, "steps": 20},
    "gpt": {"onnx": os.path.join(C.WORK, "gpt_train_bench.onnx"), "flags": GPT_FLAGS,
            "batch": 32, "M": 8, "vocab": 512, "T": 64, "steps": 10},
}
QUICK = {
    "mlp": dict(FULL["mlp"], batch=32, M=4, steps=3),
    "gpt": {"onnx": os.path.join(C.ROOT, "samples", "models", "gpt_train.onnx"), "flags": GPT_FLAGS,
            "batch": 8, "M": 2, "vocab": 128, "T": 16, "steps": 3},
}


# the schedules part (issue 9), at 2 ranks on 2 cores: label, stages, --schedule, more pippyc options,
# microbatches per replica (a function of the model's M) and torch.distributed.pipelining's counterparts
# (the names of torch_train.SCHEDULES). dp2 keeps the pipeline's microbatch size (M/2 per replica); dp2/M1
# runs each replica's half batch at once (data parallelism needs no microbatches).
SCHEDULE_CONFIGS = [
    ("interleaved-1f1b/R2", 4, "interleaved-1f1b", ("--ranks", "2"), lambda M: M, ("Interleaved1F1B",)),
    ("zb-h1", 2, "zb-h1", (), lambda M: M, ("InterleavedZeroBubble", "ZBVZeroBubble")),
    ("zb-h1/R2", 4, "zb-h1", ("--ranks", "2"), lambda M: M, ("InterleavedZeroBubble", "ZBVZeroBubble")),
    ("dynamic/K2", 2, "dynamic", ("--window", "2"), lambda M: M, ()),
    ("dynamic/K4", 2, "dynamic", ("--window", "4"), lambda M: M, ()),
    ("dp2", 1, "1f1b", ("--dp", "2"), lambda M: M // 2, ()),
    ("dp2/M1", 1, "1f1b", ("--dp", "2"), lambda M: 1, ()),
]


def have_torch():
    return importlib.util.find_spec("torch") is not None


# ---------------------------------------------------------------- data and models

def datasets(kind, cfg):
    """{input name: .npy path}: one batch of samples (every step trains on it, as torch_train does)."""
    os.makedirs(TRAIN_WORK, exist_ok=True)
    g = np.random.default_rng(7)
    n = cfg["batch"]
    if kind == "mlp":
        arrays = {"x": g.standard_normal((n, cfg["in"]), dtype=np.float32),
                  "target": g.standard_normal((n, cfg["out"]), dtype=np.float32)}
    else:
        idx = g.integers(0, cfg["vocab"], (n, cfg["T"]), dtype=np.int64)
        arrays = {"idx": idx, "labels": (3 * idx + 1) % cfg["vocab"]}
    paths = {}
    for name, a in arrays.items():
        p = os.path.join(TRAIN_WORK, "%s_b%d_%s.npy" % (kind, n, name))
        np.save(p, a)
        paths[name] = p
    return paths


def ensure_models(sizes):
    for kind, cfg in sizes.items():
        if os.path.exists(cfg["onnx"]):
            continue
        if not have_torch():
            sys.exit("bench_train: %s is missing and torch is not installed to export it" % cfg["onnx"])
        sys.path.insert(0, os.path.join(C.ROOT, "samples"))
        from make_train_refs import export_bench_models
        export_bench_models(C.WORK)


# ---------------------------------------------------------------- pippyc side

def compile_train(kind, cfg, stages, M, schedule, build=None, extra=(), tag=""):
    """pippyc --train into bench/work/train/<config>[_<build>]; build: another build folder's pippyc;
    extra: more pippyc options (--ranks, --dp, --window), named by tag in the folder's name."""
    out = os.path.join(TRAIN_WORK, "%s_s%d_%s%s_M%d_b%d%s" % (kind, stages, schedule, tag, M, cfg["batch"],
                                                              "_" + os.path.basename(build) if build else ""))
    if os.path.isdir(out):
        import shutil
        shutil.rmtree(out)
    C.sh([os.path.join(build, "pippyc") if build else C.PIPPYC, cfg["onnx"], "--train"] + cfg["flags"] +
         ["--batch", str(cfg["batch"]), "--microbatches", str(M), "--stages", str(stages),
          "--schedule", schedule, "-o", out, "-q", "--cost-model", COST_MODEL] + list(extra))
    with open(os.path.join(out, "schedule.json")) as f:
        sched = json.load(f)
    return out, sched


def read_loss_log(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    return rows


def run_pippyc(out, data, steps, threads, tag, build=None):
    log = os.path.join(out, "loss_%s.jsonl" % tag)
    trace = os.path.join(out, "trace_%s.json" % tag)
    cmd = [os.path.join(build, "pippyrun") if build else C.PIPPYRUN, out, "--steps", str(steps), "--loss-log", log, "--trace", trace,
           "--threads", str(threads)]
    for name, p in data.items():
        cmd += ["--input", "%s=%s" % (name, p)]
    C.sh(cmd, timeout=1200)
    return read_loss_log(log), trace


def stage_of(sched, rank, ev):
    """The stage a compute event of RANK ran: its action's (args.action indexes the rank's list in
    schedule.json), else the rank's only stage."""
    acts = sched["ranks"][rank]["actions"] if sched and rank < len(sched["ranks"]) else []
    k = ev.get("args", {}).get("action")
    if k is not None and k < len(acts) and acts[k].get("stage") is not None:
        return acts[k]["stage"]
    own = {a["stage"] for a in acts if a.get("op") == "F"}
    return own.pop() if len(own) == 1 else None


def trace_phases(trace_path, warmup, sched=None):
    """Per rank, per step after the warm-up (a step ends with its "optimizer" event): the step's wall
    time, its F/B/W/optimizer time, idle (the rest) and what the rank waited for inputs ("idle" events);
    medians over the steps, in ms. Also the count of F/B/W events per step, and with SCHED (schedule.json)
    the F/B/W time per stage the rank holds ("stage_ms": {stage: {"F": ms, ...}})."""
    evs = C.load_trace(trace_path)
    ranks = sorted({e["pid"] for e in evs})
    res = {}
    for r in ranks:
        mine = sorted((e for e in evs if e["pid"] == r), key=lambda e: e["ts"])
        ends = [e["ts"] + e["dur"] for e in mine if e["name"] == "optimizer"]
        steps = []
        for k in range(max(1, warmup), len(ends)):
            lo, hi = ends[k - 1], ends[k]
            inside = [e for e in mine if lo <= e["ts"] < hi]
            comp = [e for e in inside if e.get("cat") == "compute"]
            ph = {n: sum(e["dur"] for e in comp if e["name"] == n) for n in ("F", "B", "W", "optimizer")}
            cpu = sum(e.get("args", {}).get("cpu_us", e["dur"]) for e in comp)
            counts = {n: sum(1 for e in inside if e["name"] == n and e.get("cat") == "compute")
                      for n in ("F", "B", "W")}
            wait = sum(e["dur"] for e in inside if C.is_wait(e))
            coll = sum(e["dur"] for e in inside if e.get("cat") == "collective")
            step = hi - lo
            busy = sum(ph.values())
            per_stage = {}
            for e in comp:
                if e["name"] in ("F", "B", "W"):
                    st = per_stage.setdefault(stage_of(sched, r, e), {"F": 0.0, "B": 0.0, "W": 0.0})
                    st[e["name"]] += e["dur"] / 1e3
            steps.append({"stage_ms": per_stage, "step_ms": step / 1e3, "F_ms": ph["F"] / 1e3, "B_ms": ph["B"] / 1e3,
                          "W_ms": ph["W"] / 1e3, "optimizer_ms": ph["optimizer"] / 1e3,
                          "idle_ms": (step - busy) / 1e3, "input_wait_ms": wait / 1e3, "collective_ms": coll / 1e3,
                          "compute_cpu_ms": cpu / 1e3, "preempted_ms": (busy - cpu) / 1e3,
                          "idle_fraction": (step - busy) / step if step > 0 else float("nan"),
                          "counts": counts})
        if not steps:
            res[r] = None
            continue
        med = {k: statistics.median(s[k] for s in steps) for k in steps[0] if k not in ("counts", "stage_ms")}
        med["counts"] = steps[-1]["counts"]
        med["stage_ms"] = {st: {ph: statistics.median(s["stage_ms"].get(st, {}).get(ph, 0.0) for s in steps)
                                for ph in ("F", "B", "W")} for st in steps[-1]["stage_ms"]}
        med["steps"] = len(steps)
        res[r] = med
    return res


def replay(sched, per_mb):
    """Idle fraction per rank of schedule.json's action lists replayed with measured phase times:
    per_mb[stage] = {"F": ms, "B": ms, "W": ms} per microbatch. Each rank runs its actions in order; F of
    microbatch m waits for F of m on the stage before, B for B of m on the stage after (transfers cost
    nothing: on one machine only a note travels); the step ends when the last rank is done."""
    ranks = sched["ranks"]
    n_stages = len(sched["stages"])
    done = {}  # (op, stage, mb) -> end time
    pos = [0] * len(ranks)
    t = [0.0] * len(ranks)
    busy = [0.0] * len(ranks)
    progress = True
    while progress:
        progress = False
        for r, rk in enumerate(ranks):
            acts = rk["actions"]
            while pos[r] < len(acts):
                a = acts[pos[r]]
                op, st, mb = a["op"], a.get("stage", 0), a.get("mb", 0)
                if op not in ("F", "B", "W"):
                    pos[r] += 1
                    continue
                dep = None
                if op == "F" and st > 0:
                    dep = ("F", st - 1, mb)
                elif op == "B" and st < n_stages - 1:
                    dep = ("B", st + 1, mb)
                if dep is not None and dep not in done:
                    break
                start = max(t[r], done[dep] if dep is not None else 0.0)
                t[r] = start + per_mb[st][op]
                busy[r] += per_mb[st][op]
                done[(op, st, mb)] = t[r]
                pos[r] += 1
                progress = True
    if any(p < len(rk["actions"]) for p, rk in zip(pos, ranks)):
        return None
    step = max(t)
    return [(step - b) / step if step > 0 else float("nan") for b in busy]


def pippyc_job(kind, cfg, stages, M, schedule, threads, data, warmup, steps, build=None, extra=(), tag=""):
    """Compile once; returns a function running one repetition -> result dict."""
    out, sched = compile_train(kind, cfg, stages, M, schedule, build, extra, tag)
    pred = sched.get("prediction", {})
    state = {"n": 0}

    def run():
        state["n"] += 1
        rows, trace = run_pippyc(out, data, steps, threads, "t%d_r%d" % (threads, state["n"]), build)
        timed = rows[warmup:]
        return {"step_ms": statistics.median(r["ms"] for r in timed),
                "cpu_ms": statistics.median(r["cpu_ms"] for r in timed),
                "losses": [r["loss"] for r in rows], "steps_logged": len(rows),
                "phases": trace_phases(trace, warmup, sched)}

    meta = {"impl": "pippyc", "model": kind, "stages": stages, "M": M, "schedule": schedule, "sched": sched,
            "threads": threads, "batch": cfg["batch"], "out": out, "steps": steps, "build": build or C.BUILD,
            "extra": list(extra), "tag": tag, "ranks": len(sched["ranks"]), "dp": sched["config"].get("dp", 1),
            "predicted_step_ms": pred.get("step_ms"), "predicted_idle_ms": pred.get("idle_ms"),
            "ideal_bubble": pred.get("ideal_bubble_fraction")}
    return meta, run


# ---------------------------------------------------------------- torch side

def torch_module():
    return C.bench_module("torch_train")


def torch_size(kind, cfg):
    tt = torch_module()
    size = dict(tt.FULL[kind])
    size["batch"], size["M"] = cfg["batch"], cfg["M"]
    size["microbatch_pipe"] = cfg["batch"] // cfg["M"]
    return size


def torch_single_job(kind, cfg, M, threads, warmup, steps):
    def run():
        tt = torch_module()
        tt.torch.set_num_threads(threads)
        _, times, cpus = tt.train_single(kind, torch_size(kind, cfg), cfg["batch"], M, steps, warmup)
        return {"step_ms": 1e3 * statistics.median(times), "cpu_ms": 1e3 * statistics.median(cpus)}
    return {"impl": "torch", "model": kind, "M": M, "threads": threads, "batch": cfg["batch"]}, run


def torch_pipe_job(sizes, warmup, steps, schedules):
    """One run of bench/torch_train.py --only pipeline (2 processes, gloo) for the named schedules (its
    SCHEDULES' names) of every model, in a process of its own (torch.multiprocessing's spawn imports
    torch_train by name): {(kind, schedule): result}."""
    def run():
        tt = torch_module()
        for kind, cfg in sizes.items():
            want = (cfg["batch"] // cfg["M"], cfg["M"])
            have = (tt.FULL[kind]["microbatch_pipe"], tt.FULL[kind]["M"])
            if want != have:
                sys.exit("bench_train: torch_train.py's %s pipeline is microbatch %d x M %d, this bench's %d x %d"
                         % ((kind,) + have + want))
        path = os.path.join(TRAIN_WORK, "torch_pipeline.json")
        C.sh([sys.executable, os.path.join(HERE, "torch_train.py"), "--only", "pipeline", "--models",
              ",".join(sizes), "--schedules", ",".join(schedules), "--no-check", "--steps", str(steps), "--out", path],
             timeout=3600)
        with open(path) as f:
            res = json.load(f)["pipeline"]
        return {(r["model"], r["schedule"]): r for r in res}
    return {"impl": "torch.pipelining"}, run


# ---------------------------------------------------------------- the run

def spread(xs):
    return "%.1f-%.1f" % (min(xs), max(xs)) if xs else "-"


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def run_all(a, sizes, use_torch):
    warmup = a.warmup
    if os.path.exists(COST_MODEL):
        os.remove(COST_MODEL)
    jobs = []  # (key, meta, run)
    data = {k: datasets(k, cfg) for k, cfg in sizes.items()}
    parts = ["single", "pipeline", "schedules"] if a.only is None else [a.only]
    for kind, cfg in sizes.items():
        steps = a.steps or cfg["steps"]
        Ms = (1, cfg["M"]) if "single" in parts else (cfg["M"],)
        for M in Ms:  # the 1-stage M=8 run is also the pipeline's scaling baseline
            meta, run = pippyc_job(kind, cfg, 1, M, "gpipe", 1, data[kind], warmup, steps)
            jobs.append((("pippyc", kind, 1, "-", M, 1), meta, run))
            if use_torch:
                meta, run = torch_single_job(kind, cfg, M, 1, warmup, steps)
                jobs.append((("torch", kind, 1, "-", M, 1), meta, run))
        if "pipeline" in parts:
            M = cfg["M"]
            for sched in ("gpipe", "1f1b"):
                meta, run = pippyc_job(kind, cfg, 2, M, sched, 1, data[kind], warmup, steps)
                jobs.append((("pippyc", kind, 2, sched, M, 1), meta, run))
            # 2 threads in one process: fewer steps (under load, OpenMP's spinning makes them very slow)
            steps2 = a.steps or (steps if a.quick else max(warmup + 3, steps // 2))
            meta, run = pippyc_job(kind, cfg, 1, M, "gpipe", 2, data[kind], warmup, steps2)
            jobs.append((("pippyc", kind, 1, "-", M, 2), meta, run))
            if use_torch:
                meta, run = torch_single_job(kind, cfg, M, 2, warmup, steps2)
                jobs.append((("torch", kind, 1, "-", M, 2), meta, run))
        if "schedules" in parts:
            M = cfg["M"]
            if "pipeline" not in parts:  # 1f1b: what the schedules are measured against
                meta, run = pippyc_job(kind, cfg, 2, M, "1f1b", 1, data[kind], warmup, steps)
                jobs.append((("pippyc", kind, 2, "1f1b", M, 1), meta, run))
            for label, stages, sched, extra, mper, _ in SCHEDULE_CONFIGS:
                if a.configs and label not in a.configs:
                    continue
                tag = label[len(sched):] if label.startswith(sched) else "_" + label
                meta, run = pippyc_job(kind, cfg, stages, mper(M), sched, 1, data[kind], warmup, steps,
                                       extra=extra, tag=tag.replace("/", "_"))
                jobs.append((("pippyc", kind, stages, label, mper(M), 1), meta, run))
    torch_scheds = (["GPipe", "1F1B"] if "pipeline" in parts else []) + (
        ["1F1B"] * ("pipeline" not in parts) + sorted({t for c in SCHEDULE_CONFIGS if not a.configs or c[0] in a.configs for t in c[5]})
        if "schedules" in parts else [])
    if torch_scheds and use_torch:
        meta, run = torch_pipe_job(sizes, warmup, max(a.steps or 0, 8), torch_scheds)
        jobs.append((("torch.pipelining",), meta, run))

    if a.compare_build:  # the same pippyc configurations with another build, right after each
        more = []
        for key, meta, run in jobs:
            more.append((key, meta, run))
            if key[0] == "pippyc":
                m2, r2 = pippyc_job(key[1], sizes[key[1]], key[2], key[4], meta["schedule"], key[5], data[key[1]],
                                    warmup, meta["steps"], a.compare_build, meta["extra"], meta["tag"])
                more.append((("pippyc@B",) + key[1:], m2, r2))
        jobs = more
    results = {key: {"meta": meta, "reps": []} for key, meta, _ in jobs}
    load = [C.loadavg()]
    for rep in range(a.reps):
        # each repetition starts one job further on, so that no configuration always runs first (right after
        # the quiet wait) or always right after the same neighbour
        for key, meta, run in jobs[rep % len(jobs):] + jobs[:rep % len(jobs)]:
            busy = C.wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else None
            t0 = time.time()
            r = run()
            r["busy_before"] = busy
            results[key]["reps"].append(r)
            if key[0] != "torch.pipelining":
                print("rep %d %-8s %-4s stages %d %-5s M %d threads %d: %8.2f ms/step (cpu %.2f) [%.1f s%s]" % (
                    rep, key[0], key[1], key[2], key[3], key[4], key[5], r["step_ms"], r["cpu_ms"],
                    time.time() - t0, "" if busy is None else "; machine %.0f%% busy before" % (100 * busy)),
                    flush=True)
            else:
                print("rep %d torch.pipelining: %s [%.1f s]" % (rep, ", ".join(
                    "%s %s %.2f ms" % (k[0], k[1], v.get("step_ms_median", float("nan")))
                    for k, v in r.items() if isinstance(k, tuple)), time.time() - t0), flush=True)
        load.append(C.loadavg())
    return results, load


def per_stage_mb(reps, n_stages, M):
    """[{"F": ms, "B": ms, "W": ms} per microbatch] of each stage: the median over the repetitions and the
    ranks holding it of its per-step time over M; None when a stage has no times."""
    per = []
    for st in range(n_stages):
        xs = [x["stage_ms"][st] for r in reps for x in r["phases"].values() if x and st in x["stage_ms"]]
        if not xs:
            return None
        per.append({ph: med([x[ph] for x in xs]) / M for ph in ("F", "B", "W")})
    return per


def paired_ratios(results, key, base_key):
    """Each repetition's step over the 1f1b step of the same repetition (the two ran minutes apart at most,
    so a slow stretch of the host falls on both): the ratios, how many are below 1, and the one-sided sign
    test's p (the chance of that many wins or more if neither configuration were faster)."""
    a, b = results[key]["reps"], results[base_key]["reps"]
    xs = [x["step_ms"] / y["step_ms"] for x, y in zip(a, b) if x.get("step_ms") and y.get("step_ms")]
    wins = sum(1 for x in xs if x < 1)
    p = sum(math.comb(len(xs), j) for j in range(wins, len(xs) + 1)) / 2 ** len(xs) if xs else None
    return xs, wins, p


def torch_reps(tp, kind, name):
    return [r[(kind, name)]["step_ms_median"] for r in tp if (kind, name) in r and "step_ms_median" in r[(kind, name)]]


def summarize_schedules(results, sizes, out, stat, tp):
    """Issue 9's table (each schedule against pippyc 1f1b and torch's counterpart) and the DP vs PP one."""
    rows, dprows = [], []
    out["schedules"], out["dp_vs_pp"] = [], []
    for kind, cfg in sizes.items():
        M = cfg["M"]
        base_key = ("pippyc", kind, 2, "1f1b", M, 1)
        if not any(k[0] == "pippyc" and k[1] == kind and k[3] == SCHEDULE_CONFIGS[0][0] for k in results):
            continue
        base, _ = stat(base_key)
        base_cpu, _ = stat(base_key, "cpu_ms")
        confs = [("1f1b", 2, None, lambda m: m, ("1F1B",))] + [(c[0], c[1], None, c[4], c[5]) for c in SCHEDULE_CONFIGS]
        for label, stages, _, mper, tnames in confs:
            key = ("pippyc", kind, stages, label, mper(M), 1)
            if key not in results:
                continue
            meta = results[key]["meta"]
            p, pxs = stat(key)
            pc, _ = stat(key, "cpu_ms")
            pred = meta.get("predicted_step_ms")
            vs = [(t, med(torch_reps(tp, kind, t))) for t in tnames if torch_reps(tp, kind, t)]
            target = label.startswith(("interleaved", "zb"))
            pr, wins, sign_p = paired_ratios(results, key, base_key)
            r = {"model": kind, "config": label, "stages": stages, "ranks": meta["ranks"], "dp": meta["dp"],
                 "M": mper(M), "microbatch": cfg["batch"] // meta["dp"] // mper(M), "pippyc_ms": p,
                 "pippyc_ms_range": pxs, "pippyc_cpu_ms": pc, "vs_1f1b": p / base, "vs_1f1b_cpu": pc / base_cpu,
                 "torch": {t: v for t, v in vs}, "predicted_step_ms": pred,
                 "measured_over_predicted": p / pred if pred else None, "paired_vs_1f1b": pr,
                 "paired_wins": wins, "sign_test_p": sign_p}
            out["schedules"].append(r)
            rows.append([kind, label, "%dx%d" % (stages, meta["ranks"] // meta["dp"]) + ("x dp%d" % meta["dp"] if meta["dp"] > 1 else ""),
                         r["M"], r["microbatch"], "%.1f" % p, spread(pxs), "%.1f" % pc,
                         "%.2f%s" % (p / base, (" yes" if p < base else " NO") if target else ""),
                         "%.2f" % (pc / base_cpu),
                         "%.2f (%d of %d, p %.2g)" % (med(pr), wins, len(pr), sign_p) if label != "1f1b" and pr else "-",
                         "; ".join("%s %.1f = %.2f %s" % (t, v, p / v, "yes" if p / v <= 0.5 else "NO") for t, v in vs)
                         or "-",
                         "%.1f" % pred if pred else "-",
                         "%.2f %s" % (p / pred, "yes" if abs(p / pred - 1) <= 0.15 else "NO") if pred else "-"])
            if label in ("1f1b", "dp2", "dp2/M1"):
                sched = meta["sched"]
                cut = sum(e["bytes"] for e in sched.get("edges", [])) * mper(M)
                ar = sum(x["bytes"] for x in sched.get("reductions", []) if x.get("kind") == "data_parallel")
                reps = results[key]["reps"]
                for rank in range(meta["ranks"]):
                    xs = [rr["phases"].get(rank) for rr in reps if rr["phases"].get(rank)]
                    if not xs:
                        continue
                    d = {f: med([x[f] for x in xs]) for f in ("step_ms", "F_ms", "B_ms", "W_ms", "optimizer_ms",
                                                               "idle_ms", "input_wait_ms", "collective_ms")}
                    d.update({"model": kind, "config": label, "rank": rank, "cut_bytes_per_step": cut,
                              "allreduce_bytes_per_step": ar})
                    out["dp_vs_pp"].append(d)
                    dprows.append([kind, label, rank, "%.1f" % p, "%.1f" % d["F_ms"], "%.1f" % d["B_ms"],
                                   "%.1f" % d["W_ms"], "%.2f" % d["optimizer_ms"], "%.1f" % d["idle_ms"],
                                   "%.1f" % d["input_wait_ms"], "%.1f" % d["collective_ms"], "%.0f" % (cut / 1024),
                                   "%.0f" % (ar / 1024)])
    if rows:
        print("\nSchedules at 2 ranks on 2 cores (ms per step, medians; cpu: rank 0's process): each against pippyc "
              "1f1b (target for interleaved-1f1b and zb-h1: < 1) and torch.distributed.pipelining's counterpart "
              "(target <= 0.5), and against schedule.json's prediction (target within 15%)")
        print("paired: the median over the repetitions of each one's step / 1f1b's step in the same repetition, "
              "how many of them were below 1, and the sign test's p for that many (one-sided)")
        print(C.table(["model", "config", "stages x ranks", "M", "mb", "pippyc", "range", "cpu", "vs 1f1b", "cpu vs 1f1b",
                       "paired vs 1f1b (wins, p)", "torch counterpart ms = ratio (<= 0.5)", "predicted", "measured/predicted"], rows))
    if dprows:
        print("\nDP 2 x PP 1 against PP 2 x DP 1 per rank (ms per step, medians; idle = step - F - B - W - optimizer: "
              "with dp the all-reduce of the gradients is in it; collectives: the rank inside ALLREDUCE / STEP, waiting for "
              "the other members included; cut: activations and their gradients crossing "
              "the stage cut per step; all-reduce: the gradient bytes each replica reduces per step)")
        print(C.table(["model", "config", "rank", "step", "F", "B", "W", "optimizer", "idle", "input wait",
                       "collectives", "cut KiB", "all-reduce KiB"], dprows))


def summarize_predicted(results, out, stat):
    """Measured step against schedule.json's prediction.step_ms for every pippyc configuration."""
    rows = []
    out["predicted"] = []
    for key in sorted(k for k in results if k[0] == "pippyc"):
        meta = results[key]["meta"]
        pred = meta.get("predicted_step_ms")
        p, _ = stat(key)
        pc, _ = stat(key, "cpu_ms")
        if not pred:
            continue
        out["predicted"].append({"model": key[1], "stages": key[2], "config": key[3], "M": key[4],
                                 "threads": key[5], "ranks": meta["ranks"], "measured_ms": p, "predicted_ms": pred})
        rows.append([key[1], key[2], meta["ranks"], key[3], key[4], key[5], "%.1f" % p, "%.1f" % pc, "%.1f" % pred,
                     "%.2f %s" % (p / pred, "yes" if abs(p / pred - 1) <= 0.15 else "NO")])
    if rows:
        print("\nMeasured step (loss log, median) against schedule.json's prediction.step_ms (target: within 15%)")
        print(C.table(["model", "stages", "ranks", "config", "M", "threads", "measured", "cpu", "predicted",
                       "measured/predicted"], rows))


def summarize(results, sizes, load, use_torch):
    """The tables (printed) and a JSON-able summary."""
    def stat(key, field="step_ms"):
        reps = results.get(key, {}).get("reps", [])
        xs = [r[field] for r in reps if r.get(field) is not None]
        return med(xs), xs

    out = {"single": [], "pipeline": [], "phases": [], "loadavg": load}
    rows = []
    for kind, cfg in sizes.items():
        for M in sorted({k[4] for k in results if k[0] == "pippyc" and k[1] == kind and k[2] == 1 and k[3] == "-" and k[5] == 1}):
            p, pxs = stat(("pippyc", kind, 1, "-", M, 1))
            pc, pcx = stat(("pippyc", kind, 1, "-", M, 1), "cpu_ms")
            t, txs = stat(("torch", kind, 1, "-", M, 1))
            tc, tcx = stat(("torch", kind, 1, "-", M, 1), "cpu_ms")
            r = {"model": kind, "batch": cfg["batch"], "M": M, "pippyc_ms": p, "pippyc_ms_range": pxs,
                 "pippyc_cpu_ms": pc, "torch_ms": t if use_torch else None, "torch_ms_range": txs,
                 "torch_cpu_ms": tc if use_torch else None}
            out["single"].append(r)
            rows.append([kind, cfg["batch"], M, "%.1f" % p, spread(pxs), "%.1f" % pc,
                         "%.1f" % t if use_torch else "skipped", spread(txs), "%.1f" % tc if use_torch else "-",
                         "%.2f" % (p / t) if use_torch else "-", "%.2f" % (pc / tc) if use_torch else "-",
                         ("yes" if p / t <= 1.0 else "NO") if use_torch else "-"])
    if rows:
        print("\nOne core (1 thread), ms per step: median of the repetitions (range of their medians)")
        print(C.table(["model", "batch", "M", "pippyc", "range", "pippyc cpu", "torch", "range", "torch cpu",
                       "pippyc/torch", "cpu ratio", "<= 1.0"], rows))

    rows = []
    tp = results.get(("torch.pipelining",), {}).get("reps", [])
    for kind, cfg in sizes.items():
        M = cfg["M"]
        base, _ = stat(("pippyc", kind, 1, "-", M, 1))
        if not any(k[0] == "pippyc" and k[1] == kind and k[2] == 2 for k in results):
            continue
        t1, _ = stat(("torch", kind, 1, "-", M, 1))
        t2, t2x = stat(("torch", kind, 1, "-", M, 2))
        p2t, p2tx = stat(("pippyc", kind, 1, "-", M, 2))
        ideal = 2.0 * M / (M + 1)
        for sched, tname in (("gpipe", "GPipe"), ("1f1b", "1F1B")):
            key = ("pippyc", kind, 2, sched, M, 1)
            p, pxs = stat(key)
            txs = [r[(kind, tname)]["step_ms_median"] for r in tp
                   if (kind, tname) in r and "step_ms_median" in r[(kind, tname)]]
            t = med(txs)
            scal = base / p
            r = {"model": kind, "schedule": sched, "M": M, "microbatch": cfg["batch"] // M, "pippyc_ms": p,
                 "pippyc_ms_range": pxs, "torch_pipelining_ms": t if txs else None, "torch_pipelining_range": txs,
                 "torch_1thread_ms": t1 if use_torch else None, "torch_2threads_ms": t2 if use_torch else None,
                 "pippyc_1stage_ms": base, "pippyc_1stage_2threads_ms": p2t, "scaling": scal,
                 "ideal_scaling": ideal}
            out["pipeline"].append(r)
            ok_tp = "%.2f %s" % (p / t, "yes" if p < t else "NO") if txs else "-"
            ok_t2 = "%.2f %s" % (p / t2, "yes" if p < t2 else "NO") if use_torch else "-"
            rows.append([kind, sched, M, cfg["batch"] // M, "%.1f" % p, spread(pxs),
                         "%.1f" % t if txs else "skipped", ok_tp,
                         "%.1f" % t1 if use_torch else "-", "%.1f" % t2 if use_torch else "-", ok_t2,
                         "%.1f" % base, "%.1f" % p2t,
                         "%.2f (%.0f%% of %.2f) %s" % (scal, 100 * scal / ideal, ideal,
                                                      "yes" if scal >= 0.9 * ideal else "NO")])
    if rows:
        print("\n2 ranks on 2 cores, ms per step (median of the repetitions)")
        print(C.table(["model", "schedule", "M", "mb", "pippyc", "range", "torch.pipelining", "ratio (< 1)",
                       "torch 1 thr", "torch 2 thr", "pippyc/torch 2 thr (< 1)", "pippyc 1 stage",
                       "pippyc 1 stage 2 thr", "scaling 2 vs 1 stage (>= 0.9 ideal)"], rows))

    rows = []
    for key in sorted(k for k in results if k[0] == "pippyc"):
        reps = results[key]["reps"]
        meta = results[key]["meta"]
        ph = reps[-1]["phases"] if reps else {}
        for rank in sorted(ph):
            x = ph[rank]
            if x is None:
                continue
            allx = [r["phases"][rank] for r in reps if r["phases"].get(rank)]
            idle = med([v["idle_fraction"] for v in allx])
            step_pred = meta.get("predicted_step_ms")
            idle_pred = (meta["predicted_idle_ms"][rank] / step_pred
                         if step_pred and meta.get("predicted_idle_ms") and rank < len(meta["predicted_idle_ms"])
                         else None)
            row = {"model": key[1], "stages": key[2], "schedule": key[3], "M": key[4], "threads": key[5],
                   "rank": rank, "idle_fraction": idle, "predicted_idle_fraction": idle_pred,
                   "predicted_step_ms": step_pred}
            for f in ("step_ms", "F_ms", "B_ms", "W_ms", "optimizer_ms", "idle_ms", "input_wait_ms",
                      "compute_cpu_ms", "preempted_ms"):
                row[f] = med([v[f] for v in allx])
            out["phases"].append(row)
            ratio = idle / idle_pred if idle_pred else None  # a predicted idle of 0: no ratio
            multi = meta["ranks"] > 1
            rep_idle = None
            if multi:  # the schedule replayed with this run's own phase times per microbatch
                per = per_stage_mb(reps, key[2], key[4])
                rr = replay(meta["sched"], per) if per else None
                rep_idle = rr[rank] if rr else None
            row["replayed_idle_fraction"] = rep_idle
            rows.append([key[1], key[2], key[3], key[4], key[5], rank, "%.1f" % row["step_ms"],
                         "%.1f" % row["F_ms"], "%.1f" % row["B_ms"], "%.1f" % row["W_ms"],
                         "%.2f" % row["optimizer_ms"], "%.1f" % row["compute_cpu_ms"], "%.1f" % row["preempted_ms"],
                         "%.1f" % row["idle_ms"], "%.1f" % row["input_wait_ms"],
                         "%.1f%%" % (100 * idle), "%.1f%%" % (100 * idle_pred) if idle_pred is not None else "-",
                         ("%.2f %s" % (ratio, "yes" if ratio <= 1.1 else "NO")) if ratio is not None and multi
                         else "-",
                         "%.1f%%" % (100 * rep_idle) if rep_idle is not None else "-",
                         "%.2f" % (idle / rep_idle) if rep_idle else "-"])
    if rows:
        print("\npippyc per phase and rank, from the trace (ms per step, medians; F, B, W, optimizer: wall; "
              "compute cpu: their CPU time, preempted: wall - CPU; idle = step - F - B - W - optimizer)")
        print(C.table(["model", "stages", "schedule", "M", "threads", "rank", "step", "F", "B", "W", "optimizer",
                       "compute cpu", "preempted", "idle", "input wait", "idle %", "predicted idle %",
                       "measured/predicted (<= 1.1)", "replayed idle %", "measured/replayed"], rows))
        print("predicted: schedule.json's (the cost model's phase times); replayed: its action lists run with "
              "this run's measured F/B/W per microbatch (rank by rank, no transfer cost): what the schedule "
              "allows with these kernels, so measured/replayed is the runtime's own overhead")
    summarize_schedules(results, sizes, out, stat, tp)
    summarize_predicted(results, out, stat)

    rows = []
    for key in sorted(k for k in results if k[0] == "pippyc@B"):
        a_key = ("pippyc",) + key[1:]
        pa, pax = stat(a_key)
        pb, pbx = stat(key)
        ca, _ = stat(a_key, "cpu_ms")
        cb, _ = stat(key, "cpu_ms")
        out.setdefault("compare", []).append({"model": key[1], "stages": key[2], "schedule": key[3], "M": key[4],
                                              "threads": key[5], "this_ms": pa, "other_ms": pb, "this_cpu_ms": ca,
                                              "other_cpu_ms": cb, "this_range": pax, "other_range": pbx})
        rows.append([key[1], key[2], key[3], key[4], key[5], "%.1f" % pb, spread(pbx), "%.1f" % pa, spread(pax),
                     "%.2f" % (pa / pb), "%.1f" % cb, "%.1f" % ca, "%.2f" % (ca / cb)])
    if rows:
        print("\nThis build (A: %s) against %s (B), ms per step, interleaved" % (
            C.BUILD, results[sorted(k for k in results if k[0] == "pippyc@B")[0]]["meta"]["build"]))
        print(C.table(["model", "stages", "schedule", "M", "threads", "B", "range", "A", "range", "A/B", "B cpu",
                       "A cpu", "A/B cpu"], rows))
    return out


# ---------------------------------------------------------------- --quick: the checks `make test` runs

def quick_checks(results, summary):
    """Everything the full bench reports must be there and sensible. Returns the exit status."""
    checks = C.Checks()
    check = checks.check
    for key, r in sorted((k, v) for k, v in results.items() if k[0] == "pippyc"):
        meta, reps = r["meta"], r["reps"]
        name = "%s %d stage(s) %s M=%d threads %d" % (key[1], key[2], key[3], key[4], key[5])
        for rep in reps:
            check(rep["steps_logged"] == QUICK[key[1]]["steps"] and
                  all(np.isfinite(v) for v in rep["losses"]) and rep["step_ms"] > 0 and rep["cpu_ms"] > 0,
                  "%s: %d steps logged with finite losses, ms and cpu_ms" % (name, rep["steps_logged"]))
            ph = rep["phases"]
            check(sorted(ph) == list(range(meta["ranks"])) and all(ph[k] for k in ph),
                  "%s: the trace has every rank's steps (a step ends with its optimizer event)" % name)
            for rank, x in sorted(ph.items()):
                if not x:
                    continue
                n = sum(1 for act in meta["sched"]["ranks"][rank]["actions"] if act["op"] == "F")
                check(x["counts"] == {"F": n, "B": n, "W": n} and n == key[4] * key[2] * meta["dp"] // meta["ranks"],
                      "%s rank %d: F, B and W of each of the %d microbatches x stages of the rank in a step (%s)" % (
                          name, rank, n, x["counts"]))
                check(sorted(x["stage_ms"]) == sorted({act["stage"] for act in meta["sched"]["ranks"][rank]["actions"]
                                                       if act["op"] == "F"}) and
                      all(v["F"] > 0 for v in x["stage_ms"].values()),
                      "%s rank %d: F time of each stage it holds, from the trace's action numbers (%s)" % (
                          name, rank, sorted(x["stage_ms"])))
                check(0 <= x["idle_fraction"] < 1 and x["F_ms"] > 0 and x["optimizer_ms"] > 0,
                      "%s rank %d: idle fraction %.3f in [0, 1), F and optimizer times > 0" % (
                          name, rank, x["idle_fraction"]))
        check(meta["predicted_step_ms"] and meta["predicted_idle_ms"] and len(meta["predicted_idle_ms"]) == meta["ranks"],
              "%s: schedule.json predicts the step and each rank's idle time" % name)
    check(len(summary["single"]) == 4 and len(summary["pipeline"]) == 4,
          "the tables have 4 single-core rows (mlp, gpt x M = 1, M) and 4 pipeline rows (x gpipe, 1f1b)")
    check(all(np.isfinite(r["scaling"]) and r["scaling"] > 0 for r in summary["pipeline"]),
          "the scaling (1 stage over 2 stages) is a positive number for every pipeline row")
    two = [r for r in summary["phases"] if r["threads"] == 1 and r["schedule"] != "-"]
    check(len(two) == 2 * 2 * (2 + len(SCHEDULE_CONFIGS)) and
          all(r["replayed_idle_fraction"] is not None and 0 <= r["replayed_idle_fraction"] < 1 for r in two),
          "every schedule at 2 ranks (gpipe, 1f1b, %s) replays with the measured phase times per stage (an idle "
          "fraction per rank; %d rows)" % (", ".join(c[0] for c in SCHEDULE_CONFIGS), len(two)))
    sc = summary["schedules"]
    check(len(sc) == 2 * (1 + len(SCHEDULE_CONFIGS)) and
          all(np.isfinite(r["pippyc_ms"]) and r["pippyc_ms"] > 0 and np.isfinite(r["vs_1f1b"]) and
              r["measured_over_predicted"] and np.isfinite(r["measured_over_predicted"]) for r in sc),
          "the schedules table has 1f1b and the %d other configurations of both models, each with its step, "
          "its ratio to 1f1b and to its prediction (%d rows)" % (len(SCHEDULE_CONFIGS), len(sc)))
    check(all(len(r["paired_vs_1f1b"]) == 1 and r["sign_test_p"] == (0.5 if r["paired_wins"] else 1.0) for r in sc),
          "every row pairs its one repetition with 1f1b's (a ratio, and the sign test's p for 1 repetition)")
    il = [r for r in sc if r["config"].startswith("interleaved")]
    check(all(r["stages"] == 4 and r["ranks"] == 2 for r in il) and
          all(r["ranks"] == 2 and r["dp"] == 2 for r in sc if r["config"].startswith("dp2")),
          "interleaved-1f1b runs 4 stages on 2 ranks, dp2 2 replicas of 1 stage")
    dp = summary["dp_vs_pp"]
    check(len(dp) == 2 * 3 * 2 and all(r["allreduce_bytes_per_step"] > 0 for r in dp if r["config"].startswith("dp")) and
          all(r["cut_bytes_per_step"] > 0 for r in dp if r["config"] == "1f1b"),
          "DP vs PP: per rank phases of 1f1b, dp2 and dp2/M1 with the bytes each moves per step")
    check(len(summary["predicted"]) == sum(1 for k in results if k[0] == "pippyc"),
          "every pippyc configuration has measured/predicted (%d)" % len(summary["predicted"]))
    return checks.summary()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, pippyc only, 1 repetition: checks the tool")
    ap.add_argument("--only", choices=("single", "pipeline", "schedules"))
    ap.add_argument("--reps", type=int, default=3, help="repetitions of every configuration (default 3)")
    ap.add_argument("--steps", type=int, help="steps per run (default: mlp 20, gpt 10)")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped from each run (default 2)")
    ap.add_argument("--no-torch", action="store_true", help="pippyc only")
    ap.add_argument("--quiet-wait", type=float, default=0, metavar="S",
                    help="before each run wait up to S seconds for the machine to be at most 15%% busy over half a "
                         "second (on a shared machine; the busy fraction seen is recorded)")
    ap.add_argument("--compare-build", metavar="DIR",
                    help="also run every pippyc configuration with DIR's pippyc/pippyrun (another build, e.g. of an "
                         "earlier commit), interleaved, and print the A/B table")
    ap.add_argument("--models", type=lambda v: v.split(","), help="some models only: mlp,gpt (default both)")
    ap.add_argument("--configs", type=lambda v: v.split(","),
                    help="the schedules part: these configurations only, beside 1f1b (e.g. interleaved-1f1b/R2,zb-h1)")
    ap.add_argument("--json", help="results file (default bench/work/results/train.json)")
    a = ap.parse_args(argv)
    for exe in (C.PIPPYC, C.PIPPYRUN):
        if not os.path.exists(exe):
            sys.exit("bench_train: %s not found (make, or set BUILD=)" % exe)
    sizes = QUICK if a.quick else FULL
    if a.models:
        if not set(a.models) <= set(sizes):
            sys.exit("bench_train: --models: unknown %s (known: mlp, gpt)" % ", ".join(sorted(set(a.models) - set(sizes))))
        sizes = {k: v for k, v in sizes.items() if k in a.models}
    known = {c[0] for c in SCHEDULE_CONFIGS}
    if a.configs and not set(a.configs) <= known:
        sys.exit("bench_train: --configs: unknown %s (known: %s)" % (", ".join(sorted(set(a.configs) - known)),
                                                                    ", ".join(sorted(known))))
    if a.quick:
        a.reps, a.warmup, a.only = 1, 1, None
    use_torch = not a.quick and not a.no_torch and have_torch()
    print("bench_train: %s; git %s" % (C.machine_line(), os.popen("git -C %s rev-parse --short HEAD 2>/dev/null"
                                                                  % C.ROOT).read().strip() or "?"))
    if not use_torch:
        print("bench_train: torch skipped (%s): the pippyc side only" % (
            "--quick" if a.quick else "--no-torch" if a.no_torch else "torch not installed"))
    ensure_models(sizes)
    t0 = time.time()
    results, load = run_all(a, sizes, use_torch)
    summary = summarize(results, sizes, load, use_torch)
    print("\nload average (1, 5, 15 min) before and after each round: %s" % "; ".join(
        " ".join("%.1f" % v for v in x) for x in load if x))
    print("bench_train: %.0f s" % (time.time() - t0))
    path = a.json or os.path.join(C.WORK, "results", "train_quick.json" if a.quick else "train.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    raw = [{"key": list(k), "meta": {mk: mv for mk, mv in v["meta"].items() if mk != "sched"}, "reps": [{kk: vv for kk, vv in r.items() if kk != "losses"}
                                                        if isinstance(r, dict) and "losses" in r else
                                                        ({("/".join(kk) if isinstance(kk, tuple) else kk): vv for kk, vv in r.items()}
                                                         if k[0] == "torch.pipelining" else r)
                                                        for r in v["reps"]]} for k, v in results.items()]
    with open(path + ".tmp", "w") as f:
        json.dump({"summary": summary, "raw": raw, "machine": C.machine_line()}, f, indent=1, default=str)
    os.replace(path + ".tmp", path)
    print("bench_train: wrote %s" % path)
    return quick_checks(results, summary) if a.quick else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
