#!/usr/bin/env bash
# tests/test_demo.sh - what `make demo` runs after building (tools/demo.sh): the model pulled from a local stand-in
# for Hugging Face (tests/pull_server.py), two nodes and the server started, one streamed chat answer printed with
# its speed, the server left running with the page address; then the offline path (no download: a model made by
# mkmodel) and `demo-stop`. Prints "test_demo: N passed, M failed". Run from the repository root.
. "$(dirname "$0")/lib.sh" demo
mkdir -p "$tmp/srv"
export DEMO_DIR="$tmp/run"
at_exit() { bash tools/demo.sh stop >/dev/null 2>&1; }
use_model
name="demo-test-$$.gguf"
cp "$model" "$tmp/srv/$name"
python3 tests/pull_server.py "$tmp/srv" "$tmp/port" "$tmp/server.log" 2>"$tmp/server.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
hf="http://127.0.0.1:$(cat "$tmp/port")/ok"

# first run: the model is pulled (as the default Hugging Face name is), the answer streams, the server stays up
export DEMO_PORT=0 DEMO_MAX_TOKENS=24 DEMO_PROMPT='Tell me a story about a "dog".'
HF_ENDPOINT="$hf" DEMO_PULL_SOURCE="org/repo/$name" timeout 120 bash tools/demo.sh >"$tmp/out1" 2>&1
rc=$?
[ "$rc" -eq 0 ] && cmp -s "build/models/$name" "$model"; check $? "the demo model is pulled once through build/pull (exit $rc)"
grep -q '== assistant: .\+' "$tmp/out1" && grep -q '== [0-9]\+ tokens in [0-9.]\+ s: [0-9.]\+ tokens/s' "$tmp/out1"
check $? "the answer streams, then its speed: $(grep '== [0-9]* tokens' "$tmp/out1")"
grep -q 'cluster ready: 3 nodes' "$tmp/out1"; check $? "two nodes and the server: $(grep 'cluster ready' "$tmp/out1")"
page_port() { sed -n 's|.*open http://127.0.0.1:\([0-9]*\)/ .*|\1|p' "$1" | head -n 1; }  # what the demo printed
port="$(page_port "$tmp/out1")"
[ -n "$port" ]; check $? "the page's address is printed (the server took port ${port:-?})"
code="$(curl -s -o "$tmp/page" -w '%{http_code}' "127.0.0.1:$port/")"
[ "$code" = 200 ] && grep -qi '<html' "$tmp/page"; check $? "the server keeps running after the demo: GET / is $code"
curl -s "127.0.0.1:$port/cluster" | grep -q '"transport":"tcp"'; check $? "and its cluster view shows the nodes' links"

# second run: the file is there, nothing is downloaded; the earlier processes are replaced
n_get="$(grep -c '^GET ' "$tmp/server.log")"
HF_ENDPOINT="$hf" DEMO_PULL_SOURCE="org/repo/$name" timeout 120 bash tools/demo.sh >"$tmp/out2" 2>&1
[ $? -eq 0 ] && [ "$(grep -c '^GET ' "$tmp/server.log")" = "$n_get" ] && grep -q '== assistant: .\+' "$tmp/out2"
check $? "a second run reuses the model and restarts the nodes and the server"

# offline: the download fails, the demo says so and runs a model made by mkmodel
rm -f "build/models/$name"
DEMO_PULL_SOURCE="http://127.0.0.1:9/none.gguf" timeout 180 bash tools/demo.sh >"$tmp/out3" 2>&1
rc=$?
[ "$rc" -eq 0 ] && grep -q 'could not download' "$tmp/out3" && grep -q 'RANDOM weights' "$tmp/out3" &&
    grep -q '== [0-9]\+ tokens in' "$tmp/out3"
check $? "offline: it says so and runs a model made by mkmodel (exit $rc)"
[ "$rc" -eq 0 ] || tail -n 20 "$tmp/out3"

port="$(page_port "$tmp/out3")"
left="$(cat "$DEMO_DIR/pids" 2>/dev/null)"
bash tools/demo.sh stop >/dev/null 2>&1
alive=0
for p in $left; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
! curl -s -m 2 "127.0.0.1:${port:-1}/health" >/dev/null 2>&1 && [ -n "$left" ] && [ "$alive" = 0 ]
check $? "make demo-stop stops the nodes and the server ($(echo $left | wc -w) processes, $alive left)"
rm -f "build/models/$name"

finish
