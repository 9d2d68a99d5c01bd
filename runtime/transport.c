/* transport.c — see transport.h.
 *
 * Connection set-up, per listed peer q:
 *   q < rank (we are the client): ucp_ep_create(sockaddr of hosts[q], client id = our rank), send
 *     our handshake; when q's listener is not up yet the endpoint fails (error handler) and we
 *     retry every RETRY_S until the deadline. When q's handshake arrives and checks out, connect
 *     a TCP socket to the control port q announced in it and send a hello.
 *   q > rank (we are the server): the listener's connection handler queues the request; the
 *     loop creates the endpoint (the client id tells which rank it is), sends our handshake and
 *     waits for q's handshake and q's control-socket hello.
 * The handshake rides on UCX tags with the internal bit set, so it can never match user receives.
 *
 * UCX tag layout: bit 63 internal, bits 62..48 the sender's rank, bits 47..0 the user tag.
 *
 * Liveness: UCX runs in error mode NONE (mode PEER would force TCP for everything), so a peer
 * that dies does not fail our requests. Each connection has a TCP control socket instead; the
 * kernel closes it when the peer process dies, and we read its end of file. A peer that closes
 * normally sends BYE first. While a wait is idle, the worker is armed and we sleep in poll() on
 * the worker's event fd and the control sockets together. */
#define _GNU_SOURCE /* accept4 */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#define TAG_RANK_SHIFT 48
#define TAG_INTERNAL (1ull << 63)
#define TAG_SENDER_MASK 0xffff000000000000ull
#define TAG_HANDSHAKE 1ull
#define HS_MAGIC 0x54595050u   /* "PPYT" */
#define CTRL_MAGIC 0x43595050u /* "PPYC" */
#define CTRL_BYE 'B'
#define POOL_CHUNK 1024
#define RETRY_S 0.05           /* between connection attempts to a listener not up yet */
#define PEER_GRACE_S 0.25      /* keep progressing this long after a peer went away */
/* An idle wait spins (yielding the core now and then) this long before it sleeps in ppoll()
 * (PIPPY_SPIN_US overrides it). Waking a sleeping process costs tens of microseconds, so a
 * ping-pong of short messages stays in the spin. A long spin costs more on a busy machine: a
 * rank that spins uses up its share of the core and, once the peer's data is there, waits behind
 * the other processes, where a sleeper is woken at once. Measured with the bench GPT in 2 stages
 * (1F1B) while others kept both cores busy: the 8-byte notes of the zero-copy path wake a
 * sleeping rank through the worker's event fd (10-40 µs after the send when a core is free); the
 * median from a send to its receive completing was 1.4 ms with a 10 ms spin and 0.6 ms without
 * one. Steps, 8 interleaved runs each, 100 µs against 10 ms: GPT 63.9 against 66.5 ms (faster in
 * 6 of 8 pairs), the seed MLP 20.5 against 37.7 ms (7 of 8). The sleeps stay short (SLEEP_US)
 * for what may not signal the event fd (a rendezvous request is only seen when we progress). */
#define SPIN_S 100e-6
#define SLEEP_US 200           /* longest sleep in ppoll() */
#define LIVENESS_S 0.002       /* how often a spinning wait polls the control sockets */
#define MAX_CONN_QUEUE 64

#define UCX_CHECK_GOTO(expr, label, ...)                                        \
    do {                                                                        \
        ucs_status_t ucx_s_ = (expr);                                           \
        if (ucx_s_ != UCS_OK) {                                                 \
            st = ucx_fail(__FILE__, __LINE__, ucx_s_, __VA_ARGS__);             \
            goto label;                                                         \
        }                                                                       \
    } while (0)

enum { RQ_FREE, RQ_PENDING, RQ_DONE, RQ_ORPHAN };
enum { PS_IDLE, PS_CONNECTING, PS_READY };

struct pippy_request {
    pippy_transport *t;
    void *ucx;                 /* UCX's request while in flight */
    int state, is_recv, peer;
    uint64_t tag;              /* user tag */
    size_t len, got;
    ucs_status_t status;
    pippy_request *next;       /* free list */
};

/* Handshake message; both ends are the same build, so native layout. */
typedef struct {
    uint32_t magic, version;
    int32_t rank, nranks;
    uint64_t model_hash, job_token;
    uint32_t ctrl_port, pad;
} hs_msg;

typedef struct {
    uint32_t magic;
    int32_t rank;
    uint64_t job_token;
} ctrl_hello;

typedef struct {
    pippy_transport *t;
    int rank, expected, we_connect, state;
    char addr[300]; /* "host:port" as given */
    struct sockaddr_storage sa;
    socklen_t salen;
    ucp_ep_h ep;
    int ep_failed;
    ucs_status_t ep_status;
    char last_err[128];
    double retry_at;
    hs_msg hs_in;
    pippy_request *hs_send, *hs_recv;
    int hs_sent, hs_ok;
    int ctrl_fd;
    int bye, gone, gone_ucx; /* gone_ucx: only UCX said so (the control socket may say more) */
    double gone_at;
    char gone_why[160];
} peer_t;

