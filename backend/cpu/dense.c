/* dense.c — see dense.h. */
#define _GNU_SOURCE
#include "dense.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl_debug.h>

pippy_status pippy_dnnl_fail(dnnl_status_t s, const char *call, const char *file, int line)
{
    return pippy_fail(PIPPY_ERR_BACKEND, "%s:%d: oneDNN call %s failed: %s", file, line, call,
                      dnnl_status2str(s));
}

/* ---- threads (see dense.h for why dlsym) ---- */

static void (*pippy_omp_set_num_threads)(int);
static pthread_once_t pippy_omp_once = PTHREAD_ONCE_INIT;

static void pippy_omp_lookup(void)
{
    *(void **)&pippy_omp_set_num_threads = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
}

static void pippy_dnnl_threads_apply(int n)
{
    pthread_once(&pippy_omp_once, pippy_omp_lookup);
    if (pippy_omp_set_num_threads)
        pippy_omp_set_num_threads(n);
}

/* ---- the kernel ---- */

static void pippy_dnnl_run_failed(dnnl_status_t s, const char *what)
{
    /* A primitive that was created fine and fails at run is a broken invariant
     * (bad buffer, library bug): there is no status to return from run. */
    fprintf(stderr, "pippy backend: oneDNN %s failed at run time: %s\n", what, dnnl_status2str(s));
    abort();
}

static void pippy_dnnl_kernel_run(pippy_kernel *kb, const void *const *in, void *const *out)
{
    pippy_dnnl_kernel *k = (pippy_dnnl_kernel *)kb;
    dnnl_status_t s;
    pippy_dnnl_threads_apply(k->threads);
    for (int i = 0; i < k->n_binds; i++) {
        void *p = k->binds[i].is_out ? out[k->binds[i].idx] : (void *)in[k->binds[i].idx];
        if ((s = dnnl_memory_set_data_handle(k->binds[i].mem, p)) != dnnl_success)
            pippy_dnnl_run_failed(s, "dnnl_memory_set_data_handle");
    }
    if (k->prepare)
        k->prepare(k, in, out);
    for (int i = 0; i < k->n_steps; i++)
        if ((s = dnnl_primitive_execute(k->steps[i].prim, k->stream, k->steps[i].nargs, k->steps[i].args)) !=
            dnnl_success)
            pippy_dnnl_run_failed(s, "dnnl_primitive_execute");
    if ((s = dnnl_stream_wait(k->stream)) != dnnl_success)
        pippy_dnnl_run_failed(s, "dnnl_stream_wait");
    if (k->finish)
        k->finish(k, in, out);
}

void pippy_dnnl_kernel_free(pippy_kernel *kb)
{
    pippy_dnnl_kernel *k = (pippy_dnnl_kernel *)kb;
    if (!k)
        return;
    for (int i = 0; i < k->n_steps; i++)
        dnnl_primitive_destroy(k->steps[i].prim);
    if (k->pd)
        dnnl_primitive_desc_destroy(k->pd);
    if (k->hint)
        dnnl_primitive_desc_destroy(k->hint);
    for (int i = 0; i < k->n_mems; i++)
        dnnl_memory_destroy(k->mems[i]);
    for (int i = 0; i < k->n_owned; i++)
        free(k->owned[i]);
    if (k->stream)
        dnnl_stream_destroy(k->stream);
    if (k->engine)
        dnnl_engine_destroy(k->engine);
    free(k);
}

