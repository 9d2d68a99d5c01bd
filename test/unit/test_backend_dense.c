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
#include "dense_case.h"
#include "harness.h"

/* ------------------------------------------------------------------ MatMul / Gemm */

START_TEST(test_matmul_fast_vs_ref)
{
    dcase t;
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
        dc_init(&t, "MatMul", 13, 1);
        dc_in(&t, cases[c].ra, cases[c].a);
        dc_in(&t, cases[c].rb, cases[c].b);
        if (cases[c].relu)
            dc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "MatMul case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 1, cases[c].cmask, label);
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
        dcase t;
        dc_init(&t, "Gemm", 13, 1);
        int64_t a[2] = {cases[c].ta ? cases[c].K : cases[c].M, cases[c].ta ? cases[c].M : cases[c].K};
        int64_t b[2] = {cases[c].tb ? cases[c].N : cases[c].K, cases[c].tb ? cases[c].K : cases[c].N};
        dc_in(&t, 2, a);
        dc_in(&t, 2, b);
        if (cases[c].crank >= 0)
            dc_in(&t, cases[c].crank, cases[c].c);
        else if (cases[c].crank == -2)
            dc_in_absent(&t);
        if (cases[c].ta)
            dc_attr_i(&t, "transA", 1);
        if (cases[c].tb)
            dc_attr_i(&t, "transB", 1);
        if (cases[c].alpha != 1.0f)
            dc_attr_f(&t, "alpha", cases[c].alpha);
        if (cases[c].beta != 1.0f)
            dc_attr_f(&t, "beta", cases[c].beta);
        if (cases[c].relu)
            dc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "Gemm case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 100, cases[c].cmask, label);
    }
}
END_TEST

/* MatMul with the compiler's fused bias ("pippy.bias", a third input float[N]): fast vs
 * reference with the bias constant or given at run time, with and without a fused ReLU, plus
 * hand-computed values. */
START_TEST(test_matmul_bias)
{
    dcase t;
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
        dc_init(&t, "MatMul", 13, 1);
        dc_in(&t, cases[c].ra, cases[c].a);
        dc_in(&t, 2, cases[c].b);
        dc_in(&t, 1, &cases[c].b[1]);
        dc_attr_i(&t, "pippy.bias", 1);
        if (cases[c].relu)
            dc_attr_s(&t, "pippy.activation", "Relu");
        char label[64];
        snprintf(label, sizeof label, "MatMul+bias case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 101, cases[c].cmask, label);
    }
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 2);
    DC_IN(&t, 2, 2);
    DC_IN(&t, 2);
    dc_attr_i(&t, "pippy.bias", 1);
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, bias[] = {0.5f, -100}, want[] = {19.5f, -78, 43.5f, -50};
    const float *ins[] = {a, b, bias};
    dc_check_known(&t, ins, want, 4, "MatMul 2x2 + bias");
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 2);
    DC_IN(&t, 2, 2);
    DC_IN(&t, 3);
    dc_attr_i(&t, "pippy.bias", 1);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "bias", "float[2]");
}
END_TEST

