// server.c - an OpenAI-compatible HTTP server around tbcluster.h: what embedding the library in a program takes.
//
//   build/server -m MODEL [--peers host:port,...] [--key-file F] [--host 127.0.0.1] [--port 8080] [--api-key KEY]
//                [--ctx N] [--parallel N] [--alias NAME] [--queue N] [-t N] [--split S] [--sync T] [--transport T]
//
// Endpoints: POST /v1/chat/completions and /v1/completions (whole, or streamed as server-sent events ending in
// "data: [DONE]"), GET /v1/models[/ID], GET /health, GET /metrics (Prometheus text), GET /cluster (JSON: the nodes,
// what each holds, each link's transport and traffic), GET / (the web page: chat and cluster view).
// HTTP is libmicrohttpd's, JSON is cJSON's (Debian packages); the model, the cluster and generation are tbcluster's.
// Each request runs tbc_session_generate on its own thread: the session decodes up to --parallel of them together
// (continuous batching), further ones wait for a sequence, and past --queue waiting ones get 503 with Retry-After.
// A client that goes away stops its generation and frees its sequence.
#define TBC_IMPLEMENTATION
#include "tbcluster.h"

#include "web_page.h"  // web/index.html as bytes (made by the Makefile)

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BODY_LIMIT (1 << 20)

typedef struct server {
    tbc_model *model;
    tbc_session *session;
    const char *alias;
    const char *api_key;
    int queue_limit, parallel;
    pthread_mutex_t count_mu;
    int waiting;                  // requests generating or waiting for a sequence
    long long requests, tokens;
    double last_ttft, last_tok_s;  // the last request's time to first token and decode speed
    long long per_second[8];       // tokens sampled in each of the last 8 seconds (all requests), for the live speed
    long second[8];
} server;

static server S;
static volatile sig_atomic_t stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

// ---- replies ----
static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", type);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

// OpenAI's error shape: {"error": {"message", "type", "param", "code"}}.
static enum MHD_Result error(struct MHD_Connection *c, unsigned status, const char *type, const char *message) {
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return reply(c, status, "application/json", s);
}

static enum MHD_Result json(struct MHD_Connection *c, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return reply(c, MHD_HTTP_OK, "application/json", s);
}

// ---- a request being generated ----
static void queue_leave(void) {
    pthread_mutex_lock(&S.count_mu);
    S.waiting--;
    pthread_mutex_unlock(&S.count_mu);
}

typedef struct job {
    cJSON *req, *joined;          // the request, and message texts joined from parts
    int chat, stream, include_usage;
    char id[40];
    long created;
    tbc_chat_message *messages;
    size_t n_messages;
    const char *prompt;
    const char *stops[4];
    size_t n_stops;
    tbc_generate_desc gd;
    tbc_generate_result res;
    tbc_result rc;
    // text produced, handed from the generating thread to the connection's thread
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *out;
    size_t out_len, out_cap, sent;
    int done, started, prefilled, sent_role;
    volatile int cancelled;       // the client went away: the library stops (or stops waiting for a sequence)
    int fd;                       // the client's socket: a client gone away stops its generation
    unsigned checks;
    double t0, ttft;
    pthread_t th;
} job;

static void job_append(job *j, const char *s, size_t n) {
    pthread_mutex_lock(&j->mu);
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = (j->out_len + n + 1) * 2;
        char *p = (char *)realloc(j->out, cap);
        if (p) { j->out = p; j->out_cap = cap; }
    }
    if (j->out_len + n + 1 <= j->out_cap) {
        memcpy(j->out + j->out_len, s, n);
        j->out_len += n;
        j->out[j->out_len] = 0;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

// Appends o as one server-sent event ("data: JSON" and a blank line) and frees it.
static void job_send_event(job *j, cJSON *o) {
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) return;
    job_append(j, "data: ", 6);
    job_append(j, t, strlen(t));
    job_append(j, "\n\n", 2);
    free(t);
}

static void add_usage(cJSON *o, const tbc_generate_result *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)r->n_generated);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(r->n_prompt + r->n_generated));
}

