/* grad_softmax.c — gradient rules of Softmax, LogSoftmax and SoftmaxCrossEntropyLoss.
 *
 *   Softmax:    dX = pippy::SoftmaxGrad(dY, Y)      (same axis attribute and opset meaning)
 *   LogSoftmax: dX = pippy::LogSoftmaxGrad(dY, Y)
 *   SoftmaxCrossEntropyLoss(scores, labels [, weights]) -> loss [, log_prob]: the forward is made
 *   to write log_prob, then dScores = pippy::SoftmaxCrossEntropyLossGrad(dLoss, log_prob, labels
 *   [, weights]) with the forward's reduction and ignore_index. */
#include <string.h>

#include "grad.h"

static pippy_status pippy_grad_softmax_op(pippy_grad_ctx *c, const char *op, const int32_t *dy, int32_t *dx)
{
    const pippy_node *n = pippy_grad_fwd(c);
    int32_t in[2] = {dy[0], pippy_grad_out(c, 0)};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", op, 2, in, n->attrs, n->n_attrs, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_softmax(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_softmax_op(c, "SoftmaxGrad", dy, dx);
}

static pippy_status pippy_grad_logsoftmax(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_softmax_op(c, "LogSoftmaxGrad", dy, dx);
}

static pippy_status pippy_grad_sce(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_node *n = pippy_grad_fwd(c);
    if (n->n_out > 1 && n->out[1] >= 0 && dy[1] >= 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "node '%s' (SoftmaxCrossEntropyLoss): its log_prob output cannot be differentiated", n->name);
    if (dy[0] < 0)
        return PIPPY_OK;
    int32_t logp = pippy_grad_fwd_output(c, 1, pippy_grad_type(c, pippy_grad_in(c, 0)));
    PIPPY_GRAD_TRY(logp);
    n = pippy_grad_fwd(c);
    int32_t in[4] = {dy[0], logp, pippy_grad_in(c, 1), n->n_in > 2 ? pippy_grad_in(c, 2) : -1};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "SoftmaxCrossEntropyLossGrad", in[3] >= 0 ? 4 : 3, in, n->attrs,
                                           n->n_attrs, 1, NULL));
    return PIPPY_OK;
}

const pippy_grad_rule pippy_grad_rules_softmax[] = {
    {"Softmax", "", 0, pippy_grad_softmax},
    {"LogSoftmax", "", 0, pippy_grad_logsoftmax},
    {"SoftmaxCrossEntropyLoss", "", ~1u, pippy_grad_sce},
    {0},
};
