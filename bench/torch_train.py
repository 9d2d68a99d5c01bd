#!/usr/bin/env python3
"""PyTorch's training step times on the bench configurations: the anchors for pippyc's training benches.

    python3 bench/torch_train.py                 # everything (a few minutes on 2 cores)
    python3 bench/torch_train.py --quick         # tiny sizes, 2 steps: checks that every part runs (< 30 s)
    python3 bench/torch_train.py --only single   # or --only pipeline
    python3 bench/torch_train.py --export-models # also write bench/work/{mlp,gpt}_train_bench.onnx

Needs torch (CPU); without it prints "torch_train: skipped: torch not installed" and exits 0.

Models (samples/trainmodels.py; sizes in samples/make_train_refs.py):
  mlp  PiPPy's seed MyNetwork (512 -> 512 -> 1024 -> 256 -> 10, 1.05 M params), MSE loss, SGD lr 0.05
  gpt  the bench GPT (nanoGPT layout, tied head; BENCH_GPT: vocab 512, d 96, 4 blocks, 4 heads, T 64,
       0.50 M params), cross-entropy, AdamW lr 1e-3, wd 0.01

(a) one process, torch.set_num_threads(1) and (2): mlp at batch 512 with M = 1 and 8, gpt at batch 32 with
    M = 1 and 8. M > 1 is gradient accumulation: each microbatch's loss / M is back-propagated, then one
    optimizer step.
(b) torch.distributed.pipelining, gloo, 2 ranks on this host (1 thread each): ScheduleGPipe and
    Schedule1F1B with one stage per rank (2 stages), ScheduleInterleaved1F1B and
    ScheduleInterleavedZeroBubble with two stages per rank placed round-robin (rank 0: stages 0, 2), and
    ScheduleZBVZeroBubble and ScheduleDualPipeV (when torch has it) with two stages per rank in a V
    (rank 0: stages 0 and 3). mlp: microbatch 64, M = 8 (batch 512); gpt: microbatch 4, M = 8 (batch 32).
    Stages are contiguous layer groups (mlp: [layer0, layer1 | layer2, output_proj] or one layer each;
    gpt: embeddings go with the first blocks, ln_f and the head with the last). The tied head: when the
    embedding and the head are on different ranks, each holds a copy and their gradients are summed
    with an all-reduce before the optimizer step (as pippyc must do); in a V both are on rank 0 and
    share one Parameter. Gradients are scaled by 1/M in the loss (scale_grads=False: torch would scale
    a Parameter shared by two stages of one rank twice).

Every configuration trains on one fixed batch; its per-step losses are compared with the one-process run
(max_rel_loss_vs_single), which checks that the pipelined setup computes the same training.

Times: warm-up steps first (2; none with --quick), then the median and minimum of the timed steps
(--steps, default 8). A pipelined step is timed on each rank from a barrier to the end of its optimizer
step; the reported time is the slowest rank's. CPU time per step (time.process_time, all threads of the
process) is reported beside the wall time: on a shared machine it is the better estimate of the work, and
the JSON records the load average at the start and the end. Results go to bench/work/torch_train.json
(--out).
"""

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time

# bench/profile.py would shadow the standard library's profile module, which torch imports lazily
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import loadavg  # noqa: E402
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
except ImportError:
    print("torch_train: skipped: torch not installed")
    sys.exit(0)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
sys.path.insert(0, os.path.join(ROOT, "samples"))
import trainmodels as tm  # noqa: E402

FULL = {
    "mlp": {"model": {"in_dim": 512, "layer_dims": (512, 1024, 256), "out_dim": 10},
            "batch": 512, "microbatch_pipe": 64, "M": 8},
    "gpt": {"model": dict(tm.BENCH_GPT), "batch": 32, "microbatch_pipe": 4, "M": 8},
}
QUICK = {
    "mlp": {"model": {"in_dim": 64, "layer_dims": (64, 128, 32), "out_dim": 10},
            "batch": 64, "microbatch_pipe": 8, "M": 8},
    "gpt": {"model": {"vocab": 32, "d": 16, "n_head": 2, "n_layer": 4, "block": 8},
            "batch": 16, "microbatch_pipe": 2, "M": 8},
}

