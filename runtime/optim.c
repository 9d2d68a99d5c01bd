/* optim.c — see optim.h.
 *
 * The element loops use restrict pointers and float arithmetic only, so the compiler vectorises
 * them; the Makefile builds this file with -fno-math-errno so that sqrtf becomes a vector
 * instruction (its argument is never negative here, and errno is never read). Scalars are computed once per call, in
 * double, and rounded to float the way torch rounds a Python number applied to a float tensor. */
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The element loops are built twice on x86-64, for AVX2 and for the baseline, and the loader
 * picks one (ifunc). AVX2 without FMA: the same IEEE operations, so the same results, but twice
 * the width for AdamW's divisions and square roots, which bound it on one core. */
#if defined(__x86_64__) && defined(__GNUC__)
#define PIPPY_OPTIM_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PIPPY_OPTIM_CLONES
#endif

void pippy_optim_defaults(pippy_optim_config *c, pippy_optim_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = kind == PIPPY_OPTIM_ADAMW ? 1e-2 : 0.0;
    c->schedule = PIPPY_LR_CONSTANT;
}

const char *pippy_optim_kind_name(pippy_optim_kind k)
{
    return k == PIPPY_OPTIM_ADAMW ? "adamw" : k == PIPPY_OPTIM_SGD ? "sgd" : "?";
}

/* A finite x with lo <= x (and x < hi when hi_open, x <= hi otherwise). */
static int pippy_in_range(double x, double lo, double hi, int hi_open)
{
    return isfinite(x) && x >= lo && (hi_open ? x < hi : x <= hi);
}

pippy_status pippy_optim_check(const pippy_optim_config *c)
{
    if (c->kind != PIPPY_OPTIM_SGD && c->kind != PIPPY_OPTIM_ADAMW)
        return pippy_fail(PIPPY_ERR_USAGE, "optimizer: unknown kind %d (expected sgd or adamw)", (int)c->kind);
    if (!pippy_in_range(c->lr, 0, INFINITY, 1))
        return pippy_fail(PIPPY_ERR_USAGE, "--lr must be a finite number >= 0, found %g", c->lr);
    if (!pippy_in_range(c->weight_decay, 0, INFINITY, 1))
        return pippy_fail(PIPPY_ERR_USAGE, "--weight-decay must be a finite number >= 0, found %g", c->weight_decay);
    if (!pippy_in_range(c->clip_grad_norm, 0, INFINITY, 1))
        return pippy_fail(PIPPY_ERR_USAGE, "--clip-grad-norm must be a finite number >= 0 (0: off), found %g",
                          c->clip_grad_norm);
    if (c->kind == PIPPY_OPTIM_SGD) {
        if (!pippy_in_range(c->momentum, 0, INFINITY, 1))
            return pippy_fail(PIPPY_ERR_USAGE, "--momentum must be a finite number >= 0, found %g", c->momentum);
        if (!pippy_in_range(c->dampening, 0, 1, 0))
            return pippy_fail(PIPPY_ERR_USAGE, "--dampening must be in [0, 1], found %g", c->dampening);
        if (c->nesterov && (c->momentum <= 0 || c->dampening != 0))
            return pippy_fail(PIPPY_ERR_USAGE,
                              "--nesterov needs --momentum > 0 and --dampening 0, found momentum %g, dampening %g",
                              c->momentum, c->dampening);
    } else {
        if (!pippy_in_range(c->beta1, 0, 1, 1) || !pippy_in_range(c->beta2, 0, 1, 1))
            return pippy_fail(PIPPY_ERR_USAGE, "--betas must both be in [0, 1), found %g,%g", c->beta1, c->beta2);
        if (!pippy_in_range(c->eps, 0, INFINITY, 1))
            return pippy_fail(PIPPY_ERR_USAGE, "--eps must be a finite number >= 0, found %g", c->eps);
    }
    if (c->schedule == PIPPY_LR_COSINE) {
        if (c->warmup_steps < 0)
            return pippy_fail(PIPPY_ERR_USAGE, "--warmup-steps must be >= 0, found %lld", (long long)c->warmup_steps);
        if (c->decay_steps < 0)
            return pippy_fail(PIPPY_ERR_USAGE, "--decay-steps must be >= 1 (0: the rest of the run), found %lld",
                              (long long)c->decay_steps);
        if (!pippy_in_range(c->min_lr, 0, c->lr, 0))
            return pippy_fail(PIPPY_ERR_USAGE, "--min-lr must be in [0, lr = %g], found %g", c->lr, c->min_lr);
    } else if (c->schedule != PIPPY_LR_CONSTANT) {
        return pippy_fail(PIPPY_ERR_USAGE, "optimizer: unknown lr schedule %d (expected constant or cosine)",
                          (int)c->schedule);
    }
    return PIPPY_OK;
}

