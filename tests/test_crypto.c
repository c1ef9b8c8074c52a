// test_crypto: SHA-256 against the NIST examples (FIPS 180-4 / "SHA256.pdf" examples and the one-million-'a'
// vector), HMAC-SHA-256 against RFC 4231 cases 1-7, HKDF-SHA-256 against RFC 5869 cases 1-3, incremental updates
// split at every offset, the hardware block function (when compiled) against the portable reference, ct_equal,
// hex and OS random bytes. Ends with a speed line for hashing 64 MiB (printed, never asserted).
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

// Compares n bytes with a lowercase hex string; prints both on mismatch.
static void check_hex(const uint8_t *got, size_t n, const char *want, const char *what) {
    char hex[2 * 8192 + 1];
    int ok;
    if (2 * n + 1 > sizeof hex) {
        check(0, what);
        return;
    }
    tbc__hex(got, n, hex);
    ok = strlen(want) == 2 * n && strcmp(hex, want) == 0;
    check(ok, what);
    if (!ok) printf("  want %s\n  got  %s\n", want, hex);
}

static size_t unhex(const char *s, uint8_t *out) {
    size_t n = 0;
    for (; s[0] && s[1]; s += 2) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) break;
        out[n++] = (uint8_t)v;
    }
    return n;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng(void) { // xorshift64*: deterministic test data
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

typedef void (*blocks_fn)(uint32_t h[8], const uint8_t *p, size_t nblocks);

// SHA-256 with FIPS 180-4 padding done here, around a chosen block function, so each block function is checked
// against the published digests independently of tbc__sha256_update/final.
static void sha256_with(blocks_fn blocks, const uint8_t *data, size_t n, uint8_t out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    uint8_t tail[128];
    size_t full = n / 64, rest = n % 64, tail_len = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    int i;
    blocks(h, data, full);
    memset(tail, 0, sizeof tail);
    memcpy(tail, data + full * 64, rest);
    tail[rest] = 0x80;
    for (i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    blocks(h, tail, tail_len / 64);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_sha256_vectors(void) {
    static const struct {
        const char *msg, *digest, *name;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256 empty"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256 abc"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", "sha256 448-bit"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1", "sha256 896-bit"},
    };
    static const char *million_a = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    uint8_t d[32], *a;
    char what[96];
    size_t i;
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].msg);
        tbc__sha256(v[i].msg, n, d);
        check_hex(d, 32, v[i].digest, v[i].name);
        sha256_with(tbc__sha256_blocks_ref, (const uint8_t *)v[i].msg, n, d);
        snprintf(what, sizeof what, "%s (portable blocks)", v[i].name);
        check_hex(d, 32, v[i].digest, what);
#ifdef TBC__SHA256_HW
        sha256_with(tbc__sha256_blocks_hw, (const uint8_t *)v[i].msg, n, d);
        snprintf(what, sizeof what, "%s (%s blocks)", v[i].name, TBC__SHA256_HW_NAME);
        check_hex(d, 32, v[i].digest, what);
#endif
    }

    a = (uint8_t *)malloc(1000000);
    if (!a) {
        check(0, "malloc 1e6");
        return;
    }
    memset(a, 'a', 1000000);
    tbc__sha256(a, 1000000, d);
    check_hex(d, 32, million_a, "sha256 one million 'a' (one call)");
    {
        tbc__sha256_ctx c;
        tbc__sha256_init(&c);
        for (i = 0; i < 1000000; i += 1000) tbc__sha256_update(&c, a + i, 1000); // 1000 is not a multiple of 64
        tbc__sha256_final(&c, d);
        check_hex(d, 32, million_a, "sha256 one million 'a' (1000-byte updates)");
    }
    {  // the public names (what build/pull uses): pieces of 4093 bytes, a prime, so the blocks fall anywhere
        tbc_sha256 c;
        tbc_sha256_init(&c);
        for (i = 0; i < 1000000; i += 4093) tbc_sha256_update(&c, a + i, 1000000 - i < 4093 ? 1000000 - i : 4093);
        tbc_sha256_final(&c, d);
        check_hex(d, 32, million_a, "sha256 one million 'a' (tbc_sha256_update, 4093-byte pieces)");
    }
    sha256_with(tbc__sha256_blocks_ref, a, 1000000, d);
    check_hex(d, 32, million_a, "sha256 one million 'a' (portable blocks)");
    free(a);
}