pippy_status pippy_dnnl_kernel_new(pippy_dnnl_kernel **out)
{
    *out = NULL;
    pippy_dnnl_kernel *k = calloc(1, sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for a kernel");
    k->base.run = pippy_dnnl_kernel_run;
    k->base.destroy = pippy_dnnl_kernel_free;
    k->threads = pippy_backend_threads();
    pippy_dnnl_threads_apply(k->threads);
    dnnl_status_t s = dnnl_engine_create(&k->engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&k->stream, k->engine, dnnl_stream_default_flags);
    if (s != dnnl_success) {
        pippy_dnnl_kernel_free(&k->base);
        return pippy_dnnl_fail(s, "dnnl_engine_create/dnnl_stream_create", __FILE__, __LINE__);
    }
    *out = k;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_attr_new(dnnl_primitive_attr_t *attr)
{
    PIPPY_DNNL_CHECK(dnnl_primitive_attr_create(attr));
    dnnl_status_t s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
        return pippy_dnnl_fail(s, "dnnl_primitive_attr_set_scratchpad_mode", __FILE__, __LINE__);
    }
    return PIPPY_OK;
}

pippy_status pippy_dnnl_alloc(pippy_dnnl_kernel *k, size_t bytes, void **data)
{
    if (k->n_owned >= PIPPY_DNNL_MAX_OWNED)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: too many buffers in one kernel", __FILE__, __LINE__);
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for a kernel buffer of %zu bytes", bytes);
    memset(p, 0, bytes ? bytes : 64);
    k->owned[k->n_owned++] = p;
    *data = p;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_memory(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, void *handle,
                               dnnl_memory_t *m)
{
    if (k->n_mems >= PIPPY_DNNL_MAX_MEMS)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: too many memory objects in one kernel", __FILE__,
                          __LINE__);
    PIPPY_DNNL_CHECK(dnnl_memory_create(m, md, k->engine, handle ? handle : DNNL_MEMORY_NONE));
    k->mems[k->n_mems++] = *m;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_memory_alloc(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, dnnl_memory_t *m,
                                     void **data)
{
    void *p;
    PIPPY_TRY(pippy_dnnl_alloc(k, dnnl_memory_desc_get_size(md), &p));
    if (data)
        *data = p;
    return pippy_dnnl_memory(k, md, p, m);
}

static pippy_status pippy_dnnl_bind(pippy_dnnl_kernel *k, dnnl_memory_t m, int is_out, int idx)
{
    if (k->n_binds >= PIPPY_DNNL_MAX_BINDS)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: too many bound buffers in one kernel", __FILE__, __LINE__);
    k->binds[k->n_binds].mem = m;
    k->binds[k->n_binds].is_out = is_out;
    k->binds[k->n_binds].idx = idx;
    k->n_binds++;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_bind_in(pippy_dnnl_kernel *k, dnnl_memory_t m, int idx) { return pippy_dnnl_bind(k, m, 0, idx); }
pippy_status pippy_dnnl_bind_out(pippy_dnnl_kernel *k, dnnl_memory_t m, int idx) { return pippy_dnnl_bind(k, m, 1, idx); }

pippy_status pippy_dnnl_memory_in(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int idx, dnnl_memory_t *m)
{
    PIPPY_TRY(pippy_dnnl_memory(k, md, NULL, m));
    return pippy_dnnl_bind_in(k, *m, idx);
}

pippy_status pippy_dnnl_memory_out(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *md, int idx, dnnl_memory_t *m)
{
    PIPPY_TRY(pippy_dnnl_memory(k, md, NULL, m));
    return pippy_dnnl_bind_out(k, *m, idx);
}

pippy_status pippy_dnnl_input(pippy_dnnl_kernel *k, const pippy_op_desc *d, int i, const dnnl_memory_desc_t *user_md,
                              const dnnl_memory_desc_t *want_md, float scale, dnnl_memory_t *m)
{
    if (d->in_const[i])
        return pippy_dnnl_const(k, user_md, d->in_const[i], want_md, scale, m);
    return pippy_dnnl_memory_in(k, user_md, i, m);
}

static pippy_status pippy_dnnl_pd_make(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc,
                                       dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint,
                                       dnnl_primitive_desc_t *pd)
{
    *pd = NULL;
    if (k->pd) {
        dnnl_primitive_attr_destroy(attr);
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: %s: a primitive descriptor is already pending", __FILE__,
                          __LINE__, d->op);
    }
    dnnl_status_t s = dnnl_primitive_desc_create(pd, op_desc, attr, k->engine, hint);
    dnnl_primitive_attr_destroy(attr);
    if (s == dnnl_unimplemented)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: oneDNN has no implementation for this case", d->op);
    if (s != dnnl_success)
        return pippy_dnnl_fail(s, "dnnl_primitive_desc_create", __FILE__, __LINE__);
    k->pd = *pd;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_pd_attr(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc,
                                dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd)
{
    return pippy_dnnl_pd_make(k, d, op_desc, attr, NULL, pd);
}

pippy_status pippy_dnnl_hint(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *fwd_desc)
{
    dnnl_primitive_desc_t pd;
    PIPPY_TRY(pippy_dnnl_pd(k, d, fwd_desc, 0, &pd));
    k->pd = NULL; /* kept as the hint, not a pending step */
    if (k->hint)
        dnnl_primitive_desc_destroy(k->hint);
    k->hint = pd;
    return PIPPY_OK;
}

pippy_status pippy_dnnl_attr_sum(dnnl_primitive_attr_t attr)
{
    dnnl_post_ops_t po;
    PIPPY_DNNL_CHECK(dnnl_post_ops_create(&po));
    dnnl_status_t s = dnnl_post_ops_append_sum(po, 1.0f);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    if (s != dnnl_success)
        return pippy_dnnl_fail(s, "dnnl post-ops (sum)", __FILE__, __LINE__);
    return PIPPY_OK;
}

static pippy_status pippy_dnnl_pd_sum(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int accumulate,
                                      const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd)
{
    dnnl_primitive_attr_t attr;
    PIPPY_TRY(pippy_dnnl_attr_new(&attr));
    if (accumulate) {
        pippy_status st = pippy_dnnl_attr_sum(attr);
        if (st != PIPPY_OK) {
            dnnl_primitive_attr_destroy(attr);
            return st;
        }
    }
    return pippy_dnnl_pd_make(k, d, op_desc, attr, hint, pd);
}

pippy_status pippy_dnnl_pd_acc(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int accumulate,
                               dnnl_primitive_desc_t *pd)
{
    return pippy_dnnl_pd_sum(k, d, op_desc, accumulate, NULL, pd);
}

pippy_status pippy_dnnl_pd_bwd(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int accumulate,
                               dnnl_primitive_desc_t *pd)
{
    if (!k->hint)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: %s: a backward primitive without its forward hint", __FILE__,
                          __LINE__, d->op);
    return pippy_dnnl_pd_sum(k, d, op_desc, accumulate, k->hint, pd);
}

pippy_status pippy_dnnl_pd(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc, int relu,
                           dnnl_primitive_desc_t *pd)
{
    dnnl_primitive_attr_t attr;
    PIPPY_TRY(pippy_dnnl_attr_new(&attr));
    dnnl_status_t s = dnnl_success;
    if (relu) {
        dnnl_post_ops_t po;
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) {
            s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
            if (s == dnnl_success)
                s = dnnl_primitive_attr_set_post_ops(attr, po);
            dnnl_post_ops_destroy(po);
        }
    }
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return pippy_dnnl_fail(s, "dnnl post-ops (relu)", __FILE__, __LINE__);
    }
    return pippy_dnnl_pd_attr(k, d, op_desc, attr, pd);
}

