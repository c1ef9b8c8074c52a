// >>cluster
// Message types of protocol version 1 (docs/PROTOCOL.md).
enum {
    TBC__MSG_HELLO = 1, TBC__MSG_AUTH = 2, TBC__MSG_ERROR = 3, TBC__MSG_PLAN = 4, TBC__MSG_NEED = 5,
    TBC__MSG_DATA = 6, TBC__MSG_READY = 7, TBC__MSG_EVAL = 8, TBC__MSG_PARTIAL = 9, TBC__MSG_SUM = 10,
    TBC__MSG_HIDDEN = 11, TBC__MSG_HEARTBEAT = 12, TBC__MSG_BYE = 13
};
#define TBC__BIT(t) ((uint64_t)1 << (t))
#define TBC__HELLO_MAX 4096
#define TBC__DATA_CHUNK ((uint64_t)8 << 20)

typedef struct tbc__hello {
    uint32_t role;                 // 0 coordinator, 1 worker
    uint8_t nonce[32];
    char name[64], simd[32], transports[128];
    uint32_t cores;
    uint64_t mem_usable;
    uint32_t has_model;
    uint8_t model_id[32];
    uint64_t model_size;
} tbc__hello;

static const char *tbc__simd_name(void) {
#if defined(__AVX512VNNI__)
    return "avx512-vnni";
#elif defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__ARM_FEATURE_DOTPROD)
    return "neon-dotprod";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "scalar";
#endif
}

static uint64_t tbc__usable_memory(void) {
#if defined(_SC_AVPHYS_PAGES)
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && size > 0) return (uint64_t)pages * (uint64_t)size;
#endif
    return 0;
}

// The model's identity: SHA-256 of the GGUF header and tensor directory (everything before the tensor data).
static void tbc__model_id(const tbc_model *m, uint8_t id[32]) { tbc__sha256(m->map.base, (size_t)m->g.data_offset, id); }

static void tbc__hello_encode(const tbc__hello *h, tbc__wbuf *w) {
    tbc__wb_u32(w, h->role);
    tbc__wb_put(w, h->nonce, 32);
    tbc__wb_str(w, h->name);
    tbc__wb_u32(w, h->cores);
    tbc__wb_u64(w, h->mem_usable);
    tbc__wb_str(w, h->simd);
    tbc__wb_str(w, h->transports);
    tbc__wb_u32(w, h->has_model);
    tbc__wb_put(w, h->model_id, 32);
    tbc__wb_u64(w, h->model_size);
}

// Reads a length-prefixed string into a fixed buffer; the length is checked against the buffer and the payload.
static int tbc__rd_fixstr(tbc__reader *r, char *out, size_t cap) {
    uint32_t n;
    if (!tbc__rd_u32(r, &n)) return 0;
    if (n >= cap) {
        tbc__error_set(r->err, TBC_ERR_PROTOCOL, "%s: string of %u bytes exceeds %zu", r->what, n, cap - 1);
        return 0;
    }
    if (!tbc__rd(r, out, n)) return 0;
    out[n] = 0;
    return 1;
}

static int tbc__hello_decode(const uint8_t *p, uint32_t n, tbc__hello *h, tbc_error *err) {
    tbc__reader r;
    r.base = p; r.size = n; r.pos = 0; r.err = err; r.what = "hello message";
    memset(h, 0, sizeof *h);
    return tbc__rd_u32(&r, &h->role) && tbc__rd(&r, h->nonce, 32) && tbc__rd_fixstr(&r, h->name, sizeof h->name) &&
           tbc__rd_u32(&r, &h->cores) && tbc__rd_u64(&r, &h->mem_usable) &&
           tbc__rd_fixstr(&r, h->simd, sizeof h->simd) && tbc__rd_fixstr(&r, h->transports, sizeof h->transports) &&
           tbc__rd_u32(&r, &h->has_model) && tbc__rd(&r, h->model_id, 32) && tbc__rd_u64(&r, &h->model_size);
}

// Sends an ERROR message (best effort: the connection is about to close).
static void tbc__send_error(tbc__link *l, const char *text) {
    tbc_error ignore;
    tbc__link_send(l, TBC__MSG_ERROR, text, strlen(text), tbc__now() + 1.0, &ignore);
}

// A received ERROR becomes our error, with the peer's text.
static tbc_result tbc__peer_error(tbc__link *l, const uint8_t *p, uint32_t n, tbc_error *err) {
    char text[400];
    size_t k = n < sizeof text - 1 ? n : sizeof text - 1;
    memcpy(text, p, k);
    text[k] = 0;
    for (size_t i = 0; i < k; i++) if ((unsigned char)text[i] < 0x20) text[i] = ' ';
    tbc_result code = TBC_ERR_PROTOCOL;
    if (strstr(text, "authentication")) code = TBC_ERR_AUTH;
    else if (strstr(text, "model")) code = TBC_ERR_MODEL_MISMATCH;
    else if (strstr(text, "version")) code = TBC_ERR_VERSION;
    tbc__error_set(err, code, "%s refused: %s", l->peer, text);
    return code;
}

// Mutual challenge-response: each side proves it holds the cluster key over both nonces, then both derive the
// session key that authenticates every later frame.
static tbc_result tbc__handshake(tbc__link *l, int coordinator, const uint8_t *key, size_t key_len,
                                 const tbc__hello *mine, tbc__hello *theirs, double timeout, tbc_error *err) {
    tbc__wbuf w;
    memset(&w, 0, sizeof w);
    tbc__hello_encode(mine, &w);
    uint8_t buf[TBC__HELLO_MAX];
    uint16_t type;
    uint32_t n;
    tbc_result rc = TBC_OK;
    double deadline = tbc__now() + timeout;
    if (w.failed) { TBC_FREE(w.p); return TBC_ERR_OUT_OF_MEMORY; }
    rc = tbc__link_send(l, TBC__MSG_HELLO, w.p, w.n, deadline, err);
    TBC_FREE(w.p);
    if (rc) return rc;
    if ((rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_HELLO) | TBC__BIT(TBC__MSG_ERROR), &type, buf, sizeof buf, &n,
                             deadline, err)))
        return rc;
    if (type == TBC__MSG_ERROR) return tbc__peer_error(l, buf, n, err);
    if (!tbc__hello_decode(buf, n, theirs, err)) return TBC_ERR_PROTOCOL;
    if (theirs->role != (uint32_t)(coordinator ? 1 : 0)) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "%s is a %s, expected a %s", l->peer, theirs->role ? "worker" : "coordinator",
                       coordinator ? "worker" : "coordinator");
        return TBC_ERR_PROTOCOL;
    }
    const uint8_t *nc = coordinator ? mine->nonce : theirs->nonce, *nw = coordinator ? theirs->nonce : mine->nonce;
    uint8_t proof_c[32], proof_w[32], msg[64 + 16];
    memcpy(msg, "tbc1 coordinator", 16);
    memcpy(msg + 16, nc, 32);
    memcpy(msg + 48, nw, 32);
    tbc__hmac_sha256(key, key_len, msg, sizeof msg, proof_c);
    memcpy(msg, "tbc1 worker.....", 16);
    tbc__hmac_sha256(key, key_len, msg, sizeof msg, proof_w);
    const uint8_t *send_proof = coordinator ? proof_c : proof_w, *want = coordinator ? proof_w : proof_c;
    if (coordinator) {  // the coordinator proves first: a worker never answers a challenge for someone without the key
        if ((rc = tbc__link_send(l, TBC__MSG_AUTH, send_proof, 32, deadline, err))) return rc;
    }
    if ((rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_AUTH) | TBC__BIT(TBC__MSG_ERROR), &type, buf, sizeof buf, &n,
                             deadline, err)))
        return rc;
    if (type == TBC__MSG_ERROR) return tbc__peer_error(l, buf, n, err);
    if (n != 32 || !tbc__ct_equal(buf, want, 32)) {
        tbc__send_error(l, "authentication failed: the cluster keys differ");
        tbc__error_set(err, TBC_ERR_AUTH, "%s failed authentication: the cluster keys differ (or one side has none)",
                       l->peer);
        return TBC_ERR_AUTH;
    }
    if (!coordinator && (rc = tbc__link_send(l, TBC__MSG_AUTH, send_proof, 32, deadline, err))) return rc;
    uint8_t salt[64];
    memcpy(salt, nc, 32);
    memcpy(salt + 32, nw, 32);
    static const char info[] = "tbc1 session key";
    tbc__hkdf_sha256(salt, sizeof salt, key, key_len, (const uint8_t *)info, sizeof info - 1, l->key, 32);
    l->keyed = 1;
    return TBC_OK;
}

