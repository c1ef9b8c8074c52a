// test_kernels: fp16/bf16 conversions, quantize/dequantize, activation quantization, gemm (SIMD against the scalar
// reference and against a float reference), attention vector helpers, public type wrappers.
// Run from the repository root. Checks whatever SIMD path the compiler flags select (printed first).
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

static int g_pass, g_fail;
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (cond) g_pass++;                                                    \
        else {                                                                 \
            if (++g_fail <= 40) {                                              \
                printf("FAIL %s:%d: ", __FILE__, __LINE__);                    \
                printf(__VA_ARGS__);                                           \
                printf("\n");                                                  \
            }                                                                  \
        }                                                                      \
    } while (0)

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd_u32(void) {
    g_rng ^= g_rng << 13; g_rng ^= g_rng >> 7; g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}
static float rnd_unit(void) { return (float)(rnd_u32() & 0xffffff) / 16777216.0f; }
static float rnd_normal(void) {  // Irwin-Hall approximation is plenty for test data
    float s = 0.0f;
    for (int i = 0; i < 12; i++) s += rnd_unit();
    return s - 6.0f;
}
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { printf("out of memory\n"); exit(2); }
    return p;
}

// ------------------------------------------------------------------------------------------------ fp16 / bf16
// Independent float -> half: nearest of the 31744 finite non-negative halves by binary search, ties to even.
static uint16_t f16_search(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    double x = fabs((double)f);
    if (x >= 65520.0) return (uint16_t)(sign | 0x7c00u);
    int lo = 0, hi = 0x7bff;  // largest finite
    while (lo < hi) {  // first half >= x
        int mid = (lo + hi) / 2;
        if ((double)tbc__f16_to_f32_ref((uint16_t)mid) >= x) hi = mid; else lo = mid + 1;
    }
    int best = lo;
    if (lo > 0) {
        double up = (double)tbc__f16_to_f32_ref((uint16_t)lo) - x, dn = x - (double)tbc__f16_to_f32_ref((uint16_t)(lo - 1));
        if (dn < up || (dn == up && ((lo - 1) & 1) == 0)) best = lo - 1;
    }
    return (uint16_t)(sign | best);
}

