// Shards: a node that asks for a layer range or a tensor-parallel slice maps in only those bytes (resident memory
// measured from /proc/self/smaps), and slices computed separately and summed give the single-node logits.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

// Resident bytes of this process's mapping of `path` (Linux: /proc/self/smaps; elsewhere: mincore over the map).
static long long resident_bytes(const tbc_model *m) {
#if defined(__linux__)
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    unsigned long long lo, hi, base = (unsigned long long)(uintptr_t)m->map.base;
    int in = 0;
    long long rss = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%llx-%llx", &lo, &hi) == 2) {  // a mapping's header line
            in = lo <= base && base < hi;
            continue;
        }
        long long kb;
        if (in && sscanf(line, "Rss: %lld kB", &kb) == 1) { rss = kb * 1024; in = 0; }
    }
    fclose(f);
    return rss;
#else
    (void)m;
    return -1;
#endif
}

static int make_model(const char *path, const char *type) {
    char cmd[512];
    // Real-sized layers: on small files the page cache's large folios map in megabytes around each touched page.
    snprintf(cmd, sizeof cmd, "build/mkmodel --shape tinyllama-1.1b --layers 6 --type %s --seed 7 -o %s 2>/dev/null",
             type, path);
    return system(cmd) == 0;
}

static tbc_model *open_model(const char *path) {
    tbc_error err;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.error = &err;
    tbc_model *m = NULL;
    if (tbc_model_open(&md, &m) != TBC_OK) { printf("open %s: %s\n", path, err.message); return NULL; }
    return m;
}

static tbc_session *shard_session(tbc_model *m, int lb, int le, int rank, int size, int prefault, tbc_result *rc,
                                  tbc_error *err) {
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = m;
    sd.n_ctx = 64;
    sd.n_threads = 1;
    sd.shard.layer_begin = lb;
    sd.shard.layer_end = le;
    sd.shard.tp_rank = rank;
    sd.shard.tp_size = size;
    sd.prefault = prefault;
    sd.error = err;
    tbc_session *s = NULL;
    *rc = tbc_session_create(&sd, &s);
    return s;
}

// ---- two tensor-parallel slices in two threads, summed in rank order by an in-process all-reduce ----
typedef struct pair_comm {
    pthread_barrier_t bar;
    float *part[2];
} pair_comm;

typedef struct rank_ctx {
    pair_comm *pc;
    int rank;
    tbc_session *s;
    const int32_t *ids;
    int n;
    float *logits;
    int n_vocab;
} rank_ctx;

static __thread int tls_rank;

static void pair_allreduce(void *comm, float *x, int64_t n, int op) {
    pair_comm *pc = (pair_comm *)comm;
    pc->part[tls_rank] = x;
    pthread_barrier_wait(&pc->bar);
    // both ranks compute the same fixed-order sum into their own buffer
    float *tmp = (float *)malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        tmp[i] = op == TBC__SUM ? pc->part[0][i] + pc->part[1][i]
                                : fabsf(pc->part[1][i]) > fabsf(pc->part[0][i]) ? pc->part[1][i] : pc->part[0][i];
    pthread_barrier_wait(&pc->bar);
    memcpy(x, tmp, sizeof(float) * (size_t)n);
    free(tmp);
}

static void *rank_main(void *arg) {
    rank_ctx *r = (rank_ctx *)arg;
    tls_rank = r->rank;
    for (int i = 0; i < r->n; i++) {
        tbc_session_eval(r->s, &r->ids[i], 1);
    }
    memcpy(r->logits, tbc_session_logits(r->s), sizeof(float) * (size_t)r->n_vocab);
    return NULL;
}