static void tbc__hello_fill(tbc__hello *h, uint32_t role, const char *name, const tbc_model *m, int threads) {
    memset(h, 0, sizeof *h);
    h->role = role;
    tbc__random_bytes(h->nonce, 32);
    if (name && name[0]) snprintf(h->name, sizeof h->name, "%s", name);
    else if (gethostname(h->name, sizeof h->name - 1) != 0) snprintf(h->name, sizeof h->name, "node");
    h->cores = (uint32_t)(threads > 0 ? threads : tbc__cpu_count());
    h->mem_usable = tbc__usable_memory();
    snprintf(h->simd, sizeof h->simd, "%s", tbc__simd_name());
    snprintf(h->transports, sizeof h->transports, "tcp");
    if (m) {
        h->has_model = 1;
        tbc__model_id(m, h->model_id);
        h->model_size = m->map.size;
    }
}

// What the coordinator asks a worker to hold.
typedef struct tbc__plan_msg {
    uint8_t model_id[32];
    uint64_t file_size, header_bytes;
    uint32_t rank, world, split, sync;
    int32_t layer_begin, layer_end, tp_rank, tp_size;
    uint32_t n_ctx, n_batch, kv_type;
} tbc__plan_msg;

static void tbc__plan_encode(const tbc__plan_msg *p, tbc__wbuf *w) {
    tbc__wb_put(w, p->model_id, 32);
    tbc__wb_u64(w, p->file_size);
    tbc__wb_u64(w, p->header_bytes);
    uint32_t v[10] = {p->rank, p->world, p->split, p->sync, (uint32_t)p->layer_begin, (uint32_t)p->layer_end,
                      (uint32_t)p->tp_rank, (uint32_t)p->tp_size, p->n_ctx, p->n_batch};
    for (int i = 0; i < 10; i++) tbc__wb_u32(w, v[i]);
    tbc__wb_u32(w, p->kv_type);
}

static int tbc__plan_decode(const uint8_t *b, uint32_t n, tbc__plan_msg *p, tbc_error *err) {
    tbc__reader r;
    r.base = b; r.size = n; r.pos = 0; r.err = err; r.what = "plan message";
    uint32_t v[11];
    if (!tbc__rd(&r, p->model_id, 32) || !tbc__rd_u64(&r, &p->file_size) || !tbc__rd_u64(&r, &p->header_bytes)) return 0;
    for (int i = 0; i < 11; i++) if (!tbc__rd_u32(&r, &v[i])) return 0;
    p->rank = v[0]; p->world = v[1]; p->split = v[2]; p->sync = v[3];
    p->layer_begin = (int32_t)v[4]; p->layer_end = (int32_t)v[5]; p->tp_rank = (int32_t)v[6]; p->tp_size = (int32_t)v[7];
    p->n_ctx = v[8]; p->n_batch = v[9]; p->kv_type = v[10];
    if (p->n_ctx == 0 || p->n_ctx > (1u << 24) || p->n_batch == 0 || p->n_batch > p->n_ctx || p->kv_type > 1 ||
        p->sync > 1 || p->world < 2 || p->world > 64 || p->rank == 0 || p->rank >= p->world ||
        p->header_bytes > p->file_size) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "plan message has out-of-range values");
        return 0;
    }
    return 1;
}

// ---- activations on the wire: F32, or Q8_0 blocks (dim is a multiple of 32 for every supported model) ----
static size_t tbc__sync_bytes(int sync, int64_t n) {
    return sync ? (size_t)(n / 32) * sizeof(tbc__block_q8_0) : (size_t)n * 4;
}

static void tbc__sync_pack(int sync, const float *x, int64_t n, void *out) {
    if (sync) tbc__quantize(TBC_TYPE_Q8_0, x, out, n);
    else memcpy(out, x, (size_t)n * 4);
}

static void tbc__sync_unpack(int sync, const void *in, int64_t n, float *x) {
    if (sync) tbc__dequantize(TBC_TYPE_Q8_0, in, x, n);
    else memcpy(x, in, (size_t)n * 4);
}

// ---- the coordinator's side ----
typedef struct tbc__peer {
    char addr[128];
    tbc__link link;
    tbc__hello hello;
    tbc__plan_msg plan;
    int up;
} tbc__peer;

struct tbc__cluster {
    tbc__peer *peers;
    int n_peers;
    tbc_cluster_desc desc;
    char *peers_copy;
    uint8_t *key;
    size_t key_len;
    int split;                    // TBC_SPLIT_TENSOR or TBC_SPLIT_PIPELINE, resolved
    int broken;                   // a link failed: rebuilt at the start of the next request
    float *sum, *part;            // all-reduce buffers (n_batch * dim floats)
    uint8_t *wire;                // packed activations
    size_t wire_cap;
    tbc_error err;
    // statistics for bench and logs
    uint64_t shard_bytes_sent;
    uint64_t allreduces;
    double comm_seconds;
};

static size_t tbc__max_msg(const tbc_model *m, int n_batch, int sync) {
    size_t act = tbc__sync_bytes(sync, (int64_t)n_batch * m->info.n_embd);
    size_t hidden = 16 + (size_t)n_batch * (size_t)m->info.n_embd * 4;
    size_t eval = 16 + (size_t)n_batch * 4;
    size_t a = act > hidden ? act : hidden;
    return (a > eval ? a : eval) + 64;
}

