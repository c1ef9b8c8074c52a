#!/usr/bin/env bash
# tests/test_server.sh - build/server over HTTP with curl: the endpoints, whole and streamed (SSE) completions, usage
# counts, each kind of bad request with its status and OpenAI-shaped error body, API keys, a full queue (503 with
# Retry-After), --parallel (requests decoded together, queued past it, 503 past the queue), clients that go away,
# half-sent requests, 300 mangled requests (tests/server_fuzz.py), and a 2-node
# cluster behind the server. Prints "test_server: N passed, M failed". Run from the repository root.
. "$(dirname "$0")/lib.sh" server
use_model

start() {  # start NAME ARGS...: a server (-t 1) on a port the system picks, waiting until it listens; sets $port
    start_server "$@" -t 1
    port="$server_port"
    [ -n "$port" ]
}
# bad arguments: exit 2 with a message naming the option
out="$(build/server -m "$model" --parallel abc 2>&1)"; rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q -- "--parallel expects a whole number"; check $? "a bad --parallel: exit $rc, '$out'"
out="$(build/server -m "$model" --ctx 12x 2>&1)"; rc=$?
[ "$rc" = 2 ] && echo "$out" | grep -q -- "--ctx expects"; check $? "a bad --ctx: exit $rc"
start server
check $? "the server starts"
url="http://localhost:$port"
url1="$url"

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
start queue --queue 1 --ctx 60000
check $? "a server with a long context starts"
url="http://localhost:$port"
clients=()
load_is() {  # load_is URL BUSY QUEUED: waits (up to 10 s) until /cluster counts BUSY sequences busy and QUEUED queued
    for _ in $(seq 100); do
        curl -s "$1/cluster" | grep -q "\"busy\":$2,\"queued\":$3" && return 0
        sleep 0.1
    done
    return 1
}
for i in 1 2; do
    curl -s "$url/v1/completions" -d '{"prompt":"Once","max_tokens":59000,"temperature":1}' -o /dev/null &
    clients+=($!)
    pids+=($!)
    load_is "$url" 1 $((i - 1))
done
code="$(curl -s -D "$tmp/hdr" -o "$tmp/err" -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 503 ] && grep -qi '^retry-after:' "$tmp/hdr"; check $? "a full queue: $code with Retry-After"
for p in "${clients[@]}"; do kill "$p" 2>/dev/null; done  # the clients go away: their generations stop
sleep 1
code="$(curl -s -m 20 -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 200 ]; check $? "clients that went away freed the session: the next request gets $code"

# a streaming client that disconnects mid-answer frees the session
curl -sN -m 1 "$url/v1/completions" -d '{"prompt":"Once","max_tokens":59000,"stream":true}' >/dev/null 2>&1
code="$(curl -s -m 20 -o /dev/null -w '%{http_code}' "$url/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 200 ]; check $? "a streaming client that disconnected freed the session: next request $code"

# --parallel 2: two requests decode together (both stream before either ends), a third waits for a sequence
# (--queue 1), a fourth gets 503; /cluster and /metrics count them; a client that goes away frees its sequence
start parallel --parallel 2 --queue 1 --ctx 60000
check $? "a server with --parallel 2 --queue 1 starts"
pport="$port"
purl="http://localhost:$pport"
clients=()
for i in 1 2 3; do
    curl -sN "$purl/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":59000,"temperature":1,"stream":true}' >"$tmp/par$i" 2>/dev/null &
    clients+=($!)
    pids+=($!)
    if [ "$i" -le 2 ]; then load_is "$purl" "$i" 0; else load_is "$purl" 2 1; fi
done
for _ in $(seq 50); do [ -s "$tmp/par1" ] && [ -s "$tmp/par2" ] && break; sleep 0.1; done
s1="$(wc -c <"$tmp/par1")" s2="$(wc -c <"$tmp/par2")" s3="$(wc -c <"$tmp/par3")"
sleep 0.5
t1="$(wc -c <"$tmp/par1")" t2="$(wc -c <"$tmp/par2")" t3="$(wc -c <"$tmp/par3")"
[ "$t1" -gt "$s1" ] && [ "$t2" -gt "$s2" ] && [ "$s3" -eq 0 ] && [ "$t3" -eq 0 ]
check $? "--parallel 2: two answers grow at once ($s1 -> $t1, $s2 -> $t2 bytes), the third waits ($t3 bytes)"
out="$(curl -s "$purl/cluster")"
echo "$out" | grep -q '"parallel":2,"busy":2,"queued":1'; check $? "GET /cluster counts them: $(echo "$out" | grep -o '"parallel":[0-9]*,"busy":[0-9]*,"queued":[0-9]*')"
curl -s "$purl/metrics" | grep -q '^tbc_sequences_busy 2$'; check $? "GET /metrics: tbc_sequences_busy 2"
for _ in $(seq 50); do  # (over the last two whole seconds: it needs two to have passed)
    live="$(curl -s "$purl/cluster" | grep -o '"live_tokens_per_second":[0-9.]*')"
    echo "$live" | grep -q ':[0-9]*[1-9]' && break
    sleep 0.1
