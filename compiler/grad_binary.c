/* grad_binary.c — gradient rules of the broadcasting element-wise ops.
 *
 * Every gradient is computed at the output's shape, then reduced to its input's shape over
 * the broadcast axes (pippy::SumTo; nothing when the shapes agree):
 *   Add: dA = dY, dB = dY          Sub: dA = dY, dB = -dY
 *   Mul: dA = dY·B, dB = dY·A      Div: dA = dY/B, dB = -dY·Y/B  (Y = A/B)
 *   Pow: dA = dY·B·A^(B-1)  (B a stored scalar exponent, never trained: B-1 is folded now)
 *   Where(C, X, Z): dX = Where(C, dY, 0), dZ = Where(C, 0, dY)
 *   Sum(X1..Xn): dXi = dY
 *   Max / Min(X1..Xn): dXi = Where(Xi == Y, dY, 0) */
#include <stdlib.h>
#include <string.h>

#include "grad.h"

static pippy_status pippy_grad_reduce_each(pippy_grad_ctx *c, const int32_t *g, int32_t *dx, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (c->want[i] && g[i] >= 0)
            PIPPY_GRAD_TRY(dx[i] = pippy_grad_sum_to(c, g[i], pippy_grad_type(c, pippy_grad_in(c, i))));
    return PIPPY_OK;
}

static pippy_status pippy_grad_add(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t g[2] = {dy[0], dy[0]};
    return pippy_grad_reduce_each(c, g, dx, 2);
}

static pippy_status pippy_grad_sub(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t g[2] = {dy[0], -1};
    if (c->want[1])
        PIPPY_GRAD_TRY(g[1] = pippy_grad_op1(c, "Neg", dy[0]));
    return pippy_grad_reduce_each(c, g, dx, 2);
}

static pippy_status pippy_grad_mul(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t g[2] = {-1, -1};
    if (c->want[0])
        PIPPY_GRAD_TRY(g[0] = pippy_grad_op2(c, "Mul", dy[0], pippy_grad_in(c, 1)));
    if (c->want[1])
        PIPPY_GRAD_TRY(g[1] = pippy_grad_op2(c, "Mul", dy[0], pippy_grad_in(c, 0)));
    return pippy_grad_reduce_each(c, g, dx, 2);
}

static pippy_status pippy_grad_div(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t g[2] = {-1, -1}, b = pippy_grad_in(c, 1);
    if (c->want[0])
        PIPPY_GRAD_TRY(g[0] = pippy_grad_op2(c, "Div", dy[0], b));
    if (c->want[1]) {
        int32_t t = pippy_grad_op2(c, "Div", pippy_grad_out(c, 0), b);
        PIPPY_GRAD_TRY(t);
        PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", dy[0], t));
        PIPPY_GRAD_TRY(g[1] = pippy_grad_op1(c, "Neg", t));
    }
    return pippy_grad_reduce_each(c, g, dx, 2);
}

static pippy_status pippy_grad_pow(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t a = pippy_grad_in(c, 0), b = pippy_grad_in(c, 1);
    const pippy_value *bv = &c->g->values[b];
    if (!bv->data || bv->t.dtype != PIPPY_DT_FLOAT)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (Pow): only a stored float exponent can be differentiated", pippy_grad_fwd(c)->name);
    int64_t n = pippy_tdesc_numel(&bv->t);
    if (n != 1)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (Pow): only a scalar exponent can be differentiated",
                          pippy_grad_fwd(c)->name);
    float e = *(const float *)bv->data;
    int32_t g;
    if (e == 2.0f) { /* dY·2·A */
        int32_t two = pippy_grad_scalar(c, 2.0f);
        PIPPY_GRAD_TRY(two);
        PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Mul", a, two));
    } else {
        int32_t em1 = pippy_grad_scalar(c, e - 1.0f), k = pippy_grad_scalar(c, e);
        PIPPY_GRAD_TRY(em1);
        PIPPY_GRAD_TRY(k);
        PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Pow", a, em1));
        PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Mul", g, k));
    }
    PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Mul", dy[0], g));
    int32_t gg[2] = {g, -1};
    return pippy_grad_reduce_each(c, gg, dx, 2);
}

static pippy_status pippy_grad_where(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t cond = pippy_grad_in(c, 0), zero = pippy_grad_scalar(c, 0.0f), g[3] = {-1, -1, -1};
    PIPPY_GRAD_TRY(zero);
    for (int32_t i = 1; i <= 2; i++) {
        if (!c->want[i])
            continue;
        int32_t in[3] = {cond, i == 1 ? dy[0] : zero, i == 1 ? zero : dy[0]};
        PIPPY_GRAD_TRY(g[i] = pippy_grad_emit(c, "", "Where", 3, in, NULL, 0, 1, NULL));
    }
    return pippy_grad_reduce_each(c, g, dx, 3);
}

/* Max / Min: dY goes to the inputs equal to the output (a tie gives it to each tied input; torch
 * splits it between them, so results differ only where inputs are exactly equal). */
static pippy_status pippy_grad_extremum(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t n = pippy_grad_fwd(c)->n_in, g[PIPPY_MAX_IO], zero = pippy_grad_scalar(c, 0.0f);
    PIPPY_GRAD_TRY(zero);
    n = n < PIPPY_MAX_IO ? n : PIPPY_MAX_IO;
    for (int32_t i = 0; i < n; i++) {
        g[i] = -1;
        if (!c->want[i])
            continue;
        int32_t in[3] = {pippy_grad_op2(c, "Equal", pippy_grad_in(c, i), pippy_grad_out(c, 0)), dy[0], zero};
        PIPPY_GRAD_TRY(in[0]);
        PIPPY_GRAD_TRY(g[i] = pippy_grad_emit(c, "", "Where", 3, in, NULL, 0, 1, NULL));
    }
    return pippy_grad_reduce_each(c, g, dx, n);
}

static pippy_status pippy_grad_sum(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t n = pippy_grad_fwd(c)->n_in, g[PIPPY_MAX_IO];
    for (int32_t i = 0; i < n && i < PIPPY_MAX_IO; i++)
        g[i] = dy[0];
    return pippy_grad_reduce_each(c, g, dx, n < PIPPY_MAX_IO ? n : PIPPY_MAX_IO);
}

const pippy_grad_rule pippy_grad_rules_binary[] = {
    {"Add", "", 0, pippy_grad_add},   {"Sub", "", 0, pippy_grad_sub},     {"Mul", "", 0, pippy_grad_mul},
    {"Div", "", 0, pippy_grad_div},   {"Pow", "", 1u << 1, pippy_grad_pow},     {"Where", "", 0, pippy_grad_where},
    {"Sum", "", 0, pippy_grad_sum},   {"Max", "", 0, pippy_grad_extremum}, {"Min", "", 0, pippy_grad_extremum},
    {0},
};
