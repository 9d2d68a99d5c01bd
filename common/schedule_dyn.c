/* schedule_dyn.c — see schedule_dyn.h. */
#include "schedule_dyn.h"

#include <stdlib.h>
#include <string.h>

static size_t pippy_dyn_cell(const pippy_dyn *d, int32_t local, int32_t phase, int32_t m)
{
    return ((size_t)local * PIPPY_PHASES + (size_t)phase) * (size_t)d->M + (size_t)m;
}

void pippy_dyn_free(pippy_dyn *d)
{
    free(d->local_of), free(d->at), free(d->send_first), free(d->send_list), free(d->coll);
    free(d->done), free(d->did), free(d->next_f), free(d->next_w), free(d->queue);
    memset(d, 0, sizeof *d);
}

/* The stages of the list, numbered locally in order of appearance. */
static pippy_status pippy_dyn_locals(pippy_dyn *d)
{
    d->max_stage = 0;
    for (int32_t k = 0; k < d->n; k++)
        if (d->acts[k].stage > d->max_stage)
            d->max_stage = d->acts[k].stage;
    d->local_of = malloc(((size_t)d->max_stage + 1) * sizeof *d->local_of);
    if (!d->local_of)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    for (int32_t s = 0; s <= d->max_stage; s++)
        d->local_of[s] = -1;
    for (int32_t k = 0; k < d->n; k++) {
        int32_t s = d->acts[k].stage;
        if (s >= 0 && d->local_of[s] < 0)
            d->local_of[s] = d->n_local++;
    }
    return PIPPY_OK;
}

/* Where each computation stands in the list, and which sends carry its data. */
static pippy_status pippy_dyn_index(pippy_dyn *d)
{
    size_t cells = (size_t)(d->n_local ? d->n_local : 1) * PIPPY_PHASES * (size_t)d->M;
    d->at = malloc(cells * sizeof *d->at);
    d->send_first = calloc(cells + 1, sizeof *d->send_first);
    d->send_list = malloc(((size_t)d->n + 1) * sizeof *d->send_list);
    d->coll = malloc(((size_t)d->n + 1) * sizeof *d->coll);
    if (!d->at || !d->send_first || !d->send_list || !d->coll)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    for (size_t c = 0; c < cells; c++)
        d->at[c] = -1;
    for (int32_t k = 0; k < d->n; k++) {
        const pippy_action *a = &d->acts[k];
        const pippy_act_info *i = pippy_act_info_of(a->kind);
        if (!i)
            return pippy_fail(PIPPY_ERR_INVALID, "dynamic schedule: action %d is not an action", k);
        if (i->collective) {
            d->coll[d->n_coll++] = k;
            continue;
        }
        if (a->mb < 0 || a->mb >= d->M || a->stage < 0)
            return pippy_fail(PIPPY_ERR_INVALID, "dynamic schedule: action %d has microbatch %d", k, a->mb);
        size_t c = pippy_dyn_cell(d, d->local_of[a->stage], i->phase, a->mb);
        if (i->compute)
            d->at[c] = k;
        else if (i->transfer > 0)
            d->send_first[c + 1]++;
    }
    for (size_t c = 0; c < cells; c++)
        d->send_first[c + 1] += d->send_first[c];
    int32_t *fill = calloc(cells, sizeof *fill);
    if (!fill)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    for (int32_t k = 0; k < d->n; k++) {
        const pippy_action *a = &d->acts[k];
        if (pippy_act_info_of(a->kind)->transfer > 0) {
            size_t c = pippy_dyn_cell(d, d->local_of[a->stage], pippy_act_info_of(a->kind)->phase, a->mb);
            d->send_list[d->send_first[c] + fill[c]++] = k;
        }
    }
    free(fill);
    return PIPPY_OK;
}

/* Every computation of every stage of the list is there once. */
static pippy_status pippy_dyn_complete(const pippy_dyn *d)
{
    static const char *const names[PIPPY_PHASES] = {"F", "B", "W"};
    for (int32_t s = 0; s <= d->max_stage; s++)
        for (int32_t ph = 0; d->local_of[s] >= 0 && ph < (d->training ? PIPPY_PHASES : 1); ph++)
            for (int32_t m = 0; m < d->M; m++)
                if (d->at[pippy_dyn_cell(d, d->local_of[s], ph, m)] < 0)
                    return pippy_fail(PIPPY_ERR_INVALID, "dynamic schedule: the list never runs %s(stage %d, mb %d)",
                                      names[ph], s, m);
    return PIPPY_OK;
}

pippy_status pippy_dyn_init(pippy_dyn *d, const pippy_action *acts, int32_t n, int32_t M, int32_t K,
                            int32_t training)
{
    memset(d, 0, sizeof *d);
    if (n < 0 || M < 1 || K < 1)
        return pippy_fail(PIPPY_ERR_INVALID, "dynamic schedule: %d actions, %d microbatches, window %d", n, M, K);
    d->acts = acts, d->n = n, d->M = M, d->K = K < M ? K : M, d->training = training;
    pippy_status st = pippy_dyn_locals(d);
    if (st == PIPPY_OK)
        st = pippy_dyn_index(d);
    if (st == PIPPY_OK)
        st = pippy_dyn_complete(d);
    size_t L = (size_t)(d->n_local ? d->n_local : 1);
    if (st == PIPPY_OK) {
        d->done = malloc((size_t)n + 1);
        d->did = malloc(L * PIPPY_PHASES * (size_t)M);
        d->next_f = malloc(L * sizeof *d->next_f);
        d->next_w = malloc(L * sizeof *d->next_w);
        d->queue = malloc(((size_t)n + 1) * sizeof *d->queue);
        if (!d->done || !d->did || !d->next_f || !d->next_w || !d->queue)
            st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    }
    if (st != PIPPY_OK) {
        pippy_dyn_free(d);
        return st;
    }
    pippy_dyn_reset(d);
    return PIPPY_OK;
}