struct pippy_transport {
    int rank, nranks, n_peers;
    int *peer_list;
    double timeout_s;
    uint64_t model_hash, job_token;
    peer_t *peers; /* nranks entries, only the listed ones used */
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_listener_h listener;
    int efd;       /* worker event fd, -1 without wakeup */
    int ctrl_listen_fd;
    uint16_t ctrl_port;
    hs_msg hs_out;
    struct pollfd *pfds; /* 1 + n_peers */
    int *pfd_rank;
    pippy_request *free_list;
    pippy_request **chunks;
    int n_chunks, cap_chunks;
    ucp_conn_request_h conn_q[MAX_CONN_QUEUE];
    int n_conn_q;
    double last_activity, last_poll;
    double spin_s; /* how long an idle wait spins before it sleeps (SPIN_S, PIPPY_SPIN_US) */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static pippy_status ucx_fail(const char *file, int line, ucs_status_t s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static pippy_status ucx_fail(const char *file, int line, ucs_status_t s, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pippy_fail(PIPPY_ERR_TRANSPORT, "%s:%d: %s: %s", file, line, what, ucs_status_string(s));
}

static inline uint64_t user_tag(int sender, uint64_t tag)
{
    return ((uint64_t)sender << TAG_RANK_SHIFT) | tag;
}

static inline uint64_t hs_tag(int sender)
{
    return TAG_INTERNAL | ((uint64_t)sender << TAG_RANK_SHIFT) | TAG_HANDSHAKE;
}

/* ---- request pool ---- */

static pippy_status pool_grow(pippy_transport *t)
{
    if (t->n_chunks == t->cap_chunks) {
        int cap = t->cap_chunks ? 2 * t->cap_chunks : 4;
        pippy_request **c = realloc(t->chunks, (size_t)cap * sizeof *c);
        if (!c)
            return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory for requests");
        t->chunks = c;
        t->cap_chunks = cap;
    }
    pippy_request *chunk = calloc(POOL_CHUNK, sizeof *chunk);
    if (!chunk)
        return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory for requests");
    t->chunks[t->n_chunks++] = chunk;
    for (int i = POOL_CHUNK - 1; i >= 0; i--) {
        chunk[i].t = t;
        chunk[i].next = t->free_list;
        t->free_list = &chunk[i];
    }
    return PIPPY_OK;
}

static pippy_request *pool_get(pippy_transport *t)
{
    if (!t->free_list && pool_grow(t) != PIPPY_OK)
        return NULL;
    pippy_request *r = t->free_list;
    t->free_list = r->next;
    r->next = NULL;
    r->ucx = NULL;
    r->state = RQ_PENDING;
    r->status = UCS_INPROGRESS;
    r->got = 0;
    return r;
}

static void pool_put(pippy_transport *t, pippy_request *r)
{
    r->state = RQ_FREE;
    r->ucx = NULL;
    r->next = t->free_list;
    t->free_list = r;
}

static void req_complete(pippy_request *r, ucs_status_t s, size_t got)
{
    r->ucx = NULL;
    r->status = s;
    r->got = got;
    r->t->last_activity = now_s();
    if (r->state == RQ_ORPHAN)
        pool_put(r->t, r);
    else
        r->state = RQ_DONE;
}

static void send_cb(void *ucx_req, ucs_status_t s, void *user)
{
    pippy_request *r = user;
    req_complete(r, s, r->len);
    ucp_request_free(ucx_req);
}

static void recv_cb(void *ucx_req, ucs_status_t s, const ucp_tag_recv_info_t *info, void *user)
{
    req_complete(user, s, s == UCS_OK && info ? info->length : 0);
    ucp_request_free(ucx_req);
}

/* Give a request back; one still in flight becomes an orphan that its callback frees. */
static void req_release(pippy_transport *t, pippy_request *r)
{
    if (!r)
        return;
    if (r->state == RQ_PENDING && r->ucx)
        ucp_request_cancel(t->worker, r->ucx); /* receives: completes now with CANCELED */
    if (r->state == RQ_PENDING)
        r->state = RQ_ORPHAN;
    else if (r->state == RQ_DONE)
        pool_put(t, r);
}

/* Errors of posting surface as a completed request with an error status. */
static pippy_status post_send(pippy_transport *t, int peer, uint64_t ucx_tag, uint64_t tag,
                              const void *buf, size_t len, pippy_request **out)
{
    pippy_request *r = pool_get(t);
    if (!r)
        return PIPPY_ERR_NOMEM;
    r->is_recv = 0;
    r->peer = peer;
    r->tag = tag;
    r->len = len;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = send_cb,
        .user_data = r,
    };
    ucs_status_ptr_t p = ucp_tag_send_nbx(t->peers[peer].ep, buf, len, ucx_tag, &prm);
    if (p == NULL) {
        r->state = RQ_DONE;
        r->status = UCS_OK;
        r->got = len;
        t->last_activity = now_s();
    } else if (UCS_PTR_IS_ERR(p)) {
        r->state = RQ_DONE;
        r->status = UCS_PTR_STATUS(p);
    } else if (r->state == RQ_PENDING) {
        r->ucx = p;
    }
    *out = r;
    return PIPPY_OK;
}

static pippy_status post_recv(pippy_transport *t, int peer, uint64_t ucx_tag, uint64_t tag,
                              void *buf, size_t len, pippy_request **out)
{
    pippy_request *r = pool_get(t);
    if (!r)
        return PIPPY_ERR_NOMEM;
    r->is_recv = 1;
    r->peer = peer;
    r->tag = tag;
    r->len = len;
    /* No immediate completion: UCX 1.13 then leaves recv_info's length at 0, and the length
     * is how a short message is caught. The callback may run before ucp_tag_recv_nbx returns
     * (it frees UCX's request then). */
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FLAG_NO_IMM_CMPL,
        .cb.recv = recv_cb,
        .user_data = r,
    };
    ucs_status_ptr_t p = ucp_tag_recv_nbx(t->worker, buf, len, ucx_tag, ~0ull, &prm);
    if (UCS_PTR_IS_ERR(p)) {
        r->state = RQ_DONE;
        r->status = UCS_PTR_STATUS(p);
    } else if (p != NULL && r->state == RQ_PENDING) {
        r->ucx = p;
    }
    *out = r;
    return PIPPY_OK;
}

/* ---- addresses and sockets ---- */