pippy_status pippy_dnnl_add_step(pippy_dnnl_kernel *k, dnnl_primitive_desc_t pd, const dnnl_exec_arg_t *args,
                                 int nargs)
{
    pippy_status st = PIPPY_OK;
    if (k->n_steps >= PIPPY_DNNL_MAX_STEPS || nargs + 1 > PIPPY_DNNL_MAX_ARGS) {
        st = pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: too many steps or arguments in one kernel", __FILE__, __LINE__);
        goto done;
    }
    int n = k->n_steps;
    memcpy(k->steps[n].args, args, (size_t)nargs * sizeof *args);
    k->steps[n].nargs = nargs;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (smd && dnnl_memory_desc_get_size(smd) > 0) {
        dnnl_memory_t sm;
        if ((st = pippy_dnnl_memory_alloc(k, smd, &sm, NULL)) != PIPPY_OK)
            goto done;
        k->steps[n].args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        k->steps[n].args[nargs].memory = sm;
        k->steps[n].nargs++;
    }
    dnnl_status_t s = dnnl_primitive_create(&k->steps[n].prim, pd);
    if (s != dnnl_success) {
        st = pippy_dnnl_fail(s, "dnnl_primitive_create", __FILE__, __LINE__);
        goto done;
    }
    k->n_steps++;
done:
    if (pd == k->pd)
        k->pd = NULL; /* made by pippy_dnnl_pd: no longer pending */
    dnnl_primitive_desc_destroy(pd);
    return st;
}