size_t pippy_optim_state_floats(const pippy_optim_config *c, size_t n)
{
    if (c->kind == PIPPY_OPTIM_ADAMW)
        return 2 * n;
    return c->momentum != 0 ? n : 0;
}

double pippy_optim_lr(const pippy_optim_config *c, int64_t k)
{
    if (c->schedule != PIPPY_LR_COSINE)
        return c->lr;
    if (k < c->warmup_steps)
        return c->lr * (double)(k + 1) / (double)c->warmup_steps;
    double p = (double)(k - c->warmup_steps) / (double)c->decay_steps;
    if (p > 1)
        p = 1;
    return c->min_lr + 0.5 * (c->lr - c->min_lr) * (1 + cos(M_PI * p));
}

/* ---- SGD ---- */

/* p -= lr * (g * scale + wd * p), no momentum. */
PIPPY_OPTIM_CLONES static void pippy_sgd_plain(float *restrict p, const float *restrict grad, size_t n, float nlr,
                                            float wd, float scale)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * scale;
        if (wd != 0)
            g = g + wd * p[i];
        p[i] = p[i] + nlr * g;
    }
}

PIPPY_OPTIM_CLONES static void pippy_sgd_momentum(float *restrict p, const float *restrict grad, float *restrict b,
                                               size_t n, float nlr, float wd, float scale, float mom, float damp1,
                                               int first, int nesterov)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * scale;
        if (wd != 0)
            g = g + wd * p[i];
        float bi = first ? g : b[i] * mom + damp1 * g;
        b[i] = bi;
        g = nesterov ? g + mom * bi : bi;
        p[i] = p[i] + nlr * g;
    }
}

/* ---- AdamW ---- */

/* w < 0.5: m + w (g - m); else g - (g - m)(1 - w) (torch's lerp, which picks by |w| < 0.5). */
PIPPY_OPTIM_CLONES static void pippy_adamw(float *restrict p, const float *restrict grad, float *restrict m,
                                        float *restrict v, size_t n, float decay, int small_w, float w, float w1,
                                        float b2, float b2c, float bc2s, float eps, float nstep)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * w1;
        float pi = p[i] * decay;
        float d = g - m[i];
        float mi = small_w ? m[i] + w * d : g - d * (1.0f - w);
        float vi = v[i] * b2;
        vi = vi + (b2c * g) * g;
        float den = sqrtf(vi) / bc2s + eps;
        p[i] = pi + (nstep * mi) / den;
        m[i] = mi;
        v[i] = vi;
    }
}

void pippy_optim_step(const pippy_optim_config *c, int64_t step, double lr, float grad_scale, float *param,
                      const float *grad, float *state, size_t n)
{
    if (c->kind == PIPPY_OPTIM_SGD) {
        float nlr = (float)-lr, wd = (float)c->weight_decay;
        if (c->momentum == 0)
            pippy_sgd_plain(param, grad, n, nlr, wd, grad_scale);
        else
            pippy_sgd_momentum(param, grad, state, n, nlr, wd, grad_scale, (float)c->momentum,
                               (float)(1 - c->dampening), step <= 1, c->nesterov);
        return;
    }
    double bc1 = 1 - pow(c->beta1, (double)step);
    double bc2 = 1 - pow(c->beta2, (double)step);
    double w = 1 - c->beta1;
    float decay = c->weight_decay != 0 ? (float)(1 - lr * c->weight_decay) : 1.0f;
    pippy_adamw(param, grad, state, state + n, n, decay, w < 0.5, (float)w, grad_scale, (float)c->beta2,
                (float)(1 - c->beta2), (float)sqrt(bc2), (float)c->eps, (float)-(lr / bc1));
}

