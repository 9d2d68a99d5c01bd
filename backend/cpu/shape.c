/* shape.c — ops that move, select or make data without arithmetic: Reshape, Flatten,
 * Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Gather, GatherElements, GatherND, Expand, Tile,
 * Trilu, Shape,
 * Size, Constant, ConstantOfShape, Range, Cast, CastLike, and pippy::PipeSplit (the split
 * point marker: an identity).
 *
 * Everything but Cast and Range works on any fixed-size dtype by element size, so the
 * compiler can fold int64 shape arithmetic (Shape -> Gather -> Unsqueeze -> Concat ->
 * Reshape) by running these kernels. Inputs that decide an output's SHAPE (Reshape's shape,
 * Expand's shape, Slice's starts/ends/axes/steps, Split's split, Squeeze/Unsqueeze axes,
 * Tile's repeats, ConstantOfShape's shape, Range's start/limit/delta) must be known when
 * compiling (desc->in_const); inputs that only decide VALUES (Gather's indices, Trilu's k,
 * Range's start/delta) are read at run time.
 *
 * Transpose, Expand, Tile and Slice share one strided-copy plan, collapsed at create (size-1
 * dims dropped, contiguous neighbours merged, memcpy for contiguous rows); desc->reference = 1
 * walks it one element at a time instead. The memcpy loops of Concat, Split and Gather are
 * their own reference, and so is GatherElements' one loop over the output (an odometer over the
 * indices' shape). GatherElements: indices of the data's rank, each dim at most the data's
 * (other than along axis); negative indices count from the end, out of range gives zeros.
 * Conformance: test_gather_elements_0, _1 and _negative_indices pass. GatherND (batch_dims b):
 * each tuple of the indices' last dim picks a slice within its batch; negative indices count from
 * the end, one out of range is an error (its slice zeroed); the reference is its own loop. */
#include "shape.h"

#include "backend.h"
#include "cast.h"
#include "checked.h"
#include "light.h"
#include "walk.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---- */

static void s_strides(const pippy_tdesc *t, int64_t *str)
{
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
        str[i] = s;
        s *= t->dims[i];
    }
}

static pippy_status s_check_io(const pippy_op_desc *d, int in_lo, int in_hi, int n_out)
{
    if (d->n_in < in_lo || d->n_in > in_hi) {
        if (in_lo == in_hi)
            return pippy_fail(PIPPY_ERR_INVALID, "expected %d input%s, found %d", in_lo, in_lo == 1 ? "" : "s",
                              d->n_in);
        return pippy_fail(PIPPY_ERR_INVALID, "expected %d to %d inputs, found %d", in_lo, in_hi, d->n_in);
    }
    for (int i = 0; i < in_lo; i++)
        if (d->in[i].dtype == PIPPY_DT_UNDEFINED)
            return pippy_fail(PIPPY_ERR_INVALID, "input %d is missing", i);
    if (n_out > 0 && d->n_out != n_out)
        return pippy_fail(PIPPY_ERR_INVALID, "expected %d output%s, found %d", n_out, n_out == 1 ? "" : "s",
                          d->n_out);
    for (int i = 0; i < d->n_in; i++)
        if (d->in[i].dtype != PIPPY_DT_UNDEFINED && pippy_dtype_size(d->in[i].dtype) == 0)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "input %d has dtype %s, which pippyc does not handle", i,
                              pippy_dtype_name(d->in[i].dtype));
    return PIPPY_OK;
}

static int s_has_input(const pippy_op_desc *d, int i)
{
    return i < d->n_in && d->in[i].dtype != PIPPY_DT_UNDEFINED;
}

/* A compile-time constant int list from input i, with the input's role in the message. */
static pippy_status s_const_ints(const pippy_op_desc *d, int i, const char *what, int64_t *v, int32_t cap,
                                 int32_t *n)
{
    if (pippy_tdesc_numel(&d->in[i]) == 0) { /* empty: no data needed */
        *n = 0;
        return PIPPY_OK;
    }
    pippy_status st = pippy_const_ints(d, i, v, cap, n);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "%s", what);
    return PIPPY_OK;
}

/* Axes from input i (if present) or else attribute "axes"; *n = -1 when neither is given. */
static pippy_status s_axes(const pippy_op_desc *d, int i, int64_t *v, int32_t *n)
{
    if (s_has_input(d, i))
        return s_const_ints(d, i, "axes", v, PIPPY_MAX_RANK, n);
    const int64_t *a;
    int na = pippy_attr_ints(d, "axes", &a);
    if (na > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%d axes given, at most %d handled", na, PIPPY_MAX_RANK);
    for (int j = 0; j < na; j++)
        v[j] = a[j];
    *n = na;
    return PIPPY_OK;
}

static double s_no_flops(const pippy_op_desc *d)
{
    (void)d;
    return 0;
}

/* ---- strided copy: out (contiguous) [i...] = in[base + sum(i_k * str_k)] ---- */

#define S_MAX_RANK PIPPY_WALK_MAX_RANK

typedef struct {
    int32_t rank;
    int64_t dims[S_MAX_RANK];
    int64_t str[S_MAX_RANK]; /* input element strides; 0 repeats, negative walks back */
    int64_t base;            /* input element offset of output element 0 */
    int64_t n;
    size_t esize;
} s_plan;

/* Drop size-1 dims, merge neighbours that stay contiguous. */
static void s_plan_collapse(s_plan *p)
{
    p->rank = pippy_walk_collapse(p->rank, p->dims, 1, (int64_t *[1]){p->str}, 1);
}

#define S_ROW_COPY(T)                            \
    do {                                         \
        const T *x_ = (const T *)src;            \
        T *y_ = (T *)dst;                        \
        for (int64_t i = 0; i < inner; i++)      \
            y_[i] = x_[i * s];                   \
    } while (0)

static void s_plan_run(const s_plan *p, const void *in, void *out)
{
    if (p->n == 0)
        return;
    int r = p->rank;
    int64_t inner = p->dims[r - 1], s = p->str[r - 1], rows = p->n / inner, off = p->base;
    int64_t idx[S_MAX_RANK] = {0};
    size_t es = p->esize;
    char *dst = out;
    for (int64_t row = 0; row < rows; row++) {
        const char *src = (const char *)in + off * (int64_t)es;
        if (s == 1)
            memcpy(dst, src, (size_t)inner * es);
        else if (es == 1)
            S_ROW_COPY(uint8_t);
        else if (es == 2)
            S_ROW_COPY(uint16_t);
        else if (es == 4)
            S_ROW_COPY(uint32_t);
        else if (es == 8)
            S_ROW_COPY(uint64_t);
        else
            for (int64_t i = 0; i < inner; i++)
                memcpy(dst + (size_t)i * es, src + i * s * (int64_t)es, es);
        dst += (size_t)inner * es;
        PIPPY_WALK_NEXT(r, p->dims, p->str, idx, off);
    }
}

static void s_plan_run_ref(const s_plan *p, const void *in, void *out)
{
    for (int64_t i = 0; i < p->n; i++) {
        int64_t rem = i, off = p->base;
        for (int d = p->rank - 1; d >= 0; d--) {
            off += (rem % p->dims[d]) * p->str[d];
            rem /= p->dims[d];
        }
        memcpy((char *)out + (size_t)i * p->esize, (const char *)in + off * (int64_t)p->esize, p->esize);
    }
}

typedef struct {
    pippy_kernel base;
    s_plan plan;
} s_strided_kernel;

static void s_strided_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_plan_run(&((s_strided_kernel *)kb)->plan, in[0], out[0]);
}

static void s_strided_run_ref(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_plan_run_ref(&((s_strided_kernel *)kb)->plan, in[0], out[0]);
}

/* A kernel for a plan whose dims/str/base the caller filled (uncollapsed). */
static pippy_status s_strided_create(const pippy_op_desc *d, s_plan *p, pippy_kernel **out)
{
    s_strided_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    p->esize = pippy_dtype_size(d->in[0].dtype);
    p->n = 1;
    for (int i = 0; i < p->rank; i++)
        p->n *= p->dims[i];
    k->plan = *p;
    if (d->reference) {
        k->base.run = s_strided_run_ref;
    } else {
        k->base.run = s_strided_run;
        s_plan_collapse(&k->plan);
    }
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- plain copy: Reshape, Flatten, Squeeze, Unsqueeze, PipeSplit ---- */

typedef struct {
    pippy_kernel base;
    size_t bytes;
} s_copy_kernel;

static void s_copy_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    size_t n = ((s_copy_kernel *)kb)->bytes;
    if (n && out[0] != in[0])
        memcpy(out[0], in[0], n);
}