static pippy_status resolve(const char *hostport, int rank, struct sockaddr_storage *sa,
                            socklen_t *salen)
{
    char host[256], port[16];
    const char *colon, *h = hostport;
    size_t hl;
    if (!hostport || !hostport[0])
        return pippy_fail(PIPPY_ERR_USAGE, "no address given for rank %d (hosts need host:port)",
                          rank);
    if (h[0] == '[') {
        const char *rb = strchr(h, ']');
        if (!rb || rb[1] != ':')
            return pippy_fail(PIPPY_ERR_USAGE, "address of rank %d \"%s\" is not [host]:port",
                              rank, hostport);
        h++;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return pippy_fail(PIPPY_ERR_USAGE, "address of rank %d \"%s\" has no :port", rank,
                              hostport);
        hl = (size_t)(colon - h);
    }
    const char *pp = colon + 1;
    size_t pl = strlen(pp);
    long pv = 0;
    for (size_t i = 0; i < pl; i++)
        pv = (pp[i] >= '0' && pp[i] <= '9' && pv < 100000) ? pv * 10 + (pp[i] - '0') : -1;
    if (hl == 0 || hl >= sizeof host || pl == 0 || pl >= sizeof port || pv <= 0 || pv > 65535)
        return pippy_fail(PIPPY_ERR_USAGE,
                          "address of rank %d \"%s\" is not host:port with a port in 1..65535",
                          rank, hostport);
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, pp, pl + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV}, *res = NULL;
    int e = getaddrinfo(host, port, &hints, &res);
    if (e != 0 || !res)
        return pippy_fail(PIPPY_ERR_USAGE, "cannot resolve the address of rank %d \"%s\": %s",
                          rank, hostport, gai_strerror(e));
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *salen = res->ai_addrlen;
    freeaddrinfo(res);
    return PIPPY_OK;
}

static void sa_set_port(struct sockaddr_storage *sa, uint16_t port)
{
    if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
}

