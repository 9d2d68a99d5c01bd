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
#include "status.h"
#include "tensor.h"

typedef struct {
    const char *name; /* ONNX value name */
    pippy_tdesc t;    /* type and shape of one microbatch */
} pippy_stage_value;

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
    /* Run one microbatch. A: arena; in/out: this microbatch's input and output slots. */
    void (*forward)(pippy_kernel *const *K, uint8_t *A, const uint8_t *W, const void *const *in,
                    void *const *out);
} pippy_stage_program;

int pippy_stage_main(int argc, char **argv, const pippy_stage_program *p);

/* Let transfers in flight move while this stage computes (the generated forward calls it after
 * each long kernel; a no-op when the stage has no peers). */
void pippy_stage_progress(void);

/* Shorthands the generated code uses. */
#define PIPPY_T(dt, r, ...) {PIPPY_DT_##dt, r, {__VA_ARGS__}}
#define PIPPY_IN(...) ((const void *const[]){__VA_ARGS__})
#define PIPPY_OUT(...) ((void *const[]){__VA_ARGS__})

#endif
