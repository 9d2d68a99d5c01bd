/* sequence.h — ONNX sequences as far as exporters use them: torch.split exported by the dynamo
 * exporter without its optimizer is SplitToSequence(x, split, axis, keepdims) read by
 * SequenceAt(seq, k) at constant positions. pippyc's values are tensors, so each SequenceAt becomes
 * the tensor it takes out: Slice(x, [start], [start + length], [axis]) of part k (split a chunk
 * size: parts of that size, the last one shorter; split the sizes: those parts; no split: one
 * element each, and with keepdims=0 a Gather at k, which drops the axis). A negative k counts from
 * the end. The SplitToSequence is then read by nothing and pruned. Shape inference calls these as
 * it reaches the nodes (the positions are constants folded by then). */
#ifndef PIPPY_SEQUENCE_H
#define PIPPY_SEQUENCE_H

#include "ir.h"

/* Node i is a SplitToSequence: its sequence must be read only by SequenceAt (and not be an output). */
pippy_status pippy_sequence_check(const pippy_graph *g, int32_t i);

/* Node i, a SequenceAt, becomes the Slice (or Gather) of its SplitToSequence's input, in place. */
pippy_status pippy_sequence_at_lower(pippy_graph *g, int32_t i);

#endif
