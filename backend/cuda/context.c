/* context.c — the cuda backend object (device.h's interface over cubackend.h's context): finding and
 * opening the GPU, its streams and library handles, memory, copies and events, errors, kernel
 * buffers; and the host emulation the unit tests open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cubackend.h"

/* ---- errors ---- */

pippy_status pippy_cuda_fail(cudaError_t e, const char *call, const char *file, int line)
{
    return pippy_fail(PIPPY_ERR_BACKEND, "%s:%d: %s failed: %s (%s)", file, line, call, cudaGetErrorString(e),
                      cudaGetErrorName(e));
}

pippy_status pippy_cublas_fail(cublasStatus_t s, const char *call, const char *file, int line)
{
    return pippy_fail(PIPPY_ERR_BACKEND, "%s:%d: %s failed: %s (%d)", file, line, call, cublasLtGetStatusString(s),
                      (int)s);
}

pippy_status pippy_cudnn_fail(cudnnStatus_t s, const char *call, const char *file, int line)
{
    return pippy_fail(PIPPY_ERR_BACKEND, "%s:%d: %s failed: %s", file, line, call, cudnnGetErrorString(s));
}

void pippy_cuda_run_error(pippy_cuda_ctx *c, const char *what, const char *detail)
{
    if (!c->error[0])
        snprintf(c->error, sizeof c->error, "%s: %s", what, detail);
}

/* The first run-time failure (a kernel's, or a launch's), else OK. */
static pippy_status pippy_cuda_status(pippy_cuda_ctx *c)
{
    if (c->error[0])
        return pippy_fail(PIPPY_ERR_BACKEND, "a CUDA kernel failed while running: %s", c->error);
    if (!c->emulate)
        PIPPY_CUDA_CHECK(cudaPeekAtLastError());
    return PIPPY_OK;
}

pippy_status pippy_cuda_need_device(const pippy_cuda_ctx *c, const pippy_op_desc *d, const char *what)
{
    if (c->emulate)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s's kernel (%s) has no host emulation: it runs on a GPU only", d->op,
                          what);
    return PIPPY_OK;
}

/* ---- buffers ---- */

pippy_status pippy_cuda_buffer(pippy_cuda_ctx *c, size_t n, void **p)
{
    *p = NULL;
    if (c->emulate) {
        *p = calloc(1, n ? n : 1);
        return *p ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    }
    cudaError_t e = cudaMalloc(p, n ? n : 1);
    if (e != cudaSuccess) {
        *p = NULL;
        return pippy_fail(e == cudaErrorMemoryAllocation ? PIPPY_ERR_NOMEM : PIPPY_ERR_BACKEND,
                          "cudaMalloc of %zu bytes on GPU %d failed: %s", n, c->device, cudaGetErrorString(e));
    }
    PIPPY_CUDA_CHECK(cudaMemset(*p, 0, n ? n : 1));
    return PIPPY_OK;
}

void pippy_cuda_buffer_free(pippy_cuda_ctx *c, void *p)
{
    if (!p)
        return;
    if (c->emulate)
        free(p);
    else
        cudaFree(p);
}

pippy_status pippy_cuda_upload(pippy_cuda_ctx *c, void *dst, const void *src, size_t n)
{
    if (!n)
        return PIPPY_OK;
    if (c->emulate) {
        memcpy(dst, src, n);
        return PIPPY_OK;
    }
    PIPPY_CUDA_CHECK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
    return PIPPY_OK;
}

pippy_status pippy_cuda_workspace(pippy_cuda_ctx *c, size_t n)
{
    if (n <= c->ws_bytes)
        return PIPPY_OK;
    if (c->ws && !c->emulate)
        PIPPY_CUDA_CHECK(cudaStreamSynchronize(c->exec.stream)); /* nothing may still use the old one */
    pippy_cuda_buffer_free(c, c->ws);
    c->ws = NULL;
    c->ws_bytes = 0;
    PIPPY_TRY(pippy_cuda_buffer(c, n, &c->ws));
    c->ws_bytes = n;
    return PIPPY_OK;
}

static void pippy_cuda_kernel_destroy(pippy_kernel *kb)
{
    pippy_cuda_kernel *k = (pippy_cuda_kernel *)kb;
    if (k->release)
        k->release(kb);
    for (int i = 0; i < k->n_bufs; i++)
        pippy_cuda_buffer_free(k->ctx, k->bufs[i]);
    free(k);
}

pippy_status pippy_cuda_kernel_new(pippy_backend *b, size_t size, pippy_kernel_run_fn run, pippy_cuda_kernel **out)
{
    pippy_cuda_kernel *k = calloc(1, size);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory creating a cuda kernel");
    k->base.run = run;
    k->base.destroy = pippy_cuda_kernel_destroy;
    k->ctx = pippy_cuda_ctx_of(b);
    *out = k;
    return PIPPY_OK;
}