// ---- a range list held by a worker's cache: which byte ranges of the model file it has, verified ----
static int tbc__range_eq(const tbc__range *a, const tbc__range *b) {
    return a->off == b->off && a->len == b->len && a->stride == b->stride && a->count == b->count;
}

typedef struct tbc__manifest {
    tbc__range *r;
    int n, cap;
    char path[1100];
} tbc__manifest;

static void tbc__manifest_load(tbc__manifest *mf, const char *path) {
    memset(mf, 0, sizeof *mf);
    snprintf(mf->path, sizeof mf->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    unsigned long long a, b, c, d;
    while (fscanf(f, "%llu %llu %llu %llu", &a, &b, &c, &d) == 4) {
        if (mf->n == mf->cap) {
            int nc = mf->cap ? mf->cap * 2 : 64;
            tbc__range *nr = (tbc__range *)TBC_REALLOC(mf->r, sizeof(tbc__range) * (size_t)nc);
            if (!nr) break;
            mf->r = nr;
            mf->cap = nc;
        }
        tbc__range *r = &mf->r[mf->n++];
        r->off = a; r->len = b; r->stride = c; r->count = d;
    }
    fclose(f);
}

static int tbc__manifest_has(const tbc__manifest *mf, const tbc__range *r) {
    for (int i = 0; i < mf->n; i++) if (tbc__range_eq(&mf->r[i], r)) return 1;
    return 0;
}

static void tbc__manifest_add(tbc__manifest *mf, const tbc__range *r) {
    FILE *f = fopen(mf->path, "a");
    if (!f) return;
    fprintf(f, "%llu %llu %llu %llu\n", (unsigned long long)r->off, (unsigned long long)r->len,
            (unsigned long long)r->stride, (unsigned long long)r->count);
    fclose(f);
    if (mf->n == mf->cap) {
        int nc = mf->cap ? mf->cap * 2 : 64;
        tbc__range *nr = (tbc__range *)TBC_REALLOC(mf->r, sizeof(tbc__range) * (size_t)nc);
        if (!nr) return;
        mf->r = nr;
        mf->cap = nc;
    }
    mf->r[mf->n++] = *r;
}

// The coordinator answers a NEED with the bytes, in DATA messages of at most TBC__DATA_CHUNK payload bytes:
// {u64 off, len, stride, count; sha256 of the payload} + count runs of len bytes.
static tbc_result tbc__serve_need(tbc__peer *p, const tbc_model *m, const uint8_t *need, uint32_t n, double timeout,
                                  uint64_t *sent, const tbc_logger *log, tbc_error *err) {
    tbc__reader r;
    r.base = need; r.size = n; r.pos = 0; r.err = err; r.what = "need message";
    uint32_t count;
    if (!tbc__rd_u32(&r, &count) || (uint64_t)count * 32 != n - 4) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "%s sent a malformed need message", p->addr);
        return TBC_ERR_PROTOCOL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    tbc_result rc = TBC_OK;
    uint64_t total = 0;
    for (uint32_t i = 0; i < count && !rc; i++) {
        tbc__range g;
        tbc__rd_u64(&r, &g.off); tbc__rd_u64(&r, &g.len); tbc__rd_u64(&r, &g.stride); tbc__rd_u64(&r, &g.count);
        uint64_t last_end;
        if (!g.len || !g.count || g.len > TBC__DATA_CHUNK || (g.count > 1 && g.stride < g.len) ||
            !tbc__mul_u64(g.count - 1, g.stride, &last_end) || !tbc__add_u64(last_end, g.off, &last_end) ||
            !tbc__add_u64(last_end, g.len, &last_end) || last_end > m->map.size) {
            tbc__error_set(err, TBC_ERR_PROTOCOL, "%s asked for bytes outside the model file", p->addr);
            rc = TBC_ERR_PROTOCOL;
            break;
        }
        uint64_t per = TBC__DATA_CHUNK / g.len;  // runs per message
        for (uint64_t c0 = 0; c0 < g.count && !rc; c0 += per) {
            uint64_t cn = g.count - c0 < per ? g.count - c0 : per;
            size_t bytes = (size_t)(cn * g.len);
            if (bytes > cap) {
                uint8_t *nb = (uint8_t *)TBC_REALLOC(buf, bytes);
                if (!nb) { rc = TBC_ERR_OUT_OF_MEMORY; break; }
                buf = nb;
                cap = bytes;
            }
            for (uint64_t k = 0; k < cn; k++)
                memcpy(buf + k * g.len, m->map.base + g.off + (c0 + k) * g.stride, (size_t)g.len);
            uint8_t head[64];
            tbc__put_u64(head, g.off + c0 * g.stride);
            tbc__put_u64(head + 8, g.len);
            tbc__put_u64(head + 16, g.stride);
            tbc__put_u64(head + 24, cn);
            tbc__sha256(buf, bytes, head + 32);
            rc = tbc__link_send2(&p->link, TBC__MSG_DATA, head, sizeof head, buf, bytes, tbc__now() + timeout + 30, err);
            total += bytes;
        }
    }
    TBC_FREE(buf);
    if (!rc) tbc__log(log, TBC_LOG_INFO, "sent %.1f MiB of shard data to %s", (double)total / 1048576.0, p->addr);
    *sent += total;
    return rc;
}

// Splits [0, n_layer) in proportion to weights w[0..k) (at least one layer each).
static void tbc__split_layers(int n_layer, const double *w, int k, int *begin) {
    double tot = 0;
    for (int i = 0; i < k; i++) tot += w[i] > 0 ? w[i] : 1;
    double acc = 0;
    begin[0] = 0;
    for (int i = 1; i < k; i++) {
        acc += w[i - 1] > 0 ? w[i - 1] : 1;
        int b = (int)(n_layer * acc / tot + 0.5);
        if (b < begin[i - 1] + 1) b = begin[i - 1] + 1;
        if (b > n_layer - (k - i)) b = n_layer - (k - i);
        begin[i] = b;
    }
    begin[k] = n_layer;
}

static void tbc__cluster_close(tbc__cluster *c, int polite) {
    for (int i = 0; i < c->n_peers; i++) {
        tbc__peer *p = &c->peers[i];
        if (p->link.fd >= 0 && polite && p->up) {
            tbc_error ignore;
            tbc__link_send(&p->link, TBC__MSG_BYE, NULL, 0, tbc__now() + 0.5, &ignore);
        }
        tbc__link_close(&p->link);
        p->up = 0;
    }
}

static void tbc__cluster_free(tbc__cluster *c) {
    if (!c) return;
    tbc__cluster_close(c, 1);
    TBC_FREE(c->peers);
    TBC_FREE(c->peers_copy);
    if (c->key) memset(c->key, 0, c->key_len);
    TBC_FREE(c->key);
    TBC_FREE(c->sum);
    TBC_FREE(c->part);
    TBC_FREE(c->wire);
    TBC_FREE(c);
}

