#!/usr/bin/env python3
"""pippyc simulate and pippyc timeline, and the schedule.json format they read.

  - training and inference compiles: schedule.json passes the schema and validate_schedule.py's
    rules; `pippyc simulate --json` predicts the same step, bubble, busy and idle time per rank and
    microbatches in flight as validate_schedule.py's replay (an independent implementation in
    Python) and as the compile itself (prediction.step_ms);
  - the compiled GPipe, 1F1B and ZB-H1 lists with uniform stage costs (no W) and free transfers have
    the textbook bubble (p-1)/(m+p-1); with tf = tb = tw each rank of ZB-H1 idles (p-1)(tf+tb-tw)
    (Qi et al. 2023), of 1F1B (p-1)(tf+tb), by the independent replay too, and ZB-H1 holds p
    microbatches on every stage where 1F1B holds p-s;
  - 4 stages on 2 ranks: the compile keeps, of its simulated cut candidates within 1% of the
    fastest, the one that holds the least, and says so;
    those cuts given back as --split-before make the same stages and predicted step;
  - a hand-edited, valid list (the W's deferred) is accepted and predicted alike by both;
  - dynamic schedules (--schedule dynamic --window K, training and inference): both replay the
    policy and predict the same;
  - hand-broken lists are refused by simulate with the rank, action and rule, and by the oracle;
    values of the wrong type with where they are; no picture is written for them;
  - the SVG is well-formed XML (xml.etree) with one F/B/W box per computation and a row per rank;
  - `pippyc timeline` on the trace of a real pippyrun --trace of an inference pipeline: busy time,
    span and boxes against the trace's own events; hostile traces (markup, control characters,
    invalid UTF-8 in names; malformed events) give a well-formed SVG or a clear error.

usage: test_simulate.py BUILD_DIR"""

import copy
import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET

import numpy as np

from common import MODELS, ROOT, Results, build_dir, run, tail, tmpdir

SVG = "{http://www.w3.org/2000/svg}"
VALIDATE = os.path.join(ROOT, "test", "e2e", "validate_schedule.py")
TRAIN = ["--train", "--loss", "mse", "--labels", "target", "--optimizer", "sgd"]


def close(a, b, rel=1e-9, abs_=1e-12):
    return abs(a - b) <= abs_ + rel * abs(b)


def tied_model(path):
    """x @ W1 -> Relu -> @ W2 -> @ W1: W1 used by the first and the last stage (a tie)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.RandomState(0)
    w1 = numpy_helper.from_array((rng.randn(16, 16) * 0.2).astype(np.float32), "W1")
    w2 = numpy_helper.from_array((rng.randn(16, 16) * 0.2).astype(np.float32), "W2")
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"], name="mm1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="r1"),
             helper.make_node("MatMul", ["a1", "W2"], ["h2"], name="mm2"),
             helper.make_node("MatMul", ["h2", "W1"], ["logits"], name="mm3")]
    g = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 16])], [w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)


class Suite:
    def __init__(self, b):
        self.pippyc = os.path.join(b, "pippyc")
        self.pippyrun = os.path.join(b, "pippyrun")
        self.res = Results("simulate")
        self.tmp = tmpdir("pippy-sim-")

    def compile(self, name, args):
        out = os.path.join(self.tmp, name)
        code, text = run([self.pippyc] + args + ["-o", out, "-q", "--emit-only"])
        if code != 0:
            self.res.check(f"compile {name}", False, tail(text))
            return None
        return out

    def simulate(self, target, *extra):
        code, text = run([self.pippyc, "simulate", target] + list(extra))
        return code, text

    def simulate_json(self, target):
        code, text = self.simulate(target, "--json")
        try:
            return json.loads(text) if code == 0 else None, text
        except ValueError:
            return None, text

    def oracle(self, path):
        code, text = run([sys.executable, VALIDATE, "--predict", path])
        try:
            return (json.loads(text) if code == 0 else None), text
        except ValueError:
            return None, text

    def edited(self, out, name, fn):
        """A copy of out's schedule.json changed by fn(doc); its path."""
        doc = json.load(open(os.path.join(out, "schedule.json")))
        fn(doc)
        path = os.path.join(self.tmp, name + ".json")
        json.dump(doc, open(path, "w"), indent=1)
        return path


def find(acts, op, mb=None, stage=None):
    for k, a in enumerate(acts):
        if a["op"] == op and (mb is None or a.get("mb") == mb) and (stage is None or a.get("stage") == stage):
            return k
    raise AssertionError(f"no {op} mb {mb}")


