#!/usr/bin/env python3
"""The dynamic schedule end to end (pippyc --schedule dynamic --window K): every rank runs whichever of
its actions is ready, at most K microbatches in flight per stage.

  - training, K = 1, 2, 4, the MLP and the GPT with its tied embedding (an ALLREDUCE, or REDUCE +
    BROADCAST with --tied transmit) in 2-4 stages, M = 2-8: every step's loss equals PyTorch's
    (samples/models/*.train, as test_train.py compares them), also with every byte over UCX, with
    two stages per rank (--ranks) and with two pipelines (--dp 2);
  - inference, K = 1, 2, the MLP, the GPT and the skip-connection model in 2-4 stages (one with two
    stages per rank): the outputs equal onnxruntime's (samples/models/*.data, as test_pipeline.py
    compares them);
  - the order run differs from the list: with every computation slowed (PIPPY_FAULT_DELAY_MS) and
    K = 4 > 2 stages, stage 0 runs forwards ahead of B(0) (the trace's "action" / "seq" arguments);
    the trained parameters are bit for bit those of the static 1F1B run, and the losses PyTorch's;
  - schedule.json of a dynamic compile passes the schema and validate_schedule.py; a window the
    stash slots cannot hold is refused by the stage programs, pippyc simulate and the validator,
    naming the window rule; a window without schedule "dynamic" (and the reverse) is refused;
    --window with another schedule and --window 0 are usage errors.

usage: test_dynamic.py BUILD_DIR [--quick]"""

import json
import os
import shutil
import sys

import numpy as np

import refcheck
from common import MODELS, ROOT, Results, build_dir, run, tail, tmpdir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainref  # noqa: E402
from test_train import compile_case, data_args  # noqa: E402

QUICK = "--quick" in sys.argv
STEPS = 8
VALIDATE = os.path.join(ROOT, "test", "e2e", "validate_schedule.py")

# (model, config, M, stages, window[, pippyc flags[, environment]])
TRAIN = [
    ("mlp_train", "sgd", 8, 2, 1),
    ("mlp_train", "sgd_momentum_wd", 4, 3, 2),
    ("mlp_train", "sgd", 2, 4, 4),
    ("gpt_train", "adamw", 8, 2, 4),
    ("gpt_train", "adamw", 4, 3, 1),
    ("gpt_train", "adamw_clip", 8, 4, 2),
    ("gpt_train", "adamw", 4, 4, 4, ["--tied", "transmit"]),
    ("gpt_train", "adamw", 8, 3, 2, [], {"PIPPY_SHM": "0"}),
    # two stages per rank (the interleaved list as the canonical order; hand-offs within a rank)
    ("gpt_train", "adamw", 4, 4, 2, ["--ranks", "2"]),
    ("skip_conn", "sgd_momentum", 4, 0, 4, ["--ranks", "2"]),
    # two pipelines (--dp 2), each dynamic
    ("gpt_train", "adamw", 2, 2, 2, ["--dp", "2"]),
]
# (model, stages, M, window[, pippyc flags[, environment]]); batch 8
INFER = [
    ("mlp", 3, 8, 1),
    ("gpt_op17", 2, 8, 2),
    ("skip", 4, 4, 1),
    ("gpt_op14", 3, 4, 2, [], {"PIPPY_SHM": "0"}),
    ("mlp", 4, 4, 2, ["--ranks", "2"]),
]
if QUICK:
    TRAIN = [TRAIN[0], TRAIN[3], TRAIN[5], TRAIN[8]]
    INFER = [INFER[0], INFER[2]]


def compiled(res, name, code, text, out):
    """Whether pippyc succeeded and its schedule.json passes validate_schedule.py (else a failure)."""
    if code != 0:
        res.check(name, False, "pippyc failed:\n        " + tail(text))
        return False
    code, text = run([sys.executable, VALIDATE, "-q", os.path.join(out, "schedule.json")])
    if code != 0:
        res.check(name, False, "validate_schedule.py refuses it:\n        " + tail(text))
    return code == 0


