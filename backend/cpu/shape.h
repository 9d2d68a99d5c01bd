/* shape.h — what shape.c shares with shape_grad.c: Slice's clamping of starts, ends and
 * steps, so that SliceGrad writes exactly the positions the forward Slice read. */
#ifndef PIPPY_CPU_SHAPE_H
#define PIPPY_CPU_SHAPE_H

#include "backend.h"

/* A resolved slice of a tensor: along dim i, count[i] elements from start[i] by step[i]
 * (start 0 when count is 0). */
typedef struct {
    int64_t start[PIPPY_MAX_RANK], step[PIPPY_MAX_RANK], count[PIPPY_MAX_RANK];
} pippy_slice;

/* Resolve n values of ONNX Slice's starts, ends, axes (NULL: 0..n-1) and steps (NULL: all 1)
 * against x's dims, clamped as ONNX Slice does (negative values count from the end); dims
 * not named are taken whole. Fails on a zero step, an axis out of range or named twice. */
pippy_status pippy_slice_resolve(const pippy_op_desc *d, const pippy_tdesc *x, int n, const int64_t *starts,
                                 const int64_t *ends, const int64_t *axes, const int64_t *steps, pippy_slice *sl);

#endif
