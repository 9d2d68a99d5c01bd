/* softmax_grad.c — the backward of Softmax and LogSoftmax (domain "pippy").
 *
 *   pippy::SoftmaxGrad(dY, Y) -> dX        dX = Y * (dY - sum_axis(dY * Y))
 *   pippy::LogSoftmaxGrad(dY, Y) -> dX     dX = dY - exp(Y) * sum_axis(dY)   (Y: the log-softmax)
 *
 * Y is the forward's output; attribute axis with the forward's meaning at the model's opset
 * (< 13: coerced to 2-D at axis, default 1; >= 13: one axis, default -1), so Y is seen as
 * [outer, n, inner] reduced along n (geom.h).
 * Fast kernels: SoftmaxGrad over contiguous rows (inner 1, attention's case) is a loop of our own,
 * float sums in 8 lanes (oneDNN 2.6 has no jit softmax backward below AVX-512, and its reference
 * one took 12 ns per element on an AVX2 EPYC); every other case is oneDNN softmax_v2 backward
 * (accurate or log) on that 3-D view, created against a forward_training softmax (no workspace).
 * Reference kernel: the formulas above, sums in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

typedef struct {
    pippy_sm_dims dm;
    int log;
} pippy_smg_geom;

static pippy_status pippy_smg_geom_get(const pippy_op_desc *d, pippy_smg_geom *g)
{
    if (d->n_in != 2)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 2 inputs (dY, Y), found %d", d->op, d->n_in);
    PIPPY_TRY(pippy_dense_want_float(d, 0, "dY"));
    PIPPY_TRY(pippy_dense_want_float(d, 1, "Y"));
    PIPPY_TRY(pippy_dense_want_shape(d, 0, "dY", &d->in[1], "the shape of Y"));
    g->log = strcmp(d->op, "LogSoftmaxGrad") == 0;
    return pippy_sm_dims_of(d, &d->in[1], &g->dm);
}

static pippy_status pippy_smg_infer(pippy_op_desc *d)
{
    pippy_smg_geom g;
    PIPPY_TRY(pippy_smg_geom_get(d, &g));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 output, found %d", d->op, d->n_out);
    d->out[0] = d->in[1];
    return PIPPY_OK;
}

static double pippy_smg_flops(const pippy_op_desc *d) { return 4.0 * (double)pippy_tdesc_numel(&d->in[1]); }

typedef struct {
    pippy_kernel base;
    pippy_smg_geom g;
} pippy_smg_ref;

static void pippy_smg_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_smg_geom *gg = &((const pippy_smg_ref *)kb)->g;
    const pippy_sm_dims *g = &gg->dm;
    const float *dY = in[0], *Y = in[1];
    float *dX = out[0];
    int64_t st = g->inner;
    for (int64_t o = 0; o < g->outer; o++)
        for (int64_t i = 0; i < g->inner; i++) {
            int64_t base = o * g->n * g->inner + i;
            const float *dy = dY + base, *y = Y + base;
            float *dx = dX + base;
            double s = 0;
            for (int64_t j = 0; j < g->n; j++)
                s += gg->log ? (double)dy[j * st] : (double)dy[j * st] * (double)y[j * st];
            for (int64_t j = 0; j < g->n; j++)
                dx[j * st] = gg->log ? (float)((double)dy[j * st] - exp((double)y[j * st]) * s)
                                     : (float)((double)y[j * st] * ((double)dy[j * st] - s));
        }
}

#define PIPPY_SMG_LANES 8

/* SoftmaxGrad, inner 1: per row s = sum(dY * Y) in PIPPY_SMG_LANES partial sums (vectorisable
 * without reassociating), then dX = Y * (dY - s). */
static void pippy_smg_rows_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_sm_dims *g = &((const pippy_smg_ref *)kb)->g.dm;
    const int64_t n = g->n, body = n - n % PIPPY_SMG_LANES;
    for (int64_t r = 0; r < g->outer; r++) {
        const float *dy = (const float *)in[0] + r * n, *y = (const float *)in[1] + r * n;
        float *dx = (float *)out[0] + r * n;
        float acc[PIPPY_SMG_LANES] = {0};
        for (int64_t j = 0; j < body; j += PIPPY_SMG_LANES)
            for (int l = 0; l < PIPPY_SMG_LANES; l++)
                acc[l] += dy[j + l] * y[j + l];
        float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (int64_t j = body; j < n; j++)
            s += dy[j] * y[j];
        for (int64_t j = 0; j < n; j++)
            dx[j] = y[j] * (dy[j] - s);
    }
}

static pippy_status pippy_smg_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_smg_geom *gg = &((const pippy_smg_ref *)ref)->g;
    const pippy_sm_dims *g = &gg->dm;
    int64_t dims[3] = {g->outer, g->n, g->inner};
    int nd = g->inner == 1 ? 2 : 3;
    dnnl_alg_kind_t alg = gg->log ? dnnl_softmax_log : dnnl_softmax_accurate;
    dnnl_memory_desc_t md;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, nd, dims));
    dnnl_softmax_v2_desc_t fwd, bwd;
    PIPPY_DNNL_CHECK(dnnl_softmax_v2_forward_desc_init(&fwd, dnnl_forward_training, alg, &md, &md, 1));
    PIPPY_TRY(pippy_dnnl_hint(k, d, &fwd));
    PIPPY_DNNL_CHECK(dnnl_softmax_v2_backward_desc_init(&bwd, alg, &md, &md, &md, 1));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_bwd(k, d, &bwd, 0, &pd));
    dnnl_memory_t dym, ym, dxm;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 0, &dym));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 1, &ym));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &md, 0, &dxm));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DST, ym}, {DNNL_ARG_DIFF_SRC, dxm}};
    return pippy_dnnl_add_step(k, pd, args, 3);
}

static pippy_status pippy_smg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_smg_ref r = {.base.run = pippy_smg_ref_run};
    PIPPY_TRY(pippy_smg_geom_get(d, &r.g));
    if (!d->reference && !r.g.log && r.g.dm.inner == 1) {
        pippy_smg_ref *k = malloc(sizeof *k);
        if (!k)
            return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", d->op);
        *k = r;
        k->base.run = pippy_smg_rows_run;
        *out = &k->base;
        return PIPPY_OK;
    }
    return pippy_dense_create(d, r.g.dm.outer * r.g.dm.n * r.g.dm.inner > 0, pippy_smg_fast, &r.base, sizeof r,
                              out);
}

const pippy_op_info pippy_cpu_ops_softmax_grad[] = {
    {"SoftmaxGrad", "pippy", pippy_smg_infer, pippy_smg_flops, pippy_smg_create},
    {"LogSoftmaxGrad", "pippy", pippy_smg_infer, pippy_smg_flops, pippy_smg_create},
    {0},
};
