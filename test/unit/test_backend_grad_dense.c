/* test_backend_grad_dense.c — the backward kernels of the dense families (softmax_grad.c,
 * norm_grad.c, conv_grad.c, pool_grad.c, loss.c), MatMul's autodiff attributes, and the
 * forward kernels with their parameters given at run time (training).
 *
 * Gradients are checked against central finite differences of an independent forward written
 * here in double precision (plain loops), on small random inputs: for an op computing
 * dX = d(sum(dY * f(X, ...)))/dX, the test evaluates L = sum(dY * f) in double and perturbs each
 * element of X by +-h. Both kernels (reference and fast) must match within a bound close to what
 * float32 achieves (error = max |g - g_fd| / max |g_fd|; PIPPY_TEST_VERBOSE=1 prints the
 * measured errors). Then fast vs reference on larger inputs, and infer errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "dense_case.h"
#include "harness.h"

/* ------------------------------------------------------------------ finite differences */

#define GD_MAX_X 4

/* A scalar loss in double, L = sum(w * y), y = fwd(x[0], x[1], ...) (ny values), and the data it
 * reads. */
typedef struct gd_fd gd_fd;
struct gd_fd {
    void (*fwd)(const gd_fd *f, double *y);
    int64_t ny;
    double *x[GD_MAX_X];
    int64_t nx[GD_MAX_X];
    const double *w;
    const void *ctx;
};

static double gd_fd_loss(const gd_fd *f)
{
    double *y = malloc((size_t)(f->ny ? f->ny : 1) * sizeof *y), L = 0;
    ck_assert_ptr_nonnull(y);
    f->fwd(f, y);
    for (int64_t i = 0; i < f->ny; i++)
        L += f->w[i] * y[i];
    free(y);
    return L;
}

/* g = dL/dx[j] by central differences with step h (x[j] restored). */
static void gd_fd_grad(const gd_fd *f, int j, double h, double *g)
{
    for (int64_t i = 0; i < f->nx[j]; i++) {
        double v = f->x[j][i];
        f->x[j][i] = v + h;
        double lp = gd_fd_loss(f);
        f->x[j][i] = v - h;
        double lm = gd_fd_loss(f);
        f->x[j][i] = v;
        g[i] = (lp - lm) / (2 * h);
    }
}

/* max |a - b| / max |b|; *at the worst index. */
static double gd_err(const float *a, const double *b, int64_t n, int64_t *at)
{
    double scale = 0, worst = 0;
    *at = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(b[i]));
    if (scale == 0)
        scale = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / scale;
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return worst;
}

/* Worst errors measured per check, printed with PIPPY_TEST_VERBOSE. */
static void gd_expect(const char *label, const char *what, const float *got, const double *want, int64_t n,
                      double tol)
{
    int64_t at;
    double e = gd_err(got, want, n, &at);
    if (dc_verbose())
        printf("%s: %s error %.3g (bound %.3g)\n", label, what, e, tol);
    ck_assert_msg(e <= tol, "%s: %s[%lld] = %.9g, expected %.9g (error %.3g against the scale, bound %.3g)", label,
                  what, (long long)at, (double)got[at], want[at], e, tol);
}

static double *gd_rand(int64_t n, int mode)
{
    double *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = mode == DC_FILL_POSITIVE ? 1.0 + 0.5 * dc_uniform() : dc_uniform();
    return p;
}

static float *gd_f32(const double *p, int64_t n)
{
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)p[i];
    return f;
}

static float *gd_falloc(int64_t n)
{
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    ck_assert_ptr_nonnull(f);
    return f;
}

static int64_t gd_numel(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= dims[i];
    return n;
}

/* Run t (infer done inside) with the reference (ref = 1) or fast kernel on float inputs. */
static void gd_run(dcase *t, int ref, const float *const *in, float *const *out, const char *label)
{
    dc_run(t, ref, (const void *const *)in, (void *const *)out, label);
}

/* Run weight-gradient op t (its two outputs of n0 and n1 values, named name0 and name1) with the
 * reference or fast kernel, plainly or accumulating onto init (n0 + n1 values), and compare with
 * the finite-difference gradients g0, g1 (plus the starting values when accumulating). */
static void gd_check_wgrad(dcase *t, int ref, int acc, const float *const *in, const char *label, const char *name0,
                           const double *g0, int64_t n0, const char *name1, const double *g1, int64_t n1,
                           const double *init)
{
    if (acc)
        dc_attr_i(t, "pippy.accumulate", 1);
    float *o0 = gd_falloc(n0), *o1 = gd_falloc(n1);
    double *want = malloc((size_t)(n0 + n1) * sizeof *want);
    for (int64_t j = 0; j < n0 + n1; j++) {
        float v0 = acc ? (float)init[j] : NAN;
        *(j < n0 ? &o0[j] : &o1[j - n0]) = v0;
        want[j] = (j < n0 ? g0[j] : g1[j - n0]) + (acc ? (double)v0 : 0);
    }
    float *out[] = {o0, o1};
    gd_run(t, ref, in, out, label);
    char what[64];
    snprintf(what, sizeof what, "%s (%s%s)", name0, ref ? "reference" : "fast", acc ? ", accumulate" : "");
    gd_expect(label, what, o0, want, n0, 1e-6);
    snprintf(what, sizeof what, "%s (%s%s)", name1, ref ? "reference" : "fast", acc ? ", accumulate" : "");
    gd_expect(label, what, o1, want + n0, n1, 1e-6);
    free(o0), free(o1), free(want);
}

/* ------------------------------------------------------------------ Softmax / LogSoftmax */

typedef struct {
    int64_t outer, n, inner;
    int log;
} gd_sm;

/* y = softmax or log-softmax of x along n, in double. */
static void gd_softmax(const gd_sm *s, const double *x, double *y)
{
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t i = 0; i < s->inner; i++) {
            const double *xr = x + o * s->n * s->inner + i;
            double *yr = y + o * s->n * s->inner + i;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < s->n; j++)
                mx = fmax(mx, xr[j * s->inner]);
            for (int64_t j = 0; j < s->n; j++)
                sum += exp(xr[j * s->inner] - mx);
            for (int64_t j = 0; j < s->n; j++)
                yr[j * s->inner] = s->log ? xr[j * s->inner] - mx - log(sum) : exp(xr[j * s->inner] - mx) / sum;
        }
}

static void gd_softmax_fd(const gd_fd *f, double *y) { gd_softmax(f->ctx, f->x[0], y); }

START_TEST(test_softmax_grad_fd)
{
    static const struct {
        const char *op;
        int opset, rank;
        int64_t x[4];
        int axis; /* 99: absent */
    } cases[] = {
        {"SoftmaxGrad", 13, 2, {3, 5}, 99},      {"SoftmaxGrad", 13, 3, {2, 3, 4}, 0},
        {"SoftmaxGrad", 13, 3, {2, 3, 4}, 1},    {"SoftmaxGrad", 13, 3, {3, 7, 5}, -1},
        {"SoftmaxGrad", 11, 3, {2, 3, 4}, 99},   {"SoftmaxGrad", 11, 3, {2, 3, 5}, 0},
        {"SoftmaxGrad", 13, 1, {9}, 0},          {"LogSoftmaxGrad", 13, 2, {3, 5}, 99},
        {"LogSoftmaxGrad", 13, 3, {2, 3, 4}, 1}, {"LogSoftmaxGrad", 11, 3, {2, 3, 5}, 1},
        {"LogSoftmaxGrad", 12, 4, {2, 1, 3, 3}, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "%s case %zu", cases[c].op, c);
        int rank = cases[c].rank;
        int old = cases[c].opset < 13;
        int axis = cases[c].axis == 99 ? (old ? 1 : -1) : cases[c].axis;
        if (axis < 0)
            axis += rank;
        gd_sm s = {1, 1, 1, strcmp(cases[c].op, "LogSoftmaxGrad") == 0};
        for (int i = 0; i < rank; i++) {
            if (i < axis)
                s.outer *= cases[c].x[i];
            else if (i == axis || old)
                s.n *= cases[c].x[i];
            else
                s.inner *= cases[c].x[i];
        }
        int64_t n = gd_numel(rank, cases[c].x);
        dc_seed(700 + (unsigned)c);
        double *x = gd_rand(n, 0), *w = gd_rand(n, 0), *y = malloc((size_t)n * sizeof *y), *g = malloc((size_t)n * sizeof *g);
        for (int64_t i = 0; i < n; i++)
            x[i] *= 3; /* peaked enough that the softmax is not uniform */
        gd_softmax(&s, x, y);
        gd_fd f = {.fwd = gd_softmax_fd, .ny = n, .x = {x}, .nx = {n}, .w = w, .ctx = &s};
        gd_fd_grad(&f, 0, 1e-5, g);
        float *dy = gd_f32(w, n), *yf = gd_f32(y, n), *dx = gd_falloc(n);
        dcase t;
        for (int ref = 1; ref >= 0; ref--) {
            dc_init(&t, cases[c].op, cases[c].opset, 1);
            t.d.domain = "pippy";
            dc_in(&t, rank, cases[c].x);
            dc_in(&t, rank, cases[c].x);
            if (cases[c].axis != 99)
                dc_attr_i(&t, "axis", cases[c].axis);
            const float *in[] = {dy, yf};
            gd_run(&t, ref, in, &dx, label);
            gd_expect(label, ref ? "dX (reference)" : "dX (fast)", dx, g, n, 1e-6);
        }
        free(x), free(w), free(y), free(g), free(dy), free(yf), free(dx);
    }
}
END_TEST

START_TEST(test_softmax_grad_fast_vs_ref)
{
    static const struct {
        const char *op;
        int opset, rank;
        int64_t x[4];
        int axis;
    } cases[] = {
        {"SoftmaxGrad", 13, 3, {8, 128, 257}, -1}, {"SoftmaxGrad", 13, 4, {4, 33, 17, 9}, 1},
        {"SoftmaxGrad", 11, 3, {16, 12, 40}, 1},   {"SoftmaxGrad", 13, 4, {4, 4, 64, 64}, -1},
        {"SoftmaxGrad", 13, 2, {33, 13}, 1},       {"LogSoftmaxGrad", 13, 2, {64, 1000}, -1},
        {"LogSoftmaxGrad", 13, 3, {5, 31, 7}, 1},  {"LogSoftmaxGrad", 11, 3, {6, 10, 10}, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dcase t;
        dc_init(&t, cases[c].op, cases[c].opset, 1);
        t.d.domain = "pippy";
        dc_in(&t, cases[c].rank, cases[c].x);
        dc_in(&t, cases[c].rank, cases[c].x);
        dc_attr_i(&t, "axis", cases[c].axis);
        t.scaled = 1, t.tol = 2e-6, t.must_fast = 1;
        char label[96];
        snprintf(label, sizeof label, "%s fast case %zu", cases[c].op, c);
        dc_check_fast_vs_ref(&t, 750 + (unsigned)c, 0, label);
    }
}
END_TEST

START_TEST(test_softmax_grad_infer)
{
    dcase t;
    dc_init(&t, "SoftmaxGrad", 13, 1);
    t.d.domain = "pippy";
    DC_IN(&t, 3, 4);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "expected 2 inputs", "found 1");
    DC_IN(&t, 3, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "dY", "float[3,5]");
    t.d.in[1].dims[1] = 4;
    t.d.in[1].dtype = PIPPY_DT_INT64;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "int64");
    t.d.in[1].dtype = PIPPY_DT_FLOAT;
    dc_attr_i(&t, "axis", 2);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "axis 2", NULL);
}
END_TEST

/* ------------------------------------------------------------------ LayerNormalization */

typedef struct {
    int64_t outer, inner;
    double eps;
} gd_ln;

