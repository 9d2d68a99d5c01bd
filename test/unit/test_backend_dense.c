/* test_backend_dense.c — the dense CPU op families: MatMul, Gemm, Conv, MaxPool,
 * AveragePool, GlobalAveragePool, BatchNormalization, LayerNormalization, Softmax,
 * LogSoftmax.
 *
 * For each op: the fast (oneDNN) kernel against the reference kernel on
 * pseudo-random inputs over several shapes and attribute combinations (each
 * kernel created once and run twice, on two input sets; constant weights are
 * passed as in_const with a NULL run-time pointer), hand-computed cases that check
 * the reference itself, and shape-rule errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"

/* ------------------------------------------------------------------ helpers */

#define TC_MAX_ATTRS 12

typedef struct {
    pippy_op_desc d;
    pippy_attr attrs[TC_MAX_ATTRS];
    int64_t ints[TC_MAX_ATTRS][8];
    int fill[PIPPY_MAX_IO]; /* 0: uniform [-1,1]; 1: [0.5,1.5] (variances) */
} tcase_desc;

static void tc_init(tcase_desc *t, const char *op, int opset, int n_out)
{
    memset(t, 0, sizeof *t);
    t->d.op = op;
    t->d.domain = "";
    t->d.opset = opset;
    t->d.name = "t";
    t->d.attrs = t->attrs;
    t->d.n_out = n_out;
}

static void tc_in(tcase_desc *t, int rank, const int64_t *dims)
{
    pippy_tdesc *x = &t->d.in[t->d.n_in++];
    x->dtype = PIPPY_DT_FLOAT;
    x->rank = rank;
    for (int i = 0; i < rank; i++)
        x->dims[i] = dims[i];
}
#define TC_IN(t, ...)                                                          \
    do {                                                                       \
        const int64_t tc_d_[] = {__VA_ARGS__};                                 \
        tc_in((t), (int)(sizeof tc_d_ / sizeof tc_d_[0]), tc_d_);              \
    } while (0)
static void tc_in_scalar(tcase_desc *t) { tc_in(t, 0, NULL); }
static void tc_in_absent(tcase_desc *t) { t->d.in[t->d.n_in++].dtype = PIPPY_DT_UNDEFINED; }

static pippy_attr *tc_attr(tcase_desc *t, const char *name, int type)
{
    ck_assert_int_lt(t->d.n_attrs, TC_MAX_ATTRS);
    pippy_attr *a = &t->attrs[t->d.n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = type;
    return a;
}
static void tc_attr_i(tcase_desc *t, const char *name, int64_t v) { tc_attr(t, name, PIPPY_ATTR_INT)->i = v; }
static void tc_attr_f(tcase_desc *t, const char *name, float v) { tc_attr(t, name, PIPPY_ATTR_FLOAT)->f = v; }
static void tc_attr_s(tcase_desc *t, const char *name, const char *v) { tc_attr(t, name, PIPPY_ATTR_STRING)->s = v; }
static void tc_attr_ints(tcase_desc *t, const char *name, int n, const int64_t *v)
{
    int slot = t->d.n_attrs;
    pippy_attr *a = tc_attr(t, name, PIPPY_ATTR_INTS);
    memcpy(t->ints[slot], v, (size_t)n * sizeof *v);
    a->n = n;
    a->ints = t->ints[slot];
}
#define TC_INTS(t, name, ...)                                                  \
    do {                                                                       \
        const int64_t tc_v_[] = {__VA_ARGS__};                                 \
        tc_attr_ints((t), (name), (int)(sizeof tc_v_ / sizeof tc_v_[0]), tc_v_); \
    } while (0)

static uint64_t rng_state;
static float rng_uniform(void) /* [-1, 1) */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void fill(float *p, int64_t n, int mode)
{
    for (int64_t i = 0; i < n; i++)
        p[i] = mode == 1 ? 1.0f + 0.5f * rng_uniform() : rng_uniform();
}

/* max |f - r| / max(1, |r|) over n elements; *at the worst index */
static double rel_err(const float *f, const float *r, int64_t n, int64_t *at)
{
    double worst = 0;
    *at = -1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)f[i] - (double)r[i]) / fmax(1.0, fabs((double)r[i]));
        if (!(e <= worst)) { /* also catches NaN */
            worst = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return worst;
}

/* Infer t, build fast and reference kernels, run both on two random input sets and
 * compare every output. const_mask: inputs given as in_const (NULL at run time for the
 * fast kernel). */
