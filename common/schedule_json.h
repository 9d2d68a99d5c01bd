/* schedule_json.h — the parts of OUT/schedule.json that the schedule checker/simulator
 * (schedule_sim.h) works on, read into a pippy_sched: which rank runs each stage (stages[].rank),
 * the edges with their phase, consumers and bytes, the reductions, every rank's action list, and
 * the costs of the prediction (stages[].predicted_{forward,backward,weight}_ms, the link of
 * prediction.cost_model, stages[].stash_slots, config.window of a dynamic schedule). The file may be hand-edited or hostile: a value of
 * the wrong type or out of range is refused with where it is (ranks[1].actions[7].mb ...) and
 * what was expected; the sizes are bounded so that checking cannot exhaust memory. What the
 * values mean together (a peer that exchanges nothing, a deadlock) is pippy_sched_check's part.
 * Used by `pippyc simulate` and by the stage programs' reader (runtime/schedule_read.c). */
#ifndef PIPPY_SCHEDULE_JSON_H
#define PIPPY_SCHEDULE_JSON_H

#include <cjson/cJSON.h>

#include "schedule_sim.h"

#define PIPPY_SCHED_JSON_MAX_STAGES 1024
#define PIPPY_SCHED_JSON_MAX_ACTIONS (1 << 22) /* over all ranks */
#define PIPPY_SCHED_JSON_MAX_CELLS (1 << 22)   /* stages x microbatches, consumers x microbatches */

typedef struct {
    pippy_sched s; /* points into the arrays below */
    int32_t *stage_rank, *stash_slots, *n_actions, *reduction_n, *reduction_transmit, *reduction_dp, *consumers;
    double *reduction_bytes;
    int32_t **reduction_stages;
    pippy_action **actions;
    pippy_sched_edge *edges;
    double *stage_s;
    double *optimizer_s;
    int32_t n_all_ranks; /* ranks[] entries (actions[] holds each one's list) */
    int32_t dp; /* config.dp: replicas of the pipeline; s holds the first's ranks (the others' lists are
                 * checked to be the same) */
} pippy_sched_json;

/* Reads root (the parsed schedule.json; path names it in messages) into d, which owns what it
 * points at until pippy_sched_json_free (also safe after a failure). */
pippy_status pippy_sched_json_read(pippy_sched_json *d, const cJSON *root, const char *path);
void pippy_sched_json_free(pippy_sched_json *d);

#endif