def check_agree(t, name, path, compiled_step=None):
    """simulate --json against the oracle's replay (and the compile's own prediction)."""
    got, text = t.simulate_json(path)
    want, otext = t.oracle(path)
    if got is None or want is None:
        t.res.check(f"{name}: simulate and validate_schedule.py both accept it", False,
                    f"simulate: {tail(text)}\n        oracle: {tail(otext)}")
        return None
    rows = got["ranks"]
    dp = json.load(open(path))["config"].get("dp", 1)
    if dp > 1 and len(want["busy_ms"]) == dp * len(rows):  # simulate shows replica 0; the others run its lists
        R = len(rows)
        same = all(close(want[k][i], want[k][i % R]) for k in ("busy_ms", "idle_ms") for i in range(dp * R))
        t.res.check(f"{name}: every replica runs as replica 0 in the replay", same, str(want))
        want = dict(want, busy_ms=want["busy_ms"][:R], idle_ms=want["idle_ms"][:R],
                    collective_ms=want["collective_ms"][:R])
    ok = (close(got["step_ms"], want["step_ms"]) and close(got["bubble_fraction"], want["bubble_fraction"])
          and len(rows) == len(want["busy_ms"])
          and all(close(r["busy_ms"], b) and close(r["idle_ms"], i) and close(r["collective_ms"], c)
                  for r, b, i, c in zip(rows, want["busy_ms"], want["idle_ms"], want["collective_ms"])))
    t.res.check(f"{name}: simulate predicts step {got['step_ms']:.6f} ms, bubble {got['bubble_fraction']:.4f}, busy/idle "
                f"and time in collectives ({', '.join('%.4f' % r['collective_ms'] for r in rows)} ms) per rank as the "
                f"independent replay", ok, f"{got} vs {want}")
    if "in_flight" in rows[0]:
        held = want["in_flight"]
        if len(held) != len(rows):  # the replay counts per stage, simulate per rank (its stages' sum)
            stages = json.load(open(path))["stages"]
            held = [sum(h for h, st in zip(held, stages) if st["rank"] == r) for r in range(len(rows))]
        t.res.check(f"{name}: microbatches in flight {[r['in_flight'] for r in rows]} as the replay's",
                    [r["in_flight"] for r in rows] == held, str(want["in_flight"]))
    if compiled_step is not None:
        t.res.check(f"{name}: equals the compile's own prediction {compiled_step:.6f} ms",
                    close(got["step_ms"], compiled_step), str(got["step_ms"]))
    return got


def check_svg(t, name, svg, n_rows, counts, title_has):
    try:
        root = ET.parse(svg).getroot()
    except (OSError, ET.ParseError) as e:
        t.res.check(f"{name}: the SVG is well-formed XML", False, str(e))
        return None
    rects = [r for r in root.iter(SVG + "rect")]
    got = {k: sum(1 for r in rects if r.get("class") == k) for k in counts}
    texts = ["".join(e.itertext()) for e in root.iter(SVG + "text")]
    rows = [e for e in root.iter(SVG + "text") if e.get("class") == "row"]
    legend = {"F forward", "B input gradients", "W weight gradients", "send", "receive", "idle", "collective"}
    t.res.check(f"{name}: SVG 1.1, a row per rank ({len(rows)}), boxes {got} (+ one legend square each), a legend, "
                f"the title", root.tag == SVG + "svg" and root.get("version") == "1.1" and len(rows) == n_rows
                and got == {k: v + 1 for k, v in counts.items()} and legend <= set(texts)
                and any(title_has in x for x in texts) and root.find(SVG + "script") is None,
                f"rows {len(rows)}, boxes {got} vs {counts}, title '{title_has}' in {texts[:3]}")
    return root


