// fuzz_proto: libFuzzer target for the cluster protocol, built and run by `make fuzz` (clang -fsanitize=fuzzer,
// address,undefined). Each input is what a peer sends over one connection, played against the real code:
//   a worker: tbc__serve_coordinator (what tbc_node_serve runs per connection) on one end of a socketpair;
//   a coordinator: tbc_session_create with a cluster of one peer on loopback TCP, then two tbc_session_eval calls.
// The harness plays the other side. Even without a cluster key every frame after the handshake carries an HMAC
// tag under a session key derived from both sides' random nonces, so mutated bytes could never get past the first
// tag check: the harness does the handshake itself and then frames and signs the records of the input (or, in raw
// mode, sends the input as it is, which fuzzes the framing and the handshake).
//
// Input: byte 0 is the mode, then records until the input ends.
//   mode bit 0: 0 the worker is under test (the harness is the coordinator), 1 the coordinator is under test
//        bit 1: raw: no handshake by the harness; the rest of the input goes to the peer unframed
//        bit 2: worker: it has the model file (else it fills its shard cache); coordinator: pipeline (else tensor)
//        bit 3: coordinator: Q8_0 activations (else F32)
//        bits 4-5: coordinator: the harness's hello has the model (1), another model (2), or none (0, 3)
//        bit 6: coordinator: it holds no share of the model (no_local), the harness's worker holds all of it
//   record: u8 op, u8 message type, u32 length (little-endian; cut to what is left), payload
//   op & 7: 0 a frame as it should be (next sequence number, valid tag)
//           1 the same, but a DATA payload of 64 bytes or more gets the right SHA-256 of its bytes at 32..63
//           2 the payload as raw bytes, unframed
//           3 a valid tag on a wrong sequence number: the next one + (op >> 3), or the previous one when that is 0
//           4 a DATA message of the model file's bytes: the payload is u64 offset, length, stride, runs (bytes
//             outside the file are zeros; at most 256 KiB)
//           5 a frame of n bytes of one value: the payload is u32 n (at most 256 KiB), u8 value
//           6 a frame with an all-zero tag (as before the handshake, or from a peer without the key)
//           7 a valid frame cut off halfway through its payload; nothing is sent after it
//
// Checked beyond ASan/UBSan: the side under test returns (no hang), every failure has an error code and message and
// is logged with that message (issue 3: drop the connection with a log line), and no file descriptor leaks.
//
// Seeds: TBC_FUZZ_PROTO_SEEDS=DIR build/fuzz/fuzz_proto writes valid sessions of each mode into DIR, runs each and
// checks it reached what it should (READY, logits, hidden states, goodbye), then exits; `make fuzz` does this.
// The model: $TBC_FUZZ_MODEL, else ../shared/models/stories260K-q8_0.gguf, else build/fuzz/proto-model.gguf
// (`make fuzz` makes that one with build/mkmodel when ../shared is absent). Run from the repository root.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FZ_MODE_COORDINATOR 1
#define FZ_MODE_RAW 2
#define FZ_MODE_BIT2 4           // worker: has the model file; coordinator: pipeline split
#define FZ_MODE_Q8 8
#define FZ_MODE_HELLO_SHIFT 4
#define FZ_MODE_NO_LOCAL 64      // coordinator: it holds no share (tbc_cluster_desc.no_local)
// Payloads the harness makes (ops 4 and 5) stop here: every frame larger than what a receiver accepts is refused
// from its header alone (op 2 sends such headers), and hashing megabytes would only slow the fuzzer down.
#define FZ_FILL_MAX ((uint32_t)256 << 10)
// Seconds. Every wait of the side under test ends at EOF long before; the coordinator's is longer because its
// heartbeat thread probes links idle for half of it, which would take records out of turn.
#define FZ_WORKER_TIMEOUT 0.25
#define FZ_COORDINATOR_TIMEOUT 2.0

static tbc_model *fz_model;
static uint8_t fz_model_id[32];
static char fz_cache_dir[256];

// ---- the logger of the side under test: discards, remembering the last line ----
typedef struct fz_log {
    int lines;
    char last[1024];
} fz_log;

static void fz_log_fn(void *user, tbc_log_level level, const char *message) {
    fz_log *l = (fz_log *)user;
    (void)level;
    l->lines++;
    snprintf(l->last, sizeof l->last, "%s", message);
}

// A failure must say why, and the last log line must carry that reason.
static void fz_check_failure(tbc_result rc, const tbc_error *err, const fz_log *log) {
    if (rc == TBC_OK) return;
    if (err->code == rc && err->message[0] != '\0' && log->lines > 0 && strstr(log->last, err->message)) return;
    fprintf(stderr, "fuzz_proto: failed with %d (%s) but the error says %d '%s' and the last log line is '%s'\n",
            (int)rc, tbc_result_str(rc), (int)err->code, err->message, log->lines ? log->last : "(none)");
    __builtin_trap();
}

static int fz_lowest_free_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    return fd;
}

