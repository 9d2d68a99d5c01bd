/* ops_ew.c — the cuda kernels of the element-wise ops (ew.cu): the unary ops, the broadcasting
 * binary and variadic ops, Where, Cast / CastLike and BatchNormalization (inference).
 *
 * What runs here (check): unary math on float; Relu, Neg, Abs, Clip also on double and the
 * integer types; Not on bool. Binary arithmetic on float, double and the integer types (Pow as
 * the CPU mixes them); comparisons on those and bool (Equal); And / Or / Xor on bool; Where on
 * any fixed-size type; Sum / Mean / Max / Min of up to 16 inputs, folded left to right into the
 * output as on the CPU. Shapes broadcast up to rank 8 (after collapsing). */
#include <float.h>
#include <string.h>

#include "cpu/geom.h"
#include "cpu/light.h"
#include "cpu/walk.h"
#include "cubackend.h"

static int pippy_cu_numeric(int32_t dt)
{
    return dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE || dt == PIPPY_DT_INT8 || dt == PIPPY_DT_UINT8 ||
           dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64;
}

/* ---- unary ---- */

static const struct {
    const char *op;
    int32_t kind;
    int numeric; /* 1: also double and the integer types */
} pippy_cu_unary_ops[] = {
    {"Relu", PIPPY_CU_RELU, 1},       {"LeakyRelu", PIPPY_CU_LEAKY_RELU, 0}, {"Tanh", PIPPY_CU_TANH, 0},
    {"Sigmoid", PIPPY_CU_SIGMOID, 0}, {"Erf", PIPPY_CU_ERF, 0},               {"Sqrt", PIPPY_CU_SQRT, 0},
    {"Reciprocal", PIPPY_CU_RECIPROCAL, 0}, {"Gelu", PIPPY_CU_GELU, 0},       {"Neg", PIPPY_CU_NEG, 1},
    {"Exp", PIPPY_CU_EXP, 0},         {"Log", PIPPY_CU_LOG, 0},               {"Abs", PIPPY_CU_ABS, 1},
    {"Softplus", PIPPY_CU_SOFTPLUS, 0}, {"Clip", PIPPY_CU_CLIP, 1},           {"Not", PIPPY_CU_NOT, 0},
};

static pippy_status pippy_cu_unary_params(const pippy_op_desc *d, pippy_cu_unary *p)
{
    int i = 0, n = (int)(sizeof pippy_cu_unary_ops / sizeof pippy_cu_unary_ops[0]);
    while (i < n && strcmp(pippy_cu_unary_ops[i].op, d->op))
        i++;
    if (i == n)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: %s is not a unary op", __FILE__, __LINE__, d->op);
    memset(p, 0, sizeof *p);
    p->op = pippy_cu_unary_ops[i].kind;
    p->dtype = d->in[0].dtype;
    p->n = pippy_tdesc_numel(&d->in[0]);
    p->alpha = pippy_attr_float(d, "alpha", 0.01f);
    int32_t dt = p->dtype;
    int ok = p->op == PIPPY_CU_NOT ? dt == PIPPY_DT_BOOL
                                   : dt == PIPPY_DT_FLOAT || (pippy_cu_unary_ops[i].numeric && pippy_cu_numeric(dt));
    if (!ok)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s on %s has no cuda kernel (float%s)", d->op, pippy_dtype_name(dt),
                          p->op == PIPPY_CU_NOT ? "" : pippy_cu_unary_ops[i].numeric ? ", double, integers" : " only");
    if (p->op == PIPPY_CU_GELU) {
        const char *a = pippy_attr_string(d, "approximate", "none");
        if (!strcmp(a, "tanh"))
            p->op = PIPPY_CU_GELU_TANH;
        else if (strcmp(a, "none"))
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Gelu approximate='%s'", a);
    }
    if (p->op == PIPPY_CU_CLIP) {
        p->clip_inputs = d->opset >= 11;
        p->alpha = pippy_attr_float(d, "min", -FLT_MAX);
        p->beta = pippy_attr_float(d, "max", FLT_MAX);
    }
    return PIPPY_OK;
}

