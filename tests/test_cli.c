// The programs' interfaces, as users and scripts rely on them: --help, one clear line on stderr and a non-zero
// exit for bad arguments and bad files, and the documented output formats. Runs the binaries in build/.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"

typedef struct run { int status; char out[65536]; char err[4096]; } run;

// Runs cmd with stdout and stderr captured (stderr through a temp file).
static void sh(run *r, const char *cmd) {
    char full[2048];
    snprintf(full, sizeof full, "%s 2>build/tests/cli-stderr.txt", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(r->out, 1, sizeof r->out - 1, p) : 0;
    r->out[n] = 0;
    int st = p ? pclose(p) : -1;
    r->status = st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen("build/tests/cli-stderr.txt", "r");
    n = e ? fread(r->err, 1, sizeof r->err - 1, e) : 0;
    r->err[n] = 0;
    if (e) fclose(e);
}

static int lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static int have(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

int main(void) {
    static run r;
    static const char *progs[] = {"generate", "tokenize", "mkmodel", "bench"};
    for (int i = 0; i < 4; i++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "build/%s --help", progs[i]);
        sh(&r, cmd);
        CHECK(r.status == 0 && strstr(r.out, "usage:"), "%s --help prints usage and exits 0", progs[i]);
        snprintf(cmd, sizeof cmd, "build/%s --no-such-flag", progs[i]);
        sh(&r, cmd);
        CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, progs[i]), "%s: a bad flag gives one line on stderr (%d: %s)", progs[i], r.status, r.err);
        if (i != 2) {
            snprintf(cmd, sizeof cmd, "build/%s -m /nonexistent/model.gguf", progs[i]);
            if (i == 1) strcat(cmd, " hello");
            sh(&r, cmd);
            CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, "/nonexistent/model.gguf"), "%s: a missing file is named on one line (%s)", progs[i], r.err);
        }
    }
    sh(&r, "build/generate -m tests/test_cli.c");
    CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, "magic"), "generate: a non-GGUF file: %s", r.err);
    sh(&r, "build/generate -m x.gguf --temp hot");
    CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, "--temp"), "generate: a bad number names its flag: %s", r.err);
    sh(&r, "build/mkmodel --shape no-such-model --type q4_0 -o build/tests/x.gguf");
    CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, "no-such-model"), "mkmodel: an unknown shape: %s", r.err);
    sh(&r, "build/mkmodel --shape tiny --type q9_9 -o build/tests/x.gguf");
    CHECK(r.status != 0 && lines(r.err) == 1 && strstr(r.err, "q9_9"), "mkmodel: an unknown type: %s", r.err);

    // mkmodel -> generate --json -> tokenize, end to end on a small random model
    sh(&r, "build/mkmodel --shape tiny --type q8_0 --seed 5 -o build/tests/cli-tiny.gguf");
    CHECK(r.status == 0 && have("build/tests/cli-tiny.gguf") && (strstr(r.err, "RANDOM") || strstr(r.err, "random")), "mkmodel writes a model and says it is random");
    sh(&r, "build/generate -m build/tests/cli-tiny.gguf -p 'Hello world' -n 8 --temp 0 --json -t 1");
    CHECK(r.status == 0 && r.out[0] == '{' && strstr(r.out, "\"prompt_ids\":[") && strstr(r.out, "\"top_logits\":[[") &&
          strstr(r.out, "\"ids\":[") && strstr(r.out, "\"text\":\"") && strstr(r.out, "\"prefill_tok_s\":") &&
          strstr(r.out, "\"decode_tok_s\":") && lines(r.out) == 1, "generate --json prints one object with every field: %s", r.out);
    char first[65536];
    strcpy(first, r.out);
    sh(&r, "build/generate -m build/tests/cli-tiny.gguf -p 'Hello world' -n 8 --temp 0.9 --seed 77 --json -t 2");
    char again[65536];
    strcpy(again, r.out);
    sh(&r, "build/generate -m build/tests/cli-tiny.gguf -p 'Hello world' -n 8 --temp 0.9 --seed 77 --json -t 1");
    CHECK(strstr(again, "\"ids\":[") && !strncmp(strstr(again, "\"ids\":["), strstr(r.out, "\"ids\":["), 40), "a seed gives the same ids with 1 or 2 threads");
    (void)first;
    sh(&r, "build/tokenize -m build/tests/cli-tiny.gguf 'Hello world'");
    CHECK(r.status == 0 && r.out[0] >= '0' && r.out[0] <= '9', "tokenize prints ids: %s", r.out);
    if (have("../shared/vocab/ggml-vocab-llama-spm.gguf")) {
        sh(&r, "build/tokenize -m ../shared/vocab/ggml-vocab-llama-spm.gguf --bos 'Hello world'");
        CHECK(r.status == 0 && !strcmp(r.out, "1 15043 3186\n"), "tokenize --bos with the Llama vocabulary: '%s'", r.out);
        sh(&r, "build/tokenize -m ../shared/vocab/ggml-vocab-llama-spm.gguf --file ../shared/vocab/ggml-vocab-llama-spm.gguf.inp > build/tests/cli-spm.out && cmp -s build/tests/cli-spm.out ../shared/vocab/ggml-vocab-llama-spm.gguf.out && echo same");
        CHECK(!strcmp(r.out, "same\n"), "tokenize --file reproduces llama.cpp's .out file");
    } else {
        printf("SKIP: ../shared/vocab absent: tokenizer CLI checks against llama.cpp not run\n");
    }
    sh(&r, "build/bench -m build/tests/cli-tiny.gguf -t 1 -p 8 -n 4 -r 1");
    CHECK(r.status == 0 && strstr(r.out, "prefill") && strstr(r.out, "decode") && strstr(r.out, "GB/s") && strstr(r.out, "ratio"), "bench prints its figures");
    remove("build/tests/cli-tiny.gguf");
    remove("build/tests/cli-spm.out");
    printf("test_cli: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