static void check_fast_vs_ref(tcase_desc *t, unsigned seed, unsigned const_mask, const char *label)
{
    pippy_op_desc *d = &t->d;
    rng_state = seed * 2654435761u + 1;
    pippy_status st = pippy_op_infer(d);
    ck_assert_msg(st == PIPPY_OK, "%s: infer failed: %s", label, pippy_last_error());
    float *in[PIPPY_MAX_IO] = {0}, *out_f[PIPPY_MAX_IO] = {0}, *out_r[PIPPY_MAX_IO] = {0};
    for (int i = 0; i < d->n_in; i++) {
        if (d->in[i].dtype == PIPPY_DT_UNDEFINED)
            continue;
        int64_t n = pippy_tdesc_numel(&d->in[i]);
        in[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        fill(in[i], n, t->fill[i]);
        if (const_mask & (1u << i))
            d->in_const[i] = in[i];
    }
    for (int i = 0; i < d->n_out; i++) {
        int64_t n = pippy_tdesc_numel(&d->out[i]);
        out_f[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        out_r[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
    }
    pippy_kernel *kf = NULL, *kr = NULL;
    d->reference = 0;
    st = pippy_kernel_create(d, &kf);
    ck_assert_msg(st == PIPPY_OK, "%s: create (fast) failed: %s", label, pippy_last_error());
    d->reference = 1;
    st = pippy_kernel_create(d, &kr);
    ck_assert_msg(st == PIPPY_OK, "%s: create (reference) failed: %s", label, pippy_last_error());
    d->reference = 0;
    for (int round = 0; round < 2; round++) {
        if (round == 1) /* new data for the inputs given at run time */
            for (int i = 0; i < d->n_in; i++)
                if (in[i] && !(const_mask & (1u << i)))
                    fill(in[i], pippy_tdesc_numel(&d->in[i]), t->fill[i]);
        const void *in_f[PIPPY_MAX_IO], *in_r[PIPPY_MAX_IO];
        for (int i = 0; i < PIPPY_MAX_IO; i++) {
            in_r[i] = in[i];
            in_f[i] = (const_mask & (1u << i)) ? NULL : in[i];
        }
        for (int i = 0; i < d->n_out; i++) {
            int64_t n = pippy_tdesc_numel(&d->out[i]);
            for (int64_t j = 0; j < n; j++)
                out_f[i][j] = out_r[i][j] = NAN;
        }
        pippy_kernel_run(kf, in_f, (void *const *)out_f);
        pippy_kernel_run(kr, in_r, (void *const *)out_r);
        for (int i = 0; i < d->n_out; i++) {
            int64_t at, n = pippy_tdesc_numel(&d->out[i]);
            double e = rel_err(out_f[i], out_r[i], n, &at);
            ck_assert_msg(e <= 1e-4, "%s: output %d round %d differs at %lld: fast %g vs reference %g (rel %g)",
                          label, i, round, (long long)at, at >= 0 ? out_f[i][at] : 0.0,
                          at >= 0 ? out_r[i][at] : 0.0, e);
        }
    }
    pippy_kernel_destroy(kf);
    pippy_kernel_destroy(kr);
    for (int i = 0; i < PIPPY_MAX_IO; i++) {
        free(in[i]);
        free(out_f[i]);
        free(out_r[i]);
        d->in_const[i] = NULL;
    }
}

/* Run t (already set up) with the given inputs, through the reference kernel and then the
 * fast one; both must give want (n values of output 0) within 1e-5 relative. */
static void check_known(tcase_desc *t, const float *const *inputs, const float *want, int64_t n, const char *label)
{
    pippy_op_desc *d = &t->d;
    pippy_status st = pippy_op_infer(d);
    ck_assert_msg(st == PIPPY_OK, "%s: infer failed: %s", label, pippy_last_error());
    ck_assert_int_eq(pippy_tdesc_numel(&d->out[0]), n);
    float *y = malloc((size_t)n * sizeof *y);
    for (int ref = 1; ref >= 0; ref--) {
        d->reference = ref;
        pippy_kernel *k;
        st = pippy_kernel_create(d, &k);
        ck_assert_msg(st == PIPPY_OK, "%s: create failed: %s", label, pippy_last_error());
        void *outs[PIPPY_MAX_IO] = {y};
        pippy_kernel_run(k, (const void *const *)inputs, outs);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(fabs(y[i] - want[i]) <= 1e-5 * fmax(1.0, fabs(want[i])),
                          "%s (%s): y[%lld] = %.7g, expected %.7g", label, ref ? "reference" : "fast", (long long)i,
                          y[i], want[i]);
        pippy_kernel_destroy(k);
    }
    d->reference = 0;
    free(y);
}

static void check_infer_fails(tcase_desc *t, pippy_status want, const char *needle1, const char *needle2)
{
    pippy_error_clear();
    pippy_status st = pippy_op_infer(&t->d);
    ck_assert_msg(st == want, "infer of %s returned %s, expected %s (message: %s)", t->d.op, pippy_status_string(st),
                  pippy_status_string(want), pippy_last_error());
    const char *msg = pippy_last_error();
    if (needle1)
        ck_assert_msg(strstr(msg, needle1), "message '%s' lacks '%s'", msg, needle1);
    if (needle2)
        ck_assert_msg(strstr(msg, needle2), "message '%s' lacks '%s'", msg, needle2);
}

/* ------------------------------------------------------------------ MatMul / Gemm */

START_TEST(test_matmul_fast_vs_ref)
{
    tcase_desc t;
    static const struct {
        int ra, rb;
        int64_t a[4], b[4];
        unsigned cmask;
        int relu;
    } cases[] = {
        {2, 2, {3, 4}, {4, 5}, 0, 0},
        {2, 2, {33, 65}, {65, 17}, 2, 0},
        {3, 3, {2, 3, 4}, {2, 4, 5}, 0, 0},
        {4, 4, {1, 2, 3, 4}, {1, 2, 4, 3}, 0, 0},
        {4, 4, {3, 1, 3, 4}, {1, 2, 4, 2}, 0, 0},        /* both sides broadcast */
        {4, 4, {2, 3, 7, 16}, {2, 3, 16, 7}, 0, 0},      /* [B,H,T,D] x [B,H,D,T] */
        {4, 4, {2, 3, 7, 16}, {2, 3, 16, 7}, 2, 1},
        {3, 2, {2, 5, 16}, {16, 24}, 0, 0},              /* [B,T,C] x [C,N]: one 2-D matmul */
        {3, 2, {2, 5, 16}, {16, 24}, 2, 1},
        {4, 4, {2, 1, 5, 8}, {1, 1, 8, 6}, 2, 0},        /* B batch of ones */
        {2, 3, {5, 8}, {3, 8, 6}, 0, 0},                 /* A broadcast over B's batch */
        {4, 4, {2, 1, 5, 8}, {1, 3, 8, 6}, 2, 0},
        {1, 3, {4}, {2, 4, 1}, 0, 0},
        {4, 1, {1, 2, 4, 3}, {3}, 0, 0},
        {1, 1, {3}, {3}, 0, 0},
        {1, 2, {7}, {7, 9}, 2, 1},
        {2, 2, {1, 1}, {1, 1}, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tc_init(&t, "MatMul", 13, 1);
        tc_in(&t, cases[c].ra, cases[c].a);
        tc_in(&t, cases[c].rb, cases[c].b);
        if (cases[c].relu)
            tc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "MatMul case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 1, cases[c].cmask, label);
    }
}
END_TEST

START_TEST(test_gemm_fast_vs_ref)
{
    static const struct {
        int64_t M, K, N;
        int ta, tb;
        float alpha, beta;
        int crank;
        int64_t c[2];
        unsigned cmask;
        int relu;
    } cases[] = {
        {3, 5, 4, 0, 0, 1.0f, 1.0f, -1, {0}, 0, 0},    /* no C */
        {3, 5, 4, 0, 0, 1.0f, 1.0f, -2, {0}, 0, 1},    /* C given as absent */
        {3, 5, 4, 0, 0, 1.0f, 1.0f, 2, {1, 4}, 0, 0},
        {2, 7, 4, 0, 0, 1.0f, 1.0f, 1, {4}, 0, 0},
        {3, 6, 4, 0, 0, 1.0f, 1.0f, 2, {3, 4}, 0, 0},
        {3, 6, 4, 0, 0, 1.0f, 1.0f, 2, {3, 1}, 0, 0},
        {2, 3, 4, 0, 0, 1.0f, 1.0f, 0, {0}, 0, 0},     /* scalar C */
        {3, 7, 3, 0, 0, 1.0f, 1.0f, 1, {1}, 0, 0},
        {3, 6, 4, 1, 0, 1.0f, 1.0f, 2, {1, 4}, 0, 0},  /* transA */
        {3, 6, 4, 0, 1, 1.0f, 1.0f, 2, {1, 4}, 0, 0},  /* transB */
        {3, 4, 5, 1, 1, 0.25f, 0.35f, 2, {1, 5}, 0, 0},
        {3, 5, 4, 0, 0, 0.5f, 1.0f, 2, {1, 4}, 0, 0},
        {2, 7, 4, 0, 0, 1.0f, 0.5f, 2, {1, 4}, 0, 0},
        {2, 7, 4, 0, 0, 1.0f, 0.0f, 2, {2, 4}, 0, 0},  /* beta 0: C ignored */
        {16, 64, 32, 0, 1, 1.0f, 1.0f, 1, {32}, 6, 1}, /* Linear layer: constant W (transB) and bias, ReLU */
        {16, 64, 32, 0, 1, 0.7f, 1.3f, 1, {32}, 6, 0},
        {16, 64, 32, 1, 0, 0.7f, 1.3f, 2, {16, 32}, 2, 1},
        {16, 64, 32, 0, 0, 0.7f, 1.3f, 2, {16, 1}, 4, 0},
        {5, 9, 3, 1, 1, 2.0f, -1.5f, 2, {5, 3}, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase_desc t;
        tc_init(&t, "Gemm", 13, 1);
        int64_t a[2] = {cases[c].ta ? cases[c].K : cases[c].M, cases[c].ta ? cases[c].M : cases[c].K};
        int64_t b[2] = {cases[c].tb ? cases[c].N : cases[c].K, cases[c].tb ? cases[c].K : cases[c].N};
        tc_in(&t, 2, a);
        tc_in(&t, 2, b);
        if (cases[c].crank >= 0)
            tc_in(&t, cases[c].crank, cases[c].c);
        else if (cases[c].crank == -2)
            tc_in_absent(&t);
        if (cases[c].ta)
            tc_attr_i(&t, "transA", 1);
        if (cases[c].tb)
            tc_attr_i(&t, "transB", 1);
        if (cases[c].alpha != 1.0f)
            tc_attr_f(&t, "alpha", cases[c].alpha);
        if (cases[c].beta != 1.0f)
            tc_attr_f(&t, "beta", cases[c].beta);
        if (cases[c].relu)
            tc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "Gemm case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 100, cases[c].cmask, label);
    }
}
END_TEST

/* MatMul with the compiler's fused bias ("pippy.bias", a third input float[N]): fast vs
 * reference with the bias constant or given at run time, with and without a fused ReLU, plus
 * hand-computed values. */
START_TEST(test_matmul_bias)
{
    tcase_desc t;
    static const struct {
        int ra;
        int64_t a[3], b[2];
        unsigned cmask;
        int relu;
    } cases[] = {
        {3, {2, 5, 16}, {16, 24}, 0, 0}, {3, {2, 5, 16}, {16, 24}, 6, 0}, {2, {33, 65}, {65, 17}, 2, 1},
        {3, {4, 7, 32}, {32, 8}, 4, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tc_init(&t, "MatMul", 13, 1);
        tc_in(&t, cases[c].ra, cases[c].a);
        tc_in(&t, 2, cases[c].b);
        tc_in(&t, 1, &cases[c].b[1]);
        tc_attr_i(&t, "pippy.bias", 1);
        if (cases[c].relu)
            tc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "MatMul+bias case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 101, cases[c].cmask, label);
    }
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 2);
    TC_IN(&t, 2, 2);
    TC_IN(&t, 2);
    tc_attr_i(&t, "pippy.bias", 1);
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, bias[] = {0.5f, -100}, want[] = {19.5f, -78, 43.5f, -50};
    const float *ins[] = {a, b, bias};
    check_known(&t, ins, want, 4, "MatMul 2x2 + bias");
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 2);
    TC_IN(&t, 2, 2);
    TC_IN(&t, 3);
    tc_attr_i(&t, "pippy.bias", 1);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "bias", "float[2]");
}
END_TEST

START_TEST(test_matmul_known)
{
    tcase_desc t;
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 2);
    TC_IN(&t, 2, 2);
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, want[] = {19, 22, 43, 50};
    const float *ins[] = {a, b};
    check_known(&t, ins, want, 4, "MatMul 2x2");

    /* 1-D x 1-D: a dot product, a scalar result */
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 3);
    TC_IN(&t, 3);
    const float u[] = {1, 2, 3}, v[] = {4, -5, 6}, dot[] = {12};
    const float *ins2[] = {u, v};
    check_known(&t, ins2, dot, 1, "MatMul 1-D");
    ck_assert_int_eq(t.d.out[0].rank, 0);

    /* batch broadcast: [2,1,2] x [2,1] -> [2,1,1]... A [2,1,2], B [2,1] */
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 1, 2);
    TC_IN(&t, 2, 1);
    const float ab[] = {1, 2, 3, 4}, bb[] = {10, 1}, wb[] = {12, 34};
    const float *ins3[] = {ab, bb};
    check_known(&t, ins3, wb, 2, "MatMul broadcast");

    /* Gemm: alpha 2, beta 0.5, transA, C [1,2] */
    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, 2, 2); /* A^T is [[1,3],[2,4]] */
    TC_IN(&t, 2, 2);
    TC_IN(&t, 1, 2);
    tc_attr_i(&t, "transA", 1);
    tc_attr_f(&t, "alpha", 2.0f);
    tc_attr_f(&t, "beta", 0.5f);
    const float ga[] = {1, 2, 3, 4}, gb[] = {1, 0, 0, 1}, gc[] = {10, 20};
    /* A^T * I = [[1,3],[2,4]]; *2 = [[2,6],[4,8]]; + 0.5*[10,20] */
    const float gw[] = {7, 16, 9, 18};
    const float *ins4[] = {ga, gb, gc};
    check_known(&t, ins4, gw, 4, "Gemm transA alpha beta");

    /* MatMul with the fused ReLU */
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 1, 2);
    TC_IN(&t, 2, 2);
    tc_attr_s(&t, "pippy.activation", "Relu");
    const float ra[] = {1, -1}, rb[] = {1, 2, 3, 1}, rw[] = {0, 1};
    const float *ins5[] = {ra, rb};
    check_known(&t, ins5, rw, 2, "MatMul + Relu");
}
END_TEST