START_TEST(test_matmul_known)
{
    dcase t;
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 2);
    DC_IN(&t, 2, 2);
    const float a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, want[] = {19, 22, 43, 50};
    const float *ins[] = {a, b};
    dc_check_known(&t, ins, want, 4, "MatMul 2x2");

    /* 1-D x 1-D: a dot product, a scalar result */
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 3);
    DC_IN(&t, 3);
    const float u[] = {1, 2, 3}, v[] = {4, -5, 6}, dot[] = {12};
    const float *ins2[] = {u, v};
    dc_check_known(&t, ins2, dot, 1, "MatMul 1-D");
    ck_assert_int_eq(t.d.out[0].rank, 0);

    /* batch broadcast: [2,1,2] x [2,1] -> [2,1,1]... A [2,1,2], B [2,1] */
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 1, 2);
    DC_IN(&t, 2, 1);
    const float ab[] = {1, 2, 3, 4}, bb[] = {10, 1}, wb[] = {12, 34};
    const float *ins3[] = {ab, bb};
    dc_check_known(&t, ins3, wb, 2, "MatMul broadcast");

    /* Gemm: alpha 2, beta 0.5, transA, C [1,2] */
    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 2, 2); /* A^T is [[1,3],[2,4]] */
    DC_IN(&t, 2, 2);
    DC_IN(&t, 1, 2);
    dc_attr_i(&t, "transA", 1);
    dc_attr_f(&t, "alpha", 2.0f);
    dc_attr_f(&t, "beta", 0.5f);
    const float ga[] = {1, 2, 3, 4}, gb[] = {1, 0, 0, 1}, gc[] = {10, 20};
    /* A^T * I = [[1,3],[2,4]]; *2 = [[2,6],[4,8]]; + 0.5*[10,20] */
    const float gw[] = {7, 16, 9, 18};
    const float *ins4[] = {ga, gb, gc};
    dc_check_known(&t, ins4, gw, 4, "Gemm transA alpha beta");

    /* MatMul with the fused ReLU */
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 1, 2);
    DC_IN(&t, 2, 2);
    dc_attr_s(&t, "pippy.activation", "Relu");
    const float ra[] = {1, -1}, rb[] = {1, 2, 3, 1}, rw[] = {0, 1};
    const float *ins5[] = {ra, rb};
    dc_check_known(&t, ins5, rw, 2, "MatMul + Relu");
}
END_TEST

START_TEST(test_matmul_infer)
{
    dcase t;
    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 4, 5);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 3);
    ck_assert_int_eq(t.d.out[0].dims[0], 2);
    ck_assert_int_eq(t.d.out[0].dims[1], 3);
    ck_assert_int_eq(t.d.out[0].dims[2], 5);
    ck_assert(fabs(pippy_op_flops(&t.d) - 2.0 * 2 * 3 * 4 * 5) < 1e-9);

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 3, 1, 3, 4);
    DC_IN(&t, 1, 2, 4, 2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 4);
    ck_assert_int_eq(t.d.out[0].dims[0], 3);
    ck_assert_int_eq(t.d.out[0].dims[1], 2);
    ck_assert_int_eq(t.d.out[0].dims[2], 3);
    ck_assert_int_eq(t.d.out[0].dims[3], 2);

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 4);
    DC_IN(&t, 2, 4, 1);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[0].rank, 2);
    ck_assert_int_eq(t.d.out[0].dims[0], 2);
    ck_assert_int_eq(t.d.out[0].dims[1], 1);

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 3);
    DC_IN(&t, 4, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "inner dims differ", "A is float[2,3], B is float[4,5]");

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 3, 4);
    DC_IN(&t, 3, 4, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "batch dims", "float[3,4,5]");

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 3);
    DC_IN(&t, 3, 5);
    t.d.in[1].dtype = PIPPY_DT_INT64;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "int64");

    dc_init(&t, "MatMul", 13, 1);
    DC_IN(&t, 2, 3);
    DC_IN(&t, 3, 5);
    dc_attr_s(&t, "pippy.activation", "Tanh");
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "Tanh", NULL);

    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 2, 3);
    DC_IN(&t, 4, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "inner dims differ", "float[4,5]");

    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 2, 3);
    DC_IN(&t, 5, 3);
    dc_attr_i(&t, "transB", 1);
    DC_IN(&t, 3, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "C is float[3,5]", "[2,5]");

    dc_init(&t, "Gemm", 13, 1);
    DC_IN(&t, 2, 3, 1);
    DC_IN(&t, 3, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "2-D", NULL);
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

