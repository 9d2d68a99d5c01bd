/* grad_eltwise.c — gradient rules of the unary element-wise ops.
 *
 * Activations with a backward kernel: Relu -> pippy::ReluGrad(dY, Y), Gelu -> GeluGrad(dY, X),
 * Tanh -> TanhGrad(dY, Y), Sigmoid -> SigmoidGrad(dY, Y), LeakyRelu -> LeakyReluGrad(dY, X).
 * The rest with forward ops:
 *   Neg: -dY      Exp: dY·Y      Log: dY/X      Sqrt: dY·0.5/Y      Reciprocal: -dY·Y·Y
 *   Erf: dY·(2/sqrt(pi))·exp(-X²)      Identity, Dropout (inference), Cast float->float: dY
 *   Clip: Where(min < X < max, dY, 0)  (torch's hardtanh / relu6 rule: nothing passes at a bound)
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
    {"Clip", "", (1u << 1) | (1u << 2), pippy_grad_clip},
    {"DropoutTrain", "pippy", 0, pippy_grad_dropout_train},
    {0},
};
