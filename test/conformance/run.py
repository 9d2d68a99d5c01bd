#!/usr/bin/env python3
"""Conformance runner: pippyc against the ONNX backend node tests.

usage: run.py [--pippyc PATH] [--filter SUBSTR] [-j N] [--json FILE] [--data DIR]
              [--timeout S] [--keep DIR] [--update-baseline] [-v]

For every ONNX node test (test_*/model.onnx with test_data_set_*/input_K.pb, output_K.pb):
  excluded       named in test/conformance/exclusions.txt (with the reason)
  unsupported-op the model uses an op outside `pippyc inspect --ops` (or the fallback list below)
  rejected       pippyc exited 1 or 2 with a message on stderr (its first line is recorded)
  passed         pippyc compiled it, stage0 ran every data set, and every output matched
  failed         anything else: wrong numbers, wrong shape or dtype, missing output, stage0 or pippyc
                 crashed (signal, sanitizer report), exited non-zero without a message, or timed out

The comparison is the ONNX backend runner's own (onnx/backend/test/runner/__init__.py,
assert_similar_outputs): shapes equal, dtypes equal, numpy.testing.assert_allclose with the test
case's rtol/atol (every node test uses rtol=1e-3, atol=1e-7; NaN matches NaN), strings compared
exactly, bfloat16 compared with rtol >= 2**-6.

Where the tests come from: onnx wheels up to 1.15 ship them as files in
onnx/backend/test/data/node/. Newer wheels build them in memory from onnx.backend.test.case.node;
the runner then writes them once (like `backend-test-tools generate-data`) into
~/.cache/pippyc/onnx-node-tests-<onnx version>/ (or $PIPPY_CONFORMANCE_DATA), so each failing
test can be reproduced by hand from there. --data DIR uses DIR instead.

The baseline (test/conformance/baseline.txt) lists every test that passes. A listed test that does
not pass now, whatever its status (failed, rejected, unsupported-op, excluded), is a regression and
counts as a failure. Tests that pass but are not listed are printed as newly passing; rerun with
--update-baseline to record them (it rewrites the file: the tests selected by --filter, or all,
as they are now; the other lines stay).

Output: one line per test that is not unsupported-op (status, name, detail), totals by status, the
regressions and newly passing tests, and last the line "N passed, N failed, N skipped" (failed
includes the regressions). Exit 1 when any test failed or regressed, 2 on bad usage or when pippyc is
missing, else 0.
"""

import argparse
import concurrent.futures
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXCLUSIONS = os.path.join(HERE, "exclusions.txt")
BASELINE = os.path.join(HERE, "baseline.txt")
BASELINE_HEADER = """\
# ONNX node tests that pippyc passes (test/conformance/run.py): one a line. A test listed here that no
# longer passes fails the run. Update with: python3 test/conformance/run.py --update-baseline
# onnx {version}
"""

# Used only while `pippyc inspect --ops` is not available (the op list of the issue).
FALLBACK_OPS = """
Gemm MatMul Add Sub Mul Div Pow Sqrt Reciprocal Erf Relu Tanh Sigmoid Gelu Softmax LogSoftmax
LayerNormalization ReduceMean ReduceSum Conv MaxPool AveragePool GlobalAveragePool
BatchNormalization Flatten Reshape Transpose Squeeze Unsqueeze Concat Split Slice Gather Where
Equal Cast Trilu Expand Identity Constant ConstantOfShape Shape Range Dropout
""".split()

STATUSES = ("passed", "failed", "rejected", "unsupported-op", "excluded")
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7


def die(msg, code=2):
    print(f"run.py: error: {msg}", file=sys.stderr)
    sys.exit(code)


# ---------------------------------------------------------------- processes

def run_proc(argv, timeout, cwd=None, env=None):
    """Runs argv in its own process group; returns (returncode or None on timeout, stdout, stderr).
    On timeout the whole group (e.g. pippyc and the cc it started) is killed."""
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        return -1000, "", f"cannot start {argv[0]}: {e}"
    try:
        out, err = p.communicate(timeout=max(timeout, 0.1))
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = p.communicate()
        rc = None
    return rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def signal_name(rc):
    try:
        return signal.Signals(-rc).name
    except (ValueError, TypeError):
        return f"signal {-rc}"


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


