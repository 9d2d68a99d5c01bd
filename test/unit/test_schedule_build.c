/* test_schedule_build.c — the compiler's schedule builders (compiler/schedule.c) on synthetic
 * plans: a chain of p stages, one per rank, activations going forward and gradients back, with
 * given F, B and W times per microbatch and free transfers; the lists are built by
 * pippy_schedule_build / pippy_schedule_choose and replayed by common/schedule_sim.
 *   - zb-h1 against Qi et al. 2023 (Zero Bubble Pipeline Parallelism), Table/section 2: with m >= p
 *     microbatches each rank idles (p-1)(tf+tb-tw) per step, so the step is
 *     m(tf+tb+tw) + (p-1)(tf+tb-tw) (checked to 1e-9 relative for uniform and non-uniform
 *     tf, tb, tw with tw <= tf + tb), and every stage holds min(p, m) microbatches: the largest
 *     count, on the first stage, is 1F1B's;
 *   - 1f1b beside it: B's gradients leave before W runs, so each rank idles (p-1)(tf+tb), not the
 *     paper's (p-1)(tf+tb+tw) for a fused backward; with tf = tb = tw zb-h1's bubble is half of
 *     this 1F1B's and a third of the paper's; stage s holds min(p-s, m);
 *   - the same steps when a computation also waits, as the runtime's does, for the slot its output
 *     goes to (runtime/executor.c: microbatch m reuses the slot of m - slots once every consumer
 *     finished that one, slots from pippy_sched_slots): an independent replay written here;
 *   - fewer microbatches than stages: zb-h1 is never slower than 1f1b and holds min(p, m);
 *   - zb-h1 with v stages on each of R ranks (the looping placement): each rank idles
 *     (R-1)(tf+tb-tw) where interleaved-1f1b idles (R-1)(tf+tb), with the same stash per stage;
 *   - --schedule auto: the fastest that fits --memory-per-rank, the memory of each candidate as
 *     the stash it holds, ties to the smaller peak then gpipe, 1f1b, zb-h1; refusals naming the
 *     smallest peak; inference compares gpipe only. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "schedule.h"
#include "schedule_sim.h"

#define MIB 1048576.0

/* p stages, m microbatches, the given times (ms) on every stage, stash_mib[s] MiB of stash per
 * microbatch (NULL: none), training. */
static void chain_make(pippy_plan *p, int32_t S, int32_t M, double tf, double tb, double tw, const double *stash_mib,
                       int training)
{
    memset(p, 0, sizeof *p);
    p->n_stages = S;
    p->microbatches = M;
    p->training = training;
    p->loss = -1;
    p->stages = calloc((size_t)S, sizeof *p->stages);
    p->edges = calloc((size_t)(2 * S), sizeof *p->edges);
    ck_assert(p->stages && p->edges);
    for (int32_t s = 0; s < S; s++) {
        pippy_stage *sg = &p->stages[s];
        sg->index = s, sg->rank = s;
        sg->pred_forward_ms = tf, sg->pred_backward_ms = tb, sg->pred_weight_ms = tw;
        sg->stash_bytes = stash_mib ? (uint64_t)(stash_mib[s] * MIB) : 0;
        if (s + 1 < S) {
            p->edges[p->n_edges] = (pippy_edge){.id = p->n_edges, .producer = s, .phase = PIPPY_PHASE_F,
                                                .consumers = {s + 1}, .n_consumers = 1, .bytes = 4096};
            p->n_edges++;
            if (training) {
                p->edges[p->n_edges] = (pippy_edge){.id = p->n_edges, .producer = s + 1, .phase = PIPPY_PHASE_B,
                                                    .consumers = {s}, .n_consumers = 1, .bytes = 4096};
                p->n_edges++;
            }
        }
    }
}

static void chain_build(pippy_plan *p, const char *schedule)
{
    snprintf(p->schedule, sizeof p->schedule, "%s", schedule);
    pippy_status st = pippy_schedule_build(p);
    ck_assert_msg(st == PIPPY_OK, "%s: %s", schedule, pippy_last_error());
}

