/* transport.c — see transport.h; the state is in transport_int.h, the listener and the
 * authenticated handshake in handshake.c.
 *
 * UCX tag layout: bits 63..48 the sender's rank, bits 47..0 the user tag XORed with the
 * session's mask for that direction (transport_int.h: mask_tx / mask_rx).
 *
 * While a wait is idle, the worker is armed and we sleep in ppoll() on the worker's event fd,
 * the control sockets and the handshake sockets together. The heartbeat thread only writes
 * frames on control sockets (and reads the wait state under hb_mu); UCX is used by the caller's
 * thread alone. */
#define _GNU_SOURCE
#include "transport_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define POOL_CHUNK 1024
/* An idle wait spins (yielding the core now and then) this long before it sleeps in ppoll()
 * (PIPPY_SPIN_US overrides it). Waking a sleeping process costs tens of microseconds, so a
 * ping-pong of short messages stays in the spin. A long spin costs more on a busy machine: a
 * rank that spins uses up its share of the core and, once the peer's data is there, waits behind
 * the other processes, where a sleeper is woken at once. Measured with the bench GPT in 2 stages
 * (1F1B) while others kept both cores busy: the 8-byte notes of the zero-copy path wake a
 * sleeping rank through the worker's event fd (10-40 us after the send when a core is free); the
 * median from a send to its receive completing was 1.4 ms with a 10 ms spin and 0.6 ms without
 * one. Steps, 8 interleaved runs each, 100 us against 10 ms: GPT 63.9 against 66.5 ms (faster in
 * 6 of 8 pairs), the seed MLP 20.5 against 37.7 ms (7 of 8). The sleeps stay short (SLEEP_US)
 * for what may not signal the event fd (a rendezvous request is only seen when we progress). */
#define SPIN_S 100e-6
#define SLEEP_US 200           /* longest sleep in ppoll() */
#define LIVENESS_S 0.002       /* how often a spinning wait polls the control sockets */

#define UCX_CHECK_GOTO(expr, label, ...)                                        \
    do {                                                                        \
        ucs_status_t ucx_s_ = (expr);                                           \
        if (ucx_s_ != UCS_OK) {                                                 \
            st = ucx_fail(__FILE__, __LINE__, ucx_s_, __VA_ARGS__);             \
            goto label;                                                         \
        }                                                                       \
    } while (0)

enum { RQ_FREE, RQ_PENDING, RQ_DONE, RQ_ORPHAN };

struct pippy_request {
    pippy_transport *t;
    void *ucx;                 /* UCX's request while in flight */
    int state, is_recv, peer;
    uint64_t tag;              /* user tag */
    size_t len, got;
    ucs_status_t status;
    pippy_request *next;       /* free list */
};

double pippy_tr_now(void)
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
    if (r->is_recv && s == UCS_OK)
        r->t->peers[r->peer].last_heard = pippy_tr_now(); /* data counts as life */
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
static pippy_status post_send(pippy_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                              pippy_request **out)
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
    uint64_t ucx_tag = (uint64_t)t->rank << TAG_RANK_SHIFT | ((tag ^ t->peers[peer].mask_tx) & TAG_USER_BITS);
    ucs_status_ptr_t p = ucp_tag_send_nbx(t->peers[peer].ep, buf, len, ucx_tag, &prm);
    if (p == NULL) {
        r->state = RQ_DONE;
        r->status = UCS_OK;
        r->got = len;
    } else if (UCS_PTR_IS_ERR(p)) {
        r->state = RQ_DONE;
        r->status = UCS_PTR_STATUS(p);
    } else if (r->state == RQ_PENDING) {
        r->ucx = p;
    }
    *out = r;
    return PIPPY_OK;
}

static pippy_status post_recv(pippy_transport *t, int peer, uint64_t tag, void *buf, size_t len,
                              pippy_request **out)
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
    uint64_t ucx_tag = (uint64_t)peer << TAG_RANK_SHIFT | ((tag ^ t->peers[peer].mask_rx) & TAG_USER_BITS);
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
        p->gone_at = pippy_tr_now();
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

static uint32_t get_le32(const uint8_t *b) { return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t)b[3] << 24; }

