/* test_autodiff.c — the emission helpers of the gradient rules (grad.h) when emitting moves the
 * graph's values array: rules pass pippy_grad_type() of a value, a pointer into that array, so
 * every helper must copy it before it creates a value. Each helper is called with the array full
 * (the next value reallocates it); under the sanitizer build a stale read is an error, in any
 * build the emitted shape must be the one asked for. The gradients themselves are checked
 * against PyTorch by test/e2e/test_grad_rules.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "grad.h"
#include "harness.h"

/* A float value of the given shape (a stored parameter when data). */
static int32_t value(pippy_graph *g, const char *name, int32_t rank, const int64_t *dims, int param)
{
    int32_t v = pippy_graph_value(g, name);
    ck_assert_int_ge(v, 0);
    pippy_value *x = &g->values[v];
    x->t.dtype = PIPPY_DT_FLOAT;
    x->t.rank = rank;
    memcpy(x->t.dims, dims, (size_t)rank * sizeof *dims);
    x->shape_known = 1;
    if (param) {
        x->kind = PIPPY_VAL_PARAM;
        x->data = calloc((size_t)pippy_tdesc_numel(&x->t), sizeof(float));
        x->data_owned = 1;
    }
    return v;
}

/* Fill the values array to its capacity: the next new value moves it. */
static void fill(pippy_graph *g)
{
    char name[64];
    for (int k = 0; g->n_values < g->cap_values; k++) {
        snprintf(name, sizeof name, "pad%d_%d", g->n_values, k);
        ck_assert_int_ge(pippy_graph_value(g, name), 0);
    }
}

static void expect_type(const pippy_graph *g, int32_t v, int32_t rank, const int64_t *dims)
{
    ck_assert_int_ge(v, 0);
    ck_assert_int_eq(g->values[v].t.rank, rank);
    for (int32_t d = 0; d < rank; d++)
        ck_assert_int_eq(g->values[v].t.dims[d], dims[d]);
}

START_TEST(test_helpers_survive_moving_values)
{
    pippy_shape_bind_opts b;
    memset(&b, 0, sizeof b);
    b.batch = 2;
    pippy_graph *g = NULL;
    ck_assert_msg(pippy_load_and_infer("samples/models/mlp.onnx", &b, 0, &g) == PIPPY_OK, "%s", pippy_last_error());
    const int64_t d34[2] = {3, 4}, d4[1] = {4}, d12[1] = {12};
    int32_t x = value(g, "t.x", 2, d34, 0), p = value(g, "t.p", 1, d4, 1), r = value(g, "t.r", 1, d12, 0);
    pippy_grad_ctx c = {g, 0, 0, NULL, 0};
    for (int round = 0; round < 2; round++) { /* two capacities: the array moves twice */
        fill(g);
        expect_type(g, pippy_grad_sum_to(&c, x, pippy_grad_type(&c, p)), 1, d4);
        fill(g);
        expect_type(g, pippy_grad_reshape(&c, x, pippy_grad_type(&c, r)), 1, d12);
        fill(g);
        expect_type(g, pippy_grad_expand(&c, p, pippy_grad_type(&c, x)), 2, d34);
        fill(g);
        expect_type(g, pippy_grad_fwd_output(&c, 3 + round, pippy_grad_type(&c, x)), 2, d34);
    }
    pippy_graph_free(g);
}
END_TEST

static Suite *autodiff_suite(void)
{
    Suite *s = suite_create("autodiff");
    TCase *t = tcase_create("helpers");
    tcase_add_test(t, test_helpers_survive_moving_values);
    suite_add_tcase(s, t);
    return s;
}

PIPPY_TEST_SUITE(autodiff_suite)
