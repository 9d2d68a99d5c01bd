#!/usr/bin/env python3
"""pippyc's command line: inspect against PyTorch's parameter counts and onnxruntime's output
shapes (samples/models/<model>.json, written by samples/make_models.py), where the annotations
cut, and the errors users get for bad input (one clear message, exit 1 or 2, nothing lost); folding of
double/int64 shape arithmetic and the problems `inspect` lists.

usage: test_cli.py BUILD_DIR"""

import glob
import json
import os
import shutil
import sys

from common import MODELS, ROOT, Results, build_dir, run, tail, tmpdir

import numpy as np


def job_tag(secret):
    """The tag that names a job's shared memory (runtime/auth.c), computed independently."""
    import hashlib
    import hmac
    key = hmac.new(secret.encode(), b"pippy job key v1\0", hashlib.sha256).digest()
    return hmac.new(key, b"pippy job tag\0", hashlib.sha256).hexdigest()[:16]


def model(name):
    return os.path.join(MODELS, name + ".onnx")


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    res = Results("cli")

    # --- inspect: same parameter count as PyTorch, same output shapes as onnxruntime
    for m in ["mlp", "gpt_op14", "gpt_op17", "resnet18", "skip", "gpt_head_t", "gpt_op14_static", "gpt_op17_static",
              "resnet18_static", "mlp_static"]:
        meta = json.load(open(os.path.join(MODELS, m + ".json")))
        code, text = run([pippyc, "inspect", model(m), "--batch", "8", "--json"])
        if code != 0:
            res.check(f"inspect {m}", False, tail(text))
            continue
        info = json.loads(text)
        # (resnet18_static: the exporter folded BatchNorm into the convolutions, so BN's scale is gone)
        if m != "resnet18_static":
            res.check(f"inspect {m}: parameters {info['parameters']} == PyTorch's {meta['parameters']}",
                      info["parameters"] == meta["parameters"])
        shapes = {o["name"]: o["shape"] for o in info["outputs"]}
        res.check(f"inspect {m}: output shapes {shapes} == onnxruntime's {meta['outputs']}",
                  all(shapes.get(k) == v for k, v in meta["outputs"].items()))
        res.check(f"inspect {m}: no unsupported ops, node count {info['nodes']}",
                  info["unsupported"] == [] and info["nodes"] == meta["node_count"] and info["flops"] > 0)
        res.check(f"inspect {m}: op counts", info["ops"] == meta["op_counts"], f"{info['ops']} vs {meta['op_counts']}")
    code, text = run([pippyc, "inspect", model("mlp"), "--batch", "4"])
    res.check("inspect table lists nodes and totals", code == 0 and "/fc1/Gemm" in text and "totals:" in text, tail(text))
    code, text = run([pippyc, "inspect", model("mlp_annotated"), "--batch", "8", "--json"])
    info = json.loads(text) if code == 0 else {}
    res.check("inspect reports the PipeSplit split points", len(info.get("split_points", [])) == 2, tail(text))

    # --- where the cuts go
    out = tmpdir("pippy-cli-")
    code, text = run([pippyc, model("mlp_annotated"), "--batch", "8", "-o", out, "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    res.check("PipeSplit annotations make 3 stages", s and len(s["stages"]) == 3, tail(text))
    if s:
        # each stage after a cut starts with the first node after a PipeSplit in the file
        import onnx
        g = onnx.load(model("mlp_annotated")).graph
        nodes = [n.name for n in g.node]
        after = [nodes[i + 1] for i, n in enumerate(g.node) if n.op_type == "PipeSplit"]
        firsts = [st["nodes"][0] for st in s["stages"][1:]]
        res.check(f"cuts right after each PipeSplit: {firsts} == {after}", firsts == after)
        res.check("split source recorded", "PipeSplit" in s["config"]["split_source"])
    code, text = run([pippyc, model("mlp_meta"), "--batch", "8", "-o", out, "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    firsts = [st["nodes"][0] for st in s["stages"][1:]] if s else None
    res.check(f"metadata pippy.split_before cuts before /fc2/Gemm and /fc4/Gemm: {firsts}",
              firsts == ["/fc2/Gemm", "/fc4/Gemm"], tail(text))
    code, text = run([pippyc, model("gpt_op17"), "--batch", "8", "--split-before", "/blocks.1/", "-o", out,
                      "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    res.check("--split-before with a prefix (/blocks.1/) starts stage 1 in block 1",
              s is not None and len(s["stages"]) == 2 and s["stages"][1]["nodes"][0].startswith("/blocks.1/")
              and not any(n.startswith("/blocks.1/") for n in s["stages"][0]["nodes"]), tail(text))
    if s:
        res.check("tied embedding/head listed under tied when split across stages",
                  any(t["name"] == "tok_emb.weight" and t["stages"] == [0, 1] for t in s["tied"]), json.dumps(s["tied"]))
    code, text = run([pippyc, model("gpt_op17"), "--batch", "8", "--stages", "4", "-o", out, "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    res.check("automatic split into 4 non-empty stages", s is not None and len(s["stages"]) == 4
              and all(len(st["nodes"]) > 0 for st in s["stages"]), tail(text))
    if s:
        code, text = run([sys.executable, os.path.join(ROOT, "test/e2e/validate_schedule.py"),
                          os.path.join(out, "schedule.json")])
        res.check("schedule.json validates against schemas/schedule.schema.json", code == 0, tail(text))
        c = open(os.path.join(out, "stage1.c")).read()
        res.check("stage C file carries provenance and per-node comments",
                  "generated by pippyc" in c and "model hash" in c and "pippy_kernel_run(K[0]" in c)

    # training: a node's cost counts its backward. PiPPy's seed MLP (Linear 512-512-1024-256-10): by the forward
    # alone a cut after layer0 ties with one after layer1 (1 : 3 of the FLOPs either way), but layer0 needs no
    # input gradient, so with the backward the cut after layer1 balances better (about 2.1 : 0.8 against 0.5 : 2.4)
    code, text = run([pippyc, model("mlp_train"), "--train", "--loss", "mse", "--labels", "target", "--batch", "64",
                      "--microbatches", "4", "--stages", "2", "-o", out, "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    first = s["stages"][0]["nodes"] if s else None
    res.check(f"training: the automatic cut counts the backward (mlp_train: stage 0 runs layer0 and layer1): {first}",
              first == ["/layer0/lin/Gemm", "/layer1/lin/Gemm"], tail(text))

    tied_tests(res, pippyc, out)

    # --- bad input: one clear message, non-zero exit, never a signal
    junk = os.path.join(out, "junk.onnx")
    open(junk, "wb").write(os.urandom(3000))
    trunc = os.path.join(out, "trunc.onnx")
    open(trunc, "wb").write(open(model("mlp"), "rb").read()[:5000])
    text_file = os.path.join(out, "text.onnx")
    open(text_file, "w").write("this is not a model\n" * 20)
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    g = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="my_hardmax")], "g", [x], [y])
    unsup = os.path.join(out, "unsup.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), unsup)
    w16 = helper.make_tensor("w16", TensorProto.FLOAT16, [4], [1.0, 2.0, 3.0, 4.0])
    g = helper.make_graph([helper.make_node("Add", ["x", "w16"], ["y"], name="add16")], "g", [x], [y], [w16])
    f16 = os.path.join(out, "f16.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f16)
    errs = [
        ("an op outside the supported set", [pippyc, unsup, "-o", out], "Hardmax"),
        ("the unsupported op's node and the supported list", [pippyc, unsup, "-o", out], "inspect --ops"),
        ("an initializer of a dtype pippyc does not handle", [pippyc, f16, "-o", out], "w16"),
        ("random bytes", [pippyc, "inspect", junk], "junk.onnx"),
        ("truncated model", [pippyc, "inspect", trunc], "trunc.onnx"),
        ("a text file", [pippyc, "inspect", text_file], "text.onnx"),
        ("missing model file", [pippyc, "inspect", os.path.join(out, "nope.onnx")], "nope.onnx"),
        ("unbound symbolic dim", [pippyc, "inspect", model("mlp")], "--batch"),
        ("split name that matches nothing", [pippyc, model("mlp"), "--batch", "8", "--split-before", "/nope/",
                                             "-o", out], "/nope/"),
        ("more stages than nodes", [pippyc, model("skip"), "--batch", "8", "--stages", "40", "-o", out], "40"),
        ("microbatches that do not divide the batch", [pippyc, model("mlp"), "--batch", "8", "--microbatches", "3",
                                                       "-o", out], "divide"),
        ("--stages contradicting annotations", [pippyc, model("mlp_annotated"), "--batch", "8", "--stages", "2",
                                                "-o", out], "contradicts"),
        ("unknown option", [pippyc, model("mlp"), "--frobnicate"], "--frobnicate"),
        ("schedule not available for inference", [pippyc, model("mlp"), "--batch", "8", "--schedule", "1f1b",
                                                  "-o", out], "1f1b"),
    ]
    code, text = run([pippyc, "inspect", unsup])
    res.check("inspect lists the unsupported op and its node", code == 0 and "unsupported ops: Hardmax" in text
              and "my_hardmax" in text, tail(text))
    for what, cmd, needle in errs:
        code, text = run(cmd)
        lines = [l for l in text.strip().splitlines() if l]
        res.check(f"error: {what} -> exit {code}, names '{needle}'",
                  code in (1, 2) and needle in text and len(lines) >= 1 and "error" in text, tail(text))

    # nothing already written is lost: a failing compile leaves an earlier output folder intact
    good = tmpdir("pippy-cli-good-")
    code, text = run([pippyc, model("mlp"), "--batch", "8", "--stages", "2", "-o", good, "-q"])
    before = {f: open(os.path.join(good, f), "rb").read() for f in sorted(os.listdir(good))}
    run([pippyc, model("mlp"), "--batch", "8", "--stages", "2", "--cc", "false", "-o", good])
    run([pippyc, model("mlp"), "--batch", "8", "--microbatches", "3", "-o", good])
    after = {f: open(os.path.join(good, f), "rb").read() for f in sorted(os.listdir(good))}
    res.check("a failed compile leaves the earlier output folder unchanged", code == 0 and before == after,
              f"{sorted(before)} vs {sorted(after)}")

    # ranks on one machine share their stage-to-stage buffers; PIPPY_SHM=0 sends every byte by UCX
    np.save(os.path.join(out, "x.npy"), np.random.RandomState(0).randn(8, 64).astype(np.float32))
    code, text = run([pippyrun, good, "--input", "x=" + os.path.join(out, "x.npy")], timeout=120)
    res.check("same-host ranks: stage 1 maps its input from stage 0's shared memory",
              code == 0 and "[rank 1] stage 1" in text and "1 input shared in memory" in text, tail(text))
    code, text = run([pippyrun, good, "--input", "x=" + os.path.join(out, "x.npy")], timeout=120,
                     env={"PIPPY_SHM": "0"})
    res.check("PIPPY_SHM=0: no shared buffers", code == 0 and "shared in memory" not in text, tail(text))

    # runtime bad input (pippyrun)
    x = np.random.RandomState(0).randn(8, 64).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "x_bad.npy"), x[:, :32].copy())
    rt_errs = [
        ("missing input file", ["--input", "x=" + os.path.join(out, "none.npy")], "none.npy"),
        ("wrong-shaped input", ["--input", "x=" + os.path.join(out, "x_bad.npy")], "expected float[8,64]"),
        ("input not given", [], "--input x="),
        ("unknown input name", ["--input", "x=" + os.path.join(out, "x.npy"), "--input",
                                "q=" + os.path.join(out, "x.npy")], "q="),
    ]
    for what, args, needle in rt_errs:
        code, text = run([pippyrun, good, "--timeout", "10"] + args, timeout=120)
        res.check(f"runtime error: {what} -> exit {code}, names '{needle}'", code not in (0, 124) and needle in text,
                  tail(text))
    hosts = os.path.join(out, "hosts1")
    open(hosts, "w").write("127.0.0.1:29999\n")
    code, text = run([os.path.join(good, "stage0"), "--rank", "0", "--hosts", hosts, "--input",
                      "x=" + os.path.join(out, "x.npy"), "--timeout", "5"], timeout=60)
    res.check("hosts file with too few entries", code in (1, 2) and "hosts" in text and "2 ranks" in text, tail(text))
    # a schedule.json from another compile is refused
    other = tmpdir("pippy-cli-other-")
    run([pippyc, model("mlp"), "--batch", "4", "--stages", "2", "-o", other, "--emit-only", "-q"])
    code, text = run([os.path.join(good, "stage0"), "--rank", "0", "--schedule", os.path.join(other, "schedule.json"),
                      "--input", "x=" + os.path.join(out, "x.npy")], timeout=60)
    res.check("schedule.json of another compile is refused", code == 1 and "another compile" in text, tail(text))
    # a killed rank: the others fail too, within the timeout, naming the peer, and nothing is left running
    # (PIPPY_FAULT_DELAY_MS slows every F so the run is still going when the rank dies)
    slow = tmpdir("pippy-cli-slow-")
    run([pippyc, model("mlp"), "--batch", "8", "--stages", "2", "--microbatches", "8", "-o", slow, "-q"])
    code, text = run(["sh", "-c", f"'{pippyrun}' '{slow}' --timeout 5 --input x={out}/x.npy & pid=$!; "
                      f"for i in $(seq 100); do pgrep -f '{slow}/stag[e]1' >/dev/null && break; sleep 0.05; done; "
                      f"sleep 1; pkill -KILL -f '{slow}/stag[e]1'; wait $pid"], timeout=120,
                     env={"PIPPY_FAULT_DELAY_MS": "400"})
    code2, left = run(["sh", "-c", f"pgrep -f '{slow}/stag[e]' || true"])
    res.check(f"a killed rank under pippyrun: exit {code}, the failure is reported, no stage process is left",
              code not in (0, 124) and "rank 1" in text and left.strip() == "", tail(text))
    # the same without pippyrun: rank 0 must notice by itself and name its peer
    secret = "a test secret for the killed rank"
    code, text = run(["sh", "-c", f"'{slow}/stage1' --rank 1 --timeout 5 > /dev/null 2>&1 & p1=$!; "
                      f"'{slow}/stage0' --rank 0 --timeout 5 --input x={out}/x.npy & p0=$!; "
                      f"sleep 1.5; kill -KILL $p1; wait $p0"], timeout=60,
                     env={"PIPPY_FAULT_DELAY_MS": "400", "PIPPY_JOB_SECRET": secret})
    res.check(f"a killed rank without pippyrun: rank 0 exits {code} naming rank 1", code == 1 and "rank 1" in text,
              tail(text))
    left_shm = glob.glob(f"/dev/shm/pippy-{job_tag(secret)}-*")
    res.check("killed ranks leave no shared memory behind", left_shm == [], str(left_shm))
    shutil.rmtree(slow, ignore_errors=True)
    cost_model_tests(res, pippyc)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(good, ignore_errors=True)
    shutil.rmtree(other, ignore_errors=True)
    check_folding_and_problems(res, pippyc, pippyrun)
    res.finish()


def tied_tests(res, pippyc, out):
    """Parameters keep their identity through folding and fusion: the stages' parameter bytes add up to
    PyTorch's parameter count (a tied weight once per stage that holds it), and a weight tied through a
    folded Transpose (gpt_head_t: Transpose(tok_emb.weight) -> MatMul) is listed under tied."""
    for m, stages in [("gpt_head_t", 1), ("gpt_head_t", 3), ("gpt_head_t", 4), ("gpt_op17", 3), ("gpt_op14", 2),
                      ("mlp", 3), ("skip", 2)]:
        meta = json.load(open(os.path.join(MODELS, m + ".json")))
        code, text = run([pippyc, model(m), "--batch", "8", "--stages", str(stages), "-o", out, "--emit-only", "-q"])
        s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
        if s is None:
            res.check(f"{m} {stages} stages compiles", False, tail(text))
            continue
        pb = [st["parameter_bytes"] for st in s["stages"]]
        extra = sum(t["bytes"] * (len(t["stages"]) - 1) for t in s["tied"])
        res.check(f"{m} in {stages} stages: parameter_bytes {pb} - tied copies {extra} == 4 x PyTorch's "
                  f"{meta['parameters']} parameters", sum(pb) - extra == 4 * meta["parameters"], json.dumps(s["tied"]))
        if m.startswith("gpt") and stages > 1:
            tie = [t for t in s["tied"] if t["name"] == "tok_emb.weight"]
            res.check(f"{m} in {stages} stages: tok_emb.weight tied between the first and the last stage",
                      len(tie) == 1 and tie[0]["stages"] == [0, stages - 1] and tie[0]["bytes"] == 128 * 64 * 4,
                      json.dumps(s["tied"]))
        if m == "gpt_head_t":
            c = open(os.path.join(out, f"stage{stages - 1}.c")).read()
            res.check(f"{m} in {stages} stages: the last stage's code names the parameter its transposed head "
                      f"weight is made from", "made from parameter tok_emb.weight" in c)


    # BatchNorm folded into the convolution before it: W' stands for the conv weight, b' for BN's shift,
    # so PyTorch's count minus BN's scales (the one parameter that no longer exists)
    import onnx
    g = onnx.load(model("resnet18")).graph
    inits = {i.name: i for i in g.initializer}
    scales = sum(int(np.prod(inits[n.input[1]].dims)) for n in g.node if n.op_type == "BatchNormalization")
    meta = json.load(open(os.path.join(MODELS, "resnet18.json")))
    code, text = run([pippyc, model("resnet18"), "--batch", "8", "--stages", "2", "-o", out, "--emit-only", "-q"])
    s = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    pb = [st["parameter_bytes"] for st in s["stages"]] if s else None
    res.check(f"resnet18 in 2 stages (BatchNorm folded): parameter_bytes {pb} == 4 x (PyTorch's "
              f"{meta['parameters']} - {scales} BN scales)", s is not None and s["tied"] == []
              and sum(pb) == 4 * (meta["parameters"] - scales), tail(text))
    c = open(os.path.join(out, "stage0.c")).read() if s else ""
    res.check("resnet18: the folded convolution weight names its parameter",
              "float[12,3,7,7] weights: made from parameter conv1.weight" in c)


def snapshot(folder):
    """The files a compile writes that must not depend on the run: schedule.json, stageK.c, stageK.weights."""
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))
            if f == "schedule.json" or f.endswith((".c", ".weights"))}


def cost_model_tests(res, pippyc):
    """The cost model's rates are measured once per machine and read back: a compile is a pure function
    of its inputs and the cost-model file."""
    d = tmpdir("pippy-cost-")
    cache = os.path.join(d, "cache")
    env = {"XDG_CACHE_HOME": cache}
    out = os.path.join(d, "out")
    cmd = [pippyc, model("gpt_op17"), "--batch", "8", "--stages", "4", "--microbatches", "4", "-o", out, "--emit-only"]
    code, text = run(cmd, env=env)
    cached = glob.glob(os.path.join(cache, "pippyc", "costmodel-*.json"))
    res.check("first compile measures the rates and caches them per machine",
              code == 0 and len(cached) == 1 and "measured on this machine and cached in " + cached[0] in text,
              tail(text))
    first = snapshot(out) if code == 0 else {}
    code, text = run(cmd, env=env)
    res.check("second compile reads the cache and says so", code == 0 and "read from " + cached[0] in text if cached
              else False, tail(text))
    res.check("the two compiles write byte-identical schedule.json, stageK.c and stageK.weights",
              code == 0 and first and snapshot(out) == first, f"{sorted(first)}")
    if cached:
        s = json.load(open(os.path.join(out, "schedule.json")))
        cm = json.load(open(cached[0]))
        res.check("schedule.json records the rates and their file",
                  s["prediction"]["cost_model"]["source"] == cached[0]
                  and s["prediction"]["cost_model"]["matmul_gflops"] == cm["matmul_gflops"], json.dumps(s["prediction"]))
        kt, kf = cm.get("kernel_us", {}), cm.get("kernel_far_us", {})
        ops = {k.split(" ")[0] for k in kt}
        res.check(f"the first compile timed its kernels into the cache ({len(kt)} shapes of {sorted(ops)}) and "
                  f"schedule.json counts them", {"MatMul", "Softmax", "LayerNormalization"} <= ops
                  and not ops & {"Reshape", "Squeeze", "Unsqueeze", "Identity"}  # views: nothing runs
                  and all(v > 0 for v in kt.values()) and s["prediction"]["cost_model"]["timed_kernels"] == len(kt),
                  json.dumps(cm)[:600])
        res.check("each kernel was timed far too (kernel_far_us: after a cache scrub, a time of its own)",
                  set(kf) == set(kt) and all(v > 0 for v in kf.values()) and any(kf[k] != kt[k] for k in kt),
                  json.dumps(kf)[:600])
    # --cost-model FILE: written when absent (and this compile uses what it wrote), read afterwards
    pinned = os.path.join(d, "rates.json")
    cmd2 = cmd[:-1] + ["-q", "--cost-model", pinned]
    code1, text1 = run(cmd2, env=env)
    a = snapshot(out) if code1 == 0 else {}
    code2, text2 = run(cmd2, env=env)
    res.check("--cost-model FILE: written when absent, then read; both compiles byte-identical",
              code1 == 0 and code2 == 0 and os.path.isfile(pinned) and a and snapshot(out) == a, tail(text1 + text2))
    # the kernel table prices the nodes of its shapes: a pinned file whose kernels all take 1 s predicts
    # a step of seconds (and the compile times nothing new: every shape is in it)
    if os.path.isfile(pinned):
        rates = json.load(open(pinned))
        rates["kernel_us"] = {k: 1e6 for k in rates.get("kernel_us", {})}
        rates["kernel_far_us"] = {k: 1e6 for k in rates.get("kernel_us", {})}
        sec = os.path.join(d, "second.json")
        json.dump(rates, open(sec, "w"))
        code, text = run(cmd[:-1] + ["--cost-model", sec], env=env)
        s3 = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
        res.check("a hand-edited kernel_us table sets the prediction (kernels of 1 s: a step of seconds), "
                  "nothing timed again", s3 is not None and s3["prediction"]["step_ms"] > 4000
                  and "timed" not in text and json.load(open(sec)) == rates,
                  tail(text) + (f" step_ms {s3['prediction']['step_ms']}" if s3 else ""))
        # a file of an older pippyc holds near times only: the compile times its shapes far and adds them
        rates = json.load(open(pinned))
        rates.pop("kernel_far_us", None)
        old = os.path.join(d, "older.json")
        json.dump(rates, open(old, "w"))
        code, text = run(cmd[:-1] + ["--cost-model", old], env=env)
        now = json.load(open(old))
        res.check("a cost-model file without kernel_far_us: its shapes timed far and added, the compile says so",
                  code == 0 and "timed and added to" in text and set(now.get("kernel_far_us", {})) == set(now["kernel_us"])
                  and len(now["kernel_us"]) == len(rates["kernel_us"]), tail(text))
    # a pinned file with other rates moves the cuts: slow matmuls make the matmul-heavy stages expensive,
    # slow memory the element-wise ones (no kernel table in either: every node at the rates, so the
    # cuts do not depend on this machine); marked as not measured on this machine, never extended
    rates = json.load(open(pinned)) if os.path.isfile(pinned) else {}
    rates.pop("kernel_us", None)
    rates.pop("kernel_far_us", None)
    rates.update({"matmul_gflops": 0.01, "memory_gbytes_per_s": 1000, "measured": False})
    slow = os.path.join(d, "slow.json")
    json.dump(rates, open(slow, "w"))
    code, text = run(cmd[:-1] + ["-q", "--cost-model", slow], env=env)
    s2 = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else None
    rates.update({"matmul_gflops": 1e6, "memory_gbytes_per_s": 0.001})
    slowmem = os.path.join(d, "slowmem.json")
    json.dump(rates, open(slowmem, "w"))
    code4, text4 = run(cmd[:-1] + ["-q", "--cost-model", slowmem], env=env)
    s4 = json.load(open(os.path.join(out, "schedule.json"))) if code4 == 0 else None
    cuts = lambda sch: [len(st["nodes"]) for st in sch["stages"]] if sch else None
    res.check(f"the rates come from the file given: matmul_gflops 0.01 in schedule.json; its cuts {cuts(s2)}, "
              f"and {cuts(s4)} with slow memory instead",
              s2 is not None and s4 is not None and s2["prediction"]["cost_model"]["matmul_gflops"] == 0.01
              and s2["prediction"]["cost_model"]["source"] == slow and cuts(s2) != cuts(s4)
              and "kernel_us" not in json.load(open(slow)) and "kernel_us" not in json.load(open(slowmem)),
              tail(text + text4))
    # a bad --cost-model file is an error naming it; a bad cache is measured again with a warning
    bad = os.path.join(d, "bad.json")
    open(bad, "w").write('{"pippyc_cost_model": 1, "matmul_gflops": -3}')
    code, text = run(cmd[:-1] + ["--cost-model", bad], env=env)
    res.check("bad --cost-model file: exit 1 naming the file and the field",
              code == 1 and "bad.json" in text and "matmul_gflops" in text, tail(text))
    if os.path.isfile(pinned):
        rates = json.load(open(pinned))
        rates["kernel_us"] = {"MatMul float[2,3] float[3,4]": -1}
        json.dump(rates, open(bad, "w"))
        code, text = run(cmd[:-1] + ["--cost-model", bad], env=env)
        res.check("a bad kernel_us entry: exit 1 naming the file, the entry and what it must be",
                  code == 1 and "bad.json" in text and "MatMul float[2,3] float[3,4]" in text
                  and ": -1; expected" in text and "positive number" in text, tail(text))
    if cached:
        open(cached[0], "w").write("not json")
        code, text = run(cmd, env=env)
        res.check("a corrupt cache is measured again (warning) and rewritten",
                  code == 0 and "warning" in text and json.load(open(cached[0])).get("pippyc_cost_model") == 1,
                  tail(text))
    shutil.rmtree(d, ignore_errors=True)


def check_folding_and_problems(res, pippyc, pippyrun):
    """A double Sqrt (and an int64 Mod) on a path computed from shapes folds when compiling, and the
    result equals onnxruntime's; the same Sqrt on a run-time path stops the compile, and `inspect` lists
    it with every other problem of the model (an unsupported op, a second double op), not only the first."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper
    out = tmpdir("pippy-cli-fold-")
    x = helper.make_tensor_value_info("x", T.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", T.FLOAT, ["batch", 4])
    c = lambda name, v, dt=T.INT64: helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dt, [], [v]))
    # y = x * float(sqrt(double(dim 1))) + float(dim 1 mod 3): 2x + 1 at dim 1 = 4
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), c("one", 1), c("three", 3),
             helper.make_node("Gather", ["shape", "one"], ["d1"]),
             helper.make_node("Cast", ["d1"], ["d1d"], to=T.DOUBLE),
             helper.make_node("Sqrt", ["d1d"], ["sq"], name="shape_sqrt"),
             helper.make_node("Cast", ["sq"], ["sqf"], to=T.FLOAT),
             helper.make_node("Mod", ["d1", "three"], ["m"], name="shape_mod"),
             helper.make_node("Cast", ["m"], ["mf"], to=T.FLOAT),
             helper.make_node("Mul", ["x", "sqf"], ["xs"]), helper.make_node("Add", ["xs", "mf"], ["y"])]
    folds = os.path.join(out, "folds.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              folds)
    xv = np.random.RandomState(1).randn(2, 4).astype(np.float32)
    open(os.path.join(out, "x.pb"), "wb").write(numpy_helper.from_array(xv, "x").SerializeToString())
    want = ort.InferenceSession(folds, providers=["CPUExecutionProvider"]).run(None, {"x": xv})[0]
    code, text = run([pippyc, folds, "--batch", "2", "-o", os.path.join(out, "f"), "-q"])
    if code == 0:
        code, text = run([pippyrun, os.path.join(out, "f"), "--input", "x=" + os.path.join(out, "x.pb"),
                          "--output", "y=" + os.path.join(out, "y.pb")], timeout=120)
    got = numpy_helper.to_array(onnx.load_tensor(os.path.join(out, "y.pb"))) if code == 0 else None
    res.check("a double Sqrt and an int64 Mod on a shape path fold; the result equals onnxruntime's",
              got is not None and np.allclose(got, want, rtol=1e-6, atol=1e-6), tail(text))

    # the same ops on the run-time path, plus an unsupported op: every problem is listed
    nodes = [helper.make_node("Cast", ["x"], ["xd"], to=T.DOUBLE, name="to_double"),
             helper.make_node("Sqrt", ["xd"], ["sd"], name="runtime_sqrt"),
             helper.make_node("Cast", ["sd"], ["s"], to=T.FLOAT),
             helper.make_node("Hardmax", ["s"], ["h"], name="my_hardmax"),
             helper.make_node("Exp", ["xd"], ["e"], name="runtime_exp"),
             helper.make_node("Cast", ["e"], ["ef"], to=T.FLOAT),
             helper.make_node("Add", ["h", "ef"], ["y"], name="after_hardmax")]
    bad = os.path.join(out, "bad.onnx")
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]),
              bad)
    code, text = run([pippyc, bad, "--batch", "2", "-o", os.path.join(out, "b")])
    res.check("a double Sqrt on a run-time path stops the compile, naming the node and folding",
              code == 1 and "runtime_sqrt" in text and "found double" in text and "folds" in text, tail(text))
    code, text = run([pippyc, "inspect", bad, "--batch", "2"])
    res.check("inspect lists every problem: the double Sqrt, the unsupported op, the double Exp after them",
              code == 0 and "runtime_sqrt" in text and "my_hardmax" in text and "runtime_exp" in text
              and "1 later node not checked" in text, tail(text, 8))
    code, text = run([pippyc, "inspect", bad, "--batch", "2", "--json"])
    try:
        probs = json.loads(text)["problems"]
    except (ValueError, KeyError):
        probs = None
    res.check("inspect --json: problems name node, op and error",
              probs is not None and [(p["node"], p["op"]) for p in probs] ==
              [("runtime_sqrt", "Sqrt"), ("my_hardmax", "Hardmax"), ("runtime_exp", "Exp")], tail(text))
    code, text = run([pippyc, "inspect", folds, "--batch", "2"])
    res.check("inspect of the folding model: no problems", code == 0 and "problems: none" in text, tail(text))
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