// The worker makes its shard cache directory when it needs one; it goes after every input, so a crash (which skips
// atexit) leaves one input's files at most.
static void fz_remove_cache(void) {
    DIR *dir = opendir(fz_cache_dir);
    if (!dir) return;
    struct dirent *e;
    char path[600];
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", fz_cache_dir, e->d_name);
        unlink(path);
    }
    closedir(dir);
    rmdir(fz_cache_dir);
}

// ---- the harness's side of the connection ----
typedef struct fz_peer {
    int fd;                       // the harness's end, or -1 until accepted from listen_fd
    int listen_fd;                // coordinator mode: the listening socket the coordinator connects to
    int coordinator;              // the harness plays the coordinator
    int raw;
    int hello_model;              // 0 none, 1 this model, 2 another model
    const uint8_t *in;
    size_t n;
    uint32_t counts[64];          // frames received from the side under test, by type (written by the drainer)
} fz_peer;

// Reads everything the side under test sends until it closes the connection, counting frames by type.
static void *fz_drain(void *arg) {
    fz_peer *h = (fz_peer *)arg;
    uint8_t buf[65536], hdr[TBC__FRAME_HEADER];
    size_t have = 0;          // header bytes collected
    uint64_t skip = 0;        // payload and tag bytes still to pass over
    int framed = 1;
    for (;;) {
        ssize_t r = read(h->fd, buf, sizeof buf);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf;
            pf.fd = h->fd;
            pf.events = POLLIN;
            poll(&pf, 1, 1000);
            continue;
        }
        if (r <= 0) break;
        size_t i = 0;
        while (framed && i < (size_t)r) {
            if (skip) {
                size_t k = (size_t)r - i < skip ? (size_t)r - i : (size_t)skip;
                skip -= k;
                i += k;
                continue;
            }
            hdr[have++] = buf[i++];
            if (have < sizeof hdr) continue;
            have = 0;
            if (tbc__get_u32(hdr) != TBC__FRAME_MAGIC) { framed = 0; break; }
            uint16_t t = tbc__get_u16(hdr + 6);
            if (t < 64) h->counts[t]++;
            skip = (uint64_t)tbc__get_u32(hdr + 8) + TBC__FRAME_TAG;
        }
    }
    return NULL;
}

static int fz_send_frame(tbc__link *l, uint16_t type, const uint8_t *p, size_t n, int op) {
    tbc_error err;
    double deadline = tbc__now() + 2.0;
    if (op == 6 || op == 7) {
        uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG];
        tbc__put_u32(hdr, TBC__FRAME_MAGIC);
        tbc__put_u16(hdr + 4, TBC__PROTOCOL_VERSION);
        tbc__put_u16(hdr + 6, type);
        tbc__put_u32(hdr + 8, (uint32_t)n);
        tbc__put_u32(hdr + 12, 0);
        tbc__put_u64(hdr + 16, l->send_seq);
        tbc__put_u64(hdr + 24, 0);
        tbc__frame_tag(l, hdr, p, n, tag);
        if (op == 6) memset(tag, 0, sizeof tag);
        struct iovec iov[3];
        int c = 0;
        iov[c].iov_base = hdr; iov[c].iov_len = sizeof hdr; c++;
        size_t body = op == 7 ? n / 2 : n;
        if (body) { iov[c].iov_base = (void *)p; iov[c].iov_len = body; c++; }
        if (op != 7) { iov[c].iov_base = tag; iov[c].iov_len = sizeof tag; c++; }
        l->send_seq++;
        return tbc__io_all(l, 1, iov, c, deadline, &err) == TBC_OK;
    }
    return tbc__link_send(l, type, p, n, deadline, &err) == TBC_OK;
}

// Op 4: a DATA message {off, len, stride, runs, sha256} + the runs read from the model file (zeros outside it).
static uint8_t *fz_model_data(const uint8_t *spec, size_t n, size_t *out_n) {
    uint8_t s[32];
    memset(s, 0, sizeof s);
    memcpy(s, spec, n < 32 ? n : 32);
    uint64_t off = tbc__get_u64(s), len = tbc__get_u64(s + 8), stride = tbc__get_u64(s + 16);
    uint64_t runs = tbc__get_u64(s + 24);
    if (len > FZ_FILL_MAX) len = FZ_FILL_MAX;
    if (len && runs > FZ_FILL_MAX / len) runs = FZ_FILL_MAX / len;
    if (!len) runs = runs > 1 ? 1 : runs;
    size_t bytes = (size_t)(len * runs);
    uint8_t *b = (uint8_t *)malloc(64 + bytes);
    if (!b) return NULL;
    memset(b, 0, 64 + bytes);
    const uint8_t *base = fz_model->map.base;
    uint64_t size = fz_model->map.size;
    for (uint64_t k = 0; k < runs; k++) {
        uint64_t at = off + k * stride;  // may wrap: any bytes will do, the receiver checks the range
        if (at < size) memcpy(b + 64 + k * len, base + at, (size_t)(size - at < len ? size - at : len));
    }
    tbc__put_u64(b, off);
    tbc__put_u64(b + 8, len);
    tbc__put_u64(b + 16, stride);
    tbc__put_u64(b + 24, runs);
    tbc__sha256(b + 64, bytes, b + 32);
    *out_n = 64 + bytes;
    return b;
}