def training_cases(t):
    tied = os.path.join(t.tmp, "tied.onnx")
    tied_model(tied)
    mlp = os.path.join(MODELS, "mlp_train.onnx")
    cases = [("mlp_train gpipe S=3 M=4", [mlp, "--batch", "16", "--microbatches", "4", "--stages", "3",
                                          "--schedule", "gpipe"] + TRAIN, 3, 4),
             ("mlp_train 1f1b S=3 M=8", [mlp, "--batch", "16", "--microbatches", "8", "--stages", "3",
                                         "--schedule", "1f1b"] + TRAIN, 3, 8),
             ("tied 1f1b S=3 M=4", [tied, "--batch", "8", "--microbatches", "4", "--split-before", "mm2,mm3",
                                    "--schedule", "1f1b", "--train", "--loss", "cross_entropy", "--labels", "labels",
                                    "--optimizer", "adamw"], 3, 4),
             ("mlp_train zb-h1 S=3 M=8", [mlp, "--batch", "16", "--microbatches", "8", "--stages", "3",
                                          "--schedule", "zb-h1"] + TRAIN, 3, 8),
             ("tied zb-h1 S=3 M=4", [tied, "--batch", "8", "--microbatches", "4", "--split-before", "mm2,mm3",
                                     "--schedule", "zb-h1", "--train", "--loss", "cross_entropy", "--labels", "labels",
                                     "--optimizer", "adamw", "--tied", "transmit"], 3, 4),
             # data parallel: each stage's gradient all-reduced over the replicas (priced by the ring's bytes)
             ("dp2 mlp_train 1f1b S=2 M=4", [mlp, "--batch", "16", "--microbatches", "4", "--stages", "2", "--dp", "2",
                                             "--schedule", "1f1b"] + TRAIN, 2, 4),
             # the dynamic schedule: both replay its policy (schedule_dyn.h / the schema's config.window)
             ("dynamic mlp_train window 2 S=3 M=8", [mlp, "--batch", "16", "--microbatches", "8", "--stages", "3",
                                                     "--schedule", "dynamic", "--window", "2"] + TRAIN, 3, 8),
             ("dynamic-tied window 1 S=3 M=4", [tied, "--batch", "8", "--microbatches", "4", "--split-before",
                                                "mm2,mm3", "--schedule", "dynamic", "--window", "1", "--train", "--loss",
                                                "cross_entropy", "--labels", "labels", "--optimizer", "adamw",
                                                "--tied", "transmit"], 3, 4)]
    outs = {}
    for name, args, S, M in cases:
        out = t.compile(name.split()[0] + "_" + name.split()[1], args)
        if not out:
            continue
        outs[name] = out
        path = os.path.join(out, "schedule.json")
        code, text = run([sys.executable, VALIDATE, path])
        t.res.check(f"{name}: schedule.json passes the schema and the rules", code == 0, tail(text))
        doc = json.load(open(path))
        got = check_agree(t, name, path, doc["prediction"]["step_ms"])
        svg = os.path.join(t.tmp, name.replace(" ", "_") + ".svg")
        code, text = t.simulate(out, "--svg", svg)
        t.res.check(f"{name}: simulate prints a row per rank with the bubble",
                    code == 0 and "bubble" in text and all(f"rank {r} (stage {r})" in text for r in range(S)), tail(text))
        if got:
            check_svg(t, name, svg, S, {"F": S * M, "B": S * M, "W": S * M}, f"{got['step_ms']:.4f} ms")
    return outs


def textbook(t, outs):
    for name, out in outs.items():
        if not name.startswith("mlp_train"):
            continue
        S = len(json.load(open(os.path.join(out, "schedule.json")))["stages"])
        M = json.load(open(os.path.join(out, "schedule.json")))["config"]["microbatches"]

        def uniform(d):
            for st in d["stages"]:
                st["predicted_forward_ms"], st["predicted_backward_ms"], st["predicted_weight_ms"] = 1.0, 2.0, 0.0
                st["predicted_optimizer_ms"] = 0.0
            d["prediction"]["cost_model"].update(link_gbytes_per_s=0, link_latency_us=0)
        path = t.edited(out, name.replace(" ", "_") + "_uniform", uniform)
        got, text = t.simulate_json(path)
        want = (S - 1) / (M + S - 1)
        t.res.check(f"{name}, uniform stages, free transfers: bubble {got and got['bubble_fraction']} = textbook "
                    f"(p-1)/(m+p-1) = {want:.6f}, step (m+p-1)(tf+tb) = {(M + S - 1) * 3} ms",
                    got is not None and close(got["bubble_fraction"], want, 1e-12)
                    and close(got["step_ms"], (M + S - 1) * 3.0, 1e-12), tail(text))


def interleaved_textbook(t):
    """interleaved-1f1b with v stages per rank, uniform stages and free transfers: Megatron-LM's bubble,
    (p-1)/(v*m + p-1) of the step (p ranks; each stage is 1/v of a rank's share)."""
    mlp = os.path.join(MODELS, "mlp_train.onnx")
    for S, R, M in [(4, 2, 4), (4, 2, 8), (6, 2, 4), (6, 3, 6)]:
        name = f"mlp_train interleaved-1f1b S={S} R={R} M={M}"
        out = t.compile(f"il_{S}_{R}_{M}", [mlp, "--batch", "48", "--microbatches", str(M), "--stages", str(S),
                                             "--ranks", str(R), "--schedule", "interleaved-1f1b"] + TRAIN)
        if not out:
            continue
        code, text = run([sys.executable, VALIDATE, os.path.join(out, "schedule.json")])
        t.res.check(f"{name}: schedule.json passes the schema and the rules", code == 0, tail(text))

        def uniform(d):
            for st in d["stages"]:
                st["predicted_forward_ms"], st["predicted_backward_ms"], st["predicted_weight_ms"] = 1.0, 2.0, 0.0
                st["predicted_optimizer_ms"] = 0.0
            d["prediction"]["cost_model"].update(link_gbytes_per_s=0, link_latency_us=0)
        got, text = t.simulate_json(t.edited(out, f"il_{S}_{R}_{M}_uniform", uniform))
        v = S // R
        want = (R - 1) / (v * M + R - 1)
        t.res.check(f"{name}, uniform stages, free transfers: bubble {got and got['bubble_fraction']} = "
                    f"(p-1)/(v*m+p-1) = {want:.6f}, step (v*m+p-1)(tf+tb) = {(v * M + R - 1) * 3} ms",
                    got is not None and close(got["bubble_fraction"], want, 1e-12)
                    and close(got["step_ms"], (v * M + R - 1) * 3.0, 1e-12), tail(text))
        t.res.check(f"{name}: simulate states that textbook value, {got and got.get('textbook_bubble_fraction')}",
                    got is not None and close(got.get("textbook_bubble_fraction", -1), want, 1e-12), tail(text))


