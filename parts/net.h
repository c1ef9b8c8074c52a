// >>transport
// A link is an ordered, reliable channel of framed, authenticated messages to one peer. Frame:
//   header (32 bytes, little-endian): magic "TBCM", u16 protocol version, u16 type, u32 payload length,
//   u32 flags, u64 sequence number, u64 reserved (0)
//   payload (length bytes)
//   tag (32 bytes): HMAC-SHA-256 under the link's session key over header and payload (zeros before the
//   handshake has derived a key; such frames are only accepted during the handshake)
// Every length is checked against the limit of its message type before anything is read into memory.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <arpa/inet.h>

#define TBC__PROTOCOL_VERSION 1
#define TBC__FRAME_MAGIC 0x4d434254u  // "TBCM"
#define TBC__FRAME_HEADER 32
#define TBC__FRAME_TAG 32

typedef struct tbc__link {
    int fd;
    char peer[160];                // "host:port" for messages
    uint8_t key[32];
    int keyed;                     // frames carry and need a valid tag
    uint64_t send_seq, recv_seq;
    uint64_t bytes_sent, bytes_received;
    double last_recv;              // tbc__now() of the last frame received
} tbc__link;

// Splits "host:port" / "[v6]:port" into host and port; 0 on success.
static int tbc__split_hostport(const char *s, char *host, size_t host_cap, char *port, size_t port_cap) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        if ((size_t)(close - s - 1) >= host_cap) return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= host_cap) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    if (!colon[1] || strlen(colon + 1) >= port_cap) return -1;
    for (const char *p = colon + 1; *p; p++) if (*p < '0' || *p > '9') return -1;
    if (atoi(colon + 1) < 0 || atoi(colon + 1) > 65535) return -1;
    strcpy(port, colon + 1);
    return 0;
}

// A socket that is not inherited by child processes (SOCK_CLOEXEC is not portable to macOS).
static int tbc__socket(int family, int type, int proto) {
    int fd = socket(family, type, proto);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static int tbc__set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL, 0);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void tbc__sock_tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#ifdef SO_NOSIGPIPE
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
}

// Whether addr (a numeric host) is a loopback address.
static int tbc__is_loopback_host(const char *host) {
    return !strcmp(host, "localhost") || !strncmp(host, "127.", 4) || !strcmp(host, "::1");
}

static tbc_result tbc__sock_listen(const char *addr, int *out_fd, int *out_port, tbc_error *err) {
    char host[256], port[16];
    if (tbc__split_hostport(addr, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "listen address '%s' is not HOST:PORT", addr);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (gai != 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot resolve '%s': %s", addr, gai_strerror(gai));
        return TBC_ERR_NETWORK;
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = tbc__socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot listen on %s: %s", addr, strerror(e));
        return TBC_ERR_NETWORK;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int p = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        p = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    *out_fd = fd;
    if (out_port) *out_port = p;
    return TBC_OK;
}

// Connects with a deadline (seconds from now).
static tbc_result tbc__sock_connect(const char *addr, double timeout, int *out_fd, tbc_error *err) {
    char host[256], port[16];
    if (tbc__split_hostport(addr, host, sizeof host, port, sizeof port) != 0) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "peer address '%s' is not HOST:PORT", addr);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot resolve peer '%s': %s", addr, gai_strerror(gai));
        return TBC_ERR_NETWORK;
    }
    int fd = -1, e = ETIMEDOUT;
    double deadline = tbc__now() + timeout;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = tbc__socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) { e = errno; continue; }
        tbc__set_nonblock(fd);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) { e = errno; close(fd); fd = -1; continue; }
            struct pollfd pf;
            pf.fd = fd;
            pf.events = POLLOUT;
            int left = (int)((deadline - tbc__now()) * 1000);
            int r = left > 0 ? poll(&pf, 1, left) : 0;
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
                e = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
                close(fd);
                fd = -1;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tbc__error_set(err, TBC_ERR_NETWORK, "cannot connect to %s: %s", addr, strerror(e));
        return TBC_ERR_NETWORK;
    }
    tbc__sock_tune(fd);
    *out_fd = fd;
    return TBC_OK;
}

