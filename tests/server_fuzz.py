#!/usr/bin/env python3
"""tests/server_fuzz.py PORT N - sends N mangled completion requests to build/server on 127.0.0.1:PORT.

Each request is a valid one with a few fields set to odd values (wrong types, huge numbers, lone surrogates,
empty or deep containers), sometimes truncated or with flipped bytes. Every answer must be 200, or a 4xx whose
body is OpenAI's error shape; a 5xx, a dropped connection or no answer fails. Prints the statuses seen last."""
import json
import random
import socket
import sys

port, count = int(sys.argv[1]), int(sys.argv[2])
random.seed(7)
BASE = [
    {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0},
    {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True},
    {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": [{"type": "text", "text": "a"}]}],
     "max_tokens": 3},
]
KEYS = ["prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p", "stop", "seed", "n", "stream",
        "stream_options", "presence_penalty", "frequency_penalty", "model", "logprobs"]
ODD = [None, True, -1, 1e308, -1e308, 2**63, "", "\u0000", "\ud800", [], {}, [[[]]], "x" * 5000, 0.5, "stop",
       [{"role": "user"}], [{"role": 5, "content": "x"}], [{"type": "image_url"}], {"include_usage": "yes"}]


def mutate(o):
    o = json.loads(json.dumps(o))
    for _ in range(random.randint(1, 4)):
        o[random.choice(KEYS)] = random.choice(ODD)
    return o


def ask(path, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (path, len(body)) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 "):
        return -1, data
    return int(data.split(b" ")[1]), data


bad, seen = 0, {}
for i in range(count):
    path = random.choice([b"/v1/completions", b"/v1/chat/completions"])
    body = json.dumps(mutate(random.choice(BASE))).encode()
    r = random.random()
    if r < 0.2:
        body = body[: random.randint(0, len(body))]
    elif r < 0.3:
        b = bytearray(body)
        for _ in range(5):
            b[random.randrange(len(b))] = random.randrange(256)
        body = bytes(b)
    code, data = ask(path, body)
    seen[code] = seen.get(code, 0) + 1
    shaped = code == 200 or b'"error":{"message":' in data
    if code not in (200, 400, 404, 413) or not shaped:
        bad += 1
        print("unexpected answer", code, "to", body[:200], "->", data[:300])
print("statuses " + ", ".join("%d x%d" % (k, v) for k, v in sorted(seen.items())))
sys.exit(1 if bad else 0)
