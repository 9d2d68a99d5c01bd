#!/bin/sh
# test_pippyrun.sh — pippyrun against fake OUT/ folders: a hand-written schedule.json and hosts
# file, and tiny shell scripts as the rank "programs" (one succeeds, one fails, one sleeps, one
# ignores SIGTERM, one crashes). Checks the "[rank r] " prefixes, the arguments each rank gets,
# exit codes, that no process is left behind, and the merged trace.
#   sh test/e2e/test_pippyrun.sh BUILD      (BUILD holds pippyrun; prints "N passed, N failed")
B=${1:-build}
cd "$(dirname "$0")/../.." || exit 2
PR="$(pwd)/$B/pippyrun"
[ -x "$PR" ] || { echo "no $PR (build it first)"; echo "0 passed, 1 failed"; exit 1; }
T=$(mktemp -d /tmp/pippyrun-test-XXXXXX)
trap 'pkill -KILL -f "$T/" 2>/dev/null; rm -rf "$T"' EXIT
PASS=0
FAIL=0

check() { # name, condition (0 = true), details when false
    if [ "$2" -eq 0 ]; then
        PASS=$((PASS + 1))
        echo "ok   $1"
    else
        FAIL=$((FAIL + 1))
        echo "FAIL $1"
        printf '%s\n' "$3" | tail -n 25 | sed 's/^/     /'
    fi
}
has() { grep -qF -- "$2" "$1"; }  # file, text
now_ms() { echo $(($(date +%s%N) / 1000000)); }
left() { pgrep -f "$T/" > /dev/null && echo yes || echo no; }  # a process of this test still there?

# The programs. Each gets: --rank r --schedule S --hosts H [user args...].
mkdir -p "$T/progs"
cat > "$T/progs/ok" <<'EOF'
#!/bin/sh
rank=; trace=
prev=
for a in "$@"; do
    [ "$prev" = --rank ] && rank=$a
    [ "$prev" = --trace ] && trace=$a
    prev=$a
done
echo "hello from rank $rank"
echo "args: $*"
echo "warning from rank $rank" >&2
if [ -n "$trace" ]; then
    printf '[{"name":"F","cat":"compute","ph":"X","ts":%d,"dur":5,"pid":%d,"tid":0,"args":{"microbatch":0}},\n{"name":"process_name","ph":"M","pid":%d,"tid":0,"args":{"name":"rank %d (stage %d)"}}]\n' \
        "$((1000 + rank))" "$rank" "$rank" "$rank" "$rank" > "$trace"
fi
printf 'last words without a newline'
exit 0
EOF
cat > "$T/progs/fail" <<'EOF'
#!/bin/sh
sleep 0.3
echo "rank failing on purpose" >&2
exit 3
EOF
cat > "$T/progs/sleep" <<'EOF'
#!/bin/sh
echo "sleeping"
sleep 30
echo "woke up"
EOF
cat > "$T/progs/stubborn" <<'EOF'
#!/bin/sh
trap '' TERM
echo "ignoring SIGTERM"
sleep 30
EOF
cat > "$T/progs/crash" <<'EOF'
#!/bin/sh
sleep 0.2
kill -SEGV $$
EOF
chmod +x "$T/progs/"*

mkout() { # dir, programs for rank 0, 1, ...
    d=$1
    shift
    mkdir -p "$d"
    printf '{"config":{"ranks":%d},"ranks":[' "$#" > "$d/schedule.json"
    r=0
    : > "$d/hosts"
    for p in "$@"; do
        cp "$T/progs/$p" "$d/stage$r"
        [ $r -gt 0 ] && printf ',' >> "$d/schedule.json"
        printf '{"rank":%d,"stage":%d,"program":"stage%d","actions":[]}' $r $r $r >> "$d/schedule.json"
        echo "127.0.0.1:$((29500 + r))" >> "$d/hosts"
        r=$((r + 1))
    done
    printf ']}\n' >> "$d/schedule.json"
}

# 1. success: prefixes on stdout and stderr, the arguments, the exit code
mkout "$T/good" ok ok
"$PR" "$T/good/" --input x=a.npy --output y=b.npy --timeout 7 --threads 2 -- --extra1 foo \
    > "$T/o1" 2> "$T/e1"