pippy_status pippy_dnnl_add_src_dst(pippy_dnnl_kernel *k, const pippy_op_desc *d, const void *op_desc,
                                    const dnnl_memory_desc_t *src_md, const dnnl_memory_desc_t *dst_md)
{
    dnnl_primitive_desc_t pd;
    dnnl_memory_t xm, ym;
    PIPPY_TRY(pippy_dnnl_pd(k, d, op_desc, 0, &pd));
    PIPPY_TRY(pippy_dnnl_memory_in(k, src_md, 0, &xm));
    PIPPY_TRY(pippy_dnnl_memory_out(k, dst_md, 0, &ym));
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}};
    return pippy_dnnl_add_step(k, pd, args, 2);
}

pippy_status pippy_dnnl_add_reorder_acc(pippy_dnnl_kernel *k, dnnl_memory_t src, dnnl_memory_t dst, int accumulate)
{
    const dnnl_memory_desc_t *smd, *dmd;
    PIPPY_DNNL_CHECK(dnnl_memory_get_memory_desc(src, &smd));
    PIPPY_DNNL_CHECK(dnnl_memory_get_memory_desc(dst, &dmd));
    dnnl_primitive_attr_t attr;
    PIPPY_TRY(pippy_dnnl_attr_new(&attr));
    pippy_status st = accumulate ? pippy_dnnl_attr_sum(attr) : PIPPY_OK;
    if (st != PIPPY_OK) {
        dnnl_primitive_attr_destroy(attr);
        return st;
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, smd, k->engine, dmd, k->engine, attr);
    dnnl_primitive_attr_destroy(attr);
    PIPPY_DNNL_CHECK_PD(s);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    return pippy_dnnl_add_step(k, pd, args, 2);
}

pippy_status pippy_dnnl_add_reorder(pippy_dnnl_kernel *k, dnnl_memory_t src, dnnl_memory_t dst)
{
    return pippy_dnnl_add_reorder_acc(k, src, dst, 0);
}

pippy_status pippy_dnnl_const(pippy_dnnl_kernel *k, const dnnl_memory_desc_t *user_md, const void *data,
                              const dnnl_memory_desc_t *want_md, float scale, dnnl_memory_t *m)
{
    void *dst;
    PIPPY_TRY(pippy_dnnl_memory_alloc(k, want_md, m, &dst));
    /* The source memory wraps the caller's data only during this call. */
    dnnl_memory_t src = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_status_t s = dnnl_memory_create(&src, user_md, k->engine, (void *)data);
    const char *what = "dnnl_memory_create";
    if (s == dnnl_success) {
        what = "dnnl_primitive_attr_create";
        s = dnnl_primitive_attr_create(&attr);
    }
    if (s == dnnl_success && scale != 1.0f) {
        what = "dnnl_primitive_attr_set_output_scales";
        s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale);
    }
    if (s == dnnl_success) {
        what = "dnnl_reorder_primitive_desc_create";
        s = dnnl_reorder_primitive_desc_create(&pd, user_md, k->engine, want_md, k->engine, attr);
    }
    if (s == dnnl_success) {
        what = "dnnl_primitive_create";
        s = dnnl_primitive_create(&prim, pd);
    }
    if (s == dnnl_success) {
        what = "dnnl_primitive_execute";
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, *m}};
        s = dnnl_primitive_execute(prim, k->stream, 2, args);
    }
    if (s == dnnl_success) {
        what = "dnnl_stream_wait";
        s = dnnl_stream_wait(k->stream);
    }
    if (prim)
        dnnl_primitive_destroy(prim);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (src)
        dnnl_memory_destroy(src);
    if (s != dnnl_success)
        return pippy_dnnl_fail(s, what, __FILE__, __LINE__);
    return PIPPY_OK;
}

