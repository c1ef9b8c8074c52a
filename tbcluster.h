/* tbcluster.h - v0.1.0 - run one large language model across several computers - public domain-style MIT, see end

   Do this:
      #define TBC_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.

   QUICK START (one node)

      tbc_model *model; tbc_session *s;
      tbc_model_desc md = {0}; md.path = "model.gguf";
      if (tbc_model_open(&md, &model) != TBC_OK) ...               // validates the whole GGUF header
      tbc_session_desc sd = {0}; sd.model = model; sd.n_threads = 4;
      if (tbc_session_create(&sd, &s) != TBC_OK) ...               // loads this node's shard, KV cache
      tbc_generate_desc gd = {0}; gd.prompt = "Once upon a time"; gd.max_tokens = 64;
      gd.on_text = my_callback;                                     // streamed, whole UTF-8 characters
      tbc_session_generate(s, &gd);
      tbc_session_destroy(s); tbc_model_destroy(model);

   BUILD OPTIONS (define before including)
      TBC_STATIC        make every function static (private to the including file)
      TBC_NO_RDMA       compile out the RDMA transport (no dlopen of libibverbs)
      TBC_MALLOC/TBC_REALLOC/TBC_FREE   your allocator (all three, or none)

   ERRORS
      Every fallible call returns a tbc_result: TBC_OK (0) or a negative code; tbc_result_str() names it. The detail
      (which key, which tensor, which byte offset, errno) goes to the tbc_error the caller passes in a desc, and is kept
      on objects (tbc_model_last_error(), tbc_session_last_error()). The library never prints, exits or aborts: it
      logs through the tbc_log_fn given in a desc (silent by default; tbc_log_stderr is provided).

   THREADING
      A tbc_model is immutable after tbc_model_open and may be shared by sessions on several threads. A tbc_session
      is used by one thread at a time; it owns a pool of n_threads-1 worker threads for its matrix products.

   MODEL FILES
      GGUF v2 and v3, mmap'ed read-only and treated as untrusted input. Architectures: llama (Llama 2/3.x, Mistral,
      TinyLlama, SmolLM), qwen2, qwen3. Tensor types: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K.
*/
// The implementation needs POSIX and BSD declarations (mmap, madvise, clock_gettime): ask for them before the
// first system header is read. Include this file first in the implementation file if you compile with -std=c11.
#if defined(TBC_IMPLEMENTATION) && defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#ifndef TBCLUSTER_H
#define TBCLUSTER_H

#include <stddef.h>
#include <stdint.h>

#define TBC_VERSION_MAJOR 0
#define TBC_VERSION_MINOR 1
#define TBC_VERSION_PATCH 0

#ifdef TBC_STATIC
#define TBC_API static
#else
#define TBC_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

// >>results
// One list generates the enum and the strings: X(name, value, description)
#define TBC_RESULT_LIST(X) \
    X(TBC_OK,                     0, "success") \
    X(TBC_ERR_INVALID_ARGUMENT,  -1, "invalid argument") \
    X(TBC_ERR_OUT_OF_MEMORY,     -2, "out of memory") \
    X(TBC_ERR_IO,                -3, "file or system I/O failed") \
    X(TBC_ERR_GGUF_MAGIC,        -4, "not a GGUF file (bad magic)") \
    X(TBC_ERR_GGUF_VERSION,      -5, "unsupported GGUF version") \
    X(TBC_ERR_GGUF_TRUNCATED,    -6, "GGUF file is truncated") \
    X(TBC_ERR_GGUF_LIMIT,        -7, "GGUF count or length out of range") \
    X(TBC_ERR_GGUF_VALUE_TYPE,   -8, "GGUF metadata value has an unknown type") \
    X(TBC_ERR_GGUF_DUPLICATE,    -9, "GGUF key or tensor name appears twice") \
    X(TBC_ERR_GGUF_ALIGNMENT,   -10, "GGUF alignment is invalid") \
    X(TBC_ERR_TENSOR_TYPE,      -11, "tensor has an unknown or unsupported type") \
    X(TBC_ERR_TENSOR_SHAPE,     -12, "tensor has invalid dimensions") \
    X(TBC_ERR_TENSOR_OFFSET,    -13, "tensor data lies outside the file or overlaps") \
    X(TBC_ERR_TENSOR_MISSING,   -14, "a required tensor is missing") \
    X(TBC_ERR_KEY_MISSING,      -15, "a required metadata key is missing") \
    X(TBC_ERR_KEY_TYPE,         -16, "a metadata key has the wrong type") \
    X(TBC_ERR_MODEL_CONFIG,     -17, "model hyperparameters are invalid") \
    X(TBC_ERR_UNSUPPORTED_ARCH, -18, "model architecture is not supported") \
    X(TBC_ERR_TOKENIZER,        -19, "tokenizer data is invalid or unsupported") \
    X(TBC_ERR_CONTEXT_FULL,     -20, "context window is full") \
    X(TBC_ERR_BUFFER_TOO_SMALL, -21, "output buffer is too small") \
    X(TBC_ERR_CANCELLED,        -22, "cancelled by the caller") \
    X(TBC_ERR_THREAD,           -23, "could not start a thread") \
    X(TBC_ERR_SHARD,            -24, "shard description is invalid for this model") \
    X(TBC_ERR_TEMPLATE,         -25, "chat template could not be applied") \
    X(TBC_ERR_NETWORK,          -26, "network address or connection failed") \
    X(TBC_ERR_PEER_LOST,        -27, "a peer closed the connection or died") \
    X(TBC_ERR_TIMEOUT,          -28, "a peer did not answer in time") \
    X(TBC_ERR_PROTOCOL,         -29, "a peer sent a malformed or unexpected message") \
    X(TBC_ERR_VERSION,          -30, "a peer speaks another protocol version") \
    X(TBC_ERR_AUTH,             -31, "authentication failed (wrong or missing cluster key)") \
    X(TBC_ERR_MODEL_MISMATCH,   -32, "a peer has another model")

typedef enum tbc_result {
#define TBC__X(name, value, text) name = value,
    TBC_RESULT_LIST(TBC__X)
#undef TBC__X
    TBC_RESULT_MIN_ = -32
} tbc_result;

TBC_API const char *tbc_result_str(tbc_result r);

// Detail of the last failure; pass one in a desc to learn why a create/open call failed.
typedef struct tbc_error {
    tbc_result code;
    char message[512];
} tbc_error;

// >>logging
typedef enum tbc_log_level { TBC_LOG_ERROR = 0, TBC_LOG_WARN = 1, TBC_LOG_INFO = 2, TBC_LOG_DEBUG = 3 } tbc_log_level;
typedef void (*tbc_log_fn)(void *user, tbc_log_level level, const char *message);
typedef struct tbc_logger {
    tbc_log_fn fn;        // NULL: silent
    void *user;
    tbc_log_level max_level;  // messages above this level are dropped; 0 (zeroed) means INFO
} tbc_logger;
// Writes "tbc: level: message" lines to stderr; user is ignored.
TBC_API void tbc_log_stderr(void *user, tbc_log_level level, const char *message);

// >>tensor types (values are GGUF's)
typedef enum tbc_type {
    TBC_TYPE_F32 = 0, TBC_TYPE_F16 = 1, TBC_TYPE_Q4_0 = 2, TBC_TYPE_Q4_1 = 3,
    TBC_TYPE_Q5_0 = 6, TBC_TYPE_Q5_1 = 7, TBC_TYPE_Q8_0 = 8, TBC_TYPE_Q8_1 = 9,
    TBC_TYPE_Q2_K = 10, TBC_TYPE_Q3_K = 11, TBC_TYPE_Q4_K = 12, TBC_TYPE_Q5_K = 13, TBC_TYPE_Q6_K = 14,
    TBC_TYPE_Q8_K = 15, TBC_TYPE_BF16 = 30, TBC_TYPE_COUNT_ = 31
} tbc_type;

// Name ("Q4_K") or NULL when the type is unknown to this library.
TBC_API const char *tbc_type_name(tbc_type t);
// Values per block and bytes per block; 0 when unknown.
TBC_API int tbc_type_block_size(tbc_type t);
TBC_API size_t tbc_type_block_bytes(tbc_type t);
// Encodes n floats (n a multiple of the block size) into dst; dst holds n/block*block_bytes bytes.
TBC_API tbc_result tbc_quantize_row(tbc_type t, const float *src, void *dst, int64_t n);
// Decodes n values of type t into floats.
TBC_API tbc_result tbc_dequantize_row(tbc_type t, const void *src, float *dst, int64_t n);


// >>model file (GGUF)
typedef enum tbc_gguf_type {
    TBC_GGUF_UINT8 = 0, TBC_GGUF_INT8 = 1, TBC_GGUF_UINT16 = 2, TBC_GGUF_INT16 = 3, TBC_GGUF_UINT32 = 4,
    TBC_GGUF_INT32 = 5, TBC_GGUF_FLOAT32 = 6, TBC_GGUF_BOOL = 7, TBC_GGUF_STRING = 8, TBC_GGUF_ARRAY = 9,
    TBC_GGUF_UINT64 = 10, TBC_GGUF_INT64 = 11, TBC_GGUF_FLOAT64 = 12
} tbc_gguf_type;

typedef struct tbc_model tbc_model;

typedef struct tbc_model_desc {
    const char *path;         // GGUF file; required
    tbc_logger logger;
    tbc_error *error;         // optional: why opening failed
    int vocab_only;           // 1: a vocabulary-only file (no tensors, no architecture needed)
} tbc_model_desc;

typedef struct tbc_model_info {
    const char *arch;         // "llama", "qwen2", "qwen3"
    const char *name;         // general.name or ""
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_ctx_train;          // context length the model was trained with
    float rms_eps, rope_theta;
    int rope_neox;            // 1: rotate (i, i+d/2) pairs; 0: (2i, 2i+1)
    int tied_output;          // 1: the output matrix is token_embd
    uint64_t file_bytes, weight_bytes;
    tbc_type main_type;       // type of most weight bytes
    int bos, eos, eot;        // -1 when absent
} tbc_model_info;

// Opens and validates a GGUF file (header, metadata, tensor directory, architecture, tokenizer). Tensor data is
// mapped but not read. On failure *out is untouched and d->error says why. Thread-safe with respect to other models.
TBC_API tbc_result tbc_model_open(const tbc_model_desc *d, tbc_model **out);
TBC_API void tbc_model_destroy(tbc_model *m);   // accepts NULL
TBC_API void tbc_model_get_info(const tbc_model *m, tbc_model_info *info);
TBC_API const tbc_error *tbc_model_last_error(const tbc_model *m);

// Metadata access for tools: number of keys, and each key's name, type and (for arrays) element type and count.
TBC_API int64_t tbc_model_meta_count(const tbc_model *m);
TBC_API const char *tbc_model_meta_key(const tbc_model *m, int64_t i);   // NUL-terminated copy owned by the model
TBC_API tbc_gguf_type tbc_model_meta_type(const tbc_model *m, int64_t i, tbc_gguf_type *array_type, uint64_t *count);
// Raw little-endian bytes of value i as stored in the file (for arrays: starting at the first element), and length.
TBC_API const void *tbc_model_meta_raw(const tbc_model *m, int64_t i, uint64_t *bytes);
TBC_API int64_t tbc_model_meta_find(const tbc_model *m, const char *key);  // -1 when absent
// Tensor directory access.
TBC_API int64_t tbc_model_tensor_count(const tbc_model *m);
TBC_API const char *tbc_model_tensor_name(const tbc_model *m, int64_t i);
TBC_API tbc_type tbc_model_tensor_type(const tbc_model *m, int64_t i, int64_t ne[4], int *n_dims);

// >>tokenizer
#define TBC_TOKENIZE_ADD_SPECIAL 1    // add BOS/EOS where the vocabulary says so
#define TBC_TOKENIZE_PARSE_SPECIAL 2  // control tokens written in the text ("<|im_start|>") become those tokens
#define TBC_PIECE_RENDER_SPECIAL 1    // tbc_token_to_piece: render control tokens as their text (else nothing)

// Tokenizes len bytes of UTF-8 text. Writes up to cap ids to out and the total count to *n_out; when the count
// exceeds cap it returns TBC_ERR_BUFFER_TOO_SMALL (call again with a bigger buffer). Thread-safe.
TBC_API tbc_result tbc_tokenize(const tbc_model *m, const char *text, size_t len, int flags, int32_t *out,
                                int64_t cap, int64_t *n_out);
// The bytes of one token (may be part of a UTF-8 character). Returns the length (which may exceed cap: then
// the piece is truncated), or -1 for an id outside the vocabulary.
TBC_API int64_t tbc_token_to_piece(const tbc_model *m, int32_t token, int flags, char *buf, size_t cap);
TBC_API int tbc_token_is_eog(const tbc_model *m, int32_t token);  // end of generation (EOS, EOT, <|im_end|>...)
TBC_API int32_t tbc_token_find(const tbc_model *m, const char *text);  // exact vocabulary entry, or -1
TBC_API int32_t tbc_n_vocab(const tbc_model *m);

// >>chat templates
typedef struct tbc_chat_message {
    const char *role;     // "system", "user", "assistant"
    const char *content;
} tbc_chat_message;
// Renders messages with the model's chat template (tokenizer.chat_template), recognised by family: Llama 2,
// Llama 3, ChatML (Qwen, SmolLM...), Mistral, Phi-3, Gemma. An unknown or absent template falls back to ChatML
// (and logs a warning). add_assistant: end with the assistant turn's header so the model answers. Writes at most
// cap bytes (NUL-terminated when room) and the full length to *len; TBC_ERR_BUFFER_TOO_SMALL when cap <= length.
TBC_API tbc_result tbc_chat_apply(const tbc_model *m, const tbc_chat_message *messages, size_t n, int add_assistant,
                                  char *buf, size_t cap, size_t *len);
// The family recognised in the model's template: "llama2", "llama3", "chatml", "mistral", "phi3", "gemma", or
// "chatml (fallback)".
TBC_API const char *tbc_chat_template_name(const tbc_model *m);

// >>shards and sessions
// What one node holds. Zeroed = the whole model. Pipeline parallel: a layer range; the first range also holds the
// token embeddings, the last the output norm and matrix. Tensor parallel: slice tp_rank of tp_size: a contiguous
// share of the KV-head groups (with their query heads) and of the FFN rows; slice boundaries fall on quantization
// blocks. Only the bytes of the shard are read from the file.
typedef struct tbc_shard_desc {
    int layer_begin, layer_end;   // [begin, end); 0,0 = all layers
    int tp_rank, tp_size;         // 0,0 = no tensor split
} tbc_shard_desc;

typedef struct tbc_shard_info {
    int layer_begin, layer_end, tp_rank, tp_size;
    int head_kv_begin, head_kv_end;      // this node's KV heads (query heads follow their group)
    int ff_begin, ff_end;                // this node's FFN rows
    int has_embeddings, has_output;
    uint64_t weight_bytes;               // bytes of weights this node holds
    uint64_t copied_bytes;               // of which copied out of the file (column slices), the rest is mapped
    uint64_t streamed_bytes;             // weight bytes read per decoded token (every matrix once, one embedding row)
    uint64_t kv_bytes;                   // KV cache bytes
} tbc_shard_info;

typedef enum tbc_kv_type { TBC_KV_F32 = 0, TBC_KV_F16 = 1 } tbc_kv_type;

typedef struct tbc_session tbc_session;

