/* loss.c — ONNX SoftmaxCrossEntropyLoss (opset 12/13) and its backward (domain "pippy").
 *
 *   SoftmaxCrossEntropyLoss(scores, labels [, weights]) -> loss [, log_prob]
 *       scores float [N, C] or [N, C, d1..dk]; labels int64 or int32 [N] or [N, d1..dk];
 *       weights float [C]; attrs reduction ("mean" default, "sum", "none"), ignore_index.
 *       log_prob = log-softmax of scores along C (scores' shape);
 *       l[n, d] = -log_prob[n, label, d] * w, w = weights[label] (1 without weights), and
 *       l = 0, w = 0 where label == ignore_index. loss: l itself ([N, d1..dk]) for "none",
 *       sum(l) for "sum", sum(l) / sum(w) for "mean" (the weights of the targets not ignored;
 *       0/0 = NaN when every target is ignored, as the ONNX reference computes it). Scalars
 *       for "sum" and "mean".
 *   SoftmaxCrossEntropyLossGrad(dLoss, log_prob, labels [, weights]) -> dScores
 *       attrs reduction, ignore_index (the forward's). dLoss has the loss's shape.
 *       dScores[n, c, d] = f[n, d] * (exp(log_prob[n, c, d]) - (c == label[n, d])), with
 *       f = w * dLoss[n, d] ("none"), w * dLoss ("sum"), w * dLoss / sum(w) ("mean"); 0 where
 *       the target is ignored (also when every target is: no 0/0 there).
 * Labels outside [0, C) other than ignore_index: the ONNX spec calls them an error, and the
 * backend has no way yet for a run to report one, so they are treated as ignored (zero loss,
 * zero weight, zero gradient).
 *
 * Fast kernel of the loss: oneDNN softmax_v2 (log) along C, scores seen as [N, C, D] (D =
 * d1*..*dk), writing log_prob (the output, or a kernel buffer when it is not requested), then a
 * loop for the loss, sums in double. The reference computes the log-softmax in double and the
 * loss from it. The backward's fast kernel: oneDNN's exp of log_prob into dScores, then one pass
 * that scales and subtracts the targets; its reference: one pass with exp in double.
 * Conformance: the 34 ONNX node tests test_sce_* made of this op alone pass (onnx 1.23.2); their
 * *_expanded twins are built from ops pippyc does not have. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

enum { PIPPY_SCE_MEAN, PIPPY_SCE_SUM, PIPPY_SCE_NONE };

typedef struct {
    int64_t N, C, D; /* scores as [N, C, D] */
    int red, has_ignore, has_w, lab64, grad, n_out;
    int64_t ignore;
} pippy_sce_geom;

/* scores (or log_prob) at input si, labels at si + 1, optional weights at si + 2. */
static pippy_status pippy_sce_shapes(const pippy_op_desc *d, int si, pippy_sce_geom *g)
{
    const pippy_tdesc *x = &d->in[si], *l = &d->in[si + 1];
    char sx[160], sl[160], sw[160];
    PIPPY_TRY(pippy_dense_want_float(d, si, g->grad ? "log_prob" : "scores"));
    if (x->rank < 2)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: %s must be [N, C, ...], found %s", d->op,
                          g->grad ? "log_prob" : "scores", pippy_tdesc_str(x, sx, sizeof sx));
    if (!pippy_dense_has_input(d, si + 1) || (l->dtype != PIPPY_DT_INT64 && l->dtype != PIPPY_DT_INT32))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: input %d (labels) must be int64 or int32, found %s", d->op, si + 1,
                          pippy_dense_has_input(d, si + 1) ? pippy_tdesc_str(l, sl, sizeof sl) : "nothing");
    g->lab64 = l->dtype == PIPPY_DT_INT64;
    int same = l->rank == x->rank - 1 && l->dims[0] == x->dims[0];
    for (int i = 1; same && i < l->rank; i++)
        same = l->dims[i] == x->dims[i + 1];
    if (!same)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: labels are %s, expected the scores' shape %s without dim 1", d->op,
                          pippy_tdesc_str(l, sl, sizeof sl), pippy_tdesc_str(x, sx, sizeof sx));
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->D = pippy_dims_prod(x->dims, 2, x->rank);
    g->has_w = pippy_dense_has_input(d, si + 2);
    if (g->has_w) {
        PIPPY_TRY(pippy_dense_want_float(d, si + 2, "weights"));
        const pippy_tdesc *w = &d->in[si + 2];
        if (w->rank != 1 || w->dims[0] != g->C)
            return pippy_fail(PIPPY_ERR_SHAPE, "%s: weights must be [%lld] (one per class), found %s", d->op,
                              (long long)g->C, pippy_tdesc_str(w, sw, sizeof sw));
    }
    return PIPPY_OK;
}

