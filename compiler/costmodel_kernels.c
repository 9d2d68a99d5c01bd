/* costmodel_kernels.c — the cost model's table of kernels timed on this machine (see costmodel.h).
 *
 * A kernel's speed depends on its shape far more than a few calibrated rates say: on one machine
 * the same oneDNN matmul ran a 256^3 product at 39 GFLOP/s and a 64x256 . 256x1024 one at 16; on
 * another a GELU over 98304 floats took 86 us where flops and bytes at the rates said 8. So the
 * first compile that meets a node of a new shape creates that node's kernel with the backend, runs
 * it a few times (thread CPU time, the median) with its operands at hand and as many times with
 * them far, and keeps both times per call in the table under a key made of the op, its input types
 * (shapes, and which are constants) and its attributes. The table is written into the cost-model
 * file at the end of the compile, so later compiles read the same numbers. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "costmodel.h"
#include "optim.h"

/* Dense kernels: without a timing, priced at the matmul rate (the others at a tenth of it). */
static const struct {
    const char *domain, *op;
} pippy_cost_dense_ops[] = {
    {"", "MatMul"}, {"", "Gemm"}, {"", "Conv"}, {"pippy", "ConvGradInput"}, {"pippy", "ConvGradWeight"},
};

int pippy_cost_is_dense(const pippy_op_desc *d)
{
    for (size_t i = 0; i < sizeof pippy_cost_dense_ops / sizeof pippy_cost_dense_ops[0]; i++)
        if (!strcmp(d->op, pippy_cost_dense_ops[i].op) && !strcmp(d->domain ? d->domain : "", pippy_cost_dense_ops[i].domain))
            return 1;
    return 0;
}

/* Appends printf(fmt, ...) to key (cap bytes, *len used); 0 when it does not fit. */
static int pippy_key_add(char *key, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(key + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len)
        return 0;
    *len += (size_t)k;
    return 1;
}

static int pippy_key_attr(char *key, size_t cap, size_t *len, const pippy_attr *a)
{
    char b[PIPPY_COST_KEY_MAX];
    switch (a->type) {
    case PIPPY_ATTR_INT:
        return pippy_key_add(key, cap, len, " %s=%lld", a->name, (long long)a->i);
    case PIPPY_ATTR_FLOAT:
        return pippy_key_add(key, cap, len, " %s=%.9g", a->name, (double)a->f);
    case PIPPY_ATTR_STRING:
        return pippy_key_add(key, cap, len, " %s=%s", a->name, a->s ? a->s : "");
    case PIPPY_ATTR_INTS:
        return a->n <= 16 && pippy_key_add(key, cap, len, " %s=%s", a->name, pippy_ints_str(a->ints, a->n, b, sizeof b));
    default: /* tensors, float lists, string lists: not part of any dense kernel's shape */
        return 1;
    }
}

int pippy_cost_kernel_key(const pippy_op_desc *d, char *key, size_t cap)
{
    size_t len = 0;
    key[0] = 0;
    if (!pippy_key_add(key, cap, &len, "%s%s%s", d->domain && d->domain[0] ? d->domain : "",
                       d->domain && d->domain[0] ? "::" : "", d->op))
        return 0;
    for (int i = 0; i < d->n_in; i++) {
        char t[128];
        if (d->in[i].dtype == PIPPY_DT_UNDEFINED)
            snprintf(t, sizeof t, "-");
        else if (pippy_tdesc_check(&d->in[i], NULL))
            return 0;
        else
            pippy_tdesc_str(&d->in[i], t, sizeof t);
        if (!pippy_key_add(key, cap, &len, " %s%s", t, d->in_const[i] ? "const" : ""))
            return 0;
    }
    for (int i = 0; i < d->n_attrs; i++)
        if (!pippy_key_attr(key, cap, &len, &d->attrs[i]))
            return 0;
    return 1;
}

static int pippy_kernel_cmp(const void *a, const void *b)
{
    return strcmp(((const pippy_cost_kernel *)a)->key, ((const pippy_cost_kernel *)b)->key);
}