START_TEST(test_matmul_infer)
{
    tcase_desc t;
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 3, 4);
    TC_IN(&t, 4, 5);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 3);
    ck_assert_int_eq(t.d.out[0].dims[0], 2);
    ck_assert_int_eq(t.d.out[0].dims[1], 3);
    ck_assert_int_eq(t.d.out[0].dims[2], 5);
    ck_assert(fabs(pippy_op_flops(&t.d) - 2.0 * 2 * 3 * 4 * 5) < 1e-9);

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 3, 1, 3, 4);
    TC_IN(&t, 1, 2, 4, 2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 4);
    ck_assert_int_eq(t.d.out[0].dims[0], 3);
    ck_assert_int_eq(t.d.out[0].dims[1], 2);
    ck_assert_int_eq(t.d.out[0].dims[2], 3);
    ck_assert_int_eq(t.d.out[0].dims[3], 2);

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 4);
    TC_IN(&t, 2, 4, 1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 2);
    ck_assert_int_eq(t.d.out[0].dims[0], 2);
    ck_assert_int_eq(t.d.out[0].dims[1], 1);

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 3);
    TC_IN(&t, 4, 5);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "inner dims differ", "A is float[2,3], B is float[4,5]");

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 3, 4);
    TC_IN(&t, 3, 4, 5);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "batch dims", "float[3,4,5]");

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 3);
    TC_IN(&t, 3, 5);
    t.d.in[1].dtype = PIPPY_DT_INT64;
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "int64");

    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, 2, 3);
    TC_IN(&t, 3, 5);
    tc_attr_s(&t, "pippy.activation", "Tanh");
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "Tanh", NULL);

    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, 2, 3);
    TC_IN(&t, 4, 5);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "inner dims differ", "float[4,5]");

    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, 2, 3);
    TC_IN(&t, 5, 3);
    tc_attr_i(&t, "transB", 1);
    TC_IN(&t, 3, 5);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "C is float[3,5]", "[2,5]");

    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, 2, 3, 1);
    TC_IN(&t, 3, 5);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "2-D", NULL);
}
END_TEST