// Reads or writes exactly n bytes before the deadline (absolute tbc__now() seconds; <= 0: none).
static tbc_result tbc__io_all(tbc__link *l, int writing, struct iovec *iov, int iovcnt, double deadline,
                              tbc_error *err) {
    while (iovcnt > 0) {
        ssize_t r;
        if (writing) {
            struct msghdr mh;
            memset(&mh, 0, sizeof mh);
            mh.msg_iov = iov;
            mh.msg_iovlen = (size_t)iovcnt;
#ifdef MSG_NOSIGNAL
            r = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
#else
            r = sendmsg(l->fd, &mh, 0);
#endif
        } else {
            r = readv(l->fd, iov, iovcnt);
        }
        if (r > 0) {
            if (writing) l->bytes_sent += (uint64_t)r;
            else l->bytes_received += (uint64_t)r;
            size_t left = (size_t)r;
            while (iovcnt > 0 && left >= iov->iov_len) { left -= iov->iov_len; iov++; iovcnt--; }
            if (iovcnt > 0) { iov->iov_base = (uint8_t *)iov->iov_base + left; iov->iov_len -= left; }
            continue;
        }
        if (r == 0 && !writing) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "peer %s closed the connection", l->peer);
            return TBC_ERR_PEER_LOST;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "connection to %s failed: %s", l->peer, strerror(errno));
            return TBC_ERR_PEER_LOST;
        }
        struct pollfd pf;
        pf.fd = l->fd;
        pf.events = writing ? POLLOUT : POLLIN;
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - tbc__now();
            if (left <= 0) {
                tbc__error_set(err, TBC_ERR_TIMEOUT, "peer %s did not %s in time", l->peer,
                               writing ? "take our data" : "answer");
                return TBC_ERR_TIMEOUT;
            }
            ms = (int)(left * 1000) + 1;
        }
        int pr = poll(&pf, 1, ms);
        if (pr < 0 && errno != EINTR) {
            tbc__error_set(err, TBC_ERR_PEER_LOST, "poll on %s failed: %s", l->peer, strerror(errno));
            return TBC_ERR_PEER_LOST;
        }
    }
    return TBC_OK;
}

static void tbc__put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void tbc__put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void tbc__put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t tbc__get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t tbc__get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static uint64_t tbc__get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

static void tbc__frame_tag(const tbc__link *l, const uint8_t *hdr, const void *payload, size_t n, uint8_t tag[32]) {
    if (!l->keyed) { memset(tag, 0, 32); return; }
    tbc__hmac h;
    tbc__hmac_init(&h, l->key, 32);
    tbc__hmac_update(&h, hdr, TBC__FRAME_HEADER);
    if (n) tbc__hmac_update(&h, payload, n);
    tbc__hmac_final(&h, tag);
}

// Sends one message; payload may be split in two parts (a small head and a large body) to avoid copies.
static tbc_result tbc__link_send2(tbc__link *l, uint16_t type, const void *a, size_t na, const void *b, size_t nb,
                                  double deadline, tbc_error *err) {
    uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG];
    uint64_t n = (uint64_t)na + nb;
    if (n > UINT32_MAX) {
        tbc__error_set(err, TBC_ERR_INVALID_ARGUMENT, "message of %llu bytes is too large", (unsigned long long)n);
        return TBC_ERR_INVALID_ARGUMENT;
    }
    tbc__put_u32(hdr, TBC__FRAME_MAGIC);
    tbc__put_u16(hdr + 4, TBC__PROTOCOL_VERSION);
    tbc__put_u16(hdr + 6, type);
    tbc__put_u32(hdr + 8, (uint32_t)n);
    tbc__put_u32(hdr + 12, 0);
    tbc__put_u64(hdr + 16, l->send_seq++);
    tbc__put_u64(hdr + 24, 0);
    if (l->keyed) {
        tbc__hmac h;
        tbc__hmac_init(&h, l->key, 32);
        tbc__hmac_update(&h, hdr, TBC__FRAME_HEADER);
        if (na) tbc__hmac_update(&h, a, na);
        if (nb) tbc__hmac_update(&h, b, nb);
        tbc__hmac_final(&h, tag);
    } else {
        memset(tag, 0, sizeof tag);
    }
    struct iovec iov[4];
    int c = 0;
    iov[c].iov_base = hdr; iov[c].iov_len = sizeof hdr; c++;
    if (na) { iov[c].iov_base = (void *)a; iov[c].iov_len = na; c++; }
    if (nb) { iov[c].iov_base = (void *)b; iov[c].iov_len = nb; c++; }
    iov[c].iov_base = tag; iov[c].iov_len = sizeof tag; c++;
    return tbc__io_all(l, 1, iov, c, deadline, err);
}

