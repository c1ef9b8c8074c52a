// Tests for the K-quant kernels (tbcluster.h, >>k-quants): K-quant layouts, Q8_K activation quantization (hand-computed cases, SIMD == scalar
// bit for bit), every compiled SIMD gemm path against the scalar reference and against a double-precision dot of the
// dequantized operands, quantizer error bounds, and (when ../shared is present) dequantization of real llama.cpp
// files against their F32 originals.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}
static float rnd_unit(void) { return (float)((rnd_u32() & 0xFFFFFF) + 0.5) / 16777216.0f; }
static float rnd_gauss(void) { return sqrtf(-2.0f * logf(rnd_unit())) * cosf(6.2831853f * rnd_unit()); }

typedef void (*gemm_fn)(int64_t, int64_t, int64_t, const void *, size_t, const void *, size_t, float *, size_t);
typedef struct path { const char *name; gemm_fn fn; } path;
typedef struct ktype {
    const char *name;
    size_t bs;
    void (*quant)(const float *, void *, int64_t);
    void (*dequant)(const void *, float *, int64_t);
    tbc__k_decode_fn decode;
    gemm_fn ref;
    path paths[4];
    size_t d_off[2];  // byte offsets of the fp16 d (and dmin; 0 = none besides d) inside a block
    double max_rel_rmse;
} ktype;

