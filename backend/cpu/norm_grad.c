/* norm_grad.c — the training side of the normalizations (domain "pippy").
 *
 *   LayerNormalizationGrad(dY, X, Scale, Mean, InvStdDev) -> dX            attr axis (default -1)
 *       xhat = (X - Mean) * InvStdDev, g = dY * Scale, per row of X.shape[axis:]:
 *       dX = InvStdDev * (g - mean(g) - xhat * mean(g * xhat)). Scale broadcasts to
 *       X.shape[axis:] as in the forward; Mean / InvStdDev are the forward's optional outputs
 *       (shape X.shape[:axis] + [1] * (rank - axis)).
 *   LayerNormalizationWeightGrad(dY, X, Mean, InvStdDev) -> dScale [, dBias]   attr axis
 *       dScale = sum over the rows of dY * xhat, dBias = sum of dY; both X.shape[axis:].
 *   BatchNormalizationTraining(X, scale, B, running_mean, running_var)
 *       -> Y, saved_mean, saved_inv_std                     attrs epsilon (1e-5), momentum (0.9)
 *       Statistics per channel (dim 1) over N and the spatial dims; Y uses the biased batch
 *       variance (as torch in train mode); saved_inv_std = 1/sqrt(var_biased + epsilon).
 *       THE KERNEL WRITES TWO OF ITS INPUTS: running_mean and running_var (inputs 3 and 4, in
 *       the stage's writable weights) are updated in place, ONNX's momentum meaning:
 *           running_mean = running_mean * momentum + mean * (1 - momentum)
 *           running_var  = running_var * momentum + var_unbiased * (1 - momentum)
 *       with the UNBIASED batch variance (as torch). They must not be compile-time constants,
 *       and a batch of one value per channel is rejected (no unbiased variance).
 *   BatchNormalizationGrad(dY, X, scale, saved_mean, saved_inv_std) -> dX
 *       training-mode backward (batch statistics): per channel,
 *       dX = scale * inv * (dY - mean(dY) - xhat * mean(dY * xhat)).
 *   BatchNormalizationWeightGrad(dY, X, saved_mean, saved_inv_std) -> dScale [, dBias]
 *       dScale = sum over N and spatial of dY * xhat, dBias = sum of dY.
 * "pippy.accumulate" = 1 on the two WeightGrad ops: the outputs are added to (weight
 * gradients accumulate across microbatches in their buffer).
 *
 * Fast kernels: oneDNN layer / batch normalization backward, created against a forward_training
 * primitive; no workspace (only the fused-ReLU batch norm would want one). Always prop_kind
 * backward: oneDNN 2.6 implements no backward_data with a scale, so the dX ops let it compute
 * dScale into a kernel buffer; the weight-gradient ops give it a scale of ones and a
 * kernel-owned diff_src that is not used (and a shift: oneDNN 2.6 fails at run time without
 * one whenever it computes dShift). oneDNN takes the variance, not 1/stddev: before each run the
 * kernel turns InvStdDev into var + eps = 1/inv^2 and creates the primitives with epsilon 0
 * (geom.h, pippy_norm_var_from_inv). Accumulation: the primitive writes a kernel buffer that a
 * reorder with a sum post-op adds into the output. BatchNormalizationTraining: oneDNN
 * forward_training (mean into saved_mean, biased variance into a kernel buffer), then a short
 * loop for saved_inv_std and the running statistics.
 * Reference kernels: the formulas above, sums and statistics in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

enum { PIPPY_NG_LN, PIPPY_NG_LNW, PIPPY_NG_BNT, PIPPY_NG_BNG, PIPPY_NG_BNW };

typedef struct {
    int kind;
    pippy_ln_rows r; /* LayerNormalization*: X as [outer, inner] */
    pippy_bn_dims b; /* BatchNormalization*: X as [N, C, S] */
    float eps, momentum;
    int n_out, acc;
} pippy_ng_geom;

static int pippy_ng_kind(const char *op)
{
    static const char *const ops[] = {"LayerNormalizationGrad", "LayerNormalizationWeightGrad",
                                      "BatchNormalizationTraining", "BatchNormalizationGrad",
                                      "BatchNormalizationWeightGrad"};
    for (int i = 0; i < 5; i++)
        if (strcmp(op, ops[i]) == 0)
            return i;
    return -1;
}

