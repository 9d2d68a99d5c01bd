/* tensor_io.h — read and write one tensor per file, the format chosen by the extension:
 *   .pb   ONNX TensorProto (what onnx.numpy_helper.from_array + SerializeToString writes);
 *         read from raw_data or the typed fields, written with dims, data_type, name, raw_data.
 *   .npy  NumPy format 1.0/2.0/3.0, little-endian, C order; dtypes <f4 <f8 <f2 <i4 <i8 |i1 |u1 |b1.
 * Element types are pippy's (ONNX numbering): float, double, float16, int32, int64, int8, uint8,
 * bool. Writes go to a temporary file in the same folder that is then renamed over the target,
 * so an existing file is never left half-written. Errors name the file and what is wrong. */
#ifndef PIPPY_TENSOR_IO_H
#define PIPPY_TENSOR_IO_H

#include "status.h"
#include "tensor.h"

typedef struct {
    pippy_tdesc t;
    void *data;     /* malloc'd, pippy_tdesc_bytes(&t) bytes (NULL when 0 bytes) */
    char name[256]; /* TensorProto name; for .npy the file name without folder and extension */
} pippy_tensor_file;

pippy_status pippy_tensor_read(const char *path, pippy_tensor_file *out);
/* name may be NULL (.npy files keep no name). */
pippy_status pippy_tensor_write(const char *path, const pippy_tdesc *t, const void *data,
                                const char *name);
void pippy_tensor_file_free(pippy_tensor_file *f);

#endif