/* ------------------------------------------------------------------ Conv */

typedef struct {
    int ns;
    int64_t n, c, m, in[3], k[3];
    int group;
    const char *auto_pad;
    int64_t strides[3], dil[3], pads[6]; /* 0: attribute absent */
    int bias;
    unsigned cmask;
    int relu;
} conv_case;

static void conv_setup(tcase_desc *t, const conv_case *cc)
{
    tc_init(t, "Conv", 22, 1);
    int64_t x[5] = {cc->n, cc->c}, w[5] = {cc->m, cc->c / cc->group};
    for (int i = 0; i < cc->ns; i++) {
        x[2 + i] = cc->in[i];
        w[2 + i] = cc->k[i];
    }
    tc_in(t, 2 + cc->ns, x);
    tc_in(t, 2 + cc->ns, w);
    if (cc->bias)
        TC_IN(t, cc->m);
    if (cc->group != 1)
        tc_attr_i(t, "group", cc->group);
    if (cc->auto_pad)
        tc_attr_s(t, "auto_pad", cc->auto_pad);
    if (cc->strides[0])
        tc_attr_ints(t, "strides", cc->ns, cc->strides);
    if (cc->dil[0])
        tc_attr_ints(t, "dilations", cc->ns, cc->dil);
    int any_pad = 0;
    for (int i = 0; i < 2 * cc->ns; i++)
        any_pad |= cc->pads[i] != 0;
    if (any_pad)
        tc_attr_ints(t, "pads", 2 * cc->ns, cc->pads);
    tc_attr_ints(t, "kernel_shape", cc->ns, cc->k);
    if (cc->relu)
        tc_attr_s(t, "pippy.activation", "Relu");
}

START_TEST(test_conv_fast_vs_ref)
{
    static const conv_case cases[] = {
        {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 0, 0},
        {2, 1, 1, 1, {7, 5}, {3, 3}, 1, NULL, {2, 2}, {0}, {1, 0, 1, 0}, 0, 0, 0},
        {2, 1, 1, 1, {5, 5}, {3, 3}, 1, "SAME_LOWER", {2, 2}, {0}, {0}, 0, 0, 0},
        {2, 2, 3, 4, {6, 7}, {3, 2}, 1, "SAME_UPPER", {2, 1}, {0}, {0}, 1, 0, 0},
        {2, 1, 3, 4, {8, 8}, {3, 3}, 1, "VALID", {2, 2}, {0}, {0}, 1, 2, 0},
        {2, 2, 4, 6, {9, 9}, {3, 3}, 2, NULL, {1, 1}, {2, 2}, {2, 2, 2, 2}, 1, 0, 1},  /* group, dilation */
        {2, 1, 8, 8, {10, 10}, {3, 3}, 8, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 1, 6, 0},   /* depthwise, constant W, B */
        {2, 2, 16, 32, {12, 12}, {3, 3}, 1, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 1, 6, 1}, /* blocked layouts */
        {2, 1, 16, 32, {12, 12}, {3, 3}, 1, NULL, {1, 1}, {0}, {1, 1, 1, 1}, 1, 0, 0}, /* W at run time */
        {2, 2, 16, 16, {7, 7}, {1, 1}, 1, NULL, {2, 2}, {0}, {0}, 0, 2, 0},            /* 1x1 stride 2 */
        {2, 1, 3, 16, {15, 15}, {7, 7}, 1, NULL, {2, 2}, {0}, {3, 3, 3, 3}, 1, 6, 1},  /* ResNet stem-like */
        {1, 2, 3, 5, {11}, {3}, 1, NULL, {2}, {0}, {1, 2}, 1, 0, 0},                    /* 1-D */
        {1, 1, 4, 4, {16}, {5}, 2, "SAME_UPPER", {1}, {2}, {0}, 0, 2, 0},
        {3, 1, 2, 3, {5, 6, 4}, {3, 3, 2}, 1, NULL, {1, 2, 1}, {0}, {1, 1, 0, 1, 0, 1}, 1, 0, 0}, /* 3-D */
        {3, 1, 4, 4, {6, 6, 6}, {3, 3, 3}, 2, NULL, {2, 2, 2}, {0}, {1, 1, 1, 1, 1, 1}, 1, 6, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase_desc t;
        conv_setup(&t, &cases[c]);
        char label[64];
        snprintf(label, sizeof label, "Conv case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 200, cases[c].cmask, label);
    }
}
END_TEST

START_TEST(test_conv_known)
{
    /* ONNX's basic conv: x = 0..24 as [1,1,5,5], W = ones [1,1,3,3] */
    float x[25], w[9];
    for (int i = 0; i < 25; i++)
        x[i] = (float)i;
    for (int i = 0; i < 9; i++)
        w[i] = 1.0f;
    const float *ins[] = {x, w};
    tcase_desc t;
    conv_case with_pad = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 0, 0};
    conv_setup(&t, &with_pad);
    const float want_pad[] = {12,  21,  27,  33,  24,  33,  54,  63,  72,  51,  63,  99, 108,
                              117, 81,  93,  144, 153, 162, 111, 72,  111, 117, 123, 84};
    check_known(&t, ins, want_pad, 25, "Conv 3x3 pads 1");
    conv_case no_pad = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {0}, {0}, {0}, 0, 0, 0};
    conv_setup(&t, &no_pad);
    const float want_nopad[] = {54, 63, 72, 99, 108, 117, 144, 153, 162};
    check_known(&t, ins, want_nopad, 9, "Conv 3x3 no pads");
    conv_case strided = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0, 0};
    conv_setup(&t, &strided);
    const float want_str[] = {12, 27, 24, 63, 108, 81, 72, 117, 84};
    check_known(&t, ins, want_str, 9, "Conv 3x3 stride 2");

    /* group 2 with bias: two channels, each its own 1x1 weight */
    conv_case grp = {2, 1, 2, 2, {1, 2}, {1, 1}, 2, NULL, {0}, {0}, {0}, 1, 0, 0};
    conv_setup(&t, &grp);
    const float gx[] = {1, 2, 3, 4}, gw[] = {10, -1}, gb[] = {0.5f, 100};
    const float want_g[] = {10.5f, 20.5f, 97, 96};
    const float *gins[] = {gx, gw, gb};
    check_known(&t, gins, want_g, 4, "Conv group 2 + bias");
}
END_TEST

