/* executor.c — runs a rank's action list for one step (see common/action.h), one handler per
 * action kind in one table:
 *   RECV_F / RECV_B  post the receives of a microbatch's activations / gradients from a peer stage;
 *   F / B / W        wait for the microbatch's data of that phase, then run the stage's generated
 *                    forward / backward / weight function on its slots and its stash slot (taken
 *                    at F, given back after W; after F at inference);
 *   SEND_F / SEND_B  start sending the microbatch's activations / gradients to a peer stage (on one
 *                    machine only an 8-byte note travels: the bytes are already in shared memory; a
 *                    stage on a GPU sends once its outputs are back in host memory, devmem.c);
 *   ALLREDUCE, REDUCE, BROADCAST, STEP   training collectives (train.c).
 * Transfers are reaped as they land (and traced from post to completion); every send lands
 * before the list ends. Nothing here allocates.
 *
 * Slots and credits: a value crossing stages has `slots` microbatch slots (m lives in m % slots;
 * every microbatch at inference, fewer in training: see pippy_sched_slots). A stage is done with
 * microbatch m after its last phase of m (W in training); only then may m + slots use the slot:
 * a receive posted early waits (want) until the slot is free, and a consumer that maps its
 * producer's shared memory sends the producer a credit, which the producer waits for before it
 * writes m + slots into that slot. Through UCX the producer's slot is free once its send landed.
 *
 * Dynamic schedule (config.window = K; common/schedule_dyn.h has the policy): the list is the set
 * of the rank's actions, and pippy_rt_run_dynamic decides their order as it goes. It hands out
 * every transfer as soon as the policy allows (receives at once, waiting for their slot as above;
 * sends right after their computation), then runs the first computation or collective in list
 * order that the policy allows (forwards in order, at most K microbatches per stage between F
 * and W, W in order, collectives as barriers) and whose data is ready without waiting: its
 * inputs arrived, and the slots its outputs take are free (microbatch m - slots made and sent,
 * its sends landed, its credits in). Every value between stages has K slots (K + 1 towards a later
 * stage, pippy_sched_slots), so that is the back-pressure: a producer issues no forward while
 * that many of its outputs are not consumed. When
 * nothing is ready it waits for any transfer in flight to complete (pippy_transport_wait_any),
 * never for one in particular, and looks again. The trace's compute events carry the action's
 * place in the list ("action") and in the order run ("seq").
 * It cannot deadlock: order the computations of a step by (microbatch, then along the data
 * flow: F of stage 0, 1, ..., then B of the last stage back to the first, then W). Every
 * condition a computation waits for is an earlier one in that order: its inputs (F of its
 * producers, B of the stages it gets gradients from, its own F for B, its B for W, of the same
 * microbatch); its previous F or W (microbatch m - 1); the window (W of m - K on its stage); a
 * slot (its consumers done with m - K or m - K - 1, and their receives of m wait only for their
 * own slot, the same earlier microbatch).
 * Sends and receive postings never wait. So while computations remain, the first one left in
 * that order has all it waits for done, and its rank — which never blocks on one action but
 * waits for anything that lands, and reaches a collective only once all its computations listed
 * before it ran — runs it. The collectives then run in list order on every rank, as in a static
 * list (the schedule checker replays the same policy before any connection is made, and the
 * tests run it with K = 1 .. M). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"
#include "schedule_dyn.h"

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

static size_t pippy_rt_slot(int slots, int m) { return (size_t)(m % slots); }

static const char *const pippy_phase_label[PIPPY_PHASES] = {"F", "B", "W"};

/* Credits travel only where a slot is reused (fewer slots than microbatches) in shared memory. */
static int pippy_rt_credited(const pippy_rt *rt, int shm, int slots) { return shm && slots < rt->M; }

