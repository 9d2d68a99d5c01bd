#!/usr/bin/env python3
"""The weights of samples/models/mlp_train.onnx and mlp_train_loss.onnx (PiPPy's seed MyNetwork, 1.05 M
parameters), made instead of committed: `make test` runs this to write samples/models/mlp_train.weights,
the external-data file both models point at.

    python3 samples/mlp_train_weights.py            # writes samples/models/mlp_train.weights if missing
    python3 samples/mlp_train_weights.py --force    # rewrites it

Every parameter is uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) (the range of torch.nn.Linear's default
initialisation), drawn from a counter-based generator defined here (splitmix64 of the parameter's seed
and the element's index; the top 24 bits make the float32), so the bytes depend on nothing but this file:
no numpy or torch version changes them. samples/make_train_refs.py gives the torch model these same
values before it exports the models and computes PyTorch's references. Where each parameter lies in
the file (offset, length) is read from mlp_train.onnx's external_data entries.
Needs numpy and onnx only.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "models", "mlp_train.onnx")
WEIGHTS = os.path.join(HERE, "models", "mlp_train.weights")
SEED = 11


def _splitmix64(x):
    """splitmix64's output function on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _draw(name, shape, fan_in, seed):
    key = np.uint64(seed)
    for ch in name.encode():
        key = _splitmix64(np.array([key ^ np.uint64(ch)], dtype=np.uint64))[0]
    n = int(np.prod(shape))
    bits = _splitmix64(np.arange(n, dtype=np.uint64) ^ key) >> np.uint64(40)  # 24 bits
    u = bits.astype(np.float64) / float(1 << 24)  # [0, 1)
    bound = 1.0 / np.sqrt(fan_in)
    return ((2.0 * u - 1.0) * bound).astype(np.float32).reshape(shape)


def values(shapes, seed=SEED):
    """{name: float32 array} for the parameters {name: shape} of a MyNetwork (names '<layer>.weight' and
    '<layer>.bias'; a bias's fan_in is its weight's)."""
    out = {}
    for name, shape in shapes.items():
        layer = name.rsplit(".", 1)[0]
        fan_in = shapes[layer + ".weight"][1]
        out[name] = _draw(name, tuple(shape), fan_in, seed)
    return out


def write(path=WEIGHTS, model=MODEL):
    """Writes the external-data file that `model` points at (mlp_train.weights) to path, atomically."""
    import onnx
    m = onnx.load(model, load_external_data=False)
    shapes = {i.name: list(i.dims) for i in m.graph.initializer}
    vals = values(shapes)
    regions = []
    for init in m.graph.initializer:
        ext = {e.key: e.value for e in init.external_data}
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        raw = vals[init.name].tobytes()
        if ext.get("location") != os.path.basename(WEIGHTS) or int(ext.get("length", -1)) != len(raw):
            sys.exit("mlp_train_weights: %s: %s is not %d bytes in %s" % (model, init.name, len(raw),
                                                                          os.path.basename(WEIGHTS)))
        regions.append((int(ext["offset"]), raw))
    blob = bytearray(max(off + len(raw) for off, raw in regions))
    for off, raw in regions:
        blob[off:off + len(raw)] = raw
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(bytes(blob))
    os.replace(tmp, path)


def main(argv):
    if "--force" in argv or not os.path.exists(WEIGHTS):
        write()
        print("mlp_train_weights: wrote %s (%d bytes)" % (os.path.relpath(WEIGHTS), os.path.getsize(WEIGHTS)))


if __name__ == "__main__":
    main(sys.argv[1:])
