/* bench_grad_light.c — speed of the light backward kernels (eltwise_grad.c, reduce_grad.c,
 * shape_grad.c): pippy's kernel (pippy_kernel_run), its plain C reference, and an anchor for
 * each — the oneDNN eltwise_backward primitive called directly for the activation grads, a
 * naive loop for SumTo and GatherGrad. Not built by `make`; after `make`:
 *
 *   cc -std=gnu11 -O3 -Icommon -Ibackend bench/bench_grad_light.c -o build/bench_grad_light \
 *      -Lbuild -lpippy_backend -lpippy_common -ldnnl -lm
 *   build/bench_grad_light
 *
 * One thread; times are the fastest call in about half a second, by the thread's CPU time. */
#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"

#define DNNL_OK(x)                                                                        \
    do {                                                                                  \
        dnnl_status_t s_ = (x);                                                           \
        if (s_ != dnnl_success) {                                                         \
            fprintf(stderr, "%s:%d: %s failed (%d)\n", __FILE__, __LINE__, #x, (int)s_); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef void (*bench_fn)(void *ctx);

static double time_it(bench_fn f, void *ctx)
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
    } while (t - t0 < 0.5 || n < 3);
    return best;
}

static float *rand_buf(size_t n, float lo, float hi)
{
    float *p = malloc(n * sizeof *p);
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = lo + (hi - lo) * (float)(s >> 8) / 16777216.0f;
    }
    return p;
}

/* ---- a pippy kernel ---- */

typedef struct {
    pippy_op_desc d;
    pippy_attr a[4];
    pippy_kernel *k;
    const void *in[2];
    void *out[2];
} pk_ctx;

static void pk_call(void *c)
{
    pk_ctx *p = c;
    pippy_kernel_run(p->k, p->in, p->out);
}

static void pk_make(pk_ctx *p, int reference)
{
    p->d.attrs = p->a;
    p->d.opset = 1;
    p->d.name = "bench";
    p->d.reference = reference;
    if (pippy_op_infer(&p->d) != PIPPY_OK || pippy_kernel_create(&p->d, &p->k) != PIPPY_OK) {
        fprintf(stderr, "%s: %s\n", p->d.op, pippy_last_error());
        exit(1);
    }
}

static pippy_tdesc td(int32_t dt, int rank, const int64_t *dims)
{
    pippy_tdesc t = {.dtype = dt, .rank = rank};
    memcpy(t.dims, dims, (size_t)rank * sizeof *dims);
    return t;
}

/* ---- activation grads against oneDNN eltwise_backward ---- */

typedef struct {
    dnnl_stream_t stream;
    dnnl_primitive_t prim;
    dnnl_exec_arg_t args[3];
} dn_ctx;

static void dn_call(void *c)
{
    dn_ctx *d = c;
    DNNL_OK(dnnl_primitive_execute(d->prim, d->stream, 3, d->args));
    DNNL_OK(dnnl_stream_wait(d->stream));
}