/* A nonblocking TCP connection to sa (with port), within timeout seconds; -1 and errno text. */
static int tcp_connect(const struct sockaddr_storage *sa0, socklen_t salen, uint16_t port,
                       double timeout, char *err, size_t en)
{
    struct sockaddr_storage sa = *sa0;
    sa_set_port(&sa, port);
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, en, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, salen) < 0) {
        if (errno != EINPROGRESS) {
            snprintf(err, en, "connect: %s", strerror(errno));
            close(fd);
            return -1;
        }
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int ms = (int)(timeout * 1000) + 1;
        int k;
        do
            k = poll(&pf, 1, ms);
        while (k < 0 && errno == EINTR);
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (k <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            snprintf(err, en, "connect: %s", k == 0 ? "timed out" : strerror(soerr ? soerr : errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Read exactly n bytes from a nonblocking socket within timeout seconds. */
static int read_full(int fd, void *buf, size_t n, double timeout)
{
    size_t got = 0;
    double end = now_s() + timeout;
    while (got < n) {
        ssize_t k = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (k > 0) {
            got += (size_t)k;
            continue;
        }
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return -1;
        double left = end - now_s();
        if (left <= 0)
            return -1;
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        poll(&pf, 1, (int)(left * 1000) + 1);
    }
    return 0;
}

/* ---- liveness ---- */

static void mark_gone(peer_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mark_gone(peer_t *p, const char *fmt, ...)
{
    if (p->gone && !p->gone_ucx)
        return;
    p->gone_ucx = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->gone_why, sizeof p->gone_why, fmt, ap);
    va_end(ap);
    if (!p->gone)
        p->gone_at = now_s();
    p->gone = 1;
}

static void ep_err_cb(void *arg, ucp_ep_h ep, ucs_status_t s)
{
    peer_t *p = arg;
    if (ep != p->ep)
        return; /* an endpoint we already dropped */
    p->ep_failed = 1;
    p->ep_status = s;
    if (p->state == PS_READY && !p->gone) {
        mark_gone(p, "lost its UCX connection (%s)", ucs_status_string(s));
        p->gone_ucx = 1;
    }
}

static void ctrl_readable(peer_t *p)
{
    char buf[64];
    for (;;) {
        ssize_t k = recv(p->ctrl_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0) {
            if (memchr(buf, CTRL_BYE, (size_t)k))
                p->bye = 1;
            continue;
        }
        if (k == 0)
            mark_gone(p, p->bye ? "closed its transport"
                                : "died (its control connection closed without a goodbye)");
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            mark_gone(p, "died (control connection: %s)", strerror(errno));
        return;
    }
}

/* Poll the control sockets of ready peers (and the worker's event fd when armed) for up to
 * timeout_ms; record peers that went away. */
static void poll_fds(pippy_transport *t, int with_efd, int timeout_us)
{
    int n = 0;
    if (with_efd && t->efd >= 0) {
        t->pfds[n].fd = t->efd;
        t->pfds[n].events = POLLIN;
        t->pfds[n].revents = 0;
        t->pfd_rank[n++] = -1;
    }
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->state != PS_READY || (p->gone && !p->gone_ucx) || p->ctrl_fd < 0)
            continue;
        t->pfds[n].fd = p->ctrl_fd;
        t->pfds[n].events = POLLIN;
        t->pfds[n].revents = 0;
        t->pfd_rank[n++] = p->rank;
    }
    t->last_poll = now_s();
    if (n == 0)
        return;
    struct timespec ts = {timeout_us / 1000000, (long)(timeout_us % 1000000) * 1000};
    int k = ppoll(t->pfds, (nfds_t)n, &ts, NULL);
    if (k <= 0)
        return;
    for (int i = 0; i < n; i++)
        if (t->pfd_rank[i] >= 0 && t->pfds[i].revents)
            ctrl_readable(&t->peers[t->pfd_rank[i]]);
}

static const char *tag_str(uint64_t tag, char *buf, size_t n)
{
    snprintf(buf, n, "0x%llx", (unsigned long long)tag);
    return buf;
}

/* "receive tag 0x5 from rank 1 at host:port" (or "... from it" when short). */
static void describe(const pippy_transport *t, const pippy_request *r, int short_form, char *buf,
                     size_t n)
{
    char tb[32];
    if (short_form)
        snprintf(buf, n, "%s tag %s %s it", r->is_recv ? "receive" : "send",
                 tag_str(r->tag, tb, sizeof tb), r->is_recv ? "from" : "to");
    else
        snprintf(buf, n, "%s tag %s %s rank %d at %s", r->is_recv ? "receive" : "send",
                 tag_str(r->tag, tb, sizeof tb), r->is_recv ? "from" : "to", r->peer,
                 t->peers[r->peer].addr);
}

static int status_means_peer_gone(ucs_status_t s)
{
    return s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT ||
           s == UCS_ERR_NOT_CONNECTED || s == UCS_ERR_UNREACHABLE || s == UCS_ERR_CANCELED ||
           s == UCS_ERR_REJECTED;
}

/* ---- connection set-up ---- */

static void conn_cb(ucp_conn_request_h req, void *arg)
{
    pippy_transport *t = arg;
    if (t->n_conn_q < MAX_CONN_QUEUE)
        t->conn_q[t->n_conn_q++] = req;
    else
        ucp_listener_reject(t->listener, req);
}

static void ep_drop(pippy_transport *t, peer_t *p)
{
    if (!p->ep)
        return;
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                               .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t r = ucp_ep_close_nbx(p->ep, &prm);
    if (UCS_PTR_IS_PTR(r))
        ucp_request_free(r); /* released when it completes */
    p->ep = NULL;
    p->ep_failed = 0;
    req_release(t, p->hs_send);
    p->hs_send = NULL;
    p->hs_sent = 0;
}

static pippy_status send_handshake(pippy_transport *t, peer_t *p)
{
    PIPPY_TRY(post_send(t, p->rank, hs_tag(t->rank), 0, &t->hs_out, sizeof t->hs_out,
                        &p->hs_send));
    return PIPPY_OK;
}

static pippy_status client_connect(pippy_transport *t, peer_t *p)
{
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER | UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID,
        .err_mode = UCP_ERR_HANDLING_MODE_NONE,
        .err_handler = {.cb = ep_err_cb, .arg = p},
        .sockaddr = {.addr = (const struct sockaddr *)&p->sa, .addrlen = p->salen},
    };
    ucs_status_t s = ucp_ep_create(t->worker, &ep, &p->ep);
    if (s != UCS_OK) {
        p->ep = NULL;
        snprintf(p->last_err, sizeof p->last_err, "%s", ucs_status_string(s));
        p->retry_at = now_s() + RETRY_S;
        return PIPPY_OK;
    }
    p->ep_failed = 0;
    p->state = PS_CONNECTING;
    return send_handshake(t, p);
}

static pippy_status server_accept(pippy_transport *t)
{
    pippy_status st = PIPPY_OK;
    for (int i = 0; i < t->n_conn_q; i++) {
        ucp_conn_request_h req = t->conn_q[i];
        ucp_conn_request_attr_t a = {.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ID};
        int q = -1;
        if (ucp_conn_request_query(req, &a) == UCS_OK && a.client_id < (uint64_t)t->nranks)
            q = (int)a.client_id;
        peer_t *p = q >= 0 ? &t->peers[q] : NULL;
        if (!p || !p->expected || p->we_connect || p->state == PS_READY || st != PIPPY_OK) {
            ucp_listener_reject(t->listener, req);
            continue;
        }
        ep_drop(t, p); /* an earlier attempt of the same client */
        ucp_ep_params_t ep = {
            .field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                          UCP_EP_PARAM_FIELD_ERR_HANDLER,
            .conn_request = req,
            .err_mode = UCP_ERR_HANDLING_MODE_NONE,
            .err_handler = {.cb = ep_err_cb, .arg = p},
        };
        ucs_status_t s = ucp_ep_create(t->worker, &ep, &p->ep);
        if (s != UCS_OK) {
            p->ep = NULL;
            snprintf(p->last_err, sizeof p->last_err, "accepting: %s", ucs_status_string(s));
            continue;
        }
        p->state = PS_CONNECTING;
        st = send_handshake(t, p);
    }
    t->n_conn_q = 0;
    return st;
}

static pippy_status check_handshake(pippy_transport *t, peer_t *p)
{
    const hs_msg *m = &p->hs_in;
    if (m->magic != HS_MAGIC)
        return pippy_fail(PIPPY_ERR_PEER,
                          "the process at %s (rank %d) is not a pippy stage program (bad "
                          "handshake)", p->addr, p->rank);
    if (m->version != PIPPY_TRANSPORT_PROTOCOL_VERSION)
        return pippy_fail(PIPPY_ERR_PEER,
                          "rank %d at %s speaks transport protocol %u, this program speaks %u "
                          "(rebuild both with the same pippyc)", p->rank, p->addr, m->version,
                          PIPPY_TRANSPORT_PROTOCOL_VERSION);
    if (m->job_token != t->job_token)
        return pippy_fail(PIPPY_ERR_PEER,
                          "rank %d at %s belongs to another job (job token 0x%016llx vs ours "
                          "0x%016llx)", p->rank, p->addr, (unsigned long long)m->job_token,
                          (unsigned long long)t->job_token);
    if (m->model_hash != t->model_hash)
        return pippy_fail(PIPPY_ERR_PEER,
                          "rank %d at %s was compiled from a different model (hash 0x%016llx vs "
                          "ours 0x%016llx)", p->rank, p->addr, (unsigned long long)m->model_hash,
                          (unsigned long long)t->model_hash);
    if (m->rank != p->rank)
        return pippy_fail(PIPPY_ERR_PEER, "the process at %s says it is rank %d, expected rank %d",
                          p->addr, m->rank, p->rank);
    if (m->nranks != t->nranks)
        return pippy_fail(PIPPY_ERR_PEER,
                          "rank %d at %s runs a job of %d ranks, this one has %d ranks", p->rank,
                          p->addr, m->nranks, t->nranks);
    return PIPPY_OK;
}

static void ctrl_accept(pippy_transport *t)
{
    for (;;) {
        int fd = accept4(t->ctrl_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        ctrl_hello h;
        int q = -1;
        if (read_full(fd, &h, sizeof h, 1.0) == 0 && h.magic == CTRL_MAGIC &&
            h.job_token == t->job_token && h.rank >= 0 && h.rank < t->nranks)
            q = h.rank;
        peer_t *p = q >= 0 ? &t->peers[q] : NULL;
        if (!p || !p->expected || p->we_connect || p->ctrl_fd >= 0) {
            close(fd);
            continue;
        }
        p->ctrl_fd = fd;
    }
}

static pippy_status client_ctrl_connect(pippy_transport *t, peer_t *p, double left)
{
    char err[160];
    int fd = tcp_connect(&p->sa, p->salen, (uint16_t)p->hs_in.ctrl_port, left > 1 ? left : 1, err,
                         sizeof err);
    if (fd < 0)
        return pippy_fail(PIPPY_ERR_PEER, "cannot open the control connection to rank %d at %s "
                          "(port %u): %s", p->rank, p->addr, p->hs_in.ctrl_port, err);
    ctrl_hello h = {.magic = CTRL_MAGIC, .rank = t->rank, .job_token = t->job_token};
    if (send(fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t)sizeof h) {
        int e = errno;
        close(fd);
        return pippy_fail(PIPPY_ERR_PEER, "cannot greet rank %d at %s on its control connection: %s",
                          p->rank, p->addr, strerror(e));
    }
    p->ctrl_fd = fd;
    return PIPPY_OK;
}

/* Advance the connection with one peer. */
static pippy_status peer_step(pippy_transport *t, peer_t *p, double tn, double deadline)
{
    /* A ready peer stays ready: if it finished and left while we still wait for others, what
     * it sent us is here already (its leaving is reported when we wait on it). */
    if (p->state == PS_READY)
        return PIPPY_OK;
    if (p->ep && p->ep_failed) {
        snprintf(p->last_err, sizeof p->last_err, "%s", ucs_status_string(p->ep_status));
        if (p->we_connect && p->ep_status == UCS_ERR_REJECTED)
            return pippy_fail(PIPPY_ERR_PEER,
                              "rank %d at %s refused our connection (it does not expect rank %d "
                              "or already has it: two processes with the same rank?)",
                              p->rank, p->addr, t->rank);
        ep_drop(t, p);
        p->state = PS_IDLE;
        p->retry_at = tn + RETRY_S;
    }
    if (p->we_connect && p->state == PS_IDLE && tn >= p->retry_at)
        PIPPY_TRY(client_connect(t, p));
    if (p->hs_send && p->hs_send->state == RQ_DONE) {
        ucs_status_t s = p->hs_send->status;
        pool_put(t, p->hs_send);
        p->hs_send = NULL;
        if (s == UCS_OK) {
            p->hs_sent = 1;
        } else if (p->ep) {
            p->ep_failed = 1; /* retried (client) or awaited again (server) next step */
            p->ep_status = s;
        }
    }
    if (p->hs_recv && p->hs_recv->state == RQ_DONE) {
        ucs_status_t s = p->hs_recv->status;
        size_t got = p->hs_recv->got;
        pool_put(t, p->hs_recv);
        p->hs_recv = NULL;
        if (s != UCS_OK)
            return ucx_fail(__FILE__, __LINE__, s, "receiving the handshake of rank %d at %s",
                            p->rank, p->addr);
        if (got != sizeof(hs_msg))
            return pippy_fail(PIPPY_ERR_PEER, "the process at %s (rank %d) sent a handshake of %zu "
                              "bytes, not %zu: not a compatible pippy stage program", p->addr,
                              p->rank, got, sizeof(hs_msg));
        PIPPY_TRY(check_handshake(t, p));
        p->hs_ok = 1;
    }
    if (p->state == PS_CONNECTING && p->hs_ok && p->hs_sent) {
        if (p->we_connect && p->ctrl_fd < 0)
            PIPPY_TRY(client_ctrl_connect(t, p, deadline - tn));
        if (p->ctrl_fd >= 0)
            p->state = PS_READY;
    }
    return PIPPY_OK;
}

static pippy_status open_timeout(pippy_transport *t)
{
    char list[3000];
    size_t k = 0;
    list[0] = 0;
    for (int i = 0; i < t->n_peers && k < sizeof list - 200; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->state == PS_READY)
            continue;
        const char *what;
        if (p->we_connect)
            what = p->state == PS_IDLE ? "no listener answered" : "handshake not finished";
        else
            what = p->ep ? "handshake not finished" : "it never connected to us";
        k += (size_t)snprintf(list + k, sizeof list - k, "%srank %d at %s (%s%s%s)", k ? ", " : "",
                              p->rank, p->addr, what, p->last_err[0] ? "; last error: " : "",
                              p->last_err);
    }
    return pippy_fail(PIPPY_ERR_TIMEOUT,
                      "rank %d: timed out after %.1f s waiting for its peers; never came: %s",
                      t->rank, t->timeout_s, list);
}

static pippy_status check_tls_env(void)
{
    const char *tls = getenv("UCX_TLS");
    if (tls && !tls[0])
        return pippy_fail(PIPPY_ERR_USAGE, "UCX_TLS is set but empty: unset it, or list the "
                          "transports to use, tcp among them");
    if (tls && tls[0] != '^' && !strstr(tls, "tcp") && !strstr(tls, "all"))
        return pippy_fail(PIPPY_ERR_USAGE,
                          "UCX_TLS=%s lacks tcp, which UCX needs to set up connections by socket "
                          "address: add tcp (e.g. UCX_TLS=%s,tcp)", tls, tls);
    return PIPPY_OK;
}

pippy_status pippy_transport_open(const pippy_transport_config *c, const int *peers, int n_peers,
                                  pippy_transport **out)
{
    pippy_status st = PIPPY_OK;
    *out = NULL;
    if (!c || !c->hosts || c->nranks < 1 || c->nranks > PIPPY_TRANSPORT_MAX_RANKS ||
        c->rank < 0 || c->rank >= c->nranks || n_peers < 0 || (n_peers && !peers))
        return pippy_fail(PIPPY_ERR_USAGE, "transport: bad configuration (rank %d of %d ranks, "
                          "%d peers)", c ? c->rank : -1, c ? c->nranks : 0, n_peers);
    PIPPY_TRY(check_tls_env());

    pippy_transport *t = calloc(1, sizeof *t);
    if (!t)
        return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory");
    t->rank = c->rank;
    t->nranks = c->nranks;
    t->timeout_s = c->timeout_s > 0 ? c->timeout_s : 60.0;
    t->model_hash = c->model_hash;
    t->job_token = c->job_token;
    t->efd = -1;
    t->ctrl_listen_fd = -1;
    t->peers = calloc((size_t)c->nranks, sizeof *t->peers);
    t->peer_list = calloc((size_t)n_peers + 1, sizeof *t->peer_list);
    t->pfds = calloc((size_t)n_peers + 2, sizeof *t->pfds);
    t->pfd_rank = calloc((size_t)n_peers + 2, sizeof *t->pfd_rank);
    if (!t->peers || !t->peer_list || !t->pfds || !t->pfd_rank) {
        st = pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory");
        goto fail;
    }
    for (int r = 0; r < c->nranks; r++) {
        peer_t *p = &t->peers[r];
        p->t = t;
        p->rank = r;
        p->ctrl_fd = -1;
        snprintf(p->addr, sizeof p->addr, "%s", c->hosts[r] ? c->hosts[r] : "?");
    }
    for (int i = 0; i < n_peers; i++) {
        int q = peers[i];
        if (q < 0 || q >= c->nranks || q == c->rank || t->peers[q].expected) {
            st = pippy_fail(PIPPY_ERR_USAGE, "transport: rank %d: bad peer list (rank %d %s)",
                            c->rank, q, q == c->rank ? "is ourselves" : "is out of range or twice");
            goto fail;
        }
        peer_t *p = &t->peers[q];
        p->expected = 1;
        p->we_connect = q < c->rank;
        if ((st = resolve(c->hosts[q], q, &p->sa, &p->salen)) != PIPPY_OK)
            goto fail;
        t->peer_list[t->n_peers++] = q;
    }
    if ((st = pool_grow(t)) != PIPPY_OK)
        goto fail;

    /* Our address: the control listener takes any free port on it, UCX's takes the given one. */
    struct sockaddr_storage self;
    socklen_t self_len;
    if ((st = resolve(c->hosts[c->rank], c->rank, &self, &self_len)) != PIPPY_OK)
        goto fail;
    {
        struct sockaddr_storage cs = self;
        sa_set_port(&cs, 0);
        t->ctrl_listen_fd = socket(cs.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        socklen_t cl = sizeof cs;
        if (t->ctrl_listen_fd < 0 || bind(t->ctrl_listen_fd, (struct sockaddr *)&cs, self_len) < 0 ||
            listen(t->ctrl_listen_fd, 64) < 0 ||
            getsockname(t->ctrl_listen_fd, (struct sockaddr *)&cs, &cl) < 0) {
            st = pippy_fail(PIPPY_ERR_TRANSPORT, "%s:%d: rank %d cannot open its control socket on "
                            "%s: %s (is that host an address of this machine?)", __FILE__, __LINE__,
                            c->rank, c->hosts[c->rank], strerror(errno));
            goto fail;
        }
        t->ctrl_port = ntohs(cs.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&cs)->sin6_port
                                                      : ((struct sockaddr_in *)&cs)->sin_port);
    }
    t->hs_out = (hs_msg){.magic = HS_MAGIC, .version = PIPPY_TRANSPORT_PROTOCOL_VERSION,
                         .rank = c->rank, .nranks = c->nranks, .model_hash = c->model_hash,
                         .job_token = c->job_token, .ctrl_port = t->ctrl_port};

    char name[32];
    snprintf(name, sizeof name, "pippy-rank%d", c->rank);
    ucp_params_t up = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_TAG_SENDER_MASK |
                      UCP_PARAM_FIELD_ESTIMATED_NUM_EPS | UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP,
        .tag_sender_mask = TAG_SENDER_MASK,
        .estimated_num_eps = (size_t)(n_peers > 0 ? n_peers : 1),
        .name = name,
    };
    /* UCX's TCP connection manager binds its listener without SO_REUSEADDR by default: the
     * TIME_WAIT of the connections a closed job accepted keeps the port from the next job for
     * a minute. Turn it on unless the user chose. It must be the environment: in UCX 1.13
     * ucp_config_modify(cfg, "TCP_CM_REUSEADDR", "y") returns OK but does not reach the CM. */
    setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
    UCX_CHECK_GOTO(ucp_init(&up, NULL, &t->ctx), fail, "rank %d: ucp_init", c->rank);
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_CLIENT_ID |
                      UCP_WORKER_PARAM_FIELD_FLAGS,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
        .client_id = (uint64_t)c->rank,
        .flags = UCP_WORKER_FLAG_IGNORE_REQUEST_LEAK,
    };
    UCX_CHECK_GOTO(ucp_worker_create(t->ctx, &wp, &t->worker), fail, "rank %d: ucp_worker_create",
                   c->rank);
    if (ucp_worker_get_efd(t->worker, &t->efd) != UCS_OK)
        t->efd = -1; /* no wakeup: waits spin */
    const char *spin = getenv("PIPPY_SPIN_US");
    t->spin_s = spin && atof(spin) >= 0 ? atof(spin) * 1e-6 : SPIN_S;

    ucp_listener_params_t lp = {
        .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        .sockaddr = {.addr = (const struct sockaddr *)&self, .addrlen = self_len},
        .conn_handler = {.cb = conn_cb, .arg = t},
    };
    ucs_status_t ls = ucp_listener_create(t->worker, &lp, &t->listener);
    if (ls != UCS_OK) {
        t->listener = NULL;
        if (ls == UCS_ERR_BUSY)
            st = ucx_fail(__FILE__, __LINE__, ls, "rank %d cannot listen on %s: the port is in use "
                          "(another job, or an earlier run still holding it?)", c->rank,
                          c->hosts[c->rank]);
        else
            st = ucx_fail(__FILE__, __LINE__, ls, "rank %d cannot listen on %s (is that host an "
                          "address of this machine?)", c->rank, c->hosts[c->rank]);
        goto fail;
    }

    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if ((st = post_recv(t, p->rank, hs_tag(p->rank), 0, &p->hs_in, sizeof p->hs_in,
                            &p->hs_recv)) != PIPPY_OK)
            goto fail;
    }

    double start = now_s(), deadline = start + t->timeout_s;
    unsigned idle = 0;
    for (;;) {
        unsigned ev = ucp_worker_progress(t->worker);
        double tn = now_s();
        if (t->n_conn_q && (st = server_accept(t)) != PIPPY_OK)
            goto fail;
        ctrl_accept(t);
        int ready = 0;
        for (int i = 0; i < t->n_peers; i++) {
            peer_t *p = &t->peers[t->peer_list[i]];
            if ((st = peer_step(t, p, tn, deadline)) != PIPPY_OK)
                goto fail;
            ready += p->state == PS_READY;
        }
        if (ready == t->n_peers)
            break;
        if (tn > deadline) {
            st = open_timeout(t);
            goto fail;
        }
        if (ev) {
            idle = 0;
        } else if (++idle > 200) {
            /* Sleep briefly on the worker and the control listener. */
            idle = 0;
            struct pollfd pf[2] = {{.fd = t->ctrl_listen_fd, .events = POLLIN}, {.fd = -1}};
            if (t->efd >= 0 && ucp_worker_arm(t->worker) == UCS_OK) {
                pf[1].fd = t->efd;
                pf[1].events = POLLIN;
            }
            poll(pf, 2, 1);
        }
    }
    /* Every peer is in: stop listening, turn late or stray connection requests away. */
    for (int i = 0; i < t->n_conn_q; i++)
        ucp_listener_reject(t->listener, t->conn_q[i]);
    t->n_conn_q = 0;
    ucp_listener_destroy(t->listener);
    t->listener = NULL;
    close(t->ctrl_listen_fd);
    t->ctrl_listen_fd = -1;
    t->last_activity = now_s();
    *out = t;
    return PIPPY_OK;

