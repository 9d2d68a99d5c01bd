/* grad_eltwise.c — gradient rules of the unary element-wise ops.
 *
 * Activations with a backward kernel: Relu -> pippy::ReluGrad(dY, Y), Gelu -> GeluGrad(dY, X),
 * Tanh -> TanhGrad(dY, Y), Sigmoid -> SigmoidGrad(dY, Y), LeakyRelu -> LeakyReluGrad(dY, X).
 * The rest with forward ops:
 *   Neg: -dY      Exp: dY·Y      Log: dY/X      Sqrt: dY·0.5/Y      Reciprocal: -dY·Y·Y
 *   Erf: dY·(2/sqrt(pi))·exp(-X²)      Identity, Dropout (inference), Cast and CastLike float->float: dY
 *   Clip: Where(min < X < max, dY, 0)  (torch's hardtanh / relu6 rule: nothing passes at a bound)
 *   HardSigmoid(alpha, beta): Where(0 < alpha·X + beta < 1, dY·alpha, 0)   (torch's rule)
 *   HardSwish: dY·(X < -3 ? 0 : X <= 3 ? X/3 + 0.5 : 1)                    (torch's rule)
 * Dropout in training (pippy::DropoutTrain): pippy::DropoutGrad(dY, Mask). */
#include <string.h>

#include "grad.h"

static pippy_status pippy_grad_kernel(pippy_grad_ctx *c, const char *op, int32_t saved, const int32_t *dy, int32_t *dx)
{
    int32_t in[2] = {dy[0], saved};
    const pippy_node *n = pippy_grad_fwd(c);
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", op, 2, in, n->attrs, n->n_attrs, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_relu(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "ReluGrad", pippy_grad_out(c, 0), dy, dx);
}
static pippy_status pippy_grad_gelu(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "GeluGrad", pippy_grad_in(c, 0), dy, dx);
}
static pippy_status pippy_grad_tanh(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "TanhGrad", pippy_grad_out(c, 0), dy, dx);
}
static pippy_status pippy_grad_sigmoid(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "SigmoidGrad", pippy_grad_out(c, 0), dy, dx);
}
static pippy_status pippy_grad_leakyrelu(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "LeakyReluGrad", pippy_grad_in(c, 0), dy, dx);
}
static pippy_status pippy_grad_dropout_train(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_kernel(c, "DropoutGrad", pippy_grad_out(c, 1), dy, dx);
}

static pippy_status pippy_grad_pass(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    (void)c;
    dx[0] = dy[0];
    return PIPPY_OK;
}

static pippy_status pippy_grad_neg(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op1(c, "Neg", dy[0]));
    return PIPPY_OK;
}

static pippy_status pippy_grad_exp(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op2(c, "Mul", dy[0], pippy_grad_out(c, 0)));
    return PIPPY_OK;
}

static pippy_status pippy_grad_log(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op2(c, "Div", dy[0], pippy_grad_in(c, 0)));
    return PIPPY_OK;
}

static pippy_status pippy_grad_sqrt(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t half = pippy_grad_scalar(c, 0.5f), t;
    PIPPY_GRAD_TRY(half);
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", dy[0], half));
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op2(c, "Div", t, pippy_grad_out(c, 0)));
    return PIPPY_OK;
}

static pippy_status pippy_grad_reciprocal(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t y = pippy_grad_out(c, 0), t;
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", y, y));
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", dy[0], t));
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op1(c, "Neg", t));
    return PIPPY_OK;
}

static pippy_status pippy_grad_erf(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t x = pippy_grad_in(c, 0), k = pippy_grad_scalar(c, 1.12837916709551257f), t;
    PIPPY_GRAD_TRY(k);
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", x, x));
    PIPPY_GRAD_TRY(t = pippy_grad_op1(c, "Neg", t));
    PIPPY_GRAD_TRY(t = pippy_grad_op1(c, "Exp", t));
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", t, k));
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op2(c, "Mul", dy[0], t));
    return PIPPY_OK;
}

/* Clip: dY where min < X < max (a bound that is absent does not mask). The bounds are inputs 1 and 2
 * from opset 11, attributes before. */
static pippy_status pippy_grad_clip(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    static const char *const attr[2] = {"min", "max"}, *const cmp[2] = {"Greater", "Less"};
    int32_t x = pippy_grad_in(c, 0), mask = -1;
    for (int32_t k = 0; k < 2; k++) {
        int32_t bound = -1, m;
        if (c->g->opset >= 11)
            bound = pippy_grad_in(c, 1 + k);
        else if (pippy_grad_attr(c, attr[k]))
            PIPPY_GRAD_TRY(bound = pippy_grad_scalar(c, pippy_grad_attr_float(c, attr[k], 0.0f)));
        if (bound < 0)
            continue;
        PIPPY_GRAD_TRY(m = pippy_grad_op2(c, cmp[k], x, bound));
        PIPPY_GRAD_TRY(mask = mask < 0 ? m : pippy_grad_op2(c, "And", mask, m));
    }
    if (mask < 0) {
        dx[0] = dy[0];
        return PIPPY_OK;
    }
    int32_t zero = pippy_grad_scalar(c, 0.0f);
    PIPPY_GRAD_TRY(zero);
    int32_t in[3] = {mask, dy[0], zero};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "", "Where", 3, in, NULL, 0, 1, NULL));
    return PIPPY_OK;
}

