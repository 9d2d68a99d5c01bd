/* norm.c — BatchNormalization (inference) and LayerNormalization.
 *
 * BatchNormalization: y = (x - mean) / sqrt(var + epsilon) * scale + B per channel
 * (dim 1). Only inference: training_mode=1, spatial=0 (opset 7-8) and the training
 * outputs (running mean/var, saved mean/var) are rejected as unsupported.
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
 * broadcasts is expanded once at create when constant; given at run time, such a
 * broadcast uses the reference kernel.
 * Reference kernels: plain loops, two-pass statistics in double. Where the node folds
 * (desc->reference = 1) they also take double inputs, as the spec allows (BatchNormalization's
 * five inputs each float or double; LayerNormalization's Mean and InvStdDev then of stash_type). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dense.h"

static int64_t pippy_prod_dims(const int64_t *v, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= v[i];
    return p;
}

/* ------------------------------------------------------------ BatchNormalization */

typedef struct {
    int64_t N, C, S; /* X as [N, C, S] */
    float eps;
} pippy_bn_geom;

static pippy_status pippy_bn_geom_get(const pippy_op_desc *d, pippy_bn_geom *g)
{
    static const char *const names[5] = {"X", "scale", "B", "input_mean", "input_var"};
    if (d->n_in != 5)
        return pippy_fail(PIPPY_ERR_INVALID, "BatchNormalization: expected 5 inputs, found %d", d->n_in);
    for (int i = 0; i < 5; i++)
        PIPPY_TRY(pippy_dense_want_real(d, i, names[i], PIPPY_DENSE_FOLD_DOUBLE));
    if (pippy_attr_int(d, "training_mode", 0) != 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "BatchNormalization: training_mode=1 is not supported (inference only)");
    if (pippy_attr_int(d, "spatial", 1) == 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "BatchNormalization: spatial=0 (per-element statistics) is not supported");
    if (pippy_attr_find(d, "is_test") && pippy_attr_int(d, "is_test", 0) == 0 && d->n_out > 1)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "BatchNormalization: is_test=0 (training) is not supported");
    const pippy_tdesc *x = &d->in[0];
    char sx[160], sp[160];
    if (x->rank < 2)
        return pippy_fail(PIPPY_ERR_SHAPE, "BatchNormalization: X must be [N,C,...], found %s",
                          pippy_tdesc_str(x, sx, sizeof sx));
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->S = pippy_prod_dims(x->dims, 2, x->rank);
    for (int i = 1; i < 5; i++)
        if (d->in[i].rank != 1 || d->in[i].dims[0] != g->C)
            return pippy_fail(PIPPY_ERR_SHAPE, "BatchNormalization: %s must be [%lld] (X is %s), found %s", names[i],
                              (long long)g->C, pippy_tdesc_str(x, sx, sizeof sx),
                              pippy_tdesc_str(&d->in[i], sp, sizeof sp));
    g->eps = pippy_attr_float(d, "epsilon", 1e-5f);
    return PIPPY_OK;
}

static pippy_status pippy_bn_infer(pippy_op_desc *d)
{
    pippy_bn_geom g;
    PIPPY_TRY(pippy_bn_geom_get(d, &g));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "BatchNormalization: %d outputs; only Y is supported (the others are training outputs)",
                          d->n_out);
    d->out[0] = d->in[0];
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
    const pippy_bn_geom *g = &k->g;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t c = 0; c < g->C; c++) {
            double inv = 1.0 / sqrt(pippy_dense_load(k->dt[4], in[4], c) + (double)g->eps);
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
    const pippy_bn_geom *g = &((const pippy_bn_ref *)ref)->g;
    int64_t xd[4] = {g->N, g->C, g->S, 1}, cd = g->C;
    dnnl_memory_desc_t xmd, cmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 4, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&cmd, 1, &cd));
    dnnl_batch_normalization_desc_t bd;
    PIPPY_DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_inference, &xmd, g->eps,
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
    int all_float = 1;
    for (int i = 0; i < 5; i++) {
        r.dt[i] = d->in[i].dtype;
        all_float &= r.dt[i] == PIPPY_DT_FLOAT;
    }
    return pippy_dense_create(d, all_float && pippy_tdesc_numel(&d->in[0]) > 0, pippy_bn_fast, &r.base, sizeof r,
                              out);
}

