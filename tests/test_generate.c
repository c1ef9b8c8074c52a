// Sampling and generation: determinism by seed, greedy = argmax, the filters (top-k, top-p, min-p) and penalties,
// stop strings (also across token boundaries), whole UTF-8 characters when streaming, limits and errors.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

// ---- the sampler on hand-made logits ----
static void test_sampler(void) {
    enum { NV = 8 };
    float lg[NV] = {1.0f, 3.0f, 2.5f, 0.5f, 3.0f, -1.0f, 2.9f, 0.0f};
    tbc_sampling p;
    memset(&p, 0, sizeof p);
    tbc_sampler *s;
    CHECK(tbc_sampler_create(&p, NV, &s) == TBC_OK, "create");
    CHECK(tbc_sampler_sample(s, lg) == 1, "greedy takes the lowest id of a tie");
    tbc_sampler_destroy(s);

    // top_k 1 is greedy at any temperature
    p.temperature = 5.0f;
    p.top_k = 1;
    tbc_sampler_create(&p, NV, &s);
    int all = 1;
    for (int i = 0; i < 200; i++) all &= tbc_sampler_sample(s, lg) == 1;
    CHECK(all, "top_k 1 always picks the best");
    tbc_sampler_destroy(s);

    // top_k 3: only {1, 4, 6} ever; every one of them seen
    p.top_k = 3;
    p.seed = 11;
    tbc_sampler_create(&p, NV, &s);
    int seen[NV] = {0};
    for (int i = 0; i < 3000; i++) seen[tbc_sampler_sample(s, lg)]++;
    CHECK(seen[1] && seen[4] && seen[6] && seen[1] + seen[4] + seen[6] == 3000, "top_k 3 draws only the best three (%d %d %d)", seen[1], seen[4], seen[6]);
    tbc_sampler_destroy(s);

    // min_p: keeps tokens with p >= min_p * p_max: at temperature 1, logit >= 3 + ln(0.5) = 2.31 -> {1,2,4,6}
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.min_p = 0.5f;
    p.seed = 3;
    tbc_sampler_create(&p, NV, &s);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 4000; i++) seen[tbc_sampler_sample(s, lg)]++;
    CHECK(seen[1] && seen[2] && seen[4] && seen[6] && !seen[0] && !seen[3] && !seen[5] && !seen[7], "min_p keeps {1,2,4,6}");
    // and the draw follows the softmax: p(1) = p(4) ~ 0.296, p(6) ~ 0.268, p(2) ~ 0.180
    CHECK(fabs(seen[1] / 4000.0 - 0.296) < 0.04 && fabs(seen[2] / 4000.0 - 0.180) < 0.04, "frequencies follow the softmax (%d %d)", seen[1], seen[2]);
    tbc_sampler_destroy(s);

    // top_p 0.5: the smallest set reaching 50%: {1, 4} (0.296 + 0.296 of the full softmax)
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.top_p = 0.5f;
    tbc_sampler_create(&p, NV, &s);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 1000; i++) seen[tbc_sampler_sample(s, lg)]++;
    CHECK(seen[1] + seen[4] == 1000 && seen[1] && seen[4], "top_p 0.5 keeps {1, 4}");
    tbc_sampler_destroy(s);

    // same seed, same sequence; another seed, another sequence
    memset(&p, 0, sizeof p);
    p.temperature = 1.0f;
    p.seed = 42;
    int a[64], b[64], c[64];
    tbc_sampler_create(&p, NV, &s);
    for (int i = 0; i < 64; i++) a[i] = tbc_sampler_sample(s, lg);
    tbc_sampler_reset(s);
    for (int i = 0; i < 64; i++) b[i] = tbc_sampler_sample(s, lg);
    tbc_sampler_destroy(s);
    p.seed = 43;
    tbc_sampler_create(&p, NV, &s);
    for (int i = 0; i < 64; i++) c[i] = tbc_sampler_sample(s, lg);
    tbc_sampler_destroy(s);
    CHECK(!memcmp(a, b, sizeof a), "a seed gives a reproducible sequence");
    CHECK(memcmp(a, c, sizeof a) != 0, "another seed gives another sequence");

    // repetition penalty 2: token 1 (logit 3) seen -> 1.5, so greedy picks 4
    memset(&p, 0, sizeof p);
    p.repeat_penalty = 2.0f;
    tbc_sampler_create(&p, NV, &s);
    tbc_sampler_accept(s, 1);
    int t1 = tbc_sampler_sample(s, lg);
    CHECK(t1 == 4, "repeat penalty moves greedy from 1 to 4 (got %d)", t1);
    // now 4 was sampled too (accepted automatically): next best is 6 (2.9)
    CHECK(tbc_sampler_sample(s, lg) == 6, "sampled tokens count for the penalty");
    tbc_sampler_destroy(s);
    // frequency penalty counts occurrences: 1 seen twice with 0.3 -> 2.4 < 2.5 (token 2) and < 2.9 (6)... 4 wins
    memset(&p, 0, sizeof p);
    p.frequency_penalty = 0.3f;
    p.presence_penalty = 0.05f;
    tbc_sampler_create(&p, NV, &s);
    tbc_sampler_accept(s, 4);
    tbc_sampler_accept(s, 1);
    tbc_sampler_accept(s, 1);
    int t2 = tbc_sampler_sample(s, lg);  // 1: 3-0.6-0.05 = 2.35, 4: 3-0.3-0.05 = 2.65, 6: 2.9
    CHECK(t2 == 6, "frequency and presence penalties (got %d)", t2);
    tbc_sampler_destroy(s);
    // a window of 2 forgets older tokens
    memset(&p, 0, sizeof p);
    p.repeat_penalty = 10.0f;
    p.repeat_last_n = 2;
    tbc_sampler_create(&p, NV, &s);
    tbc_sampler_accept(s, 1);
    tbc_sampler_accept(s, 3);
    tbc_sampler_accept(s, 3);
    CHECK(tbc_sampler_sample(s, lg) == 1, "token 1 fell out of the 2-token window");
    tbc_sampler_destroy(s);

    tbc_sampling bad;
    memset(&bad, 0, sizeof bad);
    bad.top_p = 1.5f;
    CHECK(tbc_sampler_create(&bad, NV, &s) == TBC_ERR_INVALID_ARGUMENT, "top_p above 1 is refused");
    bad.top_p = 0;
    bad.temperature = -1;
    CHECK(tbc_sampler_create(&bad, NV, &s) == TBC_ERR_INVALID_ARGUMENT, "negative temperature is refused");
}

