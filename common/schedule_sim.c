/* schedule_sim.c — see schedule_sim.h. */
#include "schedule_sim.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schedule_dyn.h"

typedef struct {
    const pippy_sched *s;
    int32_t S, M, R;
    int32_t *pair;      /* [phase * S * S + from * S + to]: pair index, -1: no values move there */
    int32_t n_pairs;
    int32_t *pair_from, *pair_to, *pair_phase;
    uint64_t *pair_bytes;
    int32_t *n_sent, *n_recv; /* [pair * M + mb] */
    int32_t *done;      /* [(stage * M + mb) * PIPPY_PHASES + phase]: 1 once that computation is listed */
    int32_t *n_reduce;  /* [(kind * n_reductions + reduction) * S + stage], kind 0 ALLREDUCE, 1 REDUCE,
                           2 BROADCAST */
    double *sent_t;     /* [pair * M + mb]: when the send ran in the replay, < 0 before */
} pippy_ss;

static pippy_status pippy_ss_fail(int32_t rank, int32_t k, const pippy_action *a, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static pippy_status pippy_ss_fail(int32_t rank, int32_t k, const pippy_action *a, const char *fmt, ...)
{
    char rule[512], act[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof rule, fmt, ap);
    va_end(ap);
    return pippy_fail(PIPPY_ERR_INVALID, "schedule: rank %d, action %d %s: %s", rank, k, pippy_act_str(a, act, sizeof act),
                      rule);
}

static void pippy_ss_free(pippy_ss *x)
{
    free(x->pair), free(x->pair_from), free(x->pair_to), free(x->pair_phase), free(x->pair_bytes);
    free(x->n_sent), free(x->n_recv), free(x->done), free(x->n_reduce), free(x->sent_t);
}

static pippy_status pippy_ss_init(pippy_ss *x, const pippy_sched *s)
{
    memset(x, 0, sizeof *x);
    x->s = s;
    x->S = s->n_stages, x->M = s->microbatches, x->R = s->n_ranks;
    if (x->S < 1 || x->M < 1 || x->R < 1 || s->n_edges < 0 || s->n_reductions < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "schedule: %d stages, %d ranks, %d microbatches, %d edges, %d reductions",
                          x->S, x->R, x->M, s->n_edges, s->n_reductions);
    for (int32_t st = 0; st < x->S; st++)
        if (s->stage_rank[st] < 0 || s->stage_rank[st] >= x->R)
            return pippy_fail(PIPPY_ERR_INVALID, "schedule: stage %d runs on rank %d, outside 0..%d", st,
                              s->stage_rank[st], x->R - 1);
    size_t SS = (size_t)x->S * (size_t)x->S, maxp = 2 * SS;
    x->pair = malloc(maxp * sizeof *x->pair);
    x->pair_from = malloc(maxp * sizeof *x->pair_from);
    x->pair_to = malloc(maxp * sizeof *x->pair_to);
    x->pair_phase = malloc(maxp * sizeof *x->pair_phase);
    x->pair_bytes = calloc(maxp, sizeof *x->pair_bytes);
    x->done = calloc((size_t)x->S * (size_t)x->M * PIPPY_PHASES, sizeof *x->done);
    x->n_reduce = calloc((size_t)(3 * s->n_reductions + 1) * (size_t)x->S, sizeof *x->n_reduce);
    if (!x->pair || !x->pair_from || !x->pair_to || !x->pair_phase || !x->pair_bytes || !x->done || !x->n_reduce)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory checking the schedule");
    for (size_t i = 0; i < maxp; i++)
        x->pair[i] = -1;
    for (int32_t e = 0; e < s->n_edges; e++) {
        const pippy_sched_edge *ed = &s->edges[e];
        if (ed->producer < 0 || ed->producer >= x->S || (ed->phase != PIPPY_PHASE_F && ed->phase != PIPPY_PHASE_B))
            return pippy_fail(PIPPY_ERR_INVALID, "schedule: edge %d: producer stage %d / phase %d out of range", e,
                              ed->producer, ed->phase);
        for (int32_t c = 0; c < ed->n_consumers; c++) {
            int32_t to = ed->consumers[c];
            if (to < 0 || to >= x->S || to == ed->producer)
                return pippy_fail(PIPPY_ERR_INVALID, "schedule: edge %d goes from stage %d to stage %d", e,
                                  ed->producer, to);
            size_t k = (size_t)ed->phase * SS + (size_t)ed->producer * (size_t)x->S + (size_t)to;
            if (x->pair[k] < 0) {
                x->pair[k] = x->n_pairs;
                x->pair_from[x->n_pairs] = ed->producer;
                x->pair_to[x->n_pairs] = to;
                x->pair_phase[x->n_pairs] = ed->phase;
                x->n_pairs++;
            }
            x->pair_bytes[x->pair[k]] += ed->bytes;
        }
    }
    size_t PM = (size_t)(x->n_pairs ? x->n_pairs : 1) * (size_t)x->M;
    x->n_sent = calloc(PM, sizeof *x->n_sent);
    x->n_recv = calloc(PM, sizeof *x->n_recv);
    x->sent_t = malloc(PM * sizeof *x->sent_t);
    if (!x->n_sent || !x->n_recv || !x->sent_t)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory checking the schedule");
    for (size_t i = 0; i < PM; i++)
        x->sent_t[i] = -1;
    return PIPPY_OK;
}

static int32_t pippy_ss_pair(const pippy_ss *x, int32_t phase, int32_t from, int32_t to)
{
    if (phase < 0 || phase > 1 || from < 0 || from >= x->S || to < 0 || to >= x->S)
        return -1;
    return x->pair[(size_t)phase * x->S * x->S + (size_t)from * x->S + to];
}

static int32_t *pippy_ss_done(pippy_ss *x, int32_t stage, int32_t mb, int32_t phase)
{
    return &x->done[((size_t)stage * x->M + (size_t)mb) * PIPPY_PHASES + (size_t)phase];
}

static int pippy_ss_member(const pippy_sched *s, int32_t id, int32_t stage)
{
    for (int32_t i = 0; i < s->reduction_n[id]; i++)
        if (s->reduction_stages[id][i] == stage)
            return 1;
    return 0;
}

/* 0 ALLREDUCE, 1 REDUCE, 2 BROADCAST. */
static int32_t pippy_ss_ckind(int32_t kind)
{
    return kind == PIPPY_ACT_ALLREDUCE ? 0 : kind == PIPPY_ACT_REDUCE ? 1 : 2;
}

/* One action, checked where it stands in its rank's list. */
static pippy_status pippy_ss_action(pippy_ss *x, int32_t r, int32_t k, const pippy_action *a)
{
    const pippy_sched *s = x->s;
    const pippy_act_info *info = pippy_act_info_of(a->kind);
    if (!info)
        return pippy_ss_fail(r, k, a, "not an action");
    if (info->training && !s->training)
        return pippy_ss_fail(r, k, a, "an inference schedule has only F, SEND_F and RECV_F");
    if (a->kind == PIPPY_ACT_STEP)
        return k == s->n_actions[r] - 1 ? PIPPY_OK : pippy_ss_fail(r, k, a, "STEP must be the rank's last action");
    if (a->stage < 0 || a->stage >= x->S || s->stage_rank[a->stage] != r)
        return pippy_ss_fail(r, k, a, "stage %d does not run on rank %d", a->stage, r);
    if (info->has_mb && (a->mb < 0 || a->mb >= x->M))
        return pippy_ss_fail(r, k, a, "microbatch %d is outside 0..%d", a->mb, x->M - 1);
    if (info->compute) {
        int32_t *d = pippy_ss_done(x, a->stage, a->mb, info->phase);
        if (*d)
            return pippy_ss_fail(r, k, a, "it runs twice");
        if (info->phase > 0 && !*pippy_ss_done(x, a->stage, a->mb, info->phase - 1))
            return pippy_ss_fail(r, k, a, "%s of this microbatch must come first",
                                 info->phase == PIPPY_PHASE_B ? "F" : "B");
        *d = 1;
        return PIPPY_OK;
    }
    if (info->transfer) {
        int send = info->transfer > 0;
        int32_t p = send ? pippy_ss_pair(x, info->phase, a->stage, a->peer) : pippy_ss_pair(x, info->phase, a->peer, a->stage);
        if (p < 0)
            return pippy_ss_fail(r, k, a, "stage %d %s stage %d no %s", a->stage, send ? "sends" : "receives from",
                                 a->peer, info->phase == PIPPY_PHASE_F ? "activations" : "gradients");
        int32_t *cnt = send ? &x->n_sent[(size_t)p * x->M + a->mb] : &x->n_recv[(size_t)p * x->M + a->mb];
        if (++*cnt > 1)
            return pippy_ss_fail(r, k, a, "it appears twice");
        int made = *pippy_ss_done(x, a->stage, a->mb, info->phase);
        if (send && !made)
            return pippy_ss_fail(r, k, a, "a send must follow the %s that makes its data", info->phase ? "B" : "F");
        if (!send && made)
            return pippy_ss_fail(r, k, a, "a receive must be posted before the %s that needs its data",
                                 info->phase ? "B" : "F");
        return PIPPY_OK;
    }
    /* ALLREDUCE, REDUCE, BROADCAST */
    if (a->peer < 0 || a->peer >= s->n_reductions || !pippy_ss_member(s, a->peer, a->stage))
        return pippy_ss_fail(r, k, a, "stage %d is not a member of reduction %d", a->stage, a->peer);
    int transmit = s->reduction_transmit && s->reduction_transmit[a->peer];
    if ((a->kind == PIPPY_ACT_ALLREDUCE) == transmit)
        return pippy_ss_fail(r, k, a, "reduction %d %s its parameter: it takes %s", a->peer,
                             transmit ? "transmits" : "replicates", transmit ? "REDUCE and BROADCAST" : "ALLREDUCE");
    for (int32_t m = 0; m < x->M; m++) {
        if (a->kind != PIPPY_ACT_BROADCAST && !*pippy_ss_done(x, a->stage, m, PIPPY_PHASE_W))
            return pippy_ss_fail(r, k, a, "W(stage %d, mb %d) must come first: the gradients are not complete",
                                 a->stage, m);
        if (a->kind == PIPPY_ACT_BROADCAST && *pippy_ss_done(x, a->stage, m, PIPPY_PHASE_F))
            return pippy_ss_fail(r, k, a, "it must come before F(stage %d, mb %d), which reads the parameter",
                                 a->stage, m);
    }
    int32_t kind = pippy_ss_ckind(a->kind);
    if (++x->n_reduce[((size_t)kind * s->n_reductions + (size_t)a->peer) * x->S + a->stage] > 1)
        return pippy_ss_fail(r, k, a, "it appears twice");
    return PIPPY_OK;
}

/* What must appear at least once: computations, both ends of every transfer, reductions, STEP. */
static pippy_status pippy_ss_complete(pippy_ss *x)
{
    const pippy_sched *s = x->s;
    static const char *const names[PIPPY_PHASES] = {"F", "B", "W"};
    for (int32_t st = 0; st < x->S; st++)
        for (int32_t m = 0; m < x->M; m++)
            for (int32_t ph = 0; ph < (s->training ? PIPPY_PHASES : 1); ph++)
                if (!*pippy_ss_done(x, st, m, ph))
                    return pippy_fail(PIPPY_ERR_INVALID, "schedule: rank %d never runs %s(stage %d, mb %d)",
                                      s->stage_rank[st], names[ph], st, m);
    for (int32_t p = 0; p < x->n_pairs; p++)
        for (int32_t m = 0; m < x->M; m++) {
            int32_t from = x->pair_from[p], to = x->pair_to[p], ph = x->pair_phase[p];
            if (!x->n_sent[(size_t)p * x->M + m])
                return pippy_fail(PIPPY_ERR_INVALID, "schedule: rank %d never runs SEND_%s(stage %d, mb %d -> stage %d)",
                                  s->stage_rank[from], names[ph], from, m, to);
            if (!x->n_recv[(size_t)p * x->M + m])
                return pippy_fail(PIPPY_ERR_INVALID,
                                  "schedule: rank %d never runs RECV_%s(stage %d, mb %d <- stage %d): the data would "
                                  "never be received",
                                  s->stage_rank[to], names[ph], to, m, from);
        }
    static const char *const kinds[3] = {"ALLREDUCE", "REDUCE", "BROADCAST"};
    for (int32_t id = 0; id < s->n_reductions; id++)
        for (int32_t i = 0; i < s->reduction_n[id]; i++) {
            int32_t st = s->reduction_stages[id][i];
            int transmit = s->reduction_transmit && s->reduction_transmit[id];
            for (int32_t kind = transmit ? 1 : 0; kind < (transmit ? 3 : 1); kind++)
                if (st < 0 || st >= x->S || !x->n_reduce[((size_t)kind * s->n_reductions + (size_t)id) * x->S + st])
                    return pippy_fail(PIPPY_ERR_INVALID, "schedule: stage %d never runs %s of reduction %d", st,
                                      kinds[kind], id);
        }
    for (int32_t r = 0; r < x->R && s->training; r++)
        if (!s->n_actions[r] || s->actions[r][s->n_actions[r] - 1].kind != PIPPY_ACT_STEP)
            return pippy_fail(PIPPY_ERR_INVALID, "schedule: rank %d has no STEP at the end of its actions", r);
    return PIPPY_OK;
}

/* Microbatches each stage holds (from F to its last backward action), in list order. */
static pippy_status pippy_ss_in_flight(pippy_ss *x, int32_t *in_flight)
{
    const pippy_sched *s = x->s;
    int32_t *now = calloc((size_t)x->S, sizeof *now);
    if (!now)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    pippy_status st = PIPPY_OK;
    for (int32_t r = 0; r < x->R && st == PIPPY_OK; r++)
        for (int32_t k = 0; k < s->n_actions[r] && st == PIPPY_OK; k++) {
            const pippy_action *a = &s->actions[r][k];
            int end = s->training ? PIPPY_ACT_W : PIPPY_ACT_F;
            if (a->kind == PIPPY_ACT_F) {
                now[a->stage]++;
                if (now[a->stage] > in_flight[a->stage])
                    in_flight[a->stage] = now[a->stage];
                if (s->stash_slots && now[a->stage] > s->stash_slots[a->stage])
                    st = pippy_ss_fail(r, k, a,
                                       "stage %d would hold %d microbatches at once; its program keeps at most %d "
                                       "(recompile with this schedule)",
                                       a->stage, now[a->stage], s->stash_slots[a->stage]);
            }
            if (a->kind == end)
                now[a->stage]--;
        }
    free(now);
    return st;
}

/* When the data of pair p sent at time sent arrives. */
static double pippy_ss_arrival(const pippy_ss *x, int32_t p, double sent)
{
    double bw = x->s->link_bytes_per_s > 0 ? x->s->link_bytes_per_s : 1e300;
    return sent + x->s->link_latency_s + (double)x->pair_bytes[p] / bw;
}

/* When the data that action a waits for is there (-1: not yet sent in the replay). */
static double pippy_ss_ready(pippy_ss *x, const pippy_action *a, int32_t *waits_pair)
{
    int32_t ph = a->kind == PIPPY_ACT_F ? PIPPY_PHASE_F : a->kind == PIPPY_ACT_B ? PIPPY_PHASE_B : -1;
    double t = 0;
    if (ph < 0)
        return 0;
    for (int32_t p = 0; p < x->n_pairs; p++) {
        if (x->pair_phase[p] != ph || x->pair_to[p] != a->stage)
            continue;
        double sent = x->sent_t[(size_t)p * x->M + a->mb];
        if (sent < 0) {
            *waits_pair = p;
            return -1;
        }
        double arr = pippy_ss_arrival(x, p, sent);
        if (arr > t)
            t = arr;
    }
    return t;
}

static double pippy_ss_cost(const pippy_sched *s, const pippy_action *a)
{
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    return s->stage_s && i->compute ? s->stage_s[(size_t)a->stage * PIPPY_PHASES + (size_t)i->phase] : 0;
}

/* The processes that exchange in reduction id: the replicas, or the ranks of its member stages. */
static int32_t pippy_ss_procs(const pippy_sched *s, int32_t id)
{
    if (s->reduction_dp && s->reduction_dp[id])
        return s->replicas > 1 ? s->replicas : 1;
    int32_t n = 0;
    for (int32_t i = 0; i < s->reduction_n[id]; i++) {
        int32_t r = s->stage_rank[s->reduction_stages[id][i]], seen = 0;
        for (int32_t j = 0; j < i; j++)
            seen |= s->stage_rank[s->reduction_stages[id][j]] == r;
        n += !seen;
    }
    return n;
}

double pippy_sched_collective_s(const pippy_sched *s, const pippy_action *a)
{
    if (a->kind == PIPPY_ACT_STEP || !s->reduction_bytes || a->peer < 0 || a->peer >= s->n_reductions)
        return s->collective_s;
    double n = pippy_ss_procs(s, a->peer), bytes = s->reduction_bytes[a->peer], lat = s->link_latency_s;
    double bw = s->link_bytes_per_s > 0 ? s->link_bytes_per_s : 1e300;
    if (n <= 1 || bytes <= 0)
        return s->collective_s;
    if (a->kind == PIPPY_ACT_ALLREDUCE)
        return s->collective_s + 2 * (n - 1) * (lat + bytes / n / bw);
    return s->collective_s + (n - 1) * lat + bytes / bw;
}

double pippy_sched_optimizer_s(const pippy_sched *s, int32_t r)
{
    double t = 0;
    for (int32_t st = 0; s->optimizer_s && st < s->n_stages; st++)
        t += s->stage_rank[st] == r ? s->optimizer_s[st] : 0;
    return t;
}

/* What rank r computes after the collective a: its stages' optimizer steps after STEP. */
static double pippy_ss_after_s(const pippy_sched *s, int32_t r, const pippy_action *a)
{
    return a->kind == PIPPY_ACT_STEP ? pippy_sched_optimizer_s(s, r) : 0;
}

/* Which collective an action joins: (kind, reduction) as one number; STEP is the last one. */
static int32_t pippy_ss_key(const pippy_sched *s, const pippy_action *a)
{
    if (a->kind == PIPPY_ACT_STEP)
        return 3 * s->n_reductions;
    return pippy_ss_ckind(a->kind) * s->n_reductions + a->peer;
}

/* The last action index on rank r that joins collective key. */
static int32_t pippy_ss_last_reduce(const pippy_sched *s, int32_t r, int32_t key)
{
    int32_t last = -1;
    for (int32_t k = 0; k < s->n_actions[r]; k++)
        if (pippy_act_info_of(s->actions[r][k].kind)->collective && pippy_ss_key(s, &s->actions[r][k]) == key)
            last = k;
    return last;
}

typedef struct {
    int32_t *pos;      /* per rank: the next action; <= -2: parked at action -pos-2 (a collective) */
    double *clock, *busy;
    int32_t *arrived;  /* per collective key: members arrived (stages; ranks for STEP) */
    double *arrive_t;
    pippy_sched_span *const *spans; /* the caller's, or NULL */
} pippy_replay;

static void pippy_ss_span(pippy_replay *y, int32_t r, int32_t k, double start, double end)
{
    if (y->spans && y->spans[r])
        y->spans[r][k] = (pippy_sched_span){start, end};
}

/* Rank r arrives at the collective of its next action: an earlier local member of a reduction
 * contributes and goes on; the last one waits, parked, until every member is there, when all
 * parked at it go on together. */
static void pippy_ss_collective(pippy_ss *x, pippy_replay *y, int32_t r, const pippy_action *a)
{
    const pippy_sched *s = x->s;
    int32_t id = pippy_ss_key(s, a);
    int32_t need = a->kind == PIPPY_ACT_STEP ? x->R : s->reduction_n[a->peer], p = y->pos[r];
    y->arrived[id]++;
    if (y->clock[r] > y->arrive_t[id])
        y->arrive_t[id] = y->clock[r];
    if (a->kind != PIPPY_ACT_STEP && p != pippy_ss_last_reduce(s, r, id)) {
        pippy_ss_span(y, r, p, y->clock[r], y->clock[r]);
        y->pos[r]++;
        return;
    }
    y->pos[r] = -p - 2;
    if (y->arrived[id] < need)
        return;
    double t = y->arrive_t[id] + pippy_sched_collective_s(s, a);
    for (int32_t q = 0; q < x->R; q++) {
        int32_t at = y->pos[q] <= -2 ? -y->pos[q] - 2 : -1;
        if (at < 0 || pippy_ss_key(s, &s->actions[q][at]) != id)
            continue;
        double opt = pippy_ss_after_s(s, q, a);
        pippy_ss_span(y, q, at, y->arrive_t[id], t + opt);
        y->clock[q] = t + opt;
        y->busy[q] += opt;
        y->pos[q] = at + 1;
    }
}

static pippy_status pippy_ss_deadlock(pippy_ss *x, pippy_replay *y)
{
    const pippy_sched *s = x->s;
    char msg[2048], act[96];
    size_t n = (size_t)snprintf(msg, sizeof msg, "schedule: the action lists deadlock:");
    for (int32_t r = 0; r < x->R && n < sizeof msg - 200; r++) {
        int32_t p = y->pos[r] <= -2 ? -y->pos[r] - 2 : y->pos[r];
        if (p >= s->n_actions[r])
            continue;
        const pippy_action *a = &s->actions[r][p];
        int32_t wp = -1;
        pippy_ss_ready(x, a, &wp);
        n += (size_t)snprintf(msg + n, sizeof msg - n, " rank %d waits at action %d %s", r, p,
                              pippy_act_str(a, act, sizeof act));
        if (wp >= 0)
            n += (size_t)snprintf(msg + n, sizeof msg - n, " for the %s of mb %d from stage %d (rank %d);",
                                  x->pair_phase[wp] ? "gradients" : "activations", a->mb, x->pair_from[wp],
                                  s->stage_rank[x->pair_from[wp]]);
        else
            n += (size_t)snprintf(msg + n, sizeof msg - n, " for the other members;");
    }
    return pippy_fail(PIPPY_ERR_INVALID, "%s", msg);
}

/* A receive's span ends when its data arrives (known once every send has run). */
static void pippy_ss_recv_spans(pippy_ss *x, pippy_replay *y)
{
    const pippy_sched *s = x->s;
    for (int32_t r = 0; y->spans && r < x->R; r++)
        for (int32_t k = 0; y->spans[r] && k < s->n_actions[r]; k++) {
            const pippy_action *a = &s->actions[r][k];
            const pippy_act_info *i = pippy_act_info_of(a->kind);
            if (i->transfer >= 0)
                continue;
            int32_t p = pippy_ss_pair(x, i->phase, a->peer, a->stage);
            double arr = pippy_ss_arrival(x, p, x->sent_t[(size_t)p * x->M + a->mb]);
            if (arr > y->spans[r][k].end_s)
                y->spans[r][k].end_s = arr;
        }
}

/* Step, bubble, busy and idle time of a finished replay into res (may be NULL). */
static void pippy_ss_results(const pippy_ss *x, const pippy_replay *y, pippy_sched_result *res)
{
    double step = 0, busy = 0;
    for (int32_t r = 0; r < x->R; r++) {
        if (y->clock[r] > step)
            step = y->clock[r];
        busy += y->busy[r];
    }
    if (!res)
        return;
    res->step_s = step;
    res->bubble = step > 0 ? 1.0 - busy / (x->R * step) : 0;
    for (int32_t r = 0; r < x->R; r++) {
        if (res->busy_s)
            res->busy_s[r] = y->busy[r];
        if (res->idle_s)
            res->idle_s[r] = step - y->busy[r];
    }
}

/* Replays the lists: times, busy, and whether every rank gets to the end. */
static pippy_status pippy_ss_replay(pippy_ss *x, pippy_sched_result *res)
{
    const pippy_sched *s = x->s;
    pippy_replay y;
    size_t R = (size_t)(x->R > 0 ? x->R : 1);
    y.pos = calloc(R, sizeof *y.pos);
    y.clock = calloc(R, sizeof *y.clock);
    y.busy = calloc(R, sizeof *y.busy);
    y.arrived = calloc((size_t)3 * (size_t)s->n_reductions + 1, sizeof *y.arrived);
    y.arrive_t = calloc((size_t)3 * (size_t)s->n_reductions + 1, sizeof *y.arrive_t);
    y.spans = res ? res->spans : NULL;
    if (!y.pos || !y.clock || !y.busy || !y.arrived || !y.arrive_t) {
        free(y.pos), free(y.clock), free(y.busy), free(y.arrived), free(y.arrive_t);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory replaying the schedule");
    }
    for (int progress = 1; progress;) {
        progress = 0;
        for (int32_t r = 0; r < x->R; r++)
            while (y.pos[r] >= 0 && y.pos[r] < s->n_actions[r]) {
                const pippy_action *a = &s->actions[r][y.pos[r]];
                if (pippy_act_info_of(a->kind)->collective) {
                    pippy_ss_collective(x, &y, r, a);
                    progress = 1;
                    continue;
                }
                int32_t wp = -1;
                double ready = pippy_ss_ready(x, a, &wp);
                if (ready < 0)
                    break;
                double start = ready > y.clock[r] ? ready : y.clock[r], d = pippy_ss_cost(s, a);
                y.clock[r] = start + d;
                y.busy[r] += d;
                const pippy_act_info *i = pippy_act_info_of(a->kind);
                pippy_ss_span(&y, r, y.pos[r], start, start + d);
                if (i->transfer > 0) {
                    int32_t p = pippy_ss_pair(x, i->phase, a->stage, a->peer);
                    x->sent_t[(size_t)p * x->M + a->mb] = y.clock[r];
                    pippy_ss_span(&y, r, y.pos[r], start, pippy_ss_arrival(x, p, start));
                }
                y.pos[r]++;
                progress = 1;
            }
    }
    pippy_status st = PIPPY_OK;
    for (int32_t r = 0; r < x->R; r++)
        if (y.pos[r] != s->n_actions[r])
            st = PIPPY_ERR_INVALID;
    if (st != PIPPY_OK)
        st = pippy_ss_deadlock(x, &y);
    if (st == PIPPY_OK)
        pippy_ss_recv_spans(x, &y);
    if (st == PIPPY_OK)
        pippy_ss_results(x, &y, res);
    free(y.pos), free(y.clock), free(y.busy), free(y.arrived), free(y.arrive_t);
    return st;
}

/* ---- the dynamic schedule (s->window > 0): the policy of schedule_dyn.h, replayed ---- */

typedef struct {
    pippy_replay y;   /* clock, busy, collectives' arrivals, spans (pos unused) */
    pippy_dyn *d;     /* per rank */
    int32_t *parked;  /* per rank: the collective it waits at, -1 */
    double *fin_t;    /* [stage * M + m]: when the stage finished microbatch m (its last phase), < 0 before */
    int32_t *cand;    /* scratch: candidates */
    int32_t K;        /* min(window, M) */
    int32_t *near_first, *near_list; /* per (stage, into 0 / out of 1, phase): its pairs (pippy_dr_near) */
    double *next_t;   /* per rank: when it can start next, and what (next_k; -1: nothing known yet) ... */
    int32_t *next_k;
    char *dirty;      /* ... unless something it depends on changed since */
} pippy_dr;

static size_t pippy_dr_near(int32_t stage, int out, int32_t phase) { return ((size_t)stage * 2 + (size_t)out) * 2 + (size_t)phase; }

/* Times within this are one moment (the replay and its independent twin in the tests compute
 * in other units). */
static double pippy_dr_tol(double t) { return 1e-9 * (fabs(t) + 1e-3); }

static void pippy_dr_free(pippy_dr *z, int32_t R)
{
    for (int32_t r = 0; z->d && r < R; r++)
        pippy_dyn_free(&z->d[r]);
    free(z->d), free(z->parked), free(z->fin_t), free(z->cand), free(z->near_first), free(z->near_list);
    free(z->next_t), free(z->next_k), free(z->dirty);
    free(z->y.clock), free(z->y.busy), free(z->y.arrived), free(z->y.arrive_t);
}

/* Each stage's pairs by direction and phase (counting sort), so a readiness test looks only at
 * the stage's own peers. */
static pippy_status pippy_dr_pairs(pippy_dr *z, const pippy_ss *x)
{
    size_t cells = (size_t)x->S * 4;
    z->near_first = calloc(cells + 1, sizeof *z->near_first);
    z->near_list = malloc(((size_t)x->n_pairs * 2 + 1) * sizeof *z->near_list);
    int32_t *fill = calloc(cells, sizeof *fill);
    if (!z->near_first || !z->near_list || !fill) {
        free(fill);
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory replaying the schedule");
    }
    for (int32_t p = 0; p < x->n_pairs; p++) {
        z->near_first[pippy_dr_near(x->pair_to[p], 0, x->pair_phase[p]) + 1]++;
        z->near_first[pippy_dr_near(x->pair_from[p], 1, x->pair_phase[p]) + 1]++;
    }
    for (size_t c = 0; c < cells; c++)
        z->near_first[c + 1] += z->near_first[c];
    for (int32_t p = 0; p < x->n_pairs; p++) {
        size_t in = pippy_dr_near(x->pair_to[p], 0, x->pair_phase[p]), out = pippy_dr_near(x->pair_from[p], 1, x->pair_phase[p]);
        z->near_list[z->near_first[in] + fill[in]++] = p;
        z->near_list[z->near_first[out] + fill[out]++] = p;
    }
    free(fill);
    return PIPPY_OK;
}

static pippy_status pippy_dr_init(pippy_dr *z, pippy_ss *x, pippy_sched_result *res)
{
    const pippy_sched *s = x->s;
    memset(z, 0, sizeof *z);
    z->K = s->window < x->M ? s->window : x->M;
    z->d = calloc((size_t)x->R, sizeof *z->d);
    z->parked = malloc((size_t)x->R * sizeof *z->parked);
    z->fin_t = malloc((size_t)x->S * (size_t)x->M * sizeof *z->fin_t);
    z->y.clock = calloc((size_t)x->R, sizeof *z->y.clock);
    z->y.busy = calloc((size_t)x->R, sizeof *z->y.busy);
    z->y.arrived = calloc((size_t)3 * (size_t)s->n_reductions + 1, sizeof *z->y.arrived);
    z->y.arrive_t = calloc((size_t)3 * (size_t)s->n_reductions + 1, sizeof *z->y.arrive_t);
    z->y.spans = res ? res->spans : NULL;
    z->next_t = calloc((size_t)x->R, sizeof *z->next_t);
    z->next_k = calloc((size_t)x->R, sizeof *z->next_k);
    z->dirty = malloc((size_t)x->R);
    if (!z->d || !z->parked || !z->fin_t || !z->y.clock || !z->y.busy || !z->y.arrived || !z->y.arrive_t ||
        !z->next_t || !z->next_k || !z->dirty)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory replaying the schedule");
    memset(z->dirty, 1, (size_t)x->R);
    PIPPY_TRY(pippy_dr_pairs(z, x));
    int32_t cap = 1;
    for (int32_t r = 0; r < x->R; r++) {
        z->parked[r] = -1;
        PIPPY_TRY(pippy_dyn_init(&z->d[r], s->actions[r], s->n_actions[r], x->M, s->window, s->training));
        if (pippy_dyn_cap(&z->d[r]) > cap)
            cap = pippy_dyn_cap(&z->d[r]);
    }
    for (size_t i = 0; i < (size_t)x->S * (size_t)x->M; i++)
        z->fin_t[i] = -1;
    z->cand = malloc((size_t)cap * sizeof *z->cand);
    return z->cand ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "out of memory replaying the schedule");
}

