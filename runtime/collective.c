/* collective.c — see collective.h.
 *
 * Element types share one implementation: the algorithms move bytes (element size es) and call
 * pippy_coll_combine, the only place that knows the types.
 *
 * Tags within a collective's span: the all-reduce's step s (0 .. 2n - 3: n - 1 reduce-scatter
 * steps, then n - 1 all-gather steps) and piece p (0 .. P - 1) use tag_base + s * P + p, with
 * P = min(PIPPY_COLL_MAX_PIECES, SPAN / (2n - 2)) so that every tag fits in the span; broadcast
 * and reduce use tag_base + p. */
#include "collective.h"

#include <math.h>
#include <string.h>

#define PIPPY_COLL_MAX_PIECES 64
#define PIPPY_COLL_PIECE_BYTES ((size_t)1 << 20) /* smallest piece worth a message of its own (measured: 256 KB pieces were slower) */

typedef struct {
    pippy_transport *t;
    const pippy_group *g;
    const char *what; /* "allreduce", ... for messages */
    int32_t dtype;
    size_t es;        /* element size */
    pippy_reduce_op op;
    uint64_t tag_base;
} pippy_coll;

/* ---- the element types ---- */

#define PIPPY_COLL_COMBINE(T, dst, src, n, op)                                        \
    do {                                                                              \
        T *restrict d_ = (T *)(dst);                                                  \
        const T *restrict s_ = (const T *)(src);                                      \
        if ((op) == PIPPY_REDUCE_SUM)                                                 \
            for (size_t i_ = 0; i_ < (n); i_++)                                       \
                d_[i_] = d_[i_] + s_[i_];                                             \
        else                                                                          \
            for (size_t i_ = 0; i_ < (n); i_++)                                       \
                d_[i_] = (s_[i_] > d_[i_] || isnan(s_[i_])) ? s_[i_] : d_[i_];        \
    } while (0)

/* dst[i] = dst[i] op src[i] (a sum is commutative in IEEE arithmetic, so which of the two
 * buffers holds the running value does not change the result). */
static void pippy_coll_combine(int32_t dtype, pippy_reduce_op op, void *dst, const void *src, size_t n)
{
    if (dtype == PIPPY_DT_FLOAT)
        PIPPY_COLL_COMBINE(float, dst, src, n, op);
    else
        PIPPY_COLL_COMBINE(double, dst, src, n, op);
}

/* ---- checks and messages ---- */

static pippy_status pippy_coll_check(const pippy_coll *c, int root, int has_root, size_t count)
{
    const pippy_group *g = c->g;
    if (!g || !g->ranks || g->n < 1 || g->me < 0 || g->me >= g->n)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: bad group (%d members, this one at index %d)", c->what,
                          g ? g->n : 0, g ? g->me : -1);
    if (g->ranks[g->me] != pippy_transport_rank(c->t))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: the group puts rank %d at index %d, but this process is rank %d",
                          c->what, g->ranks[g->me], g->me, pippy_transport_rank(c->t));
    for (int i = 0; i < g->n; i++)
        for (int j = 0; j < i; j++)
            if (g->ranks[i] == g->ranks[j])
                return pippy_fail(PIPPY_ERR_INVALID, "%s: rank %d is in the group twice", c->what, g->ranks[i]);
    if (has_root && (root < 0 || root >= g->n))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: root index %d outside the group of %d", c->what, root, g->n);
    if (c->es == 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: element type %s (expected float or double)", c->what,
                          pippy_dtype_name(c->dtype));
    if (c->op != PIPPY_REDUCE_SUM && c->op != PIPPY_REDUCE_MAX)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: unknown reduction %d", c->what, (int)c->op);
    if (c->tag_base > PIPPY_TRANSPORT_TAG_MAX + 1 - PIPPY_COLLECTIVE_TAG_SPAN)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: tag_base %#llx leaves no room for %llu tags under the 48-bit limit",
                          c->what, (unsigned long long)c->tag_base, (unsigned long long)PIPPY_COLLECTIVE_TAG_SPAN);
    if (count > SIZE_MAX / c->es)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: %zu elements overflow the address space", c->what, count);
    return PIPPY_OK;
}

static pippy_status pippy_coll_failed(const pippy_coll *c, pippy_status st)
{
    return pippy_error_prefix(st, "%s (group of %d, member %d = rank %d)", c->what, c->g->n, c->g->me,
                              c->g->ranks[c->g->me]);
}

/* ---- pieces ---- */

/* Start and length of piece p of P of a run of len elements (lengths differ by at most one). */
static void pippy_coll_split(size_t len, size_t parts, size_t p, size_t *start, size_t *n)
{
    size_t base = len / parts, rem = len % parts;
    *start = p * base + (p < rem ? p : rem);
    *n = base + (p < rem ? 1 : 0);
}

