/* reduce.c — ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd.
 *
 * Axes come from the "axes" attribute (ReduceSum before opset 13, the others before 18) or
 * from a second input known when compiling (from those opsets on); either form is accepted
 * in any opset. No axes means every axis, or a plain copy with noop_with_empty_axes=1.
 * dtypes: float, double, int8, uint8, int32, int64 (integer sums wrap, an integer mean
 * truncates); ReduceMax/ReduceMin also take bool. An empty reduction gives the identity
 * (0, 1, -inf, +inf; NaN for a float mean).
 *
 * Fast path: the input is walked once in memory order; dims are collapsed at create into
 * alternating kept/reduced groups, so the innermost group is either a contiguous reduction
 * into one output element or a contiguous element-wise accumulation into an output row.
 * The reference (desc->reference = 1) folds each output element over its own index set. */
#include "light.h"
#include "walk.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum { R_SUM, R_MEAN, R_MAX, R_MIN, R_PROD } r_kind;

static const struct {
    const char *op;
    r_kind kind;
    int32_t axes_input_opset; /* first opset taking axes as an input */
} r_defs[] = {
    {"ReduceSum", R_SUM, 13}, {"ReduceMean", R_MEAN, 18}, {"ReduceMax", R_MAX, 18},
    {"ReduceMin", R_MIN, 18}, {"ReduceProd", R_PROD, 18},
};

static int r_def_index(const pippy_op_desc *d)
{
    for (size_t i = 0; i < sizeof r_defs / sizeof r_defs[0]; i++)
        if (strcmp(r_defs[i].op, d->op) == 0)
            return (int)i;
    return -1;
}

/* ---- typed pieces: fill with the identity, accumulate a row, fold a row into one value ---- */

typedef struct {
    void (*init)(void *y, int64_t n);
    void (*vec)(void *y, const void *x, int64_t n); /* y[i] = op(y[i], x[i]) */
    void (*red)(void *y, const void *x, int64_t n); /* y[0] = op(y[0], x[0..n)) */
} r_fns;

#define R_DEF(NAME, T, ID, OP)                                      \
    static void r_init_##NAME(void *py, int64_t n)                  \
    {                                                               \
        T *y = py;                                                  \
        for (int64_t i = 0; i < n; i++)                             \
            y[i] = (ID);                                            \
    }                                                               \
    static void r_vec_##NAME(void *py, const void *px, int64_t n)   \
    {                                                               \
        T *y = py;                                                  \
        const T *x = px;                                            \
        for (int64_t i = 0; i < n; i++) {                           \
            T a = y[i], b = x[i];                                   \
            y[i] = (T)(OP);                                         \
        }                                                           \
    }                                                               \
    static void r_red_##NAME(void *py, const void *px, int64_t n)   \
    {                                                               \
        T *y = py, a = *y;                                          \
        const T *x = px;                                            \
        for (int64_t i = 0; i < n; i++) {                           \
            T b = x[i];                                             \
            a = (T)(OP);                                            \
        }                                                           \
        *y = a;                                                     \
    }