/* One whole frame from p's control connection. */
static void ctrl_frame(pippy_transport *t, peer_t *p)
{
    if (p->frame[0] == FRAME_BYE) {
        p->bye = 1;
        return;
    }
    if (p->frame[0] != FRAME_HEARTBEAT || p->frame[1] || p->frame[2] || p->frame[3]) {
        mark_gone(p, "broke the protocol (its control connection carried something else than a heartbeat)");
        return;
    }
    pthread_mutex_lock(&t->hb_mu);
    p->age_s = get_le32(p->frame + 4) * 1e-3;
    p->age_at = pippy_tr_now();
    pthread_mutex_unlock(&t->hb_mu);
}

static void ctrl_readable(pippy_transport *t, peer_t *p)
{
    uint8_t buf[256];
    for (;;) {
        ssize_t k = recv(p->ctrl_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0) {
            p->last_heard = pippy_tr_now();
            for (ssize_t i = 0; i < k; i++) {
                p->frame[p->frame_n++] = buf[i];
                if (p->frame_n == FRAME_BYTES) {
                    p->frame_n = 0;
                    ctrl_frame(t, p);
                }
            }
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

/* Poll the control sockets of ready peers, the handshake sockets (strangers are answered even
 * while the job runs) and, when armed, the worker's event fd, for up to timeout_us. */
static void poll_fds(pippy_transport *t, int with_efd, int timeout_us)
{
    int n = 0, hs = 0;
    if (with_efd && t->efd >= 0) {
        t->pfds[n] = (struct pollfd){.fd = t->efd, .events = POLLIN};
        t->pfd_what[n++] = -1;
    }
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->state != PS_READY || (p->gone && !p->gone_ucx) || p->ctrl_fd < 0)
            continue;
        t->pfds[n] = (struct pollfd){.fd = p->ctrl_fd, .events = POLLIN};
        t->pfd_what[n++] = p->rank;
    }
    int first_hs = n;
    n = pippy_tr_handshake_fds(t, n);
    t->last_poll = pippy_tr_now();
    if (n == 0)
        return;
    struct timespec ts = {timeout_us / 1000000, (long)(timeout_us % 1000000) * 1000};
    int k = ppoll(t->pfds, (nfds_t)n, &ts, NULL);
    for (int i = 0; k > 0 && i < n; i++) {
        if (!t->pfds[i].revents)
            continue;
        if (t->pfd_what[i] >= 0)
            ctrl_readable(t, &t->peers[t->pfd_what[i]]);
        else if (i >= first_hs)
            hs = 1;
    }
    if (hs && t->opened)
        pippy_tr_handshakes(t, pippy_tr_now()); /* server side only now: cannot fail */
}

/* How long ago p last knew of progress (its heartbeat, aged since). Under hb_mu. */
static double peer_age(const peer_t *p, double now) { return p->age_s + (now - p->age_at); }

/* ---- the heartbeat thread ---- */

static void hb_send(peer_t *p, const uint8_t *frame)
{
    if (p->hb_pend_n == 0) {
        memcpy(p->hb_pend, frame, FRAME_BYTES);
        p->hb_pend_n = FRAME_BYTES;
    }
    ssize_t k = send(p->ctrl_fd, p->hb_pend + FRAME_BYTES - p->hb_pend_n, (size_t)p->hb_pend_n,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k > 0)
        p->hb_pend_n -= (int)k; /* a frame cut short is finished next time: frames stay aligned */
}

static void *hb_main(void *arg)
{
    pippy_transport *t = arg;
    pthread_mutex_lock(&t->hb_mu);
    while (!t->hb_stop) {
        double now = pippy_tr_now(), age = 0;
        if (t->wait_peer >= 0) {
            double waited = now - t->wait_since, theirs = peer_age(&t->peers[t->wait_peer], now);
            age = waited < theirs ? waited : theirs;
        }
        uint32_t ms = age > 4e6 ? 4000000000u : (uint32_t)(age * 1e3);
        uint8_t frame[FRAME_BYTES] = {FRAME_HEARTBEAT, 0, 0, 0, (uint8_t)ms, (uint8_t)(ms >> 8),
                                      (uint8_t)(ms >> 16), (uint8_t)(ms >> 24)};
        for (int i = 0; i < t->n_peers; i++) {
            peer_t *p = &t->peers[t->peer_list[i]];
            if (p->hb_on)
                hb_send(p, frame);
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long ns = until.tv_nsec + (long)(t->hb_interval * 1e9);
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&t->hb_cv, &t->hb_mu, &until);
    }
    pthread_mutex_unlock(&t->hb_mu);
    return NULL;
}

static pippy_status hb_start(pippy_transport *t)
{
    t->hb_interval = t->timeout_s / 4 < 1.0 ? t->timeout_s / 4 : 1.0;
    int e = pthread_create(&t->hb_thread, NULL, hb_main, t);
    if (e)
        return pippy_fail(PIPPY_ERR_TRANSPORT, "rank %d: cannot start the heartbeat thread: %s", t->rank,
                          strerror(e));
    t->hb_started = 1;
    return PIPPY_OK;
}

static void hb_stop(pippy_transport *t)
{
    if (!t->hb_started)
        return;
    pthread_mutex_lock(&t->hb_mu);
    t->hb_stop = 1;
    pthread_cond_signal(&t->hb_cv);
    pthread_mutex_unlock(&t->hb_mu);
    pthread_join(t->hb_thread, NULL);
    t->hb_started = 0;
}

static void wait_begin(pippy_transport *t, int peer, double now)
{
    pthread_mutex_lock(&t->hb_mu);
    t->wait_peer = peer;
    t->wait_since = now;
    pthread_mutex_unlock(&t->hb_mu);
}

static void wait_end(pippy_transport *t)
{
    pthread_mutex_lock(&t->hb_mu);
    t->wait_peer = -1;
    pthread_mutex_unlock(&t->hb_mu);
}

/* ---- a peer passed the handshake (handshake.c calls these) ---- */

/* Our UCX endpoint to p's worker. Made before the handshake ends, on both sides: once an end
 * has its endpoint it is attached to the other's shared memory, which then outlives the other
 * process even if that one finishes and exits at once. */
pippy_status pippy_tr_peer_ep(pippy_transport *t, peer_t *p, const void *addr)
{
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = addr,
        .err_mode = UCP_ERR_HANDLING_MODE_NONE,
        .err_handler = {.cb = ep_err_cb, .arg = p},
    };
    ucs_status_t s = ucp_ep_create(t->worker, &ep, &p->ep);
    if (s != UCS_OK) {
        p->ep = NULL;
        return ucx_fail(__FILE__, __LINE__, s, "rank %d: connecting UCX to rank %d at %s", t->rank, p->rank,
                        p->addr);
    }
    p->ep_failed = 0;
    return PIPPY_OK;
}

