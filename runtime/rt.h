/* rt.h — the state of a running rank, shared by the files of the runtime that run it:
 * stage_main.c (arguments, schedule.json, weights, buffers, peers, outputs), executor.c (the
 * action loop), train.c (training steps: data, loss, optimizer, checkpoints), shm.c
 * (zero-copy buffers between ranks on one machine) and devmem.c (the backend; stages on a GPU).
 * Internal: the generated programs only see stage.h. */
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
    const char *secret_file; /* --job-secret-file (auth.h); NULL: from the environment */
    int quiet;
    /* training */
    int64_t steps, epochs;      /* 0: not given */
    const char *loss_log, *checkpoint_dir, *resume_dir, *save_dir;
    int64_t checkpoint_every;
    uint64_t shuffle_seed;
    int shuffle;
    const char *backend;        /* --backend LIST (NULL: PIPPY_BACKEND, else the programs') */
} pippy_args;

typedef struct {
    const char *name;
    int from;          /* producing stage, -1: a graph input read from a file */
    int edge;
    int phase;         /* PIPPY_PHASE_F: an activation, B: a gradient */
    int graph_output;
    size_t bytes;      /* one microbatch */
    int slots;         /* microbatch m lives in slot m % slots (pippy_sched_slots) */
    uint8_t *buf;      /* slots x bytes */
    pippy_request **req; /* per microbatch */
    double *post_us;     /* per microbatch: when the receive was posted */
    char *arrived;       /* per microbatch: the receive completed */
    char *want;          /* per microbatch: its RECV ran while the slot was still in use: post it later */
    int shm;             /* buf is a mapping of the producer's shared memory: only a note travels */
    int local;           /* the producer is a stage of this rank: buf is its output's (a pointer hand-off) */
    uint64_t *note;      /* per microbatch: where that note lands */
    pippy_request **credit; /* shm: per microbatch, the credit sent back once the stage is done with it */
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
    int slots;           /* as the input's */
    uint8_t *buf;
    pippy_request **req; /* per microbatch x n_to */
    double *post_us;
    int shm;             /* buf is shared memory this rank created (consumers on this host map it) */
    char shm_name[96];
    uint64_t *note;      /* per microbatch: the note sent to consumers on this host */
    pippy_request **credit; /* shm: per microbatch x n_to, the credit receive from a consumer on this host */
    uint64_t *credit_buf;   /* where those credits land */
    char *deferred;      /* device stages, per microbatch x n_to: SEND came before the download ended */
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
    uint8_t *S;                /* stash: stash_n x p->stash_bytes */
    int stash_n;               /* stash slots allocated (p->stash_slots in training, else 1) */
    int *slot_of;              /* per microbatch: its stash slot, -1 */
    char *finished;            /* per microbatch: its last phase of the step has run */
    int *free_slot;            /* stack of free slots */
    int n_free;
    uint8_t *W;                /* the weights: a private, writable mapping of stageK.weights */
    void *wmap;
    size_t wlen;
    uint8_t *G;                /* training: gradients of the trained parameters (trainable_bytes) */
    float *opt;                /* training: optimizer state */
    size_t opt_bytes;          /* its size */
    const void **in_ptr;       /* this microbatch's slots, handed to the generated functions */
    void **out_ptr;
    int loss_out;              /* index of the loss among the outputs (training, last stage), else -1 */
    struct pippy_rt_dev *dev;  /* on a device backend: its memory and staging (devmem.c), else NULL */
} pippy_rt_stage;

typedef struct pippy_train pippy_train;

