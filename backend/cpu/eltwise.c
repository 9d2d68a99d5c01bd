/* eltwise.c — unary element-wise ops: Relu, LeakyRelu, Tanh, Sigmoid, Erf, Sqrt, Reciprocal,
 * Gelu, Neg, Exp, Log, Abs, Softplus, Clip, Not, Identity, Dropout, Cos, Sin, HardSwish,
 * HardSigmoid, IsNaN, IsInf.
 *
 * Math ops compute on float32. Relu, Neg, Abs and Clip also take double and the integer
 * types; Identity copies any dtype; Not works on bool; IsNaN and IsInf give bool. Big float
 * tensors go through one oneDNN eltwise primitive created at create time (relu, tanh,
 * logistic, sqrt, gelu_erf, gelu_tanh, exp, abs, linear, pow; not log or soft_relu, see
 * ew_dnnl_alg); everything has a plain C loop, which desc->reference = 1 selects. Cos, Sin,
 * HardSwish, HardSigmoid, IsNaN and IsInf have only that loop (it is the simplest one).
 *
 * With desc->reference = 1 (the compiler folding a node whose inputs are all constants) the
 * math ops also take double, as the ONNX spec allows: infer accepts it and the reference
 * computes in double (ew_double). Stage programs never get a double math op: without
 * reference, infer rejects it.
 *
 * Conformance (ONNX node tests, onnx 1.23): test_cos*, test_sin*, test_hardswish*,
 * test_hardsigmoid*, test_isnan*, test_isinf* pass; the float16 variants are rejected (no
 * float16 kernels); test_isinf_float16 and test_isnan_float16 likewise. */
#include "backend.h"

#include <dnnl.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements the C loop beats the primitive's call overhead. */
#define PIPPY_EW_DNNL_MIN 4096

typedef enum {
    EW_RELU, EW_LEAKY_RELU, EW_TANH, EW_SIGMOID, EW_ERF, EW_SQRT, EW_RECIPROCAL, EW_GELU,
    EW_GELU_TANH, EW_NEG, EW_EXP, EW_LOG, EW_ABS, EW_SOFTPLUS, EW_CLIP, EW_NOT, EW_IDENTITY,
    EW_DROPOUT, EW_COS, EW_SIN, EW_HARD_SWISH, EW_HARD_SIGMOID, EW_ISNAN, EW_ISINF,
} ew_kind;

/* Which dtypes an op takes. */
typedef enum { EW_T_FLOAT, EW_T_NUMERIC, EW_T_BOOL, EW_T_ANY } ew_types;

typedef struct {
    const char *op;
    ew_kind kind;
    ew_types types;
} ew_def;

static const ew_def ew_defs[] = {
    {"Relu", EW_RELU, EW_T_NUMERIC},       {"LeakyRelu", EW_LEAKY_RELU, EW_T_FLOAT},
    {"Tanh", EW_TANH, EW_T_FLOAT},         {"Sigmoid", EW_SIGMOID, EW_T_FLOAT},
    {"Erf", EW_ERF, EW_T_FLOAT},           {"Sqrt", EW_SQRT, EW_T_FLOAT},
    {"Reciprocal", EW_RECIPROCAL, EW_T_FLOAT}, {"Gelu", EW_GELU, EW_T_FLOAT},
    {"Neg", EW_NEG, EW_T_NUMERIC},         {"Exp", EW_EXP, EW_T_FLOAT},
    {"Log", EW_LOG, EW_T_FLOAT},           {"Abs", EW_ABS, EW_T_NUMERIC},
    {"Softplus", EW_SOFTPLUS, EW_T_FLOAT}, {"Clip", EW_CLIP, EW_T_NUMERIC},
    {"Not", EW_NOT, EW_T_BOOL},            {"Identity", EW_IDENTITY, EW_T_ANY},
    {"Dropout", EW_DROPOUT, EW_T_FLOAT},
    {"Cos", EW_COS, EW_T_FLOAT},           {"Sin", EW_SIN, EW_T_FLOAT},
    {"HardSwish", EW_HARD_SWISH, EW_T_FLOAT}, {"HardSigmoid", EW_HARD_SIGMOID, EW_T_FLOAT},
    {"IsNaN", EW_ISNAN, EW_T_FLOAT},       {"IsInf", EW_ISINF, EW_T_FLOAT},
};

