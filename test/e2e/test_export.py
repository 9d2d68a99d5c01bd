#!/usr/bin/env python3
"""pippyc export: the trained model written from a checkpoint, checked with onnx and onnxruntime.

A compile's schedule.json gets the per-stage "parameters" lists a training compile writes (each
stage lists the initializers its nodes use; a tied one is listed by every stage that uses it), and
checkpoint files are written here by an independent writer of the format documented in
runtime/ckpt.h (header, entries, 64-byte aligned parts, zlib CRC-32 trailer). Then:
  - zeroing the last layer's bias changes onnxruntime's output by exactly minus that bias (numpy);
  - with every parameter changed, the exported model's initializers are the checkpoint's values
    (a tied one from the lowest stage), everything else is as in the original, and onnxruntime's
    output equals that of the original with its initializers replaced by the onnx package;
  - an older step with --step, a model kept in external data files (--inline-limit), a model
    loaded from external data, the GPT sample's tied embedding;
  - bad input: a name or shape the model does not have, damaged or foreign checkpoints, a step
    that is not there, no checkpoint, a compile for inference, a model that moved.

usage: test_export.py BUILD_DIR"""

import json
import os
import shutil
import struct
import zlib

from common import MODELS, Results, build_dir, run, tail, tmpdir

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def align(n, a=64):
    return (n + a - 1) // a * a


