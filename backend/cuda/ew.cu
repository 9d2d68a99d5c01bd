/* ew.cu — CUDA element-wise kernels: the unary ops, the broadcasting binary ops and Where, Cast,
 * the bias + ReLU that follows a cuDNN convolution, and BatchNormalization (inference). The
 * rules are the CPU kernels' (backend/cpu/eltwise.c, binary.c, shape.c, norm.c): integer
 * arithmetic wraps, integer x / 0 is 0, float Max/Min propagate NaN, float math runs in float
 * (Pow of mixed types through double). One thread per output element; each also runs on the host
 * (pippy_cu_exec.host) for the emulation tests. */
#include <float.h>

#include "cu_common.cuh"
#include "cast.h"

/* ---- unary ---- */

template <typename T> struct pippy_cu_unsigned { typedef T t; };
template <> struct pippy_cu_unsigned<int8_t> { typedef uint32_t t; };
template <> struct pippy_cu_unsigned<int32_t> { typedef uint32_t t; };
template <> struct pippy_cu_unsigned<int64_t> { typedef uint64_t t; };

template <typename T> __host__ __device__ inline bool pippy_cu_negative(T v) { return v < (T)0; }
template <> __host__ __device__ inline bool pippy_cu_negative<uint8_t>(uint8_t v) { return (void)v, false; }

/* -v, wrapping for integers (through the unsigned type). */
template <typename T> __host__ __device__ inline T pippy_cu_neg(T v)
{
    typedef typename pippy_cu_unsigned<T>::t U;
    return pippy_cu_is_float_t<T>::v ? (T)-v : (T)((U)0 - (U)v);
}

__host__ __device__ inline float pippy_cu_sigmoid(float v)
{
    if (v >= 0)
        return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

__host__ __device__ inline float pippy_cu_unary_f(int op, float v, float a)
{
    switch (op) {
    case PIPPY_CU_RELU: return v > 0 ? v : 0.0f;
    case PIPPY_CU_LEAKY_RELU: return v >= 0 ? v : a * v;
    case PIPPY_CU_TANH: return tanhf(v);
    case PIPPY_CU_SIGMOID: return pippy_cu_sigmoid(v);
    case PIPPY_CU_ERF: return erff(v);
    case PIPPY_CU_SQRT: return sqrtf(v);
    case PIPPY_CU_RECIPROCAL: return 1.0f / v;
    case PIPPY_CU_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case PIPPY_CU_GELU_TANH:
        return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case PIPPY_CU_NEG: return -v;
    case PIPPY_CU_EXP: return expf(v);
    case PIPPY_CU_LOG: return logf(v);
    case PIPPY_CU_ABS: return fabsf(v);
    case PIPPY_CU_SOFTPLUS: return v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v));
    case PIPPY_CU_SCALE: return v * a;
    default: return v;
    }
}

static void pippy_cu_unary_float(const pippy_cu_unary *p, const float *in, float *out, const pippy_cu_exec *x)
{
    int op = p->op;
    float a = p->alpha;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) { out[i] = pippy_cu_unary_f(op, in[i], a); });
}

/* Relu, Neg, Abs, Clip (and SCALE for double) on the other numeric types; negation wraps. */
template <typename T>
static void pippy_cu_unary_num(const pippy_cu_unary *p, const T *in, T *out, const T *lo, const T *hi,
                               const pippy_cu_exec *x)
{
    int op = p->op, from_inputs = p->clip_inputs;
    float fa = p->alpha, fb = p->beta;
    double ds = p->dscale;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
        T v = in[i];
        if (op == PIPPY_CU_RELU) {
            v = v > (T)0 ? v : (T)0;
        } else if (op == PIPPY_CU_NEG || (op == PIPPY_CU_ABS && pippy_cu_negative(v))) {
            v = pippy_cu_neg(v);
        } else if (op == PIPPY_CU_SCALE) {
            v = (T)(v * (T)ds);
        } else if (op == PIPPY_CU_CLIP) {
            if (from_inputs) {
                if (lo && v < *lo)
                    v = *lo;
                if (hi && v > *hi)
                    v = *hi;
            } else {
                if (v < (T)fa)
                    v = (T)fa;
                if (v > (T)fb)
                    v = (T)fb;
            }
        }
        out[i] = v;
    });
}

void pippy_cu_unary_run(const pippy_cu_unary *p, const void *in, void *out, const void *lo, const void *hi,
                        const pippy_cu_exec *x)
{
    if (p->op == PIPPY_CU_NOT) {
        const uint8_t *a = (const uint8_t *)in;
        uint8_t *y = (uint8_t *)out;
        pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) { y[i] = !a[i]; });
        return;
    }
    if (p->dtype == PIPPY_DT_FLOAT && p->op != PIPPY_CU_CLIP) {
        pippy_cu_unary_float(p, (const float *)in, (float *)out, x);
        return;
    }
    PIPPY_CU_NUMERIC(p->dtype, T, pippy_cu_unary_num<T>(p, (const T *)in, (T *)out, (const T *)lo, (const T *)hi, x))
}

/* ---- binary ---- */

