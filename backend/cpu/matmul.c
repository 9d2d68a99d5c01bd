/* matmul.c — MatMul (numpy semantics) and Gemm on the CPU.
 *
 * Fast kernels use the oneDNN matmul primitive:
 *   - MatMul whose B has no batch (or only batch dims of 1) runs as one 2-D matmul
 *     with M = (A's batch) * M, e.g. [B,T,C] x [C,N];
 *   - otherwise a batched matmul with oneDNN's broadcast of batch dims of 1
 *     (both sides), e.g. [B,H,T,D] x [B,H,D,T] or [3,1,3,4] x [1,2,4,2].
 *   - Gemm: A and B (transposed or not) are described by strides; alpha is folded
 *     into a constant B, else applied as the output scale; beta*C is a binary-add
 *     post-op (C constant: scaled and broadcast once at create; C at run time:
 *     output scale alpha/beta, add C, linear(beta)). A C of shape [M,1] given at
 *     run time works but oneDNN 2.6 runs that broadcast in its slow reference matmul.
 *   - a constant B is copied once, at create, either as given or reordered into the
 *     layout the primitive prefers (format any), whichever ran faster here (layout.h;
 *     PIPPY_MATMUL_LAYOUT forces one); the run-time pointer for it is ignored.
 *   - "pippy.activation" = "Relu" becomes an eltwise ReLU post-op.
 *   - MatMul's "pippy.trans_a" / "pippy.trans_b" (the autodiff's A^T, B^T) describe the
 *     operand by strides (its last two dims swapped, no copy); a transposed A with a real
 *     batch runs batched. "pippy.accumulate" (out += A*B) is a sum post-op.
 * Shapes with a zero dim, or that oneDNN has no implementation for, use the
 * reference kernel. Reference kernels: plain loops, double accumulators.
 *
 * Folding (desc->reference = 1) also takes double, int32 and int64 operands, as the spec
 * allows (both of one dtype, the output of that dtype): the "wide" references accumulate
 * doubles in double and integers in int64, wrapping like the integer ops of binary.c. */
#include <stdlib.h>
#include <string.h>

#include "geom.h"
#include "layout.h"

/* ---------------------------------------------------------------- MatMul */


/* A and B of one dtype (float, or what folding takes); pippy.bias only on float. */
static pippy_status pippy_mm_same_dtype(const pippy_op_desc *d)
{
    if (d->in[1].dtype != d->in[0].dtype)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: A is %s but B is %s (they must be of one dtype)", d->op,
                          pippy_dtype_name(d->in[0].dtype), pippy_dtype_name(d->in[1].dtype));
    return PIPPY_OK;
}

