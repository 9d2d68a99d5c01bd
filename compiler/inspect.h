/* inspect.h — `pippyc inspect`: what is in a model, node by node.
 * A table (index, op, name, output shapes, FLOPs, parameter bytes read),
 * totals, annotated split points, unsupported ops and every problem that
 * would stop a compile at the given shapes (an unsupported op, a dtype the
 * stage programs' kernels lack on a path that does not fold, an attribute or
 * shape an op rejects), each with its node; or one JSON object. */
#ifndef PIPPY_INSPECT_H
#define PIPPY_INSPECT_H

#include <stdio.h>

#include "shape.h"

pippy_status pippy_inspect(const char *path, const pippy_shape_bind_opts *b, int json, FILE *out);

/* Mark the float initializers that are trainable parameters: those with a
 * differentiable path to a graph output (a causal mask compared with Equal is
 * not; BatchNormalization's running mean and variance are statistics). */
void pippy_mark_trainable(const pippy_graph *g, char *trainable);

#endif