static const ew_def *ew_def_of(const pippy_op_desc *d)
{
    for (size_t i = 0; i < sizeof ew_defs / sizeof ew_defs[0]; i++)
        if (strcmp(ew_defs[i].op, d->op) == 0)
            return &ew_defs[i];
    return NULL;
}

/* reference: the dtypes the ONNX spec allows (folding), else those stage programs run. */
static int ew_dtype_ok(ew_types t, int32_t dt, int reference)
{
    switch (t) {
    case EW_T_FLOAT: return dt == PIPPY_DT_FLOAT || (reference && dt == PIPPY_DT_DOUBLE);
    case EW_T_BOOL: return dt == PIPPY_DT_BOOL;
    case EW_T_NUMERIC:
        return dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE || dt == PIPPY_DT_INT8 || dt == PIPPY_DT_UINT8 ||
               dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64;
    case EW_T_ANY: return pippy_dtype_size(dt) != 0;
    }
    return 0;
}

static const char *ew_types_name(ew_types t)
{
    switch (t) {
    case EW_T_FLOAT: return "float";
    case EW_T_BOOL: return "bool";
    case EW_T_NUMERIC: return "float, double, int8, uint8, int32 or int64";
    case EW_T_ANY: return "a fixed-size dtype";
    }
    return "?";
}

/* Gelu's "approximate" attribute picks the tanh form. */
static pippy_status ew_gelu_kind(const pippy_op_desc *d, ew_kind *kind)
{
    const char *a = pippy_attr_string(d, "approximate", "none");
    if (strcmp(a, "none") == 0)
        *kind = EW_GELU;
    else if (strcmp(a, "tanh") == 0)
        *kind = EW_GELU_TANH;
    else
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Gelu approximate='%s' is not supported (expected 'none' or 'tanh')",
                          a);
    return PIPPY_OK;
}

static pippy_status ew_infer(pippy_op_desc *d)
{
    const ew_def *def = ew_def_of(d);
    if (!def)
        return pippy_fail(PIPPY_ERR_INTERNAL, "eltwise: unknown op %s", d->op);
    int max_in = def->kind == EW_CLIP ? 3 : def->kind == EW_DROPOUT ? 3 : 1;
    if (d->n_in < 1 || d->n_in > max_in || d->in[0].dtype == PIPPY_DT_UNDEFINED)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1%s input%s, found %d", max_in > 1 ? " to 3" : "",
                          max_in > 1 ? "s" : "", d->n_in);
    int max_out = def->kind == EW_DROPOUT ? 2 : 1;
    if (d->n_out < 1 || d->n_out > max_out)
        return pippy_fail(PIPPY_ERR_INVALID, "expected %s output%s, found %d", max_out > 1 ? "1 or 2" : "1",
                          max_out > 1 ? "s" : "", d->n_out);
    const pippy_tdesc *x = &d->in[0];
    if (!ew_dtype_ok(def->types, x->dtype, d->reference))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input 0 must be %s, found %s%s", ew_types_name(def->types),
                          pippy_dtype_name(x->dtype),
                          ew_dtype_ok(def->types, x->dtype, 1)
                              ? " (double math runs only where the node folds to a constant when compiling)"
                              : "");
    if (def->kind == EW_GELU) {
        ew_kind k;
        PIPPY_TRY(ew_gelu_kind(d, &k));
    }
    if (def->kind == EW_CLIP) {
        if (d->opset >= 11) {
            for (int i = 1; i < d->n_in; i++) {
                const pippy_tdesc *b = &d->in[i];
                if (b->dtype == PIPPY_DT_UNDEFINED)
                    continue;
                if (b->dtype != x->dtype || pippy_tdesc_numel(b) != 1)
                    return pippy_fail(PIPPY_ERR_INVALID, "input %d (%s) must be a one-element %s tensor, found %s[%lld elements]",
                                      i, i == 1 ? "min" : "max", pippy_dtype_name(x->dtype),
                                      pippy_dtype_name(b->dtype), (long long)pippy_tdesc_numel(b));
            }
        } else {
            if (d->n_in > 1)
                return pippy_fail(PIPPY_ERR_INVALID, "Clip before opset 11 takes 1 input, found %d", d->n_in);
            if (x->dtype != PIPPY_DT_FLOAT)
                return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Clip before opset 11 needs float input, found %s",
                                  pippy_dtype_name(x->dtype));
        }
    }
    if (def->kind == EW_DROPOUT) {
        if (d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED &&
            (d->in[1].dtype != PIPPY_DT_FLOAT || pippy_tdesc_numel(&d->in[1]) != 1))
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Dropout ratio must be a float scalar, found %s",
                              pippy_dtype_name(d->in[1].dtype));
        if (d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED &&
            (d->in[2].dtype != PIPPY_DT_BOOL || pippy_tdesc_numel(&d->in[2]) != 1))
            return pippy_fail(PIPPY_ERR_INVALID, "Dropout training_mode must be a bool scalar, found %s",
                              pippy_dtype_name(d->in[2].dtype));
    }
    d->out[0] = *x;
    if (def->kind == EW_ISNAN || def->kind == EW_ISINF)
        d->out[0].dtype = PIPPY_DT_BOOL;
    if (def->kind == EW_DROPOUT && d->n_out > 1) {
        d->out[1] = *x;
        d->out[1].dtype = PIPPY_DT_BOOL;
    }
    return PIPPY_OK;
}