/* ------------------------------------------------------------ LayerNormalization */

typedef struct {
    int axis;
    int64_t outer, inner; /* X as [outer, inner], inner = prod(X.shape[axis:]) */
    float eps;
    int has_b;
    int n_out;
} pippy_ln_geom;

/* Is p (Scale or B) unidirectionally broadcastable to X.shape[axis:]? */
static int pippy_ln_param_ok(const pippy_tdesc *x, int axis, const pippy_tdesc *p)
{
    int nr = x->rank - axis;
    if (p->rank > nr)
        return 0;
    for (int i = 0; i < p->rank; i++) {
        int64_t pd = p->dims[p->rank - 1 - i], xd = x->dims[x->rank - 1 - i];
        if (pd != xd && pd != 1)
            return 0;
    }
    return 1;
}

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
    char sx[160], sp[160];
    if (x->rank < 1)
        return pippy_fail(PIPPY_ERR_SHAPE, "LayerNormalization: X must have rank >= 1, found %s",
                          pippy_tdesc_str(x, sx, sizeof sx));
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", -1), x->rank, &axis));
    g->axis = axis;
    g->outer = pippy_prod_dims(x->dims, 0, axis);
    g->inner = pippy_prod_dims(x->dims, axis, x->rank);
    g->eps = pippy_attr_float(d, "epsilon", 1e-5f);
    g->n_out = d->n_out;
    for (int i = 1; i < 1 + 1 + g->has_b; i++)
        if (!pippy_ln_param_ok(x, axis, &d->in[i]))
            return pippy_fail(PIPPY_ERR_SHAPE,
                              "LayerNormalization: %s is %s, which does not broadcast to X.shape[%d:] (X is %s)",
                              i == 1 ? "Scale" : "B", pippy_tdesc_str(&d->in[i], sp, sizeof sp), axis,
                              pippy_tdesc_str(x, sx, sizeof sx));
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
        pippy_tdesc *o = &d->out[i];
        *o = *x;
        if (x->dtype != PIPPY_DT_FLOAT) /* folding: Mean and InvStdDev are of stash_type */
            o->dtype = pippy_attr_int(d, "stash_type", 1) == PIPPY_DT_DOUBLE ? PIPPY_DT_DOUBLE : PIPPY_DT_FLOAT;
        for (int j = g.axis; j < x->rank; j++)
            o->dims[j] = 1;
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
    for (int64_t r = 0; r < g->outer; r++) {
        int64_t at = r * g->inner;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < g->inner; j++)
            mean += pippy_dense_load(dt, in[0], at + j);
        mean /= (double)g->inner;
        for (int64_t j = 0; j < g->inner; j++) {
            double c = pippy_dense_load(dt, in[0], at + j) - mean;
            var += c * c;
        }
        var /= (double)g->inner;
        double inv = 1.0 / sqrt(var + (double)g->eps);
        for (int64_t j = 0; j < g->inner; j++) {
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

/* idx[j] for j in a row of X.shape[axis:]: the element of p it reads (p broadcast). */
static void pippy_ln_index(const pippy_tdesc *x, int axis, const pippy_tdesc *p, int64_t *idx, int64_t inner)
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

static void pippy_ln_finish(pippy_dnnl_kernel *k, const void *const *in, void *const *out)
{
    (void)in;
    float *v = out[2];
    for (int64_t i = 0; i < k->n0; i++)
        v[i] = 1.0f / sqrtf(v[i] + k->f0);
}

/* Scale or B (input i) as an [inner] memory: bound, or a constant expanded at create. */
static pippy_status pippy_ln_param(pippy_dnnl_kernel *k, const pippy_op_desc *d, const pippy_ln_geom *g, int i,
                                   const dnnl_memory_desc_t *md, dnnl_memory_t *m)
{
    if (pippy_tdesc_numel(&d->in[i]) == g->inner)
        return pippy_dnnl_input(k, d, i, md, md, 1.0f, m);
    if (!d->in_const[i])
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "LayerNormalization: a broadcast %s given at run time",
                          i == 1 ? "Scale" : "B");
    int64_t *idx = malloc((size_t)g->inner * sizeof *idx);
    if (!idx)
        return pippy_fail(PIPPY_ERR_NOMEM, "LayerNormalization: out of memory");
    pippy_ln_index(&d->in[0], g->axis, &d->in[i], idx, g->inner);
    void *buf;
    pippy_status st = pippy_dnnl_memory_alloc(k, md, m, &buf);
    if (st == PIPPY_OK) {
        const float *p = d->in_const[i];
        for (int64_t j = 0; j < g->inner; j++)
            ((float *)buf)[j] = p[idx[j]];
    }
    free(idx);
    return st;
}

