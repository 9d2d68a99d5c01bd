/* transport_int.h — the state of a transport, shared by its two files (internal):
 * transport.c (messages, liveness and the heartbeat thread, open and close) and handshake.c
 * (the listener, the control connections and their authenticated handshake). See transport.h
 * for what the transport promises. */
#ifndef PIPPY_TRANSPORT_INT_H
#define PIPPY_TRANSPORT_INT_H

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <ucp/api/ucp.h>

#include "auth.h"
#include "transport.h"

#define TAG_RANK_SHIFT 48
#define TAG_USER_BITS 0x0000ffffffffffffull
#define HELLO_BYTES 64
#define MAX_WORKER_ADDR 16384   /* bytes of a UCX worker address we accept */
#define MAX_PENDING 32          /* connections not yet authenticated, at most */
#define HS_IDLE_S 10.0          /* one connection's handshake may take this long (at most timeout) */
#define RETRY_S 0.05            /* between connection attempts to a peer not listening yet */
#define PEER_GRACE_S 0.25       /* keep progressing this long after a peer went away */
#define FRAME_BYTES 8           /* control frames after the handshake: type, 3 zero bytes, u32 */
#define FRAME_HEARTBEAT 'H'     /* ... with how long ago this rank knew of progress, in ms */
#define FRAME_BYE 'B'

enum { PS_IDLE, PS_CONNECTING, PS_READY };

/* One control connection while its handshake runs (either side). */
typedef struct pippy_conn {
    int fd;
    int client;               /* 1: we connected to peer `rank` */
    int rank;                 /* client: the peer; server: the rank it claims, -1 before its hello */
    int step;                 /* what comes next (handshake.c) */
    double deadline;
    char from[100];           /* "address:port" of the other end */
    uint8_t hello_c[HELLO_BYTES], hello_s[HELLO_BYTES];
    uint8_t rx[4 + MAX_WORKER_ADDR + PIPPY_MAC_BYTES];
    size_t need, got;
    uint8_t tx[HELLO_BYTES + 4 + MAX_WORKER_ADDR + 2 * PIPPY_MAC_BYTES];
    size_t tx_len, tx_off;
    int close_after_tx;       /* a refusal: close once it is out */
    int has_ep;               /* server: we made the peer's endpoint for this connection */
} pippy_conn;

typedef struct {
    pippy_transport *t;
    int rank, expected, we_connect, state;
    char addr[300]; /* "host:port" as given */
    struct sockaddr_storage sa;
    socklen_t salen;
    pippy_conn *conn;         /* our connection attempt while we are the client */
    double retry_at;
    char last_err[240];
    int ctrl_fd;              /* the authenticated control connection */
    uint64_t mask_tx, mask_rx; /* tag masks of this session (48 bits) */
    ucp_ep_h ep;
    int ep_failed;
    ucs_status_t ep_status;
    /* liveness, read by the heartbeat thread under t->hb_mu */
    int hb_on;
    double last_heard;        /* anything (frame or data) came */
    double age_s, age_at;     /* its last heartbeat said: no progress for age_s, as of age_at */
    uint8_t frame[FRAME_BYTES];
    int frame_n;
    uint8_t hb_pend[FRAME_BYTES]; /* heartbeat thread: a frame partly written */
    int hb_pend_n;
    int bye, gone, gone_ucx;  /* gone_ucx: only UCX said so (the control socket may say more) */
    double gone_at;
    char gone_why[240];
} peer_t;

struct pippy_transport {
    int rank, nranks, n_peers;
    int *peer_list;
    double timeout_s;
    uint64_t model_hash;
    pippy_job_key key;
    peer_t *peers; /* nranks entries, only the listed ones used */
    ucp_context_h ctx;
    ucp_worker_h worker;
    void *worker_addr;
    size_t worker_addr_len;
    int efd;       /* worker event fd, -1 without wakeup */
    int listen_fd;
    int opened;    /* open returned: newcomers are refused */
    pippy_status fatal; /* a handshake found a peer of this job misconfigured */
    pippy_conn *pending[MAX_PENDING]; /* incoming connections not yet authenticated */
    int n_pending;
    int n_warnings;
    struct pollfd *pfds;
    int *pfd_what;
    int max_pfds;
    struct pippy_request *free_list;
    struct pippy_request **chunks;
    int n_chunks, cap_chunks;
    double last_poll;
    double spin_s; /* how long an idle wait spins before it sleeps (SPIN_S, PIPPY_SPIN_US) */
    /* heartbeat */
    pthread_t hb_thread;
    int hb_init, hb_started, hb_stop;
    pthread_mutex_t hb_mu;
    pthread_cond_t hb_cv;
    double hb_interval;
    int wait_peer;            /* the peer a wait is on, -1 while none */
    double wait_since;
};

double pippy_tr_now(void);

/* handshake.c */
pippy_status pippy_tr_listen(pippy_transport *t, const char *hostport);
pippy_status pippy_tr_resolve(const char *hostport, int rank, struct sockaddr_storage *sa, socklen_t *salen);
/* Work on every connection (accept, read, write, advance handshakes, retry connects) once. */
pippy_status pippy_tr_handshakes(pippy_transport *t, double now);
/* Add the fds the handshakes wait on to t->pfds from index n; returns the new count. */
int pippy_tr_handshake_fds(pippy_transport *t, int n);
void pippy_tr_conns_close(pippy_transport *t);
void pippy_tr_warn(pippy_transport *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Limit UCX to the network device holding addr (unless UCX_NET_DEVICES is set). */
void pippy_tr_net_devices(const struct sockaddr_storage *addr);

/* transport.c, for handshake.c */
pippy_status pippy_tr_peer_ep(pippy_transport *t, peer_t *p, const void *addr);
void pippy_tr_peer_drop_ep(pippy_transport *t, peer_t *p);
void pippy_tr_peer_ready(pippy_transport *t, peer_t *p, int fd);

#endif
