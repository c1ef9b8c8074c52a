// >>kernels
// Tensor types, fp16/bf16, block quantization, vector helpers and the gemm tiles of every matrix product.
//
// Conventions
//   gemm(n, nw, na, W, ldw, A, lda, out, ldo): out[j*ldo + i] = dot(row i of W, row j of A), 0<=i<nw, 0<=j<na.
//   n is the row length in elements (a multiple of the weight block); ldw/lda are byte strides between rows, ldo is
//   in floats. A is already in the weight type's vec_dot_type (tbc__vec_dot_type), converted with tbc__quantize,
//   exactly as ggml-cpu converts activations on x86, so quantized results can match llama.cpp.
//   Integer block types accumulate like ggml: sum over blocks of d_w * d_a * int_dot (+ m_w * s_a for Q4_1/Q5_1).
//   Each SIMD kernel has a scalar reference (tbc__gemm_ref) it is tested against; the ISA is chosen at compile time.
//   Rows of any byte alignment are accepted: block fields are read with memcpy.

#if defined(__GNUC__) || defined(__clang__)
#define TBC__INLINE inline __attribute__((always_inline))
#define TBC__MAYBE_UNUSED __attribute__((unused))
#else
#define TBC__INLINE inline
#define TBC__MAYBE_UNUSED
#endif
// Tiles keep their accumulators in registers only when the r/c loops are fully unrolled.
#if defined(__clang__)
#define TBC__UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define TBC__UNROLL _Pragma("GCC unroll 8")
#else
#define TBC__UNROLL
#endif

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define TBC__AVX2 1
#endif
#if defined(TBC__AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define TBC__AVX512 1
#if defined(__AVX512VNNI__)
#define TBC__AVX512VNNI 1
#endif
#endif
#if defined(TBC__AVX2) && (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))
#define TBC__VNNI256 1
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define TBC__NEON 1
#endif
#if defined(TBC__AVX2)
#include <immintrin.h>
#endif
// g++ 12 reports the deliberately undefined lanes inside its own AVX-512 intrinsics (_mm512_undefined_ps) as
// "may be used uninitialized" once they are inlined here; the warning is about the compiler's headers.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#if defined(TBC__NEON)
#include <arm_neon.h>
#endif

// Names of the compiled paths (tests and benchmarks print them).
#if defined(TBC__AVX512VNNI)
#define TBC__SIMD_NAME "avx512-vnni"
#elif defined(TBC__AVX512)
#define TBC__SIMD_NAME "avx512 (int: avx2)"
#elif defined(TBC__AVX2) && defined(TBC__VNNI256)
#define TBC__SIMD_NAME "avx2-vnni"
#elif defined(TBC__AVX2)
#define TBC__SIMD_NAME "avx2"
#elif defined(TBC__NEON) && defined(__ARM_FEATURE_DOTPROD)
#define TBC__SIMD_NAME "neon-dotprod"
#elif defined(TBC__NEON)
#define TBC__SIMD_NAME "neon"
#else
#define TBC__SIMD_NAME "scalar"
#endif

#if defined(TBC__AVX2)
static TBC__INLINE float tbc__hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif
#if defined(TBC__AVX512)
// Masked forms only: g++ 12 warns about the _mm*_undefined_* lanes of _mm512_reduce_add_ps and of the casts.
static TBC__INLINE float tbc__hsum16(__m512 v) {
    const __mmask16 all = (__mmask16)0xffff;
    v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, all, v, v, 0x4e));
    v = _mm512_add_ps(v, _mm512_mask_shuffle_f32x4(v, all, v, v, 0xb1));
    v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, all, v, 0x4e));
    v = _mm512_add_ps(v, _mm512_mask_permute_ps(v, all, v, 0xb1));
    return _mm512_cvtss_f32(v);
}
#endif

// ---------------------------------------------------------------------------------------------------- fp16 / bf16
static TBC__INLINE uint32_t tbc__f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static TBC__INLINE float tbc__bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static TBC__INLINE uint16_t tbc__ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static TBC__INLINE uint32_t tbc__ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

// Scalar IEEE half -> float. NaNs come out quiet with their payload, as F16C's vcvtph2ps does.
static TBC__MAYBE_UNUSED float tbc__f16_to_f32_ref(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return tbc__bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u));
    if (e == 0) {
        if (!m) return tbc__bits_f32(sign);
        e = 113;  // subnormal: normalise; the value is m * 2^-24
        while (!(m & 0x400u)) { m <<= 1; e--; }
        return tbc__bits_f32(sign | (e << 23) | ((m & 0x3ffu) << 13));
    }
    return tbc__bits_f32(sign | ((e + 112) << 23) | (m << 13));
}

// Scalar float -> half, round to nearest even (what ggml's F16C path and its scalar fallback do); overflow gives
// infinity; NaNs stay quiet NaNs with the top of the payload, as vcvtps2ph does.
static TBC__MAYBE_UNUSED uint16_t tbc__f32_to_f16_ref(float f) {
    uint32_t u = tbc__f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // >= 65520 rounds to infinity
    if (a < 0x38800000u) {                                     // below 2^-14: subnormal half (or zero)
        if (a <= 0x33000000u) return (uint16_t)sign;            // <= 2^-25 rounds to zero (tie goes to even 0)
        uint32_t mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
        uint32_t r = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = (a - 0x38000000u) >> 13, rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

static TBC__INLINE float tbc__f16_to_f32(uint16_t h) {
#if defined(TBC__AVX2)
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
#else
    return tbc__f16_to_f32_ref(h);
#endif
}
static TBC__INLINE uint16_t tbc__f32_to_f16(float f) {
#if defined(TBC__AVX2)
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
#else
    return tbc__f32_to_f16_ref(f);
#endif
}
static TBC__INLINE float tbc__bf16_to_f32(uint16_t h) { return tbc__bits_f32((uint32_t)h << 16); }
// Round to nearest even, subnormals kept, NaN forced quiet: ggml_compute_fp32_to_bf16.
static TBC__INLINE uint16_t tbc__f32_to_bf16(float f) {
    uint32_t u = tbc__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

// ---------------------------------------------------------------------------------------------------- block types
// Byte-compatible with ggml-common.h. fp16 fields are raw IEEE half bits.
#define TBC__QK 32
typedef struct tbc__block_q4_0 { uint16_t d; uint8_t qs[16]; } tbc__block_q4_0;   // x = (q - 8) * d
typedef struct tbc__block_q4_1 { uint16_t d, m; uint8_t qs[16]; } tbc__block_q4_1; // x = q * d + m
typedef struct tbc__block_q5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } tbc__block_q5_0; // x = (q - 16) * d
typedef struct tbc__block_q5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } tbc__block_q5_1;
typedef struct tbc__block_q8_0 { uint16_t d; int8_t qs[32]; } tbc__block_q8_0;    // x = q * d
typedef struct tbc__block_q8_1 { uint16_t d, s; int8_t qs[32]; } tbc__block_q8_1; // s = fp16(d * sum q)
// Nibble layout: qs[j] low = element j, high = element j+16. qh bit j = bit 4 of element j.
typedef char tbc__check_q4_0[sizeof(tbc__block_q4_0) == 18 ? 1 : -1];
typedef char tbc__check_q4_1[sizeof(tbc__block_q4_1) == 20 ? 1 : -1];
typedef char tbc__check_q5_0[sizeof(tbc__block_q5_0) == 22 ? 1 : -1];
typedef char tbc__check_q5_1[sizeof(tbc__block_q5_1) == 24 ? 1 : -1];
typedef char tbc__check_q8_0[sizeof(tbc__block_q8_0) == 34 ? 1 : -1];
typedef char tbc__check_q8_1[sizeof(tbc__block_q8_1) == 36 ? 1 : -1];

// K-quants (parts/kernels_k.h, included after this file).
typedef void (*tbc__gemm_fn)(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,
                             size_t lda, float *out, size_t ldo);
#define TBC__KQUANT_DECL(T) \
    static void tbc__dequant_##T(const void *src, float *dst, int64_t n); \
    static void tbc__quant_##T(const float *src, void *dst, int64_t n); \
    static void tbc__gemm_##T##_ref(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A, \
                                    size_t lda, float *out, size_t ldo); \
    static void tbc__gemm_##T(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A, \
                              size_t lda, float *out, size_t ldo);
