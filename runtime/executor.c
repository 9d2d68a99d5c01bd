/* executor.c — runs a rank's action list for one step (see common/action.h), one handler per
 * action kind in one table:
 *   RECV_F / RECV_B  post the receives of a microbatch's activations / gradients from a peer stage;
 *   F / B / W        wait for the microbatch's data of that phase, then run the stage's generated
 *                    forward / backward / weight function on its slots and its stash slot (taken
 *                    at F, given back after W; after F at inference);
 *   SEND_F / SEND_B  start sending the microbatch's activations / gradients to a peer stage (on one
 *                    machine only an 8-byte note travels: the bytes are already in shared memory);
 *   ALLREDUCE, STEP  training collectives (train.c).
 * Transfers are reaped as they land (and traced from post to completion); every send lands
 * before the list ends. Nothing here allocates. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

static pippy_transport *pippy_progress_transport;

void pippy_rt_set_progress(pippy_transport *t) { pippy_progress_transport = t; }

void pippy_stage_progress(void)
{
    if (pippy_progress_transport)
        pippy_transport_progress(pippy_progress_transport);
}

pippy_rt_stage *pippy_rt_stage_of(pippy_rt *rt, int s)
{
    for (int i = 0; i < rt->n_st; i++)
        if (rt->st[i].stage == s)
            return &rt->st[i];
    return NULL;
}

static uint64_t pippy_rt_tag(int phase, int edge, int mb)
{
    return pippy_tag_make(phase == PIPPY_PHASE_F ? PIPPY_TAG_ACTIVATION : PIPPY_TAG_GRADIENT, edge, mb);
}

/* Finish one request: release it, and trace the transfer from its post to now. */
static pippy_status pippy_rt_finish(pippy_rt *rt, pippy_request **rq, double post_us, int lane, const char *name,
                                    int m)
{
    pippy_status st = pippy_transport_wait(rt->t, *rq);
    *rq = NULL;
    if (rt->trace)
        pippy_trace_event(rt->trace, lane, name, lane == PIPPY_LANE_SEND ? "send" : "recv", (uint64_t)post_us,
                          (uint64_t)(pippy_rt_now_us() - post_us), m);
    return st;
}

/* Look at every transfer in flight once (no blocking): note those that completed. */
static pippy_status pippy_rt_reap(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; q < sx->n_in; q++) {
            pippy_rt_input *in = &sx->in[q];
            for (int m = 0; m < rt->M; m++)
                if (in->req[m] && pippy_transport_test(rt->t, in->req[m])) {
                    pippy_status st = pippy_rt_finish(rt, &in->req[m], in->post_us[m], PIPPY_LANE_RECV, in->name, m);
                    if (st != PIPPY_OK)
                        return pippy_error_prefix(st, "stage %d receiving '%s' of microbatch %d from stage %d",
                                                  sx->stage, in->name, m, in->from);
                    in->arrived[m] = 1;
                }
        }
        for (int q = 0; q < sx->n_out; q++) {
            pippy_rt_output *out = &sx->out[q];
            for (int k = 0; k < rt->M * out->n_to; k++)
                if (out->req[k] && pippy_transport_test(rt->t, out->req[k])) {
                    pippy_status st =
                        pippy_rt_finish(rt, &out->req[k], out->post_us[k], PIPPY_LANE_SEND, out->name, k / out->n_to);
                    if (st != PIPPY_OK)
                        return pippy_error_prefix(st, "stage %d sending '%s' to stage %d", sx->stage, out->name,
                                                  out->to[k % out->n_to]);
                }
        }
    }
    return PIPPY_OK;
}

static pippy_status pippy_rt_post_recv(pippy_rt *rt, pippy_rt_input *in, int m)
{
    in->post_us[m] = pippy_rt_now_us();
    uint64_t tag = pippy_rt_tag(in->phase, in->edge, m);
    if (in->shm)
        return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], tag, &in->note[m], sizeof in->note[m],
                                     &in->req[m]);
    return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], tag, in->buf + in->bytes * (size_t)m, in->bytes,
                                 &in->req[m]);
}

/* RECV_F / RECV_B: post the receives of microbatch m of that phase from stage peer. */
static pippy_status pippy_rt_recv(pippy_rt *rt, pippy_rt_stage *sx, const pippy_action *a, int phase)
{
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *in = &sx->in[q];
        if (in->from != a->peer || in->phase != phase || in->req[a->mb] || in->arrived[a->mb])
            continue;
        PIPPY_TRY(pippy_rt_post_recv(rt, in, a->mb));
    }
    return PIPPY_OK;
}

