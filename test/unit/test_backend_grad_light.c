/* test_backend_grad_light.c — the light backward kernels: eltwise_grad.c (ReluGrad,
 * LeakyReluGrad, GeluGrad, TanhGrad, SigmoidGrad, DropoutTrain, DropoutGrad), reduce_grad.c
 * (SumTo) and shape_grad.c (GatherGrad, SliceGrad), and the forward ops the autodiff emits
 * as ordinary nodes.
 *
 * References are written here, in double: the activation grads against central finite
 * differences of a double forward; the linear ops (SumTo, GatherGrad, SliceGrad,
 * DropoutGrad) against exact double sums or placements computed by plain loops. Tolerances
 * are a small multiple of the errors measured on correct code (set PIPPY_TEST_VERBOSE=1 to
 * print them); a float accumulation or a wrong formula is far outside them. Fast vs reference
 * runs on large random inputs, with and without pippy.accumulate; infer errors are checked
 * for their status and message. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"

/* ---- an op builder ---- */

#define G_MAX_ATTRS 8

typedef struct {
    pippy_op_desc d;
    pippy_attr a[G_MAX_ATTRS];
    int64_t ints[G_MAX_ATTRS][PIPPY_MAX_RANK];
} g_op;

static void g_init(g_op *t, const char *op, int n_out)
{
    memset(t, 0, sizeof *t);
    t->d.op = op;
    t->d.domain = "pippy";
    t->d.opset = 1;
    t->d.name = "g";
    t->d.attrs = t->a;
    t->d.n_out = n_out;
}

static void g_in(g_op *t, int32_t dt, int rank, const int64_t *dims)
{
    pippy_tdesc *x = &t->d.in[t->d.n_in++];
    x->dtype = dt;
    x->rank = rank;
    for (int i = 0; i < rank; i++)
        x->dims[i] = dims[i];
}
#define G_DIMS(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}
#define G_IN(t, dt, ...) g_in((t), (dt), G_DIMS(__VA_ARGS__))
#define G_IN0(t, dt) g_in((t), (dt), 0, NULL)