/* LayerNormalization in double: x [outer, inner], scale and bias full rows [inner]. */
static void gd_layernorm(const gd_ln *s, const double *x, const double *scale, const double *bias, double *y,
                         double *mean, double *inv)
{
    for (int64_t r = 0; r < s->outer; r++) {
        const double *xr = x + r * s->inner;
        double m = 0, v = 0;
        for (int64_t j = 0; j < s->inner; j++)
            m += xr[j];
        m /= (double)s->inner;
        for (int64_t j = 0; j < s->inner; j++)
            v += (xr[j] - m) * (xr[j] - m);
        v /= (double)s->inner;
        double iv = 1.0 / sqrt(v + s->eps);
        for (int64_t j = 0; j < s->inner; j++)
            y[r * s->inner + j] = (xr[j] - m) * iv * scale[j] + bias[j];
        if (mean)
            mean[r] = m;
        if (inv)
            inv[r] = iv;
    }
}

/* x[0] = X, x[1] = scale row, x[2] = bias row */
static void gd_layernorm_fd(const gd_fd *f, double *y) { gd_layernorm(f->ctx, f->x[0], f->x[1], f->x[2], y, NULL, NULL); }

/* Scale of shape sdims (broadcast against X.shape[axis:]) expanded into a full row. */
static void gd_broadcast_row(int xr, const int64_t *xd, int axis, int sr, const int64_t *sd, const double *s,
                             double *row)
{
    int nr = xr - axis;
    int64_t inner = gd_numel(nr, xd + axis);
    for (int64_t j = 0; j < inner; j++) {
        int64_t rem = j, si = 0, stride = 1;
        for (int i = 0; i < nr; i++) { /* from the last dim */
            int64_t c = rem % xd[xr - 1 - i];
            rem /= xd[xr - 1 - i];
            if (i < sr) {
                int64_t d = sd[sr - 1 - i];
                si += (d == 1 ? 0 : c) * stride;
                stride *= d;
            }
        }
        row[j] = s[si];
    }
}

static const struct {
    int rank;
    int64_t x[4];
    int axis; /* 99: absent */
    int srank;
    int64_t s[4];
} gd_ln_cases[] = {
    {2, {3, 7}, 99, 1, {7}},          {3, {2, 3, 5}, -1, 1, {5}},       {3, {2, 3, 5}, 1, 2, {3, 5}},
    {4, {2, 3, 2, 5}, -2, 2, {1, 5}}, {4, {2, 3, 2, 5}, 1, 1, {5}},     {3, {2, 3, 4}, 0, 3, {2, 3, 4}},
    {1, {9}, 0, 1, {9}},
};

/* Case c's X as [outer, inner] (eps 1e-5); *rank, *axis (normalized). */
static void gd_ln_case(size_t c, gd_ln *s, int *rank, int *axis)
{
    *rank = gd_ln_cases[c].rank;
    *axis = gd_ln_cases[c].axis == 99 ? -1 : gd_ln_cases[c].axis;
    if (*axis < 0)
        *axis += *rank;
    s->outer = gd_numel(*axis, gd_ln_cases[c].x);
    s->inner = gd_numel(*rank - *axis, gd_ln_cases[c].x + *axis);
    s->eps = 1e-5;
}

START_TEST(test_layernorm_grad_fd)
{
    for (size_t c = 0; c < sizeof gd_ln_cases / sizeof gd_ln_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "LayerNormalizationGrad case %zu", c);
        int rank, axis;
        gd_ln s;
        gd_ln_case(c, &s, &rank, &axis);
        const int64_t *xd = gd_ln_cases[c].x;
        int64_t n = s.outer * s.inner, ns = gd_numel(gd_ln_cases[c].srank, gd_ln_cases[c].s);
        dc_seed(800 + (unsigned)c);
        double *x = gd_rand(n, 0), *w = gd_rand(n, 0), *sc = gd_rand(ns, 0), *b = gd_rand(s.inner, 0);
        double *row = malloc((size_t)s.inner * sizeof *row), *y = malloc((size_t)n * sizeof *y);
        double *mean = malloc((size_t)s.outer * sizeof *mean), *inv = malloc((size_t)s.outer * sizeof *inv);
        double *g = malloc((size_t)n * sizeof *g);
        gd_broadcast_row(rank, xd, axis, gd_ln_cases[c].srank, gd_ln_cases[c].s, sc, row);
        gd_layernorm(&s, x, row, b, y, mean, inv);
        gd_fd f = {.fwd = gd_layernorm_fd, .ny = n, .x = {x, row, b}, .nx = {n, s.inner, s.inner}, .w = w, .ctx = &s};
        gd_fd_grad(&f, 0, 1e-5, g);
        float *dyf = gd_f32(w, n), *xf = gd_f32(x, n), *sf = gd_f32(sc, ns), *mf = gd_f32(mean, s.outer),
              *ivf = gd_f32(inv, s.outer), *dx = gd_falloc(n);
        int64_t st[4];
        for (int i = 0; i < rank; i++)
            st[i] = i < axis ? xd[i] : 1;
        for (int ref = 1; ref >= 0; ref--) {
            dcase t;
            dc_init(&t, "LayerNormalizationGrad", 17, 1);
            t.d.domain = "pippy";
            dc_in(&t, rank, xd);
            dc_in(&t, rank, xd);
            dc_in(&t, gd_ln_cases[c].srank, gd_ln_cases[c].s);
            dc_in(&t, rank, st);
            dc_in(&t, rank, st);
            if (gd_ln_cases[c].axis != 99)
                dc_attr_i(&t, "axis", gd_ln_cases[c].axis);
            const float *in[] = {dyf, xf, sf, mf, ivf};
            gd_run(&t, ref, in, &dx, label);
            gd_expect(label, ref ? "dX (reference)" : "dX (fast)", dx, g, n, 1e-6);
        }
        free(x), free(w), free(sc), free(b), free(row), free(y), free(mean), free(inv), free(g);
        free(dyf), free(xf), free(sf), free(mf), free(ivf), free(dx);
    }
}
END_TEST

START_TEST(test_layernorm_weight_grad_fd)
{
    for (size_t c = 0; c < sizeof gd_ln_cases / sizeof gd_ln_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "LayerNormalizationWeightGrad case %zu", c);
        int rank, axis;
        gd_ln s;
        gd_ln_case(c, &s, &rank, &axis);
        const int64_t *xd = gd_ln_cases[c].x;
        int64_t n = s.outer * s.inner, m = s.inner;
        dc_seed(850 + (unsigned)c);
        double *x = gd_rand(n, 0), *w = gd_rand(n, 0), *sc = gd_rand(m, 0), *b = gd_rand(m, 0);
        double *y = malloc((size_t)n * sizeof *y), *mean = malloc((size_t)s.outer * sizeof *mean);
        double *inv = malloc((size_t)s.outer * sizeof *inv), *gs = malloc((size_t)m * sizeof *gs);
        double *gb = malloc((size_t)m * sizeof *gb), *init = gd_rand(2 * m, 0);
        gd_layernorm(&s, x, sc, b, y, mean, inv);
        gd_fd f = {.fwd = gd_layernorm_fd, .ny = n, .x = {x, sc, b}, .nx = {n, m, m}, .w = w, .ctx = &s};
        gd_fd_grad(&f, 1, 1e-5, gs);
        gd_fd_grad(&f, 2, 1e-5, gb);
        float *dyf = gd_f32(w, n), *xf = gd_f32(x, n), *mf = gd_f32(mean, s.outer), *ivf = gd_f32(inv, s.outer);
        int64_t st[4];
        for (int i = 0; i < rank; i++)
            st[i] = i < axis ? xd[i] : 1;
        for (int v = 0; v < 4; v++) { /* reference / fast, then both accumulating */
            int ref = v % 2 == 0, acc = v >= 2;
            dcase t;
            dc_init(&t, "LayerNormalizationWeightGrad", 17, 2);
            t.d.domain = "pippy";
            dc_in(&t, rank, xd);
            dc_in(&t, rank, xd);
            dc_in(&t, rank, st);
            dc_in(&t, rank, st);
            if (gd_ln_cases[c].axis != 99)
                dc_attr_i(&t, "axis", gd_ln_cases[c].axis);
            const float *in[] = {dyf, xf, mf, ivf};
            gd_check_wgrad(&t, ref, acc, in, label, "dScale", gs, m, "dBias", gb, m, init);
            ck_assert_int_eq(t.d.out[0].rank, rank - axis);
        }
        free(x), free(w), free(sc), free(b), free(y), free(mean), free(inv), free(gs), free(gb), free(init);
        free(dyf), free(xf), free(mf), free(ivf);
    }
}
END_TEST

/* ------------------------------------------------------------------ BatchNormalization */

typedef struct {
    int64_t N, C, S;
    double eps;
} gd_bn;

/* Training-mode batch norm in double: batch mean and biased variance per channel. */
static void gd_batchnorm(const gd_bn *s, const double *x, const double *scale, const double *bias, double *y,
                         double *mean, double *var)
{
    double cnt = (double)(s->N * s->S);
    for (int64_t c = 0; c < s->C; c++) {
        double m = 0, v = 0;
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t j = 0; j < s->S; j++)
                m += x[(n * s->C + c) * s->S + j];
        m /= cnt;
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t j = 0; j < s->S; j++) {
                double d = x[(n * s->C + c) * s->S + j] - m;
                v += d * d;
            }
        v /= cnt;
        for (int64_t n = 0; n < s->N; n++)
            for (int64_t j = 0; j < s->S; j++) {
                int64_t at = (n * s->C + c) * s->S + j;
                y[at] = (x[at] - m) / sqrt(v + s->eps) * scale[c] + bias[c];
            }
        if (mean)
            mean[c] = m;
        if (var)
            var[c] = v;
    }
}

static void gd_batchnorm_fd(const gd_fd *f, double *y) { gd_batchnorm(f->ctx, f->x[0], f->x[1], f->x[2], y, NULL, NULL); }

static const struct {
    int rank;
    int64_t x[5];
} gd_bn_cases[] = {
    {4, {3, 2, 2, 3}}, {2, {5, 3}}, {3, {2, 4, 3}}, {5, {2, 2, 2, 1, 3}}, {4, {1, 3, 3, 3}},
};