# pippyc's message when the C compiler fails on a generated stage: "compiling X.c with 'cc' failed (full log: LOG)"
CC_FAILED = re.compile(r"compiling \S+ with .* failed(?: \(full log: ([^)]+)\))?")


def cc_error(stderr, log):
    """The first compiler/linker error line, from the log pippyc points at or from its stderr."""
    text = stderr
    if log and os.path.isfile(log):
        with open(log, errors="replace") as f:
            text = f.read() + "\n" + stderr
    for line in text.splitlines():
        if re.search(r"error:|undefined reference|ld returned", line) and not line.startswith("pippyc:"):
            return line.strip()
    return first_line(stderr)


def sanitizer_line(text):
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKERS):
            return line.strip()
    return None


# ---------------------------------------------------------------- supported ops

def supported_ops(pippyc):
    """(set of op types, source description)."""
    rc, out, _ = run_proc([pippyc, "inspect", "--ops"], timeout=30)
    if rc == 0:
        ops = [l.strip() for l in out.splitlines() if l.strip()]
        if ops and all(re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.]*::)?[A-Za-z_][A-Za-z0-9_]*", o) for o in ops):
            return set(ops), f"`{pippyc} inspect --ops` ({len(ops)} ops)"
    return set(FALLBACK_OPS), f"fallback list in run.py ({len(FALLBACK_OPS)} ops; `pippyc inspect --ops` unavailable)"


def op_key(node):
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def model_ops(model):
    """Every op type the model uses, subgraphs and local functions included."""
    import onnx
    ops = set()

    def walk(graph):
        for n in graph.node:
            ops.add(op_key(n))
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        walk(g)

    walk(model.graph)
    local = {(f.domain, f.name) for f in model.functions}
    for f in model.functions:
        for n in f.node:
            if (n.domain, n.op_type) not in local:
                ops.add(op_key(n))
    return ops


# ---------------------------------------------------------------- test data

def wheel_node_dir():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")


def materialize_node_tests(dest):
    """Writes the node tests that onnx builds in memory as files into dest (atomically)."""
    import onnx
    from onnx import numpy_helper
    from onnx.backend.test.loader import load_node_model_tests
    import warnings

    print(f"run.py: writing the ONNX {onnx.__version__} node tests into {dest} (once) ...", file=sys.stderr)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    tolerances = {}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_node_model_tests()

    def proto(value, vi):
        t = vi.type
        if t.HasField("sequence_type"):
            return numpy_helper.from_list(value, vi.name)
        if t.HasField("optional_type"):
            return numpy_helper.from_optional(value, vi.name)
        if t.HasField("map_type"):
            return numpy_helper.from_dict(value, vi.name)
        if isinstance(value, onnx.TensorProto):
            return value
        return numpy_helper.from_array(value, vi.name)

    for case in cases:
        d = os.path.join(tmp, case.name)
        os.makedirs(d, exist_ok=True)
        onnx.save(case.model, os.path.join(d, "model.onnx"))
        tolerances[case.name] = {"rtol": case.rtol, "atol": case.atol}
        for i, (inputs, outputs) in enumerate(case.data_sets or []):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds, exist_ok=True)
            try:
                for j, v in enumerate(inputs):
                    with open(os.path.join(ds, f"input_{j}.pb"), "wb") as f:
                        f.write(proto(v, case.model.graph.input[j]).SerializeToString())
                for j, v in enumerate(outputs):
                    with open(os.path.join(ds, f"output_{j}.pb"), "wb") as f:
                        f.write(proto(v, case.model.graph.output[j]).SerializeToString())
            except Exception as e:  # a value onnx itself cannot serialise: leave a note
                with open(os.path.join(d, "UNUSABLE"), "w") as f:
                    f.write(f"{type(e).__name__}: {e}\n")
    with open(os.path.join(tmp, "tolerances.json"), "w") as f:
        json.dump(tolerances, f, indent=0, sort_keys=True)
    try:
        os.rename(tmp, dest)
    except OSError:  # another run got there first
        shutil.rmtree(tmp, ignore_errors=True)


