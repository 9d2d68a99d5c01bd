/* schedule_json.c — see schedule_json.h. */
#include "schedule_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where in the file a value is, for messages. */
typedef struct {
    const char *path;
    char where[96];
} pippy_sj;

static const cJSON *pippy_sj_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* A short, printable rendering of a value found in the file. */
static const char *pippy_sj_show(const cJSON *j, char *buf, size_t n)
{
    if (!j)
        snprintf(buf, n, "nothing");
    else if (cJSON_IsNumber(j))
        snprintf(buf, n, "%.17g", j->valuedouble);
    else if (cJSON_IsString(j)) {
        snprintf(buf, n, "'%.40s%s'", j->valuestring, strlen(j->valuestring) > 40 ? "..." : "");
        for (char *p = buf; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                *p = '?';
    } else
        snprintf(buf, n, "%s", cJSON_IsArray(j)    ? "an array"
                               : cJSON_IsObject(j) ? "an object"
                               : cJSON_IsBool(j)   ? "a boolean"
                                                   : "null");
    return buf;
}

static pippy_status pippy_sj_bad(const pippy_sj *c, const char *key, const cJSON *found, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static pippy_status pippy_sj_bad(const pippy_sj *c, const char *key, const cJSON *found, const char *fmt, ...)
{
    char want[160], show[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    return pippy_fail(PIPPY_ERR_FORMAT, "%s: %s%s%s must be %s, found %s", c->path, c->where,
                      c->where[0] && key[0] ? "." : "", key, want, pippy_sj_show(found, show, sizeof show));
}

/* The whole number o[key] in lo..hi into *v; absent: *v unchanged, or an error when required. */
static pippy_status pippy_sj_int(const pippy_sj *c, const cJSON *o, const char *key, int required, int64_t lo,
                                 int64_t hi, int32_t *v)
{
    const cJSON *j = pippy_sj_get(o, key);
    if (!j && !required)
        return PIPPY_OK;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || j->valuedouble < (double)lo ||
        j->valuedouble > (double)hi)
        return pippy_sj_bad(c, key, j, "a whole number from %lld to %lld", (long long)lo, (long long)hi);
    *v = (int32_t)j->valuedouble;
    return PIPPY_OK;
}

/* The number o[key] in 0..hi into *v; absent: *v unchanged. */
static pippy_status pippy_sj_num(const pippy_sj *c, const cJSON *o, const char *key, double hi, double *v)
{
    const cJSON *j = pippy_sj_get(o, key);
    if (!j)
        return PIPPY_OK;
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= 0 && j->valuedouble <= hi))
        return pippy_sj_bad(c, key, j, "a number from 0 to %g", hi);
    *v = j->valuedouble;
    return PIPPY_OK;
}

/* o[key] as an array of at most max items (required: present). */
static pippy_status pippy_sj_array(const pippy_sj *c, const cJSON *o, const char *key, int required, int max,
                                   const cJSON **a, int *n)
{
    *a = pippy_sj_get(o, key);
    *n = 0;
    if (!*a && !required)
        return PIPPY_OK;
    if (!cJSON_IsArray(*a) || cJSON_GetArraySize(*a) > max)
        return pippy_sj_bad(c, key, *a, "an array of at most %d items", max);
    *n = cJSON_GetArraySize(*a);
    return PIPPY_OK;
}

static void *pippy_sj_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size); }

static pippy_status pippy_sj_config(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *cfg = pippy_sj_get(root, "config"), *mode = pippy_sj_get(cfg, "mode");
    snprintf(c->where, sizeof c->where, "config");
    if (!cJSON_IsObject(cfg))
        return pippy_sj_bad(c, "", cfg, "an object");
    PIPPY_TRY(pippy_sj_int(c, cfg, "microbatches", 1, 1, 1 << 20, &d->s.microbatches));
    d->dp = 1;
    PIPPY_TRY(pippy_sj_int(c, cfg, "dp", 0, 1, PIPPY_SCHED_JSON_MAX_STAGES, &d->dp));
    if (!cJSON_IsString(mode) || (strcmp(mode->valuestring, "training") && strcmp(mode->valuestring, "inference")))
        return pippy_sj_bad(c, "mode", mode, "\"training\" or \"inference\"");
    d->s.training = !strcmp(mode->valuestring, "training");
    /* the dynamic schedule: config.window, with config.schedule "dynamic" (and only then) */
    const cJSON *sched = pippy_sj_get(cfg, "schedule");
    int dynamic = cJSON_IsString(sched) && !strcmp(sched->valuestring, "dynamic");
    PIPPY_TRY(pippy_sj_int(c, cfg, "window", dynamic, 1, 1 << 20, &d->s.window));
    if (d->s.window > 0 && !dynamic)
        return pippy_sj_bad(c, "schedule", sched, "\"dynamic\" when config.window is given");
    return PIPPY_OK;
}

