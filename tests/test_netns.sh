#!/usr/bin/env bash
# tests/test_netns.sh - the cluster across real, separate network stacks: a coordinator and two workers, each in its
# own network namespace, joined by veth pairs (a star without a bridge: 10.199.1.0/30 to worker 1, 10.199.2.0/30 to
# worker 2). These kernels have no netem, so latency and faults come from build/tests/relay in the coordinator's
# namespace.
#
#   - greedy ids of one node equal 2-node tensor, 3-node tensor and 3-node pipeline runs across the namespaces,
#     and the same through a relay that delays every message by 0.2 ms;
#   - a relay cut mid-generation is a clear error naming the peer, at once; a relay stall is a timeout error within
#     the deadline; a worker's veth brought down mid-generation is an error within the deadline;
#   - after each fault (relay resumed, link up again) the next generate gives the same ids again, and at the end
#     every node and relay is still running.
#
# Needs root and `ip netns` (else it prints a SKIP line and passes nothing); run from anywhere after `make`.
# Prints "test_netns: N passed, M failed" and exits 1 on any failure; logs stay in build/tests/netns-PID/ then.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

PROMPT="Once upon a time"
DEADLINE=2      # the cluster timeout: generate --timeout where it has one, else its default (2 s)
SLACK=3         # seconds allowed on top of the deadline for an error to surface on a loaded 2-core machine
DELAY_US=200
SHARED="${SHARED:-../shared}"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
result() { local rc="$1"; shift; if [ "$rc" -eq 0 ]; then ok "$@"; else bad "$@"; fi; }  # result $? WHAT
skip() { echo "SKIP: test_netns skipped: $*"; echo "test_netns: 0 passed, 0 failed"; exit 0; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
within() { awk -v t="$1" -v m="$2" 'BEGIN { exit !(t <= m) }'; }

[ "$(id -u)" -eq 0 ] || skip "not root (network namespaces need CAP_SYS_ADMIN)"
command -v ip >/dev/null || skip "no 'ip' command (iproute2)"
for p in build/node build/generate build/mkmodel build/tests/relay; do
    [ -x "$p" ] || { bad "$p is not built (run make)"; echo "test_netns: $passed passed, $failed failed"; exit 1; }
done

deadline_opt=()
if build/generate --help 2>&1 | grep -q -- '--timeout'; then deadline_opt=(--timeout "$DEADLINE"); fi

ns="tbcnet$$"
C="$ns-c"
W1="$ns-w1"
W2="$ns-w2"
work="build/tests/netns-$$"
pids=()      # nodes and relays
names=()     # what each of pids is
running=""   # the generate a fault test is waiting for
created=()
cleanup() {
    trap '' PIPE  # a reader that went away must not stop the cleaning up
    for p in $running "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for n in "${created[@]}"; do ip netns del "$n" 2>/dev/null; done
    if [ "$failed" -eq 0 ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE  # so that the EXIT trap runs
rm -rf "$work" && mkdir -p "$work"

ip netns add "$C" 2>"$work/netns.err" || skip "ip netns add failed: $(cat "$work/netns.err")"
created+=("$C")
for n in "$W1" "$W2"; do
    if ! ip netns add "$n"; then bad "ip netns add $n"; exit 1; fi
    created+=("$n")
done
for n in "${created[@]}"; do ip -n "$n" link set lo up; done
# veth i: "to-wI" in the coordinator's namespace (10.199.I.1), "to-c" in worker I's (10.199.I.2).
for i in 1 2; do
    w="$ns-w$i"
    if ! ip link add "to-w$i" netns "$C" type veth peer name to-c netns "$w" 2>"$work/veth.err"; then
        skip "cannot create a veth pair: $(cat "$work/veth.err")"
    fi
    if ! { ip -n "$C" addr add "10.199.$i.1/30" dev "to-w$i" && ip -n "$C" link set "to-w$i" up &&
           ip -n "$w" addr add "10.199.$i.2/30" dev to-c && ip -n "$w" link set to-c up; }; then
        bad "configure veth $i"
        exit 1
    fi
done
echo "  namespaces $C, $W1, $W2; veth 10.199.1.1 <-> 10.199.1.2, 10.199.2.1 <-> 10.199.2.2"

# Models: stories260K for the answers (a real model), when ../shared has it; always a random "tiny" model from
# mkmodel for the faults, since it has no end of text and generates to its 2048-token context: long enough to be
# interrupted mid-generation even without a relay.
tiny="$work/tiny-q8_0.gguf"
build/mkmodel --shape tiny --type q8_0 --seed 3 -o "$tiny" >/dev/null 2>&1 || { bad "mkmodel"; exit 1; }
model="$SHARED/models/stories260K-f32.gguf"
if [ ! -r "$model" ]; then
    echo "SKIP: $model absent: the answers are checked on a model made by mkmodel only"
    model="$tiny"
fi
key="$work/cluster.key"
echo "netns test key $$" >"$key"

# start_node NS ADDR MODEL: a worker listening on ADDR (any port); sets port.
start_node() {
    local log="$work/node-$1-${3##*/}.log"
    ip netns exec "$1" build/node --listen "$2:0" -m "$3" -t 1 --key-file "$key" 2>"$log" &
    pids+=($!)
    names+=("the node in $1 on $2 with ${3##*/}")
    port=""
    for _ in $(seq 200); do
        port="$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$log" | head -n 1)"
        [ -n "$port" ] && return 0
        sleep 0.05
    done
    bad "node in $1 on $2 did not start: $(tail -n 3 "$log")"
    return 1
}

# start_relay TO: a relay in the coordinator's namespace on 127.0.0.1 (any port) to TO; sets relay_port, relay_pid.
start_relay() {
    local log="$work/relay-$1.log"
    ip netns exec "$C" build/tests/relay --listen 127.0.0.1:0 --to "$1" --delay-us "$DELAY_US" 2>"$log" &
    relay_pid=$!
    pids+=("$relay_pid")
    names+=("the relay to $1")
    relay_port=""
    for _ in $(seq 200); do
        relay_port="$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$log" | head -n 1)"
        [ -n "$relay_port" ] && return 0
        sleep 0.05
    done
    bad "relay to $1 did not start: $(tail -n 3 "$log")"
    return 1
}

# ids MODEL N [generate options...]: greedy ids from the coordinator's namespace, as "1,2,3" (empty on failure).
ids() {
    local m="$1" n="$2"
    shift 2
    ip netns exec "$C" timeout 60 build/generate -m "$m" -p "$PROMPT" -n "$n" --temp 0 -t 1 --json --key-file "$key" \
        "$@" 2>>"$work/generate.err" | sed -n 's/.*"ids":\[\([0-9,]*\)\].*/\1/p'
}

start_node "$W1" 10.199.1.2 "$model" && s1="10.199.1.2:$port" || exit 1
start_node "$W2" 10.199.2.2 "$model" && s2="10.199.2.2:$port" || exit 1
start_node "$W1" 10.199.1.2 "$tiny" && t1="10.199.1.2:$port" || exit 1
start_node "$W2" 10.199.2.2 "$tiny" && t2="10.199.2.2:$port" || exit 1
start_relay "$s1" && rs1="127.0.0.1:$relay_port" || exit 1
start_relay "$t1" && rt1="127.0.0.1:$relay_port" && relay="$relay_pid" || exit 1

# ---- the same answers across namespaces, and through a 0.2 ms relay ----
t_start=$(now)
ref="$(ids "$model" 40)"
[ "$(echo "$ref" | tr ',' '\n' | grep -c .)" -eq 40 ]; result $? "one node gives 40 ids (${model##*/})"
same() {  # same WHAT PEERS SPLIT
    local got t0 dt
    t0=$(now)
    got="$(ids "$model" 40 --peers "$2" --split "$3")"
    dt="$(secs "$t0" "$(now)")"
    [[ -n $got && $got == "$ref" ]]; result $? "$1: ids equal one node ($dt s)"
}
same "2 nodes, tensor" "$s1" tensor
same "3 nodes, tensor" "$s1,$s2" tensor
same "3 nodes, pipeline" "$s1,$s2" pipeline
same "2 nodes, tensor, through the relay (${DELAY_US} us)" "$rs1" tensor
same "3 nodes, pipeline, one link through the relay" "$rs1,$s2" pipeline
tref="$(ids "$tiny" 30)"
[ "$(echo "$tref" | tr ',' '\n' | grep -c .)" -eq 30 ]; result $? "one node gives 30 ids (${tiny##*/})"

# ---- faults mid-generation ----
# fault WHAT PEERS SPLIT KIND_RE ACTION...: starts generating to the end of the context, waits for the first text,
# runs ACTION, then wants generate to fail within the deadline with an error that names PEER (the first of PEERS
# unless fault_peer is set) and matches KIND_RE.
fault() {
    local what="$1" peers="$2" split="$3" kind="$4" out="$work/fault.out" err="$work/fault.err" g t0 t1 rc dt msg
    local peer="${fault_peer:-${peers%%,*}}"
    shift 4
    : >"$out"
    ip netns exec "$C" timeout 60 build/generate -m "$tiny" -p "$PROMPT" -n 0 --temp 0 -t 1 --key-file "$key" \
        --peers "$peers" --split "$split" "${deadline_opt[@]}" >"$out" 2>"$err" &
    g=$!
    running="$g"
    for _ in $(seq 200); do [ -s "$out" ] || ! kill -0 "$g" 2>/dev/null && break; sleep 0.05; done
    sleep 0.3
    if ! kill -0 "$g" 2>/dev/null; then
        wait "$g"
        bad "$what: generate ended before the fault (exit $?): $(tail -n 2 "$err")"
        running=""
        return
    fi
    t0=$(now)
    "$@"
    wait "$g"
    rc=$?
    t1=$(now)
    running=""
    dt="$(secs "$t0" "$t1")"
    msg="$(grep -a . "$err" | tail -n 1)"
    [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ]; result $? "$what: generate fails (exit $rc)"
    within "$dt" "$((DEADLINE + SLACK))"; result $? "$what: within the deadline (${dt} s <= $DEADLINE + $SLACK s)"
    [[ $msg == *"$peer"* ]] && grep -qiE "$kind" <<<"$msg"; result $? "$what: the error names $peer and what happened"
    echo "        $what: $(wc -c <"$out") bytes of text, then after $dt s: $msg"
}
recovers() {  # recovers WHAT PEERS SPLIT
    local got t0 dt
    t0=$(now)
    got="$(ids "$tiny" 30 --peers "$2" --split "$3")"
    dt="$(secs "$t0" "$(now)")"
    [[ -n $got && $got == "$tref" ]]; result $? "$1: the next generate gives the same ids ($dt s)"
}

fault "relay cut, tensor" "$rt1" tensor 'closed|reset|died|lost' kill -USR2 "$relay"
recovers "after the cut, tensor" "$rt1" tensor
fault "relay cut, pipeline" "$rt1,$t2" pipeline 'closed|reset|died|lost' kill -USR2 "$relay"
recovers "after the cut, pipeline" "$rt1,$t2" pipeline

fault "relay stall, tensor" "$rt1" tensor 'in time|timed out|timeout' kill -USR1 "$relay"
kill -HUP "$relay"
recovers "after the stall, tensor" "$rt1" tensor
fault "relay stall, pipeline" "$rt1,$t2" pipeline 'in time|timed out|timeout' kill -USR1 "$relay"
kill -HUP "$relay"
recovers "after the stall, pipeline" "$rt1,$t2" pipeline

fault_peer="$t2" fault "worker 2's veth down, tensor" "$t1,$t2" tensor 'in time|timed out|timeout|unreachable|closed|lost' \
    ip -n "$W2" link set to-c down
ip -n "$W2" link set to-c up
# The coordinator's address resolution for worker 2, begun while the link was down, has its last probe lost in the
# dead link: whatever waits on it when it expires fails with "No route to host" (seen: the first connect, 1 s after
# the link came up). A real network settles first; so does this one before the next request.
t0=$(now)
for _ in $(seq 100); do ip -n "$C" neigh show 10.199.2.2 | grep -q INCOMPLETE || break; sleep 0.05; done
echo "        the coordinator's neighbour entry for worker 2 settled $(secs "$t0" "$(now)") s after the link came up"
recovers "link up again, tensor" "$t1,$t2" tensor

dead=0
for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        wait "${pids[$i]}"
        bad "${names[$i]} died on the way (exit status $?)"
        dead=$((dead + 1))
    fi
done
[ "$dead" -eq 0 ] && ok "every node and relay is still running"

echo "  $(secs "$t_start" "$(now)") s in all"
echo "test_netns: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
