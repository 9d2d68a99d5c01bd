/* test_schedule_sim.c — the schedule checker/simulator (common/schedule_sim.c) on synthetic
 * pipelines built here: a chain of p stages, one per rank, activations going forward and
 * gradients back, written as GPipe and 1F1B action lists by this file (not by the compiler).
 *   - uniform stages, free transfers: the predicted bubble is the textbook (p-1)/(m+p-1) for both
 *     schedules and every p, m tried, the step (m+p-1)(tf+tb), and 1F1B holds min(p-s, m)
 *     microbatches on stage s where GPipe holds m;
 *   - a separate W: the GPipe step worked out by hand, (m+p-1)tf + (p-1)tb + m(tb+tw);
 *   - latency and bandwidth: the spans of a two-stage step against times worked out by hand;
 *   - each rank's optimizer steps after STEP, in both replays;
 *   - hand-broken lists are refused with the rank, the action and the rule. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "schedule_sim.h"

#define SYN_MAX_S 8
#define SYN_MAX_A 512

typedef struct {
    int32_t S, M;
    pippy_action acts[SYN_MAX_S][SYN_MAX_A];
    int32_t n[SYN_MAX_S];
    int32_t stage_rank[SYN_MAX_S], next[SYN_MAX_S], prev[SYN_MAX_S], slots[SYN_MAX_S];
    pippy_sched_edge edges[2 * SYN_MAX_S];
    double stage_s[SYN_MAX_S * PIPPY_PHASES];
    int32_t red_n[1], red_members[2];
    const int32_t *red_st[1];
    const pippy_action *lists[SYN_MAX_S];
    pippy_sched s;
} syn;

static void syn_put(syn *y, int32_t st, int32_t kind, int32_t mb, int32_t peer)
{
    ck_assert_int_lt(y->n[st], SYN_MAX_A);
    y->acts[st][y->n[st]++] = (pippy_action){kind, kind == PIPPY_ACT_STEP ? -1 : st, mb, peer};
}

static void syn_forward(syn *y, int32_t st, int32_t m)
{
    syn_put(y, st, PIPPY_ACT_F, m, -1);
    if (st + 1 < y->S)
        syn_put(y, st, PIPPY_ACT_SEND_F, m, st + 1);
}

static void syn_backward(syn *y, int32_t st, int32_t m)
{
    syn_put(y, st, PIPPY_ACT_B, m, -1);
    if (st > 0)
        syn_put(y, st, PIPPY_ACT_SEND_B, m, st - 1);
    syn_put(y, st, PIPPY_ACT_W, m, -1);
}

/* The chain's edges, stage costs and lists: every receive posted first, then GPipe (all
 * forwards, then all backwards) or 1F1B (min(p-1-s, m) forwards, then one forward and one
 * backward in turn, then the remaining backwards), then STEP. */
static void syn_build(syn *y, int32_t S, int32_t M, int one_f_one_b, double tf, double tb, double tw)
{
    memset(y, 0, sizeof *y);
    y->S = S, y->M = M;
    int32_t ne = 0;
    for (int32_t st = 0; st < S; st++) {
        y->stage_rank[st] = st;
        y->next[st] = st + 1, y->prev[st] = st - 1;
        y->stage_s[st * PIPPY_PHASES + PIPPY_PHASE_F] = tf;
        y->stage_s[st * PIPPY_PHASES + PIPPY_PHASE_B] = tb;
        y->stage_s[st * PIPPY_PHASES + PIPPY_PHASE_W] = tw;
        if (st + 1 < S) {
            y->edges[ne++] = (pippy_sched_edge){st, PIPPY_PHASE_F, 1, &y->next[st], 1000};
            y->edges[ne++] = (pippy_sched_edge){st + 1, PIPPY_PHASE_B, 1, &y->prev[st + 1], 1000};
        }
    }
    for (int32_t st = 0; st < S; st++) {
        for (int32_t m = 0; m < M; m++) {
            if (st > 0)
                syn_put(y, st, PIPPY_ACT_RECV_F, m, st - 1);
            if (st + 1 < S)
                syn_put(y, st, PIPPY_ACT_RECV_B, m, st + 1);
        }
        int32_t warm = one_f_one_b ? (S - 1 - st < M ? S - 1 - st : M) : M;
        for (int32_t m = 0; m < warm; m++)
            syn_forward(y, st, m);
        for (int32_t j = 0; j < M - warm; j++) {
            syn_forward(y, st, warm + j);
            syn_backward(y, st, j);
        }
        for (int32_t m = M - warm; m < M; m++)
            syn_backward(y, st, m);
        syn_put(y, st, PIPPY_ACT_STEP, -1, -1);
        y->lists[st] = y->acts[st];
    }
    y->s = (pippy_sched){.n_stages = S, .n_ranks = S, .microbatches = M, .training = 1, .stage_rank = y->stage_rank,
                         .n_edges = ne, .edges = y->edges, .n_actions = y->n, .actions = y->lists,
                         .stage_s = y->stage_s};
}

