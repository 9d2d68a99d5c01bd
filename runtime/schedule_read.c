/* schedule_read.c — reads OUT/schedule.json into a rank's state: the configuration, which rank
 * runs which stage, the inputs and outputs of this rank's stages, and every rank's action list,
 * which common/schedule_sim.c checks (matching sends and receives, order, no deadlock, the stash
 * this program has) before any connection is made: a hand-edited file that cannot run is refused
 * with the rank, the action and the rule. A dynamic schedule (config.window) sizes every slot
 * between stages for its window and gets the executor's state for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "schedule_json.h"
#include "schedule_read.h"
#include "sched_check.h"
#include "schedule_sim.h"

static int pippy_json_int(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= -2147483648.0 && v->valuedouble <= 2147483647.0
               ? (int)v->valuedouble
               : dflt;
}

static const cJSON *pippy_json_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* Every rank's list through common/schedule_json and common/schedule_sim: refused before any
 * connection when it cannot run. The ranks of the stages are those read from ranks[] (checked by
 * pippy_read_ranks), the stash bound the one compiled into this rank's programs. */
static pippy_status pippy_read_check(pippy_rt *rt, const char *path, int32_t *in_flight)
{
    pippy_sched_json d;
    pippy_status st = pippy_sched_json_read(&d, rt->sched, path);
    int S = d.s.n_stages;
    if (st == PIPPY_OK && S > PIPPY_RT_MAX_RANKS)
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s: 'stages' must list 1 to %d stages", path, PIPPY_RT_MAX_RANKS);
    int32_t stage_rank[PIPPY_RT_MAX_RANKS];
    for (int s = 0; st == PIPPY_OK && s < S; s++) {
        pippy_rt_stage *sx = pippy_rt_stage_of(rt, s);
        stage_rank[s] = rt->stage_rank[s] - rt->replica * rt->pp_ranks; /* the checker sees replica 0 */
        d.stash_slots[s] = sx ? (sx->p->stash_slots > 0 ? sx->p->stash_slots : 1) : 1 << 30;
    }
    if (st == PIPPY_OK) {
        d.s.stage_rank = stage_rank;
        d.s.stage_s = NULL;
        pippy_sched_result res = {.in_flight = in_flight};
        st = pippy_sched_check(&d.s, &res);
        if (st != PIPPY_OK)
            pippy_error_prefix(st, "%s", path);
    }
    if (st == PIPPY_OK) {
        rt->acts = d.actions[rt->rank];
        rt->n_acts = d.n_actions[rt->rank];
        rt->window = d.s.window;
        d.actions[rt->rank] = NULL;
    }
    pippy_sched_json_free(&d);
    return st;
}

static pippy_status pippy_read_ranks(pippy_rt *rt, const char *path, const pippy_stage_program *const *progs, int n)
{
    const cJSON *ranks = pippy_json_get(rt->sched, "ranks"), *r;
    rt->nranks = cJSON_GetArraySize(ranks);
    if (rt->nranks < 1 || rt->nranks > PIPPY_RT_MAX_RANKS)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: 'ranks' must list 1 to %d ranks", path, PIPPY_RT_MAX_RANKS);
    if (rt->a.rank < 0 && rt->nranks == 1)
        rt->a.rank = 0;
    if (rt->a.rank < 0)
        return pippy_fail(PIPPY_ERR_USAGE, "which rank is this? give --rank or set PIPPY_RANK (or start it with "
                                           "mpirun / srun, or use pippyrun)");
    rt->rank = rt->a.rank;
    if (rt->rank >= rt->nranks)
        return pippy_fail(PIPPY_ERR_USAGE, "rank %d: %s has only %d ranks", rt->rank, path, rt->nranks);
    /* dp replicas of the pipeline: replica d is ranks d*R .. d*R+R-1, and a stage's peers are those of
     * this rank's replica */
    rt->dp = pippy_json_int(pippy_json_get(rt->sched, "config"), "dp", 1);
    if (rt->dp < 1 || rt->nranks % rt->dp)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %d ranks do not split into config.dp = %d replicas", path, rt->nranks,
                          rt->dp);
    rt->pp_ranks = rt->nranks / rt->dp;
    rt->replica = rt->rank / rt->pp_ranks;
    for (int s = 0; s < PIPPY_RT_MAX_RANKS; s++)
        rt->stage_rank[s] = -1;
    int k = 0;
    cJSON_ArrayForEach(r, ranks) /* types and ranges: checked by pippy_sched_fields_check */
    {
        const cJSON *x;
        if (k / rt->pp_ranks == rt->replica)
            cJSON_ArrayForEach(x, pippy_json_get(r, "stages")) rt->stage_rank[(int)x->valuedouble] = k;
        k++;
    }
    const cJSON *stage, *x;
    k = 0;
    cJSON_ArrayForEach(stage, pippy_json_get(rt->sched, "stages"))
    {
        if (pippy_json_int(stage, "rank", -1) + rt->replica * rt->pp_ranks != rt->stage_rank[k])
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stages[%d].rank is %d, but ranks[%d].stages lists it", path, k,
                              pippy_json_int(stage, "rank", -1), rt->stage_rank[k] - rt->replica * rt->pp_ranks);
        k++;
    }
    const cJSON *mine = pippy_json_get(cJSON_GetArrayItem(ranks, rt->rank), "stages");
    rt->n_st = cJSON_GetArraySize(mine);
    rt->st = calloc((size_t)rt->n_st, sizeof *rt->st);
    if (!rt->st)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    k = 0;
    cJSON_ArrayForEach(x, mine)
    {
        int s = (int)x->valuedouble, i = 0;
        while (i < n && progs[i]->stage != s)
            i++;
        if (i == n)
            return pippy_fail(PIPPY_ERR_USAGE, "rank %d runs stage %d according to %s, but this program (%s) has no "
                                               "stage %d: start the program that schedule.json names for rank %d",
                              rt->rank, s, path, progs[0]->source, s, rt->rank);
        rt->st[k].p = progs[i];
        rt->st[k++].stage = s;
    }
    return PIPPY_OK;
}