/* Per stage: its rank (checked against ranks[] later), costs, stash slots. */
static pippy_status pippy_sj_stages(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *stages, *st;
    c->where[0] = 0;
    PIPPY_TRY(pippy_sj_array(c, root, "stages", 1, PIPPY_SCHED_JSON_MAX_STAGES, &stages, &d->s.n_stages));
    int32_t S = d->s.n_stages;
    if (S < 1)
        return pippy_sj_bad(c, "stages", stages, "a list of at least one stage");
    if ((int64_t)S * d->s.microbatches > PIPPY_SCHED_JSON_MAX_CELLS)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %d stages x %d microbatches is more than this checks (%d)", c->path, S,
                          d->s.microbatches, PIPPY_SCHED_JSON_MAX_CELLS);
    d->stage_rank = pippy_sj_calloc((size_t)S, sizeof *d->stage_rank);
    d->stash_slots = pippy_sj_calloc((size_t)S, sizeof *d->stash_slots);
    d->stage_s = pippy_sj_calloc((size_t)S * PIPPY_PHASES, sizeof *d->stage_s);
    d->optimizer_s = pippy_sj_calloc((size_t)S, sizeof *d->optimizer_s);
    if (!d->stage_rank || !d->stash_slots || !d->stage_s || !d->optimizer_s)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
    static const char *const cost[PIPPY_PHASES] = {"predicted_forward_ms", "predicted_backward_ms",
                                                   "predicted_weight_ms"};
    int32_t k = 0;
    cJSON_ArrayForEach(st, stages)
    {
        snprintf(c->where, sizeof c->where, "stages[%d]", k);
        if (!cJSON_IsObject(st))
            return pippy_sj_bad(c, "", st, "an object");
        PIPPY_TRY(pippy_sj_int(c, st, "rank", 1, 0, PIPPY_SCHED_JSON_MAX_STAGES - 1, &d->stage_rank[k]));
        d->stash_slots[k] = 1 << 30; /* no bound unless the file gives one */
        PIPPY_TRY(pippy_sj_int(c, st, "stash_slots", 0, 1, 1 << 20, &d->stash_slots[k]));
        for (int ph = 0; ph < PIPPY_PHASES; ph++) {
            PIPPY_TRY(pippy_sj_num(c, st, cost[ph], 1e12, &d->stage_s[k * PIPPY_PHASES + ph]));
            d->stage_s[k * PIPPY_PHASES + ph] *= 1e-3;
        }
        PIPPY_TRY(pippy_sj_num(c, st, "predicted_optimizer_ms", 1e12, &d->optimizer_s[k]));
        d->optimizer_s[k] *= 1e-3;
        k++;
    }
    return PIPPY_OK;
}

