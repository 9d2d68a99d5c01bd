/* emit.h — writing the output folder: stageK.c (emit_c.c), schedule.json
 * (emit_json.c), stageK.weights (weights.c), and the helpers they share. */
#ifndef PIPPY_EMIT_H
#define PIPPY_EMIT_H

#include <stdio.h>

#include "plan.h"

#define PIPPY_VERSION "0.1.0"

typedef struct {
    const char *command_line;   /* how pippyc was called, for provenance */
    const char *out_dir;
    const char *optimizer_json; /* training: the optimizer's settings, as JSON (schedule.json keeps them) */
    int32_t optimizer_state;    /* training: floats of optimizer state per trained float (0, 1 or 2) */
    const char *backend;        /* the stage programs' backend: "cpu" (NULL) or "cuda" */
    int32_t tf32;               /* cuda: TF32 allowed */
} pippy_emit_opts;

/* Write out_dir/stageK.c. */
pippy_status pippy_emit_stage_c(const pippy_plan *p, int32_t stage, const pippy_emit_opts *o);
/* Write out_dir/schedule.json. */
pippy_status pippy_emit_schedule_json(const pippy_plan *p, const pippy_emit_opts *o);
/* Write out_dir/stageK.weights. */
pippy_status pippy_emit_weights(const pippy_plan *p, int32_t stage, const pippy_emit_opts *o);

/* rankR.c for a rank that runs several stages: its main hands the stages' programs to
 * pippy_rank_main (the stages' sources are compiled with it, with -DPIPPY_NO_MAIN). */
pippy_status pippy_emit_rank_c(const pippy_plan *p, int32_t r, const pippy_emit_opts *o);

/* Bytes stage s holds while it runs (weights, arena, slots; training: stash, gradients, state). */
double pippy_stage_peak_bytes(const pippy_plan *p, int32_t s, int32_t optimizer_state);

/* Open dir/name.tmp for writing; pippy_file_commit closes it and renames it over
 * dir/name, so a file already there is replaced whole or not at all. */
pippy_status pippy_file_begin(const char *dir, const char *name, FILE **f, char *tmp_path, size_t n);
pippy_status pippy_file_commit(FILE *f, const char *tmp_path);

/* Create dir and its missing parents (mode 0755); fails when dir exists and is not a folder. */
pippy_status pippy_mkdir_p(const char *dir);

/* C identifier "v_<name with every other char as _>" (not unique by itself). */
void pippy_c_ident(const char *name, char *buf, size_t n);

#endif