/* Slot buffers start on a page: a GPU stage page-locks each (devmem.c), which fails for two
 * buffers sharing a page. */
static void *pippy_read_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 4096, n ? n : 64) != 0)
        return NULL;
    memset(p, 0, n ? n : 64);
    return p;
}

static pippy_status pippy_read_input(pippy_rt *rt, pippy_rt_stage *sx, const cJSON *e, int q, const char *path)
{
    pippy_rt_input *x = &sx->in[q];
    x->name = sx->p->inputs[q].name;
    const cJSON *nm = pippy_json_get(e, "name"), *from = pippy_json_get(e, "from"), *ph = pippy_json_get(e, "phase");
    if (!cJSON_IsString(nm) || strcmp(nm->valuestring, x->name) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d input %d should be '%s'", path, sx->stage, q, x->name);
    x->from = cJSON_IsNumber(from) ? pippy_json_int(e, "from", -1) : -1;
    if (cJSON_IsNumber(from) && (x->from < 0 || x->from >= PIPPY_RT_MAX_RANKS || rt->stage_rank[x->from] < 0))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d input '%s' comes from stage %d, which no rank runs", path,
                          sx->stage, x->name, x->from);
    x->edge = pippy_json_int(e, "edge", -1);
    x->phase = cJSON_IsString(ph) && !strcmp(ph->valuestring, "gradient") ? PIPPY_PHASE_B : PIPPY_PHASE_F;
    x->graph_output = cJSON_IsTrue(pippy_json_get(e, "graph_output"));
    x->bytes = pippy_tdesc_bytes(&sx->p->inputs[q].t);
    return PIPPY_OK;
}

static pippy_status pippy_read_output(pippy_rt *rt, pippy_rt_stage *sx, const cJSON *e, int q, const char *path)
{
    pippy_rt_output *y = &sx->out[q];
    y->name = sx->p->outputs[q].name;
    const cJSON *nm = pippy_json_get(e, "name"), *ph = pippy_json_get(e, "phase"), *c;
    if (!cJSON_IsString(nm) || strcmp(nm->valuestring, y->name) != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d output %d should be '%s'", path, sx->stage, q, y->name);
    y->edge = pippy_json_int(e, "edge", -1);
    y->phase = cJSON_IsString(ph) && !strcmp(ph->valuestring, "gradient") ? PIPPY_PHASE_B : PIPPY_PHASE_F;
    y->graph_output = cJSON_IsTrue(pippy_json_get(e, "graph_output"));
    y->passthrough = pippy_json_int(e, "passthrough", -1);
    cJSON_ArrayForEach(c, pippy_json_get(e, "to"))
    {
        int to = cJSON_IsNumber(c) ? (int)c->valuedouble : -1;
        if (y->n_to >= 64 || to < 0 || to >= PIPPY_RT_MAX_RANKS || rt->stage_rank[to] < 0 || to == sx->stage)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d output '%s' goes to stage %d, which no other rank runs",
                              path, sx->stage, y->name, to);
        y->to[y->n_to++] = to;
    }
    y->bytes = pippy_tdesc_bytes(&sx->p->outputs[q].t);
    if (y->passthrough >= sx->n_in)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d output '%s' passes through input %d of %d", path, sx->stage,
                          y->name, y->passthrough, sx->n_in);
    return PIPPY_OK;
}