START_TEST(test_batchnorm_grad_fd)
{
    for (size_t c = 0; c < sizeof gd_bn_cases / sizeof gd_bn_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "BatchNormalizationGrad case %zu", c);
        int rank = gd_bn_cases[c].rank;
        const int64_t *xd = gd_bn_cases[c].x;
        gd_bn s = {xd[0], xd[1], gd_numel(rank - 2, xd + 2), 1e-5};
        int64_t n = s.N * s.C * s.S, C = s.C;
        dc_seed(900 + (unsigned)c);
        double *x = gd_rand(n, 0), *w = gd_rand(n, 0), *sc = gd_rand(C, 0), *b = gd_rand(C, 0);
        double *y = malloc((size_t)n * sizeof *y), *mean = malloc((size_t)C * sizeof *mean);
        double *var = malloc((size_t)C * sizeof *var), *inv = malloc((size_t)C * sizeof *inv);
        double *g = malloc((size_t)n * sizeof *g), *gs = malloc((size_t)C * sizeof *gs), *gb = malloc((size_t)C * sizeof *gb);
        double *init = gd_rand(2 * C, 0);
        gd_batchnorm(&s, x, sc, b, y, mean, var);
        for (int64_t i = 0; i < C; i++)
            inv[i] = 1.0 / sqrt(var[i] + s.eps);
        gd_fd f = {.fwd = gd_batchnorm_fd, .ny = n, .x = {x, sc, b}, .nx = {n, C, C}, .w = w, .ctx = &s};
        gd_fd_grad(&f, 0, 1e-5, g);
        gd_fd_grad(&f, 1, 1e-5, gs);
        gd_fd_grad(&f, 2, 1e-5, gb);
        float *dyf = gd_f32(w, n), *xf = gd_f32(x, n), *sf = gd_f32(sc, C), *mf = gd_f32(mean, C), *ivf = gd_f32(inv, C);
        float *dx = gd_falloc(n);
        for (int ref = 1; ref >= 0; ref--) {
            dcase t;
            dc_init(&t, "BatchNormalizationGrad", 15, 1);
            t.d.domain = "pippy";
            dc_in(&t, rank, xd);
            dc_in(&t, rank, xd);
            DC_IN(&t, C);
            DC_IN(&t, C);
            DC_IN(&t, C);
            const float *in[] = {dyf, xf, sf, mf, ivf};
            gd_run(&t, ref, in, &dx, label);
            gd_expect(label, ref ? "dX (reference)" : "dX (fast)", dx, g, n, 1e-6);
        }
        for (int v = 0; v < 4; v++) {
            int ref = v % 2 == 0, acc = v >= 2;
            dcase t;
            dc_init(&t, "BatchNormalizationWeightGrad", 15, 2);
            t.d.domain = "pippy";
            dc_in(&t, rank, xd);
            dc_in(&t, rank, xd);
            DC_IN(&t, C);
            DC_IN(&t, C);
            const float *in[] = {dyf, xf, mf, ivf};
            gd_check_wgrad(&t, ref, acc, in, label, "dScale", gs, C, "dBias", gb, C, init);
        }
        free(x), free(w), free(sc), free(b), free(y), free(mean), free(var), free(inv), free(g), free(gs), free(gb);
        free(init), free(dyf), free(xf), free(sf), free(mf), free(ivf), free(dx);
    }
}
END_TEST

/* BatchNormalizationTraining: Y, saved_mean, saved_inv_std against the double formula, and the
 * running statistics updated in place (unbiased variance, ONNX momentum). */
START_TEST(test_batchnorm_training)
{
    for (size_t c = 0; c < sizeof gd_bn_cases / sizeof gd_bn_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "BatchNormalizationTraining case %zu", c);
        int rank = gd_bn_cases[c].rank;
        const int64_t *xd = gd_bn_cases[c].x;
        float eps = c % 2 ? 1e-3f : 1e-5f, mom = c % 2 ? 0.8f : 0.9f; /* odd cases set the attributes */
        gd_bn s = {xd[0], xd[1], gd_numel(rank - 2, xd + 2), eps};
        int64_t n = s.N * s.C * s.S, C = s.C;
        double cnt = (double)(s.N * s.S);
        dc_seed(950 + (unsigned)c);
        double *x = gd_rand(n, 0), *sc = gd_rand(C, 0), *b = gd_rand(C, 0), *rm = gd_rand(C, 0);
        double *rv = gd_rand(C, DC_FILL_POSITIVE), *y = malloc((size_t)n * sizeof *y);
        double *mean = malloc((size_t)C * sizeof *mean), *var = malloc((size_t)C * sizeof *var);
        double *want = malloc(4 * (size_t)C * sizeof *want);
        for (int64_t i = 0; i < n; i++)
            x[i] = 2 * x[i] + 0.5; /* a mean away from 0 */
        float *xf = gd_f32(x, n), *sf = gd_f32(sc, C), *bf = gd_f32(b, C);
        for (int64_t i = 0; i < n; i++)
            x[i] = xf[i]; /* the forward sees the op's float values */
        gd_batchnorm(&s, x, sc, b, y, mean, var);
        for (int64_t i = 0; i < C; i++) {
            want[i] = 1.0 / sqrt(var[i] + eps);
            want[C + i] = (double)(float)rm[i] * mom + mean[i] * (1 - (double)mom);
            want[2 * C + i] = (double)(float)rv[i] * mom + var[i] * cnt / (cnt - 1) * (1 - (double)mom);
        }
        float *yf = gd_falloc(n), *smf = gd_falloc(C), *sif = gd_falloc(C);
        for (int ref = 1; ref >= 0; ref--) {
            float *rmf = gd_f32(rm, C), *rvf = gd_f32(rv, C);
            dcase t;
            dc_init(&t, "BatchNormalizationTraining", 15, 3);
            t.d.domain = "pippy";
            dc_in(&t, rank, xd);
            for (int i = 0; i < 4; i++)
                DC_IN(&t, C);
            if (c % 2) {
                dc_attr_f(&t, "epsilon", eps);
                dc_attr_f(&t, "momentum", mom);
            }
            const float *in[] = {xf, sf, bf, rmf, rvf};
            float *out[] = {yf, smf, sif};
            gd_run(&t, ref, in, out, label);
            const char *k = ref ? " (reference)" : " (fast)";
            char what[64];
            snprintf(what, sizeof what, "Y%s", k);
            gd_expect(label, what, yf, y, n, 1e-6);
            snprintf(what, sizeof what, "saved_mean%s", k);
            gd_expect(label, what, smf, mean, C, 1e-6);
            snprintf(what, sizeof what, "saved_inv_std%s", k);
            gd_expect(label, what, sif, want, C, 1e-6);
            snprintf(what, sizeof what, "running_mean%s", k);
            gd_expect(label, what, rmf, want + C, C, 1e-6);
            snprintf(what, sizeof what, "running_var%s", k);
            gd_expect(label, what, rvf, want + 2 * C, C, 1e-6);
            free(rmf), free(rvf);
        }
        free(x), free(sc), free(b), free(rm), free(rv), free(y), free(mean), free(var), free(want);
        free(xf), free(sf), free(bf), free(yf), free(smf), free(sif);
    }
}
END_TEST

START_TEST(test_norm_grad_fast_vs_ref)
{
    static const struct {
        int rank;
        int64_t x[4];
        int axis, srank;
        int64_t s[4];
    } ln[] = {
        {3, {8, 128, 768}, -1, 1, {768}},
        {3, {4, 33, 65}, -1, 1, {65}},
        {4, {2, 6, 10, 12}, 2, 1, {12}}, /* broadcast Scale at run time */
        {4, {2, 6, 10, 12}, 1, 3, {6, 10, 12}},
    };
    for (size_t c = 0; c < sizeof ln / sizeof ln[0]; c++) {
        int axis = ln[c].axis < 0 ? ln[c].axis + ln[c].rank : ln[c].axis;
        int64_t st[4];
        for (int i = 0; i < ln[c].rank; i++)
            st[i] = i < axis ? ln[c].x[i] : 1;
        for (int v = 0; v < 4; v++) { /* Grad, WeightGrad with 1 and 2 outputs, accumulating */
            dcase t;
            char label[96];
            dc_init(&t, v == 0 ? "LayerNormalizationGrad" : "LayerNormalizationWeightGrad", 17, v == 1 ? 1 : v ? 2 : 1);
            t.d.domain = "pippy";
            dc_in(&t, ln[c].rank, ln[c].x);
            dc_in(&t, ln[c].rank, ln[c].x);
            if (v == 0)
                dc_in(&t, ln[c].srank, ln[c].s);
            dc_in(&t, ln[c].rank, st);
            dc_in(&t, ln[c].rank, st);
            t.fill[v == 0 ? 4 : 3] = DC_FILL_POSITIVE;
            dc_attr_i(&t, "axis", ln[c].axis);
            if (v == 3)
                dc_attr_i(&t, "pippy.accumulate", 1), t.out_init = 1;
            t.scaled = 1, t.tol = 5e-6, t.must_fast = 1;
            snprintf(label, sizeof label, "%s fast case %zu/%d", t.d.op, c, v);
            dc_check_fast_vs_ref(&t, 1000 + (unsigned)(c * 4 + v), 0, label);
        }
    }
    static const struct {
        int rank;
        int64_t x[4];
    } bn[] = {{4, {8, 32, 14, 14}}, {2, {64, 100}}, {3, {3, 17, 9}}};
    for (size_t c = 0; c < sizeof bn / sizeof bn[0]; c++) {
        int64_t C = bn[c].x[1];
        for (int v = 0; v < 5; v++) { /* Training, Grad, WeightGrad (1, 2 outputs, accumulating) */
            static const char *const ops[] = {"BatchNormalizationTraining", "BatchNormalizationGrad",
                                              "BatchNormalizationWeightGrad", "BatchNormalizationWeightGrad",
                                              "BatchNormalizationWeightGrad"};
            dcase t;
            char label[96];
            dc_init(&t, ops[v], 15, v == 0 ? 3 : v == 2 ? 1 : v == 1 ? 1 : 2);
            t.d.domain = "pippy";
            dc_in(&t, bn[c].rank, bn[c].x);
            if (v > 0)
                dc_in(&t, bn[c].rank, bn[c].x);
            for (int i = 0; i < (v == 0 ? 4 : v == 1 ? 3 : 2); i++)
                DC_IN(&t, C);
            t.fill[t.d.n_in - 1] = DC_FILL_POSITIVE; /* running_var / saved_inv_std */
            if (v == 4)
                dc_attr_i(&t, "pippy.accumulate", 1), t.out_init = 1;
            t.scaled = 1, t.tol = 2e-6, t.must_fast = 1;
            snprintf(label, sizeof label, "%s fast case %zu/%d", t.d.op, c, v);
            dc_check_fast_vs_ref(&t, 1100 + (unsigned)(c * 5 + v), 0, label);
        }
    }
}
END_TEST

START_TEST(test_norm_grad_infer)
{
    dcase t;
    dc_init(&t, "LayerNormalizationGrad", 17, 1);
    t.d.domain = "pippy";
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 4);
    DC_IN(&t, 2, 3, 1);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "expected 5 inputs", "found 4");
    DC_IN(&t, 2, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "InvStdDev", "float[2,3,1]");
    t.d.in[4].rank = 3, t.d.in[4].dims[2] = 1;
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    t.d.in[2].dims[0] = 3;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "Scale is float[3]", "X.shape[2:]");
    t.d.in[2].dims[0] = 4;
    t.d.in[0].dims[0] = 1;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "dY", "float[1,3,4]");

    dc_init(&t, "LayerNormalizationWeightGrad", 17, 3);
    t.d.domain = "pippy";
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 2, 1, 1);
    DC_IN(&t, 2, 1, 1);
    dc_attr_i(&t, "axis", 1);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "1 or 2 outputs", "found 3");
    t.d.n_out = 2;
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[1].rank, 2);
    ck_assert_int_eq(t.d.out[1].dims[0], 3);
    ck_assert_int_eq(t.d.out[1].dims[1], 4);
    dc_attr_i(&t, "pippy.accumulate", 2);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "pippy.accumulate", "0 or 1");

    dc_init(&t, "BatchNormalizationTraining", 15, 3);
    t.d.domain = "pippy";
    DC_IN(&t, 1, 3, 1, 1);
    for (int i = 0; i < 4; i++)
        DC_IN(&t, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "one value per channel", "float[1,3,1,1]");
    t.d.in[0].dims[0] = 2;
    t.d.in[4].dims[0] = 2;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "running_var must be [3]", "float[2]");
    t.d.in[4].dims[0] = 3;
    t.d.n_out = 1;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "expected 3 outputs", "found 1");
    t.d.n_out = 3;
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    float rm[3] = {0};
    t.d.in_const[3] = rm;
    pippy_kernel *k = NULL;
    ck_assert_int_eq(pippy_kernel_create(&t.d, &k), PIPPY_ERR_INVALID);
    ck_assert_msg(strstr(pippy_last_error(), "in place"), "message: %s", pippy_last_error());

    dc_init(&t, "BatchNormalizationGrad", 15, 1);
    t.d.domain = "pippy";
    DC_IN(&t, 2, 3, 5);
    DC_IN(&t, 2, 3, 5);
    for (int i = 0; i < 3; i++)
        DC_IN(&t, 3);
    t.d.in[1].dtype = PIPPY_DT_DOUBLE;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "input 1 (X) must be float", "double");
    dc_init(&t, "BatchNormalizationWeightGrad", 15, 2);
    t.d.domain = "pippy";
    DC_IN(&t, 2, 3, 5);
    DC_IN(&t, 2, 3, 5);
    DC_IN(&t, 3);
    DC_IN(&t, 4);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "saved_inv_std must be [3]", "float[4]");
}
END_TEST

