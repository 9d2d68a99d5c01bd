#!/usr/bin/env python3
"""Every gradient rule against PyTorch, one tiny model per case, through the real compiler and runtime.

Each case of test/fixtures/grad_cases/ (written by test/fixtures/make_grad_cases.py with PyTorch) is
a small ONNX model whose float initializers are the parameters. For each of its runs (M microbatches,
one stage or a cut given by --split-before) the test compiles it with
`pippyc --train --optimizer sgd --lr LR`, runs one step with pippyrun and saves the model: with plain
SGD the saved parameter is P - LR * dLoss/dP, so (P - P_saved) / LR is pippyc's gradient. LR is a
power of two (exact scaling) large enough that rounding P - LR*g loses nothing of g that matters.
The gradient is compared element-wise with PyTorch's (float64):

    err = max |g_pippyc - g_torch| / max |g_torch|   per parameter, must be <= the case's tolerance:
    max(2e-6, 4 x torch_f32_err) (how far float32 rounding moves torch's own gradient; the median err
    is ~1e-7), or the case's "tol" with its reason (the log-softmax family: 1e-5).

Float initializers listed as frozen (non-differentiable inputs, integer paths) must come back
unchanged; BatchNormalization's running statistics must match torch's after the step; where a case
is about a fusion, the stage program shows it happened (stage_has / stage_lacks). Cases with
"error" must fail to compile with a message containing the given words (the node and the op).

usage: test_grad_rules.py BUILD_DIR [-v] [-j N] [--quick] [NAME...]
  -v       print every run's measured error
  --quick  only the first run of each case (every rule, M = 1 mostly: the sanitizer build)
  -j N   N cases at a time (default 2)
  NAME   only these cases (default: all)"""

import concurrent.futures
import glob
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ROOT, Results, build_dir, run, tail, tmpdir  # noqa: E402

CASES = os.path.join(ROOT, "test", "fixtures", "grad_cases")
LR = 65536.0   # 2^16
TOL_FLOOR = 2e-6   # relative to the largest gradient element of the parameter (see the top)
STATE_TOL = 1e-5


def randn(seed, shape):
    """make_grad_cases.py's float inputs (numpy's legacy generator is stable across versions)."""
    return np.random.RandomState(seed).standard_normal(shape).astype(np.float32)


def write_inputs(case, folder):
    args = []
    for name, spec in case["inputs"].items():
        if "seed" in spec:
            arr = randn(spec["seed"], spec["shape"])
        else:
            arr = np.array(spec["data"], dtype=spec["dtype"]).reshape(spec["shape"])
        path = os.path.join(folder, name + ".npy")
        np.save(path, arr)
        args += ["--input", f"{name}={path}"]
    return args


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def compile_args(b, model, case, M, out, split=None):
    cmd = [os.path.join(b, "pippyc"), model, "--train", "--optimizer", "sgd", "--lr", "%g" % LR,
           "--batch", str(case["batch"]), "--microbatches", str(M), "-o", out, "-q"]
    if split:
        cmd += ["--split-before", ",".join(split)]
    return cmd


def check_error(b, case, model, work):
    """The compile must fail, cleanly, naming the node and the op."""
    code, text = run(compile_args(b, model, case, 1, os.path.join(work, "out")), timeout=120)
    missing = [w for w in case["error"] if w not in text]
    ok = code > 0 and code != 124 and not missing and "Sanitizer" not in text
    return [(case["name"] + " (compile error)", ok,
             f"exit {code}, missing {missing}:\n        " + tail(text, 6), None, None)]


def check_dropout(got, ref, ratio):
    """A training Dropout's gradient: 0 where the element was dropped, else torch's / (1 - ratio)
    (compared after this); the share dropped near the ratio (4 standard deviations)."""
    dropped = float(np.mean(got == 0))
    sd = np.sqrt(ratio * (1 - ratio) / got.size)
    if abs(dropped - ratio) > 4 * sd:
        return False, f"{dropped:.0%} of the gradient is zero, expected about {ratio:.0%} (dropped elements)"
    return True, ""


def check_stage(case, out):
    """The fusions the case is about happened (or not): text stage0.c must contain / lack."""
    if not case.get("stage_has") and not case.get("stage_lacks"):
        return True, ""
    with open(os.path.join(out, "stage0.c")) as f:
        text = f.read()
    missing = [s for s in case.get("stage_has", []) if s not in text]
    present = [s for s in case.get("stage_lacks", []) if s in text]
    if missing or present:
        return False, f"stage0.c: missing {missing}, present {present} (a fusion did not happen as expected)"
    return True, ""


def tolerance(case):
    return case.get("tol") or max(TOL_FLOOR, 4 * case.get("torch_f32_err", 0))