static void test_f16_bf16(void) {
    int bad = 0;
    // half -> float: every value, SIMD/F16C path against the scalar decoder, and the decoder against arithmetic
    for (uint32_t h = 0; h < 65536; h++) {
        float a = tbc__f16_to_f32((uint16_t)h), b = tbc__f16_to_f32_ref((uint16_t)h);
        uint32_t ua, ub; memcpy(&ua, &a, 4); memcpy(&ub, &b, 4);
        if (ua != ub) { if (bad++ < 5) printf("f16->f32 %04x: %08x vs ref %08x\n", h, ua, ub); }
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        if (e < 31) {
            double v = e ? ldexp(1.0 + m / 1024.0, (int)e - 15) : ldexp((double)m, -24);
            if (h & 0x8000) v = -v;
            if ((double)b != v) { if (bad++ < 5) printf("f16 decode %04x wrong\n", h); }
            if (tbc__f32_to_f16(b) != h || tbc__f32_to_f16_ref(b) != h) { if (bad++ < 5) printf("f16 round trip %04x\n", h); }
        } else if (m) {
            if (!(b != b)) bad++;
        }
    }
    CHECK(bad == 0, "fp16 -> fp32 over all 65536 values: %d mismatches", bad);

    // float -> half: special values, halfway points, random bit patterns
    bad = 0;
    int nan_bad = 0;
    for (int i = 0; i < 600000; i++) {
        uint32_t u;
        if (i < 65536) {  // exact halfway points and neighbours of every half
            float v = tbc__f16_to_f32_ref((uint16_t)i);
            memcpy(&u, &v, 4);
            u += (uint32_t)(i % 3) - 1u + ((i & 4) ? 0x1000u : 0u);
        } else if (i < 200000) {  // around the half range
            u = (rnd_u32() & 0x80000000u) | (0x33000000u + rnd_u32() % (0x47800000u - 0x33000000u));
        } else {
            u = rnd_u32() ^ (rnd_u32() << 16);
        }
        float f; memcpy(&f, &u, 4);
        uint16_t a = tbc__f32_to_f16(f), r = tbc__f32_to_f16_ref(f);
        if (a != r) { if (bad++ < 5) printf("f32->f16 %08x: %04x vs ref %04x\n", u, a, r); continue; }
        if (f != f) {  // NaN: quiet NaN, same sign, top payload bits
            if ((r & 0x7e00u) != 0x7e00u || (r & 0x8000u) != ((u >> 16) & 0x8000u)) nan_bad++;
            continue;
        }
        uint16_t s = f16_search(f);
        if (s != r) { if (bad++ < 5) printf("f32->f16 %08x: %04x vs search %04x\n", u, r, s); }
    }
    CHECK(bad == 0, "fp32 -> fp16 round-to-nearest-even: %d mismatches", bad);
    CHECK(nan_bad == 0, "fp32 -> fp16 NaN stays quiet NaN: %d", nan_bad);
    CHECK(tbc__f32_to_f16(65504.0f) == 0x7bff && tbc__f32_to_f16(65519.99f) == 0x7bff && tbc__f32_to_f16(65520.0f) == 0x7c00,
          "fp16 overflow threshold");
    CHECK(tbc__f32_to_f16(5.9604645e-8f) == 1 && tbc__f32_to_f16(2.9802322e-8f) == 0 && tbc__f32_to_f16(-0.0f) == 0x8000,
          "fp16 smallest subnormal / tie to zero / negative zero");
    CHECK(tbc__f32_to_f16(INFINITY) == 0x7c00 && tbc__f32_to_f16(-INFINITY) == 0xfc00, "fp16 infinities");

    // row conversion is the same as the scalar one
    {
        float x[77]; uint16_t h[77];
        for (int i = 0; i < 77; i++) x[i] = rnd_normal() * 1000.0f;
        tbc__f32_to_f16_row(77, x, h);
        int rb = 0;
        for (int i = 0; i < 77; i++) rb += h[i] != tbc__f32_to_f16_ref(x[i]);
        CHECK(rb == 0, "f32_to_f16_row: %d mismatches", rb);
        float y[77];
        tbc__f16_to_f32_row(77, h, y);
        rb = 0;
        for (int i = 0; i < 77; i++) rb += y[i] != tbc__f16_to_f32_ref(h[i]);
        CHECK(rb == 0, "f16_to_f32_row: %d mismatches", rb);
    }

    // bf16: round to nearest even with double arithmetic as the reference, NaN forced quiet
    bad = 0;
    for (int i = 0; i < 600000; i++) {
        uint32_t u = i < 1000 ? ((uint32_t)i << 15) ^ (i & 1 ? 0x80000000u : 0u) : rnd_u32() ^ (rnd_u32() << 16);
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u;  // exact ties
        float f; memcpy(&f, &u, 4);
        uint16_t b = tbc__f32_to_bf16(f), e;
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            e = (uint16_t)((u >> 16) | 64u);
        } else {
            uint32_t lo = u >> 16;
            double x = fabs((double)f), vlo = fabs((double)tbc__bf16_to_f32((uint16_t)lo));
            uint32_t hi = lo + 1;
            double vhi = (hi & 0x7fffu) >= 0x7f80u ? INFINITY : fabs((double)tbc__bf16_to_f32((uint16_t)hi));
            if ((hi & 0x7fffu) == 0x7f80u) vhi = ldexp(1.0, 128);  // rounding up to infinity happens at 2^128
            e = (uint16_t)lo;
            if (x - vlo > vhi - x || (x - vlo == vhi - x && (lo & 1))) e = (uint16_t)hi;
        }
        if (b != e) { if (bad++ < 5) printf("f32->bf16 %08x: %04x vs %04x\n", u, b, e); }
        if ((u & 0x7fffffffu) <= 0x7f800000u && !((u & 0xffffu) == 0 && tbc__bf16_to_f32(b) == f)) {
            if ((u & 0xffffu) == 0) bad++;  // exactly representable values must survive
        }
    }
    CHECK(bad == 0, "fp32 -> bf16 round-to-nearest-even: %d mismatches", bad);
    CHECK(tbc__f32_to_bf16(1.0f) == 0x3f80 && tbc__bf16_to_f32(0x3f80) == 1.0f && tbc__f32_to_bf16(-2.0f) == 0xc000, "bf16 basics");
}