/* ------------------------------------------------------------------ Conv */

typedef struct {
    int ns;
    int64_t n, c, m, group, in[3], k[3];
    const char *auto_pad;
    int64_t strides[3], dil[3], pads[6]; /* strides / dil 0: attribute absent */
} gd_conv_case;

/* The convolution's geometry as 3 spatial dims, computed here from the ONNX rules. */
typedef struct {
    int64_t N, C, M, G, I[3], K[3], O[3], S[3], D[3], P[3];
} gd_conv;

static void gd_conv_geom(const gd_conv_case *cc, gd_conv *g)
{
    int off = 3 - cc->ns;
    g->N = cc->n, g->C = cc->c, g->M = cc->m, g->G = cc->group;
    for (int i = 0; i < 3; i++) {
        int j = i - off;
        g->I[i] = j >= 0 ? cc->in[j] : 1;
        g->K[i] = j >= 0 ? cc->k[j] : 1;
        g->S[i] = j >= 0 && cc->strides[0] ? cc->strides[j] : 1;
        g->D[i] = j >= 0 && cc->dil[0] ? cc->dil[j] : 1;
        int64_t dk = (g->K[i] - 1) * g->D[i] + 1, pl = j >= 0 ? cc->pads[j] : 0, pr = j >= 0 ? cc->pads[cc->ns + j] : 0;
        if (j >= 0 && cc->auto_pad && strcmp(cc->auto_pad, "VALID") == 0)
            pl = pr = 0;
        if (j >= 0 && cc->auto_pad && strncmp(cc->auto_pad, "SAME", 4) == 0) {
            g->O[i] = (g->I[i] + g->S[i] - 1) / g->S[i];
            int64_t total = (g->O[i] - 1) * g->S[i] + dk - g->I[i];
            total = total < 0 ? 0 : total;
            g->P[i] = strcmp(cc->auto_pad, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
            continue;
        }
        g->P[i] = pl;
        g->O[i] = (g->I[i] + pl + pr - dk) / g->S[i] + 1;
    }
}

/* y = conv(x, w) + b in double (b may be NULL). */
static void gd_conv_fwd(const gd_conv *g, const double *x, const double *w, const double *b, double *y)
{
    int64_t cg = g->C / g->G, mg = g->M / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++)
            for (int64_t o0 = 0; o0 < g->O[0]; o0++)
                for (int64_t o1 = 0; o1 < g->O[1]; o1++)
                    for (int64_t o2 = 0; o2 < g->O[2]; o2++) {
                        double s = b ? b[m] : 0;
                        for (int64_t c = 0; c < cg; c++)
                            for (int64_t k0 = 0; k0 < g->K[0]; k0++)
                                for (int64_t k1 = 0; k1 < g->K[1]; k1++)
                                    for (int64_t k2 = 0; k2 < g->K[2]; k2++) {
                                        int64_t i0 = o0 * g->S[0] - g->P[0] + k0 * g->D[0];
                                        int64_t i1 = o1 * g->S[1] - g->P[1] + k1 * g->D[1];
                                        int64_t i2 = o2 * g->S[2] - g->P[2] + k2 * g->D[2];
                                        if (i0 < 0 || i0 >= g->I[0] || i1 < 0 || i1 >= g->I[1] || i2 < 0 ||
                                            i2 >= g->I[2])
                                            continue;
                                        int64_t ic = m / mg * cg + c;
                                        s += x[(((n * g->C + ic) * g->I[0] + i0) * g->I[1] + i1) * g->I[2] + i2] *
                                             w[(((m * cg + c) * g->K[0] + k0) * g->K[1] + k1) * g->K[2] + k2];
                                    }
                        y[(((n * g->M + m) * g->O[0] + o0) * g->O[1] + o1) * g->O[2] + o2] = s;
                    }
}

static void gd_conv_fd(const gd_fd *f, double *y) { gd_conv_fwd(f->ctx, f->x[0], f->x[1], f->x[2], y); }

/* ConvGradInput / ConvGradWeight with cc's attributes and the shape attribute (X's or W's). */
static void gd_conv_setup(dcase *t, const char *op, const gd_conv_case *cc, const gd_conv *g, int n_out)
{
    int nd = 2 + cc->ns;
    int64_t x[5] = {cc->n, cc->c}, w[5] = {cc->m, cc->c / cc->group}, y[5] = {cc->n, cc->m};
    for (int i = 0; i < cc->ns; i++) {
        x[2 + i] = cc->in[i];
        w[2 + i] = cc->k[i];
        y[2 + i] = g->O[3 - cc->ns + i];
    }
    dc_init(t, op, 22, n_out);
    t->d.domain = "pippy";
    dc_in(t, nd, y);
    int wgrad = strcmp(op, "ConvGradWeight") == 0;
    dc_in(t, nd, wgrad ? x : w);
    dc_attr_ints(t, "shape", nd, wgrad ? w : x);
    if (cc->group != 1)
        dc_attr_i(t, "group", cc->group);
    dc_window_attrs(t, cc->ns, cc->k, cc->auto_pad, cc->strides, cc->dil, cc->pads, 0, 0);
}

static const gd_conv_case gd_conv_cases[] = {
    {2, 2, 3, 4, 1, {5, 6}, {3, 2}, NULL, {2, 1}, {0}, {1, 0, 1, 1}},
    {2, 1, 4, 6, 2, {5, 5}, {3, 3}, NULL, {1, 1}, {2, 2}, {2, 2, 2, 2}},   /* group, dilation */
    {2, 2, 3, 3, 3, {6, 5}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}},      /* depthwise */
    {1, 2, 2, 3, 1, {9}, {3}, NULL, {2}, {2}, {1, 2}},                      /* 1-D */
    {3, 1, 2, 2, 1, {4, 3, 5}, {2, 2, 3}, NULL, {1, 2, 1}, {0}, {0, 1, 1, 1, 0, 1}}, /* 3-D */
    {2, 1, 2, 3, 1, {7, 6}, {3, 3}, "SAME_UPPER", {2, 2}, {0}, {0}},
    {2, 1, 2, 2, 1, {6, 7}, {2, 3}, "SAME_LOWER", {2, 3}, {0}, {0}},
    {2, 2, 2, 3, 1, {6, 6}, {3, 3}, "VALID", {2, 2}, {0}, {0}},
    {1, 2, 3, 2, 1, {11}, {2}, NULL, {3}, {0}, {0, 0}},                     /* stride > kernel: holes */
};

START_TEST(test_conv_grad_fd)
{
    for (size_t c = 0; c < sizeof gd_conv_cases / sizeof gd_conv_cases[0]; c++) {
        const gd_conv_case *cc = &gd_conv_cases[c];
        gd_conv g;
        gd_conv_geom(cc, &g);
        char label[96];
        snprintf(label, sizeof label, "Conv grad case %zu", c);
        int64_t cg = g.C / g.G, spx = g.I[0] * g.I[1] * g.I[2], spk = g.K[0] * g.K[1] * g.K[2];
        int64_t nx = g.N * g.C * spx, nw = g.M * cg * spk, ny = g.N * g.M * g.O[0] * g.O[1] * g.O[2];
        dc_seed(1200 + (unsigned)c);
        double *x = gd_rand(nx, 0), *w = gd_rand(nw, 0), *b = gd_rand(g.M, 0), *dy = gd_rand(ny, 0);
        double *gx = malloc((size_t)nx * sizeof *gx), *gw = malloc((size_t)nw * sizeof *gw);
        double *gb = malloc((size_t)g.M * sizeof *gb), *init = gd_rand(nw + g.M, 0);
        gd_fd f = {.fwd = gd_conv_fd, .ny = ny, .x = {x, w, b}, .nx = {nx, nw, g.M}, .w = dy, .ctx = &g};
        gd_fd_grad(&f, 0, 1e-5, gx);
        gd_fd_grad(&f, 1, 1e-5, gw);
        gd_fd_grad(&f, 2, 1e-5, gb);
        float *xf = gd_f32(x, nx), *wf = gd_f32(w, nw), *dyf = gd_f32(dy, ny);
        float *dx = gd_falloc(nx);
        for (int ref = 1; ref >= 0; ref--) {
            dcase t;
            gd_conv_setup(&t, "ConvGradInput", cc, &g, 1);
            const float *in[] = {dyf, wf};
            gd_run(&t, ref, in, &dx, label);
            gd_expect(label, ref ? "dX (reference)" : "dX (fast)", dx, gx, nx, 1e-6);
        }
        for (int v = 0; v < 4; v++) {
            int ref = v % 2 == 0, acc = v >= 2;
            dcase t;
            gd_conv_setup(&t, "ConvGradWeight", cc, &g, 2);
            const float *in[] = {dyf, xf};
            gd_check_wgrad(&t, ref, acc, in, label, "dW", gw, nw, "dB", gb, g.M, init);
        }
        free(x), free(w), free(b), free(dy), free(gx), free(gw), free(gb), free(init);
        free(xf), free(wf), free(dyf), free(dx);
    }
}
END_TEST

START_TEST(test_conv_grad_fast_vs_ref)
{
    static const gd_conv_case cases[] = {
        {2, 2, 16, 32, 1, {14, 14}, {3, 3}, NULL, {1, 1}, {0}, {1, 1, 1, 1}},   /* blocked layouts */
        {2, 2, 16, 32, 1, {15, 15}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}},
        {2, 1, 3, 16, 1, {23, 23}, {7, 7}, NULL, {2, 2}, {0}, {3, 3, 3, 3}},     /* ResNet stem-like */
        {2, 2, 16, 16, 16, {10, 10}, {3, 3}, NULL, {1, 1}, {0}, {1, 1, 1, 1}},  /* depthwise */
        {2, 2, 8, 12, 4, {9, 9}, {3, 3}, NULL, {1, 1}, {2, 2}, {2, 2, 2, 2}},   /* group, dilation */
        {2, 2, 16, 16, 1, {7, 7}, {1, 1}, NULL, {2, 2}, {0}, {0}},              /* 1x1 stride 2 */
        {1, 2, 5, 7, 1, {31}, {5}, "SAME_UPPER", {2}, {0}, {0}},                /* 1-D */
        {3, 1, 4, 4, 2, {6, 6, 6}, {3, 3, 3}, NULL, {2, 2, 2}, {0}, {1, 1, 1, 1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gd_conv g;
        gd_conv_geom(&cases[c], &g);
        for (int v = 0; v < 5; v++) { /* input grad (W at run time, W constant), weight grad (dB, none, acc) */
            dcase t;
            char label[96];
            gd_conv_setup(&t, v < 2 ? "ConvGradInput" : "ConvGradWeight", &cases[c], &g, v == 3 ? 1 : v < 2 ? 1 : 2);
            if (v == 4)
                dc_attr_i(&t, "pippy.accumulate", 1), t.out_init = 1;
            t.scaled = 1, t.tol = 3e-6, t.must_fast = 1;
            snprintf(label, sizeof label, "%s fast case %zu/%d", t.d.op, c, v);
            dc_check_fast_vs_ref(&t, 1300 + (unsigned)(c * 5 + v), v == 1 ? 2 : 0, label);
        }
    }
}
END_TEST

START_TEST(test_conv_grad_infer)
{
    dcase t;
    gd_conv g;
    gd_conv_geom(&gd_conv_cases[0], &g);
    gd_conv_setup(&t, "ConvGradInput", &gd_conv_cases[0], &g, 1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 4);
    ck_assert_int_eq(t.d.out[0].dims[3], 6);
    t.d.in[0].dims[3] += 1;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "input 0 (dY)", "the Conv output");
    t.d.in[0].dims[3] -= 1;
    t.d.n_in = 3;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "expected 2 inputs", "found 3");
    t.d.n_in = 2;
    t.d.in[1].dims[1] = 2; /* W's channels no longer match the shape attribute's */
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "channels differ", "float[2,3,5,6]");
    gd_conv_setup(&t, "ConvGradWeight", &gd_conv_cases[0], &g, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "1 or 2 outputs", "found 3");
    t.d.n_out = 2;
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[1].rank, 1);
    ck_assert_int_eq(t.d.out[1].dims[0], 4);
    t.attrs[0].n = 3; /* the shape attribute: rank 3 */
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "W must have the rank of X", "float[4,3,3]");
    dc_init(&t, "ConvGradWeight", 22, 1);
    t.d.domain = "pippy";
    DC_IN(&t, 1, 1, 3, 3);
    DC_IN(&t, 1, 1, 5, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "shape", "missing");
    t.d.in[1].dtype = PIPPY_DT_INT64;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "input 1 (X) must be float", "int64");
}
END_TEST

