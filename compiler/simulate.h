/* simulate.h — `pippyc simulate OUT/` and `pippyc timeline TRACE.json`: how a pipeline step goes,
 * predicted from schedule.json or measured by `pippyrun --trace`, as a table per rank (busy,
 * idle, bubble, the microbatches it holds at once, its peak memory) and as an SVG timeline drawn
 * by svg_timeline.c, the same picture for both so they can be laid side by side.
 *   simulate: reads OUT/schedule.json (possibly edited by hand), checks it with
 *             common/schedule_sim.c (a broken one is refused with the rank, action and rule) and
 *             replays it with the per-stage F/B/W times and link costs written in the file;
 *   timeline: reads the Chrome trace events that pippyrun --trace writes (one process per rank,
 *             lanes compute/send/recv, compute events F/B/W/idle). */
#ifndef PIPPY_SIMULATE_H
#define PIPPY_SIMULATE_H

#include <stdio.h>

#include "status.h"

typedef struct {
    const char *svg_path; /* where to draw the timeline, or NULL */
    int json;             /* the report as one JSON object instead of a table */
} pippy_sim_opts;

/* out: an output folder (its schedule.json) or a schedule.json itself. Report to f. */
pippy_status pippy_simulate(const char *out, const pippy_sim_opts *o, FILE *f);
/* trace: a JSON array of trace events, or an object with one under "traceEvents". */
pippy_status pippy_timeline_from_trace(const char *trace, const pippy_sim_opts *o, FILE *f);

#endif