pippy_status pippy_cuda_kernel_buffer(pippy_cuda_kernel *k, size_t n, const void *data, void **p)
{
    if (k->n_bufs >= (int)(sizeof k->bufs / sizeof k->bufs[0]))
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: a cuda kernel takes at most 4 buffers", __FILE__, __LINE__);
    PIPPY_TRY(pippy_cuda_buffer(k->ctx, n, p));
    k->bufs[k->n_bufs++] = *p;
    return data ? pippy_cuda_upload(k->ctx, *p, data, n) : PIPPY_OK;
}

/* ---- the device ---- */

struct pippy_backend_event {
    cudaEvent_t e;
};

static void pippy_cuda_close(pippy_backend *b)
{
    pippy_cuda_ctx *c = pippy_cuda_ctx_of(b);
    if (!c)
        return;
    if (!c->emulate) {
        if (c->exec.stream)
            cudaStreamSynchronize(c->exec.stream);
        if (c->copy)
            cudaStreamSynchronize(c->copy);
        if (c->dnn)
            cudnnDestroy(c->dnn);
        if (c->lt)
            cublasLtDestroy(c->lt);
    }
    pippy_cuda_buffer_free(c, c->ws);
    if (!c->emulate) {
        if (c->exec.stream)
            cudaStreamDestroy(c->exec.stream);
        if (c->copy)
            cudaStreamDestroy(c->copy);
    }
    free(c);
    b->ctx = NULL;
}

/* Which GPU: the configured one, else rank modulo the count. cudaGetDeviceCount leaves the count
 * untouched when it fails (e.g. cudaErrorInsufficientDriver without a driver), hence the 0. */
static pippy_status pippy_cuda_pick(const pippy_backend_config *cfg, int *dev, int *count)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear it */
        return pippy_fail(PIPPY_ERR_BACKEND,
                          "the cuda backend needs an NVIDIA GPU: cudaGetDeviceCount failed with %s (%s)%s",
                          cudaGetErrorName(e), cudaGetErrorString(e),
                          e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice
                              ? "; this machine has no usable NVIDIA GPU and driver"
                              : "");
    }
    if (n <= 0)
        return pippy_fail(PIPPY_ERR_BACKEND, "the cuda backend needs an NVIDIA GPU: the driver reports none");
    int d = cfg->device >= 0 ? cfg->device : (cfg->rank > 0 ? cfg->rank : 0) % n;
    if (d >= n)
        return pippy_fail(PIPPY_ERR_USAGE, "GPU %d was asked for, this machine has %d (0..%d)", d, n, n - 1);
    *dev = d;
    *count = n;
    return PIPPY_OK;
}

static pippy_status pippy_cuda_open_device(pippy_backend *b, pippy_cuda_ctx *c)
{
    int count = 0;
    PIPPY_TRY(pippy_cuda_pick(&b->config, &c->device, &count));
    PIPPY_CUDA_CHECK(cudaSetDevice(c->device));
    PIPPY_CUDA_CHECK(cudaStreamCreateWithFlags(&c->exec.stream, cudaStreamNonBlocking));
    PIPPY_CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking));
    PIPPY_CUBLAS_CHECK(cublasLtCreate(&c->lt));
    PIPPY_CUDNN_CHECK(cudnnCreate(&c->dnn));
    PIPPY_CUDNN_CHECK(cudnnSetStream(c->dnn, c->exec.stream));
    struct cudaDeviceProp pr;
    PIPPY_CUDA_CHECK(cudaGetDeviceProperties(&pr, c->device));
    snprintf(b->what, sizeof b->what, "cuda: %.120s (GPU %d of %d, sm_%d%d, %.1f GiB; TF32 %s)", pr.name, c->device,
             count, pr.major, pr.minor, (double)pr.totalGlobalMem / (1 << 30), c->tf32 ? "allowed" : "off");
    return PIPPY_OK;
}

static pippy_status pippy_cuda_open(pippy_backend *b)
{
    pippy_cuda_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    c->tf32 = b->config.tf32;
    b->ctx = c;
    pippy_status st = pippy_cuda_open_device(b, c);
    if (st != PIPPY_OK)
        pippy_cuda_close(b);
    return st;
}

static pippy_status pippy_cuda_alloc(pippy_backend *b, size_t n, void **p)
{
    return pippy_cuda_buffer(pippy_cuda_ctx_of(b), n, p);
}

static void pippy_cuda_release(pippy_backend *b, void *p) { pippy_cuda_buffer_free(pippy_cuda_ctx_of(b), p); }

static pippy_status pippy_cuda_pin(pippy_backend *b, void *host, size_t n)
{
    (void)b;
    PIPPY_CUDA_CHECK(cudaHostRegister(host, n, cudaHostRegisterDefault));
    return PIPPY_OK;
}

static void pippy_cuda_unpin(pippy_backend *b, void *host)
{
    (void)b;
    cudaHostUnregister(host);
}

