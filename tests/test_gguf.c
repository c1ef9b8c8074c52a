// The GGUF reader and model loader against bad input: every kind of damage gets its own error code and a message
// that names the problem; nothing crashes (run under ASan/UBSan by `make test`).
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

// ---- a small GGUF writer with knobs for breaking things ----
typedef struct buf { uint8_t *p; size_t n, cap; } buf;
static void put(buf *b, const void *x, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 256; b->p = (uint8_t *)realloc(b->p, b->cap); }
    memcpy(b->p + b->n, x, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void kv_u32(buf *b, const char *k, uint32_t v) { str(b, k); u32(b, TBC_GGUF_UINT32); u32(b, v); }
static void kv_f32(buf *b, const char *k, float v) { str(b, k); u32(b, TBC_GGUF_FLOAT32); put(b, &v, 4); }
static void kv_str(buf *b, const char *k, const char *v) { str(b, k); u32(b, TBC_GGUF_STRING); str(b, v); }

enum { DIM = 32, KVD = 16, FF = 64, NV = 262, NL = 1 };

typedef struct knobs {
    const char *arch;            // NULL: no general.architecture key
    int drop_block_count;
    int block_count_as_string;
    const char *drop_tensor;     // omit this tensor
    const char *misshape_tensor; // give this tensor a wrong row length
} knobs;

typedef struct tensor_def { char name[64]; int nd; uint64_t ne[2]; uint32_t type; } tensor_def;

// Builds a complete 1-layer llama model (F32) with an SPM vocabulary of 262 tokens.
static buf build_model(const knobs *k) {
    buf b = {0};
    tensor_def t[16];
    int nt = 0;
#define T(nm, a, c) do { if (!k->drop_tensor || strcmp(k->drop_tensor, nm)) { snprintf(t[nt].name, 64, "%s", nm); \
    t[nt].nd = (c) ? 2 : 1; t[nt].ne[0] = (uint64_t)(a); t[nt].ne[1] = (uint64_t)(c); t[nt].type = 0; \
    if (k->misshape_tensor && !strcmp(k->misshape_tensor, nm)) { t[nt].ne[0] += 32; } nt++; } } while (0)
    T("token_embd.weight", DIM, NV);
    T("output_norm.weight", DIM, 0);
    T("blk.0.attn_norm.weight", DIM, 0);
    T("blk.0.attn_q.weight", DIM, DIM);
    T("blk.0.attn_k.weight", DIM, KVD);
    T("blk.0.attn_v.weight", DIM, KVD);
    T("blk.0.attn_output.weight", DIM, DIM);
    T("blk.0.ffn_norm.weight", DIM, 0);
    T("blk.0.ffn_gate.weight", DIM, FF);
    T("blk.0.ffn_up.weight", DIM, FF);
    T("blk.0.ffn_down.weight", FF, DIM);
#undef T
    int nkv = 11 + (k->arch ? 1 : 0) - (k->drop_block_count ? 1 : 0);
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, (uint64_t)nt);
    u64(&b, (uint64_t)nkv);
    if (k->arch) kv_str(&b, "general.architecture", k->arch);
    const char *a = k->arch ? k->arch : "llama";
    char key[96];
#define K(s) (snprintf(key, sizeof key, "%s.%s", a, s), key)
    kv_u32(&b, K("embedding_length"), DIM);
    if (!k->drop_block_count) {
        if (k->block_count_as_string) kv_str(&b, K("block_count"), "1");
        else kv_u32(&b, K("block_count"), NL);
    }
    kv_u32(&b, K("feed_forward_length"), FF);
    kv_u32(&b, K("attention.head_count"), 4);
    kv_u32(&b, K("attention.head_count_kv"), 2);
    kv_f32(&b, K("attention.layer_norm_rms_epsilon"), 1e-5f);
    kv_u32(&b, K("context_length"), 64);
