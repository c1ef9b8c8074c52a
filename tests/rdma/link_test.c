// The library's RDMA transport, link level, run inside the soft-RoCE guest by `make test-rdma`: two processes joined
// by a socketpair (the liveness channel, as a TCP connection would be) set up queue pairs the way the cluster does
// (address exchange, connect, post receives, a go byte) and then exchange authenticated frames over the link's
// SEND/RECV stream. For RC and for UC: thousands of messages of 1 B to 64 KiB and dozens of 1 to 4 MiB, echoed back
// and compared byte for byte; then a peer killed while the other waits must be an error, not a hang.
// Prints "test_rdma_link: N passed, M failed".
#define TBC_IMPLEMENTATION
#include "../../tbcluster.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

#define MAX_MSG ((size_t)4 << 20)

static int xfer(int fd, void *p, size_t n, int writing) {
    uint8_t *b = (uint8_t *)p;
    while (n) {
        ssize_t k = writing ? write(fd, b, n) : read(fd, b, n);
        if (k <= 0) return 0;
        b += k;
        n -= (size_t)k;
    }
    return 1;
}

// Sets up one end: the link over fd, with an RDMA endpoint connected to the other end's. 0 on success.
static int setup(tbc__link *l, int fd, int uc, char *why, size_t cap) {
    memset(l, 0, sizeof *l);
    l->fd = fd;
    snprintf(l->peer, sizeof l->peer, "the other process");
    memset(l->key, 0x42, sizeof l->key);
    l->keyed = 1;
    tbc__rdma *r = NULL;
    if (tbc__rdma_open(NULL, -1, 0, uc, &r, why, cap) != TBC_OK) return -1;
    uint8_t mine[TBC__RDMA_INFO], theirs[TBC__RDMA_INFO], go = 1;
    tbc__rdma_info(r, mine);
    if (!xfer(fd, mine, sizeof mine, 1) || !xfer(fd, theirs, sizeof theirs, 0) ||
        tbc__rdma_connect(r, theirs, why, cap) != TBC_OK || !xfer(fd, &go, 1, 1) || !xfer(fd, &go, 1, 0)) {
        tbc__rdma_free(r);
        return -1;
    }
    l->rdma = r;
    l->spin = 200e-6;
    return 0;
}

static size_t msg_size(uint64_t *rng, int i) {
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    uint64_t x = *rng >> 33;
    if (i % 100 == 99) return (size_t)(1 + x % MAX_MSG);           // 1 B .. 4 MiB
    int bits = (int)(x % 17);                                        // log-uniform 1 B .. 64 KiB
    return (size_t)1 + (size_t)((x >> 5) % ((uint64_t)1 << bits));
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131u + seed * 7u) >> 3 ^ seed);
}

// The echo side: returns every message until a BYE; exit status 0 when all went well.
static int echo_main(int fd, int uc, int die_after) {
    tbc__link l;
    char why[200];
    if (setup(&l, fd, uc, why, sizeof why) != 0) { fprintf(stderr, "echo: %s\n", why); return 2; }
    uint8_t *buf = (uint8_t *)malloc(MAX_MSG);
    tbc_error err;
    for (int k = 0;; k++) {
        if (die_after >= 0 && k == die_after) _exit(0);  // gone without a word (the socket closes with the process)
        uint16_t type;
        uint32_t n;
        if (tbc__link_recv(&l, TBC__BIT(TBC__MSG_HIDDEN) | TBC__BIT(TBC__MSG_BYE), &type, buf, MAX_MSG, &n,
                           tbc__now() + 60, &err) != TBC_OK) {
            fprintf(stderr, "echo: %s\n", err.message);
            return 3;
        }
        if (type == TBC__MSG_BYE) break;
        if (tbc__link_send(&l, TBC__MSG_HIDDEN, buf, n, tbc__now() + 60, &err) != TBC_OK) {
            fprintf(stderr, "echo: %s\n", err.message);
            return 4;
        }
    }
    free(buf);
    tbc__link_close(&l);
    return 0;
}

