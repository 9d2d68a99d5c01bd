#!/bin/sh
# tools/gpu_check.sh — every check of the cuda backend that needs a GPU, in one go, for a machine
# that has one (written for a lent H200: 16 cores, nothing outside reachable; about 5 minutes).
#
#   sh tools/gpu_check.sh [OUT_DIR]        (default: $OUT, else gpu_check_out/)
#
# Steps, each with its own time limit, each logged to OUT_DIR/<step>.log:
#   0 facts   nvidia-smi, nvcc, cuDNN / cuBLASLt found, Python packages; stops at once, saying what
#             is missing, when the build or the tests cannot run
#   1 build   make -j CUDA=1 (-Werror; nvcc for CUDA_ARCH, 90 by default)
#   2 kernels build/test_cuda: every cuda kernel against the CPU reference kernel, on the GPU
#   3 e2e     test/e2e/test_cuda.py: the sample GPT (opsets 14 and 17), ResNet-18, MLP and skip
#             models in 1 and 2 stages (2 ranks on the one GPU), against onnxruntime's outputs
#   4 bench   bench/bench_cuda.py: per-microbatch time against onnxruntime's CUDA EP (when the
#             onnxruntime-gpu wheel is importable; else said so), written into bench/README.md
#             (between the markers) and OUT_DIR/bench.md
# OUT_DIR/summary.txt ends with one line per step (ok / FAIL / skipped) and the exit code is 0 only
# when every step that ran passed.
# GPU_CHECK_DRY=1 rehearses the script on a machine without a GPU: no GPU required, the tests skip
# their GPU parts, the bench falls back to the CPU (PIPPY_BACKEND=cuda,cpu) and bench/README.md is
# left alone. Its numbers say nothing about the GPU.
cd "$(dirname "$0")/.." || exit 2
OUT_DIR=${1:-${OUT:-gpu_check_out}}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SUM="$OUT_DIR/summary.txt"
: > "$SUM"
JOBS=$(nproc 2>/dev/null || echo 4)
RC=0

note() { echo "$*" | tee -a "$SUM"; }
step() { # name, limit in seconds, command...
    name=$1; limit=$2; shift 2
    t0=$(date +%s)
    echo "== $name (limit ${limit}s): $*" | tee -a "$SUM"
    timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    tail -n 25 "$OUT_DIR/$name.log"
    if [ $rc -eq 0 ]; then
        note "ok   $name ($(( $(date +%s) - t0 )) s)"
    else
        [ $rc -eq 124 ] && note "     $name ran past its ${limit} s limit"
        note "FAIL $name (exit $rc, $(( $(date +%s) - t0 )) s; see $name.log)"
        RC=1
    fi
    return $rc
}

# ---- 0: facts, and what is missing ----
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $JOBS cores"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    command -v nvidia-smi > /dev/null && nvidia-smi
    NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
    echo "nvcc: ${NVCC:-none}"; [ -n "$NVCC" ] && "$NVCC" --version | tail -n 2
    python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1
    python3 -c "import onnx, numpy; print('onnx', onnx.__version__, 'numpy', numpy.__version__)" 2>&1
} > "$OUT_DIR/facts.log" 2>&1
cat "$OUT_DIR/facts.log"
missing=""
if [ -z "$GPU_CHECK_DRY" ]; then
    command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 || missing="$missing; no GPU visible (nvidia-smi -L fails)"
else
    note "GPU_CHECK_DRY: a rehearsal without a GPU; no number here is a GPU's"
    export PIPPY_BACKEND=cuda,cpu
fi
NVCC=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
[ -n "$NVCC" ] || missing="$missing; no nvcc on PATH or in /usr/local/cuda/bin (install the CUDA toolkit)"
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "${NVCC:-/usr/local/cuda/bin/nvcc}")")}
for h in cudnn.h cublasLt.h; do
    [ -f "$CUDA_HOME/include/$h" ] || missing="$missing; $CUDA_HOME/include/$h is missing (cuDNN / cuBLAS headers)"
done
for l in libcudnn.so libcublasLt.so libcudart.so; do
    ls "$CUDA_HOME"/lib64/$l "$CUDA_HOME"/lib/$l > /dev/null 2>&1 || missing="$missing; $l is not in $CUDA_HOME/lib64"
done
for p in numpy onnx; do
    python3 -c "import $p" 2>/dev/null || missing="$missing; python3 cannot import $p (the e2e test needs it)"
done
for t in protoc-c pkg-config; do
    command -v $t > /dev/null || missing="$missing; $t is missing (sh tools/install-deps.sh)"
done
if [ -n "$missing" ]; then
    note "cannot run the GPU checks:${missing#;}"
    exit 3
fi
python3 -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" \
    2>/dev/null || note "note: onnxruntime has no CUDAExecutionProvider (the onnxruntime-gpu wheel is not installed): the bench times pippyc but has no CUDA EP anchor"

# ---- 1-4 ----
if step build 300 make -j"$JOBS" CUDA=1; then
    step kernels 120 ./build/test_cuda
    (unset PIPPY_BACKEND; step e2e 240 python3 test/e2e/test_cuda.py build) || RC=1
    if step bench 300 python3 bench/bench_cuda.py --build build --reps 2 --json "$OUT_DIR/bench.json" --md "$OUT_DIR/bench.md" &&
        [ -z "$GPU_CHECK_DRY" ]; then
        python3 - "$OUT_DIR/bench.md" bench/README.md <<'EOF'
import sys
md, readme = open(sys.argv[1]).read(), sys.argv[2]
text = open(readme).read()
a, b = "<!-- cuda-bench:begin -->", "<!-- cuda-bench:end -->"
block = a + "\n" + md.strip() + "\n" + b
text = text[:text.index(a)] + block + text[text.index(b) + len(b):] if a in text else text.rstrip() + "\n\n" + block + "\n"
open(readme, "w").write(text)
EOF
        cp bench/README.md "$OUT_DIR/bench_README.md"
        note "bench: the table is in bench/README.md here and in $OUT_DIR/bench_README.md (copy it into the repository)"
    fi
else
    note "skipped kernels, e2e, bench: the build failed"
fi
note "gpu_check: $( [ $RC -eq 0 ] && echo 'every step passed' || echo 'some step FAILED' ) (logs in $OUT_DIR)"
exit $RC