static pippy_status s_copy_create(const pippy_op_desc *d, pippy_kernel **out)
{
    s_copy_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_copy_run;
    k->bytes = pippy_tdesc_bytes(&d->in[0]);
    *out = &k->base;
    return PIPPY_OK;
}

static pippy_status s_identity_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    d->out[0] = d->in[0];
    return PIPPY_OK;
}

/* ---- Reshape ---- */

static pippy_status s_reshape_infer(pippy_op_desc *d)
{
    int64_t shape[PIPPY_MAX_RANK];
    int32_t n;
    const pippy_tdesc *x = &d->in[0];
    if (d->opset > 0 && d->opset < 5) {
        PIPPY_TRY(s_check_io(d, 1, 1, 1));
        const int64_t *a;
        n = pippy_attr_ints(d, "shape", &a);
        if (n < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "Reshape before opset 5 needs the 'shape' attribute");
        if (n > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "target rank %d is above %d", n, PIPPY_MAX_RANK);
        memcpy(shape, a, (size_t)n * sizeof *a);
    } else {
        PIPPY_TRY(s_check_io(d, 2, 2, 1));
        if (d->in[1].rank != 1)
            return pippy_fail(PIPPY_ERR_INVALID, "shape must be a 1-D tensor, found rank %d", d->in[1].rank);
        PIPPY_TRY(s_const_ints(d, 1, "Reshape's shape", shape, PIPPY_MAX_RANK, &n));
    }
    int allowzero = (int)pippy_attr_int(d, "allowzero", 0);
    pippy_tdesc y = {.dtype = x->dtype, .rank = n};
    int infer_at = -1;
    int64_t known = 1;
    char sx[160], ss[160];
    for (int i = 0; i < n; i++) {
        int64_t v = shape[i];
        if (v == 0 && !allowzero) {
            if (i >= x->rank)
                return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s to %s: 0 at position %d copies a dim the input lacks",
                                  pippy_tdesc_str(x, sx, sizeof sx), pippy_ints_str(shape, n, ss, sizeof ss), i);
            v = x->dims[i];
        } else if (v == -1) {
            if (infer_at >= 0)
                return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s to %s: more than one -1",
                                  pippy_tdesc_str(x, sx, sizeof sx), pippy_ints_str(shape, n, ss, sizeof ss));
            infer_at = i;
            continue;
        } else if (v < 0) {
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s to %s: negative dim %lld",
                              pippy_tdesc_str(x, sx, sizeof sx), pippy_ints_str(shape, n, ss, sizeof ss), (long long)v);
        }
        y.dims[i] = v;
        if (pippy_mul_i64(known, v, &known))
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s to %s: the element count overflows",
                              pippy_tdesc_str(x, sx, sizeof sx), pippy_ints_str(shape, n, ss, sizeof ss));
    }
    int64_t numel = pippy_tdesc_numel(x);
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0)
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s: %lld is not a multiple of %lld",
                              pippy_tdesc_str(x, sx, sizeof sx), (long long)numel, pippy_ints_str(shape, n, ss, sizeof ss),
                              (long long)numel, (long long)known);
        y.dims[infer_at] = numel / known;
        known = numel;
    }
    if (known != numel)
        return pippy_fail(PIPPY_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                          pippy_tdesc_str(x, sx, sizeof sx), (long long)numel, pippy_ints_str(shape, n, ss, sizeof ss),
                          (long long)known);
    d->out[0] = y;
    return PIPPY_OK;
}

/* ---- Flatten ---- */

static pippy_status s_flatten_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    const pippy_tdesc *x = &d->in[0];
    int64_t axis = pippy_attr_int(d, "axis", 1);
    if (axis < -x->rank || axis > x->rank)
        return pippy_fail(PIPPY_ERR_INVALID, "axis %lld is out of range [%d, %d]", (long long)axis, -x->rank, x->rank);
    if (axis < 0)
        axis += x->rank;
    pippy_tdesc y = {.dtype = x->dtype, .rank = 2, .dims = {1, 1}};
    for (int i = 0; i < x->rank; i++)
        y.dims[i < axis ? 0 : 1] *= x->dims[i];
    d->out[0] = y;
    return PIPPY_OK;
}

/* ---- Squeeze / Unsqueeze ---- */

static pippy_status s_squeeze_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 2, 1));
    const pippy_tdesc *x = &d->in[0];
    int64_t axes[PIPPY_MAX_RANK];
    int32_t n;
    int drop[PIPPY_MAX_RANK] = {0};
    PIPPY_TRY(s_axes(d, 1, axes, &n));
    if (n <= 0) {
        for (int i = 0; i < x->rank; i++)
            drop[i] = x->dims[i] == 1;
    } else {
        for (int i = 0; i < n; i++) {
            int32_t a;
            PIPPY_TRY(pippy_norm_axis(d, axes[i], x->rank, &a));
            if (x->dims[a] != 1) {
                char sx[160];
                return pippy_fail(PIPPY_ERR_SHAPE, "cannot squeeze axis %lld of %s: its size is %lld, expected 1",
                                  (long long)axes[i], pippy_tdesc_str(x, sx, sizeof sx), (long long)x->dims[a]);
            }
            drop[a] = 1;
        }
    }
    pippy_tdesc y = {.dtype = x->dtype, .rank = 0};
    for (int i = 0; i < x->rank; i++)
        if (!drop[i])
            y.dims[y.rank++] = x->dims[i];
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_unsqueeze_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 2, 1));
    const pippy_tdesc *x = &d->in[0];
    int64_t axes[PIPPY_MAX_RANK];
    int32_t n;
    PIPPY_TRY(s_axes(d, 1, axes, &n));
    if (n <= 0)
        return pippy_fail(PIPPY_ERR_INVALID, "Unsqueeze needs axes (attribute before opset 13, input from 13)");
    int r = x->rank + n;
    if (r > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "output rank %d is above %d", r, PIPPY_MAX_RANK);
    int ins[PIPPY_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int32_t a;
        PIPPY_TRY(pippy_norm_axis(d, axes[i], r, &a));
        if (ins[a])
            return pippy_fail(PIPPY_ERR_INVALID, "axis %lld is given twice", (long long)axes[i]);
        ins[a] = 1;
    }
    pippy_tdesc y = {.dtype = x->dtype, .rank = r};
    for (int i = 0, j = 0; i < r; i++)
        y.dims[i] = ins[i] ? 1 : x->dims[j++];
    d->out[0] = y;
    return PIPPY_OK;
}

/* ---- Transpose ---- */

static pippy_status s_perm(const pippy_op_desc *d, int32_t *perm)
{
    int r = d->in[0].rank;
    const int64_t *p;
    int n = pippy_attr_ints(d, "perm", &p);
    if (n < 0) {
        for (int i = 0; i < r; i++)
            perm[i] = r - 1 - i;
        return PIPPY_OK;
    }
    if (n != r)
        return pippy_fail(PIPPY_ERR_INVALID, "perm has %d entries, expected %d (the input rank)", n, r);
    int seen[PIPPY_MAX_RANK] = {0};
    for (int i = 0; i < r; i++) {
        if (p[i] < 0 || p[i] >= r || seen[p[i]])
            return pippy_fail(PIPPY_ERR_INVALID, "perm is not a permutation of 0..%d", r - 1);
        seen[p[i]] = 1;
        perm[i] = (int32_t)p[i];
    }
    return PIPPY_OK;
}

static pippy_status s_transpose_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    int32_t perm[PIPPY_MAX_RANK];
    PIPPY_TRY(s_perm(d, perm));
    const pippy_tdesc *x = &d->in[0];
    pippy_tdesc y = {.dtype = x->dtype, .rank = x->rank};
    for (int i = 0; i < x->rank; i++)
        y.dims[i] = x->dims[perm[i]];
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_transpose_plan(const pippy_op_desc *d, s_plan *p)
{
    int32_t perm[PIPPY_MAX_RANK];
    int64_t istr[PIPPY_MAX_RANK];
    PIPPY_TRY(s_perm(d, perm));
    s_strides(&d->in[0], istr);
    *p = (s_plan){.rank = d->in[0].rank};
    for (int i = 0; i < p->rank; i++) {
        p->dims[i] = d->in[0].dims[perm[i]];
        p->str[i] = istr[perm[i]];
    }
    return PIPPY_OK;
}

/* ---- Expand ---- */

