/* norm.c — BatchNormalization (inference) and LayerNormalization.
 *
 * BatchNormalization: y = (x - mean) / sqrt(var + epsilon) * scale + B per channel
 * (dim 1). The kernel is inference only. A node in training mode (training_mode=1, or the
 * training outputs of opsets 9-13) gets its shapes inferred, for a --train compile to replace
 * it (compiler/train.c); an inference compile refuses it. spatial=0 (opset 7-8) is unsupported.
 * Fast kernel: oneDNN batch normalization with global stats, scale and shift on
 * X seen as [N, C, spatial product, 1]. Constant parameters are copied at create.
 *
 * LayerNormalization (opset 17): normalizes over X.shape[axis:], then * Scale + B
 * (both broadcast to X.shape[axis:]). The optional Mean and InvStdDev outputs
 * (shape X.shape[:axis] + [1]*(rank-axis)) are computed too: with n_out = 2 or 3 the
 * run must be given those buffers (no NULL for a requested output).
 * Fast kernel: oneDNN layer normalization on X seen as [outer, inner]; with Mean or
 * InvStdDev requested it runs as forward_training (which writes mean and variance)
 * and a short loop turns the variance into 1/sqrt(var + epsilon). A Scale or B that
 * broadcasts is expanded into a full row: once at create when constant, else into a
 * kernel buffer before each run (training gives the parameters at run time).
 * Reference kernels: plain loops, two-pass statistics in double. Where the node folds
 * (desc->reference = 1) they also take double inputs, as the spec allows (BatchNormalization's
 * five inputs each float or double; LayerNormalization's Mean and InvStdDev then of stash_type). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "geom.h"

/* ------------------------------------------------------------ BatchNormalization */

pippy_status pippy_bn_dims_of(const pippy_op_desc *d, const pippy_tdesc *x, const int *list, int n,
                              const char *const *names, pippy_bn_dims *g)
{
    char sx[160], sp[160];
    if (x->rank < 2)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: X must be [N,C,...], found %s", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx));
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->S = pippy_dims_prod(x->dims, 2, x->rank);
    for (int j = 0; j < n; j++) {
        const pippy_tdesc *p = &d->in[list[j]];
        if (p->rank != 1 || p->dims[0] != g->C)
            return pippy_fail(PIPPY_ERR_SHAPE, "%s: %s must be [%lld] (X is %s), found %s", d->op, names[j],
                              (long long)g->C, pippy_tdesc_str(x, sx, sizeof sx), pippy_tdesc_str(p, sp, sizeof sp));
    }
    return PIPPY_OK;
}

typedef struct {
    pippy_bn_dims dm;
    float eps;
} pippy_bn_geom;

static pippy_status pippy_bn_geom_get(const pippy_op_desc *d, pippy_bn_geom *g)
{
    static const char *const names[5] = {"X", "scale", "B", "input_mean", "input_var"};
    static const int params[4] = {1, 2, 3, 4};
    if (d->n_in != 5)
        return pippy_fail(PIPPY_ERR_INVALID, "BatchNormalization: expected 5 inputs, found %d", d->n_in);
    for (int i = 0; i < 5; i++)
        PIPPY_TRY(pippy_dense_want_real(d, i, names[i], PIPPY_DENSE_FOLD_DOUBLE));
    if (pippy_attr_int(d, "spatial", 1) == 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "BatchNormalization: spatial=0 (per-element statistics) is not supported");
    g->eps = pippy_attr_float(d, "epsilon", 1e-5f);
    return pippy_bn_dims_of(d, &d->in[0], params, 4, names + 1, &g->dm);
}

/* A node in training mode: training_mode=1 (opset 14+), or the training outputs of older opsets. */
static int pippy_bn_training_mode(const pippy_op_desc *d)
{
    return pippy_attr_int(d, "training_mode", 0) != 0 || d->n_out > 1;
}

/* Y, and in training mode the statistics outputs (running mean and variance, then the saved ones of
 * opsets 9-13), each [C]: shapes only, for a --train compile, which replaces the node. */
static pippy_status pippy_bn_infer(pippy_op_desc *d)
{
    pippy_bn_geom g;
    PIPPY_TRY(pippy_bn_geom_get(d, &g));
    if (d->n_out > 5)
        return pippy_fail(PIPPY_ERR_INVALID, "BatchNormalization: at most 5 outputs, found %d", d->n_out);
    d->out[0] = d->in[0];
    for (int o = 1; o < d->n_out; o++)
        d->out[o] = d->in[3];
    return PIPPY_OK;
}

