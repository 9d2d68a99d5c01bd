/* reduce_grad.c — pippy::SumTo, the gradient of every broadcasting op.
 *
 *   SumTo(dY) -> dX   attr shape (INTS, required): dX's shape, numpy-broadcast compatible with
 *                     dY's (rank <= dY's rank; each dim equal to dY's, or 1)
 *                     attr pippy.accumulate (INT 0/1): dX += the sums instead of dX = the sums
 *
 * Each element of dX is the sum of the dY elements that broadcasting dX to dY's shape would
 * have fed: sums over dY's leading extra dims and over the dims where shape has 1. float32.
 *
 * Accuracy: runs of 8 elements are summed in float as a tree of depth 3, and those partial
 * sums in double, rounded to float once at the end (with accumulate: after adding dX's old
 * value). The error is a few float roundings of the summed magnitudes whatever the length,
 * so a long reduction such as [B*T*C] -> [C] stays accurate; it costs a buffer of dX's
 * element count in doubles, made at create.
 *
 * Fast path: dY is walked once in memory order over dims collapsed at create (walk.h) into
 * alternating kept / summed groups. A summed innermost dim is folded into one sum per row
 * (eight lanes); a kept innermost dim takes the rows of the summed dim next to it eight at a
 * time ([R, C] -> [C]: column sums). The same element count is a copy (an add with accumulate).
 * The reference (desc->reference = 1) sums each output element over its own index set. */
#include "backend.h"
#include "walk.h"

#include <stdlib.h>
#include <string.h>

/* ---- shape rule ---- */

static pippy_status sg_infer(pippy_op_desc *d)
{
    if (d->n_in != 1 || d->in[0].dtype == PIPPY_DT_UNDEFINED)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1 input (dY), found %d", d->n_in);
    if (d->n_out != 1)
        return pippy_fail(PIPPY_ERR_INVALID, "expected 1 output, found %d", d->n_out);
    const pippy_tdesc *dy = &d->in[0];
    char s[160];
    if (dy->dtype != PIPPY_DT_FLOAT)
        return pippy_fail(PIPPY_ERR_INVALID, "input 0 (dY) must be float, found %s", pippy_tdesc_str(dy, s, sizeof s));
    int acc;
    PIPPY_TRY(pippy_attr_accumulate(d, &acc));
    const int64_t *shape;
    int n = pippy_attr_ints(d, "shape", &shape);
    if (n < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "attribute 'shape' (INTS) is required");
    if (n > dy->rank)
        return pippy_fail(PIPPY_ERR_SHAPE, "shape has rank %d, above dY's %s", n, pippy_tdesc_str(dy, s, sizeof s));
    pippy_tdesc x = {.dtype = PIPPY_DT_FLOAT, .rank = n};
    for (int i = 0; i < n; i++) {
        int64_t want = dy->dims[dy->rank - n + i];
        if (shape[i] != want && shape[i] != 1)
            return pippy_fail(PIPPY_ERR_SHAPE, "shape dim %d is %lld, which does not broadcast to dY %s (%lld there)",
                              i, (long long)shape[i], pippy_tdesc_str(dy, s, sizeof s), (long long)want);
        x.dims[i] = shape[i];
    }
    d->out[0] = x;
    return PIPPY_OK;
}

static double sg_flops(const pippy_op_desc *d)
{
    return (double)pippy_tdesc_numel(&d->in[0]);
}

/* ---- kernel ---- */

typedef struct sg_kernel sg_kernel;

struct sg_kernel {
    pippy_kernel base;
    void (*sum)(const sg_kernel *k, const float *x, double *acc); /* into acc, zeroed */
    int accumulate, copy;
    int64_t in_n, out_n;
    double *acc; /* out_n sums */
    /* fast: dY's collapsed dims, output strides (0 on summed dims) */
    int32_t rank;
    int64_t dims[PIPPY_MAX_RANK], ostr[PIPPY_MAX_RANK];
    /* reference: kept and summed dims of dY with their strides in dY */
    int32_t n_keep, n_red;
    int64_t keep_dims[PIPPY_MAX_RANK], keep_str[PIPPY_MAX_RANK];
    int64_t red_dims[PIPPY_MAX_RANK], red_str[PIPPY_MAX_RANK];
    int64_t count; /* dY elements per dX element */
};

static void sg_destroy(pippy_kernel *kb)
{
    free(((sg_kernel *)kb)->acc);
    free(kb);
}

/* acc[0] += x[0..n): eight lanes, each summing runs of 8 floats in float (a tree of depth 3,
 * vectorised), then in double across runs. */
static void sg_row_sum(double *acc, const float *x, int64_t n)
{
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        float t[8];
        for (int j = 0; j < 8; j++) {
            const float *p = x + i + j;
            t[j] = ((p[0] + p[8]) + (p[16] + p[24])) + ((p[32] + p[40]) + (p[48] + p[56]));
        }
        for (int j = 0; j < 8; j++)
            s[j] += (double)t[j];
    }
    double t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++)
        t += (double)x[i];
    *acc += t;
}

/* acc[0..n) += the sum of m rows of n floats, rows ld apart: blocks of 8 rows summed in float
 * (a tree of depth 3, vectorised over the row), then added in double. */
static void sg_rows_add(double *acc, const float *x, int64_t m, int64_t n, int64_t ld)
{
    int64_t r = 0;
    for (; r + 8 <= m; r += 8) {
        const float *p = x + r * ld;
        for (int64_t i = 0; i < n; i++) {
            float t = ((p[i] + p[i + ld]) + (p[i + 2 * ld] + p[i + 3 * ld])) +
                      ((p[i + 4 * ld] + p[i + 5 * ld]) + (p[i + 6 * ld] + p[i + 7 * ld]));
            acc[i] += (double)t;
        }
    }
    for (; r < m; r++)
        for (int64_t i = 0; i < n; i++)
            acc[i] += (double)x[r * ld + i];
}

