/* devmem.c — the rank's backend, and the stages that compute on a device (cuda): their weights,
 * arena and stash in device memory (one allocation each), their input and output slots staged
 * through the host.
 *
 * Backend: --backend LIST, else PIPPY_BACKEND, else the one the programs were compiled for; LIST
 * is tried in order ("cuda,cpu" falls back to the CPU when no GPU is usable, saying so); the GPU
 * is PIPPY_DEVICE, else the rank modulo the GPU count. On the CPU backend none of this file's
 * staging runs (sx->dev stays NULL) and stage programs run as before.
 *
 * Staging: the runtime's slots stay host memory (what UCX and shared memory move), page-locked
 * so that copies are asynchronous; each has a device twin of M slots. Microbatch m of an input is
 * uploaded on the copy queue as soon as it has arrived (pippy_rt_device_arrived, called as the
 * executor reaps the receive), so the upload overlaps the compute of earlier microbatches; the
 * forward waits for it on the compute queue, not on the host. After the forward the copy queue
 * waits for it and downloads the outputs of m; SEND of m goes out once that download is done
 * (pippy_rt_device_out_ready, which the executor polls without blocking). Graph inputs read from
 * files are uploaded whole at start; the end of a run waits for every queue. Nothing here
 * allocates once the run has started. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

struct pippy_rt_dev {
    uint8_t *W_host;             /* the weights' host mapping (init's constants), given back at free */
    uint8_t *W, *A, *S;          /* device memory */
    int n_in, n_out, M;
    uint8_t **din, **dout;       /* per input / output: M device slots (dout[q] NULL: passed through) */
    char *pinned_in, *pinned_out;
    pippy_backend_event **up;    /* [q * M + m]: input q of microbatch m is on the device */
    char *queued;                /* [q * M + m]: that upload is queued */
    pippy_backend_event **fwd;   /* [m]: the forward of m is done */
    pippy_backend_event **down;  /* [m]: the outputs of m are back in their host slots */
    char *downloading;           /* [m]: that download is queued */
};

/* ---- the backend ---- */

pippy_status pippy_rt_backend_open(pippy_rt *rt)
{
    const pippy_stage_program *p = rt->st[0].p;
    for (int i = 1; i < rt->n_st; i++)
        if (strcmp(rt->st[i].p->backend ? rt->st[i].p->backend : "cpu", p->backend ? p->backend : "cpu"))
            return pippy_fail(PIPPY_ERR_FORMAT, "rank %d runs stages compiled for different backends (%s, %s)",
                              rt->rank, p->backend ? p->backend : "cpu", rt->st[i].p->backend);
    const char *env = getenv("PIPPY_BACKEND"), *dev = getenv("PIPPY_DEVICE");
    const char *list = rt->a.backend ? rt->a.backend : env && *env ? env : p->backend ? p->backend : "cpu";
    pippy_backend_config c = {.device = dev && *dev ? atoi(dev) : -1, .rank = rt->rank, .tf32 = p->tf32};
    char names[128], *save = NULL;
    snprintf(names, sizeof names, "%s", list);
    pippy_status st = PIPPY_ERR_USAGE;
    char why[1024] = "";
    for (char *name = strtok_r(names, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        if (why[0])
            fprintf(stderr, "stage%d: %s; trying the %s backend instead\n", p->stage, why, name);
        st = pippy_backend_open(name, &c, &rt->be);
        if (st == PIPPY_OK)
            break;
        snprintf(why, sizeof why, "%s", pippy_last_error());
    }
    if (st != PIPPY_OK && !strchr(list, ','))
        return pippy_error_prefix(st, "backend %s (to fall back to the CPU, run with --backend %s,cpu)", list, list);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "backends %s", list);
    if (!rt->a.quiet && !rt->be->iface->host_memory)
        printf("stage %d (rank %d): backend %s\n", p->stage, rt->rank, rt->be->what);
    return PIPPY_OK;
}

void pippy_rt_backend_close(pippy_rt *rt)
{
    pippy_backend_close(rt->be);
    rt->be = NULL;
}

/* ---- set-up ---- */

static pippy_status pippy_rt_dev_alloc(pippy_rt *rt, size_t n, uint8_t **p, const char *what, int stage)
{
    pippy_status st = pippy_backend_alloc(rt->be, n, (void **)p);
    if (st != PIPPY_OK)
        return pippy_error_prefix(st, "stage %d's %s (%zu bytes) on %s", stage, what, n, rt->be->what);
    return PIPPY_OK;
}

