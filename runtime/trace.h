/* trace.h — records what a rank does as Chrome trace events, written as a JSON array that
 * Perfetto (ui.perfetto.dev) and chrome://tracing open: one process per rank ("rank N (stage K)"),
 * one thread per lane (compute, send, recv), one complete event ("ph":"X") per action.
 *
 * The events live in an array sized once at init: recording never allocates, and events past
 * the capacity are counted and dropped (the written trace says how many). Timestamps are
 * CLOCK_MONOTONIC microseconds, so the traces of ranks on one host line up when merged.
 * Every recording call accepts a NULL trace and then does nothing (tracing off). */
#ifndef PIPPY_TRACE_H
#define PIPPY_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct pippy_trace pippy_trace;

enum { PIPPY_LANE_COMPUTE = 0, PIPPY_LANE_SEND = 1, PIPPY_LANE_RECV = 2, PIPPY_TRACE_LANES = 3 };

#define PIPPY_TRACE_MAX_ARGS 3
#define PIPPY_TRACE_NAME_MAX 64 /* longer names are cut */

/* A numeric event argument; key must outlive the trace (a string literal). */
typedef struct {
    const char *key;
    int64_t value;
} pippy_trace_arg;

pippy_status pippy_trace_init(pippy_trace **out, int rank, int stage, size_t capacity);
void pippy_trace_free(pippy_trace *t);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t pippy_trace_now_us(void);

/* A complete event on lane; name and category are copied. microbatch < 0: no argument. */
void pippy_trace_event(pippy_trace *t, int lane, const char *name, const char *category,
                       uint64_t start_us, uint64_t dur_us, int64_t microbatch);
/* The same with up to PIPPY_TRACE_MAX_ARGS arguments. */
void pippy_trace_event_args(pippy_trace *t, int lane, const char *name, const char *category,
                            uint64_t start_us, uint64_t dur_us, const pippy_trace_arg *args,
                            int n_args);

/* begin returns the start time; end records the event from it to now. */
uint64_t pippy_trace_begin(void);
void pippy_trace_end(pippy_trace *t, int lane, const char *name, const char *category,
                     uint64_t start_us, int64_t microbatch);

size_t pippy_trace_count(const pippy_trace *t);   /* events recorded */
size_t pippy_trace_dropped(const pippy_trace *t); /* events past the capacity */

/* Write the JSON array to path (through a temporary file renamed over it). */
pippy_status pippy_trace_write(const pippy_trace *t, const char *path);

#endif