TBC__KQUANT_DECL(q2_K)
TBC__KQUANT_DECL(q3_K)
TBC__KQUANT_DECL(q4_K)
TBC__KQUANT_DECL(q5_K)
TBC__KQUANT_DECL(q6_K)
#undef TBC__KQUANT_DECL
static TBC__MAYBE_UNUSED void tbc__quant_q8_K(const float *src, void *dst, int64_t n);
static TBC__MAYBE_UNUSED void tbc__dequant_q8_K(const void *src, float *dst, int64_t n);

// ---------------------------------------------------------------------------------------------------- type table
typedef struct tbc__type_info {
    const char *name;
    int block;        // values per block
    int bytes;        // bytes per block
    tbc_type vec_dot; // what activations are converted to before a product with this weight type
} tbc__type_info;

static const tbc__type_info tbc__types[TBC_TYPE_COUNT_] = {
    {"F32", 1, 4, TBC_TYPE_F32},       {"F16", 1, 2, TBC_TYPE_F16},        // 0, 1
    {"Q4_0", 32, 18, TBC_TYPE_Q8_0},   {"Q4_1", 32, 20, TBC_TYPE_Q8_1},    // 2, 3
    {NULL, 0, 0, TBC_TYPE_F32},        {NULL, 0, 0, TBC_TYPE_F32},         // 4, 5: removed Q4_2/Q4_3
    {"Q5_0", 32, 22, TBC_TYPE_Q8_0},   {"Q5_1", 32, 24, TBC_TYPE_Q8_1},    // 6, 7
    {"Q8_0", 32, 34, TBC_TYPE_Q8_0},   {"Q8_1", 32, 36, TBC_TYPE_Q8_1},    // 8, 9
    {"Q2_K", 256, 84, TBC_TYPE_Q8_K},  {"Q3_K", 256, 110, TBC_TYPE_Q8_K},  // 10, 11
    {"Q4_K", 256, 144, TBC_TYPE_Q8_K}, {"Q5_K", 256, 176, TBC_TYPE_Q8_K},  // 12, 13
    {"Q6_K", 256, 210, TBC_TYPE_Q8_K}, {"Q8_K", 256, 292, TBC_TYPE_Q8_K},  // 14, 15
    {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32},
    {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32},
    {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32},
    {NULL, 0, 0, TBC_TYPE_F32}, {NULL, 0, 0, TBC_TYPE_F32},           // 16..29: IQ types, not supported
    {"BF16", 1, 2, TBC_TYPE_BF16},                                     // 30
};

static TBC__MAYBE_UNUSED int tbc__type_known(tbc_type t) { return (int)t >= 0 && (int)t < (int)TBC_TYPE_COUNT_ && tbc__types[t].name; }
static TBC__MAYBE_UNUSED int tbc__type_block(tbc_type t) { return tbc__type_known(t) ? tbc__types[t].block : 0; }
static TBC__MAYBE_UNUSED size_t tbc__type_bytes(tbc_type t) { return tbc__type_known(t) ? (size_t)tbc__types[t].bytes : 0; }
static TBC__MAYBE_UNUSED tbc_type tbc__vec_dot_type(tbc_type t) { return tbc__type_known(t) ? tbc__types[t].vec_dot : TBC_TYPE_F32; }
// Bytes of a row of n elements; the caller has checked that n is a multiple of the block size.
static TBC__MAYBE_UNUSED size_t tbc__row_bytes(tbc_type t, int64_t n) {
    int b = tbc__type_block(t);
    return b ? (size_t)(n / b) * tbc__type_bytes(t) : 0;
}

// ---------------------------------------------------------------------------------------------------- quantize
// Round half to even like vroundps(_MM_ROUND_NEAREST); exact for |v| < 2^23, which covers every use here.
static TBC__INLINE float tbc__round_even(float v) {
    float a = fabsf(v);
    if (!(a < 8388608.0f)) return v;
    float r = (a + 8388608.0f) - 8388608.0f;  // the add rounds to nearest even in the default FP mode
    return v < 0 ? -r : r;
}

// Activation Q8_0/Q8_1 exactly as ggml's x86 quantize_row_q8_0/q8_1: amax = max|x|, d = amax/127 stored as fp16,
// q = round-half-even(x * (127/amax)) (the float reciprocal, not 1/d); Q8_1 adds s = fp16(d * sum(q)) with the
// unrounded d.
static TBC__MAYBE_UNUSED void tbc__quant_q8_01_ref(const float *x, uint8_t *y, int64_t n, int with_sum) {
    size_t bs = with_sum ? 36 : 34, qo = with_sum ? 4 : 2;
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bs) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) { float a = fabsf(x[j]); amax = a > amax ? a : amax; }
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d);
        memcpy(y, &dh, 2);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            int q = (int)tbc__round_even(x[j] * id);
            q = q > 127 ? 127 : q < -128 ? -128 : q;
            y[qo + j] = (uint8_t)(int8_t)q;
            sum += q;
        }
        if (with_sum) { uint16_t sh = tbc__f32_to_f16(d * (float)sum); memcpy(y + 2, &sh, 2); }
    }
}

static TBC__MAYBE_UNUSED void tbc__quant_q8_01(const float *x, uint8_t *y, int64_t n, int with_sum) {
#if defined(TBC__AVX2)
    size_t bs = with_sum ? 36 : 34, qo = with_sum ? 4 : 2;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += bs) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16);
        __m256 v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d);
        memcpy(y, &dh, 2);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        if (with_sum) {
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
            uint16_t sh = tbc__f32_to_f16(d * (float)_mm_cvtsi128_si32(s4));
            memcpy(y + 2, &sh, 2);
        }
        // packs work per 128-bit lane; the permute restores element order
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)(y + qo), p);
    }
#else
    tbc__quant_q8_01_ref(x, y, n, with_sum);
#endif
}

// Weight quantizers: ggml's reference quantizers (what llama-quantize writes).
static TBC__MAYBE_UNUSED void tbc__quant_q4_0(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 18) {
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < 32; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); vmax = x[j]; }
        const float d = vmax / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d);
        memcpy(y, &dh, 2);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 8.5f), q1 = (int)(int8_t)(x[j + 16] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0; q1 = q1 > 15 ? 15 : q1;
            y[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}
static TBC__MAYBE_UNUSED void tbc__quant_q4_1(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 20) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) { lo = x[j] < lo ? x[j] : lo; hi = x[j] > hi ? x[j] : hi; }
        const float d = (hi - lo) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d), mh = tbc__f32_to_f16(lo);
        memcpy(y, &dh, 2); memcpy(y + 2, &mh, 2);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)((x[j] - lo) * id + 0.5f), q1 = (int)(int8_t)((x[j + 16] - lo) * id + 0.5f);
            q0 = q0 > 15 ? 15 : q0; q1 = q1 > 15 ? 15 : q1;
            y[4 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}
