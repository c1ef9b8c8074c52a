# tests/lib.sh - what the shell tests share. Source it first, with the test's name:
#
#     . "$(dirname "$0")/lib.sh" server
#
# It moves to the repository root and gives:
#   ok WHAT, bad WHAT        count a pass or a failure, and print it ("  ok    WHAT" / "FAIL: WHAT")
#   check STATUS WHAT        ok when STATUS is 0, else bad: `[ ... ]; check $? "what"`
#   finish                   prints "test_NAME: N passed, M failed" (what tests/run_tests.sh adds up) and exits,
#                            non-zero when anything failed
#   $tmp                     build/tests/NAME-PID, made now and removed at exit
#   pids                     processes to kill at exit (`pids+=($!)`); a test's own at_exit function runs first
#   use_model                sets $model: ../shared's stories260K (Q8_0), else a tiny random model made by mkmodel
#   start_node NAME ARGS...  build/node ARGS on a port of 127.0.0.1 the system picks (log $tmp/NAME.log), waiting
#                            until it listens; sets $node_port
#   start_server NAME ARGS...  build/server -m $model ARGS on a port the system picks (--port 0; log $tmp/NAME.log),
#                            waiting until it listens (after joining its cluster); sets $server_port
# Servers take ports the system picks and report them: a fixed or guessed port can be taken by another process, or
# by the local end of an outgoing connection (the ephemeral range is 32768-60999 on Linux).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
test_name="$1"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local rc="$1"; shift; if [ "$rc" -eq 0 ]; then ok "$@"; else bad "$@"; fi; }
finish() { echo "test_$test_name: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
tmp="build/tests/$test_name-$$"
mkdir -p "$tmp"
pids=()
lib_cleanup() {
    if declare -F at_exit >/dev/null; then at_exit; fi
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap lib_cleanup EXIT
use_model() {
    model=../shared/models/stories260K-q8_0.gguf
    [ -r "$model" ] && return 0
    echo "SKIP: ../shared absent: a random model made by mkmodel stands in for stories260K"
    model="$tmp/tiny.gguf"
    build/mkmodel --shape tiny --type q8_0 --seed 3 -o "$model" >/dev/null 2>&1 || { bad "build/mkmodel makes a model"; finish; }
}

. tools/ports.sh
start_node() {
    local name="$1"
    shift
    build/node --listen 127.0.0.1:0 "$@" 2>"$tmp/$name.log" &
    pids+=($!)
    node_port="$(port_of_node $! "$tmp/$name.log" 20)"
}
start_server() {
    local name="$1"
    shift
    build/server -m "$model" --port 0 "$@" 2>"$tmp/$name.log" &
    pids+=($!)
    server_port="$(port_of_server $! "$tmp/$name.log" 20)"
}