pippy_status pippy_matmul_geom_of(const pippy_op_desc *d, pippy_mm_geom *g)
{
    int bias = pippy_attr_int(d, "pippy.bias", 0) != 0;
    if (d->n_in != 2 + bias)
        return pippy_fail(PIPPY_ERR_INVALID, "MatMul: expected %d inputs, found %d", 2 + bias, d->n_in);
    PIPPY_TRY(pippy_dense_want_real(d, 0, "A", PIPPY_DENSE_FOLD_DOUBLE | PIPPY_DENSE_FOLD_INT));
    PIPPY_TRY(pippy_dense_want_real(d, 1, "B", PIPPY_DENSE_FOLD_DOUBLE | PIPPY_DENSE_FOLD_INT));
    PIPPY_TRY(pippy_mm_same_dtype(d));
    const pippy_tdesc *a = &d->in[0], *b = &d->in[1];
    char sa[160], sb[160];
    if (a->rank < 1 || b->rank < 1)
        return pippy_fail(PIPPY_ERR_SHAPE, "MatMul: operands must have rank >= 1: A is %s, B is %s",
                          pippy_tdesc_str(a, sa, sizeof sa), pippy_tdesc_str(b, sb, sizeof sb));
    memset(g, 0, sizeof *g);
    PIPPY_TRY(pippy_dense_flag(d, "pippy.trans_a", &g->ta));
    PIPPY_TRY(pippy_dense_flag(d, "pippy.trans_b", &g->tb));
    PIPPY_TRY(pippy_dense_flag(d, "pippy.accumulate", &g->acc));
    g->a1 = a->rank == 1;
    g->b1 = b->rank == 1;
    if ((g->ta && g->a1) || (g->tb && g->b1))
        return pippy_fail(PIPPY_ERR_INVALID, "MatMul: pippy.trans_%s on a 1-D operand (%s), expected rank >= 2",
                          g->ta && g->a1 ? "a" : "b",
                          g->ta && g->a1 ? pippy_tdesc_str(a, sa, sizeof sa) : pippy_tdesc_str(b, sb, sizeof sb));
    /* the last two dims of A as [M, K] (trans_a: stored [K, M]), of B as [K, N] (trans_b: [N, K]) */
    int64_t a_r = g->a1 ? 1 : a->dims[a->rank - 2], a_c = a->dims[a->rank - 1];
    int64_t b_r = g->b1 ? b->dims[0] : b->dims[b->rank - 2], b_c = g->b1 ? 1 : b->dims[b->rank - 1];
    g->M = g->ta ? a_c : a_r;
    g->K = g->ta ? a_r : a_c;
    int64_t kb = g->tb ? b_c : b_r;
    g->N = g->tb ? b_r : b_c;
    g->bias = bias;
    if (bias) {
        PIPPY_TRY(pippy_dense_want_float(d, 2, "bias"));
        if (g->b1 || d->in[2].rank != 1 || d->in[2].dims[0] != g->N)
            return pippy_fail(PIPPY_ERR_SHAPE, "MatMul with pippy.bias: expected a bias of float[%lld], found %s",
                              (long long)g->N, pippy_tdesc_str(&d->in[2], sa, sizeof sa));
    }
    if (g->K != kb)
        return pippy_fail(PIPPY_ERR_SHAPE, "MatMul: inner dims differ: A is %s%s, B is %s%s (%lld vs %lld)",
                          pippy_tdesc_str(a, sa, sizeof sa), g->ta ? " (pippy.trans_a)" : "",
                          pippy_tdesc_str(b, sb, sizeof sb), g->tb ? " (pippy.trans_b)" : "", (long long)g->K,
                          (long long)kb);
    int ra = g->a1 ? 0 : a->rank - 2, rb = g->b1 ? 0 : b->rank - 2;
    g->nb = ra > rb ? ra : rb;
    for (int i = 0; i < g->nb; i++) {
        int ia = i - (g->nb - ra), ib = i - (g->nb - rb);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return pippy_fail(PIPPY_ERR_SHAPE,
                              "MatMul: batch dims do not broadcast: A is %s, B is %s (batch dim %d: %lld vs %lld)",
                              pippy_tdesc_str(a, sa, sizeof sa), pippy_tdesc_str(b, sb, sizeof sb), i,
                              (long long)da, (long long)db);
        g->ab[i] = da;
        g->bb[i] = db;
        g->ob[i] = da == 1 ? db : da;
    }
    return PIPPY_OK;
}

static pippy_status pippy_matmul_infer(pippy_op_desc *d)
{
    pippy_mm_geom g;
    int relu;
    PIPPY_TRY(pippy_matmul_geom_of(d, &g));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    if (relu && g.acc)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "MatMul: pippy.accumulate with a fused activation");
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "MatMul: expected 1 output, found %d", d->n_out);
    pippy_tdesc *o = &d->out[0];
    memset(o, 0, sizeof *o);
    o->dtype = d->in[0].dtype;
    for (int i = 0; i < g.nb; i++)
        o->dims[o->rank++] = g.ob[i];
    if (!g.a1)
        o->dims[o->rank++] = g.M;
    if (!g.b1)
        o->dims[o->rank++] = g.N;
    return PIPPY_OK;
}

static int64_t pippy_prod(const int64_t *v, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= v[i];
    return p;
}

static double pippy_matmul_flops(const pippy_op_desc *d)
{
    pippy_mm_geom g;
    if (pippy_matmul_geom_of(d, &g) != PIPPY_OK)
        return 0;
    return (2.0 * (double)g.K + g.bias) * (double)pippy_prod(g.ob, g.nb) * (double)g.M * (double)g.N;
}

typedef struct {
    pippy_kernel base;
    pippy_mm_geom g;
    int relu;
    int32_t dtype;
} pippy_mm_ref;

/* One output element of the wide reference: sum over k of a[k*as] * b[k*bs], in double for
 * floating dtypes and in wrapping int64 for integers, stored at y[yi]. */
