/* ckpt.c — see ckpt.h.
 *
 * Durability: a file is complete before its final name exists (fileio.h: write, fsync, rename),
 * and a name exists on disk before anything that depends on it (fsync of the folder after each
 * mkdir and rename). So at every moment DIR/latest names a set whose files are all whole. */
#include "ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "fileio.h"

#define PIPPY_CKPT_ALIGN 64
#define PIPPY_CKPT_IO_CHUNK ((size_t)1 << 30) /* one pread() at most */
#define PIPPY_CKPT_BOUNCE ((size_t)1 << 20)

typedef struct {
    char magic[8];
    uint32_t version, stage;
    uint64_t hash;
    int64_t step;
    uint32_t n_parts, header_bytes;
    uint64_t file_bytes;
    uint8_t zero[16];
} pippy_ckpt_header;

typedef struct {
    char name[PIPPY_CKPT_NAME_MAX + 1];
    uint64_t offset, bytes;
    uint8_t zero[8];
} pippy_ckpt_entry;

_Static_assert(sizeof(pippy_ckpt_header) == 64, "checkpoint header is 64 bytes");
_Static_assert(sizeof(pippy_ckpt_entry) == 64, "checkpoint entry is 64 bytes");

static const uint8_t pippy_ckpt_zeros[PIPPY_CKPT_ALIGN];

static uint64_t pippy_ckpt_align(uint64_t x) { return (x + PIPPY_CKPT_ALIGN - 1) & ~(uint64_t)(PIPPY_CKPT_ALIGN - 1); }

static void pippy_ckpt_step_dir(char *b, size_t n, const char *dir, int64_t step)
{
    snprintf(b, n, "%s/step-%" PRId64, dir, step);
}

static void pippy_ckpt_file(char *b, size_t n, const char *dir, int64_t step, int stage)
{
    snprintf(b, n, "%s/step-%" PRId64 "/stage%d.ckpt", dir, step, stage);
}

static pippy_status pippy_ckpt_sys(const char *what, const char *path)
{
    return pippy_fail(PIPPY_ERR_IO, "checkpoint: cannot %s %s: %s", what, path, strerror(errno));
}

/* mkdir path (not its parents); an existing folder is fine. Then fsync its parent. */
static pippy_status pippy_ckpt_mkdir(const char *path)
{
    if (mkdir(path, 0777) != 0) {
        if (errno != EEXIST)
            return pippy_ckpt_sys("create folder", path);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            return pippy_fail(PIPPY_ERR_IO, "checkpoint: %s exists and is not a folder", path);
        return PIPPY_OK;
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    return pippy_fsync_dir(parent);
}

/* ---- writing ---- */

typedef struct {
    pippy_atomic_file f;
    uLong crc;
} pippy_ckpt_out;

static pippy_status pippy_ckpt_put(pippy_ckpt_out *o, const void *buf, size_t n)
{
    if (n == 0) /* crc32 of a NULL buffer is its initial value, not a no-op */
        return PIPPY_OK;
    o->crc = crc32_z(o->crc, buf, n);
    return pippy_atomic_write(&o->f, buf, n);
}

static pippy_status pippy_ckpt_pad(pippy_ckpt_out *o, uint64_t at)
{
    return pippy_ckpt_put(o, pippy_ckpt_zeros, (size_t)(pippy_ckpt_align(at) - at));
}

/* Entries and header of a file with these parts; fails on bad names. */
static pippy_status pippy_ckpt_layout(const pippy_ckpt_part *parts, int n, pippy_ckpt_header *h,
                                      pippy_ckpt_entry *e)
{
    if (n < 0 || n > PIPPY_CKPT_MAX_PARTS)
        return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: %d parts (expected 0 to %d)", n, PIPPY_CKPT_MAX_PARTS);
    memset(e, 0, (size_t)n * sizeof *e);
    uint64_t at = pippy_ckpt_align(sizeof *h + (uint64_t)n * sizeof *e);
    h->header_bytes = (uint32_t)at;
    h->n_parts = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        const char *nm = parts[i].name;
        if (!nm || !nm[0] || strlen(nm) > PIPPY_CKPT_NAME_MAX)
            return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: part %d has name '%s' (expected 1 to %d characters)", i,
                              nm ? nm : "(null)", PIPPY_CKPT_NAME_MAX);
        for (int j = 0; j < i; j++)
            if (!strcmp(nm, parts[j].name))
                return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: part '%s' given twice", nm);
        if (parts[i].bytes && !parts[i].data)
            return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: part '%s' has %zu bytes but no data", nm,
                              parts[i].bytes);
        memcpy(e[i].name, nm, strlen(nm));
        e[i].offset = at;
        e[i].bytes = parts[i].bytes;
        at = pippy_ckpt_align(at + parts[i].bytes);
    }
    h->file_bytes = at + 8;
    return PIPPY_OK;
}

