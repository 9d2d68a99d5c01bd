"""PyTorch definitions of the training sample models (needs torch).

Shared by samples/make_train_refs.py (which exports them and writes the PyTorch training references)
and bench/torch_train.py (which times PyTorch training on the same models). Nothing here runs in CI.

  MyNetwork      PiPPy's seed example (examples/basic): Linear+ReLU blocks 512 -> 512 -> 1024 -> 256,
                 then an output Linear to 10
  GPT            nanoGPT layout: token + position embedding, pre-LN blocks (causal self-attention,
                 GELU MLP), final LayerNorm, lm head tied to the token embedding as a 3-D nn.Linear
  SmallCNN       Conv+BN+ReLU+MaxPool twice, flatten, Linear
  SkipConn       the model of PiPPy's test/test_skip_conn.py (x and y in, parameters used in several
                 stages, a skip connection from stage 0 to stage 3, three pipe_split() markers)
  HFGPT2         transformers' GPT2LMHeadModel (lm_head tied to wte), 2 layers, n_embd 32, no dropout,
                 taking (input_ids, attention_mask) and returning the logits: a real export, whose
                 exporter stores equal-valued parameters once and folds the tied head's transpose
  HFLlama        transformers' LlamaForCausalLM (RMSNorm, rotary embedding, SiLU MLP, grouped-query
                 attention, untied head), 2 layers, hidden 32, its token embedding's padding_idx 0
  HFBert         transformers' BertModel (no pooler), 2 layers, hidden 32, no dropout, returning the last
                 hidden state; its word embedding's padding_idx 0
  HFT5Encoder    transformers' T5EncoderModel (relative position bias, T5's RMS LayerNorm), 2 layers, d 32
  TVViT          torchvision's VisionTransformer (conv patch embedding, class token), 32x32 images, 2 layers
  TVMobileNetV3  torchvision's MobileNetV3 (small layout, width 0.25: BatchNorm, depthwise convolutions,
                 squeeze-and-excitation with HardSigmoid, HardSwish), 64x64 images
  TVEfficientNet torchvision's EfficientNet (B0 layout, width and depth 0.25: BatchNorm, depthwise
                 convolutions, squeeze-and-excitation, SiLU), 64x64 images
  TorchEncoder   torch.nn.TransformerEncoder (batch_first), 2 layers, d 32: its layers are deep copies, so
                 they start equal and the exporter stores them once
  *Loss          the same models with the loss computed inside forward()
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from pippy_torch import pipe_split  # noqa: E402


# The bench GPT (bench/torch_train.py; exported by make_train_refs.py --bench-models): vocab 512, d 96,
# 4 blocks, 4 heads, T 64, 0.50 M parameters (2.0 MB). One AdamW step at batch 32 takes 113-140 ms of CPU
# time in PyTorch on one core of the 2-core bench machine (d 128: 170-200 ms; d 256: ~1.4 s wall);
# 4 blocks so that 2 and 4 stages split evenly at block boundaries.
BENCH_GPT = {"vocab": 512, "d": 96, "n_head": 4, "n_layer": 4, "block": 64}


def mse_mean(y, t):
    """Mean squared error over every element; exports as Sub -> Pow -> ReduceMean."""
    return ((y - t) ** 2).mean()


def cross_entropy_last_axis(logits, labels):
    """Cross-entropy with classes on the last axis, mean over every other position."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


# ---------------------------------------------------------------- PiPPy's seed MLP

class MyNetworkBlock(nn.Module):
    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        return torch.relu(self.lin(x))


class MyNetwork(nn.Module):
    """Blocks layer0..layerN-1 (Linear + ReLU), then output_proj (Linear, no activation)."""

    def __init__(self, in_dim=512, layer_dims=(512, 1024, 256), out_dim=10):
        super().__init__()
        self.num_layers = len(layer_dims)
        prev = in_dim
        for i, dim in enumerate(layer_dims):
            self.add_module("layer%d" % i, MyNetworkBlock(prev, dim))
            prev = dim
        self.output_proj = nn.Linear(prev, out_dim)

    def forward(self, x):
        for i in range(self.num_layers):
            x = getattr(self, "layer%d" % i)(x)
        return self.output_proj(x)


class MyNetworkLoss(MyNetwork):
    """MyNetwork with its MSE loss inside: forward(x, target) -> scalar. Same parameter names."""

    def forward(self, x, target):
        return mse_mean(super().forward(x), target)


# ---------------------------------------------------------------- GPT (nanoGPT layout, tied head)