/* ------------------------------------------------------------------ pools */

typedef struct {
    const char *op; /* MaxPoolGrad, AveragePoolGrad, GlobalAveragePoolGrad */
    int ns;
    int64_t n, c, in[3], k[3];
    const char *auto_pad;
    int64_t strides[3], dil[3], pads[6];
    int ceil_mode, include_pad;
} gd_pool_case;

/* The pool's windows as 3 spatial dims, from the ONNX rules (ceil_mode: the last window must start
 * inside the input or its left padding). */
typedef struct {
    int max, include_pad;
    int64_t NC, I[3], K[3], O[3], S[3], D[3], PL[3], PR[3];
} gd_pool;

static void gd_pool_geom(const gd_pool_case *pc, gd_pool *g)
{
    int off = 3 - pc->ns, global = strcmp(pc->op, "GlobalAveragePoolGrad") == 0;
    g->max = strcmp(pc->op, "MaxPoolGrad") == 0;
    g->include_pad = pc->include_pad;
    g->NC = pc->n * pc->c;
    for (int i = 0; i < 3; i++) {
        int j = i - off;
        g->I[i] = j >= 0 ? pc->in[j] : 1;
        g->K[i] = j < 0 ? 1 : global ? pc->in[j] : pc->k[j];
        g->S[i] = j >= 0 && pc->strides[0] ? pc->strides[j] : 1;
        g->D[i] = j >= 0 && pc->dil[0] ? pc->dil[j] : 1;
        int64_t dk = (g->K[i] - 1) * g->D[i] + 1;
        g->PL[i] = j >= 0 ? pc->pads[j] : 0;
        g->PR[i] = j >= 0 ? pc->pads[pc->ns + j] : 0;
        if (j >= 0 && pc->auto_pad) {
            g->O[i] = (g->I[i] + g->S[i] - 1) / g->S[i];
            int64_t total = (g->O[i] - 1) * g->S[i] + dk - g->I[i];
            total = total < 0 ? 0 : total;
            g->PL[i] = strcmp(pc->auto_pad, "SAME_UPPER") == 0 ? total / 2 : total - total / 2;
            g->PR[i] = total - g->PL[i];
            continue;
        }
        int64_t span = g->I[i] + g->PL[i] + g->PR[i] - dk;
        g->O[i] = (pc->ceil_mode ? (span + g->S[i] - 1) / g->S[i] : span / g->S[i]) + 1;
        if (pc->ceil_mode && (g->O[i] - 1) * g->S[i] >= g->I[i] + g->PL[i])
            g->O[i]--;
    }
}

/* y = the pool of x in double. */
static void gd_pool_fwd(const gd_pool *g, const double *x, double *y)
{
    int64_t ni = g->I[0] * g->I[1] * g->I[2], no = g->O[0] * g->O[1] * g->O[2];
    for (int64_t nc = 0; nc < g->NC; nc++)
        for (int64_t o = 0; o < no; o++) {
            int64_t od[3] = {o / (g->O[1] * g->O[2]), o / g->O[2] % g->O[1], o % g->O[2]};
            double mx = -INFINITY, sum = 0;
            int64_t n_in = 0, n_pad = 0;
            for (int64_t k0 = 0; k0 < g->K[0]; k0++)
                for (int64_t k1 = 0; k1 < g->K[1]; k1++)
                    for (int64_t k2 = 0; k2 < g->K[2]; k2++) {
                        int64_t kd[3] = {k0, k1, k2}, p[3];
                        int inside = 1, padded = 1;
                        for (int i = 0; i < 3; i++) {
                            p[i] = od[i] * g->S[i] - g->PL[i] + kd[i] * g->D[i];
                            inside &= p[i] >= 0 && p[i] < g->I[i];
                            padded &= p[i] >= -g->PL[i] && p[i] < g->I[i] + g->PR[i];
                        }
                        n_pad += padded;
                        if (!inside)
                            continue;
                        double v = x[nc * ni + (p[0] * g->I[1] + p[1]) * g->I[2] + p[2]];
                        n_in++;
                        sum += v;
                        mx = fmax(mx, v);
                    }
            y[nc * no + o] = g->max ? mx : sum / (double)(g->include_pad ? n_pad : n_in);
        }
}

static void gd_pool_fd(const gd_fd *f, double *y) { gd_pool_fwd(f->ctx, f->x[0], y); }

static void gd_pool_setup(dcase *t, const gd_pool_case *pc, const gd_pool *g)
{
    int nd = 2 + pc->ns;
    int64_t x[5] = {pc->n, pc->c}, y[5] = {pc->n, pc->c};
    for (int i = 0; i < pc->ns; i++) {
        x[2 + i] = pc->in[i];
        y[2 + i] = g->O[3 - pc->ns + i];
    }
    dc_init(t, pc->op, 22, 1);
    t->d.domain = "pippy";
    dc_in(t, nd, y);
    if (strcmp(pc->op, "MaxPoolGrad") == 0)
        dc_in(t, nd, x);
    else
        dc_attr_ints(t, "shape", nd, x);
    if (strcmp(pc->op, "GlobalAveragePoolGrad") == 0)
        return;
    dc_window_attrs(t, pc->ns, pc->k, pc->auto_pad, pc->strides, pc->dil, pc->pads, pc->ceil_mode, pc->include_pad);
}

START_TEST(test_pool_grad_fd)
{
    static const gd_pool_case cases[] = {
        {"MaxPoolGrad", 2, 2, 2, {7, 6}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0},
        {"MaxPoolGrad", 2, 1, 2, {6, 7}, {3, 2}, NULL, {1, 1}, {0}, {0}, 0, 0},       /* overlapping */
        {"MaxPoolGrad", 2, 1, 1, {6, 6}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},       /* ceil_mode */
        {"MaxPoolGrad", 2, 1, 2, {7, 7}, {2, 2}, NULL, {1, 1}, {2, 2}, {1, 0, 0, 1}, 0, 0}, /* dilation */
        {"MaxPoolGrad", 2, 1, 1, {7, 5}, {3, 3}, "SAME_UPPER", {2, 2}, {0}, {0}, 0, 0},
        {"MaxPoolGrad", 1, 2, 3, {11}, {3}, NULL, {2}, {0}, {1, 1}, 1, 0},
        {"MaxPoolGrad", 3, 1, 2, {4, 5, 4}, {2, 3, 2}, NULL, {2, 1, 2}, {0}, {0, 1, 0, 0, 1, 1}, 0, 0},
        {"AveragePoolGrad", 2, 2, 2, {7, 6}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0},
        {"AveragePoolGrad", 2, 2, 2, {7, 6}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 1},
        {"AveragePoolGrad", 2, 1, 1, {6, 6}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},   /* ceil_mode */
        {"AveragePoolGrad", 2, 1, 2, {8, 8}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 1, 1}, /* ceil past pads */
        {"AveragePoolGrad", 2, 1, 1, {7, 7}, {2, 3}, NULL, {1, 2}, {2, 1}, {0}, 0, 0}, /* dilation */
        {"AveragePoolGrad", 2, 1, 2, {6, 7}, {2, 2}, "SAME_LOWER", {2, 2}, {0}, {0}, 0, 1},
        {"AveragePoolGrad", 1, 2, 2, {10}, {4}, NULL, {3}, {0}, {2, 1}, 0, 1},
        {"AveragePoolGrad", 3, 1, 2, {4, 5, 4}, {2, 3, 2}, NULL, {2, 1, 2}, {0}, {1, 1, 0, 0, 1, 1}, 0, 0},
        {"GlobalAveragePoolGrad", 2, 2, 3, {5, 4}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePoolGrad", 1, 2, 2, {7}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePoolGrad", 3, 1, 2, {2, 3, 4}, {0}, NULL, {0}, {0}, {0}, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gd_pool_case *pc = &cases[c];
        gd_pool g;
        gd_pool_geom(pc, &g);
        char label[96];
        snprintf(label, sizeof label, "%s case %zu", pc->op, c);
        int64_t nx = g.NC * g.I[0] * g.I[1] * g.I[2], ny = g.NC * g.O[0] * g.O[1] * g.O[2];
        dc_seed(1400 + (unsigned)c);
        double *x = malloc((size_t)nx * sizeof *x), *dy = gd_rand(ny, 0), *gx = malloc((size_t)nx * sizeof *gx);
        /* distinct values 0.01 apart (a random permutation): max pooling is differentiable there */
        for (int64_t i = 0; i < nx; i++)
            x[i] = (double)i;
        for (int64_t i = nx - 1; i > 0; i--) {
            int64_t j = (int64_t)((dc_uniform() + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1);
            double v = x[i];
            x[i] = x[j], x[j] = v;
        }
        for (int64_t i = 0; i < nx; i++)
            x[i] = (x[i] - (double)nx / 2) / 64.0;
        gd_fd f = {.fwd = gd_pool_fd, .ny = ny, .x = {x}, .nx = {nx}, .w = dy, .ctx = &g};
        gd_fd_grad(&f, 0, 1e-5, gx);
        float *xf = gd_f32(x, nx), *dyf = gd_f32(dy, ny), *dx = gd_falloc(nx);
        for (int ref = 1; ref >= 0; ref--) {
            dcase t;
            gd_pool_setup(&t, pc, &g);
            const float *in[] = {dyf, xf};
            gd_run(&t, ref, in, &dx, label);
            gd_expect(label, ref ? "dX (reference)" : "dX (fast)", dx, gx, nx, 1e-6);
        }
        free(x), free(dy), free(gx), free(xf), free(dyf), free(dx);
    }
}
END_TEST

/* Ties: the first maximum of each window in row-major order takes the gradient. */
START_TEST(test_maxpool_grad_ties)
{
    /* [[1,3,3],[3,1,3],[3,3,1]], kernel 2, stride 1: the windows' first maxima are (0,1), (0,1),
     * (1,0), (1,2) */
    const float x[] = {1, 3, 3, 3, 1, 3, 3, 3, 1}, dy[] = {1, 2, 3, 4};
    const float want[] = {0, 3, 0, 3, 0, 4, 0, 0, 0};
    gd_pool_case pc = {"MaxPoolGrad", 2, 1, 1, {3, 3}, {2, 2}, NULL, {0}, {0}, {0}, 0, 0};
    gd_pool g;
    gd_pool_geom(&pc, &g);
    dcase t;
    gd_pool_setup(&t, &pc, &g);
    const float *in[] = {dy, x};
    dc_check_known(&t, in, want, 9, "MaxPoolGrad ties");
    /* all equal, with padding: each window's first position inside X */
    const float x2[] = {-2, -2, -2, -2}, dy2[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float want2[] = {1 + 2 + 4 + 5, 3 + 6, 7 + 8, 9};
    gd_pool_case pc2 = {"MaxPoolGrad", 2, 1, 1, {2, 2}, {2, 2}, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 0, 0};
    gd_pool_geom(&pc2, &g);
    gd_pool_setup(&t, &pc2, &g);
    const float *in2[] = {dy2, x2};
    dc_check_known(&t, in2, want2, 4, "MaxPoolGrad ties with padding");
}
END_TEST

START_TEST(test_pool_grad_fast_vs_ref)
{
    static const gd_pool_case cases[] = {
        {"MaxPoolGrad", 2, 2, 16, {32, 32}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0}, /* ResNet-like */
        {"MaxPoolGrad", 2, 2, 8, {15, 15}, {3, 3}, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 0, 0},
        {"MaxPoolGrad", 2, 1, 8, {16, 16}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},
        {"MaxPoolGrad", 2, 1, 4, {17, 17}, {2, 2}, NULL, {1, 1}, {2, 2}, {0}, 0, 0},
        {"MaxPoolGrad", 1, 2, 8, {65}, {4}, NULL, {3}, {0}, {1, 2}, 1, 0},
        {"MaxPoolGrad", 3, 1, 4, {9, 9, 9}, {3, 3, 3}, NULL, {2, 2, 2}, {0}, {1, 1, 1, 1, 1, 1}, 0, 0},
        {"AveragePoolGrad", 2, 2, 16, {28, 28}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 1},
        {"AveragePoolGrad", 2, 2, 16, {28, 28}, {3, 3}, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 0, 0},
        {"AveragePoolGrad", 2, 1, 8, {16, 16}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},
        {"AveragePoolGrad", 2, 1, 4, {17, 17}, {2, 2}, NULL, {1, 1}, {2, 2}, {0}, 0, 1},
        {"AveragePoolGrad", 3, 1, 4, {9, 9, 9}, {3, 3, 3}, NULL, {2, 2, 2}, {0}, {1, 1, 1, 1, 1, 1}, 0, 1},
        {"GlobalAveragePoolGrad", 2, 4, 64, {7, 7}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePoolGrad", 1, 2, 16, {33}, {0}, NULL, {0}, {0}, {0}, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        gd_pool g;
        gd_pool_geom(&cases[c], &g);
        for (int ties = 0; ties < (strcmp(cases[c].op, "MaxPoolGrad") == 0 ? 2 : 1); ties++) {
            dcase t;
            gd_pool_setup(&t, &cases[c], &g);
            if (ties)
                t.fill[1] = DC_FILL_TIES;
            t.scaled = 1, t.tol = 1e-6, t.must_fast = 1;
            char label[96];
            snprintf(label, sizeof label, "%s fast case %zu%s", cases[c].op, c, ties ? " (ties)" : "");
            dc_check_fast_vs_ref(&t, 1500 + (unsigned)c, 0, label);
        }
    }
}
END_TEST

START_TEST(test_pool_grad_infer)
{
    dcase t;
    gd_pool g;
    gd_pool_case pc = {"MaxPoolGrad", 2, 1, 2, {7, 7}, {3, 3}, NULL, {2, 2}, {0}, {0}, 0, 0};
    gd_pool_geom(&pc, &g);
    gd_pool_setup(&t, &pc, &g);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[3], 7);
    t.d.in[0].dims[2] = 4;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "input 0 (dY) is float[1,2,4,3]", "float[1,2,3,3]");
    t.d.n_in = 1;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "2 inputs (dY, X)", "found 1");
    gd_pool_case pa = {"AveragePoolGrad", 2, 1, 2, {7, 7}, {3, 3}, NULL, {2, 2}, {0}, {0}, 0, 0};
    gd_pool_geom(&pa, &g);
    gd_pool_setup(&t, &pa, &g);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 7);
    t.d.n_attrs = 0;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "shape", "missing");
    gd_pool_case pg = {"GlobalAveragePoolGrad", 2, 1, 2, {7, 7}, {0}, NULL, {0}, {0}, {0}, 0, 0};
    gd_pool_geom(&pg, &g);
    gd_pool_setup(&t, &pg, &g);
    t.d.in[0].dims[3] = 2;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "float[1,2,1,2]", "float[1,2,1,1]");
    t.d.in[0].dims[3] = 1;
    t.d.in[0].dtype = PIPPY_DT_INT32;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "int32");
}
END_TEST

