#!/usr/bin/env python3
"""Make the sample ONNX models in samples/models/ (needs torch; CI uses the committed files).

    python3 samples/make_models.py            # all models
    python3 samples/make_models.py mlp gpt_op17

Every model is built in plain torch with a fixed seed and exported with the TorchScript-based exporter
(torch.onnx.export(..., dynamo=False), via tools/pippy_torch.export) with dimension 0 of every input and
output symbolic ("batch"), so the graphs read the batch size with Shape -> Gather -> ... -> Reshape rather
than baking it in. Beside each <name>.onnx goes <name>.json (parameter count, input/output shapes at
batch 8, opset, node and op counts, and the max |ORT - torch| difference at batch 8).

Then run samples/make_refdata.py (numpy/onnx/onnxruntime only) for the reference inputs and outputs.
"""

import json
import math
import os
import sys
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import pippy_torch  # noqa: E402
from pippy_torch import pipe_split  # noqa: E402
from trainmodels import CausalSelfAttention  # noqa: E402  (shared with the training samples' GPT)

OUT = os.path.join(HERE, "models")
BATCH = 8

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


# ---------------------------------------------------------------- models

class MLP(nn.Module):
    """64 -> 256 -> 256 -> 256 -> 10; ReLU, GELU, ReLU. `splits` = layers after which to pipe_split()."""

    def __init__(self, splits=()):
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 256)
        self.fc4 = nn.Linear(256, 10)
        self.splits = tuple(splits)
        # He-normal weights keep the activations near unit scale through the four layers (PyTorch's
        # default init shrinks them ~2.5x per layer), so the reference outputs are O(1)
        for fc in (self.fc1, self.fc2, self.fc3, self.fc4):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.fc1(x))
        if 1 in self.splits:
            x = pipe_split(x)
        x = F.gelu(self.fc2(x))
        if 2 in self.splits:
            x = pipe_split(x)
        x = F.relu(self.fc3(x))
        if 3 in self.splits:
            x = pipe_split(x)
        return self.fc4(x)


class Block(nn.Module):
    def __init__(self, d, n_head, block):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_head, block)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.fc_proj(F.gelu(self.fc(self.ln2(x))))
        return x


class GPT(nn.Module):
    """GPT-style decoder (nanoGPT layout). The output head shares its weight with the token embedding.

    The head runs on the flattened [B*T, d] activations so that the exporter emits
    Gemm(x, tok_emb.weight, lm_head.bias, transB=1) on the *same* initializer that the embedding Gather
    reads. (Applied to a 3-D input, nn.Linear exports as MatMul(x, Transpose(W)); constant folding then
    turns Transpose(W) into a second, transposed copy of the weight and the tie is lost in the file.)
    """

    def __init__(self, vocab=128, d=64, n_head=4, n_layer=2, block=16, flat_head=True):
        super().__init__()
        self.flat_head = flat_head
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(block, d)
        self.blocks = nn.ModuleList([Block(d, n_head, block) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=True)
        self.lm_head.weight = self.tok_emb.weight  # tied
        # small random init for every LayerNorm so that its affine parameters are not trivially 1/0
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.LayerNorm):
                    m.weight.add_(0.1 * torch.randn_like(m.weight))
                    m.bias.add_(0.1 * torch.randn_like(m.bias))

    def forward(self, idx):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)
        for blk in self.blocks:
            x = blk(x)
        x = self.ln_f(x)
        if not self.flat_head:  # the usual 3-D head: MatMul(x, Transpose(tok_emb.weight)) + bias
            return self.lm_head(x)
        C = x.size(2)
        logits = self.lm_head(x.reshape(B * T, C))
        return logits.view(B, T, -1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + idt)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (BasicBlock x [2,2,2,2]) with base width `w` and `num_classes`."""

    def __init__(self, w=12, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], w
        for i, n in enumerate([2, 2, 2, 2]):
            cout = w * (2 ** i)
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, cout, stride=2 if (i > 0 and j == 0) else 1))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                with torch.no_grad():  # non-trivial affine parameters
                    m.weight.copy_(1.0 + 0.1 * torch.randn_like(m.weight))
                    m.bias.copy_(0.1 * torch.randn_like(m.bias))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class Skip(nn.Module):
    """x[B,32] -> 6 x (Linear + Tanh). Layer 1's output is concatenated to layer 5's input; x is added to
    layer 6's output. So x and h1 are read far from where they are made (long skips across stages)."""

    def __init__(self, d=32):
        super().__init__()
        self.l1 = nn.Linear(d, d)
        self.l2 = nn.Linear(d, d)
        self.l3 = nn.Linear(d, d)
        self.l4 = nn.Linear(d, d)
        self.l5 = nn.Linear(2 * d, d)
        self.l6 = nn.Linear(d, d)

    def forward(self, x):
        h1 = torch.tanh(self.l1(x))
        h = torch.tanh(self.l2(h1))
        h = torch.tanh(self.l3(h))
        h = torch.tanh(self.l4(h))
        h = torch.tanh(self.l5(torch.cat([h, h1], dim=1)))
        h = torch.tanh(self.l6(h))
        return h + x


