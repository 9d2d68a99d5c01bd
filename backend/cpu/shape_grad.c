/* shape_grad.c — the backward kernels of the data-movement ops. Domain "pippy", float32.
 *
 *   GatherGrad(dY, indices) -> dData   attrs axis (ONNX Gather's, 0), shape (INTS: data's shape),
 *                                      pippy.accumulate (INT 0/1), pippy.padding_idx (INT, optional)
 *       dData = zeros(shape) (kept as it is with accumulate), then each dY slice added at its
 *       index along axis: negative indices count from the end, repeated indices accumulate. The
 *       slices of index pippy.padding_idx (counted like an index) are dropped: that row gets no
 *       gradient (torch.nn.Embedding's padding_idx).
 *       Indices int64 or int32, read at run time. An index out of range even after adding the
 *       axis extent is skipped (its dY slice is dropped): backend.h has no way for a run to
 *       report an error (forward Gather gives zeros there).
 *   SliceGrad(dY) -> dX   attrs starts, ends (INTS), axes, steps (INTS, optional), shape (INTS: X's)
 *       dX = zeros(shape) with dY written into the positions Slice read; starts/ends/axes/steps
 *       are ONNX Slice's (already resolved to constants) and are clamped by the forward Slice's
 *       own code (pippy_slice_resolve).
 *
 * GatherGrad (the embedding gradient: [B, T] indices into a [V, C] table) sorts the indices by
 * value at each run (a counting sort over the axis extent, scratch made at create), then
 * builds each touched row once from its dY slices: one slice is copied (or added); more are
 * summed eight at a time in float as a tree of depth 3, the blocks in double. So the error is
 * a few roundings of the row's magnitudes however often an index repeats, and does not
 * depend on the order of the indices. Without accumulate dData is zeroed in one memset
 * (streaming stores for big tables). Its reference, for each output row, scans every index
 * for matches and sums their slices in double.
 * SliceGrad zeroes dX and copies dY's rows in (walk.h, memcpy for contiguous rows); its
 * reference places one element at a time. */
#include "backend.h"
#include "shape.h"
#include "walk.h"

#include <stdlib.h>
#include <string.h>

static pippy_status sh_check_io(const pippy_op_desc *d, int n_in, const char *names)
{
    if (d->n_in != n_in)
        return pippy_fail(PIPPY_ERR_INVALID, "expected %d input%s (%s), found %d", n_in, n_in > 1 ? "s" : "", names,
                          d->n_in);
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1 output, found %d", d->n_out);
    if (d->in[0].dtype != PIPPY_DT_FLOAT)
        return pippy_fail(PIPPY_ERR_INVALID, "input 0 (dY) must be float, found %s", pippy_dtype_name(d->in[0].dtype));
    return PIPPY_OK;
}

/* The INTS attribute name as a float tensor shape (required). */
static pippy_status sh_shape_attr(const pippy_op_desc *d, pippy_tdesc *t)
{
    const int64_t *v;
    int n = pippy_attr_ints(d, "shape", &v);
    if (n < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "attribute 'shape' (INTS) is required");
    if (n > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "shape has rank %d, above %d", n, PIPPY_MAX_RANK);
    *t = (pippy_tdesc){.dtype = PIPPY_DT_FLOAT, .rank = n};
    for (int i = 0; i < n; i++) {
        if (v[i] < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "shape dim %d is %lld (negative)", i, (long long)v[i]);
        t->dims[i] = v[i];
    }
    return PIPPY_OK;
}

/* dY must have the shape the forward op gave its output. */
static pippy_status sh_want_dy(const pippy_op_desc *d, const pippy_tdesc *want, const char *why)
{
    if (pippy_tdesc_equal(&d->in[0], want))
        return PIPPY_OK;
    char a[160], b[160];
    return pippy_fail(PIPPY_ERR_SHAPE, "dY is %s, expected %s (%s)", pippy_tdesc_str(&d->in[0], a, sizeof a),
                      pippy_tdesc_str(want, b, sizeof b), why);
}

static double sh_flops(const pippy_op_desc *d)
{
    return (double)pippy_tdesc_numel(&d->in[0]);
}

static double sh_no_flops(const pippy_op_desc *d)
{
    (void)d;
    return 0;
}

/* ---- GatherGrad ---- */

