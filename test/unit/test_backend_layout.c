/* test_backend_layout.c — the measured choice of layouts in MatMul, Gemm (a constant B) and
 * Conv (plain or preferred source) (backend/cpu/layout.h): with PIPPY_MATMUL_LAYOUT forced
 * to plain, to reordered and left to measure, the fast kernel against the reference kernel
 * (double accumulators) on cases with constant weights; plain really keeps B as given; the measurement keeps the faster of two
 * candidates (one made slow on purpose), either way; measuring happens once per distinct shape; an
 * unknown value is an error. Each test runs in its own forked process (Check's default), so
 * setenv here does not leak into other suites. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/dense.h"
#include "cpu/layout.h"
#include "dense_case.h"
#include "harness.h"

static const char *const layout_modes[] = {"plain", "reordered", "measure"};

/* MatMul A x constant B, optionally B transposed (pippy.trans_b) and a fused ReLU. */
static void layout_matmul_case(dcase *t, int ra, const int64_t *a, int rb, const int64_t *b, int trans_b, int relu)
{
    dc_init(t, "MatMul", 13, 1);
    dc_in(t, ra, a);
    dc_in(t, rb, b);
    if (trans_b)
        dc_attr_i(t, "pippy.trans_b", 1);
    if (relu)
        dc_attr_s(t, "pippy.activation", "Relu");
    t->must_fast = 1;
}

/* Gemm A x constant W^T (transB, the Linear layer) + C, alpha and beta. */
static void layout_gemm_case(dcase *t, int64_t M, int64_t K, int64_t N, float alpha, float beta, int relu)
{
    dc_init(t, "Gemm", 13, 1);
    DC_IN(t, M, K);
    DC_IN(t, N, K);
    DC_IN(t, N);
    dc_attr_i(t, "transB", 1);
    if (alpha != 1.0f)
        dc_attr_f(t, "alpha", alpha);
    if (beta != 1.0f)
        dc_attr_f(t, "beta", beta);
    if (relu)
        dc_attr_s(t, "pippy.activation", "Relu");
    t->must_fast = 1;
}

START_TEST(test_layout_fast_vs_ref)
{
    const char *mode = layout_modes[_i];
    ck_assert_int_eq(setenv("PIPPY_MATMUL_LAYOUT", mode, 1), 0);
    static const struct {
        int ra, rb;
        int64_t a[4], b[4];
        int trans_b, relu;
    } mm[] = {
        {2, 2, {33, 65}, {65, 17}, 0, 0},
        {3, 2, {2, 5, 16}, {16, 24}, 0, 1},            /* [B,T,C] x [C,N]: one 2-D matmul */
        {3, 2, {4, 16, 128}, {128, 384}, 0, 0},        /* a GPT's qkv projection, small */
        {3, 2, {4, 16, 128}, {384, 128}, 1, 0},        /* the same with B stored transposed */
        {4, 4, {2, 3, 7, 16}, {2, 3, 16, 7}, 0, 1},    /* batched, constant B */
        {2, 2, {64, 256}, {256, 512}, 0, 0},
    };
    char label[96];
    for (size_t c = 0; c < sizeof mm / sizeof mm[0]; c++) {
        dcase t;
        layout_matmul_case(&t, mm[c].ra, mm[c].a, mm[c].rb, mm[c].b, mm[c].trans_b, mm[c].relu);
        snprintf(label, sizeof label, "MatMul case %zu, PIPPY_MATMUL_LAYOUT=%s", c, mode);
        dc_check_fast_vs_ref(&t, (unsigned)c + 300, 2, label);
    }
    static const struct {
        int64_t M, K, N;
        float alpha, beta;
        int relu;
        unsigned cmask;
    } gm[] = {
        {16, 64, 32, 1.0f, 1.0f, 1, 6},  /* constant W and bias, ReLU */
        {16, 64, 32, 0.7f, 1.3f, 0, 6},  /* alpha folded into W, beta into C */
        {40, 96, 80, 0.5f, 2.0f, 0, 2},  /* C at run time */
    };
    for (size_t c = 0; c < sizeof gm / sizeof gm[0]; c++) {
        dcase t;
        layout_gemm_case(&t, gm[c].M, gm[c].K, gm[c].N, gm[c].alpha, gm[c].beta, gm[c].relu);
        snprintf(label, sizeof label, "Gemm case %zu, PIPPY_MATMUL_LAYOUT=%s", c, mode);
        dc_check_fast_vs_ref(&t, (unsigned)c + 400, gm[c].cmask, label);
    }
    for (int c = 0; c < 3; c++) { /* Conv 3x3 pad 1, constant W (and B), stride 2 / ReLU; 1x1 output */
        dcase t;
        dc_init(&t, "Conv", 22, 1);
        int64_t hw = c == 2 ? 1 : 10;
        DC_IN(&t, 2, 8, hw, hw);
        DC_IN(&t, 16, 8, 3, 3);
        if (c >= 1)
            DC_IN(&t, 16);
        const int64_t k[2] = {3, 3}, st[2] = {c == 1 ? 2 : 1, c == 1 ? 2 : 1}, pads[4] = {1, 1, 1, 1};
        dc_window_attrs(&t, 2, k, NULL, st, (const int64_t[]){0}, pads, 0, 0);
        if (c == 1)
            dc_attr_s(&t, "pippy.activation", "Relu");
        t.must_fast = 1;
        snprintf(label, sizeof label, "Conv case %d, PIPPY_MATMUL_LAYOUT=%s", c, mode);
        dc_check_fast_vs_ref(&t, (unsigned)c + 500, c >= 1 ? 6 : 2, label);
    }
}
END_TEST