class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention with a fused qkv projection and a [1,1,block,block] mask buffer
    (also samples/make_models.py's GPT)."""

    def __init__(self, d, n_head, block):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class GPTMLP(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class GPTBlock(nn.Module):
    def __init__(self, d, n_head, block):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, n_head, block)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = GPTMLP(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """idx [B,T] int64 -> logits [B,T,vocab]. lm_head is an nn.Linear(d, vocab, bias=False) applied to
    the 3-D activations whose weight *is* wte.weight (tied), as in nanoGPT. Weights are initialised as
    nanoGPT does, N(0, 0.02) for Linear and Embedding and N(0, 0.02/sqrt(2*n_layer)) for the residual
    projections (attn.proj, mlp.c_proj), except
    that biases are N(0, 0.02) instead of 0 and LayerNorm weights/biases 1 + N(0, 0.1) / N(0, 0.1)
    instead of 1/0: the TorchScript exporter merges initializers with equal contents into one (the others
    become Identity nodes on it), which would tie every zero bias and every LayerNorm of the exported
    model together, unlike the torch model."""

    def __init__(self, vocab=128, d=64, n_head=4, n_layer=2, block=16):
        super().__init__()
        self.vocab = vocab
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.h = nn.ModuleList([GPTBlock(d, n_head, block) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding)) and m is not self.lm_head:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("attn.proj", "mlp.c_proj")) else 0.02
                nn.init.normal_(m.weight, 0.0, std)
                if getattr(m, "bias", None) is not None:
                    nn.init.normal_(m.bias, 0.0, 0.02)
            elif isinstance(m, nn.LayerNorm):
                with torch.no_grad():
                    m.weight.add_(0.1 * torch.randn_like(m.weight))
                    m.bias.add_(0.1 * torch.randn_like(m.bias))

    def forward(self, idx):
        B, T = idx.size()
        pos = torch.arange(0, T, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


class GPTLoss(GPT):
    """GPT with its cross-entropy inside: forward(idx, labels) -> scalar. Same parameter names."""

    def forward(self, idx, labels):
        return cross_entropy_last_axis(super().forward(idx), labels)


# ---------------------------------------------------------------- small CNN with BatchNorm

class SmallCNN(nn.Module):
    """x [B,3,16,16] -> Conv(3->8, 3x3, pad 1, no bias) + BN + ReLU + MaxPool(2)
    -> Conv(8->16) + BN + ReLU + MaxPool(2) -> flatten [B, 16*4*4] -> Linear -> logits [B,10].
    The convolutions have no bias (BatchNorm follows; in training mode a bias there gets a gradient
    that is zero up to rounding). The BatchNorm affine parameters and running statistics start random
    (weight 1 + N(0, 0.1), bias N(0, 0.1), running_mean N(0, 0.1), running_var 1 + U(0, 0.2)) rather than
    1/0/0/1, so that the exporter does not merge equal initializers (see GPT)."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4 * 4, classes)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.weight.add_(0.1 * torch.randn_like(bn.weight))
                bn.bias.add_(0.1 * torch.randn_like(bn.bias))
                bn.running_mean.copy_(0.1 * torch.randn_like(bn.running_mean))
                bn.running_var.copy_(1.0 + 0.2 * torch.rand_like(bn.running_var))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


# ---------------------------------------------------------------- PiPPy's skip-connection test model

class SkipConn(nn.Module):
    """PiPPy's test/test_skip_conn.py ExampleCode (the version where mm_param and lin are each used in two
    stages), with the MSE loss inside: forward(x, y, target) -> scalar.

      stage 0: h = relu(x @ mm_param + y); skip = h
      stage 1: h = lin(h @ mm_param)                  (mm_param again: used in stages 0 and 1)
      stage 2: h = relu(h) @ mm_param2
      stage 3: out = relu(lin(h + skip)); loss = mean((out - target)^2)   (lin again: stages 1 and 3)

    Changes from PiPPy's test: d_hid is a parameter (64 here, 512 there), the mm parameters are
    N(0, 1/d) instead of N(0, 1) (so activations stay O(1) and SGD does not diverge), the loss is inside,
    and y is a required input (PiPPy's defaults to zeros)."""

    def __init__(self, d=64):
        super().__init__()
        self.mm_param = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.mm_param2 = nn.Parameter(torch.randn(d, d) / math.sqrt(d))
        self.lin = nn.Linear(d, d)

    def forward(self, x, y, target):
        x = torch.relu(torch.mm(x, self.mm_param) + y)
        skip = x
        x = pipe_split(x)
        x = self.lin(torch.mm(x, self.mm_param))
        x = pipe_split(x)
        x = torch.mm(torch.relu(x), self.mm_param2)
        x = pipe_split(x)
        x = torch.relu(self.lin(x + skip))
        return mse_mean(x, target)


# ---------------------------------------------------------------- a Hugging Face model

class HFGPT2(nn.Module):
    """transformers' GPT2LMHeadModel (needs transformers) as (input_ids, attention_mask) -> logits.
    Dropout off: pippyc trains the exported graph, which is the model in eval mode."""

    def __init__(self, vocab=128, d=32, n_layer=2, n_head=4):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel
        cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=d, n_layer=n_layer, n_head=n_head, use_cache=False,
                         bos_token_id=0, eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.model = GPT2LMHeadModel(cfg)
        assert self.model.lm_head.weight is self.model.transformer.wte.weight

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class HFLlama(nn.Module):
    """transformers' LlamaForCausalLM (needs transformers) as (input_ids, attention_mask) -> logits:
    4 heads sharing 2 key/value heads, pad token 0 (nn.Embedding(padding_idx=0): row 0 gets no
    gradient, which the export does not record; pippyc --padding-idx says it)."""

    def __init__(self, vocab=128, d=32, n_layer=2):
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=n_layer,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False,
                          bos_token_id=1, eos_token_id=1, pad_token_id=0)
        self.model = LlamaForCausalLM(cfg)
        assert self.model.model.embed_tokens.padding_idx == 0

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class HFBert(nn.Module):
    """transformers' BertModel without its pooler (needs transformers) as (input_ids, attention_mask) ->
    last hidden state. Pad token 0: nn.Embedding(padding_idx=0) in its word embedding."""

    def __init__(self, vocab=128, d=32, n_layer=2):
        super().__init__()
        from transformers import BertConfig, BertModel
        cfg = BertConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=n_layer, num_attention_heads=4,
                         intermediate_size=2 * d, max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        self.model = BertModel(cfg, add_pooling_layer=False)
        assert self.model.embeddings.word_embeddings.padding_idx == 0

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class HFT5Encoder(nn.Module):
    """transformers' T5EncoderModel (needs transformers) as (input_ids, attention_mask) -> last hidden state."""

    def __init__(self, vocab=128, d=32, n_layer=2):
        super().__init__()
        from transformers import T5Config, T5EncoderModel
        cfg = T5Config(vocab_size=vocab, d_model=d, d_kv=8, d_ff=2 * d, num_layers=n_layer, num_heads=4,
                       use_cache=False, dropout_rate=0.0)
        self.model = T5EncoderModel(cfg)

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _no_fastpath():
    # nn.MultiheadAttention's fused inference path cannot be exported (nor trained through)
    torch.backends.mha.set_fastpath_enabled(False)


class TVViT(nn.Module):
    """torchvision's VisionTransformer (needs torchvision): x [B,3,32,32] -> logits [B,10], patch 8, no dropout.
    The head gets random weights (torchvision starts it at zero)."""

    def __init__(self):
        super().__init__()
        from torchvision.models import VisionTransformer
        _no_fastpath()
        self.vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                                     mlp_dim=64, num_classes=10, dropout=0.0, attention_dropout=0.0)
        nn.init.normal_(self.vit.heads.head.weight, std=0.2)

    def forward(self, x):
        return self.vit(x)