pippy_status pippy_dnnl_md_plain(dnnl_memory_desc_t *md, int n, const int64_t *dims)
{
    dnnl_dims_t dd, strides;
    if (n < 1 || n > DNNL_MAX_NDIMS)
        return pippy_fail(PIPPY_ERR_INTERNAL, "%s:%d: rank %d for oneDNN", __FILE__, __LINE__, n);
    int64_t st = 1;
    for (int i = n - 1; i >= 0; i--) {
        dd[i] = dims[i];
        strides[i] = st;
        st *= dims[i] > 0 ? dims[i] : 1;
    }
    PIPPY_DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, n, dd, dnnl_f32, strides));
    return PIPPY_OK;
}

/* ---- create ---- */

pippy_status pippy_dense_create(const pippy_op_desc *d, int try_fast, pippy_dense_fast_fn fast,
                                const pippy_kernel *ref, size_t ref_size, pippy_kernel **out)
{
    if (!d->reference && try_fast) {
        pippy_dnnl_kernel *k;
        PIPPY_TRY(pippy_dnnl_kernel_new(&k));
        pippy_status st = fast(d, ref, k);
        if (st == PIPPY_OK) {
            *out = &k->base;
            return PIPPY_OK;
        }
        pippy_dnnl_kernel_free(&k->base);
        if (st != PIPPY_ERR_UNSUPPORTED)
            return st;
        pippy_error_clear(); /* no oneDNN implementation: the reference kernel does it */
    }
    pippy_kernel *r = malloc(ref_size);
    if (!r)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", d->op);
    memcpy(r, ref, ref_size);
    *out = r;
    return PIPPY_OK;
}

/* ---- checks ---- */

int pippy_dense_has_input(const pippy_op_desc *d, int i)
{
    return i < d->n_in && d->in[i].dtype != PIPPY_DT_UNDEFINED;
}

pippy_status pippy_dense_want_float(const pippy_op_desc *d, int i, const char *what)
{
    if (!pippy_dense_has_input(d, i))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: input %d (%s) is missing", d->op, i, what);
    if (d->in[i].dtype != PIPPY_DT_FLOAT) {
        char s[160];
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: input %d (%s) must be float, found %s", d->op, i, what,
                          pippy_tdesc_str(&d->in[i], s, sizeof s));
    }
    return PIPPY_OK;
}

pippy_status pippy_dense_activation(const pippy_op_desc *d, int *relu)
{
    *relu = 0;
    const pippy_attr *a = pippy_attr_find(d, "pippy.activation");
    if (!a)
        return PIPPY_OK;
    if (a->type == PIPPY_ATTR_STRING && a->s && strcmp(a->s, "Relu") == 0) {
        *relu = 1;
        return PIPPY_OK;
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: fused activation '%s' is not supported (only \"Relu\")", d->op,
                      a->type == PIPPY_ATTR_STRING && a->s ? a->s : "(not a string)");
}

pippy_status pippy_dense_flag(const pippy_op_desc *d, const char *name, int *v)
{
    const pippy_attr *a = pippy_attr_find(d, name);
    *v = 0;
    if (!a)
        return PIPPY_OK;
    if (a->type != PIPPY_ATTR_INT || (a->i != 0 && a->i != 1))
        return pippy_fail(PIPPY_ERR_INVALID, "%s: attribute %s must be INT 0 or 1", d->op, name);
    *v = (int)a->i;
    return PIPPY_OK;
}

int64_t pippy_dims_prod(const int64_t *v, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++)
        p *= v[i];
    return p;
}