# ---------------------------------------------------------------- building and checking

def mlp_model():
    torch.manual_seed(1)
    return MLP()


def gpt_model():
    torch.manual_seed(2)
    return GPT()


def gpt_head_model():
    torch.manual_seed(2)
    return GPT(flat_head=False)


def resnet_model(width=None):
    torch.manual_seed(3)
    m = ResNet18(w=width or RESNET_WIDTH)
    # non-trivial BN running statistics: a few training-mode passes over random data
    m.train()
    g = torch.Generator().manual_seed(33)
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(16, 3, 32, 32, generator=g) * 1.5 + 0.2)
    return m


def skip_model():
    torch.manual_seed(4)
    return Skip()


# Base width of the ResNet-18 sample. torchvision's is 64; 16 gives 0.70M parameters (2.8 MB, over the
# 2 MB per-file limit of the repository), 12 gives 0.39M (1.6 MB).
RESNET_WIDTH = 12
# resnet18_static: width 8 keeps the file small (0.18M parameters) and makes the first layers' channel
# count equal to the batch of 8, which the static-batch rewrite must tell apart
RESNET_STATIC_WIDTH = 8


def example(name, batch, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    if name.startswith("mlp"):
        return {"x": torch.randn(batch, 64, generator=g)}
    if name.startswith("gpt"):
        return {"idx": torch.randint(0, 128, (batch, 16), generator=g, dtype=torch.long)}
    if name.startswith("resnet18"):
        return {"x": torch.randn(batch, 3, 32, 32, generator=g)}
    if name == "skip":
        return {"x": torch.randn(batch, 32, generator=g)}
    raise KeyError(name)


# name -> (builder, opset, output names, export keyword arguments)
MODELS = {
    "mlp": (mlp_model, 17, ["y"], {}),
    "gpt_op14": (gpt_model, 14, ["logits"], {}),
    "gpt_op17": (gpt_model, 17, ["logits"], {}),
    # keep BatchNormalization nodes (the default EVAL mode folds them into the convolutions)
    "resnet18": (resnet_model, 17, ["y"], {"training": torch.onnx.TrainingMode.PRESERVE}),
    "skip": (skip_model, 17, ["y"], {}),
    "mlp_annotated": (lambda: _with_splits(mlp_model(), (1, 2)), 17, ["y"], {}),
    "mlp_meta": (mlp_model, 17, ["y"], {}),
    # the 3-D head of a usual GPT export: without constant folding the file keeps
    # Transpose(tok_emb.weight) -> MatMul, so the tie to the embedding is pippyc's to keep
    "gpt_head_t": (gpt_head_model, 17, ["logits"], {"do_constant_folding": False}),
    # static batch (no dynamic_axes: the batch of 8 is baked into the graph, the most common export):
    # gpt_op14_static with the exporter's constant folding (shape constants in Constant nodes),
    # gpt_op17_static without it (the batch reaches each Reshape through Unsqueeze -> Concat chains);
    # resnet18_static in the default eval export (BatchNorm folded into the convolutions, width 8)
    "gpt_op14_static": (gpt_model, 14, ["logits"], {"dynamic_batch": False}),
    "gpt_op17_static": (gpt_model, 17, ["logits"], {"dynamic_batch": False, "do_constant_folding": False}),
    "resnet18_static": (lambda: resnet_model(RESNET_STATIC_WIDTH), 17, ["y"], {"dynamic_batch": False}),
    "mlp_static": (mlp_model, 17, ["y"], {"dynamic_batch": False}),
}


def _with_splits(m, splits):
    m.splits = tuple(splits)
    return m


def ort_session(model_proto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def build(name):
    builder, opset, out_names, kw = MODELS[name]
    model = builder().eval()
    inputs = example(name, BATCH)
    in_names = list(inputs)
    path = os.path.join(OUT, name + ".onnx")
    with torch.no_grad():
        pippy_torch.export(model, tuple(inputs.values()), path, in_names, out_names, opset=opset, **kw)
    m = onnx.load(path)

    if name == "mlp_meta":
        # stages begin at the Gemm of layer 2 and the Gemm of layer 4
        gemms = [n.name for n in m.graph.node if n.op_type == "Gemm"]
        assert len(gemms) == 4, gemms
        split_before = [gemms[1], gemms[3]]
        entry = m.metadata_props.add()
        entry.key, entry.value = "pippy.split_before", ",".join(split_before)
    pippy_torch.drop_unused_pippy_opset(m)
    m.producer_name = "pippyc samples/make_models.py (torch %s)" % torch.__version__.split("+")[0]
    onnx.save(m, path)
    onnx.checker.check_model(path, full_check=False)

    # ONNX Runtime vs torch at batch 8
    sess = ort_session(pippy_torch.strip_pipe_splits(m))
    feeds = {k: v.numpy() for k, v in inputs.items()}
    ort_out = sess.run(None, feeds)
    with torch.no_grad():
        ref = model(*inputs.values())
    refs = ref if isinstance(ref, (tuple, list)) else [ref]
    diff = max(float(np.max(np.abs(o - r.numpy()))) for o, r in zip(ort_out, refs))

    default_opset = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
    ops = Counter((n.op_type if n.domain in ("", "ai.onnx") else n.domain + "::" + n.op_type)
                  for n in m.graph.node)
    info = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "inputs": {k: {"shape": list(v.shape), "dtype": str(v.numpy().dtype)} for k, v in inputs.items()},
        "outputs": {o.name: list(a.shape) for o, a in zip(sess.get_outputs(), ort_out)},
        "opset": default_opset,
        "node_count": len(m.graph.node),
        "op_counts": dict(sorted(ops.items())),
        "ort_max_abs_diff_vs_torch": diff,
        "initializers": len(m.graph.initializer),
        "file_bytes": os.path.getsize(path),
    }
    if name == "mlp_meta":
        info["split_before"] = split_before
    if name == "mlp_annotated":
        info["pipe_splits"] = [n.name for n in m.graph.node if n.op_type == "PipeSplit"]
    if name.startswith("gpt"):
        info["tied"] = tied_report(m)
    if name == "gpt_head_t":
        info["head"] = [n.op_type + ":" + n.name for n in m.graph.node if n.name.startswith("/lm_head/")]
    if name.startswith("resnet18"):
        info["base_width"] = RESNET_STATIC_WIDTH if name.endswith("_static") else RESNET_WIDTH
    info["static_batch"] = not kw.get("dynamic_batch", True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def tied_report(m):
    """Which initializers feed both a Gather and a Gemm/MatMul (the tied embedding / output head)."""
    inits = {i.name for i in m.graph.initializer}
    users = {}
    for n in m.graph.node:
        for i in n.input:
            if i in inits:
                users.setdefault(i, []).append(n.op_type + ":" + n.name)
    out = {}
    for k, v in users.items():
        kinds = {u.split(":")[0] for u in v}
        if "Gather" in kinds and kinds & {"Gemm", "MatMul", "Transpose"}:
            out[k] = v
    return out


def main(argv):
    names = argv or list(MODELS)
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        info = build(name)
        print("%-14s %8d params %7d bytes  %3d nodes  ort-vs-torch %.2e  %s" % (
            name, info["parameters"], info["file_bytes"], info["node_count"],
            info["ort_max_abs_diff_vs_torch"], ",".join(info["op_counts"])))


if __name__ == "__main__":
    main(sys.argv[1:])