static TBC__MAYBE_UNUSED void tbc__quant_q5_0(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 22) {
        float amax = 0.0f, vmax = 0.0f;
        for (int j = 0; j < 32; j++) if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); vmax = x[j]; }
        const float d = vmax / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d);
        memcpy(y, &dh, 2);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(x[j] * id + 16.5f), q1 = (int)(int8_t)(x[j + 16] * id + 16.5f);
            q0 = q0 > 31 ? 31 : q0; q1 = q1 > 31 ? 31 : q1;
            y[6 + j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        memcpy(y + 2, &qh, 4);
    }
}
static TBC__MAYBE_UNUSED void tbc__quant_q5_1(const float *x, uint8_t *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 24) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) { lo = x[j] < lo ? x[j] : lo; hi = x[j] > hi ? x[j] : hi; }
        const float d = (hi - lo) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = tbc__f32_to_f16(d), mh = tbc__f32_to_f16(lo);
        memcpy(y, &dh, 2); memcpy(y + 2, &mh, 2);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(uint8_t)((x[j] - lo) * id + 0.5f), q1 = (int)(uint8_t)((x[j + 16] - lo) * id + 0.5f);
            q0 = q0 > 31 ? 31 : q0; q1 = q1 > 31 ? 31 : q1;
            y[8 + j] = (uint8_t)((q0 & 15) | ((q1 & 15) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        memcpy(y + 4, &qh, 4);
    }
}

// ---------------------------------------------------------------------------------------------------- dequantize
static TBC__MAYBE_UNUSED void tbc__dequant_q4_01(const uint8_t *x, float *y, int64_t n, int with_min) {
    size_t bs = with_min ? 20 : 18, qo = with_min ? 4 : 2;
    for (int64_t b = 0; b < n / 32; b++, x += bs, y += 32) {
        const float d = tbc__f16_to_f32(tbc__ld16(x)), m = with_min ? tbc__f16_to_f32(tbc__ld16(x + 2)) : -8.0f * d;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(x[qo + j] & 15) * d + m;
            y[j + 16] = (float)(x[qo + j] >> 4) * d + m;
        }
    }
}
static TBC__MAYBE_UNUSED void tbc__dequant_q5_01(const uint8_t *x, float *y, int64_t n, int with_min) {
    size_t bs = with_min ? 24 : 22, ho = with_min ? 4 : 2;
    for (int64_t b = 0; b < n / 32; b++, x += bs, y += 32) {
        const float d = tbc__f16_to_f32(tbc__ld16(x)), m = with_min ? tbc__f16_to_f32(tbc__ld16(x + 2)) : -16.0f * d;
        const uint32_t qh = tbc__ld32(x + ho);
        for (int j = 0; j < 16; j++) {
            int q0 = (x[ho + 4 + j] & 15) | (int)(((qh >> j) & 1u) << 4);
            int q1 = (x[ho + 4 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4);
            y[j] = (float)q0 * d + m;
            y[j + 16] = (float)q1 * d + m;
        }
    }
}
static TBC__MAYBE_UNUSED void tbc__dequant_q8_01(const uint8_t *x, float *y, int64_t n, int with_sum) {
    size_t bs = with_sum ? 36 : 34, qo = with_sum ? 4 : 2;
    for (int64_t b = 0; b < n / 32; b++, x += bs, y += 32) {
        const float d = tbc__f16_to_f32(tbc__ld16(x));
        for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)x[qo + j] * d;
    }
}

static TBC__MAYBE_UNUSED void tbc__f16_to_f32_row(int64_t n, const uint16_t *x, float *y) {
    int64_t i = 0;
#if defined(TBC__AVX2)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i))));
#endif
    for (; i < n; i++) y[i] = tbc__f16_to_f32(x[i]);
}
// Bit-exact with ggml_cpu_fp32_to_fp16 (round to nearest even).
static TBC__MAYBE_UNUSED void tbc__f32_to_f16_row(int64_t n, const float *x, uint16_t *y) {
    int64_t i = 0;
#if defined(TBC__AVX2)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) y[i] = tbc__f32_to_f16(x[i]);
}

// Decodes n values of type t; returns 0 when t has no decoder.
static TBC__MAYBE_UNUSED int tbc__dequantize(tbc_type t, const void *src, float *dst, int64_t n) {
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case TBC_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 1;
    case TBC_TYPE_F16: {
        int64_t i = 0;
        for (; i < n; i++) dst[i] = tbc__f16_to_f32(tbc__ld16(s + 2 * i));
        return 1;
    }
    case TBC_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = tbc__bf16_to_f32(tbc__ld16(s + 2 * i));
        return 1;
    case TBC_TYPE_Q4_0: tbc__dequant_q4_01(s, dst, n, 0); return 1;
    case TBC_TYPE_Q4_1: tbc__dequant_q4_01(s, dst, n, 1); return 1;
    case TBC_TYPE_Q5_0: tbc__dequant_q5_01(s, dst, n, 0); return 1;
    case TBC_TYPE_Q5_1: tbc__dequant_q5_01(s, dst, n, 1); return 1;
    case TBC_TYPE_Q8_0: tbc__dequant_q8_01(s, dst, n, 0); return 1;
    case TBC_TYPE_Q8_1: tbc__dequant_q8_01(s, dst, n, 1); return 1;
    case TBC_TYPE_Q2_K: tbc__dequant_q2_K(src, dst, n); return 1;
    case TBC_TYPE_Q3_K: tbc__dequant_q3_K(src, dst, n); return 1;
    case TBC_TYPE_Q4_K: tbc__dequant_q4_K(src, dst, n); return 1;
    case TBC_TYPE_Q5_K: tbc__dequant_q5_K(src, dst, n); return 1;
    case TBC_TYPE_Q6_K: tbc__dequant_q6_K(src, dst, n); return 1;
    case TBC_TYPE_Q8_K: tbc__dequant_q8_K(src, dst, n); return 1;
    default: return 0;
    }
}

// Encodes n floats as type t. F16/BF16/Q8_0/Q8_1/Q8_K are the activation conversions, bit-exact with ggml-cpu on
// x86; the other types use ggml's reference weight quantizers. Returns 0 when t has no encoder.
static TBC__MAYBE_UNUSED int tbc__quantize(tbc_type t, const float *src, void *dst, int64_t n) {
    uint8_t *d = (uint8_t *)dst;
    switch (t) {
    case TBC_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); return 1;
    case TBC_TYPE_F16: {
        int64_t i = 0;
#if defined(TBC__AVX2)
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(void *)(d + 2 * i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
        for (; i < n; i++) { uint16_t h = tbc__f32_to_f16(src[i]); memcpy(d + 2 * i, &h, 2); }
        return 1;
    }
    case TBC_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = tbc__f32_to_bf16(src[i]); memcpy(d + 2 * i, &h, 2); }
        return 1;
    case TBC_TYPE_Q4_0: tbc__quant_q4_0(src, d, n); return 1;
    case TBC_TYPE_Q4_1: tbc__quant_q4_1(src, d, n); return 1;
    case TBC_TYPE_Q5_0: tbc__quant_q5_0(src, d, n); return 1;
    case TBC_TYPE_Q5_1: tbc__quant_q5_1(src, d, n); return 1;
    case TBC_TYPE_Q8_0: tbc__quant_q8_01(src, d, n, 0); return 1;
    case TBC_TYPE_Q8_1: tbc__quant_q8_01(src, d, n, 1); return 1;
    case TBC_TYPE_Q2_K: tbc__quant_q2_K(src, dst, n); return 1;
    case TBC_TYPE_Q3_K: tbc__quant_q3_K(src, dst, n); return 1;
    case TBC_TYPE_Q4_K: tbc__quant_q4_K(src, dst, n); return 1;
    case TBC_TYPE_Q5_K: tbc__quant_q5_K(src, dst, n); return 1;
    case TBC_TYPE_Q6_K: tbc__quant_q6_K(src, dst, n); return 1;
    case TBC_TYPE_Q8_K: tbc__quant_q8_K(src, dst, n); return 1;
    default: return 0;
    }
}

