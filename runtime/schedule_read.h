/* schedule_read.h — OUT/schedule.json into a rank's state (see schedule_read.c). */
#ifndef PIPPY_SCHEDULE_READ_H
#define PIPPY_SCHEDULE_READ_H

#include "rt.h"

/* Reads path: checks the compile hash and mode against progs (the stage programs linked into this
 * binary), finds this rank's stages (rt->a.rank must be set or the file must have one rank), sets
 * up their inputs and outputs (slots allocated), reads this rank's actions and checks every rank's
 * list. */
pippy_status pippy_schedule_read(pippy_rt *rt, const char *path, const pippy_stage_program *const *progs, int n);

#endif