typedef struct tbc_session_desc {
    const tbc_model *model;       // required; must outlive the session
    tbc_shard_desc shard;         // zeroed: the whole model on this node
    int n_ctx;                    // context length; 0 = the model's training context (capped at 4096)
    int n_batch;                  // tokens per forward pass while reading a prompt; 0 = 256
    int n_threads;                // 0 = number of online CPUs
    tbc_kv_type kv_type;          // KV cache element type; zeroed = F32
    int prefault;                 // 1: read the shard's pages at creation (load time instead of first token)
    tbc_logger logger;
    tbc_error *error;             // optional: why creation failed
} tbc_session_desc;

// Creates a session: binds this node's shard (mapping or copying only its bytes), allocates the KV cache and
// scratch, starts n_threads-1 workers. On failure *out is untouched and desc->error says why.
TBC_API tbc_result tbc_session_create(const tbc_session_desc *d, tbc_session **out);
TBC_API void tbc_session_destroy(tbc_session *s);  // accepts NULL
TBC_API const tbc_error *tbc_session_last_error(const tbc_session *s);
TBC_API void tbc_session_shard_info(const tbc_session *s, tbc_shard_info *info);

// Appends n tokens at the current position and runs the forward pass. Afterwards tbc_session_logits() holds the
// logits of the last token. TBC_ERR_CONTEXT_FULL (nothing evaluated) if they don't fit. Not thread-safe per session.
TBC_API tbc_result tbc_session_eval(tbc_session *s, const int32_t *tokens, int64_t n);
TBC_API const float *tbc_session_logits(const tbc_session *s);  // n_vocab floats, valid until the next eval
TBC_API int64_t tbc_session_pos(const tbc_session *s);           // tokens in the context
TBC_API int64_t tbc_session_n_ctx(const tbc_session *s);
TBC_API tbc_result tbc_session_rewind(tbc_session *s, int64_t pos);  // forget tokens from pos on

// >>sampling
// Zeroed = greedy. temperature 0: argmax (lowest id on ties). top_k 0, top_p 0 or 1, min_p 0: off.
// repeat_penalty 0 or 1: off. Penalties look at the last repeat_last_n tokens (0 = 64).
typedef struct tbc_sampling {
    float temperature;
    int top_k;
    float top_p, min_p;
    float repeat_penalty, presence_penalty, frequency_penalty;
    int repeat_last_n;
    uint64_t seed;                // same seed, same model, same prompt: same text
} tbc_sampling;

typedef struct tbc_sampler tbc_sampler;
TBC_API tbc_result tbc_sampler_create(const tbc_sampling *p, int32_t n_vocab, tbc_sampler **out);
TBC_API void tbc_sampler_destroy(tbc_sampler *s);
// Picks a token from logits (not modified) and remembers it for the penalties.
TBC_API int32_t tbc_sampler_sample(tbc_sampler *s, const float *logits);
TBC_API void tbc_sampler_accept(tbc_sampler *s, int32_t token);   // a prompt token, for the penalties
TBC_API void tbc_sampler_reset(tbc_sampler *s);

// >>generation
typedef enum tbc_stop_reason {
    TBC_STOP_NONE = 0, TBC_STOP_EOG = 1, TBC_STOP_MAX_TOKENS = 2, TBC_STOP_STRING = 3, TBC_STOP_CALLBACK = 4,
    TBC_STOP_CONTEXT = 5
} tbc_stop_reason;

// Called with each new piece of text (whole UTF-8 characters only; text held back while it could be the start of
// a stop string) and the token that completed it. Return nonzero to stop.
typedef int (*tbc_text_fn)(void *user, const char *text, size_t len, int32_t token);
// Called with the logits before each token is sampled (the first call: right after the prompt). Optional.
typedef void (*tbc_logits_fn)(void *user, const float *logits, int32_t n_vocab);

typedef struct tbc_generate_desc {
    const char *prompt;                    // text prompt (BOS added as the vocabulary says), or
    const tbc_chat_message *messages;      // a conversation rendered with the model's chat template, or
    size_t n_messages;
    const int32_t *prompt_tokens;          // token ids as they are
    int64_t n_prompt_tokens;
    int max_tokens;                        // 0 = until end of generation or a full context
    tbc_sampling sampling;
    const char *const *stop;               // stop strings (not included in the output)
    size_t n_stop;
    tbc_text_fn on_text;
    tbc_logits_fn on_logits;
    void (*on_token)(void *user, int32_t token);   // every sampled token (also the end-of-generation one)
    void *user;
} tbc_generate_desc;

typedef struct tbc_generate_result {
    int64_t n_prompt, n_generated;
    double prefill_seconds, decode_seconds;
    tbc_stop_reason stop_reason;
} tbc_generate_result;

// Clears the context, reads the prompt, then samples up to max_tokens tokens, streaming them to on_text.
TBC_API tbc_result tbc_session_generate(tbc_session *s, const tbc_generate_desc *d, tbc_generate_result *result);

#ifdef __cplusplus
}
#endif
#endif // TBCLUSTER_H

// ============================================================================================================
#ifdef TBC_IMPLEMENTATION
#ifndef TBC__IMPLEMENTATION_DONE
#define TBC__IMPLEMENTATION_DONE

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(TBC_MALLOC) && defined(TBC_FREE) && defined(TBC_REALLOC)
#elif !defined(TBC_MALLOC) && !defined(TBC_FREE) && !defined(TBC_REALLOC)
#define TBC_MALLOC(sz) malloc(sz)
#define TBC_REALLOC(p, sz) realloc(p, sz)
#define TBC_FREE(p) free(p)
#else
#error "define all of TBC_MALLOC, TBC_REALLOC, TBC_FREE, or none of them"
#endif

#if defined(__cplusplus)
#define TBC__RESTRICT __restrict
#elif defined(_MSC_VER)
#define TBC__RESTRICT __restrict
#else
#define TBC__RESTRICT restrict
#endif

#ifdef TBC_STATIC
#define TBC__DEF static
#else
#define TBC__DEF
#endif

