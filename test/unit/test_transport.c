/* test_transport.c — the UCX transport between real processes on 127.0.0.1 (ranks forked by
 * procs.h: each writes its result into shared memory; the test reaps every child, killing it
 * after a deadline). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "procs.h"
#include "transport.h"

#define LARGE (64u << 20)

static void fill(void *buf, size_t len, uint64_t seed)
{
    uint64_t *p = buf;
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++)
        p[i] = (i * 0x9e3779b97f4a7c15ull) ^ seed;
    for (size_t i = n * 8; i < len; i++)
        ((unsigned char *)buf)[i] = (unsigned char)(seed + i);
}

static int check(const void *buf, size_t len, uint64_t seed)
{
    const uint64_t *p = buf;
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++)
        if (p[i] != ((i * 0x9e3779b97f4a7c15ull) ^ seed))
            return 0;
    for (size_t i = n * 8; i < len; i++)
        if (((const unsigned char *)buf)[i] != (unsigned char)(seed + i))
            return 0;
    return 1;
}

static uint64_t seed_of(int from, int to, uint64_t tag) { return (uint64_t)from << 40 | (uint64_t)to << 32 | tag; }

/* Every rank sends an 8 B and a 64 MB message to every other rank and receives theirs. */
static void rank_exchange(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    int k = 0;
    size_t sizes[2] = {8, LARGE};
    void *sb[MAXR][2] = {{0}}, *rb[MAXR][2] = {{0}};
    pippy_request *reqs[4 * MAXR];
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    for (int q = 0; q < w->nranks; q++) {
        if (q == w->rank)
            continue;
        for (int m = 0; m < 2; m++) {
            rb[q][m] = malloc(sizes[m]);
            sb[q][m] = malloc(sizes[m]);
            FAIL_IF(!rb[q][m] || !sb[q][m], "malloc");
            memset(rb[q][m], 0, sizes[m]);
            fill(sb[q][m], sizes[m], seed_of(w->rank, q, (uint64_t)m + 7));
            s = pippy_transport_irecv(t, q, (uint64_t)m + 7, rb[q][m], sizes[m], &reqs[k++]);
            FAIL_IF(s != PIPPY_OK, "irecv: %s", pippy_last_error());
            s = pippy_transport_isend(t, q, (uint64_t)m + 7, sb[q][m], sizes[m], &reqs[k++]);
            FAIL_IF(s != PIPPY_OK, "isend: %s", pippy_last_error());
        }
    }
    for (int i = 0; i < k; i++) {
        s = pippy_transport_wait(t, reqs[i]);
        FAIL_IF(s != PIPPY_OK, "wait %d: %s", i, pippy_last_error());
    }
    for (int q = 0; q < w->nranks; q++)
        for (int m = 0; m < 2 && q != w->rank; m++)
            FAIL_IF(!check(rb[q][m], sizes[m], seed_of(q, w->rank, (uint64_t)m + 7)),
                    "rank %d: message %d from %d has wrong contents", w->rank, m, q);
    record(r, PIPPY_OK, t0);
out:
    pippy_transport_close(t);
    for (int q = 0; q < MAXR; q++)
        for (int m = 0; m < 2; m++) {
            free(sb[q][m]);
            free(rb[q][m]);
        }
}