/* ---- gradient norm ---- */

PIPPY_OPTIM_CLONES double pippy_optim_sumsq(const float *x, size_t n)
{
    /* Four partial sums: the loop vectorises without reassociating one long chain. */
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            s[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++)
        s[0] += (double)x[i] * (double)x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

double pippy_optim_clip_coef(double max_norm, double sumsq)
{
    if (max_norm == 0)
        return 1.0;
    double coef = max_norm / (sqrt(sumsq) + 1e-6);
    return coef < 1.0 ? coef : isnan(coef) ? coef : 1.0;
}

PIPPY_OPTIM_CLONES void pippy_optim_add(float *restrict y, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += x[i];
}

PIPPY_OPTIM_CLONES void pippy_optim_scale(float *restrict x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

/* ---- command line ---- */

const char pippy_optim_usage[] =
    "  --optimizer sgd|adamw    optimizer (default sgd), with torch.optim's formulas and defaults\n"
    "  --lr X                   learning rate (default 1e-3)\n"
    "  --momentum X             sgd: momentum (default 0)\n"
    "  --dampening X            sgd: dampening of the momentum (default 0)\n"
    "  --nesterov               sgd: Nesterov momentum\n"
    "  --weight-decay X         sgd: L2 penalty added to the gradient (default 0); adamw: decoupled (default 1e-2)\n"
    "  --betas B1,B2            adamw: moment decay rates in [0, 1) (default 0.9,0.999)\n"
    "  --eps X                  adamw: added to the denominator (default 1e-8)\n"
    "  --clip-grad-norm X       scale the gradients so that their total 2-norm is at most X (default 0: off)\n"
    "  --lr-schedule NAME       constant (default) or cosine: linear warm-up, then cosine decay to --min-lr\n"
    "  --warmup-steps N         cosine: steps of linear warm-up (default 0)\n"
    "  --decay-steps N          cosine: steps of decay after the warm-up (default: the rest of the run)\n"
    "  --min-lr X               cosine: the final learning rate (default 0)\n";

enum {
    OPT_OPTIMIZER, OPT_LR, OPT_MOMENTUM, OPT_DAMPENING, OPT_NESTEROV, OPT_WEIGHT_DECAY, OPT_BETAS, OPT_EPS,
    OPT_CLIP, OPT_SCHEDULE, OPT_WARMUP, OPT_DECAY, OPT_MIN_LR, OPT_COUNT
};

static const char *const pippy_optim_opt_names[OPT_COUNT] = {
    "--optimizer", "--lr", "--momentum", "--dampening", "--nesterov", "--weight-decay", "--betas", "--eps",
    "--clip-grad-norm", "--lr-schedule", "--warmup-steps", "--decay-steps", "--min-lr",
};

void pippy_optim_args_init(pippy_optim_args *a)
{
    memset(a, 0, sizeof *a);
    pippy_optim_defaults(&a->c, PIPPY_OPTIM_SGD);
}

static pippy_status pippy_optim_num(const char *opt, const char *v, double *out)
{
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !isfinite(x))
        return pippy_fail(PIPPY_ERR_USAGE, "%s takes a finite number, found '%s'", opt, v);
    if (x < 0) /* every number option is >= 0; ranges against each other are checked at the end */
        return pippy_fail(PIPPY_ERR_USAGE, "%s must be >= 0, found '%s'", opt, v);
    *out = x;
    return PIPPY_OK;
}

static pippy_status pippy_optim_count(const char *opt, const char *v, int64_t *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < 0 || x > (1LL << 40))
        return pippy_fail(PIPPY_ERR_USAGE, "%s takes a whole number from 0 to 2^40, found '%s'", opt, v);
    *out = x;
    return PIPPY_OK;
}