/* Fast: dY in memory order. Innermost dim summed: one row at a time into one sum. Innermost
 * dim kept: the rows of the next dim out go into the same sums (when it is summed) or
 * successive ones, a block of rows at a time. */
static void sg_sum_fast(const sg_kernel *k, const float *x, double *acc)
{
    int r = k->rank;
    int64_t inner = k->dims[r - 1], rows = k->in_n / inner, off = 0;
    int64_t idx[PIPPY_MAX_RANK] = {0};
    if (k->ostr[r - 1] == 0) {
        for (int64_t row = 0; row < rows; row++) {
            sg_row_sum(acc + off, x + row * inner, inner);
            PIPPY_WALK_NEXT(r, k->dims, k->ostr, idx, off);
        }
        return;
    }
    /* after collapsing, a kept innermost dim is all of its group: dim r-2 (if any) is summed */
    int64_t m = r > 1 ? k->dims[r - 2] : 1;
    for (int64_t b = 0; b < rows / m; b++) {
        sg_rows_add(acc + off, x + b * m * inner, m, inner, inner);
        PIPPY_WALK_NEXT(r - 1, k->dims, k->ostr, idx, off);
    }
}

/* Reference: each output element summed over its own index set. */
static void sg_sum_ref(const sg_kernel *k, const float *x, double *acc)
{
    for (int64_t o = 0; o < k->out_n; o++) {
        int64_t base = 0, rem = o;
        for (int i = k->n_keep - 1; i >= 0; i--) {
            base += (rem % k->keep_dims[i]) * k->keep_str[i];
            rem /= k->keep_dims[i];
        }
        for (int64_t j = 0; j < k->count; j++) {
            int64_t off = base;
            rem = j;
            for (int i = k->n_red - 1; i >= 0; i--) {
                off += (rem % k->red_dims[i]) * k->red_str[i];
                rem /= k->red_dims[i];
            }
            acc[o] += (double)x[off];
        }
    }
}

static void sg_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    const sg_kernel *k = (const sg_kernel *)kb;
    const float *x = in[0];
    float *y = out[0];
    if (k->copy) { /* nothing is summed */
        if (!k->accumulate) {
            if (k->out_n && (const float *)y != x)
                memcpy(y, x, (size_t)k->out_n * sizeof *y);
        } else {
            for (int64_t i = 0; i < k->out_n; i++)
                y[i] = (float)((double)y[i] + (double)x[i]);
        }
        return;
    }
    if (k->out_n == 0)
        return;
    memset(k->acc, 0, (size_t)k->out_n * sizeof *k->acc);
    if (k->in_n > 0)
        k->sum(k, x, k->acc);
    if (k->accumulate)
        for (int64_t i = 0; i < k->out_n; i++)
            y[i] = (float)((double)y[i] + k->acc[i]);
    else
        for (int64_t i = 0; i < k->out_n; i++)
            y[i] = (float)k->acc[i];
}

/* The walk's dims and strides from dY's and dX's shapes (dX right-aligned against dY). */
static void sg_plan(sg_kernel *k, const pippy_tdesc *dy, const pippy_tdesc *dx)
{
    int64_t istr[PIPPY_MAX_RANK], s = 1;
    int lead = dy->rank - dx->rank, summed[PIPPY_MAX_RANK];
    for (int i = dy->rank - 1; i >= 0; i--) {
        istr[i] = s;
        s *= dy->dims[i];
        summed[i] = i < lead || (dx->dims[i - lead] == 1 && dy->dims[i] != 1);
    }
    s = 1;
    for (int i = dy->rank - 1; i >= 0; i--) {
        k->ostr[i] = summed[i] ? 0 : s;
        s *= summed[i] ? 1 : dy->dims[i];
    }
    k->count = 1;
    for (int i = 0; i < dy->rank; i++) {
        if (summed[i]) {
            k->count *= dy->dims[i];
            k->red_dims[k->n_red] = dy->dims[i];
            k->red_str[k->n_red++] = istr[i];
        } else {
            k->keep_dims[k->n_keep] = dy->dims[i];
            k->keep_str[k->n_keep++] = istr[i];
        }
    }
    memcpy(k->dims, dy->dims, (size_t)dy->rank * sizeof *k->dims);
    k->rank = pippy_walk_collapse(dy->rank, k->dims, 1, (int64_t *[1]){k->ostr}, 0);
}

static pippy_status sg_create(const pippy_op_desc *d, pippy_kernel **out)
{
    sg_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s", d->op);
    k->base.run = sg_run;
    k->base.destroy = sg_destroy;
    k->sum = d->reference ? sg_sum_ref : sg_sum_fast;
    pippy_status st = pippy_attr_accumulate(d, &k->accumulate);
    k->in_n = pippy_tdesc_numel(&d->in[0]);
    k->out_n = pippy_tdesc_numel(&d->out[0]);
    k->copy = k->in_n == k->out_n && !d->reference;
    sg_plan(k, &d->in[0], &d->out[0]);
    if (st == PIPPY_OK && !k->copy && k->out_n > 0 && !(k->acc = malloc((size_t)k->out_n * sizeof *k->acc)))
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating %s (%lld sums)", d->op, (long long)k->out_n);
    if (st != PIPPY_OK) {
        sg_destroy(&k->base);
        return st;
    }
    *out = &k->base;
    return PIPPY_OK;
}

const pippy_op_info pippy_cpu_ops_reduce_grad[] = {
    {"SumTo", "pippy", sg_infer, sg_flops, sg_create},
    {0},
};
