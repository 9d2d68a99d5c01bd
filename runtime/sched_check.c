/* sched_check.c — see sched_check.h. */
#include "sched_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *path;
    int n_stages, M, dp; /* dp: replicas of the pipeline, each listing every stage once */
} sc_ctx;

static pippy_status sc_bad(const sc_ctx *c, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static pippy_status sc_bad(const sc_ctx *c, const char *field, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s %s", c->path, field, what);
}

int pippy_sched_plain_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    return n > 0 && n <= 255 && !strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* obj[key] as a whole number in lo..hi; absent: dflt, or an error when required. */
static pippy_status sc_int(const sc_ctx *c, const cJSON *obj, const char *key, const char *where, long lo, long hi,
                           int required, long dflt, long *out)
{
    char field[160];
    snprintf(field, sizeof field, "%s%s%s", where, where[0] ? "." : "", key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || (cJSON_IsNull(v) && !required)) {
        if (required)
            return sc_bad(c, field, "is missing");
        *out = dflt;
        return PIPPY_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble)
        return sc_bad(c, field, "is not a whole number");
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return sc_bad(c, field, "is %.15g, expected %ld..%ld", v->valuedouble, lo, hi);
    *out = (long)v->valuedouble;
    return PIPPY_OK;
}

static pippy_status sc_string(const sc_ctx *c, const cJSON *obj, const char *key, const char *where, int required,
                              int plain)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char field[160];
    snprintf(field, sizeof field, "%s.%s", where, key);
    if (!v)
        return required ? sc_bad(c, field, "is missing") : PIPPY_OK;
    if (!cJSON_IsString(v))
        return sc_bad(c, field, "is not a string");
    if (plain && !pippy_sched_plain_name(v->valuestring))
        return sc_bad(c, field, "is \"%.100s\": expected a file name in the schedule's folder (no path)",
                      v->valuestring);
    return PIPPY_OK;
}

static pippy_status sc_bool(const sc_ctx *c, const cJSON *obj, const char *key, const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char field[160];
    snprintf(field, sizeof field, "%s.%s", where, key);
    return !v || cJSON_IsBool(v) ? PIPPY_OK : sc_bad(c, field, "is not true or false");
}

static pippy_status sc_array(const sc_ctx *c, const cJSON *obj, const char *key, const char *where, int required,
                             int max, const cJSON **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char field[160];
    snprintf(field, sizeof field, "%s%s%s", where, where[0] ? "." : "", key);
    *out = v;
    if (!v)
        return required ? sc_bad(c, field, "is missing") : PIPPY_OK;
    if (!cJSON_IsArray(v))
        return sc_bad(c, field, "is not an array");
    if (cJSON_GetArraySize(v) > max)
        return sc_bad(c, field, "has %d entries, at most %d", cJSON_GetArraySize(v), max);
    return PIPPY_OK;
}

static pippy_status sc_input(const sc_ctx *c, const cJSON *e, int s, const char *where)
{
    long from, edge;
    if (!cJSON_IsObject(e))
        return sc_bad(c, where, "is not an object");
    PIPPY_TRY(sc_string(c, e, "name", where, 1, 0));
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "from");
    if (cJSON_IsString(f) && strcmp(f->valuestring, "input") == 0) /* a graph input, read from a file */
        from = -1;
    else
        PIPPY_TRY(sc_int(c, e, "from", where, -1, c->n_stages - 1, 0, -1, &from));
    PIPPY_TRY(sc_int(c, e, "edge", where, -1, PIPPY_SCHED_MAX_EDGE, 0, -1, &edge));
    if (from == s)
        return sc_bad(c, where, "comes from its own stage %d", s);
    if (from >= 0 && edge < 0)
        return sc_bad(c, where, "comes from stage %ld but has no edge id", from);
    return sc_bool(c, e, "graph_output", where);
}

