/* conv_grad.c — the backward of Conv (domain "pippy"; 1-D to 3-D, group, strides, pads,
 * dilations, auto_pad: the attributes of Conv, read by the same geometry, geom.h).
 *
 *   ConvGradInput(dY, W) -> dX          attr shape: X's shape (strides make it ambiguous)
 *       dX[n, c, i] = sum over the outputs o and kernel taps k with i = o*stride - pad + k*dilation
 *                     of dY[n, m, o] * W[m, c - group's first channel, k], m in c's group.
 *   ConvGradWeight(dY, X) -> dW [, dB]  attr shape: W's shape
 *       dW[m, c, k] = sum over n, o of dY[n, m, o] * X[n, group's first channel + c, o*s - p + k*d];
 *       dB[m] = sum of dY over N and the spatial dims.
 *       "pippy.accumulate" = 1: dW (and dB) are added to (gradients accumulate over microbatches).
 * dY must have the shape the Conv gives for these shapes and attributes.
 *
 * Fast kernels: oneDNN convolution backward_data / backward_weights (direct algorithm), created
 * against a forward_training convolution of the same geometry (no workspace). Layouts are left
 * to the primitive (format any), as in conv.c: plain NC... tensors are reordered into the blocked
 * layouts it prefers and the results back, inside the kernel's own buffers made at create. W
 * (ConvGradInput) is reordered at each run, or once at create when it is constant. Accumulation:
 * the primitive writes a kernel buffer that a reorder with a sum post-op adds into dW / dB.
 * Reference kernels: plain loops (every case seen as 3-D), double accumulators. */
#include <stdlib.h>
#include <string.h>

#include "geom.h"

enum { PIPPY_CG_INPUT, PIPPY_CG_WEIGHT };

typedef struct {
    pippy_conv_geom g;
    int kind, acc;
} pippy_cg_geom;

static pippy_status pippy_cg_geom_get(const pippy_op_desc *d, pippy_cg_geom *cg)
{
    memset(cg, 0, sizeof *cg);
    cg->kind = strcmp(d->op, "ConvGradWeight") == 0 ? PIPPY_CG_WEIGHT : PIPPY_CG_INPUT;
    int w = cg->kind == PIPPY_CG_WEIGHT;
    if (d->n_in != 2)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 2 inputs (dY, %s), found %d", d->op, w ? "X" : "W",
                          d->n_in);
    PIPPY_TRY(pippy_dense_want_float(d, 0, "dY"));
    PIPPY_TRY(pippy_dense_want_float(d, 1, w ? "X" : "W"));
    if (w)
        PIPPY_TRY(pippy_dense_flag(d, "pippy.accumulate", &cg->acc));
    pippy_tdesc sh, yd;
    PIPPY_TRY(pippy_dense_shape_attr(d, "shape", &sh));
    PIPPY_TRY(pippy_conv_geom_of(d, w ? &d->in[1] : &sh, w ? &sh : &d->in[1], NULL, &cg->g));
    cg->g.has_b = w && d->n_out == 2;
    pippy_window_tdesc(&cg->g.w, cg->g.N, cg->g.M, &yd);
    return pippy_dense_want_shape(d, 0, "dY", &yd, "the Conv output for these shapes and attributes");
}

static pippy_status pippy_cg_infer(pippy_op_desc *d)
{
    pippy_cg_geom cg;
    PIPPY_TRY(pippy_cg_geom_get(d, &cg));
    int w = cg.kind == PIPPY_CG_WEIGHT;
    if (d->n_out < 1 || d->n_out > (w ? 2 : 1))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %s output%s, found %d", d->op, w ? "1 or 2" : "1",
                          w ? "s" : "", d->n_out);
    PIPPY_TRY(pippy_dense_shape_attr(d, "shape", &d->out[0]));
    if (w && d->n_out == 2)
        d->out[1] = (pippy_tdesc){.dtype = PIPPY_DT_FLOAT, .rank = 1, .dims = {cg.g.M}};
    return PIPPY_OK;
}

static double pippy_cg_flops(const pippy_op_desc *d)
{
    pippy_cg_geom cg;
    if (pippy_cg_geom_get(d, &cg) != PIPPY_OK)
        return 0;
    const pippy_conv_geom *g = &cg.g;
    double f = 2.0 * (double)g->N * (double)g->M * (double)(g->C / g->G);
    for (int i = 0; i < g->w.ns; i++)
        f *= (double)g->w.out[i] * (double)g->w.k[i];
    return f;
}

/* ---- reference ---- */

typedef struct {
    pippy_kernel base;
    pippy_cg_geom cg;
} pippy_cg_ref;

