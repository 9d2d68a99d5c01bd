#!/usr/bin/env python3
"""Make the real-model exports in samples/real/ (needs torch, torchvision, transformers and, for the
*_dynamo families, onnxscript; CI uses the committed files and needs none of them).

    python3 samples/make_real_models.py              # every family
    python3 samples/make_real_models.py gpt2 vit     # only those

Each family is built the way a new user would build it: from a torchvision constructor or a Hugging Face
`transformers` config (never a hub download), with random weights from a fixed seed and tiny sizes (2 layers,
width 32, vocabulary 128, 32x32 images) so that each file stays well under 1 MB. It is then exported with
torch.onnx.export(dynamo=False, opset_version=17) twice:

    <name>.onnx          dim 0 of every input and output symbolic ("batch": dynamic_axes)
    <name>_static.onnx   the example batch (4) baked in, as an export without dynamic_axes gives

The <name>_dynamo families are the same models (same seed, weights and data) exported by torch.onnx.export's
default exporter (dynamo=True, torch.export based, its own opset; optimize left on; dynamic_shapes with a "batch"
Dim for the dynamic file, none for the static one), weights inline.

<name>.data/ gets the reference: input_K.pb (batch 4; token ids uniform in [0, vocabulary), attention
masks with trailing padding on two rows, images standard normal) and output_K.pb from ONNX Runtime
(CPUExecutionProvider, one thread, graph optimizations off). Both exports have the same weights, so they
share the reference. samples/real/models.json records, per family: how it was made and exported, the
inputs and outputs, parameter count, file sizes, op counts, the max |ONNX Runtime - torch| difference and
float32_max_abs_error, the max |torch in float32 - torch in float64| (how much float32 rounding alone moves
this model's output; test/e2e/test_models.py scales its tolerance by it).

Export details that matter:
  * Hugging Face models are wrapped in a module taking (input_ids, attention_mask) positionally and
    returning logits or last_hidden_state, with use_cache=False (the exporter cannot return a cache).
    Passing attention_mask also keeps transformers from tracing its packed-sequence check (torch.diff,
    which the exporter does not know).
  * torch.backends.mha.set_fastpath_enabled(False): otherwise nn.TransformerEncoder and torchvision's ViT
    trace their fused inference kernels, which the exporter cannot export either.
  * The vision models' BatchNorm statistics come from a few training-mode passes over random images (with
    torchvision's initial statistics most activations vanish and the outputs are ~1e-10), and ViT's head
    (zero at init in torchvision) gets random weights, so that every output is O(1).
  * gpt2_nofold is gpt2 exported with do_constant_folding=False: the exporter then leaves the attention
    scale as Sqrt of a double computed from the input's shape, a constant path pippyc must fold.
"""

import copy
import json
import os
import sys
import warnings
import zlib
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "real")
BATCH = 4
SEQ = 16
VOCAB = 128
IMAGE = 32
OPSET = 17

warnings.filterwarnings("ignore")


# ---------------------------------------------------------------- families

class HFWrapper(nn.Module):
    """(input_ids, attention_mask) -> logits or last_hidden_state of a transformers model."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out.last_hidden_state


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, use_cache=False,
                     bos_token_id=0, eos_token_id=0)
    m = GPT2LMHeadModel(cfg)
    assert m.lm_head.weight is m.transformer.wte.weight  # the head is tied to the token embedding
    return HFWrapper(m)


def bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return HFWrapper(BertModel(cfg, add_pooling_layer=False))


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False,
                      bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return HFWrapper(LlamaForCausalLM(cfg))


def t5_encoder():
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, use_cache=False)
    return HFWrapper(T5EncoderModel(cfg))


def vit():
    from torchvision.models import VisionTransformer
    m = VisionTransformer(image_size=IMAGE, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                          num_classes=10)
    nn.init.normal_(m.heads.head.weight, std=0.2)  # torchvision starts the head at zero
    nn.init.normal_(m.heads.head.bias, std=0.2)
    return m


def transformer_encoder():
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def mobilenet_v3():
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
    setting, _ = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
    m = MobileNetV3(setting, last_channel=128, num_classes=10)
    for fc in m.classifier:  # torchvision draws them with std 0.01: the outputs would be ~1e-5
        if isinstance(fc, nn.Linear):
            nn.init.normal_(fc.weight, std=fc.in_features ** -0.5)
    return with_bn_statistics(m)


def resnet50():
    """torchvision's ResNet-50 layout (Bottleneck x [3, 4, 6, 3]) at 1/16 width (planes 4, 8, 16, 32)."""
    from torchvision.models.resnet import Bottleneck, ResNet

    class NarrowResNet(ResNet):
        def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
            if planes == 64:  # the first layer: the stem (built with 64 channels) narrows too
                self.inplanes = 4
            return super()._make_layer(block, planes // 16, blocks, stride, dilate)

    m = NarrowResNet(Bottleneck, [3, 4, 6, 3], num_classes=10)
    m.conv1 = nn.Conv2d(3, 4, kernel_size=7, stride=2, padding=3, bias=False)
    m.bn1 = nn.BatchNorm2d(4)
    m.fc = nn.Linear(32 * Bottleneck.expansion, 10)
    return with_bn_statistics(m)


def efficientnet_b0():
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
    setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.1, depth_mult=1.0)
    return with_bn_statistics(EfficientNet(setting, dropout=0.2, last_channel=last, num_classes=10))