/* n inputs, all float, named names[]. */
static pippy_status pippy_ng_want_inputs(const pippy_op_desc *d, int n, const char *const *names)
{
    if (d->n_in != n)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %d inputs, found %d", d->op, n, d->n_in);
    for (int i = 0; i < n; i++)
        PIPPY_TRY(pippy_dense_want_float(d, i, names[i]));
    return PIPPY_OK;
}

static pippy_status pippy_ng_ln_get(const pippy_op_desc *d, pippy_ng_geom *g)
{
    static const char *const grad[] = {"dY", "X", "Scale", "Mean", "InvStdDev"};
    static const char *const wgrad[] = {"dY", "X", "Mean", "InvStdDev"};
    int w = g->kind == PIPPY_NG_LNW, stat = w ? 2 : 3;
    PIPPY_TRY(pippy_ng_want_inputs(d, w ? 4 : 5, w ? wgrad : grad));
    const pippy_tdesc *x = &d->in[1];
    PIPPY_TRY(pippy_dense_want_shape(d, 0, "dY", x, "the shape of X"));
    PIPPY_TRY(pippy_ln_rows_of(d, x, &g->r));
    if (!w)
        PIPPY_TRY(pippy_ln_want_param(d, x, g->r.axis, &d->in[2], "Scale"));
    pippy_tdesc st;
    pippy_ln_stat_tdesc(x, g->r.axis, &st);
    PIPPY_TRY(pippy_dense_want_shape(d, stat, "Mean", &st, "X.shape[:axis] + [1]s, as the forward writes it"));
    return pippy_dense_want_shape(d, stat + 1, "InvStdDev", &st, "X.shape[:axis] + [1]s, as the forward writes it");
}

static pippy_status pippy_ng_bn_get(const pippy_op_desc *d, pippy_ng_geom *g)
{
    static const char *const train[] = {"X", "scale", "B", "running_mean", "running_var"};
    static const char *const grad[] = {"dY", "X", "scale", "saved_mean", "saved_inv_std"};
    static const char *const wgrad[] = {"dY", "X", "saved_mean", "saved_inv_std"};
    static const int train_p[] = {1, 2, 3, 4}, grad_p[] = {2, 3, 4}, wgrad_p[] = {2, 3};
    if (g->kind == PIPPY_NG_BNT) {
        PIPPY_TRY(pippy_ng_want_inputs(d, 5, train));
        PIPPY_TRY(pippy_bn_dims_of(d, &d->in[0], train_p, 4, train + 1, &g->b));
        if (g->b.N * g->b.S < 2) {
            char sx[160];
            return pippy_fail(PIPPY_ERR_SHAPE,
                              "%s: X is %s: one value per channel, the running variance (unbiased) needs two",
                              d->op, pippy_tdesc_str(&d->in[0], sx, sizeof sx));
        }
        return PIPPY_OK;
    }
    int w = g->kind == PIPPY_NG_BNW;
    PIPPY_TRY(pippy_ng_want_inputs(d, w ? 4 : 5, w ? wgrad : grad));
    PIPPY_TRY(pippy_dense_want_shape(d, 0, "dY", &d->in[1], "the shape of X"));
    return w ? pippy_bn_dims_of(d, &d->in[1], wgrad_p, 2, wgrad + 2, &g->b)
             : pippy_bn_dims_of(d, &d->in[1], grad_p, 3, grad + 2, &g->b);
}

static pippy_status pippy_ng_geom_get(const pippy_op_desc *d, pippy_ng_geom *g)
{
    memset(g, 0, sizeof *g);
    g->kind = pippy_ng_kind(d->op);
    g->n_out = d->n_out;
    g->eps = pippy_attr_float(d, "epsilon", 1e-5f);
    g->momentum = pippy_attr_float(d, "momentum", 0.9f);
    if (g->kind == PIPPY_NG_LNW || g->kind == PIPPY_NG_BNW)
        PIPPY_TRY(pippy_dense_flag(d, "pippy.accumulate", &g->acc));
    if (g->kind <= PIPPY_NG_LNW)
        return pippy_ng_ln_get(d, g);
    return pippy_ng_bn_get(d, g);
}