static pippy_status pippy_sj_action(const cJSON *j, pippy_action *a, pippy_sj *c)
{
    const cJSON *op = pippy_sj_get(j, "op");
    if (!cJSON_IsObject(j))
        return pippy_sj_bad(c, "", j, "an object {\"op\": ..., \"stage\": ..., ...}");
    a->kind = cJSON_IsString(op) ? pippy_act_parse(op->valuestring) : -1;
    if (a->kind < 0)
        return pippy_sj_bad(c, "op", op, "an action (F, B, W, SEND_F, RECV_F, SEND_B, RECV_B, ALLREDUCE, REDUCE, "
                                         "BROADCAST, STEP)");
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    a->stage = a->mb = a->peer = -1;
    if (a->kind != PIPPY_ACT_STEP)
        PIPPY_TRY(pippy_sj_int(c, j, "stage", 1, 0, PIPPY_SCHED_JSON_MAX_STAGES - 1, &a->stage));
    if (i->has_mb)
        PIPPY_TRY(pippy_sj_int(c, j, "mb", 1, 0, 1 << 20, &a->mb));
    if (i->collective && a->kind != PIPPY_ACT_STEP) /* ALLREDUCE, REDUCE, BROADCAST */
        PIPPY_TRY(pippy_sj_int(c, j, "reduction", 1, 0, 1 << 20, &a->peer));
    else if (i->has_peer)
        PIPPY_TRY(pippy_sj_int(c, j, "peer", 1, 0, PIPPY_SCHED_JSON_MAX_STAGES - 1, &a->peer));
    return PIPPY_OK;
}

/* dp > 1: ranks d*R .. d*R+R-1 are replica d, and run replica 0's lists; the checker sees replica 0. */
static pippy_status pippy_sj_replicas(pippy_sched_json *d, pippy_sj *c)
{
    int32_t D = d->dp, all = d->s.n_ranks;
    if (D <= 1)
        return PIPPY_OK;
    if (all % D)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %d ranks do not split into config.dp = %d replicas", c->path, all, D);
    int32_t R = all / D;
    for (int32_t r = R; r < all; r++) {
        int same = d->n_actions[r] == d->n_actions[r % R];
        for (int32_t k = 0; same && k < d->n_actions[r]; k++)
            same = !memcmp(&d->actions[r][k], &d->actions[r % R][k], sizeof d->actions[r][k]);
        if (!same)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: ranks[%d] (replica %d) does not run the actions of ranks[%d] "
                                                "(replica 0): every replica of the pipeline runs the same lists",
                              c->path, r, r / R, r % R);
    }
    d->s.n_ranks = R; /* actions[] keeps every rank's list (n_all_ranks) */
    return PIPPY_OK;
}

static pippy_status pippy_sj_ranks(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *ranks, *rk, *acts, *j;
    c->where[0] = 0;
    PIPPY_TRY(pippy_sj_array(c, root, "ranks", 1, PIPPY_SCHED_JSON_MAX_STAGES, &ranks, &d->s.n_ranks));
    int32_t R = d->s.n_ranks, k = 0, total = 0;
    if (R < 1)
        return pippy_sj_bad(c, "ranks", ranks, "a list of at least one rank");
    d->n_actions = pippy_sj_calloc((size_t)R, sizeof *d->n_actions);
    d->actions = pippy_sj_calloc((size_t)R, sizeof *d->actions);
    d->n_all_ranks = R;
    if (!d->n_actions || !d->actions)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
    cJSON_ArrayForEach(rk, ranks)
    {
        int n;
        snprintf(c->where, sizeof c->where, "ranks[%d]", k);
        PIPPY_TRY(pippy_sj_array(c, rk, "actions", 1, PIPPY_SCHED_JSON_MAX_ACTIONS - total, &acts, &n));
        total += n;
        d->actions[k] = pippy_sj_calloc((size_t)n, sizeof **d->actions);
        if (!d->actions[k])
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
        d->n_actions[k] = n;
        int32_t q = 0;
        cJSON_ArrayForEach(j, acts)
        {
            snprintf(c->where, sizeof c->where, "ranks[%d].actions[%d]", k, q);
            PIPPY_TRY(pippy_sj_action(j, &d->actions[k][q], c));
            q++;
        }
        k++;
    }
    PIPPY_TRY(pippy_sj_replicas(d, c));
    R = d->s.n_ranks;
    for (int32_t s = 0; s < d->s.n_stages; s++)
        if (d->stage_rank[s] >= R)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stages[%d].rank is %d, but a pipeline has %d ranks", c->path, s,
                              d->stage_rank[s], R);
    return PIPPY_OK;
}

