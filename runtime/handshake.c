/* handshake.c — the transport's listener and control connections, and the authenticated
 * handshake that runs on each before any UCX endpoint exists (see transport.h, auth.h).
 *
 * The client (the higher rank) connects to the server's "host:port" and they exchange:
 *   1. C -> S  hello_c                     (64 bytes: magic, version, rank, the rank it wants,
 *                                            nranks, status 0, model hash, 32-byte nonce)
 *   2. S -> C  hello_s, mac1               mac1 = MAC("... server", hello_c, hello_s)
 *   3. C -> S  mac2, len, worker address   mac2 = MAC("... client", hello_c, hello_s, len, address)
 *   4. S -> C  len, worker address, mac3   mac3 = MAC("... server address", hello_c, hello_s, len, address)
 *   5. C -> S  mac4                        mac4 = MAC("... client ready", hello_c, hello_s)
 * Both nonces are fresh, so each MAC answers a challenge: 1-2 proves the server holds the key,
 * 2-3 the client. Each side makes its UCX endpoint before its last message (the server before 4,
 * the client before 5) and counts the peer connected only after it: when either may start
 * sending and finish, the other is already attached to its shared memory. hello_s carries a status: 0, or why the server refuses (then it closes). Every
 * field is little-endian. The tag masks of the session are MACs of the two hellos.
 *
 * Everything is non-blocking: the open loop and, after open, the waits of transport.c call
 * pippy_tr_handshakes, which accepts, reads, writes and advances every connection as far as
 * its bytes allow. An incoming connection gets at most min(timeout, HS_IDLE_S) to authenticate
 * and there are at most MAX_PENDING at once (the oldest of those that proved least makes room,
 * see server_victim), so nothing a stranger does holds up the job. */
#define _GNU_SOURCE /* accept4 */
#include "transport_int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HS_MAGIC 0x41595050u /* "PPYA" */

enum { ST_OK, ST_BUSY, ST_NOT_ME, ST_UNEXPECTED, ST_DUPLICATE, ST_NRANKS, ST_MODEL, ST_VERSION };
enum { C_CONNECT, C_HELLO, C_LEN, C_ADDR, S_HELLO, S_AUTH, S_ADDR, S_READY, X_CLOSING };

typedef struct {
    uint32_t magic, version, status;
    int32_t rank, to, nranks;
    uint64_t model_hash;
} hello;

/* ---- little-endian fields ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static pippy_status hello_pack(const hello *h, uint8_t *b)
{
    memset(b, 0, HELLO_BYTES);
    put32(b, h->magic);
    put32(b + 4, h->version);
    put32(b + 8, (uint32_t)h->rank);
    put32(b + 12, (uint32_t)h->to);
    put32(b + 16, (uint32_t)h->nranks);
    put32(b + 20, h->status);
    put64(b + 24, h->model_hash);
    return pippy_random_bytes(b + 32, 32); /* the nonce */
}

static hello hello_unpack(const uint8_t *b)
{
    return (hello){.magic = get32(b), .version = get32(b + 4), .rank = (int32_t)get32(b + 8),
                   .to = (int32_t)get32(b + 12), .nranks = (int32_t)get32(b + 16), .status = get32(b + 20),
                   .model_hash = get64(b + 24)};
}

/* MAC of label, the two hellos and optionally (len, addr). */
static void hs_mac(const pippy_transport *t, const pippy_conn *c, const char *label, const uint8_t *len4,
                   const void *addr, size_t addr_len, uint8_t *mac)
{
    const void *parts[4] = {c->hello_c, c->hello_s, len4, addr};
    size_t lens[4] = {HELLO_BYTES, HELLO_BYTES, 4, addr_len};
    pippy_mac(&t->key, label, parts, lens, len4 ? 4 : 2, mac);
}

static uint64_t hs_mask(const pippy_transport *t, const pippy_conn *c, const char *label)
{
    uint8_t mac[PIPPY_MAC_BYTES];
    hs_mac(t, c, label, NULL, NULL, 0, mac);
    return get64(mac) & TAG_USER_BITS;
}

/* ---- warnings (about strangers; the job goes on) ---- */

void pippy_tr_warn(pippy_transport *t, const char *fmt, ...)
{
    if (t->n_warnings >= 20)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pippy transport: rank %d: %s%s\n", t->rank, msg,
            ++t->n_warnings == 20 ? " (further warnings of this kind are not shown)" : "");
}

