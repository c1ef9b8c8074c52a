// node: a tbcluster worker. Serves coordinators (generate, server... with --peers) one after another, forever.
//   build/node --listen HOST:PORT [-m MODEL] [--key-file F] [-t N] [--cache-dir DIR] [--insecure]
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int stop_flag;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

static void usage(FILE *f) {
    fprintf(f,
        "usage: node --listen HOST:PORT [options]\n"
        "  -l, --listen HOST:PORT  where coordinators connect (without a key: loopback only, unless --insecure)\n"
        "  -m, --model FILE        the GGUF file, if this machine has it (else shards come over the network)\n"
        "      --key-file F        the cluster key (or the environment variable TBC_CLUSTER_KEY)\n"
        "      --insecure          allow a network address without a key\n"
        "      --transport T       auto (offer RDMA when a device is there) | tcp\n"
        "      --rdma-dev NAME, --rdma-gid N   the RDMA device and GID index (default: the link's address)\n"
        "  -t, --threads N         threads (default: all CPUs)\n"
        "      --cache-dir DIR     where received shards are kept (default: tbc-cache)\n"
        "      --mem-limit BYTES   memory this node offers (e.g. 8G); pipeline shares follow it (default: free memory)\n"
        "      --name NAME         this node's name in logs (default: host name)\n"
        "      --timeout S         seconds before a silent coordinator is dropped (x10 when idle; default 2)\n"
        "  -v, --verbose           debug logging\n"
        "  -h, --help              this text\n");
}

int main(int argc, char **argv) {
    tbc_node_desc d;
    memset(&d, 0, sizeof d);
    char key[4096];
    size_t key_len = 0;
    const char *key_file = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (fprintf(stderr, "node: %s needs a value\n", a), exit(2), ""))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-l") || !strcmp(a, "--listen")) d.listen = NEXT();
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) d.model_path = NEXT();
        else if (!strcmp(a, "--key-file")) key_file = NEXT();
        else if (!strcmp(a, "--insecure")) d.insecure = 1;
        else if (!strcmp(a, "--cache-dir")) d.cache_dir = NEXT();
        else if (!strcmp(a, "--name")) d.name = NEXT();
        else if (!strcmp(a, "--rdma-dev")) d.rdma_dev = NEXT();
        else if (!strcmp(a, "--rdma-gid")) d.rdma_gid = atoi(NEXT()) + 1;
        else if (!strcmp(a, "--transport")) {
            const char *v = NEXT();
            if (!strcmp(v, "auto") || !strcmp(v, "rdma")) d.transport = TBC_TRANSPORT_AUTO;
            else if (!strcmp(v, "tcp")) d.transport = TBC_TRANSPORT_TCP;
            else { fprintf(stderr, "node: --transport expects auto, rdma or tcp, got '%s'\n", v); return 2; }
        }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            const char *v = NEXT();
            d.n_threads = atoi(v);
            if (d.n_threads < 1 || d.n_threads > 256) { fprintf(stderr, "node: --threads expects 1..256, got '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--timeout")) {
            const char *v = NEXT();
            d.timeout = atof(v);
            if (!(d.timeout > 0)) { fprintf(stderr, "node: --timeout expects seconds, got '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--mem-limit")) {
            const char *v = NEXT();
            char *end;
            double x = strtod(v, &end);
            double mult = *end == 'K' || *end == 'k' ? 1024.0 : *end == 'M' || *end == 'm' ? 1048576.0 :
                          *end == 'G' || *end == 'g' ? 1073741824.0 : *end ? -1 : 1;
            if (!(x > 0) || mult < 0 || (*end && end[1])) {
                fprintf(stderr, "node: --mem-limit expects bytes (e.g. 8G, 512M), got '%s'\n", v);
                return 2;
            }
            d.mem_limit = (uint64_t)(x * mult);
        } else { fprintf(stderr, "node: unknown argument '%s' (see --help)\n", a); return 2; }
#undef NEXT
    }
    if (!d.listen) { fprintf(stderr, "node: --listen HOST:PORT is required (see --help)\n"); return 2; }
    tbc_error err;
    if (tbc_cluster_key_load(key_file, key, sizeof key, &key_len, &err) != TBC_OK) {
        fprintf(stderr, "node: %s\n", err.message);
        return 2;
    }
    d.key = key_len ? key : NULL;
    d.key_len = key_len;
    d.logger.fn = tbc_log_stderr;
    d.logger.max_level = verbose ? TBC_LOG_DEBUG : TBC_LOG_INFO;
    d.stop = &stop_flag;
    d.error = &err;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    tbc_result r = tbc_node_serve(&d);
    if (r != TBC_OK) { fprintf(stderr, "node: %s\n", err.message); return 1; }
    return 0;
}