START_TEST(test_two_ranks_exchange)
{
    world w;
    world_init(&w, 2, 3.0);
    run_world(&w, rank_exchange, 40);
    for (int r = 0; r < 2; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    world_free(&w);
}
END_TEST

/* A second job on the same ports right after the first: the listeners' ports are free again
 * at once (the closed connections' TIME_WAIT does not block them). */
START_TEST(test_same_ports_again)
{
    world w;
    world_init(&w, 2, 3.0);
    for (int round = 0; round < 2; round++) {
        memset(w.res, 0, MAXR * sizeof(rank_result));
        run_world(&w, rank_exchange, 40);
        for (int r = 0; r < 2; r++)
            ck_assert_msg(w.res[r].status == PIPPY_OK, "round %d, rank %d: %s", round, r,
                          w.res[r].msg);
    }
    world_free(&w);
}
END_TEST

START_TEST(test_three_ranks_exchange)
{
    world w;
    world_init(&w, 3, 3.0);
    run_world(&w, rank_exchange, 50);
    for (int r = 0; r < 3; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    world_free(&w);
}
END_TEST

/* Rank 0 sends NMSG tagged messages of different sizes in order; rank 1 posts its receives in
 * a scrambled order and waits for them in another one. Rank 1 also sends same-sized messages
 * with the same tags back, so both directions carry equal tags at once. */
#define NMSG 200
static size_t msg_size(int i) { return (size_t)(i % 7 == 0 ? 100000 + i : 8 + i * 13); }

static void rank_many_tags(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    void *sbuf[NMSG] = {0}, *rbuf[NMSG] = {0};
    pippy_request *sreq[NMSG], *rreq[NMSG];
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    int q = 1 - w->rank;
    for (int i = 0; i < NMSG; i++) {
        sbuf[i] = malloc(msg_size(i));
        rbuf[i] = calloc(1, msg_size(i));
        FAIL_IF(!sbuf[i] || !rbuf[i], "malloc");
        fill(sbuf[i], msg_size(i), seed_of(w->rank, q, (uint64_t)i));
    }
    for (int j = 0; j < NMSG; j++) {
        int i = (j * 37 + 11) % NMSG; /* 37 is prime to 200: a permutation */
        s = pippy_transport_irecv(t, q, 1000 + (uint64_t)i, rbuf[i], msg_size(i), &rreq[i]);
        FAIL_IF(s != PIPPY_OK, "irecv: %s", pippy_last_error());
    }
    for (int i = 0; i < NMSG; i++) {
        s = pippy_transport_isend(t, q, 1000 + (uint64_t)i, sbuf[i], msg_size(i), &sreq[i]);
        FAIL_IF(s != PIPPY_OK, "isend: %s", pippy_last_error());
    }
    for (int j = NMSG - 1; j >= 0; j--) {
        s = pippy_transport_wait(t, rreq[j]);
        FAIL_IF(s != PIPPY_OK, "wait recv %d: %s", j, pippy_last_error());
        FAIL_IF(!check(rbuf[j], msg_size(j), seed_of(q, w->rank, (uint64_t)j)),
                "message with tag %d has wrong contents", 1000 + j);
    }
    for (int i = 0; i < NMSG; i++) {
        s = pippy_transport_wait(t, sreq[i]);
        FAIL_IF(s != PIPPY_OK, "wait send %d: %s", i, pippy_last_error());
    }
    record(r, PIPPY_OK, t0);
out:
    pippy_transport_close(t);
    for (int i = 0; i < NMSG; i++) {
        free(sbuf[i]);
        free(rbuf[i]);
    }
}

START_TEST(test_many_tags_out_of_order)
{
    world w;
    world_init(&w, 2, 3.0);
    run_world(&w, rank_many_tags, 40);
    for (int r = 0; r < 2; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    world_free(&w);
}
END_TEST

/* Only open (the handshake is what is tested). */
static void rank_open_only(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    pippy_status s = open_all(w, &t);
    record(r, s, t0);
    pippy_transport_close(t);
}

START_TEST(test_handshake_other_model)
{
    world w;
    world_init(&w, 2, 3.0);
    w.model_hash[1] = 0x1111222233334444ull;
    run_world(&w, rank_open_only, 20);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(w.res[r].status == PIPPY_ERR_PEER, "rank %d: status %d: %s", r,
                      w.res[r].status, w.res[r].msg);
        ck_assert_msg(strstr(w.res[r].msg, "different model"), "rank %d: %s", r, w.res[r].msg);
        ck_assert_msg(strstr(w.res[r].msg, "0x1111222233334444"), "rank %d: %s", r, w.res[r].msg);
        ck_assert_msg(strstr(w.res[r].msg, w.hosts[1 - r]), "rank %d: %s", r, w.res[r].msg);
        ck_assert_msg(w.res[r].elapsed < 2.5, "rank %d took %.1f s", r, w.res[r].elapsed);
    }
    world_free(&w);
}
END_TEST

START_TEST(test_handshake_other_job)
{
    world w;
    world_init(&w, 2, 3.0);
    w.job_token[0] = 0x9999ull;
    run_world(&w, rank_open_only, 20);
    for (int r = 0; r < 2; r++) {
        ck_assert_msg(w.res[r].status == PIPPY_ERR_PEER, "rank %d: status %d: %s", r,
                      w.res[r].status, w.res[r].msg);
        ck_assert_msg(strstr(w.res[r].msg, "belongs to another job"), "rank %d: %s", r,
                      w.res[r].msg);
    }
    world_free(&w);
}
END_TEST

/* Rank 1 of 2 starts alone: rank 0 never comes. Then rank 0 alone: rank 1 never connects. */
START_TEST(test_peer_never_starts)
{
    for (int alone = 0; alone < 2; alone++) {
        world w;
        world_init(&w, 2, 1.0);
        pid_t pid = spawn(&w, alone, rank_open_only);
        int ws = reap(pid, now_s() + 15);
        ck_assert_int_ne(ws, -1);
        rank_result *r = &w.res[alone];
        ck_assert_msg(r->status == PIPPY_ERR_TIMEOUT, "status %d: %s", r->status, r->msg);
        ck_assert_msg(r->elapsed >= 0.9 && r->elapsed < 3.0, "took %.2f s", r->elapsed);
        ck_assert_msg(strstr(r->msg, w.hosts[1 - alone]), "%s", r->msg);
        ck_assert_msg(strstr(r->msg, alone ? "rank 0" : "rank 1"), "%s", r->msg);
        world_free(&w);
    }
}
END_TEST

/* A peer that starts late (after the other already retried a while) still connects. */
static void rank_late_exchange(world *w, rank_result *r)
{
    if (w->rank == 0)
        usleep(400000);
    rank_exchange(w, r);
}

START_TEST(test_peer_starts_late)
{
    world w;
    world_init(&w, 2, 3.0);
    run_world(&w, rank_late_exchange, 40);
    for (int r = 0; r < 2; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    world_free(&w);
}
END_TEST

/* Rank 0 connects, then is SIGKILLed by the test; rank 1 is waiting for a message from it
 * (mode 0) or in the middle of a stream of 16 MB messages from it (mode 1). */
static int kill_mode;
static void rank_victim_or_survivor(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    size_t len = 16u << 20;
    void *buf = malloc(len);
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK || !buf, "open: %s", pippy_last_error());
    fill(buf, len, 5);
    r->step = 1;
    if (w->rank == 0) {
        for (uint64_t i = 0; kill_mode == 1; i++) {
            pippy_request *q;
            s = pippy_transport_isend(t, 1, i, buf, len, &q);
            if (s == PIPPY_OK)
                s = pippy_transport_wait(t, q);
            FAIL_IF(s != PIPPY_OK, "send: %s", pippy_last_error());
            r->step = 2;
        }
        pause(); /* killed here (mode 0) */
    } else {
        double t0 = now_s();
        for (uint64_t i = 0;; i++) {
            pippy_request *q;
            t0 = now_s();
            s = pippy_transport_irecv(t, 0, i, buf, len, &q);
            if (s == PIPPY_OK)
                s = pippy_transport_wait(t, q);
            if (s != PIPPY_OK)
                break;
            r->step = 2;
        }
        record(r, s, t0);
    }
out:
    pippy_transport_close(t);
    free(buf);
}

static void run_kill(int mode)
{
    world w;
    world_init(&w, 2, 3.0);
    kill_mode = mode;
    pid_t p0 = spawn(&w, 0, rank_victim_or_survivor);
    pid_t p1 = spawn(&w, 1, rank_victim_or_survivor);
    double until = now_s() + 20;
    int want = mode ? 2 : 1;
    while ((w.res[0].step < want || w.res[1].step < want) && now_s() < until && !w.res[1].done)
        usleep(1000);
    if (mode)
        usleep(20000); /* mid-stream */
    kill(p0, SIGKILL);
    double killed_at = now_s();
    int ws0 = reap(p0, now_s() + 5);
    int ws1 = reap(p1, now_s() + 15);
    ck_assert_int_ne(ws0, -1);
    ck_assert_msg(ws1 != -1, "the survivor hung");
    ck_assert_msg(WIFSIGNALED(ws0), "rank 0 was not killed (it ended by itself: %s)", w.res[0].msg);
    rank_result *r = &w.res[1];
    ck_assert_msg(r->done, "the survivor crashed (wait status %d)", ws1);
    ck_assert_msg(r->status == PIPPY_ERR_PEER || r->status == PIPPY_ERR_TIMEOUT, "status %d: %s",
                  r->status, r->msg);
    ck_assert_msg(strstr(r->msg, "rank 0") && strstr(r->msg, w.hosts[0]), "%s", r->msg);
    ck_assert_msg(now_s() - killed_at < 3.0 + 2.0, "the survivor took %.1f s",
                  now_s() - killed_at);
    if (mode == 0) /* nothing in flight: the control socket tells */
        ck_assert_msg(r->status == PIPPY_ERR_PEER && strstr(r->msg, "died"), "%s", r->msg);
    world_free(&w);
}

START_TEST(test_peer_killed_while_waiting) { run_kill(0); }
END_TEST

START_TEST(test_peer_killed_mid_stream) { run_kill(1); }
END_TEST

/* A receive smaller than the message, and wrong-sized, fail clearly; tags over 48 bits refused. */
static void rank_size_mismatch(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    char big[64] = {0}, small[8];
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    pippy_request *q;
    if (w->rank == 0) {
        s = pippy_transport_isend(t, 1, 3, big, sizeof big, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "send: %s",
                pippy_last_error());
        s = pippy_transport_isend(t, 1, 1ull << 50, big, 8, &q);
        FAIL_IF(s != PIPPY_ERR_INVALID, "a 51-bit tag was accepted");
        /* wait for rank 1 to be done before closing */
        s = pippy_transport_irecv(t, 1, 4, small, 1, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "recv: %s",
                pippy_last_error());
        record(r, PIPPY_OK, t0);
    } else {
        s = pippy_transport_irecv(t, 0, 3, small, sizeof small, &q);
        FAIL_IF(s != PIPPY_OK, "irecv: %s", pippy_last_error());
        s = pippy_transport_wait(t, q);
        record(r, s, t0);
        pippy_transport_isend(t, 0, 4, small, 1, &q);
        pippy_transport_wait(t, q);
    }
out:
    pippy_transport_close(t);
}

START_TEST(test_size_mismatch)
{
    world w;
    world_init(&w, 2, 3.0);
    run_world(&w, rank_size_mismatch, 20);
    ck_assert_msg(w.res[0].status == PIPPY_OK, "%s", w.res[0].msg);
    ck_assert_msg(w.res[1].status == PIPPY_ERR_INVALID, "status %d: %s", w.res[1].status,
                  w.res[1].msg);
    ck_assert_msg(strstr(w.res[1].msg, "larger") && strstr(w.res[1].msg, "tag 0x3"), "%s",
                  w.res[1].msg);
    world_free(&w);
}
END_TEST

/* Rank 0 sends small messages and closes at once; rank 1 is busy meanwhile and receives them
 * only afterwards: what was sent before a close still arrives, and the close stays short. */
static void rank_close_early(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    char buf[3][256];
    pippy_status s = open_all(w, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    pippy_request *q;
    if (w->rank == 0) {
        for (int i = 0; i < 3; i++) {
            memset(buf[i], 'a' + i, sizeof buf[i]);
            s = pippy_transport_isend(t, 1, (uint64_t)i, buf[i], sizeof buf[i], &q);
            FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "send: %s",
                    pippy_last_error());
        }
        t0 = now_s();
        pippy_transport_close(t);
        t = NULL;
        record(r, PIPPY_OK, t0);
    } else {
        usleep(1500000);
        for (int i = 2; i >= 0; i--) {
            s = pippy_transport_irecv(t, 0, (uint64_t)i, buf[i], sizeof buf[i], &q);
            FAIL_IF(s != PIPPY_OK, "irecv: %s", pippy_last_error());
            s = pippy_transport_wait(t, q);
            FAIL_IF(s != PIPPY_OK, "wait: %s", pippy_last_error());
            FAIL_IF(buf[i][0] != 'a' + i || buf[i][255] != 'a' + i, "wrong contents");
        }
        /* Nothing more will come: rank 0 closed, which a wait reports at once. */
        s = pippy_transport_irecv(t, 0, 9, buf[0], 1, &q);
        FAIL_IF(s != PIPPY_OK, "irecv: %s", pippy_last_error());
        t0 = now_s();
        s = pippy_transport_wait(t, q);
        record(r, s, t0);
    }
out:
    pippy_transport_close(t);
}

START_TEST(test_close_before_peer_receives)
{
    world w;
    world_init(&w, 2, 3.0);
    run_world(&w, rank_close_early, 20);
    ck_assert_msg(w.res[0].status == PIPPY_OK, "%s", w.res[0].msg);
    /* Over shared memory the close is immediate; over TCP its flush waits for rank 1. */
    ck_assert_msg(w.res[0].elapsed < 2.5, "close took %.2f s", w.res[0].elapsed);
    ck_assert_msg(w.res[1].status == PIPPY_ERR_PEER, "status %d: %s", w.res[1].status,
                  w.res[1].msg);
    ck_assert_msg(strstr(w.res[1].msg, "closed"), "%s", w.res[1].msg);
    ck_assert_msg(w.res[1].elapsed < 1.0, "took %.2f s", w.res[1].elapsed);
    world_free(&w);
}
END_TEST

/* A pipeline 0 -> 1 -> 2 where rank 0 is done (sent its message and closed) before rank 2 has
 * even started: rank 1 still opens, and still receives rank 0's message. */
static void rank_pipeline_early_leaver(world *w, rank_result *r)
{
    pippy_transport *t = NULL;
    double t0 = now_s();
    int peers[2], n = 0;
    char msg[64];
    if (w->rank > 0)
        peers[n++] = w->rank - 1;
    if (w->rank < w->nranks - 1)
        peers[n++] = w->rank + 1;
    if (w->rank == 2)
        usleep(600000);
    pippy_transport_config c = {.rank = w->rank, .nranks = w->nranks, .hosts = w->hosts,
                                .model_hash = w->model_hash[w->rank],
                                .job_token = w->job_token[w->rank], .timeout_s = w->timeout_s};
    pippy_status s = pippy_transport_open(&c, peers, n, &t);
    FAIL_IF(s != PIPPY_OK, "open: %s", pippy_last_error());
    pippy_request *q;
    if (w->rank == 0) {
        memset(msg, 'z', sizeof msg);
        s = pippy_transport_isend(t, 1, 5, msg, sizeof msg, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "send: %s",
                pippy_last_error());
    } else if (w->rank == 1) {
        s = pippy_transport_irecv(t, 0, 5, msg, sizeof msg, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "recv: %s",
                pippy_last_error());
        FAIL_IF(msg[0] != 'z' || msg[63] != 'z', "wrong contents");
        s = pippy_transport_isend(t, 2, 6, msg, sizeof msg, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "send: %s",
                pippy_last_error());
    } else {
        s = pippy_transport_irecv(t, 1, 6, msg, sizeof msg, &q);
        FAIL_IF(s != PIPPY_OK || pippy_transport_wait(t, q) != PIPPY_OK, "recv: %s",
                pippy_last_error());
    }
    record(r, PIPPY_OK, t0);
out:
    pippy_transport_close(t);
}

START_TEST(test_peer_leaves_during_open)
{
    world w;
    world_init(&w, 3, 3.0);
    run_world(&w, rank_pipeline_early_leaver, 30);
    for (int r = 0; r < 3; r++)
        ck_assert_msg(w.res[r].status == PIPPY_OK, "rank %d: %s", r, w.res[r].msg);
    world_free(&w);
}
END_TEST

START_TEST(test_port_in_use)
{
    world w;
    world_init(&w, 2, 1.0);
    /* Hold rank 0's port. */
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    sa.sin_port = htons((uint16_t)atoi(strchr(w.hosts[0], ':') + 1));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    pid_t pid = spawn(&w, 0, rank_open_only);
    int ws = reap(pid, now_s() + 15);
    close(fd);
    ck_assert_int_ne(ws, -1);
    rank_result *r = &w.res[0];
    ck_assert_msg(r->status == PIPPY_ERR_TRANSPORT, "status %d: %s", r->status, r->msg);
    ck_assert_msg(strstr(r->msg, "in use") && strstr(r->msg, w.hosts[0]), "%s", r->msg);
    world_free(&w);
}
END_TEST

START_TEST(test_bad_config)
{
    const char *hosts[2] = {"127.0.0.1", "127.0.0.1:70000"};
    int peers[1] = {1};
    pippy_transport *t = (pippy_transport *)1;
    pippy_transport_config c = {.rank = 0, .nranks = 2, .hosts = hosts, .timeout_s = 1};
    ck_assert_int_eq(pippy_transport_open(&c, peers, 1, &t), PIPPY_ERR_USAGE);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(pippy_last_error(), "127.0.0.1:70000"), "%s", pippy_last_error());
    peers[0] = 0;
    ck_assert_int_eq(pippy_transport_open(&c, peers, 1, &t), PIPPY_ERR_USAGE);
    setenv("UCX_TLS", "shm", 1);
    peers[0] = 1;
    ck_assert_int_eq(pippy_transport_open(&c, peers, 1, &t), PIPPY_ERR_USAGE);
    ck_assert_msg(strstr(pippy_last_error(), "tcp"), "%s", pippy_last_error());
    unsetenv("UCX_TLS");
}
END_TEST

static Suite *transport_suite(void)
{
    Suite *s = suite_create("transport");
    TCase *tc = tcase_create("processes");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bad_config);
    tcase_add_test(tc, test_two_ranks_exchange);
    tcase_add_test(tc, test_three_ranks_exchange);
    tcase_add_test(tc, test_same_ports_again);
    tcase_add_test(tc, test_many_tags_out_of_order);
    tcase_add_test(tc, test_handshake_other_model);
    tcase_add_test(tc, test_handshake_other_job);
    tcase_add_test(tc, test_peer_never_starts);
    tcase_add_test(tc, test_peer_starts_late);
    tcase_add_test(tc, test_peer_killed_while_waiting);
    tcase_add_test(tc, test_peer_killed_mid_stream);
    tcase_add_test(tc, test_size_mismatch);
    tcase_add_test(tc, test_close_before_peer_receives);
    tcase_add_test(tc, test_peer_leaves_during_open);
    tcase_add_test(tc, test_port_in_use);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(transport_suite)