// >>utilities
static void tbc__error_set(tbc_error *e, tbc_result code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void tbc__error_set(tbc_error *e, tbc_result code, const char *fmt, ...) {
    if (!e) return;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

TBC__DEF const char *tbc_result_str(tbc_result r) {
    switch (r) {
#define TBC__X(name, value, text) case name: return text;
        TBC_RESULT_LIST(TBC__X)
#undef TBC__X
    default: return "unknown result code";
    }
}

// Overflow-checked size arithmetic: return 0 on overflow, 1 otherwise.
static int tbc__add_u64(uint64_t a, uint64_t b, uint64_t *r) { if (a > UINT64_MAX - b) return 0; *r = a + b; return 1; }
static int tbc__mul_u64(uint64_t a, uint64_t b, uint64_t *r) { if (a && b > UINT64_MAX / a) return 0; *r = a * b; return 1; }

// >>kernels
#if __has_include("parts/kernels.h")   /* development scaffolding: removed when the parts are merged */
#include "parts/kernels.h"
#else
static int tbc__type_block(tbc_type t) { (void)t; return 1; }
static size_t tbc__type_bytes(tbc_type t) { (void)t; return 1; }
TBC__DEF const char *tbc_type_name(tbc_type t) { (void)t; return "?"; }
#endif
#if __has_include("parts/kernels_k.h")
#include "parts/kernels_k.h"
#endif

// >>platform
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct tbc__mapping {
    const uint8_t *base;
    uint64_t size;
    int fd;
} tbc__mapping;

static tbc_result tbc__map_file(const char *path, tbc__mapping *mp, tbc_error *err) {
    memset(mp, 0, sizeof *mp);
    mp->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
        return TBC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        tbc__error_set(err, TBC_ERR_IO, "'%s' is not a regular file", path);
        close(fd);
        return TBC_ERR_IO;
    }
    mp->size = (uint64_t)st.st_size;
    if (mp->size == 0) {
        tbc__error_set(err, TBC_ERR_GGUF_TRUNCATED, "'%s' is empty", path);
        close(fd);
        return TBC_ERR_GGUF_TRUNCATED;
    }
    if (mp->size > (uint64_t)SIZE_MAX) {
        tbc__error_set(err, TBC_ERR_IO, "'%s' is too large to map", path);
        close(fd);
        return TBC_ERR_IO;
    }
    void *p = mmap(NULL, (size_t)mp->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        tbc__error_set(err, TBC_ERR_IO, "cannot map '%s': %s", path, strerror(errno));
        close(fd);
        return TBC_ERR_IO;
    }
    mp->base = (const uint8_t *)p;
    mp->fd = fd;
    return TBC_OK;
}

static void tbc__unmap_file(tbc__mapping *mp) {
    if (mp->base) munmap((void *)mp->base, (size_t)mp->size);
    if (mp->fd >= 0) close(mp->fd);
    mp->base = NULL;
    mp->fd = -1;
}

static double tbc__now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// >>model file
// A view of bytes in the file; not NUL-terminated.
typedef struct tbc__str {
    const char *p;
    uint64_t n;
} tbc__str;

static int tbc__str_eq(tbc__str s, const char *z) {
    size_t n = strlen(z);
    return s.n == n && memcmp(s.p, z, n) == 0;
}

static uint64_t tbc__hash_bytes(const void *p, uint64_t n) {
    const uint8_t *b = (const uint8_t *)p;
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (uint64_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

typedef struct tbc__kv {
    tbc__str key;
    char *key_z;               // NUL-terminated copy
    uint32_t type;             // tbc_gguf_type
    uint32_t arr_type;
    uint64_t count;            // elements for arrays, 1 otherwise
    const uint8_t *data;       // the value (arrays: the first element)
    uint64_t bytes;            // bytes of the value (arrays: all elements)
    tbc__str *strs;            // string values (count of them), for STRING and arrays of STRING
} tbc__kv;

typedef struct tbc__tensor {
    tbc__str name;
    char *name_z;
    int n_dims;
    int64_t ne[4];
    tbc_type type;
    uint64_t offset;           // from the start of the file
    uint64_t bytes;
    const uint8_t *data;
} tbc__tensor;

// Open-addressing hash index over names (keys or tensors); slots hold an item number or -1.
typedef struct tbc__name_index {
    int64_t *slot;
    uint64_t cap;
} tbc__name_index;

typedef tbc__str (*tbc__name_of_fn)(const void *items, uint64_t i);

static int64_t tbc__index_find(const tbc__name_index *x, const void *items, tbc__name_of_fn name_of, const char *p,
                               uint64_t n) {
    if (!x->cap) return -1;
    uint64_t h = tbc__hash_bytes(p, n) & (x->cap - 1);
    for (;;) {
        int64_t i = x->slot[h];
        if (i < 0) return -1;
        tbc__str s = name_of(items, (uint64_t)i);
        if (s.n == n && memcmp(s.p, p, (size_t)n) == 0) return i;
        h = (h + 1) & (x->cap - 1);
    }
}

// Returns -2 on no memory, the index of the first duplicate name, or -1 when all names are distinct.
static int64_t tbc__index_build(tbc__name_index *x, const void *items, uint64_t count, tbc__name_of_fn name_of) {
    uint64_t cap = 16;
    while (cap < count * 2) cap <<= 1;
    x->slot = (int64_t *)TBC_MALLOC((size_t)cap * sizeof(int64_t));
    if (!x->slot) return -2;
    x->cap = cap;
    for (uint64_t i = 0; i < cap; i++) x->slot[i] = -1;
    for (uint64_t i = 0; i < count; i++) {
        tbc__str s = name_of(items, i);
        if (tbc__index_find(x, items, name_of, s.p, s.n) >= 0) return (int64_t)i;
        uint64_t h = tbc__hash_bytes(s.p, s.n) & (cap - 1);
        while (x->slot[h] >= 0) h = (h + 1) & (cap - 1);
        x->slot[h] = (int64_t)i;
    }
    return -1;
}

typedef struct tbc__gguf {
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint64_t n_kv, n_tensors, alignment, data_offset;
    tbc__kv *kv;
    tbc__tensor *t;
    tbc__name_index key_index, tensor_index;
} tbc__gguf;

static tbc__str tbc__kv_name(const void *items, uint64_t i) { return ((const tbc__kv *)items)[i].key; }
static tbc__str tbc__tensor_name(const void *items, uint64_t i) { return ((const tbc__tensor *)items)[i].name; }

// Limits on what an untrusted file may ask us to allocate before its size has vouched for it.
#define TBC__GGUF_MAX_KV (1u << 20)
#define TBC__GGUF_MAX_TENSORS (1u << 20)
#define TBC__GGUF_MAX_KEY (1u << 16)
#define TBC__GGUF_MAX_STRING (1u << 26)
#define TBC__GGUF_MAX_NDIMS 4

typedef struct tbc__reader {
    const uint8_t *base;
    uint64_t size, pos;
    tbc_error *err;
    const char *what;          // what is being read, for messages
} tbc__reader;

static int tbc__rd(tbc__reader *r, void *dst, uint64_t n) {
    if (n > r->size - r->pos) {
        tbc__error_set(r->err, TBC_ERR_GGUF_TRUNCATED,
                       "file ends at byte %llu while reading %s (needed %llu more bytes at offset %llu)",
                       (unsigned long long)r->size, r->what, (unsigned long long)n, (unsigned long long)r->pos);
        return 0;
    }
    if (dst) memcpy(dst, r->base + r->pos, (size_t)n);
    r->pos += n;
    return 1;
}

static int tbc__rd_u32(tbc__reader *r, uint32_t *v) { return tbc__rd(r, v, 4); }
static int tbc__rd_u64(tbc__reader *r, uint64_t *v) { return tbc__rd(r, v, 8); }

static int tbc__rd_str(tbc__reader *r, tbc__str *s, uint64_t max) {
    uint64_t n;
    uint64_t at = r->pos;
    if (!tbc__rd_u64(r, &n)) return 0;
    if (n > max) {
        tbc__error_set(r->err, TBC_ERR_GGUF_LIMIT, "string length %llu at offset %llu in %s exceeds the limit %llu",
                       (unsigned long long)n, (unsigned long long)at, r->what, (unsigned long long)max);
        return 0;
    }
    s->p = (const char *)r->base + r->pos;
    s->n = n;
    return tbc__rd(r, NULL, n);
}

static uint64_t tbc__gguf_scalar_size(uint32_t type) {
    switch (type) {
    case TBC_GGUF_UINT8: case TBC_GGUF_INT8: case TBC_GGUF_BOOL: return 1;
    case TBC_GGUF_UINT16: case TBC_GGUF_INT16: return 2;
    case TBC_GGUF_UINT32: case TBC_GGUF_INT32: case TBC_GGUF_FLOAT32: return 4;
    case TBC_GGUF_UINT64: case TBC_GGUF_INT64: case TBC_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *tbc__gguf_type_name(uint32_t type) {
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
                                  "string", "array", "uint64", "int64", "float64"};
    return type < 13 ? names[type] : "unknown";
}

static char *tbc__strdup_n(const char *p, uint64_t n) {
    char *z = (char *)TBC_MALLOC((size_t)n + 1);
    if (!z) return NULL;
    memcpy(z, p, (size_t)n);
    z[n] = 0;
    return z;
}

static void tbc__gguf_free(tbc__gguf *g) {
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            TBC_FREE(g->kv[i].key_z);
            TBC_FREE(g->kv[i].strs);
        }
    }
    if (g->t) {
        for (uint64_t i = 0; i < g->n_tensors; i++) TBC_FREE(g->t[i].name_z);
    }
    TBC_FREE(g->kv);
    TBC_FREE(g->t);
    TBC_FREE(g->key_index.slot);
    TBC_FREE(g->tensor_index.slot);
    memset(g, 0, sizeof *g);
}

static int64_t tbc__gguf_find_tensor(const tbc__gguf *g, const char *name) {
    return tbc__index_find(&g->tensor_index, g->t, tbc__tensor_name, name, strlen(name));
}

static int64_t tbc__gguf_find_key(const tbc__gguf *g, const char *key) {
    return tbc__index_find(&g->key_index, g->kv, tbc__kv_name, key, strlen(key));
}

static int tbc__cmp_u64_pair(const void *a, const void *b) {
    const uint64_t *x = (const uint64_t *)a, *y = (const uint64_t *)b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

// Parses a GGUF image held in memory. Everything is validated before it is used; on failure returns the error
// code and leaves *g empty.
static tbc_result tbc__gguf_parse(tbc__gguf *g, const uint8_t *base, uint64_t size, tbc_error *err) {
    tbc_error local;
    if (!err) err = &local;
    memset(g, 0, sizeof *g);
    tbc__reader r;
    r.base = base; r.size = size; r.pos = 0; r.err = err; r.what = "the header";
    uint32_t magic, version;
    if (size < 4) {
        tbc__error_set(err, TBC_ERR_GGUF_TRUNCATED, "file is %llu bytes, too short for a GGUF header",
                       (unsigned long long)size);
        return TBC_ERR_GGUF_TRUNCATED;
    }
    memcpy(&magic, base, 4);
    if (memcmp(base, "GGUF", 4) != 0) {
        tbc__error_set(err, TBC_ERR_GGUF_MAGIC, "bad magic 0x%08x: not a GGUF file", magic);
        return TBC_ERR_GGUF_MAGIC;
    }
    r.pos = 4;
    if (!tbc__rd_u32(&r, &version)) return err->code;
    if (version != 2 && version != 3) {
        if (version == 0x02000000u || version == 0x03000000u)
            tbc__error_set(err, TBC_ERR_GGUF_VERSION, "big-endian GGUF files are not supported");
        else
            tbc__error_set(err, TBC_ERR_GGUF_VERSION, "GGUF version %u is not supported (only 2 and 3)", version);
        return TBC_ERR_GGUF_VERSION;
    }
    g->version = version;
    uint64_t n_tensors, n_kv;
    if (!tbc__rd_u64(&r, &n_tensors) || !tbc__rd_u64(&r, &n_kv)) return err->code;
    if (n_tensors > TBC__GGUF_MAX_TENSORS) {
        tbc__error_set(err, TBC_ERR_GGUF_LIMIT, "tensor count %llu exceeds the limit %u",
                       (unsigned long long)n_tensors, TBC__GGUF_MAX_TENSORS);
        return TBC_ERR_GGUF_LIMIT;
    }
    if (n_kv > TBC__GGUF_MAX_KV) {
        tbc__error_set(err, TBC_ERR_GGUF_LIMIT, "metadata key count %llu exceeds the limit %u",
                       (unsigned long long)n_kv, TBC__GGUF_MAX_KV);
        return TBC_ERR_GGUF_LIMIT;
    }
    // Each key needs at least 8+8+4 bytes and each tensor 8+8+4+8+4+8: a count the file can't hold is a lie.
    if (n_kv * 20 > size || n_tensors * 40 > size) {
        tbc__error_set(err, TBC_ERR_GGUF_TRUNCATED, "file of %llu bytes cannot hold %llu keys and %llu tensors",
                       (unsigned long long)size, (unsigned long long)n_kv, (unsigned long long)n_tensors);
        return TBC_ERR_GGUF_TRUNCATED;
    }
    g->base = base; g->size = size;
    g->kv = (tbc__kv *)TBC_MALLOC((size_t)(n_kv ? n_kv : 1) * sizeof(tbc__kv));
    g->t = (tbc__tensor *)TBC_MALLOC((size_t)(n_tensors ? n_tensors : 1) * sizeof(tbc__tensor));
    if (!g->kv || !g->t) {
        tbc__gguf_free(g);
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the GGUF directory");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(g->kv, 0, (size_t)(n_kv ? n_kv : 1) * sizeof(tbc__kv));
    memset(g->t, 0, (size_t)(n_tensors ? n_tensors : 1) * sizeof(tbc__tensor));
    tbc_result rc = TBC_OK;
    g->alignment = 32;
    char what[160];
    for (uint64_t i = 0; i < n_kv; i++) {
        tbc__kv *kv = &g->kv[i];
        g->n_kv = i + 1;
        snprintf(what, sizeof what, "the name of metadata key #%llu", (unsigned long long)i);
        r.what = what;
        if (!tbc__rd_str(&r, &kv->key, TBC__GGUF_MAX_KEY)) { rc = err->code; goto fail; }
        kv->key_z = tbc__strdup_n(kv->key.p, kv->key.n);
        if (!kv->key_z) { rc = TBC_ERR_OUT_OF_MEMORY; tbc__error_set(err, rc, "no memory for key names"); goto fail; }
        if (strlen(kv->key_z) != kv->key.n || kv->key.n == 0) {
            rc = TBC_ERR_GGUF_LIMIT;
            tbc__error_set(err, rc, "metadata key #%llu has an empty name or a NUL byte in it", (unsigned long long)i);
            goto fail;
        }
        snprintf(what, sizeof what, "the value of metadata key '%.100s'", kv->key_z);
        if (!tbc__rd_u32(&r, &kv->type)) { rc = err->code; goto fail; }
        uint32_t et = kv->type;
        kv->count = 1;
        if (kv->type == TBC_GGUF_ARRAY) {
            if (!tbc__rd_u32(&r, &kv->arr_type) || !tbc__rd_u64(&r, &kv->count)) { rc = err->code; goto fail; }
            et = kv->arr_type;
            if (et == TBC_GGUF_ARRAY) {
                rc = TBC_ERR_GGUF_VALUE_TYPE;
                tbc__error_set(err, rc, "metadata key '%s' is an array of arrays, which is not supported", kv->key_z);
                goto fail;
            }
        }
        if (et != TBC_GGUF_STRING && tbc__gguf_scalar_size(et) == 0) {
            rc = TBC_ERR_GGUF_VALUE_TYPE;
            tbc__error_set(err, rc, "metadata key '%s' has unknown value type %u", kv->key_z, et);
            goto fail;
        }
        kv->data = base + r.pos;
        if (et == TBC_GGUF_STRING) {
            // each string takes at least 8 bytes: bound the index allocation by what the file can hold
            if (kv->count > (size - r.pos) / 8) {
                rc = TBC_ERR_GGUF_TRUNCATED;
                tbc__error_set(err, rc, "metadata key '%s' claims %llu strings, more than the file can hold",
                               kv->key_z, (unsigned long long)kv->count);
                goto fail;
            }
            kv->strs = (tbc__str *)TBC_MALLOC((size_t)(kv->count ? kv->count : 1) * sizeof(tbc__str));
            if (!kv->strs) { rc = TBC_ERR_OUT_OF_MEMORY; tbc__error_set(err, rc, "no memory for '%s'", kv->key_z); goto fail; }
            for (uint64_t j = 0; j < kv->count; j++)
                if (!tbc__rd_str(&r, &kv->strs[j], TBC__GGUF_MAX_STRING)) { rc = err->code; goto fail; }
        } else {
            uint64_t bytes;
            if (!tbc__mul_u64(kv->count, tbc__gguf_scalar_size(et), &bytes)) {
                rc = TBC_ERR_GGUF_LIMIT;
                tbc__error_set(err, rc, "metadata key '%s': array size overflows", kv->key_z);
                goto fail;
            }
            if (!tbc__rd(&r, NULL, bytes)) { rc = err->code; goto fail; }
        }
        kv->bytes = (uint64_t)(base + r.pos - kv->data);
        if (tbc__str_eq(kv->key, "general.alignment")) {
            uint32_t a;
            if (kv->type != TBC_GGUF_UINT32) {
                rc = TBC_ERR_GGUF_ALIGNMENT;
                tbc__error_set(err, rc, "general.alignment has type %s, expected uint32", tbc__gguf_type_name(kv->type));
                goto fail;
            }
            memcpy(&a, kv->data, 4);
            if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) {
                rc = TBC_ERR_GGUF_ALIGNMENT;
                tbc__error_set(err, rc, "general.alignment is %u, not a power of two up to 1 MiB", a);
                goto fail;
            }
            g->alignment = a;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        tbc__tensor *t = &g->t[i];
        g->n_tensors = i + 1;
        snprintf(what, sizeof what, "the name of tensor #%llu", (unsigned long long)i);
        r.what = what;
        if (!tbc__rd_str(&r, &t->name, TBC__GGUF_MAX_KEY)) { rc = err->code; goto fail; }
        t->name_z = tbc__strdup_n(t->name.p, t->name.n);
        if (!t->name_z) { rc = TBC_ERR_OUT_OF_MEMORY; tbc__error_set(err, rc, "no memory for tensor names"); goto fail; }
        if (strlen(t->name_z) != t->name.n || t->name.n == 0) {
            rc = TBC_ERR_GGUF_LIMIT;
            tbc__error_set(err, rc, "tensor #%llu has an empty name or a NUL byte in it", (unsigned long long)i);
            goto fail;
        }
        snprintf(what, sizeof what, "the directory entry of tensor '%.100s'", t->name_z);
        uint32_t nd, type;
        if (!tbc__rd_u32(&r, &nd)) { rc = err->code; goto fail; }
        if (nd < 1 || nd > TBC__GGUF_MAX_NDIMS) {
            rc = TBC_ERR_TENSOR_SHAPE;
            tbc__error_set(err, rc, "tensor '%s' has %u dimensions (1 to 4 allowed)", t->name_z, nd);
            goto fail;
        }
        t->n_dims = (int)nd;
        uint64_t nel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if (!tbc__rd_u64(&r, &v)) { rc = err->code; goto fail; }
            if (v == 0 || v > (uint64_t)INT64_MAX || !tbc__mul_u64(nel, v, &nel) || nel > ((uint64_t)1 << 50)) {
                rc = TBC_ERR_TENSOR_SHAPE;
                tbc__error_set(err, rc, "tensor '%s' dimension %u is %llu: zero, or the element count is absurd",
                               t->name_z, d, (unsigned long long)v);
                goto fail;
            }
            t->ne[d] = (int64_t)v;
        }
        if (!tbc__rd_u32(&r, &type) || !tbc__rd_u64(&r, &t->offset)) { rc = err->code; goto fail; }
        if (type >= TBC_TYPE_COUNT_ || tbc__type_block((tbc_type)type) == 0 || type == TBC_TYPE_Q8_1 ||
            type == TBC_TYPE_Q8_K) {
            rc = TBC_ERR_TENSOR_TYPE;
            tbc__error_set(err, rc, "tensor '%s' has type %u, which this library does not support", t->name_z, type);
            goto fail;
        }
        t->type = (tbc_type)type;
        int blk = tbc__type_block(t->type);
        if (t->ne[0] % blk != 0) {
            rc = TBC_ERR_TENSOR_SHAPE;
            tbc__error_set(err, rc, "tensor '%s': row length %lld is not a multiple of the %s block size %d",
                           t->name_z, (long long)t->ne[0], tbc_type_name(t->type), blk);
            goto fail;
        }
        if (!tbc__mul_u64(nel / (uint64_t)blk, (uint64_t)tbc__type_bytes(t->type), &t->bytes)) {
            rc = TBC_ERR_TENSOR_SHAPE;
            tbc__error_set(err, rc, "tensor '%s': byte size overflows", t->name_z);
            goto fail;
        }
        if (t->offset % g->alignment != 0) {
            rc = TBC_ERR_TENSOR_OFFSET;
            tbc__error_set(err, rc, "tensor '%s': offset %llu is not a multiple of the alignment %llu", t->name_z,
                           (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto fail;
        }
    }
    // Tensor data starts at the next multiple of the alignment after the directory.
    {
        uint64_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
        g->data_offset = r.pos + pad;
        if (n_tensors > 0 && g->data_offset > size) {
            rc = TBC_ERR_GGUF_TRUNCATED;
            tbc__error_set(err, rc, "file ends at byte %llu, before the tensor data (byte %llu)",
                           (unsigned long long)size, (unsigned long long)g->data_offset);
            goto fail;
        }
    }
    // Name indexes (they also catch duplicate names in O(n)).
    {
        int64_t dup = tbc__index_build(&g->key_index, g->kv, n_kv, tbc__kv_name);
        if (dup >= 0) {
            rc = TBC_ERR_GGUF_DUPLICATE;
            tbc__error_set(err, rc, "metadata key '%s' appears twice", g->kv[dup].key_z);
            goto fail;
        }
        if (dup == -1) dup = tbc__index_build(&g->tensor_index, g->t, n_tensors, tbc__tensor_name);
        if (dup >= 0) {
            rc = TBC_ERR_GGUF_DUPLICATE;
            tbc__error_set(err, rc, "tensor '%s' appears twice", g->t[dup].name_z);
            goto fail;
        }
        if (dup == -2) { rc = TBC_ERR_OUT_OF_MEMORY; tbc__error_set(err, rc, "no memory for the name index"); goto fail; }
    }
    // Every tensor inside the file, and no two overlapping.
    if (n_tensors) {
        uint64_t *span = (uint64_t *)TBC_MALLOC((size_t)n_tensors * 3 * sizeof(uint64_t));
        if (!span) { rc = TBC_ERR_OUT_OF_MEMORY; tbc__error_set(err, rc, "no memory"); goto fail; }
        for (uint64_t i = 0; i < n_tensors; i++) {
            tbc__tensor *t = &g->t[i];
            uint64_t start, end;
            if (!tbc__add_u64(g->data_offset, t->offset, &start) || !tbc__add_u64(start, t->bytes, &end) ||
                end > size) {
                rc = TBC_ERR_TENSOR_OFFSET;
                tbc__error_set(err, rc, "tensor '%s': data at offset %llu + %llu bytes lies past the end of the "
                               "file (%llu bytes)", t->name_z, (unsigned long long)t->offset,
                               (unsigned long long)t->bytes, (unsigned long long)size);
                TBC_FREE(span);
                goto fail;
            }
            t->offset = start;
            t->data = base + start;
            span[3 * i] = start; span[3 * i + 1] = end; span[3 * i + 2] = i;
        }
        qsort(span, (size_t)n_tensors, 3 * sizeof(uint64_t), tbc__cmp_u64_pair);
        for (uint64_t i = 1; i < n_tensors; i++) {
            if (span[3 * i] < span[3 * (i - 1) + 1]) {
                rc = TBC_ERR_TENSOR_OFFSET;
                tbc__error_set(err, rc, "tensors '%s' and '%s' overlap in the file", g->t[span[3 * (i - 1) + 2]].name_z,
                               g->t[span[3 * i + 2]].name_z);
                TBC_FREE(span);
                goto fail;
            }
        }
        TBC_FREE(span);
    }
    return TBC_OK;
fail:
    if (err->code != rc) err->code = rc;
    tbc__gguf_free(g);
    return rc;
}

// Typed metadata getters. They return 0 when the key is absent, and -1 (with err set) when it has the wrong type.
static int tbc__gguf_get_int(const tbc__gguf *g, const char *key, int64_t *v, tbc_error *err) {
    int64_t i = tbc__gguf_find_key(g, key);
    if (i < 0) return 0;
    const tbc__kv *kv = &g->kv[i];
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case TBC_GGUF_UINT8: *v = p[0]; return 1;
    case TBC_GGUF_INT8: *v = (int8_t)p[0]; return 1;
    case TBC_GGUF_BOOL: *v = p[0] != 0; return 1;
    case TBC_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = x; return 1; }
    case TBC_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *v = x; return 1; }
    case TBC_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *v = x; return 1; }
    case TBC_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *v = x; return 1; }
    case TBC_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); *v = x; return 1; }
    case TBC_GGUF_UINT64: {
        uint64_t x; memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) break;
        *v = (int64_t)x; return 1;
    }
    default: break;
    }
    tbc__error_set(err, TBC_ERR_KEY_TYPE, "metadata key '%s' has type %s, expected an integer", key,
                   tbc__gguf_type_name(kv->type));
    return -1;
}