static pippy_status pippy_sj_edge(pippy_sched_json *d, const cJSON *e, int32_t k, int32_t *used, pippy_sj *c)
{
    const cJSON *ph = pippy_sj_get(e, "phase"), *cons, *x;
    pippy_sched_edge *ed = &d->edges[k];
    int32_t S = d->s.n_stages, n;
    snprintf(c->where, sizeof c->where, "edges[%d]", k);
    if (!cJSON_IsObject(e))
        return pippy_sj_bad(c, "", e, "an object");
    PIPPY_TRY(pippy_sj_int(c, e, "producer", 1, 0, S - 1, &ed->producer));
    ed->phase = PIPPY_PHASE_F;
    if (ph && (!cJSON_IsString(ph) || (strcmp(ph->valuestring, "activation") && strcmp(ph->valuestring, "gradient"))))
        return pippy_sj_bad(c, "phase", ph, "\"activation\" or \"gradient\"");
    if (ph && !strcmp(ph->valuestring, "gradient"))
        ed->phase = PIPPY_PHASE_B;
    double bytes = 0;
    PIPPY_TRY(pippy_sj_num(c, e, "bytes", 9007199254740992.0, &bytes));
    ed->bytes = (uint64_t)bytes;
    PIPPY_TRY(pippy_sj_array(c, e, "consumers", 1, S, &cons, &n));
    if ((int64_t)(*used + n) * d->s.microbatches > PIPPY_SCHED_JSON_MAX_CELLS)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: the edges have more consumers x microbatches than this checks (%d)",
                          c->path, PIPPY_SCHED_JSON_MAX_CELLS);
    ed->n_consumers = n;
    ed->consumers = &d->consumers[*used];
    int32_t q = 0;
    cJSON_ArrayForEach(x, cons)
    {
        snprintf(c->where, sizeof c->where, "edges[%d].consumers", k);
        char key[16];
        snprintf(key, sizeof key, "%d", q);
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble >= S)
            return pippy_sj_bad(c, key, x, "a stage (0 to %d)", S - 1);
        d->consumers[(*used)++] = (int32_t)x->valuedouble;
        q++;
    }
    return PIPPY_OK;
}

static pippy_status pippy_sj_edges(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *edges, *e;
    int n, k = 0, refs = 0, used = 0;
    c->where[0] = 0;
    PIPPY_TRY(pippy_sj_array(c, root, "edges", 1, 1 << 16, &edges, &n));
    cJSON_ArrayForEach(e, edges)
    {
        int m = cJSON_GetArraySize(pippy_sj_get(e, "consumers"));
        refs += m < d->s.n_stages ? m : d->s.n_stages;
    }
    d->edges = pippy_sj_calloc((size_t)n, sizeof *d->edges);
    d->consumers = pippy_sj_calloc((size_t)refs, sizeof *d->consumers);
    if (!d->edges || !d->consumers)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
    d->s.n_edges = n;
    cJSON_ArrayForEach(e, edges)
    {
        PIPPY_TRY(pippy_sj_edge(d, e, k, &used, c));
        k++;
    }
    return PIPPY_OK;
}