/* Finish one request: release it, and trace the transfer from its post to now. */
static pippy_status pippy_rt_finish(pippy_rt *rt, pippy_request **rq, double post_us, int lane, const char *name,
                                    int m)
{
    pippy_status st = pippy_transport_wait(rt->t, *rq);
    *rq = NULL;
    if (rt->trace && lane >= 0)
        pippy_trace_event(rt->trace, lane, name, lane == PIPPY_LANE_SEND ? "send" : "recv", (uint64_t)post_us,
                          (uint64_t)(pippy_rt_now_us() - post_us), m);
    return st;
}

static pippy_status pippy_rt_send_deferred(pippy_rt *rt, int block);

/* Look at every transfer in flight once (no blocking): note those that completed. */
/* (and send what a GPU stage has brought back to host memory since) */
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
                    if (sx->dev)
                        PIPPY_TRY(pippy_rt_device_arrived(rt, sx, q, m));
                }
            for (int m = 0; m < rt->M; m++)
                if (in->credit[m] && pippy_transport_test(rt->t, in->credit[m]))
                    PIPPY_TRY(pippy_rt_finish(rt, &in->credit[m], 0, -1, in->name, m));
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
    return pippy_rt_send_deferred(rt, 0);
}

static pippy_status pippy_rt_post_recv(pippy_rt *rt, pippy_rt_input *in, int m)
{
    in->post_us[m] = pippy_rt_now_us();
    uint64_t tag = pippy_rt_tag(in->phase, in->edge, m);
    if (in->shm)
        return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], tag, &in->note[m], sizeof in->note[m],
                                     &in->req[m]);
    return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], tag,
                                 in->buf + in->bytes * pippy_rt_slot(in->slots, m), in->bytes, &in->req[m]);
}

/* Whether microbatch m may take its slot of `in` (the stage is done with m - slots). */
static int pippy_rt_slot_free(const pippy_rt_stage *sx, const pippy_rt_input *in, int m)
{
    return in->shm || m < in->slots || sx->finished[m - in->slots];
}

/* RECV_F / RECV_B: post the receives of microbatch m of that phase from stage peer. */
static pippy_status pippy_rt_recv(pippy_rt *rt, pippy_rt_stage *sx, const pippy_action *a, int phase)
{
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *in = &sx->in[q];
        if (in->from != a->peer || in->phase != phase || in->req[a->mb] || in->arrived[a->mb] || in->local)
            continue; /* from this rank: nothing travels (SEND marks it arrived) */
        if (!pippy_rt_slot_free(sx, in, a->mb))
            in->want[a->mb] = 1; /* posted when the stage is done with the slot's microbatch */
        else
            PIPPY_TRY(pippy_rt_post_recv(rt, in, a->mb));
    }
    return PIPPY_OK;
}

/* Start sending microbatch m of out to its consumer c. */
static pippy_status pippy_rt_isend(pippy_rt *rt, pippy_rt_output *out, int c, int m)
{
    int peer = rt->stage_rank[out->to[c]];
    size_t i = (size_t)m * (size_t)out->n_to + (size_t)c;
    if (peer == rt->rank) { /* a stage of this rank: it reads the slot where it is */
        pippy_rt_input *in = pippy_rt_local_input(rt, out->to[c], out->edge);
        if (!in)
            return pippy_fail(PIPPY_ERR_INTERNAL, "stage %d has no input for edge %d", out->to[c], out->edge);
        in->arrived[m] = 1;
        return PIPPY_OK;
    }
    out->post_us[i] = pippy_rt_now_us();
    uint64_t tag = pippy_rt_tag(out->phase, out->edge, m);
    if (out->shm && rt->same_host[peer]) { /* the bytes are already there: send a note */
        PIPPY_TRY(pippy_transport_isend(rt->t, peer, tag, &out->note[m], sizeof out->note[m], &out->req[i]));
        if (pippy_rt_credited(rt, 1, out->slots))
            PIPPY_TRY(pippy_transport_irecv(rt->t, peer, pippy_tag_make(PIPPY_TAG_CREDIT, out->edge, m),
                                            &out->credit_buf[i], sizeof out->credit_buf[i], &out->credit[i]));
        return PIPPY_OK;
    }
    return pippy_transport_isend(rt->t, peer, tag, out->buf + out->bytes * pippy_rt_slot(out->slots, m), out->bytes,
                                 &out->req[i]);
}