static int tbc__gguf_get_float(const tbc__gguf *g, const char *key, double *v, tbc_error *err) {
    int64_t i = tbc__gguf_find_key(g, key);
    if (i < 0) return 0;
    const tbc__kv *kv = &g->kv[i];
    if (kv->type == TBC_GGUF_FLOAT32) { float x; memcpy(&x, kv->data, 4); *v = x; return 1; }
    if (kv->type == TBC_GGUF_FLOAT64) { double x; memcpy(&x, kv->data, 8); *v = x; return 1; }
    int64_t iv;
    int r = tbc__gguf_get_int(g, key, &iv, NULL);
    if (r == 1) { *v = (double)iv; return 1; }
    tbc__error_set(err, TBC_ERR_KEY_TYPE, "metadata key '%s' has type %s, expected a number", key,
                   tbc__gguf_type_name(kv->type));
    return -1;
}

static int tbc__gguf_get_str(const tbc__gguf *g, const char *key, tbc__str *v, tbc_error *err) {
    int64_t i = tbc__gguf_find_key(g, key);
    if (i < 0) return 0;
    const tbc__kv *kv = &g->kv[i];
    if (kv->type != TBC_GGUF_STRING) {
        tbc__error_set(err, TBC_ERR_KEY_TYPE, "metadata key '%s' has type %s, expected a string", key,
                       tbc__gguf_type_name(kv->type));
        return -1;
    }
    *v = kv->strs[0];
    return 1;
}

// Arrays: the element type must be one of the accepted ones (pass -1 for "any").
static int tbc__gguf_get_arr(const tbc__gguf *g, const char *key, int elem_type, const tbc__kv **out, tbc_error *err) {
    int64_t i = tbc__gguf_find_key(g, key);
    if (i < 0) return 0;
    const tbc__kv *kv = &g->kv[i];
    if (kv->type != TBC_GGUF_ARRAY || (elem_type >= 0 && kv->arr_type != (uint32_t)elem_type)) {
        tbc__error_set(err, TBC_ERR_KEY_TYPE, "metadata key '%s' has type %s%s%s, expected an array of %s", key,
                       tbc__gguf_type_name(kv->type), kv->type == TBC_GGUF_ARRAY ? " of " : "",
                       kv->type == TBC_GGUF_ARRAY ? tbc__gguf_type_name(kv->arr_type) : "",
                       elem_type >= 0 ? tbc__gguf_type_name((uint32_t)elem_type) : "values");
        return -1;
    }
    *out = kv;
    return 1;
}

// >>tokenizer
#if __has_include("parts/tokenizer.h")
#include "parts/unicode_tables.h"
#include "parts/tokenizer.h"
#endif

// >>chat templates
#if __has_include("parts/chat.h")
#include "parts/chat.h"
#endif

// >>crypto
#if __has_include("parts/crypto.h")
#include "parts/crypto.h"
#endif

// >>model
typedef struct tbc__layer_tensors {
    const tbc__tensor *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *q_norm, *k_norm;
    const tbc__tensor *ffn_norm, *w_gate, *w_up, *w_down;
} tbc__layer_tensors;

typedef enum tbc__arch { TBC__ARCH_LLAMA = 0, TBC__ARCH_QWEN2 = 1, TBC__ARCH_QWEN3 = 2 } tbc__arch;

struct tbc_model {
    tbc__mapping map;
    tbc__gguf g;
    tbc_logger log;
    tbc_error last;
    int vocab_only, has_vocab;
#if __has_include("parts/tokenizer.h")
    tbc__vocab vocab;
#endif
    tbc__arch arch;
    char arch_name[32], name[128];
    tbc_model_info info;
    int n_rot;                    // rotated dimensions per head
    float rope_freq_scale;        // linear rope scaling: positions times this
    const tbc__tensor *tok_embd, *out_norm, *output, *rope_freqs;
    tbc__layer_tensors *layers;
    const char *chat_family;      // recognised template family, or NULL (fallback)
    char *chat_template;
};

static void tbc__log(const tbc_logger *l, tbc_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void tbc__log(const tbc_logger *l, tbc_log_level level, const char *fmt, ...) {
    if (!l || !l->fn) return;
    tbc_log_level max = l->max_level ? l->max_level : TBC_LOG_INFO;
    if (level > max) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    l->fn(l->user, level, buf);
}

TBC__DEF void tbc_log_stderr(void *user, tbc_log_level level, const char *message) {
    static const char *names[] = {"error", "warning", "info", "debug"};
    (void)user;
    fprintf(stderr, "tbc: %s: %s\n", names[(int)level & 3], message);
}

// Looks up a tensor and checks its type and shape: ne0 = row length, ne1 = rows (ne1 == 0: a vector).
static tbc_result tbc__bind(const tbc_model *m, const char *name, int64_t ne0, int64_t ne1, int required,
                            const tbc__tensor **out, tbc_error *err) {
    *out = NULL;
    int64_t i = tbc__gguf_find_tensor(&m->g, name);
    if (i < 0) {
        if (!required) return TBC_OK;
        tbc__error_set(err, TBC_ERR_TENSOR_MISSING, "tensor '%s' is missing", name);
        return TBC_ERR_TENSOR_MISSING;
    }
    const tbc__tensor *t = &m->g.t[i];
    int want_dims = ne1 ? 2 : 1;
    int64_t got1 = t->n_dims >= 2 ? t->ne[1] : 0;
    if (t->n_dims != want_dims || t->ne[0] != ne0 || got1 != ne1) {
        tbc__error_set(err, TBC_ERR_TENSOR_SHAPE, "tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                       name, (long long)t->ne[0], (long long)got1, t->n_dims, (long long)ne0, (long long)ne1);
        return TBC_ERR_TENSOR_SHAPE;
    }
    if (!ne1 && t->type != TBC_TYPE_F32) {
        tbc__error_set(err, TBC_ERR_TENSOR_TYPE, "tensor '%s' is %s; vectors must be F32", name,
                       tbc_type_name(t->type));
        return TBC_ERR_TENSOR_TYPE;
    }
    *out = t;
    return TBC_OK;
}

static tbc_result tbc__req_int(const tbc_model *m, const char *suffix, int required, int64_t lo, int64_t hi,
                               int64_t *v, tbc_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    int r = tbc__gguf_get_int(&m->g, key, v, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 0) {
        if (!required) return TBC_OK;
        tbc__error_set(err, TBC_ERR_KEY_MISSING, "metadata key '%s' is missing", key);
        return TBC_ERR_KEY_MISSING;
    }
    if (*v < lo || *v > hi) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "metadata key '%s' is %lld, outside [%lld, %lld]", key,
                       (long long)*v, (long long)lo, (long long)hi);
        return TBC_ERR_MODEL_CONFIG;
    }
    return TBC_OK;
}

static tbc_result tbc__model_config(tbc_model *m, tbc_error *err) {
    tbc__str a;
    int r = tbc__gguf_get_str(&m->g, "general.architecture", &a, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 0) {
        tbc__error_set(err, TBC_ERR_KEY_MISSING, "metadata key 'general.architecture' is missing");
        return TBC_ERR_KEY_MISSING;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%.*s", (int)(a.n < 31 ? a.n : 31), a.p);
    if (tbc__str_eq(a, "llama")) m->arch = TBC__ARCH_LLAMA;
    else if (tbc__str_eq(a, "qwen2")) m->arch = TBC__ARCH_QWEN2;
    else if (tbc__str_eq(a, "qwen3")) m->arch = TBC__ARCH_QWEN3;
    else {
        tbc__error_set(err, TBC_ERR_UNSUPPORTED_ARCH,
                       "architecture '%.*s' is not supported (supported: llama, qwen2, qwen3)", (int)(a.n < 64 ? a.n : 64), a.p);
        return TBC_ERR_UNSUPPORTED_ARCH;
    }
    tbc__str nm;
    if (tbc__gguf_get_str(&m->g, "general.name", &nm, NULL) == 1)
        snprintf(m->name, sizeof m->name, "%.*s", (int)(nm.n < 127 ? nm.n : 127), nm.p);
    tbc_model_info *I = &m->info;
    int64_t v;
    tbc_result rc;
    const int64_t big = (int64_t)1 << 20;
    if ((rc = tbc__req_int(m, "embedding_length", 1, 1, big, &v, err))) return rc;
    I->n_embd = (int)v;
    if ((rc = tbc__req_int(m, "block_count", 1, 1, 4096, &v, err))) return rc;
    I->n_layer = (int)v;
    if ((rc = tbc__req_int(m, "feed_forward_length", 1, 1, big, &v, err))) return rc;
    I->n_ff = (int)v;
    if ((rc = tbc__req_int(m, "attention.head_count", 1, 1, 4096, &v, err))) return rc;
    I->n_head = (int)v;
    v = I->n_head;
    if ((rc = tbc__req_int(m, "attention.head_count_kv", 0, 1, 4096, &v, err))) return rc;
    I->n_head_kv = (int)v;
    if (I->n_head % I->n_head_kv != 0) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "head_count %d is not a multiple of head_count_kv %d", I->n_head,
                       I->n_head_kv);
        return TBC_ERR_MODEL_CONFIG;
    }
    v = I->n_embd / I->n_head;
    if ((rc = tbc__req_int(m, "attention.key_length", 0, 1, 65536, &v, err))) return rc;
    I->head_dim = (int)v;
    int64_t vlen = I->head_dim;
    if ((rc = tbc__req_int(m, "attention.value_length", 0, 1, 65536, &vlen, err))) return rc;
    if (vlen != I->head_dim) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "attention.value_length %lld differs from key_length %d",
                       (long long)vlen, I->head_dim);
        return TBC_ERR_MODEL_CONFIG;
    }
    if (I->head_dim % 2 != 0 || (m->arch == TBC__ARCH_LLAMA && I->head_dim * I->n_head != I->n_embd &&
                                 tbc__gguf_find_key(&m->g, "llama.attention.key_length") < 0)) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "head dimension %d does not fit embedding_length %d with %d heads",
                       I->head_dim, I->n_embd, I->n_head);
        return TBC_ERR_MODEL_CONFIG;
    }
    v = I->head_dim;
    if ((rc = tbc__req_int(m, "rope.dimension_count", 0, 2, I->head_dim, &v, err))) return rc;
    m->n_rot = (int)(v & ~(int64_t)1);
    v = 4096;
    if ((rc = tbc__req_int(m, "context_length", 0, 1, (int64_t)1 << 24, &v, err))) return rc;
    I->n_ctx_train = (int)v;
    char key[128];
    double f;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", m->arch_name);
    r = tbc__gguf_get_float(&m->g, key, &f, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    I->rms_eps = r ? (float)f : 1e-5f;
    if (!(I->rms_eps > 0 && I->rms_eps < 1)) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "%s is %g, expected a small positive number", key, (double)I->rms_eps);
        return TBC_ERR_MODEL_CONFIG;
    }
    snprintf(key, sizeof key, "%s.rope.freq_base", m->arch_name);
    r = tbc__gguf_get_float(&m->g, key, &f, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    I->rope_theta = r ? (float)f : 10000.0f;
    if (!(I->rope_theta > 1)) {
        tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "%s is %g, expected > 1", key, (double)I->rope_theta);
        return TBC_ERR_MODEL_CONFIG;
    }
    m->rope_freq_scale = 1.0f;
    tbc__str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch_name);
    r = tbc__gguf_get_str(&m->g, key, &st, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 1 && !tbc__str_eq(st, "none")) {
        if (!tbc__str_eq(st, "linear")) {
            tbc__error_set(err, TBC_ERR_MODEL_CONFIG, "rope scaling '%.*s' is not supported (none, linear)",
                           (int)(st.n < 32 ? st.n : 32), st.p);
            return TBC_ERR_MODEL_CONFIG;
        }
        snprintf(key, sizeof key, "%s.rope.scaling.factor", m->arch_name);
        r = tbc__gguf_get_float(&m->g, key, &f, err);
        if (r < 0) return TBC_ERR_KEY_TYPE;
        if (r == 1 && f > 0) m->rope_freq_scale = (float)(1.0 / f);
    }
    I->rope_neox = m->arch != TBC__ARCH_LLAMA;
    I->arch = m->arch_name;
    I->name = m->name;
    return TBC_OK;
}

static tbc_result tbc__model_bind(tbc_model *m, tbc_error *err) {
    tbc_model_info *I = &m->info;
    tbc_result rc;
    const tbc__tensor *te;
    int64_t ti = tbc__gguf_find_tensor(&m->g, "token_embd.weight");
    if (ti < 0) {
        tbc__error_set(err, TBC_ERR_TENSOR_MISSING, "tensor 'token_embd.weight' is missing");
        return TBC_ERR_TENSOR_MISSING;
    }
    te = &m->g.t[ti];
    if (te->n_dims != 2 || te->ne[0] != I->n_embd || te->ne[1] > INT32_MAX) {
        tbc__error_set(err, TBC_ERR_TENSOR_SHAPE, "tensor 'token_embd.weight' has shape [%lld, %lld], expected [%d, n_vocab]",
                       (long long)te->ne[0], (long long)te->ne[1], I->n_embd);
        return TBC_ERR_TENSOR_SHAPE;
    }
    I->n_vocab = (int)te->ne[1];
    m->tok_embd = te;
    int64_t d = I->n_embd, q = (int64_t)I->n_head * I->head_dim, kv = (int64_t)I->n_head_kv * I->head_dim;
    int64_t ff = I->n_ff, nv = I->n_vocab;
    if ((rc = tbc__bind(m, "output_norm.weight", d, 0, 1, &m->out_norm, err))) return rc;
    if ((rc = tbc__bind(m, "output.weight", d, nv, 0, &m->output, err))) return rc;
    if (!m->output) m->output = m->tok_embd;
    I->tied_output = m->output == m->tok_embd;
    if ((rc = tbc__bind(m, "rope_freqs.weight", m->n_rot / 2, 0, 0, &m->rope_freqs, err))) return rc;
    m->layers = (tbc__layer_tensors *)TBC_MALLOC(sizeof(tbc__layer_tensors) * (size_t)I->n_layer);
    if (!m->layers) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the layer table");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(m->layers, 0, sizeof(tbc__layer_tensors) * (size_t)I->n_layer);
    int bias = m->arch == TBC__ARCH_QWEN2, qk_norm = m->arch == TBC__ARCH_QWEN3;
    for (int l = 0; l < I->n_layer; l++) {
        tbc__layer_tensors *L = &m->layers[l];
        char n[96];
#define TBC__BIND(field, nm, a, b, req) \
        snprintf(n, sizeof n, "blk.%d." nm, l); \
        if ((rc = tbc__bind(m, n, a, b, req, &L->field, err))) return rc;
        TBC__BIND(attn_norm, "attn_norm.weight", d, 0, 1)
        TBC__BIND(wq, "attn_q.weight", d, q, 1)
        TBC__BIND(wk, "attn_k.weight", d, kv, 1)
        TBC__BIND(wv, "attn_v.weight", d, kv, 1)
        TBC__BIND(wo, "attn_output.weight", q, d, 1)
        TBC__BIND(bq, "attn_q.bias", q, 0, bias)
        TBC__BIND(bk, "attn_k.bias", kv, 0, bias)
        TBC__BIND(bv, "attn_v.bias", kv, 0, bias)
        TBC__BIND(q_norm, "attn_q_norm.weight", I->head_dim, 0, qk_norm)
        TBC__BIND(k_norm, "attn_k_norm.weight", I->head_dim, 0, qk_norm)
        TBC__BIND(ffn_norm, "ffn_norm.weight", d, 0, 1)
        TBC__BIND(w_gate, "ffn_gate.weight", d, ff, 1)
        TBC__BIND(w_up, "ffn_up.weight", d, ff, 1)
        TBC__BIND(w_down, "ffn_down.weight", ff, d, 1)
#undef TBC__BIND
    }
    // Which type holds most of the weight bytes, for display.
    uint64_t by_type[TBC_TYPE_COUNT_];
    memset(by_type, 0, sizeof by_type);
    for (uint64_t i = 0; i < m->g.n_tensors; i++) {
        by_type[m->g.t[i].type] += m->g.t[i].bytes;
        I->weight_bytes += m->g.t[i].bytes;
    }
    int best = 0;
    for (int t = 0; t < TBC_TYPE_COUNT_; t++) if (by_type[t] > by_type[best]) best = t;
    I->main_type = (tbc_type)best;
    return TBC_OK;
}