// ---------------------------------------------------------------------------------------------------- scalar gemm
static TBC__MAYBE_UNUSED float tbc__ldw_float(int kind, const uint8_t *p, int64_t k) {
    if (kind == 0) { float f; memcpy(&f, p + 4 * k, 4); return f; }
    if (kind == 1) return tbc__f16_to_f32(tbc__ld16(p + 2 * k));
    return tbc__bf16_to_f32(tbc__ld16(p + 2 * k));
}

// kind 0 = F32, 1 = F16, 2 = BF16 (both operands of the same type).
static TBC__MAYBE_UNUSED void tbc__gemm_float_ref(int kind, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw,
                                const void *A, size_t lda, float *out, size_t ldo) {
    for (int64_t j = 0; j < na; j++)
        for (int64_t i = 0; i < nw; i++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)i * ldw, *a = (const uint8_t *)A + (size_t)j * lda;
            double s = 0.0;  // reference: accumulate in double
            for (int64_t k = 0; k < n; k++) s += (double)tbc__ldw_float(kind, w, k) * (double)tbc__ldw_float(kind, a, k);
            out[(size_t)j * ldo + (size_t)i] = (float)s;
        }
}

// Integer values of one block (32 ints) of a weight type; *d scale, *m offset (Q4_1/Q5_1; else 0).
static TBC__MAYBE_UNUSED void tbc__unpack_block(tbc_type t, const uint8_t *x, int *q, float *d, float *m) {
    *d = tbc__f16_to_f32(tbc__ld16(x));
    *m = 0.0f;
    switch (t) {
    case TBC_TYPE_Q4_0: for (int j = 0; j < 16; j++) { q[j] = (x[2 + j] & 15) - 8; q[j + 16] = (x[2 + j] >> 4) - 8; } break;
    case TBC_TYPE_Q4_1:
        *m = tbc__f16_to_f32(tbc__ld16(x + 2));
        for (int j = 0; j < 16; j++) { q[j] = x[4 + j] & 15; q[j + 16] = x[4 + j] >> 4; }
        break;
    case TBC_TYPE_Q5_0: case TBC_TYPE_Q5_1: {
        int ho = t == TBC_TYPE_Q5_1 ? 4 : 2, off = t == TBC_TYPE_Q5_1 ? 0 : 16;
        uint32_t qh = tbc__ld32(x + ho);
        if (t == TBC_TYPE_Q5_1) *m = tbc__f16_to_f32(tbc__ld16(x + 2));
        for (int j = 0; j < 16; j++) {
            q[j] = ((x[ho + 4 + j] & 15) | (int)(((qh >> j) & 1u) << 4)) - off;
            q[j + 16] = ((x[ho + 4 + j] >> 4) | (int)(((qh >> (j + 16)) & 1u) << 4)) - off;
        }
        break;
    }
    default: for (int j = 0; j < 32; j++) q[j] = (int8_t)x[2 + j]; break;  // Q8_0
    }
}

static TBC__MAYBE_UNUSED void tbc__gemm_q_ref(tbc_type t, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw,
                            const void *A, size_t lda, float *out, size_t ldo) {
    const size_t wbs = tbc__type_bytes(t);
    const int q81 = tbc__vec_dot_type(t) == TBC_TYPE_Q8_1;
    const size_t abs_ = q81 ? 36 : 34, aqo = q81 ? 4 : 2;
    const int64_t nb = n / 32;
    for (int64_t j = 0; j < na; j++)
        for (int64_t i = 0; i < nw; i++) {
            const uint8_t *w = (const uint8_t *)W + (size_t)i * ldw, *a = (const uint8_t *)A + (size_t)j * lda;
            float sum = 0.0f;
            for (int64_t b = 0; b < nb; b++, w += wbs, a += abs_) {
                int q[32], isum = 0;
                float dw, mw;
                tbc__unpack_block(t, w, q, &dw, &mw);
                for (int k = 0; k < 32; k++) isum += q[k] * (int8_t)a[aqo + k];
                const float da = tbc__f16_to_f32(tbc__ld16(a));
                sum += (dw * da) * (float)isum;
                if (q81) sum += mw * tbc__f16_to_f32(tbc__ld16(a + 2));
            }
            out[(size_t)j * ldo + (size_t)i] = sum;
        }
}