static pippy_status pippy_optim_betas(const char *v, pippy_optim_config *c)
{
    char *end;
    double b1 = strtod(v, &end);
    if (end == v || *end != ',')
        return pippy_fail(PIPPY_ERR_USAGE, "--betas takes two numbers B1,B2, found '%s'", v);
    const char *s2 = end + 1;
    double b2 = strtod(s2, &end);
    if (end == s2 || *end)
        return pippy_fail(PIPPY_ERR_USAGE, "--betas takes two numbers B1,B2, found '%s'", v);
    if (!pippy_in_range(b1, 0, 1, 1) || !pippy_in_range(b2, 0, 1, 1))
        return pippy_fail(PIPPY_ERR_USAGE, "--betas must both be in [0, 1), found '%s'", v);
    c->beta1 = b1;
    c->beta2 = b2;
    return PIPPY_OK;
}

/* Read the value of option k into a->c. */
static pippy_status pippy_optim_set(pippy_optim_args *a, int k, const char *v)
{
    pippy_optim_config *c = &a->c;
    const char *opt = pippy_optim_opt_names[k];
    switch (k) {
    case OPT_OPTIMIZER:
        if (!strcmp(v, "sgd"))
            c->kind = PIPPY_OPTIM_SGD;
        else if (!strcmp(v, "adamw"))
            c->kind = PIPPY_OPTIM_ADAMW;
        else
            return pippy_fail(PIPPY_ERR_USAGE, "--optimizer: unknown optimizer '%s' (expected sgd or adamw)", v);
        return PIPPY_OK;
    case OPT_LR: PIPPY_TRY(pippy_optim_num(opt, v, &c->lr)); break;
    case OPT_MOMENTUM: PIPPY_TRY(pippy_optim_num(opt, v, &c->momentum)); break;
    case OPT_DAMPENING: PIPPY_TRY(pippy_optim_num(opt, v, &c->dampening)); break;
    case OPT_WEIGHT_DECAY: PIPPY_TRY(pippy_optim_num(opt, v, &c->weight_decay)); break;
    case OPT_BETAS: return pippy_optim_betas(v, c);
    case OPT_EPS: PIPPY_TRY(pippy_optim_num(opt, v, &c->eps)); break;
    case OPT_CLIP: PIPPY_TRY(pippy_optim_num(opt, v, &c->clip_grad_norm)); break;
    case OPT_MIN_LR: PIPPY_TRY(pippy_optim_num(opt, v, &c->min_lr)); break;
    case OPT_WARMUP: return pippy_optim_count(opt, v, &c->warmup_steps);
    case OPT_DECAY: return pippy_optim_count(opt, v, &c->decay_steps);
    case OPT_SCHEDULE:
        if (!strcmp(v, "constant"))
            c->schedule = PIPPY_LR_CONSTANT;
        else if (!strcmp(v, "cosine"))
            c->schedule = PIPPY_LR_COSINE;
        else
            return pippy_fail(PIPPY_ERR_USAGE, "--lr-schedule: unknown schedule '%s' (expected constant or cosine)",
                              v);
        return PIPPY_OK;
    default: return pippy_fail(PIPPY_ERR_INTERNAL, "optimizer option %d has no reader", k);
    }
    return PIPPY_OK;
}

pippy_status pippy_optim_args_parse(pippy_optim_args *a, int argc, char **argv, int *i, int *used)
{
    *used = 0;
    const char *arg = argv[*i];
    int k = 0;
    while (k < OPT_COUNT && strcmp(arg, pippy_optim_opt_names[k]) != 0)
        k++;
    if (k == OPT_COUNT)
        return PIPPY_OK;
    *used = 1;
    if (a->given & (1u << k))
        return pippy_fail(PIPPY_ERR_USAGE, "%s given twice", arg);
    a->given |= 1u << k;
    if (k == OPT_NESTEROV) {
        a->c.nesterov = 1;
        return PIPPY_OK;
    }
    if (*i + 1 >= argc)
        return pippy_fail(PIPPY_ERR_USAGE, "%s needs a value", arg);
    *i += 1;
    return pippy_optim_set(a, k, argv[*i]);
}

