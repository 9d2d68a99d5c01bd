/* grad_shape.c — gradient rules of the data-movement ops.
 *
 *   Reshape, Flatten, Squeeze, Unsqueeze: dX = dY viewed with X's shape (a view, no copy)
 *   Transpose(perm): dX = Transpose(dY, inverse perm)
 *   Expand: dX = SumTo(dY, X's shape)
 *   Concat(axis): dXi = Slice(dY, the range of Xi along axis) (Slice-1's attributes before opset 10)
 *   Split(axis): dX = Concat(dY1..dYn) (zeros where an output has no gradient)
 *   Slice: dX = pippy::SliceGrad(dY) (dY put back into zeros at the sliced positions; constant
 *          starts/ends/axes/steps as attributes, starts and ends clamped to the axis)
 *   Gather(axis) of a float table by indices: dTable = pippy::GatherGrad(dY, indices) (with the
 *   Gather's pippy.padding_idx, --padding-idx: that row gets none)
 *     (a scatter-add: the embedding gradient, accumulated straight into the gradient buffer) */
#include <stdlib.h>
#include <string.h>

#include "grad.h"

static pippy_status pippy_grad_view(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_reshape(c, dy[0], pippy_grad_type(c, pippy_grad_in(c, 0))));
    return PIPPY_OK;
}

static pippy_status pippy_grad_transpose(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_tdesc *x = pippy_grad_type(c, pippy_grad_in(c, 0));
    const pippy_attr *a = pippy_grad_attr(c, "perm");
    int64_t inv[PIPPY_MAX_RANK];
    for (int32_t d = 0; d < x->rank; d++) {
        int64_t p = a && a->type == PIPPY_ATTR_INTS && a->n == x->rank ? a->ints[d] : x->rank - 1 - d;
        if (p < 0 || p >= x->rank)
            return pippy_fail(PIPPY_ERR_INVALID, "node '%s' (Transpose): bad perm", pippy_grad_fwd(c)->name);
        inv[p] = d;
    }
    pippy_attr at = {.name = "perm", .type = PIPPY_ATTR_INTS, .n = x->rank, .ints = inv};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "", "Transpose", 1, dy, &at, 1, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_expand_op(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_sum_to(c, dy[0], pippy_grad_type(c, pippy_grad_in(c, 0))));
    return PIPPY_OK;
}

static int32_t pippy_axis(pippy_grad_ctx *c, int32_t rank)
{
    int64_t a = pippy_grad_attr_int(c, "axis", 0);
    return (int32_t)(a < 0 ? a + rank : a);
}

static pippy_status pippy_grad_concat(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_node *n = pippy_grad_fwd(c);
    int32_t rank = pippy_grad_type(c, dy[0])->rank, axis = pippy_axis(c, rank), n_in = n->n_in;
    int64_t at = 0;
    for (int32_t i = 0; i < n_in && i < PIPPY_MAX_IO; i++) {
        int64_t len = pippy_grad_type(c, pippy_grad_in(c, i))->dims[axis];
        if (c->want[i]) {
            int64_t s = at, e = at + len, ax = axis;
            if (c->g->opset < 10) { /* Slice-1: starts, ends and axes are attributes */
                pippy_attr sa[3] = {{.name = "starts", .type = PIPPY_ATTR_INTS, .n = 1, .ints = &s},
                                    {.name = "ends", .type = PIPPY_ATTR_INTS, .n = 1, .ints = &e},
                                    {.name = "axes", .type = PIPPY_ATTR_INTS, .n = 1, .ints = &ax}};
                PIPPY_GRAD_TRY(dx[i] = pippy_grad_emit(c, "", "Slice", 1, dy, sa, 3, 1, NULL));
            } else {
                int32_t in[4] = {dy[0], pippy_grad_ints(c, 1, &s), pippy_grad_ints(c, 1, &e),
                                 pippy_grad_ints(c, 1, &ax)};
                for (int k = 1; k < 4; k++)
                    PIPPY_GRAD_TRY(in[k]);
                PIPPY_GRAD_TRY(dx[i] = pippy_grad_emit(c, "", "Slice", 4, in, NULL, 0, 1, NULL));
            }
        }
        at += len;
    }
    return PIPPY_OK;
}

static pippy_status pippy_grad_split(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    const pippy_node *n = pippy_grad_fwd(c);
    int32_t parts[PIPPY_MAX_IO], n_out = n->n_out < PIPPY_MAX_IO ? n->n_out : PIPPY_MAX_IO;
    const pippy_tdesc *x = pippy_grad_type(c, pippy_grad_in(c, 0));
    int32_t axis = pippy_axis(c, x->rank);
    for (int32_t o = 0; o < n_out; o++) {
        parts[o] = dy[o];
        if (parts[o] >= 0)
            continue;
        int32_t zero = pippy_grad_scalar(c, 0.0f);
        PIPPY_GRAD_TRY(zero);
        PIPPY_GRAD_TRY(parts[o] = pippy_grad_expand(c, zero, pippy_grad_type(c, pippy_grad_out(c, o))));
    }
    pippy_attr at = {.name = "axis", .type = PIPPY_ATTR_INT, .i = axis};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "", "Concat", n_out, parts, &at, 1, 1, NULL));
    return PIPPY_OK;
}

