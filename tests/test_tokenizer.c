// test_tokenizer - tokenizer checks against llama.cpp's outputs.
//
//  * ../shared/vocab/ggml-vocab-{llama-spm,llama-bpe,qwen2,gpt-2}.gguf with their .inp/.out cases (llama.cpp's
//    test-tokenizer-0: add_special = false, parse_special = false, exact ids).
//  * ../shared/models/fixtures/refs/tokenize-*.txt: seven strings, three flag combinations, on the fixture
//    vocabularies (inside the fixture .gguf files) and on the full ones; the text prompts of the *.ref.txt files.
//  * Round trips: pieces(tokenize(s)) == s (SPM: less the space prefix) for the cases and for code points; every
//    normal token's piece tokenizes back to itself.
//  * Robustness: invalid UTF-8 and random bytes, output buffer too small, and bad vocabularies (built in memory)
//    that must each be refused with a clear error.
//  * Speed: 100 KB of text.
// Run from the repository root. Prints "test_tokenizer: N passed, M failed".
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_pass, g_fail;
static int g_verbose_fails = 40;  // print at most this many failure lines

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) g_pass++;                                                           \
        else {                                                                        \
            g_fail++;                                                                 \
            if (g_verbose_fails-- > 0) { printf("FAIL: " __VA_ARGS__); printf("\n"); } \
        }                                                                             \
    } while (0)

#if defined(__SANITIZE_ADDRESS__)
#define TT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TT_SANITIZED 1
#endif
#endif
#ifndef TT_SANITIZED
#define TT_SANITIZED 0
#endif

static double tt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// ---------------------------------------------------------------------------------------------------------------
// Opening a vocabulary through the internal functions (the public tbc_model_open is tested elsewhere).

typedef struct tt_vocab {
    tbc__mapping map;
    tbc__gguf g;
    tbc__vocab v;
    int ok;
} tt_vocab;

static int tt_open(tt_vocab *t, const char *path) {
    tbc_error err;
    memset(t, 0, sizeof(*t));
    memset(&err, 0, sizeof(err));
    if (tbc__map_file(path, &t->map, &err) != TBC_OK) {
        printf("SKIP: %s (%s)\n", path, err.message);
        return 0;
    }
    if (tbc__gguf_parse(&t->g, t->map.base, t->map.size, &err) != TBC_OK) {
        printf("FAIL: %s: %s\n", path, err.message);
        g_fail++;
        tbc__unmap_file(&t->map);
        return 0;
    }
    if (tbc__vocab_load(&t->v, &t->g, &err) != TBC_OK) {
        printf("FAIL: %s: %s\n", path, err.message);
        g_fail++;
        tbc__gguf_free(&t->g);
        tbc__unmap_file(&t->map);
        return 0;
    }
    t->ok = 1;
    return 1;
}

static void tt_close(tt_vocab *t) {
    if (!t->ok) return;
    tbc__vocab_free(&t->v);
    tbc__gguf_free(&t->g);
    tbc__unmap_file(&t->map);
    t->ok = 0;
}

static char *tt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)malloc(cap + 1);
    for (;;) {
        if (n == cap) { cap *= 2; buf = (char *)realloc(buf, cap + 1); }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

// Tokenizes into a malloc'd array (count in *n); NULL on error.
static int32_t *tt_tok(const tbc__vocab *v, const char *s, size_t len, int add, int parse, int64_t *n) {
    int64_t cnt = 0;
    tbc_result r = tbc__tokenize(v, s, len, add, parse, NULL, 0, &cnt);
    if (r != TBC_OK && r != TBC_ERR_BUFFER_TOO_SMALL) return NULL;
    int32_t *ids = (int32_t *)malloc((size_t)(cnt ? cnt : 1) * sizeof(int32_t));
    int64_t cnt2 = -1;
    r = tbc__tokenize(v, s, len, add, parse, ids, cnt, &cnt2);
    if (r != TBC_OK || cnt2 != cnt) { free(ids); return NULL; }
    *n = cnt;
    return ids;
}

// Concatenated pieces of ids into a malloc'd string.
static char *tt_detok(const tbc__vocab *v, const int32_t *ids, int64_t n, int special, size_t *len) {
    size_t cap = 64, at = 0;
    char *s = (char *)malloc(cap);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = tbc__token_to_piece(v, ids[i], special, NULL, 0);
        if (k < 0) { free(s); return NULL; }
        while (at + (size_t)k + 1 > cap) { cap *= 2; s = (char *)realloc(s, cap); }
        tbc__token_to_piece(v, ids[i], special, s + at, (size_t)k);
        at += (size_t)k;
    }
    s[at] = 0;
    *len = at;
    return s;
}

