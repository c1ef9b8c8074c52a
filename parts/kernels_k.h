// >>k-quants
// K-quant weight types Q2_K..Q6_K and the Q8_K activation type, as llama.cpp writes them in GGUF files.
// Every type has 256 values per super-block. A dot product converts the activation row to Q8_K first (bit-exact with
// ggml on x86), then multiplies integers per sub-block and applies the float scales once per block, as ggml does.
//
// Internally every weight block is seen through one model, which all SIMD paths share:
//   w_e = d * s[e/16] * (u_e - off) - dmin * m[e/16]        e = 0..255, u_e unsigned (0..63)
// with per-16 scales s (Q4_K/Q5_K repeat each per-32 scale), mins m (Q2_K/Q4_K/Q5_K) and an offset off (Q3_K 4,
// Q6_K 32). Against a Q8_K block (da, a_e, bsums b_k = sum of a over the k-th 16 values):
//   dot = da*d*(sum_k s_k*sum_e u_e*a_e - off*sum_k s_k*b_k) - da*dmin*sum_k m_k*b_k
// The integer part is exact (it fits int32 for every type); only the last two products are rounded.
// Rows may start at any 2-byte (weights) or 4-byte (Q8_K) aligned address.

#define TBC__QK_K 256

typedef struct tbc__block_q2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } tbc__block_q2_K;
typedef struct tbc__block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } tbc__block_q3_K;
typedef struct tbc__block_q4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } tbc__block_q4_K;
typedef struct tbc__block_q5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } tbc__block_q5_K;
typedef struct tbc__block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } tbc__block_q6_K;
typedef struct tbc__block_q8_K { float d; int8_t qs[256]; int16_t bsums[16]; } tbc__block_q8_K;

// Compile-time size checks (a negative array size fails the build); they match ggml-common.h.
typedef char tbc__check_q2_K[sizeof(tbc__block_q2_K) == 84 ? 1 : -1];
typedef char tbc__check_q3_K[sizeof(tbc__block_q3_K) == 110 ? 1 : -1];
typedef char tbc__check_q4_K[sizeof(tbc__block_q4_K) == 144 ? 1 : -1];
typedef char tbc__check_q5_K[sizeof(tbc__block_q5_K) == 176 ? 1 : -1];
typedef char tbc__check_q6_K[sizeof(tbc__block_q6_K) == 210 ? 1 : -1];
typedef char tbc__check_q8_K[sizeof(tbc__block_q8_K) == 292 ? 1 : -1];

#if defined(__GNUC__) || defined(__clang__)
#define TBC__K_INLINE static inline __attribute__((always_inline))
#define TBC__K_ALIGN64 __attribute__((aligned(64)))
#define TBC__K_FN static __attribute__((unused)) /* not every path or helper is called in every build */
#else
#define TBC__K_INLINE static inline
#define TBC__K_ALIGN64
#define TBC__K_FN static
#endif

// Which SIMD paths are compiled. AVX-512 implies the AVX2 path is compiled too (so tests can compare both).
#if (defined(__x86_64__) || defined(_M_X64) || defined(__i386__)) && defined(__AVX2__) && defined(__FMA__)
#define TBC__K_HAVE_AVX2 1
#include <immintrin.h>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define TBC__K_HAVE_AVX512 1
#endif
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define TBC__K_HAVE_NEON 1
#include <arm_neon.h>
#endif

TBC__K_FN uint32_t tbc__k_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
TBC__K_FN void tbc__k_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
TBC__K_FN float tbc__k_h2f(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return tbc__f16_to_f32(h);
#endif
}

