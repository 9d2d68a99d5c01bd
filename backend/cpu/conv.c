/* conv.c — Conv (1-D, 2-D and 3-D; group, dilations, strides, pads, auto_pad, optional bias).
 *
 * Fast kernel: the oneDNN convolution primitive (direct algorithm). Source and
 * destination are left to the primitive (format any): when it prefers a blocked
 * layout, the kernel reorders the plain NC... input into a buffer made at create,
 * and the result back, around the convolution. With constant weights, that candidate
 * is timed at create against the primitive reading the plain NC... source as given (no
 * reorder before it; oneDNN's blocked convolutions read fewer than 16 input channels in
 * NCHW directly: ResNet-18's 7x7 stem took 87 us that way against 145 with the reorder)
 * and the faster is kept (layout.h; PIPPY_MATMUL_LAYOUT=plain|reordered forces one). Constant weights are reordered once,
 * at create, into the primitive's layout and the run-time pointer for them is
 * ignored (the same holds for a constant bias, copied at create); weights given at
 * run time (plain ONNX layout [M, C/group, k...] = goihw) are reordered at each run
 * when the primitive wants another layout (the blocked direct convolutions beat
 * oneDNN's gemm-based one on plain layouts by about 1.4x on ResNet-like 3x3 layers).
 * "pippy.activation" = "Relu" is an eltwise post-op.
 * Reference kernel: plain loops (every case seen as 3-D), double accumulators; where the node
 * folds (desc->reference = 1) it also takes double X, W and B, as the spec allows. */
#include <stdlib.h>
#include <string.h>

#include "geom.h"
#include "layout.h"

pippy_status pippy_conv_geom_of(const pippy_op_desc *d, const pippy_tdesc *x, const pippy_tdesc *w,
                                const pippy_tdesc *b, pippy_conv_geom *g)
{
    char sx[160], sw[160], sb[160];
    if (x->rank < 3)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: X must be [N,C,spatial...], found %s", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx));
    if (x->rank > 2 + PIPPY_DENSE_MAX_SPATIAL)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: X is %s; only 1-D, 2-D and 3-D convolutions are supported",
                          d->op, pippy_tdesc_str(x, sx, sizeof sx));
    if (w->rank != x->rank)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: W must have the rank of X: X is %s, W is %s", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx), pippy_tdesc_str(w, sw, sizeof sw));
    memset(g, 0, sizeof *g);
    int ns = x->rank - 2;
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->M = w->dims[0];
    g->G = pippy_attr_int(d, "group", 1);
    if (g->G < 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: group is %lld, expected >= 1", d->op, (long long)g->G);
    if (w->dims[1] * g->G != g->C)
        return pippy_fail(PIPPY_ERR_SHAPE,
                          "%s: channels differ: X is %s (%lld channels), W is %s with group %lld (%lld channels)",
                          d->op, pippy_tdesc_str(x, sx, sizeof sx), (long long)g->C,
                          pippy_tdesc_str(w, sw, sizeof sw), (long long)g->G, (long long)(w->dims[1] * g->G));
    if (g->M % g->G != 0)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: W is %s: its %lld output channels do not split into %lld groups",
                          d->op, pippy_tdesc_str(w, sw, sizeof sw), (long long)g->M, (long long)g->G);
    const int64_t *ks;
    int nks = pippy_attr_ints(d, "kernel_shape", &ks);
    if (nks >= 0) {
        if (nks != ns)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: kernel_shape has %d values, expected %d", d->op, nks, ns);
        for (int i = 0; i < ns; i++)
            if (ks[i] != w->dims[2 + i])
                return pippy_fail(PIPPY_ERR_SHAPE, "%s: kernel_shape[%d] is %lld but W is %s", d->op, i,
                                  (long long)ks[i], pippy_tdesc_str(w, sw, sizeof sw));
    }
    g->has_b = b != NULL;
    if (b && (b->rank != 1 || b->dims[0] != g->M))
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: B must be [%lld] (one per output channel), found %s", d->op,
                          (long long)g->M, pippy_tdesc_str(b, sb, sizeof sb));
    return pippy_dense_window(d, ns, x->dims + 2, w->dims + 2, 0, &g->w);
}

int pippy_conv_wdims(const pippy_conv_geom *g, int64_t *wd)
{
    int ns = g->w.ns, wnd;
    if (g->G > 1) { /* [G, M/G, C/G, k...]: the same bytes as ONNX's [M, C/G, k...] */
        wnd = 3 + ns;
        wd[0] = g->G, wd[1] = g->M / g->G, wd[2] = g->C / g->G;
    } else {
        wnd = 2 + ns;
        wd[0] = g->M, wd[1] = g->C;
    }
    for (int i = 0; i < ns; i++)
        wd[wnd - ns + i] = g->w.k[i];
    return wnd;
}