/* The chain plan's lists replayed here with the runtime's slot credits: F(m) of stage s waits for
 * its activations (F(m) of s-1) and for stage s+1 to have finished (W) microbatch m - slots of the
 * activation edge; B(m) for its gradients (B(m) of s+1) and for stage s-1 to have finished m - slots
 * of the gradient edge; transfers are free, the rest of the actions take no time. The step (ms). */
static double credit_replay(const pippy_plan *p)
{
    int32_t S = p->n_stages, M = p->microbatches, held[PIPPY_MAX_STAGES], act[PIPPY_MAX_STAGES] = {0},
            grad[PIPPY_MAX_STAGES] = {0}, pos[PIPPY_MAX_STAGES] = {0};
    double clock[PIPPY_MAX_STAGES] = {0}, *end = malloc((size_t)S * (size_t)M * PIPPY_PHASES * sizeof *end);
    ck_assert(end != NULL);
    for (size_t i = 0; i < (size_t)S * (size_t)M * PIPPY_PHASES; i++)
        end[i] = -1;
#define END(st, mb, ph) end[((size_t)(st) * (size_t)M + (size_t)(mb)) * PIPPY_PHASES + (ph)]
    for (int32_t s = 0; s < S; s++)
        held[s] = p->stages[s].stash_slots;
    for (int32_t s = 0; s + 1 < S; s++) {
        int32_t next = s + 1, prev = s;
        act[s] = pippy_sched_slots(1, M, 0, held, s, &next, 1);
        grad[s] = pippy_sched_slots(1, M, 0, held, s + 1, &prev, 1);
    }
    for (int progress = 1; progress;) {
        progress = 0;
        for (int32_t s = 0; s < S; s++)
            for (; pos[s] < p->n_actions[s]; pos[s]++) {
                const pippy_action *a = &p->actions[s][pos[s]];
                int ph = a->kind == PIPPY_ACT_F ? PIPPY_PHASE_F : a->kind == PIPPY_ACT_B ? PIPPY_PHASE_B
                       : a->kind == PIPPY_ACT_W ? PIPPY_PHASE_W : -1;
                if (ph < 0)
                    continue;
                double need[2] = {0, 0};
                int m = a->mb;
                if (ph == PIPPY_PHASE_F) {
                    need[0] = s > 0 ? END(s - 1, m, PIPPY_PHASE_F) : 0;
                    need[1] = s + 1 < S && m >= act[s] ? END(s + 1, m - act[s], PIPPY_PHASE_W) : 0;
                } else if (ph == PIPPY_PHASE_B) {
                    need[0] = s + 1 < S ? END(s + 1, m, PIPPY_PHASE_B) : 0;
                    need[1] = s > 0 && m >= grad[s - 1] ? END(s - 1, m - grad[s - 1], PIPPY_PHASE_W) : 0;
                }
                if (need[0] < 0 || need[1] < 0)
                    break;
                double t = clock[s] > need[0] ? clock[s] : need[0];
                t = t > need[1] ? t : need[1];
                const pippy_stage *sg = &p->stages[s];
                clock[s] = t + (ph == PIPPY_PHASE_F ? sg->pred_forward_ms
                                : ph == PIPPY_PHASE_B ? sg->pred_backward_ms : sg->pred_weight_ms);
                END(s, m, ph) = clock[s];
                progress = 1;
            }
    }
#undef END
    double step = 0;
    for (int32_t s = 0; s < S; s++) {
        ck_assert_msg(pos[s] == p->n_actions[s], "%s: the slot credits deadlock stage %d at action %d", p->schedule,
                      s, pos[s]);
        step = clock[s] > step ? clock[s] : step;
    }
    free(end);
    return step;
}

static int close_rel(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-12; }

