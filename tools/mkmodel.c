// mkmodel - writes a GGUF file with a real model's shape and random weights, for tests and benchmarks.
//
//   build/mkmodel --shape NAME --type TYPE -o FILE [--vocab VOCAB.gguf] [--seed N] [--layers N] [--threads N]
//
// The file is GGUF v3 (alignment 32) with llama.cpp's tensor names and metadata keys, so llama.cpp loads it too.
// Every 2-D weight is stored in TYPE (1-D norms and biases stay F32, as llama.cpp does); a row length that the
// type's block does not divide falls back the way llama.cpp's quantizer does. "q4_k_m" is llama.cpp's Q4_K_M mix.
// Weights are N(0, 0.02)-ish from a seeded PRNG (norm weights are 1.0), so activations stay in a sane range and
// the same seed gives the same file (whatever --threads is). The file is written one tensor at a time, a chunk of
// rows at a time (at most 16 MiB of encoded rows): an 8B model never sits in memory. Without --vocab the
// vocabulary is a synthetic SentencePiece one: the text a model built this way writes is as random as its weights.
//
// Uses only tbcluster.h's public API: tbc_quantize_row to encode rows, tbc_model_open(vocab_only) and
// tbc_model_meta_* to copy the tokenizer.* keys of --vocab.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MK_ALIGN 32
#define MK_CHUNK_FLOATS (4u << 20)   // rows generated and quantized per write: 16 MiB of floats

// >>output helpers: the tool may print and exit, unlike the library

static const char *partial_file;   // removed when we die after creating it

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mkmodel: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (partial_file) remove(partial_file);
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// >>shapes

typedef struct mk_shape {
    const char *name, *arch, *display;
    int n_vocab, n_embd, n_layer, n_head, n_head_kv;
    int head_dim;        // 0: n_embd / n_head
    int n_ff, n_ctx;
    float eps, theta;
    int tied;            // output = token_embd (no output.weight)
    int qkv_bias;        // qwen2: attn_q/k/v biases
    int qk_norm;         // qwen3: attn_q_norm / attn_k_norm over each head
} mk_shape;

static const mk_shape shapes[] = {
    // name            arch     display name         vocab    dim layers heads/kv head_dim ffn  ctx    eps  theta
    //                                                                                     tied, qkv bias, qk norm
    {"tinyllama-1.1b", "llama", "TinyLlama 1.1B",     32000, 2048, 22, 32, 4,    0, 5632,  2048, 1e-5f, 1e4f,  0, 0, 0},
    {"llama3-8b",      "llama", "Llama 3 8B",        128256, 4096, 32, 32, 8,    0, 14336, 8192, 1e-5f, 5e5f,  0, 0, 0},
    {"qwen3-0.6b",     "qwen3", "Qwen3 0.6B",        151936, 1024, 28, 16, 8,  128, 3072, 40960, 1e-6f, 1e6f,  1, 0, 1},
    {"qwen2-0.5b",     "qwen2", "Qwen2 0.5B",        151936,  896, 24, 14, 2,    0, 4864, 32768, 1e-6f, 1e6f,  1, 1, 0},
    // Small shapes for tests. tiny-qwen3 has head_dim != dim/heads (like Qwen3) and rows K-quants can hold.
    {"tiny",           "llama", "tiny llama",           512,  128,  8,  4, 2,    0,  384,  2048, 1e-5f, 1e4f,  0, 0, 0},
    {"tiny-qwen3",     "qwen3", "tiny qwen3",           512,  256,  8,  4, 2,  128,  768,  4096, 1e-6f, 1e6f,  1, 0, 1},
};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

// >>types

typedef struct mk_typename {
    const char *name;
    tbc_type type;   // every 2-D weight's type (for the mix: its main type)
    int ftype;       // llama.cpp's LLAMA_FTYPE for general.file_type
    int q4_k_m;      // 1: llama.cpp's Q4_K_M mix
} mk_typename;

static const mk_typename type_names[] = {
    {"f32", TBC_TYPE_F32, 0, 0},   {"f16", TBC_TYPE_F16, 1, 0},   {"bf16", TBC_TYPE_BF16, 32, 0},
    {"q8_0", TBC_TYPE_Q8_0, 7, 0}, {"q4_0", TBC_TYPE_Q4_0, 2, 0}, {"q4_1", TBC_TYPE_Q4_1, 3, 0},
    {"q5_0", TBC_TYPE_Q5_0, 8, 0}, {"q5_1", TBC_TYPE_Q5_1, 9, 0},
    // A file of nothing but Q3_K/Q4_K/Q5_K is what llama.cpp calls the _S variant's main type; the closest ftype.
    {"q2_k", TBC_TYPE_Q2_K, 10, 0}, {"q3_k", TBC_TYPE_Q3_K, 11, 0}, {"q4_k", TBC_TYPE_Q4_K, 14, 0},
    {"q5_k", TBC_TYPE_Q5_K, 16, 0}, {"q6_k", TBC_TYPE_Q6_K, 18, 0},
    {"q4_k_m", TBC_TYPE_Q4_K, 15, 1},
};
#define N_TYPE_NAMES (sizeof(type_names) / sizeof(type_names[0]))

