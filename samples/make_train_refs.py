#!/usr/bin/env python3
"""Make the training sample models and PyTorch's training references (needs torch; CI uses the files).

    python3 samples/make_train_refs.py                  # every model
    python3 samples/make_train_refs.py gpt_train cnn_train
    python3 samples/make_train_refs.py --bench-models DIR   # only export the bench-size models to DIR

For each model it writes samples/models/<name>.onnx and samples/models/<name>.train/:

  data_<input>.npy      the training set of each graph input (and of the labels), samples along dim 0
  heldout_<input>.npy   a held-out batch, for checking a trained model saved by pippyrun --save
  ref.json              batch, dataset size, the pippyc flags of every optimizer configuration and,
                        for each configuration and each microbatch count M, PyTorch's per-step losses,
                        learning rates and gradient norms, per-parameter checksums after training,
                        BatchNorm running statistics, and the test's sensitivity figures (see below)
  out_<config>_M<m>.npy the trained model's output on the held-out batch (eval mode), per config and M

Training follows pippyc's contract: step k uses samples [k*batch, (k+1)*batch) modulo the dataset size,
cuts them into M equal microbatches along dim 0, back-propagates each microbatch's mean loss divided by
M, accumulates the gradients, optionally clips them (torch.nn.utils.clip_grad_norm_), sets the step's
learning rate and makes one torch.optim step. The logged loss of a step is the mean of its M microbatch
losses. Everything is float32 on one thread (torch.set_num_threads(1)); the same run in float64 is
compared against it to show how much of a loss difference is float32 rounding.

Every configuration also runs through this file's own implementation of the documented update formulas
(sgd_step / adamw_step / clip_grads / lr_at), which must match torch.optim to 1e-5 (asserted), and then
through deliberately wrong variants ("mutants": a missing bias correction, weight decay coupled into
the gradient, the first momentum step dampened, ...). ref.json records how far each mutant's losses and
held-out outputs land from the reference, i.e. which bugs the tolerance catches.

Deterministic: fixed seeds and one thread; a rerun with the same torch/onnx writes the same bytes.
mlp_train and mlp_train_loss keep their (identical) weights in one shared external-data file,
mlp_train.weights, which is not committed: samples/mlp_train_weights.py makes its 4.2 MB (numpy only;
`make test` runs it), and the models here get the same values.
"""

import argparse
import copy
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "test", "e2e"))
sys.path.insert(0, HERE)
import pippy_torch  # noqa: E402
import mlp_train_weights  # noqa: E402
import trainmodels as tm  # noqa: E402
import trainref  # noqa: E402

OUT = os.path.join(HERE, "models")
STEPS = 8
OPSET = 17
SHARED_WEIGHTS = "mlp_train.weights"  # external data shared by mlp_train.onnx and mlp_train_loss.onnx

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


# ---------------------------------------------------------------- optimizer configurations

def sgd(lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, clip=None):
    return {"optimizer": {"name": "sgd", "lr": lr, "momentum": momentum, "dampening": dampening,
                          "nesterov": nesterov, "weight_decay": weight_decay},
            "clip_grad_norm": clip, "lr_schedule": None}


def adamw(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, clip=None, schedule=None):
    return {"optimizer": {"name": "adamw", "lr": lr, "betas": list(betas), "eps": eps,
                          "weight_decay": weight_decay},
            "clip_grad_norm": clip, "lr_schedule": schedule}


def warmup_cosine(warmup, total, min_lr):
    return {"name": "warmup_cosine", "warmup_steps": warmup, "total_steps": total, "min_lr": min_lr}


def lr_at(cfg, k):
    """The learning rate of optimizer step k (0-based).

    constant:       lr
    warmup_cosine:  k <  W:      lr * (k + 1) / W
                    W <= k < N:  min_lr + (lr - min_lr) * (1 + cos(pi * (k - W) / (N - W))) / 2
                    k >= N:      min_lr
    (W = warmup_steps, N = total_steps; computed in double precision.)"""
    base = cfg["optimizer"]["lr"]
    s = cfg["lr_schedule"]
    if s is None:
        return base
    W, N, lo = s["warmup_steps"], s["total_steps"], s["min_lr"]
    if k < W:
        return base * (k + 1) / W
    if k >= N:
        return lo
    return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * (k - W) / (N - W)))


def flags_of(cfg):
    """pippyc command-line flags for a configuration (the flag names of the training issues)."""
    o = cfg["optimizer"]
    f = ["--optimizer", o["name"], "--lr", repr(o["lr"])]
    if o["name"] == "sgd":
        if o["momentum"]:
            f += ["--momentum", repr(o["momentum"])]
        if o["dampening"]:
            f += ["--dampening", repr(o["dampening"])]
        if o["nesterov"]:
            f += ["--nesterov"]
        if o["weight_decay"]:
            f += ["--weight-decay", repr(o["weight_decay"])]
    else:
        f += ["--betas", "%r,%r" % tuple(o["betas"]), "--eps", repr(o["eps"]),
              "--weight-decay", repr(o["weight_decay"])]
    if cfg["clip_grad_norm"] is not None:
        f += ["--clip-grad-norm", repr(cfg["clip_grad_norm"])]
    s = cfg["lr_schedule"]
    if s is not None:
        f += ["--lr-schedule", "warmup_cosine", "--warmup-steps", str(s["warmup_steps"]),
              "--total-steps", str(s["total_steps"]), "--min-lr", repr(s["min_lr"])]
    return f


def tolerance_of(cfg):
    """The relative loss tolerance of the training issues: 1e-4 with SGD, 1e-3 with AdamW."""
    return 1e-4 if cfg["optimizer"]["name"] == "sgd" else 1e-3


# ---------------------------------------------------------------- the models and their data

def _gen(seed):
    return torch.Generator().manual_seed(seed)


def mlp_data(g):
    teacher = torch.randn(512, 10, generator=g) / math.sqrt(512)

    def make(n):
        x = torch.randn(n, 512, generator=g)
        return {"x": x, "target": x @ teacher + 0.1 * torch.randn(n, 10, generator=g)}
    return make(48), make(8)


def gpt_data(g):
    # next token = (3 * token + 1) mod 128: learnable from each position's own embedding
    def make(n):
        idx = torch.randint(0, 128, (n, 16), generator=g, dtype=torch.long)
        return {"idx": idx, "labels": (3 * idx + 1) % 128}
    return make(24), make(2)