/* Integer power by squaring, wrapping; a negative exponent gives 0 except for bases 1 and -1. */
__host__ __device__ inline int64_t pippy_cu_ipow(int64_t a, int64_t e)
{
    if (e < 0)
        return a == 1 ? 1 : a == -1 ? ((e & 1) ? -1 : 1) : 0;
    uint64_t r = 1, b = (uint64_t)a;
    while (e) {
        if (e & 1)
            r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}


/* a op b for arithmetic ops on T (same types); comparisons return 0/1. */
template <typename T> __host__ __device__ inline T pippy_cu_arith(int op, T a, T b)
{
    typedef typename pippy_cu_unsigned<T>::t U;
    const bool fl = pippy_cu_is_float_t<T>::v;
    switch (op) {
    case PIPPY_CU_ADD: return fl ? (T)(a + b) : (T)((U)a + (U)b);
    case PIPPY_CU_SUB: return fl ? (T)(a - b) : (T)((U)a - (U)b);
    case PIPPY_CU_MUL: return fl ? (T)(a * b) : (T)((U)a * (U)b);
    case PIPPY_CU_DIV:
        if (fl)
            return (T)(a / b);
        if (b == (T)0)
            return (T)0;
        if (pippy_cu_negative(b) && (T)(b + (T)1) == (T)0) /* b == -1: negate, wrapping */
            return pippy_cu_neg(a);
        return (T)(a / b);
    case PIPPY_CU_MAX: return fl ? ((a > b || a != a) ? a : b) : (a > b ? a : b);
    case PIPPY_CU_MIN: return fl ? ((a < b || a != a) ? a : b) : (a < b ? a : b);
    default: return (T)0;
    }
}

template <typename T> __host__ __device__ inline uint8_t pippy_cu_compare(int op, T a, T b)
{
    switch (op) {
    case PIPPY_CU_EQ: return a == b;
    case PIPPY_CU_LT: return a < b;
    case PIPPY_CU_GT: return a > b;
    case PIPPY_CU_LE: return a <= b;
    default: return a >= b;
    }
}

/* Pow: the result has the base's type; both floats of one type use powf / pow, two integers the
 * integer power, anything else pow in double. */
template <typename A, typename B> __host__ __device__ inline A pippy_cu_pow(A a, B b)
{
    if (!pippy_cu_is_float_t<A>::v && !pippy_cu_is_float_t<B>::v)
        return (A)pippy_cu_ipow((int64_t)a, (int64_t)b);
    return (A)pow((double)a, (double)b);
}
template <> __host__ __device__ inline float pippy_cu_pow<float, float>(float a, float b) { return powf(a, b); }

struct pippy_cu_bdims {
    int rank;
    int64_t dims[PIPPY_CU_MAX_BDIMS], sa[PIPPY_CU_MAX_BDIMS], sb[PIPPY_CU_MAX_BDIMS];
};

__host__ __device__ inline void pippy_cu_boffsets(const pippy_cu_bdims &g, int64_t i, int64_t *oa, int64_t *ob)
{
    int64_t a = 0, b = 0;
    for (int d = g.rank - 1; d >= 0; d--) {
        int64_t t = i / g.dims[d], k = i - t * g.dims[d];
        a += k * g.sa[d];
        b += k * g.sb[d];
        i = t;
    }
    *oa = a;
    *ob = b;
}

static pippy_cu_bdims pippy_cu_bdims_of(const pippy_cu_binary *p)
{
    pippy_cu_bdims g;
    g.rank = p->rank;
    for (int d = 0; d < PIPPY_CU_MAX_BDIMS; d++) {
        g.dims[d] = p->dims[d];
        g.sa[d] = p->sa[d];
        g.sb[d] = p->sb[d];
    }
    return g;
}

template <typename T>
static void pippy_cu_binary_same(const pippy_cu_binary *p, const T *a, const T *b, void *out, const pippy_cu_exec *x)
{
    pippy_cu_bdims g = pippy_cu_bdims_of(p);
    int op = p->op;
    if (op >= PIPPY_CU_EQ) {
        uint8_t *y = (uint8_t *)out;
        pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
            int64_t oa, ob;
            pippy_cu_boffsets(g, i, &oa, &ob);
            y[i] = pippy_cu_compare<T>(op, a[oa], b[ob]);
        });
    } else if (op == PIPPY_CU_POW) {
        T *y = (T *)out;
        pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
            int64_t oa, ob;
            pippy_cu_boffsets(g, i, &oa, &ob);
            y[i] = pippy_cu_pow<T, T>(a[oa], b[ob]);
        });
    } else {
        T *y = (T *)out;
        pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
            int64_t oa, ob;
            pippy_cu_boffsets(g, i, &oa, &ob);
            y[i] = pippy_cu_arith<T>(op, a[oa], b[ob]);
        });
    }
}

static void pippy_cu_binary_bool(const pippy_cu_binary *p, const uint8_t *a, const uint8_t *b, uint8_t *y,
                                 const pippy_cu_exec *x)
{
    pippy_cu_bdims g = pippy_cu_bdims_of(p);
    int op = p->op;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
        int64_t oa, ob;
        pippy_cu_boffsets(g, i, &oa, &ob);
        int u = a[oa] != 0, v = b[ob] != 0;
        y[i] = (uint8_t)(op == PIPPY_CU_AND ? (u && v) : op == PIPPY_CU_OR ? (u || v) : (u != v));
    });
}