/* ---- addresses ---- */

pippy_status pippy_tr_resolve(const char *hostport, int rank, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[256], port[16];
    const char *colon, *h = hostport;
    size_t hl;
    if (!hostport || !hostport[0])
        return pippy_fail(PIPPY_ERR_USAGE, "no address given for rank %d (hosts need host:port)", rank);
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb || rb[1] != ':')
            return pippy_fail(PIPPY_ERR_USAGE, "address of rank %d \"%s\" is not [host]:port", rank, hostport);
        h++;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return pippy_fail(PIPPY_ERR_USAGE, "address of rank %d \"%s\" has no :port", rank, hostport);
        hl = (size_t)(colon - h);
    }
    const char *pp = colon + 1;
    size_t pl = strlen(pp);
    long pv = 0;
    for (size_t i = 0; i < pl; i++)
        pv = (pp[i] >= '0' && pp[i] <= '9' && pv < 100000) ? pv * 10 + (pp[i] - '0') : -1;
    if (hl == 0 || hl >= sizeof host || pl == 0 || pl >= sizeof port || pv <= 0 || pv > 65535)
        return pippy_fail(PIPPY_ERR_USAGE, "address of rank %d \"%s\" is not host:port with a port in 1..65535",
                          rank, hostport);
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, pp, pl + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV},
                    *res = NULL;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e != 0 || !res)
        return pippy_fail(PIPPY_ERR_USAGE, "cannot resolve the address of rank %d \"%s\": %s", rank, hostport,
                          gai_strerror(e));
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return PIPPY_OK;
}

static void sockaddr_str(const struct sockaddr_storage *sa, char *buf, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        snprintf(buf, n, "[%s]:%d", ip, port);
        return;
    }
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(buf, n, "%s:%d", ip, ntohs(a->sin_port));
}

static int same_ip(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (!a || a->sa_family != b->ss_family)
        return 0;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                       16);
    return 0;
}

/* UCX opens a TCP listening socket on every network device it uses (for its own connections);
 * unless the user chose devices, use only the one that holds our address, plus RDMA devices
 * (they listen on nothing), so no port opens on an interface the hosts file did not name. */
void pippy_tr_net_devices(const struct sockaddr_storage *addr)
{
    if (getenv("UCX_NET_DEVICES"))
        return;
    struct ifaddrs *ifs = NULL, *i;
    char list[1024] = "";
    size_t k = 0;
    if (getifaddrs(&ifs) != 0)
        return;
    for (i = ifs; i && !k; i = i->ifa_next)
        if (same_ip(i->ifa_addr, addr))
            k = (size_t)snprintf(list, sizeof list, "%s", i->ifa_name);
    freeifaddrs(ifs);
    if (!k)
        return; /* not an address of ours (NAT, a name of another host): leave UCX its defaults */
    DIR *d = opendir("/sys/class/infiniband");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && k < sizeof list - 300) {
        if (e->d_name[0] == '.')
            continue;
        char ports[512];
        snprintf(ports, sizeof ports, "/sys/class/infiniband/%s/ports", e->d_name);
        DIR *pd = opendir(ports);
        struct dirent *pe;
        while (pd && (pe = readdir(pd)) != NULL && k < sizeof list - 300)
            if (pe->d_name[0] != '.')
                k += (size_t)snprintf(list + k, sizeof list - k, ",%s:%s", e->d_name, pe->d_name);
        if (pd)
            closedir(pd);
    }
    if (d)
        closedir(d);
    setenv("UCX_NET_DEVICES", list, 0);
}

pippy_status pippy_tr_listen(pippy_transport *t, const char *hostport)
{
    struct sockaddr_storage sa;
    socklen_t sl;
    PIPPY_TRY(pippy_tr_resolve(hostport, t->rank, &sa, &sl));
    pippy_tr_net_devices(&sa);
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return pippy_fail(PIPPY_ERR_TRANSPORT, "%s:%d: rank %d: socket: %s", __FILE__, __LINE__, t->rank,
                          strerror(e));
    }
    if (bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return pippy_fail(PIPPY_ERR_TRANSPORT,
                              "rank %d cannot listen on %s: the address is in use (is rank %d already running? or "
                              "another program holds that port)",
                              t->rank, hostport, t->rank);
        return pippy_fail(PIPPY_ERR_TRANSPORT, "rank %d cannot listen on %s: %s (is that host an address of this "
                          "machine?)", t->rank, hostport, strerror(e));
    }
    t->listen_fd = fd;
    return PIPPY_OK;
}