/* When computation a may start for its data and the slots its outputs take (-1: not known yet:
 * data not sent, or a consumer not done with microbatch mb - slots). */
static double pippy_dr_ready(pippy_dr *z, pippy_ss *x, const pippy_action *a)
{
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    if (!i->compute || i->phase == PIPPY_PHASE_W)
        return 0;
    double t = 0;
    size_t in = pippy_dr_near(a->stage, 0, i->phase), out = pippy_dr_near(a->stage, 1, i->phase);
    for (int32_t j = z->near_first[in]; j < z->near_first[in + 1] && t >= 0; j++) {
        int32_t p = z->near_list[j];
        double sent = x->sent_t[(size_t)p * x->M + a->mb], arr = sent < 0 ? -1 : pippy_ss_arrival(x, p, sent);
        t = arr < 0 ? -1 : arr > t ? arr : t;
    }
    for (int32_t j = z->near_first[out]; j < z->near_first[out + 1] && t >= 0; j++) {
        /* pippy_sched_slots: every stage holds K microbatches, a later consumer's value one more */
        int32_t to = x->pair_to[z->near_list[j]], slots = z->K + (to > a->stage);
        slots = slots < x->M ? slots : x->M;
        double f = a->mb >= slots ? z->fin_t[(size_t)to * x->M + (size_t)(a->mb - slots)] : 0;
        t = f < 0 ? -1 : f > t ? f : t;
    }
    return t;
}

