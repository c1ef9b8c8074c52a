// generate: stream text from a GGUF model with tbcluster.h (one node).
//   build/generate -m MODEL [-p PROMPT | --chat] [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p M]
//                  [--seed S] [-t THREADS] [--json]
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: generate -m MODEL [-p PROMPT | --chat] [options]\n"
        "  -m, --model FILE        GGUF model\n"
        "  -p, --prompt TEXT       prompt (default \"Once upon a time\")\n"
        "      --chat              use the model's chat template: -p is the user message; without -p, an\n"
        "                          interactive chat on stdin (one message per line)\n"
        "      --system TEXT       system message for --chat\n"
        "  -n, --n-predict N       tokens to generate (default 128; 0 = until the end of text)\n"
        "      --temp T            temperature (default 0.8; 0 = greedy)\n"
        "      --top-k K           (default 40; 0 = off)\n"
        "      --top-p P           (default 0.95; 1 = off)\n"
        "      --min-p M           (default 0.05; 0 = off)\n"
        "      --repeat-penalty R  (default 1.0 = off)\n"
        "      --presence-penalty P, --frequency-penalty F   (default 0)\n"
        "      --seed S            random seed (default 0)\n"
        "      --stop TEXT         stop string (repeatable)\n"
        "  -t, --threads N         threads (default: all CPUs)\n"
        "  -c, --ctx N             context length (default: the model's, at most 4096)\n"
        "      --kv-f16            store the KV cache as F16 (default F32)\n"
        "      --json              print one JSON object: prompt_ids, top_logits, ids, text, speeds\n"
        "      --peers LIST        run with these nodes (host:port,...; each runs build/node)\n"
        "      --key-file F        the cluster key (or the environment variable TBC_CLUSTER_KEY)\n"
        "      --split S           tensor | pipeline | auto (default auto)\n"
        "      --sync T            f32 | q8_0: activation sums on the wire (default f32)\n"
        "      --no-local          this machine holds no share: it tokenizes, samples and sums; the peers compute\n"
        "      --transport T       auto | rdma | tcp (default auto: RDMA where both ends have it, else TCP)\n"
        "      --rdma-dev NAME, --rdma-gid N   the RDMA device and GID index (default: the link's address)\n"
        "      --rdma-uc           unreliable-connected queue pairs, as macOS uses (default RC)\n"
        "      --plan              print who would hold what (layers, heads, memory, bytes per token) and exit\n"
        "      --timeout S         seconds before a silent peer is an error (default 2)\n"
        "  -q, --quiet             with --peers: no progress or cluster messages on stderr\n"
        "  -v, --verbose           log what the library does\n"
        "  -h, --help              this text\n");
}

typedef struct out_state {
    int json;
    char *text;
    size_t len, cap;
    int32_t *ids;
    size_t n_ids, cap_ids;
    float top[10][2];
    int have_top;
} out_state;

static int on_text(void *user, const char *text, size_t len, int32_t token) {
    out_state *o = (out_state *)user;
    (void)token;
    if (!o->json) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    if (o->len + len + 1 > o->cap) {
        size_t nc = (o->len + len + 1) * 2;
        char *p = (char *)realloc(o->text, nc);
        if (!p) return 1;
        o->text = p;
        o->cap = nc;
    }
    memcpy(o->text + o->len, text, len);
    o->len += len;
    return 0;
}

static void on_token(void *user, int32_t token) {
    out_state *o = (out_state *)user;
    if (o->n_ids == o->cap_ids) {
        size_t nc = o->cap_ids ? o->cap_ids * 2 : 64;
        int32_t *p = (int32_t *)realloc(o->ids, nc * sizeof *p);
        if (!p) return;
        o->ids = p;
        o->cap_ids = nc;
    }
    o->ids[o->n_ids++] = token;
}

static void on_logits(void *user, const float *logits, int32_t n) {
    out_state *o = (out_state *)user;
    if (o->have_top) return;
    o->have_top = 1;
    int k = n < 10 ? n : 10;
    int32_t best[10];
    for (int j = 0; j < k; j++) best[j] = -1;
    for (int32_t i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            if (best[j] < 0 || logits[i] > logits[best[j]]) {
                memmove(&best[j + 1], &best[j], sizeof(int32_t) * (size_t)(k - j - 1));
                best[j] = i;
                break;
            }
        }
    }
    for (int j = 0; j < 10; j++) {
        o->top[j][0] = j < k ? (float)best[j] : -1;
        o->top[j][1] = j < k ? logits[best[j]] : 0;
    }
}