static void run_mode(int uc) {
    const char *mode = uc ? "UC" : "RC";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { CHECK(0, "socketpair"); return; }
    pid_t pid = fork();
    if (pid == 0) { close(sv[0]); _exit(echo_main(sv[1], uc, -1)); }
    close(sv[1]);
    tbc__link l;
    char why[200];
    if (setup(&l, sv[0], uc, why, sizeof why) != 0) {
        CHECK(0, "%s: setup: %s", mode, why);
        close(sv[0]);
        waitpid(pid, NULL, 0);
        return;
    }
    uint8_t *out = (uint8_t *)malloc(MAX_MSG), *in = (uint8_t *)malloc(MAX_MSG);
    uint64_t rng = 12345 + (uint64_t)uc, bytes = 0;
    int rounds = 3000, bad = 0, big = 0;
    size_t largest = 0;
    double t0 = tbc__now();
    tbc_error err;
    for (int i = 0; i < rounds && !bad; i++) {
        size_t n = msg_size(&rng, i);
        if (i == 7) n = 1;
        if (i == 8) n = MAX_MSG;
        fill(out, n, (uint32_t)i);
        uint16_t type;
        uint32_t got;
        if (tbc__link_send(&l, TBC__MSG_HIDDEN, out, n, tbc__now() + 60, &err) != TBC_OK ||
            tbc__link_recv(&l, TBC__BIT(TBC__MSG_HIDDEN), &type, in, MAX_MSG, &got, tbc__now() + 60, &err) != TBC_OK) {
            CHECK(0, "%s: round %d (%zu bytes): %s", mode, i, n, err.message);
            bad = 1;
            break;
        }
        if (got != n || memcmp(in, out, n) != 0) {
            CHECK(0, "%s: round %d: %u bytes came back for %zu, or other bytes", mode, i, got, n);
            bad = 1;
        }
        bytes += 2 * n;
        big += n >= ((size_t)1 << 20);
        if (n > largest) largest = n;
    }
    double dt = tbc__now() - t0;
    CHECK(!bad, "%s: %d echoed messages intact", mode, rounds);
    printf("  %s: %d messages of 1 B to %zu B (%d of 1 MiB or more) echoed intact: %.1f MB in %.2f s\n", mode, rounds,
           largest, big, (double)bytes / 1e6, dt);
    tbc__link_send(&l, TBC__MSG_BYE, NULL, 0, tbc__now() + 10, &err);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: the echo process ended well (status %d)", mode, st);
    tbc__link_close(&l);

    // The peer dies while we wait for its answer: an error naming it, soon, not a hang.
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) { CHECK(0, "socketpair"); free(out); free(in); return; }
    pid = fork();
    if (pid == 0) { close(sv[0]); _exit(echo_main(sv[1], uc, 5)); }
    close(sv[1]);
    if (setup(&l, sv[0], uc, why, sizeof why) == 0) {
        tbc_result rc = TBC_OK;
        double t1 = 0;
        for (int i = 0; i < 10 && rc == TBC_OK; i++) {
            uint16_t type;
            uint32_t got;
            t1 = tbc__now();
            rc = tbc__link_send(&l, TBC__MSG_HIDDEN, out, 1000, tbc__now() + 30, &err);
            if (!rc) rc = tbc__link_recv(&l, TBC__BIT(TBC__MSG_HIDDEN), &type, in, MAX_MSG, &got, tbc__now() + 30, &err);
        }
        double dt2 = tbc__now() - t1;
        CHECK(rc == TBC_ERR_PEER_LOST && dt2 < 5, "%s: a dead peer is an error within 5 s (%s after %.2f s: %s)", mode,
              tbc_result_str(rc), dt2, err.message);
        printf("  %s: peer killed: %s after %.3f s: %s\n", mode, tbc_result_str(rc), dt2, err.message);
        tbc__link_close(&l);
    } else {
        CHECK(0, "%s: setup for the dead-peer case: %s", mode, why);
        close(sv[0]);
    }
    waitpid(pid, NULL, 0);
    free(out);
    free(in);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    if (!tbc__rdma_available()) {
        printf("FAIL: no RDMA device (this test runs in the soft-RoCE guest of make test-rdma)\n");
        printf("test_rdma_link: 0 passed, 1 failed\n");
        return 1;
    }
    run_mode(0);
    run_mode(1);
    printf("test_rdma_link: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
