/* train.h — turns a forward model into the graph a training compile differentiates.
 *
 *   - The loss: `--loss mse|cross_entropy` appends the loss against a new graph input (the
 *     labels: the output's shape for mse; int64 class indices, the output's shape without its
 *     last axis, for cross_entropy, whose classes are on the last axis) — mean over the whole
 *     microbatch, as torch's MSELoss / F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)).
 *     Without --loss the model's own output is the loss: it must be one float scalar (a model
 *     exported with its loss: SoftmaxCrossEntropyLoss, or Sub/Pow/ReduceMean).
 *     The loss becomes the only graph output.
 *   - Modes that differ from inference: every BatchNormalization computes the statistics of its
 *     microbatch and updates its running statistics in place (pippy::BatchNormalizationTraining,
 *     whose running mean and variance become state: saved, not trained); a Dropout whose
 *     training_mode input is true really drops (pippy::DropoutTrain). */
#ifndef PIPPY_TRAIN_H
#define PIPPY_TRAIN_H

#include "ir.h"

typedef struct {
    const char *loss;    /* "mse", "cross_entropy", or NULL: the model's own scalar output */
    const char *labels;  /* the new graph input of --loss */
    uint64_t seed;       /* of training Dropout masks */
} pippy_train_opts;

/* After shape inference. On success *loss is the loss value. */
pippy_status pippy_train_prepare(pippy_graph *g, const pippy_train_opts *o, int32_t *loss);

#endif