# name, class name in torch.distributed.pipelining, stages per rank, placement
SCHEDULES = [
    ("GPipe", "ScheduleGPipe", 1, "loop"),
    ("1F1B", "Schedule1F1B", 1, "loop"),
    ("Interleaved1F1B", "ScheduleInterleaved1F1B", 2, "loop"),
    ("InterleavedZeroBubble", "ScheduleInterleavedZeroBubble", 2, "loop"),
    ("ZBVZeroBubble", "ScheduleZBVZeroBubble", 2, "v"),
    ("DualPipeV", "ScheduleDualPipeV", 2, "v"),
]


# ---------------------------------------------------------------- models, data, optimizers

def build(kind, size):
    """The bench models with the seeds of make_train_refs.py's exports (mlp_train's 11, the bench GPT's 21)."""
    torch.manual_seed(11 if kind == "mlp" else 21)
    if kind == "mlp":
        m = size["model"]
        return tm.MyNetwork(m["in_dim"], m["layer_dims"], m["out_dim"])
    return tm.GPT(**size["model"])


def make_batch(kind, size, batch):
    g = torch.Generator().manual_seed(7)
    if kind == "mlp":
        m = size["model"]
        return torch.randn(batch, m["in_dim"], generator=g), torch.randn(batch, m["out_dim"], generator=g)
    m = size["model"]
    idx = torch.randint(0, m["vocab"], (batch, m["block"]), generator=g)
    return idx, (3 * idx + 1) % m["vocab"]


def loss_of(kind):
    return tm.mse_mean if kind == "mlp" else tm.cross_entropy_last_axis


def optimizer(kind, params):
    if kind == "mlp":
        return torch.optim.SGD(params, lr=0.05)
    return torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)


def summary(times, cpus):
    """Wall and CPU (process_time: every thread of the process) milliseconds per step."""
    return {"step_ms_median": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times),
            "cpu_ms_median": 1e3 * statistics.median(cpus), "timed_steps": len(times)}


# ---------------------------------------------------------------- (a) one process

def train_single(kind, size, batch, M, steps, warmup):
    """Per-step losses, wall times and CPU times of one process training on one fixed batch."""
    model = build(kind, size)
    opt = optimizer(kind, list(model.parameters()))
    x, t = make_batch(kind, size, batch)
    xs, ts = x.chunk(M), t.chunk(M)
    lf = loss_of(kind)
    losses, times, cpus = [], [], []
    for _ in range(warmup + steps):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for xm, tm_ in zip(xs, ts):
            loss = lf(model(xm), tm_) / M
            loss.backward()
            total += float(loss.detach())
        opt.step()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        losses.append(total)
    return losses, times[warmup:], cpus[warmup:]


def run_single(sizes, steps, warmup):
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for kind in ("mlp", "gpt"):
            batch, Mx = sizes[kind]["batch"], sizes[kind]["M"]
            for M in (1, Mx):
                _, times, cpus = train_single(kind, sizes[kind], batch, M, steps, warmup)
                r = {"model": kind, "threads": threads, "batch": batch, "M": M, **summary(times, cpus)}
                print("single  %-4s threads %d batch %4d M %d: %8.2f ms/step (min %.2f, cpu %.2f)" % (
                    kind, threads, batch, M, r["step_ms_median"], r["step_ms_min"], r["cpu_ms_median"]),
                    flush=True)
                out.append(r)
    return out


# ---------------------------------------------------------------- (b) torch.distributed.pipelining

class GPTPart(nn.Module):
    """Blocks of a GPT, with the embeddings when first and ln_f + the tied head when last."""

    def __init__(self, gpt, blocks, first, last):
        super().__init__()
        self.first, self.last = first, last
        if first:
            self.wte, self.wpe = gpt.wte, gpt.wpe
        self.h = nn.ModuleList([gpt.h[i] for i in blocks])
        if last:
            self.ln_f, self.lm_head = gpt.ln_f, gpt.lm_head

    def forward(self, x):
        if self.first:
            x = self.wte(x) + self.wpe(torch.arange(x.size(1)))
        for b in self.h:
            x = b(x)
        if self.last:
            x = self.lm_head(self.ln_f(x))
        return x


def split(kind, model, n):
    """n contiguous stage modules."""
    if kind == "mlp":
        layers = [getattr(model, "layer%d" % i) for i in range(model.num_layers)] + [model.output_proj]
        per = len(layers) // n
        return [nn.Sequential(*layers[i * per:(i + 1) * per]) for i in range(n)]
    nl = len(model.h)
    per = nl // n
    return [GPTPart(model, range(i * per, (i + 1) * per), i == 0, i == n - 1) for i in range(n)]