/* Index of the first action of this kind, stage and microbatch on rank r (-1: none). */
static int32_t syn_find(const syn *y, int32_t r, int32_t kind, int32_t mb)
{
    for (int32_t k = 0; k < y->n[r]; k++)
        if (y->acts[r][k].kind == kind && y->acts[r][k].mb == mb)
            return k;
    return -1;
}

static void syn_remove(syn *y, int32_t r, int32_t k)
{
    ck_assert_int_ge(k, 0);
    memmove(&y->acts[r][k], &y->acts[r][k + 1], (size_t)(y->n[r] - k - 1) * sizeof y->acts[r][0]);
    y->n[r]--;
}

static void syn_swap(syn *y, int32_t r, int32_t a, int32_t b)
{
    ck_assert(a >= 0 && b >= 0);
    pippy_action t = y->acts[r][a];
    y->acts[r][a] = y->acts[r][b];
    y->acts[r][b] = t;
}

/* Checks y and asserts that it is refused with a message holding every string in needles. */
static void syn_refused(syn *y, const char *const *needles, int n)
{
    pippy_error_clear();
    pippy_status st = pippy_sched_check(&y->s, NULL);
    ck_assert_msg(st == PIPPY_ERR_INVALID, "accepted (status %d)", st);
    const char *msg = pippy_last_error();
    for (int i = 0; i < n; i++)
        ck_assert_msg(strstr(msg, needles[i]) != NULL, "'%s' not in the message: %s", needles[i], msg);
}

START_TEST(test_textbook_bubble)
{
    static const int32_t ps[] = {1, 2, 3, 4, 8}, ms[] = {1, 2, 3, 4, 8, 16};
    static syn y;
    for (int one = 0; one < 2; one++)
        for (size_t a = 0; a < sizeof ps / sizeof *ps; a++)
            for (size_t b = 0; b < sizeof ms / sizeof *ms; b++) {
                int32_t p = ps[a], m = ms[b];
                double tf = 1e-3, tb = 2e-3, busy[SYN_MAX_S], idle[SYN_MAX_S];
                int32_t in_flight[SYN_MAX_S];
                syn_build(&y, p, m, one, tf, tb, 0);
                pippy_sched_result r = {.busy_s = busy, .idle_s = idle, .in_flight = in_flight};
                ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s p=%d m=%d: %s", one ? "1f1b" : "gpipe", p, m,
                              pippy_last_error());
                double want = (double)(p - 1) / (double)(m + p - 1), step = (m + p - 1) * (tf + tb);
                ck_assert_msg(fabs(r.bubble - want) < 1e-12, "%s p=%d m=%d: bubble %.15g, textbook %.15g",
                              one ? "1f1b" : "gpipe", p, m, r.bubble, want);
                ck_assert_msg(fabs(r.step_s - step) < 1e-15 * (m + p), "%s p=%d m=%d: step %.15g s, expected %.15g",
                              one ? "1f1b" : "gpipe", p, m, r.step_s, step);
                for (int32_t s = 0; s < p; s++) {
                    ck_assert_msg(fabs(busy[s] - m * (tf + tb)) < 1e-15 * m && fabs(idle[s] - (p - 1) * (tf + tb)) < 1e-14,
                                  "p=%d m=%d rank %d: busy %g idle %g", p, m, s, busy[s], idle[s]);
                    int32_t held = one ? (p - s < m ? p - s : m) : m;
                    ck_assert_msg(in_flight[s] == held, "%s p=%d m=%d stage %d holds %d microbatches, expected %d",
                                  one ? "1f1b" : "gpipe", p, m, s, in_flight[s], held);
                }
            }
}
END_TEST

