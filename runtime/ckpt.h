/* ckpt.h — training checkpoints: one file per stage and saved step, in sets that are either whole
 * or ignored, so that a job killed at any moment resumes from its last complete step.
 *
 * Layout of a checkpoint folder DIR:
 *   DIR/step-<N>/stage<k>.ckpt   every stage's file of step N (N, k decimal)
 *   DIR/latest                   "<N>\n": the newest complete set; written last, atomically
 * A stage's file is written to a temporary name in its step folder, fsync'd, renamed, and the
 * folder fsync'd (pippy_ckpt_write). When every stage's file of step N exists, one process calls
 * pippy_ckpt_commit: it checks them, replaces DIR/latest atomically (temp, fsync, rename, fsync of
 * DIR), then removes the step folders older than N. Until the rename, latest names the previous
 * set, which nothing touches. With several ranks, the caller makes sure (a barrier) that every
 * stage's pippy_ckpt_write of step N returned before one rank commits; the ranks share DIR.
 *
 * File format (little-endian, like the host; all offsets from the start of the file):
 *   header, 64 bytes: magic "PIPPYCK1", u32 version (1), u32 stage, u64 compile hash,
 *     i64 step, u32 n_parts, u32 header_bytes, u64 file_bytes, 16 bytes zero
 *   n_parts entries, 64 bytes each: name (40 bytes, NUL-padded, at most 39 characters),
 *     u64 offset, u64 bytes, 8 bytes zero
 *   zero padding to header_bytes (a multiple of 64); then each part's data at its offset
 *     (64-byte aligned, in the order of the entries, zero padding between)
 *   trailer, 8 bytes: u64 CRC-32 (zlib's crc32, as Python's zlib.crc32) of every byte before it.
 * file_bytes is the whole file, trailer included. Parts are named byte strings; the callers
 * decide what they hold (e.g. "params", "optim", "meta"). */
#ifndef PIPPY_CKPT_H
#define PIPPY_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PIPPY_CKPT_MAGIC "PIPPYCK1"
#define PIPPY_CKPT_VERSION 1
#define PIPPY_CKPT_MAX_PARTS 64
#define PIPPY_CKPT_NAME_MAX 39

typedef struct {
    const char *name;
    void *data;   /* write: the bytes (not modified); read: where they go, or NULL: allocated
                     (malloc, the caller frees) */
    size_t bytes; /* write: the length; read: the expected length (set to the found one when
                     data is NULL) */
} pippy_ckpt_part;

/* Write stage's file of step (>= 0) in dir (created if missing, not its parents): every part
 * (distinct names), then the checksum; atomically (temp file, fsync, rename, fsync of the
 * folder). Replaces a file of the same stage and step. */
pippy_status pippy_ckpt_write(const char *dir, int64_t step, int stage, uint64_t hash,
                              const pippy_ckpt_part *parts, int n);

/* Make step the latest: checks that stage0 .. stage<n_stages-1> of step exist and are whole
 * (header and size; not the checksum), writes dir/latest atomically, then removes the step
 * folders older than step. */
pippy_status pippy_ckpt_commit(const char *dir, int64_t step, int n_stages);

/* The latest committed step in *step, or -1 when dir or dir/latest does not exist. Fails when
 * latest is malformed or names a step whose folder is missing. */
pippy_status pippy_ckpt_latest(const char *dir, int64_t *step);

/* Read the requested parts of stage's file of step: checks magic, version, stage, step, hash
 * (refusing a file of another compile), that each requested part is present with the expected
 * size, and the checksum over the whole file. Parts of the file not requested are skipped (but
 * checksummed). Errors name the file and what differs. On failure, the contents of the part
 * buffers are undefined (and allocated ones are freed and set back to NULL). */
pippy_status pippy_ckpt_read(const char *dir, int64_t step, int stage, uint64_t hash,
                             pippy_ckpt_part *parts, int n);

/* Remove every step folder of dir except keep's (and stray temporary files): a job that resumes
 * calls it once (one process per file system) before it writes, so that a set of a later step
 * left by the killed run can never mix with the new run's files. */
pippy_status pippy_ckpt_prune(const char *dir, int64_t keep);

#endif