/* The kernel of t (inferred) with input 1 constant (data w). */
static pippy_kernel *layout_kernel(dcase *t, const float *w)
{
    ck_assert_int_eq(pippy_op_infer(&t->d), PIPPY_OK);
    t->d.in_const[1] = w;
    pippy_kernel *k = NULL;
    pippy_status st = pippy_kernel_create(&t->d, &k);
    ck_assert_msg(st == PIPPY_OK, "create failed: %s", pippy_last_error());
    return k;
}

/* The descriptor of the weights the oneDNN kernel k's first step reads. */
static const dnnl_memory_desc_t *layout_weights_md(pippy_kernel *kb)
{
    pippy_dnnl_kernel *k = (pippy_dnnl_kernel *)kb;
    ck_assert_int_ge(k->n_steps, 1);
    for (int i = 0; i < k->steps[0].nargs; i++)
        if (k->steps[0].args[i].arg == DNNL_ARG_WEIGHTS) {
            const dnnl_memory_desc_t *md = NULL;
            ck_assert_int_eq(dnnl_memory_get_memory_desc(k->steps[0].args[i].memory, &md), dnnl_success);
            return md;
        }
    ck_abort_msg("the kernel's first step has no weights");
    return NULL;
}

START_TEST(test_layout_plain_is_plain)
{
    /* plain keeps B's strides as given: row-major [K, N], or [N, K] read as transposed */
    ck_assert_int_eq(setenv("PIPPY_MATMUL_LAYOUT", "plain", 1), 0);
    static float w[256 * 512];
    for (int tb = 0; tb < 2; tb++) {
        dcase t;
        const int64_t a[2] = {64, 256}, b[2] = {tb ? 512 : 256, tb ? 256 : 512};
        layout_matmul_case(&t, 2, a, 2, b, tb, 0);
        pippy_kernel *k = layout_kernel(&t, w);
        const dnnl_memory_desc_t *md = layout_weights_md(k);
        ck_assert_int_eq(md->format_kind, dnnl_blocked);
        ck_assert_int_eq(md->format_desc.blocking.inner_nblks, 0);
        ck_assert_int_eq(md->format_desc.blocking.strides[0], tb ? 1 : 512);
        ck_assert_int_eq(md->format_desc.blocking.strides[1], tb ? 256 : 1);
        pippy_kernel_destroy(k);
    }
}
END_TEST

/* A candidate builder for pippy_layout_choose: MatMul [M, K] x constant [K, N], B plain or
 * reordered; the candidate named by layout_slow_plain repeats the product
 * PIPPY_DNNL_MAX_STEPS times (same result, several times slower), so that the measurement
 * must keep the other one: both ways of the choice (keep the first build, or swap in the
 * second) are exercised deterministically. */
static int layout_slow_plain;

static pippy_status layout_test_build(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                      int plain)
{
    (void)ref;
    const int64_t *a = d->in[0].dims, *b = d->in[1].dims;
    dnnl_memory_desc_t smd, wmd_user, wmd, dmd;
    PIPPY_TRY(pippy_dnnl_md_plain(&smd, 2, a));
    PIPPY_TRY(pippy_dnnl_md_plain(&wmd_user, 2, b));
    PIPPY_TRY(pippy_dnnl_md_plain(&dmd, 2, (const int64_t[]){a[0], b[1]}));
    wmd = wmd_user;
    if (!plain)
        PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 2, wmd_user.dims, dnnl_f32, dnnl_format_tag_any));
    dnnl_memory_t sm, wm = NULL, dm;
    PIPPY_TRY(pippy_dnnl_memory_in(k, &smd, 0, &sm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, &dmd, 0, &dm));
    int steps = plain == layout_slow_plain ? PIPPY_DNNL_MAX_STEPS : 1;
    for (int i = 0; i < steps; i++) {
        dnnl_matmul_desc_t md;
        dnnl_primitive_desc_t pd;
        PIPPY_DNNL_CHECK(dnnl_matmul_desc_init(&md, &smd, &wmd, NULL, &dmd));
        PIPPY_TRY(pippy_dnnl_pd(k, d, &md, 0, &pd));
        if (!wm)
            PIPPY_TRY(pippy_dnnl_input(k, d, 1, &wmd_user, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0),
                                       1.0f, &wm));
        dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dm}};
        PIPPY_TRY(pippy_dnnl_add_step(k, pd, args, 3));
    }
    return PIPPY_OK;
}