pippy_status pippy_rt_device_setup(pippy_rt *rt, pippy_rt_stage *sx)
{
    if (rt->be->iface->host_memory)
        return PIPPY_OK;
    const pippy_stage_program *p = sx->p;
    if (p->training)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "stage %d: training runs on the CPU backend only", sx->stage);
    pippy_rt_dev *d = calloc(1, sizeof *d);
    if (!d)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    sx->dev = d;
    d->W_host = sx->W;
    PIPPY_TRY(pippy_rt_dev_alloc(rt, p->weights_bytes, &d->W, "weights", sx->stage));
    PIPPY_TRY(pippy_backend_copy(rt->be, d->W, sx->W, p->weights_bytes, PIPPY_QUEUE_COMPUTE));
    PIPPY_TRY(pippy_rt_dev_alloc(rt, p->arena_bytes, &d->A, "arena", sx->stage));
    if (p->stash_bytes)
        PIPPY_TRY(pippy_rt_dev_alloc(rt, p->stash_bytes, &d->S, "stash", sx->stage));
    PIPPY_TRY(pippy_backend_sync(rt->be));
    /* the generated functions take these; the host arena and stash are not needed */
    free(sx->A);
    free(sx->S);
    sx->A = d->A;
    sx->S = d->S;
    sx->W = d->W;
    return PIPPY_OK;
}

static pippy_status pippy_rt_dev_events(pippy_rt *rt, pippy_backend_event **e, int n)
{
    for (int i = 0; i < n; i++)
        PIPPY_TRY(pippy_backend_event_new(rt->be, &e[i]));
    return PIPPY_OK;
}

/* Page-lock a host slot buffer; when the driver refuses, copies still work (synchronously). */
static void pippy_rt_dev_pin(pippy_rt *rt, void *buf, size_t n, char *pinned)
{
    *pinned = n && pippy_backend_pin(rt->be, buf, n) == PIPPY_OK;
    if (n && !*pinned && !rt->a.quiet)
        fprintf(stderr, "rank %d: note: cannot page-lock a %zu-byte slot buffer (%s); its copies will not overlap\n",
                rt->rank, n, pippy_last_error());
}

static pippy_status pippy_rt_dev_stage_slots(pippy_rt *rt, pippy_rt_stage *sx)
{
    pippy_rt_dev *d = sx->dev;
    int M = rt->M;
    d->M = M;
    d->n_in = sx->n_in;
    d->n_out = sx->n_out;
    d->din = calloc((size_t)sx->n_in + 1, sizeof *d->din);
    d->dout = calloc((size_t)sx->n_out + 1, sizeof *d->dout);
    d->pinned_in = calloc((size_t)sx->n_in + 1, 1);
    d->pinned_out = calloc((size_t)sx->n_out + 1, 1);
    d->up = calloc((size_t)(sx->n_in * M) + 1, sizeof *d->up);
    d->queued = calloc((size_t)(sx->n_in * M) + 1, 1);
    d->fwd = calloc((size_t)M, sizeof *d->fwd);
    d->down = calloc((size_t)M, sizeof *d->down);
    d->downloading = calloc((size_t)M, 1);
    if (!d->din || !d->dout || !d->pinned_in || !d->pinned_out || !d->up || !d->queued || !d->fwd || !d->down ||
        !d->downloading)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int q = 0; q < sx->n_in; q++) {
        size_t n = sx->in[q].bytes * (size_t)M;
        PIPPY_TRY(pippy_rt_dev_alloc(rt, n, &d->din[q], "input slots", sx->stage));
        pippy_rt_dev_pin(rt, sx->in[q].buf, n, &d->pinned_in[q]);
    }
    for (int q = 0; q < sx->n_out; q++) {
        const pippy_rt_output *y = &sx->out[q];
        if (y->passthrough >= 0 && y->passthrough < sx->n_in)
            continue; /* the input's host bytes go out as they are */
        size_t n = y->bytes * (size_t)M;
        PIPPY_TRY(pippy_rt_dev_alloc(rt, n, &d->dout[q], "output slots", sx->stage));
        pippy_rt_dev_pin(rt, y->buf, n, &d->pinned_out[q]);
    }
    for (int q = 0; q < sx->n_out; q++)
        if (!(sx->out[q].deferred = calloc((size_t)(M * sx->out[q].n_to) + 1, 1)))
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    PIPPY_TRY(pippy_rt_dev_events(rt, d->up, sx->n_in * M));
    PIPPY_TRY(pippy_rt_dev_events(rt, d->fwd, M));
    PIPPY_TRY(pippy_rt_dev_events(rt, d->down, M));
    for (int q = 0; q < sx->n_in; q++) /* graph inputs: every microbatch is already here */
        if (sx->in[q].from < 0 && !rt->training)
            for (int m = 0; m < M; m++)
                PIPPY_TRY(pippy_rt_device_arrived(rt, sx, q, m));
    return PIPPY_OK;
}

pippy_status pippy_rt_device_slots(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        if (rt->st[i].dev)
            PIPPY_TRY(pippy_rt_dev_stage_slots(rt, &rt->st[i]));
    return PIPPY_OK;
}

/* ---- the run ---- */

pippy_status pippy_rt_device_arrived(pippy_rt *rt, pippy_rt_stage *sx, int q, int m)
{
    pippy_rt_dev *d = sx->dev;
    size_t i = (size_t)q * (size_t)d->M + (size_t)m, n = sx->in[q].bytes;
    if (d->queued[i])
        return PIPPY_OK;
    d->queued[i] = 1;
    PIPPY_TRY(pippy_backend_copy(rt->be, d->din[q] + n * (size_t)m, sx->in[q].buf + n * (size_t)m, n, PIPPY_QUEUE_COPY));
    return pippy_backend_record(rt->be, d->up[i], PIPPY_QUEUE_COPY);
}

