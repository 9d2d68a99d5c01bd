/* schedule_sim.h — checks a pipeline schedule and predicts how it runs.
 *
 * One definition, used by the compiler (to validate what it built and to predict step time,
 * bubble and the microbatches each stage holds at once) and by every stage program (to refuse a
 * hand-edited schedule.json before any connection is made). The rules, each failure naming the
 * rank, the action and the rule:
 *   - every action names a stage its rank runs, a microbatch in range, a peer that exchanges data
 *     with its stage in that phase (or a reduction its stage belongs to);
 *   - each stage runs F once per microbatch (training: B and W once each too, F before B before W);
 *   - for every pair of stages that exchange values in a phase and every microbatch, exactly one
 *     send (after the computation that makes the data) and one receive (posted before the
 *     computation that needs it);
 *   - per member stage of a reduction: ALLREDUCE once (REDUCE once and BROADCAST once when the
 *     reduction transmits its parameter), ALLREDUCE / REDUCE after that stage's last W, BROADCAST
 *     before its first F; training: STEP once per rank, last; inference: none of these, no B, no W;
 *   - replaying the lists (computations wait for their data, collectives for every member) ends
 *     with every rank done: no deadlock; a stage never holds more microbatches than it has stash
 *     slots for.
 * The replay is also the prediction: computations take the given per-stage times, transfers
 * latency + bytes / bandwidth, collectives pippy_sched_collective_s, each rank runs its actions
 * in order.
 *
 * A dynamic schedule (window K > 0) is checked by the same rules on its lists (the canonical
 * order), except the stash: each stage holds up to min(K, microbatches) microbatches at once (the
 * window rule: its program must keep that many stash slots). Its replay follows the policy of
 * schedule_dyn.h instead of the list order: transfers at once; at each moment, every rank whose
 * clock is the earliest runs the first action in list order that the policy allows and whose data
 * is there (activations / gradients arrived, consumers done with the slot its outputs take:
 * microbatch m - slots), idling until the earliest such when none is. Ranks are taken in order of
 * that time (ties: the lower rank; times within 1e-9 relative count as equal). */
#ifndef PIPPY_SCHEDULE_SIM_H
#define PIPPY_SCHEDULE_SIM_H

#include <stdint.h>

#include "action.h"
#include "status.h"

typedef struct {
    int32_t producer;         /* stage */
    int32_t phase;            /* PIPPY_PHASE_F (activation) or PIPPY_PHASE_B (gradient) */
    int32_t n_consumers;
    const int32_t *consumers; /* stages */
    uint64_t bytes;           /* per microbatch */
} pippy_sched_edge;

typedef struct {
    int32_t n_stages, n_ranks, microbatches;
    int32_t training;
    const int32_t *stage_rank;            /* per stage */
    int32_t n_edges;
    const pippy_sched_edge *edges;
    int32_t n_reductions;
    const int32_t *reduction_n;           /* per reduction: how many member stages */
    const int32_t *const *reduction_stages;
    const int32_t *reduction_transmit;    /* per reduction: 1 when REDUCE + BROADCAST replace ALLREDUCE
                                             (NULL: none does) */
    const double *reduction_bytes;        /* per reduction: bytes of its gradient (NULL: collectives
                                             cost collective_s only; see pippy_sched_collective_s) */
    const int32_t *reduction_dp;          /* per reduction: 1 when it sums a stage over the replicas
                                             (--dp; NULL: none does) */
    int32_t replicas;                     /* --dp D: the processes of a data-parallel reduction */
    const int32_t *n_actions;             /* per rank */
    const pippy_action *const *actions;   /* per rank */
    /* For the prediction (each may be 0 / NULL). */
    const double *stage_s;                /* per stage x PIPPY_PHASES: seconds per microbatch */
    const double *optimizer_s;            /* per stage: seconds of its optimizer step, which its rank
                                             runs after STEP (NULL: none) */
    double link_latency_s, link_bytes_per_s, collective_s;
    const int32_t *stash_slots;           /* per stage: microbatches it can hold; NULL: no bound */
    int32_t window;                       /* > 0: the dynamic schedule with this window (config.window,
                                             schedule_dyn.h): the lists are sets, the order is decided
                                             at run time; 0: each list runs in order */
} pippy_sched;

