#!/usr/bin/env python3
"""Training end to end: compile the training samples (samples/models/*.train, made by
samples/make_train_refs.py with PyTorch) with --train, run them with pippyrun for 8 steps over their
datasets, and compare every step's loss with PyTorch's (1e-4 relative with SGD, 1e-3 with AdamW), the
trained model that --save writes (run by onnxruntime) with PyTorch's trained model, and the trained
parameters. Covers the loss by flag and inside the model, M = 1, 2, 4, 8 microbatches, 1-4 stages with
gpipe, 1f1b and zb-h1, tied weights and skip connections across stages, resume after a kill, a NaN loss,
and bad input. A Hugging Face GPT-2 exported as a user would (its equal-valued parameters stored once as
Identity outputs, its tied head's transpose folded into an initializer of its own) trains and saves as
PyTorch's GPT-2 does, and the compile says what it undid; so do a Hugging Face Llama and BERT (with
--padding-idx for their pad token's embedding row), T5 encoder, torchvision's ViT and torch's
TransformerEncoder; torchvision's MobileNetV3 and EfficientNet exported from train mode (BatchNormalization
training_mode=1) train to PyTorch's parameters and running statistics, and the saved model, compiled for
inference, gives PyTorch's eval-mode outputs (the train-mode export itself is refused for inference). GPT-2,
Llama, BERT and ViT exported by torch.onnx.export's default dynamo exporter (optimize=False) train as PyTorch does:
only the parameters of the export's graph signature train (Llama's rotary inv_freq buffer stays frozen),
and a file its optimizer folded is refused for training, naming optimize=False. --schedule auto: the chosen schedule trains alike; a --memory-per-rank that only 1f1b and
zb-h1 fit (by the per-rank peaks schedule.json predicts for each schedule) picks one of them, one between
their peaks picks the smaller, one below every peak is refused naming the smallest; inference's auto is
gpipe; bad limits are refused.

usage: test_train.py BUILD_DIR [--quick]"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from common import MODELS, ROOT, Results, build_dir, run, tail, tmpdir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import trainref  # noqa: E402

QUICK = "--quick" in sys.argv
STEPS = 8

# (model, config, M, stages (0: from the model's annotations), schedule, save[, extra pippyc flags])
CASES = [
    ("mlp_train", "sgd", 1, 1, "gpipe", True),
    ("mlp_train", "sgd", 4, 1, "gpipe", False),
    ("mlp_train", "sgd_momentum_wd", 2, 1, "gpipe", True),
    ("mlp_train", "sgd_nesterov", 4, 1, "gpipe", False),
    ("mlp_train", "sgd_dampening", 1, 1, "gpipe", False),
    ("mlp_train", "sgd_clip", 2, 1, "gpipe", False),
    ("mlp_train_loss", "sgd", 2, 1, "gpipe", True),
    ("mlp_train_loss", "sgd_momentum_wd", 4, 1, "gpipe", False),
    ("gpt_train", "adamw", 1, 1, "gpipe", True),
    ("gpt_train", "adamw", 2, 1, "gpipe", False),
    ("gpt_train", "adamw", 4, 1, "gpipe", False),
    ("gpt_train", "adamw_clip", 2, 1, "gpipe", False),
    ("gpt_train", "adamw_cosine", 2, 1, "gpipe", False),
    ("gpt_train_loss", "adamw", 4, 1, "gpipe", True),
    ("cnn_train", "sgd_momentum", 1, 1, "gpipe", True),
    ("cnn_train", "sgd_momentum", 2, 1, "gpipe", False),
    ("cnn_train", "sgd_momentum_clip", 4, 1, "gpipe", False),
    # pipelines
    ("mlp_train", "sgd", 4, 2, "gpipe", False),
    ("mlp_train", "sgd_momentum_wd", 8, 2, "1f1b", True),
    ("mlp_train", "sgd", 4, 3, "1f1b", False),
    ("mlp_train", "sgd_clip", 2, 3, "gpipe", False),
    ("gpt_train", "adamw", 4, 2, "1f1b", True),
    ("gpt_train", "adamw", 8, 3, "1f1b", False),
    ("gpt_train", "adamw_clip", 2, 4, "1f1b", False),
    ("gpt_train", "adamw", 1, 4, "gpipe", False),
    ("gpt_train_loss", "adamw", 4, 3, "1f1b", False),
    ("cnn_train", "sgd_momentum", 2, 2, "1f1b", True),
    ("skip_conn", "sgd_momentum", 4, 0, "1f1b", True),
    ("skip_conn", "adamw", 8, 0, "gpipe", False),
    ("skip_conn", "sgd_clip", 1, 0, "1f1b", False),
    # tied parameters transmitted from their first stage instead of replicated
    ("gpt_train", "adamw", 4, 2, "1f1b", True, ["--tied", "transmit"]),
    ("gpt_train", "adamw_clip", 2, 3, "1f1b", False, ["--tied", "transmit"]),
    ("gpt_train", "adamw", 8, 4, "gpipe", True, ["--tied", "transmit"]),
    ("skip_conn", "sgd_momentum", 4, 0, "1f1b", True, ["--tied", "transmit"]),
    # interleaved-1f1b: several stages per rank (rank r runs stages r, r+R, ...)
    ("mlp_train", "sgd", 4, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("mlp_train", "sgd_momentum_wd", 2, 4, "interleaved-1f1b", False, ["--ranks", "1"]),
    ("gpt_train", "adamw", 4, 4, "interleaved-1f1b", True, ["--ranks", "2"]),
    ("gpt_train", "adamw", 8, 4, "interleaved-1f1b", False, ["--ranks", "2", "--tied", "transmit"]),
    ("gpt_train", "adamw_clip", 4, 6, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("skip_conn", "sgd_momentum", 4, 0, "interleaved-1f1b", True, ["--ranks", "2"]),
    # --dp D: D pipelines, the batch split between them, gradients averaged (M per replica)
    ("mlp_train", "sgd_clip", 2, 2, "1f1b", True, ["--dp", "2"]),
    ("mlp_train", "sgd_momentum_wd", 1, 1, "gpipe", False, ["--dp", "2"]),
    ("gpt_train", "adamw", 2, 2, "1f1b", True, ["--dp", "2"]),
    ("gpt_train", "adamw_clip", 2, 2, "1f1b", False, ["--dp", "2", "--tied", "transmit"]),
    ("gpt_train", "adamw", 2, 4, "interleaved-1f1b", False, ["--dp", "2", "--ranks", "2"]),
    ("skip_conn", "sgd_momentum", 2, 0, "1f1b", False, ["--dp", "2"]),
    # zero bubble H1: the W's deferred into the cool-down; auto: the fastest predicted schedule
    ("mlp_train", "sgd_momentum_wd", 8, 2, "zb-h1", True),
    ("mlp_train", "sgd", 4, 3, "zb-h1", False),
    ("gpt_train", "adamw", 8, 4, "zb-h1", False),
    ("gpt_train", "adamw_clip", 2, 3, "zb-h1", False),
    ("gpt_train", "adamw", 4, 2, "zb-h1", True, ["--tied", "transmit"]),
    ("skip_conn", "sgd_momentum", 4, 0, "zb-h1", False),
    # zb-h1 with several stages per rank: interleaved-1f1b's placement and order, W's deferred
    ("mlp_train", "sgd_momentum_wd", 8, 4, "zb-h1", False, ["--ranks", "2"]),
    ("gpt_train", "adamw", 8, 4, "zb-h1", True, ["--ranks", "2"]),
    ("gpt_train", "adamw_clip", 4, 6, "zb-h1", False, ["--ranks", "2", "--tied", "transmit"]),
    ("gpt_train", "adamw", 2, 4, "zb-h1", False, ["--dp", "2", "--ranks", "2"]),
    ("gpt_train", "adamw", 8, 2, "auto", False),
    ("gpt_train", "adamw", 4, 4, "auto", False, ["--ranks", "2"]),
    # a Hugging Face export as a user makes it: parameters with equal values stored once (Identity),
    # the tied head folded into an initializer of its own; trained and saved as PyTorch trains it
    ("gpt2_hf_train", "adamw", 1, 1, "gpipe", True),
    ("gpt2_hf_train", "adamw", 4, 2, "1f1b", True),
    ("gpt2_hf_train", "adamw_clip", 8, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("gpt2_hf_train", "adamw", 8, 3, "zb-h1", False),
    ("gpt2_hf_train", "adamw_clip", 2, 2, "1f1b", True, ["--dp", "2", "--tied", "transmit"]),
    # a Hugging Face Llama (RMSNorm, rotary embedding, SiLU, grouped-query attention), its pad token's
    # embedding row frozen by --padding-idx (ref.json's loss_flags), as nn.Embedding(padding_idx=0) does
    ("llama_hf_train", "adamw", 2, 1, "gpipe", True),
    ("llama_hf_train", "adamw", 4, 2, "1f1b", True),
    ("llama_hf_train", "adamw", 8, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("llama_hf_train", "adamw", 8, 2, "zb-h1", False),
    # a Hugging Face BERT (its last hidden state against targets, MSE), pad token frozen the same way
    ("bert_hf_train", "adamw", 4, 2, "1f1b", True),
    ("bert_hf_train", "adamw", 8, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("bert_hf_train", "adamw", 2, 3, "zb-h1", False),
    # more exports as users make them: transformers' T5 encoder, torchvision's ViT, torch's TransformerEncoder
    ("t5_hf_train", "adamw", 4, 2, "1f1b", True),
    ("vit_tv_train", "adamw", 4, 2, "1f1b", True),
    ("vit_tv_train", "adamw", 8, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("encoder_train", "adamw", 4, 2, "zb-h1", True),
    # torch.onnx.export's default (dynamo) exporter with optimize=False, as its refusal message advises: the
    # graph signature names the parameters (a buffer frozen), torch.split as SplitToSequence, CastLike
    ("gpt2_hf_dynamo_train", "adamw", 2, 1, "gpipe", True),
    ("gpt2_hf_dynamo_train", "adamw", 4, 2, "1f1b", True),
    ("gpt2_hf_dynamo_train", "adamw", 8, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("llama_hf_dynamo_train", "adamw", 4, 2, "1f1b", True),
    ("llama_hf_dynamo_train", "adamw", 8, 2, "zb-h1", False),
    ("bert_hf_dynamo_train", "adamw", 4, 2, "1f1b", True),
    ("vit_tv_dynamo_train", "adamw", 4, 2, "1f1b", True),
    # torchvision CNNs exported from train mode (BatchNormalization training_mode=1, 3 outputs): batch
    # statistics, running statistics updated as torch does; depthwise convolutions, squeeze-and-excitation
    ("mobilenet_tv_train", "sgd_momentum_wd", 2, 1, "gpipe", True),
    ("mobilenet_tv_train", "sgd_momentum_wd", 8, 2, "1f1b", True),
    ("mobilenet_tv_train", "sgd_momentum_wd", 4, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
    ("efficientnet_tv_train", "sgd_momentum", 4, 2, "zb-h1", True),
    ("efficientnet_tv_train", "sgd_momentum", 2, 3, "1f1b", False),
]
if QUICK:
    CASES = [("mlp_train", "sgd", 2, 1, "gpipe", True), ("gpt_train", "adamw", 4, 2, "1f1b", True),
             ("skip_conn", "sgd_momentum", 2, 0, "1f1b", False, ["--tied", "transmit"]),
             ("cnn_train", "sgd_momentum", 2, 1, "gpipe", False),
             ("gpt_train", "adamw", 4, 4, "interleaved-1f1b", False, ["--ranks", "2"]),
             ("gpt_train", "adamw", 2, 2, "1f1b", False, ["--dp", "2"]), ("gpt_train", "adamw", 8, 4, "zb-h1", False),
             ("gpt2_hf_train", "adamw", 4, 2, "1f1b", True)]


def compile_flags(ref, config):
    """The reference's flags, with its lr-schedule proposal spelled as pippyc's."""
    flags, out, i = ref["configs"][config]["flags"], [], 0
    total = warm = None
    while i < len(flags):
        f = flags[i]
        if f == "--lr-schedule":
            out += ["--lr-schedule", "cosine"]
            i += 2
            continue
        if f == "--total-steps":
            total = int(flags[i + 1])
            i += 2
            continue
        if f == "--warmup-steps":
            warm = int(flags[i + 1])
        out.append(f)
        i += 1
    if total is not None:
        out += ["--decay-steps", str(total - (warm or 0))]
    return ref["loss_flags"] + out


def data_args(ref):
    args = []
    for name, fname in ref["data"].items():
        args += ["--input", f"{name}={trainref.data_path(ref, fname)}"]
    return args


def compile_case(b, ref, config, M, S, schedule, out, extra=(), lr=None, quiet=True):
    flags = compile_flags(ref, config)
    if lr is not None:
        flags[flags.index("--lr") + 1] = lr
    cmd = [os.path.join(b, "pippyc"), ref["_model"], "--batch", str(ref["batch"]), "--microbatches", str(M),
           "--schedule", schedule, "-o", out] + (["-q"] if quiet else []) + flags + list(extra)
    if S:
        cmd += ["--stages", str(S)]
    return run(cmd, timeout=600)


def train_case(res, b, model, config, M, S, schedule, save, extra=()):
    ref = trainref.load_ref(model)
    name = f"{model} {config} M={M} stages={S or 'annotated'} {schedule}" + (" " + " ".join(extra) if extra else "")
    out = tmpdir("pippy-train-")
    code, text = compile_case(b, ref, config, M, S, schedule, out, extra)
    if code != 0:
        res.check(name, False, "pippyc failed:\n        " + tail(text))
        return
    log = os.path.join(out, "loss.jsonl")
    cmd = [os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--loss-log", log, "--timeout", "60"] + data_args(ref)
    saved = os.path.join(out, "trained.onnx")
    if save:
        cmd += ["--save", saved]
    trace = os.path.join(out, "trace.json")
    if "--dp" in extra:
        cmd += ["--trace", trace]
    code, text = run(cmd, timeout=600)
    if code != 0:
        res.check(name, False, f"pippyrun exited {code}:\n        " + tail(text))
        return
    # --dp D: D replicas of M microbatches each make one step of D*M microbatches (PyTorch's reference)
    Mref = M * (int(extra[list(extra).index("--dp") + 1]) if "--dp" in extra else 1)
    ok, report = trainref.check_losses(log, ref, config, Mref)
    if schedule == "auto":
        chosen = schedule_of(out)
        name += f" (chose {chosen})"
        ok = ok and chosen in (("interleaved-1f1b", "zb-h1") if "--ranks" in extra else ("gpipe", "1f1b", "zb-h1"))
    if ok and save:
        ok2, r2 = trainref.check_saved_model(saved, ref, config, Mref)
        ok3, r3 = trainref.check_saved_params(saved, ref, config, Mref)
        ok, report = ok and ok2 and ok3, report + "\n" + r2 + "\n" + r3
    res.check(name, ok, tail(report, 14))
    if "--dp" in extra:
        ok = collectives_traced(res, name, out, trace) and ok
    if ok:
        shutil.rmtree(out, ignore_errors=True)


def collectives_traced(res, name, out, trace):
    """The trace shows every rank's collectives, each step: one event per reduction action of the
    rank's list (op name, reduction id, the reduction's bytes from schedule.json) and the STEP."""
    with open(os.path.join(out, "schedule.json")) as f:
        d = json.load(f)
    nbytes = {r["id"]: r["bytes"] for r in d["reductions"]}
    with open(trace) as f:
        evs = [e for e in json.load(f) if e.get("ph") == "X" and e.get("cat") == "collective"]
    bad = []
    for rank, rk in enumerate(d["ranks"]):
        want = sorted((a["op"], a.get("reduction", -1)) for a in rk["actions"]
                      if a["op"] in ("ALLREDUCE", "REDUCE", "BROADCAST", "STEP"))
        mine = [e for e in evs if e["pid"] == rank]
        got = sorted((e["name"], e["args"].get("reduction", -1)) for e in mine)
        # a reduction whose member stages share a rank runs once there (the last member's action)
        if sorted(set(got)) != sorted(set(want)) or len(got) != STEPS * len(set(want)):
            bad.append(f"rank {rank}: events {got[:8]}..., list {want}")
        bad += [f"rank {rank}: {e['name']} of reduction {e['args']['reduction']} says {e['args']['bytes']} bytes, "
                f"schedule.json {nbytes[e['args']['reduction']]}" for e in mine
                if "reduction" in e["args"] and e["args"]["bytes"] != nbytes[e["args"]["reduction"]]]
    res.check("  ... its trace shows each step's collectives with their bytes", not bad, "; ".join(bad[:4]))
    code, text = run([os.path.join(build_dir(), "pippyc"), "timeline", trace, "--json"])
    rows = json.loads(text)["ranks"] if code == 0 else []
    want = {r: sum(e["dur"] for e in evs if e["pid"] == r) / 1e3 for r in range(len(d["ranks"]))}
    ok = len(rows) == len(want) and all(abs(w["collective_ms"] - want[w["id"]]) <= 1e-6 * max(1.0, want[w["id"]])
                                        for w in rows)
    res.check("  ... and pippyc timeline counts that time per rank: " +
              ", ".join("%.2f ms" % w["collective_ms"] for w in rows), ok, f"timeline {tail(text)}; trace sums {want}")
    return ok and not bad


def schedule_json(out):
    with open(os.path.join(out, "schedule.json")) as f:
        return json.load(f)


def schedule_of(out):
    return schedule_json(out)["config"]["schedule"]


def rank_peaks(out):
    """The predicted peak memory of each rank: schedule.json's per-stage peaks summed by rank."""
    with open(os.path.join(out, "schedule.json")) as f:
        d = json.load(f)
    peaks = [0.0] * d["config"]["ranks"]
    for st, b in zip(d["stages"], d["prediction"]["peak_memory_bytes"]):
        peaks[st["rank"]] += b
    return peaks


