/* costmodel.h — predicted time of nodes and transfers on this machine.
 *
 * A node costs flops / matmul rate + bytes it touches / memory bandwidth, the
 * rates measured by running the backend's own kernels for a few ms when
 * pippyc starts (pippy_cost_calibrate). A transfer costs latency + bytes /
 * link bandwidth (DESIGN.md's measured shared-memory figures by default). */
#ifndef PIPPY_COSTMODEL_H
#define PIPPY_COSTMODEL_H

#include <stdint.h>

#include "backend.h"

typedef struct {
    double flops_per_s;   /* dense matmul rate of one core */
    double bytes_per_s;   /* memory bandwidth for element-wise work */
    double link_bytes_per_s;
    double link_latency_s;
    double op_overhead_s; /* fixed cost of one kernel call */
    int32_t calibrated;
} pippy_cost_model;

void pippy_cost_defaults(pippy_cost_model *c);
/* Measures this machine with the backend's kernels (about 50 ms). */
void pippy_cost_calibrate(pippy_cost_model *c);
double pippy_cost_node_s(const pippy_cost_model *c, const pippy_op_desc *d);
double pippy_cost_transfer_s(const pippy_cost_model *c, uint64_t bytes);

#endif
