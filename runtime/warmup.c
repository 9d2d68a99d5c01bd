/* warmup.c — every stage's generated functions run before the first step, so that the first
 * microbatch runs at the speed of the others: oneDNN's first executions, the page faults on the
 * weights' mapping, the arena, the stash and the slots, and cold caches are paid at start-up.
 *
 * Two passes. A rank with peers runs the first in a thread of its own, started just before it
 * connects and joined once it is connected: the listener, the handshakes and the waits for the
 * slower ranks hide the one-time costs (first executions, faults on the weights, arena, stash,
 * the kernels' buffers). The second pass runs after connecting, on the thread that runs the
 * steps, right before the first action: it touches every page of the input and output slots
 * (shared memory mapped from a producer faults on first touch) and runs the functions again, so
 * that this core's caches hold the weights (the connection wait, with other processes on the
 * machine, cools them: measured in bench/README.md). A rank alone has only the second pass.
 *
 * The functions run on scratch data: zeroed inputs and outputs of one microbatch, not the
 * stage's slots (which the connection set-up replaces with shared memory, and which a producer
 * may already be writing during the second pass; the slots are only read). Every kernel accepts
 * any data (backend.h: a run error is recorded, never a crash), so zeros are safe. Nothing a
 * run depends on may change; what the passes touch and how it is put back:
 *   - the arena and stash slot 0: scratch, written before being read by every real run;
 *   - the weights: training stages map them writable and pippy::BatchNormalizationTraining
 *     updates its running statistics there, in the part after the trained parameters: that part
 *     is copied before and the pages that differ are written back after (the trained parameters
 *     themselves are only written by the optimizer step, which never runs here);
 *   - the gradients (W's kernels add into G): zeroed again, as the step begins with them;
 *   - kernels with a run count (pippy::DropoutTrain): pippy_kernel_reset;
 *   - a run error a kernel recorded on the zeros: cleared;
 *   - PIPPY_DUMP: off while the warm-up runs.
 * The optimizer step, the collectives and the transport are not touched. Stages on a device are
 * not warmed (their buffers live there). PIPPY_WARMUP=0 turns the warm-up off. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define PIPPY_WARMUP_PAGE 4096

struct pippy_rt_warmup {
    pthread_t thread;
    int started;        /* the first pass runs in the thread */
    pippy_rt *rt;
    uint8_t **scratch;  /* per stage: zeroed inputs and outputs of one microbatch */
    const void ***in;   /* per stage: pointers into the scratch */
    void ***out;
    uint8_t **keep;     /* per stage (training): the weights after the trained parameters */
    int dumping;        /* pippy_stage_dumping before */
};

static int pippy_warmup_wanted(const pippy_rt_stage *sx) { return !sx->dev && sx->p->forward; }

/* Stage i's scratch, its pointer arrays and (training) the copy of its untrained weights. */
static pippy_status pippy_warmup_prepare(struct pippy_rt_warmup *w, int i)
{
    pippy_rt_stage *sx = &w->rt->st[i];
    size_t bytes = 64;
    for (int q = 0; q < sx->n_in; q++)
        bytes += (sx->in[q].bytes + 63) / 64 * 64;
    for (int q = 0; q < sx->n_out; q++)
        bytes += (sx->out[q].bytes + 63) / 64 * 64;
    w->scratch[i] = calloc(1, bytes);
    w->in[i] = calloc((size_t)sx->n_in + 1, sizeof *w->in[i]);
    w->out[i] = calloc((size_t)sx->n_out + 1, sizeof *w->out[i]);
    size_t tail = sx->p->training ? sx->p->weights_bytes - sx->p->trainable_bytes : 0;
    w->keep[i] = tail ? malloc(tail) : NULL;
    if (!w->scratch[i] || !w->in[i] || !w->out[i] || (tail && !w->keep[i]))
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for stage %d's warm-up (%zu bytes)", sx->stage, bytes + tail);
    uint8_t *at = w->scratch[i];
    for (int q = 0; q < sx->n_in; q++) {
        w->in[i][q] = at;
        at += (sx->in[q].bytes + 63) / 64 * 64;
    }
    for (int q = 0; q < sx->n_out; q++) {
        w->out[i][q] = sx->out[q].passthrough >= 0 ? (void *)w->in[i][sx->out[q].passthrough] : at;
        at += (sx->out[q].bytes + 63) / 64 * 64;
    }
    if (tail)
        memcpy(w->keep[i], sx->W + sx->p->trainable_bytes, tail);
    return PIPPY_OK;
}

static void pippy_warmup_runs(struct pippy_rt_warmup *w)
{
    for (int i = 0; i < w->rt->n_st; i++) {
        pippy_rt_stage *sx = &w->rt->st[i];
        const pippy_stage_program *p = sx->p;
        if (!pippy_warmup_wanted(sx))
            continue;
        pippy_stage_fn fns[3] = {p->forward, p->training ? p->backward : NULL, p->training ? p->weight : NULL};
        for (int f = 0; f < 3; f++)
            if (fns[f])
                fns[f](sx->K, sx->A, sx->S, sx->W, sx->G, w->in[i], w->out[i]);
    }
}