def placement(rank, world, per_rank, how):
    if per_rank == 1:
        return [rank]
    if how == "loop":
        return [rank + k * world for k in range(per_rank)]
    return [rank, 2 * world - 1 - rank]  # V: rank 0 holds the first and the last stage


def run_pipe(kind, size, sched, rank, world, steps, warmup):
    import torch.distributed.pipelining as pp
    name, cls_name, per_rank, how = sched
    n = world * per_rank
    M, mb = size["M"], size["microbatch_pipe"]
    model = build(kind, size)
    parts = split(kind, model, n)
    mine = placement(rank, world, per_rank, how)
    stages = [pp.PipelineStage(parts[i], i, n, torch.device("cpu")) for i in mine]
    lf = loss_of(kind)
    cls = getattr(pp, cls_name)
    sched_obj = cls(stages[0] if per_rank == 1 else stages, n_microbatches=M,
                    loss_fn=lambda out, tgt: lf(out, tgt) / M, scale_grads=False)
    params = list({id(p): p for i in mine for p in parts[i].parameters()}.values())
    opt = optimizer(kind, params)
    tied = None
    if kind == "gpt" and ((0 in mine) != (n - 1 in mine)):
        tied = parts[0].wte.weight if 0 in mine else parts[n - 1].lm_head.weight
    x, t = make_batch(kind, size, mb * M)
    losses, times, cpus = [], [], []
    for _ in range(warmup + steps):
        dist.barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        args = (x,) if 0 in mine else ()
        kw = {"target": t, "losses": []} if n - 1 in mine else {}
        sched_obj.step(*args, **kw)
        if tied is not None:  # with 2 ranks, each then holds one end of the tie
            dist.all_reduce(tied.grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        if "losses" in kw:
            losses.append(float(sum(float(v.detach()) for v in kw["losses"])))
    return losses, times[warmup:], cpus[warmup:]


def pipe_worker(rank, world, port, sizes, steps, warmup, result_path, kinds=("mlp", "gpt"), schedules=None):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=world)
    import torch.distributed.pipelining as pp
    results = []
    for kind in kinds:
        for sched in SCHEDULES:
            if schedules is not None and sched[0] not in schedules:
                continue
            if not hasattr(pp, sched[1]):
                if rank == 0:
                    results.append({"model": kind, "schedule": sched[0], "skipped": "not in this torch"})
                continue
            try:
                losses, times, cpus = run_pipe(kind, sizes[kind], sched, rank, world, steps, warmup)
                err = None
            except Exception as e:  # report the schedule, keep the others
                losses, times, cpus = [], [], []
                err = "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:300])
            every = [None] * world
            dist.all_gather_object(every, (losses, times, cpus, err))
            if rank == 0:
                errs = [e for _, _, _, e in every if e]
                r = {"model": kind, "schedule": sched[0], "ranks": world, "stages": world * sched[2],
                     "microbatch": sizes[kind]["microbatch_pipe"], "M": sizes[kind]["M"]}
                if errs:
                    r["error"] = errs[0]
                else:
                    per_rank = [summary(tt, cc) for _, tt, cc, _ in every]
                    slow = max(range(world), key=lambda i: per_rank[i]["step_ms_median"])
                    r.update(per_rank[slow])
                    r["per_rank_ms_median"] = [v["step_ms_median"] for v in per_rank]
                    r["per_rank_cpu_ms_median"] = [v["cpu_ms_median"] for v in per_rank]
                    r["losses"] = next(ll for ll, _, _, _ in every if ll)
                results.append(r)
                print("pipe    %-4s %-22s %s" % (kind, sched[0], (
                    "%8.2f ms/step (min %.2f; ranks %s; cpu %s)" % (
                        r["step_ms_median"], r["step_ms_min"],
                        " ".join("%.1f" % v for v in r["per_rank_ms_median"]),
                        " ".join("%.1f" % v for v in r["per_rank_cpu_ms_median"]))
                    if "error" not in r else "FAILED " + r["error"])), flush=True)
            if err:  # a failed schedule may leave messages in flight: start clean
                dist.barrier()
    if rank == 0:
        with open(result_path, "w") as f:
            json.dump(results, f)
    dist.barrier()
    dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pipeline(sizes, steps, warmup, kinds=("mlp", "gpt"), schedules=None, check=True):
    """Every schedule (or those named) for each kind, 2 ranks; check: compare the losses with one process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pipe.json")
        try:
            mp.spawn(pipe_worker, args=(2, free_port(), sizes, steps, warmup, path, tuple(kinds), schedules),
                     nprocs=2, join=True)
        except mp.ProcessExitedException as e:
            # gloo sometimes aborts a process at its teardown (seen here: "terminate called without an
            # active exception" after the last barrier); rank 0 wrote every result before it
            if not os.path.exists(path):
                raise
            print("torch_train: a pipeline process failed after the results were written (%s); kept them" % e)
        with open(path) as f:
            results = json.load(f)
    if not check:
        return results
    # the same training in one process (1 thread): the pipelined losses must match it
    torch.set_num_threads(1)
    ref = {}
    for r in results:
        if "losses" not in r:
            continue
        kind = r["model"]
        if kind not in ref:
            size = sizes[kind]
            ref[kind], _, _ = train_single(kind, size, size["microbatch_pipe"] * size["M"], size["M"],
                                           len(r["losses"]), 0)
        r["max_rel_loss_vs_single"] = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], ref[kind]))
    return results


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description="PyTorch training step times (anchors for pippyc's training benches)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 steps (a smoke run, < 30 s)")
    ap.add_argument("--only", choices=("single", "pipeline"))
    ap.add_argument("--steps", type=int, help="timed steps (default 8; 2 with --quick)")
    ap.add_argument("--out", help="result JSON (default bench/work/torch_train.json, or torch_train_quick.json)")
    ap.add_argument("--models", default="mlp,gpt", help="--only pipeline: the models (default mlp,gpt)")
    ap.add_argument("--schedules", help="--only pipeline: the schedules by name, e.g. GPipe,1F1B (default: all)")
    ap.add_argument("--no-check", action="store_true",
                    help="--only pipeline: skip the comparison of the losses with one process")
    ap.add_argument("--export-models", action="store_true",
                    help="write the bench-size models to bench/work/ (mlp_train_bench.onnx, gpt_train_bench.onnx)")
    a = ap.parse_args(argv)
    sizes = QUICK if a.quick else FULL
    steps = a.steps or (2 if a.quick else 8)
    warmup = 0 if a.quick else 2
    os.makedirs(WORK, exist_ok=True)
    out = a.out or os.path.join(WORK, "torch_train_quick.json" if a.quick else "torch_train.json")
    if a.export_models:
        from make_train_refs import export_bench_models  # onnx and onnxruntime only here
        for name, path in export_bench_models(WORK).items():
            print("exported %s (%d bytes)" % (path, os.path.getsize(path)))
    t0 = time.time()
    res = {"torch": torch.__version__, "python": platform.python_version(), "nproc": os.cpu_count(),
           "cpu": platform.processor() or platform.machine(), "quick": a.quick, "sizes": sizes,
           "steps": steps, "warmup": warmup, "loadavg_start": loadavg(),
           "params": {k: sum(p.numel() for p in build(k, sizes[k]).parameters()) for k in sizes}}
    if a.only in (None, "single"):
        res["single"] = run_single(sizes, steps, warmup)
    if a.only in (None, "pipeline"):
        res["pipeline"] = run_pipeline(sizes, steps, warmup, kinds=tuple(a.models.split(",")),
                                       schedules=a.schedules.split(",") if a.schedules else None,
                                       check=not a.no_check)
        bad = [r for r in res["pipeline"] if "error" in r or r.get("max_rel_loss_vs_single", 0) > 1e-4]
        for r in res["pipeline"]:
            if "max_rel_loss_vs_single" in r:
                print("pipe    %-4s %-22s losses vs one process: max rel %.1e" % (
                    r["model"], r["schedule"], r["max_rel_loss_vs_single"]))
    res["wall_s"] = time.time() - t0
    res["loadavg_end"] = loadavg()
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print("torch_train: wrote %s in %.1f s" % (out, res["wall_s"]))
    if a.only in (None, "pipeline") and bad:
        print("torch_train: %d pipelined configuration(s) failed or trained differently" % len(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
