#!/usr/bin/env bash
# tests/test_pull.sh - build/pull against a local stand-in for Hugging Face and its CDN (tests/pull_server.py, on
# loopback): a plain URL and an ORG/REPO/FILE name (SHA-256 from ETag and from X-Linked-Etag), resuming after a
# dropped connection, a stalled server and a kill -9, a server that ignores Range, a .part that is complete or too
# long (416), a wrong sha256, a file that is not GGUF, 404, a gated model and HF_TOKEN, no server, a file already
# complete, and bad usage. Prints "test_pull: N passed, M failed". Run from the repository root after `make all`.
. "$(dirname "$0")/lib.sh" pull
mkdir -p "$tmp/srv/sub" "$tmp/out"

for b in build/pull build/mkmodel; do
    [ -x "$b" ] || { bad "$b is missing (make $b)"; finish; }
done

# the file: a real GGUF of 6.5 MiB, so that a transfer is many writes and can be cut in the middle
file="$tmp/srv/tiny.gguf"
build/mkmodel --shape tiny --type f32 --seed 3 -o "$file" >/dev/null 2>&1
cp "$file" "$tmp/srv/sub/tiny.gguf"
head -c 100000 /dev/urandom >"$tmp/srv/junk.gguf"
size="$(wc -c <"$file" | tr -d ' ')"
sha="$(sha256sum "$file" | cut -d' ' -f1)"

: >"$tmp/server.log"
python3 tests/pull_server.py "$tmp/srv" "$tmp/port" "$tmp/server.log" 2>"$tmp/server.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat "$tmp/port" 2>/dev/null)"
[ -s "$tmp/port" ]; check $? "the local server starts ($url, a $size-byte GGUF)"

pull() {  # pull ARGS...: runs build/pull; $rc, $tmp/stdout, $tmp/stderr; $log_at marks where its server log starts
    log_at=$(($(wc -l <"$tmp/server.log") + 1))
    build/pull "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    rc=$?
}
new_log() { tail -n +"$log_at" "$tmp/server.log"; }     # the server's log lines for the last pull
said() { grep -q -- "$1" "$tmp/stderr"; }                 # said TEXT: the last pull's stderr has it
last_words() { grep -v 'MiB/s' "$tmp/stderr" | tail -n 1 | cut -c1-110; }
same() { cmp -s "$1" "$file" && [ ! -e "$1.part" ]; }    # same FILE: byte-identical, no .part left behind

# plain URL; this mode's ETag is the file's sha256
out="$tmp/out/plain.gguf"
pull "$url/shaetag/cdn/tiny.gguf" -o "$out"
[ "$rc" -eq 0 ] && same "$out" && said "sha256 ok (ETag)" && said "GGUF ok: llama" &&
    grep -q "^$out: $size bytes (6.5 MiB), sha256 $sha, [0-9.]* s$" "$tmp/stdout"
check $? "a plain URL: byte-identical, sha256 from ETag, GGUF ok; prints: $(cut -c1-70 "$tmp/stdout")..."

# Hugging Face names: a 302 with X-Linked-Etag and X-Linked-Size, then the CDN
mkdir -p "$tmp/out/hf"
HF_ENDPOINT="$url/ok/" pull org/repo/tiny.gguf -o "$tmp/out/hf"
[ "$rc" -eq 0 ] && same "$tmp/out/hf/tiny.gguf" && said "sha256 ok (X-Linked-Etag)" &&
    [ "$(new_log | cut -d' ' -f1,2,4 | tr '\n' ' ')" = \
        "GET /ok/org/repo/resolve/main/tiny.gguf status=302 GET /ok/cdn/tiny.gguf status=200 " ]