/* ---- kernel ---- */

typedef struct {
    pippy_kernel base;
    ew_kind kind;
    int32_t dtype;
    int64_t n;
    size_t bytes;
    float alpha;             /* LeakyRelu slope; HardSigmoid's alpha */
    float beta;              /* HardSigmoid's beta */
    int detect_neg, detect_pos; /* IsInf */
    float clip_lo, clip_hi;  /* Clip bounds from attributes (opset < 11) */
    int clip_inputs;         /* 1: bounds come from inputs 1 and 2 (opset >= 11) */
    int has_lo, has_hi;
    int has_mask;            /* Dropout: second output */
    int has_ratio, has_training;
    float attr_ratio;
    uint64_t rng;            /* Dropout in training mode */
    /* oneDNN fast path (prim == NULL: C loop) */
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst;
} ew_kernel;

static void ew_destroy(pippy_kernel *kb)
{
    ew_kernel *k = (ew_kernel *)kb;
    if (k->src)
        dnnl_memory_destroy(k->src);
    if (k->dst)
        dnnl_memory_destroy(k->dst);
    if (k->prim)
        dnnl_primitive_destroy(k->prim);
    if (k->stream)
        dnnl_stream_destroy(k->stream);
    if (k->eng)
        dnnl_engine_destroy(k->eng);
    free(k);
}