static pippy_status sc_output(const sc_ctx *c, const cJSON *e, int s, int n_in, const char *where)
{
    long edge, pass, q;
    const cJSON *to, *t;
    if (!cJSON_IsObject(e))
        return sc_bad(c, where, "is not an object");
    PIPPY_TRY(sc_string(c, e, "name", where, 1, 0));
    PIPPY_TRY(sc_int(c, e, "edge", where, -1, PIPPY_SCHED_MAX_EDGE, 0, -1, &edge));
    PIPPY_TRY(sc_int(c, e, "passthrough", where, -1, n_in - 1, 0, -1, &pass));
    PIPPY_TRY(sc_bool(c, e, "graph_output", where));
    PIPPY_TRY(sc_array(c, e, "to", where, 0, PIPPY_SCHED_MAX_TO, &to));
    char seen[PIPPY_SCHED_MAX_RANKS] = {0}, field[200];
    int k = 0;
    cJSON_ArrayForEach(t, to)
    {
        snprintf(field, sizeof field, "%s.to[%d]", where, k++);
        if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || floor(t->valuedouble) != t->valuedouble ||
            t->valuedouble < 0 || t->valuedouble >= c->n_stages)
            return sc_bad(c, field, "is %.15g, expected a stage 0..%d", cJSON_IsNumber(t) ? t->valuedouble : NAN,
                          c->n_stages - 1);
        q = (long)t->valuedouble;
        if (q == s || seen[q])
            return sc_bad(c, field, "is stage %ld: %s", q, q == s ? "its own stage" : "listed twice");
        seen[q] = 1;
    }
    if (k > 0 && edge < 0)
        return sc_bad(c, where, "goes to other stages but has no edge id");
    return PIPPY_OK;
}

static pippy_status sc_stage(const sc_ctx *c, const cJSON *st, int s)
{
    char where[64], field[96];
    const cJSON *ins, *outs, *e;
    snprintf(where, sizeof where, "stages[%d]", s);
    if (!cJSON_IsObject(st))
        return sc_bad(c, where, "is not an object");
    PIPPY_TRY(sc_string(c, st, "weights", where, 0, 1));
    PIPPY_TRY(sc_array(c, st, "inputs", where, 1, 4096, &ins));
    PIPPY_TRY(sc_array(c, st, "outputs", where, 1, 4096, &outs));
    int k = 0;
    cJSON_ArrayForEach(e, ins)
    {
        snprintf(field, sizeof field, "%s.inputs[%d]", where, k++);
        PIPPY_TRY(sc_input(c, e, s, field));
    }
    k = 0;
    cJSON_ArrayForEach(e, outs)
    {
        snprintf(field, sizeof field, "%s.outputs[%d]", where, k++);
        PIPPY_TRY(sc_output(c, e, s, cJSON_GetArraySize(ins), field));
    }
    return PIPPY_OK;
}

static pippy_status sc_actions(const sc_ctx *c, const cJSON *rank, const char *where)
{
    const cJSON *acts, *a;
    PIPPY_TRY(sc_array(c, rank, "actions", where, 1, 1 << 24, &acts));
    char field[96];
    int k = 0;
    cJSON_ArrayForEach(a, acts)
    {
        long v;
        snprintf(field, sizeof field, "%s.actions[%d]", where, k++);
        if (!cJSON_IsObject(a))
            return sc_bad(c, field, "is not an object");
        PIPPY_TRY(sc_string(c, a, "op", field, 1, 0));
        /* optional here (an action without a microbatch, such as an optimizer step, may come);
         * whether an op needs one is for the action table to say */
        PIPPY_TRY(sc_int(c, a, "mb", field, 0, c->M - 1, 0, 0, &v));
        PIPPY_TRY(sc_int(c, a, "peer", field, -1, c->n_stages - 1, 0, -1, &v));
        PIPPY_TRY(sc_int(c, a, "stage", field, 0, c->n_stages - 1, 0, 0, &v));
    }
    return PIPPY_OK;
}

