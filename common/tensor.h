/* tensor.h — element types and tensor descriptors shared by every layer.
 *
 * Element types use the ONNX TensorProto.DataType numbers so that no table is
 * needed between the model file, the IR, the backend and tensor files. */
#ifndef PIPPY_TENSOR_H
#define PIPPY_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum {
    PIPPY_DT_UNDEFINED = 0, /* also: an absent optional input */
    PIPPY_DT_FLOAT = 1,
    PIPPY_DT_UINT8 = 2,
    PIPPY_DT_INT8 = 3,
    PIPPY_DT_INT32 = 6,
    PIPPY_DT_INT64 = 7,
    PIPPY_DT_BOOL = 9,
    PIPPY_DT_FLOAT16 = 10,
    PIPPY_DT_DOUBLE = 11,
};

#define PIPPY_MAX_RANK 8

/* A tensor's type and static shape. rank 0 is a scalar (one element). */
typedef struct {
    int32_t dtype;
    int32_t rank;
    int64_t dims[PIPPY_MAX_RANK];
} pippy_tdesc;

size_t pippy_dtype_size(int32_t dtype);        /* 0 for unknown */
const char *pippy_dtype_name(int32_t dtype);   /* "float", "int64", ... */
int64_t pippy_tdesc_numel(const pippy_tdesc *t);
size_t pippy_tdesc_bytes(const pippy_tdesc *t);
int pippy_tdesc_equal(const pippy_tdesc *a, const pippy_tdesc *b);
/* "float[4,784]" into buf; returns buf. */
char *pippy_tdesc_str(const pippy_tdesc *t, char *buf, size_t n);
/* "[2,-1,0]" (n values) into buf; returns buf. */
char *pippy_ints_str(const int64_t *v, int n, char *buf, size_t cap);

#endif