static cudaStream_t pippy_cuda_queue(pippy_cuda_ctx *c, int queue)
{
    return queue == PIPPY_QUEUE_COPY ? c->copy : c->exec.stream;
}

static pippy_status pippy_cuda_copy(pippy_backend *b, void *dst, const void *src, size_t n, int queue)
{
    pippy_cuda_ctx *c = pippy_cuda_ctx_of(b);
    PIPPY_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDefault, pippy_cuda_queue(c, queue)));
    return PIPPY_OK;
}

static pippy_status pippy_cuda_event_new(pippy_backend *b, pippy_backend_event **out)
{
    (void)b;
    pippy_backend_event *e = calloc(1, sizeof *e);
    if (!e)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    cudaError_t r = cudaEventCreateWithFlags(&e->e, cudaEventDisableTiming);
    if (r != cudaSuccess) {
        free(e);
        return pippy_cuda_fail(r, "cudaEventCreateWithFlags", __FILE__, __LINE__);
    }
    *out = e;
    return PIPPY_OK;
}

static void pippy_cuda_event_free(pippy_backend *b, pippy_backend_event *e)
{
    (void)b;
    cudaEventDestroy(e->e);
    free(e);
}

static pippy_status pippy_cuda_record(pippy_backend *b, pippy_backend_event *e, int queue)
{
    PIPPY_CUDA_CHECK(cudaEventRecord(e->e, pippy_cuda_queue(pippy_cuda_ctx_of(b), queue)));
    return PIPPY_OK;
}

static pippy_status pippy_cuda_wait(pippy_backend *b, pippy_backend_event *e, int queue)
{
    PIPPY_CUDA_CHECK(cudaStreamWaitEvent(pippy_cuda_queue(pippy_cuda_ctx_of(b), queue), e->e, 0));
    return PIPPY_OK;
}

static pippy_status pippy_cuda_event_sync(pippy_backend *b, pippy_backend_event *e)
{
    PIPPY_CUDA_CHECK(cudaEventSynchronize(e->e));
    return pippy_cuda_status(pippy_cuda_ctx_of(b));
}

static pippy_status pippy_cuda_query(pippy_backend *b, pippy_backend_event *e, int *done)
{
    cudaError_t r = cudaEventQuery(e->e);
    *done = r == cudaSuccess;
    if (r != cudaSuccess && r != cudaErrorNotReady)
        return pippy_cuda_fail(r, "cudaEventQuery", __FILE__, __LINE__);
    return *done ? pippy_cuda_status(pippy_cuda_ctx_of(b)) : PIPPY_OK;
}

static pippy_status pippy_cuda_sync(pippy_backend *b)
{
    pippy_cuda_ctx *c = pippy_cuda_ctx_of(b);
    PIPPY_CUDA_CHECK(cudaStreamSynchronize(c->exec.stream));
    PIPPY_CUDA_CHECK(cudaStreamSynchronize(c->copy));
    return pippy_cuda_status(c);
}

const pippy_backend_iface pippy_backend_cuda_iface = {
    .name = "cuda",
    .host_memory = 0,
    .open = pippy_cuda_open,
    .close = pippy_cuda_close,
    .op_find = pippy_cuda_op_find,
    .alloc = pippy_cuda_alloc,
    .release = pippy_cuda_release,
    .pin = pippy_cuda_pin,
    .unpin = pippy_cuda_unpin,
    .copy = pippy_cuda_copy,
    .event_new = pippy_cuda_event_new,
    .event_free = pippy_cuda_event_free,
    .record = pippy_cuda_record,
    .wait = pippy_cuda_wait,
    .event_sync = pippy_cuda_event_sync,
    .query = pippy_cuda_query,
    .sync = pippy_cuda_sync,
};

/* ---- host emulation (tests) ---- */

static pippy_status pippy_emu_copy(pippy_backend *b, void *dst, const void *src, size_t n, int queue)
{
    (void)b, (void)queue;
    if (n && dst != src)
        memmove(dst, src, n);
    return PIPPY_OK;
}

static pippy_status pippy_emu_sync(pippy_backend *b) { return pippy_cuda_status(pippy_cuda_ctx_of(b)); }

static const pippy_backend_iface pippy_cuda_emulated_iface = {
    .name = "cuda",
    .host_memory = 0,
    .close = pippy_cuda_close,
    .op_find = pippy_cuda_op_find,
    .alloc = pippy_cuda_alloc,
    .release = pippy_cuda_release,
    .copy = pippy_emu_copy,
    .sync = pippy_emu_sync,
};

pippy_status pippy_cuda_open_emulated(pippy_backend **out)
{
    pippy_backend *b = calloc(1, sizeof *b);
    pippy_cuda_ctx *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    c->emulate = 1;
    c->exec.host = 1;
    b->iface = &pippy_cuda_emulated_iface;
    b->ctx = c;
    b->config.device = -1;
    snprintf(b->what, sizeof b->what, "cuda (host emulation, no GPU)");
    *out = b;
    return PIPPY_OK;
}