static void pippy_mm_wide_dot(int32_t dt, const void *a, int64_t ai, int64_t as, const void *b, int64_t bi,
                              int64_t bs, int64_t K, double alpha, void *y, int64_t yi)
{
    if (dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE) {
        double s = 0;
        for (int64_t kk = 0; kk < K; kk++)
            s += pippy_dense_load(dt, a, ai + kk * as) * pippy_dense_load(dt, b, bi + kk * bs);
        pippy_dense_store(dt, y, yi, s * alpha);
        return;
    }
    uint64_t s = 0;
    for (int64_t kk = 0; kk < K; kk++)
        s += (uint64_t)pippy_dense_load_int(dt, a, ai + kk * as) * (uint64_t)pippy_dense_load_int(dt, b, bi + kk * bs);
    pippy_dense_store_int(dt, y, yi, (int64_t)(s * (uint64_t)(int64_t)alpha));
}

/* The element offsets in A and B of output batch idx (a dim of 1 broadcasts). */
static void pippy_mm_batch_offsets(const pippy_mm_geom *g, const int64_t *idx, int64_t *ao, int64_t *bo)
{
    *ao = *bo = 0;
    for (int i = 0; i < g->nb; i++) {
        *ao = *ao * g->ab[i] + (g->ab[i] == 1 ? 0 : idx[i]);
        *bo = *bo * g->bb[i] + (g->bb[i] == 1 ? 0 : idx[i]);
    }
    *ao *= g->M * g->K;
    *bo *= g->K * g->N;
}

/* The next output batch index (row-major odometer over g->ob). */
static void pippy_mm_batch_next(const pippy_mm_geom *g, int64_t *idx)
{
    for (int i = g->nb - 1; i >= 0; i--) {
        if (++idx[i] < g->ob[i])
            break;
        idx[i] = 0;
    }
}

/* MatMul on double or integer operands (folding only). */
static void pippy_matmul_wide_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_mm_ref *k = (const pippy_mm_ref *)kb;
    const pippy_mm_geom *g = &k->g;
    int64_t M = g->M, K = g->K, N = g->N, nbatch = pippy_prod(g->ob, g->nb);
    int64_t idx[PIPPY_MAX_RANK] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao, bo;
        pippy_mm_batch_offsets(g, idx, &ao, &bo);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                pippy_mm_wide_dot(k->dtype, in[0], ao + m * K, 1, in[1], bo + n, N, K, 1.0, out[0],
                                  t * M * N + m * N + n);
        pippy_mm_batch_next(g, idx);
    }
}

static void pippy_matmul_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_mm_ref *k = (const pippy_mm_ref *)kb;
    const pippy_mm_geom *g = &k->g;
    const float *A = in[0], *B = in[1], *bias = g->bias ? in[2] : NULL;
    float *Y = out[0];
    int64_t M = g->M, K = g->K, N = g->N;
    int64_t nbatch = pippy_prod(g->ob, g->nb);
    int64_t idx[PIPPY_MAX_RANK] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao, bo;
        pippy_mm_batch_offsets(g, idx, &ao, &bo);
        const float *a = A + ao, *b = B + bo;
        float *y = Y + t * M * N;
        /* element (m, kk) of A and (kk, n) of B, as stored */
        int64_t am = g->ta ? 1 : K, ak = g->ta ? M : 1, bk = g->tb ? 1 : N, bn = g->tb ? K : 1;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t kk = 0; kk < K; kk++)
                    s += (double)a[m * am + kk * ak] * (double)b[kk * bk + n * bn];
                float v = (float)s + (bias ? bias[n] : 0.0f);
                if (g->acc)
                    y[m * N + n] += v;
                else
                    y[m * N + n] = k->relu && v < 0 ? 0.0f : v;
            }
        pippy_mm_batch_next(g, idx);
    }
}

/* Plain descriptor of an operand seen as dims[0..nd) whose last two dims are stored swapped
 * when trans (a transposed view, no copy). */
static pippy_status pippy_mm_md(dnnl_memory_desc_t *md, int nd, const int64_t *dims, int trans)
{
    dnnl_dims_t dd, st;
    for (int i = 0; i < nd; i++)
        dd[i] = dims[i];
    st[nd - 1] = trans ? dims[nd - 2] : 1;
    st[nd - 2] = trans ? 1 : dims[nd - 1];
    int64_t s = dims[nd - 1] * dims[nd - 2];
    for (int i = nd - 3; i >= 0; i--) {
        st[i] = s;
        s *= dims[i];
    }
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, nd, dd, dnnl_f32, st));
    return PIPPY_OK;
}