// One SSE event (or, whole, nothing: the text is gathered and sent at the end).
static void job_event(job *j, const char *text, size_t len, const char *finish, int usage) {
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", j->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", S.alias);
    if (!usage) {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", 0);
        char *t = (char *)malloc(len + 1);
        if (t) { memcpy(t, text, len); t[len] = 0; }
        if (j->chat) {
            cJSON *d = cJSON_AddObjectToObject(ch, "delta");
            if (!j->sent_role) cJSON_AddStringToObject(d, "role", "assistant");  // the first chunk says who speaks
            j->sent_role = 1;
            if (text) cJSON_AddStringToObject(d, "content", t ? t : "");
        } else {
            cJSON_AddStringToObject(ch, "text", t ? t : "");
        }
        free(t);
        cJSON_AddNullToObject(ch, "logprobs");
        if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
        else cJSON_AddNullToObject(ch, "finish_reason");
        cJSON_AddItemToArray(choices, ch);
    } else {
        add_usage(o, &j->res);
    }
    job_send_event(j, o);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Tokens per second over the last two whole seconds, every request together. Under count_mu.
static double live_speed(void) {
    long t = (long)now();
    long long n = 0;
    for (int i = 0; i < 8; i++) n += S.second[i] >= t - 2 && S.second[i] < t ? S.per_second[i] : 0;
    return (double)n / 2.0;
}

