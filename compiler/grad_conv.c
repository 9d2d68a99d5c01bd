/* grad_conv.c — gradient rules of Conv and the pools (oneDNN backward primitives behind them).
 *
 *   Conv(X, W [, B]) (with a fused ReLU: dY masked by ReluGrad(dY, Y) first):
 *     dX     = pippy::ConvGradInput(dY, W)     the forward's attributes + shape = X's shape
 *     dW, dB = pippy::ConvGradWeight(dY, X)    the forward's attributes + shape = W's shape (W phase)
 *   MaxPool:           dX = pippy::MaxPoolGrad(dY, X)           (to the first maximum of each window)
 *   AveragePool:       dX = pippy::AveragePoolGrad(dY)           + shape = X's shape
 *   GlobalAveragePool: dX = pippy::GlobalAveragePoolGrad(dY)     + shape = X's shape */
#include <string.h>

#include "grad.h"

#define PIPPY_MAX_ATTRS 16

/* The forward's ONNX attributes (pippy.* dropped) plus shape = t. Returns the count. */
static int32_t pippy_conv_attrs(pippy_grad_ctx *c, const pippy_tdesc *t, pippy_attr *at)
{
    const pippy_node *n = pippy_grad_fwd(c);
    int32_t k = 0;
    for (int32_t a = 0; a < n->n_attrs && k < PIPPY_MAX_ATTRS - 1; a++)
        if (strncmp(n->attrs[a].name, "pippy.", 6) != 0)
            at[k++] = n->attrs[a];
    at[k++] = (pippy_attr){.name = "shape", .type = PIPPY_ATTR_INTS, .n = t->rank, .ints = t->dims};
    return k;
}

static pippy_status pippy_grad_conv(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t d = dy[0], X = pippy_grad_in(c, 0), W = pippy_grad_in(c, 1);
    if (pippy_grad_attr(c, "pippy.activation")) {
        int32_t in[2] = {dy[0], pippy_grad_out(c, 0)};
        PIPPY_GRAD_TRY(d = pippy_grad_emit(c, "pippy", "ReluGrad", 2, in, NULL, 0, 1, NULL));
    }
    pippy_tdesc xt = *pippy_grad_type(c, X), wt = *pippy_grad_type(c, W);
    pippy_attr at[PIPPY_MAX_ATTRS];
    if (c->want[0]) {
        int32_t n = pippy_conv_attrs(c, &xt, at), in[2] = {d, W};
        PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "ConvGradInput", 2, in, at, n, 1, NULL));
    }
    int has_b = pippy_grad_fwd(c)->n_in > 2 && pippy_grad_in(c, 2) >= 0;
    if (c->want[1] || (has_b && c->want[2])) {
        int32_t n = pippy_conv_attrs(c, &wt, at), in[2] = {d, X}, out[2] = {-1, -1};
        PIPPY_GRAD_TRY(pippy_grad_emit(c, "pippy", "ConvGradWeight", 2, in, at, n, has_b ? 2 : 1, out));
        dx[1] = c->want[1] ? out[0] : -1;
        if (has_b)
            dx[2] = c->want[2] ? out[1] : -1;
    }
    return PIPPY_OK;
}

static pippy_status pippy_grad_maxpool(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_node *n = pippy_grad_fwd(c);
    if (n->n_out > 1 && dy[1] >= 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (MaxPool): the Indices output cannot be differentiated",
                          n->name);
    int32_t in[2] = {dy[0], pippy_grad_in(c, 0)};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "MaxPoolGrad", 2, in, n->attrs, n->n_attrs, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_pool_shape(pippy_grad_ctx *c, const char *op, const int32_t *dy, int32_t *dx)
{
    pippy_tdesc xt = *pippy_grad_type(c, pippy_grad_in(c, 0));
    pippy_attr at[PIPPY_MAX_ATTRS];
    int32_t n = pippy_conv_attrs(c, &xt, at);
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", op, 1, dy, at, n, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_avgpool(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_pool_shape(c, "AveragePoolGrad", dy, dx);
}

static pippy_status pippy_grad_gap(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_pool_shape(c, "GlobalAveragePoolGrad", dy, dx);
}

const pippy_grad_rule pippy_grad_rules_conv[] = {
    {"Conv", "", 0, pippy_grad_conv},
    {"MaxPool", "", 0, pippy_grad_maxpool},
    {"AveragePool", "", 0, pippy_grad_avgpool},
    {"GlobalAveragePool", "", 0, pippy_grad_gap},
    {0},
};