static float ew_sigmoid(float x)
{
    if (x >= 0)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static float ew_softplus(float x)
{
    return x > 0 ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

/* The plain C loops for float32. */
static void ew_float(const ew_kernel *k, const float *x, float *y, int64_t n)
{
    const float a = k->alpha;
    switch (k->kind) {
    case EW_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0 ? x[i] : 0.0f;
        break;
    case EW_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0 ? x[i] : a * x[i];
        break;
    case EW_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case EW_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = ew_sigmoid(x[i]);
        break;
    case EW_ERF:
        for (int64_t i = 0; i < n; i++)
            y[i] = erff(x[i]);
        break;
    case EW_SQRT:
        for (int64_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        break;
    case EW_RECIPROCAL:
        for (int64_t i = 0; i < n; i++)
            y[i] = 1.0f / x[i];
        break;
    case EW_GELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        break;
    case EW_GELU_TANH: {
        const float c = (float)(M_2_SQRTPI * M_SQRT1_2); /* sqrt(2/pi) */
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
        }
        break;
    }
    case EW_NEG:
        for (int64_t i = 0; i < n; i++)
            y[i] = -x[i];
        break;
    case EW_EXP:
        for (int64_t i = 0; i < n; i++)
            y[i] = expf(x[i]);
        break;
    case EW_LOG:
        for (int64_t i = 0; i < n; i++)
            y[i] = logf(x[i]);
        break;
    case EW_ABS:
        for (int64_t i = 0; i < n; i++)
            y[i] = fabsf(x[i]);
        break;
    case EW_SOFTPLUS:
        for (int64_t i = 0; i < n; i++)
            y[i] = ew_softplus(x[i]);
        break;
    case EW_COS:
        for (int64_t i = 0; i < n; i++)
            y[i] = cosf(x[i]);
        break;
    case EW_SIN:
        for (int64_t i = 0; i < n; i++)
            y[i] = sinf(x[i]);
        break;
    case EW_HARD_SWISH: /* x * max(0, min(1, x/6 + 1/2)) */
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * fmaxf(0.0f, fminf(1.0f, x[i] * (1.0f / 6.0f) + 0.5f));
        break;
    case EW_HARD_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = fmaxf(0.0f, fminf(1.0f, a * x[i] + k->beta));
        break;
    default: break; /* handled by the callers */
    }
}

/* The math ops on double: the reference for folding (see the header comment). */
static void ew_double(const ew_kernel *k, const double *x, double *y, int64_t n)
{
    const double a = k->alpha, c = M_2_SQRTPI * M_SQRT1_2; /* c = sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], r = v;
        switch (k->kind) {
        case EW_LEAKY_RELU: r = v >= 0 ? v : a * v; break;
        case EW_TANH: r = tanh(v); break;
        case EW_SIGMOID: r = v >= 0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v)); break;
        case EW_ERF: r = erf(v); break;
        case EW_SQRT: r = sqrt(v); break;
        case EW_RECIPROCAL: r = 1.0 / v; break;
        case EW_GELU: r = 0.5 * v * (1.0 + erf(v * M_SQRT1_2)); break;
        case EW_GELU_TANH: r = 0.5 * v * (1.0 + tanh(c * (v + 0.044715 * v * v * v))); break;
        case EW_EXP: r = exp(v); break;
        case EW_LOG: r = log(v); break;
        case EW_SOFTPLUS: r = v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); break;
        case EW_COS: r = cos(v); break;
        case EW_SIN: r = sin(v); break;
        case EW_HARD_SWISH: r = v * fmax(0.0, fmin(1.0, v / 6.0 + 0.5)); break;
        case EW_HARD_SIGMOID: r = fmax(0.0, fmin(1.0, a * v + (double)k->beta)); break;
        default: break;
        }
        y[i] = r;
    }
}

/* IsNaN, IsInf on float or double: bool out. */
#define EW_CLASSIFY_DEF(S, T)                                                                \
    static void ew_classify_##S(const ew_kernel *k, const T *x, uint8_t *y)                  \
    {                                                                                        \
        for (int64_t i = 0; i < k->n; i++) {                                                 \
            T v = x[i];                                                                      \
            if (k->kind == EW_ISNAN)                                                         \
                y[i] = isnan(v) != 0;                                                        \
            else                                                                             \
                y[i] = isinf(v) && ((v > 0 && k->detect_pos) || (v < 0 && k->detect_neg));   \
        }                                                                                    \
    }
EW_CLASSIFY_DEF(f32, float)
EW_CLASSIFY_DEF(f64, double)

/* Relu, Neg, Abs, Clip on double and integer types. Integer negation wraps (done unsigned). */
#define EW_NUMERIC_DEF(S, T, U)                                                              \
    static void ew_numeric_##S(ew_kind kind, const T *x, T *y, int64_t n, const T *lo, const T *hi) \
    {                                                                                        \
        switch (kind) {                                                                      \
        case EW_RELU:                                                                        \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] = x[i] > 0 ? x[i] : (T)0;                                               \
            break;                                                                           \
        case EW_NEG:                                                                         \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] = (T)(0 - (U)x[i]);                                                     \
            break;                                                                           \
        case EW_ABS:                                                                         \
            for (int64_t i = 0; i < n; i++)                                                  \
                y[i] = x[i] < 0 ? (T)(0 - (U)x[i]) : x[i];                                   \
            break;                                                                           \
        case EW_CLIP:                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                \
                T v = x[i];                                                                  \
                if (lo && v < *lo)                                                           \
                    v = *lo;                                                                 \
                if (hi && v > *hi)                                                           \
                    v = *hi;                                                                 \
                y[i] = v;                                                                    \
            }                                                                                \
            break;                                                                           \
        default: break;                                                                      \
        }                                                                                    \
    }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wtype-limits" /* x < 0 on uint8 */