/* Pieces for a run of len elements: enough that each is about PIECE_BYTES, at most max. */
static size_t pippy_coll_pieces(const pippy_coll *c, size_t len, size_t max)
{
    if (len == 0)
        return 0;
    size_t want = (len * c->es + PIPPY_COLL_PIECE_BYTES - 1) / PIPPY_COLL_PIECE_BYTES;
    return want < 1 ? 1 : want > max ? max : want;
}

/* Post receives of every piece of a run of len elements from peer into dst (tags tag + p). */
static pippy_status pippy_coll_post_recvs(const pippy_coll *c, int peer, uint64_t tag, char *dst, size_t len,
                                          size_t P, pippy_request **req)
{
    for (size_t p = 0; p < P; p++) {
        size_t s, n;
        pippy_coll_split(len, P, p, &s, &n);
        PIPPY_TRY(pippy_transport_irecv(c->t, peer, tag + p, dst + s * c->es, n * c->es, &req[p]));
    }
    return PIPPY_OK;
}

static pippy_status pippy_coll_send_piece(const pippy_coll *c, int peer, uint64_t tag, const char *src, size_t len,
                                          size_t P, size_t p, pippy_request **req)
{
    size_t s, n;
    pippy_coll_split(len, P, p, &s, &n);
    return pippy_transport_isend(c->t, peer, tag + p, src + s * c->es, n * c->es, req);
}

static pippy_status pippy_coll_wait_all(const pippy_coll *c, pippy_request **req, size_t n)
{
    for (size_t p = 0; p < n; p++)
        PIPPY_TRY(pippy_transport_wait(c->t, req[p]));
    return PIPPY_OK;
}

/* ---- all-reduce ---- */

size_t pippy_allreduce_scratch_elems(int n, size_t count)
{
    return n <= 1 ? 0 : count / (size_t)n + (count % (size_t)n != 0);
}

size_t pippy_reduce_scratch_elems(int n, size_t count) { return n <= 1 ? 0 : count; }

/* One ring step: send segment so of buf to the right, receive segment si from the left into
 * dst (scratch when reducing, else buf's segment); reduce each piece as it arrives. */
static pippy_status pippy_ring_step(const pippy_coll *c, char *buf, size_t count, int so, int si, uint64_t tag,
                                    size_t maxP, char *scratch)
{
    const pippy_group *g = c->g;
    int right = g->ranks[(g->me + 1) % g->n], left = g->ranks[(g->me + g->n - 1) % g->n];
    size_t os, on, is, in;
    pippy_coll_split(count, (size_t)g->n, (size_t)so, &os, &on);
    pippy_coll_split(count, (size_t)g->n, (size_t)si, &is, &in);
    size_t oP = pippy_coll_pieces(c, on, maxP), iP = pippy_coll_pieces(c, in, maxP);
    pippy_request *rq[PIPPY_COLL_MAX_PIECES], *sq[PIPPY_COLL_MAX_PIECES];
    char *dst = scratch ? scratch : buf + is * c->es;
    PIPPY_TRY(pippy_coll_post_recvs(c, left, tag, dst, in, iP, rq));
    for (size_t p = 0; p < oP; p++)
        PIPPY_TRY(pippy_coll_send_piece(c, right, tag, buf + os * c->es, on, oP, p, &sq[p]));
    for (size_t p = 0; p < iP; p++) {
        PIPPY_TRY(pippy_transport_wait(c->t, rq[p]));
        if (scratch) {
            size_t s, n;
            pippy_coll_split(in, iP, p, &s, &n);
            pippy_coll_combine(c->dtype, c->op, buf + (is + s) * c->es, scratch + s * c->es, n);
        }
    }
    return pippy_coll_wait_all(c, sq, oP);
}

pippy_status pippy_allreduce(pippy_transport *t, const pippy_group *g, int32_t dtype, void *buf, size_t count,
                             pippy_reduce_op op, uint64_t tag_base, void *scratch)
{
    pippy_coll c = {t, g, "allreduce", dtype, 0, op, tag_base};
    c.es = dtype == PIPPY_DT_FLOAT || dtype == PIPPY_DT_DOUBLE ? pippy_dtype_size(dtype) : 0;
    PIPPY_TRY(pippy_coll_check(&c, 0, 0, count));
    int n = g->n, i = g->me;
    if (n == 1 || count == 0)
        return PIPPY_OK;
    if (!scratch)
        return pippy_fail(PIPPY_ERR_INVALID, "allreduce: no scratch (%zu elements needed)",
                          pippy_allreduce_scratch_elems(n, count));
    size_t steps = 2 * (size_t)(n - 1), maxP = PIPPY_COLLECTIVE_TAG_SPAN / steps;
    if (maxP > PIPPY_COLL_MAX_PIECES)
        maxP = PIPPY_COLL_MAX_PIECES;
    for (int k = 0; k < n - 1; k++) { /* reduce-scatter: afterwards segment i + 1 is whole here */
        int so = (i - k + n) % n, si = (i - k - 1 + 2 * n) % n;
        pippy_status st = pippy_ring_step(&c, buf, count, so, si, tag_base + (uint64_t)k * maxP, maxP, scratch);
        if (st != PIPPY_OK)
            return pippy_coll_failed(&c, st);
    }
    for (int k = 0; k < n - 1; k++) { /* all-gather */
        int so = (i + 1 - k + n) % n, si = (i - k + n) % n;
        uint64_t tag = tag_base + (uint64_t)(n - 1 + k) * maxP;
        pippy_status st = pippy_ring_step(&c, buf, count, so, si, tag, maxP, NULL);
        if (st != PIPPY_OK)
            return pippy_coll_failed(&c, st);
    }
    return PIPPY_OK;
}