START_TEST(test_gpipe_separate_w)
{
    static syn y;
    for (int32_t p = 2; p <= 5; p++)
        for (int32_t m = 1; m <= 6; m++) {
            double tf = 1.0, tb = 1.5, tw = 0.75;
            syn_build(&y, p, m, 0, tf, tb, tw);
            pippy_sched_result r = {0};
            ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
            double step = (m + p - 1) * tf + (p - 1) * tb + m * (tb + tw);
            ck_assert_msg(fabs(r.step_s - step) < 1e-12, "p=%d m=%d: step %.15g, by hand %.15g", p, m, r.step_s, step);
            double bubble = 1 - m * (tf + tb + tw) / step;
            ck_assert_msg(fabs(r.bubble - bubble) < 1e-12, "p=%d m=%d: bubble %.15g, by hand %.15g", p, m, r.bubble,
                          bubble);
        }
}
END_TEST

/* Two stages, one microbatch, 1000-byte messages over a 0.5 s + 1000 B/s link: each transfer
 * takes 1.5 s. F0 [0,1], the activations arrive at 2.5, F1 [2.5,3.5], B1 [3.5,4.5], its
 * gradients arrive at 6, B0 [6,7], W0 [7,7], STEP at 7 on both ranks. */
START_TEST(test_spans_with_link_costs)
{
    static syn y;
    syn_build(&y, 2, 1, 1, 1.0, 1.0, 0.0);
    y.s.link_latency_s = 0.5;
    y.s.link_bytes_per_s = 1000;
    pippy_sched_span sp0[SYN_MAX_A], sp1[SYN_MAX_A];
    pippy_sched_span *const spans[2] = {sp0, sp1};
    pippy_sched_result r = {.spans = spans};
    ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
    ck_assert_msg(fabs(r.step_s - 7.0) < 1e-12, "step %.15g s, expected 7", r.step_s);
    ck_assert_msg(fabs(r.bubble - (1 - 4.0 / 14.0)) < 1e-12, "bubble %.15g", r.bubble);
    struct {
        int32_t rank, kind;
        double start, end;
    } want[] = {
        {0, PIPPY_ACT_RECV_B, 0, 6},   {0, PIPPY_ACT_F, 0, 1},        {0, PIPPY_ACT_SEND_F, 1, 2.5},
        {0, PIPPY_ACT_B, 6, 7},        {0, PIPPY_ACT_W, 7, 7},        {0, PIPPY_ACT_STEP, 7, 7},
        {1, PIPPY_ACT_RECV_F, 0, 2.5}, {1, PIPPY_ACT_F, 2.5, 3.5},    {1, PIPPY_ACT_B, 3.5, 4.5},
        {1, PIPPY_ACT_SEND_B, 4.5, 6}, {1, PIPPY_ACT_W, 4.5, 4.5},    {1, PIPPY_ACT_STEP, 7, 7},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int32_t k = syn_find(&y, want[i].rank, want[i].kind, want[i].kind == PIPPY_ACT_STEP ? -1 : 0);
        ck_assert_int_ge(k, 0);
        const pippy_sched_span *s = &spans[want[i].rank][k];
        ck_assert_msg(fabs(s->start_s - want[i].start) < 1e-12 && fabs(s->end_s - want[i].end) < 1e-12,
                      "rank %d action %d (kind %d): span [%g, %g], expected [%g, %g]", want[i].rank, k, want[i].kind,
                      s->start_s, s->end_s, want[i].start, want[i].end);
    }
}
END_TEST

/* A tied parameter in stages 0 and 2 of three: its ALLREDUCE is a collective of ranks 0 and 2
 * after their last W; with 0.25 s for a collective the step is the chain's plus that. */