static pippy_status sc_ranks(const sc_ctx *c, const cJSON *ranks, int stage)
{
    int n = cJSON_GetArraySize(ranks), k = 0, mine = 0;
    char rank_seen[PIPPY_SCHED_MAX_RANKS] = {0}, where[32];
    int stage_seen[PIPPY_SCHED_MAX_RANKS] = {0};
    const cJSON *r;
    if (n < 1)
        return sc_bad(c, "ranks", "is empty");
    cJSON_ArrayForEach(r, ranks)
    {
        long rk, st;
        snprintf(where, sizeof where, "ranks[%d]", k++);
        if (!cJSON_IsObject(r))
            return sc_bad(c, where, "is not an object");
        PIPPY_TRY(sc_int(c, r, "rank", where, 0, n - 1, 1, 0, &rk));
        if (rank_seen[rk])
            return sc_bad(c, where, "repeats rank %ld (each rank is listed once)", rk);
        rank_seen[rk] = 1;
        const cJSON *sts, *x;
        PIPPY_TRY(sc_array(c, r, "stages", where, 1, c->n_stages, &sts));
        cJSON_ArrayForEach(x, sts)
        {
            if (!cJSON_IsNumber(x) || x->valuedouble != (double)(long)x->valuedouble || x->valuedouble < 0 ||
                x->valuedouble >= c->n_stages)
                return sc_bad(c, where, "has a stage that is not 0..%d in 'stages'", c->n_stages - 1);
            st = (long)x->valuedouble;
            if (stage_seen[st] >= c->dp)
                return sc_bad(c, where, "lists stage %ld, which another rank of its pipeline runs too (each stage "
                                        "runs on one rank of each of the %d pipelines)", st, c->dp);
            stage_seen[st]++;
            mine |= st == stage;
        }
        PIPPY_TRY(sc_string(c, r, "program", where, 0, 1));
        PIPPY_TRY(sc_actions(c, r, where));
    }
    for (int s = 0; s < c->n_stages; s++)
        if (stage_seen[s] != c->dp)
            return sc_bad(c, "ranks", "lists %d ranks for stage %d, expected %d (one per pipeline)", stage_seen[s], s,
                          c->dp);
    return mine ? PIPPY_OK : sc_bad(c, "ranks", "lists no rank for stage %d (this program's)", stage);
}

pippy_status pippy_sched_fields_check(const cJSON *root, const char *path, int n_stages, int stage)
{
    sc_ctx c = {.path = path, .n_stages = n_stages};
    const cJSON *stages, *ranks, *s;
    if (!cJSON_IsObject(root))
        return sc_bad(&c, "the top level", "is not an object");
    if (n_stages < 1 || n_stages > PIPPY_SCHED_MAX_RANKS)
        return pippy_fail(PIPPY_ERR_INTERNAL, "sched_check: %d stages", n_stages);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (!cJSON_IsObject(cfg))
        return sc_bad(&c, "config", "is missing or not an object");
    long M;
    PIPPY_TRY(sc_int(&c, cfg, "microbatches", "config", 1, PIPPY_SCHED_MAX_MICROBATCHES, 1, 0, &M));
    c.M = (int)M;
    long dp = 1;
    PIPPY_TRY(sc_int(&c, cfg, "dp", "config", 1, PIPPY_SCHED_MAX_RANKS, 0, 1, &dp));
    c.dp = (int)dp;
    PIPPY_TRY(sc_array(&c, root, "stages", "", 1, PIPPY_SCHED_MAX_RANKS, &stages));
    if (cJSON_GetArraySize(stages) != n_stages)
        return sc_bad(&c, "stages", "lists %d stages, this program is one of %d", cJSON_GetArraySize(stages),
                      n_stages);
    int k = 0;
    cJSON_ArrayForEach(s, stages) PIPPY_TRY(sc_stage(&c, s, k++));
    PIPPY_TRY(sc_array(&c, root, "ranks", "", 1, PIPPY_SCHED_MAX_RANKS, &ranks));
    return sc_ranks(&c, ranks, stage);
}
