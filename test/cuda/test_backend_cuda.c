/* test_backend_cuda.c — the cuda backend's kernels against the CPU reference kernels
 * (built by `make CUDA=1` as build/test_cuda; `make test CUDA=1` runs it).
 *
 * Every case is an op (opset, attributes, input types and shapes, constant inputs) with seeded
 * random inputs; the oracle is the CPU's plain reference kernel (desc.reference = 1) on the same
 * inputs. The cuda kernel runs
 *   - under host emulation (no GPU needed): the kernels with a host form run their per-element
 *     code on the CPU with the parameters their create computed ("emu" lines);
 *   - on the GPU, when one is usable ("gpu" lines): every case, through device memory.
 * Outputs start as 0xff bytes (NaN / -1), so an element a kernel forgets shows. Integers and
 * bools must match exactly, floats within |got - want| <= atol + rtol * |want| (per case; both NaN
 * counts as equal). Also checked: device.h's lookup and the kernel tables' refusals.
 * Ends with "N passed, N failed, N skipped"; without a GPU one line says why every GPU case was
 * skipped (cudaGetDeviceCount's error). PIPPY_TEST_VERBOSE=1 prints the worst error of each run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cubackend.h"
#include "device.h"
#include "cast.h"
#include "hash.h"

static int n_pass, n_fail, n_skip, verbose;
static pippy_backend *emu, *gpu;
static char gpu_why[1024];

/* ---- the case builder ---- */

enum { F_UNIFORM, F_POS, F_RANGE, F_NAN };

#define TC_MAX_ATTRS 8
typedef struct {
    pippy_op_desc d;
    pippy_attr attrs[TC_MAX_ATTRS];
    int64_t ints[TC_MAX_ATTRS][8];
    void *cdata[PIPPY_MAX_IO];
    int fill[PIPPY_MAX_IO];
    int64_t lo[PIPPY_MAX_IO], hi[PIPPY_MAX_IO];
    double rtol, atol;
    char label[200];
} tc;

static void tc_init(tc *t, const char *op, int opset, int n_out)
{
    for (int i = 0; i < PIPPY_MAX_IO; i++)
        free(t->cdata[i]);
    memset(t, 0, sizeof *t);
    t->d.op = op;
    t->d.domain = "";
    t->d.opset = opset;
    t->d.name = op;
    t->d.n_out = n_out;
    t->d.attrs = t->attrs;
    t->rtol = 1e-5;
    t->atol = 1e-6;
}

static void tc_in(tc *t, int32_t dt, int rank, const int64_t *dims)
{
    pippy_tdesc *x = &t->d.in[t->d.n_in++];
    x->dtype = dt;
    x->rank = rank;
    for (int i = 0; i < rank; i++)
        x->dims[i] = dims[i];
}
#define TC_IN(t, DT, ...)                                                                   \
    do {                                                                                    \
        const int64_t tc_d_[] = {__VA_ARGS__};                                              \
        tc_in((t), PIPPY_DT_##DT, (int)(sizeof tc_d_ / sizeof tc_d_[0]), tc_d_);            \
    } while (0)
#define TC_SCALAR(t, DT) tc_in((t), PIPPY_DT_##DT, 0, NULL)

static void tc_absent(tc *t) { t->d.n_in++; }

/* A constant input (int64 values, shape [n] or a scalar with n = -1). */
static void tc_const_i64(tc *t, int n, const int64_t *v)
{
    int64_t dims[1] = {n};
    tc_in(t, PIPPY_DT_INT64, n < 0 ? 0 : 1, dims);
    int i = t->d.n_in - 1, cnt = n < 0 ? 1 : n;
    t->cdata[i] = malloc((size_t)(cnt ? cnt : 1) * sizeof(int64_t));
    memcpy(t->cdata[i], v, (size_t)cnt * sizeof(int64_t));
    t->d.in_const[i] = t->cdata[i];
}
#define TC_CONST(t, ...)                                                                    \
    do {                                                                                    \
        const int64_t tc_v_[] = {__VA_ARGS__};                                              \
        tc_const_i64((t), (int)(sizeof tc_v_ / sizeof tc_v_[0]), tc_v_);                    \
    } while (0)

/* A one-element constant of dtype dt holding v. */
static void tc_const_scalar(tc *t, int32_t dt, double v)
{
    tc_in(t, dt, 0, NULL);
    int i = t->d.n_in - 1;
    t->cdata[i] = calloc(1, 8);
    switch (dt) {
    case PIPPY_DT_FLOAT: *(float *)t->cdata[i] = (float)v; break;
    case PIPPY_DT_INT64: *(int64_t *)t->cdata[i] = (int64_t)v; break;
    case PIPPY_DT_INT32: *(int32_t *)t->cdata[i] = (int32_t)v; break;
    case PIPPY_DT_BOOL: *(uint8_t *)t->cdata[i] = (uint8_t)v; break;
    default: break;
    }
    t->d.in_const[i] = t->cdata[i];
}

static pippy_attr *tc_attr(tc *t, const char *name, int32_t type)
{
    pippy_attr *a = &t->attrs[t->d.n_attrs++];
    a->name = name;
    a->type = type;
    return a;
}
static void tc_ai(tc *t, const char *name, int64_t v) { tc_attr(t, name, PIPPY_ATTR_INT)->i = v; }
static void tc_af(tc *t, const char *name, float v) { tc_attr(t, name, PIPPY_ATTR_FLOAT)->f = v; }
static void tc_as(tc *t, const char *name, const char *v) { tc_attr(t, name, PIPPY_ATTR_STRING)->s = v; }
static void tc_ais(tc *t, const char *name, int n, const int64_t *v)
{
    int k = t->d.n_attrs;
    pippy_attr *a = tc_attr(t, name, PIPPY_ATTR_INTS);
    memcpy(t->ints[k], v, (size_t)n * sizeof *v);
    a->n = n;
    a->ints = t->ints[k];
}
#define TC_INTS(t, name, ...)                                                               \
    do {                                                                                    \
        const int64_t tc_v_[] = {__VA_ARGS__};                                              \
        tc_ais((t), (name), (int)(sizeof tc_v_ / sizeof tc_v_[0]), tc_v_);                  \
    } while (0)

static void tc_range(tc *t, int i, int64_t lo, int64_t hi)
{
    t->fill[i] = F_RANGE;
    t->lo[i] = lo;
    t->hi[i] = hi;
}

/* ---- random inputs ---- */

static uint64_t rng;
static double tc_u01(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) * (1.0 / 9007199254740992.0);
}

