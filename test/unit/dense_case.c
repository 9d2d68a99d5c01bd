/* dense_case.c — see dense_case.h. */
#include "dense_case.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dc_init(dcase *t, const char *op, int opset, int n_out)
{
    memset(t, 0, sizeof *t);
    t->d.op = op;
    t->d.domain = "";
    t->d.opset = opset;
    t->d.name = "t";
    t->d.attrs = t->attrs;
    t->d.n_out = n_out;
}

void dc_in(dcase *t, int rank, const int64_t *dims)
{
    pippy_tdesc *x = &t->d.in[t->d.n_in++];
    x->dtype = PIPPY_DT_FLOAT;
    x->rank = rank;
    for (int i = 0; i < rank; i++)
        x->dims[i] = dims[i];
}

void dc_in_scalar(dcase *t) { dc_in(t, 0, NULL); }
void dc_in_absent(dcase *t) { t->d.in[t->d.n_in++].dtype = PIPPY_DT_UNDEFINED; }

static pippy_attr *dc_attr(dcase *t, const char *name, int type)
{
    ck_assert_int_lt(t->d.n_attrs, DC_MAX_ATTRS);
    pippy_attr *a = &t->attrs[t->d.n_attrs++];
    memset(a, 0, sizeof *a);
    a->name = name;
    a->type = type;
    return a;
}

void dc_attr_i(dcase *t, const char *name, int64_t v) { dc_attr(t, name, PIPPY_ATTR_INT)->i = v; }
void dc_attr_f(dcase *t, const char *name, float v) { dc_attr(t, name, PIPPY_ATTR_FLOAT)->f = v; }
void dc_attr_s(dcase *t, const char *name, const char *v) { dc_attr(t, name, PIPPY_ATTR_STRING)->s = v; }

void dc_attr_ints(dcase *t, const char *name, int n, const int64_t *v)
{
    int slot = t->d.n_attrs;
    ck_assert_int_le(n, 8);
    pippy_attr *a = dc_attr(t, name, PIPPY_ATTR_INTS);
    memcpy(t->ints[slot], v, (size_t)n * sizeof *v);
    a->n = n;
    a->ints = t->ints[slot];
}

void dc_window_attrs(dcase *t, int ns, const int64_t *k, const char *auto_pad, const int64_t *strides,
                     const int64_t *dil, const int64_t *pads, int ceil_mode, int include_pad)
{
    if (k)
        dc_attr_ints(t, "kernel_shape", ns, k);
    if (auto_pad)
        dc_attr_s(t, "auto_pad", auto_pad);
    if (strides[0])
        dc_attr_ints(t, "strides", ns, strides);
    if (dil[0])
        dc_attr_ints(t, "dilations", ns, dil);
    int any_pad = 0;
    for (int i = 0; i < 2 * ns; i++)
        any_pad |= pads[i] != 0;
    if (any_pad)
        dc_attr_ints(t, "pads", 2 * ns, pads);
    if (ceil_mode)
        dc_attr_i(t, "ceil_mode", 1);
    if (include_pad)
        dc_attr_i(t, "count_include_pad", 1);
}

static uint64_t dc_rng;

void dc_seed(unsigned seed) { dc_rng = seed * 2654435761u + 1; }

float dc_uniform(void)
{
    dc_rng = dc_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((dc_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

void dc_fill(float *p, int64_t n, int mode)
{
    for (int64_t i = 0; i < n; i++) {
        float u = dc_uniform();
        p[i] = mode == DC_FILL_POSITIVE ? 1.0f + 0.5f * u : mode == DC_FILL_TIES ? 0.5f * (float)(int)(2.5f * u) : u;
    }
}

static void dc_fill_input(const dcase *t, int i, void *buf, int64_t n)
{
    if (t->fill[i] != DC_FILL_LABELS) {
        dc_fill(buf, n, t->fill[i]);
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        float u = 0.5f * (dc_uniform() + 1.0f); /* [0, 1) */
        int64_t v = dc_uniform() < -0.75f ? t->label_ignore : (int64_t)(u * (float)t->label_max);
        if (t->d.in[i].dtype == PIPPY_DT_INT32)
            ((int32_t *)buf)[j] = (int32_t)v;
        else
            ((int64_t *)buf)[j] = v;
    }
}

double dc_rel_err(const float *f, const float *r, int64_t n, int64_t *at)
{
    double worst = 0;
    *at = -1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)f[i] - (double)r[i]) / fmax(1.0, fabs((double)r[i]));
        if (!(e <= worst)) { /* also catches NaN */
            worst = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return worst;
}

double dc_scaled_err(const float *f, const float *r, int64_t n, int64_t *at)
{
    double scale = 0, worst = 0;
    *at = -1;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)r[i]));
    if (scale == 0)
        scale = 1;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)f[i] - (double)r[i]) / scale;
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            *at = i;
        }
    }
    return worst;
}

