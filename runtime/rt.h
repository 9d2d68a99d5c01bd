/* rt.h — the state of a running rank, shared by the files of the runtime that run it:
 * stage_main.c (arguments, schedule.json, weights, buffers, peers, outputs), executor.c (the
 * action loop), train.c (training steps: data, loss, optimizer, checkpoints) and shm.c
 * (zero-copy buffers between ranks on one machine). Internal: the generated programs only see
 * stage.h. */
#ifndef PIPPY_RT_H
#define PIPPY_RT_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <time.h>

#include "action.h"
#include "stage.h"
#include "trace.h"
#include "transport.h"

#define PIPPY_MAX_ARGS 64
#define PIPPY_RT_MAX_RANKS 256

typedef struct {
    int rank;
    const char *schedule_path, *hosts_path, *trace_path;
    const char *inputs[PIPPY_MAX_ARGS], *outputs[PIPPY_MAX_ARGS]; /* "NAME=FILE" */
    int n_inputs, n_outputs;
    double timeout_s;
    int threads;
    uint64_t job_token;
    int quiet;
    /* training */
    int64_t steps, epochs;      /* 0: not given */
    const char *loss_log, *checkpoint_dir, *resume_dir, *save_dir;
    int64_t checkpoint_every;
    uint64_t shuffle_seed;
    int shuffle;
} pippy_args;

typedef struct {
    const char *name;
    int from;          /* producing stage, -1: a graph input read from a file */
    int edge;
    int phase;         /* PIPPY_PHASE_F: an activation, B: a gradient */
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
    int phase;
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

/* One stage this rank runs. */
typedef struct {
    const pippy_stage_program *p;
    int stage;
    pippy_rt_input *in;
    pippy_rt_output *out;
    int n_in, n_out;
    pippy_kernel **K;
    uint8_t *A;                /* the arena */
    uint8_t *S;                /* stash: p->stash_slots x p->stash_bytes */
    int *slot_of;              /* per microbatch: its stash slot, -1 */
    int *free_slot;            /* stack of free slots */
    int n_free;
    uint8_t *W;                /* the weights: a private, writable mapping of stageK.weights */
    void *wmap;
    size_t wlen;
    uint8_t *G;                /* training: gradients of the trained parameters (trainable_bytes) */
    float *opt;                /* training: optimizer state */
    const void **in_ptr;       /* this microbatch's slots, handed to the generated functions */
    void **out_ptr;
    int loss_out;              /* index of the loss among the outputs (training, last stage), else -1 */
} pippy_rt_stage;

typedef struct pippy_train pippy_train;

typedef struct {
    pippy_args a;
    cJSON *sched;
    char dir[4096];            /* the folder of schedule.json */
    int M, rank, nranks, training;
    int stage_rank[PIPPY_RT_MAX_RANKS];
    pippy_rt_stage *st;        /* the stages this rank runs */
    int n_st;
    pippy_action *acts;        /* this rank's actions of one step */
    int n_acts;
    pippy_transport *t;
    pippy_trace *trace;
    long fault_delay_us;
    int peers[PIPPY_RT_MAX_RANKS], n_peers;
    char same_host[PIPPY_RT_MAX_RANKS]; /* per rank: on this machine (by the hosts list) */
    int use_shm;
    double last_progress_us;   /* when the executor last printed progress */
    double compute_us, wait_us;
    int64_t step;              /* training: the step being run (0-based) */
    pippy_train *train;        /* training state (train.c) */
} pippy_rt;

static inline double pippy_rt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* CPU time in microseconds of this thread (the trace's cpu_us) and of the whole process (the
 * loss log's cpu_ms): on a shared machine the work, without the time others had the core. */
static inline double pippy_rt_cpu_us(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* The local stage that runs stage s, or NULL. */
pippy_rt_stage *pippy_rt_stage_of(pippy_rt *rt, int s);

/* executor.c: one step's action list. */
pippy_status pippy_rt_run(pippy_rt *rt);
/* The transport pippy_stage_progress drives while a stage computes (NULL: none). */
void pippy_rt_set_progress(pippy_transport *t);

/* train.c */
pippy_status pippy_train_setup(pippy_rt *rt);
pippy_status pippy_train_run(pippy_rt *rt);        /* every step, then the final save */
pippy_status pippy_train_allreduce(pippy_rt *rt, const pippy_action *a);
pippy_status pippy_train_step(pippy_rt *rt);       /* the STEP action */
void pippy_train_free(pippy_rt *rt);

/* dump.c: PIPPY_DUMP */
pippy_status pippy_dump_setup(pippy_rt *rt);
void pippy_dump_begin(pippy_rt_stage *sx, int mb, int phase);

/* shm.c */
void pippy_host_of(const char *hostport, char *buf, size_t n);
pippy_status pippy_rt_share_outputs(pippy_rt *rt);
pippy_status pippy_rt_map_inputs(pippy_rt *rt);
void pippy_rt_unlink_shared(pippy_rt *rt);
void pippy_rt_unshare(pippy_rt *rt);

#endif