// ------------------------------------------------------------------------------------------------ Q8 activations
static void test_q8_activation(void) {
    // Hand-computed block: amax 127 makes 127/amax exactly 1, so x*id is x and ties are visible.
    float x[64];
    memset(x, 0, sizeof x);
    const float v[9] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -127.0f};
    const int q[9] = {127, 0, 2, 2, 0, -2, -2, 126, -127};
    for (int i = 0; i < 9; i++) x[i] = v[i];
    // second block all zero
    uint8_t b0[68], b1[72];
    tbc__quantize(TBC_TYPE_Q8_0, x, b0, 64);
    tbc__quantize(TBC_TYPE_Q8_1, x, b1, 64);
    int ok0 = tbc__ld16(b0) == 0x3c00 && tbc__ld16(b0 + 34) == 0;
    int ok1 = tbc__ld16(b1) == 0x3c00 && tbc__ld16(b1 + 2) == tbc__f32_to_f16_ref(126.0f) && tbc__ld16(b1 + 36) == 0 && tbc__ld16(b1 + 38) == 0;
    for (int i = 0; i < 32; i++) {
        int e = i < 9 ? q[i] : 0;
        ok0 &= (int8_t)b0[2 + i] == e && b0[36 + i] == 0;
        ok1 &= (int8_t)b1[4 + i] == e && b1[40 + i] == 0;
    }
    CHECK(ok0, "Q8_0 hand case: round half to even, d = fp16(amax/127), zero block");
    CHECK(ok1, "Q8_1 hand case: s = fp16(d * sum q) = 126");

    // amax = 3: id = 127/3 in float (not 1/d), q = round-half-even(x * id): 1 -> 42.33 -> 42, -2 -> -84.67 -> -85,
    // 0.0354330726 * id == 1.5 exactly -> 2, 0.0590551198 * id == 2.5 exactly -> 2 (ties to even, not away from 0)
    memset(x, 0, sizeof x);
    x[0] = 1.0f; x[1] = -2.0f; x[2] = 3.0f; x[3] = 0.0354330726f; x[4] = -0.0590551198f;
    {
        const float id = 127.0f / 3.0f;
        CHECK(x[3] * id == 1.5f && x[4] * id == -2.5f, "hand case inputs are exact ties");
    }
    tbc__quantize(TBC_TYPE_Q8_0, x, b0, 32);
    CHECK((int8_t)b0[2] == 42 && (int8_t)b0[3] == -85 && (int8_t)b0[4] == 127 && (int8_t)b0[5] == 2 && (int8_t)b0[6] == -2 &&
          tbc__ld16(b0) == tbc__f32_to_f16_ref(3.0f / 127.0f), "Q8_0 amax=3 case: %d %d %d %d %d", (int8_t)b0[2],
          (int8_t)b0[3], (int8_t)b0[4], (int8_t)b0[5], (int8_t)b0[6]);

    // SIMD quantizer bit-exact with the scalar description, on random data with ties
    int bad = 0;
    const int n = 32 * 257;
    float *xs = (float *)xmalloc(n * sizeof(float));
    uint8_t *r0 = (uint8_t *)xmalloc((size_t)n / 32 * 36), *s0 = (uint8_t *)xmalloc((size_t)n / 32 * 36);
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < n; i++) {
            xs[i] = rnd_normal() * (rep == 3 ? 1e-30f : 1.0f);
            if (rep == 1 && (i & 3) == 0) xs[i] = (float)(int)(rnd_normal() * 40.0f) + 0.5f;  // ties after scaling
            if (rep == 1 && i % 32 == 5) xs[i] = 127.0f;
            if (rep == 2 && (i / 32) % 3 == 0) xs[i] = 0.0f;
        }
        for (int w = 0; w < 2; w++) {
            size_t sz = (size_t)n / 32 * (w ? 36 : 34);
            tbc__quant_q8_01_ref(xs, r0, n, w);
            tbc__quantize(w ? TBC_TYPE_Q8_1 : TBC_TYPE_Q8_0, xs, s0, n);
            bad += memcmp(r0, s0, sz) != 0;
        }
    }
    CHECK(bad == 0, "Q8_0/Q8_1 activation quantizer: SIMD equals scalar description (%d mismatching runs)", bad);
    free(xs); free(r0); free(s0);
}

