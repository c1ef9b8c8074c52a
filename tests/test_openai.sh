#!/usr/bin/env bash
# tests/test_openai.sh - the official OpenAI Node.js client (npm "openai", the version pinned in
# tests/openai/package.json) against build/server over a 2-node cluster with an API key: tests/openai/test_openai.mjs
# (models, chat and text completions whole and streamed, stop, seed, error classes, abort, two requests at once).
# The client is installed once into ${XDG_CACHE_HOME:-~/.cache}/tbcluster/openai-node, shared by all clones; without
# node, npm or the network this counts as a failure. Prints "test_openai: N passed, M failed". Run from the
# repository root.
. "$(dirname "$0")/lib.sh" openai
show_logs() {  # the logs' tails when something failed
    [ "$failed" -gt 0 ] || return 0
    for f in "$tmp"/*.log; do
        [ -s "$f" ] || continue
        echo "--- tail of $(basename "$f"):"
        tail -n 6 "$f" | sed 's/^/    /'
    done
}

# ---- the client: node, and openai@VERSION installed once into the shared cache ----
if ! command -v node >/dev/null 2>&1; then
    bad "node is missing: cannot run the OpenAI Node.js client"
    finish
fi
version="$(node -p 'require("./tests/openai/package.json").dependencies.openai' 2>/dev/null)"
[ -n "$version" ] || { bad "no openai version pinned in tests/openai/package.json"; finish; }
dir="${XDG_CACHE_HOME:-$HOME/.cache}/tbcluster/openai-node"
installed() { [ "$(node -p "require('$dir/node_modules/openai/package.json').version" 2>/dev/null)" = "$version" ]; }
if ! installed; then
    if ! command -v npm >/dev/null 2>&1; then
        bad "npm is missing: cannot install the OpenAI Node.js client openai@$version"
        finish
    fi
    mkdir -p "$dir"
    (  # clones testing at once install it once
        command -v flock >/dev/null 2>&1 && flock 9
        installed || timeout 300 npm install --prefix "$dir" --save-exact --no-audit --no-fund --no-update-notifier \
            --loglevel=error "openai@$version" </dev/null
    ) 9>"$dir/.lock" >"$tmp/npm.log" 2>&1
    if ! installed; then
        bad "npm install openai@$version into $dir failed (no network?): $(grep -m 1 -i 'error' "$tmp/npm.log")"
        finish
    fi
fi
ok "the OpenAI Node.js client openai@$version (node $(node --version), in $dir)"

# ---- the model and two 2-node clusters: a short context (256) and a long one (for the abort test) ----
use_model
key="k-$$-$RANDOM"
cluster() {  # cluster NAME CTX: a worker node, then the server over it, waiting until it listens; sets $server_port
    start_node "$1-node" -t 1 -m "$model" && start_server "$1-server" -t 1 --peers "127.0.0.1:$node_port" \
        --api-key "$key" --ctx "$2" && grep -q 'cluster ready: 2 nodes' "$tmp/$1-server.log"
}
cluster short 256
check $? "a server with --ctx 256 over a 2-node cluster starts"
short_port="$server_port"
cluster long 60000
check $? "a server with --ctx 60000 over a 2-node cluster starts"
long_port="$server_port"

# ---- the client's checks ----
TBC_URL="http://127.0.0.1:$short_port/v1" TBC_URL_LONG="http://127.0.0.1:$long_port/v1" TBC_API_KEY="$key" \
    TBC_MODEL="$(basename "$model")" TBC_CTX=256 OPENAI_NODE_DIR="$dir" \
    timeout 120 node tests/openai/test_openai.mjs >"$tmp/client.out" 2>"$tmp/client.log"
rc=$?
cat "$tmp/client.out"
passed=$((passed + $(grep -c '^  ok ' "$tmp/client.out")))
failed=$((failed + $(grep -c '^FAIL: ' "$tmp/client.out")))
if [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$tmp/client.out"; then
    bad "tests/openai/test_openai.mjs exited with status $rc$([ "$rc" -eq 124 ] && echo ' (timed out)')"
fi
show_logs
finish
