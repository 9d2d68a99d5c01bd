/* batch.h — the batch as a symbol in static-batch exports.
 *
 * torch.onnx.export without dynamic_axes bakes the batch size into the shape
 * constants of Reshape, Expand, Tile, ConstantOfShape, Range and Slice (directly,
 * or through Unsqueeze/Concat/Gather chains that folding reduces to constants).
 * Compiled at a microbatch size, such a model fails ("cannot reshape float[4,..]
 * to [16,..]"). pippy_batch_infer() binds and infers the graph at the microbatch
 * size like pippy_shape_bind + pippy_shape_infer, and on the way rewrites every
 * shape constant that carries the export batch.
 *
 * How: a copy of the graph is inferred in lockstep at the batch the model was
 * exported with (where its constants are consistent). Comparing the two shapes
 * of each value tells which axis carries the batch (and, inside a merged dim such
 * as B*T, where). At each of the ops above, the constant the export-batch copy
 * folded to is rewritten for the microbatch:
 *   Reshape   the output dim that holds the input's batch (found from the row-major
 *             layout: the elements before the batch are the same in both shapes);
 *   Expand    dims aligned with the input's batch axis; Tile: repeats leave it;
 *   Expand / Tile / ConstantOfShape / Range: an element equal to the export batch
 *             where no input carries it (a constant broadcast over the batch) — only
 *             when that is unambiguous: one such element, and the batch size is no
 *             other dimension of the model; otherwise an error says which node and
 *             value, and points to --batch-dims or a dynamic-batch export;
 *   Slice     of the batch axis: must take all of it (then it clamps), else an error.
 * A shape that already follows the batch (a dynamic export's Shape -> Gather
 * chain) is left alone. The rewritten constant is a new value read by that node
 * only; what computed the old one is pruned later.
 *
 * --batch-dims NODE=K[,NODE=K...] overrides the choice at one node: element K of its
 * shape input (Range: its limit) is the batch, or K = none: the node has none. */
#ifndef PIPPY_BATCH_H
#define PIPPY_BATCH_H

#include "shape.h"

#define PIPPY_MAX_BATCH_DIMS 64

typedef struct {
    int32_t n;
    struct {
        char node[256];
        int32_t elem; /* -1: none */
    } at[PIPPY_MAX_BATCH_DIMS];
} pippy_batch_dims;

/* Parse "NODE=K[,NODE=K...]" (K a whole number or "none") into d (appends). */
pippy_status pippy_batch_dims_parse(pippy_batch_dims *d, const char *arg);

/* The batch the model's constants were made for: dim 0 of the first graph input whose dim 0 is
 * fixed in the file, else 0 (a dynamic batch). */
int64_t pippy_batch_exported(const pippy_graph *g);

typedef struct {
    int64_t export_batch;     /* the copy's batch (0: none was needed) */
    int32_t rewritten;        /* shape inputs replaced */
    char first[1024];         /* the first rewrite, for the summary ("node: [8,16] -> [2,16]") */
} pippy_batch_report;

/* Bind g at micro (inputs' leading dim mb) and infer shapes with folding, rewriting the shape
 * constants that carry the export batch (export_batch, from the file or full->batch) for mb.
 * full binds the same inputs at the export batch. dims may be NULL. */
pippy_status pippy_batch_infer(pippy_graph *g, const pippy_shape_bind_opts *full, const pippy_shape_bind_opts *micro,
                               int64_t export_batch, int64_t mb, const pippy_batch_dims *dims,
                               pippy_batch_report *report);

#endif