// 12-byte Q4_K/Q5_K scale field -> out[0..7] scales, out[8..15] mins (6 bits each). The first four of each are the low
// 6 bits of bytes 0-3 / 4-7; the last four take their low nibble from bytes 8-11 (scale: low half, min: high half)
// and their top two bits from the spare bits 6-7 of bytes 0-3 (scales) / 4-7 (mins).
TBC__K_FN void tbc__k_scales_q45(const uint8_t *s12, uint8_t *out) {
    uint32_t w0 = tbc__k_rd32(s12), w1 = tbc__k_rd32(s12 + 4), w2 = tbc__k_rd32(s12 + 8);
    tbc__k_wr32(out + 0, w0 & 0x3f3f3f3fu);
    tbc__k_wr32(out + 4, (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4));
    tbc__k_wr32(out + 8, w1 & 0x3f3f3f3fu);
    tbc__k_wr32(out + 12, ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4));
}
TBC__K_FN void tbc__k_pack_scales_q45(const uint8_t *sc, const uint8_t *mn, uint8_t *s12) {
    for (int j = 0; j < 4; j++) {
        s12[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s12[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
        s12[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}
// 12-byte Q3_K scale field -> 16 signed scales (-32..31). Scale i: low nibble from byte i (i<8) or the high nibble of
// byte i-8; bits 4-5 from byte 8+i%4 at bit 2*(i/4).
TBC__K_FN void tbc__k_scales_q3(const uint8_t *s12, int8_t *out) {
    uint32_t w0 = tbc__k_rd32(s12), w1 = tbc__k_rd32(s12 + 4), w2 = tbc__k_rd32(s12 + 8);
    uint32_t v[4];
    v[0] = (w0 & 0x0f0f0f0fu) | ((w2 & 0x03030303u) << 4);
    v[1] = (w1 & 0x0f0f0f0fu) | (((w2 >> 2) & 0x03030303u) << 4);
    v[2] = ((w0 >> 4) & 0x0f0f0f0fu) | (((w2 >> 4) & 0x03030303u) << 4);
    v[3] = ((w1 >> 4) & 0x0f0f0f0fu) | (((w2 >> 6) & 0x03030303u) << 4);
    uint8_t b[16];
    memcpy(b, v, 16);
    for (int i = 0; i < 16; i++) out[i] = (int8_t)(b[i] - 32);
}
TBC__K_FN void tbc__k_pack_scales_q3(const uint8_t *v /* 16 values 0..63 */, uint8_t *s12) {
    memset(s12, 0, 12);
    for (int i = 0; i < 16; i++) {
        if (i < 8) s12[i] |= (uint8_t)(v[i] & 15);
        else s12[i - 8] |= (uint8_t)((v[i] & 15) << 4);
        s12[8 + i % 4] |= (uint8_t)((v[i] >> 4) << (2 * (i / 4)));
    }
}

// ---- scalar decode of one block into the shared model (used by dequantize and the reference dot products)
typedef struct tbc__k_dec {
    uint8_t u[256];
    int s[16], m[16];
    int off;
    float d, dmin;
} tbc__k_dec;

TBC__K_FN void tbc__k_decode_q2_K(const void *blk, tbc__k_dec *o) {
    const tbc__block_q2_K *x = (const tbc__block_q2_K *)blk;
    for (int k = 0; k < 16; k++) { o->s[k] = x->scales[k] & 15; o->m[k] = x->scales[k] >> 4; }
    // element 128n + 32j + l: bits 2j..2j+1 of qs[32n + l]
    for (int e = 0; e < 256; e++) o->u[e] = (uint8_t)((x->qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3);
    o->off = 0; o->d = tbc__k_h2f(x->d); o->dmin = tbc__k_h2f(x->dmin);
}
TBC__K_FN void tbc__k_decode_q3_K(const void *blk, tbc__k_dec *o) {
    const tbc__block_q3_K *x = (const tbc__block_q3_K *)blk;
    int8_t sc[16];
    tbc__k_scales_q3(x->scales, sc);
    for (int k = 0; k < 16; k++) { o->s[k] = sc[k]; o->m[k] = 0; }
    // element 128n + 32j + l: low bits as Q2_K, bit 2 from hmask[l] bit 4n+j (set means +4, i.e. "not minus 4")
    for (int e = 0; e < 256; e++) {
        int n = e / 128, j = (e / 32) % 4, l = e % 32;
        int lo = (x->qs[32 * n + l] >> (2 * j)) & 3, hi = (x->hmask[l] >> (4 * n + j)) & 1;
        o->u[e] = (uint8_t)(lo | (hi << 2));
    }
    o->off = 4; o->d = tbc__k_h2f(x->d); o->dmin = 0.0f;
}
TBC__K_FN void tbc__k_decode_q4_K(const void *blk, tbc__k_dec *o) {
    const tbc__block_q4_K *x = (const tbc__block_q4_K *)blk;
    uint8_t sm[16];
    tbc__k_scales_q45(x->scales, sm);
    for (int k = 0; k < 16; k++) { o->s[k] = sm[k / 2]; o->m[k] = sm[8 + k / 2]; }
    // element 64j + 32h + l: nibble h of qs[32j + l]
    for (int e = 0; e < 256; e++) o->u[e] = (uint8_t)((x->qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15);
    o->off = 0; o->d = tbc__k_h2f(x->d); o->dmin = tbc__k_h2f(x->dmin);
}
TBC__K_FN void tbc__k_decode_q5_K(const void *blk, tbc__k_dec *o) {
    const tbc__block_q5_K *x = (const tbc__block_q5_K *)blk;
    uint8_t sm[16];
    tbc__k_scales_q45(x->scales, sm);
    for (int k = 0; k < 16; k++) { o->s[k] = sm[k / 2]; o->m[k] = sm[8 + k / 2]; }
    // as Q4_K, plus bit 4 from qh[l] bit (e/32)
    for (int e = 0; e < 256; e++) {
        int lo = (x->qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 15, hi = (x->qh[e % 32] >> (e / 32)) & 1;
        o->u[e] = (uint8_t)(lo | (hi << 4));
    }
    o->off = 0; o->d = tbc__k_h2f(x->d); o->dmin = tbc__k_h2f(x->dmin);
}
TBC__K_FN void tbc__k_decode_q6_K(const void *blk, tbc__k_dec *o) {
    const tbc__block_q6_K *x = (const tbc__block_q6_K *)blk;
    for (int k = 0; k < 16; k++) { o->s[k] = x->scales[k]; o->m[k] = 0; }
    // element 128n + 32q + l: nibble (q>=2) of ql[64n + 32(q&1) + l], bits 4-5 from qh[32n + l] bits 2q..2q+1
    for (int e = 0; e < 256; e++) {
        int n = e / 128, q = (e / 32) % 4, l = e % 32;
        int lo = (x->ql[64 * n + 32 * (q & 1) + l] >> (4 * (q >> 1))) & 15, hi = (x->qh[32 * n + l] >> (2 * q)) & 3;
        o->u[e] = (uint8_t)(lo | (hi << 4));
    }
    o->off = 32; o->d = tbc__k_h2f(x->d); o->dmin = 0.0f;
}

typedef void (*tbc__k_decode_fn)(const void *blk, tbc__k_dec *o);

TBC__K_FN void tbc__k_dequant(const void *src, float *dst, int64_t n, size_t bs, tbc__k_decode_fn dec) {
    tbc__k_dec b;
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        dec((const uint8_t *)src + (size_t)i * bs, &b);
        for (int e = 0; e < 256; e++)
            dst[i * 256 + e] = b.d * (float)b.s[e / 16] * (float)((int)b.u[e] - b.off) - b.dmin * (float)b.m[e / 16];
    }
}
TBC__K_FN void tbc__dequant_q2_K(const void *src, float *dst, int64_t n) { tbc__k_dequant(src, dst, n, 84, tbc__k_decode_q2_K); }
TBC__K_FN void tbc__dequant_q3_K(const void *src, float *dst, int64_t n) { tbc__k_dequant(src, dst, n, 110, tbc__k_decode_q3_K); }
TBC__K_FN void tbc__dequant_q4_K(const void *src, float *dst, int64_t n) { tbc__k_dequant(src, dst, n, 144, tbc__k_decode_q4_K); }
TBC__K_FN void tbc__dequant_q5_K(const void *src, float *dst, int64_t n) { tbc__k_dequant(src, dst, n, 176, tbc__k_decode_q5_K); }
TBC__K_FN void tbc__dequant_q6_K(const void *src, float *dst, int64_t n) { tbc__k_dequant(src, dst, n, 210, tbc__k_decode_q6_K); }

TBC__K_FN void tbc__dequant_q8_K(const void *src, float *dst, int64_t n) {
    const tbc__block_q8_K *x = (const tbc__block_q8_K *)src;
    for (int64_t i = 0; i < n / TBC__QK_K; i++)
        for (int e = 0; e < 256; e++) dst[i * 256 + e] = x[i].d * (float)x[i].qs[e];
}

// ---- Q8_K activation quantization (bit-exact with ggml's quantize_row_q8_K_ref, which x86 uses)
// max = the first value with the largest |x|; iscale = -127/max; q = min(127, round-half-even(iscale*x)); d = 1/iscale.
// rintf rounds half to even in the default rounding mode, as ggml's magic-number trick does (and cannot be fused).
TBC__K_FN void tbc__quant_q8_K_ref(const float *src, void *dst, int64_t n) {
    tbc__block_q8_K *y = (tbc__block_q8_K *)dst;
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        const float *x = src + i * 256;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 256; j++) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0.0f) { memset(&y[i], 0, sizeof y[i]); continue; }
        float iscale = -127.0f / max;
        for (int j = 0; j < 256; j++) {
            float v = rintf(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127.0f ? 127 : (int)v);
        }
        for (int k = 0; k < 16; k++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[i].qs[16 * k + j];
            y[i].bsums[k] = (int16_t)s;
        }
        y[i].d = 1.0f / iscale;
    }
}

// ---- weight quantizers (used to write test models and by tbc_quantize_row, never in the forward pass)
// Every sub-block tries TBC__K_NC candidate scales around its range estimate (as llama.cpp's make_qkx2_quants and
// make_qx_quants do) and keeps the least-squares best. The search runs across candidates, one per SIMD lane, so no
// float sum is reassociated and every path computes the same sums (the scalar one too, unless FMA-contracted).
#if defined(TBC__K_HAVE_AVX512) && defined(__GNUC__) && !defined(__clang__) && defined(__cplusplus)
// g++ 12 flags the _mm512_undefined_* inside its own intrinsics (GCC PR 105593), here and where they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define TBC__K_NC 16

// For each candidate inverse scale is[j] and each x in x[0..n): level t = clamp(is[j]*(x - lo) + off, 0, top),
// l = (int)t - sub; adds l, l*l and l*x to sl[j], sll[j], slx[j]. With off = sub + 0.5 truncation rounds to nearest;
// the clamp comes first, so NaN goes to an end of the range and no out-of-range float is converted.
TBC__K_FN void tbc__k_cand_sums_ref(const float *x, int n, float lo, float off, float top, float sub, const float *is,
                                 float *sl, float *sll, float *slx) {
    for (int i = 0; i < n; i++) {
        const float xi = x[i], xs = xi - lo;
        for (int j = 0; j < TBC__K_NC; j++) {
            float t = is[j] * xs;
            t = t + off;  // separate statements: no FMA contraction, as the SIMD paths
            t = t > 0.0f ? t : 0.0f;
            t = t < top ? t : top;
            const float l = (float)(int)t - sub;
            sl[j] += l;
            float l2 = l * l, lx = l * xi;
            sll[j] += l2;
            slx[j] += lx;
        }
    }
}
#if defined(TBC__K_HAVE_AVX2)
TBC__K_FN void tbc__k_cand_sums_avx2(const float *x, int n, float lo, float off, float top, float sub, const float *is,
                                  float *sl, float *sll, float *slx) {
    const __m256 vo = _mm256_set1_ps(off), vt = _mm256_set1_ps(top), vs = _mm256_set1_ps(sub), z = _mm256_setzero_ps();
    for (int h = 0; h < TBC__K_NC; h += 8) {
        const __m256 vi = _mm256_loadu_ps(is + h);
        __m256 a1 = _mm256_loadu_ps(sl + h), a2 = _mm256_loadu_ps(sll + h), a3 = _mm256_loadu_ps(slx + h);
        for (int i = 0; i < n; i++) {
            const __m256 xi = _mm256_set1_ps(x[i]), xs = _mm256_set1_ps(x[i] - lo);
            // max(t, 0) returns its second operand for NaN t
            __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(_mm256_mul_ps(vi, xs), vo), z), vt);
            __m256 l = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvttps_epi32(t)), vs);
            a1 = _mm256_add_ps(a1, l);
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(l, l));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(l, xi));
        }
        _mm256_storeu_ps(sl + h, a1); _mm256_storeu_ps(sll + h, a2); _mm256_storeu_ps(slx + h, a3);
    }
}
#endif
#if defined(TBC__K_HAVE_AVX512)
TBC__K_FN void tbc__k_cand_sums_avx512(const float *x, int n, float lo, float off, float top, float sub, const float *is,
                                    float *sl, float *sll, float *slx) {
    const __m512 vo = _mm512_set1_ps(off), vt = _mm512_set1_ps(top), vs = _mm512_set1_ps(sub), z = _mm512_setzero_ps();
    const __m512 vi = _mm512_loadu_ps(is);
    __m512 a1 = _mm512_loadu_ps(sl), a2 = _mm512_loadu_ps(sll), a3 = _mm512_loadu_ps(slx);
    for (int i = 0; i < n; i++) {
        const __m512 xi = _mm512_set1_ps(x[i]), xs = _mm512_set1_ps(x[i] - lo);
        __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(_mm512_mul_ps(vi, xs), vo), z), vt);
        __m512 l = _mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvttps_epi32(t)), vs);
        a1 = _mm512_add_ps(a1, l);
        a2 = _mm512_add_ps(a2, _mm512_mul_ps(l, l));
        a3 = _mm512_add_ps(a3, _mm512_mul_ps(l, xi));
    }
    _mm512_storeu_ps(sl, a1); _mm512_storeu_ps(sll, a2); _mm512_storeu_ps(slx, a3);
}
#endif
#if defined(TBC__K_HAVE_NEON)
TBC__K_FN void tbc__k_cand_sums_neon(const float *x, int n, float lo, float off, float top, float sub, const float *is,
                                  float *sl, float *sll, float *slx) {
    const float32x4_t vo = vdupq_n_f32(off), vt = vdupq_n_f32(top), vs = vdupq_n_f32(sub), z = vdupq_n_f32(0.0f);
    for (int h = 0; h < TBC__K_NC; h += 4) {
        const float32x4_t vi = vld1q_f32(is + h);
        float32x4_t a1 = vld1q_f32(sl + h), a2 = vld1q_f32(sll + h), a3 = vld1q_f32(slx + h);
        for (int i = 0; i < n; i++) {
            const float32x4_t xi = vdupq_n_f32(x[i]), xs = vdupq_n_f32(x[i] - lo);
            // maxnm/minnm return the number when one operand is NaN
            float32x4_t t = vminnmq_f32(vmaxnmq_f32(vaddq_f32(vmulq_f32(vi, xs), vo), z), vt);
            float32x4_t l = vsubq_f32(vcvtq_f32_s32(vcvtq_s32_f32(t)), vs);
            a1 = vaddq_f32(a1, l);
            a2 = vaddq_f32(a2, vmulq_f32(l, l));
            a3 = vaddq_f32(a3, vmulq_f32(l, xi));
        }
        vst1q_f32(sl + h, a1); vst1q_f32(sll + h, a2); vst1q_f32(slx + h, a3);
    }
}
#endif
// Final levels: L[i] = (int)clamp((x[i] + add)*scale + off, 0, top) for i < n (n a multiple of 16).
TBC__K_FN void tbc__k_levels_ref(const float *x, int n, float add, float scale, float off, float top, uint8_t *L) {
    for (int i = 0; i < n; i++) {
        float t = (x[i] + add) * scale;
        t = t + off;
        t = t > 0.0f ? t : 0.0f;
        L[i] = (uint8_t)(int)(t < top ? t : top);
    }
}
#if defined(TBC__K_HAVE_AVX2)
TBC__K_FN void tbc__k_levels_avx2(const float *x, int n, float add, float scale, float off, float top, uint8_t *L) {
    const __m256 va = _mm256_set1_ps(add), vm = _mm256_set1_ps(scale), vo = _mm256_set1_ps(off);
    const __m256 vt = _mm256_set1_ps(top), z = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __m256 t0 = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), va), vm), vo);
        __m256 t1 = _mm256_add_ps(_mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(x + i + 8), va), vm), vo);
        __m256i q0 = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t0, z), vt));
        __m256i q1 = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(t1, z), vt));
        // packs works within 128-bit lanes: 0-3 8-11 4-7 12-15, put back in order before the byte pack
        __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        _mm_storeu_si128((__m128i *)(void *)(L + i), _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
    }
}
#endif
#if defined(TBC__K_HAVE_AVX512)
TBC__K_FN void tbc__k_levels_avx512(const float *x, int n, float add, float scale, float off, float top, uint8_t *L) {
    const __m512 va = _mm512_set1_ps(add), vm = _mm512_set1_ps(scale), vo = _mm512_set1_ps(off);
    const __m512 vt = _mm512_set1_ps(top), z = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __m512 t = _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(_mm512_loadu_ps(x + i), va), vm), vo);
        __m512i q = _mm512_cvttps_epi32(_mm512_min_ps(_mm512_max_ps(t, z), vt));
        _mm_storeu_si128((__m128i *)(void *)(L + i), _mm512_cvtepi32_epi8(q));
    }
}
#endif
#if defined(TBC__K_HAVE_NEON)
TBC__K_FN void tbc__k_levels_neon(const float *x, int n, float add, float scale, float off, float top, uint8_t *L) {
    const float32x4_t va = vdupq_n_f32(add), vm = vdupq_n_f32(scale), vo = vdupq_n_f32(off);
    const float32x4_t vt = vdupq_n_f32(top), z = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += 8) {
        float32x4_t t0 = vaddq_f32(vmulq_f32(vaddq_f32(vld1q_f32(x + i), va), vm), vo);
        float32x4_t t1 = vaddq_f32(vmulq_f32(vaddq_f32(vld1q_f32(x + i + 4), va), vm), vo);
        uint32x4_t q0 = vcvtq_u32_f32(vminnmq_f32(vmaxnmq_f32(t0, z), vt));
        uint32x4_t q1 = vcvtq_u32_f32(vminnmq_f32(vmaxnmq_f32(t1, z), vt));
        vst1_u8(L + i, vmovn_u16(vcombine_u16(vmovn_u32(q0), vmovn_u32(q1))));
    }
}
#endif
#if defined(TBC__K_HAVE_AVX512)
#define tbc__k_cand_sums tbc__k_cand_sums_avx512
#define tbc__k_levels tbc__k_levels_avx512
#elif defined(TBC__K_HAVE_AVX2)
#define tbc__k_cand_sums tbc__k_cand_sums_avx2
#define tbc__k_levels tbc__k_levels_avx2
#elif defined(TBC__K_HAVE_NEON)
#define tbc__k_cand_sums tbc__k_cand_sums_neon
#define tbc__k_levels tbc__k_levels_neon
#else
#define tbc__k_cand_sums tbc__k_cand_sums_ref
#define tbc__k_levels tbc__k_levels_ref
#endif

