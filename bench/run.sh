#!/bin/sh
# bench/run.sh — make the benchmark models, run every benchmark and print the tables.
#
#   sh bench/run.sh                 # uses build/ (BUILD=build-xyz to use another build folder)
#   QUICK=1 sh bench/run.sh         # fewer repetitions (a smoke test, not for the README)
#   sh bench/run.sh single pipeline # only some parts: kernels single pipeline ort2 transfer profile train
#
# Needs python3 with torch (CPU), onnx, onnxruntime, numpy. Everything it writes goes to
# bench/work/ (git-ignored): the models, compiled stage programs, traces, and
# bench/work/results/<part>.txt and .json. Takes about 10 minutes on 2 cores.
set -e
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
if [ ! -x "$BUILD/pippyc" ] || [ ! -x "$BUILD/pippyrun" ]; then
    make -j2 BUILD="$BUILD"
fi
if [ -n "$QUICK" ]; then REPS=1; else REPS=3; fi
PARTS=${*:-kernels single pipeline ort2 transfer profile train}
R=bench/work/results
mkdir -p "$R"

echo "== machine"
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); $(date -u '+%Y-%m-%d %H:%M UTC'); git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== models"
python3 bench/make_models.py 2>&1 | grep -v "Custom opset domain"

for part in $PARTS; do
    echo
    echo "== $part"
    case $part in
    kernels) python3 bench/bench_kernels.py --reps $REPS --json $R/kernels.json | tee $R/kernels.txt ;;
    single) python3 bench/bench_single.py --reps $REPS --json $R/single.json | tee $R/single.txt ;;
    pipeline) python3 bench/bench_pipeline.py --reps $REPS --json $R/pipeline.json | tee $R/pipeline.txt ;;
    ort2) python3 bench/bench_pipeline_ort.py --reps $REPS --json $R/ort2.json | tee $R/ort2.txt ;;
    transfer)
        if [ -n "$QUICK" ]; then q=--quick; else q=; fi
        python3 bench/bench_transfer.py --reps $REPS $q --json $R/transfer.json | tee $R/transfer.txt ;;
    profile)
        for m in mlp gpt_op17 resnet18 mlp_big gpt_big; do
            python3 bench/profile.py $m --reps $([ -n "$QUICK" ] && echo 5 || echo 20) | tee $R/profile_$m.txt
        done ;;
    train)
        python3 bench/bench_train.py --reps $([ -n "$QUICK" ] && echo 1 || echo 5) --json $R/train.json | tee $R/train.txt
        for m in mlp gpt; do
            for M in 1 8; do
                python3 bench/profile.py --train $m --microbatches $M | tee $R/profile_train_${m}_M$M.txt
            done
            python3 bench/profile.py --train $m --stages 2 --no-torch | tee $R/profile_train_${m}_2stages.txt
        done ;;
    *) echo "unknown part $part (kernels single pipeline ort2 transfer profile train)"; exit 2 ;;
    esac
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
