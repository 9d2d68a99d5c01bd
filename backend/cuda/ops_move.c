/* ops_move.c — the cuda kernels of the ops that move or make data (move.cu): plain copies
 * (Reshape, Flatten, Squeeze, Unsqueeze, Identity, inference Dropout, pippy::PipeSplit), the
 * strided walks (Transpose, Expand, Tile, Slice, with light.h's plan, shared with the CPU),
 * Concat, Split, Gather, Trilu, and the ops whose output is known at create (Shape, Size,
 * Constant, ConstantOfShape, Range with constant inputs): the CPU kernel makes it once, the
 * kernel copies it. Any fixed-size dtype. */
#include <stdlib.h>
#include <string.h>

#include "cpu/light.h"
#include "cpu/walk.h"
#include "cubackend.h"

/* Device-to-device copy on the compute stream (a failure is kept for the next sync). */
static void pippy_cu_d2d(pippy_cuda_ctx *c, void *dst, const void *src, size_t n)
{
    if (!n || dst == src)
        return;
    if (c->emulate) {
        memmove(dst, src, n);
        return;
    }
    cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c->exec.stream);
    if (e != cudaSuccess)
        pippy_cuda_run_error(c, "cudaMemcpyAsync", cudaGetErrorString(e));
}

static int pippy_cu_esize_ok(int32_t dt)
{
    size_t es = pippy_dtype_size(dt);
    return es == 1 || es == 2 || es == 4 || es == 8;
}

static pippy_status pippy_cu_want_esize(const pippy_op_desc *d, int i)
{
    if (!pippy_cu_esize_ok(d->in[i].dtype))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s on %s has no cuda kernel", d->op, pippy_dtype_name(d->in[i].dtype));
    return PIPPY_OK;
}

/* Row-major strides of dims[0..rank). */
static void pippy_cu_strides(int rank, const int64_t *dims, int64_t *str)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        str[i] = s;
        s *= dims[i];
    }
}

/* A copy plan over dims with the given strides and bases, collapsed. */
static void pippy_cu_copy_plan(pippy_cu_copy *p, int rank, const int64_t *dims, const int64_t *istr, int64_t ibase,
                               const int64_t *ostr, int64_t obase, size_t esize)
{
    memset(p, 0, sizeof *p);
    p->n = 1;
    for (int i = 0; i < rank; i++) {
        p->dims[i] = dims[i];
        p->istr[i] = istr[i];
        p->ostr[i] = ostr[i];
        p->n *= dims[i];
    }
    int64_t *lists[2] = {p->istr, p->ostr};
    p->rank = pippy_walk_collapse(rank, p->dims, 2, lists, 1);
    p->ibase = ibase;
    p->obase = obase;
    p->esize = (int32_t)esize;
}

/* ---- plain copies ---- */

typedef struct {
    pippy_cuda_kernel k;
    size_t bytes;
    pippy_cu_fill mask; /* Dropout's mask output: all true */
    int has_mask;
} pippy_cu_copy_kernel;

static void pippy_cu_copy_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_copy_kernel *k = (pippy_cu_copy_kernel *)kb;
    pippy_cu_d2d(k->k.ctx, out[0], in[0], k->bytes);
    if (k->has_mask)
        pippy_cu_fill_run(&k->mask, out[1], &k->k.ctx->exec);
}

pippy_status pippy_cuda_check_copy(const pippy_op_desc *d)
{
    if (!strcmp(d->op, "Dropout") && d->n_in > 2 && d->in[2].dtype != PIPPY_DT_UNDEFINED &&
        !(d->in_const[2] && !*(const uint8_t *)d->in_const[2]))
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "Dropout whose training_mode is not a constant false has no cuda "
                                                 "kernel (inference only)");
    return PIPPY_OK;
}

pippy_status pippy_cuda_create_copy(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_cu_copy_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_copy_k, (pippy_cuda_kernel **)&k));
    k->bytes = pippy_tdesc_bytes(&d->in[0]);
    k->has_mask = !strcmp(d->op, "Dropout") && d->n_out > 1;
    k->mask = (pippy_cu_fill){.esize = 1, .n = pippy_tdesc_numel(&d->in[0]), .value = {1}};
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- one strided copy: Transpose, Expand, Tile, Slice ---- */

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_copy p;
} pippy_cu_walk_kernel;