/* What stage st did may change what its rank and the ranks of its peers can run next. */
static void pippy_dr_touch(pippy_dr *z, const pippy_ss *x, int32_t st)
{
    z->dirty[x->s->stage_rank[st]] = 1;
    for (int32_t j = z->near_first[pippy_dr_near(st, 0, 0)]; j < z->near_first[pippy_dr_near(st + 1, 0, 0)]; j++) {
        int32_t p = z->near_list[j];
        z->dirty[x->s->stage_rank[x->pair_from[p]]] = 1;
        z->dirty[x->s->stage_rank[x->pair_to[p]]] = 1;
    }
}

/* Hand out rank r's transfers at its clock: sends leave, receives are posted. */
static void pippy_dr_transfers(pippy_dr *z, pippy_ss *x, int32_t r)
{
    int32_t k;
    double now = z->y.clock[r];
    while ((k = pippy_dyn_transfer(&z->d[r])) >= 0) {
        const pippy_action *a = &x->s->actions[r][k];
        const pippy_act_info *i = pippy_act_info_of(a->kind);
        pippy_ss_span(&z->y, r, k, now, now);
        if (i->transfer > 0) {
            int32_t p = pippy_ss_pair(x, i->phase, a->stage, a->peer);
            x->sent_t[(size_t)p * x->M + a->mb] = now;
            pippy_ss_span(&z->y, r, k, now, pippy_ss_arrival(x, p, now));
        }
        pippy_dyn_mark(&z->d[r], k);
    }
}