TBC__DEF void tbc_model_destroy(tbc_model *m) {
    if (!m) return;
#if __has_include("parts/tokenizer.h")
    if (m->has_vocab) tbc__vocab_free(&m->vocab);
#endif
    TBC_FREE(m->layers);
    TBC_FREE(m->chat_template);
    tbc__gguf_free(&m->g);
    tbc__unmap_file(&m->map);
    TBC_FREE(m);
}

TBC__DEF tbc_result tbc_model_open(const tbc_model_desc *d, tbc_model **out) {
    tbc_error local;
    tbc_error *err = d && d->error ? d->error : &local;
    memset(err, 0, sizeof *err);
    if (!d || !d->path || !out) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_model_open needs a desc with a path and an output pointer");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc_model *m = (tbc_model *)TBC_MALLOC(sizeof(tbc_model));
    if (!m) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the model");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(m, 0, sizeof *m);
    m->map.fd = -1;
    m->log = d->logger;
    m->vocab_only = d->vocab_only;
    tbc_result rc = tbc__map_file(d->path, &m->map, err);
    if (rc == TBC_OK) rc = tbc__gguf_parse(&m->g, m->map.base, m->map.size, err);
    if (rc == TBC_OK && !d->vocab_only) rc = tbc__model_config(m, err);
    if (rc == TBC_OK && !d->vocab_only) rc = tbc__model_bind(m, err);
#if __has_include("parts/tokenizer.h")
    if (rc == TBC_OK) {
        rc = tbc__vocab_load(&m->vocab, &m->g, err);
        if (rc == TBC_OK) m->has_vocab = 1;
    }
    if (rc == TBC_OK && !d->vocab_only && m->vocab.n_tokens != m->info.n_vocab) {
        rc = TBC_ERR_TOKENIZER;
        tbc__error_set(err, rc, "the vocabulary has %d tokens but token_embd.weight has %d rows",
                       (int)m->vocab.n_tokens, m->info.n_vocab);
    }
    if (rc == TBC_OK) {
        m->info.bos = m->vocab.bos;
        m->info.eos = m->vocab.eos;
        m->info.eot = m->vocab.eot;
    }
#endif
    if (rc == TBC_OK) {
        tbc__str ct;
        int r = tbc__gguf_get_str(&m->g, "tokenizer.chat_template", &ct, NULL);
        if (r == 1) {
            m->chat_template = tbc__strdup_n(ct.p, ct.n);
            if (!m->chat_template) {
                rc = TBC_ERR_OUT_OF_MEMORY;
                tbc__error_set(err, rc, "no memory for the chat template");
            }
        }
#if __has_include("parts/chat.h")
        if (m->chat_template) m->chat_family = tbc__chat_detect(m->chat_template, strlen(m->chat_template));
#endif
    }
    if (rc != TBC_OK) {
        tbc__log(&d->logger, TBC_LOG_ERROR, "%s: %s", d->path, err->message);
        tbc_model_destroy(m);
        return rc;
    }
    m->info.file_bytes = m->map.size;
    tbc__log(&m->log, TBC_LOG_INFO, "%s: %s '%s', %d layers, dim %d, %d/%d heads, vocab %d, %.1f MiB of weights",
             d->path, m->vocab_only ? "vocabulary" : m->arch_name, m->name, m->info.n_layer, m->info.n_embd,
             m->info.n_head, m->info.n_head_kv, m->info.n_vocab, (double)m->info.weight_bytes / 1048576.0);
    *out = m;
    return TBC_OK;
}

TBC__DEF void tbc_model_get_info(const tbc_model *m, tbc_model_info *info) { *info = m->info; }
TBC__DEF const tbc_error *tbc_model_last_error(const tbc_model *m) { return &m->last; }
TBC__DEF int64_t tbc_model_meta_count(const tbc_model *m) { return (int64_t)m->g.n_kv; }
TBC__DEF const char *tbc_model_meta_key(const tbc_model *m, int64_t i) {
    return i >= 0 && (uint64_t)i < m->g.n_kv ? m->g.kv[i].key_z : NULL;
}
TBC__DEF tbc_gguf_type tbc_model_meta_type(const tbc_model *m, int64_t i, tbc_gguf_type *array_type, uint64_t *count) {
    if (i < 0 || (uint64_t)i >= m->g.n_kv) return (tbc_gguf_type)-1;
    const tbc__kv *kv = &m->g.kv[i];
    if (array_type) *array_type = (tbc_gguf_type)kv->arr_type;
    if (count) *count = kv->count;
    return (tbc_gguf_type)kv->type;
}
TBC__DEF const void *tbc_model_meta_raw(const tbc_model *m, int64_t i, uint64_t *bytes) {
    if (i < 0 || (uint64_t)i >= m->g.n_kv) return NULL;
    if (bytes) *bytes = m->g.kv[i].bytes;
    return m->g.kv[i].data;
}
TBC__DEF int64_t tbc_model_meta_find(const tbc_model *m, const char *key) { return tbc__gguf_find_key(&m->g, key); }
TBC__DEF int64_t tbc_model_tensor_count(const tbc_model *m) { return (int64_t)m->g.n_tensors; }
TBC__DEF const char *tbc_model_tensor_name(const tbc_model *m, int64_t i) {
    return i >= 0 && (uint64_t)i < m->g.n_tensors ? m->g.t[i].name_z : NULL;
}
TBC__DEF tbc_type tbc_model_tensor_type(const tbc_model *m, int64_t i, int64_t ne[4], int *n_dims) {
    if (i < 0 || (uint64_t)i >= m->g.n_tensors) return TBC_TYPE_COUNT_;
    const tbc__tensor *t = &m->g.t[i];
    if (ne) memcpy(ne, t->ne, sizeof t->ne);
    if (n_dims) *n_dims = t->n_dims;
    return t->type;
}

// >>thread pool
// Workers spin briefly between jobs (a decode step issues hundreds of small jobs), then sleep on a condition
// variable when the session is idle. Work is claimed in chunks from one atomic ticket that carries the job number,
// and the caller waits for chunks to be done, not for workers to check in: a worker the OS has not scheduled
// (a busy machine) costs nothing, the other threads take its share.
typedef void (*tbc__task_fn)(void *arg, int64_t begin, int64_t end, int thread);

typedef struct tbc__pool {
    int n_threads;               // including the caller
    pthread_t *threads;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    tbc__task_fn fn;
    void *arg;
    int64_t n_items, chunk;
    uint64_t ticket;             // atomic: job number << 32 | next chunk index
    int64_t done;                // atomic: items finished in the current job
    uint32_t job;                // the current job number
    int sleeping;                // atomic
    int stop;                    // atomic
} tbc__pool;

typedef struct tbc__worker_arg {
    tbc__pool *pool;
    int index;
} tbc__worker_arg;

static void tbc__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Claims and runs chunks of job `job` until none are left (or another job has started).
static void tbc__pool_run_items(tbc__pool *p, uint32_t job, int thread) {
    for (;;) {
        uint64_t t = __atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE);
        for (;;) {
            if ((uint32_t)(t >> 32) != job) return;
            int64_t idx = (int64_t)(t & 0xffffffffu);
            if (idx * p->chunk >= p->n_items) return;
            if (__atomic_compare_exchange_n(&p->ticket, &t, t + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) break;
        }
        int64_t b = (int64_t)(t & 0xffffffffu) * p->chunk;
        int64_t e = b + p->chunk < p->n_items ? b + p->chunk : p->n_items;
        p->fn(p->arg, b, e, thread);
        __atomic_fetch_add(&p->done, e - b, __ATOMIC_ACQ_REL);
    }
}

static void *tbc__worker_main(void *varg) {
    tbc__worker_arg *wa = (tbc__worker_arg *)varg;
    tbc__pool *p = wa->pool;
    int me = wa->index;
    uint32_t seen = 0;
    for (;;) {
        uint32_t job = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE) >> 32);
        if (job == seen && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
            double t0 = tbc__now();
            int spins = 0;
            while ((job = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE) >> 32)) == seen &&
                   !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
                tbc__cpu_relax();
                if (++spins % 1024 == 0 && tbc__now() - t0 > 0.002) {
                    pthread_mutex_lock(&p->mu);
                    __atomic_fetch_add(&p->sleeping, 1, __ATOMIC_SEQ_CST);
                    while ((job = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_SEQ_CST) >> 32)) == seen &&
                           !__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST))
                        pthread_cond_wait(&p->cv, &p->mu);
                    __atomic_fetch_sub(&p->sleeping, 1, __ATOMIC_SEQ_CST);
                    pthread_mutex_unlock(&p->mu);
                    break;
                }
            }
        }
        if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) break;
        seen = job;
        tbc__pool_run_items(p, job, me);
    }
    TBC_FREE(wa);
    return NULL;
}

static void tbc__pool_destroy(tbc__pool *p) {
    if (p->started) {
        pthread_mutex_lock(&p->mu);
        __atomic_store_n(&p->stop, 1, __ATOMIC_SEQ_CST);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    }
    if (p->threads) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    TBC_FREE(p->threads);
    memset(p, 0, sizeof *p);
}

static tbc_result tbc__pool_init(tbc__pool *p, int n_threads, tbc_error *err) {
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    p->threads = (pthread_t *)TBC_MALLOC(sizeof(pthread_t) * (size_t)p->n_threads);
    if (!p->threads) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for threads");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < p->n_threads; i++) {
        tbc__worker_arg *wa = (tbc__worker_arg *)TBC_MALLOC(sizeof *wa);
        if (!wa) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for threads");
            tbc__pool_destroy(p);
            return TBC_ERR_OUT_OF_MEMORY;
        }
        wa->pool = p;
        wa->index = i;
        int e = pthread_create(&p->threads[p->started], NULL, tbc__worker_main, wa);
        if (e != 0) {
            TBC_FREE(wa);
            tbc__error_set(err, TBC_ERR_THREAD, "could not start worker thread %d: %s", i, strerror(e));
            tbc__pool_destroy(p);
            return TBC_ERR_THREAD;
        }
        p->started++;
    }
    return TBC_OK;
}