static void tc_fill(const tc *t, int i, void *p)
{
    const pippy_tdesc *x = &t->d.in[i];
    int64_t n = pippy_tdesc_numel(x), lo = t->fill[i] == F_RANGE ? t->lo[i] : -7, hi = t->fill[i] == F_RANGE ? t->hi[i] : 8;
    if (x->dtype == PIPPY_DT_UINT8 && t->fill[i] != F_RANGE)
        lo = 0, hi = 15;
    for (int64_t j = 0; j < n; j++) {
        double u = tc_u01(), f = t->fill[i] == F_POS ? 0.5 + 2 * u : 4 * u - 2;
        if (t->fill[i] == F_NAN && tc_u01() < 0.1)
            f = tc_u01() < 0.5 ? NAN : 1.0; /* NaNs and ties */
        int64_t k = lo + (int64_t)(u * (double)(hi - lo));
        switch (x->dtype) {
        case PIPPY_DT_FLOAT: ((float *)p)[j] = (float)f; break;
        case PIPPY_DT_DOUBLE: ((double *)p)[j] = f; break;
        case PIPPY_DT_FLOAT16: ((uint16_t *)p)[j] = pippy_float_to_half((float)f * 100); break;
        case PIPPY_DT_INT8: ((int8_t *)p)[j] = (int8_t)k; break;
        case PIPPY_DT_UINT8: ((uint8_t *)p)[j] = (uint8_t)k; break;
        case PIPPY_DT_INT32: ((int32_t *)p)[j] = (int32_t)k; break;
        case PIPPY_DT_INT64: ((int64_t *)p)[j] = k; break;
        case PIPPY_DT_BOOL: ((uint8_t *)p)[j] = u < 0.5; break;
        default: break;
        }
    }
}

/* ---- comparing ---- */

static double tc_num(int32_t dt, const void *p, int64_t j)
{
    switch (dt) {
    case PIPPY_DT_FLOAT: return ((const float *)p)[j];
    case PIPPY_DT_DOUBLE: return ((const double *)p)[j];
    case PIPPY_DT_FLOAT16: return ((const uint16_t *)p)[j];
    case PIPPY_DT_INT8: return ((const int8_t *)p)[j];
    case PIPPY_DT_UINT8: case PIPPY_DT_BOOL: return ((const uint8_t *)p)[j];
    case PIPPY_DT_INT32: return ((const int32_t *)p)[j];
    case PIPPY_DT_INT64: return (double)((const int64_t *)p)[j];
    default: return 0;
    }
}

/* 0 when got matches want; else 1 with the first bad element described in why. */
static int tc_compare(const tc *t, const pippy_tdesc *o, const void *got, const void *want, double *worst, char *why,
                      size_t n_why)
{
    int fl = o->dtype == PIPPY_DT_FLOAT || o->dtype == PIPPY_DT_DOUBLE;
    int64_t n = pippy_tdesc_numel(o);
    for (int64_t j = 0; j < n; j++) {
        if (o->dtype == PIPPY_DT_INT64 && ((const int64_t *)got)[j] != ((const int64_t *)want)[j]) {
            snprintf(why, n_why, "element %lld: %lld, want %lld", (long long)j, (long long)((const int64_t *)got)[j],
                     (long long)((const int64_t *)want)[j]);
            return 1;
        }
        double g = tc_num(o->dtype, got, j), w = tc_num(o->dtype, want, j);
        if (fl && isnan(g) && isnan(w))
            continue;
        double err = fabs(g - w), bound = fl ? t->atol + t->rtol * fabs(w) : 0;
        if (!(err <= bound)) {
            snprintf(why, n_why, "element %lld of %lld: %.9g, want %.9g (|diff| %.3g > %.3g)", (long long)j,
                     (long long)n, g, w, err, bound);
            return 1;
        }
        if (fl && err / (fabs(w) > 1 ? fabs(w) : 1) > *worst)
            *worst = err / (fabs(w) > 1 ? fabs(w) : 1);
    }
    return 0;
}

/* ---- running ---- */

typedef struct {
    void *in[PIPPY_MAX_IO], *out[PIPPY_MAX_IO];
} tc_bufs;

static void tc_bufs_free(pippy_backend *b, tc_bufs *x)
{
    for (int i = 0; i < PIPPY_MAX_IO; i++) {
        if (b)
            pippy_backend_release(b, x->in[i]), pippy_backend_release(b, x->out[i]);
        else
            free(x->in[i]), free(x->out[i]);
    }
}

static int tc_result(const char *path, const tc *t, int bad, const char *why, double worst)
{
    if (bad) {
        printf("FAIL %s %s: %s\n", path, t->label, why);
        n_fail++;
    } else {
        if (verbose)
            printf("ok   %s %s (worst relative error %.2e)\n", path, t->label, worst);
        else
            printf("ok   %s %s\n", path, t->label);
        n_pass++;
    }
    return bad;
}

