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