pippy_status pippy_cuda_check_unary(const pippy_op_desc *d)
{
    pippy_cu_unary p;
    return pippy_cu_unary_params(d, &p);
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_unary p;
    int has_lo, has_hi;
} pippy_cu_unary_kernel;

static void pippy_cu_unary_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_unary_kernel *k = (pippy_cu_unary_kernel *)kb;
    pippy_cu_unary_run(&k->p, in[0], out[0], k->has_lo ? in[1] : NULL, k->has_hi ? in[2] : NULL, &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_unary(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_cu_unary_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_unary_k, (pippy_cuda_kernel **)&k));
    pippy_status st = pippy_cu_unary_params(d, &k->p);
    k->has_lo = d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED;
    k->has_hi = d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED;
    if (st != PIPPY_OK) {
        pippy_kernel_destroy(&k->k.base);
        return st;
    }
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- broadcasting ---- */

/* Strides of operand t against out (0 where t broadcasts), then collapse every list together.
 * Returns the collapsed rank. */
static int pippy_cu_broadcast(const pippy_tdesc *out, int n, const pippy_tdesc *const *ops, int64_t *dims,
                              int64_t (*str)[PIPPY_CU_MAX_BDIMS])
{
    memset(str, 0, sizeof(int64_t) * PIPPY_CU_MAX_BDIMS * (size_t)n);
    for (int i = 0; i < out->rank; i++)
        dims[i] = out->dims[i];
    for (int j = 0; j < n; j++) {
        int64_t s = 1;
        for (int i = ops[j]->rank - 1; i >= 0; i--) {
            str[j][i + out->rank - ops[j]->rank] = ops[j]->dims[i] == 1 ? 0 : s;
            s *= ops[j]->dims[i];
        }
    }
    int64_t *lists[3] = {str[0], n > 1 ? str[1] : NULL, n > 2 ? str[2] : NULL};
    return pippy_walk_collapse(out->rank, dims, n, lists, 0);
}

static const struct {
    const char *op;
    int32_t kind;
    int variadic;
} pippy_cu_binary_ops[] = {
    {"Add", PIPPY_CU_ADD, 0}, {"Sub", PIPPY_CU_SUB, 0}, {"Mul", PIPPY_CU_MUL, 0}, {"Div", PIPPY_CU_DIV, 0},
    {"Pow", PIPPY_CU_POW, 0}, {"Max", PIPPY_CU_MAX, 1}, {"Min", PIPPY_CU_MIN, 1}, {"Sum", PIPPY_CU_ADD, 1},
    {"Mean", PIPPY_CU_ADD, 1}, {"Equal", PIPPY_CU_EQ, 0}, {"Less", PIPPY_CU_LT, 0}, {"Greater", PIPPY_CU_GT, 0},
    {"LessOrEqual", PIPPY_CU_LE, 0}, {"GreaterOrEqual", PIPPY_CU_GE, 0}, {"And", PIPPY_CU_AND, 0},
    {"Or", PIPPY_CU_OR, 0}, {"Xor", PIPPY_CU_XOR, 0},
};

static int pippy_cu_pow_type(int32_t dt)
{
    return dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE || dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64;
}