def schedule_choice_cases(res, b):
    """--schedule auto and --memory-per-rank on the tied GPT, 4 stages, M = 8: the peaks of each schedule
    compiled by name set the limits."""
    ref = trainref.load_ref("gpt_train")
    M, S = 8, 4
    out = tmpdir("pippy-auto-")
    peak = {}
    for sch in ("gpipe", "1f1b", "zb-h1"):
        d = os.path.join(out, sch)
        code, text = compile_case(b, ref, "adamw", M, S, sch, d, ["--emit-only"])
        if code != 0:
            res.check(f"auto: compile {sch}", False, tail(text))
            return
        peak[sch] = max(rank_peaks(d))
    pair = max(peak["1f1b"], peak["zb-h1"])
    if not pair < peak["gpipe"]:
        res.check("auto: 1f1b and zb-h1 hold less than gpipe at M=8", False, f"peaks {peak}")
        return

    def auto(limit, d, extra=()):
        code, text = compile_case(b, ref, "adamw", M, S, "auto", d, ["--memory-per-rank", str(limit)] + list(extra))
        return code, text
    # only 1f1b and zb-h1 fit: one of them, within the limit; it trains like PyTorch
    d = os.path.join(out, "auto")
    code, text = auto(int(pair), d)
    chosen = schedule_of(d) if code == 0 else None
    ok = code == 0 and chosen in ("1f1b", "zb-h1") and max(rank_peaks(d)) <= int(pair)
    res.check(f"auto, --memory-per-rank {int(pair)} (gpipe needs {peak['gpipe']:.0f}): chose {chosen}", ok,
              f"exit {code}, peaks {peak}: " + tail(text))
    if ok:
        log = os.path.join(d, "loss.jsonl")
        code, text = run([os.path.join(b, "pippyrun"), d, "--steps", str(STEPS), "--loss-log", log, "--timeout", "60"]
                         + data_args(ref), timeout=600)
        ok2, report = trainref.check_losses(log, ref, "adamw", M) if code == 0 else (False, tail(text))
        res.check(f"auto ({chosen}) trains like PyTorch", ok2, tail(report, 14))
    # between the two peaks: the smaller one; the summary names every candidate and the ones too big
    lo, hi = sorted(("1f1b", "zb-h1"), key=lambda k: peak[k])
    if peak[lo] < peak[hi]:
        d = os.path.join(out, "between")
        code, text = compile_case(b, ref, "adamw", M, S, "auto", d,
                                  ["--emit-only", "--memory-per-rank", str(int(peak[lo]))], quiet=False)
        text_ok = code == 0 and f"schedule auto: chose {lo}" in text and "gpipe" in text and "(too big)" in text
        res.check(f"auto, --memory-per-rank {int(peak[lo])}: chose {lo} ({hi} needs {peak[hi]:.0f})",
                  text_ok and schedule_of(d) == lo, f"exit {code}: " + tail(text, 6))
    # below every peak: refused, naming the smallest
    small = min(peak, key=peak.get)
    code, text = auto(int(peak[small]) - 1, os.path.join(out, "none"), ["--emit-only"])
    want = f"the smallest is {small}'s, {peak[small]:.0f} bytes"
    res.check(f"auto, --memory-per-rank below every peak: refused naming {small}'s {peak[small]:.0f} bytes",
              code == 1 and "no schedule fits" in text and want in text, f"exit {code}: " + tail(text, 4))
    # a named schedule over the limit is refused
    code, text = compile_case(b, ref, "adamw", M, S, "gpipe", os.path.join(out, "named"),
                              ["--emit-only", "--memory-per-rank", str(int(pair))])
    res.check("--schedule gpipe over --memory-per-rank: refused", code == 1 and "--schedule gpipe: rank" in text
              and "--memory-per-rank" in text, f"exit {code}: " + tail(text, 4))
    # inference: auto is gpipe
    d = os.path.join(out, "inference")
    code, text = run([os.path.join(b, "pippyc"), os.path.join(MODELS, "mlp.onnx"),
                      "--batch", "8", "--microbatches", "4", "--stages", "2", "--schedule", "auto", "--emit-only",
                      "-o", d])
    res.check("inference --schedule auto: gpipe", code == 0 and schedule_of(d) == "gpipe"
              and "schedule auto: chose gpipe" in text, f"exit {code}: " + tail(text, 4))
    # bad limits
    for bad in ("0", "-1", "12X", "1.5Q", "", "nan"):
        code, text = compile_case(b, ref, "adamw", M, S, "auto", os.path.join(out, "bad"),
                                  ["--emit-only", "--memory-per-rank", bad])
        res.check(f"--memory-per-rank '{bad}': usage error", code == 2 and "--memory-per-rank takes a number of bytes"
                  in text, f"exit {code}: " + tail(text, 3))
    shutil.rmtree(out, ignore_errors=True)


