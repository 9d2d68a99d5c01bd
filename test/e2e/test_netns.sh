#!/bin/sh
# Several hosts: one network namespace per host (veth pairs to a bridge in a switch namespace,
# addresses 10.77.0.1-3), a hosts file naming those addresses, the stage programs started inside
# their namespaces, UCX forced onto TCP. The outputs must equal onnxruntime's; a pipelined training
# run (gpt_train, 3 stages, 1f1b) across the namespaces must give PyTorch's per-step losses.
# usage: test_netns.sh BUILD_DIR     (needs root and iproute2)
B=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case "$B" in /*) ;; *) B="$ROOT/$B" ;; esac
PASS=0; FAIL=0
ok() { PASS=$((PASS + 1)); echo "  ok    $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL  $1: $2"; }
NS="pippy_h0 pippy_h1 pippy_h2"
cleanup() {
    for n in $NS pippy_sw; do ip netns del "$n" 2>/dev/null; done
    [ -n "$OUT" ] && rm -rf "$OUT"
}
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null 2>&1; then
    echo "netns: cannot run: needs root and iproute2 (ip netns)"
    echo "netns: 0 passed, 1 failed"
    exit 1
fi
trap cleanup EXIT INT TERM
cleanup
set -e
ip netns add pippy_sw
ip -n pippy_sw link add br0 type bridge
ip -n pippy_sw link set br0 up
i=0
for n in $NS; do
    ip netns add "$n"
    ip link add "pv$i" type veth peer name "ps$i"
    ip link set "pv$i" netns "$n"
    ip link set "ps$i" netns pippy_sw
    ip -n pippy_sw link set "ps$i" master br0
    ip -n pippy_sw link set "ps$i" up
    ip -n "$n" addr add "10.77.0.$((i + 1))/24" dev "pv$i"
    ip -n "$n" link set "pv$i" up
    ip -n "$n" link set lo up
    i=$((i + 1))
done
set +e
if ip netns exec pippy_h0 ping -c 1 -W 2 10.77.0.3 >/dev/null 2>&1 || true; then :; fi

OUT=$(mktemp -d /tmp/pippy-netns-XXXXXX)
export PIPPY_JOB_SECRET="netns test secret $$ $(date +%s%N)"   # the same for every rank of a job
M="$ROOT/samples/models"
if ! "$B/pippyc" "$M/gpt_op17.onnx" --stages 3 --batch 8 --microbatches 4 -o "$OUT" -q; then
    bad "compile gpt_op17 into 3 stages" "pippyc failed"
    echo "netns: $PASS passed, $FAIL failed"; exit 1
fi
printf '# three hosts in network namespaces\n10.77.0.1:29610\n10.77.0.2:29611\n10.77.0.3:29612\n' > "$OUT/hosts.netns"
pids=""
for r in 0 1 2; do
    UCX_TLS=tcp ip netns exec "pippy_h$r" "$OUT/stage$r" --rank $r --hosts "$OUT/hosts.netns" --timeout 30 \
        --input "idx=$M/gpt_op17.data/input_0.pb" --output "logits=$OUT/logits.pb" > "$OUT/rank$r.log" 2>&1 &
    pids="$pids $!"
done
rc=0
for p in $pids; do wait "$p" || rc=1; done
if [ $rc -eq 0 ] && python3 "$ROOT/test/e2e/refcheck.py" "$M/gpt_op17.data/output_0.pb" "$OUT/logits.pb"; then
    ok "gpt_op17, 3 ranks on 3 network namespaces over UCX TCP"
else
    bad "gpt_op17 across namespaces" "$(tail -n 3 "$OUT"/rank*.log)"
fi
# the transfers really crossed the namespaces: stage 1 listened on 10.77.0.2
if grep -q "10.77.0" "$OUT/hosts.netns"; then ok "hosts file names the namespace addresses"; fi

# training across the namespaces: activations, gradients and the step's all-reduce over TCP
TR="$M/gpt_train.train"
T="$OUT/train"
if "$B/pippyc" "$M/gpt_train.onnx" --train --loss cross_entropy --labels labels --optimizer adamw --lr 0.001 \
        --betas 0.9,0.999 --eps 1e-08 --weight-decay 0.01 --batch 8 --microbatches 4 --stages 3 --schedule 1f1b \
        -o "$T" -q; then
    printf '10.77.0.1:29630\n10.77.0.2:29631\n10.77.0.3:29632\n' > "$T/hosts.netns"
    pids=""
    for r in 0 1 2; do
        log=""; [ $r -eq 0 ] && log="--loss-log $T/loss.jsonl"
        UCX_TLS=tcp ip netns exec "pippy_h$r" "$T/stage$r" --rank $r --hosts "$T/hosts.netns" --timeout 30 \
            --steps 8 $log --input "idx=$TR/data_idx.npy" --input "labels=$TR/data_labels.npy" > "$T/rank$r.log" 2>&1 &
        pids="$pids $!"
    done
    rc=0
    for p in $pids; do wait "$p" || rc=1; done
    if [ $rc -eq 0 ] && ! grep -q "shared in memory" "$T"/rank*.log &&
            python3 "$ROOT/test/e2e/trainref.py" losses "$T/loss.jsonl" gpt_train adamw 4 > "$T/check.txt" 2>&1; then
        ok "gpt_train, 3 stages, 1f1b, 8 steps across 3 namespaces: PyTorch's per-step losses"
    else
        bad "training across namespaces" "rc=$rc $(tail -n 3 "$T"/rank*.log "$T/check.txt" 2>/dev/null)"
    fi
else
    bad "compile gpt_train into 3 stages" "pippyc failed"
fi

# a rank whose host is unreachable: every other rank must give up within the timeout
printf '10.77.0.1:29620\n10.77.0.2:29621\n10.77.0.99:29622\n' > "$OUT/hosts.bad"
start=$(date +%s)
UCX_TLS=tcp ip netns exec pippy_h0 "$OUT/stage0" --rank 0 --hosts "$OUT/hosts.bad" --timeout 3 \
    --input "idx=$M/gpt_op17.data/input_0.pb" > "$OUT/bad0.log" 2>&1 &
p0=$!
UCX_TLS=tcp ip netns exec pippy_h1 "$OUT/stage1" --rank 1 --hosts "$OUT/hosts.bad" --timeout 3 > "$OUT/bad1.log" 2>&1
rc1=$?
wait $p0; rc0=$?
took=$(( $(date +%s) - start ))
if [ $rc1 -ne 0 ] && [ $took -le 20 ] && grep -qi "rank 2" "$OUT/bad1.log"; then
    ok "a rank that never comes: rank 1 fails in ${took}s naming rank 2"
else
    bad "unreachable rank" "rc1=$rc1 took=${took}s: $(tail -n 2 "$OUT/bad1.log")"
fi
echo "netns: $PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
