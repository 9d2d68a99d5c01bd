/* collective.h — collectives over the transport (transport.h) among a group of ranks:
 * all-reduce (summing tied-parameter gradients between the stages that share them, averaging
 * gradients between data-parallel replicas, and the per-step values every rank needs: loss,
 * gradient sum of squares, a non-finite flag), broadcast from a root and reduce to a root (an
 * owner sends a tied weight to its users, the users send their gradients back).
 *
 * A group lists its members' transport ranks in ring order (any ranks, in any order, e.g.
 * {5, 0, 2}; each rank once: stages that share a rank combine their values locally first);
 * every member calls the same collective with the same group, count, op, root and tag_base.
 * A group of one is a no-op; count 0 is fine. Algorithms:
 *   all-reduce: ring reduce-scatter then ring all-gather over n segments of the buffer (n - 1
 *     steps each); every segment is reduced exactly once, in ring order starting at the member
 *     whose index is the segment's ((x_s + x_s+1) + x_s+2 ...), then copied to every member, so
 *     all members end with bit-identical results. Each step's message is cut into pieces so that
 *     reducing one piece overlaps receiving the next.
 *   broadcast: a pipelined chain root -> root+1 -> ... (ring order), in pieces.
 *   reduce: a pipelined chain root-1 -> root-2 -> ... -> root, in pieces; the root's buffer gets
 *     the result ((x_root-1 + x_root-2) + ...) + x_root; the others' buffers are not changed.
 *
 * Tags: a collective uses the user tags [tag_base, tag_base + PIPPY_COLLECTIVE_TAG_SPAN) and no
 * other; the caller picks tag_base so that no other message of the same peers uses that range
 * at the same time. Consecutive collectives of one group may reuse a tag_base (messages of one
 * sender with one tag are matched in the order they were sent).
 *
 * No allocation: the caller gives scratch space (the *_scratch_elems functions say how much).
 * Errors: a member that dies or closes makes the others fail (PIPPY_ERR_PEER, or
 * PIPPY_ERR_TIMEOUT after the transport's timeout) with the collective, the member and the peer
 * named. After a failure the transport must be closed, and buf and scratch must stay valid until
 * pippy_transport_close returns (requests may still be in flight). */
#ifndef PIPPY_COLLECTIVE_H
#define PIPPY_COLLECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"
#include "transport.h"

#define PIPPY_COLLECTIVE_TAG_SPAN (1ull << 16)

typedef struct {
    const int *ranks; /* the members' transport ranks, in ring order */
    int n;            /* number of members (>= 1) */
    int me;           /* this process's index in ranks */
} pippy_group;

typedef enum { PIPPY_REDUCE_SUM = 0, PIPPY_REDUCE_MAX = 1 } pippy_reduce_op;

/* Elements of scratch the collectives need for count elements in a group of n. */
size_t pippy_allreduce_scratch_elems(int n, size_t count);
size_t pippy_reduce_scratch_elems(int n, size_t count);

/* buf[0..count) of dtype (PIPPY_DT_FLOAT or PIPPY_DT_DOUBLE) becomes, on every member, the
 * reduction over the members' buffers. */
pippy_status pippy_allreduce(pippy_transport *t, const pippy_group *g, int32_t dtype, void *buf, size_t count,
                             pippy_reduce_op op, uint64_t tag_base, void *scratch);

/* The root member's (index root into g->ranks) buf[0..bytes) is copied into every member's buf. */
pippy_status pippy_broadcast(pippy_transport *t, const pippy_group *g, int root, void *buf, size_t bytes,
                             uint64_t tag_base);

/* The root member's buf becomes the reduction over the members' buffers; the others' are kept. */
pippy_status pippy_reduce(pippy_transport *t, const pippy_group *g, int root, int32_t dtype, void *buf,
                          size_t count, pippy_reduce_op op, uint64_t tag_base, void *scratch);

static inline pippy_status pippy_allreduce_f32(pippy_transport *t, const pippy_group *g, float *buf, size_t count,
                                               pippy_reduce_op op, uint64_t tag_base, float *scratch)
{
    return pippy_allreduce(t, g, PIPPY_DT_FLOAT, buf, count, op, tag_base, scratch);
}

static inline pippy_status pippy_allreduce_f64(pippy_transport *t, const pippy_group *g, double *buf, size_t count,
                                               pippy_reduce_op op, uint64_t tag_base, double *scratch)
{
    return pippy_allreduce(t, g, PIPPY_DT_DOUBLE, buf, count, op, tag_base, scratch);
}

#endif