def save_elsewhere_case(res, b):
    """A compile given a relative model path, then --save run from another directory: pippyrun finds
    the model by schedule.json's model.absolute_path (it looked only relative to its directory and
    to OUT, and refused), and the saved model is PyTorch's trained one."""
    ref = trainref.load_ref("mlp_train")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    b, model = os.path.abspath(b), os.path.abspath(ref["_model"])
    out, elsewhere = tmpdir("pippy-train-rel-"), tmpdir("pippy-train-cwd-")
    code, text = run([os.path.join(b, "pippyc"), os.path.relpath(model, root), "--batch", str(ref["batch"]),
                      "--microbatches", "2", "--stages", "2", "-o", out, "-q"] + compile_flags(ref, "sgd"), cwd=root)
    doc = json.load(open(os.path.join(out, "schedule.json"))) if code == 0 else {}
    res.check("a relative model path: schedule.json has model.absolute_path", code == 0 and
              doc["model"].get("absolute_path") == os.path.realpath(model), f"exit {code}: " + tail(text, 4))
    code, text = run([os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--timeout", "60", "--save",
                      "trained.onnx"] + data_args(ref), cwd=elsewhere, timeout=300)
    saved = os.path.join(elsewhere, "trained.onnx")
    ok, report = trainref.check_saved_model(saved, ref, "sgd", 2) if code == 0 else (False, tail(text, 4))
    res.check("--save from another directory finds the model and writes PyTorch's trained model", ok, report)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(elsewhere, ignore_errors=True)


