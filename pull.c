// pull.c - download a GGUF model file over HTTP(S): resumable, retried, and verified before it is used.
//
//   build/pull SOURCE [-o DIR|FILE.gguf] [--retries N] [--timeout S]
//
// SOURCE is an http(s) URL or a Hugging Face file, ORG/REPO[@REVISION]/PATH/FILE.gguf, which is fetched from
// $HF_ENDPOINT/ORG/REPO/resolve/REVISION/PATH/FILE.gguf (default https://huggingface.co, revision main), with
// $HF_TOKEN as a bearer token if set. The bytes go to FILE.part; a later run resumes it with a Range request. Once
// complete, the size is checked against the server's (Content-Length, Content-Range, X-Linked-Size), the SHA-256
// against the one Hugging Face publishes (X-Linked-Etag, or an ETag that is a SHA-256), and the header by opening the
// file with tbc_model_open; only then is FILE.part renamed to FILE. A file failing a check becomes FILE.bad.
// HTTP is libcurl's (Debian's libcurl4-openssl-dev); SHA-256 is below.
#define TBC_IMPLEMENTATION
#include "tbcluster.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f) {
    fputs("usage: pull SOURCE [-o DIR|FILE.gguf] [--retries N] [--timeout S]\n"
          "\n"
          "Downloads a GGUF model file, resuming an interrupted download, and checks its size, SHA-256 and header.\n"
          "\n"
          "  SOURCE       an http(s):// URL, or a Hugging Face file ORG/REPO[@REVISION]/PATH/FILE.gguf, fetched from\n"
          "               $HF_ENDPOINT (default https://huggingface.co) at REVISION (default main); $HF_TOKEN, if\n"
          "               set, is sent as a bearer token (gated and private models)\n"
          "  -o PATH      a directory to save into (default: the current one), or a file name ending in .gguf\n"
          "  --retries N  retries in a row after a dropped connection or a server error (default 5; waits 1, 2, 4...\n"
          "               seconds; an attempt that received data resets the count)\n"
          "  --timeout S  a transfer slower than 1 KiB/s for S seconds counts as dropped (default 30)\n"
          "\n"
          "The download goes to FILE.part and is renamed to FILE once verified; run the same command again to resume\n"
          "an interrupted one. A file that fails a check is kept as FILE.bad. Exit status: 0 ok, 1 failure, 2 usage.\n",
          f);
}

// The SHA-256 of a whole file as 64 lowercase hex digits (tbcluster.h's, with the CPU's SHA instructions); -1
// (errno set) if it cannot be read.
static int sha256_file(const char *path, char hex[65]) {
    static uint8_t buf[1 << 20];
    uint8_t out[32];
    tbc_sha256 c;
    size_t n;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f) return -1;
    if (fstat(fileno(f), &st) == 0 && st.st_size > ((int64_t)4 << 30))  // about a second a GiB: say why we are quiet
        fprintf(stderr, "pull: computing the sha256 of %s (%.1f GiB)\n", path, (double)st.st_size / (1 << 30));
    tbc_sha256_init(&c);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) tbc_sha256_update(&c, buf, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) return -1;
    tbc_sha256_final(&c, out);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", out[i]);
    return 0;
}

// ---- one download ----
typedef struct download {
    const char *url, *part;
    CURL *curl;
    FILE *f;                   // the .part, opened for appending; NULL for a HEAD request
    int64_t have;              // bytes in the .part
    int64_t total;             // expected size, -1 until a server says; kept across attempts
    char sha[65];              // expected SHA-256 ("" unknown), and the header that said so
    const char *sha_from;
    char validator[128];       // a strong ETag of the file, sent as If-Range when resuming
    // the latest response (reset at each status line: redirects come first)
    long status;
    int64_t length, range_start, range_total, linked_size;
    char etag[128];
    int keep;                  // its body: 1 goes to the .part, 0 is a redirect or an error page to drop
    int restart, fatal, write_errno;
    char curl_error[CURL_ERROR_SIZE];
    // progress
    int tty, decile;
    double t_start, t_attempt, t_shown;
    int64_t have_attempt, have_shown;  // .part size when this attempt started, and when last shown
} download;

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) { (void)sig; interrupted = 1; }