static pippy_status pippy_sj_reductions(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *reds, *r, *sts, *x;
    int n, k = 0;
    c->where[0] = 0;
    PIPPY_TRY(pippy_sj_array(c, root, "reductions", 0, 1 << 20, &reds, &n));
    d->reduction_n = pippy_sj_calloc((size_t)n, sizeof *d->reduction_n);
    d->reduction_stages = pippy_sj_calloc((size_t)n, sizeof *d->reduction_stages);
    d->reduction_transmit = pippy_sj_calloc((size_t)n, sizeof *d->reduction_transmit);
    d->reduction_dp = pippy_sj_calloc((size_t)n, sizeof *d->reduction_dp);
    d->reduction_bytes = pippy_sj_calloc((size_t)n, sizeof *d->reduction_bytes);
    if (!d->reduction_n || !d->reduction_stages || !d->reduction_transmit || !d->reduction_dp || !d->reduction_bytes)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
    d->s.n_reductions = n;
    cJSON_ArrayForEach(r, reds)
    {
        int m;
        snprintf(c->where, sizeof c->where, "reductions[%d]", k);
        PIPPY_TRY(pippy_sj_array(c, r, "stages", 1, d->s.n_stages, &sts, &m));
        const cJSON *mode = pippy_sj_get(r, "mode");
        if (mode && !(cJSON_IsString(mode) && (!strcmp(mode->valuestring, "transmit") ||
                                               !strcmp(mode->valuestring, "replicate"))))
            return pippy_sj_bad(c, "mode", mode, "'replicate' (ALLREDUCE) or 'transmit' (REDUCE + BROADCAST)");
        d->reduction_transmit[k] = mode && !strcmp(mode->valuestring, "transmit");
        const cJSON *kind = pippy_sj_get(r, "kind");
        d->reduction_dp[k] = cJSON_IsString(kind) && !strcmp(kind->valuestring, "data_parallel");
        PIPPY_TRY(pippy_sj_num(c, r, "bytes", 9007199254740992.0, &d->reduction_bytes[k]));
        d->reduction_stages[k] = pippy_sj_calloc((size_t)m, sizeof **d->reduction_stages);
        if (!d->reduction_stages[k])
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", c->path);
        cJSON_ArrayForEach(x, sts)
        {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
                x->valuedouble >= d->s.n_stages)
                return pippy_sj_bad(c, "stages", x, "a list of stages (0 to %d)", d->s.n_stages - 1);
            d->reduction_stages[k][d->reduction_n[k]++] = (int32_t)x->valuedouble;
        }
        k++;
    }
    return PIPPY_OK;
}

static pippy_status pippy_sj_link(pippy_sched_json *d, const cJSON *root, pippy_sj *c)
{
    const cJSON *cm = pippy_sj_get(pippy_sj_get(root, "prediction"), "cost_model");
    double gbps = 0, lat_us = 0;
    snprintf(c->where, sizeof c->where, "prediction.cost_model");
    PIPPY_TRY(pippy_sj_num(c, cm, "link_gbytes_per_s", 1e9, &gbps));
    PIPPY_TRY(pippy_sj_num(c, cm, "link_latency_us", 1e12, &lat_us));
    d->s.link_bytes_per_s = gbps * 1e9;
    d->s.link_latency_s = lat_us * 1e-6;
    return PIPPY_OK;
}

pippy_status pippy_sched_json_read(pippy_sched_json *d, const cJSON *root, const char *path)
{
    memset(d, 0, sizeof *d);
    pippy_sj c = {path, ""};
    if (!cJSON_IsObject(root))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: not a JSON object", path);
    PIPPY_TRY(pippy_sj_config(d, root, &c));
    PIPPY_TRY(pippy_sj_stages(d, root, &c));
    PIPPY_TRY(pippy_sj_ranks(d, root, &c));
    PIPPY_TRY(pippy_sj_edges(d, root, &c));
    PIPPY_TRY(pippy_sj_reductions(d, root, &c));
    PIPPY_TRY(pippy_sj_link(d, root, &c));
    d->s.stage_rank = d->stage_rank;
    d->s.edges = d->edges;
    d->s.reduction_n = d->reduction_n;
    d->s.reduction_stages = (const int32_t *const *)d->reduction_stages;
    d->s.reduction_transmit = d->reduction_transmit;
    d->s.reduction_dp = d->reduction_dp;
    d->s.reduction_bytes = d->reduction_bytes;
    d->s.replicas = d->dp;
    d->s.n_actions = d->n_actions;
    d->s.actions = (const pippy_action *const *)d->actions;
    d->s.stage_s = d->stage_s;
    d->s.optimizer_s = d->optimizer_s;
    d->s.stash_slots = d->stash_slots;
    return PIPPY_OK;
}

void pippy_sched_json_free(pippy_sched_json *d)
{
    for (int32_t r = 0; d->actions && r < d->n_all_ranks; r++)
        free(d->actions[r]);
    for (int32_t k = 0; d->reduction_stages && k < d->s.n_reductions; k++)
        free(d->reduction_stages[k]);
    free(d->stage_rank), free(d->stash_slots), free(d->n_actions), free(d->reduction_n), free(d->consumers);
    free(d->reduction_transmit), free(d->reduction_dp), free(d->reduction_bytes);
    free(d->reduction_stages), free(d->actions), free(d->edges), free(d->stage_s), free(d->optimizer_s);
    memset(d, 0, sizeof *d);
}