// Runs fn over [0, n_items) in chunks on all threads; returns when every chunk is done.
static void tbc__pool_for(tbc__pool *p, int64_t n_items, int64_t chunk, tbc__task_fn fn, void *arg) {
    if (n_items <= 0) return;
    if (chunk < 1) chunk = 1;
    if (p->n_threads == 1 || n_items <= chunk) {
        fn(arg, 0, n_items, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_items = n_items;
    p->chunk = chunk;
    __atomic_store_n(&p->done, 0, __ATOMIC_RELAXED);
    uint32_t job = ++p->job;
    if (job == 0) job = ++p->job;  // 0 is what sleeping workers saw first
    __atomic_store_n(&p->ticket, (uint64_t)job << 32, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->sleeping, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    tbc__pool_run_items(p, job, 0);
    int spins = 0;
    while (__atomic_load_n(&p->done, __ATOMIC_ACQUIRE) < n_items) {
        tbc__cpu_relax();
        if (++spins % 256 == 0) sched_yield();  // a worker holding a chunk may be waiting for this core
    }
}

// >>forward pass
// A weight matrix as this node holds it: rows of `cols` values, `ldw` bytes apart.
typedef struct tbc__mat {
    tbc_type type;
    int64_t rows, cols;
    size_t ldw;
    const uint8_t *data;
} tbc__mat;

typedef struct tbc__layer {
    const float *attn_norm, *ffn_norm, *bq, *bk, *bv, *q_norm, *k_norm;   // F32 vectors (sliced for biases)
    tbc__mat wq, wk, wv, wo, w_gate, w_up, w_down;
    void *k_cache, *v_cache;      // [n_ctx][n_kv_local * head_dim], F32 or F16
} tbc__layer;

struct tbc_session {
    const tbc_model *model;
    tbc_logger log;
    tbc_error last;
    tbc_shard_info shard;
    int n_ctx, n_batch;
    int64_t pos;
    tbc_kv_type kv_type;
    int n_head_local, n_kv_local, ff_local;   // this node's share
    tbc__layer *layers;             // indexed from shard.layer_begin
    tbc__mat embd, output;
    const float *out_norm, *rope_freqs;
    void **owned;                   // buffers holding column slices copied out of the file
    int n_owned;
    void *kv_mem;
    tbc__pool pool;
    // scratch, sized for n_batch tokens
    float *x, *xn, *q, *k, *v, *att, *o, *gate, *up, *logits, *scores;
    void *act;                      // activations converted to a weight's vec_dot_type
    size_t act_bytes;
    float *rope_cos, *rope_sin;     // per position in the batch, n_rot/2 each
    // partial sums from the other nodes: identity on one node
    void (*allreduce)(void *comm, float *x, int64_t n);
    void *comm;
};

static const float *tbc__vec(const tbc__tensor *t, int64_t offset) {
    return t ? (const float *)(const void *)t->data + offset : NULL;
}

// A row range of a tensor: a view into the mapping, nothing copied.
static tbc__mat tbc__mat_rows(const tbc__tensor *t, int64_t r0, int64_t r1) {
    tbc__mat m;
    m.type = t->type;
    m.cols = t->ne[0];
    m.rows = r1 - r0;
    m.ldw = tbc__row_bytes(t->type, t->ne[0]);
    m.data = t->data + (size_t)r0 * m.ldw;
    return m;
}

// A column range: each row's share is copied with pread, so the pages of the other columns are never mapped in.
static tbc_result tbc__mat_cols(tbc_session *s, const tbc__tensor *t, int64_t c0, int64_t c1, tbc__mat *out,
                                tbc_error *err) {
    if (c0 == 0 && c1 == t->ne[0]) {
        *out = tbc__mat_rows(t, 0, t->ne[1]);
        return TBC_OK;
    }
    int blk = tbc__type_block(t->type);
    if (c0 % blk || c1 % blk) {
        tbc__error_set(err, TBC_ERR_SHARD, "tensor '%s': columns %lld..%lld of this slice do not fall on %s blocks "
                       "of %d", t->name_z, (long long)c0, (long long)c1, tbc_type_name(t->type), blk);
        return TBC_ERR_SHARD;
    }
    size_t full = tbc__row_bytes(t->type, t->ne[0]);
    size_t skip = tbc__row_bytes(t->type, c0), part = tbc__row_bytes(t->type, c1 - c0);
    int64_t rows = t->ne[1];
    uint8_t *buf = (uint8_t *)TBC_MALLOC(part * (size_t)rows);
    void **owned = (void **)TBC_REALLOC(s->owned, sizeof(void *) * (size_t)(s->n_owned + 1));
    if (owned) s->owned = owned;
    if (!buf || !owned) {
        TBC_FREE(buf);
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for a slice of '%s'", t->name_z);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    s->owned[s->n_owned++] = buf;
    const tbc__mapping *mp = &s->model->map;
    for (int64_t r = 0; r < rows; r++) {
        uint64_t at = t->offset + (uint64_t)r * full + skip;
        size_t done = 0;
        while (done < part) {
            ssize_t got = pread(mp->fd, buf + (size_t)r * part + done, part - done, (off_t)(at + done));
            if (got <= 0) {
                if (got < 0 && errno == EINTR) continue;
                tbc__error_set(err, TBC_ERR_IO, "reading a slice of tensor '%s' failed: %s", t->name_z,
                               got < 0 ? strerror(errno) : "unexpected end of file");
                return TBC_ERR_IO;
            }
            done += (size_t)got;
        }
    }
    out->type = t->type;
    out->cols = c1 - c0;
    out->rows = rows;
    out->ldw = part;
    out->data = buf;
    s->shard.copied_bytes += part * (size_t)rows;
    return TBC_OK;
}

static uint64_t tbc__mat_bytes(const tbc__mat *m) { return m->data ? (uint64_t)m->ldw * (uint64_t)m->rows : 0; }

// Splits [0, n) into `parts` contiguous shares on multiples of `unit`, as evenly as possible.
static void tbc__split_range(int64_t n, int64_t unit, int parts, int rank, int64_t *b, int64_t *e) {
    int64_t units = n / unit;
    int64_t lo = units * rank / parts, hi = units * (rank + 1) / parts;
    *b = lo * unit;
    *e = rank == parts - 1 ? n : hi * unit;
}

// Asks the kernel to start reading a mapped range (page-aligned outward) in the background.
static void tbc__will_need(const uint8_t *p, uint64_t n) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095;
    if (n) madvise((void *)a, (size_t)((uintptr_t)p + n - a), MADV_WILLNEED);
}

static void tbc__touch_pages(const uint8_t *p, uint64_t n) {
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < n; i += 4096) sink = (uint8_t)(sink + p[i]);
    if (n) sink = (uint8_t)(sink + p[n - 1]);
    (void)sink;
}

static tbc_result tbc__session_bind(tbc_session *s, const tbc_session_desc *d, tbc_error *err) {
    const tbc_model *m = s->model;
    const tbc_model_info *I = &m->info;
    tbc_shard_info *sh = &s->shard;
    sh->layer_begin = d->shard.layer_begin;
    sh->layer_end = d->shard.layer_end;
    if (sh->layer_begin == 0 && sh->layer_end == 0) sh->layer_end = I->n_layer;
    sh->tp_size = d->shard.tp_size ? d->shard.tp_size : 1;
    sh->tp_rank = d->shard.tp_rank;
    if (sh->layer_begin < 0 || sh->layer_end > I->n_layer || sh->layer_begin >= sh->layer_end) {
        tbc__error_set(err, TBC_ERR_SHARD, "layer range [%d, %d) is not inside the model's %d layers",
                       sh->layer_begin, sh->layer_end, I->n_layer);
        return TBC_ERR_SHARD;
    }
    if (sh->tp_size < 1 || sh->tp_rank < 0 || sh->tp_rank >= sh->tp_size || sh->tp_size > I->n_head_kv) {
        tbc__error_set(err, TBC_ERR_SHARD, "tensor slice %d of %d is invalid for %d KV heads", sh->tp_rank,
                       sh->tp_size, I->n_head_kv);
        return TBC_ERR_SHARD;
    }
    sh->has_embeddings = sh->layer_begin == 0;
    sh->has_output = sh->layer_end == I->n_layer;
    int64_t hb, he, fb, fe;
    tbc__split_range(I->n_head_kv, 1, sh->tp_size, sh->tp_rank, &hb, &he);
    sh->head_kv_begin = (int)hb;
    sh->head_kv_end = (int)he;
    int group = I->n_head / I->n_head_kv, hd = I->head_dim;
    s->n_kv_local = (int)(he - hb);
    s->n_head_local = s->n_kv_local * group;
    // FFN rows split on the block size of ffn_down's columns (its rows are what gets sliced by column).
    const tbc__tensor *down0 = m->layers[sh->layer_begin].w_down;
    int64_t unit = tbc__type_block(down0->type);
    if (unit < 32) unit = 32;
    tbc__split_range(I->n_ff, unit, sh->tp_size, sh->tp_rank, &fb, &fe);
    if (fe <= fb) {
        tbc__error_set(err, TBC_ERR_SHARD, "feed-forward length %d is too small to split %d ways", I->n_ff, sh->tp_size);
        return TBC_ERR_SHARD;
    }
    sh->ff_begin = (int)fb;
    sh->ff_end = (int)fe;
    s->ff_local = (int)(fe - fb);
    int n_local = sh->layer_end - sh->layer_begin;
    s->layers = (tbc__layer *)TBC_MALLOC(sizeof(tbc__layer) * (size_t)n_local);
    if (!s->layers) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for layers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s->layers, 0, sizeof(tbc__layer) * (size_t)n_local);
    int64_t q0 = hb * group * hd, q1 = he * group * hd, k0 = hb * hd, k1 = he * hd;
    tbc_result rc;
    uint64_t wbytes = 0;
    for (int l = 0; l < n_local; l++) {
        const tbc__layer_tensors *T = &m->layers[sh->layer_begin + l];
        tbc__layer *L = &s->layers[l];
        L->attn_norm = tbc__vec(T->attn_norm, 0);
        L->ffn_norm = tbc__vec(T->ffn_norm, 0);
        L->bq = tbc__vec(T->bq, q0);
        L->bk = tbc__vec(T->bk, k0);
        L->bv = tbc__vec(T->bv, k0);
        L->q_norm = tbc__vec(T->q_norm, 0);
        L->k_norm = tbc__vec(T->k_norm, 0);
        L->wq = tbc__mat_rows(T->wq, q0, q1);
        L->wk = tbc__mat_rows(T->wk, k0, k1);
        L->wv = tbc__mat_rows(T->wv, k0, k1);
        if ((rc = tbc__mat_cols(s, T->wo, q0, q1, &L->wo, err))) return rc;
        L->w_gate = tbc__mat_rows(T->w_gate, fb, fe);
        L->w_up = tbc__mat_rows(T->w_up, fb, fe);
        if ((rc = tbc__mat_cols(s, T->w_down, fb, fe, &L->w_down, err))) return rc;
        wbytes += tbc__mat_bytes(&L->wq) + tbc__mat_bytes(&L->wk) + tbc__mat_bytes(&L->wv) + tbc__mat_bytes(&L->wo) +
                  tbc__mat_bytes(&L->w_gate) + tbc__mat_bytes(&L->w_up) + tbc__mat_bytes(&L->w_down);
        wbytes += (uint64_t)I->n_embd * 8;
    }
    if (sh->has_embeddings || sh->has_output) {
        // Every rank keeps the (small per token) embedding lookup; the output matrix goes with the last layers.
        s->embd = tbc__mat_rows(m->tok_embd, 0, m->tok_embd->ne[1]);
    }
    if (sh->has_output) {
        s->output = tbc__mat_rows(m->output, 0, m->output->ne[1]);
        s->out_norm = tbc__vec(m->out_norm, 0);
        wbytes += tbc__mat_bytes(&s->output);
    }
    if (sh->has_embeddings && !(sh->has_output && m->output == m->tok_embd)) {
        // The embedding table is read one row per token: count it as held, not as streamed.
        wbytes += tbc__mat_bytes(&s->embd);
    }
    s->rope_freqs = tbc__vec(m->rope_freqs, 0);
    sh->weight_bytes = wbytes;
    sh->streamed_bytes = wbytes;
    if (sh->has_embeddings && !(sh->has_output && m->output == m->tok_embd))
        sh->streamed_bytes = wbytes - tbc__mat_bytes(&s->embd) + s->embd.ldw;
    // Start reading the shard from disk now; with prefault, also map every page of it in before the first token.
    for (int l = 0; l < n_local; l++) {
        tbc__layer *L = &s->layers[l];
        const tbc__mat *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) tbc__will_need(ms[i]->data, tbc__mat_bytes(ms[i]));
        if (d->prefault)
            for (int i = 0; i < 7; i++) tbc__touch_pages(ms[i]->data, tbc__mat_bytes(ms[i]));
    }
    if (sh->has_output) {
        tbc__will_need(s->output.data, tbc__mat_bytes(&s->output));
        if (d->prefault) tbc__touch_pages(s->output.data, tbc__mat_bytes(&s->output));
    }
    return TBC_OK;
}

static size_t tbc__max_sz(size_t a, size_t b) { return a > b ? a : b; }

static tbc_result tbc__session_alloc(tbc_session *s, tbc_error *err) {
    const tbc_model_info *I = &s->model->info;
    int nb = s->n_batch, hd = I->head_dim;
    size_t d = (size_t)I->n_embd, qd = (size_t)s->n_head_local * hd, kd = (size_t)s->n_kv_local * hd;
    size_t ff = (size_t)s->ff_local;
    size_t elt = s->kv_type == TBC_KV_F16 ? 2 : 4;
    int n_local = s->shard.layer_end - s->shard.layer_begin;
    uint64_t kv_bytes = (uint64_t)n_local * 2 * (uint64_t)s->n_ctx * kd * elt;
    s->shard.kv_bytes = kv_bytes;
    if (kv_bytes > (uint64_t)SIZE_MAX / 2) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "KV cache of %llu bytes is too large", (unsigned long long)kv_bytes);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    s->kv_mem = TBC_MALLOC((size_t)kv_bytes);
    if (!s->kv_mem) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for a KV cache of %.1f MiB (n_ctx %d)",
                       (double)kv_bytes / 1048576.0, s->n_ctx);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    for (int l = 0; l < n_local; l++) {
        s->layers[l].k_cache = (uint8_t *)s->kv_mem + (size_t)(2 * l) * (size_t)s->n_ctx * kd * elt;
        s->layers[l].v_cache = (uint8_t *)s->kv_mem + (size_t)(2 * l + 1) * (size_t)s->n_ctx * kd * elt;
    }
    // Largest activation conversion: n_batch rows of the widest input (dim, q heads, or ffn), in F32 worst case.
    size_t widest = tbc__max_sz(d, tbc__max_sz(qd, ff));
    s->act_bytes = (size_t)nb * (widest * 4 + 64);
    size_t nthreads = (size_t)s->pool.n_threads;
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->o, &s->gate, &s->up, &s->logits, &s->scores,
                      &s->rope_cos, &s->rope_sin};
    size_t sizes[] = {nb * d, nb * d, nb * qd, nb * kd, nb * kd, nb * qd, nb * d, nb * ff, nb * ff,
                      (size_t)I->n_vocab, nthreads * ((size_t)s->n_ctx + (size_t)hd), (size_t)nb * (size_t)hd, (size_t)nb * (size_t)hd};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *bufs[i] = (float *)TBC_MALLOC(sizes[i] * sizeof(float) + 64);
        if (!*bufs[i]) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for scratch buffers");
            return TBC_ERR_OUT_OF_MEMORY;
        }
    }
    s->act = TBC_MALLOC(s->act_bytes);
    if (!s->act) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for scratch buffers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    return TBC_OK;
}

TBC__DEF void tbc_session_destroy(tbc_session *s) {
    if (!s) return;
    tbc__pool_destroy(&s->pool);
    for (int i = 0; i < s->n_owned; i++) TBC_FREE(s->owned[i]);
    TBC_FREE(s->owned);
    float *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->o, s->gate, s->up, s->logits, s->scores,
                     s->rope_cos, s->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) TBC_FREE(bufs[i]);
    TBC_FREE(s->act);
    TBC_FREE(s->kv_mem);
    TBC_FREE(s->layers);
    TBC_FREE(s);
}

static int tbc__cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

TBC__DEF tbc_result tbc_session_create(const tbc_session_desc *d, tbc_session **out) {
    tbc_error local;
    tbc_error *err = d && d->error ? d->error : &local;
    memset(err, 0, sizeof *err);
    if (!d || !d->model || !out) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_session_create needs a desc with a model and an output pointer");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (d->model->vocab_only) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "the model was opened as vocabulary only");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    const tbc_model_info *I = &d->model->info;
    if (d->n_ctx < 0 || d->n_batch < 0 || d->n_threads < 0 || (d->kv_type != TBC_KV_F32 && d->kv_type != TBC_KV_F16)) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "negative n_ctx, n_batch or n_threads, or unknown kv_type");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc_session *s = (tbc_session *)TBC_MALLOC(sizeof(tbc_session));
    if (!s) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the session");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s, 0, sizeof *s);
    s->model = d->model;
    s->log = d->logger;
    s->kv_type = d->kv_type;
    s->n_ctx = d->n_ctx ? d->n_ctx : (I->n_ctx_train < 4096 ? I->n_ctx_train : 4096);
    s->n_batch = d->n_batch ? d->n_batch : 256;
    if (s->n_batch > s->n_ctx) s->n_batch = s->n_ctx;
    tbc_result rc = tbc__pool_init(&s->pool, d->n_threads ? d->n_threads : tbc__cpu_count(), err);
    if (rc == TBC_OK) rc = tbc__session_bind(s, d, err);
    if (rc == TBC_OK) rc = tbc__session_alloc(s, err);
    if (rc != TBC_OK) {
        tbc__log(&d->logger, TBC_LOG_ERROR, "%s", err->message);
        tbc_session_destroy(s);
        return rc;
    }
    tbc__log(&s->log, TBC_LOG_INFO, "session: layers %d-%d, slice %d/%d, n_ctx %d, %d threads, weights %.1f MiB, "
             "KV %.1f MiB", s->shard.layer_begin, s->shard.layer_end - 1, s->shard.tp_rank, s->shard.tp_size,
             s->n_ctx, s->pool.n_threads, (double)s->shard.weight_bytes / 1048576.0,
             (double)s->shard.kv_bytes / 1048576.0);
    *out = s;
    return TBC_OK;
}

TBC__DEF const tbc_error *tbc_session_last_error(const tbc_session *s) { return &s->last; }
TBC__DEF void tbc_session_shard_info(const tbc_session *s, tbc_shard_info *info) { *info = s->shard; }
TBC__DEF const float *tbc_session_logits(const tbc_session *s) { return s->logits; }
TBC__DEF int64_t tbc_session_pos(const tbc_session *s) { return s->pos; }
TBC__DEF int64_t tbc_session_n_ctx(const tbc_session *s) { return s->n_ctx; }
TBC__DEF tbc_result tbc_session_rewind(tbc_session *s, int64_t pos) {
    if (pos < 0 || pos > s->pos) {
        tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "cannot rewind to %lld: the context holds %lld tokens",
                       (long long)pos, (long long)s->pos);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    s->pos = pos;
    return TBC_OK;
}

// --- the pieces of a layer ---

static void tbc__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

typedef struct tbc__quant_job {
    tbc_type type;
    const float *src;
    int64_t n;              // values per row
    size_t ld_src;          // floats between rows
    uint8_t *dst;
    size_t ld_dst;          // bytes between rows
} tbc__quant_job;