static double pippy_bn_flops(const pippy_op_desc *d) { return 2.0 * (double)pippy_tdesc_numel(&d->in[0]); }

typedef struct {
    pippy_kernel base;
    pippy_bn_geom g;
    int32_t dt[5]; /* each input's dtype: float, or double when folding */
} pippy_bn_ref;

static void pippy_bn_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_bn_ref *k = (const pippy_bn_ref *)kb;
    const pippy_bn_geom *gg = &k->g;
    const pippy_bn_dims *g = &gg->dm;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t c = 0; c < g->C; c++) {
            double inv = 1.0 / sqrt(pippy_dense_load(k->dt[4], in[4], c) + (double)gg->eps);
            double mean = pippy_dense_load(k->dt[3], in[3], c), scale = pippy_dense_load(k->dt[1], in[1], c);
            double b = pippy_dense_load(k->dt[2], in[2], c);
            int64_t at = (n * g->C + c) * g->S;
            for (int64_t s = 0; s < g->S; s++)
                pippy_dense_store(k->dt[0], out[0], at + s,
                                  (pippy_dense_load(k->dt[0], in[0], at + s) - mean) * inv * scale + b);
        }
}

static pippy_status pippy_bn_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_bn_geom *gg = &((const pippy_bn_ref *)ref)->g;
    const pippy_bn_dims *g = &gg->dm;
    int64_t xd[4] = {g->N, g->C, g->S, 1}, cd = g->C;
    dnnl_memory_desc_t xmd, cmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 4, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&cmd, 1, &cd));
    dnnl_batch_normalization_desc_t bd;
    PIPPY_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &xmd, gg->eps,
                                                                dnnl_use_global_stats | dnnl_use_scale |
                                                                    dnnl_use_shift));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &bd, 0, &pd));
    dnnl_memory_t xm, ym, p[5];
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 0, &xm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &xmd, 0, &ym));
    for (int i = 1; i < 5; i++) /* scale, B, mean, var: kernel-owned copies when constant */
        PIPPY_TRY(pippy_dnnl_input(k, d, i, &cmd, &cmd, 1.0f, &p[i]));
    dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, xm},     {DNNL_ARG_DST, ym},  {DNNL_ARG_SCALE, p[1]},
                               {DNNL_ARG_SHIFT, p[2]}, {DNNL_ARG_MEAN, p[3]}, {DNNL_ARG_VARIANCE, p[4]}};
    return pippy_dnnl_add_step(k, pd, args, 6);
}

static pippy_status pippy_bn_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_bn_ref r = {.base.run = pippy_bn_ref_run};
    PIPPY_TRY(pippy_bn_geom_get(d, &r.g));
    if (pippy_bn_training_mode(d))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "BatchNormalization in training mode has no kernel: a --train "
                                                 "compile replaces it by pippy::BatchNormalizationTraining");
    int all_float = 1;
    for (int i = 0; i < 5; i++) {
        r.dt[i] = d->in[i].dtype;
        all_float &= r.dt[i] == PIPPY_DT_FLOAT;
    }
    return pippy_dense_create(d, all_float && pippy_tdesc_numel(&d->in[0]) > 0, pippy_bn_fast, &r.base, sizeof r,
                              out);
}

/* ------------------------------------------------------------ LayerNormalization */

pippy_status pippy_ln_rows_of(const pippy_op_desc *d, const pippy_tdesc *x, pippy_ln_rows *r)
{
    char sx[160];
    if (x->rank < 1)
        return pippy_fail(PIPPY_ERR_SHAPE, "%s: X must have rank >= 1, found %s", d->op,
                          pippy_tdesc_str(x, sx, sizeof sx));
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", -1), x->rank, &axis));
    r->axis = axis;
    r->outer = pippy_dims_prod(x->dims, 0, axis);
    r->inner = pippy_dims_prod(x->dims, axis, x->rank);
    return PIPPY_OK;
}

pippy_status pippy_ln_want_param(const pippy_op_desc *d, const pippy_tdesc *x, int axis, const pippy_tdesc *p,
                                 const char *what)
{
    int ok = p->rank <= x->rank - axis;
    for (int i = 0; ok && i < p->rank; i++) {
        int64_t pd = p->dims[p->rank - 1 - i], xd = x->dims[x->rank - 1 - i];
        ok = pd == xd || pd == 1;
    }
    if (ok)
        return PIPPY_OK;
    char sx[160], sp[160];
    return pippy_fail(PIPPY_ERR_SHAPE, "%s: %s is %s, which does not broadcast to X.shape[%d:] (X is %s)", d->op, what,
                      pippy_tdesc_str(p, sp, sizeof sp), axis, pippy_tdesc_str(x, sx, sizeof sx));
}

