/* grad_matmul.c — gradient rules of MatMul and Gemm.
 *
 * Y = op(A) · op(B) (op: the transpose of the last two dims when "pippy.trans_a/b" is set).
 * The gradients are MatMuls with transposes expressed as the same attributes (oneDNN reads
 * the operands strided, nothing is copied):
 *   dA = dY · op(B)^T      (op(A) transposed back when trans_a)
 *   dB = op(A)^T · dY      summed over the batch dims B does not have: when B is 2-D and A
 *                          batched (a Linear layer on [B,T,C]), A and dY are viewed as 2-D
 *                          [rows, K] and [rows, N], so dB is one MatMul, which accumulates
 *                          straight into the gradient buffer (pippy.accumulate).
 * A fused ReLU ("pippy.activation") first masks dY with ReluGrad(dY, Y); a fused bias
 * ("pippy.bias") gets SumTo(dY, [N]).
 * A 1-D operand is the matrix ONNX makes of it (A [K] as [1,K], B [K] as [K,1]): A, B and dY are
 * viewed as such, and the gradients viewed back.
 * Gemm: Y = alpha·op(A)·op(B) + beta·C on 2-D operands, the same rule plus dC = beta·SumTo(dY). */
#include <string.h>

#include "grad.h"

static int32_t pippy_mm(pippy_grad_ctx *c, int32_t a, int32_t b, int ta, int tb)
{
    pippy_attr at[2];
    int32_t n = 0;
    if (ta)
        at[n++] = (pippy_attr){.name = "pippy.trans_a", .type = PIPPY_ATTR_INT, .i = 1};
    if (tb)
        at[n++] = (pippy_attr){.name = "pippy.trans_b", .type = PIPPY_ATTR_INT, .i = 1};
    int32_t in[2] = {a, b};
    return pippy_grad_emit(c, "", "MatMul", 2, in, at, n, 1, NULL);
}

/* dY after a fused activation: ReluGrad(dY, Y). */
static int32_t pippy_mm_activation_grad(pippy_grad_ctx *c, int32_t dy)
{
    const pippy_attr *act = pippy_grad_attr(c, "pippy.activation");
    if (!act)
        return dy;
    int32_t in[2] = {dy, pippy_grad_out(c, 0)};
    return pippy_grad_emit(c, "pippy", "ReluGrad", 2, in, NULL, 0, 1, NULL);
}

static int32_t pippy_scale(pippy_grad_ctx *c, int32_t v, float s)
{
    if (v < 0 || s == 1.0f)
        return v;
    int32_t k = pippy_grad_scalar(c, s);
    return k < 0 ? -1 : pippy_grad_op2(c, "Mul", v, k);
}

/* ONNX MatMul's 1-D operands as matrices: A [K] is [1,K], B [K] is [K,1], and Y lacks the dims of
 * those 1s. Sets the 2-D types of A, B and Y. */
static pippy_status pippy_mm_views(pippy_grad_ctx *c, int ta, int tb, pippy_tdesc *at, pippy_tdesc *bt, pippy_tdesc *yt)
{
    if (at->rank < 1 || bt->rank < 1 || (at->rank == 1 && ta) || (bt->rank == 1 && tb))
        return pippy_fail(PIPPY_ERR_INTERNAL, "node '%s' (%s): a product of a scalar or of a transposed vector",
                          pippy_grad_fwd(c)->name, pippy_grad_fwd(c)->op);
    if (yt->rank + 2 > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (%s): rank too high", pippy_grad_fwd(c)->name,
                          pippy_grad_fwd(c)->op);
    if (at->rank == 1) {
        *at = (pippy_tdesc){at->dtype, 2, {1, at->dims[0]}};
        int32_t at_m = bt->rank == 1 ? yt->rank : yt->rank - 1; /* where Y's M would be */
        memmove(yt->dims + at_m + 1, yt->dims + at_m, (size_t)(yt->rank - at_m) * sizeof yt->dims[0]);
        yt->dims[at_m] = 1;
        yt->rank++;
    }
    if (bt->rank == 1) {
        *bt = (pippy_tdesc){bt->dtype, 2, {bt->dims[0], 1}};
        yt->dims[yt->rank++] = 1;
    }
    return PIPPY_OK;
}