def compare_run(case, r, before, after):
    """(ok, detail, worst error) of one run's saved parameters."""
    bad, worst, tol = [], 0.0, tolerance(case)
    for name, flat in r["grads"].items():
        ref = np.array(flat, dtype=np.float64).reshape(case["shapes"][name])
        if name not in after:
            bad.append(f"{name}: not in the saved model")
            continue
        got = (before[name].astype(np.float64) - after[name].astype(np.float64)) / LR
        if got.shape != ref.shape:
            bad.append(f"{name}: shape {list(got.shape)}, expected {list(ref.shape)}")
            continue
        scale = np.abs(ref).max()
        if "dropout_ratio" in case:
            ok, why = check_dropout(got, ref, case["dropout_ratio"])
            if not ok:
                bad.append(f"{name}: {why}")
            got = np.where(got == 0, 0.0, got * (1 - case["dropout_ratio"]))  # kept elements: torch's gradient
            ref = np.where(got == 0, 0.0, ref)
        err = float(np.abs(got - ref).max() / scale) if scale > 0 else float(np.abs(got).max())
        worst = max(worst, err)
        if not err <= tol:
            i = np.unravel_index(np.argmax(np.abs(got - ref)), ref.shape)
            bad.append(f"{name}: err {err:.2e} > {tol:.1e} (at {list(i)}: pippyc {got[i]:.6g}, torch {ref[i]:.6g}; "
                       f"max |g| {scale:.3g})")
    for name in case.get("frozen", []):
        if name not in after or not np.array_equal(before[name], after[name]):
            bad.append(f"{name}: a non-differentiable initializer changed")
    for name, flat in r.get("state", {}).items():
        ref = np.array(flat, dtype=np.float64)
        got = after[name].astype(np.float64).reshape(-1) if name in after else None
        if got is None or got.shape != ref.shape or np.abs(got - ref).max() > STATE_TOL * max(1.0, np.abs(ref).max()):
            bad.append(f"{name}: running statistic {got} != torch {ref}")
    return not bad, "; ".join(bad), worst


def run_case(b, path, quick=False):
    """[(name, ok, detail, measured error, tolerance)] of one case's runs (None, None where nothing was
    measured); a broken case file is a failure."""
    try:
        return run_case_runs(b, path, quick)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return [(os.path.basename(path)[:-5], False, f"cannot run the case: {type(e).__name__}: {e}", None, None)]


def run_case_runs(b, path, quick):
    case = json.load(open(path))
    model = path[:-5] + ".onnx"
    work = tmpdir("pippy-grad-")
    try:
        if "error" in case:
            return check_error(b, case, model, work)
        args = write_inputs(case, work)
        before = initializers(model)
        results = []
        for k, r in enumerate(case["runs"][:1] if quick else case["runs"]):
            split = r.get("split_before")
            name = f"{case['name']} M={r['M']}" + (f" stages={len(split) + 1}" if split else "")
            out = os.path.join(work, f"out{k}")
            code, text = run(compile_args(b, model, case, r["M"], out, split), timeout=120)
            if code != 0:
                results.append((name, False, "pippyc failed:\n        " + tail(text, 8), None, None))
                continue
            saved = os.path.join(out, "trained.onnx")
            code, text = run([os.path.join(b, "pippyrun"), out, "--steps", "1", "--threads", "1", "--timeout", "60",
                              "--save", saved] + args, timeout=120)
            if code != 0:
                results.append((name, False, f"pippyrun exited {code}:\n        " + tail(text, 8), None, None))
                continue
            ok, detail, worst = compare_run(case, r, before, initializers(saved))
            if k == 0 and not split:
                ok2, detail2 = check_stage(case, out)
                ok, detail = ok and ok2, "; ".join(d for d in (detail, detail2) if d)
            results.append((name, ok, detail, worst, tolerance(case)))
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    args = [a for a in sys.argv[1:]]
    verbose, quick = "-v" in args, "--quick" in args
    jobs = 2
    if "-j" in args:
        jobs = int(args[args.index("-j") + 1])
        del args[args.index("-j"):args.index("-j") + 2]
    names = [a for a in args[1:] if not a.startswith("-")]
    b = build_dir()
    paths = sorted(glob.glob(os.path.join(CASES, "*.json")))
    if names:
        paths = [p for p in paths if os.path.basename(p)[:-5] in names]
        if len(paths) != len(names):
            sys.exit("unknown case among: " + " ".join(names))
    res = Results("grad-rules")
    if not paths:
        res.check("the cases exist", False, f"no case in {CASES}")
        res.finish()
    worst = []  # (err / tolerance, err, name)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        for results in ex.map(lambda p: run_case(b, p, quick), paths):
            for name, ok, detail, err, tol in results:
                if err is not None:
                    worst.append((err / tol, err, name))
                    if verbose:
                        detail = detail or f"err {err:.2e}"
                        name = f"{name} (err {err:.1e})"
                res.check(name, ok, detail)
    if worst:
        errs = sorted(w[1] for w in worst)
        w = max(worst)
        print(f"measured error: median {errs[len(errs) // 2]:.1e}, max {errs[-1]:.1e}; closest to its tolerance: "
              f"{w[2]} ({w[1]:.1e}, {w[0]:.0%} of its tolerance)")
    res.finish()


if __name__ == "__main__":
    main()