/* SEND_F / SEND_B: start sending microbatch m's values of that phase to stage peer. */
static pippy_status pippy_rt_send(pippy_rt *rt, pippy_rt_stage *sx, const pippy_action *a, int phase)
{
    int m = a->mb, peer = rt->stage_rank[a->peer];
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *out = &sx->out[q];
        if (out->phase != phase)
            continue;
        for (int c = 0; c < out->n_to; c++) {
            size_t i = (size_t)m * (size_t)out->n_to + (size_t)c;
            if (out->to[c] != a->peer || out->req[i])
                continue;
            out->post_us[i] = pippy_rt_now_us();
            uint64_t tag = pippy_rt_tag(phase, out->edge, m);
            if (out->shm && rt->same_host[peer]) /* the bytes are already there: send a note */
                PIPPY_TRY(pippy_transport_isend(rt->t, peer, tag, &out->note[m], sizeof out->note[m], &out->req[i]));
            else
                PIPPY_TRY(pippy_transport_isend(rt->t, peer, tag, out->buf + out->bytes * (size_t)m, out->bytes,
                                                &out->req[i]));
        }
    }
    return PIPPY_OK;
}

/* Wait until microbatch m's inputs of `phase` (from other stages) are here. */
static pippy_status pippy_rt_wait_inputs(pippy_rt *rt, pippy_rt_stage *sx, int phase, int m)
{
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *in = &sx->in[q];
        if (in->from < 0 || in->phase != phase)
            continue;
        if (!in->req[m] && !in->arrived[m]) /* an edited action list may omit the receive */
            PIPPY_TRY(pippy_rt_post_recv(rt, in, m));
        if (in->req[m]) {
            pippy_status st = pippy_rt_finish(rt, &in->req[m], in->post_us[m], PIPPY_LANE_RECV, in->name, m);
            if (st != PIPPY_OK)
                return pippy_error_prefix(st, "stage %d waiting for '%s' of microbatch %d from stage %d", sx->stage,
                                          in->name, m, in->from);
        }
        in->arrived[m] = 0;
    }
    return PIPPY_OK;
}

/* The stash slot of microbatch m: taken at F, kept until its last phase. */
static uint8_t *pippy_rt_stash(pippy_rt_stage *sx, int phase, int m)
{
    if (!sx->p->training)
        return sx->S;
    if (phase == PIPPY_PHASE_F && sx->slot_of[m] < 0 && sx->n_free > 0)
        sx->slot_of[m] = sx->free_slot[--sx->n_free];
    return sx->slot_of[m] < 0 ? NULL : sx->S + (size_t)sx->slot_of[m] * sx->p->stash_bytes;
}

static const char *const pippy_phase_label[PIPPY_PHASES] = {"F", "B", "W"};

static void pippy_rt_show_progress(pippy_rt *rt, pippy_rt_stage *sx, int m, double now)
{
    if (rt->a.quiet || now - rt->last_progress_us <= 5e6)
        return;
    if (rt->last_progress_us > 0 && !rt->training)
        printf("stage %d (rank %d): microbatch %d of %d done, %.1f s of compute so far\n", sx->stage, rt->rank, m + 1,
               rt->M, rt->compute_us / 1e6);
    rt->last_progress_us = now;
}

