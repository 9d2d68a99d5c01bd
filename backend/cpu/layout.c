/* layout.c — the layout of a dense kernel's constant weights, chosen by measurement
 * (see layout.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "layout.h"

/* ---- the per-process cache of choices ---- */

#define PIPPY_LAYOUT_CACHE 256

static pthread_mutex_t pippy_layout_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int n;
    uint64_t key[PIPPY_LAYOUT_CACHE];
    unsigned char plain[PIPPY_LAYOUT_CACHE];
    int measured, chose_plain;
    double ms;
} pippy_layout_cache;

/* -1: not measured yet */
static int pippy_layout_lookup(uint64_t key)
{
    int r = -1;
    pthread_mutex_lock(&pippy_layout_mu);
    for (int i = 0; i < pippy_layout_cache.n && r < 0; i++)
        if (pippy_layout_cache.key[i] == key)
            r = pippy_layout_cache.plain[i];
    pthread_mutex_unlock(&pippy_layout_mu);
    return r;
}

static void pippy_layout_store(uint64_t key, int plain, double ms)
{
    pthread_mutex_lock(&pippy_layout_mu);
    int n = pippy_layout_cache.n;
    if (n < PIPPY_LAYOUT_CACHE) { /* full: the shape is measured again next time */
        pippy_layout_cache.key[n] = key;
        pippy_layout_cache.plain[n] = (unsigned char)plain;
        pippy_layout_cache.n = n + 1;
    }
    pippy_layout_cache.measured++;
    pippy_layout_cache.chose_plain += plain;
    pippy_layout_cache.ms += ms;
    pthread_mutex_unlock(&pippy_layout_mu);
}

void pippy_layout_stats(int *measured, int *plain, double *ms)
{
    pthread_mutex_lock(&pippy_layout_mu);
    *measured = pippy_layout_cache.measured;
    *plain = pippy_layout_cache.chose_plain;
    *ms = pippy_layout_cache.ms;
    pthread_mutex_unlock(&pippy_layout_mu);
}

static uint64_t pippy_layout_hash_tdesc(const pippy_tdesc *t, int is_const, uint64_t h)
{
    h = pippy_fnv1a(&t->dtype, sizeof t->dtype, h);
    h = pippy_fnv1a(&t->rank, sizeof t->rank, h);
    h = pippy_fnv1a(t->dims, sizeof t->dims[0] * (size_t)t->rank, h);
    return pippy_fnv1a(&is_const, sizeof is_const, h);
}

static uint64_t pippy_layout_hash_attr(const pippy_attr *a, uint64_t h)
{
    h = pippy_fnv1a(a->name, strlen(a->name) + 1, h);
    h = pippy_fnv1a(&a->type, sizeof a->type, h);
    h = pippy_fnv1a(&a->i, sizeof a->i, h);
    h = pippy_fnv1a(&a->f, sizeof a->f, h);
    if (a->s)
        h = pippy_fnv1a(a->s, strlen(a->s) + 1, h);
    if (a->ints)
        h = pippy_fnv1a(a->ints, sizeof a->ints[0] * (size_t)a->n, h);
    if (a->floats)
        h = pippy_fnv1a(a->floats, sizeof a->floats[0] * (size_t)a->n, h);
    return h;
}

/* What the choice depends on: the op, its shapes, which inputs are constant, its attributes
 * and the thread count (not the constant data). */
static uint64_t pippy_layout_key(const pippy_op_desc *d, int threads)
{
    uint64_t h = pippy_fnv1a(d->op, strlen(d->op) + 1, PIPPY_FNV_SEED);
    h = pippy_fnv1a(&threads, sizeof threads, h);
    for (int i = 0; i < d->n_in; i++)
        h = pippy_layout_hash_tdesc(&d->in[i], d->in_const[i] != NULL, h);
    for (int i = 0; i < d->n_out; i++)
        h = pippy_layout_hash_tdesc(&d->out[i], 0, h);
    for (int i = 0; i < d->n_attrs; i++)
        h = pippy_layout_hash_attr(&d->attrs[i], h);
    return h;
}