/* The cuda kernel of t on b with host inputs hin; compare with the reference outputs want. */
static void tc_run_on(pippy_backend *b, const char *path, tc *t, void *const *hin, void *const *want, int gpu_only)
{
    pippy_op_desc d = t->d;
    d.reference = 0;
    pippy_kernel *k = NULL;
    pippy_status st = pippy_backend_kernel_create(b, &d, &k);
    char why[512] = "";
    if (st != PIPPY_OK && b == emu && gpu_only && strstr(pippy_last_error(), "no host emulation"))
        return; /* a GPU-only kernel: its cases run on the GPU */
    if (st == PIPPY_OK && b == emu && gpu_only) {
        snprintf(why, sizeof why, "expected no host form");
        pippy_kernel_destroy(k);
        tc_result(path, t, 1, why, 0);
        return;
    }
    if (st != PIPPY_OK) {
        snprintf(why, sizeof why, "create failed: %s", pippy_last_error());
        tc_result(path, t, 1, why, 0);
        return;
    }
    tc_bufs x;
    memset(&x, 0, sizeof x);
    void *host_out[PIPPY_MAX_IO] = {0};
    for (int i = 0; i < d.n_in && st == PIPPY_OK; i++) {
        if (d.in[i].dtype == PIPPY_DT_UNDEFINED)
            continue;
        size_t n = pippy_tdesc_bytes(&d.in[i]);
        st = pippy_backend_alloc(b, n, &x.in[i]);
        if (st == PIPPY_OK)
            st = pippy_backend_copy(b, x.in[i], hin[i], n, PIPPY_QUEUE_COMPUTE);
    }
    for (int i = 0; i < d.n_out && st == PIPPY_OK; i++) {
        size_t n = pippy_tdesc_bytes(&d.out[i]);
        host_out[i] = malloc(n ? n : 1);
        memset(host_out[i], 0xff, n);
        st = pippy_backend_alloc(b, n, &x.out[i]);
        if (st == PIPPY_OK)
            st = pippy_backend_copy(b, x.out[i], host_out[i], n, PIPPY_QUEUE_COMPUTE);
    }
    if (st == PIPPY_OK) {
        pippy_kernel_run(k, (const void *const *)x.in, x.out);
        st = pippy_backend_sync(b);
    }
    for (int i = 0; i < d.n_out && st == PIPPY_OK; i++)
        st = pippy_backend_copy(b, host_out[i], x.out[i], pippy_tdesc_bytes(&d.out[i]), PIPPY_QUEUE_COMPUTE);
    if (st == PIPPY_OK)
        st = pippy_backend_sync(b);
    int bad = st != PIPPY_OK;
    double worst = 0;
    if (bad)
        snprintf(why, sizeof why, "%s", pippy_last_error());
    for (int i = 0; i < d.n_out && !bad; i++)
        if (tc_compare(t, &d.out[i], host_out[i], want[i], &worst, why, sizeof why)) {
            bad = 1;
            char more[64];
            snprintf(more, sizeof more, " (output %d)", i);
            strncat(why, more, sizeof why - strlen(why) - 1);
        }
    tc_result(path, t, bad, why, worst);
    pippy_kernel_destroy(k);
    tc_bufs_free(b, &x);
    for (int i = 0; i < PIPPY_MAX_IO; i++)
        free(host_out[i]);
}

/* Infer, the reference's outputs, then emulation and the GPU. gpu_only: no host form. */
static void tc_run_any(tc *t, int gpu_only)
{
    char shapes[160] = "";
    for (int i = 0; i < t->d.n_in; i++) {
        char s[64] = "-";
        if (t->d.in[i].dtype != PIPPY_DT_UNDEFINED)
            pippy_tdesc_str(&t->d.in[i], s, sizeof s);
        snprintf(shapes + strlen(shapes), sizeof shapes - strlen(shapes), "%s%s", i ? ", " : "", s);
    }
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%.79s", t->label);
    snprintf(t->label, sizeof t->label, "%.24s(%.90s)%s%.79s", t->d.op, shapes, prefix[0] ? " " : "", prefix);
    if (pippy_op_infer(&t->d) != PIPPY_OK) {
        printf("FAIL     %s: infer: %s\n", t->label, pippy_last_error());
        n_fail++;
        return;
    }
    rng = pippy_fnv1a(t->label, strlen(t->label), PIPPY_FNV_SEED);
    void *hin[PIPPY_MAX_IO] = {0}, *want[PIPPY_MAX_IO] = {0};
    for (int i = 0; i < t->d.n_in; i++) {
        if (t->d.in[i].dtype == PIPPY_DT_UNDEFINED)
            continue;
        size_t n = pippy_tdesc_bytes(&t->d.in[i]);
        hin[i] = malloc(n ? n : 1);
        if (t->cdata[i])
            memcpy(hin[i], t->cdata[i], n);
        else
            tc_fill(t, i, hin[i]);
    }
    pippy_op_desc r = t->d;
    r.reference = 1;
    pippy_kernel *ref = NULL;
    if (pippy_kernel_create(&r, &ref) != PIPPY_OK) {
        printf("FAIL     %s: the CPU reference: %s\n", t->label, pippy_last_error());
        n_fail++;
    } else {
        for (int i = 0; i < t->d.n_out; i++) {
            size_t n = pippy_tdesc_bytes(&t->d.out[i]);
            want[i] = malloc(n ? n : 1);
            memset(want[i], 0xff, n);
        }
        pippy_kernel_run(ref, (const void *const *)hin, want);
        pippy_kernel_destroy(ref);
        tc_run_on(emu, "emu", t, hin, want, gpu_only);
        if (gpu)
            tc_run_on(gpu, "gpu", t, hin, want, 0);
        else
            n_skip++;
    }
    for (int i = 0; i < PIPPY_MAX_IO; i++)
        free(hin[i]), free(want[i]);
}
static void tc_run(tc *t) { tc_run_any(t, 0); }
static void tc_done(tc *t) { tc_init(t, "", 0, 0); }
static void tc_run_gpu(tc *t) { tc_run_any(t, 1); }

/* ---- the cases ---- */

