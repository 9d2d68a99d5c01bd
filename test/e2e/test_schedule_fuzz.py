#!/usr/bin/env python3
"""The schedule.json mutator, end to end: real ranks (pippyrun, real UCX) on mutated schedule.json
files of a 3-stage mlp (4 microbatches). Mutations: numbers out of range or of the wrong type,
keys deleted, entries repeated, stage lists with bad stages, programs and weights with paths, and
action lists edited the way a user might (actions deleted, repeated, swapped, SEND_F moved before
its F, ops renamed, microbatches and peers changed).

Every run must end by itself within the time limit (no hang), without a crash or a sanitizer
report, and either with exit 0 and the right output (compared with onnxruntime's) or with a
non-zero exit and an "error:" line. Runs that exit 0 with a wrong output are counted and shown:
whether action lists fit together (send/receive pairs, order) is the schedule validator's job;
PIPPY_SCHED_FUZZ_STRICT=1 makes them failures.

usage: test_schedule_fuzz.py BUILD_DIR [--quick]"""

import copy
import json
import os
import random
import shutil
import sys

from common import MODELS, Results, build_dir, run, run_gently, tail, tmpdir

import numpy as np

QUICK = "--quick" in sys.argv
CASES = 40 if QUICK else 120
LIMIT_S = 60  # a run that takes longer hangs
BAD_WORDS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "(killed by", "Segmentation fault")


def paths_of(o, prefix=()):
    """Every (path, value) of a JSON tree."""
    yield prefix, o
    if isinstance(o, dict):
        for k, v in o.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from paths_of(v, prefix + (i,))


def at(o, path):
    for k in path:
        o = o[k]
    return o


WEIRD = [-5, -1, 0, 3, 4, 255, 256, 300, 2 ** 31, 2 ** 53 + 1, 1e300, -1e300, 0.5, "4", None, True, [], {},
         "../../../../bin/true", "/bin/true", "stage9", "../stage0.weights", [-5], [1, 1], [99]]


def mutate_field(s, rng):
    """One field of the tree replaced, deleted or repeated."""
    paths = [p for p, _ in paths_of(s) if p and p[0] in ("config", "stages", "ranks")]
    p = rng.choice(paths)
    parent, key = at(s, p[:-1]), p[-1]
    kind = rng.randrange(3)
    if kind == 0:
        parent[key] = rng.choice(WEIRD)
    elif kind == 1:
        del parent[key]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    elif isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] + rng.choice([-300, -2, -1, 1, 2, 300])


def mutate_actions(s, rng):
    """An action list edited by hand."""
    acts = rng.choice(s["ranks"])["actions"]
    if not acts:
        return
    i, j = rng.randrange(len(acts)), rng.randrange(len(acts))
    kind = rng.randrange(6)
    if kind == 0:
        del acts[i]
    elif kind == 1:
        acts.insert(j, copy.deepcopy(acts[i]))
    elif kind == 2:
        acts[i], acts[j] = acts[j], acts[i]
    elif kind == 3:  # a SEND_F moved before its F
        sends = [k for k, a in enumerate(acts) if a.get("op") == "SEND_F"]
        if sends:
            k = rng.choice(sends)
            acts.insert(0, acts.pop(k))
    elif kind == 4:
        acts[i]["op"] = rng.choice(["F", "SEND_F", "RECV_F", "B", "NOPE", ""])
    else:
        acts[i][rng.choice(["mb", "peer"])] = rng.choice([-1, 0, 1, 2, 3, 4, 7])


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("schedule_fuzz")
    out = tmpdir("pippy-sfuzz-")
    code, text = run([pippyc, os.path.join(MODELS, "mlp.onnx"), "--stages", "3", "--batch", "8", "--microbatches",
                      "4", "-o", out, "-q"], timeout=600)
    if code != 0:
        res.check("compile mlp into 3 stages", False, tail(text))
        res.finish()
    sched_path = os.path.join(out, "schedule.json")
    original = json.load(open(sched_path))
    x = np.random.RandomState(11).randn(8, 64).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    import onnxruntime as ort
    ref = ort.InferenceSession(os.path.join(MODELS, "mlp.onnx")).run(None, {"x": x})[0]
    y_path = os.path.join(out, "y.npy")

    def attempt(sched, timeout_s):
        json.dump(sched, open(sched_path, "w"))
        if os.path.exists(y_path):
            os.unlink(y_path)
        code, text = run_gently([pippyrun, out, "--timeout", str(timeout_s), "--input", "x=" + os.path.join(out, "x.npy"),
                          "--output", "y=" + y_path], timeout=LIMIT_S)
        right = code == 0 and os.path.exists(y_path) and np.allclose(np.load(y_path), ref, rtol=1e-4, atol=1e-5)
        return code, text, right

    code, text, right = attempt(original, 20)
    res.check("the untouched schedule.json runs and gives onnxruntime's output", right, tail(text))
    rng = random.Random(2024)
    counts = {"right": 0, "error": 0, "wrong": 0}
    strict = os.environ.get("PIPPY_SCHED_FUZZ_STRICT") == "1"
    for c in range(CASES):
        s = copy.deepcopy(original)
        for _ in range(1 + rng.randrange(2)):
            (mutate_actions if rng.randrange(2) else mutate_field)(s, rng)
        code, text, right = attempt(s, 2)
        what = f"case {c}"
        bad = [w for w in BAD_WORDS if w in text]
        if code == 124:
            res.check(f"{what}: ends by itself (no hang)", False, tail(text))
        elif bad or code >= 128 or code < 0:
            res.check(f"{what}: no crash, no sanitizer report (exit {code})", False, tail(text, 30))
        elif code == 0 and right:
            counts["right"] += 1
        elif code == 0:
            counts["wrong"] += 1
            print(f"  note  {what}: exit 0 with a wrong output (an action list the structural check cannot judge)")
            if strict:
                res.check(f"{what}: a wrong output", False, json.dumps(s["ranks"])[:400])
        elif "error:" not in text:
            res.check(f"{what}: exit {code} with a clear error", False, tail(text))
        else:
            counts["error"] += 1
    print(f"schedule.json mutator: {CASES} runs: {counts['right']} right, {counts['error']} clear errors, "
          f"{counts['wrong']} wrong outputs without an error")
    res.check(f"{CASES} mutated schedules: no hang, crash or sanitizer report; each a right run or a clear error "
              f"({counts['right']} right, {counts['error']} errors)", counts["right"] + counts["error"] +
              counts["wrong"] == CASES and counts["error"] > 0)
    shutil.rmtree(out, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