/* An endpoint made for a handshake that then failed. */
void pippy_tr_peer_drop_ep(pippy_transport *t, peer_t *p)
{
    if (!p->ep)
        return;
    ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
    ucs_status_ptr_t r = ucp_ep_close_nbx(p->ep, &prm);
    if (UCS_PTR_IS_PTR(r)) {
        while (ucp_request_check_status(r) == UCS_INPROGRESS)
            ucp_worker_progress(t->worker);
        ucp_request_free(r);
    }
    p->ep = NULL;
}

/* The handshake with p is over: fd is its control connection from now on. */
void pippy_tr_peer_ready(pippy_transport *t, peer_t *p, int fd)
{
    double now = pippy_tr_now();
    pthread_mutex_lock(&t->hb_mu);
    p->ctrl_fd = fd;
    p->state = PS_READY;
    p->last_heard = now;
    p->age_s = 0;
    p->age_at = now;
    p->hb_on = 1;
    pthread_mutex_unlock(&t->hb_mu);
}

/* ---- messages ---- */

static pippy_status check_peer(pippy_transport *t, int peer, uint64_t tag, const char *what)
{
    if (!t || peer < 0 || peer >= t->nranks || !t->peers[peer].expected || t->peers[peer].state != PS_READY)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: %s to/from rank %d, which is not a connected peer of rank %d",
                          what, peer, t ? t->rank : -1);
    if (tag > PIPPY_TRANSPORT_TAG_MAX)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: tag 0x%llx has more than 48 bits", (unsigned long long)tag);
    return PIPPY_OK;
}