static pippy_status s_expand_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 2, 2, 1));
    if (d->in[1].rank != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "shape must be a 1-D tensor, found rank %d", d->in[1].rank);
    int64_t shape[PIPPY_MAX_RANK];
    int32_t n;
    PIPPY_TRY(s_const_ints(d, 1, "Expand's shape", shape, PIPPY_MAX_RANK, &n));
    pippy_tdesc want = {.dtype = d->in[0].dtype, .rank = n};
    for (int i = 0; i < n; i++)
        want.dims[i] = shape[i];
    pippy_tdesc y;
    PIPPY_TRY(pippy_broadcast_shape(d, &d->in[0], &want, &y));
    y.dtype = d->in[0].dtype;
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_expand_plan(const pippy_op_desc *d, s_plan *p)
{
    const pippy_tdesc *x = &d->in[0], *y = &d->out[0];
    int64_t istr[PIPPY_MAX_RANK];
    s_strides(x, istr);
    *p = (s_plan){.rank = y->rank};
    for (int i = 0; i < y->rank; i++) {
        int xi = i - (y->rank - x->rank);
        p->dims[i] = y->dims[i];
        p->str[i] = xi >= 0 && x->dims[xi] != 1 ? istr[xi] : 0;
    }
    return PIPPY_OK;
}

/* ---- Tile ---- */

static pippy_status s_tile_repeats(const pippy_op_desc *d, int64_t *rep)
{
    int32_t n;
    PIPPY_TRY(s_const_ints(d, 1, "Tile's repeats", rep, PIPPY_MAX_RANK, &n));
    if (n != d->in[0].rank)
        return pippy_fail(PIPPY_ERR_INVALID, "repeats has %d values, expected %d (the input rank)", n, d->in[0].rank);
    for (int i = 0; i < n; i++)
        if (rep[i] < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "repeats[%d] is %lld, expected >= 0", i, (long long)rep[i]);
    return PIPPY_OK;
}

static pippy_status s_tile_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 2, 2, 1));
    int64_t rep[PIPPY_MAX_RANK];
    PIPPY_TRY(s_tile_repeats(d, rep));
    pippy_tdesc y = d->in[0];
    for (int i = 0; i < y.rank; i++)
        if (pippy_mul_i64(y.dims[i], rep[i], &y.dims[i]))
            return pippy_fail(PIPPY_ERR_SHAPE, "repeats[%d] = %lld times dim %lld overflows", i, (long long)rep[i],
                              (long long)d->in[0].dims[i]);
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_tile_plan(const pippy_op_desc *d, s_plan *p)
{
    int64_t rep[PIPPY_MAX_RANK], istr[PIPPY_MAX_RANK];
    PIPPY_TRY(s_tile_repeats(d, rep));
    s_strides(&d->in[0], istr);
    /* output axis i of size rep*dim walks as [rep, dim] with strides [0, stride] */
    *p = (s_plan){.rank = 2 * d->in[0].rank};
    for (int i = 0; i < d->in[0].rank; i++) {
        p->dims[2 * i] = rep[i];
        p->str[2 * i] = 0;
        p->dims[2 * i + 1] = d->in[0].dims[i];
        p->str[2 * i + 1] = istr[i];
    }
    return PIPPY_OK;
}

/* ---- Slice ---- */

pippy_status pippy_slice_resolve(const pippy_op_desc *d, const pippy_tdesc *x, int n, const int64_t *starts,
                                 const int64_t *ends, const int64_t *axes, const int64_t *steps, pippy_slice *sl)
{
    int seen[PIPPY_MAX_RANK] = {0};
    for (int i = 0; i < x->rank; i++) {
        sl->start[i] = 0;
        sl->step[i] = 1;
        sl->count[i] = x->dims[i];
    }
    for (int i = 0; i < n; i++) {
        int32_t a = i;
        if (axes)
            PIPPY_TRY(pippy_norm_axis(d, axes[i], x->rank, &a));
        else if (i >= x->rank)
            return pippy_fail(PIPPY_ERR_INVALID, "%d starts given for a rank-%d input", n, x->rank);
        if (seen[a])
            return pippy_fail(PIPPY_ERR_INVALID, "axis %d is sliced twice", a);
        seen[a] = 1;
        int64_t dim = x->dims[a], step = steps ? steps[i] : 1, s = starts[i], e = ends[i];
        if (step == 0)
            return pippy_fail(PIPPY_ERR_INVALID, "step for axis %d is 0", a);
        if (s < 0)
            s += dim;
        if (e < 0)
            e += dim;
        int64_t count;
        if (dim == 0) {
            s = 0;
            count = 0;
        } else if (step > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            count = e > s ? (e - s - 1) / step + 1 : 0; /* e - s <= dim: no overflow for any step */
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            uint64_t back = (uint64_t)0 - (uint64_t)step; /* -step, also for INT64_MIN */
            count = s > e ? (int64_t)((uint64_t)(s - e - 1) / back) + 1 : 0;
        }
        sl->start[a] = count > 0 ? s : 0;
        sl->step[a] = count > 1 ? step : 1; /* a step that is never taken does not scale strides */
        sl->count[a] = count;
    }
    return PIPPY_OK;
}

