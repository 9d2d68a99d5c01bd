/* eltwise_grad.c — the backward kernels of the element-wise activations, and Dropout in
 * training mode. Domain "pippy", float32, dX and every input of one shape:
 *
 *   ReluGrad(dY, Y)       dX = Y > 0 ? dY : 0       (Y: Relu's OUTPUT, so it also serves a
 *                                                    ReLU fused into MatMul / Gemm / Conv)
 *   LeakyReluGrad(dY, X)  dX = X > 0 ? dY : alpha*dY          attr alpha (0.01)
 *   GeluGrad(dY, X)       dX = dY * Gelu'(X)                   attr approximate ("none" | "tanh")
 *                           none: Phi(x) + x*phi(x); tanh: the derivative of
 *                           0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
 *   TanhGrad(dY, Y)       dX = dY * (1 - Y^2)       (Y: Tanh's output)
 *   SigmoidGrad(dY, Y)    dX = dY * Y * (1 - Y)     (Y: Sigmoid's output)
 *   DropoutTrain(X) -> Y [, Mask]   attrs ratio (0.5), seed (0): Mask ~ Bernoulli(1 - ratio),
 *                                   Y = X * Mask / (1 - ratio)
 *   DropoutGrad(dY, Mask) dX = dY * Mask / (1 - ratio)         attr ratio (0.5)
 *
 * The C loops are written to vectorise at -O3; where measured faster, big tensors go to one
 * oneDNN eltwise_backward primitive (see eg_dnnl_alg). desc->reference = 1 selects the C
 * loops. The Gelu loops compute Phi as erfc and 0.5(1 + tanh u) as a sigmoid, which keep
 * their relative accuracy for large negative x where 1 + erf and 1 + tanh cancel, and stay
 * finite for every finite x; oneDNN's tanh form gives NaN from |x| ~ 7e12 on (x^3 overflows).
 *
 * DropoutTrain's mask is drawn from a counter-based generator: element i of run c (c counts
 * this kernel's runs from 0) keeps its value when the top 24 bits of
 * splitmix64(key(seed, c) + (i + 1) * golden) / 2^24 are >= ratio. So a mask depends only on
 * (seed, run count, element index): the same on every machine and in every order of
 * computing it. The run count is the one piece of state a kernel here keeps between runs;
 * a kernel re-created (a restarted stage) or reset (pippy_kernel_reset) starts again at run 0.
 * DropoutTrain and DropoutGrad are their own reference. */
#include "dense.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements the C loop is used. The C GeluGrad costs ~8 ns an element, oneDNN's
 * ~0.5 ns plus ~1 us a call (see eg_dnnl_alg): even at 256 elements oneDNN is ahead. */
#define PIPPY_EG_DNNL_MIN 256

typedef enum {
    EG_RELU, EG_LEAKY_RELU, EG_GELU, EG_GELU_TANH, EG_TANH, EG_SIGMOID, EG_DROPOUT, EG_DROPOUT_GRAD,
} eg_kind;

typedef struct {
    const char *op;
    eg_kind kind;
    const char *in1; /* what input 1 is, for messages; NULL: one input */
} eg_def;

static const eg_def eg_defs[] = {
    {"ReluGrad", EG_RELU, "Y"},        {"LeakyReluGrad", EG_LEAKY_RELU, "X"}, {"GeluGrad", EG_GELU, "X"},
    {"TanhGrad", EG_TANH, "Y"},        {"SigmoidGrad", EG_SIGMOID, "Y"},      {"DropoutTrain", EG_DROPOUT, NULL},
    {"DropoutGrad", EG_DROPOUT_GRAD, "Mask"},
};

static const eg_def *eg_def_of(const pippy_op_desc *d)
{
    for (size_t i = 0; i < sizeof eg_defs / sizeof eg_defs[0]; i++)
        if (strcmp(eg_defs[i].op, d->op) == 0)
            return &eg_defs[i];
    return NULL;
}

/* ---- shape rule ---- */

