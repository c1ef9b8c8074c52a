// simple.c: the smallest program that embeds tbcluster.h: load a model, stream an answer to stdout.
//   build/examples/simple MODEL.gguf "Once upon a time"
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <string.h>

// Called with each piece of text as it is generated; return nonzero to stop early.
static int print_text(void *user, const char *text, size_t len, int32_t token) {
    (void)user;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: simple MODEL.gguf [PROMPT]\n");
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Once upon a time";

    // 1. Open the model file: checks the header, metadata and tensor directory; reads no weights yet.
    tbc_error err;
    tbc_model_desc md = {0};
    md.path = argv[1];
    md.error = &err;
    tbc_model *model;
    if (tbc_model_open(&md, &model) != TBC_OK) {
        fprintf(stderr, "simple: %s\n", err.message);
        return 1;
    }

    // 2. A session holds this node's share of the weights, the KV cache and the worker threads.
    tbc_session_desc sd = {0};
    sd.model = model;
    sd.error = &err;
    tbc_session *session;
    if (tbc_session_create(&sd, &session) != TBC_OK) {
        fprintf(stderr, "simple: %s\n", err.message);
        tbc_model_destroy(model);
        return 1;
    }

    // 3. Generate: zeroed sampling means greedy; set temperature, top_p... for variety.
    tbc_generate_desc gd = {0};
    gd.prompt = prompt;
    gd.max_tokens = 64;
    gd.on_text = print_text;
    tbc_generate_result res;
    printf("%s", prompt);
    tbc_result r = tbc_session_generate(session, &gd, &res);
    printf("\n");
    if (r != TBC_OK) fprintf(stderr, "simple: %s\n", tbc_session_last_error(session)->message);
    else fprintf(stderr, "[%lld tokens at %.1f tokens/s]\n", (long long)res.n_generated,
                 res.decode_seconds > 0 ? (double)res.n_generated / res.decode_seconds : 0.0);

    tbc_session_destroy(session);
    tbc_model_destroy(model);
    return r == TBC_OK ? 0 : 1;
}