// Fit x ~= a*L + b with L in 0..nmax and b <= 0 (so 0 stays representable). Candidate inverse scales are
// (nmax + r0 + dr*j)/(hi - lo). For one candidate's levels the best (a, b) is closed-form least squares, and its
// squared error up to a constant is -(n*Slx - Sl*Sx)^2/(n*det), or Sx^2/n - Slx^2/Sll when b must be clamped to 0.
TBC__K_FN void tbc__k_fit_min(const float *x, int n, int nmax, float r0, float dr, float *scale, float *mn) {
    float lo4[4], hi4[4], sx4[4];  // four independent chains (n is a multiple of 4)
    for (int k = 0; k < 4; k++) { lo4[k] = hi4[k] = x[k]; sx4[k] = 0.0f; }
    for (int i = 0; i < n; i += 4)
        for (int k = 0; k < 4; k++) {
            const float v = x[i + k];
            lo4[k] = v < lo4[k] ? v : lo4[k]; hi4[k] = v > hi4[k] ? v : hi4[k]; sx4[k] += v;
        }
    float lo = lo4[0], hi = hi4[0], sx = (sx4[0] + sx4[1]) + (sx4[2] + sx4[3]);
    for (int k = 1; k < 4; k++) { lo = lo4[k] < lo ? lo4[k] : lo; hi = hi4[k] > hi ? hi4[k] : hi; }
    if (lo > 0.0f) lo = 0.0f;
    if (!(hi > lo)) { *scale = 0.0f; *mn = -lo; return; }
    float is[TBC__K_NC], sl[TBC__K_NC], sll[TBC__K_NC], slx[TBC__K_NC];
    const float inv = 1.0f / (hi - lo);
    for (int j = 0; j < TBC__K_NC; j++) {
        is[j] = ((float)nmax + r0 + dr * (float)j) * inv;
        sl[j] = sll[j] = slx[j] = 0.0f;
    }
    tbc__k_cand_sums(x, n, lo, 0.5f, (float)nmax + 0.5f, 0.0f, is, sl, sll, slx);
    // Score every candidate without branches (the comparisons are too random to predict), assuming the unconstrained
    // fit is valid; take the first index of the minimum. If that fit is invalid (a <= 0, b > 0, no slope), score again
    // with the constraints: no other candidate can beat it then, since a constraint only adds error.
    const double nd = (double)n, sxd = (double)sx;
    double err[TBC__K_NC], best = INFINITY;
    for (int j = 0; j < TBC__K_NC; j++) {
        const double l1 = sl[j], l2 = sll[j], lx = slx[j], num = nd * lx - l1 * sxd;
        err[j] = -(num * num) / (nd * (nd * l2 - l1 * l1));
        best = err[j] < best ? err[j] : best;
    }
    int bj = 0, clamp = 0;
    if (best < INFINITY) while (err[bj] != best) bj++;
    {
        const double l1 = sl[bj], l2 = sll[bj], lx = slx[bj];
        if (!(best < INFINITY) || !(nd * l2 - l1 * l1 > 0.0) || !(nd * lx - l1 * sxd > 0.0) || l2 * sxd - l1 * lx > 0.0) {
            best = INFINITY; bj = -1;
            for (int j = 0; j < TBC__K_NC; j++) {
                const double k1 = sl[j], k2 = sll[j], kx = slx[j], det = nd * k2 - k1 * k1, num = nd * kx - k1 * sxd;
                if (!(det > 0.0)) continue;  // a single level: no slope
                const int c = k2 * sxd - k1 * kx > 0.0;  // b > 0: refit with b = 0
                if (c ? !(kx > 0.0) : !(num > 0.0)) continue;
                const double e = c ? sxd * sxd / nd - kx * kx / k2 : -num * num / (nd * det);
                if (e < best) { best = e; bj = j; clamp = c; }
            }
            if (bj < 0) { *scale = (hi - lo) / (float)nmax; *mn = -lo; return; }
        }
    }
    const double l1 = sl[bj], l2 = sll[bj], lx = slx[bj], det = nd * l2 - l1 * l1;
    if (clamp) { *scale = (float)(lx / l2); *mn = 0.0f; }
    else { *scale = (float)((nd * lx - l1 * sxd) / det); *mn = (float)(-(l2 * sxd - l1 * lx) / det); }
}
// Fit 16 values x ~= a*L with L in -nmax..nmax-1: candidate inverse scales -(nmax + r0 + dr*j)/max put the largest |x|
// near the end of the range that has nmax levels; keep the one with the least squared error after the scale refit,
// i.e. the largest Slx^2/Sll.
TBC__K_FN float tbc__k_fit_sym(const float *x, int nmax, float r0, float dr) {
    float a4[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // four independent chains
    for (int i = 0; i < 16; i += 4)
        for (int k = 0; k < 4; k++) { const float v = fabsf(x[i + k]); a4[k] = v > a4[k] ? v : a4[k]; }
    const float amax = (a4[0] > a4[1] ? a4[0] : a4[1]) > (a4[2] > a4[3] ? a4[2] : a4[3]) ? (a4[0] > a4[1] ? a4[0] : a4[1])
                                                                                        : (a4[2] > a4[3] ? a4[2] : a4[3]);
    if (!(amax >= 1e-30f)) return 0.0f;
    int im = 0;
    while (fabsf(x[im]) != amax) im++;  // the first value with the largest |x| (amax is one of them)
    const float max = x[im];
    float is[TBC__K_NC], sl[TBC__K_NC], sll[TBC__K_NC], slx[TBC__K_NC];
    for (int j = 0; j < TBC__K_NC; j++) {
        is[j] = -((float)nmax + r0 + dr * (float)j) / max;
        sl[j] = sll[j] = slx[j] = 0.0f;
    }
    tbc__k_cand_sums(x, 16, 0.0f, (float)nmax + 0.5f, 2.0f * (float)nmax - 0.5f, (float)nmax, is, sl, sll, slx);
    // Scores in float, scaled by 1/amax^2 so they cannot overflow; sll == 0 means slx == 0: score 0, the worst.
    const float ia = 1.0f / amax;
    float s[TBC__K_NC], best = 0.0f;
    for (int j = 0; j < TBC__K_NC; j++) {
        const float u = slx[j] * ia;
        s[j] = u * u / (sll[j] > 0.0f ? sll[j] : 1.0f);
        best = s[j] > best ? s[j] : best;
    }
    int bj = 0;
    while (bj < TBC__K_NC - 1 && s[bj] != best) bj++;
    return sll[bj] > 0.0f ? slx[bj] / sll[bj] : 0.0f;
}
TBC__K_FN int tbc__k_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }
TBC__K_FN int tbc__k_round_div(float x, float d) { return d != 0.0f ? (int)lrintf(x / d) : 0; }
// Shared by Q2_K/Q4_K/Q5_K: sub-blocks of `sub` values, levels 0..nmax, scales/mins quantized to 0..smax.
TBC__K_FN void tbc__k_quant_min_block(const float *x, int sub, int nmax, int smax, float r0, float dr, uint8_t *sc,
                                   uint8_t *mn, uint16_t *d16, uint16_t *dmin16, uint8_t *L) {
    float scales[16], mins[16], maxs = 0.0f, maxm = 0.0f;
    int nsub = 256 / sub;
    for (int j = 0; j < nsub; j++) {
        tbc__k_fit_min(x + j * sub, sub, nmax, r0, dr, &scales[j], &mins[j]);
        if (scales[j] > maxs) maxs = scales[j];
        if (mins[j] > maxm) maxm = mins[j];
    }
    *d16 = tbc__f32_to_f16(maxs / (float)smax);
    *dmin16 = tbc__f32_to_f16(maxm / (float)smax);
    float d = tbc__k_h2f(*d16), dmin = tbc__k_h2f(*dmin16);
    const float top = (float)nmax + 0.5f;
    for (int j = 0; j < nsub; j++) {
        sc[j] = (uint8_t)tbc__k_clampi(tbc__k_round_div(scales[j], d), 0, smax);
        mn[j] = (uint8_t)tbc__k_clampi(tbc__k_round_div(mins[j], dmin), 0, smax);
        const float dl = d * (float)sc[j], ml = dmin * (float)mn[j], idl = dl != 0.0f ? 1.0f / dl : 0.0f;
        tbc__k_levels(x + j * sub, sub, ml, idl, 0.5f, top, L + j * sub);
    }
}
// Shared by Q3_K/Q6_K: 16 sub-blocks of 16, levels -nmax..nmax-1, scales quantized to -smax..smax-1 (Q6_K: +127 max).
TBC__K_FN void tbc__k_quant_sym_block(const float *x, int nmax, int smax, int smax_hi, float r0, float dr, int *sc,
                                   uint16_t *d16, uint8_t *L) {
    float scales[16], amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 16; j++) {
        scales[j] = tbc__k_fit_sym(x + 16 * j, nmax, r0, dr);
        if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max = scales[j]; }
    }
    float iscale = amax > 0.0f ? -(float)smax / max : 0.0f;
    *d16 = tbc__f32_to_f16(iscale != 0.0f ? 1.0f / iscale : 0.0f);
    float d = tbc__k_h2f(*d16);
    const float off = (float)nmax + 0.5f, top = 2.0f * (float)nmax - 0.5f;
    for (int j = 0; j < 16; j++) {
        sc[j] = tbc__k_clampi((int)lrintf(iscale * scales[j]), -smax, smax_hi);
        const float dl = d * (float)sc[j], idl = dl != 0.0f ? 1.0f / dl : 0.0f;
        tbc__k_levels(x + 16 * j, 16, 0.0f, idl, off, top, L + 16 * j);
    }
}

