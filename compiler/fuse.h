/* fuse.h — graph rewrites that fuse a node into its producer's kernel (see fuse.c). */
#ifndef PIPPY_FUSE_H
#define PIPPY_FUSE_H

#include "ir.h"

/* Conv/Gemm/MatMul + Relu -> one node with "pippy.activation"; returns how many were fused. */
int32_t pippy_fuse_activations(pippy_graph *g);

/* Conv + inference BatchNormalization -> one Conv with folded weights; returns how many. */
int32_t pippy_fold_batchnorm(pippy_graph *g);

/* PyTorch's exported exact GELU, x * 0.5 * (1 + erf(x / sqrt(2))) in five nodes -> one Gelu. */
int32_t pippy_fuse_gelu(pippy_graph *g);

/* MatMul followed by Add of a stored float[N] bias -> one MatMul with "pippy.bias" (a third input). */
int32_t pippy_fuse_matmul_bias(pippy_graph *g);

/* MatMul of a Transpose that swaps the last two dims -> MatMul with "pippy.trans_a/b". */
int32_t pippy_fuse_transpose_matmul(pippy_graph *g);

#endif