pippy_status pippy_dense_shape_attr(const pippy_op_desc *d, const char *name, pippy_tdesc *t)
{
    const int64_t *v;
    int n = pippy_attr_ints(d, name, &v);
    if (n < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: attribute %s (INTS) is missing", d->op, name);
    if (n > PIPPY_MAX_RANK)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: attribute %s has %d values, at most %d handled", d->op, name, n,
                          PIPPY_MAX_RANK);
    memset(t, 0, sizeof *t);
    t->dtype = PIPPY_DT_FLOAT;
    t->rank = n;
    for (int i = 0; i < n; i++) {
        if (v[i] < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: attribute %s[%d] is %lld, expected >= 0", d->op, name, i,
                              (long long)v[i]);
        t->dims[i] = v[i];
    }
    return PIPPY_OK;
}

pippy_status pippy_dense_want_shape(const pippy_op_desc *d, int i, const char *what, const pippy_tdesc *want,
                                    const char *want_what)
{
    const pippy_tdesc *t = &d->in[i];
    int same = t->rank == want->rank;
    for (int j = 0; same && j < t->rank; j++)
        same = t->dims[j] == want->dims[j];
    if (same)
        return PIPPY_OK;
    char st[160], sw[160];
    return pippy_fail(PIPPY_ERR_SHAPE, "%s: input %d (%s) is %s, expected %s (%s)", d->op, i, what,
                      pippy_tdesc_str(t, st, sizeof st), pippy_tdesc_str(want, sw, sizeof sw), want_what);
}

static pippy_status pippy_window_ints(const pippy_op_desc *d, const char *name, int want, int64_t dflt,
                                      int64_t min, int64_t *v)
{
    const int64_t *a;
    int n = pippy_attr_ints(d, name, &a);
    if (n < 0) {
        for (int i = 0; i < want; i++)
            v[i] = dflt;
        return PIPPY_OK;
    }
    if (n != want)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: attribute %s has %d values, expected %d", d->op, name, n, want);
    for (int i = 0; i < n; i++) {
        if (a[i] < min)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: attribute %s[%d] is %lld, expected >= %lld", d->op, name, i,
                              (long long)a[i], (long long)min);
        v[i] = a[i];
    }
    return PIPPY_OK;
}

