// Forward pass against llama.cpp's outputs: the real models in ../shared/models (stories260K, aidreams260K,
// llama-2-tiny-random) and every fixture in ../shared/models/fixtures, teacher-forced as its MANIFEST recommends.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int skipped;
#include "check.h"

static const char *shared = "../shared";

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = (char *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static tbc_model *open_model(const char *path) {
    tbc_error err;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.error = &err;
    tbc_model *m = NULL;
    tbc_result r = tbc_model_open(&md, &m);
    CHECK(r == TBC_OK, "open %s: %s", path, err.message);
    return r == TBC_OK ? m : NULL;
}

static tbc_session *new_session(tbc_model *m, int threads, int kv_f16) {
    tbc_error err;
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = m;
    sd.n_ctx = 256;
    sd.n_threads = threads;
    sd.kv_type = kv_f16 ? TBC_KV_F16 : TBC_KV_F32;
    sd.error = &err;
    tbc_session *s = NULL;
    tbc_result r = tbc_session_create(&sd, &s);
    CHECK(r == TBC_OK, "session: %s", err.message);
    return r == TBC_OK ? s : NULL;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

// ---- ../shared/reference/*.txt (llama.cpp "model:/prompt:/prompt_tokens/top5/greedy" format) ----
typedef struct ref_simple {
    int prompt[64], n_prompt;
    int top_id[5];
    float top_logit[5];
    int greedy[64], n_greedy;
} ref_simple;

static int load_ref_simple(const char *path, ref_simple *r) {
    char *t = read_file(path, NULL);
    if (!t) return 0;
    memset(r, 0, sizeof *r);
    char *p = strstr(t, "prompt_tokens (");
    if (!p) { free(t); return 0; }
    r->n_prompt = atoi(p + 15);
    p = strchr(p, ':') + 1;
    for (int i = 0; i < r->n_prompt && i < 64; i++) r->prompt[i] = (int)strtol(p, &p, 10);
    p = strstr(p, "top5_logits_at_first_generated_position:");
    p = strchr(p, '\n') + 1;
    for (int i = 0; i < 5; i++) {
        r->top_id[i] = (int)strtol(p, &p, 10);
        r->top_logit[i] = strtof(p, &p);
        p = strchr(p, '\n') + 1;
    }
    p = strstr(p, "greedy:");
    p = strchr(p, '\n') + 1;
    while (*p == ' ' && r->n_greedy < 64) {
        strtol(p, &p, 10);
        r->greedy[r->n_greedy++] = (int)strtol(p, &p, 10);
        p = strchr(p, '\n');
        if (!p) break;
        p++;
    }
    free(t);
    return 1;
}

// kv_f16: llama.cpp's references were made with its defaults (F16 KV cache, flash attention), which the F16 cache
// mode reproduces; run.c's with F32 everywhere.
// run.c's output: "[403][407]..." then "TOP k id logit" lines.
static int load_ref_runc(const char *path, ref_simple *r) {
    char *t = read_file(path, NULL);
    if (!t) return 0;
    memset(r, 0, sizeof *r);
    r->prompt[r->n_prompt++] = 1;  // run.c's ids omit the BOS it feeds
    char *p = strstr(t, "\n[");
    if (p) p++;
    while (p && *p == '[' && r->n_prompt < 64) { r->prompt[r->n_prompt++] = atoi(p + 1); p = strchr(p, ']') + 1; }
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof key, "TOP %d ", i);
        char *q = strstr(t, key);
        if (!q) { free(t); return 0; }
        q += strlen(key);
        r->top_id[i] = (int)strtol(q, &q, 10);
        r->top_logit[i] = strtof(q, NULL);
    }
    free(t);
    return 1;
}