void pippy_dyn_reset(pippy_dyn *d)
{
    memset(d->done, 0, (size_t)d->n + 1);
    memset(d->did, 0, (size_t)(d->n_local ? d->n_local : 1) * PIPPY_PHASES * (size_t)d->M);
    for (int32_t l = 0; l < d->n_local; l++)
        d->next_f[l] = d->next_w[l] = 0;
    d->q_head = d->q_tail = 0;
    for (int32_t k = 0; k < d->n; k++) /* receives are posted first (their slots permitting) */
        if (pippy_act_info_of(d->acts[k].kind)->transfer < 0)
            d->queue[d->q_tail++] = k;
    d->coll_pos = 0;
    d->barrier = d->n_coll ? d->coll[0] : d->n;
    d->done_below = 0;
    d->n_done = 0;
}

int32_t pippy_dyn_transfer(pippy_dyn *d) { return d->q_head < d->q_tail ? d->queue[d->q_head++] : -1; }

int32_t pippy_dyn_cap(const pippy_dyn *d) { return d->n_local * (d->K + 2) + 1; }

/* The computations of local stage l allowed now, appended to out. */
static int32_t pippy_dyn_stage_candidates(const pippy_dyn *d, int32_t l, int32_t *out)
{
    int32_t n = 0, nf = d->next_f[l], nw = d->next_w[l];
    int32_t lo = d->training ? nw : nf;
    if (nf < d->M && nf < lo + d->K)
        out[n++] = d->at[pippy_dyn_cell(d, l, PIPPY_PHASE_F, nf)];
    if (!d->training)
        return n;
    for (int32_t m = nw; m < nf; m++)
        if (!d->did[pippy_dyn_cell(d, l, PIPPY_PHASE_B, m)])
            out[n++] = d->at[pippy_dyn_cell(d, l, PIPPY_PHASE_B, m)];
    if (nw < d->M && d->did[pippy_dyn_cell(d, l, PIPPY_PHASE_B, nw)])
        out[n++] = d->at[pippy_dyn_cell(d, l, PIPPY_PHASE_W, nw)];
    return n;
}

int32_t pippy_dyn_candidates(const pippy_dyn *d, int32_t *out)
{
    int32_t n = 0;
    for (int32_t l = 0; l < d->n_local; l++) {
        int32_t got = pippy_dyn_stage_candidates(d, l, out + n), keep = 0;
        for (int32_t i = 0; i < got; i++) /* nothing listed after a collective that has not run */
            if (out[n + i] < d->barrier)
                out[n + keep++] = out[n + i];
        n += keep;
    }
    if (d->barrier < d->n && d->done_below == d->barrier)
        out[n++] = d->barrier;
    for (int32_t i = 1; i < n; i++) /* ascending list order (insertion sort: a handful) */
        for (int32_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            int32_t t = out[j];
            out[j] = out[j - 1], out[j - 1] = t;
        }
    return n;
}

int32_t pippy_dyn_pick(const pippy_dyn *d, int (*ready)(void *ctx, int32_t k), void *ctx, int32_t *cand)
{
    int32_t n = pippy_dyn_candidates(d, cand);
    for (int32_t i = 0; i < n; i++)
        if (ready(ctx, cand[i]))
            return cand[i];
    return -1;
}

int pippy_dyn_did(const pippy_dyn *d, int32_t stage, int32_t phase, int32_t m)
{
    if (stage < 0 || stage > d->max_stage || d->local_of[stage] < 0 || m < 0 || m >= d->M)
        return 0;
    return d->did[pippy_dyn_cell(d, d->local_of[stage], phase, m)];
}

/* A computation ran: the next F / W of its stage, its sends handed out. */
static void pippy_dyn_computed(pippy_dyn *d, const pippy_action *a, int32_t phase)
{
    int32_t l = d->local_of[a->stage];
    size_t c = pippy_dyn_cell(d, l, phase, a->mb);
    d->did[c] = 1;
    while (d->next_f[l] < d->M && d->did[pippy_dyn_cell(d, l, PIPPY_PHASE_F, d->next_f[l])])
        d->next_f[l]++;
    while (d->training && d->next_w[l] < d->M && d->did[pippy_dyn_cell(d, l, PIPPY_PHASE_W, d->next_w[l])])
        d->next_w[l]++;
    for (int32_t i = d->send_first[c]; i < d->send_first[c + 1]; i++)
        d->queue[d->q_tail++] = d->send_list[i];
}

void pippy_dyn_mark(pippy_dyn *d, int32_t k)
{
    if (k < 0 || k >= d->n || d->done[k])
        return;
    const pippy_action *a = &d->acts[k];
    const pippy_act_info *i = pippy_act_info_of(a->kind);
    d->done[k] = 1;
    d->n_done++;
    if (k < d->barrier)
        d->done_below++;
    if (i->compute)
        pippy_dyn_computed(d, a, i->phase);
    if (k != d->barrier)
        return;
    int32_t old = d->barrier; /* the barrier moves on to the next collective */
    d->coll_pos++;
    d->barrier = d->coll_pos < d->n_coll ? d->coll[d->coll_pos] : d->n;
    d->done_below++;
    for (int32_t j = old + 1; j < d->barrier; j++) /* transfers there may have run already */
        d->done_below += d->done[j];
}