/* Slice's starts, ends, axes and steps from the attributes (before opset 10) or the inputs. */
static pippy_status s_slice_params(const pippy_op_desc *d, pippy_slice *sl)
{
    int64_t starts[PIPPY_MAX_RANK], ends[PIPPY_MAX_RANK], axes[PIPPY_MAX_RANK], steps[PIPPY_MAX_RANK];
    int32_t ns, ne, na = -1, nst = -1;
    if (d->opset > 0 && d->opset < 10) {
        const int64_t *a;
        ns = pippy_attr_ints(d, "starts", &a);
        if (ns < 0 || ns > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_INVALID, "Slice before opset 10 needs 'starts' (at most %d values)", PIPPY_MAX_RANK);
        memcpy(starts, a, (size_t)ns * sizeof *a);
        ne = pippy_attr_ints(d, "ends", &a);
        if (ne < 0 || ne > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_INVALID, "Slice before opset 10 needs 'ends' (at most %d values)", PIPPY_MAX_RANK);
        memcpy(ends, a, (size_t)ne * sizeof *a);
        na = pippy_attr_ints(d, "axes", &a);
        if (na > PIPPY_MAX_RANK)
            return pippy_fail(PIPPY_ERR_INVALID, "%d axes given, at most %d handled", na, PIPPY_MAX_RANK);
        if (na > 0)
            memcpy(axes, a, (size_t)na * sizeof *a);
    } else {
        PIPPY_TRY(s_const_ints(d, 1, "Slice's starts", starts, PIPPY_MAX_RANK, &ns));
        PIPPY_TRY(s_const_ints(d, 2, "Slice's ends", ends, PIPPY_MAX_RANK, &ne));
        if (s_has_input(d, 3))
            PIPPY_TRY(s_const_ints(d, 3, "Slice's axes", axes, PIPPY_MAX_RANK, &na));
        if (s_has_input(d, 4))
            PIPPY_TRY(s_const_ints(d, 4, "Slice's steps", steps, PIPPY_MAX_RANK, &nst));
    }
    if (ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return pippy_fail(PIPPY_ERR_INVALID, "starts, ends, axes and steps must have the same length (%d, %d, %d, %d)",
                          ns, ne, na, nst);
    return pippy_slice_resolve(d, &d->in[0], ns, starts, ends, na >= 0 ? axes : NULL, nst >= 0 ? steps : NULL, sl);
}

static pippy_status s_slice_infer(pippy_op_desc *d)
{
    if (d->opset > 0 && d->opset < 10)
        PIPPY_TRY(s_check_io(d, 1, 1, 1));
    else
        PIPPY_TRY(s_check_io(d, 3, 5, 1));
    pippy_slice sl;
    PIPPY_TRY(s_slice_params(d, &sl));
    pippy_tdesc y = d->in[0];
    for (int i = 0; i < y.rank; i++)
        y.dims[i] = sl.count[i];
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_slice_plan(const pippy_op_desc *d, s_plan *p)
{
    pippy_slice sl;
    int64_t istr[PIPPY_MAX_RANK];
    PIPPY_TRY(s_slice_params(d, &sl));
    s_strides(&d->in[0], istr);
    *p = (s_plan){.rank = d->in[0].rank};
    for (int i = 0; i < p->rank; i++) {
        p->dims[i] = sl.count[i];
        p->str[i] = istr[i] * sl.step[i];
        p->base += sl.start[i] * istr[i];
    }
    return PIPPY_OK;
}

/* ---- the walks of Transpose, Expand, Tile and Slice: their kernels, and light.h's plan ---- */

static pippy_status s_walk_plan(const pippy_op_desc *d, s_plan *p)
{
    if (!strcmp(d->op, "Transpose"))
        return s_transpose_plan(d, p);
    if (!strcmp(d->op, "Expand"))
        return s_expand_plan(d, p);
    if (!strcmp(d->op, "Tile"))
        return s_tile_plan(d, p);
    if (!strcmp(d->op, "Slice"))
        return s_slice_plan(d, p);
    return pippy_fail(PIPPY_ERR_INTERNAL, "%s is not a strided walk", d->op);
}

static pippy_status s_walk_create(const pippy_op_desc *d, pippy_kernel **out)
{
    s_plan p;
    PIPPY_TRY(s_walk_plan(d, &p));
    return s_strided_create(d, &p, out);
}

pippy_status pippy_shape_walk_of(const pippy_op_desc *d, pippy_walk_plan *w)
{
    s_plan p;
    PIPPY_TRY(s_walk_plan(d, &p));
    w->rank = p.rank;
    memcpy(w->dims, p.dims, sizeof w->dims);
    memcpy(w->str, p.str, sizeof w->str);
    w->base = p.base;
    return PIPPY_OK;
}

/* ---- Concat ---- */

pippy_status pippy_concat_axis_of(const pippy_op_desc *d, int32_t *axis)
{
    const pippy_attr *a = pippy_attr_find(d, "axis");
    if ((!a || a->type != PIPPY_ATTR_INT) && !(d->opset > 0 && d->opset < 4))
        return pippy_fail(PIPPY_ERR_INVALID, "Concat needs the integer attribute 'axis'");
    return pippy_norm_axis(d, a && a->type == PIPPY_ATTR_INT ? a->i : 1, d->in[0].rank, axis);
}

typedef struct {
    pippy_kernel base;
    int n_in;
    int64_t outer;
    size_t chunk[PIPPY_MAX_IO]; /* bytes each input contributes per outer index */
} s_concat_kernel;

static pippy_status s_concat_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, PIPPY_MAX_IO, 1));
    const pippy_tdesc *x = &d->in[0];
    if (x->rank == 0)
        return pippy_fail(PIPPY_ERR_INVALID, "Concat of scalars (rank 0) is not defined");
    int32_t axis;
    PIPPY_TRY(pippy_concat_axis_of(d, &axis));
    pippy_tdesc y = *x;
    y.dims[axis] = 0;
    for (int i = 0; i < d->n_in; i++) {
        const pippy_tdesc *t = &d->in[i];
        char s0[160], si[160];
        if (t->dtype == PIPPY_DT_UNDEFINED)
            return pippy_fail(PIPPY_ERR_INVALID, "input %d is missing", i);
        if (t->dtype != x->dtype)
            return pippy_fail(PIPPY_ERR_INVALID, "input %d is %s, expected %s like input 0", i,
                              pippy_dtype_name(t->dtype), pippy_dtype_name(x->dtype));
        int ok = t->rank == x->rank;
        for (int a = 0; ok && a < x->rank; a++)
            ok = a == axis || t->dims[a] == x->dims[a];
        if (!ok)
            return pippy_fail(PIPPY_ERR_SHAPE, "input %d %s does not match input 0 %s outside axis %d", i,
                              pippy_tdesc_str(t, si, sizeof si), pippy_tdesc_str(x, s0, sizeof s0), axis);
        y.dims[axis] += t->dims[axis];
    }
    d->out[0] = y;
    return PIPPY_OK;
}

static void s_concat_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_concat_kernel *k = (s_concat_kernel *)kb;
    char *y = out[0];
    for (int64_t o = 0; o < k->outer; o++)
        for (int i = 0; i < k->n_in; i++) {
            if (k->chunk[i])
                memcpy(y, (const char *)in[i] + (size_t)o * k->chunk[i], k->chunk[i]);
            y += k->chunk[i];
        }
}

/* Concat and Split share the geometry: outer count and per-part chunk sizes along axis. */
static void s_parts(const pippy_tdesc *whole, int axis, int n, const pippy_tdesc *parts, int64_t *outer,
                    size_t *chunk)
{
    int64_t inner = 1;
    *outer = 1;
    for (int a = 0; a < axis; a++)
        *outer *= whole->dims[a];
    for (int a = axis + 1; a < whole->rank; a++)
        inner *= whole->dims[a];
    for (int i = 0; i < n; i++)
        chunk[i] = (size_t)(parts[i].dims[axis] * inner) * pippy_dtype_size(whole->dtype);
}

static pippy_status s_concat_create(const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t axis;
    PIPPY_TRY(pippy_concat_axis_of(d, &axis));
    s_concat_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_concat_run;
    k->n_in = d->n_in;
    s_parts(&d->out[0], axis, d->n_in, d->in, &k->outer, k->chunk);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- Split ---- */

typedef s_concat_kernel s_split_kernel;

pippy_status pippy_split_sizes_of(const pippy_op_desc *d, int32_t *axis, int64_t *sizes)
{
    const pippy_tdesc *x = &d->in[0];
    if (x->rank == 0)
        return pippy_fail(PIPPY_ERR_INVALID, "Split of a scalar (rank 0) is not defined");
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, axis));
    int64_t dim = x->dims[*axis];
    int32_t n = -1;
    if (s_has_input(d, 1)) {
        PIPPY_TRY(s_const_ints(d, 1, "Split's split", sizes, PIPPY_MAX_IO, &n));
    } else {
        const int64_t *a;
        int na = pippy_attr_ints(d, "split", &a);
        if (na > PIPPY_MAX_IO)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%d parts, at most %d handled", na, PIPPY_MAX_IO);
        for (int i = 0; i < na; i++)
            sizes[i] = a[i];
        n = na;
    }
    if (n < 0) {
        int64_t parts = pippy_attr_int(d, "num_outputs", -1);
        if (parts >= 0 && parts != d->n_out)
            return pippy_fail(PIPPY_ERR_INVALID, "num_outputs is %lld but the node has %d outputs", (long long)parts,
                              d->n_out);
        n = d->n_out;
        if (parts < 0 && dim % n != 0)
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot split %lld into %d equal parts", (long long)dim, n);
        int64_t chunk = (dim + n - 1) / n; /* opset 18: the last part may be smaller */
        for (int i = 0; i < n; i++)
            sizes[i] = i < n - 1 ? chunk : dim - chunk * (n - 1);
        if (sizes[n - 1] < 0)
            return pippy_fail(PIPPY_ERR_SHAPE, "cannot split %lld into %d parts of %lld", (long long)dim, n,
                              (long long)chunk);
    }
    if (n != d->n_out)
        return pippy_fail(PIPPY_ERR_INVALID, "split has %d values but the node has %d outputs", n, d->n_out);
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (sizes[i] < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "split[%d] is %lld, expected >= 0", i, (long long)sizes[i]);
        if (pippy_add_i64(total, sizes[i], &total))
            return pippy_fail(PIPPY_ERR_SHAPE, "split sizes overflow when summed (axis %d)", *axis);
    }
    if (total != dim) {
        char s[160];
        return pippy_fail(PIPPY_ERR_SHAPE, "split %s sums to %lld, expected %lld (axis %d)", pippy_ints_str(sizes, n, s, sizeof s),
                          (long long)total, (long long)dim, *axis);
    }
    return PIPPY_OK;
}

static pippy_status s_split_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 2, 0));
    if (d->n_out < 1)
        return pippy_fail(PIPPY_ERR_INVALID, "expected at least 1 output, found %d", d->n_out);
    int32_t axis;
    int64_t sizes[PIPPY_MAX_IO];
    PIPPY_TRY(pippy_split_sizes_of(d, &axis, sizes));
    for (int i = 0; i < d->n_out; i++) {
        d->out[i] = d->in[0];
        d->out[i].dims[axis] = sizes[i];
    }
    return PIPPY_OK;
}

static void s_split_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_split_kernel *k = (s_split_kernel *)kb;
    const char *x = in[0];
    for (int64_t o = 0; o < k->outer; o++)
        for (int i = 0; i < k->n_in; i++) {
            if (k->chunk[i])
                memcpy((char *)out[i] + (size_t)o * k->chunk[i], x, k->chunk[i]);
            x += k->chunk[i];
        }
}