void pippy_ln_index(const pippy_tdesc *x, int axis, const pippy_tdesc *p, int64_t *idx, int64_t inner)
{
    for (int64_t j = 0; j < inner; j++) {
        int64_t rem = j, pi = 0, pstride = 1;
        for (int i = 0; i < x->rank - axis; i++) { /* from the last dim */
            int64_t xd = x->dims[x->rank - 1 - i];
            int64_t c = rem % xd;
            rem /= xd;
            if (i < p->rank) {
                int64_t pd = p->dims[p->rank - 1 - i];
                pi += (pd == 1 ? 0 : c) * pstride;
                pstride *= pd;
            }
        }
        idx[j] = pi;
    }
}

void pippy_ln_stat_tdesc(const pippy_tdesc *x, int axis, pippy_tdesc *o)
{
    *o = *x;
    o->dtype = PIPPY_DT_FLOAT;
    for (int j = axis; j < x->rank; j++)
        o->dims[j] = 1;
}

/* ---- the norms' oneDNN inputs that are prepared at each run (the kernel's prepare) ---- */

typedef struct {
    int n_expand;
    struct {
        int in;
        int64_t n;
        const int64_t *idx;
        float *buf;
    } expand[2];      /* Scale / B given at run time that broadcast: buf[j] = in[idx[j]] */
    int inv_in;       /* input of 1/sqrt(var + eps), or -1 */
    int64_t n_inv;
    float *var;       /* 1 / inv^2 = var + eps, for oneDNN created with epsilon 0 */
} pippy_norm_prep;

static void pippy_norm_prepare(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    (void)out;
    const pippy_norm_prep *p = k->aux;
    for (int e = 0; e < p->n_expand; e++) {
        const float *src = in[p->expand[e].in];
        for (int64_t j = 0; j < p->expand[e].n; j++)
            p->expand[e].buf[j] = src[p->expand[e].idx[j]];
    }
    if (p->inv_in >= 0) {
        const float *inv = in[p->inv_in];
        for (int64_t j = 0; j < p->n_inv; j++)
            p->var[j] = (float)(1.0 / ((double)inv[j] * (double)inv[j]));
    }
}

static pippy_status pippy_norm_prep_get(pippy_dnnl_kernel *k, pippy_norm_prep **out)
{
    if (!k->aux) {
        void *a;
        PIPPY_TRY(pippy_dnnl_alloc(k, sizeof(pippy_norm_prep), &a));
        ((pippy_norm_prep *)a)->inv_in = -1;
        k->aux = a;
        k->prepare = pippy_norm_prepare;
    }
    *out = k->aux;
    return PIPPY_OK;
}

pippy_status pippy_norm_param(pippy_dnnl_kernel *k, const pippy_op_desc *d, const pippy_tdesc *x, int axis,
                              int64_t inner, int i, dnnl_memory_t *m)
{
    dnnl_memory_desc_t md;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, 1, &inner));
    if (pippy_tdesc_numel(&d->in[i]) == inner)
        return pippy_dnnl_input(k, d, i, &md, &md, 1.0f, m);
    int64_t *idx;
    void *buf;
    PIPPY_TRY(pippy_dnnl_alloc(k, (size_t)inner * sizeof *idx, (void **)&idx));
    pippy_ln_index(x, axis, &d->in[i], idx, inner);
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, &md, m, &buf));
    if (d->in_const[i]) { /* expanded once */
        const float *p = d->in_const[i];
        for (int64_t j = 0; j < inner; j++)
            ((float *)buf)[j] = p[idx[j]];
        return PIPPY_OK;
    }
    pippy_norm_prep *p;
    PIPPY_TRY(pippy_norm_prep_get(k, &p));
    if (p->n_expand >= 2)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: too many expanded parameters", __FILE__, __LINE__);
    p->expand[p->n_expand].in = i;
    p->expand[p->n_expand].n = inner;
    p->expand[p->n_expand].idx = idx;
    p->expand[p->n_expand].buf = buf;
    p->n_expand++;
    return PIPPY_OK;
}

pippy_status pippy_norm_var_from_inv(pippy_dnnl_kernel *k, int i, int64_t n, dnnl_memory_t *m)
{
    dnnl_memory_desc_t md;
    void *buf;
    pippy_norm_prep *p;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, 1, &n));
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, &md, m, &buf));
    PIPPY_TRY(pippy_norm_prep_get(k, &p));
    p->inv_in = i;
    p->n_inv = n;
    p->var = buf;
    return PIPPY_OK;
}

