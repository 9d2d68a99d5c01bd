/* schedule.c — each rank's ordered action list for one step, checked and replayed by
 * common/schedule_sim.c, which also gives the prediction and how many microbatches each stage
 * holds at once (its stash slots, from its F to its W).
 *
 * Every rank first posts the receives of every microbatch, so transfers land while it computes.
 *   gpipe, inference: F(m) and its sends, m = 0..M-1.
 *   gpipe, training:  all forwards, then all backwards (B(m), its sends, W(m)), then the
 *                     reductions and STEP. A stage holds all M microbatches.
 *   1f1b, training:   PipeDream-flush. Stage s runs min(S-1-s, M) forwards to fill the pipe, then
 *                     alternates one forward and one backward, then drains the backwards: it holds
 *                     at most S-s microbatches. B's gradients are sent before W runs, so with
 *                     uniform costs each rank idles (S-1)(tf+tb) per step, not (S-1)(tf+tb+tw).
 *   zb-h1, training:  zero bubble H1 (Qi et al. 2023, "Zero Bubble Pipeline Parallelism"): the
 *                     forwards and B's in 1F1B's order, but stage s defers its W's by s backwards
 *                     (W(i) after B(i+s); the rest after the last B), so B's reach the first stage
 *                     sooner and the deferred W's fill the cool-down. Uniform costs, M >= S: each
 *                     rank idles (S-1)(tf+tb-tw). Every stage holds min(S, M) microbatches: the
 *                     peak, on the first stage, is 1F1B's, but the later stages hold more than in
 *                     1F1B. That is the price of the gain here: with the stash held until W, the
 *                     last stage of 1F1B (one microbatch at a time) must finish W(m) before F(m+1),
 *                     and then no order of the other stages beats 1F1B's step. A consumer holding
 *                     as many microbatches as its producer, each activation gets one slot more
 *                     than in 1F1B (pippy_sched_slots), so no F waits for a deferred W.
 *   interleaved-1f1b: R ranks, rank r holding stages r, r+R, ...: Megatron-LM's order (see
 *                     pippy_rank_actions_interleaved); inference runs the same forward order.
 *                     zb-h1 with --ranks below the stages: that order with B and W apart and
 *                     rank r's W's deferred by r backwards (torch's InterleavedZeroBubble places
 *                     the stages alike).
 *   dynamic (--window K): the set of each rank's actions, written as the 1f1b list in training and
 *                     the gpipe list at inference, the interleaved list when a rank runs several
 *                     stages (the canonical order: the preference among the actions that are
 *                     ready); the order is decided at run time (common/schedule_dyn.h). Each stage
 *                     holds at most min(K, M) microbatches: its stash slots. K defaults to the
 *                     number of stages.
 * pippy_schedule_choose (schedule.h) picks among the fixed ones for --schedule auto. */
#include "plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "schedule.h"
#include "schedule_sim.h"

/* The schedules pippy_schedule_build knows; training_only: they interleave backwards. */
enum {
    PIPPY_SCHED_GPIPE,
    PIPPY_SCHED_1F1B,
    PIPPY_SCHED_ZBH1,
    PIPPY_SCHED_INTERLEAVED,
    PIPPY_SCHED_DYNAMIC,
    PIPPY_SCHED_KINDS
};
static const struct {
    const char *name;
    int training_only;
} pippy_sched_kinds[PIPPY_SCHED_KINDS] = {{"gpipe", 0}, {"1f1b", 1}, {"zb-h1", 1}, {"interleaved-1f1b", 0}, {"dynamic", 0}};

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

/* B(m) and the sends of its gradients. */
static void pippy_backward_input(pippy_list *l, int32_t m)
{
    pippy_put(l, PIPPY_ACT_B, m, -1);
    for (int32_t k = 0; k < l->nt[1]; k++)
        pippy_put(l, PIPPY_ACT_SEND_B, m, l->to[1][k]);
}

static void pippy_backward(pippy_list *l, int32_t m)
{
    pippy_backward_input(l, m);
    pippy_put(l, PIPPY_ACT_W, m, -1);
}

