#!/usr/bin/env python3
"""Hostile peers and hostile files against real stage programs over real UCX (issue 11): intruders
on a running pipeline (raw bytes, 16 zero bytes, half handshakes, idle connections, a wrong secret,
UCX clients forging a rank's tags by socket address and by worker address), start-up bounded by
--timeout, stopped and slow ranks (heartbeats), deadlocked action lists, the job secret's sources,
two jobs of one compile at once, a rank started twice, what is listened on, shared memory on
SIGTERM, and the smaller defects (-o with a quote, a FIFO as input, Gather out of range at run
time, programs outside OUT/).

usage: test_security.py BUILD_DIR [--quick]"""

import glob
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

from common import MODELS, Results, build_dir, run, run_gently, tail, tmpdir

import numpy as np

QUICK = "--quick" in sys.argv
B = build_dir()
PIPPYC, PIPPYRUN, INTRUDER = (os.path.join(B, n) for n in ("pippyc", "pippyrun", "test_intruder"))
# fresh per run: two runs of this suite at once (two checkouts on one machine) must not see each
# other's shared memory, whose names carry a tag of the secret
SECRET = "a secret only this test knows " + os.urandom(8).hex()
BAD_WORDS = ("AddressSanitizer", "runtime error:", "should have been flushed", "Segmentation fault", "(killed by")


def job_tag(secret):
    """The tag of a job's shared memory names (runtime/auth.c), computed independently."""
    key = hmac.new(secret.encode(), b"pippy job key v1\0", hashlib.sha256).digest()
    return hmac.new(key, b"pippy job tag\0", hashlib.sha256).hexdigest()[:16]


def free_ports(n):
    """n loopback ports free right now, below the kernel's ephemeral range (as pippyrun picks them):
    there the outgoing connections of the ranks and intruders take their local ports."""
    import random
    try:
        lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        lo = 0
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        for _ in range(64 if lo > 2048 else 1):
            try:
                s.bind(("127.0.0.1", lo - 1 - random.randrange(min(16384, lo - 1024)) if lo > 2048 else 0))
                break
            except OSError:
                continue
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Job:
    """Stage programs started directly, as a launcher would (no pippyrun)."""

    def __init__(self, out, n, env=None, args=None, ports=None, secret=SECRET, delay_ms=0, timeout=10):
        self.out, self.n = out, n
        self.ports = ports or free_ports(n)
        self.hosts = os.path.join(out, f"hosts.{self.ports[0]}")
        open(self.hosts, "w").write("".join(f"127.0.0.1:{p}\n" for p in self.ports))
        self.env = dict(os.environ)
        self.env.pop("PIPPY_JOB_SECRET", None)
        if secret is not None:
            self.env["PIPPY_JOB_SECRET"] = secret
        if delay_ms:
            self.env["PIPPY_FAULT_DELAY_MS"] = str(delay_ms)
        self.env.update(env or {})
        self.args, self.timeout, self.procs, self.logs = args or {}, timeout, {}, {}

    def start(self, r, extra_env=None, extra_args=None, hosts=None):
        e = dict(self.env)
        e.update(extra_env or {})
        log = open(os.path.join(self.out, f"log.{self.ports[0]}.{r}.{len(self.logs)}"), "w+")
        cmd = [os.path.join(self.out, f"stage{r}"), "--rank", str(r), "--hosts", hosts or self.hosts, "--timeout",
               str(self.timeout)] + self.args.get(r, []) + (extra_args or [])
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=e)
        self.logs[p.pid] = log
        return p

    def start_all(self):
        for r in range(self.n):
            self.procs[r] = self.start(r)
        return self

    def wait(self, p, limit):
        try:
            code = p.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            code = 124
        log = self.logs[p.pid]
        log.seek(0)
        return code, log.read()

    def finish(self, limit=60):
        return {r: self.wait(p, limit) for r, p in self.procs.items()}