// Each sampled token counts towards the live speed; the first one also means the prompt was read, so a streamed
// answer may now send its status line.
static void on_token(void *user, int32_t token) {
    job *j = (job *)user;
    (void)token;
    long t = (long)now();
    pthread_mutex_lock(&S.count_mu);
    if (S.second[t & 7] != t) { S.second[t & 7] = t; S.per_second[t & 7] = 0; }
    S.per_second[t & 7]++;
    pthread_mutex_unlock(&S.count_mu);
    if (j->prefilled) return;
    pthread_mutex_lock(&j->mu);
    j->prefilled = 1;
    j->ttft = now() - j->t0;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

// Has the client gone? Its end closed: a zero-byte read.
static void check_client(job *j) {
    char b;
    if (j->fd >= 0 && recv(j->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) j->cancelled = 1;
}

// Waits (the connection's thread) until the job is done or, with until_prefilled, until its prompt was read; looks
// at the client every 100 ms meanwhile, so one that leaves while queued or during a long prompt stops it.
static void job_wait(job *j, int until_prefilled) {
    pthread_mutex_lock(&j->mu);
    while (!j->done && !(until_prefilled && j->prefilled)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100000000;
        if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0) check_client(j);
    }
    pthread_mutex_unlock(&j->mu);
}

static int on_text(void *user, const char *text, size_t len, int32_t token) {
    job *j = (job *)user;
    (void)token;
    if ((j->checks++ & 7) == 0) check_client(j);
    if (j->stream) job_event(j, text, len, NULL, 0);
    else job_append(j, text, len);
    return 0;  // a client gone away stops the generation through gd.cancel
}

static const char *finish_reason(tbc_stop_reason r) {
    return r == TBC_STOP_MAX_TOKENS || r == TBC_STOP_CONTEXT ? "length" : "stop";
}

static void *job_main(void *arg) {
    job *j = (job *)arg;
    j->t0 = now();
    j->rc = tbc_session_generate(S.session, &j->gd, &j->res);  // (TBC_ERR_CANCELLED at once if the client left)
    if (j->rc == TBC_OK && j->res.n_generated > 1) {
        pthread_mutex_lock(&S.count_mu);
        S.last_ttft = j->ttft;
        S.last_tok_s = j->res.decode_seconds > 0 ? (double)(j->res.n_generated - 1) / j->res.decode_seconds : 0;
        pthread_mutex_unlock(&S.count_mu);
    }
    if (j->stream && j->rc == TBC_OK) {
        job_event(j, "", 0, finish_reason(j->res.stop_reason), 0);
        if (j->include_usage) job_event(j, NULL, 0, NULL, 1);
        job_append(j, "data: [DONE]\n\n", 14);
    } else if (j->stream && j->prefilled) {  // the status line has gone: the error travels as an event
        cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "message", j->res.error.message);
        cJSON_AddStringToObject(e, "type", "server_error");
        job_send_event(j, o);
    }
    pthread_mutex_lock(&S.count_mu);
    S.tokens += j->res.n_generated;
    pthread_mutex_unlock(&S.count_mu);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static void job_free(job *j) {
    if (j->started) {
        pthread_mutex_lock(&j->mu);
        j->cancelled = 1;
        pthread_mutex_unlock(&j->mu);
        pthread_join(j->th, NULL);
        queue_leave();
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    cJSON_Delete(j->req);
    cJSON_Delete(j->joined);
    free(j->messages);
    free(j->out);
    free(j);
}

// Streamed body: waits (this is the connection's own thread) for text the generating thread appends.
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    job *j = (job *)cls;
    (void)pos;
    pthread_mutex_lock(&j->mu);
    while (j->sent == j->out_len && !j->done) pthread_cond_wait(&j->cv, &j->mu);
    size_t n = j->out_len - j->sent < max ? j->out_len - j->sent : max;
    memcpy(buf, j->out + j->sent, n);
    j->sent += n;
    int end = n == 0 && j->done;
    pthread_mutex_unlock(&j->mu);
    return end ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void stream_free(void *cls) { job_free((job *)cls); }

// Content given as parts ([{"type": "text", "text": ...}, ...]): the texts joined, as a string kept in j->joined.
static cJSON *join_parts(job *j, cJSON *parts) {
    size_t n = 1;
    cJSON *p;
    cJSON_ArrayForEach(p, parts) {
        cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type"), *text = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) return NULL;
        n += strlen(text->valuestring);
    }
    char *all = (char *)calloc(1, n);
    if (!all) return NULL;
    cJSON_ArrayForEach(p, parts) strcat(all, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    cJSON *joined = cJSON_CreateString(all);
    free(all);
    if (!j->joined) j->joined = cJSON_CreateArray();
    if (!joined || !j->joined || !cJSON_AddItemToArray(j->joined, joined)) { cJSON_Delete(joined); return NULL; }
    return joined;
}

// Reads the request's fields into j (the OpenAI names); NULL on success, else what is wrong.
static const char *job_parse(job *j) {
    cJSON *r = j->req, *v;
    if (!cJSON_IsObject(r)) return "the body must be a JSON object";
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "model")) && !cJSON_IsString(v)) return "'model' must be a string";
    if (v && strcmp(v->valuestring, S.alias) != 0) return "unknown model";
    tbc_sampling *sp = &j->gd.sampling;
    sp->temperature = 1.0f;
    sp->top_p = 1.0f;
    sp->repeat_penalty = 1.0f;
    struct { const char *name; float *f; int *i; double lo, hi; } num[] = {
        {"temperature", &sp->temperature, NULL, 0, 2}, {"top_p", &sp->top_p, NULL, 0, 1},
        {"min_p", &sp->min_p, NULL, 0, 1}, {"presence_penalty", &sp->presence_penalty, NULL, -2, 2},
        {"frequency_penalty", &sp->frequency_penalty, NULL, -2, 2}, {"top_k", NULL, &sp->top_k, 0, 1e9},
        {"max_tokens", NULL, &j->gd.max_tokens, 0, 1e9}, {"max_completion_tokens", NULL, &j->gd.max_tokens, 0, 1e9},
    };
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        v = cJSON_GetObjectItemCaseSensitive(r, num[k].name);
        if (!v || cJSON_IsNull(v)) continue;
        if (!cJSON_IsNumber(v) || v->valuedouble < num[k].lo || v->valuedouble > num[k].hi)
            return "a sampling parameter has the wrong type or is out of range";
        if (num[k].f) *num[k].f = (float)v->valuedouble;
        else *num[k].i = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "seed")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= 18446744073709551616.0)
            return "'seed' must be a number from 0 to 2^64 - 1";
        sp->seed = (uint64_t)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "n")) && !cJSON_IsNull(v) && (!cJSON_IsNumber(v) || v->valuedouble != 1))
        return "only 'n': 1 is supported";
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "logprobs")) && !cJSON_IsNull(v) && !cJSON_IsFalse(v))
        return "'logprobs' is not supported";
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) return "'stream' must be a boolean";
        j->stream = cJSON_IsTrue(v);
    }
    cJSON *so = cJSON_GetObjectItemCaseSensitive(r, "stream_options");
    if (so && cJSON_IsObject(so)) j->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    if ((v = cJSON_GetObjectItemCaseSensitive(r, "stop")) && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) j->stops[j->n_stops++] = v->valuestring;
        else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) <= 4) {
            cJSON *s;
            cJSON_ArrayForEach(s, v) {
                if (!cJSON_IsString(s)) return "'stop' must be a string or up to 4 strings";
                j->stops[j->n_stops++] = s->valuestring;
            }
        } else return "'stop' must be a string or up to 4 strings";
    }
    if (j->chat) {
        v = cJSON_GetObjectItemCaseSensitive(r, "messages");
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
        if (n <= 0) return "'messages' must be a non-empty array";
        j->messages = (tbc_chat_message *)calloc((size_t)n, sizeof *j->messages);
        if (!j->messages) return "out of memory";
        cJSON *m;
        cJSON_ArrayForEach(m, v) {
            cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
            if (cJSON_IsArray(content) && !(content = join_parts(j, content))) return "content parts must be text parts";
            if (!cJSON_IsString(role) || !cJSON_IsString(content)) return "each message needs a 'role' and a 'content' string";
            j->messages[j->n_messages].role = role->valuestring;
            j->messages[j->n_messages++].content = content->valuestring;
        }
    } else {
        v = cJSON_GetObjectItemCaseSensitive(r, "prompt");
        if (!cJSON_IsString(v)) return "'prompt' must be a string";
        j->prompt = v->valuestring;
    }
    return NULL;
}

