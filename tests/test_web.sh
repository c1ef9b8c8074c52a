#!/usr/bin/env bash
# tests/test_web.sh - the server's web page (web/index.html at GET /) in headless Chromium: the model's name, the live
# cluster view of a 2-node cluster (nodes, shares, memory, link transport), a streamed chat answer equal to a greedy
# whole one, the stats line, multi-turn history, Stop (the server frees the session), errors in the chat, New chat,
# the unreachable state, a narrow screen, and the API-key prompt. Drives Debian's chromium with playwright-core from
# npm (installed once into a cache shared by every clone). Writes screenshots to build/tests/web/. Prints
# "test_web: N passed, M failed". Run from the repository root.
. "$(dirname "$0")/lib.sh" web
shots=build/tests/web
mkdir -p "$shots"

PLAYWRIGHT_VERSION=1.65.1
PW_DIR="${TBC_WEB_TEST_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tbcluster/web-test}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

# What the browser test needs; each missing piece is named (and counted as a failure).
missing=()
command -v node >/dev/null 2>&1 || missing+=("node (Debian package nodejs)")
command -v npm >/dev/null 2>&1 || missing+=("npm (Debian package npm)")
[ -x "$CHROMIUM" ] || missing+=("$CHROMIUM (Debian package chromium: apt-get install -y chromium, or tools/deps.sh)")
if [ "${#missing[@]}" -gt 0 ]; then
    for m in "${missing[@]}"; do bad "cannot run the browser test: missing $m"; done
    finish
fi
pw_version() { node -p "require('$PW_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null; }
if [ "$(pw_version)" != "$PLAYWRIGHT_VERSION" ]; then
    echo "  (installing playwright-core@$PLAYWRIGHT_VERSION from npm into $PW_DIR)"
    mkdir -p "$PW_DIR"
    npm install --prefix "$PW_DIR" --no-audit --no-fund --no-save --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" \
        </dev/null >"$tmp/npm.log" 2>&1
    [ "$(pw_version)" = "$PLAYWRIGHT_VERSION" ] ||
        { bad "cannot run the browser test: npm could not install playwright-core@$PLAYWRIGHT_VERSION into $PW_DIR: $(tail -n 3 "$tmp/npm.log")"; finish; }
fi

use_model

# a worker and a server over it (tensor split, a long context so that an answer lasts until Stop), and a server with a key
start_node node -t 1 -m "$model" && start_server server -t 1 --peers "127.0.0.1:$node_port" --split tensor --ctx 60000
check $? "a server over a 2-node cluster starts (port $server_port, worker $node_port)"
port="$server_port"
start_server key-server -t 1 --api-key web-s3cret
check $? "a server with an API key starts (port $server_port)"
key_port="$server_port"
[ "$failed" -eq 0 ] || { tail -n 3 "$tmp"/*.log; finish; }

PW_DIR="$PW_DIR" CHROMIUM="$CHROMIUM" URL="http://127.0.0.1:$port" NODES=2 KEY_URL="http://127.0.0.1:$key_port" \
    KEY=web-s3cret SHOTS="$shots" timeout 120 node tests/web/test_web.mjs 2>&1 | tee "$tmp/browser.out"
rc="${PIPESTATUS[0]}"
n_ok="$(grep -c '^  ok ' "$tmp/browser.out")"
n_bad="$(grep -c '^FAIL: ' "$tmp/browser.out")"
passed=$((passed + n_ok))
failed=$((failed + n_bad))
[ "$rc" -eq 0 ] || [ "$n_bad" -gt 0 ] || bad "the browser test exited with status $rc"
[ "$n_ok" -gt 0 ] || bad "the browser test ran no check"
finish