# The intruder is not under test: its own teardown (UCX after forged traffic) may leak.
INTRUDER_ENV = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")


def clean(text):
    return not any(w in text for w in BAD_WORDS)


def compile_mlp(res, stages, mb, extra=()):
    out = tmpdir("pippy-sec-")
    code, text = run([PIPPYC, os.path.join(MODELS, "mlp.onnx"), "--stages", str(stages), "--batch", "8",
                      "--microbatches", str(mb), "-o", out, "-q"] + list(extra), timeout=600)
    if code != 0:
        res.check(f"compile mlp into {stages} stages", False, tail(text))
        return None
    return out


def mlp_reference(out, seed=0):
    import onnxruntime as ort
    x = np.random.RandomState(seed).randn(8, 64).astype(np.float32)
    path = os.path.join(out, f"x{seed}.npy")
    np.save(path, x)
    return path, ort.InferenceSession(os.path.join(MODELS, "mlp.onnx")).run(None, {"x": x})[0]


def right(path, ref):
    return os.path.exists(path) and np.allclose(np.load(path), ref, rtol=1e-4, atol=1e-5)


def wait_for(pred, limit):
    until = time.time() + limit
    while time.time() < until:
        if pred():
            return True
        time.sleep(0.02)
    return False


# ---- intruders ----

def test_intruders(res, out, x, ref):
    """Everything a stranger can do to the ports of a running 3-rank pipeline, before and during
    the run: the job's output is unchanged, no rank crashes, each stranger is named."""
    y = os.path.join(out, "y_intr.npy")
    job = Job(out, 3, delay_ms=250, args={0: ["--input", "x=" + x], 2: ["--output", "y=" + y]},
              env={"PIPPY_TEST_WORKER_ADDRESS_FILE": os.path.join(out, "waddr")})
    p = [str(q) for q in job.ports]
    dump = os.path.join(out, "dump.bin")
    # These connect as soon as the ports open, while the ranks still wait for each other. The 40 idle
    # connections crowd rank 0 (32 may wait at once: the oldest are dropped), so the full handshake
    # with a wrong secret goes to rank 1, where it cannot be crowded out.
    early = [
        [INTRUDER, "raw", "127.0.0.1", p[0], "1000"],
        [INTRUDER, "zeros", "127.0.0.1", p[1]],
        [INTRUDER, "half", "127.0.0.1", p[2], "4"],
        [INTRUDER, "idle", "127.0.0.1", p[0], "40", "3"],
        [INTRUDER, "wrong", "127.0.0.1", p[1], "2", "1", "3", "0", "not the secret of this job", dump],
        [INTRUDER, "ucxsock", "127.0.0.1", p[1], "1"],
    ]
    strangers = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=INTRUDER_ENV)
                 for c in early]
    time.sleep(0.2)
    job.start_all()
    waddr = os.path.join(out, "waddr.rank2")
    late = []
    if wait_for(lambda: os.path.exists(waddr) and os.path.exists(waddr.replace("rank2", "rank1")), 20):
        time.sleep(0.3)  # the ranks are connected and running
        for r in (2, 1):
            late.append(subprocess.Popen([INTRUDER, "ucxaddr", os.path.join(out, f"waddr.rank{r}"), "1"],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=INTRUDER_ENV))
        for r in (0, 2):  # and the same strangers once more, now that the job runs
            late.append(subprocess.Popen([INTRUDER, "raw", "127.0.0.1", p[r], "64"], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=INTRUDER_ENV))
    said = ""
    for s in strangers + late:
        try:
            said += s.communicate(timeout=60)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            s.kill()
            said += s.communicate()[0].decode(errors="replace") + "(an intruder hung)\n"
    done = job.finish()
    logs = "".join(t for _, t in done.values())
    res.check("intruders: every rank exits 0 (no crash, no abort)", all(c == 0 for c, _ in done.values())
              and clean(logs), tail(logs, 20))
    res.check("intruders: the job's output equals onnxruntime's", right(y, ref), tail(logs))
    left = glob.glob(f"/dev/shm/pippy-{job_tag(SECRET)}-*")
    res.check("intruders: the job leaves no shared memory behind", not left, str(left))
    res.check("intruders: the forged UCX messages reached the workers and matched nothing",
              "by worker address: " in said and "dropped" in logs and "matched no receive" in logs, said + tail(logs))
    res.check("intruders: strangers are named by address in the ranks' warnings",
              logs.count("a connection from 127.0.0.1:") + logs.count("dropped a connection from 127.0.0.1:") >= 3,
              tail(logs, 20))
    res.check("intruders: a wrong secret gets an answer that does not check out, then the door closes",
              "answered 96 bytes, its MAC did not check out" in said and "closed" in said, said)
    got = open(dump, "rb").read() if os.path.exists(dump) else b""
    res.check(f"intruders: the {len(got)} bytes a stranger got back hold no secret", len(got) >= 64 and
              SECRET.encode() not in got and hashlib.sha256(SECRET.encode()).digest()[:8] not in got, repr(got[:80]))


