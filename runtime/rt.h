/* rt.h — the state of a running stage program, shared by the files of the runtime that run it:
 * stage_main.c (arguments, schedule.json, weights, buffers, peers, outputs), executor.c (the
 * action loop) and shm.c (zero-copy buffers between ranks on one machine). Internal: the
 * generated programs only see stage.h. */
#ifndef PIPPY_RT_H
#define PIPPY_RT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <time.h>

#include "stage.h"
#include "trace.h"
#include "transport.h"

#define PIPPY_MAX_ARGS 64

typedef struct {
    int rank;
    const char *schedule_path, *hosts_path, *trace_path;
    const char *inputs[PIPPY_MAX_ARGS], *outputs[PIPPY_MAX_ARGS]; /* "NAME=FILE" */
    int n_inputs, n_outputs;
    double timeout_s;
    int threads;
    const char *secret_file; /* --job-secret-file (auth.h); NULL: from the environment */
    int quiet;
} pippy_args;

typedef struct {
    const char *name;
    int from;          /* producing stage, -1: a graph input read from a file */
    int edge;
    int graph_output;
    size_t bytes;      /* one microbatch */
    uint8_t *buf;      /* M slots */
    pippy_request **req; /* per microbatch */
    double *post_us;     /* per microbatch: when the receive was posted */
    char *arrived;       /* per microbatch: the receive completed */
    int shm;             /* buf is a mapping of the producer's shared memory: only a note travels */
    uint64_t *note;      /* per microbatch: where that note lands */
} pippy_rt_input;

typedef struct {
    const char *name;
    int edge;
    int to[64];
    int n_to;
    int graph_output;
    int passthrough;
    size_t bytes;
    uint8_t *buf;
    pippy_request **req; /* per microbatch x n_to */
    double *post_us;
    int shm;             /* buf is shared memory this rank created (consumers on this host map it) */
    char shm_name[96];
    uint64_t *note;      /* per microbatch: the note sent to consumers on this host */
} pippy_rt_output;

typedef struct {
    int op; /* 0 RECV_F, 1 F, 2 SEND_F */
    int mb, peer;
} pippy_rt_action;

typedef struct {
    const pippy_stage_program *p;
    pippy_args a;
    cJSON *sched;
    int M, rank, nranks;
    int stage_rank[256];
    pippy_rt_input *in;
    pippy_rt_output *out;
    int n_in, n_out;
    pippy_rt_action *acts;
    int n_acts;
    pippy_kernel **K;
    uint8_t *A;
    const uint8_t *W;
    void *wmap;
    size_t wlen;
    pippy_transport *t;
    pippy_trace *trace;
    const void **in_ptr;
    void **out_ptr;
    long fault_delay_us;
    int peers[256], n_peers;
    char same_host[256];  /* per rank: on this machine (by the hosts list), so buffers can be shared */
    int use_shm;
    char job_tag[17];     /* names this job's shared memory (auth.h pippy_job_key_tag) */
    double last_progress_us; /* when the executor last printed progress */
} pippy_rt;

static inline double pippy_rt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* executor.c */
pippy_status pippy_rt_run(pippy_rt *rt, double *compute_us, double *wait_us);
/* The transport pippy_stage_progress drives while the forward runs (NULL: none). */
void pippy_rt_set_progress(pippy_transport *t);

/* shm.c */
void pippy_host_of(const char *hostport, char *buf, size_t n);
pippy_status pippy_rt_share_outputs(pippy_rt *rt);
pippy_status pippy_rt_map_inputs(pippy_rt *rt);
void pippy_rt_unlink_shared(pippy_rt *rt);
void pippy_rt_unshare(pippy_rt *rt);

#endif