check $? "ORG/REPO/FILE.gguf via HF_ENDPOINT: 302 then the CDN, verified against X-Linked-Etag"
HF_ENDPOINT="$url/ok" pull org/repo@v2/sub/tiny.gguf -o "$tmp/out/rev.gguf"
[ "$rc" -eq 0 ] && same "$tmp/out/rev.gguf" && new_log | grep -q "^GET /ok/org/repo/resolve/v2/sub/tiny.gguf "
check $? "ORG/REPO@REVISION/SUB/FILE.gguf asks for resolve/v2/sub/tiny.gguf"
HF_ENDPOINT="$url/ok" pull org/repo/tiny.gguf -o "$tmp/out/hf"
[ "$rc" -eq 0 ] && said "already complete (size and sha256 checked)" && ! new_log | grep -q "^GET" &&
    same "$tmp/out/hf/tiny.gguf"
check $? "a file already complete is checked with HEAD requests and not downloaded again"

# a connection dropped after 1 MiB, twice: resumed from where it stopped
HF_ENDPOINT="$url/drop" pull org/repo/tiny.gguf -o "$tmp/out/drop.gguf"
[ "$rc" -eq 0 ] && same "$tmp/out/drop.gguf" && said "sha256 ok (X-Linked-Etag)" && said "connection lost" &&
    new_log | grep -q "^GET /drop/cdn/tiny.gguf range=1048576 status=206" &&
    new_log | grep -q "^GET /drop/cdn/tiny.gguf range=2097152 status=206"
check $? "dropped connections: retried with Range from 1 MiB, then 2 MiB; byte-identical and verified"

# a new version of the file between attempts: If-Range no longer matches, so the server sends it whole
pull "$url/changing/cdn/tiny.gguf" -o "$tmp/out/changing.gguf"
[ "$rc" -eq 0 ] && same "$tmp/out/changing.gguf" && said "whole file" &&
    [ "$(new_log | cut -d' ' -f3,4 | tr '\n' ' ')" = "range=- status=200 range=1048576 status=200 " ]
check $? "a file that changed between attempts (If-Range with the old ETag) is fetched again from the start"

# a server that stops sending: the low-speed limit turns it into a retry
pull "$url/stall/cdn/tiny.gguf" -o "$tmp/out/stall.gguf" --timeout 1
[ "$rc" -eq 0 ] && same "$tmp/out/stall.gguf" && said "Operation too slow\|timed out" &&
    new_log | grep -q "^GET /stall/cdn/tiny.gguf range=1048576 status=206"
check $? "a stalled transfer times out and resumes: $(grep -o 'connection lost.*' "$tmp/stderr" | cut -c1-70)"

# killed mid-transfer: the .part stays, and the next run asks for the rest
out="$tmp/out/killed.gguf"
build/pull "$url/slow/cdn/tiny.gguf" -o "$out" >/dev/null 2>&1 &
pid=$!
pids+=("$pid")
have=0
for _ in $(seq 100); do
    have="$(wc -c 2>/dev/null <"$out.part" | tr -d ' ')"
    [ "${have:-0}" -ge 1048576 ] && break
    sleep 0.05
done
{ kill -9 "$pid" && wait "$pid"; } 2>/dev/null  # quietly: no "Killed" from bash
have="$(wc -c 2>/dev/null <"$out.part" | tr -d ' ')"
[ "${have:-0}" -gt 0 ] && [ "$have" -lt "$size" ] && [ ! -e "$out" ]
check $? "kill -9 during a slow transfer leaves a .part of ${have:-0} bytes and no file"
pull "$url/ok/cdn/tiny.gguf" -o "$out"
[ "$rc" -eq 0 ] && same "$out" && [ "$(new_log | grep -c '^GET')" -eq 1 ] &&
    new_log | grep -q "^GET /ok/cdn/tiny.gguf range=$have status=206"
check $? "the next run resumes it with one request from byte $have"

# a server without Range support: a 200 to a range request means starting over
out="$tmp/out/norange.gguf"
head -c 3000000 /dev/urandom >"$out.part"
pull "$url/norange/cdn/tiny.gguf" -o "$out"
[ "$rc" -eq 0 ] && same "$out" && said "whole file" && said "sha256 not checked" &&
    new_log | grep -q "^GET /norange/cdn/tiny.gguf range=3000000 status=200"
check $? "a server that ignores Range: .part replaced, size checked: $(grep -o 'the server sends.*' "$tmp/stderr")"