static pippy_status pippy_ng_infer(pippy_op_desc *d)
{
    pippy_ng_geom g;
    PIPPY_TRY(pippy_ng_geom_get(d, &g));
    int wgrad = g.kind == PIPPY_NG_LNW || g.kind == PIPPY_NG_BNW;
    int lo = g.kind == PIPPY_NG_BNT ? 3 : 1, hi = wgrad ? 2 : lo;
    if (d->n_out < lo || d->n_out > hi)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %s, found %d", d->op,
                          wgrad ? "1 or 2 outputs" : lo == 3 ? "3 outputs" : "1 output", d->n_out);
    const pippy_tdesc *x = &d->in[g.kind == PIPPY_NG_BNT ? 0 : 1];
    pippy_tdesc par = {.dtype = PIPPY_DT_FLOAT, .rank = 1, .dims = {g.b.C}}; /* BN: one per channel */
    if (g.kind == PIPPY_NG_LNW) {
        memset(&par, 0, sizeof par);
        par.dtype = PIPPY_DT_FLOAT;
        par.rank = x->rank - g.r.axis;
        for (int i = 0; i < par.rank; i++)
            par.dims[i] = x->dims[g.r.axis + i];
    }
    for (int i = 0; i < d->n_out; i++)
        d->out[i] = (wgrad || i > 0) ? par : *x;
    return PIPPY_OK;
}

static double pippy_ng_flops(const pippy_op_desc *d)
{
    int kind = pippy_ng_kind(d->op);
    double n = (double)pippy_tdesc_numel(&d->in[kind == PIPPY_NG_BNT ? 0 : 1]);
    return kind == PIPPY_NG_LNW || kind == PIPPY_NG_BNW ? 4.0 * n : 8.0 * n;
}

/* ---------------------------------------------------------------- reference */

typedef struct {
    pippy_kernel base;
    pippy_ng_geom g;
    int64_t *sidx;  /* LayerNormalizationGrad: for each element of a row, its index in Scale */
    double *sum;    /* LayerNormalizationWeightGrad: 2 * inner accumulators */
} pippy_ng_ref;

static void pippy_ng_ref_destroy(pippy_kernel *kb)
{
    pippy_ng_ref *k = (pippy_ng_ref *)kb;
    free(k->sidx);
    free(k->sum);
    free(k);
}

static void pippy_ng_put(float *o, double v, int acc) { *o = acc ? *o + (float)v : (float)v; }

static void pippy_lng_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_ng_ref *k = (const pippy_ng_ref *)kb;
    const pippy_ln_rows *r = &k->g.r;
    const float *dY = in[0], *X = in[1], *S = in[2], *Mean = in[3], *Inv = in[4];
    float *dX = out[0];
    int64_t m = r->inner;
    for (int64_t i = 0; i < r->outer; i++) {
        const float *x = X + i * m, *dy = dY + i * m;
        double mean = Mean[i], inv = Inv[i], a = 0, b = 0;
        for (int64_t j = 0; j < m; j++) {
            double g = (double)dy[j] * S[k->sidx[j]];
            a += g;
            b += g * ((double)x[j] - mean) * inv;
        }
        a /= (double)m;
        b /= (double)m;
        for (int64_t j = 0; j < m; j++) {
            double g = (double)dy[j] * S[k->sidx[j]], xh = ((double)x[j] - mean) * inv;
            dX[i * m + j] = (float)(inv * (g - a - xh * b));
        }
    }
}

static void pippy_lnw_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_ng_ref *k = (const pippy_ng_ref *)kb;
    const pippy_ln_rows *r = &k->g.r;
    const float *dY = in[0], *X = in[1], *Mean = in[2], *Inv = in[3];
    int64_t m = r->inner;
    double *ds = k->sum, *db = k->sum + m;
    memset(k->sum, 0, 2 * (size_t)m * sizeof *k->sum);
    for (int64_t i = 0; i < r->outer; i++)
        for (int64_t j = 0; j < m; j++) {
            double dy = dY[i * m + j];
            ds[j] += dy * ((double)X[i * m + j] - Mean[i]) * Inv[i];
            db[j] += dy;
        }
    for (int64_t j = 0; j < m; j++) {
        pippy_ng_put((float *)out[0] + j, ds[j], k->g.acc);
        if (k->g.n_out > 1)
            pippy_ng_put((float *)out[1] + j, db[j], k->g.acc);
    }
}