static void conv_setup(dcase *t, const conv_case *cc)
{
    dc_init(t, "Conv", 22, 1);
    int64_t x[5] = {cc->n, cc->c}, w[5] = {cc->m, cc->c / cc->group};
    for (int i = 0; i < cc->ns; i++) {
        x[2 + i] = cc->in[i];
        w[2 + i] = cc->k[i];
    }
    dc_in(t, 2 + cc->ns, x);
    dc_in(t, 2 + cc->ns, w);
    if (cc->bias)
        DC_IN(t, cc->m);
    if (cc->group != 1)
        dc_attr_i(t, "group", cc->group);
    dc_window_attrs(t, cc->ns, cc->k, cc->auto_pad, cc->strides, cc->dil, cc->pads, 0, 0);
    if (cc->relu)
        dc_attr_s(t, "pippy.activation", "Relu");
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
        dcase t;
        conv_setup(&t, &cases[c]);
        char label[64];
        snprintf(label, sizeof label, "Conv case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 200, cases[c].cmask, label);
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
    dcase t;
    conv_case with_pad = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 0, 0};
    conv_setup(&t, &with_pad);
    const float want_pad[] = {12,  21,  27,  33,  24,  33,  54,  63,  72,  51,  63,  99, 108,
                              117, 81,  93,  144, 153, 162, 111, 72,  111, 117, 123, 84};
    dc_check_known(&t, ins, want_pad, 25, "Conv 3x3 pads 1");
    conv_case no_pad = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {0}, {0}, {0}, 0, 0, 0};
    conv_setup(&t, &no_pad);
    const float want_nopad[] = {54, 63, 72, 99, 108, 117, 144, 153, 162};
    dc_check_known(&t, ins, want_nopad, 9, "Conv 3x3 no pads");
    conv_case strided = {2, 1, 1, 1, {5, 5}, {3, 3}, 1, NULL, {2, 2}, {0}, {1, 1, 1, 1}, 0, 0, 0};
    conv_setup(&t, &strided);
    const float want_str[] = {12, 27, 24, 63, 108, 81, 72, 117, 84};
    dc_check_known(&t, ins, want_str, 9, "Conv 3x3 stride 2");

    /* group 2 with bias: two channels, each its own 1x1 weight */
    conv_case grp = {2, 1, 2, 2, {1, 2}, {1, 1}, 2, NULL, {0}, {0}, {0}, 1, 0, 0};
    conv_setup(&t, &grp);
    const float gx[] = {1, 2, 3, 4}, gw[] = {10, -1}, gb[] = {0.5f, 100};
    const float want_g[] = {10.5f, 20.5f, 97, 96};
    const float *gins[] = {gx, gw, gb};
    dc_check_known(&t, gins, want_g, 4, "Conv group 2 + bias");
}
END_TEST

START_TEST(test_conv_infer)
{
    dcase t;
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
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 1, 3, 8, 8);
    DC_IN(&t, 4, 2, 3, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "channels differ", "float[4,2,3,3]");
    /* bias of the wrong size */
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 1, 3, 8, 8);
    DC_IN(&t, 4, 3, 3, 3);
    DC_IN(&t, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "B must be [4]", "float[3]");
    /* window larger than the input */
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 1, 3, 2, 2);
    DC_IN(&t, 4, 3, 3, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "larger than the padded input", NULL);
    /* 4 spatial dims */
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 1, 1, 3, 3, 3, 3);
    DC_IN(&t, 1, 1, 1, 1, 1, 1);
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "1-D, 2-D and 3-D", NULL);
    /* bad auto_pad */
    dc_init(&t, "Conv", 22, 1);
    DC_IN(&t, 1, 1, 3, 3);
    DC_IN(&t, 1, 1, 1, 1);
    dc_attr_s(&t, "auto_pad", "SAME");
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "auto_pad", NULL);
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

static void pool_setup(dcase *t, const pool_case *pc)
{
    dc_init(t, pc->op, 22, 1);
    int64_t x[5] = {pc->n, pc->c};
    for (int i = 0; i < pc->ns; i++)
        x[2 + i] = pc->in[i];
    dc_in(t, 2 + pc->ns, x);
    if (strcmp(pc->op, "GlobalAveragePool") == 0)
        return;
    dc_window_attrs(t, pc->ns, pc->k, pc->auto_pad, pc->strides, pc->dil, pc->pads, pc->ceil_mode, pc->include_pad);
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
        {"GlobalAveragePool", 2, 16, 96, {1, 1}, {0}, NULL, {0}, {0}, {0}, 0, 0},  /* ResNet-18 of bench/: a copy */
        {"GlobalAveragePool", 2, 2, 8, {56, 56}, {0}, NULL, {0}, {0}, {0}, 0, 0},  /* long rows */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dcase t;
        pool_setup(&t, &cases[c]);
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", cases[c].op, c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 300, 0, label);
    }
}
END_TEST

