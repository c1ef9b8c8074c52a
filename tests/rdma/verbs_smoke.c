// test_rdma_smoke: real verbs on one soft-RoCE device (rdma_rxe), run inside the QEMU guest that tests/rdma/vm.sh
// boots. Two RC queue pairs and two UC queue pairs on the same device, connected to each other through the RoCE v2
// GID ::ffff:10.99.0.1 (QPs on one rxe device loop back inside it), exchange:
//   - SEND/RECV of 1 B .. 4 MiB in both directions, content checked and the bytes after each message untouched;
//   - inline SENDs up to the QP's max_inline_data, and a SEND gathered from 3 SGEs into a RECV scattered over 2;
//   - RDMA WRITE and WRITE_WITH_IMM (RC and UC) and RDMA READ (RC) of up to 4 MiB;
//   - 4 MiB streamed in 128 KiB strides through a ring of 16 pre-posted receives (the shape a transport uses);
//   - a UC SEND with no RECV posted vanishes and the next one arrives;
//   - a SEND longer than the posted RECV on RC: both sides get an error completion, nothing hangs.
// Prints the device and port limits that matter to a transport, then "test_rdma_smoke: N passed, M failed".
// Links libibverbs directly (only this test: the library dlopens it). Device, address and GID index come from
// TBC_RDMA_DEV, TBC_RDMA_IP and TBC_RDMA_GID_INDEX when set (vm.sh's /init sets them).
#define _POSIX_C_SOURCE 200809L
#include <infiniband/verbs.h>

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_MSG (4u << 20)          // largest message
#define GUARD 64                    // bytes after each received message that must stay untouched
#define AREA (MAX_MSG + 4096)       // each endpoint has a send area and a receive area of this size
#define RING_DEPTH 16
#define RING_STRIDE (128u << 10)
#define WAIT_MS 20000               // per completion; TCG is slow, but a lost message must not hang the test
#define POISON 0xA5

static int passed, failed;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void check(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (ok) {
        passed++;
        printf("  ok    ");
    } else {
        failed++;
        printf("FAIL: ");
    }
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

// check() with the reason appended when it failed.
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void check_why(int ok, const char *why, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (ok)
        check(1, "%s", what);
    else
        check(0, "%s: %s", what, why);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

// Test data that differs per message (seed) and per byte, with no short period; 8 bytes a step (TCG is slow).
static void fill(uint8_t *p, size_t n, uint32_t seed) {
    uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed * 0xbf58476d1ce4e5b9ull);
    for (size_t i = 0; i < n; i += 8) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t v = s * 0x2545f4914f6cdd1dull;
        memcpy(p + i, &v, n - i < 8 ? n - i : 8);
    }
}

static int guard_intact(const uint8_t *p) {
    for (int i = 0; i < GUARD; i++)
        if (p[i] != POISON) return 0;
    return 1;
}

typedef struct {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_device_attr dev;
    struct ibv_port_attr port;
    uint8_t port_num;
    int gid_index;
    union ibv_gid gid;
    uint32_t max_inline; // what a QP created with the largest accepted max_inline_data reports
} rdma;

typedef struct {
    struct ibv_cq *send_cq, *recv_cq;
    struct ibv_qp *qp;
    uint8_t *buf; // [0, AREA) send area, [AREA, 2 AREA) receive area
    struct ibv_mr *mr;
} endpoint;

typedef struct {
    const char *name;
    enum ibv_qp_type type;
    endpoint end[2];
} qp_pair;

static uint8_t *tx(endpoint *e) { return e->buf; }
static uint8_t *rx(endpoint *e) { return e->buf + AREA; }

static void endpoint_destroy(endpoint *e) {
    if (e->qp) ibv_destroy_qp(e->qp);
    if (e->send_cq) ibv_destroy_cq(e->send_cq);
    if (e->recv_cq) ibv_destroy_cq(e->recv_cq);
    if (e->mr) ibv_dereg_mr(e->mr);
    free(e->buf);
    memset(e, 0, sizeof *e);
}