pippy_status pippy_dense_window(const pippy_op_desc *d, int ns, const int64_t *in, const int64_t *k, int ceil_mode,
                                pippy_window *w)
{
    if (ns < 1 || ns > PIPPY_DENSE_MAX_SPATIAL)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED, "%s: %d spatial dims, only 1 to %d are supported", d->op, ns,
                          PIPPY_DENSE_MAX_SPATIAL);
    memset(w, 0, sizeof *w);
    w->ns = ns;
    int64_t pads[2 * PIPPY_DENSE_MAX_SPATIAL];
    PIPPY_TRY(pippy_window_ints(d, "strides", ns, 1, 1, w->s));
    PIPPY_TRY(pippy_window_ints(d, "dilations", ns, 1, 1, w->dl));
    const char *ap = pippy_attr_string(d, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0] != 0)
        return pippy_fail(PIPPY_ERR_INVALID, "%s: auto_pad is '%s', expected NOTSET, SAME_UPPER, SAME_LOWER or VALID",
                          d->op, ap);
    if (same_upper || same_lower || valid)
        memset(pads, 0, sizeof pads); /* explicit pads do not apply */
    else
        PIPPY_TRY(pippy_window_ints(d, "pads", 2 * ns, 0, 0, pads));
    for (int i = 0; i < ns; i++) {
        w->in[i] = in[i];
        w->k[i] = k[i];
        if (k[i] < 1)
            return pippy_fail(PIPPY_ERR_INVALID, "%s: kernel extent %lld in spatial dim %d, expected >= 1", d->op,
                              (long long)k[i], i);
        int64_t dk = (k[i] - 1) * w->dl[i] + 1;
        if (same_upper || same_lower) {
            w->out[i] = (in[i] + w->s[i] - 1) / w->s[i];
            int64_t total = (w->out[i] - 1) * w->s[i] + dk - in[i];
            if (total < 0)
                total = 0;
            w->pl[i] = same_upper ? total / 2 : total - total / 2;
            w->pr[i] = total - w->pl[i];
            continue;
        }
        w->pl[i] = pads[i];
        w->pr[i] = pads[ns + i];
        int64_t v = in[i] + w->pl[i] + w->pr[i] - dk;
        if (v < 0)
            return pippy_fail(PIPPY_ERR_SHAPE,
                              "%s: the window (kernel %lld, dilation %lld) is larger than the padded input "
                              "(%lld + pads %lld,%lld) in spatial dim %d",
                              d->op, (long long)k[i], (long long)w->dl[i], (long long)in[i], (long long)w->pl[i],
                              (long long)w->pr[i], i);
        if (ceil_mode) {
            w->out[i] = (v + w->s[i] - 1) / w->s[i] + 1;
            if ((w->out[i] - 1) * w->s[i] >= in[i] + w->pl[i])
                w->out[i]--;
        } else {
            w->out[i] = v / w->s[i] + 1;
        }
    }
    return PIPPY_OK;
}

void pippy_window_tdesc(const pippy_window *w, int64_t n, int64_t c, pippy_tdesc *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = PIPPY_DT_FLOAT;
    o->rank = 2 + w->ns;
    o->dims[0] = n;
    o->dims[1] = c;
    for (int i = 0; i < w->ns; i++)
        o->dims[2 + i] = w->out[i];
}

void pippy_window_3d(const pippy_window *w, pippy_window *w3)
{
    int off = 3 - w->ns;
    memset(w3, 0, sizeof *w3);
    w3->ns = 3;
    for (int i = 0; i < 3; i++) {
        int j = i - off;
        w3->in[i] = j >= 0 ? w->in[j] : 1;
        w3->k[i] = j >= 0 ? w->k[j] : 1;
        w3->out[i] = j >= 0 ? w->out[j] : 1;
        w3->s[i] = j >= 0 ? w->s[j] : 1;
        w3->dl[i] = j >= 0 ? w->dl[j] : 1;
        w3->pl[i] = j >= 0 ? w->pl[j] : 0;
        w3->pr[i] = j >= 0 ? w->pr[j] : 0;
    }
}

void pippy_window_dnnl(const pippy_window *w, dnnl_dims_t strides, dnnl_dims_t kernel, dnnl_dims_t dil, dnnl_dims_t pl,
                       dnnl_dims_t pr)
{
    for (int i = 0; i < w->ns; i++) {
        strides[i] = w->s[i];
        if (kernel)
            kernel[i] = w->k[i];
        dil[i] = w->dl[i] - 1; /* oneDNN: 0 is no dilation */
        pl[i] = w->pl[i];
        pr[i] = w->pr[i];
    }
}

pippy_status pippy_window_md(const pippy_window *w, int64_t n, int64_t c, int out, dnnl_memory_desc_t *md)
{
    int64_t dims[2 + PIPPY_DENSE_MAX_SPATIAL] = {n, c};
    for (int i = 0; i < w->ns; i++)
        dims[2 + i] = out ? w->out[i] : w->in[i];
    return pippy_dnnl_md_plain(md, 2 + w->ns, dims);
}