static void pippy_cu_walk_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_walk_kernel *k = (pippy_cu_walk_kernel *)kb;
    pippy_cu_copy_run(&k->p, in[0], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_check_walk(const pippy_op_desc *d)
{
    pippy_walk_plan w;
    PIPPY_TRY(pippy_cu_want_esize(d, 0));
    return pippy_shape_walk_of(d, &w);
}

pippy_status pippy_cuda_create_walk(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    pippy_walk_plan w;
    PIPPY_TRY(pippy_cuda_check_walk(d));
    PIPPY_TRY(pippy_shape_walk_of(d, &w));
    pippy_cu_walk_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_walk_k, (pippy_cuda_kernel **)&k));
    int64_t ostr[PIPPY_WALK_MAX_RANK];
    pippy_cu_strides(w.rank, w.dims, ostr);
    pippy_cu_copy_plan(&k->p, w.rank, w.dims, w.str, w.base, ostr, 0, pippy_dtype_size(d->in[0].dtype));
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Concat, Split: one strided copy per part ---- */

typedef struct {
    pippy_cuda_kernel k;
    int n;
    pippy_cu_copy part[PIPPY_MAX_IO];
} pippy_cu_parts_kernel;

static void pippy_cu_concat_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_parts_kernel *k = (pippy_cu_parts_kernel *)kb;
    for (int i = 0; i < k->n; i++)
        pippy_cu_copy_run(&k->part[i], in[i], out[0], &k->k.ctx->exec);
}

static void pippy_cu_split_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_parts_kernel *k = (pippy_cu_parts_kernel *)kb;
    for (int i = 0; i < k->n; i++)
        pippy_cu_copy_run(&k->part[i], in[0], out[i], &k->k.ctx->exec);
}

/* Part i of whole along axis, starting at `at`: its elements and where they sit in whole. */
static void pippy_cu_part(const pippy_tdesc *whole, const pippy_tdesc *part, int axis, int64_t at, int into_whole,
                          pippy_cu_copy *p)
{
    int64_t wstr[PIPPY_MAX_RANK], pstr[PIPPY_MAX_RANK];
    pippy_cu_strides(whole->rank, whole->dims, wstr);
    pippy_cu_strides(part->rank, part->dims, pstr);
    size_t es = pippy_dtype_size(whole->dtype);
    if (into_whole) /* Concat: part -> whole */
        pippy_cu_copy_plan(p, part->rank, part->dims, pstr, 0, wstr, at * wstr[axis], es);
    else /* Split: whole -> part */
        pippy_cu_copy_plan(p, part->rank, part->dims, wstr, at * wstr[axis], pstr, 0, es);
}

pippy_status pippy_cuda_check_concat(const pippy_op_desc *d)
{
    int32_t axis;
    PIPPY_TRY(pippy_cu_want_esize(d, 0));
    return pippy_concat_axis_of(d, &axis);
}

pippy_status pippy_cuda_create_concat(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t axis;
    PIPPY_TRY(pippy_cuda_check_concat(d));
    PIPPY_TRY(pippy_concat_axis_of(d, &axis));
    pippy_cu_parts_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_concat_k, (pippy_cuda_kernel **)&k));
    k->n = d->n_in;
    int64_t at = 0;
    for (int i = 0; i < d->n_in; i++) {
        pippy_cu_part(&d->out[0], &d->in[i], axis, at, 1, &k->part[i]);
        at += d->in[i].dims[axis];
    }
    *out = &k->k.base;
    return PIPPY_OK;
}

pippy_status pippy_cuda_check_split(const pippy_op_desc *d)
{
    int32_t axis;
    int64_t sizes[PIPPY_MAX_IO];
    PIPPY_TRY(pippy_cu_want_esize(d, 0));
    return pippy_split_sizes_of(d, &axis, sizes);
}

pippy_status pippy_cuda_create_split(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    int32_t axis;
    int64_t sizes[PIPPY_MAX_IO];
    PIPPY_TRY(pippy_cuda_check_split(d));
    PIPPY_TRY(pippy_split_sizes_of(d, &axis, sizes));
    pippy_cu_parts_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_split_k, (pippy_cuda_kernel **)&k));
    k->n = d->n_out;
    int64_t at = 0;
    for (int i = 0; i < d->n_out; i++) {
        pippy_cu_part(&d->in[0], &d->out[i], axis, at, 0, &k->part[i]);
        at += sizes[i];
    }
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Gather ---- */

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_gather p;
} pippy_cu_gather_kernel;