// Scalar reference product of every type; returns 0 for a type without a product.
static TBC__MAYBE_UNUSED int tbc__gemm_ref(tbc_type t, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,
                         size_t lda, float *out, size_t ldo) {
    switch (t) {
    case TBC_TYPE_F32: tbc__gemm_float_ref(0, n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_F16: tbc__gemm_float_ref(1, n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_BF16: tbc__gemm_float_ref(2, n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q4_0: case TBC_TYPE_Q4_1: case TBC_TYPE_Q5_0: case TBC_TYPE_Q5_1: case TBC_TYPE_Q8_0:
        tbc__gemm_q_ref(t, n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q2_K: tbc__gemm_q2_K_ref(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q3_K: tbc__gemm_q3_K_ref(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q4_K: tbc__gemm_q4_K_ref(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q5_K: tbc__gemm_q5_K_ref(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q6_K: tbc__gemm_q6_K_ref(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    default: return 0;
    }
}

// ---------------------------------------------------------------------------------------------------- SIMD gemm
// Blocking: activation rows in chunks of TBC__ACHUNK (their blocks stay in L2), weight rows in tiles of 4 (which stay
// in L1 while every activation tile of the chunk passes over them), activation rows in tiles of up to 4.
#define TBC__ACHUNK 64
// Decode (one activation row): tiles of 8 weight rows where the tile supports it (AVX-512 integer tiles), else 4.
#define TBC__NR8 0

// The driver calls TILE(nr, nc, n, w, ldw, a, lda, out, ldo) with nr in {4, 1} and nc in 1..4, all constants.
#define TBC__GEMM_DRIVER(NAME, TILE)                                                                               \
    static void NAME(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A, size_t lda,     \
                     float *out, size_t ldo) {                                                                     \
        const uint8_t *w8 = (const uint8_t *)W, *a8 = (const uint8_t *)A;                                          \
        for (int64_t j0 = 0; j0 < na; j0 += TBC__ACHUNK) {                                                         \
            const int64_t j1 = j0 + TBC__ACHUNK < na ? j0 + TBC__ACHUNK : na;                                      \
            for (int64_t i = 0; i < nw;) {                                                                         \
                const int full = nw - i >= 4;                                                                      \
                const uint8_t *wi = w8 + (size_t)i * ldw;                                                          \
                for (int64_t j = j0; j < j1; j += 4) {                                                             \
                    const uint8_t *aj = a8 + (size_t)j * lda;                                                      \
                    float *o = out + (size_t)j * ldo + (size_t)i;                                                  \
                    const int64_t nc = j1 - j < 4 ? j1 - j : 4;                                                    \
                    if (TBC__NR8 && nc == 1 && nw - i >= 8 && j1 - j0 == 1) {                                       \
                        TILE(TBC__NR8, 1, n, wi, ldw, aj, lda, o, ldo);                                            \
                    } else if (full) {                                                                             \
                        if (nc == 4) TILE(4, 4, n, wi, ldw, aj, lda, o, ldo);                                      \
                        else if (nc == 3) TILE(4, 3, n, wi, ldw, aj, lda, o, ldo);                                 \
                        else if (nc == 2) TILE(4, 2, n, wi, ldw, aj, lda, o, ldo);                                 \
                        else TILE(4, 1, n, wi, ldw, aj, lda, o, ldo);                                              \
                    } else {                                                                                       \
                        if (nc == 4) TILE(1, 4, n, wi, ldw, aj, lda, o, ldo);                                      \
                        else if (nc == 3) TILE(1, 3, n, wi, ldw, aj, lda, o, ldo);                                 \
                        else if (nc == 2) TILE(1, 2, n, wi, ldw, aj, lda, o, ldo);                                 \
                        else TILE(1, 1, n, wi, ldw, aj, lda, o, ldo);                                              \
                    }                                                                                              \
                }                                                                                                  \
                i += TBC__NR8 && nw - i >= 8 && j1 - j0 == 1 ? 8 : full ? 4 : 1;                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

#if defined(TBC__AVX512)
// ---- AVX-512 float tiles: 16 lanes, masked tail, kind 0/1/2 = F32/F16/BF16
static TBC__INLINE __m512 tbc__x16_ld(int kind, const uint8_t *p) {
    if (kind == 0) return _mm512_loadu_ps((const float *)(const void *)p);
    if (kind == 1) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p)), 16));
}
static TBC__INLINE __m512 tbc__x16_ldm(int kind, const uint8_t *p, __mmask16 m) {
    if (kind == 0) return _mm512_maskz_loadu_ps(m, p);
    if (kind == 1) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
static TBC__INLINE void tbc__x16_ftile(int kind, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                       const uint8_t *A, size_t lda, float *out, size_t ldo) {
    __m512 acc[4][4];
    const size_t es = kind == 0 ? 4 : 2;
    TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 a[4];
        TBC__UNROLL for (int c = 0; c < NC; c++) a[c] = tbc__x16_ld(kind, A + (size_t)c * lda + (size_t)k * es);
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            const __m512 w = tbc__x16_ld(kind, W + (size_t)r * ldw + (size_t)k * es);
            TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(w, a[c], acc[r][c]);
        }
    }
    if (k < n) {
        const __mmask16 m = (__mmask16)((1u << (n - k)) - 1u);
        __m512 a[4];
        TBC__UNROLL for (int c = 0; c < NC; c++) a[c] = tbc__x16_ldm(kind, A + (size_t)c * lda + (size_t)k * es, m);
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            const __m512 w = tbc__x16_ldm(kind, W + (size_t)r * ldw + (size_t)k * es, m);
            TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm512_fmadd_ps(w, a[c], acc[r][c]);
        }
    }
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++)
        out[(size_t)c * ldo + (size_t)r] = tbc__hsum16(acc[r][c]);
}
#define TBC__FT_F32(NR, NC, ...) tbc__x16_ftile(0, NR, NC, __VA_ARGS__)
#define TBC__FT_F16(NR, NC, ...) tbc__x16_ftile(1, NR, NC, __VA_ARGS__)
#define TBC__FT_BF16(NR, NC, ...) tbc__x16_ftile(2, NR, NC, __VA_ARGS__)

#elif defined(TBC__AVX2)
// ---- AVX2 float tiles: 8 lanes, scalar tail
static TBC__INLINE __m256 tbc__x8_ld(int kind, const uint8_t *p) {
    if (kind == 0) return _mm256_loadu_ps((const float *)(const void *)p);
    if (kind == 1) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p)), 16));
}
static TBC__INLINE void tbc__x8_ftile(int kind, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                      const uint8_t *A, size_t lda, float *out, size_t ldo) {
    __m256 acc[4][4];
    const size_t es = kind == 0 ? 4 : 2;
    TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 a[4];
        TBC__UNROLL for (int c = 0; c < NC; c++) a[c] = tbc__x8_ld(kind, A + (size_t)c * lda + (size_t)k * es);
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            const __m256 w = tbc__x8_ld(kind, W + (size_t)r * ldw + (size_t)k * es);
            TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = _mm256_fmadd_ps(w, a[c], acc[r][c]);
        }
    }
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++) {
        float s = tbc__hsum8(acc[r][c]);
        for (int64_t kk = k; kk < n; kk++)
            s += tbc__ldw_float(kind, W + (size_t)r * ldw, kk) * tbc__ldw_float(kind, A + (size_t)c * lda, kk);
        out[(size_t)c * ldo + (size_t)r] = s;
    }
}
#define TBC__FT_F32(NR, NC, ...) tbc__x8_ftile(0, NR, NC, __VA_ARGS__)
#define TBC__FT_F16(NR, NC, ...) tbc__x8_ftile(1, NR, NC, __VA_ARGS__)
#define TBC__FT_BF16(NR, NC, ...) tbc__x8_ftile(2, NR, NC, __VA_ARGS__)

#elif defined(TBC__NEON)
// ---- NEON float tiles: 4 lanes, scalar tail
static TBC__INLINE float32x4_t tbc__n4_ld(int kind, const uint8_t *p) {
    if (kind == 0) return vld1q_f32((const float *)(const void *)p);
    if (kind == 1) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(const void *)p)));
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(const void *)p), 16));
}
static TBC__INLINE void tbc__n4_ftile(int kind, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                      const uint8_t *A, size_t lda, float *out, size_t ldo) {
    float32x4_t acc[4][4];
    const size_t es = kind == 0 ? 4 : 2;
    TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = vdupq_n_f32(0.0f);
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        float32x4_t a[4];
        TBC__UNROLL for (int c = 0; c < NC; c++) a[c] = tbc__n4_ld(kind, A + (size_t)c * lda + (size_t)k * es);
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            const float32x4_t w = tbc__n4_ld(kind, W + (size_t)r * ldw + (size_t)k * es);
            TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = vfmaq_f32(acc[r][c], w, a[c]);
        }
    }
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++) {
        float s = vaddvq_f32(acc[r][c]);
        for (int64_t kk = k; kk < n; kk++)
            s += tbc__ldw_float(kind, W + (size_t)r * ldw, kk) * tbc__ldw_float(kind, A + (size_t)c * lda, kk);
        out[(size_t)c * ldo + (size_t)r] = s;
    }
}
#define TBC__FT_F32(NR, NC, ...) tbc__n4_ftile(0, NR, NC, __VA_ARGS__)
#define TBC__FT_F16(NR, NC, ...) tbc__n4_ftile(1, NR, NC, __VA_ARGS__)
#define TBC__FT_BF16(NR, NC, ...) tbc__n4_ftile(2, NR, NC, __VA_ARGS__)
#endif

#if defined(TBC__FT_F32)
TBC__GEMM_DRIVER(tbc__gemm_f32_simd, TBC__FT_F32)
TBC__GEMM_DRIVER(tbc__gemm_f16_simd, TBC__FT_F16)
TBC__GEMM_DRIVER(tbc__gemm_bf16_simd, TBC__FT_BF16)
#define TBC__HAVE_FLOAT_SIMD 1
#endif

// ---- integer block tiles
// Per weight type: block bytes, offset of the quants, the offset subtracted from the unsigned quants (q - off is the
// signed value), and whether the activations are Q8_1 (then m_w * s_a is added per block).
#define TBC__WBS(t) ((t) == TBC_TYPE_Q4_0 ? 18 : (t) == TBC_TYPE_Q4_1 ? 20 : (t) == TBC_TYPE_Q5_0 ? 22 : (t) == TBC_TYPE_Q5_1 ? 24 : 34)
#define TBC__Q81(t) ((t) == TBC_TYPE_Q4_1 || (t) == TBC_TYPE_Q5_1)
#define TBC__OFF(t) ((t) == TBC_TYPE_Q4_0 ? 8 : (t) == TBC_TYPE_Q5_0 ? 16 : (t) == TBC_TYPE_Q8_0 ? 128 : 0)

