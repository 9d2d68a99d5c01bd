/* device.c — the backend object (device.h): the cpu backend, lookup by name, and the calls
 * that forward to a backend's interface.
 *
 * The cuda interface lives in libpippy_backend_cuda.a (make CUDA=1). This file refers to it
 * weakly, so that programs built without CUDA link and report "not in this build"; a CUDA build
 * links with -Wl,-u,pippy_backend_cuda_iface, which pulls the library's definition in. */
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const pippy_backend_iface pippy_backend_cuda_iface __attribute__((weak));

/* ---- cpu ---- */

static pippy_status pippy_cpu_open(pippy_backend *b)
{
    snprintf(b->what, sizeof b->what, "cpu (oneDNN, %d thread%s)", pippy_backend_threads(),
             pippy_backend_threads() == 1 ? "" : "s");
    return PIPPY_OK;
}

static pippy_status pippy_cpu_alloc(pippy_backend *b, size_t n, void **p)
{
    (void)b;
    *p = NULL;
    if (posix_memalign(p, 64, n ? n : 64) != 0)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    memset(*p, 0, n ? n : 64);
    return PIPPY_OK;
}

static void pippy_cpu_release(pippy_backend *b, void *p)
{
    (void)b;
    free(p);
}

static pippy_status pippy_cpu_copy(pippy_backend *b, void *dst, const void *src, size_t n, int queue)
{
    (void)b, (void)queue;
    if (n && dst != src)
        memcpy(dst, src, n);
    return PIPPY_OK;
}

/* op_find NULL: the kernels are the registry's own (pippy_kernel_create). */
const pippy_backend_iface pippy_backend_cpu_iface = {
    .name = "cpu",
    .host_memory = 1,
    .open = pippy_cpu_open,
    .alloc = pippy_cpu_alloc,
    .release = pippy_cpu_release,
    .copy = pippy_cpu_copy,
};

/* ---- lookup ---- */

const pippy_backend_iface *pippy_backend_find(const char *name)
{
    if (!name || !strcmp(name, "cpu"))
        return &pippy_backend_cpu_iface;
    if (!strcmp(name, "cuda")) {
        if (&pippy_backend_cuda_iface)
            return &pippy_backend_cuda_iface;
        pippy_fail(PIPPY_ERR_UNSUPPORTED, "the cuda backend is not in this build: build pippyc with `make CUDA=1` "
                                          "(needs the CUDA toolkit, cuBLAS and cuDNN) and compile with --backend cuda");
        return NULL;
    }
    pippy_fail(PIPPY_ERR_USAGE, "unknown backend '%s' (known: cpu, cuda)", name);
    return NULL;
}

pippy_status pippy_backend_open(const char *name, const pippy_backend_config *c, pippy_backend **out)
{
    *out = NULL;
    const pippy_backend_iface *bi = pippy_backend_find(name);
    if (!bi)
        return pippy_error_prefix(PIPPY_ERR_UNSUPPORTED, "backend %s", name);
    pippy_backend *b = calloc(1, sizeof *b);
    if (!b)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    b->iface = bi;
    b->config = c ? *c : (pippy_backend_config){.device = -1};
    snprintf(b->what, sizeof b->what, "%s", bi->name);
    pippy_status st = bi->open ? bi->open(b) : PIPPY_OK;
    if (st != PIPPY_OK) {
        free(b);
        return st;
    }
    *out = b;
    return PIPPY_OK;
}

void pippy_backend_close(pippy_backend *b)
{
    if (!b)
        return;
    if (b->iface->close)
        b->iface->close(b);
    free(b);
}

/* ---- kernels ---- */

