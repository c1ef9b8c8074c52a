#!/usr/bin/env bash
# tests/test_server.sh - build/server over HTTP with curl: the endpoints, whole and streamed (SSE) completions, usage
# counts, each kind of bad request with its status and OpenAI-shaped error body, API keys, a full queue (503 with
# Retry-After), a streaming client that goes away (the server frees the session for the next one), and a 2-node
# cluster behind the server. Prints "test_server: N passed, M failed". Run from the repository root.
set -u
cd "$(dirname "$0")/.."
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else bad "$2"; fi; }  # check STATUS MESSAGE
tmp="build/tests/server-$$"
mkdir -p "$tmp"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

model=../shared/models/stories260K-q8_0.gguf
if [ ! -r "$model" ]; then
    echo "SKIP: ../shared absent: the server runs a random model made by mkmodel"
    model="$tmp/tiny.gguf"
    build/mkmodel --shape tiny --type q8_0 --seed 3 -o "$model" >/dev/null 2>&1 || { echo "test_server: 0 passed, 1 failed"; exit 1; }
fi

start() {  # start PORT ARGS...: a server, waiting until it listens
    local port="$1"
    shift
    build/server -m "$model" --port "$port" -t 1 "$@" 2>"$tmp/server-$port.log" &
    pids+=($!)
    for _ in $(seq 100); do
        curl -s "localhost:$port/health" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}
port=$((20000 + $$ % 20000))
start "$port"
check $? "the server starts"
url="http://localhost:$port"

# endpoints
out="$(curl -s "$url/health")"; [ "$out" = '{"status":"ok"}' ]; check $? "GET /health: $out"
curl -s "$url/v1/models" | grep -q '"object":"list".*"id":"stories260K-q8_0.gguf\|"object":"list"'; check $? "GET /v1/models lists the model"
out="$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}')"
echo "$out" | grep -q '"text":".\+".*"usage":{"prompt_tokens":[0-9]\+,"completion_tokens":16,"total_tokens":[0-9]\+}'
check $? "POST /v1/completions: text and usage ($(echo "$out" | cut -c1-90)...)"
out="$(curl -s "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"temperature":0}')"
echo "$out" | grep -q '"message":{"role":"assistant","content":' && echo "$out" | grep -q '"object":"chat.completion"'
check $? "POST /v1/chat/completions: an assistant message"
# the same request twice, greedy: the same answer
a="$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | sed 's/"id":"[^"]*"//; s/"created":[0-9]*//')"
b="$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | sed 's/"id":"[^"]*"//; s/"created":[0-9]*//')"
[ -n "$a" ] && [ "$a" = "$b" ]; check $? "greedy requests repeat exactly"

# SSE framing: data: lines, blank-line separated, one usage chunk, ending in [DONE]
curl -sN "$url/v1/chat/completions" -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":6,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' >"$tmp/sse"
n_data="$(grep -c '^data: ' "$tmp/sse")"
[ "$(grep -v '^data: ' "$tmp/sse" | grep -vc '^$')" -eq 0 ] && [ "$(tail -n 2 "$tmp/sse" | head -n 1)" = "data: [DONE]" ] &&
    [ "$(grep -c '"usage"' "$tmp/sse")" -eq 1 ] && grep -q '"finish_reason":"length"' "$tmp/sse" && [ "$n_data" -ge 8 ]
check $? "streamed chat: $n_data events, finish_reason, one usage chunk, data: [DONE]"
text_stream="$(grep -o '"text":"[^"]*"' <(curl -sN "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0,"stream":true}') | sed 's/"text":"//; s/"$//' | tr -d '\n')"
text_whole="$(curl -s "$url/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | sed 's/.*"text":"\([^"]*\)".*/\1/')"
[ -n "$text_whole" ] && [ "$text_stream" = "$text_whole" ]; check $? "streamed text equals the whole answer: '$text_whole'"

