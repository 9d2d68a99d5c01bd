/* costmodel.h — predicted time of nodes and transfers on this machine.
 *
 * A node costs flops / matmul rate + bytes it touches / memory bandwidth; a
 * transfer costs latency + bytes / link bandwidth. The rates are measured by
 * running the backend's own kernels for a few ms (pippy_cost_calibrate), once
 * per machine: pippy_cost_load() keeps them in a small JSON file (a per-machine
 * cache, or the file given by --cost-model) and every later compile reads that
 * file, so a compile is a pure function of its inputs and that file. */
#ifndef PIPPY_COSTMODEL_H
#define PIPPY_COSTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "status.h"

typedef struct {
    double flops_per_s;   /* dense matmul rate of the backend as the compiler runs it */
    double bytes_per_s;   /* memory bandwidth for element-wise work */
    double link_bytes_per_s;
    double link_latency_s;
    double op_overhead_s; /* fixed cost of one kernel call */
    int32_t calibrated;   /* 1: measured on a machine (now or when the file was written) */
    char source[4096 + 128]; /* the file the rates were read from, or why there is none */
} pippy_cost_model;

void pippy_cost_defaults(pippy_cost_model *c);
/* Measures this machine with the backend's kernels (about 50 ms). */
void pippy_cost_calibrate(pippy_cost_model *c);

/* The rates for a compile. file != NULL (--cost-model FILE): read FILE; when it does not exist,
 * measure and write it. file == NULL: the same with the per-machine cache
 * ($XDG_CACHE_HOME or ~/.cache)/pippyc/costmodel-<host>-<cpu hash>.json; a cache that cannot be
 * read or written is measured around (with a note), whereas a bad FILE is an error.
 * note (n bytes) gets one line saying where the rates came from. */
pippy_status pippy_cost_load(pippy_cost_model *c, const char *file, char *note, size_t n);

/* Path of this machine's cache file; 0 when there is no cache folder ($HOME unset). */
int pippy_cost_cache_path(char *path, size_t n);

/* Write the rates to path as JSON (atomically: temp file + rename). */
pippy_status pippy_cost_save(const pippy_cost_model *c, const char *path);
/* Read rates from a JSON file written by pippy_cost_save (values checked). */
pippy_status pippy_cost_read(pippy_cost_model *c, const char *path);

double pippy_cost_node_s(const pippy_cost_model *c, const pippy_op_desc *d);
double pippy_cost_transfer_s(const pippy_cost_model *c, uint64_t bytes);

#endif