/* ------------------------------------------------------------------ SoftmaxCrossEntropyLoss */

typedef struct {
    int64_t N, C, D;
    const char *red; /* NULL: the default (mean) */
    int has_ignore;
    int64_t ignore;
    const int64_t *labels; /* N*D */
    const double *weights; /* C, or NULL */
} gd_sce;

/* The ONNX formula in double: loss (N*D values for "none", else one) and, when logp, log_prob. */
static void gd_sce_fwd(const gd_sce *s, const double *x, double *loss, double *logp)
{
    double sum = 0, den = 0;
    int none = s->red && strcmp(s->red, "none") == 0, total = s->red && strcmp(s->red, "sum") == 0;
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t j = 0; j < s->D; j++) {
            double mx = -INFINITY, e = 0;
            for (int64_t c = 0; c < s->C; c++)
                mx = fmax(mx, x[(n * s->C + c) * s->D + j]);
            for (int64_t c = 0; c < s->C; c++)
                e += exp(x[(n * s->C + c) * s->D + j] - mx);
            for (int64_t c = 0; logp && c < s->C; c++)
                logp[(n * s->C + c) * s->D + j] = x[(n * s->C + c) * s->D + j] - mx - log(e);
            int64_t t = s->labels[n * s->D + j];
            int ignored = (s->has_ignore && t == s->ignore) || t < 0 || t >= s->C;
            double w = ignored ? 0 : s->weights ? s->weights[t] : 1;
            double l = ignored ? 0 : -(x[(n * s->C + t) * s->D + j] - mx - log(e)) * w;
            if (none)
                loss[n * s->D + j] = l;
            sum += l;
            den += w;
        }
    if (total)
        loss[0] = sum;
    else if (!none)
        loss[0] = sum / den;
}

static void gd_sce_fd(const gd_fd *f, double *y) { gd_sce_fwd(f->ctx, f->x[0], y, NULL); }

static const struct {
    int rank;
    int64_t x[4];
    const char *red;
    int has_ignore, ignore, weights, int32, bad; /* bad: one label out of range */
} gd_sce_cases[] = {
    {2, {5, 4}, NULL, 0, 0, 0, 0, 0},        {2, {5, 4}, "sum", 0, 0, 1, 0, 0},
    {2, {6, 3}, "none", 1, 1, 0, 0, 0},      {2, {6, 5}, "mean", 1, -100, 1, 0, 0},
    {3, {3, 4, 5}, "mean", 1, 2, 1, 1, 0},   {4, {2, 3, 2, 3}, "none", 0, 0, 1, 0, 0},
    {4, {2, 5, 3, 2}, "sum", 1, 0, 0, 1, 0}, {3, {2, 4, 3}, "mean", 0, 0, 1, 0, 1},
    {2, {4, 6}, "none", 1, 3, 1, 0, 1},
};

/* Labels for case c: random classes, some set to ignore_index, one out of range when bad. */
static void gd_sce_labels(size_t c, int64_t n, int64_t C, int64_t *lab)
{
    for (int64_t i = 0; i < n; i++) {
        lab[i] = (int64_t)((dc_uniform() + 1.0f) * 0.5f * (float)C) % C;
        if (gd_sce_cases[c].has_ignore && i % 3 == 1)
            lab[i] = gd_sce_cases[c].ignore;
    }
    if (gd_sce_cases[c].bad)
        lab[n / 2] = C + 2;
}

static void gd_sce_setup(dcase *t, size_t c, int grad, int n_out)
{
    int rank = gd_sce_cases[c].rank;
    int64_t ld[4] = {gd_sce_cases[c].x[0]};
    for (int i = 2; i < rank; i++)
        ld[i - 1] = gd_sce_cases[c].x[i];
    int none = gd_sce_cases[c].red && strcmp(gd_sce_cases[c].red, "none") == 0;
    dc_init(t, grad ? "SoftmaxCrossEntropyLossGrad" : "SoftmaxCrossEntropyLoss", 13, n_out);
    if (grad) {
        t->d.domain = "pippy";
        dc_in(t, none ? rank - 1 : 0, ld);
    }
    dc_in(t, rank, gd_sce_cases[c].x);
    dc_in(t, rank - 1, ld);
    pippy_tdesc *l = &t->d.in[t->d.n_in - 1];
    l->dtype = gd_sce_cases[c].int32 ? PIPPY_DT_INT32 : PIPPY_DT_INT64;
    if (gd_sce_cases[c].weights)
        DC_IN(t, gd_sce_cases[c].x[1]);
    if (gd_sce_cases[c].red)
        dc_attr_s(t, "reduction", gd_sce_cases[c].red);
    if (gd_sce_cases[c].has_ignore)
        dc_attr_i(t, "ignore_index", gd_sce_cases[c].ignore);
}

START_TEST(test_sce_loss)
{
    for (size_t c = 0; c < sizeof gd_sce_cases / sizeof gd_sce_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "SoftmaxCrossEntropyLoss case %zu", c);
        int rank = gd_sce_cases[c].rank;
        int64_t N = gd_sce_cases[c].x[0], C = gd_sce_cases[c].x[1], D = gd_numel(rank - 2, gd_sce_cases[c].x + 2);
        int none = gd_sce_cases[c].red && strcmp(gd_sce_cases[c].red, "none") == 0;
        int64_t nx = N * C * D, nl = N * D, no = none ? nl : 1;
        dc_seed(1600 + (unsigned)c);
        double *x = gd_rand(nx, 0), *wt = gd_rand(C, DC_FILL_POSITIVE), *dl = gd_rand(no, 0);
        double *loss = malloc((size_t)no * sizeof *loss), *logp = malloc((size_t)nx * sizeof *logp);
        double *g = malloc((size_t)nx * sizeof *g);
        int64_t *lab = malloc((size_t)nl * sizeof *lab);
        int32_t *lab32 = malloc((size_t)nl * sizeof *lab32);
        for (int64_t i = 0; i < nx; i++)
            x[i] *= 3;
        gd_sce_labels(c, nl, C, lab);
        for (int64_t i = 0; i < nl; i++)
            lab32[i] = (int32_t)lab[i];
        float *xf = gd_f32(x, nx), *wf = gd_f32(wt, C), *dlf = gd_f32(dl, no);
        for (int64_t i = 0; i < nx; i++)
            x[i] = xf[i];
        for (int64_t i = 0; i < C; i++)
            wt[i] = wf[i];
        gd_sce s = {N, C, D, gd_sce_cases[c].red, gd_sce_cases[c].has_ignore, gd_sce_cases[c].ignore, lab,
                    gd_sce_cases[c].weights ? wt : NULL};
        gd_sce_fwd(&s, x, loss, logp);
        gd_fd f = {.fwd = gd_sce_fd, .ny = no, .x = {x}, .nx = {nx}, .w = dl, .ctx = &s};
        gd_fd_grad(&f, 0, 1e-5, g);
        const void *lv = gd_sce_cases[c].int32 ? (const void *)lab32 : (const void *)lab;
        float *lossf = gd_falloc(no), *logpf = gd_falloc(nx), *dx = gd_falloc(nx), *lpin = gd_f32(logp, nx);
        for (int ref = 1; ref >= 0; ref--) {
            const char *k = ref ? " (reference)" : " (fast)";
            char what[64];
            for (int n_out = 1; n_out <= 2; n_out++) {
                dcase t;
                gd_sce_setup(&t, c, 0, n_out);
                const void *in[] = {xf, lv, wf};
                void *out[] = {lossf, logpf};
                dc_run(&t, ref, in, out, label);
                ck_assert_int_eq(t.d.out[0].rank, none ? rank - 1 : 0);
                /* oneDNN's log-softmax (vectorized exp / log) is good to ~1e-6 */
                snprintf(what, sizeof what, "loss%s", k);
                gd_expect(label, what, lossf, loss, no, ref ? 1e-6 : 3e-6);
                if (n_out == 2) {
                    snprintf(what, sizeof what, "log_prob%s", k);
                    gd_expect(label, what, logpf, logp, nx, ref ? 1e-6 : 3e-6);
                }
            }
            dcase t;
            gd_sce_setup(&t, c, 1, 1);
            const void *in[] = {dlf, lpin, lv, wf};
            void *out[] = {dx};
            dc_run(&t, ref, in, out, label);
            snprintf(what, sizeof what, "dScores%s", k);
            gd_expect(label, what, dx, g, nx, 1e-6);
        }
        free(x), free(wt), free(dl), free(loss), free(logp), free(g), free(lab), free(lab32);
        free(xf), free(wf), free(dlf), free(lossf), free(logpf), free(dx), free(lpin);
    }
}
END_TEST