#if defined(TBC__AVX512VNNI)
// Two blocks per 512-bit register. vpdpbusd multiplies unsigned weight bytes u = q + off by signed activation bytes;
// the accumulator starts at -off * (sum of the activation bytes of the lane), so each int32 lane ends as the signed
// partial dot product. Nibble types use lanes [lo nibbles blk0 | lo blk1 | hi blk0 | hi blk1] so the weights unpack
// with one shift; the activations (loaded once per tile) are permuted to match.
static TBC__INLINE __m512 tbc__v_scales(int perm, uint16_t h0, uint16_t h1) {
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | ((uint32_t)h1 << 16))));
    const __m512i idx = perm ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                             : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}
// Weights of blocks p and p + wbs (only p when !two: the other half is zero).
static TBC__INLINE void tbc__v_ldw(int t, int two, const uint8_t *p, __m512i *u, __m512 *d, __m512 *m) {
    const int wbs = TBC__WBS(t);
    *d = tbc__v_scales(t != TBC_TYPE_Q8_0, tbc__ld16(p), two ? tbc__ld16(p + wbs) : 0);
    if (t == TBC_TYPE_Q8_0) {
        __m512i z = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + 2)));
        z = _mm512_inserti64x4(z, two ? _mm256_loadu_si256((const __m256i *)(const void *)(p + 36)) : _mm256_setzero_si256(), 1);
        *u = _mm512_xor_si512(z, _mm512_set1_epi8((char)0x80));
        return;
    }
    const int qo = t == TBC_TYPE_Q4_0 ? 2 : t == TBC_TYPE_Q4_1 ? 4 : t == TBC_TYPE_Q5_0 ? 6 : 8;
    __m256i y = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(p + qo)));
    y = _mm256_inserti128_si256(y, two ? _mm_loadu_si128((const __m128i *)(const void *)(p + wbs + qo)) : _mm_setzero_si128(), 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
    z = _mm512_and_si512(z, _mm512_set1_epi8(15));
    if (t == TBC_TYPE_Q5_0 || t == TBC_TYPE_Q5_1) {
        const int ho = qo - 4;
        const uint64_t h0 = tbc__ld32(p + ho), h1 = two ? tbc__ld32(p + wbs + ho) : 0;
        const uint64_t bits = (h0 & 0xffffu) | ((h1 & 0xffffu) << 16) | ((h0 >> 16) << 32) | ((h1 >> 16) << 48);
        z = _mm512_or_si512(z, _mm512_maskz_mov_epi8((__mmask64)bits, _mm512_set1_epi8(16)));
    }
    *u = z;
    if (TBC__Q81(t)) {  // m in lane 0 of each block's lanes only: it is added once per block
        const uint16_t m0 = tbc__ld16(p + 2), m1 = two ? tbc__ld16(p + wbs + 2) : 0;
        *m = _mm512_maskz_mov_ps(0x0011, tbc__v_scales(1, m0, m1));
    }
}
// Activations of blocks p and p + abs (Q8_0 or Q8_1), permuted for nibble types.
static TBC__INLINE void tbc__v_lda(int t, int two, const uint8_t *p, __m512i *a, __m512i *neg, __m512 *d, __m512 *s) {
    const int q81 = TBC__Q81(t), abs_ = q81 ? 36 : 34, qo = q81 ? 4 : 2, perm = t != TBC_TYPE_Q8_0;
    __m512i z = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p + qo)));
    z = _mm512_inserti64x4(z, two ? _mm256_loadu_si256((const __m256i *)(const void *)(p + abs_ + qo)) : _mm256_setzero_si256(), 1);
    if (perm) z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    *a = z;
    const int off = TBC__OFF(t);
    *neg = off ? _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), z))
               : _mm512_setzero_si512();
    *d = tbc__v_scales(perm, tbc__ld16(p), two ? tbc__ld16(p + abs_) : 0);
    if (q81) *s = tbc__v_scales(1, tbc__ld16(p + 2), two ? tbc__ld16(p + abs_ + 2) : 0);
}
static TBC__INLINE void tbc__v_step(int t, int NR, int NC, int two, const uint8_t *W, size_t ldw, const uint8_t *A,
                                    size_t lda, __m512 acc[8][4]) {
    __m512i a[4], neg[4];
    __m512 da[4], sa[4];
    TBC__UNROLL for (int c = 0; c < 4; c++) sa[c] = _mm512_setzero_ps();
    TBC__UNROLL for (int c = 0; c < NC; c++) tbc__v_lda(t, two, A + (size_t)c * lda, &a[c], &neg[c], &da[c], &sa[c]);
    TBC__UNROLL for (int r = 0; r < NR; r++) {
        __m512i u;
        __m512 dw, mw = _mm512_setzero_ps();
        tbc__v_ldw(t, two, W + (size_t)r * ldw, &u, &dw, &mw);
        TBC__UNROLL for (int c = 0; c < NC; c++) {
            const __m512 p = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg[c], u, a[c]));
            acc[r][c] = _mm512_fmadd_ps(p, _mm512_mul_ps(dw, da[c]), acc[r][c]);
            if (TBC__Q81(t)) acc[r][c] = _mm512_fmadd_ps(mw, sa[c], acc[r][c]);
        }
    }
}
static TBC__INLINE void tbc__v_qtile(int t, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                     const uint8_t *A, size_t lda, float *out, size_t ldo) {
    const int wbs = TBC__WBS(t), abs_ = TBC__Q81(t) ? 36 : 34;
    const int64_t nb = n / 32;
    __m512 acc[8][4];
    TBC__UNROLL for (int r = 0; r < 8; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) tbc__v_step(t, NR, NC, 1, W + (size_t)b * wbs, ldw, A + (size_t)b * abs_, lda, acc);
    if (b < nb) tbc__v_step(t, NR, NC, 0, W + (size_t)b * wbs, ldw, A + (size_t)b * abs_, lda, acc);
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++)
        out[(size_t)c * ldo + (size_t)r] = tbc__hsum16(acc[r][c]);
}
#define TBC__QT_Q4_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q4_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q8_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q8_0, NR, NC, __VA_ARGS__)

#elif defined(TBC__AVX2)
// One block per 256-bit register, natural element order. Unsigned weights u = q + off (nibble types) meet signed
// activations in vpmaddubsw (no saturation: u <= 31) or vpdpbusd when VNNI is there; Q8_0 uses the sign trick
// |w| * sign(a, w) without VNNI (|w| <= 127 so no saturation either), the offset trick with it.
#if defined(TBC__VNNI256)
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define TBC__DPBUSD256(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#else
#define TBC__DPBUSD256(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#endif
#endif
static TBC__INLINE void tbc__w_ldw(int t, const uint8_t *p, __m256i *u, __m256 *d, __m256 *m) {
    *d = _mm256_set1_ps(tbc__f16_to_f32(tbc__ld16(p)));
    if (t == TBC_TYPE_Q8_0) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2));
#if defined(TBC__VNNI256)
        *u = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
#else
        *u = w;  // signed; the tile applies the sign trick