static void cases_unary(void)
{
    static const char *const fops[] = {"Relu", "LeakyRelu", "Tanh", "Sigmoid", "Erf", "Neg", "Exp", "Abs",
                                       "Softplus", "Gelu"};
    tc t = {0};
    for (size_t i = 0; i < sizeof fops / sizeof fops[0]; i++) {
        tc_init(&t, fops[i], 17, 1);
        TC_IN(&t, FLOAT, 3, 5, 7);
        tc_run(&t);
    }
    static const char *const pops[] = {"Sqrt", "Reciprocal", "Log"};
    for (size_t i = 0; i < sizeof pops / sizeof pops[0]; i++) {
        tc_init(&t, pops[i], 17, 1);
        TC_IN(&t, FLOAT, 257);
        t.fill[0] = F_POS;
        tc_run(&t);
    }
    tc_init(&t, "LeakyRelu", 17, 1);
    TC_IN(&t, FLOAT, 4, 6);
    tc_af(&t, "alpha", 0.3f);
    tc_run(&t);
    tc_init(&t, "Gelu", 20, 1);
    TC_IN(&t, FLOAT, 2, 33);
    tc_as(&t, "approximate", "tanh");
    tc_run(&t);
    static const int32_t nts[] = {PIPPY_DT_DOUBLE, PIPPY_DT_INT8, PIPPY_DT_UINT8, PIPPY_DT_INT32, PIPPY_DT_INT64};
    static const char *const nops[] = {"Relu", "Neg", "Abs"};
    for (size_t i = 0; i < sizeof nops / sizeof nops[0]; i++)
        for (size_t j = 0; j < sizeof nts / sizeof nts[0]; j++) {
            tc_init(&t, nops[i], 17, 1);
            int64_t dims[2] = {3, 11};
            tc_in(&t, nts[j], 2, dims);
            tc_run(&t);
        }
    tc_init(&t, "Neg", 17, 1); /* wrapping: -INT8_MIN */
    TC_IN(&t, INT8, 64);
    tc_range(&t, 0, -128, 128);
    tc_run(&t);
    tc_init(&t, "Clip", 13, 1);
    TC_IN(&t, FLOAT, 5, 9);
    tc_const_scalar(&t, PIPPY_DT_FLOAT, -0.5);
    tc_const_scalar(&t, PIPPY_DT_FLOAT, 0.75);
    tc_run(&t);
    tc_init(&t, "Clip", 13, 1);
    TC_IN(&t, INT64, 40);
    tc_absent(&t);
    tc_const_scalar(&t, PIPPY_DT_INT64, 3);
    snprintf(t.label, sizeof t.label, "max only");
    tc_run(&t);
    tc_init(&t, "Clip", 6, 1);
    TC_IN(&t, FLOAT, 17);
    tc_af(&t, "min", -1.0f);
    tc_af(&t, "max", 0.25f);
    tc_run(&t);
    tc_init(&t, "Not", 17, 1);
    TC_IN(&t, BOOL, 3, 3);
    tc_run(&t);
    tc_done(&t);
}

static void cases_binary(void)
{
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Less", "Greater",
                                      "LessOrEqual", "GreaterOrEqual"};
    static const int32_t types[] = {PIPPY_DT_FLOAT, PIPPY_DT_DOUBLE, PIPPY_DT_INT8, PIPPY_DT_UINT8, PIPPY_DT_INT32,
                                    PIPPY_DT_INT64};
    tc t = {0};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (size_t j = 0; j < sizeof types / sizeof types[0]; j++) {
            tc_init(&t, ops[i], 14, 1);
            int64_t a[3] = {2, 3, 5}, b[2] = {1, 5};
            tc_in(&t, types[j], 3, a);
            tc_in(&t, types[j], 2, b);
            tc_run(&t);
        }
    tc_init(&t, "Add", 14, 1); /* broadcast both ways */
    TC_IN(&t, FLOAT, 4, 1, 6);
    TC_IN(&t, FLOAT, 3, 1);
    tc_run(&t);
    tc_init(&t, "Mul", 14, 1); /* scalar */
    TC_IN(&t, FLOAT, 2, 3, 4, 5);
    TC_SCALAR(&t, FLOAT);
    tc_run(&t);
    tc_init(&t, "Sub", 14, 1);
    TC_IN(&t, FLOAT, 1, 16, 64);
    TC_IN(&t, FLOAT, 8, 16, 64);
    tc_run(&t);
    tc_init(&t, "Div", 14, 1); /* integer x / 0 and MIN / -1 */
    TC_IN(&t, INT32, 50);
    TC_IN(&t, INT32, 50);
    tc_range(&t, 1, -2, 2);
    tc_run(&t);
    tc_init(&t, "Div", 14, 1);
    TC_IN(&t, INT64, 64);
    TC_IN(&t, INT64, 64);
    tc_range(&t, 1, -1, 1);
    snprintf(t.label, sizeof t.label, "by 0 and -1");
    tc_run(&t);
    tc_init(&t, "Max", 13, 1); /* NaN propagates */
    TC_IN(&t, FLOAT, 100);
    TC_IN(&t, FLOAT, 100);
    t.fill[0] = t.fill[1] = F_NAN;
    tc_run(&t);
    tc_init(&t, "Pow", 15, 1);
    TC_IN(&t, FLOAT, 3, 7);
    TC_IN(&t, FLOAT, 7);
    t.fill[0] = F_POS;
    tc_run(&t);
    static const int32_t pt[] = {PIPPY_DT_FLOAT, PIPPY_DT_DOUBLE, PIPPY_DT_INT32, PIPPY_DT_INT64};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++) {
            if (i == j && i == 0)
                continue;
            tc_init(&t, "Pow", 15, 1);
            int64_t a[2] = {4, 6}, b[1] = {6};
            tc_in(&t, pt[i], 2, a);
            tc_in(&t, pt[j], 1, b);
            if (pt[i] == PIPPY_DT_FLOAT || pt[i] == PIPPY_DT_DOUBLE)
                t.fill[0] = F_POS;
            tc_range(&t, 1, -2, 4);
            if (pt[j] == PIPPY_DT_FLOAT || pt[j] == PIPPY_DT_DOUBLE)
                t.fill[1] = F_UNIFORM;
            tc_run(&t);
        }
    static const char *const logic[] = {"And", "Or", "Xor", "Equal"};
    for (size_t i = 0; i < 4; i++) {
        tc_init(&t, logic[i], 14, 1);
        TC_IN(&t, BOOL, 3, 4);
        TC_IN(&t, BOOL, 4);
        tc_run(&t);
    }
    static const char *const var[] = {"Sum", "Mean", "Max", "Min"};
    for (size_t i = 0; i < 4; i++) {
        tc_init(&t, var[i], 13, 1);
        TC_IN(&t, FLOAT, 3, 1);
        TC_IN(&t, FLOAT, 4);
        TC_IN(&t, FLOAT, 2, 3, 4);
        tc_run(&t);
        tc_init(&t, var[i], 13, 1);
        TC_IN(&t, FLOAT, 2, 5);
        tc_run(&t);
    }
    tc_init(&t, "Mean", 13, 1);
    TC_IN(&t, DOUBLE, 7);
    TC_IN(&t, DOUBLE, 7);
    TC_IN(&t, DOUBLE, 7);
    tc_run(&t);
    tc_init(&t, "Where", 16, 1);
    TC_IN(&t, BOOL, 1, 4);
    TC_IN(&t, FLOAT, 3, 4);
    TC_IN(&t, FLOAT, 3, 1);
    tc_run(&t);
    tc_init(&t, "Where", 16, 1);
    TC_IN(&t, BOOL, 2, 1, 1, 16, 16);
    TC_IN(&t, INT64, 2, 4, 16, 16);
    TC_SCALAR(&t, INT64);
    tc_run(&t);
    tc_done(&t);
}