int dc_verbose(void)
{
    const char *v = getenv("PIPPY_TEST_VERBOSE");
    return v && v[0] && strcmp(v, "0") != 0;
}

static void *dc_alloc(const pippy_tdesc *td)
{
    size_t b = pippy_tdesc_bytes(td);
    void *p = malloc(b ? b : 16);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* Compare n floats of f and r; returns the error (and fails past t's bound). */
static double dc_compare(const dcase *t, const float *f, const float *r, int64_t n, const char *label,
                         const char *what, int i, int round)
{
    int64_t at;
    double tol = t->tol > 0 ? t->tol : 1e-4;
    double e = t->scaled ? dc_scaled_err(f, r, n, &at) : dc_rel_err(f, r, n, &at);
    ck_assert_msg(e <= tol, "%s: %s %d round %d differs at %lld: fast %.9g vs reference %.9g (error %g, bound %g)",
                  label, what, i, round, (long long)at, at >= 0 ? f[at] : 0.0, at >= 0 ? r[at] : 0.0, e, tol);
    return e;
}

double dc_check_fast_vs_ref(dcase *t, unsigned seed, unsigned const_mask, const char *label)
{
    pippy_op_desc *d = &t->d;
    dc_seed(seed);
    pippy_status st = pippy_op_infer(d);
    ck_assert_msg(st == PIPPY_OK, "%s: infer failed: %s", label, pippy_last_error());
    void *in_f[PIPPY_MAX_IO] = {0}, *in_r[PIPPY_MAX_IO] = {0};
    float *out_f[PIPPY_MAX_IO] = {0}, *out_r[PIPPY_MAX_IO] = {0};
    for (int i = 0; i < d->n_in; i++) {
        if (d->in[i].dtype == PIPPY_DT_UNDEFINED)
            continue;
        in_f[i] = dc_alloc(&d->in[i]);
        in_r[i] = dc_alloc(&d->in[i]);
        dc_fill_input(t, i, in_r[i], pippy_tdesc_numel(&d->in[i]));
        memcpy(in_f[i], in_r[i], pippy_tdesc_bytes(&d->in[i]));
        if (const_mask & (1u << i))
            d->in_const[i] = in_r[i];
    }
    for (int i = 0; i < d->n_out; i++) {
        out_f[i] = dc_alloc(&d->out[i]);
        out_r[i] = dc_alloc(&d->out[i]);
    }
    pippy_kernel *kf = NULL, *kr = NULL;
    d->reference = 0;
    st = pippy_kernel_create(d, &kf);
    ck_assert_msg(st == PIPPY_OK, "%s: create (fast) failed: %s", label, pippy_last_error());
    d->reference = 1;
    st = pippy_kernel_create(d, &kr);
    ck_assert_msg(st == PIPPY_OK, "%s: create (reference) failed: %s", label, pippy_last_error());
    d->reference = 0;
    if (t->must_fast)
        ck_assert_msg(kf->run != kr->run, "%s: the fast kernel is the reference (no oneDNN path taken)", label);
    double worst = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; round == 1 && i < d->n_in; i++) /* new data for the inputs given at run time */
            if (in_r[i] && !(const_mask & (1u << i))) {
                dc_fill_input(t, i, in_r[i], pippy_tdesc_numel(&d->in[i]));
                memcpy(in_f[i], in_r[i], pippy_tdesc_bytes(&d->in[i]));
            }
        const void *args_f[PIPPY_MAX_IO], *args_r[PIPPY_MAX_IO];
        for (int i = 0; i < PIPPY_MAX_IO; i++) {
            args_r[i] = in_r[i];
            args_f[i] = (const_mask & (1u << i)) ? NULL : in_f[i];
        }
        for (int i = 0; i < d->n_out; i++) {
            int64_t n = pippy_tdesc_numel(&d->out[i]);
            for (int64_t j = 0; j < n; j++)
                out_f[i][j] = out_r[i][j] = t->out_init ? dc_uniform() : NAN;
        }
        pippy_kernel_run(kf, args_f, (void *const *)out_f);
        pippy_kernel_run(kr, args_r, (void *const *)out_r);
        for (int i = 0; i < d->n_out; i++)
            worst = fmax(worst, dc_compare(t, out_f[i], out_r[i], pippy_tdesc_numel(&d->out[i]), label, "output",
                                           i, round));
        for (int i = 0; i < d->n_in; i++)
            if (in_r[i] && d->in[i].dtype == PIPPY_DT_FLOAT && !(const_mask & (1u << i)))
                worst = fmax(worst, dc_compare(t, in_f[i], in_r[i], pippy_tdesc_numel(&d->in[i]), label,
                                               "input (written by the kernel)", i, round));
    }
    if (dc_verbose())
        printf("%s: fast vs reference, worst error %.3g\n", label, worst);
    pippy_kernel_destroy(kf);
    pippy_kernel_destroy(kr);
    for (int i = 0; i < PIPPY_MAX_IO; i++) {
        free(in_f[i]);
        free(in_r[i]);
        free(out_f[i]);
        free(out_r[i]);
        d->in_const[i] = NULL;
    }
    return worst;
}