/* Per channel c of X [N, C, S]: the sums of dy, dy * xhat (and mean, biased variance of x). */
typedef struct {
    double sdy, sdyx, mean, var;
} pippy_bn_sums;

static void pippy_bn_ref_sums(const pippy_bn_dims *b, int64_t c, const float *X, const float *dY, double mean,
                              double inv, pippy_bn_sums *s)
{
    memset(s, 0, sizeof *s);
    double cnt = (double)(b->N * b->S);
    for (int64_t n = 0; n < b->N; n++)
        for (int64_t j = 0; j < b->S; j++)
            s->mean += X[(n * b->C + c) * b->S + j];
    s->mean /= cnt;
    for (int64_t n = 0; n < b->N; n++)
        for (int64_t j = 0; j < b->S; j++) {
            int64_t at = (n * b->C + c) * b->S + j;
            double x = X[at];
            s->var += (x - s->mean) * (x - s->mean);
            if (dY) {
                s->sdy += dY[at];
                s->sdyx += (double)dY[at] * (x - mean) * inv;
            }
        }
    s->var /= cnt;
}

static void pippy_bnt_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_ng_geom *g = &((const pippy_ng_ref *)kb)->g;
    const pippy_bn_dims *b = &g->b;
    const float *X = in[0], *scale = in[1], *B = in[2];
    float *rmean = (float *)in[3], *rvar = (float *)in[4]; /* updated in place (see the header) */
    float *Y = out[0], *smean = out[1], *sinv = out[2];
    double cnt = (double)(b->N * b->S), mom = g->momentum;
    for (int64_t c = 0; c < b->C; c++) {
        pippy_bn_sums s;
        pippy_bn_ref_sums(b, c, X, NULL, 0, 0, &s);
        double inv = 1.0 / sqrt(s.var + (double)g->eps);
        for (int64_t n = 0; n < b->N; n++)
            for (int64_t j = 0; j < b->S; j++) {
                int64_t at = (n * b->C + c) * b->S + j;
                Y[at] = (float)(((double)X[at] - s.mean) * inv * scale[c] + B[c]);
            }
        smean[c] = (float)s.mean;
        sinv[c] = (float)inv;
        rmean[c] = (float)(rmean[c] * mom + s.mean * (1 - mom));
        rvar[c] = (float)(rvar[c] * mom + s.var * cnt / (cnt - 1) * (1 - mom));
    }
}

static void pippy_bng_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_ng_geom *g = &((const pippy_ng_ref *)kb)->g;
    const pippy_bn_dims *b = &g->b;
    const float *dY = in[0], *X = in[1];
    const float *scale = g->kind == PIPPY_NG_BNG ? in[2] : NULL;
    const float *mean = in[g->kind == PIPPY_NG_BNG ? 3 : 2], *inv = in[g->kind == PIPPY_NG_BNG ? 4 : 3];
    double cnt = (double)(b->N * b->S);
    for (int64_t c = 0; c < b->C; c++) {
        pippy_bn_sums s;
        pippy_bn_ref_sums(b, c, X, dY, mean[c], inv[c], &s);
        if (!scale) { /* BatchNormalizationWeightGrad */
            pippy_ng_put((float *)out[0] + c, s.sdyx, g->acc);
            if (g->n_out > 1)
                pippy_ng_put((float *)out[1] + c, s.sdy, g->acc);
            continue;
        }
        double a = s.sdy / cnt, bb = s.sdyx / cnt, f = (double)scale[c] * inv[c];
        for (int64_t n = 0; n < b->N; n++)
            for (int64_t j = 0; j < b->S; j++) {
                int64_t at = (n * b->C + c) * b->S + j;
                double xh = ((double)X[at] - mean[c]) * inv[c];
                ((float *)out[0])[at] = (float)(f * ((double)dY[at] - a - xh * bb));
            }
    }
}

/* ---------------------------------------------------------------- oneDNN */

/* The memory a primitive writes output idx through (md): out[idx] itself, or with accumulate a
 * kernel buffer; pippy_ng_acc_add then adds that buffer into out[idx] (a reorder with sum). */