static pippy_status eg_gelu_kind(const pippy_op_desc *d, eg_kind *kind)
{
    const char *a = pippy_attr_string(d, "approximate", "none");
    if (strcmp(a, "none") == 0)
        *kind = EG_GELU;
    else if (strcmp(a, "tanh") == 0)
        *kind = EG_GELU_TANH;
    else
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "approximate='%s' is not supported (expected 'none' or 'tanh')", a);
    return PIPPY_OK;
}

static pippy_status eg_ratio(const pippy_op_desc *d, float *ratio)
{
    *ratio = pippy_attr_float(d, "ratio", 0.5f);
    if (!(*ratio >= 0 && *ratio < 1))
        return pippy_fail(PIPPY_ERR_INVALID, "ratio must be in [0, 1), found %g", (double)*ratio);
    return PIPPY_OK;
}

static pippy_status eg_check_io(const pippy_op_desc *d, const eg_def *def)
{
    int n_in = def->in1 ? 2 : 1, max_out = def->kind == EG_DROPOUT ? 2 : 1;
    if (d->n_in != n_in)
        return pippy_fail(PIPPY_ERR_INVALID, "expected %d input%s (%s%s), found %d", n_in, n_in > 1 ? "s" : "",
                          def->in1 ? "dY, " : "X", def->in1 ? def->in1 : "", d->n_in);
    if (d->n_out < 1 || d->n_out > max_out)
        return pippy_fail(PIPPY_ERR_INVALID, "expected %s, found %d",
                          max_out > 1 ? "1 or 2 outputs (Y, Mask)" : "1 output", d->n_out);
    for (int i = 0; i < n_in; i++) {
        int32_t want = def->kind == EG_DROPOUT_GRAD && i == 1 ? PIPPY_DT_BOOL : PIPPY_DT_FLOAT;
        if (d->in[i].dtype != want)
            return pippy_fail(PIPPY_ERR_INVALID, "input %d (%s) must be %s, found %s", i,
                              i == 1 ? def->in1 : def->in1 ? "dY" : "X", pippy_dtype_name(want),
                              pippy_dtype_name(d->in[i].dtype));
    }
    if (n_in == 2 && (d->in[0].rank != d->in[1].rank ||
                      memcmp(d->in[0].dims, d->in[1].dims, (size_t)d->in[0].rank * sizeof d->in[0].dims[0]))) {
        char a[160], b[160];
        return pippy_fail(PIPPY_ERR_SHAPE, "dY %s and %s %s must have the same shape",
                          pippy_tdesc_str(&d->in[0], a, sizeof a), def->in1, pippy_tdesc_str(&d->in[1], b, sizeof b));
    }
    return PIPPY_OK;
}

static pippy_status eg_infer(pippy_op_desc *d)
{
    const eg_def *def = eg_def_of(d);
    if (!def)
        return pippy_fail(PIPPY_ERR_INTERNAL, "eltwise_grad: unknown op %s", d->op);
    PIPPY_TRY(eg_check_io(d, def));
    eg_kind kind;
    float ratio;
    if (def->kind == EG_GELU)
        PIPPY_TRY(eg_gelu_kind(d, &kind));
    if (def->kind == EG_DROPOUT || def->kind == EG_DROPOUT_GRAD)
        PIPPY_TRY(eg_ratio(d, &ratio));
    d->out[0] = d->in[0];
    if (d->n_out > 1) {
        d->out[1] = d->in[0];
        d->out[1].dtype = PIPPY_DT_BOOL;
    }
    return PIPPY_OK;
}

/* Multiply-adds per element of the C loops, roughly (erf / exp / tanh count ~10). */
static double eg_flops(const pippy_op_desc *d)
{
    const eg_def *def = eg_def_of(d);
    double per = def && def->kind == EG_GELU ? 30 : def && def->kind == EG_DROPOUT ? 10 : 2;
    return per * (double)pippy_tdesc_numel(&d->in[0]);
}

/* ---- the C loops ---- */

typedef struct {
    pippy_kernel base;
    eg_kind kind;
    int64_t n;
    float alpha;        /* LeakyRelu's slope */
    float ratio, scale; /* Dropout: drop probability, 1 / (1 - ratio) */
    uint64_t key;       /* DropoutTrain: from the seed */
    uint64_t runs;      /* DropoutTrain: runs so far (the per-run state) */
    int has_mask;       /* DropoutTrain: the Mask output is wanted */
} eg_kernel;