/* Slice's starts/ends/axes/steps: inputs 1..4 (opset >= 10) or attributes, as int64 lists. */
static int32_t pippy_slice_list(pippy_grad_ctx *c, int32_t input, const char *attr, int64_t *v)
{
    const pippy_node *n = pippy_grad_fwd(c);
    const pippy_attr *a = pippy_grad_attr(c, attr);
    if (a && a->type == PIPPY_ATTR_INTS) {
        if (a->n > PIPPY_MAX_RANK)
            return -1;
        for (int32_t i = 0; i < a->n; i++)
            v[i] = a->ints[i];
        return a->n;
    }
    if (input >= n->n_in || n->in[input] < 0)
        return 0;
    const pippy_value *x = &c->g->values[n->in[input]];
    int64_t cnt = pippy_tdesc_numel(&x->t);
    if (!x->data || cnt > PIPPY_MAX_RANK)
        return -1;
    for (int64_t i = 0; i < cnt; i++)
        v[i] = x->t.dtype == PIPPY_DT_INT32 ? ((const int32_t *)x->data)[i] : ((const int64_t *)x->data)[i];
    return (int32_t)cnt;
}

/* starts and ends clamped to [-(d+1), d+1] (d: the axis's length), which slices the same: ONNX clamps
 * them after adding d to negatives. The attributes then hold no extreme values (INT64_MIN, which
 * exports use for "to the start" with negative steps). */
static void pippy_slice_clamp(const pippy_tdesc *x, int64_t (*v)[PIPPY_MAX_RANK], const int32_t *cnt)
{
    for (int32_t i = 0; i < cnt[0] && i < cnt[1]; i++) {
        int64_t ax = i < cnt[2] ? v[2][i] : i;
        ax = ax < 0 ? ax + x->rank : ax;
        if (ax < 0 || ax >= x->rank)
            continue; /* the forward's shape rule refused it already */
        int64_t d = x->dims[ax];
        for (int32_t k = 0; k < 2; k++)
            v[k][i] = v[k][i] < -(d + 1) ? -(d + 1) : v[k][i] > d + 1 ? d + 1 : v[k][i];
    }
}

static pippy_status pippy_grad_slice(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    static const char *const names[4] = {"starts", "ends", "axes", "steps"};
    int64_t v[4][PIPPY_MAX_RANK];
    int32_t cnt[4];
    pippy_attr at[5];
    int32_t na = 0;
    pippy_tdesc x = *pippy_grad_type(c, pippy_grad_in(c, 0)); /* a copy: emitting moves the values */
    for (int32_t k = 0; k < 4; k++)
        if ((cnt[k] = pippy_slice_list(c, k + 1, names[k], v[k])) < 0)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s' (Slice): %s must be constant to differentiate",
                              pippy_grad_fwd(c)->name, names[k]);
    pippy_slice_clamp(&x, v, cnt);
    for (int32_t k = 0; k < 4; k++)
        if (cnt[k] > 0)
            at[na++] = (pippy_attr){.name = names[k], .type = PIPPY_ATTR_INTS, .n = cnt[k], .ints = v[k]};
    at[na++] = (pippy_attr){.name = "shape", .type = PIPPY_ATTR_INTS, .n = x.rank, .ints = x.dims};
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "SliceGrad", 1, dy, at, na, 1, NULL));
    return PIPPY_OK;
}

static pippy_status pippy_grad_gather(pippy_grad_ctx *c, const int32_t *dy, int32_t *dx)
{
    pippy_tdesc x = *pippy_grad_type(c, pippy_grad_in(c, 0)); /* a copy: emitting moves the values */
    pippy_attr at[3] = {{.name = "axis", .type = PIPPY_ATTR_INT, .i = pippy_grad_attr_int(c, "axis", 0)},
                        {.name = "shape", .type = PIPPY_ATTR_INTS, .n = x.rank, .ints = x.dims},
                        {.name = "pippy.padding_idx", .type = PIPPY_ATTR_INT,
                         .i = pippy_grad_attr_int(c, "pippy.padding_idx", 0)}};
    int32_t in[2] = {dy[0], pippy_grad_in(c, 1)};
    int n_at = pippy_grad_attr(c, "pippy.padding_idx") ? 3 : 2; /* --padding-idx */
    PIPPY_GRAD_TRY(dx[0] = pippy_grad_emit(c, "pippy", "GatherGrad", 2, in, at, n_at, 1, NULL));
    return PIPPY_OK;
}

const pippy_grad_rule pippy_grad_rules_shape[] = {
    {"Reshape", "", ~1u, pippy_grad_view},   {"Flatten", "", 0, pippy_grad_view},
    {"Squeeze", "", ~1u, pippy_grad_view},   {"Unsqueeze", "", ~1u, pippy_grad_view},
    {"Transpose", "", 0, pippy_grad_transpose}, {"Expand", "", ~1u, pippy_grad_expand_op},
    {"Concat", "", 0, pippy_grad_concat},    {"Split", "", ~1u, pippy_grad_split},
    {"Slice", "", ~1u, pippy_grad_slice},    {"Gather", "", ~1u, pippy_grad_gather},
    {0},
};