/* Stages 0 and 2 of a built chain tie a parameter: their ALLREDUCE just before STEP. */
static void syn_tie_0_2(syn *y, double collective_s)
{
    y->red_members[0] = 0, y->red_members[1] = 2;
    y->red_n[0] = 2, y->red_st[0] = y->red_members;
    y->s.n_reductions = 1, y->s.reduction_n = y->red_n, y->s.reduction_stages = y->red_st;
    y->s.collective_s = collective_s;
    for (int32_t st = 0; st < 3; st += 2) {
        y->acts[st][y->n[st] - 1] = (pippy_action){PIPPY_ACT_ALLREDUCE, st, -1, 0};
        syn_put(y, st, PIPPY_ACT_STEP, -1, -1);
    }
}

START_TEST(test_allreduce)
{
    static syn y;
    syn_build(&y, 3, 2, 1, 1.0, 1.0, 0.0);
    syn_tie_0_2(&y, 0.25);
    pippy_sched_span sp[3][SYN_MAX_A];
    pippy_sched_span *const spans[3] = {sp[0], sp[1], sp[2]};
    pippy_sched_result r = {.spans = spans};
    ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
    /* rank 0 ends its last W at (m+p-1)(tf+tb) = 8, rank 2 earlier: the reduction runs [8, 8.25] */
    ck_assert_msg(fabs(r.step_s - 8.5) < 1e-12, "step %.15g (STEP is a collective too)", r.step_s);
    int32_t k = syn_find(&y, 2, PIPPY_ACT_ALLREDUCE, -1);
    ck_assert_msg(fabs(sp[2][k].start_s - 8) < 1e-12 && fabs(sp[2][k].end_s - 8.25) < 1e-12, "ALLREDUCE span [%g, %g]",
                  sp[2][k].start_s, sp[2][k].end_s);

    /* not a member / before the last W */
    y.acts[2][y.n[2] - 2].peer = 1;
    syn_refused(&y, (const char *const[]){"rank 2, action", "ALLREDUCE(stage 2, reduction 1)", "not a member"}, 3);
    y.acts[2][y.n[2] - 2].peer = 0;
    syn_swap(&y, 0, y.n[0] - 2, y.n[0] - 3);
    syn_refused(&y, (const char *const[]){"rank 0, action", "ALLREDUCE(stage 0, reduction 0)", "W(stage 0, mb 1) must come first"}, 3);
}
END_TEST

/* The collectives' prices by hand: 3 member ranks, 3 MB, 1 us, 1 GB/s: the ring all-reduce
 * 2 (n-1) (lat + bytes / (n bw)) = 4 (1e-6 + 1e-3); reduce and broadcast (n-1) lat + bytes / bw;
 * a data-parallel reduction over 4 replicas 6 (1e-6 + 1e-3); members on one rank: collective_s. */
START_TEST(test_collective_cost)
{
    static syn y;
    syn_build(&y, 3, 2, 1, 1.0, 1.0, 0.0);
    syn_tie_0_2(&y, 0.25);
    int32_t members[3] = {0, 1, 2}, dp = 0, rank_of[3] = {0, 1, 2};
    double bytes = 3e6;
    y.s.reduction_n = (const int32_t[]){3};
    y.s.reduction_stages = (const int32_t *const[]){members};
    y.s.reduction_bytes = &bytes;
    y.s.reduction_dp = &dp;
    y.s.stage_rank = rank_of;
    y.s.link_latency_s = 1e-6;
    y.s.link_bytes_per_s = 1e9;
    y.s.collective_s = 0.25;
    pippy_action ar = {PIPPY_ACT_ALLREDUCE, 0, -1, 0}, rd = {PIPPY_ACT_REDUCE, 0, -1, 0};
    pippy_action bc = {PIPPY_ACT_BROADCAST, 0, -1, 0}, step = {PIPPY_ACT_STEP, -1, -1, -1};
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &ar), 0.25 + 4 * (1e-6 + 1e-3), 1e-15);
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &rd), 0.25 + 2e-6 + 3e-3, 1e-15);
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &bc), 0.25 + 2e-6 + 3e-3, 1e-15);
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &step), 0.25, 1e-15);
    dp = 1;
    y.s.replicas = 4;
    bytes = 4e6;
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &ar), 0.25 + 6 * (1e-6 + 1e-3), 1e-15);
    dp = 0;
    rank_of[1] = rank_of[2] = 0;
    ck_assert_double_eq_tol(pippy_sched_collective_s(&y.s, &ar), 0.25, 1e-15);
}
END_TEST