def cut_search(t):
    """4 stages on 2 ranks: the compile simulates variants of the cuts that even the ranks' totals and
    keeps, of those predicted within 1% of the fastest, the one whose busiest rank holds the least,
    saying so in its summary; schedule.json predicts that step and peak (simulate and the independent
    replay agree), and the kept cuts given back as --split-before make the same stages and step."""
    gpt = os.path.join(MODELS, "gpt_train.onnx")
    for sched in ("interleaved-1f1b", "zb-h1"):
        args = [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels", "--optimizer", "adamw", "--batch",
                "8", "--microbatches", "8", "--stages", "4", "--ranks", "2", "--schedule", sched]
        out = os.path.join(t.tmp, "cuts_" + sched)
        code, text = run([t.pippyc] + args + ["-o", out, "--emit-only"])
        m = re.search(r"cuts: (\d+) candidates simulated; kept (a variant|the evened cuts) \(first stage \d+ nodes, "
                      r"last \d+\): ([\d.]+) ms, busiest rank ([\d.]+) MiB, against ([\d.]+) ms and ([\d.]+) MiB for "
                      r"the cuts that only even the ranks' totals \(the least memory within 1% of the fastest, "
                      r"([\d.]+) ms\)", text)
        name = f"gpt_train {sched} S=4 R=2 M=8"
        if not m:
            t.res.check(f"{name}: the summary says which cuts it kept", False, tail(text))
            continue
        n, variant = int(m.group(1)), m.group(2) == "a variant"
        kept, kept_mib, evened, evened_mib, fastest = (float(m.group(k)) for k in range(3, 8))
        rule = (fastest <= evened and kept <= 1.01 * fastest + 2e-3 and
                (not variant or evened > 1.01 * fastest - 2e-3 or kept_mib <= evened_mib))
        t.res.check(f"{name}: of {n} candidates it keeps {m.group(2)}, {kept} ms and {kept_mib} MiB (evened {evened} ms, "
                    f"{evened_mib} MiB; fastest {fastest} ms): within 1% of the fastest, less memory than the evened "
                    f"cuts unless they are not", code == 0 and n > 1 and rule, tail(text))
        path = os.path.join(out, "schedule.json")
        doc = json.load(open(path))
        t.res.check(f"{name}: schedule.json predicts the kept step", close(doc["prediction"]["step_ms"], kept, 1e-3),
                    str(doc["prediction"]["step_ms"]))
        got = check_agree(t, name, path, doc["prediction"]["step_ms"])
        peak = got and max(r["peak_memory_bytes"] for r in got["ranks"]) / 1048576.0
        t.res.check(f"{name}: simulate's busiest rank holds the kept {kept_mib} MiB ({peak})",
                    got is not None and abs(peak - kept_mib) <= 0.006, str(got))
        if got is not None:
            memory_limit(t, name, args, out, got, evened_mib)
        split = ",".join(st["nodes"][0] for st in doc["stages"][1:])
        again = t.compile("cuts_again_" + sched, args[:-6] + ["--ranks", "2", "--schedule", sched, "--split-before", split])
        if not again:
            continue
        doc2 = json.load(open(os.path.join(again, "schedule.json")))
        t.res.check(f"{name}: the kept cuts as --split-before {split} make the same stages and step",
                    [st["nodes"] for st in doc2["stages"]] == [st["nodes"] for st in doc["stages"]]
                    and close(doc2["prediction"]["step_ms"], doc["prediction"]["step_ms"]),
                    f'{doc2["prediction"]["step_ms"]} against {doc["prediction"]["step_ms"]}')


