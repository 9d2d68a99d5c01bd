/* dense_case.h — the op-case builder and checks shared by the dense backend tests
 * (test_backend_dense.c, test_backend_grad_dense.c): a pippy_op_desc with its attributes,
 * seeded random inputs, fast-vs-reference runs, known-output runs and infer-error checks. */
#ifndef PIPPY_TEST_DENSE_CASE_H
#define PIPPY_TEST_DENSE_CASE_H

#include <stdint.h>

#include "backend.h"

#define DC_MAX_ATTRS 12

enum {
    DC_FILL_UNIFORM = 0,  /* [-1, 1) */
    DC_FILL_POSITIVE = 1, /* [0.5, 1.5) (variances, 1/stddev) */
    DC_FILL_LABELS = 2,   /* int64 / int32 class indices in [0, label_max), about one in 8 label_ignore */
    DC_FILL_TIES = 3,     /* one of -1, -0.5, 0, 0.5, 1: many equal values (max pooling's ties) */
};

typedef struct {
    pippy_op_desc d;
    pippy_attr attrs[DC_MAX_ATTRS];
    int64_t ints[DC_MAX_ATTRS][8];
    int fill[PIPPY_MAX_IO]; /* DC_FILL_* per input */
    int64_t label_max, label_ignore;
    /* dc_check_fast_vs_ref: */
    double tol;    /* bound on the error (0: 1e-4) */
    int scaled;    /* error relative to the output's largest |value| (else to max(1, |value|) each) */
    int must_fast; /* the fast kernel must be oneDNN's, not the reference */
    int out_init;  /* outputs start as the same random values (accumulating kernels), not NaN */
} dcase;

void dc_init(dcase *t, const char *op, int opset, int n_out);
void dc_in(dcase *t, int rank, const int64_t *dims);
#define DC_IN(t, ...)                                                          \
    do {                                                                       \
        const int64_t dc_d_[] = {__VA_ARGS__};                                 \
        dc_in((t), (int)(sizeof dc_d_ / sizeof dc_d_[0]), dc_d_);              \
    } while (0)
void dc_in_scalar(dcase *t);
void dc_in_absent(dcase *t);
void dc_attr_i(dcase *t, const char *name, int64_t v);
void dc_attr_f(dcase *t, const char *name, float v);
void dc_attr_s(dcase *t, const char *name, const char *v);
void dc_attr_ints(dcase *t, const char *name, int n, const int64_t *v);
#define DC_INTS(t, name, ...)                                                  \
    do {                                                                       \
        const int64_t dc_v_[] = {__VA_ARGS__};                                 \
        dc_attr_ints((t), (name), (int)(sizeof dc_v_ / sizeof dc_v_[0]), dc_v_); \
    } while (0)

/* The window attributes of Conv and the pools over ns spatial dims: kernel_shape k (NULL: absent),
 * auto_pad (NULL: absent), strides and dilations (ns values; a first value 0: absent), pads (2*ns
 * values; all 0: absent), ceil_mode and count_include_pad (0: absent). */
void dc_window_attrs(dcase *t, int ns, const int64_t *k, const char *auto_pad, const int64_t *strides,
                     const int64_t *dil, const int64_t *pads, int ceil_mode, int include_pad);

/* The seeded generator every test draws from. */
void dc_seed(unsigned seed);
float dc_uniform(void); /* [-1, 1) */
void dc_fill(float *p, int64_t n, int mode);

/* max |f - r| / max(1, |r|) over n elements; *at the worst index (NaN counts as infinite). */
double dc_rel_err(const float *f, const float *r, int64_t n, int64_t *at);
/* max |f - r| / max |r| (the error against the output's scale); *at the worst index. */
double dc_scaled_err(const float *f, const float *r, int64_t n, int64_t *at);

/* Infer t, build fast and reference kernels, run both on two random input sets (each kernel
 * on its own copy of the inputs) and compare every output and every float input (a kernel
 * that writes an input must write the same values). const_mask: inputs given as in_const (NULL
 * at run time for the fast kernel). Returns the worst error seen. */
double dc_check_fast_vs_ref(dcase *t, unsigned seed, unsigned const_mask, const char *label);

/* Run t with the given inputs, through the reference kernel and then the fast one; both must
 * give want (n values of output 0) within 1e-5 relative. */
void dc_check_known(dcase *t, const float *const *inputs, const float *want, int64_t n, const char *label);

/* Infer must fail with want and a message containing needle1 and needle2 (each may be NULL). */
void dc_check_infer_fails(dcase *t, pippy_status want, const char *needle1, const char *needle2);

/* Infer t and run it once (reference or fast) on inputs into outputs; fails the test on error. */
void dc_run(dcase *t, int reference, const void *const *inputs, void *const *outputs, const char *label);

/* Non-zero when PIPPY_TEST_VERBOSE is set: tests print the errors they measure. */
int dc_verbose(void);

#endif