/* zb-h1's compute actions of stage l->s: 1F1B's forwards and B's, W(i) after B(i + s). */
static void pippy_zbh1_body(pippy_list *l, int32_t S, int32_t M)
{
    int32_t s = l->s, warm = S - 1 - s < M ? S - 1 - s : M, w = 0;
    for (int32_t m = 0; m < warm; m++)
        pippy_forward(l, m);
    for (int32_t i = 0; i < M; i++) {
        if (warm + i < M)
            pippy_forward(l, warm + i);
        pippy_backward_input(l, i);
        if (i - w >= s)
            pippy_put(l, PIPPY_ACT_W, w++, -1);
    }
    while (w < M)
        pippy_put(l, PIPPY_ACT_W, w++, -1);
}

static int pippy_member(const pippy_reduction *r, int32_t s)
{
    for (int32_t k = 0; k < r->n_stages; k++)
        if (r->stages[k] == s)
            return 1;
    return 0;
}

static pippy_status pippy_stage_actions(pippy_plan *p, int32_t s, int kind)
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
    } else if (kind == PIPPY_SCHED_GPIPE) {
        for (int32_t m = 0; m < M; m++)
            pippy_forward(&l, m);
        for (int32_t m = 0; m < M; m++)
            pippy_backward(&l, m);
    } else if (kind == PIPPY_SCHED_ZBH1) {
        pippy_zbh1_body(&l, S, M);
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

/* What pippy_interleaved_put puts for the k-th action of a kind. */
enum { PIPPY_IL_F, PIPPY_IL_BW, PIPPY_IL_B, PIPPY_IL_W };

/* The k-th forward (the other kinds: backward) of interleaved rank r, with its sends: F, B and W, B
 * alone, or W alone. */
static void pippy_interleaved_put(const pippy_plan *p, pippy_list *l, int32_t r, int32_t k, int what)
{
    int32_t c, m;
    pippy_interleaved_at(k, p->n_ranks, p->n_stages / p->n_ranks, what != PIPPY_IL_F, &c, &m);
    pippy_list_stage(p, l, c * p->n_ranks + r);
    if (what == PIPPY_IL_F)
        pippy_forward(l, m);
    else if (what == PIPPY_IL_BW)
        pippy_backward(l, m);
    else if (what == PIPPY_IL_B)
        pippy_backward_input(l, m);
    else
        pippy_put(l, PIPPY_ACT_W, m, -1);
}

/* interleaved-1f1b (the looping placement of Megatron-LM / torch.distributed.pipelining): rank r
 * holds the v = S/R stages r, r+R, ...; after posting every receive it runs
 * min(M*v, 2(R-1-r) + (v-1)R) forwards, then alternates one forward and one backward, then drains
 * the backwards. v = 1 is 1f1b with a longer warm-up; the compile uses 1f1b's builder then.
 * zb (zb-h1 with several stages per rank): the same forwards and B's, rank r's W's deferred by r
 * backwards, as zb-h1 defers stage s's by s; with equal stages each rank idles (R-1)(tf+tb-tw)
 * instead of (R-1)(tf+tb), holding as many microbatches per stage. */
static pippy_status pippy_rank_actions_interleaved(pippy_plan *p, int32_t r, int zb)
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
        pippy_interleaved_put(p, &l, r, nf++, PIPPY_IL_F);
    int32_t nw = 0; /* zb-h1: rank r runs the W of its k-th backward after its (k+r)-th B */
    while (p->training && nb < total) {
        if (nf < total)
            pippy_interleaved_put(p, &l, r, nf++, PIPPY_IL_F);
        pippy_interleaved_put(p, &l, r, nb++, zb ? PIPPY_IL_B : PIPPY_IL_BW);
        if (zb && nb - nw > r)
            pippy_interleaved_put(p, &l, r, nw++, PIPPY_IL_W);
    }
    while (zb && nw < total)
        pippy_interleaved_put(p, &l, r, nw++, PIPPY_IL_W);
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

/* The reductions as the checker sees them: per reduction, its member stages, transmit and data
 * parallel flags, and bytes. */
typedef struct {
    int32_t *n, *tx, *dp;
    const int32_t **st;
    double *bytes;
} pippy_sched_reds;

static pippy_status pippy_sched_reds_alloc(pippy_sched_reds *d, int32_t n)
{
    size_t k = (size_t)n + 1;
    *d = (pippy_sched_reds){calloc(k, sizeof *d->n), calloc(k, sizeof *d->tx), calloc(k, sizeof *d->dp),
                            calloc(k, sizeof *d->st), calloc(k, sizeof *d->bytes)};
    return d->n && d->tx && d->dp && d->st && d->bytes ? PIPPY_OK : PIPPY_ERR_NOMEM;
}

static void pippy_sched_reds_free(pippy_sched_reds *d)
{
    free(d->n), free(d->tx), free(d->dp), free(d->st), free(d->bytes);
}

/* The plan as the checker sees it (arrays owned by the caller). */
static pippy_status pippy_sched_of(const pippy_plan *p, pippy_sched *sc, double *stage_s, double *optimizer_s,
                                   int32_t *stage_rank, pippy_sched_edge *edges, pippy_sched_reds *rd)
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
        optimizer_s[s] = p->training ? p->stages[s].pred_optimizer_ms * 1e-3 : 0;
    }
    for (int32_t e = 0; e < p->n_edges; e++)
        edges[e] = (pippy_sched_edge){p->edges[e].producer, p->edges[e].phase, p->edges[e].n_consumers,
                                      p->edges[e].consumers, p->edges[e].bytes};
    for (int32_t id = 0; id < p->n_reductions; id++) {
        rd->n[id] = p->reductions[id].n_stages;
        rd->st[id] = p->reductions[id].stages;
        rd->tx[id] = p->reductions[id].transmit;
        rd->dp[id] = p->reductions[id].data_parallel;
        rd->bytes[id] = (double)pippy_reduction_bytes(p, id);
    }
    sc->stage_rank = stage_rank;
    sc->n_edges = p->n_edges;
    sc->edges = edges;
    sc->n_reductions = p->n_reductions;
    sc->reduction_n = rd->n;
    sc->reduction_stages = rd->st;
    sc->reduction_transmit = rd->tx;
    sc->reduction_dp = rd->dp;
    sc->reduction_bytes = rd->bytes;
    sc->replicas = p->dp;
    sc->n_actions = p->n_actions;
    sc->actions = (const pippy_action *const *)p->actions;
    sc->stage_s = stage_s;
    sc->optimizer_s = optimizer_s;
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
    double *optimizer_s = calloc((size_t)S, sizeof *optimizer_s);
    int32_t *stage_rank = calloc((size_t)S, sizeof *stage_rank), *in_flight = calloc((size_t)S, sizeof *in_flight);
    pippy_sched_edge *edges = calloc((size_t)p->n_edges + 1, sizeof *edges);
    pippy_sched_reds rd;
    int reds_ok = pippy_sched_reds_alloc(&rd, p->n_reductions) == PIPPY_OK;
    p->pred_idle_ms = calloc((size_t)R, sizeof *p->pred_idle_ms);
    pippy_status st = PIPPY_OK;
    if (!stage_s || !optimizer_s || !busy || !stage_rank || !in_flight || !edges || !reds_ok || !p->pred_idle_ms)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory predicting the schedule");
    pippy_sched sc;
    pippy_sched_result res = {.busy_s = busy, .idle_s = p->pred_idle_ms, .in_flight = in_flight};
    if (st == PIPPY_OK)
        st = pippy_sched_of(p, &sc, stage_s, optimizer_s, stage_rank, edges, &rd);
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
    free(stage_s), free(optimizer_s), free(busy), free(stage_rank), free(in_flight), free(edges);
    pippy_sched_reds_free(&rd);
    return st;
}