static pippy_status pippy_ln_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const pippy_ln_geom *g = &((const pippy_ln_ref *)ref)->g;
    int64_t xd[2] = {g->outer, g->inner};
    dnnl_memory_desc_t xmd, pmd, smd;
    PIPPY_TRY(pippy_dnnl_md_plain(&xmd, 2, xd));
    PIPPY_TRY(pippy_dnnl_md_plain(&pmd, 1, &g->inner));
    PIPPY_TRY(pippy_dnnl_md_plain(&smd, 1, &g->outer));
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
    PIPPY_TRY(pippy_ln_param(k, d, g, 1, &pmd, &sm));
    if (g->has_b)
        PIPPY_TRY(pippy_ln_param(k, d, g, 2, &pmd, &bm));
    if (stats) {
        /* Mean into out[1]; variance into out[2] (then turned into 1/stddev) or a scratch buffer */
        PIPPY_TRY(pippy_dnnl_memory_out(k, &smd, 1, &mm));
        if (g->n_out > 2) {
            PIPPY_TRY(pippy_dnnl_memory_out(k, &smd, 2, &vm));
            k->finish = pippy_ln_finish;
            k->n0 = g->outer;
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
    /* The fast kernel is not tried for an empty X; it answers unsupported for a broadcast
     * Scale/B given at run time. */
    pippy_ln_ref r = {.base.run = pippy_ln_ref_run, .base.destroy = pippy_ln_ref_destroy, .dt = d->in[0].dtype};
    PIPPY_TRY(pippy_ln_geom_get(d, &r.g));
    r.stat_dt = d->n_out > 1 ? d->out[1].dtype : PIPPY_DT_FLOAT;
    PIPPY_TRY(pippy_dense_create(d, r.dt == PIPPY_DT_FLOAT && r.g.outer > 0 && r.g.inner > 0, pippy_ln_fast, &r.base,
                                 sizeof r, out));
    if ((*out)->run != pippy_ln_ref_run)
        return PIPPY_OK; /* the oneDNN kernel */
    /* the reference kernel: index tables for Scale and B */
    pippy_ln_ref *k = (pippy_ln_ref *)*out;
    size_t n = (size_t)(k->g.inner > 0 ? k->g.inner : 1);
    k->sidx = malloc(n * sizeof *k->sidx);
    k->bidx = malloc(n * sizeof *k->bidx);
    if (!k->sidx || !k->bidx) {
        pippy_ln_ref_destroy(&k->base);
        *out = NULL;
        return pippy_fail(PIPPY_ERR_NOMEM, "LayerNormalization: out of memory");
    }
    pippy_ln_index(&d->in[0], k->g.axis, &d->in[1], k->sidx, k->g.inner);
    if (k->g.has_b)
        pippy_ln_index(&d->in[0], k->g.axis, &d->in[2], k->bidx, k->g.inner);
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_norm[] = {
    {"BatchNormalization", "", pippy_bn_infer, pippy_bn_flops, pippy_bn_create},
    {"LayerNormalization", "", pippy_ln_infer, pippy_ln_flops, pippy_ln_create},
    {0},
};
