/* pool.c — MaxPool, AveragePool and GlobalAveragePool (1 to 3 spatial dims).
 *
 * Semantics (both kernels): window o starts at o*stride - pad_begin and takes
 * kernel positions spaced by the dilation.
 *   MaxPool: the largest value at positions inside the input (pads never win).
 *   AveragePool, count_include_pad=0: sum / number of positions inside the input.
 *   AveragePool, count_include_pad=1: sum / number of positions inside the padded
 *     input [-pad_begin, in + pad_end) — positions that ceil_mode adds past the end
 *     padding do not count.
 * MaxPool's optional Indices output is rejected (PIPPY_ERR_UNSUPPORTED); storage_order
 * only concerns Indices and is ignored.
 *
 * Fast kernel: the oneDNN pooling_v2 primitive on the plain layout; ceil_mode is
 * expressed by enlarging the end padding. oneDNN's avg_include_padding divides by
 * the whole kernel, so AveragePool with count_include_pad=1 whose last window runs
 * past the end padding (ceil_mode) uses the reference kernel instead.
 * GlobalAveragePool is an average pool with the kernel the size of the input; its fast
 * kernel (float) is a plain C loop over rows (pippy_gavg_fast_run), not oneDNN.
 * Where the node folds (desc->reference = 1) the reference also takes double, and MaxPool
 * int8 and uint8, as the spec allows; stage programs run float only. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

pippy_status pippy_pool_geom_of(const pippy_op_desc *d, int kind, const pippy_tdesc *x, pippy_pool_geom *g)
{
    char sx[160];
    if (x->rank < 3)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: X must be [N,C,spatial...], found %s", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx));
    if (x->rank > 2 + PIPPY_DENSE_MAX_SPATIAL)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: X is %s; only 1 to 3 spatial dims are supported", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx));
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->N = x->dims[0];
    g->C = x->dims[1];
    int ns = x->rank - 2;
    if (kind == PIPPY_POOL_GAVG) {
        g->w.ns = ns;
        for (int i = 0; i < ns; i++) {
            g->w.in[i] = g->w.k[i] = x->dims[2 + i];
            g->w.s[i] = g->w.dl[i] = g->w.out[i] = 1;
        }
        return PIPPY_OK;
    }
    const int64_t *ks;
    int nks = pippy_attr_ints(d, "kernel_shape", &ks);
    if (nks != ns)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: kernel_shape must have %d values (one per spatial dim of X %s), found %d",
                          d->op, ns, pippy_tdesc_str(x, sx, sizeof sx), nks < 0 ? 0 : nks);
    g->include_pad = kind == PIPPY_POOL_AVG && pippy_attr_int(d, "count_include_pad", 0) != 0;
    int ceil_mode = pippy_attr_int(d, "ceil_mode", 0) != 0;
    return pippy_dense_window(d, ns, x->dims + 2, ks, ceil_mode, &g->w);
}

static pippy_status pippy_pool_geom_get(const pippy_op_desc *d, int kind, pippy_pool_geom *g)
{
    if (d->n_in != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 input, found %d", d->op, d->n_in);
    /* folding also takes the spec's other dtypes: MaxPool double, int8, uint8; the averages double */
    PIPPY_TRY(pippy_dense_want_real(d, 0, "X",
                                    PIPPY_DENSE_FOLD_DOUBLE | (kind == PIPPY_POOL_MAX ? PIPPY_DENSE_FOLD_INT8 : 0)));
    return pippy_pool_geom_of(d, kind, &d->in[0], g);
}

static pippy_status pippy_pool_infer_kind(pippy_op_desc *d, int kind)
{
    pippy_pool_geom g;
    PIPPY_TRY(pippy_pool_geom_get(d, kind, &g));
    if (kind == PIPPY_POOL_MAX && d->n_out > 1)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "MaxPool: the Indices output (argmax) is not supported, only Y");
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected 1 output, found %d", d->op, d->n_out);
    pippy_window_tdesc(&g.w, g.N, g.C, &d->out[0]);
    d->out[0].dtype = d->in[0].dtype;
    return PIPPY_OK;
}

static pippy_status pippy_maxpool_infer(pippy_op_desc *d) { return pippy_pool_infer_kind(d, PIPPY_POOL_MAX); }
static pippy_status pippy_avgpool_infer(pippy_op_desc *d) { return pippy_pool_infer_kind(d, PIPPY_POOL_AVG); }
static pippy_status pippy_gavgpool_infer(pippy_op_desc *d) { return pippy_pool_infer_kind(d, PIPPY_POOL_GAVG); }