/* The earliest moment rank r can start something, and what (list index; -1: nothing known). */
static double pippy_dr_next(pippy_dr *z, pippy_ss *x, int32_t r, int32_t *what)
{
    int32_t n = pippy_dyn_candidates(&z->d[r], z->cand);
    double best = -1, clock = z->y.clock[r];
    *what = -1;
    for (int32_t i = 0; i < n; i++) { /* ascending list order: the first of the earliest wins */
        double t = pippy_dr_ready(z, x, &x->s->actions[r][z->cand[i]]);
        if (t < 0)
            continue;
        t = t > clock ? t : clock;
        if (*what < 0 || t < best - pippy_dr_tol(best)) {
            best = t;
            *what = z->cand[i];
        }
    }
    return best;
}

/* Rank r reaches the collective at k: an earlier local member contributes and goes on; the
 * last waits until every member is there, when all waiting at it go on together. */
static void pippy_dr_collective(pippy_dr *z, pippy_ss *x, int32_t r, int32_t k)
{
    const pippy_sched *s = x->s;
    const pippy_action *a = &s->actions[r][k];
    int32_t id = pippy_ss_key(s, a), need = a->kind == PIPPY_ACT_STEP ? x->R : s->reduction_n[a->peer];
    pippy_replay *y = &z->y;
    y->arrived[id]++;
    if (y->clock[r] > y->arrive_t[id])
        y->arrive_t[id] = y->clock[r];
    if (a->kind != PIPPY_ACT_STEP && k != pippy_ss_last_reduce(s, r, id)) {
        pippy_ss_span(y, r, k, y->clock[r], y->clock[r]);
        pippy_dyn_mark(&z->d[r], k);
        return;
    }
    z->parked[r] = k;
    if (y->arrived[id] < need)
        return;
    double t = y->arrive_t[id] + pippy_sched_collective_s(s, a);
    for (int32_t q = 0; q < x->R; q++) {
        if (z->parked[q] < 0 || pippy_ss_key(s, &s->actions[q][z->parked[q]]) != id)
            continue;
        double opt = pippy_ss_after_s(s, q, a);
        pippy_ss_span(y, q, z->parked[q], y->arrive_t[id], t + opt);
        y->clock[q] = t + opt;
        y->busy[q] += opt;
        pippy_dyn_mark(&z->d[q], z->parked[q]);
        z->parked[q] = -1;
        z->dirty[q] = 1;
        pippy_dr_transfers(z, x, q);
    }
}