/* The op's kind and whether it is variadic; fails for dtypes without a kernel. */
static pippy_status pippy_cu_binary_kind(const pippy_op_desc *d, int32_t *kind, int *variadic)
{
    int i = 0, n = (int)(sizeof pippy_cu_binary_ops / sizeof pippy_cu_binary_ops[0]);
    while (i < n && strcmp(pippy_cu_binary_ops[i].op, d->op))
        i++;
    if (i == n)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: %s is not a binary op", __FILE__, __LINE__, d->op);
    *kind = pippy_cu_binary_ops[i].kind;
    *variadic = pippy_cu_binary_ops[i].variadic;
    int32_t ta = d->in[0].dtype, tb = d->n_in > 1 ? d->in[1].dtype : ta;
    int ok;
    if (*kind == PIPPY_CU_POW)
        ok = ta == tb ? pippy_cu_numeric(ta) : pippy_cu_pow_type(ta) && pippy_cu_pow_type(tb);
    else if (*kind >= PIPPY_CU_AND)
        ok = ta == PIPPY_DT_BOOL;
    else if (*kind == PIPPY_CU_EQ)
        ok = pippy_cu_numeric(ta) || ta == PIPPY_DT_BOOL;
    else
        ok = pippy_cu_numeric(ta);
    if (!strcmp(d->op, "Mean"))
        ok = ta == PIPPY_DT_FLOAT || ta == PIPPY_DT_DOUBLE;
    if (!ok)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s of %s and %s has no cuda kernel", d->op, pippy_dtype_name(ta),
                          pippy_dtype_name(tb));
    for (int j = 0; j < d->n_in; j++)
        if (d->in[j].rank > PIPPY_CU_MAX_BDIMS)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input %d has rank %d, the cuda kernel takes up to %d", j,
                              d->in[j].rank, PIPPY_CU_MAX_BDIMS);
    return PIPPY_OK;
}

pippy_status pippy_cuda_check_binary(const pippy_op_desc *d)
{
    int32_t kind;
    int variadic;
    return pippy_cu_binary_kind(d, &kind, &variadic);
}

/* Sum / Mean / Max / Min fold their inputs into the output: step s combines (s == 0: input 0,
 * else the output so far) with input s + 1; Mean scales at the end; one input is a copy. */
typedef struct {
    pippy_cuda_kernel k;
    int n_steps;
    pippy_cu_binary step[PIPPY_MAX_IO - 1];
    int mean;
    pippy_cu_unary scale;
    pippy_cu_copy one; /* a single input: broadcast copy */
} pippy_cu_binary_kernel;

static void pippy_cu_binary_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_binary_kernel *k = (pippy_cu_binary_kernel *)kb;
    const pippy_cu_exec *x = &k->k.ctx->exec;
    if (k->n_steps == 0)
        pippy_cu_copy_run(&k->one, in[0], out[0], x);
    for (int s = 0; s < k->n_steps; s++)
        pippy_cu_binary_run(&k->step[s], s == 0 ? in[0] : out[0], in[s + 1], out[0], x);
    if (k->mean)
        pippy_cu_unary_run(&k->scale, out[0], out[0], NULL, NULL, x);
}

pippy_status pippy_cuda_create_binary(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t kind;
    int variadic;
    PIPPY_TRY(pippy_cu_binary_kind(d, &kind, &variadic));
    pippy_cu_binary_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_binary_k, (pippy_cuda_kernel **)&k));
    const pippy_tdesc *o = &d->out[0];
    k->n_steps = d->n_in - 1;
    for (int s = 0; s < k->n_steps; s++) {
        pippy_cu_binary *p = &k->step[s];
        pippy_tdesc first = s == 0 ? d->in[0] : *o;
        const pippy_tdesc *ops[2] = {&first, &d->in[s + 1]};
        int64_t str[2][PIPPY_CU_MAX_BDIMS];
        p->op = kind;
        p->ta = d->in[0].dtype;
        p->tb = d->in[s + 1].dtype;
        p->n = pippy_tdesc_numel(o);
        p->rank = pippy_cu_broadcast(o, 2, ops, p->dims, str);
        memcpy(p->sa, str[0], sizeof p->sa);
        memcpy(p->sb, str[1], sizeof p->sb);
    }
    if (k->n_steps == 0) { /* Sum(x) etc.: x itself */
        const pippy_tdesc *ops[1] = {&d->in[0]};
        int64_t str[1][PIPPY_CU_MAX_BDIMS];
        k->one.rank = pippy_cu_broadcast(o, 1, ops, k->one.dims, str);
        memcpy(k->one.istr, str[0], sizeof str[0]);
        int64_t s = 1;
        for (int i = k->one.rank - 1; i >= 0; i--) {
            k->one.ostr[i] = s;
            s *= k->one.dims[i];
        }
        k->one.esize = (int32_t)pippy_dtype_size(o->dtype);
        k->one.n = pippy_tdesc_numel(o);
    }
    if (!strcmp(d->op, "Mean") && d->n_in > 1) {
        k->mean = 1;
        k->scale = (pippy_cu_unary){.op = PIPPY_CU_SCALE, .dtype = o->dtype, .n = pippy_tdesc_numel(o),
                                    .alpha = 1.0f / (float)d->n_in, .dscale = 1.0 / (double)d->n_in};
    }
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Where ---- */