static pippy_status s_split_create(const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t axis;
    int64_t sizes[PIPPY_MAX_IO];
    PIPPY_TRY(pippy_split_sizes_of(d, &axis, sizes));
    s_split_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_split_run;
    k->n_in = d->n_out; /* the parts */
    s_parts(&d->in[0], axis, d->n_out, d->out, &k->outer, k->chunk);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- Gather ---- */

static pippy_status s_want_indices(const pippy_tdesc *ix)
{
    if (ix->dtype != PIPPY_DT_INT64 && ix->dtype != PIPPY_DT_INT32)
        return pippy_fail(PIPPY_ERR_INVALID, "indices must be int64 or int32, found %s", pippy_dtype_name(ix->dtype));
    return PIPPY_OK;
}

typedef struct {
    pippy_kernel base;
    int64_t outer, axis_dim, n_idx;
    size_t row; /* bytes per gathered slice */
    int idx64;
    char node[128]; /* for the run-time error */
} s_gather_kernel;

static pippy_status s_gather_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 2, 2, 1));
    const pippy_tdesc *x = &d->in[0], *ix = &d->in[1];
    PIPPY_TRY(s_want_indices(ix));
    if (x->rank == 0)
        return pippy_fail(PIPPY_ERR_INVALID, "Gather from a scalar (rank 0) is not defined");
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, &axis));
    int r = x->rank - 1 + ix->rank;
    if (r > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "output rank %d is above %d", r, PIPPY_MAX_RANK);
    pippy_tdesc y = {.dtype = x->dtype, .rank = r};
    int k = 0;
    for (int i = 0; i < axis; i++)
        y.dims[k++] = x->dims[i];
    for (int i = 0; i < ix->rank; i++)
        y.dims[k++] = ix->dims[i];
    for (int i = axis + 1; i < x->rank; i++)
        y.dims[k++] = x->dims[i];
    d->out[0] = y;
    return PIPPY_OK;
}

/* Negative indices count from the end. An index still out of range is an error (ONNX says so):
 * its slice is zeroed and the error recorded with pippy_run_fail for the caller to report. */
static void s_gather_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_gather_kernel *k = (s_gather_kernel *)kb;
    const char *x = in[0];
    char *y = out[0];
    for (int64_t o = 0; o < k->outer; o++) {
        const char *xo = x + (size_t)(o * k->axis_dim) * k->row;
        for (int64_t j = 0; j < k->n_idx; j++) {
            int64_t i = k->idx64 ? ((const int64_t *)in[1])[j] : ((const int32_t *)in[1])[j], given = i;
            if (i < 0)
                i += k->axis_dim;
            if (i >= 0 && i < k->axis_dim) {
                memcpy(y, xo + (size_t)i * k->row, k->row);
            } else {
                memset(y, 0, k->row);
                pippy_run_fail("node '%s' (Gather): index %lld (at position %lld of the indices) is out of range "
                               "for an axis of size %lld",
                               k->node, (long long)given, (long long)j, (long long)k->axis_dim);
            }
            y += k->row;
        }
    }
}

static pippy_status s_gather_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const pippy_tdesc *x = &d->in[0];
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, &axis));
    s_gather_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_gather_run;
    k->outer = 1;
    for (int i = 0; i < axis; i++)
        k->outer *= x->dims[i];
    int64_t inner = 1;
    for (int i = axis + 1; i < x->rank; i++)
        inner *= x->dims[i];
    k->axis_dim = x->dims[axis];
    k->n_idx = pippy_tdesc_numel(&d->in[1]);
    k->row = (size_t)inner * pippy_dtype_size(x->dtype);
    k->idx64 = d->in[1].dtype == PIPPY_DT_INT64;
    snprintf(k->node, sizeof k->node, "%s", d->name ? d->name : "");
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- GatherND ---- */

/* data [r dims], indices [q dims, last k], batch_dims b: each k-tuple picks the slice
 * data[batch..., i_0, ..., i_{k-1}, :] (the batch coordinates shared with indices' first b dims). */
typedef struct {
    pippy_kernel base;
    int k, idx64;
    int64_t n_pos, per_batch, batch_rows; /* tuples; tuples per batch; rows per batch of data */
    int64_t dims[PIPPY_MAX_RANK], str[PIPPY_MAX_RANK]; /* the k indexed dims, their strides in rows */
    size_t row;                                        /* bytes of one picked slice */
    char node[128];
} s_gather_nd_kernel;

static pippy_status s_gather_nd_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 2, 2, 1));
    const pippy_tdesc *x = &d->in[0], *ix = &d->in[1];
    PIPPY_TRY(s_want_indices(ix));
    int64_t b = pippy_attr_int(d, "batch_dims", 0);
    if (x->rank < 1 || ix->rank < 1 || b < 0 || b >= x->rank || b >= ix->rank)
        return pippy_fail(PIPPY_ERR_INVALID, "data of rank %d, indices of rank %d and batch_dims %lld: needs ranks >= 1 "
                          "and batch_dims below both", x->rank, ix->rank, (long long)b);
    int64_t k = ix->dims[ix->rank - 1];
    if (k < 1 || k > x->rank - b)
        return pippy_fail(PIPPY_ERR_SHAPE, "indices' last dim is %lld: it must be 1..%lld (data rank %d - batch_dims %lld)",
                          (long long)k, (long long)(x->rank - b), x->rank, (long long)b);
    for (int i = 0; i < b; i++)
        if (x->dims[i] != ix->dims[i])
            return pippy_fail(PIPPY_ERR_SHAPE, "batch dim %d: data has %lld, indices %lld", i, (long long)x->dims[i],
                              (long long)ix->dims[i]);
    int r = ix->rank - 1 + x->rank - (int)(b + k);
    if (r > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "output rank %d is above %d", r, PIPPY_MAX_RANK);
    pippy_tdesc y = {.dtype = x->dtype, .rank = r};
    int n = 0;
    for (int i = 0; i < ix->rank - 1; i++)
        y.dims[n++] = ix->dims[i];
    for (int i = (int)(b + k); i < x->rank; i++)
        y.dims[n++] = x->dims[i];
    d->out[0] = y;
    return PIPPY_OK;
}

/* Negative indices count from the end; one still out of range zeroes its slice and is reported. */
static void s_gather_nd_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_gather_nd_kernel *k = (s_gather_nd_kernel *)kb;
    const char *x = in[0];
    char *y = out[0];
    for (int64_t p = 0; p < k->n_pos; p++, y += k->row) {
        int64_t at = (p / k->per_batch) * k->batch_rows;
        int ok = 1;
        for (int j = 0; j < k->k; j++) {
            int64_t q = p * k->k + j;
            int64_t i = k->idx64 ? ((const int64_t *)in[1])[q] : ((const int32_t *)in[1])[q], given = i;
            if (i < 0)
                i += k->dims[j];
            if (i < 0 || i >= k->dims[j]) {
                ok = 0;
                pippy_run_fail("node '%s' (GatherND): index %lld (tuple %lld, element %d) is out of range for a dim "
                               "of size %lld", k->node, (long long)given, (long long)p, j, (long long)k->dims[j]);
                break;
            }
            at += i * k->str[j];
        }
        if (ok)
            memcpy(y, x + (size_t)at * k->row, k->row);
        else
            memset(y, 0, k->row);
    }
}

static int64_t s_prod(const int64_t *v, int from, int to)
{
    int64_t n = 1;
    for (int i = from; i < to; i++)
        n *= v[i];
    return n;
}

static pippy_status s_gather_nd_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const pippy_tdesc *x = &d->in[0], *ix = &d->in[1];
    int b = (int)pippy_attr_int(d, "batch_dims", 0), kk = (int)ix->dims[ix->rank - 1];
    s_gather_nd_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_gather_nd_run;
    k->k = kk;
    k->idx64 = ix->dtype == PIPPY_DT_INT64;
    k->n_pos = pippy_tdesc_numel(ix) / kk;
    int64_t batches = s_prod(x->dims, 0, b);
    k->per_batch = batches > 0 ? k->n_pos / batches : 0;
    if (k->per_batch < 1)
        k->per_batch = 1;
    k->row = (size_t)s_prod(x->dims, b + kk, x->rank) * pippy_dtype_size(x->dtype);
    k->batch_rows = s_prod(x->dims, b, b + kk);
    int64_t stride = 1;
    for (int j = kk - 1; j >= 0; j--) {
        k->dims[j] = x->dims[b + j];
        k->str[j] = stride;
        stride *= x->dims[b + j];
    }
    snprintf(k->node, sizeof k->node, "%s", d->name ? d->name : "");
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- GatherElements ---- */