const pippy_cost_kernel *pippy_cost_kernel_find(const pippy_cost_model *c, const char *key)
{
    if (!c->n_kernels)
        return NULL;
    pippy_cost_kernel probe;
    snprintf(probe.key, sizeof probe.key, "%s", key);
    return bsearch(&probe, c->kernels, (size_t)c->n_kernels, sizeof *c->kernels, pippy_kernel_cmp);
}

/* Room for one more entry named key. */
static pippy_status pippy_cost_kernel_room(pippy_cost_model *c, const char *key)
{
    if (strlen(key) >= PIPPY_COST_KEY_MAX)
        return pippy_fail(PIPPY_ERR_INVALID, "kernel key longer than %d bytes: %.60s...", PIPPY_COST_KEY_MAX - 1, key);
    if (c->n_kernels < c->cap_kernels)
        return PIPPY_OK;
    if (c->n_kernels >= PIPPY_COST_MAX_KERNELS)
        return pippy_fail(PIPPY_ERR_FORMAT, "the cost model's kernel table is full (%d shapes)", PIPPY_COST_MAX_KERNELS);
    int32_t cap = c->cap_kernels ? 2 * c->cap_kernels : 32;
    pippy_cost_kernel *k = realloc(c->kernels, (size_t)cap * sizeof *k);
    if (!k)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory in the cost model's kernel table");
    c->kernels = k;
    c->cap_kernels = cap;
    return PIPPY_OK;
}

pippy_status pippy_cost_kernel_put(pippy_cost_model *c, const char *key, double us, double far_us)
{
    pippy_cost_kernel *hit = (pippy_cost_kernel *)pippy_cost_kernel_find(c, key);
    if (hit) {
        hit->us = us;
        hit->far_us = far_us;
        return PIPPY_OK;
    }
    PIPPY_TRY(pippy_cost_kernel_room(c, key));
    int32_t at = 0; /* keep the table sorted: a compile adds a few shapes */
    while (at < c->n_kernels && strcmp(c->kernels[at].key, key) < 0)
        at++;
    memmove(c->kernels + at + 1, c->kernels + at, (size_t)(c->n_kernels - at) * sizeof *c->kernels);
    snprintf(c->kernels[at].key, sizeof c->kernels[at].key, "%s", key);
    c->kernels[at].us = us;
    c->kernels[at].far_us = far_us;
    c->n_kernels++;
    return PIPPY_OK;
}

pippy_status pippy_cost_kernel_append(pippy_cost_model *c, const char *key, double us, double far_us)
{
    PIPPY_TRY(pippy_cost_kernel_room(c, key));
    snprintf(c->kernels[c->n_kernels].key, sizeof c->kernels[0].key, "%s", key);
    c->kernels[c->n_kernels].us = us;
    c->kernels[c->n_kernels++].far_us = far_us;
    return PIPPY_OK;
}

void pippy_cost_kernel_sort(pippy_cost_model *c)
{
    if (!c->n_kernels)
        return;
    qsort(c->kernels, (size_t)c->n_kernels, sizeof *c->kernels, pippy_kernel_cmp);
    int32_t n = 1; /* a key given twice keeps its larger times (qsort is not stable: "last" would vary) */
    for (int32_t i = 1; i < c->n_kernels; i++) {
        pippy_cost_kernel *k = &c->kernels[i], *kept = &c->kernels[n - 1];
        if (strcmp(k->key, kept->key) != 0) {
            c->kernels[n++] = *k;
            continue;
        }
        kept->us = k->us > kept->us ? k->us : kept->us;
        kept->far_us = k->far_us > kept->far_us ? k->far_us : kept->far_us;
    }
    c->n_kernels = n;
}

void pippy_cost_free(pippy_cost_model *c)
{
    free(c->kernels);
    c->kernels = NULL;
    c->n_kernels = c->cap_kernels = 0;
}