// Every split point of a 200-byte message (covers partial-buffer fill, exact block ends and multi-block updates),
// byte-at-a-time updates, and zero-length updates in between.
static void test_sha256_incremental(void) {
    static const char *want = "2c7e18c942ef065b526a2d4e5546283749cd3ddfb51d8fc71f42717363685f46";
    uint8_t msg[200], d[32], ref[32];
    size_t i, k;
    int split_ok = 1;
    tbc__sha256_ctx c;
    for (i = 0; i < 200; i++) msg[i] = (uint8_t)(i * 7 + 3);
    tbc__sha256(msg, 200, ref);
    check_hex(ref, 32, want, "sha256 200-byte message");
    for (k = 0; k <= 200; k++) {
        tbc__sha256_init(&c);
        tbc__sha256_update(&c, msg, k);
        tbc__sha256_update(&c, msg + k, 0);
        tbc__sha256_update(&c, msg + k, 200 - k);
        tbc__sha256_final(&c, d);
        if (memcmp(d, ref, 32) != 0) {
            printf("  split at %zu differs\n", k);
            split_ok = 0;
        }
    }
    check(split_ok, "sha256 incremental: two updates split at every offset 0..200");
    split_ok = 1;
    for (k = 1; k <= 200; k += 13) { // three pieces: k, then 64+k%64 (crosses a block), then the rest
        size_t k2 = k + 64 + k % 64 < 200 ? k + 64 + k % 64 : 200;
        tbc__sha256_init(&c);
        tbc__sha256_update(&c, msg, k);
        tbc__sha256_update(&c, msg + k, k2 - k);
        tbc__sha256_update(&c, msg + k2, 200 - k2);
        tbc__sha256_final(&c, d);
        if (memcmp(d, ref, 32) != 0) split_ok = 0;
    }
    check(split_ok, "sha256 incremental: three pieces");
    tbc__sha256_init(&c);
    for (i = 0; i < 200; i++) tbc__sha256_update(&c, msg + i, 1);
    tbc__sha256_final(&c, d);
    check(memcmp(d, ref, 32) == 0, "sha256 incremental: one byte at a time");
    // every length around the padding boundaries, against a digest built with explicit padding
    split_ok = 1;
    for (k = 0; k <= 200; k++) {
        tbc__sha256(msg, k, d);
        sha256_with(tbc__sha256_blocks_ref, msg, k, ref);
        if (memcmp(d, ref, 32) != 0) split_ok = 0;
    }
    check(split_ok, "sha256 lengths 0..200 agree with explicit padding");
}