static pippy_status pippy_conv_geom_get(const pippy_op_desc *d, pippy_conv_geom *g)
{
    if (d->n_in < 2 || d->n_in > 3)
        return pippy_fail(PIPPY_ERR_INVALID, "Conv: expected 2 or 3 inputs, found %d", d->n_in);
    /* folding also takes double */
    PIPPY_TRY(pippy_dense_want_real(d, 0, "X", PIPPY_DENSE_FOLD_DOUBLE));
    PIPPY_TRY(pippy_dense_want_real(d, 1, "W", PIPPY_DENSE_FOLD_DOUBLE));
    int has_b = pippy_dense_has_input(d, 2);
    if (has_b)
        PIPPY_TRY(pippy_dense_want_real(d, 2, "B", PIPPY_DENSE_FOLD_DOUBLE));
    for (int i = 1; i < d->n_in; i++)
        if (pippy_dense_has_input(d, i) && d->in[i].dtype != d->in[0].dtype)
            return pippy_fail(PIPPY_ERR_INVALID, "Conv: input %d is %s but X is %s (they must be of one dtype)", i,
                              pippy_dtype_name(d->in[i].dtype), pippy_dtype_name(d->in[0].dtype));
    return pippy_conv_geom_of(d, &d->in[0], &d->in[1], has_b ? &d->in[2] : NULL, g);
}

static pippy_status pippy_conv_infer(pippy_op_desc *d)
{
    pippy_conv_geom g;
    int relu;
    PIPPY_TRY(pippy_conv_geom_get(d, &g));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "Conv: expected 1 output, found %d", d->n_out);
    pippy_window_tdesc(&g.w, g.N, g.M, &d->out[0]);
    d->out[0].dtype = d->in[0].dtype;
    return PIPPY_OK;
}

static double pippy_conv_flops(const pippy_op_desc *d)
{
    pippy_conv_geom g;
    if (pippy_conv_geom_get(d, &g) != PIPPY_OK)
        return 0;
    double f = 2.0 * (double)g.N * (double)g.M * (double)(g.C / g.G);
    for (int i = 0; i < g.w.ns; i++)
        f *= (double)g.w.out[i] * (double)g.w.k[i];
    return f;
}

/* ---- reference ---- */

typedef struct {
    pippy_kernel base;
    pippy_conv_geom g;
    int relu;
    int32_t dtype; /* float, or double when folding */
} pippy_conv_ref;

static void pippy_conv_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_conv_ref *k = (const pippy_conv_ref *)kb;
    const pippy_conv_geom *g = &k->g;
    const int32_t dt = k->dtype;
    /* every case as 3-D: missing leading spatial dims have extent 1 */
    pippy_window w3;
    pippy_window_3d(&g->w, &w3);
    const int64_t *I = w3.in, *K = w3.k, *O = w3.out, *S = w3.s, *D = w3.dl, *P = w3.pl;
    int64_t cg = g->C / g->G, mg = g->M / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++) {
            int64_t grp = m / mg;
            for (int64_t od = 0; od < O[0]; od++)
                for (int64_t oh = 0; oh < O[1]; oh++)
                    for (int64_t ow = 0; ow < O[2]; ow++) {
                        double s = g->has_b ? pippy_dense_load(dt, in[2], m) : 0.0;
                        for (int64_t c = 0; c < cg; c++) {
                            int64_t ic = grp * cg + c;
                            for (int64_t kd = 0; kd < K[0]; kd++) {
                                int64_t id = od * S[0] - P[0] + kd * D[0];
                                if (id < 0 || id >= I[0])
                                    continue;
                                for (int64_t kh = 0; kh < K[1]; kh++) {
                                    int64_t ih = oh * S[1] - P[1] + kh * D[1];
                                    if (ih < 0 || ih >= I[1])
                                        continue;
                                    for (int64_t kw = 0; kw < K[2]; kw++) {
                                        int64_t iw = ow * S[2] - P[2] + kw * D[2];
                                        if (iw < 0 || iw >= I[2])
                                            continue;
                                        s += pippy_dense_load(dt, in[0], (((n * g->C + ic) * I[0] + id) * I[1] + ih) * I[2] + iw) *
                                             pippy_dense_load(dt, in[1], (((m * cg + c) * K[0] + kd) * K[1] + kh) * K[2] + kw);
                                    }
                                }
                            }
                        }
                        if (dt == PIPPY_DT_FLOAT)
                            s = (float)s;
                        pippy_dense_store(dt, out[0], (((n * g->M + m) * O[0] + od) * O[1] + oh) * O[2] + ow,
                                          k->relu && s < 0 ? 0.0 : s);
                    }
        }
}