static void fz_play_records(tbc__link *l, const uint8_t *p, size_t n) {
    size_t pos = 0;
    while (n - pos >= 6) {
        int op = p[pos];
        uint16_t type = p[pos + 1];
        uint32_t len = tbc__get_u32(p + pos + 2);
        pos += 6;
        if (len > n - pos) len = (uint32_t)(n - pos);
        const uint8_t *pl = p + pos;
        pos += len;
        int ok = 1;
        uint8_t *tmp = NULL;
        size_t tn = 0;
        switch (op & 7) {
        case 0: case 6: case 7:
            ok = fz_send_frame(l, type, pl, len, op & 7);
            break;
        case 1:
            tmp = (uint8_t *)malloc(len ? len : 1);
            if (!tmp) return;
            memcpy(tmp, pl, len);
            if (type == TBC__MSG_DATA && len >= 64) tbc__sha256(tmp + 64, len - 64, tmp + 32);
            ok = fz_send_frame(l, type, tmp, len, 0);
            break;
        case 2: {
            tbc_error err;
            struct iovec iov;
            iov.iov_base = (void *)pl;
            iov.iov_len = len;
            ok = !len || tbc__io_all(l, 1, &iov, 1, tbc__now() + 2.0, &err) == TBC_OK;
            break;
        }
        case 3: {
            uint64_t save = l->send_seq;
            l->send_seq += (op >> 3) ? (uint64_t)(op >> 3) : (uint64_t)-1;
            ok = fz_send_frame(l, type, pl, len, 0);
            l->send_seq = save + 1;
            break;
        }
        case 4:
            tmp = fz_model_data(pl, len, &tn);
            if (!tmp) return;
            ok = fz_send_frame(l, type, tmp, tn, 0);
            break;
        case 5: {
            uint8_t spec[5] = {0, 0, 0, 0, 0};
            memcpy(spec, pl, len < 5 ? len : 5);
            tn = tbc__get_u32(spec);
            if (tn > FZ_FILL_MAX) tn = FZ_FILL_MAX;
            tmp = (uint8_t *)malloc(tn ? tn : 1);
            if (!tmp) return;
            memset(tmp, spec[4], tn);
            ok = fz_send_frame(l, type, tmp, tn, 0);
            break;
        }
        }
        free(tmp);
        if (!ok || (op & 7) == 7) return;  // the other side is gone, or the stream ends mid-frame
    }
}

static void *fz_peer_run(void *arg) {
    fz_peer *h = (fz_peer *)arg;
    if (h->listen_fd >= 0) {
        struct pollfd pf;
        pf.fd = h->listen_fd;
        pf.events = POLLIN;
        if (poll(&pf, 1, 5000) == 1) h->fd = accept(h->listen_fd, NULL, NULL);
        close(h->listen_fd);  // a reconnection is refused at once
        h->listen_fd = -1;
        if (h->fd < 0) return NULL;
        tbc__set_nonblock(h->fd);
    }
    tbc__link l;
    memset(&l, 0, sizeof l);
    l.fd = h->fd;
    snprintf(l.peer, sizeof l.peer, "side under test");
    int ok = 1;
    if (!h->raw) {
        tbc__hello mine, theirs;
        tbc__hello_fill(&mine, h->coordinator ? 0 : 1, "fuzz-harness", h->hello_model ? fz_model : NULL, 1);
        if (h->hello_model == 2) mine.model_id[0] ^= 1;
        mine.mem_usable = (uint64_t)1 << 30;  // the same pipeline split whatever the memory of this machine
        tbc_error err;
        ok = tbc__handshake(&l, h->coordinator, NULL, 0, &mine, &theirs, 2.0, &err) == TBC_OK;
    }
    pthread_t drainer;
    int draining = ok && pthread_create(&drainer, NULL, fz_drain, h) == 0;
    if (draining) {
        if (h->raw && h->n) {
            tbc_error err;
            struct iovec iov;
            iov.iov_base = (void *)h->in;
            iov.iov_len = h->n;
            tbc__io_all(&l, 1, &iov, 1, tbc__now() + 2.0, &err);
        } else if (!h->raw) {
            fz_play_records(&l, h->in, h->n);
        }
    }
    shutdown(h->fd, SHUT_WR);
    if (draining) pthread_join(drainer, NULL);
    else fz_drain(h);
    close(h->fd);
    return NULL;
}

// ---- one input against each side ----
typedef struct fz_outcome {
    tbc_result rc;
    uint32_t counts[64];          // frames the side under test sent, by type
    char message[512];            // why it failed
} fz_outcome;