EW_NUMERIC_DEF(f32, float, float)
EW_NUMERIC_DEF(f64, double, double)
EW_NUMERIC_DEF(i8, int8_t, uint8_t)
EW_NUMERIC_DEF(u8, uint8_t, uint8_t)
EW_NUMERIC_DEF(i32, int32_t, uint32_t)
EW_NUMERIC_DEF(i64, int64_t, uint64_t)
#pragma GCC diagnostic pop

static void ew_numeric(const ew_kernel *k, const void *x, void *y, const void *lo, const void *hi)
{
    switch (k->dtype) {
    case PIPPY_DT_FLOAT: ew_numeric_f32(k->kind, x, y, k->n, lo, hi); break;
    case PIPPY_DT_DOUBLE: ew_numeric_f64(k->kind, x, y, k->n, lo, hi); break;
    case PIPPY_DT_INT8: ew_numeric_i8(k->kind, x, y, k->n, lo, hi); break;
    case PIPPY_DT_UINT8: ew_numeric_u8(k->kind, x, y, k->n, lo, hi); break;
    case PIPPY_DT_INT32: ew_numeric_i32(k->kind, x, y, k->n, lo, hi); break;
    case PIPPY_DT_INT64: ew_numeric_i64(k->kind, x, y, k->n, lo, hi); break;
    default: break;
    }
}

/* xorshift64*: uniform in [0, 1). */
static float ew_uniform(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (float)((x * 0x2545F4914F6CDD1DULL) >> 40) / (float)(1u << 24);
}

static void ew_dropout(ew_kernel *k, const void *const *in, void *const *out)
{
    const float *x = in[0];
    float *y = out[0];
    uint8_t *mask = k->has_mask ? out[1] : NULL;
    int training = k->has_training && in[2] && *(const uint8_t *)in[2];
    float ratio = k->has_ratio && in[1] ? *(const float *)in[1] : k->attr_ratio;
    if (!training || ratio <= 0) {
        if (k->bytes && y != x)
            memcpy(y, x, k->bytes);
        if (mask && k->n)
            memset(mask, 1, (size_t)k->n);
        return;
    }
    float scale = ratio < 1 ? 1.0f / (1.0f - ratio) : 0.0f;
    for (int64_t i = 0; i < k->n; i++) {
        int keep = ew_uniform(&k->rng) >= ratio;
        if (k->dtype == PIPPY_DT_DOUBLE) /* folding only (see the header comment) */
            ((double *)out[0])[i] = keep ? ((const double *)in[0])[i] * scale : 0.0;
        else
            y[i] = keep ? x[i] * scale : 0.0f;
        if (mask)
            mask[i] = (uint8_t)keep;
    }
}