static enum MHD_Result completions(struct MHD_Connection *c, const char *body, size_t n, int chat) {
    job *j = (job *)calloc(1, sizeof *j);
    if (!j) return error(c, 500, "server_error", "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->chat = chat;
    j->req = cJSON_ParseWithLength(body, n);
    if (!j->req) { job_free(j); return error(c, 400, "invalid_request_error", "the body is not valid JSON"); }
    const char *bad = job_parse(j);
    if (bad) {
        unsigned status = strcmp(bad, "unknown model") == 0 ? 404 : 400;
        enum MHD_Result r = error(c, status, "invalid_request_error", bad);
        job_free(j);
        return r;
    }
    pthread_mutex_lock(&S.count_mu);
    int full = S.waiting >= S.parallel + S.queue_limit;
    if (!full) { S.waiting++; S.requests++; }
    pthread_mutex_unlock(&S.count_mu);
    if (full) { job_free(j); return error(c, 503, "server_error", "the server is busy: try again shortly"); }
    unsigned char rnd[8];
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(rnd, 1, sizeof rnd, f) != sizeof rnd) memset(rnd, 7, sizeof rnd);
    if (f) fclose(f);
    snprintf(j->id, sizeof j->id, "%s-%02x%02x%02x%02x%02x%02x%02x%02x", chat ? "chatcmpl" : "cmpl", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    j->created = (long)time(NULL);
    j->gd.messages = j->messages;
    j->gd.n_messages = j->n_messages;
    j->gd.prompt = j->prompt;
    j->gd.stop = j->stops;
    j->gd.n_stop = j->n_stops;
    j->gd.on_text = on_text;
    j->gd.on_token = on_token;
    j->gd.need_room = 1;  // max_tokens beyond the context is the client's error, as OpenAI has it
    j->gd.cancel = &j->cancelled;
    j->gd.user = j;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->started = 1;
    if (pthread_create(&j->th, NULL, job_main, j) != 0) {
        j->started = 0;
        queue_leave();
        job_free(j);
        return error(c, 500, "server_error", "cannot start a thread");
    }
    if (j->stream) {  // the status line waits for the prompt to be read: a prompt that fails gets its own status
        job_wait(j, 1);
        pthread_mutex_lock(&j->mu);
        int streaming = j->prefilled;
        pthread_mutex_unlock(&j->mu);
        if (streaming) {
            struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, j, stream_free);
            MHD_add_response_header(r, "Content-Type", "text/event-stream");
            MHD_add_response_header(r, "Cache-Control", "no-cache");
            enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
            MHD_destroy_response(r);
            return ok;
        }
    }
    job_wait(j, 0);  // whole: wait here (this is the connection's own thread)
    pthread_join(j->th, NULL);
    j->started = 0;
    queue_leave();
    if (j->rc != TBC_OK) {
        unsigned status = j->rc == TBC_ERR_CONTEXT_FULL || j->rc == TBC_ERR_INVALID_ARGUMENT ? 400 : 500;
        enum MHD_Result r = error(c, status, status == 400 ? "invalid_request_error" : "server_error", j->res.error.message);
        job_free(j);
        return r;
    }
    cJSON *o = cJSON_CreateObject(), *choices = cJSON_AddArrayToObject(o, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "object", chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)j->created);
    cJSON_AddStringToObject(o, "model", S.alias);
    cJSON_AddNumberToObject(ch, "index", 0);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(ch, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", j->out ? j->out : "");
    } else {
        cJSON_AddStringToObject(ch, "text", j->out ? j->out : "");
    }
    cJSON_AddNullToObject(ch, "logprobs");
    cJSON_AddStringToObject(ch, "finish_reason", finish_reason(j->res.stop_reason));
    cJSON_AddItemToArray(choices, ch);
    add_usage(o, &j->res);
    job_free(j);
    return json(c, o);
}