START_TEST(test_zbh1_bubble_formula)
{
    static const double costs[][3] = {{1, 1, 1}, {1, 1.5, 0.75}, {1, 2, 1}, {2, 1, 1}, {1, 1, 0.5}};
    static const int32_t ps[] = {2, 3, 4, 5, 8};
    for (size_t c = 0; c < sizeof costs / sizeof *costs; c++)
        for (size_t a = 0; a < sizeof ps / sizeof *ps; a++) {
            int32_t p = ps[a];
            int32_t ms[] = {p, p + 1, 2 * p, 16};
            for (size_t b = 0; b < sizeof ms / sizeof *ms; b++) {
                int32_t m = ms[b];
                double tf = costs[c][0], tb = costs[c][1], tw = costs[c][2], busy = m * (tf + tb + tw);
                pippy_plan zb, one;
                chain_make(&zb, p, m, tf, tb, tw, NULL, 1);
                chain_make(&one, p, m, tf, tb, tw, NULL, 1);
                chain_build(&zb, "zb-h1");
                chain_build(&one, "1f1b");
                double zb_idle = (p - 1) * (tf + tb - tw), one_idle = (p - 1) * (tf + tb);
                ck_assert_msg(close_rel(zb.pred_step_ms, busy + zb_idle, 1e-9),
                              "zb-h1 tf=%g tb=%g tw=%g p=%d m=%d: step %.12g ms, paper m(tf+tb+tw)+(p-1)(tf+tb-tw) "
                              "= %.12g",
                              tf, tb, tw, p, m, zb.pred_step_ms, busy + zb_idle);
                double zb_credit = credit_replay(&zb), one_credit = credit_replay(&one);
                ck_assert_msg(close_rel(zb_credit, busy + zb_idle, 1e-9) && close_rel(one_credit, busy + one_idle, 1e-9),
                              "tf=%g tb=%g tw=%g p=%d m=%d, waiting for slots: zb-h1 %.12g ms (expected %.12g), 1f1b "
                              "%.12g ms (expected %.12g)", tf, tb, tw, p, m, zb_credit, busy + zb_idle, one_credit,
                              busy + one_idle);
                ck_assert_msg(close_rel(one.pred_step_ms, busy + one_idle, 1e-9),
                              "1f1b tf=%g tb=%g tw=%g p=%d m=%d: step %.12g ms, m(tf+tb+tw)+(p-1)(tf+tb) = %.12g", tf,
                              tb, tw, p, m, one.pred_step_ms, busy + one_idle);
                int32_t held_max = 0;
                for (int32_t s = 0; s < p; s++) {
                    ck_assert_msg(close_rel(zb.pred_idle_ms[s], zb_idle, 1e-9) &&
                                      close_rel(one.pred_idle_ms[s], one_idle, 1e-9),
                                  "p=%d m=%d rank %d idles %.12g (zb-h1) / %.12g (1f1b) ms, expected %g / %g", p, m, s,
                                  zb.pred_idle_ms[s], one.pred_idle_ms[s], zb_idle, one_idle);
                    int32_t one_held = p - s < m ? p - s : m;
                    ck_assert_msg(zb.stages[s].stash_slots == (p < m ? p : m) && one.stages[s].stash_slots == one_held,
                                  "p=%d m=%d stage %d holds %d (zb-h1) / %d (1f1b) microbatches, expected %d / %d", p,
                                  m, s, zb.stages[s].stash_slots, one.stages[s].stash_slots, p < m ? p : m, one_held);
                    held_max = one.stages[s].stash_slots > held_max ? one.stages[s].stash_slots : held_max;
                }
                ck_assert_int_eq(held_max, zb.stages[0].stash_slots);
                if (tf == tb && tb == tw) /* a half of this 1F1B's bubble, a third of the fused-backward one's */
                    ck_assert(close_rel(3 * zb_idle, (p - 1) * (tf + tb + tw), 1e-12) &&
                              close_rel(2 * zb.pred_idle_ms[0], one.pred_idle_ms[0], 1e-9));
                pippy_plan_free(&zb);
                pippy_plan_free(&one);
            }
        }
}
END_TEST

