#!/usr/bin/env python3
"""Compare a tensor that pippyc's stage programs wrote with a reference tensor.

usage: refcheck.py EXPECTED ACTUAL [--rtol R] [--atol A]

EXPECTED and ACTUAL are .pb (ONNX TensorProto) or .npy files. Both may also be folders: then every
output_*.pb / output_*.npy in EXPECTED is compared with the file of the same name in ACTUAL.

Tolerance, element by element: |actual - expected| <= atol + rtol * |expected|, by default
rtol = 1e-4 and atol = 1e-5 (RTOL, ATOL below). Those are a few times what correct code achieves
on the sample models against onnxruntime (worst case, GPT logits of magnitude 57: 1.3e-5 absolute,
which needs atol 2.7e-6 at rtol 1e-4; see samples/README.md, "Reference data"), so a small change of
formula fails: GELU in its tanh form gives 1.4e-3 there and needs atol 1.1e-3.

Prints one line per tensor:
  ok NAME max_abs_diff=D shape=[..] dtype=T
  MISMATCH NAME <what differs> ...
and exits 0 when everything matched, 1 on any mismatch or unreadable file (2 on bad usage). NAME is the tensor's
name in the .pb file, else the file name. Shapes and dtypes must agree exactly; NaN matches NaN and an
infinity matches the same infinity.

Needs numpy; reads .pb with the onnx package when installed, else with a small built-in decoder.
"""

import argparse
import os
import struct
import sys

import numpy as np

RTOL = 1e-4
ATOL = 1e-5

# TensorProto.DataType -> numpy dtype
_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
    9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


class RefError(Exception):
    pass


# ---------------------------------------------------------------- reading tensors