START_TEST(test_refusals)
{
    static syn y;
    /* a missing RECV_B */
    syn_build(&y, 2, 2, 1, 1, 2, 0);
    syn_remove(&y, 0, syn_find(&y, 0, PIPPY_ACT_RECV_B, 1));
    syn_refused(&y, (const char *const[]){"rank 0 never runs RECV_B(stage 0, mb 1 <- stage 1)", "never be received"}, 2);

    /* two actions swapped: rank 0 waits for the gradients of mb 0 before sending its activations */
    syn_build(&y, 2, 2, 1, 1, 2, 0);
    syn_swap(&y, 0, syn_find(&y, 0, PIPPY_ACT_SEND_F, 0), syn_find(&y, 0, PIPPY_ACT_B, 0));
    char at[64];
    snprintf(at, sizeof at, "rank 0 waits at action %d B(stage 0, mb 0)", syn_find(&y, 0, PIPPY_ACT_B, 0));
    syn_refused(&y, (const char *const[]){"deadlock", at, "for the gradients of mb 0 from stage 1",
                                          "rank 1 waits at action", "F(stage 1, mb 0) for the activations"}, 5);

    /* W after STEP */
    syn_build(&y, 2, 2, 1, 1, 2, 0);
    int32_t w = syn_find(&y, 1, PIPPY_ACT_W, 1);
    syn_swap(&y, 1, w, y.n[1] - 1);
    snprintf(at, sizeof at, "rank 1, action %d STEP", w);
    syn_refused(&y, (const char *const[]){at, "STEP must be the rank's last action"}, 2);

    /* B before F; a send before the computation that makes its data; a receive after it */
    syn_build(&y, 2, 2, 0, 1, 2, 0);
    syn_swap(&y, 1, syn_find(&y, 1, PIPPY_ACT_F, 0), syn_find(&y, 1, PIPPY_ACT_B, 0));
    syn_refused(&y, (const char *const[]){"rank 1, action", "B(stage 1, mb 0)", "F of this microbatch must come first"}, 3);
    syn_build(&y, 2, 2, 0, 1, 2, 0);
    syn_swap(&y, 1, syn_find(&y, 1, PIPPY_ACT_B, 1), syn_find(&y, 1, PIPPY_ACT_SEND_B, 1));
    syn_refused(&y, (const char *const[]){"rank 1, action", "SEND_B(stage 1, mb 1 -> stage 0)", "must follow the B"}, 3);
    syn_build(&y, 2, 2, 0, 1, 2, 0);
    syn_swap(&y, 1, syn_find(&y, 1, PIPPY_ACT_RECV_F, 1), syn_find(&y, 1, PIPPY_ACT_F, 1));
    syn_refused(&y, (const char *const[]){"rank 1, action", "RECV_F(stage 1, mb 1 <- stage 0)", "posted before the F"}, 3);

    /* a microbatch out of range, a peer that sends nothing there, twice the same F, no STEP */
    syn_build(&y, 3, 2, 0, 1, 2, 0);
    y.acts[1][syn_find(&y, 1, PIPPY_ACT_F, 1)].mb = 2;
    syn_refused(&y, (const char *const[]){"rank 1, action", "microbatch 2 is outside 0..1"}, 2);
    syn_build(&y, 3, 2, 0, 1, 2, 0);
    y.acts[2][syn_find(&y, 2, PIPPY_ACT_RECV_F, 0)].peer = 0;
    syn_refused(&y, (const char *const[]){"rank 2, action 0 RECV_F(stage 2, mb 0 <- stage 0)",
                                          "stage 2 receives from stage 0 no activations"}, 2);
    syn_build(&y, 2, 2, 0, 1, 2, 0);
    y.acts[0][syn_find(&y, 0, PIPPY_ACT_F, 1)].mb = 0;
    syn_refused(&y, (const char *const[]){"rank 0, action", "F(stage 0, mb 0)", "it runs twice"}, 3);
    syn_build(&y, 2, 2, 0, 1, 2, 0);
    y.n[1]--;
    syn_refused(&y, (const char *const[]){"rank 1 has no STEP at the end"}, 1);

    /* more microbatches at once than the program has stash slots for */
    syn_build(&y, 2, 4, 0, 1, 2, 0);
    y.slots[0] = 2, y.slots[1] = 4;
    y.s.stash_slots = y.slots;
    syn_refused(&y, (const char *const[]){"rank 0, action", "F(stage 0, mb 2)", "would hold 3 microbatches", "at most 2"}, 4);

    /* an inference schedule has no B */
    syn_build(&y, 2, 1, 0, 1, 2, 0);
    y.s.training = 0;
    syn_refused(&y, (const char *const[]){"rank 0, action", "only F, SEND_F and RECV_F"}, 2);
}
END_TEST