/* ---- broadcast and reduce: pipelined chains ---- */

pippy_status pippy_broadcast(pippy_transport *t, const pippy_group *g, int root, void *buf, size_t bytes,
                             uint64_t tag_base)
{
    pippy_coll c = {t, g, "broadcast", PIPPY_DT_UINT8, 1, PIPPY_REDUCE_SUM, tag_base};
    PIPPY_TRY(pippy_coll_check(&c, root, 1, bytes));
    int n = g->n, d = (g->me - root + n) % n; /* distance from the root along the chain */
    if (n == 1 || bytes == 0)
        return PIPPY_OK;
    size_t P = pippy_coll_pieces(&c, bytes, PIPPY_COLL_MAX_PIECES);
    pippy_request *rq[PIPPY_COLL_MAX_PIECES], *sq[PIPPY_COLL_MAX_PIECES];
    int prev = g->ranks[(g->me + n - 1) % n], next = g->ranks[(g->me + 1) % n], sends = d < n - 1;
    pippy_status st = d > 0 ? pippy_coll_post_recvs(&c, prev, tag_base, buf, bytes, P, rq) : PIPPY_OK;
    for (size_t p = 0; st == PIPPY_OK && p < P; p++) {
        if (d > 0)
            st = pippy_transport_wait(t, rq[p]);
        if (st == PIPPY_OK && sends)
            st = pippy_coll_send_piece(&c, next, tag_base, buf, bytes, P, p, &sq[p]);
    }
    if (st == PIPPY_OK && sends)
        st = pippy_coll_wait_all(&c, sq, P);
    return st == PIPPY_OK ? PIPPY_OK : pippy_coll_failed(&c, st);
}

pippy_status pippy_reduce(pippy_transport *t, const pippy_group *g, int root, int32_t dtype, void *buf, size_t count,
                          pippy_reduce_op op, uint64_t tag_base, void *scratch)
{
    pippy_coll c = {t, g, "reduce", dtype, 0, op, tag_base};
    c.es = dtype == PIPPY_DT_FLOAT || dtype == PIPPY_DT_DOUBLE ? pippy_dtype_size(dtype) : 0;
    PIPPY_TRY(pippy_coll_check(&c, root, 1, count));
    int n = g->n, d = (g->me - root + n) % n;
    if (n == 1 || count == 0)
        return PIPPY_OK;
    if (!scratch)
        return pippy_fail(PIPPY_ERR_INVALID, "reduce: no scratch (%zu elements needed)", count);
    /* The chain runs root - 1 -> root - 2 -> ... -> root: receive from me + 1, send to me - 1. */
    size_t P = pippy_coll_pieces(&c, count, PIPPY_COLL_MAX_PIECES);
    pippy_request *rq[PIPPY_COLL_MAX_PIECES], *sq[PIPPY_COLL_MAX_PIECES];
    int from = g->ranks[(g->me + 1) % n], to = g->ranks[(g->me + n - 1) % n];
    int first = d == n - 1, last = d == 0;
    char *mine = buf, *sc = scratch, *acc = first ? mine : sc; /* acc: what this member sends on */
    pippy_status st = first ? PIPPY_OK : pippy_coll_post_recvs(&c, from, tag_base, sc, count, P, rq);
    for (size_t p = 0; st == PIPPY_OK && p < P; p++) {
        if (!first) {
            size_t s, k;
            pippy_coll_split(count, P, p, &s, &k);
            st = pippy_transport_wait(t, rq[p]);
            if (st == PIPPY_OK) /* the root adds into its buffer, the others into the scratch they send on */
                pippy_coll_combine(dtype, op, (last ? mine : sc) + s * c.es, (last ? sc : mine) + s * c.es, k);
        }
        if (st == PIPPY_OK && !last)
            st = pippy_coll_send_piece(&c, to, tag_base, acc, count, P, p, &sq[p]);
    }
    if (st == PIPPY_OK && !last)
        st = pippy_coll_wait_all(&c, sq, P);
    return st == PIPPY_OK ? PIPPY_OK : pippy_coll_failed(&c, st);
}