static double pippy_pool_flops_kind(const pippy_op_desc *d, int kind)
{
    pippy_pool_geom g;
    if (pippy_pool_geom_get(d, kind, &g) != PIPPY_OK)
        return 0;
    double f = (double)g.N * (double)g.C;
    for (int i = 0; i < g.w.ns; i++)
        f *= (double)g.w.out[i] * (double)g.w.k[i];
    return f;
}

static double pippy_maxpool_flops(const pippy_op_desc *d) { return pippy_pool_flops_kind(d, PIPPY_POOL_MAX); }
static double pippy_avgpool_flops(const pippy_op_desc *d) { return pippy_pool_flops_kind(d, PIPPY_POOL_AVG); }
static double pippy_gavgpool_flops(const pippy_op_desc *d) { return pippy_pool_flops_kind(d, PIPPY_POOL_GAVG); }

/* ---- reference ---- */

typedef struct {
    pippy_kernel base;
    pippy_pool_geom g;
    int32_t dtype; /* float, or what folding takes */
} pippy_pool_ref;

static void pippy_pool_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_pool_ref *k = (const pippy_pool_ref *)kb;
    const pippy_pool_geom *g = &k->g;
    /* every case as 3-D: missing leading spatial dims have extent 1 */
    pippy_window w3;
    pippy_window_3d(&g->w, &w3);
    const int64_t *I = w3.in, *K = w3.k, *O = w3.out, *S = w3.s, *D = w3.dl, *PL = w3.pl, *PR = w3.pr;
    for (int64_t nc = 0; nc < g->N * g->C; nc++) {
        int64_t x = nc * I[0] * I[1] * I[2], y = nc * O[0] * O[1] * O[2];
        for (int64_t od = 0; od < O[0]; od++)
            for (int64_t oh = 0; oh < O[1]; oh++)
                for (int64_t ow = 0; ow < O[2]; ow++) {
                    double sum = 0, mx = -FLT_MAX;
                    int64_t n_in = 0, n_padded = 0;
                    for (int64_t kd = 0; kd < K[0]; kd++)
                        for (int64_t kh = 0; kh < K[1]; kh++)
                            for (int64_t kw = 0; kw < K[2]; kw++) {
                                int64_t p[3] = {od * S[0] - PL[0] + kd * D[0], oh * S[1] - PL[1] + kh * D[1],
                                                ow * S[2] - PL[2] + kw * D[2]};
                                int inside = 1, in_padded = 1;
                                for (int i = 0; i < 3; i++) {
                                    inside &= p[i] >= 0 && p[i] < I[i];
                                    in_padded &= p[i] >= -PL[i] && p[i] < I[i] + PR[i];
                                }
                                n_padded += in_padded;
                                if (!inside)
                                    continue;
                                double v = pippy_dense_load(k->dtype, in[0], x + (p[0] * I[1] + p[1]) * I[2] + p[2]);
                                n_in++;
                                sum += v;
                                if (v > mx)
                                    mx = v;
                            }
                    double r;
                    if (g->kind == PIPPY_POOL_MAX)
                        r = mx;
                    else {
                        int64_t cnt = g->include_pad ? n_padded : n_in;
                        r = cnt ? sum / (double)cnt : 0.0;
                    }
                    pippy_dense_store(k->dtype, out[0], y + (od * O[1] + oh) * O[2] + ow, r);
                }
    }
}

/* ---- oneDNN ---- */

pippy_status pippy_pool_dnnl_pads(const pippy_op_desc *d, const pippy_pool_geom *g, dnnl_dims_t strides,
                                  dnnl_dims_t kernel, dnnl_dims_t dil, dnnl_dims_t pl, dnnl_dims_t pr)
{
    pippy_window_dnnl(&g->w, strides, kernel, dil, pl, pr);
    for (int i = 0; i < g->w.ns; i++) {
        int64_t dk = (g->w.k[i] - 1) * g->w.dl[i] + 1;
        int64_t need = (g->w.out[i] - 1) * g->w.s[i] + dk - g->w.in[i] - g->w.pl[i];
        if (need > pr[i]) { /* ceil_mode: the last window runs past the end padding */
            if (g->include_pad)
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: count_include_pad with a ceil_mode window "
                                                         "past the padding has no oneDNN equivalent", d->op);
            pr[i] = need;
        } else if ((g->w.in[i] + pl[i] + pr[i] - dk) / strides[i] + 1 != g->w.out[i]) {
            /* ceil_mode's "last window starts inside" rule dropped a window: use the exact end padding */
            if (need < 0)
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s:%d: no oneDNN padding for these windows", __FILE__,
                                  __LINE__);
            pr[i] = need;
        }
    }
    return PIPPY_OK;
}