/* The kind named `name`, or -1. */
static int pippy_sched_kind(const char *name)
{
    for (int k = 0; k < PIPPY_SCHED_KINDS; k++)
        if (!strcmp(name, pippy_sched_kinds[k].name))
            return k;
    return -1;
}

/* --schedule dynamic: the window, and the kind whose list is the canonical order (interleaved when
 * a rank runs several stages, 1f1b in training, gpipe at inference). Other kinds build themselves. */
static pippy_status pippy_schedule_dynamic(pippy_plan *p, int *kind)
{
    if (*kind != PIPPY_SCHED_DYNAMIC && p->window > 0)
        return pippy_fail(PIPPY_ERR_USAGE, "--window %d applies to --schedule dynamic (this is --schedule %s)",
                          p->window, p->schedule);
    if (*kind != PIPPY_SCHED_DYNAMIC)
        return PIPPY_OK;
    if (p->window <= 0)
        p->window = p->n_stages;
    *kind = p->n_ranks > 0 && p->n_ranks < p->n_stages ? PIPPY_SCHED_INTERLEAVED
            : p->training                              ? PIPPY_SCHED_1F1B
                                                       : PIPPY_SCHED_GPIPE;
    return PIPPY_OK;
}

pippy_status pippy_schedule_build(pippy_plan *p)
{
    int kind = pippy_sched_kind(p->schedule);
    if (kind < 0)
        return pippy_fail(PIPPY_ERR_USAGE, "--schedule %s: known schedules are gpipe, 1f1b, zb-h1, interleaved-1f1b, "
                                           "dynamic and auto", p->schedule);
    if (pippy_sched_kinds[kind].training_only && !p->training)
        return pippy_fail(PIPPY_ERR_USAGE, "--schedule %s needs --train (inference runs gpipe: there is no backward "
                                           "to interleave)", p->schedule);
    PIPPY_TRY(pippy_schedule_dynamic(p, &kind));
    if (p->n_ranks <= 0)
        p->n_ranks = p->n_stages;
    p->actions = calloc((size_t)p->n_ranks, sizeof *p->actions);
    p->n_actions = calloc((size_t)p->n_ranks, sizeof *p->n_actions);
    if (!p->actions || !p->n_actions)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
    if ((kind == PIPPY_SCHED_INTERLEAVED || kind == PIPPY_SCHED_ZBH1) && p->n_ranks < p->n_stages) {
        for (int32_t r = 0; r < p->n_ranks; r++)
            PIPPY_TRY(pippy_rank_actions_interleaved(p, r, kind == PIPPY_SCHED_ZBH1));
    } else { /* interleaved-1f1b with a stage per rank is 1f1b */
        for (int32_t s = 0; s < p->n_stages; s++)
            PIPPY_TRY(pippy_stage_actions(p, s, kind == PIPPY_SCHED_INTERLEAVED ? PIPPY_SCHED_1F1B : kind));
    }
    return pippy_schedule_predict(p);
}