START_TEST(test_pool_known)
{
    float x[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    const float *ins[] = {x};
    dcase t;
    pool_case mp = {"MaxPool", 2, 1, 1, {4, 4}, {2, 2}, NULL, {2, 2}, {0}, {0}, 0, 0};
    pool_setup(&t, &mp);
    const float want_mp[] = {5, 7, 13, 15};
    dc_check_known(&t, ins, want_mp, 4, "MaxPool 2x2/2");

    /* ceil_mode: 4x4, kernel 3, stride 2 -> 2x2, the last windows cut at the edge */
    pool_case mpc = {"MaxPool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0};
    pool_setup(&t, &mpc);
    const float want_mpc[] = {10, 11, 14, 15};
    dc_check_known(&t, ins, want_mpc, 4, "MaxPool ceil_mode");
    pool_case apc = {"AveragePool", 2, 1, 1, {4, 4}, {3, 3}, NULL, {2, 2}, {0}, {0}, 1, 0};
    pool_setup(&t, &apc);
    const float want_apc[] = {5, 6.5f, 11, 12.5f};
    dc_check_known(&t, ins, want_apc, 4, "AveragePool ceil_mode");

    /* [1,2;3,4] with pads 1, kernel 2, stride 1 */
    const float x2[] = {1, 2, 3, 4};
    const float *ins2[] = {x2};
    pool_case ex = {"AveragePool", 2, 1, 1, {2, 2}, {2, 2}, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 0};
    pool_setup(&t, &ex);
    const float want_ex[] = {1, 1.5f, 2, 2, 2.5f, 3, 3, 3.5f, 4};
    dc_check_known(&t, ins2, want_ex, 9, "AveragePool exclude pads");
    pool_case inc = {"AveragePool", 2, 1, 1, {2, 2}, {2, 2}, NULL, {0}, {0}, {1, 1, 1, 1}, 0, 1};
    pool_setup(&t, &inc);
    const float want_inc[] = {0.25f, 0.75f, 0.5f, 1, 2.5f, 1.5f, 0.75f, 1.75f, 1};
    dc_check_known(&t, ins2, want_inc, 9, "AveragePool include pads");
    /* ceil_mode with count_include_pad: a window past the end padding counts only the padded input */
    const float x3[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const float *ins3[] = {x3};
    pool_case incc = {"AveragePool", 2, 1, 1, {3, 3}, {2, 2}, NULL, {2, 2}, {0}, {0}, 1, 1};
    pool_setup(&t, &incc);
    const float want_incc[] = {3, 4.5f, 7.5f, 9};
    dc_check_known(&t, ins3, want_incc, 4, "AveragePool ceil include pads");

    pool_case gap = {"GlobalAveragePool", 2, 1, 1, {4, 4}, {0}, NULL, {0}, {0}, {0}, 0, 0};
    pool_setup(&t, &gap);
    const float want_gap[] = {7.5f};
    dc_check_known(&t, ins, want_gap, 1, "GlobalAveragePool");
}
END_TEST

START_TEST(test_pool_infer)
{
    dcase t;
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
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "Indices", NULL);
    /* no kernel_shape */
    dc_init(&t, "MaxPool", 22, 1);
    DC_IN(&t, 1, 1, 5, 5);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "kernel_shape", "float[1,1,5,5]");
    /* uint8 input */
    pool_setup(&t, &mi);
    t.d.in[0].dtype = PIPPY_DT_UINT8;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", "uint8");
    /* pads of the wrong length */
    pool_setup(&t, &mi);
    DC_INTS(&t, "pads", 1, 1);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "pads", "expected 4");
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
        dcase t;
        dc_init(&t, "BatchNormalization", 15, 1);
        dc_in(&t, bn[c].rank, bn[c].x);
        for (int i = 0; i < 4; i++)
            DC_IN(&t, bn[c].x[1]);
        t.fill[4] = 1; /* variance > 0 */
        if (bn[c].eps != 0)
            dc_attr_f(&t, "epsilon", bn[c].eps);
        char label[64];
        snprintf(label, sizeof label, "BatchNormalization case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 400, bn[c].cmask, label);
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
        dcase t;
        dc_init(&t, "LayerNormalization", 17, ln[c].n_out);
        dc_in(&t, ln[c].rank, ln[c].x);
        dc_in(&t, ln[c].srank, ln[c].s);
        if (ln[c].has_b)
            dc_in(&t, ln[c].srank, ln[c].s);
        dc_attr_i(&t, "axis", ln[c].axis);
        if (ln[c].eps != 0)
            dc_attr_f(&t, "epsilon", ln[c].eps);
        char label[64];
        snprintf(label, sizeof label, "LayerNormalization case %zu", c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 500, ln[c].cmask, label);
    }
}
END_TEST