static double tbc__timeout(const tbc__cluster *c) { return c->desc.timeout > 0 ? c->desc.timeout : 2.0; }

// Connects to every peer, authenticates and checks the model.
static tbc_result tbc__cluster_hello(tbc__cluster *c, const tbc_model *m, const tbc_logger *log, int threads,
                                     tbc_error *err) {
    tbc__hello mine;
    tbc__hello_fill(&mine, 0, c->desc.name, m, threads);
    tbc_result rc = TBC_OK;
    double timeout = tbc__timeout(c);
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        memset(&p->link, 0, sizeof p->link);
        p->link.fd = -1;
        snprintf(p->link.peer, sizeof p->link.peer, "%s", p->addr);
        if ((rc = tbc__sock_connect(p->addr, timeout, &p->link.fd, err))) break;
        tbc__set_nonblock(p->link.fd);
        if ((rc = tbc__handshake(&p->link, 1, c->key, c->key_len, &mine, &p->hello, timeout, err))) break;
        if (p->hello.has_model && memcmp(p->hello.model_id, mine.model_id, 32) != 0) {
            char a[65], b[65];
            tbc__hex(p->hello.model_id, 32, a);
            tbc__hex(mine.model_id, 32, b);
            tbc__send_error(&p->link, "model mismatch: this cluster runs another model");
            tbc__error_set(err, TBC_ERR_MODEL_MISMATCH, "peer %s (%s) has another model (%.16s...), this cluster runs "
                           "%.16s...", p->addr, p->hello.name, a, b);
            rc = TBC_ERR_MODEL_MISMATCH;
            break;
        }
        tbc__log(log, TBC_LOG_INFO, "peer %s: '%s', %u cores, %s, %.1f GiB free, %s", p->addr, p->hello.name,
                 p->hello.cores, p->hello.simd, (double)p->hello.mem_usable / 1073741824.0,
                 p->hello.has_model ? "has the model file" : "needs its shard sent");
    }
    if (rc) {
        tbc__cluster_close(c, 0);
        c->broken = 1;
    }
    return rc;
}

// Sends each peer its plan, ships the shard bytes it lacks, and waits until every worker is ready.
static tbc_result tbc__cluster_ready(tbc_session *s, tbc_error *err) {
    tbc__cluster *c = s->cluster;
    const tbc_model *m = s->model;
    tbc_result rc = TBC_OK;
    double timeout = tbc__timeout(c);
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        tbc__wbuf w;
        memset(&w, 0, sizeof w);
        tbc__plan_encode(&p->plan, &w);
        rc = w.failed ? TBC_ERR_OUT_OF_MEMORY : tbc__link_send(&p->link, TBC__MSG_PLAN, w.p, w.n, tbc__now() + timeout, err);
        TBC_FREE(w.p);
    }
    // Serve shard requests until every worker is ready (loading can take long: no short deadline here).
    size_t cap = 1 << 20;
    uint8_t *buf = (uint8_t *)TBC_MALLOC(cap);
    if (!buf && !rc) rc = TBC_ERR_OUT_OF_MEMORY;
    uint64_t sent = 0;
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        for (;;) {
            uint16_t type;
            uint32_t n;
            rc = tbc__link_recv(&p->link, TBC__BIT(TBC__MSG_NEED) | TBC__BIT(TBC__MSG_READY) | TBC__BIT(TBC__MSG_ERROR),
                                &type, buf, cap, &n, tbc__now() + 600, err);
            if (rc) break;
            if (type == TBC__MSG_ERROR) { rc = tbc__peer_error(&p->link, buf, n, err); break; }
            if (type == TBC__MSG_READY) { p->up = 1; break; }
            if ((rc = tbc__serve_need(p, m, buf, n, timeout, &sent, &s->log, err))) break;
        }
    }
    TBC_FREE(buf);
    c->shard_bytes_sent = sent;
    if (rc) {
        tbc__cluster_close(c, 0);
        c->broken = 1;
        return rc;
    }
    c->broken = 0;
    tbc__log(&s->log, TBC_LOG_INFO, "cluster ready: %d nodes, %s split", c->n_peers + 1,
             c->split == TBC_SPLIT_TENSOR ? "tensor" : "pipeline");
    return TBC_OK;
}

// Rank 0's side of an all-reduce: every worker's partial, summed in rank order, goes back to everyone.
static void tbc__coord_allreduce(void *comm, float *x, int64_t n) {
    tbc_session *s = (tbc_session *)comm;
    tbc__cluster *c = s->cluster;
    if (c->broken) return;
    double t0 = tbc__now();
    int sync = (int)c->desc.sync;
    size_t bytes = tbc__sync_bytes(sync, n);
    memcpy(c->sum, x, (size_t)n * 4);
    for (int i = 0; i < c->n_peers; i++) {
        uint16_t type;
        uint32_t got;
        tbc_result rc = tbc__link_recv(&c->peers[i].link, TBC__BIT(TBC__MSG_PARTIAL), &type, c->wire, c->wire_cap,
                                       &got, tbc__now() + tbc__timeout(c), &c->err);
        if (!rc && got != bytes) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(&c->err, rc, "peer %s sent a partial sum of %u bytes, expected %zu", c->peers[i].addr, got, bytes);
        }
        if (rc) { c->broken = 1; return; }
        tbc__sync_unpack(sync, c->wire, n, c->part);
        for (int64_t k = 0; k < n; k++) c->sum[k] += c->part[k];
    }
    tbc__sync_pack(sync, c->sum, n, c->wire);
    for (int i = 0; i < c->n_peers; i++) {
        if (tbc__link_send(&c->peers[i].link, TBC__MSG_SUM, c->wire, bytes, tbc__now() + tbc__timeout(c), &c->err)) {
            c->broken = 1;
            return;
        }
    }
    tbc__sync_unpack(sync, c->wire, n, x);  // what the workers got, exactly
    c->allreduces++;
    c->comm_seconds += tbc__now() - t0;
}

// Before rank 0 runs a batch: the workers get the tokens (tensor split), or after rank 0's layers the hidden state
// travels through each worker's layers in order and comes back (pipeline split).
static tbc_result tbc__cluster_eval_begin(tbc_session *s, const int32_t *tokens, int64_t pos, int64_t n) {
    tbc__cluster *c = s->cluster;
    if (c->split != TBC_SPLIT_TENSOR) return TBC_OK;
    uint8_t head[16];
    tbc__put_u64(head, (uint64_t)pos);
    tbc__put_u32(head + 8, (uint32_t)n);
    tbc__put_u32(head + 12, 0);
    for (int i = 0; i < c->n_peers; i++) {
        tbc_result rc = tbc__link_send2(&c->peers[i].link, TBC__MSG_EVAL, head, 16, tokens, (size_t)n * 4,
                                        tbc__now() + tbc__timeout(c), &c->err);
        if (rc) { c->broken = 1; return rc; }
    }
    return TBC_OK;
}