static pippy_attr *g_attr(g_op *t, const char *name, int32_t type)
{
    ck_assert_int_lt(t->d.n_attrs, G_MAX_ATTRS);
    pippy_attr *a = &t->a[t->d.n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = type;
    return a;
}
static void g_attr_i(g_op *t, const char *name, int64_t v) { g_attr(t, name, PIPPY_ATTR_INT)->i = v; }
static void g_attr_f(g_op *t, const char *name, float v) { g_attr(t, name, PIPPY_ATTR_FLOAT)->f = v; }
static void g_attr_s(g_op *t, const char *name, const char *v) { g_attr(t, name, PIPPY_ATTR_STRING)->s = v; }
static void g_attr_ints(g_op *t, const char *name, int n, const int64_t *v)
{
    ck_assert_int_le(n, PIPPY_MAX_RANK);
    int slot = t->d.n_attrs;
    pippy_attr *a = g_attr(t, name, PIPPY_ATTR_INTS);
    for (int i = 0; i < n; i++)
        t->ints[slot][i] = v[i];
    a->n = n;
    a->ints = t->ints[slot];
}
#define G_INTS(t, name, ...) g_attr_ints((t), (name), G_DIMS(__VA_ARGS__))
#define G_INTS0(t, name) g_attr_ints((t), (name), 0, NULL)

static void g_infer_ok(g_op *t)
{
    pippy_status st = pippy_op_infer(&t->d);
    ck_assert_msg(st == PIPPY_OK, "%s infer: %s", t->d.op, pippy_last_error());
}

/* Infer must fail with status st and a message containing what. */
static void g_infer_fails(g_op *t, pippy_status st, const char *what)
{
    pippy_status got = pippy_op_infer(&t->d);
    ck_assert_msg(got == st, "%s: infer gave %d, expected %d (%s)", t->d.op, got, st, pippy_last_error());
    ck_assert_msg(strstr(pippy_last_error(), what), "%s: message '%s' lacks '%s'", t->d.op, pippy_last_error(), what);
}

/* A kernel: fast (reference = 0) or plain C. */
static pippy_kernel *g_create(g_op *t, int reference)
{
    g_infer_ok(t);
    t->d.reference = reference;
    pippy_kernel *k = NULL;
    pippy_status st = pippy_kernel_create(&t->d, &k);
    ck_assert_msg(st == PIPPY_OK, "%s create: %s", t->d.op, pippy_last_error());
    return k;
}

/* Create, run once, destroy. */
static void g_run(g_op *t, int reference, const void *const *in, void *const *out)
{
    pippy_kernel *k = g_create(t, reference);
    pippy_kernel_run(k, in, out);
    pippy_kernel_destroy(k);
}

static int64_t g_numel(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static double g_rand(void) /* [0, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static float *g_randv(int64_t n, double lo, double hi)
{
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * g_rand());
    return v;
}

/* An element check in a loop: Check's ck_assert_* writes to its pipe at every call, which
 * for millions of elements costs seconds; this calls Check only on failure. */
#define G_CHECK(cond, ...)              \
    do {                                \
        if (!(cond))                    \
            ck_abort_msg(__VA_ARGS__);  \
    } while (0)

static int g_verbose(void)
{
    const char *v = getenv("PIPPY_TEST_VERBOSE");
    return v && v[0] == '1';
}

#define EPS32 5.9604644775390625e-8 /* 2^-24: half a float ulp at 1 */

/* ================================ activation grads ================================ */

static double f_relu(double x, double a) { (void)a; return x > 0 ? x : 0; }
static double f_leaky(double x, double a) { return x > 0 ? x : a * x; }
static double f_gelu(double x, double a) { (void)a; return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double f_gelu_tanh(double x, double a)
{
    (void)a;
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double f_tanh(double x, double a) { (void)a; return tanh(x); }
static double f_sigmoid(double x, double a) { (void)a; return 1 / (1 + exp(-x)); }

typedef struct {
    const char *op, *approx; /* approx: GeluGrad's attribute, NULL: absent */
    double (*f)(double x, double alpha);
    int takes_y;   /* input 1 is f(X) (else X) */
    int kink;      /* f has a kink at 0: keep X away from it */
    double tol;    /* bound on |dX/dY - f'(X)| beyond 2 roundings of f': a few times the measured error */
} eg_case;

/* Measured max |dX/dY - f'(X)| (X in [-6, 6], 100K points): Relu 1.1e-11 and LeakyRelu
 * 1.1e-8 (the finite differences' own error; alpha * dY's rounding); GeluGrad none 1.7e-7 (C)
 * and 2.8e-7 (oneDNN), tanh 2.5e-7 (C) and 8.1e-7 (oneDNN, near x = 4); Tanh 1.1e-7 and
 * Sigmoid 3.5e-8 (Y rounded to float). A wrong constant in Gelu's tanh form (0.0447 for
 * 0.044715) is off by ~7e-6. */
static const eg_case eg_cases[] = {
    {"ReluGrad", NULL, f_relu, 1, 1, 1e-9},
    {"LeakyReluGrad", NULL, f_leaky, 0, 1, 1e-9},
    {"GeluGrad", NULL, f_gelu, 0, 0, 5e-7},
    {"GeluGrad", "tanh", f_gelu_tanh, 0, 0, 1.6e-6},
    {"GeluGrad", "none", f_gelu, 0, 0, 5e-7},
    {"TanhGrad", NULL, f_tanh, 1, 0, 2.5e-7},
    {"SigmoidGrad", NULL, f_sigmoid, 1, 0, 8e-8},
};

/* Central difference of f at x in double. */
static double fd(double (*f)(double, double), double x, double alpha)
{
    double h = 1e-5 * fmax(1.0, fabs(x));
    return (f(x + h, alpha) - f(x - h, alpha)) / (2 * h);
}

static void eg_op(g_op *t, const eg_case *c, float alpha, int rank, const int64_t *dims)
{
    g_init(t, c->op, 1);
    g_in(t, PIPPY_DT_FLOAT, rank, dims);
    g_in(t, PIPPY_DT_FLOAT, rank, dims);
    if (c->approx)
        g_attr_s(t, "approximate", c->approx);
    if (c->f == f_leaky)
        g_attr_f(t, "alpha", alpha);
}

/* One case on one shape, fast and reference: dX against finite differences, and the two paths
 * against each other (equal where both are the C loop). Returns the max error. */
static double eg_check(const eg_case *c, float alpha, int rank, const int64_t *dims)
{
    int64_t n = g_numel(rank, dims);
    float *x = g_randv(n, -6, 6), *dy = g_randv(n, -1, 1), *in1 = malloc((size_t)n * 4);
    float *dx[2] = {malloc((size_t)n * 4), malloc((size_t)n * 4)};
    for (int64_t i = 0; i < n; i++) {
        if (dy[i] == 0)
            dy[i] = 0.5f;
        if (c->kink)
            while (fabsf(x[i]) < 1e-3f)
                x[i] = (float)(12 * g_rand() - 6);
        in1[i] = c->takes_y ? (float)c->f(x[i], alpha) : x[i];
    }
    double worst = 0;
    for (int ref = 0; ref < 2; ref++) {
        g_op t;
        eg_op(&t, c, alpha, rank, dims);
        g_run(&t, ref, (const void *[]){dy, in1}, (void *[]){dx[ref]});
        for (int64_t i = 0; i < n; i++) {
            double want = fd(c->f, x[i], alpha), e = fabs((double)dx[ref][i] / dy[i] - want);
            G_CHECK(e <= c->tol + 2 * EPS32 * fabs(want), "%s %s (%s) x=%.9g: dX/dY %.9g, f'(x) %.9g", c->op,
                    c->approx ? c->approx : "",
                    ref ? "reference" : "fast", x[i], (double)dx[ref][i] / dy[i], want);
            worst = fmax(worst, e);
        }
    }
    if (c->f != f_gelu && c->f != f_gelu_tanh) /* the rest have one C loop; Gelu's fast path is oneDNN */
        G_CHECK(memcmp(dx[0], dx[1], (size_t)n * 4) == 0, "%s: fast and reference differ", c->op);
    free(x);
    free(dy);
    free(in1);
    free(dx[0]);
    free(dx[1]);
    return worst;
}

START_TEST(eltwise_grad_vs_finite_differences)
{
    static const int64_t shapes[][4] = {{7}, {3, 5}, {2, 3, 4, 5}, {100000}};
    static const int ranks[] = {1, 2, 4, 1};
    for (size_t c = 0; c < sizeof eg_cases / sizeof eg_cases[0]; c++) {
        double worst = 0;
        for (int s = 0; s < 4; s++)
            worst = fmax(worst, eg_check(&eg_cases[c], 0.01f, ranks[s], shapes[s]));
        if (eg_cases[c].f == f_leaky)
            worst = fmax(worst, eg_check(&eg_cases[c], 0.2f, 1, (int64_t[]){5000}));
        if (g_verbose())
            fprintf(stderr, "%s %s: max |dX/dY - f'| = %.3g\n", eg_cases[c].op,
                    eg_cases[c].approx ? eg_cases[c].approx : "", worst);
    }
}
END_TEST

/* The points where the rules choose: Y = 0 and X = 0 are not "> 0". */
START_TEST(eltwise_grad_edges)
{
    g_op t;
    float y[4] = {0, -0.0f, 1e-30f, -1}, dy[4] = {2, 3, 4, 5}, dx[4];
    g_init(&t, "ReluGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_run(&t, 0, (const void *[]){dy, y}, (void *[]){dx});
    ck_assert(dx[0] == 0 && dx[1] == 0 && dx[2] == 4 && dx[3] == 0);
    g_init(&t, "LeakyReluGrad", 1); /* default alpha 0.01 */
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_run(&t, 0, (const void *[]){dy, y}, (void *[]){dx});
    ck_assert(dx[0] == 0.01f * 2 && dx[1] == 0.01f * 3 && dx[2] == 4 && dx[3] == 0.01f * 5);
    /* Gelu'(0) = 0.5 in both forms; Gelu'(x) -> 1 and 0 far out, with no NaN from x^3 or exp
     * overflowing: 5 elements (the C loop, up to 1e30) and 300 (oneDNN, up to 1e12; its tanh
     * form gives NaN from |x| ~ 7e12 on, where x^3 overflows) */
    enum { NG = 300 };
    float gx[NG], gdy[NG], gdx[NG];
    const float want[5] = {0.5f, 1, 0, 1, 0};
    for (int a = 0; a < 4; a++) {
        int64_t n = a < 2 ? 5 : NG;
        float big = a < 2 ? 1e30f : 1e12f, xs[5] = {0, 30, -30, big, -big};
        for (int i = 0; i < NG; i++) {
            gx[i] = xs[i % 5];
            gdy[i] = (float)(i % 7 + 1);
        }
        g_init(&t, "GeluGrad", 1);
        G_IN(&t, PIPPY_DT_FLOAT, n);
        G_IN(&t, PIPPY_DT_FLOAT, n);
        g_attr_s(&t, "approximate", a % 2 ? "tanh" : "none");
        for (int ref = 0; ref < 2; ref++) {
            g_run(&t, ref, (const void *[]){gdy, gx}, (void *[]){gdx});
            for (int i = 0; i < n; i++)
                G_CHECK(gdx[i] == want[i % 5] * gdy[i], "GeluGrad %s n=%lld %s: x=%g dX=%g", a % 2 ? "tanh" : "none",
                        (long long)n, ref ? "reference" : "fast", gx[i], gdx[i]);
        }
    }
}
END_TEST

START_TEST(eltwise_grad_infer_errors)
{
    g_op t;
    g_init(&t, "ReluGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "expected 2 inputs (dY, Y), found 1");
    g_init(&t, "TanhGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4, 5);
    G_IN(&t, PIPPY_DT_FLOAT, 4, 6);
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "dY float[4,5] and Y float[4,6] must have the same shape");
    g_init(&t, "SigmoidGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_DOUBLE, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "input 1 (Y) must be float, found double");
    g_init(&t, "GeluGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_attr_s(&t, "approximate", "sigmoid");
    g_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "approximate='sigmoid'");
    g_init(&t, "LeakyReluGrad", 2);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "expected 1 output, found 2");
    g_init(&t, "DropoutGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "input 1 (Mask) must be bool, found float");
    g_init(&t, "DropoutTrain", 2);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_attr_f(&t, "ratio", 1.0f);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "ratio must be in [0, 1), found 1");
    g_init(&t, "DropoutTrain", 3);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "expected 1 or 2 outputs (Y, Mask), found 3");
    /* the ops are in domain pippy only */
    g_init(&t, "ReluGrad", 1);
    t.d.domain = "";
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    G_IN(&t, PIPPY_DT_FLOAT, 4);
    g_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "not supported");
}
END_TEST

/* ================================ Dropout ================================ */

static void dropout_op(g_op *t, int n_out, int64_t n, float ratio, int64_t seed)
{
    g_init(t, "DropoutTrain", n_out);
    G_IN(t, PIPPY_DT_FLOAT, n);
    g_attr_f(t, "ratio", ratio);
    g_attr_i(t, "seed", seed);
}

static int64_t count_kept(const uint8_t *m, int64_t n)
{
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        k += m[i];
    return k;
}

START_TEST(dropout_train_and_grad)
{
    enum { N = 200000 };
    const float ratio = 0.3f;
    const double p = 1 - (double)ratio, sd = sqrt(N * p * (1 - p));
    float *x = g_randv(N, -2, 2), *y = malloc(N * 4), *y2 = malloc(N * 4);
    uint8_t *m[3] = {malloc(N), malloc(N), malloc(N)};
    g_op t;
    dropout_op(&t, 2, N, ratio, 42);
    pippy_kernel *k = g_create(&t, 0);
    pippy_kernel_run(k, (const void *[]){x}, (void *[]){y, m[0]});
    pippy_kernel_run(k, (const void *[]){x}, (void *[]){y2, m[1]});
    /* reset: the next run is run 0 again (the stage programs' warm-up relies on it) */
    pippy_kernel_reset(k);
    pippy_kernel_run(k, (const void *[]){x}, (void *[]){y2, m[2]});
    ck_assert(memcmp(m[0], m[2], N) == 0 && memcmp(y, y2, N * 4) == 0);
    pippy_kernel_destroy(k);
    /* Y = X * Mask / (1 - ratio), within the rounding of 1 / (1 - ratio) and of the product */
    for (int i = 0; i < N; i++) {
        double want = m[0][i] ? (double)x[i] / (1 - (double)ratio) : 0;
        G_CHECK(m[0][i] <= 1 && fabs(y[i] - want) <= 2.5 * EPS32 * fabs(want), "Y[%d] = %g, want %g", i, y[i],
                want);
    }
    /* Bernoulli(1 - ratio): the kept count within 5 sd; neighbours independent (both kept ~ p^2) */
    int64_t kept = count_kept(m[0], N), pairs = 0, same = 0;
    G_CHECK(fabs((double)kept - N * p) < 5 * sd, "kept %lld of %d", (long long)kept, N);
    for (int i = 0; i + 1 < N; i++)
        pairs += m[0][i] && m[0][i + 1];
    G_CHECK(fabs((double)pairs - (N - 1) * p * p) < 5 * sqrt(N * p * p * (1 - p * p)) * 2, "pairs %lld",
            (long long)pairs);
    /* the second run draws a new mask, independent of the first (equal with p^2 + (1-p)^2) */
    for (int i = 0; i < N; i++)
        same += m[0][i] == m[1][i];
    double q = p * p + (1 - p) * (1 - p);
    G_CHECK(fabs((double)same - N * q) < 5 * sqrt(N * q * (1 - q)), "runs 1 and 2 agree on %lld", (long long)same);
    /* deterministic: a new kernel with the same seed repeats run 1, also the reference and a
     * smaller tensor (element i depends on i only); another seed does not */
    dropout_op(&t, 2, N, ratio, 42);
    g_run(&t, 1, (const void *[]){x}, (void *[]){y2, m[2]});
    ck_assert(memcmp(m[0], m[2], N) == 0 && memcmp(y, y2, N * 4) == 0);
    dropout_op(&t, 2, 1000, ratio, 42);
    g_run(&t, 0, (const void *[]){x}, (void *[]){y2, m[2]});
    ck_assert(memcmp(m[0], m[2], 1000) == 0);
    dropout_op(&t, 1, N, ratio, 42); /* without the Mask output: the same Y */
    g_run(&t, 0, (const void *[]){x}, (void *[]){y2});
    ck_assert(memcmp(y, y2, N * 4) == 0);
    dropout_op(&t, 2, N, ratio, 43);
    g_run(&t, 0, (const void *[]){x}, (void *[]){y2, m[2]});
    same = 0;
    for (int i = 0; i < N; i++)
        same += m[0][i] == m[2][i];
    G_CHECK(fabs((double)same - N * q) < 5 * sqrt(N * q * (1 - q)), "seeds 42 and 43 agree on %lld",
            (long long)same);
    /* ratio 0 keeps everything */
    dropout_op(&t, 2, N, 0, 1);
    g_run(&t, 0, (const void *[]){x}, (void *[]){y2, m[2]});
    ck_assert(count_kept(m[2], N) == N && memcmp(x, y2, N * 4) == 0);

    /* DropoutGrad: dX = dY * Mask / (1 - ratio) */
    float *dy = g_randv(N, -1, 1), *dx[2] = {malloc(N * 4), malloc(N * 4)};
    for (int ref = 0; ref < 2; ref++) {
        g_init(&t, "DropoutGrad", 1);
        G_IN(&t, PIPPY_DT_FLOAT, N);
        G_IN(&t, PIPPY_DT_BOOL, N);
        g_attr_f(&t, "ratio", ratio);
        g_run(&t, ref, (const void *[]){dy, m[0]}, (void *[]){dx[ref]});
        for (int i = 0; i < N; i++) {
            double want = m[0][i] ? (double)dy[i] / (1 - (double)ratio) : 0;
            G_CHECK(fabs(dx[ref][i] - want) <= 2.5 * EPS32 * fabs(want), "dX[%d] = %g, want %g", i, dx[ref][i],
                    want);
        }
    }
    ck_assert(memcmp(dx[0], dx[1], N * 4) == 0);
    free(x);
    free(y);
    free(y2);
    free(dy);
    for (int i = 0; i < 3; i++)
        free(m[i]);
    free(dx[0]);
    free(dx[1]);
}
END_TEST

/* ================================ SumTo ================================ */

/* Exact sums in double, written out as broadcasting defines them: dY element i feeds the dX
 * element whose index is i's (right-aligned) with 0 where dX has extent 1. abs: sums of |dY|. */
static void sum_to_exact(int ry, const int64_t *dy_dims, int rx, const int64_t *dx_dims, const float *x, double *sum,
                         double *abs)
{
    int64_t n = g_numel(ry, dy_dims), m = g_numel(rx, dx_dims);
    for (int64_t o = 0; o < m; o++)
        sum[o] = abs[o] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[PIPPY_MAX_RANK] = {0}, rem = i, o = 0;
        for (int d = ry - 1; d >= 0; d--) {
            idx[d] = rem % dy_dims[d];
            rem /= dy_dims[d];
        }
        for (int d = 0; d < rx; d++)
            o = o * dx_dims[d] + (dx_dims[d] == 1 ? 0 : idx[ry - rx + d]);
        sum[o] += x[i];
        abs[o] += fabs(x[i]);
    }
}

/* Bound on |got - exact| in float roundings (2^-24) of |exact| + sum |terms| (+ |old value|
 * with accumulate): a depth-3 float tree and the final rounding make at most 4. Measured:
 * 0.30 (SumTo), 1.13 (GatherGrad). A running float sum is ~100 or more on the long cases. */
#define SUM_TOL 4.0
static double g_worst_sum; /* the largest seen, for PIPPY_TEST_VERBOSE */

/* got against want = init + sum (init: NULL for 0): within tol float roundings of the magnitudes. */
static void ck_sums(const char *what, const float *got, const float *init, const double *sum, const double *abs,
                    int64_t m, double tol)
{
    for (int64_t o = 0; o < m; o++) {
        double want = (init ? (double)init[o] : 0) + sum[o], mag = fabs(want) + abs[o] + (init ? fabs(init[o]) : 0);
        double e = fabs((double)got[o] - want) / (EPS32 * (mag > 0 ? mag : 1));
        g_worst_sum = fmax(g_worst_sum, e);
        G_CHECK(e <= tol, "%s: element %lld is %.9g, exact %.9g (error %.3g roundings)", what, (long long)o,
                got[o], want, e);
    }
}

/* Run t (fast or reference) into got[m]: over init with accumulate, else over NaNs (every
 * element must be written); then check it against init + the exact sums. */
static void sums_run(g_op *t, int ref, int acc, const void *const *in, const float *init, float *got,
                     const double *sum, const double *abs, int64_t m)
{
    char what[64];
    if (acc)
        memcpy(got, init, (size_t)m * 4);
    else
        for (int64_t o = 0; o < m; o++)
            got[o] = NAN;
    g_run(t, ref, in, (void *[]){got});
    snprintf(what, sizeof what, "%s %s%s", t->d.op, ref ? "reference" : "fast", acc ? " accumulating" : "");
    ck_sums(what, got, acc ? init : NULL, sum, abs, m, SUM_TOL);
}

/* Fast vs reference: each is within its bound of the exact sums, so within both of each other. */
static void sums_agree(const char *op, const float *fast, const float *ref, const double *sum, const double *abs,
                       int64_t m)
{
    for (int64_t o = 0; o < m; o++)
        G_CHECK(fabs(fast[o] - ref[o]) <= 2 * SUM_TOL * EPS32 * (fabs(sum[o]) + abs[o] + 2),
                "%s: fast %.9g vs reference %.9g", op, fast[o], ref[o]);
}

static void sum_to_op(g_op *t, int ry, const int64_t *dy_dims, int rx, const int64_t *dx_dims, int accumulate)
{
    g_init(t, "SumTo", 1);
    g_in(t, PIPPY_DT_FLOAT, ry, dy_dims);
    g_attr_ints(t, "shape", rx, dx_dims);
    if (accumulate)
        g_attr_i(t, "pippy.accumulate", 1);
}

/* SumTo on one pattern, fast and reference, plain and accumulating, against exact sums; the
 * two paths also against each other. x in [lo, hi). Measured: at most 1.0 rounding. */
static void sum_to_check(int ry, const int64_t *dy_dims, int rx, const int64_t *dx_dims, double lo, double hi)
{
    int64_t n = g_numel(ry, dy_dims), m = g_numel(rx, dx_dims);
    float *x = g_randv(n, lo, hi), *init = g_randv(m, -1, 1);
    float *got[2] = {malloc((size_t)(m + 1) * 4), malloc((size_t)(m + 1) * 4)};
    double *sum = malloc((size_t)(m + 1) * 8), *abs = malloc((size_t)(m + 1) * 8);
    sum_to_exact(ry, dy_dims, rx, dx_dims, x, sum, abs);
    for (int acc = 0; acc < 2; acc++) {
        for (int ref = 0; ref < 2; ref++) {
            g_op t;
            sum_to_op(&t, ry, dy_dims, rx, dx_dims, acc);
            g_infer_ok(&t);
            ck_assert_int_eq(t.d.out[0].rank, rx);
            for (int i = 0; i < rx; i++)
                ck_assert_int_eq(t.d.out[0].dims[i], dx_dims[i]);
            sums_run(&t, ref, acc, (const void *[]){x}, init, got[ref], sum, abs, m);
        }
        sums_agree("SumTo", got[0], got[1], sum, abs, m);
    }
    free(x);
    free(init);
    free(got[0]);
    free(got[1]);
    free(sum);
    free(abs);
}
#define SUM_TO(lo, hi, DY, DX) sum_to_check(G_DIMS DY, G_DIMS DX, lo, hi)

START_TEST(sum_to_patterns)
{
    SUM_TO(-1, 1, (6, 5), (5));          /* leading rows */
    SUM_TO(-1, 1, (6, 5), (6, 1));       /* trailing */
    SUM_TO(-1, 1, (6, 5), (1, 1));       /* everything, keeping rank */
    SUM_TO(-1, 1, (2, 3, 4), (3, 1));    /* leading and trailing */
    SUM_TO(-1, 1, (2, 3, 4), (1, 3, 1)); /* the same, same rank */
    SUM_TO(-1, 1, (2, 3, 4, 5), (3, 1, 5));        /* a middle dim */
    SUM_TO(-1, 1, (2, 3, 4, 5), (2, 1, 4, 1));     /* alternating */
    SUM_TO(-1, 1, (2, 3, 4, 5), (1, 3, 1, 5));
    SUM_TO(-1, 1, (2, 1, 4), (1, 4));    /* dY has an extent-1 dim */
    SUM_TO(-1, 1, (5, 1, 3), (5, 1, 1));
    SUM_TO(-1, 1, (4, 5), (4, 5));       /* nothing summed: a copy */
    SUM_TO(-1, 1, (1, 4, 5), (4, 5));
    SUM_TO(-1, 1, (7), (1));
    SUM_TO(-1, 1, (0, 3), (3));          /* empty sums: zeros */
    SUM_TO(-1, 1, (3, 0), (3, 1));
    SUM_TO(-1, 1, (3, 0), (0));
    SUM_TO(-1, 1, (9, 17, 33), (17, 33)); /* rows not a multiple of 8, odd lengths */
    SUM_TO(-1, 1, (9, 17, 67), (9, 17, 1));
    /* scalars: to a scalar, from a scalar */
    sum_to_check(2, (int64_t[]){6, 5}, 0, NULL, -1, 1);
    sum_to_check(3, (int64_t[]){2, 3, 4}, 0, NULL, -1, 1);
    sum_to_check(0, NULL, 0, NULL, -1, 1);
}
END_TEST

/* Long reductions of same-signed values, where a float accumulator drifts far off (a naive
 * running float sum is ~500 roundings out here) and fast vs reference on large random
 * inputs of several patterns. */
START_TEST(sum_to_long_and_large)
{
    SUM_TO(0, 0.2, (262144, 4), (4));
    SUM_TO(0, 0.2, (4, 262144), (4, 1));
    SUM_TO(0, 0.2, (64, 64, 64, 4), (1, 4));
    SUM_TO(-1, 1, (128, 256), (256));
    SUM_TO(-1, 1, (32, 64, 256), (256));
    SUM_TO(-1, 1, (256, 128), (256, 1));
    SUM_TO(-1, 1, (64, 33, 17), (33, 1));
    SUM_TO(-1, 1, (8, 16, 32, 4), (16, 1, 4));
    SUM_TO(-1, 1, (8, 16, 32, 4), (8, 1, 32, 1));
    if (g_verbose())
        fprintf(stderr, "SumTo: max error %.3g float roundings of (|sum| + sum |terms|)\n", g_worst_sum);
}
END_TEST

START_TEST(sum_to_infer_errors)
{
    g_op t;
    sum_to_op(&t, G_DIMS(6, 5), G_DIMS(4), 0);
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "shape dim 0 is 4, which does not broadcast to dY float[6,5] (5 there)");
    sum_to_op(&t, G_DIMS(6, 5), G_DIMS(2, 5), 0);
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "shape dim 0 is 2, which does not broadcast");
    sum_to_op(&t, G_DIMS(6, 5), G_DIMS(1, 6, 5), 0);
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "shape has rank 3, above dY's float[6,5]");
    g_init(&t, "SumTo", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 6, 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "attribute 'shape' (INTS) is required");
    g_init(&t, "SumTo", 1);
    G_IN(&t, PIPPY_DT_INT64, 6, 5);
    G_INTS(&t, "shape", 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "input 0 (dY) must be float, found int64[6,5]");
    g_init(&t, "SumTo", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 6, 5);
    G_IN(&t, PIPPY_DT_FLOAT, 5);
    G_INTS(&t, "shape", 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "expected 1 input (dY), found 2");
    sum_to_op(&t, G_DIMS(6, 5), G_DIMS(5), 0);
    g_attr_i(&t, "pippy.accumulate", 2);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "pippy.accumulate must be INT 0 or 1");
}
END_TEST

