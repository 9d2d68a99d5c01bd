/* schedule.h — choosing the schedule (schedule.c): --schedule NAME builds that one, --schedule
 * auto builds every schedule that applies, replays each with the cost model (common/schedule_sim)
 * and keeps the fastest whose predicted peak memory per rank fits --memory-per-rank. The builders
 * themselves are pippy_schedule_build (plan.h). */
#ifndef PIPPY_SCHEDULE_H
#define PIPPY_SCHEDULE_H

#include <stdio.h>

#include "plan.h"

#define PIPPY_SCHEDULE_MAX 8

/* One schedule as the choice saw it. */
typedef struct {
    const char *name;
    double step_ms, bubble;
    double peak_bytes; /* the largest of its ranks' predicted peak memory */
    int32_t peak_rank; /* which rank that is */
    int32_t fits;      /* peak_bytes <= the limit (always 1 without one) */
} pippy_schedule_candidate;

typedef struct {
    int32_t automatic;      /* --schedule auto */
    uint64_t limit;         /* --memory-per-rank, 0: none */
    int32_t n;
    pippy_schedule_candidate c[PIPPY_SCHEDULE_MAX];
    int32_t chosen;         /* index into c */
} pippy_schedule_report;

typedef struct {
    const char *name;          /* a schedule's name, or "auto" */
    uint64_t memory_per_rank;  /* bytes, 0: no limit */
    int32_t optimizer_state;   /* floats of optimizer state per trained float (for the memory) */
} pippy_schedule_opts;

/* Builds the schedule o->name (or, for "auto", every one that applies, keeping the fastest that
 * fits; equal predicted steps: the smaller peak memory, then the order gpipe, 1f1b, zb-h1) into p,
 * p->schedule naming it; rep says what was compared. Refuses a schedule (or, for auto, every one)
 * whose predicted peak memory on some rank exceeds o->memory_per_rank, naming the smallest peak. */
pippy_status pippy_schedule_choose(pippy_plan *p, const pippy_schedule_opts *o, pippy_schedule_report *rep);

/* The summary's lines on the choice: for auto, each candidate's predicted step and peak memory per
 * rank, which were too big and which was chosen; with a limit, the chosen one's peak against it.
 * Nothing otherwise. */
void pippy_schedule_report_print(FILE *f, const pippy_schedule_report *rep);

/* The predicted peak memory of rank r of a built schedule: the sum of its stages'
 * pippy_stage_peak_bytes. */
double pippy_schedule_rank_bytes(const pippy_plan *p, int32_t r, int32_t optimizer_state);

#endif