static void cases_cast(void)
{
    static const int32_t ty[] = {PIPPY_DT_FLOAT, PIPPY_DT_DOUBLE, PIPPY_DT_FLOAT16, PIPPY_DT_INT8,
                                 PIPPY_DT_UINT8, PIPPY_DT_INT32, PIPPY_DT_INT64, PIPPY_DT_BOOL};
    tc t = {0};
    for (size_t i = 0; i < 8; i++)
        for (size_t j = 0; j < 8; j++) {
            if (i == j)
                continue;
            tc_init(&t, "Cast", 19, 1);
            int64_t dims[2] = {3, 9};
            tc_in(&t, ty[i], 2, dims);
            tc_ai(&t, "to", ty[j]);
            tc_range(&t, 0, -20, 20);
            if (ty[i] == PIPPY_DT_UINT8)
                tc_range(&t, 0, 0, 250);
            if (ty[i] == PIPPY_DT_FLOAT || ty[i] == PIPPY_DT_DOUBLE || ty[i] == PIPPY_DT_FLOAT16)
                t.fill[0] = F_UNIFORM;
            tc_run(&t);
        }
    tc_init(&t, "CastLike", 19, 1);
    TC_IN(&t, INT64, 10);
    TC_IN(&t, FLOAT, 1);
    tc_run(&t);
    tc_done(&t);
}

static void cases_move(void)
{
    tc t = {0};
    tc_init(&t, "Reshape", 14, 1);
    TC_IN(&t, FLOAT, 2, 3, 4);
    TC_CONST(&t, 4, -1);
    tc_run(&t);
    tc_init(&t, "Flatten", 13, 1);
    TC_IN(&t, INT64, 2, 3, 4);
    tc_ai(&t, "axis", 2);
    tc_run(&t);
    tc_init(&t, "Squeeze", 13, 1);
    TC_IN(&t, FLOAT, 2, 1, 4);
    TC_CONST(&t, 1);
    tc_run(&t);
    tc_init(&t, "Unsqueeze", 13, 1);
    TC_IN(&t, UINT8, 2, 4);
    TC_CONST(&t, 0, 3);
    tc_run(&t);
    tc_init(&t, "Identity", 16, 1);
    TC_IN(&t, DOUBLE, 5);
    tc_run(&t);
    tc_init(&t, "Dropout", 13, 2);
    TC_IN(&t, FLOAT, 6, 5);
    tc_const_scalar(&t, PIPPY_DT_FLOAT, 0.5);
    tc_const_scalar(&t, PIPPY_DT_BOOL, 0);
    snprintf(t.label, sizeof t.label, "inference, with the mask");
    tc_run(&t);
    tc_init(&t, "Transpose", 13, 1);
    TC_IN(&t, FLOAT, 2, 3, 4, 5);
    TC_INTS(&t, "perm", 0, 2, 3, 1);
    tc_run(&t);
    tc_init(&t, "Transpose", 13, 1);
    TC_IN(&t, INT64, 8, 16, 4, 16);
    TC_INTS(&t, "perm", 0, 2, 1, 3);
    tc_run(&t);
    tc_init(&t, "Transpose", 13, 1);
    TC_IN(&t, UINT8, 3, 7);
    tc_run(&t);
    tc_init(&t, "Expand", 13, 1);
    TC_IN(&t, FLOAT, 3, 1);
    TC_CONST(&t, 2, 3, 4);
    tc_run(&t);
    tc_init(&t, "Tile", 13, 1);
    TC_IN(&t, INT32, 2, 3);
    TC_CONST(&t, 3, 2);
    tc_run(&t);
    tc_init(&t, "Slice", 13, 1);
    TC_IN(&t, FLOAT, 6, 10, 4);
    TC_CONST(&t, 1, -1);
    TC_CONST(&t, 5, -9);
    TC_CONST(&t, 0, 1);
    TC_CONST(&t, 2, -2);
    snprintf(t.label, sizeof t.label, "steps 2 and -2");
    tc_run(&t);
    tc_init(&t, "Slice", 10, 1);
    TC_IN(&t, INT64, 4, 16, 16);
    TC_CONST(&t, 0, 0);
    TC_CONST(&t, 8, 8);
    TC_CONST(&t, 1, 2);
    tc_run(&t);
    tc_init(&t, "Concat", 13, 1);
    TC_IN(&t, FLOAT, 2, 3, 4);
    TC_IN(&t, FLOAT, 2, 1, 4);
    TC_IN(&t, FLOAT, 2, 5, 4);
    tc_ai(&t, "axis", 1);
    tc_run(&t);
    tc_init(&t, "Concat", 13, 1);
    TC_IN(&t, INT64, 1);
    TC_IN(&t, INT64, 3);
    tc_ai(&t, "axis", -1);
    tc_run(&t);
    tc_init(&t, "Split", 13, 3);
    TC_IN(&t, FLOAT, 8, 16, 192);
    TC_CONST(&t, 64, 64, 64);
    tc_ai(&t, "axis", 2);
    tc_run(&t);
    tc_init(&t, "Split", 18, 3);
    TC_IN(&t, INT32, 7, 2);
    tc_ai(&t, "num_outputs", 3);
    snprintf(t.label, sizeof t.label, "uneven");
    tc_run(&t);
    tc_init(&t, "Gather", 13, 1);
    TC_IN(&t, FLOAT, 10, 8);
    TC_IN(&t, INT64, 4, 5);
    tc_range(&t, 1, -12, 12);
    snprintf(t.label, sizeof t.label, "negative and out-of-range indices");
    tc_run(&t);
    tc_init(&t, "Gather", 13, 1);
    TC_IN(&t, INT64, 3, 6, 2);
    TC_IN(&t, INT32, 4);
    tc_range(&t, 1, -6, 6);
    tc_ai(&t, "axis", 1);
    tc_run(&t);
    tc_init(&t, "Gather", 13, 1);
    TC_IN(&t, FLOAT, 5, 3);
    TC_SCALAR(&t, INT64);
    tc_range(&t, 1, 0, 5);
    tc_run(&t);
    for (int up = 0; up < 2; up++) {
        tc_init(&t, "Trilu", 14, 1);
        TC_IN(&t, FLOAT, 2, 5, 7);
        tc_const_scalar(&t, PIPPY_DT_INT64, up ? -1 : 2);
        tc_ai(&t, "upper", up);
        tc_run(&t);
    }
    tc_init(&t, "Trilu", 14, 1);
    TC_IN(&t, BOOL, 4, 4);
    tc_run(&t);
    tc_done(&t);
}