// JSON string: escapes, and replaces bytes that are not UTF-8 with U+FFFD.
static void json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { fprintf(f, "\\%c", c); i++; continue; }
        if (c == '\n') { fputs("\\n", f); i++; continue; }
        if (c == '\r') { fputs("\\r", f); i++; continue; }
        if (c == '\t') { fputs("\\t", f); i++; continue; }
        if (c < 0x20 || c == 0x7f) { fprintf(f, "\\u%04x", c); i++; continue; }
        if (c < 0x80) { fputc(c, f); i++; continue; }
        size_t need = c >= 0xF0 && c < 0xF5 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        if (c >= 0xF5) need = 0;
        int ok = need > 0 && i + need <= n;
        for (size_t k = 1; ok && k < need; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok) { fwrite(s + i, 1, need, f); i += need; }
        else { fputs("\\ufffd", f); i++; }
    }
    fputc('"', f);
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "generate: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, v);
        return 0;
    }
    *out = x;
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *system_msg = NULL;
    const char *stops[16];
    size_t n_stop = 0;
    int n_predict = 128, threads = 0, n_ctx = 0, json = 0, chat = 0, verbose = 0, kv_f16 = 0, plan_only = 0, quiet = 0;
    tbc_cluster_desc cd;
    memset(&cd, 0, sizeof cd);
    static char key[4096];
    const char *key_file = NULL;
    tbc_sampling sp;
    memset(&sp, 0, sizeof sp);
    sp.temperature = 0.8f; sp.top_k = 40; sp.top_p = 0.95f; sp.min_p = 0.05f; sp.repeat_penalty = 1.0f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double x;
