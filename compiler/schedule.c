/* schedule.c — each rank's ordered action list for one step, checked and replayed by
 * common/schedule_sim.c, which also gives the prediction and how many microbatches each stage
 * holds at once (its stash slots).
 *
 * Every rank first posts the receives of every microbatch, so transfers land while it computes.
 *   gpipe, inference: F(m) and its sends, m = 0..M-1.
 *   gpipe, training:  all forwards, then all backwards (B(m), its sends, W(m)), then the
 *                     reductions and STEP. A stage holds all M microbatches.
 *   1f1b, training:   PipeDream-flush. Stage s runs min(S-1-s, M) forwards to fill the pipe, then
 *                     alternates one forward and one backward, then drains the backwards: it holds
 *                     at most S-s microbatches.
 *   interleaved-1f1b: R ranks, rank r holding stages r, r+R, ...: Megatron-LM's order (see
 *                     pippy_rank_actions_interleaved); inference runs the same forward order.
 *   dynamic (--window K): the set of each rank's actions, written as the 1f1b list in training and
 *                     the gpipe list at inference, the interleaved list when a rank runs several
 *                     stages (the canonical order: the preference among the actions that are
 *                     ready); the order is decided at run time (common/schedule_dyn.h). Each stage
 *                     holds at most min(K, M) microbatches: its stash slots. K defaults to the
 *                     number of stages. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "schedule_sim.h"

/* The distinct stages that send values of `phase` to stage s (ascending), or that s sends to. */
static int32_t pippy_peers(const pippy_plan *p, int32_t s, int32_t phase, int sending, int32_t *peers)
{
    char seen[PIPPY_MAX_STAGES] = {0};
    for (int32_t e = 0; e < p->n_edges; e++) {
        const pippy_edge *ed = &p->edges[e];
        if (ed->phase != phase)
            continue;
        for (int32_t c = 0; c < ed->n_consumers; c++) {
            if (sending && ed->producer == s)
                seen[ed->consumers[c]] = 1;
            if (!sending && ed->consumers[c] == s)
                seen[ed->producer] = 1;
        }
    }
    int32_t n = 0;
    for (int32_t k = 0; k < p->n_stages; k++)
        if (seen[k])
            peers[n++] = k;
    return n;
}

typedef struct {
    pippy_action *a;
    int32_t n;
    int32_t s;
    int32_t nt[2], to[2][PIPPY_MAX_STAGES]; /* send peers per phase */
} pippy_list;

static void pippy_put(pippy_list *l, int32_t kind, int32_t mb, int32_t peer)
{
    l->a[l->n++] = (pippy_action){kind, kind == PIPPY_ACT_STEP ? -1 : l->s, mb, peer};
}

static void pippy_forward(pippy_list *l, int32_t m)
{
    pippy_put(l, PIPPY_ACT_F, m, -1);
    for (int32_t k = 0; k < l->nt[0]; k++)
        pippy_put(l, PIPPY_ACT_SEND_F, m, l->to[0][k]);
}

static void pippy_backward(pippy_list *l, int32_t m)
{
    pippy_put(l, PIPPY_ACT_B, m, -1);
    for (int32_t k = 0; k < l->nt[1]; k++)
        pippy_put(l, PIPPY_ACT_SEND_B, m, l->to[1][k]);
    pippy_put(l, PIPPY_ACT_W, m, -1);
}

static int pippy_member(const pippy_reduction *r, int32_t s)
{
    for (int32_t k = 0; k < r->n_stages; k++)
        if (r->stages[k] == s)
            return 1;
    return 0;
}