static int pippy_double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Bytes the scrub reads: this core's share of the last-level cache (the L3 over the processors
 * online: the ranks of a host share it, one per core), at least 2 x L2, within 4 to 64 MiB. In a
 * pipeline a kernel reads its parameters, and a backward node what the forward made, a microbatch
 * after they were last touched, when the rest of the stage and the other ranks have been through
 * the caches. Measured on a 2-core EPYC (1 MiB L2, 32 MiB L3), each way alternating with the others
 * in one process, against calls back to back: after three other matmuls a 64x1024x512 matmul took
 * 1.06-1.09x and a 1024x96x96 one 1.13-1.27x; after reading 24-32 MiB 1.03-1.09x and 1.07-1.37x;
 * after reading 4 MiB, or a memset of it, 0.93-1.08x (the operands waited in L3). Not written:
 * the kernel would pay for writing the scrub's dirty lines back. */
static size_t pippy_cache_scrub_bytes(void)
{
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = l3 > 0 ? (size_t)l3 / (size_t)(cpus > 0 ? cpus : 1) : 0;
    if (l2 > 0 && n < 2 * (size_t)l2)
        n = 2 * (size_t)l2;
    size_t lo = (size_t)4 << 20, hi = (size_t)64 << 20;
    return n < lo ? lo : n > hi ? hi : n;
}

static volatile uint64_t pippy_cost_scrub_sink;

/* Reads one word per 64-byte line of the scrub buffer (through a volatile pointer, so that the
 * loop is kept), which moves the last call's operands out of the near caches. */
static void pippy_cache_scrub(void)
{
    static volatile uint64_t *scrub;
    static size_t n;
    if (!scrub) {
        n = pippy_cache_scrub_bytes() / sizeof *scrub;
        uint64_t *b = malloc(n * sizeof *b);
        if (!b)
            return;
        for (size_t i = 0; i < n; i++) /* written once, so that its pages are real */
            b[i] = i;
        scrub = b;
    }
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 64 / sizeof *scrub)
        sum += scrub[i];
    pippy_cost_scrub_sink = sum;
}

static double pippy_kernel_call_s(pippy_kernel *k, const void *const *in, void *const *out)
{
    double t0 = pippy_cost_thread_s();
    pippy_kernel_run(k, in, out);
    return pippy_cost_thread_s() - t0;
}

/* Times k on in/out: a warm-up call, then pairs of calls, one right after the previous call
 * (operands at hand) and one after a cache scrub (operands far): at least 3 and at most 15 pairs,
 * within about 15 ms of CPU with the scrubs, which take most of it (the 271 shapes of an
 * EfficientNet's training step: 5.5 s, and 13 s when small kernels had 40 ms). The median of each,
 * in seconds (far in *far_s). A kernel whose warm-up call took 20 ms or more is timed by that call
 * alone (after a scrub, for both): its first-call costs are small beside it, and a model with large
 * layers (a 50257-word head) would otherwise spend minutes compiling. */
static double pippy_kernel_median_s(pippy_kernel *k, const void *const *in, void *const *out, double *far_s)
{
    double near[15], far[15];
    int n = 0;
    pippy_cache_scrub();
    double first = pippy_kernel_call_s(k, in, out);
    if (first >= 0.02)
        return *far_s = first;
    double begin = pippy_cost_thread_s();
    for (; n < 15 && (n < 3 || pippy_cost_thread_s() - begin < 0.015); n++) {
        near[n] = pippy_kernel_call_s(k, in, out);
        pippy_cache_scrub();
        far[n] = pippy_kernel_call_s(k, in, out);
    }
    qsort(near, (size_t)n, sizeof near[0], pippy_double_cmp);
    qsort(far, (size_t)n, sizeof far[0], pippy_double_cmp);
    *far_s = far[n / 2];
    return near[n / 2];
}

/* Bytes of d's operands the timing allocates (inputs not known when compiling, and outputs); more
 * than 512 MiB (or a malformed one) gives UINT64_MAX: such a kernel is priced by the rates. */
static uint64_t pippy_kernel_operand_bytes(const pippy_op_desc *d)
{
    uint64_t total = 0;
    for (int i = 0; i < d->n_in + d->n_out; i++) {
        const pippy_tdesc *t = i < d->n_in ? &d->in[i] : &d->out[i - d->n_in];
        uint64_t bytes = 0;
        if (t->dtype == PIPPY_DT_UNDEFINED || (i < d->n_in && d->in_const[i]))
            continue;
        if (pippy_tdesc_check(t, &bytes) || (total += bytes) > ((uint64_t)512 << 20))
            return UINT64_MAX;
    }
    return total;
}