pippy_status pippy_layout_mode_get(pippy_layout_mode *mode)
{
    const char *s = getenv("PIPPY_MATMUL_LAYOUT");
    if (!s || !*s || !strcmp(s, "measure"))
        *mode = PIPPY_LAYOUT_MEASURE;
    else if (!strcmp(s, "plain"))
        *mode = PIPPY_LAYOUT_PLAIN;
    else if (!strcmp(s, "reordered"))
        *mode = PIPPY_LAYOUT_REORDERED;
    else
        return pippy_fail(PIPPY_ERR_INVALID, "PIPPY_MATMUL_LAYOUT=%s: expected plain, reordered or measure", s);
    return PIPPY_OK;
}

/* ---- timing the candidates ---- */

/* Made-up inputs (constant ones as given) and scratch outputs of d's shapes. */
typedef struct {
    const void *in[PIPPY_MAX_IO];
    void *out[PIPPY_MAX_IO];
    void *owned[2 * PIPPY_MAX_IO];
    int n_owned;
} pippy_layout_io;

static void pippy_layout_io_free(pippy_layout_io *io)
{
    for (int i = 0; i < io->n_owned; i++)
        free(io->owned[i]);
}

static void *pippy_layout_buffer(pippy_layout_io *io, const pippy_tdesc *t, int fill)
{
    size_t n = (size_t)pippy_tdesc_numel(t), bytes = n * pippy_dtype_size(t->dtype);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return NULL;
    io->owned[io->n_owned++] = p;
    memset(p, 0, bytes);
    if (fill && t->dtype == PIPPY_DT_FLOAT)
        for (size_t j = 0; j < n; j++)
            ((float *)p)[j] = (float)((j * 2654435761u) % 1024u) / 1024.0f - 0.5f;
    return p;
}

static pippy_status pippy_layout_io_make(const pippy_op_desc *d, pippy_layout_io *io)
{
    memset(io, 0, sizeof *io);
    for (int i = 0; i < d->n_in; i++)
        if (d->in_const[i])
            io->in[i] = d->in_const[i];
        else if (pippy_dense_has_input(d, i) && !(io->in[i] = pippy_layout_buffer(io, &d->in[i], 1)))
            goto nomem;
    for (int i = 0; i < d->n_out; i++)
        if (!(io->out[i] = pippy_layout_buffer(io, &d->out[i], 0)))
            goto nomem;
    return PIPPY_OK;
nomem:
    pippy_layout_io_free(io);
    return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for measuring the weights' layout", d->op);
}

static double pippy_layout_now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static double pippy_layout_time_one(pippy_dnnl_kernel *k, const pippy_layout_io *io, clockid_t c)
{
    double t0 = pippy_layout_now(c);
    pippy_kernel_run(&k->base, io->in, io->out);
    return pippy_layout_now(c) - t0;
}

/* The plain candidate (best[1]) must beat the reordered one by PIPPY_LAYOUT_PLAIN_MARGIN. */
static int pippy_layout_plain_wins(const double best[2])
{
    return best[1] * PIPPY_LAYOUT_PLAIN_MARGIN < best[0];
}

/* With PIPPY_MATMUL_LAYOUT_LOG set: one line on stderr per measured shape. */
static void pippy_layout_log(const pippy_op_desc *d, const double best[2], int runs)
{
    if (!getenv("PIPPY_MATMUL_LAYOUT_LOG"))
        return;
    char sa[160], sb[160];
    fprintf(stderr, "pippy layout: %s %s x %s: reordered %.3f ms, plain %.3f ms (fastest of %d) -> %s\n", d->op,
            pippy_tdesc_str(&d->in[0], sa, sizeof sa), pippy_tdesc_str(&d->in[1], sb, sizeof sb), best[0], best[1],
            runs, pippy_layout_plain_wins(best) ? "plain" : "reordered");
}