def test_startup_bounded(res, out):
    """A rank whose peers never come exits at --timeout, however many idle connections hold it."""
    job = Job(out, 3, timeout=2)
    idle = subprocess.Popen([INTRUDER, "idle", "127.0.0.1", str(job.ports[0]), "40", "8"], stdout=subprocess.PIPE,
                            env=INTRUDER_ENV)
    t0 = time.time()
    r0 = job.start(0, extra_args=["--input", "x=" + os.path.join(out, "x0.npy")])
    code, text = job.wait(r0, 60)
    took = time.time() - t0
    idle.kill()
    idle.wait()
    res.check(f"start-up with 40 idle connections ends at --timeout 2 ({took:.1f} s, exit {code})",
              code == 1 and took < 6 and "timed out" in text and "rank 1" in text and clean(text), tail(text))


def test_stopped_during_startup(res, out):
    """A rank stopped (SIGSTOP) during start-up: the others end with an error, not an abort in UCX."""
    job = Job(out, 3, timeout=2, args={0: ["--input", "x=" + os.path.join(out, "x0.npy")]})
    p1 = job.start(1)
    p1.send_signal(signal.SIGSTOP)
    t0 = time.time()
    p0, p2 = job.start(0, extra_args=job.args[0]), job.start(2)
    (c0, t0x), (c2, t2x) = job.wait(p0, 60), job.wait(p2, 60)
    took = time.time() - t0
    p1.kill()
    job.wait(p1, 10)
    res.check(f"a rank stopped during start-up: the others exit 1 with an error in {took:.1f} s",
              c0 == 1 and c2 == 1 and took < 10 and "error:" in t0x and "error:" in t2x and clean(t0x + t2x),
              tail(t0x) + "\n" + tail(t2x))


def test_stopped_during_run(res, out, x):
    job = Job(out, 3, timeout=2, delay_ms=200, args={0: ["--input", "x=" + x]}).start_all()
    time.sleep(1.5)
    job.procs[1].send_signal(signal.SIGSTOP)
    t0 = time.time()
    (c0, a), (c2, b) = job.wait(job.procs[0], 60), job.wait(job.procs[2], 60)
    took = time.time() - t0
    job.procs[1].kill()
    job.wait(job.procs[1], 10)
    res.check(f"a rank stopped (SIGSTOP) mid-run: the others end within --timeout 2 ({took:.1f} s), naming it",
              c0 != 0 and c2 != 0 and took < 6 and "rank 1" in a + b and "sent nothing" in a + b and clean(a + b),
              tail(a) + "\n" + tail(b))