def memory_limit(t, name, args, out, got, evened_mib):
    """--memory-per-rank set to exactly the kept cuts' busiest rank: the compile still succeeds and
    fits. When the evened cuts hold more (as the summary said), they break the limit and are passed
    over, and the summary says they do not compile; else they fit and the summary compares as before."""
    limit = int(max(r["peak_memory_bytes"] for r in got["ranks"]))
    code, text = run([t.pippyc] + args + ["--memory-per-rank", str(limit), "-o", out + "_lim", "--emit-only"])
    lim = t.simulate_json(out + "_lim")[0] if code == 0 else None
    peak = lim and max(r["peak_memory_bytes"] for r in lim["ranks"])
    # the summary rounds to 0.01 MiB: within 0.005 MiB of the limit either answer can be right
    broken = evened_mib * 1048576 > limit + 0.005 * 1048576
    unsure = abs(evened_mib * 1048576 - limit) <= 0.005 * 1048576
    said = "the cuts that only even the ranks' totals do not compile" in text
    t.res.check(f"{name}: with --memory-per-rank {limit} (the kept busiest rank) it compiles and fits ({peak}); the "
                f"evened cuts ({evened_mib} MiB) {'break it and the summary says they do not compile' if broken else 'fit'}",
                code == 0 and peak is not None and peak <= limit and (said == broken or unsure), tail(text))
    code, text = run([t.pippyc] + args + ["--memory-per-rank", "100000", "-o", out + "_tiny", "--emit-only"])
    t.res.check(f"{name}: with --memory-per-rank 100000, which no cut fits, exit 1 naming the cuts simulated, the "
                f"first cuts' busiest rank and the limit", code == 1 and re.search(
                    r"none of the \d+ cuts simulated compiles .*; the first: --schedule \S+: rank \d+ would need \d+ "
                    r"bytes .* more than --memory-per-rank 100000", text) is not None
                and not os.path.exists(os.path.join(out + "_tiny", "schedule.json")), tail(text))


def zero_bubble(t, outs):
    """The compiled 1F1B and ZB-H1 lists of mlp_train (S=3, M=8) with tf = tb = tw = 1 ms and free
    transfers: each rank of ZB-H1 idles (p-1)(tf+tb-tw) = 2 ms, of 1F1B (p-1)(tf+tb) = 4 ms (its B's
    gradients leave before W), by simulate and by the independent replay."""
    for name, idle, held in (("mlp_train 1f1b S=3 M=8", 2.0, [3, 2, 1]), ("mlp_train zb-h1 S=3 M=8", 1.0, [3, 3, 3])):
        out = outs.get(name)
        if not out:
            continue
        S, M = 3, 8

        def uniform(d):
            for st in d["stages"]:
                st["predicted_forward_ms"] = st["predicted_backward_ms"] = st["predicted_weight_ms"] = 1.0
                st["predicted_optimizer_ms"] = 0.0
            d["prediction"]["cost_model"].update(link_gbytes_per_s=0, link_latency_us=0)
        path = t.edited(out, name.replace(" ", "_") + "_fbw", uniform)
        got, text = t.simulate_json(path)
        want, otext = t.oracle(path)
        step = 3.0 * M + (S - 1) * idle
        ok = (got is not None and want is not None and close(got["step_ms"], step, 1e-12)
              and close(want["step_ms"], step, 1e-12) and all(close(i, (S - 1) * idle, 1e-12) for i in want["idle_ms"])
              and want["in_flight"] == held)
        t.res.check(f"{name}, tf = tb = tw = 1 ms: step {step} ms, each rank idles {(S - 1) * idle} ms, holds {held}",
                    ok, f"simulate {got and got['step_ms']}, replay {want}: {tail(text)} {tail(otext)}")


def optimizer_after_step(t, outs):
    """The compile prices each training stage's optimizer step (predicted_optimizer_ms > 0), and
    after STEP each rank runs its stages' steps: with the 1F1B lists of mlp_train (S=3, M=8) at
    tf = tb = tw = 1 ms, free transfers and optimizer steps of 0.5, 0.25 and 1.5 ms, the step is the
    barrier's 3M + (S-1)(tf+tb) = 28 ms plus the longest, 1.5 ms, and each rank is busy 3M ms plus its
    own, by simulate and by the independent replay."""
    name = "mlp_train 1f1b S=3 M=8"
    out = outs.get(name)
    if not out:
        return
    opt = [st.get("predicted_optimizer_ms", 0) for st in json.load(open(os.path.join(out, "schedule.json")))["stages"]]
    t.res.check(f"{name}: the compile prices each stage's optimizer step ({', '.join('%.4f' % v for v in opt)} ms)",
                len(opt) == 3 and all(v > 0 for v in opt), str(opt))
    step_opt = [0.5, 0.25, 1.5]

    def uniform(d):
        for st, o in zip(d["stages"], step_opt):
            st["predicted_forward_ms"] = st["predicted_backward_ms"] = st["predicted_weight_ms"] = 1.0
            st["predicted_optimizer_ms"] = o
        d["prediction"]["cost_model"].update(link_gbytes_per_s=0, link_latency_us=0)
    path = t.edited(out, "1f1b_optimizer", uniform)
    got, text = t.simulate_json(path)
    want, otext = t.oracle(path)
    step, busy = 24.0 + 4.0 + 1.5, [24.0 + o for o in step_opt]
    rows = got and got.get("ranks") or []
    ok = (got is not None and want is not None and close(got["step_ms"], step, 1e-12)
          and close(want["step_ms"], step, 1e-12) and all(close(b, w, 1e-12) for b, w in zip(want["busy_ms"], busy))
          and len(rows) == 3 and all(close(r["busy_ms"], w, 1e-12) for r, w in zip(rows, busy)))
    t.res.check(f"{name}, optimizer steps {step_opt} ms after STEP: step {step} ms, busy {busy} ms per rank", ok,
                f"simulate {got and got['step_ms']} {[r.get('busy_ms') for r in rows]}, replay {want}: {tail(text)} "
                f"{tail(otext)}")


