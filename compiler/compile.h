/* compile.h — the whole compile: model -> out/ folder with stage programs.
 * load -> bind shapes -> infer + fold (rewriting a static batch, batch.c) -> [training: loss,
 * training modes] -> prune -> fuse -> [--backend: every node has a kernel there] -> partition ->
 * [training: autodiff] -> plan -> memory plan -> schedule -> emit (C, weights, schedule.json,
 * Makefile, hosts) -> cc. */
#ifndef PIPPY_COMPILE_H
#define PIPPY_COMPILE_H

#include "batch.h"
#include "plan.h"
#include "shape.h"

typedef struct {
    const char *model_path;
    const char *out_dir;
    int32_t stages;            /* 0: from annotations, else 1 */
    int32_t ranks;             /* --ranks R: processes; 0: one per stage (interleaved-1f1b: R < stages) */
    int32_t dp;                /* --dp D: D copies of the pipeline averaging their gradients (training) */
    const char *split_before;
    int32_t microbatches;      /* >= 1 */
    pippy_shape_bind_opts bind; /* --batch is the FULL batch here */
    const char *schedule;      /* "gpipe", "1f1b", "zb-h1" or "auto" (the fastest that fits) */
    uint64_t memory_per_rank;  /* --memory-per-rank: bytes a rank's programs may hold at their peak
                                * (predicted); 0: no limit */
    int32_t window;            /* --window K of --schedule dynamic (0: not given) */
    const char *cc;            /* NULL: the compiler this build used */
    int32_t emit_only;
    int32_t base_port;         /* 0: derived from the compile hash */
    const char *command_line;
    const char *cost_model;    /* --cost-model FILE, or NULL: this machine's cache */
    pippy_batch_dims batch_dims; /* --batch-dims */
    int32_t quiet;
    /* training (--train) */
    int32_t train;
    const char *loss;           /* "mse", "cross_entropy", NULL: the model's own scalar output */
    const char *labels;         /* --labels NAME: the graph input --loss compares against */
    const char *padding_idx;    /* --padding-idx TABLE=ROW[,...]: rows of embedding tables that get no
                                 * gradient (train.h) */
    const char *optimizer_json; /* the optimizer's settings as JSON, kept in schedule.json */
    int32_t optimizer_state;    /* floats of optimizer state per parameter float */
    int32_t tied_transmit;      /* --tied transmit (default replicate) */
    uint64_t max_memory;       /* bytes; 0: half of this machine's memory for folded constants and
                                * all of it for one stage program (arena, slots and weights) */
    int32_t no_calibration;    /* tests: the cost model's default rates instead of measuring them */
    /* the device (--backend): "cpu" (NULL) or "cuda"; every node must have a kernel there */
    const char *backend;
    int32_t tf32;               /* --tf32: cuda matmuls and convolutions may use TF32 */
} pippy_compile_opts;

pippy_status pippy_compile(const pippy_compile_opts *o);

/* Everything of a compile but the files: load, bind, infer and fold, rewrite, partition, plan,
 * memory plan (checked against the memory limit) and schedule. On success the caller owns *g
 * and *plan (pippy_plan_free, then pippy_graph_free); on failure there is neither. */
pippy_status pippy_compile_plan(const pippy_compile_opts *o, pippy_graph **g, pippy_plan *plan);

/* Load, bind and infer (with folding) — shared by compile and inspect.
 * lenient: keep going past unsupported ops (inspect). */
pippy_status pippy_load_and_infer(const char *path, const pippy_shape_bind_opts *b, int lenient, pippy_graph **g);

#endif