static int type_ok(tbc_type t) { return tbc_type_block_size(t) > 0 && tbc_type_block_bytes(t) > 0; }

// llama.cpp's tensor_type_fallback: the K-quants drop to a 32-block type, and a row that even 32 does not divide
// is stored F16.
static tbc_type fallback(tbc_type t, int64_t ne0) {
    if (ne0 % tbc_type_block_size(t) == 0) return t;
    switch (t) {
    case TBC_TYPE_Q2_K: case TBC_TYPE_Q3_K: t = TBC_TYPE_Q4_0; break;
    case TBC_TYPE_Q4_K: t = TBC_TYPE_Q5_0; break;
    case TBC_TYPE_Q5_K: t = TBC_TYPE_Q5_1; break;
    case TBC_TYPE_Q6_K: t = TBC_TYPE_Q8_0; break;
    default: break;
    }
    return ne0 % tbc_type_block_size(t) == 0 ? t : TBC_TYPE_F16;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers and every third one between get more bits.
static int use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// >>growable byte buffer for the header

typedef struct mk_buf {
    uint8_t *p;
    size_t n, cap;
} mk_buf;

static void buf_put(mk_buf *b, const void *src, size_t n) {
    if (n > SIZE_MAX - b->n) die("metadata too large");
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) die("metadata too large");
            cap *= 2;
        }
        uint8_t *p = (uint8_t *)realloc(b->p, cap);
        if (!p) die("out of memory (%zu bytes of metadata)", cap);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
