/* backend.h — the one kernel interface that compiled stage programs call.
 *
 * An op is described by a pippy_op_desc: its ONNX op type and opset, its
 * attributes, and the static types and shapes of its inputs and outputs
 * (plus the data of inputs known at compile time). For every supported op
 * the backend knows
 *   - its shape rule   (infer:  fills desc->out from desc->in, attrs, in_const)
 *   - its cost         (flops:  multiply-adds count 2)
 *   - its kernel       (create: builds a pippy_kernel once, at stage start;
 *                       run:    computes one call, allocation-free)
 * The backend knows nothing of stages, ranks or schedules.
 * See backend/README.md for the checklist to add an op. */
#ifndef PIPPY_BACKEND_H
#define PIPPY_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

/* Attribute types use the ONNX AttributeProto.AttributeType numbers. */
enum {
    PIPPY_ATTR_FLOAT = 1,
    PIPPY_ATTR_INT = 2,
    PIPPY_ATTR_STRING = 3,
    PIPPY_ATTR_TENSOR = 4,
    PIPPY_ATTR_FLOATS = 6,
    PIPPY_ATTR_INTS = 7,
    PIPPY_ATTR_STRINGS = 8,
};

typedef struct {
    const char *name;
    int32_t type;
    int64_t i;            /* INT */
    float f;              /* FLOAT */
    const char *s;        /* STRING (NUL-terminated) */
    int32_t n;            /* element count of ints / floats / strings */
    const int64_t *ints;  /* INTS */
    const float *floats;  /* FLOATS */
    const char *const *strings; /* STRINGS */
    pippy_tdesc t;        /* TENSOR: its type and shape ... */
    const void *t_data;   /* ... and its data, dense, row-major */
} pippy_attr;

/* Attributes private to pippyc, set by compiler passes (never in ONNX files):
 *   "pippy.activation" (STRING "Relu"): fuse a ReLU after Conv / Gemm / MatMul.
 *   "pippy.bias" (INT 1): MatMul takes a third input float[N], added to every row.
 *   "pippy.trans_a", "pippy.trans_b" (INT 0/1): MatMul uses A / B (rank >= 2) with its last two
 *       dims swapped, as if transposed (the autodiff's A^T, B^T; no copy).
 *   "pippy.accumulate" (INT 0/1): out += result instead of out = result (the output is read as
 *       well as written), so that weight gradients accumulate across microbatches straight into
 *       the gradient buffer; on MatMul (not with pippy.activation), ConvGradWeight,
 *       LayerNormalizationWeightGrad, BatchNormalizationWeightGrad, SumTo and GatherGrad.
 *   "pippy.padding_idx" (INT): on Gather (training, --padding-idx) and the GatherGrad made from it:
 *       that row of the table gets no gradient (torch.nn.Embedding's padding_idx).
 * One op writes one of its inputs: pippy::BatchNormalizationTraining updates its running_mean and
 * running_var (inputs 3 and 4) in place (backend/README.md, "Backward (training) kernels"). */

#define PIPPY_MAX_IO 16

typedef struct {
    const char *op;            /* ONNX op type, e.g. "MatMul" */
    const char *domain;        /* "" for the default ONNX domain */
    int32_t opset;             /* opset version of that domain in the model */
    const char *name;          /* ONNX node name, for messages only (may be "") */
    int32_t n_attrs;
    const pippy_attr *attrs;
    int32_t n_in;
    pippy_tdesc in[PIPPY_MAX_IO];          /* dtype UNDEFINED: absent optional input */
    const void *in_const[PIPPY_MAX_IO];    /* data of inputs known when compiling, else NULL */
    int32_t n_out;
    pippy_tdesc out[PIPPY_MAX_IO];         /* filled by infer */
    int32_t reference;         /* 1: create the plain C reference kernel */
} pippy_op_desc;

typedef struct pippy_kernel pippy_kernel;
typedef void (*pippy_kernel_run_fn)(pippy_kernel *k, const void *const *in, void *const *out);

/* Every kernel starts with this header; op families extend it. */
struct pippy_kernel {
    pippy_kernel_run_fn run;
    void (*destroy)(pippy_kernel *k); /* frees k itself; NULL: free(k) */
    void (*reset)(pippy_kernel *k);   /* back to the state create made (its run count); NULL: it keeps none */
};

typedef struct {
    const char *op;
    const char *domain; /* "" for ONNX */
    pippy_status (*infer)(pippy_op_desc *d);
    double (*flops)(const pippy_op_desc *d); /* NULL: one per output element */
    pippy_status (*create)(const pippy_op_desc *d, pippy_kernel **k);
} pippy_op_info;

