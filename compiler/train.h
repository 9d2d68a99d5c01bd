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
 *     training_mode input is true really drops (pippy::DropoutTrain).
 *   - What torch.onnx's export did to parameters is undone, so that the compile trains the
 *     parameters PyTorch trains:
 *       - Value de-duplication: parameters with equal values (a fresh model's LayerNorm weights,
 *         its zero biases) are stored once, and every other name is an Identity of that
 *         initializer. A parameter PyTorch shares is one initializer that each user reads
 *         directly, so an Identity of an initializer is a parameter of its own: it becomes one,
 *         with a copy of the values.
 *       - Folded transposes: a Linear on a 3-D input exports as MatMul by its weight's transpose,
 *         which constant folding stores as a new initializer "onnx::MatMul_N". For a tied weight
 *         (GPT-2's lm_head is its token embedding) the tie is lost. An "onnx::" 2-D initializer
 *         equal bit for bit to the transpose of another parameter becomes Transpose(that one)
 *         again, so both uses train one parameter. (A constant initializer, all its values
 *         equal, is never taken for a transpose.)
 *   - An export of torch.onnx.export(dynamo=True) names its parameters in the graph signature it
 *     stores (graph metadata "pkg.torch.export.ExportedProgram.graph_signature": lines
 *     "<placeholder>: PARAMETER target='<name>'"). Only those initializers train; the others (its
 *     BUFFERs, and constants it stores as initializers: an epsilon, a rotary table) are state:
 *     kept, saved, not trained (BatchNorm still updates its running statistics). A parameter of the signature with no initializer of its
 *     name is tied to another (one tensor in PyTorch). With its graph optimizer on (optimize=True,
 *     the default) the exporter folds parameters into new initializers (a Linear weight's transpose
 *     as "val_N") and stores equal parameters once, which cannot be told apart from a tie: such an
 *     export (parameters missing and other float initializers present) is refused for training,
 *     naming optimize=False.
 *   - --padding-idx TABLE=ROW: torch.nn.Embedding(padding_idx=ROW) gives that row no gradient,
 *     which the export does not record (a plain Gather). Every Gather reading the parameter TABLE
 *     as its data gets "pippy.padding_idx", which its GatherGrad keeps (backend.h). */
#ifndef PIPPY_TRAIN_H
#define PIPPY_TRAIN_H

#include "ir.h"

/* Parameters of the export untied (Identity of an initializer) and re-tied (folded transposes). */
typedef struct {
    int untied, retied;
    char untied_first[512], retied_first[512]; /* the first of each, named */
    int frozen, tied_params; /* a torch.export signature: initializers not trained, parameters stored once */
} pippy_train_report;

typedef struct {
    const char *loss;    /* "mse", "cross_entropy", or NULL: the model's own scalar output */
    const char *labels;  /* the new graph input of --loss */
    uint64_t seed;       /* of training Dropout masks */
    pippy_train_report *report; /* what was undone of the export (NULL: not wanted) */
    const char *padding_idx;    /* --padding-idx TABLE=ROW[,TABLE=ROW...], or NULL */
} pippy_train_opts;

/* After shape inference. On success *loss is the loss value. */
pippy_status pippy_train_prepare(pippy_graph *g, const pippy_train_opts *o, int32_t *loss);

#endif