static pippy_status pippy_ng_out(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int idx, int acc,
                                 dnnl_memory_t *prim, dnnl_memory_t *user)
{
    PIPPY_TRY(pippy_dnnl_memory_out(k, md, idx, user));
    *prim = *user;
    if (acc)
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, md, prim, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_ng_acc_add(pippy_dnnl_kernel *k, int acc, dnnl_memory_t prim, dnnl_memory_t user)
{
    return acc ? pippy_dnnl_add_reorder_acc(k, prim, user, 1) : PIPPY_OK;
}

/* A kernel-owned memory of layout md filled with ones (the scale of a weight-gradient pass). */
static pippy_status pippy_ng_ones(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int64_t n, dnnl_memory_t *m)
{
    void *buf;
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, md, m, &buf));
    for (int64_t i = 0; i < n; i++)
        ((float *)buf)[i] = 1.0f;
    return PIPPY_OK;
}

/* The step of a layer / batch norm backward pd with args (dY, X, mean, variance) and the rest:
 * for dX, the op's scale (input 2) and dX into out[0] (dScale, which oneDNN computes too, into a
 * kernel buffer); for the weight gradients, a scale of ones (and a
 * shift: oneDNN 2.6 wants one whenever it computes dShift), dX into a kernel buffer, dScale and
 * dBias into the outputs (accumulated when asked). xmd: X's layout; pmd: the parameters' (np
 * values). */
static pippy_status pippy_ng_bwd_step(const pippy_op_desc *d, const pippy_ng_geom *g, pippy_dnnl_kernel *k,
                                      dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *io,
                                      const dnnl_memory_desc_t *xmd, const dnnl_memory_desc_t *pmd, int64_t np)
{
    int w = g->kind == PIPPY_NG_LNW || g->kind == PIPPY_NG_BNW;
    dnnl_memory_t sm, dxm, shm = NULL, dsm = NULL, dsu = NULL, dbm = NULL, dbu = NULL;
    if (w) {
        PIPPY_TRY(pippy_ng_ones(k, pmd, np, &sm));
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, xmd, &dxm, NULL)); /* dX: not wanted */
        PIPPY_TRY(pippy_ng_out(k, pmd, 0, g->acc, &dsm, &dsu));
        if (g->n_out > 1) {
            PIPPY_TRY(pippy_dnnl_memory_alloc(k, pmd, &shm, NULL));
            PIPPY_TRY(pippy_ng_out(k, pmd, 1, g->acc, &dbm, &dbu));
        }
    } else {
        if (g->kind == PIPPY_NG_LN)
            PIPPY_TRY(pippy_norm_param(k, d, &d->in[1], g->r.axis, g->r.inner, 2, &sm));
        else
            PIPPY_TRY(pippy_dnnl_input(k, d, 2, pmd, pmd, 1.0f, &sm));
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, pmd, &dsm, NULL)); /* dScale: not wanted */
        PIPPY_TRY(pippy_dnnl_memory_out(k, xmd, 0, &dxm));
    }
    dnnl_exec_arg_t args[10];
    memcpy(args, io, 4 * sizeof *args);
    args[4] = (dnnl_exec_arg_t){DNNL_ARG_SCALE, sm};
    args[5] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SRC, dxm};
    int n = 6;
    if (dsm)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SCALE, dsm};
    if (dbm) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, shm};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_SHIFT, dbm};
    }
    PIPPY_TRY(pippy_dnnl_add_step(k, pd, args, n));
    if (w)
        PIPPY_TRY(pippy_ng_acc_add(k, g->acc, dsm, dsu));
    if (dbm)
        PIPPY_TRY(pippy_ng_acc_add(k, g->acc, dbm, dbu));
    return PIPPY_OK;
}

