#!/bin/sh
# tests/rdma/cluster.sh - the cluster over real verbs, run inside the soft-RoCE guest by `make test-rdma`
# (tests/rdma/vm.sh; busybox sh). Arguments: the node program, a model, the generate program (the programs built
# without -march=native; generate last, as tests/run_tests.sh appends the program it runs). Two nodes listen on the guest's RDMA address; each run's greedy ids must equal the single-node run's:
#   2-node tensor split over RC, 3-node tensor split over UC (macOS's mode), 3-node pipeline over RC;
# then a worker killed during generation must be an error naming it (not a hang), and `--transport tcp` still works.
# Prints "test_rdma_cluster: N passed, M failed" and exits 1 on any failure.
node="${1:?usage: cluster.sh NODE MODEL GENERATE}"
model="${2:?}"
gen="${3:?}"
ip="${TBC_RDMA_IP:-10.99.0.1}"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
log=/tmp/rcluster.$$
mkdir -p "$log"
ids() { sed -E 's/.*"ids":\[([0-9,]*)\].*/\1/' "$1"; }

"$node" --listen "$ip:7001" -t 1 --insecure -m "$model" 2>"$log/n1" &
n1=$!
"$node" --listen "$ip:7002" -t 1 --insecure -m "$model" 2>"$log/n2" &
n2=$!
sleep 1
"$gen" -m "$model" -n 32 --temp 0 -t 1 --json -q >"$log/ref" 2>&1
ref="$(ids "$log/ref")"
[ -n "$ref" ] && ok "single node: ids $ref" || bad "single node run failed: $(cat "$log/ref")"

run() {  # name, expected transport word in the log, generate arguments...
    name="$1"; want="$2"; shift 2
    "$gen" -m "$model" -n 32 --temp 0 -t 1 --json "$@" >"$log/out" 2>"$log/err"
    rc=$?
    got="$(ids "$log/out")"
    if [ "$rc" -eq 0 ] && [ "$got" = "$ref" ] && grep -q "$want" "$log/err"; then
        ok "$name: same ids ($(grep -o "$want[^)]*" "$log/err" | head -n 1))"
    else
        bad "$name: exit $rc, ids '$got'"
        cat "$log/err"
    fi
}
run "2-node tensor split, RC" "RDMA (rxe0, RC" --peers "$ip:7001" --split tensor --transport rdma
run "3-node tensor split, UC" "RDMA (rxe0, UC" --peers "$ip:7001,$ip:7002" --split tensor --transport rdma --rdma-uc
run "3-node pipeline, RC" "RDMA (rxe0, RC" --peers "$ip:7001,$ip:7002" --split pipeline --transport rdma
run "2-node tensor split, Q8_0 sync, RC" "RDMA (rxe0, RC" --peers "$ip:7001" --split tensor --sync q8_0 --transport rdma
run "--transport tcp" "cluster ready" --peers "$ip:7001" --split tensor --transport tcp

# A worker killed while tokens are being generated: an error naming it, within the deadline, not a hang.
"$gen" -m "$model" -n 100000 -c 100000 --temp 0 -t 1 --peers "$ip:7001,$ip:7002" --split tensor --transport rdma \
    -p "Once" >"$log/long" 2>"$log/longerr" &
g=$!
sleep 2
kill -9 "$n2"
t0=$(date +%s)
wait "$g"
rc=$?
t1=$(date +%s)
if [ "$rc" -ne 0 ] && grep -q "$ip:7002" "$log/longerr" && [ $((t1 - t0)) -le 10 ]; then
    ok "a worker killed mid-generation: exit $rc after $((t1 - t0)) s: $(grep generate: "$log/longerr" | head -n 1)"
else
    bad "killed worker: exit $rc after $((t1 - t0)) s"
    tail -n 5 "$log/longerr"
fi
kill "$n1" 2>/dev/null
echo "test_rdma_cluster: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