static void *pippy_warmup_main(void *arg)
{
    pippy_warmup_runs(arg);
    return NULL;
}

/* Put back what the runs changed (see the top of the file). */
static void pippy_warmup_restore(struct pippy_rt_warmup *w)
{
    pippy_rt *rt = w->rt;
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        if (!pippy_warmup_wanted(sx))
            continue;
        for (int k = 0; k < sx->p->n_kernels; k++)
            pippy_kernel_reset(sx->K[k]);
        if (sx->G)
            memset(sx->G, 0, sx->p->trainable_bytes);
        size_t tail = sx->p->training ? sx->p->weights_bytes - sx->p->trainable_bytes : 0;
        uint8_t *now = sx->W + sx->p->trainable_bytes;
        /* only the pages that changed: the others stay shared with the file (no copy-on-write) */
        for (size_t at = 0; at < tail; at += PIPPY_WARMUP_PAGE) {
            size_t n = tail - at < PIPPY_WARMUP_PAGE ? tail - at : PIPPY_WARMUP_PAGE;
            if (memcmp(now + at, w->keep[i] + at, n) != 0)
                memcpy(now + at, w->keep[i] + at, n);
        }
    }
    pippy_run_error_clear();
    pippy_stage_dumping = w->dumping;
}

static void pippy_warmup_free(struct pippy_rt_warmup *w)
{
    for (int i = 0; i < w->rt->n_st; i++) {
        free(w->scratch[i]);
        free(w->in[i]);
        free(w->out[i]);
        free(w->keep[i]);
    }
    free(w->scratch), free(w->in), free(w->out), free(w->keep);
    free(w);
}

pippy_status pippy_rt_warmup_start(pippy_rt *rt)
{
    const char *env = getenv("PIPPY_WARMUP");
    int any = 0;
    for (int i = 0; i < rt->n_st; i++)
        any |= pippy_warmup_wanted(&rt->st[i]);
    if ((env && !strcmp(env, "0")) || !any || rt->warmup)
        return PIPPY_OK;
    struct pippy_rt_warmup *w = calloc(1, sizeof *w);
    size_t n = (size_t)rt->n_st;
    if (w) {
        w->rt = rt;
        w->scratch = calloc(n, sizeof *w->scratch);
        w->in = calloc(n, sizeof *w->in);
        w->out = calloc(n, sizeof *w->out);
        w->keep = calloc(n, sizeof *w->keep);
    }
    if (!w || !w->scratch || !w->in || !w->out || !w->keep) {
        if (w)
            free(w->scratch), free(w->in), free(w->out), free(w->keep);
        free(w);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the warm-up");
    }
    for (int i = 0; i < rt->n_st; i++) {
        pippy_status st = pippy_warmup_wanted(&rt->st[i]) ? pippy_warmup_prepare(w, i) : PIPPY_OK;
        if (st != PIPPY_OK) {
            pippy_warmup_free(w);
            return st;
        }
    }
    rt->warmup = w;
    w->dumping = pippy_stage_dumping;
    pippy_stage_dumping = 0;
    /* the first pass while connecting (without a thread: only the second) */
    w->started = rt->nranks > 1 && pthread_create(&w->thread, NULL, pippy_warmup_main, w) == 0;
    return PIPPY_OK;
}

/* Read one byte of every page of every slot buffer (a shared one faults on first touch). */
static void pippy_warmup_touch(const pippy_rt *rt)
{
    unsigned sum = 0;
    for (int i = 0; i < rt->n_st; i++) {
        const pippy_rt_stage *sx = &rt->st[i];
        for (int k = 0; k < sx->n_in + sx->n_out; k++) {
            const volatile uint8_t *b = k < sx->n_in ? sx->in[k].buf : sx->out[k - sx->n_in].buf;
            size_t n = k < sx->n_in ? sx->in[k].bytes * (size_t)sx->in[k].slots
                                    : sx->out[k - sx->n_in].bytes * (size_t)sx->out[k - sx->n_in].slots;
            for (size_t at = 0; b && at < n; at += PIPPY_WARMUP_PAGE)
                sum += b[at];
        }
    }
    (void)sum;
}

pippy_status pippy_rt_warmup_finish(pippy_rt *rt, pippy_status st)
{
    struct pippy_rt_warmup *w = rt->warmup;
    if (!w)
        return st;
    double t0 = pippy_rt_now_us();
    if (w->started)
        pthread_join(w->thread, NULL);
    if (st == PIPPY_OK) {
        pippy_warmup_touch(rt);
        pippy_warmup_runs(w);
    }
    pippy_warmup_restore(w);
    rt->warmup_us = pippy_rt_now_us() - t0;
    pippy_warmup_free(w);
    rt->warmup = NULL;
    return st;
}
