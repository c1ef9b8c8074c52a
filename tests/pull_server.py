#!/usr/bin/env python3
"""tests/pull_server.py - a local stand-in for Hugging Face and its CDN, for tests/test_pull.sh.

usage: pull_server.py DIR PORT_FILE LOG

Serves the files in DIR on 127.0.0.1, on a free port that it writes to PORT_FILE, and appends a line per request to
LOG: "METHOD PATH range=START status" (range=- without a Range header). Paths are

  /MODE/cdn/FILE                        the file: 200, or 206 with Content-Range for "Range: bytes=N-", 416 past
                                        the end; If-Range is honoured; ETag "v1-<size>" (a strong validator)
  /MODE/ORG/REPO/resolve/REV/FILE       as Hugging Face: 302 to /MODE/cdn/FILE with X-Linked-Etag "<sha256>" and
                                        X-Linked-Size, and an ETag of its own (40 hex digits, a git object id)

and MODE (the first path segment, so that HF_ENDPOINT=http://127.0.0.1:PORT/MODE selects it) is one of
  ok        as above
  shaetag   the file's ETag is its quoted sha256 (a server that publishes the hash only there)
  drop      the first 2 GETs of each file close the connection after 1 MiB of body
  changing  as drop, once, and the file's ETag changes with every GET (a new version: If-Range fails)
  stall     the first GET of each file sends 1 MiB, then nothing for 60 s
  slow      about 1.2 MiB/s
  norange   ignores Range: always 200 and the whole file
  badsha    X-Linked-Etag carries a wrong sha256
  gated     401 unless "Authorization: Bearer hf_test"
"""
import hashlib
import http.server
import os
import socket
import sys
import threading
import time

MiB = 1 << 20
root, port_file, log_path = sys.argv[1:4]
lock = threading.Lock()
gets = {}  # (mode, file) -> GETs so far


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log(self, status):
        rng = self.headers.get("Range", "")
        start = rng[len("bytes="):].split("-")[0] if rng.startswith("bytes=") else "-"
        with lock, open(log_path, "a") as f:
            f.write(f"{self.command} {self.path} range={start} status={status}\n")

    def reply(self, status, headers=(), body=b""):
        self.log(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = self.path.split("/")  # "", MODE, ...
        mode = parts[1] if len(parts) > 2 else ""
        if mode == "gated" and self.headers.get("Authorization") != "Bearer hf_test":
            return self.reply(401, body=b"Access to this model is restricted\n")
        if len(parts) >= 7 and parts[4] == "resolve":  # /MODE/ORG/REPO/resolve/REV/FILE...
            name = "/".join(parts[6:])
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                return self.reply(404, body=b"Entry not found\n")
            sha = "0" * 64 if mode == "badsha" else sha256_of(path)
            return self.reply(302, [("Location", f"/{mode}/cdn/{name}"), ("ETag", '"' + "a" * 40 + '"'),
                                    ("X-Linked-Etag", f'"{sha}"'), ("X-Linked-Size", str(os.path.getsize(path)))])
        if len(parts) < 4 or parts[2] != "cdn":
            return self.reply(404, body=b"Not found\n")
        name = "/".join(parts[3:])
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            return self.reply(404, body=b"Not found\n")
        self.send_file(mode, name, path)

    def send_file(self, mode, name, path):
        size = os.path.getsize(path)
        with lock:
            n = gets[(mode, name)] = gets.get((mode, name), 0) + (self.command == "GET")
        etag = f'"{sha256_of(path)}"' if mode == "shaetag" else f'"v{n if mode == "changing" else 1}-{size}"'
        start = 0
        rng, if_range = self.headers.get("Range", ""), self.headers.get("If-Range")
        if rng.startswith("bytes=") and mode != "norange" and (if_range is None or if_range == etag):
            start = int(rng[len("bytes="):].split("-")[0])
            if start >= size:
                return self.reply(416, [("Content-Range", f"bytes */{size}")])
        status = 206 if start else 200
        self.log(status)
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "none" if mode == "norange" else "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = MiB if (mode == "drop" and n <= 2) or (mode in ("stall", "changing") and n == 1) else None
        sent = 0
        try:
            with open(path, "rb") as f:
                f.seek(start)
                while cut is None or sent < cut:
                    block = f.read(64 * 1024 if mode == "slow" else MiB)
                    if cut is not None:
                        block = block[:cut - sent]
                    if not block:
                        return
                    self.wfile.write(block)
                    sent += len(block)
                    if mode == "slow":
                        time.sleep(0.05)
            self.wfile.flush()
            if mode == "stall":
                time.sleep(60)
            self.close_connection = True  # the client sees the body end short of Content-Length
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client went away (killed, or gave up on a stall)
            self.close_connection = True

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