/* The faster candidate is ahead by more than PIPPY_LAYOUT_CLEAR: more runs would not change the choice. */
static int pippy_layout_clear(const double best[2])
{
    return best[0] > best[1] * PIPPY_LAYOUT_CLEAR || best[1] > best[0] * PIPPY_LAYOUT_CLEAR;
}

/* 1 when cand[1] (plain) ran faster than cand[0] (reordered) on io, by the margin. */
static int pippy_layout_faster(const pippy_op_desc *d, pippy_dnnl_kernel *cand[2], const pippy_layout_io *io)
{
    clockid_t c = cand[0]->threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    double start = pippy_layout_now(CLOCK_MONOTONIC), best[2] = {1e300, 1e300};
    int r;
    for (r = 0; r < PIPPY_LAYOUT_MAX_RUNS; r++) {
        if (r >= PIPPY_LAYOUT_MIN_RUNS && (pippy_layout_now(CLOCK_MONOTONIC) - start > PIPPY_LAYOUT_BUDGET_MS ||
                                           pippy_layout_clear(best)))
            break;
        for (int j = 0; j < 2; j++) {
            int which = (r + j) % 2; /* alternate which goes first */
            double t = pippy_layout_time_one(cand[which], io, c);
            if (t < best[which])
                best[which] = t;
        }
    }
    pippy_layout_log(d, best, r);
    return pippy_layout_plain_wins(best);
}

/* Non-zero when a step of k runs one of oneDNN's reference implementations. */
static int pippy_layout_uses_ref(pippy_dnnl_kernel *k)
{
    for (int i = 0; i < k->n_steps; i++) {
        const_dnnl_primitive_desc_t pd;
        const char *impl = NULL;
        if (dnnl_primitive_get_primitive_desc(k->steps[i].prim, &pd) == dnnl_success &&
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
            !strncmp(impl, "ref", 3))
            return 1;
    }
    return 0;
}

/* Build both candidates, keep the faster in k; returns through *plain which it was. */
static pippy_status pippy_layout_measure(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                         pippy_layout_build_fn build, int *plain)
{
    *plain = 0;
    PIPPY_TRY(build(d, ref, k, 0));
    pippy_dnnl_kernel *other;
    PIPPY_TRY(pippy_dnnl_kernel_new(&other));
    pippy_status st = build(d, ref, other, 1);
    int skip = st == PIPPY_OK && pippy_layout_uses_ref(other) && !pippy_layout_uses_ref(k);
    pippy_layout_io io;
    if (st == PIPPY_OK && !skip)
        st = pippy_layout_io_make(d, &io);
    if (st == PIPPY_OK && !skip) {
        pippy_dnnl_kernel *cand[2] = {k, other};
        *plain = pippy_layout_faster(d, cand, &io);
        pippy_layout_io_free(&io);
    } else if (st == PIPPY_ERR_UNSUPPORTED) {
        pippy_error_clear(); /* no plain implementation: the reordered one it is */
        st = PIPPY_OK;
    }
    if (*plain) { /* the kernels hold no pointers into themselves: swap them whole */
        pippy_dnnl_kernel t = *k;
        *k = *other;
        *other = t;
    }
    pippy_dnnl_kernel_free(&other->base);
    return st;
}

pippy_status pippy_layout_choose(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                 int w_index, pippy_layout_build_fn build)
{
    pippy_layout_mode mode;
    PIPPY_TRY(pippy_layout_mode_get(&mode));
    if (!d->in_const[w_index] || mode == PIPPY_LAYOUT_REORDERED)
        return build(d, ref, k, 0);
    if (mode == PIPPY_LAYOUT_PLAIN)
        return build(d, ref, k, 1);
    uint64_t key = pippy_layout_key(d, k->threads);
    int plain = pippy_layout_lookup(key);
    if (plain >= 0)
        return build(d, ref, k, plain);
    double t0 = pippy_layout_now(CLOCK_MONOTONIC);
    PIPPY_TRY(pippy_layout_measure(d, ref, k, build, &plain));
    pippy_layout_store(key, plain, pippy_layout_now(CLOCK_MONOTONIC) - t0);
    return PIPPY_OK;
}