static pippy_status pippy_ckpt_write_body(pippy_ckpt_out *o, const pippy_ckpt_header *h, const pippy_ckpt_entry *e,
                                          const pippy_ckpt_part *parts, int n)
{
    PIPPY_TRY(pippy_ckpt_put(o, h, sizeof *h));
    PIPPY_TRY(pippy_ckpt_put(o, e, (size_t)n * sizeof *e));
    PIPPY_TRY(pippy_ckpt_pad(o, sizeof *h + (uint64_t)n * sizeof *e));
    for (int i = 0; i < n; i++) {
        PIPPY_TRY(pippy_ckpt_put(o, parts[i].data, parts[i].bytes));
        PIPPY_TRY(pippy_ckpt_pad(o, e[i].offset + e[i].bytes));
    }
    uint64_t crc = o->crc;
    return pippy_ckpt_put(o, &crc, sizeof crc);
}

pippy_status pippy_ckpt_write(const char *dir, int64_t step, int stage, uint64_t hash, const pippy_ckpt_part *parts,
                              int n)
{
    if (!dir || !dir[0] || step < 0 || stage < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: write of stage %d, step %" PRId64 " to '%s' (expected a "
                          "folder, step >= 0, stage >= 0)", stage, step, dir ? dir : "(null)");
    pippy_ckpt_header h;
    pippy_ckpt_entry e[PIPPY_CKPT_MAX_PARTS];
    memset(&h, 0, sizeof h);
    memcpy(h.magic, PIPPY_CKPT_MAGIC, 8);
    h.version = PIPPY_CKPT_VERSION;
    h.stage = (uint32_t)stage;
    h.hash = hash;
    h.step = step;
    PIPPY_TRY(pippy_ckpt_layout(parts, n, &h, e));
    char sdir[4096], path[4160];
    pippy_ckpt_step_dir(sdir, sizeof sdir, dir, step);
    pippy_ckpt_file(path, sizeof path, dir, step, stage);
    PIPPY_TRY(pippy_ckpt_mkdir(dir));
    PIPPY_TRY(pippy_ckpt_mkdir(sdir));
    pippy_ckpt_out o = {.crc = crc32_z(0, NULL, 0)};
    PIPPY_TRY(pippy_atomic_open(&o.f, path));
    pippy_status st = pippy_ckpt_write_body(&o, &h, e, parts, n);
    if (st != PIPPY_OK) {
        pippy_atomic_abort(&o.f);
        return pippy_error_prefix(st, "checkpoint of stage %d, step %" PRId64, stage, step);
    }
    return pippy_atomic_commit(&o.f);
}

/* ---- reading ---- */

static pippy_status pippy_ckpt_get(int fd, const char *path, uint64_t at, void *buf, size_t n, uLong *crc)
{
    uint8_t *p = buf;
    while (n) {
        size_t k = n < PIPPY_CKPT_IO_CHUNK ? n : PIPPY_CKPT_IO_CHUNK;
        ssize_t r = pread(fd, p, k, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return pippy_ckpt_sys("read", path);
        if (r == 0)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: truncated (ends at byte %" PRIu64 ")", path, at);
        if (crc)
            *crc = crc32_z(*crc, p, (size_t)r);
        p += r;
        at += (uint64_t)r;
        n -= (size_t)r;
    }
    return PIPPY_OK;
}

/* Open path and check its header against its size, stage, step and (when check_hash) hash;
 * reads the entries into e. *fd open on success. */
static pippy_status pippy_ckpt_open(const char *path, int stage, int64_t step, int check_hash, uint64_t hash,
                                    int *fd, pippy_ckpt_header *h, pippy_ckpt_entry *e)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return pippy_ckpt_sys("open", path);
    struct stat st;
    pippy_status s = PIPPY_OK;
    if (fstat(*fd, &st) != 0)
        s = pippy_ckpt_sys("stat", path);
    else if ((size_t)st.st_size < sizeof *h)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: not a pippyc checkpoint (%lld bytes, shorter than its header)", path,
                       (long long)st.st_size);
    else
        s = pippy_ckpt_get(*fd, path, 0, h, sizeof *h, NULL);
    if (s != PIPPY_OK)
        goto fail;
    if (memcmp(h->magic, PIPPY_CKPT_MAGIC, 8) != 0)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: not a pippyc checkpoint (magic '%.8s', expected '" PIPPY_CKPT_MAGIC "')",
                       path, h->magic);
    else if (h->version != PIPPY_CKPT_VERSION)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: checkpoint format version %u; this build reads version %d", path,
                       h->version, PIPPY_CKPT_VERSION);
    else if (h->file_bytes != (uint64_t)st.st_size)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: %lld bytes, but its header says %" PRIu64 " (truncated or damaged)",
                       path, (long long)st.st_size, h->file_bytes);
    else if (h->stage != (uint32_t)stage || h->step != step)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: holds stage %u of step %" PRId64 ", expected stage %d of step %" PRId64,
                       path, h->stage, h->step, stage, step);
    else if (check_hash && h->hash != hash)
        s = pippy_fail(PIPPY_ERR_INVALID, "%s: from another compile (hash %016" PRIx64 ", expected %016" PRIx64 ")",
                       path, h->hash, hash);
    else if (h->n_parts > PIPPY_CKPT_MAX_PARTS ||
             h->header_bytes != pippy_ckpt_align(sizeof *h + (uint64_t)h->n_parts * sizeof *e) ||
             (uint64_t)h->header_bytes + 8 > h->file_bytes)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: damaged header (%u parts, header of %u bytes, file of %" PRIu64 ")",
                       path, h->n_parts, h->header_bytes, h->file_bytes);
    if (s == PIPPY_OK)
        s = pippy_ckpt_get(*fd, path, sizeof *h, e, h->n_parts * sizeof *e, NULL);
    uint64_t end = h->header_bytes; /* where the next part starts */
    for (uint32_t i = 0; s == PIPPY_OK && i < h->n_parts; i++) {
        if (e[i].name[PIPPY_CKPT_NAME_MAX] != 0 || !e[i].name[0] || e[i].offset != end ||
            e[i].bytes > h->file_bytes - 8 - end)
            s = pippy_fail(PIPPY_ERR_FORMAT,
                           "%s: damaged entry %u (part at %" PRIu64 ", %" PRIu64 " bytes, in a file of %" PRIu64 ")",
                           path, i, e[i].offset, e[i].bytes, h->file_bytes);
        end = pippy_ckpt_align(e[i].offset + e[i].bytes);
    }
    if (s == PIPPY_OK && end + 8 != h->file_bytes)
        s = pippy_fail(PIPPY_ERR_FORMAT, "%s: damaged header (its parts end at %" PRIu64 ", the file at %" PRIu64 ")",
                       path, end + 8, h->file_bytes);
    if (s == PIPPY_OK)
        return PIPPY_OK;
