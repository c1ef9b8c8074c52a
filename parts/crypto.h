// >>crypto (part: crypto.h)
// SHA-256 (FIPS 180-4), HMAC-SHA-256 (RFC 2104), HKDF-SHA-256 (RFC 5869), constant-time comparison and OS random
// bytes. Used by the cluster protocol (shared-key challenge-response, session keys, per-message tags) and by shard
// transfer (shard checksums, model identity). Nothing here allocates, prints or keeps global state.
//
// The block function has a portable reference (tbc__sha256_blocks_ref, always compiled) and, when the compiler
// targets it, a hardware version: x86 SHA-NI (__SHA__ with SSE4.1) or ARMv8 SHA2 (__ARM_FEATURE_SHA2).
// TBC__SHA256_HW is then defined and tbc__sha256_blocks_hw exists, so tests compare the two.

#if defined(__GNUC__) || defined(__clang__)
#define TBC__CRYPTO_UNUSED __attribute__((unused))
#else
#define TBC__CRYPTO_UNUSED
#endif

// Incremental state. Named _ctx because a typedef and the one-shot function tbc__sha256() cannot share a name.
typedef struct tbc__sha256_ctx {
    uint32_t h[8];      // chaining state A..H
    uint64_t n_bytes;   // total message length so far
    uint8_t buf[64];    // partial block
    uint32_t n_buf;     // bytes used in buf, always < 64
} tbc__sha256_ctx;

// First 32 bits of the fractional parts of the cube roots of the first 64 primes (FIPS 180-4 4.2.2).
static const uint32_t tbc__sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static TBC__CRYPTO_UNUSED uint32_t tbc__load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static TBC__CRYPTO_UNUSED void tbc__store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

// Zeroes key material in a way the compiler may not drop as a dead store.
static TBC__CRYPTO_UNUSED void tbc__wipe(void *p, size_t n) {
    volatile uint8_t *v = (volatile uint8_t *)p;
    while (n--) *v++ = 0;
}

#define TBC__ROTR32(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define TBC__SHA_CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))               // same truth table as (x&y)^(~x&z)
#define TBC__SHA_MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))      // same as (x&y)^(x&z)^(y&z)
#define TBC__SHA_BSIG0(x) (TBC__ROTR32(x, 2) ^ TBC__ROTR32(x, 13) ^ TBC__ROTR32(x, 22))
#define TBC__SHA_BSIG1(x) (TBC__ROTR32(x, 6) ^ TBC__ROTR32(x, 11) ^ TBC__ROTR32(x, 25))
#define TBC__SHA_SSIG0(x) (TBC__ROTR32(x, 7) ^ TBC__ROTR32(x, 18) ^ ((x) >> 3))
#define TBC__SHA_SSIG1(x) (TBC__ROTR32(x, 17) ^ TBC__ROTR32(x, 19) ^ ((x) >> 10))

// One round; callers rotate the variable names instead of shuffling eight values each round.
#define TBC__SHA_ROUND(a, b, c, d, e, f, g, h, i, wi)                                                              \
    do {                                                                                                           \
        uint32_t t1_ = h + TBC__SHA_BSIG1(e) + TBC__SHA_CH(e, f, g) + tbc__sha256_k[i] + (wi);                     \
        d += t1_;                                                                                                  \
        h = t1_ + TBC__SHA_BSIG0(a) + TBC__SHA_MAJ(a, b, c);                                                       \
    } while (0)

// The schedule kept as a 16-word ring: W[t] replaces W[t-16] in place.
#define TBC__SHA_SCHED(w, t)                                                                                       \
    (w[(t) & 15] += TBC__SHA_SSIG1(w[((t) - 2) & 15]) + w[((t) - 7) & 15] + TBC__SHA_SSIG0(w[((t) - 15) & 15]))

#define TBC__SHA_8ROUNDS(t, W)                                                                                     \
    do {                                                                                                           \
        TBC__SHA_ROUND(a, b, c, d, e, f, g, h, (t) + 0, W((t) + 0));                                               \
        TBC__SHA_ROUND(h, a, b, c, d, e, f, g, (t) + 1, W((t) + 1));                                               \
        TBC__SHA_ROUND(g, h, a, b, c, d, e, f, (t) + 2, W((t) + 2));                                               \
        TBC__SHA_ROUND(f, g, h, a, b, c, d, e, (t) + 3, W((t) + 3));                                               \
        TBC__SHA_ROUND(e, f, g, h, a, b, c, d, (t) + 4, W((t) + 4));                                               \
        TBC__SHA_ROUND(d, e, f, g, h, a, b, c, (t) + 5, W((t) + 5));                                               \
        TBC__SHA_ROUND(c, d, e, f, g, h, a, b, (t) + 6, W((t) + 6));                                               \
        TBC__SHA_ROUND(b, c, d, e, f, g, h, a, (t) + 7, W((t) + 7));                                               \
    } while (0)