static pippy_status pippy_sce_geom_get(const pippy_op_desc *d, pippy_sce_geom *g)
{
    memset(g, 0, sizeof *g);
    g->grad = strcmp(d->op, "SoftmaxCrossEntropyLossGrad") == 0;
    g->n_out = d->n_out;
    int lo = g->grad ? 3 : 2;
    if (d->n_in < lo || d->n_in > lo + 1)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %d or %d inputs, found %d", d->op, lo, lo + 1, d->n_in);
    const char *red = pippy_attr_string(d, "reduction", "mean");
    g->red = strcmp(red, "mean") == 0 ? PIPPY_SCE_MEAN : strcmp(red, "sum") == 0 ? PIPPY_SCE_SUM
             : strcmp(red, "none") == 0 ? PIPPY_SCE_NONE : -1;
    if (g->red < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: reduction is '%s', expected mean, sum or none", d->op, red);
    const pippy_attr *ig = pippy_attr_find(d, "ignore_index");
    g->has_ignore = ig && ig->type == PIPPY_ATTR_INT;
    g->ignore = g->has_ignore ? ig->i : 0;
    PIPPY_TRY(pippy_sce_shapes(d, g->grad ? 1 : 0, g));
    if (!g->grad)
        return PIPPY_OK;
    /* dLoss: the loss's shape */
    PIPPY_TRY(pippy_dense_want_float(d, 0, "dLoss"));
    pippy_tdesc want = {.dtype = PIPPY_DT_FLOAT};
    if (g->red == PIPPY_SCE_NONE)
        want = d->in[2], want.dtype = PIPPY_DT_FLOAT;
    return pippy_dense_want_shape(d, 0, "dLoss", &want, "the loss's shape");
}

static pippy_status pippy_sce_infer(pippy_op_desc *d)
{
    pippy_sce_geom g;
    PIPPY_TRY(pippy_sce_geom_get(d, &g));
    if (d->n_out < 1 || d->n_out > (g.grad ? 1 : 2))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: expected %s, found %d outputs", d->op,
                          g.grad ? "1 output" : "1 or 2 outputs", d->n_out);
    if (g.grad) {
        d->out[0] = d->in[1];
        return PIPPY_OK;
    }
    memset(&d->out[0], 0, sizeof d->out[0]);
    if (g.red == PIPPY_SCE_NONE)
        d->out[0] = d->in[1];
    d->out[0].dtype = PIPPY_DT_FLOAT;
    if (d->n_out > 1)
        d->out[1] = d->in[0];
    return PIPPY_OK;
}

static double pippy_sce_flops(const pippy_op_desc *d)
{
    int grad = strcmp(d->op, "SoftmaxCrossEntropyLossGrad") == 0;
    return 4.0 * (double)pippy_tdesc_numel(&d->in[grad ? 1 : 0]);
}

/* ---- shared by both kernels ---- */

/* The class of target i (of N*D): -1 when ignored (ignore_index, or outside [0, C), see the
 * header); *w its weight (0 when ignored). */
static int64_t pippy_sce_target(const pippy_sce_geom *g, const void *labels, const float *weights, int64_t i,
                                double *w)
{
    int64_t c = g->lab64 ? ((const int64_t *)labels)[i] : ((const int32_t *)labels)[i];
    if ((g->has_ignore && c == g->ignore) || c < 0 || c >= g->C) {
        *w = 0;
        return -1;
    }
    *w = weights ? weights[c] : 1.0;
    return c;
}

/* The reduction: sum of the targets' losses and weights; "none" stores each loss. */
typedef struct {
    double sum, den;
} pippy_sce_acc;

static void pippy_sce_add(const pippy_sce_geom *g, pippy_sce_acc *a, float *loss, int64_t i, double l, double w)
{
    if (g->red == PIPPY_SCE_NONE)
        loss[i] = (float)l;
    a->sum += l;
    a->den += w;
}