def defer_w(d):
    """GPipe with every W moved after the rank's last B (a valid zero-bubble-style reordering)."""
    for rk in d["ranks"]:
        acts = rk["actions"]
        ws = [a for a in acts if a["op"] == "W"]
        rest = [a for a in acts if a["op"] not in ("W", "STEP")]
        rk["actions"] = rest + ws + [a for a in acts if a["op"] == "STEP"]


def refusals(t, outs):
    one = outs.get("mlp_train 1f1b S=3 M=8")
    gp = outs.get("mlp_train gpipe S=3 M=4")
    tied = outs.get("tied 1f1b S=3 M=4")
    if gp:
        path = t.edited(gp, "deferred_w", defer_w)
        check_agree(t, "hand-edited gpipe with the W's deferred", path)
    if not one or not tied:
        return

    def drop_recv_b(d):
        acts = d["ranks"][0]["actions"]
        del acts[find(acts, "RECV_B", 1)]

    def swap_deadlock(d):
        acts = d["ranks"][0]["actions"]
        i, j = find(acts, "SEND_F", 0), find(acts, "B", 0)
        acts[i], acts[j] = acts[j], acts[i]

    def w_after_step(d):
        acts = d["ranks"][1]["actions"]
        acts.append(acts.pop(find(acts, "W", 7)))

    def stash(d):  # the last stage holds 1 microbatch; two forwards in a row need 2
        acts = d["ranks"][2]["actions"]
        acts.insert(find(acts, "B", 0), acts.pop(find(acts, "F", 1)))

    def allreduce_early(d):
        acts = d["ranks"][0]["actions"]
        acts.insert(find(acts, "W", 3), acts.pop(find(acts, "ALLREDUCE")))

    def bad_peer(d):
        d["ranks"][2]["actions"][find(d["ranks"][2]["actions"], "SEND_B", 2)]["peer"] = 0

    def recv_late(d):
        acts = d["ranks"][1]["actions"]
        acts.insert(find(acts, "F", 2), acts.pop(find(acts, "RECV_F", 2)))

    r0 = json.load(open(os.path.join(one, "schedule.json")))["ranks"]
    w_at = len(r0[1]["actions"]) - 2
    b_at = find(r0[0]["actions"], "SEND_F", 0)
    f_at = find(r0[1]["actions"], "F", 2) - 1
    cases = [  # (folder, what, edit, what simulate says, what the oracle says)
        (one, "a missing RECV_B", drop_recv_b, ["rank 0 never runs RECV_B(stage 0, mb 1 <- stage 1)", "never be received"],
         ["/ranks/0/actions: RECV_B(stage 0, mb 1 <- stage 1) appears 0 times"]),
        (one, "two actions swapped (a deadlock)", swap_deadlock,
         ["deadlock", f"rank 0 waits at action {b_at}", "B(stage 0, mb 0) for the gradients of mb 0 from stage 1",
          "F(stage 1, mb 0) for the activations"],
         [f"/ranks/0/actions/{b_at} (B stage 0 mb 0): deadlock", "/ranks/1/actions/"]),
        (one, "W after STEP", w_after_step, [f"rank 1, action {w_at} STEP", "STEP must be the rank's last action"],
         [f"/ranks/1/actions/{w_at} (STEP): STEP is not the rank's last action"]),
        (one, "a receive after the F that needs it", recv_late,
         [f"rank 1, action {f_at + 1} RECV_F(stage 1, mb 2 <- stage 0)", "posted before the F"],
         [f"/ranks/1/actions/{f_at + 1} (RECV_F stage 1 mb 2 peer 0): the receive is posted after the F"]),
        (one, "more microbatches than stash slots", stash, ["rank 2, action", "F(stage 2, mb 1)", "would hold 2"],
         ["(F stage 2 mb 1): stage 2 would hold 2 microbatches"]),
        (one, "a SEND_B to a stage that takes no gradients from it", bad_peer,
         ["rank 2, action", "SEND_B(stage 2, mb 2 -> stage 0)", "stage 2 sends stage 0 no gradients"],
         ["(SEND_B stage 2 mb 2 peer 0): peer 0: stage 2 sends no gradients to it"]),
        (tied, "ALLREDUCE before the last W", allreduce_early,
         ["rank 0, action", "ALLREDUCE(stage 0, reduction 0)", "W(stage 0, mb 3) must come first"],
         ["(ALLREDUCE stage 0 reduction 0): ALLREDUCE before the stage's last W"]),
    ]
    for out, what, fn, needles, oracle in cases:
        path = t.edited(out, what.replace(" ", "_"), fn)
        svg = path + ".svg"
        code, text = t.simulate(path, "--svg", svg)
        t.res.check(f"refused: {what} -> exit {code}, names " + "; ".join(needles),
                    code == 1 and all(n in text for n in needles) and not os.path.exists(svg), tail(text))
        code, otext = run([sys.executable, VALIDATE, path])
        t.res.check(f"the oracle refuses it too, at the same place: {'; '.join(oracle)}",
                    code == 1 and all(n in otext for n in oracle), tail(otext))