/* SEND_F / SEND_B: start sending microbatch m's values of that phase to stage peer (from a GPU:
 * once they are back in host memory, else deferred to pippy_rt_send_deferred). */
static pippy_status pippy_rt_send(pippy_rt *rt, pippy_rt_stage *sx, const pippy_action *a, int phase)
{
    int m = a->mb;
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *out = &sx->out[q];
        if (out->phase != phase)
            continue;
        for (int c = 0; c < out->n_to; c++) {
            size_t i = (size_t)m * (size_t)out->n_to + (size_t)c;
            if (out->to[c] != a->peer || out->req[i] || (out->deferred && out->deferred[i]))
                continue;
            int ready = 1;
            if (sx->dev)
                PIPPY_TRY(pippy_rt_device_out_ready(rt, sx, m, 0, &ready));
            if (!ready)
                out->deferred[i] = 1;
            else
                PIPPY_TRY(pippy_rt_isend(rt, out, c, m));
        }
    }
    return PIPPY_OK;
}

/* Stages on a GPU: the sends that waited for their download, once it is done (block: wait). */
static pippy_status pippy_rt_send_deferred(pippy_rt *rt, int block)
{
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; sx->dev && q < sx->n_out; q++) {
            pippy_rt_output *out = &sx->out[q];
            for (int k = 0; out->deferred && k < rt->M * out->n_to; k++) {
                int ready;
                if (!out->deferred[k])
                    continue;
                PIPPY_TRY(pippy_rt_device_out_ready(rt, sx, k / out->n_to, block, &ready));
                if (!ready)
                    continue;
                out->deferred[k] = 0;
                PIPPY_TRY(pippy_rt_isend(rt, out, k % out->n_to, k / out->n_to));
            }
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
        if (in->local && !in->arrived[m])
            return pippy_fail(PIPPY_ERR_INVALID, "rank %d: %s(stage %d, mb %d) needs '%s' from stage %d on this rank, "
                              "whose SEND has not run yet: the action list runs them in the wrong order", rt->rank,
                              pippy_phase_label[phase], sx->stage, m, in->name, in->from);
        if (!in->req[m] && !in->arrived[m]) { /* an edited action list may omit the receive */
            if (!pippy_rt_slot_free(sx, in, m))
                return pippy_fail(PIPPY_ERR_INTERNAL, "stage %d: microbatch %d of '%s' finds its slot in use", sx->stage,
                                  m, in->name);
            PIPPY_TRY(pippy_rt_post_recv(rt, in, m));
        }
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

/* Before microbatch m's outputs of `phase` are written: their slot's previous microbatch must be
 * gone (its sends landed; consumers on this machine sent their credits). */
static pippy_status pippy_rt_claim_outputs(pippy_rt *rt, pippy_rt_stage *sx, int phase, int m)
{
    for (int q = 0; q < sx->n_out; q++) {
        pippy_rt_output *out = &sx->out[q];
        if (out->phase != phase || out->passthrough >= 0 || m < out->slots)
            continue;
        for (int c = 0; c < out->n_to; c++) {
            size_t i = (size_t)(m - out->slots) * (size_t)out->n_to + (size_t)c;
            pippy_rt_stage *cx = rt->stage_rank[out->to[c]] == rt->rank ? pippy_rt_stage_of(rt, out->to[c]) : NULL;
            if (cx && !cx->finished[m - out->slots])
                return pippy_fail(PIPPY_ERR_INVALID, "rank %d: stage %d would overwrite microbatch %d of '%s' before "
                                  "stage %d on this rank is done with it (%d slots): the action list holds too many",
                                  rt->rank, sx->stage, m - out->slots, out->name, out->to[c], out->slots);
            if (out->req[i])
                PIPPY_TRY(pippy_rt_finish(rt, &out->req[i], out->post_us[i], PIPPY_LANE_SEND, out->name,
                                          m - out->slots));
            if (out->credit[i]) {
                pippy_status st = pippy_rt_finish(rt, &out->credit[i], 0, -1, out->name, m - out->slots);
                if (st != PIPPY_OK)
                    return pippy_error_prefix(st, "stage %d waiting for stage %d to be done with microbatch %d of '%s'",
                                              sx->stage, out->to[c], m - out->slots, out->name);
            }
        }
    }
    return PIPPY_OK;
}

/* After the stage's last phase of microbatch m: its slots are free for m + slots (credits to
 * producers on this machine, receives that waited for the slot posted). */
static pippy_status pippy_rt_release(pippy_rt *rt, pippy_rt_stage *sx, int m)
{
    sx->finished[m] = 1;
    for (int q = 0; q < sx->n_in; q++) {
        pippy_rt_input *in = &sx->in[q];
        if (in->from < 0)
            continue;
        if (pippy_rt_credited(rt, in->shm, in->slots)) {
            static const uint64_t done = 1;
            PIPPY_TRY(pippy_transport_isend(rt->t, rt->stage_rank[in->from], pippy_tag_make(PIPPY_TAG_CREDIT, in->edge, m),
                                            &done, sizeof done, &in->credit[m]));
        }
        int next = m + in->slots;
        if (next < rt->M && in->want[next]) {
            in->want[next] = 0;
            PIPPY_TRY(pippy_rt_post_recv(rt, in, next));
        }
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
    PIPPY_TRY(pippy_rt_claim_outputs(rt, sx, phase, m));
    if (sx->dev) {
        PIPPY_TRY(pippy_rt_device_enter(rt, sx, m));
    } else {
        for (int q = 0; q < sx->n_in; q++)
            sx->in_ptr[q] = sx->in[q].buf + sx->in[q].bytes * pippy_rt_slot(sx->in[q].slots, m);
        for (int q = 0; q < sx->n_out; q++)
            sx->out_ptr[q] = sx->out[q].buf + sx->out[q].bytes * pippy_rt_slot(sx->out[q].slots, m);
    }
    pippy_dump_begin(sx, m, phase);
    pippy_stage_fn fn = phase == PIPPY_PHASE_F ? sx->p->forward : phase == PIPPY_PHASE_B ? sx->p->backward
                                                                                      : sx->p->weight;
    double c1 = rt->trace ? pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) : 0;
    fn(sx->K, sx->A, S, sx->W, sx->G, sx->in_ptr, sx->out_ptr);
    double c2 = rt->trace ? pippy_rt_cpu_us(CLOCK_THREAD_CPUTIME_ID) : 0;
    if (pippy_run_error()) /* a kernel met data it cannot handle (backend.h) */
        return pippy_fail(PIPPY_ERR_INVALID, "rank %d, %s(stage %d, mb %d): %s", rt->rank, pippy_phase_label[phase],
                          sx->stage, m, pippy_run_error());
    if (sx->dev)
        PIPPY_TRY(pippy_rt_device_leave(rt, sx, m));
    int last = sx->p->training ? PIPPY_PHASE_W : PIPPY_PHASE_F;
    if (phase == last && sx->p->training && sx->slot_of[m] >= 0) {
        sx->free_slot[sx->n_free++] = sx->slot_of[m];
        sx->slot_of[m] = -1;
    }
    if (phase == last)
        PIPPY_TRY(pippy_rt_release(rt, sx, m));
    double t2 = pippy_rt_now_us();
    rt->wait_us += t1 - t0;
    rt->compute_us += t2 - t1;
    if (rt->trace) { /* cpu_us: this thread's CPU time in it (less than dur when the rank was preempted) */
        pippy_trace_arg args[4] = {
            {"microbatch", m}, {"action", rt->act_index}, {"seq", rt->act_seq}, {"cpu_us", (int64_t)(c2 - c1)}};
        pippy_trace_event_args(rt->trace, PIPPY_LANE_COMPUTE, pippy_phase_label[phase], "compute", (uint64_t)t1,
                               (uint64_t)(t2 - t1), args, 4);
    }
    pippy_rt_show_progress(rt, sx, m, t2);
    return PIPPY_OK;
}

static pippy_status pippy_rt_action(pippy_rt *rt, const pippy_action *a)
{
    const pippy_act_info *info = pippy_act_info_of(a->kind);
    if (a->kind == PIPPY_ACT_STEP)
        return pippy_train_step(rt);
    if (info && info->collective)
        return pippy_train_collective(rt, a);
    pippy_rt_stage *sx = pippy_rt_stage_of(rt, a->stage);
    if (!sx || !info)
        return pippy_fail(PIPPY_ERR_INTERNAL, "rank %d: action for stage %d", rt->rank, a->stage);
    if (info->compute)
        return pippy_rt_compute(rt, sx, a, info->phase);
    if (info->transfer > 0)
        return pippy_rt_send(rt, sx, a, info->phase);
    return pippy_rt_recv(rt, sx, a, info->phase);
}

/* Every send of the step must land before the step ends (and a GPU's last outputs be back). */
static pippy_status pippy_rt_drain_sends(pippy_rt *rt)
{
    PIPPY_TRY(pippy_rt_send_deferred(rt, 1));
    PIPPY_TRY(pippy_rt_device_sync(rt));
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
        for (int q = 0; q < sx->n_out; q++)
            for (int k = 0; k < rt->M * sx->out[q].n_to; k++)
                if (sx->out[q].credit[k])
                    PIPPY_TRY(pippy_rt_finish(rt, &sx->out[q].credit[k], 0, -1, sx->out[q].name, k / sx->out[q].n_to));
        for (int q = 0; q < sx->n_in; q++)
            for (int m = 0; m < rt->M; m++) {
                pippy_rt_input *in = &sx->in[q];
                if (in->req[m] || in->arrived[m] || in->want[m])
                    return pippy_fail(PIPPY_ERR_FORMAT,
                                      "the action list of rank %d receives microbatch %d of '%s' but never uses it",
                                      rt->rank, m, in->name);
                if (in->credit[m])
                    PIPPY_TRY(pippy_rt_finish(rt, &in->credit[m], 0, -1, in->name, m));
            }
        memset(sx->finished, 0, (size_t)rt->M);
    }
    return PIPPY_OK;
}