static void fz_run_worker(int mode, const uint8_t *in, size_t n, fz_outcome *out) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
    tbc__set_nonblock(sv[0]);
    tbc__set_nonblock(sv[1]);
    fz_peer h;
    memset(&h, 0, sizeof h);
    h.fd = sv[1];
    h.listen_fd = -1;
    h.coordinator = 1;
    h.raw = (mode & FZ_MODE_RAW) != 0;
    h.in = in;
    h.n = n;
    pthread_t t;
    if (pthread_create(&t, NULL, fz_peer_run, &h) != 0) { close(sv[0]); close(sv[1]); return; }
    int own = (mode & FZ_MODE_BIT2) != 0;
    fz_log log;
    memset(&log, 0, sizeof log);
    tbc_node_desc d;
    memset(&d, 0, sizeof d);
    d.model_path = own ? "fuzz-model.gguf" : NULL;
    d.n_threads = 1;
    d.cache_dir = fz_cache_dir;
    d.name = "fuzz-worker";
    d.timeout = FZ_WORKER_TIMEOUT;
    d.mem_limit = (uint64_t)256 << 20;  // what a plan may ask of this node (libFuzzer stops at a 4 GiB malloc)
    d.logger.fn = fz_log_fn;
    d.logger.user = &log;
    tbc_error err;
    memset(&err, 0, sizeof err);
    tbc_result rc = tbc__serve_coordinator(sv[0], "fuzz-coordinator", &d, own ? fz_model : NULL, NULL, 0, &err);
    if (fcntl(sv[0], F_GETFD) != -1) __builtin_trap();  // it returned without closing the connection
    pthread_join(t, NULL);
    fz_check_failure(rc, &err, &log);
    out->rc = rc;
    memcpy(out->counts, h.counts, sizeof out->counts);
    memcpy(out->message, err.message, sizeof out->message);
    if (!own) fz_remove_cache();
}

static void fz_run_coordinator(int mode, const uint8_t *in, size_t n, fz_outcome *out) {
    int lfd, port;
    tbc_error err;
    memset(&err, 0, sizeof err);
    if (tbc__sock_listen("127.0.0.1:0", &lfd, &port, &err) != TBC_OK) return;
    fz_peer h;
    memset(&h, 0, sizeof h);
    h.fd = -1;
    h.listen_fd = lfd;
    h.coordinator = 0;
    h.raw = (mode & FZ_MODE_RAW) != 0;
    h.hello_model = (mode >> FZ_MODE_HELLO_SHIFT) & 3;
    if (h.hello_model == 3) h.hello_model = 0;
    h.in = in;
    h.n = n;
    pthread_t t;
    if (pthread_create(&t, NULL, fz_peer_run, &h) != 0) { close(lfd); return; }
    char peers[64];
    snprintf(peers, sizeof peers, "127.0.0.1:%d", port);
    fz_log log;
    memset(&log, 0, sizeof log);
    tbc_cluster_desc cd;
    memset(&cd, 0, sizeof cd);
    cd.peers = peers;
    cd.split = (mode & FZ_MODE_BIT2) ? TBC_SPLIT_PIPELINE : TBC_SPLIT_TENSOR;
    cd.sync = (mode & FZ_MODE_Q8) ? TBC_SYNC_Q8_0 : TBC_SYNC_F32;
    cd.no_local = (mode & FZ_MODE_NO_LOCAL) != 0;
    cd.timeout = FZ_COORDINATOR_TIMEOUT;
    cd.name = "fuzz-coordinator";
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = fz_model;
    sd.n_ctx = 32;
    sd.n_batch = 4;
    sd.n_threads = 1;
    sd.cluster = &cd;
    sd.logger.fn = fz_log_fn;
    sd.logger.user = &log;
    sd.error = &err;
    tbc_session *s = NULL;
    tbc_result rc = tbc_session_create(&sd, &s);
    fz_check_failure(rc, &err, &log);
    if (rc == TBC_OK) {
        // Five tokens in batches of 4 and 1, then one more: EVAL/HIDDEN, all-reduces and logits, three times.
        static const int32_t prompt[5] = {1, 2, 3, 4, 5}, next[1] = {6};
        tbc_result r1 = tbc_session_eval(s, prompt, 5);
        fz_check_failure(r1, tbc_session_last_error(s), &log);
        if (r1) memcpy(err.message, tbc_session_last_error(s)->message, sizeof err.message);
        tbc_result r2 = tbc_session_eval(s, next, 1);
        if (r2 != TBC_OK) {
            const tbc_error *e = tbc_session_last_error(s);
            if (e->code != r2 || e->message[0] == '\0') __builtin_trap();
            if (!r1) memcpy(err.message, e->message, sizeof err.message);
        }
        rc = r1 ? r1 : r2;
        tbc_session_destroy(s);
    }
    pthread_join(t, NULL);
    out->rc = rc;
    memcpy(out->counts, h.counts, sizeof out->counts);
    memcpy(out->message, err.message, sizeof out->message);
}

