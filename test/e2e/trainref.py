#!/usr/bin/env python3
"""Compare pippyc training results with the PyTorch references in samples/models/<name>.train/.

Needs numpy, onnx and onnxruntime (no torch). The references are written by
samples/make_train_refs.py; samples/README.md describes them.

From a test:

    import trainref
    ref = trainref.load_ref("gpt_train")                     # samples/models/gpt_train.train/ref.json
    ok, text = trainref.check_losses("loss.jsonl", ref, "adamw", M=4)
    ok, text = trainref.check_saved_model("trained.onnx", ref, "adamw", M=4)
    ok, text = trainref.check_saved_params("trained.onnx", ref, "adamw", M=4)

Each check returns (ok, text): text is a readable report (a per-step table for losses) that says what
differs. The default tolerance is the configuration's "tolerance" in ref.json (1e-4 relative with SGD,
1e-3 with AdamW).

Command line:

    trainref.py losses LOG NAME CONFIG M [--rtol R]      # a pippyrun --loss-log file
    trainref.py saved MODEL.onnx NAME CONFIG M [--tol T] # a pippyrun --save model: outputs and parameters
    trainref.py self-test                                # the references against the ONNX files

Exit status 0 when everything matched, 1 otherwise, 2 on bad usage. self-test ends with
"N passed, N failed".

Loss logs are JSON lines, one object per optimizer step with at least "step" (an integer; the first
step may be numbered 0 or 1, then consecutive) and "loss" (a number). Other keys are ignored.
"""

import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "samples", "models")


class RefError(Exception):
    pass


# ---------------------------------------------------------------- references

def load_ref(name):
    """ref.json of a model: a sample name ("gpt_train"), its .train folder, or the ref.json path.
    Adds "_dir" (the folder of the data files) and "_model" (the path of the ONNX model)."""
    if os.path.isfile(name):
        path = name
    elif os.path.isdir(name):
        path = os.path.join(name, "ref.json")
    else:
        path = os.path.join(MODELS, name + ".train", "ref.json")
    try:
        with open(path) as f:
            ref = json.load(f)
    except (OSError, ValueError) as e:
        raise RefError("cannot read reference %s: %s" % (path, e))
    ref["_dir"] = os.path.dirname(os.path.abspath(path))
    ref["_model"] = os.path.join(os.path.dirname(ref["_dir"]), ref["model"])
    return ref


def _run(ref, config, M):
    if config not in ref["configs"]:
        raise RefError("no configuration '%s' in the %s reference (have: %s)" % (
            config, ref["model"], ", ".join(ref["configs"])))
    runs = ref["configs"][config]["runs"]
    if str(M) not in runs:
        raise RefError("no run with M=%s for %s/%s (have M = %s)" % (M, ref["model"], config, ", ".join(runs)))
    return runs[str(M)]


def ref_losses(ref, config, M):
    return list(_run(ref, config, M)["losses"])


def data_path(ref, fname):
    return os.path.join(ref["_dir"], fname)


def load_arrays(ref, which):
    """{input name: array} of ref["data"] or ref["heldout"]."""
    return {k: np.load(data_path(ref, v)) for k, v in ref[which].items()}


# ---------------------------------------------------------------- losses

def read_loss_log(path):
    """[(step, loss)] from a JSON-lines loss log."""
    out = []
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise RefError("cannot read loss log %s: %s" % (path, e))
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise RefError("%s:%d: not JSON (%s): %.80s" % (path, i, e, line))
        if not isinstance(rec, dict) or "step" not in rec or "loss" not in rec:
            raise RefError("%s:%d: expected an object with \"step\" and \"loss\", found %.80s" % (path, i, line))
        step, loss = rec["step"], rec["loss"]
        if not isinstance(step, int) or isinstance(step, bool) or not isinstance(loss, (int, float)) \
                or isinstance(loss, bool):
            raise RefError("%s:%d: \"step\" must be an integer and \"loss\" a number: %.80s" % (path, i, line))
        out.append((step, float(loss)))
    return out