def test_slow_step(res, out, x, ref):
    """Every F takes 2.5 s with --timeout 1: the heartbeat keeps the waiting ranks waiting."""
    y = os.path.join(out, "y_slow.npy")
    job = Job(out, 3, timeout=1, delay_ms=2500, args={0: ["--input", "x=" + x], 2: ["--output", "y=" + y]})
    done = job.start_all().finish(120)
    logs = "".join(t for _, t in done.values())
    res.check("steps of 2.5 s under --timeout 1: no rank times out, the output is right",
              all(c == 0 for c, _ in done.values()) and right(y, ref), tail(logs))


def test_deadlock(res, x):
    """Action lists that wait for each other: every rank stops with an error, none hangs."""
    out = compile_mlp(res, 3, 4)
    if not out:
        return
    s = json.load(open(os.path.join(out, "schedule.json")))
    acts = s["ranks"][1]["actions"]
    k = max(i for i, a in enumerate(acts) if a["op"] == "SEND_F")
    del acts[k]  # rank 2 never gets the last microbatch
    json.dump(s, open(os.path.join(out, "schedule.json"), "w"))
    t0 = time.time()
    code, text = run_gently([PIPPYRUN, out, "--timeout", "1", "--input", "x=" + x], timeout=120)
    took = time.time() - t0
    res.check(f"a deadlocked action list ends with an error naming it ({took:.1f} s, exit {code})",
              code not in (0, 124) and took < 30 and ("nothing moved" in text or "never runs" in text) and
              clean(text), tail(text))
    shutil.rmtree(out, ignore_errors=True)


# ---- the job secret ----

def test_secrets(res, out, x):
    def pair(env0, env1, args0=(), args1=(), limit=30):
        job = Job(out, 2, secret=None, timeout=3)
        a = job.start(0, extra_env=env0, extra_args=list(args0) + ["--input", "x=" + x])
        b = job.start(1, extra_env=env1, extra_args=list(args1))
        return job.wait(a, limit), job.wait(b, limit)

    two = compile_mlp(res, 2, 2)
    if not two:
        return
    out = two
    (c0, t0), (c1, t1) = pair({"PIPPY_JOB_SECRET": "first job secret 12345"},
                              {"PIPPY_JOB_SECRET": "second job secret 6789"})
    res.check("ranks with different secrets: the connecting rank refuses at once, the other times out",
              c1 == 1 and "does not hold this job's secret" in t1 and c0 != 0 and clean(t0 + t1), tail(t0 + t1))
    (c0, t0), (c1, t1) = pair({}, {})
    res.check("no secret anywhere: refused with a clear error", c0 == 2 and c1 == 2 and "no job secret" in t0,
              tail(t0))
    (c0, t0), _ = pair({"PIPPY_JOB_SECRET": "short"}, {"PIPPY_JOB_SECRET": "short"})
    res.check("a secret of 5 characters is refused", c0 != 0 and "at least 16" in t0, tail(t0))
    sec = os.path.join(out, "secret")
    open(sec, "w").write("a file secret of enough bytes\n")
    os.chmod(sec, 0o644)
    (c0, t0), _ = pair({}, {}, ["--job-secret-file", sec], ["--job-secret-file", sec])
    res.check("a secret file others can read is refused", c0 != 0 and "chmod 600" in t0, tail(t0))
    os.chmod(sec, 0o600)
    (c0, t0), (c1, t1) = pair({}, {}, ["--job-secret-file", sec], ["--job-secret-file", sec])
    res.check("--job-secret-file (mode 600) on both ranks: the job runs", c0 == 0 and c1 == 0, tail(t0 + t1))
    (c0, t0), (c1, t1) = pair({"SLURM_JOB_ID": "4242"}, {"SLURM_JOB_ID": "4242"})
    res.check("the launcher's job id as a fallback: the job runs, with a warning", c0 == 0 and c1 == 0 and
              "warning: no job secret given" in t0 and "SLURM_JOB_ID" in t0, tail(t0))
    (c0, t0), _ = pair({"PIPPY_JOB_SECRET": SECRET}, {"PIPPY_JOB_SECRET": SECRET}, ["--job-token", "deadbeef"])
    res.check("--job-token is gone, with a pointer to its replacement", c0 == 2 and "--job-secret-file" in t0,
              tail(t0))
    shutil.rmtree(two, ignore_errors=True)