static void tbc__quant_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__quant_job *j = (const tbc__quant_job *)arg;
    (void)thread;
    for (int64_t r = b; r < e; r++) tbc__quantize(j->type, j->src + (size_t)r * j->ld_src, j->dst + (size_t)r * j->ld_dst, j->n);
}

typedef struct tbc__mm_job {
    const tbc__mat *w;
    const uint8_t *a;
    size_t lda;
    int64_t na;
    float *out;
    size_t ldo;
} tbc__mm_job;

static void tbc__mm_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__mm_job *j = (const tbc__mm_job *)arg;
    (void)thread;
    tbc__gemm(j->w->type, j->w->cols, e - b, j->na, j->w->data + (size_t)b * j->w->ldw, j->w->ldw, j->a, j->lda,
              j->out + b, j->ldo);
}

// Converts n rows of x (ld floats apart) to the input type of w, once; `cached` remembers the last conversion.
typedef struct tbc__act_cache {
    const float *src;
    tbc_type type;
    size_t lda;
} tbc__act_cache;

static void tbc__prepare(tbc_session *s, tbc__act_cache *c, const float *x, int64_t n, int64_t cols, size_t ld,
                         tbc_type wtype) {
    tbc_type at = tbc__vec_dot_type(wtype);
    if (c->src == x && c->type == at) return;
    tbc__quant_job j;
    j.type = at;
    j.src = x;
    j.n = cols;
    j.ld_src = ld;
    j.dst = (uint8_t *)s->act;
    j.ld_dst = tbc__row_bytes(at, cols);
    if (n == 1) tbc__quant_task(&j, 0, 1, 0);
    else tbc__pool_for(&s->pool, n, 1, tbc__quant_task, &j);
    c->src = x;
    c->type = at;
    c->lda = j.ld_dst;
}

// out[t][0..w.rows) = w . x[t] for t < n (out rows ldo floats apart)
static void tbc__matmul(tbc_session *s, tbc__act_cache *c, const tbc__mat *w, const float *x, size_t ldx, int64_t n,
                        float *out, size_t ldo) {
    tbc__prepare(s, c, x, n, w->cols, ldx, w->type);
    tbc__mm_job j;
    j.w = w;
    j.a = (const uint8_t *)s->act;
    j.lda = c->lda;
    j.na = n;
    j.out = out;
    j.ldo = ldo;
    int64_t chunk = w->rows / ((int64_t)s->pool.n_threads * 8);
    chunk = chunk < 16 ? 16 : (chunk + 15) / 16 * 16;
    tbc__pool_for(&s->pool, w->rows, chunk, tbc__mm_task, &j);
}

// Rotary position embedding for one head vector at position p.
static void tbc__rope(const tbc_session *s, float *v, const float *cosv, const float *sinv) {
    const tbc_model *m = s->model;
    int half = m->n_rot / 2;
    if (m->info.rope_neox) {
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cosv[i] - b * sinv[i];
            v[i + half] = a * sinv[i] + b * cosv[i];
        }
    } else {
        for (int i = 0; i < half; i++) {
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * cosv[i] - b * sinv[i];
            v[2 * i + 1] = a * sinv[i] + b * cosv[i];
        }
    }
}

static void tbc__rope_tables(tbc_session *s, int64_t pos0, int64_t n) {
    const tbc_model *m = s->model;
    int half = m->n_rot / 2;
    float theta_scale = powf(m->info.rope_theta, -2.0f / (float)m->n_rot);
    for (int64_t t = 0; t < n; t++) {
        float theta = (float)(pos0 + t) * m->rope_freq_scale;
        float *c = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
        for (int i = 0; i < half; i++) {
            float th = s->rope_freqs ? theta / s->rope_freqs[i] : theta;
            c[i] = cosf(th);
            sn[i] = sinf(th);
            theta *= theta_scale;
        }
    }
}

typedef struct tbc__attn_job {
    tbc_session *s;
    const tbc__layer *L;
    int64_t pos0, n;
} tbc__attn_job;

// One (token, query head) pair per item: causal softmax attention over the cache.
static void tbc__attn_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__attn_job *j = (const tbc__attn_job *)arg;
    tbc_session *s = j->s;
    int hd = s->model->info.head_dim, nh = s->n_head_local, group = s->model->info.n_head / s->model->info.n_head_kv;
    size_t kd = (size_t)s->n_kv_local * hd;
    float *sc = s->scores + (size_t)thread * ((size_t)s->n_ctx + (size_t)hd);
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / nh;
        int h = (int)(it % nh), kvh = h / group;
        const float *q = s->q + (size_t)t * (size_t)nh * hd + (size_t)h * hd;
        float *out = s->att + (size_t)t * (size_t)nh * hd + (size_t)h * hd;
        int64_t len = j->pos0 + t + 1;
        if (s->kv_type == TBC_KV_F16) {
            // An F16 cache is read the way llama.cpp's CPU flash attention reads it (its default): q rounded to
            // F16, one pass with an online softmax, the output accumulated in F16; so results match llama.cpp's.
            float *qr = sc + s->n_ctx;
            for (int i = 0; i < hd; i++) qr[i] = tbc__f16_to_f32(tbc__f32_to_f16(q[i]));
            q = qr;
            uint16_t *acc = (uint16_t *)(void *)sc;
            float M = -INFINITY, S = 0;
            memset(acc, 0, sizeof(uint16_t) * (size_t)hd);
            for (int64_t p = 0; p < len; p++) {
                const uint16_t *kp = (const uint16_t *)j->L->k_cache + (size_t)p * kd + (size_t)kvh * hd;
                const uint16_t *vp = (const uint16_t *)j->L->v_cache + (size_t)p * kd + (size_t)kvh * hd;
                float sv = tbc__dot_f16_f32(hd, kp, q) * scale, ms = 1, vs = 1;
                if (sv > M) {
                    ms = expf(M - sv);
                    M = sv;
                    for (int i = 0; i < hd; i++) acc[i] = tbc__f32_to_f16(tbc__f16_to_f32(acc[i]) * ms);
                } else {
                    vs = expf(sv - M);
                }
                for (int i = 0; i < hd; i++) acc[i] = tbc__f32_to_f16(tbc__f16_to_f32(acc[i]) + tbc__f16_to_f32(vp[i]) * vs);
                S = S * ms + vs;
            }
            for (int i = 0; i < hd; i++) out[i] = tbc__f16_to_f32(acc[i]) / S;
            continue;
        }
        float mx = -INFINITY;
        for (int64_t p = 0; p < len; p++) {
            float v = tbc__dot_f32(hd, (const float *)j->L->k_cache + (size_t)p * kd + (size_t)kvh * hd, q);
            v *= scale;
            sc[p] = v;
            if (v > mx) mx = v;
        }
        double sum = 0;
        for (int64_t p = 0; p < len; p++) {
            float ev = expf(sc[p] - mx);
            sc[p] = ev;
            sum += (double)ev;
        }
        float inv = (float)(1.0 / sum);
        memset(out, 0, sizeof(float) * (size_t)hd);
        for (int64_t p = 0; p < len; p++)
            tbc__axpy_f32(hd, out, sc[p] * inv, (const float *)j->L->v_cache + (size_t)p * kd + (size_t)kvh * hd);
    }
}

static float tbc__silu(float x) { return x / (1.0f + expf(-x)); }

// Runs n (<= n_batch) tokens at positions pos0.. through this node's layers; x holds their hidden states.
static void tbc__forward_layers(tbc_session *s, int64_t pos0, int64_t n) {
    const tbc_model *m = s->model;
    const tbc_model_info *I = &m->info;
    int hd = I->head_dim;
    size_t d = (size_t)I->n_embd, qd = (size_t)s->n_head_local * hd, kd = (size_t)s->n_kv_local * hd;
    size_t ff = (size_t)s->ff_local;
    int half = m->n_rot / 2;
    tbc__rope_tables(s, pos0, n);
    for (int l = 0; l < s->shard.layer_end - s->shard.layer_begin; l++) {
        const tbc__layer *L = &s->layers[l];
        tbc__act_cache c;
        memset(&c, 0, sizeof c);
        for (int64_t t = 0; t < n; t++) tbc__rmsnorm(s->xn + t * d, s->x + t * d, L->attn_norm, (int64_t)d, I->rms_eps);
        tbc__matmul(s, &c, &L->wq, s->xn, d, n, s->q, qd);
        tbc__matmul(s, &c, &L->wk, s->xn, d, n, s->k, kd);
        tbc__matmul(s, &c, &L->wv, s->xn, d, n, s->v, kd);
        for (int64_t t = 0; t < n; t++) {
            float *q = s->q + t * qd, *k = s->k + t * kd, *v = s->v + t * kd;
            if (L->bq) for (size_t i = 0; i < qd; i++) q[i] += L->bq[i];
            if (L->bk) for (size_t i = 0; i < kd; i++) k[i] += L->bk[i];
            if (L->bv) for (size_t i = 0; i < kd; i++) v[i] += L->bv[i];
            const float *cs = s->rope_cos + t * half, *sn = s->rope_sin + t * half;
            for (int h = 0; h < s->n_head_local; h++) {
                if (L->q_norm) tbc__rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, I->rms_eps);
                tbc__rope(s, q + h * hd, cs, sn);
            }
            for (int h = 0; h < s->n_kv_local; h++) {
                if (L->k_norm) tbc__rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, I->rms_eps);
                tbc__rope(s, k + h * hd, cs, sn);
            }
            size_t at = (size_t)(pos0 + t) * kd;
            if (s->kv_type == TBC_KV_F16) {
                tbc__f32_to_f16_row((int64_t)kd, k, (uint16_t *)L->k_cache + at);
                tbc__f32_to_f16_row((int64_t)kd, v, (uint16_t *)L->v_cache + at);
            } else {
                memcpy((float *)L->k_cache + at, k, kd * sizeof(float));
                memcpy((float *)L->v_cache + at, v, kd * sizeof(float));
            }
        }
        tbc__attn_job aj;
        aj.s = s;
        aj.L = L;
        aj.pos0 = pos0;
        aj.n = n;
        tbc__pool_for(&s->pool, n * s->n_head_local, 1, tbc__attn_task, &aj);
        tbc__matmul(s, &c, &L->wo, s->att, qd, n, s->o, d);
        if (s->allreduce) s->allreduce(s->comm, s->o, n * (int64_t)d);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->o[i];
        c.src = NULL;  // xn is about to change
        for (int64_t t = 0; t < n; t++) tbc__rmsnorm(s->xn + t * d, s->x + t * d, L->ffn_norm, (int64_t)d, I->rms_eps);
        tbc__matmul(s, &c, &L->w_gate, s->xn, d, n, s->gate, ff);
        tbc__matmul(s, &c, &L->w_up, s->xn, d, n, s->up, ff);
        for (size_t i = 0; i < (size_t)n * ff; i++) s->gate[i] = tbc__silu(s->gate[i]) * s->up[i];
        tbc__matmul(s, &c, &L->w_down, s->gate, ff, n, s->o, d);
        if (s->allreduce) s->allreduce(s->comm, s->o, n * (int64_t)d);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->o[i];
    }
}

TBC__DEF tbc_result tbc_session_eval(tbc_session *s, const int32_t *tokens, int64_t n) {
    const tbc_model *m = s->model;
    const tbc_model_info *I = &m->info;
    if (n <= 0 || !tokens) {
        tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "tbc_session_eval needs at least one token");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (n > s->n_ctx - s->pos) {
        tbc__error_set(&s->last, TBC_ERR_CONTEXT_FULL, "%lld tokens do not fit: the context holds %lld of %d",
                       (long long)n, (long long)s->pos, s->n_ctx);
        return TBC_ERR_CONTEXT_FULL;
    }
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= I->n_vocab) {
            tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary (%d)",
                           tokens[i], (long long)i, I->n_vocab);
            return TBC_ERR_INVALID_ARGUMENT;
        }
    }
    if (!s->shard.has_embeddings || !s->shard.has_output) {
        tbc__error_set(&s->last, TBC_ERR_SHARD, "this session holds layers %d-%d only: tokens go to the first node "
                       "of a pipeline", s->shard.layer_begin, s->shard.layer_end - 1);
        return TBC_ERR_SHARD;
    }
    size_t d = (size_t)I->n_embd;
    for (int64_t b = 0; b < n; b += s->n_batch) {
        int64_t nb = n - b < s->n_batch ? n - b : s->n_batch;
        for (int64_t t = 0; t < nb; t++)
            tbc__dequantize(s->embd.type, s->embd.data + (size_t)tokens[b + t] * s->embd.ldw, s->x + t * d, (int64_t)d);
        tbc__forward_layers(s, s->pos, nb);
        s->pos += nb;
        if (b + nb == n) {
            tbc__act_cache c;
            memset(&c, 0, sizeof c);
            tbc__rmsnorm(s->xn, s->x + (size_t)(nb - 1) * d, s->out_norm, (int64_t)d, I->rms_eps);
            tbc__matmul(s, &c, &s->output, s->xn, d, 1, s->logits, (size_t)I->n_vocab);
        }
    }
    return TBC_OK;
}

// >>sampling
struct tbc_sampler {
    tbc_sampling p;
    int32_t n_vocab;
    uint64_t rng[4];
    int32_t *recent;           // ring of the last repeat_last_n tokens
    int n_recent, head, window;
    float *work;               // n_vocab adjusted logits
    int32_t *idx;              // candidate ids
    uint16_t *count;           // occurrences in the window, per id
};

static uint64_t tbc__splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t tbc__rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double tbc__rand01(tbc_sampler *s) {  // xoshiro256**
    uint64_t *r = s->rng;
    uint64_t result = tbc__rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0]; r[3] ^= r[1]; r[1] ^= r[2]; r[0] ^= r[3]; r[2] ^= t; r[3] = tbc__rotl(r[3], 45);
    return (double)(result >> 11) * (1.0 / 9007199254740992.0);
}

TBC__DEF void tbc_sampler_reset(tbc_sampler *s) {
    uint64_t seed = s->p.seed;
    for (int i = 0; i < 4; i++) s->rng[i] = tbc__splitmix(&seed);
    s->n_recent = s->head = 0;
    memset(s->count, 0, sizeof(uint16_t) * (size_t)s->n_vocab);
}

TBC__DEF void tbc_sampler_destroy(tbc_sampler *s) {
    if (!s) return;
    TBC_FREE(s->recent);
    TBC_FREE(s->work);
    TBC_FREE(s->idx);
    TBC_FREE(s->count);
    TBC_FREE(s);
}

TBC__DEF tbc_result tbc_sampler_create(const tbc_sampling *p, int32_t n_vocab, tbc_sampler **out) {
    if (!p || !out || n_vocab <= 0 || p->temperature < 0 || p->top_k < 0 || p->top_p < 0 || p->top_p > 1 ||
        p->min_p < 0 || p->min_p > 1 || p->repeat_penalty < 0 || p->repeat_last_n < 0 || p->temperature != p->temperature)
        return TBC_ERR_INVALID_ARGUMENT;
    tbc_sampler *s = (tbc_sampler *)TBC_MALLOC(sizeof(tbc_sampler));
    if (!s) return TBC_ERR_OUT_OF_MEMORY;
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    s->window = p->repeat_last_n ? p->repeat_last_n : 64;
    s->recent = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)s->window);
    s->work = (float *)TBC_MALLOC(sizeof(float) * (size_t)n_vocab);
    s->idx = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)n_vocab);
    s->count = (uint16_t *)TBC_MALLOC(sizeof(uint16_t) * (size_t)n_vocab);
    if (!s->recent || !s->work || !s->idx || !s->count) {
        tbc_sampler_destroy(s);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    tbc_sampler_reset(s);
    *out = s;
    return TBC_OK;
}