/* ---- connections ---- */

static pippy_conn *conn_new(int fd, int client, int rank, double deadline)
{
    pippy_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->client = client;
    c->rank = rank;
    c->deadline = deadline;
    return c;
}

static void conn_free(pippy_conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* Read toward c->need bytes. 1: all there; 0: not yet; -1: closed or failed (errno, 0 = EOF). */
static int conn_fill(pippy_conn *c)
{
    while (c->got < c->need) {
        ssize_t k = recv(c->fd, c->rx + c->got, c->need - c->got, MSG_DONTWAIT);
        if (k > 0) {
            c->got += (size_t)k;
            continue;
        }
        if (k == 0) {
            errno = 0;
            return -1;
        }
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    return 1;
}

static void conn_expect(pippy_conn *c, int step, size_t need)
{
    c->step = step;
    c->need = need;
    c->got = 0;
}

/* Queue bytes and write what the socket takes now. -1 when the connection failed. */
static int conn_flush(pippy_conn *c)
{
    while (c->tx_off < c->tx_len) {
        ssize_t k = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0)
            c->tx_off += (size_t)k;
        else if (k < 0 && errno == EINTR)
            continue;
        else
            return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    return 0;
}

static int conn_send(pippy_conn *c, const void *a, size_t an, const void *b, size_t bn, const void *d, size_t dn)
{
    if (c->tx_len + an + bn + dn > sizeof c->tx)
        return -1;
    memcpy(c->tx + c->tx_len, a, an);
    if (bn)
        memcpy(c->tx + c->tx_len + an, b, bn);
    if (dn)
        memcpy(c->tx + c->tx_len + an + bn, d, dn);
    c->tx_len += an + bn + dn;
    return conn_flush(c);
}

static const char *why_closed(void) { return errno ? strerror(errno) : "the connection was closed"; }

/* ---- server side ---- */

static const char *status_text(uint32_t s)
{
    switch (s) {
    case ST_BUSY: return "its job is already running and takes no more connections";
    case ST_NOT_ME: return "it is another rank than the one asked for";
    case ST_UNEXPECTED: return "it does not expect that rank to connect (different schedule or hosts file?)";
    case ST_DUPLICATE: return "it is already connected to that rank";
    case ST_NRANKS: return "it runs a job with another number of ranks";
    case ST_MODEL: return "it was compiled from a different model";
    case ST_VERSION: return "it speaks another transport protocol version";
    default: return "it refused for an unknown reason";
    }
}

static uint32_t server_judge(const pippy_transport *t, const hello *h)
{
    if (h->version != PIPPY_TRANSPORT_PROTOCOL_VERSION)
        return ST_VERSION;
    if (t->opened)
        return ST_BUSY;
    if (h->to != t->rank)
        return ST_NOT_ME;
    if (h->rank < 0 || h->rank >= t->nranks || !t->peers[h->rank].expected || t->peers[h->rank].we_connect)
        return ST_UNEXPECTED;
    if (t->peers[h->rank].state == PS_READY)
        return ST_DUPLICATE;
    return ST_OK;
}

/* Returns 1 when the connection is finished with (closed or handed to its peer). */
static int server_hello(pippy_transport *t, pippy_conn *c)
{
    memcpy(c->hello_c, c->rx, HELLO_BYTES);
    hello h = hello_unpack(c->hello_c);
    if (h.magic != HS_MAGIC) {
        pippy_tr_warn(t, "dropped a connection from %s: not a pippy stage program (bad greeting)", c->from);
        return 1;
    }
    c->rank = h.rank;
    hello me = {.magic = HS_MAGIC, .version = PIPPY_TRANSPORT_PROTOCOL_VERSION, .rank = t->rank, .to = h.rank,
                .nranks = t->nranks, .status = server_judge(t, &h), .model_hash = t->model_hash};
    uint8_t mac[PIPPY_MAC_BYTES];
    if (hello_pack(&me, c->hello_s) != PIPPY_OK)
        return 1;
    hs_mac(t, c, "pippy hs 2 server", NULL, NULL, 0, mac);
    if (conn_send(c, c->hello_s, HELLO_BYTES, mac, sizeof mac, NULL, 0) < 0)
        return 1;
    if (me.status != ST_OK) {
        if (me.status != ST_BUSY)
            pippy_tr_warn(t, "refused a connection from %s (says it is rank %d): %s", c->from, h.rank,
                          status_text(me.status));
        c->close_after_tx = 1;
        c->step = X_CLOSING;
        return 0;
    }
    conn_expect(c, S_AUTH, PIPPY_MAC_BYTES + 4);
    return 0;
}

static int server_auth(pippy_transport *t, pippy_conn *c)
{
    uint8_t mac[PIPPY_MAC_BYTES], len4[4];
    size_t len = get32(c->rx + PIPPY_MAC_BYTES);
    if (c->step == S_AUTH) {
        if (len == 0 || len > MAX_WORKER_ADDR) {
            pippy_tr_warn(t, "dropped a connection from %s (says it is rank %d): a worker address of %zu bytes",
                          c->from, c->rank, len);
            return 1;
        }
        c->need = PIPPY_MAC_BYTES + 4 + len; /* the address comes after mac2 and len */
        c->step = S_ADDR;
        return 0;
    }
    put32(len4, (uint32_t)len);
    hs_mac(t, c, "pippy hs 2 client", len4, c->rx + PIPPY_MAC_BYTES + 4, len, mac);
    peer_t *p = &t->peers[c->rank];
    if (!pippy_mac_equal(mac, c->rx, PIPPY_MAC_BYTES)) {
        pippy_tr_warn(t, "a connection from %s that says it is rank %d failed authentication (it does not hold "
                      "this job's secret): dropped", c->from, c->rank);
        snprintf(p->last_err, sizeof p->last_err, "a connection from %s failed authentication", c->from);
        return 1;
    }
    if (p->state == PS_READY || p->ep)
        return 1; /* another connection of that rank is ahead */
    hello h = hello_unpack(c->hello_c);
    if (h.nranks != t->nranks || h.model_hash != t->model_hash) { /* one of ours, misconfigured: fatal */
        t->fatal = pippy_fail(PIPPY_ERR_PEER,
                              "rank %d: rank %d at %s (connected from %s; it holds this job's secret) runs %d ranks "
                              "of model hash 0x%016llx, this one %d of 0x%016llx (compiled from a different model)",
                              t->rank, c->rank, p->addr, c->from, h.nranks, (unsigned long long)h.model_hash,
                              t->nranks, (unsigned long long)t->model_hash);
        return 1;
    }
    p->mask_rx = hs_mask(t, c, "pippy tags c2s");
    p->mask_tx = hs_mask(t, c, "pippy tags s2c");
    if (pippy_tr_peer_ep(t, p, c->rx + PIPPY_MAC_BYTES + 4) != PIPPY_OK) {
        pippy_tr_warn(t, "rank %d at %s: %s", c->rank, c->from, pippy_last_error());
        return 1;
    }
    c->has_ep = 1;
    put32(len4, (uint32_t)t->worker_addr_len);
    hs_mac(t, c, "pippy hs 2 server address", len4, t->worker_addr, t->worker_addr_len, mac);
    if (conn_send(c, len4, 4, t->worker_addr, t->worker_addr_len, mac, sizeof mac) < 0)
        return 1;
    conn_expect(c, S_READY, PIPPY_MAC_BYTES);
    return 0;
}

static int server_ready(pippy_transport *t, pippy_conn *c)
{
    uint8_t mac[PIPPY_MAC_BYTES];
    hs_mac(t, c, "pippy hs 2 client ready", NULL, NULL, 0, mac);
    if (!pippy_mac_equal(mac, c->rx, PIPPY_MAC_BYTES)) {
        pippy_tr_warn(t, "rank %d at %s broke the handshake (bad last message): dropped", c->rank, c->from);
        return 1;
    }
    c->has_ep = 0;
    pippy_tr_peer_ready(t, &t->peers[c->rank], c->fd);
    c->fd = -1; /* the peer owns it now */
    return 1;
}

/* Advance an incoming connection. 1: done with it (closed or handed over). */
static int server_step(pippy_transport *t, pippy_conn *c, double now)
{
    if (conn_flush(c) < 0)
        return 1;
    if (c->step == X_CLOSING)
        return c->tx_off == c->tx_len || now > c->deadline;
    int k = conn_fill(c);
    if (k < 0) {
        if (c->step != S_HELLO || c->got)
            pippy_tr_warn(t, "a connection from %s closed in the middle of the handshake (%s)", c->from,
                          why_closed());
        if (c->step != S_HELLO && c->rank >= 0 && c->rank < t->nranks)
            snprintf(t->peers[c->rank].last_err, sizeof t->peers[c->rank].last_err,
                     "a connection from %s that said it was rank %d closed in the middle of the handshake (another "
                     "job's secret?)", c->from, c->rank);
        return 1;
    }
    if (k == 0) {
        if (now > c->deadline)
            pippy_tr_warn(t, "dropped a connection from %s: no handshake within %.1f s", c->from,
                          t->timeout_s < HS_IDLE_S ? t->timeout_s : HS_IDLE_S);
        return now > c->deadline;
    }
    return c->step == S_HELLO ? server_hello(t, c) : c->step == S_READY ? server_ready(t, c) : server_auth(t, c);
}

/* Done with an incoming connection: an endpoint made for a handshake that failed goes too. */
static void server_done(pippy_transport *t, pippy_conn *c)
{
    if (c->has_ep)
        pippy_tr_peer_drop_ep(t, &t->peers[c->rank]);
    conn_free(c);
}

/* How far a connection has proven itself: one closing or that has said nothing is worth least, one
 * whose MAC checked out (S_READY: it holds the secret; its client may already count it connected)
 * most. */
static int server_progress(const pippy_conn *c)
{
    if (c->step == X_CLOSING)
        return 0;
    if (c->step == S_HELLO)
        return c->got ? 2 : 1;
    return c->step == S_READY ? 4 : 3;
}

/* The pending connection that makes room for a new one: the oldest of those that proved least.
 * A flood of strangers thus pushes out its own connections, never a rank that authenticated. */
static int server_victim(const pippy_transport *t)
{
    int v = 0;
    for (int i = 1; i < t->n_pending; i++)
        if (server_progress(t->pending[i]) < server_progress(t->pending[v]))
            v = i;
    return v;
}

static void server_accept(pippy_transport *t, double now)
{
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(t->listen_fd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (t->n_pending == MAX_PENDING) { /* make room */
            int v = server_victim(t);
            pippy_tr_warn(t, "dropped a connection from %s: too many connections at once", t->pending[v]->from);
            server_done(t, t->pending[v]);
            memmove(t->pending + v, t->pending + v + 1, (size_t)(MAX_PENDING - 1 - v) * sizeof *t->pending);
            t->n_pending--;
        }
        double idle = t->timeout_s < HS_IDLE_S ? t->timeout_s : HS_IDLE_S;
        pippy_conn *c = conn_new(fd, 0, -1, now + idle);
        if (!c) {
            close(fd);
            return;
        }
        sockaddr_str(&sa, c->from, sizeof c->from);
        conn_expect(c, S_HELLO, HELLO_BYTES);
        t->pending[t->n_pending++] = c;
    }
}

/* ---- client side ---- */

static void client_retry(peer_t *p, double now, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void client_retry(peer_t *p, double now, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->last_err, sizeof p->last_err, fmt, ap);
    va_end(ap);
    conn_free(p->conn);
    p->conn = NULL;
    p->state = PS_IDLE;
    p->retry_at = now + RETRY_S;
}

static void client_start(pippy_transport *t, peer_t *p, double now)
{
    int fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        client_retry(p, now, "socket: %s", strerror(errno));
        return;
    }
    double idle = t->timeout_s < HS_IDLE_S ? t->timeout_s : HS_IDLE_S;
    p->conn = conn_new(fd, 1, p->rank, now + idle);
    if (!p->conn) {
        close(fd);
        client_retry(p, now, "out of memory");
        return;
    }
    snprintf(p->conn->from, sizeof p->conn->from, "%.99s", p->addr);
    p->conn->step = C_CONNECT;
    p->state = PS_CONNECTING;
    if (connect(fd, (struct sockaddr *)&p->sa, p->salen) != 0 && errno != EINPROGRESS)
        client_retry(p, now, "connect: %s", strerror(errno));
}

static pippy_status client_refused(pippy_transport *t, peer_t *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pippy_status client_refused(pippy_transport *t, peer_t *p, const char *fmt, ...)
{
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pippy_fail(PIPPY_ERR_PEER, "rank %d: the process at %s (rank %d's address) %s", t->rank, p->addr, p->rank,
                      what);
}

static pippy_status client_hello(pippy_transport *t, peer_t *p)
{
    pippy_conn *c = p->conn;
    uint8_t mac[PIPPY_MAC_BYTES], len4[4];
    memcpy(c->hello_s, c->rx, HELLO_BYTES);
    hello h = hello_unpack(c->hello_s);
    if (h.magic != HS_MAGIC)
        return client_refused(t, p, "is not a pippy stage program (bad handshake)");
    if (h.version != PIPPY_TRANSPORT_PROTOCOL_VERSION)
        return client_refused(t, p, "speaks transport protocol %u, this program speaks %u (rebuild both with the "
                              "same pippyc)", h.version, PIPPY_TRANSPORT_PROTOCOL_VERSION);
    hs_mac(t, c, "pippy hs 2 server", NULL, NULL, 0, mac);
    if (!pippy_mac_equal(mac, c->rx + HELLO_BYTES, PIPPY_MAC_BYTES))
        return client_refused(t, p, "failed authentication: it does not hold this job's secret (a rank of "
                              "another job on that address, or another --job-secret-file / PIPPY_JOB_SECRET)");
    if (h.status != ST_OK)
        return client_refused(t, p, "refuses rank %d: %s%s", t->rank, status_text(h.status),
                              h.status == ST_BUSY || h.status == ST_DUPLICATE ? " (is this rank started twice?)"
                                                                               : "");
    if (h.rank != p->rank || h.to != t->rank)
        return client_refused(t, p, "says it is rank %d, expected rank %d", h.rank, p->rank);
    put32(len4, (uint32_t)t->worker_addr_len);
    hs_mac(t, c, "pippy hs 2 client", len4, t->worker_addr, t->worker_addr_len, mac);
    int sent = conn_send(c, mac, sizeof mac, len4, 4, t->worker_addr, t->worker_addr_len);
    if (h.nranks != t->nranks || h.model_hash != t->model_hash) /* our proof went out: it can tell too */
        return client_refused(t, p, "runs %d ranks of model hash 0x%016llx, this one %d of 0x%016llx "
                              "(compiled from a different model)", h.nranks, (unsigned long long)h.model_hash,
                              t->nranks, (unsigned long long)t->model_hash);
    if (sent < 0) {
        client_retry(p, pippy_tr_now(), "sending our part of the handshake: %s", why_closed());
        return PIPPY_OK;
    }
    conn_expect(c, C_LEN, 4);
    return PIPPY_OK;
}

static pippy_status client_addr(pippy_transport *t, peer_t *p)
{
    pippy_conn *c = p->conn;
    size_t len = get32(c->rx);
    if (c->step == C_LEN) {
        if (len == 0 || len > MAX_WORKER_ADDR)
            return client_refused(t, p, "sent a worker address of %zu bytes", len);
        c->need = 4 + len + PIPPY_MAC_BYTES;
        c->step = C_ADDR;
        return PIPPY_OK;
    }
    uint8_t mac[PIPPY_MAC_BYTES];
    hs_mac(t, c, "pippy hs 2 server address", c->rx, c->rx + 4, len, mac);
    if (!pippy_mac_equal(mac, c->rx + 4 + len, PIPPY_MAC_BYTES))
        return client_refused(t, p, "failed authentication of its worker address");
    p->mask_tx = hs_mask(t, c, "pippy tags c2s");
    p->mask_rx = hs_mask(t, c, "pippy tags s2c");
    PIPPY_TRY(pippy_tr_peer_ep(t, p, c->rx + 4));
    hs_mac(t, c, "pippy hs 2 client ready", NULL, NULL, 0, mac);
    if (conn_send(c, mac, sizeof mac, NULL, 0, NULL, 0) < 0 || c->tx_off < c->tx_len) {
        pippy_tr_peer_drop_ep(t, p); /* the last 32 bytes did not go out at once: start over */
        client_retry(p, pippy_tr_now(), "finishing the handshake: %s", why_closed());
        return PIPPY_OK;
    }
    pippy_tr_peer_ready(t, p, c->fd);
    c->fd = -1; /* the peer owns it now */
    conn_free(c);
    p->conn = NULL;
    return PIPPY_OK;
}

static pippy_status client_step(pippy_transport *t, peer_t *p, double now)
{
    pippy_conn *c = p->conn;
    if (c->step == C_CONNECT) {
        struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
        if (poll(&pf, 1, 0) <= 0)
            goto idle;
        int err = 0;
        socklen_t sl = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0 || err) {
            client_retry(p, now, "connect: %s", strerror(err ? err : errno));
            return PIPPY_OK;
        }
        hello me = {.magic = HS_MAGIC, .version = PIPPY_TRANSPORT_PROTOCOL_VERSION, .rank = t->rank,
                    .to = p->rank, .nranks = t->nranks, .model_hash = t->model_hash};
        PIPPY_TRY(hello_pack(&me, c->hello_c));
        if (conn_send(c, c->hello_c, HELLO_BYTES, NULL, 0, NULL, 0) < 0) {
            client_retry(p, now, "greeting: %s", why_closed());
            return PIPPY_OK;
        }
        conn_expect(c, C_HELLO, HELLO_BYTES + PIPPY_MAC_BYTES);
    }
    if (conn_flush(c) < 0) {
        client_retry(p, now, "handshake: %s", why_closed());
        return PIPPY_OK;
    }
    int k = conn_fill(c);
    if (k < 0) {
        client_retry(p, now, "handshake: %s", why_closed());
        return PIPPY_OK;
    }
    if (k > 0)
        return c->step == C_HELLO ? client_hello(t, p) : client_addr(t, p);
idle:
    if (now > c->deadline)
        client_retry(p, now, "no answer to the handshake in time");
    return PIPPY_OK;
}

/* ---- the loop's entry points ---- */

pippy_status pippy_tr_handshakes(pippy_transport *t, double now)
{
    if (t->listen_fd >= 0)
        server_accept(t, now);
    for (int i = 0; i < t->n_pending; i++) {
        pippy_conn *c = t->pending[i];
        int done = 0;
        for (int rounds = 0; rounds < 5 && !done; rounds++) { /* several steps may be possible at once */
            int step = c->step;
            size_t got = c->got, sent = c->tx_off;
            done = server_step(t, c, now);
            if (c->step == step && c->got == got && c->tx_off == sent)
                break;
        }
        if (!done)
            continue;
        server_done(t, c);
        memmove(t->pending + i, t->pending + i + 1, (size_t)(t->n_pending - i - 1) * sizeof *t->pending);
        t->n_pending--;
        i--;
    }
    if (t->fatal != PIPPY_OK)
        return t->fatal;
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (!p->we_connect || p->state == PS_READY)
            continue;
        if (!p->conn && now >= p->retry_at)
            client_start(t, p, now);
        while (p->conn) { /* several steps may be possible at once */
            int step = p->conn->step;
            size_t got = p->conn->got;
            PIPPY_TRY(client_step(t, p, now));
            if (!p->conn || (p->conn->step == step && p->conn->got == got))
                break;
        }
    }
    return PIPPY_OK;
}