static void fz_run(const uint8_t *data, size_t size, fz_outcome *out) {
    memset(out, 0, sizeof *out);
    out->rc = TBC_ERR_INVALID_ARGUMENT;
    if (size < 1) return;
    int before = fz_lowest_free_fd();
    if (data[0] & FZ_MODE_COORDINATOR) fz_run_coordinator(data[0], data + 1, size - 1, out);
    else fz_run_worker(data[0], data + 1, size - 1, out);
    if (fz_lowest_free_fd() != before) __builtin_trap();  // a file descriptor leaked
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_outcome o;
    fz_run(data, size, &o);
    return 0;
}

// ---- seeds: valid sessions of every mode ----
static void fz_rec(tbc__wbuf *b, int op, int type, const void *p, size_t n) {
    uint8_t h[6];
    h[0] = (uint8_t)op;
    h[1] = (uint8_t)type;
    tbc__put_u32(h + 2, (uint32_t)n);
    tbc__wb_put(b, h, 6);
    if (n) tbc__wb_put(b, p, n);
}

static void fz_rec_fill(tbc__wbuf *b, int type, size_t n, uint8_t value) {
    uint8_t spec[5];
    tbc__put_u32(spec, (uint32_t)n);
    spec[4] = value;
    fz_rec(b, 5, type, spec, 5);
}

static void fz_rec_model_data(tbc__wbuf *b, const tbc__range *r) {
    uint64_t chunk = TBC__DATA_CHUNK < FZ_FILL_MAX ? TBC__DATA_CHUNK : FZ_FILL_MAX;
    uint64_t per = r->len ? chunk / r->len : 1;
    for (uint64_t c0 = 0; c0 < r->count; c0 += per) {
        uint8_t spec[32];
        uint64_t cn = r->count - c0 < per ? r->count - c0 : per;
        tbc__put_u64(spec, r->off + c0 * r->stride);
        tbc__put_u64(spec + 8, r->len);
        tbc__put_u64(spec + 16, r->stride);
        tbc__put_u64(spec + 24, cn);
        fz_rec(b, 4, TBC__MSG_DATA, spec, 32);
    }
}

// A batch: sequence 0 from pos on, or (rows) rows that alternate between sequences 0 and 1, whose positions
// follow from *seq_len, with the last row of each sequence wanting logits (EVAL).
static void fz_rec_rows(tbc__wbuf *b, int type, uint64_t pos, uint32_t n, const uint8_t *body, size_t body_n,
                        uint32_t *seq_len) {
    tbc__wbuf m;
    memset(&m, 0, sizeof m);
    tbc__wb_u64(&m, seq_len ? 0 : pos);
    tbc__wb_u32(&m, n);
    tbc__wb_u32(&m, seq_len ? TBC__ROWS : 0);
    if (type == TBC__MSG_EVAL) tbc__wb_put(&m, body, body_n);
    if (seq_len) {
        uint32_t last[2] = {0, 0}, n_out = 0;
        for (uint32_t t = 0; t < n; t++) {
            tbc__wb_u32(&m, t % 2);
            tbc__wb_u32(&m, seq_len[t % 2]++);
            last[t % 2] = t + 1;
        }
        if (type == TBC__MSG_EVAL) {
            n_out = (last[0] > 0) + (last[1] > 0);
            tbc__wb_u32(&m, n_out);
            for (int q = 0; q < 2; q++) if (last[q]) tbc__wb_u32(&m, last[q] - 1);
        }
    }
    if (type != TBC__MSG_EVAL) tbc__wb_put(&m, body, body_n);
    fz_rec(b, 0, type, m.p, m.n);
    free(m.p);
}

static void fz_rec_batch(tbc__wbuf *b, int type, uint64_t pos, uint32_t n, const uint8_t *body, size_t body_n) {
    fz_rec_rows(b, type, pos, n, body, body_n, NULL);
}

// The byte ranges of the model file a shard reads, as the worker will ask for them, and its share (info).
static tbc__range *fz_shard(int tensor, int layer_begin, int layer_end, int tp_rank, int tp_size, tbc_shard_info *info,
                            int *n) {
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = fz_model;
    sd.n_ctx = 32;
    sd.n_batch = 4;
    sd.n_threads = 1;
    sd.shard.layer_begin = layer_begin;
    sd.shard.layer_end = layer_end;
    sd.shard.tp_rank = tp_rank;
    sd.shard.tp_size = tp_size;
    sd.shard.output = tensor ? 1 : -1;
    tbc_session *s = NULL;
    *n = 0;
    memset(info, 0, sizeof *info);
    if (tbc_session_create(&sd, &s) != TBC_OK) return NULL;
    tbc_session_shard_info(s, info);
    tbc__range *r = (tbc__range *)malloc(sizeof(tbc__range) * (size_t)(s->n_ranges + 1));
    if (r) {
        memcpy(r, s->ranges, sizeof(tbc__range) * (size_t)s->n_ranges);
        *n = s->n_ranges;
    }
    tbc_session_destroy(s);
    return r;
}