/* The data shape and the normalised axis; checks dY against Gather's output shape. */
static pippy_status gg_geometry(const pippy_op_desc *d, pippy_tdesc *data, int32_t *axis)
{
    PIPPY_TRY(sh_check_io(d, 2, "dY, indices"));
    const pippy_tdesc *ix = &d->in[1];
    if (ix->dtype != PIPPY_DT_INT64 && ix->dtype != PIPPY_DT_INT32)
        return pippy_fail(PIPPY_ERR_INVALID, "input 1 (indices) must be int64 or int32, found %s",
                          pippy_dtype_name(ix->dtype));
    int acc;
    PIPPY_TRY(pippy_attr_accumulate(d, &acc));
    PIPPY_TRY(sh_shape_attr(d, data));
    if (data->rank == 0)
        return pippy_fail(PIPPY_ERR_INVALID, "shape must have rank >= 1 (Gather from a scalar is not defined)");
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), data->rank, axis));
    pippy_tdesc y = {.dtype = PIPPY_DT_FLOAT, .rank = data->rank - 1 + ix->rank};
    if (y.rank > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "dY rank %d is above %d", y.rank, PIPPY_MAX_RANK);
    int k = 0;
    for (int i = 0; i < *axis; i++)
        y.dims[k++] = data->dims[i];
    for (int i = 0; i < ix->rank; i++)
        y.dims[k++] = ix->dims[i];
    for (int i = *axis + 1; i < data->rank; i++)
        y.dims[k++] = data->dims[i];
    return sh_want_dy(d, &y, "Gather's output for this shape, indices and axis");
}

static pippy_status gg_infer(pippy_op_desc *d)
{
    int32_t axis;
    PIPPY_TRY(gg_geometry(d, &d->out[0], &axis));
    return PIPPY_OK;
}

typedef struct {
    pippy_kernel base;
    int64_t outer, axis_dim, n_idx, inner, out_n;
    int64_t padding;  /* the row that gets no gradient, or -1 */
    int idx64, accumulate;
    int64_t *bucket; /* fast: axis_dim ends of the index buckets */
    int64_t *order;  /* fast: n_idx positions of indices, sorted by index */
    double *acc;     /* inner sums of one row */
    float *zero;     /* fast: inner zeros */
} gg_kernel;

static void gg_destroy(pippy_kernel *kb)
{
    gg_kernel *k = (gg_kernel *)kb;
    free(k->bucket);
    free(k->order);
    free(k->acc);
    free(k->zero);
    free(k);
}

/* Index j normalised to [0, axis_dim), or -1 when out of range. */
static inline int64_t gg_index(const gg_kernel *k, const void *idx, int64_t j)
{
    int64_t i = k->idx64 ? ((const int64_t *)idx)[j] : ((const int32_t *)idx)[j];
    if (i < 0)
        i += k->axis_dim;
    return i >= 0 && i < k->axis_dim && i != k->padding ? i : -1;
}

/* Row y (inner floats) from the sums in acc: stored, or added to what y holds. */
static void gg_store(const gg_kernel *k, float *y)
{
    if (k->accumulate)
        for (int64_t r = 0; r < k->inner; r++)
            y[r] = (float)((double)y[r] + k->acc[r]);
    else
        for (int64_t r = 0; r < k->inner; r++)
            y[r] = (float)k->acc[r];
}

static void gg_add(double *acc, const float *x, int64_t n)
{
    for (int64_t r = 0; r < n; r++)
        acc[r] += (double)x[r];
}

/* Counting sort of the valid indices: bucket i of order is [i ? bucket[i-1] : 0, bucket[i]). */
static void gg_sort(gg_kernel *k, const void *idx)
{
    int64_t *b = k->bucket;
    memset(b, 0, (size_t)k->axis_dim * sizeof *b);
    for (int64_t j = 0; j < k->n_idx; j++) {
        int64_t i = gg_index(k, idx, j);
        if (i >= 0 && i + 1 < k->axis_dim)
            b[i + 1]++;
    }
    for (int64_t i = 1; i < k->axis_dim; i++)
        b[i] += b[i - 1]; /* b[i]: start of bucket i */
    for (int64_t j = 0; j < k->n_idx; j++) {
        int64_t i = gg_index(k, idx, j);
        if (i >= 0)
            k->order[b[i]++] = j; /* b[i] ends at the end of bucket i */
    }
}

/* Element r of the sum of the 8 rows q, as a tree of depth 3. */
static inline float gg_tree8(const float *const *q, int64_t r)
{
    return ((q[0][r] + q[1][r]) + (q[2][r] + q[3][r])) + ((q[4][r] + q[5][r]) + (q[6][r] + q[7][r]));
}