fail:
    close(*fd);
    *fd = -1;
    return s;
}

/* The entry of each requested part (-1 none) into idx; fails naming a missing or wrong-sized one. */
static pippy_status pippy_ckpt_match(const char *path, const pippy_ckpt_header *h, const pippy_ckpt_entry *e,
                                     const pippy_ckpt_part *parts, int n, int *idx)
{
    for (uint32_t i = 0; i < h->n_parts; i++)
        idx[i] = -1;
    for (int k = 0; k < n; k++) {
        if (!parts[k].name)
            return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: requested part %d has no name", k);
        uint32_t i = 0;
        while (i < h->n_parts && strcmp(e[i].name, parts[k].name) != 0)
            i++;
        if (i == h->n_parts) {
            char have[PIPPY_CKPT_MAX_PARTS * (PIPPY_CKPT_NAME_MAX + 2) + 1] = "";
            for (uint32_t j = 0; j < h->n_parts; j++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", j ? ", " : "", e[j].name);
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: no part '%s' (the file has: %s)", path, parts[k].name,
                              h->n_parts ? have : "no parts");
        }
        if (idx[i] >= 0)
            return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: part '%s' requested twice", parts[k].name);
        if (parts[k].data && parts[k].bytes != e[i].bytes)
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: part '%s' is %" PRIu64 " bytes, expected %zu", path, e[i].name,
                              e[i].bytes, parts[k].bytes);
        if ((size_t)e[i].bytes != e[i].bytes)
            return pippy_fail(PIPPY_ERR_NOMEM, "%s: part '%s' of %" PRIu64 " bytes does not fit in memory", path,
                              e[i].name, e[i].bytes);
        idx[i] = k;
    }
    return PIPPY_OK;
}

