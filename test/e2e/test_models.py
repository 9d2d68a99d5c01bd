#!/usr/bin/env python3
"""Real model families end to end: exports of GPT-2, BERT, Llama, T5, ViT, nn.TransformerEncoder,
MobileNetV3, ResNet-50 and EfficientNet-B0 made from torchvision / transformers configs with random
weights (samples/real/, written by samples/make_real_models.py; the *_dynamo families are the same
models through torch.onnx.export's default dynamo exporter), compiled into 1-4 stages with 1-2
microbatches, run with pippyrun (real processes, real UCX), and compared element-wise with onnxruntime's
outputs (samples/real/<name>.data/output_0.pb, made from the same export).

usage: test_models.py BUILD_DIR [--quick | --all] [--family NAME ...]

  default   every family in 4 (stages, microbatches) cases of its dynamic-batch export, which together
            cover 1, 2, 3 and 4 stages and 1 and 2 microbatches, plus its static-batch export in 2
            stages with 2 microbatches (pippyc rewrites the batch baked into its shape constants)
  --quick   one case per family (the sanitizer build)
  --all     every stage count 1-4 with 1 and 2 microbatches, both exports (for measuring)

Tolerance: |pippyc - onnxruntime| <= atol + RTOL * |onnxruntime| element-wise (numpy's allclose), with
atol = max(ATOL, 2 x the family's float32_max_abs_error): how far float32 rounding alone moves the output
from the exact (float64) one, measured with torch by make_real_models.py. Two correct float32
implementations differ by up to about the sum of their errors."""

import json
import os
import shutil
import sys

import numpy as np

from common import ROOT, Results, build_dir, run, tail, tmpdir

REAL = os.path.join(ROOT, "samples", "real")
BATCH = 4
# Measured over every family, 1-4 stages, 1-2 microbatches, both exports (--all): the transformer
# families differ from onnxruntime by at most 1.9e-6 (ViT; float32_max_abs_error 1.6e-6), the others by
# < 1e-6. The narrow CNNs amplify rounding: ResNet-50 differs by 7.4e-5 (float32 alone: 1.0e-4, and
# onnxruntime vs torch 1.4e-4), EfficientNet-B0 by 1.2e-5 (5.9e-5). Every case stays under 40% of its
# tolerance; a wrong kernel is off by 1e-2 or more.
RTOL = 1e-4
ATOL = 1e-5

# (stages, microbatches) per family, rotating so that every family sees 1-4 stages and 1-2 microbatches
DYNAMIC_CASES = [(1, 1), (2, 2), (3, 2), (4, 1)]
STATIC_CASE = (2, 2)
# Where the static export is ambiguous, the flag a user gives (pippyc's error names it): ViT's class token
# is expanded to [4, 1, 1] and 4 is also the side of its patch grid, so pippyc asks which element is the batch
STATIC_FLAGS = {"vit": ["--batch-dims", "/Expand=0"]}
# The static exports (no dynamic_axes) hold the example batch (4) in shape constants (Reshape targets,
# Expand): split into 2 microbatches of 2 they need pippyc's static-batch rewrite (compiler/batch.c).


def load_tensor(path):
    import onnx
    from onnx import numpy_helper
    return numpy_helper.to_array(onnx.load_tensor(path))


def compare(got, want, atol):
    """None when got matches want element-wise, else why not."""
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"got {got.dtype}{list(got.shape)}, expected {want.dtype}{list(want.shape)}"
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    bad = ~(diff <= atol + RTOL * np.abs(w))
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), got.shape)
        return (f"{int(bad.sum())}/{got.size} elements differ beyond atol {atol:g} + rtol {RTOL:g}; worst at "
                f"{[int(k) for k in i]}: got {g[i]:.8g}, expected {w[i]:.8g}")
    return None


def cases(manifest, mode, only):
    out = []
    for k, name in enumerate(f for f in manifest if not f.startswith("_")):
        if only and name not in only:
            continue
        if mode == "all":
            out += [(name, v, s, m) for v in ("", "_static") for s in (1, 2, 3, 4) for m in (1, 2)]
        elif mode == "quick":
            s, m = DYNAMIC_CASES[k % len(DYNAMIC_CASES)]
            out.append((name, "", max(s, 2), m))
        else:
            out += [(name, "", s, m) for s, m in DYNAMIC_CASES]
            out.append((name, "_static") + STATIC_CASE)
    return out


def main():
    b = build_dir()
    pippyc, pippyrun = os.path.join(b, "pippyc"), os.path.join(b, "pippyrun")
    args = sys.argv[2:]
    mode = "quick" if "--quick" in args else "all" if "--all" in args else "default"
    only = [args[i + 1] for i, a in enumerate(args) if a == "--family" and i + 1 < len(args)]
    res = Results("models")
    manifest_path = os.path.join(REAL, "models.json")
    if not os.path.exists(manifest_path):
        # the exports are committed; without them (a trimmed checkout) there is nothing to run
        print(f"models: SKIP every case: {manifest_path} is missing; make it with samples/make_real_models.py "
              "(needs torch, torchvision, transformers)")
        res.finish()
    manifest = json.load(open(manifest_path))
    port = 33000
    worst = {}
    for name, variant, S, M in cases(manifest, mode, only):
        info = manifest[name]
        label = f"{name}{variant} stages={S} microbatches={M}"
        model = os.path.join(REAL, name + variant + ".onnx")
        data = os.path.join(REAL, name + ".data")
        if not os.path.exists(model):
            res.check(label, False, f"{model} is missing (samples/make_real_models.py {name} remakes it)")
            continue
        out = tmpdir("pippy-models-")
        port += 8
        code, text = run([pippyc, model, "--stages", str(S), "--batch", str(BATCH), "--microbatches", str(M),
                          "--port", str(port), "-o", out, "-q"] + (STATIC_FLAGS.get(name, []) if variant else []), timeout=600)
        if code != 0:
            res.check(label, False, "pippyc failed:\n        " + tail(text))
            continue
        argv = [pippyrun, out, "--timeout", "60"]
        for k, n in enumerate(info["inputs"]):
            argv += ["--input", f"{n}={data}/input_{k}.pb"]
        argv += ["--output", f"{info['outputs'][0]}={out}/output_0.pb"]
        code, text = run(argv, timeout=300)
        if code != 0:
            res.check(label, False, f"pippyrun exited {code}:\n        " + tail(text))
            continue
        got, want = load_tensor(f"{out}/output_0.pb"), load_tensor(f"{data}/output_0.pb")
        atol = max(ATOL, 2 * info["float32_max_abs_error"])
        why = compare(got, want, atol)
        if why is None:
            diff = np.abs(got.astype(np.float64) - want)
            d, used = worst.get(name, (0.0, 0.0))
            worst[name] = (max(d, float(diff.max())), max(used, float(np.max(diff / (atol + RTOL * np.abs(want))))))
            shutil.rmtree(out, ignore_errors=True)
        res.check(label, why is None, why or "")
    if worst:
        print("max |pippyc - onnxruntime| per family (and the largest share of the tolerance used): " +
              ", ".join(f"{k} {d:.2g} ({100 * u:.0f}%)" for k, (d, u) in sorted(worst.items())))
    res.finish()


if __name__ == "__main__":
    main()
