// bench_kernels: single-thread speed of the gemm kernels.
//   matvec (decode): W [nw x n] times one activation row; GB/s = weight bytes streamed per second
//   prefill: the same W times 128 activation rows; GFLOP/s = 2*n*nw*na per second
// Build: cc -O2 -march=native tests/bench_kernels.c -o bench_kernels -lm   (run from the repository root)
// Also prints, for Q4_0 and Q8_0 on x86, a per-row block-by-block dot product in the style of ggml's AVX2 vec_dot
// (one row at a time, 256-bit, d_w*d_a broadcast per block) as a yardstick.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);  // CPU time: the machine may be shared
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t g_rng = 88172645463325252ull;
static float rnd(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// Yardstick: one weight row at a time, one block per step (the shape of ggml's x86 vec_dot for Q4_0/Q8_0).
static void yard_matvec(tbc_type t, int64_t n, int64_t nw, const uint8_t *W, size_t ldw, const uint8_t *A, float *out) {
    const int64_t nb = n / 32;
    for (int64_t i = 0; i < nw; i++) {
        const uint8_t *w = W + (size_t)i * ldw;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *wb = w + (size_t)b * (t == TBC_TYPE_Q4_0 ? 18 : 34), *ab = A + (size_t)b * 34;
            __m256i qw;
            if (t == TBC_TYPE_Q4_0) {
                const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(wb + 2));
                qw = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1), _mm256_set1_epi8(15));
                qw = _mm256_sub_epi8(qw, _mm256_set1_epi8(8));
            } else {
                qw = _mm256_loadu_si256((const __m256i *)(const void *)(wb + 2));
            }
            const __m256i qa = _mm256_loadu_si256((const __m256i *)(const void *)(ab + 2));
            const __m256i ax = _mm256_sign_epi8(qw, qw), sy = _mm256_sign_epi8(qa, qw);
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
            const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, sy);
#else
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
#endif
            const __m256 d = _mm256_set1_ps(tbc__f16_to_f32(tbc__ld16(wb)) * tbc__f16_to_f32(tbc__ld16(ab)));
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        }
        out[i] = tbc__hsum8(acc);
    }
}
#define HAVE_YARD 1
#endif

static void bench_type(tbc_type t, int64_t n, int64_t nw, int64_t na_prefill) {
    const tbc_type at = tbc__vec_dot_type(t);
    const size_t ldw = tbc__row_bytes(t, n), lda = tbc__row_bytes(at, n);
    uint8_t *W = (uint8_t *)malloc(ldw * (size_t)nw), *A = (uint8_t *)malloc(lda * (size_t)na_prefill);
    float *x = (float *)malloc((size_t)n * sizeof(float)), *out = (float *)malloc((size_t)(nw * na_prefill) * sizeof(float));
    if (!W || !A || !x || !out) { printf("out of memory\n"); exit(1); }
    for (int64_t r = 0; r < nw; r++) {
        for (int64_t k = 0; k < n; k++) x[k] = rnd();
        tbc__quantize(t, x, W + (size_t)r * ldw, n);
    }
    for (int64_t r = 0; r < na_prefill; r++) {
        for (int64_t k = 0; k < n; k++) x[k] = rnd();
        tbc__quantize(at, x, A + (size_t)r * lda, n);
    }
    const double bytes = (double)ldw * (double)nw;
    // matvec: repeat until ~0.4 s
    int reps = 0;
    double t0 = now_s(), t1;
    do { tbc__gemm(t, n, nw, 1, W, ldw, A, lda, out, (size_t)nw); reps++; t1 = now_s(); } while (t1 - t0 < 0.4);
    const double mv = bytes * reps / (t1 - t0) / 1e9;
    const double mv_flops = 2.0 * (double)n * (double)nw * reps / (t1 - t0) / 1e9;
    reps = 0;
    t0 = now_s();
    do { tbc__gemm(t, n, nw, na_prefill, W, ldw, A, lda, out, (size_t)nw); reps++; t1 = now_s(); } while (t1 - t0 < 0.6);
    const double pf = 2.0 * (double)n * (double)nw * (double)na_prefill * reps / (t1 - t0) / 1e9;
    printf("%-5s n=%-5lld nw=%-5lld W=%6.2f MB  matvec %6.2f GB/s (%5.1f GFLOP/s)  prefill na=%lld %7.1f GFLOP/s\n",
           tbc_type_name(t), (long long)n, (long long)nw, bytes / 1e6, mv, mv_flops, (long long)na_prefill, pf);
#if defined(HAVE_YARD)
    if (t == TBC_TYPE_Q4_0 || t == TBC_TYPE_Q8_0) {
        reps = 0;
        t0 = now_s();
        do { yard_matvec(t, n, nw, W, ldw, A, out); reps++; t1 = now_s(); } while (t1 - t0 < 0.4);
        printf("      yardstick (row-at-a-time ggml-style vec_dot): matvec %6.2f GB/s\n", bytes * reps / (t1 - t0) / 1e9);
    }
#endif
    free(W); free(A); free(x); free(out);
}

int main(int argc, char **argv) {
    printf("bench_kernels: SIMD path %s, 1 thread\n", TBC__SIMD_NAME);
    const int big = argc > 1 && strcmp(argv[1], "big") == 0;
    const tbc_type ts[] = {TBC_TYPE_Q4_0, TBC_TYPE_Q8_0, TBC_TYPE_F16, TBC_TYPE_Q4_1, TBC_TYPE_Q5_0, TBC_TYPE_Q5_1,
                           TBC_TYPE_BF16, TBC_TYPE_F32};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) bench_type(ts[i], 2048, 5632, 128);
    if (big) {  // larger than the last-level cache: DRAM bandwidth
        bench_type(TBC_TYPE_Q4_0, 4096, 14336, 16);
        bench_type(TBC_TYPE_Q8_0, 4096, 14336, 16);
    }
    return 0;
}