static pippy_status pippy_matmul_build(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                      int plain)
{
    const pippy_mm_ref *r = (const pippy_mm_ref *)ref;
    const pippy_mm_geom *g = &r->g;
    int64_t sd[DNNL_MAX_NDIMS], wd[DNNL_MAX_NDIMS], dd[DNNL_MAX_NDIMS];
    int nd;
    if (pippy_prod(g->bb, g->nb) == 1 && (!g->ta || pippy_prod(g->ab, g->nb) == 1)) {
        /* B has no real batch: the output is A's rows times B, one 2-D matmul (A's rows are
         * contiguous unless A is transposed, then it has no real batch either). */
        int64_t rows = pippy_prod(g->ab, g->nb) * g->M;
        nd = 2;
        sd[0] = rows, sd[1] = g->K;
        wd[0] = g->K, wd[1] = g->N;
        dd[0] = rows, dd[1] = g->N;
    } else {
        nd = g->nb + 2;
        for (int i = 0; i < g->nb; i++)
            sd[i] = g->ab[i], wd[i] = g->bb[i], dd[i] = g->ob[i];
        sd[nd - 2] = g->M, sd[nd - 1] = g->K;
        wd[nd - 2] = g->K, wd[nd - 1] = g->N;
        dd[nd - 2] = g->M, dd[nd - 1] = g->N;
    }
    dnnl_memory_desc_t smd, wmd_user, wmd, dmd;
    PIPPY_TRY(pippy_mm_md(&smd, nd, sd, g->ta));
    PIPPY_TRY(pippy_mm_md(&wmd_user, nd, wd, g->tb));
    PIPPY_TRY(pippy_dnnl_md_plain(&dmd, nd, dd));
    if (d->in_const[1] && !plain)
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, nd, wmd_user.dims, dnnl_f32, dnnl_format_tag_any));
    else
        wmd = wmd_user;

    /* the bias, when fused: [1, ..., 1, N] against the output */
    dnnl_memory_desc_t bmd;
    int64_t bd[DNNL_MAX_NDIMS];
    for (int i = 0; i < nd; i++)
        bd[i] = i == nd - 1 ? g->N : 1;
    if (g->bias)
        PIPPY_TRY(pippy_dnnl_md_plain(&bmd, nd, bd));

    dnnl_matmul_desc_t md;
    PIPPY_DNNL_CHECK(dnnl_matmul_desc_init(&md, &smd, &wmd, g->bias ? &bmd : NULL, &dmd));
    dnnl_primitive_desc_t pd;
    if (g->acc)
        PIPPY_TRY(pippy_dnnl_pd_acc(k, d, &md, 1, &pd));
    else
        PIPPY_TRY(pippy_dnnl_pd(k, d, &md, r->relu, &pd));
    dnnl_memory_t sm, wm, dm, bm = NULL;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &smd, 0, &sm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &dmd, 0, &dm));
    PIPPY_TRY(pippy_dnnl_input(k, d, 1, &wmd_user, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), 1.0f,
                               &wm));
    if (g->bias)
        PIPPY_TRY(pippy_dnnl_input(k, d, 2, &bmd, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1), 1.0f,
                                   &bm));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}, {DNNL_ARG_BIAS, bm}};
    return pippy_dnnl_add_step(k, pd, args, g->bias ? 4 : 3);
}

static pippy_status pippy_matmul_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    return pippy_layout_choose(d, ref, k, 1, pippy_matmul_build);
}

static int pippy_any_empty(const pippy_op_desc *d)
{
    for (int i = 0; i < d->n_in; i++)
        if (d->in[i].dtype != PIPPY_DT_UNDEFINED && pippy_tdesc_numel(&d->in[i]) == 0)
            return 1;
    for (int i = 0; i < d->n_out; i++)
        if (pippy_tdesc_numel(&d->out[i]) == 0)
            return 1;
    return 0;
}