typedef struct {
    pippy_kernel base;
    int rank, axis, idx64;
    size_t esize;
    int64_t n, axis_dim;
    int64_t dims[PIPPY_MAX_RANK];  /* the indices' (= the output's) shape */
    int64_t xstr[PIPPY_MAX_RANK];  /* the data's element strides */
} s_gather_el_kernel;

static pippy_status s_gather_el_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 2, 2, 1));
    const pippy_tdesc *x = &d->in[0], *ix = &d->in[1];
    PIPPY_TRY(s_want_indices(ix));
    if (x->rank < 1 || ix->rank != x->rank)
        return pippy_fail(PIPPY_ERR_INVALID, "data and indices must have the same rank >= 1, found %d and %d",
                          x->rank, ix->rank);
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, &axis));
    for (int i = 0; i < x->rank; i++)
        if (i != axis && ix->dims[i] > x->dims[i])
            return pippy_fail(PIPPY_ERR_SHAPE, "indices dim %d is %lld, above the data's %lld", i,
                              (long long)ix->dims[i], (long long)x->dims[i]);
    d->out[0] = *ix;
    d->out[0].dtype = x->dtype;
    return PIPPY_OK;
}

static void s_gather_el_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_gather_el_kernel *k = (s_gather_el_kernel *)kb;
    const char *x = in[0];
    char *y = out[0];
    int64_t idx[PIPPY_MAX_RANK] = {0}, base = 0; /* base: data offset of the non-axis coordinates */
    for (int64_t o = 0; o < k->n; o++) {
        int64_t i = k->idx64 ? ((const int64_t *)in[1])[o] : ((const int32_t *)in[1])[o];
        if (i < 0)
            i += k->axis_dim;
        if (i >= 0 && i < k->axis_dim)
            memcpy(y + (size_t)o * k->esize, x + (size_t)(base + i * k->xstr[k->axis]) * k->esize, k->esize);
        else
            memset(y + (size_t)o * k->esize, 0, k->esize);
        for (int dd = k->rank - 1; dd >= 0; dd--) {
            int64_t step = dd == k->axis ? 0 : k->xstr[dd];
            base += step;
            if (++idx[dd] < k->dims[dd])
                break;
            base -= step * k->dims[dd];
            idx[dd] = 0;
        }
    }
}

static pippy_status s_gather_el_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const pippy_tdesc *x = &d->in[0], *ix = &d->in[1];
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, &axis));
    s_gather_el_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_gather_el_run;
    k->rank = x->rank;
    k->axis = axis;
    k->idx64 = ix->dtype == PIPPY_DT_INT64;
    k->esize = pippy_dtype_size(x->dtype);
    k->n = pippy_tdesc_numel(ix);
    k->axis_dim = x->dims[axis];
    memcpy(k->dims, ix->dims, sizeof k->dims);
    s_strides(x, k->xstr);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- Trilu ---- */

typedef struct {
    pippy_kernel base;
    int upper, has_k;
    int64_t batch, rows, cols;
    size_t esize;
} s_trilu_kernel;

static pippy_status s_trilu_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 2, 1));
    if (d->in[0].rank < 2)
        return pippy_fail(PIPPY_ERR_INVALID, "Trilu needs rank >= 2, found %d", d->in[0].rank);
    if (s_has_input(d, 1) && (d->in[1].dtype != PIPPY_DT_INT64 || pippy_tdesc_numel(&d->in[1]) != 1))
        return pippy_fail(PIPPY_ERR_INVALID, "k must be an int64 scalar, found %s", pippy_dtype_name(d->in[1].dtype));
    d->out[0] = d->in[0];
    return PIPPY_OK;
}

/* Keeps x[i][j] where j - i >= k (upper) or j - i <= k (lower); k is read at run time. */
static void s_trilu_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_trilu_kernel *k = (s_trilu_kernel *)kb;
    int64_t kk = k->has_k && in[1] ? *(const int64_t *)in[1] : 0;
    size_t row = (size_t)k->cols * k->esize;
    const char *x = in[0];
    char *y = out[0];
    for (int64_t b = 0; b < k->batch; b++)
        for (int64_t i = 0; i < k->rows; i++) {
            /* kept columns [lo, hi) */
            int64_t lo = k->upper ? i + kk : 0, hi = k->upper ? k->cols : i + kk + 1;
            lo = lo < 0 ? 0 : lo > k->cols ? k->cols : lo;
            hi = hi < lo ? lo : hi > k->cols ? k->cols : hi;
            memset(y, 0, (size_t)lo * k->esize);
            memcpy(y + (size_t)lo * k->esize, x + (size_t)lo * k->esize, (size_t)(hi - lo) * k->esize);
            memset(y + (size_t)hi * k->esize, 0, (size_t)(k->cols - hi) * k->esize);
            x += row;
            y += row;
        }
}

static pippy_status s_trilu_create(const pippy_op_desc *d, pippy_kernel **out)
{
    const pippy_tdesc *x = &d->in[0];
    s_trilu_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_trilu_run;
    k->upper = pippy_attr_int(d, "upper", 1) != 0;
    k->has_k = s_has_input(d, 1);
    k->rows = x->dims[x->rank - 2];
    k->cols = x->dims[x->rank - 1];
    k->batch = 1;
    for (int i = 0; i < x->rank - 2; i++)
        k->batch *= x->dims[i];
    k->esize = pippy_dtype_size(x->dtype);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- constant data: Shape, Size, Constant, ConstantOfShape ---- */

typedef struct {
    pippy_kernel base;
    void *data;     /* Constant: bytes to copy; else NULL */
    size_t bytes;   /* output bytes */
    size_t esize;   /* ConstantOfShape / Shape / Size: the fill pattern's size */
    int64_t n;
    uint8_t value[8 * PIPPY_MAX_RANK]; /* small payloads: a fill value, or Shape's dims */
    int fill;       /* 1: repeat value[0..esize) n times; 0: copy value or data */
} s_const_kernel;

static void s_const_destroy(pippy_kernel *kb)
{
    s_const_kernel *k = (s_const_kernel *)kb;
    free(k->data);
    free(k);
}

static void s_const_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_const_kernel *k = (s_const_kernel *)kb;
    (void)in;
    if (!k->fill) {
        if (k->bytes)
            memcpy(out[0], k->data ? k->data : k->value, k->bytes);
        return;
    }
    char *y = out[0];
    for (int64_t i = 0; i < k->n; i++)
        memcpy(y + (size_t)i * k->esize, k->value, k->esize);
}

static s_const_kernel *s_const_new(void)
{
    s_const_kernel *k = calloc(1, sizeof *k);
    if (k) {
        k->base.run = s_const_run;
        k->base.destroy = s_const_destroy;
    }
    return k;
}

static void s_shape_range(const pippy_op_desc *d, int64_t *start, int64_t *end)
{
    int64_t r = d->in[0].rank, s = pippy_attr_int(d, "start", 0), e = pippy_attr_int(d, "end", r);
    s = s < 0 ? s + r : s;
    e = e < 0 ? e + r : e;
    s = s < 0 ? 0 : s > r ? r : s;
    e = e < 0 ? 0 : e > r ? r : e;
    *start = s;
    *end = e < s ? s : e;
}

static pippy_status s_shape_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    int64_t s, e;
    s_shape_range(d, &s, &e);
    d->out[0] = (pippy_tdesc){.dtype = PIPPY_DT_INT64, .rank = 1, .dims = {e - s}};
    return PIPPY_OK;
}

static pippy_status s_shape_create(const pippy_op_desc *d, pippy_kernel **out)
{
    s_const_kernel *k = s_const_new();
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    int64_t s, e;
    s_shape_range(d, &s, &e);
    memcpy(k->value, d->in[0].dims + s, (size_t)(e - s) * sizeof(int64_t));
    k->bytes = (size_t)(e - s) * sizeof(int64_t);
    *out = &k->base;
    return PIPPY_OK;
}

static pippy_status s_size_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    d->out[0] = (pippy_tdesc){.dtype = PIPPY_DT_INT64, .rank = 0};
    return PIPPY_OK;
}

static pippy_status s_size_create(const pippy_op_desc *d, pippy_kernel **out)
{
    s_const_kernel *k = s_const_new();
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    int64_t n = pippy_tdesc_numel(&d->in[0]);
    memcpy(k->value, &n, sizeof n);
    k->bytes = sizeof n;
    *out = &k->base;
    return PIPPY_OK;
}