static pippy_status pippy_stage_actions(pippy_plan *p, int32_t s, int one_f_one_b)
{
    int32_t S = p->n_stages, M = p->microbatches;
    int32_t from[2][PIPPY_MAX_STAGES], nf[2];
    pippy_list l = {.s = s};
    for (int32_t ph = 0; ph < 2; ph++) {
        nf[ph] = pippy_peers(p, s, ph, 0, from[ph]);
        l.nt[ph] = pippy_peers(p, s, ph, 1, l.to[ph]);
    }
    size_t cap = (size_t)M * (size_t)(nf[0] + nf[1] + l.nt[0] + l.nt[1] + 3) + 2 * (size_t)p->n_reductions + 2;
    l.a = malloc(cap * sizeof *l.a);
    if (!l.a)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
    for (int32_t id = 0; id < p->n_reductions && p->training; id++)
        if (p->reductions[id].transmit && pippy_member(&p->reductions[id], s))
            pippy_put(&l, PIPPY_ACT_BROADCAST, -1, id);
    for (int32_t ph = 0; ph < (p->training ? 2 : 1); ph++)
        for (int32_t m = 0; m < M; m++)
            for (int32_t k = 0; k < nf[ph]; k++)
                pippy_put(&l, ph ? PIPPY_ACT_RECV_B : PIPPY_ACT_RECV_F, m, from[ph][k]);
    if (!p->training) {
        for (int32_t m = 0; m < M; m++)
            pippy_forward(&l, m);
    } else if (!one_f_one_b) {
        for (int32_t m = 0; m < M; m++)
            pippy_forward(&l, m);
        for (int32_t m = 0; m < M; m++)
            pippy_backward(&l, m);
    } else {
        int32_t warm = S - 1 - s < M ? S - 1 - s : M;
        for (int32_t m = 0; m < warm; m++)
            pippy_forward(&l, m);
        for (int32_t i = 0; i < M; i++) {
            if (warm + i < M)
                pippy_forward(&l, warm + i);
            pippy_backward(&l, i);
        }
    }
    for (int32_t id = 0; id < p->n_reductions && p->training; id++)
        if (pippy_member(&p->reductions[id], s))
            pippy_put(&l, p->reductions[id].transmit ? PIPPY_ACT_REDUCE : PIPPY_ACT_ALLREDUCE, -1, id);
    if (p->training)
        pippy_put(&l, PIPPY_ACT_STEP, -1, -1);
    p->actions[p->stages[s].rank] = l.a;
    p->n_actions[p->stages[s].rank] = l.n;
    return PIPPY_OK;
}

/* The send peers of stage s into l (for pippy_forward / pippy_backward). */
static void pippy_list_stage(const pippy_plan *p, pippy_list *l, int32_t s)
{
    l->s = s;
    for (int32_t ph = 0; ph < 2; ph++)
        l->nt[ph] = pippy_peers(p, s, ph, 1, l->to[ph]);
}

/* The k-th forward (backward: bwd) of an interleaved rank with v stages and R ranks: microbatches
 * go round the ranks in groups of R, each group through the rank's stages in order (backwards in
 * reverse); the result is a stage index (k / R) % v and a microbatch. */
static void pippy_interleaved_at(int32_t k, int32_t R, int32_t v, int bwd, int32_t *chunk, int32_t *m)
{
    *chunk = (k / R) % v;
    if (bwd)
        *chunk = v - 1 - *chunk;
    *m = (k / (R * v)) * R + k % R;
}

/* The k-th forward (bwd: backward) of interleaved rank r, with its sends. */
static void pippy_interleaved_put(const pippy_plan *p, pippy_list *l, int32_t r, int32_t k, int bwd)
{
    int32_t c, m;
    pippy_interleaved_at(k, p->n_ranks, p->n_stages / p->n_ranks, bwd, &c, &m);
    pippy_list_stage(p, l, c * p->n_ranks + r);
    if (bwd)
        pippy_backward(l, m);
    else
        pippy_forward(l, m);
}

/* interleaved-1f1b (the looping placement of Megatron-LM / torch.distributed.pipelining): rank r
 * holds the v = S/R stages r, r+R, ...; after posting every receive it runs
 * min(M*v, 2(R-1-r) + (v-1)R) forwards, then alternates one forward and one backward, then drains
 * the backwards. v = 1 is 1f1b with a longer warm-up; the compile uses 1f1b's builder then. */