def _hf_tokens(g, first, pad):
    # gpt_data's task on tokens first..127, with trailing padding on every third row (the last 4
    # positions, masked for attention; they still count in the loss, on both sides); pad: those
    # positions hold the pad token 0
    def make(n):
        ids = torch.randint(first, 128, (n, 16), generator=g, dtype=torch.long)
        mask = torch.ones(n, 16, dtype=torch.long)
        mask[1::3, -4:] = 0
        if pad:
            ids[mask == 0] = 0
        return {"input_ids": ids, "attention_mask": mask, "labels": (3 * ids + 1) % 128}
    return make(24), make(2)


def hf_gpt2_data(g):
    return _hf_tokens(g, 0, False)


def hf_llama_data(g):
    # the pad token 0's embedding row gets no gradient in torch
    return _hf_tokens(g, 1, True)


def hf_bert_data(g):
    # the same tokens as hf_llama_data; targets N(0,1) for the last hidden state (MSE)
    sets = _hf_tokens(g, 1, True)
    for s in sets:
        s["labels"] = torch.randn(s["input_ids"].shape[0], 16, 32, generator=g)
    return sets


def hf_t5_data(g):
    # hf_gpt2_data's tokens; targets N(0,1) for the last hidden state (MSE)
    sets = _hf_tokens(g, 1, False)
    for s in sets:
        s["labels"] = torch.randn(s["input_ids"].shape[0], 16, 32, generator=g)
    return sets


def vit_data(g):
    # 10 classes: the argmax of a fixed projection of the 8x8-pooled image
    proj = torch.randn(3 * 4 * 4, 10, generator=g)

    def make(n):
        x = torch.randn(n, 3, 32, 32, generator=g)
        return {"x": x, "labels": torch.argmax(nn.functional.avg_pool2d(x, 8).reshape(n, -1) @ proj, dim=1)}
    return make(24), make(2)


def cnn64_data(g):
    # 10 classes: the argmax of a fixed projection of the 16x16-pooled image
    proj = torch.randn(3 * 4 * 4, 10, generator=g)

    def make(n):
        x = torch.randn(n, 3, 64, 64, generator=g)
        return {"x": x, "labels": torch.argmax(nn.functional.avg_pool2d(x, 16).reshape(n, -1) @ proj, dim=1)}
    return make(24), make(4)


def encoder_data(g):
    def make(n):
        x = torch.randn(n, 16, 32, generator=g)
        return {"x": x, "target": torch.tanh(x.flip(1))}
    return make(24), make(2)


def cnn_data(g):
    proj = torch.randn(3 * 4 * 4, 10, generator=g)

    def make(n):
        x = torch.randn(n, 3, 16, 16, generator=g)
        feats = nn.functional.avg_pool2d(x, 4).reshape(n, -1)  # [n, 3*4*4]
        return {"x": x, "labels": torch.argmax(feats @ proj, dim=1)}
    return make(48), make(8)


def skip_data(g):
    teacher = torch.randn(64, 64, generator=g) / 8.0

    def make(n):
        x = torch.randn(n, 64, generator=g)
        y = torch.randn(n, 64, generator=g)
        return {"x": x, "y": y, "target": torch.tanh(x @ teacher) + 0.5}
    return make(20), make(8)


def _seeded(cls, seed, **kw):
    def build():
        torch.manual_seed(seed)
        return cls(**kw)
    return build


def _mlp_weights(cls):
    """The seed MyNetwork with samples/mlp_train_weights.py's values (the weights file CI makes from
    that script instead of a committed one)."""
    def build():
        model = cls()
        vals = mlp_train_weights.values({n: list(p.shape) for n, p in model.named_parameters()})
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(torch.from_numpy(vals[n]))
        return model
    return build