void dc_run(dcase *t, int reference, const void *const *inputs, void *const *outputs, const char *label)
{
    pippy_op_desc *d = &t->d;
    pippy_status st = pippy_op_infer(d);
    ck_assert_msg(st == PIPPY_OK, "%s: infer failed: %s", label, pippy_last_error());
    d->reference = reference;
    pippy_kernel *k;
    st = pippy_kernel_create(d, &k);
    d->reference = 0;
    ck_assert_msg(st == PIPPY_OK, "%s: create failed: %s", label, pippy_last_error());
    pippy_kernel_run(k, inputs, outputs);
    pippy_kernel_destroy(k);
}

void dc_check_known(dcase *t, const float *const *inputs, const float *want, int64_t n, const char *label)
{
    pippy_op_desc *d = &t->d;
    pippy_status st = pippy_op_infer(d);
    ck_assert_msg(st == PIPPY_OK, "%s: infer failed: %s", label, pippy_last_error());
    ck_assert_int_eq(pippy_tdesc_numel(&d->out[0]), n);
    float *y = malloc((size_t)n * sizeof *y);
    for (int ref = 1; ref >= 0; ref--) {
        void *outs[PIPPY_MAX_IO] = {y};
        dc_run(t, ref, (const void *const *)inputs, outs, label);
        for (int64_t i = 0; i < n; i++)
            ck_assert_msg(fabs(y[i] - want[i]) <= 1e-5 * fmax(1.0, fabs(want[i])),
                          "%s (%s): y[%lld] = %.7g, expected %.7g", label, ref ? "reference" : "fast", (long long)i,
                          y[i], want[i]);
    }
    free(y);
}

void dc_check_infer_fails(dcase *t, pippy_status want, const char *needle1, const char *needle2)
{
    pippy_error_clear();
    pippy_status st = pippy_op_infer(&t->d);
    ck_assert_msg(st == want, "infer of %s returned %s, expected %s (message: %s)", t->d.op, pippy_status_string(st),
                  pippy_status_string(want), pippy_last_error());
    const char *msg = pippy_last_error();
    if (needle1)
        ck_assert_msg(strstr(msg, needle1), "message '%s' lacks '%s'", msg, needle1);
    if (needle2)
        ck_assert_msg(strstr(msg, needle2), "message '%s' lacks '%s'", msg, needle2);
}