/* F / B / W of one microbatch. */
static pippy_status pippy_rt_compute(pippy_rt *rt, pippy_rt_stage *sx, const pippy_action *a, int phase)
{
    int m = a->mb;
    double t0 = pippy_rt_now_us();
    if (phase != PIPPY_PHASE_W)
        PIPPY_TRY(pippy_rt_wait_inputs(rt, sx, phase, m));
    if (rt->fault_delay_us > 0) /* PIPPY_FAULT_DELAY_MS: fault-injection tests */
        usleep((useconds_t)rt->fault_delay_us);
    double t1 = pippy_rt_now_us();
    if (rt->trace && t1 - t0 > 1)
        pippy_trace_event(rt->trace, PIPPY_LANE_COMPUTE, "idle", "wait", (uint64_t)t0, (uint64_t)(t1 - t0), m);
    uint8_t *S = pippy_rt_stash(sx, phase, m);
    if (!S && sx->p->stash_bytes)
        return pippy_fail(PIPPY_ERR_INVALID,
                          "rank %d: %s(stage %d, mb %d) finds no stash slot: the action list holds more microbatches "
                          "at once than the %d the program was compiled for",
                          rt->rank, pippy_phase_label[phase], sx->stage, m, sx->p->stash_slots);
    for (int q = 0; q < sx->n_in; q++)
        sx->in_ptr[q] = sx->in[q].buf + sx->in[q].bytes * (size_t)m;
    for (int q = 0; q < sx->n_out; q++)
        sx->out_ptr[q] = sx->out[q].buf + sx->out[q].bytes * (size_t)m;
    pippy_dump_begin(sx, m, phase);
    pippy_stage_fn fn = phase == PIPPY_PHASE_F ? sx->p->forward : phase == PIPPY_PHASE_B ? sx->p->backward
                                                                                      : sx->p->weight;
    double c1 = rt->trace ? pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) : 0;
    fn(sx->K, sx->A, S, sx->W, sx->G, sx->in_ptr, sx->out_ptr);
    double c2 = rt->trace ? pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) : 0;
    int last = sx->p->training ? PIPPY_PHASE_W : PIPPY_PHASE_F;
    if (phase == last && sx->p->training && sx->slot_of[m] >= 0) {
        sx->free_slot[sx->n_free++] = sx->slot_of[m];
        sx->slot_of[m] = -1;
    }
    double t2 = pippy_rt_now_us();
    rt->wait_us += t1 - t0;
    rt->compute_us += t2 - t1;
    if (rt->trace) { /* cpu_us: this thread's CPU time in it (less than dur when the rank was preempted) */
        pippy_trace_arg args[2] = {{"microbatch", m}, {"cpu_us", (int64_t)(c2 - c1)}};
        pippy_trace_event_args(rt->trace, PIPPY_LANE_COMPUTE, pippy_phase_label[phase], "compute", (uint64_t)t1,
                               (uint64_t)(t2 - t1), args, 2);
    }
    pippy_rt_show_progress(rt, sx, m, t2);
    return PIPPY_OK;
}

static pippy_status pippy_rt_action(pippy_rt *rt, const pippy_action *a)
{
    const pippy_act_info *info = pippy_act_info_of(a->kind);
    if (a->kind == PIPPY_ACT_STEP)
        return pippy_train_step(rt);
    if (a->kind == PIPPY_ACT_ALLREDUCE)
        return pippy_train_allreduce(rt, a);
    pippy_rt_stage *sx = pippy_rt_stage_of(rt, a->stage);
    if (!sx || !info)
        return pippy_fail(PIPPY_ERR_INTERNAL, "rank %d: action for stage %d", rt->rank, a->stage);
    if (info->compute)
        return pippy_rt_compute(rt, sx, a, info->phase);
    if (info->transfer > 0)
        return pippy_rt_send(rt, sx, a, info->phase);
    return pippy_rt_recv(rt, sx, a, info->phase);
}

/* Every send of the step must land before the step ends. */
static pippy_status pippy_rt_drain_sends(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; q < sx->n_out; q++)
            for (int k = 0; k < rt->M * sx->out[q].n_to; k++)
                if (sx->out[q].req[k]) {
                    pippy_rt_output *out = &sx->out[q];
                    pippy_status st =
                        pippy_rt_finish(rt, &out->req[k], out->post_us[k], PIPPY_LANE_SEND, out->name, k / out->n_to);
                    if (st != PIPPY_OK)
                        return pippy_error_prefix(st, "stage %d sending '%s' to stage %d", sx->stage, out->name,
                                                  out->to[k % out->n_to]);
                }
        for (int q = 0; q < sx->n_in; q++)
            for (int m = 0; m < rt->M; m++)
                if (sx->in[q].req[m] || sx->in[q].arrived[m])
                    return pippy_fail(PIPPY_ERR_FORMAT,
                                      "the action list of rank %d receives microbatch %d of '%s' but never uses it",
                                      rt->rank, m, sx->in[q].name);
    }
    return PIPPY_OK;
}

pippy_status pippy_rt_run(pippy_rt *rt)
{
    for (int k = 0; k < rt->n_acts; k++) {
        const pippy_action *a = &rt->acts[k];
        if (a->kind == PIPPY_ACT_STEP)
            PIPPY_TRY(pippy_rt_drain_sends(rt));
        PIPPY_TRY(pippy_rt_action(rt, a));
        if (rt->t)
            PIPPY_TRY(pippy_rt_reap(rt));
    }
    return rt->training ? PIPPY_OK : pippy_rt_drain_sends(rt);
}