static tbc_result tbc__cluster_pipeline(tbc_session *s, int64_t pos, int64_t n) {
    tbc__cluster *c = s->cluster;
    if (c->split != TBC_SPLIT_PIPELINE) return TBC_OK;
    size_t d = (size_t)s->model->info.n_embd;
    uint8_t head[16];
    double t0 = tbc__now();
    tbc__put_u64(head, (uint64_t)pos);
    tbc__put_u32(head + 8, (uint32_t)n);
    tbc__put_u32(head + 12, 0);
    for (int i = 0; i < c->n_peers; i++) {
        tbc__link *l = &c->peers[i].link;
        tbc_result rc = tbc__link_send2(l, TBC__MSG_HIDDEN, head, 16, s->x, (size_t)n * d * 4, tbc__now() + tbc__timeout(c),
                                        &c->err);
        uint16_t type;
        uint32_t got = 0;
        if (!rc) rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_HIDDEN), &type, c->wire, c->wire_cap, &got,
                                     tbc__now() + tbc__timeout(c) + 0.05 * (double)n, &c->err);
        if (!rc && got != 16 + (uint32_t)(n * (int64_t)d * 4)) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(&c->err, rc, "peer %s returned a hidden state of %u bytes", c->peers[i].addr, got);
        }
        if (rc) { c->broken = 1; return rc; }
        memcpy(s->x, c->wire + 16, (size_t)n * d * 4);
    }
    c->comm_seconds += tbc__now() - t0;
    return TBC_OK;
}

// ---- the worker's side ----
typedef struct tbc__worker {
    tbc__link link;
    tbc_session *s;
    int sync, failed;
    uint8_t *wire;
    size_t wire_cap;
    double timeout;
    tbc_error err;
} tbc__worker;

static void tbc__worker_allreduce(void *comm, float *x, int64_t n) {
    tbc__worker *w = (tbc__worker *)comm;
    if (w->failed) return;
    size_t bytes = tbc__sync_bytes(w->sync, n);
    tbc__sync_pack(w->sync, x, n, w->wire);
    uint16_t type;
    uint32_t got;
    tbc_result rc = tbc__link_send(&w->link, TBC__MSG_PARTIAL, w->wire, bytes, tbc__now() + w->timeout, &w->err);
    if (!rc) rc = tbc__link_recv(&w->link, TBC__BIT(TBC__MSG_SUM), &type, w->wire, w->wire_cap, &got,
                                 tbc__now() + w->timeout, &w->err);
    if (!rc && got != bytes) {
        rc = TBC_ERR_PROTOCOL;
        tbc__error_set(&w->err, rc, "coordinator sent a sum of %u bytes, expected %zu", got, bytes);
    }
    if (rc) { w->failed = 1; return; }
    tbc__sync_unpack(w->sync, w->wire, n, x);
}

static int tbc__mkdirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

// Receives DATA messages for the given ranges and writes them into the cache file, verified.
static tbc_result tbc__fetch_ranges(tbc__worker *w, int fd, tbc__manifest *mf, const tbc__range *need, int n_need,
                                    uint64_t *received, const tbc_logger *log, tbc_error *err) {
    tbc__wbuf b;
    memset(&b, 0, sizeof b);
    tbc__wb_u32(&b, (uint32_t)n_need);
    uint64_t total = 0;
    for (int i = 0; i < n_need; i++) {
        tbc__wb_u64(&b, need[i].off); tbc__wb_u64(&b, need[i].len); tbc__wb_u64(&b, need[i].stride);
        tbc__wb_u64(&b, need[i].count);
        total += need[i].len * need[i].count;
    }
    tbc_result rc = b.failed ? TBC_ERR_OUT_OF_MEMORY : tbc__link_send(&w->link, TBC__MSG_NEED, b.p, b.n, tbc__now() + w->timeout, err);
    TBC_FREE(b.p);
    if (rc) return rc;
    tbc__log(log, TBC_LOG_INFO, "receiving %.1f MiB of shard data in %d ranges", (double)total / 1048576.0, n_need);
    size_t cap = (size_t)TBC__DATA_CHUNK + 64;
    uint8_t *buf = (uint8_t *)TBC_MALLOC(cap);
    if (!buf) return TBC_ERR_OUT_OF_MEMORY;
    uint64_t got_total = 0;
    double last_log = tbc__now();
    for (int i = 0; i < n_need && !rc; i++) {
        uint64_t done_runs = 0;
        while (done_runs < need[i].count && !rc) {
            uint16_t type;
            uint32_t n;
            if ((rc = tbc__link_recv(&w->link, TBC__BIT(TBC__MSG_DATA), &type, buf, cap, &n, tbc__now() + w->timeout + 30, err)))
                break;
            if (n < 64) { rc = TBC_ERR_PROTOCOL; tbc__error_set(err, rc, "short data message"); break; }
            uint64_t off = tbc__get_u64(buf), len = tbc__get_u64(buf + 8), stride = tbc__get_u64(buf + 16),
                     cnt = tbc__get_u64(buf + 24);
            uint8_t sha[32];
            const tbc__range *g = &need[i];
            if (len != g->len || stride != g->stride || cnt == 0 || cnt > g->count - done_runs ||
                off != g->off + done_runs * g->stride || (uint64_t)n - 64 != len * cnt) {
                rc = TBC_ERR_PROTOCOL;
                tbc__error_set(err, rc, "coordinator sent data that does not match the request");
                break;
            }
            tbc__sha256(buf + 64, (size_t)(n - 64), sha);
            if (!tbc__ct_equal(sha, buf + 32, 32)) {
                rc = TBC_ERR_PROTOCOL;
                tbc__error_set(err, rc, "shard data at offset %llu failed its SHA-256 check", (unsigned long long)off);
                break;
            }
            for (uint64_t k = 0; k < cnt && !rc; k++) {
                const uint8_t *src = buf + 64 + k * len;
                uint64_t at = off + k * stride, left = len;
                while (left) {
                    ssize_t wr = pwrite(fd, src + (len - left), (size_t)left, (off_t)(at + (len - left)));
                    if (wr < 0 && errno == EINTR) continue;
                    if (wr <= 0) {
                        rc = TBC_ERR_IO;
                        tbc__error_set(err, rc, "writing the shard cache failed: %s", strerror(errno));
                        break;
                    }
                    left -= (uint64_t)wr;
                }
            }
            done_runs += cnt;
            got_total += len * cnt;
            if (tbc__now() - last_log > 1.0) {
                tbc__log(log, TBC_LOG_INFO, "shard: %.1f of %.1f MiB", (double)got_total / 1048576.0,
                         (double)total / 1048576.0);
                last_log = tbc__now();
            }
        }
        if (!rc) {
            fsync(fd);
            tbc__manifest_add(mf, &need[i]);
        }
    }
    TBC_FREE(buf);
    *received += got_total;
    return rc;
}