// Portable compression of nblocks consecutive 64-byte blocks into h.
static TBC__CRYPTO_UNUSED void tbc__sha256_blocks_ref(uint32_t h8[8], const uint8_t *p, size_t nblocks) {
    for (; nblocks; nblocks--, p += 64) {
        uint32_t w[16];
        uint32_t a = h8[0], b = h8[1], c = h8[2], d = h8[3], e = h8[4], f = h8[5], g = h8[6], h = h8[7];
        int t;
        for (t = 0; t < 16; t++) w[t] = tbc__load_be32(p + 4 * t);
#define TBC__SHA_W_LOAD(t) w[t]
#define TBC__SHA_W_NEXT(t) TBC__SHA_SCHED(w, t)
        TBC__SHA_8ROUNDS(0, TBC__SHA_W_LOAD);
        TBC__SHA_8ROUNDS(8, TBC__SHA_W_LOAD);
        for (t = 16; t < 64; t += 8) TBC__SHA_8ROUNDS(t, TBC__SHA_W_NEXT);
#undef TBC__SHA_W_LOAD
#undef TBC__SHA_W_NEXT
        h8[0] += a; h8[1] += b; h8[2] += c; h8[3] += d; h8[4] += e; h8[5] += f; h8[6] += g; h8[7] += h;
    }
}

#if defined(__SHA__) && defined(__SSE4_1__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define TBC__SHA256_HW 1
#define TBC__SHA256_HW_NAME "x86 SHA-NI"

// sha256rnds2 keeps the state as two vectors, ABEF and CDGH (A in the top lane), and does two rounds per call
// using the low two lanes of W+K; sha256msg1/msg2 compute four schedule words from the previous sixteen.
static TBC__CRYPTO_UNUSED void tbc__sha256_blocks_hw(uint32_t h8[8], const uint8_t *p, size_t nblocks) {
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL); // big-endian words
    __m128i dcba = _mm_loadu_si128((const __m128i *)(const void *)&h8[0]);            // lanes 0..3 = A B C D
    __m128i hgfe = _mm_loadu_si128((const __m128i *)(const void *)&h8[4]);            // lanes 0..3 = E F G H
    __m128i badc = _mm_shuffle_epi32(dcba, 0xB1);                                      // B A D C
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);                                      // H G F E
    __m128i abef = _mm_alignr_epi8(badc, efgh, 8);                                     // F E B A
    __m128i cdgh = _mm_blend_epi16(efgh, badc, 0xF0);                                  // H G D C
#ifdef __AVX__
    // The SHA instructions exist only in legacy-SSE encoding: run with dirty upper YMM halves (say the caller just
    // did a 32-byte memcpy) every one of them pays an SSE/AVX transition, measured 100x slower here.
    _mm256_zeroupper();
#endif
    for (; nblocks; nblocks--, p += 64) {
        const __m128i abef0 = abef, cdgh0 = cdgh;
        __m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 0)), bswap);
        __m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 16)), bswap);
        __m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 32)), bswap);
        __m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)(p + 48)), bswap);
        __m128i wk;
        int q;
// Four rounds with schedule words m (group q). After the first rnds2 the CDGH register holds the new ABEF and the
// old ABEF is the new CDGH, so the second call simply swaps roles.
#define TBC__SHANI_4ROUNDS(m, q)                                                                                   \
    wk = _mm_add_epi32(m, _mm_loadu_si128((const __m128i *)(const void *)&tbc__sha256_k[4 * (q)]));               \
    cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);                                                                  \
    abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(wk, 0x0E))