def wait_lines(path, n, proc, limit=120):
    t0 = time.time()
    while time.time() - t0 < limit and proc.poll() is None:
        try:
            with open(path) as f:
                if sum(1 for line in f if line.strip()) >= n:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def resume_case(res, b):
    """Kill a run after its 5th step (checkpoints every 2 steps), resume it: the resumed steps' losses
    equal PyTorch's uninterrupted run, and the last complete checkpoint survived the kill."""
    ref = trainref.load_ref("gpt_train")
    out = tmpdir("pippy-resume-")
    code, text = compile_case(b, ref, "adamw", 2, 2, "1f1b", out)
    if code != 0:
        res.check("resume after kill", False, "pippyc failed:\n        " + tail(text))
        return
    ck, log1, log2 = os.path.join(out, "ckpt"), os.path.join(out, "a.jsonl"), os.path.join(out, "b.jsonl")
    cmd = [os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--loss-log", log1, "--checkpoint", ck,
           "--checkpoint-every", "2", "--timeout", "60"] + data_args(ref)
    env = dict(os.environ, PIPPY_FAULT_DELAY_MS="40")  # slow steps, so the kill lands mid-run
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    got = wait_lines(log1, 5, p)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the run (and its ranks) already ended: reported below as not reaching step 5
    p.wait()
    if not got:
        res.check("resume after kill", False, "the first run did not reach step 5")
        return
    latest = open(os.path.join(ck, "latest")).read().strip()
    code, text = run([os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--loss-log", log2, "--resume", ck,
                      "--timeout", "60"] + data_args(ref), timeout=300)
    if code != 0:
        res.check("resume after kill", False, f"resumed run exited {code}:\n        " + tail(text))
        return
    resumed = trainref.read_loss_log(log2)
    first = int(latest)
    ok = bool(resumed) and resumed[0][0] == first
    expected = trainref.ref_losses(ref, "adamw", 2)[first:]
    ok2, report = trainref.compare_losses([x[1] for x in resumed], expected, 1e-3, "resumed losses")
    res.check(f"resume after kill (checkpoint of step {latest}, resumed from step {resumed[0][0] if resumed else '?'})",
              ok and ok2, tail(report))
    if ok and ok2:
        shutil.rmtree(out, ignore_errors=True)