// Opens the model this plan names: the node's own file, or the shard cache (fetching what is missing).
static tbc_result tbc__worker_session(tbc__worker *w, const tbc_node_desc *d, tbc_model *own, const tbc__plan_msg *pl,
                                      tbc_model **cache_model, uint64_t *received, tbc_error *err) {
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = (int)pl->n_ctx;
    sd.n_batch = (int)pl->n_batch;
    sd.kv_type = (tbc_kv_type)pl->kv_type;
    sd.n_threads = d->n_threads;
    sd.logger = d->logger;
    sd.error = err;
    sd.shard.layer_begin = pl->layer_begin;
    sd.shard.layer_end = pl->layer_end;
    sd.shard.tp_rank = pl->tp_rank;
    sd.shard.tp_size = pl->tp_size;
    sd.shard.output = -1;  // rank 0 computes the logits
    tbc_result rc;
    if (own) {
        uint8_t id[32];
        tbc__model_id(own, id);
        if (memcmp(id, pl->model_id, 32) != 0) {
            tbc__send_error(&w->link, "model mismatch: this node has another model file");
            tbc__error_set(err, TBC_ERR_MODEL_MISMATCH, "the coordinator runs another model than %s", d->model_path);
            return TBC_ERR_MODEL_MISMATCH;
        }
        sd.model = own;
        return tbc_session_create(&sd, &w->s);
    }
    // No model file: the shard cache, a sparse copy of the model file holding only what this node needs.
    char hex[65], path[1024], mpath[1040];
    tbc__hex(pl->model_id, 32, hex);
    const char *dir = d->cache_dir && d->cache_dir[0] ? d->cache_dir : "tbc-cache";
    if (tbc__mkdirs(dir) != 0) {
        tbc__error_set(err, TBC_ERR_IO, "cannot create the cache directory '%s': %s", dir, strerror(errno));
        return TBC_ERR_IO;
    }
    snprintf(path, sizeof path, "%s/%s.gguf", dir, hex);
    snprintf(mpath, sizeof mpath, "%s/%s.have", dir, hex);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_IO, "cannot open the shard cache '%s': %s", path, strerror(errno));
        return TBC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != pl->file_size) {
        if (ftruncate(fd, (off_t)pl->file_size) != 0) {
            close(fd);
            tbc__error_set(err, TBC_ERR_IO, "cannot size the shard cache '%s': %s", path, strerror(errno));
            return TBC_ERR_IO;
        }
        unlink(mpath);  // a new or resized file holds nothing yet
    }
    tbc__manifest mf;
    tbc__manifest_load(&mf, mpath);
    tbc__range header;
    header.off = 0; header.len = pl->header_bytes; header.stride = 0; header.count = 1;
    rc = TBC_OK;
    if (!tbc__manifest_has(&mf, &header)) rc = tbc__fetch_ranges(w, fd, &mf, &header, 1, received, &d->logger, err);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = path;
        md.error = err;
        md.logger = d->logger;
        if ((rc = tbc_model_open(&md, cache_model))) break;
        uint8_t id[32];
        tbc__model_id(*cache_model, id);
        if (memcmp(id, pl->model_id, 32) != 0) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(err, rc, "the header received does not match the model's identity");
            break;
        }
        sd.model = *cache_model;
        if ((rc = tbc_session_create(&sd, &w->s))) break;
        tbc__range *need = (tbc__range *)TBC_MALLOC(sizeof(tbc__range) * (size_t)(w->s->n_ranges + 1));
        int n_need = 0;
        if (!need) { rc = TBC_ERR_OUT_OF_MEMORY; break; }
        for (int i = 0; i < w->s->n_ranges; i++)
            if (!tbc__manifest_has(&mf, &w->s->ranges[i])) need[n_need++] = w->s->ranges[i];
        if (n_need == 0) { TBC_FREE(need); break; }  // everything is here
        if (pass == 1) {
            TBC_FREE(need);
            rc = TBC_ERR_IO;
            tbc__error_set(err, rc, "the shard cache is still incomplete after a transfer");
            break;
        }
        rc = tbc__fetch_ranges(w, fd, &mf, need, n_need, received, &d->logger, err);
        TBC_FREE(need);
        // the session copied column slices before the data was there: bind again
        tbc_session_destroy(w->s);
        w->s = NULL;
        tbc_model_destroy(*cache_model);
        *cache_model = NULL;
    }
    TBC_FREE(mf.r);
    close(fd);
    return rc;
}

