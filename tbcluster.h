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

   CLUSTER
      A session can run with other nodes (tbc_session_desc.cluster: their addresses and the cluster key); each of
      them runs tbc_node_serve (build/node). Tensor-parallel or pipeline split, over TCP. Wire protocol version 1,
      documented in docs/PROTOCOL.md: authenticated (HMAC-SHA-256 challenge-response, then a tag on every frame).

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
    X(TBC_ERR_MODEL_MISMATCH,   -32, "a peer has another model") \
    X(TBC_ERR_UNSUPPORTED,      -33, "not available on this machine or build (e.g. RDMA)")

typedef enum tbc_result {
#define TBC__X(name, value, text) name = value,
    TBC_RESULT_LIST(TBC__X)
#undef TBC__X
    TBC_RESULT_MIN_ = -33
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
    int output;                   // 0: the node with the last layer holds the output; 1: this node; -1: not this node
} tbc_shard_desc;

typedef struct tbc_shard_info {
    int layer_begin, layer_end, tp_rank, tp_size;
    int head_begin, head_end;            // this node's query heads
    int head_kv_begin, head_kv_end;      // the KV heads they use (a KV head may be held by two neighbours)
    int ff_begin, ff_end;                // this node's FFN rows
    int vocab_begin, vocab_end;          // this node's rows of the output matrix (logits)
    int has_embeddings, has_output;
    uint64_t weight_bytes;               // bytes of weights this node holds
    uint64_t copied_bytes;               // of which copied out of the file (column slices), the rest is mapped
    uint64_t widened_bytes;              // of which column slices off their quantization blocks, kept as F32: their
                                         // products skip the activation rounding one node does (logits differ ~0.1)
    uint64_t streamed_bytes;             // weight bytes read per decoded token (every matrix once, one embedding row)
    uint64_t kv_bytes;                   // KV cache bytes
} tbc_shard_info;

typedef enum tbc_kv_type { TBC_KV_F32 = 0, TBC_KV_F16 = 1 } tbc_kv_type;

// >>cluster
typedef enum tbc_split { TBC_SPLIT_AUTO = 0, TBC_SPLIT_TENSOR = 1, TBC_SPLIT_PIPELINE = 2 } tbc_split;
typedef enum tbc_sync { TBC_SYNC_F32 = 0, TBC_SYNC_Q8_0 = 1 } tbc_sync;
// How a link carries its messages. AUTO: RDMA when both ends have a device on the link's address, else TCP.
typedef enum tbc_transport { TBC_TRANSPORT_AUTO = 0, TBC_TRANSPORT_RDMA = 1, TBC_TRANSPORT_TCP = 2 } tbc_transport;

// The other nodes a session runs with (the session's node is rank 0, the coordinator). Zeroed fields: defaults.
typedef struct tbc_cluster_desc {
    const char *peers;            // "host:port,host:port,..." of nodes running tbc_node_serve; required
    const void *key;              // the cluster key (any bytes); NULL/0: none (then the nodes must not have one)
    size_t key_len;
    tbc_split split;              // AUTO: tensor parallel when the KV heads divide among the nodes, else pipeline
    tbc_sync sync;                // activation sums on the wire: F32 (exact) or Q8_0 (a quarter of the bytes)
    double timeout;               // seconds before a silent peer is an error; 0 = 2
    const char *name;             // this node's name in the others' logs; NULL = host name
    int no_local;                 // 1: this node holds no share (it tokenizes, samples, sums; the peers compute)
    tbc_transport transport;      // per link; AUTO logs why a link stays on TCP, RDMA makes that an error
    const char *rdma_dev;         // NULL: the device whose GID is the link's local IPv4 address
    int rdma_gid;                 // GID index + 1; 0: the IPv4-mapped GID of the link's address (RoCE v2 preferred)
    int rdma_uc;                  // 1: unreliable-connected queue pairs (what macOS offers); 0: reliable (RC)
} tbc_cluster_desc;

// A plan: who holds what (tbc_session_plan works it out without loading anything; sessions follow the same rules).
typedef struct tbc_plan_node {
    char addr[128];               // "host:port", or "local" for this node
    char name[64], simd[32];
    int rank;                     // 0 = this node (the coordinator); -1 = left out (see note)
    int has_model;                // has the model file; else its shard is sent (shard_file_bytes)
    uint32_t cores;
    uint64_t mem_usable;          // memory the node offers; 0 = unknown
    tbc_shard_info shard;         // layers, heads, FFN and vocabulary rows, weight and KV bytes
    uint64_t shard_file_bytes;    // bytes of the model file its shard reads
    uint64_t link_bytes_per_token;  // decoding one token: bytes both ways on its link to the coordinator
    double link_rtt_us;           // measured round trip of a hidden-state-sized message (0 for this node)
    char note[160];               // why a node was left out
} tbc_plan_node;

typedef struct tbc_cluster_plan {
    int n_nodes;                  // entries in nodes[], this node first, then the peers in the order given
    int split;                    // TBC_SPLIT_TENSOR or TBC_SPLIT_PIPELINE
    int sync;                     // tbc_sync
    char reason[200];             // how the split was chosen
    tbc_plan_node nodes[64];
} tbc_cluster_plan;

// The cluster key from a file (its bytes, without trailing newlines), or with path NULL from the environment
// variable TBC_CLUSTER_KEY; *len = 0 when path is NULL and the variable is unset. At most cap bytes.
TBC_API tbc_result tbc_cluster_key_load(const char *path, void *buf, size_t cap, size_t *len, tbc_error *error);

// SHA-256 (FIPS 180-4), with the CPU's SHA instructions where it has them (x86 SHA-NI, ARMv8 SHA2): what the cluster
// uses to check shards, for programs that verify downloads. Feed the data in pieces of any size.
typedef struct tbc_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    uint32_t n_buf;
} tbc_sha256;
TBC_API void tbc_sha256_init(tbc_sha256 *c);
TBC_API void tbc_sha256_update(tbc_sha256 *c, const void *data, size_t n);
TBC_API void tbc_sha256_final(tbc_sha256 *c, uint8_t out[32]);

// A worker: serves coordinators one after another until *stop becomes nonzero. Blocks.
typedef struct tbc_node_desc {
    const char *listen;           // "HOST:PORT"; without a key only a loopback address unless insecure
    const char *model_path;       // the GGUF file, if this node has it; else shards arrive from the coordinator
    const void *key;
    size_t key_len;
    int insecure;                 // allow listening on a network address without a key
    int n_threads;                // 0 = all CPUs
    const char *cache_dir;        // where received shards are kept; NULL = "tbc-cache"
    uint64_t mem_limit;           // bytes this node offers (pipeline shares follow it); 0 = the free memory
    const char *name;
    double timeout;               // 0 = 2 s
    tbc_transport transport;      // TCP: never RDMA; AUTO/RDMA: offer it when a device is there
    const char *rdma_dev;         // as in tbc_cluster_desc
    int rdma_gid;
    volatile int *stop;
    tbc_logger logger;
    tbc_error *error;
} tbc_node_desc;
TBC_API tbc_result tbc_node_serve(const tbc_node_desc *d);

// Traffic and time spent communicating, on the coordinator, since the session was created (zeros on one node).
typedef struct tbc_cluster_stats {
    int n_peers;
    int split;                    // TBC_SPLIT_TENSOR or TBC_SPLIT_PIPELINE
    uint64_t allreduces;          // tensor split: all-reduces done
    double comm_seconds;          // waiting for and exchanging partial sums (tensor) or hidden states (pipeline)
    uint64_t shard_bytes_sent;    // shard bytes sent to nodes without the model file
    uint64_t bytes_sent[64], bytes_received[64];  // per peer link, frames included
    int rdma[64];                 // per peer link: 1 when it runs over RDMA, 0 over TCP
    int up[64];                   // per peer link: 1 while connected
} tbc_cluster_stats;

typedef struct tbc_session tbc_session;
#define TBC_MAX_SEQ 256

typedef struct tbc_session_desc {
    const tbc_model *model;       // required; must outlive the session
    tbc_shard_desc shard;         // zeroed: the whole model on this node
    int n_ctx;                    // context length; 0 = the model's training context (capped at 4096)
    int n_batch;                  // tokens per forward pass while reading a prompt; 0 = 256
    int n_seq;                    // sequences kept at once, each with its own n_ctx of KV cache; 0 = 1
    int n_threads;                // 0 = number of online CPUs
    tbc_kv_type kv_type;          // KV cache element type; zeroed = F32
    int prefault;                 // 1: read the shard's pages at creation (load time instead of first token)
    const tbc_cluster_desc *cluster;  // NULL: this node alone; else the other nodes, which get their shares
    tbc_logger logger;
    tbc_error *error;             // optional: why creation failed
} tbc_session_desc;

// Creates a session: binds this node's shard (mapping or copying only its bytes), allocates the KV cache and
// scratch, starts n_threads-1 workers. On failure *out is untouched and desc->error says why.
TBC_API tbc_result tbc_session_create(const tbc_session_desc *d, tbc_session **out);
TBC_API void tbc_session_destroy(tbc_session *s);  // accepts NULL
TBC_API const tbc_error *tbc_session_last_error(const tbc_session *s);
TBC_API void tbc_session_shard_info(const tbc_session *s, tbc_shard_info *info);
// What a session with this shard would hold, worked out without mapping or copying anything: layers, heads, FFN
// and vocabulary rows, weight and KV bytes (n_ctx 0 = the session default); *file_bytes (may be NULL): the bytes of
// the model file the shard reads, which is what a node without the file receives.
TBC_API tbc_result tbc_shard_estimate(const tbc_model *m, const tbc_shard_desc *shard, int n_ctx, tbc_kv_type kv,
                                      tbc_shard_info *info, uint64_t *file_bytes, tbc_error *error);
struct tbc_cluster_stats;
TBC_API void tbc_session_cluster_stats(const tbc_session *s, struct tbc_cluster_stats *stats);
// The plan a cluster session runs (zeros on one node): who holds what, as tbc_session_plan works it out.
struct tbc_cluster_plan;
TBC_API void tbc_session_get_plan(const tbc_session *s, struct tbc_cluster_plan *plan);
// Connects to desc->cluster's peers and works out the plan the session would run, then says goodbye: nothing is
// loaded, sent or allocated. tbc_cluster_plan_format writes it as a table (returns the length it needs).
TBC_API tbc_result tbc_session_plan(const tbc_session_desc *desc, tbc_cluster_plan *plan);
TBC_API size_t tbc_cluster_plan_format(const tbc_cluster_plan *plan, const tbc_model *m, char *buf, size_t cap);

// Appends n tokens to sequence 0 and runs the forward pass. Afterwards tbc_session_logits() holds the logits of
// the last token. TBC_ERR_CONTEXT_FULL (nothing evaluated) if they don't fit. Not thread-safe per session.
TBC_API tbc_result tbc_session_eval(tbc_session *s, const int32_t *tokens, int64_t n);
TBC_API const float *tbc_session_logits(const tbc_session *s);  // n_vocab floats, valid until the next eval
TBC_API int64_t tbc_session_pos(const tbc_session *s);           // tokens in sequence 0's context
TBC_API int64_t tbc_session_n_ctx(const tbc_session *s);         // per sequence
TBC_API tbc_result tbc_session_rewind(tbc_session *s, int64_t pos);  // forget sequence 0's tokens from pos on

// Several sequences in one forward pass (desc.n_seq > 1): token i goes to sequence seq[i] at that sequence's next
// position (a sequence's tokens keep their order), so each weight is read once for all of them. Afterwards
// tbc_session_seq_logits(s, q) holds the logits of sequence q's last token in the batch; the logits of sequences
// not in the batch are left as they were. Nothing is evaluated if a token or sequence is out of range or a
// sequence's tokens do not fit its context.
TBC_API tbc_result tbc_session_decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n);
TBC_API const float *tbc_session_seq_logits(const tbc_session *s, int seq);
TBC_API int64_t tbc_session_seq_pos(const tbc_session *s, int seq);
TBC_API tbc_result tbc_session_seq_rewind(tbc_session *s, int seq, int64_t pos);
TBC_API int tbc_session_n_seq(const tbc_session *s);

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
    int need_room;                         // 1: TBC_ERR_CONTEXT_FULL unless prompt + max_tokens fit the context
    tbc_sampling sampling;
    const char *const *stop;               // stop strings (not included in the output)
    size_t n_stop;
    tbc_text_fn on_text;
    tbc_logits_fn on_logits;
    void (*on_token)(void *user, int32_t token);   // every sampled token (also the end-of-generation one)
    void *user;
    const volatile int *cancel;            // optional: set nonzero (from any thread) to stop: while waiting for a
                                           // sequence that is TBC_ERR_CANCELLED, later it ends the text (STOP_CALLBACK)
} tbc_generate_desc;

typedef struct tbc_generate_result {
    int64_t n_prompt, n_generated;
    int64_t n_cached;                      // prompt tokens whose KV cache a previous generation left (not re-read)
    double prefill_seconds, decode_seconds;
    tbc_stop_reason stop_reason;
    tbc_error error;                       // why it failed (tbc_session_last_error is shared by concurrent calls)
} tbc_generate_result;

// Reads the prompt, then samples up to max_tokens tokens, streaming them to on_text. Runs in one of the session's
// n_seq sequences: the free one whose context shares the longest start with the prompt, which is then not read
// again. Up to n_seq calls may run at once from different threads (more wait for a free sequence); their tokens are
// decoded together, one forward pass for all (continuous batching), prompts read in chunks between the others'
// tokens. Don't call tbc_session_eval/decode/rewind on the session while generations run.
TBC_API tbc_result tbc_session_generate(tbc_session *s, const tbc_generate_desc *d, tbc_generate_result *result);
// Sequences generating now (held by tbc_session_generate calls) and calls waiting for one.
TBC_API void tbc_session_generation_load(tbc_session *s, int *busy, int *waiting);

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

#if defined(TBC_STATIC) && defined(__GNUC__)
#define TBC__DEF static __attribute__((unused))
#elif defined(TBC_STATIC)
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

// K-quants: defined in the next section.
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
            // Clamped as a float: converting NaN or a value outside int is undefined (x may hold anything a
            // peer sent). NaN becomes -128, like the SIMD conversions' 0x80000000 saturated.
            float v = tbc__round_even(x[j] * id);
            int q = v >= 127.0f ? 127 : v > -128.0f ? (int)v : -128;
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

// Packed activations: what tbc__v_lda makes of each pair of blocks, made once per activation row instead of once per
// tile of weight rows. 192 bytes per pair: 64 quant bytes (permuted for nibble types), 16 int32 (-off * each lane's
// byte sum; for Q8_1 activations, the 16 floats of the block sums instead), 16 float scales. A last odd block is
// packed with an empty second half, as the tiles read it.
#define TBC__VPACK 192
static TBC__MAYBE_UNUSED size_t tbc__act_packed_bytes(int64_t n) { return (size_t)((n + 63) / 64) * TBC__VPACK; }
static TBC__MAYBE_UNUSED void tbc__pack_act_row(tbc_type t, const float *x, uint8_t *dst, int64_t n) {
    const tbc_type at = TBC__Q81(t) ? TBC_TYPE_Q8_1 : TBC_TYPE_Q8_0;
    uint8_t q[2 * 36];
    for (int64_t i = 0; i < n; i += 64, dst += TBC__VPACK) {
        const int two = n - i >= 64;
        tbc__quantize(at, x + i, q, two ? 64 : 32);
        __m512i a, neg;
        __m512 d, sa = _mm512_setzero_ps();
        tbc__v_lda(t, two, q, &a, &neg, &d, &sa);
        _mm512_storeu_si512((void *)dst, a);
        if (TBC__Q81(t)) _mm512_storeu_ps((void *)(dst + 64), sa);
        else _mm512_storeu_si512((void *)(dst + 64), neg);
        _mm512_storeu_ps((void *)(dst + 128), d);
    }
}
// One pair of blocks of a packed activation row.
static TBC__INLINE void tbc__v_ldp(int t, const uint8_t *p, __m512i *a, __m512i *neg, __m512 *d, __m512 *s) {
    *a = _mm512_loadu_si512((const void *)p);
    *neg = TBC__Q81(t) ? _mm512_setzero_si512() : _mm512_loadu_si512((const void *)(p + 64));
    *s = TBC__Q81(t) ? _mm512_loadu_ps((const void *)(p + 64)) : _mm512_setzero_ps();
    *d = _mm512_loadu_ps((const void *)(p + 128));
}
// acc + the product of a weight row's pair of blocks (u, dw, mw) and an activation row's (a, neg, da, sa).
static TBC__INLINE __m512 tbc__v_madd(int t, __m512i u, __m512 dw, __m512 mw, __m512i a, __m512i neg, __m512 da,
                                      __m512 sa, __m512 acc) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg, u, a)), _mm512_mul_ps(dw, da), acc);
    if (TBC__Q81(t)) acc = _mm512_fmadd_ps(mw, sa, acc);
    return acc;
}
// One pair of blocks of an NR x NC tile; the activations are rows of Q8_0/Q8_1, or packed.
static TBC__INLINE void tbc__v_step(int t, int packed, int NR, int NC, int two, const uint8_t *W, size_t ldw,
                                    const uint8_t *A, size_t lda, __m512 acc[8][4]) {
    __m512i a[4], neg[4];
    __m512 da[4], sa[4];
    TBC__UNROLL for (int c = 0; c < 4; c++) sa[c] = _mm512_setzero_ps();
    TBC__UNROLL for (int c = 0; c < NC; c++) {
        if (packed) tbc__v_ldp(t, A + (size_t)c * lda, &a[c], &neg[c], &da[c], &sa[c]);
        else tbc__v_lda(t, two, A + (size_t)c * lda, &a[c], &neg[c], &da[c], &sa[c]);
    }
    TBC__UNROLL for (int r = 0; r < NR; r++) {
        __m512i u;
        __m512 dw, mw = _mm512_setzero_ps();
        tbc__v_ldw(t, two, W + (size_t)r * ldw, &u, &dw, &mw);
        TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = tbc__v_madd(t, u, dw, mw, a[c], neg[c], da[c], sa[c], acc[r][c]);
    }
}
static TBC__INLINE void tbc__v_qtile(int t, int packed, int NR, int NC, int64_t n, const uint8_t *W, size_t ldw,
                                     const uint8_t *A, size_t lda, float *out, size_t ldo) {
    const int wbs = TBC__WBS(t), abs_ = TBC__Q81(t) ? 36 : 34;
    const int64_t nb = n / 32;
    __m512 acc[8][4];
    TBC__UNROLL for (int r = 0; r < 8; r++) TBC__UNROLL for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
#define TBC__VA(b) (A + (packed ? (size_t)((b) / 2) * TBC__VPACK : (size_t)(b) * abs_))
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) tbc__v_step(t, packed, NR, NC, 1, W + (size_t)b * wbs, ldw, TBC__VA(b), lda, acc);
    if (b < nb) tbc__v_step(t, packed, NR, NC, 0, W + (size_t)b * wbs, ldw, TBC__VA(b), lda, acc);  // half a pair
#undef TBC__VA
    TBC__UNROLL for (int c = 0; c < NC; c++) TBC__UNROLL for (int r = 0; r < NR; r++)
        out[(size_t)c * ldo + (size_t)r] = tbc__hsum16(acc[r][c]);
}
#define TBC__QT_Q4_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_0, 0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q4_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_1, 0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_0, 0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q5_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_1, 0, NR, NC, __VA_ARGS__)
#define TBC__QT_Q8_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q8_0, 0, NR, NC, __VA_ARGS__)
#define TBC__PT_Q4_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_0, 1, NR, NC, __VA_ARGS__)
#define TBC__PT_Q4_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q4_1, 1, NR, NC, __VA_ARGS__)
#define TBC__PT_Q5_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_0, 1, NR, NC, __VA_ARGS__)
#define TBC__PT_Q5_1(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q5_1, 1, NR, NC, __VA_ARGS__)
#define TBC__PT_Q8_0(NR, NC, ...) tbc__v_qtile(TBC_TYPE_Q8_0, 1, NR, NC, __VA_ARGS__)

// Prefill (TBC__VNA or more activation rows): each tile of weight rows is unpacked once per chunk of activation
// rows, TBC__VKB block pairs at a time, and every activation tile of the chunk runs over the unpacked pairs. The
// accumulators wait in memory between pairs, so each output sees the same operations in the same order as in
// tbc__v_qtile: prefill, decode and any batch size give the same bits.
#define TBC__VNA 8
#define TBC__VKB 16
typedef struct tbc__vw {
    __m512i u;
    __m512 d, m;
} tbc__vw;
static TBC__INLINE void tbc__v_pblock(int t, int NR, int NC, const tbc__vw *wb, int64_t np, const uint8_t *A,
                                      size_t lda, __m512 (*accm)[4]) {
    __m512 acc[4][4];
    TBC__UNROLL for (int r = 0; r < NR; r++) TBC__UNROLL for (int c = 0; c < NC; c++) acc[r][c] = accm[r][c];
    for (int64_t p = 0; p < np; p++) {
        __m512i a[4], neg[4];
        __m512 da[4], sa[4];
        TBC__UNROLL for (int c = 0; c < NC; c++)
            tbc__v_ldp(t, A + (size_t)c * lda + (size_t)p * TBC__VPACK, &a[c], &neg[c], &da[c], &sa[c]);
        TBC__UNROLL for (int r = 0; r < NR; r++) {
            const tbc__vw *w = &wb[(size_t)r * TBC__VKB + (size_t)p];
            TBC__UNROLL for (int c = 0; c < NC; c++)
                acc[r][c] = tbc__v_madd(t, w->u, w->d, w->m, a[c], neg[c], da[c], sa[c], acc[r][c]);
        }
    }
    TBC__UNROLL for (int r = 0; r < NR; r++) TBC__UNROLL for (int c = 0; c < NC; c++) accm[r][c] = acc[r][c];
}
static TBC__INLINE void tbc__v_pgemm(int t, int64_t n, int64_t nw, int64_t na, const uint8_t *W, size_t ldw,
                                     const uint8_t *A, size_t lda, float *out, size_t ldo) {
    const int wbs = TBC__WBS(t);
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    tbc__vw wb[4 * TBC__VKB];
    __m512 accs[TBC__ACHUNK / 4][4][4];
    for (int64_t j0 = 0; j0 < na; j0 += TBC__ACHUNK) {
        const int64_t j1 = j0 + TBC__ACHUNK < na ? j0 + TBC__ACHUNK : na;
        const int nt = (int)((j1 - j0 + 3) / 4);
        for (int64_t i = 0; i < nw;) {
            const int rw = nw - i >= 4 ? 4 : 1;
            for (int k = 0; k < nt; k++) TBC__UNROLL for (int r = 0; r < 4; r++) TBC__UNROLL for (int c = 0; c < 4; c++)
                accs[k][r][c] = _mm512_setzero_ps();
            for (int64_t p0 = 0; p0 < np; p0 += TBC__VKB) {
                const int64_t p1 = p0 + TBC__VKB < np ? p0 + TBC__VKB : np;
                for (int r = 0; r < rw; r++)
                    for (int64_t p = p0; p < p1; p++) {
                        tbc__vw *w = &wb[(size_t)r * TBC__VKB + (size_t)(p - p0)];
                        w->m = _mm512_setzero_ps();
                        tbc__v_ldw(t, 2 * p + 1 < nb, W + (size_t)(i + r) * ldw + (size_t)(2 * p) * wbs, &w->u, &w->d, &w->m);
                    }
                for (int k = 0; k < nt; k++) {
                    const int64_t j = j0 + 4 * k;
                    const int nc = j1 - j < 4 ? (int)(j1 - j) : 4;
                    const uint8_t *a = A + (size_t)j * lda + (size_t)p0 * TBC__VPACK;
#define TBC__VPB(NR, NC) tbc__v_pblock(t, NR, NC, wb, p1 - p0, a, lda, accs[k])
                    if (rw == 4) {
                        if (nc == 4) TBC__VPB(4, 4);
                        else if (nc == 3) TBC__VPB(4, 3);
                        else if (nc == 2) TBC__VPB(4, 2);
                        else TBC__VPB(4, 1);
                    } else {
                        if (nc == 4) TBC__VPB(1, 4);
                        else if (nc == 3) TBC__VPB(1, 3);
                        else if (nc == 2) TBC__VPB(1, 2);
                        else TBC__VPB(1, 1);
                    }
#undef TBC__VPB
                }
            }
            for (int k = 0; k < nt; k++) {
                const int64_t j = j0 + 4 * k;
                const int nc = j1 - j < 4 ? (int)(j1 - j) : 4;
                for (int c = 0; c < nc; c++)
                    for (int r = 0; r < rw; r++) out[(size_t)(j + c) * ldo + (size_t)(i + r)] = tbc__hsum16(accs[k][r][c]);
            }
            i += rw;
        }
    }
}

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
#if defined(TBC__PT_Q4_0)
TBC__GEMM_DRIVER(tbc__gemm_q4_0_vpack, TBC__PT_Q4_0)
TBC__GEMM_DRIVER(tbc__gemm_q4_1_vpack, TBC__PT_Q4_1)
TBC__GEMM_DRIVER(tbc__gemm_q5_0_vpack, TBC__PT_Q5_0)
TBC__GEMM_DRIVER(tbc__gemm_q5_1_vpack, TBC__PT_Q5_1)
TBC__GEMM_DRIVER(tbc__gemm_q8_0_vpack, TBC__PT_Q8_0)
#endif

// Packed activations (tbc__pack_act_row, tbc__act_packed_bytes) for the AVX-512 VNNI tiles of the 32-value block
// types: whether weight type t takes them rather than rows of tbc__vec_dot_type(t), and its product with them.
#if defined(TBC__PT_Q4_0)
static TBC__MAYBE_UNUSED int tbc__act_packed(tbc_type t) {
    return t == TBC_TYPE_Q4_0 || t == TBC_TYPE_Q4_1 || t == TBC_TYPE_Q5_0 || t == TBC_TYPE_Q5_1 || t == TBC_TYPE_Q8_0;
}
static TBC__MAYBE_UNUSED int tbc__gemm_packed(tbc_type t, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw,
                                              const void *A, size_t lda, float *out, size_t ldo) {
    switch (t) {
#define TBC__VP(T, FN)                                                                                               \
    case T:                                                                                                        \
        if (na >= TBC__VNA) tbc__v_pgemm(T, n, nw, na, (const uint8_t *)W, ldw, (const uint8_t *)A, lda, out, ldo); \
        else FN(n, nw, na, W, ldw, A, lda, out, ldo);                                                              \
        return 1;
    TBC__VP(TBC_TYPE_Q4_0, tbc__gemm_q4_0_vpack)
    TBC__VP(TBC_TYPE_Q4_1, tbc__gemm_q4_1_vpack)
    TBC__VP(TBC_TYPE_Q5_0, tbc__gemm_q5_0_vpack)
    TBC__VP(TBC_TYPE_Q5_1, tbc__gemm_q5_1_vpack)
    TBC__VP(TBC_TYPE_Q8_0, tbc__gemm_q8_0_vpack)
#undef TBC__VP
    default: return 0;
    }
}
#else  // this build has no packed product: tbc__prepare never packs
static TBC__MAYBE_UNUSED int tbc__act_packed(tbc_type t) { (void)t; return 0; }
static TBC__MAYBE_UNUSED size_t tbc__act_packed_bytes(int64_t n) { (void)n; return 0; }
static TBC__MAYBE_UNUSED void tbc__pack_act_row(tbc_type t, const float *x, uint8_t *dst, int64_t n) {
    (void)t, (void)x, (void)dst, (void)n;
}
static TBC__MAYBE_UNUSED int tbc__gemm_packed(tbc_type t, int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw,
                                              const void *A, size_t lda, float *out, size_t ldo) {
    (void)t, (void)n, (void)nw, (void)na, (void)W, (void)ldw, (void)A, (void)lda, (void)out, (void)ldo;
    return 0;
}
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
        TBC__UNROLL for (int r = 0; r < rw; r++)                                                                       \
            TBC__UNROLL for (int c = 0; c < ra; c++) acc[r][c] = tbc__##PFX##_zero();                                  \
        for (int64_t b = b0; b < b1; b++) {                                                                            \
            const tbc__block_q8_K *a[TBC__K_RA];                                                                       \
            tbc__##PFX##_y y[TBC__K_RA];                                                                               \
            TBC__UNROLL for (int c = 0; c < ra; c++) {                                                                 \
                a[c] = (const tbc__block_q8_K *)(const void *)(A + (size_t)c * lda) + b;                               \
                if (has_min) y[c] = tbc__##PFX##_ymin(a[c]);                                                           \
                else memset(&y[c], 0, sizeof y[c]);                                                                    \
            }                                                                                                          \
            TBC__UNROLL for (int r = 0; r < rw; r++) {                                                                 \
                tbc__##PFX##_w wl;                                                                                     \
                const tbc__##PFX##_w *w = &wl;                                                                         \
                if (wbuf) w = &wbuf[(size_t)r * TBC__K_KB + (size_t)(b - b0)];                                         \
                else unpack(W + (size_t)r * ldw + (size_t)b * bs, &wl);                                                \
                TBC__UNROLL for (int c = 0; c < ra; c++) acc[r][c] = tbc__##PFX##_pair(w, a[c], &y[c], acc[r][c], has_off, has_min); \
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
    TBC__UNROLL for (int c = 1; c < 4; c++)
        s = tbc__k512_dpw(s, _mm512_maddubs_epi16(w->u[c], _mm512_loadu_si512((const void *)(q + 64 * c))), w->s[c]);
    if (has_off)
        s = tbc__k512_dpw(s, _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)a->bsums)), w->o);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(w->d * a->d), acc);
    if (has_min) acc = _mm512_fmadd_ps(w->x, y->v, acc);
    return acc;
}
TBC__K_DRIVER(k512)
// ---- AVX-512 matrix-vector products (decode) for Q4_K and Q6_K. Decoding streams every weight from DRAM once, so
// these keep the per-block work small (scales expanded with one shuffle per 64 values, no stack round trips, one
// horizontal sum per row), share each activation block across 4 weight rows and prefetch the rows ahead.
#ifndef TBC__K_PF_BLOCKS
#define TBC__K_PF_BLOCKS 6  // prefetch distance in blocks per row
#endif
TBC__K_INLINE void tbc__k512_prefetch_blk(const uint8_t *p, size_t bs) {
    for (size_t o = 0; o < bs; o += 64) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
}
// Activation block: the 256 values in 4 chunks, bsums, da and (Q4_K) the float bsums*da of the min term.
typedef struct tbc__k512_mva { __m512i v[4]; __m256i bs; __m512 m; float d; } tbc__k512_mva;
TBC__K_INLINE void tbc__k512_mva_q6_K(const tbc__block_q8_K *a, tbc__k512_mva *y) {
    for (int c = 0; c < 4; c++) y->v[c] = _mm512_loadu_si512((const void *)(a->qs + 64 * c));
    y->bs = _mm256_loadu_si256((const __m256i *)(const void *)a->bsums);
    y->d = a->d;
    y->m = _mm512_setzero_ps();
}
TBC__K_INLINE void tbc__k512_mva_q4_K(const tbc__block_q8_K *a, tbc__k512_mva *y) {
    tbc__k512_mva_q6_K(a, y);
    y->m = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(y->bs)), _mm512_set1_ps(a->d));
}
// pshufb controls (per 128-bit lane) on the 16 bytes of tbc__k_scales_q45_sse (8 scales, 8 mins) broadcast to 512
// bits: chunk c's scales as int16 (sub-block 2c for its first 32 values, 2c+1 for the rest); the mins as int32, each
// repeated for the two 16-value halves of its sub-block.
#define TBC__K_W16(k) (k), -128, (k), -128, (k), -128, (k), -128, (k), -128, (k), -128, (k), -128, (k), -128
#define TBC__K_W32(k) (k), -128, -128, -128, (k), -128, -128, -128, (k) + 1, -128, -128, -128, (k) + 1, -128, -128, -128
static const int8_t tbc__k_q4_sctl[5][64] TBC__K_ALIGN64 = {
    {TBC__K_W16(0), TBC__K_W16(0), TBC__K_W16(1), TBC__K_W16(1)}, {TBC__K_W16(2), TBC__K_W16(2), TBC__K_W16(3), TBC__K_W16(3)},
    {TBC__K_W16(4), TBC__K_W16(4), TBC__K_W16(5), TBC__K_W16(5)}, {TBC__K_W16(6), TBC__K_W16(6), TBC__K_W16(7), TBC__K_W16(7)},
    {TBC__K_W32(8), TBC__K_W32(10), TBC__K_W32(12), TBC__K_W32(14)}};
#undef TBC__K_W16
#undef TBC__K_W32
// One Q4_K block of one row against y: acc += d*da*sum_k s_k*(u.a)_k - dmin*m_k*(da*bsum_k), in the same lanes and
// order as tbc__k512_pair so decode and prefill round alike.
TBC__K_INLINE void tbc__k512_mv_q4_K_blk(const uint8_t *b, const tbc__k512_mva *y, __m512 *acc) {
    const tbc__block_q4_K *x = (const tbc__block_q4_K *)(const void *)b;
    const __m512i m4 = _mm512_set1_epi8(15), sh = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    __m512i sc = _mm512_broadcast_i32x4(tbc__k_scales_q45_sse(x->scales));
    __m512i s = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {  // chunk c: low nibbles of qs[32c..] then their high nibbles
        __m512i u = _mm512_and_si512(_mm512_srlv_epi64(tbc__k512_bcast256(x->qs + 32 * c), sh), m4);
        __m512i p = _mm512_maddubs_epi16(u, y->v[c]), k = _mm512_shuffle_epi8(sc, _mm512_load_si512((const void *)tbc__k_q4_sctl[c]));
        s = c == 0 ? _mm512_madd_epi16(p, k) : tbc__k512_dpw(s, p, k);
    }
    __m512 mn = _mm512_cvtepi32_ps(_mm512_shuffle_epi8(sc, _mm512_load_si512((const void *)tbc__k_q4_sctl[4])));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(tbc__k_h2f(x->d) * y->d), *acc);
    *acc = _mm512_fmadd_ps(_mm512_mul_ps(mn, _mm512_set1_ps(-tbc__k_h2f(x->dmin))), y->m, *acc);
}
// One Q6_K block: u in 0..63 with offset 32 folded in through the bsums.
TBC__K_INLINE void tbc__k512_mv_q6_K_blk(const uint8_t *b, const tbc__k512_mva *y, __m512 *acc) {
    const tbc__block_q6_K *x = (const tbc__block_q6_K *)(const void *)b;
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)x->scales));
    __m512i sz = _mm512_zextsi256_si512(s16);
    __m512i u[4];
    for (int nn = 0; nn < 2; nn++) {
        __m512i ql = _mm512_loadu_si512((const void *)(x->ql + 64 * nn));
        __m512i qh = tbc__k512_bcast256(x->qh + 32 * nn);
        __m512i h0 = _mm512_and_si512(_mm512_sllv_epi16(qh, tbc__k512_pair16(4, 2)), m30);
        __m512i h1 = _mm512_and_si512(_mm512_srlv_epi16(qh, tbc__k512_pair16(0, 2)), m30);
        u[2 * nn] = _mm512_or_si512(_mm512_and_si512(ql, m4), h0);
        u[2 * nn + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), h1);
    }
    // the offset -32 * sum_k s_k * bsum_k is exact in int32, so it goes into the integer sum
    __m512i s = _mm512_madd_epi16(_mm512_zextsi256_si512(y->bs), _mm512_zextsi256_si512(_mm256_slli_epi16(s16, 5)));
    s = _mm512_sub_epi32(_mm512_setzero_si512(), s);
    for (int c = 0; c < 4; c++)
        s = tbc__k512_dpw(s, _mm512_maddubs_epi16(u[c], y->v[c]),
                          _mm512_permutexvar_epi16(_mm512_loadu_si512(tbc__k_idx16[c]), sz));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(tbc__k_h2f(x->d) * y->d), *acc);
}
// out[i] = row i of W . a for i < nw; 4 rows per pass, rows of the next pass prefetched as a row ends.
#define TBC__K512_MV(T, BS)                                                                                            \
    TBC__K_FN void tbc__k512_mv_##T(int64_t nb, int64_t nw, const uint8_t *W, size_t ldw, const uint8_t *A,            \
                                    float *out) {                                                                      \
        const tbc__block_q8_K *a = (const tbc__block_q8_K *)(const void *)A;                                           \
        int64_t i = 0;                                                                                                 \
        for (; i + 4 <= nw; i += 4) {                                                                                  \
            const uint8_t *w = W + (size_t)i * ldw;                                                                    \
            __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;                                  \
            const int more = i + 8 <= nw;                                                                              \
            for (int64_t b = 0; b < nb; b++) {                                                                         \
                const int64_t pb = b + TBC__K_PF_BLOCKS;                                                               \
                if (pb < nb || more) {                                                                                 \
                    const uint8_t *p = pb < nb ? w + (size_t)pb * BS : w + 4 * ldw + (size_t)(pb - nb) * BS;           \
                    for (int r = 0; r < 4; r++) tbc__k512_prefetch_blk(p + (size_t)r * ldw, BS);                       \
                }                                                                                                      \
                tbc__k512_mva y;                                                                                       \
                tbc__k512_mva_##T(a + b, &y);                                                                          \
                const uint8_t *wb = w + (size_t)b * BS;                                                                \
                tbc__k512_mv_##T##_blk(wb, &y, &acc0);                                                                 \
                tbc__k512_mv_##T##_blk(wb + ldw, &y, &acc1);                                                           \
                tbc__k512_mv_##T##_blk(wb + 2 * ldw, &y, &acc2);                                                       \
                tbc__k512_mv_##T##_blk(wb + 3 * ldw, &y, &acc3);                                                       \
            }                                                                                                          \
            out[i] = _mm512_reduce_add_ps(acc0);                                                                       \
            out[i + 1] = _mm512_reduce_add_ps(acc1);                                                                   \
            out[i + 2] = _mm512_reduce_add_ps(acc2);                                                                   \
            out[i + 3] = _mm512_reduce_add_ps(acc3);                                                                   \
        }                                                                                                              \
        for (; i < nw; i++) {                                                                                          \
            const uint8_t *w = W + (size_t)i * ldw;                                                                    \
            __m512 acc = _mm512_setzero_ps();                                                                          \
            for (int64_t b = 0; b < nb; b++) {                                                                         \
                tbc__k512_mva y;                                                                                       \
                tbc__k512_mva_##T(a + b, &y);                                                                          \
                tbc__k512_mv_##T##_blk(w + (size_t)b * BS, &y, &acc);                                                  \
            }                                                                                                          \
            out[i] = _mm512_reduce_add_ps(acc);                                                                        \
        }                                                                                                              \
    }
TBC__K512_MV(q4_K, 144)
TBC__K512_MV(q6_K, 210)
#undef TBC__K512_MV
#define TBC__K512_DEF(T, BS, OFF, MIN)                                                                                 \
    TBC__K_FN void tbc__gemm_##T##_avx512(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,  \
                                       size_t lda, float *out, size_t ldo) {                                           \
        tbc__k512_gemm(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__k512_unpack_##T, OFF, MIN);                       \
    }
TBC__K512_DEF(q2_K, 84, 0, 1)
TBC__K512_DEF(q3_K, 110, 1, 0)
#define TBC__K512_DEF_MV(T, BS, OFF, MIN)                                                                              \
    TBC__K_FN void tbc__gemm_##T##_avx512(int64_t n, int64_t nw, int64_t na, const void *W, size_t ldw, const void *A,  \
                                       size_t lda, float *out, size_t ldo) {                                           \
        if (na >= TBC__K_PREFILL_NA) {                                                                                 \
            tbc__k512_gemm(n, nw, na, W, ldw, A, lda, out, ldo, BS, tbc__k512_unpack_##T, OFF, MIN);                   \
            return;                                                                                                    \
        }                                                                                                              \
        for (int64_t j = 0; j < na; j++)                                                                               \
            tbc__k512_mv_##T(n / TBC__QK_K, nw, (const uint8_t *)W, ldw, (const uint8_t *)A + (size_t)j * lda,         \
                             out + (size_t)j * ldo);                                                                   \
    }
TBC__K512_DEF_MV(q4_K, 144, 0, 1)
TBC__K512_DEF(q5_K, 176, 0, 1)
TBC__K512_DEF_MV(q6_K, 210, 1, 0)
#undef TBC__K512_DEF_MV
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
    TBC__UNROLL for (int c = 2; c < 8; c += 2) {
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
    TBC__UNROLL for (int g = 0; g < 4; g++) {
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

// Waits on cv (mu held) until it is signalled or seconds pass.
static void tbc__cond_wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);  // (the clock pthread_cond_timedwait uses by default)
    long ns = ts.tv_nsec + (long)((seconds - (double)(time_t)seconds) * 1e9);
    ts.tv_sec += (time_t)seconds + ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(cv, mu, &ts);
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

// >>tokenizer: unicode tables
// Unicode classes for the tokenizer: GENERATED by tools/gen_unicode.py from UnicodeData.txt and PropList.txt
// (Unicode 15.0.0, Debian package unicode-data). Do not edit; re-run the script instead.
// Categories follow llama.cpp's unicode.cpp: \p{L} = LETTER, \p{N} = NUMBER, \s = White_Space.
#define TBC__UCAT_UNDEFINED 0
#define TBC__UCAT_NUMBER 1
#define TBC__UCAT_LETTER 2
#define TBC__UCAT_SEPARATOR 3
#define TBC__UCAT_MARK 4
#define TBC__UCAT_PUNCTUATION 5
#define TBC__UCAT_SYMBOL 6
#define TBC__UCAT_CONTROL 7
#define TBC__UCAT_WHITESPACE 8  // flag added to the category

// ASCII: category | TBC__UCAT_WHITESPACE.
static const uint8_t tbc__ucat_ascii[128] = {
    7,7,7,7,7,7,7,7,7,15,15,15,15,15,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,
    11,5,5,5,6,5,5,5,5,5,5,6,5,5,5,5,1,1,1,1,1,1,1,1,1,1,5,5,6,6,6,5,
    5,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,5,5,5,6,5,
    6,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,5,6,5,6,7,
};

// Runs (first_code_point << 3) | category, sorted; each lasts until the next one starts.
#define TBC__UCAT_RUNS 2270
static const uint32_t tbc__ucat_runs[TBC__UCAT_RUNS] = {
    0x0000007,0x0000103,0x000010d,0x0000126,0x000012d,0x000015e,0x0000165,0x0000181,0x00001d5,0x00001e6,
    0x00001fd,0x000020a,0x00002dd,0x00002f6,0x00002fd,0x0000306,0x000030a,0x00003dd,0x00003e6,0x00003ed,
    0x00003f6,0x00003ff,0x0000503,0x000050d,0x0000516,0x000053d,0x0000546,0x0000552,0x000055d,0x0000566,
    0x000056f,0x0000576,0x0000591,0x00005a6,0x00005aa,0x00005b5,0x00005c6,0x00005c9,0x00005d2,0x00005dd,
    0x00005e1,0x00005fd,0x0000602,0x00006be,0x00006c2,0x00007be,0x00007c2,0x0001616,0x0001632,0x0001696,
    0x0001702,0x000172e,0x0001762,0x000176e,0x0001772,0x000177e,0x0001804,0x0001b82,0x0001bae,0x0001bb2,
    0x0001bc0,0x0001bd2,0x0001bf5,0x0001bfa,0x0001c00,0x0001c26,0x0001c32,0x0001c3d,0x0001c42,0x0001c58,
    0x0001c62,0x0001c68,0x0001c72,0x0001d10,0x0001d1a,0x0001fb6,0x0001fba,0x0002416,0x000241c,0x0002452,
    0x0002980,0x000298a,0x0002ab8,0x0002aca,0x0002ad5,0x0002b02,0x0002c4d,0x0002c58,0x0002c6e,0x0002c80,
    0x0002c8c,0x0002df5,0x0002dfc,0x0002e05,0x0002e0c,0x0002e1d,0x0002e24,0x0002e35,0x0002e3c,0x0002e40,
    0x0002e82,0x0002f58,0x0002f7a,0x0002f9d,0x0002fa8,0x0003007,0x0003036,0x000304d,0x000305e,0x0003065,
    0x0003076,0x0003084,0x00030dd,0x00030e7,0x00030ed,0x0003102,0x000325c,0x0003301,0x0003355,0x0003372,
    0x0003384,0x000338a,0x00036a5,0x00036aa,0x00036b4,0x00036ef,0x00036f6,0x00036fc,0x000372a,0x000373c,
    0x000374e,0x0003754,0x0003772,0x0003781,0x00037d2,0x00037ee,0x00037fa,0x0003805,0x0003870,0x000387f,
    0x0003882,0x000388c,0x0003892,0x0003984,0x0003a58,0x0003a6a,0x0003d34,0x0003d8a,0x0003d90,0x0003e01,
    0x0003e52,0x0003f5c,0x0003fa2,0x0003fb6,0x0003fbd,0x0003fd2,0x0003fd8,0x0003fec,0x0003ff6,0x0004002,
    0x00040b4,0x00040d2,0x00040dc,0x0004122,0x000412c,0x0004142,0x000414c,0x0004170,0x0004185,0x00041f8,
    0x0004202,0x00042cc,0x00042e0,0x00042f5,0x00042f8,0x0004302,0x0004358,0x0004382,0x0004446,0x000444a,
    0x0004478,0x0004487,0x0004490,0x00044c4,0x0004502,0x0004654,0x0004717,0x000471c,0x0004822,0x00049d4,
    0x00049ea,0x00049f4,0x0004a82,0x0004a8c,0x0004ac2,0x0004b14,0x0004b25,0x0004b31,0x0004b85,0x0004b8a,
    0x0004c0c,0x0004c20,0x0004c2a,0x0004c68,0x0004c7a,0x0004c88,0x0004c9a,0x0004d48,0x0004d52,0x0004d88,
    0x0004d92,0x0004d98,0x0004db2,0x0004dd0,0x0004de4,0x0004dea,0x0004df4,0x0004e28,0x0004e3c,0x0004e48,
    0x0004e5c,0x0004e72,0x0004e78,0x0004ebc,0x0004ec0,0x0004ee2,0x0004ef0,0x0004efa,0x0004f14,0x0004f20,
    0x0004f31,0x0004f82,0x0004f96,0x0004fa1,0x0004fd6,0x0004fe2,0x0004fed,0x0004ff4,0x0004ff8,0x000500c,
    0x0005020,0x000502a,0x0005058,0x000507a,0x0005088,0x000509a,0x0005148,0x0005152,0x0005188,0x0005192,
    0x00051a0,0x00051aa,0x00051b8,0x00051c2,0x00051d0,0x00051e4,0x00051e8,0x00051f4,0x0005218,0x000523c,
    0x0005248,0x000525c,0x0005270,0x000528c,0x0005290,0x00052ca,0x00052e8,0x00052f2,0x00052f8,0x0005331,
    0x0005384,0x0005392,0x00053ac,0x00053b5,0x00053b8,0x000540c,0x0005420,0x000542a,0x0005470,0x000547a,
    0x0005490,0x000549a,0x0005548,0x0005552,0x0005588,0x0005592,0x00055a0,0x00055aa,0x00055d0,0x00055e4,
    0x00055ea,0x00055f4,0x0005630,0x000563c,0x0005650,0x000565c,0x0005670,0x0005682,0x0005688,0x0005702,
    0x0005714,0x0005720,0x0005731,0x0005785,0x000578e,0x0005790,0x00057ca,0x00057d4,0x0005800,0x000580c,
    0x0005820,0x000582a,0x0005868,0x000587a,0x0005888,0x000589a,0x0005948,0x0005952,0x0005988,0x0005992,
    0x00059a0,0x00059aa,0x00059d0,0x00059e4,0x00059ea,0x00059f4,0x0005a28,0x0005a3c,0x0005a48,0x0005a5c,
    0x0005a70,0x0005aac,0x0005ac0,0x0005ae2,0x0005af0,0x0005afa,0x0005b14,0x0005b20,0x0005b31,0x0005b86,
    0x0005b8a,0x0005b91,0x0005bc0,0x0005c14,0x0005c1a,0x0005c20,0x0005c2a,0x0005c58,0x0005c72,0x0005c88,
    0x0005c92,0x0005cb0,0x0005cca,0x0005cd8,0x0005ce2,0x0005ce8,0x0005cf2,0x0005d00,0x0005d1a,0x0005d28,
    0x0005d42,0x0005d58,0x0005d72,0x0005dd0,0x0005df4,0x0005e18,0x0005e34,0x0005e48,0x0005e54,0x0005e70,
    0x0005e82,0x0005e88,0x0005ebc,0x0005ec0,0x0005f31,0x0005f9e,0x0005fd8,0x0006004,0x000602a,0x0006068,
    0x0006072,0x0006088,0x0006092,0x0006148,0x0006152,0x00061d0,0x00061e4,0x00061ea,0x00061f4,0x0006228,
    0x0006234,0x0006248,0x0006254,0x0006270,0x00062ac,0x00062b8,0x00062c2,0x00062d8,0x00062ea,0x00062f0,
    0x0006302,0x0006314,0x0006320,0x0006331,0x0006380,0x00063bd,0x00063c1,0x00063fe,0x0006402,0x000640c,
    0x0006425,0x000642a,0x0006468,0x0006472,0x0006488,0x0006492,0x0006548,0x0006552,0x00065a0,0x00065aa,
    0x00065d0,0x00065e4,0x00065ea,0x00065f4,0x0006628,0x0006634,0x0006648,0x0006654,0x0006670,0x00066ac,
    0x00066b8,0x00066ea,0x00066f8,0x0006702,0x0006714,0x0006720,0x0006731,0x0006780,0x000678a,0x000679c,
    0x00067a0,0x0006804,0x0006822,0x0006868,0x0006872,0x0006888,0x0006892,0x00069dc,0x00069ea,0x00069f4,
    0x0006a28,0x0006a34,0x0006a48,0x0006a54,0x0006a72,0x0006a7e,0x0006a80,0x0006aa2,0x0006abc,0x0006ac1,
    0x0006afa,0x0006b14,0x0006b20,0x0006b31,0x0006bce,0x0006bd2,0x0006c00,0x0006c0c,0x0006c20,0x0006c2a,
    0x0006cb8,0x0006cd2,0x0006d90,0x0006d9a,0x0006de0,0x0006dea,0x0006df0,0x0006e02,0x0006e38,0x0006e54,
    0x0006e58,0x0006e7c,0x0006ea8,0x0006eb4,0x0006eb8,0x0006ec4,0x0006f00,0x0006f31,0x0006f80,0x0006f94,
    0x0006fa5,0x0006fa8,0x000700a,0x000718c,0x0007192,0x00071a4,0x00071d8,0x00071fe,0x0007202,0x000723c,
    0x000727d,0x0007281,0x00072d5,0x00072e0,0x000740a,0x0007418,0x0007422,0x0007428,0x0007432,0x0007458,
    0x0007462,0x0007520,0x000752a,0x0007530,0x000753a,0x000758c,0x0007592,0x00075a4,0x00075ea,0x00075f0,
    0x0007602,0x0007628,0x0007632,0x0007638,0x0007644,0x0007678,0x0007681,0x00076d0,0x00076e2,0x0007700,
    0x0007802,0x000780e,0x0007825,0x000789e,0x00078a5,0x00078ae,0x00078c4,0x00078d6,0x0007901,0x00079a6,
    0x00079ac,0x00079b6,0x00079bc,0x00079c6,0x00079cc,0x00079d5,0x00079f4,0x0007a02,0x0007a40,0x0007a4a,
    0x0007b68,0x0007b8c,0x0007c2d,0x0007c34,0x0007c42,0x0007c6c,0x0007cc0,0x0007ccc,0x0007de8,0x0007df6,
    0x0007e34,0x0007e3e,0x0007e68,0x0007e76,0x0007e85,0x0007eae,0x0007ecd,0x0007ed8,0x0008002,0x000815c,
    0x00081fa,0x0008201,0x0008255,0x0008282,0x00082b4,0x00082d2,0x00082f4,0x000830a,0x0008314,0x000832a,
    0x000833c,0x0008372,0x000838c,0x00083aa,0x0008414,0x0008472,0x000847c,0x0008481,0x00084d4,0x00084f6,
    0x0008502,0x0008630,0x000863a,0x0008640,0x000866a,0x0008670,0x0008682,0x00087dd,0x00087e2,0x0009248,
    0x0009252,0x0009270,0x0009282,0x00092b8,0x00092c2,0x00092c8,0x00092d2,0x00092f0,0x0009302,0x0009448,
    0x0009452,0x0009470,0x0009482,0x0009588,0x0009592,0x00095b0,0x00095c2,0x00095f8,0x0009602,0x0009608,
    0x0009612,0x0009630,0x0009642,0x00096b8,0x00096c2,0x0009888,0x0009892,0x00098b0,0x00098c2,0x0009ad8,
    0x0009aec,0x0009b05,0x0009b49,0x0009be8,0x0009c02,0x0009c86,0x0009cd0,0x0009d02,0x0009fb0,0x0009fc2,
    0x0009ff0,0x000a005,0x000a00a,0x000b36e,0x000b375,0x000b37a,0x000b403,0x000b40a,0x000b4dd,0x000b4e8,
    0x000b502,0x000b75d,0x000b771,0x000b78a,0x000b7c8,0x000b802,0x000b894,0x000b8b0,0x000b8fa,0x000b994,
    0x000b9ad,0x000b9b8,0x000ba02,0x000ba94,0x000baa0,0x000bb02,0x000bb68,0x000bb72,0x000bb88,0x000bb94,
    0x000bba0,0x000bc02,0x000bda4,0x000bea5,0x000beba,0x000bec5,0x000bede,0x000bee2,0x000beec,0x000bef0,
    0x000bf01,0x000bf50,0x000bf81,0x000bfd0,0x000c005,0x000c05c,0x000c077,0x000c07c,0x000c081,0x000c0d0,
    0x000c102,0x000c3c8,0x000c402,0x000c42c,0x000c43a,0x000c54c,0x000c552,0x000c558,0x000c582,0x000c7b0,
    0x000c802,0x000c8f8,0x000c904,0x000c960,0x000c984,0x000c9e0,0x000ca06,0x000ca08,0x000ca25,0x000ca31,
    0x000ca82,0x000cb70,0x000cb82,0x000cba8,0x000cc02,0x000cd60,0x000cd82,0x000ce50,0x000ce81,0x000ced8,
    0x000cef6,0x000d002,0x000d0bc,0x000d0e0,0x000d0f5,0x000d102,0x000d2ac,0x000d2f8,0x000d304,0x000d3e8,
    0x000d3fc,0x000d401,0x000d450,0x000d481,0x000d4d0,0x000d505,0x000d53a,0x000d545,0x000d570,0x000d584,
    0x000d678,0x000d804,0x000d82a,0x000d9a4,0x000da2a,0x000da68,0x000da81,0x000dad5,0x000db0e,0x000db5c,
    0x000dba6,0x000dbed,0x000dbf8,0x000dc04,0x000dc1a,0x000dd0c,0x000dd72,0x000dd81,0x000ddd2,0x000df34,
    0x000dfa0,0x000dfe5,0x000e002,0x000e124,0x000e1c0,0x000e1dd,0x000e201,0x000e250,0x000e26a,0x000e281,
    0x000e2d2,0x000e3f5,0x000e402,0x000e448,0x000e482,0x000e5d8,0x000e5ea,0x000e605,0x000e640,0x000e684,
    0x000e69d,0x000e6a4,0x000e74a,0x000e76c,0x000e772,0x000e7a4,0x000e7aa,0x000e7bc,0x000e7d2,0x000e7d8,
    0x000e802,0x000ee04,0x000f002,0x000f8b0,0x000f8c2,0x000f8f0,0x000f902,0x000fa30,0x000fa42,0x000fa70,
    0x000fa82,0x000fac0,0x000faca,0x000fad0,0x000fada,0x000fae0,0x000faea,0x000faf0,0x000fafa,0x000fbf0,
    0x000fc02,0x000fda8,0x000fdb2,0x000fdee,0x000fdf2,0x000fdfe,0x000fe12,0x000fe28,0x000fe32,0x000fe6e,
    0x000fe82,0x000fea0,0x000feb2,0x000fee0,0x000feee,0x000ff02,0x000ff6e,0x000ff80,0x000ff92,0x000ffa8,
    0x000ffb2,0x000ffee,0x000fff8,0x0010003,0x001005f,0x0010085,0x0010143,0x0010157,0x001017b,0x0010185,
    0x0010226,0x001022d,0x0010296,0x001029d,0x00102fb,0x0010307,0x0010328,0x0010337,0x0010381,0x001038a,
    0x0010390,0x00103a1,0x00103d6,0x00103ed,0x00103fa,0x0010401,0x0010456,0x001046d,0x0010478,0x0010482,
    0x00104e8,0x0010506,0x0010608,0x0010684,0x0010788,0x0010806,0x0010812,0x001081e,0x001083a,0x0010846,
    0x0010852,0x00108a6,0x00108aa,0x00108b6,0x00108ca,0x00108f6,0x0010922,0x001092e,0x0010932,0x001093e,
    0x0010942,0x001094e,0x0010952,0x0010976,0x001097a,0x00109d6,0x00109e2,0x0010a06,0x0010a2a,0x0010a56,
    0x0010a72,0x0010a7e,0x0010a81,0x0010c1a,0x0010c29,0x0010c56,0x0010c60,0x0010c86,0x0011845,0x0011866,
    0x001194d,0x001195e,0x0012138,0x0012206,0x0012258,0x0012301,0x00124e6,0x0012751,0x0012806,0x0013b45,
    0x0013bb1,0x0013ca6,0x0013e2d,0x0013e3e,0x0013f35,0x0013f86,0x0014c1d,0x0014cce,0x0014ec5,0x0014ee6,
    0x0014fe5,0x0014ff6,0x0015ba0,0x0015bb6,0x0015cb0,0x0015cbe,0x0016002,0x001672e,0x001675a,0x001677c,
    0x0016792,0x00167a0,0x00167cd,0x00167e9,0x00167f5,0x0016802,0x0016930,0x001693a,0x0016940,0x001696a,
    0x0016970,0x0016982,0x0016b40,0x0016b7a,0x0016b85,0x0016b88,0x0016bfc,0x0016c02,0x0016cb8,0x0016d02,
    0x0016d38,0x0016d42,0x0016d78,0x0016d82,0x0016db8,0x0016dc2,0x0016df8,0x0016e02,0x0016e38,0x0016e42,
    0x0016e78,0x0016e82,0x0016eb8,0x0016ec2,0x0016ef8,0x0016f04,0x0017005,0x001717a,0x0017185,0x0017286,
    0x0017295,0x00172f0,0x0017406,0x00174d0,0x00174de,0x00177a0,0x0017806,0x0017eb0,0x0017f86,0x0017fe0,
    0x0018003,0x001800d,0x0018026,0x001802a,0x0018039,0x0018045,0x0018096,0x00180a5,0x0018106,0x0018109,
    0x0018154,0x0018185,0x001818a,0x00181b6,0x00181c1,0x00181da,0x00181ed,0x00181f6,0x0018200,0x001820a,
    0x00184b8,0x00184cc,0x00184de,0x00184ea,0x0018505,0x001850a,0x00187dd,0x00187e2,0x0018800,0x001882a,
    0x0018980,0x001898a,0x0018c78,0x0018c86,0x0018c91,0x0018cb6,0x0018d02,0x0018e06,0x0018f20,0x0018f82,
    0x0019006,0x00190f8,0x0019101,0x0019156,0x0019241,0x0019286,0x0019289,0x0019306,0x0019401,0x0019456,
    0x0019589,0x0019606,0x001a002,0x0026e06,0x0027002,0x0052468,0x0052486,0x0052638,0x0052682,0x00527f5,
    0x0052802,0x005306d,0x0053082,0x0053101,0x0053152,0x0053160,0x0053202,0x005337c,0x005339d,0x00533a4,
    0x00533f5,0x00533fa,0x00534f4,0x0053502,0x0053731,0x0053784,0x0053795,0x00537c0,0x0053806,0x00538ba,
    0x0053906,0x0053912,0x0053c4e,0x0053c5a,0x0053e58,0x0053e82,0x0053e90,0x0053e9a,0x0053ea0,0x0053eaa,
    0x0053ed0,0x0053f92,0x0054014,0x005401a,0x0054034,0x005403a,0x005405c,0x0054062,0x005411c,0x0054146,
    0x0054164,0x0054168,0x0054181,0x00541b6,0x00541d0,0x0054202,0x00543a5,0x00543c0,0x0054404,0x0054412,
    0x00545a4,0x0054630,0x0054675,0x0054681,0x00546d0,0x0054704,0x0054792,0x00547c5,0x00547da,0x00547e5,
    0x00547ea,0x00547fc,0x0054801,0x0054852,0x0054934,0x0054975,0x0054982,0x0054a3c,0x0054aa0,0x0054afd,
    0x0054b02,0x0054be8,0x0054c04,0x0054c22,0x0054d9c,0x0054e0d,0x0054e70,0x0054e7a,0x0054e81,0x0054ed0,
    0x0054ef5,0x0054f02,0x0054f2c,0x0054f32,0x0054f81,0x0054fd2,0x0054ff8,0x0055002,0x005514c,0x00551b8,
    0x0055202,0x005521c,0x0055222,0x0055264,0x0055270,0x0055281,0x00552d0,0x00552e5,0x0055302,0x00553be,
    0x00553d2,0x00553dc,0x00553f2,0x0055584,0x005558a,0x0055594,0x00555aa,0x00555bc,0x00555ca,0x00555f4,
    0x0055602,0x005560c,0x0055612,0x0055618,0x00556da,0x00556f5,0x0055702,0x005575c,0x0055785,0x0055792,
    0x00557ac,0x00557b8,0x005580a,0x0055838,0x005584a,0x0055878,0x005588a,0x00558b8,0x0055902,0x0055938,
    0x0055942,0x0055978,0x0055982,0x0055ade,0x0055ae2,0x0055b56,0x0055b60,0x0055b82,0x0055f1c,0x0055f5d,
    0x0055f64,0x0055f70,0x0055f81,0x0055fd0,0x0056002,0x006bd20,0x006bd82,0x006be38,0x006be5a,0x006bfe0,
    0x006c007,0x007c802,0x007d370,0x007d382,0x007d6d0,0x007d802,0x007d838,0x007d89a,0x007d8c0,0x007d8ea,
    0x007d8f4,0x007d8fa,0x007d94e,0x007d952,0x007d9b8,0x007d9c2,0x007d9e8,0x007d9f2,0x007d9f8,0x007da02,
    0x007da10,0x007da1a,0x007da28,0x007da32,0x007dd96,0x007de18,0x007de9a,0x007e9f5,0x007ea06,0x007ea82,
    0x007ec80,0x007ec92,0x007ee40,0x007ee7e,0x007ee80,0x007ef82,0x007efe6,0x007f004,0x007f085,0x007f0d0,
    0x007f104,0x007f185,0x007f298,0x007f2a5,0x007f316,0x007f31d,0x007f326,0x007f338,0x007f345,0x007f34e,
    0x007f355,0x007f360,0x007f382,0x007f3a8,0x007f3b2,0x007f7e8,0x007f7ff,0x007f800,0x007f80d,0x007f826,
    0x007f82d,0x007f85e,0x007f865,0x007f881,0x007f8d5,0x007f8e6,0x007f8fd,0x007f90a,0x007f9dd,0x007f9f6,
    0x007f9fd,0x007fa06,0x007fa0a,0x007fadd,0x007fae6,0x007faed,0x007faf6,0x007fafd,0x007fb32,0x007fdf8,
    0x007fe12,0x007fe40,0x007fe52,0x007fe80,0x007fe92,0x007fec0,0x007fed2,0x007fee8,0x007ff06,0x007ff38,
    0x007ff46,0x007ff78,0x007ffcf,0x007ffe6,0x007fff0,0x0080002,0x0080060,0x008006a,0x0080138,0x0080142,
    0x00801d8,0x00801e2,0x00801f0,0x00801fa,0x0080270,0x0080282,0x00802f0,0x0080402,0x00807d8,0x0080805,
    0x0080818,0x0080839,0x00809a0,0x00809be,0x0080a01,0x0080bce,0x0080c51,0x0080c66,0x0080c78,0x0080c86,
    0x0080ce8,0x0080d06,0x0080d08,0x0080e86,0x0080fec,0x0080ff0,0x0081402,0x00814e8,0x0081502,0x0081688,
    0x0081704,0x0081709,0x00817e0,0x0081802,0x0081901,0x0081920,0x008196a,0x0081a09,0x0081a12,0x0081a51,
    0x0081a58,0x0081a82,0x0081bb4,0x0081bd8,0x0081c02,0x0081cf0,0x0081cfd,0x0081d02,0x0081e20,0x0081e42,
    0x0081e85,0x0081e89,0x0081eb0,0x0082002,0x00824f0,0x0082501,0x0082550,0x0082582,0x00826a0,0x00826c2,
    0x00827e0,0x0082802,0x0082940,0x0082982,0x0082b20,0x0082b7d,0x0082b82,0x0082bd8,0x0082be2,0x0082c58,
    0x0082c62,0x0082c98,0x0082ca2,0x0082cb0,0x0082cba,0x0082d10,0x0082d1a,0x0082d90,0x0082d9a,0x0082dd0,
    0x0082dda,0x0082de8,0x0083002,0x00839b8,0x0083a02,0x0083ab0,0x0083b02,0x0083b40,0x0083c02,0x0083c30,
    0x0083c3a,0x0083d88,0x0083d92,0x0083dd8,0x0084002,0x0084030,0x0084042,0x0084048,0x0084052,0x00841b0,
    0x00841ba,0x00841c8,0x00841e2,0x00841e8,0x00841fa,0x00842b0,0x00842bd,0x00842c1,0x0084302,0x00843be,
    0x00843c9,0x0084402,0x00844f8,0x0084539,0x0084580,0x0084702,0x0084798,0x00847a2,0x00847b0,0x00847d9,
    0x0084802,0x00848b1,0x00848e0,0x00848fd,0x0084902,0x00849d0,0x00849fd,0x0084a00,0x0084c02,0x0084dc0,
    0x0084de1,0x0084df2,0x0084e01,0x0084e80,0x0084e91,0x0085002,0x008500c,0x0085020,0x008502c,0x0085038,
    0x0085064,0x0085082,0x00850a0,0x00850aa,0x00850c0,0x00850ca,0x00851b0,0x00851c4,0x00851d8,0x00851fc,
    0x0085201,0x0085248,0x0085285,0x00852c8,0x0085302,0x00853e9,0x00853fd,0x0085402,0x00854e9,0x0085500,
    0x0085602,0x0085646,0x008564a,0x008572c,0x0085738,0x0085759,0x0085785,0x00857b8,0x0085802,0x00859b0,
    0x00859cd,0x0085a02,0x0085ab0,0x0085ac1,0x0085b02,0x0085b98,0x0085bc1,0x0085c02,0x0085c90,0x0085ccd,
    0x0085ce8,0x0085d49,0x0085d80,0x0086002,0x0086248,0x0086402,0x0086598,0x0086602,0x0086798,0x00867d1,
    0x0086802,0x0086924,0x0086940,0x0086981,0x00869d0,0x0087301,0x00873f8,0x0087402,0x0087550,0x008755c,
    0x008756d,0x0087570,0x0087582,0x0087590,0x00877ec,0x0087802,0x00878e9,0x008793a,0x0087940,0x0087982,
    0x0087a34,0x0087a89,0x0087aad,0x0087ad0,0x0087b82,0x0087c14,0x0087c35,0x0087c50,0x0087d82,0x0087e29,
    0x0087e60,0x0087f02,0x0087fb8,0x0088004,0x008801a,0x00881c4,0x008823d,0x0088270,0x0088291,0x0088384,
    0x008838a,0x008839c,0x00883aa,0x00883b0,0x00883fc,0x008841a,0x0088584,0x00885dd,0x00885ef,0x00885f5,
    0x0088614,0x0088618,0x008866f,0x0088670,0x0088682,0x0088748,0x0088781,0x00887d0,0x0088804,0x008881a,
    0x008893c,0x00889a8,0x00889b1,0x0088a05,0x0088a22,0x0088a2c,0x0088a3a,0x0088a40,0x0088a82,0x0088b9c,
    0x0088ba5,0x0088bb2,0x0088bb8,0x0088c04,0x0088c1a,0x0088d9c,0x0088e0a,0x0088e2d,0x0088e4c,0x0088e6d,
    0x0088e74,0x0088e81,0x0088ed2,0x0088edd,0x0088ee2,0x0088eed,0x0088f00,0x0088f09,0x0088fa8,0x0089002,
    0x0089090,0x008909a,0x0089164,0x00891c5,0x00891f4,0x00891fa,0x008920c,0x0089210,0x0089402,0x0089438,
    0x0089442,0x0089448,0x0089452,0x0089470,0x008947a,0x00894f0,0x00894fa,0x008954d,0x0089550,0x0089582,
    0x00896fc,0x0089758,0x0089781,0x00897d0,0x0089804,0x0089820,0x008982a,0x0089868,0x008987a,0x0089888,
    0x008989a,0x0089948,0x0089952,0x0089988,0x0089992,0x00899a0,0x00899aa,0x00899d0,0x00899dc,0x00899ea,
    0x00899f4,0x0089a28,0x0089a3c,0x0089a48,0x0089a5c,0x0089a70,0x0089a82,0x0089a88,0x0089abc,0x0089ac0,
    0x0089aea,0x0089b14,0x0089b20,0x0089b34,0x0089b68,0x0089b84,0x0089ba8,0x008a002,0x008a1ac,0x008a23a,
    0x008a25d,0x008a281,0x008a2d5,0x008a2e0,0x008a2ed,0x008a2f4,0x008a2fa,0x008a310,0x008a402,0x008a584,
    0x008a622,0x008a635,0x008a63a,0x008a640,0x008a681,0x008a6d0,0x008ac02,0x008ad7c,0x008adb0,0x008adc4,
    0x008ae0d,0x008aec2,0x008aee4,0x008aef0,0x008b002,0x008b184,0x008b20d,0x008b222,0x008b228,0x008b281,
    0x008b2d0,0x008b305,0x008b368,0x008b402,0x008b55c,0x008b5c2,0x008b5cd,0x008b5d0,0x008b601,0x008b650,
    0x008b802,0x008b8d8,0x008b8ec,0x008b960,0x008b981,0x008b9e5,0x008b9fe,0x008ba02,0x008ba38,0x008c002,
    0x008c164,0x008c1dd,0x008c1e0,0x008c502,0x008c701,0x008c798,0x008c7fa,0x008c838,0x008c84a,0x008c850,
    0x008c862,0x008c8a0,0x008c8aa,0x008c8b8,0x008c8c2,0x008c984,0x008c9b0,0x008c9bc,0x008c9c8,0x008c9dc,
    0x008c9fa,0x008ca04,0x008ca0a,0x008ca14,0x008ca25,0x008ca38,0x008ca81,0x008cad0,0x008cd02,0x008cd40,
    0x008cd52,0x008ce8c,0x008cec0,0x008ced4,0x008cf0a,0x008cf15,0x008cf1a,0x008cf24,0x008cf28,0x008d002,
    0x008d00c,0x008d05a,0x008d19c,0x008d1d2,0x008d1dc,0x008d1fd,0x008d23c,0x008d240,0x008d282,0x008d28c,
    0x008d2e2,0x008d454,0x008d4d5,0x008d4ea,0x008d4f5,0x008d518,0x008d582,0x008d7c8,0x008d805,0x008d850,
    0x008e002,0x008e048,0x008e052,0x008e17c,0x008e1b8,0x008e1c4,0x008e202,0x008e20d,0x008e230,0x008e281,
    0x008e368,0x008e385,0x008e392,0x008e480,0x008e494,0x008e540,0x008e54c,0x008e5b8,0x008e802,0x008e838,
    0x008e842,0x008e850,0x008e85a,0x008e98c,0x008e9b8,0x008e9d4,0x008e9d8,0x008e9e4,0x008e9f0,0x008e9fc,
    0x008ea32,0x008ea3c,0x008ea40,0x008ea81,0x008ead0,0x008eb02,0x008eb30,0x008eb3a,0x008eb48,0x008eb52,
    0x008ec54,0x008ec78,0x008ec84,0x008ec90,0x008ec9c,0x008ecc2,0x008ecc8,0x008ed01,0x008ed50,0x008f702,
    0x008f79c,0x008f7bd,0x008f7c8,0x008f804,0x008f812,0x008f81c,0x008f822,0x008f888,0x008f892,0x008f9a4,
    0x008f9d8,0x008f9f4,0x008fa1d,0x008fa81,0x008fad0,0x008fd82,0x008fd88,0x008fe01,0x008feae,0x008ff90,
    0x008fffd,0x0090002,0x0091cd0,0x0092001,0x0092378,0x0092385,0x00923a8,0x0092402,0x0092a20,0x0097c82,
    0x0097f8d,0x0097f98,0x0098002,0x009a187,0x009a204,0x009a20a,0x009a23c,0x009a2b0,0x00a2002,0x00a3238,
    0x00b4002,0x00b51c8,0x00b5202,0x00b52f8,0x00b5301,0x00b5350,0x00b5375,0x00b5382,0x00b55f8,0x00b5601,
    0x00b5650,0x00b5682,0x00b5770,0x00b5784,0x00b57ad,0x00b57b0,0x00b5802,0x00b5984,0x00b59bd,0x00b59e6,
    0x00b5a02,0x00b5a25,0x00b5a2e,0x00b5a30,0x00b5a81,0x00b5ad0,0x00b5ad9,0x00b5b10,0x00b5b1a,0x00b5bc0,
    0x00b5bea,0x00b5c80,0x00b7202,0x00b7401,0x00b74bd,0x00b74d8,0x00b7802,0x00b7a58,0x00b7a7c,0x00b7a82,
    0x00b7a8c,0x00b7c40,0x00b7c7c,0x00b7c9a,0x00b7d00,0x00b7f02,0x00b7f15,0x00b7f1a,0x00b7f24,0x00b7f28,
    0x00b7f84,0x00b7f90,0x00b8002,0x00c3fc0,0x00c4002,0x00c66b0,0x00c6802,0x00c6848,0x00d7f82,0x00d7fa0,
    0x00d7faa,0x00d7fe0,0x00d7fea,0x00d7ff8,0x00d8002,0x00d8918,0x00d8992,0x00d8998,0x00d8a82,0x00d8a98,
    0x00d8aaa,0x00d8ab0,0x00d8b22,0x00d8b40,0x00d8b82,0x00d97e0,0x00de002,0x00de358,0x00de382,0x00de3e8,
    0x00de402,0x00de448,0x00de482,0x00de4d0,0x00de4e6,0x00de4ec,0x00de4fd,0x00de507,0x00de520,0x00e7804,
    0x00e7970,0x00e7984,0x00e7a38,0x00e7a86,0x00e7e20,0x00e8006,0x00e87b0,0x00e8806,0x00e8938,0x00e894e,
    0x00e8b2c,0x00e8b56,0x00e8b6c,0x00e8b9f,0x00e8bdc,0x00e8c1e,0x00e8c2c,0x00e8c66,0x00e8d54,0x00e8d76,
    0x00e8f58,0x00e9006,0x00e9214,0x00e922e,0x00e9230,0x00e9601,0x00e96a0,0x00e9701,0x00e97a0,0x00e9806,
    0x00e9ab8,0x00e9b01,0x00e9bc8,0x00ea002,0x00ea2a8,0x00ea2b2,0x00ea4e8,0x00ea4f2,0x00ea500,0x00ea512,
    0x00ea518,0x00ea52a,0x00ea538,0x00ea54a,0x00ea568,0x00ea572,0x00ea5d0,0x00ea5da,0x00ea5e0,0x00ea5ea,
    0x00ea620,0x00ea62a,0x00ea830,0x00ea83a,0x00ea858,0x00ea86a,0x00ea8a8,0x00ea8b2,0x00ea8e8,0x00ea8f2,
    0x00ea9d0,0x00ea9da,0x00ea9f8,0x00eaa02,0x00eaa28,0x00eaa32,0x00eaa38,0x00eaa52,0x00eaa88,0x00eaa92,
    0x00eb530,0x00eb542,0x00eb60e,0x00eb612,0x00eb6de,0x00eb6e2,0x00eb7de,0x00eb7e2,0x00eb8ae,0x00eb8b2,
    0x00eb9ae,0x00eb9b2,0x00eba7e,0x00eba82,0x00ebb7e,0x00ebb82,0x00ebc4e,0x00ebc52,0x00ebd4e,0x00ebd52,
    0x00ebe1e,0x00ebe22,0x00ebe60,0x00ebe71,0x00ec006,0x00ed004,0x00ed1be,0x00ed1dc,0x00ed36e,0x00ed3ac,
    0x00ed3b6,0x00ed424,0x00ed42e,0x00ed43d,0x00ed460,0x00ed4dc,0x00ed500,0x00ed50c,0x00ed580,0x00ef802,
    0x00ef8f8,0x00ef92a,0x00ef958,0x00f0004,0x00f0038,0x00f0044,0x00f00c8,0x00f00dc,0x00f0110,0x00f011c,
    0x00f0128,0x00f0134,0x00f0158,0x00f0182,0x00f0370,0x00f047c,0x00f0480,0x00f0802,0x00f0968,0x00f0984,
    0x00f09ba,0x00f09f0,0x00f0a01,0x00f0a50,0x00f0a72,0x00f0a7e,0x00f0a80,0x00f1482,0x00f1574,0x00f1578,
    0x00f1602,0x00f1764,0x00f1781,0x00f17d0,0x00f17fe,0x00f1800,0x00f2682,0x00f2764,0x00f2781,0x00f27d0,
    0x00f3f02,0x00f3f38,0x00f3f42,0x00f3f60,0x00f3f6a,0x00f3f78,0x00f3f82,0x00f3ff8,0x00f4002,0x00f4628,
    0x00f4639,0x00f4684,0x00f46b8,0x00f4802,0x00f4a24,0x00f4a5a,0x00f4a60,0x00f4a81,0x00f4ad0,0x00f4af5,
    0x00f4b00,0x00f6389,0x00f6566,0x00f6569,0x00f6586,0x00f6589,0x00f65a8,0x00f6809,0x00f6976,0x00f6979,
    0x00f69f0,0x00f7002,0x00f7020,0x00f702a,0x00f7100,0x00f710a,0x00f7118,0x00f7122,0x00f7128,0x00f713a,
    0x00f7140,0x00f714a,0x00f7198,0x00f71a2,0x00f71c0,0x00f71ca,0x00f71d0,0x00f71da,0x00f71e0,0x00f7212,
    0x00f7218,0x00f723a,0x00f7240,0x00f724a,0x00f7250,0x00f725a,0x00f7260,0x00f726a,0x00f7280,0x00f728a,
    0x00f7298,0x00f72a2,0x00f72a8,0x00f72ba,0x00f72c0,0x00f72ca,0x00f72d0,0x00f72da,0x00f72e0,0x00f72ea,
    0x00f72f0,0x00f72fa,0x00f7300,0x00f730a,0x00f7318,0x00f7322,0x00f7328,0x00f733a,0x00f7358,0x00f7362,
    0x00f7398,0x00f73a2,0x00f73c0,0x00f73ca,0x00f73e8,0x00f73f2,0x00f73f8,0x00f7402,0x00f7450,0x00f745a,
    0x00f74e0,0x00f750a,0x00f7520,0x00f752a,0x00f7550,0x00f755a,0x00f75e0,0x00f7786,0x00f7790,0x00f8006,
    0x00f8160,0x00f8186,0x00f84a0,0x00f8506,0x00f8578,0x00f858e,0x00f8600,0x00f860e,0x00f8680,0x00f868e,
    0x00f87b0,0x00f8801,0x00f886e,0x00f8d70,0x00f8f36,0x00f9018,0x00f9086,0x00f91e0,0x00f9206,0x00f9248,
    0x00f9286,0x00f9290,0x00f9306,0x00f9330,0x00f9806,0x00fb6c0,0x00fb6e6,0x00fb768,0x00fb786,0x00fb7e8,
    0x00fb806,0x00fbbb8,0x00fbbde,0x00fbed0,0x00fbf06,0x00fbf60,0x00fbf86,0x00fbf88,0x00fc006,0x00fc060,
    0x00fc086,0x00fc240,0x00fc286,0x00fc2d0,0x00fc306,0x00fc440,0x00fc486,0x00fc570,0x00fc586,0x00fc590,
    0x00fc806,0x00fd2a0,0x00fd306,0x00fd370,0x00fd386,0x00fd3e8,0x00fd406,0x00fd448,0x00fd486,0x00fd5f0,
    0x00fd5fe,0x00fd630,0x00fd676,0x00fd6e0,0x00fd706,0x00fd748,0x00fd786,0x00fd7c8,0x00fd806,0x00fdc98,
    0x00fdca6,0x00fde58,0x00fdf81,0x00fdfd0,0x0100002,0x0153700,0x0153802,0x015b9d0,0x015ba02,0x015c0f0,
    0x015c102,0x0167510,0x0167582,0x0175f08,0x017c002,0x017d0f0,0x0180002,0x0189a58,0x0189a82,0x0191d80,
    0x070000f,0x0700010,0x0700107,0x0700400,0x0700804,0x0700f80,0x0780007,0x07ffff0,0x0800007,0x087fff0,
};

// White_Space, inclusive [first, last] pairs.
#define TBC__USPACE_RANGES 10
static const uint32_t tbc__uspace[TBC__USPACE_RANGES][2] = {
    {0x0009, 0x000d}, {0x0020, 0x0020}, {0x0085, 0x0085}, {0x00a0, 0x00a0}, {0x1680, 0x1680}, {0x2000, 0x200a}, {0x2028, 0x2029}, {0x202f, 0x202f}, {0x205f, 0x205f}, {0x3000, 0x3000}
};

// >>tokenizer
// Vocabulary loading, tokenization and detokenization, following llama.cpp (src/llama-vocab.cpp, src/unicode.cpp)
// so that the same GGUF gives the same token ids:
//  * "llama" (SentencePiece-style): spaces -> U+2581, optional leading space, best-score bigram merging,
//    byte fallback <0xNN>.
//  * "gpt2" (byte-level BPE): a pre-tokenizer splits the text into words (llama-bpe, qwen2, gpt-2 and llama.cpp's
//    "default" rules, written as small state machines over code points), bytes map to GPT-2's printable
//    alphabet, then merges apply by rank.
// Control, unknown and user-defined tokens are split out of the text first (control/unknown only when the caller
// asks to parse specials; user-defined always, as llama.cpp does).

// Token attributes (a token may carry several, e.g. NORMAL|CONTROL after the end-of-generation fix-ups).
#define TBC__ATTR_UNDEFINED 0x001
#define TBC__ATTR_UNKNOWN 0x002
#define TBC__ATTR_UNUSED 0x004
#define TBC__ATTR_NORMAL 0x008
#define TBC__ATTR_CONTROL 0x010
#define TBC__ATTR_USER_DEFINED 0x020
#define TBC__ATTR_BYTE 0x040
#define TBC__ATTR_LSTRIP 0x080
#define TBC__ATTR_RSTRIP 0x100

#define TBC__VOCAB_SPM 1
#define TBC__VOCAB_BPE 2

// Pre-tokenizers (BPE only).
#define TBC__PRE_DEFAULT 0   // llama.cpp's fallback: punctuation runs, GPT-2 rule, digit runs, groups of 3 digits
#define TBC__PRE_LLAMA3 1    // llama-bpe: contractions, letters, \p{N}{1,3}, punctuation, newlines, spaces
#define TBC__PRE_QWEN2 2     // as LLAMA3 but one digit per word
#define TBC__PRE_GPT2 3      // 's|'t|...| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)

// A merge "a b" of the BPE vocabulary: a slot of the (left, right) -> rank table.
typedef struct tbc__merge {
    int32_t left, right;   // token ids of the two parts (-1: empty slot)
    int32_t rank;          // position in tokenizer.ggml.merges (lower merges first)
    int32_t result;        // token id of the concatenation, -1 when it is not a token
} tbc__merge;

typedef struct tbc__vocab {
    int32_t n_tokens;
    int32_t bos, eos, eot, eom, unk;   // -1 when absent
    int add_bos, add_eos, add_space_prefix;
    int type;                          // TBC__VOCAB_SPM or TBC__VOCAB_BPE
    int pre;                           // TBC__PRE_* (BPE)
    int ignore_merges;                 // BPE: a word that is a whole token is emitted as is
    char *text;                        // token texts back to back (owned)
    uint64_t *text_off;                // [n_tokens + 1]
    char *piece;                       // detokenized bytes of each token, specials rendered as text (owned)
    uint64_t *piece_off;               // [n_tokens + 1]
    float *score;                      // [n_tokens]
    uint16_t *attr;                    // [n_tokens] TBC__ATTR_*
    uint8_t *eog;                      // [n_tokens] 1: ends generation
    int32_t *tok_slot;                 // open addressing: text -> id (-1 empty)
    uint64_t tok_cap;
    tbc__merge *merge_slot;            // open addressing: (left, right) -> merge
    uint64_t merge_cap;
    int32_t n_merges;
    int32_t *special;                  // control / user-defined / unknown ids, longest text first
    int32_t n_special;
    int32_t byte_tok[256];             // SPM: <0xNN> (fallback) token of each byte; BPE: token of its GPT-2 char
    uint16_t byte_cp[256];             // BPE: GPT-2 code point of each byte
    int16_t cp_byte[324];              // BPE: inverse of byte_cp (-1: not a byte character)
} tbc__vocab;

// >>tokenizer: small helpers

static const char *tbc__vocab_text(const tbc__vocab *v, int32_t id, uint64_t *n) {
    *n = v->text_off[id + 1] - v->text_off[id];
    return v->text + v->text_off[id];
}

// FNV-1a continued over a second piece, so "a" + "b" hashes like "ab" without copying.
static uint64_t tbc__hash_more(uint64_t h, const void *p, uint64_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (uint64_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

// Id of the token whose text is p1[0..n1) followed by p2[0..n2), or -1.
static int32_t tbc__vocab_lookup2(const tbc__vocab *v, const char *p1, uint64_t n1, const char *p2, uint64_t n2) {
    if (!v->tok_cap) return -1;
    uint64_t h = tbc__hash_more(tbc__hash_more(1469598103934665603ull, p1, n1), p2, n2) & (v->tok_cap - 1);
    for (;;) {
        int32_t id = v->tok_slot[h];
        if (id < 0) return -1;
        uint64_t n;
        const char *t = tbc__vocab_text(v, id, &n);
        if (n == n1 + n2 && memcmp(t, p1, (size_t)n1) == 0 && (n2 == 0 || memcmp(t + n1, p2, (size_t)n2) == 0))
            return id;
        h = (h + 1) & (v->tok_cap - 1);
    }
}

static int32_t tbc__vocab_lookup(const tbc__vocab *v, const char *p, uint64_t n) {
    return tbc__vocab_lookup2(v, p, n, "", 0);
}

static uint64_t tbc__merge_hash(int32_t a, int32_t b) {
    uint64_t x = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

static const tbc__merge *tbc__merge_find(const tbc__vocab *v, int32_t a, int32_t b) {
    if (!v->merge_cap || a < 0 || b < 0) return NULL;
    uint64_t h = tbc__merge_hash(a, b) & (v->merge_cap - 1);
    for (;;) {
        const tbc__merge *m = &v->merge_slot[h];
        if (m->left < 0) return NULL;
        if (m->left == a && m->right == b) return m;
        h = (h + 1) & (v->merge_cap - 1);
    }
}

// Category of a code point (TBC__UCAT_*), plus TBC__UCAT_WHITESPACE.
static uint8_t tbc__ucat(uint32_t cp) {
    if (cp < 128) return tbc__ucat_ascii[cp];
    if (cp >= 0x110000) return TBC__UCAT_UNDEFINED;
    uint8_t ws = 0;
    for (int i = 0; i < TBC__USPACE_RANGES; i++)
        if (cp >= tbc__uspace[i][0] && cp <= tbc__uspace[i][1]) { ws = TBC__UCAT_WHITESPACE; break; }
    size_t lo = 0, hi = TBC__UCAT_RUNS;  // last run starting at or before cp
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((tbc__ucat_runs[mid] >> 3) <= cp) lo = mid; else hi = mid;
    }
    return (uint8_t)((tbc__ucat_runs[lo] & 7) | ws);
}

// Decodes one code point as llama.cpp does: a bad sequence yields U+FFFD and consumes one byte. Lead bytes are
// trusted for their length (no overlong check), but values past U+10FFFF also become U+FFFD (llama.cpp would
// throw when re-encoding them).
static uint32_t tbc__utf8_next(const uint8_t *s, size_t n, size_t *i) {
    size_t o = *i;
    uint8_t c = s[o];
    if (c < 0x80) { *i = o + 1; return c; }
    int len = (c & 0x40) == 0 ? 0 : (c & 0x20) == 0 ? 2 : (c & 0x10) == 0 ? 3 : (c & 0x08) == 0 ? 4 : 0;
    if (len == 0 || o + (size_t)len > n) { *i = o + 1; return 0xFFFD; }
    uint32_t cp = len == 2 ? (uint32_t)(c & 0x1f) : len == 3 ? (uint32_t)(c & 0x0f) : (uint32_t)(c & 0x07);
    for (int k = 1; k < len; k++) {
        if ((s[o + (size_t)k] & 0xc0) != 0x80) { *i = o + 1; return 0xFFFD; }
        cp = (cp << 6) | (s[o + (size_t)k] & 0x3f);
    }
    *i = o + (size_t)len;
    return cp > 0x10FFFF ? 0xFFFD : cp;
}

static int tbc__utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); out[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

// Byte length of the UTF-8 character that starts with c, from its top four bits only (as SentencePiece splits).
static size_t tbc__utf8_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

// Grows *p (of *cap elements of size elem) to hold at least need elements. Returns 0 when out of memory.
static int tbc__grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) return 0;
        n *= 2;
    }
    if (n > SIZE_MAX / elem) return 0;
    void *q = TBC_REALLOC(*p, n * elem);
    if (!q) return 0;
    *p = q;
    *cap = n;
    return 1;
}

// >>tokenizer: loading

static void tbc__vocab_free(tbc__vocab *v) {
    if (!v) return;
    TBC_FREE(v->text); TBC_FREE(v->text_off); TBC_FREE(v->piece); TBC_FREE(v->piece_off);
    TBC_FREE(v->score); TBC_FREE(v->attr); TBC_FREE(v->eog); TBC_FREE(v->tok_slot);
    TBC_FREE(v->merge_slot); TBC_FREE(v->special);
    memset(v, 0, sizeof(*v));
}

static int32_t tbc__vocab_find(const tbc__vocab *v, const char *text, size_t len) {
    if (!v || !v->tok_cap || (!text && len)) return -1;
    return tbc__vocab_lookup(v, text ? text : "", (uint64_t)len);
}

// Reads an optional token id key. Returns 0 on success (id untouched when absent), else an error code.
static tbc_result tbc__vocab_read_id(const tbc__vocab *v, const tbc__gguf *g, const char *key, int32_t *id,
                                     tbc_error *err) {
    int64_t x;
    int r = tbc__gguf_get_int(g, key, &x, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 0) return TBC_OK;
    if (x < 0 || x >= v->n_tokens) {
        tbc__error_set(err, TBC_ERR_TOKENIZER, "metadata key '%s' is %lld, outside the vocabulary of %d tokens", key,
                       (long long)x, (int)v->n_tokens);
        return TBC_ERR_TOKENIZER;
    }
    *id = (int32_t)x;
    return TBC_OK;
}

static tbc_result tbc__vocab_read_bool(const tbc__gguf *g, const char *key, int *flag, tbc_error *err) {
    int64_t x;
    int r = tbc__gguf_get_int(g, key, &x, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 1) *flag = x != 0;
    return TBC_OK;
}

static int tbc__str_in(const char *s, uint64_t n, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == n && memcmp(*list, s, (size_t)n) == 0) return 1;
    return 0;
}

// First token (in list order) whose text is in list, or -1.
static int32_t tbc__vocab_find_first(const tbc__vocab *v, const char *const *list) {
    for (; *list; list++) {
        int32_t id = tbc__vocab_lookup(v, *list, strlen(*list));
        if (id >= 0) return id;
    }
    return -1;
}

// Sorts ids by text length descending, then id ascending (deterministic where llama.cpp's std::sort leaves equal
// lengths in an unspecified order). Bottom-up merge sort; tmp holds n ids.
static void tbc__sort_special(const tbc__vocab *v, int32_t *ids, int32_t n, int32_t *tmp) {
    for (int32_t w = 1; w < n; w *= 2) {
        for (int32_t lo = 0; lo < n; lo += 2 * w) {
            int32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                uint64_t li = v->text_off[ids[i] + 1] - v->text_off[ids[i]];
                uint64_t lj = v->text_off[ids[j] + 1] - v->text_off[ids[j]];
                if (li > lj || (li == lj && ids[i] < ids[j])) tmp[k++] = ids[i++];
                else tmp[k++] = ids[j++];
            }
            while (i < mid) tmp[k++] = ids[i++];
            while (j < hi) tmp[k++] = ids[j++];
        }
        memcpy(ids, tmp, (size_t)n * sizeof(int32_t));
    }
}

static int tbc__hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Builds the detokenization cache (as llama.cpp renders each token with special = true).
static tbc_result tbc__vocab_build_pieces(tbc__vocab *v, tbc_error *err) {
    // First pass: sizes. Second pass: bytes.
    uint64_t total = 0;
    v->piece_off = (uint64_t *)TBC_MALLOC(((size_t)v->n_tokens + 1) * sizeof(uint64_t));
    if (!v->piece_off) goto oom;
    for (int pass = 0; pass < 2; pass++) {
        uint64_t at = 0;
        for (int32_t id = 0; id < v->n_tokens; id++) {
            uint64_t n;
            const char *t = tbc__vocab_text(v, id, &n);
            uint16_t a = v->attr[id];
            char *dst = pass ? v->piece + at : NULL;
            uint64_t len = 0;
            if (pass) v->piece_off[id] = at;
            if (a & (TBC__ATTR_UNKNOWN | TBC__ATTR_CONTROL | TBC__ATTR_USER_DEFINED)) {
                if (dst) memcpy(dst, t, (size_t)n);
                len = n;
            } else if ((a & TBC__ATTR_NORMAL) && v->type == TBC__VOCAB_SPM) {
                for (uint64_t i = 0; i < n;) {  // U+2581 -> ' '
                    if (i + 3 <= n && (uint8_t)t[i] == 0xe2 && (uint8_t)t[i + 1] == 0x96 && (uint8_t)t[i + 2] == 0x81) {
                        if (dst) dst[len] = ' ';
                        len++; i += 3;
                    } else {
                        if (dst) dst[len] = t[i];
                        len++; i++;
                    }
                }
            } else if (a & TBC__ATTR_NORMAL) {  // BPE: GPT-2 characters back to bytes
                size_t i = 0;
                while (i < n) {
                    uint32_t cp = tbc__utf8_next((const uint8_t *)t, (size_t)n, &i);
                    if (cp < 324 && v->cp_byte[cp] >= 0) {
                        if (dst) dst[len] = (char)v->cp_byte[cp];
                        len++;
                    } else {  // llama.cpp writes "[UNK_BYTE_0x<utf8 hex><token text>]"
                        char u[4], hex[12];
                        int un = tbc__utf8_put(cp, u), hn = 0;
                        static const char *digits = "0123456789abcdef";
                        for (int k = 0; k < un; k++) {
                            hex[hn++] = digits[(uint8_t)u[k] >> 4];
                            hex[hn++] = digits[(uint8_t)u[k] & 15];
                        }
                        if (dst) {
                            memcpy(dst + len, "[UNK_BYTE_0x", 12); memcpy(dst + len + 12, hex, (size_t)hn);
                            memcpy(dst + len + 12 + hn, t, (size_t)n); dst[len + 12 + (uint64_t)hn + n] = ']';
                        }
                        len += 12 + (uint64_t)hn + n + 1;
                    }
                }
            } else if (a & TBC__ATTR_BYTE) {
                if (dst) dst[0] = (char)(tbc__hexval(t[3]) * 16 + tbc__hexval(t[4]));
                len = 1;
            }
            at += len;
        }
        if (!pass) {
            total = at;
            v->piece = (char *)TBC_MALLOC((size_t)(total ? total : 1));
            if (!v->piece) goto oom;
        } else {
            v->piece_off[v->n_tokens] = at;
        }
    }
    return TBC_OK;
oom:
    tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the token pieces");
    return TBC_ERR_OUT_OF_MEMORY;
}

static tbc_result tbc__vocab_load(tbc__vocab *v, const tbc__gguf *g, tbc_error *err) {
    tbc_result rc = TBC_OK;
    tbc__str model, pre, name, arch;
    const tbc__kv *tokens = NULL, *scores = NULL, *types = NULL, *merges = NULL;
    int has_pre, r;
    uint64_t pool = 0;
    int32_t *tmp = NULL;
    char digits[32];

    memset(v, 0, sizeof(*v));
    v->bos = v->eos = v->eot = v->eom = v->unk = -1;

    // >> model type
    r = tbc__gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 0) {
        tbc__error_set(err, TBC_ERR_KEY_MISSING, "metadata key 'tokenizer.ggml.model' is missing");
        return TBC_ERR_KEY_MISSING;
    }
    if (tbc__str_eq(model, "llama")) v->type = TBC__VOCAB_SPM;
    else if (tbc__str_eq(model, "gpt2")) v->type = TBC__VOCAB_BPE;
    else {
        tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.model '%.*s' is not supported (only 'llama' and 'gpt2')",
                       (int)(model.n > 64 ? 64 : model.n), model.p);
        return TBC_ERR_TOKENIZER;
    }
    has_pre = tbc__gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
    if (has_pre < 0) return TBC_ERR_KEY_TYPE;
    if (tbc__gguf_get_str(g, "general.name", &name, NULL) != 1) { name.p = ""; name.n = 0; }
    if (tbc__gguf_get_str(g, "general.architecture", &arch, NULL) != 1) { arch.p = ""; arch.n = 0; }

    // >> token list, scores, types
    r = tbc__gguf_get_arr(g, "tokenizer.ggml.tokens", TBC_GGUF_STRING, &tokens, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 0) {
        tbc__error_set(err, TBC_ERR_KEY_MISSING, "metadata key 'tokenizer.ggml.tokens' is missing");
        return TBC_ERR_KEY_MISSING;
    }
    if (tokens->count == 0 || tokens->count > (uint64_t)INT32_MAX / 2) {
        tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.tokens has %llu entries",
                       (unsigned long long)tokens->count);
        return TBC_ERR_TOKENIZER;
    }
    v->n_tokens = (int32_t)tokens->count;
    r = tbc__gguf_get_arr(g, "tokenizer.ggml.scores", -1, &scores, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 1) {
        if (scores->arr_type != TBC_GGUF_FLOAT32 && scores->arr_type != TBC_GGUF_INT32) {
            tbc__error_set(err, TBC_ERR_KEY_TYPE, "metadata key 'tokenizer.ggml.scores' is an array of %s, expected "
                           "float32 or int32", tbc__gguf_type_name(scores->arr_type));
            return TBC_ERR_KEY_TYPE;
        }
        if (scores->count < tokens->count) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.scores has %llu entries for %d tokens",
                           (unsigned long long)scores->count, (int)v->n_tokens);
            return TBC_ERR_TOKENIZER;
        }
    } else {
        scores = NULL;
    }
    r = tbc__gguf_get_arr(g, "tokenizer.ggml.token_type", TBC_GGUF_INT32, &types, err);
    if (r < 0) return TBC_ERR_KEY_TYPE;
    if (r == 1 && types->count < tokens->count) {
        tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.token_type has %llu entries for %d tokens",
                       (unsigned long long)types->count, (int)v->n_tokens);
        return TBC_ERR_TOKENIZER;
    }
    if (r == 0) types = NULL;

    v->text_off = (uint64_t *)TBC_MALLOC(((size_t)v->n_tokens + 1) * sizeof(uint64_t));
    v->score = (float *)TBC_MALLOC((size_t)v->n_tokens * sizeof(float));
    v->attr = (uint16_t *)TBC_MALLOC((size_t)v->n_tokens * sizeof(uint16_t));
    v->eog = (uint8_t *)TBC_MALLOC((size_t)v->n_tokens);
    tmp = (int32_t *)TBC_MALLOC((size_t)v->n_tokens * sizeof(int32_t));
    if (!v->text_off || !v->score || !v->attr || !v->eog || !tmp) goto oom;
    memset(v->eog, 0, (size_t)v->n_tokens);

    for (int32_t i = 0; i < v->n_tokens; i++) {
        uint64_t n = tokens->strs[i].n;
        if (n == 0) n = (uint64_t)snprintf(digits, sizeof(digits), "[EMPTY_%d]", (int)i);  // as llama.cpp names them
        if (!tbc__add_u64(pool, n, &pool)) goto oom;
    }
    if (pool > (uint64_t)SIZE_MAX - 1) goto oom;
    v->text = (char *)TBC_MALLOC((size_t)pool + 1);
    if (!v->text) goto oom;
    {
        uint64_t at = 0;
        for (int32_t i = 0; i < v->n_tokens; i++) {
            tbc__str s = tokens->strs[i];
            v->text_off[i] = at;
            if (s.n == 0) {
                int k = snprintf(digits, sizeof(digits), "[EMPTY_%d]", (int)i);
                memcpy(v->text + at, digits, (size_t)k);
                at += (uint64_t)k;
            } else {
                memcpy(v->text + at, s.p, (size_t)s.n);
                at += s.n;
            }
            if (scores && scores->arr_type == TBC_GGUF_FLOAT32) memcpy(&v->score[i], scores->data + 4 * (size_t)i, 4);
            else if (scores) {
                int32_t x;
                memcpy(&x, scores->data + 4 * (size_t)i, 4);
                v->score[i] = (float)x;
            } else v->score[i] = 0.0f;
            v->attr[i] = TBC__ATTR_NORMAL;
            if (types) {
                int32_t t;
                memcpy(&t, types->data + 4 * (size_t)i, 4);
                static const uint16_t map[7] = {TBC__ATTR_UNDEFINED, TBC__ATTR_NORMAL, TBC__ATTR_UNKNOWN,
                                                TBC__ATTR_CONTROL, TBC__ATTR_USER_DEFINED, TBC__ATTR_UNUSED,
                                                TBC__ATTR_BYTE};
                if (t < 0 || t > 6) {
                    tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.token_type[%d] is %d (valid: 0 to 6)",
                                   (int)i, (int)t);
                    rc = TBC_ERR_TOKENIZER;
                    goto fail;
                }
                v->attr[i] = map[t];
            }
        }
        v->text_off[v->n_tokens] = at;
    }

    // >> text -> id table
    v->tok_cap = 16;
    while (v->tok_cap < 2 * (uint64_t)v->n_tokens) v->tok_cap <<= 1;
    v->tok_slot = (int32_t *)TBC_MALLOC((size_t)v->tok_cap * sizeof(int32_t));
    if (!v->tok_slot) goto oom;
    for (uint64_t i = 0; i < v->tok_cap; i++) v->tok_slot[i] = -1;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        uint64_t n;
        const char *t = tbc__vocab_text(v, i, &n);
        int32_t dup = tbc__vocab_lookup(v, t, n);
        if (dup >= 0) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.tokens: '%.*s' appears twice (ids %d and %d)",
                           (int)(n > 64 ? 64 : n), t, (int)dup, (int)i);
            rc = TBC_ERR_TOKENIZER;
            goto fail;
        }
        uint64_t h = tbc__hash_more(1469598103934665603ull, t, n) & (v->tok_cap - 1);
        while (v->tok_slot[h] >= 0) h = (h + 1) & (v->tok_cap - 1);
        v->tok_slot[h] = i;
    }
    for (int32_t i = 0; i < v->n_tokens; i++) {  // byte tokens must read <0xNN>
        uint64_t n;
        const char *t = tbc__vocab_text(v, i, &n);
        if ((v->attr[i] & TBC__ATTR_BYTE) &&
            (n != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>' || tbc__hexval(t[3]) < 0 || tbc__hexval(t[4]) < 0)) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "token %d '%.*s' has type byte but is not of the form <0xNN>",
                           (int)i, (int)(n > 64 ? 64 : n), t);
            rc = TBC_ERR_TOKENIZER;
            goto fail;
        }
    }

    // >> type-specific defaults (llama.cpp's), then the keys
    if (v->type == TBC__VOCAB_SPM) {
        v->bos = 1; v->eos = 2; v->unk = 0;
        v->add_bos = 1; v->add_space_prefix = 1;
    } else {
        v->bos = 11; v->eos = 11;  // llama.cpp's BPE defaults, used when the file names none
        v->pre = TBC__PRE_DEFAULT;
        if (has_pre == 1 && !tbc__str_eq(pre, "default")) {
            static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
                                                 "midm-2.0", "lfm2", "jina-v5-nano", NULL};
            static const char *const llama3_plain[] = {"dbrx", "smaug-bpe", "glm4", "chatglm-bpe", NULL};
            static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "kormo",
                                                "hunyuan", "grok-2", "solar-open", "f2llmv2", NULL};
            static const char *const gpt2[] = {"gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "gigachat",
                                               "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert",
                                               "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                                               "exaone4", "trillion", "granite-docling", NULL};
            if (tbc__str_in(pre.p, pre.n, llama3)) { v->pre = TBC__PRE_LLAMA3; v->ignore_merges = 1; v->add_bos = 1; }
            else if (tbc__str_in(pre.p, pre.n, llama3_plain)) v->pre = TBC__PRE_LLAMA3;
            else if (tbc__str_in(pre.p, pre.n, qwen2)) v->pre = TBC__PRE_QWEN2;
            else if (tbc__str_in(pre.p, pre.n, gpt2)) v->pre = TBC__PRE_GPT2;
            else {
                tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.pre '%.*s' is not supported (llama-bpe, "
                               "qwen2, gpt-2 and their aliases are)", (int)(pre.n > 64 ? 64 : pre.n), pre.p);
                rc = TBC_ERR_TOKENIZER;
                goto fail;
            }
            if (tbc__str_eq(pre, "glm4") || tbc__str_eq(pre, "chatglm-bpe")) v->bos = -1;
        }
    }
    if (v->bos >= v->n_tokens) v->bos = -1;  // a default outside a small vocabulary is dropped, as llama.cpp does
    if (v->eos >= v->n_tokens) v->eos = -1;
    if (v->unk >= v->n_tokens) v->unk = -1;
    {
        int32_t fim[9] = {-1, -1, -1, -1, -1, -1, -1, -1, -1};
        static const char *const fim_keys[9] = {
            "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.fim_mid_token_id",
            "tokenizer.ggml.fim_pad_token_id", "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
            "tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"};
        if ((rc = tbc__vocab_read_id(v, g, "tokenizer.ggml.bos_token_id", &v->bos, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_id(v, g, "tokenizer.ggml.eos_token_id", &v->eos, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_id(v, g, "tokenizer.ggml.eot_token_id", &v->eot, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_id(v, g, "tokenizer.ggml.eom_token_id", &v->eom, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_id(v, g, "tokenizer.ggml.unknown_token_id", &v->unk, err)) != TBC_OK) goto fail;
        for (int k = 0; k < 9; k++)
            if ((rc = tbc__vocab_read_id(v, g, fim_keys[k], &fim[k], err)) != TBC_OK) goto fail;
        for (int k = 0; k < 3; k++)  // deprecated spellings
            if (fim[k] < 0) fim[k] = fim[6 + k];
        if ((rc = tbc__vocab_read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err)) != TBC_OK) goto fail;
        if ((rc = tbc__vocab_read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err)) != TBC_OK)
            goto fail;
        if (v->add_bos && v->bos < 0) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.add_bos_token is true, but "
                           "tokenizer.ggml.bos_token_id is not set");
            rc = TBC_ERR_TOKENIZER;
            goto fail;
        }
        if (v->add_eos && v->eos < 0) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.add_eos_token is true, but "
                           "tokenizer.ggml.eos_token_id is not set");
            rc = TBC_ERR_TOKENIZER;
            goto fail;
        }

        // >> special tokens recognised by their text (llama.cpp's workaround for missing metadata); each found
        // one becomes a control token.
        {
            static const char *const eot_names[] = {
                "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                "<end_of_utterance>", NULL};
            static const char *const eom_names[] = {"<|eom_id|>", NULL};
            static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                                  "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
                                                  "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
            static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                                  "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
                                                  "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
            static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                                  "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
                                                  "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
            static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
            static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>",
                                                  "<reponame>", NULL};
            static const char *const fim_sep[] = {"<|file_sep|>", NULL};
            static const char *const eog_names[] = {
                "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL};
            static const char *const always_render[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>",
                                                        NULL};
            const char *const *detect[8] = {eot_names, eom_names, fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep};
            int32_t *slot[8];
            slot[0] = &v->eot; slot[1] = &v->eom;
            for (int k = 0; k < 6; k++) slot[2 + k] = &fim[k];
            for (int k = 0; k < 8; k++) {
                if (*slot[k] >= 0) continue;
                int32_t id = tbc__vocab_find_first(v, detect[k]);
                if (id >= 0) { *slot[k] = id; v->attr[id] |= TBC__ATTR_CONTROL; }
            }
            for (int k = 3; k < 6; k++)  // fim pad, repo, file separator end generation
                if (fim[k] >= 0) v->eog[fim[k]] = 1;
            for (const char *const *s = eog_names; *s; s++) {
                int32_t id = tbc__vocab_lookup(v, *s, strlen(*s));
                if (id >= 0) { v->eog[id] = 1; v->attr[id] |= TBC__ATTR_CONTROL; }
            }
            for (const char *const *s = always_render; *s; s++) {
                int32_t id = tbc__vocab_lookup(v, *s, strlen(*s));
                if (id >= 0) v->attr[id] = TBC__ATTR_USER_DEFINED;
            }
            if (v->eos >= 0) v->eog[v->eos] = 1;
            if (v->eot >= 0) v->eog[v->eot] = 1;
            if (v->eom >= 0) v->eog[v->eom] = 1;
            {   // harmony / solar-open: "<|end|>" separates turns there, it does not end generation
                int32_t ret = tbc__vocab_lookup(v, "<|return|>", 10), call = tbc__vocab_lookup(v, "<|call|>", 8);
                int32_t calls = tbc__vocab_lookup(v, "<|calls|>", 9), flush = tbc__vocab_lookup(v, "<|flush|>", 9);
                int32_t end = tbc__vocab_lookup(v, "<|end|>", 7);
                int has_call = (call >= 0 && v->eog[call]) || (calls >= 0 && v->eog[calls]);
                int has_ret = ret >= 0 && v->eog[ret], has_flush = flush >= 0 && v->eog[flush];
                if (end >= 0 && v->eog[end] && has_call && (has_ret || has_flush)) {
                    v->eog[end] = 0;
                    v->attr[end] = TBC__ATTR_USER_DEFINED;
                }
                int32_t tool = tbc__vocab_lookup(v, "<|tool_response>", 16), s = tbc__vocab_lookup(v, "</s>", 4);
                if (tool >= 0 && v->eog[tool] && s >= 0 && v->eog[s]) {  // gemma4
                    v->eog[s] = 0;
                    v->attr[s] = TBC__ATTR_NORMAL;
                }
            }
        }
    }

    // >> special-token list for splitting, longest first
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->attr[i] & (TBC__ATTR_CONTROL | TBC__ATTR_USER_DEFINED | TBC__ATTR_UNKNOWN)) v->n_special++;
    v->special = (int32_t *)TBC_MALLOC((size_t)(v->n_special ? v->n_special : 1) * sizeof(int32_t));
    if (!v->special) goto oom;
    {
        int32_t k = 0;
        for (int32_t i = 0; i < v->n_tokens; i++)
            if (v->attr[i] & (TBC__ATTR_CONTROL | TBC__ATTR_USER_DEFINED | TBC__ATTR_UNKNOWN)) v->special[k++] = i;
        tbc__sort_special(v, v->special, v->n_special, tmp);
    }

    // >> per-model strip attributes (llama.cpp sets these by model name)
    {
        char lname[256];
        size_t ln = name.n < sizeof(lname) - 1 ? (size_t)name.n : sizeof(lname) - 1;
        for (size_t i = 0; i < ln; i++)
            lname[i] = (char)((name.p[i] >= 'A' && name.p[i] <= 'Z') ? name.p[i] + 32 : name.p[i]);
        lname[ln] = 0;
        int jina = 0;
        if (has_pre == 1) {
            char lpre[64];
            size_t pn = pre.n < sizeof(lpre) - 1 ? (size_t)pre.n : sizeof(lpre) - 1;
            memcpy(lpre, pre.p, pn); lpre[pn] = 0;
            jina = strstr(lpre, "jina-v2-de") || strstr(lpre, "jina-v2-es") || strstr(lpre, "jina-v2-code");
        }
        if (!jina && arch.n && arch.n < 64) {
            char larch[64];
            memcpy(larch, arch.p, (size_t)arch.n); larch[arch.n] = 0;
            jina = strstr(larch, "nomic-bert-moe") || strstr(larch, "jina-bert-v3");
        }
        if (jina) {
            int32_t id = tbc__vocab_lookup(v, "<mask>", 6);
            if (id >= 0) v->attr[id] |= TBC__ATTR_LSTRIP;
        } else if (strstr(lname, "phi-3") || strstr(lname, "phi3")) {
            static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
            for (int32_t k = 0; k < v->n_special; k++) v->attr[v->special[k]] |= TBC__ATTR_RSTRIP;
            int32_t id = tbc__vocab_lookup(v, "</s>", 4);
            if (id >= 0) v->attr[id] |= TBC__ATTR_RSTRIP;
            for (const char *const *s = keep; *s; s++) {
                id = tbc__vocab_lookup(v, *s, strlen(*s));
                if (id >= 0) v->attr[id] &= (uint16_t)~TBC__ATTR_RSTRIP;
            }
        } else if (strstr(lname, "modern-bert")) {
            int32_t id = tbc__vocab_lookup(v, "[MASK]", 6);
            if (id >= 0) v->attr[id] |= TBC__ATTR_LSTRIP;
        }
    }

    // >> byte tables
    if (v->type == TBC__VOCAB_BPE) {
        int n = 0;
        for (int b = 0; b < 324; b++) v->cp_byte[b] = -1;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
            v->byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
            v->cp_byte[v->byte_cp[b]] = (int16_t)b;
        }
        for (int b = 0; b < 256; b++) {
            char u[4];
            int un = tbc__utf8_put(v->byte_cp[b], u);
            v->byte_tok[b] = tbc__vocab_lookup(v, u, (uint64_t)un);
        }
    } else {
        for (int b = 0; b < 256; b++) {
            char hex[8], one[1];
            snprintf(hex, sizeof(hex), "<0x%02X>", b);
            one[0] = (char)b;
            int32_t id = tbc__vocab_lookup(v, hex, 6);
            if (id < 0) id = tbc__vocab_lookup(v, one, 1);
            if (id < 0) id = v->unk;  // llama.cpp would throw here; the unknown token is the graceful choice
            v->byte_tok[b] = id;
        }
    }

    // >> merges
    if (v->type == TBC__VOCAB_BPE) {
        r = tbc__gguf_get_arr(g, "tokenizer.ggml.merges", TBC_GGUF_STRING, &merges, err);
        if (r < 0) { rc = TBC_ERR_KEY_TYPE; goto fail; }
        if (r == 0) {
            tbc__error_set(err, TBC_ERR_KEY_MISSING, "metadata key 'tokenizer.ggml.merges' is missing");
            rc = TBC_ERR_KEY_MISSING;
            goto fail;
        }
        if (merges->count > (uint64_t)INT32_MAX / 4) {
            tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.merges has too many entries");
            rc = TBC_ERR_TOKENIZER;
            goto fail;
        }
        v->n_merges = (int32_t)merges->count;
        v->merge_cap = 16;
        while (v->merge_cap < 2 * (uint64_t)v->n_merges) v->merge_cap <<= 1;
        v->merge_slot = (tbc__merge *)TBC_MALLOC((size_t)v->merge_cap * sizeof(tbc__merge));
        if (!v->merge_slot) goto oom;
        for (uint64_t i = 0; i < v->merge_cap; i++) v->merge_slot[i].left = -1;
        for (int32_t i = 0; i < v->n_merges; i++) {
            tbc__str s = merges->strs[i];
            uint64_t sp = 1;  // the first space after the first byte separates the parts
            while (sp < s.n && s.p[sp] != ' ') sp++;
            if (s.n < 3 || sp >= s.n) {
                tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.merges[%d] '%.*s' is not of the form 'a b'",
                               (int)i, (int)(s.n > 64 ? 64 : s.n), s.p);
                rc = TBC_ERR_TOKENIZER;
                goto fail;
            }
            int32_t a = tbc__vocab_lookup(v, s.p, sp), b = tbc__vocab_lookup(v, s.p + sp + 1, s.n - sp - 1);
            if (a < 0 || b < 0) {
                tbc__error_set(err, TBC_ERR_TOKENIZER, "tokenizer.ggml.merges[%d] '%.*s' refers to a token that is "
                               "not in the vocabulary", (int)i, (int)(s.n > 64 ? 64 : s.n), s.p);
                rc = TBC_ERR_TOKENIZER;
                goto fail;
            }
            if (tbc__merge_find(v, a, b)) continue;  // the first (lowest) rank wins, as in llama.cpp
            uint64_t h = tbc__merge_hash(a, b) & (v->merge_cap - 1);
            while (v->merge_slot[h].left >= 0) h = (h + 1) & (v->merge_cap - 1);
            v->merge_slot[h].left = a;
            v->merge_slot[h].right = b;
            v->merge_slot[h].rank = i;
            v->merge_slot[h].result = tbc__vocab_lookup2(v, s.p, sp, s.p + sp + 1, s.n - sp - 1);
        }
    }

    if ((rc = tbc__vocab_build_pieces(v, err)) != TBC_OK) goto fail;
    TBC_FREE(tmp);
    return TBC_OK;
oom:
    rc = TBC_ERR_OUT_OF_MEMORY;
    tbc__error_set(err, rc, "no memory for the vocabulary");
fail:
    TBC_FREE(tmp);
    tbc__vocab_free(v);
    return rc;
}

// >>tokenizer: queries

static int64_t tbc__token_to_piece(const tbc__vocab *v, int32_t id, int render_special, char *buf, size_t cap) {
    if (!v || id < 0 || id >= v->n_tokens) return -1;
    if (!render_special && (v->attr[id] & (TBC__ATTR_UNKNOWN | TBC__ATTR_CONTROL))) return 0;
    uint64_t n = v->piece_off[id + 1] - v->piece_off[id];
    if (buf && cap) memcpy(buf, v->piece + v->piece_off[id], (size_t)(n < cap ? n : cap));
    return (int64_t)n;
}

static int tbc__vocab_is_eog(const tbc__vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n_tokens && v->eog[id];
}

// >>tokenizer: tokenization

// Output sink: counts every id, stores those that fit.
typedef struct tbc__tok_out {
    int32_t *out;
    int64_t cap, n;
} tbc__tok_out;

static void tbc__emit(tbc__tok_out *o, int32_t id) {
    if (o->n < o->cap) o->out[o->n] = id;
    o->n++;
}

typedef struct tbc__sym {
    int32_t prev, next;
    int32_t start, n;   // bytes in the session buffer; n = 0 once merged away
    int32_t id;         // BPE: token of the text, -1 when it is none
} tbc__sym;

typedef struct tbc__bigram {
    float score;        // SPM: higher first
    int32_t rank;       // BPE: lower first
    int32_t left, right;
    int32_t a, b;       // SPM: a = byte size; BPE: the ids of the two parts when queued
} tbc__bigram;

typedef struct tbc__frag {
    int32_t tok;        // -1: raw text
    int32_t next;
    size_t off, len;
} tbc__frag;

typedef struct tbc__tok_scratch {
    char *buf; size_t buf_cap;
    uint32_t *cp; size_t cp_cap;
    uint8_t *fl; size_t fl_cap;
    uint32_t *la; size_t la_cap;
    uint32_t *lb; size_t lb_cap;
    tbc__sym *sym; size_t sym_cap;
    tbc__bigram *heap; size_t heap_cap; size_t heap_n;
    tbc__frag *frag; size_t frag_cap; size_t frag_n;
    int spm;            // heap order
} tbc__tok_scratch;

static void tbc__scratch_free(tbc__tok_scratch *s) {
    TBC_FREE(s->buf); TBC_FREE(s->cp); TBC_FREE(s->fl); TBC_FREE(s->la); TBC_FREE(s->lb);
    TBC_FREE(s->sym); TBC_FREE(s->heap); TBC_FREE(s->frag);
}

static int tbc__bigram_before(const tbc__tok_scratch *s, const tbc__bigram *x, const tbc__bigram *y) {
    if (s->spm) return x->score > y->score || (x->score == y->score && x->left < y->left);
    return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

static void tbc__heap_push(tbc__tok_scratch *s, const tbc__bigram *e) {
    size_t i = s->heap_n++;  // capacity reserved by the caller
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tbc__bigram_before(s, e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = *e;
}

static tbc__bigram tbc__heap_pop(tbc__tok_scratch *s) {
    tbc__bigram top = s->heap[0], last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tbc__bigram_before(s, &s->heap[c + 1], &s->heap[c])) c++;
        if (!tbc__bigram_before(s, &s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

// isspace() of the C locale, which llama.cpp uses to strip around special tokens.
static int tbc__is_cspace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// Splits the raw text at special tokens (llama.cpp's order: each special token, longest first, over every
// remaining text fragment, leftmost occurrences first). Builds the fragment list in s->frag (head = 0).
static int tbc__partition(const tbc__vocab *v, const char *text, size_t len, int parse_special, tbc__tok_scratch *s) {
    s->frag_n = 0;
    if (len == 0) return 1;
    if (!tbc__grow((void **)&s->frag, &s->frag_cap, 1, sizeof(tbc__frag))) return 0;
    s->frag[0].tok = -1; s->frag[0].next = -1; s->frag[0].off = 0; s->frag[0].len = len;
    s->frag_n = 1;
    for (int32_t k = 0; k < v->n_special; k++) {
        int32_t id = v->special[k];
        uint16_t a = v->attr[id];
        if (!parse_special && (a & (TBC__ATTR_CONTROL | TBC__ATTR_UNKNOWN))) continue;
        uint64_t tn;
        const char *t = tbc__vocab_text(v, id, &tn);
        if (tn == 0 || tn > len) continue;
        for (int32_t f = 0; f >= 0; f = s->frag[f].next) {
            if (s->frag[f].tok >= 0) continue;
            size_t off = s->frag[f].off, flen = s->frag[f].len;
            // find the first occurrence of t in text[off, off+flen)
            const char *base = text + off;
            size_t pos = (size_t)-1;
            for (size_t i = 0; i + tn <= flen;) {
                const char *q = (const char *)memchr(base + i, (unsigned char)t[0], flen - (size_t)tn + 1 - i);
                if (!q) break;
                i = (size_t)(q - base);
                if (memcmp(q, t, (size_t)tn) == 0) { pos = i; break; }
                i++;
            }
            if (pos == (size_t)-1) continue;
            // [left text] [token] [right text]: the current node becomes the left part (or the token)
            size_t left_len = pos, right_off = off + pos + (size_t)tn, right_len = flen - pos - (size_t)tn;
            if (a & TBC__ATTR_LSTRIP)
                while (left_len > 0 && tbc__is_cspace(text[off + left_len - 1])) left_len--;
            if (a & TBC__ATTR_RSTRIP)
                while (right_len > 0 && tbc__is_cspace(text[right_off])) { right_off++; right_len--; }
            if (!tbc__grow((void **)&s->frag, &s->frag_cap, s->frag_n + 2, sizeof(tbc__frag))) return 0;
            int32_t after = s->frag[f].next, cur = f;
            if (left_len > 0) {
                s->frag[f].len = left_len;
                int32_t tk = (int32_t)s->frag_n++;
                s->frag[tk].tok = id; s->frag[tk].off = 0; s->frag[tk].len = 0;
                s->frag[f].next = tk;
                cur = tk;
            } else {
                s->frag[f].tok = id; s->frag[f].off = 0; s->frag[f].len = 0;
            }
            if (right_len > 0) {
                int32_t rt = (int32_t)s->frag_n++;
                s->frag[rt].tok = -1; s->frag[rt].off = right_off; s->frag[rt].len = right_len;
                s->frag[cur].next = rt;
                s->frag[rt].next = after;
                f = cur;  // the loop step moves to the right part, which is searched again
            } else {
                s->frag[cur].next = after;
                f = cur;
            }
        }
    }
    return 1;
}

// SentencePiece-style merging of one fragment held in s->buf[0, n).
static int tbc__spm_session(const tbc__vocab *v, tbc__tok_scratch *s, size_t n, tbc__tok_out *o) {
    if (n == 0) return 1;
    size_t nsym = 0;
    if (!tbc__grow((void **)&s->sym, &s->sym_cap, n, sizeof(tbc__sym))) return 0;
    if (n > SIZE_MAX / 3 || !tbc__grow((void **)&s->heap, &s->heap_cap, 3 * n, sizeof(tbc__bigram))) return 0;
    for (size_t off = 0; off < n;) {
        size_t l = tbc__utf8_len((uint8_t)s->buf[off]);
        if (l > n - off) l = n - off;
        tbc__sym *y = &s->sym[nsym];
        y->start = (int32_t)off; y->n = (int32_t)l; y->id = -1;
        y->prev = (int32_t)nsym - 1;
        off += l;
        y->next = off == n ? -1 : (int32_t)nsym + 1;
        nsym++;
    }
    s->spm = 1;
    s->heap_n = 0;
    for (size_t i = 1; i < nsym; i++) {
        int32_t id = tbc__vocab_lookup(v, s->buf + s->sym[i - 1].start, (uint64_t)(s->sym[i - 1].n + s->sym[i].n));
        if (id < 0) continue;
        tbc__bigram e;
        e.score = v->score[id]; e.rank = 0; e.left = (int32_t)i - 1; e.right = (int32_t)i;
        e.a = s->sym[i - 1].n + s->sym[i].n; e.b = 0;
        tbc__heap_push(s, &e);
    }
    while (s->heap_n) {
        tbc__bigram e = tbc__heap_pop(s);
        tbc__sym *L = &s->sym[e.left], *R = &s->sym[e.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != e.a) continue;  // stale
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) s->sym[R->next].prev = e.left;
        int32_t pair[2][2];
        pair[0][0] = L->prev; pair[0][1] = e.left;
        pair[1][0] = e.left; pair[1][1] = L->next;
        for (int k = 0; k < 2; k++) {
            int32_t l = pair[k][0], r = pair[k][1];
            if (l < 0 || r < 0) continue;
            int32_t id = tbc__vocab_lookup(v, s->buf + s->sym[l].start, (uint64_t)(s->sym[l].n + s->sym[r].n));
            if (id < 0) continue;
            tbc__bigram x;
            x.score = v->score[id]; x.rank = 0; x.left = l; x.right = r; x.a = s->sym[l].n + s->sym[r].n; x.b = 0;
            tbc__heap_push(s, &x);
        }
    }
    for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
        const tbc__sym *y = &s->sym[i];
        int32_t id = tbc__vocab_lookup(v, s->buf + y->start, (uint64_t)y->n);
        if (id >= 0) { tbc__emit(o, id); continue; }
        for (int32_t k = 0; k < y->n; k++) {  // byte fallback
            int32_t b = v->byte_tok[(uint8_t)s->buf[y->start + k]];
            if (b >= 0) tbc__emit(o, b);
        }
    }
    return 1;
}

// >>tokenizer: pre-tokenizers. Each splits code points [ini, end) into words, appending word lengths to *out.
// fl[i] is tbc__ucat(cp[i]); positions outside [ini, end) read as "none" (TBC__FL_NONE), as llama.cpp's splitters
// see them.
#define TBC__FL_NONE 0x10
#define TBC__FL_IS_LETTER(f) (((f) & 0x17) == TBC__UCAT_LETTER)
#define TBC__FL_IS_NUMBER(f) (((f) & 0x17) == TBC__UCAT_NUMBER)
#define TBC__FL_IS_SPACE(f) (((f) & TBC__UCAT_WHITESPACE) != 0)

typedef struct tbc__split {
    const uint32_t *cp;
    const uint8_t *fl;
    uint32_t ini, end, prev_end;
    uint32_t *out;
    size_t n_out;
} tbc__split;

static uint8_t tbc__sp_fl(const tbc__split *s, uint32_t pos) { return pos < s->end ? s->fl[pos] : TBC__FL_NONE; }
static uint32_t tbc__sp_cp(const tbc__split *s, uint32_t pos) { return pos < s->end ? s->cp[pos] : 0xFFFFFFFFu; }
static void tbc__sp_word(tbc__split *s, uint32_t end) {
    if (end > s->prev_end) s->out[s->n_out++] = end - s->prev_end;
    s->prev_end = end;
}
static uint32_t tbc__ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Contractions 's 't 're 've 'm 'll 'd at pos; returns their length (0: none).
static uint32_t tbc__sp_contraction(const tbc__split *s, uint32_t pos, int any_case) {
    if (s->cp[pos] != '\'' || pos + 1 >= s->end) return 0;
    uint32_t c1 = s->cp[pos + 1];
    if (any_case) c1 = tbc__ascii_lower(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
    if (pos + 2 >= s->end) return 0;
    uint32_t c2 = s->cp[pos + 2];
    if (any_case) c2 = tbc__ascii_lower(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
    return 0;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
static void tbc__split_gpt2(tbc__split *s) {
    uint32_t pos = s->ini;
    s->prev_end = s->ini;
    while (pos < s->end) {
        uint32_t c = s->cp[pos];
        uint8_t f = s->fl[pos];
        uint32_t k = tbc__sp_contraction(s, pos, 0);
        if (k) { pos += k; tbc__sp_word(s, pos); continue; }
        uint8_t f2 = c == ' ' ? tbc__sp_fl(s, pos + 1) : f;
        if (TBC__FL_IS_LETTER(f2) || TBC__FL_IS_NUMBER(f2)) {
            int letter = TBC__FL_IS_LETTER(f2);
            pos += c == ' ';
            while (letter ? TBC__FL_IS_LETTER(tbc__sp_fl(s, pos)) : TBC__FL_IS_NUMBER(tbc__sp_fl(s, pos))) pos++;
            tbc__sp_word(s, pos);
            continue;
        }
        if (!(TBC__FL_IS_SPACE(f2) || TBC__FL_IS_LETTER(f2) || TBC__FL_IS_NUMBER(f2)) && !(f2 & TBC__FL_NONE)) {
            pos += c == ' ';
            for (;;) {
                uint8_t g = tbc__sp_fl(s, pos);
                if (TBC__FL_IS_SPACE(g) || TBC__FL_IS_LETTER(g) || TBC__FL_IS_NUMBER(g) || (g & TBC__FL_NONE)) break;
                pos++;
            }
            tbc__sp_word(s, pos);
            continue;
        }
        uint32_t nws = 0;
        while (TBC__FL_IS_SPACE(tbc__sp_fl(s, pos + nws))) nws++;
        if (nws > 1 && pos + nws < s->end) { pos += nws - 1; tbc__sp_word(s, pos); continue; }  // \s+(?!\S)
        if (nws > 0) { pos += nws; tbc__sp_word(s, pos); continue; }
        tbc__sp_word(s, ++pos);
    }
}

// Llama 3 (max_digits 3) and Qwen2 (max_digits 1):
// (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
static void tbc__split_llama3(tbc__split *s, uint32_t max_digits) {
    uint32_t pos = s->ini;
    s->prev_end = s->ini;
    while (pos < s->end) {
        uint32_t c = s->cp[pos];
        uint8_t f = s->fl[pos];
        uint32_t k = tbc__sp_contraction(s, pos, 1);
        if (k) { pos += k; tbc__sp_word(s, pos); continue; }
        if (!(c == '\r' || c == '\n' || TBC__FL_IS_NUMBER(f)) &&
            (TBC__FL_IS_LETTER(f) || TBC__FL_IS_LETTER(tbc__sp_fl(s, pos + 1)))) {
            pos++;
            while (TBC__FL_IS_LETTER(tbc__sp_fl(s, pos))) pos++;
            tbc__sp_word(s, pos);
            continue;
        }
        if (TBC__FL_IS_NUMBER(f)) {
            uint32_t start = pos;
            while (TBC__FL_IS_NUMBER(tbc__sp_fl(s, pos))) {
                pos++;
                if (pos - start >= max_digits) { tbc__sp_word(s, pos); start = pos; }
            }
            tbc__sp_word(s, pos);
            continue;
        }
        uint8_t f2 = c == ' ' ? tbc__sp_fl(s, pos + 1) : f;
        if (!(TBC__FL_IS_SPACE(f2) || TBC__FL_IS_LETTER(f2) || TBC__FL_IS_NUMBER(f2))) {
            pos += c == ' ';
            for (;;) {
                uint8_t g = tbc__sp_fl(s, pos);
                if (TBC__FL_IS_SPACE(g) || TBC__FL_IS_LETTER(g) || TBC__FL_IS_NUMBER(g) || (g & TBC__FL_NONE)) break;
                pos++;
            }
            for (uint32_t d = tbc__sp_cp(s, pos); d == '\r' || d == '\n'; d = tbc__sp_cp(s, ++pos)) {}
            tbc__sp_word(s, pos);
            continue;
        }
        uint32_t nws = 0, last_rn = 0;
        while (TBC__FL_IS_SPACE(tbc__sp_fl(s, pos + nws))) {
            uint32_t d = s->cp[pos + nws];
            if (d == '\r' || d == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { pos = last_rn; tbc__sp_word(s, pos); continue; }                      // \s*[\r\n]+
        if (nws > 1 && pos + nws < s->end) { pos += nws - 1; tbc__sp_word(s, pos); continue; }  // \s+(?!\S)
        if (nws > 0) { pos += nws; tbc__sp_word(s, pos); continue; }
        tbc__sp_word(s, ++pos);
    }
}

// Runs of code points in / not in a class (llama.cpp's std::regex "[class]+" splits: matches and the gaps between).
static int tbc__in_punct_class(uint32_t cp, uint8_t f) {  // [\p{P}\$\+<=>\^~\|] as llama.cpp collapses it
    if (cp < 128) return cp != '`' && ((f & 7) == TBC__UCAT_PUNCTUATION || cp == '$' || cp == '+' || cp == '<' ||
                                       cp == '=' || cp == '>' || cp == '^' || cp == '~' || cp == '|');
    return !(f & TBC__UCAT_WHITESPACE) && (f & 7) == TBC__UCAT_PUNCTUATION;
}
static int tbc__in_number_class(uint32_t cp, uint8_t f) {  // \p{N} as llama.cpp collapses it
    if (cp < 128) return cp >= '0' && cp <= '9';
    return !(f & TBC__UCAT_WHITESPACE) && (f & 7) == TBC__UCAT_NUMBER;
}
static int tbc__in_class(const tbc__split *s, uint32_t pos, int number) {
    return number ? tbc__in_number_class(s->cp[pos], s->fl[pos]) : tbc__in_punct_class(s->cp[pos], s->fl[pos]);
}
static void tbc__split_runs(tbc__split *s, int number) {
    uint32_t pos = s->ini;
    s->prev_end = s->ini;
    while (pos < s->end) {
        int in = tbc__in_class(s, pos, number);
        while (pos < s->end && tbc__in_class(s, pos, number) == in) pos++;
        tbc__sp_word(s, pos);
    }
}
// [0-9][0-9][0-9]: successive matches of three ASCII digits, gaps between them kept as words.
static void tbc__split_digit3(tbc__split *s) {
    uint32_t pos = s->ini;
    s->prev_end = s->ini;
    while (pos + 3 <= s->end) {
        if (s->cp[pos] - '0' < 10 && s->cp[pos + 1] - '0' < 10 && s->cp[pos + 2] - '0' < 10) {
            tbc__sp_word(s, pos);
            pos += 3;
            tbc__sp_word(s, pos);
        } else {
            pos++;
        }
    }
    tbc__sp_word(s, s->end);
}

// Splits cp[0, n) into words by the vocabulary's pre-tokenizer; returns the word lengths in s->la (count *nw).
static int tbc__pretokenize(const tbc__vocab *v, tbc__tok_scratch *sc, size_t n, size_t *nw) {
    if (!tbc__grow((void **)&sc->la, &sc->la_cap, n + 1, sizeof(uint32_t)) ||
        !tbc__grow((void **)&sc->lb, &sc->lb_cap, n + 1, sizeof(uint32_t)))
        return 0;
    tbc__split s;
    s.cp = sc->cp; s.fl = sc->fl;
    if (v->pre != TBC__PRE_DEFAULT) {
        s.ini = 0; s.end = (uint32_t)n; s.out = sc->la; s.n_out = 0;
        if (v->pre == TBC__PRE_GPT2) tbc__split_gpt2(&s);
        else tbc__split_llama3(&s, v->pre == TBC__PRE_QWEN2 ? 1 : 3);
        *nw = s.n_out;
        return 1;
    }
    // llama.cpp's "default": four splitters, each applied to the words of the previous one.
    size_t cnt = 1;
    sc->la[0] = (uint32_t)n;
    for (int stage = 0; stage < 4; stage++) {
        uint32_t *in = (stage & 1) ? sc->lb : sc->la, *out = (stage & 1) ? sc->la : sc->lb;
        uint32_t at = 0;
        s.out = out; s.n_out = 0;
        for (size_t w = 0; w < cnt; w++) {
            s.ini = at; s.end = at + in[w];
            if (stage == 0) tbc__split_runs(&s, 0);
            else if (stage == 1) tbc__split_gpt2(&s);
            else if (stage == 2) tbc__split_runs(&s, 1);
            else tbc__split_digit3(&s);
            at = s.end;
        }
        cnt = s.n_out;
    }
    *nw = cnt;  // after four stages the words are back in la
    return 1;
}

// Byte-level BPE of one raw-text fragment.
static int tbc__bpe_session(const tbc__vocab *v, tbc__tok_scratch *s, const char *text, size_t len, tbc__tok_out *o) {
    if (len == 0) return 1;
    size_t n = 0, nw = 0;
    if (!tbc__grow((void **)&s->cp, &s->cp_cap, len, sizeof(uint32_t)) ||
        !tbc__grow((void **)&s->fl, &s->fl_cap, len, 1))
        return 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = tbc__utf8_next((const uint8_t *)text, len, &i);
        s->cp[n] = cp;
        s->fl[n] = tbc__ucat(cp);
        n++;
    }
    if (!tbc__pretokenize(v, s, n, &nw)) return 0;
    uint32_t at = 0;
    for (size_t w = 0; w < nw; w++) {
        uint32_t wl = s->la[w];
        // UTF-8 bytes of the word, each written as its GPT-2 character (1 or 2 bytes)
        size_t need = (size_t)wl * 8;
        if (!tbc__grow((void **)&s->buf, &s->buf_cap, need, 1) ||
            !tbc__grow((void **)&s->sym, &s->sym_cap, (size_t)wl * 4, sizeof(tbc__sym)) ||
            !tbc__grow((void **)&s->heap, &s->heap_cap, (size_t)wl * 12, sizeof(tbc__bigram)))
            return 0;
        size_t bn = 0, nsym = 0;
        for (uint32_t k = at; k < at + wl; k++) {
            char u[4];
            int un = tbc__utf8_put(s->cp[k], u);
            for (int j = 0; j < un; j++) {
                uint8_t b = (uint8_t)u[j];
                tbc__sym *y = &s->sym[nsym];
                y->start = (int32_t)bn;
                y->n = tbc__utf8_put(v->byte_cp[b], s->buf + bn);
                y->id = v->byte_tok[b];
                y->prev = (int32_t)nsym - 1;
                y->next = (int32_t)nsym + 1;
                bn += (size_t)y->n;
                nsym++;
            }
        }
        at += wl;
        if (nsym == 0) continue;
        s->sym[nsym - 1].next = -1;
        if (v->ignore_merges) {
            int32_t id = tbc__vocab_lookup(v, s->buf, (uint64_t)bn);
            if (id >= 0) { tbc__emit(o, id); continue; }
        }
        s->spm = 0;
        s->heap_n = 0;
        for (size_t i = 1; i < nsym; i++) {
            const tbc__merge *m = tbc__merge_find(v, s->sym[i - 1].id, s->sym[i].id);
            if (!m) continue;
            tbc__bigram e;
            e.score = 0; e.rank = m->rank; e.left = (int32_t)i - 1; e.right = (int32_t)i;
            e.a = s->sym[i - 1].id; e.b = s->sym[i].id;
            tbc__heap_push(s, &e);
        }
        while (s->heap_n) {
            tbc__bigram e = tbc__heap_pop(s);
            tbc__sym *L = &s->sym[e.left], *R = &s->sym[e.right];
            if (L->n == 0 || R->n == 0 || L->id != e.a || R->id != e.b) continue;  // stale
            const tbc__merge *m = tbc__merge_find(v, e.a, e.b);
            L->n += R->n;
            R->n = 0;
            L->id = m->result;
            L->next = R->next;
            if (R->next >= 0) s->sym[R->next].prev = e.left;
            int32_t pair[2][2];
            pair[0][0] = L->prev; pair[0][1] = e.left;
            pair[1][0] = e.left; pair[1][1] = L->next;
            for (int k = 0; k < 2; k++) {
                int32_t l = pair[k][0], r = pair[k][1];
                if (l < 0 || r < 0) continue;
                const tbc__merge *mm = tbc__merge_find(v, s->sym[l].id, s->sym[r].id);
                if (!mm) continue;
                tbc__bigram x;
                x.score = 0; x.rank = mm->rank; x.left = l; x.right = r; x.a = s->sym[l].id; x.b = s->sym[r].id;
                tbc__heap_push(s, &x);
            }
        }
        for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
            const tbc__sym *y = &s->sym[i];
            if (y->id >= 0) { tbc__emit(o, y->id); continue; }
            for (int32_t k = 0; k < y->n; k++) {  // llama.cpp: each byte of the text as a one-byte token, if any
                int32_t id = tbc__vocab_lookup(v, s->buf + y->start + k, 1);
                if (id >= 0) tbc__emit(o, id);
            }
        }
    }
    return 1;
}

static tbc_result tbc__tokenize(const tbc__vocab *v, const char *text, size_t len, int add_special, int parse_special,
                                int32_t *out, int64_t cap, int64_t *n_out) {
    if (!v || !v->n_tokens || (!text && len) || (!out && cap > 0) || cap < 0 || !n_out) return TBC_ERR_INVALID_ARGUMENT;
    if (len > (size_t)INT32_MAX / 8) return TBC_ERR_INVALID_ARGUMENT;  // symbol indices are 32-bit
    tbc__tok_scratch s;
    tbc__tok_out o;
    int ok = 1;
    memset(&s, 0, sizeof(s));
    o.out = out; o.cap = cap; o.n = 0;
    if (!tbc__partition(v, text, len, parse_special, &s)) ok = 0;
    if (ok && add_special && v->add_bos) tbc__emit(&o, v->bos);
    int prev_special = 1;  // SPM: the first text gets the space prefix, as does text after a special token
    for (int32_t f = s.frag_n ? 0 : -1; ok && f >= 0; f = s.frag[f].next) {
        const tbc__frag *fr = &s.frag[f];
        if (fr->tok >= 0) { tbc__emit(&o, fr->tok); prev_special = 1; continue; }
        if (v->type == TBC__VOCAB_SPM) {
            size_t bn = 0;
            if (!tbc__grow((void **)&s.buf, &s.buf_cap, 3 * fr->len + 3, 1)) { ok = 0; break; }
            if (v->add_space_prefix && prev_special) { memcpy(s.buf, "\xe2\x96\x81", 3); bn = 3; }
            for (size_t i = 0; i < fr->len; i++) {
                char c = text[fr->off + i];
                if (c == ' ') { memcpy(s.buf + bn, "\xe2\x96\x81", 3); bn += 3; }
                else s.buf[bn++] = c;
            }
            ok = tbc__spm_session(v, &s, bn, &o);
            prev_special = 0;
        } else {
            ok = tbc__bpe_session(v, &s, text + fr->off, fr->len, &o);
        }
    }
    if (ok && add_special && v->add_eos) tbc__emit(&o, v->eos);
    tbc__scratch_free(&s);
    if (!ok) return TBC_ERR_OUT_OF_MEMORY;
    *n_out = o.n;
    return o.n > cap ? TBC_ERR_BUFFER_TOO_SMALL : TBC_OK;
}

// >>chat templates
// We do not run Jinja. Like llama.cpp's llm_chat_detect_template, a template is recognised by the marker strings it
// contains, and rendered by fixed code that produces the same bytes llama.cpp's llm_chat_apply_template produces.
//
// Template names (tbc__chat_detect's answers, tbc__chat_render's input) are llama.cpp's built-in names, plus
// "mistral" for the plain [INST] form without <<SYS>> (Mistral 7B v0.1/v0.2), which llama.cpp renders as "llama2":
//   chatml                                         <|im_start|>role\n...<|im_end|>\n          (Qwen, SmolLM, Hermes)
//   llama2, mistral                                [INST] ... [/INST]...</s>, system as a plain first line
//   llama2-sys, llama2-sys-bos, llama2-sys-strip   [INST] <<SYS>>\n...\n<</SYS>>\n\n ...          (Llama 2 chat)
//   mistral-v1, mistral-v3, mistral-v3-tekken      the official Mistral cookbook templates
//   mistral-v7, mistral-v7-tekken                  [SYSTEM_PROMPT]...[/SYSTEM_PROMPT][INST]...
//   llama3                                         <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
//   phi3                                           <|role|>\n...<|end|>\n
//   gemma                                          <start_of_turn>user\n...<end_of_turn>\n, system folded into user
// The family of a name is the part before its first '-' (tbc__chat_family).

// tbc_chat_apply uses these only when the tokenizer part is present, and tbc__chat_family is for callers that want
// the bare family: none of them may trip -Wunused-function in a build that leaves them unused.
#if defined(__GNUC__) || defined(__clang__)
#define TBC__CHAT_UNUSED __attribute__((unused))
#else
#define TBC__CHAT_UNUSED
#endif

typedef enum tbc__chat_kind {
    TBC__CHAT_CHATML = 0,
    TBC__CHAT_LLAMA2,           // no system support: system content becomes a plain first line
    TBC__CHAT_LLAMA2_SYS,       // <<SYS>> block
    TBC__CHAT_LLAMA2_SYS_BOS,   // ... and BOS before every later [INST]
    TBC__CHAT_LLAMA2_SYS_STRIP, // ... and every content trimmed
    TBC__CHAT_MISTRAL_V1,
    TBC__CHAT_MISTRAL_V3,
    TBC__CHAT_MISTRAL_V3_TEKKEN,
    TBC__CHAT_MISTRAL_V7,
    TBC__CHAT_MISTRAL_V7_TEKKEN,
    TBC__CHAT_LLAMA3,
    TBC__CHAT_PHI3,
    TBC__CHAT_GEMMA
} tbc__chat_kind;

typedef struct tbc__chat_name {
    const char *name;
    tbc__chat_kind kind;
} tbc__chat_name;

static const tbc__chat_name tbc__chat_names[] = {
    {"chatml", TBC__CHAT_CHATML},
    {"llama2", TBC__CHAT_LLAMA2},
    {"mistral", TBC__CHAT_LLAMA2},
    {"llama2-sys", TBC__CHAT_LLAMA2_SYS},
    {"llama2-sys-bos", TBC__CHAT_LLAMA2_SYS_BOS},
    {"llama2-sys-strip", TBC__CHAT_LLAMA2_SYS_STRIP},
    {"mistral-v1", TBC__CHAT_MISTRAL_V1},
    {"mistral-v3", TBC__CHAT_MISTRAL_V3},
    {"mistral-v3-tekken", TBC__CHAT_MISTRAL_V3_TEKKEN},
    {"mistral-v7", TBC__CHAT_MISTRAL_V7},
    {"mistral-v7-tekken", TBC__CHAT_MISTRAL_V7_TEKKEN},
    {"llama3", TBC__CHAT_LLAMA3},
    {"phi3", TBC__CHAT_PHI3},
    {"gemma", TBC__CHAT_GEMMA},
};
#define TBC__CHAT_N_NAMES (sizeof(tbc__chat_names) / sizeof(tbc__chat_names[0]))

// Index into tbc__chat_names of an exact name, or -1.
static int tbc__chat_lookup(const char *s, size_t len) {
    for (size_t i = 0; i < TBC__CHAT_N_NAMES; i++) {
        const char *nm = tbc__chat_names[i].name;
        if (strlen(nm) == len && memcmp(nm, s, len) == 0) return (int)i;
    }
    return -1;
}

// The family of a template name ("llama2-sys-bos" -> "llama2"), as a static string; NULL for an unknown name.
TBC__CHAT_UNUSED static const char *tbc__chat_family(const char *name) {
    static const char *const families[] = {"chatml", "llama2", "mistral", "llama3", "phi3", "gemma"};
    if (!name) return NULL;
    size_t n = strcspn(name, "-");
    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        if (strlen(families[i]) == n && memcmp(families[i], name, n) == 0 && tbc__chat_lookup(name, strlen(name)) >= 0)
            return families[i];
    return NULL;
}

// Byte-wise substring search over a length-delimited template (it may hold NULs; memmem is not portable).
static int tbc__chat_has(const char *s, size_t len, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 1;
    if (n > len) return 0;
    const char *end = s + (len - n) + 1;
    for (const char *p = s; p < end; p++) {
        p = (const char *)memchr(p, (unsigned char)needle[0], (size_t)(end - p));
        if (!p) return 0;
        if (memcmp(p, needle, n) == 0) return 1;
    }
    return 0;
}

// Recognises a chat template (the text of tokenizer.chat_template, or a template name). Returns a name from
// tbc__chat_names (static storage) or NULL when absent or unknown. The marker tests follow llama.cpp's order, so
// a template that llama.cpp would assign to a family we do not render (Phi-4, Zephyr, ...) gives NULL rather than
// a wrong family.
TBC__CHAT_UNUSED static const char *tbc__chat_detect(const char *tmpl, size_t len) {
    if (!tmpl || len == 0) return NULL;
    int named = tbc__chat_lookup(tmpl, len);
    if (named >= 0) return tbc__chat_names[named].name;
#define TBC__HAS(s) tbc__chat_has(tmpl, len, s)
    if (TBC__HAS("<|im_start|>")) {
        if (TBC__HAS("<|im_sep|>")) return NULL;           // Phi-4
        if (TBC__HAS("<end_of_utterance>")) return NULL;   // SmolVLM: <|im_start|> is its BOS, not ChatML
        return "chatml";
    }
    if ((len >= 7 && memcmp(tmpl, "mistral", 7) == 0) || TBC__HAS("[INST]")) {
        if (TBC__HAS("[SYSTEM_PROMPT]")) return "mistral-v7";
        if (TBC__HAS("' [INST] ' + system_message") || TBC__HAS("[AVAILABLE_TOOLS]")) {
            if (TBC__HAS(" [INST]")) return "mistral-v1";
            if (TBC__HAS("\"[INST]\"")) return "mistral-v3-tekken";
            return "mistral-v3";
        }
        if (TBC__HAS("content.strip()")) return "llama2-sys-strip";
        if (TBC__HAS("bos_token + '[INST]")) return "llama2-sys-bos";
        if (TBC__HAS("<<SYS>>")) return "llama2-sys";
        return "mistral";   // llama.cpp's plain "llama2": [INST] without a system block (Mistral 7B v0.1/v0.2)
    }
    if (TBC__HAS("<|assistant|>") && TBC__HAS("<|end|>")) return "phi3";
    // Families llama.cpp tests before Gemma and Llama 3 that we do not render: stop here so that their markers
    // don't fall through to a later family.
    if (TBC__HAS("[gMASK]<sop>")) return NULL;                                         // ChatGLM 4
    if (TBC__HAS("<|assistant|>") && TBC__HAS("<|user|>")) return NULL;                // Falcon 3, GLM-Edge, EXAONE
    if (TBC__HAS("<|{{ item['role'] }}|>") && TBC__HAS("<|begin_of_image|>")) return NULL;
    if (TBC__HAS("<|user|>") && TBC__HAS("<|endoftext|>")) return NULL;                // Zephyr
    if (TBC__HAS("bos_token + message['role']")) return NULL;                          // Monarch
    if (TBC__HAS("<start_of_turn>")) return "gemma";
    if (TBC__HAS("'\\n\\nAssistant: ' + eos_token")) return NULL;                      // Orion
    if (TBC__HAS("GPT4 Correct ")) return NULL;                                        // OpenChat
    if (TBC__HAS("USER: ") && TBC__HAS("ASSISTANT: ")) return NULL;                    // Vicuna
    if (TBC__HAS("### Instruction:") && TBC__HAS("<|EOT|>")) return NULL;              // DeepSeek coder
    if (TBC__HAS("<|START_OF_TURN_TOKEN|>") && TBC__HAS("<|USER_TOKEN|>")) return NULL; // Command-R
    if (TBC__HAS("<|start_header_id|>") && TBC__HAS("<|end_header_id|>")) return "llama3";
#undef TBC__HAS
    return NULL;
}

// Output that keeps counting past the end of the buffer, so the caller learns the full length.
typedef struct tbc__chat_out {
    char *buf;
    size_t cap, len;
    int overflow;   // the length no longer fits a size_t
} tbc__chat_out;

static void tbc__chat_put(tbc__chat_out *o, const char *s, size_t n) {
    if (o->overflow) return;
    if (n > SIZE_MAX - o->len) { o->overflow = 1; return; }
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void tbc__chat_puts(tbc__chat_out *o, const char *s) { tbc__chat_put(o, s, strlen(s)); }

// llama.cpp trims with isspace() in the C locale.
static int tbc__chat_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static void tbc__chat_put_trimmed(tbc__chat_out *o, const char *s) {
    size_t a = 0, b = strlen(s);
    while (a < b && tbc__chat_space(s[a])) a++;
    while (b > a && tbc__chat_space(s[b - 1])) b--;
    tbc__chat_put(o, s + a, b - a);
}

static size_t tbc__chat_trimmed_len(const char *s) {
    size_t a = 0, b = strlen(s);
    while (a < b && tbc__chat_space(s[a])) a++;
    while (b > a && tbc__chat_space(s[b - 1])) b--;
    return b - a;
}

enum { TBC__ROLE_SYSTEM = 0, TBC__ROLE_USER = 1, TBC__ROLE_ASSISTANT = 2 };

// Renders messages with template `name` (NULL means "chatml", as in llama.cpp). bos_text/eos_text are the
// vocabulary's BOS/EOS texts, written where the template writes them ("</s>" after an assistant turn in the
// Llama 2 / Mistral forms, "<s>" in llama2-sys-bos); NULL or "" means "<s>" / "</s>", llama.cpp's fixed strings.
// Writes at most cap bytes; the full length goes to *len (also when the buffer is too small). NUL-terminated when
// cap > length; otherwise TBC_ERR_BUFFER_TOO_SMALL and, if cap > 0, the first cap-1 bytes and a NUL.
// Roles other than system/user/assistant and NULL roles/contents are TBC_ERR_TEMPLATE.
TBC__CHAT_UNUSED static tbc_result tbc__chat_render(const char *name, const char *bos_text, const char *eos_text,
                                                    const tbc_chat_message *msgs, size_t n, int add_assistant,
                                                    char *buf, size_t cap, size_t *len, tbc_error *err) {
    if (!len || (n > 0 && !msgs) || (cap > 0 && !buf)) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "chat: %s is NULL",
                       !len ? "len" : (n > 0 && !msgs) ? "messages" : "buf");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (!name) name = "chatml";
    int idx = tbc__chat_lookup(name, strlen(name));
    if (idx < 0) {
        tbc__error_set(err, TBC_ERR_TEMPLATE, "chat template '%.64s' is not one this library can render", name);
        return TBC_ERR_TEMPLATE;
    }
    tbc__chat_kind kind = tbc__chat_names[idx].kind;
    const char *bos = (bos_text && bos_text[0]) ? bos_text : "<s>";
    const char *eos = (eos_text && eos_text[0]) ? eos_text : "</s>";

    // Validate every message first, so no template sees a NULL or a role it cannot express.
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r) {
            tbc__error_set(err, TBC_ERR_TEMPLATE, "chat message %zu has no role", i);
            return TBC_ERR_TEMPLATE;
        }
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
            tbc__error_set(err, TBC_ERR_TEMPLATE,
                           "chat message %zu has role '%.64s'; template '%s' accepts only system, user and assistant",
                           i, r, name);
            return TBC_ERR_TEMPLATE;
        }
        if (!msgs[i].content) {
            tbc__error_set(err, TBC_ERR_TEMPLATE, "chat message %zu (%s) has no content", i, r);
            return TBC_ERR_TEMPLATE;
        }
    }

    tbc__chat_out o;
    o.buf = buf; o.cap = cap; o.len = 0; o.overflow = 0;

    switch (kind) {
    case TBC__CHAT_CHATML:
        for (size_t i = 0; i < n; i++) {
            tbc__chat_puts(&o, "<|im_start|>"); tbc__chat_puts(&o, msgs[i].role); tbc__chat_puts(&o, "\n");
            tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, "<|im_end|>\n");
        }
        if (add_assistant) tbc__chat_puts(&o, "<|im_start|>assistant\n");
        break;

    case TBC__CHAT_MISTRAL_V7:
    case TBC__CHAT_MISTRAL_V7_TEKKEN: {
        const char *sp = kind == TBC__CHAT_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (strcmp(r, "system") == 0) {
                tbc__chat_puts(&o, "[SYSTEM_PROMPT]"); tbc__chat_puts(&o, sp);
                tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, "[/SYSTEM_PROMPT]");
            } else if (strcmp(r, "user") == 0) {
                tbc__chat_puts(&o, "[INST]"); tbc__chat_puts(&o, sp);
                tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, "[/INST]");
            } else {
                tbc__chat_puts(&o, sp); tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, eos);
            }
        }
        break;   // the model answers straight after [/INST]: add_assistant adds nothing
    }

    case TBC__CHAT_MISTRAL_V1:
    case TBC__CHAT_MISTRAL_V3:
    case TBC__CHAT_MISTRAL_V3_TEKKEN: {
        const char *lead = kind == TBC__CHAT_MISTRAL_V1 ? " " : "";
        const char *trail = kind == TBC__CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
        int in_turn = 0;
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (!in_turn) {
                tbc__chat_puts(&o, lead); tbc__chat_puts(&o, "[INST]"); tbc__chat_puts(&o, trail);
                in_turn = 1;
            }
            if (strcmp(r, "system") == 0) {
                tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, "\n\n");
            } else if (strcmp(r, "user") == 0) {
                tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, lead); tbc__chat_puts(&o, "[/INST]");
            } else {
                tbc__chat_puts(&o, trail);
                if (kind == TBC__CHAT_MISTRAL_V3) tbc__chat_put_trimmed(&o, msgs[i].content);
                else tbc__chat_puts(&o, msgs[i].content);
                tbc__chat_puts(&o, eos);
                in_turn = 0;
            }
        }
        break;
    }

    case TBC__CHAT_LLAMA2:
    case TBC__CHAT_LLAMA2_SYS:
    case TBC__CHAT_LLAMA2_SYS_BOS:
    case TBC__CHAT_LLAMA2_SYS_STRIP: {
        int sys_block = kind != TBC__CHAT_LLAMA2;
        int strip = kind == TBC__CHAT_LLAMA2_SYS_STRIP;
        int in_turn = 1;   // the first [INST] is written without BOS: the tokenizer adds that one
        tbc__chat_puts(&o, "[INST] ");
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role, *c = msgs[i].content;
            if (!in_turn) {
                in_turn = 1;
                if (kind == TBC__CHAT_LLAMA2_SYS_BOS) tbc__chat_puts(&o, bos);
                tbc__chat_puts(&o, "[INST] ");
            }
            if (strcmp(r, "system") == 0) {
                if (sys_block) tbc__chat_puts(&o, "<<SYS>>\n");
                if (strip) tbc__chat_put_trimmed(&o, c); else tbc__chat_puts(&o, c);
                tbc__chat_puts(&o, sys_block ? "\n<</SYS>>\n\n" : "\n");
            } else if (strcmp(r, "user") == 0) {
                if (strip) tbc__chat_put_trimmed(&o, c); else tbc__chat_puts(&o, c);
                tbc__chat_puts(&o, " [/INST]");
            } else {
                if (strip) tbc__chat_put_trimmed(&o, c); else tbc__chat_puts(&o, c);
                tbc__chat_puts(&o, eos);
                in_turn = 0;
            }
        }
        break;
    }

    case TBC__CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            tbc__chat_puts(&o, "<|start_header_id|>"); tbc__chat_puts(&o, msgs[i].role);
            tbc__chat_puts(&o, "<|end_header_id|>\n\n"); tbc__chat_put_trimmed(&o, msgs[i].content);
            tbc__chat_puts(&o, "<|eot_id|>");
        }
        if (add_assistant) tbc__chat_puts(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;

    case TBC__CHAT_PHI3:
        for (size_t i = 0; i < n; i++) {
            tbc__chat_puts(&o, "<|"); tbc__chat_puts(&o, msgs[i].role); tbc__chat_puts(&o, "|>\n");
            tbc__chat_puts(&o, msgs[i].content); tbc__chat_puts(&o, "<|end|>\n");
        }
        if (add_assistant) tbc__chat_puts(&o, "<|assistant|>\n");
        break;

    case TBC__CHAT_GEMMA: {
        // Gemma has no system role: system texts (trimmed, concatenated) open the next user turn. They wait from
        // message `pending` on; `pending_len` is their total trimmed length (empty texts add nothing).
        size_t pending = 0, pending_len = 0;
        for (size_t i = 0; i < n; i++) {
            const char *r = msgs[i].role;
            if (strcmp(r, "system") == 0) { pending_len += tbc__chat_trimmed_len(msgs[i].content); continue; }
            int model = strcmp(r, "assistant") == 0;
            tbc__chat_puts(&o, "<start_of_turn>"); tbc__chat_puts(&o, model ? "model" : r); tbc__chat_puts(&o, "\n");
            if (pending_len > 0 && !model) {
                for (size_t j = pending; j < i; j++)
                    if (strcmp(msgs[j].role, "system") == 0) tbc__chat_put_trimmed(&o, msgs[j].content);
                tbc__chat_puts(&o, "\n\n");
                pending_len = 0;
                pending = i + 1;
            } else if (pending_len == 0) {
                pending = i + 1;
            }
            tbc__chat_put_trimmed(&o, msgs[i].content); tbc__chat_puts(&o, "<end_of_turn>\n");
        }
        if (add_assistant) tbc__chat_puts(&o, "<start_of_turn>model\n");
        break;
    }
    }

    if (o.overflow) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "chat: the rendered conversation is too long");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    *len = o.len;
    if (o.len >= cap) {
        if (cap > 0) buf[cap - 1] = '\0';
        tbc__error_set(err, TBC_ERR_BUFFER_TOO_SMALL, "chat: %zu bytes needed (plus NUL), buffer holds %zu",
                       o.len, cap);
        return TBC_ERR_BUFFER_TOO_SMALL;
    }
    buf[o.len] = '\0';
    return TBC_OK;
}

// >>crypto
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
typedef tbc_sha256 tbc__sha256_ctx;  // h: chaining state A..H; n_bytes: length so far; buf: partial block, n_buf < 64

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

TBC__DEF void tbc_sha256_init(tbc_sha256 *c) { tbc__sha256_init(c); }
TBC__DEF void tbc_sha256_update(tbc_sha256 *c, const void *data, size_t n) { tbc__sha256_update(c, data, n); }
TBC__DEF void tbc_sha256_final(tbc_sha256 *c, uint8_t out[32]) { tbc__sha256_final(c, out); }

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
    tbc__vocab vocab;
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
    if (m->has_vocab) tbc__vocab_free(&m->vocab);
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
        if (m->chat_template) m->chat_family = tbc__chat_detect(m->chat_template, strlen(m->chat_template));
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
            if ((uint32_t)(t >> 32) != job || (t & 0xffffffffu) == 0xffffffffu) return;  // another job, or closed
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
    // Close the previous job's ticket before its parameters are overwritten: a worker that read them late can then
    // no longer claim a chunk (its compare-and-swap fails) and so never runs or counts part of the new job.
    __atomic_store_n(&p->ticket, ((uint64_t)p->job << 32) | 0xffffffffu, __ATOMIC_SEQ_CST);
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
// The coordinator's view of the other nodes (>>cluster); a single node has none.
typedef struct tbc__cluster tbc__cluster;

// All-reduce operations: a sum, or per element the value of largest magnitude (the first, in rank order, on ties).
enum { TBC__SUM = 0, TBC__MAXABS = 1 };

// File bytes a shard reads: count runs of len bytes, stride apart, from off.
typedef struct tbc__range {
    uint64_t off, len, stride, count;
} tbc__range;

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
    tbc_type wo_round, down_round;  // widened slices (kept as F32): the activation type one node rounds their input to
} tbc__layer;

struct tbc_session {
    const tbc_model *model;
    tbc_logger log;
    tbc_error last;
    tbc_shard_info shard;
    int n_ctx, n_batch, n_seq;
    int64_t *seq_pos;               // per sequence: tokens in its context
    int64_t *seq_last;              // per sequence: scratch for checking and splitting a batch
    uint8_t *seq_lost;              // per sequence: its KV cache went with a cluster that failed (rewind to 0)
    int32_t *row_seq, *row_pos;     // per row of the batch being run
    int32_t *out_row;               // the rows whose logits are wanted (the last of each sequence), n_out of them
    int n_out;
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
    float *x, *xn, *q, *k, *v, *att, *o, *gate, *up, *scores;
    float *logits;                  // n_seq rows of n_vocab: each sequence's last logits
    float *logit_rows;              // n_seq rows of this node's vocabulary share, before they go to their sequences
    void *act;                      // activations converted to a weight's vec_dot_type
    size_t act_bytes;
    float *rope_cos, *rope_sin;     // per position in the batch, n_rot/2 each
    // partial sums from the other nodes: identity on one node
    void (*allreduce)(void *comm, float *x, int64_t n, int op);  // op: TBC__SUM, or TBC__MAXABS
    void *comm;
    int no_logits;                  // a tensor-parallel worker: rank 0 computes the logits
    tbc__range *ranges;             // the file bytes this shard reads
    int n_ranges, cap_ranges;
    tbc__cluster *cluster;          // the other nodes, on the coordinator
    int dry;                        // only working out a shard's geometry and sizes (tbc_shard_estimate): no copies
    int no_layers;                  // a coordinator that holds no share (--no-local): embeddings, sampling, sums
    float *round_buf;               // block maxima for tbc__round_as_one (n_batch * blocks of the widest input)
    // concurrent generations (tbc_session_generate): one slot per sequence; a batch is run by one caller at a time
    pthread_mutex_t gen_mu;
    pthread_cond_t gen_cv;
    struct tbc__slot *slots;
    int stepping, next_fill;
    int busy, waiting;              // slots held, callers waiting for one (changed under gen_mu, read without it)
    int32_t *gen_tok, *gen_seq;     // the batch being built (n_batch each)
};

// A generation's hold on a sequence (tbc_session_generate).
enum { TBC__SLOT_FREE, TBC__SLOT_OWN, TBC__SLOT_PENDING, TBC__SLOT_READY };

typedef struct tbc__slot {
    int state;                    // FREE, OWN (held: preparing or sampling), PENDING (tokens to read), READY (logits)
    const int32_t *in;            // tokens to read, n_in of them, done so far
    int64_t n_in, done;
    const volatile int *cancel;   // the caller's flag: a prompt being read stops between batches
    tbc_result rc;
    tbc_error err;
    int32_t *hist;                // the tokens in the sequence's KV cache, for prompt reuse: the first n_hist are known
    int64_t cap, n_hist;          // (every batch cuts n_hist back to where it appends; generations then record theirs)
    double used;                  // when it was last released: ties go to the longest unused
} tbc__slot;

static tbc_result tbc__cluster_new(const tbc_cluster_desc *cd, tbc__cluster **out, tbc_error *err);
static tbc_result tbc__cluster_hello(tbc__cluster *c, const tbc_model *m, const tbc_logger *log, int threads,
                                     tbc_error *err);
static tbc_result tbc__cluster_plan(tbc__cluster *c, const tbc_model *m, const tbc_session_desc *d, int n_ctx,
                                    int n_batch, tbc_shard_desc *own, tbc_error *err);
static tbc_result tbc__cluster_ready(tbc_session *s, tbc_error *err);
static tbc_result tbc__cluster_attach(tbc_session *s, tbc_error *err);
static tbc_result tbc__cluster_eval_begin(tbc_session *s, const int32_t *tokens, int64_t n);
static tbc_result tbc__cluster_pipeline(tbc_session *s, int64_t n);
static tbc_result tbc__cluster_check(tbc_session *s, int fresh);
static int tbc__cluster_broken(const tbc_session *s);
static tbc_result tbc__gen_init(tbc_session *s, tbc_error *err);
static void tbc__gen_free(tbc_session *s);
static tbc_result tbc__decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n);
static tbc_result tbc__cluster_decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n);
static tbc_result tbc__cluster_failed(tbc_session *s);
static tbc_result tbc__cluster_gather_logits(tbc_session *s);
static void tbc__cluster_relay(tbc_session *s, int64_t n);
static void tbc__cluster_free(tbc__cluster *c);

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

static int tbc__note_range(tbc_session *s, uint64_t off, uint64_t len, uint64_t stride, uint64_t count);

static int tbc__own(tbc_session *s, void *buf) {
    void **owned = (void **)TBC_REALLOC(s->owned, sizeof(void *) * (size_t)(s->n_owned + 1));
    if (!owned) return 0;
    s->owned = owned;
    s->owned[s->n_owned++] = buf;
    return 1;
}

// n bytes of the model file at off into dst (pread until done); 0, or the errno (EIO at an unexpected end of file).
static int tbc__read_at(const tbc_model *m, void *dst, size_t n, uint64_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t got = pread(m->map.fd, (uint8_t *)dst + done, n - done, (off_t)(off + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return got < 0 ? errno : EIO;
        done += (size_t)got;
    }
    return 0;
}

// A copied column slice of rows rows, ldw bytes each (data NULL while only estimating).
static void tbc__mat_slice(tbc_session *s, tbc__mat *out, tbc_type type, int64_t cols, int64_t rows, size_t ldw,
                           const void *data) {
    out->type = type;
    out->cols = cols;
    out->rows = rows;
    out->ldw = ldw;
    out->data = (const uint8_t *)data;
    s->shard.copied_bytes += ldw * (size_t)rows;
}

// A column range that does not fall on quantization blocks (a tensor split finer than a block): the rows are read
// whole and the slice kept as F32. Only small models (head size below a block) need this.
static tbc_result tbc__mat_cols_f32(tbc_session *s, const tbc__tensor *t, int64_t c0, int64_t c1, tbc__mat *out,
                                    tbc_error *err) {
    size_t full = tbc__row_bytes(t->type, t->ne[0]);
    int64_t rows = t->ne[1], cols = c1 - c0;
    if (s->dry) {
        tbc__mat_slice(s, out, TBC_TYPE_F32, cols, rows, sizeof(float) * (size_t)cols, NULL);
        s->shard.widened_bytes += out->ldw * (size_t)rows;
        return tbc__note_range(s, t->offset, t->bytes, 0, 1) ? TBC_OK : TBC_ERR_OUT_OF_MEMORY;
    }
    float *buf = (float *)TBC_MALLOC(sizeof(float) * (size_t)(rows * cols));
    float *row = (float *)TBC_MALLOC(sizeof(float) * (size_t)t->ne[0]);
    uint8_t *raw = (uint8_t *)TBC_MALLOC(full);
    if (!buf || !row || !raw || !tbc__own(s, buf)) {
        TBC_FREE(buf); TBC_FREE(row); TBC_FREE(raw);
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for a slice of '%s'", t->name_z);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    tbc_result rc = TBC_OK;
    if (!tbc__note_range(s, t->offset, t->bytes, 0, 1)) rc = TBC_ERR_OUT_OF_MEMORY;
    for (int64_t r = 0; r < rows && !rc; r++) {
        int e = tbc__read_at(s->model, raw, full, t->offset + (uint64_t)r * full);
        if (e) {
            rc = TBC_ERR_IO;
            tbc__error_set(err, rc, "reading tensor '%s' failed: %s", t->name_z, strerror(e));
            break;
        }
        tbc__dequantize(t->type, raw, row, t->ne[0]);
        memcpy(buf + r * cols, row + c0, sizeof(float) * (size_t)cols);
    }
    TBC_FREE(row);
    TBC_FREE(raw);
    if (rc) return rc;
    tbc__mat_slice(s, out, TBC_TYPE_F32, cols, rows, sizeof(float) * (size_t)cols, buf);
    if (t->type != TBC_TYPE_F32) s->shard.widened_bytes += out->ldw * (size_t)rows;
    return TBC_OK;
}

// A column range: each row's share is copied with pread, so the pages of the other columns are never mapped in.
static tbc_result tbc__mat_cols(tbc_session *s, const tbc__tensor *t, int64_t c0, int64_t c1, int widen,
                                tbc__mat *out, tbc_error *err) {
    if (c0 == 0 && c1 == t->ne[0] && !widen) {
        *out = tbc__mat_rows(t, 0, t->ne[1]);
        return TBC_OK;
    }
    int blk = tbc__type_block(t->type);
    if (widen || c0 % blk || c1 % blk) return tbc__mat_cols_f32(s, t, c0, c1, out, err);
    size_t full = tbc__row_bytes(t->type, t->ne[0]);
    size_t skip = tbc__row_bytes(t->type, c0), part = tbc__row_bytes(t->type, c1 - c0);
    int64_t rows = t->ne[1];
    if (s->dry) {
        tbc__mat_slice(s, out, t->type, c1 - c0, rows, part, NULL);
        return tbc__note_range(s, t->offset + skip, part, full, (uint64_t)rows) ? TBC_OK : TBC_ERR_OUT_OF_MEMORY;
    }
    uint8_t *buf = (uint8_t *)TBC_MALLOC(part * (size_t)rows);
    if (!buf || !tbc__own(s, buf)) {
        TBC_FREE(buf);
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for a slice of '%s'", t->name_z);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    if (!tbc__note_range(s, t->offset + skip, part, full, (uint64_t)rows)) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    for (int64_t r = 0; r < rows; r++) {
        int e = tbc__read_at(s->model, buf + (size_t)r * part, part, t->offset + (uint64_t)r * full + skip);
        if (e) {
            tbc__error_set(err, TBC_ERR_IO, "reading a slice of tensor '%s' failed: %s", t->name_z,
                           e == EIO ? "unexpected end of file or I/O error" : strerror(e));
            return TBC_ERR_IO;
        }
    }
    tbc__mat_slice(s, out, t->type, c1 - c0, rows, part, buf);
    return TBC_OK;
}

static uint64_t tbc__mat_bytes(const tbc__mat *m) { return (uint64_t)m->ldw * (uint64_t)m->rows; }

static int tbc__note_range(tbc_session *s, uint64_t off, uint64_t len, uint64_t stride, uint64_t count) {
    if (!len || !count) return 1;
    if (s->n_ranges == s->cap_ranges) {
        int nc = s->cap_ranges ? s->cap_ranges * 2 : 64;
        tbc__range *nr = (tbc__range *)TBC_REALLOC(s->ranges, sizeof(tbc__range) * (size_t)nc);
        if (!nr) return 0;
        s->ranges = nr;
        s->cap_ranges = nc;
    }
    tbc__range *r = &s->ranges[s->n_ranges++];
    r->off = off; r->len = len; r->stride = stride; r->count = count;
    return 1;
}

// Records a view into the mapping (copied slices record themselves when they are read).
static int tbc__note_mat(tbc_session *s, const tbc__mat *m) {
    const tbc__mapping *mp = &s->model->map;
    if (!m->data || m->data < mp->base || m->data >= mp->base + mp->size) return 1;
    return tbc__note_range(s, (uint64_t)(m->data - mp->base), tbc__mat_bytes(m), 0, 1);
}

static int tbc__note_tensor(tbc_session *s, const tbc__tensor *t) {
    return t ? tbc__note_range(s, t->offset, t->bytes, 0, 1) : 1;
}

// Splits [0, n) into `parts` contiguous shares on multiples of `unit`, as evenly as possible.
static void tbc__split_range(int64_t n, int64_t unit, int parts, int rank, int64_t *b, int64_t *e) {
    int64_t units = n / unit;
    int64_t lo = units * rank / parts, hi = units * (rank + 1) / parts;
    *b = lo * unit;
    *e = rank == parts - 1 ? n : hi * unit;
}

// The units a tensor split deals out, from the types of the given layer: query heads (*qunit) and FFN rows (*unit).
// Heads: whole KV groups when they divide evenly; else the finest unit that keeps Wo's column slices on its
// blocks (neighbours then share a KV head, which both compute); else single heads. FFN rows: ffn_down's block
// (its columns are what gets sliced), else 32, else 1 when there are too few blocks for every node.
static void tbc__tp_units(const tbc_model *m, int layer, int parts, int64_t *qunit, int64_t *unit) {
    const tbc_model_info *I = &m->info;
    int64_t group = I->n_head / I->n_head_kv, hd = I->head_dim, q = group;
    int64_t blk = tbc__type_block(m->layers[layer].wo->type);
    while (q * hd % blk != 0 && q < I->n_head) q += group;
    if (q * hd % blk != 0 || (I->n_head / q) % parts != 0) {
        q = 1;
        while (q * hd % blk != 0 && q < I->n_head) q++;
        if (q * hd % blk != 0 || I->n_head / q < parts) q = 1;
    }
    *qunit = q;
    int64_t u = tbc__type_block(m->layers[layer].w_down->type);
    if (u < 32) u = 32;
    if (I->n_ff / u < parts) u = 32;
    if (I->n_ff / u < parts) u = 1;
    *unit = u;
}

// Most block maxima tbc__round_as_one exchanges per token (the widest input in the smallest blocks, 32).
static int64_t tbc__round_blocks(const tbc_model_info *I) {
    int64_t k = (int64_t)I->n_head * I->head_dim > I->n_ff ? (int64_t)I->n_head * I->head_dim : I->n_ff;
    return (k + 31) / 32;
}

// 1 if splitting n (in units) among parts puts a boundary (times scale) off a block of blk.
static int tbc__split_off_blocks(int64_t n, int64_t unit, int parts, int64_t scale, int64_t blk) {
    for (int r = 1; r < parts; r++) {
        int64_t b, e;
        tbc__split_range(n, unit, parts, r, &b, &e);
        if ((b * scale) % blk) return 1;
    }
    return 0;
}

// The activation types a layer's Wo and ffn_down inputs are rounded to before a tensor split's product, as one
// node would (tbc__round_as_one), when their column split falls off the blocks; TBC_TYPE_F32: no rounding needed.
// Every rank (and a coordinator without a share) gets the same answer from the split rule alone.
static void tbc__layer_rounding(const tbc_model *m, int layer, int parts, int64_t qunit, int64_t unit,
                                tbc_type *wo_round, tbc_type *down_round) {
    const tbc_model_info *I = &m->info;
    const tbc__layer_tensors *T = &m->layers[layer];
    int wo_off = tbc__split_off_blocks(I->n_head, qunit, parts, I->head_dim, tbc__type_block(T->wo->type));
    int down_off = tbc__split_off_blocks(I->n_ff, unit, parts, 1, tbc__type_block(T->w_down->type));
    *wo_round = wo_off ? tbc__vec_dot_type(T->wo->type) : TBC_TYPE_F32;
    *down_round = down_off ? tbc__vec_dot_type(T->w_down->type) : TBC_TYPE_F32;
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
    if (sh->layer_begin == 0 && sh->layer_end == 0 && !s->no_layers) sh->layer_end = I->n_layer;
    sh->tp_size = d->shard.tp_size ? d->shard.tp_size : 1;
    sh->tp_rank = d->shard.tp_rank;
    if (sh->layer_begin < 0 || sh->layer_end > I->n_layer ||
        (s->no_layers ? sh->layer_begin != sh->layer_end : sh->layer_begin >= sh->layer_end)) {
        tbc__error_set(err, TBC_ERR_SHARD, "layer range [%d, %d) is not inside the model's %d layers",
                       sh->layer_begin, sh->layer_end, I->n_layer);
        return TBC_ERR_SHARD;
    }
    if (sh->tp_size < 1 || sh->tp_rank < 0 || sh->tp_rank >= sh->tp_size || sh->tp_size > I->n_head) {
        tbc__error_set(err, TBC_ERR_SHARD, "tensor slice %d of %d is invalid for %d attention heads", sh->tp_rank,
                       sh->tp_size, I->n_head);
        return TBC_ERR_SHARD;
    }
    sh->has_embeddings = sh->layer_begin == 0 || s->no_layers;
    sh->has_output = d->shard.output ? d->shard.output > 0 : sh->layer_end == I->n_layer;
    int64_t hb, he, fb, fe;
    int group = I->n_head / I->n_head_kv, hd = I->head_dim;
    // Query heads are split; each node holds the KV heads its query heads use (neighbours may share one, and both
    // compute it). Whole KV groups when that gives every node a share; and the output projection's columns on its
    // quantization blocks when possible (else that slice is kept dequantized, see tbc__mat_cols).
    int64_t qunit, unit;
    tbc__tp_units(m, sh->layer_begin, sh->tp_size, &qunit, &unit);
    tbc__split_range(I->n_head, qunit, sh->tp_size, sh->tp_rank, &hb, &he);
    sh->head_begin = (int)hb;
    sh->head_end = (int)he;
    sh->head_kv_begin = (int)(hb / group);
    sh->head_kv_end = (int)((he + group - 1) / group);
    s->n_head_local = (int)(he - hb);
    s->n_kv_local = sh->head_kv_end - sh->head_kv_begin;
    tbc__split_range(I->n_ff, unit, sh->tp_size, sh->tp_rank, &fb, &fe);
    if (fe <= fb) {
        tbc__error_set(err, TBC_ERR_SHARD, "feed-forward length %d is too small to split %d ways", I->n_ff, sh->tp_size);
        return TBC_ERR_SHARD;
    }
    sh->ff_begin = (int)fb;
    sh->ff_end = (int)fe;
    s->ff_local = (int)(fe - fb);
    int n_local = sh->layer_end - sh->layer_begin;
    if (s->no_layers) {  // no heads, no FFN rows: only the embeddings (and the output in a pipeline)
        sh->head_begin = sh->head_end = sh->head_kv_begin = sh->head_kv_end = sh->ff_begin = sh->ff_end = 0;
        s->n_head_local = s->n_kv_local = s->ff_local = 0;
    }
    s->layers = (tbc__layer *)TBC_MALLOC(sizeof(tbc__layer) * (size_t)(n_local + 1));
    if (!s->layers) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for layers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s->layers, 0, sizeof(tbc__layer) * (size_t)(n_local + 1));
    int64_t q0 = hb * hd, q1 = he * hd, k0 = (int64_t)sh->head_kv_begin * hd, k1 = (int64_t)sh->head_kv_end * hd;
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
        // A column split off the quantization blocks anywhere widens every node's slice of that matrix to F32
        // (all nodes then round the input as one node would, tbc__round_as_one)
        tbc__layer_rounding(m, sh->layer_begin + l, sh->tp_size, qunit, unit, &L->wo_round, &L->down_round);
        if ((rc = tbc__mat_cols(s, T->wo, q0, q1, L->wo_round != TBC_TYPE_F32, &L->wo, err))) return rc;
        L->w_gate = tbc__mat_rows(T->w_gate, fb, fe);
        L->w_up = tbc__mat_rows(T->w_up, fb, fe);
        if ((rc = tbc__mat_cols(s, T->w_down, fb, fe, L->down_round != TBC_TYPE_F32, &L->w_down, err))) return rc;
        wbytes += tbc__mat_bytes(&L->wq) + tbc__mat_bytes(&L->wk) + tbc__mat_bytes(&L->wv) + tbc__mat_bytes(&L->wo) +
                  tbc__mat_bytes(&L->w_gate) + tbc__mat_bytes(&L->w_up) + tbc__mat_bytes(&L->w_down);
        const tbc__tensor *vecs[7] = {T->attn_norm, T->ffn_norm, T->bq, T->bk, T->bv, T->q_norm, T->k_norm};
        const tbc__mat *mats[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        int ok = 1;
        for (int i = 0; i < 7; i++) ok &= tbc__note_tensor(s, vecs[i]);
        for (int i = 0; i < 7; i++) ok &= tbc__note_mat(s, mats[i]);  // views only: copied slices noted themselves
        if (!ok) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory");
            return TBC_ERR_OUT_OF_MEMORY;
        }
        wbytes += (uint64_t)I->n_embd * 8;
    }
    if (sh->has_embeddings || sh->has_output) {
        // Every rank keeps the (small per token) embedding lookup; the output matrix goes with the last layers.
        s->embd = tbc__mat_rows(m->tok_embd, 0, m->tok_embd->ne[1]);
    }
    if (sh->has_output) {
        // With a tensor split every rank computes a share of the logits (the output matrix is the largest one).
        int64_t vb = 0, ve = m->output->ne[1];
        if (sh->tp_size > 1) tbc__split_range(m->output->ne[1], 1, sh->tp_size, sh->tp_rank, &vb, &ve);
        sh->vocab_begin = (int)vb;
        sh->vocab_end = (int)ve;
        s->output = tbc__mat_rows(m->output, vb, ve);
        s->out_norm = tbc__vec(m->out_norm, 0);
        wbytes += tbc__mat_bytes(&s->output);
    }
    if (sh->has_embeddings && !(sh->has_output && m->output == m->tok_embd)) {
        // The embedding table is read one row per token: count it as held, not as streamed.
        wbytes += tbc__mat_bytes(&s->embd);
    }
    s->rope_freqs = tbc__vec(m->rope_freqs, 0);
    if (!tbc__note_tensor(s, m->rope_freqs) || (sh->has_output && !tbc__note_tensor(s, m->out_norm)) ||
        !tbc__note_mat(s, &s->output) || !tbc__note_mat(s, &s->embd)) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    sh->weight_bytes = wbytes;
    sh->streamed_bytes = wbytes;
    if (sh->has_embeddings && !(sh->has_output && m->output == m->tok_embd))
        sh->streamed_bytes = wbytes - tbc__mat_bytes(&s->embd) + s->embd.ldw;
    if (s->dry) return TBC_OK;
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
    uint64_t cells = (uint64_t)s->n_seq * (uint64_t)s->n_ctx;  // each sequence has its own n_ctx positions
    uint64_t kv_bytes = (uint64_t)n_local * 2 * cells * kd * elt;
    s->shard.kv_bytes = kv_bytes;
    if (kv_bytes > (uint64_t)SIZE_MAX / 2) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "KV cache of %llu bytes is too large", (unsigned long long)kv_bytes);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    s->kv_mem = TBC_MALLOC((size_t)kv_bytes + 64);
    if (!s->kv_mem) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for a KV cache of %.1f MiB (n_ctx %d, %d sequences)",
                       (double)kv_bytes / 1048576.0, s->n_ctx, s->n_seq);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    for (int l = 0; l < n_local; l++) {
        s->layers[l].k_cache = (uint8_t *)s->kv_mem + (size_t)(2 * l) * (size_t)cells * kd * elt;
        s->layers[l].v_cache = (uint8_t *)s->kv_mem + (size_t)(2 * l + 1) * (size_t)cells * kd * elt;
    }
    // Largest activation conversion: n_batch rows of the widest input (dim, q heads, or ffn), in F32 worst case
    // (packed activations take 3 bytes a value, plus a last block pair).
    size_t widest = tbc__max_sz(d, tbc__max_sz(qd, ff));
    s->act_bytes = (size_t)nb * (widest * 4 + 192);
    size_t nthreads = (size_t)s->pool.n_threads;
    float **bufs[] = {&s->x, &s->xn, &s->q, &s->k, &s->v, &s->att, &s->o, &s->gate, &s->up, &s->logits,
                      &s->logit_rows, &s->scores, &s->rope_cos, &s->rope_sin};
    size_t nv = (size_t)s->n_seq * (size_t)I->n_vocab;
    size_t sizes[] = {nb * d, nb * d, nb * qd, nb * kd, nb * kd, nb * qd, nb * d, nb * ff, nb * ff, nv, nv,
                      nthreads * ((size_t)s->n_ctx + (size_t)hd), (size_t)nb * (size_t)hd, (size_t)nb * (size_t)hd};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *bufs[i] = (float *)TBC_MALLOC(sizes[i] * sizeof(float) + 64);
        if (!*bufs[i]) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for scratch buffers");
            return TBC_ERR_OUT_OF_MEMORY;
        }
    }
    s->act = TBC_MALLOC(s->act_bytes);
    s->round_buf = (float *)TBC_MALLOC(sizeof(float) * (size_t)(nb * tbc__round_blocks(I)) + 64);
    s->seq_pos = (int64_t *)TBC_MALLOC(sizeof(int64_t) * (size_t)s->n_seq * 2);
    s->seq_lost = (uint8_t *)TBC_MALLOC((size_t)s->n_seq);
    s->row_seq = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)nb * 3);
    if (!s->act || !s->round_buf || !s->seq_pos || !s->seq_lost || !s->row_seq) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for scratch buffers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s->seq_pos, 0, sizeof(int64_t) * (size_t)s->n_seq * 2);
    s->seq_last = s->seq_pos + s->n_seq;
    memset(s->seq_lost, 0, (size_t)s->n_seq);
    s->row_pos = s->row_seq + nb;
    s->out_row = s->row_seq + 2 * nb;
    return TBC_OK;
}

TBC__DEF void tbc_session_destroy(tbc_session *s) {
    if (!s) return;
    tbc__cluster_free(s->cluster);
    tbc__pool_destroy(&s->pool);
    for (int i = 0; i < s->n_owned; i++) TBC_FREE(s->owned[i]);
    TBC_FREE(s->owned);
    float *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->o, s->gate, s->up, s->logits, s->logit_rows,
                     s->scores, s->rope_cos, s->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) TBC_FREE(bufs[i]);
    TBC_FREE(s->seq_pos);
    TBC_FREE(s->seq_lost);
    tbc__gen_free(s);
    pthread_mutex_destroy(&s->gen_mu);
    pthread_cond_destroy(&s->gen_cv);
    TBC_FREE(s->row_seq);
    TBC_FREE(s->act);
    TBC_FREE(s->round_buf);
    TBC_FREE(s->kv_mem);
    TBC_FREE(s->layers);
    TBC_FREE(s->ranges);
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
    if (d->n_ctx < 0 || d->n_batch < 0 || d->n_threads < 0 || d->n_seq < 0 || d->n_seq > TBC_MAX_SEQ ||
        (d->kv_type != TBC_KV_F32 && d->kv_type != TBC_KV_F16)) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "negative n_ctx, n_batch or n_threads, n_seq outside 0-%d, or "
                       "unknown kv_type", TBC_MAX_SEQ);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc_session *s = (tbc_session *)TBC_MALLOC(sizeof(tbc_session));
    if (!s) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the session");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->gen_mu, NULL);
    pthread_cond_init(&s->gen_cv, NULL);
    s->model = d->model;
    s->log = d->logger;
    s->kv_type = d->kv_type;
    s->n_ctx = d->n_ctx ? d->n_ctx : (I->n_ctx_train < 4096 ? I->n_ctx_train : 4096);
    s->n_batch = d->n_batch ? d->n_batch : 256;
    if (s->n_batch > s->n_ctx) s->n_batch = s->n_ctx;
    s->n_seq = d->n_seq ? d->n_seq : 1;
    tbc_result rc = tbc__pool_init(&s->pool, d->n_threads ? d->n_threads : tbc__cpu_count(), err);
    tbc_session_desc own = *d;
    if (rc == TBC_OK && d->cluster) {  // the plan decides this node's own share too
        s->no_layers = d->cluster->no_local != 0;
        rc = tbc__cluster_new(d->cluster, &s->cluster, err);
        if (rc == TBC_OK) rc = tbc__cluster_hello(s->cluster, d->model, &d->logger, s->pool.n_threads, err);
        if (rc == TBC_OK) rc = tbc__cluster_plan(s->cluster, d->model, d, s->n_ctx, s->n_batch, &own.shard, err);
    }
    if (rc == TBC_OK) rc = tbc__session_bind(s, &own, err);
    if (rc == TBC_OK) rc = tbc__session_alloc(s, err);
    if (rc == TBC_OK) rc = tbc__gen_init(s, err);
    if (rc == TBC_OK && s->cluster) rc = tbc__cluster_attach(s, err);
    if (rc != TBC_OK) {
        tbc__log(&d->logger, TBC_LOG_ERROR, "%s", err->message);
        tbc_session_destroy(s);
        return rc;
    }
    tbc__log(&s->log, TBC_LOG_INFO, "session: %s %d-%d, slice %d/%d, n_ctx %d x %d sequences, %d threads, weights "
             "%.1f MiB, KV %.1f MiB", s->no_layers ? "no layers (coordinating only);" : "layers", s->shard.layer_begin,
             s->shard.layer_end - 1, s->shard.tp_rank, s->shard.tp_size,
             s->n_ctx, s->n_seq, s->pool.n_threads, (double)s->shard.weight_bytes / 1048576.0,
             (double)s->shard.kv_bytes / 1048576.0);
    *out = s;
    return TBC_OK;
}

// cells: KV cache positions over all sequences (n_ctx * n_seq); 0 = the session default for one sequence.
static tbc_result tbc__shard_estimate(const tbc_model *m, const tbc_shard_desc *shard, int no_layers, int64_t cells,
                                      tbc_kv_type kv, tbc_shard_info *info, uint64_t *file_bytes, tbc_error *err) {
    tbc_session *s = (tbc_session *)TBC_MALLOC(sizeof(tbc_session));
    if (!s) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s, 0, sizeof *s);
    s->model = m;
    s->dry = 1;
    s->no_layers = no_layers;
    if (cells <= 0) cells = m->info.n_ctx_train < 4096 ? m->info.n_ctx_train : 4096;
    tbc_session_desc d;
    memset(&d, 0, sizeof d);
    d.model = m;
    d.shard = *shard;
    tbc_result rc = tbc__session_bind(s, &d, err);
    if (rc == TBC_OK) {
        uint64_t kd = (uint64_t)s->n_kv_local * (uint64_t)m->info.head_dim;
        s->shard.kv_bytes = (uint64_t)(s->shard.layer_end - s->shard.layer_begin) * 2 * (uint64_t)cells * kd *
                            (kv == TBC_KV_F16 ? 2 : 4);
        *info = s->shard;
        if (file_bytes) {
            *file_bytes = 0;
            for (int i = 0; i < s->n_ranges; i++) *file_bytes += s->ranges[i].len * s->ranges[i].count;
        }
    }
    TBC_FREE(s->layers);
    TBC_FREE(s->ranges);
    TBC_FREE(s->owned);
    TBC_FREE(s);
    return rc;
}

TBC__DEF tbc_result tbc_shard_estimate(const tbc_model *m, const tbc_shard_desc *shard, int n_ctx, tbc_kv_type kv,
                                       tbc_shard_info *info, uint64_t *file_bytes, tbc_error *error) {
    tbc_error local;
    tbc_error *err = error ? error : &local;
    memset(err, 0, sizeof *err);
    if (!m || !shard || !info || m->vocab_only || n_ctx < 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_shard_estimate needs a loaded model, a shard and an output");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    return tbc__shard_estimate(m, shard, 0, n_ctx, kv, info, file_bytes, err);
}

TBC__DEF const tbc_error *tbc_session_last_error(const tbc_session *s) { return &s->last; }
TBC__DEF void tbc_session_shard_info(const tbc_session *s, tbc_shard_info *info) { *info = s->shard; }
TBC__DEF const float *tbc_session_logits(const tbc_session *s) { return s->logits; }
TBC__DEF int64_t tbc_session_pos(const tbc_session *s) { return s->seq_pos[0]; }
TBC__DEF int64_t tbc_session_n_ctx(const tbc_session *s) { return s->n_ctx; }
TBC__DEF tbc_result tbc_session_seq_rewind(tbc_session *s, int seq, int64_t pos) {
    if (seq < 0 || seq >= s->n_seq) {
        tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "sequence %d is outside 0-%d", seq, s->n_seq - 1);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (pos < 0 || pos > s->seq_pos[seq]) {
        tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "cannot rewind to %lld: the context holds %lld tokens",
                       (long long)pos, (long long)s->seq_pos[seq]);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    s->seq_pos[seq] = pos;
    if (pos == 0) s->seq_lost[seq] = 0;
    return TBC_OK;
}

TBC__DEF tbc_result tbc_session_rewind(tbc_session *s, int64_t pos) { return tbc_session_seq_rewind(s, 0, pos); }
TBC__DEF int64_t tbc_session_seq_pos(const tbc_session *s, int seq) {
    return seq >= 0 && seq < s->n_seq ? s->seq_pos[seq] : 0;
}
TBC__DEF const float *tbc_session_seq_logits(const tbc_session *s, int seq) {
    return seq >= 0 && seq < s->n_seq ? s->logits + (size_t)seq * (size_t)s->model->info.n_vocab : NULL;
}
TBC__DEF int tbc_session_n_seq(const tbc_session *s) { return s->n_seq; }

// --- the pieces of a layer ---

static void tbc__rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

typedef struct tbc__quant_job {
    tbc_type type;          // the rows' type, or with packed the weight type they are packed for
    int packed;
    const float *src;
    int64_t n;              // values per row
    size_t ld_src;          // floats between rows
    uint8_t *dst;
    size_t ld_dst;          // bytes between rows
} tbc__quant_job;

static void tbc__quant_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__quant_job *j = (const tbc__quant_job *)arg;
    (void)thread;
    for (int64_t r = b; r < e; r++) {
        if (j->packed) tbc__pack_act_row(j->type, j->src + (size_t)r * j->ld_src, j->dst + (size_t)r * j->ld_dst, j->n);
        else tbc__quantize(j->type, j->src + (size_t)r * j->ld_src, j->dst + (size_t)r * j->ld_dst, j->n);
    }
}

typedef struct tbc__mm_job {
    const tbc__mat *w;
    const uint8_t *a;
    int packed;  // a holds packed activations (tbc__act_packed)
    size_t lda;
    int64_t na;
    float *out;
    size_t ldo;
} tbc__mm_job;

static void tbc__mm_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__mm_job *j = (const tbc__mm_job *)arg;
    (void)thread;
    if (j->packed)
        tbc__gemm_packed(j->w->type, j->w->cols, e - b, j->na, j->w->data + (size_t)b * j->w->ldw, j->w->ldw, j->a,
                         j->lda, j->out + b, j->ldo);
    else
        tbc__gemm(j->w->type, j->w->cols, e - b, j->na, j->w->data + (size_t)b * j->w->ldw, j->w->ldw, j->a, j->lda,
                  j->out + b, j->ldo);
}

// Converts n rows of x (ld floats apart) to the input type of w, once; `cached` remembers the last conversion.
typedef struct tbc__act_cache {
    const float *src;
    tbc_type type;  // as in tbc__quant_job
    int packed;
    size_t lda;
} tbc__act_cache;

static void tbc__prepare(tbc_session *s, tbc__act_cache *c, const float *x, int64_t n, int64_t cols, size_t ld,
                         tbc_type wtype) {
    const int packed = tbc__act_packed(wtype);
    const tbc_type at = packed ? wtype : tbc__vec_dot_type(wtype);
    if (c->src == x && c->type == at && c->packed == packed) return;
    tbc__quant_job j;
    j.type = at;
    j.packed = packed;
    j.src = x;
    j.n = cols;
    j.ld_src = ld;
    j.dst = (uint8_t *)s->act;
    j.ld_dst = packed ? tbc__act_packed_bytes(cols) : tbc__row_bytes(at, cols);
    if (n == 1) tbc__quant_task(&j, 0, 1, 0);
    else tbc__pool_for(&s->pool, n, 1, tbc__quant_task, &j);
    c->src = x;
    c->type = at;
    c->packed = packed;
    c->lda = j.ld_dst;
}

// out[t][0..w.rows) = w . x[t] for t < n (out rows ldo floats apart)
static void tbc__matmul(tbc_session *s, tbc__act_cache *c, const tbc__mat *w, const float *x, size_t ldx, int64_t n,
                        float *out, size_t ldo) {
    tbc__prepare(s, c, x, n, w->cols, ldx, w->type);
    tbc__mm_job j;
    j.w = w;
    j.a = (const uint8_t *)s->act;
    j.packed = c->packed;
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

static void tbc__rope_tables(tbc_session *s, int64_t n) {
    const tbc_model *m = s->model;
    int half = m->n_rot / 2;
    float theta_scale = powf(m->info.rope_theta, -2.0f / (float)m->n_rot);
    for (int64_t t = 0; t < n; t++) {
        float theta = (float)s->row_pos[t] * m->rope_freq_scale;
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
} tbc__attn_job;

// One (row, query head) pair per item: causal softmax attention over the row's sequence in the cache.
static void tbc__attn_task(void *arg, int64_t b, int64_t e, int thread) {
    const tbc__attn_job *j = (const tbc__attn_job *)arg;
    tbc_session *s = j->s;
    int hd = s->model->info.head_dim, nh = s->n_head_local, group = s->model->info.n_head / s->model->info.n_head_kv;
    size_t kd = (size_t)s->n_kv_local * hd;
    float *sc = s->scores + (size_t)thread * ((size_t)s->n_ctx + (size_t)hd);
    float scale = 1.0f / sqrtf((float)hd);
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / nh;
        int h = (int)(it % nh), kvh = (s->shard.head_begin + h) / group - s->shard.head_kv_begin;
        const float *q = s->q + (size_t)t * (size_t)nh * hd + (size_t)h * hd;
        float *out = s->att + (size_t)t * (size_t)nh * hd + (size_t)h * hd;
        int64_t len = (int64_t)s->row_pos[t] + 1;
        size_t base = (size_t)s->row_seq[t] * (size_t)s->n_ctx * kd;  // the sequence's first cell
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
                const uint16_t *kp = (const uint16_t *)j->L->k_cache + base + (size_t)p * kd + (size_t)kvh * hd;
                const uint16_t *vp = (const uint16_t *)j->L->v_cache + base + (size_t)p * kd + (size_t)kvh * hd;
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
            float v = tbc__dot_f32(hd, (const float *)j->L->k_cache + base + (size_t)p * kd + (size_t)kvh * hd, q);
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
            tbc__axpy_f32(hd, out, sc[p] * inv, (const float *)j->L->v_cache + base + (size_t)p * kd + (size_t)kvh * hd);
    }
}

static float tbc__silu(float x) { return x / (1.0f + expf(-x)); }

// A node's columns [c0, c0 + cols) of an input row of k values, for a slice that is not on quantization blocks:
// one node would round the whole row to type t (Q8_0, Q8_1 or Q8_K blocks) before the product. Each block's scale
// comes from its value of largest magnitude, which may be on another node: the nodes exchange those (one float per
// block and token), then each rounds its part with the block's true scale, as one node would. Rows ld floats apart.
static void tbc__round_as_one(tbc_session *s, tbc_type t, float *x, int64_t n, int64_t cols, int64_t c0, int64_t k) {
    int64_t blk = tbc__type_block(t), nb = (k + blk - 1) / blk;
    if (blk <= 1 || cols <= 0) return;
    float *mx = s->round_buf, tmp[256], deq[256];
    uint8_t q[512];
    for (int64_t i = 0; i < n; i++) {
        float *m = mx + i * nb;
        for (int64_t b = 0; b < nb; b++) m[b] = 0;
        for (int64_t j = 0; j < cols; j++) {
            float v = x[i * cols + j];
            int64_t b = (c0 + j) / blk;
            if (fabsf(v) > fabsf(m[b])) m[b] = v;
        }
    }
    if (s->allreduce) s->allreduce(s->comm, mx, n * nb, TBC__MAXABS);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t b = c0 / blk; b * blk < c0 + cols; b++) {
            int64_t lo = b * blk > c0 ? b * blk : c0, hi = (b + 1) * blk < c0 + cols ? (b + 1) * blk : c0 + cols;
            // the block as one node sees it: this node's values, and the largest one where another node holds it
            float big = mx[i * nb + b];
            int placed = 0;
            for (int64_t j = 0; j < blk; j++) {
                int64_t col = b * blk + j;
                if (col >= lo && col < hi) tmp[j] = x[i * cols + (col - c0)];
                else if (!placed) { tmp[j] = big; placed = 1; }
                else tmp[j] = 0;
            }
            tbc__quantize(t, tmp, q, blk);
            tbc__dequantize(t, q, deq, blk);
            for (int64_t col = lo; col < hi; col++) x[i * cols + (col - c0)] = deq[col - b * blk];
        }
    }
}

// Runs the n rows of the batch (row_seq, row_pos: each row's sequence and position) through this node's layers; x
// holds their hidden states.
static void tbc__forward_layers(tbc_session *s, int64_t n) {
    const tbc_model *m = s->model;
    const tbc_model_info *I = &m->info;
    int hd = I->head_dim;
    size_t d = (size_t)I->n_embd, qd = (size_t)s->n_head_local * hd, kd = (size_t)s->n_kv_local * hd;
    size_t ff = (size_t)s->ff_local;
    int half = m->n_rot / 2;
    tbc__rope_tables(s, n);
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
            size_t at = ((size_t)s->row_seq[t] * (size_t)s->n_ctx + (size_t)s->row_pos[t]) * kd;
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
        tbc__pool_for(&s->pool, n * s->n_head_local, 1, tbc__attn_task, &aj);
        if (L->wo_round != TBC_TYPE_F32)
            tbc__round_as_one(s, L->wo_round, s->att, n, (int64_t)qd, (int64_t)s->shard.head_begin * hd,
                              (int64_t)I->n_head * hd);
        tbc__matmul(s, &c, &L->wo, s->att, qd, n, s->o, d);
        if (s->allreduce) s->allreduce(s->comm, s->o, n * (int64_t)d, TBC__SUM);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->o[i];
        c.src = NULL;  // xn is about to change
        for (int64_t t = 0; t < n; t++) tbc__rmsnorm(s->xn + t * d, s->x + t * d, L->ffn_norm, (int64_t)d, I->rms_eps);
        tbc__matmul(s, &c, &L->w_gate, s->xn, d, n, s->gate, ff);
        tbc__matmul(s, &c, &L->w_up, s->xn, d, n, s->up, ff);
        for (size_t i = 0; i < (size_t)n * ff; i++) s->gate[i] = tbc__silu(s->gate[i]) * s->up[i];
        if (L->down_round != TBC_TYPE_F32)
            tbc__round_as_one(s, L->down_round, s->gate, n, (int64_t)ff, (int64_t)s->shard.ff_begin, (int64_t)I->n_ff);
        tbc__matmul(s, &c, &L->w_down, s->gate, ff, n, s->o, d);
        if (s->allreduce) s->allreduce(s->comm, s->o, n * (int64_t)d, TBC__SUM);
        for (size_t i = 0; i < (size_t)n * d; i++) s->x[i] += s->o[i];
    }
}

// This node's share of the logits of the batch's output rows (out_row; the whole vocabulary on one node): n_out rows
// of output.rows values in logit_rows, one matrix product for all of them.
static void tbc__logits(tbc_session *s) {
    size_t d = (size_t)s->model->info.n_embd;
    tbc__act_cache c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < s->n_out; i++)
        tbc__rmsnorm(s->xn + (size_t)i * d, s->x + (size_t)s->out_row[i] * d, s->out_norm, (int64_t)d,
                     s->model->info.rms_eps);
    tbc__matmul(s, &c, &s->output, s->xn, d, s->n_out, s->logit_rows, (size_t)s->output.rows);
}

// Puts n_out rows of the vocabulary share [vb, ve) into the logits of each output row's sequence.
static void tbc__logits_place(tbc_session *s, const float *rows, int64_t vb, int64_t ve) {
    size_t nv = (size_t)s->model->info.n_vocab, w = (size_t)(ve - vb);
    for (int i = 0; i < s->n_out; i++)
        memmove(s->logits + (size_t)s->row_seq[s->out_row[i]] * nv + (size_t)vb, rows + (size_t)i * w, w * 4);
}

// The forward pass over n checked tokens (token i to sequence seq[i], or all to sequence 0), n_batch rows at a
// time; with a cluster, the other nodes take their parts. Each sequence's last token gets logits.
static tbc_result tbc__decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n) {
    size_t d = (size_t)s->model->info.n_embd;
    int64_t *last = s->seq_last;
    for (int q = 0; q < s->n_seq; q++) last[q] = -1;
    for (int64_t i = 0; i < n; i++) last[seq ? seq[i] : 0] = i;
    tbc_result rc;
    for (int64_t b = 0; b < n; b += s->n_batch) {
        int64_t nb = n - b < s->n_batch ? n - b : s->n_batch;
        // A cluster that failed may be rebuilt before a batch whose sequences all start afresh: the new nodes hold no
        // KV cache, so sequences that had one are lost (their next tokens fail until they are rewound to 0).
        int fresh = 1;
        for (int64_t t = 0; t < nb && fresh; t++) fresh = s->seq_pos[seq ? seq[b + t] : 0] == 0;
        if (s->cluster && (rc = tbc__cluster_check(s, fresh)) != TBC_OK) return rc;
        s->n_out = 0;
        for (int64_t t = 0; t < nb; t++) {
            int q = seq ? seq[b + t] : 0;
            if (s->slots[q].n_hist > s->seq_pos[q]) s->slots[q].n_hist = s->seq_pos[q];  // what generations knew ends here
            s->row_seq[t] = q;
            s->row_pos[t] = (int32_t)s->seq_pos[q]++;
            if (last[q] == b + t) s->out_row[s->n_out++] = (int32_t)t;
            tbc__dequantize(s->embd.type, s->embd.data + (size_t)tokens[b + t] * s->embd.ldw, s->x + t * d, (int64_t)d);
        }
        int link_failed = s->cluster && tbc__cluster_eval_begin(s, tokens + b, nb) != TBC_OK;
        rc = TBC_OK;
        if (!link_failed) {
            if (s->no_layers) tbc__cluster_relay(s, nb);
            else tbc__forward_layers(s, nb);
            link_failed = s->cluster && tbc__cluster_pipeline(s, nb) != TBC_OK;
        }
        link_failed = link_failed || (s->cluster && tbc__cluster_broken(s));  // an all-reduce failed
        if (!link_failed && s->n_out) {
            if (s->shard.has_output) {
                tbc__logits(s);
                tbc__logits_place(s, s->logit_rows, s->shard.vocab_begin, s->shard.vocab_end);
            }
            link_failed = s->cluster && tbc__cluster_gather_logits(s) != TBC_OK;
        }
        if (link_failed) {  // the batch's tokens are not in the context (and the cluster's sequences are lost)
            for (int64_t t = 0; t < nb; t++) s->seq_pos[s->row_seq[t]]--;
            return tbc__cluster_failed(s);
        }
    }
    return TBC_OK;
}

// Checks a batch before anything runs: ids, sequences, room in each sequence's context, and a shard that can run it.
static tbc_result tbc__decode_check(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n) {
    const tbc_model_info *I = &s->model->info;
    if (n <= 0 || !tokens) {
        tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "a batch needs at least one token");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    int64_t *count = s->seq_last;
    for (int q = 0; q < s->n_seq; q++) count[q] = 0;
    for (int64_t i = 0; i < n; i++) {
        int q = seq ? seq[i] : 0;
        if (q < 0 || q >= s->n_seq) {
            tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "sequence %d at index %lld is outside 0-%d", q,
                           (long long)i, s->n_seq - 1);
            return TBC_ERR_INVALID_ARGUMENT;
        }
        if (tokens[i] < 0 || tokens[i] >= I->n_vocab) {
            tbc__error_set(&s->last, TBC_ERR_INVALID_ARGUMENT, "token id %d at index %lld is outside the vocabulary (%d)",
                           tokens[i], (long long)i, I->n_vocab);
            return TBC_ERR_INVALID_ARGUMENT;
        }
        count[q]++;
    }
    for (int q = 0; q < s->n_seq; q++) {
        if (count[q] && s->seq_lost[q]) {
            tbc__error_set(&s->last, TBC_ERR_PEER_LOST, "sequence %d's context went with a failed cluster: rewind it to "
                           "0 and start again", q);
            return TBC_ERR_PEER_LOST;
        }
        if (count[q] > s->n_ctx - s->seq_pos[q]) {
            tbc__error_set(&s->last, TBC_ERR_CONTEXT_FULL, "%lld tokens do not fit: the context holds %lld of %d",
                           (long long)count[q], (long long)s->seq_pos[q], s->n_ctx);
            return TBC_ERR_CONTEXT_FULL;
        }
    }
    if (!s->shard.has_embeddings || (!s->shard.has_output && !s->cluster)) {
        tbc__error_set(&s->last, TBC_ERR_SHARD, "this session holds layers %d-%d only: tokens go to the first node "
                       "of a pipeline", s->shard.layer_begin, s->shard.layer_end - 1);
        return TBC_ERR_SHARD;
    }
    return TBC_OK;
}

TBC__DEF tbc_result tbc_session_decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n) {
    tbc_result rc = tbc__decode_check(s, tokens, seq, n);
    if (rc != TBC_OK) return rc;
    return s->cluster ? tbc__cluster_decode(s, tokens, seq, n) : tbc__decode(s, tokens, seq, n);
}

TBC__DEF tbc_result tbc_session_eval(tbc_session *s, const int32_t *tokens, int64_t n) {
    return tbc_session_decode(s, tokens, NULL, n);
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

// ---- concurrent generations: each holds a slot (a sequence) and hands its next tokens to whichever caller runs the
// next batch; that caller takes every slot's pending tokens, so one forward pass serves all of them.
static tbc_result tbc__gen_init(tbc_session *s, tbc_error *err) {
    s->slots = (tbc__slot *)TBC_MALLOC(sizeof(tbc__slot) * (size_t)s->n_seq);
    s->gen_tok = (int32_t *)TBC_MALLOC(sizeof(int32_t) * 2 * (size_t)s->n_batch);
    if (!s->slots || !s->gen_tok) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for the generation slots");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    memset(s->slots, 0, sizeof(tbc__slot) * (size_t)s->n_seq);
    s->gen_seq = s->gen_tok + s->n_batch;
    return TBC_OK;
}

static void tbc__gen_free(tbc_session *s) {
    for (int q = 0; s->slots && q < s->n_seq; q++) TBC_FREE(s->slots[q].hist);
    TBC_FREE(s->slots);
    TBC_FREE(s->gen_tok);
}

// Without gen_mu, which a running batch holds: a monitoring thread gets its answer at once.
TBC__DEF void tbc_session_generation_load(tbc_session *s, int *busy, int *waiting) {
    if (busy) *busy = __atomic_load_n(&s->busy, __ATOMIC_RELAXED);
    if (waiting) *waiting = __atomic_load_n(&s->waiting, __ATOMIC_RELAXED);
}

// Takes a free slot (waiting for one): the one whose cached tokens share the longest start with the prompt, else
// the longest unused. Returns the sequence and how many prompt tokens it already holds. Under gen_mu.
static int tbc__slot_take(tbc_session *s, const int32_t *prompt, int64_t n, int64_t *keep, const volatile int *cancel) {
    __atomic_add_fetch(&s->waiting, 1, __ATOMIC_RELAXED);
    for (;;) {
        if (cancel && *cancel) {
            __atomic_sub_fetch(&s->waiting, 1, __ATOMIC_RELAXED);
            return -1;
        }
        int best = -1;
        int64_t best_len = -1;
        for (int q = 0; q < s->n_seq; q++) {
            const tbc__slot *sl = &s->slots[q];
            if (sl->state != TBC__SLOT_FREE) continue;
            int64_t len = 0, have = s->seq_lost[q] ? 0 : s->seq_pos[q] < sl->n_hist ? s->seq_pos[q] : sl->n_hist;
            while (len < have && len < n && sl->hist[len] == prompt[len]) len++;
            if (len > best_len || (len == best_len && sl->used < s->slots[best].used)) { best = q; best_len = len; }
        }
        if (best >= 0) {
            __atomic_sub_fetch(&s->waiting, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&s->busy, 1, __ATOMIC_RELAXED);
            s->slots[best].state = TBC__SLOT_OWN;
            s->slots[best].done = 0;  // not sampling yet: batches don't wait for it
            *keep = best_len < n ? best_len : n - 1;  // the last prompt token is read again, for its logits
            return best;
        }
        if (!cancel) {
            pthread_cond_wait(&s->gen_cv, &s->gen_mu);
            continue;
        }
        tbc__cond_wait_for(&s->gen_cv, &s->gen_mu, 0.02);  // a caller that may cancel looks at its flag every 20 ms
    }
}

// Runs one batch for the pending slots: first one token of each (the generating ones), then prompt chunks in turn
// while there is room. Under gen_mu, which the batch keeps: slots finishing their sampling queue up behind it.
static void tbc__gen_batch(tbc_session *s) {
    int64_t n = 0;
    int taken[TBC_MAX_SEQ];
    for (int q = 0; q < s->n_seq; q++) {
        tbc__slot *sl = &s->slots[q];
        taken[q] = 0;
        if (sl->state != TBC__SLOT_PENDING) continue;
        if (s->seq_lost[q]) {  // its context went with a failed cluster
            sl->rc = TBC_ERR_PEER_LOST;
            tbc__error_set(&sl->err, sl->rc, "the cluster lost a peer during this request; start a new one");
            sl->state = TBC__SLOT_READY;
        } else if (sl->cancel && *sl->cancel && sl->n_in > 1) {  // a prompt no one waits for any more
            sl->rc = TBC_ERR_CANCELLED;
            tbc__error_set(&sl->err, sl->rc, "cancelled while reading the prompt (%lld of %lld tokens read)",
                           (long long)sl->done, (long long)sl->n_in);
            sl->state = TBC__SLOT_READY;
        } else if (n < s->n_batch) {
            s->gen_tok[n] = sl->in[sl->done];
            s->gen_seq[n++] = q;
            taken[q] = 1;
        }
    }
    for (int k = 0; k < s->n_seq && n < s->n_batch; k++) {
        int q = (s->next_fill + k) % s->n_seq;
        tbc__slot *sl = &s->slots[q];
        if (sl->state != TBC__SLOT_PENDING || !taken[q]) continue;
        while (n < s->n_batch && sl->done + taken[q] < sl->n_in) {
            s->gen_tok[n] = sl->in[sl->done + taken[q]++];
            s->gen_seq[n++] = q;
        }
    }
    s->next_fill = (s->next_fill + 1) % s->n_seq;
    if (n == 0) return;
    tbc_result rc = tbc_session_decode(s, s->gen_tok, s->gen_seq, n);
    for (int q = 0; q < s->n_seq; q++) {
        tbc__slot *sl = &s->slots[q];
        if (!taken[q]) continue;
        if (rc == TBC_OK) {
            memcpy(sl->hist + s->seq_pos[q] - taken[q], sl->in + sl->done, sizeof(int32_t) * (size_t)taken[q]);
            sl->n_hist = s->seq_pos[q];
            sl->done += taken[q];
        }
        if (rc != TBC_OK || sl->done == sl->n_in) {
            sl->rc = rc;
            if (rc) sl->err = s->last;
            sl->state = TBC__SLOT_READY;
        }
    }
}

// Hands n tokens of sequence q to the next batch and waits until all are read (its logits are then in
// tbc_session_seq_logits), running batches itself while no other caller does. Before a batch it waits up to 5 ms
// for the other sequences that are sampling their next token, so they ride along.
static tbc_result tbc__gen_read(tbc_session *s, int q, const int32_t *tokens, int64_t n, tbc_error *err) {
    tbc__slot *sl = &s->slots[q];
    pthread_mutex_lock(&s->gen_mu);
    sl->in = tokens;
    sl->n_in = n;
    sl->done = 0;
    sl->rc = TBC_OK;
    sl->state = TBC__SLOT_PENDING;
    pthread_cond_broadcast(&s->gen_cv);
    while (sl->state == TBC__SLOT_PENDING) {
        if (s->stepping) {
            pthread_cond_wait(&s->gen_cv, &s->gen_mu);
            continue;
        }
        s->stepping = 1;
        double until = tbc__now() + 0.005;
        for (;;) {
            int late = 0;
            for (int k = 0; k < s->n_seq; k++) late += s->slots[k].state == TBC__SLOT_OWN && s->slots[k].done > 0;
            if (!late || tbc__now() >= until) break;
            tbc__cond_wait_for(&s->gen_cv, &s->gen_mu, 0.0005);
        }
        tbc__gen_batch(s);
        s->stepping = 0;
        pthread_cond_broadcast(&s->gen_cv);
    }
    sl->state = TBC__SLOT_OWN;
    tbc_result rc = sl->rc;
    if (rc) *err = sl->err;
    pthread_mutex_unlock(&s->gen_mu);
    return rc;
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
    int q = -1;
    int64_t keep = 0;
    tbc__slot *sl = NULL;
    for (size_t i = 0; i < d->n_stop; i++) {
        if (!d->stop[i] || !d->stop[i][0]) {
            tbc__error_set(&res.error, TBC_ERR_INVALID_ARGUMENT, "stop string %zu is empty", i);
            rc = TBC_ERR_INVALID_ARGUMENT;
            goto done;
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
        char *text = NULL;
        size_t tlen = 0;
        int flags = TBC_TOKENIZE_ADD_SPECIAL;
        if (d->messages) {
            rc = tbc_chat_apply(m, d->messages, d->n_messages, 1, NULL, 0, &tlen);
            if (rc != TBC_OK && rc != TBC_ERR_BUFFER_TOO_SMALL) {
                tbc__error_set(&res.error, rc, "chat template: %s", m->last.message);
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
    }
    if (n_prompt <= 0) {
        rc = TBC_ERR_INVALID_ARGUMENT;
        tbc__error_set(&res.error, rc, "the prompt is empty");
        goto done;
    }
    if (n_prompt > s->n_ctx) {
        rc = TBC_ERR_CONTEXT_FULL;
        tbc__error_set(&res.error, rc, "the prompt's %lld tokens do not fit: the context holds %d", (long long)n_prompt,
                       s->n_ctx);
        goto done;
    }
    if (d->need_room && d->max_tokens > 0 && n_prompt + d->max_tokens > s->n_ctx) {
        rc = TBC_ERR_CONTEXT_FULL;
        tbc__error_set(&res.error, rc, "the prompt's %lld tokens and max_tokens %d do not fit: the context holds %d",
                       (long long)n_prompt, d->max_tokens, s->n_ctx);
        goto done;
    }
    for (int64_t i = 0; i < n_prompt; i++) {
        if (prompt[i] < 0 || prompt[i] >= n_vocab) {
            rc = TBC_ERR_INVALID_ARGUMENT;
            tbc__error_set(&res.error, rc, "prompt token %d at index %lld is outside the vocabulary (%d)", prompt[i],
                           (long long)i, n_vocab);
            goto done;
        }
    }
    res.n_prompt = n_prompt;
    if ((rc = tbc_sampler_create(&d->sampling, n_vocab, &smp)) != TBC_OK) {
        tbc__error_set(&res.error, rc, "invalid sampling parameters");
        goto done;
    }
    for (int64_t i = 0; i < n_prompt; i++) tbc_sampler_accept(smp, prompt[i]);
    // 2. a sequence, and the part of the prompt it does not hold yet
    pthread_mutex_lock(&s->gen_mu);
    q = tbc__slot_take(s, prompt, n_prompt, &keep, d->cancel);
    if (q < 0) {
        pthread_mutex_unlock(&s->gen_mu);
        rc = TBC_ERR_CANCELLED;
        tbc__error_set(&res.error, rc, "cancelled while waiting for a free sequence");
        goto done;
    }
    sl = &s->slots[q];
    sl->cancel = d->cancel;
    tbc_session_seq_rewind(s, q, keep);
    if (sl->cap < s->n_ctx) {  // its token history, allocated on first use
        TBC_FREE(sl->hist);
        sl->hist = (int32_t *)TBC_MALLOC(sizeof(int32_t) * (size_t)s->n_ctx);
        sl->cap = sl->hist ? s->n_ctx : 0;
        if (!sl->hist) tbc_session_seq_rewind(s, q, 0);
    }
    pthread_mutex_unlock(&s->gen_mu);
    if (!sl->hist) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
    res.n_cached = keep;
    t0 = tbc__now();
    if ((rc = tbc__gen_read(s, q, prompt + keep, n_prompt - keep, &res.error)) != TBC_OK) goto done;
    res.prefill_seconds = tbc__now() - t0;
    t0 = tbc__now();
    pend_cap = 256 + max_stop * 2;
    pending = (char *)TBC_MALLOC(pend_cap);
    if (!pending) { rc = TBC_ERR_OUT_OF_MEMORY; goto done; }
    // 3. sample, stream, repeat
    for (;;) {
        if (d->max_tokens > 0 && res.n_generated >= d->max_tokens) { res.stop_reason = TBC_STOP_MAX_TOKENS; break; }
        const float *logits = tbc_session_seq_logits(s, q);
        if (d->on_logits) d->on_logits(d->user, logits, n_vocab);
        int32_t tok = tbc_sampler_sample(smp, logits);
        res.n_generated++;
        if (d->on_token) d->on_token(d->user, tok);
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
        if (stop_cb || (d->cancel && *d->cancel)) { res.stop_reason = TBC_STOP_CALLBACK; break; }
        if (tbc_session_seq_pos(s, q) >= s->n_ctx) { res.stop_reason = TBC_STOP_CONTEXT; break; }
        if ((rc = tbc__gen_read(s, q, &tok, 1, &res.error)) != TBC_OK) goto done;
    }
    // text held back for a stop string that never came
    if (res.stop_reason != TBC_STOP_STRING && res.stop_reason != TBC_STOP_CALLBACK && pend_n && d->on_text)
        d->on_text(d->user, pending, pend_n, -1);
    res.decode_seconds = tbc__now() - t0;
done:
    if (q >= 0) {  // the slot goes back, its context kept for the next prompt that starts the same way
        pthread_mutex_lock(&s->gen_mu);
        s->slots[q].state = TBC__SLOT_FREE;
        s->slots[q].used = tbc__now();
        __atomic_sub_fetch(&s->busy, 1, __ATOMIC_RELAXED);
        pthread_cond_broadcast(&s->gen_cv);
        pthread_mutex_unlock(&s->gen_mu);
    }
    if (rc && !res.error.code) {
        res.error.code = rc;
        if (rc == TBC_ERR_OUT_OF_MEMORY) tbc__error_set(&res.error, rc, "out of memory");
        else res.error = s->last;  // from the tokenizer or chat template
    }
    if (rc) {
        pthread_mutex_lock(&s->gen_mu);
        s->last = res.error;
        pthread_mutex_unlock(&s->gen_mu);
    }
    TBC_FREE(prompt);
    TBC_FREE(pending);
    tbc_sampler_destroy(smp);
    if (result) *result = res;
    return rc;
}


// >>transport
// A link is an ordered, reliable channel of framed, authenticated messages to one peer. Frame:
//   header (32 bytes, little-endian): magic "TBCM", u16 protocol version, u16 type, u32 payload length,
//   u32 flags, u64 sequence number, u64 reserved (0)
//   payload (length bytes)
//   tag (32 bytes): HMAC-SHA-256 under the link's session key over header and payload (zeros before the
//   handshake has derived a key; such frames are only accepted during the handshake)
// Every length is checked against the limit of its message type before anything is read into memory.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <arpa/inet.h>
#if !defined(TBC_NO_RDMA) && defined(__has_include)
#if __has_include(<infiniband/verbs.h>)
#define TBC__RDMA 1
#include <dlfcn.h>
#include <infiniband/verbs.h>
#endif
#endif

typedef struct tbc__rdma tbc__rdma;  // an RDMA endpoint carrying a link's stream (>>rdma)
// What a hello offers: RC and UC queue pairs, or UC only (Apple's provider).
#if defined(__APPLE__)
#define TBC__RDMA_OFFER " rdma-uc"
#else
#define TBC__RDMA_OFFER " rdma"
#endif

#define TBC__PROTOCOL_VERSION 2
#define TBC__FRAME_MAGIC 0x4d434254u  // "TBCM"
#define TBC__FRAME_HEADER 32
#define TBC__FRAME_TAG 32

typedef struct tbc__link {
    int fd;
    char peer[160];                // "host:port" for messages
    uint8_t key[32];
    int keyed;                     // frames carry and need a valid tag
    uint64_t send_seq, recv_seq;
    uint64_t bytes_sent, bytes_received;
    double last_recv;              // tbc__now() of the last frame received
    double spin;                   // seconds to keep asking for data before sleeping in poll (per-token traffic)
    tbc__rdma *rdma;               // when set, the stream goes over RDMA; fd stays open as the liveness check
} tbc__link;

static tbc_result tbc__rdma_io(tbc__link *l, int writing, struct iovec *iov, int iovcnt, double deadline,
                               tbc_error *err);
static void tbc__rdma_free(tbc__rdma *r);

// Splits "host:port" / "[v6]:port" into host and port; 0 on success.
static int tbc__split_hostport(const char *s, char *host, size_t host_cap, char *port, size_t port_cap) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        if ((size_t)(close - s - 1) >= host_cap) return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= host_cap) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    if (!colon[1] || strlen(colon + 1) >= port_cap) return -1;
    for (const char *p = colon + 1; *p; p++) if (*p < '0' || *p > '9') return -1;
    if (atoi(colon + 1) < 0 || atoi(colon + 1) > 65535) return -1;
    strcpy(port, colon + 1);
    return 0;
}

// A socket that is not inherited by child processes (SOCK_CLOEXEC is not portable to macOS).
static int tbc__socket(int family, int type, int proto) {
    int fd = socket(family, type, proto);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static int tbc__set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void tbc__sock_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
}

// Whether addr (a numeric host) is a loopback address.
static int tbc__is_loopback_host(const char *host) {
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

static tbc_result tbc__sock_listen(const char *addr, int *out_fd, int *out_port, tbc_error *err) {
    char host[256], port[16];
    if (tbc__split_hostport(addr, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "listen address '%s' is not HOST:PORT", addr);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot resolve '%s': %s", addr, gai_strerror(gai));
        return TBC_ERR_NETWORK;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = tbc__socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot listen on %s: %s", addr, strerror(e));
        return TBC_ERR_NETWORK;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int p = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        p = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    *out_fd = fd;
    if (out_port) *out_port = p;
    return TBC_OK;
}

// Connects with a deadline (seconds from now).
static tbc_result tbc__sock_connect(const char *addr, double timeout, int *out_fd, tbc_error *err) {
    char host[256], port[16];
    if (tbc__split_hostport(addr, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "peer address '%s' is not HOST:PORT", addr);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot resolve peer '%s': %s", addr, gai_strerror(gai));
        return TBC_ERR_NETWORK;
    }
    int fd = -1, e = ETIMEDOUT;
    double deadline = tbc__now() + timeout;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = tbc__socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        tbc__set_nonblock(fd);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) { e = errno; close(fd); fd = -1; continue; }
            struct pollfd pf;
            pf.fd = fd;
            pf.events = POLLOUT;
            int left = (int)((deadline - tbc__now()) * 1000);
            int r = left > 0 ? poll(&pf, 1, left) : 0;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                e = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot connect to %s: %s", addr, strerror(e));
        return TBC_ERR_NETWORK;
    }
    tbc__sock_tune(fd);
    *out_fd = fd;
    return TBC_OK;
}

// Reads or writes exactly n bytes before the deadline (absolute tbc__now() seconds; <= 0: none).
static tbc_result tbc__io_all(tbc__link *l, int writing, struct iovec *iov, int iovcnt, double deadline,
                              tbc_error *err) {
    if (l->rdma) return tbc__rdma_io(l, writing, iov, iovcnt, deadline, err);
    double spin_until = 0;
    while (iovcnt > 0) {
        ssize_t r;
        if (writing) {
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)iovcnt;
#ifdef MSG_NOSIGNAL
            r = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
#else
            r = sendmsg(l->fd, &mh, 0);
#endif
        } else {
            r = readv(l->fd, iov, iovcnt);
        }
        if (r > 0) {
            if (writing) l->bytes_sent += (uint64_t)r;
            else l->bytes_received += (uint64_t)r;
            size_t left = (size_t)r;
            while (iovcnt > 0 && left >= iov->iov_len) { left -= iov->iov_len; iov++; iovcnt--; }
            if (iovcnt > 0) { iov->iov_base = (uint8_t *)iov->iov_base + left; iov->iov_len -= left; }
            continue;
        }
        if (r == 0 && !writing) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "peer %s closed the connection", l->peer);
            return TBC_ERR_PEER_LOST;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "connection to %s failed: %s", l->peer, strerror(errno));
            return TBC_ERR_PEER_LOST;
        }
        if (!writing && l->spin > 0) {
            // A partial sum is usually microseconds away: asking again costs less than sleeping in poll and being
            // woken (tens of microseconds per message, two messages per all-reduce).
            if (spin_until == 0) spin_until = tbc__now() + l->spin;
            if (tbc__now() < spin_until) continue;
        }
        struct pollfd pf;
        pf.fd = l->fd;
        pf.events = writing ? POLLOUT : POLLIN;
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - tbc__now();
            if (left <= 0) {
                tbc__error_set(err, TBC_ERR_TIMEOUT, "peer %s did not %s in time", l->peer,
                               writing ? "take our data" : "answer");
                return TBC_ERR_TIMEOUT;
            }
            ms = (int)(left * 1000) + 1;
        }
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "poll on %s failed: %s", l->peer, strerror(errno));
            return TBC_ERR_PEER_LOST;
        }
    }
    return TBC_OK;
}

// How long a link busy-waits for per-token traffic before sleeping (TBC_SPIN_US overrides; 0 = never).
static double tbc__spin_seconds(void) {
    const char *v = getenv("TBC_SPIN_US");
    double us = v && *v ? atof(v) : 200;
    return us > 0 && us < 1e6 ? us * 1e-6 : 0;
}

static void tbc__put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void tbc__put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void tbc__put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t tbc__get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t tbc__get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t tbc__get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static void tbc__frame_tag(const tbc__link *l, const uint8_t *hdr, const void *payload, size_t n, uint8_t tag[32]) {
    if (!l->keyed) { memset(tag, 0, 32); return; }
    tbc__hmac h;
    tbc__hmac_init(&h, l->key, 32);
    tbc__hmac_update(&h, hdr, TBC__FRAME_HEADER);
    if (n) tbc__hmac_update(&h, payload, n);
    tbc__hmac_final(&h, tag);
}

// Sends one message; payload may be split in two parts (a small head and a large body) to avoid copies.
static tbc_result tbc__link_send2(tbc__link *l, uint16_t type, const void *a, size_t na, const void *b, size_t nb,
                                  double deadline, tbc_error *err) {
    uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG];
    uint64_t n = (uint64_t)na + nb;
    if (n > UINT32_MAX) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "message of %llu bytes is too large", (unsigned long long)n);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc__put_u32(hdr, TBC__FRAME_MAGIC);
    tbc__put_u16(hdr + 4, TBC__PROTOCOL_VERSION);
    tbc__put_u16(hdr + 6, type);
    tbc__put_u32(hdr + 8, (uint32_t)n);
    tbc__put_u32(hdr + 12, 0);
    tbc__put_u64(hdr + 16, l->send_seq++);
    tbc__put_u64(hdr + 24, 0);
    if (l->keyed) {
        tbc__hmac h;
        tbc__hmac_init(&h, l->key, 32);
        tbc__hmac_update(&h, hdr, TBC__FRAME_HEADER);
        if (na) tbc__hmac_update(&h, a, na);
        if (nb) tbc__hmac_update(&h, b, nb);
        tbc__hmac_final(&h, tag);
    } else {
        memset(tag, 0, sizeof tag);
    }
    struct iovec iov[4];
    int c = 0;
    iov[c].iov_base = hdr; iov[c].iov_len = sizeof hdr; c++;
    if (na) { iov[c].iov_base = (void *)a; iov[c].iov_len = na; c++; }
    if (nb) { iov[c].iov_base = (void *)b; iov[c].iov_len = nb; c++; }
    iov[c].iov_base = tag; iov[c].iov_len = sizeof tag; c++;
    return tbc__io_all(l, 1, iov, c, deadline, err);
}

static tbc_result tbc__link_send(tbc__link *l, uint16_t type, const void *p, size_t n, double deadline, tbc_error *err) {
    return tbc__link_send2(l, type, p, n, NULL, 0, deadline, err);
}

// Receives one message into buf (cap bytes). The type must be one of the allowed (bitmask of 1 << type); its
// length at most max_len (and cap). Checks magic, version, sequence and tag.
static tbc_result tbc__link_recv(tbc__link *l, uint64_t allowed, uint16_t *type, void *buf, size_t cap,
                                 uint32_t *len, double deadline, tbc_error *err) {
    uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG], want[TBC__FRAME_TAG];
    struct iovec iov;
    iov.iov_base = hdr;
    iov.iov_len = sizeof hdr;
    tbc_result rc = tbc__io_all(l, 0, &iov, 1, deadline, err);
    if (rc) return rc;
    uint32_t magic = tbc__get_u32(hdr), n = tbc__get_u32(hdr + 8);
    uint16_t ver = tbc__get_u16(hdr + 4), t = tbc__get_u16(hdr + 6);
    uint64_t seq = tbc__get_u64(hdr + 16);
    if (magic != TBC__FRAME_MAGIC) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent a frame with bad magic 0x%08x (not a tbcluster node?)",
                       l->peer, magic);
        return TBC_ERR_PROTOCOL;
    }
    if (ver != TBC__PROTOCOL_VERSION) {
        tbc__error_set(err, TBC_ERR_VERSION, "peer %s speaks protocol version %u, this node speaks %u", l->peer,
                       ver, TBC__PROTOCOL_VERSION);
        return TBC_ERR_VERSION;
    }
    if (t >= 64 || !((allowed >> t) & 1)) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent message type %u, which is not expected now", l->peer, t);
        return TBC_ERR_PROTOCOL;
    }
    if (n > cap) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent a %u-byte message of type %u (limit %zu)", l->peer, n, t,
                       cap);
        return TBC_ERR_PROTOCOL;
    }
    if (seq != l->recv_seq) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent message %llu out of order (expected %llu): replayed or "
                       "reordered", l->peer, (unsigned long long)seq, (unsigned long long)l->recv_seq);
        return TBC_ERR_PROTOCOL;
    }
    struct iovec v2[2];
    int c = 0;
    if (n) { v2[c].iov_base = buf; v2[c].iov_len = n; c++; }
    v2[c].iov_base = tag; v2[c].iov_len = sizeof tag; c++;
    if ((rc = tbc__io_all(l, 0, v2, c, deadline, err))) return rc;
    tbc__frame_tag(l, hdr, buf, n, want);
    if (!tbc__ct_equal(tag, want, sizeof tag)) {
        tbc__error_set(err, TBC_ERR_AUTH, "message %llu from %s failed authentication (wrong key, or tampered)",
                       (unsigned long long)seq, l->peer);
        return TBC_ERR_AUTH;
    }
    l->recv_seq++;
    l->last_recv = tbc__now();
    *type = t;
    *len = n;
    return TBC_OK;
}

static void tbc__link_close(tbc__link *l) {
    tbc__rdma_free(l->rdma);
    l->rdma = NULL;
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

// A bounds-checked builder for payloads.
typedef struct tbc__wbuf {
    uint8_t *p;
    size_t n, cap;
    int failed;
} tbc__wbuf;

static void tbc__wb_put(tbc__wbuf *w, const void *x, size_t n) {
    if (w->failed) return;
    if (w->n + n > w->cap) {
        size_t nc = (w->n + n) * 2 + 64;
        uint8_t *np = (uint8_t *)TBC_REALLOC(w->p, nc);
        if (!np) { w->failed = 1; return; }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->n, x, n);
    w->n += n;
}
static void tbc__wb_u32(tbc__wbuf *w, uint32_t v) { uint8_t b[4]; tbc__put_u32(b, v); tbc__wb_put(w, b, 4); }
static void tbc__wb_u64(tbc__wbuf *w, uint64_t v) { uint8_t b[8]; tbc__put_u64(b, v); tbc__wb_put(w, b, 8); }
static void tbc__wb_str(tbc__wbuf *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    tbc__wb_u32(w, (uint32_t)n);
    tbc__wb_put(w, s, n);
}

// >>rdma
// The RDMA transport: the same byte stream as TCP (frames, tags and all), carried by two-sided SEND/RECV on a
// queue pair. RC on Linux, UC on macOS (Apple supports only UC; both work on Linux). libibverbs is loaded at run
// time; a machine without it, or without a device on the link's address, keeps TCP. The TCP socket stays open as the
// liveness check (UC gives no notice when the peer goes away).
//
// Each direction has a ring of `depth` registered slots of `stride` bytes (a multiple of 4 KiB; with UC every SEND
// covers a whole slot, as Thunderbolt requires). A message fills one slot: an 8-byte header {u32 length of the data, u32 credits returned} and up to stride - 8 bytes of stream. The
// receiver pre-posts a RECV per slot and re-posts a slot once the reader has consumed it; the sender may have at most
// as many messages outstanding as it holds credits, which the receiver returns in the headers of its own messages
// (or in a message of 0 data bytes when it has nothing else to send and half its ring is free again).
#if defined(TBC__RDMA)
typedef struct tbc__ibv {
    void *lib;
    struct ibv_device **(*get_device_list)(int *n);
    void (*free_device_list)(struct ibv_device **list);
    const char *(*get_device_name)(struct ibv_device *dev);
    struct ibv_context *(*open_device)(struct ibv_device *dev);
    int (*close_device)(struct ibv_context *ctx);
    int (*query_port)(struct ibv_context *ctx, uint8_t port, struct ibv_port_attr *attr);
    int (*query_device)(struct ibv_context *ctx, struct ibv_device_attr *attr);
    int (*query_gid)(struct ibv_context *ctx, uint8_t port, int index, union ibv_gid *gid);
    struct ibv_pd *(*alloc_pd)(struct ibv_context *ctx);
    int (*dealloc_pd)(struct ibv_pd *pd);
    struct ibv_comp_channel *(*create_comp_channel)(struct ibv_context *ctx);
    int (*destroy_comp_channel)(struct ibv_comp_channel *ch);
    struct ibv_cq *(*create_cq)(struct ibv_context *ctx, int cqe, void *user, struct ibv_comp_channel *ch, int vector);
    int (*destroy_cq)(struct ibv_cq *cq);
    int (*get_cq_event)(struct ibv_comp_channel *ch, struct ibv_cq **cq, void **user);
    void (*ack_cq_events)(struct ibv_cq *cq, unsigned int n);
    struct ibv_qp *(*create_qp)(struct ibv_pd *pd, struct ibv_qp_init_attr *attr);
    int (*destroy_qp)(struct ibv_qp *qp);
    int (*modify_qp)(struct ibv_qp *qp, struct ibv_qp_attr *attr, int mask);
    struct ibv_mr *(*reg_mr)(struct ibv_pd *pd, void *addr, size_t len, int access);
    int (*dereg_mr)(struct ibv_mr *mr);
    const char *(*wc_status_str)(enum ibv_wc_status status);
} tbc__ibv;

static tbc__ibv tbc__verbs;
static const uint8_t tbc__ipv4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};  // ::ffff:a.b.c.d
static int tbc__verbs_state;  // 0 not tried, 1 loaded, -1 not available (tbc__verbs_why says why)
static char tbc__verbs_why[160];
static pthread_mutex_t tbc__verbs_mu = PTHREAD_MUTEX_INITIALIZER;

static void *tbc__verbs_sym(void *lib, const char *name) {
#if defined(__linux__) && defined(__GLIBC__)
    void *p = dlvsym(lib, name, "IBVERBS_1.1");
    if (!p) p = dlvsym(lib, name, "IBVERBS_1.0");
    if (p) return p;
#endif
    return dlsym(lib, name);
}

// Loads libibverbs (Linux) or Apple's librdma (macOS 26.2+) once; 1 when its control-path functions are all there.
static int tbc__verbs_load(void) {
    pthread_mutex_lock(&tbc__verbs_mu);
    if (tbc__verbs_state == 0) {
#if defined(__APPLE__)
        const char *name = "/usr/lib/librdma.dylib";
#else
        const char *name = "libibverbs.so.1";
#endif
        tbc__ibv *v = &tbc__verbs;
        v->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
        if (!v->lib) {
            snprintf(tbc__verbs_why, sizeof tbc__verbs_why, "%s is not installed", name);
            tbc__verbs_state = -1;
        } else {
            struct { void **slot; const char *name; } syms[] = {
                {(void **)&v->get_device_list, "ibv_get_device_list"}, {(void **)&v->free_device_list, "ibv_free_device_list"},
                {(void **)&v->get_device_name, "ibv_get_device_name"}, {(void **)&v->open_device, "ibv_open_device"},
                {(void **)&v->close_device, "ibv_close_device"}, {(void **)&v->query_port, "ibv_query_port"},
                {(void **)&v->query_device, "ibv_query_device"}, {(void **)&v->query_gid, "ibv_query_gid"},
                {(void **)&v->alloc_pd, "ibv_alloc_pd"}, {(void **)&v->dealloc_pd, "ibv_dealloc_pd"},
                {(void **)&v->create_comp_channel, "ibv_create_comp_channel"},
                {(void **)&v->destroy_comp_channel, "ibv_destroy_comp_channel"}, {(void **)&v->create_cq, "ibv_create_cq"},
                {(void **)&v->destroy_cq, "ibv_destroy_cq"}, {(void **)&v->get_cq_event, "ibv_get_cq_event"},
                {(void **)&v->ack_cq_events, "ibv_ack_cq_events"}, {(void **)&v->create_qp, "ibv_create_qp"},
                {(void **)&v->destroy_qp, "ibv_destroy_qp"}, {(void **)&v->modify_qp, "ibv_modify_qp"},
                {(void **)&v->reg_mr, "ibv_reg_mr"}, {(void **)&v->dereg_mr, "ibv_dereg_mr"},
                {(void **)&v->wc_status_str, "ibv_wc_status_str"},
            };
            tbc__verbs_state = 1;
            for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
                void *p = tbc__verbs_sym(v->lib, syms[i].name);
                memcpy(syms[i].slot, &p, sizeof p);
                if (!p) {
                    snprintf(tbc__verbs_why, sizeof tbc__verbs_why, "%s lacks %s", name, syms[i].name);
                    tbc__verbs_state = -1;
                    break;
                }
            }
        }
    }
    int ok = tbc__verbs_state == 1;
    pthread_mutex_unlock(&tbc__verbs_mu);
    return ok;
}
#endif // TBC__RDMA

#if defined(TBC__RDMA)
#define TBC__RDMA_DEPTH 16
#define TBC__RDMA_HDR 8

struct tbc__rdma {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_comp_channel *ch;
    struct ibv_cq *cq;
    struct ibv_qp *qp;
    struct ibv_mr *mr;
    uint8_t *mem;                  // depth receive slots, then depth send slots
    size_t stride;
    int depth, uc, armed;
    uint32_t max_inline;           // small messages go inline (the adapter copies them at posting time)
    char dev[64];
    uint8_t port;
    int gid_index;
    union ibv_gid gid;
    uint16_t lid;
    uint32_t psn;
    enum ibv_mtu mtu;
    // receiving: slots complete in the order they were posted
    uint32_t rx_len[TBC__RDMA_DEPTH];  // data bytes of a completed slot
    int rx_done[TBC__RDMA_DEPTH];
    int rx_next;                   // the slot the stream continues in
    size_t rx_off;                 // bytes of it already read
    int credits_owed;              // slots re-posted since we last told the peer
    // sending
    int tx_busy[TBC__RDMA_DEPTH];
    int tx_next;
    int credits;                   // messages the peer has room for
    double idle_since;
};

// Its fields as exchanged in the RDMA message: u32 mode (1 RC, 2 UC), u32 qpn, u32 psn, u32 lid, u32 mtu, u32 depth,
// u32 stride, 16-byte gid.
#define TBC__RDMA_INFO 44

static void tbc__rdma_free(tbc__rdma *r) {
    if (!r) return;
    tbc__ibv *v = &tbc__verbs;
    if (r->qp) v->destroy_qp(r->qp);  // the queue pair first (never through the error state: Apple's rule)
    if (r->mr) v->dereg_mr(r->mr);
    if (r->cq) v->destroy_cq(r->cq);
    if (r->ch) v->destroy_comp_channel(r->ch);
    if (r->pd) v->dealloc_pd(r->pd);
    if (r->ctx) v->close_device(r->ctx);
    TBC_FREE(r->mem);
    TBC_FREE(r);
}

// 1 if GID index i of the port is RoCE v2 (Linux says so in sysfs; elsewhere any type is accepted).
static int tbc__rdma_gid_v2(const char *dev, int port, int i) {
    char path[256], t[32] = {0};
    snprintf(path, sizeof path, "/sys/class/infiniband/%s/ports/%d/gid_attrs/types/%d", dev, port, i);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fgets(t, sizeof t, f) != NULL && strstr(t, "v2") != NULL;
    fclose(f);
    return ok;
}

// Opens the device, port and GID for a link whose TCP socket has local IPv4 address ip4 (network order; 0: any):
// an IPv4-mapped GID equal to it, RoCE v2 preferred, on the first ACTIVE port; or the named device / GID index.
static tbc_result tbc__rdma_open(const char *want_dev, int want_gid, uint32_t ip4, int uc, tbc__rdma **out,
                                 char *why, size_t why_cap) {
    tbc__ibv *v = &tbc__verbs;
    if (!tbc__verbs_load()) {
        snprintf(why, why_cap, "%s", tbc__verbs_why);
        return TBC_ERR_UNSUPPORTED;
    }
    int n = 0;
    struct ibv_device **list = v->get_device_list(&n);
    if (!list || n == 0) {
        if (list) v->free_device_list(list);
        snprintf(why, why_cap, "no RDMA device");
        return TBC_ERR_UNSUPPORTED;
    }
    tbc__rdma *r = (tbc__rdma *)TBC_MALLOC(sizeof(tbc__rdma));
    if (!r) { v->free_device_list(list); return TBC_ERR_OUT_OF_MEMORY; }
    memset(r, 0, sizeof *r);
    int best = -1;  // 2: mapped GID, RoCE v2; 1: mapped GID; 0: a named device and GID index
    snprintf(why, why_cap, "no RDMA device has this link's address");
    for (int d = 0; d < n && best < 2; d++) {
        const char *name = v->get_device_name(list[d]);
        if (want_dev && want_dev[0] && strcmp(name, want_dev) != 0) continue;
        struct ibv_context *ctx = v->open_device(list[d]);
        if (!ctx) continue;
        struct ibv_device_attr da;
        int keep = 0;
        if (v->query_device(ctx, &da) == 0) {
            for (int p = 1; p <= da.phys_port_cnt && best < 2; p++) {
                struct ibv_port_attr pa;
                memset(&pa, 0, sizeof pa);
                if (v->query_port(ctx, (uint8_t)p, &pa) != 0 || pa.state != IBV_PORT_ACTIVE) continue;
                for (int i = 0; i < pa.gid_tbl_len && best < 2; i++) {
                    union ibv_gid g;
                    if (v->query_gid(ctx, (uint8_t)p, i, &g) != 0) continue;
                    int score;
                    if (want_gid >= 0) {
                        if (i != want_gid) continue;
                        score = 2;
                    } else {
                        if (memcmp(g.raw, tbc__ipv4_mapped, 12) != 0 || (ip4 && memcmp(g.raw + 12, &ip4, 4) != 0)) continue;
                        score = tbc__rdma_gid_v2(name, p, i) != 0 ? 2 : 1;
                    }
                    if (score <= best) continue;
                    if (r->ctx && r->ctx != ctx) v->close_device(r->ctx);
                    r->ctx = ctx;
                    keep = 1;
                    best = score;
                    snprintf(r->dev, sizeof r->dev, "%s", name);
                    r->port = (uint8_t)p;
                    r->gid_index = i;
                    r->gid = g;
                    r->lid = pa.lid;
                    r->mtu = pa.active_mtu;
                }
            }
        }
        if (!keep) v->close_device(ctx);
    }
    v->free_device_list(list);
    if (best < 0) {
        TBC_FREE(r);
        return TBC_ERR_UNSUPPORTED;
    }
    // Buffers, registered once; the queue pair; every receive slot posted once the pair is connected.
    r->uc = uc;
    r->depth = TBC__RDMA_DEPTH;
    r->stride = 64 * 1024;
    r->credits = r->depth;
    size_t bytes = r->stride * (size_t)r->depth * 2;
    r->mem = (uint8_t *)TBC_MALLOC(bytes + 4096);
    int access = IBV_ACCESS_LOCAL_WRITE;
#if defined(__APPLE__)
    access |= IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;  // Apple requires these even for SEND/RECV
#endif
    if (r->mem) r->pd = v->alloc_pd(r->ctx);
    if (r->pd) r->ch = v->create_comp_channel(r->ctx);
    if (r->ch) r->cq = v->create_cq(r->ctx, 2 * r->depth + 4, NULL, r->ch, 0);
    if (r->cq) r->mr = v->reg_mr(r->pd, r->mem, bytes, access);
    if (r->mr) {
        struct ibv_qp_init_attr qa;
        memset(&qa, 0, sizeof qa);
        qa.send_cq = r->cq;
        qa.recv_cq = r->cq;
        qa.qp_type = uc ? IBV_QPT_UC : IBV_QPT_RC;
        qa.cap.max_send_wr = (uint32_t)r->depth + 1;
        qa.cap.max_recv_wr = (uint32_t)r->depth + 1;
        qa.cap.max_send_sge = 1;
        qa.cap.max_recv_sge = 1;
        qa.cap.max_inline_data = 256;
        r->qp = v->create_qp(r->pd, &qa);
        if (!r->qp) {  // a device without inline data
            qa.cap.max_inline_data = 0;
            r->qp = v->create_qp(r->pd, &qa);
        }
        r->max_inline = qa.cap.max_inline_data;
    }
    if (!r->qp) {
        snprintf(why, why_cap, "cannot set up a queue pair on %s: %s", r->dev, strerror(errno));
        tbc__rdma_free(r);
        return TBC_ERR_UNSUPPORTED;
    }
    uint8_t rnd[4];
    tbc__random_bytes(rnd, 4);
    r->psn = tbc__get_u32(rnd) & 0xffffffu;
    struct ibv_qp_attr at;
    memset(&at, 0, sizeof at);
    at.qp_state = IBV_QPS_INIT;
    at.pkey_index = 0;
    at.port_num = r->port;
    at.qp_access_flags = uc ? IBV_ACCESS_REMOTE_WRITE : 0;
    if (v->modify_qp(r->qp, &at, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) != 0) {
        snprintf(why, why_cap, "%s: queue pair refused INIT: %s", r->dev, strerror(errno));
        tbc__rdma_free(r);
        return TBC_ERR_UNSUPPORTED;
    }
    *out = r;
    return TBC_OK;
}

static void tbc__rdma_info(const tbc__rdma *r, uint8_t *p) {
    tbc__put_u32(p, r->uc ? 2 : 1);
    tbc__put_u32(p + 4, r->qp->qp_num);
    tbc__put_u32(p + 8, r->psn);
    tbc__put_u32(p + 12, r->lid);
    tbc__put_u32(p + 16, (uint32_t)r->mtu);
    tbc__put_u32(p + 20, (uint32_t)r->depth);
    tbc__put_u32(p + 24, (uint32_t)r->stride);
    memcpy(p + 28, r->gid.raw, 16);
}

static int tbc__rdma_post_recv(tbc__rdma *r, int slot) {
    struct ibv_sge sg;
    sg.addr = (uint64_t)(uintptr_t)(r->mem + (size_t)slot * r->stride);
    sg.length = (uint32_t)r->stride;
    sg.lkey = r->mr->lkey;
    struct ibv_recv_wr wr, *bad = NULL;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = (uint64_t)slot;
    wr.sg_list = &sg;
    wr.num_sge = 1;
    r->rx_done[slot] = 0;
    return ibv_post_recv(r->qp, &wr, &bad);
}

// Connects to the peer's queue pair (its info as exchanged), then posts every receive slot.
static tbc_result tbc__rdma_connect(tbc__rdma *r, const uint8_t *peer, char *why, size_t why_cap) {
    tbc__ibv *v = &tbc__verbs;
    uint32_t mode = tbc__get_u32(peer), qpn = tbc__get_u32(peer + 4), psn = tbc__get_u32(peer + 8);
    uint32_t lid = tbc__get_u32(peer + 12), mtu = tbc__get_u32(peer + 16), depth = tbc__get_u32(peer + 20);
    uint32_t stride = tbc__get_u32(peer + 24);
    if (mode != (r->uc ? 2u : 1u) || depth != (uint32_t)r->depth || stride != r->stride || mtu < IBV_MTU_256 ||
        mtu > IBV_MTU_4096) {
        snprintf(why, why_cap, "the peer's queue pair does not match ours (mode %u, ring %u x %u, mtu %u)", mode, depth,
                 stride, mtu);
        return TBC_ERR_PROTOCOL;
    }
    struct ibv_qp_attr at;
    memset(&at, 0, sizeof at);
    at.qp_state = IBV_QPS_RTR;
    at.path_mtu = (enum ibv_mtu)(mtu < (uint32_t)r->mtu ? mtu : (uint32_t)r->mtu);
    at.dest_qp_num = qpn;
    at.rq_psn = psn;
    at.ah_attr.is_global = 1;
    memcpy(at.ah_attr.grh.dgid.raw, peer + 28, 16);
    at.ah_attr.grh.sgid_index = (uint8_t)r->gid_index;
    at.ah_attr.grh.hop_limit = 64;
    at.ah_attr.dlid = (uint16_t)lid;
    at.ah_attr.port_num = r->port;
    int mask = IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN;
    if (!r->uc) {
        at.max_dest_rd_atomic = 1;
        at.min_rnr_timer = 1;
        mask |= IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    }
    if (v->modify_qp(r->qp, &at, mask) != 0) {
        snprintf(why, why_cap, "%s: queue pair refused RTR: %s", r->dev, strerror(errno));
        return TBC_ERR_NETWORK;
    }
    memset(&at, 0, sizeof at);
    at.qp_state = IBV_QPS_RTS;
    at.sq_psn = r->psn;
    mask = IBV_QP_STATE | IBV_QP_SQ_PSN;
    if (!r->uc) {
        at.timeout = 14;
        at.retry_cnt = 7;
        at.rnr_retry = 7;
        at.max_rd_atomic = 1;
        mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC;
    }
    if (v->modify_qp(r->qp, &at, mask) != 0) {
        snprintf(why, why_cap, "%s: queue pair refused RTS: %s", r->dev, strerror(errno));
        return TBC_ERR_NETWORK;
    }
    for (int i = 0; i < r->depth; i++) {  // receives only after RTS (Apple refuses them before)
        if (tbc__rdma_post_recv(r, i) != 0) {
            snprintf(why, why_cap, "%s: cannot post receives: %s", r->dev, strerror(errno));
            return TBC_ERR_NETWORK;
        }
    }
    r->idle_since = tbc__now();
    return TBC_OK;
}

// Takes the completions there are: a receive marks its slot done and hands back the credits its header carries; a
// send frees its slot. 1 when something completed, 0 when nothing, -1 on a failed work request (err says which).
static int tbc__rdma_poll(tbc__link *l, tbc_error *err) {
    tbc__rdma *r = l->rdma;
    struct ibv_wc wc[8];
    int n = ibv_poll_cq(r->cq, 8, wc);
    if (n < 0) {
        tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s: polling for completions failed", l->peer);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (wc[i].status != IBV_WC_SUCCESS) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s failed: %s (%s on %s)", l->peer,
                           tbc__verbs.wc_status_str(wc[i].status), wc[i].opcode & IBV_WC_RECV ? "receive" : "send",
                           r->dev);
            return -1;
        }
        int slot = (int)wc[i].wr_id;
        if (wc[i].opcode & IBV_WC_RECV) {
            const uint8_t *h = r->mem + (size_t)slot * r->stride;
            uint32_t len = tbc__get_u32(h), back = tbc__get_u32(h + 4);
            if (slot < 0 || slot >= r->depth || len > r->stride - TBC__RDMA_HDR || wc[i].byte_len < TBC__RDMA_HDR ||
                back > (uint32_t)r->depth) {
                tbc__error_set(err, TBC_ERR_PROTOCOL, "RDMA link to %s: malformed message", l->peer);
                return -1;
            }
            r->credits += (int)back;
            r->rx_len[slot] = len;
            r->rx_done[slot] = 1;
        } else if (slot >= 0 && slot < r->depth) {
            r->tx_busy[slot] = 0;
        }
    }
    // Messages of credits only, next in line, go straight back into the ring: a side that only sends (a long
    // transfer) must not fill its ring with them and leave the other side without credits.
    while (r->rx_done[r->rx_next] && r->rx_len[r->rx_next] == 0 && r->rx_off == 0) {
        int s = r->rx_next;
        if (tbc__rdma_post_recv(r, s) != 0) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s: cannot post a receive", l->peer);
            return -1;
        }
        r->credits_owed++;
        r->rx_next = (s + 1) % r->depth;
    }
    return n > 0;
}

// Waits for a completion until deadline: spins first (per-token traffic is microseconds away), then sleeps on the
// completion channel and the TCP socket together (a closed socket is the peer's death).
static tbc_result tbc__rdma_wait(tbc__link *l, double deadline, tbc_error *err) {
    tbc__rdma *r = l->rdma;
    double t0 = tbc__now(), spin = l->spin > 0 ? l->spin : 200e-6;
    for (unsigned it = 0;; it++) {
        int got = tbc__rdma_poll(l, err);
        if (got < 0) return err->code;
        if (got > 0) return TBC_OK;
        double now = (it & 63) == 0 ? tbc__now() : t0;
        if (now - t0 < spin) continue;
        if (deadline > 0 && now >= deadline) {
            tbc__error_set(err, TBC_ERR_TIMEOUT, "peer %s did not answer in time (RDMA)", l->peer);
            return TBC_ERR_TIMEOUT;
        }
        // arm, look once more (a completion may have slipped in before arming), then sleep
        if (!r->armed) {
            if (ibv_req_notify_cq(r->cq, 0) != 0) {
                tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s: cannot arm completion events", l->peer);
                return TBC_ERR_PEER_LOST;
            }
            r->armed = 1;
            continue;
        }
        struct pollfd pf[2];
        pf[0].fd = r->ch->fd;
        pf[0].events = POLLIN;
        pf[1].fd = l->fd;
        pf[1].events = POLLIN;
#if defined(POLLRDHUP)
        pf[1].events |= POLLRDHUP;
#endif
        int ms = deadline > 0 ? (int)((deadline - now) * 1000) + 1 : 1000;
        if (ms > 1000) ms = 1000;
        int pr = poll(pf, 2, ms);
        if (pr > 0 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            uint8_t b;
            ssize_t k = recv(l->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
            if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                tbc__error_set(err, TBC_ERR_PEER_LOST, "peer %s closed the connection", l->peer);
                return TBC_ERR_PEER_LOST;
            }
        }
        if (pr > 0 && (pf[0].revents & POLLIN)) {
            struct ibv_cq *cq;
            void *user;
            if (tbc__verbs.get_cq_event(r->ch, &cq, &user) == 0) tbc__verbs.ack_cq_events(cq, 1);
            r->armed = 0;
        }
        t0 = tbc__now() - spin;  // keep sleeping-mode until something arrives
    }
}

// Posts slot `slot` of the send ring holding len stream bytes (and the credits we owe).
static tbc_result tbc__rdma_post_send(tbc__link *l, int slot, uint32_t len, tbc_error *err) {
    tbc__rdma *r = l->rdma;
    uint8_t *p = r->mem + (size_t)(r->depth + slot) * r->stride;
    tbc__put_u32(p, len);
    tbc__put_u32(p + 4, (uint32_t)r->credits_owed);
    r->credits_owed = 0;
    struct ibv_sge sg;
    sg.addr = (uint64_t)(uintptr_t)p;
    // UC (Apple's only mode) sends whole slots: on Thunderbolt a SEND must cover as many 4 KiB frames as the RECV it
    // lands in. The same rule on Linux keeps this path tested in the soft-RoCE guest.
    sg.length = r->uc ? (uint32_t)r->stride : TBC__RDMA_HDR + len;
    sg.lkey = r->mr->lkey;
    struct ibv_send_wr wr, *bad = NULL;
    memset(&wr, 0, sizeof wr);
    wr.wr_id = (uint64_t)slot;
    wr.sg_list = &sg;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND;
    wr.send_flags = IBV_SEND_SIGNALED;
    if (sg.length <= r->max_inline) wr.send_flags |= IBV_SEND_INLINE;
    r->tx_busy[slot] = 1;
    r->credits--;
    if (ibv_post_send(r->qp, &wr, &bad) != 0) {
        tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s: cannot post a send: %s", l->peer, strerror(errno));
        return TBC_ERR_PEER_LOST;
    }
    l->bytes_sent += len;
    return TBC_OK;
}

// A free send slot and a credit for it (the last credit is kept for returning credits), waiting until deadline.
static tbc_result tbc__rdma_tx_slot(tbc__link *l, int credit_only, double deadline, int *slot, tbc_error *err) {
    tbc__rdma *r = l->rdma;
    for (;;) {
        int s = r->tx_next;
        if (!r->tx_busy[s] && r->credits > (credit_only ? 0 : 1)) {
            *slot = s;
            r->tx_next = (s + 1) % r->depth;
            return TBC_OK;
        }
        tbc_result rc = tbc__rdma_wait(l, deadline, err);
        if (rc) return rc;
    }
}

// Re-posts a consumed receive slot; tells the peer once half the ring is free again and nothing else is going out.
static tbc_result tbc__rdma_release(tbc__link *l, int slot, double deadline, tbc_error *err) {
    tbc__rdma *r = l->rdma;
    if (tbc__rdma_post_recv(r, slot) != 0) {
        tbc__error_set(err, TBC_ERR_PEER_LOST, "RDMA link to %s: cannot post a receive: %s", l->peer, strerror(errno));
        return TBC_ERR_PEER_LOST;
    }
    r->credits_owed++;
    if (r->credits_owed >= r->depth / 2) {
        int s;
        tbc_result rc = tbc__rdma_tx_slot(l, 1, deadline, &s, err);
        if (rc) return rc;
        return tbc__rdma_post_send(l, s, 0, err);
    }
    return TBC_OK;
}

// tbc__io_all over RDMA: the stream of frames, read from the receive ring or written to the send ring.
static tbc_result tbc__rdma_io(tbc__link *l, int writing, struct iovec *iov, int iovcnt, double deadline,
                               tbc_error *err) {
    tbc__rdma *r = l->rdma;
    if (writing) {
        size_t cap = r->stride - TBC__RDMA_HDR, fill = 0;
        int slot = -1;
        tbc_result rc = TBC_OK;
        for (int i = 0; i < iovcnt && !rc; i++) {
            const uint8_t *src = (const uint8_t *)iov[i].iov_base;
            size_t left = iov[i].iov_len;
            while (left && !rc) {
                if (slot < 0 && (rc = tbc__rdma_tx_slot(l, 0, deadline, &slot, err))) break;
                size_t k = cap - fill < left ? cap - fill : left;
                memcpy(r->mem + (size_t)(r->depth + slot) * r->stride + TBC__RDMA_HDR + fill, src, k);
                fill += k;
                src += k;
                left -= k;
                if (fill == cap) {
                    rc = tbc__rdma_post_send(l, slot, (uint32_t)fill, err);
                    slot = -1;
                    fill = 0;
                }
            }
        }
        if (!rc && slot >= 0) rc = tbc__rdma_post_send(l, slot, (uint32_t)fill, err);
        return rc;
    }
    while (iovcnt > 0) {
        int s = r->rx_next;
        if (!r->rx_done[s]) {
            tbc_result rc = tbc__rdma_wait(l, deadline, err);
            if (rc) return rc;
            continue;
        }
        const uint8_t *data = r->mem + (size_t)s * r->stride + TBC__RDMA_HDR;
        size_t avail = r->rx_len[s] - r->rx_off;
        size_t k = avail < iov->iov_len ? avail : iov->iov_len;
        memcpy(iov->iov_base, data + r->rx_off, k);
        r->rx_off += k;
        l->bytes_received += k;
        iov->iov_base = (uint8_t *)iov->iov_base + k;
        iov->iov_len -= k;
        if (iov->iov_len == 0) { iov++; iovcnt--; }
        if (r->rx_off == r->rx_len[s]) {  // slot consumed (or a credit-only message): give it back
            r->rx_off = 0;
            r->rx_next = (s + 1) % r->depth;
            tbc_result rc = tbc__rdma_release(l, s, deadline, err);
            if (rc) return rc;
        }
    }
    return TBC_OK;
}
#endif // TBC__RDMA

#if defined(TBC__RDMA)
// 1 when this machine could carry a link over RDMA (the library loads and lists a device); checked once.
static int tbc__rdma_available(void) {
    static int state;  // 0 unknown, 1 yes, -1 no
    if (state == 0) {
        int n = 0;
        struct ibv_device **list = tbc__verbs_load() ? tbc__verbs.get_device_list(&n) : NULL;
        if (list) tbc__verbs.free_device_list(list);
        state = n > 0 ? 1 : -1;
    }
    return state > 0;
}

// The link's local IPv4 address (network order), or 0.
static uint32_t tbc__link_ip4(const tbc__link *l) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) != 0) return 0;
    if (ss.ss_family == AF_INET) return ((struct sockaddr_in *)&ss)->sin_addr.s_addr;
    if (ss.ss_family == AF_INET6) {  // an IPv4-mapped IPv6 address
        const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        uint32_t v;
        if (memcmp(a, tbc__ipv4_mapped, 12) == 0) { memcpy(&v, a + 12, 4); return v; }
    }
    return 0;
}
#endif

#if !defined(TBC__RDMA)
static int tbc__rdma_available(void) { return 0; }
static tbc_result tbc__rdma_io(tbc__link *l, int writing, struct iovec *iov, int iovcnt, double deadline,
                               tbc_error *err) {
    (void)l; (void)writing; (void)iov; (void)iovcnt; (void)deadline;
    tbc__error_set(err, TBC_ERR_UNSUPPORTED, "built without RDMA");
    return TBC_ERR_UNSUPPORTED;
}
static void tbc__rdma_free(tbc__rdma *r) { (void)r; }
#endif

// >>cluster
// Message types of protocol version 2 (docs/PROTOCOL.md).
enum {
    TBC__MSG_HELLO = 1, TBC__MSG_AUTH = 2, TBC__MSG_ERROR = 3, TBC__MSG_PLAN = 4, TBC__MSG_NEED = 5,
    TBC__MSG_DATA = 6, TBC__MSG_READY = 7, TBC__MSG_EVAL = 8, TBC__MSG_PARTIAL = 9, TBC__MSG_SUM = 10,
    TBC__MSG_HIDDEN = 11, TBC__MSG_HEARTBEAT = 12, TBC__MSG_BYE = 13, TBC__MSG_LOGITS = 14, TBC__MSG_RDMA = 15,
    TBC__MSG_RDMA_GO = 16
};
#define TBC__BIT(t) ((uint64_t)1 << (t))
#define TBC__ROWS 1u  // EVAL/HIDDEN flags: each row's sequence and position follow (else sequence 0 from pos on)
#define TBC__HELLO_MAX 4096
#define TBC__DATA_CHUNK ((uint64_t)8 << 20)

typedef struct tbc__hello {
    uint32_t role;                 // 0 coordinator, 1 worker
    uint8_t nonce[32];
    char name[64], simd[32], transports[128];
    uint32_t cores;
    uint64_t mem_usable;
    uint32_t has_model;
    uint8_t model_id[32];
    uint64_t model_size;
} tbc__hello;

static const char *tbc__simd_name(void) {
#if defined(__AVX512VNNI__)
    return "avx512-vnni";
#elif defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__ARM_FEATURE_DOTPROD)
    return "neon-dotprod";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "scalar";
#endif
}

// Memory a new shard can use: Linux's MemAvailable (free memory plus what the page cache would give back), else
// the free pages, else three quarters of physical memory (macOS keeps most memory in caches it reclaims).
static uint64_t tbc__usable_memory(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
        fclose(f);
        if (kb) return (uint64_t)kb * 1024;
    }
    long size = sysconf(_SC_PAGESIZE);
#if defined(_SC_AVPHYS_PAGES) && !defined(__APPLE__)
    long avail = sysconf(_SC_AVPHYS_PAGES);
    if (avail > 0 && size > 0) return (uint64_t)avail * (uint64_t)size;
#endif
#if defined(_SC_PHYS_PAGES)
    long phys = sysconf(_SC_PHYS_PAGES);
    if (phys > 0 && size > 0) return (uint64_t)phys * (uint64_t)size / 4 * 3;
#endif
    return 0;
}

// The model's identity: SHA-256 of the GGUF header and tensor directory (everything before the tensor data).
static void tbc__model_id(const tbc_model *m, uint8_t id[32]) { tbc__sha256(m->map.base, (size_t)m->g.data_offset, id); }

static void tbc__hello_encode(const tbc__hello *h, tbc__wbuf *w) {
    tbc__wb_u32(w, h->role);
    tbc__wb_put(w, h->nonce, 32);
    tbc__wb_str(w, h->name);
    tbc__wb_u32(w, h->cores);
    tbc__wb_u64(w, h->mem_usable);
    tbc__wb_str(w, h->simd);
    tbc__wb_str(w, h->transports);
    tbc__wb_u32(w, h->has_model);
    tbc__wb_put(w, h->model_id, 32);
    tbc__wb_u64(w, h->model_size);
}

// Reads a length-prefixed string into a fixed buffer; the length is checked against the buffer and the payload.
static int tbc__rd_fixstr(tbc__reader *r, char *out, size_t cap) {
    uint32_t n;
    if (!tbc__rd_u32(r, &n)) return 0;
    if (n >= cap) {
        tbc__error_set(r->err, TBC_ERR_PROTOCOL, "%s: string of %u bytes exceeds %zu", r->what, n, cap - 1);
        return 0;
    }
    if (!tbc__rd(r, out, n)) return 0;
    out[n] = 0;
    return 1;
}

static int tbc__hello_decode(const uint8_t *p, uint32_t n, tbc__hello *h, tbc_error *err) {
    tbc__reader r;
    r.base = p; r.size = n; r.pos = 0; r.err = err; r.what = "hello message";
    memset(h, 0, sizeof *h);
    int ok = tbc__rd_u32(&r, &h->role) && tbc__rd(&r, h->nonce, 32) && tbc__rd_fixstr(&r, h->name, sizeof h->name) &&
             tbc__rd_u32(&r, &h->cores) && tbc__rd_u64(&r, &h->mem_usable) &&
             tbc__rd_fixstr(&r, h->simd, sizeof h->simd) && tbc__rd_fixstr(&r, h->transports, sizeof h->transports) &&
             tbc__rd_u32(&r, &h->has_model) && tbc__rd(&r, h->model_id, 32) && tbc__rd_u64(&r, &h->model_size);
    if (!ok && err && err->code != TBC_ERR_PROTOCOL)  // the reader's "file ends" error: a message is not a file
        tbc__error_set(err, TBC_ERR_PROTOCOL, "hello message of %u bytes ends early", n);
    return ok;
}

// Sends an ERROR message (best effort: the connection is about to close).
static void tbc__send_error(tbc__link *l, const char *text) {
    tbc_error ignore;
    tbc__link_send(l, TBC__MSG_ERROR, text, strlen(text), tbc__now() + 1.0, &ignore);
}

// A received ERROR becomes our error, with the peer's text.
static tbc_result tbc__peer_error(tbc__link *l, const uint8_t *p, uint32_t n, tbc_error *err) {
    char text[400];
    size_t k = n < sizeof text - 1 ? n : sizeof text - 1;
    memcpy(text, p, k);
    text[k] = 0;
    for (size_t i = 0; i < k; i++) if ((unsigned char)text[i] < 0x20) text[i] = ' ';
    tbc_result code = TBC_ERR_PROTOCOL;
    if (strstr(text, "authentication")) code = TBC_ERR_AUTH;
    else if (strstr(text, "model")) code = TBC_ERR_MODEL_MISMATCH;
    else if (strstr(text, "version")) code = TBC_ERR_VERSION;
    tbc__error_set(err, code, "%s refused: %s", l->peer, text);
    return code;
}

// Mutual challenge-response: each side proves it holds the cluster key over both nonces, then both derive the
// session key that authenticates every later frame.
static tbc_result tbc__handshake(tbc__link *l, int coordinator, const uint8_t *key, size_t key_len,
                                 const tbc__hello *mine, tbc__hello *theirs, double timeout, tbc_error *err) {
    tbc__wbuf w;
    memset(&w, 0, sizeof w);
    tbc__hello_encode(mine, &w);
    uint8_t buf[TBC__HELLO_MAX];
    uint16_t type;
    uint32_t n;
    tbc_result rc = TBC_OK;
    double deadline = tbc__now() + timeout;
    if (w.failed) { TBC_FREE(w.p); return TBC_ERR_OUT_OF_MEMORY; }
    rc = tbc__link_send(l, TBC__MSG_HELLO, w.p, w.n, deadline, err);
    TBC_FREE(w.p);
    if (rc) return rc;
    if ((rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_HELLO) | TBC__BIT(TBC__MSG_ERROR), &type, buf, sizeof buf, &n,
                             deadline, err)))
        return rc;
    if (type == TBC__MSG_ERROR) return tbc__peer_error(l, buf, n, err);
    if (!tbc__hello_decode(buf, n, theirs, err)) return TBC_ERR_PROTOCOL;
    if (theirs->role != (uint32_t)(coordinator ? 1 : 0)) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "%s is a %s, expected a %s", l->peer, theirs->role ? "worker" : "coordinator",
                       coordinator ? "worker" : "coordinator");
        return TBC_ERR_PROTOCOL;
    }
    const uint8_t *nc = coordinator ? mine->nonce : theirs->nonce, *nw = coordinator ? theirs->nonce : mine->nonce;
    uint8_t proof_c[32], proof_w[32], msg[64 + 16];
    memcpy(msg, "tbc1 coordinator", 16);
    memcpy(msg + 16, nc, 32);
    memcpy(msg + 48, nw, 32);
    tbc__hmac_sha256(key, key_len, msg, sizeof msg, proof_c);
    memcpy(msg, "tbc1 worker.....", 16);
    tbc__hmac_sha256(key, key_len, msg, sizeof msg, proof_w);
    const uint8_t *send_proof = coordinator ? proof_c : proof_w, *want = coordinator ? proof_w : proof_c;
    if (coordinator) {  // the coordinator proves first: a worker never answers a challenge for someone without the key
        if ((rc = tbc__link_send(l, TBC__MSG_AUTH, send_proof, 32, deadline, err))) return rc;
    }
    if ((rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_AUTH) | TBC__BIT(TBC__MSG_ERROR), &type, buf, sizeof buf, &n,
                             deadline, err)))
        return rc;
    if (type == TBC__MSG_ERROR) return tbc__peer_error(l, buf, n, err);
    if (n != 32 || !tbc__ct_equal(buf, want, 32)) {
        tbc__send_error(l, "authentication failed: the cluster keys differ");
        tbc__error_set(err, TBC_ERR_AUTH, "%s failed authentication: the cluster keys differ (or one side has none)",
                       l->peer);
        return TBC_ERR_AUTH;
    }
    if (!coordinator && (rc = tbc__link_send(l, TBC__MSG_AUTH, send_proof, 32, deadline, err))) return rc;
    uint8_t salt[64];
    memcpy(salt, nc, 32);
    memcpy(salt + 32, nw, 32);
    static const char info[] = "tbc1 session key";
    tbc__hkdf_sha256(salt, sizeof salt, key, key_len, (const uint8_t *)info, sizeof info - 1, l->key, 32);
    l->keyed = 1;
    return TBC_OK;
}

static void tbc__hello_fill(tbc__hello *h, uint32_t role, const char *name, const tbc_model *m, int threads) {
    memset(h, 0, sizeof *h);
    h->role = role;
    tbc__random_bytes(h->nonce, 32);
    if (name && name[0]) snprintf(h->name, sizeof h->name, "%s", name);
    else if (gethostname(h->name, sizeof h->name - 1) != 0) snprintf(h->name, sizeof h->name, "node");
    h->cores = (uint32_t)(threads > 0 ? threads : tbc__cpu_count());
    h->mem_usable = tbc__usable_memory();
    snprintf(h->simd, sizeof h->simd, "%s", tbc__simd_name());
    snprintf(h->transports, sizeof h->transports, "tcp%s", tbc__rdma_available() ? TBC__RDMA_OFFER : "");
    if (m) {
        h->has_model = 1;
        tbc__model_id(m, h->model_id);
        h->model_size = m->map.size;
    }
}

// What the coordinator asks a worker to hold.
typedef struct tbc__plan_msg {
    uint8_t model_id[32];
    uint64_t file_size, header_bytes;
    uint32_t rank, world, split, sync;
    int32_t layer_begin, layer_end, tp_rank, tp_size;
    uint32_t n_ctx, n_batch, kv_type;
    int32_t expect[6];             // the shard the coordinator worked out: heads, FFN rows, vocabulary rows [b, e)
    uint32_t n_seq;                // sequences, each with n_ctx positions of KV cache
} tbc__plan_msg;

static void tbc__plan_encode(const tbc__plan_msg *p, tbc__wbuf *w) {
    tbc__wb_put(w, p->model_id, 32);
    tbc__wb_u64(w, p->file_size);
    tbc__wb_u64(w, p->header_bytes);
    uint32_t v[10] = {p->rank, p->world, p->split, p->sync, (uint32_t)p->layer_begin, (uint32_t)p->layer_end,
                      (uint32_t)p->tp_rank, (uint32_t)p->tp_size, p->n_ctx, p->n_batch};
    for (int i = 0; i < 10; i++) tbc__wb_u32(w, v[i]);
    tbc__wb_u32(w, p->kv_type);
    for (int i = 0; i < 6; i++) tbc__wb_u32(w, (uint32_t)p->expect[i]);
    tbc__wb_u32(w, p->n_seq);
}

static int tbc__plan_decode(const uint8_t *b, uint32_t n, tbc__plan_msg *p, tbc_error *err) {
    tbc__reader r;
    r.base = b; r.size = n; r.pos = 0; r.err = err; r.what = "plan message";
    uint32_t v[11];
    uint32_t e[6];
    int ok = tbc__rd(&r, p->model_id, 32) && tbc__rd_u64(&r, &p->file_size) && tbc__rd_u64(&r, &p->header_bytes);
    for (int i = 0; i < 11 && ok; i++) ok = tbc__rd_u32(&r, &v[i]);
    for (int i = 0; i < 6 && ok; i++) ok = tbc__rd_u32(&r, &e[i]);
    ok = ok && tbc__rd_u32(&r, &p->n_seq);
    if (!ok) {  // the reader's error says "file ends": a message is not a file, and the code must be PROTOCOL
        tbc__error_set(err, TBC_ERR_PROTOCOL, "plan message of %u bytes ends early (%d expected)", n, 48 + 44 + 24 + 4);
        return 0;
    }
    for (int i = 0; i < 6; i++) p->expect[i] = (int32_t)e[i];
    p->rank = v[0]; p->world = v[1]; p->split = v[2]; p->sync = v[3];
    p->layer_begin = (int32_t)v[4]; p->layer_end = (int32_t)v[5]; p->tp_rank = (int32_t)v[6]; p->tp_size = (int32_t)v[7];
    p->n_ctx = v[8]; p->n_batch = v[9]; p->kv_type = v[10];
    if (p->n_ctx == 0 || p->n_ctx > (1u << 24) || p->n_batch == 0 || p->n_batch > p->n_ctx || p->kv_type > 1 ||
        p->n_seq == 0 || p->n_seq > TBC_MAX_SEQ ||
        p->sync > 1 || p->world < 2 || p->world > 64 || p->rank == 0 || p->rank >= p->world ||
        p->header_bytes > p->file_size || (p->split != TBC_SPLIT_TENSOR && p->split != TBC_SPLIT_PIPELINE) ||
        (p->split == TBC_SPLIT_TENSOR && p->layer_begin != 0)) {  // every tensor rank embeds the tokens itself
        tbc__error_set(err, TBC_ERR_PROTOCOL, "plan message has out-of-range values");
        return 0;
    }
    return 1;
}

// ---- activations on the wire: F32, or Q8_0 blocks (dim is a multiple of 32 for every supported model) ----
static size_t tbc__sync_bytes(int sync, int64_t n) {
    return sync ? (size_t)(n / 32) * sizeof(tbc__block_q8_0) : (size_t)n * 4;
}

static void tbc__sync_pack(int sync, const float *x, int64_t n, void *out) {
    if (sync) tbc__quantize(TBC_TYPE_Q8_0, x, out, n);
    else memcpy(out, x, (size_t)n * 4);
}

static void tbc__sync_unpack(int sync, const void *in, int64_t n, float *x) {
    if (sync) tbc__dequantize(TBC_TYPE_Q8_0, in, x, n);
    else memcpy(x, in, (size_t)n * 4);
}

// ---- the coordinator's side ----
typedef struct tbc__peer {
    char addr[128];
    tbc__link link;
    tbc__hello hello;
    tbc__plan_msg plan;
    int up;
    double rtt_us;                 // measured at the handshake: a hidden-state-sized message there and back
    int slot;                      // its entry in the plan's nodes[]
} tbc__peer;

struct tbc__cluster {
    tbc__peer *peers;
    int n_peers;
    tbc_cluster_desc desc;
    char *peers_copy;
    uint8_t *key;
    size_t key_len;
    int split;                    // TBC_SPLIT_TENSOR or TBC_SPLIT_PIPELINE, resolved
    int broken;                   // a link failed: rebuilt at the start of the next request
    float *sum, *part;            // all-reduce buffers (n_batch * dim floats)
    uint8_t *wire;                // packed activations
    size_t wire_cap;
    tbc_error err;
    // statistics for bench and logs
    uint64_t shard_bytes_sent;
    uint64_t allreduces;
    double comm_seconds;
    tbc_cluster_plan *plan;       // what tbc__cluster_plan decided (and why)
    // idle links get a heartbeat from a thread; a batch holds mu, so the two never share a link
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t hb;
    int hb_started, hb_stop;
    tbc_logger log;
};

static size_t tbc__max_msg(const tbc_model *m, int n_batch, int sync) {
    size_t act = tbc__sync_bytes(sync, (int64_t)n_batch * m->info.n_embd);
    size_t maxima = (size_t)n_batch * (size_t)tbc__round_blocks(&m->info) * 4;
    if (maxima > act) act = maxima;
    size_t hidden = 16 + (size_t)n_batch * ((size_t)m->info.n_embd * 4 + 8);
    size_t eval = 20 + (size_t)n_batch * 16;  // tokens, rows, output rows
    size_t a = act > hidden ? act : hidden;
    return (a > eval ? a : eval) + 64;
}

// ---- a range list held by a worker's cache: which byte ranges of the model file it has, verified ----
static int tbc__range_eq(const tbc__range *a, const tbc__range *b) {
    return a->off == b->off && a->len == b->len && a->stride == b->stride && a->count == b->count;
}

typedef struct tbc__manifest {
    tbc__range *r;
    int n, cap;
    char path[1100];
} tbc__manifest;

static void tbc__manifest_load(tbc__manifest *mf, const char *path) {
    memset(mf, 0, sizeof *mf);
    snprintf(mf->path, sizeof mf->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    unsigned long long a, b, c, d;
    while (fscanf(f, "%llu %llu %llu %llu", &a, &b, &c, &d) == 4) {
        if (mf->n == mf->cap) {
            int nc = mf->cap ? mf->cap * 2 : 64;
            tbc__range *nr = (tbc__range *)TBC_REALLOC(mf->r, sizeof(tbc__range) * (size_t)nc);
            if (!nr) break;
            mf->r = nr;
            mf->cap = nc;
        }
        tbc__range *r = &mf->r[mf->n++];
        r->off = a; r->len = b; r->stride = c; r->count = d;
    }
    fclose(f);
}

static int tbc__manifest_has(const tbc__manifest *mf, const tbc__range *r) {
    for (int i = 0; i < mf->n; i++) if (tbc__range_eq(&mf->r[i], r)) return 1;
    return 0;
}

static void tbc__manifest_add(tbc__manifest *mf, const tbc__range *r) {
    FILE *f = fopen(mf->path, "a");
    if (!f) return;
    fprintf(f, "%llu %llu %llu %llu\n", (unsigned long long)r->off, (unsigned long long)r->len,
            (unsigned long long)r->stride, (unsigned long long)r->count);
    fclose(f);
    if (mf->n == mf->cap) {
        int nc = mf->cap ? mf->cap * 2 : 64;
        tbc__range *nr = (tbc__range *)TBC_REALLOC(mf->r, sizeof(tbc__range) * (size_t)nc);
        if (!nr) return;
        mf->r = nr;
        mf->cap = nc;
    }
    mf->r[mf->n++] = *r;
}

// The coordinator answers a NEED with the bytes, in DATA messages of at most TBC__DATA_CHUNK payload bytes:
// {u64 off, len, stride, count; sha256 of the payload} + count runs of len bytes.
static tbc_result tbc__serve_need(tbc__peer *p, const tbc_model *m, const uint8_t *need, uint32_t n, double timeout,
                                  uint64_t *sent, const tbc_logger *log, tbc_error *err) {
    tbc__reader r;
    r.base = need; r.size = n; r.pos = 0; r.err = err; r.what = "need message";
    uint32_t count;
    if (!tbc__rd_u32(&r, &count) || (uint64_t)count * 32 != n - 4) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "%s sent a malformed need message", p->addr);
        return TBC_ERR_PROTOCOL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    tbc_result rc = TBC_OK;
    uint64_t total = 0, all = 0;
    for (uint32_t i = 0; i < count; i++) {  // check every range first, and add up what is asked
        tbc__range g;
        tbc__rd_u64(&r, &g.off); tbc__rd_u64(&r, &g.len); tbc__rd_u64(&r, &g.stride); tbc__rd_u64(&r, &g.count);
        uint64_t last_end;
        if (!g.len || !g.count || g.len > TBC__DATA_CHUNK || (g.count > 1 && g.stride < g.len) ||
            !tbc__mul_u64(g.count - 1, g.stride, &last_end) || !tbc__add_u64(last_end, g.off, &last_end) ||
            !tbc__add_u64(last_end, g.len, &last_end) || last_end > m->map.size) {
            if (g.len > TBC__DATA_CHUNK)
                tbc__error_set(err, TBC_ERR_PROTOCOL, "%s asked for runs of %llu bytes (at most %llu per run)", p->addr,
                               (unsigned long long)g.len, (unsigned long long)TBC__DATA_CHUNK);
            else
                tbc__error_set(err, TBC_ERR_PROTOCOL, "%s asked for bytes outside the model file", p->addr);
            return TBC_ERR_PROTOCOL;
        }
        all += g.len * g.count;
    }
    tbc__log(log, TBC_LOG_INFO, "sending %.1f MiB of shard data to %s ('%s')", (double)all / 1048576.0, p->addr,
             p->hello.name);
    double t0 = tbc__now(), last_log = t0;
    r.pos = 4;
    for (uint32_t i = 0; i < count && !rc; i++) {
        tbc__range g;
        tbc__rd_u64(&r, &g.off); tbc__rd_u64(&r, &g.len); tbc__rd_u64(&r, &g.stride); tbc__rd_u64(&r, &g.count);
        uint64_t per = TBC__DATA_CHUNK / g.len;  // runs per message
        for (uint64_t c0 = 0; c0 < g.count && !rc; c0 += per) {
            uint64_t cn = g.count - c0 < per ? g.count - c0 : per;
            size_t bytes = (size_t)(cn * g.len);
            if (bytes > cap) {
                uint8_t *nb = (uint8_t *)TBC_REALLOC(buf, bytes);
                if (!nb) { rc = TBC_ERR_OUT_OF_MEMORY; break; }
                buf = nb;
                cap = bytes;
            }
            for (uint64_t k = 0; k < cn; k++)
                memcpy(buf + k * g.len, m->map.base + g.off + (c0 + k) * g.stride, (size_t)g.len);
            uint8_t head[64];
            tbc__put_u64(head, g.off + c0 * g.stride);
            tbc__put_u64(head + 8, g.len);
            tbc__put_u64(head + 16, g.stride);
            tbc__put_u64(head + 24, cn);
            tbc__sha256(buf, bytes, head + 32);
            rc = tbc__link_send2(&p->link, TBC__MSG_DATA, head, sizeof head, buf, bytes, tbc__now() + timeout + 30, err);
            total += bytes;
            if (tbc__now() - last_log >= 1.0) {
                last_log = tbc__now();
                tbc__log(log, TBC_LOG_INFO, "shard for %s: %.0f%% (%.1f of %.1f MiB, %.0f MiB/s)", p->addr,
                         100.0 * (double)total / (double)all, (double)total / 1048576.0, (double)all / 1048576.0,
                         (double)total / 1048576.0 / (last_log - t0));
            }
        }
    }
    TBC_FREE(buf);
    if (!rc) tbc__log(log, TBC_LOG_INFO, "sent %.1f MiB of shard data to %s in %.1f s", (double)total / 1048576.0,
                      p->addr, tbc__now() - t0);
    *sent += total;
    return rc;
}

// Splits [0, n_layer) in proportion to weights w[0..k) (at least one layer each).
static void tbc__split_layers(int n_layer, const double *w, int k, int *begin) {
    double tot = 0;
    for (int i = 0; i < k; i++) tot += w[i] > 0 ? w[i] : 1;
    double acc = 0;
    begin[0] = 0;
    for (int i = 1; i < k; i++) {
        acc += w[i - 1] > 0 ? w[i - 1] : 1;
        int b = (int)(n_layer * acc / tot + 0.5);
        if (b < begin[i - 1] + 1) b = begin[i - 1] + 1;
        if (b > n_layer - (k - i)) b = n_layer - (k - i);
        begin[i] = b;
    }
    begin[k] = n_layer;
}

static void tbc__cluster_close(tbc__cluster *c, int polite) {
    for (int i = 0; i < c->n_peers; i++) {
        tbc__peer *p = &c->peers[i];
        if (p->link.fd >= 0 && polite && p->up) {
            tbc_error ignore;
            tbc__link_send(&p->link, TBC__MSG_BYE, NULL, 0, tbc__now() + 0.5, &ignore);
        }
        tbc__link_close(&p->link);
        p->up = 0;
    }
}

static void tbc__cluster_free(tbc__cluster *c) {
    if (!c) return;
    if (c->hb_started) {
        pthread_mutex_lock(&c->mu);
        c->hb_stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->hb, NULL);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    TBC_FREE(c->plan);
    tbc__cluster_close(c, 1);
    TBC_FREE(c->peers);
    TBC_FREE(c->peers_copy);
    if (c->key) memset(c->key, 0, c->key_len);
    TBC_FREE(c->key);
    TBC_FREE(c->sum);
    TBC_FREE(c->part);
    TBC_FREE(c->wire);
    TBC_FREE(c);
}

static double tbc__timeout(const tbc__cluster *c) { return c->desc.timeout > 0 ? c->desc.timeout : 2.0; }

// Round trip of a message of `bytes` (the median of five): what one all-reduce step or pipeline hop costs.
static tbc_result tbc__link_ping(tbc__link *l, size_t bytes, double timeout, double *rtt_us, tbc_error *err) {
    uint8_t *buf = (uint8_t *)TBC_MALLOC(bytes + 1);
    if (!buf) return TBC_ERR_OUT_OF_MEMORY;
    memset(buf, 0, bytes + 1);
    double t[5];
    tbc_result rc = TBC_OK;
    for (int i = 0; i < 5 && !rc; i++) {
        double t0 = tbc__now();
        uint16_t type;
        uint32_t n = 0;
        rc = tbc__link_send(l, TBC__MSG_HEARTBEAT, buf, bytes, t0 + timeout, err);
        if (!rc) rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_HEARTBEAT), &type, buf, bytes, &n, t0 + timeout, err);
        if (!rc && n != bytes) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(err, rc, "peer %s echoed %u bytes of a %zu-byte heartbeat", l->peer, n, bytes);
        }
        t[i] = (tbc__now() - t0) * 1e6;
    }
    TBC_FREE(buf);
    if (rc) return rc;
    for (int i = 1; i < 5; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
    *rtt_us = t[2];
    return TBC_OK;
}

// Connects to every peer, authenticates and checks the model.
static tbc_result tbc__cluster_hello(tbc__cluster *c, const tbc_model *m, const tbc_logger *log, int threads,
                                     tbc_error *err) {
    tbc__hello mine;
    tbc__hello_fill(&mine, 0, c->desc.name, m, threads);
    c->log = *log;
    tbc_result rc = TBC_OK;
    double timeout = tbc__timeout(c);
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        memset(&p->link, 0, sizeof p->link);
        p->link.fd = -1;
        snprintf(p->link.peer, sizeof p->link.peer, "%s", p->addr);
        if ((rc = tbc__sock_connect(p->addr, timeout, &p->link.fd, err))) break;
        tbc__set_nonblock(p->link.fd);
        if ((rc = tbc__handshake(&p->link, 1, c->key, c->key_len, &mine, &p->hello, timeout, err))) break;
        if (p->hello.has_model && memcmp(p->hello.model_id, mine.model_id, 32) != 0) {
            char a[65], b[65];
            tbc__hex(p->hello.model_id, 32, a);
            tbc__hex(mine.model_id, 32, b);
            tbc__send_error(&p->link, "model mismatch: this cluster runs another model");
            tbc__error_set(err, TBC_ERR_MODEL_MISMATCH, "peer %s (%s) has another model (%.16s...), this cluster runs "
                           "%.16s...", p->addr, p->hello.name, a, b);
            rc = TBC_ERR_MODEL_MISMATCH;
            break;
        }
        size_t ping = (size_t)m->info.n_embd * 4;
        if ((rc = tbc__link_ping(&p->link, ping < 65536 ? ping : 65536, timeout, &p->rtt_us, err))) break;
        tbc__log(log, TBC_LOG_INFO, "peer %s: '%s', %u cores, %s, %.1f GiB free, %s, round trip %.0f us", p->addr,
                 p->hello.name, p->hello.cores, p->hello.simd, (double)p->hello.mem_usable / 1073741824.0,
                 p->hello.has_model ? "has the model file" : "needs its shard sent", p->rtt_us);
    }
    if (rc) {
        tbc__cluster_close(c, 0);
        c->broken = 1;
    }
    return rc;
}

// After READY: move the link to RDMA when both ends can (the transport the cluster asks for). The coordinator sends
// its queue pair's address (RDMA message, over TCP), the worker connects to it, posts its receives and answers with
// its own (or with mode 0 and why not); the coordinator connects, posts its receives and says go (RDMA_GO, the last
// message over TCP). From then on the link's frames travel over RDMA; TCP stays open as the liveness check.
static tbc_result tbc__link_rdma_offer(tbc__cluster *c, tbc__peer *p, const tbc_logger *log, double timeout,
                                       tbc_error *err) {
    int want = (int)c->desc.transport;
    char why[200] = "";
    if (want == TBC_TRANSPORT_TCP) return TBC_OK;
#if defined(TBC__RDMA)
    tbc__rdma *r = NULL;
    if (!strstr(p->hello.transports, "rdma")) {
        snprintf(why, sizeof why, "the peer offers no RDMA device");
    } else {
        int g = c->desc.rdma_gid > 0 ? c->desc.rdma_gid - 1 : -1;
        // UC when asked, or when either end is a Mac (UC is all Apple's provider offers)
        int uc = c->desc.rdma_uc != 0 || strstr(p->hello.transports, "rdma-uc") != NULL || strstr(TBC__RDMA_OFFER, "-uc");
        tbc__rdma_open(c->desc.rdma_dev, g, tbc__link_ip4(&p->link), uc, &r, why, sizeof why);
    }
    if (r) {
        uint8_t info[TBC__RDMA_INFO], reply[TBC__RDMA_INFO + 200];
        uint16_t type;
        uint32_t n = 0;
        tbc__rdma_info(r, info);
        tbc_result rc = tbc__link_send(&p->link, TBC__MSG_RDMA, info, sizeof info, tbc__now() + timeout, err);
        if (!rc) rc = tbc__link_recv(&p->link, TBC__BIT(TBC__MSG_RDMA), &type, reply, sizeof reply, &n,
                                     tbc__now() + timeout + 5, err);
        if (rc) { tbc__rdma_free(r); return rc; }
        if (n >= 4 && tbc__get_u32(reply) == 0) {  // the worker cannot: its reason follows
            size_t k = n - 4 < sizeof why - 8 ? n - 4 : sizeof why - 8;
            memcpy(why, "peer: ", 6);
            memcpy(why + 6, reply + 4, k);
            why[6 + k] = 0;
            for (size_t i = 6; i < 6 + k; i++) if ((unsigned char)why[i] < 0x20) why[i] = ' ';
            tbc__rdma_free(r);
            r = NULL;
        } else if (n != TBC__RDMA_INFO) {
            tbc__rdma_free(r);
            tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent a malformed RDMA message", p->addr);
            return TBC_ERR_PROTOCOL;
        } else if ((rc = tbc__rdma_connect(r, reply, why, sizeof why)) != TBC_OK) {
            tbc__rdma_free(r);
            tbc__error_set(err, rc, "RDMA link to %s: %s", p->addr, why);
            return rc;
        } else {
            if ((rc = tbc__link_send(&p->link, TBC__MSG_RDMA_GO, NULL, 0, tbc__now() + timeout, err))) {
                tbc__rdma_free(r);
                return rc;
            }
            p->link.rdma = r;
            tbc__log(log, TBC_LOG_INFO, "peer %s: RDMA (%s, %s, GID index %d, MTU %d)", p->addr, r->dev,
                     r->uc ? "UC" : "RC", r->gid_index, 128 << (int)r->mtu);
            return TBC_OK;
        }
    }
#else
    (void)timeout;
    snprintf(why, sizeof why, "this build has no RDMA (TBC_NO_RDMA, or no <infiniband/verbs.h> when it was built)");
#endif
    if (want == TBC_TRANSPORT_RDMA) {
        tbc__error_set(err, TBC_ERR_UNSUPPORTED, "RDMA to %s was asked for but is not possible: %s", p->addr, why);
        return TBC_ERR_UNSUPPORTED;
    }
    tbc__log(log, TBC_LOG_INFO, "peer %s: TCP (%s)", p->addr, why);
    return TBC_OK;
}

// The worker's side of tbc__link_rdma_offer: the coordinator's queue pair address is in msg.
static tbc_result tbc__link_rdma_accept(tbc__link *l, const tbc_node_desc *d, const uint8_t *msg, uint32_t n,
                                        double timeout, tbc_error *err) {
    char why[200] = "";
    if (n != 44 || l->rdma) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator sent a malformed or repeated RDMA message");
        return TBC_ERR_PROTOCOL;
    }
#if defined(TBC__RDMA)
    tbc__rdma *r = NULL;
    if (d->transport == TBC_TRANSPORT_TCP) {
        snprintf(why, sizeof why, "this node is set to TCP");
    } else if (tbc__rdma_open(d->rdma_dev, d->rdma_gid > 0 ? d->rdma_gid - 1 : -1, tbc__link_ip4(l),
                              tbc__get_u32(msg) == 2, &r, why, sizeof why) == TBC_OK) {
        tbc_result rc = tbc__rdma_connect(r, msg, why, sizeof why);
        if (rc == TBC_OK) {
            uint8_t info[TBC__RDMA_INFO];
            uint16_t type;
            uint32_t got;
            tbc__rdma_info(r, info);
            rc = tbc__link_send(l, TBC__MSG_RDMA, info, sizeof info, tbc__now() + timeout, err);
            if (!rc) rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_RDMA_GO), &type, info, sizeof info, &got,
                                         tbc__now() + timeout + 5, err);
            if (rc) { tbc__rdma_free(r); return rc; }
            l->rdma = r;
            tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s: RDMA (%s, %s)", l->peer, r->dev, r->uc ? "UC" : "RC");
            return TBC_OK;
        }
        tbc__rdma_free(r);
    }
#else
    (void)msg;
    snprintf(why, sizeof why, "this node was built without RDMA");
#endif
    uint8_t no[4 + sizeof why];
    tbc__put_u32(no, 0);
    size_t k = strlen(why);
    memcpy(no + 4, why, k);
    tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s: staying on TCP (%s)", l->peer, why);
    return tbc__link_send(l, TBC__MSG_RDMA, no, 4 + k, tbc__now() + timeout, err);
}

// Sends each peer its plan, ships the shard bytes it lacks, and waits until every worker is ready.
static tbc_result tbc__cluster_ready(tbc_session *s, tbc_error *err) {
    tbc__cluster *c = s->cluster;
    const tbc_model *m = s->model;
    tbc_result rc = TBC_OK;
    double timeout = tbc__timeout(c);
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        tbc__wbuf w;
        memset(&w, 0, sizeof w);
        tbc__plan_encode(&p->plan, &w);
        rc = w.failed ? TBC_ERR_OUT_OF_MEMORY : tbc__link_send(&p->link, TBC__MSG_PLAN, w.p, w.n, tbc__now() + timeout, err);
        TBC_FREE(w.p);
    }
    // Serve shard requests until every worker is ready (loading can take long: no short deadline here).
    size_t cap = 1 << 20;
    uint8_t *buf = (uint8_t *)TBC_MALLOC(cap);
    if (!buf && !rc) rc = TBC_ERR_OUT_OF_MEMORY;
    uint64_t sent = 0;
    double t_wait = tbc__now(), last_note = t_wait;
    for (int i = 0; i < c->n_peers && !rc; i++) {
        tbc__peer *p = &c->peers[i];
        double quiet_since = tbc__now();  // a worker may take up to 600 s to load or to ask for its next bytes
        for (;;) {
            uint16_t type;
            uint32_t n;
            struct pollfd pf;
            pf.fd = p->link.fd;
            pf.events = POLLIN;
            if (poll(&pf, 1, 1000) == 0) {  // still loading: say so every few seconds (the deadline below still holds)
                if (tbc__now() - last_note >= 5.0) {
                    last_note = tbc__now();
                    tbc__log(&s->log, TBC_LOG_INFO, "waiting for %s ('%s') to load its shard (%.0f s)", p->addr,
                             p->hello.name, last_note - t_wait);
                }
                if (tbc__now() - quiet_since < 600) continue;
            }
            rc = tbc__link_recv(&p->link, TBC__BIT(TBC__MSG_NEED) | TBC__BIT(TBC__MSG_READY) | TBC__BIT(TBC__MSG_ERROR),
                                &type, buf, cap, &n, quiet_since + 600 > tbc__now() ? quiet_since + 600 : tbc__now() + timeout,
                                err);
            if (rc) break;
            if (type == TBC__MSG_ERROR) { rc = tbc__peer_error(&p->link, buf, n, err); break; }
            if (type == TBC__MSG_READY) {
                p->up = 1;
                p->link.spin = tbc__spin_seconds();
                rc = tbc__link_rdma_offer(c, p, &s->log, timeout, err);
                break;
            }
            if ((rc = tbc__serve_need(p, m, buf, n, timeout, &sent, &s->log, err))) break;
            quiet_since = tbc__now();
        }
    }
    TBC_FREE(buf);
    c->shard_bytes_sent = sent;
    if (rc) {
        tbc__cluster_close(c, 0);
        c->broken = 1;
        return rc;
    }
    c->broken = 0;
    tbc__log(&s->log, TBC_LOG_INFO, "cluster ready: %d nodes, %s split", c->n_peers + 1,
             c->split == TBC_SPLIT_TENSOR ? "tensor" : "pipeline");
    return TBC_OK;
}

// Rank 0's side of an all-reduce: every worker's partial, summed in rank order, goes back to everyone.
static void tbc__coord_allreduce(void *comm, float *x, int64_t n, int op) {
    tbc_session *s = (tbc_session *)comm;
    tbc__cluster *c = s->cluster;
    if (c->broken) return;
    double t0 = tbc__now();
    int sync = op == TBC__SUM ? (int)c->desc.sync : 0;  // block maxima always travel exactly
    size_t bytes = tbc__sync_bytes(sync, n);
    memcpy(c->sum, x, (size_t)n * 4);
    for (int i = 0; i < c->n_peers; i++) {
        uint16_t type;
        uint32_t got;
        tbc_result rc = tbc__link_recv(&c->peers[i].link, TBC__BIT(TBC__MSG_PARTIAL), &type, c->wire, c->wire_cap,
                                       &got, tbc__now() + tbc__timeout(c), &c->err);
        if (!rc && got != bytes) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(&c->err, rc, "peer %s sent a partial sum of %u bytes, expected %zu", c->peers[i].addr, got, bytes);
        }
        if (rc) { c->broken = 1; return; }
        tbc__sync_unpack(sync, c->wire, n, c->part);
        if (op == TBC__SUM) for (int64_t k = 0; k < n; k++) c->sum[k] += c->part[k];
        else for (int64_t k = 0; k < n; k++) if (fabsf(c->part[k]) > fabsf(c->sum[k])) c->sum[k] = c->part[k];
    }
    tbc__sync_pack(sync, c->sum, n, c->wire);
    for (int i = 0; i < c->n_peers; i++) {
        if (tbc__link_send(&c->peers[i].link, TBC__MSG_SUM, c->wire, bytes, tbc__now() + tbc__timeout(c), &c->err)) {
            c->broken = 1;
            return;
        }
    }
    tbc__sync_unpack(sync, c->wire, n, x);  // what the workers got, exactly
    c->allreduces++;
    c->comm_seconds += tbc__now() - t0;
}

TBC__DEF void tbc_session_cluster_stats(const tbc_session *s, tbc_cluster_stats *st) {
    memset(st, 0, sizeof *st);
    const tbc__cluster *c = s->cluster;
    if (!c) return;
    st->n_peers = c->n_peers;
    st->split = c->split;
    st->allreduces = c->allreduces;
    st->comm_seconds = c->comm_seconds;
    st->shard_bytes_sent = c->shard_bytes_sent;
    for (int i = 0; i < c->n_peers && i < 64; i++) {
        st->bytes_sent[i] = c->peers[i].link.bytes_sent;
        st->bytes_received[i] = c->peers[i].link.bytes_received;
        st->rdma[i] = c->peers[i].link.rdma != NULL;
        st->up[i] = c->peers[i].link.fd >= 0;
    }
}

TBC__DEF void tbc_session_get_plan(const tbc_session *s, tbc_cluster_plan *plan) {
    memset(plan, 0, sizeof *plan);
    if (s->cluster && s->cluster->plan) *plan = *s->cluster->plan;
}

// Tensor split: every worker sends its share of the output rows' logits (rank order, contiguous vocabulary rows).
static tbc_result tbc__cluster_gather_logits(tbc_session *s) {
    tbc__cluster *c = s->cluster;
    if (c->split != TBC_SPLIT_TENSOR) return TBC_OK;
    int32_t nv = s->model->info.n_vocab;
    for (int i = 0; i < c->n_peers; i++) {
        int64_t vb, ve;
        tbc__split_range(nv, 1, c->peers[i].plan.tp_size, c->peers[i].plan.tp_rank, &vb, &ve);
        size_t want = (size_t)s->n_out * (size_t)(ve - vb) * 4;
        uint16_t type;
        uint32_t got;
        tbc_result rc = tbc__link_recv(&c->peers[i].link, TBC__BIT(TBC__MSG_LOGITS), &type, s->logit_rows,
                                       (size_t)s->n_seq * (size_t)nv * 4, &got, tbc__now() + tbc__timeout(c), &c->err);
        if (!rc && got != want) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(&c->err, rc, "peer %s sent %u bytes of logits, expected %zu", c->peers[i].addr, got, want);
        }
        if (rc) { c->broken = 1; return rc; }
        tbc__logits_place(s, s->logit_rows, vb, ve);
    }
    return TBC_OK;
}

// A coordinator without a share (no_local) in a tensor split: it still sums every all-reduce, adding nothing.
static void tbc__cluster_relay(tbc_session *s, int64_t n) {
    tbc__cluster *c = s->cluster;
    if (!c || c->split != TBC_SPLIT_TENSOR) return;
    const tbc_model *m = s->model;
    const tbc_model_info *I = &m->info;
    int64_t len = n * I->n_embd;
    int64_t qunit, unit;
    tbc__tp_units(m, 0, c->n_peers, &qunit, &unit);
    for (int l = 0; l < I->n_layer && !c->broken; l++) {
        tbc_type round[2];
        tbc__layer_rounding(m, l, c->n_peers, qunit, unit, &round[0], &round[1]);
        for (int half = 0; half < 2; half++) {
            if (round[half] != TBC_TYPE_F32) {  // the workers exchange block maxima first (tbc__round_as_one)
                int64_t blk = tbc__type_block(round[half]);
                int64_t k = half ? I->n_ff : (int64_t)I->n_head * I->head_dim;
                memset(s->o, 0, (size_t)(n * ((k + blk - 1) / blk)) * 4);
                tbc__coord_allreduce(s, s->o, n * ((k + blk - 1) / blk), TBC__MAXABS);
            }
            memset(s->o, 0, (size_t)len * 4);
            tbc__coord_allreduce(s, s->o, len, TBC__SUM);
        }
    }
}


// A batch holds the cluster's lock: the heartbeat thread only uses links between batches.
static tbc_result tbc__cluster_decode(tbc_session *s, const int32_t *tokens, const int32_t *seq, int64_t n) {
    pthread_mutex_lock(&s->cluster->mu);
    tbc_result rc = tbc__decode(s, tokens, seq, n);
    pthread_mutex_unlock(&s->cluster->mu);
    return rc;
}

// Between requests every idle link gets a heartbeat each timeout/2, so the workers keep their sessions and a
// silent or dead peer is noticed: the links are then closed, and the next request (position 0) reconnects.
static void *tbc__heartbeat_main(void *arg) {
    tbc_session *s = (tbc_session *)arg;
    tbc__cluster *c = s->cluster;
    double every = tbc__timeout(c) / 2;
    pthread_mutex_lock(&c->mu);
    while (!c->hb_stop) {
        tbc__cond_wait_for(&c->cv, &c->mu, every);
        if (c->hb_stop) break;
        for (int i = 0; i < c->n_peers && !c->broken; i++) {
            tbc__link *l = &c->peers[i].link;
            if (l->fd < 0 || tbc__now() - l->last_recv < every) continue;
            uint16_t type;
            uint32_t n;
            if (tbc__link_send(l, TBC__MSG_HEARTBEAT, NULL, 0, tbc__now() + tbc__timeout(c), &c->err) ||
                tbc__link_recv(l, TBC__BIT(TBC__MSG_HEARTBEAT), &type, c->wire, c->wire_cap, &n,
                               tbc__now() + tbc__timeout(c), &c->err)) {
                tbc__log(&c->log, TBC_LOG_WARN, "%s; reconnecting at the next request", c->err.message);
                c->broken = 1;
                tbc__cluster_close(c, 0);
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

// A batch's rows on the wire (after the 16-byte head whose flags say TBC__ROWS): each row's sequence and position,
// then (EVAL only) the number of output rows and their indices.
static size_t tbc__rows_put(const tbc_session *s, int64_t n, int outputs, uint8_t *p) {
    uint8_t *start = p;
    for (int64_t t = 0; t < n; t++, p += 8) {
        tbc__put_u32(p, (uint32_t)s->row_seq[t]);
        tbc__put_u32(p + 4, (uint32_t)s->row_pos[t]);
    }
    if (outputs) {
        tbc__put_u32(p, (uint32_t)s->n_out);
        p += 4;
        for (int i = 0; i < s->n_out; i++, p += 4) tbc__put_u32(p, (uint32_t)s->out_row[i]);
    }
    return (size_t)(p - start);
}

static void tbc__batch_head(uint8_t head[16], int64_t n) {
    tbc__put_u64(head, 0);
    tbc__put_u32(head + 8, (uint32_t)n);
    tbc__put_u32(head + 12, TBC__ROWS);
}

// Before rank 0 runs a batch: the workers get the tokens and rows (tensor split), or after rank 0's layers the
// hidden state travels through each worker's layers in order and comes back (pipeline split).
static tbc_result tbc__cluster_eval_begin(tbc_session *s, const int32_t *tokens, int64_t n) {
    tbc__cluster *c = s->cluster;
    if (c->split != TBC_SPLIT_TENSOR) return TBC_OK;
    uint8_t *m = c->wire;  // head, tokens, rows (sent before anything is received into the buffer)
    tbc__batch_head(m, n);
    for (int64_t t = 0; t < n; t++) tbc__put_u32(m + 16 + 4 * t, (uint32_t)tokens[t]);
    size_t len = 16 + (size_t)n * 4;
    len += tbc__rows_put(s, n, 1, m + len);
    for (int i = 0; i < c->n_peers; i++) {
        tbc_result rc = tbc__link_send(&c->peers[i].link, TBC__MSG_EVAL, m, len, tbc__now() + tbc__timeout(c), &c->err);
        if (rc) { c->broken = 1; return rc; }
    }
    return TBC_OK;
}

static tbc_result tbc__cluster_pipeline(tbc_session *s, int64_t n) {
    tbc__cluster *c = s->cluster;
    if (c->split != TBC_SPLIT_PIPELINE) return TBC_OK;
    size_t d = (size_t)s->model->info.n_embd;
    double t0 = tbc__now();
    for (int i = 0; i < c->n_peers; i++) {
        tbc__link *l = &c->peers[i].link;
        tbc__batch_head(c->wire, n);  // head and rows, then the hidden state (the reply overwrites the buffer)
        size_t hl = 16 + tbc__rows_put(s, n, 0, c->wire + 16);
        tbc_result rc = tbc__link_send2(l, TBC__MSG_HIDDEN, c->wire, hl, s->x, (size_t)n * d * 4, tbc__now() + tbc__timeout(c),
                                        &c->err);
        uint16_t type;
        uint32_t got = 0;
        if (!rc) rc = tbc__link_recv(l, TBC__BIT(TBC__MSG_HIDDEN), &type, c->wire, c->wire_cap, &got,
                                     tbc__now() + tbc__timeout(c) + 0.05 * (double)n, &c->err);
        if (!rc && got != 16 + (uint32_t)(n * (int64_t)d * 4)) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(&c->err, rc, "peer %s returned a hidden state of %u bytes", c->peers[i].addr, got);
        }
        if (rc) { c->broken = 1; return rc; }
        memcpy(s->x, c->wire + 16, (size_t)n * d * 4);
    }
    c->comm_seconds += tbc__now() - t0;
    return TBC_OK;
}

// ---- the worker's side ----
typedef struct tbc__worker {
    tbc__link link;
    tbc_session *s;
    int sync, failed;
    uint8_t *wire;
    size_t wire_cap;
    double timeout;
    uint64_t offered;             // the memory this node offered in its hello (0: unknown)
    tbc_error err;
} tbc__worker;

// A plan is a request for memory: refuse one that needs more than this node offered, before allocating any of it
// (n_ctx alone may ask for gigabytes of KV cache). Weights, KV cache, and the n_batch-row scratch of the forward pass.
static tbc_result tbc__worker_plan_fits(const tbc__worker *w, const tbc_session_desc *sd, tbc_error *err) {
    if (!w->offered) return TBC_OK;
    const tbc_model_info *I = &sd->model->info;
    tbc_shard_info info;
    int64_t cells = (int64_t)sd->n_ctx * (sd->n_seq ? sd->n_seq : 1);
    tbc_result rc = tbc__shard_estimate(sd->model, &sd->shard, 0, cells, sd->kv_type, &info, NULL, err);
    if (rc) return rc;
    uint64_t hd = (uint64_t)I->head_dim, d = (uint64_t)I->n_embd, ff = (uint64_t)(info.ff_end - info.ff_begin);
    uint64_t qd = (uint64_t)(info.head_end - info.head_begin) * hd;
    uint64_t kd = (uint64_t)(info.head_kv_end - info.head_kv_begin) * hd;
    uint64_t need = info.weight_bytes + info.kv_bytes + (uint64_t)sd->n_batch * (4 * d + 3 * qd + 2 * kd + 3 * ff) * 4 +
                    (uint64_t)sd->n_ctx * 4 + (uint64_t)cells / (uint64_t)sd->n_ctx * (uint64_t)I->n_vocab * 8;
    if (need <= w->offered) return TBC_OK;
    tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "the plan needs %.1f MiB (n_ctx %d x %d sequences, n_batch %d), this node "
                   "offers %.1f MiB", (double)need / 1048576.0, sd->n_ctx, (int)(cells / sd->n_ctx), sd->n_batch,
                   (double)w->offered / 1048576.0);
    return TBC_ERR_OUT_OF_MEMORY;
}

static void tbc__worker_allreduce(void *comm, float *x, int64_t n, int op) {
    tbc__worker *w = (tbc__worker *)comm;
    if (w->failed) return;
    int sync = op == TBC__SUM ? w->sync : 0;
    size_t bytes = tbc__sync_bytes(sync, n);
    tbc__sync_pack(sync, x, n, w->wire);
    uint16_t type;
    uint32_t got;
    tbc_result rc = tbc__link_send(&w->link, TBC__MSG_PARTIAL, w->wire, bytes, tbc__now() + w->timeout, &w->err);
    if (!rc) rc = tbc__link_recv(&w->link, TBC__BIT(TBC__MSG_SUM), &type, w->wire, w->wire_cap, &got,
                                 tbc__now() + w->timeout, &w->err);
    if (!rc && got != bytes) {
        rc = TBC_ERR_PROTOCOL;
        tbc__error_set(&w->err, rc, "coordinator sent a sum of %u bytes, expected %zu", got, bytes);
    }
    if (rc) { w->failed = 1; return; }
    tbc__sync_unpack(sync, w->wire, n, x);
}

static int tbc__mkdirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') { *p = 0; mkdir(tmp, 0755); *p = '/'; }
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

// Receives DATA messages for the given ranges and writes them into the cache file, verified.
static tbc_result tbc__fetch_ranges(tbc__worker *w, int fd, tbc__manifest *mf, const tbc__range *want, int n_want,
                                    uint64_t *received, const tbc_logger *log, tbc_error *err) {
    // On the wire a run is at most one DATA message: a long contiguous range goes as runs of 1 MiB and the rest.
    // The manifest keeps the ranges as the shard names them (what a restart looks up).
    const uint64_t piece = (uint64_t)1 << 20;
    tbc__range *need = (tbc__range *)TBC_MALLOC(sizeof(tbc__range) * (size_t)(2 * n_want + 1));
    int *last_of = (int *)TBC_MALLOC(sizeof(int) * (size_t)(2 * n_want + 1));  // wire range -> shard range it ends
    if (!need || !last_of) { TBC_FREE(need); TBC_FREE(last_of); return TBC_ERR_OUT_OF_MEMORY; }
    int n_need = 0;
    for (int i = 0; i < n_want; i++) {
        const tbc__range *g = &want[i];
        if (g->count == 1 && g->len > piece) {
            need[n_need].off = g->off; need[n_need].len = piece; need[n_need].stride = piece;
            need[n_need].count = g->len / piece;
            last_of[n_need++] = g->len % piece ? -1 : i;
            if (g->len % piece) {
                need[n_need].off = g->off + g->len / piece * piece; need[n_need].len = g->len % piece;
                need[n_need].stride = 0; need[n_need].count = 1;
                last_of[n_need++] = i;
            }
        } else {
            need[n_need] = *g;
            last_of[n_need++] = i;
        }
    }
    tbc__wbuf b;
    memset(&b, 0, sizeof b);
    tbc__wb_u32(&b, (uint32_t)n_need);
    uint64_t total = 0;
    for (int i = 0; i < n_need; i++) {
        tbc__wb_u64(&b, need[i].off); tbc__wb_u64(&b, need[i].len); tbc__wb_u64(&b, need[i].stride);
        tbc__wb_u64(&b, need[i].count);
        total += need[i].len * need[i].count;
    }
    tbc_result rc = b.failed ? TBC_ERR_OUT_OF_MEMORY : tbc__link_send(&w->link, TBC__MSG_NEED, b.p, b.n, tbc__now() + w->timeout, err);
    TBC_FREE(b.p);
    if (rc) { TBC_FREE(need); TBC_FREE(last_of); return rc; }
    tbc__log(log, TBC_LOG_INFO, "receiving %.1f MiB of shard data in %d ranges", (double)total / 1048576.0, n_need);
    size_t cap = (size_t)TBC__DATA_CHUNK + 64;
    uint8_t *buf = (uint8_t *)TBC_MALLOC(cap);
    if (!buf) { TBC_FREE(need); TBC_FREE(last_of); return TBC_ERR_OUT_OF_MEMORY; }
    uint64_t got_total = 0;
    double last_log = tbc__now();
    for (int i = 0; i < n_need && !rc; i++) {
        uint64_t done_runs = 0;
        while (done_runs < need[i].count && !rc) {
            uint16_t type;
            uint32_t n;
            if ((rc = tbc__link_recv(&w->link, TBC__BIT(TBC__MSG_DATA), &type, buf, cap, &n, tbc__now() + w->timeout + 30, err)))
                break;
            if (n < 64) { rc = TBC_ERR_PROTOCOL; tbc__error_set(err, rc, "short data message"); break; }
            uint64_t off = tbc__get_u64(buf), len = tbc__get_u64(buf + 8), stride = tbc__get_u64(buf + 16),
                     cnt = tbc__get_u64(buf + 24);
            uint8_t sha[32];
            const tbc__range *g = &need[i];
            if (len != g->len || stride != g->stride || cnt == 0 || cnt > g->count - done_runs ||
                off != g->off + done_runs * g->stride || (uint64_t)n - 64 != len * cnt) {
                rc = TBC_ERR_PROTOCOL;
                tbc__error_set(err, rc, "coordinator sent data that does not match the request");
                break;
            }
            tbc__sha256(buf + 64, (size_t)(n - 64), sha);
            if (!tbc__ct_equal(sha, buf + 32, 32)) {
                rc = TBC_ERR_PROTOCOL;
                tbc__error_set(err, rc, "shard data at offset %llu failed its SHA-256 check", (unsigned long long)off);
                break;
            }
            for (uint64_t k = 0; k < cnt && !rc; k++) {
                const uint8_t *src = buf + 64 + k * len;
                uint64_t at = off + k * stride, left = len;
                while (left) {
                    ssize_t wr = pwrite(fd, src + (len - left), (size_t)left, (off_t)(at + (len - left)));
                    if (wr < 0 && errno == EINTR) continue;
                    if (wr <= 0) {
                        rc = TBC_ERR_IO;
                        tbc__error_set(err, rc, "writing the shard cache failed: %s", strerror(errno));
                        break;
                    }
                    left -= (uint64_t)wr;
                }
            }
            done_runs += cnt;
            got_total += len * cnt;
            if (tbc__now() - last_log > 1.0) {
                tbc__log(log, TBC_LOG_INFO, "shard: %.1f of %.1f MiB", (double)got_total / 1048576.0,
                         (double)total / 1048576.0);
                last_log = tbc__now();
            }
        }
        if (!rc && last_of[i] >= 0) {
            fsync(fd);
            tbc__manifest_add(mf, &want[last_of[i]]);
        }
    }
    TBC_FREE(buf);
    TBC_FREE(need);
    TBC_FREE(last_of);
    *received += got_total;
    return rc;
}

// One EVAL (tensor split: tokens in, this node's share of the output rows' logits out) or HIDDEN (pipeline: hidden
// state in, through this node's layers, out) from the coordinator, checked row by row before anything runs: a row's
// position may be at most its sequence's length (no gaps in a KV cache), and the batch fits the plan.
static tbc_result tbc__worker_batch(tbc__worker *w, uint16_t type, uint32_t n, tbc_error *err) {
    tbc_session *s = w->s;
    size_t d = (size_t)s->model->info.n_embd;
    const uint8_t *m = w->wire, *p = m + 16;
    if (n < 16) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator sent a malformed batch (%u bytes)", n);
        return TBC_ERR_PROTOCOL;
    }
    uint64_t pos = tbc__get_u64(m);
    uint32_t cnt = tbc__get_u32(m + 8), flags = tbc__get_u32(m + 12);
    size_t body = type == TBC__MSG_EVAL ? (size_t)cnt * 4 : (size_t)cnt * d * 4;
    size_t rows = flags & TBC__ROWS ? (size_t)cnt * 8 : 0, outs = 0;  // outs: the output rows' count and indices
    int has_outs = type == TBC__MSG_EVAL && rows;
    if (has_outs && n >= 16 + body + rows + 4) outs = 4 + 4 * (size_t)tbc__get_u32(m + 16 + body + rows);
    if (cnt == 0 || cnt > (uint32_t)s->n_batch || (flags & ~TBC__ROWS) || (has_outs && outs == 0) ||
        n != 16 + body + rows + outs) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator sent a malformed batch (%u bytes, %u rows)", n, cnt);
        return TBC_ERR_PROTOCOL;
    }
    // rows: the message's, or (no TBC__ROWS) sequence 0 from pos on, with the last row's logits
    const uint8_t *rp = type == TBC__MSG_EVAL ? p + body : p;
    s->n_out = 0;
    for (uint32_t t = 0; t < cnt; t++) {
        uint64_t q = rows ? tbc__get_u32(rp + 8 * t) : 0, at = rows ? tbc__get_u32(rp + 8 * t + 4) : pos + t;
        if (q >= (uint64_t)s->n_seq || at >= (uint64_t)s->n_ctx || at > (uint64_t)s->seq_pos[q]) {
            tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator sent a batch that does not fit (row %u: sequence %llu, "
                           "position %llu)", t, (unsigned long long)q, (unsigned long long)at);
            return TBC_ERR_PROTOCOL;
        }
        s->row_seq[t] = (int32_t)q;
        s->row_pos[t] = (int32_t)at;
        s->seq_pos[q] = (int64_t)at + 1;
    }
    if (type == TBC__MSG_EVAL) {
        const uint8_t *op = p + body + rows + 4;
        uint32_t n_out = rows ? tbc__get_u32(op - 4) : 1;
        if (n_out > cnt || n_out > (uint32_t)s->n_seq) {
            tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator asked for %u rows of logits from %u", n_out, cnt);
            return TBC_ERR_PROTOCOL;
        }
        for (uint32_t i = 0; i < n_out; i++) {
            uint32_t r = rows ? tbc__get_u32(op + 4 * i) : cnt - 1;
            if (r >= cnt) {
                tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator asked for the logits of row %u of %u", r, cnt);
                return TBC_ERR_PROTOCOL;
            }
            s->out_row[s->n_out++] = (int32_t)r;
        }
        for (uint32_t t = 0; t < cnt; t++) {
            int32_t id = (int32_t)tbc__get_u32(p + 4 * t);
            if (id < 0 || id >= s->model->info.n_vocab) {
                tbc__error_set(err, TBC_ERR_PROTOCOL, "coordinator sent a token outside the vocabulary");
                return TBC_ERR_PROTOCOL;
            }
            tbc__dequantize(s->embd.type, s->embd.data + (size_t)id * s->embd.ldw, s->x + t * d, (int64_t)d);
        }
        tbc__forward_layers(s, cnt);
        if (w->failed) {
            *err = w->err;
            return w->err.code ? w->err.code : TBC_ERR_PEER_LOST;
        }
        if (s->n_out == 0) return TBC_OK;  // a batch inside a prompt: no logits wanted
        tbc__logits(s);
        return tbc__link_send(&w->link, TBC__MSG_LOGITS, s->logit_rows, (size_t)s->n_out * (size_t)s->output.rows * 4,
                              tbc__now() + w->timeout, err);
    }
    memcpy(s->x, p + rows, (size_t)cnt * d * 4);
    tbc__forward_layers(s, cnt);
    uint8_t head[16];
    memcpy(head, m, 16);
    tbc__put_u32(head + 12, 0);
    return tbc__link_send2(&w->link, TBC__MSG_HIDDEN, head, 16, s->x, (size_t)cnt * d * 4, tbc__now() + w->timeout,
                           err);
}

// Opens the model this plan names: the node's own file, or the shard cache (fetching what is missing).
static tbc_result tbc__worker_session(tbc__worker *w, const tbc_node_desc *d, tbc_model *own, const tbc__plan_msg *pl,
                                      tbc_model **cache_model, uint64_t *received, tbc_error *err) {
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.n_ctx = (int)pl->n_ctx;
    sd.n_batch = (int)pl->n_batch;
    sd.n_seq = (int)pl->n_seq;
    sd.kv_type = (tbc_kv_type)pl->kv_type;
    sd.n_threads = d->n_threads;
    sd.logger = d->logger;
    sd.error = err;
    sd.shard.layer_begin = pl->layer_begin;
    sd.shard.layer_end = pl->layer_end;
    sd.shard.tp_rank = pl->tp_rank;
    sd.shard.tp_size = pl->tp_size;
    sd.shard.output = pl->split == TBC_SPLIT_TENSOR ? 1 : -1;  // tensor split: a share of the logits; pipeline: rank 0
    tbc_result rc;
    if (own) {
        uint8_t id[32];
        tbc__model_id(own, id);
        if (memcmp(id, pl->model_id, 32) != 0) {
            tbc__send_error(&w->link, "model mismatch: this node has another model file");
            tbc__error_set(err, TBC_ERR_MODEL_MISMATCH, "the coordinator runs another model than %s", d->model_path);
            return TBC_ERR_MODEL_MISMATCH;
        }
        sd.model = own;
        if ((rc = tbc__worker_plan_fits(w, &sd, err))) return rc;
        return tbc_session_create(&sd, &w->s);
    }
    // No model file: the shard cache, a sparse copy of the model file holding only what this node needs.
    char hex[65], path[1024], mpath[1040];
    tbc__hex(pl->model_id, 32, hex);
    const char *dir = d->cache_dir && d->cache_dir[0] ? d->cache_dir : "tbc-cache";
    if (tbc__mkdirs(dir) != 0) {
        tbc__error_set(err, TBC_ERR_IO, "cannot create the cache directory '%s': %s", dir, strerror(errno));
        return TBC_ERR_IO;
    }
    snprintf(path, sizeof path, "%s/%s.gguf", dir, hex);
    snprintf(mpath, sizeof mpath, "%s/%s.have", dir, hex);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_IO, "cannot open the shard cache '%s': %s", path, strerror(errno));
        return TBC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != pl->file_size) {
        if (ftruncate(fd, (off_t)pl->file_size) != 0) {
            close(fd);
            tbc__error_set(err, TBC_ERR_IO, "cannot size the shard cache '%s': %s", path, strerror(errno));
            return TBC_ERR_IO;
        }
        unlink(mpath);  // a new or resized file holds nothing yet
    }
    tbc__manifest mf;
    tbc__manifest_load(&mf, mpath);
    tbc__range header;
    header.off = 0; header.len = pl->header_bytes; header.stride = 0; header.count = 1;
    rc = TBC_OK;
    if (!tbc__manifest_has(&mf, &header)) rc = tbc__fetch_ranges(w, fd, &mf, &header, 1, received, &d->logger, err);
    for (int pass = 0; pass < 2 && !rc; pass++) {
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = path;
        md.error = err;
        md.logger = d->logger;
        if ((rc = tbc_model_open(&md, cache_model))) break;
        uint8_t id[32];
        tbc__model_id(*cache_model, id);
        if (memcmp(id, pl->model_id, 32) != 0) {
            rc = TBC_ERR_PROTOCOL;
            tbc__error_set(err, rc, "the header received does not match the model's identity");
            break;
        }
        sd.model = *cache_model;
        if ((rc = tbc__worker_plan_fits(w, &sd, err)) || (rc = tbc_session_create(&sd, &w->s))) break;
        tbc__range *need = (tbc__range *)TBC_MALLOC(sizeof(tbc__range) * (size_t)(w->s->n_ranges + 1));
        int n_need = 0;
        if (!need) { rc = TBC_ERR_OUT_OF_MEMORY; break; }
        for (int i = 0; i < w->s->n_ranges; i++)
            if (!tbc__manifest_has(&mf, &w->s->ranges[i])) need[n_need++] = w->s->ranges[i];
        if (n_need == 0) { TBC_FREE(need); break; }  // everything is here
        if (pass == 1) {
            TBC_FREE(need);
            rc = TBC_ERR_IO;
            tbc__error_set(err, rc, "the shard cache is still incomplete after a transfer");
            break;
        }
        rc = tbc__fetch_ranges(w, fd, &mf, need, n_need, received, &d->logger, err);
        TBC_FREE(need);
        // the session copied column slices before the data was there: bind again
        tbc_session_destroy(w->s);
        w->s = NULL;
        tbc_model_destroy(*cache_model);
        *cache_model = NULL;
    }
    TBC_FREE(mf.r);
    close(fd);
    return rc;
}

// Serves one coordinator until it says goodbye or the connection fails.
static tbc_result tbc__serve_coordinator(int fd, const char *peer, const tbc_node_desc *d, tbc_model *own,
                                         const uint8_t *key, size_t key_len, tbc_error *err) {
    tbc__worker w;
    memset(&w, 0, sizeof w);
    w.link.fd = fd;
    w.timeout = d->timeout > 0 ? d->timeout : 2.0;
    snprintf(w.link.peer, sizeof w.link.peer, "%s", peer);
    tbc__hello mine, theirs;
    tbc__hello_fill(&mine, 1, d->name, own, d->n_threads);
    snprintf(mine.transports, sizeof mine.transports, "tcp %.100s%s", d->listen,  // each offered with its address
             d->transport != TBC_TRANSPORT_TCP && tbc__rdma_available() ? TBC__RDMA_OFFER : "");
    if (d->mem_limit && (!mine.mem_usable || d->mem_limit < mine.mem_usable)) mine.mem_usable = d->mem_limit;
    w.offered = mine.mem_usable;
    tbc_model *cache_model = NULL;
    uint16_t type = 0;
    uint32_t n = 0;
    uint64_t received = 0;
    tbc__plan_msg pl;
    memset(&pl, 0, sizeof pl);
    const size_t cap = 65536;  // a plan, or a link probe (heartbeats are echoed)
    uint8_t *buf = (uint8_t *)TBC_MALLOC(cap);
    tbc_result rc = buf ? tbc__handshake(&w.link, 0, key, key_len, &mine, &theirs, w.timeout * 5, err)
                        : TBC_ERR_OUT_OF_MEMORY;
    while (!rc) {
        rc = tbc__link_recv(&w.link, TBC__BIT(TBC__MSG_PLAN) | TBC__BIT(TBC__MSG_ERROR) | TBC__BIT(TBC__MSG_BYE) |
                            TBC__BIT(TBC__MSG_HEARTBEAT), &type, buf, cap, &n, tbc__now() + 60, err);
        if (rc || type != TBC__MSG_HEARTBEAT) break;
        rc = tbc__link_send(&w.link, TBC__MSG_HEARTBEAT, buf, n, tbc__now() + w.timeout, err);
    }
    if (!rc && type == TBC__MSG_ERROR) rc = tbc__peer_error(&w.link, buf, n, err);
    if (!rc && type == TBC__MSG_BYE) {
        TBC_FREE(buf);
        tbc__link_close(&w.link);
        return TBC_OK;
    }
    if (!rc && !tbc__plan_decode(buf, n, &pl, err)) rc = TBC_ERR_PROTOCOL;
    TBC_FREE(buf);
    if (!rc) {
        tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s ('%s'): rank %u of %u, layers %d-%d, slice %d/%d", peer,
                 theirs.name, pl.rank, pl.world, pl.layer_begin, pl.layer_end - 1, pl.tp_rank, pl.tp_size);
        rc = tbc__worker_session(&w, d, own, &pl, &cache_model, &received, err);
        if (rc && rc != TBC_ERR_MODEL_MISMATCH) {
            char text[300];
            snprintf(text, sizeof text, "worker could not load its shard: %.250s", err->message);
            tbc__send_error(&w.link, text);
        }
    }
    if (!rc) {
        // Every node works out its own slice: one built with other split rules would silently add wrong sums.
        const tbc_shard_info *h = &w.s->shard;
        int32_t got[6] = {h->head_begin, h->head_end, h->ff_begin, h->ff_end, h->vocab_begin, h->vocab_end};
        if (memcmp(got, pl.expect, sizeof got) != 0) {
            rc = TBC_ERR_VERSION;
            tbc__error_set(err, rc, "this node's share (heads %d-%d, FFN rows %d-%d, vocabulary %d-%d) is not the one "
                           "the coordinator planned (heads %d-%d, FFN rows %d-%d, vocabulary %d-%d): the nodes run "
                           "different tbcluster versions", got[0], got[1] - 1, got[2], got[3] - 1, got[4], got[5] - 1,
                           pl.expect[0], pl.expect[1] - 1, pl.expect[2], pl.expect[3] - 1, pl.expect[4], pl.expect[5] - 1);
            tbc__send_error(&w.link, err->message);
        }
    }
    if (!rc) {
        w.sync = (int)pl.sync;
        w.wire_cap = tbc__max_msg(w.s->model, (int)pl.n_batch, 0);
        w.wire = (uint8_t *)TBC_MALLOC(w.wire_cap);
        if (!w.wire) rc = TBC_ERR_OUT_OF_MEMORY;
    }
    if (!rc) {
        w.s->comm = &w;
        w.s->no_logits = 1;
        if (pl.split == TBC_SPLIT_TENSOR) w.s->allreduce = tbc__worker_allreduce;
        uint8_t ready[16];
        tbc__put_u64(ready, w.s->shard.weight_bytes);
        tbc__put_u64(ready + 8, received);
        rc = tbc__link_send(&w.link, TBC__MSG_READY, ready, sizeof ready, tbc__now() + w.timeout, err);
        w.link.spin = tbc__spin_seconds();
        tbc__log(&d->logger, TBC_LOG_INFO, "ready: %.1f MiB of weights (%.1f MiB received)",
                 (double)w.s->shard.weight_bytes / 1048576.0, (double)received / 1048576.0);
    }
    // Only the requests of the plan's split: a pipeline shard has no embeddings or output to run an EVAL with.
    uint64_t request = pl.split == TBC_SPLIT_TENSOR ? TBC__BIT(TBC__MSG_EVAL) : TBC__BIT(TBC__MSG_HIDDEN);
    while (!rc) {
        // Between requests the coordinator sends heartbeats; silence this long means it is gone.
        rc = tbc__link_recv(&w.link, request | TBC__BIT(TBC__MSG_HEARTBEAT) | TBC__BIT(TBC__MSG_BYE) |
                            TBC__BIT(TBC__MSG_RDMA), &type, w.wire, w.wire_cap, &n, tbc__now() + w.timeout * 10, err);
        if (rc) break;
        if (type == TBC__MSG_BYE) break;
        if (type == TBC__MSG_RDMA) {
            rc = tbc__link_rdma_accept(&w.link, d, w.wire, n, w.timeout, err);
            continue;
        }
        if (type == TBC__MSG_HEARTBEAT) {
            rc = tbc__link_send(&w.link, TBC__MSG_HEARTBEAT, w.wire, n, tbc__now() + w.timeout, err);
            continue;
        }
        if ((rc = tbc__worker_batch(&w, type, n, err)) != TBC_OK) break;
    }
    if (rc == TBC_ERR_PEER_LOST || rc == TBC_ERR_TIMEOUT)
        tbc__log(&d->logger, TBC_LOG_INFO, "coordinator %s gone: %s", peer, err->message);
    else if (rc)
        tbc__log(&d->logger, TBC_LOG_WARN, "dropped coordinator %s: %s", peer, err->message);
    tbc_session_destroy(w.s);
    tbc_model_destroy(cache_model);
    TBC_FREE(w.wire);
    tbc__link_close(&w.link);
    return rc;
}

TBC__DEF tbc_result tbc_node_serve(const tbc_node_desc *d) {
    tbc_error local;
    tbc_error *err = d && d->error ? d->error : &local;
    memset(err, 0, sizeof *err);
    if (!d || !d->listen) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_node_serve needs a listen address");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    char host[256], port[16];
    if (tbc__split_hostport(d->listen, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "listen address '%s' is not HOST:PORT", d->listen);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    if (!d->key_len && !d->insecure && !tbc__is_loopback_host(host)) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "refusing to listen on %s without a cluster key: anyone could "
                       "join; give a key, or say insecure", d->listen);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc_model *own = NULL;
    if (d->model_path) {
        tbc_model_desc md;
        memset(&md, 0, sizeof md);
        md.path = d->model_path;
        md.error = err;
        md.logger = d->logger;
        tbc_result rc = tbc_model_open(&md, &own);
        if (rc) return rc;
    }
    int lfd, lport;
    tbc_result rc = tbc__sock_listen(d->listen, &lfd, &lport, err);
    if (rc) { tbc_model_destroy(own); return rc; }
    tbc__log(&d->logger, TBC_LOG_INFO, "listening on %s (port %d)%s", d->listen, lport,
             d->key_len ? ", cluster key required" : ", no key");
    while (!(d->stop && *d->stop)) {
        struct pollfd pf;
        pf.fd = lfd;
        pf.events = POLLIN;
        if (poll(&pf, 1, 200) <= 0) continue;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(lfd, (struct sockaddr *)&ss, &sl);
        if (fd < 0) continue;
        char peer[96] = "?";
        char hb[64] = "?";
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, hb, sizeof hb);
            snprintf(peer, sizeof peer, "%s:%d", hb, ntohs(((struct sockaddr_in *)&ss)->sin_port));
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, hb, sizeof hb);
            snprintf(peer, sizeof peer, "[%s]:%d", hb, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        }
        tbc__sock_tune(fd);
        tbc__set_nonblock(fd);
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        tbc_error serr;
        memset(&serr, 0, sizeof serr);
        tbc__serve_coordinator(fd, peer, d, own, (const uint8_t *)d->key, d->key_len, &serr);
    }
    close(lfd);
    tbc_model_destroy(own);
    return TBC_OK;
}

// Creates the cluster: connects, agrees on the plan (which also fixes this node's own shard in *own), gets every
// worker ready. Called by tbc_session_create before this node binds its shard.
// "512 B", "97.7 KiB", "12.3 MiB", "1.2 GiB"
static const char *tbc__size_text(uint64_t b, char *out, size_t cap) {
    if (b < 1024) snprintf(out, cap, "%u B", (unsigned)b);
    else if (b < ((uint64_t)1 << 20)) snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
    else if (b < ((uint64_t)1 << 30)) snprintf(out, cap, "%.1f MiB", (double)b / 1048576.0);
    else snprintf(out, cap, "%.1f GiB", (double)b / 1073741824.0);
    return out;
}

// Decoding one token: bytes on a node's link to the coordinator, both ways, frame headers and tags included.
static uint64_t tbc__link_bytes(const tbc_model *m, int split, int sync, const tbc_shard_info *sh) {
    uint64_t fr = TBC__FRAME_HEADER + TBC__FRAME_TAG, d = (uint64_t)m->info.n_embd;
    if (split == TBC_SPLIT_TENSOR)
        return (fr + 16 + 4) + (uint64_t)m->info.n_layer * 2 * 2 * (fr + tbc__sync_bytes(sync, (int64_t)d)) +
               (fr + (uint64_t)(sh->vocab_end - sh->vocab_begin) * 4);
    return 2 * (fr + 16 + d * 4);
}

// A rough decode speed for comparing splits: weight bytes a node streams per second (memory-bound matvecs).
static double tbc__stream_rate(uint32_t cores) { return 6e9 * (double)(cores < 1 ? 1 : cores > 8 ? 8 : cores); }

// Gives each included node (in[i]) its shard for a split; slot 0 is this node. 0 if the split is impossible.
static int tbc__assign(const tbc_model *m, tbc_cluster_plan *P, const int *in, int split, int no_local, int64_t n_ctx,
                       tbc_kv_type kv, tbc_error *err) {
    const tbc_model_info *I = &m->info;
    int k = 0, idx[64];
    for (int i = 0; i < P->n_nodes; i++) if (in[i]) idx[k++] = i;
    if (k == 0) return 0;
    if (split == TBC_SPLIT_TENSOR && k > I->n_head) return 0;
    if (split == TBC_SPLIT_PIPELINE && k > I->n_layer) return 0;
    int begin[65];
    if (split == TBC_SPLIT_PIPELINE) {  // layers in proportion to the memory each node offers
        double w[64], known = 0;
        int n_known = 0;
        for (int j = 0; j < k; j++) if (P->nodes[idx[j]].mem_usable) { known += (double)P->nodes[idx[j]].mem_usable; n_known++; }
        for (int j = 0; j < k; j++) {
            uint64_t mem = P->nodes[idx[j]].mem_usable;
            w[j] = mem ? (double)mem : n_known ? known / n_known : 1.0;
        }
        tbc__split_layers(I->n_layer, w, k, begin);
    }
    for (int i = 0; i < P->n_nodes; i++) {
        tbc_plan_node *N = &P->nodes[i];
        memset(&N->shard, 0, sizeof N->shard);
        N->shard_file_bytes = N->link_bytes_per_token = 0;
        N->rank = -1;
    }
    int rank = no_local ? 1 : 0;
    if (no_local) {  // this node: the embeddings, and in a pipeline the output; no layers
        tbc_shard_desc sd;
        memset(&sd, 0, sizeof sd);
        sd.output = split == TBC_SPLIT_PIPELINE ? 1 : -1;
        if (tbc__shard_estimate(m, &sd, 1, n_ctx, kv, &P->nodes[0].shard, &P->nodes[0].shard_file_bytes, err)) return 0;
        P->nodes[0].rank = 0;
    }
    for (int j = 0; j < k; j++, rank++) {
        tbc_plan_node *N = &P->nodes[idx[j]];
        tbc_shard_desc sd;
        memset(&sd, 0, sizeof sd);
        if (split == TBC_SPLIT_TENSOR) {
            sd.tp_rank = j;
            sd.tp_size = k;
            sd.output = 1;
        } else {
            sd.layer_begin = begin[j];
            sd.layer_end = begin[j + 1];
            sd.output = idx[j] == 0 ? 1 : -1;  // logits where the tokens are sampled
        }
        if (tbc__shard_estimate(m, &sd, 0, n_ctx, kv, &N->shard, &N->shard_file_bytes, err)) return 0;
        N->rank = rank;
    }
    for (int i = 1; i < P->n_nodes; i++)
        if (P->nodes[i].rank > 0) P->nodes[i].link_bytes_per_token = tbc__link_bytes(m, split, P->sync, &P->nodes[i].shard);
    return 1;
}

// The first included node whose share does not fit the memory it offers (the worst overshoot), or -1.
static int tbc__overfull(const tbc_cluster_plan *P) {
    int worst = -1;
    double ratio = 1.0;
    for (int i = 0; i < P->n_nodes; i++) {
        const tbc_plan_node *N = &P->nodes[i];
        if (N->rank < 0 || !N->mem_usable) continue;
        double r = (double)(N->shard.weight_bytes + N->shard.kv_bytes) / (double)N->mem_usable;
        if (r > ratio) { ratio = r; worst = i; }
    }
    return worst;
}

// Decode time per token a plan would take, roughly: compute at tbc__stream_rate plus the round trips it waits for.
static double tbc__plan_seconds(const tbc_model *m, const tbc_cluster_plan *P, int split) {
    double slowest = 0, sum = 0, rtt = 0;
    for (int i = 0; i < P->n_nodes; i++) {
        const tbc_plan_node *N = &P->nodes[i];
        if (N->rank < 0) continue;
        double t = (double)N->shard.streamed_bytes / tbc__stream_rate(N->cores);
        if (t > slowest) slowest = t;
        sum += t;
        if (split == TBC_SPLIT_TENSOR && N->link_rtt_us > rtt) rtt = N->link_rtt_us;
        if (split == TBC_SPLIT_PIPELINE) rtt += N->link_rtt_us;
    }
    if (split == TBC_SPLIT_TENSOR) return slowest + 2.0 * m->info.n_layer * rtt * 1e-6;
    return sum + rtt * 1e-6;
}

// Who holds what: this node (unless no_local) and each peer, leaving out a peer whose memory cannot hold a share.
// Fills c->plan, every peer's plan message, and *own (this node's shard); the peers left out are told and dropped.
static tbc_result tbc__cluster_plan(tbc__cluster *c, const tbc_model *m, const tbc_session_desc *d, int n_ctx,
                                    int n_batch, tbc_shard_desc *own, tbc_error *err) {
    const tbc_model_info *I = &m->info;
    tbc_cluster_plan *P = c->plan;
    int no_local = c->desc.no_local != 0;
    memset(P, 0, sizeof *P);
    P->n_nodes = c->n_peers + 1;
    P->sync = (int)c->desc.sync;
    tbc_plan_node *self = &P->nodes[0];
    snprintf(self->addr, sizeof self->addr, "local");
    tbc__hello me;
    tbc__hello_fill(&me, 0, c->desc.name, m, d->n_threads);
    memcpy(self->name, me.name, sizeof self->name);
    memcpy(self->simd, me.simd, sizeof self->simd);
    self->has_model = 1;
    self->cores = me.cores;
    self->mem_usable = me.mem_usable;
    int in[64];
    in[0] = !no_local;
    for (int i = 0; i < c->n_peers; i++) {
        tbc_plan_node *N = &P->nodes[i + 1];
        const tbc__hello *h = &c->peers[i].hello;
        snprintf(N->addr, sizeof N->addr, "%s", c->peers[i].addr);
        memcpy(N->name, h->name, sizeof N->name);
        memcpy(N->simd, h->simd, sizeof N->simd);
        N->has_model = (int)h->has_model;
        N->cores = h->cores;
        N->mem_usable = h->mem_usable;
        N->link_rtt_us = c->peers[i].rtt_us;
        c->peers[i].slot = i + 1;
        in[i + 1] = 1;
    }
    tbc_kv_type kv = d->kv_type;
    int split = (int)c->desc.split;
    int64_t cells = (int64_t)n_ctx * (d->n_seq ? d->n_seq : 1);  // every sequence's KV cache
    for (;;) {
        int sp = split, held = 0;  // held: the split P's shares already follow (auto tries both)
        if (sp == TBC_SPLIT_AUTO) {
            // A tensor split if every node can hold its share and it decodes faster than a pipeline would.
            int t_ok = tbc__assign(m, P, in, TBC_SPLIT_TENSOR, no_local, cells, kv, err) && tbc__overfull(P) < 0;
            double tt = t_ok ? tbc__plan_seconds(m, P, TBC_SPLIT_TENSOR) : 0;
            if (!tbc__assign(m, P, in, TBC_SPLIT_PIPELINE, no_local, cells, kv, err)) {
                sp = TBC_SPLIT_TENSOR;
                snprintf(P->reason, sizeof P->reason, "auto: tensor (more nodes than layers)");
            } else {
                double tp = tbc__plan_seconds(m, P, TBC_SPLIT_PIPELINE);
                held = TBC_SPLIT_PIPELINE;
                sp = t_ok && tt < tp ? TBC_SPLIT_TENSOR : TBC_SPLIT_PIPELINE;
                if (t_ok)
                    snprintf(P->reason, sizeof P->reason, "auto: %s; estimated %.3g ms/token as tensor split, %.3g as "
                             "pipeline (link round trips measured, compute at %.0f GB/s per core)",
                             sp == TBC_SPLIT_TENSOR ? "tensor" : "pipeline", tt * 1e3, tp * 1e3, tbc__stream_rate(1) / 1e9);
                else
                    snprintf(P->reason, sizeof P->reason, "auto: pipeline; a tensor split %s",
                             P->n_nodes > I->n_head ? "needs a head per node" : "does not fit every node's memory");
            }
        } else {
            snprintf(P->reason, sizeof P->reason, "%s split as asked", sp == TBC_SPLIT_TENSOR ? "tensor" : "pipeline");
        }
        int k = 0;
        for (int i = 0; i < P->n_nodes; i++) k += in[i];
        if (held != sp && !tbc__assign(m, P, in, sp, no_local, cells, kv, err)) {
            if (err->code) return err->code;
            if (k == 0) tbc__error_set(err, TBC_ERR_SHARD, "no node is left to hold the model (%s)", P->reason);
            else if (sp == TBC_SPLIT_TENSOR)
                tbc__error_set(err, TBC_ERR_SHARD, "a tensor split over %d nodes needs at least %d heads; the model "
                               "has %d", k, k, I->n_head);
            else
                tbc__error_set(err, TBC_ERR_SHARD, "a pipeline over %d nodes needs at least %d layers; the model has "
                               "%d", k, k, I->n_layer);
            return TBC_ERR_SHARD;
        }
        int bad = tbc__overfull(P);
        if (bad < 0) { P->split = sp; break; }
        tbc_plan_node *B = &P->nodes[bad];
        char need[24], offers[24];
        tbc__size_text(B->shard.weight_bytes + B->shard.kv_bytes, need, sizeof need);
        tbc__size_text(B->mem_usable, offers, sizeof offers);
        if (bad == 0) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "this node offers %s but its share needs %s%s", offers, need,
                           no_local ? "" : ": add nodes, shorten the context, or let this node hold no share "
                           "(no_local)");
            return TBC_ERR_OUT_OF_MEMORY;
        }
        if (sp == TBC_SPLIT_PIPELINE && B->shard.layer_end - B->shard.layer_begin > 1) {
            // proportional shares that overflow: the cluster as a whole is too small
            uint64_t total = 0, offered = 0;
            for (int i = 0; i < P->n_nodes; i++)
                if (P->nodes[i].rank >= 0) {
                    total += P->nodes[i].shard.weight_bytes + P->nodes[i].shard.kv_bytes;
                    offered += P->nodes[i].mem_usable;
                }
            char t1[24], t2[24];
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "the model needs %s (weights and KV cache) and these nodes "
                           "offer %s", tbc__size_text(total, t1, sizeof t1), tbc__size_text(offered, t2, sizeof t2));
            return TBC_ERR_OUT_OF_MEMORY;
        }
        snprintf(B->note, sizeof B->note, "left out: offers %s, its share would need %s", offers, need);
        tbc__log(&c->log, TBC_LOG_WARN, "peer %s ('%s') %s", B->addr, B->name, B->note);
        in[bad] = 0;
    }
    // The peers left out are told why and dropped; the rest keep their order.
    int kept = 0;
    for (int i = 0; i < c->n_peers; i++) {
        tbc__peer *p = &c->peers[i];
        if (P->nodes[p->slot].rank < 0) {
            tbc__send_error(&p->link, P->nodes[p->slot].note);
            tbc__link_close(&p->link);
            continue;
        }
        if (kept != i) c->peers[kept] = *p;
        kept++;
    }
    c->n_peers = kept;
    if (kept == 0) {
        tbc__error_set(err, TBC_ERR_SHARD, "every peer was left out; run without a cluster instead");
        return TBC_ERR_SHARD;
    }
    c->split = P->split;
    uint8_t id[32];
    tbc__model_id(m, id);
    memset(own, 0, sizeof *own);
    const tbc_shard_info *mine = &self->shard;
    if (!no_local) {
        own->layer_begin = mine->layer_begin;
        own->layer_end = mine->layer_end;
        own->tp_rank = mine->tp_rank;
        own->tp_size = mine->tp_size;
        own->output = 1;
    } else {
        own->output = P->split == TBC_SPLIT_PIPELINE ? 1 : -1;
    }
    for (int i = 0; i < c->n_peers; i++) {
        const tbc_shard_info *sh = &P->nodes[c->peers[i].slot].shard;
        tbc__plan_msg *p = &c->peers[i].plan;
        memset(p, 0, sizeof *p);
        memcpy(p->model_id, id, 32);
        p->file_size = m->map.size;
        p->header_bytes = m->g.data_offset;
        p->rank = (uint32_t)(i + 1);
        p->world = (uint32_t)(c->n_peers + 1);
        p->split = (uint32_t)P->split;
        p->sync = (uint32_t)c->desc.sync;
        p->n_ctx = (uint32_t)n_ctx;
        p->n_batch = (uint32_t)n_batch;
        p->n_seq = (uint32_t)(d->n_seq ? d->n_seq : 1);
        p->kv_type = (uint32_t)d->kv_type;
        p->layer_begin = sh->layer_begin;
        p->layer_end = sh->layer_end;
        p->tp_rank = sh->tp_rank;
        p->tp_size = sh->tp_size;
        int32_t ex[6] = {sh->head_begin, sh->head_end, sh->ff_begin, sh->ff_end, sh->vocab_begin, sh->vocab_end};
        memcpy(p->expect, ex, sizeof ex);
    }
    return TBC_OK;
}

static tbc_result tbc__cluster_new(const tbc_cluster_desc *cd, tbc__cluster **out, tbc_error *err) {
    tbc__cluster *c = (tbc__cluster *)TBC_MALLOC(sizeof(tbc__cluster));
    if (!c) return TBC_ERR_OUT_OF_MEMORY;
    memset(c, 0, sizeof *c);
    c->desc = *cd;
    if (!cd->peers || !cd->peers[0]) {
        TBC_FREE(c);
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "the cluster has no peers");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    c->peers_copy = tbc__strdup_n(cd->peers, strlen(cd->peers));
    int n = 1;
    for (const char *p = cd->peers; *p; p++) n += *p == ',';
    c->peers = (tbc__peer *)TBC_MALLOC(sizeof(tbc__peer) * (size_t)n);
    c->plan = (tbc_cluster_plan *)TBC_MALLOC(sizeof(tbc_cluster_plan));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (cd->key_len) c->key = (uint8_t *)TBC_MALLOC(cd->key_len);
    if (!c->peers_copy || !c->peers || !c->plan || (cd->key_len && !c->key)) {
        tbc__cluster_free(c);
        return TBC_ERR_OUT_OF_MEMORY;
    }
    if (cd->key_len) memcpy(c->key, cd->key, cd->key_len);
    c->key_len = cd->key_len;
    memset(c->peers, 0, sizeof(tbc__peer) * (size_t)n);
    char *save = NULL;
    for (char *tok = strtok_r(c->peers_copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (!*tok) continue;
        if (c->n_peers == 63) {
            tbc__cluster_free(c);
            tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "at most 63 peers");
            return TBC_ERR_INVALID_ARGUMENT;
        }
        tbc__peer *p = &c->peers[c->n_peers++];
        snprintf(p->addr, sizeof p->addr, "%s", tok);
        p->link.fd = -1;
        char h[256], pt[16];
        if (tbc__split_hostport(p->addr, h, sizeof h, pt, sizeof pt) != 0) {
            tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "peer '%s' is not HOST:PORT", p->addr);
            tbc__cluster_free(c);
            return TBC_ERR_INVALID_ARGUMENT;
        }
    }
    *out = c;
    return TBC_OK;
}

// Buffers and hooks once this node's shard is bound, then the workers' shards.
static tbc_result tbc__cluster_attach(tbc_session *s, tbc_error *err) {
    tbc__cluster *c = s->cluster;
    size_t n = (size_t)s->n_batch * (size_t)s->model->info.n_embd;
    size_t nr = (size_t)s->n_batch * (size_t)tbc__round_blocks(&s->model->info);
    if (nr > n) n = nr;
    c->sum = (float *)TBC_MALLOC(n * 4);
    c->part = (float *)TBC_MALLOC(n * 4);
    c->wire_cap = tbc__max_msg(s->model, s->n_batch, 0);
    c->wire = (uint8_t *)TBC_MALLOC(c->wire_cap);
    if (!c->sum || !c->part || !c->wire) {
        tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "no memory for cluster buffers");
        return TBC_ERR_OUT_OF_MEMORY;
    }
    if (c->split == TBC_SPLIT_TENSOR) {
        s->allreduce = tbc__coord_allreduce;
        s->comm = s;
    }
    tbc_result rc = tbc__cluster_ready(s, err);
    if (rc == TBC_OK) {
        if (pthread_create(&c->hb, NULL, tbc__heartbeat_main, s) != 0) {
            tbc__error_set(err, TBC_ERR_OUT_OF_MEMORY, "cannot start the cluster's heartbeat thread");
            return TBC_ERR_OUT_OF_MEMORY;
        }
        c->hb_started = 1;
    }
    return rc;
}

static int tbc__cluster_broken(const tbc_session *s) { return s->cluster->broken; }

// The workers' KV caches go with a failed cluster: every sequence that had a context must start again from 0.
static void tbc__seqs_lost(tbc_session *s) {
    for (int q = 0; q < s->n_seq; q++) {
        if (s->seq_pos[q] > 0) s->seq_lost[q] = 1;
        s->seq_pos[q] = 0;
    }
}

// A link failed during a batch: the request fails with the peer's name; the next request rebuilds the cluster.
static tbc_result tbc__cluster_failed(tbc_session *s) {
    tbc__cluster *c = s->cluster;
    c->broken = 1;
    tbc__cluster_close(c, 0);
    tbc__seqs_lost(s);
    s->last = c->err;
    if (!s->last.code) tbc__error_set(&s->last, TBC_ERR_PEER_LOST, "a peer failed");
    tbc__log(&s->log, TBC_LOG_ERROR, "%s", s->last.message);
    return s->last.code;
}

// Before and after each batch: a failure is reported; before a batch whose sequences all start at position 0
// (fresh), a broken cluster is rebuilt, and idle links are checked with a heartbeat.
static tbc_result tbc__cluster_check(tbc_session *s, int fresh) {
    tbc__cluster *c = s->cluster;
    if (c->broken && c->peers[0].link.fd >= 0) return tbc__cluster_failed(s);
    if (!fresh) {
        if (!c->broken) return TBC_OK;
        tbc__seqs_lost(s);
        tbc__error_set(&s->last, TBC_ERR_PEER_LOST, "the cluster lost a peer during this request (%s); start a new "
                       "one", c->err.message[0] ? c->err.message : "no reason given");
        return TBC_ERR_PEER_LOST;
    }
    if (!c->broken) {
        for (int i = 0; i < c->n_peers && !c->broken; i++) {
            tbc__link *l = &c->peers[i].link;
            if (tbc__now() - l->last_recv < 1.0) continue;
            uint16_t type;
            uint32_t n;
            if (tbc__link_send(l, TBC__MSG_HEARTBEAT, NULL, 0, tbc__now() + tbc__timeout(c), &c->err) ||
                tbc__link_recv(l, TBC__BIT(TBC__MSG_HEARTBEAT), &type, c->wire, c->wire_cap, &n,
                               tbc__now() + tbc__timeout(c), &c->err))
                c->broken = 1;
        }
        if (!c->broken) return TBC_OK;
        tbc__log(&s->log, TBC_LOG_WARN, "%s; reconnecting", c->err.message);
    }
    tbc__cluster_close(c, 0);
    tbc__seqs_lost(s);
    tbc_result rc = tbc__cluster_hello(c, s->model, &s->log, s->pool.n_threads, &s->last);
    if (!rc) rc = tbc__cluster_ready(s, &s->last);
    return rc;
}

TBC__DEF tbc_result tbc_cluster_key_load(const char *path, void *buf, size_t cap, size_t *len, tbc_error *error) {
    tbc_error local;
    tbc_error *err = error ? error : &local;
    memset(err, 0, sizeof *err);
    *len = 0;
    size_t n = 0;
    char *out = (char *)buf;
    if (!path) {
        const char *v = getenv("TBC_CLUSTER_KEY");
        if (!v || !v[0]) return TBC_OK;
        n = strlen(v);
        if (n > cap) {
            tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "TBC_CLUSTER_KEY is longer than %zu bytes", cap);
            return TBC_ERR_INVALID_ARGUMENT;
        }
        memcpy(out, v, n);
    } else {
        FILE *f = fopen(path, "rb");
        if (!f) {
            tbc__error_set(err, TBC_ERR_IO, "cannot open the key file '%s': %s", path, strerror(errno));
            return TBC_ERR_IO;
        }
        n = fread(out, 1, cap, f);
        int more = fgetc(f) != EOF, bad = ferror(f);
        fclose(f);
        if (bad || more) {
            tbc__error_set(err, bad ? TBC_ERR_IO : TBC_ERR_INVALID_ARGUMENT, bad ? "cannot read the key file '%s'"
                           : "the key file '%s' is longer than %zu bytes", path, cap);
            return bad ? TBC_ERR_IO : TBC_ERR_INVALID_ARGUMENT;
        }
    }
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r')) n--;
    if (!n) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "the key %s%s is empty", path ? "file " : "in TBC_CLUSTER_KEY",
                       path ? path : "");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    *len = n;
    return TBC_OK;
}

TBC__DEF tbc_result tbc_session_plan(const tbc_session_desc *d, tbc_cluster_plan *plan) {
    tbc_error local;
    tbc_error *err = d && d->error ? d->error : &local;
    memset(err, 0, sizeof *err);
    if (!d || !d->model || !d->cluster || !plan || d->model->vocab_only || d->n_ctx < 0 || d->n_threads < 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "tbc_session_plan needs a desc with a model and a cluster");
        return TBC_ERR_INVALID_ARGUMENT;
    }
    const tbc_model_info *I = &d->model->info;
    int n_ctx = d->n_ctx ? d->n_ctx : (I->n_ctx_train < 4096 ? I->n_ctx_train : 4096);
    int n_batch = d->n_batch ? d->n_batch : 256;
    if (n_batch > n_ctx) n_batch = n_ctx;
    tbc__cluster *c = NULL;
    tbc_result rc = tbc__cluster_new(d->cluster, &c, err);
    if (rc) return rc;
    rc = tbc__cluster_hello(c, d->model, &d->logger, d->n_threads ? d->n_threads : tbc__cpu_count(), err);
    tbc_shard_desc own;
    if (!rc) rc = tbc__cluster_plan(c, d->model, d, n_ctx, n_batch, &own, err);
    if (!rc) *plan = *c->plan;
    for (int i = 0; i < c->n_peers; i++) c->peers[i].up = c->peers[i].link.fd >= 0;  // say goodbye
    tbc__cluster_free(c);
    return rc;
}

static void tbc__appendf(char *buf, size_t cap, size_t *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*at < cap ? buf + *at : NULL, *at < cap ? cap - *at : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *at += (size_t)n;
}

static void tbc__range_text(char *out, size_t cap, int b, int e) {
    if (e <= b) snprintf(out, cap, "-");
    else snprintf(out, cap, "%d-%d", b, e - 1);
}

TBC__DEF size_t tbc_cluster_plan_format(const tbc_cluster_plan *P, const tbc_model *m, char *buf, size_t cap) {
    size_t at = 0;
    if (buf && cap) buf[0] = 0;
    else cap = 0;
    int k = 0;
    for (int i = 0; i < P->n_nodes; i++) k += P->nodes[i].rank >= 0;
    tbc__appendf(buf, cap, &at, "plan: %s split over %d nodes, activations as %s (%s)\n",
                 P->split == TBC_SPLIT_TENSOR ? "tensor" : "pipeline", k, P->sync ? "q8_0" : "f32", P->reason);
    if (m)
        tbc__appendf(buf, cap, &at, "model: %d layers, %d heads (%d KV), FFN %d, vocabulary %d\n", m->info.n_layer,
                     m->info.n_head, m->info.n_head_kv, m->info.n_ff, m->info.n_vocab);
    tbc__appendf(buf, cap, &at, "%-28s %4s %7s %7s %11s %11s %10s %9s %9s %9s %10s %8s\n", "node", "rank", "layers",
                 "heads", "ffn rows", "vocab rows", "weights", "KV", "offers", "sent", "link/token", "rtt");
    for (int i = 0; i < P->n_nodes; i++) {
        const tbc_plan_node *N = &P->nodes[i];
        const tbc_shard_info *h = &N->shard;
        char who[160], rank[16], lay[24], heads[24], ff[32], voc[32], mem[24], sent[24], link[24], rtt[24];
        char wb[24], kvb[24];
        snprintf(who, sizeof who, "%.100s%s%.40s%s", N->addr, N->name[0] ? " (" : "", N->name, N->name[0] ? ")" : "");
        if (N->rank < 0) {
            tbc__appendf(buf, cap, &at, "%-28.28s %4s  %s\n", who, "-", N->note);
            continue;
        }
        snprintf(rank, sizeof rank, "%d", N->rank);
        tbc__range_text(lay, sizeof lay, h->layer_begin, h->layer_end);
        tbc__range_text(heads, sizeof heads, h->head_begin, h->head_end);
        tbc__range_text(ff, sizeof ff, h->ff_begin, h->ff_end);
        tbc__range_text(voc, sizeof voc, h->vocab_begin, h->vocab_end);
        if (h->has_output && h->vocab_end == 0 && m) tbc__range_text(voc, sizeof voc, 0, m->info.n_vocab);
        if (N->mem_usable) tbc__size_text(N->mem_usable, mem, sizeof mem);
        else snprintf(mem, sizeof mem, "?");
        if (N->has_model) snprintf(sent, sizeof sent, "-");
        else tbc__size_text(N->shard_file_bytes, sent, sizeof sent);
        if (i == 0) snprintf(link, sizeof link, "-"), snprintf(rtt, sizeof rtt, "-");
        else {
            tbc__size_text(N->link_bytes_per_token, link, sizeof link);
            snprintf(rtt, sizeof rtt, "%.0f us", N->link_rtt_us);
        }
        tbc__appendf(buf, cap, &at, "%-28.28s %4s %7s %7s %11s %11s %10s %9s %9s %9s %10s %8s\n", who, rank, lay,
                     heads, ff, voc, tbc__size_text(h->weight_bytes, wb, sizeof wb),
                     tbc__size_text(h->kv_bytes, kvb, sizeof kvb), mem, sent, link, rtt);
    }
    return at;
}

#endif // TBC__IMPLEMENTATION_DONE
#endif // TBC_IMPLEMENTATION

/* REVISION HISTORY
   0.1.0 (2026-11)  single-node engine: GGUF v2/v3 loading with shards (layer ranges, tensor slices), F32 F16 BF16
                    Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K..Q6_K kernels (scalar, AVX2, AVX-512/VNNI, NEON), llama qwen2 qwen3,
                    SentencePiece and byte-level BPE tokenizers, chat templates, sampling, streaming generation;
                    cluster over TCP: authenticated handshake, tensor split (any node count, off-block slices rounded
                    as one node) and pipeline split, plans with memory checks and --plan, shard transfer and cache,
                    heartbeats, reconnection after a lost peer.
*/

/* LICENSE
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the tbcluster authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