fail:
    pippy_transport_close(t);
    return st;
}

/* ---- messages ---- */

static pippy_status check_peer(pippy_transport *t, int peer, uint64_t tag, const char *what)
{
    if (!t || peer < 0 || peer >= t->nranks || !t->peers[peer].expected ||
        t->peers[peer].state != PS_READY)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: %s to/from rank %d, which is not a "
                          "connected peer of rank %d", what, peer, t ? t->rank : -1);
    if (tag > PIPPY_TRANSPORT_TAG_MAX)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: tag 0x%llx has more than 48 bits",
                          (unsigned long long)tag);
    return PIPPY_OK;
}

pippy_status pippy_transport_isend(pippy_transport *t, int peer, uint64_t tag, const void *buf,
                                   size_t len, pippy_request **req)
{
    *req = NULL;
    PIPPY_TRY(check_peer(t, peer, tag, "send"));
    return post_send(t, peer, user_tag(t->rank, tag), tag, buf, len, req);
}

pippy_status pippy_transport_irecv(pippy_transport *t, int peer, uint64_t tag, void *buf,
                                   size_t len, pippy_request **req)
{
    *req = NULL;
    PIPPY_TRY(check_peer(t, peer, tag, "receive"));
    return post_recv(t, peer, user_tag(peer, tag), tag, buf, len, req);
}