/* Rank r runs action k at time t. */
static void pippy_dr_run(pippy_dr *z, pippy_ss *x, int32_t r, int32_t k, double t)
{
    const pippy_action *a = &x->s->actions[r][k];
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    z->y.clock[r] = t;
    z->dirty[r] = 1;
    if (i->collective) {
        pippy_dr_collective(z, x, r, k);
        return;
    }
    pippy_dr_touch(z, x, a->stage);
    double d = pippy_ss_cost(x->s, a);
    pippy_ss_span(&z->y, r, k, t, t + d);
    z->y.clock[r] = t + d;
    z->y.busy[r] += d;
    if (i->phase == (x->s->training ? PIPPY_PHASE_W : PIPPY_PHASE_F))
        z->fin_t[(size_t)a->stage * x->M + (size_t)a->mb] = t + d;
    pippy_dyn_mark(&z->d[r], k);
    pippy_dr_transfers(z, x, r);
}

static pippy_status pippy_dr_stuck(pippy_dr *z, pippy_ss *x)
{
    char msg[2048], act[96];
    size_t n = (size_t)snprintf(msg, sizeof msg, "schedule: the dynamic schedule (window %d) cannot go on:",
                                x->s->window);
    for (int32_t r = 0; r < x->R && n < sizeof msg - 200; r++) {
        pippy_dyn *d = &z->d[r];
        if (pippy_dyn_finished(d))
            continue;
        int32_t k = 0;
        while (k < d->n && d->done[k])
            k++;
        n += (size_t)snprintf(msg + n, sizeof msg - n, " rank %d ran %d of %d actions, not %s%s;", r, d->n_done, d->n,
                              pippy_act_str(&x->s->actions[r][k], act, sizeof act),
                              z->parked[r] >= 0 ? " (it waits for the other members of a collective)" : "");
    }
    return pippy_fail(PIPPY_ERR_INVALID, "%s", msg);
}