/* Stage sx's inputs and outputs: schedule.json's lists must be the ones compiled in. */
static pippy_status pippy_read_stage_io(pippy_rt *rt, pippy_rt_stage *sx, const char *path)
{
    const cJSON *stage = cJSON_GetArrayItem(pippy_json_get(rt->sched, "stages"), sx->stage);
    if (!stage)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no entry for stage %d under 'stages'", path, sx->stage);
    const cJSON *ins = pippy_json_get(stage, "inputs"), *outs = pippy_json_get(stage, "outputs"), *e;
    const pippy_stage_program *p = sx->p;
    if (cJSON_GetArraySize(ins) != p->n_inputs || cJSON_GetArraySize(outs) != p->n_outputs)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: stage %d lists %d inputs and %d outputs, the program has %d and %d",
                          path, sx->stage, cJSON_GetArraySize(ins), cJSON_GetArraySize(outs), p->n_inputs,
                          p->n_outputs);
    sx->n_in = p->n_inputs;
    sx->n_out = p->n_outputs;
    sx->in = calloc((size_t)sx->n_in + 1, sizeof *sx->in);
    sx->out = calloc((size_t)sx->n_out + 1, sizeof *sx->out);
    sx->in_ptr = calloc((size_t)sx->n_in + 1, sizeof *sx->in_ptr);
    sx->out_ptr = calloc((size_t)sx->n_out + 1, sizeof *sx->out_ptr);
    if (!sx->in || !sx->out || !sx->in_ptr || !sx->out_ptr)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    int q = 0;
    cJSON_ArrayForEach(e, ins)
    {
        PIPPY_TRY(pippy_read_input(rt, sx, e, q, path));
        q++;
    }
    q = 0;
    cJSON_ArrayForEach(e, outs)
    {
        PIPPY_TRY(pippy_read_output(rt, sx, e, q, path));
        q++;
    }
    sx->loss_out = -1;
    const cJSON *loss = pippy_json_get(pippy_json_get(rt->sched, "training"), "loss");
    for (q = 0; q < sx->n_out && cJSON_IsString(loss); q++)
        if (sx->out[q].graph_output && !strcmp(sx->out[q].name, loss->valuestring))
            sx->loss_out = q;
    return PIPPY_OK;
}

/* The slots of the value on edge e, the same on every stage that touches it (a shared buffer):
 * every microbatch when the value is a graph input passed on or a graph output, else as
 * pippy_sched_slots says from its producer's and consumers' microbatches in flight. */
static int pippy_read_edge_slots(const pippy_rt *rt, const int32_t *in_flight, int e)
{
    const cJSON *ed = cJSON_GetArrayItem(pippy_json_get(rt->sched, "edges"), e), *c, *x;
    const cJSON *stages = pippy_json_get(rt->sched, "stages");
    int producer = pippy_json_int(ed, "producer", -1), whole = 0, n = 0;
    int32_t cons[64];
    cJSON_ArrayForEach(x, pippy_json_get(cJSON_GetArrayItem(stages, producer), "outputs"))
        whole |= pippy_json_int(x, "edge", -2) == e && pippy_json_int(x, "passthrough", -1) >= 0;
    cJSON_ArrayForEach(c, pippy_json_get(ed, "consumers"))
    {
        int s = cJSON_IsNumber(c) ? (int)c->valuedouble : -1;
        if (n < 64)
            cons[n++] = s;
        cJSON_ArrayForEach(x, pippy_json_get(cJSON_GetArrayItem(stages, s), "inputs"))
            whole |= pippy_json_int(x, "edge", -2) == e && cJSON_IsTrue(pippy_json_get(x, "graph_output"));
    }
    return pippy_sched_slots(rt->training || rt->window > 0, rt->M, whole || producer < 0, in_flight, producer, cons,
                             n);
}