/* Row y from the c >= 1 dY rows listed in ord. One row is copied (or added). More are summed
 * eight at a time in float as a tree (rows past the c-th read a row of zeros), the blocks in
 * double: the error stays within a few roundings of the row sums' magnitudes however often
 * an index repeats. */
static void gg_row(const gg_kernel *k, float *y, const float *dy, const int64_t *ord, int64_t c)
{
    int64_t n = k->inner;
    if (c == 1 && !k->accumulate) {
        memcpy(y, dy + ord[0] * n, (size_t)n * sizeof *y);
        return;
    }
    for (int64_t p = 0; p < c; p += 8) {
        const float *q[8];
        for (int j = 0; j < 8; j++)
            q[j] = p + j < c ? dy + ord[p + j] * n : k->zero;
        if (c <= 8) { /* one block: y + t in float rounds as in double, then to float */
            if (k->accumulate)
                for (int64_t r = 0; r < n; r++)
                    y[r] += gg_tree8(q, r);
            else
                for (int64_t r = 0; r < n; r++)
                    y[r] = gg_tree8(q, r);
            return;
        }
        for (int64_t r = 0; r < n; r++)
            k->acc[r] = (p ? k->acc[r] : 0.0) + (double)gg_tree8(q, r);
    }
    gg_store(k, y);
}

static void gg_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    gg_kernel *k = (gg_kernel *)kb;
    const float *dy = in[0];
    float *y = out[0];
    if (!k->accumulate && k->out_n)
        memset(y, 0, (size_t)k->out_n * sizeof *y); /* in one go: streaming stores for big tables */
    if (k->axis_dim == 0 || k->inner == 0)
        return;
    gg_sort(k, in[1]);
    for (int64_t o = 0; o < k->outer; o++) {
        const float *dyo = dy + o * k->n_idx * k->inner;
        for (int64_t i = 0; i < k->axis_dim; i++) {
            int64_t lo = i ? k->bucket[i - 1] : 0, hi = k->bucket[i];
            if (hi > lo)
                gg_row(k, y + (o * k->axis_dim + i) * k->inner, dyo, k->order + lo, hi - lo);
        }
    }
}

/* Reference: each output row sums the dY slices of every index equal to it. */
static void gg_run_ref(pippy_kernel *kb, const void *const *in, void *const *out)
{
    gg_kernel *k = (gg_kernel *)kb;
    const float *dy = in[0];
    float *y = out[0];
    for (int64_t o = 0; o < k->outer; o++)
        for (int64_t i = 0; i < k->axis_dim; i++) {
            int hits = 0;
            memset(k->acc, 0, (size_t)k->inner * sizeof *k->acc);
            for (int64_t j = 0; j < k->n_idx; j++)
                if (gg_index(k, in[1], j) == i) {
                    gg_add(k->acc, dy + (o * k->n_idx + j) * k->inner, k->inner);
                    hits = 1;
                }
            if (hits || !k->accumulate)
                gg_store(k, y + (o * k->axis_dim + i) * k->inner);
        }
}

static pippy_status gg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_tdesc data;
    int32_t axis;
    PIPPY_TRY(gg_geometry(d, &data, &axis));
    gg_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = d->reference ? gg_run_ref : gg_run;
    k->base.destroy = gg_destroy;
    k->outer = 1;
    for (int i = 0; i < axis; i++)
        k->outer *= data.dims[i];
    k->inner = 1;
    for (int i = axis + 1; i < data.rank; i++)
        k->inner *= data.dims[i];
    k->axis_dim = data.dims[axis];
    k->out_n = pippy_tdesc_numel(&data);
    k->n_idx = pippy_tdesc_numel(&d->in[1]);
    k->idx64 = d->in[1].dtype == PIPPY_DT_INT64;
    k->padding = pippy_attr_int(d, "pippy.padding_idx", INT64_MIN);
    if (k->padding != INT64_MIN && k->padding < 0)
        k->padding += k->axis_dim;
    if (k->padding < 0 || k->padding >= k->axis_dim)
        k->padding = -1;
    pippy_status st = pippy_attr_accumulate(d, &k->accumulate);
    /* one extra element each so that empty extents still allocate */
    k->acc = malloc((size_t)(k->inner + 1) * sizeof *k->acc);
    if (!d->reference) {
        k->bucket = malloc((size_t)(k->axis_dim + 1) * sizeof *k->bucket);
        k->order = malloc((size_t)(k->n_idx + 1) * sizeof *k->order);
        k->zero = calloc((size_t)(k->inner + 1), sizeof *k->zero);
    }
    if (st == PIPPY_OK && (!k->acc || (!d->reference && (!k->bucket || !k->order || !k->zero))))
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    if (st != PIPPY_OK) {
        gg_destroy(&k->base);
        return st;
    }
    *out = &k->base;
    return PIPPY_OK;
}