# name -> spec. loss: "mse" / "cross_entropy" (given by flag, against the graph input `labels` that
# pippyc adds) or "in_model" (the model's own scalar output). forward: the graph inputs.
SPECS = {
    "mlp_train": {
        "what": "PiPPy's seed MyNetwork: Linear+ReLU 512->512->1024->256, Linear 256->10",
        "build": _mlp_weights(tm.MyNetwork), "data": mlp_data, "data_seed": 111,
        "forward": ["x"], "outputs": ["y"], "loss": "mse", "labels": "target",
        "batch": 16, "microbatches": [1, 2, 4, 8],
        "configs": {
            "sgd": sgd(0.05),
            "sgd_momentum_wd": sgd(0.05, momentum=0.9, weight_decay=1e-4),
            "sgd_nesterov": sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
            "sgd_dampening": sgd(0.05, momentum=0.9, dampening=0.5),
            "sgd_clip": sgd(0.05, momentum=0.9, clip=0.5),
        },
    },
    "mlp_train_loss": {
        "what": "mlp_train with its MSE loss inside: forward(x, target) = ((y - target) ** 2).mean()",
        "build": _mlp_weights(tm.MyNetworkLoss), "data": mlp_data, "data_seed": 111,
        "forward": ["x", "target"], "outputs": ["loss"], "loss": "in_model", "labels": None,
        "batch": 16, "microbatches": [1, 2, 4, 8],
        "configs": {
            "sgd": sgd(0.05),
            "sgd_momentum_wd": sgd(0.05, momentum=0.9, weight_decay=1e-4),
        },
    },
    "gpt_train": {
        "what": "GPT (nanoGPT layout), vocab 128, d 64, 2 blocks, 4 heads, T 16, lm head tied to wte",
        "build": _seeded(tm.GPT, 12), "data": gpt_data, "data_seed": 112,
        "forward": ["idx"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 8, "microbatches": [1, 2, 4, 8], "export": {"do_constant_folding": False},
        "configs": {
            "adamw": adamw(1e-3),
            "adamw_clip": adamw(1e-3, clip=1.6),
            "adamw_cosine": adamw(3e-3, weight_decay=0.1, schedule=warmup_cosine(2, 8, 3e-4)),
        },
    },
    "gpt_train_loss": {
        "what": "gpt_train with its loss inside: forward(idx, labels) = F.cross_entropy(logits.reshape(-1, 128), "
                "labels.reshape(-1))",
        "build": _seeded(tm.GPTLoss, 12), "data": gpt_data, "data_seed": 112,
        "forward": ["idx", "labels"], "outputs": ["loss"], "loss": "in_model", "labels": None,
        "batch": 8, "microbatches": [1, 2, 4, 8], "export": {"do_constant_folding": False},
        "configs": {"adamw": adamw(1e-3)},
    },
    "gpt2_hf_train": {
        "what": "transformers GPT2LMHeadModel (lm_head tied to wte), 2 layers, n_embd 32, exported as a user "
                "would (constant folding on): equal-valued parameters stored once (Identity), the tied head's "
                "transpose folded into an initializer of its own",
        "build": _seeded(tm.HFGPT2, 15), "data": hf_gpt2_data, "data_seed": 115,
        "forward": ["input_ids", "attention_mask"], "outputs": ["logits"], "loss": "cross_entropy",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "configs": {"adamw": adamw(1e-3), "adamw_clip": adamw(1e-3, clip=1.05)},
    },
    "gpt2_hf_dynamo_train": {
        "what": "gpt2_hf_train's model, data and configurations exported by torch.onnx.export's default (dynamo) "
                "exporter as a user exports to train: a dynamic batch, optimize=False (its graph signature names the "
                "parameters; lm_head tied to wte, stored once as model.lm_head.weight; torch.split as "
                "SplitToSequence; CastLike)",
        "build": _seeded(tm.HFGPT2, 15), "data": hf_gpt2_data, "data_seed": 115, "dynamo": True,
        "forward": ["input_ids", "attention_mask"], "outputs": ["logits"], "loss": "cross_entropy",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8],
        "configs": {"adamw": adamw(1e-3)},
    },
    "llama_hf_dynamo_train": {
        "what": "llama_hf_train's model, data and configuration exported by the dynamo exporter (dynamic batch, "
                "optimize=False): its rotary embedding's inv_freq is a buffer initializer, frozen as PyTorch keeps it",
        "build": _seeded(tm.HFLlama, 16), "data": hf_llama_data, "data_seed": 116, "dynamo": True,
        "forward": ["input_ids", "attention_mask"], "outputs": ["logits"], "loss": "cross_entropy",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8],
        "extra_flags": ["--padding-idx", "model.model.embed_tokens.weight=0"],
        "configs": {"adamw": adamw(1e-3)},
    },
    "bert_hf_dynamo_train": {
        "what": "bert_hf_train's model, data and configuration exported by the dynamo exporter (dynamic batch, "
                "optimize=False)",
        "build": _seeded(tm.HFBert, 17), "data": hf_bert_data, "data_seed": 117, "dynamo": True,
        "forward": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state"], "loss": "mse",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8],
        "extra_flags": ["--padding-idx", "model.embeddings.word_embeddings.weight=0"],
        "configs": {"adamw": adamw(1e-3)},
    },
    "vit_tv_dynamo_train": {
        "what": "vit_tv_train's model, data and configuration exported by the dynamo exporter (dynamic batch, "
                "optimize=False): the class token an Expand of its parameter",
        "build": _seeded(tm.TVViT, 19), "data": vit_data, "data_seed": 119, "dynamo": True,
        "forward": ["x"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 8, "microbatches": [1, 2, 4, 8],
        "configs": {"adamw": adamw(1e-3)},
    },
    "llama_hf_train": {
        "what": "transformers LlamaForCausalLM (RMSNorm, rotary embedding, SiLU MLP, 4 heads on 2 key/value heads, "
                "untied head), 2 layers, hidden 32, pad token 0 (its embedding row gets no gradient: "
                "--padding-idx), exported with constant folding on",
        "build": _seeded(tm.HFLlama, 16), "data": hf_llama_data, "data_seed": 116,
        "forward": ["input_ids", "attention_mask"], "outputs": ["logits"], "loss": "cross_entropy",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "extra_flags": ["--padding-idx", "model.model.embed_tokens.weight=0"],
        "configs": {"adamw": adamw(1e-3)},
    },
    "bert_hf_train": {
        "what": "transformers BertModel (no pooler), 2 layers, hidden 32, no dropout, pad token 0 (--padding-idx), "
                "MSE of its last hidden state against N(0,1) targets, exported with constant folding on",
        "build": _seeded(tm.HFBert, 17), "data": hf_bert_data, "data_seed": 117,
        "forward": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state"], "loss": "mse",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "extra_flags": ["--padding-idx", "model.embeddings.word_embeddings.weight=0"],
        "configs": {"adamw": adamw(1e-3)},
    },
    "t5_hf_train": {
        "what": "transformers T5EncoderModel (relative position bias, RMS LayerNorm), 2 layers, d 32, no dropout, "
                "MSE of its last hidden state against N(0,1) targets, exported with constant folding on",
        "build": _seeded(tm.HFT5Encoder, 18), "data": hf_t5_data, "data_seed": 118,
        "forward": ["input_ids", "attention_mask"], "outputs": ["last_hidden_state"], "loss": "mse",
        "labels": "labels", "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "configs": {"adamw": adamw(1e-3)},
    },
    "vit_tv_train": {
        "what": "torchvision VisionTransformer (conv patch embedding, class token, learned positions), 32x32 "
                "images, patch 8, 2 layers, hidden 32, no dropout, exported with constant folding on",
        "build": _seeded(tm.TVViT, 19), "data": vit_data, "data_seed": 119,
        "forward": ["x"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "configs": {"adamw": adamw(1e-3)},
    },
    "encoder_train": {
        "what": "torch.nn.TransformerEncoder (batch_first), 2 layers, d 32, 4 heads, no dropout; its layers are deep "
                "copies (equal at the start: stored once by the exporter), MSE against tanh of the reversed input",
        "build": _seeded(tm.TorchEncoder, 20), "data": encoder_data, "data_seed": 120,
        "forward": ["x"], "outputs": ["y"], "loss": "mse", "labels": "target",
        "batch": 8, "microbatches": [1, 2, 4, 8], "identity_params": True,
        "configs": {"adamw": adamw(1e-3)},
    },
    "mobilenet_tv_train": {
        "what": "torchvision MobileNetV3 (mobilenet_v3_small's layout, width 0.25: BatchNorm, depthwise convolutions, "
                "squeeze-and-excitation, HardSwish), 64x64 images, exported from train mode (BatchNormalization "
                "training_mode=1, as a user exporting the model they train gets) with constant folding on",
        "build": _seeded(tm.TVMobileNetV3, 21), "data": cnn64_data, "data_seed": 121,
        "forward": ["x"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 8, "microbatches": [1, 2, 4, 8], "export_mode": "train",
        "export": {"training": torch.onnx.TrainingMode.PRESERVE},
        "configs": {"sgd_momentum_wd": sgd(0.1, momentum=0.9, weight_decay=1e-3)},
    },
    "efficientnet_tv_train": {
        "what": "torchvision EfficientNet (efficientnet_b0's layout, width and depth 0.25: BatchNorm, depthwise "
                "convolutions, squeeze-and-excitation, SiLU), 64x64 images, exported from train mode with "
                "constant folding on",
        "build": _seeded(tm.TVEfficientNet, 22), "data": cnn64_data, "data_seed": 122,
        "forward": ["x"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 16, "microbatches": [1, 2, 4], "export_mode": "train",
        "export": {"training": torch.onnx.TrainingMode.PRESERVE},
        "configs": {"sgd_momentum": sgd(0.01, momentum=0.9)},
    },
    "cnn_train": {
        "what": "Conv(3->8)+BN+ReLU+MaxPool, Conv(8->16)+BN+ReLU+MaxPool, flatten, Linear 256->10",
        "build": _seeded(tm.SmallCNN, 13), "data": cnn_data, "data_seed": 113,
        "forward": ["x"], "outputs": ["logits"], "loss": "cross_entropy", "labels": "labels",
        "batch": 16, "microbatches": [1, 2, 4, 8],
        "export": {"training": torch.onnx.TrainingMode.PRESERVE},
        "configs": {
            "sgd_momentum": sgd(0.01, momentum=0.9),
            "sgd_momentum_clip": sgd(0.01, momentum=0.9, clip=4.5),
        },
    },
    "skip_conn": {
        "what": "PiPPy's test_skip_conn model (d_hid 64), MSE loss inside, 3 PipeSplit nodes -> 4 stages",
        "build": _seeded(tm.SkipConn, 14, d=64), "data": skip_data, "data_seed": 114,
        "forward": ["x", "y", "target"], "outputs": ["loss"], "loss": "in_model", "labels": None,
        "batch": 8, "microbatches": [1, 2, 4, 8],
        "configs": {
            "sgd_momentum": sgd(0.02, momentum=0.9),
            "sgd_clip": sgd(0.02, momentum=0.9, clip=0.4),
            "adamw": adamw(1e-3),
        },
    },
}


def load_data(spec):
    train, heldout = spec["data"](_gen(spec["data_seed"]))
    return train, heldout


def loss_of(spec, model, feeds):
    """One microbatch's mean loss (a 0-d tensor)."""
    if spec["loss"] == "in_model":
        return model(*[feeds[n] for n in spec["forward"]])
    out = model(*[feeds[n] for n in spec["forward"]])
    t = feeds[spec["labels"]]
    if spec["loss"] == "mse":
        return tm.mse_mean(out, t)
    return tm.cross_entropy_last_axis(out, t)


# ---------------------------------------------------------------- the update formulas

def clip_grads(params, max_norm):
    """torch.nn.utils.clip_grad_norm_: total = ||(||g_1||_2, ..., ||g_n||_2)||_2,
    g *= min(1, max_norm / (total + 1e-6)). Returns total (before clipping)."""
    norms = torch.stack([torch.linalg.vector_norm(p.grad, 2) for p in params])
    total = torch.linalg.vector_norm(norms, 2)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(coef)
    return float(total)


def sgd_step(p, st, o, lr, mutant):
    """torch.optim.SGD (foreach=False):
    g = grad + wd * p;  with momentum: b = g at the first step, else b = momentum * b + (1 - dampening) * g;
    g = g + momentum * b if nesterov else b;  p = p - lr * g."""
    g = p.grad
    if o["weight_decay"] and mutant != "no_weight_decay":
        g = g.add(p, alpha=o["weight_decay"])
    if o["momentum"]:
        b = st.get("b")
        if b is None:
            b = g.clone() if mutant != "first_momentum_dampened" else g.mul(1 - o["dampening"])
            st["b"] = b
        else:
            b.mul_(o["momentum"]).add_(g, alpha=1 - o["dampening"])
        if o["nesterov"] and mutant != "no_nesterov":
            g = g.add(b, alpha=o["momentum"])
        else:
            g = b
    p.add_(g, alpha=-lr)


def adamw_step(p, st, o, lr, mutant):
    """torch.optim.AdamW (foreach=False), step t = 1, 2, ...:
    p = p * (1 - lr * wd);  m = b1 * m + (1 - b1) * g;  v = b2 * v + (1 - b2) * g^2;
    p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    b1, b2 = o["betas"]
    wd, eps = o["weight_decay"], o["eps"]
    g = p.grad
    if not st:
        st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
    st["t"] += 1
    t, m, v = st["t"], st["m"], st["v"]
    if mutant == "l2_instead_of_decoupled":
        g = g.add(p, alpha=wd)
    elif mutant != "no_weight_decay":
        p.mul_(1 - lr * wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
    if mutant == "no_bias_correction":
        bc1 = bc2 = 1.0
    if mutant == "eps_inside_sqrt":
        denom = (v / bc2 + eps).sqrt()
    else:
        denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
    p.addcdiv_(m, denom, value=-lr / bc1)


class FormulaOptimizer:
    """The documented formulas, applied parameter by parameter (with an optional mutant)."""

    def __init__(self, params, cfg, mutant):
        self.params, self.o, self.mutant = params, cfg["optimizer"], mutant
        self.state = [dict() for _ in params]
        self.param_groups = [{"lr": self.o["lr"]}]

    @torch.no_grad()
    def step(self):
        fn = sgd_step if self.o["name"] == "sgd" else adamw_step
        for p, st in zip(self.params, self.state):
            fn(p, st, self.o, self.param_groups[0]["lr"], self.mutant)


def torch_optimizer(params, cfg):
    o = cfg["optimizer"]
    if o["name"] == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], dampening=o["dampening"],
                               nesterov=o["nesterov"], weight_decay=o["weight_decay"], foreach=False)
    return torch.optim.AdamW(params, lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                             weight_decay=o["weight_decay"], foreach=False)


# ---------------------------------------------------------------- training

def batch_rows(k, batch, n):
    """Rows of step k: [k*batch, (k+1)*batch) modulo the dataset size n."""
    return (np.arange(batch) + k * batch) % n


class BiasedRunningVar:
    """Mutant: running_var updated with the biased batch variance (torch uses the unbiased one). The
    correction is applied after backward (autograd checks that BN's saved running_var is unchanged)."""

    def __init__(self, model):
        self.pending = []

        def hook(mod, inp, out):
            if mod.training:
                x = inp[0].detach()
                n = x.numel() // x.shape[1]
                var_b = x.var(dim=[0, 2, 3], unbiased=False)
                self.pending.append((mod, mod.momentum * var_b / (n - 1)))
        self.handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def apply(self):
        with torch.no_grad():
            for mod, corr in self.pending:
                mod.running_var.sub_(corr)
        self.pending = []

    def remove(self):
        for h in self.handles:
            h.remove()


def train(spec, cfg, M, train_data, dtype=torch.float32, impl="torch", mutant=None):
    """Run STEPS steps; return (model, record) with per-step losses, learning rates, gradient norms."""
    model = spec["build"]().to(dtype)
    if mutant == "export_as_is":
        export_as_is(model, onnx.load(os.path.join(OUT, spec["name"] + ".onnx")))
    if mutant == "no_padding_idx":  # what training the file without --padding-idx computes
        for m in model.modules():
            if isinstance(m, nn.Embedding):
                m.padding_idx = None
    model.train()
    params = list(model.parameters())  # a tied parameter appears once
    data = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in train_data.items()}
    n = next(iter(data.values())).shape[0]
    batch = spec["batch"]
    opt = torch_optimizer(params, cfg) if impl == "torch" else FormulaOptimizer(params, cfg, mutant)
    biased = BiasedRunningVar(model) if mutant == "bn_running_var_biased" else None
    rec = {"losses": [], "lr": [], "grad_norm": []}
    mb = batch // M
    for k in range(STEPS):
        rows = torch.from_numpy(batch_rows(k, batch, n))
        for p in params:
            p.grad = None
        mlosses = []
        for j in range(M):
            sel = rows[j * mb:(j + 1) * mb]
            loss = loss_of(spec, model, {name: t[sel] for name, t in data.items()})
            (loss if mutant == "loss_not_divided_by_M" else loss / M).backward()
            if biased:
                biased.apply()
            mlosses.append(float(loss))
        rec["losses"].append(math.fsum(mlosses) / M)
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
        rec["grad_norm"].append(norm)
        if cfg["clip_grad_norm"] is not None and mutant != "no_clip":
            if impl == "torch":
                torch.nn.utils.clip_grad_norm_(params, cfg["clip_grad_norm"])
            else:
                clip_grads(params, cfg["clip_grad_norm"])
        lr = lr_at(cfg, k)
        if mutant == "warmup_from_zero" and cfg["lr_schedule"] and k < cfg["lr_schedule"]["warmup_steps"]:
            lr = cfg["optimizer"]["lr"] * k / cfg["lr_schedule"]["warmup_steps"]
        for gr in opt.param_groups:
            gr["lr"] = lr
        rec["lr"].append(lr)
        opt.step()
    if biased:
        biased.remove()
    model.eval()
    return model, rec


def heldout_outputs(spec, model, heldout):
    dtype = next(model.parameters()).dtype
    feeds = [heldout[n].to(dtype) if heldout[n].is_floating_point() else heldout[n] for n in spec["forward"]]
    with torch.no_grad():
        out = model(*feeds)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return {name: o.to(torch.float32).numpy() for name, o in zip(spec["outputs"], outs)}


def rel_losses(a, b):
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def rel_out(a, b):
    """max |a - b| / max |b| over every output tensor."""
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) / max(float(np.max(np.abs(b[k]))), 1e-30)
               for k in b)


def param_stats(model, names, onnx_names=None):
    """Sum, L1 and L2 of each named parameter, keyed by its initializer's name in the export
    (onnx_names: torch name -> the folded transpose's name; the three are the same for a transpose)."""
    sd = dict(model.named_parameters(remove_duplicate=False))  # a shared one under each of its names
    sd.update(dict(model.named_buffers()))
    out = {}
    for name in names:
        t = sd[name].detach().to(torch.float64)
        out[(onnx_names or {}).get(name, name)] = {"sum": float(t.sum()), "l1": float(t.abs().sum()),
                                                   "l2": float(t.norm())}
    return out


def folded_transposes(model, m):
    """torch name -> the name a MatMul reads that parameter's transpose under (constant folding of a
    Linear applied to a 3-D input stores it as "onnx::MatMul_N", or an Identity of one when layers start
    equal), for the parameters the file has under no name of their own. Matched by the MatMul's scope
    (its module) and checked by value: a tied head's transpose is a copy, its embedding keeps its name."""
    from onnx import numpy_helper
    names = {i.name for i in m.graph.initializer}
    data = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    for n in m.graph.node:  # an Identity's output holds its input's values
        if n.op_type == "Identity" and n.input[0] in data:
            data[n.output[0]] = data[n.input[0]]
    modules = dict(model.named_modules())
    out = {}
    for n in m.graph.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or not n.input[1].startswith("onnx::") or n.input[1] not in data:
            continue
        parts = []  # the scope's modules; a Sequential's child is written "parent.child"
        for c in n.name.rsplit("/", 1)[0].strip("/").split("/"):
            parts.append(c[len(parts[-1]) + 1:] if parts and c.startswith(parts[-1] + ".") else c)
        scope = ".".join(parts)
        a = data[n.input[1]]
        for pname, p in (modules[scope].named_parameters(recurse=False) if scope in modules else []):
            full, v = scope + "." + pname, p.detach().numpy()
            if full not in names and v.ndim == 2 and a.shape == v.T.shape and np.array_equal(a, v.T):
                out[full] = n.input[1]
    return out


def export_as_is(model, m):
    """The model as its export reads when taken literally, which is what a compiler training the file
    without undoing the exporter's folding trains: every parameter stored as an Identity of an equal
    one shares that one, and the tied head, whose transpose the exporter folded into an initializer
    of its own, gets a parameter of its own (starting from the same values)."""
    inits = {i.name for i in m.graph.initializer}
    params = dict(model.named_parameters())
    for n in m.graph.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] in params:
            owner, _, leaf = n.output[0].rpartition(".")
            setattr(model.get_submodule(owner), leaf, params[n.input[0]])
    head = model.model.lm_head
    head.weight = nn.Parameter(head.weight.detach().clone())