/* Constant's payload: the tensor attribute or one of value_float(s) / value_int(s). */
static pippy_status s_constant_value(const pippy_op_desc *d, pippy_tdesc *t, const void **data)
{
    const pippy_attr *a;
    if ((a = pippy_attr_find(d, "value")) && a->type == PIPPY_ATTR_TENSOR) {
        if (pippy_dtype_size(a->t.dtype) == 0)
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Constant of dtype %s is not supported", pippy_dtype_name(a->t.dtype));
        *t = a->t;
        *data = a->t_data;
    } else if ((a = pippy_attr_find(d, "value_float")) && a->type == PIPPY_ATTR_FLOAT) {
        *t = (pippy_tdesc){.dtype = PIPPY_DT_FLOAT, .rank = 0};
        *data = &a->f;
    } else if ((a = pippy_attr_find(d, "value_floats")) && a->type == PIPPY_ATTR_FLOATS) {
        *t = (pippy_tdesc){.dtype = PIPPY_DT_FLOAT, .rank = 1, .dims = {a->n}};
        *data = a->floats;
    } else if ((a = pippy_attr_find(d, "value_int")) && a->type == PIPPY_ATTR_INT) {
        *t = (pippy_tdesc){.dtype = PIPPY_DT_INT64, .rank = 0};
        *data = &a->i;
    } else if ((a = pippy_attr_find(d, "value_ints")) && a->type == PIPPY_ATTR_INTS) {
        *t = (pippy_tdesc){.dtype = PIPPY_DT_INT64, .rank = 1, .dims = {a->n}};
        *data = a->ints;
    } else if (pippy_attr_find(d, "sparse_value") || pippy_attr_find(d, "value_string") ||
               pippy_attr_find(d, "value_strings")) {
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Constant with a sparse or string value is not supported");
    } else {
        return pippy_fail(PIPPY_ERR_INVALID, "Constant has no value attribute");
    }
    if (pippy_tdesc_numel(t) > 0 && !*data)
        return pippy_fail(PIPPY_ERR_INVALID, "Constant's value has no data");
    return PIPPY_OK;
}

static pippy_status s_constant_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 0, 0, 1));
    const void *data;
    return s_constant_value(d, &d->out[0], &data);
}

static pippy_status s_constant_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_tdesc t;
    const void *data;
    PIPPY_TRY(s_constant_value(d, &t, &data));
    s_const_kernel *k = s_const_new();
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->bytes = pippy_tdesc_bytes(&t);
    k->data = malloc(k->bytes ? k->bytes : 1);
    if (!k->data) {
        s_const_destroy(&k->base);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory copying a %zu-byte Constant", k->bytes);
    }
    if (k->bytes)
        memcpy(k->data, data, k->bytes);
    *out = &k->base;
    return PIPPY_OK;
}

/* ConstantOfShape's fill value: a one-element tensor attribute, default float 0. */
static pippy_status s_cos_value(const pippy_op_desc *d, int32_t *dtype, uint8_t *value)
{
    const pippy_attr *a = pippy_attr_find(d, "value");
    memset(value, 0, 8);
    *dtype = PIPPY_DT_FLOAT;
    if (!a)
        return PIPPY_OK;
    size_t es = pippy_dtype_size(a->t.dtype);
    if (a->type != PIPPY_ATTR_TENSOR || pippy_tdesc_numel(&a->t) != 1 || !a->t_data)
        return pippy_fail(PIPPY_ERR_INVALID, "value must be a one-element tensor");
    if (es == 0 || es > 8)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "value of dtype %s is not supported", pippy_dtype_name(a->t.dtype));
    *dtype = a->t.dtype;
    memcpy(value, a->t_data, es);
    return PIPPY_OK;
}

static pippy_status s_cos_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 1, 1, 1));
    if (d->in[0].rank != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "input must be a 1-D shape, found rank %d", d->in[0].rank);
    int64_t shape[PIPPY_MAX_RANK];
    int32_t n;
    uint8_t value[8];
    pippy_tdesc y = {0};
    PIPPY_TRY(s_cos_value(d, &y.dtype, value));
    PIPPY_TRY(s_const_ints(d, 0, "ConstantOfShape's shape", shape, PIPPY_MAX_RANK, &n));
    y.rank = n;
    for (int i = 0; i < n; i++) {
        if (shape[i] < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "shape[%d] is %lld, expected >= 0", i, (long long)shape[i]);
        y.dims[i] = shape[i];
    }
    d->out[0] = y;
    return PIPPY_OK;
}

static pippy_status s_cos_create(const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t dt;
    s_const_kernel *k = s_const_new();
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    pippy_status st = s_cos_value(d, &dt, k->value);
    if (st != PIPPY_OK) {
        s_const_destroy(&k->base);
        return st;
    }
    k->fill = 1;
    k->esize = pippy_dtype_size(dt);
    k->n = pippy_tdesc_numel(&d->out[0]);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- Range ---- */

static int s_range_type(int32_t dt)
{
    return dt == PIPPY_DT_FLOAT || dt == PIPPY_DT_DOUBLE || dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64;
}

static double s_scalar_f(int32_t dt, const void *p)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return *(const float *)p;
    case PIPPY_DT_DOUBLE: return *(const double *)p;
    case PIPPY_DT_INT32: return *(const int32_t *)p;
    default: return (double)*(const int64_t *)p;
    }
}

static int64_t s_scalar_i(int32_t dt, const void *p)
{
    return dt == PIPPY_DT_INT32 ? *(const int32_t *)p : *(const int64_t *)p;
}

static pippy_status s_range_infer(pippy_op_desc *d)
{
    PIPPY_TRY(s_check_io(d, 3, 3, 1));
    int32_t dt = d->in[0].dtype;
    if (!s_range_type(dt))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Range on %s is not supported (float, double, int32, int64)",
                          pippy_dtype_name(dt));
    static const char *names[3] = {"start", "limit", "delta"};
    for (int i = 0; i < 3; i++) {
        if (d->in[i].dtype != dt || pippy_tdesc_numel(&d->in[i]) != 1)
            return pippy_fail(PIPPY_ERR_INVALID, "%s must be a %s scalar like start, found %s", names[i],
                              pippy_dtype_name(dt), pippy_dtype_name(d->in[i].dtype));
        if (!d->in_const[i])
            return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Range's %s must be known when compiling", names[i]);
    }
    int64_t n;
    if (dt == PIPPY_DT_INT32 || dt == PIPPY_DT_INT64) {
        int64_t s = s_scalar_i(dt, d->in_const[0]), l = s_scalar_i(dt, d->in_const[1]),
                dl = s_scalar_i(dt, d->in_const[2]);
        if (dl == 0)
            return pippy_fail(PIPPY_ERR_INVALID, "delta is 0");
        /* in unsigned 64-bit: the span of two int64 values and |delta| always fit */
        uint64_t span = l > s ? (uint64_t)l - (uint64_t)s : (uint64_t)s - (uint64_t)l;
        uint64_t step = dl > 0 ? (uint64_t)dl : (uint64_t)0 - (uint64_t)dl;
        uint64_t cnt = (l > s) == (dl > 0) && l != s ? (span - 1) / step + 1 : 0;
        if (cnt > (uint64_t)INT64_MAX)
            return pippy_fail(PIPPY_ERR_SHAPE, "Range from %lld to %lld by %lld has too many elements", (long long)s,
                              (long long)l, (long long)dl);
        n = (int64_t)cnt;
    } else {
        double s = s_scalar_f(dt, d->in_const[0]), l = s_scalar_f(dt, d->in_const[1]),
               dl = s_scalar_f(dt, d->in_const[2]);
        if (dl == 0 || !isfinite(s) || !isfinite(l) || !isfinite(dl))
            return pippy_fail(PIPPY_ERR_INVALID, "start, limit and delta must be finite and delta non-zero");
        double c = ceil((l - s) / dl);
        if (!(c < 0x1p62))
            return pippy_fail(PIPPY_ERR_SHAPE, "Range from %g to %g by %g has too many elements", s, l, dl);
        n = c > 0 ? (int64_t)c : 0;
    }
    d->out[0] = (pippy_tdesc){.dtype = dt, .rank = 1, .dims = {n}};
    return PIPPY_OK;
}

typedef struct {
    pippy_kernel base;
    int32_t dtype;
    int64_t n;
} s_range_kernel;