static pippy_status finish(pippy_transport *t, pippy_request *r)
{
    ucs_status_t s = r->status;
    peer_t *p = &t->peers[r->peer];
    char d[400];
    describe(t, r, 0, d, sizeof d);
    pippy_status st = PIPPY_OK;
    if (s != UCS_OK && s != UCS_ERR_MESSAGE_TRUNCATED)
        poll_fds(t, 0, 0); /* the control socket may tell why */
    if (s == UCS_OK && r->is_recv && r->got != r->len)
        st = pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s: got %zu bytes, expected %zu", t->rank, d,
                        r->got, r->len);
    else if (s == UCS_ERR_MESSAGE_TRUNCATED)
        st = pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s: the message is larger than the %zu bytes "
                        "expected", t->rank, d, r->len);
    else if (s != UCS_OK && (p->gone || p->ep_failed || status_means_peer_gone(s)))
        st = pippy_fail(PIPPY_ERR_PEER, "rank %d: %s failed: rank %d %s (%s)", t->rank, d,
                        r->peer, p->gone ? p->gone_why : "went away", ucs_status_string(s));
    else if (s != UCS_OK)
        st = ucx_fail(__FILE__, __LINE__, s, "rank %d: %s", t->rank, d);
    pool_put(t, r);
    return st;
}