def mutants_of(spec, cfg):
    o = cfg["optimizer"]
    mut = ["export_as_is"] if spec.get("identity_params") and spec["name"] == "gpt2_hf_train" else []
    if "--padding-idx" in spec.get("extra_flags", []):
        mut.append("no_padding_idx")
    if max(spec["microbatches"]) > 1:
        mut.append("loss_not_divided_by_M")
    if o["name"] == "sgd":
        if o["weight_decay"]:
            mut.append("no_weight_decay")
        if o["dampening"]:
            mut.append("first_momentum_dampened")
        if o["nesterov"]:
            mut.append("no_nesterov")
    else:
        mut += ["no_bias_correction", "l2_instead_of_decoupled", "eps_inside_sqrt", "no_weight_decay"]
    if cfg["clip_grad_norm"] is not None:
        mut.append("no_clip")
    if cfg["lr_schedule"] is not None:
        mut.append("warmup_from_zero")
    if any(isinstance(m, nn.BatchNorm2d) for m in spec["build"]().modules()):
        mut.append("bn_running_var_biased")
    return mut


def run_config(spec, cname, cfg, train_data, heldout, folder, param_names):
    """Train one configuration at every M; write the held-out outputs; return its ref.json entry."""
    Ms = spec["microbatches"]
    entry = {**copy.deepcopy(cfg), "flags": flags_of(cfg), "tolerance": tolerance_of(cfg), "runs": {}}
    outs, recs, f64 = {}, {}, {}
    worst_formula = 0.0
    for M in Ms:
        model, rec = train(spec, cfg, M, train_data)
        outs[M] = heldout_outputs(spec, model, heldout)
        recs[M] = rec
        files = {}
        for oname, arr in outs[M].items():
            fname = "out_%s_M%d.npy" % (cname, M)
            np.save(os.path.join(folder, fname), arr)
            files[oname] = fname
        run = {"losses": rec["losses"], "lr": rec["lr"], "grad_norm": rec["grad_norm"],
               "heldout_outputs": files, "params": param_stats(model, param_names, spec.get("stat_names"))}
        bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
        if bns:
            run["bn_running_stats"] = {n + "." + k: [float(v) for v in getattr(m, k)]
                                       for n, m in bns.items() for k in ("running_mean", "running_var")}
        entry["runs"][str(M)] = run
        # the documented formulas against torch.optim, float32
        fm, frec = train(spec, cfg, M, train_data, impl="formulas")
        d = rel_losses(frec["losses"], rec["losses"])
        assert d < 1e-5, "%s %s M=%d: formulas vs torch.optim differ by %.2e" % (spec["name"], cname, M, d)
        worst_formula = max(worst_formula, d, rel_out(heldout_outputs(spec, fm, heldout), outs[M]))
        # the same training in float64
        m64, r64 = train(spec, cfg, M, train_data, dtype=torch.float64)
        f64[M] = (r64["losses"], heldout_outputs(spec, m64, heldout))
        # how far float32 rounding alone moves each trained parameter (AdamW turns a gradient that is
        # zero in exact arithmetic, BERT's key biases, into steps of rounding noise)
        p64 = param_stats(m64, param_names, spec.get("stat_names"))
        for k, st in run["params"].items():
            st["f32_vs_f64"] = max(abs(st["l2"] - p64[k]["l2"]) / max(p64[k]["l2"], 1e-30),
                                   abs(st["sum"] - p64[k]["sum"]) / max(p64[k]["l1"], 1e-30))

    base = recs[Ms[0]]["losses"]
    steps_change = [abs(base[k + 1] - base[k]) / base[k] for k in range(STEPS - 1)]
    entry["checks"] = {
        "spread_across_M_losses": max(rel_losses(recs[M]["losses"], base) for M in Ms),
        "spread_across_M_heldout": max(rel_out(outs[M], outs[Ms[0]]) for M in Ms),
        "float32_vs_float64_losses": max(rel_losses(recs[M]["losses"], f64[M][0]) for M in Ms),
        "float32_vs_float64_heldout": max(rel_out(outs[M], f64[M][1]) for M in Ms),
        "formulas_vs_torch_optim": worst_formula,
        "smallest_step_to_step_loss_change": min(steps_change),
        "clipped_steps": (sum(1 for g in recs[Ms[0]]["grad_norm"] if g > cfg["clip_grad_norm"])
                          if cfg["clip_grad_norm"] is not None else None),
    }
    # sensitivity: how far plausible bugs land (at the largest M, where the M-related ones show)
    Mx = Ms[-1]
    entry["mutants"] = {}
    for mut in mutants_of(spec, cfg):
        mm, mrec = train(spec, cfg, Mx, train_data, impl="formulas", mutant=mut)
        pst, rst = param_stats(mm, param_names, spec.get("stat_names")), entry["runs"][str(Mx)]["params"]
        entry["mutants"][mut] = {"M": Mx, "losses_rel": rel_losses(mrec["losses"], recs[Mx]["losses"]),
                                 "heldout_rel": rel_out(heldout_outputs(spec, mm, heldout), outs[Mx]),
                                 "params_rel": max(max(abs(pst[k]["l2"] - v["l2"]) / v["l2"],
                                                       abs(pst[k]["sum"] - v["sum"]) / v["l1"])
                                                   for k, v in rst.items())}
    return entry