# ---- jobs and ranks ----

def test_concurrent_jobs(res, out):
    """Two pippyrun jobs of the same compile at once, many times: both right every time."""
    pairs = 3 if QUICK else 8
    refs = [mlp_reference(out, seed) for seed in (1, 2)]
    bad = []
    for i in range(pairs):
        procs = []
        for k, (x, _) in enumerate(refs):
            y = os.path.join(out, f"yc{k}.npy")
            if os.path.exists(y):
                os.unlink(y)
            procs.append(subprocess.Popen([PIPPYRUN, out, "--timeout", "20", "--input", "x=" + x, "--output",
                                           "y=" + y], stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for k, p in enumerate(procs):
            try:
                text = p.communicate(timeout=120)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)  # pippyrun passes it to its ranks
                text = p.communicate()[0].decode(errors="replace") + "\n(timed out)"
            if p.returncode != 0 or not right(os.path.join(out, f"yc{k}.npy"), refs[k][1]):
                bad.append(f"pair {i} job {k}: exit {p.returncode}: {tail(text)}")
    res.check(f"{pairs} pairs of concurrent jobs of one compile: every output right", not bad, "\n".join(bad))


def test_rank_twice(res, out, x, ref):
    y = os.path.join(out, "y_twice.npy")
    job = Job(out, 3, delay_ms=200, args={0: ["--input", "x=" + x], 2: ["--output", "y=" + y]}).start_all()
    time.sleep(0.8)
    same = job.start(1)  # same address: it cannot even listen
    other_port = free_ports(1)[0]
    hosts2 = job.hosts + ".b"
    open(hosts2, "w").write(f"127.0.0.1:{job.ports[0]}\n127.0.0.1:{other_port}\n127.0.0.1:{job.ports[2]}\n")
    elsewhere = job.start(1, hosts=hosts2)  # another address: the running ranks refuse it
    (cs, ts), (ce, te) = job.wait(same, 30), job.wait(elsewhere, 30)
    done = job.finish()
    res.check("a rank started twice on its address: refused at once (the port is in use)",
              cs == 1 and "in use" in ts and "already running" in ts, tail(ts))
    res.check("a rank started twice elsewhere: the running ranks refuse it", ce == 1 and "started twice" in te,
              tail(te))
    res.check("...and the job itself goes on and is right", all(c == 0 for c, _ in done.values()) and right(y, ref),
              tail("".join(t for _, t in done.values())))


def test_listening(res, out, x):
    """Nothing listens on an address the hosts file does not give (UCX's own sockets included)."""
    job = Job(out, 3, delay_ms=300, args={0: ["--input", "x=" + x]}).start_all()
    time.sleep(1.2)
    code, text = run(["ss", "-ltnpH"])
    pids = [str(p.pid) for p in job.procs.values()]
    mine = [l for l in text.splitlines() if any(f"pid={p}," in l for p in pids)]
    addrs = sorted({l.split()[3].rsplit(":", 1)[0] for l in mine})
    job.finish()
    res.check(f"the ranks listen on 127.0.0.1 only ({len(mine)} sockets: {addrs})",
              code == 0 and mine and addrs == ["127.0.0.1"], text)


def test_shm_sigterm(res, out, x):
    """A producer killed by SIGTERM while waiting for its peers leaves no shared memory."""
    job = Job(out, 3, timeout=20, args={0: ["--input", "x=" + x]})
    pat = f"/dev/shm/pippy-{job_tag(SECRET)}-*"
    for f in glob.glob(pat):
        os.unlink(f)
    p0 = job.start(0, extra_args=job.args[0])
    made = wait_for(lambda: glob.glob(pat), 20)
    p0.send_signal(signal.SIGTERM)
    code, text = job.wait(p0, 20)
    left = glob.glob(pat)
    res.check(f"SIGTERM on a producer holding shared memory: exit {code}, nothing left in /dev/shm",
              made and code == -signal.SIGTERM and not left, f"made={made} left={left} {tail(text)}")


# ---- the smaller defects ----

def test_small_defects(res, out, x):
    t = tmpdir("pippy-sec-small-")
    weird = os.path.join(t, "o'; touch " + os.path.join(t, "pwned") + "; '")
    code, text = run([PIPPYC, os.path.join(MODELS, "mlp.onnx"), "--stages", "2", "--batch", "8", "-o", weird, "-q"],
                     timeout=600)
    res.check("-o with a quote in it: no command runs, the stages build", code == 0 and
              not os.path.exists(os.path.join(t, "pwned")) and os.path.exists(os.path.join(weird, "stage1")),
              tail(text))
    fifo = os.path.join(t, "fifo.npy")
    os.mkfifo(fifo)
    code, text = run([PIPPYRUN, weird, "--timeout", "10", "--input", "x=" + fifo], timeout=60)
    res.check("a FIFO as an input is refused at once", code not in (0, 124) and "not a regular file" in text,
              tail(text))
    s = json.load(open(os.path.join(weird, "schedule.json")))
    s["ranks"][0]["program"] = "../../../../bin/true"
    json.dump(s, open(os.path.join(weird, "schedule.json"), "w"))
    code, text = run([PIPPYRUN, weird], timeout=60)
    res.check("a program path outside OUT/ is not run", code == 1 and "no folder, no path" in text, tail(text))
    s["ranks"][0]["program"] = "stage0"
    json.dump(s, open(os.path.join(weird, "schedule.json"), "w"))
    os.rename(os.path.join(weird, "stage0"), os.path.join(weird, "real0"))
    os.symlink("/bin/true", os.path.join(weird, "stage0"))
    code, text = run([PIPPYRUN, weird], timeout=60)
    res.check("a program that is a symbolic link is not run", code == 1 and "symbolic link" in text, tail(text))
    # Gather with indices from the input: out of range at run time is an error naming node and index
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    g = helper.make_graph([helper.make_node("Gather", ["table", "idx"], ["y"], name="lookup")], "g",
                          [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
                          [numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")])
    model = os.path.join(t, "gather.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    gout = os.path.join(t, "gout")
    code, text = run([PIPPYC, model, "-o", gout, "-q"], timeout=600)
    idx = os.path.join(t, "idx.npy")
    np.save(idx, np.array([[1, 2, 3], [4, 12, 5]], dtype=np.int64))
    code, text = run([PIPPYRUN, gout, "--input", "idx=" + idx], timeout=60)
    res.check("Gather index 12 of 10 at run time: an error naming node and index",
              code not in (0, 124) and "node 'lookup' (Gather): index 12" in text, tail(text))
    shutil.rmtree(t, ignore_errors=True)


def main():
    res = Results("security")
    if not os.path.exists(INTRUDER):
        res.check(f"{INTRUDER} exists (make builds it)", False)
        res.finish()
    out = compile_mlp(res, 3, 8)
    if not out:
        res.finish()
    x, ref = mlp_reference(out)
    test_intruders(res, out, x, ref)
    test_startup_bounded(res, out)
    test_stopped_during_startup(res, out)
    test_stopped_during_run(res, out, x)
    test_slow_step(res, out, x, ref)
    test_deadlock(res, x)
    test_secrets(res, out, x)
    test_concurrent_jobs(res, out)
    test_rank_twice(res, out, x, ref)
    test_listening(res, out, x)
    test_shm_sigterm(res, out, x)
    test_small_defects(res, out, x)
    shutil.rmtree(out, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