/* ---- --schedule auto and --memory-per-rank ---------------------------------------------------- */

/* Drops a built schedule (actions, prediction), so another can be built into p. */
static void pippy_schedule_clear(pippy_plan *p)
{
    for (int32_t r = 0; p->actions && r < p->n_ranks; r++)
        free(p->actions[r]);
    free(p->actions);
    free(p->n_actions);
    free(p->pred_idle_ms);
    p->actions = NULL;
    p->n_actions = NULL;
    p->pred_idle_ms = NULL;
}

double pippy_schedule_rank_bytes(const pippy_plan *p, int32_t r, int32_t optimizer_state)
{
    double bytes = 0;
    for (int32_t s = 0; s < p->n_stages; s++)
        if (p->stages[s].rank == r)
            bytes += pippy_stage_peak_bytes(p, s, optimizer_state);
    return bytes;
}

/* Builds schedule `kind` into p and records it as candidate c. */
static pippy_status pippy_schedule_try(pippy_plan *p, int kind, const pippy_schedule_opts *o,
                                       pippy_schedule_candidate *c)
{
    pippy_schedule_clear(p);
    snprintf(p->schedule, sizeof p->schedule, "%s", pippy_sched_kinds[kind].name);
    PIPPY_TRY(pippy_schedule_build(p));
    *c = (pippy_schedule_candidate){pippy_sched_kinds[kind].name, p->pred_step_ms, p->pred_bubble, 0, 0, 1};
    for (int32_t r = 0; r < p->n_ranks; r++) {
        double b = pippy_schedule_rank_bytes(p, r, o->optimizer_state);
        if (b > c->peak_bytes)
            c->peak_bytes = b, c->peak_rank = r;
    }
    c->fits = !o->memory_per_rank || c->peak_bytes <= (double)o->memory_per_rank;
    return PIPPY_OK;
}

/* Whether candidate a beats b: faster (beyond rounding), else equally fast and smaller. */
static int pippy_schedule_better(const pippy_schedule_candidate *a, const pippy_schedule_candidate *b)
{
    double tol = 1e-9 * (a->step_ms > b->step_ms ? a->step_ms : b->step_ms);
    if (a->step_ms < b->step_ms - tol)
        return 1;
    return a->step_ms <= b->step_ms + tol && a->peak_bytes < b->peak_bytes;
}