def train_case(res, b, model, config, M, S, K, flags=(), env=None):
    ref = trainref.load_ref(model)
    name = f"train {model} {config} M={M} stages={S or 'annotated'} window {K}" + \
        (" " + " ".join(flags) if flags else "") + (" (every byte over UCX)" if env else "")
    out = tmpdir("pippy-dyn-")
    code, text = compile_case(b, ref, config, M, S, "dynamic", out, ["--window", str(K)] + list(flags))
    if not compiled(res, name, code, text, out):
        return
    log = os.path.join(out, "loss.jsonl")
    code, text = run([os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--loss-log", log, "--timeout", "60"]
                     + data_args(ref), timeout=600, env=env)
    if code != 0:
        res.check(name, False, f"pippyrun exited {code}:\n        " + tail(text))
        return
    dp = int(flags[list(flags).index("--dp") + 1]) if "--dp" in flags else 1
    ok, report = trainref.check_losses(log, ref, config, M * dp)  # D replicas of M: one step of D*M
    res.check(name, ok, tail(report, 12))
    if ok:
        shutil.rmtree(out, ignore_errors=True)


def infer_case(res, b, model, S, M, K, flags=(), env=None):
    meta = json.load(open(os.path.join(MODELS, model + ".json")))
    data = os.path.join(MODELS, model + ".data")
    name = f"inference {model} stages={S} M={M} window {K}" + (" " + " ".join(flags) if flags else "") + \
        (" (every byte over UCX)" if env else "")
    out = tmpdir("pippy-dyn-")
    code, text = run([os.path.join(b, "pippyc"), os.path.join(MODELS, model + ".onnx"), "--stages", str(S), "--batch",
                      "8", "--microbatches", str(M), "--schedule", "dynamic", "--window", str(K), "-o", out, "-q"]
                     + list(flags), timeout=600)
    if not compiled(res, name, code, text, out):
        return
    args = []
    for k, iname in enumerate(meta["inputs"]):
        args += ["--input", f"{iname}={data}/input_{k}.pb"]
    for k, oname in enumerate(meta["outputs"]):
        args += ["--output", f"{oname}={out}/output_{k}.pb"]
    code, text = run([os.path.join(b, "pippyrun"), out, "--timeout", "60"] + args, timeout=300, env=env)
    if code != 0:
        res.check(name, False, f"pippyrun exited {code}:\n        " + tail(text))
        return
    ok, report = refcheck.check_outputs(data, out, len(meta["outputs"]))
    res.check(name, ok, tail(report))
    if ok:
        shutil.rmtree(out, ignore_errors=True)


def compute_order(trace_path):
    """Per rank, the compute events of the first step in the order run: [(name, mb, action, seq)]."""
    events = json.load(open(trace_path))
    out = {}
    for e in events:
        if e.get("cat") != "compute" or "seq" not in e.get("args", {}):
            continue
        out.setdefault(e["pid"], []).append((e["ts"], e["name"], e["args"]["microbatch"], e["args"]["action"],
                                              e["args"]["seq"]))
    first = {}
    for pid, evs in out.items():
        evs.sort()
        step = []
        for ev in evs:  # a step ends where seq starts again
            if step and ev[4] <= step[-1][3]:
                break
            step.append(ev[1:])
        first[pid] = step
    return first


def trained_params(path):
    import onnx
    from onnx import numpy_helper
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def order_case(res, b):
    """Slowed computations, K = 4 on 2 stages: stage 0 runs F(2) before B(0), which the list has
    first; same parameters as static 1F1B, same losses as PyTorch."""
    ref = trainref.load_ref("mlp_train")
    name = "the order run differs from the list (PIPPY_FAULT_DELAY_MS, window 4 > 2 stages)"
    outs, saved = {}, {}
    for sched, extra in (("dynamic", ["--window", "4"]), ("1f1b", [])):
        out = outs[sched] = tmpdir("pippy-dynorder-")
        code, text = compile_case(b, ref, "sgd", 4, 2, sched, out, extra)
        if code != 0:
            res.check(name, False, f"pippyc --schedule {sched} failed:\n        " + tail(text))
            return
        saved[sched] = os.path.join(out, "trained.onnx")
        cmd = [os.path.join(b, "pippyrun"), out, "--steps", "2", "--loss-log", os.path.join(out, "loss.jsonl"),
               "--timeout", "60", "--save", saved[sched], "--trace", os.path.join(out, "trace.json")] + data_args(ref)
        code, text = run(cmd, timeout=300, env={"PIPPY_FAULT_DELAY_MS": "25"})
        if code != 0:
            res.check(name, False, f"pippyrun ({sched}) exited {code}:\n        " + tail(text))
            return
    order = compute_order(os.path.join(outs["dynamic"], "trace.json"))
    stage0 = order.get(0, [])
    seen = [f"{n}{mb}" for n, mb, _, _ in stage0]
    listed = [a for _, _, a, _ in stage0]
    ok = len(stage0) == 12 and listed != sorted(listed) and seen.index("F2") < seen.index("B0")
    ok = ok and [s for _, _, _, s in stage0] == sorted(s for _, _, _, s in stage0)
    static = compute_order(os.path.join(outs["1f1b"], "trace.json")).get(0, [])
    ok = ok and [a for _, _, a, _ in static] == sorted(a for _, _, a, _ in static)
    res.check(name + ": stage 0 ran " + " ".join(seen), ok,
              f"expected F2 before B0 and list positions out of order; static 1F1B ran "
              f"{' '.join(n + str(mb) for n, mb, _, _ in static)}")
    a, s = trained_params(saved["dynamic"]), trained_params(saved["1f1b"])
    same = a.keys() == s.keys() and all(np.array_equal(a[k], s[k]) for k in a)
    res.check("  ... its trained parameters are bit for bit the static 1F1B run's", same,
              "differ: " + ", ".join(k for k in a if k in s and not np.array_equal(a[k], s[k])))
    ok, report = trainref.check_losses(os.path.join(outs["dynamic"], "loss.jsonl"), ref, "sgd", 4, steps=2)
    res.check("  ... and its losses PyTorch's", ok, tail(report))
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)


