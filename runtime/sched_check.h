/* sched_check.h — the structure of schedule.json, checked before a stage program uses any of it.
 *
 * schedule.json may be edited by hand (README), so every field the runtime reads is checked for
 * its type and range before a connection is made: ranks and stages listed once each and in range,
 * every stage index (inputs' "from", outputs' "to", actions' "peer") naming an existing stage,
 * microbatch indices below config.microbatches, edge ids that fit a message tag, programs and
 * weights named as plain files of the OUT folder. A value out of range is an error naming the
 * field ("stages[1].outputs[0].to[0] is -5, expected a stage 0..2"), never an index into memory.
 * Whether the action lists fit together (send/receive pairs, order, no cycle) is not checked
 * here: that is the schedule validator's job. */
#ifndef PIPPY_SCHED_CHECK_H
#define PIPPY_SCHED_CHECK_H

#include <cjson/cJSON.h>

#include "status.h"

#define PIPPY_SCHED_MAX_RANKS 256
#define PIPPY_SCHED_MAX_MICROBATCHES (1 << 20)
#define PIPPY_SCHED_MAX_EDGE ((1 << 24) - 1) /* executor tags: edge << 24 | microbatch */
#define PIPPY_SCHED_MAX_TO 64

/* Check root (parsed from path, for messages) for a program of stage `stage` out of n_stages. */
pippy_status pippy_sched_fields_check(const cJSON *root, const char *path, int n_stages, int stage);

/* 1 when name is a plain file name (no '/', not "." or "..", not empty, at most 255 bytes). */
int pippy_sched_plain_name(const char *name);

#endif