static void bench_eltwise(dnnl_engine_t eng, dnnl_stream_t st, const char *op, const char *approx,
                          dnnl_alg_kind_t alg, int use_dst, int64_t n)
{
    float *dy = rand_buf((size_t)n, -1, 1), *x = rand_buf((size_t)n, -4, 4), *dx = malloc((size_t)n * 4);
    double t[2];
    for (int ref = 0; ref < 2; ref++) {
        pk_ctx p = {.d = {.op = op, .domain = "pippy", .n_in = 2, .n_out = 1}};
        p.d.in[0] = p.d.in[1] = td(PIPPY_DT_FLOAT, 1, &n);
        if (approx)
            p.a[p.d.n_attrs++] = (pippy_attr){.name = "approximate", .type = PIPPY_ATTR_STRING, .s = approx};
        p.in[0] = dy;
        p.in[1] = x;
        p.out[0] = dx;
        pk_make(&p, ref);
        t[ref] = time_it(pk_call, &p);
        pippy_kernel_destroy(p.k);
    }
    dnnl_memory_desc_t md;
    dnnl_dims_t dims = {n};
    DNNL_OK(dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_f32, dnnl_a));
    dnnl_eltwise_desc_t ed;
    DNNL_OK(dnnl_eltwise_backward_desc_init(&ed, alg, &md, &md, 0, 0));
    dnnl_primitive_desc_t pd;
    DNNL_OK(dnnl_primitive_desc_create(&pd, &ed, NULL, eng, NULL));
    dn_ctx c = {.stream = st};
    DNNL_OK(dnnl_primitive_create(&c.prim, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_t m[3];
    void *h[3] = {dy, x, dx};
    int arg[3] = {DNNL_ARG_DIFF_DST, use_dst ? DNNL_ARG_DST : DNNL_ARG_SRC, DNNL_ARG_DIFF_SRC};
    for (int i = 0; i < 3; i++) {
        DNNL_OK(dnnl_memory_create(&m[i], &md, eng, h[i]));
        c.args[i] = (dnnl_exec_arg_t){arg[i], m[i]};
    }
    double td_ = time_it(dn_call, &c);
    printf("%-14s %-5s n=%-8lld pippy %8.1f us  reference %8.1f us  oneDNN direct %8.1f us\n", op,
           approx ? approx : "", (long long)n, t[0] * 1e6, t[1] * 1e6, td_ * 1e6);
    for (int i = 0; i < 3; i++)
        dnnl_memory_destroy(m[i]);
    dnnl_primitive_destroy(c.prim);
    free(dy);
    free(x);
    free(dx);
}

/* ---- SumTo [R, C] -> [C] against the naive column-sum loop ---- */

typedef struct {
    const float *x;
    float *y;
    int64_t r, c;
    int accumulate;
} naive_ctx;

static void naive_sum_rows(void *v)
{
    naive_ctx *p = v;
    if (!p->accumulate)
        memset(p->y, 0, (size_t)p->c * sizeof *p->y);
    for (int64_t i = 0; i < p->r; i++)
        for (int64_t j = 0; j < p->c; j++)
            p->y[j] += p->x[i * p->c + j];
}

/* trailing: [R, C] -> [R, 1] (row sums) instead of [R, C] -> [C] */
static void naive_sum_cols(void *v)
{
    naive_ctx *p = v;
    for (int64_t i = 0; i < p->r; i++) {
        float s = p->accumulate ? p->y[i] : 0;
        for (int64_t j = 0; j < p->c; j++)
            s += p->x[i * p->c + j];
        p->y[i] = s;
    }
}

static void bench_sum_to(int64_t r, int64_t c, int accumulate, int trailing)
{
    float *x = rand_buf((size_t)(r * c), -1, 1), *y = calloc((size_t)(r > c ? r : c), 4);
    double t[2];
    for (int ref = 0; ref < 2; ref++) {
        pk_ctx p = {.d = {.op = "SumTo", .domain = "pippy", .n_in = 1, .n_out = 1}};
        p.d.in[0] = td(PIPPY_DT_FLOAT, 2, (int64_t[]){r, c});
        int64_t rows[2] = {r, 1};
        p.a[p.d.n_attrs++] = trailing ? (pippy_attr){.name = "shape", .type = PIPPY_ATTR_INTS, .n = 2, .ints = rows}
                                      : (pippy_attr){.name = "shape", .type = PIPPY_ATTR_INTS, .n = 1, .ints = &c};
        if (accumulate)
            p.a[p.d.n_attrs++] = (pippy_attr){.name = "pippy.accumulate", .type = PIPPY_ATTR_INT, .i = 1};
        p.in[0] = x;
        p.out[0] = y;
        pk_make(&p, ref);
        t[ref] = time_it(pk_call, &p);
        pippy_kernel_destroy(p.k);
    }
    naive_ctx nc = {x, y, r, c, accumulate};
    double tn = time_it(trailing ? naive_sum_cols : naive_sum_rows, &nc);
    printf("SumTo [%lld,%lld]->%s%s  pippy %8.1f us  reference %8.1f us  naive float loop %8.1f us\n", (long long)r,
           (long long)c, trailing ? "[R,1]" : "[C]  ", accumulate ? " acc" : "    ", t[0] * 1e6, t[1] * 1e6, tn * 1e6);
    free(x);
    free(y);
}

/* ---- GatherGrad: indices [B, T] into [V, C] against the naive scatter-add ---- */

typedef struct {
    const float *dy;
    const int64_t *idx;
    float *dw;
    int64_t n, v, c;
    int accumulate;
} scatter_ctx;

static void naive_scatter(void *vp)
{
    scatter_ctx *p = vp;
    if (!p->accumulate)
        memset(p->dw, 0, (size_t)(p->v * p->c) * sizeof *p->dw);
    for (int64_t j = 0; j < p->n; j++)
        for (int64_t k = 0; k < p->c; k++)
            p->dw[p->idx[j] * p->c + k] += p->dy[j * p->c + k];
}

static void bench_gather_grad(int64_t b, int64_t t_, int64_t v, int64_t c, int accumulate)
{
    int64_t n = b * t_;
    float *dy = rand_buf((size_t)(n * c), -1, 1), *dw = calloc((size_t)(v * c), 4);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    uint32_t s = 7;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        idx[i] = (int64_t)(s >> 8) % v;
    }
    double t[2];
    for (int ref = 0; ref < 2; ref++) {
        pk_ctx p = {.d = {.op = "GatherGrad", .domain = "pippy", .n_in = 2, .n_out = 1}};
        p.d.in[0] = td(PIPPY_DT_FLOAT, 3, (int64_t[]){b, t_, c});
        p.d.in[1] = td(PIPPY_DT_INT64, 2, (int64_t[]){b, t_});
        int64_t shape[2] = {v, c};
        p.a[p.d.n_attrs++] = (pippy_attr){.name = "shape", .type = PIPPY_ATTR_INTS, .n = 2, .ints = shape};
        if (accumulate)
            p.a[p.d.n_attrs++] = (pippy_attr){.name = "pippy.accumulate", .type = PIPPY_ATTR_INT, .i = 1};
        p.in[0] = dy;
        p.in[1] = idx;
        p.out[0] = dw;
        pk_make(&p, ref);
        t[ref] = time_it(pk_call, &p);
        pippy_kernel_destroy(p.k);
    }
    scatter_ctx sc = {dy, idx, dw, n, v, c, accumulate};
    double tn = time_it(naive_scatter, &sc);
    printf("GatherGrad [%lld,%lld] into [%lld,%lld]%s  pippy %8.1f us  reference %8.1f us  naive scatter %8.1f us\n",
           (long long)b, (long long)t_, (long long)v, (long long)c, accumulate ? " acc" : "    ", t[0] * 1e6,
           t[1] * 1e6, tn * 1e6);
    free(dy);
    free(dw);
    free(idx);
}

