// fuzz_gguf: libFuzzer target for the GGUF reader, built and run by `make fuzz` (clang -fsanitize=fuzzer,address,
// undefined). Each input goes two ways:
//   1. tbc__gguf_parse on the bytes in memory; when it parses, every key and tensor is looked up again by name,
//      the typed getters are called on each key, and the first and last byte of every tensor's data are read,
//      so ASan sees any offset the parser let through wrongly. Then tbc__gguf_free.
//   2. the same bytes in a memfd, opened with the public tbc_model_open (mmap, architecture and tokenizer checks),
//      as a vocabulary-only file or as a model (chosen by the input's size, so the choice is stable per input).
// Build with -DFUZZ_GGUF_PARSER_ONLY to skip path 2.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#if !defined(FUZZ_GGUF_PARSER_ONLY)
#include <sys/mman.h>
#endif

static volatile uint8_t fuzz_sink;  // keeps the reads of tensor bytes from being optimised away

static void exercise_parsed(const tbc__gguf *g) {
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const tbc__kv *kv = &g->kv[i];
        // A key that parsed must be found again, and at the same index (names are unique).
        if (tbc__gguf_find_key(g, kv->key_z) != (int64_t)i) __builtin_trap();
        int64_t iv;
        double fv;
        tbc__str sv;
        const tbc__kv *arr;
        tbc_error err;
        (void)tbc__gguf_get_int(g, kv->key_z, &iv, &err);
        (void)tbc__gguf_get_float(g, kv->key_z, &fv, &err);
        if (tbc__gguf_get_str(g, kv->key_z, &sv, &err) == 1 && sv.n) fuzz_sink ^= (uint8_t)sv.p[sv.n - 1];
        if (tbc__gguf_get_arr(g, kv->key_z, -1, &arr, &err) == 1 && arr->bytes) fuzz_sink ^= arr->data[arr->bytes - 1];
        if (kv->bytes) fuzz_sink ^= kv->data[kv->bytes - 1];
        if (kv->strs)
            for (uint64_t j = 0; j < kv->count; j++)
                if (kv->strs[j].n) fuzz_sink ^= (uint8_t)kv->strs[j].p[kv->strs[j].n - 1];
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const tbc__tensor *t = &g->t[i];
        if (tbc__gguf_find_tensor(g, t->name_z) != (int64_t)i) __builtin_trap();
        if (t->bytes) fuzz_sink ^= (uint8_t)(t->data[0] ^ t->data[t->bytes - 1]);
    }
    // Lookups of names that are usually absent, and of the ones the model loader asks for.
    static const char *const probes[] = {"general.architecture", "general.alignment", "tokenizer.ggml.tokens",
                                         "llama.block_count", "token_embd.weight", "output.weight", "", "x"};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        int64_t iv;
        (void)tbc__gguf_find_key(g, probes[i]);
        (void)tbc__gguf_find_tensor(g, probes[i]);
        (void)tbc__gguf_get_int(g, probes[i], &iv, NULL);
    }
}

#if !defined(FUZZ_GGUF_PARSER_ONLY)
static void exercise_model_open(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
        if (fd < 0) return;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0) return;
    size_t done = 0;
    while (done < size) {
        ssize_t w = pwrite(fd, data + done, size - done, (off_t)done);
        if (w <= 0) return;
        done += (size_t)w;
    }
    tbc_error err;
    memset(&err, 0, sizeof err);
    tbc_model_desc d;
    memset(&d, 0, sizeof d);
    d.path = path;
    d.error = &err;
    d.vocab_only = (int)(size & 1);
    tbc_model *m = NULL;
    if (tbc_model_open(&d, &m) == TBC_OK) {
        tbc_model_info info;
        tbc_model_get_info(m, &info);
        int64_t n = tbc_model_meta_count(m);
        for (int64_t i = 0; i < n; i++) {
            const char *key = tbc_model_meta_key(m, i);
            if (!key || tbc_model_meta_find(m, key) != i) __builtin_trap();
        }
        int64_t nt = tbc_model_tensor_count(m);
        for (int64_t i = 0; i < nt; i++) {
            int64_t ne[4];
            int nd;
            (void)tbc_model_tensor_type(m, i, ne, &nd);
        }
        tbc_model_destroy(m);
    } else if (m != NULL || err.message[0] == '\0') {
        __builtin_trap();  // a failed open leaves *out alone and says why
    }
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tbc__gguf g;
    tbc_error err;
    memset(&err, 0, sizeof err);
    tbc_result rc = tbc__gguf_parse(&g, data, (uint64_t)size, &err);
    if (rc == TBC_OK) {
        exercise_parsed(&g);
        tbc__gguf_free(&g);
    } else if (err.code != rc || err.message[0] == '\0' || g.kv != NULL || g.t != NULL) {
        __builtin_trap();  // an error has a matching code, a message, and leaves nothing allocated
    }
#if !defined(FUZZ_GGUF_PARSER_ONLY)
    exercise_model_open(data, size);
#endif
    return 0;
}