rc=$?
check "two succeeding ranks: exit 0" $rc "exit $rc: $(cat "$T/e1")"
has "$T/o1" "[rank 0] hello from rank 0" && has "$T/o1" "[rank 1] hello from rank 1"
check "stdout lines are prefixed [rank r]" $? "$(cat "$T/o1")"
has "$T/e1" "[rank 1] warning from rank 1" && ! has "$T/o1" "warning"
check "stderr lines are prefixed and stay on stderr" $? "$(cat "$T/e1")"
has "$T/o1" "[rank 1] last words without a newline"
check "an unfinished last line is still printed, prefixed" $? "$(cat "$T/o1")"
has "$T/o1" "[rank 1] args: --rank 1 --schedule $T/good/schedule.json --hosts /tmp/pippyrun-hosts-" &&
    has "$T/o1" " --input x=a.npy --output y=b.npy --timeout 7 --threads 2 --extra1 foo"
check "each rank gets --rank --schedule --hosts (free local ports), the user's arguments and the extras" $? "$(cat "$T/o1")"
"$PR" "$T/good/" --fixed-ports > "$T/o1f" 2> "$T/e1f"
has "$T/o1f" "[rank 1] args: --rank 1 --schedule $T/good/schedule.json --hosts $T/good/hosts"
check "--fixed-ports passes OUT/hosts as it is" $? "$(cat "$T/o1f")"
own=$(sed -n 's/.*--hosts \(\/tmp\/pippyrun-hosts-[A-Za-z0-9]*\).*/\1/p' "$T/o1" | head -n 1)
[ -n "$own" ] && [ ! -e "$own" ]
check "the private hosts file ($own) is removed afterwards" $? ""
n=$(grep -c '^\[rank [01]\] ' "$T/o1")
[ "$n" -eq 6 ]
check "no other output on stdout (6 lines, got $n)" $? "$(cat "$T/o1")"

# 2. one rank fails: the others are stopped, the first failure's code comes out
mkout "$T/fail" ok fail sleep
t0=$(now_ms)
"$PR" "$T/fail" > "$T/o2" 2> "$T/e2"
rc=$?
dt=$(($(now_ms) - t0))
check "a failing rank: exit 3 (its code)" $([ $rc -eq 3 ]; echo $?) "exit $rc: $(cat "$T/e2")"
has "$T/e2" "pippyrun: rank 1 ($T/fail/stage1) failed with exit code 3"
check "the failure is named: rank, program, code" $? "$(cat "$T/e2")"
has "$T/e2" "[rank 1] rank failing on purpose"
check "the failing rank's own message is shown" $? "$(cat "$T/e2")"
[ $dt -lt 5000 ] && ! has "$T/o2" "woke up"
check "the sleeping rank was stopped at once (${dt} ms)" $? "$(cat "$T/o2")"
check "no process is left behind after a failure" $([ "$(left)" = no ]; echo $?) "$(pgrep -af "$T/")"

# 3. a rank that ignores SIGTERM gets SIGKILL after the grace period
mkout "$T/stub" fail stubborn
t0=$(now_ms)
"$PR" "$T/stub" > "$T/o3" 2> "$T/e3"
rc=$?
dt=$(($(now_ms) - t0))
[ $rc -eq 3 ] && [ $dt -ge 2000 ] && [ $dt -lt 8000 ]
check "a rank ignoring SIGTERM is killed after the 2 s grace (exit $rc, ${dt} ms)" $? "$(cat "$T/e3")"
check "no process is left behind (SIGKILL)" $([ "$(left)" = no ]; echo $?) "$(pgrep -af "$T/")"

# 4. a rank killed by a signal: 128+signal
mkout "$T/crash" crash sleep
"$PR" "$T/crash" > "$T/o4" 2> "$T/e4"
rc=$?
[ $rc -eq 139 ] && has "$T/e4" "rank 0 ($T/crash/stage0) failed with exit code 139 (killed by SIGSEGV)"
check "a rank killed by SIGSEGV: exit 139, named" $? "exit $rc: $(cat "$T/e4")"
check "no process is left behind after a crash" $([ "$(left)" = no ]; echo $?) "$(pgrep -af "$T/")"