/* ================================ GatherGrad ================================ */

/* Exact: zeros, then each in-range index's dY slice added in double; pad (INT64_MIN: none): the
 * row whose slices are dropped (pippy.padding_idx). */
static void gather_grad_exact(const int64_t *data, int rank, int axis, const int64_t *idx, int64_t n_idx,
                              const float *dy, double *sum, double *abs, int64_t pad)
{
    int64_t outer = 1, inner = 1, v = data[axis];
    for (int i = 0; i < axis; i++)
        outer *= data[i];
    for (int i = axis + 1; i < rank; i++)
        inner *= data[i];
    for (int64_t i = 0; i < outer * v * inner; i++)
        sum[i] = abs[i] = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < n_idx; j++) {
            int64_t i = idx[j] < 0 ? idx[j] + v : idx[j];
            if (i < 0 || i >= v || i == (pad < 0 && pad != INT64_MIN ? pad + v : pad))
                continue;
            for (int64_t r = 0; r < inner; r++) {
                double g = dy[(o * n_idx + j) * inner + r];
                sum[(o * v + i) * inner + r] += g;
                abs[(o * v + i) * inner + r] += fabs(g);
            }
        }
}

static void gather_grad_op(g_op *t, int rank, const int64_t *data, int axis, int32_t idx_dt, int ri,
                           const int64_t *idx_dims, int accumulate, int64_t pad)
{
    int64_t dy[PIPPY_MAX_RANK];
    int k = 0, a = axis < 0 ? axis + rank : axis;
    for (int i = 0; i < a; i++)
        dy[k++] = data[i];
    for (int i = 0; i < ri; i++)
        dy[k++] = idx_dims[i];
    for (int i = a + 1; i < rank; i++)
        dy[k++] = data[i];
    g_init(t, "GatherGrad", 1);
    g_in(t, PIPPY_DT_FLOAT, k, dy);
    g_in(t, idx_dt, ri, idx_dims);
    g_attr_ints(t, "shape", rank, data);
    g_attr_i(t, "axis", axis);
    if (accumulate)
        g_attr_i(t, "pippy.accumulate", 1);
    if (pad != INT64_MIN)
        g_attr_i(t, "pippy.padding_idx", pad);
}