def edit(path, fn):
    d = json.load(open(path))
    fn(d)
    with open(path, "w") as f:
        json.dump(d, f)


def refusal_cases(res, b):
    ref = trainref.load_ref("mlp_train")
    out = tmpdir("pippy-dynerr-")
    code, text = compile_case(b, ref, "sgd", 4, 2, "dynamic", out, ["--window", "2"])
    if code != 0:
        res.check("compile for the refusals", False, tail(text))
        return
    path = os.path.join(out, "schedule.json")
    orig = open(path).read()
    d = json.loads(orig)
    ok = d["config"]["schedule"] == "dynamic" and d["config"]["window"] == 2 and \
        all(st["stash_slots"] == 2 for st in d["stages"])
    res.check("schedule.json: config.window 2, every stage 2 stash slots", ok, json.dumps(d["config"]))
    rt = [os.path.join(b, "pippyrun"), out, "--steps", "1", "--timeout", "30"] + data_args(ref)

    def window(k):
        return lambda d: d["config"].update(window=k)

    cases = [
        ("a window of 3 for 2 stash slots", window(3),
         ["window 3: stage", "may hold 3 microbatches", "keeps 2 stash slots", "the window rule"], "the window rule"),
        ("a window without schedule \"dynamic\"", lambda d: d["config"].update(schedule="1f1b"),
         ["config.schedule", "\"dynamic\" when config.window is given"], "window"),
        ("schedule \"dynamic\" without a window", lambda d: d["config"].pop("window"),
         ["config.window must be a whole number"], "window"),
    ]
    for what, fn, needles, oracle in cases:
        with open(path, "w") as f:
            f.write(orig)
        edit(path, fn)
        code, text = run(rt, timeout=120)
        res.check(f"stage programs refuse {what}", code != 0 and all(n in text for n in needles),
                  f"exit {code}: " + tail(text, 4))
        code, text = run([os.path.join(b, "pippyc"), "simulate", out])
        res.check(f"pippyc simulate refuses {what}", code != 0 and all(n in text for n in needles),
                  f"exit {code}: " + tail(text, 4))
        code, text = run([sys.executable, VALIDATE, path])
        res.check(f"validate_schedule.py refuses {what}", code == 1 and oracle in text, f"exit {code}: " + tail(text, 4))
    with open(path, "w") as f:
        f.write(orig)
    code, text = run(rt, timeout=120)
    res.check("the unedited file runs", code == 0, tail(text, 4))
    mlp = os.path.join(MODELS, "mlp.onnx")
    for what, args, needle in [("--window with --schedule gpipe", ["--schedule", "gpipe", "--window", "2"],
                                "--window 2 applies to --schedule dynamic"),
                               ("--window with --schedule auto", ["--schedule", "auto", "--window", "2"],
                                "--window 2 applies to --schedule dynamic (this is --schedule auto)"),
                               ("--window 0", ["--schedule", "dynamic", "--window", "0"], "--window")]:
        code, text = run([os.path.join(b, "pippyc"), mlp, "--stages", "2", "--batch", "8", "-o", out, "-q"] + args)
        res.check(f"pippyc refuses {what}", code in (1, 2) and needle in text, f"exit {code}: " + tail(text, 4))
    shutil.rmtree(out, ignore_errors=True)


def main():
    b = build_dir()
    res = Results("dynamic")
    for case in TRAIN:
        train_case(res, b, *case)
    for case in INFER:
        infer_case(res, b, *case)
    order_case(res, b)
    refusal_cases(res, b)
    res.finish()


if __name__ == "__main__":
    main()
