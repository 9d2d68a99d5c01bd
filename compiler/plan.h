/* plan.h — a compiled pipeline: which nodes each stage runs, what crosses
 * between stages, where every buffer lives, and what each rank does.
 *
 * Built in order by: partition.c (node -> stage), plan.c (stage inputs,
 * outputs, edges, parameters, tied weights), memplan.c (arena offsets),
 * schedule.c (action lists and the predicted timeline). Emitted by
 * emit_c.c (stageK.c), emit_json.c (schedule.json) and weights.c. */
#ifndef PIPPY_PLAN_H
#define PIPPY_PLAN_H

#include "action.h"
#include "costmodel.h"
#include "ir.h"

#define PIPPY_MAX_STAGES 64

typedef struct {
    int32_t value;        /* graph value */
    int32_t from_stage;   /* producing stage, or -1: a graph input this stage reads from a file */
    int32_t edge;         /* edge id, or -1 */
    int32_t graph_output; /* this stage (the last) also writes it as a graph output */
    int32_t phase;        /* PIPPY_PHASE_F: an activation (needed by F), B: a gradient (needed by B) */
} pippy_stage_input;

typedef struct {
    int32_t value;
    int32_t edge;             /* edge id, or -1 when only written as a graph output */
    int32_t graph_output;     /* written by this stage (the last) as a graph output */
    int32_t passthrough;      /* index into the stage's inputs when the value is one of them, else -1 */
    int32_t phase;            /* made by F (an activation) or by B (a gradient sent back) */
} pippy_stage_output;

typedef struct {
    int32_t index;
    int32_t rank;
    int32_t *nodes;             /* graph node indices, in execution order: F nodes, then B, then W */
    int32_t n_nodes;
    int32_t phase_begin[PIPPY_PHASES + 1]; /* nodes[phase_begin[p] .. phase_begin[p+1]) run in phase p */
    pippy_stage_input *in;
    int32_t n_in;
    pippy_stage_output *out;
    int32_t n_out;
    int32_t *params;            /* PARAM and CONST values this stage stores in its weights file: trained
                                   parameters first, then state, other parameters and constants */
    uint64_t *param_off;        /* their offsets in the weights data */
    int32_t n_params;
    int32_t n_trainable;        /* params[0 .. n_trainable) are trained by the optimizer */
    uint64_t trainable_bytes;   /* they fill the weights' first bytes; the gradient buffer mirrors them */
    int32_t *roots;             /* the trainable parameters (PARAM values) it holds, each once: read directly
                                 * or through constants derived from them (param_of); in value order */
    int32_t n_roots;
    uint64_t weights_bytes;
    int64_t *arena_off;         /* per graph value: offset in this stage's arena, or -1 */
    int32_t *view_of;           /* per graph value: the value whose bytes it reuses (a view), or -1 */
    char *is_view;              /* per stage node: 1 when it only relabels its input (no kernel runs) */
    int64_t *stash_off;         /* per graph value: offset in a stash slot (kept from one phase to a later
                                   one of the same microbatch), or -1 */
    uint64_t stash_bytes;       /* one microbatch's stash */
    int32_t stash_slots;        /* stashes held at once: the microbatches in flight in the schedule */
    uint64_t arena_bytes;       /* working memory of one phase of one microbatch */
    uint64_t io_bytes;          /* inputs + outputs of one microbatch */
    double flops;
    uint64_t parameter_bytes;   /* bytes of its roots (the model's parameters, not constants) */
    uint64_t activation_bytes;  /* sum of all values the stage computes, per microbatch */
    double pred_forward_ms, pred_backward_ms, pred_weight_ms; /* per microbatch: F, B, W */
    double pred_optimizer_ms;   /* per step: the optimizer's step on its trained parameters (STEP) */
} pippy_stage;

typedef struct {
    int32_t id;
    int32_t value;
    int32_t producer;
    int32_t phase;             /* PIPPY_PHASE_F: an activation sent forward; B: a gradient sent back */
    int32_t consumers[PIPPY_MAX_STAGES];
    int32_t n_consumers;
    uint64_t bytes;            /* per microbatch */
} pippy_edge;

/* Training: gradients of one parameter that several stages hold (a tie) are summed between
 * them before the optimizer step, so every copy takes the same step (ALLREDUCE actions). */
typedef struct {
    int32_t param;                        /* the PARAM value */
    int32_t transmit;                     /* 1: the first stage owns it and sends it to the others each
                                             step, their gradients are reduced into it (--tied transmit);
                                             0: every stage keeps a replica (--tied replicate) */
    int32_t n_stages;
    int32_t stages[PIPPY_MAX_STAGES];     /* ascending: stages[0] owns a transmitted parameter */
    int32_t data_parallel;                /* 1: not a tie but stage stages[0]'s whole gradient, summed over
                                             the dp replicas (param -1; after the stage's ties) */
} pippy_reduction;

