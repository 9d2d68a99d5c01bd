/* cubackend.h — the cuda backend's internals, shared by its host files (backend/cuda/, the .c files) and its unit
 * test: the context (device, streams, library handles, the shared workspace), the error checks,
 * kernel buffers, and the kernel table. The CUDA C kernels are in kern.h.
 *
 * Kernels run on the context's compute stream in call order; the copy stream moves activations in
 * and out beside them (device.h's queues). A kernel's run cannot fail: a library call that fails
 * at run time records the first such error in the context, and the next sync reports it.
 *
 * Host emulation (tests only, pippy_cuda_open_emulated): host memory, and the kernels that have a
 * host form (kern.h) run their per-element code on the CPU; the others (cuBLASLt, cuDNN, the row
 * kernels) refuse to be created. It checks each kernel's parameters and element code against the
 * CPU reference on machines without a GPU; it is not a GPU. */
#ifndef PIPPY_CUBACKEND_H
#define PIPPY_CUBACKEND_H

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "device.h"
#include "kern.h"

typedef struct {
    int device;
    int emulate;              /* 1: host emulation (see above) */
    int tf32;                 /* TF32 tensor cores allowed (--tf32) */
    pippy_cu_exec exec;       /* {compute stream, emulate} for the kern.h launchers */
    cudaStream_t copy;        /* the copy stream */
    cublasLtHandle_t lt;
    cudnnHandle_t dnn;
    void *ws;                 /* workspace of cuBLASLt / cuDNN calls (one stream: one user at a time) */
    size_t ws_bytes;
    char error[512];          /* the first failure seen at run time, "" when none */
} pippy_cuda_ctx;

static inline pippy_cuda_ctx *pippy_cuda_ctx_of(pippy_backend *b) { return (pippy_cuda_ctx *)b->ctx; }

/* The cuda interface (device.h) and its kernel table. */
extern const pippy_backend_iface pippy_backend_cuda_iface;
const pippy_backend_op *pippy_cuda_op_find(const char *domain, const char *op);

/* A cuda backend on the host, for the unit tests (see above). */
pippy_status pippy_cuda_open_emulated(pippy_backend **b);

/* Errors of CUDA, cuBLAS(Lt) and cuDNN calls: PIPPY_ERR_BACKEND with file, line, call and the
 * library's message. */
pippy_status pippy_cuda_fail(cudaError_t e, const char *call, const char *file, int line);
pippy_status pippy_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line);
pippy_status pippy_cudnn_fail(cudnnStatus_t s, const char *call, const char *file, int line);
#define PIPPY_CUDA_CHECK(call)                                             \
    do {                                                                   \
        cudaError_t pippy_e_ = (call);                                     \
        if (pippy_e_ != cudaSuccess)                                       \
            return pippy_cuda_fail(pippy_e_, #call, __FILE__, __LINE__);   \
    } while (0)
#define PIPPY_CUBLAS_CHECK(call)                                           \
    do {                                                                   \
        cublasStatus_t pippy_e_ = (call);                                  \
        if (pippy_e_ != CUBLAS_STATUS_SUCCESS)                             \
            return pippy_cublas_fail(pippy_e_, #call, __FILE__, __LINE__); \
    } while (0)
#define PIPPY_CUDNN_CHECK(call)                                            \
    do {                                                                   \
        cudnnStatus_t pippy_e_ = (call);                                   \
        if (pippy_e_ != CUDNN_STATUS_SUCCESS)                              \
            return pippy_cudnn_fail(pippy_e_, #call, __FILE__, __LINE__);  \
    } while (0)

/* A failure inside a kernel's run: kept (the first one) for the next sync to report. */
void pippy_cuda_run_error(pippy_cuda_ctx *c, const char *what, const char *detail);

/* Refuse to create a kernel that has no host form under emulation. */
pippy_status pippy_cuda_need_device(const pippy_cuda_ctx *c, const pippy_op_desc *d, const char *what);

/* Device memory a kernel owns (zeroed; host memory under emulation), and a synchronous upload
 * into it at create. */
pippy_status pippy_cuda_buffer(pippy_cuda_ctx *c, size_t n, void **p);
void pippy_cuda_buffer_free(pippy_cuda_ctx *c, void *p);
pippy_status pippy_cuda_upload(pippy_cuda_ctx *c, void *dst, const void *src, size_t n);
/* Grow the shared workspace to at least n bytes (at create only). */
pippy_status pippy_cuda_workspace(pippy_cuda_ctx *c, size_t n);

/* A kernel allocated with room for its family's fields: base.destroy frees what
 * pippy_cuda_kernel_buffer gave it (up to 4 buffers) and the kernel. */
typedef struct {
    pippy_kernel base;
    pippy_cuda_ctx *ctx;
    void *bufs[4];
    int n_bufs;
    void (*release)(pippy_kernel *k); /* the family's own clean-up, NULL: none */
} pippy_cuda_kernel;
pippy_status pippy_cuda_kernel_new(pippy_backend *b, size_t size, pippy_kernel_run_fn run, pippy_cuda_kernel **k);
/* A buffer that lives as long as k; data (host, may be NULL) is uploaded into it. */
pippy_status pippy_cuda_kernel_buffer(pippy_cuda_kernel *k, size_t n, const void *data, void **p);

/* Kernel families (ops_*.c, matmul.c, conv.c): their check and create, used by the table in ops.c. */
#define PIPPY_CUDA_FAMILY(name)                                                                  \
    pippy_status pippy_cuda_check_##name(const pippy_op_desc *d);                                \
    pippy_status pippy_cuda_create_##name(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **k)
PIPPY_CUDA_FAMILY(unary);
PIPPY_CUDA_FAMILY(binary);
PIPPY_CUDA_FAMILY(where);
PIPPY_CUDA_FAMILY(cast);
PIPPY_CUDA_FAMILY(bn);
PIPPY_CUDA_FAMILY(copy);     /* Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, PipeSplit */
PIPPY_CUDA_FAMILY(walk);     /* Transpose, Expand, Tile, Slice */
PIPPY_CUDA_FAMILY(concat);
PIPPY_CUDA_FAMILY(split);
PIPPY_CUDA_FAMILY(gather);
PIPPY_CUDA_FAMILY(trilu);
PIPPY_CUDA_FAMILY(constant); /* Shape, Size, Constant, ConstantOfShape, Range: made at create */
PIPPY_CUDA_FAMILY(reduce);
PIPPY_CUDA_FAMILY(pool);
PIPPY_CUDA_FAMILY(softmax);
PIPPY_CUDA_FAMILY(layernorm);
PIPPY_CUDA_FAMILY(matmul);
PIPPY_CUDA_FAMILY(gemm);
PIPPY_CUDA_FAMILY(conv);

/* The float32-only check the dense families share: inputs in list (n of them) must be float. */
pippy_status pippy_cuda_want_float(const pippy_op_desc *d, const int *list, int n);

#endif