/* Where(cond, a, b), a new value. */
static int32_t pippy_grad_where(pippy_grad_ctx *c, int32_t cond, int32_t a, int32_t b)
{
    int32_t in[3] = {cond, a, b};
    return pippy_grad_emit(c, "", "Where", 3, in, NULL, 0, 1, NULL);
}

/* The float scalars v[0..n) as constant values in s. */
static pippy_status pippy_grad_scalars(pippy_grad_ctx *c, const float *v, int32_t n, int32_t *s)
{
    for (int32_t k = 0; k < n; k++)
        PIPPY_GRAD_TRY(s[k] = pippy_grad_scalar(c, v[k]));
    return PIPPY_OK;
}

static pippy_status pippy_grad_hardsigmoid(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const float v[4] = {pippy_grad_attr_float(c, "alpha", 0.2f), pippy_grad_attr_float(c, "beta", 0.5f), 0.0f, 1.0f};
    int32_t k[4], t, above, below, inside, g;
    PIPPY_TRY(pippy_grad_scalars(c, v, 4, k)); /* alpha, beta, 0, 1 */
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Mul", pippy_grad_in(c, 0), k[0]));
    PIPPY_GRAD_TRY(t = pippy_grad_op2(c, "Add", t, k[1]));
    PIPPY_GRAD_TRY(above = pippy_grad_op2(c, "Greater", t, k[2]));
    PIPPY_GRAD_TRY(below = pippy_grad_op2(c, "Less", t, k[3]));
    PIPPY_GRAD_TRY(inside = pippy_grad_op2(c, "And", above, below));
    PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Mul", dy[0], k[0]));
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_where(c, inside, g, k[2]));
    return PIPPY_OK;
}

static pippy_status pippy_grad_hardswish(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    static const float v[6] = {1.0f / 3.0f, 0.5f, 3.0f, -3.0f, 0.0f, 1.0f};
    int32_t k[6], x = pippy_grad_in(c, 0), slope, low, high, d;
    PIPPY_TRY(pippy_grad_scalars(c, v, 6, k));
    PIPPY_GRAD_TRY(slope = pippy_grad_op2(c, "Mul", x, k[0]));
    PIPPY_GRAD_TRY(slope = pippy_grad_op2(c, "Add", slope, k[1]));
    PIPPY_GRAD_TRY(high = pippy_grad_op2(c, "LessOrEqual", x, k[2]));
    PIPPY_GRAD_TRY(low = pippy_grad_op2(c, "Less", x, k[3]));
    PIPPY_GRAD_TRY(d = pippy_grad_where(c, high, slope, k[5]));
    PIPPY_GRAD_TRY(d = pippy_grad_where(c, low, k[4], d));
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_op2(c, "Mul", dy[0], d));
    return PIPPY_OK;
}

static pippy_status pippy_grad_cast(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    if (pippy_grad_type(c, pippy_grad_out(c, 0))->dtype != PIPPY_DT_FLOAT)
        return PIPPY_OK; /* a cast to an integer type: no gradient */
    dx[0] = dy[0];
    return PIPPY_OK;
}

const pippy_grad_rule pippy_grad_rules_eltwise[] = {
    {"Relu", "", 0, pippy_grad_relu},
    {"Gelu", "", 0, pippy_grad_gelu},
    {"Tanh", "", 0, pippy_grad_tanh},
    {"Sigmoid", "", 0, pippy_grad_sigmoid},
    {"LeakyRelu", "", 0, pippy_grad_leakyrelu},
    {"Neg", "", 0, pippy_grad_neg},
    {"Exp", "", 0, pippy_grad_exp},
    {"Log", "", 0, pippy_grad_log},
    {"Sqrt", "", 0, pippy_grad_sqrt},
    {"Reciprocal", "", 0, pippy_grad_reciprocal},
    {"Erf", "", 0, pippy_grad_erf},
    {"Identity", "", 0, pippy_grad_pass},
    {"Dropout", "", ~1u, pippy_grad_pass},
    {"Cast", "", 0, pippy_grad_cast},
    {"CastLike", "", 1u << 1, pippy_grad_cast}, /* input 1 gives only the type */
    {"Clip", "", (1u << 1) | (1u << 2), pippy_grad_clip},
    {"HardSigmoid", "", 0, pippy_grad_hardsigmoid},
    {"HardSwish", "", 0, pippy_grad_hardswish},
    {"DropoutTrain", "pippy", 0, pippy_grad_dropout_train},
    {0},
};