def nan_case(res, b):
    """A learning rate that blows the loss up: the run stops naming the step, and writes no checkpoint
    of that step or later."""
    ref = trainref.load_ref("mlp_train")
    out = tmpdir("pippy-nan-")
    code, text = compile_case(b, ref, "sgd", 2, 2, "1f1b", out, lr="1e30")
    if code != 0:
        res.check("non-finite loss stops the run", False, "pippyc failed:\n        " + tail(text))
        return
    ck = os.path.join(out, "ckpt")
    code, text = run([os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--checkpoint", ck,
                      "--checkpoint-every", "1", "--timeout", "60"] + data_args(ref), timeout=300)
    latest = open(os.path.join(ck, "latest")).read().strip() if os.path.exists(os.path.join(ck, "latest")) else None
    ok = code != 0 and "not finite" in text and "step " in text
    m = re.search(r"step (\d+): the (loss|gradient) is not finite", text)
    ok = ok and m is not None and (latest is None or int(latest) <= int(m.group(1)))
    res.check("non-finite loss stops the run, names the step, saves nothing after it", ok,
              f"exit {code}, latest checkpoint {latest}:\n        " + tail(text))


def error_cases(res, b):
    ref = trainref.load_ref("gpt_train")
    gpt = ref["_model"]
    pippyc = os.path.join(b, "pippyc")
    out = tmpdir("pippy-trainerr-")
    compile_errs = [
        ("--labels naming an existing input", [gpt, "--train", "--loss", "cross_entropy", "--labels", "idx"],
         "already has a value of that name"),
        ("model output not a scalar without --loss", [gpt, "--train"], "--train without --loss"),
        ("unknown optimizer", [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels", "--optimizer", "lamb"],
         "lamb"),
        ("negative learning rate", [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels", "--lr", "-1"],
         "--lr"),
        ("unknown loss", [gpt, "--train", "--loss", "hinge", "--labels", "labels"], "hinge"),
        ("1f1b without --train", [gpt, "--schedule", "1f1b"], "1f1b"),
        ("--dp without --train", [gpt, "--dp", "2"], "--dp 2 is for training"),
        ("--dp that does not divide the batch", [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels",
                                                 "--dp", "3"], "does not divide the batch of 8"),
        ("several stages per rank with gpipe", [gpt, "--train", "--loss", "cross_entropy", "--labels",
                                                "labels", "--stages", "4", "--ranks", "2"],
         "need --schedule interleaved-1f1b, zb-h1 or dynamic"),
        ("interleaved-1f1b with M not a multiple of the ranks", [gpt, "--train", "--loss", "cross_entropy", "--labels",
                                                                 "labels", "--stages", "4", "--ranks", "2",
                                                                 "--microbatches", "1", "--schedule",
                                                                 "interleaved-1f1b"], "multiple of --ranks 2"),
        ("stages not a multiple of the ranks", [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels",
                                                "--stages", "3", "--ranks", "2", "--schedule", "interleaved-1f1b"],
         "must be a multiple of the ranks"),
    ]
    ce = [gpt, "--train", "--loss", "cross_entropy", "--labels", "labels", "--padding-idx"]
    compile_errs += [
        ("--padding-idx without TABLE=ROW", ce + ["wte.weight"], "'wte.weight' is not TABLE=ROW"),
        ("--padding-idx of an unknown table", ce + ["nope=0"], "--padding-idx nope: the model has no float parameter"),
        ("--padding-idx row out of range", ce + ["wte.weight=128"], "--padding-idx wte.weight=128: the table has 128 rows"),
        ("--padding-idx row not a number", ce + ["wte.weight=x"], "the row must be a whole number, found 'x'"),
        ("--padding-idx of a parameter no Gather reads", ce + ["h.0.attn.qkv.weight=0"], "no Gather along axis 0"),
        ("--padding-idx naming a table twice", ce + ["wte.weight=0,wte.weight=1"], "names wte.weight twice"),
        ("--padding-idx without --train", [gpt, "--padding-idx", "wte.weight=0"], "--padding-idx"),
        ("a model exported from train mode, compiled for inference", [trainref.load_ref("mobilenet_tv_train")["_model"]],
         "(BatchNormalization) is in training mode (the model was exported from train mode)"),
    ]
    for what, args, want in compile_errs:
        code, text = run([pippyc] + args + ["--batch", "8", "-o", out, "-q"])
        res.check(f"compile error: {what}", code in (1, 2) and want in text, f"exit {code}: " + tail(text, 4))
    code, text = compile_case(b, ref, "adamw", 2, 1, "gpipe", out)
    if code != 0:
        res.check("compile for the data errors", False, tail(text))
        return
    d = trainref.data_path(ref, "")
    runs = [
        ("labels of the wrong dtype", {"labels": lambda: np.load(d + "data_labels.npy").astype(np.float32)}, "labels"),
        ("labels of the wrong shape", {"labels": lambda: np.load(d + "data_labels.npy")[:, :8]}, "labels"),
        ("dataset smaller than one batch", {"idx": lambda: np.load(d + "data_idx.npy")[:4],
                                            "labels": lambda: np.load(d + "data_labels.npy")[:4]}, "fewer than one batch"),
        ("mismatched dataset lengths", {"labels": lambda: np.load(d + "data_labels.npy")[:16]}, "differ in length"),
    ]
    for what, repl, want in runs:
        args = []
        for name, fname in ref["data"].items():
            path = trainref.data_path(ref, fname)
            if name in repl:
                path = os.path.join(out, f"{name}.npy")
                np.save(path, repl[name]())
            args += ["--input", f"{name}={path}"]
        code, text = run([os.path.join(b, "pippyrun"), out, "--steps", "2", "--timeout", "30"] + args, timeout=120)
        res.check(f"run error: {what}", code in (1, 2) and want in text, f"exit {code}: " + tail(text, 4))
    code, text = run([os.path.join(b, "pippyrun"), out, "--timeout", "30"] + data_args(ref), timeout=120)
    res.check("run error: no --steps", code in (1, 2) and "--steps" in text, f"exit {code}: " + tail(text, 4))
    # --epochs over several stages: the ranks without data learn the dataset size from the others
    code, text = compile_case(b, ref, "adamw", 2, 2, "1f1b", out)
    log = os.path.join(out, "epochs.jsonl")
    if code == 0:
        code, text = run([os.path.join(b, "pippyrun"), out, "--epochs", "2", "--loss-log", log, "--timeout", "60"]
                         + data_args(ref), timeout=300)
    steps = len(open(log).read().splitlines()) if code == 0 and os.path.exists(log) else None
    want = (2 * ref["dataset_size"] + ref["batch"] - 1) // ref["batch"]
    res.check(f"--epochs 2 in 2 stages: {steps} steps = 2 x {ref['dataset_size']} samples / batch {ref['batch']} "
              f"= {want}", code == 0 and steps == want, f"exit {code}: " + tail(text, 4))
    shutil.rmtree(out, ignore_errors=True)


def torch_signature_case(res, b):
    """An export carrying torch.export's graph signature (torch.onnx.export(dynamo=True)) trains only the
    PARAMETERs it lists: here mlp_train with a signature that leaves out output_proj.bias, which stays as
    it was while the listed ones train; the compile says so. An export whose optimizer folded parameters
    (samples/real/llama_dynamo.onnx) is refused for training, naming optimize=False."""
    import onnx
    from onnx import numpy_helper
    ref = trainref.load_ref("mlp_train")
    out = tmpdir("pippy-sig-")
    m = onnx.load(ref["_model"])
    params = [i.name for i in m.graph.initializer]
    sig = "\n# inputs\n" + "".join(f"p_{n.replace('.', '_')}: PARAMETER target='{n}'\n"
                                      for n in params if n != "output_proj.bias") + "x: USER_INPUT\n"
    e = m.graph.metadata_props.add()
    e.key, e.value = "pkg.torch.export.ExportedProgram.graph_signature", sig
    path = os.path.join(out, "mlp_sig.onnx")
    onnx.save(m, path)
    ref2 = dict(ref, _model=path)
    code, text = compile_case(b, ref2, "sgd", 1, 1, "gpipe", os.path.join(out, "o"), quiet=False)
    saved = os.path.join(out, "trained.onnx")
    if code == 0:
        code, text2 = run([os.path.join(b, "pippyrun"), os.path.join(out, "o"), "--steps", "2", "--save", saved,
                           "--timeout", "60"] + data_args(ref), timeout=300)
        text += text2
    ok = code == 0 and "1 other initializer (buffers, constants) not trained" in text
    if ok:
        before = {i.name: numpy_helper.to_array(i) for i in onnx.load(ref["_model"]).graph.initializer}
        after = {i.name: numpy_helper.to_array(i) for i in onnx.load(saved).graph.initializer}
        ok = np.array_equal(before["output_proj.bias"], after["output_proj.bias"]) and all(
            not np.array_equal(before[n], after[n]) for n in params if n != "output_proj.bias")
    res.check("torch.export signature: only its PARAMETERs train (output_proj.bias left out stays as it was)", ok,
              tail(text))
    code, text = run([os.path.join(b, "pippyc"), os.path.join(ROOT, "samples/real/llama_dynamo.onnx"), "--train",
                      "--loss", "cross_entropy", "--labels", "labels", "--batch", "8", "-o", os.path.join(out, "l"), "-q"])
    res.check("torch.onnx.export(dynamo=True) with its optimizer on: training refused, naming optimize=False",
              code == 1 and "optimize=False" in text and "'val_" in text, tail(text))
    shutil.rmtree(out, ignore_errors=True)


def trained_bn_inference_case(res, b):
    """A CNN exported from train mode (BatchNormalization training_mode=1): trained, saved (in inference form)
    and compiled by pippyc for inference, whose held-out logits equal PyTorch's trained model in eval mode.
    Compiling the export itself for inference is refused (compile_errs)."""
    model, config, M = "mobilenet_tv_train", "sgd_momentum_wd", 2
    ref = trainref.load_ref(model)
    name = f"{model}: trained, saved and compiled for inference = PyTorch's trained model in eval mode"
    out, inf = tmpdir("pippy-bninf-"), tmpdir("pippy-bninf-run-")
    saved = os.path.join(out, "trained.onnx")
    code, text = compile_case(b, ref, config, M, 1, "gpipe", out)
    if code == 0:
        code, text = run([os.path.join(b, "pippyrun"), out, "--steps", str(STEPS), "--save", saved, "--timeout", "60"]
                         + data_args(ref), timeout=300)
    held = {k: trainref.data_path(ref, f) for k, f in ref["heldout"].items()}
    n = int(np.load(held["x"]).shape[0])
    if code == 0:
        code, text = run([os.path.join(b, "pippyc"), saved, "--batch", str(n), "-o", inf, "-q"], timeout=300)
    got = os.path.join(inf, "logits.npy")
    if code == 0:
        code, text = run([os.path.join(b, "pippyrun"), inf, "--input", f"x={held['x']}", "--output", f"logits={got}",
                          "--timeout", "60"], timeout=300)
    if code != 0:
        res.check(name, False, f"exit {code}: " + tail(text))
        return
    exp = np.load(trainref.data_path(ref, ref["configs"][config]["runs"][str(M)]["heldout_outputs"]["logits"]))
    act = np.load(got)
    tol = ref["configs"][config]["tolerance"]
    d = float(np.max(np.abs(act.astype(np.float64) - exp))) / float(np.max(np.abs(exp)))
    res.check(f"{name} (max |diff| {d:.1e} x max|expected|)", act.shape == exp.shape and d <= tol,
              f"max |diff| {d:.2e} x max|expected| (tol {tol:.0e})")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(inf, ignore_errors=True)


def export_quirks_case(res, b):
    """The summary says what the compile undid of gpt2_hf_train's export, and schedule.json keeps the
    folded head for export (the losses and saved models of the cases above show it is right)."""
    ref = trainref.load_ref("gpt2_hf_train")
    out = tmpdir("pippy-hf-")
    code, text = compile_case(b, ref, "adamw", 2, 2, "1f1b", out, quiet=False)
    names = [p["name"] for st in (schedule_json(out)["stages"] if code == 0 else []) for p in st["parameters"]]
    transposed = schedule_json(out)["model"].get("transposed_initializers") if code == 0 else None
    ok = (code == 0 and "14 parameters that the export stored as an Identity of an equal one train apart" in text and
          "(onnx::MatMul_655 = Transpose of model.transformer.wte.weight)" in text and
          "model.transformer.ln_f.weight" in names and "onnx::MatMul_655" not in names and
          transposed == [{"name": "onnx::MatMul_655", "transpose_of": "model.transformer.wte.weight"}])
    res.check("gpt2_hf_train: the summary names the untied parameters and the re-tied head; schedule.json keeps "
              "the head's transpose for export", ok, tail(text, 8) + "\n        " + str(transposed))
    if ok:
        shutil.rmtree(out, ignore_errors=True)


def main():
    b = build_dir()
    res = Results("train")
    for case in CASES:
        train_case(res, b, *case)
    schedule_choice_cases(res, b)
    export_quirks_case(res, b)
    trained_bn_inference_case(res, b)
    torch_signature_case(res, b)
    if not QUICK:
        resume_case(res, b)
    nan_case(res, b)
    save_elsewhere_case(res, b)
    error_cases(res, b)
    res.finish()


if __name__ == "__main__":
    main()