static pippy_status pippy_rt_run_dynamic(pippy_rt *rt);

pippy_status pippy_rt_run(pippy_rt *rt)
{
    if (rt->dyn)
        return pippy_rt_run_dynamic(rt);
    for (int k = 0; k < rt->n_acts; k++) {
        const pippy_action *a = &rt->acts[k];
        rt->act_index = rt->act_seq = k;
        if (a->kind == PIPPY_ACT_STEP)
            PIPPY_TRY(pippy_rt_drain_sends(rt));
        PIPPY_TRY(pippy_rt_action(rt, a));
        if (rt->t)
            PIPPY_TRY(pippy_rt_reap(rt));
    }
    return rt->training ? PIPPY_OK : pippy_rt_drain_sends(rt);
}

/* ---- the dynamic schedule (see the top of this file) ---- */

struct pippy_rt_dyn {
    pippy_dyn d;
    int32_t *cand;         /* scratch: the candidates */
    pippy_request **reqs;  /* scratch: the transfers in flight, for the wait */
    size_t n_reqs;         /* its capacity */
};

pippy_status pippy_rt_dynamic_setup(pippy_rt *rt)
{
    if (rt->window <= 0)
        return PIPPY_OK;
    struct pippy_rt_dyn *x = calloc(1, sizeof *x);
    if (!(rt->dyn = x))
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    PIPPY_TRY(pippy_dyn_init(&x->d, rt->acts, rt->n_acts, rt->M, rt->window, rt->training));
    x->n_reqs = 1;
    for (int i = 0; i < rt->n_st; i++) {
        for (int q = 0; q < rt->st[i].n_in; q++)
            x->n_reqs += 2 * (size_t)rt->M;
        for (int q = 0; q < rt->st[i].n_out; q++)
            x->n_reqs += 2 * (size_t)rt->M * (size_t)rt->st[i].out[q].n_to;
    }
    x->cand = malloc((size_t)pippy_dyn_cap(&x->d) * sizeof *x->cand);
    x->reqs = malloc(x->n_reqs * sizeof *x->reqs);
    if (!x->cand || !x->reqs)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory for the dynamic schedule");
    return PIPPY_OK;
}