def find_data_dir(arg):
    if arg:
        if not os.path.isdir(arg):
            die(f"--data {arg}: not a folder")
        return arg
    d = wheel_node_dir()
    if os.path.isdir(d) and glob.glob(os.path.join(d, "test_*")):
        return d
    import onnx
    base = os.environ.get("PIPPY_CONFORMANCE_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "pippyc")
    d = os.path.join(base, f"onnx-node-tests-{onnx.__version__}")
    if not os.path.isfile(os.path.join(d, "tolerances.json")):
        if os.path.isdir(d):
            shutil.rmtree(d, ignore_errors=True)
        materialize_node_tests(d)
    return d


def load_tolerances(data_dir):
    p = os.path.join(data_dir, "tolerances.json")
    if os.path.isfile(p):
        with open(p) as f:
            return json.load(f)
    return {}


def read_exclusions(path):
    ex = {}
    if not os.path.isfile(path):
        return ex
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            name, _, reason = text.partition("#")
            name, reason = name.strip(), reason.strip()
            if not re.fullmatch(r"test_[A-Za-z0-9_]+", name):
                die(f"{path}:{ln}: expected 'test_name  # reason', got {text!r}")
            if not reason:
                die(f"{path}:{ln}: exclusion of {name} gives no reason")
            ex[name] = reason
    return ex


def read_baseline(path):
    """(set of test names, onnx version the tests came from or None) of the baseline file."""
    names, version = set(), None
    if not os.path.isfile(path):
        return names, version
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            text = line.strip()
            if text.startswith("# onnx "):
                version = text[len("# onnx "):].strip()
            if not text or text.startswith("#"):
                continue
            if not re.fullmatch(r"test_[A-Za-z0-9_]+", text):
                die(f"{path}:{ln}: expected a test name, got {text!r}")
            names.add(text)
    return names, version


def write_baseline(path, names):
    import onnx
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(BASELINE_HEADER.format(version=onnx.__version__))
        for n in sorted(names):
            f.write(n + "\n")
    os.replace(tmp, path)


def load_tensor(path, vi=None):
    """A .pb file as a numpy array; (None, why) for non-tensors."""
    import onnx
    from onnx import numpy_helper
    with open(path, "rb") as f:
        data = f.read()
    if vi is not None and vi.type.HasField("optional_type"):
        o = onnx.OptionalProto()
        o.ParseFromString(data)
        return numpy_helper.to_optional(o), None
    if vi is not None and vi.type.HasField("sequence_type"):
        s = onnx.SequenceProto()
        s.ParseFromString(data)
        return numpy_helper.to_list(s), None
    t = onnx.TensorProto()
    t.ParseFromString(data)
    return numpy_helper.to_array(t), None


# ---------------------------------------------------------------- comparison

def compare(expected, actual, rtol, atol):
    """None when actual matches expected the way the ONNX backend runner checks it, else why not."""
    if tuple(actual.shape) != tuple(expected.shape):
        return f"shape {list(actual.shape)}, expected {list(expected.shape)}"
    if expected.dtype == object:
        if not np.array_equal(actual, expected):
            return "string values differ"
        return None
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    a, e = actual, expected
    if a.dtype.name == "bfloat16" or a.dtype.name.startswith("float8") or a.dtype.name.startswith("float4"):
        rtol = max(rtol, 2 ** -6)
        a, e = a.astype(np.float32), e.astype(np.float32)
    try:
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
    except AssertionError:
        af, ef = a.astype(np.float64), e.astype(np.float64)
        with np.errstate(all="ignore"):
            diff = np.abs(af - ef)
            bad = ~(np.isclose(af, ef, rtol=rtol, atol=atol, equal_nan=True))
        n_bad = int(bad.sum())
        idx = np.unravel_index(int(np.argmax(np.where(bad, np.nan_to_num(diff, nan=np.inf), -1))), a.shape) \
            if a.ndim else ()
        return (f"{n_bad}/{a.size} elements differ (rtol={rtol:g} atol={atol:g}); worst at "
                f"{[int(i) for i in idx]}: got {float(af[idx]):.9g}, expected {float(ef[idx]):.9g}")
    except TypeError as ex:
        return f"cannot compare: {ex}"
    return None


# ---------------------------------------------------------------- one test

class Ctx:
    pass


def run_test(ctx, name):
    t0 = time.monotonic()
    res = {"name": name, "status": None, "detail": "", "ops": []}

    def done(status, detail=""):
        # keep details short: paths into the work folder and the data folder add nothing
        detail = re.sub(r"\S*/\.pippyc-staging/", "", detail)
        detail = re.sub(r"\S*/pippy-conformance\.[^/\s]+/[^/\s]+/", "", detail)
        detail = detail.replace(ctx.data + "/", "")
        res["status"], res["detail"] = status, detail
        res["seconds"] = round(time.monotonic() - t0, 3)
        return res

    tdir = os.path.join(ctx.data, name)
    if name in ctx.exclusions:
        return done("excluded", ctx.exclusions[name])
    import onnx
    try:
        model = onnx.load(os.path.join(tdir, "model.onnx"))
    except Exception as e:
        return done("failed", f"runner cannot read model.onnx: {e}")
    ops = sorted(model_ops(model))
    res["ops"] = ops
    missing = [o for o in ops if o not in ctx.ops]
    if missing:
        return done("unsupported-op", " ".join(missing))
    if os.path.exists(os.path.join(tdir, "UNUSABLE")):
        return done("failed", "runner: test data could not be written: " + open(os.path.join(tdir, "UNUSABLE")).read().strip())

    tol = ctx.tolerances.get(name, {})
    rtol, atol = tol.get("rtol", DEFAULT_RTOL), tol.get("atol", DEFAULT_ATOL)
    deadline = t0 + ctx.timeout
    work = tempfile.mkdtemp(prefix=f"{name}.", dir=ctx.workroot)
    keep = False
    try:
        out = os.path.join(work, "out")
        cmd = [ctx.pippyc, os.path.join(tdir, "model.onnx"), "--stages", "1", "-o", out]
        res["command"] = " ".join(cmd)
        rc, sout, serr = run_proc(cmd, deadline - time.monotonic(), env=ctx.env)
        if rc is None:
            keep = True
            return done("failed", f"pippyc timed out after {ctx.timeout:g} s")
        san = sanitizer_line(serr)
        if san:
            keep = True
            return done("failed", f"pippyc: {san}")
        if rc < 0:
            keep = True
            return done("failed", f"pippyc crashed ({signal_name(rc)}): {first_line(serr)}".rstrip(": "))
        if rc != 0:
            msg = first_line(serr)
            cc = CC_FAILED.search(serr)
            if cc:  # pippyc accepted the model but its own C did not build: a bug, not a rejection
                keep = True
                return done("failed", f"stage program did not compile: {cc_error(serr, cc.group(1))}")
            if rc in (1, 2) and msg:
                return done("rejected", msg)
            keep = True
            if not msg:
                return done("failed", f"pippyc exited {rc} without a message")
            return done("failed", f"pippyc exited {rc}: {msg}")
        stage0 = os.path.join(out, "stage0")
        if not os.access(stage0, os.X_OK):
            keep = True
            return done("failed", "pippyc exited 0 but wrote no executable stage0")

        init_names = {i.name for i in model.graph.initializer}
        graph_inputs = [vi for vi in model.graph.input if vi.name not in init_names]
        datasets = sorted(glob.glob(os.path.join(tdir, "test_data_set_*")))
        if not datasets:
            return done("failed", "runner: the test has no test_data_set_*")
        for ds in datasets:
            dsn = os.path.basename(ds)
            argv = [stage0]
            for k, vi in enumerate(graph_inputs):
                f = os.path.join(ds, f"input_{k}.pb")
                if not os.path.exists(f):
                    continue  # an optional input the test leaves out
                if vi.type.HasField("optional_type"):
                    v, _ = load_tensor(f, vi)
                    if v is None:
                        continue  # an empty optional
                argv += ["--input", f"{vi.name}={f}"]
            got = []
            for k, vi in enumerate(model.graph.output):
                p = os.path.join(work, f"{dsn}.output_{k}.pb")
                got.append(p)
                argv += ["--output", f"{vi.name}={p}"]
            rc, sout, serr = run_proc(argv, deadline - time.monotonic(), cwd=out, env=ctx.env)
            where = f"{dsn}: stage0" if len(datasets) > 1 else "stage0"
            if rc is None:
                keep = True
                return done("failed", f"{where} timed out (test limit {ctx.timeout:g} s)")
            san = sanitizer_line(serr)
            if san:
                keep = True
                return done("failed", f"{where}: {san}")
            if rc < 0:
                keep = True
                return done("failed", f"{where} crashed ({signal_name(rc)}) {first_line(serr)}".rstrip())
            if rc != 0:
                keep = True
                return done("failed", f"{where} exited {rc}: {first_line(serr) or '(no message)'}")
            for k, vi in enumerate(model.graph.output):
                ef = os.path.join(ds, f"output_{k}.pb")
                if not os.path.exists(ef):
                    continue
                label = f"output {k} '{vi.name}'" + (f" ({dsn})" if len(datasets) > 1 else "")
                if not os.path.exists(got[k]):
                    keep = True
                    return done("failed", f"{label}: stage0 exited 0 but did not write it")
                try:
                    expected, _ = load_tensor(ef, vi)
                    actual, _ = load_tensor(got[k])
                except Exception as e:
                    keep = True
                    return done("failed", f"{label}: cannot read: {type(e).__name__}: {e}")
                why = compare(np.asarray(expected), np.asarray(actual), rtol, atol)
                if why:
                    keep = True
                    return done("failed", f"{label}: {why}")
        return done("passed")
    finally:
        if keep and ctx.keep:
            dst = os.path.join(ctx.keep, name)
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(work, dst)
            res["kept"] = dst
        else:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="Run the ONNX backend node tests through pippyc.")
    ap.add_argument("--pippyc", default=os.path.join(REPO, "build", "pippyc"),
                    help="the pippyc binary (default: build/pippyc)")
    ap.add_argument("--filter", action="append", default=[], metavar="SUBSTR",
                    help="only tests whose name contains SUBSTR (repeatable: any of them)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel workers (default 2)")
    ap.add_argument("--json", metavar="FILE", help="write every result to FILE")
    ap.add_argument("--data", metavar="DIR", help="folder of test_* node tests (default: the wheel's, "
                    "else generated into ~/.cache/pippyc)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per test, compile and runs (default 60)")
    ap.add_argument("--keep", metavar="DIR", help="keep the work folder (out/, outputs) of each failed test in DIR")
    ap.add_argument("--exclusions", default=EXCLUSIONS, help=argparse.SUPPRESS)
    ap.add_argument("--baseline", default=BASELINE, help="the list of passing tests (default: %(default)s)")
    ap.add_argument("--update-baseline", action="store_true",
                    help="rewrite the baseline with the selected tests that pass now")
    ap.add_argument("-v", "--verbose", action="store_true", help="report each test on stderr as it finishes")
    args = ap.parse_args()

    if args.jobs < 1:
        die("-j must be at least 1")
    ctx = Ctx()
    ctx.pippyc = os.path.abspath(args.pippyc)
    if not os.access(ctx.pippyc, os.X_OK):
        die(f"no pippyc at {ctx.pippyc} (build it with make, or pass --pippyc PATH)")
    ctx.data = os.path.abspath(find_data_dir(args.data))
    ctx.tolerances = load_tolerances(ctx.data)
    ctx.exclusions = read_exclusions(args.exclusions)
    ctx.ops, ops_source = supported_ops(ctx.pippyc)
    ctx.timeout = args.timeout
    ctx.keep = os.path.abspath(args.keep) if args.keep else None
    if ctx.keep:
        os.makedirs(ctx.keep, exist_ok=True)
    ctx.env = dict(os.environ)
    ctx.env.setdefault("OMP_NUM_THREADS", "1")  # the workers already use the cores

    names = sorted(os.path.basename(d) for d in glob.glob(os.path.join(ctx.data, "test_*"))
                   if os.path.isfile(os.path.join(d, "model.onnx")))
    if not names:
        die(f"no test_*/model.onnx under {ctx.data}")
    if not args.filter:
        stale = sorted(set(ctx.exclusions) - set(names))
        for s in stale:
            print(f"run.py: warning: exclusions.txt names {s}, which is not a test here", file=sys.stderr)
    if args.filter:
        names = [n for n in names if any(f in n for f in args.filter)]

    import onnx
    print(f"pippyc: {ctx.pippyc}\nops: {ops_source}\ntests: {ctx.data} (onnx {onnx.__version__}), "
          f"{len(names)} selected, {args.jobs} workers, {args.timeout:g} s per test")
    sys.stdout.flush()

    results = []
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="pippy-conformance.") as workroot:
        ctx.workroot = workroot
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as ex:
            futs = {ex.submit(run_test, ctx, n): n for n in names}
            for fut in concurrent.futures.as_completed(futs):
                try:
                    r = fut.result()
                except Exception as e:  # a bug in the runner must not hide as a pass
                    r = {"name": futs[fut], "status": "failed", "detail": f"runner error: {type(e).__name__}: {e}",
                         "ops": []}
                with lock:
                    results.append(r)
                    if args.verbose and r["status"] != "unsupported-op":
                        print(f"[{len(results)}/{len(names)}] {r['status']:<8} {r['name']}", file=sys.stderr)

    results.sort(key=lambda r: r["name"])
    w = max([len(r["name"]) for r in results if r["status"] != "unsupported-op"] + [4])
    for r in results:
        if r["status"] == "unsupported-op":
            continue
        print(f"{r['status']:<9} {r['name']:<{w}} {r['detail']}".rstrip())
    totals = {s: sum(1 for r in results if r["status"] == s) for s in STATUSES}
    print()
    print("totals: " + ", ".join(f"{totals[s]} {s}" for s in STATUSES) + f" ({len(results)} tests)")

    if args.json:
        by_op = {}
        for r in results:
            if r["status"] == "unsupported-op":
                continue
            for op in r["ops"]:
                by_op.setdefault(op, {s: 0 for s in STATUSES})[r["status"]] += 1
        doc = {"pippyc": ctx.pippyc, "ops_source": ops_source, "onnx_version": onnx.__version__,
               "data": ctx.data, "timeout_s": args.timeout, "filter": args.filter,
               "totals": totals, "by_op": by_op, "results": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    # the baseline: what passed before must pass now
    baseline, base_onnx = read_baseline(args.baseline)
    selected = {r["name"] for r in results}
    passing = {r["name"] for r in results if r["status"] == "passed"}
    regressed = [r for r in results if r["name"] in baseline and r["status"] != "passed"]
    vanished = sorted(n for n in baseline - selected if not args.filter)
    if vanished and base_onnx and base_onnx != onnx.__version__:
        # another onnx release may rename or drop tests: those are not pippyc's regressions
        print(f"run.py: note: the baseline lists {len(vanished)} tests that onnx {onnx.__version__} does not have "
              f"(it was made with onnx {base_onnx}): {' '.join(vanished[:10])}{' ...' if len(vanished) > 10 else ''}")
        vanished = []
    new = sorted(passing - baseline)
    for r in regressed:
        print(f"REGRESSED {r['name']}: in the baseline, now {r['status']} {r['detail']}".rstrip())
    for n in vanished:
        print(f"REGRESSED {n}: in the baseline, but no such test in {ctx.data}")
    if args.update_baseline:
        write_baseline(args.baseline, (baseline - selected) | passing)
        print(f"baseline {args.baseline} updated: {len(passing)} passing of {len(selected)} selected "
              f"({len(new)} added, {len(baseline & selected) - len(baseline & passing)} removed)")
    elif new:
        print(f"newly passing, not in the baseline ({len(new)}): {' '.join(new)}")
        print("  record them with: python3 test/conformance/run.py --update-baseline")
    if not os.path.isfile(args.baseline) and not args.update_baseline:
        print(f"run.py: warning: no baseline at {args.baseline}; create it with --update-baseline")
    # a regressed test counts as failed (not as skipped, whatever its status)
    moved = [] if args.update_baseline else [r for r in regressed if r["status"] != "failed"]
    regressions = 0 if args.update_baseline else len(regressed) + len(vanished)
    failed = totals["failed"] + len(moved) + (0 if args.update_baseline else len(vanished))
    skipped = totals["rejected"] + totals["unsupported-op"] + totals["excluded"] - len(moved)
    print(f"baseline: {len(baseline & passing)} of {len(baseline & selected) + len(vanished)} listed tests pass, "
          f"{regressions} regressed, {len(new)} newly passing")
    print(f"{totals['passed']} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
