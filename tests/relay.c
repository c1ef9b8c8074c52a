// relay: a TCP relay the network tests put between a coordinator and a node, since these kernels have no netem.
// Each accepted connection is forwarded to --to; every chunk read is held for --delay-us before it is written on
// (order kept, both directions independent: one poll loop with due times, no sleeps). On command it stalls (stops
// forwarding, every socket stays open), cuts (closes every connection with a reset) or resumes.
//
//   build/tests/relay --listen HOST:PORT --to HOST:PORT [--delay-us N]
//
//   kill -USR1 PID   stall        kill -USR2 PID   cut        kill -HUP PID   resume
//
// Logs "relay: listening on HOST:PORT (port N)" to stderr, like build/node, and a line for each connection and
// command. A cut does not stall: the next connection is served. Upstream connects block (the tests' links are local).
#define _GNU_SOURCE  // ppoll: sub-millisecond waits on Linux
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_CONNS 64
#define READ_SIZE 65536
#define MAX_QUEUED (8u << 20)  // bytes held per direction before the relay stops reading that side

typedef struct chunk { struct chunk *next; int64_t due; size_t len, off; char data[]; } chunk;
typedef struct direction { chunk *head, *tail; size_t queued; int eof, shut; } direction;
// fd[0] the accepted client, fd[1] upstream; d[i] carries what fd[i] sends to fd[1 - i]. fd[0] < 0: a free slot.
typedef struct conn { int fd[2]; direction d[2]; } conn;

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig) {
    char c = sig == SIGUSR1 ? 's' : sig == SIGUSR2 ? 'c' : 'r';
    int saved = errno;
    if (write(signal_pipe[1], &c, 1) < 0) {}  // the pipe is non-blocking: a full pipe already holds a wake-up
    errno = saved;
}

static int64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

// Waits for events, or timeout_us (< 0: forever), at microsecond resolution where the system has ppoll.
static int wait_events(struct pollfd *p, nfds_t n, int64_t timeout_us) {
#ifdef __linux__
    struct timespec ts = {(time_t)(timeout_us / 1000000), (long)(timeout_us % 1000000) * 1000};
    return ppoll(p, n, timeout_us < 0 ? NULL : &ts, NULL);
#else
    return poll(p, n, timeout_us < 0 ? -1 : (int)((timeout_us + 999) / 1000));
#endif
}

// "host:port" (the last colon splits, so "[::1]:80" and "::1:80" work) -> addresses; NULL on failure, logged.
static struct addrinfo *resolve(const char *hostport, int passive) {
    char host[256];
    const char *colon = strrchr(hostport, ':');
    size_t n = colon ? (size_t)(colon - hostport) : 0;
    if (!colon || n >= sizeof host) { fprintf(stderr, "relay: '%s' is not HOST:PORT\n", hostport); return NULL; }
    memcpy(host, hostport, n);
    host[n] = 0;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') { memmove(host, host + 1, n - 2); host[n - 2] = 0; }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int e = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (e) { fprintf(stderr, "relay: %s: %s\n", hostport, gai_strerror(e)); return NULL; }
    return res;
}