int main(void)
{
    pippy_backend_set_threads(1);
    dnnl_engine_t eng;
    dnnl_stream_t st;
    DNNL_OK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DNNL_OK(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    int64_t sizes[] = {256, 4096, 65536, 1 << 20};
    for (int i = 0; i < 4; i++) {
        int64_t n = sizes[i];
        bench_eltwise(eng, st, "ReluGrad", NULL, dnnl_eltwise_relu_use_dst_for_bwd, 1, n);
        bench_eltwise(eng, st, "LeakyReluGrad", NULL, dnnl_eltwise_relu, 0, n);
        bench_eltwise(eng, st, "TanhGrad", NULL, dnnl_eltwise_tanh_use_dst_for_bwd, 1, n);
        bench_eltwise(eng, st, "SigmoidGrad", NULL, dnnl_eltwise_logistic_use_dst_for_bwd, 1, n);
        bench_eltwise(eng, st, "GeluGrad", "none", dnnl_eltwise_gelu_erf, 0, n);
        bench_eltwise(eng, st, "GeluGrad", "tanh", dnnl_eltwise_gelu_tanh, 0, n);
    }
    bench_sum_to(32 * 64, 256, 0, 0);
    bench_sum_to(32 * 64, 256, 1, 0);
    bench_sum_to(32 * 64, 768, 0, 0);
    bench_sum_to(256, 2048, 0, 1);
    bench_gather_grad(32, 64, 512, 256, 0);
    bench_gather_grad(32, 64, 512, 256, 1);
    bench_gather_grad(8, 1024, 50257, 768, 0);
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    return 0;
}