# ---------------------------------------------------------------- export

def export_onnx(spec, model, ex, path, kw):
    """The TorchScript exporter through tools/pippy_torch (opset 17), or with spec "dynamo" torch.onnx.export's
    default dynamo exporter as a user calls it to train: a "batch" Dim on dim 0 of every input, optimize=False
    (with the optimizer on, parameters are folded and pippyc refuses to train the file), weights inline."""
    if not spec.get("dynamo"):
        pippy_torch.export(model, ex, path, spec["forward"], spec["outputs"], opset=OPSET, **kw)
        return
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, ex, path, input_names=spec["forward"], output_names=spec["outputs"], dynamo=True,
                      optimize=False, external_data=False, dynamic_shapes=tuple({0: batch} for _ in ex),
                      verbose=False)


def tied_names(model, m):
    """torch name -> the name the file stores a tied parameter under, where that is another of its names
    (named_parameters() lists a shared parameter once; the dynamo exporter may keep the other name)."""
    inits = {i.name for i in m.graph.initializer}
    alias = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        alias.setdefault(id(p), []).append(name)
    out = {}
    for name, _ in model.named_parameters():
        if name not in inits:
            other = [a for a in alias[id(dict(model.named_parameters(remove_duplicate=False))[name])] if a in inits]
            if other:
                out[name] = other[0]
    return out