pippy_status pippy_transport_isend(pippy_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                                   pippy_request **req)
{
    *req = NULL;
    PIPPY_TRY(check_peer(t, peer, tag, "send"));
    return post_send(t, peer, tag, buf, len, req);
}

pippy_status pippy_transport_irecv(pippy_transport *t, int peer, uint64_t tag, void *buf, size_t len,
                                   pippy_request **req)
{
    *req = NULL;
    PIPPY_TRY(check_peer(t, peer, tag, "receive"));
    return post_recv(t, peer, tag, buf, len, req);
}

/* "receive tag 0x5 from rank 1 at host:port" (or "... from it" when short). */
static void describe(const pippy_transport *t, const pippy_request *r, int short_form, char *buf, size_t n)
{
    if (short_form)
        snprintf(buf, n, "%s tag 0x%llx %s it", r->is_recv ? "receive" : "send", (unsigned long long)r->tag,
                 r->is_recv ? "from" : "to");
    else
        snprintf(buf, n, "%s tag 0x%llx %s rank %d at %s", r->is_recv ? "receive" : "send",
                 (unsigned long long)r->tag, r->is_recv ? "from" : "to", r->peer, t->peers[r->peer].addr);
}

static int status_means_peer_gone(ucs_status_t s)
{
    return s == UCS_ERR_CONNECTION_RESET || s == UCS_ERR_ENDPOINT_TIMEOUT || s == UCS_ERR_NOT_CONNECTED ||
           s == UCS_ERR_UNREACHABLE || s == UCS_ERR_CANCELED || s == UCS_ERR_REJECTED;
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
        st = pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s: got %zu bytes, expected %zu", t->rank, d, r->got, r->len);
    else if (s == UCS_ERR_MESSAGE_TRUNCATED)
        st = pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s: the message is larger than the %zu bytes expected", t->rank,
                        d, r->len);
    else if (s != UCS_OK && (p->gone || p->ep_failed || status_means_peer_gone(s)))
        st = pippy_fail(PIPPY_ERR_PEER, "rank %d: %s failed: rank %d %s (%s)", t->rank, d, r->peer,
                        p->gone ? p->gone_why : "went away", ucs_status_string(s));
    else if (s != UCS_OK)
        st = ucx_fail(__FILE__, __LINE__, s, "rank %d: %s", t->rank, d);
    pool_put(t, r);
    return st;
}

static int bad_request(const pippy_request *r) { return !r || (r->state != RQ_PENDING && r->state != RQ_DONE); }

/* Why a wait on r must stop now (see transport.h, Liveness), or PIPPY_OK to go on. */
static pippy_status wait_verdict(pippy_transport *t, pippy_request *r, double now)
{
    peer_t *p = &t->peers[r->peer];
    char d[400];
    if (p->gone && now - p->gone_at >= PEER_GRACE_S) {
        poll_fds(t, 0, 0); /* the control socket may tell more than UCX */
        describe(t, r, 1, d, sizeof d);
        return pippy_fail(PIPPY_ERR_PEER, "rank %d: rank %d at %s %s while we waited to %s", t->rank, p->rank,
                          p->addr, p->gone_why, d);
    }
    if (now - p->last_heard > t->timeout_s) {
        describe(t, r, 0, d, sizeof d);
        return pippy_fail(PIPPY_ERR_TIMEOUT,
                          "rank %d: rank %d at %s sent nothing (no data, no heartbeat) for %.1f s while we waited to "
                          "%s: it is stopped, hung or cut off",
                          t->rank, p->rank, p->addr, now - p->last_heard, d);
    }
    pthread_mutex_lock(&t->hb_mu);
    double theirs = peer_age(p, now), waited = now - t->wait_since;
    pthread_mutex_unlock(&t->hb_mu);
    if (waited > t->timeout_s && theirs > t->timeout_s) {
        describe(t, r, 0, d, sizeof d);
        return pippy_fail(PIPPY_ERR_TIMEOUT,
                          "rank %d: nothing moved for %.1f s while we waited to %s: that rank is alive but waits "
                          "too (no progress it knows of for %.1f s) — the ranks wait for each other (do their action "
                          "lists match?) or one further along is stuck",
                          t->rank, waited, d, theirs);
    }
    return PIPPY_OK;
}