/* GatherGrad on one case, int64 and int32 indices, fast and reference, plain and accumulating,
 * against exact sums, and fast vs reference. Measured: at most 0.5 roundings. pad: as in
 * gather_grad_exact. */
static void gather_grad_check_pad(int rank, const int64_t *data, int axis, int ri, const int64_t *idx_dims,
                                  const int64_t *idx, int64_t pad)
{
    int a = axis < 0 ? axis + rank : axis;
    int64_t n_idx = g_numel(ri, idx_dims), m = g_numel(rank, data);
    int64_t n = g_numel(a, data) * n_idx * g_numel(rank - a - 1, data + a + 1);
    float *dy = g_randv(n, -1, 1), *init = g_randv(m, -1, 1);
    float *got[2] = {malloc((size_t)(m + 1) * 4), malloc((size_t)(m + 1) * 4)};
    double *sum = malloc((size_t)(m + 1) * 8), *abs = malloc((size_t)(m + 1) * 8);
    int32_t *idx32 = malloc((size_t)(n_idx + 1) * 4);
    for (int64_t j = 0; j < n_idx; j++)
        idx32[j] = (int32_t)idx[j];
    gather_grad_exact(data, rank, a, idx, n_idx, dy, sum, abs, pad);
    for (int i32 = 0; i32 < 2; i32++)
        for (int acc = 0; acc < 2; acc++) {
            for (int ref = 0; ref < 2; ref++) {
                g_op t;
                gather_grad_op(&t, rank, data, axis, i32 ? PIPPY_DT_INT32 : PIPPY_DT_INT64, ri, idx_dims, acc, pad);
                g_infer_ok(&t);
                ck_assert(pippy_tdesc_numel(&t.d.out[0]) == m && t.d.out[0].rank == rank);
                const void *ix = i32 ? (const void *)idx32 : (const void *)idx;
                sums_run(&t, ref, acc, (const void *[]){dy, ix}, init, got[ref], sum, abs, m);
            }
            sums_agree("GatherGrad", got[0], got[1], sum, abs, m);
        }
    free(dy);
    free(init);
    free(got[0]);
    free(got[1]);
    free(sum);
    free(abs);
    free(idx32);
}

