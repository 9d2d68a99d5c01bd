/* grad_reduce.c — gradient rules of ReduceSum and ReduceMean.
 *
 * dX = Expand(dY viewed with the reduced axes kept as 1, X's shape), times 1/n for the mean
 * (n: the number of elements each output summed). The axes come from the attribute or the
 * constant second input, as the forward's shape rule read them; the reduced shape is the one
 * the forward computed, so only "which axes" is needed to put the kept dims back. */
#include <string.h>

#include "grad.h"

/* The reduced axes (normalised), as the forward op defines them at the model's opset. */
static pippy_status pippy_reduce_axes(pippy_grad_ctx *c, char *reduced)
{
    const pippy_node *n = pippy_grad_fwd(c);
    const pippy_tdesc *x = pippy_grad_type(c, pippy_grad_in(c, 0));
    const int64_t *ax = NULL;
    int64_t nax = -1;
    const pippy_attr *a = pippy_grad_attr(c, "axes");
    if (a && a->type == PIPPY_ATTR_INTS) {
        ax = a->ints;
        nax = a->n;
    } else if (n->n_in > 1 && n->in[1] >= 0) {
        const pippy_value *v = &c->g->values[n->in[1]];
        if (!v->data || v->t.dtype != PIPPY_DT_INT64)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (%s): axes must be a constant to differentiate",
                              n->name, n->op);
        ax = v->data;
        nax = pippy_tdesc_numel(&v->t);
    }
    memset(reduced, 0, PIPPY_MAX_RANK);
    if (nax <= 0) {
        int noop = pippy_grad_attr_int(c, "noop_with_empty_axes", 0) != 0;
        for (int32_t d = 0; d < x->rank; d++)
            reduced[d] = !noop;
        return PIPPY_OK;
    }
    for (int64_t i = 0; i < nax; i++) {
        int64_t d = ax[i] < 0 ? ax[i] + x->rank : ax[i];
        if (d < 0 || d >= x->rank)
            return pippy_fail(PIPPY_ERR_INVALID, "node '%s' (%s): axis %lld is out of range", n->name, n->op,
                              (long long)ax[i]);
        reduced[d] = 1;
    }
    return PIPPY_OK;
}

static pippy_status pippy_grad_reduce(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx, int mean)
{
    char reduced[PIPPY_MAX_RANK];
    PIPPY_TRY(pippy_reduce_axes(c, reduced));
    pippy_tdesc x = *pippy_grad_type(c, pippy_grad_in(c, 0)), kept = x;
    int64_t count = 1;
    for (int32_t d = 0; d < x.rank; d++)
        if (reduced[d]) {
            kept.dims[d] = 1;
            count *= x.dims[d];
        }
    int32_t g = pippy_grad_reshape(c, dy[0], &kept);
    PIPPY_GRAD_TRY(g);
    if (mean && count != 1) {
        int32_t k = pippy_grad_scalar(c, (float)(1.0 / (double)count));
        PIPPY_GRAD_TRY(k);
        PIPPY_GRAD_TRY(g = pippy_grad_op2(c, "Mul", g, k));
    }
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_expand(c, g, &x));
    return PIPPY_OK;
}

static pippy_status pippy_grad_reduce_sum(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_reduce(c, dy, dx, 0);
}

static pippy_status pippy_grad_reduce_mean(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    return pippy_grad_reduce(c, dy, dx, 1);
}

const pippy_grad_rule pippy_grad_rules_reduce[] = {
    {"ReduceSum", "", 0, pippy_grad_reduce_sum},
    {"ReduceMean", "", 0, pippy_grad_reduce_mean},
    {0},
};