/* Nothing fits: the error names each candidate's peak and the smallest. */
static pippy_status pippy_schedule_too_big(const pippy_schedule_report *rep, int32_t training)
{
    double lim = (double)rep->limit / 1048576.0;
    if (!rep->automatic)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "--schedule %s: rank %d would need %.0f bytes (%.2f MiB) at its peak, more than "
                          "--memory-per-rank %llu (%.2f MiB)%s",
                          rep->c[0].name, rep->c[0].peak_rank, rep->c[0].peak_bytes, rep->c[0].peak_bytes / 1048576.0,
                          (unsigned long long)rep->limit, lim,
                          training ? "; --schedule auto tries the other schedules" : "");
    char list[512];
    size_t n = 0;
    int32_t small = 0;
    for (int32_t i = 0; i < rep->n; i++) {
        if (rep->c[i].peak_bytes < rep->c[small].peak_bytes)
            small = i;
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s %.2f MiB (rank %d)", i ? ", " : "", rep->c[i].name,
                              rep->c[i].peak_bytes / 1048576.0, rep->c[i].peak_rank);
        if (n >= sizeof list)
            n = sizeof list - 1;
    }
    return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                      "--schedule auto: no schedule fits in --memory-per-rank %llu (%.2f MiB); predicted peak memory "
                      "per rank: %s; the smallest is %s's, %.0f bytes (%.2f MiB): raise the limit, or use more "
                      "stages or microbatches",
                      (unsigned long long)rep->limit, lim, list, rep->c[small].name, rep->c[small].peak_bytes,
                      rep->c[small].peak_bytes / 1048576.0);
}

pippy_status pippy_schedule_choose(pippy_plan *p, const pippy_schedule_opts *o, pippy_schedule_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->automatic = !strcmp(o->name, "auto");
    rep->limit = o->memory_per_rank;
    rep->chosen = -1;
    for (int kind = 0; kind < PIPPY_SCHED_KINDS; kind++) {
        /* auto: with several stages per rank interleaved-1f1b and zb-h1 apply, else all but
         * interleaved-1f1b (which would be 1f1b) */
        int several = p->n_ranks > 0 && p->n_ranks < p->n_stages;
        int fits_ranks = several ? kind == PIPPY_SCHED_INTERLEAVED || kind == PIPPY_SCHED_ZBH1
                                 : kind != PIPPY_SCHED_INTERLEAVED;
        if (rep->automatic ? (pippy_sched_kinds[kind].training_only && !p->training) || !fits_ranks ||
                                 kind == PIPPY_SCHED_DYNAMIC /* its order is the run's, not predicted */
                           : strcmp(o->name, pippy_sched_kinds[kind].name) != 0)
            continue;
        pippy_schedule_candidate *c = &rep->c[rep->n++];
        PIPPY_TRY(pippy_schedule_try(p, kind, o, c));
        if (c->fits && (rep->chosen < 0 || pippy_schedule_better(c, &rep->c[rep->chosen])))
            rep->chosen = rep->n - 1;
    }
    if (!rep->n) {
        snprintf(p->schedule, sizeof p->schedule, "%.31s", o->name);
        return pippy_schedule_build(p); /* refuses the unknown name */
    }
    if (rep->chosen < 0)
        return pippy_schedule_too_big(rep, p->training);
    if (rep->chosen == rep->n - 1)
        return PIPPY_OK; /* the last one built is in p */
    pippy_schedule_candidate again;
    return pippy_schedule_try(p, pippy_sched_kind(rep->c[rep->chosen].name), o, &again);
}

void pippy_schedule_report_print(FILE *f, const pippy_schedule_report *rep)
{
    if (rep->chosen < 0 || (!rep->automatic && !rep->limit))
        return;
    const pippy_schedule_candidate *w = &rep->c[rep->chosen];
    char lim[64] = "";
    if (rep->limit)
        snprintf(lim, sizeof lim, " in --memory-per-rank %.2f MiB", (double)rep->limit / 1048576.0);
    if (!rep->automatic) {
        fprintf(f, "  schedule %s: predicted peak memory %.2f MiB (rank %d) fits%s\n", w->name,
                w->peak_bytes / 1048576.0, w->peak_rank, lim);
        return;
    }
    fprintf(f, "  schedule auto: chose %s, the fastest predicted step%s%s; predicted step / peak memory per rank:",
            w->name, rep->limit ? " that fits" : "", lim);
    for (int32_t i = 0; i < rep->n; i++)
        fprintf(f, "%s %s %.3f ms / %.2f MiB%s", i ? "," : "", rep->c[i].name, rep->c[i].step_ms,
                rep->c[i].peak_bytes / 1048576.0, rep->c[i].fits ? "" : " (too big)");
    fprintf(f, "\n");
}