// ------------------------------------------------------------------------------------------------ round trips
static void test_round_trip(void) {
    const tbc_type types[] = {TBC_TYPE_F32, TBC_TYPE_F16, TBC_TYPE_BF16, TBC_TYPE_Q4_0, TBC_TYPE_Q4_1,
                              TBC_TYPE_Q5_0, TBC_TYPE_Q5_1, TBC_TYPE_Q8_0, TBC_TYPE_Q8_1};
    // max |x - x'| per block, as a fraction of the block's range (max - min) or amax, with fp16 rounding slack
    const double bound[] = {0.0, 1.0 / 2048, 1.0 / 256, 1.0 / 8 + 0.002, 1.0 / 30 + 0.002, 1.0 / 16 + 0.002,
                            1.0 / 62 + 0.002, 1.0 / 254 + 0.002, 1.0 / 254 + 0.002};
    const int n = 32 * 64;
    float *x = (float *)xmalloc(n * sizeof(float)), *y = (float *)xmalloc(n * sizeof(float));
    uint8_t *q = (uint8_t *)xmalloc((size_t)n * 4);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        tbc_type t = types[k];
        for (int i = 0; i < n; i++) x[i] = rnd_normal() * (i < 64 ? 0.0f : i < 96 ? 1e3f : 1.0f) + (i / 32 == 5 ? 7.0f : 0.0f);
        CHECK(tbc_quantize_row(t, x, q, n) == TBC_OK, "quantize %s", tbc_type_name(t));
        CHECK(tbc_dequantize_row(t, q, y, n) == TBC_OK, "dequantize %s", tbc_type_name(t));
        double worst = 0.0;
        for (int b = 0; b < n / 32; b++) {
            float lo = x[b * 32], hi = x[b * 32], amax = 0.0f;
            for (int j = 0; j < 32; j++) {
                float v = x[b * 32 + j];
                lo = v < lo ? v : lo; hi = v > hi ? v : hi; amax = fabsf(v) > amax ? fabsf(v) : amax;
            }
            const int sym = t == TBC_TYPE_Q4_0 || t == TBC_TYPE_Q5_0 || t == TBC_TYPE_Q8_0 || t == TBC_TYPE_Q8_1;
            double scale = t == TBC_TYPE_F16 || t == TBC_TYPE_BF16 || t == TBC_TYPE_F32 ? 0.0 : sym ? (double)amax : (double)(hi - lo) + 1e-3 * fabs((double)lo);
            for (int j = 0; j < 32; j++) {
                double e = fabs((double)x[b * 32 + j] - (double)y[b * 32 + j]);
                double lim = scale > 0 ? bound[k] * scale : bound[k] * fabs((double)x[b * 32 + j]);
                if (e > lim + 1e-30) worst = e - lim > worst ? e - lim : worst;
            }
        }
        CHECK(worst == 0.0, "%s round trip error over bound by %g", tbc_type_name(t), worst);
    }
    free(x); free(y); free(q);
}

// ------------------------------------------------------------------------------------------------ gemm
static double max_abs_row(const float *v, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fabs((double)v[i]) > m ? fabs((double)v[i]) : m;
    return m;
}