static void pippy_cgi_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_conv_geom *g = &((const pippy_cg_ref *)kb)->cg.g;
    const float *dY = in[0], *W = in[1];
    float *dX = out[0];
    pippy_window w3;
    pippy_window_3d(&g->w, &w3);
    const int64_t *I = w3.in, *K = w3.k, *O = w3.out, *S = w3.s, *D = w3.dl, *P = w3.pl;
    int64_t cg = g->C / g->G, mg = g->M / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t ic = 0; ic < g->C; ic++)
            for (int64_t i0 = 0; i0 < I[0]; i0++)
                for (int64_t i1 = 0; i1 < I[1]; i1++)
                    for (int64_t i2 = 0; i2 < I[2]; i2++) {
                        double s = 0;
                        for (int64_t m = ic / cg * mg; m < (ic / cg + 1) * mg; m++)
                            for (int64_t k0 = 0; k0 < K[0]; k0++) {
                                int64_t t0 = i0 + P[0] - k0 * D[0];
                                if (t0 < 0 || t0 % S[0] || t0 / S[0] >= O[0])
                                    continue;
                                for (int64_t k1 = 0; k1 < K[1]; k1++) {
                                    int64_t t1 = i1 + P[1] - k1 * D[1];
                                    if (t1 < 0 || t1 % S[1] || t1 / S[1] >= O[1])
                                        continue;
                                    for (int64_t k2 = 0; k2 < K[2]; k2++) {
                                        int64_t t2 = i2 + P[2] - k2 * D[2];
                                        if (t2 < 0 || t2 % S[2] || t2 / S[2] >= O[2])
                                            continue;
                                        int64_t o = ((n * g->M + m) * O[0] + t0 / S[0]) * O[1] + t1 / S[1];
                                        double dy = dY[o * O[2] + t2 / S[2]];
                                        s += dy * W[(((m * cg + ic % cg) * K[0] + k0) * K[1] + k1) * K[2] + k2];
                                    }
                                }
                            }
                        dX[(((n * g->C + ic) * I[0] + i0) * I[1] + i1) * I[2] + i2] = (float)s;
                    }
}

static void pippy_cgw_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_cg_geom *cgg = &((const pippy_cg_ref *)kb)->cg;
    const pippy_conv_geom *g = &cgg->g;
    const float *dY = in[0], *X = in[1];
    float *dW = out[0], *dB = g->has_b ? out[1] : NULL;
    pippy_window w3;
    pippy_window_3d(&g->w, &w3);
    const int64_t *I = w3.in, *K = w3.k, *O = w3.out, *S = w3.s, *D = w3.dl, *P = w3.pl;
    int64_t cg = g->C / g->G, mg = g->M / g->G, no = O[0] * O[1] * O[2];
    for (int64_t m = 0; m < g->M; m++) {
        for (int64_t c = 0; c < cg; c++)
            for (int64_t k0 = 0; k0 < K[0]; k0++)
                for (int64_t k1 = 0; k1 < K[1]; k1++)
                    for (int64_t k2 = 0; k2 < K[2]; k2++) {
                        double s = 0;
                        int64_t ic = m / mg * cg + c;
                        for (int64_t n = 0; n < g->N; n++)
                            for (int64_t o0 = 0; o0 < O[0]; o0++) {
                                int64_t i0 = o0 * S[0] - P[0] + k0 * D[0];
                                if (i0 < 0 || i0 >= I[0])
                                    continue;
                                for (int64_t o1 = 0; o1 < O[1]; o1++) {
                                    int64_t i1 = o1 * S[1] - P[1] + k1 * D[1];
                                    if (i1 < 0 || i1 >= I[1])
                                        continue;
                                    for (int64_t o2 = 0; o2 < O[2]; o2++) {
                                        int64_t i2 = o2 * S[2] - P[2] + k2 * D[2];
                                        if (i2 < 0 || i2 >= I[2])
                                            continue;
                                        double dy = dY[(((n * g->M + m) * O[0] + o0) * O[1] + o1) * O[2] + o2];
                                        s += dy * X[(((n * g->C + ic) * I[0] + i0) * I[1] + i1) * I[2] + i2];
                                    }
                                }
                            }
                        float *o = &dW[(((m * cg + c) * K[0] + k0) * K[1] + k1) * K[2] + k2];
                        *o = cgg->acc ? *o + (float)s : (float)s;
                    }
        if (dB) {
            double s = 0;
            for (int64_t n = 0; n < g->N; n++)
                for (int64_t j = 0; j < no; j++)
                    s += dY[(n * g->M + m) * no + j];
            dB[m] = cgg->acc ? dB[m] + (float)s : (float)s;
        }
    }
}

/* ---- oneDNN ---- */

/* Memory for input idx (user layout user_md) in the layout the primitive wants (want): the bound
 * memory itself, a constant reordered once at create, or a kernel buffer a reorder step fills at
 * each run. */
static pippy_status pippy_cg_in(pippy_dnnl_kernel *k, const pippy_op_desc *d, int idx,
                                const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *want, dnnl_memory_t *m)
{
    PIPPY_TRY(pippy_dnnl_input(k, d, idx, user_md, want, 1.0f, m));
    if (d->in_const[idx] || dnnl_memory_desc_equal(want, user_md))
        return PIPPY_OK;
    dnnl_memory_t u = *m;
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, want, m, NULL));
    return pippy_dnnl_add_reorder(k, u, *m);
}

