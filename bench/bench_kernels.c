/* bench_kernels.c — single-kernel speed: pippy's MatMul and Conv kernels (through
 * pippy_kernel_run) against the same oneDNN primitive called directly, and the
 * plain C reference kernel. Not built by `make`; after `make` (or a build in BUILD):
 *
 *   cc -std=gnu11 -O2 -Icommon -Ibackend bench/bench_kernels.c -o build/bench_kernels \
 *      -Lbuild -lpippy_backend -lpippy_common -ldnnl -lgomp -lm
 *   build/bench_kernels [threads]        (default 1 thread)
 *
 * Prints one row per case: GFLOP/s of each way (fastest call of those made in about a
 * second), and pippy's overhead over direct oneDNN.
 * "direct" uses the layouts the primitive likes best (weights reordered once; for the
 * conv, source and destination already in its blocked layout, so no reorders are timed)
 * and "direct plain" the plain row-major / NCHW layouts; pippy's kernel takes plain
 * buffers, as generated stage programs do. */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

#define DNNL_OK(x)                                                                                 \
    do {                                                                                           \
        dnnl_status_t s_ = (x);                                                                    \
        if (s_ != dnnl_success) {                                                                  \
            fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #x, (int)s_);          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* One thread: the calling thread's CPU time, so that other work on a shared machine does
 * not count; more threads: wall-clock time. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *rand_buf(size_t n)
{
    float *p = malloc(n * sizeof *p);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    return p;
}

/* Seconds per call: a few warm-up calls, then calls until min_s has passed; the fastest
 * call counts (the least disturbed by other work on the machine). */
typedef void (*bench_fn)(void *ctx);
static double time_it(bench_fn f, void *ctx, double min_s)
{
    for (int i = 0; i < 3; i++)
        f(ctx);
    int n = 0;
    double t0 = now(), best = 1e30, t;
    do {
        double t1 = now();
        f(ctx);
        t = now();
        if (t - t1 < best)
            best = t - t1;
        n++;
    } while (t - t0 < min_s || n < 3);
    return best;
}

/* ---- pippy kernels ---- */

typedef struct {
    pippy_kernel *k;
    const void *in[4];
    void *out[1];
} pippy_ctx;

static void pippy_call(void *c)
{
    pippy_ctx *p = c;
    pippy_kernel_run(p->k, p->in, p->out);
}

/* ---- direct oneDNN ---- */

typedef struct {
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[6];
} direct_ctx;

static void direct_call(void *c)
{
    direct_ctx *d = c;
    DNNL_OK(dnnl_primitive_execute(d->prim, d->stream, d->nargs, d->args));
    DNNL_OK(dnnl_stream_wait(d->stream));
}

static dnnl_memory_t mem_for(dnnl_engine_t eng, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    DNNL_OK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
    return m;
}

/* Reorder plain data (desc plain) into memory m (whatever its layout). */
static void fill_mem(dnnl_engine_t eng, dnnl_stream_t st, const dnnl_memory_desc_t *plain, const float *data,
                     dnnl_memory_t m)
{
    const dnnl_memory_desc_t *md;
    DNNL_OK(dnnl_memory_get_memory_desc(m, &md));
    dnnl_memory_t src;
    DNNL_OK(dnnl_memory_create(&src, plain, eng, (void *)data));
    dnnl_primitive_desc_t pd;
    DNNL_OK(dnnl_reorder_primitive_desc_create(&pd, plain, eng, md, eng, NULL));
    dnnl_primitive_t r;
    DNNL_OK(dnnl_primitive_create(&r, pd));
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, m}};
    DNNL_OK(dnnl_primitive_execute(r, st, 2, a));
    DNNL_OK(dnnl_stream_wait(st));
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_destroy(src);
}

static void add_scratchpad(dnnl_engine_t eng, dnnl_primitive_desc_t pd, direct_ctx *d)
{
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (smd && dnnl_memory_desc_get_size(smd) > 0) {
        d->args[d->nargs].arg = DNNL_ARG_SCRATCHPAD;
        d->args[d->nargs].memory = mem_for(eng, smd);
        d->nargs++;
    }
}

static dnnl_primitive_attr_t user_scratch_attr(void)
{
    dnnl_primitive_attr_t attr;
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    return attr;
}