/* Look up an op; NULL when the backend does not support it. */
const pippy_op_info *pippy_op_find(const char *domain, const char *op);
/* All supported ops, for `pippyc inspect --ops` and messages. */
const pippy_op_info *const *pippy_op_list(int *n);

/* Infer the outputs of d (n_out must be set). Adds "node NAME (OP)" context on error.
 * Around the op's shape rule it checks what every rule needs: that the op exists in the model's
 * opset (pippy_op_check_opset), that the attributes the rule read with the pippy_attr_* helpers
 * have the type it asked for (a FLOAT transB is an error, not the default), and that every
 * output is a well-formed descriptor of at most PIPPY_MAX_TENSOR_BYTES (pippy_tdesc_check). */
pippy_status pippy_op_infer(pippy_op_desc *d);

/* For each operator of the default ONNX domain: the first opset defining it and the opset
 * removing it (0: never), generated from onnx's schemas (tools/gen_opsets.py -> opsets.c). */
typedef struct {
    const char *op;
    int32_t since, removed;
} pippy_onnx_op_span;
extern const pippy_onnx_op_span pippy_onnx_op_spans[];
extern const int pippy_onnx_max_opset; /* the newest opset those schemas know */
/* Fails (PIPPY_ERR_INVALID) when op of the ONNX domain does not exist in opset. */
pippy_status pippy_op_check_opset(const char *domain, const char *op, int32_t opset);

/* Run-time errors of kernels. A kernel's run cannot return a status: one that meets data it
 * cannot handle (a Gather index out of range) writes something harmless instead (zeros) and
 * records the error with pippy_run_fail, naming its node. Whoever runs kernels checks
 * pippy_run_error() afterwards and fails with that message: the stage program after each
 * forward call, the compiler after folding a node. Process-wide, because kernels may run on
 * oneDNN's threads; the first message is kept until pippy_run_error_clear(). */
void pippy_run_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *pippy_run_error(void); /* NULL while there is none */
void pippy_run_error_clear(void);
double pippy_op_flops(const pippy_op_desc *d);
pippy_status pippy_kernel_create(const pippy_op_desc *d, pippy_kernel **k);

static inline void pippy_kernel_run(pippy_kernel *k, const void *const *in, void *const *out)
{
    k->run(k, in, out);
}
void pippy_kernel_destroy(pippy_kernel *k);
/* Forget every run so far: a kernel that keeps state between runs (pippy::DropoutTrain's run
 * count) goes back to what create made; the others are left as they are. (The stage programs'
 * warm-up runs each kernel once before the first step.) */
void pippy_kernel_reset(pippy_kernel *k);

/* Threads for oneDNN primitives created after this call (default 1). */
void pippy_backend_set_threads(int n);
int pippy_backend_threads(void);

/* Attribute look-ups (NULL / default when absent). An attribute present with another type also
 * gives the default, and is recorded as an error that pippy_op_infer / pippy_kernel_create
 * report once the rule returns. */
const pippy_attr *pippy_attr_find(const pippy_op_desc *d, const char *name);
int64_t pippy_attr_int(const pippy_op_desc *d, const char *name, int64_t dflt);
float pippy_attr_float(const pippy_op_desc *d, const char *name, float dflt);
const char *pippy_attr_string(const pippy_op_desc *d, const char *name, const char *dflt);
/* Returns the count (or -1 when absent) and sets *v. */
int pippy_attr_ints(const pippy_op_desc *d, const char *name, const int64_t **v);
/* "pippy.accumulate" into *acc: 0 when absent; fails unless INT 0 or 1. */
pippy_status pippy_attr_accumulate(const pippy_op_desc *d, int *acc);

/* Helpers for shape rules. */
/* Numpy-style broadcast of a and b into out (dtype of out left to the caller). */
pippy_status pippy_broadcast_shape(const pippy_op_desc *d, const pippy_tdesc *a, const pippy_tdesc *b,
                                   pippy_tdesc *out);
/* Normalise a possibly negative axis against rank; fails with context when out of range. */
pippy_status pippy_norm_axis(const pippy_op_desc *d, int64_t axis, int32_t rank, int32_t *out);
/* Read input i (known at compile time, int64 or int32) as int64 values; fails if not constant. */
pippy_status pippy_const_ints(const pippy_op_desc *d, int i, int64_t *v, int32_t cap, int32_t *n);

#endif
