/* pool_grad.c — the backward of the pools (domain "pippy"; 1 to 3 spatial dims, the attributes
 * of the forward ops read by the same geometry, geom.h).
 *
 *   MaxPoolGrad(dY, X) -> dX                 attrs as MaxPool (storage_order only concerns
 *       the Indices output: ignored). Each window's gradient goes to the FIRST maximum of the
 *       window in row-major window order (as torch's CPU max_pool: a later equal value does not
 *       replace the max); overlapping windows accumulate. Padding never wins.
 *   AveragePoolGrad(dY) -> dX                attrs as AveragePool, plus shape: X's shape.
 *       Each window's gradient is spread evenly over the window's positions inside X, divided by
 *       the forward's count (count_include_pad: the positions inside the padded input, those
 *       that ceil_mode adds past the end padding not counted); overlapping windows accumulate.
 *   GlobalAveragePoolGrad(dY) -> dX          attr shape: X's shape. dX = dY / (spatial size).
 * dY must have the shape the forward gives for these shapes and attributes.
 *
 * Fast kernels: oneDNN pooling_v2 backward (ceil_mode as a larger end padding, as pool.c), created
 * against a forward_training pooling. Max pooling backward needs the forward's WORKSPACE (where
 * each window's max is): the kernel owns one, and a forward_training pooling step on X fills it
 * (with the pooled values into another kernel buffer, unused) before the backward step at each
 * run. AveragePool with count_include_pad whose ceil_mode window runs past the end padding has no
 * oneDNN equivalent and uses the reference kernel. GlobalAveragePoolGrad is an average pooling
 * backward with the window the size of X.
 * Reference kernels: plain loops (every case seen as 3-D). */
#include <stdlib.h>
#include <string.h>

#include "geom.h"

static int pippy_pg_kind(const char *op)
{
    return strcmp(op, "MaxPoolGrad") == 0       ? PIPPY_POOL_MAX
           : strcmp(op, "AveragePoolGrad") == 0 ? PIPPY_POOL_AVG
                                                : PIPPY_POOL_GAVG;
}

static pippy_status pippy_pg_geom_get(const pippy_op_desc *d, pippy_pool_geom *g)
{
    int kind = pippy_pg_kind(d->op), max = kind == PIPPY_POOL_MAX;
    if (d->n_in != (max ? 2 : 1))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %s, found %d inputs", d->op,
                          max ? "2 inputs (dY, X)" : "1 input (dY)", d->n_in);
    PIPPY_TRY(pippy_dense_want_float(d, 0, "dY"));
    pippy_tdesc x, yd;
    if (max) {
        PIPPY_TRY(pippy_dense_want_float(d, 1, "X"));
        x = d->in[1];
    } else {
        PIPPY_TRY(pippy_dense_shape_attr(d, "shape", &x));
    }
    PIPPY_TRY(pippy_pool_geom_of(d, kind, &x, g));
    pippy_window_tdesc(&g->w, g->N, g->C, &yd);
    return pippy_dense_want_shape(d, 0, "dY", &yd, "the pool's output for these shapes and attributes");
}

static pippy_status pippy_pg_infer(pippy_op_desc *d)
{
    pippy_pool_geom g;
    PIPPY_TRY(pippy_pg_geom_get(d, &g));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 output, found %d", d->op, d->n_out);
    if (g.kind == PIPPY_POOL_MAX)
        d->out[0] = d->in[1];
    else
        PIPPY_TRY(pippy_dense_shape_attr(d, "shape", &d->out[0]));
    return PIPPY_OK;
}

static double pippy_pg_flops(const pippy_op_desc *d)
{
    pippy_pool_geom g;
    if (pippy_pg_geom_get(d, &g) != PIPPY_OK)
        return 0;
    double f = (double)g.N * (double)g.C;
    for (int i = 0; i < g.w.ns; i++)
        f *= (double)g.w.out[i] * (double)g.w.k[i];
    return f;
}

/* ---- reference ---- */

typedef struct {
    pippy_kernel base;
    pippy_pool_geom g;
} pippy_pg_ref;