/* ---- the dynamic schedule (window K; common/schedule_dyn.h) ---- */

/* The chain as an inference pipeline: receives first, then F and its send per microbatch. */
static void syn_build_inference(syn *y, int32_t S, int32_t M, double tf)
{
    syn_build(y, S, M, 0, tf, 0, 0);
    for (int32_t st = 0; st < S; st++) {
        y->n[st] = 0;
        for (int32_t m = 0; m < M && st > 0; m++)
            syn_put(y, st, PIPPY_ACT_RECV_F, m, st - 1);
        for (int32_t m = 0; m < M; m++)
            syn_forward(y, st, m);
    }
    y->s.training = 0;
    y->s.n_edges = 0;
    for (int32_t e = 0; e + 1 < 2 * S; e += 2)
        y->edges[y->s.n_edges++] = y->edges[e]; /* the activation edges */
}

/* K = 1: one microbatch in flight per stage, so each goes down the chain and back before the
 * next starts: M S (tf + tb). At inference a stage runs F(m + 1) once its consumer is done with
 * m - 1 (an activation has K + 1 slots), so every window runs GPipe's (M + S - 1) tf. Uniform
 * stages, free transfers. */
START_TEST(test_dynamic_by_hand)
{
    static syn y;
    for (int32_t S = 1; S <= 5; S++)
        for (int32_t M = 1; M <= 6; M++) {
            syn_build(&y, S, M, 1, 1.0, 2.0, 0);
            y.s.window = 1;
            pippy_sched_result r = {0};
            ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
            ck_assert_msg(fabs(r.step_s - M * S * 3.0) < 1e-9, "training S=%d M=%d K=1: step %.15g, by hand %d", S, M,
                          r.step_s, M * S * 3);
            for (int32_t K = 1; K <= M + 1; K++) {
                syn_build_inference(&y, S, M, 1.0);
                y.s.window = K;
                ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
                double want = M + S - 1;
                ck_assert_msg(fabs(r.step_s - want) < 1e-9, "inference S=%d M=%d K=%d: step %.15g, by hand %g", S, M, K,
                              r.step_s, want);
            }
        }
}
END_TEST

static double syn_rand(uint32_t *x)
{
    *x = *x * 1664525u + 1013904223u;
    return 0.25 + (double)(*x >> 8) / (double)(1u << 24);
}

/* The replayed order keeps the policy, from the spans: on each stage F and W in microbatch order,
 * at most K microbatches between an F's start and their W's end, and F / B of m only once every
 * consumer of their outputs finished m - slots (K; K + 1 for the activations, to a later stage). */
static void syn_check_policy(syn *y, pippy_sched_span *const *sp, int32_t K)
{
    int32_t S = y->S, M = y->M;
    for (int32_t st = 0; st < S; st++) {
        for (int32_t m = 0; m < M; m++) {
            const pippy_sched_span *f = &sp[st][syn_find(y, st, PIPPY_ACT_F, m)];
            const pippy_sched_span *w = &sp[st][syn_find(y, st, PIPPY_ACT_W, m)];
            if (m > 0) {
                ck_assert(f->start_s >= sp[st][syn_find(y, st, PIPPY_ACT_F, m - 1)].end_s - 1e-12);
                ck_assert(w->start_s >= sp[st][syn_find(y, st, PIPPY_ACT_W, m - 1)].end_s - 1e-12);
            }
            int32_t held = 0;
            for (int32_t j = 0; j <= m; j++)
                held += sp[st][syn_find(y, st, PIPPY_ACT_W, j)].end_s > f->start_s + 1e-12;
            ck_assert_msg(held <= K, "stage %d holds %d microbatches at F(%d), window %d", st, held, m, K);
            const pippy_sched_span *b = &sp[st][syn_find(y, st, PIPPY_ACT_B, m)];
            if (st + 1 < S && m > K)
                ck_assert(f->start_s >= sp[st + 1][syn_find(y, st + 1, PIPPY_ACT_W, m - K - 1)].end_s - 1e-12);
            if (st > 0 && m >= K)
                ck_assert(b->start_s >= sp[st - 1][syn_find(y, st - 1, PIPPY_ACT_W, m - K)].end_s - 1e-12);
        }
    }
}

