// >>chat templates (part: chat.h)
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