def export_model(spec, name, path):
    model = spec["build"]()
    model.train(spec.get("export_mode") == "train")
    train_data, _ = load_data(spec)
    ex = tuple(train_data[n][:2] for n in spec["forward"])
    kw = dict(spec.get("export", {}))
    if spec["loss"] == "in_model":  # a scalar output has no batch axis
        kw["dynamic_axes"] = {n: {0: "batch"} for n in spec["forward"]}
    with torch.no_grad():
        export_onnx(spec, model, ex, path, kw)
    m = onnx.load(path)
    pippy_torch.drop_unused_pippy_opset(m)
    if spec.get("export_mode") == "train":
        # tracing ran one forward in train mode, which moved the BatchNorm running statistics; the file
        # gets the values PyTorch trains from (the model as built)
        fresh = dict(spec["build"]().named_buffers())
        for init in m.graph.initializer:
            if init.name in fresh:
                init.CopyFrom(onnx.numpy_helper.from_array(fresh[init.name].numpy(), init.name))
    m.producer_name = "pippyc samples/make_train_refs.py (torch %s)" % torch.__version__.split("+")[0]
    onnx.save(m, path)
    onnx.checker.check_model(path, full_check=False)
    return m


def share_external_data(paths, location):
    """Move every initializer of >= 1 KiB of the first model into the external file `location` (beside
    the models, 64-byte aligned) and point every model at it; the other models must hold byte-identical
    initializers under the same names."""
    folder = os.path.dirname(paths[0])
    models = [onnx.load(p) for p in paths]
    table, blob = {}, bytearray()
    for init in models[0].graph.initializer:
        if len(init.raw_data) >= 1024:
            blob.extend(b"\0" * (-len(blob) % 64))
            table[init.name] = (len(blob), init.raw_data)
            blob.extend(init.raw_data)
    for m in models:
        for init in m.graph.initializer:
            if init.name not in table:
                continue
            off, raw = table[init.name]
            assert init.raw_data == raw, "initializer %s differs between the models" % init.name
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            del init.external_data[:]
            for k, v in (("location", location), ("offset", str(off)), ("length", str(len(raw)))):
                e = init.external_data.add()
                e.key, e.value = k, v
    assert len(table) == sum(1 for i in models[0].graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL)
    write_atomic(os.path.join(folder, location), bytes(blob))
    for m, p in zip(models, paths):
        write_atomic(p, m.SerializeToString())
        onnx.checker.check_model(p, full_check=False)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def op_counts(m):
    c = Counter((n.op_type if n.domain in ("", "ai.onnx") else n.domain + "::" + n.op_type) for n in m.graph.node)
    return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def export_notes(m):
    """Facts about the exported graph that a training implementation has to know."""
    inits = {i.name for i in m.graph.initializer}
    notes = {}
    users = {}
    for n in m.graph.node:
        for i in n.input:
            if i in inits:
                users.setdefault(i, []).append("%s(%s)" % (n.op_type, n.name))
    notes["initializers_read_by_several_nodes"] = {k: v for k, v in users.items() if len(v) > 1}
    notes["identity_on_initializer"] = ["%s = Identity(%s)" % (n.output[0], n.input[0])
                                        for n in m.graph.node if n.op_type == "Identity" and n.input[0] in inits]
    loss = [n for n in m.graph.node if n.op_type == "SoftmaxCrossEntropyLoss"]
    if loss:
        n = loss[0]
        notes["softmax_cross_entropy_loss"] = {
            "inputs": list(n.input), "outputs": list(n.output),
            "attributes": {a.name: onnx.helper.get_attribute_value(a) if a.type != onnx.AttributeProto.STRING
                           else onnx.helper.get_attribute_value(a).decode() for a in n.attribute}}
    bn = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        notes["batchnorm_attributes"] = {a.name: onnx.helper.get_attribute_value(a) for a in bn[0].attribute}
    return notes