TBC__K_FN void tbc__quant_q2_K(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        tbc__block_q2_K *y = (tbc__block_q2_K *)dst + i;
        uint8_t sc[16], mn[16], L[256];
        tbc__k_quant_min_block(src + i * 256, 16, 3, 15, -0.5f, 0.1f, sc, mn, &y->d, &y->dmin, L);
        for (int k = 0; k < 16; k++) y->scales[k] = (uint8_t)(sc[k] | (mn[k] << 4));
        // element 128h + 32j + l -> bits 2j of qs[32h + l]
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * h + l;
                y->qs[32 * h + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
            }
    }
}
TBC__K_FN void tbc__quant_q3_K(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        tbc__block_q3_K *y = (tbc__block_q3_K *)dst + i;
        int sc[16];
        uint8_t L[256], v[16];
        tbc__k_quant_sym_block(src + i * 256, 4, 32, 31, -0.9f, 0.12f, sc, &y->d, L);
        for (int k = 0; k < 16; k++) v[k] = (uint8_t)(sc[k] + 32);
        tbc__k_pack_scales_q3(v, y->scales);
        // element 128h + 32j + l -> low bits as Q2_K, bit 2 to hmask[l] bit 4h + j
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * h + l;
                y->qs[32 * h + l] = (uint8_t)((q[0] & 3) | ((q[32] & 3) << 2) | ((q[64] & 3) << 4) | ((q[96] & 3) << 6));
            }
        for (int l = 0; l < 32; l++) {
            int m = 0;
            for (int k = 0; k < 8; k++) m |= (L[32 * k + l] >> 2) << k;
            y->hmask[l] = (uint8_t)m;
        }
    }
}
TBC__K_FN void tbc__quant_q4_K(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        tbc__block_q4_K *y = (tbc__block_q4_K *)dst + i;
        uint8_t sc[8], mn[8], L[256];
        tbc__k_quant_min_block(src + i * 256, 32, 15, 63, -1.0f, 2.0f / 15.0f, sc, mn, &y->d, &y->dmin, L);
        tbc__k_pack_scales_q45(sc, mn, y->scales);
        // element 64j + 32h + l -> nibble h of qs[32j + l]
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) y->qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
    }
}
TBC__K_FN void tbc__quant_q5_K(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        tbc__block_q5_K *y = (tbc__block_q5_K *)dst + i;
        uint8_t sc[8], mn[8], L[256];
        tbc__k_quant_min_block(src + i * 256, 32, 31, 63, -1.0f, 2.0f / 15.0f, sc, mn, &y->d, &y->dmin, L);
        tbc__k_pack_scales_q45(sc, mn, y->scales);
        // as Q4_K, plus bit 4 of element 32k + l to qh[l] bit k
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                y->qs[32 * j + l] = (uint8_t)((L[64 * j + l] & 15) | ((L[64 * j + 32 + l] & 15) << 4));
        for (int l = 0; l < 32; l++) {
            int m = 0;
            for (int k = 0; k < 8; k++) m |= (L[32 * k + l] >> 4) << k;
            y->qh[l] = (uint8_t)m;
        }
    }
}
TBC__K_FN void tbc__quant_q6_K(const float *src, void *dst, int64_t n) {
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        tbc__block_q6_K *y = (tbc__block_q6_K *)dst + i;
        int sc[16];
        uint8_t L[256];
        tbc__k_quant_sym_block(src + i * 256, 32, 128, 127, -0.9f, 0.12f, sc, &y->d, L);
        for (int k = 0; k < 16; k++) y->scales[k] = (int8_t)sc[k];
        // element 128h + 32q + l -> nibble q>>1 of ql[64h + 32(q&1) + l], bits 4-5 to qh[32h + l] bits 2q
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *q = L + 128 * h + l;
                y->ql[64 * h + l] = (uint8_t)((q[0] & 15) | ((q[64] & 15) << 4));
                y->ql[64 * h + 32 + l] = (uint8_t)((q[32] & 15) | ((q[96] & 15) << 4));
                y->qh[32 * h + l] = (uint8_t)((q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6));
            }
    }
}

#if defined(TBC__K_HAVE_AVX512) && defined(__GNUC__) && !defined(__clang__) && defined(__cplusplus)
#pragma GCC diagnostic pop
#endif