static void pippy_sce_done(const pippy_sce_geom *g, const pippy_sce_acc *a, float *loss)
{
    if (g->red == PIPPY_SCE_SUM)
        loss[0] = (float)a->sum;
    else if (g->red == PIPPY_SCE_MEAN)
        loss[0] = a->den > 0 ? (float)(a->sum / a->den) : NAN;
}

/* The loss from log_prob (float [N, C, D]), sums in double. */
static void pippy_sce_loss(const pippy_sce_geom *g, const float *logp, const void *labels, const float *weights,
                           float *loss)
{
    pippy_sce_acc a = {0, 0};
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t j = 0; j < g->D; j++) {
            double w;
            int64_t c = pippy_sce_target(g, labels, weights, n * g->D + j, &w);
            pippy_sce_add(g, &a, loss, n * g->D + j, c < 0 ? 0.0 : -(double)logp[(n * g->C + c) * g->D + j] * w, w);
        }
    pippy_sce_done(g, &a, loss);
}

/* ---- the loss: reference ---- */

typedef struct {
    pippy_kernel base;
    pippy_sce_geom g;
} pippy_sce_ref;

static void pippy_sce_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_sce_geom *g = &((const pippy_sce_ref *)kb)->g;
    const float *X = in[0], *weights = g->has_w ? in[2] : NULL;
    float *loss = out[0], *logp = g->n_out > 1 ? out[1] : NULL;
    pippy_sce_acc a = {0, 0};
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t j = 0; j < g->D; j++) {
            const float *x = X + n * g->C * g->D + j;
            double mx = -INFINITY, s = 0, w;
            for (int64_t c = 0; c < g->C; c++)
                mx = fmax(mx, (double)x[c * g->D]);
            for (int64_t c = 0; c < g->C; c++)
                s += exp((double)x[c * g->D] - mx);
            double lse = mx + log(s);
            for (int64_t c = 0; logp && c < g->C; c++)
                logp[(n * g->C + c) * g->D + j] = (float)((double)x[c * g->D] - lse);
            int64_t t = pippy_sce_target(g, in[1], weights, n * g->D + j, &w);
            pippy_sce_add(g, &a, loss, n * g->D + j, t < 0 ? 0.0 : -((double)x[t * g->D] - lse) * w, w);
        }
    pippy_sce_done(g, &a, loss);
}

/* ---- the loss: oneDNN log-softmax, then the loss loop ---- */

typedef struct {
    pippy_sce_geom g;
    const float *logp; /* a kernel buffer, or NULL: out[1] */
} pippy_sce_aux;

static void pippy_sce_finish(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    const pippy_sce_aux *a = k->aux;
    pippy_sce_loss(&a->g, a->logp ? a->logp : out[1], in[1], a->g.has_w ? in[2] : NULL, out[0]);
}

static pippy_status pippy_sce_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_sce_geom *g = &((const pippy_sce_ref *)ref)->g;
    int64_t dims[3] = {g->N, g->C, g->D};
    int nd = g->D == 1 ? 2 : 3;
    dnnl_memory_desc_t md;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, nd, dims));
    dnnl_softmax_v2_desc_t sd;
    PIPPY_DNNL_CHECK(dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference, dnnl_softmax_log, &md, &md, 1));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &sd, 0, &pd));
    pippy_sce_aux *a;
    PIPPY_TRY(pippy_dnnl_alloc(k, sizeof *a, (void **)&a));
    a->g = *g;
    dnnl_memory_t xm, lm;
    void *buf = NULL;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 0, &xm));
    if (g->n_out > 1)
        PIPPY_TRY(pippy_dnnl_memory_out(k, &md, 1, &lm));
    else
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, &md, &lm, &buf));
    a->logp = buf;
    k->aux = a;
    k->finish = pippy_sce_finish;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, lm}};
    return pippy_dnnl_add_step(k, pd, args, 2);
}

/* ---- the backward ---- */

/* The sum of the targets' weights ("mean"'s denominator). */
static double pippy_sceg_den(const pippy_sce_geom *g, const void *labels, const float *weights)
{
    double den = 0, w;
    for (int64_t i = 0; g->red == PIPPY_SCE_MEAN && i < g->N * g->D; i++) {
        pippy_sce_target(g, labels, weights, i, &w);
        den += w;
    }
    return den;
}