#define PATHS(T)                                                                                                       \
    { {"best", tbc__gemm_##T}, P512(T) P256(T) PNEON(T) }
#if defined(TBC__K_HAVE_AVX512)
#define P512(T) {"avx512", tbc__gemm_##T##_avx512},
#else
#define P512(T)
#endif
#if defined(TBC__K_HAVE_AVX2)
#define P256(T) {"avx2", tbc__gemm_##T##_avx2},
#else
#define P256(T)
#endif
#if defined(TBC__K_HAVE_NEON)
#define PNEON(T) {"neon", tbc__gemm_##T##_neon},
#else
#define PNEON(T)
#endif

static ktype g_types[5] = {
    {"q2_K", 84, tbc__quant_q2_K, tbc__dequant_q2_K, tbc__k_decode_q2_K, tbc__gemm_q2_K_ref, PATHS(q2_K), {80, 82}, 0.35},
    {"q3_K", 110, tbc__quant_q3_K, tbc__dequant_q3_K, tbc__k_decode_q3_K, tbc__gemm_q3_K_ref, PATHS(q3_K), {108, 0}, 0.19},
    {"q4_K", 144, tbc__quant_q4_K, tbc__dequant_q4_K, tbc__k_decode_q4_K, tbc__gemm_q4_K_ref, PATHS(q4_K), {0, 2}, 0.09},
    {"q5_K", 176, tbc__quant_q5_K, tbc__dequant_q5_K, tbc__k_decode_q5_K, tbc__gemm_q5_K_ref, PATHS(q5_K), {0, 2}, 0.045},
    {"q6_K", 210, tbc__quant_q6_K, tbc__dequant_q6_K, tbc__k_decode_q6_K, tbc__gemm_q6_K_ref, PATHS(q6_K), {208, 0}, 0.023},
};

// ---------------------------------------------------------------- Q8_K
static void test_q8_K_hand(void) {
    float x[256];
    tbc__block_q8_K b, c;
    // all zero -> d = 0, q = 0, bsums = 0
    memset(x, 0, sizeof x);
    memset(&b, 0x55, sizeof b);
    tbc__quant_q8_K(x, &b, 256);
    int ok = b.d == 0.0f;
    for (int i = 0; i < 256; i++) ok &= b.qs[i] == 0;
    for (int i = 0; i < 16; i++) ok &= b.bsums[i] == 0;
    CHECK(ok, "zero block");

    // max = -127 (negative) -> iscale = 1, d = 1: ties round half to even
    memset(x, 0, sizeof x);
    x[0] = 2.5f; x[1] = 3.5f; x[2] = -2.5f; x[3] = 0.5f; x[4] = 1.5f; x[5] = -0.5f; x[6] = -127.0f; x[7] = 126.5f;
    x[8] = 127.0f;  /* same |x| as x[6] but later: not the max */
    x[16] = 10.25f; x[17] = -3.75f;
    tbc__quant_q8_K_ref(x, &b, 256);
    static const int want[9] = {2, 4, -2, 0, 2, 0, -127, 126, 127};
    ok = b.d == 1.0f;
    for (int i = 0; i < 9; i++) ok &= b.qs[i] == want[i];
    ok &= b.qs[16] == 10 && b.qs[17] == -4;
    ok &= b.bsums[0] == 2 + 4 - 2 + 0 + 2 + 0 - 127 + 126 + 127 && b.bsums[1] == 6;
    CHECK(ok, "negative max, ties: d=%g q=%d %d %d %d %d %d %d %d %d bsums %d %d", b.d, b.qs[0], b.qs[1], b.qs[2],
          b.qs[3], b.qs[4], b.qs[5], b.qs[6], b.qs[7], b.qs[8], b.bsums[0], b.bsums[1]);
    tbc__quant_q8_K(x, &c, 256);
    CHECK(memcmp(&b, &c, sizeof b) == 0, "negative max: SIMD differs from reference");

    // max = +127 (first of +-127) -> iscale = -1, d = -1: signs flip, the later -127 becomes +127
    memset(x, 0, sizeof x);
    x[40] = 127.0f; x[41] = -127.0f; x[42] = 2.5f; x[43] = -3.5f; x[44] = 64.5f;
    tbc__quant_q8_K_ref(x, &b, 256);
    ok = b.d == -1.0f && b.qs[40] == -127 && b.qs[41] == 127 && b.qs[42] == -2 && b.qs[43] == 4 && b.qs[44] == -64;
    ok &= b.bsums[2] == -127 + 127 - 2 + 4 - 64;
    CHECK(ok, "positive max: d=%g q=%d %d %d %d %d", b.d, b.qs[40], b.qs[41], b.qs[42], b.qs[43], b.qs[44]);
    tbc__quant_q8_K(x, &c, 256);
    CHECK(memcmp(&b, &c, sizeof b) == 0, "positive max: SIMD differs from reference");

    // general max: max = 2 -> iscale = -63.5, d = 1/-63.5 (float); x = 1 -> -63.5 -> -64 (tie to even)
    memset(x, 0, sizeof x);
    x[255] = 2.0f; x[254] = 1.0f; x[253] = -1.0f; x[252] = 0.25f;
    tbc__quant_q8_K_ref(x, &b, 256);
    float iscale = -127.0f / 2.0f;
    ok = b.d == 1.0f / iscale && b.qs[255] == -127 && b.qs[254] == -64 && b.qs[253] == 64 && b.qs[252] == -16;
    CHECK(ok, "max 2: d=%.9g q=%d %d %d %d", b.d, b.qs[255], b.qs[254], b.qs[253], b.qs[252]);

    // SIMD == reference on random data, on data full of ties, and on multi-block rows
    enum { NB = 7 };
    float *r = (float *)malloc(sizeof(float) * 256 * NB);
    tbc__block_q8_K qa[NB], qb[NB];
    for (int it = 0; it < 200; it++) {
        for (int i = 0; i < 256 * NB; i++) {
            switch (it % 4) {
            case 0: r[i] = rnd_gauss(); break;
            case 1: r[i] = (float)((int)(rnd_u32() % 509) - 254) * 0.5f; break;  // halves: ties everywhere
            case 2: r[i] = rnd_gauss() * 1e-30f; break;                           // tiny values
            default: r[i] = (rnd_u32() % 3 == 0) ? 0.0f : rnd_gauss() * 1e5f; break;
            }
        }
        if (it % 8 == 3) memset(r + 256, 0, 256 * sizeof(float));  // one zero block inside a row
        tbc__quant_q8_K_ref(r, qa, 256 * NB);
        tbc__quant_q8_K(r, qb, 256 * NB);
        if (memcmp(qa, qb, sizeof qa) != 0) { CHECK(0, "q8_K SIMD != reference (iteration %d)", it); break; }
        if (it == 199) CHECK(1, "q8_K SIMD == reference");
    }
    // bsums and dequantization consistency
    ok = 1;
    float back[256 * NB];
    tbc__dequant_q8_K(qa, back, 256 * NB);
    for (int k = 0; k < NB; k++) {
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += qa[k].qs[16 * g + i];
            ok &= s == qa[k].bsums[g];
        }
        for (int i = 0; i < 256; i++) ok &= back[256 * k + i] == qa[k].d * (float)qa[k].qs[i];
    }
    CHECK(ok, "q8_K bsums / dequant");
    free(r);
}

// ---------------------------------------------------------------- quantizer quality
static void test_quant_error(const ktype *t) {
    enum { N = 256 * 16 };
    float *x = (float *)malloc(sizeof(float) * N), *y = (float *)malloc(sizeof(float) * N);
    uint8_t *q = (uint8_t *)malloc(t->bs * (N / 256));
    for (int i = 0; i < N; i++) x[i] = rnd_gauss() * 0.02f + (i % 256 < 32 ? 0.01f : 0.0f);
    for (int i = 512; i < 768; i++) x[i] = 0.0f;  // an all-zero block must come back as zeros
    t->quant(x, q, N);
    t->dequant(q, y, N);
    double se = 0, sx = 0;
    int zero_ok = 1;
    for (int i = 0; i < N; i++) { se += (double)(x[i] - y[i]) * (x[i] - y[i]); sx += (double)x[i] * x[i]; }
    for (int i = 512; i < 768; i++) zero_ok &= y[i] == 0.0f;
    double rel = sqrt(se / sx);
    CHECK(rel < t->max_rel_rmse, "%s quantize->dequantize relative rms error %.4f >= %.4f", t->name, rel, t->max_rel_rmse);
    CHECK(zero_ok, "%s zero block does not dequantize to zeros", t->name);
    printf("  %s: quantize->dequantize relative rms error %.4f (bound %.3f)\n", t->name, rel, t->max_rel_rmse);
    free(x); free(y); free(q);
}

// The quantizers' SIMD helpers (candidate sums of the scale search, final levels) must match the scalar reference bit
// for bit: they do the same float operations per lane, in the same order.
typedef void (*cand_fn)(const float *, int, float, float, float, float, const float *, float *, float *, float *);
typedef void (*levels_fn)(const float *, int, float, float, float, float, uint8_t *);
static void test_quant_helpers(void) {
    struct { const char *name; cand_fn cand; levels_fn levels; } paths[3];
    int np = 0;
#if defined(TBC__K_HAVE_AVX512)
    paths[np].name = "avx512"; paths[np].cand = tbc__k_cand_sums_avx512; paths[np].levels = tbc__k_levels_avx512; np++;
#endif
#if defined(TBC__K_HAVE_AVX2)
    paths[np].name = "avx2"; paths[np].cand = tbc__k_cand_sums_avx2; paths[np].levels = tbc__k_levels_avx2; np++;
#endif
#if defined(TBC__K_HAVE_NEON)
    paths[np].name = "neon"; paths[np].cand = tbc__k_cand_sums_neon; paths[np].levels = tbc__k_levels_neon; np++;
#endif
    if (np == 0) { printf("SKIP: no SIMD quantizer helpers in this build\n"); return; }
    for (int p = 0; p < np; p++) {
        int ok_c = 1, ok_l = 1;
        for (int it = 0; it < 400 && ok_c && ok_l; it++) {
            float x[32], is[TBC__K_NC], a[3][TBC__K_NC], b[3][TBC__K_NC];
            uint8_t la[32], lb[32];
            const int n = it % 2 ? 32 : 16, sym = it % 4 >= 2, nmax = sym ? (it % 8 >= 4 ? 32 : 4) : (it % 8 >= 4 ? 15 : 3);
            float lo = 0.0f, amax = 0.0f;
            for (int i = 0; i < n; i++) {
                x[i] = rnd_gauss() * 0.02f;
                if (it % 16 == 5 && i % 5 == 0) x[i] = NAN;  // NaN levels go to an end of the range
                if (it % 16 == 9 && i == 3) x[i] = -INFINITY;
                if (it % 16 == 13) x[i] = (float)(rnd_u32() % 5) * 1e30f;
                lo = x[i] < lo ? x[i] : lo;
                amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
            }
            if (!(amax > 0.0f) || amax > 1e38f) amax = 1.0f;
            for (int j = 0; j < TBC__K_NC; j++) {
                is[j] = ((float)nmax - 0.9f + 0.12f * (float)j) / (sym ? -amax : 2.0f * amax);
                for (int k = 0; k < 3; k++) a[k][j] = b[k][j] = (float)(j * k);  // sums accumulate onto the input
            }
            const float off = sym ? (float)nmax + 0.5f : 0.5f, top = sym ? 2.0f * (float)nmax - 0.5f : (float)nmax + 0.5f;
            const float sub = sym ? (float)nmax : 0.0f, base = sym ? 0.0f : lo;
            tbc__k_cand_sums_ref(x, n, base, off, top, sub, is, a[0], a[1], a[2]);
            paths[p].cand(x, n, base, off, top, sub, is, b[0], b[1], b[2]);
            ok_c &= memcmp(a, b, sizeof a) == 0;
            const float add = sym ? 0.0f : 0.013f, scale = it % 16 == 7 ? 0.0f : 50.0f * (float)nmax;
            tbc__k_levels_ref(x, n, add, scale, off, top, la);
            paths[p].levels(x, n, add, scale, off, top, lb);
            ok_l &= memcmp(la, lb, (size_t)n) == 0;
            for (int i = 0; i < n; i++) ok_l &= la[i] <= (int)top;
            if (!ok_c || !ok_l) printf("  %s helpers differ at iteration %d (n %d nmax %d sym %d)\n", paths[p].name, it, n, nmax, sym);
        }
        CHECK(ok_c, "%s candidate sums == scalar reference", paths[p].name);
        CHECK(ok_l, "%s levels == scalar reference", paths[p].name);
    }
}

// Hostile rows for the quantizers (tbc_quantize_row takes caller data): constant, all-negative, huge, tiny and
// NaN/Inf-carrying blocks must not crash or read out of bounds; finite blocks must still dequantize close.
static void test_quant_edge(const ktype *t) {
    enum { NB = 8 };
    float *x = (float *)malloc(sizeof(float) * 256 * NB), *y = (float *)malloc(sizeof(float) * 256 * NB);
    uint8_t *q = (uint8_t *)malloc(t->bs * NB);
    for (int i = 0; i < 256; i++) {
        x[i] = 0.37f;                                        // constant positive
        x[256 + i] = -0.5f - 0.001f * (float)(i % 7);        // all negative
        x[512 + i] = rnd_gauss() * 1e4f;                     // large (fits fp16 scales)
        x[768 + i] = rnd_gauss() * 1e-3f + 0.004f;           // all-positive-ish, offset
        x[1024 + i] = (i % 16 == 0) ? 1.0f : 0.0f;           // one spike per sub-block
        x[1280 + i] = rnd_gauss();
        x[1536 + i] = rnd_gauss();
        x[1792 + i] = rnd_gauss() * 1e-35f;                  // denormal-ish
    }
    x[1280 + 17] = NAN; x[1536 + 40] = INFINITY; x[1536 + 41] = -INFINITY;
    t->quant(x, q, 256 * NB);
    t->dequant(q, y, 256 * NB);
    static const int finite[6] = {0, 1, 2, 3, 4, 7};
    for (int k = 0; k < 6; k++) {
        const int b = finite[k];
        double se = 0, sx = 0;
        for (int i = 0; i < 256; i++) {
            const double d = (double)x[256 * b + i] - y[256 * b + i];
            se += d * d; sx += (double)x[256 * b + i] * x[256 * b + i];
        }
        const double rel = sx > 0 ? sqrt(se / sx) : 0.0;
        // the tiny block underflows the fp16 scale: it may only come back as (near) zero, never as garbage
        const double bound = b == 7 ? 1.0 + 1e-6 : t->max_rel_rmse;
        CHECK(rel <= bound && rel == rel, "%s edge block %d: relative rms error %.4f > %.3f", t->name, b, rel, bound);
    }
    free(x); free(y); free(q);
}

// ---------------------------------------------------------------- gemm
// Per-row magnitude bound for float rounding: sum over blocks of |da| (|d| sum|s (u-off) a| + |dmin| sum|m b|).
static double dot_magnitude(const ktype *t, const uint8_t *w, const tbc__block_q8_K *a, int nb) {
    double mag = 0;
    tbc__k_dec dec;
    for (int b = 0; b < nb; b++) {
        t->decode(w + (size_t)b * t->bs, &dec);
        double si = 0, sm = 0;
        for (int e = 0; e < 256; e++) si += fabs((double)dec.s[e / 16] * ((int)dec.u[e] - dec.off) * a[b].qs[e]);
        for (int k = 0; k < 16; k++) sm += fabs((double)dec.m[k] * a[b].bsums[k]);
        mag += fabs((double)a[b].d) * (fabs((double)dec.d) * si + fabs((double)dec.dmin) * sm);
    }
    return mag;
}

static void test_gemm(const ktype *t, int nb, int nw, int na, int seed) {
    const int64_t n = 256 * nb;
    const size_t row = t->bs * (size_t)nb, ldw = row + 2 * (size_t)(1 + seed % 5);  // weights: 2-byte aligned rows
    const size_t arow = sizeof(tbc__block_q8_K) * (size_t)nb, lda = arow + 4 * (size_t)(seed % 3);
    const size_t ldo = (size_t)nw + (size_t)(seed % 4);
    uint8_t *W = (uint8_t *)calloc((size_t)nw, ldw);
    uint8_t *A = (uint8_t *)calloc((size_t)na, lda);
    float *x = (float *)malloc(sizeof(float) * (size_t)n), *wf = (float *)malloc(sizeof(float) * (size_t)n);
    float *af = (float *)malloc(sizeof(float) * (size_t)n);
    float *ref = (float *)malloc(sizeof(float) * (size_t)na * ldo), *got = (float *)malloc(sizeof(float) * (size_t)na * ldo);
    for (int i = 0; i < nw; i++) {
        for (int64_t e = 0; e < n; e++) x[e] = rnd_gauss() * 0.05f + (e % 64 < 8 ? 0.03f : 0.0f);
        t->quant(x, W + (size_t)i * ldw, n);
        uint8_t *r = W + (size_t)i * ldw;
        if (i % 3 == 1) {  // random bytes in one block: every bit pattern of scales and levels; sane fp16 d/dmin
            uint8_t *blk = r + t->bs * (size_t)(i % nb);
            for (size_t k = 0; k < t->bs; k++) blk[k] = (uint8_t)rnd_u32();
            for (int k = 0; k < 2; k++) {
                if (k == 1 && t->d_off[1] == 0) break;
                uint16_t h = tbc__f32_to_f16((rnd_unit() - 0.3f) * 0.01f);
                memcpy(blk + t->d_off[k], &h, 2);
            }
        }
        if (i % 4 == 2) memset(r + t->bs * (size_t)((i + 1) % nb), 0, t->bs);  // an all-zero block
        if (i == nw - 1 && nw > 2) {  // a row whose levels are all maximal, against saturating activations
            for (size_t k = 0; k < row; k++) {
                size_t o = k % t->bs;
                int keep = o == t->d_off[0] || o == t->d_off[0] + 1 || (t->d_off[1] && (o == t->d_off[1] || o == t->d_off[1] + 1));
                if (!keep) r[k] = 0xFF;
            }
        }
    }
    for (int j = 0; j < na; j++) {
        for (int64_t e = 0; e < n; e++) x[e] = rnd_gauss();
        if (j % 4 == 1) memset(x, 0, sizeof(float) * (size_t)n);                      // all-zero activation row
        if (j % 4 == 3) for (int64_t e = 0; e < n; e++) x[e] = (e & 1) ? 1.0f : -1.0f;  // |q| = 127 everywhere
        if (j % 4 == 2) memset(x + 256 * (nb - 1), 0, sizeof(float) * 256);           // zero last block
        tbc__quant_q8_K(x, A + (size_t)j * lda, n);
    }
    for (size_t k = 0; k < (size_t)na * ldo; k++) ref[k] = got[k] = -12345.0f;
    t->ref(n, nw, na, W, ldw, A, lda, ref, ldo);

    // reference vs double-precision dot of the dequantized operands
    double worst = 0;
    int ok = 1;
    for (int j = 0; j < na; j++) {
        tbc__dequant_q8_K(A + (size_t)j * lda, af, n);
        for (int i = 0; i < nw; i++) {
            t->dequant(W + (size_t)i * ldw, wf, n);
            double dd = 0;
            for (int64_t e = 0; e < n; e++) dd += (double)wf[e] * af[e];
            double mag = dot_magnitude(t, W + (size_t)i * ldw, (const tbc__block_q8_K *)(const void *)(A + (size_t)j * lda), nb);
            double err = fabs(dd - ref[(size_t)j * ldo + i]), tol = 2e-6 * mag + 1e-30;
            if (!(err <= tol)) ok = 0;
            if (mag > 0 && err / mag > worst) worst = err / mag;
        }
    }
    CHECK(ok, "%s ref vs double (nb %d nw %d na %d): worst relative %.3g", t->name, nb, nw, na, worst);
    for (int p = 0; p < 4 && t->paths[p].name; p++) {
        for (size_t k = 0; k < (size_t)na * ldo; k++) got[k] = -12345.0f;
        t->paths[p].fn(n, nw, na, W, ldw, A, lda, got, ldo);
        ok = 1;
        worst = 0;
        for (int j = 0; j < na; j++) {
            for (int i = 0; i < nw; i++) {
                double mag = dot_magnitude(t, W + (size_t)i * ldw, (const tbc__block_q8_K *)(const void *)(A + (size_t)j * lda), nb);
                double err = fabs((double)got[(size_t)j * ldo + i] - ref[(size_t)j * ldo + i]);
                if (!(err <= 2e-6 * mag + 1e-30)) ok = 0;
                if (mag > 0 && err / mag > worst) worst = err / mag;
            }
            for (size_t i = (size_t)nw; i < ldo; i++) ok &= got[(size_t)j * ldo + i] == -12345.0f;  // gaps untouched
        }
        CHECK(ok, "%s %s vs ref (nb %d nw %d na %d): worst relative %.3g", t->name, t->paths[p].name, nb, nw, na, worst);
    }
    free(W); free(A); free(x); free(wf); free(af); free(ref); free(got);
}

// ---------------------------------------------------------------- real llama.cpp files (optional)
typedef struct gguf_file { uint8_t *data; size_t size; } gguf_file;
static int gguf_load(const char *path, gguf_file *g) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->data = (uint8_t *)malloc((size_t)sz);
    g->size = (size_t)sz;
    int ok = g->data && fread(g->data, 1, (size_t)sz, f) == (size_t)sz;
    fclose(f);
    return ok;
}
// Minimal GGUF v3 walk (trusted test fixture): returns a pointer to the tensor's data and its type and element count.
static const uint8_t *gguf_tensor(const gguf_file *g, const char *name, uint32_t *type, uint64_t *nel) {
    const uint8_t *p = g->data, *end = g->data + g->size;
    uint64_t nt, nkv, align = 32;
    if (g->size < 24 || memcmp(p, "GGUF", 4) != 0) return NULL;
    memcpy(&nt, p + 8, 8); memcpy(&nkv, p + 16, 8);
    p += 24;
    static const int tsize[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    for (uint64_t i = 0; i < nkv && p < end; i++) {
        uint64_t kl; memcpy(&kl, p, 8);
        int is_align = kl == 17 && memcmp(p + 8, "general.alignment", 17) == 0;
        p += 8 + kl;
        uint32_t vt; memcpy(&vt, p, 4); p += 4;
        if (vt == 8) { uint64_t l; memcpy(&l, p, 8); p += 8 + l; }
        else if (vt == 9) {
            uint32_t et; uint64_t cnt; memcpy(&et, p, 4); memcpy(&cnt, p + 4, 8); p += 12;
            if (et == 8) for (uint64_t k = 0; k < cnt; k++) { uint64_t l; memcpy(&l, p, 8); p += 8 + l; }
            else if (et < 13) p += cnt * (uint64_t)tsize[et];
            else return NULL;
        } else if (vt < 13) {
            if (is_align) { uint32_t a; memcpy(&a, p, 4); align = a; }
            p += tsize[vt];
        } else return NULL;
    }
    const uint8_t *found = NULL;
    uint64_t off = 0;
    for (uint64_t i = 0; i < nt && p < end; i++) {
        uint64_t nl; memcpy(&nl, p, 8);
        int match = nl == strlen(name) && memcmp(p + 8, name, nl) == 0;
        p += 8 + nl;
        uint32_t nd; memcpy(&nd, p, 4); p += 4;
        uint64_t ne = 1;
        for (uint32_t k = 0; k < nd; k++) { uint64_t d; memcpy(&d, p, 8); p += 8; ne *= d; }
        uint32_t ty; memcpy(&ty, p, 4); p += 4;
        uint64_t o; memcpy(&o, p, 8); p += 8;
        if (match) { found = p; *type = ty; *nel = ne; off = o; }
    }
    if (!found) return NULL;
    uint64_t base = (uint64_t)(p - g->data);
    base = (base + align - 1) / align * align;
    return g->data + base + off;
}
static void test_fixtures(void) {
    static const char *dir = "../shared/models/fixtures/";
    char path[512];
    gguf_file ff;
    snprintf(path, sizeof path, "%sllama2-spm-f32.gguf", dir);
    if (!gguf_load(path, &ff)) {
        // tests may also run from tests/; try the absolute shared location last
        snprintf(path, sizeof path, "/work/shared/models/fixtures/llama2-spm-f32.gguf");
        if (!gguf_load(path, &ff)) { printf("SKIP: fixture llama2-spm-f32.gguf not found\n"); return; }
        dir = "/work/shared/models/fixtures/";
    }
    static const char *tensors[3] = {"token_embd.weight", "blk.0.ffn_down.weight", "blk.1.attn_q.weight"};
    static const uint32_t ids[5] = {10, 11, 12, 13, 14};
    for (int ti = 0; ti < 5; ti++) {
        const ktype *t = &g_types[ti];
        gguf_file fq;
        snprintf(path, sizeof path, "%sllama2-spm-%s.gguf", dir, ti == 0 ? "q2_k" : ti == 1 ? "q3_k" : ti == 2 ? "q4_k" : ti == 3 ? "q5_k" : "q6_k");
        if (!gguf_load(path, &fq)) { printf("SKIP: fixture %s not found\n", path); continue; }
        for (int k = 0; k < 3; k++) {
            uint32_t tf, tq; uint64_t nf, nq;
            const float *xf = (const float *)(const void *)gguf_tensor(&ff, tensors[k], &tf, &nf);
            const uint8_t *xq = gguf_tensor(&fq, tensors[k], &tq, &nq);
            if (!xf || !xq || tf != 0 || tq != ids[ti] || nf != nq || nq % 256) {
                CHECK(0, "%s: tensor %s missing or of unexpected type", path, tensors[k]);
                continue;
            }
            float *y = (float *)malloc(sizeof(float) * nq), *z = (float *)malloc(sizeof(float) * nq);
            uint8_t *mine = (uint8_t *)malloc(t->bs * (nq / 256));
            t->dequant(xq, y, (int64_t)nq);
            t->quant(xf, mine, (int64_t)nq);
            t->dequant(mine, z, (int64_t)nq);
            double se = 0, sm = 0, sx = 0;
            for (uint64_t e = 0; e < nq; e++) {
                se += (double)(xf[e] - y[e]) * (xf[e] - y[e]);
                sm += (double)(xf[e] - z[e]) * (xf[e] - z[e]);
                sx += (double)xf[e] * xf[e];
            }
            double rel = sqrt(se / sx), relm = sqrt(sm / sx);
            // a layout mistake gives errors near or above 1; llama.cpp's own quantizer sets the scale for ours
            CHECK(rel < t->max_rel_rmse, "%s %s: llama.cpp data dequantizes with relative error %.4f", t->name, tensors[k], rel);
            CHECK(relm < 1.35 * rel + 0.005, "%s %s: our quantizer error %.4f vs llama.cpp %.4f", t->name, tensors[k], relm, rel);
            if (k == 0) printf("  %s %s: llama.cpp file rel err %.4f, our quantizer %.4f\n", t->name, tensors[k], rel, relm);
            free(y); free(z); free(mine);
        }
        free(fq.data);
    }
    free(ff.data);
}

int main(void) {
    printf("paths:");
    for (int p = 0; p < 4 && g_types[0].paths[p].name; p++) printf(" %s", g_types[0].paths[p].name);
    printf("\n");
    test_q8_K_hand();
    for (int ti = 0; ti < 5; ti++) test_quant_error(&g_types[ti]);
    test_quant_helpers();
    for (int ti = 0; ti < 5; ti++) test_quant_edge(&g_types[ti]);
    static const int nbs[3] = {1, 3, 5}, nws[5] = {1, 3, 5, 7, 9}, nas[7] = {1, 3, 5, 7, 8, 9, 13};
    int seed = 0;
    for (int ti = 0; ti < 5; ti++)
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 5; b++)
                for (int c = 0; c < 7; c++) test_gemm(&g_types[ti], nbs[a], nws[b], nas[c], seed++);
    // larger than one prefill chunk of blocks (TBC__K_KB) and a non-multiple of the weight tile
    for (int ti = 0; ti < 5; ti++) test_gemm(&g_types[ti], 19, 11, 21, seed++);
    test_fixtures();
    printf("test_kernels_k: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
