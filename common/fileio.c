/* fileio.c — see fileio.h. */
#define _GNU_SOURCE /* mkostemp */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PIPPY_IO_CHUNK ((size_t)1 << 30) /* one write() at most */

pippy_status pippy_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot open folder %s: %s", path, strerror(errno));
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) /* some file systems cannot fsync a folder */
        return pippy_fail(PIPPY_ERR_IO, "cannot fsync folder %s: %s", path, strerror(e));
    return PIPPY_OK;
}

static void pippy_atomic_release(pippy_atomic_file *f)
{
    free(f->path);
    free(f->tmp);
    f->path = f->tmp = NULL;
    f->fd = -1;
}

pippy_status pippy_atomic_open(pippy_atomic_file *f, const char *path)
{
    f->fd = -1;
    f->tmp = NULL;
    f->path = strdup(path);
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    size_t n = strlen(path) + 16;
    f->tmp = malloc(n);
    if (!f->path || !f->tmp) {
        pippy_atomic_release(f);
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp, n, "%.*s.%s.tmp.XXXXXX", (int)dl, path, path + dl);
    f->fd = mkostemp(f->tmp, O_CLOEXEC);
    if (f->fd < 0) {
        pippy_status st = pippy_fail(PIPPY_ERR_IO, "cannot create %s: %s", f->tmp, strerror(errno));
        pippy_atomic_release(f);
        return st;
    }
    if (fchmod(f->fd, 0644) != 0) {
        pippy_status st = pippy_fail(PIPPY_ERR_IO, "cannot chmod %s: %s", f->tmp, strerror(errno));
        pippy_atomic_abort(f);
        return st;
    }
    return PIPPY_OK;
}

pippy_status pippy_atomic_write(pippy_atomic_file *f, const void *buf, size_t n)
{
    const char *p = buf;
    while (n) {
        ssize_t w = write(f->fd, p, n < PIPPY_IO_CHUNK ? n : PIPPY_IO_CHUNK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return pippy_fail(PIPPY_ERR_IO, "cannot write %s: %s", f->tmp, w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
    return PIPPY_OK;
}

pippy_status pippy_atomic_commit(pippy_atomic_file *f)
{
    pippy_status st = PIPPY_OK;
    if (fsync(f->fd) != 0)
        st = pippy_fail(PIPPY_ERR_IO, "cannot fsync %s: %s", f->tmp, strerror(errno));
    if (close(f->fd) != 0 && st == PIPPY_OK)
        st = pippy_fail(PIPPY_ERR_IO, "cannot close %s: %s", f->tmp, strerror(errno));
    f->fd = -1;
    if (st == PIPPY_OK && rename(f->tmp, f->path) != 0)
        st = pippy_fail(PIPPY_ERR_IO, "cannot rename %s to %s: %s", f->tmp, f->path, strerror(errno));
    if (st != PIPPY_OK) {
        unlink(f->tmp);
        pippy_atomic_release(f);
        return st;
    }
    char *slash = strrchr(f->path, '/');
    if (slash == f->path)
        st = pippy_fsync_dir("/");
    else if (slash) {
        *slash = 0;
        st = pippy_fsync_dir(f->path);
    } else {
        st = pippy_fsync_dir(".");
    }
    pippy_atomic_release(f);
    return st;
}

void pippy_atomic_abort(pippy_atomic_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp)
        unlink(f->tmp);
    pippy_atomic_release(f);
}

pippy_status pippy_atomic_write_file(const char *path, const void *buf, size_t n)
{
    pippy_atomic_file f;
    PIPPY_TRY(pippy_atomic_open(&f, path));
    pippy_status st = pippy_atomic_write(&f, buf, n);
    if (st != PIPPY_OK) {
        pippy_atomic_abort(&f);
        return st;
    }
    return pippy_atomic_commit(&f);
}

/* ---- reading ---- */

/* Open path, which must be a regular file; its size in *len. */
static pippy_status pippy_open_regular(const char *path, int *fd, size_t *len)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return pippy_fail(PIPPY_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        int e = errno;
        close(*fd);
        return pippy_fail(PIPPY_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        return pippy_fail(PIPPY_ERR_IO, "%s is not a regular file", path);
    }
    *len = (size_t)st.st_size;
    return PIPPY_OK;
}

pippy_status pippy_file_read_all(const char *path, size_t max, char **buf, size_t *len)
{
    int fd;
    *buf = NULL;
    PIPPY_TRY(pippy_open_regular(path, &fd, len));
    if (*len > max) {
        close(fd);
        return pippy_fail(PIPPY_ERR_IO, "%s: %zu bytes, more than the %zu expected", path, *len, max);
    }
    char *b = malloc(*len + 1);
    size_t done = 0;
    while (b && done < *len) {
        ssize_t r = read(fd, b + done, *len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    int e = errno;
    close(fd);
    if (!b)
        return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for %zu bytes", path, *len);
    if (done != *len) {
        free(b);
        return pippy_fail(PIPPY_ERR_IO, "cannot read %s: %s", path, done < *len ? strerror(e) : "it changed");
    }
    b[*len] = 0;
    *buf = b;
    return PIPPY_OK;
}

pippy_status pippy_read_file(const char *path, char **buf, size_t *len)
{
    return pippy_file_read_all(path, SIZE_MAX - 1, buf, len);
}

pippy_status pippy_map_file(const char *path, void **addr, size_t *len)
{
    int fd;
    *addr = NULL;
    PIPPY_TRY(pippy_open_regular(path, &fd, len));
    if (*len) {
        void *a = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (a == MAP_FAILED) {
            int e = errno;
            close(fd);
            return pippy_fail(PIPPY_ERR_IO, "cannot map %s (%zu bytes): %s", path, *len, strerror(e));
        }
        *addr = a;
    }
    close(fd);
    return PIPPY_OK;
}

void pippy_unmap_file(void *addr, size_t len)
{
    if (addr)
        munmap(addr, len);
}