static pippy_status pippy_matmul_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_mm_ref r = {.base.run = pippy_matmul_ref_run, .dtype = d->in[0].dtype};
    PIPPY_TRY(pippy_matmul_geom_of(d, &r.g));
    PIPPY_TRY(pippy_dense_activation(d, &r.relu));
    int wide = r.dtype != PIPPY_DT_FLOAT;
    if (wide && (r.g.bias || r.relu))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "MatMul: pippy.bias and pippy.activation take float only");
    if (wide)
        r.base.run = pippy_matmul_wide_run;
    return pippy_dense_create(d, !wide && !pippy_any_empty(d), pippy_matmul_fast, &r.base, sizeof r, out);
}

/* ---------------------------------------------------------------- Gemm */


pippy_status pippy_gemm_geom_of(const pippy_op_desc *d, pippy_gemm_geom *g)
{
    if (d->n_in < 2 || d->n_in > 3)
        return pippy_fail(PIPPY_ERR_INVALID, "Gemm: expected 2 or 3 inputs, found %d", d->n_in);
    PIPPY_TRY(pippy_dense_want_real(d, 0, "A", PIPPY_DENSE_FOLD_DOUBLE | PIPPY_DENSE_FOLD_INT));
    PIPPY_TRY(pippy_dense_want_real(d, 1, "B", PIPPY_DENSE_FOLD_DOUBLE | PIPPY_DENSE_FOLD_INT));
    PIPPY_TRY(pippy_mm_same_dtype(d));
    const pippy_tdesc *a = &d->in[0], *b = &d->in[1];
    char sa[160], sb[160], sc[160];
    if (a->rank != 2 || b->rank != 2)
        return pippy_fail(PIPPY_ERR_SHAPE, "Gemm: A and B must be 2-D: A is %s, B is %s",
                          pippy_tdesc_str(a, sa, sizeof sa), pippy_tdesc_str(b, sb, sizeof sb));
    memset(g, 0, sizeof *g);
    g->ta = pippy_attr_int(d, "transA", 0) != 0;
    g->tb = pippy_attr_int(d, "transB", 0) != 0;
    g->alpha = pippy_attr_float(d, "alpha", 1.0f);
    g->beta = pippy_attr_float(d, "beta", 1.0f);
    g->M = g->ta ? a->dims[1] : a->dims[0];
    g->K = g->ta ? a->dims[0] : a->dims[1];
    int64_t kb = g->tb ? b->dims[1] : b->dims[0];
    g->N = g->tb ? b->dims[0] : b->dims[1];
    if (g->K != kb)
        return pippy_fail(PIPPY_ERR_SHAPE, "Gemm: inner dims differ: A is %s%s, B is %s%s (%lld vs %lld)",
                          pippy_tdesc_str(a, sa, sizeof sa), g->ta ? " (transA)" : "",
                          pippy_tdesc_str(b, sb, sizeof sb), g->tb ? " (transB)" : "", (long long)g->K,
                          (long long)kb);
    g->has_c = pippy_dense_has_input(d, 2);
    if (g->has_c) {
        PIPPY_TRY(pippy_dense_want_real(d, 2, "C", PIPPY_DENSE_FOLD_DOUBLE | PIPPY_DENSE_FOLD_INT));
        if (d->in[2].dtype != d->in[0].dtype)
            return pippy_fail(PIPPY_ERR_INVALID, "Gemm: C is %s but A is %s (they must be of one dtype)",
                              pippy_dtype_name(d->in[2].dtype), pippy_dtype_name(d->in[0].dtype));
        const pippy_tdesc *c = &d->in[2];
        g->cr = c->rank == 2 ? c->dims[0] : 1;
        g->cc = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if (c->rank > 2 || (g->cr != 1 && g->cr != g->M) || (g->cc != 1 && g->cc != g->N))
            return pippy_fail(PIPPY_ERR_SHAPE, "Gemm: C is %s, which does not broadcast to the output [%lld,%lld]",
                              pippy_tdesc_str(c, sc, sizeof sc), (long long)g->M, (long long)g->N);
    }
    return PIPPY_OK;
}

static pippy_status pippy_gemm_infer(pippy_op_desc *d)
{
    pippy_gemm_geom g;
    int relu;
    PIPPY_TRY(pippy_gemm_geom_of(d, &g));
    PIPPY_TRY(pippy_dense_activation(d, &relu));
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "Gemm: expected 1 output, found %d", d->n_out);
    memset(&d->out[0], 0, sizeof d->out[0]);
    d->out[0].dtype = d->in[0].dtype;
    d->out[0].rank = 2;
    d->out[0].dims[0] = g.M;
    d->out[0].dims[1] = g.N;
    return PIPPY_OK;
}