static void pippy_cu_gather_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_gather_kernel *k = (pippy_cu_gather_kernel *)kb;
    pippy_cu_gather_run(&k->p, in[0], in[1], out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_check_gather(const pippy_op_desc *d) { return pippy_cu_want_esize(d, 0); }

pippy_status pippy_cuda_create_gather(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_gather(d));
    const pippy_tdesc *x = &d->in[0];
    int32_t axis;
    PIPPY_TRY(pippy_norm_axis(d, pippy_attr_int(d, "axis", 0), x->rank, &axis));
    pippy_cu_gather_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_gather_k, (pippy_cuda_kernel **)&k));
    pippy_cu_gather *p = &k->p;
    p->esize = (int32_t)pippy_dtype_size(x->dtype);
    p->idx64 = d->in[1].dtype == PIPPY_DT_INT64;
    p->outer = p->inner = 1;
    for (int i = 0; i < axis; i++)
        p->outer *= x->dims[i];
    for (int i = axis + 1; i < x->rank; i++)
        p->inner *= x->dims[i];
    p->axis_dim = x->dims[axis];
    p->n_idx = pippy_tdesc_numel(&d->in[1]);
    p->n = pippy_tdesc_numel(&d->out[0]);
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- Trilu ---- */

typedef struct {
    pippy_cuda_kernel k;
    pippy_cu_trilu p;
    int has_k;
} pippy_cu_trilu_kernel;

static void pippy_cu_trilu_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_trilu_kernel *k = (pippy_cu_trilu_kernel *)kb;
    pippy_cu_trilu_run(&k->p, in[0], k->has_k ? in[1] : NULL, out[0], &k->k.ctx->exec);
}

pippy_status pippy_cuda_check_trilu(const pippy_op_desc *d) { return pippy_cu_want_esize(d, 0); }

pippy_status pippy_cuda_create_trilu(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_trilu(d));
    const pippy_tdesc *x = &d->in[0];
    pippy_cu_trilu_kernel *k;
    PIPPY_TRY(pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_trilu_k, (pippy_cuda_kernel **)&k));
    k->has_k = d->n_in > 1 && d->in[1].dtype != PIPPY_DT_UNDEFINED;
    k->p = (pippy_cu_trilu){.esize = (int32_t)pippy_dtype_size(x->dtype),
                            .upper = pippy_attr_int(d, "upper", 1) != 0,
                            .rows = x->dims[x->rank - 2],
                            .cols = x->dims[x->rank - 1],
                            .n = pippy_tdesc_numel(x)};
    *out = &k->k.base;
    return PIPPY_OK;
}

/* ---- outputs known at create ---- */

typedef struct {
    pippy_cuda_kernel k;
    void *data; /* device copy of the output */
    size_t bytes;
} pippy_cu_const_kernel;

static void pippy_cu_const_k(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_cu_const_kernel *k = (pippy_cu_const_kernel *)kb;
    (void)in;
    pippy_cu_d2d(k->k.ctx, out[0], k->data, k->bytes);
}

/* Shape and Size read only shapes; the others need every input known when compiling. */
pippy_status pippy_cuda_check_constant(const pippy_op_desc *d)
{
    if (!strcmp(d->op, "Shape") || !strcmp(d->op, "Size"))
        return PIPPY_OK;
    for (int i = 0; i < d->n_in; i++)
        if (d->in[i].dtype != PIPPY_DT_UNDEFINED && !d->in_const[i])
            return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                              "%s with input %d known only at run time has no cuda kernel (its output is made when "
                              "the stage starts)", d->op, i);
    return PIPPY_OK;
}

pippy_status pippy_cuda_create_constant(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **out)
{
    PIPPY_TRY(pippy_cuda_check_constant(d));
    pippy_kernel *cpu = NULL;
    PIPPY_TRY(pippy_kernel_create(d, &cpu));
    size_t bytes = pippy_tdesc_bytes(&d->out[0]);
    void *host = malloc(bytes ? bytes : 1);
    pippy_cu_const_kernel *k = NULL;
    pippy_status st = host ? pippy_cuda_kernel_new(b, sizeof *k, pippy_cu_const_k, (pippy_cuda_kernel **)&k)
                           : pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    if (st == PIPPY_OK) {
        pippy_kernel_run(cpu, d->in_const, (void *const[]){host});
        k->bytes = bytes;
        st = pippy_cuda_kernel_buffer(&k->k, bytes, host, &k->data);
    }
    pippy_kernel_destroy(cpu);
    free(host);
    if (st != PIPPY_OK) {
        if (k)
            pippy_kernel_destroy(&k->k.base);
        return st;
    }
    *out = &k->k.base;
    return PIPPY_OK;
}