/* ---- LayerNormalization itself ---- */

typedef struct {
    pippy_ln_rows r;
    float eps;
    int has_b;
    int n_out;
} pippy_ln_geom;

static pippy_status pippy_ln_geom_get(const pippy_op_desc *d, pippy_ln_geom *g)
{
    if (d->n_in < 2 || d->n_in > 3)
        return pippy_fail(PIPPY_ERR_INVALID, "LayerNormalization: expected 2 or 3 inputs, found %d", d->n_in);
    PIPPY_TRY(pippy_dense_want_real(d, 0, "X", PIPPY_DENSE_FOLD_DOUBLE));
    PIPPY_TRY(pippy_dense_want_real(d, 1, "Scale", PIPPY_DENSE_FOLD_DOUBLE));
    g->has_b = pippy_dense_has_input(d, 2);
    if (g->has_b)
        PIPPY_TRY(pippy_dense_want_real(d, 2, "B", PIPPY_DENSE_FOLD_DOUBLE));
    for (int i = 1; i < d->n_in; i++)
        if (pippy_dense_has_input(d, i) && d->in[i].dtype != d->in[0].dtype)
            return pippy_fail(PIPPY_ERR_INVALID, "LayerNormalization: input %d is %s but X is %s (they must be of "
                              "one dtype)", i, pippy_dtype_name(d->in[i].dtype), pippy_dtype_name(d->in[0].dtype));
    const pippy_tdesc *x = &d->in[0];
    PIPPY_TRY(pippy_ln_rows_of(d, x, &g->r));
    g->eps = pippy_attr_float(d, "epsilon", 1e-5f);
    g->n_out = d->n_out;
    PIPPY_TRY(pippy_ln_want_param(d, x, g->r.axis, &d->in[1], "Scale"));
    if (g->has_b)
        PIPPY_TRY(pippy_ln_want_param(d, x, g->r.axis, &d->in[2], "B"));
    return PIPPY_OK;
}

static pippy_status pippy_ln_infer(pippy_op_desc *d)
{
    pippy_ln_geom g;
    PIPPY_TRY(pippy_ln_geom_get(d, &g));
    if (d->n_out < 1 || d->n_out > 3)
        return pippy_fail(PIPPY_ERR_INVALID, "LayerNormalization: expected 1 to 3 outputs, found %d", d->n_out);
    const pippy_tdesc *x = &d->in[0];
    d->out[0] = *x;
    for (int i = 1; i < d->n_out; i++) {
        pippy_ln_stat_tdesc(x, g.r.axis, &d->out[i]);
        if (x->dtype != PIPPY_DT_FLOAT) /* folding: Mean and InvStdDev are of stash_type */
            d->out[i].dtype = pippy_attr_int(d, "stash_type", 1) == PIPPY_DT_DOUBLE ? PIPPY_DT_DOUBLE : PIPPY_DT_FLOAT;
    }
    return PIPPY_OK;
}

static double pippy_ln_flops(const pippy_op_desc *d) { return 8.0 * (double)pippy_tdesc_numel(&d->in[0]); }

typedef struct {
    pippy_kernel base;
    pippy_ln_geom g;
    int64_t *sidx, *bidx; /* for each element of a row, its index in Scale / B */
    int32_t dt, stat_dt;  /* X's dtype (float, or double when folding); Mean's and InvStdDev's */
} pippy_ln_ref;

static void pippy_ln_ref_destroy(pippy_kernel *kb)
{
    pippy_ln_ref *k = (pippy_ln_ref *)kb;
    free(k->sidx);
    free(k->bidx);
    free(k);
}

static void pippy_ln_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_ln_ref *k = (const pippy_ln_ref *)kb;
    const pippy_ln_geom *g = &k->g;
    const int32_t dt = k->dt;
    for (int64_t r = 0; r < g->r.outer; r++) {
        int64_t at = r * g->r.inner;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < g->r.inner; j++)
            mean += pippy_dense_load(dt, in[0], at + j);
        mean /= (double)g->r.inner;
        for (int64_t j = 0; j < g->r.inner; j++) {
            double c = pippy_dense_load(dt, in[0], at + j) - mean;
            var += c * c;
        }
        var /= (double)g->r.inner;
        double inv = 1.0 / sqrt(var + (double)g->eps);
        for (int64_t j = 0; j < g->r.inner; j++) {
            double b = g->has_b ? pippy_dense_load(dt, in[2], k->bidx[j]) : 0.0;
            pippy_dense_store(dt, out[0], at + j,
                              (pippy_dense_load(dt, in[0], at + j) - mean) * inv * pippy_dense_load(dt, in[1], k->sidx[j]) +
                                  b);
        }
        if (g->n_out > 1)
            pippy_dense_store(k->stat_dt, out[1], r, mean);
        if (g->n_out > 2)
            pippy_dense_store(k->stat_dt, out[2], r, inv);
    }
}