// ---- the cluster: who holds what, each link's transport and traffic ----
static tbc_cluster_plan plan;  // (large) filled under plan_mu
static pthread_mutex_t plan_mu = PTHREAD_MUTEX_INITIALIZER;

static enum MHD_Result cluster_view(struct MHD_Connection *c) {
    tbc_cluster_stats st;
    tbc_shard_info own;
    pthread_mutex_lock(&plan_mu);
    tbc_session_get_plan(S.session, &plan);
    tbc_session_cluster_stats(S.session, &st);
    tbc_session_shard_info(S.session, &own);
    cJSON *o = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(o, "nodes");
    cJSON_AddStringToObject(o, "model", S.alias);
    cJSON_AddStringToObject(o, "split", plan.n_nodes == 0 ? "none" : plan.split == TBC_SPLIT_TENSOR ? "tensor" : "pipeline");
    cJSON_AddStringToObject(o, "reason", plan.reason);
    pthread_mutex_lock(&S.count_mu);
    cJSON_AddNumberToObject(o, "tokens_per_second", S.last_tok_s);  // the last request's decode speed
    cJSON_AddNumberToObject(o, "live_tokens_per_second", live_speed());  // every request, the last two seconds
    cJSON_AddNumberToObject(o, "time_to_first_token", S.last_ttft);
    int busy = 0;  // (requests admitted but not generating yet are queued, whether or not they reached the library)
    tbc_session_generation_load(S.session, &busy, NULL);
    cJSON_AddNumberToObject(o, "parallel", S.parallel);
    cJSON_AddNumberToObject(o, "busy", busy);
    cJSON_AddNumberToObject(o, "queued", S.waiting - busy > 0 ? S.waiting - busy : 0);
    pthread_mutex_unlock(&S.count_mu);
    int n = plan.n_nodes ? plan.n_nodes : 1, peer = 0;
    for (int i = 0; i < n; i++) {
        const tbc_plan_node *N = plan.n_nodes ? &plan.nodes[i] : NULL;
        const tbc_shard_info *h = N ? &N->shard : &own;
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "address", N ? N->addr : "local");
        cJSON_AddStringToObject(x, "name", N ? N->name : "");
        cJSON_AddNumberToObject(x, "rank", N ? N->rank : 0);
        cJSON_AddItemToObject(x, "layers", cJSON_CreateIntArray((int[]){h->layer_begin, h->layer_end}, 2));
        cJSON_AddItemToObject(x, "heads", cJSON_CreateIntArray((int[]){h->head_begin, h->head_end}, 2));
        cJSON_AddItemToObject(x, "ffn_rows", cJSON_CreateIntArray((int[]){h->ff_begin, h->ff_end}, 2));
        cJSON_AddNumberToObject(x, "weight_bytes", (double)h->weight_bytes);
        cJSON_AddNumberToObject(x, "kv_bytes", (double)h->kv_bytes);
        if (N) cJSON_AddNumberToObject(x, "memory_offered", (double)N->mem_usable);
        if (N && N->note[0]) cJSON_AddStringToObject(x, "note", N->note);
        if (N && i > 0 && N->rank > 0 && peer < st.n_peers) {  // the peers that run, in rank order
            cJSON_AddStringToObject(x, "transport", st.rdma[peer] ? "rdma" : "tcp");
            cJSON_AddBoolToObject(x, "up", st.up[peer]);
            cJSON_AddNumberToObject(x, "bytes_sent", (double)st.bytes_sent[peer]);
            cJSON_AddNumberToObject(x, "bytes_received", (double)st.bytes_received[peer]);
            cJSON_AddNumberToObject(x, "round_trip_us", N->link_rtt_us);
            peer++;
        }
        cJSON_AddItemToArray(nodes, x);
    }
    pthread_mutex_unlock(&plan_mu);
    return json(c, o);
}