# bad requests: status and OpenAI error shape
expect() {  # expect STATUS WHAT CURL-ARGS...
    local want="$1" what="$2"
    shift 2
    local code
    code="$(curl -s -o "$tmp/err" -w '%{http_code}' "$@")"
    if [ "$code" = "$want" ] && grep -q '"error":{"message":"[^"]\+","type":"[a-z_]\+"' "$tmp/err"; then
        ok "$what: $code $(cut -c1-80 "$tmp/err")"
    else
        bad "$what: got $code, want $want: $(cat "$tmp/err")"
    fi
}
expect 400 "malformed JSON" "$url/v1/completions" -d '{"prompt":'
expect 400 "a wrong type" "$url/v1/completions" -d '{"prompt":"x","temperature":"hot"}'
expect 400 "no messages" "$url/v1/chat/completions" -d '{"messages":[]}'
expect 404 "an unknown model" "$url/v1/chat/completions" -d '{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}'
expect 400 "a prompt longer than the context" "$url/v1/completions" -d "{\"prompt\":\"$(printf 'Once upon a time %.0s' $(seq 200))\",\"max_tokens\":4}"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$tmp/big"
expect 413 "a body over 1 MiB" "$url/v1/completions" --data-binary "@$tmp/big"
expect 404 "an unknown endpoint" "$url/v2/nothing"
expect 405 "GET on a POST endpoint" "$url/v1/completions"

# a full queue: one generating, one waiting (--queue 1), the third is turned away with 503 and Retry-After
# (a server with a long context, so that a generation lasts)
start $((port + 4)) --queue 1 --ctx 60000
check $? "a server with a long context starts"
url="http://localhost:$((port + 4))"
clients=()
for i in 1 2; do
    curl -s "$url/v1/completions" -d '{"prompt":"Once","max_tokens":100000,"temperature":1}' -o /dev/null &
    clients+=($!)
    pids+=($!)
    sleep 0.3
done
code="$(curl -s -D "$tmp/hdr" -o "$tmp/err" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 503 ] && grep -qi '^retry-after:' "$tmp/hdr"; check $? "a full queue: $code with Retry-After"
for p in "${clients[@]}"; do kill "$p" 2>/dev/null; done  # the clients go away: their generations stop
sleep 1
code="$(curl -s -m 20 -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 200 ]; check $? "clients that went away freed the session: the next request gets $code"

# a streaming client that disconnects mid-answer frees the session
curl -sN -m 1 "$url/v1/completions" -d '{"prompt":"Once","max_tokens":100000,"stream":true}' >/dev/null 2>&1
code="$(curl -s -m 20 -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 200 ]; check $? "a streaming client that disconnected freed the session: next request $code"

# API keys
start $((port + 1)) --api-key s3cret
check $? "a server with an API key starts"
expect 401 "no key" "http://localhost:$((port + 1))/v1/models"
expect 401 "a wrong key" "http://localhost:$((port + 1))/v1/models" -H "Authorization: Bearer s3creT"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer s3cret" "http://localhost:$((port + 1))/v1/models")"
[ "$code" = 200 ]; check $? "the right key: $code"

# a 2-node cluster behind the server: the same greedy answer as one node
build/node --listen "127.0.0.1:$((port + 2))" -t 1 -m "$model" 2>"$tmp/node.log" &
pids+=($!)
sleep 0.5
start $((port + 3)) --peers "127.0.0.1:$((port + 2))" --split tensor
check $? "a server over a 2-node cluster starts"
c="$(curl -s "http://localhost:$((port + 3))/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | sed 's/.*"text":"\([^"]*\)".*/\1/')"
[ -n "$c" ] && [ "$c" = "$text_whole" ]; check $? "the cluster's greedy answer equals one node's: '$c'"

out="$(curl -s "http://localhost:$((port + 3))/cluster")"
echo "$out" | grep -q '"split":"tensor"' && [ "$(echo "$out" | grep -o '"weight_bytes"' | wc -l)" -eq 2 ] &&
    echo "$out" | grep -q '"transport":"tcp","up":true,"bytes_sent":[1-9]'
check $? "GET /cluster: 2 nodes, their shares, the link's transport and traffic ($(echo "$out" | cut -c1-100)...)"
out="$(curl -s "http://localhost:$((port + 3))/metrics")"
echo "$out" | grep -q '^tbc_requests_total 1$' && echo "$out" | grep -q '^tbc_link_bytes_sent_total{peer="1"} [1-9]' &&
    echo "$out" | grep -q '^# TYPE tbc_tokens_generated_total counter$' && echo "$out" | grep -q '^tbc_decode_tokens_per_second [0-9.]*[1-9]'
check $? "GET /metrics: Prometheus text with requests, tokens/s and per-link bytes"
out="$(curl -s "$url/cluster" 2>/dev/null; curl -s "http://localhost:$port/cluster")"
echo "$out" | grep -q '"split":"none".*"address":"local"'; check $? "GET /cluster on one node: the local node"

echo "test_server: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
