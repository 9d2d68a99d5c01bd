"""Shared helpers for the end-to-end tests: run commands with a timeout, count results."""

import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "samples", "models")


class Results:
    def __init__(self, suite):
        self.suite = suite
        self.passed = 0
        self.failed = 0
        self.failures = []

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  ok    {name}", flush=True)
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"  FAIL  {name}: {detail}", flush=True)

    def finish(self):
        if self.failures:
            print(f"{self.suite}: failed: " + ", ".join(self.failures))
        print(f"{self.suite}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run(cmd, timeout=300, env=None, cwd=None):
    """Run cmd (a list); return (exit code, stdout+stderr). A timeout counts as code 124."""
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=e, cwd=cwd)
        return p.returncode, p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as x:
        out = x.stdout.decode(errors="replace") if x.stdout else ""
        return 124, out + f"\n(timed out after {timeout} s)"


def build_dir():
    b = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PIPPY_BUILD", "build")
    return b if os.path.isabs(b) else os.path.join(ROOT, b)


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TMPDIR", "/tmp"))


def tail(text, n=12):
    return "\n        ".join(text.strip().splitlines()[-n:])


def run_gently(cmd, timeout=300, env=None):
    """Like run, for a launcher whose children live in their own process groups (pippyrun): on a
    timeout it gets SIGTERM first (which it passes to the ranks), SIGKILL 5 s later."""
    import signal
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=e)
    try:
        out = p.communicate(timeout=timeout)[0]
        return p.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            out = p.communicate(timeout=5)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0]
        return 124, (out or b"").decode(errors="replace") + f"\n(timed out after {timeout} s)"


def ort_run(model_proto, feeds):
    """onnxruntime's first output of an in-memory model (one thread, graph optimizations off): the reference
    the small hand-written models are compared with."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        None, feeds)[0]