static pippy_status pippy_backend_op_of(const pippy_backend_iface *bi, const pippy_op_desc *d,
                                        const pippy_backend_op **op)
{
    *op = NULL;
    if (!bi->op_find)
        return PIPPY_OK;
    *op = bi->op_find(d->domain, d->op);
    if (!*op)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s': op %s%s%s has no kernel on the %s backend",
                          d->name ? d->name : "", d->domain && d->domain[0] ? d->domain : "",
                          d->domain && d->domain[0] ? "::" : "", d->op, bi->name);
    return PIPPY_OK;
}

pippy_status pippy_backend_check_op(const pippy_backend_iface *bi, const pippy_op_desc *d)
{
    const pippy_backend_op *op;
    PIPPY_TRY(pippy_backend_op_of(bi, d, &op));
    if (!op) /* the registry's kernels: every op it knows */
        return pippy_op_find(d->domain, d->op)
                   ? PIPPY_OK
                   : pippy_fail(PIPPY_ERR_UNSUPPORTED, "node '%s': op %s is not supported", d->name ? d->name : "",
                                d->op);
    pippy_status st = op->check ? op->check(d) : PIPPY_OK;
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "node '%s' (%s) on the %s backend", d->name ? d->name : "", d->op, bi->name);
    return PIPPY_OK;
}

pippy_status pippy_backend_kernel_create(pippy_backend *b, const pippy_op_desc *d, pippy_kernel **k)
{
    const pippy_backend_op *op;
    *k = NULL;
    PIPPY_TRY(pippy_backend_op_of(b->iface, d, &op));
    if (!op)
        return pippy_kernel_create(d, k);
    pippy_status st = op->check ? op->check(d) : PIPPY_OK;
    if (st == PIPPY_OK)
        st = op->create(b, d, k);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "node '%s' (%s) on %s", d->name ? d->name : "", d->op, b->iface->name);
    return PIPPY_OK;
}

/* ---- memory and queues ---- */

pippy_status pippy_backend_alloc(pippy_backend *b, size_t n, void **p) { return b->iface->alloc(b, n, p); }

void pippy_backend_release(pippy_backend *b, void *p)
{
    if (p)
        b->iface->release(b, p);
}

pippy_status pippy_backend_pin(pippy_backend *b, void *host, size_t n)
{
    return b->iface->pin && host && n ? b->iface->pin(b, host, n) : PIPPY_OK;
}

void pippy_backend_unpin(pippy_backend *b, void *host)
{
    if (b->iface->unpin && host)
        b->iface->unpin(b, host);
}

pippy_status pippy_backend_copy(pippy_backend *b, void *dst, const void *src, size_t n, int queue)
{
    return n ? b->iface->copy(b, dst, src, n, queue) : PIPPY_OK;
}

pippy_status pippy_backend_event_new(pippy_backend *b, pippy_backend_event **e)
{
    *e = NULL;
    return b->iface->event_new ? b->iface->event_new(b, e) : PIPPY_OK;
}

void pippy_backend_event_free(pippy_backend *b, pippy_backend_event *e)
{
    if (b->iface->event_free && e)
        b->iface->event_free(b, e);
}

pippy_status pippy_backend_record(pippy_backend *b, pippy_backend_event *e, int queue)
{
    return b->iface->record && e ? b->iface->record(b, e, queue) : PIPPY_OK;
}

pippy_status pippy_backend_wait(pippy_backend *b, pippy_backend_event *e, int queue)
{
    return b->iface->wait && e ? b->iface->wait(b, e, queue) : PIPPY_OK;
}

pippy_status pippy_backend_event_sync(pippy_backend *b, pippy_backend_event *e)
{
    return b->iface->event_sync && e ? b->iface->event_sync(b, e) : PIPPY_OK;
}

pippy_status pippy_backend_query(pippy_backend *b, pippy_backend_event *e, int *done)
{
    *done = 1;
    return b->iface->query && e ? b->iface->query(b, e, done) : PIPPY_OK;
}

pippy_status pippy_backend_sync(pippy_backend *b) { return b->iface->sync ? b->iface->sync(b) : PIPPY_OK; }