// ---- scalar reference dot products and gemm
TBC__K_FN float tbc__k_vec_dot_ref(int64_t n, const void *w, const void *a, size_t bs, tbc__k_decode_fn dec) {
    const tbc__block_q8_K *y = (const tbc__block_q8_K *)a;
    tbc__k_dec b;
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        dec((const uint8_t *)w + (size_t)i * bs, &b);
        int32_t isum = 0, msum = 0;
        for (int k = 0; k < 16; k++) {
            int32_t s = 0;
            for (int e = 16 * k; e < 16 * k + 16; e++) s += ((int)b.u[e] - b.off) * y[i].qs[e];
            isum += b.s[k] * s;
            msum += b.m[k] * y[i].bsums[k];
        }
        sumf += y[i].d * b.d * (float)isum - y[i].d * b.dmin * (float)msum;
    }
    return sumf;
}
TBC__K_FN void tbc__k_gemm_ref(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A, size_t lda,
                            float *out, size_t ldo, size_t bs, tbc__k_decode_fn dec) {
    for (int64_t j = 0; j < na; j++)
        for (int64_t i = 0; i < nw; i++)
            out[(size_t)j * ldo + (size_t)i] =
                tbc__k_vec_dot_ref(n, (const uint8_t *)W + (size_t)i * ldw, (const uint8_t *)A + (size_t)j * lda, bs, dec);
}
#define TBC__K_REF(T, BS)                                                                                              \
    TBC__K_FN void tbc__gemm_##T##_ref(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,     \
                                    size_t lda, float *out, size_t ldo) {                                              \
        tbc__k_gemm_ref(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__k_decode_##T);                                   \
    }
TBC__K_REF(q2_K, 84)
TBC__K_REF(q3_K, 110)
TBC__K_REF(q4_K, 144)
TBC__K_REF(q5_K, 176)
TBC__K_REF(q6_K, 210)
#undef TBC__K_REF

// The gemm drivers below all walk the same tiles: weight rows in groups of 4 (then 1), activation rows in groups of
// TBC__K_RA (then 1). For many activation rows (prefill) the weight tile is first unpacked for TBC__K_KB blocks into a
// stack buffer and reused by every activation tile, so unpacking costs once per weight block instead of once per pass.
#ifndef TBC__K_RW
#define TBC__K_RW 4
#endif
#ifndef TBC__K_RA
#define TBC__K_RA 4
#endif
#ifndef TBC__K_KB
#define TBC__K_KB 8
#endif
#define TBC__K_PREFILL_NA 8

// Tile driver shared by the SIMD paths. PFX_w is the unpacked weight block, PFX_y the per-activation-block values,
// PFX_acc the float accumulator; PFX_pair adds one block's dot product. A tile is rw x ra dot products over blocks
// [b0, b1); wbuf holds unpacked weights [r][b - b0], or is NULL to unpack on the fly (few activation rows).
#define TBC__K_DRIVER(PFX)                                                                                             \
    TBC__K_INLINE void tbc__##PFX##_tile(const uint8_t *W, size_t ldw, size_t bs, const uint8_t *A, size_t lda,       \
                                         int64_t b0, int64_t b1, float *out, size_t ldo, int rw, int ra, int add,     \
                                         const tbc__##PFX##_w *wbuf, tbc__##PFX##_unpack_fn unpack, int has_off,      \
                                         int has_min) {                                                               \
        tbc__##PFX##_acc acc[TBC__K_RW][TBC__K_RA];                                                                    \
        for (int r = 0; r < rw; r++)                                                                                   \
            for (int c = 0; c < ra; c++) acc[r][c] = tbc__##PFX##_zero();                                              \
        for (int64_t b = b0; b < b1; b++) {                                                                            \
            const tbc__block_q8_K *a[TBC__K_RA];                                                                       \
            tbc__##PFX##_y y[TBC__K_RA];                                                                               \
            for (int c = 0; c < ra; c++) {                                                                             \
                a[c] = (const tbc__block_q8_K *)(const void *)(A + (size_t)c * lda) + b;                               \
                if (has_min) y[c] = tbc__##PFX##_ymin(a[c]);                                                           \
                else memset(&y[c], 0, sizeof y[c]);                                                                    \
            }                                                                                                          \
            for (int r = 0; r < rw; r++) {                                                                             \
                tbc__##PFX##_w wl;                                                                                     \
                const tbc__##PFX##_w *w = &wl;                                                                         \
                if (wbuf) w = &wbuf[(size_t)r * TBC__K_KB + (size_t)(b - b0)];                                         \
                else unpack(W + (size_t)r * ldw + (size_t)b * bs, &wl);                                                \
                for (int c = 0; c < ra; c++) acc[r][c] = tbc__##PFX##_pair(w, a[c], &y[c], acc[r][c], has_off, has_min); \
            }                                                                                                          \
        }                                                                                                              \
        for (int r = 0; r < rw; r++)                                                                                   \
            for (int c = 0; c < ra; c++) {                                                                             \
                float v = tbc__##PFX##_hsum(acc[r][c]);                                                                \
                out[(size_t)c * ldo + (size_t)r] = add ? out[(size_t)c * ldo + (size_t)r] + v : v;                     \
            }                                                                                                          \
    }                                                                                                                  \
    TBC__K_INLINE void tbc__##PFX##_gemm(int64_t n, int64_t nw, int64_t na, const void *Wv, size_t ldw, const void *Av, \
                                         size_t lda, float *out, size_t ldo, size_t bs, tbc__##PFX##_unpack_fn unpack, \
                                         int has_off, int has_min) {                                                  \
        const uint8_t *W = (const uint8_t *)Wv, *A = (const uint8_t *)Av;                                              \
        const int64_t nb = n / TBC__QK_K;                                                                              \
        if (na < TBC__K_PREFILL_NA) { /* matrix-vector: stream weights once per activation row */                      \
            int64_t i = 0;                                                                                             \
            for (; i + TBC__K_RW <= nw; i += TBC__K_RW)                                                                \
                for (int64_t j = 0; j < na; j++)                                                                       \
                    tbc__##PFX##_tile(W + (size_t)i * ldw, ldw, bs, A + (size_t)j * lda, lda, 0, nb,                   \
                                      out + (size_t)j * ldo + i, ldo, TBC__K_RW, 1, 0, NULL, unpack, has_off, has_min); \
            for (; i < nw; i++)                                                                                        \
                for (int64_t j = 0; j < na; j++)                                                                       \
                    tbc__##PFX##_tile(W + (size_t)i * ldw, ldw, bs, A + (size_t)j * lda, lda, 0, nb,                   \
                                      out + (size_t)j * ldo + i, ldo, 1, 1, 0, NULL, unpack, has_off, has_min);        \
            return;                                                                                                    \
        }                                                                                                              \
        TBC__K_ALIGN64 tbc__##PFX##_w wbuf[TBC__K_RW * TBC__K_KB];                                                     \
        for (int64_t i = 0; i < nw;) {                                                                                 \
            int rw = nw - i >= TBC__K_RW ? TBC__K_RW : 1;                                                              \
            for (int64_t b0 = 0; b0 < nb; b0 += TBC__K_KB) {                                                           \
                int64_t b1 = b0 + TBC__K_KB < nb ? b0 + TBC__K_KB : nb;                                                \
                int add = b0 > 0;                                                                                      \
                for (int r = 0; r < rw; r++)                                                                           \
                    for (int64_t b = b0; b < b1; b++)                                                                  \
                        unpack(W + (size_t)(i + r) * ldw + (size_t)b * bs, &wbuf[(size_t)r * TBC__K_KB + (size_t)(b - b0)]); \
                int64_t j = 0;                                                                                         \
                for (; j + TBC__K_RA <= na; j += TBC__K_RA) {                                                          \
                    float *o = out + (size_t)j * ldo + i;                                                              \
                    const uint8_t *a = A + (size_t)j * lda;                                                            \
                    if (rw == TBC__K_RW)                                                                               \
                        tbc__##PFX##_tile(W, ldw, bs, a, lda, b0, b1, o, ldo, TBC__K_RW, TBC__K_RA, add, wbuf, unpack, has_off, has_min); \
                    else tbc__##PFX##_tile(W, ldw, bs, a, lda, b0, b1, o, ldo, 1, TBC__K_RA, add, wbuf, unpack, has_off, has_min); \
                }                                                                                                      \
                for (; j < na; j++) {                                                                                  \
                    float *o = out + (size_t)j * ldo + i;                                                              \
                    const uint8_t *a = A + (size_t)j * lda;                                                            \
                    if (rw == TBC__K_RW)                                                                               \
                        tbc__##PFX##_tile(W, ldw, bs, a, lda, b0, b1, o, ldo, TBC__K_RW, 1, add, wbuf, unpack, has_off, has_min); \
                    else tbc__##PFX##_tile(W, ldw, bs, a, lda, b0, b1, o, ldo, 1, 1, add, wbuf, unpack, has_off, has_min); \
                }                                                                                                      \
            }                                                                                                          \
            i += rw;                                                                                                   \
        }                                                                                                              \
    }


#if defined(TBC__K_HAVE_AVX2)
// SIMD versions of tbc__k_scales_q45 / tbc__k_scales_q3 (same bytes out): no round trip through memory.
// Q4_K/Q5_K: the 12 bytes are followed by at least 4 bytes of the same block, so one 16-byte load is safe.
TBC__K_INLINE __m128i tbc__k_scales_q45_sse(const uint8_t *s12) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s12);
    __m128i a = _mm_shuffle_epi32(v, 0x98);  // dwords w0 w2 w1 w2
    __m128i b = _mm_shuffle_epi32(v, 0x50);  // dwords w0 w0 w1 w1
    a = _mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4));
    __m128i lo = _mm_and_si128(a, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hi);  // bytes: 8 scales, 8 mins
}
// Q3_K: the 12 bytes end 2 bytes before the block does, so load the 16 bytes that end with them.
TBC__K_INLINE __m128i tbc__k_scales_q3_sse(const uint8_t *s12) {
    __m128i v = _mm_srli_si128(_mm_loadu_si128((const __m128i *)(const void *)(s12 - 4)), 4);
    __m128i a = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0x44), _mm_setr_epi32(0, 0, 4, 4));  // w0 w1 w0 w1
    __m128i b = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0xAA), _mm_setr_epi32(0, 2, 4, 6));  // w2 x4
    __m128i r = _mm_or_si128(_mm_and_si128(a, _mm_set1_epi8(15)), _mm_slli_epi32(_mm_and_si128(b, _mm_set1_epi8(3)), 4));
    return _mm_sub_epi8(r, _mm_set1_epi8(32));
}
#endif

#if defined(TBC__K_HAVE_AVX512)
#if defined(__GNUC__) && !defined(__clang__) && defined(__cplusplus)
// g++ 12 flags the _mm512_undefined_* inside its own intrinsics as "maybe uninitialized" (GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// ================= AVX-512 (F+BW+VL; VNNI vpdpwssd when available): one 512-bit chunk = 64 values = 4 sub-blocks
typedef struct tbc__k512_w {
    __m512i u[4];  // unsigned levels
    __m512i s[4];  // int16 scale of each byte pair's sub-block
    __m512i o;     // int16 -off*s_k in lanes 0..15 (types with an offset)
    __m512 x;      // -dmin*m_k (types with mins)
    float d;
} tbc__k512_w;