static void set_options(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // a delayed relay must not add Nagle's delay too
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

// Closes both sides; with reset, SO_LINGER 0 makes each close send RST instead of FIN.
static void conn_close(conn *c, int reset) {
    for (int i = 0; i < 2; i++) {
        if (reset) {
            struct linger lg = {1, 0};
            setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(c->fd[i]);
        for (chunk *k = c->d[i].head, *next; k; k = next) { next = k->next; free(k); }
    }
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
}

// Reads what fd[i] sent into d[i], due after the delay. Returns 0 when the connection failed.
static int pump_in(conn *c, int i, int64_t delay_us) {
    static char buf[READ_SIZE];
    ssize_t n = read(c->fd[i], buf, sizeof buf);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    direction *d = &c->d[i];
    if (n == 0) { d->eof = 1; return 1; }
    chunk *k = (chunk *)malloc(sizeof *k + (size_t)n);
    if (!k) { fprintf(stderr, "relay: out of memory\n"); return 0; }
    memcpy(k->data, buf, (size_t)n);
    k->next = NULL;
    k->due = now_us() + delay_us;
    k->len = (size_t)n;
    k->off = 0;
    if (d->tail) d->tail->next = k; else d->head = k;
    d->tail = k;
    d->queued += (size_t)n;
    return 1;
}

// Writes the chunks of d[1 - i] that are due to fd[i]. Returns 0 when the connection failed.
static int pump_out(conn *c, int i, int64_t now) {
    direction *d = &c->d[1 - i];
    while (d->head && d->head->due <= now) {
        chunk *k = d->head;
        ssize_t n = write(c->fd[i], k->data + k->off, k->len - k->off);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        k->off += (size_t)n;
        d->queued -= (size_t)n;
        if (k->off < k->len) return 1;
        d->head = k->next;
        if (!d->head) d->tail = NULL;
        free(k);
    }
    return 1;
}

static void accept_one(int lfd, const struct addrinfo *to, const char *to_name, conn *conns) {
    int cfd = accept(lfd, NULL, NULL);
    if (cfd < 0) return;
    conn *c = NULL;
    for (int k = 0; k < MAX_CONNS && !c; k++) if (conns[k].fd[0] < 0) c = &conns[k];
    int ufd = c ? socket(to->ai_family, SOCK_STREAM, 0) : -1;
    if (ufd < 0 || connect(ufd, to->ai_addr, to->ai_addrlen) < 0) {
        fprintf(stderr, "relay: cannot forward a connection to %s: %s\n", to_name,
                c ? strerror(errno) : "too many connections");
        struct linger lg = {1, 0};
        setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(cfd);
        if (ufd >= 0) close(ufd);
        return;
    }
    set_options(cfd);
    set_options(ufd);
    c->fd[0] = cfd;
    c->fd[1] = ufd;
    fprintf(stderr, "relay: connection %d forwarded to %s\n", (int)(c - conns), to_name);
}

int main(int argc, char **argv) {
    const char *listen_at = NULL, *to_name = NULL;
    long delay_us = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--listen") && v) listen_at = argv[++i];
        else if (!strcmp(argv[i], "--to") && v) to_name = argv[++i];
        else if (!strcmp(argv[i], "--delay-us") && v) {
            char *end;
            delay_us = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i]) delay_us = -1;
        }
        else { listen_at = NULL; break; }
    }
    if (!listen_at || !to_name || delay_us < 0 || delay_us > 10000000) {
        fprintf(stderr, "usage: relay --listen HOST:PORT --to HOST:PORT [--delay-us N (0..10000000)]\n"
                        "  signals: SIGUSR1 stall, SIGUSR2 cut (RST every connection), SIGHUP resume\n");
        return 2;
    }
    struct addrinfo *la = resolve(listen_at, 1), *to = resolve(to_name, 0);
    if (!la || !to) return 1;
    int lfd = socket(la->ai_family, SOCK_STREAM, 0), one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, la->ai_addr, la->ai_addrlen) < 0 || listen(lfd, 16) < 0) {
        fprintf(stderr, "relay: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    int port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                              : ((struct sockaddr_in *)&sa)->sin_port);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);

    if (pipe(signal_pipe) < 0) { perror("relay: pipe"); return 1; }
    fcntl(signal_pipe[0], F_SETFL, O_NONBLOCK);
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_signal;
    sigaction(SIGUSR1, &act, NULL);
    sigaction(SIGUSR2, &act, NULL);
    sigaction(SIGHUP, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
#ifdef __linux__
    prctl(PR_SET_TIMERSLACK, 1000UL);  // wake within ~1 us of a due time, not the default 50 us
#endif
    fprintf(stderr, "relay: listening on %s (port %d), forwarding to %s with %ld us delay\n", listen_at, port, to_name,
            delay_us);

    conn conns[MAX_CONNS];
    for (int k = 0; k < MAX_CONNS; k++) { memset(&conns[k], 0, sizeof conns[k]); conns[k].fd[0] = conns[k].fd[1] = -1; }
    struct pollfd pfd[2 + 2 * MAX_CONNS];
    int stalled = 0;
    for (;;) {
        // What to wait for: a stalled relay watches only its signals (not even errors, which would wake it forever).
        int64_t now = now_us(), wait = -1;
        pfd[0] = (struct pollfd){signal_pipe[0], POLLIN, 0};
        pfd[1] = (struct pollfd){stalled ? -1 : lfd, POLLIN, 0};
        for (int k = 0; k < MAX_CONNS; k++) {
            for (int i = 0; i < 2; i++) {
                conn *c = &conns[k];
                struct pollfd *p = &pfd[2 + 2 * k + i];
                // A side with nothing left to read or write is left out: its hang-up would wake the loop forever.
                int idle = c->d[i].eof && c->d[1 - i].shut;
                *p = (struct pollfd){stalled || idle ? -1 : c->fd[i], 0, 0};
                if (p->fd < 0) continue;
                if (!c->d[i].eof && c->d[i].queued < MAX_QUEUED) p->events |= POLLIN;
                const chunk *h = c->d[1 - i].head;
                if (h && h->due <= now) p->events |= POLLOUT;
                else if (h && (wait < 0 || h->due - now < wait)) wait = h->due - now;
            }
        }
        if (wait_events(pfd, 2 + 2 * MAX_CONNS, wait) < 0 && errno != EINTR) { perror("relay: poll"); return 1; }

        char cmd[16];
        ssize_t nc = read(signal_pipe[0], cmd, sizeof cmd);
        int cut = 0;
        for (ssize_t j = 0; j < nc; j++) {
            if (cmd[j] == 's') { stalled = 1; fprintf(stderr, "relay: stalled\n"); }
            else if (cmd[j] == 'r') { stalled = 0; fprintf(stderr, "relay: resumed\n"); }
            else {
                int n = 0;
                for (int k = 0; k < MAX_CONNS; k++) if (conns[k].fd[0] >= 0) { conn_close(&conns[k], 1); n++; }
                fprintf(stderr, "relay: cut %d connection%s\n", n, n == 1 ? "" : "s");
                cut = 1;
            }
        }
        if (stalled || cut) continue;  // after a cut, this round's events may belong to closed sockets
        if (pfd[1].revents & POLLIN) accept_one(lfd, to, to_name, conns);
        now = now_us();
        for (int k = 0; k < MAX_CONNS; k++) {
            conn *c = &conns[k];
            int ok = 1;
            for (int i = 0; i < 2 && ok && c->fd[0] >= 0; i++) {
                const struct pollfd *p = &pfd[2 + 2 * k + i];
                if (p->fd != c->fd[i] || !p->revents) continue;  // a connection accepted in this round has no events yet
                if ((p->events & POLLIN) && (p->revents & (POLLIN | POLLHUP | POLLERR))) ok = pump_in(c, i, delay_us);
                else if (p->revents & (POLLHUP | POLLERR)) {
                    int e = 0;
                    socklen_t el = sizeof e;
                    getsockopt(c->fd[i], SOL_SOCKET, SO_ERROR, &e, &el);
                    errno = e ? e : ECONNRESET;
                    ok = 0;
                }
                if (ok && (p->revents & POLLOUT)) ok = pump_out(c, i, now);
            }
            if (!ok) {
                fprintf(stderr, "relay: connection %d failed: %s; reset both sides\n", k, strerror(errno));
                conn_close(c, 1);
            }
            if (c->fd[0] < 0) continue;
            // An end of stream is passed on once everything before it was written; both ends passed: done.
            for (int i = 0; i < 2; i++) {
                if (c->d[i].eof && !c->d[i].head && !c->d[i].shut) { shutdown(c->fd[1 - i], SHUT_WR); c->d[i].shut = 1; }
            }
            if (c->d[0].shut && c->d[1].shut) { fprintf(stderr, "relay: connection %d closed\n", k); conn_close(c, 0); }
        }
    }
}