/* Time d's kernel as the stage program creates it; 0 when it cannot be timed here (more than
 * 512 MiB of operands, or a kernel the backend refuses). Inputs known when compiling are given as
 * they are; the others hold small floats (float inputs) or zeros (indices, masks): kernels handle
 * any data without harm (backend.h), and a run error they record is dropped. */
double pippy_cost_kernel_time_s(const pippy_op_desc *d, double *far_s)
{
    void *buf[2 * PIPPY_MAX_IO] = {0};
    const void *in[PIPPY_MAX_IO] = {0};
    void *out[PIPPY_MAX_IO] = {0};
    *far_s = 0;
    if (pippy_kernel_operand_bytes(d) == UINT64_MAX)
        return 0; /* checked before anything is allocated: the partition asks for each node thrice */
    int ok = 1, nb = 0;
    for (int i = 0; ok && i < d->n_in + d->n_out; i++) {
        const pippy_tdesc *t = i < d->n_in ? &d->in[i] : &d->out[i - d->n_in];
        if (t->dtype == PIPPY_DT_UNDEFINED || (i < d->n_in && d->in_const[i])) {
            if (i < d->n_in)
                in[i] = d->in_const[i];
            continue;
        }
        size_t bytes = pippy_tdesc_bytes(t);
        char *p = aligned_alloc(64, (bytes + 64) & ~(size_t)63);
        ok = p != NULL;
        if (p)
            memset(p, 0, bytes);
        for (size_t e = 0; p && t->dtype == PIPPY_DT_FLOAT && e < bytes / sizeof(float); e++)
            ((float *)p)[e] = (float)((e % 17) + 1) / 64.0f; /* small, non-zero, no denormals */
        buf[nb++] = p;
        if (i < d->n_in)
            in[i] = p;
        else
            out[i - d->n_in] = p;
    }
    pippy_kernel *k = NULL;
    double s = 0;
    if (ok && pippy_kernel_create(d, &k) == PIPPY_OK) {
        s = pippy_kernel_median_s(k, in, out, far_s);
        pippy_kernel_destroy(k);
    }
    pippy_error_clear();
    pippy_run_error_clear();
    for (int i = 0; i < nb; i++)
        free(buf[i]);
    return s;
}

/* Times one optimizer step as the runtime takes it for a stage of n trained floats
 * (runtime/train.c): the gradient's sum of squares, pippy_optim_step and the clearing of the
 * gradient, each call after a cache scrub (parameters, gradients and state are far: the stage ran
 * a whole step of other work since it last touched most of them); the median of 5 calls, in
 * seconds. 0 when it cannot be timed here (more than 512 MiB). */
double pippy_cost_optimizer_time_s(const pippy_optim_config *o, size_t n)
{
    size_t state = pippy_optim_state_floats(o, n), total = 2 * n + state;
    if (!n || total > ((size_t)512 << 20) / sizeof(float))
        return 0;
    float *b = aligned_alloc(64, (total * sizeof(float) + 63) & ~(size_t)63);
    if (!b)
        return 0;
    for (size_t i = 0; i < 2 * n; i++)
        b[i] = (float)((i % 17) + 1) / 64.0f; /* parameters and gradients: small, non-zero */
    memset(b + 2 * n, 0, state * sizeof(float)); /* the state starts at zero, as in a run */
    double t[5];
    for (int k = 0; k < 5; k++) {
        pippy_cache_scrub();
        double t0 = pippy_cost_thread_s();
        pippy_cost_scrub_sink += (uint64_t)pippy_optim_sumsq(b + n, n);
        pippy_optim_step(o, k + 1, o->lr, 1.0f, b, b + n, b + 2 * n, n);
        memset(b + n, 0, n * sizeof(float));
        t[k] = pippy_cost_thread_s() - t0;
    }
    free(b);
    qsort(t, 5, sizeof t[0], pippy_double_cmp);
    return t[2];
}