/* Every target ignored: the mean is 0/0 (NaN, as the ONNX reference), its gradient zero. */
START_TEST(test_sce_all_ignored)
{
    const float x[] = {1, 2, 3, 4, 5, 6}, lp[] = {-1, -1, -1, -1, -1, -1}, dl[] = {1};
    const int64_t lab[] = {7, 7};
    float loss, dx[6];
    for (int ref = 1; ref >= 0; ref--) {
        dcase t;
        dc_init(&t, "SoftmaxCrossEntropyLoss", 13, 1);
        DC_IN(&t, 2, 3);
        DC_IN(&t, 2);
        t.d.in[1].dtype = PIPPY_DT_INT64;
        dc_attr_i(&t, "ignore_index", 7);
        const void *in[] = {x, lab};
        void *out[] = {&loss};
        dc_run(&t, ref, in, out, "SoftmaxCrossEntropyLoss all ignored");
        ck_assert_msg(isnan(loss), "loss %g, expected NaN", (double)loss);
        dc_init(&t, "SoftmaxCrossEntropyLossGrad", 13, 1);
        t.d.domain = "pippy";
        dc_in_scalar(&t);
        DC_IN(&t, 2, 3);
        DC_IN(&t, 2);
        t.d.in[2].dtype = PIPPY_DT_INT64;
        dc_attr_i(&t, "ignore_index", 7);
        const void *gin[] = {dl, lp, lab};
        void *gout[] = {dx};
        dc_run(&t, ref, gin, gout, "SoftmaxCrossEntropyLossGrad all ignored");
        for (int i = 0; i < 6; i++)
            ck_assert_msg(dx[i] == 0.0f, "dScores[%d] = %g, expected 0", i, (double)dx[i]);
    }
}
END_TEST

START_TEST(test_sce_fast_vs_ref)
{
    static const struct {
        int rank;
        int64_t x[4];
        const char *red;
        int weights, int32;
    } cases[] = {
        {2, {64, 1000}, NULL, 0, 0}, {2, {64, 1000}, "sum", 1, 1}, {4, {4, 21, 16, 16}, "mean", 1, 0},
        {3, {8, 10, 33}, "none", 0, 0}, {3, {8, 10, 33}, "none", 1, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int n_out = 1; n_out <= 2; n_out++) {
            dcase t;
            dc_init(&t, "SoftmaxCrossEntropyLoss", 13, n_out);
            dc_in(&t, cases[c].rank, cases[c].x);
            int64_t ld[3] = {cases[c].x[0], cases[c].x[2], cases[c].x[3]};
            dc_in(&t, cases[c].rank - 1, ld);
            t.d.in[1].dtype = cases[c].int32 ? PIPPY_DT_INT32 : PIPPY_DT_INT64;
            t.fill[1] = DC_FILL_LABELS;
            t.label_max = cases[c].x[1];
            t.label_ignore = 1;
            dc_attr_i(&t, "ignore_index", 1);
            if (cases[c].weights) {
                DC_IN(&t, cases[c].x[1]);
                t.fill[2] = DC_FILL_POSITIVE;
            }
            if (cases[c].red)
                dc_attr_s(&t, "reduction", cases[c].red);
            t.scaled = 1, t.tol = 2e-6, t.must_fast = 1;
            char label[96];
            snprintf(label, sizeof label, "SoftmaxCrossEntropyLoss fast case %zu/%d", c, n_out);
            dc_check_fast_vs_ref(&t, 1700 + (unsigned)c, 0, label);
        }
}
END_TEST

START_TEST(test_sce_infer)
{
    dcase t;
    gd_sce_setup(&t, 4, 0, 2); /* [3,4,5], int32 labels [3,5], weights */
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 0);
    ck_assert_int_eq(t.d.out[1].rank, 3);
    t.d.in[1].dims[1] = 4;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "labels are int32[3,4]", "float[3,4,5]");
    t.d.in[1].dims[1] = 5;
    t.d.in[1].dtype = PIPPY_DT_FLOAT;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "labels", "int64 or int32");
    t.d.in[1].dtype = PIPPY_DT_INT64;
    t.d.in[2].dims[0] = 5;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "weights must be [4]", "float[5]");
    t.d.in[2].dims[0] = 4;
    t.attrs[0].s = "avg";
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "reduction is 'avg'", "mean, sum or none");
    t.attrs[0].s = "mean";
    t.d.n_out = 3;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "1 or 2 outputs", "found 3");
    gd_sce_setup(&t, 2, 1, 1); /* grad, reduction none: dLoss [6] */
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 2);
    t.d.in[0].rank = 0;
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "dLoss", "the loss's shape");
    t.d.n_in = 2;
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "3 or 4 inputs", "found 2");
}
END_TEST

/* ------------------------------------------------------------------ MatMul's autodiff attributes */

/* out (+)= op(A) op(B) in double, numpy batch broadcast; op = the last two dims swapped when t*. */
static void gd_matmul(int ra, const int64_t *ad, const double *a, int ta, int rb, const int64_t *bd, const double *b,
                      int tb, const double *bias, const double *init, double *out)
{
    int64_t M = ta ? ad[ra - 1] : ad[ra - 2], K = ta ? ad[ra - 2] : ad[ra - 1], N = tb ? bd[rb - 2] : bd[rb - 1];
    int nb = (ra > rb ? ra : rb) - 2;
    int64_t ob[8], nbatch = 1;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
        int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        ob[i] = da > db ? da : db;
        nbatch *= ob[i];
    }
    for (int64_t t = 0; t < nbatch; t++) {
        int64_t ao = 0, bo = 0, rem = t, sa = 1, sb = 1;
        for (int i = nb - 1; i >= 0; i--) { /* batch index -> offsets (a dim of 1 broadcasts) */
            int64_t idx = rem % ob[i];
            rem /= ob[i];
            int ia = i - (nb - (ra - 2)), ib = i - (nb - (rb - 2));
            int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
            ao += (da == 1 ? 0 : idx) * sa;
            bo += (db == 1 ? 0 : idx) * sb;
            sa *= da;
            sb *= db;
        }
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = bias ? bias[n] : 0;
                for (int64_t k = 0; k < K; k++)
                    s += a[ao * M * K + (ta ? k * M + m : m * K + k)] * b[bo * K * N + (tb ? n * K + k : k * N + n)];
                int64_t at = (t * M + m) * N + n;
                out[at] = s + (init ? init[at] : 0);
            }
    }
}

static const struct {
    int ra, rb;
    int64_t a[4], b[4];
    int ta, tb, acc, bias;
    unsigned cmask;
} gd_mm_cases[] = {
    {2, 2, {5, 3}, {5, 4}, 1, 0, 0, 0, 0},             /* dW = X^T dY */
    {2, 2, {3, 5}, {4, 5}, 0, 1, 0, 0, 0},             /* dX = dY W^T */
    {2, 2, {5, 3}, {4, 5}, 1, 1, 1, 0, 0},
    {3, 2, {2, 3, 5}, {4, 5}, 0, 1, 1, 0, 0},          /* [B,T,N] x W^T, one 2-D matmul */
    {3, 2, {2, 5, 3}, {5, 4}, 1, 0, 0, 0, 0},          /* A^T with a batch: batched */
    {4, 4, {2, 3, 4, 5}, {2, 3, 6, 5}, 0, 1, 0, 0, 0}, /* attention: Q K^T */
    {4, 4, {2, 3, 6, 4}, {2, 3, 6, 5}, 1, 0, 1, 0, 0}, /* P^T dO */
    {4, 3, {3, 1, 4, 5}, {2, 6, 5}, 0, 1, 1, 0, 0},    /* batch broadcast both ways */
    {2, 2, {3, 5}, {4, 5}, 0, 1, 1, 1, 2},             /* constant B^T, bias, accumulate */
    {2, 1, {5, 3}, {5}, 1, 0, 0, 0, 0},                /* B 1-D */
};

START_TEST(test_matmul_trans_acc)
{
    for (size_t c = 0; c < sizeof gd_mm_cases / sizeof gd_mm_cases[0]; c++) {
        char label[96];
        snprintf(label, sizeof label, "MatMul trans/accumulate case %zu", c);
        int ra = gd_mm_cases[c].ra, rb = gd_mm_cases[c].rb, b1 = rb == 1;
        int64_t bd2[4] = {gd_mm_cases[c].b[0], 1}; /* B 1-D seen as [K, 1] */
        const int64_t *ad = gd_mm_cases[c].a, *bd = b1 ? bd2 : gd_mm_cases[c].b;
        int rbe = b1 ? 2 : rb;
        dcase t;
        dc_init(&t, "MatMul", 13, 1);
        dc_in(&t, ra, ad);
        dc_in(&t, rb, gd_mm_cases[c].b);
        if (gd_mm_cases[c].ta)
            dc_attr_i(&t, "pippy.trans_a", 1);
        if (gd_mm_cases[c].tb)
            dc_attr_i(&t, "pippy.trans_b", 1);
        if (gd_mm_cases[c].acc)
            dc_attr_i(&t, "pippy.accumulate", 1);
        int64_t N = gd_mm_cases[c].tb ? bd[rbe - 2] : bd[rbe - 1];
        if (gd_mm_cases[c].bias) {
            dc_attr_i(&t, "pippy.bias", 1);
            dc_in(&t, 1, &N);
        }
        ck_assert_msg(pippy_op_infer(&t.d) == PIPPY_OK, "%s: %s", label, pippy_last_error());
        int64_t na = gd_numel(ra, ad), nb = gd_numel(rb, gd_mm_cases[c].b), ny = pippy_tdesc_numel(&t.d.out[0]);
        dc_seed(1800 + (unsigned)c);
        float *af = gd_falloc(na), *bf = gd_falloc(nb), *biasf = gd_falloc(N), *y = gd_falloc(ny);
        dc_fill(af, na, 0), dc_fill(bf, nb, 0), dc_fill(biasf, N, 0);
        double *a = malloc((size_t)na * sizeof *a), *b = malloc((size_t)nb * sizeof *b), *bias = malloc((size_t)N * sizeof *bias);
        double *init = gd_rand(ny, 0), *want = malloc((size_t)ny * sizeof *want);
        for (int64_t i = 0; i < na; i++)
            a[i] = af[i];
        for (int64_t i = 0; i < nb; i++)
            b[i] = bf[i];
        for (int64_t i = 0; i < N; i++)
            bias[i] = biasf[i];
        for (int64_t i = 0; i < ny; i++)
            init[i] = (float)init[i];
        gd_matmul(ra, ad, a, gd_mm_cases[c].ta, rbe, bd, b, gd_mm_cases[c].tb, gd_mm_cases[c].bias ? bias : NULL,
                  gd_mm_cases[c].acc ? init : NULL, want);
        for (int ref = 1; ref >= 0; ref--) {
            for (int64_t i = 0; i < ny; i++)
                y[i] = gd_mm_cases[c].acc ? (float)init[i] : NAN;
            if (gd_mm_cases[c].cmask & 2)
                t.d.in_const[1] = bf;
            const float *in[] = {af, (gd_mm_cases[c].cmask & 2) && !ref ? NULL : bf, biasf};
            gd_run(&t, ref, in, &y, label);
            t.d.in_const[1] = NULL;
            gd_expect(label, ref ? "Y (reference)" : "Y (fast)", y, want, ny, 1e-6);
        }
        free(af), free(bf), free(biasf), free(y), free(a), free(b), free(bias), free(init), free(want);
    }
}
END_TEST