def write_ckpt(ckpt_dir, step, stage, compile_hash, parts):
    """One stage's checkpoint file: parts is a list of (name, bytes)."""
    header_bytes = align(64 + 64 * len(parts))
    offsets, at = [], header_bytes
    for _, data in parts:
        offsets.append(at)
        at = align(at + len(data))
    file_bytes = at + 8
    out = bytearray(struct.pack("<8sIIQqIIQ16x", b"PIPPYCK1", 1, stage, compile_hash, step, len(parts),
                                header_bytes, file_bytes))
    for (name, data), off in zip(parts, offsets):
        out += struct.pack("<40sQQ8x", name.encode(), off, len(data))
    for (name, data), off in zip(parts, offsets):
        out += b"\0" * (off - len(out)) + data
    out += b"\0" * (file_bytes - 8 - len(out))
    out += struct.pack("<Q", zlib.crc32(bytes(out)))
    d = os.path.join(ckpt_dir, f"step-{step}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"stage{stage}.ckpt"), "wb") as f:
        f.write(out)


def set_latest(ckpt_dir, step):
    with open(os.path.join(ckpt_dir, "latest"), "w") as f:
        f.write(f"{step}\n")


def add_parameters(out_dir, model_path, extra_tied=()):
    """Give each stage of out_dir/schedule.json the "parameters" of its nodes (those of nodes the
    compiler fused away go to stage 0); extra_tied: (name, stage) pairs listed in one more stage.
    Returns the compile hash and the per-stage lists."""
    sched_path = os.path.join(out_dir, "schedule.json")
    s = json.load(open(sched_path))
    m = onnx.load(model_path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    used = {n.name: [i for i in n.input if i in inits] for n in m.graph.node}
    per_stage = []
    for st in s["stages"]:
        names = []
        for node in st["nodes"]:
            names += [i for i in used.get(node, []) if i not in names and inits[i].dtype == np.float32]
        per_stage.append(names)
    listed = set(sum(per_stage, []))
    per_stage[0] += [n for n, a in inits.items() if n not in listed and a.dtype == np.float32]
    lists = []
    for k, st in enumerate(s["stages"]):
        names = per_stage[k] + [n for n, sk in extra_tied if sk == k and n not in per_stage[k]]
        params, off = [], 0
        for n in names:
            a = inits[n]
            params.append({"name": n, "dtype": "float", "shape": list(a.shape), "offset": off, "bytes": a.nbytes,
                           "kind": "buffer" if n.endswith("bias") and k == 1 else "trainable"})
            off = align(off + a.nbytes)
        st["parameters"] = params
        lists.append(params)
    json.dump(s, open(sched_path, "w"), indent=1)
    return int(s["hash"], 16), lists


def region(params, values):
    """A stage's parameter region holding values[name] at each parameter's offset."""
    size = align(max([p["offset"] + p["bytes"] for p in params] + [0])) + 64  # some slack after the last
    buf = bytearray(size)
    for p in params:
        a = np.ascontiguousarray(values[p["name"]], dtype=np.float32)
        buf[p["offset"]:p["offset"] + p["bytes"]] = a.tobytes()
    return bytes(buf)


def save_step(ckpt_dir, step, compile_hash, lists, values_per_stage):
    for k, params in enumerate(lists):
        write_ckpt(ckpt_dir, step, k, compile_hash,
                   [("params", region(params, values_per_stage[k])), ("optim", b"\x01" * 100),
                    ("meta", struct.pack("<q", step))])


def session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def replaced_model(model_path, values, out_path):
    """The original with its initializers replaced by the onnx package (the reference)."""
    m = onnx.load(model_path)
    for t in m.graph.initializer:
        if t.name in values:
            t.CopyFrom(numpy_helper.from_array(np.asarray(values[t.name], dtype=np.float32), t.name))
    onnx.save(m, out_path)


def same_but_initializers(a_path, b_path):
    a, b = onnx.load(a_path), onnx.load(b_path)
    for m in (a, b):
        del m.graph.initializer[:]
    return a.SerializeToString() == b.SerializeToString()


def main():
    b = build_dir()
    pippyc = os.path.join(b, "pippyc")
    res = Results("export")
    work = tmpdir("pippy-export-")
    mlp = os.path.join(MODELS, "mlp.onnx")
    out = os.path.join(work, "out")
    code, text = run([pippyc, mlp, "--stages", "2", "--batch", "4", "-o", out, "--emit-only", "-q"])
    if code != 0:
        res.check("compile mlp", False, tail(text))
        res.finish()
    h, lists = add_parameters(out, mlp, extra_tied=[("fc4.weight", 0)])
    orig = {t.name: numpy_helper.to_array(t) for t in onnx.load(mlp).graph.initializer}
    x = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)
    y_orig = session(mlp).run(None, {"x": x})[0]
    ckpt = os.path.join(work, "ckpt")
    trained = os.path.join(work, "trained.onnx")

    # --- zero the last layer's bias: y changes by exactly -bias
    values = dict(orig, **{"fc4.bias": np.zeros_like(orig["fc4.bias"])})
    save_step(ckpt, 3, h, lists, [values, values])
    set_latest(ckpt, 3)
    code, text = run([pippyc, "export", out, "--checkpoint", ckpt, "-o", trained])
    res.check("export runs and says what it wrote", code == 0 and "wrote" in text and "step 3" in text, tail(text))
    if code == 0:
        y = session(trained).run(None, {"x": x})[0]
        err = np.max(np.abs(y - (y_orig - orig["fc4.bias"])))
        res.check(f"fc4.bias zeroed: y = y_orig - fc4.bias (max error {err:.2g})", err <= 2e-6 * np.max(np.abs(y_orig)))

    # --- every parameter changed; the tied fc4.weight differs between the stages: stage 0 wins
    rng = np.random.default_rng(5)
    new = {n: (a + rng.standard_normal(a.shape).astype(np.float32) * 0.1).astype(np.float32) for n, a in orig.items()}
    loser = dict(new, **{"fc4.weight": np.full_like(orig["fc4.weight"], 7.0)})
    save_step(ckpt, 5, h, lists, [new, loser])
    set_latest(ckpt, 5)
    code, text = run([pippyc, "export", out, "--checkpoint", ckpt, "-o", trained, "-q"])
    res.check("export of the latest step (5)", code == 0 and text.strip() == "", tail(text))
    ref = os.path.join(work, "reference.onnx")
    replaced_model(mlp, new, ref)
    if code == 0:
        got = {t.name: numpy_helper.to_array(t) for t in onnx.load(trained).graph.initializer}
        res.check("every initializer is the checkpoint's value (fc4.weight from stage 0)",
                  set(got) == set(new) and all(np.array_equal(got[n], new[n]) for n in new))
        res.check("nodes, inputs, outputs, opsets unchanged", same_but_initializers(mlp, trained))
        y, y_ref = session(trained).run(None, {"x": x})[0], session(ref).run(None, {"x": x})[0]
        res.check("onnxruntime: same output as the original with replaced initializers", np.array_equal(y, y_ref))
    code, text = run([pippyc, "export", out, "--checkpoint", ckpt, "--step", "3", "-o", trained, "-q"])
    got = {t.name: numpy_helper.to_array(t) for t in onnx.load(trained).graph.initializer} if code == 0 else {}
    res.check("--step 3 exports the older step", code == 0 and np.array_equal(got.get("fc4.bias"), values["fc4.bias"])
              and np.array_equal(got.get("fc1.weight"), orig["fc1.weight"]), tail(text))

    # --- external data out: the model file stays under --inline-limit, onnxruntime still runs it
    code, text = run([pippyc, "export", out, "--checkpoint", ckpt, "-o", trained, "-q", "--inline-limit", "20000"])
    ok = code == 0 and os.path.getsize(trained) <= 20000 and os.path.exists(trained + ".data")
    res.check("--inline-limit 20000: initializers in trained.onnx.data", ok, tail(text))
    if ok:
        y = session(trained).run(None, {"x": x})[0]
        res.check("onnxruntime runs the external-data export, same output", np.array_equal(y, y_ref))

    # --- a model in external data: compiled from it, exported (inline) from it
    ext_dir = os.path.join(work, "extmodel")
    os.makedirs(ext_dir)
    ext_model = os.path.join(ext_dir, "mlp_ext.onnx")
    onnx.save(onnx.load(mlp), ext_model, save_as_external_data=True, location="mlp_ext.data", size_threshold=0)
    out_ext = os.path.join(work, "out_ext")
    code, text = run([pippyc, ext_model, "--stages", "2", "--batch", "4", "-o", out_ext, "--emit-only", "-q"])
    if code == 0:
        h2, lists2 = add_parameters(out_ext, ext_model)
        ckpt2 = os.path.join(work, "ckpt2")
        save_step(ckpt2, 1, h2, lists2, [new, new])
        set_latest(ckpt2, 1)
        code, text = run([pippyc, "export", out_ext, "--checkpoint", ckpt2, "-o", trained, "-q"])
    ok = code == 0 and onnx.load(trained, load_external_data=False).graph.initializer[0].data_location == 0
    res.check("a model in external data: exported inline", ok, tail(text))
    if ok:
        res.check("... onnxruntime output as the reference", np.array_equal(session(trained).run(None, {"x": x})[0], y_ref))

    # --- GPT sample: the tied token embedding / head, listed by both stages
    gpt = os.path.join(MODELS, "gpt_op17.onnx")
    out_gpt = os.path.join(work, "out_gpt")
    code, text = run([pippyc, gpt, "--batch", "2", "--split-before", "/blocks.1/", "-o", out_gpt, "--emit-only", "-q"])
    if code == 0:
        hg, lg = add_parameters(out_gpt, gpt)
        tied = [p["name"] for p in lg[0] if any(q["name"] == p["name"] for q in lg[1])]
        g_orig = {t.name: numpy_helper.to_array(t) for t in onnx.load(gpt).graph.initializer}
        g_new = {n: a * np.float32(0.9) + np.float32(0.01) if a.dtype == np.float32 and "mask" not in n else a
                 for n, a in g_orig.items()}
        g_bad = dict(g_new, **{n: g_orig[n] for n in tied})
        ckpt3 = os.path.join(work, "ckpt3")
        save_step(ckpt3, 2, hg, lg, [g_new, g_bad])
        set_latest(ckpt3, 2)
        code, text = run([pippyc, "export", out_gpt, "--checkpoint", ckpt3, "-o", trained, "-q"])
        got = {t.name: numpy_helper.to_array(t) for t in onnx.load(trained).graph.initializer} if code == 0 else {}
        res.check(f"GPT: tied {tied} taken from stage 0, one initializer each",
                  code == 0 and len(tied) >= 1 and all(np.array_equal(got[n], g_new[n]) for n in tied)
                  and len(onnx.load(trained).graph.initializer) == len(g_orig), tail(text))
        if code == 0:
            idx = np.load(os.path.join(MODELS, "gpt_op17.data", "input_idx.npy"))[:2]
            refg = os.path.join(work, "ref_gpt.onnx")
            replaced_model(gpt, {n: a for n, a in g_new.items() if a.dtype == np.float32}, refg)
            name = session(gpt).get_inputs()[0].name
            a_out, b_out = session(trained).run(None, {name: idx})[0], session(refg).run(None, {name: idx})[0]
            res.check("GPT: onnxruntime output as the reference (finite, changed by the new weights)",
                      np.all(np.isfinite(a_out)) and np.array_equal(a_out, b_out)
                      and not np.array_equal(a_out, session(gpt).run(None, {name: idx})[0]))
    else:
        res.check("compile gpt_op17", False, tail(text))

    # --- bad input
    def fails(name, args, msg, exit_code=1):
        code, text = run([pippyc, "export"] + args)
        res.check(f"{name}: exit {exit_code}, says '{msg}'", code == exit_code and msg in text, tail(text))

    fails("step not there", [out, "--checkpoint", ckpt, "--step", "99", "-o", trained], "has no step 99")
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    fails("no checkpoint", [out, "--checkpoint", empty, "-o", trained], "no checkpoint in")
    fails("no arguments", [], "usage: pippyc export", 2)
    fails("unknown option", [out, "--checkpoint", ckpt, "-o", trained, "--bogus"], "unexpected '--bogus'", 2)
    bad = os.path.join(work, "bad")
    shutil.copytree(ckpt, bad)
    path = os.path.join(bad, "step-5", "stage1.ckpt")
    data = bytearray(open(path, "rb").read())
    data[700] ^= 0xFF
    open(path, "wb").write(data)
    fails("damaged checkpoint", [out, "--checkpoint", bad, "-o", trained], "checksum mismatch")
    os.truncate(path, 100)
    fails("truncated checkpoint", [out, "--checkpoint", bad, "-o", trained], "truncated or damaged")
    save_step(bad, 5, h ^ 1, lists, [new, new])
    fails("checkpoint of another compile", [out, "--checkpoint", bad, "-o", trained], "from another compile")
    sched = os.path.join(out, "schedule.json")
    saved = open(sched).read()

    def with_schedule(change, name, msg):
        s = json.loads(saved)
        change(s)
        json.dump(s, open(sched, "w"))
        fails(name, [out, "--checkpoint", ckpt, "-o", trained], msg)
        open(sched, "w").write(saved)

    def rename(s):
        s["stages"][0]["parameters"][0]["name"] = "fc9.weight"
    with_schedule(rename, "a parameter the model does not have", "tensor 'fc9.weight'")

    def transpose(s):
        p = s["stages"][0]["parameters"][0]
        p["shape"] = p["shape"][::-1]
    with_schedule(transpose, "a shape the model does not have",
                  "initializer 'fc1.weight' is float[256,64] in")

    def beyond(s):
        s["stages"][1]["parameters"][-1]["offset"] = 1 << 20
    with_schedule(beyond, "a parameter beyond the checkpoint's region", "of the parameter region")

    def inference(s):
        del s["stages"][1]["parameters"]
    with_schedule(inference, "a compile for inference", 'lists no "parameters"')
    moved = os.path.join(work, "moved.onnx")
    s = json.loads(saved)
    s["model"]["path"] = s["model"]["absolute_path"] = os.path.join(work, "nowhere.onnx")
    json.dump(s, open(sched, "w"))
    fails("the model moved", [out, "--checkpoint", ckpt, "-o", trained], "is not found")
    shutil.copy(mlp, moved)
    code, text = run([pippyc, "export", out, "--checkpoint", ckpt, "-o", trained, "--model", moved, "-q"])
    res.check("--model gives it", code == 0, tail(text))
    open(sched, "w").write(saved)
    fails("output over the input model", [out, "--checkpoint", ckpt, "-o", moved, "--model", moved], "is the input model", 2)

    shutil.rmtree(work, ignore_errors=True)
    res.finish()


if __name__ == "__main__":
    main()
