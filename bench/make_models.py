#!/usr/bin/env python3
"""Make the benchmark models and their inputs in bench/work/ (git-ignored; never committed).

    python3 bench/make_models.py              # every model (skips those already made)
    python3 bench/make_models.py --force gpt_big

Models (torch.onnx.export, dynamo=False, opset 17, dimension 0 of every input/output symbolic "batch",
through tools/pippy_torch.export as the samples are):

  mlp, gpt_op17, resnet18   the committed samples (samples/models/), copied as they are
  mlp_big    Linear 1024 -> 4096 -> 4096 -> 4096 -> 4096 -> 4096 -> 1024, ReLU between (75.5 M params,
             302 MB; four equal 4096x4096 layers so that 2 stages balance)
  gpt_big    the samples' GPT (nanoGPT layout, tied head): vocab 512, d 512, 8 heads, 6 layers, seq 64
             (19.2 M params)
  mlp_train, gpt_train, gpt_op17_static   more committed samples, copied as they are (with mlp_train's
             external weights): the seed MLP and the small GPT as exported for training (Gemm with
             transB, the tied head as MatMul), and the GPT exported with a static batch of 8 (issue 10)
  wide       a cheap model with a wide activation for stage-to-stage transfer tests:
             x[B, 262144] -> Relu -> Mul(0.5) -> PipeSplit -> 4 x (Tanh -> Mul(0.9)) -> Add(1);
             1 MiB per sample crosses the cut

For each model, bench/work/<name>.onnx and bench/work/<name>.in.npy (an input at the batch the benches
use, see BENCH_BATCH) are written, plus bench/work/<name>.json (parameters, FLOPs estimate, batch).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "samples"))
import pippy_torch  # noqa: E402
from pippy_torch import pipe_split  # noqa: E402

warnings.filterwarnings("ignore")

# The batch each bench runs a model at (one whole-model run); the pipeline bench may use its own.
BENCH_BATCH = {
    "mlp": 256,
    "gpt_op17": 16,
    "resnet18": 16,
    "mlp_big": 64,
    "gpt_big": 8,
    "wide": 16,
    "mlp_train": 128,
    "gpt_train": 16,
    "gpt_op17_static": 8,
}


# Four equal 4096x4096 layers between the 1024-wide ends, so that 2 (or 4) stages can be balanced at
# layer boundaries (with three, the best 2-stage cut is 1.8x unbalanced).
MLP_BIG_DIMS = (1024, 4096, 4096, 4096, 4096, 4096, 1024)


class MLPBig(nn.Module):
    def __init__(self, dims=MLP_BIG_DIMS):
        super().__init__()
        self.fcs = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        for fc in self.fcs:
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")

    def forward(self, x):
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i + 1 < len(self.fcs):
                x = torch.relu(x)
        return x


class Wide(nn.Module):
    """Stage 0 is light (Relu, Mul), stage 1 heavier (4 x (Tanh, Mul)), so that stage 0's sends arrive
    while stage 1 computes: whether a transfer overlaps the receiver's compute shows in stage 1's
    waits."""

    def forward(self, x):
        x = torch.relu(x) * 0.5
        x = pipe_split(x)
        for _ in range(4):
            x = torch.tanh(x) * 0.9
        return x + 1.0


def mlp_big_flops(batch, dims=MLP_BIG_DIMS):
    return 2 * batch * sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def gpt_flops(batch, vocab, d, n_layer, T):
    per_tok = 2 * (12 * d * d * n_layer + d * vocab)  # qkv, proj, fc, fc_proj; head
    attn = n_layer * 2 * 2 * T * d  # q@k^T and att@v, full (the causal mask is applied after)
    return batch * T * (per_tok + attn)


def make_gpt_big():
    import make_models as samples  # samples/make_models.py: the sample GPT's classes

    torch.manual_seed(5)
    cfg = dict(vocab=512, d=512, n_head=8, n_layer=6, block=64)
    return samples.GPT(**cfg).eval(), cfg


def export(model, args, path, in_names, out_names):
    with torch.no_grad():
        pippy_torch.export(model, args, path, in_names, out_names, opset=17)
    m = onnx.load(path)
    pippy_torch.drop_unused_pippy_opset(m)
    m.producer_name = "pippyc bench/make_models.py (torch %s)" % torch.__version__.split("+")[0]
    onnx.save(m, path)


def build(name):
    B = BENCH_BATCH[name]
    onnx_path = os.path.join(WORK, name + ".onnx")
    g = torch.Generator().manual_seed(77)
    info = {"name": name, "batch": B}
    if name in ("mlp", "gpt_op17", "resnet18"):
        shutil.copyfile(os.path.join(ROOT, "samples", "models", name + ".onnx"), onnx_path)
        if name == "mlp":
            x = torch.randn(B, 64, generator=g).numpy()
            info["flops"] = 2 * B * (64 * 256 + 256 * 256 * 2 + 256 * 10)
        elif name == "gpt_op17":
            x = torch.randint(0, 128, (B, 16), generator=g, dtype=torch.long).numpy()
            info["flops"] = gpt_flops(B, 128, 64, 2, 16)
        else:
            x = torch.randn(B, 3, 32, 32, generator=g).numpy()
        info["input"] = "x" if name != "gpt_op17" else "idx"
        info["output"] = "y" if name != "gpt_op17" else "logits"
    elif name in ("mlp_train", "gpt_train", "gpt_op17_static"):
        src = os.path.join(ROOT, "samples", "models", name + ".onnx")
        shutil.copyfile(src, onnx_path)
        if name == "mlp_train":
            subprocess.run([sys.executable, os.path.join(ROOT, "samples", "mlp_train_weights.py")], check=True)
            shutil.copyfile(os.path.join(ROOT, "samples", "models", "mlp_train.weights"),
                            os.path.join(WORK, "mlp_train.weights"))
            x = torch.randn(B, 512, generator=g).numpy()
            info.update(input="x", output="y", flops=2 * B * (512 * 512 + 512 * 1024 + 1024 * 256 + 256 * 10))
        else:
            x = torch.randint(0, 128, (B, 16), generator=g, dtype=torch.long).numpy()
            info.update(input="idx", output="logits", flops=gpt_flops(B, 128, 64, 2, 16))
    elif name == "mlp_big":
        torch.manual_seed(6)
        model = MLPBig().eval()
        x = torch.randn(B, 1024, generator=g)
        export(model, (x,), onnx_path, ["x"], ["y"])
        x = x.numpy()
        info.update(input="x", output="y", flops=mlp_big_flops(B),
                    parameters=sum(p.numel() for p in model.parameters()))
    elif name == "gpt_big":
        model, cfg = make_gpt_big()
        x = torch.randint(0, cfg["vocab"], (B, cfg["block"]), generator=g, dtype=torch.long)
        export(model, (x,), onnx_path, ["idx"], ["logits"])
        x = x.numpy()
        info.update(input="idx", output="logits", config=cfg,
                    flops=gpt_flops(B, cfg["vocab"], cfg["d"], cfg["n_layer"], cfg["block"]),
                    parameters=sum(p.numel() for p in model.parameters()))
    elif name == "wide":
        x = torch.randn(B, 262144, generator=g)
        export(Wide().eval(), (x[:2],), onnx_path, ["x"], ["y"])
        x = x.numpy()
        info.update(input="x", output="y", cut_bytes_per_sample=262144 * 4)
    else:
        raise KeyError(name)
    np.save(os.path.join(WORK, name + ".in.npy"), x)
    info["file_bytes"] = os.path.getsize(onnx_path)
    with open(os.path.join(WORK, name + ".json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--force", action="store_true", help="remake models that exist")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    for name in a.names or list(BENCH_BATCH):
        done = all(os.path.exists(os.path.join(WORK, name + ext)) for ext in (".onnx", ".in.npy", ".json"))
        if done and not a.force:
            print("%-9s exists (use --force to remake)" % name)
            continue
        info = build(name)
        print("%-9s batch %-4d %10d bytes%s" % (name, info["batch"], info["file_bytes"],
              "  %.2f GFLOP/run" % (info["flops"] / 1e9) if "flops" in info else ""))


if __name__ == "__main__":
    main()