# ---------------------------------------------------------------- one model

def make_model(name):
    spec = dict(SPECS[name], name=name)
    torch.set_num_threads(1)
    folder = os.path.join(OUT, name + ".train")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    path = os.path.join(OUT, name + ".onnx")
    m = export_model(spec, name, path)
    model = spec["build"]()
    inits = [i.name for i in m.graph.initializer]
    pnames = [n for n, _ in model.named_parameters()]
    # an exporter that stores equal-valued parameters once names the others as Identity outputs
    # and folding stores a Linear's weight transposed, as onnx::MatMul_N (ref.json names it so)
    aliases = {n.output[0] for n in m.graph.node if n.op_type == "Identity" and n.input[0] in inits}
    spec["onnx_names"] = folded_transposes(model, m) if spec.get("identity_params") else {}
    renamed = tied_names(model, m)
    spec["stat_names"] = dict(spec["onnx_names"], **renamed)
    missing = [n for n in pnames if n not in inits and not (spec.get("identity_params") and n in aliases) and
               n not in spec["onnx_names"] and n not in renamed]
    assert not missing, "%s: parameters without an initializer of the same name: %s" % (name, missing)
    bnames = [n for n, b in model.named_buffers() if n in inits and b.is_floating_point()]

    train_data, heldout = load_data(spec)
    ref = {
        "model": name + ".onnx", "what": spec["what"],
        "inputs": spec["forward"], "outputs": spec["outputs"],
        "loss": spec["loss"], "labels": spec["labels"],
        "loss_flags": (["--train", "--loss", spec["loss"], "--labels", spec["labels"]]
                       if spec["loss"] != "in_model" else ["--train"]) + spec.get("extra_flags", []),
        "batch": spec["batch"], "dataset_size": int(next(iter(train_data.values())).shape[0]),
        "steps": STEPS, "microbatches": spec["microbatches"],
        "data": {}, "heldout": {},
        "parameters": {spec["onnx_names"].get(n, renamed.get(n, n)): list(p.shape)[::-1 if n in spec["onnx_names"]
                                                                                 else 1]
                       for n, p in model.named_parameters()},
        "buffers": {n: list(dict(model.named_buffers())[n].shape) for n in bnames},
        "other_initializers": [n for n in inits if n not in pnames and n not in bnames],
    }
    for k, v in train_data.items():
        ref["data"][k] = "data_%s.npy" % k
        np.save(os.path.join(folder, ref["data"][k]), v.numpy())
    for k, v in heldout.items():
        ref["heldout"][k] = "heldout_%s.npy" % k
        np.save(os.path.join(folder, ref["heldout"][k]), v.numpy())
    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    ref["export"] = {"opset": opset, "node_count": len(m.graph.node), "op_counts": op_counts(m),
                     "initializers": len(m.graph.initializer), **export_notes(m),
                     "export_kwargs": {k: str(v) for k, v in spec.get("export", {}).items()}}
    ref["configs"] = {}
    for cname, cfg in spec["configs"].items():
        ref["configs"][cname] = run_config(spec, cname, cfg, train_data, heldout, folder, pnames + bnames)
    with open(os.path.join(folder, "ref.json.tmp"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(folder, "ref.json.tmp"), os.path.join(folder, "ref.json"))
    self_check(spec, name, ref, train_data)
    return ref


def self_check(spec, name, ref, train_data):
    """The committed files against each other, through test/e2e/trainref.py (what CI can run):
    ONNX Runtime's step-0 loss of the exported model equals the reference's, and a trained model
    re-exported from torch passes trainref's --save check."""
    r = trainref.load_ref(name)
    ok, text = trainref.check_initial_loss(r)
    print(text)
    assert ok, name
    cname = next(iter(spec["configs"]))
    M = spec["microbatches"][-1]
    model, _ = train(spec, spec["configs"][cname], M, train_data)
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "trained.onnx")
        kw = dict(spec.get("export", {}))
        if spec["loss"] == "in_model":
            kw["dynamic_axes"] = {n: {0: "batch"} for n in spec["forward"]}
        ex = tuple(train_data[n][:2] for n in spec["forward"])
        with torch.no_grad():
            export_onnx(spec, model, ex, p, kw)
        ok, text = trainref.check_saved_model(p, r, cname, M)
        print(text)
        assert ok, name
        if folded_transposes(model, onnx.load(p)) != spec["onnx_names"]:
            # the re-export numbers its folded weights otherwise (the layers are no longer equal, so
            # nothing is stored once): by name the parameters cannot be compared; the outputs were
            print("note %s: the re-export names its folded weights otherwise; parameters checked through "
                  "the outputs only" % name)
            return
        ok, text = trainref.check_saved_params(p, r, cname, M)
        print(text)
        assert ok, name