static void test_gemm_type(tbc_type t) {
    const tbc_type at = tbc__vec_dot_type(t);
    const int blk = tbc__type_block(t);
    const int nbs[] = {1, 3, 5, 7, 35};  // 35 blocks: more than one K-block of the packed prefill product, odd
    const int fns[] = {1, 7, 16, 17, 33, 100, 161};
    const int dims[] = {1, 3, 5, 7, 17, 70};  // 70 activation rows: two chunks
    const int is_k = blk == 256;
    int nsize = blk == 1 ? 7 : (is_k ? 2 : 5);
    int fail_simd = 0, fail_float = 0, cases = 0, packed_cases = 0, fail_packed = 0;
    double worst_simd = 0, worst_float = 0;
    for (int si = 0; si < nsize; si++) {
        const int64_t n = blk == 1 ? fns[si] : (int64_t)nbs[si] * blk;
        for (int wi = 0; wi < 6; wi++) for (int ai = 0; ai < 6; ai++) {
            const int64_t nw = dims[wi], na = dims[(ai + wi) % 6];
            const size_t rbw = tbc__row_bytes(t, n), rba = tbc__row_bytes(at, n);
            // strides larger than a row; odd extra bytes for our own types to test unaligned rows
            const size_t ldw = rbw + (is_k ? 4 : 2 * (size_t)wi + 1 + (wi & 1 ? 0 : 4)), lda = rba + (is_k ? 8 : 3 + 2 * (size_t)ai);
            const size_t ldo = (size_t)nw + (size_t)ai;
            uint8_t *W = (uint8_t *)xmalloc(ldw * (size_t)nw + 64), *A = (uint8_t *)xmalloc(lda * (size_t)na + 64);
            float *xw = (float *)xmalloc((size_t)(n * nw) * sizeof(float)), *xa = (float *)xmalloc((size_t)(n * na) * sizeof(float));
            float *o1 = (float *)xmalloc(ldo * (size_t)na * sizeof(float)), *o2 = (float *)xmalloc(ldo * (size_t)na * sizeof(float));
            float *dw = (float *)xmalloc((size_t)n * sizeof(float)), *da = (float *)xmalloc((size_t)n * sizeof(float));
            memset(W, 0xAB, ldw * (size_t)nw + 64);
            memset(A, 0xCD, lda * (size_t)na + 64);
            for (int64_t i = 0; i < n * nw; i++) xw[i] = rnd_normal() * 0.7f + (i % 97 == 0 ? 0.3f : 0.0f);
            for (int64_t i = 0; i < n * na; i++) xa[i] = rnd_normal() * 2.0f;
            // zero blocks in the weights, a zero activation row
            const int64_t zb = blk > 1 ? blk : 8;  // second block of every other weight row is all zero
            if (n >= 2 * zb) for (int64_t r = 0; r < nw; r += 2) memset(xw + r * n + zb, 0, (size_t)zb * sizeof(float));
            if (na >= 3) memset(xa + n, 0, (size_t)n * sizeof(float));
            for (int64_t r = 0; r < nw; r++) tbc__quantize(t, xw + r * n, W + (size_t)r * ldw, n);
            for (int64_t r = 0; r < na; r++) tbc__quantize(at, xa + r * n, A + (size_t)r * lda, n);
            for (size_t i = 0; i < ldo * (size_t)na; i++) o1[i] = o2[i] = -12345.0f;
            tbc__gemm_ref(t, n, nw, na, W, ldw, A, lda, o1, ldo);
            tbc__gemm(t, n, nw, na, W, ldw, A, lda, o2, ldo);
            cases++;
            if (tbc__act_packed(t)) {  // activations packed once per row: the same products, bit for bit
                const size_t ldp = tbc__act_packed_bytes(n) + 4 * (size_t)ai;
                uint8_t *P = (uint8_t *)xmalloc(ldp * (size_t)na + 64);
                float *o3 = (float *)xmalloc(ldo * (size_t)na * sizeof(float));
                for (int64_t r = 0; r < na; r++) tbc__pack_act_row(t, xa + r * n, P + (size_t)r * ldp, n);
                for (size_t i = 0; i < ldo * (size_t)na; i++) o3[i] = -12345.0f;
                tbc__gemm_packed(t, n, nw, na, W, ldw, P, ldp, o3, ldo);
                packed_cases++;
                if (memcmp(o2, o3, ldo * (size_t)na * sizeof(float)) != 0) fail_packed++;
                free(P);
                free(o3);
            }
            for (int64_t j = 0; j < na; j++) {
                tbc__dequantize(at, A + (size_t)j * lda, da, n);
                for (int64_t i = 0; i < nw; i++) {
                    tbc__dequantize(t, W + (size_t)i * ldw, dw, n);
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < n; k++) { ref += (double)dw[k] * (double)da[k]; mag += fabs((double)dw[k] * (double)da[k]); }
                    const double a = o1[(size_t)j * ldo + (size_t)i], b = o2[(size_t)j * ldo + (size_t)i];
                    // SIMD vs scalar reference: same integer dots, only the float summation order differs
                    const double tol_simd = 2e-6 * mag + 1e-6 * (double)n * 1e-6 + 1e-30;
                    // vs float reference: also the fp16-rounded s of Q8_1 (m * s term) differs
                    // (per block |m_w| * |s_a| * 2^-11 with |s_a| <= 32 max|a|)
                    const double tol_float = 1e-5 * mag + 1e-30 +
                        (at == TBC_TYPE_Q8_1 ? 0.016 * max_abs_row(dw, n) * max_abs_row(da, n) * (double)n / 32.0 : 0.0);
                    const double es = fabs(a - b), ef = fabs(b - ref);
                    if (!(es <= tol_simd)) { fail_simd++; if (es / (mag + 1e-30) > worst_simd) worst_simd = es / (mag + 1e-30); }
                    if (!(ef <= tol_float)) { fail_float++; if (ef / (mag + 1e-30) > worst_float) worst_float = ef / (mag + 1e-30); }
                }
                for (size_t i = (size_t)nw; i < ldo; i++) {  // padding between output rows untouched
                    if (o2[(size_t)j * ldo + i] != -12345.0f) fail_simd++;
                }
            }
            free(W); free(A); free(xw); free(xa); free(o1); free(o2); free(dw); free(da);
        }
    }
    CHECK(fail_simd == 0, "gemm %s (%s) vs scalar reference: %d of %d cases x outputs beyond 2e-6 relative (worst %g)",
          tbc_type_name(t), TBC__SIMD_NAME, fail_simd, cases, worst_simd);
    if (packed_cases)
        CHECK(fail_packed == 0, "gemm %s with packed activations (%s) equals it with rows of %s, bit for bit: %d of %d differ",
              tbc_type_name(t), TBC__SIMD_NAME, tbc_type_name(at), fail_packed, packed_cases);
    CHECK(fail_float == 0, "gemm %s vs float reference (dequantized W . dequantized A in double): %d beyond tolerance (worst %g)",
          tbc_type_name(t), fail_float, worst_float);
}