// ---- streaming helpers ----
static void test_stream_helpers(void) {
    const char *euro = "ab\xe2\x82\xac";  // "ab€"
    CHECK(tbc__utf8_incomplete(euro, 3) == 1, "one byte of a 3-byte character is held back");
    CHECK(tbc__utf8_incomplete(euro, 4) == 2, "two bytes of a 3-byte character are held back");
    CHECK(tbc__utf8_incomplete(euro, 5) == 0, "a whole character is emitted");
    CHECK(tbc__utf8_incomplete("a\xf0\x9f\x98", 4) == 3, "three bytes of an emoji are held back");
    CHECK(tbc__utf8_incomplete("abc", 3) == 0, "ASCII is never held");
    const char *stops[] = {"</s>", "\n\nUser:"};
    CHECK(tbc__stop_holdback("hello </", 8, stops, 2) == 2, "the start of a stop string is held back");
    CHECK(tbc__stop_holdback("hello\n\nUs", 9, stops, 2) == 4, "the longest possible start is held back");
    CHECK(tbc__stop_holdback("hello", 5, stops, 2) == 0, "nothing held when no stop string can start");
}

// ---- generation with a real model ----
typedef struct collect { char text[4096]; size_t len; int calls; int bad_utf8; int stop_after; } collect;

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
        if (!need || i + need > n) return 0;
        for (size_t k = 1; k < need; k++) if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += need;
    }
    return 1;
}

static int on_text(void *user, const char *text, size_t len, int32_t token) {
    collect *c = (collect *)user;
    (void)token;
    if (!valid_utf8(text, len)) c->bad_utf8++;
    if (c->len + len < sizeof c->text) { memcpy(c->text + c->len, text, len); c->len += len; c->text[c->len] = 0; }
    c->calls++;
    return c->stop_after && c->calls >= c->stop_after;
}