template <typename A, typename B>
static void pippy_cu_pow_mixed(const pippy_cu_binary *p, const A *a, const B *b, A *y, const pippy_cu_exec *x)
{
    pippy_cu_bdims g = pippy_cu_bdims_of(p);
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
        int64_t oa, ob;
        pippy_cu_boffsets(g, i, &oa, &ob);
        y[i] = pippy_cu_pow<A, B>(a[oa], b[ob]);
    });
}

/* Runs BODY with T the C type of DT among the four types Pow mixes. */
#define PIPPY_CU_POWTYPES(DT, T, ...)                               \
    switch (DT) {                                                   \
    case PIPPY_DT_FLOAT: { typedef float T; __VA_ARGS__; } break;   \
    case PIPPY_DT_DOUBLE: { typedef double T; __VA_ARGS__; } break; \
    case PIPPY_DT_INT32: { typedef int32_t T; __VA_ARGS__; } break; \
    case PIPPY_DT_INT64: { typedef int64_t T; __VA_ARGS__; } break; \
    default: break;                                                 \
    }

void pippy_cu_binary_run(const pippy_cu_binary *p, const void *a, const void *b, void *out, const pippy_cu_exec *x)
{
    if (p->op == PIPPY_CU_POW && p->ta != p->tb) {
        PIPPY_CU_POWTYPES(p->ta, A, PIPPY_CU_POWTYPES(p->tb, B,
            pippy_cu_pow_mixed<A, B>(p, (const A *)a, (const B *)b, (A *)out, x)))
        return;
    }
    if (p->ta == PIPPY_DT_BOOL) {
        if (p->op == PIPPY_CU_EQ) { /* bool equality compares truth values */
            pippy_cu_binary q = *p;
            q.op = PIPPY_CU_XOR;
            pippy_cu_binary_bool(&q, (const uint8_t *)a, (const uint8_t *)b, (uint8_t *)out, x);
            pippy_cu_unary n = {PIPPY_CU_NOT, PIPPY_DT_BOOL, 0, p->n, 0.0f, 0.0f, 0.0};
            pippy_cu_unary_run(&n, out, out, NULL, NULL, x);
        } else {
            pippy_cu_binary_bool(p, (const uint8_t *)a, (const uint8_t *)b, (uint8_t *)out, x);
        }
        return;
    }
    PIPPY_CU_NUMERIC(p->ta, T, pippy_cu_binary_same<T>(p, (const T *)a, (const T *)b, out, x))
}

/* ---- Where ---- */

template <typename T>
static void pippy_cu_where_t(const pippy_cu_where *p, const uint8_t *c, const T *a, const T *b, T *y,
                             const pippy_cu_exec *x)
{
    pippy_cu_where q = *p;
    pippy_cu_each(x, q.n, [=] __host__ __device__(int64_t i) {
        int64_t oc = 0, oa = 0, ob = 0, r = i;
        for (int d = q.rank - 1; d >= 0; d--) {
            int64_t t = r / q.dims[d], k = r - t * q.dims[d];
            oc += k * q.sc[d];
            oa += k * q.sa[d];
            ob += k * q.sb[d];
            r = t;
        }
        y[i] = c[oc] ? a[oa] : b[ob];
    });
}

void pippy_cu_where_run(const pippy_cu_where *p, const void *c, const void *a, const void *b, void *out,
                        const pippy_cu_exec *x)
{
    PIPPY_CU_BYSIZE(p->esize, T,
                    pippy_cu_where_t<T>(p, (const uint8_t *)c, (const T *)a, (const T *)b, (T *)out, x))
}

/* ---- Cast ---- */

void pippy_cu_cast_run(const pippy_cu_cast *p, const void *in, void *out, const pippy_cu_exec *x)
{
    int from = p->from, to = p->to;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) { pippy_cast_one(from, to, in, out, i); });
}

/* ---- bias + ReLU, BatchNormalization ---- */

void pippy_cu_bias_act_run(const pippy_cu_bias_act *p, const float *bias, float *y, const pippy_cu_exec *x)
{
    int64_t C = p->C, inner = p->inner;
    int relu = p->relu;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
        float v = y[i];
        if (bias)
            v += bias[(i / inner) % C];
        y[i] = relu && v < 0 ? 0.0f : v;
    });
}

void pippy_cu_bn_run(const pippy_cu_bn *p, const float *xin, const float *scale, const float *b, const float *mean,
                     const float *var, float *y, const pippy_cu_exec *x)
{
    int64_t C = p->C, inner = p->inner;
    double eps = p->eps;
    pippy_cu_each(x, p->n, [=] __host__ __device__(int64_t i) {
        int64_t c = (i / inner) % C;
        double inv = 1.0 / sqrt((double)var[c] + eps);
        y[i] = (float)(((double)xin[i] - mean[c]) * inv * scale[c] + b[c]);
    });
}