/* Replays the dynamic policy: times, busy, and whether every rank gets to the end. */
static pippy_status pippy_ss_replay_dynamic(pippy_ss *x, pippy_sched_result *res)
{
    pippy_dr z;
    pippy_status st = pippy_dr_init(&z, x, res);
    for (int32_t r = 0; r < x->R && st == PIPPY_OK; r++)
        pippy_dr_transfers(&z, x, r);
    while (st == PIPPY_OK) {
        int32_t best = -1;
        for (int32_t r = 0; r < x->R; r++) {
            if (z.parked[r] >= 0 || pippy_dyn_finished(&z.d[r]))
                continue;
            if (z.dirty[r])
                z.next_t[r] = pippy_dr_next(&z, x, r, &z.next_k[r]);
            z.dirty[r] = 0;
            if (z.next_k[r] >= 0 && (best < 0 || z.next_t[r] < z.next_t[best] - pippy_dr_tol(z.next_t[best])))
                best = r;
        }
        if (best < 0)
            break;
        pippy_dr_run(&z, x, best, z.next_k[best], z.next_t[best]);
    }
    for (int32_t r = 0; r < x->R && st == PIPPY_OK; r++)
        if (!pippy_dyn_finished(&z.d[r]))
            st = pippy_dr_stuck(&z, x);
    if (st == PIPPY_OK)
        pippy_ss_recv_spans(x, &z.y);
    if (st == PIPPY_OK)
        pippy_ss_results(x, &z.y, res);
    pippy_dr_free(&z, x->R);
    return st;
}