static void direct_matmul(dnnl_engine_t eng, dnnl_stream_t st, int64_t M, int64_t K, int64_t N, const float *a,
                          const float *b, int any_weights, direct_ctx *d)
{
    dnnl_memory_desc_t amd, bmd_plain, bmd, cmd;
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    DNNL_OK(dnnl_memory_desc_init_by_tag(&amd, 2, ad, dnnl_f32, dnnl_ab));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&bmd_plain, 2, bd, dnnl_f32, dnnl_ab));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, any_weights ? dnnl_format_tag_any : dnnl_ab));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t desc;
    DNNL_OK(dnnl_matmul_desc_init(&desc, &amd, &bmd, NULL, &cmd));
    dnnl_primitive_attr_t attr = user_scratch_attr();
    dnnl_primitive_desc_t pd;
    DNNL_OK(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL));
    dnnl_primitive_attr_destroy(attr);
    memset(d, 0, sizeof *d);
    d->stream = st;
    DNNL_OK(dnnl_primitive_create(&d->prim, pd));
    dnnl_memory_t am, bm, cm;
    DNNL_OK(dnnl_memory_create(&am, &amd, eng, (void *)a));
    bm = mem_for(eng, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    fill_mem(eng, st, &bmd_plain, b, bm);
    cm = mem_for(eng, &cmd);
    d->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, am};
    d->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, bm};
    d->args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, cm};
    d->nargs = 3;
    add_scratchpad(eng, pd, d);
    dnnl_primitive_desc_destroy(pd);
}

static void direct_conv(dnnl_engine_t eng, dnnl_stream_t st, const int64_t *xd, const int64_t *wd, const int64_t *yd,
                        int pad, const float *x, const float *w, int any_layout, direct_ctx *d)
{
    dnnl_memory_desc_t xp, wp, yp, xmd, wmd, ymd;
    DNNL_OK(dnnl_memory_desc_init_by_tag(&xp, 4, xd, dnnl_f32, dnnl_nchw));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&wp, 4, wd, dnnl_f32, dnnl_oihw));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&yp, 4, yd, dnnl_f32, dnnl_nchw));
    dnnl_format_tag_t t = any_layout ? dnnl_format_tag_any : dnnl_nchw;
    DNNL_OK(dnnl_memory_desc_init_by_tag(&xmd, 4, xd, dnnl_f32, t));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, any_layout ? dnnl_format_tag_any : dnnl_oihw));
    DNNL_OK(dnnl_memory_desc_init_by_tag(&ymd, 4, yd, dnnl_f32, t));
    dnnl_dims_t strides = {1, 1}, dil = {0, 0}, p = {pad, pad};
    dnnl_convolution_desc_t desc;
    DNNL_OK(dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_inference, dnnl_convolution_direct, &xmd,
                                                      &wmd, NULL, &ymd, strides, dil, p, p));
    dnnl_primitive_attr_t attr = user_scratch_attr();
    dnnl_primitive_desc_t pd;
    DNNL_OK(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL));
    dnnl_primitive_attr_destroy(attr);
    memset(d, 0, sizeof *d);
    d->stream = st;
    DNNL_OK(dnnl_primitive_create(&d->prim, pd));
    dnnl_memory_t xm = mem_for(eng, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0));
    dnnl_memory_t wm = mem_for(eng, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0));
    dnnl_memory_t ym = mem_for(eng, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    fill_mem(eng, st, &xp, x, xm);
    fill_mem(eng, st, &wp, w, wm);
    d->args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, xm};
    d->args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
    d->args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, ym};
    d->nargs = 3;
    add_scratchpad(eng, pd, d);
    dnnl_primitive_desc_destroy(pd);
}

/* ---- the cases ---- */

static void set_attr_ints(pippy_attr *a, const char *name, int n, const int64_t *v)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = PIPPY_ATTR_INTS;
    a->n = n;
    a->ints = v;
}

static pippy_kernel *make_kernel(pippy_op_desc *d)
{
    pippy_kernel *k;
    if (pippy_op_infer(d) != PIPPY_OK || pippy_kernel_create(d, &k) != PIPPY_OK) {
        fprintf(stderr, "bench: %s\n", pippy_last_error());
        exit(1);
    }
    return k;
}

static void row(const char *name, double flops, double t_pippy, double t_pippy_const, double t_direct,
                double t_plain, double t_ref)
{
    char ref[32] = "-";
    if (t_ref > 0)
        snprintf(ref, sizeof ref, "%.2f", flops / t_ref * 1e-9);
    printf("%-32s %10.1f %12.1f %10.1f %12.1f %10s %9.1f%%\n", name, flops / t_pippy * 1e-9,
           flops / t_pippy_const * 1e-9, flops / t_direct * 1e-9, flops / t_plain * 1e-9, ref,
           100.0 * (t_pippy_const / t_direct - 1.0));
}