static int add_fd(pippy_transport *t, int n, int fd, short events)
{
    if (n >= t->max_pfds)
        return n;
    t->pfds[n] = (struct pollfd){.fd = fd, .events = events};
    t->pfd_what[n] = -2;
    return n + 1;
}

int pippy_tr_handshake_fds(pippy_transport *t, int n)
{
    if (t->listen_fd >= 0)
        n = add_fd(t, n, t->listen_fd, POLLIN);
    for (int i = 0; i < t->n_pending; i++)
        n = add_fd(t, n, t->pending[i]->fd,
                   (short)(POLLIN | (t->pending[i]->tx_off < t->pending[i]->tx_len ? POLLOUT : 0)));
    for (int i = 0; i < t->n_peers; i++) {
        pippy_conn *c = t->peers[t->peer_list[i]].conn;
        if (c)
            n = add_fd(t, n, c->fd, (short)(c->step == C_CONNECT || c->tx_off < c->tx_len ? POLLOUT : POLLIN));
    }
    return n;
}

void pippy_tr_conns_close(pippy_transport *t)
{
    for (int i = 0; i < t->n_pending; i++)
        conn_free(t->pending[i]); /* their endpoints go with the worker */
    t->n_pending = 0;
    for (int i = 0; t->peers && i < t->nranks; i++) {
        conn_free(t->peers[i].conn);
        t->peers[i].conn = NULL;
    }
    if (t->listen_fd >= 0)
        close(t->listen_fd);
    t->listen_fd = -1;
}
