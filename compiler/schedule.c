/* schedule.c — each rank's ordered action list, and the predicted timeline.
 *
 * GPipe (inference: forward only, fill then drain): a rank posts the receives
 * of every microbatch first, so transfers land while it computes, then runs
 * F(m) and sends m on, for m = 0..M-1. The prediction replays the actions
 * with the cost model's stage times and transfer costs. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

/* The distinct stages that send to stage s (ascending), or that s sends to. */
static int32_t pippy_peers(const pippy_plan *p, int32_t s, int sending, int32_t *peers)
{
    char seen[PIPPY_MAX_STAGES] = {0};
    const pippy_stage *sg = &p->stages[s];
    if (sending) {
        for (int32_t q = 0; q < sg->n_out; q++) {
            if (sg->out[q].edge < 0)
                continue;
            const pippy_edge *e = &p->edges[sg->out[q].edge];
            for (int32_t c = 0; c < e->n_consumers; c++)
                seen[e->consumers[c]] = 1;
        }
    } else {
        for (int32_t q = 0; q < sg->n_in; q++)
            if (sg->in[q].from_stage >= 0)
                seen[sg->in[q].from_stage] = 1;
    }
    int32_t n = 0;
    for (int32_t k = 0; k < p->n_stages; k++)
        if (seen[k])
            peers[n++] = k;
    return n;
}

pippy_status pippy_schedule_build(pippy_plan *p)
{
    if (strcmp(p->schedule, "gpipe") != 0)
        return pippy_fail(PIPPY_ERR_UNSUPPORTED,
                          "--schedule %s: inference runs 'gpipe' (1f1b, interleaved and zero-bubble need training "
                          "mode, which this version does not build yet)",
                          p->schedule);
    int32_t S = p->n_stages, M = p->microbatches;
    p->actions = calloc((size_t)S, sizeof *p->actions);
    p->n_actions = calloc((size_t)S, sizeof *p->n_actions);
    if (!p->actions || !p->n_actions)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
    for (int32_t s = 0; s < S; s++) {
        int32_t from[PIPPY_MAX_STAGES], to[PIPPY_MAX_STAGES];
        int32_t nf = pippy_peers(p, s, 0, from), nt = pippy_peers(p, s, 1, to);
        pippy_action *a = malloc((size_t)M * (size_t)(nf + nt + 1) * sizeof *a + 1);
        if (!a)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory building the schedule");
        int32_t n = 0;
        for (int32_t m = 0; m < M; m++)
            for (int32_t k = 0; k < nf; k++)
                a[n++] = (pippy_action){PIPPY_ACT_RECV_F, m, from[k]};
        for (int32_t m = 0; m < M; m++) {
            a[n++] = (pippy_action){PIPPY_ACT_F, m, -1};
            for (int32_t k = 0; k < nt; k++)
                a[n++] = (pippy_action){PIPPY_ACT_SEND_F, m, to[k]};
        }
        p->actions[s] = a;
        p->n_actions[s] = n;
    }
    /* Prediction: stages in order (data only flows forward). */
    double *end = calloc((size_t)S * (size_t)M, sizeof *end);
    if (!end)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory predicting the schedule");
    double step = 0, busy = 0;
    for (int32_t s = 0; s < S; s++) {
        const pippy_stage *sg = &p->stages[s];
        double t = sg->pred_forward_ms * 1e-3, free_at = 0;
        for (int32_t m = 0; m < M; m++) {
            double ready = 0;
            for (int32_t q = 0; q < sg->n_in; q++) {
                int32_t f = sg->in[q].from_stage;
                if (f < 0)
                    continue;
                double arr = end[f * M + m] + pippy_cost_transfer_s(&p->cost, p->edges[sg->in[q].edge].bytes);
                if (arr > ready)
                    ready = arr;
            }
            double start = ready > free_at ? ready : free_at;
            end[s * M + m] = start + t;
            free_at = end[s * M + m];
            busy += t;
        }
        if (free_at > step)
            step = free_at;
    }
    free(end);
    p->pred_step_ms = step * 1e3;
    p->pred_bubble = step > 0 ? 1.0 - busy / (S * step) : 0;
    return PIPPY_OK;
}