def malformed(t, outs):
    one = outs.get("mlp_train 1f1b S=3 M=8")
    if not one:
        return

    def bad_op(d):
        d["ranks"][1]["actions"][3]["op"] = "FWD<x>"

    def string_mb(d):
        d["ranks"][1]["actions"][find(d["ranks"][1]["actions"], "F", 2)]["mb"] = "2"

    def inference_b(d):
        d["config"]["mode"] = "inference"

    cases = [(bad_op, "an unknown op", ["ranks[1].actions[3].op must be an action (F, B, W", "'FWD<x>'"]),
             (string_mb, "a microbatch given as a string", ["ranks[1].actions[", ".mb must be a whole number", "'2'"]),
             (inference_b, "training actions in an inference file", ["only F, SEND_F and RECV_F"])]
    for fn, what, needles in cases:
        path = t.edited(one, what.replace(" ", "_"), fn)
        code, text = t.simulate(path)
        t.res.check(f"refused: {what} -> exit {code}, names " + "; ".join(needles),
                    code == 1 and all(n in text for n in needles), tail(text))
    trunc = os.path.join(t.tmp, "trunc.json")
    open(trunc, "w").write(open(os.path.join(one, "schedule.json")).read()[:2000])
    code, text = t.simulate(trunc)
    t.res.check("refused: a truncated schedule.json -> not valid JSON, with the line", code == 1 and
                "is not valid JSON (line" in text, tail(text))
    code, text = t.simulate(os.path.join(t.tmp, "nope"))
    t.res.check("refused: no such folder", code == 1 and "nope" in text, tail(text))
    code, text = run([t.pippyc, "simulate"])
    t.res.check("usage: simulate without a folder -> exit 2", code == 2 and "simulate" in text, tail(text))
    code, text = run([t.pippyc, "timeline", "x.json", "--svg"])
    t.res.check("usage: --svg without a file -> exit 2", code == 2 and "--svg" in text, tail(text))


def trace_events(path):
    ev = json.load(open(path))
    return [e for e in ev if e.get("ph") == "X"], ev


def measured(t):
    """A real inference pipeline run with --trace."""
    out = os.path.join(t.tmp, "mlp")
    code, text = run([t.pippyc, os.path.join(MODELS, "mlp.onnx"), "--batch", "8", "--microbatches", "4",
                      "--stages", "2", "-o", out, "-q"], timeout=600)
    if code != 0:
        t.res.check("compile mlp into 2 stages", False, tail(text))
        return
    trace = os.path.join(out, "trace.json")
    code, text = run([t.pippyrun, out, "--input", "x=" + os.path.join(MODELS, "mlp.data", "input_x.npy"), "--output",
                      "y=" + os.path.join(out, "y.npy"), "--trace", trace, "--timeout", "60"], timeout=300)
    if code != 0:
        t.res.check("pippyrun --trace of the mlp pipeline", False, tail(text))
        return
    svg = os.path.join(out, "measured.svg")
    code, text = run([t.pippyc, "timeline", trace, "--svg", svg])
    t.res.check("timeline prints a row per rank", code == 0 and "rank 0 (stage 0)" in text and "rank 1 (stage 1)" in text,
                tail(text))
    code, text = run([t.pippyc, "timeline", trace, "--json"])
    got = json.loads(text) if code == 0 else None
    xs, _ = trace_events(trace)
    t0, t1 = min(e["ts"] for e in xs), max(e["ts"] + e["dur"] for e in xs)
    busy = {}
    for e in xs:
        if e["tid"] == 0 and e["name"] in ("F", "B", "W"):
            busy[e["pid"]] = busy.get(e["pid"], 0) + e["dur"] / 1000
    nf = sum(1 for e in xs if e["name"] == "F")
    if got:
        rows = got["ranks"]
        t.res.check(f"timeline: span {got['step_ms']} ms, busy per rank {[r['busy_ms'] for r in rows]} as summed from "
                    f"the trace's events, one microbatch in flight",
                    close(got["step_ms"], (t1 - t0) / 1000) and [r["id"] for r in rows] == sorted(busy)
                    and all(close(r["busy_ms"], busy[r["id"]]) and r["in_flight"] == 1 for r in rows)
                    and close(got["bubble_fraction"], 1 - sum(busy.values()) / (len(rows) * (t1 - t0) / 1000)),
                    f"{got} vs busy {busy}, span {(t1 - t0) / 1000}")
    check_svg(t, "timeline", svg, 2, {"F": nf}, "measured")
    t.res.check(f"the trace holds every F: {nf} = 2 stages x 4 microbatches", nf == 8, str(nf))
    hostile_traces(t)