static void pippy_pg_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_pool_geom *g = &((const pippy_pg_ref *)kb)->g;
    const float *dY = in[0], *X = g->kind == PIPPY_POOL_MAX ? in[1] : NULL;
    float *dX = out[0];
    pippy_window w3;
    pippy_window_3d(&g->w, &w3);
    const int64_t *I = w3.in, *K = w3.k, *O = w3.out, *S = w3.s, *D = w3.dl, *PL = w3.pl, *PR = w3.pr;
    int64_t ni = I[0] * I[1] * I[2], no = O[0] * O[1] * O[2];
    memset(dX, 0, (size_t)(g->N * g->C * ni) * sizeof *dX);
    for (int64_t nc = 0; nc < g->N * g->C; nc++)
        for (int64_t o = 0; o < no; o++) {
            int64_t od[3] = {o / (O[1] * O[2]), o / O[2] % O[1], o % O[2]};
            int64_t best = -1, n_in = 0, n_padded = 0;
            for (int pass = 0; pass < (g->kind == PIPPY_POOL_MAX ? 1 : 2); pass++)
                for (int64_t kk = 0; kk < K[0] * K[1] * K[2]; kk++) { /* row-major window order */
                    int64_t kd[3] = {kk / (K[1] * K[2]), kk / K[2] % K[1], kk % K[2]}, p[3];
                    int inside = 1, in_padded = 1;
                    for (int i = 0; i < 3; i++) {
                        p[i] = od[i] * S[i] - PL[i] + kd[i] * D[i];
                        inside &= p[i] >= 0 && p[i] < I[i];
                        in_padded &= p[i] >= -PL[i] && p[i] < I[i] + PR[i];
                    }
                    int64_t at = nc * ni + (p[0] * I[1] + p[1]) * I[2] + p[2];
                    if (pass == 0) {
                        n_padded += in_padded;
                        n_in += inside;
                        if (inside && X && (best < 0 || X[at] > X[best])) /* the first maximum */
                            best = at;
                    } else if (inside) { /* average: spread over the window */
                        int64_t cnt = g->include_pad ? n_padded : n_in;
                        dX[at] += (float)((double)dY[nc * no + o] / (double)cnt);
                    }
                }
            if (X && best >= 0)
                dX[best] += dY[nc * no + o];
        }
}

/* ---- oneDNN ---- */

static pippy_status pippy_pg_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_pool_geom *g = &((const pippy_pg_ref *)ref)->g;
    int max = g->kind == PIPPY_POOL_MAX;
    dnnl_dims_t strides, kernel, dil, pl, pr;
    PIPPY_TRY(pippy_pool_dnnl_pads(d, g, strides, kernel, dil, pl, pr));
    dnnl_memory_desc_t xmd, ymd;
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 0, &xmd));
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 1, &ymd));
    dnnl_alg_kind_t alg = max              ? dnnl_pooling_max
                          : g->include_pad ? dnnl_pooling_avg_include_padding
                                           : dnnl_pooling_avg_exclude_padding;
    dnnl_pooling_v2_desc_t fwd, bwd;
    dnnl_status_t s = dnnl_pooling_v2_forward_desc_init(&fwd, dnnl_forward_training, alg, &xmd, &ymd, strides, kernel,
                                                        dil, pl, pr);
    if (s == dnnl_invalid_arguments || s == dnnl_unimplemented) /* e.g. padding as large as the window */
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s:%d: oneDNN pooling does not take these windows", __FILE__,
                          __LINE__);
    PIPPY_DNNL_CHECK(s);
    PIPPY_TRY(pippy_dnnl_hint(k, d, &fwd));
    PIPPY_DNNL_CHECK(dnnl_pooling_v2_backward_desc_init(&bwd, alg, &xmd, &ymd, strides, kernel, dil, pl, pr));
    dnnl_memory_t dym, dxm, wsm = NULL;
    if (max) { /* the forward step that fills the workspace */
        const dnnl_memory_desc_t *wsmd = dnnl_primitive_desc_query_md(k->hint, dnnl_query_workspace_md, 0);
        if (!wsmd || wsmd->ndims == 0)
            return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: max pooling without a workspace", __FILE__, __LINE__);
        dnnl_memory_t xm, ym;
        dnnl_primitive_desc_t fpd;
        PIPPY_DNNL_CHECK(dnnl_primitive_desc_clone(&fpd, k->hint));
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, wsmd, &wsm, NULL));
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, &ymd, &ym, NULL));
        PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 1, &xm));
        dnnl_exec_arg_t fargs[3] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_WORKSPACE, wsm}};
        PIPPY_TRY(pippy_dnnl_add_step(k, fpd, fargs, 3));
    }
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_bwd(k, d, &bwd, 0, &pd));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &ymd, 0, &dym));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &xmd, 0, &dxm));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_SRC, dxm}, {DNNL_ARG_WORKSPACE, wsm}};
    return pippy_dnnl_add_step(k, pd, args, max ? 3 : 2);
}

static pippy_status pippy_pg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_pg_ref r = {.base.run = pippy_pg_ref_run};
    PIPPY_TRY(pippy_pg_geom_get(d, &r.g));
    return pippy_dense_create(d, pippy_tdesc_numel(&d->in[0]) > 0, pippy_pg_fast, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_pool_grad[] = {
    {"MaxPoolGrad", "pippy", pippy_pg_infer, pippy_pg_flops, pippy_pg_create},
    {"AveragePoolGrad", "pippy", pippy_pg_infer, pippy_pg_flops, pippy_pg_create},
    {"GlobalAveragePoolGrad", "pippy", pippy_pg_infer, pippy_pg_flops, pippy_pg_create},
    {0},
};