static double pippy_gemm_flops(const pippy_op_desc *d)
{
    pippy_gemm_geom g;
    if (pippy_gemm_geom_of(d, &g) != PIPPY_OK)
        return 0;
    return 2.0 * (double)g.M * (double)g.N * (double)g.K + (g.has_c ? 2.0 * (double)g.M * (double)g.N : 0);
}

typedef struct {
    pippy_kernel base;
    pippy_gemm_geom g;
    int relu;
    int32_t dtype;
} pippy_gemm_ref;

/* Gemm on double or integer operands (folding only): alpha * A'B' + beta * C, where an
 * integer Gemm takes alpha and beta as integers (the spec's float attributes, truncated). */
static void pippy_gemm_wide_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_gemm_ref *k = (const pippy_gemm_ref *)kb;
    const pippy_gemm_geom *g = &k->g;
    int64_t M = g->M, K = g->K, N = g->N;
    int integer = k->dtype != PIPPY_DT_DOUBLE;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t yi = m * N + n;
            pippy_mm_wide_dot(k->dtype, in[0], g->ta ? m : m * K, g->ta ? M : 1, in[1], g->tb ? n * K : n,
                              g->tb ? 1 : N, K, g->alpha, out[0], yi);
            if (!g->has_c)
                continue;
            int64_t ci = (g->cr == 1 ? 0 : m) * g->cc + (g->cc == 1 ? 0 : n);
            if (integer)
                pippy_dense_store_int(k->dtype, out[0], yi,
                                      (int64_t)((uint64_t)pippy_dense_load_int(k->dtype, out[0], yi) +
                                                (uint64_t)(int64_t)g->beta *
                                                    (uint64_t)pippy_dense_load_int(k->dtype, in[2], ci)));
            else
                pippy_dense_store(k->dtype, out[0], yi,
                                  pippy_dense_load(k->dtype, out[0], yi) +
                                      (double)g->beta * pippy_dense_load(k->dtype, in[2], ci));
        }
}

static void pippy_gemm_ref_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const pippy_gemm_ref *k = (const pippy_gemm_ref *)kb;
    const pippy_gemm_geom *g = &k->g;
    const float *A = in[0], *B = in[1], *C = g->has_c ? in[2] : NULL;
    float *Y = out[0];
    int64_t M = g->M, K = g->K, N = g->N;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t kk = 0; kk < K; kk++) {
                float a = g->ta ? A[kk * M + m] : A[m * K + kk];
                float b = g->tb ? B[n * K + kk] : B[kk * N + n];
                s += (double)a * (double)b;
            }
            s *= g->alpha;
            if (C)
                s += (double)g->beta * C[(g->cr == 1 ? 0 : m) * g->cc + (g->cc == 1 ? 0 : n)];
            float v = (float)s;
            Y[m * N + n] = k->relu && v < 0 ? 0.0f : v;
        }
}