static void bench_matmul(dnnl_engine_t eng, dnnl_stream_t st, int64_t M, int64_t K, int64_t N, int with_ref)
{
    float *a = rand_buf((size_t)(M * K)), *b = rand_buf((size_t)(K * N)), *c = rand_buf((size_t)(M * N));
    double flops = 2.0 * (double)M * (double)N * (double)K;
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "MatMul";
    d.domain = "";
    d.opset = 13;
    d.name = "bench";
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {M, K}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {K, N}};
    pippy_ctx p = {make_kernel(&d), {a, b}, {c}};
    double t_pippy = time_it(pippy_call, &p, 1.0);
    pippy_kernel_destroy(p.k);
    d.in_const[1] = b; /* weights fixed: reordered once at create */
    pippy_ctx pc = {make_kernel(&d), {a, NULL}, {c}};
    double t_const = time_it(pippy_call, &pc, 1.0);
    pippy_kernel_destroy(pc.k);
    d.in_const[1] = NULL;
    double t_ref = 0;
    if (with_ref) {
        d.reference = 1;
        pippy_ctx pr = {make_kernel(&d), {a, b}, {c}};
        t_ref = time_it(pippy_call, &pr, 0.1);
        pippy_kernel_destroy(pr.k);
    }
    direct_ctx dd, dp;
    direct_matmul(eng, st, M, K, N, a, b, 1, &dd);
    direct_matmul(eng, st, M, K, N, a, b, 0, &dp);
    double t_direct = time_it(direct_call, &dd, 1.0), t_plain = time_it(direct_call, &dp, 1.0);
    char name[64];
    snprintf(name, sizeof name, "matmul M%lld K%lld N%lld", (long long)M, (long long)K, (long long)N);
    row(name, flops, t_pippy, t_const, t_direct, t_plain, t_ref);
    free(a);
    free(b);
    free(c);
}

static void bench_conv(dnnl_engine_t eng, dnnl_stream_t st, int64_t C, int64_t HW, int with_ref)
{
    int64_t xd[4] = {1, C, HW, HW}, wd[4] = {C, C, 3, 3}, yd[4] = {1, C, HW, HW};
    float *x = rand_buf((size_t)(C * HW * HW)), *w = rand_buf((size_t)(C * C * 9)), *y = rand_buf((size_t)(C * HW * HW));
    double flops = 2.0 * (double)(C * C * 9) * (double)(HW * HW);
    static const int64_t ks[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
    pippy_attr attrs[2];
    set_attr_ints(&attrs[0], "kernel_shape", 2, ks);
    set_attr_ints(&attrs[1], "pads", 4, pads);
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "Conv";
    d.domain = "";
    d.opset = 22;
    d.name = "bench";
    d.n_attrs = 2;
    d.attrs = attrs;
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 4, {1, C, HW, HW}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 4, {C, C, 3, 3}};
    pippy_ctx p = {make_kernel(&d), {x, w}, {y}};
    double t_pippy = time_it(pippy_call, &p, 1.0);
    pippy_kernel_destroy(p.k);
    d.in_const[1] = w;
    pippy_ctx pc = {make_kernel(&d), {x, NULL}, {y}};
    double t_const = time_it(pippy_call, &pc, 1.0);
    pippy_kernel_destroy(pc.k);
    d.in_const[1] = NULL;
    double t_ref = 0;
    if (with_ref) {
        d.reference = 1;
        pippy_ctx pr = {make_kernel(&d), {x, w}, {y}};
        t_ref = time_it(pippy_call, &pr, 0.1);
        pippy_kernel_destroy(pr.k);
    }
    direct_ctx dd, dp;
    direct_conv(eng, st, xd, wd, yd, 1, x, w, 1, &dd);
    direct_conv(eng, st, xd, wd, yd, 1, x, w, 0, &dp);
    double t_direct = time_it(direct_call, &dd, 1.0), t_plain = time_it(direct_call, &dp, 1.0);
    char name[64];
    snprintf(name, sizeof name, "conv3x3 C%lld %lldx%lld", (long long)C, (long long)HW, (long long)HW);
    row(name, flops, t_pippy, t_const, t_direct, t_plain, t_ref);
    free(x);
    free(w);
    free(y);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1)
        threads = 1;
    pippy_backend_set_threads(threads);
    if (threads == 1)
        bench_clock = CLOCK_THREAD_CPUTIME_ID;
    omp_set_num_threads(threads); /* for the direct primitives */
    dnnl_engine_t eng;
    dnnl_stream_t st;
    DNNL_OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DNNL_OK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    printf("threads %d, oneDNN %d.%d.%d; GFLOP/s (multiply-add = 2) by %s time\n", threads, dnnl_version()->major,
           dnnl_version()->minor, dnnl_version()->patch, threads == 1 ? "thread CPU" : "wall-clock");
    printf("%-32s %10s %12s %10s %12s %10s %10s\n", "case", "pippy", "pippy const", "direct", "direct plain",
           "reference", "overhead");
    bench_matmul(eng, st, 512, 512, 512, 1);
    bench_matmul(eng, st, 256, 1024, 4096, 0);
    bench_conv(eng, st, 64, 56, 1);
    printf("pippy: B / W given at run time (plain layout); pippy const: given as in_const (reordered at create);\n"
           "direct: oneDNN with its preferred layouts, nothing reordered per call; direct plain: oneDNN on plain\n"
           "layouts; overhead: pippy const vs direct.\n");
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    return 0;
}
