/* export_onnx.h — write the trained model: the original ONNX file with the data of some
 * initializers replaced (the trained parameters and buffers), everything else kept, so that
 * onnxruntime (or pippyc again) loads and runs it. One exception: a BatchNormalization exported in
 * training mode is written in inference form (training_mode 0, Y only), so the trained model infers
 * with its trained running statistics; pippyc --train trains either form alike.
 *
 * pippy_onnx_export works on the protobuf message (schemas/onnx.proto compiled by protoc-c):
 * fields outside pippyc's subset are kept as protobuf-c's unknown fields and written back
 * unchanged. A replaced initializer gets its new bytes as raw_data (its float_data, or its
 * external-data reference, is dropped); a tied parameter is one initializer, replaced once.
 * Initializers stored as external data in the input are read (mmap) from their files, resolved
 * relative to the model's folder; locations that are absolute or climb out with ".." are refused.
 * When the output model with every initializer inline stays under the inline limit (protobuf
 * cannot encode 2 GiB), everything is written inline into model_out; otherwise every initializer
 * of at least 1 KiB goes to a new external data file "<model_out's name>.data" beside model_out
 * (64-byte aligned; keys location, offset, length). Files are written atomically; the input files
 * are never modified (an output that is one of them is refused).
 *
 * pippy_export_checkpoint is `pippyc export`: it reads OUT/schedule.json (the compile hash, the
 * model, and per stage its "parameters": name, dtype, shape, offset and bytes in the stage's
 * parameter region), the part "params" of every stage's checkpoint file of the step, and writes
 * the model with those values; a parameter listed by several stages (tied) is taken from the
 * lowest stage. The model is found as model.path of schedule.json (absolute, else relative to
 * the current folder, else relative to OUT) — the first candidate whose bytes hash to
 * model.file_hash — or given explicitly. */
#ifndef PIPPY_EXPORT_ONNX_H
#define PIPPY_EXPORT_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

typedef struct {
    const char *name;  /* ONNX initializer name */
    pippy_tdesc t;     /* float only; must equal the initializer's type and shape */
    const void *data;  /* pippy_tdesc_bytes(&t) bytes, little-endian */
} pippy_export_tensor;

typedef struct {
    size_t inline_limit; /* largest model file written with everything inline; 0: 2 GiB - 1 MiB */
} pippy_export_opts;

/* Write model_in with the n tensors' data as model_out (and maybe model_out.data). opts may be NULL.
 * Fails naming the tensor for an unknown name, a name given twice, or a dtype or shape that
 * differs from the model's; names the file for I/O and format errors. */
pippy_status pippy_onnx_export(const char *model_in, const char *model_out, const pippy_export_tensor *t, int n,
                               const pippy_export_opts *opts);

typedef struct {
    const char *out_dir;   /* the compile's output folder (schedule.json) */
    const char *ckpt_dir;  /* the checkpoint folder */
    int64_t step;          /* < 0: the latest */
    const char *output;    /* the .onnx file to write */
    const char *model;     /* NULL: found from schedule.json */
    size_t inline_limit;   /* 0: the default (pippy_export_opts) */
    int quiet;
} pippy_export_args;

pippy_status pippy_export_checkpoint(const pippy_export_args *a);

#endif