/* The selects read both operands first: written as y > 0 ? dy : 0, gcc keeps a branch
 * (the load of dy becomes conditional), which random signs mispredict: 25x slower at 1M. */
static void eg_relu(const float *dy, const float *y, float *dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float g = dy[i], keep = y[i] > 0 ? g : 0.0f;
        dx[i] = keep;
    }
}

static void eg_leaky_relu(const float *dy, const float *x, float *dx, int64_t n, float alpha)
{
    for (int64_t i = 0; i < n; i++) {
        float slope = x[i] > 0 ? 1.0f : alpha; /* g * 1 is g exactly */
        dx[i] = dy[i] * slope;
    }
}

static void eg_tanh(const float *dy, const float *y, float *dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static void eg_sigmoid(const float *dy, const float *y, float *dx, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
}

/* Phi(x) + x phi(x), Phi as 0.5 erfc(-x/sqrt2). */
static void eg_gelu(const float *dy, const float *x, float *dx, int64_t n)
{
    const float inv_sqrt2pi = (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * erfcf(-v * (float)M_SQRT1_2);
        dx[i] = dy[i] * (cdf + v * inv_sqrt2pi * expf(-0.5f * v * v));
    }
}

/* With u = c(x + a x^3) and s = sigmoid(2u) = 0.5(1 + tanh u): s + 2x s(1 - s) u'. */
static void eg_gelu_tanh(const float *dy, const float *x, float *dx, int64_t n)
{
    const float c = (float)(M_2_SQRTPI * M_SQRT1_2), a = 0.044715f;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i], u = c * (v + a * v * v * v), du = c * (1.0f + 3.0f * a * v * v);
        float e = expf(-2.0f * fabsf(u)); /* in (0, 1]: no overflow */
        float s_pos = 1.0f / (1.0f + e), s_neg = e * s_pos; /* sigmoid(2|u|), sigmoid(-2|u|) */
        float s = u >= 0 ? s_pos : s_neg, s1 = u >= 0 ? s_neg : s_pos;
        /* s(1 - s) > 0 only while |u| < ~44, i.e. |x| < ~11, where v * du cannot overflow */
        float ss = s * s1, slope = ss > 0 ? 2.0f * v * ss * du : 0.0f;
        dx[i] = dy[i] * (s + slope);
    }
}

/* splitmix64's output function: a bijective mix of 64 bits. */
static uint64_t eg_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#define EG_GOLDEN 0x9E3779B97F4A7C15ULL

static void eg_dropout(eg_kernel *k, const float *x, float *y, uint8_t *mask)
{
    uint64_t key = eg_mix(k->key + k->runs++ * EG_GOLDEN);
    /* keep iff u24 / 2^24 >= ratio, i.e. u24 >= ceil(ratio * 2^24) */
    uint64_t threshold = (uint64_t)ceil((double)k->ratio * 16777216.0);
    for (int64_t i = 0; i < k->n; i++) {
        int keep = (eg_mix(key + (uint64_t)(i + 1) * EG_GOLDEN) >> 40) >= threshold;
        y[i] = x[i] * (keep ? k->scale : 0.0f);
        if (mask)
            mask[i] = (uint8_t)keep;
    }
}

static void eg_dropout_grad(const float *dy, const uint8_t *mask, float *dx, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        float m = mask[i] ? scale : 0.0f; /* dY * Mask * scale, as written: inf * 0 is NaN */
        dx[i] = dy[i] * m;
    }
}

static void eg_reset(pippy_kernel *kb) { ((eg_kernel *)kb)->runs = 0; }