def with_bn_statistics(m):
    """Running BatchNorm statistics from a few training-mode passes over random images."""
    g = torch.Generator().manual_seed(7)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.momentum = None  # a plain average over the passes (MobileNetV3's 0.01 would barely move)
            bn.reset_running_stats()
    m.train()
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(8, 3, IMAGE, IMAGE, generator=g))
    return m


TOKENS = ["input_ids", "attention_mask"]
# name -> (builder, input names, output name, export keyword arguments, what it is)
FAMILIES = {
    "gpt2": (gpt2, TOKENS, "logits", {}, "transformers GPT2LMHeadModel (lm_head tied to wte), 2 layers, n_embd 32"),
    "gpt2_nofold": (gpt2, TOKENS, "logits", {"do_constant_folding": False},
                    "gpt2 exported with do_constant_folding=False (double Sqrt on a shape-derived constant path)"),
    "bert": (bert, TOKENS, "last_hidden_state", {}, "transformers BertModel, 2 layers, hidden 32"),
    "llama": (llama, TOKENS, "logits", {},
              "transformers LlamaForCausalLM, 2 layers, hidden 32, 4 heads / 2 KV heads (rotary embedding)"),
    "t5_encoder": (t5_encoder, TOKENS, "last_hidden_state", {}, "transformers T5EncoderModel, 2 layers, d_model 32"),
    "vit": (vit, ["x"], "y", {}, "torchvision VisionTransformer, 32x32 images, patch 8, 2 layers, hidden 32"),
    "transformer_encoder": (transformer_encoder, ["x"], "y", {},
                            "torch.nn.TransformerEncoder (batch_first), 2 layers, d_model 32, 4 heads"),
    "mobilenet_v3": (mobilenet_v3, ["x"], "y", {}, "torchvision MobileNetV3-Small, width 0.25, 32x32 images"),
    "resnet50": (resnet50, ["x"], "y", {}, "torchvision ResNet-50 layout (Bottleneck [3,4,6,3]) at 1/16 width"),
    "efficientnet_b0": (efficientnet_b0, ["x"], "y", {}, "torchvision EfficientNet-B0 blocks at width 0.1, 32x32 images"),
}
# The same families through torch.onnx.export's default exporter (dynamo=True, torch.export based): the
# same weights and data, another graph (its own opset and op choices, e.g. GatherND for the padding mask).
FAMILIES.update({name + "_dynamo": (f[0], f[1], f[2], dict(f[3], dynamo=True), f[4] + "; exported with dynamo=True")
                 for name, f in list(FAMILIES.items()) if name not in ("gpt2_nofold", "t5_encoder")})
# (t5_encoder: torch 2.15's exporter stops in T5's attention, "Cannot view a tensor with shape [s, 16, 4, 8]
# and strides (512, 8, 128, 1) as a tensor with shape (s, 16, 32)": no file to test)


# ---------------------------------------------------------------- inputs, export, reference

def base_name(name):
    """The family a variant exports (gpt2 for gpt2_nofold and gpt2_dynamo): same weights, same data."""
    for suffix in ("_nofold", "_dynamo"):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def make_inputs(name, in_names):
    rng = np.random.default_rng(zlib.crc32(base_name(name).encode()))
    feeds = {}
    for n in in_names:
        if n == "input_ids":
            feeds[n] = rng.integers(0, VOCAB, size=(BATCH, SEQ)).astype(np.int64)
        elif n == "attention_mask":
            mask = np.ones((BATCH, SEQ), np.int64)
            mask[1, -3:] = 0  # trailing padding on two rows
            mask[3, -6:] = 0
            feeds[n] = mask
        elif base_name(name) == "transformer_encoder":
            feeds[n] = rng.standard_normal((BATCH, SEQ, 32)).astype(np.float32)
        else:
            feeds[n] = rng.standard_normal((BATCH, 3, IMAGE, IMAGE)).astype(np.float32)
    return feeds