#define NEXT() (i + 1 < argc ? argv[++i] : (fprintf(stderr, "generate: %s needs a value\n", a), exit(2), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = NEXT();
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = NEXT();
        else if (!strcmp(a, "--system")) system_msg = NEXT();
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--kv-f16")) kv_f16 = 1;
        else if (!strcmp(a, "--peers")) cd.peers = NEXT();
        else if (!strcmp(a, "--key-file")) key_file = NEXT();
        else if (!strcmp(a, "--no-local")) cd.no_local = 1;
        else if (!strcmp(a, "--transport")) {
            const char *v = NEXT();
            if (!strcmp(v, "auto")) cd.transport = TBC_TRANSPORT_AUTO;
            else if (!strcmp(v, "rdma")) cd.transport = TBC_TRANSPORT_RDMA;
            else if (!strcmp(v, "tcp")) cd.transport = TBC_TRANSPORT_TCP;
            else { fprintf(stderr, "generate: --transport expects auto, rdma or tcp, got '%s'\n", v); return 2; }
        }
        else if (!strcmp(a, "--rdma-dev")) cd.rdma_dev = NEXT();
        else if (!strcmp(a, "--rdma-gid")) { if (!parse_num(a, NEXT(), 0, 1 << 20, &x)) return 2; cd.rdma_gid = (int)x + 1; }
        else if (!strcmp(a, "--rdma-uc")) cd.rdma_uc = 1;
        else if (!strcmp(a, "--plan")) plan_only = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--timeout")) { if (!parse_num(a, NEXT(), 0.01, 3600, &x)) return 2; cd.timeout = x; }
        else if (!strcmp(a, "--split")) {
            const char *v = NEXT();
            if (!strcmp(v, "tensor")) cd.split = TBC_SPLIT_TENSOR;
            else if (!strcmp(v, "pipeline")) cd.split = TBC_SPLIT_PIPELINE;
            else if (!strcmp(v, "auto")) cd.split = TBC_SPLIT_AUTO;
            else { fprintf(stderr, "generate: --split expects tensor, pipeline or auto, got '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--sync")) {
            const char *v = NEXT();
            if (!strcmp(v, "f32")) cd.sync = TBC_SYNC_F32;
            else if (!strcmp(v, "q8_0")) cd.sync = TBC_SYNC_Q8_0;
            else { fprintf(stderr, "generate: --sync expects f32 or q8_0, got '%s'\n", v); return 2; }
        }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { if (!parse_num(a, NEXT(), 0, 1e7, &x)) return 2; n_predict = (int)x; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (!parse_num(a, NEXT(), 1, 256, &x)) return 2; threads = (int)x; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) { if (!parse_num(a, NEXT(), 1, 1 << 24, &x)) return 2; n_ctx = (int)x; }
        else if (!strcmp(a, "--temp")) { if (!parse_num(a, NEXT(), 0, 100, &x)) return 2; sp.temperature = (float)x; }
        else if (!strcmp(a, "--top-k")) { if (!parse_num(a, NEXT(), 0, 1e9, &x)) return 2; sp.top_k = (int)x; }
        else if (!strcmp(a, "--top-p")) { if (!parse_num(a, NEXT(), 0, 1, &x)) return 2; sp.top_p = (float)x; }
        else if (!strcmp(a, "--min-p")) { if (!parse_num(a, NEXT(), 0, 1, &x)) return 2; sp.min_p = (float)x; }
        else if (!strcmp(a, "--repeat-penalty")) { if (!parse_num(a, NEXT(), 0, 100, &x)) return 2; sp.repeat_penalty = (float)x; }
        else if (!strcmp(a, "--presence-penalty")) { if (!parse_num(a, NEXT(), -100, 100, &x)) return 2; sp.presence_penalty = (float)x; }
        else if (!strcmp(a, "--frequency-penalty")) { if (!parse_num(a, NEXT(), -100, 100, &x)) return 2; sp.frequency_penalty = (float)x; }
        else if (!strcmp(a, "--seed")) { if (!parse_num(a, NEXT(), 0, 1.8e19, &x)) return 2; sp.seed = (uint64_t)x; }
        else if (!strcmp(a, "--stop")) { if (n_stop == 16) { fprintf(stderr, "generate: at most 16 --stop strings\n"); return 2; } stops[n_stop++] = NEXT(); }
        else { fprintf(stderr, "generate: unknown argument '%s' (see --help)\n", a); return 2; }
#undef NEXT
    }
    if (!model_path) { fprintf(stderr, "generate: -m MODEL is required (see --help)\n"); return 2; }
    if (!prompt && !chat) prompt = "Once upon a time";
    if (json && chat && !prompt) { fprintf(stderr, "generate: --json with --chat needs -p\n"); return 2; }

    tbc_error err;
    size_t key_len = 0;
    if (tbc_cluster_key_load(key_file, key, sizeof key, &key_len, &err) != TBC_OK) {
        fprintf(stderr, "generate: %s\n", err.message);
        return 2;
    }
    cd.key = key_len ? key : NULL;
    cd.key_len = key_len;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = model_path;
    md.error = &err;
    if (verbose) { md.logger.fn = tbc_log_stderr; md.logger.max_level = TBC_LOG_DEBUG; }
    else if (cd.peers && !quiet) { md.logger.fn = tbc_log_stderr; md.logger.max_level = TBC_LOG_INFO; }
    tbc_model *model;
    if (tbc_model_open(&md, &model) != TBC_OK) {
        fprintf(stderr, "generate: %s: %s\n", model_path, err.message);
        return 1;
    }
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = model;
    sd.n_threads = threads;
    sd.n_ctx = n_ctx;
    sd.kv_type = kv_f16 ? TBC_KV_F16 : TBC_KV_F32;
    sd.logger = md.logger;
    sd.error = &err;
    if (cd.peers) sd.cluster = &cd;
    if (plan_only) {
        if (!cd.peers) { fprintf(stderr, "generate: --plan needs --peers\n"); tbc_model_destroy(model); return 2; }
        tbc_cluster_plan *plan = (tbc_cluster_plan *)malloc(sizeof *plan);
        if (!plan || tbc_session_plan(&sd, plan) != TBC_OK) {
            fprintf(stderr, "generate: %s\n", plan ? err.message : "out of memory");
            free(plan);
            tbc_model_destroy(model);
            return 1;
        }
        size_t need = tbc_cluster_plan_format(plan, model, NULL, 0);
        char *text = (char *)malloc(need + 1);
        if (text) {
            tbc_cluster_plan_format(plan, model, text, need + 1);
            fputs(text, stdout);
        }
        free(text);
        free(plan);
        tbc_model_destroy(model);
        return text ? 0 : 1;
    }
    tbc_session *s;
    if (tbc_session_create(&sd, &s) != TBC_OK) {
        fprintf(stderr, "generate: %s\n", err.message);
        tbc_model_destroy(model);
        return 1;
    }
    out_state o;
    memset(&o, 0, sizeof o);
    o.json = json;
    tbc_generate_desc gd;
    memset(&gd, 0, sizeof gd);
    gd.max_tokens = n_predict;
    gd.sampling = sp;
    gd.stop = stops;
    gd.n_stop = n_stop;
    gd.on_text = on_text;
    gd.on_token = on_token;
    gd.on_logits = on_logits;
    gd.user = &o;
    int rc = 0;
    tbc_chat_message msgs[64];
    size_t n_msgs = 0;
    char line[8192];
    char *answers[32];
    size_t n_answers = 0;
    if (system_msg && chat) { msgs[n_msgs].role = "system"; msgs[n_msgs].content = system_msg; n_msgs++; }
    for (;;) {
        int32_t *ids = NULL;
        if (chat) {
            const char *user_text = prompt;
            if (!prompt) {
                fprintf(stderr, "> ");
                if (!fgets(line, sizeof line, stdin)) break;
                line[strcspn(line, "\n")] = 0;
                user_text = line;
            }
            if (n_msgs + 2 > 64 || n_answers == 32) { fprintf(stderr, "generate: the conversation is too long for this tool\n"); rc = 1; break; }
            msgs[n_msgs].role = "user";
            msgs[n_msgs].content = strdup(user_text);
            n_msgs++;
            gd.messages = msgs;
            gd.n_messages = n_msgs;
        } else {
            gd.prompt = prompt;
            if (!json) { fputs(prompt, stdout); fflush(stdout); }
        }
        if (json) {  // tokenize here to report the ids the library will read
            int64_t n = 0;
            tbc_result tr;
            char *text = NULL;
            size_t tlen = strlen(prompt);
            int flags = TBC_TOKENIZE_ADD_SPECIAL;
            if (chat) {
                tbc_chat_apply(model, msgs, n_msgs, 1, NULL, 0, &tlen);
                text = (char *)malloc(tlen + 1);
                if (!text || tbc_chat_apply(model, msgs, n_msgs, 1, text, tlen + 1, &tlen) != TBC_OK) { fprintf(stderr, "generate: chat template failed\n"); return 1; }
                flags |= TBC_TOKENIZE_PARSE_SPECIAL;
            }
            tr = tbc_tokenize(model, text ? text : prompt, tlen, flags, NULL, 0, &n);
            ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)(n + 1));
            if (!ids || (tr != TBC_OK && tr != TBC_ERR_BUFFER_TOO_SMALL) ||
                tbc_tokenize(model, text ? text : prompt, tlen, flags, ids, n, &n) != TBC_OK) {
                fprintf(stderr, "generate: tokenizing the prompt failed\n");
                return 1;
            }
            free(text);
            gd.prompt_tokens = ids;
            gd.n_prompt_tokens = n;
        }
        o.len = 0;
        tbc_generate_result res;
        tbc_result r = tbc_session_generate(s, &gd, &res);
        if (r != TBC_OK) {
            fprintf(stderr, "\ngenerate: %s: %s\n", tbc_result_str(r), tbc_session_last_error(s)->message);
            rc = 1;
            free(ids);
            break;
        }
        double pf = res.prefill_seconds > 0 ? (double)res.n_prompt / res.prefill_seconds : 0;
        double dc = res.decode_seconds > 0 && res.n_generated > 1 ? (double)(res.n_generated - 1) / res.decode_seconds : 0;
        if (json) {
            printf("{\"prompt_ids\":[");
            for (int64_t i = 0; i < gd.n_prompt_tokens; i++) printf("%s%d", i ? "," : "", ids[i]);
            printf("],\"top_logits\":[");
            for (int j = 0; j < 10 && o.have_top; j++) printf("%s[%d,%.6f]", j ? "," : "", (int)o.top[j][0], (double)o.top[j][1]);
            printf("],\"ids\":[");
            for (size_t i = 0; i < o.n_ids; i++) printf("%s%d", i ? "," : "", o.ids[i]);
            printf("],\"text\":");
            json_string(stdout, o.text ? o.text : "", o.len);
            printf(",\"prefill_tok_s\":%.3f,\"decode_tok_s\":%.3f}\n", pf, dc);
        } else {
            printf("\n");
            fprintf(stderr, "[prompt %lld tokens, %.1f tok/s; generated %lld tokens, %.1f tok/s]\n",
                    (long long)res.n_prompt, pf, (long long)res.n_generated, dc);
        }
        free(ids);
        if (!chat || prompt) break;
        // keep the answer in the conversation (interactive mode)
        answers[n_answers] = strndup(o.text ? o.text : "", o.len);
        msgs[n_msgs].role = "assistant";
        msgs[n_msgs].content = answers[n_answers++];
        n_msgs++;
    }
    for (size_t i = 0; i < n_msgs; i++) if (!strcmp(msgs[i].role, "user")) free((void *)msgs[i].content);
    for (size_t i = 0; i < n_answers; i++) free(answers[i]);
    free(o.text);
    free(o.ids);
    tbc_session_destroy(s);
    tbc_model_destroy(model);
    return rc;
}