static void cases_constant(void)
{
    tc t = {0};
    tc_init(&t, "Shape", 15, 1);
    TC_IN(&t, FLOAT, 2, 3, 4);
    tc_ai(&t, "start", 1);
    tc_run(&t);
    tc_init(&t, "Size", 13, 1);
    TC_IN(&t, FLOAT, 2, 3, 4);
    tc_run(&t);
    tc_init(&t, "ConstantOfShape", 9, 1);
    TC_CONST(&t, 3, 5);
    tc_run(&t);
    tc_init(&t, "Range", 11, 1);
    tc_const_scalar(&t, PIPPY_DT_INT64, 2);
    tc_const_scalar(&t, PIPPY_DT_INT64, 17);
    tc_const_scalar(&t, PIPPY_DT_INT64, 3);
    tc_run(&t);
    tc_init(&t, "Constant", 13, 1);
    TC_INTS(&t, "value_ints", 4, -5, 6);
    tc_run(&t);
    tc_done(&t);
}

static void cases_reduce(void)
{
    static const char *const ops[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"};
    static const int32_t types[] = {PIPPY_DT_FLOAT, PIPPY_DT_DOUBLE, PIPPY_DT_INT32, PIPPY_DT_INT64, PIPPY_DT_INT8};
    tc t = {0};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++) {
            tc_init(&t, ops[i], 13, 1);
            int64_t dims[3] = {3, 4, 5};
            tc_in(&t, types[j], 3, dims);
            TC_INTS(&t, "axes", 0, 2);
            if (i == 0) { /* ReduceSum takes its axes as an input from opset 13 */
                t.d.n_attrs = 0;
                TC_CONST(&t, 0, 2);
            }
            tc_run(&t);
        }
    tc_init(&t, "ReduceMean", 13, 1);
    TC_IN(&t, FLOAT, 8, 16, 64);
    TC_INTS(&t, "axes", -1);
    snprintf(t.label, sizeof t.label, "the decomposed layer norm's");
    tc_run(&t);
    tc_init(&t, "ReduceMax", 13, 1);
    TC_IN(&t, FLOAT, 6, 9);
    TC_INTS(&t, "axes", 1);
    tc_ai(&t, "keepdims", 0);
    t.fill[0] = F_NAN;
    tc_run(&t);
    tc_init(&t, "ReduceSum", 13, 1);
    TC_IN(&t, FLOAT, 4, 5);
    tc_ai(&t, "noop_with_empty_axes", 1);
    tc_run(&t);
    tc_init(&t, "ReduceMean", 18, 1);
    TC_IN(&t, FLOAT, 4, 3, 2);
    snprintf(t.label, sizeof t.label, "every axis");
    tc_run(&t);
    tc_init(&t, "ReduceMin", 18, 1);
    TC_IN(&t, BOOL, 4, 6);
    TC_CONST(&t, 1);
    tc_run(&t);
    tc_init(&t, "ReduceSum", 13, 1);
    TC_IN(&t, FLOAT, 0, 3);
    TC_CONST(&t, 0);
    snprintf(t.label, sizeof t.label, "empty");
    tc_run(&t);
    tc_done(&t);
}

static void cases_pool(void)
{
    tc t = {0};
    tc_init(&t, "MaxPool", 12, 1); /* resnet's stem */
    TC_IN(&t, FLOAT, 2, 8, 16, 16);
    TC_INTS(&t, "kernel_shape", 3, 3);
    TC_INTS(&t, "strides", 2, 2);
    TC_INTS(&t, "pads", 1, 1, 1, 1);
    tc_run(&t);
    tc_init(&t, "MaxPool", 12, 1);
    TC_IN(&t, FLOAT, 1, 3, 9, 10);
    TC_INTS(&t, "kernel_shape", 2, 3);
    TC_INTS(&t, "dilations", 2, 1);
    tc_ai(&t, "ceil_mode", 1);
    TC_INTS(&t, "strides", 2, 2);
    tc_run(&t);
    for (int inc = 0; inc < 2; inc++) {
        tc_init(&t, "AveragePool", 19, 1);
        TC_IN(&t, FLOAT, 2, 3, 7, 7);
        TC_INTS(&t, "kernel_shape", 3, 3);
        TC_INTS(&t, "pads", 1, 0, 2, 1);
        TC_INTS(&t, "strides", 2, 2);
        tc_ai(&t, "count_include_pad", inc);
        tc_ai(&t, "ceil_mode", 1);
        tc_run(&t);
    }
    tc_init(&t, "AveragePool", 19, 1);
    TC_IN(&t, FLOAT, 2, 3, 11);
    TC_INTS(&t, "kernel_shape", 4);
    tc_as(&t, "auto_pad", "SAME_UPPER");
    tc_run(&t);
    tc_init(&t, "MaxPool", 12, 1);
    TC_IN(&t, FLOAT, 1, 2, 5, 6, 7);
    TC_INTS(&t, "kernel_shape", 2, 2, 3);
    tc_run(&t);
    tc_init(&t, "GlobalAveragePool", 1, 1);
    TC_IN(&t, FLOAT, 8, 512, 7, 7);
    tc_run(&t);
    tc_init(&t, "BatchNormalization", 15, 1);
    TC_IN(&t, FLOAT, 2, 3, 4, 5);
    TC_IN(&t, FLOAT, 3);
    TC_IN(&t, FLOAT, 3);
    TC_IN(&t, FLOAT, 3);
    TC_IN(&t, FLOAT, 3);
    t.fill[4] = F_POS;
    tc_run(&t);
    tc_done(&t);
}

