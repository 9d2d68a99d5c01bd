/* costmodel.c — see costmodel.h. */
#include "costmodel.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void pippy_cost_defaults(pippy_cost_model *c)
{
    c->flops_per_s = 100e9;      /* oneDNN matmul, one core (DESIGN.md measured ~205) */
    c->bytes_per_s = 10e9;
    c->link_bytes_per_s = 10e9;  /* UCX shared memory + CMA (DESIGN.md) */
    c->link_latency_s = 5e-6;
    c->op_overhead_s = 1e-6;
    c->calibrated = 0;
}

static double pippy_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void pippy_cost_calibrate(pippy_cost_model *c)
{
    pippy_cost_defaults(c);
    enum { N = 256 };
    pippy_op_desc d;
    memset(&d, 0, sizeof d);
    d.op = "MatMul";
    d.domain = "";
    d.opset = 17;
    d.name = "calibration";
    d.n_in = 2;
    d.n_out = 1;
    d.in[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {N, N}};
    d.in[1] = (pippy_tdesc){PIPPY_DT_FLOAT, 2, {N, N}};
    float *a = calloc(3 * N * N, sizeof *a);
    pippy_kernel *k = NULL;
    if (a && pippy_op_infer(&d) == PIPPY_OK && pippy_kernel_create(&d, &k) == PIPPY_OK) {
        const void *in[2] = {a, a + N * N};
        void *out[1] = {a + 2 * N * N};
        pippy_kernel_run(k, in, out); /* warm up */
        int reps = 0;
        double t0 = pippy_now_s(), t;
        do {
            pippy_kernel_run(k, in, out);
            reps++;
            t = pippy_now_s() - t0;
        } while (t < 0.03 && reps < 1000);
        double rate = 2.0 * N * N * N * reps / t;
        if (rate > 1e8)
            c->flops_per_s = rate;
        pippy_kernel_destroy(k);
        /* memory bandwidth: a large copy */
        size_t bytes = 3 * N * N * sizeof(float) / 2;
        reps = 0;
        t0 = pippy_now_s();
        do {
            memmove((char *)a + bytes, a, bytes);
            reps++;
            t = pippy_now_s() - t0;
        } while (t < 0.01 && reps < 10000);
        double bw = 2.0 * (double)bytes * reps / t;
        if (bw > 1e8)
            c->bytes_per_s = bw;
        c->calibrated = 1;
    }
    free(a);
}

static int pippy_is_dense(const char *op)
{
    return !strcmp(op, "MatMul") || !strcmp(op, "Gemm") || !strcmp(op, "Conv");
}

double pippy_cost_node_s(const pippy_cost_model *c, const pippy_op_desc *d)
{
    double bytes = 0;
    for (int i = 0; i < d->n_in; i++)
        bytes += (double)pippy_tdesc_bytes(&d->in[i]);
    for (int i = 0; i < d->n_out; i++)
        bytes += (double)pippy_tdesc_bytes(&d->out[i]);
    double fl = pippy_op_flops(d);
    /* element-wise work runs well below the matmul rate: count it at a tenth */
    double rate = pippy_is_dense(d->op) ? c->flops_per_s : c->flops_per_s / 10.0;
    double t_compute = fl / rate, t_mem = bytes / c->bytes_per_s;
    return c->op_overhead_s + (t_compute > t_mem ? t_compute : t_mem);
}

double pippy_cost_transfer_s(const pippy_cost_model *c, uint64_t bytes)
{
    return c->link_latency_s + (double)bytes / c->link_bytes_per_s;
}