static int bad_request(const pippy_request *r)
{
    return !r || (r->state != RQ_PENDING && r->state != RQ_DONE);
}

pippy_status pippy_transport_wait(pippy_transport *t, pippy_request *r)
{
    if (!t || bad_request(r) || r->t != t)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: wait on a request that is not in flight");
    double start = now_s(), idle_since = 0;
    unsigned spins = 0;
    while (r->state == RQ_PENDING) {
        if (ucp_worker_progress(t->worker)) {
            idle_since = 0;
            continue;
        }
        double tn = now_s();
        if (tn - t->last_poll >= LIVENESS_S)
            poll_fds(t, 0, 0);
        peer_t *p = &t->peers[r->peer];
        if (p->gone && tn - p->gone_at >= PEER_GRACE_S) {
            char d[400];
            poll_fds(t, 0, 0); /* the control socket may tell more than UCX */
            describe(t, r, 1, d, sizeof d);
            req_release(t, r);
            return pippy_fail(PIPPY_ERR_PEER, "rank %d: rank %d at %s %s while we waited to %s",
                              t->rank, p->rank, p->addr, p->gone_why, d);
        }
        double ref = start > t->last_activity ? start : t->last_activity;
        if (tn - ref > t->timeout_s) {
            char d[400];
            describe(t, r, 0, d, sizeof d);
            req_release(t, r);
            return pippy_fail(PIPPY_ERR_TIMEOUT, "rank %d: timed out after %.1f s waiting to %s "
                              "(nothing completed meanwhile)", t->rank, t->timeout_s, d);
        }
        if (idle_since == 0) {
            idle_since = tn;
        } else if ((++spins & 255) == 0) {
            sched_yield(); /* let a rank that shares our core compute */
        }
        if (idle_since != 0 && tn - idle_since > t->spin_s && t->efd >= 0) {
            idle_since = 0;
            if (ucp_worker_arm(t->worker) == UCS_OK) {
                double left = t->timeout_s - (tn - ref);
                int us = left * 1e6 < SLEEP_US ? (int)(left * 1e6) + 1 : SLEEP_US;
                poll_fds(t, 1, us);
            }
        }
    }
    return finish(t, r);
}