// Serves one coordinator until it says goodbye or the connection fails.
static tbc_result tbc__serve_coordinator(int fd, const char *peer, const tbc_node_desc *d, tbc_model *own,
                                         const uint8_t *key, size_t key_len, tbc_error *err) {
    tbc__worker w;
    memset(&w, 0, sizeof w);
    w.link.fd = fd;
    w.timeout = d->timeout > 0 ? d->timeout : 2.0;
    snprintf(w.link.peer, sizeof w.link.peer, "%s", peer);
    tbc__hello mine, theirs;
    tbc__hello_fill(&mine, 1, d->name, own, d->n_threads);
    tbc_model *cache_model = NULL;
    uint8_t buf[TBC__HELLO_MAX];
    uint16_t type;
    uint32_t n;
    uint64_t received = 0;
    tbc__plan_msg pl;
    tbc_result rc = tbc__handshake(&w.link, 0, key, key_len, &mine, &theirs, w.timeout * 5, err);
    if (!rc) rc = tbc__link_recv(&w.link, TBC__BIT(TBC__MSG_PLAN) | TBC__BIT(TBC__MSG_ERROR) | TBC__BIT(TBC__MSG_BYE), &type,
                                 buf, sizeof buf, &n, tbc__now() + 60, err);
    if (!rc && type == TBC__MSG_ERROR) rc = tbc__peer_error(&w.link, buf, n, err);
    if (!rc && type == TBC__MSG_BYE) return TBC_OK;
    if (!rc && !tbc__plan_decode(buf, n, &pl, err)) rc = TBC_ERR_PROTOCOL;
    if (!rc) {
        tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s ('%s'): rank %u of %u, layers %d-%d, slice %d/%d", peer,
                 theirs.name, pl.rank, pl.world, pl.layer_begin, pl.layer_end - 1, pl.tp_rank, pl.tp_size);
        rc = tbc__worker_session(&w, d, own, &pl, &cache_model, &received, err);
        if (rc && rc != TBC_ERR_MODEL_MISMATCH) {
            char text[300];
            snprintf(text, sizeof text, "worker could not load its shard: %.250s", err->message);
            tbc__send_error(&w.link, text);
        }
    }
    if (!rc) {
        w.sync = (int)pl.sync;
        w.wire_cap = tbc__max_msg(w.s->model, (int)pl.n_batch, 0);
        w.wire = (uint8_t *)TBC_MALLOC(w.wire_cap);
        if (!w.wire) rc = TBC_ERR_OUT_OF_MEMORY;
    }
    if (!rc) {
        w.s->comm = &w;
        w.s->no_logits = 1;
        if (pl.split == TBC_SPLIT_TENSOR) w.s->allreduce = tbc__worker_allreduce;
        uint8_t ready[16];
        tbc__put_u64(ready, w.s->shard.weight_bytes);
        tbc__put_u64(ready + 8, received);
        rc = tbc__link_send(&w.link, TBC__MSG_READY, ready, sizeof ready, tbc__now() + w.timeout, err);
        tbc__log(&d->logger, TBC_LOG_INFO, "ready: %.1f MiB of weights (%.1f MiB received)",
                 (double)w.s->shard.weight_bytes / 1048576.0, (double)received / 1048576.0);
    }
    size_t d_embd = w.s ? (size_t)w.s->model->info.n_embd : 0;
    while (!rc) {
        // Between requests the coordinator sends heartbeats; silence this long means it is gone.
        rc = tbc__link_recv(&w.link, TBC__BIT(TBC__MSG_EVAL) | TBC__BIT(TBC__MSG_HIDDEN) | TBC__BIT(TBC__MSG_HEARTBEAT) |
                            TBC__BIT(TBC__MSG_BYE), &type, w.wire, w.wire_cap, &n, tbc__now() + w.timeout * 10, err);
        if (rc) break;
        if (type == TBC__MSG_BYE) break;
        if (type == TBC__MSG_HEARTBEAT) {
            rc = tbc__link_send(&w.link, TBC__MSG_HEARTBEAT, NULL, 0, tbc__now() + w.timeout, err);
            continue;
        }
        if (n < 16) { rc = TBC_ERR_PROTOCOL; tbc__error_set(err, rc, "short message"); break; }
        uint64_t pos = tbc__get_u64(w.wire);
        uint32_t cnt = tbc__get_u32(w.wire + 8);
        size_t want = type == TBC__MSG_EVAL ? (size_t)cnt * 4 : (size_t)cnt * d_embd * 4;
        if (cnt == 0 || cnt > (uint32_t)w.s->n_batch || pos > (uint64_t)w.s->pos || pos + cnt > (uint64_t)w.s->n_ctx ||
            n != 16 + want) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(err, rc, "coordinator sent a batch that does not fit (pos %llu, %u tokens)",
                           (unsigned long long)pos, cnt);
            break;
        }
        w.s->pos = (int64_t)pos;
        if (type == TBC__MSG_EVAL) {
            const uint8_t *ids = w.wire + 16;
            for (uint32_t t = 0; t < cnt; t++) {
                int32_t id = (int32_t)tbc__get_u32(ids + 4 * t);
                if (id < 0 || id >= w.s->model->info.n_vocab) { rc = TBC_ERR_PROTOCOL; break; }
                tbc__dequantize(w.s->embd.type, w.s->embd.data + (size_t)id * w.s->embd.ldw, w.s->x + t * d_embd,
                                (int64_t)d_embd);
            }
            if (rc) { tbc__error_set(err, rc, "coordinator sent a token outside the vocabulary"); break; }
            tbc__forward_layers(w.s, (int64_t)pos, cnt);
            if (w.failed) { rc = w.err.code ? w.err.code : TBC_ERR_PEER_LOST; *err = w.err; break; }
        } else {
            memcpy(w.s->x, w.wire + 16, (size_t)cnt * d_embd * 4);
            tbc__forward_layers(w.s, (int64_t)pos, cnt);
            uint8_t head[16];
            memcpy(head, w.wire, 16);
            rc = tbc__link_send2(&w.link, TBC__MSG_HIDDEN, head, 16, w.s->x, (size_t)cnt * d_embd * 4,
                                 tbc__now() + w.timeout, err);
        }
        w.s->pos = (int64_t)(pos + cnt);
    }
    if (rc == TBC_ERR_PEER_LOST || rc == TBC_ERR_TIMEOUT)
        tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s gone: %s", peer, err->message);
    else if (rc)
        tbc__log(&d->logger, TBC_LOG_WARN, "dropped coordinator %s: %s", peer, err->message);
    tbc_session_destroy(w.s);
    tbc_model_destroy(cache_model);
    TBC_FREE(w.wire);
    tbc__link_close(&w.link);
    return rc;
}

TBC__DEF tbc_result tbc_node_serve(const tbc_node_desc *d) {
    tbc_error local;
    tbc_error *err = d && d->error ? d->error : &local;
    memset(err, 0, sizeof *err);
    if (!d || !d->listen) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_node_serve needs a listen address");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    char host[256], port[16];
    if (tbc__split_hostport(d->listen, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "listen address '%s' is not HOST:PORT", d->listen);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (!d->key_len && !d->insecure && !tbc__is_loopback_host(host)) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "refusing to listen on %s without a cluster key: anyone could "
                       "join; give a key, or say insecure", d->listen);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc_model *own = NULL;
    if (d->model_path) {
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = d->model_path;
        md.error = err;
        md.logger = d->logger;
        tbc_result rc = tbc_model_open(&md, &own);
        if (rc) return rc;
    }
    int lfd, lport;
    tbc_result rc = tbc__sock_listen(d->listen, &lfd, &lport, err);
    if (rc) { tbc_model_destroy(own); return rc; }
    tbc__log(&d->logger, TBC_LOG_INFO, "listening on %s (port %d)%s", d->listen, lport,
             d->key_len ? ", cluster key required" : ", no key");
    while (!(d->stop && *d->stop)) {
        struct pollfd pf;
        pf.fd = lfd;
        pf.events = POLLIN;
        if (poll(&pf, 1, 200) <= 0) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(lfd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) continue;
        char peer[96] = "?";
        char hb[64] = "?";
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, hb, sizeof hb);
            snprintf(peer, sizeof peer, "%s:%d", hb, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, hb, sizeof hb);
            snprintf(peer, sizeof peer, "[%s]:%d", hb, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        }
        tbc__sock_tune(fd);
        tbc__set_nonblock(fd);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        tbc_error serr;
        memset(&serr, 0, sizeof serr);
        tbc__serve_coordinator(fd, peer, d, own, (const uint8_t *)d->key, d->key_len, &serr);
    }
    close(lfd);
    tbc_model_destroy(own);
    return TBC_OK;
}

