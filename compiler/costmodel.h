/* costmodel.h — predicted time of nodes and transfers on this machine.
 *
 * A node costs the time its kernel took on this machine for its shape, when that shape was timed
 * (the kernel table, below): between its time with its operands at hand (called back to back) and
 * its time with them far (each call after a scrub of the caches), by the share of its input bytes
 * that a stage reads from far (pippy_graph_far_share: parameters, and what an earlier phase made:
 * the forward's stash, B's gradients for W); otherwise flops / matmul rate (a tenth of that rate for other than
 * dense nodes: MatMul, Gemm, Conv and the convolution gradients) or bytes it touches / memory
 * bandwidth, whichever is more. A transfer costs latency + bytes / link bandwidth.
 *
 * The rates are measured by running the backend's own kernels for a few ms (pippy_cost_calibrate),
 * once per machine: pippy_cost_load() keeps them in a small JSON file (a per-machine cache, or the
 * file given by --cost-model) and every later compile reads that file. The kernel table grows the
 * same way: a compile that meets a node of a shape the file lacks times that kernel
 * (costmodel_kernels.c) and pippy_cost_flush() adds it to the file. So a compile is a pure
 * function of its inputs and that file. A file not measured on a machine ("measured": false, as
 * in one written by hand) is never extended. */
#ifndef PIPPY_COSTMODEL_H
#define PIPPY_COSTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "optim.h"
#include "status.h"

#define PIPPY_COST_KEY_MAX 320
#define PIPPY_COST_MAX_KERNELS 65536 /* shapes in one file: far more than any machine's models make */

/* One kernel timed on this machine: its shape's key (pippy_cost_kernel_key) and microseconds per
 * call, as the file holds them (4 significant digits): with its operands at hand (the file's
 * "kernel_us") and far ("kernel_far_us"; 0: not timed so, as in a file of an older pippyc). */
typedef struct {
    char key[PIPPY_COST_KEY_MAX];
    double us, far_us;
} pippy_cost_kernel;

typedef struct {
    double flops_per_s;   /* dense matmul rate of the backend as the compiler runs it */
    double bytes_per_s;   /* memory bandwidth for element-wise work */
    double link_bytes_per_s;
    double link_latency_s;
    double op_overhead_s; /* fixed cost of one kernel call */
    int32_t calibrated;   /* 1: measured on a machine (now or when the file was written) */
    char source[4096 + 128]; /* the file the rates were read from, or why there is none */
    pippy_cost_kernel *kernels; /* the kernel table, sorted by key (owned; pippy_cost_free) */
    int32_t n_kernels, cap_kernels;
    int32_t time_kernels; /* 1: time kernels whose shape the table lacks (a measured model) */
    int32_t n_new;        /* kernels timed by this compile and not yet written */
    char file[4096];      /* where pippy_cost_flush writes them; "" when nowhere */
} pippy_cost_model;

/* Built-in rates and no table. c must hold no table (fresh, or after pippy_cost_free). */
void pippy_cost_defaults(pippy_cost_model *c);
void pippy_cost_free(pippy_cost_model *c);
/* This thread's CPU time, seconds: the clock of every measurement the cost model makes. */
double pippy_cost_thread_s(void);
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
/* Read rates from a JSON file written by pippy_cost_save (values checked); replaces c's table. */
pippy_status pippy_cost_read(pippy_cost_model *c, const char *path);
/* Adds the kernels this compile timed to c->file (merged with what the file holds by then, in case
 * another compile wrote it meanwhile). A file that cannot be written is a warning: the timings are
 * then measured again by the next compile. note gets a line when kernels were timed. */
void pippy_cost_flush(pippy_cost_model *c, char *note, size_t n);

/* Seconds for node d, far (0 to 1) the share of its input bytes read from far: its timed kernel
 * when the table has its shape (timed now when the model may time kernels), us + far * (far_us -
 * us); else the rates. */
double pippy_cost_node_s(pippy_cost_model *c, const pippy_op_desc *d, double far);

/* The kernel table (costmodel_kernels.c). */
int pippy_cost_is_dense(const pippy_op_desc *d);
/* d's key: "MatMul float[64,256] float[256,1024] pippy.trans_b=1", "pippy::GeluGrad ..." (inputs
 * known when compiling end in "const"); 0 when the key does not fit cap bytes. */
int pippy_cost_kernel_key(const pippy_op_desc *d, char *key, size_t cap);
const pippy_cost_kernel *pippy_cost_kernel_find(const pippy_cost_model *c, const char *key);
/* Adds or replaces key's times, keeping the table sorted. */
pippy_status pippy_cost_kernel_put(pippy_cost_model *c, const char *key, double us, double far_us);
/* For reading many: append unsorted, then sort once (a key given twice keeps its larger times). */
pippy_status pippy_cost_kernel_append(pippy_cost_model *c, const char *key, double us, double far_us);
void pippy_cost_kernel_sort(pippy_cost_model *c);
/* Seconds per call of d's kernel as a stage creates it, with its operands at hand (the median of
 * a few calls back to back after a warm-up, thread CPU time), and in *far_s with them far (the
 * median of as many calls, each after reading a buffer of this core's share of the last-level
 * cache); 0 when it cannot be timed here. */
double pippy_cost_kernel_time_s(const pippy_op_desc *d, double *far_s);
double pippy_cost_transfer_s(const pippy_cost_model *c, uint64_t bytes);

/* The optimizer's step on a stage of n trained floats, as the runtime takes it (the gradient's sum
 * of squares, the step, the clearing of the gradient), in seconds: the table's time for it (timed
 * now when the model may time kernels, key "pippy::OptimizerStep float[n] KIND"), else the floats
 * it reads and writes at the memory bandwidth. 0 for n = 0. */
double pippy_cost_optimizer_s(pippy_cost_model *c, const pippy_optim_config *o, uint64_t n);
/* Its time on this machine (costmodel_kernels.c); 0 when it cannot be timed here. */
double pippy_cost_optimizer_time_s(const pippy_optim_config *o, size_t n);

#endif