def _varint(buf, pos):
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise RefError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _parse_tensor_proto(buf):
    """Minimal TensorProto decoder: dims, data_type, name, raw_data and the typed data fields."""
    dims, name, dtype, raw = [], None, None, None
    typed = {4: [], 5: [], 7: [], 10: [], 11: []}  # float_data, int32_data, int64_data, double, uint64
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, pos = _varint(buf, pos)
            if field == 1:
                dims.append(v - (1 << 64) if v >= 1 << 63 else v)
            elif field == 2:
                dtype = v
            elif field == 14 and v == 1:
                raise RefError("tensor data stored externally is not supported")
            elif field in (5, 7, 11):
                typed[field].append(v)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            data = buf[pos:pos + n]
            pos += n
            if field == 1:  # packed dims
                p = 0
                while p < len(data):
                    v, p = _varint(data, p)
                    dims.append(v - (1 << 64) if v >= 1 << 63 else v)
            elif field == 8:
                name = bytes(data).decode("utf-8", "replace")
            elif field == 9:
                raw = bytes(data)
            elif field == 4:
                typed[4].extend(struct.unpack("<%df" % (n // 4), data))
            elif field == 10:
                typed[10].extend(struct.unpack("<%dd" % (n // 8), data))
            elif field in (5, 7, 11):
                p = 0
                while p < len(data):
                    v, p = _varint(data, p)
                    typed[field].append(v)
            elif field == 13:
                raise RefError("tensor data stored externally is not supported")
        elif wire == 5:
            if field == 4:
                typed[4].append(struct.unpack("<f", buf[pos:pos + 4])[0])
            pos += 4
        elif wire == 1:
            if field == 10:
                typed[10].append(struct.unpack("<d", buf[pos:pos + 8])[0])
            pos += 8
        else:
            raise RefError("unsupported protobuf wire type %d" % wire)
    if dtype not in _DTYPES:
        raise RefError("unsupported TensorProto data_type %s" % dtype)
    npt = np.dtype(_DTYPES[dtype])
    count = int(np.prod(dims)) if dims else 1
    if raw is not None:
        arr = np.frombuffer(raw, dtype=npt.newbyteorder("<")).astype(npt)
    elif dtype == 1:
        arr = np.array(typed[4], dtype=np.float32)
    elif dtype == 11:
        arr = np.array(typed[10], dtype=np.float64)
    elif dtype == 7:
        arr = np.array([v - (1 << 64) if v >= 1 << 63 else v for v in typed[7]], dtype=np.int64)
    elif dtype in (12, 13):
        arr = np.array(typed[11], dtype=np.uint64).astype(npt)
    elif dtype == 10:  # float16 bit patterns in int32_data
        arr = np.array(typed[5], dtype=np.uint16).view(np.float16)
    else:  # int32, int16, int8, uint16, uint8, bool in int32_data
        vals = [v - (1 << 64) if v >= 1 << 63 else v for v in typed[5]]
        arr = np.array(vals, dtype=np.int64).astype(npt)
    if arr.size != count:
        raise RefError("tensor %r has %d elements, dims %s want %d" % (name, arr.size, dims, count))
    return name, arr.reshape(dims)


def load(path):
    """Return (name, array) from a .pb TensorProto or a .npy file."""
    try:
        if path.endswith(".npy"):
            return os.path.basename(path)[:-4], np.load(path, allow_pickle=False)
        with open(path, "rb") as f:
            buf = f.read()
    except (OSError, ValueError) as e:
        raise RefError("%s: %s" % (path, e))
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        onnx = None
    try:
        if onnx is not None:
            t = onnx.TensorProto()
            t.ParseFromString(buf)
            return (t.name or None), numpy_helper.to_array(t)
        return _parse_tensor_proto(memoryview(buf))
    except RefError as e:
        raise RefError("%s: %s" % (path, e))
    except Exception as e:  # protobuf DecodeError, bad data type ...
        raise RefError("%s: not a TensorProto (%s)" % (path, e))


# ---------------------------------------------------------------- comparing

def _fmt_shape(s):
    return "[" + ",".join(str(d) for d in s) + "]"


def compare(expected, actual, name, rtol=None, atol=None):
    """Return (ok, line)."""
    if expected.shape != actual.shape:
        return False, "MISMATCH %s shape expected=%s actual=%s" % (
            name, _fmt_shape(expected.shape), _fmt_shape(actual.shape))
    if expected.dtype != actual.dtype:
        return False, "MISMATCH %s dtype expected=%s actual=%s shape=%s" % (
            name, expected.dtype, actual.dtype, _fmt_shape(expected.shape))
    shape = _fmt_shape(expected.shape)
    if expected.size == 0:
        return True, "ok %s max_abs_diff=0 shape=%s dtype=%s" % (name, shape, expected.dtype)

    if np.issubdtype(expected.dtype, np.integer) or expected.dtype == np.bool_:
        e = expected.astype(np.int64) if expected.dtype != np.uint64 else expected.astype(np.float64)
        a = actual.astype(np.int64) if actual.dtype != np.uint64 else actual.astype(np.float64)
        diff = np.array(np.abs(a - e), dtype=np.float64)
        ref_max = float(np.abs(e).max())
    else:
        e = expected.astype(np.float64)
        a = actual.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.array(np.abs(a - e), dtype=np.float64)  # np.array: keeps 0-d an array
        same = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (a == e))
        diff[same] = 0.0
        diff[np.isnan(diff)] = np.inf  # one side NaN, or inf - inf of opposite signs
        finite = e[np.isfinite(e)]
        ref_max = float(np.abs(finite).max()) if finite.size else 0.0

    rtol = RTOL if rtol is None else rtol
    atol = ATOL if atol is None else atol
    with np.errstate(invalid="ignore"):
        bad = diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    tol_txt = "rtol=%g atol=%g (max|ref|=%.4g)" % (rtol, atol, ref_max)

    flat = int(np.argmax(diff))
    max_diff = float(diff.flat[flat])
    nbad = int(np.count_nonzero(bad))
    if nbad == 0:
        return True, "ok %s max_abs_diff=%.3g shape=%s dtype=%s" % (name, max_diff, shape, expected.dtype)
    where = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if expected.ndim else ()
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), expected.shape)) if expected.ndim else ()
    return False, ("MISMATCH %s max_abs_diff=%.6g at %s expected=%.8g actual=%.8g; %d of %d elements "
                   "out of tolerance (first at %s); %s shape=%s dtype=%s") % (
        name, max_diff, _fmt_shape(where), float(expected.flat[flat]), float(actual.flat[flat]),
        nbad, expected.size, _fmt_shape(first), tol_txt, shape, expected.dtype)


def check_files(exp_path, act_path, rtol, atol):
    ename, e = load(exp_path)
    aname, a = load(act_path)
    name = ename or aname or os.path.basename(exp_path)
    return compare(e, a, name, rtol, atol)


def check_outputs(ref_dir, out_dir, n):
    """output_0.pb .. output_{n-1}.pb of out_dir against ref_dir's, element-wise at the default
    tolerances: (all match, one line per output)."""
    ok, report = True, ""
    for k in range(n):
        try:
            good, line = check_files(f"{ref_dir}/output_{k}.pb", f"{out_dir}/output_{k}.pb", None, None)
        except RefError as e:
            good, line = False, f"MISMATCH {e}"
        ok, report = ok and good, report + line + "\n"
    return ok, report


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare tensors (.pb TensorProto or .npy) within a tolerance.")
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--rtol", type=float, help="relative tolerance (default %g)" % RTOL)
    ap.add_argument("--atol", type=float, help="absolute tolerance (default %g)" % ATOL)
    args = ap.parse_args(argv)
    if (args.rtol is not None and args.rtol < 0) or (args.atol is not None and args.atol < 0):
        ap.error("tolerances must not be negative")

    pairs = []
    if os.path.isdir(args.expected):
        if not os.path.isdir(args.actual):
            print("MISMATCH %s is a folder but %s is not" % (args.expected, args.actual))
            return 1
        names = sorted(f for f in os.listdir(args.expected)
                       if f.startswith("output_") and f.endswith((".pb", ".npy")))
        if not names:
            print("MISMATCH no output_*.pb or output_*.npy in %s" % args.expected)
            return 1
        pairs = [(os.path.join(args.expected, f), os.path.join(args.actual, f)) for f in names]
    else:
        pairs = [(args.expected, args.actual)]

    ok_all = True
    for exp_path, act_path in pairs:
        try:
            ok, line = check_files(exp_path, act_path, args.rtol, args.atol)
        except RefError as e:
            ok, line = False, "MISMATCH %s: %s" % (os.path.basename(exp_path), e)
        print(line)
        ok_all = ok_all and ok
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