// Creates the cluster: connects, agrees on the plan (which also fixes this node's own shard in *own), gets every
// worker ready. Called by tbc_session_create before this node binds its shard.
static tbc_result tbc__cluster_plan(tbc__cluster *c, const tbc_model *m, const tbc_session_desc *d, int n_ctx,
                                    int n_batch, tbc_shard_desc *own, tbc_error *err) {
    const tbc_model_info *I = &m->info;
    int world = c->n_peers + 1;
    int split = (int)c->desc.split;
    if (split == TBC_SPLIT_AUTO) split = world <= I->n_head_kv ? TBC_SPLIT_TENSOR : TBC_SPLIT_PIPELINE;
    if (split == TBC_SPLIT_TENSOR && world > I->n_head) {
        tbc__error_set(err, TBC_ERR_SHARD, "a tensor split over %d nodes needs at least %d heads; the model has %d",
                       world, world, I->n_head);
        return TBC_ERR_SHARD;
    }
    if (split == TBC_SPLIT_PIPELINE && world > I->n_layer) {
        tbc__error_set(err, TBC_ERR_SHARD, "a pipeline over %d nodes needs at least %d layers; the model has %d", world,
                       world, I->n_layer);
        return TBC_ERR_SHARD;
    }
    c->split = split;
    uint8_t id[32];
    tbc__model_id(m, id);
    memset(own, 0, sizeof *own);
    int begin[65];
    if (split == TBC_SPLIT_PIPELINE) {
        double w[64];
        w[0] = (double)tbc__usable_memory();
        for (int i = 0; i < c->n_peers; i++) w[i + 1] = (double)c->peers[i].hello.mem_usable;
        for (int i = 0; i < world; i++) if (w[i] <= 0) w[i] = 1;
        tbc__split_layers(I->n_layer, w, world, begin);
        own->layer_begin = 0;
        own->layer_end = begin[1];
        own->output = 1;
    } else {
        own->tp_rank = 0;
        own->tp_size = world;
    }
    for (int i = 0; i < c->n_peers; i++) {
        tbc__plan_msg *p = &c->peers[i].plan;
        memset(p, 0, sizeof *p);
        memcpy(p->model_id, id, 32);
        p->file_size = m->map.size;
        p->header_bytes = m->g.data_offset;
        p->rank = (uint32_t)(i + 1);
        p->world = (uint32_t)world;
        p->split = (uint32_t)split;
        p->sync = (uint32_t)c->desc.sync;
        p->n_ctx = (uint32_t)n_ctx;
        p->n_batch = (uint32_t)n_batch;
        p->kv_type = (uint32_t)d->kv_type;
        if (split == TBC_SPLIT_PIPELINE) {
            p->layer_begin = begin[i + 1];
            p->layer_end = begin[i + 2];
            p->tp_rank = 0;
            p->tp_size = 1;
        } else {
            p->layer_begin = 0;
            p->layer_end = I->n_layer;
            p->tp_rank = i + 1;
            p->tp_size = world;
        }
    }
    return TBC_OK;
}

static tbc_result tbc__cluster_new(const tbc_cluster_desc *cd, tbc__cluster **out, tbc_error *err) {
    tbc__cluster *c = (tbc__cluster *)TBC_MALLOC(sizeof(tbc__cluster));
    if (!c) return TBC_ERR_OUT_OF_MEMORY;
    memset(c, 0, sizeof *c);
    c->desc = *cd;
    if (!cd->peers || !cd->peers[0]) {
        TBC_FREE(c);
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "the cluster has no peers");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    c->peers_copy = tbc__strdup_n(cd->peers, strlen(cd->peers));
    int n = 1;
    for (const char *p = cd->peers; *p; p++) n += *p == ',';
    c->peers = (tbc__peer *)TBC_MALLOC(sizeof(tbc__peer) * (size_t)n);
    if (cd->key_len) c->key = (uint8_t *)TBC_MALLOC(cd->key_len);
    if (!c->peers_copy || !c->peers || (cd->key_len && !c->key)) {
        tbc__cluster_free(c);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    if (cd->key_len) memcpy(c->key, cd->key, cd->key_len);
    c->key_len = cd->key_len;
    memset(c->peers, 0, sizeof(tbc__peer) * (size_t)n);
    char *save = NULL;
    for (char *tok = strtok_r(c->peers_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (c->n_peers == 63) {
            tbc__cluster_free(c);
            tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "at most 63 peers");
            return TBC_ERR_INVALID_ARGUMENT;
        }
        tbc__peer *p = &c->peers[c->n_peers++];
        snprintf(p->addr, sizeof p->addr, "%s", tok);
        p->link.fd = -1;
        char h[256], pt[16];
        if (tbc__split_hostport(p->addr, h, sizeof h, pt, sizeof pt) != 0) {
            tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "peer '%s' is not HOST:PORT", p->addr);
            tbc__cluster_free(c);
            return TBC_ERR_INVALID_ARGUMENT;
        }
    }
    *out = c;
    return TBC_OK;
}

// Buffers and hooks once this node's shard is bound, then the workers' shards.
static tbc_result tbc__cluster_attach(tbc_session *s, tbc_error *err) {
    tbc__cluster *c = s->cluster;
    size_t n = (size_t)s->n_batch * (size_t)s->model->info.n_embd;
    c->sum = (float *)TBC_MALLOC(n * 4);
    c->part = (float *)TBC_MALLOC(n * 4);
    c->wire_cap = tbc__max_msg(s->model, s->n_batch, 0);
    c->wire = (uint8_t *)TBC_MALLOC(c->wire_cap);
    if (!c->sum || !c->part || !c->wire) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for cluster buffers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    if (c->split == TBC_SPLIT_TENSOR) {
        s->allreduce = tbc__coord_allreduce;
        s->comm = s;
    }
    return tbc__cluster_ready(s, err);
}

// A link failed during a batch: the request fails with the peer's name; the next request rebuilds the cluster.
static tbc_result tbc__cluster_failed(tbc_session *s) {
    tbc__cluster *c = s->cluster;
    c->broken = 1;
    tbc__cluster_close(c, 0);
    s->last = c->err;
    if (!s->last.code) tbc__error_set(&s->last, TBC_ERR_PEER_LOST, "a peer failed");
    tbc__log(&s->log, TBC_LOG_ERROR, "%s", s->last.message);
    return s->last.code;
}

// Before and after each batch: a failure is reported; a new request (position 0) first repairs the cluster,
// checking idle links with a heartbeat.
static tbc_result tbc__cluster_check(tbc_session *s) {
    tbc__cluster *c = s->cluster;
    if (c->broken && c->peers[0].link.fd >= 0) return tbc__cluster_failed(s);
    if (s->pos != 0) {
        if (!c->broken) return TBC_OK;
        tbc__error_set(&s->last, TBC_ERR_PEER_LOST, "the cluster lost a peer during this request; start a new one");
        return TBC_ERR_PEER_LOST;
    }
    if (!c->broken) {
        for (int i = 0; i < c->n_peers && !c->broken; i++) {
            tbc__link *l = &c->peers[i].link;
            if (tbc__now() - l->last_recv < 1.0) continue;
            uint16_t type;
            uint32_t n;
            if (tbc__link_send(l, TBC__MSG_HEARTBEAT, NULL, 0, tbc__now() + tbc__timeout(c), &c->err) ||
                tbc__link_recv(l, TBC__BIT(TBC__MSG_HEARTBEAT), &type, c->wire, c->wire_cap, &n,
                               tbc__now() + tbc__timeout(c), &c->err))
                c->broken = 1;
        }
        if (!c->broken) return TBC_OK;
        tbc__log(&s->log, TBC_LOG_WARN, "%s; reconnecting", c->err.message);
    }
    tbc__cluster_close(c, 0);
    tbc_result rc = tbc__cluster_hello(c, s->model, &s->log, s->pool.n_threads, &s->last);
    if (!rc) rc = tbc__cluster_ready(s, &s->last);
    return rc;
}