# 416: a .part that is already complete is only verified; one that is too long starts over
out="$tmp/out/complete.gguf"
cp "$file" "$out.part"
pull "$url/ok/cdn/tiny.gguf" -o "$out"
[ "$rc" -eq 0 ] && same "$out" && [ "$(new_log | tr '\n' ' ')" = "GET /ok/cdn/tiny.gguf range=$size status=416 " ]
check $? "a complete .part: 416, verified and renamed without a download"
out="$tmp/out/long.gguf"
cat "$file" "$file" >"$out.part"
pull "$url/ok/cdn/tiny.gguf" -o "$out"
[ "$rc" -eq 0 ] && same "$out" && said "longer than the file" &&
    [ "$(new_log | cut -d' ' -f3,4 | tr '\n' ' ')" = "range=$((2 * size)) status=416 range=- status=200 " ]
check $? "a .part longer than the file: 416, then the whole file"

# refusals
HF_ENDPOINT="$url/badsha" pull org/repo/tiny.gguf -o "$tmp/out/badsha.gguf"
zeros="$(printf '0%.0s' $(seq 64))"
[ "$rc" -eq 1 ] && said "sha256 mismatch: the server says $zeros (X-Linked-Etag), the file has $sha" &&
    [ ! -e "$tmp/out/badsha.gguf" ] && [ ! -e "$tmp/out/badsha.gguf.part" ] && cmp -s "$tmp/out/badsha.gguf.bad" "$file"
check $? "a wrong sha256 refused (exit $rc), kept as .bad, no FILE: $(grep -o 'sha256 mismatch.\{30\}' "$tmp/stderr")"
pull "$url/shaetag/cdn/junk.gguf" -o "$tmp/out"
[ "$rc" -eq 1 ] && said "not a GGUF file" && [ ! -e "$tmp/out/junk.gguf" ]
check $? "a file that is not GGUF is refused (exit $rc): $(grep -o 'bad magic.*' "$tmp/stderr")"
pull "$url/ok/cdn/missing.gguf" -o "$tmp/out"
[ "$rc" -eq 1 ] && said "HTTP 404: no such file: $url/ok/cdn/missing.gguf" && [ ! -e "$tmp/out/missing.gguf.part" ] &&
    [ "$(new_log | wc -l)" -eq 1 ]
check $? "404 (exit $rc, no retry, no .part): $(last_words)"
HF_ENDPOINT="$url/gated" HF_TOKEN='' pull org/repo/tiny.gguf -o "$tmp/out/gated.gguf"
[ "$rc" -eq 1 ] && said "HTTP 401" && said "set HF_TOKEN" && [ ! -e "$tmp/out/gated.gguf.part" ]
check $? "a gated model without HF_TOKEN (exit $rc): $(last_words)"
HF_ENDPOINT="$url/gated" HF_TOKEN=hf_test pull org/repo/tiny.gguf -o "$tmp/out/gated.gguf"
[ "$rc" -eq 0 ] && same "$tmp/out/gated.gguf"
check $? "the gated model with HF_TOKEN: sent as a bearer token, downloaded"
pull http://127.0.0.1:1/tiny.gguf -o "$tmp/out" --retries 0
[ "$rc" -eq 1 ] && said "no network, or the server is down" && [ ! -e "$tmp/out/tiny.gguf.part" ]
check $? "no server (exit $rc): $(grep -o 'Failed to connect.*' "$tmp/stderr" | cut -c1-80)"

# usage: exit 2
u="$url/ok/cdn/tiny.gguf"
for args in "" "-o $tmp/out" "org/repo" "ftp://host/x.gguf" "$u --retries" "$u --retries -1" "$u --bogus 1"; do
    # shellcheck disable=SC2086  # the words of $args are the arguments
    pull $args
    [ "$rc" -eq 2 ]; check $? "usage error '$args': exit $rc: $(head -n 1 "$tmp/stderr" | cut -c1-70)"
done
build/pull --help | grep -q "^usage: pull SOURCE"; check $? "--help prints the usage"

finish