/* Every slot, request and flag array of stage sx, sized from the checked schedule. */
static pippy_status pippy_read_alloc_stage(pippy_rt *rt, pippy_rt_stage *sx, const int32_t *in_flight)
{
    size_t M = (size_t)rt->M;
    sx->finished = calloc(M, 1);
    if (!sx->finished)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *x = &sx->in[q];
        x->slots = x->from < 0 || x->edge < 0 ? rt->M : pippy_read_edge_slots(rt, in_flight, x->edge);
        x->buf = pippy_read_alloc(x->bytes * (size_t)x->slots);
        x->req = calloc(M, sizeof *x->req);
        x->credit = calloc(M, sizeof *x->credit);
        x->post_us = calloc(M, sizeof *x->post_us);
        x->arrived = calloc(M, 1);
        x->want = calloc(M, 1);
        if (!x->buf || !x->req || !x->credit || !x->post_us || !x->arrived || !x->want)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for input '%s' (%zu bytes x %d slots)", x->name,
                              x->bytes, x->slots);
    }
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *y = &sx->out[q];
        size_t per = M * (size_t)(y->n_to ? y->n_to : 1);
        int pass = y->passthrough >= 0;
        y->slots = pass ? sx->in[y->passthrough].slots : y->edge < 0 ? rt->M : pippy_read_edge_slots(rt, in_flight, y->edge);
        y->buf = pass ? sx->in[y->passthrough].buf : pippy_read_alloc(y->bytes * (size_t)y->slots);
        y->req = calloc(per, sizeof *y->req);
        y->credit = calloc(per, sizeof *y->credit);
        y->credit_buf = calloc(per, sizeof *y->credit_buf);
        y->post_us = calloc(per, sizeof *y->post_us);
        if (!y->buf || !y->req || !y->credit || !y->credit_buf || !y->post_us)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for output '%s'", y->name);
    }
    return PIPPY_OK;
}

pippy_status pippy_schedule_read(pippy_rt *rt, const char *path, const pippy_stage_program *const *progs, int n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pippy_fail(PIPPY_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) {
            char *t = realloc(text, (cap = 2 * cap + 65536) + 1);
            if (!t) {
                free(text);
                fclose(f);
                return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", path);
            }
            text = t;
        }
        size_t k = fread(text + len, 1, cap - len, f);
        len += k;
        if (k == 0)
            break;
    }
    fclose(f);
    text[len] = 0;
    rt->sched = cJSON_Parse(text);
    free(text);
    if (!rt->sched)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s is not valid JSON (near: %.40s)", path,
                          cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    const cJSON *hash = pippy_json_get(rt->sched, "hash");
    char mine[32];
    snprintf(mine, sizeof mine, "%016llx", (unsigned long long)progs[0]->hash);
    if (!cJSON_IsString(hash) || strcmp(hash->valuestring, mine) != 0)
        return pippy_fail(PIPPY_ERR_INVALID,
                          "%s is from another compile (hash %s); this program (%s) was compiled as %s — recompile or "
                          "use the matching schedule",
                          path, cJSON_IsString(hash) ? hash->valuestring : "missing", progs[0]->source, mine);
    /* the type and range of every field read below, before any of it is used */
    PIPPY_TRY(pippy_sched_fields_check(rt->sched, path, progs[0]->n_stages, progs[0]->stage));
    const cJSON *cfg = pippy_json_get(rt->sched, "config"), *mode = pippy_json_get(cfg, "mode");
    rt->M = pippy_json_int(cfg, "microbatches", 0);
    if (rt->M < 1 || rt->M > 1 << 20)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: config.microbatches is missing or outside 1..%d", path, 1 << 20);
    rt->training = cJSON_IsString(mode) && !strcmp(mode->valuestring, "training");
    if (rt->training != progs[0]->training)
        return pippy_fail(PIPPY_ERR_INVALID, "%s says mode %s, but the program was compiled for %s", path,
                          rt->training ? "training" : "inference", progs[0]->training ? "training" : "inference");
    PIPPY_TRY(pippy_read_ranks(rt, path, progs, n));
    for (int i = 0; i < rt->n_st; i++)
        PIPPY_TRY(pippy_read_stage_io(rt, &rt->st[i], path));
    int32_t in_flight[PIPPY_RT_MAX_RANKS];
    PIPPY_TRY(pippy_read_check(rt, path, in_flight));
    for (int i = 0; i < rt->n_st; i++)
        PIPPY_TRY(pippy_read_alloc_stage(rt, &rt->st[i], in_flight));
    return pippy_rt_dynamic_setup(rt);
}