#undef K
    kv_str(&b, "tokenizer.ggml.model", "llama");
    // tokens: <unk> <s> </s> <0x00>..<0xFF> then "▁a" (id 259 is the last byte; so 262 = 3 + 256 + 3)
    str(&b, "tokenizer.ggml.tokens");
    u32(&b, TBC_GGUF_ARRAY); u32(&b, TBC_GGUF_STRING); u64(&b, NV);
    str(&b, "<unk>"); str(&b, "<s>"); str(&b, "</s>");
    for (int i = 0; i < 256; i++) { char s[8]; snprintf(s, sizeof s, "<0x%02X>", i); str(&b, s); }
    str(&b, "\xe2\x96\x81"); str(&b, "a"); str(&b, "\xe2\x96\x81" "a");
    str(&b, "tokenizer.ggml.scores");
    u32(&b, TBC_GGUF_ARRAY); u32(&b, TBC_GGUF_FLOAT32); u64(&b, NV);
    for (int i = 0; i < NV; i++) { float s = i < 259 ? 0.0f : (float)-(i - 259); put(&b, &s, 4); }
    str(&b, "tokenizer.ggml.token_type");
    u32(&b, TBC_GGUF_ARRAY); u32(&b, TBC_GGUF_INT32); u64(&b, NV);
    for (int i = 0; i < NV; i++) { int32_t ty = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1; put(&b, &ty, 4); }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        str(&b, t[i].name);
        u32(&b, (uint32_t)t[i].nd);
        for (int d = 0; d < t[i].nd; d++) u64(&b, t[i].ne[d]);
        u32(&b, t[i].type);
        u64(&b, off);
        uint64_t bytes = t[i].ne[0] * (t[i].nd == 2 ? t[i].ne[1] : 1) * 4;
        off += (bytes + 31) / 32 * 32;
    }
    while (b.n % 32) { uint8_t z = 0; put(&b, &z, 1); }
    size_t data0 = b.n;
    for (uint64_t i = 0; i < off / 4; i++) {
        float v = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        put(&b, &v, 4);
    }
    (void)data0;
    return b;
}

// The offset of the first byte after a string equal to s (used to find fields to damage).
static size_t find_after(const buf *b, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= b->n; i++)
        if (!memcmp(b->p + i, s, n)) return i + n;
    return 0;
}

static tbc_result parse_copy(const uint8_t *p, size_t n, tbc_error *err) {
    // an exact-size copy, so ASan sees any read past the end
    uint8_t *c = (uint8_t *)malloc(n ? n : 1);
    memcpy(c, p, n);
    tbc__gguf g;
    tbc_result r = tbc__gguf_parse(&g, c, n, err);
    if (r == TBC_OK) tbc__gguf_free(&g);
    free(c);
    return r;
}

static tbc_result open_bytes(const buf *b, tbc_error *err) {
    char path[] = "/tmp/tbc_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, b->p, b->n) != (ssize_t)b->n) { printf("cannot write a temp file\n"); exit(1); }
    close(fd);
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.error = err;
    tbc_model *m = NULL;
    tbc_result r = tbc_model_open(&md, &m);
    tbc_model_destroy(m);
    unlink(path);
    return r;
}

static void expect(const char *what, tbc_result got, tbc_result want, const tbc_error *err, const char *must_mention) {
    CHECK(got == want, "%s: got %s (%s), want %s", what, tbc_result_str(got), err->message, tbc_result_str(want));
    if (must_mention) CHECK(strstr(err->message, must_mention) != NULL, "%s: message '%s' does not name '%s'", what, err->message, must_mention);
    if (got == want) printf("  %-40s -> %s: %s\n", what, tbc_result_str(got), err->message);
}