static int all_pending(pippy_request *const *reqs, int n)
{
    for (int i = 0; i < n; i++)
        if (reqs[i]->state != RQ_PENDING)
            return 0;
    return 1;
}

/* Progress until one of reqs[0..n) is no longer pending, or a verdict (on any of them) stops
 * the wait; the heartbeats report us waiting on reqs[0]'s peer. */
static pippy_status wait_until(pippy_transport *t, pippy_request *const *reqs, int n)
{
    double idle_since = 0;
    unsigned spins = 0;
    if (all_pending(reqs, n))
        wait_begin(t, reqs[0]->peer, pippy_tr_now());
    while (all_pending(reqs, n)) {
        if (ucp_worker_progress(t->worker)) {
            idle_since = 0;
            continue;
        }
        double tn = pippy_tr_now();
        if (tn - t->last_poll >= LIVENESS_S)
            poll_fds(t, 0, 0); /* before any verdict: what arrived while we computed counts */
        for (int i = 0; i < n; i++) {
            pippy_status st = wait_verdict(t, reqs[i], tn);
            if (st != PIPPY_OK) {
                wait_end(t);
                return st;
            }
        }
        if (idle_since == 0) {
            idle_since = tn;
        } else if ((++spins & 255) == 0) {
            sched_yield(); /* let a rank that shares our core compute */
        }
        if (idle_since != 0 && tn - idle_since > t->spin_s && t->efd >= 0) {
            idle_since = 0;
            if (ucp_worker_arm(t->worker) == UCS_OK)
                poll_fds(t, 1, SLEEP_US);
        }
    }
    wait_end(t);
    return PIPPY_OK;
}

pippy_status pippy_transport_wait(pippy_transport *t, pippy_request *r)
{
    if (!t || bad_request(r) || r->t != t)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: wait on a request that is not in flight");
    pippy_status st = wait_until(t, &r, 1);
    if (st != PIPPY_OK) {
        req_release(t, r);
        return st;
    }
    return finish(t, r);
}

pippy_status pippy_transport_wait_any(pippy_transport *t, pippy_request *const *reqs, int n)
{
    if (!t || n < 1)
        return pippy_fail(PIPPY_ERR_INVALID, "transport: wait on no request");
    for (int i = 0; i < n; i++)
        if (bad_request(reqs[i]) || reqs[i]->t != t)
            return pippy_fail(PIPPY_ERR_INVALID, "transport: wait on a request that is not in flight");
    return wait_until(t, reqs, n);
}

int pippy_transport_test(pippy_transport *t, pippy_request *r)
{
    if (!t || bad_request(r))
        return 1;
    if (r->state == RQ_PENDING)
        ucp_worker_progress(t->worker);
    if (r->state != RQ_PENDING)
        return 1;
    double tn = pippy_tr_now();
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
    if (pippy_tr_now() - t->last_poll >= LIVENESS_S)
        poll_fds(t, 0, 0);
}

int pippy_transport_rank(const pippy_transport *t) { return t ? t->rank : -1; }

const char *pippy_transport_peer_address(const pippy_transport *t, int rank)
{
    return t && rank >= 0 && rank < t->nranks ? t->peers[rank].addr : "?";
}

/* ---- open ---- */

static pippy_status open_timeout(pippy_transport *t)
{
    char list[3000];
    size_t k = 0;
    list[0] = 0;
    for (int i = 0; i < t->n_peers && k < sizeof list - 300; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->state == PS_READY)
            continue;
        const char *what = p->we_connect ? (p->state == PS_IDLE ? "it did not accept our connection"
                                                                : "the handshake did not finish")
                                         : "it never connected to us";
        k += (size_t)snprintf(list + k, sizeof list - k, "%srank %d at %s (%s%s%s)", k ? ", " : "", p->rank,
                              p->addr, what, p->last_err[0] ? "; last: " : "", p->last_err);
    }
    return pippy_fail(PIPPY_ERR_TIMEOUT, "rank %d: timed out after %.1f s waiting for its peers; never came: %s",
                      t->rank, t->timeout_s, list);
}