#endif
        return;
    }
    const int qo = t == TBC_TYPE_Q4_0 ? 2 : t == TBC_TYPE_Q4_1 ? 4 : t == TBC_TYPE_Q5_0 ? 6 : 8;
    const __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(p + qo));
    __m256i z = _mm256_inserti128_si256(_mm256_castsi128_si256(x), _mm_srli_epi16(x, 4), 1);
    z = _mm256_and_si256(z, _mm256_set1_epi8(15));
    if (t == TBC_TYPE_Q5_0 || t == TBC_TYPE_Q5_1) {
        // spread the 32 high bits over 32 bytes: byte k tests bit k
        const __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)tbc__ld32(p + qo - 4)),
            _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
        const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
        const __m256i hit = _mm256_cmpeq_epi8(_mm256_and_si256(bits, sel), sel);
        z = _mm256_or_si256(z, _mm256_and_si256(hit, _mm256_set1_epi8(16)));
    }
    *u = z;
    if (TBC__Q81(t)) *m = _mm256_set_ps(0, 0, 0, 0, 0, 0, 0, tbc__f16_to_f32(tbc__ld16(p + 2)));
}
static TBC__INLINE void tbc__w_step(int t, int NR, int NC, const uint8_t *W, size_t ldw, const uint8_t *A, size_t lda,
                                    __m256 acc[4][4]) {
    const int q81 = TBC__Q81(t), qo = q81 ? 4 : 2, off = TBC__OFF(t);
    __m256i a[4], neg[4];
    __m256 da[4], sa[4];
    TBC__UNROLL for (int c = 0; c < 4; c++) sa[c] = _mm256_setzero_ps();
    TBC__UNROLL for (int c = 0; c < NC; c++) {
        const uint8_t *p = A + (size_t)c * lda;
        a[c] = _mm256_loadu_si256((const __m256i *)(const void *)(p + qo));
        da[c] = _mm256_set1_ps(tbc__f16_to_f32(tbc__ld16(p)));
        if (q81) sa[c] = _mm256_set1_ps(tbc__f16_to_f32(tbc__ld16(p + 2)));
#if defined(TBC__VNNI256)
        neg[c] = off ? _mm256_sub_epi32(_mm256_setzero_si256(), TBC__DPBUSD256(_mm256_setzero_si256(), _mm256_set1_epi8((char)off), a[c]))
                     : _mm256_setzero_si256();
#else
        // int16 pair sums of -off * a (|.| <= 16 * 254); Q8_0 does not need it
        neg[c] = off && t != TBC_TYPE_Q8_0 ? _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_maddubs_epi16(_mm256_set1_epi8((char)off), a[c]))
                                           : _mm256_setzero_si256();
#endif
    }
    TBC__UNROLL for (int r = 0; r < NR; r++) {
        __m256i u;
        __m256 dw, mw = _mm256_setzero_ps();
        tbc__w_ldw(t, W + (size_t)r * ldw, &u, &dw, &mw);
#if !defined(TBC__VNNI256)
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i au = u;
        if (t == TBC_TYPE_Q8_0) au = _mm256_sign_epi8(u, u);
#endif
        TBC__UNROLL for (int c = 0; c < NC; c++) {
#if defined(TBC__VNNI256)
            const __m256i p32 = TBC__DPBUSD256(neg[c], u, a[c]);
#else
            __m256i p16;
            if (t == TBC_TYPE_Q8_0) p16 = _mm256_maddubs_epi16(au, _mm256_sign_epi8(a[c], u));
            else p16 = _mm256_add_epi16(_mm256_maddubs_epi16(au, a[c]), neg[c]);
            const __m256i p32 = _mm256_madd_epi16(p16, ones);
#endif
            acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), _mm256_mul_ps(dw, da[c]), acc[r][c]);
            if (q81) acc[r][c] = _mm256_fmadd_ps(mw, sa[c], acc[r][c]);
        }
    }
}
static TBC__INLINE void tbc__w_qtile(int t, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                     const uint8_t *A, size_t lda, float *out, size_t ldo) {
    const int wbs = TBC__WBS(t), abs_ = TBC__Q81(t) ? 36 : 34;
    const int64_t nb = n / 32;
    __m256 acc[4][4];
    TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) tbc__w_step(t, NR, NC, W + (size_t)b * wbs, ldw, A + (size_t)b * abs_, lda, acc);
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++)
        out[(size_t)c * ldo + (size_t)r] = tbc__hsum8(acc[r][c]);
}
#define TBC__QT_Q4_0(NR, NC, ...) tbc__w_qtile(TBC_TYPE_Q4_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q4_1(NR, NC, ...) tbc__w_qtile(TBC_TYPE_Q4_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_0(NR, NC, ...) tbc__w_qtile(TBC_TYPE_Q5_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_1(NR, NC, ...) tbc__w_qtile(TBC_TYPE_Q5_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q8_0(NR, NC, ...) tbc__w_qtile(TBC_TYPE_Q8_0, NR, NC, __VA_ARGS__)

#elif defined(TBC__NEON)
// One block = two int8x16 halves (elements 0-15, 16-31), signed weights (q - off), sdot or vmull.
static TBC__INLINE int32x4_t tbc__n_dot(int32x4_t acc, int8x16_t w0, int8x16_t w1, int8x16_t a0, int8x16_t a1) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdotq_s32(acc, w0, a0), w1, a1);
#else
    // |w*a| <= 128*127, so a pair of products fits in int16
    int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(a0));
    int16x8_t p1 = vmull_s8(vget_high_s8(w0), vget_high_s8(a0));
    int16x8_t p2 = vmull_s8(vget_low_s8(w1), vget_low_s8(a1));
    int16x8_t p3 = vmull_s8(vget_high_s8(w1), vget_high_s8(a1));
    acc = vpadalq_s16(acc, p0);
    acc = vpadalq_s16(acc, p1);
    acc = vpadalq_s16(acc, p2);
    return vpadalq_s16(acc, p3);
#endif
}
static TBC__INLINE void tbc__n_ldw(int t, const uint8_t *p, int8x16_t *w0, int8x16_t *w1, float *d, float *m) {
    *d = tbc__f16_to_f32(tbc__ld16(p));
    if (t == TBC_TYPE_Q8_0) { *w0 = vld1q_s8((const int8_t *)(p + 2)); *w1 = vld1q_s8((const int8_t *)(p + 18)); return; }
    const int qo = t == TBC_TYPE_Q4_0 ? 2 : t == TBC_TYPE_Q4_1 ? 4 : t == TBC_TYPE_Q5_0 ? 6 : 8;
    const uint8x16_t x = vld1q_u8(p + qo);
    uint8x16_t lo = vandq_u8(x, vdupq_n_u8(15)), hi = vshrq_n_u8(x, 4);
    if (t == TBC_TYPE_Q5_0 || t == TBC_TYPE_Q5_1) {
        static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint32_t qh = tbc__ld32(p + qo - 4);
        const uint8x8_t b0 = vdup_n_u8((uint8_t)qh), b1 = vdup_n_u8((uint8_t)(qh >> 8));
        const uint8x8_t b2 = vdup_n_u8((uint8_t)(qh >> 16)), b3 = vdup_n_u8((uint8_t)(qh >> 24));
        const uint8x16_t s = vld1q_u8(sel), sixteen = vdupq_n_u8(16);
        lo = vorrq_u8(lo, vandq_u8(vtstq_u8(vcombine_u8(b0, b1), s), sixteen));
        hi = vorrq_u8(hi, vandq_u8(vtstq_u8(vcombine_u8(b2, b3), s), sixteen));
    }
    const int off = TBC__OFF(t);
    *w0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8((int8_t)off));
    *w1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8((int8_t)off));
    *m = TBC__Q81(t) ? tbc__f16_to_f32(tbc__ld16(p + 2)) : 0.0f;
}
static TBC__INLINE void tbc__n_qtile(int t, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                     const uint8_t *A, size_t lda, float *out, size_t ldo) {
    const int wbs = TBC__WBS(t), q81 = TBC__Q81(t), abs_ = q81 ? 36 : 34, qo = q81 ? 4 : 2;
    const int64_t nb = n / 32;
    float32x4_t acc[4][4];
    float macc[4][4];
    TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++) { acc[r][c] = vdupq_n_f32(0.0f); macc[r][c] = 0.0f; }
    for (int64_t b = 0; b < nb; b++) {
        int8x16_t a0[4], a1[4];
        float da[4], sa[4];
        TBC__UNROLL for (int c = 0; c < NC; c++) {
            const uint8_t *p = A + (size_t)c * lda + (size_t)b * abs_;
            a0[c] = vld1q_s8((const int8_t *)(p + qo));
            a1[c] = vld1q_s8((const int8_t *)(p + qo + 16));
            da[c] = tbc__f16_to_f32(tbc__ld16(p));
            sa[c] = q81 ? tbc__f16_to_f32(tbc__ld16(p + 2)) : 0.0f;
        }
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            int8x16_t w0, w1;
            float dw, mw = 0.0f;
            tbc__n_ldw(t, W + (size_t)r * ldw + (size_t)b * wbs, &w0, &w1, &dw, &mw);
            TBC__UNROLL for (int c = 0; c < NC; c++) {
                const int32x4_t p = tbc__n_dot(vdupq_n_s32(0), w0, w1, a0[c], a1[c]);
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(p), dw * da[c]);
                if (q81) macc[r][c] += mw * sa[c];
            }
        }
    }
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++)
        out[(size_t)c * ldo + (size_t)r] = vaddvq_f32(acc[r][c]) + macc[r][c];
}
#define TBC__QT_Q4_0(NR, NC, ...) tbc__n_qtile(TBC_TYPE_Q4_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q4_1(NR, NC, ...) tbc__n_qtile(TBC_TYPE_Q4_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_0(NR, NC, ...) tbc__n_qtile(TBC_TYPE_Q5_0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_1(NR, NC, ...) tbc__n_qtile(TBC_TYPE_Q5_1, NR, NC, __VA_ARGS__)
#define TBC__QT_Q8_0(NR, NC, ...) tbc__n_qtile(TBC_TYPE_Q8_0, NR, NC, __VA_ARGS__)
#endif