pippy_status pippy_cuda_check_where(const pippy_op_desc *d)
{
    for (int j = 0; j < 3; j++)
        if (d->in[j].rank > PIPPY_CU_MAX_BDIMS)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input %d has rank %d, the cuda kernel takes up to %d", j,
                              d->in[j].rank, PIPPY_CU_MAX_BDIMS);
    size_t es = pippy_dtype_size(d->out[0].dtype);
    if (es != 1 && es != 2 && es != 4 && es != 8)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Where on %s has no cuda kernel", pippy_dtype_name(d->out[0].dtype));
    return PIPPY_OK;
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_where p;
} pippy_cu_where_kernel;

static void pippy_cu_where_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_where_kernel *k = (pippy_cu_where_kernel *)kb;
    pippy_cu_where_run(&k->p, in[0], in[1], in[2], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_where(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_where(d));
    pippy_cu_where_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_where_k, (pippy_cuda_kernel **)&k));
    const pippy_tdesc *ops[3] = {&d->in[0], &d->in[1], &d->in[2]};
    int64_t str[3][PIPPY_CU_MAX_BDIMS];
    k->p.rank = pippy_cu_broadcast(&d->out[0], 3, ops, k->p.dims, str);
    memcpy(k->p.sc, str[0], sizeof k->p.sc);
    memcpy(k->p.sa, str[1], sizeof k->p.sa);
    memcpy(k->p.sb, str[2], sizeof k->p.sb);
    k->p.esize = (int32_t)pippy_dtype_size(d->out[0].dtype);
    k->p.n = pippy_tdesc_numel(&d->out[0]);
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Cast, CastLike ---- */

pippy_status pippy_cuda_check_cast(const pippy_op_desc *d)
{
    int32_t to;
    return pippy_cast_to_of(d, &to);
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_cast p;
} pippy_cu_cast_kernel;

static void pippy_cu_cast_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_cast_kernel *k = (pippy_cu_cast_kernel *)kb;
    pippy_cu_cast_run(&k->p, in[0], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_cast(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t to;
    PIPPY_TRY(pippy_cast_to_of(d, &to));
    pippy_cu_cast_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_cast_k, (pippy_cuda_kernel **)&k));
    k->p = (pippy_cu_cast){.from = d->in[0].dtype, .to = to, .n = pippy_tdesc_numel(&d->in[0])};
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- BatchNormalization (inference; infer has refused the training forms) ---- */

static const int pippy_cu_bn_inputs[5] = {0, 1, 2, 3, 4};

pippy_status pippy_cuda_check_bn(const pippy_op_desc *d)
{
    return pippy_cuda_want_float(d, pippy_cu_bn_inputs, 5);
}

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_bn p;
} pippy_cu_bn_kernel;

static void pippy_cu_bn_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_bn_kernel *k = (pippy_cu_bn_kernel *)kb;
    pippy_cu_bn_run(&k->p, in[0], in[1], in[2], in[3], in[4], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_create_bn(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_bn(d));
    pippy_bn_dims dm;
    static const char *const names[4] = {"scale", "B", "input_mean", "input_var"};
    PIPPY_TRY(pippy_bn_dims_of(d, &d->in[0], pippy_cu_bn_inputs + 1, 4, names, &dm));
    pippy_cu_bn_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_bn_k, (pippy_cuda_kernel **)&k));
    k->p = (pippy_cu_bn){.eps = pippy_attr_float(d, "epsilon", 1e-5f), .C = dm.C, .inner = dm.S,
                         .n = pippy_tdesc_numel(&d->in[0])};
    *out = &k->k.base;
    return PIPPY_OK;
}