// The hardware block function against the portable one: random chaining states, block counts, unaligned input.
static void test_sha256_hw_vs_ref(void) {
#ifdef TBC__SHA256_HW
    enum { MAXB = 37 };
    uint8_t buf[MAXB * 64 + 16];
    int t, ok = 1;
    size_t i;
    for (i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng();
    for (t = 0; t < 400; t++) {
        uint32_t h1[8], h2[8];
        size_t nb = (size_t)(rng() % (MAXB + 1)), off = (size_t)(rng() % 16);
        for (i = 0; i < 8; i++) h1[i] = h2[i] = rng();
        tbc__sha256_blocks_ref(h1, buf + off, nb);
        tbc__sha256_blocks_hw(h2, buf + off, nb);
        if (memcmp(h1, h2, sizeof h1) != 0) ok = 0;
    }
    check(ok, "sha256 " TBC__SHA256_HW_NAME " blocks == portable blocks (400 random states/lengths/offsets)");
    printf("sha256 block function: %s (portable reference also tested)\n", TBC__SHA256_HW_NAME);
#else
    printf("sha256 block function: portable (no hardware path compiled)\n");
#endif
}

static void test_hmac(void) {
    static const char *rfc4231[7] = {
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        "a3b6167473100ee06e0c796c2955552b", // test case 5 is truncated to 128 bits
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    };
    static const char *data6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char *data7 = "This is a test using a larger than block-size key and a larger than block-size data. "
                               "The key needs to be hashed before being used by the HMAC algorithm.";
    uint8_t key[131], data[64], tag[32], ref[32];
    char what[64];
    size_t i, k;
    int tc, ok;

    for (tc = 1; tc <= 7; tc++) {
        const void *dp = data;
        size_t klen = 0, dlen = 0;
        switch (tc) {
        case 1: klen = 20; memset(key, 0x0b, klen); dp = "Hi There"; dlen = 8; break;
        case 2: klen = 4; memcpy(key, "Jefe", 4); dp = "what do ya want for nothing?"; dlen = 28; break;
        case 3: klen = 20; memset(key, 0xaa, klen); dlen = 50; memset(data, 0xdd, dlen); break;
        case 4: klen = 25; for (i = 0; i < klen; i++) key[i] = (uint8_t)(i + 1); dlen = 50; memset(data, 0xcd, dlen); break;
        case 5: klen = 20; memset(key, 0x0c, klen); dp = "Test With Truncation"; dlen = 20; break;
        case 6: klen = 131; memset(key, 0xaa, klen); dp = data6; dlen = strlen(data6); break;
        default: klen = 131; memset(key, 0xaa, klen); dp = data7; dlen = strlen(data7); break;
        }
        tbc__hmac_sha256(key, klen, dp, dlen, tag);
        snprintf(what, sizeof what, "hmac-sha256 RFC 4231 test case %d", tc);
        check_hex(tag, tc == 5 ? 16 : 32, rfc4231[tc - 1], what);
    }

    // incremental: case 7 (long key, 153-byte message) split at every offset
    memset(key, 0xaa, 131);
    tbc__hmac_sha256(key, 131, data7, strlen(data7), ref);
    ok = 1;
    for (k = 0; k <= strlen(data7); k++) {
        tbc__hmac h;
        tbc__hmac_init(&h, key, 131);
        tbc__hmac_update(&h, data7, k);
        tbc__hmac_update(&h, data7 + k, strlen(data7) - k);
        tbc__hmac_final(&h, tag);
        if (memcmp(tag, ref, 32) != 0) ok = 0;
    }
    check(ok, "hmac incremental: split at every offset");

    // a keyed context copied by value tags several messages (how per-message tags reuse the key setup)
    {
        tbc__hmac keyed, h;
        uint8_t t1[32], t2[32];
        tbc__hmac_init(&keyed, "Jefe", 4);
        h = keyed;
        tbc__hmac_update(&h, "what do ya want for nothing?", 28);
        tbc__hmac_final(&h, t1);
        h = keyed;
        tbc__hmac_update(&h, "Hi There", 8);
        tbc__hmac_final(&h, t2);
        check_hex(t1, 32, rfc4231[1], "hmac keyed copy, first message");
        tbc__hmac_sha256("Jefe", 4, "Hi There", 8, ref);
        check(memcmp(t2, ref, 32) == 0, "hmac keyed copy, second message");
    }

    // key length boundaries: 64 bytes is used as is, 65 is hashed first, 0 is all padding (values from Python hmac)
    for (i = 0; i < 65; i++) key[i] = (uint8_t)i;
    tbc__hmac_sha256(key, 64, "abc", 3, tag);
    check_hex(tag, 32, "6ab541b4869dca71c4ca11d8bb1b02533b789a557583161429292c7404bc21f6", "hmac 64-byte key");
    tbc__hmac_sha256(key, 65, "abc", 3, tag);
    check_hex(tag, 32, "dfbffee4671bad00ed5d1e1999d55ed3b0cc774ac357f9ebf649c1612414fcec", "hmac 65-byte key");
    tbc__hmac_sha256(NULL, 0, "abc", 3, tag);
    check_hex(tag, 32, "fd7adb152c05ef80dccf50a1fa4c05d5a3ec6da95575fc312ae7c5d091836351", "hmac empty key");
}

static void test_hkdf(void) {
    static const struct {
        const char *ikm, *salt, *info, *prk, *okm;
        size_t len;
    } v[3] = {
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9",
         "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865", 42},
        {"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
         "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
         "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
         "909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
         "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
         "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
         "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
         "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da32"
         "75600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87", 82},
        {"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", "", "",
         "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8", 42},
    };
    uint8_t ikm[80], salt[80], info[80], prk[32], okm[100];
    static uint8_t big[255 * 32 + 8], big2[255 * 32];
    char what[64];
    int i;
    for (i = 0; i < 3; i++) {
        size_t ni = unhex(v[i].ikm, ikm), ns = unhex(v[i].salt, salt), nf = unhex(v[i].info, info);
        // case 3 passes a NULL salt (the RFC's "not provided")
        tbc__hkdf_sha256_extract(ns ? salt : NULL, ns, ikm, ni, prk);
        snprintf(what, sizeof what, "hkdf RFC 5869 test case %d PRK", i + 1);
        check_hex(prk, 32, v[i].prk, what);
        memset(okm, 0xee, sizeof okm);
        tbc__hkdf_sha256(ns ? salt : NULL, ns, ikm, ni, nf ? info : NULL, nf, okm, v[i].len);
        snprintf(what, sizeof what, "hkdf RFC 5869 test case %d OKM", i + 1);
        check_hex(okm, v[i].len, v[i].okm, what);
        check(okm[v[i].len] == 0xee, "hkdf writes exactly out_len bytes");
    }
    // an empty (non-NULL) salt is the same as none
    unhex(v[2].ikm, ikm);
    tbc__hkdf_sha256(salt, 0, ikm, 22, NULL, 0, okm, 42);
    check_hex(okm, 42, v[2].okm, "hkdf empty salt == absent salt");
    // the maximum length, and a prefix property: shorter outputs are prefixes of longer ones
    tbc__hkdf_sha256(salt, 13, ikm, 22, info, 10, big2, sizeof big2);
    tbc__hkdf_sha256(salt, 13, ikm, 22, info, 10, okm, 42);
    check(memcmp(big2, okm, 42) == 0, "hkdf 255*32 output starts with the 42-byte output");
    memset(big, 0xee, sizeof big);
    tbc__hkdf_sha256(salt, 13, ikm, 22, info, 10, big, sizeof big); // over the limit: programmer error
    check(memcmp(big, big2, sizeof big2) == 0, "hkdf over the limit: first 255*32 bytes unchanged");
    {
        static const uint8_t zero8[8] = {0};
        check(memcmp(big + sizeof big2, zero8, 8) == 0, "hkdf over the limit: bytes past 255*32 are zero");
    }
    memset(okm, 0xee, sizeof okm);
    tbc__hkdf_sha256(salt, 13, ikm, 22, info, 10, okm, 0);
    check(okm[0] == 0xee, "hkdf out_len 0 writes nothing");
}