/* Read [at, at + n) through the bounce buffer, only for the checksum. */
static pippy_status pippy_ckpt_skip(int fd, const char *path, uint64_t at, uint64_t n, uint8_t *bounce, uLong *crc)
{
    while (n) {
        size_t k = n < PIPPY_CKPT_BOUNCE ? (size_t)n : PIPPY_CKPT_BOUNCE;
        PIPPY_TRY(pippy_ckpt_get(fd, path, at, bounce, k, crc));
        at += k;
        n -= k;
    }
    return PIPPY_OK;
}

/* Read the whole file in order: requested parts into their buffers, the rest only checksummed. */
static pippy_status pippy_ckpt_read_body(int fd, const char *path, const pippy_ckpt_header *h,
                                         const pippy_ckpt_entry *e, pippy_ckpt_part *parts, const int *idx,
                                         uint8_t *bounce)
{
    uLong crc = crc32_z(0, NULL, 0);
    PIPPY_TRY(pippy_ckpt_skip(fd, path, 0, h->header_bytes, bounce, &crc));
    for (uint32_t i = 0; i < h->n_parts; i++) {
        pippy_ckpt_part *p = idx[i] >= 0 ? &parts[idx[i]] : NULL;
        if (p && !p->data) {
            p->data = malloc(e[i].bytes ? (size_t)e[i].bytes : 1);
            if (!p->data)
                return pippy_fail(PIPPY_ERR_NOMEM, "%s: out of memory for part '%s' (%" PRIu64 " bytes)", path,
                                  e[i].name, e[i].bytes);
            p->bytes = (size_t)e[i].bytes;
        }
        if (p)
            PIPPY_TRY(pippy_ckpt_get(fd, path, e[i].offset, p->data, (size_t)e[i].bytes, &crc));
        else
            PIPPY_TRY(pippy_ckpt_skip(fd, path, e[i].offset, e[i].bytes, bounce, &crc));
        uint64_t end = e[i].offset + e[i].bytes;
        PIPPY_TRY(pippy_ckpt_skip(fd, path, end, pippy_ckpt_align(end) - end, bounce, &crc));
    }
    uint64_t stored = 0;
    PIPPY_TRY(pippy_ckpt_get(fd, path, h->file_bytes - 8, &stored, 8, NULL));
    if (stored != (uint64_t)crc)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: checksum mismatch (stored %08" PRIx64 ", computed %08lx): the file is "
                          "damaged", path, stored, (unsigned long)crc);
    return PIPPY_OK;
}

pippy_status pippy_ckpt_read(const char *dir, int64_t step, int stage, uint64_t hash, pippy_ckpt_part *parts, int n)
{
    if (n < 0 || n > PIPPY_CKPT_MAX_PARTS)
        return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: %d parts requested (expected 0 to %d)", n,
                          PIPPY_CKPT_MAX_PARTS);
    char path[4160];
    pippy_ckpt_file(path, sizeof path, dir, step, stage);
    pippy_ckpt_header h;
    pippy_ckpt_entry e[PIPPY_CKPT_MAX_PARTS];
    int idx[PIPPY_CKPT_MAX_PARTS], fd, owned[PIPPY_CKPT_MAX_PARTS];
    for (int k = 0; k < n; k++)
        owned[k] = parts[k].data == NULL;
    PIPPY_TRY(pippy_ckpt_open(path, stage, step, 1, hash, &fd, &h, e));
    pippy_status st = pippy_ckpt_match(path, &h, e, parts, n, idx);
    uint8_t *bounce = NULL;
    if (st == PIPPY_OK && !(bounce = malloc(PIPPY_CKPT_BOUNCE)))
        st = pippy_fail(PIPPY_ERR_NOMEM, "checkpoint: out of memory");
    if (st == PIPPY_OK)
        st = pippy_ckpt_read_body(fd, path, &h, e, parts, idx, bounce);
    free(bounce);
    close(fd);
    for (int k = 0; st != PIPPY_OK && k < n; k++)
        if (owned[k]) {
            free(parts[k].data);
            parts[k].data = NULL;
        }
    return st;
}

/* ---- sets ---- */