def hostile_traces(t):
    name = 'F<b>&amp;"\'\x01'
    ev = [{"name": "process_name", "ph": "M", "pid": 7, "tid": 0, "args": {"name": "]]><script>x</script>"}},
          {"name": name, "cat": "compute", "ph": "X", "ts": 10, "dur": 5, "pid": 7, "tid": 0, "args": {"microbatch": 1}},
          {"name": "F", "cat": "compute", "ph": "X", "ts": 20, "dur": 5, "pid": 9, "tid": 0},
          {"name": "BADUTF", "cat": "send", "ph": "X", "ts": 12, "dur": 3, "pid": 9, "tid": 1}]
    path = os.path.join(t.tmp, "hostile.json")
    raw = json.dumps(ev, ensure_ascii=False).encode().replace(b"BADUTF", b"\xff\xfe\xc0\xafX\xed\xa0\x80")
    open(path, "wb").write(raw)
    svg = path + ".svg"
    code, text = run([t.pippyc, "timeline", path, "--svg", svg])
    root = None
    try:
        root = ET.parse(svg).getroot() if code == 0 else None
    except ET.ParseError as e:
        text += f"\nSVG does not parse: {e}"
    texts = ["".join(e.itertext()) for e in root.iter()] if root is not None else []
    t.res.check("a trace with markup, control characters and invalid UTF-8 in its names: well-formed SVG, the text "
                "kept as text, no script element", root is not None and root.find(".//" + SVG + "script") is None
                and any("]]><script>x</script>" in x for x in texts) and any('F<b>&amp;"\'?' in x for x in texts),
                tail(text))
    bad = [("ts a string", [{"name": "F", "ph": "X", "ts": "1", "dur": 1, "pid": 0, "tid": 0}], "event 0: \"ts\""),
           ("no complete events", [{"name": "x", "ph": "i", "ts": 1, "pid": 0}], "no complete"),
           ("not an array", {"events": []}, "not a trace"),
           ("negative duration", [{"name": "F", "ph": "X", "ts": 1, "dur": -1, "pid": 0, "tid": 0}], "\"dur\"")]
    for what, doc, needle in bad:
        p = os.path.join(t.tmp, "bad_trace.json")
        json.dump(doc, open(p, "w"))
        code, text = run([t.pippyc, "timeline", p, "--svg", p + ".svg"])
        t.res.check(f"timeline refuses a trace with {what} -> exit {code}, names '{needle}'",
                    code == 1 and needle in text and not os.path.exists(p + ".svg"), tail(text))


def main():
    t = Suite(build_dir())
    outs = training_cases(t)
    inf = t.compile("gpt_inference", [os.path.join(MODELS, "gpt_op17.onnx"), "--batch", "8", "--stages", "3",
                                      "--microbatches", "4"])
    if inf:
        path = os.path.join(inf, "schedule.json")
        code, text = run([sys.executable, VALIDATE, path])
        t.res.check("gpt_op17 inference: schedule.json passes the schema and the rules", code == 0, tail(text))
        check_agree(t, "gpt_op17 inference", path, json.load(open(path))["prediction"]["step_ms"])
        svg = os.path.join(t.tmp, "inference.svg")
        code, text = t.simulate(inf, "--svg", svg)
        if code == 0:
            check_svg(t, "gpt_op17 inference", svg, 3, {"F": 12, "B": 0, "W": 0}, "predicted step")
    dyn = t.compile("gpt_dynamic", [os.path.join(MODELS, "gpt_op17.onnx"), "--batch", "8", "--stages", "3",
                                    "--microbatches", "4", "--schedule", "dynamic", "--window", "1"])
    if dyn:
        path = os.path.join(dyn, "schedule.json")
        code, text = run([sys.executable, VALIDATE, path])
        t.res.check("gpt_op17 inference, dynamic window 1: schedule.json passes the schema and the rules", code == 0,
                    tail(text))
        check_agree(t, "gpt_op17 inference, dynamic window 1", path, json.load(open(path))["prediction"]["step_ms"])
    textbook(t, outs)
    interleaved_textbook(t)
    cut_search(t)
    zero_bubble(t, outs)
    optimizer_after_step(t, outs)
    refusals(t, outs)
    malformed(t, outs)
    measured(t)
    shutil.rmtree(t.tmp, ignore_errors=True)
    t.res.finish()


if __name__ == "__main__":
    main()
