// tokenize - print the token ids of a text with a model's (or a vocabulary-only GGUF's) tokenizer.
//
//   build/tokenize -m MODEL [--bos] [--parse-special] TEXT
//   build/tokenize -m MODEL [--bos] [--parse-special] --file F
//
// TEXT: prints the ids separated by spaces on one line.
// --file F: F holds strings separated by "\n__ggml_vocab_test__\n" (llama.cpp's .inp format); prints one line per
// string in llama.cpp's .out format (each id preceded by a space), so `diff` against a .out file works.
// --bos adds BOS/EOS as the vocabulary asks (add_special); --parse-special turns text like "<|im_start|>" into
// those control tokens. Both are off by default, as in llama.cpp's tokenizer tests.
// Uses only the public API.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: tokenize -m MODEL [--bos] [--parse-special] TEXT\n"
            "       tokenize -m MODEL [--bos] [--parse-special] --file F\n"
            "  -m, --model MODEL   GGUF model or vocabulary-only file\n"
            "  --bos               add BOS/EOS as the vocabulary says (default: none)\n"
            "  --parse-special     read control tokens written in the text (default: plain text)\n"
            "  --file F            strings separated by \"\\n__ggml_vocab_test__\\n\"; one line of ids each\n"
            "  -h, --help          this help\n");
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)malloc(cap);
    while (buf) {
        if (n == cap) {
            char *nb = (char *)realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return NULL; }
    *len = n;
    return buf;
}

// Tokenizes and prints; sep_before: print " id" for each id (the .out format), else "id id".
static int print_ids(const tbc_model *m, const char *text, size_t len, int flags, int sep_before) {
    int64_t n = 0;
    tbc_result r = tbc_tokenize(m, text, len, flags, NULL, 0, &n);
    if (r != TBC_OK && r != TBC_ERR_BUFFER_TOO_SMALL) {
        fprintf(stderr, "tokenize: %s\n", tbc_result_str(r));
        return 0;
    }
    int32_t *ids = (int32_t *)malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!ids) { fprintf(stderr, "tokenize: out of memory\n"); return 0; }
    r = tbc_tokenize(m, text, len, flags, ids, n, &n);
    if (r != TBC_OK) {
        fprintf(stderr, "tokenize: %s\n", tbc_result_str(r));
        free(ids);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) printf(sep_before || i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
    free(ids);
    return 1;
}

int main(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *text = NULL;
    int flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--file")) {
            if (i + 1 >= argc) { fprintf(stderr, "tokenize: %s needs an argument (see --help)\n", a); return 2; }
            if (!strcmp(a, "--file")) file = argv[++i];
            else model = argv[++i];
        } else if (!strcmp(a, "--bos")) {
            flags |= TBC_TOKENIZE_ADD_SPECIAL;
        } else if (!strcmp(a, "--parse-special")) {
            flags |= TBC_TOKENIZE_PARSE_SPECIAL;
        } else if (a[0] == '-' && a[1] != 0 && strcmp(a, "--") != 0) {
            fprintf(stderr, "tokenize: unknown option '%s' (see --help)\n", a);
            return 2;
        } else {
            if (!strcmp(a, "--")) {
                if (i + 1 >= argc) break;
                a = argv[++i];
            }
            if (text) { fprintf(stderr, "tokenize: give one TEXT argument (quote it)\n"); return 2; }
            text = a;
        }
    }
    if (!model) { fprintf(stderr, "tokenize: no model given: use -m MODEL (see --help)\n"); return 2; }
    if (!file == !text) { fprintf(stderr, "tokenize: give either TEXT or --file F (see --help)\n"); return 2; }

    tbc_error err;
    tbc_model_desc d;
    tbc_model *m = NULL;
    memset(&err, 0, sizeof(err));
    memset(&d, 0, sizeof(d));
    d.path = model;
    d.error = &err;
    d.vocab_only = 1;
    if (tbc_model_open(&d, &m) != TBC_OK) {
        fprintf(stderr, "tokenize: %s: %s\n", model, err.message[0] ? err.message : tbc_result_str(err.code));
        return 1;
    }
    int ok = 1;
    if (text) {
        ok = print_ids(m, text, strlen(text), flags, 0);
    } else {
        size_t len = 0;
        char *buf = read_all(file, &len);
        if (!buf) {
            fprintf(stderr, "tokenize: cannot read '%s'\n", file);
            tbc_model_destroy(m);
            return 1;
        }
        static const char sep[] = "\n__ggml_vocab_test__\n";
        size_t pos = 0, sl = sizeof(sep) - 1;
        while (ok && pos < len) {  // as llama.cpp splits: a trailing separator ends the last string
            size_t end = pos;
            while (end < len && !(len - end >= sl && memcmp(buf + end, sep, sl) == 0)) end++;
            ok = print_ids(m, buf + pos, end - pos, flags, 1);
            pos = end < len ? end + sl : len;
        }
        free(buf);
    }
    tbc_model_destroy(m);
    if (fflush(stdout) != 0) { fprintf(stderr, "tokenize: cannot write the output\n"); return 1; }
    return ok ? 0 : 1;
}