static void test_generation(void) {
    const char *path = "../shared/models/stories260K-f32.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) { printf("SKIP: %s absent: generation tests not run\n", path); return; }
    fclose(f);
    tbc_error err;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.error = &err;
    tbc_model *m;
    CHECK(tbc_model_open(&md, &m) == TBC_OK, "open");
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = m;
    sd.n_ctx = 128;
    sd.n_threads = 2;
    sd.error = &err;
    tbc_session *s;
    CHECK(tbc_session_create(&sd, &s) == TBC_OK, "session");
    tbc_generate_desc gd;
    memset(&gd, 0, sizeof gd);
    gd.prompt = "Once upon a time";
    gd.max_tokens = 20;
    gd.on_text = on_text;
    collect c;
    memset(&c, 0, sizeof c);
    gd.user = &c;
    tbc_generate_result r;
    CHECK(tbc_session_generate(s, &gd, &r) == TBC_OK, "greedy generation");
    CHECK(!strcmp(c.text, ", there was a little girl named Lily. She loved to play outsid"), "greedy text: '%s'", c.text);
    CHECK(r.n_prompt == 5 && r.n_generated == 20 && r.stop_reason == TBC_STOP_MAX_TOKENS, "counts and stop reason");

    // stop string: cut before it, not included, reason STRING; also when it spans tokens ("girl" = " g" "ir" "l")
    const char *stops[] = {"girl"};
    gd.stop = stops;
    gd.n_stop = 1;
    memset(&c, 0, sizeof c);
    tbc_session_generate(s, &gd, &r);
    CHECK(!strcmp(c.text, ", there was a little "), "text stops before a stop string that spans tokens: '%s'", c.text);
    CHECK(r.stop_reason == TBC_STOP_STRING, "stop reason is the stop string");
    gd.n_stop = 0;

    // the callback can stop generation
    memset(&c, 0, sizeof c);
    c.stop_after = 3;
    tbc_session_generate(s, &gd, &r);
    CHECK(c.calls == 3 && r.stop_reason == TBC_STOP_CALLBACK, "callback stop after 3 pieces");

    // sampling with a seed is reproducible through the whole engine
    gd.sampling.temperature = 1.0f;
    gd.sampling.seed = 1234;
    gd.max_tokens = 30;
    collect c1, c2;
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    gd.user = &c1;
    tbc_session_generate(s, &gd, &r);
    gd.user = &c2;
    tbc_session_generate(s, &gd, &r);
    CHECK(c1.len > 0 && !strcmp(c1.text, c2.text), "same seed, same text");
    CHECK(!c1.bad_utf8 && !c2.bad_utf8, "streamed pieces are whole UTF-8 characters");

    // running out of context: the prompt alone too long is an error; generation stops at the end of the window
    char longp[2048] = "";
    for (int i = 0; i < 150; i++) strcat(longp, "Lily ");
    gd.prompt = longp;
    memset(&c, 0, sizeof c);
    gd.user = &c;
    tbc_result gr = tbc_session_generate(s, &gd, &r);
    CHECK(gr == TBC_ERR_CONTEXT_FULL, "a prompt longer than the context is an error (%s)", tbc_result_str(gr));
    CHECK(strstr(tbc_session_last_error(s)->message, "do not fit") != NULL, "and says so: %s", tbc_session_last_error(s)->message);
    gd.prompt = "Once upon a time";
    gd.max_tokens = 0;
    gd.sampling.temperature = 0;
    gr = tbc_session_generate(s, &gd, &r);
    CHECK(gr == TBC_OK && (r.stop_reason == TBC_STOP_CONTEXT || r.stop_reason == TBC_STOP_EOG), "unbounded generation ends (reason %d)", r.stop_reason);
    int32_t tok = 5;
    tbc_session_rewind(s, 0);
    for (int i = 0; i < 128; i++) tbc_session_eval(s, &tok, 1);
    CHECK(tbc_session_eval(s, &tok, 1) == TBC_ERR_CONTEXT_FULL, "eval past the context is TBC_ERR_CONTEXT_FULL");
    int32_t badtok = 100000;
    tbc_session_rewind(s, 0);
    CHECK(tbc_session_eval(s, &badtok, 1) == TBC_ERR_INVALID_ARGUMENT, "a token id outside the vocabulary is refused");
    tbc_session_destroy(s);
    tbc_model_destroy(m);
}

// ---- chat templates through the model ----
static void test_chat_through_model(void) {
    const char *path = "../shared/vocab/ggml-vocab-qwen2.gguf";
    FILE *f = fopen(path, "rb");
    if (!f) { printf("SKIP: %s absent: chat template through a model not tested\n", path); return; }
    fclose(f);
    tbc_error err;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    md.vocab_only = 1;
    md.error = &err;
    tbc_model *m;
    CHECK(tbc_model_open(&md, &m) == TBC_OK, "open the qwen2 vocabulary: %s", err.message);
    if (!m) return;
    CHECK(!strcmp(tbc_chat_template_name(m), "chatml"), "qwen2's template is recognised as ChatML (%s)", tbc_chat_template_name(m));
    tbc_chat_message msgs[2] = {{"system", "Be brief."}, {"user", "Hi!"}};
    char buf[256];
    size_t len = 0;
    CHECK(tbc_chat_apply(m, msgs, 2, 1, buf, sizeof buf, &len) == TBC_OK, "apply");
    const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    CHECK(!strcmp(buf, want) && len == strlen(want), "rendered ChatML: '%s'", buf);
    CHECK(tbc_chat_apply(m, msgs, 2, 1, buf, 10, &len) == TBC_ERR_BUFFER_TOO_SMALL && len == strlen(want), "too small a buffer says how much is needed");
    int32_t ids[64];
    int64_t n = 0;
    tbc_tokenize(m, want, strlen(want), TBC_TOKENIZE_PARSE_SPECIAL, ids, 64, &n);
    CHECK(n > 3 && ids[0] == tbc_token_find(m, "<|im_start|>") && ids[0] >= 0, "the template's markers become control tokens");
    CHECK(tbc_token_is_eog(m, tbc_token_find(m, "<|im_end|>")), "<|im_end|> ends generation");
    tbc_chat_message bad[1] = {{"wizard", "x"}};
    CHECK(tbc_chat_apply(m, bad, 1, 1, buf, sizeof buf, &len) == TBC_ERR_TEMPLATE, "an unknown role is refused");
    tbc_model_destroy(m);
    md.path = "../shared/models/stories260K-f32.gguf";
    if (tbc_model_open(&md, &m) == TBC_OK) {
        CHECK(!strcmp(tbc_chat_template_name(m), "chatml (fallback)"), "no template: ChatML fallback");
        tbc_model_destroy(m);
    }
}

int main(void) {
    test_chat_through_model();
    test_sampler();
    test_stream_helpers();
    test_generation();
    printf("test_generate: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