START_TEST(test_norm_known)
{
    dcase t;
    /* x [1,2,2,1]: channel 0 = {1,3}, channel 1 = {2,6}; mean {2,4}, var {1,4}, scale {2,1}, B {1,0}, eps 0 */
    dc_init(&t, "BatchNormalization", 15, 1);
    DC_IN(&t, 1, 2, 2, 1);
    for (int i = 0; i < 4; i++)
        DC_IN(&t, 2);
    dc_attr_f(&t, "epsilon", 0.0f);
    const float x[] = {1, 3, 2, 6}, sc[] = {2, 1}, b[] = {1, 0}, mean[] = {2, 4}, var[] = {1, 4};
    const float want[] = {-1, 3, -1, 1};
    const float *ins[] = {x, sc, b, mean, var};
    dc_check_known(&t, ins, want, 4, "BatchNormalization");

    /* [1,2,3,4]: mean 2.5, var 1.25 */
    dc_init(&t, "LayerNormalization", 17, 1);
    DC_IN(&t, 1, 4);
    DC_IN(&t, 4);
    DC_IN(&t, 4);
    dc_attr_f(&t, "epsilon", 0.0f);
    const float lx[] = {1, 2, 3, 4}, ls[] = {1, 1, 2, 2}, lb[] = {0, 0, 0, 10};
    float r = 1.0f / sqrtf(1.25f);
    const float lwant[] = {-1.5f * r, -0.5f * r, 2 * 0.5f * r, 2 * 1.5f * r + 10};
    const float *lins[] = {lx, ls, lb};
    dc_check_known(&t, lins, lwant, 4, "LayerNormalization");
}
END_TEST