static void eg_run_c(pippy_kernel *kb, const void *const *in, void *const *out)
{
    eg_kernel *k = (eg_kernel *)kb;
    switch (k->kind) {
    case EG_RELU: eg_relu(in[0], in[1], out[0], k->n); break;
    case EG_LEAKY_RELU: eg_leaky_relu(in[0], in[1], out[0], k->n, k->alpha); break;
    case EG_GELU: eg_gelu(in[0], in[1], out[0], k->n); break;
    case EG_GELU_TANH: eg_gelu_tanh(in[0], in[1], out[0], k->n); break;
    case EG_TANH: eg_tanh(in[0], in[1], out[0], k->n); break;
    case EG_SIGMOID: eg_sigmoid(in[0], in[1], out[0], k->n); break;
    case EG_DROPOUT: eg_dropout(k, in[0], out[0], k->has_mask ? out[1] : NULL); break;
    case EG_DROPOUT_GRAD: eg_dropout_grad(in[0], in[1], out[0], k->n, k->scale); break;
    }
}

/* ---- oneDNN ---- */

/* The oneDNN eltwise_backward algorithm for kind, or 0 to stay in C. Measured on one core
 * (bench/bench_grad_light.c, AVX-512 machine, the C loops built for SSE2): GeluGrad's C
 * loops call erfcf / expf and run 20-35x slower than oneDNN's; the others are memory-bound
 * and the vectorised C loops match oneDNN at 64K elements and beat it at 1M (95-120 us
 * against 180-190 us), so they stay in C. */
static int eg_dnnl_alg(eg_kind kind, dnnl_alg_kind_t *alg)
{
    switch (kind) {
    case EG_GELU: *alg = dnnl_eltwise_gelu_erf; return 1;
    case EG_GELU_TANH: *alg = dnnl_eltwise_gelu_tanh; return 1;
    default: return 0;
    }
}

static pippy_status eg_dnnl_build(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k)
{
    const eg_kernel *r = (const eg_kernel *)ref;
    dnnl_alg_kind_t alg;
    if (!eg_dnnl_alg(r->kind, &alg))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: no oneDNN algorithm", d->op);
    dnnl_memory_desc_t md;
    dnnl_eltwise_desc_t ed;
    dnnl_primitive_desc_t pd;
    dnnl_memory_t dy, x, dx;
    PIPPY_TRY(pippy_dnnl_md_plain(&md, 1, &r->n));
    PIPPY_DNNL_CHECK(dnnl_eltwise_backward_desc_init(&ed, alg, &md, &md, 0.0f, 0.0f));
    PIPPY_TRY(pippy_dnnl_pd(k, d, &ed, 0, &pd));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 0, &dy));
    PIPPY_TRY(pippy_dnnl_memory_in(k, &md, 1, &x));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &md, 0, &dx));
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_SRC, dx}};
    return pippy_dnnl_add_step(k, pd, args, 3);
}

static pippy_status eg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const eg_def *def = eg_def_of(d);
    if (!def)
        return pippy_fail(PIPPY_ERR_INTERNAL, "eltwise_grad: unknown op %s", d->op);
    eg_kernel k = {.base = {.run = eg_run_c}, .kind = def->kind, .n = pippy_tdesc_numel(&d->in[0])};
    k.alpha = pippy_attr_float(d, "alpha", 0.01f);
    if (def->kind == EG_GELU)
        PIPPY_TRY(eg_gelu_kind(d, &k.kind));
    if (def->kind == EG_DROPOUT || def->kind == EG_DROPOUT_GRAD) {
        PIPPY_TRY(eg_ratio(d, &k.ratio));
        k.scale = 1.0f / (1.0f - k.ratio);
        k.key = eg_mix((uint64_t)pippy_attr_int(d, "seed", 0));
        k.has_mask = d->n_out > 1;
        k.base.reset = def->kind == EG_DROPOUT ? eg_reset : NULL;
    }
    dnnl_alg_kind_t alg;
    int try_fast = k.n >= PIPPY_EG_DNNL_MIN && eg_dnnl_alg(k.kind, &alg);
    return pippy_dense_create(d, try_fast, eg_dnnl_build, &k.base, sizeof k, out);
}

#define EG_OP(name) {name, "pippy", eg_infer, eg_flops, eg_create}

const pippy_op_info pippy_cpu_ops_eltwise_grad[] = {
    EG_OP("ReluGrad"), EG_OP("LeakyReluGrad"), EG_OP("GeluGrad"),    EG_OP("TanhGrad"),
    EG_OP("SigmoidGrad"), EG_OP("DropoutTrain"), EG_OP("DropoutGrad"), {0},
};