int pippy_transport_test(pippy_transport *t, pippy_request *r)
{
    if (!t || bad_request(r))
        return 1;
    if (r->state == RQ_PENDING)
        ucp_worker_progress(t->worker);
    if (r->state != RQ_PENDING)
        return 1;
    double tn = now_s();
    if (tn - t->last_poll >= LIVENESS_S)
        poll_fds(t, 0, 0);
    peer_t *p = &t->peers[r->peer];
    return p->gone && tn - p->gone_at >= PEER_GRACE_S;
}

void pippy_transport_progress(pippy_transport *t)
{
    if (!t)
        return;
    while (ucp_worker_progress(t->worker))
        ;
    if (now_s() - t->last_poll >= LIVENESS_S)
        poll_fds(t, 0, 0);
}

int pippy_transport_rank(const pippy_transport *t) { return t ? t->rank : -1; }

const char *pippy_transport_peer_address(const pippy_transport *t, int rank)
{
    return t && rank >= 0 && rank < t->nranks ? t->peers[rank].addr : "?";
}

/* ---- close ---- */

/* Progress until the UCX requests reqs[i] (one per listed peer, NULL for none) complete, their
 * peer goes away, or the deadline passes; then free them. Sleeps on the worker while idle. */
static void wait_ucx_requests(pippy_transport *t, ucs_status_ptr_t *reqs, double deadline)
{
    for (;;) {
        while (ucp_worker_progress(t->worker))
            ;
        int open = 0;
        for (int i = 0; i < t->n_peers; i++) {
            if (!UCS_PTR_IS_PTR(reqs[i]))
                continue;
            if (ucp_request_check_status(reqs[i]) != UCS_INPROGRESS ||
                t->peers[t->peer_list[i]].gone) {
                ucp_request_free(reqs[i]); /* freed by UCX when it completes */
                reqs[i] = NULL;
            } else {
                open++;
            }
        }
        double tn = now_s();
        if (!open || tn >= deadline)
            break;
        int armed = t->efd >= 0 && ucp_worker_arm(t->worker) == UCS_OK;
        double left_us = (deadline - tn) * 1e6;
        poll_fds(t, armed, left_us < SLEEP_US ? (int)left_us + 1 : SLEEP_US);
    }
    for (int i = 0; i < t->n_peers; i++)
        if (UCS_PTR_IS_PTR(reqs[i]))
            ucp_request_free(reqs[i]);
}

void pippy_transport_close(pippy_transport *t)
{
    if (!t)
        return;
    if (t->worker) {
        /* Receives nobody will wait for: cancel them (sends are flushed by the closes). */
        for (int c = 0; c < t->n_chunks; c++)
            for (int i = 0; i < POOL_CHUNK; i++) {
                pippy_request *r = &t->chunks[c][i];
                if ((r->state == RQ_PENDING || r->state == RQ_ORPHAN) && r->is_recv && r->ucx)
                    ucp_request_cancel(t->worker, r->ucx);
            }
        while (ucp_worker_progress(t->worker))
            ;
        /* Flush what we sent to live peers, then close every endpoint in force mode. A close
         * in flush mode would also wait for the peer to acknowledge the disconnect, i.e. for
         * the peer to call into UCX, which a peer that is computing does not do for a while.
         * Over shared memory a flush is local; over TCP it may need the peer to progress, so
         * it may take up to timeout_s (less when the peer dies meanwhile). A flush towards a
         * dead peer only ends in UCX's endpoint timeout: skip those. */
        ucs_status_ptr_t creq[t->n_peers + 1];
        double deadline = now_s() + t->timeout_s;
        for (int i = 0; i < t->n_peers; i++) {
            peer_t *p = &t->peers[t->peer_list[i]];
            creq[i] = NULL;
            if (p->ep && !p->gone && !p->ep_failed && p->state == PS_READY) {
                ucp_request_param_t fp = {0};
                creq[i] = ucp_ep_flush_nbx(p->ep, &fp);
            }
        }
        wait_ucx_requests(t, creq, deadline);
        for (int i = 0; i < t->n_peers; i++) {
            peer_t *p = &t->peers[t->peer_list[i]];
            creq[i] = NULL;
            if (!p->ep)
                continue;
            ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                       .flags = UCP_EP_CLOSE_FLAG_FORCE};
            creq[i] = ucp_ep_close_nbx(p->ep, &prm);
            p->ep = NULL;
        }
        wait_ucx_requests(t, creq, now_s() + 0.5);
    }
    /* Our data is out: tell the peers we leave on purpose. */
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->ctrl_fd < 0)
            continue;
        char bye = CTRL_BYE;
        if (send(p->ctrl_fd, &bye, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            /* the peer is gone already: nothing to tell */
        }
        close(p->ctrl_fd);
        p->ctrl_fd = -1;
    }
    if (t->worker) {
        for (int i = 0; i < t->n_conn_q; i++)
            if (t->listener)
                ucp_listener_reject(t->listener, t->conn_q[i]);
        if (t->listener)
            ucp_listener_destroy(t->listener);
        ucp_worker_destroy(t->worker);
    }
    if (t->ctx)
        ucp_cleanup(t->ctx);
    if (t->ctrl_listen_fd >= 0)
        close(t->ctrl_listen_fd);
    for (int c = 0; c < t->n_chunks; c++)
        free(t->chunks[c]);
    free(t->chunks);
    free(t->peers);
    free(t->peer_list);
    free(t->pfds);
    free(t->pfd_rank);
    free(t);
}