static void gather_grad_check(int rank, const int64_t *data, int axis, int ri, const int64_t *idx_dims,
                              const int64_t *idx)
{
    gather_grad_check_pad(rank, data, axis, ri, idx_dims, idx, INT64_MIN);
}

START_TEST(gather_grad_cases)
{
    /* axis 0, negative and repeated indices */
    gather_grad_check(G_DIMS(5, 3), 0, G_DIMS(2, 4), (int64_t[]){0, -1, 4, 0, 2, 2, -5, 1});
    /* axis 1 (4 and -1 are the same row) */
    gather_grad_check(G_DIMS(2, 5, 3), 1, G_DIMS(3), (int64_t[]){4, -1, 0});
    /* the last axis, 2-d indices */
    gather_grad_check(G_DIMS(2, 3, 4), 2, G_DIMS(2, 2), (int64_t[]){3, 3, -4, 1});
    /* axis -1, a scalar index */
    gather_grad_check(G_DIMS(3, 4), -1, 0, NULL, (int64_t[]){-2});
    /* out of range (5, -6): their slices are dropped */
    gather_grad_check(G_DIMS(5, 2), 0, G_DIMS(4), (int64_t[]){1, 5, -6, 3});
    /* no indices; an empty table (every index out of range) */
    gather_grad_check(G_DIMS(5, 2), 0, G_DIMS(0), (int64_t[]){0});
    gather_grad_check(G_DIMS(0, 3), 0, G_DIMS(2), (int64_t[]){0, 1});
    /* one row taken 3, 8, 9 and 17 times: the float trees and the double blocks */
    int64_t rep[37];
    for (int j = 0; j < 37; j++)
        rep[j] = j < 3 ? 0 : j < 11 ? 1 : j < 20 ? 2 : 3;
    gather_grad_check(G_DIMS(4, 19), 0, G_DIMS(37), rep);
    /* a padding row (--padding-idx): its slices dropped, given as a row or counted from the end, and
     * with accumulate that row keeps what it held */
    gather_grad_check_pad(G_DIMS(5, 3), 0, G_DIMS(2, 4), (int64_t[]){0, -1, 4, 0, 2, 2, -5, 1}, 0);
    gather_grad_check_pad(G_DIMS(5, 3), 0, G_DIMS(2, 4), (int64_t[]){0, -1, 4, 0, 2, 2, -5, 1}, -1);
    gather_grad_check_pad(G_DIMS(4, 19), 0, G_DIMS(37), rep, 2);
}
END_TEST

