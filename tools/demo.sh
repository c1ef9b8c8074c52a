#!/usr/bin/env bash
# tools/demo.sh - what `make demo` runs after building: two local nodes and the server over them, one streamed chat
# answer with its speed, and the server left running for the web page.
#
#   tools/demo.sh [MODEL]       (MODEL: a GGUF file; default: the demo model below, downloaded once)
#
# Environment: DEMO_PORT (the server's, default 8080; 0: any free one; the nodes take free ones), DEMO_PROMPT,
# DEMO_MAX_TOKENS (128), DEMO_PULL_SOURCE (what build/pull fetches), DEMO_DIR (logs, process ids, the key; default
# build/demo).
# Everything runs on 127.0.0.1 with a fresh cluster key.
# `tools/demo.sh stop` (make demo-stop) stops what an earlier run left running.
set -u
cd "$(dirname "$0")/.."
. tools/ports.sh

DEMO_DIR="${DEMO_DIR:-build/demo}"
# The default model: Qwen2.5-0.5B-Instruct (Apache-2.0), Q4_K_M, about 400 MB, from Qwen's own GGUF repository.
PULL_SOURCE="${DEMO_PULL_SOURCE:-Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf}"
PULLED="build/models/${PULL_SOURCE##*/}"
FALLBACK=build/models/demo-random-qwen2-0.5b-q4_k_m.gguf
PORT="${DEMO_PORT:-8080}"
PROMPT="${DEMO_PROMPT:-In two sentences: why would someone run one language model across several computers?}"

stop() {  # the processes an earlier run left
    [ -f "$DEMO_DIR/pids" ] || return 0
    local p
    for p in $(cat "$DEMO_DIR/pids"); do kill "$p" 2>/dev/null; done
    for _ in $(seq 50); do
        local alive=0
        for p in $(cat "$DEMO_DIR/pids"); do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    rm -f "$DEMO_DIR/pids"
}
if [ "${1:-}" = stop ]; then
    stop
    echo "demo: stopped"
    exit 0
fi

die() { echo "demo: $*" >&2; exit 1; }
mkdir -p "$DEMO_DIR" build/models
stop

model="${1:-}"
if [ -z "$model" ]; then
    if [ -f "$PULLED" ]; then
        model="$PULLED"
    else
        echo "== downloading the demo model once: $PULL_SOURCE"
        if build/pull "$PULL_SOURCE" -o build/models --retries 2 --timeout 20; then
            model="$PULLED"
        else
            echo
            echo "NOTE: could not download $PULL_SOURCE (no internet here?)."
            echo "      Using a model made by mkmodel instead: Qwen2-0.5B's shape with RANDOM weights, so its answer"
            echo "      is noise. It still shows the whole path: two nodes, the server, streaming, the web page."
            echo "      With a GGUF file of your own: make demo MODEL=path/to/model.gguf"
            echo
            if [ ! -f "$FALLBACK" ]; then
                vocab=()
                [ -f ../shared/vocab/ggml-vocab-qwen2.gguf ] && vocab=(--vocab ../shared/vocab/ggml-vocab-qwen2.gguf)
                build/mkmodel --shape qwen2-0.5b --type q4_k_m -o "$FALLBACK" "${vocab[@]}" || die "mkmodel failed"
            fi
            model="$FALLBACK"
        fi
    fi
fi
[ -r "$model" ] || die "cannot read the model '$model'"

# A fresh cluster key: the nodes serve only a coordinator that holds it.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DEMO_DIR/cluster.key"
chmod 600 "$DEMO_DIR/cluster.key"
: >"$DEMO_DIR/pids"
started() { echo "$1" >>"$DEMO_DIR/pids"; }
# The nodes take ports the system picks (each prints its own); the server takes DEMO_PORT (0: any free port).
peers=""
for i in 1 2; do
    setsid build/node --listen 127.0.0.1:0 -m "$model" --key-file "$DEMO_DIR/cluster.key" -t 1 \
        >"$DEMO_DIR/node-$i.log" 2>&1 </dev/null &
    started $!
    p="$(port_of_node $! "$DEMO_DIR/node-$i.log" 60)" ||
        { tail -n 20 "$DEMO_DIR/node-$i.log" >&2; stop; die "node $i did not start"; }
    peers="$peers${peers:+,}127.0.0.1:$p"
done
setsid build/server -m "$model" --peers "$peers" --key-file "$DEMO_DIR/cluster.key" \
    --port "$PORT" --parallel 2 --ctx 2048 >"$DEMO_DIR/server.log" 2>&1 </dev/null &
server=$!
started "$server"
echo "== two nodes (${peers//,/ and }) and the server over $model"
# loading and planning take a few seconds for a big model
PORT="$(port_of_server "$server" "$DEMO_DIR/server.log" 60)" ||
    { tail -n 20 "$DEMO_DIR/server.log" >&2; stop; die "the server did not start"; }
curl -sf "127.0.0.1:$PORT/health" >/dev/null 2>&1 || { stop; die "the server on port $PORT does not answer"; }
grep -h "cluster ready" "$DEMO_DIR/server.log" | head -n 1 | sed "s/^tbc: info: /== /"

# One chat request, streamed: the answer prints as it arrives (SSE "data:" lines, their delta.content unescaped).
echo "== you: $PROMPT"
printf '== assistant: '
body=$(printf '{"messages":[{"role":"user","content":"%s"}],"max_tokens":%d,"stream":true,"stream_options":{"include_usage":true}}' \
    "$(printf '%s' "$PROMPT" | sed 's/\\/\\\\/g; s/"/\\"/g')" "${DEMO_MAX_TOKENS:-128}")
t0=$(date +%s.%N)
curl -sN "127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" |
    awk '
    /^data: \{/ {
        if (match($0, /"content":"([^"\\]|\\.)*"/)) {
            s = substr($0, RSTART + 11, RLENGTH - 12); out = ""
            for (i = 1; i <= length(s); i++) {
                c = substr(s, i, 1)
                if (c != "\\") { out = out c; continue }
                n = substr(s, ++i, 1)
                if (n == "n") out = out "\n"; else if (n == "t") out = out "\t"
                else if (n == "u") { i += 4 } else if (n != "r") out = out n
            }
            printf "%s", out; fflush()
        }
        if (match($0, /"completion_tokens":[0-9]+/)) print substr($0, RSTART + 20, RLENGTH - 20) > "/dev/stderr"
    }' 2>"$DEMO_DIR/usage"
t1=$(date +%s.%N)
echo
m="$(curl -s "127.0.0.1:$PORT/metrics")"
tps="$(echo "$m" | sed -n 's/^tbc_decode_tokens_per_second //p')"
ttft="$(echo "$m" | sed -n 's/^tbc_time_to_first_token_seconds //p')"
n="$(cat "$DEMO_DIR/usage" 2>/dev/null)"
printf '== %s tokens in %.2f s: %s tokens/s while decoding, first token after %s s\n' "${n:-?}" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "${tps:-?}" "${ttft:-?}"
echo
echo "The server keeps running: open http://127.0.0.1:$PORT/ for the chat and the live cluster view."
echo "OpenAI-compatible API at http://127.0.0.1:$PORT/v1 (logs in $DEMO_DIR/). Stop it with: make demo-stop"