// Prometheus text format.
static enum MHD_Result metrics(struct MHD_Connection *c) {
    tbc_cluster_stats st;
    tbc_session_cluster_stats(S.session, &st);
    size_t cap = 4096 + (size_t)(st.n_peers + 1) * 1000, n = 0;
    char *t = (char *)malloc(cap);
    if (!t) return error(c, 500, "server_error", "out of memory");
    int busy = 0;
    tbc_session_generation_load(S.session, &busy, NULL);
    pthread_mutex_lock(&S.count_mu);
    n += (size_t)snprintf(t + n, cap - n,
                          "# HELP tbc_requests_total Completion requests accepted.\n# TYPE tbc_requests_total counter\n"
                          "tbc_requests_total %lld\n"
                          "# HELP tbc_tokens_generated_total Tokens generated.\n# TYPE tbc_tokens_generated_total counter\n"
                          "tbc_tokens_generated_total %lld\n"
                          "# HELP tbc_requests_waiting Requests generating or queued.\n# TYPE tbc_requests_waiting gauge\n"
                          "tbc_requests_waiting %d\n"
                          "# HELP tbc_sequences_busy Sequences generating (of --parallel).\n# TYPE tbc_sequences_busy gauge\n"
                          "tbc_sequences_busy %d\n"
                          "# HELP tbc_sequences Sequences decoded together (--parallel).\n# TYPE tbc_sequences gauge\n"
                          "tbc_sequences %d\n"
                          "# HELP tbc_decode_tokens_per_second Decode speed of the last request.\n"
                          "# TYPE tbc_decode_tokens_per_second gauge\ntbc_decode_tokens_per_second %.3f\n"
                          "# HELP tbc_time_to_first_token_seconds Time to first token of the last request.\n"
                          "# TYPE tbc_time_to_first_token_seconds gauge\ntbc_time_to_first_token_seconds %.6f\n"
                          "# HELP tbc_live_tokens_per_second Tokens sampled per second, all requests, the last 2 s.\n"
                          "# TYPE tbc_live_tokens_per_second gauge\ntbc_live_tokens_per_second %.3f\n",
                          S.requests, S.tokens, S.waiting, busy, S.parallel, S.last_tok_s, S.last_ttft, live_speed());
    pthread_mutex_unlock(&S.count_mu);
    if (st.n_peers) {
        n += (size_t)snprintf(t + n, cap - n,
                              "# HELP tbc_allreduces_total All-reduces done (tensor split).\n# TYPE tbc_allreduces_total counter\n"
                              "tbc_allreduces_total %llu\n# HELP tbc_communication_seconds_total Time spent exchanging "
                              "activations.\n# TYPE tbc_communication_seconds_total counter\ntbc_communication_seconds_total %.6f\n"
                              "# TYPE tbc_link_bytes_sent_total counter\n# TYPE tbc_link_bytes_received_total counter\n"
                              "# TYPE tbc_link_rdma gauge\n",
                              (unsigned long long)st.allreduces, st.comm_seconds);
        for (int i = 0; i < st.n_peers && i < 64; i++)
            n += (size_t)snprintf(t + n, cap - n, "tbc_link_bytes_sent_total{peer=\"%d\"} %llu\n"
                                  "tbc_link_bytes_received_total{peer=\"%d\"} %llu\ntbc_link_rdma{peer=\"%d\"} %d\n",
                                  i + 1, (unsigned long long)st.bytes_sent[i], i + 1,
                                  (unsigned long long)st.bytes_received[i], i + 1, st.rdma[i]);
    }
    pthread_mutex_lock(&plan_mu);  // each node's share and memory
    tbc_session_get_plan(S.session, &plan);
    if (plan.n_nodes) {
        n += (size_t)snprintf(t + n, cap - n, "# HELP tbc_node_weight_bytes Weights each node holds.\n"
                              "# TYPE tbc_node_weight_bytes gauge\n# TYPE tbc_node_kv_bytes gauge\n"
                              "# TYPE tbc_node_memory_offered_bytes gauge\n");
        for (int i = 0; i < plan.n_nodes && i < 64 && cap - n > 400; i++) {
            const tbc_plan_node *N = &plan.nodes[i];
            n += (size_t)snprintf(t + n, cap - n, "tbc_node_weight_bytes{node=\"%s\",rank=\"%d\"} %llu\n"
                                  "tbc_node_kv_bytes{node=\"%s\",rank=\"%d\"} %llu\n"
                                  "tbc_node_memory_offered_bytes{node=\"%s\",rank=\"%d\"} %llu\n",
                                  N->addr, N->rank, (unsigned long long)N->shard.weight_bytes, N->addr, N->rank,
                                  (unsigned long long)N->shard.kv_bytes, N->addr, N->rank,
                                  (unsigned long long)N->mem_usable);
        }
    }
    pthread_mutex_unlock(&plan_mu);
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", t);
}