/* The embedding gradient, [32, 64] indices into a [512, 256] table: half the indices are one
 * token (a row summed ~1000 times), the rest random; and indices into a middle axis. */
START_TEST(gather_grad_large)
{
    enum { B = 32, T = 64, V = 512 };
    int64_t *idx = malloc(B * T * sizeof *idx);
    for (int j = 0; j < B * T; j++)
        idx[j] = g_rand() < 0.5 ? 7 : (int64_t)(g_rand() * V) - (g_rand() < 0.1 ? V : 0);
    gather_grad_check(G_DIMS(V, 256), 0, G_DIMS(B, T), idx);
    gather_grad_check(G_DIMS(6, V, 12), 1, G_DIMS(B, T), idx);
    free(idx);
    if (g_verbose())
        fprintf(stderr, "GatherGrad: max error %.3g float roundings of (|sum| + sum |terms|)\n", g_worst_sum);
}
END_TEST

START_TEST(gather_grad_infer_errors)
{
    g_op t;
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 4);
    G_IN(&t, PIPPY_DT_INT64, 2, 4);
    G_INTS(&t, "shape", 5, 3);
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "dY is float[2,4,4], expected float[2,4,3]");
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 3);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4);
    G_INTS(&t, "shape", 5, 3);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "input 1 (indices) must be int64 or int32, found float");
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 3);
    G_IN(&t, PIPPY_DT_INT64, 2, 4);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "attribute 'shape' (INTS) is required");
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 3);
    G_IN(&t, PIPPY_DT_INT64, 2, 4);
    G_INTS(&t, "shape", 5, 3);
    g_attr_i(&t, "axis", 2);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "axis 2 is out of range for rank 2");
    g_init(&t, "GatherGrad", 1);
    G_IN0(&t, PIPPY_DT_FLOAT);
    G_IN0(&t, PIPPY_DT_INT64);
    G_INTS0(&t, "shape");
    g_infer_fails(&t, PIPPY_ERR_INVALID, "shape must have rank >= 1");
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 3);
    G_INTS(&t, "shape", 5, 3);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "expected 2 inputs (dY, indices), found 1");
    g_init(&t, "GatherGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 2, 4, 3);
    G_IN(&t, PIPPY_DT_INT64, 2, 4);
    G_INTS(&t, "shape", 5, 3);
    g_attr_s(&t, "pippy.accumulate", "yes");
    g_infer_fails(&t, PIPPY_ERR_INVALID, "pippy.accumulate must be INT 0 or 1");
}
END_TEST

/* ================================ SliceGrad ================================ */

/* The indices ONNX Slice takes along one axis, written out as its spec says: negative start
 * and end count from the end, then clamp to [0, dim] (step > 0) or [0, dim - 1] / [-1, dim - 1]
 * (step < 0), then walk. */
static int64_t slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *sel)
{
    int64_t s = start < 0 ? start + dim : start, e = end < 0 ? end + dim : end, n = 0;
    if (step > 0) {
        s = s < 0 ? 0 : s > dim ? dim : s;
        e = e < 0 ? 0 : e > dim ? dim : e;
        for (int64_t i = s; i < e; i += step)
            sel[n++] = i;
    } else {
        s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
        e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
        for (int64_t i = s; i > e; i += step)
            sel[n++] = i;
    }
    return n;
}

typedef struct {
    int rank, n;
    int64_t x[PIPPY_MAX_RANK], starts[PIPPY_MAX_RANK], ends[PIPPY_MAX_RANK], axes[PIPPY_MAX_RANK],
        steps[PIPPY_MAX_RANK];
    int has_axes, has_steps;
} slice_case;

static void slice_grad_op(g_op *t, const slice_case *c, int rank, const int64_t *dy)
{
    g_init(t, "SliceGrad", 1);
    g_in(t, PIPPY_DT_FLOAT, rank, dy);
    g_attr_ints(t, "starts", c->n, c->starts);
    g_attr_ints(t, "ends", c->n, c->ends);
    if (c->has_axes)
        g_attr_ints(t, "axes", c->n, c->axes);
    if (c->has_steps)
        g_attr_ints(t, "steps", c->n, c->steps);
    g_attr_ints(t, "shape", c->rank, c->x);
}

/* The forward Slice on X, then SliceGrad of its output (fast and reference) must put every
 * value back where the spec's indices say, and zeros elsewhere. */
static void slice_grad_check(const slice_case *c)
{
    static int64_t sel[PIPPY_MAX_RANK][256];
    int64_t cnt[PIPPY_MAX_RANK], m = g_numel(c->rank, c->x);
    for (int d = 0; d < c->rank; d++) {
        ck_assert_int_le(c->x[d], 256);
        cnt[d] = slice_axis(c->x[d], 0, INT64_MAX, 1, sel[d]);
    }
    for (int i = 0; i < c->n; i++) {
        int d = (int)(c->has_axes ? (c->axes[i] < 0 ? c->axes[i] + c->rank : c->axes[i]) : i);
        cnt[d] = slice_axis(c->x[d], c->starts[i], c->ends[i], c->has_steps ? c->steps[i] : 1, sel[d]);
    }
    int64_t n = g_numel(c->rank, cnt);
    /* forward Slice (opset 13, constant inputs) gives dY and its shape */
    g_op f;
    g_init(&f, "Slice", 1);
    f.d.domain = "";
    f.d.opset = 13;
    g_in(&f, PIPPY_DT_FLOAT, c->rank, c->x);
    const int64_t *lists[4] = {c->starts, c->ends, c->axes, c->steps};
    for (int i = 0; i < 4; i++) {
        if ((i == 2 && !c->has_axes) || (i == 3 && !c->has_steps)) {
            f.d.n_in++;
            continue;
        }
        g_in(&f, PIPPY_DT_INT64, 1, (int64_t[]){c->n});
        f.d.in_const[f.d.n_in - 1] = lists[i];
    }
    float *x = g_randv(m, -1, 1), *dy = malloc((size_t)(n + 1) * 4), *got = malloc((size_t)(m + 1) * 4);
    g_run(&f, 0, (const void *[]){x, lists[0], lists[1], lists[2], lists[3]}, (void *[]){dy});
    ck_assert(pippy_tdesc_numel(&f.d.out[0]) == n);
    for (int ref = 0; ref < 2; ref++) {
        g_op t;
        slice_grad_op(&t, c, f.d.out[0].rank, f.d.out[0].dims);
        for (int64_t i = 0; i < m; i++)
            got[i] = NAN;
        g_run(&t, ref, (const void *[]){dy}, (void *[]){got});
        /* positions taken: mark them by walking the selected index lists */
        uint8_t *taken = calloc((size_t)m + 1, 1);
        for (int64_t i = 0; i < n; i++) {
            int64_t rem = i, pos = 0, str = 1;
            for (int d = c->rank - 1; d >= 0; d--) {
                pos += sel[d][rem % cnt[d]] * str;
                rem /= cnt[d];
                str *= c->x[d];
            }
            taken[pos] = 1;
        }
        for (int64_t i = 0; i < m; i++)
            G_CHECK(got[i] == (taken[i] ? x[i] : 0.0f), "SliceGrad %s: dX[%lld] = %g, want %g",
                    ref ? "reference" : "fast", (long long)i, got[i], taken[i] ? x[i] : 0.0f);
        free(taken);
    }
    free(x);
    free(dy);
    free(got);
}