static pippy_status pippy_pool_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_pool_geom *g = &((const pippy_pool_ref *)ref)->g;
    dnnl_dims_t strides, kernel, dil, pl, pr;
    PIPPY_TRY(pippy_pool_dnnl_pads(d, g, strides, kernel, dil, pl, pr));
    dnnl_memory_desc_t xmd, ymd;
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 0, &xmd));
    PIPPY_TRY(pippy_window_md(&g->w, g->N, g->C, 1, &ymd));
    dnnl_alg_kind_t alg = g->kind == PIPPY_POOL_MAX ? dnnl_pooling_max
                          : g->include_pad          ? dnnl_pooling_avg_include_padding
                                                    : dnnl_pooling_avg_exclude_padding;
    dnnl_pooling_v2_desc_t pdsc;
    dnnl_status_t s = dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference, alg, &xmd, &ymd, strides,
                                                        kernel, dil, pl, pr);
    if (s == dnnl_invalid_arguments || s == dnnl_unimplemented) /* e.g. padding as large as the window */
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s:%d: oneDNN pooling does not take these windows", __FILE__,
                          __LINE__);
    PIPPY_DNNL_CHECK(s);
    return pippy_dnnl_add_src_dst(k, d, &pdsc, &xmd, &ymd);
}

static pippy_status pippy_pool_create_kind(const pippy_op_desc *d, int kind, pippy_kernel **out)
{
    /* no oneDNN equivalent (see pippy_pool_fast): the reference kernel */
    pippy_pool_ref r = {.base.run = pippy_pool_ref_run, .dtype = d->in[0].dtype};
    PIPPY_TRY(pippy_pool_geom_get(d, kind, &r.g));
    return pippy_dense_create(d, r.dtype == PIPPY_DT_FLOAT && pippy_tdesc_numel(&d->in[0]) > 0, pippy_pool_fast,
                              &r.base, sizeof r, out);
}

static pippy_status pippy_maxpool_create(const pippy_op_desc *d, pippy_kernel **k)
{
    return pippy_pool_create_kind(d, PIPPY_POOL_MAX, k);
}
static pippy_status pippy_avgpool_create(const pippy_op_desc *d, pippy_kernel **k)
{
    return pippy_pool_create_kind(d, PIPPY_POOL_AVG, k);
}
/* GlobalAveragePool on float: the mean of each (n, c) row of S contiguous values, in 8 float
 * partial sums added in double. oneDNN's pooling on the plain layout took 19 us for the
 * bench ResNet-18's [16,96,1,1] (a copy); this takes well under 1 us there and is
 * memory-bound on large rows. */
typedef struct {
    pippy_kernel base;
    int64_t rows, S;
} pippy_gavg_fast;

static void pippy_gavg_fast_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_gavg_fast *k = (const pippy_gavg_fast *)kb;
    const float *x = in[0];
    float *y = out[0];
    int64_t S = k->S, S8 = S - S % 8;
    for (int64_t r = 0; r < k->rows; r++, x += S) {
        float part[8] = {0};
        for (int64_t j = 0; j < S8; j += 8)
            for (int l = 0; l < 8; l++)
                part[l] += x[j + l];
        double sum = 0;
        for (int l = 0; l < 8; l++)
            sum += part[l];
        for (int64_t j = S8; j < S; j++)
            sum += x[j];
        y[r] = (float)(sum / (double)S);
    }
}

static pippy_status pippy_gavgpool_create(const pippy_op_desc *d, pippy_kernel **k)
{
    const pippy_tdesc *x = &d->in[0];
    if (d->reference || d->n_in != 1 || x->dtype != PIPPY_DT_FLOAT || x->rank < 3 || pippy_tdesc_numel(x) == 0)
        return pippy_pool_create_kind(d, PIPPY_POOL_GAVG, k);
    PIPPY_TRY(pippy_pool_geom_get(d, PIPPY_POOL_GAVG, &(pippy_pool_geom){0})); /* the checks of the others */
    pippy_gavg_fast *f = calloc(1, sizeof *f);
    if (!f)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", d->op);
    f->base.run = pippy_gavg_fast_run;
    f->rows = x->dims[0] * x->dims[1];
    f->S = pippy_dims_prod(x->dims, 2, x->rank);
    *k = &f->base;
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_pool[] = {
    {"MaxPool", "", pippy_maxpool_infer, pippy_maxpool_flops, pippy_maxpool_create},
    {"AveragePool", "", pippy_avgpool_infer, pippy_avgpool_flops, pippy_avgpool_create},
    {"GlobalAveragePool", "", pippy_gavgpool_infer, pippy_gavgpool_flops, pippy_gavgpool_create},
    {0},
};