// ------------------------------------------------------------------------------------------------ vector helpers
static void test_vectors(void) {
    float a[300], b[300], y[300], y2[300];
    uint16_t h[300];
    int bad = 0;
    for (int n = 0; n <= 300; n += (n < 40 ? 1 : 37)) {
        for (int i = 0; i < n; i++) { a[i] = rnd_normal(); b[i] = rnd_normal(); h[i] = tbc__f32_to_f16(rnd_normal()); y[i] = y2[i] = rnd_normal(); }
        double r = 0, m = 0, rh = 0, mh = 0;
        for (int i = 0; i < n; i++) {
            r += (double)a[i] * b[i]; m += fabs((double)a[i] * b[i]);
            rh += (double)tbc__f16_to_f32_ref(h[i]) * b[i]; mh += fabs((double)tbc__f16_to_f32_ref(h[i]) * b[i]);
        }
        bad += !(fabs(tbc__dot_f32(n, a, b) - r) <= 1e-6 * m + 1e-30);
        bad += !(fabs(tbc__dot_f16_f32(n, h, b) - rh) <= 1e-6 * mh + 1e-30);
        tbc__axpy_f32(n, y, 0.37f, a);
        for (int i = 0; i < n; i++) bad += !(fabs((double)y[i] - ((double)y2[i] + 0.37 * a[i])) <= 1e-6 * (fabs((double)y2[i]) + fabs(a[i])));
        for (int i = 0; i < n; i++) y[i] = y2[i];
        tbc__axpy_f16(n, y, -1.5f, h);
        for (int i = 0; i < n; i++)
            bad += !(fabs((double)y[i] - ((double)y2[i] - 1.5 * tbc__f16_to_f32_ref(h[i]))) <= 1e-6 * (fabs((double)y2[i]) + fabs(1.5 * tbc__f16_to_f32_ref(h[i]))));
    }
    CHECK(bad == 0, "dot_f32 / dot_f16_f32 / axpy_f32 / axpy_f16 against double (%d bad)", bad);
}