/* Every chain of 1-6 stages, 1-9 microbatches, every window 1..M+1, stage costs drawn at
 * random, with and without link costs: the replay ends, every stage holds min(K, M), the order
 * keeps the policy, and no window is slower than running one microbatch at a time. */
START_TEST(test_dynamic_ends)
{
    static syn y;
    static pippy_sched_span sp[SYN_MAX_S][SYN_MAX_A];
    pippy_sched_span *const spans[SYN_MAX_S] = {sp[0], sp[1], sp[2], sp[3], sp[4], sp[5], sp[6], sp[7]};
    uint32_t seed = 7;
    for (int32_t S = 1; S <= 6; S++)
        for (int32_t M = 1; M <= 9; M++)
            for (int32_t K = 1; K <= M + 1; K++)
                for (int link = 0; link < 2; link++) {
                    syn_build(&y, S, M, 1, 1, 1, 1);
                    for (int32_t i = 0; i < S * PIPPY_PHASES; i++)
                        y.stage_s[i] = syn_rand(&seed);
                    y.s.window = K;
                    y.s.link_latency_s = link ? 0.3 : 0;
                    y.s.link_bytes_per_s = link ? 1e4 : 0;
                    int32_t in_flight[SYN_MAX_S];
                    pippy_sched_result r = {.in_flight = in_flight, .spans = spans};
                    ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "S=%d M=%d K=%d: %s", S, M, K,
                                  pippy_last_error());
                    for (int32_t st = 0; st < S; st++)
                        ck_assert_int_eq(in_flight[st], K < M ? K : M);
                    syn_check_policy(&y, spans, K);
                    double serial = r.step_s;
                    y.s.window = 1;
                    ck_assert(pippy_sched_check(&y.s, &r) == PIPPY_OK);
                    ck_assert_msg(serial <= r.step_s + 1e-9, "S=%d M=%d K=%d: %g s, K=1: %g s", S, M, K, serial,
                                  r.step_s);
                }
}
END_TEST

/* The window rule: a stage that may hold K microbatches needs K stash slots (min(K, M)). */
START_TEST(test_dynamic_window_rule)
{
    static syn y;
    syn_build(&y, 2, 4, 1, 1, 2, 0);
    y.s.window = 3;
    y.slots[0] = 2, y.slots[1] = 4;
    y.s.stash_slots = y.slots;
    syn_refused(&y, (const char *const[]){"window 3: stage 0 may hold 3 microbatches", "keeps 2 stash slots",
                                          "the window rule"}, 3);
    y.slots[0] = 3;
    ck_assert_msg(pippy_sched_check(&y.s, NULL) == PIPPY_OK, "%s", pippy_last_error());
    y.s.window = 9, y.slots[0] = y.slots[1] = 4; /* min(9, M = 4) */
    ck_assert_msg(pippy_sched_check(&y.s, NULL) == PIPPY_OK, "%s", pippy_last_error());
    /* the static list's own in-flight count no longer applies: 1F1B holds 2 on stage 0 */
    y.s.window = 1, y.slots[0] = y.slots[1] = 1;
    ck_assert_msg(pippy_sched_check(&y.s, NULL) == PIPPY_OK, "%s", pippy_last_error());
    y.s.window = 0;
    syn_refused(&y, (const char *const[]){"would hold 2 microbatches"}, 1);
}
END_TEST

