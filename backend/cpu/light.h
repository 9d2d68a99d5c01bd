/* light.h — the parameters of the light families' ops (shape.c, reduce.c), read from a desc in
 * one place for their CPU kernels and for the cuda backend's (backend/cuda/). Each function
 * checks what it reads and records one message. */
#ifndef PIPPY_CPU_LIGHT_H
#define PIPPY_CPU_LIGHT_H

#include "backend.h"

/* A strided walk over an input: output element i (row-major over dims) is input element
 * base + sum(idx_k * str_k); a stride of 0 repeats, a negative one walks back. Tile walks each
 * axis as [repeats, dim], so a walk has up to twice the tensor rank. */
#define PIPPY_WALK_MAX_RANK (2 * PIPPY_MAX_RANK)
typedef struct {
    int32_t rank;
    int64_t dims[PIPPY_WALK_MAX_RANK];
    int64_t str[PIPPY_WALK_MAX_RANK];
    int64_t base;
} pippy_walk_plan;

/* Transpose, Expand, Tile and Slice as one walk over input 0 (dims not collapsed). */
pippy_status pippy_shape_walk_of(const pippy_op_desc *d, pippy_walk_plan *w);
/* Concat's axis (normalised). */
pippy_status pippy_concat_axis_of(const pippy_op_desc *d, int32_t *axis);
/* Split's axis and the size of each output along it (d->n_out values). */
pippy_status pippy_split_sizes_of(const pippy_op_desc *d, int32_t *axis, int64_t *sizes);
/* The dtype Cast / CastLike convert to (both dtypes checked). */
pippy_status pippy_cast_to_of(const pippy_op_desc *d, int32_t *to);
/* Reduce*: red[i] = 1 for each reduced axis of input 0; *noop = 1 for a plain copy
 * (no axes and noop_with_empty_axes). */
pippy_status pippy_reduce_axes_of(const pippy_op_desc *d, int red[PIPPY_MAX_RANK], int *noop);

#endif