void pippy_rt_dynamic_free(pippy_rt *rt)
{
    if (!rt->dyn)
        return;
    pippy_dyn_free(&rt->dyn->d);
    free(rt->dyn->cand), free(rt->dyn->reqs), free(rt->dyn);
    rt->dyn = NULL;
}

/* Microbatch m's inputs of `phase` from other stages have arrived. */
static int pippy_rt_inputs_here(const pippy_rt_stage *sx, int phase, int m)
{
    for (int q = 0; q < sx->n_in; q++)
        if (sx->in[q].from >= 0 && sx->in[q].phase == phase && !sx->in[q].arrived[m])
            return 0;
    return 1;
}

/* The slots microbatch m's outputs of `phase` take are free: m - slots was made there, its sends
 * landed, its consumers on this machine gave their credits and those on this rank are done with it
 * (what pippy_rt_claim_outputs would wait for). */
static int pippy_rt_outputs_free(pippy_rt *rt, const pippy_rt_stage *sx, int phase, int m)
{
    for (int q = 0; q < sx->n_out; q++) {
        const pippy_rt_output *out = &sx->out[q];
        if (out->phase != phase || out->passthrough >= 0 || m < out->slots)
            continue;
        int prev = m - out->slots;
        if (!pippy_dyn_did(&rt->dyn->d, sx->stage, phase, prev))
            return 0;
        for (int c = 0; c < out->n_to; c++) {
            size_t i = (size_t)prev * (size_t)out->n_to + (size_t)c;
            const pippy_rt_stage *cx = rt->stage_rank[out->to[c]] == rt->rank ? pippy_rt_stage_of(rt, out->to[c]) : NULL;
            if (out->req[i] || out->credit[i] || (out->deferred && out->deferred[i]) || (cx && !cx->finished[prev]))
                return 0; /* (a stage of this rank reads the slot in place: until it is done with prev) */
        }
    }
    return 1;
}

