#!/bin/sh
# tests/rdma/bench.sh - inside the soft-RoCE guest (`make bench-rdma`): the same 2-node tensor-parallel decode and
# all-reduce measurement over RDMA (RC, then UC) and over TCP, side by side. The guest is emulated (TCG, soft-RoCE):
# the numbers show the relative cost of the transports, not hardware speed.
# Arguments: the node program, a model, the bench program.
node="${1:?usage: bench.sh NODE MODEL BENCH}"
model="${2:?}"
bench="${3:?}"
ip="${TBC_RDMA_IP:-10.99.0.1}"
"$node" --listen "$ip:7001" -t 1 --insecure -m "$model" 2>/tmp/bench-node.log &
n=$!
sleep 1
for t in "rdma" "rdma --rdma-uc" "tcp"; do
    echo "== transport $t"
    # shellcheck disable=SC2086
    "$bench" -m "$model" -t 1 -p 32 -n 128 -r 3 --peers "$ip:7001" --split tensor --transport $t 2>&1 |
        grep -E '^(prefill|decode|comm|all-reduce|link)'
done
kill "$n"