typedef struct fz_seed {
    const char *name;
    tbc__wbuf b;
    tbc_result want_rc;
    int want_type, want_count;    // and this many frames of this type from the side under test
} fz_seed;

// A worker session: PLAN, the shard when the worker has no model file, two requests, a heartbeat, BYE. With rows,
// the plan has two sequences and the requests carry rows of both.
static void fz_seed_worker(fz_seed *sd, int own, int tensor, int sync, int rows) {
    const tbc_model_info *I = &fz_model->info;
    int L = I->n_layer, d = I->n_embd;
    tbc__wbuf *b = &sd->b;
    tbc__wb_put(b, (uint8_t[]){(uint8_t)(own ? FZ_MODE_BIT2 : 0)}, 1);
    tbc__plan_msg p;
    memset(&p, 0, sizeof p);
    memcpy(p.model_id, fz_model_id, 32);
    p.file_size = fz_model->map.size;
    p.header_bytes = fz_model->g.data_offset;
    p.rank = 1;
    p.world = 2;
    p.split = tensor ? TBC_SPLIT_TENSOR : TBC_SPLIT_PIPELINE;
    p.sync = (uint32_t)sync;
    p.layer_begin = tensor ? 0 : L / 2;
    p.layer_end = L;
    p.tp_rank = tensor ? 1 : 0;
    p.tp_size = tensor ? 2 : 1;
    p.n_ctx = 32;
    p.n_batch = 4;
    p.kv_type = 0;
    p.n_seq = rows ? 2 : 1;
    int n_ranges = 0;
    tbc_shard_info info;
    tbc__range *r = fz_shard(tensor, p.layer_begin, p.layer_end, p.tp_rank, p.tp_size, &info, &n_ranges);
    int32_t expect[6] = {info.head_begin, info.head_end, info.ff_begin, info.ff_end, info.vocab_begin, info.vocab_end};
    memcpy(p.expect, expect, sizeof expect);  // the share the coordinator works out, which the worker checks
    tbc__wbuf m;
    memset(&m, 0, sizeof m);
    tbc__plan_encode(&p, &m);
    fz_rec(b, 0, TBC__MSG_PLAN, m.p, m.n);
    free(m.p);
    if (!own) {
        tbc__range header = {0, p.header_bytes, 0, 1};
        fz_rec_model_data(b, &header);
        for (int i = 0; i < n_ranges; i++) fz_rec_model_data(b, &r[i]);
    }
    free(r);
    static const uint32_t counts[2] = {3, 1};
    uint64_t pos = 0;
    uint32_t seq_len[2] = {0, 0};
    for (int q = 0; q < 2; q++) {
        uint32_t cnt = counts[q];
        if (tensor) {
            uint8_t ids[12];
            for (uint32_t t = 0; t < cnt; t++) tbc__put_u32(ids + 4 * t, 1 + (uint32_t)pos + t);
            fz_rec_rows(b, TBC__MSG_EVAL, pos, cnt, ids, cnt * 4, rows ? seq_len : NULL);
            size_t sum = tbc__sync_bytes(sync, (int64_t)cnt * d);
            for (int k = 0; k < 2 * L; k++) fz_rec_fill(b, TBC__MSG_SUM, sum, 0x3c);
        } else {
            size_t bytes = (size_t)cnt * (size_t)d * 4;
            float *x = (float *)malloc(bytes);
            for (size_t i = 0; i < bytes / 4; i++) x[i] = (float)((int)(i % 17) - 8) * 0.125f;
            fz_rec_rows(b, TBC__MSG_HIDDEN, pos, cnt, (const uint8_t *)x, bytes, rows ? seq_len : NULL);
            free(x);
        }
        pos += cnt;
    }
    fz_rec(b, 0, TBC__MSG_HEARTBEAT, NULL, 0);
    fz_rec(b, 0, TBC__MSG_BYE, NULL, 0);
    sd->want_rc = TBC_OK;
    sd->want_type = tensor ? TBC__MSG_LOGITS : TBC__MSG_HIDDEN;
    sd->want_count = 2;
}