/* pippy_dyn_pick's data rule: F / B run once their inputs are here and their output slots free. */
static int pippy_rt_dyn_ready(void *ctx, int32_t k)
{
    pippy_rt *rt = ctx;
    const pippy_action *a = &rt->acts[k];
    const pippy_act_info *info = pippy_act_info_of(a->kind);
    if (!info->compute || info->phase == PIPPY_PHASE_W)
        return 1;
    pippy_rt_stage *sx = pippy_rt_stage_of(rt, a->stage);
    return !sx || (pippy_rt_inputs_here(sx, info->phase, a->mb) && pippy_rt_outputs_free(rt, sx, info->phase, a->mb));
}

/* The credits consumers on this machine sent back, as they land. */
static pippy_status pippy_rt_reap_credits(pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; q < rt->st[i].n_out; q++) {
            pippy_rt_output *out = &rt->st[i].out[q];
            for (int k = 0; k < rt->M * out->n_to; k++)
                if (out->credit[k] && pippy_transport_test(rt->t, out->credit[k])) {
                    pippy_status st = pippy_rt_finish(rt, &out->credit[k], 0, -1, out->name, k / out->n_to);
                    if (st != PIPPY_OK)
                        return pippy_error_prefix(st, "stage %d waiting for stage %d to be done with microbatch %d of "
                                                  "'%s'", rt->st[i].stage, out->to[k % out->n_to], k / out->n_to,
                                                  out->name);
                }
        }
    return PIPPY_OK;
}

