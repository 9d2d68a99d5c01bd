/* executor.c — runs a rank's action list (see rt.h): RECV_F posts the receives of a
 * microbatch, F waits for its inputs and runs the generated forward, SEND_F starts its sends;
 * transfers are reaped as they land (and traced from post to completion), and every send must
 * land before the rank finishes. Nothing here allocates. */
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

static uint64_t pippy_tag(int edge, int mb) { return ((uint64_t)(uint32_t)edge << 24) | (uint64_t)(uint32_t)mb; }

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
    for (int q = 0; q < rt->n_in; q++) {
        pippy_rt_input *in = &rt->in[q];
        for (int m = 0; m < rt->M; m++)
            if (in->req[m] && pippy_transport_test(rt->t, in->req[m])) {
                pippy_status st = pippy_rt_finish(rt, &in->req[m], in->post_us[m], PIPPY_LANE_RECV, in->name, m);
                if (st != PIPPY_OK)
                    return pippy_error_prefix(st, "stage %d receiving '%s' of microbatch %d from stage %d",
                                              rt->p->stage, in->name, m, in->from);
                in->arrived[m] = 1;
            }
    }
    for (int q = 0; q < rt->n_out; q++) {
        pippy_rt_output *out = &rt->out[q];
        for (int i = 0; i < rt->M * out->n_to; i++)
            if (out->req[i] && pippy_transport_test(rt->t, out->req[i])) {
                pippy_status st =
                    pippy_rt_finish(rt, &out->req[i], out->post_us[i], PIPPY_LANE_SEND, out->name, i / out->n_to);
                if (st != PIPPY_OK)
                    return pippy_error_prefix(st, "stage %d sending '%s' to stage %d", rt->p->stage, out->name,
                                              out->to[i % out->n_to]);
            }
    }
    return PIPPY_OK;
}

static pippy_status pippy_rt_post_recv(pippy_rt *rt, pippy_rt_input *in, int m)
{
    in->post_us[m] = pippy_rt_now_us();
    if (in->shm)
        return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], pippy_tag(in->edge, m), &in->note[m],
                                     sizeof in->note[m], &in->req[m]);
    return pippy_transport_irecv(rt->t, rt->stage_rank[in->from], pippy_tag(in->edge, m),
                                 in->buf + in->bytes * (size_t)m, in->bytes, &in->req[m]);
}