/* LayerNormalizationGrad / WeightGrad: X as [outer, inner], statistics [outer]. */
static pippy_status pippy_ln_bwd_fast(const pippy_op_desc *d, const pippy_ng_geom *g, pippy_dnnl_kernel *k)
{
    int w = g->kind == PIPPY_NG_LNW, stat = w ? 2 : 3;
    unsigned flags = dnnl_use_scale | (w && g->n_out > 1 ? dnnl_use_shift : 0);
    int64_t xd[2] = {g->r.outer, g->r.inner};
    dnnl_memory_desc_t xmd, smd, pmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 2, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&smd, 1, &g->r.outer));
    PIPPY_TRY(pippy_dnnl_md_plain(&pmd, 1, &g->r.inner));
    dnnl_layer_normalization_desc_t fwd, bwd;
    PIPPY_DNNL_CHECK(dnnl_layer_normalization_forward_desc_init(&fwd, dnnl_forward_training, &xmd, &smd, 0.0f, flags));
    PIPPY_TRY(pippy_dnnl_hint(k, d, &fwd));
    PIPPY_DNNL_CHECK(dnnl_layer_normalization_backward_desc_init(&bwd, dnnl_backward, &xmd, &xmd, &smd, 0.0f, flags));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_bwd(k, d, &bwd, 0, &pd));
    dnnl_memory_t dym, xm, mm, vm;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 0, &dym));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 1, &xm));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &smd, stat, &mm));
    PIPPY_TRY(pippy_norm_var_from_inv(k, stat + 1, g->r.outer, &vm));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_SRC, xm}, {DNNL_ARG_MEAN, mm}, {DNNL_ARG_VARIANCE, vm}};
    return pippy_ng_bwd_step(d, g, k, pd, args, &xmd, &pmd, g->r.inner);
}

/* BatchNormalizationGrad / WeightGrad: X as [N, C, S, 1], statistics [C]. */
static pippy_status pippy_bn_bwd_fast(const pippy_op_desc *d, const pippy_ng_geom *g, pippy_dnnl_kernel *k)
{
    int w = g->kind == PIPPY_NG_BNW, stat = w ? 2 : 3;
    int64_t xd[4] = {g->b.N, g->b.C, g->b.S, 1};
    dnnl_memory_desc_t xmd, cmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 4, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&cmd, 1, &g->b.C));
    unsigned flags = dnnl_use_scale | (w && g->n_out > 1 ? dnnl_use_shift : 0);
    dnnl_batch_normalization_desc_t fwd, bwd;
    PIPPY_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&fwd, dnnl_forward_training, &xmd, 0.0f, flags));
    PIPPY_TRY(pippy_dnnl_hint(k, d, &fwd));
    PIPPY_DNNL_CHECK(dnnl_batch_normalization_backward_desc_init(&bwd, dnnl_backward, &xmd, &xmd, 0.0f, flags));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_bwd(k, d, &bwd, 0, &pd));
    dnnl_memory_t dym, xm, mm, vm;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 0, &dym));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 1, &xm));
    PIPPY_TRY(pippy_dnnl_input(k, d, stat, &cmd, &cmd, 1.0f, &mm));
    PIPPY_TRY(pippy_norm_var_from_inv(k, stat + 1, g->b.C, &vm));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_SRC, xm}, {DNNL_ARG_MEAN, mm}, {DNNL_ARG_VARIANCE, vm}};
    return pippy_ng_bwd_step(d, g, k, pd, args, &xmd, &cmd, g->b.C);
}

/* BatchNormalizationTraining's tail: saved_inv_std and the running statistics, in place. */
typedef struct {
    int64_t C;
    double count;
    float eps, momentum;
    const float *var; /* biased batch variance, from the primitive */
} pippy_bnt_aux;

static void pippy_bnt_finish(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    const pippy_bnt_aux *a = k->aux;
    float *rmean = (float *)in[3], *rvar = (float *)in[4]; /* updated in place (see the header) */
    const float *mean = out[1];
    float *inv = out[2];
    double mom = a->momentum, unbias = a->count / (a->count - 1);
    for (int64_t c = 0; c < a->C; c++) {
        inv[c] = (float)(1.0 / sqrt((double)a->var[c] + (double)a->eps));
        rmean[c] = (float)(rmean[c] * mom + (double)mean[c] * (1 - mom));
        rvar[c] = (float)(rvar[c] * mom + (double)a->var[c] * unbias * (1 - mom));
    }
}