/* Every transfer in flight into x->reqs; returns how many. */
static int pippy_rt_in_flight(pippy_rt *rt, struct pippy_rt_dyn *x)
{
    size_t n = 0;
    for (int i = 0; i < rt->n_st; i++) {
        pippy_rt_stage *sx = &rt->st[i];
        for (int q = 0; q < sx->n_in; q++)
            for (int m = 0; m < rt->M; m++) {
                if (sx->in[q].req[m] && n < x->n_reqs)
                    x->reqs[n++] = sx->in[q].req[m];
                if (sx->in[q].credit[m] && n < x->n_reqs)
                    x->reqs[n++] = sx->in[q].credit[m];
            }
        for (int q = 0; q < sx->n_out; q++)
            for (int k = 0; k < rt->M * sx->out[q].n_to; k++) {
                if (sx->out[q].req[k] && n < x->n_reqs)
                    x->reqs[n++] = sx->out[q].req[k];
                if (sx->out[q].credit[k] && n < x->n_reqs)
                    x->reqs[n++] = sx->out[q].credit[k];
            }
    }
    return (int)n;
}

static int pippy_rt_deferred_pending(const pippy_rt *rt)
{
    for (int i = 0; i < rt->n_st; i++)
        for (int q = 0; rt->st[i].dev && q < rt->st[i].n_out; q++)
            for (int k = 0; rt->st[i].out[q].deferred && k < rt->M * rt->st[i].out[q].n_to; k++)
                if (rt->st[i].out[q].deferred[k])
                    return 1;
    return 0;
}

/* Nothing can run: wait until a transfer in flight lands (a GPU's pending download first: a send
 * waits for it, and a peer may wait for that send). */
static pippy_status pippy_rt_dyn_wait(pippy_rt *rt)
{
    if (pippy_rt_deferred_pending(rt))
        return pippy_rt_send_deferred(rt, 1);
    int n = rt->t ? pippy_rt_in_flight(rt, rt->dyn) : 0;
    if (n == 0)
        return pippy_fail(PIPPY_ERR_INTERNAL,
                          "rank %d: the dynamic schedule finds no action ready and nothing in flight (%d of %d "
                          "actions ran)",
                          rt->rank, rt->dyn->d.n_done, rt->n_acts);
    double t0 = pippy_rt_now_us();
    PIPPY_TRY(pippy_transport_wait_any(rt->t, rt->dyn->reqs, n));
    double t1 = pippy_rt_now_us();
    rt->wait_us += t1 - t0;
    if (rt->trace && t1 - t0 > 1)
        pippy_trace_event(rt->trace, PIPPY_LANE_COMPUTE, "idle", "wait", (uint64_t)t0, (uint64_t)(t1 - t0), -1);
    return PIPPY_OK;
}

/* One step: transfers as soon as allowed, then the first computation or collective allowed and
 * ready, else a wait for anything in flight. */
static pippy_status pippy_rt_run_dynamic(pippy_rt *rt)
{
    pippy_dyn *d = &rt->dyn->d;
    int seq = 0;
    pippy_dyn_reset(d);
    while (!pippy_dyn_finished(d)) {
        int32_t k;
        while ((k = pippy_dyn_transfer(d)) >= 0) {
            rt->act_index = k, rt->act_seq = seq++;
            PIPPY_TRY(pippy_rt_action(rt, &rt->acts[k]));
            pippy_dyn_mark(d, k);
        }
        if (pippy_dyn_finished(d)) /* the last sends */
            break;
        if (rt->t) {
            PIPPY_TRY(pippy_rt_reap(rt));
            PIPPY_TRY(pippy_rt_reap_credits(rt));
        }
        k = pippy_dyn_pick(d, pippy_rt_dyn_ready, rt, rt->dyn->cand);
        if (k < 0) {
            PIPPY_TRY(pippy_rt_dyn_wait(rt));
            continue;
        }
        rt->act_index = k, rt->act_seq = seq++;
        if (rt->acts[k].kind == PIPPY_ACT_STEP)
            PIPPY_TRY(pippy_rt_drain_sends(rt));
        PIPPY_TRY(pippy_rt_action(rt, &rt->acts[k]));
        pippy_dyn_mark(d, k);
    }
    return rt->training ? PIPPY_OK : pippy_rt_drain_sends(rt);
}