/* ---- SliceGrad ---- */

/* X's shape and the resolved slice; checks dY against Slice's output shape. */
static pippy_status sl_geometry(const pippy_op_desc *d, pippy_tdesc *x, pippy_slice *sl)
{
    PIPPY_TRY(sh_check_io(d, 1, "dY"));
    PIPPY_TRY(sh_shape_attr(d, x));
    const int64_t *starts, *ends, *axes, *steps;
    int ns = pippy_attr_ints(d, "starts", &starts), ne = pippy_attr_ints(d, "ends", &ends);
    int na = pippy_attr_ints(d, "axes", &axes), nst = pippy_attr_ints(d, "steps", &steps);
    if (ns < 0 || ne < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "attributes 'starts' and 'ends' (INTS) are required");
    if (ne != ns || (na >= 0 && na != ns) || (nst >= 0 && nst != ns))
        return pippy_fail(PIPPY_ERR_INVALID, "starts, ends, axes and steps must have the same length (%d, %d, %d, %d)",
                          ns, ne, na, nst);
    if (ns > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_INVALID, "%d starts given, at most %d handled", ns, PIPPY_MAX_RANK);
    PIPPY_TRY(pippy_slice_resolve(d, x, ns, starts, ends, na >= 0 ? axes : NULL, nst >= 0 ? steps : NULL, sl));
    pippy_tdesc y = *x;
    for (int i = 0; i < y.rank; i++)
        y.dims[i] = sl->count[i];
    return sh_want_dy(d, &y, "Slice's output for this shape, starts, ends, axes and steps");
}

static pippy_status sl_infer(pippy_op_desc *d)
{
    pippy_slice sl;
    return sl_geometry(d, &d->out[0], &sl);
}

typedef struct {
    pippy_kernel base;
    int32_t rank;
    int64_t dims[PIPPY_MAX_RANK], str[PIPPY_MAX_RANK]; /* over dY; strides in dX, may be negative */
    int64_t base_off, n, out_n;
} sl_kernel;

static void sl_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const sl_kernel *k = (const sl_kernel *)kb;
    const float *dy = in[0];
    float *y = out[0];
    if (k->out_n)
        memset(y, 0, (size_t)k->out_n * sizeof *y);
    if (k->n == 0)
        return;
    int r = k->rank;
    int64_t inner = k->dims[r - 1], s = k->str[r - 1], rows = k->n / inner, off = k->base_off;
    int64_t idx[PIPPY_MAX_RANK] = {0};
    for (int64_t row = 0; row < rows; row++) {
        const float *src = dy + row * inner;
        if (s == 1)
            memcpy(y + off, src, (size_t)inner * sizeof *y);
        else
            for (int64_t i = 0; i < inner; i++)
                y[off + i * s] = src[i];
        PIPPY_WALK_NEXT(r, k->dims, k->str, idx, off);
    }
}

static void sl_run_ref(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const sl_kernel *k = (const sl_kernel *)kb;
    const float *dy = in[0];
    float *y = out[0];
    for (int64_t i = 0; i < k->out_n; i++)
        y[i] = 0;
    for (int64_t i = 0; i < k->n; i++) {
        int64_t rem = i, off = k->base_off;
        for (int dd = k->rank - 1; dd >= 0; dd--) {
            off += (rem % k->dims[dd]) * k->str[dd];
            rem /= k->dims[dd];
        }
        y[off] = dy[i];
    }
}

static pippy_status sl_create(const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_tdesc x;
    pippy_slice sl;
    PIPPY_TRY(sl_geometry(d, &x, &sl));
    sl_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = d->reference ? sl_run_ref : sl_run;
    k->rank = x.rank;
    k->n = 1;
    int64_t s = 1;
    for (int i = x.rank - 1; i >= 0; i--) {
        k->dims[i] = sl.count[i];
        k->str[i] = s * sl.step[i];
        k->base_off += sl.start[i] * s;
        k->n *= sl.count[i];
        s *= x.dims[i];
    }
    k->out_n = s;
    if (!d->reference)
        k->rank = pippy_walk_collapse(k->rank, k->dims, 1, (int64_t *[1]){k->str}, 1);
    *out = &k->base;
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_shape_grad[] = {
    {"GatherGrad", "pippy", gg_infer, sh_flops, gg_create},
    {"SliceGrad", "pippy", sl_infer, sh_no_flops, sl_create},
    {0},
};