START_TEST(test_matmul_trans_acc_fast_vs_ref)
{
    static const struct {
        int ra, rb;
        int64_t a[4], b[4];
        int ta, tb, acc, bias;
        unsigned cmask;
    } cases[] = {
        {2, 2, {256, 192}, {256, 160}, 1, 0, 0, 0, 0}, /* a Linear's dW = X^T dY */
        {2, 2, {256, 192}, {256, 160}, 1, 0, 1, 0, 0},
        {2, 2, {256, 160}, {192, 160}, 0, 1, 0, 0, 0}, /* its dX = dY W^T */
        {2, 2, {256, 160}, {192, 160}, 0, 1, 0, 0, 2}, /* constant W */
        {2, 2, {160, 256}, {192, 160}, 1, 1, 1, 0, 0},
        {3, 2, {4, 64, 96}, {80, 96}, 0, 1, 1, 0, 0},
        {3, 2, {4, 64, 96}, {64, 80}, 1, 0, 0, 0, 0},  /* A^T with a batch */
        {3, 3, {4, 64, 96}, {4, 64, 80}, 1, 0, 1, 0, 0},
        {4, 4, {2, 4, 33, 16}, {2, 4, 33, 16}, 0, 1, 0, 0, 0}, /* Q K^T */
        {4, 4, {2, 4, 33, 33}, {2, 4, 33, 16}, 1, 0, 1, 0, 0}, /* P^T dO, accumulate */
        {3, 2, {4, 64, 96}, {80, 96}, 0, 1, 1, 1, 0},  /* with the fused bias */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dcase t;
        dc_init(&t, "MatMul", 13, 1);
        dc_in(&t, cases[c].ra, cases[c].a);
        dc_in(&t, cases[c].rb, cases[c].b);
        if (cases[c].ta)
            dc_attr_i(&t, "pippy.trans_a", 1);
        if (cases[c].tb)
            dc_attr_i(&t, "pippy.trans_b", 1);
        if (cases[c].acc)
            dc_attr_i(&t, "pippy.accumulate", 1), t.out_init = 1;
        if (cases[c].bias) {
            dc_attr_i(&t, "pippy.bias", 1);
            int64_t n = cases[c].tb ? cases[c].b[cases[c].rb - 2] : cases[c].b[cases[c].rb - 1];
            dc_in(&t, 1, &n);
        }
        t.scaled = 1, t.tol = 3e-6, t.must_fast = 1;
        char label[96];
        snprintf(label, sizeof label, "MatMul trans/accumulate fast case %zu", c);
        dc_check_fast_vs_ref(&t, 1900 + (unsigned)c, cases[c].cmask, label);
    }
}
END_TEST

START_TEST(test_matmul_trans_acc_infer)
{
    dcase t;
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 5, 3);
    DC_IN(&t, 5, 4);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "inner dims differ", "float[5,4]");
    dc_attr_i(&t, "pippy.trans_a", 1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 3);
    ck_assert_int_eq(t.d.out[0].dims[1], 3);
    ck_assert_int_eq(t.d.out[0].dims[2], 4);
    dc_attr_i(&t, "pippy.trans_b", 1);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "(pippy.trans_a)", "(pippy.trans_b)");
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 5);
    DC_IN(&t, 5, 4);
    dc_attr_i(&t, "pippy.trans_a", 1);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "pippy.trans_a on a 1-D operand", "float[5]");
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 3, 5);
    DC_IN(&t, 5, 4);
    dc_attr_i(&t, "pippy.accumulate", 1);
    dc_attr_s(&t, "pippy.activation", "Relu");
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "pippy.accumulate", "activation");
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 3, 5);
    DC_IN(&t, 5, 4);
    dc_attr_s(&t, "pippy.trans_b", "yes");
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "pippy.trans_b", "INT 0 or 1");
}
END_TEST

/* ------------------------------------------------------------------ forward kernels, parameters at run time */

/* Training gives weights, scales and biases at run time (in_const NULL): every forward kernel
 * must keep its oneDNN path then, and agree with its reference. */
START_TEST(test_forward_runtime_params)
{
    dcase t;
    char label[96];
    int n = 0;
#define GD_FWD_CHECK()                                                                   \
    do {                                                                                 \
        t.scaled = 1, t.tol = 2e-6, t.must_fast = 1;                                     \
        snprintf(label, sizeof label, "%s with run-time parameters, case %d", t.d.op, n); \
        dc_check_fast_vs_ref(&t, 2000 + (unsigned)n++, 0, label);                        \
    } while (0)
    /* Conv: W and B at run time, blocked layouts, grouped, strided, 1-D */
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 2, 16, 14, 14);
    DC_IN(&t, 32, 16, 3, 3);
    DC_IN(&t, 32);
    DC_INTS(&t, "pads", 1, 1, 1, 1);
    GD_FWD_CHECK();
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 2, 8, 15, 15);
    DC_IN(&t, 12, 2, 3, 3);
    dc_attr_i(&t, "group", 4);
    DC_INTS(&t, "strides", 2, 2);
    GD_FWD_CHECK();
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 2, 5, 40);
    DC_IN(&t, 7, 5, 5);
    DC_IN(&t, 7);
    dc_attr_s(&t, "auto_pad", "SAME_UPPER");
    GD_FWD_CHECK();
    /* Gemm: B and C at run time (a Linear layer), transB, alpha/beta */
    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 64, 96);
    DC_IN(&t, 80, 96);
    DC_IN(&t, 80);
    dc_attr_i(&t, "transB", 1);
    GD_FWD_CHECK();
    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 96, 64);
    DC_IN(&t, 96, 80);
    DC_IN(&t, 64, 80);
    dc_attr_i(&t, "transA", 1);
    dc_attr_f(&t, "alpha", 0.5f);
    dc_attr_f(&t, "beta", 2.0f);
    GD_FWD_CHECK();
    /* MatMul: B at run time, 2-D and batched, with the fused bias at run time */
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 4, 33, 96);
    DC_IN(&t, 96, 80);
    GD_FWD_CHECK();
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 4, 33, 96);
    DC_IN(&t, 96, 80);
    DC_IN(&t, 80);
    dc_attr_i(&t, "pippy.bias", 1);
    GD_FWD_CHECK();
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 4, 33, 16);
    DC_IN(&t, 2, 4, 16, 33);
    GD_FWD_CHECK();
    /* LayerNormalization: Scale and B at run time, full and broadcast, with the statistics */
    dc_init(&t, "LayerNormalization", 17, 3);
    DC_IN(&t, 8, 64, 256);
    DC_IN(&t, 256);
    DC_IN(&t, 256);
    GD_FWD_CHECK();
    dc_init(&t, "LayerNormalization", 17, 1);
    DC_IN(&t, 4, 6, 10, 12);
    DC_IN(&t, 12);
    DC_IN(&t, 1, 12);
    dc_attr_i(&t, "axis", 2);
    GD_FWD_CHECK();
    dc_init(&t, "LayerNormalization", 17, 3);
    DC_IN(&t, 4, 6, 10, 12);
    DC_IN(&t, 10, 1);
    dc_attr_i(&t, "axis", -2);
    GD_FWD_CHECK();
    /* BatchNormalization (inference): parameters at run time */
    dc_init(&t, "BatchNormalization", 15, 1);
    DC_IN(&t, 4, 32, 14, 14);
    for (int i = 0; i < 4; i++)
        DC_IN(&t, 32);
    t.fill[4] = DC_FILL_POSITIVE;
    GD_FWD_CHECK();
    /* Softmax and the pools have no parameters: their fast paths at training shapes */
    dc_init(&t, "Softmax", 13, 1);
    DC_IN(&t, 4, 8, 64, 64);
    GD_FWD_CHECK();
    dc_init(&t, "LogSoftmax", 13, 1);
    DC_IN(&t, 64, 1000);
    GD_FWD_CHECK();
    dc_init(&t, "MaxPool", 22, 1);
    DC_IN(&t, 2, 16, 32, 32);
    DC_INTS(&t, "kernel_shape", 3, 3);
    DC_INTS(&t, "strides", 2, 2);
    DC_INTS(&t, "pads", 1, 1, 1, 1);
    GD_FWD_CHECK();
    dc_init(&t, "AveragePool", 22, 1);
    DC_IN(&t, 2, 16, 28, 28);
    DC_INTS(&t, "kernel_shape", 3, 3);
    DC_INTS(&t, "strides", 2, 2);
    DC_INTS(&t, "pads", 1, 1, 1, 1);
    dc_attr_i(&t, "count_include_pad", 1);
    GD_FWD_CHECK();
    dc_init(&t, "GlobalAveragePool", 22, 1);
    DC_IN(&t, 4, 64, 7, 7);
    GD_FWD_CHECK();
#undef GD_FWD_CHECK
}
END_TEST

static Suite *backend_grad_dense_suite(void)
{
    Suite *s = suite_create("backend_grad_dense");
    TCase *tc = tcase_create("grad_dense");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_softmax_grad_fd);
    tcase_add_test(tc, test_softmax_grad_fast_vs_ref);
    tcase_add_test(tc, test_softmax_grad_infer);
    tcase_add_test(tc, test_layernorm_grad_fd);
    tcase_add_test(tc, test_layernorm_weight_grad_fd);
    tcase_add_test(tc, test_batchnorm_grad_fd);
    tcase_add_test(tc, test_batchnorm_training);
    tcase_add_test(tc, test_norm_grad_fast_vs_ref);
    tcase_add_test(tc, test_norm_grad_infer);
    tcase_add_test(tc, test_conv_grad_fd);
    tcase_add_test(tc, test_conv_grad_fast_vs_ref);
    tcase_add_test(tc, test_conv_grad_infer);
    tcase_add_test(tc, test_pool_grad_fd);
    tcase_add_test(tc, test_maxpool_grad_ties);
    tcase_add_test(tc, test_pool_grad_fast_vs_ref);
    tcase_add_test(tc, test_pool_grad_infer);
    tcase_add_test(tc, test_sce_loss);
    tcase_add_test(tc, test_sce_all_ignored);
    tcase_add_test(tc, test_sce_fast_vs_ref);
    tcase_add_test(tc, test_sce_infer);
    tcase_add_test(tc, test_matmul_trans_acc);
    tcase_add_test(tc, test_matmul_trans_acc_fast_vs_ref);
    tcase_add_test(tc, test_matmul_trans_acc_infer);
    tcase_add_test(tc, test_forward_runtime_params);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(backend_grad_dense_suite)