// W[t..t+3] from W[t-16..t-1] held in m0..m3 (oldest first); the result replaces m0.
#define TBC__SHANI_SCHED(m0, m1, m2, m3)                                                                           \
    m0 = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(m0, m1), _mm_alignr_epi8(m3, m2, 4)), m3)
        TBC__SHANI_4ROUNDS(m0, 0);
        TBC__SHANI_4ROUNDS(m1, 1);
        TBC__SHANI_4ROUNDS(m2, 2);
        TBC__SHANI_4ROUNDS(m3, 3);
        for (q = 4; q < 16; q += 4) {
            TBC__SHANI_SCHED(m0, m1, m2, m3); TBC__SHANI_4ROUNDS(m0, q + 0);
            TBC__SHANI_SCHED(m1, m2, m3, m0); TBC__SHANI_4ROUNDS(m1, q + 1);
            TBC__SHANI_SCHED(m2, m3, m0, m1); TBC__SHANI_4ROUNDS(m2, q + 2);
            TBC__SHANI_SCHED(m3, m0, m1, m2); TBC__SHANI_4ROUNDS(m3, q + 3);
        }
#undef TBC__SHANI_4ROUNDS
#undef TBC__SHANI_SCHED
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    {
        __m128i feba = _mm_shuffle_epi32(abef, 0x1B);                                  // A B E F
        __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);                                  // G H C D
        _mm_storeu_si128((__m128i *)(void *)&h8[0], _mm_blend_epi16(feba, dchg, 0xF0)); // A B C D
        _mm_storeu_si128((__m128i *)(void *)&h8[4], _mm_alignr_epi8(dchg, feba, 8));    // E F G H
    }
}

// gcc 12's arm_neon.h enables the SHA-256 intrinsics only under +crypto (AES and SHA2), not +sha2 alone.
#elif defined(__aarch64__) && defined(__ARM_FEATURE_SHA2) && (defined(__clang__) || defined(__ARM_FEATURE_CRYPTO))
#include <arm_neon.h>
#define TBC__SHA256_HW 1
#define TBC__SHA256_HW_NAME "ARMv8 SHA2"

// sha256h/sha256h2 do four rounds on the ABCD and EFGH halves; sha256su0/su1 compute four schedule words.
static TBC__CRYPTO_UNUSED void tbc__sha256_blocks_hw(uint32_t h8[8], const uint8_t *p, size_t nblocks) {
    uint32x4_t abcd = vld1q_u32(h8), efgh = vld1q_u32(h8 + 4);
    for (; nblocks; nblocks--, p += 64) {
        const uint32x4_t abcd0 = abcd, efgh0 = efgh;
        uint32x4_t m0 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 0)));
        uint32x4_t m1 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 16)));
        uint32x4_t m2 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 32)));
        uint32x4_t m3 = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 48)));
        uint32x4_t wk, prev;
        int q;
#define TBC__SHAARM_4ROUNDS(m, q)                                                                                  \
    wk = vaddq_u32(m, vld1q_u32(&tbc__sha256_k[4 * (q)]));                                                         \
    prev = abcd;                                                                                                   \
    abcd = vsha256hq_u32(abcd, efgh, wk);                                                                          \
    efgh = vsha256h2q_u32(efgh, prev, wk)
#define TBC__SHAARM_SCHED(m0, m1, m2, m3) m0 = vsha256su1q_u32(vsha256su0q_u32(m0, m1), m2, m3)
        TBC__SHAARM_4ROUNDS(m0, 0);
        TBC__SHAARM_4ROUNDS(m1, 1);
        TBC__SHAARM_4ROUNDS(m2, 2);
        TBC__SHAARM_4ROUNDS(m3, 3);
        for (q = 4; q < 16; q += 4) {
            TBC__SHAARM_SCHED(m0, m1, m2, m3); TBC__SHAARM_4ROUNDS(m0, q + 0);
            TBC__SHAARM_SCHED(m1, m2, m3, m0); TBC__SHAARM_4ROUNDS(m1, q + 1);
            TBC__SHAARM_SCHED(m2, m3, m0, m1); TBC__SHAARM_4ROUNDS(m2, q + 2);
            TBC__SHAARM_SCHED(m3, m0, m1, m2); TBC__SHAARM_4ROUNDS(m3, q + 3);
        }
#undef TBC__SHAARM_4ROUNDS
#undef TBC__SHAARM_SCHED
        abcd = vaddq_u32(abcd, abcd0);
        efgh = vaddq_u32(efgh, efgh0);
    }
    vst1q_u32(h8, abcd);
    vst1q_u32(h8 + 4, efgh);
}
#endif

static TBC__CRYPTO_UNUSED void tbc__sha256_blocks(uint32_t h8[8], const uint8_t *p, size_t nblocks) {
#ifdef TBC__SHA256_HW
    tbc__sha256_blocks_hw(h8, p, nblocks);
#else
    tbc__sha256_blocks_ref(h8, p, nblocks);
#endif
}