#if defined(TBC__AVX512VNNI)
#undef TBC__NR8
#define TBC__NR8 8
#endif
#if defined(TBC__QT_Q4_0)
TBC__GEMM_DRIVER(tbc__gemm_q4_0_simd, TBC__QT_Q4_0)
TBC__GEMM_DRIVER(tbc__gemm_q4_1_simd, TBC__QT_Q4_1)
TBC__GEMM_DRIVER(tbc__gemm_q5_0_simd, TBC__QT_Q5_0)
TBC__GEMM_DRIVER(tbc__gemm_q5_1_simd, TBC__QT_Q5_1)
TBC__GEMM_DRIVER(tbc__gemm_q8_0_simd, TBC__QT_Q8_0)
#define TBC__HAVE_QUANT_SIMD 1
#endif

// Best compiled product for type t (A in tbc__vec_dot_type(t)); returns 0 for a type without a product.
static TBC__MAYBE_UNUSED int tbc__gemm(tbc_type t, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,
                     size_t lda, float *out, size_t ldo) {
    switch (t) {
#if defined(TBC__HAVE_FLOAT_SIMD)
    case TBC_TYPE_F32: tbc__gemm_f32_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_F16: tbc__gemm_f16_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_BF16: tbc__gemm_bf16_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
#endif
#if defined(TBC__HAVE_QUANT_SIMD)
    case TBC_TYPE_Q4_0: tbc__gemm_q4_0_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q4_1: tbc__gemm_q4_1_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q5_0: tbc__gemm_q5_0_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q5_1: tbc__gemm_q5_1_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q8_0: tbc__gemm_q8_0_simd(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
#endif
    case TBC_TYPE_Q2_K: tbc__gemm_q2_K(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q3_K: tbc__gemm_q3_K(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q4_K: tbc__gemm_q4_K(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q5_K: tbc__gemm_q5_K(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    case TBC_TYPE_Q6_K: tbc__gemm_q6_K(n, nw, na, W, ldw, A, lda, out, ldo); return 1;
    default: return tbc__gemm_ref(t, n, nw, na, W, ldw, A, lda, out, ldo);
    }
}

// ---------------------------------------------------------------------------------------------------- vectors
// Attention helpers: q.k dot products, weighted sums of values, KV-cache conversion.
static TBC__MAYBE_UNUSED float tbc__dot_f32(int64_t n, const float *a, const float *b) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(TBC__AVX512)
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    if (i + 16 <= n) { s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0); i += 16; }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
        i = n;
    }
    s = tbc__hsum16(_mm512_add_ps(s0, s1));
#elif defined(TBC__AVX2)
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s = tbc__hsum8(_mm256_add_ps(s0, s1));
#elif defined(TBC__NEON)
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    s = vaddvq_f32(vaddq_f32(s0, s1));
#endif
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// y += a * x
static TBC__MAYBE_UNUSED void tbc__axpy_f32(int64_t n, float *y, float a, const float *x) {
    int64_t i = 0;
#if defined(TBC__AVX512)
    const __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
#elif defined(TBC__AVX2)
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#elif defined(TBC__NEON)
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

static TBC__MAYBE_UNUSED float tbc__dot_f16_f32(int64_t n, const uint16_t *k, const float *q) {
    int64_t i = 0;
    float s = 0.0f;
#if defined(TBC__AVX512)
    __m512 s0 = _mm512_setzero_ps();
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(k + i))), _mm512_loadu_ps(q + i), s0);
    s = tbc__hsum16(s0);
#elif defined(TBC__AVX2)
    __m256 s0 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(k + i))), _mm256_loadu_ps(q + i), s0);
    s = tbc__hsum8(s0);
#elif defined(TBC__NEON)
    float32x4_t s0 = vdupq_n_f32(0.0f);
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(k + i))), vld1q_f32(q + i));
    s = vaddvq_f32(s0);
#endif
    for (; i < n; i++) s += tbc__f16_to_f32(k[i]) * q[i];
    return s;
}

// y += a * x, x in fp16
static TBC__MAYBE_UNUSED void tbc__axpy_f16(int64_t n, float *y, float a, const uint16_t *x) {
    int64_t i = 0;
#if defined(TBC__AVX512)
    const __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x + i))), _mm512_loadu_ps(y + i)));
#elif defined(TBC__AVX2)
    const __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i))), _mm256_loadu_ps(y + i)));
#elif defined(TBC__NEON)
    for (; i + 4 <= n; i += 4)
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))), a));
#endif
    for (; i < n; i++) y[i] += a * tbc__f16_to_f32(x[i]);
}

// ---------------------------------------------------------------------------------------------------- public
TBC__DEF const char *tbc_type_name(tbc_type t) { return tbc__type_known(t) ? tbc__types[t].name : NULL; }
TBC__DEF int tbc_type_block_size(tbc_type t) { return tbc__type_block(t); }
TBC__DEF size_t tbc_type_block_bytes(tbc_type t) { return tbc__type_bytes(t); }

static TBC__MAYBE_UNUSED tbc_result tbc__row_check(tbc_type t, const void *a, const void *b, int64_t n) {
    if (!tbc__type_known(t)) return TBC_ERR_TENSOR_TYPE;
    if (!a || !b || n < 0 || n % tbc__type_block(t) != 0) return TBC_ERR_INVALID_ARGUMENT;
    return TBC_OK;
}
TBC__DEF tbc_result tbc_quantize_row(tbc_type t, const float *src, void *dst, int64_t n) {
    tbc_result r = tbc__row_check(t, src, dst, n);
    if (r != TBC_OK) return r;
    return tbc__quantize(t, src, dst, n) ? TBC_OK : TBC_ERR_TENSOR_TYPE;
}
TBC__DEF tbc_result tbc_dequantize_row(tbc_type t, const void *src, float *dst, int64_t n) {
    tbc_result r = tbc__row_check(t, src, dst, n);
    if (r != TBC_OK) return r;
    return tbc__dequantize(t, src, dst, n) ? TBC_OK : TBC_ERR_TENSOR_TYPE;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
