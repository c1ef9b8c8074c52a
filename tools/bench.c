// bench: prefill and decode speed of one node, next to the memory bandwidth this machine measures in the same run.
//   build/bench -m MODEL [-t THREADS] [-p 128] [-n 64] [-r 3] [--parallel N] [--json]
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench -m MODEL [-t THREADS] [-p PROMPT_TOKENS] [-n DECODE_TOKENS] [-r REPEATS] [--parallel N] [--json]\n"
               "             [--peers host:port,... [--split tensor|pipeline] [--sync f32|q8_0] [--key-file F] [--no-local] [--transport auto|rdma|tcp] [--rdma-dev D] [--rdma-uc]]\n"
               "  prints prefill and decode tokens/s, weight bytes read per token, the effective GB/s, and the\n"
               "  memory read bandwidth measured in the same run (same thread count) with the ratio.\n"
               "  defaults: -t all CPUs, -p 128, -n 64, -r 3\n");
}

// ---- memory read bandwidth: threads summing disjoint parts of a buffer much larger than the caches ----
typedef struct bw_part { const uint64_t *p; size_t n; uint64_t sum; } bw_part;

static void *bw_read(void *arg) {
    bw_part *b = (bw_part *)arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= b->n; i += 4) { s0 += b->p[i]; s1 += b->p[i + 1]; s2 += b->p[i + 2]; s3 += b->p[i + 3]; }
    b->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double measure_bandwidth(int threads, size_t bytes) {
    uint64_t *buf = (uint64_t *)malloc(bytes);
    if (!buf) return 0;
    size_t n = bytes / 8;
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t th[256];
        bw_part parts[256];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            parts[t].p = buf + n / threads * t;
            parts[t].n = n / threads;
            pthread_create(&th[t], NULL, bw_read, &parts[t]);
        }
        uint64_t sink = 0;
        for (int t = 0; t < threads; t++) { pthread_join(th[t], NULL); sink += parts[t].sum; }
        double dt = now() - t0;
        if (sink == 42) printf(" ");
        double gbs = (double)bytes / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int threads = 0, n_prompt = 128, n_gen = 64, reps = 3, json = 0, parallel = 1;
    tbc_cluster_desc cd;
    memset(&cd, 0, sizeof cd);
    static char key[4096];
    const char *key_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!strcmp(a, "--no-local")) { cd.no_local = 1; continue; }
        if (!strcmp(a, "--rdma-uc")) { cd.rdma_uc = 1; continue; }
        if (i + 1 >= argc) { fprintf(stderr, "bench: unknown argument or missing value: '%s' (see --help)\n", a); return 2; }
        const char *v = argv[++i];
        char *end;
        long x = strtol(v, &end, 10);
        int numeric = *v && !*end;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { path = v; continue; }
        if (!strcmp(a, "--peers")) { cd.peers = v; continue; }
        if (!strcmp(a, "--split")) {
            if (!strcmp(v, "tensor")) cd.split = TBC_SPLIT_TENSOR;
            else if (!strcmp(v, "pipeline")) cd.split = TBC_SPLIT_PIPELINE;
            else if (strcmp(v, "auto")) { fprintf(stderr, "bench: --split expects tensor, pipeline or auto, got '%s'\n", v); return 2; }
            continue;
        }
        if (!strcmp(a, "--sync")) {
            if (!strcmp(v, "q8_0")) cd.sync = TBC_SYNC_Q8_0;
            else if (strcmp(v, "f32")) { fprintf(stderr, "bench: --sync expects f32 or q8_0, got '%s'\n", v); return 2; }
            continue;
        }
        if (!strcmp(a, "--key-file")) { key_file = v; continue; }
        if (!strcmp(a, "--rdma-dev")) { cd.rdma_dev = v; continue; }
        if (!strcmp(a, "--transport")) {
            if (!strcmp(v, "rdma")) cd.transport = TBC_TRANSPORT_RDMA;
            else if (!strcmp(v, "tcp")) cd.transport = TBC_TRANSPORT_TCP;
            else if (strcmp(v, "auto")) { fprintf(stderr, "bench: --transport expects auto, rdma or tcp, got '%s'\n", v); return 2; }
            continue;
        }
        if (!numeric || x < 0 || x > 100000) { fprintf(stderr, "bench: %s expects a number, got '%s'\n", a, v); return 2; }
        if (!strcmp(a, "-t") || !strcmp(a, "--threads")) threads = (int)x;
        else if (!strcmp(a, "-p")) n_prompt = (int)x;
        else if (!strcmp(a, "-n")) n_gen = (int)x;
        else if (!strcmp(a, "-r")) reps = x > 0 ? (int)x : 1;
        else if (!strcmp(a, "--parallel")) parallel = x >= 1 && x <= TBC_MAX_SEQ ? (int)x : 1;
        else { fprintf(stderr, "bench: unknown argument '%s' (see --help)\n", a); return 2; }
    }
    if (!path) { fprintf(stderr, "bench: -m MODEL is required (see --help)\n"); return 2; }
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads > 256) threads = 256;
    tbc_error err;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.error = &err;
    tbc_model *m;
    if (tbc_model_open(&md, &m) != TBC_OK) { fprintf(stderr, "bench: %s: %s\n", path, err.message); return 1; }
    tbc_model_info info;
    tbc_model_get_info(m, &info);
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = m;
    sd.n_threads = threads;
    sd.n_ctx = n_prompt + n_gen + 8;
    sd.n_batch = n_prompt > 0 ? n_prompt : 1;
    sd.prefault = 1;
    sd.n_seq = parallel;
    sd.error = &err;
    if (cd.peers) {
        size_t key_len = 0;
        if (tbc_cluster_key_load(key_file, key, sizeof key, &key_len, &err) != TBC_OK) {
            fprintf(stderr, "bench: %s\n", err.message);
            tbc_model_destroy(m);
            return 2;
        }
        cd.key = key_len ? key : NULL;
        cd.key_len = key_len;
        sd.cluster = &cd;
    }
    tbc_session *s;
    double t_load = now();
    if (tbc_session_create(&sd, &s) != TBC_OK) { fprintf(stderr, "bench: %s\n", err.message); tbc_model_destroy(m); return 1; }
    t_load = now() - t_load;
    tbc_shard_info si;
    tbc_session_shard_info(s, &si);
    int32_t *toks = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n_prompt + 1));
    uint64_t x = 12345;
    for (int i = 0; i < n_prompt; i++) { x = x * 6364136223846793005ull + 1442695040888963407ull; toks[i] = (int32_t)((x >> 33) % (uint64_t)info.n_vocab); }
    if (n_prompt > 0) toks[0] = info.bos >= 0 ? info.bos : toks[0];
    double pf_sum = 0, dc_sum = 0, comm_ms = 0, ar_us = 0, link_bytes[64] = {0};
    int n_peers = 0;
    int pf_n = 0, dc_n = 0;
    for (int rep = -1; rep < reps; rep++) {  // rep -1: warm-up
        tbc_session_rewind(s, 0);
        if (n_prompt > 0) {
            double t0 = now();
            if (tbc_session_eval(s, toks, n_prompt) != TBC_OK) { fprintf(stderr, "bench: %s\n", tbc_session_last_error(s)->message); return 1; }
            double dt = now() - t0;
            if (rep >= 0) { pf_sum += n_prompt / dt; pf_n++; }
        }
        int32_t t = info.bos >= 0 ? info.bos : 1;
        tbc_cluster_stats st0;
        tbc_session_cluster_stats(s, &st0);
        double t0 = now();
        for (int i = 0; i < n_gen; i++) {
            if (tbc_session_eval(s, &t, 1) != TBC_OK) { fprintf(stderr, "bench: %s\n", tbc_session_last_error(s)->message); return 1; }
            const float *lg = tbc_session_logits(s);
            int32_t b = 0;
            for (int32_t k = 1; k < info.n_vocab; k++) if (lg[k] > lg[b]) b = k;
            t = b;
        }
        double dt = now() - t0;
        if (rep >= 0 && n_gen > 0) { dc_sum += n_gen / dt; dc_n++; }
        tbc_cluster_stats st1;
        tbc_session_cluster_stats(s, &st1);
        if (rep >= 0 && n_gen > 0 && st1.n_peers) {
            comm_ms += (st1.comm_seconds - st0.comm_seconds) * 1e3 / n_gen;
            ar_us += st1.allreduces > st0.allreduces ? (st1.comm_seconds - st0.comm_seconds) * 1e6 / (double)(st1.allreduces - st0.allreduces) : 0;
            for (int p = 0; p < st1.n_peers; p++)
                link_bytes[p] += (double)(st1.bytes_sent[p] - st0.bytes_sent[p] + st1.bytes_received[p] - st0.bytes_received[p]) / n_gen;
            n_peers = st1.n_peers;
        }
    }
    // --parallel N: N sequences decoded together, one token each per forward pass (what a server with N clients does)
    double par_sum = 0;
    int par_n = 0;
    if (parallel > 1 && n_gen > 0) {
        int32_t *pt = (int32_t *)malloc(sizeof(int32_t) * (size_t)parallel * 2), *ps = pt + parallel;
        for (int rep = -1; rep < reps; rep++) {
            for (int q = 0; q < parallel; q++) {
                tbc_session_seq_rewind(s, q, 0);
                pt[q] = info.bos >= 0 ? info.bos : 1;
                ps[q] = q;
            }
            double t0 = now();
            for (int i = 0; i < n_gen; i++) {
                if (tbc_session_decode(s, pt, ps, parallel) != TBC_OK) { fprintf(stderr, "bench: %s\n", tbc_session_last_error(s)->message); return 1; }
                for (int q = 0; q < parallel; q++) {
                    const float *lg = tbc_session_seq_logits(s, q);
                    int32_t b = 0;
                    for (int32_t k = 1; k < info.n_vocab; k++) if (lg[k] > lg[b]) b = k;
                    pt[q] = (b + q) % info.n_vocab;  // the sequences take different paths
                }
            }
            double dt = now() - t0;
            if (rep >= 0) { par_sum += (double)n_gen * parallel / dt; par_n++; }
        }
        free(pt);
    }
    double pf = pf_n ? pf_sum / pf_n : 0, dc = dc_n ? dc_sum / dc_n : 0, par = par_n ? par_sum / par_n : 0;
    double gb_tok = (double)si.streamed_bytes / 1e9;
    double eff = dc * gb_tok;
    tbc_session_destroy(s);
    if (n_peers && dc_n) {
        comm_ms /= dc_n;
        ar_us /= dc_n;
        for (int p = 0; p < n_peers; p++) link_bytes[p] /= dc_n;
    }
    double bw = measure_bandwidth(threads, (size_t)1 << 30);
    const char *tn = tbc_type_name(info.main_type);
    if (json) {
        printf("{\"model\":\"%s\",\"type\":\"%s\",\"threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"prefill_tok_s\":%.3f,"
               "\"decode_tok_s\":%.3f,\"bytes_per_token\":%llu,\"effective_gb_s\":%.3f,\"memory_gb_s\":%.3f,"
               "\"ratio\":%.3f,\"parallel\":%d,\"parallel_tok_s\":%.3f}\n", path, tn ? tn : "?", threads, n_prompt, n_gen,
               pf, dc, (unsigned long long)si.streamed_bytes, eff, bw, bw > 0 ? eff / bw : 0, parallel, par);
    } else {
        printf("model        %s (%s, %s, %d layers, dim %d, %.0f MiB)\n", path, info.arch, tn ? tn : "?", info.n_layer,
               info.n_embd, (double)info.file_bytes / 1048576.0);
        printf("threads      %d (load %.2f s)\n", threads, t_load);
        printf("prefill      %8.2f tok/s   (%d tokens, mean of %d)\n", pf, n_prompt, pf_n);
        printf("decode       %8.2f tok/s   (%d tokens, mean of %d)\n", dc, n_gen, dc_n);
        if (par_n)
            printf("decode x%-3d  %8.2f tok/s   (%d sequences decoded together, all of them; %.2fx one sequence)\n",
                   parallel, par, parallel, dc > 0 ? par / dc : 0);
        printf("weights      %8.1f MB read per decoded token\n", gb_tok * 1e3);
        printf("effective    %8.2f GB/s    (decode tok/s x bytes per token)\n", eff);
        printf("memory read  %8.2f GB/s    (measured now, %d threads, 1 GiB buffer)\n", bw, threads);
        printf("ratio        %8.2f        (effective / measured)\n", bw > 0 ? eff / bw : 0);
        if (n_peers) {
            printf("cluster      %d nodes; this node holds %.1f MB of the weights (the bytes above)\n", n_peers + 1,
                   gb_tok * 1e3);
            printf("comm         %8.2f ms per token waiting for and exchanging sums%s\n", comm_ms,
                   cd.split == TBC_SPLIT_PIPELINE ? " (pipeline: includes the other nodes' layers)" : "");
            if (ar_us > 0) printf("all-reduce   %8.1f us each (a %d-float hidden vector, including waiting for the slowest node)\n", ar_us, info.n_embd);
            for (int p = 0; p < n_peers; p++) printf("link %d       %8.1f KB per token (both directions)\n", p + 1, link_bytes[p] / 1e3);
        }
    }
    free(toks);
    tbc_model_destroy(m);
    return 0;
}