START_TEST(test_conv_infer)
{
    tcase_desc t;
    conv_case c1 = {2, 1, 1, 1, {7, 5}, {3, 3}, 1, NULL, {2, 2}, {0}, {1, 0, 1, 0}, 0, 0, 0};
    conv_setup(&t, &c1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 4);
    ck_assert_int_eq(t.d.out[0].dims[3], 2);
    ck_assert(fabs(pippy_op_flops(&t.d) - 2.0 * 1 * 1 * 1 * 8 * 9) < 1e-9);

    conv_case c2 = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, "SAME_LOWER", {2, 2}, {0}, {0}, 0, 0, 0};
    conv_setup(&t, &c2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 3);
    ck_assert_int_eq(t.d.out[0].dims[3], 3);

    /* channels differ */
    tc_init(&t, "Conv", 22, 1);
    TC_IN(&t, 1, 3, 8, 8);
    TC_IN(&t, 4, 2, 3, 3);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "channels differ", "float[4,2,3,3]");
    /* bias of the wrong size */
    tc_init(&t, "Conv", 22, 1);
    TC_IN(&t, 1, 3, 8, 8);
    TC_IN(&t, 4, 3, 3, 3);
    TC_IN(&t, 3);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "B must be [4]", "float[3]");
    /* window larger than the input */
    tc_init(&t, "Conv", 22, 1);
    TC_IN(&t, 1, 3, 2, 2);
    TC_IN(&t, 4, 3, 3, 3);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "larger than the padded input", NULL);
    /* 4 spatial dims */
    tc_init(&t, "Conv", 22, 1);
    TC_IN(&t, 1, 1, 3, 3, 3, 3);
    TC_IN(&t, 1, 1, 1, 1, 1, 1);
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "1-D, 2-D and 3-D", NULL);
    /* bad auto_pad */
    tc_init(&t, "Conv", 22, 1);
    TC_IN(&t, 1, 1, 3, 3);
    TC_IN(&t, 1, 1, 1, 1);
    tc_attr_s(&t, "auto_pad", "SAME");
    check_infer_fails(&t, PIPPY_ERR_INVALID, "auto_pad", NULL);
}
END_TEST

/* ------------------------------------------------------------------ pools */

typedef struct {
    const char *op;
    int ns;
    int64_t n, c, in[3], k[3];
    const char *auto_pad;
    int64_t strides[3], dil[3], pads[6];
    int ceil_mode, include_pad;
} pool_case;

static void pool_setup(tcase_desc *t, const pool_case *pc)
{
    tc_init(t, pc->op, 22, 1);
    int64_t x[5] = {pc->n, pc->c};
    for (int i = 0; i < pc->ns; i++)
        x[2 + i] = pc->in[i];
    tc_in(t, 2 + pc->ns, x);
    if (strcmp(pc->op, "GlobalAveragePool") == 0)
        return;
    tc_attr_ints(t, "kernel_shape", pc->ns, pc->k);
    if (pc->auto_pad)
        tc_attr_s(t, "auto_pad", pc->auto_pad);
    if (pc->strides[0])
        tc_attr_ints(t, "strides", pc->ns, pc->strides);
    if (pc->dil[0])
        tc_attr_ints(t, "dilations", pc->ns, pc->dil);
    int any_pad = 0;
    for (int i = 0; i < 2 * pc->ns; i++)
        any_pad |= pc->pads[i] != 0;
    if (any_pad)
        tc_attr_ints(t, "pads", 2 * pc->ns, pc->pads);
    if (pc->ceil_mode)
        tc_attr_i(t, "ceil_mode", 1);
    if (pc->include_pad)
        tc_attr_i(t, "count_include_pad", 1);
}