/* The gradients of op(A)·op(B) given dY (already through the activation). */
static pippy_status pippy_mm_grads(pippy_grad_ctx *c, int32_t dy, int ta, int tb, float alpha, int32_t *dx)
{
    int32_t a = pippy_grad_in(c, 0), b = pippy_grad_in(c, 1);
    pippy_tdesc at = *pippy_grad_type(c, a), bt = *pippy_grad_type(c, b), yt = *pippy_grad_type(c, dy);
    PIPPY_TRY(pippy_mm_views(c, ta, tb, &at, &bt, &yt));
    PIPPY_GRAD_TRY(dy = pippy_grad_reshape(c, dy, &yt));
    if (c->want[0]) {
        /* d op(A) = dY · op(B)^T ; dA = (d op(A))^T when trans_a */
        int32_t bv = pippy_grad_reshape(c, b, &bt);
        PIPPY_GRAD_TRY(bv);
        int32_t g = ta ? pippy_mm(c, bv, dy, tb, 1) : pippy_mm(c, dy, bv, 0, !tb);
        PIPPY_GRAD_TRY(g);
        PIPPY_GRAD_TRY(g = pippy_scale(c, g, alpha));
        PIPPY_GRAD_TRY(g = pippy_grad_sum_to(c, g, &at));
        PIPPY_GRAD_TRY(dx[0] = pippy_grad_reshape(c, g, pippy_grad_type(c, pippy_grad_in(c, 0))));
    }
    if (c->want[1]) {
        int32_t g, av = pippy_grad_reshape(c, a, &at);
        PIPPY_GRAD_TRY(av);
        if (bt.rank == 2 && at.rank > 2 && !ta) {
            /* rows of A against rows of dY: one 2-D product */
            pippy_tdesc a2 = {at.dtype, 2, {pippy_tdesc_numel(&at) / at.dims[at.rank - 1], at.dims[at.rank - 1]}};
            pippy_tdesc y2 = {yt.dtype, 2, {pippy_tdesc_numel(&yt) / yt.dims[yt.rank - 1], yt.dims[yt.rank - 1]}};
            int32_t a2v = pippy_grad_reshape(c, av, &a2);
            PIPPY_GRAD_TRY(a2v);
            int32_t y2v = pippy_grad_reshape(c, dy, &y2);
            PIPPY_GRAD_TRY(y2v);
            g = tb ? pippy_mm(c, y2v, a2v, 1, 0) : pippy_mm(c, a2v, y2v, 1, 0);
        } else {
            /* d op(B) = op(A)^T · dY ; dB = (d op(B))^T when trans_b */
            g = tb ? pippy_mm(c, dy, av, 1, ta) : pippy_mm(c, av, dy, !ta, 0);
        }
        PIPPY_GRAD_TRY(g);
        PIPPY_GRAD_TRY(g = pippy_scale(c, g, alpha));
        PIPPY_GRAD_TRY(g = pippy_grad_sum_to(c, g, &bt));
        PIPPY_GRAD_TRY(dx[1] = pippy_grad_reshape(c, g, pippy_grad_type(c, pippy_grad_in(c, 1))));
    }
    return PIPPY_OK;
}

static pippy_status pippy_grad_matmul(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t d = pippy_mm_activation_grad(c, dy[0]);
    PIPPY_GRAD_TRY(d);
    int ta = pippy_grad_attr_int(c, "pippy.trans_a", 0) != 0, tb = pippy_grad_attr_int(c, "pippy.trans_b", 0) != 0;
    PIPPY_TRY(pippy_mm_grads(c, d, ta, tb, 1.0f, dx));
    if (pippy_grad_attr_int(c, "pippy.bias", 0) && c->want[2])
        PIPPY_GRAD_TRY(dx[2] = pippy_grad_sum_to(c, d, pippy_grad_type(c, pippy_grad_in(c, 2))));
    return PIPPY_OK;
}

static pippy_status pippy_grad_gemm(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    int32_t d = pippy_mm_activation_grad(c, dy[0]);
    PIPPY_GRAD_TRY(d);
    int ta = pippy_grad_attr_int(c, "transA", 0) != 0, tb = pippy_grad_attr_int(c, "transB", 0) != 0;
    PIPPY_TRY(pippy_mm_grads(c, d, ta, tb, pippy_grad_attr_float(c, "alpha", 1.0f), dx));
    if (pippy_grad_fwd(c)->n_in > 2 && c->want[2]) {
        int32_t g = pippy_grad_sum_to(c, d, pippy_grad_type(c, pippy_grad_in(c, 2)));
        PIPPY_GRAD_TRY(g);
        PIPPY_GRAD_TRY(dx[2] = pippy_scale(c, g, pippy_grad_attr_float(c, "beta", 1.0f)));
    }
    return PIPPY_OK;
}

const pippy_grad_rule pippy_grad_rules_matmul[] = {
    {"MatMul", "", 0, pippy_grad_matmul},
    {"Gemm", "", 0, pippy_grad_gemm},
    {0},
};