static pippy_status check_tls_env(void)
{
    const char *tls = getenv("UCX_TLS");
    if (tls && !tls[0])
        return pippy_fail(PIPPY_ERR_USAGE, "UCX_TLS is set but empty: unset it, or list the transports to use");
    return PIPPY_OK;
}

/* Write the worker address where PIPPY_TEST_WORKER_ADDRESS_FILE says (the intruder test). */
static void test_leak_address(const pippy_transport *t)
{
    const char *path = getenv("PIPPY_TEST_WORKER_ADDRESS_FILE");
    if (!path || !*path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.rank%d.tmp", path, t->rank);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return;
    int ok = fwrite(t->worker_addr, 1, t->worker_addr_len, f) == t->worker_addr_len;
    if (fclose(f) == 0 && ok) {
        char fin[4096];
        snprintf(fin, sizeof fin, "%s.rank%d", path, t->rank);
        rename(tmp, fin);
    }
}

static pippy_status open_ucx(pippy_transport *t, int n_peers)
{
    pippy_status st = PIPPY_OK;
    char name[32];
    snprintf(name, sizeof name, "pippy-rank%d", t->rank);
    ucp_params_t up = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS | UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP,
        .estimated_num_eps = (size_t)(n_peers > 0 ? n_peers : 1),
        .name = name,
    };
    UCX_CHECK_GOTO(ucp_init(&up, NULL, &t->ctx), fail, "rank %d: ucp_init", t->rank);
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE | UCP_WORKER_PARAM_FIELD_FLAGS,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
        .flags = UCP_WORKER_FLAG_IGNORE_REQUEST_LEAK,
    };
    UCX_CHECK_GOTO(ucp_worker_create(t->ctx, &wp, &t->worker), fail, "rank %d: ucp_worker_create", t->rank);
    if (ucp_worker_get_efd(t->worker, &t->efd) != UCS_OK)
        t->efd = -1; /* no wakeup: waits spin */
    const char *spin = getenv("PIPPY_SPIN_US");
    t->spin_s = spin && atof(spin) >= 0 ? atof(spin) * 1e-6 : SPIN_S;
    ucp_address_t *a = NULL;
    UCX_CHECK_GOTO(ucp_worker_get_address(t->worker, &a, &t->worker_addr_len), fail,
                   "rank %d: ucp_worker_get_address", t->rank);
    if (t->worker_addr_len == 0 || t->worker_addr_len > MAX_WORKER_ADDR) {
        ucp_worker_release_address(t->worker, a);
        return pippy_fail(PIPPY_ERR_TRANSPORT, "rank %d: UCX worker address of %zu bytes (at most %d handled)",
                          t->rank, t->worker_addr_len, MAX_WORKER_ADDR);
    }
    t->worker_addr = malloc(t->worker_addr_len);
    if (t->worker_addr)
        memcpy(t->worker_addr, a, t->worker_addr_len);
    ucp_worker_release_address(t->worker, a);
    if (!t->worker_addr)
        return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory");
    test_leak_address(t);
fail:
    return st;
}

static pippy_status open_alloc(pippy_transport *t, const pippy_transport_config *c, const int *peers, int n_peers)
{
    t->rank = c->rank;
    t->nranks = c->nranks;
    t->timeout_s = c->timeout_s > 0 ? c->timeout_s : 60.0;
    t->model_hash = c->model_hash;
    t->key = *c->key;
    t->efd = -1;
    t->listen_fd = -1;
    t->wait_peer = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->hb_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&t->hb_mu, NULL);
    t->hb_init = 1;
    t->max_pfds = n_peers + 2 + MAX_PENDING + n_peers;
    t->peers = calloc((size_t)c->nranks, sizeof *t->peers);
    t->peer_list = calloc((size_t)n_peers + 1, sizeof *t->peer_list);
    t->pfds = calloc((size_t)t->max_pfds, sizeof *t->pfds);
    t->pfd_what = calloc((size_t)t->max_pfds, sizeof *t->pfd_what);
    if (!t->peers || !t->peer_list || !t->pfds || !t->pfd_what)
        return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory");
    for (int r = 0; r < c->nranks; r++) {
        peer_t *p = &t->peers[r];
        p->t = t;
        p->rank = r;
        p->ctrl_fd = -1;
        snprintf(p->addr, sizeof p->addr, "%s", c->hosts[r] ? c->hosts[r] : "?");
    }
    for (int i = 0; i < n_peers; i++) {
        int q = peers[i];
        if (q < 0 || q >= c->nranks || q == c->rank || t->peers[q].expected)
            return pippy_fail(PIPPY_ERR_USAGE, "transport: rank %d: bad peer list (rank %d %s)", c->rank, q,
                              q == c->rank ? "is ourselves" : "is out of range or twice");
        peer_t *p = &t->peers[q];
        p->expected = 1;
        p->we_connect = q < c->rank;
        PIPPY_TRY(pippy_tr_resolve(c->hosts[q], q, &p->sa, &p->salen));
        t->peer_list[t->n_peers++] = q;
    }
    return pool_grow(t);
}