/* The window rule: every stage may hold min(window, M) microbatches at once. */
static pippy_status pippy_ss_window(pippy_ss *x, int32_t *in_flight)
{
    const pippy_sched *s = x->s;
    int32_t K = s->window < x->M ? s->window : x->M;
    for (int32_t st = 0; st < x->S; st++) {
        in_flight[st] = K;
        if (s->training && s->stash_slots && s->stash_slots[st] < K)
            return pippy_fail(PIPPY_ERR_INVALID,
                              "schedule: window %d: stage %d may hold %d microbatches at once (the dynamic schedule "
                              "runs a forward up to the window ahead of the oldest microbatch whose W has not run), "
                              "but its program keeps %d stash slots (the window rule; recompile with --window %d, or "
                              "use a window of at most %d)",
                              s->window, st, K, s->stash_slots[st], s->window, s->stash_slots[st]);
    }
    return PIPPY_OK;
}

pippy_status pippy_sched_check(const pippy_sched *s, pippy_sched_result *r)
{
    pippy_ss x;
    pippy_status st = pippy_ss_init(&x, s);
    for (int32_t rk = 0; rk < s->n_ranks && st == PIPPY_OK; rk++)
        for (int32_t k = 0; k < s->n_actions[rk] && st == PIPPY_OK; k++)
            st = pippy_ss_action(&x, rk, k, &s->actions[rk][k]);
    if (st == PIPPY_OK)
        st = pippy_ss_complete(&x);
    int32_t *in_flight = r && r->in_flight ? r->in_flight : calloc((size_t)(x.S > 0 ? x.S : 1), sizeof *in_flight);
    if (st == PIPPY_OK && !in_flight)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    if (st == PIPPY_OK) {
        memset(in_flight, 0, (size_t)x.S * sizeof *in_flight);
        st = s->window > 0 ? pippy_ss_window(&x, in_flight) : pippy_ss_in_flight(&x, in_flight);
    }
    if (!(r && r->in_flight))
        free(in_flight);
    if (st == PIPPY_OK)
        st = s->window > 0 ? pippy_ss_replay_dynamic(&x, r) : pippy_ss_replay(&x, r);
    pippy_ss_free(&x);
    return st;
}

int32_t pippy_sched_slots(int32_t bounded, int32_t M, int whole, const int32_t *in_flight, int32_t producer,
                          const int32_t *consumers, int32_t n_consumers)
{
    if (!bounded || whole || !in_flight || producer < 0)
        return M;
    int32_t k = in_flight[producer];
    for (int32_t c = 0; c < n_consumers; c++) {
        int32_t need = consumers[c] >= 0 ? in_flight[consumers[c]] + (consumers[c] > producer) : 0;
        k = need > k ? need : k;
    }
    return k < 1 ? 1 : k > M ? M : k;
}