def compare_losses(actual, expected, rtol, what="losses"):
    """actual: [(step, loss)] (or plain losses, numbered from 0); expected: [loss]. Every step must
    satisfy |actual - expected| <= rtol * |expected|, and the counts must agree."""
    if actual and not isinstance(actual[0], tuple):
        actual = list(enumerate(actual))
    lines = ["%s: %d steps, rtol %.0e" % (what, len(expected), rtol),
             "  step  %-22s %-22s %-9s" % ("expected (torch)", "actual", "rel diff")]
    ok = True
    problems = []
    if len(actual) != len(expected):
        ok = False
        problems.append("%d steps logged, %d expected" % (len(actual), len(expected)))
    if actual:
        first = actual[0][0]
        if first not in (0, 1):
            ok = False
            problems.append("the first step is numbered %d (0 or 1 expected)" % first)
        for i, (s, _) in enumerate(actual):
            if s != first + i:
                ok = False
                problems.append("step numbers not consecutive: %d at line %d" % (s, i + 1))
                break
    worst = 0.0
    for i in range(max(len(actual), len(expected))):
        e = expected[i] if i < len(expected) else None
        a = actual[i][1] if i < len(actual) else None
        if e is None or a is None:
            fmt = lambda v: "-" if v is None else "%.15g" % v  # noqa: E731
            lines.append("  %4d  %-22s %-22s %s" % (i, fmt(e), fmt(a), "missing" if a is None else "extra"))
            continue
        d = abs(a - e) / abs(e) if e != 0 else abs(a - e)
        bad = not math.isfinite(a) or not d <= rtol
        worst = max(worst, d) if math.isfinite(d) else float("inf")
        ok = ok and not bad
        lines.append("  %4d  %-22.15g %-22.15g %-9.2e%s" % (i, e, a, d, "  <-- over tolerance" if bad else ""))
    lines.append("%s %s: max rel diff %.2e (rtol %.0e)%s" % (
        "ok" if ok else "MISMATCH", what, worst, rtol, "; " + "; ".join(problems) if problems else ""))
    return ok, "\n".join(lines)


def check_losses(log, ref, config, M, rtol=None, steps=None):
    """A loss log (path or [(step, loss)]) against the reference's first `steps` losses (default all)."""
    expected = ref_losses(ref, config, M)[:steps]
    actual = read_loss_log(log) if isinstance(log, str) else log
    rtol = ref["configs"][config]["tolerance"] if rtol is None else rtol
    return compare_losses(actual, expected, rtol, "%s %s M=%s losses" % (ref["model"], config, M))


# ---------------------------------------------------------------- ONNX models

def _load_onnx(path):
    import onnx
    try:
        return onnx.load(path)  # external data is read relative to the model's folder
    except Exception as e:  # onnx raises several kinds
        raise RefError("cannot load ONNX model %s: %s" % (path, e))


def _session(model_proto):
    """An ONNX Runtime session (1 thread, no graph optimizations); pippy::PipeSplit runs as Identity."""
    import onnxruntime as ort
    for n in model_proto.graph.node:
        if n.op_type == "PipeSplit" and n.domain == "pippy":
            n.op_type, n.domain = "Identity", ""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def run_onnx(model_proto, feeds):
    """{output name: array}, feeding the graph inputs the model declares (all must be in feeds)."""
    sess = _session(model_proto)
    names = [i.name for i in sess.get_inputs()]
    missing = [n for n in names if n not in feeds]
    if missing:
        raise RefError("the model needs input(s) %s; the reference has %s" % (", ".join(missing), ", ".join(feeds)))
    res = sess.run(None, {n: feeds[n] for n in names})
    return {o.name: r for o, r in zip(sess.get_outputs(), res)}


def check_saved_model(path, ref, config, M, tol=None):
    """A trained model (pippyrun --save) run by ONNX Runtime on the held-out batch against PyTorch's
    trained model: for every output the reference has, max |actual - expected| <= tol * max |expected|."""
    run = _run(ref, config, M)
    tol = ref["configs"][config]["tolerance"] if tol is None else tol
    try:
        got = run_onnx(_load_onnx(path), load_arrays(ref, "heldout"))
    except RefError as e:
        return False, "MISMATCH %s: %s" % (path, e)
    except Exception as e:  # onnxruntime errors
        return False, "MISMATCH %s: ONNX Runtime failed: %s" % (path, e)
    ok, lines = True, []
    for name, fname in run["heldout_outputs"].items():
        exp = np.load(data_path(ref, fname)).astype(np.float64)
        if name not in got:
            ok = False
            lines.append("MISMATCH %s: no output '%s' (outputs: %s)" % (path, name, ", ".join(got)))
            continue
        act = got[name].astype(np.float64)
        if act.shape != exp.shape:
            ok = False
            lines.append("MISMATCH %s: output %s has shape %s, expected %s" % (path, name, list(act.shape),
                                                                             list(exp.shape)))
            continue
        scale = max(float(np.max(np.abs(exp))), 1e-30)
        diff = np.abs(act - exp)
        d = float(np.max(diff)) if diff.size else 0.0
        good = bool(np.all(np.isfinite(act))) and d <= tol * scale
        ok = ok and good
        at = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
        lines.append("%s saved %s %s M=%s output %s: max |diff| %.3e = %.2e x max|expected| (tol %.0e), worst at "
                     "%s: expected %.8g actual %.8g" % (
                         "ok" if good else "MISMATCH", ref["model"], config, M, name, d, d / scale, tol,
                         list(map(int, at)), exp[at] if diff.size else 0, act[at] if diff.size else 0))
    return ok, "\n".join(lines)