static pippy_status pippy_bnt_fast(const pippy_op_desc *d, const pippy_ng_geom *g, pippy_dnnl_kernel *k)
{
    int64_t xd[4] = {g->b.N, g->b.C, g->b.S, 1};
    dnnl_memory_desc_t xmd, cmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 4, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&cmd, 1, &g->b.C));
    dnnl_batch_normalization_desc_t bd;
    PIPPY_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &xmd, g->eps,
                                                                dnnl_use_scale | dnnl_use_shift));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &bd, 0, &pd));
    dnnl_memory_t xm, ym, sm, bm, mm, vm;
    pippy_bnt_aux *a;
    void *var;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 0, &xm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &xmd, 0, &ym));
    PIPPY_TRY(pippy_dnnl_input(k, d, 1, &cmd, &cmd, 1.0f, &sm));
    PIPPY_TRY(pippy_dnnl_input(k, d, 2, &cmd, &cmd, 1.0f, &bm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &cmd, 1, &mm));
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, &cmd, &vm, &var));
    PIPPY_TRY(pippy_dnnl_alloc(k, sizeof *a, (void **)&a));
    *a = (pippy_bnt_aux){g->b.C, (double)(g->b.N * g->b.S), g->eps, g->momentum, var};
    k->aux = a;
    k->finish = pippy_bnt_finish;
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, xm},   {DNNL_ARG_DST, ym},  {DNNL_ARG_SCALE, sm},
                               {DNNL_ARG_SHIFT, bm}, {DNNL_ARG_MEAN, mm}, {DNNL_ARG_VARIANCE, vm}};
    return pippy_dnnl_add_step(k, pd, args, 6);
}

static pippy_status pippy_ng_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_ng_geom *g = &((const pippy_ng_ref *)ref)->g;
    switch (g->kind) {
    case PIPPY_NG_LN:
    case PIPPY_NG_LNW:
        return pippy_ln_bwd_fast(d, g, k);
    case PIPPY_NG_BNT:
        return pippy_bnt_fast(d, g, k);
    default:
        return pippy_bn_bwd_fast(d, g, k);
    }
}

static pippy_status pippy_ng_create(const pippy_op_desc *d, pippy_kernel **out)
{
    static const pippy_kernel_run_fn runs[] = {pippy_lng_ref_run, pippy_lnw_ref_run, pippy_bnt_ref_run,
                                               pippy_bng_ref_run, pippy_bng_ref_run};
    pippy_ng_ref r = {.base.destroy = pippy_ng_ref_destroy};
    PIPPY_TRY(pippy_ng_geom_get(d, &r.g));
    r.base.run = runs[r.g.kind];
    if (r.g.kind == PIPPY_NG_BNT && (d->in_const[3] || d->in_const[4]))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: running_mean and running_var must be given at run time (the kernel "
                                             "updates them in place), found a compile-time constant", d->op);
    int64_t n = r.g.kind <= PIPPY_NG_LNW ? r.g.r.outer * r.g.r.inner : r.g.b.N * r.g.b.C * r.g.b.S;
    PIPPY_TRY(pippy_dense_create(d, n > 0, pippy_ng_fast, &r.base, sizeof r, out));
    if ((*out)->run != r.base.run || r.g.kind > PIPPY_NG_LNW)
        return PIPPY_OK;
    /* the LayerNormalization reference kernels: Scale's index table, the accumulators */
    pippy_ng_ref *k = (pippy_ng_ref *)*out;
    size_t m = (size_t)(k->g.r.inner > 0 ? k->g.r.inner : 1);
    if (k->g.kind == PIPPY_NG_LN)
        k->sidx = malloc(m * sizeof *k->sidx);
    else
        k->sum = malloc(2 * m * sizeof *k->sum);
    if (!k->sidx && !k->sum) {
        pippy_ng_ref_destroy(&k->base);
        *out = NULL;
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", d->op);
    }
    if (k->sidx)
        pippy_ln_index(&d->in[1], k->g.r.axis, &d->in[2], k->sidx, k->g.r.inner);
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_norm_grad[] = {
    {"LayerNormalizationGrad", "pippy", pippy_ng_infer, pippy_ng_flops, pippy_ng_create},
    {"LayerNormalizationWeightGrad", "pippy", pippy_ng_infer, pippy_ng_flops, pippy_ng_create},
    {"BatchNormalizationTraining", "pippy", pippy_ng_infer, pippy_ng_flops, pippy_ng_create},
    {"BatchNormalizationGrad", "pippy", pippy_ng_infer, pippy_ng_flops, pippy_ng_create},
    {"BatchNormalizationWeightGrad", "pippy", pippy_ng_infer, pippy_ng_flops, pippy_ng_create},
    {0},
};