START_TEST(slice_grad_cases)
{
    /* negative steps, clamping (start 20 -> 19, end -1000 -> -1) */
    slice_grad_check(&(slice_case){3, 3, {20, 10, 5}, {20, 10, 4}, {0, -1000, 1}, {0, 1, 2}, {-1, -3, -1}, 1, 1});
    /* leading rows, no steps */
    slice_grad_check(&(slice_case){3, 2, {20, 10, 5}, {0, 0}, {3, 10}, {0, 1}, {0}, 1, 0});
    /* negative axis and start, an end past the end, no axes */
    slice_grad_check(&(slice_case){3, 1, {20, 10, 5}, {-2}, {INT64_MAX}, {-1}, {0}, 1, 0});
    slice_grad_check(&(slice_case){2, 2, {7, 9}, {1, -1}, {7, 0}, {0}, {2, -2}, 0, 1});
    /* steps 3 and -4 in a larger tensor; a contiguous inner run */
    slice_grad_check(&(slice_case){3, 3, {64, 48, 40}, {1, -3, 2}, {60, 0, 40}, {0, 1, 2}, {3, -4, 1}, 1, 1});
    slice_grad_check(&(slice_case){3, 1, {64, 48, 40}, {5}, {40}, {1}, {1}, 1, 1});
    /* empty: start past the end; and a start past the end going backwards */
    slice_grad_check(&(slice_case){3, 1, {20, 10, 5}, {1000}, {1001}, {1}, {1}, 1, 1});
    slice_grad_check(&(slice_case){2, 1, {4, 6}, {-100}, {-200}, {1}, {-1}, 1, 1});
}
END_TEST