done
echo "$live" | grep -q ':[0-9]*[1-9]'; check $? "the live speed counts both answers: $live"
code="$(curl -s -D "$tmp/hdr" -o "$tmp/err" -w '%{http_code}' "$purl/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 503 ] && grep -qi '^retry-after:' "$tmp/hdr"; check $? "past --parallel + --queue: $code with Retry-After"
kill "${clients[2]}" 2>/dev/null  # the queued one gives up: its place in the queue is freed
load_is "$purl" 2 0; check $? "a queued client that went away left the queue"
curl -sN "$purl/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":59000,"temperature":1,"stream":true}' >"$tmp/par4" 2>/dev/null &
clients+=($!)
pids+=($!)
load_is "$purl" 2 1
kill "${clients[0]}" 2>/dev/null
for _ in $(seq 40); do [ "$(wc -c <"$tmp/par4")" -gt 0 ] && break; sleep 0.1; done
[ "$(wc -c <"$tmp/par4")" -gt 0 ]; check $? "a client that went away freed its sequence: the waiting request streams"
for p in "${clients[@]}"; do kill "$p" 2>/dev/null; done
load_is "$purl" 0 0; check $? "every client gone: no sequence busy, none queued"
# two greedy requests at once give what each gives alone
answer() { sed 's/.*"text":"\([^"]*\)".*/\1/' "$@"; }
a="$(curl -s "$purl/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | answer)"
b="$(curl -s "$purl/v1/completions" -d '{"prompt":"The dog","max_tokens":12,"temperature":0}' | answer)"
curl -s "$purl/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' >"$tmp/c1" &
p1=$!
curl -s "$purl/v1/completions" -d '{"prompt":"The dog","max_tokens":12,"temperature":0}' >"$tmp/c2" &
p2=$!
wait "$p1" "$p2"
c1="$(answer "$tmp/c1")" c2="$(answer "$tmp/c2")"
[ -n "$a" ] && [ "$a" = "$c1" ] && [ "$b" = "$c2" ]; check $? "two greedy requests at once answer as alone: '$c1' / '$c2'"

# slow or half-sent requests hold no sequence: with two stalled clients, requests still go through
exec 5<>"/dev/tcp/127.0.0.1/$pport"
printf 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"prompt":' >&5
exec 6<>"/dev/tcp/127.0.0.1/$pport"
printf 'POST /v1/chat/completions HTTP/1.1\r\nHo' >&6
code="$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$purl/v1/completions" -d '{"prompt":"Once","max_tokens":4}')"
[ "$code" = 200 ]; check $? "two half-sent requests hold no sequence: the next request gets $code"
exec 5>&- 6>&-

# robustness: 300 mangled requests (truncated, wrong types, odd values, flipped bytes) each get 200 or a 4xx with
# an error body, and the server stays up and correct
python3 tests/server_fuzz.py "$pport" 300 >"$tmp/fuzz.out" 2>&1
fz=$?
code="$(curl -s -o /dev/null -w '%{http_code}' "$purl/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}')"
[ "$fz" -eq 0 ] && [ "$code" = 200 ]; check $? "300 mangled requests: $(tail -n 1 "$tmp/fuzz.out"); the server still answers ($code)"
[ "$fz" -eq 0 ] || cat "$tmp/fuzz.out"

# API keys
start key --api-key s3cret
check $? "a server with an API key starts"
kport="$port"
expect 401 "no key" "http://localhost:$kport/v1/models"
code="$(curl -s -o /dev/null -w '%{http_code}' "http://localhost:$kport/health")"
[ "$code" = 200 ]; check $? "GET /health needs no key (probes): $code"
expect 401 "a wrong key" "http://localhost:$kport/v1/models" -H "Authorization: Bearer s3creT"
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer s3cret" "http://localhost:$kport/v1/models")"
[ "$code" = 200 ]; check $? "the right key: $code"

# a 2-node cluster behind the server: the same greedy answer as one node
start_node node -t 1 -m "$model"
start cluster --peers "127.0.0.1:$node_port" --split tensor
check $? "a server over a 2-node cluster starts"
cport="$port"
c="$(curl -s "http://localhost:$cport/v1/completions" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' | sed 's/.*"text":"\([^"]*\)".*/\1/')"
[ -n "$c" ] && [ "$c" = "$text_whole" ]; check $? "the cluster's greedy answer equals one node's: '$c'"

out="$(curl -s "http://localhost:$cport/cluster")"
echo "$out" | grep -q '"split":"tensor"' && [ "$(echo "$out" | grep -o '"weight_bytes"' | wc -l)" -eq 2 ] &&
    echo "$out" | grep -q '"transport":"tcp","up":true,"bytes_sent":[1-9]'
check $? "GET /cluster: 2 nodes, their shares, the link's transport and traffic ($(echo "$out" | cut -c1-100)...)"
out="$(curl -s "http://localhost:$cport/metrics")"
echo "$out" | grep -q '^tbc_requests_total 1$' && echo "$out" | grep -q '^tbc_link_bytes_sent_total{peer="1"} [1-9]' &&
    echo "$out" | grep -q '^# TYPE tbc_tokens_generated_total counter$' && echo "$out" | grep -q '^tbc_decode_tokens_per_second [0-9.]*[1-9]' &&
    echo "$out" | grep -q '^tbc_node_weight_bytes{node="local",rank="0"} [1-9]' &&
    echo "$out" | grep -q '^tbc_node_memory_offered_bytes{node="127.0.0.1:[0-9]*",rank="1"} [1-9]'
check $? "GET /metrics: Prometheus text with requests, tokens/s, per-link bytes and per-node shares"
out="$(curl -s "$url1/cluster")"
echo "$out" | grep -q '"split":"none"' && [ "$(echo "$out" | grep -o '"address":' | wc -l)" = 1 ] &&
    echo "$out" | grep -q '"address":"local"'; check $? "GET /cluster on one node: the local node"

finish