START_TEST(test_pool_fast_vs_ref)
{
    static const pool_case cases[] = {
        {"MaxPool", 2, 1, 3, {32, 32}, {2, 2}, NULL, {0}, {0}, {0}, 0, 0},
        {"MaxPool", 2, 1, 1, {5, 5}, {5, 5}, NULL, {0}, {0}, {2, 2, 2, 2}, 0, 0},
        {"MaxPool", 2, 2, 3, {11, 9}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0},
        {"MaxPool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},          /* ceil */
        {"MaxPool", 2, 1, 1, {2, 2}, {1, 1}, NULL, {2, 2}, {0}, {0}, 1, 0},          /* ceil drops a window */
        {"MaxPool", 2, 1, 2, {9, 9}, {2, 2}, NULL, {1, 1}, {2, 2}, {0}, 0, 0},       /* dilation */
        {"MaxPool", 2, 1, 3, {12, 12}, {2, 2}, "SAME_UPPER", {0}, {0}, {0}, 0, 0},
        {"MaxPool", 2, 1, 3, {12, 12}, {3, 3}, "SAME_LOWER", {2, 2}, {0}, {0}, 0, 0},
        {"MaxPool", 1, 1, 3, {32}, {2}, NULL, {0}, {0}, {0}, 0, 0},
        {"MaxPool", 3, 1, 2, {8, 8, 8}, {2, 2, 2}, NULL, {0}, {0}, {0}, 0, 0},
        {"MaxPool", 3, 1, 1, {13, 13, 13}, {3, 3, 3}, NULL, {2, 2, 2}, {2, 2, 2}, {0}, 1, 0},
        {"AveragePool", 2, 1, 3, {28, 28}, {3, 3}, NULL, {0}, {0}, {2, 2, 2, 2}, 0, 0},
        {"AveragePool", 2, 1, 3, {28, 28}, {3, 3}, NULL, {0}, {0}, {2, 2, 2, 2}, 0, 1},
        {"AveragePool", 2, 1, 3, {32, 32}, {5, 5}, NULL, {3, 3}, {0}, {0}, 0, 0},
        {"AveragePool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0},       /* ceil */
        {"AveragePool", 2, 1, 3, {2, 2}, {3, 3}, NULL, {3, 3}, {0}, {1, 1, 1, 1}, 1, 1},
        {"AveragePool", 2, 1, 2, {8, 8}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 1, 1}, /* ceil past pads */
        {"AveragePool", 2, 1, 2, {8, 8}, {3, 3}, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 1, 0},
        {"AveragePool", 2, 1, 3, {12, 12}, {2, 2}, "SAME_UPPER", {0}, {0}, {0}, 0, 0},
        {"AveragePool", 2, 1, 3, {12, 12}, {2, 2}, "SAME_LOWER", {0}, {0}, {0}, 0, 1},
        {"AveragePool", 2, 1, 1, {4, 4}, {2, 2}, NULL, {1, 1}, {2, 2}, {0}, 1, 0},    /* dilation */
        {"AveragePool", 3, 1, 1, {16, 16, 16}, {5, 5, 5}, NULL, {3, 3, 3}, {2, 2, 2}, {0}, 1, 0},
        {"AveragePool", 3, 1, 1, {16, 16, 16}, {5, 5, 5}, NULL, {3, 3, 3}, {2, 2, 2}, {0}, 0, 1},
        {"AveragePool", 1, 2, 3, {32}, {2}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePool", 2, 2, 3, {5, 5}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePool", 2, 1, 64, {7, 7}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePool", 1, 1, 3, {10}, {0}, NULL, {0}, {0}, {0}, 0, 0},
        {"GlobalAveragePool", 3, 1, 2, {3, 4, 5}, {0}, NULL, {0}, {0}, {0}, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase_desc t;
        pool_setup(&t, &cases[c]);
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", cases[c].op, c);
        check_fast_vs_ref(&t, (unsigned)c + 300, 0, label);
    }
}
END_TEST

START_TEST(test_pool_known)
{
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    const float *ins[] = {x};
    tcase_desc t;
    pool_case mp = {"MaxPool", 2, 1, 1, {4, 4}, {2, 2}, NULL, {2, 2}, {0}, {0}, 0, 0};
    pool_setup(&t, &mp);
    const float want_mp[] = {5, 7, 13, 15};
    check_known(&t, ins, want_mp, 4, "MaxPool 2x2/2");

    /* ceil_mode: 4x4, kernel 3, stride 2 -> 2x2, the last windows cut at the edge */
    pool_case mpc = {"MaxPool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0};
    pool_setup(&t, &mpc);
    const float want_mpc[] = {10, 11, 14, 15};
    check_known(&t, ins, want_mpc, 4, "MaxPool ceil_mode");
    pool_case apc = {"AveragePool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0};
    pool_setup(&t, &apc);
    const float want_apc[] = {5, 6.5f, 11, 12.5f};
    check_known(&t, ins, want_apc, 4, "AveragePool ceil_mode");

    /* [1,2;3,4] with pads 1, kernel 2, stride 1 */
    const float x2[] = {1, 2, 3, 4};
    const float *ins2[] = {x2};
    pool_case ex = {"AveragePool", 2, 1, 1, {2, 2}, {2, 2}, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 0};
    pool_setup(&t, &ex);
    const float want_ex[] = {1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4};
    check_known(&t, ins2, want_ex, 9, "AveragePool exclude pads");
    pool_case inc = {"AveragePool", 2, 1, 1, {2, 2}, {2, 2}, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 1};
    pool_setup(&t, &inc);
    const float want_inc[] = {0.25f, 0.75f, 0.5f, 1, 2.5f, 1.5f, 0.75f, 1.75f, 1};
    check_known(&t, ins2, want_inc, 9, "AveragePool include pads");
    /* ceil_mode with count_include_pad: a window past the end padding counts only the padded input */
    const float x3[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float *ins3[] = {x3};
    pool_case incc = {"AveragePool", 2, 1, 1, {3, 3}, {2, 2}, NULL, {2, 2}, {0}, {0}, 1, 1};
    pool_setup(&t, &incc);
    const float want_incc[] = {3, 4.5f, 7.5f, 9};
    check_known(&t, ins3, want_incc, 4, "AveragePool ceil include pads");

    pool_case gap = {"GlobalAveragePool", 2, 1, 1, {4, 4}, {0}, NULL, {0}, {0}, {0}, 0, 0};
    pool_setup(&t, &gap);
    const float want_gap[] = {7.5f};
    check_known(&t, ins, want_gap, 1, "GlobalAveragePool");
}
END_TEST

START_TEST(test_pool_infer)
{
    tcase_desc t;
    pool_case c1 = {"MaxPool", 2, 1, 1, {2, 2}, {1, 1}, NULL, {2, 2}, {0}, {0}, 1, 0};
    pool_setup(&t, &c1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 1);
    ck_assert_int_eq(t.d.out[0].dims[3], 1);
    pool_case c2 = {"AveragePool", 3, 1, 1, {32, 32, 32}, {5, 5, 5}, NULL, {3, 3, 3}, {2, 2, 2}, {0}, 1, 0};
    pool_setup(&t, &c2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 9);
    pool_case c3 = {"AveragePool", 2, 1, 3, {32, 32}, {5, 5}, NULL, {3, 3}, {0}, {0}, 0, 0};
    pool_setup(&t, &c3);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 10);
    pool_case c4 = {"MaxPool", 2, 1, 1, {5, 5}, {3, 3}, "SAME_UPPER", {2, 2}, {0}, {0}, 0, 0};
    pool_setup(&t, &c4);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].dims[2], 3);
    pool_case g = {"GlobalAveragePool", 2, 2, 3, {5, 7}, {0}, NULL, {0}, {0}, {0}, 0, 0};
    pool_setup(&t, &g);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 4);
    ck_assert_int_eq(t.d.out[0].dims[1], 3);
    ck_assert_int_eq(t.d.out[0].dims[2], 1);
    ck_assert_int_eq(t.d.out[0].dims[3], 1);

    /* the Indices output */
    pool_case mi = {"MaxPool", 2, 1, 1, {5, 5}, {2, 2}, NULL, {0}, {0}, {0}, 0, 0};
    pool_setup(&t, &mi);
    t.d.n_out = 2;
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "Indices", NULL);
    /* no kernel_shape */
    tc_init(&t, "MaxPool", 22, 1);
    TC_IN(&t, 1, 1, 5, 5);
    check_infer_fails(&t, PIPPY_ERR_INVALID, "kernel_shape", "float[1,1,5,5]");
    /* uint8 input */
    pool_setup(&t, &mi);
    t.d.in[0].dtype = PIPPY_DT_UINT8;
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "uint8");
    /* pads of the wrong length */
    pool_setup(&t, &mi);
    TC_INTS(&t, "pads", 1, 1);
    check_infer_fails(&t, PIPPY_ERR_INVALID, "pads", "expected 4");
}
END_TEST

/* ------------------------------------------------------------------ norms */

START_TEST(test_norm_fast_vs_ref)
{
    static const struct {
        int rank;
        int64_t x[4];
        float eps;
        unsigned cmask;
    } bn[] = {
        {4, {2, 3, 4, 5}, 0, 0},
        {4, {2, 3, 4, 5}, 0.01f, 0x1e},
        {2, {4, 3}, 0, 0},
        {3, {2, 16, 7}, 0, 0x1e},
        {4, {1, 64, 14, 14}, 1e-3f, 0},
    };
    for (size_t c = 0; c < sizeof bn / sizeof bn[0]; c++) {
        tcase_desc t;
        tc_init(&t, "BatchNormalization", 15, 1);
        tc_in(&t, bn[c].rank, bn[c].x);
        for (int i = 0; i < 4; i++)
            TC_IN(&t, bn[c].x[1]);
        t.fill[4] = 1; /* variance > 0 */
        if (bn[c].eps != 0)
            tc_attr_f(&t, "epsilon", bn[c].eps);
        char label[64];
        snprintf(label, sizeof label, "BatchNormalization case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 400, bn[c].cmask, label);
    }

    static const struct {
        int rank;
        int64_t x[4];
        int axis;
        int srank;
        int64_t s[4];
        int has_b, n_out;
        float eps;
        unsigned cmask;
    } ln[] = {
        {4, {2, 3, 4, 5}, -1, 1, {5}, 1, 1, 0, 0},
        {4, {2, 3, 4, 5}, 1, 3, {3, 4, 5}, 1, 3, 0, 0},
        {4, {2, 3, 4, 5}, 0, 4, {2, 3, 4, 5}, 1, 3, 0, 0},
        {4, {2, 3, 4, 5}, -2, 2, {4, 5}, 1, 3, 0, 6},
        {2, {3, 4}, 1, 1, {4}, 0, 2, 0.1f, 0},
        {3, {2, 3, 5}, 2, 1, {5}, 1, 3, 0.1f, 6},
        {3, {4, 7, 64}, -1, 1, {64}, 1, 1, 0, 6},         /* transformer-like, constant Scale and B */
        {3, {4, 7, 64}, -1, 1, {64}, 0, 1, 0, 0},         /* no B */
        {4, {2, 3, 4, 5}, -2, 2, {1, 5}, 1, 3, 0, 6},     /* broadcast Scale and B, constant */
        {4, {2, 3, 4, 5}, -2, 1, {5}, 1, 1, 0, 0},        /* broadcast at run time: reference */
    };
    for (size_t c = 0; c < sizeof ln / sizeof ln[0]; c++) {
        tcase_desc t;
        tc_init(&t, "LayerNormalization", 17, ln[c].n_out);
        tc_in(&t, ln[c].rank, ln[c].x);
        tc_in(&t, ln[c].srank, ln[c].s);
        if (ln[c].has_b)
            tc_in(&t, ln[c].srank, ln[c].s);
        tc_attr_i(&t, "axis", ln[c].axis);
        if (ln[c].eps != 0)
            tc_attr_f(&t, "epsilon", ln[c].eps);
        char label[64];
        snprintf(label, sizeof label, "LayerNormalization case %zu", c);
        check_fast_vs_ref(&t, (unsigned)c + 500, ln[c].cmask, label);
    }
}
END_TEST

START_TEST(test_norm_known)
{
    tcase_desc t;
    /* x [1,2,2,1]: channel 0 = {1,3}, channel 1 = {2,6}; mean {2,4}, var {1,4}, scale {2,1}, B {1,0}, eps 0 */
    tc_init(&t, "BatchNormalization", 15, 1);
    TC_IN(&t, 1, 2, 2, 1);
    for (int i = 0; i < 4; i++)
        TC_IN(&t, 2);
    tc_attr_f(&t, "epsilon", 0.0f);
    const float x[] = {1, 3, 2, 6}, sc[] = {2, 1}, b[] = {1, 0}, mean[] = {2, 4}, var[] = {1, 4};
    const float want[] = {-1, 3, -1, 1};
    const float *ins[] = {x, sc, b, mean, var};
    check_known(&t, ins, want, 4, "BatchNormalization");

    /* [1,2,3,4]: mean 2.5, var 1.25 */
    tc_init(&t, "LayerNormalization", 17, 1);
    TC_IN(&t, 1, 4);
    TC_IN(&t, 4);
    TC_IN(&t, 4);
    tc_attr_f(&t, "epsilon", 0.0f);
    const float lx[] = {1, 2, 3, 4}, ls[] = {1, 1, 2, 2}, lb[] = {0, 0, 0, 10};
    float r = 1.0f / sqrtf(1.25f);
    const float lwant[] = {-1.5f * r, -0.5f * r, 2 * 0.5f * r, 2 * 1.5f * r + 10};
    const float *lins[] = {lx, ls, lb};
    check_known(&t, lins, lwant, 4, "LayerNormalization");
}
END_TEST

START_TEST(test_norm_infer)
{
    tcase_desc t;
    tc_init(&t, "LayerNormalization", 17, 3);
    TC_IN(&t, 2, 3, 4, 5);
    TC_IN(&t, 4, 5);
    TC_IN(&t, 4, 5);
    tc_attr_i(&t, "axis", 2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[1].rank, 4);
    ck_assert_int_eq(t.d.out[1].dims[0], 2);
    ck_assert_int_eq(t.d.out[1].dims[1], 3);
    ck_assert_int_eq(t.d.out[1].dims[2], 1);
    ck_assert_int_eq(t.d.out[2].dims[3], 1);

    tc_init(&t, "LayerNormalization", 17, 1);
    TC_IN(&t, 2, 3, 4, 5);
    TC_IN(&t, 4);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "Scale is float[4]", "float[2,3,4,5]");

    tc_init(&t, "BatchNormalization", 15, 1);
    TC_IN(&t, 2, 3, 4, 5);
    for (int i = 0; i < 4; i++)
        TC_IN(&t, 3);
    tc_attr_i(&t, "training_mode", 1);
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "training_mode", NULL);

    tc_init(&t, "BatchNormalization", 15, 1);
    TC_IN(&t, 2, 3, 4, 5);
    for (int i = 0; i < 3; i++)
        TC_IN(&t, 3);
    TC_IN(&t, 4);
    check_infer_fails(&t, PIPPY_ERR_SHAPE, "input_var must be [3]", "float[4]");

    tc_init(&t, "BatchNormalization", 15, 3);
    TC_IN(&t, 2, 3, 4, 5);
    for (int i = 0; i < 4; i++)
        TC_IN(&t, 3);
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "only Y", NULL);
}
END_TEST