START_TEST(test_layout_keeps_faster)
{
    ck_assert_int_eq(setenv("PIPPY_MATMUL_LAYOUT", "measure", 1), 0);
    layout_slow_plain = _i; /* 0: reordered is slow, plain must be kept (swapped in); 1: the reverse */
    enum { M = 64, K = 256, N = 192 };
    static float a[M * K], w[K * N], y[M * N];
    dc_seed(17);
    dc_fill(a, M * K, DC_FILL_UNIFORM);
    dc_fill(w, K * N, DC_FILL_UNIFORM);
    dcase t;
    layout_matmul_case(&t, 2, (const int64_t[]){M, K}, 2, (const int64_t[]){K, N}, 0, 0);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    t.d.in_const[1] = w;
    pippy_dnnl_kernel *k;
    ck_assert_int_eq(pippy_dnnl_kernel_new(&k), PIPPY_OK);
    int n0, p0, n1, p1;
    double ms;
    pippy_layout_stats(&n0, &p0, &ms);
    pippy_status st = pippy_layout_choose(&t.d, NULL, k, 1, layout_test_build);
    ck_assert_msg(st == PIPPY_OK, "choose failed: %s", pippy_last_error());
    pippy_layout_stats(&n1, &p1, &ms);
    ck_assert_int_eq(n1, n0 + 1);
    ck_assert_int_eq(p1 - p0, !layout_slow_plain);
    ck_assert_int_eq(k->n_steps, 1); /* the fast candidate */
    const dnnl_memory_desc_t *md = layout_weights_md(&k->base);
    if (!layout_slow_plain) /* the plain one was kept: B as given */
        ck_assert_int_eq(md->format_desc.blocking.inner_nblks, 0);
    const void *in[2] = {a, NULL};
    void *out[1] = {y};
    pippy_kernel_run(&k->base, in, out);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int q = 0; q < K; q++)
                s += (double)a[m * K + q] * w[q * N + n];
            worst = fmax(worst, fabs(y[m * N + n] - s));
        }
    ck_assert_msg(worst < 1e-4, "the kept kernel's product is off by %g", worst);
    pippy_kernel_destroy(&k->base);
}
END_TEST

START_TEST(test_layout_measured_once)
{
    ck_assert_int_eq(setenv("PIPPY_MATMUL_LAYOUT", "measure", 1), 0);
    static float w[128 * 384];
    int n0, p0, n1, p1, n2, p2;
    double ms;
    pippy_layout_stats(&n0, &p0, &ms);
    for (int rep = 0; rep < 3; rep++) { /* a GPT's layers: one shape, several kernels */
        dcase t;
        layout_matmul_case(&t, 3, (const int64_t[]){4, 16, 128}, 2, (const int64_t[]){128, 384}, 0, 0);
        pippy_kernel_destroy(layout_kernel(&t, w));
        if (rep == 0)
            pippy_layout_stats(&n1, &p1, &ms);
    }
    pippy_layout_stats(&n2, &p2, &ms);
    ck_assert_int_eq(n1, n0 + 1);
    ck_assert_int_eq(n2, n1);
    ck_assert(ms >= 0 && ms < 5000);
    /* another shape, or the same shape with a fused ReLU, is measured again */
    dcase t;
    layout_matmul_case(&t, 3, (const int64_t[]){4, 16, 128}, 2, (const int64_t[]){128, 384}, 0, 1);
    pippy_kernel_destroy(layout_kernel(&t, w));
    pippy_layout_stats(&n2, &p2, &ms);
    ck_assert_int_eq(n2, n1 + 1);
    /* B given at run time: nothing to choose, nothing measured */
    layout_matmul_case(&t, 3, (const int64_t[]){4, 16, 128}, 2, (const int64_t[]){128, 96}, 0, 0);
    pippy_kernel_destroy(layout_kernel(&t, NULL));
    pippy_layout_stats(&n1, &p1, &ms);
    ck_assert_int_eq(n1, n2);
}
END_TEST

START_TEST(test_layout_bad_value)
{
    ck_assert_int_eq(setenv("PIPPY_MATMUL_LAYOUT", "fastest", 1), 0);
    static float w[16 * 8];
    dcase t;
    layout_matmul_case(&t, 2, (const int64_t[]){4, 16}, 2, (const int64_t[]){16, 8}, 0, 0);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    t.d.in_const[1] = w;
    pippy_kernel *k = NULL;
    ck_assert_int_eq(pippy_kernel_create(&t.d, &k), PIPPY_ERR_INVALID);
    ck_assert_ptr_null(k);
    ck_assert_ptr_nonnull(strstr(pippy_last_error(), "PIPPY_MATMUL_LAYOUT=fastest"));
}
END_TEST

static Suite *backend_layout_suite(void)
{
    Suite *s = suite_create("backend_layout");
    TCase *tc = tcase_create("layout");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_layout_fast_vs_ref, 0, 3);
    tcase_add_test(tc, test_layout_plain_is_plain);
    tcase_add_loop_test(tc, test_layout_keeps_faster, 0, 2);
    tcase_add_test(tc, test_layout_measured_once);
    tcase_add_test(tc, test_layout_bad_value);
    suite_add_tcase(s, tc);
    return s;
}
PIPPY_TEST_SUITE(backend_layout_suite)