START_TEST(slice_grad_infer_errors)
{
    g_op t;
    slice_case c = {3, 2, {20, 10, 5}, {0, 0}, {3, 10}, {0, 1}, {0}, 1, 0};
    slice_grad_op(&t, &c, G_DIMS(3, 10, 4));
    g_infer_fails(&t, PIPPY_ERR_SHAPE, "dY is float[3,10,4], expected float[3,10,5]");
    g_init(&t, "SliceGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 3, 10, 5);
    G_INTS(&t, "starts", 0, 0);
    G_INTS(&t, "ends", 3);
    G_INTS(&t, "shape", 20, 10, 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "must have the same length (2, 1, -1, -1)");
    g_init(&t, "SliceGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 3, 10, 5);
    G_INTS(&t, "starts", 0);
    G_INTS(&t, "ends", 3);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "attribute 'shape' (INTS) is required");
    g_init(&t, "SliceGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 3, 10, 5);
    G_INTS(&t, "shape", 20, 10, 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "attributes 'starts' and 'ends' (INTS) are required");
    g_init(&t, "SliceGrad", 1);
    G_IN(&t, PIPPY_DT_FLOAT, 3, 10, 5);
    G_INTS(&t, "starts", 0);
    G_INTS(&t, "ends", 3);
    G_INTS(&t, "steps", 0);
    G_INTS(&t, "shape", 20, 10, 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "step for axis 0 is 0");
    g_init(&t, "SliceGrad", 1);
    G_IN(&t, PIPPY_DT_INT64, 3, 10, 5);
    G_INTS(&t, "starts", 0);
    G_INTS(&t, "ends", 3);
    G_INTS(&t, "shape", 20, 10, 5);
    g_infer_fails(&t, PIPPY_ERR_INVALID, "input 0 (dY) must be float, found int64");
}
END_TEST

/* ============== forward ops as the autodiff emits them, on float data ============== */

/* An ONNX op (opset 17) over float inputs; const_in: a bit per input known when compiling. */
static void fw_op(g_op *t, const char *op, int n_in, const int *ranks, const int64_t (*dims)[PIPPY_MAX_RANK],
                  const int32_t *dts, const void *const *data, unsigned const_in)
{
    g_init(t, op, 1);
    t->d.domain = "";
    t->d.opset = 17;
    for (int i = 0; i < n_in; i++) {
        g_in(t, dts ? dts[i] : PIPPY_DT_FLOAT, ranks[i], dims[i]);
        if (const_in & (1u << i))
            t->d.in_const[i] = data[i];
    }
}

/* Run t fast and reference; both within tol roundings (2^-24 relative) of want. */
static void fw_check(g_op *t, const void *const *in, const double *want, double tol)
{
    g_infer_ok(t);
    int64_t n = pippy_tdesc_numel(&t->d.out[0]);
    float *got = malloc((size_t)(n + 1) * 4);
    for (int ref = 0; ref < 2; ref++) {
        g_run(t, ref, in, (void *[]){got});
        for (int64_t i = 0; i < n; i++)
            G_CHECK(fabs(got[i] - want[i]) <= tol * EPS32 * fabs(want[i]), "%s (%s) [%lld]: %.9g, want %.9g",
                    t->d.op, ref ? "reference" : "fast", (long long)i, got[i], want[i]);
    }
    free(got);
}

/* Offset into an input of rank ri broadcast to out dims od (rank r) for output element i. */
static int64_t bcast_off(int r, const int64_t *od, int ri, const int64_t *id, int64_t i)
{
    int64_t off = 0, str = 1;
    for (int d = r - 1; d >= 0; d--) {
        int64_t k = i % od[d];
        i /= od[d];
        int di = d - (r - ri);
        if (di >= 0) {
            off += id[di] == 1 ? 0 : k * str;
            str *= id[di];
        }
    }
    return off;
}

/* Add, Sub, Mul, Div with broadcasting ([4,1,5] with [3,1] and with a constant scalar), Pow
 * by constant scalar exponents, Neg, Exp: IEEE ops exact, pow within 2 roundings, exp 4. */
START_TEST(forward_arith_for_autodiff)
{
    static const char *ops[] = {"Add", "Sub", "Mul", "Div"};
    const int64_t od[3] = {4, 3, 5};
    float *a = g_randv(20, 0.5, 2), *b = g_randv(3, -2, -0.5), c = 0.37f;
    double want[60];
    for (int o = 0; o < 4; o++)
        for (int sc = 0; sc < 2; sc++) { /* b as [3,1], then as a constant scalar */
            g_op t;
            const void *in[2] = {a, sc ? (const void *)&c : (const void *)b};
            fw_op(&t, ops[o], 2, (int[]){3, sc ? 0 : 2}, (const int64_t[][PIPPY_MAX_RANK]){{4, 1, 5}, {3, 1}}, NULL, in,
                  sc ? 2u : 0u);
            const int64_t *odims = sc ? (const int64_t[]){4, 1, 5} : od;
            for (int64_t i = 0; i < g_numel(3, odims); i++) {
                double x = a[bcast_off(3, odims, 3, (int64_t[]){4, 1, 5}, i)];
                double y = sc ? c : b[bcast_off(3, odims, 2, (int64_t[]){3, 1}, i)];
                want[i] = o == 0 ? x + y : o == 1 ? x - y : o == 2 ? x * y : x / y;
                want[i] = (float)want[i]; /* one IEEE rounding */
            }
            fw_check(&t, in, want, 0);
        }
    static const float exps[] = {2.0f, 0.5f, -1.0f, 3.0f};
    for (int e = 0; e < 4; e++) {
        g_op t;
        const void *in[2] = {a, &exps[e]};
        fw_op(&t, "Pow", 2, (int[]){2, 0}, (const int64_t[][PIPPY_MAX_RANK]){{4, 5}}, NULL, in, 2u);
        for (int i = 0; i < 20; i++)
            want[i] = pow(a[i], exps[e]);
        fw_check(&t, in, want, 2);
    }
    enum { N = 5000 }; /* above the size where Exp goes to oneDNN */
    float *x = g_randv(N, -10, 10);
    double *w = malloc(N * sizeof *w);
    g_op t;
    fw_op(&t, "Neg", 1, (int[]){1}, (const int64_t[][PIPPY_MAX_RANK]){{N}}, NULL, (const void *[]){x}, 0);
    for (int i = 0; i < N; i++)
        w[i] = -(double)x[i];
    fw_check(&t, (const void *[]){x}, w, 0);
    fw_op(&t, "Exp", 1, (int[]){1}, (const int64_t[][PIPPY_MAX_RANK]){{N}}, NULL, (const void *[]){x}, 0);
    for (int i = 0; i < N; i++)
        w[i] = exp(x[i]);
    fw_check(&t, (const void *[]){x}, w, 4); /* oneDNN's exp: measured 2.4 roundings */
    free(a);
    free(b);
    free(x);
    free(w);
}
END_TEST

/* Where with a constant scalar on either side, Expand to a constant shape, Transpose, Concat,
 * Reshape to a constant shape (with -1), Cast float -> float: all exact moves. (Slice with
 * constant starts/ends is run in slice_grad_cases.) */
START_TEST(forward_moves_for_autodiff)
{
    float *x = g_randv(24, -1, 1), *y = g_randv(6, -1, 1), zero = 0;
    uint8_t cond[24];
    double want[48];
    for (int i = 0; i < 24; i++)
        cond[i] = g_rand() < 0.5;
    for (int side = 0; side < 2; side++) {
        g_op t;
        const void *xs = x, *zs = &zero, *in[3] = {cond, side ? xs : zs, side ? zs : xs};
        fw_op(&t, "Where", 3, (int[]){3, side ? 3 : 0, side ? 0 : 3},
              (const int64_t[][PIPPY_MAX_RANK]){{2, 3, 4}, {2, 3, 4}, {2, 3, 4}},
              (int32_t[]){PIPPY_DT_BOOL, PIPPY_DT_FLOAT, PIPPY_DT_FLOAT}, in, side ? 4u : 2u);
        for (int i = 0; i < 24; i++)
            want[i] = cond[i] ? (side ? x[i] : 0) : (side ? 0 : x[i]);
        fw_check(&t, in, want, 0);
    }
    g_op t;
    const int64_t shape[3] = {2, 3, 4}, flat[2] = {-1, 4};
    fw_op(&t, "Expand", 2, (int[]){2, 1}, (const int64_t[][PIPPY_MAX_RANK]){{3, 1}, {3}},
          (int32_t[]){PIPPY_DT_FLOAT, PIPPY_DT_INT64}, (const void *[]){y, shape}, 2u);
    for (int i = 0; i < 24; i++)
        want[i] = y[(i / 4) % 3];
    fw_check(&t, (const void *[]){y, shape}, want, 0);
    fw_op(&t, "Transpose", 1, (int[]){3}, (const int64_t[][PIPPY_MAX_RANK]){{2, 3, 4}}, NULL, (const void *[]){x}, 0);
    G_INTS(&t, "perm", 2, 0, 1);
    for (int k = 0; k < 4; k++) /* out [4,2,3][k][i][j] = x[i][j][k] */
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                want[(k * 2 + i) * 3 + j] = x[(i * 3 + j) * 4 + k];
    fw_check(&t, (const void *[]){x}, want, 0);
    fw_op(&t, "Concat", 2, (int[]){2, 2}, (const int64_t[][PIPPY_MAX_RANK]){{2, 3}, {2, 12}}, NULL,
          (const void *[]){y, x}, 0);
    g_attr_i(&t, "axis", 1);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 15; c++)
            want[r * 15 + c] = c < 3 ? y[r * 3 + c] : x[r * 12 + c - 3];
    fw_check(&t, (const void *[]){y, x}, want, 0);
    fw_op(&t, "Reshape", 2, (int[]){3, 1}, (const int64_t[][PIPPY_MAX_RANK]){{2, 3, 4}, {2}},
          (int32_t[]){PIPPY_DT_FLOAT, PIPPY_DT_INT64}, (const void *[]){x, flat}, 2u);
    for (int i = 0; i < 24; i++)
        want[i] = x[i];
    fw_check(&t, (const void *[]){x, flat}, want, 0);
    ck_assert(t.d.out[0].rank == 2 && t.d.out[0].dims[0] == 6);
    fw_op(&t, "Cast", 1, (int[]){3}, (const int64_t[][PIPPY_MAX_RANK]){{2, 3, 4}}, NULL, (const void *[]){x}, 0);
    g_attr_i(&t, "to", PIPPY_DT_FLOAT);
    fw_check(&t, (const void *[]){x}, want, 0);
    free(x);
    free(y);
}
END_TEST

static Suite *backend_grad_light_suite(void)
{
    Suite *s = suite_create("backend_grad_light");
    TCase *tc = tcase_create("eltwise_grad");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, eltwise_grad_vs_finite_differences);
    tcase_add_test(tc, eltwise_grad_edges);
    tcase_add_test(tc, eltwise_grad_infer_errors);
    tcase_add_test(tc, dropout_train_and_grad);
    suite_add_tcase(s, tc);
    tc = tcase_create("sum_to");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sum_to_patterns);
    tcase_add_test(tc, sum_to_long_and_large);
    tcase_add_test(tc, sum_to_infer_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("gather_slice_grad");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, gather_grad_cases);
    tcase_add_test(tc, gather_grad_large);
    tcase_add_test(tc, gather_grad_infer_errors);
    tcase_add_test(tc, slice_grad_cases);
    tcase_add_test(tc, slice_grad_infer_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("forward_for_autodiff");
    tcase_add_test(tc, forward_arith_for_autodiff);
    tcase_add_test(tc, forward_moves_for_autodiff);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(backend_grad_light_suite)
