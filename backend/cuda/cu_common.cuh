/* cu_common.cuh — what the .cu files of the cuda backend share: the one-thread-per-element launch
 * (a grid-stride loop on the device, a plain loop on the host for the emulation) and dtype
 * dispatch. Included by .cu files only. */
#ifndef PIPPY_CUDA_CU_COMMON_CUH
#define PIPPY_CUDA_CU_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include "kern.h"
#include "tensor.h"

#define PIPPY_CU_BLOCK 256

template <typename F> __global__ void pippy_cu_each_kernel(F f, int64_t n)
{
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        f(i);
}

/* f(i) for every i < n: on x->stream, or on the host when x->host. */
template <typename F> void pippy_cu_each(const pippy_cu_exec *x, int64_t n, F f)
{
    if (n <= 0)
        return;
    if (x->host) {
        for (int64_t i = 0; i < n; i++)
            f(i);
        return;
    }
    int64_t blocks = (n + PIPPY_CU_BLOCK - 1) / PIPPY_CU_BLOCK;
    if (blocks > (1 << 20))
        blocks = 1 << 20;
    pippy_cu_each_kernel<<<(unsigned)blocks, PIPPY_CU_BLOCK, 0, x->stream>>>(f, n);
}

/* Offset of row-major index i over dims[0..rank) with strides str. */
__host__ __device__ inline int64_t pippy_cu_offset(int64_t i, int rank, const int64_t *dims, const int64_t *str)
{
    int64_t off = 0;
    for (int d = rank - 1; d >= 0; d--) {
        int64_t q = i / dims[d];
        off += (i - q * dims[d]) * str[d];
        i = q;
    }
    return off;
}

template <typename T> struct pippy_cu_is_float_t { static const bool v = false; };
template <> struct pippy_cu_is_float_t<float> { static const bool v = true; };
template <> struct pippy_cu_is_float_t<double> { static const bool v = true; };

/* Runs BODY with T the C type of ONNX dtype DT (the numeric types and bool). */
#define PIPPY_CU_NUMERIC(DT, T, ...)                               \
    switch (DT) {                                                  \
    case PIPPY_DT_FLOAT: { typedef float T; __VA_ARGS__; } break;  \
    case PIPPY_DT_DOUBLE: { typedef double T; __VA_ARGS__; } break; \
    case PIPPY_DT_INT8: { typedef int8_t T; __VA_ARGS__; } break;  \
    case PIPPY_DT_UINT8: { typedef uint8_t T; __VA_ARGS__; } break; \
    case PIPPY_DT_INT32: { typedef int32_t T; __VA_ARGS__; } break; \
    case PIPPY_DT_INT64: { typedef int64_t T; __VA_ARGS__; } break; \
    default: break;                                                \
    }

/* Runs BODY with T an unsigned type of ESIZE bytes (1, 2, 4, 8). */
#define PIPPY_CU_BYSIZE(ESIZE, T, ...)                      \
    switch (ESIZE) {                                        \
    case 1: { typedef uint8_t T; __VA_ARGS__; } break;      \
    case 2: { typedef uint16_t T; __VA_ARGS__; } break;     \
    case 4: { typedef uint32_t T; __VA_ARGS__; } break;     \
    case 8: { typedef uint64_t T; __VA_ARGS__; } break;     \
    default: break;                                         \
    }

#endif