static void test_ct_equal_hex(void) {
    uint8_t a[32], b[32];
    size_t i;
    int bit, ok = 1;
    char hex[9];
    static const uint8_t bytes4[4] = {0x00, 0x9f, 0xa0, 0xff};
    for (i = 0; i < 32; i++) a[i] = b[i] = (uint8_t)rng();
    check(tbc__ct_equal(a, b, 32) == 1, "ct_equal equal buffers -> 1");
    check(tbc__ct_equal(a, b, 0) == 1, "ct_equal n = 0 -> 1");
    for (i = 0; i < 32; i++) {
        for (bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1u << bit);
            if (tbc__ct_equal(a, b, 32) != 0) ok = 0;
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    check(ok, "ct_equal: every single-bit difference -> 0");
    b[31] ^= 0xff;
    check(tbc__ct_equal(a, b, 31) == 1, "ct_equal compares only n bytes");
    check(tbc__ct_equal(a, b, 32) == 0, "ct_equal last byte all bits flipped -> 0");

    memset(hex, 'x', sizeof hex);
    tbc__hex(bytes4, 4, hex);
    check(strcmp(hex, "009fa0ff") == 0, "hex lowercase, NUL-terminated");
    tbc__hex(bytes4, 0, hex);
    check(hex[0] == '\0', "hex of nothing is the empty string");
}

static int all_zero(const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static void test_random(void) {
    uint8_t a[64], b[64], *big;
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    check(tbc__random_bytes(a, sizeof a) == 0, "random_bytes returns 0");
    check(tbc__random_bytes(b, sizeof b) == 0, "random_bytes returns 0 again");
    check(!all_zero(a, sizeof a), "random_bytes not all zero");
    check(memcmp(a, b, sizeof a) != 0, "random_bytes: two calls differ");
    check(tbc__random_bytes(a, 0) == 0, "random_bytes n = 0");
    big = (uint8_t *)calloc(1, 1 << 20);
    if (big) { // larger than one getrandom() guarantees to return in one piece
        check(tbc__random_bytes(big, 1 << 20) == 0 && !all_zero(big + (1 << 20) - 64, 64), "random_bytes 1 MiB");
        free(big);
    }
#ifndef TBC__HAVE_ARC4RANDOM
    memset(a, 0, sizeof a);
    check(tbc__urandom_read(a, sizeof a) == 0 && !all_zero(a, sizeof a), "random_bytes /dev/urandom fallback");
#endif
}

// 64 MiB through tbc__sha256 (the block function the build selected) and through the portable reference.
static void bench(void) {
    const size_t n = (size_t)64 << 20;
    uint8_t *buf = (uint8_t *)malloc(n), d1[32], d2[32];
    size_t i;
    double t0, t1, t2;
    if (!buf) {
        printf("SKIP: speed test (no memory for 64 MiB)\n");
        return;
    }
    for (i = 0; i < n; i++) buf[i] = (uint8_t)(i * 131 + (i >> 11));
    t0 = now_sec();
    tbc__sha256(buf, n, d1);
    t1 = now_sec();
    sha256_with(tbc__sha256_blocks_ref, buf, n, d2);
    t2 = now_sec();
    check(memcmp(d1, d2, 32) == 0, "sha256 64 MiB: selected path == portable reference");
#ifdef TBC__SHA256_HW
    printf("speed: sha256 64 MiB: %.0f MB/s (%s), %.0f MB/s (portable)\n", (double)n / (t1 - t0) / 1e6,
           TBC__SHA256_HW_NAME, (double)n / (t2 - t1) / 1e6);
#else
    printf("speed: sha256 64 MiB: %.0f MB/s (portable; reference run %.0f MB/s)\n", (double)n / (t1 - t0) / 1e6,
           (double)n / (t2 - t1) / 1e6);
#endif
    free(buf);
}

int main(void) {
    test_sha256_vectors();
    test_sha256_incremental();
    test_sha256_hw_vs_ref();
    test_hmac();
    test_hkdf();
    test_ct_equal_hex();
    test_random();
    bench();
    printf("test_crypto: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
