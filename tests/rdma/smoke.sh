#!/bin/sh
# tests/rdma/smoke.sh - the RDMA checks `make test-rdma` runs inside the guest (tests/rdma/vm.sh runs this with
# busybox sh; it is not meant for the host). Arguments: the verbs smoke test program.
#   - ibv_devinfo shows rxe0 with port 1 ACTIVE on Ethernet (RoCE);
#   - the verbs smoke test (its "test_rdma_smoke: N passed, M failed" counts are added to ours);
#   - ibv_rc_pingpong and ibv_uc_pingpong, server and client as two processes over 10.99.0.1, and perftest's
#     ib_write_lat and ib_send_lat, when the guest has them.
# Prints "test_rdma: N passed, M failed" (everything above added up) and exits 1 on any failure.
smoke="${1:?usage: smoke.sh VERBS_SMOKE_PROGRAM}"
dev="${TBC_RDMA_DEV:-rxe0}"
ip="${TBC_RDMA_IP:-10.99.0.1}"
gid="${TBC_RDMA_GID_INDEX:-1}"
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
log=/tmp/smoke.$$
mkdir -p "$log"

info="$(ibv_devinfo -d "$dev" 2>&1)"
if echo "$info" | grep -q 'state:.*PORT_ACTIVE' && echo "$info" | grep -q 'link_layer:.*Ethernet'; then
    ok "ibv_devinfo: $dev port 1 ACTIVE, link layer Ethernet," \
        "$(echo "$info" | grep -o 'active_mtu:.*' | tr -s '\t ' ' ')"
else
    bad "ibv_devinfo -d $dev:"
    echo "$info"
fi

"$smoke" >"$log/smoke" 2>&1
rc=$?
cat "$log/smoke"
line="$(grep -E '^test_rdma_smoke: [0-9]+ passed, [0-9]+ failed' "$log/smoke" | tail -n 1)"
if [ -n "$line" ]; then
    p="$(echo "$line" | sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')"
    f="$(echo "$line" | sed -E 's/^[^:]*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')"
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || bad "$smoke exited $rc"
else
    bad "$smoke printed no result line (exit $rc)"
fi

# listening PORT: wait up to 10 s for a TCP listener on PORT (the servers below exchange QP numbers over TCP).
listening() {
    i=0
    while [ "$i" -lt 200 ]; do
        netstat -ltn 2>/dev/null | grep -q ":$1 " && return 0
        usleep 50000
        i=$((i + 1))
    done
    return 1
}

# pair NAME PORT SERVER_CMD...: run the command as server, then as client of 10.99.0.1:PORT; both must exit 0.
pair() {
    name="$1"
    port="$2"
    shift 2
    if ! command -v "$1" >/dev/null; then
        echo "SKIP: $1 is not in the guest"
        return
    fi
    "$@" >"$log/$name.server" 2>&1 &
    server=$!
    if ! listening "$port"; then
        kill "$server" 2>/dev/null
        bad "$name: the server never listened on port $port"
        cat "$log/$name.server"
        return
    fi
    timeout 120 "$@" "$ip" >"$log/$name.client" 2>&1
    crc=$?
    timeout 10 sh -c "while kill -0 $server 2>/dev/null; do usleep 20000; done"
    kill "$server" 2>/dev/null
    wait "$server"
    src=$?
    if [ "$crc" -eq 0 ] && [ "$src" -eq 0 ]; then
        ok "$name: $(awk '/usec\/iter/ { sub(/^ +/, ""); print; next }
            $1 ~ /^[0-9]+$/ && NF >= 6 { printf "%s B x %s: typical %s us, average %s us\n", $1, $2, $5, $6 }' \
            "$log/$name.client" | tail -n 1)"
    else
        bad "$name: client exit $crc, server exit $src"
        sed 's/^/    client: /' "$log/$name.client"
        sed 's/^/    server: /' "$log/$name.server"
    fi
}

pair ibv_rc_pingpong 18515 ibv_rc_pingpong -d "$dev" -g "$gid" -p 18515 -s 4096 -n 100
pair ibv_uc_pingpong 18516 ibv_uc_pingpong -d "$dev" -g "$gid" -p 18516 -s 4096 -n 100
pair ib_write_lat 18517 ib_write_lat -d "$dev" -x "$gid" -p 18517 -s 64 -n 100
pair ib_send_lat 18518 ib_send_lat -d "$dev" -x "$gid" -p 18518 -s 64 -n 100

rm -rf "$log"
echo "test_rdma: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