START_TEST(test_zbh1_few_microbatches)
{
    for (int32_t p = 2; p <= 8; p++)
        for (int32_t m = 1; m < p; m++) {
            pippy_plan zb, one;
            chain_make(&zb, p, m, 1, 1.5, 0.75, NULL, 1);
            chain_make(&one, p, m, 1, 1.5, 0.75, NULL, 1);
            chain_build(&zb, "zb-h1");
            chain_build(&one, "1f1b");
            ck_assert_msg(zb.pred_step_ms <= one.pred_step_ms + 1e-9, "p=%d m=%d: zb-h1 %.12g ms, 1f1b %.12g ms", p, m,
                          zb.pred_step_ms, one.pred_step_ms);
            for (int32_t s = 0; s < p; s++)
                ck_assert_int_eq(zb.stages[s].stash_slots, m);
            pippy_plan_free(&zb);
            pippy_plan_free(&one);
        }
}
END_TEST

static pippy_status choose(pippy_plan *p, const char *name, double limit_mib, pippy_schedule_report *rep)
{
    pippy_error_clear();
    pippy_schedule_opts o = {name, (uint64_t)(limit_mib * MIB), 0};
    return pippy_schedule_choose(p, &o, rep);
}

/* 4 stages, M = 8, uniform times; stash per microbatch 1, 1, 1, 2 MiB. Peak per rank: gpipe holds
 * 8 everywhere (16 MiB on rank 3); 1f1b 4, 3, 2, 1 (4 MiB on rank 0); zb-h1 4 everywhere (8 MiB on
 * rank 3). Predicted steps: zb-h1 < 1f1b = gpipe (uniform times: both idle (p-1)(tf+tb)). */
static const double stash4[] = {1, 1, 1, 2};