// ------------------------------------------------------------------------------------------------ public wrappers
static void test_public(void) {
    float x[64] = {0};
    uint8_t q[512];
    CHECK(strcmp(tbc_type_name(TBC_TYPE_Q4_0), "Q4_0") == 0 && strcmp(tbc_type_name(TBC_TYPE_BF16), "BF16") == 0 &&
          strcmp(tbc_type_name(TBC_TYPE_Q6_K), "Q6_K") == 0, "type names");
    CHECK(tbc_type_name((tbc_type)4) == NULL && tbc_type_name((tbc_type)31) == NULL && tbc_type_name((tbc_type)-1) == NULL &&
          tbc_type_name((tbc_type)20) == NULL, "unknown type names are NULL");
    CHECK(tbc_type_block_size(TBC_TYPE_Q8_0) == 32 && tbc_type_block_bytes(TBC_TYPE_Q8_0) == 34 &&
          tbc_type_block_size(TBC_TYPE_Q4_K) == 256 && tbc_type_block_bytes(TBC_TYPE_Q4_K) == 144 &&
          tbc_type_block_bytes(TBC_TYPE_Q8_K) == 292 && tbc_type_block_size(TBC_TYPE_F16) == 1 &&
          tbc_type_block_bytes(TBC_TYPE_BF16) == 2 && tbc_type_block_size((tbc_type)5) == 0 &&
          tbc_type_block_bytes((tbc_type)99) == 0, "block sizes and bytes");
    CHECK(tbc__vec_dot_type(TBC_TYPE_Q4_1) == TBC_TYPE_Q8_1 && tbc__vec_dot_type(TBC_TYPE_Q5_0) == TBC_TYPE_Q8_0 &&
          tbc__vec_dot_type(TBC_TYPE_Q3_K) == TBC_TYPE_Q8_K && tbc__vec_dot_type(TBC_TYPE_BF16) == TBC_TYPE_BF16 &&
          tbc__vec_dot_type(TBC_TYPE_F16) == TBC_TYPE_F16, "vec_dot types");
    CHECK(tbc__row_bytes(TBC_TYPE_Q4_0, 4096) == 2304 && tbc__row_bytes(TBC_TYPE_F32, 7) == 28 &&
          tbc__row_bytes(TBC_TYPE_Q6_K, 512) == 420, "row bytes");
    CHECK(tbc_quantize_row((tbc_type)4, x, q, 32) == TBC_ERR_TENSOR_TYPE, "quantize unknown type");
    CHECK(tbc_dequantize_row((tbc_type)77, q, x, 32) == TBC_ERR_TENSOR_TYPE, "dequantize unknown type");
    CHECK(tbc_quantize_row(TBC_TYPE_Q4_0, x, q, 33) == TBC_ERR_INVALID_ARGUMENT, "quantize n not a block multiple");
    CHECK(tbc_dequantize_row(TBC_TYPE_Q8_0, q, x, 48) == TBC_ERR_INVALID_ARGUMENT, "dequantize n not a block multiple");
    CHECK(tbc_quantize_row(TBC_TYPE_Q8_0, NULL, q, 32) == TBC_ERR_INVALID_ARGUMENT, "quantize NULL src");
    CHECK(tbc_dequantize_row(TBC_TYPE_Q8_0, q, NULL, 32) == TBC_ERR_INVALID_ARGUMENT, "dequantize NULL dst");
    CHECK(tbc_quantize_row(TBC_TYPE_Q8_0, x, q, -32) == TBC_ERR_INVALID_ARGUMENT, "negative n");
    CHECK(tbc_quantize_row(TBC_TYPE_F16, x, q, 3) == TBC_OK && tbc_dequantize_row(TBC_TYPE_F16, q, x, 3) == TBC_OK, "F16 any n");
    // llama.cpp layout: Q4_0 block {fp16 d, nibbles}: d=1, element 0 = 0x3 - 8, element 16 = 0xA - 8
    memset(q, 0x88, 18);
    q[0] = 0x00; q[1] = 0x3c; q[2] = 0xA3;
    CHECK(tbc_dequantize_row(TBC_TYPE_Q4_0, q, x, 32) == TBC_OK && x[0] == -5.0f && x[16] == 2.0f && x[1] == 0.0f, "Q4_0 layout");
    // Q5_0: qh bit 0 set -> element 0 gets +16; bit 16 -> element 16
    memset(q, 0, 22);
    q[0] = 0x00; q[1] = 0x3c; q[2] = 0x01; q[4] = 0x01; q[6] = 0x21;
    CHECK(tbc_dequantize_row(TBC_TYPE_Q5_0, q, x, 32) == TBC_OK && x[0] == 1.0f && x[16] == 2.0f && x[1] == -16.0f, "Q5_0 layout");
}

int main(void) {
    printf("test_kernels: SIMD path %s\n", TBC__SIMD_NAME);
    test_f16_bf16();
    test_q8_activation();
    test_round_trip();
    {
        const tbc_type ts[] = {TBC_TYPE_F32, TBC_TYPE_F16, TBC_TYPE_BF16, TBC_TYPE_Q4_0, TBC_TYPE_Q4_1,
                               TBC_TYPE_Q5_0, TBC_TYPE_Q5_1, TBC_TYPE_Q8_0};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) test_gemm_type(ts[i]);
        const tbc_type ks[] = {TBC_TYPE_Q2_K, TBC_TYPE_Q3_K, TBC_TYPE_Q4_K, TBC_TYPE_Q5_K, TBC_TYPE_Q6_K};
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) test_gemm_type(ks[i]);
    }
    test_vectors();
    test_public();
    printf("test_kernels: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