static pippy_status pippy_rank_actions_interleaved(pippy_plan *p, int32_t r)
{
    int32_t R = p->n_ranks, v = p->n_stages / R, M = p->microbatches, total = M * v;
    int32_t from[PIPPY_MAX_STAGES], n = 0;
    pippy_list l = {0};
    size_t cap = 2 * (size_t)p->n_reductions + 2;
    for (int32_t c = 0; c < v; c++) {
        pippy_list_stage(p, &l, c * R + r);
        cap += (size_t)M * (size_t)(pippy_peers(p, l.s, 0, 0, from) + pippy_peers(p, l.s, 1, 0, from) + l.nt[0] +
                                    l.nt[1] + 3);
    }
    l.a = malloc(cap * sizeof *l.a);
    if (!l.a)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
    for (int32_t c = 0; c < v; c++) {
        l.s = c * R + r;
        for (int32_t id = 0; id < p->n_reductions && p->training; id++)
            if (p->reductions[id].transmit && pippy_member(&p->reductions[id], l.s))
                pippy_put(&l, PIPPY_ACT_BROADCAST, -1, id);
        for (int32_t ph = 0; ph < (p->training ? 2 : 1); ph++) {
            n = pippy_peers(p, l.s, ph, 0, from);
            for (int32_t m = 0; m < M; m++)
                for (int32_t k = 0; k < n; k++)
                    pippy_put(&l, ph ? PIPPY_ACT_RECV_B : PIPPY_ACT_RECV_F, m, from[k]);
        }
    }
    int32_t warm = p->training ? 2 * (R - 1 - r) + (v - 1) * R : total, nf = 0, nb = 0;
    warm = warm < total ? warm : total;
    while (nf < warm)
        pippy_interleaved_put(p, &l, r, nf++, 0);
    while (p->training && nb < total) {
        if (nf < total)
            pippy_interleaved_put(p, &l, r, nf++, 0);
        pippy_interleaved_put(p, &l, r, nb++, 1);
    }
    for (int32_t c = 0; c < v && p->training; c++) {
        l.s = c * R + r;
        for (int32_t id = 0; id < p->n_reductions; id++)
            if (pippy_member(&p->reductions[id], l.s))
                pippy_put(&l, p->reductions[id].transmit ? PIPPY_ACT_REDUCE : PIPPY_ACT_ALLREDUCE, -1, id);
    }
    if (p->training)
        pippy_put(&l, PIPPY_ACT_STEP, -1, -1);
    p->actions[r] = l.a;
    p->n_actions[r] = l.n;
    return PIPPY_OK;
}

/* The plan as the checker sees it (arrays owned by the caller, freed by pippy_sched_free). */
static pippy_status pippy_sched_of(const pippy_plan *p, pippy_sched *sc, double *stage_s, int32_t *stage_rank,
                                   pippy_sched_edge *edges, int32_t *red_n, const int32_t **red_st, int32_t *red_tx)
{
    memset(sc, 0, sizeof *sc);
    sc->n_stages = p->n_stages;
    sc->n_ranks = p->n_ranks;
    sc->microbatches = p->microbatches;
    sc->training = p->training;
    for (int32_t s = 0; s < p->n_stages; s++) {
        stage_rank[s] = p->stages[s].rank;
        stage_s[s * PIPPY_PHASES + PIPPY_PHASE_F] = p->stages[s].pred_forward_ms * 1e-3;
        stage_s[s * PIPPY_PHASES + PIPPY_PHASE_B] = p->stages[s].pred_backward_ms * 1e-3;
        stage_s[s * PIPPY_PHASES + PIPPY_PHASE_W] = p->stages[s].pred_weight_ms * 1e-3;
    }
    for (int32_t e = 0; e < p->n_edges; e++)
        edges[e] = (pippy_sched_edge){p->edges[e].producer, p->edges[e].phase, p->edges[e].n_consumers,
                                      p->edges[e].consumers, p->edges[e].bytes};
    for (int32_t id = 0; id < p->n_reductions; id++) {
        red_n[id] = p->reductions[id].n_stages;
        red_st[id] = p->reductions[id].stages;
        red_tx[id] = p->reductions[id].transmit;
    }
    sc->stage_rank = stage_rank;
    sc->n_edges = p->n_edges;
    sc->edges = edges;
    sc->n_reductions = p->n_reductions;
    sc->reduction_n = red_n;
    sc->reduction_stages = red_st;
    sc->reduction_transmit = red_tx;
    sc->n_actions = p->n_actions;
    sc->actions = (const pippy_action *const *)p->actions;
    sc->stage_s = stage_s;
    sc->link_latency_s = p->cost.link_latency_s;
    sc->link_bytes_per_s = p->cost.link_bytes_per_s;
    sc->window = p->window;
    return PIPPY_OK;
}