/* The first option of mask that was given, or NULL. */
static const char *pippy_optim_given(const pippy_optim_args *a, unsigned mask)
{
    for (int k = 0; k < OPT_COUNT; k++)
        if (a->given & mask & (1u << k))
            return pippy_optim_opt_names[k];
    return NULL;
}

pippy_status pippy_optim_args_finish(const pippy_optim_args *a, int64_t total_steps, pippy_optim_config *out)
{
    const unsigned sgd_only = 1u << OPT_MOMENTUM | 1u << OPT_DAMPENING | 1u << OPT_NESTEROV;
    const unsigned adamw_only = 1u << OPT_BETAS | 1u << OPT_EPS;
    const unsigned cosine_only = 1u << OPT_WARMUP | 1u << OPT_DECAY | 1u << OPT_MIN_LR;
    const pippy_optim_config *c = &a->c;
    const char *bad = pippy_optim_given(a, c->kind == PIPPY_OPTIM_SGD ? adamw_only : sgd_only);
    if (bad)
        return pippy_fail(PIPPY_ERR_USAGE, "%s does not apply to --optimizer %s", bad, pippy_optim_kind_name(c->kind));
    bad = c->schedule == PIPPY_LR_CONSTANT ? pippy_optim_given(a, cosine_only) : NULL;
    if (bad)
        return pippy_fail(PIPPY_ERR_USAGE, "%s applies to --lr-schedule cosine only", bad);
    pippy_optim_config r;
    pippy_optim_defaults(&r, c->kind);
    for (int k = 0; k < OPT_COUNT; k++) {
        if (!(a->given & (1u << k)))
            continue;
        switch (k) {
        case OPT_LR: r.lr = c->lr; break;
        case OPT_MOMENTUM: r.momentum = c->momentum; break;
        case OPT_DAMPENING: r.dampening = c->dampening; break;
        case OPT_NESTEROV: r.nesterov = c->nesterov; break;
        case OPT_WEIGHT_DECAY: r.weight_decay = c->weight_decay; break;
        case OPT_BETAS: r.beta1 = c->beta1; r.beta2 = c->beta2; break;
        case OPT_EPS: r.eps = c->eps; break;
        case OPT_CLIP: r.clip_grad_norm = c->clip_grad_norm; break;
        case OPT_SCHEDULE: r.schedule = c->schedule; break;
        case OPT_WARMUP: r.warmup_steps = c->warmup_steps; break;
        case OPT_DECAY: r.decay_steps = c->decay_steps; break;
        case OPT_MIN_LR: r.min_lr = c->min_lr; break;
        default: break;
        }
    }
    if (r.schedule == PIPPY_LR_COSINE && !(a->given & (1u << OPT_DECAY)) && total_steps > 0)
        r.decay_steps = total_steps - r.warmup_steps;
    PIPPY_TRY(pippy_optim_check(&r));
    *out = r;
    return PIPPY_OK;
}

/* ---- JSON ---- */

cJSON *pippy_optim_to_json(const pippy_optim_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    double betas[2] = {c->beta1, c->beta2};
    int ok = cJSON_AddStringToObject(o, "kind", pippy_optim_kind_name(c->kind)) &&
             cJSON_AddNumberToObject(o, "lr", c->lr) && cJSON_AddNumberToObject(o, "momentum", c->momentum) &&
             cJSON_AddNumberToObject(o, "dampening", c->dampening) &&
             cJSON_AddBoolToObject(o, "nesterov", c->nesterov) &&
             cJSON_AddNumberToObject(o, "weight_decay", c->weight_decay) &&
             cJSON_AddItemToObject(o, "betas", cJSON_CreateDoubleArray(betas, 2)) &&
             cJSON_AddNumberToObject(o, "eps", c->eps) &&
             cJSON_AddNumberToObject(o, "clip_grad_norm", c->clip_grad_norm) &&
             cJSON_AddStringToObject(o, "lr_schedule", c->schedule == PIPPY_LR_COSINE ? "cosine" : "constant") &&
             cJSON_AddNumberToObject(o, "warmup_steps", (double)c->warmup_steps) &&
             cJSON_AddNumberToObject(o, "decay_steps", (double)c->decay_steps) &&
             cJSON_AddNumberToObject(o, "min_lr", c->min_lr);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static pippy_status pippy_optim_json_num(const cJSON *j, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field '%s' is %s (expected a number)", key,
                          v ? "not a number" : "missing");
    *out = v->valuedouble;
    return PIPPY_OK;
}

