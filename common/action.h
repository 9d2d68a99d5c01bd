/* action.h — what a rank does in one step: the actions of schedule.json.
 *
 * One enum and one table, shared by the compiler's schedule builder and JSON writer, the
 * runtime's reader and executor, and the schedule checker/simulator (schedule_sim.h):
 *
 *   F(stage, mb)         forward of one microbatch: waits for its activations, computes
 *   B(stage, mb)         input gradients: waits for the gradients sent back to the stage, computes
 *                        what earlier stages wait for
 *   W(stage, mb)         weight gradients: accumulates them into the stage's gradient buffer
 *   SEND_F(stage, mb, peer) / RECV_F   activations of mb from stage to stage peer / posting their
 *                        receive (non-blocking: F waits for the data)
 *   SEND_B(stage, mb, peer) / RECV_B   gradients sent back, likewise (B waits)
 *   ALLREDUCE(stage, peer = reduction id)   sums a group's gradients (tied parameters kept as
 *                        replicas in several stages; data-parallel replicas of a stage)
 *   STEP                 the optimizer step: the global loss, gradient norm and non-finite check
 *                        are reduced over every rank first (a barrier), then every stage of the rank
 *                        updates its parameters and clears its gradients
 *
 * Message tags (the transport's 48-bit user tags): bits 47..44 the kind (activation, gradient,
 * weight, reduction), 43..24 the edge (or reduction id), 23..0 the microbatch (or a collective's
 * own step). The top kind (15) is the runtime's control messages. */
#ifndef PIPPY_ACTION_H
#define PIPPY_ACTION_H

#include <stdint.h>

/* The phases of a stage's work on one microbatch. F: forward; B: gradients of activations (what
 * earlier stages wait for); W: gradients of parameters (zero-bubble schedules may defer them). */
enum { PIPPY_PHASE_F = 0, PIPPY_PHASE_B, PIPPY_PHASE_W, PIPPY_PHASES };

typedef enum {
    PIPPY_ACT_F = 0,
    PIPPY_ACT_B,
    PIPPY_ACT_W,
    PIPPY_ACT_SEND_F,
    PIPPY_ACT_RECV_F,
    PIPPY_ACT_SEND_B,
    PIPPY_ACT_RECV_B,
    PIPPY_ACT_ALLREDUCE,
    PIPPY_ACT_STEP,
    PIPPY_ACT_KINDS
} pippy_act_kind;

typedef struct {
    const char *name;   /* as in schedule.json */
    int32_t phase;      /* the phase it computes or whose values it moves (PIPPY_PHASE_*), -1 for the
                           collectives */
    int32_t compute;    /* 1: runs one of the stage's generated functions */
    int32_t transfer;   /* 1: sends, -1: posts receives, 0: neither */
    int32_t has_mb;     /* names a microbatch */
    int32_t has_peer;   /* names a peer stage (transfers) or a reduction (ALLREDUCE) */
    int32_t training;   /* only in training schedules */
} pippy_act_info;

typedef struct {
    int32_t kind;  /* pippy_act_kind */
    int32_t stage; /* the stage it belongs to (-1 for STEP) */
    int32_t mb;    /* microbatch, -1 when none */
    int32_t peer;  /* peer stage of a transfer, reduction id of ALLREDUCE, else -1 */
} pippy_action;

const pippy_act_info *pippy_act_info_of(int32_t kind); /* NULL when out of range */
int32_t pippy_act_parse(const char *name);             /* -1 when unknown */
/* "SEND_F(stage 1, mb 3 -> stage 2)" into buf. */
char *pippy_act_str(const pippy_action *a, char *buf, int n);

enum { PIPPY_TAG_ACTIVATION = 0, PIPPY_TAG_GRADIENT = 1, PIPPY_TAG_WEIGHT = 2, PIPPY_TAG_REDUCTION = 3,
       PIPPY_TAG_CONTROL = 15 };

static inline uint64_t pippy_tag_make(int kind, int edge, int mb)
{
    return ((uint64_t)(kind & 0xf) << 44) | ((uint64_t)(edge & 0xfffff) << 24) | (uint64_t)(mb & 0xffffff);
}

#endif