// ---- routing ----
typedef struct body { char *p; size_t n; int too_big; } body;

static int authorized(struct MHD_Connection *c) {
    if (!S.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    size_t kl = strlen(S.api_key);
    if (!h || strncmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != kl) return 0;
    unsigned char diff = 0;  // constant time in the key's length
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(h[7 + i] ^ S.api_key[i]);
    return diff == 0;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *data, size_t *data_size, void **con_cls) {
    (void)cls;
    (void)version;
    body *b = (body *)*con_cls;
    if (!b) {  // first call: headers only
        b = (body *)calloc(1, sizeof *b);
        if (!b) return MHD_NO;
        *con_cls = b;
        return MHD_YES;
    }
    if (*data_size) {  // body arriving
        if (b->n + *data_size > BODY_LIMIT) b->too_big = 1;
        else {
            char *p = (char *)realloc(b->p, b->n + *data_size + 1);
            if (!p) b->too_big = 1;
            else { b->p = p; memcpy(b->p + b->n, data, *data_size); b->n += *data_size; b->p[b->n] = 0; }
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (!strcmp(url, "/") && !strcmp(method, "GET")) {  // the page asks for the API key itself, if one is set
        struct MHD_Response *r = MHD_create_response_from_buffer(sizeof web_page, (void *)web_page, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
        MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self' 'unsafe-inline'");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    if (!strcmp(url, "/health") && !strcmp(method, "GET")) {  // open to load balancers and probes
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        return json(c, o);
    }
    if (!strcmp(url, "/favicon.ico")) return reply(c, 204, "text/plain", strdup(""));
    if (!authorized(c)) return error(c, 401, "invalid_request_error", "missing or wrong API key (Authorization: Bearer)");
    if (!strncmp(url, "/v1/models", 10) && !strcmp(method, "GET")) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "id", S.alias);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "tbcluster");
        if (url[10] == '/' && !strcmp(url + 11, S.alias)) return json(c, m);  // GET /v1/models/ID
        if (url[10]) {
            cJSON_Delete(m);
            return error(c, 404, "invalid_request_error", "unknown model");
        }
        cJSON *o = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(o, "data");
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddItemToArray(d, m);
        return json(c, o);
    }
    if (!strcmp(url, "/metrics") && !strcmp(method, "GET")) return metrics(c);
    if (!strcmp(url, "/cluster") && !strcmp(method, "GET")) return cluster_view(c);
    int chat = !strcmp(url, "/v1/chat/completions");
    if (chat || !strcmp(url, "/v1/completions")) {
        if (strcmp(method, "POST")) return error(c, 405, "invalid_request_error", "use POST");
        if (b->too_big) return error(c, 413, "invalid_request_error", "the body is larger than 1 MiB");
        return completions(c, b->p ? b->p : "", b->n, chat);
    }
    return error(c, 404, "invalid_request_error", "no such endpoint");
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    body *b = (body *)*con_cls;
    if (b) { free(b->p); free(b); }
    *con_cls = NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: server -m MODEL [--peers host:port,...] [--key-file F] [--host 127.0.0.1] [--port 8080]\n"
               "              [--api-key KEY] [--ctx N] [--parallel N] [--alias NAME] [--queue N] [-t N]\n"
               "              [--split auto|tensor|pipeline] [--sync f32|q8_0] [--transport auto|rdma|tcp]\n"
               "Endpoints: POST /v1/chat/completions, /v1/completions; GET /v1/models, /health, /metrics, /cluster,\n"
               "and / (a chat page with a live view of the cluster).\n"
               "--ctx N       context per sequence (default: the model's, at most 4096)\n"
               "--parallel N  sequences decoded together in one forward pass (default 1); each has its own --ctx\n"
               "--queue N     requests that may wait for a sequence (default 16); more get 503 with Retry-After\n"
               "--port 0      any free port: the one taken is printed ('server: listening on http://HOST:PORT')\n"
               "--api-key (or TBC_API_KEY): clients send 'Authorization: Bearer KEY'.\n");
}