static const uint16_t tbc__k_idx16[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};
static const uint8_t tbc__k_dup_lo[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
static const uint8_t tbc__k_dup_hi[16] = {8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15};

// 16-bit lanes: value a in the lower 256 bits, b in the upper (per-half shift counts).
TBC__K_INLINE __m512i tbc__k512_pair16(int a, int b) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}
TBC__K_INLINE __m512i tbc__k512_bcast256(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)p));
}
TBC__K_INLINE void tbc__k512_spread(__m256i s16, tbc__k512_w *w) {
    __m512i s = _mm512_zextsi256_si512(s16);
    for (int c = 0; c < 4; c++) w->s[c] = _mm512_permutexvar_epi16(_mm512_loadu_si512(tbc__k_idx16[c]), s);
}
// Q4_K/Q5_K scales and mins, each repeated for both 16-value halves of its 32-value sub-block.
TBC__K_INLINE void tbc__k512_scales_q45(const uint8_t *s12, float dmin, tbc__k512_w *w) {
    __m128i v = tbc__k_scales_q45_sse(s12);
    __m256i s16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)(const void *)tbc__k_dup_lo)));
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)(const void *)tbc__k_dup_hi)));
    w->x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_cvtepi16_epi32((__mmask16)0xFFFF, m16)), _mm512_set1_ps(-dmin));
    tbc__k512_spread(s16, w);
}
TBC__K_INLINE void tbc__k512_unpack_q4_K(const uint8_t *b, tbc__k512_w *w) {
    const tbc__block_q4_K *x = (const tbc__block_q4_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__k512_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int c = 0; c < 4; c++) {  // chunk c: low nibbles of qs[32c..] then their high nibbles
        __m512i q = tbc__k512_bcast256(x->qs + 32 * c);
        w->u[c] = _mm512_and_si512(_mm512_mask_blend_epi64(0xF0, q, _mm512_srli_epi16(q, 4)), m4);
    }
}
TBC__K_INLINE void tbc__k512_unpack_q5_K(const uint8_t *b, tbc__k512_w *w) {
    const tbc__block_q5_K *x = (const tbc__block_q5_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__k512_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const __m512i m4 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
    __m512i h = tbc__k512_bcast256(x->qh);
    // chunk c needs qh bits 2c (low half) and 2c+1 (high half) moved to bit 4
    __m512i hb[4];
    hb[0] = _mm512_sllv_epi16(h, tbc__k512_pair16(4, 3));
    hb[1] = _mm512_sllv_epi16(h, tbc__k512_pair16(2, 1));
    hb[2] = _mm512_srlv_epi16(h, tbc__k512_pair16(0, 1));
    hb[3] = _mm512_srlv_epi16(h, tbc__k512_pair16(2, 3));
    for (int c = 0; c < 4; c++) {
        __m512i q = tbc__k512_bcast256(x->qs + 32 * c);
        __m512i lo = _mm512_and_si512(_mm512_mask_blend_epi64(0xF0, q, _mm512_srli_epi16(q, 4)), m4);
        w->u[c] = _mm512_or_si512(lo, _mm512_and_si512(hb[c], b4));
    }
}
TBC__K_INLINE void tbc__k512_unpack_q6_K(const uint8_t *b, tbc__k512_w *w) {
    const tbc__block_q6_K *x = (const tbc__block_q6_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)x->scales));
    w->o = _mm512_zextsi256_si512(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 5)));
    tbc__k512_spread(s16, w);
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int nn = 0; nn < 2; nn++) {
        __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * nn));
        __m512i qh = tbc__k512_bcast256(x->qh + 32 * nn);
        // quarters 0,1: low nibbles, qh bits 0-1 / 2-3; quarters 2,3: high nibbles, qh bits 4-5 / 6-7 (to bits 4-5)
        __m512i h0 = _mm512_and_si512(_mm512_sllv_epi16(qh, tbc__k512_pair16(4, 2)), m30);
        __m512i h1 = _mm512_and_si512(_mm512_srlv_epi16(qh, tbc__k512_pair16(0, 2)), m30);
        w->u[2 * nn] = _mm512_or_si512(_mm512_and_si512(ql, m4), h0);
        w->u[2 * nn + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), h1);
    }
}
TBC__K_INLINE void tbc__k512_unpack_q3_K(const uint8_t *b, tbc__k512_w *w) {
    const tbc__block_q3_K *x = (const tbc__block_q3_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m256i s16 = _mm256_cvtepi8_epi16(tbc__k_scales_q3_sse(x->scales));
    w->o = _mm512_zextsi256_si512(_mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 2)));
    tbc__k512_spread(s16, w);
    const __m512i m2 = _mm512_set1_epi8(3), b2 = _mm512_set1_epi8(4);
    __m512i hm = tbc__k512_bcast256(x->hmask);
    __m512i hb[4];  // hmask bit 4n+j of chunk (n, j pair) to bit 2
    hb[0] = _mm512_sllv_epi16(hm, tbc__k512_pair16(2, 1));
    hb[1] = _mm512_srlv_epi16(hm, tbc__k512_pair16(0, 1));
    hb[2] = _mm512_srlv_epi16(hm, tbc__k512_pair16(2, 3));
    hb[3] = _mm512_srlv_epi16(hm, tbc__k512_pair16(4, 5));
    for (int c = 0; c < 4; c++) {
        __m512i q = tbc__k512_bcast256(x->qs + 32 * (c / 2));
        __m512i lo = _mm512_and_si512(_mm512_srlv_epi16(q, tbc__k512_pair16(4 * (c % 2), 4 * (c % 2) + 2)), m2);
        w->u[c] = _mm512_or_si512(lo, _mm512_and_si512(hb[c], b2));
    }
}
TBC__K_INLINE void tbc__k512_unpack_q2_K(const uint8_t *b, tbc__k512_w *w) {
    const tbc__block_q2_K *x = (const tbc__block_q2_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)x->scales), m4 = _mm_set1_epi8(15);
    __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(v, m4));
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4));
    w->x = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_cvtepi16_epi32((__mmask16)0xFFFF, m16)), _mm512_set1_ps(-tbc__k_h2f(x->dmin)));
    tbc__k512_spread(s16, w);
    const __m512i m2 = _mm512_set1_epi8(3);
    for (int c = 0; c < 4; c++) {
        __m512i q = tbc__k512_bcast256(x->qs + 32 * (c / 2));
        w->u[c] = _mm512_and_si512(_mm512_srlv_epi16(q, tbc__k512_pair16(4 * (c % 2), 4 * (c % 2) + 2)), m2);
    }
}
typedef void (*tbc__k512_unpack_fn)(const uint8_t *b, tbc__k512_w *w);

TBC__K_INLINE __m512i tbc__k512_dpw(__m512i acc, __m512i a, __m512i b) {
#if defined(__AVX512VNNI__)
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}
// Activation side of one block: the float bsums*d used by the min term.
typedef struct tbc__k512_y { __m512 v; } tbc__k512_y;
typedef __m512 tbc__k512_acc;
TBC__K_INLINE tbc__k512_y tbc__k512_ymin(const tbc__block_q8_K *a) {
    tbc__k512_y y;
    __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)a->bsums);
    y.v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_cvtepi16_epi32((__mmask16)0xFFFF, b)), _mm512_set1_ps(a->d));
    return y;
}
TBC__K_INLINE __m512 tbc__k512_zero(void) { return _mm512_setzero_ps(); }
TBC__K_INLINE float tbc__k512_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
TBC__K_INLINE __m512 tbc__k512_pair(const tbc__k512_w *w, const tbc__block_q8_K *a, const tbc__k512_y *y, __m512 acc,
                                    int has_off, int has_min) {
    const int8_t *q = a->qs;
    __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(w->u[0], _mm512_loadu_si512((const void *)q)), w->s[0]);
    for (int c = 1; c < 4; c++)
        s = tbc__k512_dpw(s, _mm512_maddubs_epi16(w->u[c], _mm512_loadu_si512((const void *)(q + 64 * c))), w->s[c]);
    if (has_off)
        s = tbc__k512_dpw(s, _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)a->bsums)), w->o);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(w->d * a->d), acc);
    if (has_min) acc = _mm512_fmadd_ps(w->x, y->v, acc);
    return acc;
}
TBC__K_DRIVER(k512)
#define TBC__K512_DEF(T, BS, OFF, MIN)                                                                                 \
    TBC__K_FN void tbc__gemm_##T##_avx512(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,  \
                                       size_t lda, float *out, size_t ldo) {                                           \
        tbc__k512_gemm(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__k512_unpack_##T, OFF, MIN);                       \
    }
TBC__K512_DEF(q2_K, 84, 0, 1)
TBC__K512_DEF(q3_K, 110, 1, 0)
TBC__K512_DEF(q4_K, 144, 0, 1)
TBC__K512_DEF(q5_K, 176, 0, 1)
TBC__K512_DEF(q6_K, 210, 1, 0)
#undef TBC__K512_DEF
#if defined(__GNUC__) && !defined(__clang__) && defined(__cplusplus)
#pragma GCC diagnostic pop
#endif
#endif  // TBC__K_HAVE_AVX512

#if defined(TBC__K_HAVE_AVX2)
// ================= AVX2 + FMA (AVX-VNNI vpdpwssd when available): one 256-bit chunk = 32 values = 2 sub-blocks
typedef struct tbc__k256_w {
    __m256i u[8];  // unsigned levels
    __m256i s[8];  // int16 scale of each byte pair's sub-block
    __m256i o;     // int16 -off*s_k (types with an offset)
    __m256 x[2];   // -dmin*m_k (types with mins)
    float d;
} tbc__k256_w;
typedef void (*tbc__k256_unpack_fn)(const uint8_t *b, tbc__k256_w *w);

TBC__K_INLINE __m256i tbc__k256_ld(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
// Shift 16-bit lanes left by n (n may be negative: right).
TBC__K_INLINE __m256i tbc__k256_shl(__m256i v, int n) {
    return n >= 0 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(n)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(-n));
}
// Chunk c takes sub-block scales 2c (lanes 0..7) and 2c+1 (lanes 8..15).
TBC__K_INLINE void tbc__k256_spread(__m256i s16, tbc__k256_w *w) {
    int16_t t[16];
    _mm256_storeu_si256((__m256i *)(void *)t, s16);
    const __m256i ctl = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                         2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    for (int c = 0; c < 8; c++) {
        int32_t pr;
        memcpy(&pr, t + 2 * c, 4);
        w->s[c] = _mm256_shuffle_epi8(_mm256_set1_epi32(pr), ctl);
    }
}
TBC__K_INLINE void tbc__k256_mins(__m256i m16, float dmin, tbc__k256_w *w) {
    __m256 nd = _mm256_set1_ps(-dmin);
    w->x[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(m16))), nd);
    w->x[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(m16, 1))), nd);
}
TBC__K_INLINE void tbc__k256_scales_q45(const uint8_t *s12, float dmin, tbc__k256_w *w) {
    __m128i v = tbc__k_scales_q45_sse(s12);
    const __m128i dlo = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m128i dhi = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    tbc__k256_mins(_mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, dhi)), dmin, w);
    tbc__k256_spread(_mm256_cvtepu8_epi16(_mm_shuffle_epi8(v, dlo)), w);
}
TBC__K_INLINE void tbc__k256_unpack_q4_K(const uint8_t *b, tbc__k256_w *w) {
    const tbc__block_q4_K *x = (const tbc__block_q4_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__k256_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const __m256i m4 = _mm256_set1_epi8(15);
    for (int j = 0; j < 4; j++) {
        __m256i q = tbc__k256_ld(x->qs + 32 * j);
        w->u[2 * j] = _mm256_and_si256(q, m4);
        w->u[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    }
}
TBC__K_INLINE void tbc__k256_unpack_q5_K(const uint8_t *b, tbc__k256_w *w) {
    const tbc__block_q5_K *x = (const tbc__block_q5_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__k256_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const __m256i m4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);
    __m256i h = tbc__k256_ld(x->qh);
    for (int j = 0; j < 4; j++) {
        __m256i q = tbc__k256_ld(x->qs + 32 * j);
        w->u[2 * j] = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(tbc__k256_shl(h, 4 - 2 * j), b4));
        w->u[2 * j + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                          _mm256_and_si256(tbc__k256_shl(h, 3 - 2 * j), b4));
    }
}
TBC__K_INLINE void tbc__k256_unpack_q6_K(const uint8_t *b, tbc__k256_w *w) {
    const tbc__block_q6_K *x = (const tbc__block_q6_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)x->scales));
    w->o = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 5));
    tbc__k256_spread(s16, w);
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    for (int nn = 0; nn < 2; nn++) {
        __m256i l0 = tbc__k256_ld(x->ql + 64 * nn), l1 = tbc__k256_ld(x->ql + 64 * nn + 32);
        __m256i h = tbc__k256_ld(x->qh + 32 * nn);
        w->u[4 * nn + 0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
        w->u[4 * nn + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
        w->u[4 * nn + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
        w->u[4 * nn + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                           _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
    }
}
TBC__K_INLINE void tbc__k256_unpack_q3_K(const uint8_t *b, tbc__k256_w *w) {
    const tbc__block_q3_K *x = (const tbc__block_q3_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m256i s16 = _mm256_cvtepi8_epi16(tbc__k_scales_q3_sse(x->scales));
    w->o = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(s16, 2));
    tbc__k256_spread(s16, w);
    const __m256i m2 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    __m256i hm = tbc__k256_ld(x->hmask);
    for (int c = 0; c < 8; c++) {  // chunk c = (n, j) = (c/4, c%4); its hmask bit is c
        __m256i q = tbc__k256_ld(x->qs + 32 * (c / 4));
        __m256i lo = _mm256_and_si256(tbc__k256_shl(q, -2 * (c % 4)), m2);
        w->u[c] = _mm256_or_si256(lo, _mm256_and_si256(tbc__k256_shl(hm, 2 - c), b2));
    }
}
TBC__K_INLINE void tbc__k256_unpack_q2_K(const uint8_t *b, tbc__k256_w *w) {
    const tbc__block_q2_K *x = (const tbc__block_q2_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)x->scales), m4 = _mm_set1_epi8(15);
    tbc__k256_mins(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m4)), tbc__k_h2f(x->dmin), w);
    tbc__k256_spread(_mm256_cvtepu8_epi16(_mm_and_si128(v, m4)), w);
    const __m256i m2 = _mm256_set1_epi8(3);
    for (int c = 0; c < 8; c++) w->u[c] = _mm256_and_si256(tbc__k256_shl(tbc__k256_ld(x->qs + 32 * (c / 4)), -2 * (c % 4)), m2);
}