# ---------------------------------------------------------------- bench-size models

BENCH_GPT = tm.BENCH_GPT


def bench_gpt():
    torch.manual_seed(21)
    return tm.GPT(**BENCH_GPT)


def bench_mlp():
    torch.manual_seed(11)
    return tm.MyNetwork()


def export_bench_models(folder):
    """Export the bench-size models into `folder` (made on demand, not committed): mlp_train_bench is
    mlp_train itself (same seed, 4.2 MB), gpt_train_bench the BENCH_GPT of trainmodels.py (2.0 MB)."""
    os.makedirs(folder, exist_ok=True)
    out = {}
    for name, build, ex, ins, outs, kw in (
            ("mlp_train_bench", bench_mlp, (torch.randn(2, 512),), ["x"], ["y"], {}),
            ("gpt_train_bench", bench_gpt, (torch.randint(0, BENCH_GPT["vocab"], (2, BENCH_GPT["block"])),),
             ["idx"], ["logits"], {"do_constant_folding": False})):
        path = os.path.join(folder, name + ".onnx")
        with torch.no_grad():
            pippy_torch.export(build().eval(), ex, path, ins, outs, opset=OPSET, **kw)
        out[name] = path
    return out


# ---------------------------------------------------------------- main

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="models to make (default: all)")
    ap.add_argument("--bench-models", metavar="DIR", help="only export the bench-size models to DIR")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.bench_models:
        for name, path in export_bench_models(a.bench_models).items():
            print("%s: %s (%d bytes)" % (name, path, os.path.getsize(path)))
        return
    names = a.names or list(SPECS)
    bad = [n for n in names if n not in SPECS]
    if bad:
        sys.exit("make_train_refs: unknown model %s (known: %s)" % (", ".join(bad), ", ".join(SPECS)))
    pair = ["mlp_train", "mlp_train_loss"]  # they share one weights file: always made together
    if any(n in names for n in pair):
        names = [n for n in names if n not in pair] + pair
    for name in names:
        ref = make_model(name)
        for cname, c in ref["configs"].items():
            ch = c["checks"]
            print("%-15s %-18s spread(M) %.1e/%.1e  f32-f64 %.1e/%.1e  formulas %.1e  min step change %.1e  "
                  "losses %.5f -> %.5f" % (
                      name, cname, ch["spread_across_M_losses"], ch["spread_across_M_heldout"],
                      ch["float32_vs_float64_losses"], ch["float32_vs_float64_heldout"],
                      ch["formulas_vs_torch_optim"], ch["smallest_step_to_step_loss_change"],
                      c["runs"]["1"]["losses"][0], c["runs"]["1"]["losses"][-1]))
            print("%34s mutants (losses/heldout/params): %s" % ("", ", ".join(
                "%s %.0e/%.0e/%.0e" % (k, v["losses_rel"], v["heldout_rel"], v["params_rel"])
                for k, v in c["mutants"].items())))
    if "mlp_train" in names or "mlp_train_loss" in names:
        share_external_data([os.path.join(OUT, "mlp_train.onnx"), os.path.join(OUT, "mlp_train_loss.onnx")],
                            SHARED_WEIGHTS)
        with open(os.path.join(OUT, SHARED_WEIGHTS), "rb") as f:
            exported = f.read()
        mlp_train_weights.write(os.path.join(OUT, SHARED_WEIGHTS + ".check"))  # what CI will make
        with open(os.path.join(OUT, SHARED_WEIGHTS + ".check"), "rb") as f:
            assert f.read() == exported, "samples/mlp_train_weights.py does not make the exported weights"
        os.unlink(os.path.join(OUT, SHARED_WEIGHTS + ".check"))


if __name__ == "__main__":
    main(sys.argv[1:])
