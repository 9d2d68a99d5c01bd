/* autodiff.h — reverse-mode differentiation of a partitioned graph, at graph level.
 *
 * Input: a graph whose forward nodes each have a stage, and a scalar loss value. The
 * autodiff appends to the same graph the nodes that compute, for one microbatch,
 *   - the gradient of every activation on a path from a trained parameter to the loss,
 *     summed over its uses: first within each consumer stage, then in the producer's
 *     stage (a skip connection used by three later stages receives three partial sums);
 *   - the gradient of every trained parameter, as `pippy::Accumulate` nodes adding each
 *     contribution into that stage's gradient buffer of the parameter (a value of kind
 *     PIPPY_VAL_GRAD). Where the producing op can add into its output itself (MatMul,
 *     SumTo, GatherGrad, ConvGradWeight, the norm weight gradients: attribute
 *     `pippy.accumulate`), the Accumulate node is folded into it.
 * The loss seed is 1/M: the step's loss is the mean of its M microbatch losses, so the
 * gradients summed over the microbatches are the whole batch's.
 *
 * Every new node runs in the stage of the forward node it differentiates (a partial sum in
 * the stage it sums), in phase B when an earlier stage waits for what it computes (directly
 * or through later nodes of its stage), else in phase W (weight gradients, which zero-bubble
 * schedules may run later). Parameters reached by a gradient become `trainable`.
 * An op on the way from a parameter to the loss without a gradient rule is an error naming
 * the node and the op; integer and boolean paths (shapes, indices, masks) get no gradient. */
#ifndef PIPPY_AUTODIFF_H
#define PIPPY_AUTODIFF_H

#include "ir.h"

typedef struct {
    int32_t loss;          /* the scalar float value to minimise (one microbatch's mean) */
    int32_t microbatches;  /* M: the seed of the loss gradient is 1/M */
} pippy_autodiff_opts;

pippy_status pippy_autodiff(pippy_graph *g, const pippy_autodiff_opts *o);

/* Ops that accept the private attribute "pippy.accumulate" (add into their outputs). */
int pippy_op_accumulates(const char *domain, const char *op);

#endif