static pippy_status pippy_optim_json_count(const cJSON *j, const char *key, int64_t *out)
{
    double x = 0;
    PIPPY_TRY(pippy_optim_json_num(j, key, &x));
    if (!(x >= 0 && x <= (double)(1LL << 40)) || x != floor(x))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field '%s' is %g (expected a whole number >= 0)", key, x);
    *out = (int64_t)x;
    return PIPPY_OK;
}

/* The string field key, one of a (NULL-terminated); its index in *out. */
static pippy_status pippy_optim_json_enum(const cJSON *j, const char *key, const char *const *a, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field '%s' is %s (expected a string)", key,
                          v ? "not a string" : "missing");
    for (int k = 0; a[k]; k++)
        if (!strcmp(v->valuestring, a[k])) {
            *out = k;
            return PIPPY_OK;
        }
    return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field '%s' is '%s' (expected %s or %s)", key, v->valuestring,
                      a[0], a[1]);
}

pippy_status pippy_optim_from_json(const cJSON *j, pippy_optim_config *out)
{
    static const char *const kinds[] = {"sgd", "adamw", NULL}, *const schedules[] = {"constant", "cosine", NULL};
    if (!cJSON_IsObject(j))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: expected an object");
    pippy_optim_config c;
    memset(&c, 0, sizeof c);
    int kind, sched;
    PIPPY_TRY(pippy_optim_json_enum(j, "kind", kinds, &kind));
    PIPPY_TRY(pippy_optim_json_enum(j, "lr_schedule", schedules, &sched));
    c.kind = (pippy_optim_kind)kind;
    c.schedule = (pippy_lr_schedule)sched;
    PIPPY_TRY(pippy_optim_json_num(j, "lr", &c.lr));
    PIPPY_TRY(pippy_optim_json_num(j, "momentum", &c.momentum));
    PIPPY_TRY(pippy_optim_json_num(j, "dampening", &c.dampening));
    PIPPY_TRY(pippy_optim_json_num(j, "weight_decay", &c.weight_decay));
    PIPPY_TRY(pippy_optim_json_num(j, "eps", &c.eps));
    PIPPY_TRY(pippy_optim_json_num(j, "clip_grad_norm", &c.clip_grad_norm));
    PIPPY_TRY(pippy_optim_json_num(j, "min_lr", &c.min_lr));
    PIPPY_TRY(pippy_optim_json_count(j, "warmup_steps", &c.warmup_steps));
    PIPPY_TRY(pippy_optim_json_count(j, "decay_steps", &c.decay_steps));
    const cJSON *nv = cJSON_GetObjectItemCaseSensitive(j, "nesterov");
    if (!cJSON_IsBool(nv))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field 'nesterov' is %s (expected true or false)",
                          nv ? "not a boolean" : "missing");
    c.nesterov = cJSON_IsTrue(nv);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "betas");
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(b, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(b, 1)))
        return pippy_fail(PIPPY_ERR_INVALID, "optimizer: field 'betas' is %s (expected [beta1, beta2])",
                          b ? "malformed" : "missing");
    c.beta1 = cJSON_GetArrayItem(b, 0)->valuedouble;
    c.beta2 = cJSON_GetArrayItem(b, 1)->valuedouble;
    pippy_status st = pippy_optim_check(&c);
    if (st != PIPPY_OK)
        return pippy_error_prefix(PIPPY_ERR_INVALID, "optimizer in schedule.json");
    *out = c;
    return PIPPY_OK;
}