def _off_default_init(model):
    """torchvision starts BatchNorm at weight 1, bias 0, running statistics 0 / 1 and convolution biases at
    0. Those values move by ~1e-6 in a few small steps, where the float32 rounding of their gradients
    (sums over every position, cancelling) is 1e-4 of them: a relative check would test rounding. Spread
    as SmallCNN's: weight 1 + N(0, 0.1), biases N(0, 0.1), running mean N(0, 0.1), variance 1 + U(0, 0.2)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
                m.bias.add_(0.1 * torch.randn_like(m.bias))
                m.running_mean.copy_(0.1 * torch.randn_like(m.running_mean))
                m.running_var.copy_(1.0 + 0.2 * torch.rand_like(m.running_var))
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.add_(0.1 * torch.randn_like(m.bias))


class TVMobileNetV3(nn.Module):
    """torchvision's MobileNetV3 (needs torchvision), mobilenet_v3_small's layout at width 0.25, no dropout:
    x [B,3,64,64] -> logits [B,10]. Its BatchNorm keeps torchvision's momentum 0.01 and eps 0.001 (the
    export writes momentum 0.99, ONNX's meaning); its initial values spread by _off_default_init."""

    def __init__(self):
        super().__init__()
        from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf
        setting, last = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25)
        self.net = MobileNetV3(setting, last, num_classes=10, dropout=0.0)
        _off_default_init(self.net)

    def forward(self, x):
        return self.net(x)


class TVEfficientNet(nn.Module):
    """torchvision's EfficientNet (needs torchvision), efficientnet_b0's layout at width and depth 0.25, no
    dropout or stochastic depth: x [B,3,64,64] -> logits [B,10]; its initial values spread by _off_default_init."""

    def __init__(self):
        super().__init__()
        from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf
        setting, last = _efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
        self.net = EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=10, last_channel=last)
        _off_default_init(self.net)

    def forward(self, x):
        return self.net(x)


class TorchEncoder(nn.Module):
    """torch.nn.TransformerEncoder: x [B,16,32] -> [B,16,32], 2 layers, 4 heads, no dropout."""

    def __init__(self):
        super().__init__()
        _no_fastpath()
        layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True, dropout=0.0)
        self.enc = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)

    def forward(self, x):
        return self.enc(x)