/* "step-N" -> N; -1 when name is not a step folder's. */
static int64_t pippy_ckpt_step_of(const char *name)
{
    if (strncmp(name, "step-", 5) != 0 || !name[5])
        return -1;
    int64_t v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* Remove the files of a step folder (checkpoints and temporaries: nothing else is ours), then the folder. */
static pippy_status pippy_ckpt_remove_step(const char *dir, const char *name)
{
    char sdir[4096], path[4400];
    snprintf(sdir, sizeof sdir, "%s/%s", dir, name);
    DIR *d = opendir(sdir);
    if (!d)
        return pippy_ckpt_sys("open folder", sdir);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *f = de->d_name;
        size_t l = strlen(f);
        int ours = (!strncmp(f, "stage", 5) && l > 10 && !strcmp(f + l - 5, ".ckpt")) ||
                   (!strncmp(f, ".stage", 6) && strstr(f, ".ckpt.tmp."));
        snprintf(path, sizeof path, "%s/%s", sdir, f);
        if (ours && unlink(path) != 0 && errno != ENOENT) {
            closedir(d);
            return pippy_ckpt_sys("remove", path);
        }
    }
    closedir(d);
    if (rmdir(sdir) != 0 && errno != ENOENT)
        return pippy_ckpt_sys("remove folder", sdir);
    return PIPPY_OK;
}

/* Remove the step folders of dir older than keep (older_only), or all but keep's and the stray
 * temporaries of latest (!older_only). */
static pippy_status pippy_ckpt_remove_steps(const char *dir, int64_t keep, int older_only)
{
    DIR *d = opendir(dir);
    if (!d)
        return pippy_ckpt_sys("open folder", dir);
    struct dirent *de;
    pippy_status st = PIPPY_OK;
    while (st == PIPPY_OK && (de = readdir(d))) {
        int64_t s = pippy_ckpt_step_of(de->d_name);
        if (s >= 0 && s != keep && (!older_only || s < keep))
            st = pippy_ckpt_remove_step(dir, de->d_name);
        else if (!older_only && !strncmp(de->d_name, ".latest.tmp.", 12)) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (unlink(path) != 0 && errno != ENOENT)
                st = pippy_ckpt_sys("remove", path);
        }
    }
    closedir(d);
    return st;
}

pippy_status pippy_ckpt_commit(const char *dir, int64_t step, int n_stages)
{
    if (n_stages < 1 || step < 0)
        return pippy_fail(PIPPY_ERR_INVALID, "checkpoint: commit of step %" PRId64 " with %d stages", step, n_stages);
    for (int k = 0; k < n_stages; k++) {
        char path[4160];
        pippy_ckpt_file(path, sizeof path, dir, step, k);
        pippy_ckpt_header h;
        pippy_ckpt_entry e[PIPPY_CKPT_MAX_PARTS];
        int fd;
        pippy_status st = pippy_ckpt_open(path, k, step, 0, 0, &fd, &h, e);
        if (st != PIPPY_OK)
            return pippy_error_prefix(st, "checkpoint: cannot commit step %" PRId64, step);
        close(fd);
    }
    char text[32], path[4160];
    snprintf(text, sizeof text, "%" PRId64 "\n", step);
    snprintf(path, sizeof path, "%s/latest", dir);
    PIPPY_TRY(pippy_atomic_write_file(path, text, strlen(text)));
    return pippy_ckpt_remove_steps(dir, step, 1);
}

pippy_status pippy_ckpt_latest(const char *dir, int64_t *step)
{
    *step = -1;
    char path[4160], text[64];
    snprintf(path, sizeof path, "%s/latest", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? PIPPY_OK : pippy_ckpt_sys("open", path);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n < 0)
        return pippy_ckpt_sys("read", path);
    text[n] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (n == 0 || text[0] < '0' || text[0] > '9' || errno || strcmp(end, "\n") != 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: expected a step number and a newline, found '%.*s'", path,
                          (int)strcspn(text, "\n"), text);
    char sdir[4096];
    struct stat st;
    pippy_ckpt_step_dir(sdir, sizeof sdir, dir, v);
    if (stat(sdir, &st) != 0 || !S_ISDIR(st.st_mode))
        return pippy_fail(PIPPY_ERR_IO, "%s names step %lld, but %s is missing", path, v, sdir);
    *step = v;
    return PIPPY_OK;
}

pippy_status pippy_ckpt_prune(const char *dir, int64_t keep)
{
    struct stat st;
    if (stat(dir, &st) != 0 && errno == ENOENT)
        return PIPPY_OK;
    return pippy_ckpt_remove_steps(dir, keep, 0);
}
