// Speed of the K-quant gemm kernels, one thread: weight streaming rate of a matrix-vector product (decode) and
// arithmetic rate of a 128-row product (prefill), for the best compiled path and the scalar reference.
// Build: cc -O2 -march=native tests/bench_kernels_k.c -o bench -lm   (run from the repository root)
#define _POSIX_C_SOURCE 199309L
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*gemm_fn)(int64_t, int64_t, int64_t, const void *, size_t, const void *, size_t, float *, size_t);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  // CPU time of this thread: robust on a shared, loaded machine
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
// Best time of repeated runs, at least min_s seconds in total.
static double best_time(gemm_fn f, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,
                        size_t lda, float *out, double min_s) {
    double best = 1e30, t0 = now();
    int reps = 0;
    do {
        double t = now();
        f(n, nw, na, W, ldw, A, lda, out, (size_t)nw);
        t = now() - t;
        if (t < best) best = t;
        reps++;
    } while (now() - t0 < min_s || reps < 3);
    return best;
}

typedef struct bt { const char *name; size_t bs; void (*quant)(const float *, void *, int64_t); gemm_fn best, ref; } bt;

int main(int argc, char **argv) {
    const int64_t n = 2048, nw = 5632, np = 128;
    int with_ref = argc > 1 && argv[1][0] == 'r';
    bt types[5] = {
        {"Q4_K", 144, tbc__quant_q4_K, tbc__gemm_q4_K, tbc__gemm_q4_K_ref},
        {"Q6_K", 210, tbc__quant_q6_K, tbc__gemm_q6_K, tbc__gemm_q6_K_ref},
        {"Q5_K", 176, tbc__quant_q5_K, tbc__gemm_q5_K, tbc__gemm_q5_K_ref},
        {"Q3_K", 110, tbc__quant_q3_K, tbc__gemm_q3_K, tbc__gemm_q3_K_ref},
        {"Q2_K", 84, tbc__quant_q2_K, tbc__gemm_q2_K, tbc__gemm_q2_K_ref},
    };
    const char *path =
#if defined(TBC__K_HAVE_AVX512)
        "avx512"
#if defined(__AVX512VNNI__)
        "+vnni"
#endif
#elif defined(TBC__K_HAVE_AVX2)
        "avx2"
#elif defined(TBC__K_HAVE_NEON)
        "neon"
#else
        "scalar"
#endif
        ;
    float *x = (float *)malloc(sizeof(float) * (size_t)(n * np));
    float *out = (float *)malloc(sizeof(float) * (size_t)(nw * np));
    const size_t lda = sizeof(tbc__block_q8_K) * (size_t)(n / 256);
    uint8_t *A = (uint8_t *)malloc(lda * (size_t)np);
    if (!x || !out || !A) return 1;
    srand(1);
    for (int64_t i = 0; i < n * np; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    double t = now();
    for (int64_t j = 0; j < np; j++) tbc__quant_q8_K(x + j * n, A + (size_t)j * lda, n);
    t = now() - t;
    printf("path %s; Q8_K quantization: %.2f GB/s of floats\n", path, 4.0 * (double)(n * np) / t / 1e9);
    for (int k = 0; k < 5; k++) {
        const size_t ldw = types[k].bs * (size_t)(n / 256);
        uint8_t *W = (uint8_t *)malloc(ldw * (size_t)nw);
        float *row = (float *)malloc(sizeof(float) * (size_t)n);
        if (!W || !row) return 1;
        for (int64_t i = 0; i < nw; i++) {
            for (int64_t e = 0; e < n; e++) row[e] = (float)rand() / RAND_MAX - 0.5f;
            types[k].quant(row, W + (size_t)i * ldw, n);
        }
        double tv = best_time(types[k].best, n, nw, 1, W, ldw, A, lda, out, 0.5);
        double tp = best_time(types[k].best, n, nw, np, W, ldw, A, lda, out, 1.0);
        printf("%s %s: matvec %lldx%lld %.2f ms = %.1f GB/s of weights; prefill %lld rows %.1f ms = %.1f GFLOP/s\n",
               types[k].name, path, (long long)n, (long long)nw, tv * 1e3, (double)(ldw * (size_t)nw) / tv / 1e9,
               (long long)np, tp * 1e3, 2.0 * (double)(n * nw * np) / tp / 1e9);
        if (with_ref) {
            double tr = best_time(types[k].ref, n, nw, 1, W, ldw, A, lda, out, 0.5);
            printf("%s scalar ref: matvec %.2f ms = %.2f GB/s\n", types[k].name, tr * 1e3, (double)(ldw * (size_t)nw) / tr / 1e9);
        }
        free(W); free(row);
    }
    free(x); free(out); free(A);
    return 0;
}
