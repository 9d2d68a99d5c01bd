/* schedule_read.c — reads OUT/schedule.json into a rank's state: the configuration, which rank
 * runs which stage, the inputs and outputs of this rank's stages, and every rank's action list,
 * which common/schedule_sim.c checks (matching sends and receives, order, no deadlock, the stash
 * this program has) before any connection is made: a hand-edited file that cannot run is refused
 * with the rank, the action and the rule. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "schedule_read.h"
#include "schedule_sim.h"

static int pippy_json_int(const cJSON *o, const char *k, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) && v->valuedouble >= -2147483648.0 && v->valuedouble <= 2147483647.0
               ? (int)v->valuedouble
               : dflt;
}

static const cJSON *pippy_json_get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* One action object into a; where: "rank 1 action 7" for messages. */
static pippy_status pippy_read_action(const cJSON *j, pippy_action *a, const char *path, int rank, int k)
{
    const cJSON *op = pippy_json_get(j, "op");
    a->kind = cJSON_IsString(op) ? pippy_act_parse(op->valuestring) : -1;
    if (a->kind < 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d action %d: '%s' is not an action (F, B, W, SEND_F, RECV_F, "
                                            "SEND_B, RECV_B, ALLREDUCE, STEP)",
                          path, rank, k, cJSON_IsString(op) ? op->valuestring : "(no op)");
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    a->stage = a->kind == PIPPY_ACT_STEP ? -1 : pippy_json_int(j, "stage", -1);
    a->mb = i->has_mb ? pippy_json_int(j, "mb", -1) : -1;
    a->peer = a->kind == PIPPY_ACT_ALLREDUCE ? pippy_json_int(j, "reduction", -1)
              : i->has_peer                  ? pippy_json_int(j, "peer", -1)
                                             : -1;
    return PIPPY_OK;
}

static pippy_status pippy_read_actions(const cJSON *ranks, const char *path, pippy_action **acts, int *n_acts, int R)
{
    for (int r = 0; r < R; r++) {
        const cJSON *list = pippy_json_get(cJSON_GetArrayItem(ranks, r), "actions"), *j;
        int n = cJSON_GetArraySize(list), k = 0;
        if (!cJSON_IsArray(list) || n > 1 << 24)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: rank %d has no action list", path, r);
        acts[r] = calloc((size_t)n + 1, sizeof **acts);
        if (!acts[r])
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        n_acts[r] = n;
        cJSON_ArrayForEach(j, list)
        {
            PIPPY_TRY(pippy_read_action(j, &acts[r][k], path, r, k));
            k++;
        }
    }
    return PIPPY_OK;
}

/* The edges and reductions of the file, for the checker. */
typedef struct {
    pippy_sched_edge *edges;
    int32_t *consumers;
    int32_t *red_n;
    int32_t **red_st;
    int32_t n_edges, n_red;
} pippy_read_graph;

static void pippy_read_graph_free(pippy_read_graph *x)
{
    for (int i = 0; x->red_st && i < x->n_red; i++)
        free(x->red_st[i]);
    free(x->edges), free(x->consumers), free(x->red_n), free(x->red_st);
}

static pippy_status pippy_read_edges(const cJSON *root, const char *path, pippy_read_graph *x)
{
    const cJSON *edges = pippy_json_get(root, "edges"), *e;
    x->n_edges = cJSON_GetArraySize(edges);
    x->edges = calloc((size_t)x->n_edges + 1, sizeof *x->edges);
    x->consumers = calloc((size_t)x->n_edges * 64 + 1, sizeof *x->consumers);
    if (!x->edges || !x->consumers)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    int k = 0;
    cJSON_ArrayForEach(e, edges)
    {
        const cJSON *ph = pippy_json_get(e, "phase"), *c;
        pippy_sched_edge *ed = &x->edges[k];
        ed->producer = pippy_json_int(e, "producer", -1);
        ed->phase = cJSON_IsString(ph) && !strcmp(ph->valuestring, "gradient") ? PIPPY_PHASE_B : PIPPY_PHASE_F;
        ed->consumers = &x->consumers[k * 64];
        cJSON_ArrayForEach(c, pippy_json_get(e, "consumers"))
        {
            if (ed->n_consumers >= 64)
                return pippy_fail(PIPPY_ERR_FORMAT, "%s: edge %d has more than 64 consumers", path, k);
            x->consumers[k * 64 + ed->n_consumers++] = cJSON_IsNumber(c) ? (int32_t)c->valuedouble : -1;
        }
        const cJSON *b = pippy_json_get(e, "bytes");
        ed->bytes = cJSON_IsNumber(b) && b->valuedouble > 0 ? (uint64_t)b->valuedouble : 0;
        k++;
    }
    const cJSON *reds = pippy_json_get(root, "reductions"), *r;
    x->n_red = cJSON_GetArraySize(reds);
    x->red_n = calloc((size_t)x->n_red + 1, sizeof *x->red_n);
    x->red_st = calloc((size_t)x->n_red + 1, sizeof *x->red_st);
    if (!x->red_n || !x->red_st)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    k = 0;
    cJSON_ArrayForEach(r, reds)
    {
        const cJSON *sts = pippy_json_get(r, "stages"), *s;
        x->red_st[k] = calloc((size_t)cJSON_GetArraySize(sts) + 1, sizeof **x->red_st);
        if (!x->red_st[k])
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
        cJSON_ArrayForEach(s, sts) x->red_st[k][x->red_n[k]++] = cJSON_IsNumber(s) ? (int32_t)s->valuedouble : -1;
        k++;
    }
    return PIPPY_OK;
}

/* Every rank's list through common/schedule_sim: refused before any connection when it cannot run. */
static pippy_status pippy_read_check(pippy_rt *rt, const char *path)
{
    const cJSON *ranks = pippy_json_get(rt->sched, "ranks");
    int R = rt->nranks, S = cJSON_GetArraySize(pippy_json_get(rt->sched, "stages"));
    pippy_action **acts = calloc((size_t)R, sizeof *acts);
    int32_t *n_acts = calloc((size_t)R, sizeof *n_acts), *slots = calloc((size_t)S + 1, sizeof *slots);
    int32_t stage_rank[PIPPY_RT_MAX_RANKS];
    pippy_read_graph gr;
    memset(&gr, 0, sizeof gr);
    pippy_status st = !acts || !n_acts || !slots ? pippy_fail(PIPPY_ERR_NOMEM, "out of memory") : PIPPY_OK;
    if (st == PIPPY_OK && (S < 1 || S > PIPPY_RT_MAX_RANKS))
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s: 'stages' must list 1 to %d stages", path, PIPPY_RT_MAX_RANKS);
    for (int s = 0; st == PIPPY_OK && s < S; s++) {
        stage_rank[s] = rt->stage_rank[s];
        pippy_rt_stage *sx = pippy_rt_stage_of(rt, s);
        slots[s] = sx ? (sx->p->stash_slots > 0 ? sx->p->stash_slots : 1) : 1 << 30;
    }
    if (st == PIPPY_OK)
        st = pippy_read_actions(ranks, path, acts, n_acts, R);
    if (st == PIPPY_OK)
        st = pippy_read_edges(rt->sched, path, &gr);
    if (st == PIPPY_OK) {
        pippy_sched sc = {.n_stages = S, .n_ranks = R, .microbatches = rt->M, .training = rt->training,
                          .stage_rank = stage_rank, .n_edges = gr.n_edges, .edges = gr.edges,
                          .n_reductions = gr.n_red, .reduction_n = gr.red_n,
                          .reduction_stages = (const int32_t *const *)gr.red_st, .n_actions = n_acts,
                          .actions = (const pippy_action *const *)acts, .stash_slots = slots};
        st = pippy_sched_check(&sc, NULL);
        if (st != PIPPY_OK)
            pippy_error_prefix(st, "%s", path);
    }
    if (st == PIPPY_OK) {
        rt->acts = acts[rt->rank];
        rt->n_acts = n_acts[rt->rank];
        acts[rt->rank] = NULL;
    }
    for (int r = 0; acts && r < R; r++)
        free(acts[r]);
    free(acts), free(n_acts), free(slots);
    pippy_read_graph_free(&gr);
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
    for (int s = 0; s < PIPPY_RT_MAX_RANKS; s++)
        rt->stage_rank[s] = -1;
    int k = 0;
    cJSON_ArrayForEach(r, ranks)
    {
        int rk = pippy_json_int(r, "rank", -1), stg = pippy_json_int(r, "stage", -1);
        if (rk != k || stg < 0 || stg >= PIPPY_RT_MAX_RANKS || rt->stage_rank[stg] >= 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: ranks[%d] must be rank %d running a stage no other rank runs "
                                                "(found rank %d, stage %d)",
                              path, k, k, rk, stg);
        rt->stage_rank[stg] = rk;
        k++;
    }
    const cJSON *me = cJSON_GetArrayItem(ranks, rt->rank);
    int mine = pippy_json_int(me, "stage", -1);
    for (int i = 0; i < n; i++)
        if (progs[i]->stage == mine) {
            rt->st = calloc(1, sizeof *rt->st);
            if (!rt->st)
                return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
            rt->n_st = 1;
            rt->st[0].p = progs[i];
            rt->st[0].stage = mine;
            return PIPPY_OK;
        }
    return pippy_fail(PIPPY_ERR_USAGE, "rank %d runs stage %d according to %s, but this is the program of stage %d",
                      rt->rank, mine, path, progs[0]->stage);
}

static void *pippy_read_alloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0)
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
    x->buf = pippy_read_alloc(x->bytes * (size_t)rt->M);
    x->req = calloc((size_t)rt->M, sizeof *x->req);
    x->post_us = calloc((size_t)rt->M, sizeof *x->post_us);
    x->arrived = calloc((size_t)rt->M, 1);
    if (!x->buf || !x->req || !x->post_us || !x->arrived)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for input '%s' (%zu bytes x %d microbatches)", x->name,
                          x->bytes, rt->M);
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
    y->buf = y->passthrough >= 0 ? sx->in[y->passthrough].buf : pippy_read_alloc(y->bytes * (size_t)rt->M);
    y->req = calloc((size_t)rt->M * (size_t)(y->n_to ? y->n_to : 1), sizeof *y->req);
    y->post_us = calloc((size_t)rt->M * (size_t)(y->n_to ? y->n_to : 1), sizeof *y->post_us);
    if (!y->buf || !y->req || !y->post_us)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for output '%s'", y->name);
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
    return pippy_read_check(rt, path);
}