static pippy_status pippy_gemm_build(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k, int plain)
{
    const pippy_gemm_ref *r = (const pippy_gemm_ref *)ref;
    const pippy_gemm_geom *g = &r->g;
    dnnl_dims_t sdims = {g->M, g->K}, wdims = {g->K, g->N}, ddims = {g->M, g->N};
    dnnl_dims_t sstr = {g->ta ? 1 : g->K, g->ta ? g->M : 1};
    dnnl_dims_t wstr = {g->tb ? 1 : g->N, g->tb ? g->K : 1};
    dnnl_memory_desc_t smd, wmd_user, wmd, dmd, cmd;
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_strides(&smd, 2, sdims, dnnl_f32, sstr));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_strides(&wmd_user, 2, wdims, dnnl_f32, wstr));
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 2, ddims, dnnl_f32, dnnl_ab));
    const void *wconst = d->in_const[1];
    if (wconst && !plain)
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wdims, dnnl_f32, dnnl_format_tag_any));
    else
        wmd = wmd_user;

    /* What the post-ops must do. */
    int use_c = g->has_c && g->beta != 0.0f;
    int c_const = use_c && d->in_const[2] != NULL;
    float pre_scale = wconst ? 1.0f : g->alpha; /* alpha folded into a constant B */
    float post_scale = 1.0f;
    dnnl_memory_t cm = NULL;
    if (use_c && c_const) {
        /* beta * C, broadcast along N now (and along M only when C varies along M) */
        int64_t rows = g->cr == 1 ? 1 : g->M;
        dnnl_dims_t cd = {rows, g->N};
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab));
        void *buf;
        PIPPY_TRY(pippy_dnnl_memory_alloc(k, &cmd, &cm, &buf));
        const float *c = d->in_const[2];
        float *cb = buf;
        for (int64_t m = 0; m < rows; m++)
            for (int64_t n = 0; n < g->N; n++)
                cb[m * g->N + n] = g->beta * c[(g->cr == 1 ? 0 : m) * g->cc + (g->cc == 1 ? 0 : n)];
    } else if (use_c) {
        dnnl_dims_t cd = {g->cr, g->cc};
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab));
        PIPPY_TRY(pippy_dnnl_memory_in(k, &cmd, 2, &cm));
        if (g->beta != 1.0f) {
            /* alpha*AB + beta*C = beta * ((alpha/beta)*AB + C) */
            pre_scale /= g->beta;
            post_scale = g->beta;
        }
    }

    dnnl_matmul_desc_t md;
    PIPPY_DNNL_CHECK(dnnl_matmul_desc_init(&md, &smd, &wmd, NULL, &dmd));
    dnnl_primitive_attr_t attr;
    PIPPY_TRY(pippy_dnnl_attr_new(&attr));
    dnnl_post_ops_t po = NULL;
    int c_index = -1, n_po = 0;
    /* The scale before C is an output scale (applied to A*B before the post-ops), not a
     * linear post-op: oneDNN 2.6's brgemm matmul applies the first linear post-op's alpha
     * to a second one (linear, add, linear gave (4x+c)*4 for (4x+c)*0.5). */
    dnnl_status_t s = dnnl_post_ops_create(&po);
    if (s == dnnl_success && pre_scale != 1.0f)
        s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &pre_scale);
    if (s == dnnl_success && use_c) {
        s = dnnl_post_ops_append_binary(po, dnnl_binary_add, &cmd);
        c_index = n_po++;
    }
    if (s == dnnl_success && post_scale != 1.0f) {
        s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_linear, post_scale, 0.0f);
        n_po++;
    }
    if (s == dnnl_success && r->relu) {
        s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        n_po++;
    }
    if (s == dnnl_success && n_po)
        s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (po)
        dnnl_post_ops_destroy(po);
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return pippy_dnnl_fail(s, "dnnl post-ops for Gemm", __FILE__, __LINE__);
    }
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd_attr(k, d, &md, attr, &pd));

    dnnl_memory_t sm, wm, dm;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &smd, 0, &sm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &dmd, 0, &dm));
    PIPPY_TRY(pippy_dnnl_input(k, d, 1, &wmd_user, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                               g->alpha, &wm));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}, {0, NULL}};
    int nargs = 3;
    if (use_c) {
        args[3].arg = DNNL_ARG_ATTR_MULTIPLE_POST_OP(c_index) | DNNL_ARG_SRC_1;
        args[3].memory = cm;
        nargs = 4;
    }
    return pippy_dnnl_add_step(k, pd, args, nargs);
}

static pippy_status pippy_gemm_fast(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    return pippy_layout_choose(d, ref, k, 1, pippy_gemm_build);
}

static pippy_status pippy_gemm_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_gemm_ref r = {.base.run = pippy_gemm_ref_run, .dtype = d->in[0].dtype};
    PIPPY_TRY(pippy_gemm_geom_of(d, &r.g));
    PIPPY_TRY(pippy_dense_activation(d, &r.relu));
    int wide = r.dtype != PIPPY_DT_FLOAT;
    if (wide && r.relu)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Gemm: pippy.activation takes float only");
    if (wide)
        r.base.run = pippy_gemm_wide_run;
    return pippy_dense_create(d, !wide && !pippy_any_empty(d), pippy_gemm_fast, &r.base, sizeof r, out);
}

const pippy_op_info pippy_cpu_ops_matmul[] = {
    {"MatMul", "", pippy_matmul_infer, pippy_matmul_flops, pippy_matmul_create},
    {"Gemm", "", pippy_gemm_infer, pippy_gemm_flops, pippy_gemm_create},
    {0},
};
