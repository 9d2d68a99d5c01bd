/* grad_norm.c — gradient rules of LayerNormalization and of BatchNormalization in training
 * (pippy::BatchNormalizationTraining, which the training compile puts in place of every
 * BatchNormalization: statistics of the microbatch, running statistics updated in place).
 *
 *   LayerNormalization(X, Scale, B) -> Y [, Mean, InvStdDev]: the forward is made to write Mean
 *   and InvStdDev (kept for the backward), then
 *     dX            = pippy::LayerNormalizationGrad(dY, X, Scale, Mean, InvStdDev)
 *     dScale, dB    = pippy::LayerNormalizationWeightGrad(dY, X, Mean, InvStdDev)  (W phase)
 *   BatchNormalizationTraining(X, scale, B, mean, var) -> Y, saved_mean, saved_inv_std:
 *     dX            = pippy::BatchNormalizationGrad(dY, X, scale, saved_mean, saved_inv_std)
 *     dscale, dB    = pippy::BatchNormalizationWeightGrad(dY, X, saved_mean, saved_inv_std) */
#include <string.h>

#include "grad.h"

static pippy_status pippy_grad_layernorm(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_tdesc *x = pippy_grad_type(c, pippy_grad_in(c, 0));
    int64_t axis = pippy_grad_attr_int(c, "axis", -1);
    if (axis < 0)
        axis += x->rank;
    pippy_tdesc st = *x;
    for (int32_t d = (int32_t)axis; d < st.rank; d++)
        st.dims[d] = 1;
    int32_t mean = pippy_grad_fwd_output(c, 1, &st), inv = mean < 0 ? -1 : pippy_grad_fwd_output(c, 2, &st);
    PIPPY_GRAD_TRY(inv);
    pippy_attr at = {.name = "axis", .type = PIPPY_ATTR_INT, .i = axis};
    int32_t X = pippy_grad_in(c, 0), scale = pippy_grad_in(c, 1), bias = pippy_grad_in(c, 2);
    if (c->want[0]) {
        int32_t in[5] = {dy[0], X, scale, mean, inv};
        PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "LayerNormalizationGrad", 5, in, &at, 1, 1, NULL));
    }
    if (c->want[1] || (bias >= 0 && c->want[2])) {
        int32_t in[4] = {dy[0], X, mean, inv}, out[2] = {-1, -1};
        PIPPY_GRAD_TRY(pippy_grad_emit(c, "pippy", "LayerNormalizationWeightGrad", 4, in, &at, 1, bias >= 0 ? 2 : 1, out));
        if (c->want[1])
            PIPPY_GRAD_TRY(dx[1] = pippy_grad_sum_to(c, out[0], pippy_grad_type(c, pippy_grad_in(c, 1))));
        if (bias >= 0 && c->want[2])
            PIPPY_GRAD_TRY(dx[2] = pippy_grad_sum_to(c, out[1], pippy_grad_type(c, pippy_grad_in(c, 2))));
    }
    return PIPPY_OK;
}

static pippy_status pippy_grad_batchnorm(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t X = pippy_grad_in(c, 0), mean = pippy_grad_out(c, 1), inv = pippy_grad_out(c, 2);
    if (mean < 0 || inv < 0)
        return pippy_fail(PIPPY_ERR_INTERNAL, "node '%s': BatchNormalizationTraining without saved statistics",
                          pippy_grad_fwd(c)->name);
    if (c->want[0]) {
        int32_t in[5] = {dy[0], X, pippy_grad_in(c, 1), mean, inv};
        PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "BatchNormalizationGrad", 5, in, NULL, 0, 1, NULL));
    }
    if (c->want[1] || c->want[2]) {
        int32_t in[4] = {dy[0], X, mean, inv}, out[2];
        PIPPY_GRAD_TRY(pippy_grad_emit(c, "pippy", "BatchNormalizationWeightGrad", 4, in, NULL, 0, 2, out));
        dx[1] = c->want[1] ? out[0] : -1;
        dx[2] = c->want[2] ? out[1] : -1;
    }
    return PIPPY_OK;
}

const pippy_grad_rule pippy_grad_rules_norm[] = {
    {"LayerNormalization", "", 0, pippy_grad_layernorm},
    {"BatchNormalizationTraining", "pippy", (1u << 3) | (1u << 4), pippy_grad_batchnorm},
    {0},
};