pippy_status pippy_rt_device_enter(pippy_rt *rt, pippy_rt_stage *sx, int m)
{
    pippy_rt_dev *d = sx->dev;
    for (int q = 0; q < sx->n_in; q++) {
        size_t i = (size_t)q * (size_t)d->M + (size_t)m;
        PIPPY_TRY(pippy_rt_device_arrived(rt, sx, q, m)); /* no-op when the reap queued it */
        PIPPY_TRY(pippy_backend_wait(rt->be, d->up[i], PIPPY_QUEUE_COMPUTE));
        d->queued[i] = 0; /* the next step's data lands in the same slot */
        sx->in_ptr[q] = d->din[q] + sx->in[q].bytes * (size_t)m;
    }
    for (int q = 0; q < sx->n_out; q++)
        sx->out_ptr[q] = d->dout[q] ? d->dout[q] + sx->out[q].bytes * (size_t)m : NULL;
    return PIPPY_OK;
}

pippy_status pippy_rt_device_leave(pippy_rt *rt, pippy_rt_stage *sx, int m)
{
    pippy_rt_dev *d = sx->dev;
    PIPPY_TRY(pippy_backend_record(rt->be, d->fwd[m], PIPPY_QUEUE_COMPUTE));
    PIPPY_TRY(pippy_backend_wait(rt->be, d->fwd[m], PIPPY_QUEUE_COPY));
    for (int q = 0; q < sx->n_out; q++) {
        if (!d->dout[q])
            continue;
        size_t n = sx->out[q].bytes;
        PIPPY_TRY(pippy_backend_copy(rt->be, sx->out[q].buf + n * (size_t)m, d->dout[q] + n * (size_t)m, n,
                                     PIPPY_QUEUE_COPY));
    }
    PIPPY_TRY(pippy_backend_record(rt->be, d->down[m], PIPPY_QUEUE_COPY));
    d->downloading[m] = 1;
    return PIPPY_OK;
}

pippy_status pippy_rt_device_out_ready(pippy_rt *rt, pippy_rt_stage *sx, int m, int block, int *ready)
{
    pippy_rt_dev *d = sx->dev;
    *ready = 1;
    if (!d->downloading[m])
        return PIPPY_OK; /* nothing queued: an edited action list sends before computing */
    if (block)
        PIPPY_TRY(pippy_backend_event_sync(rt->be, d->down[m]));
    else
        PIPPY_TRY(pippy_backend_query(rt->be, d->down[m], ready));
    if (*ready)
        d->downloading[m] = 0;
    return PIPPY_OK;
}

pippy_status pippy_rt_device_sync(pippy_rt *rt)
{
    if (!rt->be || rt->be->iface->host_memory)
        return PIPPY_OK;
    for (int i = 0; i < rt->n_st; i++)
        if (rt->st[i].dev)
            memset(rt->st[i].dev->downloading, 0, (size_t)rt->st[i].dev->M);
    return pippy_backend_sync(rt->be);
}

/* ---- the end ---- */

static void pippy_rt_dev_free_events(pippy_rt *rt, pippy_backend_event **e, int n)
{
    for (int i = 0; e && i < n; i++)
        pippy_backend_event_free(rt->be, e[i]);
    free(e);
}

void pippy_rt_device_free(pippy_rt *rt, pippy_rt_stage *sx)
{
    pippy_rt_dev *d = sx->dev;
    if (!d)
        return;
    pippy_backend_sync(rt->be);
    for (int q = 0; d->din && q < d->n_in; q++) {
        pippy_backend_release(rt->be, d->din[q]);
        if (d->pinned_in[q])
            pippy_backend_unpin(rt->be, sx->in[q].buf);
    }
    for (int q = 0; d->dout && q < d->n_out; q++) {
        pippy_backend_release(rt->be, d->dout[q]);
        if (d->pinned_out[q])
            pippy_backend_unpin(rt->be, sx->out[q].buf);
    }
    pippy_rt_dev_free_events(rt, d->up, d->n_in * d->M);
    pippy_rt_dev_free_events(rt, d->fwd, d->M);
    pippy_rt_dev_free_events(rt, d->down, d->M);
    for (int q = 0; q < sx->n_out; q++) {
        free(sx->out[q].deferred);
        sx->out[q].deferred = NULL;
    }
    free(d->din), free(d->dout), free(d->pinned_in), free(d->pinned_out), free(d->queued), free(d->downloading);
    pippy_backend_release(rt->be, d->W);
    pippy_backend_release(rt->be, d->A);
    pippy_backend_release(rt->be, d->S);
    sx->W = d->W_host;
    sx->A = sx->S = NULL;
    free(d);
    sx->dev = NULL;
}