// GGUF is little-endian; main() refuses to run on a big-endian host, so host order is file order.
static void buf_u32(mk_buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_i32(mk_buf *b, int32_t v) { buf_put(b, &v, 4); }
static void buf_u64(mk_buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_f32(mk_buf *b, float v) { buf_put(b, &v, 4); }
static void buf_str(mk_buf *b, const char *s) {
    size_t n = strlen(s);
    buf_u64(b, (uint64_t)n);
    buf_put(b, s, n);
}

// Metadata: keys are appended to kv, counted in n_kv.
typedef struct mk_meta {
    mk_buf kv;
    uint64_t n_kv;
} mk_meta;

static void kv_head(mk_meta *m, const char *key, tbc_gguf_type type) {
    buf_str(&m->kv, key);
    buf_u32(&m->kv, (uint32_t)type);
    m->n_kv++;
}
static void kv_u32(mk_meta *m, const char *key, uint32_t v) { kv_head(m, key, TBC_GGUF_UINT32); buf_u32(&m->kv, v); }
static void kv_f32(mk_meta *m, const char *key, float v) { kv_head(m, key, TBC_GGUF_FLOAT32); buf_f32(&m->kv, v); }
static void kv_str(mk_meta *m, const char *key, const char *v) { kv_head(m, key, TBC_GGUF_STRING); buf_str(&m->kv, v); }
static void kv_bool(mk_meta *m, const char *key, int v) {
    uint8_t x = v ? 1 : 0;
    kv_head(m, key, TBC_GGUF_BOOL);
    buf_put(&m->kv, &x, 1);
}
static void kv_arr(mk_meta *m, const char *key, tbc_gguf_type elem, uint64_t count) {
    kv_head(m, key, TBC_GGUF_ARRAY);
    buf_u32(&m->kv, (uint32_t)elem);
    buf_u64(&m->kv, count);
}
// "{arch}.suffix" keys
static void kv_arch_u32(mk_meta *m, const char *arch, const char *suffix, uint32_t v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    kv_u32(m, key, v);
}
static void kv_arch_f32(mk_meta *m, const char *arch, const char *suffix, float v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    kv_f32(m, key, v);
}

// >>vocabulary

// A SentencePiece-style vocabulary of n tokens: <unk> <s> </s>, the 256 byte tokens, then pieces in order of
// length (U+2581 "▁" and the 94 printable ASCII characters, then "▁" or a letter followed by letters). Every longer
// piece's prefix is a piece too, so a SentencePiece merge can reach each one. Scores fall with the index.
static void synth_vocab(mk_meta *m, int n) {
    static const char *const specials[3] = {"<unk>", "<s>", "</s>"};
    static const char *const lead_marker = "\xe2\x96\x81";   // U+2581, SentencePiece's space
    const int n_fixed = 3 + 256 + 95;
    if (n < n_fixed) die("a synthetic vocabulary needs at least %d tokens, the shape asks for %d", n_fixed, n);

    kv_str(m, "tokenizer.ggml.model", "llama");
    // tokens
    kv_arr(m, "tokenizer.ggml.tokens", TBC_GGUF_STRING, (uint64_t)n);
    int count = 0;
    char piece[64];
    for (int i = 0; i < 3; i++, count++) buf_str(&m->kv, specials[i]);
    for (int i = 0; i < 256; i++, count++) {
        snprintf(piece, sizeof piece, "<0x%02X>", i);
        buf_str(&m->kv, piece);
    }
    buf_str(&m->kv, lead_marker);
    count++;
    for (int c = 0x21; c <= 0x7e; c++, count++) {
        piece[0] = (char)c;
        piece[1] = 0;
        buf_str(&m->kv, piece);
    }
    // Longer pieces: first symbol from {▁, a..z}, then len-1 letters; enumerate by length, then lexicographically.
    for (int len = 2; count < n; len++) {
        if (len > 12) die("internal: synthetic vocabulary too large");
        int digits[16] = {0};   // digits[0] in 0..26 (0 = ▁: word starts are the commonest pieces), the rest 0..25
        for (;;) {
            if (count >= n) break;
            size_t k = 0;
            if (digits[0] == 0) { memcpy(piece, lead_marker, 3); k = 3; } else piece[k++] = (char)('a' + digits[0] - 1);
            for (int d = 1; d < len; d++) piece[k++] = (char)('a' + digits[d]);
            piece[k] = 0;
            buf_str(&m->kv, piece);
            count++;
            // increment: last digit fastest
            int d = len - 1;
            while (d >= 0) {
                int base = d == 0 ? 27 : 26;
                if (++digits[d] < base) break;
                digits[d] = 0;
                d--;
            }
            if (d < 0) break;
        }
    }
    // scores: specials and bytes 0, then descending
    kv_arr(m, "tokenizer.ggml.scores", TBC_GGUF_FLOAT32, (uint64_t)n);
    for (int i = 0; i < n; i++) buf_f32(&m->kv, i < 259 ? 0.0f : -(float)(i - 259));
    // token types (llama.cpp's LLAMA_TOKEN_TYPE): 1 normal, 2 unknown, 3 control, 6 byte
    kv_arr(m, "tokenizer.ggml.token_type", TBC_GGUF_INT32, (uint64_t)n);
    for (int i = 0; i < n; i++) buf_i32(&m->kv, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    kv_u32(m, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(m, "tokenizer.ggml.eos_token_id", 2);
    kv_u32(m, "tokenizer.ggml.unknown_token_id", 0);
    kv_bool(m, "tokenizer.ggml.add_bos_token", 1);
    kv_bool(m, "tokenizer.ggml.add_eos_token", 0);
}

// Copies every tokenizer.* key of a vocabulary file verbatim; returns its token count.
static int copy_vocab(mk_meta *m, const char *path) {
    tbc_error err;
    memset(&err, 0, sizeof err);
    tbc_model_desc d;
    memset(&d, 0, sizeof d);
    d.path = path;
    d.error = &err;
    d.vocab_only = 1;
    tbc_model *vm = NULL;
    tbc_result r = tbc_model_open(&d, &vm);
    if (r != TBC_OK) die("cannot read the vocabulary '%s': %s (%s)", path, err.message, tbc_result_str(r));
    int64_t n_tokens = -1, copied = 0;
    for (int64_t i = 0; i < tbc_model_meta_count(vm); i++) {
        const char *key = tbc_model_meta_key(vm, i);
        if (!key || strncmp(key, "tokenizer.", 10) != 0) continue;
        tbc_gguf_type at = TBC_GGUF_UINT8;
        uint64_t count = 0, bytes = 0;
        tbc_gguf_type t = tbc_model_meta_type(vm, i, &at, &count);
        const void *raw = tbc_model_meta_raw(vm, i, &bytes);
        if (!raw && bytes) die("vocabulary '%s': key '%s' has no data", path, key);
        if (t == TBC_GGUF_ARRAY) kv_arr(m, key, at, count);
        else kv_head(m, key, t);
        if (bytes > SIZE_MAX) die("vocabulary '%s': key '%s' is too large", path, key);
        buf_put(&m->kv, raw, (size_t)bytes);
        if (strcmp(key, "tokenizer.ggml.tokens") == 0) {
            if (t != TBC_GGUF_ARRAY || at != TBC_GGUF_STRING)
                die("vocabulary '%s': tokenizer.ggml.tokens is not an array of strings", path);
            n_tokens = (int64_t)count;
        }
        copied++;
    }
    tbc_model_destroy(vm);
    if (n_tokens <= 0) die("vocabulary '%s' has no tokenizer.ggml.tokens", path);
    if (n_tokens > INT32_MAX) die("vocabulary '%s' has too many tokens (%lld)", path, (long long)n_tokens);
    fprintf(stderr, "mkmodel: copied %lld tokenizer keys from %s (%lld tokens)\n", (long long)copied, path,
            (long long)n_tokens);
    return (int)n_tokens;
}

// >>tensors

enum { FILL_RANDOM = 0, FILL_ONES = 1 };

typedef struct mk_tensor {
    char name[64];
    int n_dims;
    int64_t ne[2];
    tbc_type type;
    int fill;
    uint64_t offset, bytes;
} mk_tensor;

typedef struct mk_plan {
    mk_tensor *t;
    size_t n, cap;
    tbc_type base;   // the --type
    int q4_k_m;      // ... or the Q4_K_M mix
    int n_layer;
    int tied;
} mk_plan;

// Storage type of a weight, as llama.cpp's quantizer would choose for this --type.
static tbc_type choose_type(const mk_plan *p, const char *name, int layer, int64_t ne0) {
    if (!p->q4_k_m) return fallback(p->base, ne0);
    tbc_type t = TBC_TYPE_Q4_K;
    int is_output = strcmp(name, "output.weight") == 0 || (p->tied && strcmp(name, "token_embd.weight") == 0);
    if (is_output) {
        // the output matrix: Q6_K, or Q8_0 when its rows don't hold whole 256-blocks
        t = ne0 % tbc_type_block_size(TBC_TYPE_Q4_K) != 0 ? TBC_TYPE_Q8_0 : TBC_TYPE_Q6_K;
    } else if (strstr(name, ".attn_v.weight") || strstr(name, ".ffn_down.weight")) {
        // attn_v counts its tensors and ffn_down its layers; with one of each per layer both are the layer index
        if (use_more_bits(layer, p->n_layer)) t = TBC_TYPE_Q6_K;
    }
    return fallback(t, ne0);
}

static void add_tensor(mk_plan *p, const char *name, int layer, int64_t ne0, int64_t ne1, int fill) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        mk_tensor *t = (mk_tensor *)realloc(p->t, cap * sizeof *t);
        if (!t) die("out of memory");
        p->t = t;
        p->cap = cap;
    }
    mk_tensor *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    if (layer >= 0) snprintf(t->name, sizeof t->name, "blk.%d.%s", layer, name);
    else snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = ne1 > 0 ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = ne1 > 0 ? ne1 : 1;
    t->fill = fill;
    t->type = t->n_dims == 1 ? TBC_TYPE_F32 : choose_type(p, t->name, layer, ne0);
    int64_t blk = tbc_type_block_size(t->type);
    uint64_t row = (uint64_t)(ne0 / blk) * tbc_type_block_bytes(t->type);
    t->bytes = row * (uint64_t)t->ne[1];
}

static void plan_model(mk_plan *p, const mk_shape *s) {
    const int64_t d = s->n_embd, hd = s->head_dim ? s->head_dim : s->n_embd / s->n_head;
    const int64_t q = hd * s->n_head, kv = hd * s->n_head_kv;
    add_tensor(p, "token_embd.weight", -1, d, s->n_vocab, FILL_RANDOM);
    for (int l = 0; l < s->n_layer; l++) {
        add_tensor(p, "attn_norm.weight", l, d, 0, FILL_ONES);
        add_tensor(p, "attn_q.weight", l, d, q, FILL_RANDOM);
        add_tensor(p, "attn_k.weight", l, d, kv, FILL_RANDOM);
        add_tensor(p, "attn_v.weight", l, d, kv, FILL_RANDOM);
        if (s->qkv_bias) {
            add_tensor(p, "attn_q.bias", l, q, 0, FILL_RANDOM);
            add_tensor(p, "attn_k.bias", l, kv, 0, FILL_RANDOM);
            add_tensor(p, "attn_v.bias", l, kv, 0, FILL_RANDOM);
        }
        if (s->qk_norm) {
            add_tensor(p, "attn_q_norm.weight", l, hd, 0, FILL_ONES);
            add_tensor(p, "attn_k_norm.weight", l, hd, 0, FILL_ONES);
        }
        add_tensor(p, "attn_output.weight", l, q, d, FILL_RANDOM);
        add_tensor(p, "ffn_norm.weight", l, d, 0, FILL_ONES);
        add_tensor(p, "ffn_gate.weight", l, d, s->n_ff, FILL_RANDOM);
        add_tensor(p, "ffn_up.weight", l, d, s->n_ff, FILL_RANDOM);
        add_tensor(p, "ffn_down.weight", l, s->n_ff, d, FILL_RANDOM);
    }
    add_tensor(p, "output_norm.weight", -1, d, 0, FILL_ONES);
    if (!s->tied) add_tensor(p, "output.weight", -1, d, s->n_vocab, FILL_RANDOM);
}

// >>random numbers: xoshiro256** seeded through splitmix64 from the seed, the tensor's name and the row, so a
// tensor's values depend neither on its type nor on the other tensors nor on the thread count.

typedef struct mk_rng { uint64_t s[4]; } mk_rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(mk_rng *r) {
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

static uint64_t hash_name(const char *name) {
    uint64_t h = 0xcbf29ce484222325ull;   // FNV-1a
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
    return h;
}

// One stream per row: any number of threads writes the same bytes.
static void rng_seed(mk_rng *r, uint64_t tensor_seed, int64_t row) {
    uint64_t x = tensor_seed ^ ((uint64_t)row * 0xd1b54a32d192ed03ull);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

// Sum of four uniforms (Irwin-Hall): bell-shaped, bounded, one 64-bit draw per value. The four 16-bit parts sum
// to mean 2*65535 and standard deviation 65536*sqrt(4/12); scale that to `std`.
static void fill_normalish(mk_rng *r, float *dst, size_t n, float std) {
    const float scale = std / (65536.0f * 0.57735027f);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = rng_next(r);
        int32_t sum = (int32_t)(v & 0xffff) + (int32_t)((v >> 16) & 0xffff) + (int32_t)((v >> 32) & 0xffff) +
                      (int32_t)(v >> 48) - 2 * 65535;
        dst[i] = (float)sum * scale;
    }
}

// >>workers: each generates and encodes a slice of a chunk's rows

#define MK_MAX_THREADS 64

typedef struct mk_job {
    const mk_tensor *t;
    uint64_t seed;                 // the --seed mixed with the tensor's name
    int64_t row_first, row_end;
    uint8_t *out;                  // encoded rows, row_bytes each
    size_t row_bytes;
    float *row;                    // scratch: one row of floats
    tbc_result rc;
} mk_job;

static void *encode_rows(void *arg) {
    mk_job *j = (mk_job *)arg;
    const size_t ne0 = (size_t)j->t->ne[0];
    for (int64_t r = j->row_first; r < j->row_end; r++) {
        if (j->t->fill == FILL_ONES) {
            for (size_t k = 0; k < ne0; k++) j->row[k] = 1.0f;
        } else {
            mk_rng rng;
            rng_seed(&rng, j->seed, r);
            fill_normalish(&rng, j->row, ne0, 0.02f);
        }
        tbc_result rc = tbc_quantize_row(j->t->type, j->row, j->out + (size_t)(r - j->row_first) * j->row_bytes,
                                         (int64_t)ne0);
        if (rc != TBC_OK) { j->rc = rc; break; }
    }
    return NULL;
}

// >>writing

static void fwrite_all(FILE *f, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("write to '%s' failed: %s", path, strerror(errno));
}

static void fwrite_zeros(FILE *f, size_t n, const char *path) {
    static const uint8_t zeros[MK_ALIGN] = {0};
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        fwrite_all(f, zeros, k, path);
        n -= k;
    }
}

static uint64_t align_up(uint64_t x) { return (x + MK_ALIGN - 1) / MK_ALIGN * MK_ALIGN; }

static void usage(FILE *f) {
    fprintf(f,
            "usage: mkmodel --shape NAME --type TYPE -o FILE [--vocab VOCAB.gguf] [--seed N] [--layers N]\n"
            "               [--threads N]\n"
            "\n"
            "Writes a GGUF v3 file with a real model's shape and random weights (for tests and benchmarks).\n"
            "\n"
            "  --shape NAME     ");
    for (size_t i = 0; i < N_SHAPES; i++) fprintf(f, "%s%s", i ? ", " : "", shapes[i].name);
    fprintf(f, "\n  --type TYPE      ");
    for (size_t i = 0; i < N_TYPE_NAMES; i++) fprintf(f, "%s%s", i ? ", " : "", type_names[i].name);
    fprintf(f,
            "\n"
            "                   (every 2-D weight in TYPE, 1-D tensors F32; q4_k_m is llama.cpp's Q4_K_M mix)\n"
            "  -o FILE          output path (written as FILE.part, renamed when complete)\n"
            "  --vocab FILE     copy the tokenizer.* keys of this GGUF (e.g. a ggml-vocab-*.gguf); the model's\n"
            "                   vocabulary size becomes its token count. Default: a synthetic SentencePiece\n"
            "                   vocabulary\n"
            "  --seed N         random seed (default 42): the same seed writes the same file\n"
            "  --layers N       override the shape's layer count\n"
            "  --threads N      encoding threads (default: the online CPUs); the file does not depend on it\n"
            "  --help           this text\n");
}

static uint64_t parse_u64(const char *opt, const char *s) {
    char *end = NULL;
    errno = 0;
    if (!s || !*s || *s == '-') die("%s needs a non-negative number, got '%s' (see --help)", opt, s ? s : "");
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || !end || *end) die("%s needs a non-negative number, got '%s' (see --help)", opt, s);
    return (uint64_t)v;
}

int main(int argc, char **argv) {
    const char *shape_name = NULL, *type_name = NULL, *out_path = NULL, *vocab_path = NULL;
    uint64_t seed = 42;
    long layers = -1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int n_threads = cpus < 1 ? 1 : cpus > MK_MAX_THREADS ? MK_MAX_THREADS : (int)cpus;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        int known = strcmp(a, "--shape") == 0 || strcmp(a, "--type") == 0 || strcmp(a, "-o") == 0 ||
                    strcmp(a, "--vocab") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--layers") == 0 ||
                    strcmp(a, "--threads") == 0;
        if (!known) die("unknown argument '%s' (see --help)", a);
        if (i + 1 >= argc) die("%s needs a value (see --help)", a);
        const char *v = argv[++i];
        if (strcmp(a, "--shape") == 0) shape_name = v;
        else if (strcmp(a, "--type") == 0) type_name = v;
        else if (strcmp(a, "-o") == 0) out_path = v;
        else if (strcmp(a, "--vocab") == 0) vocab_path = v;
        else if (strcmp(a, "--seed") == 0) seed = parse_u64(a, v);
        else if (strcmp(a, "--threads") == 0) {
            uint64_t n = parse_u64(a, v);
            if (n < 1 || n > MK_MAX_THREADS) die("--threads must be between 1 and %d, got %s", MK_MAX_THREADS, v);
            n_threads = (int)n;
        } else {
            uint64_t n = parse_u64(a, v);
            if (n < 1 || n > 1000) die("--layers must be between 1 and 1000, got %s", v);
            layers = (long)n;
        }
    }
    if (!shape_name) die("--shape is required (see --help)");
    if (!type_name) die("--type is required (see --help)");
    if (!out_path || !*out_path) die("-o FILE is required (see --help)");

    const uint32_t one = 1;
    if (*(const uint8_t *)&one != 1) die("this tool writes GGUF (little-endian) only on a little-endian host");

    mk_shape s;
    const mk_shape *found = NULL;
    for (size_t i = 0; i < N_SHAPES; i++)
        if (strcmp(shapes[i].name, shape_name) == 0) found = &shapes[i];
    if (!found) {
        fprintf(stderr, "mkmodel: unknown shape '%s' (known:", shape_name);
        for (size_t i = 0; i < N_SHAPES; i++) fprintf(stderr, " %s", shapes[i].name);
        fprintf(stderr, ")\n");
        return 1;
    }
    s = *found;
    const mk_typename *tn = NULL;
    for (size_t i = 0; i < N_TYPE_NAMES; i++)
        if (strcmp(type_names[i].name, type_name) == 0) tn = &type_names[i];
    if (!tn) {
        fprintf(stderr, "mkmodel: unknown type '%s' (known:", type_name);
        for (size_t i = 0; i < N_TYPE_NAMES; i++) fprintf(stderr, " %s", type_names[i].name);
        fprintf(stderr, ")\n");
        return 1;
    }
    if (tn->q4_k_m) {
        if (!type_ok(TBC_TYPE_Q4_K) || !type_ok(TBC_TYPE_Q6_K) || !type_ok(TBC_TYPE_Q8_0) || !type_ok(TBC_TYPE_Q5_0))
            die("this build of tbcluster.h cannot encode the types q4_k_m needs (Q4_K, Q6_K, Q8_0, Q5_0)");
    } else if (!type_ok(tn->type)) {
        die("this build of tbcluster.h cannot encode type %s", type_name);
    }
    if (layers > 0) s.n_layer = (int)layers;

    // metadata: general.*, the architecture's hyperparameters, then the vocabulary
    mk_meta meta;
    memset(&meta, 0, sizeof meta);
    mk_meta vocab;
    memset(&vocab, 0, sizeof vocab);
    if (vocab_path) s.n_vocab = copy_vocab(&vocab, vocab_path);
    else synth_vocab(&vocab, s.n_vocab);

    const int head_dim = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    char name[160];
    snprintf(name, sizeof name, "%s (random weights, %s)", s.display, type_name);
    kv_str(&meta, "general.architecture", s.arch);
    kv_str(&meta, "general.name", name);
    kv_str(&meta, "general.description", "random weights written by tbcluster's mkmodel: not a trained model");
    kv_u32(&meta, "general.file_type", (uint32_t)tn->ftype);
    kv_u32(&meta, "general.quantization_version", 2);
    kv_u32(&meta, "general.alignment", MK_ALIGN);
    kv_arch_u32(&meta, s.arch, "vocab_size", (uint32_t)s.n_vocab);
    kv_arch_u32(&meta, s.arch, "context_length", (uint32_t)s.n_ctx);
    kv_arch_u32(&meta, s.arch, "embedding_length", (uint32_t)s.n_embd);
    kv_arch_u32(&meta, s.arch, "block_count", (uint32_t)s.n_layer);
    kv_arch_u32(&meta, s.arch, "feed_forward_length", (uint32_t)s.n_ff);
    kv_arch_u32(&meta, s.arch, "attention.head_count", (uint32_t)s.n_head);
    kv_arch_u32(&meta, s.arch, "attention.head_count_kv", (uint32_t)s.n_head_kv);
    kv_arch_f32(&meta, s.arch, "attention.layer_norm_rms_epsilon", s.eps);
    kv_arch_f32(&meta, s.arch, "rope.freq_base", s.theta);
    if (strcmp(s.arch, "llama") == 0) kv_arch_u32(&meta, s.arch, "rope.dimension_count", (uint32_t)head_dim);
    if (s.head_dim) {
        kv_arch_u32(&meta, s.arch, "attention.key_length", (uint32_t)head_dim);
        kv_arch_u32(&meta, s.arch, "attention.value_length", (uint32_t)head_dim);
    }
    buf_put(&meta.kv, vocab.kv.p, vocab.kv.n);
    meta.n_kv += vocab.n_kv;
    free(vocab.kv.p);

    // tensor directory
    mk_plan plan;
    memset(&plan, 0, sizeof plan);
    plan.base = tn->type;
    plan.q4_k_m = tn->q4_k_m;
    plan.n_layer = s.n_layer;
    plan.tied = s.tied;
    plan_model(&plan, &s);
    uint64_t off = 0, total = 0, n_params = 0;
    int64_t max_ne0 = 0;
    for (size_t i = 0; i < plan.n; i++) {
        mk_tensor *t = &plan.t[i];
        t->offset = off;
        off = align_up(off + t->bytes);
        total += t->bytes;
        n_params += (uint64_t)t->ne[0] * (uint64_t)t->ne[1];
        if (t->ne[0] > max_ne0) max_ne0 = t->ne[0];
    }
    mk_buf dir;
    memset(&dir, 0, sizeof dir);
    for (size_t i = 0; i < plan.n; i++) {
        const mk_tensor *t = &plan.t[i];
        buf_str(&dir, t->name);
        buf_u32(&dir, (uint32_t)t->n_dims);
        for (int k = 0; k < t->n_dims; k++) buf_u64(&dir, (uint64_t)t->ne[k]);
        buf_u32(&dir, (uint32_t)t->type);
        buf_u64(&dir, t->offset);
    }

    // create the output first: a bad path is reported before any work
    char part_path[4096];
    if ((size_t)snprintf(part_path, sizeof part_path, "%s.part", out_path) >= sizeof part_path)
        die("output path too long");
    FILE *f = fopen(part_path, "wb");
    if (!f) die("cannot create '%s': %s", part_path, strerror(errno));
    partial_file = part_path;
    fprintf(stderr, "mkmodel: %s %s: %d layers, dim %d, %d/%d heads (head_dim %d), ffn %d, vocab %d%s\n", s.name,
            type_name, s.n_layer, s.n_embd, s.n_head, s.n_head_kv, head_dim, s.n_ff, s.n_vocab,
            s.tied ? ", tied output" : "");
    fprintf(stderr, "mkmodel: %zu tensors, %.1fM parameters, %.1f MiB of weights; the weights are RANDOM%s\n", plan.n,
            (double)n_params / 1e6, (double)total / 1048576.0,
            vocab_path ? "" : " and so is the vocabulary (synthetic SentencePiece pieces): its text is noise");

    // header
    static char iobuf[1 << 20];
    setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
    const uint32_t magic = 0x46554747u;   // "GGUF"
    const uint32_t version = 3;
    const uint64_t n_tensors = plan.n;
    fwrite_all(f, &magic, 4, part_path);
    fwrite_all(f, &version, 4, part_path);
    fwrite_all(f, &n_tensors, 8, part_path);
    fwrite_all(f, &meta.n_kv, 8, part_path);
    fwrite_all(f, meta.kv.p, meta.kv.n, part_path);
    fwrite_all(f, dir.p, dir.n, part_path);
    uint64_t head = 24 + (uint64_t)meta.kv.n + (uint64_t)dir.n;
    fwrite_zeros(f, (size_t)(align_up(head) - head), part_path);
    free(meta.kv.p);
    free(dir.p);

    // data, streamed: a chunk of rows at a time is generated and encoded by the workers, then written
    size_t chunk_rows_max = MK_CHUNK_FLOATS / (size_t)max_ne0;
    if (chunk_rows_max == 0) chunk_rows_max = 1;
    uint8_t *enc = (uint8_t *)malloc(chunk_rows_max * (size_t)max_ne0 * sizeof(float));   // no type is wider than F32
    if (!enc) die("out of memory for the %zu-row chunk buffer", chunk_rows_max);
    mk_job jobs[MK_MAX_THREADS];
    pthread_t tids[MK_MAX_THREADS];
    for (int k = 0; k < n_threads; k++) {
        jobs[k].row = (float *)malloc((size_t)max_ne0 * sizeof(float));
        if (!jobs[k].row) die("out of memory");
    }
    double t0 = now_s(), last_report = t0;
    uint64_t done = 0, pos = 0;
    int last_decile = 0;
    for (size_t i = 0; i < plan.n; i++) {
        const mk_tensor *t = &plan.t[i];
        fwrite_zeros(f, (size_t)(t->offset - pos), part_path);
        pos = t->offset;
        const uint64_t name_hash = hash_name(t->name);
        const size_t ne0 = (size_t)t->ne[0];
        const size_t row_bytes = (size_t)(t->bytes / (uint64_t)t->ne[1]);
        const size_t chunk_rows = chunk_rows_max * (size_t)max_ne0 / ne0;
        for (int64_t r0 = 0; r0 < t->ne[1]; r0 += (int64_t)chunk_rows) {
            size_t nr = (size_t)(t->ne[1] - r0) < chunk_rows ? (size_t)(t->ne[1] - r0) : chunk_rows;
            // small chunks are not worth a thread
            int nt = nr * ne0 < 65536 ? 1 : n_threads;
            for (int k = 0; k < nt; k++) {
                mk_job *j = &jobs[k];
                j->t = t;
                j->seed = seed ^ name_hash;
                j->row_first = r0 + (int64_t)(nr * (size_t)k / (size_t)nt);
                j->row_end = r0 + (int64_t)(nr * (size_t)(k + 1) / (size_t)nt);
                j->out = enc + (size_t)(j->row_first - r0) * row_bytes;
                j->row_bytes = row_bytes;
                j->rc = TBC_OK;
                if (k > 0 && pthread_create(&tids[k], NULL, encode_rows, j) != 0) die("cannot start a thread");
            }
            encode_rows(&jobs[0]);
            for (int k = 1; k < nt; k++) pthread_join(tids[k], NULL);
            for (int k = 0; k < nt; k++)
                if (jobs[k].rc != TBC_OK)
                    die("encoding %s as %s failed: %s", t->name, tbc_type_name(t->type), tbc_result_str(jobs[k].rc));
            fwrite_all(f, enc, nr * row_bytes, part_path);
            pos += nr * row_bytes;
            done += nr * row_bytes;
            int decile = (int)(done * 10 / (total ? total : 1));
            double tnow = now_s();
            if (decile > last_decile && tnow - last_report > 0.5) {
                fprintf(stderr, "mkmodel: %3d%%  %7.1f MiB  %6.1f s  (%s)\n", decile * 10, (double)done / 1048576.0,
                        tnow - t0, t->name);
                last_report = tnow;
                last_decile = decile;
            }
        }
    }
    for (int k = 0; k < n_threads; k++) free(jobs[k].row);
    // ggml pads after the last tensor too, and a reader that loads the whole data section expects that padding
    fwrite_zeros(f, (size_t)(align_up(pos) - pos), part_path);
    pos = align_up(pos);
    free(enc);
    if (fflush(f) != 0 || ferror(f)) die("write to '%s' failed: %s", part_path, strerror(errno));
    if (fclose(f) != 0) die("closing '%s' failed: %s", part_path, strerror(errno));
    partial_file = NULL;
    if (rename(part_path, out_path) != 0) die("cannot rename '%s' to '%s': %s", part_path, out_path, strerror(errno));
    double dt = now_s() - t0;
    fprintf(stderr, "mkmodel: wrote %s: %.1f MiB in %.2f s (%.0f MiB/s)\n", out_path,
            (double)(align_up(head) + pos) / 1048576.0, dt, dt > 0 ? (double)pos / 1048576.0 / dt : 0.0);
    // the type mix, for q4_k_m and fallbacks
    int counts[TBC_TYPE_COUNT_] = {0};
    for (size_t i = 0; i < plan.n; i++) counts[plan.t[i].type]++;
    fprintf(stderr, "mkmodel: tensor types:");
    for (int k = 0; k < TBC_TYPE_COUNT_; k++)
        if (counts[k]) fprintf(stderr, " %s x%d", tbc_type_name((tbc_type)k), counts[k]);
    fprintf(stderr, "\n");
    free(plan.t);
    return 0;
}
