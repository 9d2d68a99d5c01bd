"""Helpers shared by the bench scripts: paths, compiling with pippyc, running stage programs, parsing
their timing line and Chrome traces, onnxruntime sessions, statistics and tables."""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
PIPPYC = os.path.join(BUILD, "pippyc")
PIPPYRUN = os.path.join(BUILD, "pippyrun")

# "stage 0 (rank 0): 12 microbatches in 123.4 ms (compute 120.1 ms, waiting 3.3 ms)"
STAGE_LINE = re.compile(r"stage\s+(\d+)\s+\(rank\s+(\d+)\):\s+(\d+)\s+microbatch(?:es)?\s+in\s+"
                        r"([0-9.eE+-]+)\s*ms(?:\s*\(compute\s+([0-9.eE+-]+)\s*ms,\s*waiting\s+"
                        r"([0-9.eE+-]+)\s*ms)?")


def bench_module(name):
    """bench/NAME.py imported by its path (once), without putting bench/ on sys.path, where
    bench/profile.py would shadow the standard library's profile module that torch imports."""
    if name in sys.modules:
        return sys.modules[name]
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def model_info(name):
    with open(os.path.join(WORK, name + ".json")) as f:
        return json.load(f)


def need_models(names):
    missing = [n for n in names if not os.path.exists(os.path.join(WORK, n + ".onnx"))]
    if missing:
        sys.exit("bench: missing %s; run python3 bench/make_models.py first" % ", ".join(missing))
    for exe in (PIPPYC, PIPPYRUN):
        if not os.path.exists(exe):
            sys.exit("bench: %s not found (make BUILD=%s, or set BUILD=)" % (exe, os.path.basename(BUILD)))


def sh(cmd, timeout=900, env=None, check=True):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (rc %d): %s\n%s" % (p.returncode, " ".join(cmd),
                                                                 p.stdout[-4000:]))
    return p


def compile_model(name, out, stages, batch, microbatches, extra=()):
    """pippyc NAME --stages S --batch B --microbatches M -o OUT -q. Returns seconds taken."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    t = time.perf_counter()
    sh([PIPPYC, os.path.join(WORK, name + ".onnx"), "--stages", str(stages), "--batch", str(batch),
        "--microbatches", str(microbatches), "-o", out, "-q"] + list(extra))
    return time.perf_counter() - t


def parse_stage_lines(text):
    """{rank: dict(stage, microbatches, ms, compute_ms, waiting_ms)} from the programs' output."""
    res = {}
    for m in STAGE_LINE.finditer(text):
        res[int(m.group(2))] = dict(stage=int(m.group(1)), microbatches=int(m.group(3)),
                                    ms=float(m.group(4)),
                                    compute_ms=float(m.group(5)) if m.group(5) else None,
                                    waiting_ms=float(m.group(6)) if m.group(6) else None)
    return res


def run_stage0(out, in_name, in_file, out_name, out_file, extra=(), env=None):
    """Run the one-stage program directly. Returns (parsed line of rank 0, wall seconds, stdout)."""
    t = time.perf_counter()
    p = sh([os.path.join(out, "stage0"), "--input", "%s=%s" % (in_name, in_file),
            "--output", "%s=%s" % (out_name, out_file)] + list(extra), env=env)
    wall = time.perf_counter() - t
    lines = parse_stage_lines(p.stdout)
    if 0 not in lines:
        raise RuntimeError("no timing line in the output of %s/stage0:\n%s" % (out, p.stdout[-2000:]))
    return lines[0], wall, p.stdout


def free_ports(n):
    """n TCP ports on 127.0.0.1 that are free now (bound to port 0, then released)."""
    import socket

    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def fresh_hosts(out):
    """Rewrite OUT/hosts with free ports. pippyc derives the ports from the model, so every compile of
    one model shares them; before commit 74e9a96 a rerun within ~60 s also failed with "port in use"
    (the earlier run's sockets in TIME_WAIT). Fresh ports keep each bench run independent of both
    (pippyrun gives local ranks free ports itself since ebf7e04; this is then harmless)."""
    path = os.path.join(out, "hosts")
    with open(path) as f:
        n = sum(1 for line in f if line.strip() and not line.startswith("#"))
    with open(path, "w") as f:
        f.write("# rewritten by bench/_common.py with free ports\n")
        for p in free_ports(n):
            f.write("127.0.0.1:%d\n" % p)


def run_pipeline(out, in_name, in_file, out_name, out_file, trace=None, extra=(), env=None):
    """pippyrun OUT (with fresh ports); returns (per-rank timing lines, wall seconds, stdout)."""
    fresh_hosts(out)
    cmd = [PIPPYRUN, out, "--input", "%s=%s" % (in_name, in_file),
           "--output", "%s=%s" % (out_name, out_file)]
    if trace:
        cmd += ["--trace", trace]
    t = time.perf_counter()
    p = sh(cmd + list(extra), env=env)
    wall = time.perf_counter() - t
    return parse_stage_lines(p.stdout), wall, p.stdout


def load_trace(path):
    """Complete ("X") events of a Chrome trace: list of dicts with name, pid, tid, ts, dur (µs)."""
    with open(path) as f:
        data = json.load(f)
    evs = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in evs if e.get("ph") == "X"]


def is_compute(ev):
    """Forward/backward compute events ("F", "B", "W", "I", possibly with a microbatch suffix)."""
    n = ev.get("name", "")
    return re.match(r"^(F|B|W|I)(\b|\d|\s|$)", n) is not None or ev.get("cat") == "compute"


def is_wait(ev):
    """A rank waiting for a receive: "wait" events (older runtime) or cat "wait" ("idle")."""
    return ev.get("name") == "wait" or ev.get("cat") == "wait"


def is_send(ev):
    """A send of one microbatch's value: "send" events (older runtime: the isend call) or cat "send"
    named after the value (newer runtime: from post to completion)."""
    return ev.get("cat") == "send" and ev.get("name") != "drain sends"


def ort_session(path, threads=1, optimize=True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_calls(fn, n, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """(min, max) as a string for the tables."""
    return "%.3g-%.3g" % (min(xs), max(xs)) if xs else "-"


def table(headers, rows):
    cols = [[str(h)] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    w = [max(len(c) for c in col) for col in cols]
    lines = ["| " + " | ".join(str(h).ljust(w[i]) for i, h in enumerate(headers)) + " |",
             "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(v).ljust(w[i]) for i, v in enumerate(r)) + " |")
    return "\n".join(lines)


def loadavg():
    """The 1, 5 and 15 minute load averages, or None."""
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


def cpu_busy(window_s=0.5):
    """Fraction of the machine's CPU time that was busy (not idle or iowait) over window_s seconds."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(window_s)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_s, busy_below=0.15, window_s=0.5):
    """Wait (up to max_s) until the machine was at most busy_below busy over a window: other people's
    work then takes less from a measurement. Returns the last busy fraction seen."""
    t_end = time.time() + max_s
    busy = cpu_busy(window_s)
    while busy > busy_below and time.time() < t_end:
        busy = cpu_busy(window_s)
    return busy


class Checks:
    """Pass/fail lines of a tool's --quick self-check, ending with "N passed, N failed"."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        print("%s: %s" % ("ok" if ok else "FAIL", what))
        self.passed += bool(ok)
        self.failed += not ok

    def summary(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


def machine_line():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    return "nproc %d, %s, load average %s, %s" % (os.cpu_count() or 0, model, " ".join(load),
                                                   time.strftime("%Y-%m-%d %H:%M"))
