/* schedule_dyn.h — the dynamic schedule (pippyc --schedule dynamic --window K): which of a rank's
 * actions may run next. One definition, used by the stage programs' executor (runtime/executor.c,
 * which runs the actions) and by the schedule checker (common/schedule_sim.c, which replays the
 * policy to predict the step and to show that it ends).
 *
 * The rank's action list (schedule.json) is the SET of its actions, written in a canonical order
 * (1F1B in training, GPipe at inference); the order they run in is decided at run time. Per stage
 * of the rank, with lo the oldest microbatch the stage still holds (training: the oldest whose W
 * has not run; inference: the next F):
 *   F(m)     the stage's next forward (forwards run in microbatch order), and m < lo + K: the
 *            lookahead — at most K microbatches in flight, so K stash slots suffice;
 *   B(m)     once F(m) ran (backwards in any order, as their gradients arrive);
 *   W(m)     once B(m) ran, in microbatch order (the gradient sums add up in the same order as
 *            in a static schedule, so the results are bit for bit the same);
 *   SEND     once the computation that makes its data ran; RECV at once: transfers never wait
 *            (pippy_dyn_transfer hands them out first);
 *   ALLREDUCE, REDUCE, BROADCAST, STEP   barriers in list order: one runs once every action
 *            before it in the list ran, and no computation listed after it runs before it.
 * The caller adds the data rule (pippy_dyn_pick's `ready`): the inputs of F / B have arrived and
 * the slots its outputs go to are free — the consumers are done with microbatch m - slots, the
 * back-pressure that bounds how far a producer runs ahead of its consumers, with slots = K on
 * every value between stages (pippy_sched_slots). Among the actions allowed and ready, the first
 * in list order runs: the canonical order is the preference, readiness the rule.
 *
 * Nothing here allocates after pippy_dyn_init. */
#ifndef PIPPY_SCHEDULE_DYN_H
#define PIPPY_SCHEDULE_DYN_H

#include <stdint.h>

#include "action.h"
#include "status.h"

typedef struct {
    const pippy_action *acts; /* the rank's list (the caller's) */
    int32_t n, M, K, training;
    int32_t n_local;          /* stages in the list */
    int32_t *local_of;        /* per stage number (0..max_stage): its local index, -1 */
    int32_t max_stage;
    int32_t *at;              /* [(local * PIPPY_PHASES + phase) * M + m]: list index of that computation */
    int32_t *send_first;      /* per (local, phase, m) cell: its sends are send_list[send_first[c]..[c+1]) */
    int32_t *send_list;
    int32_t *coll;            /* list indices of the collectives, in list order */
    int32_t n_coll;
    /* the step's state (pippy_dyn_reset) */
    char *done;               /* per action */
    char *did;                /* per (local, phase, m) cell */
    int32_t *next_f, *next_w; /* per local stage */
    int32_t *queue;           /* transfers allowed and not yet handed out */
    int32_t q_head, q_tail;
    int32_t coll_pos, barrier; /* the first collective not run (its list index; n: none left) */
    int32_t done_below;       /* actions before the barrier that ran */
    int32_t n_done;
} pippy_dyn;

/* Prepares d for the list acts[0..n) of M microbatches under window K (>= 1); the list must hold
 * each computation of each of its stages once (F; training: B and W too), as the schedule
 * checker guarantees. */
pippy_status pippy_dyn_init(pippy_dyn *d, const pippy_action *acts, int32_t n, int32_t M, int32_t K,
                            int32_t training);
void pippy_dyn_free(pippy_dyn *d);
/* The start of a step: nothing ran. */
void pippy_dyn_reset(pippy_dyn *d);
/* A transfer allowed now (list index), once each; -1 when none. */
int32_t pippy_dyn_transfer(pippy_dyn *d);
/* The computations and the collective allowed now (list indices, ascending) into out, which holds
 * pippy_dyn_cap(d) entries; returns how many. */
int32_t pippy_dyn_candidates(const pippy_dyn *d, int32_t *out);
int32_t pippy_dyn_cap(const pippy_dyn *d);
/* The first candidate in list order for which ready(ctx, index) holds, -1 when none (cand:
 * pippy_dyn_cap(d) entries of scratch). */
int32_t pippy_dyn_pick(const pippy_dyn *d, int (*ready)(void *ctx, int32_t k), void *ctx, int32_t *cand);
/* Action k ran. */
void pippy_dyn_mark(pippy_dyn *d, int32_t k);
/* Whether the computation (stage, phase, m) of this list ran this step (0 for m out of range). */
int pippy_dyn_did(const pippy_dyn *d, int32_t stage, int32_t phase, int32_t m);
static inline int pippy_dyn_finished(const pippy_dyn *d) { return d->n_done == d->n; }

#endif