static void ew_run_c(pippy_kernel *kb, const void *const *in, void *const *out)
{
    ew_kernel *k = (ew_kernel *)kb;
    switch (k->kind) {
    case EW_IDENTITY:
        if (k->bytes && out[0] != in[0])
            memcpy(out[0], in[0], k->bytes);
        return;
    case EW_DROPOUT:
        ew_dropout(k, in, out);
        return;
    case EW_NOT: {
        const uint8_t *x = in[0];
        uint8_t *y = out[0];
        for (int64_t i = 0; i < k->n; i++)
            y[i] = !x[i];
        return;
    }
    case EW_ISNAN:
    case EW_ISINF:
        if (k->dtype == PIPPY_DT_DOUBLE)
            ew_classify_f64(k, in[0], out[0]);
        else
            ew_classify_f32(k, in[0], out[0]);
        return;
    case EW_CLIP:
        if (k->clip_inputs)
            ew_numeric(k, in[0], out[0], k->has_lo ? in[1] : NULL, k->has_hi ? in[2] : NULL);
        else
            ew_numeric(k, in[0], out[0], &k->clip_lo, &k->clip_hi);
        return;
    case EW_RELU:
    case EW_NEG:
    case EW_ABS:
        if (k->dtype != PIPPY_DT_FLOAT) {
            ew_numeric(k, in[0], out[0], NULL, NULL);
            return;
        }
        break;
    default: break;
    }
    if (k->dtype == PIPPY_DT_DOUBLE)
        ew_double(k, in[0], out[0], k->n);
    else
        ew_float(k, in[0], out[0], k->n);
}

static void ew_run_dnnl(pippy_kernel *kb, const void *const *in, void *const *out)
{
    ew_kernel *k = (ew_kernel *)kb;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, k->src}, {DNNL_ARG_DST, k->dst}};
    if (dnnl_memory_set_data_handle(k->src, (void *)in[0]) != dnnl_success ||
        dnnl_memory_set_data_handle(k->dst, out[0]) != dnnl_success ||
        dnnl_primitive_execute(k->prim, k->stream, 2, args) != dnnl_success ||
        dnnl_stream_wait(k->stream) != dnnl_success)
        ew_run_c(kb, in, out); /* never observed; the C loop gives the same answer */
}

#define EW_DNNL_CHECK(call)                                                                              \
    do {                                                                                                 \
        dnnl_status_t s_ = (call);                                                                       \
        if (s_ != dnnl_success)                                                                          \
            return pippy_fail(PIPPY_ERR_BACKEND, "%s:%d: %s failed (dnnl status %d)", __FILE__, __LINE__, \
                              #call, (int)s_);                                                           \
    } while (0)

/* The oneDNN algorithm for kind, or 0 when there is none. */
static int ew_dnnl_alg(const ew_kernel *k, dnnl_alg_kind_t *alg, float *alpha, float *beta)
{
    *alpha = 0;
    *beta = 0;
    switch (k->kind) {
    case EW_RELU: *alg = dnnl_eltwise_relu; return 1;
    case EW_LEAKY_RELU: *alg = dnnl_eltwise_relu; *alpha = k->alpha; return 1;
    case EW_TANH: *alg = dnnl_eltwise_tanh; return 1;
    case EW_SIGMOID: *alg = dnnl_eltwise_logistic; return 1;
    case EW_SQRT: *alg = dnnl_eltwise_sqrt; return 1;
    case EW_RECIPROCAL: *alg = dnnl_eltwise_pow; *alpha = 1; *beta = -1; return 1;
    case EW_GELU: *alg = dnnl_eltwise_gelu_erf; return 1;
    case EW_GELU_TANH: *alg = dnnl_eltwise_gelu_tanh; return 1;
    case EW_NEG: *alg = dnnl_eltwise_linear; *alpha = -1; return 1;
    case EW_EXP: *alg = dnnl_eltwise_exp; return 1;
    case EW_ABS: *alg = dnnl_eltwise_abs; return 1;
    /* Log and Softplus stay in C: oneDNN 2.6's log is ~2e-3 off just below 1 and its
     * soft_relu loses precision (even goes negative) below x ~ -7 (ONNX conformance tests). */
    default: return 0;
    }
}

static pippy_status ew_dnnl_create(ew_kernel *k, dnnl_alg_kind_t alg, float alpha, float beta)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {k->n};
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t pd = NULL;
    EW_DNNL_CHECK(dnnl_engine_create(&k->eng, dnnl_cpu, 0));
    EW_DNNL_CHECK(dnnl_stream_create(&k->stream, k->eng, dnnl_stream_default_flags));
    EW_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
    EW_DNNL_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg, &md, alpha, beta));
    EW_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &ed, NULL, k->eng, NULL));
    dnnl_status_t s = dnnl_primitive_create(&k->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    EW_DNNL_CHECK(s);
    EW_DNNL_CHECK(dnnl_memory_create(&k->src, &md, k->eng, DNNL_MEMORY_NONE));
    EW_DNNL_CHECK(dnnl_memory_create(&k->dst, &md, k->eng, DNNL_MEMORY_NONE));
    return PIPPY_OK;
}