typedef struct {
    pippy_graph *g;
    int32_t n_stages;
    pippy_stage *stages;
    int32_t *node_stage;      /* per graph node: stage, or -1 for removed nodes */
    pippy_edge *edges;
    int32_t n_edges;
    int32_t microbatches;
    int64_t microbatch_size;
    int64_t batch;
    char schedule[32];        /* "gpipe", "1f1b", "dynamic" */
    int32_t window;           /* dynamic: at most this many microbatches in flight per stage (0: static) */
    int32_t training;         /* a training compile: F, B, W per microbatch and an optimizer step */
    int32_t loss;             /* training: the loss value (a graph output of the last stage) */
    int32_t tied_transmit;    /* training: tied parameters are transmitted from their first stage */
    int32_t n_ranks;          /* ranks of one pipeline (the actions are theirs) */
    int32_t dp;               /* --dp: copies of the pipeline, each on its own n_ranks ranks (1: none) */
    pippy_reduction *reductions;
    int32_t n_reductions;
    uint64_t hash;            /* identifies this compile: model bytes + partition + shapes */
    int32_t split_source;     /* how cuts were chosen: see PIPPY_SPLIT_* */
    pippy_action **actions;   /* per rank, one step's actions */
    int32_t *n_actions;
    double pred_step_ms;
    double pred_bubble;
    double *pred_idle_ms;     /* per rank */
    pippy_cost_model cost;
} pippy_plan;

enum { PIPPY_SPLIT_NONE, PIPPY_SPLIT_PIPESPLIT, PIPPY_SPLIT_METADATA, PIPPY_SPLIT_CLI, PIPPY_SPLIT_AUTO };
const char *pippy_split_source_name(int32_t s);

/* Cut sets of the cost model's kind: cut k's stage s starts at live node at[k][s]. */
#define PIPPY_MAX_CUT_CANDIDATES 16
typedef struct {
    int32_t n;
    int32_t at[PIPPY_MAX_CUT_CANDIDATES][PIPPY_MAX_STAGES + 1];
} pippy_cuts;

typedef struct {
    int32_t stages;              /* 0: from the annotations (or 1 when none) */
    const char *split_before;    /* --split-before, comma-separated names or prefixes, or NULL */
    int32_t microbatches;
    int64_t batch;               /* full batch (0: from the model's static leading dim) */
    const char *schedule;
    int32_t ranks;               /* --ranks: rank r runs stages r, r + ranks, ... (0: one stage per rank) */
    /* Cost-model cuts only (no annotation, no --split-before): */
    const int32_t *at;           /* stage s starts at live node at[s] (at[0] = 0, at[stages] = the live
                                    count): these cuts instead of the cost model's own, or NULL */
    pippy_cuts *candidates;      /* out, or NULL: the cost model's cuts first, then (several stages per
                                    rank) variants worth simulating: see pippy_partition */
} pippy_partition_opts;

/* Removes PipeSplit nodes (rewiring their users), collects every kind of cut, and
 * assigns each live node a stage (contiguous ranges of the node order). The cost model's cuts make
 * the slowest stage as fast as it can be; with several stages per rank they then even the ranks'
 * totals. Those prices do not see the schedule's warm-up and drain, which a shallow first or last
 * stage shortens, so with several stages per rank o->candidates also gets variants with the first
 * and last stage cut to 3/4, 1/2 and 1/4 of their priced time and the cuts between re-evened, each
 * within 5% of the best rank total; the compile simulates them (pippy_compile). */
pippy_status pippy_partition(pippy_plan *p, const pippy_partition_opts *o);
/* Stage inputs/outputs, edges, parameters; needs node_stage. */
pippy_status pippy_plan_build(pippy_plan *p);
/* Liveness-based arena offsets per stage. */
pippy_status pippy_memplan(pippy_plan *p);
/* Action lists per rank (checked by common/schedule_sim), the microbatches each stage holds at
 * once (stash_slots), and the predicted timeline. */
pippy_status pippy_schedule_build(pippy_plan *p);
void pippy_plan_free(pippy_plan *p);

/* The bytes reduction id sums: its tied parameter's, or (data parallel) the stage's trainable bytes. */
uint64_t pippy_reduction_bytes(const pippy_plan *p, int32_t id);
/* The stages rank r runs (ascending) into stages; returns how many. */
int32_t pippy_rank_stages(const pippy_plan *p, int32_t r, int32_t *stages);
/* Rank r's program: "stageK" when it runs stage K alone, else "rankR" (built from its stages' C
 * sources and rankR.c). */
void pippy_rank_program(const pippy_plan *p, int32_t r, char *buf, size_t n);

/* The node names after which a PipeSplit stands (for inspect); names point into g. */
int32_t pippy_pipesplit_points(const pippy_graph *g, const char **names, int32_t cap);

#endif