/* Check the lists, predict, and size each stage's stash from the microbatches it holds. */
static pippy_status pippy_schedule_predict(pippy_plan *p)
{
    int32_t S = p->n_stages, R = p->n_ranks;
    double *stage_s = calloc((size_t)S * PIPPY_PHASES, sizeof *stage_s), *busy = calloc((size_t)R, sizeof *busy);
    int32_t *stage_rank = calloc((size_t)S, sizeof *stage_rank), *in_flight = calloc((size_t)S, sizeof *in_flight);
    pippy_sched_edge *edges = calloc((size_t)p->n_edges + 1, sizeof *edges);
    int32_t *red_n = calloc((size_t)p->n_reductions + 1, sizeof *red_n);
    const int32_t **red_st = calloc((size_t)p->n_reductions + 1, sizeof *red_st);
    int32_t *red_tx = calloc((size_t)p->n_reductions + 1, sizeof *red_tx);
    p->pred_idle_ms = calloc((size_t)R, sizeof *p->pred_idle_ms);
    pippy_status st = PIPPY_OK;
    if (!stage_s || !busy || !stage_rank || !in_flight || !edges || !red_n || !red_st || !red_tx || !p->pred_idle_ms)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory predicting the schedule");
    pippy_sched sc;
    pippy_sched_result res = {.busy_s = busy, .idle_s = p->pred_idle_ms, .in_flight = in_flight};
    if (st == PIPPY_OK)
        st = pippy_sched_of(p, &sc, stage_s, stage_rank, edges, red_n, red_st, red_tx);
    if (st == PIPPY_OK)
        st = pippy_sched_check(&sc, &res);
    if (st != PIPPY_OK)
        pippy_error_prefix(st, "pippyc built a schedule it cannot run (a bug)");
    for (int32_t s = 0; s < S && st == PIPPY_OK; s++)
        p->stages[s].stash_slots = in_flight[s] > 0 ? in_flight[s] : 1;
    for (int32_t r = 0; r < R && st == PIPPY_OK; r++)
        p->pred_idle_ms[r] *= 1e3;
    p->pred_step_ms = res.step_s * 1e3;
    p->pred_bubble = res.bubble;
    free(stage_s), free(busy), free(stage_rank), free(in_flight), free(edges), free(red_n), free(red_st), free(red_tx);
    return st;
}

/* --schedule dynamic: the window, and the canonical order its lists are written in (interleaved
 * when a rank runs several stages). */
static pippy_status pippy_schedule_dynamic(pippy_plan *p, int *one_f_one_b, int *interleaved)
{
    int dynamic = strcmp(p->schedule, "dynamic") == 0;
    if (!dynamic && p->window > 0)
        return pippy_fail(PIPPY_ERR_USAGE, "--window %d applies to --schedule dynamic (this is --schedule %s)",
                          p->window, p->schedule);
    if (!dynamic)
        return PIPPY_OK;
    if (p->window <= 0)
        p->window = p->n_stages;
    *one_f_one_b = p->training;
    *interleaved = p->n_ranks > 0 && p->n_ranks < p->n_stages;
    return PIPPY_OK;
}

pippy_status pippy_schedule_build(pippy_plan *p)
{
    int interleaved = strcmp(p->schedule, "interleaved-1f1b") == 0;
    int one_f_one_b = strcmp(p->schedule, "1f1b") == 0 || interleaved;
    if (!one_f_one_b && strcmp(p->schedule, "gpipe") != 0 && strcmp(p->schedule, "dynamic") != 0)
        return pippy_fail(PIPPY_ERR_USAGE,
                          "--schedule %s: known schedules are gpipe, 1f1b, interleaved-1f1b and dynamic", p->schedule);
    PIPPY_TRY(pippy_schedule_dynamic(p, &one_f_one_b, &interleaved));
    if (one_f_one_b && !p->training && !interleaved)
        return pippy_fail(PIPPY_ERR_USAGE, "--schedule 1f1b needs --train (inference runs gpipe: there is no backward "
                                           "to interleave)");
    if (p->n_ranks <= 0)
        p->n_ranks = p->n_stages;
    p->actions = calloc((size_t)p->n_ranks, sizeof *p->actions);
    p->n_actions = calloc((size_t)p->n_ranks, sizeof *p->n_actions);
    if (!p->actions || !p->n_actions)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
    if (interleaved && p->n_ranks < p->n_stages) {
        for (int32_t r = 0; r < p->n_ranks; r++)
            PIPPY_TRY(pippy_rank_actions_interleaved(p, r));
    } else {
        for (int32_t s = 0; s < p->n_stages; s++)
            PIPPY_TRY(pippy_stage_actions(p, s, one_f_one_b));
    }
    return pippy_schedule_predict(p);
}
