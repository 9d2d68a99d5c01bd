/* procs.h — tests between real processes: one forked process per rank, each with its transport
 * on a free port of 127.0.0.1. A rank function writes its result into shared memory (res[rank]);
 * the test reaps every child, killing it after a deadline. Used by the transport and collective
 * tests. */
#ifndef PIPPY_TEST_PROCS_H
#define PIPPY_TEST_PROCS_H

#include <stdint.h>
#include <sys/types.h>

#include "transport.h"

#define MAXR 8

typedef struct {
    int done;            /* the rank function returned */
    int status;          /* pippy_status of the interesting call */
    int step;            /* progress marker the test can watch */
    double elapsed;      /* seconds spent in the interesting call */
    uint64_t u[4];       /* free for the test (e.g. a hash of a result) */
    double d[4];
    char msg[2048];
} rank_result;

typedef struct {
    int rank, nranks;
    const char *hosts[MAXR];
    char hostbuf[MAXR][64];
    uint64_t model_hash[MAXR], job_token[MAXR];
    double timeout_s;
    rank_result *res; /* shared, MAXR entries */
} world;

typedef void (*rank_fn)(world *w, rank_result *r);

double now_s(void);
/* nranks distinct free ports on 127.0.0.1 (held open together so they differ). */
void world_init(world *w, int nranks, double timeout_s);
void world_free(world *w);
/* Open this rank's transport to every other rank of the world. */
pippy_status open_all(world *w, pippy_transport **t);
/* Record status s (and the error message) of a call that started at t0. */
void record(rank_result *r, pippy_status s, double t0);
/* Fork a process that runs fn as rank; it exits 0 after fn returns (and at most after 60 s). */
pid_t spawn(world *w, int rank, rank_fn fn);
/* Wait for pid until deadline (absolute); kill it after that. Returns the wait status, -1 when killed. */
int reap(pid_t pid, double deadline);
/* Run fn as every rank; fail the test when one does not finish within limit_s. */
void run_world(world *w, rank_fn fn, double limit_s);

/* In a rank function with a rank_result *r and a label out: record a failure and go there. */
#define FAIL_IF(cond, ...)                                                \
    do {                                                                  \
        if (cond) {                                                       \
            r->status = PIPPY_ERR_INTERNAL;                               \
            snprintf(r->msg, sizeof r->msg, __VA_ARGS__);                 \
            goto out;                                                     \
        }                                                                 \
    } while (0)

#endif
