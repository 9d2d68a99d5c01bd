/* ops_rows.c — the cuda kernels of the ops that fold or normalise along axes: Reduce* and the
 * pools (reduce.cu), Softmax / LogSoftmax and LayerNormalization (rows.cu). Shapes and
 * attributes are read by the CPU families' own functions (cpu/light.h, cpu/geom.h).
 * Reduce* takes float, double, the integer types and (Max, Min) bool; the rest float. */
#include <stdlib.h>
#include <string.h>

#include "cpu/geom.h"
#include "cpu/light.h"
#include "cpu/walk.h"
#include "cubackend.h"

pippy_status pippy_cuda_want_float(const pippy_op_desc *d, const int *list, int n)
{
    for (int j = 0; j < n; j++) {
        int i = list[j];
        if (i < d->n_in && d->in[i].dtype != PIPPY_DT_UNDEFINED && d->in[i].dtype != PIPPY_DT_FLOAT)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: input %d is %s, the cuda kernel takes float", d->op, i,
                              pippy_dtype_name(d->in[i].dtype));
    }
    return PIPPY_OK;
}

/* ---- Reduce* ---- */

static const struct {
    const char *op;
    int32_t kind;
} pippy_cu_reduce_ops[] = {
    {"ReduceSum", PIPPY_CU_RSUM}, {"ReduceMean", PIPPY_CU_RMEAN}, {"ReduceMax", PIPPY_CU_RMAX},
    {"ReduceMin", PIPPY_CU_RMIN}, {"ReduceProd", PIPPY_CU_RPROD},
};

/* The kernel's parameters; *noop = 1 for a plain copy. */
static pippy_status pippy_cu_reduce_params(const pippy_op_desc *d, pippy_cu_reduce *p, int *noop)
{
    int i = 0, n = (int)(sizeof pippy_cu_reduce_ops / sizeof pippy_cu_reduce_ops[0]);
    while (i < n && strcmp(pippy_cu_reduce_ops[i].op, d->op))
        i++;
    if (i == n)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: %s is not a reduction", __FILE__, __LINE__, d->op);
    const pippy_tdesc *x = &d->in[0];
    int32_t dt = x->dtype, kind = pippy_cu_reduce_ops[i].kind;
    int ok = dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE || dt == PIPPY_DT_INT8 || dt == PIPPY_DT_UINT8 ||
             dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64 ||
             (dt == PIPPY_DT_BOOL && (kind == PIPPY_CU_RMAX || kind == PIPPY_CU_RMIN));
    if (!ok)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s on %s has no cuda kernel", d->op, pippy_dtype_name(dt));
    int red[PIPPY_MAX_RANK];
    PIPPY_TRY(pippy_reduce_axes_of(d, red, noop));
    memset(p, 0, sizeof *p);
    p->op = kind;
    p->dtype = dt;
    p->count = 1;
    int64_t str[PIPPY_MAX_RANK], s = 1;
    for (int a = x->rank - 1; a >= 0; a--) {
        str[a] = s;
        s *= x->dims[a];
    }
    for (int a = 0; a < x->rank; a++) {
        if (red[a]) {
            p->rdims[p->rrank] = x->dims[a];
            p->rstr[p->rrank++] = str[a];
            p->count *= x->dims[a];
        } else {
            p->kdims[p->krank] = x->dims[a];
            p->kstr[p->krank++] = str[a];
        }
    }
    p->n_out = pippy_tdesc_numel(&d->out[0]);
    p->krank = pippy_walk_collapse(p->krank, p->kdims, 1, (int64_t *[1]){p->kstr}, 0);
    p->rrank = pippy_walk_collapse(p->rrank, p->rdims, 1, (int64_t *[1]){p->rstr}, 0);
    return PIPPY_OK;
}

pippy_status pippy_cuda_check_reduce(const pippy_op_desc *d)
{
    pippy_cu_reduce p;
    int noop;
    return pippy_cu_reduce_params(d, &p, &noop);
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_reduce p;
    pippy_cu_copy copy; /* noop_with_empty_axes: a plain copy */
    int noop;
} pippy_cu_reduce_kernel;

static void pippy_cu_reduce_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_reduce_kernel *k = (pippy_cu_reduce_kernel *)kb;
    if (k->noop)
        pippy_cu_copy_run(&k->copy, in[0], out[0], &k->k.ctx->exec);
    else
        pippy_cu_reduce_run(&k->p, in[0], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_reduce(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_cu_reduce_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_reduce_k, (pippy_cuda_kernel **)&k));
    pippy_status st = pippy_cu_reduce_params(d, &k->p, &k->noop);
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    int64_t n = pippy_tdesc_numel(&d->in[0]);
    k->copy = (pippy_cu_copy){.rank = 1, .esize = (int32_t)pippy_dtype_size(d->in[0].dtype), .n = n,
                              .dims = {n}, .istr = {1}, .ostr = {1}};
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- pools ---- */

