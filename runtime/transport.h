/* transport.h — point-to-point messages between the stage processes of one job (UCX ucp, tag API),
 * between ranks that proved to each other that they hold the job's secret.
 *
 * Connecting. Every rank listens with a plain TCP socket on exactly its own "host:port"
 * (hosts[rank]; nothing else is listened on: UCX gets no listener, and unless UCX_NET_DEVICES is
 * set it is limited to the network device that holds that address, plus RDMA devices). A rank
 * connects to each listed peer of lower rank and accepts each of higher rank. On that control
 * connection the two run a mutual challenge-response (auth.h): fresh random nonces both ways, and
 * HMAC-SHA256 answers under the job key over the whole exchange, which names both ranks, the
 * model hash and the protocol version; the secret itself never travels. Only then do they swap
 * their UCX worker addresses (also under the MAC) and create UCX endpoints to each other.
 * Anything else that connects — stray bytes, half a handshake, a wrong secret, another rank's
 * double — is answered with a refusal or dropped with a warning on stderr naming its address,
 * without holding up the job; a process listening where a peer should be that fails the
 * challenge makes the rank fail, naming that address.
 *
 * Messages. Tags are 48 bits (PIPPY_TRANSPORT_TAG_MAX). On the wire the UCX tag is the sender's
 * rank (top 16 bits) and the user tag XORed with a 48-bit mask that both ends derive from their
 * handshake (one per direction, fresh every job). UCX matches tags worker-wide, so this is what
 * makes a message count as rank r's only if it came from rank r's authenticated session: a
 * process that reached our UCX worker some other way cannot produce a tag that matches a posted
 * receive without that session's mask. Each isend/irecv hands out a request from a
 * preallocated pool; finish every request with exactly one pippy_transport_wait(), which returns
 * its status and gives it back. A receive must match the sent length exactly.
 *
 * Liveness. UCX runs in error mode NONE (which keeps shared memory usable), so it does not report
 * dead peers; the control connection does. Its end of file means the peer's process is gone
 * (within PEER_GRACE); a goodbye frame means it closed on purpose. A heartbeat thread writes a
 * small frame to every connected peer every min(1 s, timeout/4), also while this rank computes.
 * A frame carries how long ago this rank last knew of progress: 0 while it computes, else how
 * long it has waited on its peer, or that peer's own figure when smaller — so "progress" is
 * passed along chains of waiting ranks. A wait on peer p fails
 *   - at once when p's process is gone (end of file, or UCX says its connection is lost);
 *   - with PIPPY_ERR_TIMEOUT when nothing at all (data or heartbeat) came from p for timeout_s
 *     (p stopped — SIGSTOP —, hung in the kernel, or cut off);
 *   - with PIPPY_ERR_TIMEOUT when p is alive but nothing moved for timeout_s along the chain of
 *     ranks waiting on each other (a deadlock: action lists that do not match).
 * A wait on a live peer that computes (however long its step) does not time out.
 *
 * Start-up (pippy_transport_open) is bounded by timeout_s as a whole: connections that idle or
 * send garbage are closed after at most min(timeout_s, 10 s) each and never delay the deadline.
 * After open the listener stays up to refuse latecomers at once (a rank started twice gets
 * "its job is already running"); a second process for a rank on the same address cannot
 * listen at all (the port is taken).
 *
 * Single-threaded use: one thread calls into a transport at a time (the heartbeat thread is
 * internal). A wait spins 100 us, then sleeps on the worker's event fd; PIPPY_SPIN_US sets the
 * spin. */
#ifndef PIPPY_TRANSPORT_H
#define PIPPY_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "status.h"

typedef struct pippy_transport pippy_transport;
typedef struct pippy_request pippy_request;

typedef struct {
    int rank, nranks;
    const char *const *hosts; /* "host:port" per rank ("[v6addr]:port" for IPv6) */
    uint64_t model_hash;
    const pippy_job_key *key; /* the job's key (auth.h); copied */
    double timeout_s;         /* start-up bound and liveness bound (see above); <= 0 means 60 s */
} pippy_transport_config;

#define PIPPY_TRANSPORT_PROTOCOL_VERSION 2
#define PIPPY_TRANSPORT_MAX_RANKS 32768              /* the rank takes the top bits of the UCX tag */
#define PIPPY_TRANSPORT_TAG_MAX ((1ull << 48) - 1)  /* largest user tag */

/* Listen on hosts[rank]; connect to / accept every rank in peers[0..n_peers), authenticate each
 * and create the UCX endpoints. Returns when all are connected; fails with PIPPY_ERR_TIMEOUT
 * naming the ranks that never came (and what went wrong with them), PIPPY_ERR_PEER when a peer
 * refuses us or fails the challenge (other secret, other model, other protocol, started twice),
 * PIPPY_ERR_TRANSPORT when the address cannot be listened on (port in use: a rank started twice?)
 * or UCX fails. */
pippy_status pippy_transport_open(const pippy_transport_config *c, const int *peers, int n_peers,
                                  pippy_transport **out);

/* Start sending len bytes of buf to peer with tag; buf must stay untouched until the wait. */
pippy_status pippy_transport_isend(pippy_transport *t, int peer, uint64_t tag, const void *buf,
                                   size_t len, pippy_request **req);
/* Start receiving exactly len bytes with tag from peer into buf. */
pippy_status pippy_transport_irecv(pippy_transport *t, int peer, uint64_t tag, void *buf,
                                   size_t len, pippy_request **req);

/* Progress until req is done; return its status and release it. Fails as described under
 * Liveness above (PIPPY_ERR_PEER naming the peer when it is gone, PIPPY_ERR_TIMEOUT when it is
 * silent or everything waits). After a failed wait the transport should be closed; buffers of
 * requests that failed must stay valid until pippy_transport_close returns. */
pippy_status pippy_transport_wait(pippy_transport *t, pippy_request *req);

/* Progress until at least one of reqs[0..n) is complete (none is released: finish each with
 * pippy_transport_wait, which then returns at once). Fails as pippy_transport_wait does, on any
 * of them (the heartbeats report us waiting on reqs[0]'s peer). */
pippy_status pippy_transport_wait_any(pippy_transport *t, pippy_request *const *reqs, int n);
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

/* For tests only: when PIPPY_TEST_WORKER_ADDRESS_FILE is set, open writes this rank's UCX worker
 * address into that file, so that the intruder test can reach the worker directly and show that
 * forged tags still match nothing. */

#endif
