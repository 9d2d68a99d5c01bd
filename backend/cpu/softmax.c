/* softmax.c — Softmax and LogSoftmax.
 *
 * Opset < 13: the input is coerced to 2-D at axis (default 1), [prod(dims[:axis]),
 * prod(dims[axis:])], and the op runs along the second dim. Opset >= 13: the op
 * runs along axis (default -1). Both are X seen as [outer, n, inner] reduced along n
 * (opset < 13: inner = 1).
 * Fast kernel: oneDNN softmax_v2 (accurate or log) on that 3-D view (2-D when
 * inner = 1). Reference kernel: max-subtracted exp / sum in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

pippy_status pippy_sm_dims_of(const pippy_op_desc *d, const pippy_tdesc *x, pippy_sm_dims *g)
{
    int rank = x->rank;
    int old = d->opset > 0 && d->opset < 13;
    g->outer = g->n = g->inner = 1;
    if (rank == 0) /* a scalar: one element, one group */
        return PIPPY_OK;
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", old ? 1 : -1), rank, &axis));
    g->outer = pippy_dims_prod(x->dims, 0, axis);
    if (old) {
        g->n = pippy_dims_prod(x->dims, axis, rank);
    } else {
        g->n = x->dims[axis];
        g->inner = pippy_dims_prod(x->dims, axis + 1, rank);
    }
    return PIPPY_OK;
}

typedef struct {
    pippy_sm_dims dm;
    int log;
} pippy_sm_geom;

static pippy_status pippy_sm_geom_get(const pippy_op_desc *d, pippy_sm_geom *g)
{
    if (d->n_in != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 input, found %d", d->op, d->n_in);
    PIPPY_TRY(pippy_dense_want_float(d, 0, "input"));
    g->log = strcmp(d->op, "LogSoftmax") == 0;
    return pippy_sm_dims_of(d, &d->in[0], &g->dm);
}

static pippy_status pippy_sm_infer(pippy_op_desc *d)
{
    pippy_sm_geom g;
    PIPPY_TRY(pippy_sm_geom_get(d, &g));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 output, found %d", d->op, d->n_out);
    d->out[0] = d->in[0];
    return PIPPY_OK;
}

static double pippy_sm_flops(const pippy_op_desc *d) { return 4.0 * (double)pippy_tdesc_numel(&d->in[0]); }

typedef struct {
    pippy_kernel base;
    pippy_sm_geom g;
} pippy_sm_ref;

static void pippy_sm_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_sm_geom *gg = &((const pippy_sm_ref *)kb)->g;
    const pippy_sm_dims *g = &gg->dm;
    const float *X = in[0];
    float *Y = out[0];
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            const float *x = X + o * g->n * g->inner + i;
            float *y = Y + o * g->n * g->inner + i;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < g->n; j++)
                if (x[j * g->inner] > mx)
                    mx = x[j * g->inner];
            for (int64_t j = 0; j < g->n; j++)
                sum += exp((double)x[j * g->inner] - mx);
            for (int64_t j = 0; j < g->n; j++) {
                double t = (double)x[j * g->inner] - mx;
                y[j * g->inner] = (float)(gg->log ? t - log(sum) : exp(t) / sum);
            }
        }
}

static pippy_status pippy_sm_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_sm_geom *gg = &((const pippy_sm_ref *)ref)->g;
    const pippy_sm_dims *g = &gg->dm;
    int64_t dims[3] = {g->outer, g->n, g->inner};
    int nd = g->inner == 1 ? 2 : 3;
    dnnl_memory_desc_t md;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, nd, dims));
    dnnl_softmax_v2_desc_t sd;
    PIPPY_DNNL_CHECK(dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
                                                       gg->log ? dnnl_softmax_log : dnnl_softmax_accurate, &md, &md, 1));
    return pippy_dnnl_add_src_dst(k, d, &sd, &md, &md);
}

static pippy_status pippy_sm_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_sm_ref r = {.base.run = pippy_sm_ref_run};
    PIPPY_TRY(pippy_sm_geom_get(d, &r.g));
    return pippy_dense_create(d, r.g.dm.outer * r.g.dm.n * r.g.dm.inner > 0, pippy_sm_fast, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_softmax[] = {
    {"Softmax", "", pippy_sm_infer, pippy_sm_flops, pippy_sm_create},
    {"LogSoftmax", "", pippy_sm_infer, pippy_sm_flops, pippy_sm_create},
    {0},
};