static void test_real_model(const char *gguf, const char *ref, const char *prompt, float top_tol, int n_greedy, int kv_f16) {
    char path[1024], rpath[1024];
    snprintf(path, sizeof path, "%s/models/%s", shared, gguf);
    snprintf(rpath, sizeof rpath, "%s/reference/%s", shared, ref);
    ref_simple r;
    FILE *f = fopen(path, "rb");
    if (!f || !(strstr(ref, ".runc.") ? load_ref_runc(rpath, &r) : load_ref_simple(rpath, &r))) {
        if (f) fclose(f);
        printf("SKIP: %s or its reference is absent\n", path);
        skipped++;
        return;
    }
    fclose(f);
    tbc_model *m = open_model(path);
    if (!m) return;
    int32_t ids[64];
    int64_t n = 0;
    tbc_result tr = tbc_tokenize(m, prompt, strlen(prompt), TBC_TOKENIZE_ADD_SPECIAL, ids, 64, &n);
    int same = tr == TBC_OK && n == r.n_prompt;
    for (int i = 0; same && i < n; i++) same = ids[i] == r.prompt[i];
    CHECK(same, "%s: prompt ids differ from the reference (got %lld tokens)", gguf, (long long)n);
    if (!same) { tbc_model_destroy(m); return; }
    tbc_session *s = new_session(m, 2, kv_f16);
    if (!s) { tbc_model_destroy(m); return; }
    tbc_result er = tbc_session_eval(s, ids, n);
    CHECK(er == TBC_OK, "%s: eval failed", gguf);
    const float *lg = tbc_session_logits(s);
    int nv = tbc_n_vocab(m);
    float worst = 0;
    for (int i = 0; i < 5; i++) {
        float d = fabsf(lg[r.top_id[i]] - r.top_logit[i]);
        if (d > worst) worst = d;
    }
    if (top_tol > 0) CHECK(worst <= top_tol, "%s: top-5 logits differ by %g (tolerance %g)", gguf, (double)worst, (double)top_tol);
    int good = 1, at = -1;
    for (int i = 0; i < n_greedy && i < r.n_greedy; i++) {
        int32_t t = argmax(lg, nv);
        if (t != r.greedy[i]) { good = 0; at = i; break; }
        if (tbc_session_eval(s, &t, 1) != TBC_OK) { good = 0; at = i; break; }
        lg = tbc_session_logits(s);
    }
    CHECK(good, "%s: greedy ids differ from the reference at step %d", gguf, at);
    printf("  %-28s %-12s top-5 max |diff| %.2e, %d greedy ids equal\n", gguf, kv_f16 ? "(F16 cache)" : "(F32 cache)",
           (double)worst, good ? n_greedy : at);
    tbc_session_destroy(s);
    tbc_model_destroy(m);
}

// ---- fixtures: refs/STEM.ref.txt + steps.bin ----
typedef struct fixture_prompt {
    int ids[128], n;
    int greedy[16];
    float margin[16];
    char text[512];
    int has_text;
} fixture_prompt;

static int hexval(char c) { return c >= 'a' ? c - 'a' + 10 : c - '0'; }

static int parse_fixture_ref(const char *path, fixture_prompt pr[2]) {
    char *t = read_file(path, NULL);
    if (!t) return 0;
    memset(pr, 0, 2 * sizeof *pr);
    int cur = -1;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "begin_prompt ", 13)) cur = line[13] == 'A' ? 0 : 1;
        else if (cur < 0) continue;
        else if (!strncmp(line, "prompt_ids ", 11)) {
            char *p = line + 11;
            while (*p && pr[cur].n < 128) { pr[cur].ids[pr[cur].n++] = (int)strtol(p, &p, 10); while (*p == ' ') p++; }
        } else if (!strncmp(line, "greedy_ids ", 11)) {
            char *p = line + 11;
            for (int i = 0; i < 16; i++) pr[cur].greedy[i] = (int)strtol(p, &p, 10);
        } else if (!strncmp(line, "step ", 5)) {
            int k = atoi(line + 5);
            char *mp = strstr(line, "margin ");
            if (k >= 0 && k < 16 && mp) pr[cur].margin[k] = strtof(mp + 7, NULL);
        } else if (!strncmp(line, "text_hex ", 9)) {
            const char *h = line + 9;
            size_t n = 0;
            if (*h != '-')
                for (; h[0] && h[1] && n + 1 < sizeof pr[cur].text; h += 2) pr[cur].text[n++] = (char)(hexval(h[0]) * 16 + hexval(h[1]));
            pr[cur].text[n] = 0;
            pr[cur].has_text = 1;
        }
    }
    free(t);
    return 1;
}

static float tolerance_for(const char *stem) {
    if (strstr(stem, "-f32")) return 1e-4f;
    if (strstr(stem, "-f16")) return 2e-2f;
    if (strstr(stem, "-bf16")) return 0.1f;
    return 0.3f;
}