static tbc_result tbc__link_send(tbc__link *l, uint16_t type, const void *p, size_t n, double deadline, tbc_error *err) {
    return tbc__link_send2(l, type, p, n, NULL, 0, deadline, err);
}

// Receives one message into buf (cap bytes). The type must be one of the allowed (bitmask of 1 << type); its
// length at most max_len (and cap). Checks magic, version, sequence and tag.
static tbc_result tbc__link_recv(tbc__link *l, uint64_t allowed, uint16_t *type, void *buf, size_t cap,
                                 uint32_t *len, double deadline, tbc_error *err) {
    uint8_t hdr[TBC__FRAME_HEADER], tag[TBC__FRAME_TAG], want[TBC__FRAME_TAG];
    struct iovec iov;
    iov.iov_base = hdr;
    iov.iov_len = sizeof hdr;
    tbc_result rc = tbc__io_all(l, 0, &iov, 1, deadline, err);
    if (rc) return rc;
    uint32_t magic = tbc__get_u32(hdr), n = tbc__get_u32(hdr + 8);
    uint16_t ver = tbc__get_u16(hdr + 4), t = tbc__get_u16(hdr + 6);
    uint64_t seq = tbc__get_u64(hdr + 16);
    if (magic != TBC__FRAME_MAGIC) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent a frame with bad magic 0x%08x (not a tbcluster node?)",
                       l->peer, magic);
        return TBC_ERR_PROTOCOL;
    }
    if (ver != TBC__PROTOCOL_VERSION) {
        tbc__error_set(err, TBC_ERR_VERSION, "peer %s speaks protocol version %u, this node speaks %u", l->peer,
                       ver, TBC__PROTOCOL_VERSION);
        return TBC_ERR_VERSION;
    }
    if (t >= 64 || !((allowed >> t) & 1)) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent message type %u, which is not expected now", l->peer, t);
        return TBC_ERR_PROTOCOL;
    }
    if (n > cap) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent a %u-byte message of type %u (limit %zu)", l->peer, n, t,
                       cap);
        return TBC_ERR_PROTOCOL;
    }
    if (seq != l->recv_seq) {
        tbc__error_set(err, TBC_ERR_PROTOCOL, "peer %s sent message %llu out of order (expected %llu): replayed or "
                       "reordered", l->peer, (unsigned long long)seq, (unsigned long long)l->recv_seq);
        return TBC_ERR_PROTOCOL;
    }
    struct iovec v2[2];
    int c = 0;
    if (n) { v2[c].iov_base = buf; v2[c].iov_len = n; c++; }
    v2[c].iov_base = tag; v2[c].iov_len = sizeof tag; c++;
    if ((rc = tbc__io_all(l, 0, v2, c, deadline, err))) return rc;
    tbc__frame_tag(l, hdr, buf, n, want);
    if (!tbc__ct_equal(tag, want, sizeof tag)) {
        tbc__error_set(err, TBC_ERR_AUTH, "message %llu from %s failed authentication (wrong key, or tampered)",
                       (unsigned long long)seq, l->peer);
        return TBC_ERR_AUTH;
    }
    l->recv_seq++;
    l->last_recv = tbc__now();
    *type = t;
    *len = n;
    return TBC_OK;
}

static void tbc__link_close(tbc__link *l) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}

// A bounds-checked builder for payloads.
typedef struct tbc__wbuf {
    uint8_t *p;
    size_t n, cap;
    int failed;
} tbc__wbuf;

static void tbc__wb_put(tbc__wbuf *w, const void *x, size_t n) {
    if (w->failed) return;
    if (w->n + n > w->cap) {
        size_t nc = (w->n + n) * 2 + 64;
        uint8_t *np = (uint8_t *)TBC_REALLOC(w->p, nc);
        if (!np) { w->failed = 1; return; }
        w->p = np;
        w->cap = nc;
    }
    memcpy(w->p + w->n, x, n);
    w->n += n;
}
static void tbc__wb_u32(tbc__wbuf *w, uint32_t v) { uint8_t b[4]; tbc__put_u32(b, v); tbc__wb_put(w, b, 4); }
static void tbc__wb_u64(tbc__wbuf *w, uint64_t v) { uint8_t b[8]; tbc__put_u64(b, v); tbc__wb_put(w, b, 8); }
static void tbc__wb_str(tbc__wbuf *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    tbc__wb_u32(w, (uint32_t)n);
    tbc__wb_put(w, s, n);
}