/* f of target i (class t, weight w): dScores = f * (softmax - onehot); 0 where ignored. */
static double pippy_sceg_factor(const pippy_sce_geom *g, const float *dL, int64_t i, int64_t t, double w, double den)
{
    return t < 0                      ? 0.0
           : g->red == PIPPY_SCE_NONE ? w * dL[i]
           : g->red == PIPPY_SCE_SUM  ? w * dL[0]
                                      : w * dL[0] / den;
}

/* Reference: one pass in double. */
static void pippy_sceg_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_sce_geom *g = &((const pippy_sce_ref *)kb)->g;
    const float *dL = in[0], *logp = in[1], *weights = g->has_w ? in[3] : NULL;
    float *dX = out[0];
    double den = pippy_sceg_den(g, in[2], weights), w;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t j = 0; j < g->D; j++) {
            int64_t t = pippy_sce_target(g, in[2], weights, n * g->D + j, &w);
            double f = pippy_sceg_factor(g, dL, n * g->D + j, t, w, den);
            for (int64_t c = 0; c < g->C; c++) {
                int64_t at = (n * g->C + c) * g->D + j;
                dX[at] = (float)(f * (exp((double)logp[at]) - (c == t ? 1.0 : 0.0)));
            }
        }
}

/* Fast: oneDNN's (vectorized) exp of log_prob into dScores, then this pass: each target's
 * scores times f, the target's own as f * (e - 1) (exact for e near 1, where a difference of
 * products would cancel). The reference's exp in double per element ran at ~3 ns an element,
 * 3.1 ms of the bench GPT's 50 ms training step (batch 32, vocab 512). */
static void pippy_sceg_adjust(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    const pippy_sce_geom *g = k->aux;
    const float *dL = in[0], *weights = g->has_w ? in[3] : NULL;
    float *dX = out[0];
    double den = pippy_sceg_den(g, in[2], weights), w;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t j = 0; j < g->D; j++) {
            int64_t t = pippy_sce_target(g, in[2], weights, n * g->D + j, &w);
            float f = (float)pippy_sceg_factor(g, dL, n * g->D + j, t, w, den);
            float *row = dX + n * g->C * g->D + j, et = t >= 0 ? row[t * g->D] : 0.0f;
            if (g->D == 1)
                for (int64_t c = 0; c < g->C; c++)
                    row[c] *= f;
            else
                for (int64_t c = 0; c < g->C; c++)
                    row[c * g->D] *= f;
            if (t >= 0)
                row[t * g->D] = f * (et - 1.0f);
        }
}

static pippy_status pippy_sceg_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_sce_geom *g = &((const pippy_sce_ref *)ref)->g;
    int64_t n = g->N * g->C * g->D;
    dnnl_memory_desc_t md;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, 1, &n));
    dnnl_eltwise_desc_t ed;
    PIPPY_DNNL_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_exp, &md, 0.0f, 0.0f));
    pippy_sce_geom *a;
    PIPPY_TRY(pippy_dnnl_alloc(k, sizeof *a, (void **)&a));
    *a = *g;
    k->aux = a;
    k->finish = pippy_sceg_adjust;
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &ed, 0, &pd));
    dnnl_memory_t xm, ym;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 1, &xm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &md, 0, &ym));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}};
    return pippy_dnnl_add_step(k, pd, args, 2);
}

static pippy_status pippy_sce_fast_any(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    return ((const pippy_sce_ref *)ref)->g.grad ? pippy_sceg_fast(d, ref, k) : pippy_sce_fast(d, ref, k);
}

static pippy_status pippy_sce_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_sce_ref r = {0};
    PIPPY_TRY(pippy_sce_geom_get(d, &r.g));
    r.base.run = r.g.grad ? pippy_sceg_run : pippy_sce_ref_run;
    return pippy_dense_create(d, r.g.N * r.g.C * r.g.D > 0, pippy_sce_fast_any, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_loss[] = {
    {"SoftmaxCrossEntropyLoss", "", pippy_sce_infer, pippy_sce_flops, pippy_sce_create},
    {"SoftmaxCrossEntropyLossGrad", "pippy", pippy_sce_infer, pippy_sce_flops, pippy_sce_create},
    {0},
};