// A whole number in [lo, hi] for option a, else a message and 0.
static int int_arg(const char *a, const char *v, long lo, long hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "server: %s expects a whole number from %ld to %ld, got '%s'\n", a, lo, hi, v);
        return 0;
    }
    *out = (int)x;
    return 1;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *host = "127.0.0.1", *key_file = NULL;
    int port = 8080, n_ctx = 0, threads = 0;
    static char key[4096];
    tbc_cluster_desc cd;
    memset(&cd, 0, sizeof cd);
    S.alias = NULL;
    S.queue_limit = 16;
    S.parallel = 1;
    S.api_key = getenv("TBC_API_KEY") && getenv("TBC_API_KEY")[0] ? getenv("TBC_API_KEY") : NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!v) { fprintf(stderr, "server: unknown argument or missing value '%s' (see --help)\n", a); return 2; }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--peers")) cd.peers = v;
        else if (!strcmp(a, "--key-file")) key_file = v;
        else if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) { if (!int_arg(a, v, 0, 65535, &port)) return 2; }
        else if (!strcmp(a, "--api-key")) S.api_key = v;
        else if (!strcmp(a, "--ctx")) { if (!int_arg(a, v, 1, 1 << 24, &n_ctx)) return 2; }
        else if (!strcmp(a, "--alias")) S.alias = v;
        else if (!strcmp(a, "--queue")) { if (!int_arg(a, v, 0, 100000, &S.queue_limit)) return 2; }
        else if (!strcmp(a, "--parallel")) { if (!int_arg(a, v, 1, TBC_MAX_SEQ, &S.parallel)) return 2; }
        else if (!strcmp(a, "-t")) { if (!int_arg(a, v, 1, 256, &threads)) return 2; }
        else if (!strcmp(a, "--split")) cd.split = !strcmp(v, "tensor") ? TBC_SPLIT_TENSOR : !strcmp(v, "pipeline") ? TBC_SPLIT_PIPELINE : TBC_SPLIT_AUTO;
        else if (!strcmp(a, "--sync")) cd.sync = !strcmp(v, "q8_0") ? TBC_SYNC_Q8_0 : TBC_SYNC_F32;
        else if (!strcmp(a, "--transport")) cd.transport = !strcmp(v, "rdma") ? TBC_TRANSPORT_RDMA : !strcmp(v, "tcp") ? TBC_TRANSPORT_TCP : TBC_TRANSPORT_AUTO;
        else { fprintf(stderr, "server: unknown argument '%s' (see --help)\n", a); return 2; }
    }
    if (!model_path) { fprintf(stderr, "server: -m MODEL is required (see --help)\n"); return 2; }
    tbc_error err;
    size_t key_len = 0;
    if (cd.peers && tbc_cluster_key_load(key_file, key, sizeof key, &key_len, &err) != TBC_OK) {
        fprintf(stderr, "server: %s\n", err.message);
        return 2;
    }
    cd.key = key_len ? key : NULL;
    cd.key_len = key_len;
    tbc_model_desc md;
    memset(&md, 0, sizeof md);
    md.path = model_path;
    md.error = &err;
    md.logger.fn = tbc_log_stderr;
    md.logger.max_level = TBC_LOG_INFO;
    if (tbc_model_open(&md, &S.model) != TBC_OK) { fprintf(stderr, "server: %s: %s\n", model_path, err.message); return 1; }
    if (!S.alias) {
        const char *slash = strrchr(model_path, '/');
        S.alias = slash ? slash + 1 : model_path;
    }
    tbc_session_desc sd;
    memset(&sd, 0, sizeof sd);
    sd.model = S.model;
    sd.n_ctx = n_ctx;
    sd.n_seq = S.parallel;
    sd.n_threads = threads;
    sd.cluster = cd.peers ? &cd : NULL;
    sd.logger = md.logger;
    sd.error = &err;
    if (tbc_session_create(&sd, &S.session) != TBC_OK) {
        fprintf(stderr, "server: %s\n", err.message);
        tbc_model_destroy(S.model);
        return 1;
    }
    pthread_mutex_init(&S.count_mu, NULL);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) { fprintf(stderr, "server: --host must be an IPv4 address\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    // A thread per connection: a streamed answer's reader may wait for the next token. Slow or half-sent requests
    // are dropped after 30 s without holding the session.
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                            MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL, handle, NULL,
                                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                            MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_END);
    if (!d) { fprintf(stderr, "server: cannot listen on %s:%d\n", host, port); return 1; }
    const union MHD_DaemonInfo *bound = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    if (bound && bound->port) port = bound->port;  // --port 0: the one the system chose
    fprintf(stderr, "server: listening on http://%s:%d (model '%s')\n", host, port, S.alias);
    while (!stop_flag) usleep(100000);
    MHD_stop_daemon(d);
    tbc_session_destroy(S.session);
    tbc_model_destroy(S.model);
    return 0;
}