/* ------------------------------------------------------------------ softmax */

START_TEST(test_softmax_fast_vs_ref)
{
    static const struct {
        const char *op;
        int opset, rank;
        int64_t x[4];
        int axis; /* 99: attribute absent */
    } cases[] = {
        {"Softmax", 13, 2, {1, 3}, 99},       {"Softmax", 13, 3, {3, 4, 5}, 0},
        {"Softmax", 13, 3, {3, 4, 5}, 1},     {"Softmax", 13, 3, {3, 4, 5}, 2},
        {"Softmax", 13, 3, {3, 4, 5}, -1},    {"Softmax", 11, 3, {3, 4, 5}, 99},
        {"Softmax", 11, 3, {3, 4, 5}, 0},     {"Softmax", 11, 3, {3, 4, 5}, 2},
        {"Softmax", 13, 4, {2, 4, 16, 16}, -1}, {"Softmax", 13, 1, {7}, 0},
        {"LogSoftmax", 13, 2, {2, 4}, 99},    {"LogSoftmax", 13, 3, {3, 4, 5}, 0},
        {"LogSoftmax", 13, 3, {3, 4, 5}, 1},  {"LogSoftmax", 11, 3, {3, 4, 5}, 99},
        {"LogSoftmax", 1, 3, {3, 4, 5}, 2},   {"LogSoftmax", 13, 4, {2, 4, 16, 16}, -1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tcase_desc t;
        tc_init(&t, cases[c].op, cases[c].opset, 1);
        tc_in(&t, cases[c].rank, cases[c].x);
        if (cases[c].axis != 99)
            tc_attr_i(&t, "axis", cases[c].axis);
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", cases[c].op, c);
        check_fast_vs_ref(&t, (unsigned)c + 600, 0, label);
    }
}
END_TEST

START_TEST(test_softmax_known)
{
    tcase_desc t;
    const float x[] = {1, 2, 3, 1000, 1001, 1002};
    const float *ins[] = {x};
    tc_init(&t, "Softmax", 13, 1);
    TC_IN(&t, 2, 3);
    const float want[] = {0.09003057f, 0.24472847f, 0.66524096f, 0.09003057f, 0.24472847f, 0.66524096f};
    check_known(&t, ins, want, 6, "Softmax");
    tc_init(&t, "LogSoftmax", 13, 1);
    TC_IN(&t, 2, 3);
    const float lwant[] = {-2.40760596f, -1.40760596f, -0.40760596f, -2.40760596f, -1.40760596f, -0.40760596f};
    check_known(&t, ins, lwant, 6, "LogSoftmax");
    /* opset 11, axis 0 on [2,3]: one softmax over all six values */
    tc_init(&t, "Softmax", 11, 1);
    TC_IN(&t, 2, 3);
    tc_attr_i(&t, "axis", 0);
    const float x2[] = {0, 0, 0, 0, 0, 0};
    const float *ins2[] = {x2};
    const float w2[] = {1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6};
    check_known(&t, ins2, w2, 6, "Softmax opset 11 axis 0");
    /* opset 13, axis 0 on [2,3]: columns */
    tc_init(&t, "Softmax", 13, 1);
    TC_IN(&t, 2, 3);
    tc_attr_i(&t, "axis", 0);
    const float x3[] = {0, 1, 2, 0, 1, 2};
    const float *ins3[] = {x3};
    const float w3[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    check_known(&t, ins3, w3, 6, "Softmax opset 13 axis 0");
}
END_TEST

START_TEST(test_softmax_infer)
{
    tcase_desc t;
    tc_init(&t, "Softmax", 13, 1);
    TC_IN(&t, 3, 4);
    tc_attr_i(&t, "axis", 2);
    check_infer_fails(&t, PIPPY_ERR_INVALID, "axis 2", NULL);
    tc_init(&t, "LogSoftmax", 13, 1);
    TC_IN(&t, 3, 4);
    t.d.in[0].dtype = PIPPY_DT_DOUBLE;
    check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", NULL);
    tc_init(&t, "Softmax", 13, 1);
    tc_in_scalar(&t);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 0);
}
END_TEST

static Suite *backend_dense_suite(void)
{
    Suite *s = suite_create("backend_dense");
    TCase *tc = tcase_create("dense");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_matmul_fast_vs_ref);
    tcase_add_test(tc, test_gemm_fast_vs_ref);
    tcase_add_test(tc, test_matmul_known);
    tcase_add_test(tc, test_matmul_bias);
    tcase_add_test(tc, test_matmul_infer);
    tcase_add_test(tc, test_conv_fast_vs_ref);
    tcase_add_test(tc, test_conv_known);
    tcase_add_test(tc, test_conv_infer);
    tcase_add_test(tc, test_pool_fast_vs_ref);
    tcase_add_test(tc, test_pool_known);
    tcase_add_test(tc, test_pool_infer);
    tcase_add_test(tc, test_norm_fast_vs_ref);
    tcase_add_test(tc, test_norm_known);
    tcase_add_test(tc, test_norm_infer);
    tcase_add_test(tc, test_softmax_fast_vs_ref);
    tcase_add_test(tc, test_softmax_known);
    tcase_add_test(tc, test_softmax_infer);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(backend_dense_suite)