def check_saved_params(path, ref, config, M, rtol=None):
    """Every trained parameter (and BatchNorm running statistic) of the reference, found by name among the
    initializers of the saved model: its L2 norm within rtol and its sum within rtol * L1 norm (or within 4x
    what float32 rounding alone moves it, ref "f32_vs_f64", where that is more)."""
    from onnx import numpy_helper
    run = _run(ref, config, M)
    rtol = ref["configs"][config]["tolerance"] if rtol is None else rtol
    try:
        m = _load_onnx(path)
    except RefError as e:
        return False, "MISMATCH %s" % e
    inits = {i.name: i for i in m.graph.initializer}
    ok, bad = True, []
    for name, st in run["params"].items():
        if name not in inits:
            ok = False
            bad.append("%s: not an initializer of the saved model" % name)
            continue
        a = numpy_helper.to_array(inits[name]).astype(np.float64)
        l2, s = float(np.sqrt(np.sum(a * a))), float(np.sum(a))
        dl2 = abs(l2 - st["l2"]) / max(st["l2"], 1e-30)
        ds = abs(s - st["sum"]) / max(st["l1"], 1e-30)
        tol = max(rtol, 4 * st.get("f32_vs_f64", 0.0))  # a parameter float32 rounding alone moves further
        if not (dl2 <= tol and ds <= tol):
            ok = False
            bad.append("%s: l2 %.8g (expected %.8g, rel %.1e), sum %.8g (expected %.8g, %.1e of l1)" % (
                name, l2, st["l2"], dl2, s, st["sum"], ds))
    head = "%s saved %s %s M=%s parameters: %d checked (rtol %.0e)" % (
        "ok" if ok else "MISMATCH", ref["model"], config, M, len(run["params"]), rtol)
    return ok, "\n".join([head] + ["  " + b for b in bad])


# ---------------------------------------------------------------- step-0 loss through ONNX Runtime

def _loss_np(kind, out, labels):
    out = out.astype(np.float64)
    if kind == "mse":
        return float(np.mean((out - labels) ** 2))
    logits = out.reshape(-1, out.shape[-1])
    lab = labels.reshape(-1)
    mx = logits.max(axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(logits - mx), axis=1)) + mx[:, 0]
    return float(np.mean(lse - logits[np.arange(len(lab)), lab]))


def _training_mode_bn(model_proto):
    """BatchNormalization nodes switched to training mode (batch statistics), as --train runs them."""
    for n in model_proto.graph.node:
        if n.op_type == "BatchNormalization":
            for a in n.attribute:
                if a.name == "training_mode":
                    a.i = 1
            if len(n.output) == 1:
                n.output.extend([n.output[0] + "__running_mean", n.output[0] + "__running_var"])
    return model_proto


def check_initial_loss(ref, rtol=1e-5):
    """Step 0 trains nothing yet: its loss is the untrained model's, which ONNX Runtime computes from the
    committed ONNX file and data (mean of the M microbatch losses, BatchNorm in training mode). Checks
    every configuration and M; ties the ONNX file, the data and the references together."""
    sess_model = _training_mode_bn(_load_onnx(ref["_model"]))
    sess = _session(sess_model)
    out_names = [o.name for o in sess.get_outputs()]
    data = load_arrays(ref, "data")
    rows = np.arange(ref["batch"]) % ref["dataset_size"]
    ok, lines = True, []
    cache = {}
    for cname, c in ref["configs"].items():
        for M, run in c["runs"].items():
            M = int(M)
            if M not in cache:
                mb = ref["batch"] // M
                losses = []
                for j in range(M):
                    sel = rows[j * mb:(j + 1) * mb]
                    feeds = {i.name: data[i.name][sel] for i in sess.get_inputs()}
                    res = dict(zip(out_names, sess.run(None, feeds)))
                    if ref["loss"] == "in_model":
                        losses.append(float(res[ref["outputs"][0]]))
                    else:
                        losses.append(_loss_np(ref["loss"], res[ref["outputs"][0]], data[ref["labels"]][sel]))
                cache[M] = math.fsum(losses) / M
            e = run["losses"][0]
            d = abs(cache[M] - e) / abs(e)
            good = d <= rtol
            ok = ok and good
            lines.append("%s step-0 loss %s %s M=%d: onnxruntime %.9g torch %.9g rel %.1e" % (
                "ok" if good else "MISMATCH", ref["model"], cname, M, cache[M], e, d))
    return ok, "\n".join(lines)