/* Float max/min propagate NaN; integer sums and products wrap through the unsigned type. */
#define R_FLOAT_SET(S, T)                                                   \
    R_DEF(sum_##S, T, 0, a + b)                                             \
    R_DEF(prod_##S, T, 1, a * b)                                            \
    R_DEF(max_##S, T, -INFINITY, (b > a || isnan(b)) ? b : a)               \
    R_DEF(min_##S, T, INFINITY, (b < a || isnan(b)) ? b : a)
#define R_INT_SET(S, T, U, LO, HI)                                          \
    R_DEF(sum_##S, T, 0, (U)a + (U)b)                                       \
    R_DEF(prod_##S, T, 1, (U)a * (U)b)                                      \
    R_DEF(max_##S, T, LO, b > a ? b : a)                                    \
    R_DEF(min_##S, T, HI, b < a ? b : a)

R_FLOAT_SET(f32, float)
R_FLOAT_SET(f64, double)
R_INT_SET(i8, int8_t, uint32_t, INT8_MIN, INT8_MAX)
R_INT_SET(u8, uint8_t, uint32_t, 0, UINT8_MAX)
R_INT_SET(i32, int32_t, uint32_t, INT32_MIN, INT32_MAX)
R_INT_SET(i64, int64_t, uint64_t, INT64_MIN, INT64_MAX)
R_DEF(min_bool, uint8_t, 1, b < a ? b : a) /* true (1), not 255, for an empty set */

/* A float row sum with eight partial sums: vectorises, and rounds a little less. */
static void r_red_sum_f32_fast(void *py, const void *px, int64_t n)
{
    const float *x = px;
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += x[i + j];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++)
        t += x[i];
    *(float *)py += t;
}

#define R_FNS(NAME) {r_init_##NAME, r_vec_##NAME, r_red_##NAME}
#define R_ROW(S) {R_FNS(sum_##S), R_FNS(sum_##S), R_FNS(max_##S), R_FNS(min_##S), R_FNS(prod_##S)}

/* Indexed by r_kind (mean accumulates like sum). */
static const r_fns r_table_f32[] = R_ROW(f32);
static const r_fns r_table_f64[] = R_ROW(f64);
static const r_fns r_table_i8[] = R_ROW(i8);
static const r_fns r_table_u8[] = R_ROW(u8);
static const r_fns r_table_i32[] = R_ROW(i32);
static const r_fns r_table_i64[] = R_ROW(i64);
static const r_fns r_table_bool[] = {R_FNS(sum_u8), R_FNS(sum_u8), R_FNS(max_u8), R_FNS(min_bool), R_FNS(prod_u8)};

static const r_fns *r_lookup(r_kind kind, int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return &r_table_f32[kind];
    case PIPPY_DT_DOUBLE: return &r_table_f64[kind];
    case PIPPY_DT_INT8: return &r_table_i8[kind];
    case PIPPY_DT_UINT8: return &r_table_u8[kind];
    case PIPPY_DT_INT32: return &r_table_i32[kind];
    case PIPPY_DT_INT64: return &r_table_i64[kind];
    case PIPPY_DT_BOOL: return kind == R_MAX || kind == R_MIN ? &r_table_bool[kind] : NULL;
    default: return NULL;
    }
}

/* ---- axes and shape rule ---- */

/* Sets red[i] = 1 for each reduced axis of input 0; *noop = 1 for a plain copy. */
pippy_status pippy_reduce_axes_of(const pippy_op_desc *d, int red[PIPPY_MAX_RANK], int *noop)
{
    int rank = d->in[0].rank;
    int64_t axes[PIPPY_MAX_RANK];
    int32_t n = 0;
    memset(red, 0, sizeof(int) * PIPPY_MAX_RANK);
    *noop = 0;
    if (d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED) {
        if (pippy_tdesc_numel(&d->in[1]) > 0) {
            pippy_status st = pippy_const_ints(d, 1, axes, PIPPY_MAX_RANK, &n);
            if (st != PIPPY_OK)
                return pippy_error_prefix(st, "axes");
        }
    } else {
        const int64_t *a;
        int na = pippy_attr_ints(d, "axes", &a);
        if (na > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_INVALID, "%d axes given for a rank-%d input", na, rank);
        for (int i = 0; i < na; i++)
            axes[n++] = a[i];
    }
    if (n == 0) {
        if (pippy_attr_int(d, "noop_with_empty_axes", 0))
            *noop = 1;
        else
            for (int i = 0; i < rank; i++)
                red[i] = 1;
        return PIPPY_OK;
    }
    for (int i = 0; i < n; i++) {
        int32_t ax;
        if (axes[i] < -rank || axes[i] >= rank)
            return pippy_fail(PIPPY_ERR_INVALID, "axis %lld is out of range for rank %d", (long long)axes[i], rank);
        PIPPY_TRY(pippy_norm_axis(d, axes[i], rank, &ax));
        if (red[ax])
            return pippy_fail(PIPPY_ERR_INVALID, "axis %lld is given twice", (long long)axes[i]);
        red[ax] = 1;
    }
    return PIPPY_OK;
}

static pippy_status r_infer(pippy_op_desc *d)
{
    int di = r_def_index(d);
    if (di < 0)
        return pippy_fail(PIPPY_ERR_INTERNAL, "reduce: unknown op %s", d->op);
    if (d->n_in < 1 || d->n_in > 2 || d->in[0].dtype == PIPPY_DT_UNDEFINED)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1 or 2 inputs (data, axes), found %d", d->n_in);
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1 output, found %d", d->n_out);
    const pippy_tdesc *x = &d->in[0];
    if (!r_lookup(r_defs[di].kind, x->dtype))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input 0 must be float, double, int8, uint8, int32 or int64%s, found %s",
                          r_defs[di].kind == R_MAX || r_defs[di].kind == R_MIN ? " (or bool)" : "",
                          pippy_dtype_name(x->dtype));
    int red[PIPPY_MAX_RANK], noop;
    PIPPY_TRY(pippy_reduce_axes_of(d, red, &noop));
    int keepdims = (int)pippy_attr_int(d, "keepdims", 1);
    pippy_tdesc y = {.dtype = x->dtype, .rank = 0};
    for (int i = 0; i < x->rank; i++) {
        if (noop || !red[i])
            y.dims[y.rank++] = x->dims[i];
        else if (keepdims)
            y.dims[y.rank++] = 1;
    }
    d->out[0] = y;
    return PIPPY_OK;
}

static double r_flops(const pippy_op_desc *d)
{
    return (double)pippy_tdesc_numel(&d->in[0]);
}

/* ---- kernel ---- */

typedef struct r_kernel r_kernel;

struct r_kernel {
    pippy_kernel base;
    /* the walk over the input: the fast one or the reference (both folded into y, set to the identity) */
    void (*walk)(const r_kernel *k, const char *x, char *y);
    r_kind kind;
    int32_t dtype;
    size_t esize;
    int noop;
    int64_t in_n, out_n, count; /* count: input elements per output element */
    r_fns fns;
    /* fast walk: collapsed input dims, output element strides (0 on reduced dims) */
    int32_t rank;
    int64_t dims[PIPPY_MAX_RANK], ostr[PIPPY_MAX_RANK];
    /* reference: kept and reduced axes with their input strides */
    int32_t n_keep, n_red;
    int64_t keep_dims[PIPPY_MAX_RANK], keep_str[PIPPY_MAX_RANK];
    int64_t red_dims[PIPPY_MAX_RANK], red_str[PIPPY_MAX_RANK];
};

/* y[i] = y[i] / D over the output, in type T (an integer mean truncates). */
#define R_DIV(T, D)                                  \
    do {                                             \
        T *y_ = y;                                   \
        for (int64_t i = 0; i < k->out_n; i++)       \
            y_[i] = (T)(y_[i] / (D));                \
    } while (0)

static void r_mean(const r_kernel *k, void *y)
{
    if (k->kind != R_MEAN || k->count == 0)
        return;
    switch (k->dtype) {
    case PIPPY_DT_FLOAT: R_DIV(float, (float)k->count); break;
    case PIPPY_DT_DOUBLE: R_DIV(double, (double)k->count); break;
    case PIPPY_DT_INT8: R_DIV(int8_t, k->count); break;
    case PIPPY_DT_UINT8: R_DIV(uint8_t, k->count); break;
    case PIPPY_DT_INT32: R_DIV(int32_t, k->count); break;
    case PIPPY_DT_INT64: R_DIV(int64_t, k->count); break;
    default: break;
    }
}

/* Fast: in memory order, a row at a time over the collapsed dims. */
static void r_walk_fast(const r_kernel *k, const char *x, char *y)
{
    if (k->in_n == 0)
        return;
    int64_t es = (int64_t)k->esize;
    int r = k->rank;
    int64_t inner = k->dims[r - 1], rows = k->in_n / inner, off = 0;
    int inner_reduced = k->ostr[r - 1] == 0;
    int64_t idx[PIPPY_MAX_RANK] = {0};
    for (int64_t row = 0; row < rows; row++) {
        if (inner_reduced)
            k->fns.red(y + off * es, x + row * inner * es, inner);
        else
            k->fns.vec(y + off * es, x + row * inner * es, inner);
        PIPPY_WALK_NEXT(r, k->dims, k->ostr, idx, off);
    }
}

/* Reference: each output element folded over its own index set. */
static void r_walk_ref(const r_kernel *k, const char *x, char *y)
{
    int64_t es = (int64_t)k->esize;
    for (int64_t o = 0; o < k->out_n; o++) {
        int64_t base = 0, rem = o;
        for (int i = k->n_keep - 1; i >= 0; i--) {
            base += (rem % k->keep_dims[i]) * k->keep_str[i];
            rem /= k->keep_dims[i];
        }
        for (int64_t j = 0; j < k->count; j++) {
            int64_t off = base;
            rem = j;
            for (int i = k->n_red - 1; i >= 0; i--) {
                off += (rem % k->red_dims[i]) * k->red_str[i];
                rem /= k->red_dims[i];
            }
            k->fns.red(y + o * es, x + off * es, 1);
        }
    }
}

static void r_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const r_kernel *k = (const r_kernel *)kb;
    const char *x = in[0];
    char *y = out[0];
    if (k->noop) {
        if (k->in_n && (const void *)y != (const void *)x)
            memcpy(y, x, (size_t)k->in_n * k->esize);
        return;
    }
    k->fns.init(y, k->out_n);
    k->walk(k, x, y);
    r_mean(k, y);
}

static pippy_status r_create(const pippy_op_desc *d, pippy_kernel **out)
{
    int di = r_def_index(d);
    if (di < 0)
        return pippy_fail(PIPPY_ERR_INTERNAL, "reduce: unknown op %s", d->op);
    const pippy_tdesc *x = &d->in[0];
    const r_fns *fns = r_lookup(r_defs[di].kind, x->dtype);
    int red[PIPPY_MAX_RANK], noop;
    if (!fns)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s on %s is not supported", d->op, pippy_dtype_name(x->dtype));
    PIPPY_TRY(pippy_reduce_axes_of(d, red, &noop));
    r_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = r_run;
    k->walk = d->reference ? r_walk_ref : r_walk_fast;
    k->kind = r_defs[di].kind;
    k->dtype = x->dtype;
    k->esize = pippy_dtype_size(x->dtype);
    k->noop = noop;
    k->fns = *fns;
    if ((k->kind == R_SUM || k->kind == R_MEAN) && x->dtype == PIPPY_DT_FLOAT && !d->reference)
        k->fns.red = r_red_sum_f32_fast;
    k->in_n = pippy_tdesc_numel(x);
    k->out_n = 1;
    k->count = 1;

    /* input strides, output strides over kept axes, and the reference's axis lists */
    int64_t istr[PIPPY_MAX_RANK], ostr[PIPPY_MAX_RANK], s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        istr[i] = s;
        s *= x->dims[i];
    }
    s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        ostr[i] = red[i] ? 0 : s;
        if (!red[i])
            s *= x->dims[i];
    }
    for (int i = 0; i < x->rank; i++) {
        if (red[i]) {
            k->count *= x->dims[i];
            k->red_dims[k->n_red] = x->dims[i];
            k->red_str[k->n_red++] = istr[i];
        } else {
            k->out_n *= x->dims[i];
            k->keep_dims[k->n_keep] = x->dims[i];
            k->keep_str[k->n_keep++] = istr[i];
        }
    }
    if (noop)
        k->out_n = k->in_n;

    /* collapse: drop size-1 dims, merge neighbours of the same kind that stay contiguous */
    memcpy(k->dims, x->dims, (size_t)x->rank * sizeof *k->dims);
    memcpy(k->ostr, ostr, (size_t)x->rank * sizeof *k->ostr);
    k->rank = pippy_walk_collapse(x->rank, k->dims, 1, (int64_t *[1]){k->ostr}, 0);
    *out = &k->base;
    return PIPPY_OK;
}

#define R_OP(name) {name, "", r_infer, r_flops, r_create}

const pippy_op_info pippy_cpu_ops_reduce[] = {
    R_OP("ReduceSum"), R_OP("ReduceMean"), R_OP("ReduceMax"), R_OP("ReduceMin"), R_OP("ReduceProd"),
    {0},
};