/* When one action runs in the replay (seconds from the start of the step):
 *   F, B, W          from when it starts computing (its data there, the rank free) to its end;
 *   SEND_F, SEND_B   from the send (right after the computation that made the data) to the
 *                    data's arrival at the peer (latency + bytes / bandwidth);
 *   RECV_F, RECV_B   from posting the receive to the data's arrival (or the posting, when the
 *                    data was there first);
 *   ALLREDUCE, STEP  from when every member is there to the end of the collective (an earlier
 *                    ALLREDUCE of a reduction with several member stages on one rank: its
 *                    contribution, a point); STEP then to the end of the optimizer steps of the
 *                    rank's stages (optimizer_s, busy time). */
typedef struct {
    double start_s, end_s;
} pippy_sched_span;

typedef struct {
    double step_s;      /* when the last rank finishes */
    double bubble;      /* 1 - busy time / (ranks x step) */
    double *busy_s;     /* per rank (the caller's array, or NULL) */
    double *idle_s;     /* per rank: step - busy (the caller's array, or NULL) */
    int32_t *in_flight; /* per stage: the most microbatches between F and their last backward action
                           (dynamic: min(window, M)) (the caller's array, or NULL) */
    pippy_sched_span *const *spans; /* per rank: n_actions[r] spans, one per action (the caller's
                                       arrays, or NULL; see pippy_sched_span) */
} pippy_sched_result;

/* How many microbatch slots a value crossing between stages needs (the credit rule: a slot is
 * reused only after every stage that reads it is done with the microbatch there). Every
 * microbatch (M) at static inference (bounded 0), and for graph inputs, graph outputs and values
 * passed through unchanged (the step's data is loaded, and its losses read, all at once); else
 * (bounded: training, or any dynamic schedule) the most microbatches its producer or any
 * consumer holds at once (in_flight, from pippy_sched_check; min(window, M) in a dynamic
 * schedule): a stage finishes microbatch m - slots before it starts m, so the slot is free by
 * then. A consumer later in the pipeline (the value is an activation) counts one more: its
 * producer writes microbatch m while the consumer may still hold in_flight earlier ones (1F1B's
 * consumers hold one fewer than their producers, so this changes nothing there; where a consumer
 * holds as many, as in zb-h1 or a dynamic window, the producer would otherwise wait each step for
 * the consumer's deferred W). */
int32_t pippy_sched_slots(int32_t bounded, int32_t M, int whole, const int32_t *in_flight, int32_t producer,
                          const int32_t *consumers, int32_t n_consumers);

/* Seconds that collective action a (ALLREDUCE, REDUCE, BROADCAST of reduction a->peer; STEP) takes
 * once its members are there, as collective.c runs it over the n processes that exchange (the
 * ranks of the reduction's member stages; the replicas for a data-parallel one), each message
 * costing latency + bytes / bandwidth: the ring all-reduce makes 2(n - 1) steps of bytes / n
 * each; broadcast and reduce are pipelined chains, (n - 1) latencies and the bytes once. Plus
 * collective_s. One process, or no reduction_bytes: collective_s. */
double pippy_sched_collective_s(const pippy_sched *s, const pippy_action *a);
/* Seconds of the optimizer steps rank r runs after STEP (the sum of its stages' optimizer_s). */
double pippy_sched_optimizer_s(const pippy_sched *s, int32_t r);

/* Checks s (see above) and, when r is not NULL, fills r. Errors are PIPPY_ERR_INVALID with a
 * message naming the rank, action and rule. */
pippy_status pippy_sched_check(const pippy_sched *s, pippy_sched_result *r);

#endif