int main(void) {
    const char *path = "build/tests/shard-test-q4_0.gguf";
    if (!make_model(path, "q4_0")) {
        printf("FAIL: build/mkmodel could not write %s (build the tools first: make)\n", path);
        printf("test_shard: 0 passed, 1 failed\n");
        return 1;
    }
    tbc_model *m = open_model(path);
    CHECK(m != NULL, "model opens");
    if (!m) return 1;
    tbc_model_info info;
    tbc_model_get_info(m, &info);
    tbc_error err;
    tbc_result rc;

    // 1. a pipeline shard: layers 2..3 of 6
    long long before = resident_bytes(m);
    tbc_session *s = shard_session(m, 2, 4, 0, 0, 1, &rc, &err);
    CHECK(rc == TBC_OK, "layer shard: %s", err.message);
    tbc_shard_info si;
    tbc_session_shard_info(s, &si);
    long long after = resident_bytes(m);
    long long grew = after - before;
    printf("  layers 2-3 of 6: shard %.2f MiB of %.2f MiB weights; mapping resident %.2f MiB\n",
           si.weight_bytes / 1048576.0, info.weight_bytes / 1048576.0, grew / 1048576.0);
    if (after >= 0) {
        CHECK(grew >= (long long)(si.weight_bytes * 0.9), "resident %lld < shard %llu", grew, (unsigned long long)si.weight_bytes);
        CHECK(grew <= (long long)(si.weight_bytes * 1.05) + 4 * 1048576, "resident %lld is more than the shard %llu", grew,
              (unsigned long long)si.weight_bytes);
        CHECK(grew < (long long)info.weight_bytes / 2, "a 2-of-6-layer shard keeps less than half the model resident");
    } else {
        printf("SKIP: no /proc/self/smaps: resident memory not measured\n");
    }
    CHECK(!si.has_embeddings && !si.has_output, "a middle shard holds neither embeddings nor output");
    int32_t tok = 1;
    CHECK(tbc_session_eval(s, &tok, 1) == TBC_ERR_SHARD, "tokens cannot be fed to a middle shard");
    tbc_session_destroy(s);
    tbc_model_destroy(m);

    // 2. a tensor-parallel slice (1 of 2): half of each layer's matrices
    m = open_model(path);
    before = resident_bytes(m);
    s = shard_session(m, 0, 0, 1, 2, 1, &rc, &err);
    CHECK(rc == TBC_OK, "tensor slice: %s", err.message);
    tbc_session_shard_info(s, &si);
    after = resident_bytes(m);
    grew = after - before;
    uint64_t mapped = si.weight_bytes - si.copied_bytes;
    printf("  slice 1 of 2: kv heads %d-%d, ffn rows %d-%d, %.2f MiB (%.2f MiB copied column slices); mapping "
           "resident %.2f MiB\n", si.head_kv_begin, si.head_kv_end - 1, si.ff_begin, si.ff_end - 1,
           si.weight_bytes / 1048576.0, si.copied_bytes / 1048576.0, grew / 1048576.0);
    if (after >= 0) {
        // the mapped part (row slices, output) is resident; column slices were read with pread, not mapped
        CHECK(grew <= (long long)(mapped * 1.05) + 4 * 1048576, "slice resident %lld > mapped share %llu", grew,
              (unsigned long long)mapped);
        CHECK(si.weight_bytes < info.weight_bytes * 0.75, "a half slice holds well under the whole model");
    }
    tbc_session_destroy(s);

    // 3. two slices, computed in two threads and summed, give the single-node logits
    tbc_session *whole = shard_session(m, 0, 0, 0, 0, 0, &rc, &err);
    CHECK(rc == TBC_OK, "whole: %s", err.message);
    int32_t ids[6] = {1, 450, 4996, 17354, 1701, 432};
    for (int i = 0; i < 6; i++) tbc_session_eval(whole, &ids[i], 1);
    const float *ref = tbc_session_logits(whole);
    pair_comm pc;
    pthread_barrier_init(&pc.bar, NULL, 2);
    rank_ctx rk[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        rk[r].pc = &pc;
        rk[r].rank = r;
        rk[r].s = shard_session(m, 0, 0, r, 2, 0, &rc, &err);
        CHECK(rc == TBC_OK, "rank %d: %s", r, err.message);
        rk[r].s->allreduce = pair_allreduce;
        rk[r].s->comm = &pc;
        rk[r].ids = ids;
        rk[r].n = 6;
        rk[r].n_vocab = info.n_vocab;
        rk[r].logits = (float *)malloc(sizeof(float) * (size_t)info.n_vocab);
    }
    for (int r = 0; r < 2; r++) pthread_create(&th[r], NULL, rank_main, &rk[r]);
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    // each rank computes its own rows of the output matrix: together they are the whole vocabulary
    float worst = 0;
    int covered = 0;
    for (int r = 0; r < 2; r++) {
        tbc_shard_info ri;
        tbc_session_shard_info(rk[r].s, &ri);
        covered += ri.vocab_end - ri.vocab_begin;
        for (int i = ri.vocab_begin; i < ri.vocab_end; i++) {
            float d = fabsf(rk[r].logits[i] - ref[i]);
            if (d > worst) worst = d;
        }
    }
    printf("  2 slices summed vs whole model: max |diff| %.2e over %d logits\n", (double)worst, covered);
    CHECK(covered == info.n_vocab, "the ranks' output rows cover the vocabulary once");
    // Q4_0 activations are quantized per slice as on one node (the same blocks): only float summation order differs
    CHECK(worst < 1e-3f, "tensor-parallel logits differ from single node by %g", (double)worst);
    for (int r = 0; r < 2; r++) { tbc_session_destroy(rk[r].s); free(rk[r].logits); }
    pthread_barrier_destroy(&pc.bar);

    // 4. bad shard requests
    s = shard_session(m, 5, 3, 0, 0, 0, &rc, &err);
    CHECK(rc == TBC_ERR_SHARD && !s, "empty layer range: %s", err.message);
    s = shard_session(m, 0, 7, 0, 0, 0, &rc, &err);
    CHECK(rc == TBC_ERR_SHARD && !s, "layer range past the model: %s", err.message);
    s = shard_session(m, 0, 0, 2, 2, 0, &rc, &err);
    CHECK(rc == TBC_ERR_SHARD && !s, "rank outside the slice count: %s", err.message);
    s = shard_session(m, 0, 0, 0, info.n_head + 1, 0, &rc, &err);
    CHECK(rc == TBC_ERR_SHARD && !s, "more slices than attention heads: %s", err.message);
    tbc_session_destroy(whole);
    tbc_model_destroy(m);
    printf("test_shard: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