/* ---- oneDNN ---- */

/* plain = 1: the source read as given, plain NC... (no reorder before the convolution); 0: in the
 * layout the primitive prefers. The destination and the weights are the primitive's either way. */
static pippy_status pippy_conv_build(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k, int plain)
{
    const pippy_conv_ref *r = (const pippy_conv_ref *)ref;
    const pippy_conv_geom *g = &r->g;
    int nd = 2 + g->w.ns;
    int64_t wd[DNNL_MAX_NDIMS];
    int wnd = pippy_conv_wdims(g, wd);
    dnnl_dims_t strides, dil, pl, pr;
    pippy_window_dnnl(&g->w, strides, NULL, dil, pl, pr);
    dnnl_memory_desc_t xmd_user, ymd_user, wmd_user, bmd, xmd, ymd, wmd;
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 0, &xmd_user));
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->M, 1, &ymd_user));
    PIPPY_TRY(pippy_dnnl_md_plain(&wmd_user, wnd, wd));
    xmd = xmd_user;
    if (!plain)
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&xmd, nd, xmd_user.dims, dnnl_f32, dnnl_format_tag_any));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&ymd, nd, ymd_user.dims, dnnl_f32, dnnl_format_tag_any));
    const void *wconst = d->in_const[1];
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, wnd, wmd_user.dims, dnnl_f32, dnnl_format_tag_any));
    int64_t bdim = g->M;
    if (g->has_b)
        PIPPY_TRY(pippy_dnnl_md_plain(&bmd, 1, &bdim));

    dnnl_convolution_desc_t cd;
    PIPPY_DNNL_CHECK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct,
                                                                &xmd, &wmd, g->has_b ? &bmd : NULL, &ymd, strides,
                                                                dil, pl, pr));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &cd, r->relu, &pd));

    /* Memory objects; src/dst through a reorder when the primitive chose another layout. */
    dnnl_memory_t xu, yu, xm, ym, wm, bm = NULL;
    const dnnl_memory_desc_t *xq = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *yq = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    int x_reorder = !dnnl_memory_desc_equal(xq, &xmd_user), y_reorder = !dnnl_memory_desc_equal(yq, &ymd_user);
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd_user, 0, &xu));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &ymd_user, 0, &yu));
    xm = xu;
    ym = yu;
    if (x_reorder) {
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, xq, &xm, NULL));
        PIPPY_TRY(pippy_dnnl_add_reorder(k, xu, xm));
    }
    if (y_reorder)
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, yq, &ym, NULL));
    PIPPY_TRY(pippy_dnnl_input(k, d, 1, &wmd_user, wq, 1.0f, &wm));
    if (!wconst && !dnnl_memory_desc_equal(wq, &wmd_user)) {
        /* weights given at run time: reordered at every run (small next to the convolution) */
        dnnl_memory_t wu = wm;
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, wq, &wm, NULL));
        PIPPY_TRY(pippy_dnnl_add_reorder(k, wu, wm));
    }
    if (g->has_b)
        PIPPY_TRY(pippy_dnnl_input(k, d, 2, &bmd, &bmd, 1.0f, &bm));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_BIAS, bm}};
    PIPPY_TRY(pippy_dnnl_add_step(k, pd, args, g->has_b ? 4 : 3));
    if (y_reorder)
        PIPPY_TRY(pippy_dnnl_add_reorder(k, ym, yu));
    return PIPPY_OK;
}

static pippy_status pippy_conv_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    return pippy_layout_choose(d, ref, k, 1, pippy_conv_build);
}

static pippy_status pippy_conv_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_conv_ref r = {.base.run = pippy_conv_ref_run, .dtype = d->in[0].dtype};
    PIPPY_TRY(pippy_conv_geom_get(d, &r.g));
    PIPPY_TRY(pippy_dense_activation(d, &r.relu));
    int empty = pippy_tdesc_numel(&d->in[0]) == 0 || pippy_tdesc_numel(&d->in[1]) == 0;
    return pippy_dense_create(d, !empty && r.dtype == PIPPY_DT_FLOAT, pippy_conv_fast, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_conv[] = {
    {"Conv", "", pippy_conv_infer, pippy_conv_flops, pippy_conv_create},
    {0},
};