typedef struct {
    pippy_args a;
    cJSON *sched;
    char dir[4096];            /* the folder of schedule.json */
    int M, rank, nranks, training;
    int dp, pp_ranks, replica;  /* dp copies of the pipeline, pp_ranks ranks each; this rank's copy */
    int stage_rank[PIPPY_RT_MAX_RANKS];
    pippy_rt_stage *st;        /* the stages this rank runs */
    int n_st;
    pippy_action *acts;        /* this rank's actions of one step */
    int n_acts;
    int window;                /* > 0: the dynamic schedule (config.window): acts is a set, run in the
                                  order executor.c's dynamic loop picks */
    struct pippy_rt_dyn *dyn;  /* its state (executor.c), NULL for a static schedule */
    int act_index, act_seq;    /* the action running: its place in acts, and in the order run (traced) */
    pippy_transport *t;
    pippy_trace *trace;
    long fault_delay_us;
    int peers[PIPPY_RT_MAX_RANKS], n_peers;
    char same_host[PIPPY_RT_MAX_RANKS]; /* per rank: on this machine (by the hosts list) */
    int use_shm;
    double last_progress_us;   /* when the executor last printed progress */
    double compute_us, wait_us;
    int64_t step;              /* training: the step being run (0-based) */
    int64_t step0;             /* training: this run's first step (> 0 after --resume) */
    pippy_train *train;        /* training state (train.c) */
    char job_tag[17];          /* names this job's shared memory (auth.h pippy_job_key_tag) */
    pippy_backend *be;         /* the device this rank computes on (devmem.c) */
    struct pippy_rt_warmup *warmup; /* the warm-up while the peers connect (warmup.c) */
    double warmup_us;          /* what the warm-up added once connected (0: none) */
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
/* The dynamic schedule's state, once the schedule is read and the slots allocated (nothing for a
 * static schedule); the free is NULL-safe. */
pippy_status pippy_rt_dynamic_setup(pippy_rt *rt);
void pippy_rt_dynamic_free(pippy_rt *rt);
/* The transport pippy_stage_progress drives while a stage computes (NULL: none). */
void pippy_rt_set_progress(pippy_transport *t);

/* train.c */
pippy_status pippy_train_setup(pippy_rt *rt);
pippy_status pippy_train_run(pippy_rt *rt);        /* every step, then the final save */
pippy_status pippy_train_collective(pippy_rt *rt, const pippy_action *a); /* ALLREDUCE, REDUCE, BROADCAST */
pippy_status pippy_train_step(pippy_rt *rt);       /* the STEP action */
void pippy_train_free(pippy_rt *rt);

/* warmup.c: before the first step, every stage's functions (F; B and W in training) run on scratch
 * data, in a thread while the peers connect and once more after, so that the first microbatch does
 * not pay for first executions, page faults and cold caches (PIPPY_WARMUP=0: no warm-up). Start
 * after the stages' buffers, kernels, training state and resume are set up, just before
 * connecting; finish once connected, with the connection's status (joins; when st is PIPPY_OK,
 * the second pass; then puts back everything the runs changed: the weights beyond the trained
 * parameters, such as BatchNormalization's running statistics; the gradients; kernels' run
 * counts; run errors). finish returns st; without a warm-up started it does nothing. */
pippy_status pippy_rt_warmup_start(pippy_rt *rt);
pippy_status pippy_rt_warmup_finish(pippy_rt *rt, pippy_status st);

/* memstat.c: the bytes of the buffers this rank's stages hold (weights mapping, arena, stash slots,
 * input and output slots, gradients, optimizer state) against schedule.json's prediction
 * (prediction.peak_memory_bytes of its stages), and the process's peak resident size (VmHWM). */
typedef struct {
    double weights, arena, stash, slots, grads, optim, total;
    double predicted;          /* < 0: schedule.json has none */
    double hwm_bytes;          /* < 0: unknown */
} pippy_rt_mem;
void pippy_rt_memory(const pippy_rt *rt, pippy_rt_mem *m);
void pippy_rt_memory_report(const pippy_rt *rt); /* one line on stdout */

/* dump.c: PIPPY_DUMP */
pippy_status pippy_dump_setup(pippy_rt *rt);
void pippy_dump_begin(pippy_rt_stage *sx, int mb, int phase);

/* devmem.c: the backend, and stages on a device (sx->dev; NULL on the CPU, where none of the
 * pippy_rt_device_* calls is made). */
typedef struct pippy_rt_dev pippy_rt_dev;
pippy_status pippy_rt_backend_open(pippy_rt *rt);
void pippy_rt_backend_close(pippy_rt *rt);
/* After the stage's init (which reads constants from the host weights): weights, arena, stash on
 * the device. */
pippy_status pippy_rt_device_setup(pippy_rt *rt, pippy_rt_stage *sx);
/* After the peers are connected (slot buffers are final): device twins, page-locking, uploads. */
pippy_status pippy_rt_device_slots(pippy_rt *rt);
/* Input q of microbatch m is in its host slot: queue its upload. */
pippy_status pippy_rt_device_arrived(pippy_rt *rt, pippy_rt_stage *sx, int q, int m);
/* Around the forward of m: point in_ptr/out_ptr at the device slots; then queue the download. */
pippy_status pippy_rt_device_enter(pippy_rt *rt, pippy_rt_stage *sx, int m);
pippy_status pippy_rt_device_leave(pippy_rt *rt, pippy_rt_stage *sx, int m);
/* Are m's outputs back in their host slots (block: wait until they are)? */
pippy_status pippy_rt_device_out_ready(pippy_rt *rt, pippy_rt_stage *sx, int m, int block, int *ready);
pippy_status pippy_rt_device_sync(pippy_rt *rt);
void pippy_rt_device_free(pippy_rt *rt, pippy_rt_stage *sx);

/* shm.c */
/* Inputs from a stage of this rank read that stage's output slots (a pointer hand-off; after the
 * shared memory set-up, which may have moved them). */
pippy_status pippy_rt_link_local(pippy_rt *rt);
/* The input of stage `to` (on this rank) that reads edge `edge`, or NULL. */
pippy_rt_input *pippy_rt_local_input(pippy_rt *rt, int to, int edge);
void pippy_host_of(const char *hostport, char *buf, size_t n);
pippy_status pippy_rt_share_outputs(pippy_rt *rt);
pippy_status pippy_rt_map_inputs(pippy_rt *rt);
void pippy_rt_unlink_shared(pippy_rt *rt);
void pippy_rt_unshare(pippy_rt *rt);

#endif