static void pippy_ln_finish(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    (void)in;
    float *v = out[2];
    for (int64_t i = 0; i < k->n0; i++)
        v[i] = 1.0f / sqrtf(v[i] + k->f0);
}

static pippy_status pippy_ln_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_ln_geom *g = &((const pippy_ln_ref *)ref)->g;
    int64_t xd[2] = {g->r.outer, g->r.inner};
    dnnl_memory_desc_t xmd, smd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 2, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&smd, 1, &g->r.outer));
    int stats = g->n_out > 1;
    unsigned flags = dnnl_use_scale | (g->has_b ? dnnl_use_shift : 0);
    dnnl_layer_normalization_desc_t ld;
    PIPPY_DNNL_CHECK(dnnl_layer_normalization_forward_desc_init(
        &ld, stats ? dnnl_forward_training : dnnl_forward_inference, &xmd, &smd, g->eps, flags));
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, &ld, 0, &pd));
    dnnl_memory_t xm, ym, sm, bm = NULL, mm = NULL, vm = NULL;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &xmd, 0, &xm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &xmd, 0, &ym));
    PIPPY_TRY(pippy_norm_param(k, d, &d->in[0], g->r.axis, g->r.inner, 1, &sm));
    if (g->has_b)
        PIPPY_TRY(pippy_norm_param(k, d, &d->in[0], g->r.axis, g->r.inner, 2, &bm));
    if (stats) {
        /* Mean into out[1]; variance into out[2] (then turned into 1/stddev) or a scratch buffer */
        PIPPY_TRY(pippy_dnnl_memory_out(k, &smd, 1, &mm));
        if (g->n_out > 2) {
            PIPPY_TRY(pippy_dnnl_memory_out(k, &smd, 2, &vm));
            k->finish = pippy_ln_finish;
            k->n0 = g->r.outer;
            k->f0 = g->eps;
        } else {
            PIPPY_TRY(pippy_dnnl_memory_alloc(k, &smd, &vm, NULL));
        }
    }
    dnnl_exec_arg_t args[7] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_SCALE, sm}};
    int n = 3;
    if (g->has_b)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SHIFT, bm};
    if (stats) {
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_MEAN, mm};
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_VARIANCE, vm};
    }
    return pippy_dnnl_add_step(k, pd, args, n);
}

static pippy_status pippy_ln_create(const pippy_op_desc *d, pippy_kernel **out)
{
    /* The fast kernel is not tried for an empty X. */
    pippy_ln_ref r = {.base.run = pippy_ln_ref_run, .base.destroy = pippy_ln_ref_destroy, .dt = d->in[0].dtype};
    PIPPY_TRY(pippy_ln_geom_get(d, &r.g));
    r.stat_dt = d->n_out > 1 ? d->out[1].dtype : PIPPY_DT_FLOAT;
    PIPPY_TRY(pippy_dense_create(d, r.dt == PIPPY_DT_FLOAT && r.g.r.outer > 0 && r.g.r.inner > 0, pippy_ln_fast,
                                 &r.base, sizeof r, out));
    if ((*out)->run != pippy_ln_ref_run)
        return PIPPY_OK; /* the oneDNN kernel */
    /* the reference kernel: index tables for Scale and B */
    pippy_ln_ref *k = (pippy_ln_ref *)*out;
    size_t n = (size_t)(k->g.r.inner > 0 ? k->g.r.inner : 1);
    k->sidx = malloc(n * sizeof *k->sidx);
    k->bidx = malloc(n * sizeof *k->bidx);
    if (!k->sidx || !k->bidx) {
        pippy_ln_ref_destroy(&k->base);
        *out = NULL;
        return pippy_fail(PIPPY_ERR_NOMEM, "LayerNormalization: out of memory");
    }
    pippy_ln_index(&d->in[0], k->g.r.axis, &d->in[1], k->sidx, k->g.r.inner);
    if (k->g.has_b)
        pippy_ln_index(&d->in[0], k->g.r.axis, &d->in[2], k->bidx, k->g.r.inner);
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_norm[] = {
    {"BatchNormalization", "", pippy_bn_infer, pippy_bn_flops, pippy_bn_create},
    {"LayerNormalization", "", pippy_ln_infer, pippy_ln_flops, pippy_ln_create},
    {0},
};