def export(model, feeds, in_names, out_name, path, dynamic, kw):
    args = tuple(torch.from_numpy(feeds[n]) for n in in_names)
    kw = dict(kw)
    if kw.pop("dynamo", False):
        # torch.onnx.export's default exporter (torch.export based; its own opset), weights inline
        shapes = tuple({0: torch.export.Dim("batch", min=1, max=1024)} for _ in in_names) if dynamic else None
        torch.onnx.export(model, args, path, input_names=in_names, output_names=[out_name], dynamic_shapes=shapes,
                          dynamo=True, external_data=False, verbose=False, **kw)
    else:
        axes = {n: {0: "batch"} for n in in_names + [out_name]} if dynamic else None
        torch.onnx.export(model, args, path, input_names=in_names, output_names=[out_name], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, **kw)
    m = onnx.load(path)
    m.producer_name = "pippyc samples/make_real_models.py (torch %s)" % torch.__version__.split("+")[0]
    onnx.save(m, path)
    onnx.checker.check_model(path)
    return m


def ort_run(path, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def write_data(d, in_names, feeds, out_name, out):
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith(".pb"):
            os.remove(os.path.join(d, f))
    for k, n in enumerate(in_names):
        with open(os.path.join(d, "input_%d.pb" % k), "wb") as f:
            f.write(numpy_helper.from_array(feeds[n], n).SerializeToString())
    with open(os.path.join(d, "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(out, out_name).SerializeToString())


def build(name):
    builder, in_names, out_name, kw, what = FAMILIES[name]
    torch.manual_seed(zlib.crc32(base_name(name).encode()))
    model = builder().eval()
    feeds = make_inputs(name, in_names)
    with torch.no_grad():
        want = model(*(torch.from_numpy(feeds[n]) for n in in_names)).numpy()
        # how far float32 itself is from the exact result on this model: the scale of the differences
        # any correct float32 implementation shows (the deep, narrow CNNs amplify rounding)
        exact = copy.deepcopy(model).double()(*(torch.from_numpy(feeds[n]).to(
            torch.float64 if feeds[n].dtype == np.float32 else torch.int64) for n in in_names)).numpy()
    info = {"what": what, "inputs": in_names, "outputs": [out_name], "batch": BATCH,
            "parameters": sum(p.numel() for p in model.parameters()),
            "export": dict(kw) if kw.get("dynamo") else dict(kw, opset_version=OPSET, dynamo=False)}
    outs = {}
    for variant, dynamic in (("", True), ("_static", False)):
        path = os.path.join(OUT, name + variant + ".onnx")
        m = export(model, feeds, in_names, out_name, path, dynamic, kw)
        (got,) = ort_run(path, feeds)
        outs[variant] = got
        info["file_bytes" + variant] = os.path.getsize(path)
        if dynamic:
            info["op_counts"] = dict(sorted(Counter(n.op_type for n in m.graph.node).items()))
            info["ort_max_abs_diff_vs_torch"] = float(np.max(np.abs(got - want)))
            info["float32_max_abs_error"] = float(np.max(np.abs(want - exact)))
    assert np.array_equal(outs[""], outs["_static"]), name
    info["output_shape"] = list(outs[""].shape)
    info["output_max_abs"] = float(np.max(np.abs(outs[""])))
    write_data(os.path.join(OUT, name + ".data"), in_names, feeds, out_name, outs[""])
    return info


def main(argv):
    torch.backends.mha.set_fastpath_enabled(False)
    names = argv or list(FAMILIES)
    for n in names:
        if n not in FAMILIES:
            raise SystemExit("unknown family %r (known: %s)" % (n, ", ".join(FAMILIES)))
    os.makedirs(OUT, exist_ok=True)
    manifest_path = os.path.join(OUT, "models.json")
    manifest = json.load(open(manifest_path)) if os.path.exists(manifest_path) else {}
    for n in names:
        info = build(n)
        manifest[n] = info
        print("%-20s %7d params %7d + %7d bytes  out %s max|y| %.3g  ort-vs-torch %.2e  f32-vs-f64 %.2e" % (
            n, info["parameters"], info["file_bytes"], info["file_bytes_static"], info["output_shape"],
            info["output_max_abs"], info["ort_max_abs_diff_vs_torch"], info["float32_max_abs_error"]))
    manifest = {k: manifest[k] for k in FAMILIES if k in manifest}
    manifest["_versions"] = {"torch": torch.__version__.split("+")[0], "onnx": onnx.__version__,
                             "onnxruntime": ort.__version__, **versions()}
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, manifest_path)


def versions():
    out = {}
    for mod in ("torchvision", "transformers"):
        try:
            out[mod] = __import__(mod).__version__.split("+")[0]
        except ImportError:
            pass
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