static pippy_status ew_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const ew_def *def = ew_def_of(d);
    if (!def)
        return pippy_fail(PIPPY_ERR_INTERNAL, "eltwise: unknown op %s", d->op);
    ew_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = ew_run_c;
    k->base.destroy = ew_destroy;
    k->kind = def->kind;
    k->dtype = d->in[0].dtype;
    k->n = pippy_tdesc_numel(&d->in[0]);
    k->bytes = pippy_tdesc_bytes(&d->in[0]);
    k->alpha = pippy_attr_float(d, "alpha", k->kind == EW_HARD_SIGMOID ? 0.2f : 0.01f);
    k->beta = pippy_attr_float(d, "beta", 0.5f);
    k->detect_neg = pippy_attr_int(d, "detect_negative", 1) != 0;
    k->detect_pos = pippy_attr_int(d, "detect_positive", 1) != 0;
    pippy_status st = PIPPY_OK;
    if (k->kind == EW_GELU)
        st = ew_gelu_kind(d, &k->kind);
    if (k->kind == EW_CLIP) {
        k->clip_inputs = d->opset >= 11;
        k->has_lo = d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED;
        k->has_hi = d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED;
        k->clip_lo = pippy_attr_float(d, "min", -FLT_MAX);
        k->clip_hi = pippy_attr_float(d, "max", FLT_MAX);
    }
    if (k->kind == EW_DROPOUT) {
        k->has_mask = d->n_out > 1;
        k->has_ratio = d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED;
        k->has_training = d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED;
        k->attr_ratio = pippy_attr_float(d, "ratio", 0.5f);
        k->rng = (uint64_t)pippy_attr_int(d, "seed", 0) * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    }
    dnnl_alg_kind_t alg;
    float alpha, beta;
    if (st == PIPPY_OK && !d->reference && k->dtype == PIPPY_DT_FLOAT && k->n >= PIPPY_EW_DNNL_MIN &&
        ew_dnnl_alg(k, &alg, &alpha, &beta)) {
        st = ew_dnnl_create(k, alg, alpha, beta);
        k->base.run = ew_run_dnnl;
    }
    if (st != PIPPY_OK) {
        ew_destroy(&k->base);
        return st;
    }
    *out = &k->base;
    return PIPPY_OK;
}

#define EW_OP(name) {name, "", ew_infer, NULL, ew_create}

const pippy_op_info pippy_cpu_ops_eltwise[] = {
    EW_OP("Relu"), EW_OP("LeakyRelu"), EW_OP("Tanh"),     EW_OP("Sigmoid"), EW_OP("Erf"),
    EW_OP("Sqrt"), EW_OP("Reciprocal"), EW_OP("Gelu"),    EW_OP("Neg"),     EW_OP("Exp"),
    EW_OP("Log"),  EW_OP("Abs"),        EW_OP("Softplus"), EW_OP("Clip"),   EW_OP("Not"),
    EW_OP("Identity"), EW_OP("Dropout"), EW_OP("Cos"),     EW_OP("Sin"),     EW_OP("HardSwish"),
    EW_OP("HardSigmoid"), EW_OP("IsNaN"), EW_OP("IsInf"),
    {0},
};