// Prints "pull: MESSAGE" on stderr; returns ret, so that errors read `return say(-1, ...)`.
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static int say(int ret, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("pull: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return ret;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
static double mib(int64_t n) { return (double)n / 1048576.0; }

// Copies a 64-hex-digit SHA-256 out of an ETag-style value (W/ prefix and quotes allowed); 0 if it is not one.
static int parse_sha(const char *v, char out[65]) {
    if (!strncmp(v, "W/", 2)) v += 2;
    if (*v == '"') v++;
    if (strspn(v, "0123456789abcdefABCDEF") != 64 || (v[64] && v[64] != '"')) return 0;
    for (int i = 0; i < 64; i++) out[i] = (char)(v[i] >= 'A' && v[i] <= 'F' ? v[i] - 'A' + 'a' : v[i]);
    out[64] = 0;
    return 1;
}

// "bytes START-END/TOTAL" (206) or "bytes */TOTAL" (416); -1 for a part that is absent or "*".
static void parse_range(const char *v, int64_t *start, int64_t *total) {
    const char *slash = strchr(v, '/');
    *start = !strncasecmp(v, "bytes ", 6) && v[6] != '*' ? strtoll(v + 6, NULL, 10) : -1;
    *total = slash && slash[1] != '*' ? strtoll(slash + 1, NULL, 10) : -1;
}

static int truncate_part(download *d) {
    if (fflush(d->f) || ftruncate(fileno(d->f), 0)) {
        d->write_errno = errno;
        return -1;
    }
    d->have = d->have_attempt = 0;
    return 0;
}

// The final response's headers are in: decide what its body is for. Returns 1 (append to the .part), 0 (an error
// page, dropped) or -1 (abort the transfer: d->restart to start over at once, d->fatal to give up).
static int accept_response(download *d) {
    if (d->status != 200 && d->status != 206) return 0;
    int64_t total = d->status == 206 ? d->range_total : d->length >= 0 ? d->length : d->linked_size;
    if (d->status == 200 && d->have > 0) {  // no Range support, or If-Range saw a new version: the whole file
        say(0, "the server sends the whole file, not the rest: starting over");
        if (truncate_part(d)) return -1;
        d->total = -1;
    }
    if (d->status == 206 && (d->range_start != d->have || (total >= 0 && d->total >= 0 && total != d->total))) {
        say(0, "the server resumed at byte %lld of %lld, not at %lld of %lld: starting over",
            (long long)d->range_start, (long long)total, (long long)d->have, (long long)d->total);
        d->restart = 1;
        return -1;
    }
    if (total >= 0 && d->linked_size >= 0 && total != d->linked_size) {
        d->fatal = 1;
        return say(-1, "the server sends %lld bytes but announced %lld (X-Linked-Size)", (long long)total,
                   (long long)d->linked_size);
    }
    if (total >= 0) d->total = total;
    struct statvfs vfs;  // fail now rather than at 97%
    if (d->total > d->have && fstatvfs(fileno(d->f), &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < (uint64_t)(d->total - d->have)) {
        d->fatal = 1;
        return say(-1, "%s needs %.1f MiB more but the disk has %.1f MiB free", d->part, mib(d->total - d->have),
                   mib((int64_t)((uint64_t)vfs.f_bavail * vfs.f_frsize)));
    }
    if (d->etag[0] && strncmp(d->etag, "W/", 2)) snprintf(d->validator, sizeof d->validator, "%s", d->etag);
    return 1;
}

// Sees the headers of every response, redirects included: Hugging Face puts X-Linked-* on its 302.
static size_t on_header(char *p, size_t size, size_t n, void *user) {
    download *d = user;
    char line[512], sha[65];
    size_t len = size * n, m = len < sizeof line ? len : sizeof line - 1;
    memcpy(line, p, m);
    while (m && (line[m - 1] == '\r' || line[m - 1] == '\n')) m--;
    line[m] = 0;
    const char *colon = strchr(line, ':'), *v = colon ? colon + 1 + strspn(colon + 1, " \t") : "";
    size_t name = colon ? (size_t)(colon - line) : 0;
#define IS(h) (name == sizeof h - 1 && !strncasecmp(line, h, name))
    if (!strncmp(line, "HTTP/", 5)) {
        d->status = strtol(line + strcspn(line, " "), NULL, 10);
        d->length = d->range_start = d->range_total = -1;
        d->etag[0] = 0;
        d->keep = 0;
    } else if (!line[0] && d->f && d->status / 100 != 3) {  // the end of the final response's headers
        d->keep = accept_response(d);
        if (d->keep < 0) return 0;  // aborts the transfer
    } else if (IS("content-length")) {
        d->length = strtoll(v, NULL, 10);
    } else if (IS("content-range")) {
        parse_range(v, &d->range_start, &d->range_total);
    } else if (IS("x-linked-size")) {
        d->linked_size = strtoll(v, NULL, 10);
    } else if (IS("etag")) {
        snprintf(d->etag, sizeof d->etag, "%s", v);
        if (!d->sha[0] && parse_sha(v, d->sha)) d->sha_from = "ETag";
    } else if (IS("x-linked-etag") && parse_sha(v, sha) && strcmp(sha, d->sha)) {  // Hugging Face's, preferred
        if (!strcmp(d->sha_from, "X-Linked-Etag") && d->have > 0) {  // a new version since the last attempt
            say(0, "the file changed on the server: starting over");
            d->restart = 1;
            return 0;
        }
        memcpy(d->sha, sha, sizeof sha);
        d->sha_from = "X-Linked-Etag";
    }
#undef IS
    return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    download *d = user;
    size_t len = size * n;
    if (!d->keep) return len;
    if (fwrite(p, 1, len, d->f) != len) {
        d->write_errno = errno;
        return 0;
    }
    d->have += (int64_t)len;
    return len;
}

// A bar redrawn in place on a terminal; otherwise a line every 10% or 5 s, for logs.
static void show_progress(download *d, int last) {
    double t = now(), dt = t - d->t_attempt;
    int known = d->total > 0, decile = known ? (int)(d->have * 10 / d->total) : 0;
    if (!last && t - d->t_shown < (d->tty ? 0.2 : 5.0) && (d->tty || decile == d->decile)) return;
    if (last && !d->tty && d->have == d->have_shown) return;  // that line is out already
    d->t_shown = t;
    d->have_shown = d->have;
    d->decile = decile;
    double rate = dt > 0 ? mib(d->have - d->have_attempt) / dt : 0;
    char bar[48] = "", pct[8] = "", eta[32] = "";
    if (known && d->tty) {
        int fill = d->have < d->total ? (int)(d->have * 20 / d->total) : 20;
        snprintf(bar, sizeof bar, "[%.*s%.*s] ", fill, "####################", 20 - fill, "....................");
    }
    if (known) snprintf(pct, sizeof pct, "%3d%% ", (int)(d->have * 100 / d->total));
    if (known && rate > 0) {
        long s = (long)(mib(d->total - d->have) / rate);
        snprintf(eta, sizeof eta, "  ETA %ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    }
    fprintf(stderr, "%s%s%s%.1f / %.1f MiB  %.1f MiB/s%s%s", d->tty ? "\r" : "", bar, pct, mib(d->have),
            mib(known ? d->total : d->have), rate, eta, !d->tty ? "\n" : last ? "\033[K\n" : "\033[K");
}

static int on_progress(void *user, curl_off_t dl_total, curl_off_t dl_now, curl_off_t ul_total, curl_off_t ul_now) {
    (void)dl_total, (void)dl_now, (void)ul_total, (void)ul_now;
    download *d = user;
    if (d->keep == 1) show_progress(d, 0);
    return interrupted;  // nonzero aborts the transfer
}

enum { DONE, RETRY, FAIL };

static const char *resume_hint(download *d) {
    static char hint[4200];
    snprintf(hint, sizeof hint, "; %s is kept: run the same command again to resume", d->part);
    return d->f && d->have > 0 ? hint : "";
}

static int http_failure(download *d) {
    const char *token = getenv("HF_TOKEN");
    if (d->status == 401 || d->status == 403) {
        say(0, "HTTP %ld for %s: the model is gated or private", d->status, d->url);
        return say(FAIL, token && *token ? "HF_TOKEN was sent: does its account have access? (accept the model's "
                                           "terms on its page)"
                                         : "accept the model's terms on its page and set HF_TOKEN to an access token");
    }
    if (d->status == 404) return say(FAIL, "HTTP 404: no such file: %s", d->url);
    if (d->status == 429 || d->status >= 500) return say(RETRY, "HTTP %ld from the server", d->status);
    return say(FAIL, "HTTP %ld for %s", d->status, d->url);
}

static int curl_failure(download *d, CURLcode rc, const char *detail) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return say(RETRY, "%s: %s (no network, or the server is down?)", d->url, detail);
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return say(RETRY, "connection lost at %.1f MiB: %s", mib(d->have), detail);
    default: return say(FAIL, "%s: %s", d->url, detail);
    }
}

// One request: a HEAD (d->f NULL), or a GET that appends to the .part from where it ends.
static int request(download *d) {
    char auth[1024], range[32], if_range[160];
    struct curl_slist *hdrs = NULL;
    const char *token = getenv("HF_TOKEN");
    if (token && *token) {  // libcurl does not pass a custom Authorization header on to another host (the CDN)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    struct stat st;
    d->have = d->f && fstat(fileno(d->f), &st) == 0 ? (int64_t)st.st_size : 0;
    if (d->have > 0 && d->validator[0]) {  // resume only if the file is the same version (else a 200, whole)
        snprintf(if_range, sizeof if_range, "If-Range: %s", d->validator);
        hdrs = curl_slist_append(hdrs, if_range);
    }
    // CURLOPT_RANGE, not CURLOPT_RESUME_FROM_LARGE: that one fails on a 200, which we can use instead
    snprintf(range, sizeof range, "%lld-", (long long)d->have);
    d->keep = d->restart = d->fatal = d->write_errno = 0;
    d->status = 0;
    d->linked_size = -1;
    d->have_attempt = d->have;
    d->t_attempt = d->t_shown = now();
    d->curl_error[0] = 0;
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(d->curl, CURLOPT_NOBODY, d->f ? 0L : 1L);
    if (d->f) curl_easy_setopt(d->curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(d->curl, CURLOPT_RANGE, d->have > 0 ? range : NULL);
    CURLcode rc = curl_easy_perform(d->curl);
    curl_easy_setopt(d->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (d->keep == 1) show_progress(d, 1);
    if (d->f && fflush(d->f) && !d->write_errno) d->write_errno = errno;  // a full disk may show only now

    if (d->write_errno) return say(FAIL, "cannot write %s: %s%s", d->part, strerror(d->write_errno), resume_hint(d));
    if (rc == CURLE_ABORTED_BY_CALLBACK) return say(FAIL, "interrupted%s", resume_hint(d));
    if (d->restart) return truncate_part(d) ? FAIL : RETRY;
    if (d->fatal) return FAIL;
    if (rc != CURLE_OK) return curl_failure(d, rc, d->curl_error[0] ? d->curl_error : curl_easy_strerror(rc));
    if (d->status == 416 && d->f) {  // the range starts at or past the end: the .part is complete, or too long
        int64_t total = d->range_total >= 0 ? d->range_total : d->total;
        if (total >= 0 && d->have == total) {
            d->total = total;
            return DONE;
        }
        say(0, "%s is longer than the file: starting over", d->part);
        d->restart = 1;
        return truncate_part(d) ? FAIL : RETRY;
    }
    if (d->status != 200 && d->status != 206) return http_failure(d);
    if (!d->f) {
        d->total = d->length >= 0 ? d->length : d->linked_size;
        return DONE;
    }
    if (d->total >= 0 && d->have < d->total)
        return say(RETRY, "the connection ended at %lld of %lld bytes", (long long)d->have, (long long)d->total);
    return DONE;
}

// Requests until done: failures in a row are retried after 1, 2, 4... s, up to `retries` times.
static int fetch(download *d, int retries) {
    for (int failures = 0, restarts = 0;;) {
        int64_t before = d->have;
        int r = request(d);
        if (r != RETRY) return r;
        if (d->restart && ++restarts <= 3) continue;  // no failure, no wait; but a server could make it loop
        if (d->have > before) failures = 0;
        if (++failures > retries)
            return say(FAIL, "giving up after %d %s%s", retries, retries == 1 ? "retry" : "retries", resume_hint(d));
        int wait = failures < 8 ? 1 << (failures - 1) : 128;
        say(0, "retrying in %d s (%d/%d)", wait, failures, retries);
        sleep((unsigned)wait);
        if (interrupted) return say(FAIL, "interrupted%s", resume_hint(d));
    }
}

// Size, SHA-256 and GGUF header of the downloaded file. Returns 0 when all hold.
static int verify(download *d, char hex[65]) {
    struct stat st;
    if (stat(d->part, &st) != 0) return say(-1, "%s: %s", d->part, strerror(errno));
    if (d->total >= 0 && st.st_size != d->total)
        return say(-1, "%s has %lld bytes, the server said %lld", d->part, (long long)st.st_size,
                   (long long)d->total);
    d->total = st.st_size;
    if (sha256_file(d->part, hex) != 0) return say(-1, "%s: %s", d->part, strerror(errno));
    if (!d->sha[0]) say(0, "sha256 not checked: the server publishes none (the size is checked)");
    else if (strcmp(hex, d->sha))
        return say(-1, "sha256 mismatch: the server says %s (%s), the file has %s", d->sha, d->sha_from, hex);
    else say(0, "sha256 ok (%s)", d->sha_from);

    tbc_error err, err_vocab;
    tbc_model *m;
    tbc_model_desc md = {0};
    md.path = d->part;
    md.error = &err;
    if (tbc_model_open(&md, &m) == TBC_OK) {
        tbc_model_info info;
        tbc_model_get_info(m, &info);
        say(0, "GGUF ok: %s '%s', %d layers, %d tokens", info.arch, info.name, info.n_layer, info.n_vocab);
        tbc_model_destroy(m);
        return 0;
    }
    md.vocab_only = 1;  // tokenizer files (ggml-vocab-*.gguf) are GGUF too
    md.error = &err_vocab;
    if (tbc_model_open(&md, &m) == TBC_OK) {
        say(0, "GGUF ok: a vocabulary only (as a model: %s)", err.message);
        tbc_model_destroy(m);
        return 0;
    }
    return say(-1, "%s: %s", d->part, err.message);
}

// The URL and file name for SOURCE; 0 if SOURCE is neither an http(s) URL nor ORG/REPO[@REV]/PATH.
static int resolve(const char *src, char *url, size_t cap, char *name, size_t name_cap) {
    if (!strncmp(src, "https://", 8) || !strncmp(src, "http://", 7)) {
        snprintf(url, cap, "%s", src);
    } else {
        const char *slash = strchr(src, '/'), *path = slash ? strchr(slash + 1, '/') : NULL;  // path: "/PATH"
        if (!path || slash == src || path == slash + 1 || !path[1] || strstr(src, "//")) return 0;
        const char *at = memchr(src, '@', (size_t)(path - src)), *rev = at ? at + 1 : "main";
        int rev_len = at ? (int)(path - rev) : 4, repo_len = (int)((at ? at : path) - src);
        const char *host = getenv("HF_ENDPOINT");
        if (!host || !*host) host = "https://huggingface.co";
        int host_len = (int)strlen(host);
        while (host_len > 0 && host[host_len - 1] == '/') host_len--;
        if (rev_len == 0) return 0;
        snprintf(url, cap, "%.*s/%.*s/resolve/%.*s%s", host_len, host, repo_len, src, rev_len, rev, path);
    }
    const char *scheme = strstr(url, "://"), *p = scheme ? strchr(scheme + 3, '/') : NULL;
    if (!p) return 0;
    const char *end = p + strcspn(p, "?#"), *start = end;
    while (start > p && start[-1] != '/') start--;
    if (start == end || (size_t)(end - start) >= name_cap) return 0;
    snprintf(name, name_cap, "%.*s", (int)(end - start), start);
    return 1;
}

// Whether the file at path is what the server has; NULL if so, else why not (d has the HEAD's answer).
static const char *differs(download *d, const char *path, int64_t size, char hex[65]) {
    if (d->total >= 0 && size != d->total) return "its size differs from the server's";
    if (d->total < 0 && !d->sha[0]) return "the server gives no size or sha256 to check it against";
    if (d->sha[0] && (sha256_file(path, hex) != 0 || strcmp(hex, d->sha))) return "its sha256 differs";
    return NULL;
}

// The one handle every request of this run reuses (and, with it, the connection when the server allows).
static CURL *curl_open(download *d, int timeout) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->curl_error);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tbcluster-pull/1");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // a stalled server becomes a timeout, then a retry
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)timeout);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    return c;
}

int main(int argc, char **argv) {
    const char *source = NULL, *out = ".";
    int retries = 5, timeout = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (a[0] != '-' && !source) {
            source = a;
            continue;
        }
        if (!v) return say(2, "unknown argument or missing value '%s' (see --help)", a);
        i++;
        if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--retries")) retries = atoi(v);
        else if (!strcmp(a, "--timeout")) timeout = atoi(v);
        else return say(2, "unknown argument '%s' (see --help)", a);
    }
    if (!source) {
        usage(stderr);
        return 2;
    }
    if (retries < 0 || retries > 100 || timeout <= 0 || !*out)
        return say(2, "--retries must be 0-100, --timeout positive and -o not empty");
    char url[4096], name[1024], path[4096], part[4200], bad[4200], hex[65];
    if (!resolve(source, url, sizeof url, name, sizeof name))
        return say(2, "'%s' is neither an http(s) URL of a file nor ORG/REPO/FILE.gguf", source);
    size_t out_len = strlen(out);
    if (out_len > 5 && !strcmp(out + out_len - 5, ".gguf")) snprintf(path, sizeof path, "%s", out);
    else snprintf(path, sizeof path, "%s%s%s", out, out[out_len - 1] == '/' ? "" : "/", name);
    snprintf(part, sizeof part, "%s.part", path);
    snprintf(bad, sizeof bad, "%s.bad", path);

    struct sigaction sa;  // Ctrl-C ends the transfer cleanly, with what arrived flushed to the .part
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return say(1, "libcurl did not start");
    download d = {0};
    d.url = url;
    d.part = part;
    d.total = -1;
    d.sha_from = "";
    d.tty = isatty(2);
    d.t_start = now();
    if (!(d.curl = curl_open(&d, timeout))) return say(1, "libcurl did not start");

    int status = 1;
    const char *why;
    struct stat st;
    say(0, "%s -> %s", url, path);
    if (stat(path, &st) == 0) {  // there already: done if the server agrees on the size (and the SHA-256, if known)
        if (fetch(&d, retries) != DONE) goto done;
        if (!(why = differs(&d, path, (int64_t)st.st_size, hex))) {
            say(0, "%s is already complete (%s checked)", path, d.sha[0] ? "size and sha256" : "size");
            status = 0;
            goto done;
        }
        say(0, "%s exists but %s: downloading it again", path, why);
    }
    d.f = fopen(part, "ab");  // appending: the .part may hold the start of the file already
    if (!d.f) {
        say(0, "cannot write %s: %s", part, strerror(errno));
        goto done;
    }
    if (fetch(&d, retries) != DONE) goto done;
    signal(SIGINT, SIG_DFL);  // the .part is complete: stopping now leaves it for the next run to check
    signal(SIGTERM, SIG_DFL);
    int closed = fclose(d.f);
    d.f = NULL;
    if (closed != 0) {
        say(0, "cannot write %s: %s", part, strerror(errno));
        goto done;
    }
    if (verify(&d, hex) != 0) {
        if (rename(part, bad) == 0) say(0, "kept as %s; run again to download it afresh", bad);
        goto done;
    }
    if (rename(part, path) != 0) {
        say(0, "cannot rename %s to %s: %s", part, path, strerror(errno));
        goto done;
    }
    printf("%s: %lld bytes (%.1f MiB), sha256 %s, %.1f s\n", path, (long long)d.total, mib(d.total), hex,
           now() - d.t_start);
    status = 0;
done:
    if (d.f) fclose(d.f);
    if (stat(part, &st) == 0 && st.st_size == 0) remove(part);  // nothing arrived: leave no trace
    curl_easy_cleanup(d.curl);
    curl_global_cleanup();
    return status;
}