/* Collectives are barriers: the tied stages' ALLREDUCE after their last W, then STEP. */
START_TEST(test_dynamic_allreduce)
{
    static syn y;
    for (int32_t K = 1; K <= 3; K++) {
        syn_build(&y, 3, 3, 1, 1.0, 1.0, 0.5);
        syn_tie_0_2(&y, 0.25);
        y.s.window = K;
        pippy_sched_span sp[3][SYN_MAX_A];
        pippy_sched_span *const spans[3] = {sp[0], sp[1], sp[2]};
        pippy_sched_result r = {.spans = spans};
        ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
        double last_w = 0;
        for (int32_t st = 0; st < 3; st += 2)
            for (int32_t m = 0; m < 3; m++)
                last_w = fmax(last_w, sp[st][syn_find(&y, st, PIPPY_ACT_W, m)].end_s);
        for (int32_t st = 0; st < 3; st += 2) {
            const pippy_sched_span *a = &sp[st][syn_find(&y, st, PIPPY_ACT_ALLREDUCE, -1)];
            ck_assert_msg(fabs(a->start_s - last_w) < 1e-12 && fabs(a->end_s - last_w - 0.25) < 1e-12,
                          "K=%d: ALLREDUCE [%g, %g], last W ends %g", K, a->start_s, a->end_s, last_w);
        }
        ck_assert_msg(fabs(r.step_s - (last_w + 0.5)) < 1e-12, "K=%d: step %g", K, r.step_s);
    }
}
END_TEST

/* The optimizer steps after STEP: when every rank is at STEP, each runs its stages' optimizer
 * steps (busy time), so the step ends at the barrier plus the largest; the same in the dynamic
 * replay. */
START_TEST(test_optimizer_after_step)
{
    static syn y;
    static const double opt[3] = {0.3, 0.1, 0.7};
    for (int32_t K = 0; K <= 2; K += 2) {
        double step0 = 0, busy0[3], busy[3];
        for (int with = 0; with < 2; with++) {
            syn_build(&y, 3, 4, 1, 1.0, 1.0, 0.5);
            y.s.window = K;
            y.s.optimizer_s = with ? opt : NULL;
            pippy_sched_span sp[3][SYN_MAX_A];
            pippy_sched_span *const spans[3] = {sp[0], sp[1], sp[2]};
            pippy_sched_result r = {.spans = spans, .busy_s = with ? busy : busy0};
            ck_assert_msg(pippy_sched_check(&y.s, &r) == PIPPY_OK, "%s", pippy_last_error());
            if (!with) {
                step0 = r.step_s;
                continue;
            }
            ck_assert_msg(fabs(r.step_s - (step0 + 0.7)) < 1e-12, "K=%d: step %g, without the optimizer %g", K,
                          r.step_s, step0);
            for (int32_t q = 0; q < 3; q++) {
                const pippy_sched_span *a = &sp[q][syn_find(&y, q, PIPPY_ACT_STEP, -1)];
                ck_assert_msg(fabs(a->start_s - step0) < 1e-12 && fabs(a->end_s - (step0 + opt[q])) < 1e-12 &&
                                  fabs(busy[q] - busy0[q] - opt[q]) < 1e-12,
                              "K=%d rank %d: STEP [%g, %g], busy %g (%g without)", K, q, a->start_s, a->end_s, busy[q],
                              busy0[q]);
            }
        }
    }
}
END_TEST

static Suite *schedule_sim_suite(void)
{
    Suite *s = suite_create("schedule_sim");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_textbook_bubble);
    tcase_add_test(tc, test_gpipe_separate_w);
    tcase_add_test(tc, test_spans_with_link_costs);
    tcase_add_test(tc, test_allreduce);
    tcase_add_test(tc, test_collective_cost);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_optimizer_after_step);
    suite_add_tcase(s, tc);
    TCase *dyn = tcase_create("dynamic");
    tcase_set_timeout(dyn, 60);
    tcase_add_test(dyn, test_dynamic_by_hand);
    tcase_add_test(dyn, test_dynamic_ends);
    tcase_add_test(dyn, test_dynamic_window_rule);
    tcase_add_test(dyn, test_dynamic_allreduce);
    suite_add_tcase(s, dyn);
    return s;
}

PIPPY_TEST_SUITE(schedule_sim_suite)
