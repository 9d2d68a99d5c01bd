#!/bin/sh
# Runs every test of pippyc against one build folder and ends with one line "N passed, N failed".
#   sh test/run_tests.sh build          (make test)
#   sh test/run_tests.sh build-san      (make test SANITIZE=1: same suites; the conformance
#                                        run is limited to a sample there, see below)
# Suites: the Check unit tests (backend kernels, loader, transport, tensor files, trace, schedule
# checker, and the model / schedule / tensor-file mutators), then the end-to-end scripts (real stage
# processes over real UCX: pippyrun, the CLI, mutated schedules, hostile peers and files, the sample
# models, the real model families of samples/real/, training, training operations: memory, edited
# action lists, killed ranks, warm-up; the dynamic schedule, network namespaces), then the ONNX
# conformance run. A CUDA build (make test CUDA=1) adds the cuda kernels' test (build/test_cuda); the
# cuda end-to-end script runs in every build (without CUDA it only checks the refusals). Last, the
# training bench, the profiler and the 2-stages-vs-onnxruntime bench in their --quick form (tiny sizes, no
# torch: so that they cannot rot).
B=${1:-build}
cd "$(dirname "$0")/.." || exit 2
export PIPPY_BUILD="$B"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
PASS=0
FAIL=0
LOG=$(mktemp)

count() { # suite name, exit code, output file
    line=$(grep -E '^(100%|[0-9]+%): Checks: ' "$3" | tail -n 1)
    if [ -n "$line" ]; then
        n=$(echo "$line" | sed -E 's/.*Checks: ([0-9]+), Failures: ([0-9]+), Errors: ([0-9]+).*/\1 \2 \3/')
        set -- "$1" "$2" "$3" $n
        PASS=$((PASS + $4 - $5 - $6)); FAIL=$((FAIL + $5 + $6))
    else
        line=$(grep -E '([0-9]+) passed, ([0-9]+) failed' "$3" | tail -n 1)
        if [ -n "$line" ]; then
            p=$(echo "$line" | sed -E 's/^(.*[^0-9])?([0-9]+) passed, ([0-9]+) failed.*/\2/')
            f=$(echo "$line" | sed -E 's/^(.*[^0-9])?([0-9]+) passed, ([0-9]+) failed.*/\3/')
            PASS=$((PASS + p)); FAIL=$((FAIL + f))
            [ "$2" -ne 0 ] && [ "$f" -eq 0 ] && FAIL=$((FAIL + 1)) && echo "$1: exited $2"
        else
            FAIL=$((FAIL + 1)); echo "$1: exited $2 without a summary line"
        fi
    fi
}

suite() { # name, command...
    name=$1; shift
    echo "=== $name"
    "$@" > "$LOG" 2>&1
    rc=$?
    cat "$LOG"
    count "$name" "$rc" "$LOG"
}

suite unit "$B/test_unit"
if grep -q '^CUDA=1$' "$B/stage.env" 2>/dev/null; then
    suite cuda-kernels "$B/test_cuda"
fi
suite pippyrun sh test/e2e/test_pippyrun.sh "$B"
suite cli python3 test/e2e/test_cli.py "$B"
suite simulate python3 test/e2e/test_simulate.py "$B"
suite trainref python3 test/e2e/trainref.py self-test
suite export python3 test/e2e/test_export.py "$B"
suite static-batch python3 test/e2e/test_static_batch.py "$B"
suite sequences python3 test/e2e/test_sequences.py "$B"
if [ "$B" = "build-san" ] || [ -n "$PIPPY_QUICK" ]; then
    suite schedule_fuzz python3 test/e2e/test_schedule_fuzz.py "$B" --quick
    suite security python3 test/e2e/test_security.py "$B" --quick
    suite pipeline python3 test/e2e/test_pipeline.py "$B" --quick
    suite train python3 test/e2e/test_train.py "$B" --quick
    suite train_ops python3 test/e2e/test_train_ops.py "$B" --quick
    suite dynamic python3 test/e2e/test_dynamic.py "$B" --quick
    suite models python3 test/e2e/test_models.py "$B" --quick
    suite cuda python3 test/e2e/test_cuda.py "$B" --quick
    suite grad-rules python3 test/e2e/test_grad_rules.py "$B" --quick
    suite netns sh test/e2e/test_netns.sh "$B"
    suite conformance python3 test/conformance/run.py --pippyc "$B/pippyc" -j 2
else
    suite schedule_fuzz python3 test/e2e/test_schedule_fuzz.py "$B"
    suite security python3 test/e2e/test_security.py "$B"
    suite pipeline python3 test/e2e/test_pipeline.py "$B"
    suite train python3 test/e2e/test_train.py "$B"
    suite train_ops python3 test/e2e/test_train_ops.py "$B"
    suite dynamic python3 test/e2e/test_dynamic.py "$B"
    suite models python3 test/e2e/test_models.py "$B"
    suite cuda python3 test/e2e/test_cuda.py "$B"
    suite grad-rules python3 test/e2e/test_grad_rules.py "$B"
    suite netns sh test/e2e/test_netns.sh "$B"
    suite conformance python3 test/conformance/run.py --pippyc "$B/pippyc" -j 2
fi
suite bench-train env BUILD="$B" python3 bench/bench_train.py --quick
suite bench-profile env BUILD="$B" python3 bench/profile.py --quick
suite bench-pipeline-ort env BUILD="$B" python3 bench/bench_pipeline_ort.py --quick
rm -f "$LOG"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