TBC__K_INLINE __m256i tbc__k256_dpw(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(acc, a, b);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
typedef struct tbc__k256_y { __m256 v[2]; } tbc__k256_y;
typedef __m256 tbc__k256_acc;
TBC__K_INLINE tbc__k256_y tbc__k256_ymin(const tbc__block_q8_K *a) {
    tbc__k256_y y;
    __m256i b = tbc__k256_ld(a->bsums);
    __m256 d = _mm256_set1_ps(a->d);
    y.v[0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(b))), d);
    y.v[1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(b, 1))), d);
    return y;
}
TBC__K_INLINE __m256 tbc__k256_zero(void) { return _mm256_setzero_ps(); }
TBC__K_INLINE float tbc__k256_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TBC__K_INLINE __m256 tbc__k256_pair(const tbc__k256_w *w, const tbc__block_q8_K *a, const tbc__k256_y *y, __m256 acc,
                                    int has_off, int has_min) {
    const int8_t *q = a->qs;
    // two independent integer chains halve the dependency latency
    __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(w->u[0], tbc__k256_ld(q)), w->s[0]);
    __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(w->u[1], tbc__k256_ld(q + 32)), w->s[1]);
    for (int c = 2; c < 8; c += 2) {
        s0 = tbc__k256_dpw(s0, _mm256_maddubs_epi16(w->u[c], tbc__k256_ld(q + 32 * c)), w->s[c]);
        s1 = tbc__k256_dpw(s1, _mm256_maddubs_epi16(w->u[c + 1], tbc__k256_ld(q + 32 * c + 32)), w->s[c + 1]);
    }
    if (has_off) s0 = tbc__k256_dpw(s0, tbc__k256_ld(a->bsums), w->o);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(w->d * a->d), acc);
    if (has_min) {
        acc = _mm256_fmadd_ps(w->x[0], y->v[0], acc);
        acc = _mm256_fmadd_ps(w->x[1], y->v[1], acc);
    }
    return acc;
}
TBC__K_DRIVER(k256)
#define TBC__K256_DEF(T, BS, OFF, MIN)                                                                                 \
    TBC__K_FN void tbc__gemm_##T##_avx2(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,    \
                                     size_t lda, float *out, size_t ldo) {                                             \
        tbc__k256_gemm(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__k256_unpack_##T, OFF, MIN);                       \
    }
TBC__K256_DEF(q2_K, 84, 0, 1)
TBC__K256_DEF(q3_K, 110, 1, 0)
TBC__K256_DEF(q4_K, 144, 0, 1)
TBC__K256_DEF(q5_K, 176, 0, 1)
TBC__K256_DEF(q6_K, 210, 1, 0)
#undef TBC__K256_DEF

// Q8_K quantization with the same arithmetic as the reference: the product iscale*x is rounded once (vcvtps2dq in
// the default round-to-nearest-even mode), and the first largest |x| is found by comparing against the maximum.
TBC__K_FN void tbc__quant_q8_K_avx2(const float *src, void *dst, int64_t n) {
    tbc__block_q8_K *y = (tbc__block_q8_K *)dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        const float *x = src + i * 256;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 256; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        float amax = _mm_cvtss_f32(h);
        if (!(amax > 0.0f)) { memset(&y[i], 0, sizeof y[i]); continue; }
        float max = 0.0f;
        __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < 256; j += 8) {
            int mk = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), va, _CMP_EQ_OQ));
            if (mk) { int k = 0; while (!((mk >> k) & 1)) k++; max = x[j + k]; break; }
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        const __m256i c127 = _mm256_set1_epi32(127);
        for (int j = 0; j < 256; j += 32) {
            __m256i q0 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), vs)), c127);
            __m256i q1 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), vs)), c127);
            __m256i q2 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), vs)), c127);
            __m256i q3 = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), vs)), c127);
            // bsums of the two 16-value groups
            __m256i s01 = _mm256_hadd_epi32(_mm256_add_epi32(q0, _mm256_permute2x128_si256(q0, q0, 1)),
                                            _mm256_add_epi32(q1, _mm256_permute2x128_si256(q1, q1, 1)));
            __m256i s23 = _mm256_hadd_epi32(_mm256_add_epi32(q2, _mm256_permute2x128_si256(q2, q2, 1)),
                                            _mm256_add_epi32(q3, _mm256_permute2x128_si256(q3, q3, 1)));
            s01 = _mm256_hadd_epi32(s01, s01);
            s23 = _mm256_hadd_epi32(s23, s23);
            y[i].bsums[j / 16] = (int16_t)(_mm256_extract_epi32(s01, 0) + _mm256_extract_epi32(s01, 1));
            y[i].bsums[j / 16 + 1] = (int16_t)(_mm256_extract_epi32(s23, 0) + _mm256_extract_epi32(s23, 1));
            // pack 32 int32 -> 32 int8 in order (packs work per 128-bit lane, so fix the order with a permute)
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(void *)(y[i].qs + j), p);
        }
        y[i].d = 1.0f / iscale;
    }
}
#endif  // TBC__K_HAVE_AVX2

#if defined(TBC__K_HAVE_NEON)
// ================= NEON (aarch64; sdot with the dotprod extension): one chunk = 16 values = 1 sub-block
typedef struct tbc__kneon_w {
    int8x16_t u[16];   // unsigned levels (<= 63, so usable as signed)
    int32x4_t s[4];    // scales of sub-blocks 4g..4g+3
    int16x8_t o[2];    // -off*s_k (types with an offset)
    float32x4_t x[4];  // -dmin*m_k (types with mins)
    float d;
} tbc__kneon_w;
typedef void (*tbc__kneon_unpack_fn)(const uint8_t *b, tbc__kneon_w *w);