static int tt_ids_eq(const int32_t *a, int64_t na, const int32_t *b, int64_t nb) {
    if (na != nb) return 0;
    for (int64_t i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void tt_print_ids(const char *what, const int32_t *ids, int64_t n) {
    if (g_verbose_fails <= 0) return;
    printf("      %s (%lld):", what, (long long)n);
    for (int64_t i = 0; i < n && i < 60; i++) printf(" %d", ids[i]);
    printf("\n");
}

static int tt_valid_utf8(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = (uint8_t)s[i];
        size_t l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!l || i + l > n) return 0;
        uint32_t cp = l == 1 ? c : l == 2 ? (c & 0x1fu) : l == 3 ? (c & 0x0fu) : (c & 0x07u);
        for (size_t k = 1; k < l; k++) {
            if (((uint8_t)s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | ((uint8_t)s[i + k] & 0x3f);
        }
        if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += l;
    }
    return 1;
}

// pieces(tokenize(s)) == s; SPM drops the one space its prefix adds.
static int tt_roundtrip(const tbc__vocab *v, const char *s, size_t len) {
    int64_t n = 0;
    int32_t *ids = tt_tok(v, s, len, 0, 0, &n);
    if (!ids) return 0;
    size_t dl = 0;
    char *d = tt_detok(v, ids, n, 0, &dl);
    free(ids);
    if (!d) return 0;
    const char *p = d;
    if (v->type == TBC__VOCAB_SPM && v->add_space_prefix && dl > 0 && d[0] == ' ') { p++; dl--; }
    int ok = dl == len && memcmp(p, s, len) == 0;
    free(d);
    return ok;
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp's .inp/.out cases

static void test_vocab_cases(const char *name) {
    char path[512], inp[520], outp[520];
    snprintf(path, sizeof(path), "../shared/vocab/ggml-vocab-%s.gguf", name);
    snprintf(inp, sizeof(inp), "%s.inp", path);
    snprintf(outp, sizeof(outp), "%s.out", path);
    size_t il = 0, ol = 0;
    char *is = tt_read_file(inp, &il), *os = tt_read_file(outp, &ol);
    tt_vocab t;
    if (!is || !os || !tt_open(&t, path)) {
        if (!is || !os) printf("SKIP: %s (vocabulary test files absent)\n", name);
        free(is); free(os);
        return;
    }
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t sepl = strlen(sep), pos = 0, opos = 0;
    int n_case = 0, n_ok = 0, n_rt = 0, n_rt_ok = 0;
    while (pos < il) {
        const char *next = strstr(is + pos, sep);
        size_t slen = next ? (size_t)(next - (is + pos)) : il - pos;
        // the matching line of the .out file
        size_t lend = opos;
        while (lend < ol && os[lend] != '\n') lend++;
        int32_t want[4096];
        int64_t nwant = 0;
        {
            char *q = os + opos;
            while (q < os + lend) {
                char *e;
                long x = strtol(q, &e, 10);
                if (e == q) { q++; continue; }
                if (nwant < 4096) want[nwant++] = (int32_t)x;
                q = e;
            }
        }
        opos = lend < ol ? lend + 1 : ol;
        int64_t n = 0;
        int32_t *ids = tt_tok(&t.v, is + pos, slen, 0, 0, &n);
        int ok = ids && tt_ids_eq(ids, n, want, nwant);
        n_case++;
        n_ok += ok;
        CHECK(ok, "%s case %d '%.*s'", name, n_case, (int)(slen > 60 ? 60 : slen), is + pos);
        if (!ok && ids) { tt_print_ids("got ", ids, n); tt_print_ids("want", want, nwant); }
        free(ids);
        if (tt_valid_utf8(is + pos, slen)) {
            int rt = tt_roundtrip(&t.v, is + pos, slen);
            n_rt++;
            n_rt_ok += rt;
            CHECK(rt, "%s case %d: round trip", name, n_case);
        }
        if (!next) break;
        pos = (size_t)(next - is) + sepl;
    }
    printf("  %-10s llama.cpp cases: %d/%d exact, round trips %d/%d\n", name, n_ok, n_case, n_rt_ok, n_rt);
    free(is);
    free(os);
    tt_close(&t);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixture references

static int tt_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Parses "<count> ids..." after a key; returns the count read, -1 on a malformed line.
static int64_t tt_parse_ids(const char *p, int32_t *ids, int64_t cap) {
    char *e;
    long cnt = strtol(p, &e, 10);
    if (e == p) return -1;
    p = e;
    for (long i = 0; i < cnt; i++) {
        long x = strtol(p, &e, 10);
        if (e == p) return -1;
        if (i < cap) ids[i] = (int32_t)x;
        p = e;
    }
    return cnt;
}

static size_t tt_parse_hex(const char *p, char *out, size_t cap) {
    size_t n = 0;
    if (p[0] == '-') return 0;
    while (tt_hexval(p[0]) >= 0 && tt_hexval(p[1]) >= 0 && n < cap) {
        out[n++] = (char)(tt_hexval(p[0]) * 16 + tt_hexval(p[1]));
        p += 2;
    }
    return n;
}

static void test_fixture_refs(const char *ref, const char *vocab_path) {
    char path[512];
    snprintf(path, sizeof(path), "../shared/models/fixtures/refs/%s", ref);
    size_t len = 0;
    char *txt = tt_read_file(path, &len);
    tt_vocab t;
    if (!txt) { printf("SKIP: %s (absent)\n", path); return; }
    if (!tt_open(&t, vocab_path)) {
        printf("SKIP: %s (vocabulary %s absent)\n", ref, vocab_path);
        free(txt);
        return;
    }
    static char text[8192];
    size_t tl = 0;
    int n_ok = 0, n_all = 0;
    char *line = txt;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strncmp(line, "text_hex ", 9) == 0) tl = tt_parse_hex(line + 9, text, sizeof(text));
        static const char *keys[3] = {"ids_add0_parse0 ", "ids_add1_parse0 ", "ids_add1_parse1 "};
        for (int k = 0; k < 3; k++) {
            size_t kl = strlen(keys[k]);
            if (strncmp(line, keys[k], kl) != 0) continue;
            int32_t want[2048];
            int64_t nwant = tt_parse_ids(line + kl, want, 2048);
            int64_t n = 0;
            int32_t *ids = tt_tok(&t.v, text, tl, k > 0, k == 2, &n);
            int ok = ids && nwant >= 0 && tt_ids_eq(ids, n, want, nwant);
            n_all++;
            n_ok += ok;
            CHECK(ok, "%s: %s for '%.*s'", ref, keys[k], (int)(tl > 50 ? 50 : tl), text);
            if (!ok && ids) { tt_print_ids("got ", ids, n); tt_print_ids("want", want, nwant); }
            free(ids);
        }
        line = nl ? nl + 1 : NULL;
    }
    printf("  %-36s %d/%d exact\n", ref, n_ok, n_all);
    free(txt);
    tt_close(&t);
}

// Prompt B of a forward-pass reference: text tokenized with add_special=1, parse_special=0.
static void test_model_prompt(const char *stem) {
    char path[512], gguf[512];
    snprintf(path, sizeof(path), "../shared/models/fixtures/refs/%s.ref.txt", stem);
    snprintf(gguf, sizeof(gguf), "../shared/models/fixtures/%s.gguf", stem);
    size_t len = 0;
    char *txt = tt_read_file(path, &len);
    tt_vocab t;
    if (!txt) { printf("SKIP: %s (absent)\n", path); return; }
    if (!tt_open(&t, gguf)) { free(txt); return; }
    static char text[8192];
    size_t tl = 0;
    int in_text = 0;
    char *line = txt;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (strcmp(line, "source text") == 0) in_text = 1;
        if (strncmp(line, "text_hex ", 9) == 0) tl = tt_parse_hex(line + 9, text, sizeof(text));
        if (in_text && strncmp(line, "prompt_ids ", 11) == 0) {
            int32_t want[512];
            int64_t nwant = 0;
            for (char *p = line + 11, *e; nwant < 512; p = e) {
                long x = strtol(p, &e, 10);
                if (e == p) break;
                want[nwant++] = (int32_t)x;
            }
            int64_t n = 0;
            int32_t *ids = tt_tok(&t.v, text, tl, 1, 0, &n);
            int ok = ids && tt_ids_eq(ids, n, want, nwant);
            CHECK(ok, "%s: prompt B ids", stem);
            if (!ok && ids) { tt_print_ids("got ", ids, n); tt_print_ids("want", want, nwant); }
            printf("  %-36s prompt B %s (%lld tokens)\n", stem, ok ? "exact" : "DIFFERS", (long long)n);
            free(ids);
            in_text = 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(txt);
    tt_close(&t);
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips and robustness on a full vocabulary

static void test_vocab_roundtrips(const char *name) {
    char path[512];
    snprintf(path, sizeof(path), "../shared/vocab/ggml-vocab-%s.gguf", name);
    tt_vocab t;
    if (!tt_open(&t, path)) { printf("SKIP: %s round trips (vocabulary absent)\n", name); return; }
    const tbc__vocab *v = &t.v;

    // every normal token whose piece is valid UTF-8 tokenizes back to the same bytes
    int n_tok = 0, n_tok_ok = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        if (!(v->attr[id] & TBC__ATTR_NORMAL) || (v->attr[id] & TBC__ATTR_CONTROL)) continue;
        char piece[256];
        int64_t pl = tbc__token_to_piece(v, id, 0, piece, sizeof(piece));
        if (pl <= 0 || pl > (int64_t)sizeof(piece) || !tt_valid_utf8(piece, (size_t)pl)) continue;
        if (v->type == TBC__VOCAB_SPM && strstr(piece, "\xe2\x96\x81")) continue;  // a literal U+2581 reads as a space
        n_tok++;
        int ok = tt_roundtrip(v, piece, (size_t)pl);
        n_tok_ok += ok;
        if (!ok && n_tok - n_tok_ok <= 5)
            printf("    %s: token %d '%.*s' does not round-trip\n", name, (int)id, (int)pl, piece);
    }
    CHECK(n_tok > 0 && n_tok_ok == n_tok, "%s: %d of %d tokens do not round-trip", name, n_tok - n_tok_ok, n_tok);
    // code points (all below U+3000, then a sample); U+2581 is SentencePiece's space
    int n_cp = 0, n_cp_ok = 0;
    for (uint32_t cp = 1; cp < 0x110000; cp += cp < 0x3000 ? 1 : 97) {
        if ((cp >= 0xd800 && cp <= 0xdfff) || (v->type == TBC__VOCAB_SPM && cp == 0x2581)) continue;
        char u[4];
        int ul = tbc__utf8_put(cp, u);
        n_cp++;
        int ok = tt_roundtrip(v, u, (size_t)ul);
        n_cp_ok += ok;
        if (!ok && n_cp - n_cp_ok <= 5) printf("    %s: code point U+%04X does not round-trip\n", name, (unsigned)cp);
    }
    CHECK(n_cp_ok == n_cp, "%s: %d of %d code points do not round-trip", name, n_cp - n_cp_ok, n_cp);
    printf("  %-10s round trips: %d/%d tokens, %d/%d code points\n", name, n_tok_ok, n_tok, n_cp_ok, n_cp);

    // invalid UTF-8 and random bytes: no crash, consistent counts, buffer-too-small contract
    static const char *bad[] = {"\xff", "\xc3", "a\xe6\x97", "\xf0\x9f\x98", "\x80\x80 x", "\xed\xa0\x80",
                                "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xc0\x80", "x\xfe\xff y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t n = -1;
        int32_t *ids = tt_tok(v, bad[i], strlen(bad[i]), 1, 1, &n);
        CHECK(ids && n > 0, "%s: invalid UTF-8 #%d not tokenized", name, (int)i);
        if (v->type == TBC__VOCAB_SPM && ids) {  // byte fallback keeps every byte
            size_t dl;
            int32_t *body = ids + (v->add_bos ? 1 : 0);
            char *d = tt_detok(v, body, n - (v->add_bos ? 1 : 0), 0, &dl);
            // a lead byte can swallow the bytes of a following U+2581 (llama.cpp splits the same way): read
            // U+2581 back as the space it stands for
            size_t w = 0;
            for (size_t r = 0; d && r < dl; r++) {
                if (r + 2 < dl && memcmp(d + r, "\xe2\x96\x81", 3) == 0) { d[w++] = ' '; r += 2; }
                else d[w++] = d[r];
            }
            dl = w;
            CHECK(d && dl == strlen(bad[i]) + 1 && memcmp(d + 1, bad[i], dl - 1) == 0,
                  "%s: invalid UTF-8 #%d does not detokenize to its bytes", name, (int)i);
            free(d);
        }
        free(ids);
    }
    {
        unsigned seed = 12345;
        char buf[512];
        int all_ok = 1;
        for (int round = 0; round < 200; round++) {
            size_t n = (size_t)(seed % 500);
            for (size_t i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; buf[i] = (char)(seed >> 16); }
            seed = seed * 1103515245u + 12345u;
            int64_t cnt = -1, cnt2 = -1;
            int32_t small[3];
            tbc_result r = tbc__tokenize(v, buf, n, 1, 1, NULL, 0, &cnt);
            if (r != (cnt > 0 ? TBC_ERR_BUFFER_TOO_SMALL : TBC_OK)) all_ok = 0;
            r = tbc__tokenize(v, buf, n, 1, 1, small, 3, &cnt2);
            if (cnt2 != cnt || r != (cnt > 3 ? TBC_ERR_BUFFER_TOO_SMALL : TBC_OK)) all_ok = 0;
            int64_t m;
            int32_t *ids = tt_tok(v, buf, n, 1, 1, &m);
            if (!ids || m != cnt) all_ok = 0;
            for (int64_t i = 0; ids && i < m; i++)
                if (ids[i] < 0 || ids[i] >= v->n_tokens) all_ok = 0;
            if (ids && cnt >= 3 && memcmp(small, ids, sizeof(small)) != 0) all_ok = 0;
            free(ids);
        }
        CHECK(all_ok, "%s: random bytes: counts, ids in range, BUFFER_TOO_SMALL contract", name);
    }
    // queries
    CHECK(tbc__token_to_piece(v, -1, 1, NULL, 0) == -1 && tbc__token_to_piece(v, v->n_tokens, 1, NULL, 0) == -1,
          "%s: token_to_piece accepts a bad id", name);
    CHECK(v->eos < 0 || tbc__vocab_is_eog(v, v->eos), "%s: eos is not end-of-generation", name);
    CHECK(!tbc__vocab_is_eog(v, -1) && !tbc__vocab_is_eog(v, v->n_tokens), "%s: is_eog of a bad id", name);
    {
        uint64_t n;
        const char *t0 = tbc__vocab_text(v, 100, &n);
        CHECK(tbc__vocab_find(v, t0, (size_t)n) == 100, "%s: find(text of 100) != 100", name);
        CHECK(tbc__vocab_find(v, "\x01\x02no such token\x03", 16) == -1, "%s: find of a non-token", name);
    }

    // speed: about 100 KB of mixed text
    {
        size_t il = 0;
        char ip[560];
        snprintf(ip, sizeof(ip), "%s.inp", path);
        char *inp = tt_read_file(ip, &il);
        if (inp && il) {
            size_t target = 100 * 1024, n = 0;
            char *big = (char *)malloc(target + il);
            while (n < target) { memcpy(big + n, inp, il); n += il; }
            double t0 = tt_now();
            int64_t cnt = 0;
            tbc_result r = tbc__tokenize(v, big, n, 1, 0, NULL, 0, &cnt);
            double dt = tt_now() - t0;
            printf("  %-10s speed: %zu bytes -> %lld tokens in %.1f ms\n", name, n, (long long)cnt, dt * 1e3);
            CHECK(r == TBC_ERR_BUFFER_TOO_SMALL && cnt > 0, "%s: 100 KB tokenization failed", name);
            CHECK(TT_SANITIZED || dt < 1.0, "%s: 100 KB took %.2f s", name, dt);
            // same count whether split at once or not (no state leaks between calls)
            int64_t cnt2 = 0;
            tbc__tokenize(v, big, n, 1, 0, NULL, 0, &cnt2);
            CHECK(cnt2 == cnt, "%s: repeat tokenization differs", name);
            free(big);
        }
        free(inp);
        // degenerate inputs: one long word, one long run of spaces or digits, CJK, special tokens back to back
        static const char *const units[5] = {"a", " ", "7", "\xe4\xb8\xad", "<|im_start|><s>"};
        for (int u = 0; u < 5; u++) {
            size_t ul = strlen(units[u]), n = 0, target = 100 * 1024;
            char *big = (char *)malloc(target + ul);
            while (n < target) { memcpy(big + n, units[u], ul); n += ul; }
            double t0 = tt_now();
            int64_t cnt = 0;
            tbc_result r = tbc__tokenize(v, big, n, 1, 1, NULL, 0, &cnt);
            double dt = tt_now() - t0;
            CHECK(r == TBC_ERR_BUFFER_TOO_SMALL && cnt > 0, "%s: 100 KB of '%s' failed", name, units[u]);
            CHECK(TT_SANITIZED || dt < 1.0, "%s: 100 KB of '%s' took %.2f s", name, units[u], dt);
            if (getenv("TT_SHOW_TIMES"))
                printf("    100 KB of '%s': %lld tokens, %.1f ms\n", units[u], (long long)cnt, dt * 1e3);
            free(big);
        }
    }
    tt_close(&t);
}

// ---------------------------------------------------------------------------------------------------------------
// Bad vocabularies: a tiny GGUF writer

typedef struct tt_buf {
    uint8_t *p;
    size_t n, cap;
} tt_buf;

static void tt_put(tt_buf *b, const void *d, size_t n) {
    while (b->n + n > b->cap) { b->cap = b->cap ? b->cap * 2 : 256; b->p = (uint8_t *)realloc(b->p, b->cap); }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void tt_u32(tt_buf *b, uint32_t x) { tt_put(b, &x, 4); }
static void tt_u64(tt_buf *b, uint64_t x) { tt_put(b, &x, 8); }
static void tt_str(tt_buf *b, const char *s) { tt_u64(b, strlen(s)); tt_put(b, s, strlen(s)); }
static void tt_kv_str(tt_buf *b, const char *k, const char *v) {
    tt_str(b, k); tt_u32(b, TBC_GGUF_STRING); tt_str(b, v);
}
static void tt_kv_u32(tt_buf *b, const char *k, uint32_t v) { tt_str(b, k); tt_u32(b, TBC_GGUF_UINT32); tt_u32(b, v); }
static void tt_kv_bool(tt_buf *b, const char *k, int v) {
    uint8_t x = (uint8_t)v;
    tt_str(b, k); tt_u32(b, TBC_GGUF_BOOL); tt_put(b, &x, 1);
}
static void tt_kv_strs(tt_buf *b, const char *k, const char *const *s, int n) {
    tt_str(b, k); tt_u32(b, TBC_GGUF_ARRAY); tt_u32(b, TBC_GGUF_STRING); tt_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) tt_str(b, s[i]);
}
static void tt_kv_i32s(tt_buf *b, const char *k, const int32_t *x, int n) {
    tt_str(b, k); tt_u32(b, TBC_GGUF_ARRAY); tt_u32(b, TBC_GGUF_INT32); tt_u64(b, (uint64_t)n);
    tt_put(b, x, 4 * (size_t)n);
}

// A small BPE vocabulary: byte characters for "a b c d Ġ", merges "a b", "ab c", and optional defects.
enum {
    BAD_NONE, BAD_NO_TOKENS, BAD_TOKENS_TYPE, BAD_NO_MODEL, BAD_MODEL_TYPE, BAD_MODEL_NAME, BAD_PRE_NAME,
    BAD_MERGE_UNKNOWN, BAD_MERGE_FORM, BAD_NO_MERGES, BAD_BOS_RANGE, BAD_EOS_TYPE, BAD_TYPES_SHORT, BAD_TYPE_VALUE,
    BAD_SCORES_TYPE, BAD_DUPLICATE, BAD_ADD_BOS_NO_BOS, BAD_BYTE_TOKEN, BAD_COUNT
};
static const char *const bad_names[BAD_COUNT] = {
    "none", "missing tokens", "tokens of int32", "missing model", "model not a string", "unknown model",
    "unknown pre-tokenizer", "merge of unknown token", "merge without space", "missing merges", "bos out of range",
    "eos of string type", "token_type too short", "token_type value 9", "scores of strings", "duplicate token",
    "add_bos without bos", "malformed byte token"};

static tbc_result tt_load_bad(int defect, tbc_error *err, int (*check)(const tbc__vocab *)) {
    tt_buf b;
    memset(&b, 0, sizeof(b));
    const char *toks[8] = {"a", "b", "c", "d", "\xc4\xa0", "ab", "abc", "<|end|>"};
    int32_t types[8] = {1, 1, 1, 1, 1, 1, 1, 3};
    const char *merges[2] = {"a b", "ab c"};
    int nkv = 7;
    if (defect == BAD_NO_TOKENS || defect == BAD_NO_MODEL || defect == BAD_NO_MERGES) nkv--;
    if (defect == BAD_SCORES_TYPE) nkv++;
    if (defect == BAD_DUPLICATE) toks[6] = "ab";
    if (defect == BAD_TYPE_VALUE) types[2] = 9;
    if (defect == BAD_BYTE_TOKEN) types[3] = 6;  // "d" is not <0xNN>
    if (defect == BAD_MERGE_UNKNOWN) merges[1] = "ab x";
    if (defect == BAD_MERGE_FORM) merges[1] = "abc";
    tt_put(&b, "GGUF", 4); tt_u32(&b, 3); tt_u64(&b, 0); tt_u64(&b, (uint64_t)nkv);
    if (defect == BAD_ADD_BOS_NO_BOS) {
        // pre gpt-2 (no BOS by default), add_bos set, and the default BOS id 11 is outside the 8 tokens
        tt_kv_str(&b, "tokenizer.ggml.model", "gpt2");
        tt_kv_str(&b, "tokenizer.ggml.pre", "gpt-2");
        tt_kv_strs(&b, "tokenizer.ggml.tokens", toks, 8);
        tt_kv_strs(&b, "tokenizer.ggml.merges", merges, 2);
        tt_kv_u32(&b, "tokenizer.ggml.eos_token_id", 7);
        tt_kv_i32s(&b, "tokenizer.ggml.token_type", types, 8);
        tt_kv_bool(&b, "tokenizer.ggml.add_bos_token", 1);
    } else {
        if (defect != BAD_NO_MODEL) {
            if (defect == BAD_MODEL_TYPE) tt_kv_u32(&b, "tokenizer.ggml.model", 2);
            else tt_kv_str(&b, "tokenizer.ggml.model", defect == BAD_MODEL_NAME ? "t5" : "gpt2");
        }
        tt_kv_str(&b, "tokenizer.ggml.pre", defect == BAD_PRE_NAME ? "no-such-pre" : "llama-bpe");
        if (defect == BAD_TOKENS_TYPE) tt_kv_i32s(&b, "tokenizer.ggml.tokens", types, 8);
        else if (defect != BAD_NO_TOKENS) tt_kv_strs(&b, "tokenizer.ggml.tokens", toks, 8);
        tt_kv_i32s(&b, "tokenizer.ggml.token_type", types, defect == BAD_TYPES_SHORT ? 5 : 8);
        if (defect != BAD_NO_MERGES) tt_kv_strs(&b, "tokenizer.ggml.merges", merges, 2);
        if (defect == BAD_EOS_TYPE) tt_kv_str(&b, "tokenizer.ggml.eos_token_id", "7");
        else tt_kv_u32(&b, "tokenizer.ggml.eos_token_id", 7);
        tt_kv_u32(&b, "tokenizer.ggml.bos_token_id", defect == BAD_BOS_RANGE ? 8 : 7);
        if (defect == BAD_SCORES_TYPE) tt_kv_strs(&b, "tokenizer.ggml.scores", toks, 8);
    }
    while (b.n % 32) tt_put(&b, "", 1);
    tt_put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);

    tbc__gguf g;
    tbc__vocab v;
    memset(err, 0, sizeof(*err));
    tbc_result rc = tbc__gguf_parse(&g, b.p, b.n, err);
    if (rc != TBC_OK) { free(b.p); return (tbc_result)100; }  // the writer is wrong, not the vocabulary
    rc = tbc__vocab_load(&v, &g, err);
    if (rc == TBC_OK) {
        if (check && !check(&v)) rc = (tbc_result)101;
        tbc__vocab_free(&v);
    }
    tbc__gguf_free(&g);
    free(b.p);
    return rc;
}

static int tt_check_small(const tbc__vocab *v) {
    int32_t ids[16];
    int64_t n = 0;
    // "abcd abc" -> abc d Ġ abc? No: llama-bpe pre splits "abcd", " abc"; " abc" is not a token: Ġ a b c -> Ġ abc
    tbc_result r = tbc__tokenize(v, "abcd abc", 8, 0, 0, ids, 16, &n);
    if (r != TBC_OK || n != 4 || ids[0] != 6 || ids[1] != 3 || ids[2] != 4 || ids[3] != 6) return 0;
    r = tbc__tokenize(v, "ab<|end|>", 9, 1, 1, ids, 16, &n);  // BOS (add_bos for llama-bpe), ab, <|end|>
    if (r != TBC_OK || n != 3 || ids[0] != 7 || ids[1] != 5 || ids[2] != 7) return 0;
    r = tbc__tokenize(v, "ab<|end|>", 9, 0, 0, ids, 16, &n);  // not parsed: characters, some unknown (dropped)
    if (r != TBC_OK || n < 1 || ids[0] != 5) return 0;
    char piece[8];
    if (tbc__token_to_piece(v, 4, 0, piece, 8) != 1 || piece[0] != ' ') return 0;
    if (tbc__token_to_piece(v, 7, 0, piece, 8) != 0 || tbc__token_to_piece(v, 7, 1, piece, 8) != 7) return 0;
    if (tbc__token_to_piece(v, 7, 1, piece, 3) != 7 || memcmp(piece, "<|e", 3) != 0) return 0;
    if (!tbc__vocab_is_eog(v, 7) || tbc__vocab_is_eog(v, 5)) return 0;
    if (v->eot != 7 || v->bos != 7 || !v->add_bos || v->add_eos) return 0;
    return 1;
}

static void test_bad_vocabs(void) {
    static const tbc_result expect[BAD_COUNT] = {
        TBC_OK, TBC_ERR_KEY_MISSING, TBC_ERR_KEY_TYPE, TBC_ERR_KEY_MISSING, TBC_ERR_KEY_TYPE, TBC_ERR_TOKENIZER,
        TBC_ERR_TOKENIZER, TBC_ERR_TOKENIZER, TBC_ERR_TOKENIZER, TBC_ERR_KEY_MISSING, TBC_ERR_TOKENIZER,
        TBC_ERR_KEY_TYPE, TBC_ERR_TOKENIZER, TBC_ERR_TOKENIZER, TBC_ERR_KEY_TYPE, TBC_ERR_TOKENIZER,
        TBC_ERR_TOKENIZER, TBC_ERR_TOKENIZER};
    int ok_all = 0;
    for (int d = 0; d < BAD_COUNT; d++) {
        tbc_error err;
        tbc_result rc = tt_load_bad(d, &err, d == BAD_NONE ? tt_check_small : NULL);
        CHECK(rc == expect[d], "bad vocabulary '%s': got %d (%s), expected %d", bad_names[d], (int)rc, err.message,
              (int)expect[d]);
        if (d != BAD_NONE) CHECK(err.message[0] != 0, "bad vocabulary '%s': no error message", bad_names[d]);
        if (rc == expect[d]) ok_all++;
        if (getenv("TT_SHOW_ERRORS") && d != BAD_NONE) printf("    %-24s -> %s\n", bad_names[d], err.message);
    }
    printf("  bad vocabularies: %d/%d refused as expected (plus a valid one)\n", ok_all, BAD_COUNT);
}

// ---------------------------------------------------------------------------------------------------------------
// Pre-tokenizers: word lengths (in code points) as the models' regexes split these strings (computed with
// Python's `regex` module, applying llama.cpp's rules: matches and the gaps between them are words; "default"
// chains [\p{P}\$\+<=>\^~\|]+, the GPT-2 regex, \p{N}+ and [0-9][0-9][0-9]).

typedef struct tt_pre_case {
    const char *text;
    const char *lens[4];  // llama3, qwen2, gpt2, default
} tt_pre_case;

static const tt_pre_case tt_pre_cases[] = {
    {"Hello world! It's 2024:  3.14159 + x\x0a\x0a  y",
     {"5 6 1 3 2 1 3 1 1 1 1 1 1 3 2 2 2 2 1 2",
      "5 6 1 3 2 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2 2 2 1 2",
      "5 6 1 3 2 5 1 1 2 1 5 2 2 3 2",
      "5 6 1 3 1 1 1 3 1 1 1 1 1 1 3 2 1 1 2 3 2"}},
    {"don'T I'M we'LL 'RE 's",
     {"3 2 2 2 3 3 2 2 2 1",
      "3 2 2 2 3 3 2 2 2 1",
      "3 1 1 2 1 1 3 1 2 2 2 2 1",
      "3 1 1 2 1 1 3 1 2 1 1 2 1 1 1"}},
    {"  leading\x09\x09tabs   trailing   ",
     {"1 8 1 5 2 9 3",
      "1 8 1 5 2 9 3",
      "1 8 1 1 4 2 9 3",
      "1 8 1 1 4 2 9 3"}},
    {"\xe4\xb8\xad\xe6\x96\x87\xef\xbc\x8c\xe6\xb5\x8b\xe8\xaf\x95\xe3\x80\x82" "12345\xef\xbc\x96\xef\xbc\x97\xc2\xbd",
     {"2 3 1 3 3 2",
      "2 3 1 1 1 1 1 1 1 1 1",
      "2 1 2 1 8",
      "2 1 2 1 3 5"}},
    {"a\xe2\x80\x94" "b \xe2\x80\x9c" "c\xe2\x80\x9d $100 +5 <= 7 `code` |x|",
     {"1 2 2 1 1 2 3 2 1 3 1 1 2 4 1 2 1 1",
      "1 2 2 1 1 2 1 1 1 2 1 3 1 1 2 4 1 2 1 1",
      "1 1 1 2 1 1 2 3 2 1 3 2 2 4 1 2 1 1",
      "1 1 1 1 1 1 1 1 1 3 1 1 1 1 2 1 1 2 4 1 1 1 1 1"}},
    {"e\xcc\x81 \xe3\x80\x80x\xc2\xa0y\x0d\x0a\x0d\x0az",
     {"1 1 1 2 2 4 1",
      "1 1 1 2 2 4 1",
      "1 1 1 1 1 1 1 3 1 1",
      "1 1 1 1 1 1 1 3 1 1"}},
    {"1234567890",
     {"3 3 3 1",
      "1 1 1 1 1 1 1 1 1 1",
      "10",
      "3 3 3 1"}},
    {"x\x09y",
     {"1 2",
      "1 2",
      "1 1 1",
      "1 1 1"}},
    {"!!!\x3f\x3f\x3f ...",
     {"6 4",
      "6 4",
      "6 4",
      "6 1 3"}},
    {"\xf0\x9f\x98\x80\xf0\x9f\x98\x80 ok",
     {"2 3",
      "2 3",
      "2 3",
      "2 3"}},
};

static void test_pretokenizers(void) {
    static const int pres[4] = {TBC__PRE_LLAMA3, TBC__PRE_QWEN2, TBC__PRE_GPT2, TBC__PRE_DEFAULT};
    static const char *const names[4] = {"llama3", "qwen2", "gpt2", "default"};
    tbc__vocab v;
    tbc__tok_scratch s;
    memset(&v, 0, sizeof(v));
    memset(&s, 0, sizeof(s));
    int ok_all = 0, n_all = 0;
    for (size_t c = 0; c < sizeof(tt_pre_cases) / sizeof(tt_pre_cases[0]); c++) {
        const char *t = tt_pre_cases[c].text;
        size_t n = strlen(t), nc = 0;
        if (!tbc__grow((void **)&s.cp, &s.cp_cap, n + 1, sizeof(uint32_t)) ||
            !tbc__grow((void **)&s.fl, &s.fl_cap, n + 1, 1))
            break;
        for (size_t i = 0; i < n;) {
            uint32_t cp = tbc__utf8_next((const uint8_t *)t, n, &i);
            s.cp[nc] = cp;
            s.fl[nc++] = tbc__ucat(cp);
        }
        for (int k = 0; k < 4; k++) {
            char got[512];
            size_t nw = 0, at = 0;
            v.pre = pres[k];
            got[0] = 0;
            if (tbc__pretokenize(&v, &s, nc, &nw))
                for (size_t w = 0; w < nw && at + 12 < sizeof(got); w++)
                    at += (size_t)snprintf(got + at, sizeof(got) - at, w ? " %u" : "%u", s.la[w]);
            int ok = strcmp(got, tt_pre_cases[c].lens[k]) == 0;
            n_all++;
            ok_all += ok;
            CHECK(ok, "pre-tokenizer %s on case %d: got '%s', want '%s'", names[k], (int)c, got,
                  tt_pre_cases[c].lens[k]);
        }
    }
    tbc__scratch_free(&s);
    printf("  pre-tokenizers: %d/%d splits as the regexes\n", ok_all, n_all);
}

// ---------------------------------------------------------------------------------------------------------------
// Unit checks of the pre-tokenizer classes

static void test_unicode_classes(void) {
    CHECK((tbc__ucat('a') & 7) == TBC__UCAT_LETTER && (tbc__ucat('7') & 7) == TBC__UCAT_NUMBER, "ASCII classes");
    CHECK(tbc__ucat(' ') & TBC__UCAT_WHITESPACE && tbc__ucat('\n') & TBC__UCAT_WHITESPACE, "ASCII whitespace");
    CHECK(!(tbc__ucat(0x1c) & TBC__UCAT_WHITESPACE), "U+001C is not White_Space");
    CHECK((tbc__ucat(0x00e9) & 7) == TBC__UCAT_LETTER, "U+00E9 letter");
    CHECK((tbc__ucat(0x4e2d) & 7) == TBC__UCAT_LETTER, "U+4E2D (CJK range) letter");
    CHECK((tbc__ucat(0xac00) & 7) == TBC__UCAT_LETTER && (tbc__ucat(0xd7a3) & 7) == TBC__UCAT_LETTER, "Hangul range");
    CHECK((tbc__ucat(0x0301) & 7) == TBC__UCAT_MARK, "U+0301 mark");
    CHECK((tbc__ucat(0x00bd) & 7) == TBC__UCAT_NUMBER && (tbc__ucat(0x0663) & 7) == TBC__UCAT_NUMBER, "numbers");
    CHECK(tbc__ucat(0x3000) & TBC__UCAT_WHITESPACE && tbc__ucat(0x00a0) & TBC__UCAT_WHITESPACE, "U+3000/U+00A0 space");
    CHECK(tbc__ucat(0x0085) & TBC__UCAT_WHITESPACE && (tbc__ucat(0x0085) & 7) == TBC__UCAT_CONTROL, "U+0085");
    CHECK((tbc__ucat(0x0378) & 7) == TBC__UCAT_UNDEFINED, "U+0378 unassigned");
    CHECK((tbc__ucat(0xd800) & 7) == TBC__UCAT_CONTROL && (tbc__ucat(0xe000) & 7) == TBC__UCAT_CONTROL, "Cs/Co");
    CHECK((tbc__ucat(0x1f600) & 7) == TBC__UCAT_SYMBOL && (tbc__ucat(0x10fffd) & 7) == TBC__UCAT_CONTROL &&
          (tbc__ucat(0x10ffff) & 7) == TBC__UCAT_UNDEFINED, "planes");
    CHECK((tbc__ucat(0x2014) & 7) == TBC__UCAT_PUNCTUATION && (tbc__ucat('$') & 7) == TBC__UCAT_SYMBOL, "P/S");
    size_t i = 0;
    CHECK(tbc__utf8_next((const uint8_t *)"\xe2\x82", 2, &i) == 0xFFFD && i == 1, "truncated UTF-8 -> U+FFFD");
    i = 0;
    CHECK(tbc__utf8_next((const uint8_t *)"\xf0\x9f\xa6\x99", 4, &i) == 0x1f999 && i == 4, "4-byte UTF-8");
}

int main(void) {
    printf("test_tokenizer:\n");
    test_unicode_classes();
    test_pretokenizers();
    test_bad_vocabs();
    static const char *const vocabs[4] = {"llama-spm", "llama-bpe", "qwen2", "gpt-2"};
    for (int i = 0; i < 4; i++) test_vocab_cases(vocabs[i]);
    test_fixture_refs("tokenize-llama2-spm-1024.txt", "../shared/models/fixtures/llama2-spm-f32.gguf");
    test_fixture_refs("tokenize-llama3-bpe-1029.txt", "../shared/models/fixtures/llama3-bpe-f32.gguf");
    test_fixture_refs("tokenize-qwen2-1027.txt", "../shared/models/fixtures/qwen2-f32.gguf");
    test_fixture_refs("tokenize-qwen2-1027.txt", "../shared/models/fixtures/qwen3-f32.gguf");
    test_fixture_refs("tokenize-full-llama-spm-32000.txt", "../shared/vocab/ggml-vocab-llama-spm.gguf");
    test_fixture_refs("tokenize-full-llama-bpe-128256.txt", "../shared/vocab/ggml-vocab-llama-bpe.gguf");
    test_fixture_refs("tokenize-full-qwen2-151936.txt", "../shared/vocab/ggml-vocab-qwen2.gguf");
    static const char *const stems[4] = {"llama2-spm-f32", "llama3-bpe-f32", "qwen2-f32", "qwen3-f32"};
    for (int i = 0; i < 4; i++) test_model_prompt(stems[i]);
    for (int i = 0; i < 4; i++) test_vocab_roundtrips(vocabs[i]);
    printf("test_tokenizer: %d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
