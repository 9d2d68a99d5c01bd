/* stage.h — what a generated stage program hands to the runtime.
 *
 * out/stageK.c defines one pippy_stage_program and a main() that calls
 * pippy_stage_main(). The runtime does everything else: arguments, the
 * schedule, the weights mapping, the arena, the peers, the action loop, the
 * tensor files and the trace. */
#ifndef PIPPY_STAGE_H
#define PIPPY_STAGE_H

#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "place.h"
#include "status.h"
#include "tensor.h"

typedef struct {
    const char *name; /* ONNX value name */
    pippy_tdesc t;    /* type and shape of one microbatch */
} pippy_stage_value;


typedef struct {
    const char *name;
    pippy_tdesc t;
    int32_t place;   /* PIPPY_PLACE_* */
    uint64_t at;     /* slot index or byte offset */
    int32_t node;    /* the kernel index after which it is complete (-1: from outside) */
} pippy_stage_value_info;

/* One phase of one microbatch. K: the kernels; A: the arena; S: this microbatch's stash; W: the
 * weights (parameters first); G: the gradient buffer (training); in/out: the microbatch's slots. */
typedef void (*pippy_stage_fn)(pippy_kernel *const *K, uint8_t *A, uint8_t *S, uint8_t *W, uint8_t *G,
                               const void *const *in, void *const *out);

typedef struct {
    const char *pippyc_version;
    const char *source;           /* "stage0.c" */
    uint64_t hash;                /* compile hash; schedule.json and the weights must carry the same */
    int32_t stage, n_stages;
    uint64_t arena_bytes;
    uint64_t weights_bytes;
    int32_t n_inputs;
    const pippy_stage_value *inputs;   /* in schedule.json's stages[stage].inputs order */
    int32_t n_outputs;
    const pippy_stage_value *outputs;  /* in schedule.json's stages[stage].outputs order */
    int32_t n_kernels;
    /* Create every kernel (once, at start). W: the weights data. */
    pippy_status (*init)(pippy_kernel **K, const uint8_t *W);
    pippy_stage_fn forward;       /* F */
    /* Training (NULL / 0 at inference). */
    int32_t training;
    pippy_stage_fn backward;      /* B: the gradients earlier stages wait for */
    pippy_stage_fn weight;        /* W: the weight gradients, added into G */
    uint64_t stash_bytes;         /* one microbatch's stash */
    int32_t stash_slots;          /* microbatches the schedule holds at once */
    uint64_t trainable_bytes;     /* W's first bytes: the trained parameters; the size of G */
    int32_t n_values;
    const pippy_stage_value_info *values; /* every value the stage touches */
} pippy_stage_program;

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p);
/* The same for a rank that runs several stages (programs linked into one binary). */
int pippy_rank_main(int argc, char **argv, const pippy_stage_program *const *progs, int n);

/* Let transfers in flight move while this stage computes (the generated forward calls it after
 * each long kernel; a no-op when the stage has no peers). */
void pippy_stage_progress(void);

/* Called after every kernel when PIPPY_DUMP asks for values (pippy_stage_dumping set): writes
 * those that kernel k completed. */
extern int pippy_stage_dumping;
void pippy_stage_after(int k, uint8_t *A, uint8_t *S, uint8_t *W, uint8_t *G, const void *const *in,
                       void *const *out);
#define PIPPY_AFTER(k)                                   \
    do {                                                 \
        if (pippy_stage_dumping)                         \
            pippy_stage_after(k, A_, S_, W_, G_, in_, out_); \
    } while (0)

/* Shorthands the generated code uses. */
#define PIPPY_T(dt, r, ...) {PIPPY_DT_##dt, r, {__VA_ARGS__}}
#define PIPPY_IN(...) ((const void *const[]){__VA_ARGS__})
#define PIPPY_OUT(...) ((void *const[]){__VA_ARGS__})

#endif
