// Concurrent generations on one session (continuous batching): tbc_session_generate from several threads at once
// gives each the text it gets alone; more callers than sequences wait for one; a prompt that starts like a cached
// one is not read again; the batches really hold several sequences; errors stay with their own call.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

typedef struct run {
    tbc_session *s;
    const char *prompt;
    int max_tokens;
    float temperature;
    uint64_t seed;
    volatile int cancel;
    int use_cancel;
    int meet;      // at the first text, wait (at most 2 s) until another sequence is busy too
    int met;
    int busy_max;  // the most sequences seen busy from this call's callbacks
    char text[2048];
    size_t len;
    tbc_result rc;
    tbc_generate_result res;
} run;

// Polls s every millisecond, for at most ms, until at least `busy` sequences are busy and `waiting` callers wait
// (a loaded machine may take a while to start a thread); raises *seen to each busy count seen. Whether it got there.
static int load_reaches(tbc_session *s, int busy, int waiting, int ms, int *seen) {
    for (int k = 0;; k++) {
        int b = 0, w = 0;
        tbc_session_generation_load(s, &b, &w);
        if (seen && b > *seen) *seen = b;
        if ((b >= busy && w >= waiting) || k >= ms) return b >= busy && w >= waiting;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static int on_text(void *user, const char *text, size_t len, int32_t token) {
    run *r = (run *)user;
    (void)token;
    load_reaches(r->s, r->meet && !r->met ? 2 : 0, 0, 2000, &r->busy_max);
    r->met = 1;
    if (r->len + len < sizeof r->text) {
        memcpy(r->text + r->len, text, len);
        r->len += len;
        r->text[r->len] = 0;
    }
    return 0;
}

static void *run_main(void *arg) {
    run *r = (run *)arg;
    tbc_generate_desc gd;
    memset(&gd, 0, sizeof gd);
    gd.prompt = r->prompt;
    gd.max_tokens = r->max_tokens;
    gd.sampling.temperature = r->temperature;
    gd.sampling.seed = r->seed;
    gd.on_text = on_text;
    gd.user = r;
    if (r->use_cancel) gd.cancel = &r->cancel;
    r->len = 0;
    r->text[0] = 0;
    r->met = 0;
    r->busy_max = 0;
    r->rc = tbc_session_generate(r->s, &gd, &r->res);
    return NULL;
}

// A session of n_seq sequences of n_ctx each (n_batch 0: the default), or NULL.
static tbc_session *open_session(tbc_model *m, int n_seq, int n_ctx, int n_batch, int n_threads) {
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = m;
    sd.n_ctx = n_ctx;
    sd.n_seq = n_seq;
    sd.n_batch = n_batch;
    sd.n_threads = n_threads;
    tbc_session *s = NULL;
    tbc_session_create(&sd, &s);
    return s;
}

static const char *prompts[6] = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                 "One day, a bird", "Tom had a red ball", "The sun was"};

int main(void) {
    const char *path = "../shared/models/stories260K-q8_0.gguf";
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    else {
        printf("SKIP: ../shared absent: a random model made by mkmodel stands in (texts are noise, still compared)\n");
        path = "build/tests/batch-tiny.gguf";
        if (system("build/mkmodel --shape tiny --type q8_0 --seed 3 -o build/tests/batch-tiny.gguf 2>/dev/null") != 0) {
            printf("FAIL: mkmodel\ntest_batch: 0 passed, 1 failed\n");
            return 1;
        }
    }
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = path;
    tbc_model *m = NULL;
    CHECK(tbc_model_open(&md, &m) == TBC_OK, "open %s", path);
    if (!m) { printf("test_batch: %d passed, %d failed\n", passed, failed); return 1; }

    // each prompt alone (greedy, and sampled with a seed), one sequence
    static run alone[6][2];
    tbc_session *one = open_session(m, 1, 256, 0, 2);
    CHECK(one != NULL, "a one-sequence session");
    for (int i = 0; i < 6 && one; i++) {
        for (int k = 0; k < 2; k++) {
            run *r = &alone[i][k];
            r->s = one;
            r->prompt = prompts[i];
            r->max_tokens = 24 + 4 * i;
            r->temperature = k ? 0.8f : 0.0f;
            r->seed = 100 + (uint64_t)i;
            run_main(r);
            CHECK(r->rc == TBC_OK && r->len > 0, "alone: '%s' -> '%s'", prompts[i], r->text);
        }
    }
    // the last prompt again: its cache is reused, the text is the same
    run again = alone[5][1];
    run_main(&again);
    CHECK(again.rc == TBC_OK && again.res.n_cached == again.res.n_prompt - 1, "the same prompt again reads only its last "
          "token (%lld of %lld cached)", (long long)again.res.n_cached, (long long)again.res.n_prompt);
    CHECK(!strcmp(again.text, alone[5][1].text), "and gives the same text");
    tbc_session_destroy(one);

    // 4 sequences, 6 threads at once, each twice (greedy and seeded): every text equals its text alone
    tbc_session *s = open_session(m, 4, 256, 0, 2);
    CHECK(s != NULL && tbc_session_n_seq(s) == 4, "a four-sequence session");
    for (int round = 0; round < 2 && s; round++) {
        static run par[6];
        pthread_t th[6];
        for (int i = 0; i < 6; i++) {
            par[i] = alone[i][round];
            par[i].s = s;
            par[i].meet = 1;
            pthread_create(&th[i], NULL, run_main, &par[i]);
        }
        int busy_seen = 0;
        for (int k = 0; k < 200; k++) {  // while they run: never more than 4 sequences busy
            int busy = 0, waiting = 0;
            tbc_session_generation_load(s, &busy, &waiting);
            if (busy > busy_seen) busy_seen = busy;
            CHECK(busy <= 4, "at most 4 sequences busy (%d)", busy);
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < 6; i++) busy_seen = par[i].busy_max > busy_seen ? par[i].busy_max : busy_seen;
        for (int i = 0; i < 6; i++)
            CHECK(par[i].rc == TBC_OK && !strcmp(par[i].text, alone[i][round].text), "%s, 6 callers on 4 sequences: '%s' "
                  "as alone ('%s' vs '%s')", round ? "sampled" : "greedy", prompts[i], par[i].text, alone[i][round].text);
        CHECK(busy_seen >= 2, "several sequences were busy at once (%d)", busy_seen);
    }
    int busy = -1, waiting = -1;
    if (s) tbc_session_generation_load(s, &busy, &waiting);
    CHECK(busy == 0 && waiting == 0, "afterwards no sequence is busy (%d) and nobody waits (%d)", busy, waiting);

    // errors stay with their call: an empty stop string fails that call only, with its reason in the result
    if (s) {
        tbc_generate_desc gd;
        memset(&gd, 0, sizeof gd);
        const char *stops[1] = {""};
        gd.prompt = "Once";
        gd.stop = stops;
        gd.n_stop = 1;
        tbc_generate_result res;
        CHECK(tbc_session_generate(s, &gd, &res) == TBC_ERR_INVALID_ARGUMENT && strstr(res.error.message, "empty"),
              "a bad request's error is in its result: %s", res.error.message);
        // a prompt longer than the context
        static char longp[8192];
        longp[0] = 0;
        for (int i = 0; i < 300; i++) strcat(longp, "Lily ");
        gd.prompt = longp;
        gd.n_stop = 0;
        CHECK(tbc_session_generate(s, &gd, &res) == TBC_ERR_CONTEXT_FULL && strstr(res.error.message, "do not fit"),
              "a prompt longer than the context: %s", res.error.message);
        run after = alone[2][0];
        after.s = s;
        run_main(&after);
        CHECK(after.rc == TBC_OK && !strcmp(after.text, alone[2][0].text), "the next call works as before");
    }

    // the batched decode API directly: sequences out of range and a full context are refused, nothing evaluated
    if (s) {
        int32_t tok[2] = {1, 2}, seq[2] = {0, 4};
        int64_t p0 = tbc_session_seq_pos(s, 0);
        CHECK(tbc_session_decode(s, tok, seq, 2) == TBC_ERR_INVALID_ARGUMENT, "sequence 4 of 4 is refused");
        CHECK(tbc_session_seq_pos(s, 0) == p0, "and nothing was evaluated");
        CHECK(tbc_session_seq_rewind(s, 1, 0) == TBC_OK && tbc_session_seq_pos(s, 1) == 0, "rewind sequence 1");
        CHECK(tbc_session_seq_rewind(s, 1, 5) == TBC_ERR_INVALID_ARGUMENT, "cannot rewind past its end");
        CHECK(tbc_session_seq_logits(s, 9) == NULL, "no logits for sequence 9");
    }
    tbc_session_destroy(s);

    // cancel: a caller waiting for the only sequence gives up (TBC_ERR_CANCELLED), the one generating stops
    tbc_session *c1 = open_session(m, 1, 4096, 0, 2);
    if (c1) {
        static run longr, waiter;
        memset(&longr, 0, sizeof longr);
        memset(&waiter, 0, sizeof waiter);
        longr.s = waiter.s = c1;
        longr.prompt = waiter.prompt = "Once upon a time";
        longr.max_tokens = 4000;
        longr.temperature = waiter.temperature = 1.0f;
        longr.use_cancel = waiter.use_cancel = 1;
        pthread_t a, b;
        pthread_create(&a, NULL, run_main, &longr);
        load_reaches(c1, 1, 0, 5000, NULL);
        pthread_create(&b, NULL, run_main, &waiter);
        load_reaches(c1, 1, 1, 5000, NULL);
        int busy = 0, waiting = 0;
        tbc_session_generation_load(c1, &busy, &waiting);
        CHECK(busy == 1 && waiting == 1, "one generates, one waits (%d, %d)", busy, waiting);
        waiter.cancel = 1;
        pthread_join(b, NULL);
        CHECK(waiter.rc == TBC_ERR_CANCELLED && waiter.res.n_generated == 0, "the waiting caller gives up: %s",
              waiter.res.error.message);
        longr.cancel = 1;
        pthread_join(a, NULL);
        CHECK(longr.rc == TBC_OK && longr.res.stop_reason == TBC_STOP_CALLBACK && longr.res.n_generated < 4000,
              "the generating one stops (%lld tokens, reason %d)", (long long)longr.res.n_generated,
              (int)longr.res.stop_reason);
        tbc_session_generation_load(c1, &busy, &waiting);
        CHECK(busy == 0 && waiting == 0, "and nothing is left busy or waiting");
        tbc_session_destroy(c1);
    }
    // cancel while a long prompt is read (one row per batch, so thousands of batches): it stops between batches, with
    // part of the prompt read
    tbc_session *c2 = open_session(m, 1, 8192, 1, 1);
    if (c2) {
        static char longp[80000];
        static run pr;
        longp[0] = 0;
        for (int i = 0; i < 1500; i++) strcat(longp, "Lily and Ben ");
        memset(&pr, 0, sizeof pr);
        pr.s = c2;
        pr.prompt = longp;
        pr.max_tokens = 4;
        pr.use_cancel = 1;
        pthread_t a;
        pthread_create(&a, NULL, run_main, &pr);
        for (int k = 0; k < 100000 && __atomic_load_n(&c2->seq_pos[0], __ATOMIC_RELAXED) < 40; k++) {
            struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
        pr.cancel = 1;
        pthread_join(a, NULL);
        printf("  cancelled prompt: %s\n", pr.res.error.message);
        CHECK(pr.rc == TBC_ERR_CANCELLED && pr.res.n_generated == 0 && tbc_session_seq_pos(c2, 0) < pr.res.n_prompt,
              "a long prompt stops between batches: %s (%lld of %lld in the cache)", pr.res.error.message,
              (long long)tbc_session_seq_pos(c2, 0), (long long)pr.res.n_prompt);
        run after = alone[2][0];
        after.s = c2;
        run_main(&after);
        CHECK(after.rc == TBC_OK && !strcmp(after.text, alone[2][0].text), "and the session goes on as before");
        tbc_session_destroy(c2);
    }
    tbc_model_destroy(m);
    printf("test_batch: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