static struct ibv_qp *create_qp(rdma *r, enum ibv_qp_type type, struct ibv_cq *scq, struct ibv_cq *rcq,
                                uint32_t max_inline, struct ibv_qp_init_attr *got) {
    struct ibv_qp_init_attr attr = {
        .send_cq = scq,
        .recv_cq = rcq,
        .cap = {.max_send_wr = 64, .max_recv_wr = 64, .max_send_sge = 4, .max_recv_sge = 4,
                .max_inline_data = max_inline},
        .qp_type = type,
    };
    struct ibv_qp *qp = ibv_create_qp(r->pd, &attr);
    if (qp && got) *got = attr;
    return qp;
}

// A buffer registered once, two CQs and a QP moved to INIT.
static int endpoint_create(rdma *r, enum ibv_qp_type type, endpoint *e) {
    memset(e, 0, sizeof *e);
    e->buf = aligned_alloc(4096, 2 * (size_t)AREA);
    if (!e->buf) goto fail;
    memset(e->buf, 0, 2 * (size_t)AREA);
    e->mr = ibv_reg_mr(r->pd, e->buf, 2 * (size_t)AREA,
                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
    if (!e->mr) goto fail;
    e->send_cq = ibv_create_cq(r->ctx, 256, NULL, NULL, 0);
    e->recv_cq = ibv_create_cq(r->ctx, 256, NULL, NULL, 0);
    if (!e->send_cq || !e->recv_cq) goto fail;
    e->qp = create_qp(r, type, e->send_cq, e->recv_cq, r->max_inline, NULL);
    if (!e->qp) goto fail;
    struct ibv_qp_attr init = {
        .qp_state = IBV_QPS_INIT,
        .pkey_index = 0,
        .port_num = r->port_num,
        .qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                           (type == IBV_QPT_RC ? IBV_ACCESS_REMOTE_READ : 0),
    };
    if (ibv_modify_qp(e->qp, &init, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS)) goto fail;
    return 0;
fail:
    endpoint_destroy(e);
    return -1;
}

// INIT -> RTR -> RTS towards the other QP of the pair, addressed by our own GID (one device loops back).
static int endpoint_connect(rdma *r, enum ibv_qp_type type, endpoint *e, uint32_t dest_qpn) {
    struct ibv_qp_attr rtr = {
        .qp_state = IBV_QPS_RTR,
        .path_mtu = r->port.active_mtu,
        .dest_qp_num = dest_qpn,
        .rq_psn = 0,
        .max_dest_rd_atomic = 1,
        .min_rnr_timer = 1,
        .ah_attr = {.is_global = 1,
                    .grh = {.dgid = r->gid, .sgid_index = (uint8_t)r->gid_index, .hop_limit = 1},
                    .port_num = r->port_num},
    };
    int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN;
    if (type == IBV_QPT_RC) mask |= IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    if (ibv_modify_qp(e->qp, &rtr, mask)) return -1;
    struct ibv_qp_attr rts = {
        .qp_state = IBV_QPS_RTS, .sq_psn = 0, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7, .max_rd_atomic = 1};
    mask = IBV_QP_STATE | IBV_QP_SQ_PSN;
    if (type == IBV_QPT_RC) mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
    return ibv_modify_qp(e->qp, &rts, mask) ? -1 : 0;
}

static void pair_destroy(qp_pair *p) {
    endpoint_destroy(&p->end[0]);
    endpoint_destroy(&p->end[1]);
}

static int pair_create(rdma *r, qp_pair *p, const char *name, enum ibv_qp_type type) {
    memset(p, 0, sizeof *p);
    p->name = name;
    p->type = type;
    if (endpoint_create(r, type, &p->end[0]) || endpoint_create(r, type, &p->end[1]) ||
        endpoint_connect(r, type, &p->end[0], p->end[1].qp->qp_num) ||
        endpoint_connect(r, type, &p->end[1], p->end[0].qp->qp_num)) {
        pair_destroy(p);
        return -1;
    }
    return 0;
}

// Waits for one completion; returns 1 with *wc filled, 0 on timeout (wc->status set to IBV_WC_GENERAL_ERR).
static int wait_wc(struct ibv_cq *cq, struct ibv_wc *wc) {
    double deadline = now_ms() + WAIT_MS;
    for (;;) {
        int n = ibv_poll_cq(cq, 1, wc);
        if (n == 1) return 1;
        if (n < 0 || now_ms() > deadline) {
            memset(wc, 0, sizeof *wc);
            wc->status = IBV_WC_GENERAL_ERR;
            return 0;
        }
    }
}

// One completion, successful and of the given opcode; names what went wrong otherwise.
static int expect_wc(struct ibv_cq *cq, enum ibv_wc_opcode opcode, struct ibv_wc *wc, char *why, size_t why_len) {
    if (!wait_wc(cq, wc)) {
        snprintf(why, why_len, "no completion within %d ms", WAIT_MS);
        return 0;
    }
    if (wc->status != IBV_WC_SUCCESS) {
        snprintf(why, why_len, "completion status %s", ibv_wc_status_str(wc->status));
        return 0;
    }
    if (wc->opcode != opcode) {
        snprintf(why, why_len, "completion opcode %d, want %d", (int)wc->opcode, (int)opcode);
        return 0;
    }
    return 1;
}

static int post_recv(endpoint *e, struct ibv_sge *sge, int nsge, uint64_t wr_id) {
    struct ibv_recv_wr wr = {.wr_id = wr_id, .sg_list = sge, .num_sge = nsge}, *bad;
    return ibv_post_recv(e->qp, &wr, &bad);
}

static int post_send(endpoint *e, enum ibv_wr_opcode op, struct ibv_sge *sge, int nsge, unsigned flags,
                     uint32_t imm, uint64_t remote_addr, uint32_t rkey, uint64_t wr_id) {
    struct ibv_send_wr wr = {
        .wr_id = wr_id, .sg_list = sge, .num_sge = nsge, .opcode = op, .send_flags = flags | IBV_SEND_SIGNALED};
    struct ibv_send_wr *bad;
    if (op == IBV_WR_SEND_WITH_IMM || op == IBV_WR_RDMA_WRITE_WITH_IMM) wr.imm_data = htonl(imm);
    if (op == IBV_WR_RDMA_WRITE || op == IBV_WR_RDMA_WRITE_WITH_IMM || op == IBV_WR_RDMA_READ) {
        wr.wr.rdma.remote_addr = remote_addr;
        wr.wr.rdma.rkey = rkey;
    }
    return ibv_post_send(e->qp, &wr, &bad);
}

static struct ibv_sge sge_of(endpoint *e, uint8_t *p, uint32_t len) {
    return (struct ibv_sge){.addr = (uintptr_t)p, .length = len, .lkey = e->mr->lkey};
}

// The bytes at got match the message, and the GUARD bytes after it are untouched.
static int content_ok(const uint8_t *got, const uint8_t *want, size_t n, char *why, size_t why_len) {
    if (memcmp(got, want, n) != 0) {
        size_t i = 0;
        while (got[i] == want[i]) i++;
        snprintf(why, why_len, "byte %zu is 0x%02x, want 0x%02x", i, got[i], want[i]);
        return 0;
    }
    if (!guard_intact(got + n)) {
        snprintf(why, why_len, "bytes after the message were overwritten");
        return 0;
    }
    return 1;
}

// SEND of n bytes from end[from] to the other end, optionally inline.
static int test_send(qp_pair *p, int from, uint32_t n, unsigned flags, char *why, size_t why_len) {
    endpoint *s = &p->end[from], *d = &p->end[1 - from];
    struct ibv_wc wc;
    fill(tx(s), n, n * 2u + (uint32_t)from);
    memset(rx(d), POISON, (size_t)n + GUARD);
    struct ibv_sge rsge = sge_of(d, rx(d), MAX_MSG), ssge = sge_of(s, tx(s), n);
    if (post_recv(d, &rsge, 1, 1) || post_send(s, IBV_WR_SEND, &ssge, 1, flags, 0, 0, 0, 2)) {
        snprintf(why, why_len, "post failed");
        return 0;
    }
    if (!expect_wc(s->send_cq, IBV_WC_SEND, &wc, why, why_len)) return 0;
    if (!expect_wc(d->recv_cq, IBV_WC_RECV, &wc, why, why_len)) return 0;
    if (wc.byte_len != n) {
        snprintf(why, why_len, "byte_len %u, want %u", wc.byte_len, n);
        return 0;
    }
    return content_ok(rx(d), tx(s), n, why, why_len);
}

// A SEND gathered from 3 pieces of the send area, received into 2 pieces of the receive area.
static int test_sge(qp_pair *p, char *why, size_t why_len) {
    endpoint *s = &p->end[0], *d = &p->end[1];
    struct ibv_wc wc;
    static const uint32_t soff[3] = {0, 100000, 2000000}, slen[3] = {1000, 3000, 50};
    static const uint32_t roff[2] = {0, 300000}, rlen[2] = {2000, 4096};
    uint8_t want[4050];
    fill(tx(s), 2000050, 77);
    memset(rx(d), POISON, 300000 + 4096 + GUARD);
    struct ibv_sge ss[3], rs[2];
    size_t k = 0;
    for (int i = 0; i < 3; i++) {
        ss[i] = sge_of(s, tx(s) + soff[i], slen[i]);
        memcpy(want + k, tx(s) + soff[i], slen[i]);
        k += slen[i];
    }
    for (int i = 0; i < 2; i++) rs[i] = sge_of(d, rx(d) + roff[i], rlen[i]);
    if (post_recv(d, rs, 2, 1) || post_send(s, IBV_WR_SEND, ss, 3, 0, 0, 0, 0, 2)) {
        snprintf(why, why_len, "post failed");
        return 0;
    }
    if (!expect_wc(s->send_cq, IBV_WC_SEND, &wc, why, why_len)) return 0;
    if (!expect_wc(d->recv_cq, IBV_WC_RECV, &wc, why, why_len)) return 0;
    if (wc.byte_len != k) {
        snprintf(why, why_len, "byte_len %u, want %zu", wc.byte_len, k);
        return 0;
    }
    // 4050 bytes: the first 2000 fill piece 1, the other 2050 the start of piece 2.
    return content_ok(rx(d), want, 2000, why, why_len) &&
           content_ok(rx(d) + roff[1], want + 2000, k - 2000, why, why_len);
}

// RDMA WRITE (with_imm: WRITE_WITH_IMM, which also consumes a RECV) of n bytes into the other end's receive area.
// A plain WRITE on UC is not acknowledged: a SEND after it (same QP, delivered in order) shows it has landed.
static int test_write(qp_pair *p, uint32_t n, int with_imm, char *why, size_t why_len) {
    endpoint *s = &p->end[0], *d = &p->end[1];
    struct ibv_wc wc;
    uint32_t imm = 0x5eed0000u + n % 65536u;
    fill(tx(s), n, n * 3u + 1u);
    memset(rx(d), POISON, (size_t)n + GUARD);
    struct ibv_sge ssge = sge_of(s, tx(s), n);
    uint64_t raddr = (uintptr_t)rx(d);
    int fence = !with_imm && p->type == IBV_QPT_UC;
    if (with_imm || fence) {
        struct ibv_sge rsge = sge_of(d, rx(d) + AREA - 64, 64);
        if (post_recv(d, &rsge, 1, 1)) goto post_failed;
    }
    if (post_send(s, with_imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE, &ssge, 1, 0, imm, raddr,
                  d->mr->rkey, 2))
        goto post_failed;
    if (!expect_wc(s->send_cq, IBV_WC_RDMA_WRITE, &wc, why, why_len)) return 0;
    if (fence) {
        if (post_send(s, IBV_WR_SEND, NULL, 0, 0, 0, 0, 0, 3)) goto post_failed;
        if (!expect_wc(s->send_cq, IBV_WC_SEND, &wc, why, why_len)) return 0;
        if (!expect_wc(d->recv_cq, IBV_WC_RECV, &wc, why, why_len)) return 0;
    }
    if (with_imm) {
        if (!expect_wc(d->recv_cq, IBV_WC_RECV_RDMA_WITH_IMM, &wc, why, why_len)) return 0;
        if (!(wc.wc_flags & IBV_WC_WITH_IMM) || ntohl(wc.imm_data) != imm || wc.byte_len != n) {
            snprintf(why, why_len, "imm 0x%x (flag %d), byte_len %u; want 0x%x, %u", ntohl(wc.imm_data),
                     !!(wc.wc_flags & IBV_WC_WITH_IMM), wc.byte_len, imm, n);
            return 0;
        }
    }
    return content_ok(rx(d), tx(s), n, why, why_len);
post_failed:
    snprintf(why, why_len, "post failed");
    return 0;
}

// RDMA READ of n bytes of the other end's send area into this end's receive area (RC only).
static int test_read(qp_pair *p, uint32_t n, char *why, size_t why_len) {
    endpoint *s = &p->end[0], *d = &p->end[1];
    struct ibv_wc wc;
    fill(tx(d), n, n * 5u + 2u);
    memset(rx(s), POISON, (size_t)n + GUARD);
    struct ibv_sge sge = sge_of(s, rx(s), n);
    if (post_send(s, IBV_WR_RDMA_READ, &sge, 1, 0, 0, (uintptr_t)tx(d), d->mr->rkey, 2)) {
        snprintf(why, why_len, "post failed");
        return 0;
    }
    if (!expect_wc(s->send_cq, IBV_WC_RDMA_READ, &wc, why, why_len)) return 0;
    return content_ok(rx(s), tx(d), n, why, why_len);
}

// total bytes as a stream of SENDs of at most stride bytes into a ring of depth pre-posted receives, reposted as
// they complete; a send is posted only when its receive is (what a transport over UC must guarantee).
static int test_ring(qp_pair *p, uint32_t total, uint32_t stride, uint32_t depth, char *why, size_t why_len) {
    endpoint *s = &p->end[0], *d = &p->end[1];
    uint32_t chunks = (total + stride - 1) / stride, sent = 0, received = 0, send_done = 0;
    struct ibv_wc wc;
    fill(tx(s), total, total + 11u);
    memset(rx(d), POISON, (size_t)stride * depth + GUARD);
    for (uint32_t k = 0; k < depth && k < chunks; k++) {
        struct ibv_sge sge = sge_of(d, rx(d) + (size_t)k * stride, stride);
        if (post_recv(d, &sge, 1, k)) goto post_failed;
    }
    while (received < chunks) {
        while (sent < chunks && sent < received + depth) {
            uint32_t len = sent + 1 == chunks ? total - sent * stride : stride;
            struct ibv_sge sge = sge_of(s, tx(s) + (size_t)sent * stride, len);
            if (post_send(s, IBV_WR_SEND, &sge, 1, 0, 0, 0, 0, sent)) goto post_failed;
            sent++;
        }
        while (send_done < sent && ibv_poll_cq(s->send_cq, 1, &wc) == 1) {
            if (wc.status != IBV_WC_SUCCESS) {
                snprintf(why, why_len, "send %u: %s", send_done, ibv_wc_status_str(wc.status));
                return 0;
            }
            send_done++;
        }
        if (!expect_wc(d->recv_cq, IBV_WC_RECV, &wc, why, why_len)) return 0;
        uint32_t slot = received % depth, len = received + 1 == chunks ? total - received * stride : stride;
        if (wc.wr_id != slot || wc.byte_len != len) {
            snprintf(why, why_len, "chunk %u: slot %u, %u bytes; want slot %u, %u bytes", received,
                     (unsigned)wc.wr_id, wc.byte_len, slot, len);
            return 0;
        }
        uint8_t *got = rx(d) + (size_t)slot * stride;
        if (memcmp(got, tx(s) + (size_t)received * stride, len) != 0) {
            snprintf(why, why_len, "chunk %u: content differs", received);
            return 0;
        }
        memset(got, POISON, stride);
        if (received + depth < chunks) {
            struct ibv_sge sge = sge_of(d, got, stride);
            if (post_recv(d, &sge, 1, slot)) goto post_failed;
        }
        received++;
    }
    while (send_done < sent) {
        if (!expect_wc(s->send_cq, IBV_WC_SEND, &wc, why, why_len)) return 0;
        send_done++;
    }
    return guard_intact(rx(d) + (size_t)stride * depth) ? 1 : (snprintf(why, why_len, "guard overwritten"), 0);
post_failed:
    snprintf(why, why_len, "post failed");
    return 0;
}

// UC: a SEND that finds no RECV posted is dropped without a trace (the sender still completes successfully) and the
// QP carries on: the next SEND arrives. (RC would retry after an RNR NAK instead.)
static int test_uc_unposted(qp_pair *p, char *why, size_t why_len) {
    endpoint *s = &p->end[0], *d = &p->end[1];
    struct ibv_wc wc;
    struct ibv_sge sge = sge_of(s, tx(s), 3000);
    if (post_send(s, IBV_WR_SEND, &sge, 1, 0, 0, 0, 0, 1)) {
        snprintf(why, why_len, "post failed");
        return 0;
    }
    if (!expect_wc(s->send_cq, IBV_WC_SEND, &wc, why, why_len)) return 0;
    for (double t0 = now_ms(); now_ms() - t0 < 200;) {
        if (ibv_poll_cq(d->recv_cq, 1, &wc) != 0) {
            snprintf(why, why_len, "the receiver got a completion (%s)", ibv_wc_status_str(wc.status));
            return 0;
        }
    }
    return test_send(p, 0, 3000, 0, why, why_len);
}

// RC: a SEND longer than the posted RECV fails on both sides with an error completion, within the wait.
static void test_rc_too_long(rdma *r) {
    qp_pair p;
    struct ibv_wc ws, wr;
    if (pair_create(r, &p, "RC", IBV_QPT_RC)) {
        check(0, "RC: a fresh pair for the length-error test");
        return;
    }
    fill(tx(&p.end[0]), 1000, 9);
    struct ibv_sge rsge = sge_of(&p.end[1], rx(&p.end[1]), 100), ssge = sge_of(&p.end[0], tx(&p.end[0]), 1000);
    int posted = !post_recv(&p.end[1], &rsge, 1, 1) && !post_send(&p.end[0], IBV_WR_SEND, &ssge, 1, 0, 0, 0, 0, 2);
    int got_r = posted && wait_wc(p.end[1].recv_cq, &wr);
    int got_s = posted && wait_wc(p.end[0].send_cq, &ws);
    // rxe reports "local QP operation error" here where the spec's responder says "local length error".
    check(got_r && (wr.status == IBV_WC_LOC_LEN_ERR || wr.status == IBV_WC_LOC_QP_OP_ERR),
          "RC: 1000 B SEND into a 100 B RECV: the receiver gets an error completion: %s",
          got_r ? ibv_wc_status_str(wr.status) : "nothing");
    check(got_s && ws.status != IBV_WC_SUCCESS, "RC: ... and the sender with an error: %s",
          got_s ? ibv_wc_status_str(ws.status) : "nothing");
    pair_destroy(&p);
}

static const char *mtu_str(enum ibv_mtu m) {
    switch (m) {
    case IBV_MTU_256: return "256";
    case IBV_MTU_512: return "512";
    case IBV_MTU_1024: return "1024";
    case IBV_MTU_2048: return "2048";
    case IBV_MTU_4096: return "4096";
    }
    return "?";
}

// Opens the device and finds the RoCE v2 GID of the address (IPv4-mapped).
static int rdma_open(rdma *r, const char *name, const char *ip) {
    int num = 0, found = 0;
    struct ibv_device **list = ibv_get_device_list(&num);
    memset(r, 0, sizeof *r);
    r->gid_index = -1;
    for (int i = 0; list && i < num && !r->ctx; i++)
        if (strcmp(ibv_get_device_name(list[i]), name) == 0) r->ctx = ibv_open_device(list[i]);
    if (list) ibv_free_device_list(list);
    check(r->ctx != NULL, "open %s (%d devices listed)", name, num);
    if (!r->ctx) return -1;
    r->port_num = 1;
    check(ibv_query_device(r->ctx, &r->dev) == 0, "ibv_query_device");
    int port_ok = ibv_query_port(r->ctx, r->port_num, &r->port) == 0;
    check(port_ok && r->port.state == IBV_PORT_ACTIVE && r->port.link_layer == IBV_LINK_LAYER_ETHERNET,
          "port 1 is ACTIVE (state %d) on Ethernet (link layer %d)", r->port.state, r->port.link_layer);
    uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (inet_pton(AF_INET, ip, want + 12) != 1) {
        check(0, "TBC_RDMA_IP %s is an IPv4 address", ip);
        return -1;
    }
    for (int i = 0; i < r->port.gid_tbl_len && !found; i++) {
        struct ibv_gid_entry e;
        if (ibv_query_gid_ex(r->ctx, r->port_num, (uint32_t)i, &e, 0) != 0) continue;
        if (e.gid_type == IBV_GID_TYPE_ROCE_V2 && memcmp(e.gid.raw, want, 16) == 0) {
            r->gid_index = i;
            r->gid = e.gid;
            found = 1;
        }
    }
    check(found, "RoCE v2 GID ::ffff:%s at index %d (table of %d)", ip, r->gid_index, r->port.gid_tbl_len);
    const char *env = getenv("TBC_RDMA_GID_INDEX");
    if (env && *env) check(atoi(env) == r->gid_index, "the GID index equals TBC_RDMA_GID_INDEX=%s", env);
    if (!found) return -1;
    r->pd = ibv_alloc_pd(r->ctx);
    check(r->pd != NULL, "ibv_alloc_pd");
    return r->pd ? 0 : -1;
}

static void rdma_close(rdma *r) {
    if (r->pd) ibv_dealloc_pd(r->pd);
    if (r->ctx) ibv_close_device(r->ctx);
}

// The largest max_inline_data a QP accepts (tried from 4096 down), and what it reports back.
static void probe_inline(rdma *r) {
    struct ibv_cq *cq = ibv_create_cq(r->ctx, 16, NULL, NULL, 0);
    for (uint32_t want = 4096; cq && want >= 16; want /= 2) {
        struct ibv_qp_init_attr got;
        struct ibv_qp *qp = create_qp(r, IBV_QPT_RC, cq, cq, want, &got);
        if (qp) {
            r->max_inline = got.cap.max_inline_data;
            ibv_destroy_qp(qp);
            break;
        }
    }
    if (cq) ibv_destroy_cq(cq);
    check(r->max_inline > 0, "a QP with inline data: max_inline_data %u", r->max_inline);
}

int main(void) {
    const char *name = getenv("TBC_RDMA_DEV"), *ip = getenv("TBC_RDMA_IP");
    rdma r;
    char why[256];
    if (!name || !*name) name = "rxe0";
    if (!ip || !*ip) ip = "10.99.0.1";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (rdma_open(&r, name, ip) == 0) {
        probe_inline(&r);
        printf("limits: max_sge %d, max_sge_rd %d, max_qp_wr %d, max_cqe %d, max_mr_size 0x%llx, port max_msg_sz "
               "%u, active_mtu %s, max_inline_data %u\n",
               r.dev.max_sge, r.dev.max_sge_rd, r.dev.max_qp_wr, r.dev.max_cqe,
               (unsigned long long)r.dev.max_mr_size, r.port.max_msg_sz, mtu_str(r.port.active_mtu), r.max_inline);
        static const uint32_t sizes[] = {1,    2,    3,     63,    64,    65,     255,     256,       257,
                                         1023, 1024, 1025,  4095,  4096,  4097,   65536,   65537,     1u << 20,
                                         MAX_MSG - 1, MAX_MSG};
        const size_t nsizes = sizeof sizes / sizeof sizes[0];
        static const struct { const char *name; enum ibv_qp_type type; } kinds[] = {
            {"RC", IBV_QPT_RC}, {"UC", IBV_QPT_UC}};
        for (size_t k = 0; k < 2; k++) {
            qp_pair p;
            int ok = pair_create(&r, &p, kinds[k].name, kinds[k].type) == 0;
            check(ok, "%s: two QPs on %s connected to each other (qpn %u <-> %u), path MTU %s", kinds[k].name,
                  name, ok ? p.end[0].qp->qp_num : 0, ok ? p.end[1].qp->qp_num : 0, mtu_str(r.port.active_mtu));
            if (!ok) continue;
            for (int from = 0; from < 2; from++) {
                int good = 0;
                double t0 = now_ms();
                for (size_t i = 0; i < nsizes; i++) {
                    if (test_send(&p, from, sizes[i], 0, why, sizeof why)) {
                        good++;
                    } else {
                        printf("  %s: SEND of %u B, QP %d -> %d: %s\n", p.name, sizes[i], from, 1 - from, why);
                    }
                }
                check(good == (int)nsizes, "%s: SEND/RECV QP %d -> %d, %d of %zu sizes 1 B .. 4 MiB (%.0f ms)",
                      p.name, from, 1 - from, good, nsizes, now_ms() - t0);
            }
            uint32_t inl[] = {1, 64, r.max_inline};
            for (size_t i = 0; i < 3; i++)
                check_why(test_send(&p, 0, inl[i], IBV_SEND_INLINE, why, sizeof why), why, "%s: inline SEND of %u B",
                          p.name, inl[i]);
            check_why(test_sge(&p, why, sizeof why), why, "%s: SEND from 3 SGEs into a RECV of 2 SGEs", p.name);
            static const uint32_t wsizes[] = {1, 4096, 65537, MAX_MSG};
            for (size_t i = 0; i < 4; i++) {
                check_why(test_write(&p, wsizes[i], 0, why, sizeof why), why, "%s: RDMA WRITE of %u B", p.name,
                          wsizes[i]);
                check_why(test_write(&p, wsizes[i], 1, why, sizeof why), why, "%s: RDMA WRITE_WITH_IMM of %u B",
                          p.name, wsizes[i]);
                if (p.type == IBV_QPT_RC)
                    check_why(test_read(&p, wsizes[i], why, sizeof why), why, "%s: RDMA READ of %u B", p.name,
                              wsizes[i]);
            }
            double t0 = now_ms();
            int ring_ok = test_ring(&p, MAX_MSG, RING_STRIDE, RING_DEPTH, why, sizeof why);
            check_why(ring_ok, why, "%s: 4 MiB in %u KiB strides through a ring of %u receives (%.0f ms)", p.name,
                      RING_STRIDE >> 10, RING_DEPTH, now_ms() - t0);
            if (p.type == IBV_QPT_UC)
                check_why(test_uc_unposted(&p, why, sizeof why), why,
                          "UC: a SEND with no RECV posted is dropped silently, and the next SEND arrives");
            pair_destroy(&p);
        }
        test_rc_too_long(&r);
    }
    rdma_close(&r);
    printf("test_rdma_smoke: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