static void s_range_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_range_kernel *k = (s_range_kernel *)kb;
    switch (k->dtype) {
    case PIPPY_DT_FLOAT: {
        float s = *(const float *)in[0], dl = *(const float *)in[2], *y = out[0];
        for (int64_t i = 0; i < k->n; i++)
            y[i] = s + (float)i * dl;
        break;
    }
    case PIPPY_DT_DOUBLE: {
        double s = *(const double *)in[0], dl = *(const double *)in[2], *y = out[0];
        for (int64_t i = 0; i < k->n; i++)
            y[i] = s + (double)i * dl;
        break;
    }
    case PIPPY_DT_INT32: {
        int32_t s = *(const int32_t *)in[0], dl = *(const int32_t *)in[2], *y = out[0];
        for (int64_t i = 0; i < k->n; i++)
            y[i] = (int32_t)(s + i * dl);
        break;
    }
    default: {
        int64_t s = *(const int64_t *)in[0], dl = *(const int64_t *)in[2], *y = out[0];
        for (int64_t i = 0; i < k->n; i++)
            y[i] = s + i * dl;
        break;
    }
    }
}

static pippy_status s_range_create(const pippy_op_desc *d, pippy_kernel **out)
{
    s_range_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_range_run;
    k->dtype = d->in[0].dtype;
    k->n = pippy_tdesc_numel(&d->out[0]);
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- Cast / CastLike ---- */

static int s_cast_type(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: case PIPPY_DT_DOUBLE: case PIPPY_DT_INT8: case PIPPY_DT_UINT8:
    case PIPPY_DT_INT32: case PIPPY_DT_INT64: case PIPPY_DT_BOOL: case PIPPY_DT_FLOAT16:
        return 1;
    default:
        return 0;
    }
}

/* The reference: every element by cast.h's rule (through double or int64). */
static void s_cast_ref(int32_t from, int32_t to, const void *x, void *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        pippy_cast_one(from, to, x, y, i);
}

/* Fast path: one typed loop per (from, to) pair among the seven plain types. */
typedef void (*s_cast_fn)(const void *x, void *y, int64_t n);
#define S_CAST(SA, TA, SB, TB)                                      \
    static void s_cast_##SA##_##SB(const void *px, void *py, int64_t n) \
    {                                                               \
        const TA *x = px;                                           \
        TB *y = py;                                                 \
        for (int64_t i = 0; i < n; i++)                             \
            y[i] = (TB)x[i];                                        \
    }
#define S_CAST_BOOL(SA, TA)                                         \
    static void s_cast_##SA##_b(const void *px, void *py, int64_t n) \
    {                                                               \
        const TA *x = px;                                           \
        uint8_t *y = py;                                            \
        for (int64_t i = 0; i < n; i++)                             \
            y[i] = x[i] != 0;                                       \
    }
#define S_CAST_ROW(SA, TA)                                                                  \
    S_CAST(SA, TA, f32, float) S_CAST(SA, TA, f64, double) S_CAST(SA, TA, i8, int8_t)      \
    S_CAST(SA, TA, u8, uint8_t) S_CAST(SA, TA, i32, int32_t) S_CAST(SA, TA, i64, int64_t)  \
    S_CAST_BOOL(SA, TA)
S_CAST_ROW(f32, float)
S_CAST_ROW(f64, double)
S_CAST_ROW(i8, int8_t)
S_CAST_ROW(u8, uint8_t)
S_CAST_ROW(i32, int32_t)
S_CAST_ROW(i64, int64_t)
S_CAST_ROW(b, uint8_t) /* valid bools are 0 or 1, so a plain conversion is right */

#define S_CAST_TABLE_ROW(SA) \
    {s_cast_##SA##_f32, s_cast_##SA##_f64, s_cast_##SA##_i8, s_cast_##SA##_u8, s_cast_##SA##_i32, s_cast_##SA##_i64, s_cast_##SA##_b}
static const s_cast_fn s_cast_table[7][7] = {
    S_CAST_TABLE_ROW(f32), S_CAST_TABLE_ROW(f64), S_CAST_TABLE_ROW(i8), S_CAST_TABLE_ROW(u8),
    S_CAST_TABLE_ROW(i32), S_CAST_TABLE_ROW(i64), S_CAST_TABLE_ROW(b),
};

static int s_cast_index(int32_t dt)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return 0;
    case PIPPY_DT_DOUBLE: return 1;
    case PIPPY_DT_INT8: return 2;
    case PIPPY_DT_UINT8: return 3;
    case PIPPY_DT_INT32: return 4;
    case PIPPY_DT_INT64: return 5;
    case PIPPY_DT_BOOL: return 6;
    default: return -1;
    }
}

pippy_status pippy_cast_to_of(const pippy_op_desc *d, int32_t *to)
{
    if (strcmp(d->op, "CastLike") == 0) {
        *to = d->in[1].dtype;
    } else {
        const pippy_attr *a = pippy_attr_find(d, "to");
        if (!a || a->type != PIPPY_ATTR_INT)
            return pippy_fail(PIPPY_ERR_INVALID, "Cast needs the integer attribute 'to'");
        *to = (int32_t)a->i;
    }
    static const char *handled = "float, double, float16, int8, uint8, int32, int64 or bool";
    if (!s_cast_type(*to))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Cast to %s (ONNX type %d) is not supported, expected %s",
                          pippy_dtype_name(*to), (int)*to, handled);
    if (!s_cast_type(d->in[0].dtype))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Cast from %s (ONNX type %d) is not supported, expected %s",
                          pippy_dtype_name(d->in[0].dtype), (int)d->in[0].dtype, handled);
    return PIPPY_OK;
}

static pippy_status s_cast_infer(pippy_op_desc *d)
{
    int castlike = strcmp(d->op, "CastLike") == 0;
    PIPPY_TRY(s_check_io(d, castlike ? 2 : 1, castlike ? 2 : 1, 1));
    int32_t to = PIPPY_DT_UNDEFINED;
    PIPPY_TRY(pippy_cast_to_of(d, &to));
    d->out[0] = d->in[0];
    d->out[0].dtype = to;
    return PIPPY_OK;
}

typedef struct {
    pippy_kernel base;
    int32_t from, to;
    int64_t n;
    s_cast_fn fn; /* NULL: the reference loop */
} s_cast_kernel;

static void s_cast_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    s_cast_kernel *k = (s_cast_kernel *)kb;
    if (k->from == k->to) {
        if (out[0] != in[0])
            memcpy(out[0], in[0], (size_t)k->n * pippy_dtype_size(k->to));
    } else if (k->fn) {
        k->fn(in[0], out[0], k->n);
    } else {
        s_cast_ref(k->from, k->to, in[0], out[0], k->n);
    }
}

static pippy_status s_cast_create(const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t to = PIPPY_DT_UNDEFINED;
    PIPPY_TRY(pippy_cast_to_of(d, &to));
    s_cast_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = s_cast_run;
    k->from = d->in[0].dtype;
    k->to = to;
    k->n = pippy_tdesc_numel(&d->in[0]);
    int a = s_cast_index(k->from), b = s_cast_index(to);
    if (!d->reference && a >= 0 && b >= 0)
        k->fn = s_cast_table[a][b];
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- registry ---- */

#define S_OP(name, infer, create) {name, "", infer, s_no_flops, create}

const pippy_op_info pippy_cpu_ops_shape[] = {
    S_OP("Reshape", s_reshape_infer, s_copy_create),
    S_OP("Flatten", s_flatten_infer, s_copy_create),
    S_OP("Squeeze", s_squeeze_infer, s_copy_create),
    S_OP("Unsqueeze", s_unsqueeze_infer, s_copy_create),
    S_OP("Transpose", s_transpose_infer, s_walk_create),
    S_OP("Expand", s_expand_infer, s_walk_create),
    S_OP("Tile", s_tile_infer, s_walk_create),
    S_OP("Slice", s_slice_infer, s_walk_create),
    S_OP("Concat", s_concat_infer, s_concat_create),
    S_OP("Split", s_split_infer, s_split_create),
    S_OP("Gather", s_gather_infer, s_gather_create),
    S_OP("GatherElements", s_gather_el_infer, s_gather_el_create),
    S_OP("GatherND", s_gather_nd_infer, s_gather_nd_create),
    S_OP("Trilu", s_trilu_infer, s_trilu_create),
    S_OP("Shape", s_shape_infer, s_shape_create),
    S_OP("Size", s_size_infer, s_size_create),
    S_OP("Constant", s_constant_infer, s_constant_create),
    S_OP("ConstantOfShape", s_cos_infer, s_cos_create),
    S_OP("Range", s_range_infer, s_range_create),
    S_OP("Cast", s_cast_infer, s_cast_create),
    S_OP("CastLike", s_cast_infer, s_cast_create),
    {"PipeSplit", "pippy", s_identity_infer, s_no_flops, s_copy_create},
    {0},
};