int main(void) {
    knobs k;
    memset(&k, 0, sizeof k);
    k.arch = "llama";
    buf good = build_model(&k);
    tbc_error err;
    memset(&err, 0, sizeof err);
    CHECK(parse_copy(good.p, good.n, &err) == TBC_OK, "the intact file parses: %s", err.message);
    CHECK(open_bytes(&good, &err) == TBC_OK, "the intact model opens: %s", err.message);

    // truncation at every offset: an error every time, never a crash; the codes are the truncation family
    int trunc_ok = 1;
    for (size_t n = 0; n < good.n; n++) {
        tbc_result r = parse_copy(good.p, n, &err);
        if (r == TBC_OK || (r != TBC_ERR_GGUF_TRUNCATED && r != TBC_ERR_TENSOR_OFFSET && r != TBC_ERR_GGUF_MAGIC)) {
            trunc_ok = 0;
            printf("truncated at %zu: %s (%s)\n", n, tbc_result_str(r), err.message);
            break;
        }
    }
    CHECK(trunc_ok, "every truncation of the %zu-byte file is an error", good.n);
    expect("truncated inside the metadata", parse_copy(good.p, 1000, &err), TBC_ERR_GGUF_TRUNCATED, &err, "metadata key");
    expect("truncated inside the tensor data", parse_copy(good.p, good.n - 10, &err), TBC_ERR_TENSOR_OFFSET, &err, "blk.0.ffn_down.weight");
    expect("truncated file through tbc_model_open", open_bytes(&(buf){good.p, 5000, 0}, &err), TBC_ERR_GGUF_TRUNCATED, &err, NULL);

    buf b = {0};
    put(&b, good.p, good.n);
    memcpy(b.p, "GGUG", 4);
    expect("bad magic", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_MAGIC, &err, "magic");
    memcpy(b.p, good.p, 8);
    uint32_t v = 1;
    memcpy(b.p + 4, &v, 4);
    expect("version 1", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_VERSION, &err, "version 1");
    v = 0x03000000u;
    memcpy(b.p + 4, &v, 4);
    expect("big-endian file", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_VERSION, &err, "big-endian");
    v = 2;
    memcpy(b.p + 4, &v, 4);
    CHECK(parse_copy(b.p, b.n, &err) == TBC_OK, "version 2 is accepted: %s", err.message);
    memcpy(b.p, good.p, good.n);

    uint64_t big = (uint64_t)1 << 40;
    memcpy(b.p + 8, &big, 8);
    expect("absurd tensor count", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_LIMIT, &err, "tensor count");
    memcpy(b.p, good.p, good.n);
    memcpy(b.p + 16, &big, 8);
    expect("absurd key count", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_LIMIT, &err, "key count");
    memcpy(b.p, good.p, good.n);
    uint64_t lie = 5000;
    memcpy(b.p + 16, &lie, 8);
    expect("key count larger than the file holds", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_TRUNCATED, &err, NULL);
    memcpy(b.p, good.p, good.n);

    // the first key's name length (right after the 24-byte header)
    memcpy(b.p + 24, &big, 8);
    expect("oversized key string", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_LIMIT, &err, "string length");
    memcpy(b.p, good.p, good.n);
    size_t at = find_after(&good, "general.architecture");
    uint64_t huge = (uint64_t)1 << 62;
    memcpy(b.p + at + 4, &huge, 8);
    expect("oversized value string", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_LIMIT, &err, "general.architecture");
    memcpy(b.p, good.p, good.n);
    v = 77;
    memcpy(b.p + at, &v, 4);
    expect("unknown value type", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_VALUE_TYPE, &err, "general.architecture");
    memcpy(b.p, good.p, good.n);
    at = find_after(&good, "tokenizer.ggml.tokens");
    memcpy(b.p + at + 8, &huge, 8);
    expect("array count past the end", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_TRUNCATED, &err, "tokenizer.ggml.tokens");
    memcpy(b.p, good.p, good.n);
    at = find_after(&good, "tokenizer.ggml.scores");
    memcpy(b.p + at + 8, &huge, 8);
    expect("array byte size overflow", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_LIMIT, &err, "tokenizer.ggml.scores");
    memcpy(b.p, good.p, good.n);
    // duplicate key: rename llama.context_length to another key of the same length
    at = find_after(&good, "llama.context_length");
    memcpy(b.p + at - 20, "tokenizer.ggml.model", 20);
    expect("duplicate key", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_DUPLICATE, &err, NULL);
    memcpy(b.p, good.p, good.n);

    // tensor directory entries: name, n_dims(4), ne[..](8 each), type(4), offset(8)
    at = find_after(&good, "blk.0.attn_q.weight");
    v = 5;
    memcpy(b.p + at, &v, 4);
    expect("five dimensions", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_SHAPE, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    uint64_t zero = 0;
    memcpy(b.p + at + 4, &zero, 8);
    expect("zero dimension", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_SHAPE, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    uint64_t d1 = (uint64_t)1 << 40, d2 = (uint64_t)1 << 40;
    memcpy(b.p + at + 4, &d1, 8);
    memcpy(b.p + at + 12, &d2, 8);
    expect("element count overflow", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_SHAPE, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    v = 99;
    memcpy(b.p + at + 20, &v, 4);
    expect("unknown tensor type", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_TYPE, &err, "type 99");
    memcpy(b.p, good.p, good.n);
    v = 4;  // Q4_2: removed from GGUF long ago
    memcpy(b.p + at + 20, &v, 4);
    expect("retired tensor type", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_TYPE, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    v = TBC_TYPE_Q4_0;  // row length 32 is one Q4_0 block: fine; but the byte size changes (fits in the file)
    uint64_t off = (uint64_t)1 << 50;
    memcpy(b.p + at + 24, &off, 8);
    expect("offset past the end", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_OFFSET, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    off = UINT64_MAX - 31;
    memcpy(b.p + at + 24, &off, 8);
    expect("offset overflow", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_OFFSET, &err, "blk.0.attn_q.weight");
    memcpy(b.p, good.p, good.n);
    off = 8;
    memcpy(b.p + at + 24, &off, 8);
    expect("misaligned offset", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_OFFSET, &err, "alignment");
    memcpy(b.p, good.p, good.n);
    off = 0;
    memcpy(b.p + at + 24, &off, 8);
    expect("overlapping tensors", parse_copy(b.p, b.n, &err), TBC_ERR_TENSOR_OFFSET, &err, "overlap");
    memcpy(b.p, good.p, good.n);
    memcpy(b.p + at - strlen("attn_q.weight"), "attn_k", 6);
    expect("duplicate tensor name", parse_copy(b.p, b.n, &err), TBC_ERR_GGUF_DUPLICATE, &err, "blk.0.attn_k.weight");
    memcpy(b.p, good.p, good.n);

    // alignment key
    {
        buf a = {0};
        put(&a, "GGUF", 4); u32(&a, 3); u64(&a, 0); u64(&a, 1);
        kv_u32(&a, "general.alignment", 48);
        expect("alignment not a power of two", parse_copy(a.p, a.n, &err), TBC_ERR_GGUF_ALIGNMENT, &err, "48");
        free(a.p);
    }

    // model-level problems, through tbc_model_open
    knobs bad;
    memset(&bad, 0, sizeof bad);
    buf m = build_model(&bad);
    expect("no general.architecture", open_bytes(&m, &err), TBC_ERR_KEY_MISSING, &err, "general.architecture");
    free(m.p);
    bad.arch = "mamba";
    m = build_model(&bad);
    expect("unsupported architecture", open_bytes(&m, &err), TBC_ERR_UNSUPPORTED_ARCH, &err, "mamba");
    free(m.p);
    bad.arch = "llama";
    bad.drop_block_count = 1;
    m = build_model(&bad);
    expect("missing block_count", open_bytes(&m, &err), TBC_ERR_KEY_MISSING, &err, "llama.block_count");
    free(m.p);
    bad.drop_block_count = 0;
    bad.block_count_as_string = 1;
    m = build_model(&bad);
    expect("block_count is a string", open_bytes(&m, &err), TBC_ERR_KEY_TYPE, &err, "llama.block_count");
    free(m.p);
    bad.block_count_as_string = 0;
    bad.drop_tensor = "blk.0.ffn_up.weight";
    m = build_model(&bad);
    expect("missing tensor", open_bytes(&m, &err), TBC_ERR_TENSOR_MISSING, &err, "blk.0.ffn_up.weight");
    free(m.p);
    bad.drop_tensor = NULL;
    bad.misshape_tensor = "blk.0.attn_v.weight";
    m = build_model(&bad);
    expect("tensor of the wrong shape", open_bytes(&m, &err), TBC_ERR_TENSOR_SHAPE, &err, "blk.0.attn_v.weight");
    free(m.p);
    {
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = "/nonexistent/model.gguf";
        md.error = &err;
        tbc_model *mm = NULL;
        expect("missing file", tbc_model_open(&md, &mm), TBC_ERR_IO, &err, "/nonexistent/model.gguf");
        CHECK(mm == NULL, "output untouched on failure");
    }
    free(b.p);
    free(good.p);
    printf("test_gguf: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