// A coordinator session: the harness (a worker) echoes the five heartbeats that measure the link, asks for its shard
// when it has no model, says READY, then answers the three batches of fz_run_coordinator (4 tokens, 1 token, 1 token).
static void fz_seed_coordinator(fz_seed *sd, int tensor, int sync, int hello_model, int no_local) {
    const tbc_model_info *I = &fz_model->info;
    int L = I->n_layer, d = I->n_embd;
    tbc__wbuf *b = &sd->b;
    int mode = FZ_MODE_COORDINATOR | (tensor ? 0 : FZ_MODE_BIT2) | (sync ? FZ_MODE_Q8 : 0) |
               (hello_model << FZ_MODE_HELLO_SHIFT) | (no_local ? FZ_MODE_NO_LOCAL : 0);
    // The harness's share: half of the heads or the later layers (the coordinator decides; any ranges will do for
    // NEED), or everything when the coordinator holds nothing.
    int tp_rank = no_local ? 0 : 1, tp_size = no_local ? 1 : 2, layer_begin = no_local ? 0 : L / 2;
    tbc__wb_put(b, (uint8_t[]){(uint8_t)mode}, 1);
    size_t ping = (size_t)d * 4 < 65536 ? (size_t)d * 4 : 65536;  // the round-trip probe after the handshake
    for (int k = 0; k < 5; k++) fz_rec_fill(b, TBC__MSG_HEARTBEAT, ping, 0);
    if (!hello_model) {
        tbc__wbuf m;
        memset(&m, 0, sizeof m);
        tbc__wb_u32(&m, 1);
        tbc__wb_u64(&m, 0); tbc__wb_u64(&m, fz_model->g.data_offset); tbc__wb_u64(&m, 0); tbc__wb_u64(&m, 1);
        fz_rec(b, 0, TBC__MSG_NEED, m.p, m.n);
        free(m.p);
        int n = 0;
        tbc_shard_info info;
        tbc__range *r = fz_shard(tensor, tensor ? 0 : layer_begin, L, tensor ? tp_rank : 0, tensor ? tp_size : 1,
                                 &info, &n);
        memset(&m, 0, sizeof m);
        tbc__wb_u32(&m, (uint32_t)n);
        for (int i = 0; i < n; i++) {
            tbc__wb_u64(&m, r[i].off); tbc__wb_u64(&m, r[i].len); tbc__wb_u64(&m, r[i].stride);
            tbc__wb_u64(&m, r[i].count);
        }
        fz_rec(b, 0, TBC__MSG_NEED, m.p, m.n);
        free(m.p);
        free(r);
    }
    uint8_t ready[16];
    memset(ready, 0, sizeof ready);
    fz_rec(b, 0, TBC__MSG_READY, ready, sizeof ready);
    static const int batches[3] = {4, 1, 1};
    int64_t vb, ve;
    tbc__split_range(I->n_vocab, 1, tp_size, tp_rank, &vb, &ve);
    for (int q = 0; q < 3; q++) {
        int n = batches[q];
        if (tensor) {
            size_t part = tbc__sync_bytes(sync, (int64_t)n * d);
            for (int k = 0; k < 2 * L; k++) fz_rec_fill(b, TBC__MSG_PARTIAL, part, 0x3c);
            if (q != 0) fz_rec_fill(b, TBC__MSG_LOGITS, (size_t)(ve - vb) * 4, 0x3c);
        } else {
            size_t bytes = (size_t)n * (size_t)d * 4;
            uint8_t *x = (uint8_t *)calloc(1, bytes);
            for (size_t i = 0; i < bytes; i += 4) tbc__put_u32(x + i, 0x3c000000u);
            fz_rec_batch(b, TBC__MSG_HIDDEN, 0, (uint32_t)n, x, bytes);
            free(x);
        }
    }
    sd->want_rc = TBC_OK;
    sd->want_type = tensor ? TBC__MSG_EVAL : TBC__MSG_HIDDEN;
    sd->want_count = 3;
}

// Raw mode: a well-formed HELLO (zero tag, as in the handshake) and an AUTH that proves nothing.
static void fz_seed_raw(fz_seed *sd, int coordinator) {
    tbc__wbuf *b = &sd->b;
    tbc__wb_put(b, (uint8_t[]){(uint8_t)(FZ_MODE_RAW | (coordinator ? FZ_MODE_COORDINATOR : 0))}, 1);
    tbc__hello h;
    tbc__hello_fill(&h, coordinator ? 1 : 0, "fuzz-raw", fz_model, 1);
    memset(h.nonce, 7, sizeof h.nonce);
    h.mem_usable = (uint64_t)1 << 30;
    snprintf(h.name, sizeof h.name, "fuzz-raw");
    tbc__wbuf m;
    memset(&m, 0, sizeof m);
    tbc__hello_encode(&h, &m);
    uint8_t auth[32];
    memset(auth, 0x5a, sizeof auth);
    for (int f = 0; f < 2; f++) {
        const uint8_t *p = f ? auth : m.p;
        size_t n = f ? sizeof auth : m.n;
        uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG];
        tbc__put_u32(hdr, TBC__FRAME_MAGIC);
        tbc__put_u16(hdr + 4, TBC__PROTOCOL_VERSION);
        tbc__put_u16(hdr + 6, f ? TBC__MSG_AUTH : TBC__MSG_HELLO);
        tbc__put_u32(hdr + 8, (uint32_t)n);
        tbc__put_u32(hdr + 12, 0);
        tbc__put_u64(hdr + 16, (uint64_t)f);
        tbc__put_u64(hdr + 24, 0);
        memset(tag, 0, sizeof tag);
        tbc__wb_put(b, hdr, sizeof hdr);
        tbc__wb_put(b, p, n);
        tbc__wb_put(b, tag, sizeof tag);
    }
    free(m.p);
    sd->want_rc = TBC_ERR_AUTH;
    sd->want_type = TBC__MSG_HELLO;
    sd->want_count = 1;
}