static void test_fixture(const char *stem) {
    char path[1024], rpath[1024], spath[1024];
    snprintf(path, sizeof path, "%s/models/fixtures/%s.gguf", shared, stem);
    snprintf(rpath, sizeof rpath, "%s/models/fixtures/refs/%s.ref.txt", shared, stem);
    fixture_prompt pr[2];
    if (!parse_fixture_ref(rpath, pr)) { printf("SKIP: %s absent\n", rpath); skipped++; return; }
    tbc_model *m = open_model(path);
    if (!m) return;
    tbc_session *s = new_session(m, 2, 0);
    if (!s) { tbc_model_destroy(m); return; }
    int nv = tbc_n_vocab(m);
    float tol = tolerance_for(stem), worst = 0;
    int argmax_checked = 0;
    for (int P = 0; P < 2; P++) {
        snprintf(spath, sizeof spath, "%s/models/fixtures/refs/%s.%c.steps.bin", shared, stem, 'A' + P);
        size_t len;
        float *steps = (float *)read_file(spath, &len);
        CHECK(steps && len == (size_t)16 * nv * 4, "%s: %s missing or wrong size", stem, spath);
        if (!steps) continue;
        if (pr[P].has_text) {  // prompt B: our tokenizer must give the recorded ids
            int32_t ids[256];
            int64_t n = 0;
            tbc_result tr = tbc_tokenize(m, pr[P].text, strlen(pr[P].text), TBC_TOKENIZE_ADD_SPECIAL, ids, 256, &n);
            int same = tr == TBC_OK && n == pr[P].n;
            for (int i = 0; same && i < n; i++) same = ids[i] == pr[P].ids[i];
            CHECK(same, "%s: prompt %c tokenizes to other ids (%lld tokens, want %d)", stem, 'A' + P, (long long)n, pr[P].n);
        }
        tbc_session_rewind(s, 0);
        int32_t ids[128];
        for (int i = 0; i < pr[P].n; i++) ids[i] = pr[P].ids[i];
        CHECK(tbc_session_eval(s, ids, pr[P].n) == TBC_OK, "%s: eval", stem);
        for (int k = 0; k < 16; k++) {
            const float *lg = tbc_session_logits(s), *ref = steps + (size_t)k * nv;
            float rowmax = 0;
            for (int i = 0; i < nv; i++) { float d = fabsf(lg[i] - ref[i]); if (d > rowmax) rowmax = d; }
            if (rowmax > worst) worst = rowmax;
            CHECK(rowmax <= tol, "%s prompt %c step %d: max |diff| %g > %g", stem, 'A' + P, k, (double)rowmax, (double)tol);
            if (pr[P].margin[k] > tol) {
                argmax_checked++;
                CHECK(argmax(lg, nv) == pr[P].greedy[k], "%s prompt %c step %d: argmax %d, want %d (margin %g)", stem,
                      'A' + P, k, argmax(lg, nv), pr[P].greedy[k], (double)pr[P].margin[k]);
            }
            if (k < 15) {
                int32_t t = pr[P].greedy[k];
                CHECK(tbc_session_eval(s, &t, 1) == TBC_OK, "%s: eval step", stem);
            }
        }
        free(steps);
    }
    printf("  %-24s max |diff| %.2e (tolerance %.0e), %d argmax checks\n", stem, (double)worst, (double)tol, argmax_checked);
    tbc_session_destroy(s);
    tbc_model_destroy(m);
}

int main(int argc, char **argv) {
    if (argc > 1) shared = argv[1];
    printf("real models:\n");
    const char *once = "Once upon a time";
    test_real_model("stories260K-f32.gguf", "stories260K-f32.once_upon_a_time.txt", once, 2e-3f, 20, 1);
    test_real_model("stories260K-f32.gguf", "stories260K-f32.once_upon_a_time.txt", once, 5e-3f, 20, 0);
    test_real_model("stories260K-f32.gguf", "stories260K.runc.once_upon_a_time.ids_top5.txt", once, 2e-3f, 0, 0);
    test_real_model("stories260K-f16.gguf", "stories260K-f16.once_upon_a_time.txt", once, 2e-2f, 20, 1);
    test_real_model("stories260K-f16.gguf", "stories260K-f16.once_upon_a_time.txt", once, 0, 20, 0);
    test_real_model("stories260K-q8_0.gguf", "stories260K-q8_0.once_upon_a_time.txt", once, 0.3f, 20, 1);
    test_real_model("stories260K-q8_0.gguf", "stories260K-q8_0.once_upon_a_time.txt", once, 0, 20, 0);
    test_real_model("stories260K-q4_0.gguf", "stories260K-q4_0.once_upon_a_time.txt", once, 0.3f, 20, 1);
    test_real_model("stories260K-q4_0.gguf", "stories260K-q4_0.once_upon_a_time.txt", once, 0, 20, 0);
    test_real_model("aidreams260K-f32.gguf", "aidreams260K-f32.echoes_of.txt", "Echoes of", 2e-3f, 16, 1);
    test_real_model("aidreams260K-f32.gguf", "aidreams260K.runc.echoes_of.ids_top5.txt", "Echoes of", 2e-3f, 0, 0);
    test_real_model("aidreams260K-q8_0.gguf", "aidreams260K-q8_0.echoes_of.txt", "Echoes of", 0.3f, 16, 1);
    test_real_model("llama-2-tiny-random.gguf", "llama-2-tiny-random.ollama.once_upon_a_time.txt", once, 5e-3f, 20, 1);
    printf("fixtures (teacher-forced, both prompts, 16 rows each):\n");
    static const char *stems[] = {
        "llama2-spm-f32", "llama2-spm-f16", "llama2-spm-bf16", "llama2-spm-q8_0", "llama2-spm-q4_0", "llama2-spm-q4_1",
        "llama2-spm-q5_0", "llama2-spm-q5_1", "llama2-spm-q2_k", "llama2-spm-q3_k", "llama2-spm-q4_k", "llama2-spm-q5_k",
        "llama2-spm-q6_k", "llama3-bpe-f32", "llama3-bpe-q8_0", "llama3-bpe-q4_k_m", "qwen2-f32", "qwen2-q8_0",
        "qwen2-q4_k_m", "qwen3-f32", "qwen3-q8_0", "qwen3-q4_k_m"};
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) test_fixture(stems[i]);
    printf("test_model: %d passed, %d failed%s\n", passed, failed, skipped ? " (some files absent: see SKIP)" : "");
    return failed ? 1 : 0;
}