/* The executor: this rank's actions in order. */
pippy_status pippy_rt_run(pippy_rt *rt, double *compute_us, double *wait_us)
{
    const pippy_stage_program *p = rt->p;
    for (int k = 0; k < rt->n_acts; k++) {
        const pippy_rt_action *x = &rt->acts[k];
        int m = x->mb;
        if (x->op == 0) { /* RECV_F: post the receives of microbatch m from stage peer */
            for (int q = 0; q < rt->n_in; q++) {
                pippy_rt_input *in = &rt->in[q];
                if (in->from != x->peer || in->req[m] || in->arrived[m])
                    continue;
                PIPPY_TRY(pippy_rt_post_recv(rt, in, m));
            }
        } else if (x->op == 1) { /* F: wait for m's inputs, compute */
            double t0 = pippy_rt_now_us();
            for (int q = 0; q < rt->n_in; q++) {
                pippy_rt_input *in = &rt->in[q];
                if (in->from < 0)
                    continue;
                if (!in->req[m] && !in->arrived[m]) /* an edited action list may omit the RECV_F */
                    PIPPY_TRY(pippy_rt_post_recv(rt, in, m));
                if (in->req[m]) {
                    pippy_status st = pippy_rt_finish(rt, &in->req[m], in->post_us[m], PIPPY_LANE_RECV, in->name, m);
                    if (st != PIPPY_OK)
                        return pippy_error_prefix(st, "stage %d waiting for '%s' of microbatch %d from stage %d",
                                                  p->stage, in->name, m, in->from);
                }
                in->arrived[m] = 0;
            }
            if (rt->fault_delay_us > 0) /* PIPPY_FAULT_DELAY_MS: fault-injection tests */
                usleep((useconds_t)rt->fault_delay_us);
            double t1 = pippy_rt_now_us();
            if (rt->trace && t1 - t0 > 1)
                pippy_trace_event(rt->trace, PIPPY_LANE_COMPUTE, "idle", "wait", (uint64_t)t0, (uint64_t)(t1 - t0), m);
            for (int q = 0; q < rt->n_in; q++)
                rt->in_ptr[q] = rt->in[q].buf + rt->in[q].bytes * (size_t)m;
            for (int q = 0; q < rt->n_out; q++)
                rt->out_ptr[q] = rt->out[q].buf + rt->out[q].bytes * (size_t)m;
            p->forward(rt->K, rt->A, rt->W, rt->in_ptr, rt->out_ptr);
            if (pippy_run_error()) /* a kernel met data it cannot handle (backend.h) */
                return pippy_fail(PIPPY_ERR_INVALID, "stage %d, microbatch %d: %s", p->stage, m, pippy_run_error());
            double t2 = pippy_rt_now_us();
            *wait_us += t1 - t0;
            *compute_us += t2 - t1;
            if (rt->trace)
                pippy_trace_event(rt->trace, PIPPY_LANE_COMPUTE, "F", "compute", (uint64_t)t1, (uint64_t)(t2 - t1), m);
            /* long runs show progress: a line every 5 s */
            if (!rt->a.quiet && t2 - rt->last_progress_us > 5e6) {
                if (rt->last_progress_us > 0)
                    printf("stage %d (rank %d): microbatch %d of %d done, %.1f s of compute so far\n", p->stage,
                           rt->rank, m + 1, rt->M, *compute_us / 1e6);
                rt->last_progress_us = t2;
            }
        } else { /* SEND_F: start sending m's outputs to stage peer */
            for (int q = 0; q < rt->n_out; q++) {
                pippy_rt_output *out = &rt->out[q];
                for (int c = 0; c < out->n_to; c++) {
                    size_t i = (size_t)m * (size_t)out->n_to + (size_t)c;
                    if (out->to[c] != x->peer || out->req[i])
                        continue;
                    out->post_us[i] = pippy_rt_now_us();
                    int peer = rt->stage_rank[x->peer];
                    if (out->shm && rt->same_host[peer]) /* the bytes are already there: send a note */
                        PIPPY_TRY(pippy_transport_isend(rt->t, peer, pippy_tag(out->edge, m), &out->note[m],
                                                        sizeof out->note[m], &out->req[i]));
                    else
                        PIPPY_TRY(pippy_transport_isend(rt->t, peer, pippy_tag(out->edge, m),
                                                        out->buf + out->bytes * (size_t)m, out->bytes,
                                                        &out->req[i]));
                }
            }
        }
        if (rt->t)
            PIPPY_TRY(pippy_rt_reap(rt));
    }
    /* every send must land before we go */
    for (int q = 0; q < rt->n_out; q++)
        for (int i = 0; i < rt->M * rt->out[q].n_to; i++)
            if (rt->out[q].req[i]) {
                pippy_rt_output *out = &rt->out[q];
                pippy_status st =
                    pippy_rt_finish(rt, &out->req[i], out->post_us[i], PIPPY_LANE_SEND, out->name, i / out->n_to);
                if (st != PIPPY_OK)
                    return pippy_error_prefix(st, "stage %d sending '%s' to stage %d", p->stage, out->name,
                                              out->to[i % out->n_to]);
            }
    for (int q = 0; q < rt->n_in; q++)
        for (int m = 0; m < rt->M; m++)
            if (rt->in[q].req[m] || rt->in[q].arrived[m])
                return pippy_fail(PIPPY_ERR_FORMAT,
                                  "the action list of rank %d receives microbatch %d of '%s' but never runs F(%d)",
                                  rt->rank, m, rt->in[q].name, m);
    return PIPPY_OK;
}