START_TEST(test_auto_choice)
{
    pippy_plan p;
    pippy_schedule_report rep;
    static const struct {
        double limit_mib;
        const char *want;
    } cases[] = {{0, "zb-h1"}, {1e6, "zb-h1"}, {8, "zb-h1"}, {7.99, "1f1b"}, {4, "1f1b"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        chain_make(&p, 4, 8, 1, 1, 1, stash4, 1);
        ck_assert_msg(choose(&p, "auto", cases[i].limit_mib, &rep) == PIPPY_OK, "%s", pippy_last_error());
        ck_assert_int_eq(rep.n, 3);
        ck_assert_msg(!strcmp(p.schedule, cases[i].want) && !strcmp(rep.c[rep.chosen].name, cases[i].want),
                      "limit %g MiB: chose %s, expected %s", cases[i].limit_mib, p.schedule, cases[i].want);
        ck_assert(!strcmp(rep.c[0].name, "gpipe") && !strcmp(rep.c[1].name, "1f1b") && !strcmp(rep.c[2].name, "zb-h1"));
        ck_assert(rep.c[2].step_ms < rep.c[1].step_ms - 1 && fabs(rep.c[1].step_ms - rep.c[0].step_ms) < 1e-9);
        ck_assert_msg(fabs(rep.c[0].peak_bytes - 16 * MIB) < 1 && fabs(rep.c[1].peak_bytes - 4 * MIB) < 1 &&
                          fabs(rep.c[2].peak_bytes - 8 * MIB) < 1,
                      "peaks %g %g %g", rep.c[0].peak_bytes, rep.c[1].peak_bytes, rep.c[2].peak_bytes);
        ck_assert(rep.c[0].peak_rank == 3 && rep.c[1].peak_rank == 0 && rep.c[2].peak_rank == 3);
        /* the plan holds the chosen schedule's lists and stash slots */
        int32_t s3 = !strcmp(cases[i].want, "1f1b") ? 1 : 4;
        ck_assert_int_eq(p.stages[3].stash_slots, s3);
        ck_assert(fabs(p.pred_step_ms - rep.c[rep.chosen].step_ms) < 1e-12);
        pippy_plan_free(&p);
    }
    /* nothing fits: the smallest peak is named */
    chain_make(&p, 4, 8, 1, 1, 1, stash4, 1);
    ck_assert_int_eq(choose(&p, "auto", 3.5, &rep), PIPPY_ERR_UNSUPPORTED);
    const char *msg = pippy_last_error();
    ck_assert_msg(strstr(msg, "no schedule fits") && strstr(msg, "the smallest is 1f1b's, 4194304 bytes (4.00 MiB)") &&
                      strstr(msg, "gpipe 16.00 MiB (rank 3)") && strstr(msg, "zb-h1 8.00 MiB (rank 3)"),
                  "%s", msg);
    pippy_plan_free(&p);
    /* a named schedule: built when it fits, refused when it does not */
    chain_make(&p, 4, 8, 1, 1, 1, stash4, 1);
    ck_assert_int_eq(choose(&p, "zb-h1", 7, &rep), PIPPY_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(pippy_last_error(), "--schedule zb-h1: rank 3 would need 8388608 bytes") &&
                      strstr(pippy_last_error(), "--schedule auto tries"),
                  "%s", pippy_last_error());
    pippy_plan_free(&p);
    chain_make(&p, 4, 8, 1, 1, 1, stash4, 1);
    ck_assert_int_eq(choose(&p, "gpipe", 0, &rep), PIPPY_OK);
    ck_assert(!strcmp(p.schedule, "gpipe") && rep.n == 1 && !rep.automatic);
    pippy_plan_free(&p);
}
END_TEST

START_TEST(test_auto_ties_and_inference)
{
    pippy_plan p;
    pippy_schedule_report rep;
    /* one microbatch: every schedule takes as long and holds as much: gpipe, the first */
    chain_make(&p, 3, 1, 1, 1, 1, stash4, 1);
    ck_assert_int_eq(choose(&p, "auto", 0, &rep), PIPPY_OK);
    ck_assert_msg(!strcmp(p.schedule, "gpipe"), "chose %s", p.schedule);
    pippy_plan_free(&p);
    /* equal steps (one stage), 1f1b and zb-h1 hold less than gpipe: the smaller peak, 1f1b */
    chain_make(&p, 1, 4, 1, 1, 1, stash4, 1);
    ck_assert_int_eq(choose(&p, "auto", 0, &rep), PIPPY_OK);
    ck_assert_msg(!strcmp(p.schedule, "1f1b"), "chose %s", p.schedule);
    pippy_plan_free(&p);
    /* inference: gpipe only */
    chain_make(&p, 3, 4, 1, 0, 0, NULL, 0);
    ck_assert_int_eq(choose(&p, "auto", 0, &rep), PIPPY_OK);
    ck_assert(rep.n == 1 && !strcmp(p.schedule, "gpipe"));
    pippy_plan_free(&p);
    chain_make(&p, 3, 4, 1, 0, 0, NULL, 0);
    ck_assert_int_eq(choose(&p, "zb-h1", 0, &rep), PIPPY_ERR_USAGE);
    ck_assert_msg(strstr(pippy_last_error(), "--schedule zb-h1 needs --train"), "%s", pippy_last_error());
    pippy_plan_free(&p);
    chain_make(&p, 3, 4, 1, 1, 1, NULL, 1);
    ck_assert_int_eq(choose(&p, "zb-h2", 0, &rep), PIPPY_ERR_USAGE);
    ck_assert_msg(strstr(pippy_last_error(), "--schedule zb-h2: known schedules are gpipe, 1f1b, zb-h1, interleaved-1f1b, dynamic and auto"), "%s",
                  pippy_last_error());
    pippy_plan_free(&p);
}
END_TEST

/* The chain of R*v stages on R ranks, the looping placement (stage s on rank s mod R). */
static void loop_make(pippy_plan *p, int32_t R, int32_t v, int32_t M, double tf, double tb, double tw)
{
    chain_make(p, R * v, M, tf, tb, tw, NULL, 1);
    for (int32_t s = 0; s < R * v; s++)
        p->stages[s].rank = s % R;
    p->n_ranks = R;
}

/* Where action (kind, stage, mb) is in rank r's list; -1: absent. */
static int32_t action_at(const pippy_plan *p, int32_t r, int32_t kind, int32_t s, int32_t m)
{
    for (int32_t k = 0; k < p->n_actions[r]; k++)
        if (p->actions[r][k].kind == kind && p->actions[r][k].stage == s && p->actions[r][k].mb == m)
            return k;
    return -1;
}

/* zb-h1 with v stages on each of R ranks (the looping placement), stages of equal times: every
 * rank idles (R-1)(tf+tb-tw) per step where interleaved-1f1b's idle (R-1)(tf+tb) (Megatron-LM's
 * (p-1)/(v*m+p-1) of the step when tw = 0), holding as many microbatches per stage at most; each
 * W after its B. */
START_TEST(test_zbh1_interleaved)
{
    static const double t[][3] = {{1, 1, 1}, {1, 1.5, 0.75}, {1, 2, 0}};
    for (int32_t R = 2; R <= 4; R++)
        for (int32_t v = 2; v <= 3; v++)
            for (int32_t M = R; M <= 4 * R; M += R)
                for (size_t c = 0; c < sizeof t / sizeof t[0]; c++) {
                    double tf = t[c][0], tb = t[c][1], tw = t[c][2], busy = M * v * (tf + tb + tw);
                    double zb_idle = (R - 1) * (tf + tb - tw), il_idle = (R - 1) * (tf + tb);
                    pippy_plan zb, il;
                    loop_make(&zb, R, v, M, tf, tb, tw);
                    loop_make(&il, R, v, M, tf, tb, tw);
                    chain_build(&zb, "zb-h1");
                    chain_build(&il, "interleaved-1f1b");
                    ck_assert_msg(close_rel(zb.pred_step_ms, busy + zb_idle, 1e-9) &&
                                      close_rel(il.pred_step_ms, busy + il_idle, 1e-9),
                                  "R=%d v=%d M=%d t=%g/%g/%g: zb-h1 %.12g ms (expected %.12g), interleaved %.12g "
                                  "(expected %.12g)", R, v, M, tf, tb, tw, zb.pred_step_ms, busy + zb_idle,
                                  il.pred_step_ms, busy + il_idle);
                    int32_t zs = 0, is = 0;
                    for (int32_t r = 0; r < R; r++)
                        ck_assert_msg(close_rel(zb.pred_idle_ms[r], zb_idle, 1e-9), "R=%d v=%d M=%d rank %d idles %g",
                                      R, v, M, r, zb.pred_idle_ms[r]);
                    for (int32_t s = 0; s < R * v; s++) {
                        zs = zb.stages[s].stash_slots > zs ? zb.stages[s].stash_slots : zs;
                        is = il.stages[s].stash_slots > is ? il.stages[s].stash_slots : is;
                        for (int32_t m = 0; m < M; m++) {
                            int32_t b = action_at(&zb, s % R, PIPPY_ACT_B, s, m);
                            int32_t w = action_at(&zb, s % R, PIPPY_ACT_W, s, m);
                            ck_assert_msg(b >= 0 && w > b, "R=%d v=%d M=%d stage %d mb %d: B at %d, W at %d", R, v, M,
                                          s, m, b, w);
                        }
                    }
                    ck_assert_msg(zs == is, "R=%d v=%d M=%d: zb-h1 holds %d microbatches on a stage, interleaved %d",
                                  R, v, M, zs, is);
                    pippy_plan_free(&zb);
                    pippy_plan_free(&il);
                }
}
END_TEST

static Suite *schedule_build_suite(void)
{
    Suite *s = suite_create("schedule_build");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_zbh1_bubble_formula);
    tcase_add_test(tc, test_zbh1_few_microbatches);
    tcase_add_test(tc, test_zbh1_interleaved);
    tcase_add_test(tc, test_auto_choice);
    tcase_add_test(tc, test_auto_ties_and_inference);
    suite_add_tcase(s, tc);
    return s;
}

PIPPY_TEST_SUITE(schedule_build_suite)
