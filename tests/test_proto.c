// The protocol fuzzer's harness (tests/fuzz_proto.c) run as a plain test, natively and under ASan+UBSan by
// `make test`: every valid session it makes as a seed (workers with and without the model file, coordinators of each
// split, sync and no_local, raw handshakes) must reach its end against the real worker and coordinator code, and the
// inputs in tests/proto-regress/ (made by the harness; each once crashed the library or got a wrong error code:
// NaN activations, EVAL sent to a pipeline worker, a plan asking for more memory than the node offered, a truncated
// plan) must be refused cleanly: the harness traps when a connection is left open, a descriptor leaks, or a failure
// has no code, message and log line.
#include "fuzz_proto.c"

#include <sys/stat.h>

int main(void) {
    int passed = 0, failed = 0;
    unsetenv("TBC_FUZZ_PROTO_SEEDS");  // LLVMFuzzerInitialize would write the seeds and exit
    if (access("../shared/models/stories260K-q8_0.gguf", R_OK) != 0 && access("build/fuzz/proto-model.gguf", R_OK) != 0) {
        printf("SKIP: ../shared absent: the harness runs on a tiny model made by mkmodel\n");
        if (system("mkdir -p build/fuzz && build/mkmodel --shape tiny --type q8_0 --seed 3 -o build/fuzz/proto-model.gguf "
                   "2>/dev/null") != 0) {
            printf("FAIL: mkmodel\ntest_proto: 0 passed, 1 failed\n");
            return 1;
        }
    }
    LLVMFuzzerInitialize(NULL, NULL);
    char dir[128];
    snprintf(dir, sizeof dir, "build/tests/proto-seeds-%d", (int)getpid());
    mkdir(dir, 0755);
    int bad = fz_write_seeds(dir);
    passed += fz_seeds_made - bad;
    failed += bad;
    if (bad) printf("FAIL: %d of %d seed sessions no longer reach their end\n", bad, fz_seeds_made);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    DIR *d = opendir("tests/proto-regress");
    struct dirent *e;
    int n_regress = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "tests/proto-regress/%s", e->d_name);
        FILE *f = fopen(path, "rb");
        uint8_t buf[1 << 16];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        if (!n) { printf("FAIL: cannot read %s\n", path); failed++; continue; }
        LLVMFuzzerTestOneInput(buf, n);  // traps on a violation (the test then fails as a crash)
        printf("  regression input %-16s %5zu bytes: handled\n", e->d_name, n);
        passed++;
        n_regress++;
    }
    if (d) closedir(d);
    if (n_regress == 0) { printf("FAIL: no inputs in tests/proto-regress (run from the repository root)\n"); failed++; }
    printf("test_proto: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
