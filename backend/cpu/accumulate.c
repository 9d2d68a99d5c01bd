/* accumulate.c — pippy::Accumulate(X) -> Y: Y += X (same shape, float).
 *
 * The training autodiff adds every partial gradient of a parameter into that parameter's
 * gradient buffer with this op (over the uses within a stage and over the microbatches of a
 * step), where the op that made the partial gradient cannot add into its output itself (see
 * the private attribute "pippy.accumulate"). The fast path is the reference loop; -O3
 * vectorises it. */
#include "backend.h"

#include <stdlib.h>

typedef struct {
    pippy_kernel base;
    int64_t n;
} pippy_acc_kernel;

static pippy_status pippy_acc_infer(pippy_op_desc *d)
{
    char s[128];
    if (d->n_in != 1 || d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "Accumulate: expected 1 input and 1 output, found %d and %d", d->n_in,
                          d->n_out);
    if (d->in[0].dtype != PIPPY_DT_FLOAT)
        return pippy_fail(PIPPY_ERR_INVALID, "Accumulate: expected float, found %s",
                          pippy_tdesc_str(&d->in[0], s, sizeof s));
    d->out[0] = d->in[0];
    return PIPPY_OK;
}

static void pippy_acc_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_acc_kernel *k = (const pippy_acc_kernel *)kb;
    const float *x = in[0];
    float *y = out[0];
    for (int64_t i = 0; i < k->n; i++)
        y[i] += x[i];
}

static pippy_status pippy_acc_create(const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_acc_infer((pippy_op_desc *)d));
    pippy_acc_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    k->base.run = pippy_acc_run;
    k->n = pippy_tdesc_numel(&d->in[0]);
    *out = &k->base;
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_accumulate[] = {
    {"Accumulate", "pippy", pippy_acc_infer, NULL, pippy_acc_create},
    {0},
};
