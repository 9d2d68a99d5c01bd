/* transport.h — point-to-point messages between the stage processes of one job (UCX ucp, tag API).
 *
 * Every rank listens on its own "host:port" (hosts[rank]), connects to each listed peer of lower
 * rank and accepts each listed peer of higher rank. Every connection first runs a handshake
 * (protocol version, rank, model hash, job token) and opens a plain TCP control socket beside the
 * UCX endpoint; the socket's end of file tells that a peer died (UCX runs in error mode NONE,
 * which keeps shared memory usable, so UCX itself does not report dead peers).
 *
 * Messages are tagged: a receive posted for (peer p, tag t) matches only p's messages with tag t.
 * User tags are 48 bits (PIPPY_TRANSPORT_TAG_MAX); the sender's rank fills the top bits of the
 * UCX tag. Each isend/irecv hands out a request from a preallocated pool; finish every request
 * with exactly one pippy_transport_wait(), which returns its status and gives it back.
 * A receive must match the sent length exactly.
 *
 * Single-threaded: one thread uses a transport at a time. pippy_transport_open sets
 * UCX_TCP_CM_REUSEADDR=y in the environment (unless set) so a job can reuse its ports at once.
 * A wait spins 100 µs, then sleeps on the worker's event fd; PIPPY_SPIN_US sets the spin. */
#ifndef PIPPY_TRANSPORT_H
#define PIPPY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct pippy_transport pippy_transport;
typedef struct pippy_request pippy_request;

typedef struct {
    int rank, nranks;
    const char *const *hosts; /* "host:port" per rank ("[v6addr]:port" for IPv6) */
    uint64_t model_hash, job_token;
    double timeout_s;         /* connect, each wait, and liveness bound; <= 0 means 60 s */
} pippy_transport_config;

#define PIPPY_TRANSPORT_PROTOCOL_VERSION 1
#define PIPPY_TRANSPORT_MAX_RANKS 32768              /* the rank takes 15 bits of the UCX tag */
#define PIPPY_TRANSPORT_TAG_MAX ((1ull << 48) - 1)  /* largest user tag */

/* Create the UCX context, worker and listener on hosts[rank]; connect to / accept every rank in
 * peers[0..n_peers) and handshake with it. Returns when all are connected; fails with
 * PIPPY_ERR_TIMEOUT naming the ranks that never came, PIPPY_ERR_PEER when a handshake is refused
 * (other model, other job, other protocol), PIPPY_ERR_TRANSPORT when UCX fails (e.g. port in use). */
pippy_status pippy_transport_open(const pippy_transport_config *c, const int *peers, int n_peers,
                                  pippy_transport **out);

/* Start sending len bytes of buf to peer with tag; buf must stay untouched until the wait. */
pippy_status pippy_transport_isend(pippy_transport *t, int peer, uint64_t tag, const void *buf,
                                   size_t len, pippy_request **req);
/* Start receiving exactly len bytes with tag from peer into buf. */
pippy_status pippy_transport_irecv(pippy_transport *t, int peer, uint64_t tag, void *buf,
                                   size_t len, pippy_request **req);

/* Progress until req is done; return its status and release it. Fails with PIPPY_ERR_TIMEOUT
 * (naming peer and tag) when no request of this transport completes within timeout_s, and with
 * PIPPY_ERR_PEER when the peer is known dead or closed. After a failed wait the transport should
 * be closed; buffers of requests that failed must stay valid until pippy_transport_close returns. */
pippy_status pippy_transport_wait(pippy_transport *t, pippy_request *req);

/* Nonzero when req is complete (pippy_transport_wait then returns at once). Progresses once. */
int pippy_transport_test(pippy_transport *t, pippy_request *req);

/* Drive UCX once (call it while computing to let transfers move). */
void pippy_transport_progress(pippy_transport *t);

/* This transport's rank, and the "host:port" of a rank. */
int pippy_transport_rank(const pippy_transport *t);
const char *pippy_transport_peer_address(const pippy_transport *t, int rank);

/* Cancel pending receives, flush what was sent to live peers (over shared memory this is
 * immediate; over TCP it may wait for a busy peer, never longer than timeout_s nor past the
 * peer's death), close every endpoint and tell the peers we leave on purpose. Frees t; NULL ok. */
void pippy_transport_close(pippy_transport *t);

#endif