static TBC__CRYPTO_UNUSED void tbc__sha256_init(tbc__sha256_ctx *c) {
    // First 32 bits of the fractional parts of the square roots of the first 8 primes (FIPS 180-4 5.3.3).
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, iv, sizeof iv);
    c->n_bytes = 0;
    c->n_buf = 0;
}

static TBC__CRYPTO_UNUSED void tbc__sha256_update(tbc__sha256_ctx *c, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    c->n_bytes += (uint64_t)n;
    if (c->n_buf) {
        size_t take = 64 - c->n_buf < n ? 64 - c->n_buf : n;
        memcpy(c->buf + c->n_buf, p, take);
        c->n_buf += (uint32_t)take;
        p += take;
        n -= take;
        if (c->n_buf < 64) return;
        tbc__sha256_blocks(c->h, c->buf, 1);
        c->n_buf = 0;
    }
    if (n >= 64) { // whole blocks straight from the caller's buffer
        tbc__sha256_blocks(c->h, p, n / 64);
        p += n & ~(size_t)63;
        n &= 63;
    }
    if (n) {
        memcpy(c->buf, p, n);
        c->n_buf = (uint32_t)n;
    }
}

// Writes the digest and wipes the context (it must be re-initialised before reuse).
static TBC__CRYPTO_UNUSED void tbc__sha256_final(tbc__sha256_ctx *c, uint8_t out[32]) {
    uint64_t bits = c->n_bytes * 8; // the length is defined modulo 2^64 bits
    int i;
    c->buf[c->n_buf++] = 0x80;
    if (c->n_buf > 56) { // no room for the length: pad this block and use one more
        memset(c->buf + c->n_buf, 0, 64 - c->n_buf);
        tbc__sha256_blocks(c->h, c->buf, 1);
        c->n_buf = 0;
    }
    memset(c->buf + c->n_buf, 0, 56 - c->n_buf);
    tbc__store_be32(c->buf + 56, (uint32_t)(bits >> 32));
    tbc__store_be32(c->buf + 60, (uint32_t)bits);
    tbc__sha256_blocks(c->h, c->buf, 1);
    for (i = 0; i < 8; i++) tbc__store_be32(out + 4 * i, c->h[i]);
    tbc__wipe(c, sizeof *c);
}

static TBC__CRYPTO_UNUSED void tbc__sha256(const void *data, size_t n, uint8_t out[32]) {
    tbc__sha256_ctx c;
    tbc__sha256_init(&c);
    tbc__sha256_update(&c, data, n);
    tbc__sha256_final(&c, out);
}

// HMAC-SHA-256. A keyed tbc__hmac (after tbc__hmac_init) may be copied by value and each copy used for one message:
// that reuses the key setup, which is what per-message tags want.
typedef struct tbc__hmac {
    tbc__sha256_ctx inner, outer;
} tbc__hmac;

static TBC__CRYPTO_UNUSED void tbc__hmac_init(tbc__hmac *h, const void *key, size_t keylen) {
    uint8_t block[64];
    size_t i;
    memset(block, 0, sizeof block);
    if (keylen > 64) tbc__sha256(key, keylen, block); // RFC 2104: long keys are replaced by their hash
    else if (keylen) memcpy(block, key, keylen);
    for (i = 0; i < 64; i++) block[i] ^= 0x36;
    tbc__sha256_init(&h->inner);
    tbc__sha256_update(&h->inner, block, 64);
    for (i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
    tbc__sha256_init(&h->outer);
    tbc__sha256_update(&h->outer, block, 64);
    tbc__wipe(block, sizeof block);
}

static TBC__CRYPTO_UNUSED void tbc__hmac_update(tbc__hmac *h, const void *data, size_t n) {
    tbc__sha256_update(&h->inner, data, n);
}

// Writes the tag and wipes h.
static TBC__CRYPTO_UNUSED void tbc__hmac_final(tbc__hmac *h, uint8_t out[32]) {
    uint8_t ih[32];
    tbc__sha256_final(&h->inner, ih);
    tbc__sha256_update(&h->outer, ih, 32);
    tbc__sha256_final(&h->outer, out);
    tbc__wipe(ih, sizeof ih);
}

static TBC__CRYPTO_UNUSED void tbc__hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
                                                uint8_t out[32]) {
    tbc__hmac h;
    tbc__hmac_init(&h, key, keylen);
    tbc__hmac_update(&h, data, n);
    tbc__hmac_final(&h, out);
}

