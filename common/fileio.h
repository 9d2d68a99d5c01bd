/* fileio.h — files written whole or not at all, and files read whole. The bytes go to a temporary file beside the
 * target (".<name>.tmp.XXXXXX" in the same folder), which is fsync'd, renamed over the target, and
 * the folder fsync'd: after a crash at any moment the target holds its old contents or its new
 * ones, never a mix, and a rename that returned is on disk. Used by checkpoints and the ONNX
 * export. */
#ifndef PIPPY_FILEIO_H
#define PIPPY_FILEIO_H

#include <stddef.h>

#include "status.h"

typedef struct {
    int fd;
    char *path, *tmp; /* owned copies */
} pippy_atomic_file;

/* Create the temporary file for path (mode 0644). */
pippy_status pippy_atomic_open(pippy_atomic_file *f, const char *path);
/* Append n bytes. */
pippy_status pippy_atomic_write(pippy_atomic_file *f, const void *buf, size_t n);
/* fsync, close, rename over the target, fsync the folder; f is released either way. */
pippy_status pippy_atomic_commit(pippy_atomic_file *f);
/* Drop the temporary file (after a failure); f is released. Safe on a released f. */
void pippy_atomic_abort(pippy_atomic_file *f);

/* The whole of buf as the file path, atomically. */
pippy_status pippy_atomic_write_file(const char *path, const void *buf, size_t n);

/* fsync a folder (so that the names created or renamed in it are on disk). */
pippy_status pippy_fsync_dir(const char *path);

/* ---- reading ---- */

/* The whole regular file path into *buf (malloc'd, NUL-terminated; *len without the NUL). */
pippy_status pippy_read_file(const char *path, char **buf, size_t *len);

/* Map the regular file path read-only: *addr (NULL for an empty file), *len. Release with
 * pippy_unmap_file. */
pippy_status pippy_map_file(const char *path, void **addr, size_t *len);
void pippy_unmap_file(void *addr, size_t len);

#endif