# ---------------------------------------------------------------- self-test

def _names():
    return sorted(d[:-len(".train")] for d in os.listdir(MODELS) if d.endswith(".train"))


def self_test():
    """For every committed reference: ONNX Runtime's step-0 losses match, and the checkers catch errors
    (a loss 3x the tolerance off, a missing step, the untrained model offered as the trained one)."""
    passed = failed = 0

    def check(name, good, text=""):
        nonlocal passed, failed
        if good:
            passed += 1
            print("  ok    %s" % name)
        else:
            failed += 1
            print("  FAIL  %s\n%s" % (name, text))

    names = _names()
    check("references present", len(names) > 0, "no samples/models/*.train folders")
    for name in names:
        try:
            ref = load_ref(name)
            ok, text = check_initial_loss(ref)
            check("%s: step-0 losses = onnxruntime's (%d runs)" % (name, text.count("\n") + 1), ok, text)
            cname = next(iter(ref["configs"]))
            M = ref["microbatches"][-1]
            exp = ref_losses(ref, cname, M)
            tol = ref["configs"][cname]["tolerance"]
            ok, text = compare_losses(list(enumerate(exp)), exp, tol)
            check("%s: reference losses match themselves" % name, ok, text)
            off = list(enumerate(exp))
            off[5] = (5, exp[5] * (1 + 3 * tol))
            ok, text = compare_losses(off, exp, tol)
            check("%s: a loss 3x the tolerance off is caught" % name, not ok and "<-- over" in text, text)
            ok, text = compare_losses(list(enumerate(exp))[:-1], exp, tol)
            check("%s: a missing step is caught" % name, not ok, text)
            ok, text = check_saved_model(ref["_model"], ref, cname, M)
            check("%s: the untrained model fails the trained-output check" % name, not ok, text)
            ok, text = check_saved_params(ref["_model"], ref, cname, M)
            check("%s: the untrained model fails the trained-parameter check" % name, not ok, text)
            spread = ref["configs"][cname]["checks"]["spread_across_M_losses"]
            if ref["export"]["op_counts"].get("BatchNormalization"):
                check("%s: losses differ across M (BatchNorm statistics per microbatch)" % name, spread > tol,
                      "spread %.1e" % spread)
            else:
                check("%s: losses agree across M to %.1e (tol %.0e)" % (name, spread, tol), spread < tol / 10,
                      "spread %.1e" % spread)
        except Exception as e:  # a broken reference or an onnxruntime error: report, go on
            check("%s: reference usable" % name, False, "    %s: %s" % (type(e).__name__, e))
    print("trainref: %d passed, %d failed" % (passed, failed))
    return failed == 0


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="Compare pippyc training results with the PyTorch references.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("losses", help="compare a JSON-lines loss log")
    p.add_argument("log")
    p.add_argument("name")
    p.add_argument("config")
    p.add_argument("M", type=int)
    p.add_argument("--rtol", type=float)
    p = sub.add_parser("saved", help="check a trained model saved by pippyrun --save")
    p.add_argument("model")
    p.add_argument("name")
    p.add_argument("config")
    p.add_argument("M", type=int)
    p.add_argument("--tol", type=float)
    sub.add_parser("self-test", help="check the committed references")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "self-test":
            return 0 if self_test() else 1
        ref = load_ref(a.name)
        if a.cmd == "losses":
            ok, text = check_losses(a.log, ref, a.config, a.M, rtol=a.rtol)
            print(text)
            return 0 if ok else 1
        ok1, t1 = check_saved_model(a.model, ref, a.config, a.M, tol=a.tol)
        ok2, t2 = check_saved_params(a.model, ref, a.config, a.M, rtol=a.tol)
        print(t1)
        print(t2)
        return 0 if ok1 and ok2 else 1
    except RefError as e:
        print("trainref: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