static void cases_rows(void)
{
    tc t = {0};
    tc_init(&t, "Softmax", 13, 1);
    TC_IN(&t, FLOAT, 8, 4, 16, 16);
    tc_run_gpu(&t);
    tc_init(&t, "Softmax", 13, 1);
    TC_IN(&t, FLOAT, 3, 70, 5);
    tc_ai(&t, "axis", 1);
    snprintf(t.label, sizeof t.label, "along a middle axis");
    tc_run_gpu(&t);
    tc_init(&t, "Softmax", 11, 1);
    TC_IN(&t, FLOAT, 3, 4, 5);
    snprintf(t.label, sizeof t.label, "opset 11: 2-D at axis 1");
    tc_run_gpu(&t);
    tc_init(&t, "LogSoftmax", 13, 1);
    TC_IN(&t, FLOAT, 5, 1000);
    tc_run_gpu(&t);
    tc_init(&t, "LayerNormalization", 17, 1);
    TC_IN(&t, FLOAT, 8, 16, 64);
    TC_IN(&t, FLOAT, 64);
    TC_IN(&t, FLOAT, 64);
    tc_run_gpu(&t);
    tc_init(&t, "LayerNormalization", 17, 3);
    TC_IN(&t, FLOAT, 4, 3, 10);
    TC_IN(&t, FLOAT, 1, 10);
    TC_IN(&t, FLOAT, 3, 1);
    tc_ai(&t, "axis", 1);
    tc_af(&t, "epsilon", 1e-3f);
    snprintf(t.label, sizeof t.label, "broadcast parameters, Mean and InvStdDev");
    tc_run_gpu(&t);
    tc_init(&t, "LayerNormalization", 17, 1);
    TC_IN(&t, FLOAT, 2, 4099);
    TC_IN(&t, FLOAT, 4099);
    tc_run_gpu(&t);
    tc_done(&t);
}

static void cases_matmul(void)
{
    tc t = {0};
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 8, 16, 64);
    TC_IN(&t, FLOAT, 64, 192);
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 8, 4, 16, 16);
    TC_IN(&t, FLOAT, 8, 4, 16, 16);
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 2, 1, 5, 7);
    TC_IN(&t, FLOAT, 1, 3, 7, 6);
    snprintf(t.label, sizeof t.label, "batch broadcast both ways");
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 3, 2, 5, 7);
    TC_IN(&t, FLOAT, 2, 7, 6);
    snprintf(t.label, sizeof t.label, "a loop of strided batches");
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 7);
    TC_IN(&t, FLOAT, 3, 7, 5);
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 4, 9);
    TC_IN(&t, FLOAT, 9);
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 2, 33, 65);
    TC_IN(&t, FLOAT, 65, 17);
    TC_IN(&t, FLOAT, 17);
    tc_ai(&t, "pippy.bias", 1);
    tc_as(&t, "pippy.activation", "Relu");
    snprintf(t.label, sizeof t.label, "bias + ReLU epilogue, odd sizes");
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 8, 4, 16, 16);
    TC_IN(&t, FLOAT, 8, 4, 16, 16);
    tc_ai(&t, "pippy.trans_b", 1);
    snprintf(t.label, sizeof t.label, "attention's K^T");
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 3, 64, 10);
    TC_IN(&t, FLOAT, 3, 64, 20);
    tc_ai(&t, "pippy.trans_a", 1);
    tc_run_gpu(&t);
    tc_init(&t, "MatMul", 13, 1);
    TC_IN(&t, FLOAT, 256, 512);
    TC_IN(&t, FLOAT, 512, 128);
    t.rtol = 1e-4;
    t.atol = 1e-4;
    snprintf(t.label, sizeof t.label, "K = 512");
    tc_run_gpu(&t);
    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, FLOAT, 8, 64);
    TC_IN(&t, FLOAT, 128, 64);
    TC_IN(&t, FLOAT, 128);
    tc_ai(&t, "transB", 1);
    snprintf(t.label, sizeof t.label, "a Linear (bias epilogue)");
    tc_run_gpu(&t);
    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, FLOAT, 64, 8);
    TC_IN(&t, FLOAT, 64, 32);
    TC_IN(&t, FLOAT, 8, 1);
    tc_ai(&t, "transA", 1);
    tc_af(&t, "alpha", 0.5f);
    tc_af(&t, "beta", 2.0f);
    tc_as(&t, "pippy.activation", "Relu");
    snprintf(t.label, sizeof t.label, "C [M,1], alpha, beta, ReLU");
    tc_run_gpu(&t);
    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, FLOAT, 5, 6);
    TC_IN(&t, FLOAT, 6, 7);
    TC_SCALAR(&t, FLOAT);
    tc_run_gpu(&t);
    tc_init(&t, "Gemm", 13, 1);
    TC_IN(&t, FLOAT, 5, 6);
    TC_IN(&t, FLOAT, 7, 6);
    TC_IN(&t, FLOAT, 5, 7);
    tc_ai(&t, "transB", 1);
    tc_af(&t, "beta", 0.25f);
    tc_run_gpu(&t);
    tc_done(&t);
}

