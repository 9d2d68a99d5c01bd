/* shape.h — binding symbolic dims, shape inference and constant folding.
 *
 * pippy_shape_bind() gives every graph input a static shape (from --batch
 * and --shape); pippy_shape_infer() walks the nodes in order, asks the
 * backend's shape rule of each op for its outputs, and runs at compile
 * time every node whose inputs are all constants (or, for Shape, whose
 * input shape is known), turning its outputs into constants and marking
 * the node removed. Afterwards every live value has a static shape. */
#ifndef PIPPY_SHAPE_H
#define PIPPY_SHAPE_H

#include "ir.h"

#define PIPPY_MAX_BIND 32

typedef struct {
    int64_t batch;            /* > 0: the leading dim of every graph input */
    int32_t n_shapes;
    struct {
        char name[256];
        int32_t rank;
        int64_t dims[PIPPY_MAX_RANK];
    } shapes[PIPPY_MAX_BIND]; /* --shape NAME=D1xD2x... (wins over batch) */
} pippy_shape_bind_opts;

/* Parse "NAME=2x3x4" into opts (appends). */
pippy_status pippy_shape_parse_arg(pippy_shape_bind_opts *o, const char *arg);

pippy_status pippy_shape_bind(pippy_graph *g, const pippy_shape_bind_opts *o);

/* Infers all shapes; fold != 0 also folds constants. Fails on the first node
 * whose shape rule fails or whose op is unsupported, unless lenient: then such
 * nodes (and whatever depends on them) keep unknown shapes and the walk goes on
 * (for `pippyc inspect`, which lists unsupported ops instead of stopping). */
pippy_status pippy_shape_infer(pippy_graph *g, int fold, int lenient);

/* Infer node i's output types from its inputs (the backend's shape rule) into the graph; d is
 * left filled. Errors name the node. */
pippy_status pippy_node_infer(pippy_graph *g, int32_t i, pippy_op_desc *d);

/* Append node op(in...) -> out (values that exist already), with attributes, and infer its
 * outputs; *node (if not NULL) is its index. */
pippy_status pippy_graph_emit(pippy_graph *g, const char *name, const char *domain, const char *op, int32_t n_in,
                              const int32_t *in, const pippy_attr *attrs, int32_t n_attrs, int32_t n_out,
                              const int32_t *out, int32_t *node);

/* One step of pippy_shape_infer: node i (its inputs' shapes already inferred). */
pippy_status pippy_shape_infer_node(pippy_graph *g, int32_t i, int fold, int lenient);
/* Fails naming the first graph output whose shape is still unknown. */
pippy_status pippy_shape_check_outputs(const pippy_graph *g);

/* Drop nodes none of whose outputs reaches a graph output. Returns how many were dropped. */
int32_t pippy_graph_prune(pippy_graph *g);

#endif