static int fz_seeds_made;  // how many fz_write_seeds made

// Writes the seeds into dir, runs each, and returns how many no longer reach what they were made for.
static int fz_write_seeds(const char *dir) {
    fz_seed seeds[24];
    int n = 0;
    memset(seeds, 0, sizeof seeds);
    static const char *const worker_names[8] = {
        "worker-cache-pipeline", "worker-cache-tensor-f32", "worker-own-pipeline", "worker-own-tensor-f32",
        "worker-cache-pipeline-q8", "worker-cache-tensor-q8", "worker-own-pipeline-q8", "worker-own-tensor-q8"};
    for (int v = 0; v < 8; v++) {
        int own = (v >> 1) & 1, tensor = v & 1, sync = v >> 2;
        if (sync && !tensor) continue;  // a pipeline sends F32 hidden states whatever the sync format
        seeds[n].name = worker_names[v];
        fz_seed_worker(&seeds[n++], own, tensor, sync, 0);
    }
    seeds[n].name = "worker-own-tensor-rows";  // two sequences in each batch
    fz_seed_worker(&seeds[n++], 1, 1, 0, 1);
    seeds[n].name = "worker-own-pipeline-rows";
    fz_seed_worker(&seeds[n++], 1, 0, 0, 1);
    static const char *const coord_names[8] = {"coordinator-tensor-f32", "coordinator-tensor-q8",
                                               "coordinator-pipeline", "coordinator-tensor-f32-shard",
                                               "coordinator-tensor-q8-shard", "coordinator-pipeline-shard",
                                               "coordinator-tensor-no-local", "coordinator-pipeline-no-local"};
    for (int v = 0; v < 8; v++) {
        int tensor = v < 6 ? (v % 3) != 2 : v == 6, sync = v < 6 && (v % 3) == 1;
        int hello_model = v < 3 || v >= 6 ? 1 : 0, no_local = v >= 6;
        seeds[n].name = coord_names[v];
        fz_seed_coordinator(&seeds[n++], tensor, sync, hello_model, no_local);
    }
    // A coordinator that says goodbye instead of sending a plan.
    seeds[n].name = "worker-bye-before-plan";
    tbc__wb_put(&seeds[n].b, (uint8_t[]){FZ_MODE_BIT2}, 1);
    fz_rec(&seeds[n].b, 0, TBC__MSG_BYE, NULL, 0);
    seeds[n].want_rc = TBC_OK;
    seeds[n].want_type = TBC__MSG_READY;
    seeds[n++].want_count = 0;
    seeds[n].name = "worker-raw";
    fz_seed_raw(&seeds[n++], 0);
    seeds[n].name = "coordinator-raw";
    fz_seed_raw(&seeds[n++], 1);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        fz_seed *s = &seeds[i];
        if (s->b.failed) { fprintf(stderr, "fuzz_proto: out of memory making seeds\n"); return 1; }
        char path[1024];
        snprintf(path, sizeof path, "%s/seed-%s", dir, s->name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(s->b.p, 1, s->b.n, f) != s->b.n || fclose(f) != 0) {
            fprintf(stderr, "fuzz_proto: cannot write %s\n", path);
            return 1;
        }
        fz_outcome o;
        fz_run(s->b.p, s->b.n, &o);
        int ok = o.rc == s->want_rc && o.counts[s->want_type] == (uint32_t)s->want_count;
        printf("fuzz_proto: seed %-28s %6zu bytes: %s (%u frames of type %d, want %d; %s%s%s)\n", s->name, s->b.n,
               ok ? "ok" : "FAILED", o.counts[s->want_type], s->want_type, s->want_count, tbc_result_str(o.rc),
               o.rc ? ": " : "", o.rc ? o.message : "");
        bad += !ok;
        free(s->b.p);
    }
    fz_seeds_made = n;
    return bad;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("TBC_FUZZ_MODEL");
    const char *paths[3] = {env, "../shared/models/stories260K-q8_0.gguf", "build/fuzz/proto-model.gguf"};
    for (int i = 0; i < 3 && !fz_model; i++) {
        if (!paths[i] || (i > 0 && env) || access(paths[i], R_OK) != 0) continue;
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = paths[i];
        if (tbc_model_open(&md, &fz_model) != TBC_OK) fz_model = NULL;
    }
    if (!fz_model) {
        fprintf(stderr, "fuzz_proto: no model: set TBC_FUZZ_MODEL, or run from the repository root with "
                        "../shared/models/stories260K-q8_0.gguf or build/fuzz/proto-model.gguf present\n");
        exit(1);
    }
    tbc__model_id(fz_model, fz_model_id);
    // The shard cache of a worker without the model file: in memory when /dev/shm exists (it fsyncs every range).
    snprintf(fz_cache_dir, sizeof fz_cache_dir, "%s/tbc-fuzz-proto-%d",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
    const char *seeds = getenv("TBC_FUZZ_PROTO_SEEDS");
    if (seeds) exit(fz_write_seeds(seeds) ? 1 : 0);
    return 0;
}