static void cases_conv(void)
{
    tc t = {0};
    tc_init(&t, "Conv", 11, 1); /* resnet's stem: 7x7 stride 2 */
    TC_IN(&t, FLOAT, 2, 3, 32, 32);
    TC_IN(&t, FLOAT, 16, 3, 7, 7);
    TC_IN(&t, FLOAT, 16);
    TC_INTS(&t, "kernel_shape", 7, 7);
    TC_INTS(&t, "strides", 2, 2);
    TC_INTS(&t, "pads", 3, 3, 3, 3);
    tc_run_gpu(&t);
    tc_init(&t, "Conv", 11, 1);
    TC_IN(&t, FLOAT, 2, 8, 9, 9);
    TC_IN(&t, FLOAT, 8, 8, 3, 3);
    TC_IN(&t, FLOAT, 8);
    TC_INTS(&t, "pads", 1, 1, 1, 1);
    tc_as(&t, "pippy.activation", "Relu");
    snprintf(t.label, sizeof t.label, "3x3 + bias + ReLU");
    tc_run_gpu(&t);
    tc_init(&t, "Conv", 11, 1);
    TC_IN(&t, FLOAT, 1, 4, 10, 9);
    TC_IN(&t, FLOAT, 6, 2, 3, 2);
    tc_ai(&t, "group", 2);
    TC_INTS(&t, "dilations", 2, 1);
    tc_as(&t, "auto_pad", "SAME_UPPER");
    TC_INTS(&t, "strides", 2, 2);
    snprintf(t.label, sizeof t.label, "groups, dilation, SAME_UPPER (asymmetric pads)");
    tc_run_gpu(&t);
    tc_init(&t, "Conv", 11, 1);
    TC_IN(&t, FLOAT, 2, 3, 20);
    TC_IN(&t, FLOAT, 5, 3, 4);
    TC_INTS(&t, "pads", 2, 1);
    snprintf(t.label, sizeof t.label, "1-D, pads 2 and 1");
    tc_run_gpu(&t);
    tc_init(&t, "Conv", 11, 1);
    TC_IN(&t, FLOAT, 1, 2, 5, 6, 7);
    TC_IN(&t, FLOAT, 3, 2, 3, 3, 3);
    TC_IN(&t, FLOAT, 3);
    TC_INTS(&t, "pads", 1, 1, 1, 1, 1, 1);
    tc_run_gpu(&t);
    tc_init(&t, "Conv", 11, 1);
    TC_IN(&t, FLOAT, 8, 64, 14, 14);
    TC_IN(&t, FLOAT, 128, 64, 1, 1);
    TC_INTS(&t, "strides", 2, 2);
    snprintf(t.label, sizeof t.label, "resnet's 1x1 downsample");
    tc_run_gpu(&t);
    tc_done(&t);
}

/* ---- device.h and the tables' refusals ---- */

static void check(int ok, const char *what)
{
    printf("%s table %s%s%s\n", ok ? "ok  " : "FAIL", what, ok ? "" : ": ", ok ? "" : pippy_last_error());
    ok ? n_pass++ : n_fail++;
}

static int refused(const pippy_backend_iface *bi, tc *t, const char *needle)
{
    if (pippy_op_infer(&t->d) != PIPPY_OK)
        return 0;
    pippy_error_clear();
    return pippy_backend_check_op(bi, &t->d) == PIPPY_ERR_UNSUPPORTED && strstr(pippy_last_error(), needle) &&
           strstr(pippy_last_error(), "cuda");
}

static void cases_tables(void)
{
    const pippy_backend_iface *cu = pippy_backend_find("cuda");
    check(cu && cu == &pippy_backend_cuda_iface, "find(\"cuda\") is the cuda backend");
    check(pippy_backend_find("tpu") == NULL && strstr(pippy_last_error(), "unknown backend 'tpu'"),
          "an unknown backend is named");
    tc t = {0};
    tc_init(&t, "Tanh", 17, 1); /* (the CPU's infer refuses it too; the cuda check on its own) */
    TC_IN(&t, DOUBLE, 4);
    t.d.out[0] = t.d.in[0];
    pippy_error_clear();
    check(pippy_backend_check_op(cu, &t.d) == PIPPY_ERR_UNSUPPORTED && strstr(pippy_last_error(), "Tanh on double"),
          "Tanh on double: no cuda kernel, said so");
    tc_init(&t, "Dropout", 13, 1);
    TC_IN(&t, FLOAT, 4);
    tc_const_scalar(&t, PIPPY_DT_FLOAT, 0.5);
    TC_SCALAR(&t, BOOL);
    check(refused(cu, &t, "training_mode"), "Dropout with a run-time training_mode is refused");
    tc_init(&t, "Range", 11, 1);
    TC_SCALAR(&t, INT64);
    tc_const_scalar(&t, PIPPY_DT_INT64, 5);
    tc_const_scalar(&t, PIPPY_DT_INT64, 1);
    t.d.out[0] = (pippy_tdesc){PIPPY_DT_INT64, 1, {5}};
    pippy_error_clear();
    check(pippy_backend_check_op(cu, &t.d) == PIPPY_ERR_UNSUPPORTED && strstr(pippy_last_error(), "run time"),
          "Range with a run-time input is refused");
    tc_init(&t, "SoftmaxCrossEntropyLoss", 13, 1);
    TC_IN(&t, FLOAT, 4, 3);
    TC_IN(&t, INT64, 4);
    t.d.out[0] = (pippy_tdesc){PIPPY_DT_FLOAT, 0, {0}};
    pippy_error_clear();
    check(pippy_backend_check_op(cu, &t.d) == PIPPY_ERR_UNSUPPORTED &&
              strstr(pippy_last_error(), "has no kernel on the cuda backend"),
          "a training op has no cuda kernel, said so");
    tc_init(&t, "Relu", 17, 1);
    TC_IN(&t, FLOAT, 4);
    pippy_op_infer(&t.d);
    check(pippy_backend_check_op(&pippy_backend_cpu_iface, &t.d) == PIPPY_OK &&
              pippy_backend_check_op(cu, &t.d) == PIPPY_OK,
          "Relu runs on both backends");
    tc_init(&t, "Relu", 17, 1); /* frees the last case's constants */
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *v = getenv("PIPPY_TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0");
    if (pippy_cuda_open_emulated(&emu) != PIPPY_OK) {
        printf("FAIL cannot open the host emulation: %s\n0 passed, 1 failed, 0 skipped\n", pippy_last_error());
        return 1;
    }
    if (pippy_backend_open("cuda", NULL, &gpu) != PIPPY_OK) {
        gpu = NULL;
        snprintf(gpu_why, sizeof gpu_why, "%s", pippy_last_error());
    } else {
        printf("GPU: %s\n", gpu->what);
    }
    cases_tables();
    cases_unary();
    cases_binary();
    cases_cast();
    cases_move();
    cases_constant();
    cases_reduce();
    cases_pool();
    cases_rows();
    cases_matmul();
    cases_conv();
    if (!gpu)
        printf("skipped: all %d GPU runs of the cases above (each case's emulated run, where it has one, ran): "
               "no GPU available: %s\n",
               n_skip, gpu_why);
    pippy_backend_close(gpu);
    pippy_backend_close(emu);
    printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
    return n_fail ? 1 : 0;
}