# 5. --trace: the per-rank parts are merged into one JSON array and deleted
mkout "$T/tr" ok ok ok
"$PR" "$T/tr" --trace "$T/trace.json" > "$T/o5" 2> "$T/e5"
rc=$?
check "with --trace: exit 0" $rc "$(cat "$T/e5")"
python3 - "$T/trace.json" > "$T/p5" 2>&1 <<'EOF'
import json, sys
ev = json.load(open(sys.argv[1]))
assert isinstance(ev, list), "not a JSON array"
xs = sorted(e["pid"] for e in ev if e["ph"] == "X")
ms = sorted(e["args"]["name"] for e in ev if e["ph"] == "M")
assert xs == [0, 1, 2], xs
assert ms == ["rank 0 (stage 0)", "rank 1 (stage 1)", "rank 2 (stage 2)"], ms
print("merged", len(ev), "events")
EOF
check "the merged trace is one JSON array with every rank's events" $? "$(cat "$T/p5" "$T/e5")"
ls "$T"/trace.json.rank* > /dev/null 2>&1
check "the per-rank trace parts are deleted" $([ $? -ne 0 ]; echo $?) "$(ls "$T")"
mkout "$T/trfail" ok fail
"$PR" "$T/trfail" --trace "$T/trace2.json" > /dev/null 2>&1
rc=$?
[ $rc -eq 3 ] && [ ! -e "$T/trace2.json" ]
check "no merged trace when a rank failed" $? "exit $rc"

# 6. SIGINT to pippyrun reaches the ranks
mkout "$T/int" sleep sleep
"$PR" "$T/int" > "$T/o6" 2> "$T/e6" &
pid=$!
sleep 0.5
t0=$(now_ms)
kill -INT $pid
wait $pid
rc=$?
dt=$(($(now_ms) - t0))
[ $rc -eq 130 ] && [ $dt -lt 3000 ] && ! has "$T/o6" "woke up"
check "SIGINT is forwarded: the ranks stop, exit 130 (${dt} ms)" $? "exit $rc: $(cat "$T/e6")"
check "no process is left behind after SIGINT" $([ "$(left)" = no ]; echo $?) "$(pgrep -af "$T/")"
"$PR" "$T/int" > "$T/o7" 2> "$T/e7" &
pid=$!
sleep 0.5
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] && [ "$(left)" = no ]
check "SIGTERM is forwarded too: exit 143, nothing left" $? "exit $rc: $(cat "$T/e7")"

# 7. bad usage and bad folders
"$PR" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 2 ] && has "$T/o8" "no OUT folder" && has "$T/o8" "usage:"
check "no OUT folder: exit 2 with the usage" $? "exit $rc: $(cat "$T/o8")"
"$PR" "$T/good" --frobnicate > "$T/o8" 2>&1
rc=$?
[ $rc -eq 2 ] && has "$T/o8" "unknown option --frobnicate"
check "an unknown option: exit 2" $? "exit $rc: $(cat "$T/o8")"
"$PR" "$T/good" --timeout soon > "$T/o8" 2>&1
rc=$?
[ $rc -eq 2 ] && has "$T/o8" "--timeout"
check "a bad --timeout: exit 2" $? "exit $rc: $(cat "$T/o8")"
"$PR" "$T/good" --input x > "$T/o8" 2>&1
rc=$?
[ $rc -eq 2 ] && has "$T/o8" "NAME=FILE"
check "--input without NAME=FILE: exit 2" $? "exit $rc: $(cat "$T/o8")"
"$PR" "$T/nothing-here" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 1 ] && has "$T/o8" "$T/nothing-here is not a folder"
check "a missing OUT folder: exit 1, named" $? "exit $rc: $(cat "$T/o8")"
mkdir -p "$T/empty"
"$PR" "$T/empty" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 1 ] && has "$T/o8" "$T/empty/schedule.json"
check "no schedule.json: exit 1, named" $? "exit $rc: $(cat "$T/o8")"
mkout "$T/noprog" ok ok
rm "$T/noprog/stage1"
"$PR" "$T/noprog" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 1 ] && has "$T/o8" "rank 1, $T/noprog/stage1, is missing" && [ "$(left)" = no ]
check "a missing program: exit 1, named, nothing started" $? "exit $rc: $(cat "$T/o8")"
mkout "$T/badjson" ok
echo '{"ranks": [' > "$T/badjson/schedule.json"
"$PR" "$T/badjson" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 1 ] && has "$T/o8" "not valid JSON"
check "a broken schedule.json: exit 1" $? "exit $rc: $(cat "$T/o8")"
mkout "$T/dup" ok ok
sed -i 's/"rank":1/"rank":0/' "$T/dup/schedule.json"
"$PR" "$T/dup" > "$T/o8" 2>&1
rc=$?
[ $rc -eq 1 ] && has "$T/o8" "each once"
check "a rank listed twice: exit 1" $? "exit $rc: $(cat "$T/o8")"

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