TBC__K_INLINE uint8x16_t tbc__kneon_shl(uint8x16_t v, int n) { return vshlq_u8(v, vdupq_n_s8((int8_t)n)); }
TBC__K_INLINE void tbc__kneon_scales(const int16_t *s16, int off, tbc__kneon_w *w) {
    int16x8_t a = vld1q_s16(s16), b = vld1q_s16(s16 + 8);
    w->s[0] = vmovl_s16(vget_low_s16(a)); w->s[1] = vmovl_high_s16(a);
    w->s[2] = vmovl_s16(vget_low_s16(b)); w->s[3] = vmovl_high_s16(b);
    w->o[0] = vmulq_n_s16(a, (int16_t)-off); w->o[1] = vmulq_n_s16(b, (int16_t)-off);
}
TBC__K_INLINE void tbc__kneon_mins(const int16_t *m16, float dmin, tbc__kneon_w *w) {
    for (int g = 0; g < 4; g++) w->x[g] = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vld1_s16(m16 + 4 * g))), -dmin);
}
TBC__K_INLINE void tbc__kneon_scales_q45(const uint8_t *s12, float dmin, tbc__kneon_w *w) {
    uint8_t sm[16];
    int16_t s16[16], m16[16];
    tbc__k_scales_q45(s12, sm);
    for (int k = 0; k < 16; k++) { s16[k] = sm[k / 2]; m16[k] = sm[8 + k / 2]; }
    tbc__kneon_scales(s16, 0, w);
    tbc__kneon_mins(m16, dmin, w);
}
TBC__K_INLINE void tbc__kneon_unpack_q4_K(const uint8_t *b, tbc__kneon_w *w) {
    const tbc__block_q4_K *x = (const tbc__block_q4_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__kneon_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const uint8x16_t m4 = vdupq_n_u8(15);
    for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t q = vld1q_u8(x->qs + 32 * j + 16 * h);
            w->u[4 * j + h] = vreinterpretq_s8_u8(vandq_u8(q, m4));
            w->u[4 * j + 2 + h] = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        }
}
TBC__K_INLINE void tbc__kneon_unpack_q5_K(const uint8_t *b, tbc__kneon_w *w) {
    const tbc__block_q5_K *x = (const tbc__block_q5_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    tbc__kneon_scales_q45(x->scales, tbc__k_h2f(x->dmin), w);
    const uint8x16_t m4 = vdupq_n_u8(15), b4 = vdupq_n_u8(16);
    for (int j = 0; j < 4; j++)
        for (int h = 0; h < 2; h++) {
            uint8x16_t q = vld1q_u8(x->qs + 32 * j + 16 * h), qh = vld1q_u8(x->qh + 16 * h);
            w->u[4 * j + h] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q, m4), vandq_u8(tbc__kneon_shl(qh, 4 - 2 * j), b4)));
            w->u[4 * j + 2 + h] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(tbc__kneon_shl(qh, 3 - 2 * j), b4)));
        }
}
TBC__K_INLINE void tbc__kneon_unpack_q6_K(const uint8_t *b, tbc__kneon_w *w) {
    const tbc__block_q6_K *x = (const tbc__block_q6_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    int16_t s16[16];
    for (int k = 0; k < 16; k++) s16[k] = x->scales[k];
    tbc__kneon_scales(s16, 32, w);
    const uint8x16_t m4 = vdupq_n_u8(15), m30 = vdupq_n_u8(0x30);
    for (int k = 0; k < 16; k++) {  // chunk k = (n, quarter q, half)
        int nn = k / 8, q = (k / 2) % 4, h = k % 2;
        uint8x16_t l = vld1q_u8(x->ql + 64 * nn + 32 * (q & 1) + 16 * h), hi = vld1q_u8(x->qh + 32 * nn + 16 * h);
        uint8x16_t lo = q >= 2 ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
        w->u[k] = vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(tbc__kneon_shl(hi, 4 - 2 * q), m30)));
    }
}
TBC__K_INLINE void tbc__kneon_unpack_q3_K(const uint8_t *b, tbc__kneon_w *w) {
    const tbc__block_q3_K *x = (const tbc__block_q3_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    int8_t sc[16];
    int16_t s16[16];
    tbc__k_scales_q3(x->scales, sc);
    for (int k = 0; k < 16; k++) s16[k] = sc[k];
    tbc__kneon_scales(s16, 4, w);
    const uint8x16_t m2 = vdupq_n_u8(3), b2 = vdupq_n_u8(4);
    for (int k = 0; k < 16; k++) {  // chunk k = (n, j, half); hmask bit 4n+j
        int nn = k / 8, j = (k / 2) % 4, h = k % 2;
        uint8x16_t q = vld1q_u8(x->qs + 32 * nn + 16 * h), hm = vld1q_u8(x->hmask + 16 * h);
        uint8x16_t lo = vandq_u8(tbc__kneon_shl(q, -2 * j), m2);
        w->u[k] = vreinterpretq_s8_u8(vorrq_u8(lo, vandq_u8(tbc__kneon_shl(hm, 2 - (4 * nn + j)), b2)));
    }
}
TBC__K_INLINE void tbc__kneon_unpack_q2_K(const uint8_t *b, tbc__kneon_w *w) {
    const tbc__block_q2_K *x = (const tbc__block_q2_K *)(const void *)b;
    w->d = tbc__k_h2f(x->d);
    int16_t s16[16], m16[16];
    for (int k = 0; k < 16; k++) { s16[k] = x->scales[k] & 15; m16[k] = x->scales[k] >> 4; }
    tbc__kneon_scales(s16, 0, w);
    tbc__kneon_mins(m16, tbc__k_h2f(x->dmin), w);
    const uint8x16_t m2 = vdupq_n_u8(3);
    for (int k = 0; k < 16; k++) {
        int nn = k / 8, j = (k / 2) % 4, h = k % 2;
        w->u[k] = vreinterpretq_s8_u8(vandq_u8(tbc__kneon_shl(vld1q_u8(x->qs + 32 * nn + 16 * h), -2 * j), m2));
    }
}

TBC__K_INLINE int32x4_t tbc__kneon_dot16(int8x16_t u, int8x16_t a) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), u, a);
#else
    int16x8_t p = vmull_s8(vget_low_s8(u), vget_low_s8(a));
    p = vmlal_high_s8(p, u, a);  // |u*a| <= 63*127: two products fit int16
    return vpaddlq_s16(p);
#endif
}
typedef struct tbc__kneon_y { float32x4_t v[4]; } tbc__kneon_y;
typedef float32x4_t tbc__kneon_acc;
TBC__K_INLINE tbc__kneon_y tbc__kneon_ymin(const tbc__block_q8_K *a) {
    tbc__kneon_y y;
    for (int g = 0; g < 4; g++) y.v[g] = vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vld1_s16(a->bsums + 4 * g))), a->d);
    return y;
}
TBC__K_INLINE float32x4_t tbc__kneon_zero(void) { return vdupq_n_f32(0.0f); }
TBC__K_INLINE float tbc__kneon_hsum(float32x4_t v) { return vaddvq_f32(v); }
TBC__K_INLINE float32x4_t tbc__kneon_pair(const tbc__kneon_w *w, const tbc__block_q8_K *a, const tbc__kneon_y *y,
                                          float32x4_t acc, int has_off, int has_min) {
    int32x4_t s = vdupq_n_s32(0);
    for (int g = 0; g < 4; g++) {
        int32x4_t d0 = tbc__kneon_dot16(w->u[4 * g + 0], vld1q_s8(a->qs + 64 * g));
        int32x4_t d1 = tbc__kneon_dot16(w->u[4 * g + 1], vld1q_s8(a->qs + 64 * g + 16));
        int32x4_t d2 = tbc__kneon_dot16(w->u[4 * g + 2], vld1q_s8(a->qs + 64 * g + 32));
        int32x4_t d3 = tbc__kneon_dot16(w->u[4 * g + 3], vld1q_s8(a->qs + 64 * g + 48));
        // lane k of t = whole sum of sub-block 4g+k
        int32x4_t t = vpaddq_s32(vpaddq_s32(d0, d1), vpaddq_s32(d2, d3));
        s = vmlaq_s32(s, t, w->s[g]);
    }
    if (has_off) {
        int16x8_t b0 = vld1q_s16(a->bsums), b1 = vld1q_s16(a->bsums + 8);
        s = vmlal_s16(s, vget_low_s16(w->o[0]), vget_low_s16(b0));
        s = vmlal_high_s16(s, w->o[0], b0);
        s = vmlal_s16(s, vget_low_s16(w->o[1]), vget_low_s16(b1));
        s = vmlal_high_s16(s, w->o[1], b1);
    }
    acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vdupq_n_f32(w->d * a->d));
    if (has_min)
        for (int g = 0; g < 4; g++) acc = vfmaq_f32(acc, w->x[g], y->v[g]);
    return acc;
}
TBC__K_DRIVER(kneon)
#define TBC__KNEON_DEF(T, BS, OFF, MIN)                                                                                \
    TBC__K_FN void tbc__gemm_##T##_neon(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,    \
                                     size_t lda, float *out, size_t ldo) {                                             \
        tbc__kneon_gemm(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__kneon_unpack_##T, OFF, MIN);                     \
    }
TBC__KNEON_DEF(q2_K, 84, 0, 1)
TBC__KNEON_DEF(q3_K, 110, 1, 0)
TBC__KNEON_DEF(q4_K, 144, 0, 1)
TBC__KNEON_DEF(q5_K, 176, 0, 1)
TBC__KNEON_DEF(q6_K, 210, 1, 0)
#undef TBC__KNEON_DEF

// vcvtnq rounds half to even regardless of the rounding mode, matching the reference.
TBC__K_FN void tbc__quant_q8_K_neon(const float *src, void *dst, int64_t n) {
    tbc__block_q8_K *y = (tbc__block_q8_K *)dst;
    for (int64_t i = 0; i < n / TBC__QK_K; i++) {
        const float *x = src + i * 256;
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < 256; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        float amax = vmaxvq_f32(m);
        if (!(amax > 0.0f)) { memset(&y[i], 0, sizeof y[i]); continue; }
        float max = 0.0f;
        for (int j = 0; j < 256; j++) if (fabsf(x[j]) == amax) { max = x[j]; break; }
        float iscale = -127.0f / max;
        for (int j = 0; j < 256; j += 16) {
            int32x4_t q[4];
            for (int k = 0; k < 4; k++)
                q[k] = vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4 * k), iscale)), vdupq_n_s32(127));
            int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1])), b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
            vst1q_s8(y[i].qs + j, vcombine_s8(vmovn_s16(a), vmovn_s16(b)));
            y[i].bsums[j / 16] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
        }
        y[i].d = 1.0f / iscale;
    }
}
#endif  // TBC__K_HAVE_NEON

// ---- best available path (chosen at compile time)
#if defined(TBC__K_HAVE_AVX512)
#define TBC__K_BEST(T) tbc__gemm_##T##_avx512
#elif defined(TBC__K_HAVE_AVX2)
#define TBC__K_BEST(T) tbc__gemm_##T##_avx2
#elif defined(TBC__K_HAVE_NEON)
#define TBC__K_BEST(T) tbc__gemm_##T##_neon
#else
#define TBC__K_BEST(T) tbc__gemm_##T##_ref
#endif
#define TBC__K_GEMM(T)                                                                                                 \
    TBC__K_FN void tbc__gemm_##T(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A, size_t lda, \
                              float *out, size_t ldo) {                                                                \
        TBC__K_BEST(T)(n, nw, na, W, ldw, A, lda, out, ldo);                                                           \
    }
TBC__K_GEMM(q2_K)
TBC__K_GEMM(q3_K)
TBC__K_GEMM(q4_K)
TBC__K_GEMM(q5_K)
TBC__K_GEMM(q6_K)
#undef TBC__K_GEMM
#undef TBC__K_BEST

TBC__K_FN void tbc__quant_q8_K(const float *src, void *dst, int64_t n) {
#if defined(TBC__K_HAVE_AVX2)
    tbc__quant_q8_K_avx2(src, dst, n);
#elif defined(TBC__K_HAVE_NEON)
    tbc__quant_q8_K_neon(src, dst, n);
#else
    tbc__quant_q8_K_ref(src, dst, n);
#endif
}