TBC__DEF void tbc_sampler_accept(tbc_sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab) return;
    if (s->n_recent == s->window) {
        int32_t old = s->recent[s->head];
        s->count[old]--;
    } else {
        s->n_recent++;
    }
    s->recent[s->head] = token;
    s->head = (s->head + 1) % s->window;
    if (s->count[token] < UINT16_MAX) s->count[token]++;
}

static int tbc__cmp_logit_desc(const void *a, const void *b, const float *w) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (w[x] != w[y]) return w[x] > w[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

// Moves the k best candidates (by w, ties to the lower id) to the front of idx[0..n), in order.
static void tbc__top_k_sort(int32_t *idx, int64_t n, int64_t k, const float *w) {
    if (k > n) k = n;
    if (k > 256) {  // many candidates: a full shell sort
        for (int64_t gap = n / 2; gap > 0; gap /= 2)
            for (int64_t i = gap; i < n; i++) {
                int32_t t = idx[i];
                int64_t j = i;
                while (j >= gap && tbc__cmp_logit_desc(&idx[j - gap], &t, w) > 0) { idx[j] = idx[j - gap]; j -= gap; }
                idx[j] = t;
            }
        return;
    }
    int64_t m = 0;  // idx[0..m) is the sorted best-so-far; every position below i is already consumed
    for (int64_t i = 0; i < n; i++) {
        int32_t t = idx[i];
        if (m == k && tbc__cmp_logit_desc(&t, &idx[k - 1], w) >= 0) continue;
        int64_t j = m < k ? m++ : k - 1;
        while (j > 0 && tbc__cmp_logit_desc(&t, &idx[j - 1], w) < 0) { idx[j] = idx[j - 1]; j--; }
        idx[j] = t;
    }
}

TBC__DEF int32_t tbc_sampler_sample(tbc_sampler *s, const float *logits) {
    const tbc_sampling *p = &s->p;
    float *w = s->work;
    int32_t nv = s->n_vocab;
    memcpy(w, logits, sizeof(float) * (size_t)nv);
    int penal = (p->repeat_penalty > 0 && p->repeat_penalty != 1.0f) || p->presence_penalty != 0 ||
                p->frequency_penalty != 0;
    if (penal) {
        for (int i = 0; i < s->n_recent; i++) {
            int32_t t = s->recent[i];
            int c = s->count[t];
            if (c == 0) continue;  // already adjusted (count reset below)
            if (p->repeat_penalty > 0 && p->repeat_penalty != 1.0f)
                w[t] = w[t] > 0 ? w[t] / p->repeat_penalty : w[t] * p->repeat_penalty;
            w[t] -= (float)c * p->frequency_penalty + p->presence_penalty;
            s->count[t] = (uint16_t)(0x8000u | (unsigned)c);  // mark as done
        }
        for (int i = 0; i < s->n_recent; i++) s->count[s->recent[i]] &= 0x7fff;
    }
    int32_t tok;
    if (p->temperature <= 0) {
        tok = 0;
        for (int32_t i = 1; i < nv; i++) if (w[i] > w[tok]) tok = i;
    } else {
        int64_t n = nv;
        for (int32_t i = 0; i < nv; i++) s->idx[i] = i;
        int64_t k = p->top_k > 0 && p->top_k < nv ? p->top_k : nv;
        tbc__top_k_sort(s->idx, n, k, w);
        n = k;
        // softmax over the candidates, at temperature 1 for top_p/min_p as llama.cpp's chain does before temp
        float mx = w[s->idx[0]];
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += exp((double)(w[s->idx[i]] - mx));
        if (p->top_p > 0 && p->top_p < 1) {
            double cum = 0;
            int64_t keep = n;
            for (int64_t i = 0; i < n; i++) {
                cum += exp((double)(w[s->idx[i]] - mx)) / sum;
                if (cum >= p->top_p) { keep = i + 1; break; }
            }
            n = keep;
        }
        if (p->min_p > 0) {
            float lim = mx + logf(p->min_p);
            int64_t keep = 1;
            while (keep < n && w[s->idx[keep]] >= lim) keep++;
            n = keep;
        }
        double tot = 0;
        for (int64_t i = 0; i < n; i++) tot += exp((double)(w[s->idx[i]] - mx) / p->temperature);
        double r = tbc__rand01(s) * tot, acc = 0;
        tok = s->idx[n - 1];
        for (int64_t i = 0; i < n; i++) {
            acc += exp((double)(w[s->idx[i]] - mx) / p->temperature);
            if (r < acc) { tok = s->idx[i]; break; }
        }
    }
    tbc_sampler_accept(s, tok);
    return tok;
}

// >>generation
#if __has_include("parts/tokenizer.h")
TBC__DEF tbc_result tbc_tokenize(const tbc_model *m, const char *text, size_t len, int flags, int32_t *out,
                                 int64_t cap, int64_t *n_out) {
    if (!m || (!text && len) || !n_out || (cap > 0 && !out)) return TBC_ERR_INVALID_ARGUMENT;
    return tbc__tokenize(&m->vocab, text ? text : "", len, (flags & TBC_TOKENIZE_ADD_SPECIAL) != 0,
                         (flags & TBC_TOKENIZE_PARSE_SPECIAL) != 0, out, cap, n_out);
}
TBC__DEF int64_t tbc_token_to_piece(const tbc_model *m, int32_t token, int flags, char *buf, size_t cap) {
    return tbc__token_to_piece(&m->vocab, token, (flags & TBC_PIECE_RENDER_SPECIAL) != 0, buf, cap);
}
TBC__DEF int tbc_token_is_eog(const tbc_model *m, int32_t token) { return tbc__vocab_is_eog(&m->vocab, token); }
TBC__DEF int32_t tbc_token_find(const tbc_model *m, const char *text) {
    return tbc__vocab_find(&m->vocab, text, strlen(text));
}
TBC__DEF int32_t tbc_n_vocab(const tbc_model *m) { return m->vocab.n_tokens; }
#endif

#if __has_include("parts/chat.h") && __has_include("parts/tokenizer.h")
TBC__DEF const char *tbc_chat_template_name(const tbc_model *m) {
    return m->chat_family ? tbc__chat_family(m->chat_family) : "chatml (fallback)";
}

static void tbc__token_text(const tbc_model *m, int32_t id, char *buf, size_t cap) {
    buf[0] = 0;
    if (id < 0) return;
    int64_t n = tbc__token_to_piece(&m->vocab, id, 1, buf, cap - 1);
    if (n < 0 || (size_t)n >= cap) n = 0;
    buf[n] = 0;
}

TBC__DEF tbc_result tbc_chat_apply(const tbc_model *m, const tbc_chat_message *messages, size_t n, int add_assistant,
                                   char *buf, size_t cap, size_t *len) {
    if (!m || (!messages && n) || !len || (cap && !buf)) return TBC_ERR_INVALID_ARGUMENT;
    char bos[64], eos[64];
    tbc__token_text(m, m->vocab.bos, bos, sizeof bos);
    tbc__token_text(m, m->vocab.eos, eos, sizeof eos);
    const char *family = m->chat_family ? m->chat_family : "chatml";
    tbc_error *err = (tbc_error *)&m->last;  // detail only; the model is otherwise immutable
    return tbc__chat_render(family, bos, eos, messages, n, add_assistant, buf, cap, len, err);
}
#endif

// Length of the longest suffix of text[0..n) that is a proper prefix of some stop string: that much is held back.
static size_t tbc__stop_holdback(const char *text, size_t n, const char *const *stop, size_t n_stop) {
    size_t best = 0;
    for (size_t i = 0; i < n_stop; i++) {
        size_t sl = strlen(stop[i]);
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > best; k--)
            if (memcmp(text + n - k, stop[i], k) == 0) { best = k; break; }
    }
    return best;
}

// Bytes at the end of text that start an incomplete UTF-8 character.
static size_t tbc__utf8_incomplete(const char *text, size_t n) {
    for (size_t back = 1; back <= 4 && back <= n; back++) {
        unsigned char c = (unsigned char)text[n - back];
        if ((c & 0xC0) == 0x80) continue;              // continuation byte: keep looking for the lead
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

TBC__DEF tbc_result tbc_session_generate(tbc_session *s, const tbc_generate_desc *d, tbc_generate_result *result) {
    tbc_generate_result res;
    memset(&res, 0, sizeof res);
    if (!s || !d) return TBC_ERR_INVALID_ARGUMENT;
    const tbc_model *m = s->model;
    int32_t n_vocab = m->info.n_vocab;
    int32_t *prompt = NULL;
    int64_t n_prompt = 0;
    char *pending = NULL;
    tbc_sampler *smp = NULL;
    tbc_result rc = TBC_OK;
    size_t pend_n = 0, pend_cap = 0, max_stop = 0;
    double t0 = 0;
    for (size_t i = 0; i < d->n_stop; i++) {
        if (!d->stop[i] || !d->stop[i][0]) {
            tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "stop string %zu is empty", i);
            return TBC_ERR_INVALID_ARGUMENT;
        }
        if (strlen(d->stop[i]) > max_stop) max_stop = strlen(d->stop[i]);
    }
    // 1. the prompt as token ids
    if (d->prompt_tokens) {
        n_prompt = d->n_prompt_tokens;
        prompt = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)(n_prompt > 0 ? n_prompt : 1));
        if (!prompt) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
        if (n_prompt > 0) memcpy(prompt, d->prompt_tokens, sizeof(int32_t) * (size_t)n_prompt);
    } else {
#if __has_include("parts/tokenizer.h") && __has_include("parts/chat.h")
        char *text = NULL;
        size_t tlen = 0;
        int flags = TBC_TOKENIZE_ADD_SPECIAL;
        if (d->messages) {
            rc = tbc_chat_apply(m, d->messages, d->n_messages, 1, NULL, 0, &tlen);
            if (rc != TBC_OK && rc != TBC_ERR_BUFFER_TOO_SMALL) {
                tbc__error_set(&s->last, rc, "chat template: %s", m->last.message);
                goto done;
            }
            text = (char *)TBC_MALLOC(tlen + 1);
            if (!text) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
            rc = tbc_chat_apply(m, d->messages, d->n_messages, 1, text, tlen + 1, &tlen);
            if (rc != TBC_OK) { TBC_FREE(text); goto done; }
            flags |= TBC_TOKENIZE_PARSE_SPECIAL;  // the template's markers are control tokens
        }
        const char *src = text ? text : d->prompt ? d->prompt : "";
        size_t slen = text ? tlen : strlen(src);
        // A template that already starts with the BOS text must not get a second BOS.
        if (text && m->vocab.bos >= 0) {
            char bos[64];
            tbc__token_text(m, m->vocab.bos, bos, sizeof bos);
            if (bos[0] && strncmp(text, bos, strlen(bos)) == 0) flags &= ~TBC_TOKENIZE_ADD_SPECIAL;
        }
        rc = tbc_tokenize(m, src, slen, flags, NULL, 0, &n_prompt);
        if (rc == TBC_OK || rc == TBC_ERR_BUFFER_TOO_SMALL) {
            prompt = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)(n_prompt > 0 ? n_prompt : 1));
            rc = prompt ? tbc_tokenize(m, src, slen, flags, prompt, n_prompt, &n_prompt) : TBC_ERR_OUT_OF_MEMORY;
        }
        TBC_FREE(text);
        if (rc != TBC_OK) goto done;
#else
        rc = TBC_ERR_INVALID_ARGUMENT;
        goto done;
#endif
    }
    if (n_prompt <= 0) {
        rc = TBC_ERR_INVALID_ARGUMENT;
        tbc__error_set(&s->last, rc, "the prompt is empty");
        goto done;
    }
    res.n_prompt = n_prompt;
    if ((rc = tbc_sampler_create(&d->sampling, n_vocab, &smp)) != TBC_OK) {
        tbc__error_set(&s->last, rc, "invalid sampling parameters");
        goto done;
    }
    for (int64_t i = 0; i < n_prompt; i++) tbc_sampler_accept(smp, prompt[i]);
    // 2. read the prompt
    s->pos = 0;
    t0 = tbc__now();
    if ((rc = tbc_session_eval(s, prompt, n_prompt)) != TBC_OK) goto done;
    res.prefill_seconds = tbc__now() - t0;
    t0 = tbc__now();
    pend_cap = 256 + max_stop * 2;
    pending = (char *)TBC_MALLOC(pend_cap);
    if (!pending) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
    // 3. sample, stream, repeat
    for (;;) {
        if (d->max_tokens > 0 && res.n_generated >= d->max_tokens) { res.stop_reason = TBC_STOP_MAX_TOKENS; break; }
        if (d->on_logits) d->on_logits(d->user, s->logits, n_vocab);
        int32_t tok = tbc_sampler_sample(smp, s->logits);
        res.n_generated++;
        if (d->on_token) d->on_token(d->user, tok);
#if __has_include("parts/tokenizer.h")
        if (tbc_token_is_eog(m, tok)) { res.stop_reason = TBC_STOP_EOG; break; }
        char piece[256];
        int64_t pl = tbc_token_to_piece(m, tok, 0, piece, sizeof piece);
        if (pl < 0) pl = 0;
        if (pl > (int64_t)sizeof piece) pl = sizeof piece;
        if (pend_n + (size_t)pl > pend_cap) {
            size_t nc = (pend_n + (size_t)pl) * 2;
            char *np = (char *)TBC_REALLOC(pending, nc);
            if (!np) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
            pending = np;
            pend_cap = nc;
        }
        memcpy(pending + pend_n, piece, (size_t)pl);
        pend_n += (size_t)pl;
        // a stop string anywhere in the pending text ends generation; the text before it is emitted
        size_t cut = pend_n, found = 0;
        for (size_t i = 0; i < d->n_stop; i++) {
            size_t sl = strlen(d->stop[i]);
            for (size_t at = 0; at + sl <= pend_n; at++)
                if (memcmp(pending + at, d->stop[i], sl) == 0) { if (at < cut) cut = at; found = 1; break; }
        }
        size_t emit = found ? cut : pend_n - tbc__stop_holdback(pending, pend_n, d->stop, d->n_stop);
        emit -= found ? 0 : tbc__utf8_incomplete(pending, emit);
        int stop_cb = 0;
        if (emit > 0 && d->on_text) stop_cb = d->on_text(d->user, pending, emit, tok);
        memmove(pending, pending + emit, pend_n - emit);
        pend_n -= emit;
        if (found) { res.stop_reason = TBC_STOP_STRING; break; }
        if (stop_cb) { res.stop_reason = TBC_STOP_CALLBACK; break; }
#endif
        if (s->pos >= s->n_ctx) { res.stop_reason = TBC_STOP_CONTEXT; break; }
        if ((rc = tbc_session_eval(s, &tok, 1)) != TBC_OK) goto done;
    }
    // text held back for a stop string that never came
    if (res.stop_reason != TBC_STOP_STRING && res.stop_reason != TBC_STOP_CALLBACK && pend_n && d->on_text)
        d->on_text(d->user, pending, pend_n, -1);
    res.decode_seconds = tbc__now() - t0;
done:
    TBC_FREE(prompt);
    TBC_FREE(pending);
    tbc_sampler_destroy(smp);
    if (result) *result = res;
    return rc;
}


#endif // TBC__IMPLEMENTATION_DONE
#endif // TBC_IMPLEMENTATION