/* Memory for output idx as the primitive writes it (want): out[idx] itself when the layouts agree
 * and nothing accumulates; else a kernel buffer, *user the output, and pippy_cg_out_done adds the
 * reorder (with sum when acc) after the primitive. */
static pippy_status pippy_cg_out(pippy_dnnl_kernel *k, int idx, const dnnl_memory_desc_t *user_md,
                                 const dnnl_memory_desc_t *want, int acc, dnnl_memory_t *m, dnnl_memory_t *user)
{
    PIPPY_TRY(pippy_dnnl_memory_out(k, user_md, idx, user));
    *m = *user;
    if (acc || !dnnl_memory_desc_equal(want, user_md))
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, want, m, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_cg_out_done(pippy_dnnl_kernel *k, int acc, dnnl_memory_t m, dnnl_memory_t user)
{
    return m == user ? PIPPY_OK : pippy_dnnl_add_reorder_acc(k, m, user, acc);
}

static pippy_status pippy_cg_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_cg_geom *cg = &((const pippy_cg_ref *)ref)->cg;
    const pippy_conv_geom *g = &cg->g;
    int nd = 2 + g->w.ns, wgrad = cg->kind == PIPPY_CG_WEIGHT;
    int64_t wd[DNNL_MAX_NDIMS], bdim = g->M;
    int wnd = pippy_conv_wdims(g, wd);
    dnnl_dims_t strides, dil, pl, pr;
    pippy_window_dnnl(&g->w, strides, NULL, dil, pl, pr);
    dnnl_memory_desc_t xu, yu, wu, bmd, xa, ya, wa;
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 0, &xu));
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->M, 1, &yu));
    PIPPY_TRY(pippy_dnnl_md_plain(&wu, wnd, wd));
    PIPPY_TRY(pippy_dnnl_md_plain(&bmd, 1, &bdim));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&xa, nd, xu.dims, dnnl_f32, dnnl_format_tag_any));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&ya, nd, yu.dims, dnnl_f32, dnnl_format_tag_any));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wa, wnd, wu.dims, dnnl_f32, dnnl_format_tag_any));
    const dnnl_memory_desc_t *bias = g->has_b ? &bmd : NULL;
    dnnl_convolution_desc_t fwd, bwd;
    PIPPY_DNNL_CHECK(dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct,
                                                                &xa, &wa, bias, &ya, strides, dil, pl, pr));
    PIPPY_TRY(pippy_dnnl_hint(k, d, &fwd));
    if (wgrad)
        PIPPY_DNNL_CHECK(dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &xa, &wa,
                                                                             bias, &ya, strides, dil, pl, pr));
    else
        PIPPY_DNNL_CHECK(dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &xa, &wa, &ya,
                                                                          strides, dil, pl, pr));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_bwd(k, d, &bwd, 0, &pd));
    const dnnl_memory_desc_t *yq = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    dnnl_memory_t ym, xm, xuser, wm, wuser, bm = NULL, buser = NULL;
    PIPPY_TRY(pippy_cg_in(k, d, 0, &yu, yq, &ym));
    if (!wgrad) {
        PIPPY_TRY(pippy_cg_in(k, d, 1, &wu, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &wm));
        PIPPY_TRY(pippy_cg_out(k, 0, &xu, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), 0, &xm, &xuser));
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, xm}};
        PIPPY_TRY(pippy_dnnl_add_step(k, pd, args, 3));
        return pippy_cg_out_done(k, 0, xm, xuser);
    }
    PIPPY_TRY(pippy_cg_in(k, d, 1, &xu, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &xm));
    PIPPY_TRY(pippy_cg_out(k, 0, &wu, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0), cg->acc, &wm,
                           &wuser));
    if (g->has_b)
        PIPPY_TRY(pippy_cg_out(k, 1, &bmd, dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 1), cg->acc,
                               &bm, &buser));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, ym}, {DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_WEIGHTS, wm},
                               {DNNL_ARG_DIFF_BIAS, bm}};
    PIPPY_TRY(pippy_dnnl_add_step(k, pd, args, g->has_b ? 4 : 3));
    PIPPY_TRY(pippy_cg_out_done(k, cg->acc, wm, wuser));
    return g->has_b ? pippy_cg_out_done(k, cg->acc, bm, buser) : PIPPY_OK;
}

static pippy_status pippy_cg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_cg_ref r = {0};
    PIPPY_TRY(pippy_cg_geom_get(d, &r.cg));
    r.base.run = r.cg.kind == PIPPY_CG_WEIGHT ? pippy_cgw_ref_run : pippy_cgi_ref_run;
    int empty = pippy_tdesc_numel(&d->in[0]) == 0 || pippy_tdesc_numel(&d->in[1]) == 0;
    return pippy_dense_create(d, !empty, pippy_cg_fast, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_conv_grad[] = {
    {"ConvGradInput", "pippy", pippy_cg_infer, pippy_cg_flops, pippy_cg_create},
    {"ConvGradWeight", "pippy", pippy_cg_infer, pippy_cg_flops, pippy_cg_create},
    {0},
};