static pippy_status pippy_cu_pool_params(const pippy_op_desc *d, pippy_cu_pool *p)
{
    int kind = !strcmp(d->op, "MaxPool") ? PIPPY_POOL_MAX : !strcmp(d->op, "AveragePool") ? PIPPY_POOL_AVG
                                                                                           : PIPPY_POOL_GAVG;
    static const int x0[1] = {0};
    PIPPY_TRY(pippy_cuda_want_float(d, x0, 1));
    pippy_pool_geom g;
    PIPPY_TRY(pippy_pool_geom_of(d, kind, &d->in[0], &g));
    pippy_window w;
    pippy_window_3d(&g.w, &w);
    memset(p, 0, sizeof *p);
    p->max = kind == PIPPY_POOL_MAX;
    p->include_pad = g.include_pad;
    p->nc = g.N * g.C;
    p->n = pippy_tdesc_numel(&d->out[0]);
    for (int i = 0; i < 3; i++) {
        p->in[i] = w.in[i];
        p->k[i] = w.k[i];
        p->s[i] = w.s[i];
        p->dl[i] = w.dl[i];
        p->pl[i] = w.pl[i];
        p->pr[i] = w.pr[i];
        p->out[i] = w.out[i];
    }
    return PIPPY_OK;
}

pippy_status pippy_cuda_check_pool(const pippy_op_desc *d)
{
    pippy_cu_pool p;
    return pippy_cu_pool_params(d, &p);
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_pool p;
} pippy_cu_pool_kernel;

static void pippy_cu_pool_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_pool_kernel *k = (pippy_cu_pool_kernel *)kb;
    pippy_cu_pool_run(&k->p, in[0], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_pool(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_cu_pool p;
    PIPPY_TRY(pippy_cu_pool_params(d, &p));
    pippy_cu_pool_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_pool_k, (pippy_cuda_kernel **)&k));
    k->p = p;
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Softmax, LogSoftmax ---- */

static const int pippy_cu_x0[1] = {0};

pippy_status pippy_cuda_check_softmax(const pippy_op_desc *d) { return pippy_cuda_want_float(d, pippy_cu_x0, 1); }

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_softmax p;
} pippy_cu_softmax_kernel;

static void pippy_cu_softmax_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_softmax_kernel *k = (pippy_cu_softmax_kernel *)kb;
    pippy_cu_softmax_run(&k->p, in[0], out[0], k->k.ctx->exec.stream);
}

pippy_status pippy_cuda_create_softmax(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_softmax(d));
    PIPPY_TRY(pippy_cuda_need_device(pippy_cuda_ctx_of(b), d, "warp rows"));
    pippy_sm_dims g;
    PIPPY_TRY(pippy_sm_dims_of(d, &d->in[0], &g));
    pippy_cu_softmax_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_softmax_k, (pippy_cuda_kernel **)&k));
    k->p = (pippy_cu_softmax){.log = !strcmp(d->op, "LogSoftmax"), .outer = g.outer, .len = g.n, .inner = g.inner};
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- LayerNormalization ---- */

static const int pippy_cu_ln_inputs[3] = {0, 1, 2};

pippy_status pippy_cuda_check_layernorm(const pippy_op_desc *d) { return pippy_cuda_want_float(d, pippy_cu_ln_inputs, 3); }

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_layernorm p;
    int has_b, n_out;
    int64_t *sidx, *bidx; /* device index tables of a broadcast Scale / B, else NULL */
} pippy_cu_ln_kernel;

static void pippy_cu_ln_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_ln_kernel *k = (pippy_cu_ln_kernel *)kb;
    pippy_cu_layernorm_run(&k->p, in[0], in[1], k->sidx, k->has_b ? in[2] : NULL, k->bidx, out[0],
                           k->n_out > 1 ? out[1] : NULL, k->n_out > 2 ? out[2] : NULL, k->k.ctx->exec.stream);
}

/* The index table of parameter i when it broadcasts (fewer elements than a row), else NULL. */
static pippy_status pippy_cu_ln_table(pippy_cu_ln_kernel *k, const pippy_op_desc *d, int axis, int i, int64_t **t)
{
    *t = NULL;
    int64_t inner = k->p.len;
    if (pippy_tdesc_numel(&d->in[i]) == inner)
        return PIPPY_OK;
    int64_t *idx = malloc((size_t)inner * sizeof *idx);
    if (!idx)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    pippy_ln_index(&d->in[0], axis, &d->in[i], idx, inner);
    pippy_status st = pippy_cuda_kernel_buffer(&k->k, (size_t)inner * sizeof *idx, idx, (void **)t);
    free(idx);
    return st;
}

pippy_status pippy_cuda_create_layernorm(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_layernorm(d));
    PIPPY_TRY(pippy_cuda_need_device(pippy_cuda_ctx_of(b), d, "warp rows"));
    pippy_ln_rows r;
    PIPPY_TRY(pippy_ln_rows_of(d, &d->in[0], &r));
    pippy_cu_ln_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_ln_k, (pippy_cuda_kernel **)&k));
    k->p = (pippy_cu_layernorm){.eps = pippy_attr_float(d, "epsilon", 1e-5f), .rows = r.outer, .len = r.inner};
    k->has_b = d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED;
    k->n_out = d->n_out;
    pippy_status st = pippy_cu_ln_table(k, d, r.axis, 1, &k->sidx);
    if (st == PIPPY_OK && k->has_b)
        st = pippy_cu_ln_table(k, d, r.axis, 2, &k->bidx);
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    *out = &k->k.base;
    return PIPPY_OK;
}
