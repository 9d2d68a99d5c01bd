/* device.h — the backend object: one device that stage programs compute on.
 *
 * A pippy_backend is an instance of an interface with its own context (ggml's {iface, context}):
 *   "cpu"   oneDNN and plain C kernels on host memory (backend/cpu/); every buffer is host memory
 *           and nothing is copied;
 *   "cuda"  one GPU (backend/cuda/, built by `make CUDA=1`): device memory, a compute stream and a
 *           copy stream, cuBLASLt / cuDNN handles and CUDA C kernels.
 * The op table of shape rules and costs stays one table (backend.h: pippy_op_find, infer, flops);
 * each backend brings its own kernel table: per op a check (what it can run, decided without a
 * device, so the compiler can refuse a model early) and a create (the kernel, made on the device).
 * A stage program names its backend (`pippyc --backend cuda`); the runtime opens it by name and
 * passes it to the program's init, which creates every kernel with pippy_backend_kernel_create.
 * Kernels keep their run(k, in, out): the CPU path has no extra indirection at run time. */
#ifndef PIPPY_DEVICE_H
#define PIPPY_DEVICE_H

#include <stddef.h>

#include "backend.h"

typedef struct pippy_backend pippy_backend;
typedef struct pippy_backend_event pippy_backend_event;

/* Queues of a device: kernels run on COMPUTE in call order; COPY moves data beside them. */
enum { PIPPY_QUEUE_COMPUTE = 0, PIPPY_QUEUE_COPY = 1 };

typedef struct {
    int device;  /* GPU index; -1: rank modulo the number of GPUs */
    int rank;    /* the process's rank, for that choice and for messages */
    int tf32;    /* 1: float matmuls and convolutions may use TF32 tensor cores (cuda) */
} pippy_backend_config;

/* One op of a backend's kernel table. */
typedef struct {
    const char *op;
    const char *domain; /* "" for ONNX */
    /* Can this backend run d (infer already filled d->out)? Decided without a device; records a
     * message (dtype, attribute, ...) when not. NULL: every desc infer accepts. */
    pippy_status (*check)(const pippy_op_desc *d);
    pippy_status (*create)(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **k);
} pippy_backend_op;

typedef struct {
    const char *name;
    int host_memory; /* 1: buffers are host memory, kernels take host pointers (nothing to copy) */
    pippy_status (*open)(pippy_backend *b);
    void (*close)(pippy_backend *b);
    const pippy_backend_op *(*op_find)(const char *domain, const char *op);
    /* Memory the kernels take (zeroed). */
    pippy_status (*alloc)(pippy_backend *b, size_t n, void **p);
    void (*release)(pippy_backend *b, void *p);
    /* Page-lock host memory so that copies from and to it run asynchronously (NULL: nothing). */
    pippy_status (*pin)(pippy_backend *b, void *host, size_t n);
    void (*unpin)(pippy_backend *b, void *host);
    /* Queue a copy of n bytes (host or device memory, either way) on queue. */
    pippy_status (*copy)(pippy_backend *b, void *dst, const void *src, size_t n, int queue);
    /* Events order the queues: record on one, make another (wait) or the host (sync) wait. */
    pippy_status (*event_new)(pippy_backend *b, pippy_backend_event **e);
    void (*event_free)(pippy_backend *b, pippy_backend_event *e);
    pippy_status (*record)(pippy_backend *b, pippy_backend_event *e, int queue);
    pippy_status (*wait)(pippy_backend *b, pippy_backend_event *e, int queue);
    pippy_status (*event_sync)(pippy_backend *b, pippy_backend_event *e);
    pippy_status (*query)(pippy_backend *b, pippy_backend_event *e, int *done); /* without waiting */
    pippy_status (*sync)(pippy_backend *b); /* the host waits for every queue */
} pippy_backend_iface;

struct pippy_backend {
    const pippy_backend_iface *iface;
    void *ctx;                   /* the backend's own state */
    pippy_backend_config config;
    char what[256];              /* "cpu", "cuda: NVIDIA H200 (device 0, sm_90, 140 GB)" */
};

extern const pippy_backend_iface pippy_backend_cpu_iface;

/* The interface named name ("cpu", "cuda"), or NULL with a message: unknown name, or a backend
 * this program was built without. */
const pippy_backend_iface *pippy_backend_find(const char *name);

/* Open the backend name: NULL config means the defaults. On failure *b is NULL and the message
 * says why (for cuda without a GPU: what cudaGetDeviceCount said). */
pippy_status pippy_backend_open(const char *name, const pippy_backend_config *c, pippy_backend **b);
void pippy_backend_close(pippy_backend *b);

/* Is op d supported by backend bi (its kernel table and its check)? The compiler asks this of
 * every node of a stage compiled for bi; the message names the node and the op. */
pippy_status pippy_backend_check_op(const pippy_backend_iface *bi, const pippy_op_desc *d);

/* Create d's kernel on b (the generated stage_init calls this for every node). */
pippy_status pippy_backend_kernel_create(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **k);

/* Memory and queues; on a host-memory backend alloc is posix_memalign + zero, the copies are
 * memcpy and the events do nothing. */
pippy_status pippy_backend_alloc(pippy_backend *b, size_t n, void **p);
void pippy_backend_release(pippy_backend *b, void *p);
pippy_status pippy_backend_pin(pippy_backend *b, void *host, size_t n);
void pippy_backend_unpin(pippy_backend *b, void *host);
pippy_status pippy_backend_copy(pippy_backend *b, void *dst, const void *src, size_t n, int queue);
pippy_status pippy_backend_event_new(pippy_backend *b, pippy_backend_event **e);
void pippy_backend_event_free(pippy_backend *b, pippy_backend_event *e);
pippy_status pippy_backend_record(pippy_backend *b, pippy_backend_event *e, int queue);
pippy_status pippy_backend_wait(pippy_backend *b, pippy_backend_event *e, int queue);
pippy_status pippy_backend_event_sync(pippy_backend *b, pippy_backend_event *e);
/* *done = 1 when what e marks has happened (always on a host-memory backend). */
pippy_status pippy_backend_query(pippy_backend *b, pippy_backend_event *e, int *done);
pippy_status pippy_backend_sync(pippy_backend *b);

#endif