/* Until every peer is ready or the deadline: handshakes, UCX progress, short sleeps. */
static pippy_status open_loop(pippy_transport *t)
{
    double deadline = pippy_tr_now() + t->timeout_s;
    for (;;) {
        while (ucp_worker_progress(t->worker))
            ;
        double now = pippy_tr_now();
        PIPPY_TRY(pippy_tr_handshakes(t, now));
        int ready = 0;
        for (int i = 0; i < t->n_peers; i++)
            ready += t->peers[t->peer_list[i]].state == PS_READY;
        if (ready == t->n_peers)
            return PIPPY_OK;
        if (now > deadline)
            return open_timeout(t);
        int n = pippy_tr_handshake_fds(t, 0);
        if (t->efd >= 0 && n < t->max_pfds && ucp_worker_arm(t->worker) == UCS_OK)
            t->pfds[n++] = (struct pollfd){.fd = t->efd, .events = POLLIN};
        poll(t->pfds, (nfds_t)n, 2);
    }
}

pippy_status pippy_transport_open(const pippy_transport_config *c, const int *peers, int n_peers,
                                  pippy_transport **out)
{
    *out = NULL;
    if (!c || !c->hosts || !c->key || c->nranks < 1 || c->nranks > PIPPY_TRANSPORT_MAX_RANKS || c->rank < 0 ||
        c->rank >= c->nranks || n_peers < 0 || (n_peers && !peers))
        return pippy_fail(PIPPY_ERR_USAGE, "transport: bad configuration (rank %d of %d ranks, %d peers%s)",
                          c ? c->rank : -1, c ? c->nranks : 0, n_peers, c && !c->key ? ", no job key" : "");
    PIPPY_TRY(check_tls_env());
    pippy_transport *t = calloc(1, sizeof *t);
    if (!t)
        return pippy_fail(PIPPY_ERR_NOMEM, "transport: out of memory");
    pippy_status st = open_alloc(t, c, peers, n_peers);
    if (st == PIPPY_OK)
        st = pippy_tr_listen(t, c->hosts[c->rank]);
    if (st == PIPPY_OK)
        st = open_ucx(t, n_peers);
    if (st == PIPPY_OK)
        st = hb_start(t);
    if (st == PIPPY_OK)
        st = open_loop(t);
    if (st != PIPPY_OK) {
        pippy_transport_close(t);
        return st;
    }
    t->opened = 1; /* the listener stays: latecomers are told the job runs */
    *out = t;
    return PIPPY_OK;
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
            if (ucp_request_check_status(reqs[i]) != UCS_INPROGRESS || t->peers[t->peer_list[i]].gone) {
                ucp_request_free(reqs[i]); /* freed by UCX when it completes */
                reqs[i] = NULL;
            } else {
                open++;
            }
        }
        double tn = pippy_tr_now();
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

/* Cancel receives nobody will wait for, flush what we sent to live peers, then close every
 * endpoint in force mode. A close in flush mode would also wait for the peer to acknowledge the
 * disconnect, i.e. for the peer to call into UCX, which a peer that is computing does not do
 * for a while. Over shared memory a flush is local; over TCP it may need the peer to progress,
 * so it may take up to timeout_s (less when the peer dies meanwhile). A flush towards a dead
 * peer only ends in UCX's endpoint timeout: skip those. */