// 1 if the n bytes at a and b are equal, else 0; the time taken depends only on n (for comparing MAC tags).
static TBC__CRYPTO_UNUSED int tbc__ct_equal(const void *a, const void *b, size_t n) {
    const volatile uint8_t *x = (const volatile uint8_t *)a, *y = (const volatile uint8_t *)b;
    uint32_t diff = 0;
    size_t i;
    for (i = 0; i < n; i++) diff |= (uint32_t)(x[i] ^ y[i]);
    return (int)(1u & ((diff - 1u) >> 8)); // diff in 0..255: only diff == 0 borrows into bit 8
}

// HKDF-Extract (RFC 5869 2.2): prk = HMAC(salt, ikm); an absent salt means 32 zero bytes.
static TBC__CRYPTO_UNUSED void tbc__hkdf_sha256_extract(const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                                                        size_t ikm_len, uint8_t prk[32]) {
    static const uint8_t zeros[32] = {0};
    if (!salt || !salt_len) {
        salt = zeros;
        salt_len = sizeof zeros;
    }
    tbc__hmac_sha256(salt, salt_len, ikm, ikm_len, prk);
}

// HKDF-Expand (RFC 5869 2.3): T(i) = HMAC(prk, T(i-1) | info | i). out_len above 255*32 is a programmer error:
// the bytes past 255*32 are set to zero rather than produced from a wrapped counter.
static TBC__CRYPTO_UNUSED void tbc__hkdf_sha256_expand(const uint8_t prk[32], const uint8_t *info, size_t info_len,
                                                       uint8_t *out, size_t out_len) {
    tbc__hmac keyed, h;
    uint8_t t[32];
    size_t done = 0;
    unsigned i;
    tbc__hmac_init(&keyed, prk, 32);
    for (i = 1; i <= 255 && done < out_len; i++) {
        uint8_t ctr = (uint8_t)i;
        size_t take = out_len - done < 32 ? out_len - done : 32;
        h = keyed;
        if (i > 1) tbc__hmac_update(&h, t, 32);
        if (info_len) tbc__hmac_update(&h, info, info_len);
        tbc__hmac_update(&h, &ctr, 1);
        tbc__hmac_final(&h, t);
        memcpy(out + done, t, take);
        done += take;
    }
    if (done < out_len) memset(out + done, 0, out_len - done);
    tbc__wipe(t, sizeof t);
    tbc__wipe(&keyed, sizeof keyed);
}

static TBC__CRYPTO_UNUSED void tbc__hkdf_sha256(const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                                                size_t ikm_len, const uint8_t *info, size_t info_len, uint8_t *out,
                                                size_t out_len) {
    uint8_t prk[32];
    tbc__hkdf_sha256_extract(salt, salt_len, ikm, ikm_len, prk);
    tbc__hkdf_sha256_expand(prk, info, info_len, out, out_len);
    tbc__wipe(prk, sizeof prk);
}

// n bytes from the operating system's CSPRNG: 0 on success, -1 on failure (then out is unspecified).
#if defined(__linux__)
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if __has_include(<sys/random.h>)
#include <sys/random.h>
#define TBC__HAVE_GETRANDOM 1
#endif
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
#include <stdlib.h>
#define TBC__HAVE_ARC4RANDOM 1
#else
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#endif

#ifndef TBC__HAVE_ARC4RANDOM
static TBC__CRYPTO_UNUSED int tbc__urandom_read(uint8_t *p, size_t n) {
#ifdef O_CLOEXEC
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
#else
    int fd = open("/dev/urandom", O_RDONLY);
#endif
    if (fd < 0) return -1;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            close(fd);
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    close(fd);
    return 0;
}
#endif

static TBC__CRYPTO_UNUSED int tbc__random_bytes(void *out, size_t n) {
    uint8_t *p = (uint8_t *)out;
#if defined(TBC__HAVE_ARC4RANDOM)
    if (n) arc4random_buf(p, n); // cannot fail
    return 0;
#else
#if defined(TBC__HAVE_GETRANDOM)
    // Large requests may come back short (or be interrupted by a signal): keep asking. Any other error (ENOSYS on
    // old kernels, EPERM under some seccomp filters) falls back to the device.
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        p += r;
        n -= (size_t)r;
    }
    if (!n) return 0;
#endif
    return tbc__urandom_read(p, n);
#endif
}

// Lowercase hex of n bytes into out, which must hold 2n+1 chars; NUL-terminated.
static TBC__CRYPTO_UNUSED void tbc__hex(const uint8_t *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}