START_TEST(test_norm_infer)
{
    dcase t;
    dc_init(&t, "LayerNormalization", 17, 3);
    DC_IN(&t, 2, 3, 4, 5);
    DC_IN(&t, 4, 5);
    DC_IN(&t, 4, 5);
    dc_attr_i(&t, "axis", 2);
    ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
    ck_assert_int_eq(t.d.out[1].rank, 4);
    ck_assert_int_eq(t.d.out[1].dims[0], 2);
    ck_assert_int_eq(t.d.out[1].dims[1], 3);
    ck_assert_int_eq(t.d.out[1].dims[2], 1);
    ck_assert_int_eq(t.d.out[2].dims[3], 1);

    dc_init(&t, "LayerNormalization", 17, 1);
    DC_IN(&t, 2, 3, 4, 5);
    DC_IN(&t, 4);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "Scale is float[4]", "float[2,3,4,5]");

    /* training mode (a train-mode export): shapes inferred for --train to replace the node, no kernel */
    for (int n_out = 1; n_out <= 5; n_out += 2) {
        dc_init(&t, "BatchNormalization", n_out == 5 ? 9 : 15, n_out);
        DC_IN(&t, 2, 3, 4, 5);
        for (int i = 0; i < 4; i++)
            DC_IN(&t, 3);
        if (n_out < 5)
            dc_attr_i(&t, "training_mode", 1);
        ck_assert_int_eq(pippy_op_infer(&t.d), PIPPY_OK);
        ck_assert_int_eq(t.d.out[0].rank, 4);
        for (int o = 1; o < n_out; o++)
            ck_assert(t.d.out[o].rank == 1 && t.d.out[o].dims[0] == 3 && t.d.out[o].dtype == PIPPY_DT_FLOAT);
        pippy_kernel *k = NULL;
        ck_assert_int_eq(pippy_kernel_create(&t.d, &k), PIPPY_ERR_UNSUPPORTED);
        ck_assert_ptr_null(k);
        ck_assert_ptr_nonnull(strstr(pippy_last_error(), "training mode has no kernel"));
    }

    dc_init(&t, "BatchNormalization", 15, 1);
    DC_IN(&t, 2, 3, 4, 5);
    for (int i = 0; i < 3; i++)
        DC_IN(&t, 3);
    DC_IN(&t, 4);
    dc_check_infer_fails(&t, PIPPY_ERR_SHAPE, "input_var must be [3]", "float[4]");

    dc_init(&t, "BatchNormalization", 15, 6);
    DC_IN(&t, 2, 3, 4, 5);
    for (int i = 0; i < 4; i++)
        DC_IN(&t, 3);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "at most 5 outputs", NULL);
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
        dcase t;
        dc_init(&t, cases[c].op, cases[c].opset, 1);
        dc_in(&t, cases[c].rank, cases[c].x);
        if (cases[c].axis != 99)
            dc_attr_i(&t, "axis", cases[c].axis);
        char label[64];
        snprintf(label, sizeof label, "%s case %zu", cases[c].op, c);
        dc_check_fast_vs_ref(&t, (unsigned)c + 600, 0, label);
    }
}
END_TEST

START_TEST(test_softmax_known)
{
    dcase t;
    const float x[] = {1, 2, 3, 1000, 1001, 1002};
    const float *ins[] = {x};
    dc_init(&t, "Softmax", 13, 1);
    DC_IN(&t, 2, 3);
    const float want[] = {0.09003057f, 0.24472847f, 0.66524096f, 0.09003057f, 0.24472847f, 0.66524096f};
    dc_check_known(&t, ins, want, 6, "Softmax");
    dc_init(&t, "LogSoftmax", 13, 1);
    DC_IN(&t, 2, 3);
    const float lwant[] = {-2.40760596f, -1.40760596f, -0.40760596f, -2.40760596f, -1.40760596f, -0.40760596f};
    dc_check_known(&t, ins, lwant, 6, "LogSoftmax");
    /* opset 11, axis 0 on [2,3]: one softmax over all six values */
    dc_init(&t, "Softmax", 11, 1);
    DC_IN(&t, 2, 3);
    dc_attr_i(&t, "axis", 0);
    const float x2[] = {0, 0, 0, 0, 0, 0};
    const float *ins2[] = {x2};
    const float w2[] = {1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6, 1.0f / 6};
    dc_check_known(&t, ins2, w2, 6, "Softmax opset 11 axis 0");
    /* opset 13, axis 0 on [2,3]: columns */
    dc_init(&t, "Softmax", 13, 1);
    DC_IN(&t, 2, 3);
    dc_attr_i(&t, "axis", 0);
    const float x3[] = {0, 1, 2, 0, 1, 2};
    const float *ins3[] = {x3};
    const float w3[] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    dc_check_known(&t, ins3, w3, 6, "Softmax opset 13 axis 0");
}
END_TEST

START_TEST(test_softmax_infer)
{
    dcase t;
    dc_init(&t, "Softmax", 13, 1);
    DC_IN(&t, 3, 4);
    dc_attr_i(&t, "axis", 2);
    dc_check_infer_fails(&t, PIPPY_ERR_INVALID, "axis 2", NULL);
    dc_init(&t, "LogSoftmax", 13, 1);
    DC_IN(&t, 3, 4);
    t.d.in[0].dtype = PIPPY_DT_DOUBLE;
    dc_check_infer_fails(&t, PIPPY_ERR_UNSUPPORTED, "must be float", NULL);
    dc_init(&t, "Softmax", 13, 1);
    dc_in_scalar(&t);
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