static void close_ucx(pippy_transport *t)
{
    for (int c = 0; c < t->n_chunks; c++)
        for (int i = 0; i < POOL_CHUNK; i++) {
            pippy_request *r = &t->chunks[c][i];
            if ((r->state == RQ_PENDING || r->state == RQ_ORPHAN) && r->is_recv && r->ucx)
                ucp_request_cancel(t->worker, r->ucx);
        }
    while (ucp_worker_progress(t->worker))
        ;
    ucs_status_ptr_t creq[t->n_peers + 1];
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        creq[i] = NULL;
        if (p->ep && !p->gone && !p->ep_failed && p->state == PS_READY) {
            ucp_request_param_t fp = {0};
            creq[i] = ucp_ep_flush_nbx(p->ep, &fp);
        }
    }
    wait_ucx_requests(t, creq, pippy_tr_now() + t->timeout_s);
    for (int i = 0; i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        creq[i] = NULL;
        if (!p->ep)
            continue;
        ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
        creq[i] = ucp_ep_close_nbx(p->ep, &prm);
        p->ep = NULL;
    }
    wait_ucx_requests(t, creq, pippy_tr_now() + 0.5);
}

/* Take in the messages nobody received (tags that matched no receive: forged by a stranger that
 * reached the worker, or sent by a peer whose action list does not fit ours) and say how many. */
static void drop_unexpected(pippy_transport *t)
{
    long n = 0;
    size_t bytes = 0;
    for (int rounds = 0; rounds < 100000; rounds++) {
        ucp_tag_recv_info_t info;
        ucp_tag_message_h msg = ucp_tag_probe_nb(t->worker, 0, 0, 1, &info);
        if (!msg)
            break;
        void *buf = malloc(info.length ? info.length : 1);
        ucp_request_param_t prm = {0};
        ucs_status_ptr_t q = buf ? ucp_tag_msg_recv_nbx(t->worker, buf, info.length, msg, &prm) : NULL;
        for (double until = pippy_tr_now() + 0.5;
             UCS_PTR_IS_PTR(q) && ucp_request_check_status(q) == UCS_INPROGRESS && pippy_tr_now() < until;)
            ucp_worker_progress(t->worker);
        if (UCS_PTR_IS_PTR(q)) {
            ucp_request_cancel(t->worker, q);
            ucp_request_free(q);
        }
        free(buf);
        n++;
        bytes += info.length;
    }
    if (n)
        pippy_tr_warn(t, "dropped %ld message%s (%zu bytes) that matched no receive: forged by a process that "
                      "reached this rank's UCX worker, or sent by a rank whose action list does not fit this one's",
                      n, n == 1 ? "" : "s", bytes);
}

void pippy_transport_close(pippy_transport *t)
{
    if (!t)
        return;
    if (t->worker) {
        close_ucx(t);
        drop_unexpected(t);
    }
    hb_stop(t);
    /* Our data is out: tell the peers we leave on purpose (after a frame the heartbeat thread
     * left half-written, so the peer reads whole frames). */
    uint8_t bye[FRAME_BYTES] = {FRAME_BYE};
    for (int i = 0; t->peers && i < t->n_peers; i++) {
        peer_t *p = &t->peers[t->peer_list[i]];
        if (p->ctrl_fd < 0)
            continue;
        if (p->hb_pend_n)
            hb_send(p, bye);
        if (!p->hb_pend_n)
            hb_send(p, bye);
        close(p->ctrl_fd);
        p->ctrl_fd = -1;
    }
    pippy_tr_conns_close(t);
    if (t->worker)
        ucp_worker_destroy(t->worker);
    if (t->ctx)
        ucp_cleanup(t->ctx);
    if (t->hb_init) {
        pthread_mutex_destroy(&t->hb_mu);
        pthread_cond_destroy(&t->hb_cv);
    }
    for (int c = 0; c < t->n_chunks; c++)
        free(t->chunks[c]);
    free(t->chunks);
    free(t->worker_addr);
    free(t->peers);
    free(t->peer_list);
    free(t->pfds);
    free(t->pfd_what);
    free(t);
}
